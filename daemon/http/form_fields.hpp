// The web form's fields and the pure steps of a submission: decoding the
// urlencoded body, reading the referral's fields, building the referral JSON,
// escaping for the page. No I/O and no Asio: the handler is http/form.hpp,
// and the form fuzz target (fuzz/form.cpp) builds only this.
#pragma once

#include <array>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "model/referral.hpp"

namespace referrald::http {

// Name/value pairs in the order they arrived.
using FormData = std::vector<std::pair<std::string, std::string>>;

// Decodes an application/x-www-form-urlencoded body: pairs split at '&', name
// and value at the first '=', '+' is a space and %XX a byte. Returns nullopt
// when a percent escape is broken or a name or value is not valid UTF-8.
std::optional<FormData> decode_form(std::string_view body);

// True for well-formed UTF-8 (no overlong forms, surrogates or code points
// above U+10FFFF).
bool is_valid_utf8(std::string_view text) noexcept;

// Escapes text for HTML content and quoted attribute values: & < > " ' become
// character references; NUL and other control characters except tab and line
// breaks become U+FFFD.
std::string html_escape(std::string_view text);

enum class FieldKind {
  line,      // single-line text, date, select, radio: surrounding white space trimmed
  checkbox,  // present → "yes"
  text,      // the notes: line breaks kept (CR LF → LF)
};

struct FieldSpec {
  std::string_view name;    // the form field: the JSON path with dots
  std::string_view label;   // starts the sentence of an error message
  std::string_view anchor;  // the element an error summary link focuses
  FieldKind kind = FieldKind::line;
};

// Every field of the form, in the order of the page.
inline constexpr std::array form_field_specs{
    FieldSpec{"patient.given_name", "Patient's given name", "patient-given_name"},
    FieldSpec{"patient.family_name", "Patient's family name", "patient-family_name"},
    FieldSpec{"patient.birth_date", "Patient's date of birth", "patient-birth_date"},
    FieldSpec{"patient.sex", "Patient's sex", "patient-sex-female"},
    FieldSpec{"patient.postal_code", "Home ZIP code", "patient-postal_code"},
    FieldSpec{"patient.guardian.name", "Parent or guardian's name", "patient-guardian-name"},
    FieldSpec{"patient.guardian.phone", "Parent or guardian's phone number", "patient-guardian-phone"},
    FieldSpec{"patient.guardian.relationship", "Parent or guardian's relationship to the patient",
              "patient-guardian-relationship"},
    FieldSpec{"diagnosis.name", "Diagnosis", "diagnosis-name"},
    FieldSpec{"diagnosis.code.system", "Diagnosis code system", "diagnosis-code-system"},
    FieldSpec{"diagnosis.code.value", "Diagnosis code", "diagnosis-code-value"},
    FieldSpec{"diagnosis.diagnosed_on", "Date of diagnosis", "diagnosis-diagnosed_on"},
    FieldSpec{"diagnosis.pathology_confirmed", "Confirmed by pathology", "diagnosis-pathology_confirmed",
              FieldKind::checkbox},
    FieldSpec{"referrer.name", "Referring clinician's name", "referrer-name"},
    FieldSpec{"referrer.credential", "Referring clinician's credential", "referrer-credential"},
    FieldSpec{"referrer.npi", "NPI", "referrer-npi"},
    FieldSpec{"referrer.organization", "Practice or hospital", "referrer-organization"},
    FieldSpec{"referrer.phone", "Referring clinician's phone number", "referrer-phone"},
    FieldSpec{"referrer.fax", "Fax number", "referrer-fax"},
    FieldSpec{"referrer.email", "Email address", "referrer-email"},
    FieldSpec{"urgency", "Urgency", "urgency-routine"},
    FieldSpec{"notes", "Notes", "notes", FieldKind::text},
};

inline constexpr std::string_view csrf_field = "csrf_token";
inline constexpr std::string_view submission_field = "submission_token";
// The file input (several files, multipart/form-data only), and for the
// files held from an earlier attempt (http/kept_files.hpp) their ids and the
// ones ticked to be removed.
inline constexpr std::string_view attachments_field = "attachments";
inline constexpr std::string_view kept_file_field = "kept_attachment";
inline constexpr std::string_view remove_file_field = "remove_attachment";

// A held file's id: 32 lower-case hex digits.
bool is_file_id(std::string_view text) noexcept;

// The field with this name; nullptr for a name the form does not have.
const FieldSpec* find_field(std::string_view name);

// Where a field is on the form; unknown names sort last.
std::size_t field_position(std::string_view name);

// The element id of a field: dots become hyphens ("patient-given_name").
std::string field_id(std::string_view name);

// A submission's referral fields, normalised as the form shows them again
// (single lines trimmed, line breaks in the notes CR LF → LF), and its
// submission token; the CSRF token is skipped (checked before this).
struct FormFields {
  std::map<std::string, std::string> values;
  std::string submission_token;
  std::vector<std::string> kept_files;     // kept_attachment: ids, in the order of the page
  std::vector<std::string> removed_files;  // remove_attachment: ids ticked to be let go
};

// The fields of decoded form data, or why it is a bad request (a sentence for
// the page: a field sent twice, or a field the form does not have).
std::variant<FormFields, std::string> read_form_fields(const FormData& data);

// The referral JSON for the form's fields (dotted names as in the form): an
// empty field is left out, the guardian and the diagnosis code only appear
// when one of their fields is filled, the pathology checkbox becomes true;
// the files become `attachments` as the API takes them, each with its title
// and, for its data, attachment_data_stand_in: the bytes go beside the JSON
// (Submission::files).
std::string form_to_json(const std::map<std::string, std::string>& fields, const std::vector<Attachment>& files = {});

// The form field a JSON Pointer names: "/patient/birth_date" → "patient.birth_date".
std::string field_for_pointer(std::string_view pointer);

}  // namespace referrald::http
