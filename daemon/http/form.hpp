// The referral form referring offices use, served by referrald itself:
//   GET  /                 the form (sets the CSRF cookie)
//   POST /referrals        the submission, through the same IntakeService as the
//                          JSON API; 303 to the confirmation, or the form again
//                          (422) with every error next to its field
//   GET  /referrals/{id}   the confirmation, only for the browser that sent it
//   GET  /static/{name}    the form's CSS, script and icon (a fixed allow-list)
// Pages are templates from the web directory, read once at start.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "http/message.hpp"
#include "intake/submission.hpp"

namespace referrald::store {
class ReaderPool;
}

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

// A page with {{placeholders}}. Not a template engine: a placeholder is
// replaced by what the resolver returns, which is already safe HTML.
class Template {
 public:
  using Resolver = std::function<std::optional<std::string>(std::string_view key)>;

  Template() = default;
  // Throws std::runtime_error naming the template on an unterminated "{{".
  Template(std::string_view text, std::string name);

  // Throws std::runtime_error naming the template and the placeholder when
  // the resolver does not know one.
  std::string render(const Resolver& resolve) const;
  const std::string& text() const { return text_; }

 private:
  struct Part {
    bool placeholder = false;
    std::string text;
  };
  std::vector<Part> parts_;
  std::string name_;
  std::string text_;
};

// The referral JSON for the form's fields (dotted names as in the form): an
// empty field is left out, the guardian and the diagnosis code only appear
// when one of their fields is filled, the pathology checkbox becomes true.
std::string form_to_json(const std::map<std::string, std::string>& fields);

// The form field a JSON Pointer names: "/patient/birth_date" → "patient.birth_date".
std::string field_for_pointer(std::string_view pointer);

// Reads and checks the web directory's pages and files exactly as the Form
// does at start (for --check-config); throws std::runtime_error naming the
// file and the problem.
void check_web_dir(const std::filesystem::path& web_dir);

class Form final : public Handler {
 public:
  // Reads form.html, confirmation.html, message.html and the static files from
  // web_dir and checks every placeholder; throws std::runtime_error naming
  // the file and the problem.
  Form(const std::filesystem::path& web_dir, OfficeConfig office, IntakeService& intake,
       store::ReaderPool& readers);
  ~Form() override;
  Form(const Form&) = delete;
  Form& operator=(const Form&) = delete;

  boost::asio::awaitable<Response> handle(const Request& request) override;

  // Prometheus lines: form submissions by outcome.
  std::string metrics() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace referrald::http
