// Turns a submission (JSON text, or already-parsed fields from the web form)
// into a validated Referral, or into errors that each name a field.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "model/referral.hpp"
#include "util/sealed_spool.hpp"

namespace referrald {

// The body is not JSON we can read at all (HTTP 400).
struct MalformedInput {
  std::string message;  // e.g. "invalid JSON at byte 17: unexpected '}'"
};

// The body is JSON but not a valid referral (HTTP 422).
struct InvalidReferral {
  std::vector<FieldError> errors;  // sorted by path, one or more
};

// JSON without files where only a referral with files may be (a body over
// max_body_bytes; HTTP 413): asked for with `files_required`.
struct FilesRequired {};

using ValidationResult = std::variant<Referral, MalformedInput, InvalidReferral, FilesRequired>;

struct ValidationLimits {
  std::size_t max_depth = 16;  // deeper nesting is MalformedInput
};

class ReferralValidator {
 public:
  // Loads schemas/referral.v1.schema.json; throws std::runtime_error naming
  // the file if it cannot be read or is not a valid schema.
  explicit ReferralValidator(const std::filesystem::path& schema_file, ValidationLimits limits = {});
  ~ReferralValidator();
  ReferralValidator(const ReferralValidator&) = delete;
  ReferralValidator& operator=(const ReferralValidator&) = delete;

  // Thread-safe; `today` bounds birth and diagnosis dates.
  // Each attachment's base64 "data" is decoded as the parser reads it.
  ValidationResult validate(std::string_view json_text, Date today) const;
  // The same, reading the JSON from its spool a block at a time (a body
  // kept on disk). With a `spool_directory`, each attachment's "data" is
  // decoded as it is read into a spool of its own there (its Attachment's
  // `spooled`): no file is ever whole in memory, as base64 or as bytes.
  // Throws what the spools throw (a block that does not open, a disk that
  // refuses a file): nothing may be accepted then.
  ValidationResult validate(const SealedSpool& json_text, Date today, bool files_required = false,
                            const std::filesystem::path& spool_directory = {}) const;
  // The same, with the attachments' files beside the JSON (the web form's,
  // in the order of "attachments"): each item's "data" there only stands in
  // for its file (attachment_data_stand_in). The files are not read: the
  // Referral's attachments come back without their bytes, for the caller
  // to give each its file (plan_intake).
  //
  // With `files_required` (a body over max_body_bytes), JSON that parses but
  // has no non-empty "attachments" array is FilesRequired, before any other
  // check: decided by this one parse, the body is not read again.
  ValidationResult validate(std::string_view json_text, Date today, const std::vector<Attachment>& files,
                            bool files_required = false) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// What is wrong with free text (a referral's notes, a status change's note),
// or nullopt: more than `max_chars` characters (code points), or a control
// character other than tab and line breaks. `text` is valid UTF-8.
std::optional<std::string> free_text_problem(std::string_view text, std::size_t max_chars);

}  // namespace referrald
