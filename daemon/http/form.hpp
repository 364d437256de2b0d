// The referral form referring offices use, served by referrald itself:
//   GET  /                 the form (sets the CSRF cookie; http/csrf.hpp)
//   POST /referrals        the submission, through the same IntakeService as the
//                          JSON API; 303 to the confirmation, or the form again
//                          (422) with every error next to its field
//   GET  /referrals/{id}   the confirmation, only for the browser that sent it
//   GET  /static/{name}    the form's CSS, script and icon (a fixed allow-list)
//   GET  /ack/{token}      the one-tap acknowledgement page of a notification's link
//   POST /ack/{token}      its button: acknowledges the referral (http/status_changes.hpp)
// Pages are templates from the web directory, read once at start.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "http/form_fields.hpp"
#include "http/intake_counts.hpp"
#include "http/message.hpp"
#include "http/status_changes.hpp"
#include "intake/submission.hpp"

namespace referrald::store {
class ReaderPool;
}

namespace referrald::http {

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

// Reads and checks the web directory's pages and files exactly as the Form
// does at start (for --check-config); throws std::runtime_error naming the
// file and the problem.
void check_web_dir(const std::filesystem::path& web_dir);

class Form final : public Handler {
 public:
  // Reads form.html, confirmation.html, message.html and the static files from
  // web_dir and checks every placeholder; throws std::runtime_error naming
  // the file and the problem.
  Form(const std::filesystem::path& web_dir, OfficeConfig office, IntakeService& intake, store::ReaderPool& readers,
       StatusChanges& status_changes);
  ~Form() override;
  Form(const Form&) = delete;
  Form& operator=(const Form&) = delete;

  boost::asio::awaitable<Response> handle(const Request& request) override;
  std::optional<Response> check(const Request& request) const override;
  // An HTML page: a person at a browser reads it.
  Response rate_limited(const Request& request, long long retry_after) const override;
  // For the form's POST, an HTML page (its files were too large together).
  Response too_large(const Request& request, std::size_t limit) const override;

  // The origins browsers reach the form at (http.public_origins): the form
  // page and its POST answer only when Host is one of them (421 otherwise),
  // and a POST whose Origin is another is refused. Safe to call while
  // requests run (SIGHUP).
  void set_public_origins(std::vector<std::string> origins);
  // Where stored referrals are counted by channel (the API's counts).
  void set_intake_counts(IntakeCounts* counts);

  // Prometheus lines: form submissions by outcome.
  std::string metrics() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace referrald::http
