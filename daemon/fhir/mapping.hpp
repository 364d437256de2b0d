// FHIR R4 in and out, as plain functions over JSON (docs/fhir.md).
//
// In: a transaction Bundle, a message Bundle or a ServiceRequest with its
// resources contained becomes the schema-v1 referral (the body the JSON API
// takes), which then goes through the same pipeline (plan_intake). While it
// maps, it notes which FHIR element each v1 field came from (or would have
// come from), so that a problem the validator finds in the v1 document is
// told against the FHIR element as a FHIRPath expression.
//
// Out: a stored referral, with its office status and history, as the
// ServiceRequest, Task and Patient; the CapabilityStatement; and
// OperationOutcome for every error.
//
// Knows nothing of HTTP or of the store.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/referral.hpp"
#include "office/status.hpp"
#include "util/json_stream.hpp"
#include "util/sealed_spool.hpp"

namespace referrald::fhir {

using json = nlohmann::ordered_json;
using TimePoint = std::chrono::system_clock::time_point;

// The code systems the mapping reads and writes.
inline constexpr std::string_view npi_system = "http://hl7.org/fhir/sid/us-npi";
inline constexpr std::string_view icd10cm_system = "http://hl7.org/fhir/sid/icd-10-cm";
inline constexpr std::string_view icdo3_system = "http://terminology.hl7.org/CodeSystem/icd-o-3";
inline constexpr std::string_view snomed_system = "http://snomed.info/sct";
inline constexpr std::string_view degree_system = "http://terminology.hl7.org/CodeSystem/v2-0360";
// A referral's id as the identifier of what referrald returns.
inline constexpr std::string_view referral_id_system = "urn:referrald:referral";
// The eligibility rules' reason codes (statusReason of a rejected Task).
inline constexpr std::string_view reason_system = "urn:referrald:reason";

// One OperationOutcome issue. `code` is from the FHIR IssueType value set.
struct Issue {
  std::string severity = "error";
  std::string code = "invalid";
  std::string diagnostics;  // a sentence; never the submitted values
  std::string expression;   // FHIRPath of the element, e.g. "Bundle.entry[1].resource.birthDate"
  bool operator==(const Issue&) const = default;
};

// What was posted: the base (POST /fhir/r4), $process-message, or the
// ServiceRequest type.
enum class Form { transaction, message, service_request };

struct Mapped {
  std::string referral;  // the schema-v1 referral as JSON text (not yet validated)
  // The files of its "attachments", in order, when they were decoded while
  // parsing (a Parsed body): each "data" there is attachment_data_stand_in
  // (or empty), and these go beside the JSON (Submission::files), so that
  // no file is copied into the referral's text. Empty for text data.
  std::vector<Attachment> files;
  // v1 JSON Pointer → FHIRPath of the element it came from, or where it was
  // looked for. Every pointer the v1 schema knows has an entry (or a parent with one).
  std::map<std::string, std::string> paths;
  // The ServiceRequest's business identifier, "system|value", if it has one.
  std::optional<std::string> identifier;
  // A conditional create's search ("identifier=system|value"): a transaction
  // entry's request.ifNoneExist (the HTTP layer adds the If-None-Exist header).
  std::optional<std::string> if_none_exist;
  // Every entry of a Bundle in order, as "ServiceRequest", "Patient", …: what
  // the transaction-response answers entry by entry. Empty for a ServiceRequest.
  std::vector<std::string> entry_types;
  std::string message_id;  // a message Bundle's MessageHeader.id, if any
};

using MapResult = std::variant<Mapped, std::vector<Issue>>;

// A FHIR body as parse() reads it: the resource, and the file of every
// string member named "data" (FileStrings::fhir_data: Attachment.data,
// Binary.data), decoded from base64 as it was read, by the JSON Pointer of
// its place; nullopt where it is not base64. The resource holds
// attachment_data_stand_in in each file's place.
struct Parsed {
  json resource;
  std::map<std::string, std::optional<DecodedFile>> files;
  std::vector<std::string> duplicates;  // JSON Pointers of repeated keys (the first is kept)
};

// Maps a parsed FHIR body to a v1 referral, or says what is wrong with it
// (each issue with an expression). Total: any JSON value gets an answer.
// Each file decoded while parsing goes into Mapped::files, and data that is
// not base64 is an issue naming the Attachment's or Binary's data. A key
// repeated in one object is an issue naming the element (which of two
// values was meant cannot be told).
MapResult map_submission(const Parsed& parsed, Form form);

// The validator's errors (JSON Pointers into mapped.referral) as issues
// against the FHIR elements they came from.
std::vector<Issue> translate(const std::vector<FieldError>& errors, const Mapped& mapped);

// Parses FHIR JSON with a bound on nesting, from memory or from its spool (a
// body kept on disk), through the intake's one streaming reader
// (util/json_stream.hpp); nullopt and `error` (fixed words and a byte
// offset, never the input) when it is not JSON. With a `spool_directory`,
// each file is decoded into a spool of its own there as it is read: no file
// is ever whole in memory. Throws what the spools throw (nothing may be
// accepted then).
std::optional<Parsed> parse(std::string_view text, std::string& error,
                            const std::filesystem::path& spool_directory = {});
std::optional<Parsed> parse(const SealedSpool& text, std::string& error,
                            const std::filesystem::path& spool_directory = {});

// "identifier=system|value" (the search a conditional create names) →
// "system|value", or nullopt for any other search.
std::optional<std::string> identifier_search(std::string_view search);

json operation_outcome(const std::vector<Issue>& issues);
json operation_outcome(std::string_view code, std::string_view diagnostics);

// ---- out ----

struct StatusEvent {
  TimePoint at;
  OfficeStatus from = OfficeStatus::received;
  OfficeStatus to = OfficeStatus::received;
  std::optional<std::string> note;
};

// A stored referral as the FHIR side reads it.
struct StoredReferral {
  std::string id;
  TimePoint received_at;
  Decision decision = Decision::review;
  Urgency urgency = Urgency::routine;
  std::vector<Reason> reasons;
  std::string document;  // the stored v1 referral JSON
  OfficeStatus status = OfficeStatus::received;
  TimePoint last_modified;           // the last status change, else received_at
  std::vector<StatusEvent> history;  // oldest first
};

// The Task's status for an office status (and, for closed, what it closed from).
std::string_view task_status(OfficeStatus status, const std::vector<StatusEvent>& history);

json service_request(const StoredReferral& referral);
json task(const StoredReferral& referral);
json patient(const StoredReferral& referral);
json capability_statement();

// The transaction-response Bundle for a referral stored with id `id`: one
// entry per entry posted (`201 Created`, or `200 OK` when it was stored
// before), with the location of the ServiceRequest, Patient and Task.
json transaction_response(const Mapped& mapped, const std::string& id, bool created);

// A FHIR instant or dateTime ("2026-12-06T17:00:00.123Z", "2026-12-06T12:00:00-05:00",
// "2026-12-06"): the instant it starts at, or nullopt.
std::optional<TimePoint> parse_instant(std::string_view text);

}  // namespace referrald::fhir
