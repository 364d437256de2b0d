// The referral as referrald understands it once it has passed validation.
// Plain C++ types only: this header is included everywhere.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace referrald {

class SealedSpool;  // util/sealed_spool.hpp

using Date = std::chrono::year_month_day;

enum class Urgency { routine, urgent, emergent };
enum class Decision { accepted, review, declined };

std::string_view to_string(Urgency u) noexcept;
std::string_view to_string(Decision d) noexcept;
std::optional<Urgency> parse_urgency(std::string_view s) noexcept;
std::optional<Decision> parse_decision(std::string_view s) noexcept;

struct Guardian {
  std::string name;
  std::string phone;
  std::string relationship;
};

struct Patient {
  std::string given_name;
  std::string family_name;
  Date birth_date{};
  std::string sex;  // female | male | other | unknown
  std::optional<std::string> postal_code;
  std::optional<Guardian> guardian;
};

struct DiagnosisCode {
  std::string system;  // icd-10-cm | icd-o-3 | snomed-ct
  std::string value;
};

struct Diagnosis {
  std::string name;
  std::optional<DiagnosisCode> code;
  std::optional<Date> diagnosed_on;
  std::optional<bool> pathology_confirmed;
};

struct Referrer {
  std::string name;
  std::string credential;  // MD | DO | NP | PA | RN | other
  std::string npi;
  std::string organization;
  std::string phone;
  std::optional<std::string> fax;
  std::string email;
};

// A file that came with a referral (a pathology report, an MRI report, an
// image). Its type is decided from its bytes (attachments/inspect.hpp), never
// from a name or the type the sender declared.
struct Attachment {
  std::string title;         // as submitted (may name the patient: PHI)
  std::string content_type;  // application/pdf | image/jpeg | image/png | image/tiff, once inspected
  std::string data;          // the file's bytes
  int pages = 1;             // a PDF's or TIFF's page count; 1 for JPEG and PNG
  std::string sha256;        // hex, of data, once inspected
  // Or the bytes kept on disk, sealed, while a submission waits for its
  // commit (util/sealed_spool.hpp); `data` is empty then.
  std::shared_ptr<const SealedSpool> spooled;

  std::size_t size() const;   // of the file, wherever its bytes are
  std::string bytes() const;  // the file's bytes, from data or the spool
  // Moves the bytes into a new spool in `directory`; false (the bytes left
  // in `data`) when it cannot be written.
  bool spool(const std::filesystem::path& directory);
  // Brings spooled bytes back into `data`.
  void unspool();
};

// What stands in a referral's JSON for an attachment's "data" that is not
// in it: decoded apart while parsing, or sent beside the JSON (the web
// form's files). Never stored or shown: the stored document has no
// attachments.
inline constexpr std::string_view attachment_data_stand_in = "(file)";

// A validated submission. `document` is the submission re-serialised as
// compact JSON (the stored form, returned verbatim by the API).
struct Referral {
  Patient patient;
  Diagnosis diagnosis;
  Referrer referrer;
  Urgency urgency = Urgency::routine;
  std::optional<std::string> notes;
  std::string document;                 // without the attachments' bytes
  std::vector<Attachment> attachments;  // in the order submitted
};

// One problem with a submission: a JSON Pointer (RFC 6901) and a sentence.
struct FieldError {
  std::string path;
  std::string message;
  bool operator==(const FieldError&) const = default;
};

// A machine-readable reason code with a sentence for a human.
struct Reason {
  std::string code;
  std::string message;
  bool operator==(const Reason&) const = default;
};

struct Eligibility {
  Decision decision = Decision::review;
  std::vector<Reason> reasons;
  std::optional<std::string> disease;  // catalogue id of the matched disease
};

}  // namespace referrald
