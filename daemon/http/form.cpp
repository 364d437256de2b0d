#include "http/form.hpp"
#include "http/async_intake.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <shared_mutex>
#include <set>
#include <sstream>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "attachments/inspect.hpp"
#include "http/csrf.hpp"
#include "http/kept_files.hpp"
#include "http/multipart.hpp"
#include "office/ack_link.hpp"
#include "store/async.hpp"
#include "store/office.hpp"
#include "store/store.hpp"
#include "util/crypto.hpp"
#include "util/dates.hpp"
#include "util/file_reader.hpp"
#include "util/ids.hpp"
#include "util/sealed_spool.hpp"
#include "util/strings.hpp"

namespace referrald::http {

namespace asio = boost::asio;

// ---------------------------------------------------------------------------
// Templates

Template::Template(std::string_view text, std::string name) : name_(std::move(name)), text_(text) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    const auto open = text.find("{{", pos);
    if (open == std::string_view::npos) {
      parts_.push_back({false, std::string(text.substr(pos))});
      break;
    }
    if (open > pos) parts_.push_back({false, std::string(text.substr(pos, open - pos))});
    const auto close = text.find("}}", open + 2);
    // A placeholder is one short name: "{{a" ... "}}" across lines is a typo.
    if (close == std::string_view::npos ||
        text.substr(open + 2, close - open - 2).find_first_of("{}\n") != std::string_view::npos) {
      throw std::runtime_error(name_ + ": unterminated \"{{\" at byte " + std::to_string(open));
    }
    parts_.push_back({true, std::string(text.substr(open + 2, close - open - 2))});
    pos = close + 2;
  }
}

std::string Template::render(const Resolver& resolve) const {
  std::string out;
  out.reserve(text_.size() + 1024);
  for (const auto& part : parts_) {
    if (!part.placeholder) {
      out += part.text;
      continue;
    }
    auto value = resolve(part.text);
    if (!value) throw std::runtime_error(name_ + ": unknown placeholder {{" + part.text + "}}");
    out += *value;
  }
  return out;
}

// ---------------------------------------------------------------------------
// The handler

namespace {

constexpr std::string_view content_security_policy =
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'";

constexpr std::size_t token_bytes = 32;               // 256 bits: a submission token
constexpr std::size_t token_chars = 2 * token_bytes;  // hex

struct StaticFile {
  std::string_view name;
  std::string_view content_type;
};

// Everything /static/ serves; any other name is a 404, so no request can
// reach a file outside this list (no path is ever built from the request).
constexpr std::array static_files{
    StaticFile{"style.css", "text/css; charset=utf-8"},
    StaticFile{"form.js", "text/javascript; charset=utf-8"},
    StaticFile{"favicon.svg", "image/svg+xml"},
};

std::string read_web_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read web file " + file.string() + ": " + std::strerror(errno));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string new_token() {
  const auto bytes = random_bytes(token_bytes);
  return to_hex(bytes.data(), bytes.size());
}

bool is_token(std::string_view s) noexcept {
  return s.size() == token_chars &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool tokens_equal(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  return constant_time_equal(reinterpret_cast<const unsigned char*>(a.data()),
                             reinterpret_cast<const unsigned char*>(b.data()), a.size());
}

// Which browser sent a form: ties the idempotency key and the confirmation
// page to the browser id in the CSRF cookie without storing the id itself.
std::string client_of(std::string_view browser) { return "form:" + sha256_hex(browser).substr(0, 16); }

std::string cookie_name(bool secure) { return secure ? "__Host-csrf" : "csrf"; }

// Every value of the named cookie in the Cookie header.
std::vector<std::string> cookie_values(const Request& request, std::string_view name) {
  std::vector<std::string> out;
  for (const auto& [header, value] : request.headers) {
    if (header != "cookie") continue;
    std::string_view rest = value;
    while (!rest.empty()) {
      const auto semi = rest.find(';');
      auto item = rest.substr(0, semi);
      rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
      while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
      while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
      const auto eq = item.find('=');
      if (eq != std::string_view::npos && item.substr(0, eq) == name) out.emplace_back(item.substr(eq + 1));
    }
  }
  return out;
}

// The browser's CSRF cookie: exactly one, or nothing.
std::optional<std::string> csrf_cookie(const Request& request) {
  auto values = cookie_values(request, cookie_name(request.secure));
  if (values.size() != 1) return std::nullopt;
  return std::move(values.front());
}

// Browsers say where a request comes from; anything but one of the form's
// public origins is refused before the token is even looked at. "Origin:
// null" (a sandboxed frame, a data: URL, a redirect across sites) is another
// origin too. No Origin at all is left to the token (an old browser).
bool from_public_origin(const Request& request, const std::vector<std::string>& origins) {
  if (request.count("sec-fetch-site") > 1 || request.count("origin") > 1) return false;
  if (const auto* site = request.header("sec-fetch-site")) {
    const auto s = lower(*site);
    if (s != "same-origin" && s != "none") return false;
  }
  const auto* origin = request.header("origin");
  if (origin == nullptr) return true;
  return std::find(origins.begin(), origins.end(), lower(*origin)) != origins.end();
}

// Whether the request names one of the form's public origins as its Host:
// a page that a DNS-rebinding site loads under its own name (Host
// "evil.example:8080") does not.
bool at_public_origin(const Request& request, const std::vector<std::string>& origins) {
  const auto* host = request.header("host");
  if (host == nullptr) return false;
  const auto h = lower(*host);
  return std::any_of(origins.begin(), origins.end(), [&h](const std::string& origin) {
    const auto scheme_end = origin.find("://");
    return scheme_end != std::string::npos && std::string_view(origin).substr(scheme_end + 3) == h;
  });
}

bool is_urlencoded_type(const std::string& value) {
  auto media = lower(value.substr(0, value.find(';')));
  while (!media.empty() && media.back() == ' ') media.pop_back();
  return media == "application/x-www-form-urlencoded";
}

// The form comes urlencoded (a page without the file input, opened before
// an upgrade) or as multipart/form-data (its boundary is the body's
// question: a 400 without one).
bool is_form_content_type(const std::string* value) {
  if (value == nullptr) return false;
  return is_urlencoded_type(*value) || is_multipart_form_type(*value);
}

// "PDF", "JPEG": a file's type as the page names it.
std::string_view type_name(std::string_view content_type) {
  if (content_type == "application/pdf") return "PDF";
  if (content_type == "image/jpeg") return "JPEG";
  if (content_type == "image/png") return "PNG";
  if (content_type == "image/tiff") return "TIFF";
  return "file";
}

// "1-888-226-4343" → "18882264343", for tel: links.
std::string tel_uri(std::string_view phone) {
  std::string out;
  for (char c : phone) {
    if ((c >= '0' && c <= '9') || (c == '+' && out.empty())) out += c;
  }
  return out;
}

// The error message a person reads: the field's label, then the API's words.
std::string sentence(std::string_view label, std::string_view message) {
  std::string out(label);
  out += ' ';
  out += message;
  if (out.back() != '.') out += '.';
  return out;
}

void add_security_headers(Response& r) {
  r.headers.emplace_back("Content-Security-Policy", std::string(content_security_policy));
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.headers.emplace_back("X-Frame-Options", "DENY");
  // same-origin, not no-referrer: the latter would make the form's POST carry "Origin: null".
  r.headers.emplace_back("Referrer-Policy", "same-origin");
  r.headers.emplace_back("Cross-Origin-Opener-Policy", "same-origin");
  r.headers.emplace_back("Cross-Origin-Resource-Policy", "same-origin");
}

Response html_response(unsigned status, std::string body) {
  Response r;
  r.status = status;
  r.content_type = "text/html; charset=utf-8";
  r.body = std::move(body);
  add_security_headers(r);
  return r;
}

// What the form shows: the values as submitted (normalised), the errors by
// field and the tokens that go back into the hidden fields.
struct FormState {
  std::map<std::string, std::string> values;
  std::map<std::string, std::string> errors;                 // field → sentence
  std::vector<std::pair<std::string, std::string>> summary;  // anchor (may be empty) → sentence
  std::string csrf;
  std::string submission;
  std::string notice;  // safe HTML above the form
  // The file input: what it takes, the files held from an earlier attempt
  // (shown with a box to remove each) and its errors, one per file.
  struct Held {
    std::string id;
    std::string title;
    std::string content_type;
    std::size_t bytes = 0;
  };
  AttachmentLimits file_limits;
  std::vector<Held> held;
  std::vector<std::string> file_errors;
};

}  // namespace

namespace {

// The pages and static files from the web directory, checked once at start.
struct Pages {
  OfficeConfig office;
  Template form_page;
  Template confirmation_page;
  Template message_page;
  std::set<std::string> hinted;  // fields whose hint (id="<id>-hint") the form has
  struct Asset {
    std::string body;
    std::string content_type;
    std::string etag;
  };
  std::map<std::string, Asset, std::less<>> assets;

  Pages(const std::filesystem::path& web_dir, OfficeConfig o) : office(std::move(o)) {
    form_page = Template(read_web_file(web_dir / "form.html"), (web_dir / "form.html").string());
    confirmation_page =
        Template(read_web_file(web_dir / "confirmation.html"), (web_dir / "confirmation.html").string());
    message_page = Template(read_web_file(web_dir / "message.html"), (web_dir / "message.html").string());
    for (const auto& f : form_field_specs) {
      if (form_page.text().find("id=\"" + field_id(f.name) + "-hint\"") != std::string::npos) {
        hinted.insert(std::string(f.name));
      }
    }
    for (const auto& s : static_files) {
      auto body = read_web_file(web_dir / s.name);
      auto etag = "\"" + sha256_hex(body).substr(0, 32) + "\"";
      assets.emplace(std::string(s.name), Asset{std::move(body), std::string(s.content_type), std::move(etag)});
    }
    check_templates(web_dir);
  }

  // A template that names a field the code does not know, or misses one,
  // fails at start rather than silently dropping a value.
  void check_templates(const std::filesystem::path& web_dir) const {
    const auto file = (web_dir / "form.html").string();
    const std::string& text = form_page.text();
    for (const auto& f : form_field_specs) {
      if (text.find("name=\"" + std::string(f.name) + "\"") == std::string::npos) {
        throw std::runtime_error(file + ": no input named \"" + std::string(f.name) + "\"");
      }
      if (text.find("id=\"" + std::string(f.anchor) + "\"") == std::string::npos) {
        throw std::runtime_error(file + ": no element with id \"" + std::string(f.anchor) + "\"");
      }
    }
    // And every control the form sends is a field of the referral or a token.
    for (std::size_t pos = text.find(" name=\""); pos != std::string::npos; pos = text.find(" name=\"", pos + 1)) {
      const auto tag_start = text.rfind('<', pos);
      const auto tag = text.substr(tag_start + 1, text.find_first_of(" >", tag_start) - tag_start - 1);
      if (tag != "input" && tag != "select" && tag != "textarea" && tag != "button") continue;
      const auto end = text.find('"', pos + 7);
      const auto name = text.substr(pos + 7, end - pos - 7);
      if (find_field(name) == nullptr && name != csrf_field && name != submission_field && name != attachments_field) {
        throw std::runtime_error(file + ": <" + tag + " name=\"" + name + "\"> is not a field of the referral");
      }
    }
    if (text.find("name=\"" + std::string(attachments_field) + "\"") == std::string::npos ||
        text.find("id=\"" + std::string(attachments_field) + "\"") == std::string::npos) {
      throw std::runtime_error(file + ": no file input named and with the id \"" + std::string(attachments_field) +
                               "\"");
    }
    // Every placeholder must resolve, in every state a page can be in.
    FormState state;
    state.csrf = state.submission = std::string(token_chars, '0');
    for (const auto& f : form_field_specs) state.errors[std::string(f.name)] = "x";
    state.held.push_back({std::string(32, '0'), "x", "application/pdf", 1});
    state.file_errors.emplace_back("x");
    (void)render_form(state);
    (void)render_form(FormState{});
    (void)render_confirmation("R-20260101-00000-00000", Decision::declined, Urgency::emergent, {},
                              OfficeStatus::received);
    (void)render_message("t", "<p>b</p>");
  }

  // ---- rendering

  std::optional<std::string> office_value(std::string_view key) const {
    if (key == "office.name") return html_escape(office.name);
    if (key == "office.phone") return html_escape(office.phone);
    if (key == "office.fax") return html_escape(office.fax);
    if (key == "office.pager") return html_escape(office.pager);
    if (key == "tel:office.phone") return html_escape(tel_uri(office.phone));
    if (key == "tel:office.pager") return html_escape(tel_uri(office.pager));
    return std::nullopt;
  }

  std::string describedby(const FormState& s, const std::string& name, bool with_invalid) const {
    const auto id = field_id(name);
    const bool error = s.errors.count(name) != 0;
    std::string ids;
    if (hinted.count(name) != 0) ids = id + "-hint";
    if (error) ids += (ids.empty() ? "" : " ") + id + "-error";
    std::string out;
    if (error && with_invalid) out += " aria-invalid=\"true\"";
    if (!ids.empty()) out += " aria-describedby=\"" + ids + "\"";
    return out;
  }

  std::string summary_html(const FormState& s) const {
    if (s.summary.empty()) return {};
    const auto n = s.summary.size();
    std::string out =
        "<div class=\"error-summary\" role=\"alert\" tabindex=\"-1\" aria-labelledby=\"error-summary-title\">\n"
        "<h2 id=\"error-summary-title\">The referral has not been sent: ";
    out += n == 1 ? "1 field needs" : std::to_string(n) + " fields need";
    out += " your attention</h2>\n<ul>\n";
    for (const auto& [anchor, text] : s.summary) {
      if (anchor.empty()) {
        out += "<li>" + html_escape(text) + "</li>\n";
      } else {
        out += "<li><a href=\"#" + html_escape(anchor) + "\">" + html_escape(text) + "</a></li>\n";
      }
    }
    out += "</ul>\n</div>";
    return out;
  }

  // The file input's parts ({{files:…}}).
  static std::optional<std::string> files_value(const FormState& s, std::string_view key) {
    const std::string id(attachments_field);
    if (key == "hint") {
      const auto& l = s.file_limits;
      if (l.max_attachments == 0)
        return std::string("This office takes no files with a referral: send records by fax.");
      return "PDF, JPEG, PNG or TIFF. Up to " + std::to_string(l.max_attachments) + " files, " +
             html_escape(describe_size(l.max_attachment_bytes)) + " each and " +
             html_escape(describe_size(l.max_total_bytes)) + " together.";
    }
    if (key == "errclass") return s.file_errors.empty() ? "" : " has-error";
    if (key == "aria") {
      if (s.file_errors.empty()) return " aria-describedby=\"" + id + "-hint\"";
      return " aria-invalid=\"true\" aria-describedby=\"" + id + "-hint " + id + "-error\"";
    }
    if (key == "err") {
      if (s.file_errors.empty()) return "";
      std::string out = "<p class=\"field-message\" id=\"" + id + "-error\">";
      for (std::size_t i = 0; i < s.file_errors.size(); ++i) {
        if (i > 0) out += "<br>";
        out += "<span class=\"visually-hidden\">Error: </span>" + html_escape(s.file_errors[i]);
      }
      return out + "</p>";
    }
    if (key == "held") {
      if (s.held.empty()) return "";
      std::string out =
          "<div class=\"held-files\" id=\"held-files\">\n<p>Attached already (kept from when you pressed "
          "“Send referral”):</p>\n<ul>\n";
      for (const auto& f : s.held) {
        const auto fid = html_escape(f.id);
        out += "<li><input type=\"hidden\" name=\"" + std::string(kept_file_field) + "\" value=\"" + fid +
               "\"><span class=\"held-title\">" + html_escape(f.title) + "</span> <span class=\"held-size\">(" +
               std::string(type_name(f.content_type)) + ", " + html_escape(describe_size(f.bytes)) +
               ")</span> <span class=\"held-remove\"><input type=\"checkbox\" id=\"remove-" + fid + "\" name=\"" +
               std::string(remove_file_field) + "\" value=\"" + fid + "\"> <label for=\"remove-" + fid +
               "\">Remove<span class=\"visually-hidden\"> " + html_escape(f.title) + "</span></label></span></li>\n";
      }
      return out + "</ul>\n</div>";
    }
    return std::nullopt;
  }

  std::string render_form(const FormState& s) const {
    auto value = [&s](const std::string& name) -> std::string {
      const auto it = s.values.find(name);
      return it == s.values.end() ? std::string() : it->second;
    };
    return form_page.render([&](std::string_view key) -> std::optional<std::string> {
      if (auto v = office_value(key)) return v;
      // Every error, a file's too, is in the summary.
      if (key == "title_prefix") return s.summary.empty() ? "" : "Error: ";
      if (key == "summary") return summary_html(s);
      if (key == "notice") return s.notice;
      if (key == "csrf") return html_escape(s.csrf);
      if (key == "submission") return html_escape(s.submission);
      const auto colon = key.find(':');
      if (colon == std::string_view::npos) return std::nullopt;
      const auto kind = key.substr(0, colon);
      auto arg = key.substr(colon + 1);
      if (kind == "files") return files_value(s, arg);
      if (kind == "checked" || kind == "selected") {
        const auto eq = arg.find('=');
        if (eq == std::string_view::npos || find_field(arg.substr(0, eq)) == nullptr) return std::nullopt;
        const bool on = value(std::string(arg.substr(0, eq))) == arg.substr(eq + 1);
        return on ? (kind == "checked" ? " checked" : " selected") : "";
      }
      if (find_field(arg) == nullptr) return std::nullopt;
      const std::string name(arg);
      const auto error = s.errors.find(name);
      if (kind == "v") return html_escape(value(name));
      if (kind == "errclass") return error == s.errors.end() ? "" : " has-error";
      if (kind == "aria") return describedby(s, name, true);
      if (kind == "desc") return describedby(s, name, false);
      if (kind == "err") {
        if (error == s.errors.end()) return "";
        return "<p class=\"field-message\" id=\"" + field_id(name) +
               "-error\"><span class=\"visually-hidden\">Error: </span>" + html_escape(error->second) + "</p>";
      }
      return std::nullopt;
    });
  }

  std::string decision_html(Decision decision, const std::vector<Reason>& reasons) const {
    std::string out;
    switch (decision) {
      case Decision::accepted:
        out +=
            "<p class=\"decision decision-accepted\">The hospital can accept this referral.</p>\n"
            "<p>The referral office will contact you.</p>\n";
        break;
      case Decision::review:
        out +=
            "<p class=\"decision decision-review\">The referral office will review this referral.</p>\n"
            "<p>A member of the referral office will review it and call you.</p>\n";
        break;
      case Decision::declined:
        out += "<p class=\"decision decision-declined\">The hospital cannot accept this referral.</p>\n";
        break;
    }
    if (!reasons.empty()) {
      out += "<ul class=\"reasons\">\n";
      for (const auto& r : reasons) out += "<li>" + html_escape(r.message) + "</li>\n";
      out += "</ul>\n";
    }
    if (decision == Decision::declined) {
      out += "<p>If you have questions about this decision, call the referral office at <a href=\"tel:" +
             html_escape(tel_uri(office.phone)) + "\">" + html_escape(office.phone) + "</a>.</p>\n";
    }
    return out;
  }

  std::string emergent_html() const {
    return "<div class=\"notice\" role=\"alert\">\n<h2>Emergent: call the 24-hour line now</h2>\n"
           "<p>The referral is stored. Because the patient needs care now, also call the 24-hour line "
           "and give the reference number:</p>\n<p class=\"call\"><a href=\"tel:" +
           html_escape(tel_uri(office.pager)) + "\">" + html_escape(office.pager) + "</a></p>\n</div>";
  }

  // The office's status in the words the referring clinician reads.
  static std::string status_html(OfficeStatus status) {
    std::string words(plain_words(status));
    if (!words.empty()) words.front() = static_cast<char>(std::toupper(static_cast<unsigned char>(words.front())));
    return "<p class=\"status status-" + std::string(to_string(status)) + "\" id=\"status\">" + html_escape(words) +
           ".</p>\n";
  }

  std::string render_confirmation(const std::string& id, Decision decision, Urgency urgency,
                                  const std::vector<Reason>& reasons, OfficeStatus status) const {
    return confirmation_page.render([&](std::string_view key) -> std::optional<std::string> {
      if (auto v = office_value(key)) return v;
      if (key == "reference") return html_escape(id);
      if (key == "status") return status_html(status);
      if (key == "decision") return decision_html(decision, reasons);
      if (key == "emergent") return urgency == Urgency::emergent ? emergent_html() : "";
      return std::nullopt;
    });
  }

  // body is safe HTML (built here from fixed text and escaped values).
  std::string render_message(std::string_view title, const std::string& body) const {
    return message_page.render([&](std::string_view key) -> std::optional<std::string> {
      if (auto v = office_value(key)) return v;
      if (key == "title") return html_escape(title);
      if (key == "body") return body;
      return std::nullopt;
    });
  }

  Response message(unsigned status, std::string_view title, const std::string& body) const {
    return html_response(status, render_message(title, body));
  }

  std::string call_office() const {
    return "call the referral office at <a href=\"tel:" + html_escape(tel_uri(office.phone)) + "\">" +
           html_escape(office.phone) + "</a>";
  }

  Response not_found() const {
    return message(404, "Page not found",
                   "<p>There is no page at this address.</p>\n<p><a href=\"/\">Refer a patient</a></p>");
  }

  Response method_not_allowed(std::string_view allow) const {
    auto r = message(405, "Not allowed",
                     "<p>This page cannot be used that way.</p>\n<p><a href=\"/\">Refer a patient</a></p>");
    r.headers.emplace_back("Allow", std::string(allow));
    return r;
  }
};

}  // namespace

struct Form::Impl {
  Pages pages;
  IntakeService& intake;
  store::ReaderPool& readers;
  CsrfTokens tokens;  // one key for the process's life: SIGHUP keeps open forms valid
  mutable std::shared_mutex origins_mutex;
  std::vector<std::string> origins;
  std::atomic<IntakeCounts*> intake_counts{nullptr};
  mutable std::atomic<std::uint64_t> stored{0}, replayed{0}, invalid{0}, refused{0}, conflicts{0}, unavailable{0},
      rejected{0}, wrong_host{0};

  StatusChanges& status_changes;
  KeptFiles kept;  // files of forms that came back with errors

  Impl(const std::filesystem::path& web_dir, OfficeConfig office, IntakeService& i, store::ReaderPool& r,
       StatusChanges& sc)
      : pages(web_dir, std::move(office)), intake(i), readers(r), status_changes(sc) {}

  Response bad_request(std::string_view why) const {
    ++rejected;
    auto r = pages.message(400, "The form could not be read",
                           "<p>Nothing was stored. " + html_escape(why) +
                               "</p>\n<p><a href=\"/\">Open a new form</a>. If this keeps happening, " +
                               pages.call_office() + ".</p>");
    r.log_note = "form=bad_request";
    return r;
  }

  std::vector<std::string> public_origins() const {
    std::shared_lock lock(origins_mutex);
    return origins;
  }

  Response misdirected() const {
    ++wrong_host;
    auto r = pages.message(421, "Wrong address",
                           "<p>The referral form is not served at this address. Open it at the address the "
                           "referral office gave you, or " +
                               pages.call_office() + ".</p>");
    r.log_note = "form=misdirected";
    return r;
  }

  Response unsupported_media_type() const {
    ++rejected;
    auto r = pages.message(415, "The form could not be read",
                           "<p>Nothing was stored. The form was not sent as a web form.</p>\n"
                           "<p><a href=\"/\">Open a new form</a>.</p>");
    r.log_note = "form=unsupported_media_type";
    return r;
  }

  // ---- requests

  Response form(const Request& request) const {
    FormState state;
    const auto now = CsrfTokens::Clock::now();
    const auto cookie = csrf_cookie(request);
    const auto verified = cookie ? tokens.verify(*cookie, now) : std::nullopt;
    // The browser keeps its cookie (two tabs both work) until it is old
    // enough that a form rendered now could expire soon; then the same
    // browser id is signed again with the time of now.
    const bool fresh = !verified || now - verified->issued >= CsrfTokens::refresh_after;
    state.csrf = fresh ? tokens.issue(verified ? verified->browser : CsrfTokens::new_browser(), now) : *cookie;
    state.submission = new_token();
    state.file_limits = intake.policy()->attachment_limits;
    auto r = html_response(200, pages.render_form(state));
    // The blank form holds no patient data; letting the browser keep it means
    // the back button returns to the same page, with the same submission
    // token, rather than a new one that would store a second referral.
    r.headers.emplace_back("Cache-Control", "private, no-cache");
    if (fresh) {
      std::string cookie_header =
          cookie_name(request.secure) + "=" + state.csrf + "; Path=/; HttpOnly; SameSite=Strict";
      if (request.secure) cookie_header += "; Secure";
      r.headers.emplace_back("Set-Cookie", std::move(cookie_header));
    }
    return r;
  }

  Response asset(const Request& request, std::string_view name) const {
    const auto it = pages.assets.find(name);
    if (it == pages.assets.end()) return pages.not_found();
    Response r;
    if (const auto* match = request.header("if-none-match"); match != nullptr && *match == it->second.etag) {
      r.status = 304;
    } else {
      r.status = 200;
      r.body = it->second.body;
    }
    r.content_type = it->second.content_type;
    add_security_headers(r);
    r.headers.emplace_back("Cache-Control", "no-cache");
    r.headers.emplace_back("ETag", it->second.etag);
    return r;
  }

  // A spooled body that cannot be read back (a block changed on disk), or
  // a file of it that cannot be written to its own spool: nothing stored.
  Response body_unreadable() const {
    ++unavailable;
    auto r = pages.message(503, "The referral was not sent",
                           "<p>Nothing was stored: the form could not be read back while it was checked.</p>\n"
                           "<p>Go back, press “Send referral” again in a minute, or " +
                               pages.call_office() + ".</p>");
    r.headers.emplace_back("Retry-After", "30");
    r.log_note = "form=unavailable reason=body_unreadable";
    return r;
  }

  Response csrf_refused(std::string note) const {
    ++refused;
    auto r = pages.message(403, "The referral was not sent",
                           "<p>Nothing was stored. The form's security check failed: the form was not sent from "
                           "this site, it was open for more than 8 hours, or your browser does not keep this "
                           "site's cookies (for example after a restart, or in a private window that was "
                           "closed).</p>\n"
                           "<p><a href=\"/\">Open a new form</a> and send it again. If this keeps happening, " +
                               pages.call_office() + ".</p>");
    r.log_note = "form=csrf_refused reason=" + std::move(note);
    return r;
  }

  // The body's fields and files: urlencoded (no files) or multipart/form-data.
  struct Body {
    FormData fields;
    std::vector<UploadedFile> files;
  };
  // A body kept on disk (util/sealed_spool.hpp) is read by GMime from its
  // spool a block at a time, and each of its files goes into a spool of
  // its own in `spool_directory` as it is decoded: neither is ever whole
  // in memory.
  static std::variant<Body, std::string> read_body(const Request& request,
                                                   const std::filesystem::path& spool_directory) {
    const auto* type = request.header("content-type");
    if (type != nullptr && !is_urlencoded_type(*type)) {
      const auto boundary = multipart_boundary(*type);
      if (!boundary) return std::string("The form was sent without the boundary that separates its parts.");
      FileReader body = request.body_file ? FileReader(*request.body_file) : FileReader(request.body);
      auto parsed = parse_multipart_form(*boundary, body, attachments_field, {}, spool_directory);
      if (auto* why = std::get_if<std::string>(&parsed)) return std::move(*why);
      auto& form = std::get<MultipartForm>(parsed);
      return Body{std::move(form.fields), std::move(form.files)};
    }
    auto data = decode_form(request.body_file ? request.body_file->read_all() : request.body);
    if (!data) return std::string("The form's text was damaged on the way (it was not valid UTF-8).");
    return Body{std::move(*data), {}};
  }

  // A file's name in a message: "Attachment 2 (scan.pdf)".
  static std::string file_label(std::size_t index, const std::string& title) {
    return "Attachment " + std::to_string(index + 1) + " (" + title + ")";
  }

  // The form again after a submission that was not stored: the files that
  // passed the inspection are held for this form, those refused are not,
  // and each refusal names its file next to the file input. `files` are
  // the submission's, held ones first; `ids` their held ids ("" for new).
  // `errors` are the referral's (the intake's) and `lost` counts held files
  // that were let go before this submission.
  void hold_files(FormState& state, const std::string& form_key, std::vector<Attachment>& files,
                  const std::vector<std::string>& ids, std::vector<FieldError>& errors, std::size_t lost) {
    for (auto& f : files) f.unspool();
    // The intake opens the files only when the rest is valid; the same
    // inspection decides here which to hold (inspect_attachments: one set of checks).
    if (!files.empty()) {
      for (auto& e : inspect_attachments(state.file_limits, files)) {
        if (std::find(errors.begin(), errors.end(), e) == errors.end()) errors.push_back(std::move(e));
      }
    }
    std::set<std::size_t> refused_files;
    bool whole = false;  // too many files, or too large together: the new ones are not held
    for (const auto& e : errors) {
      if (e.path == "/attachments") whole = true;
      if (!e.path.starts_with("/attachments/")) continue;
      refused_files.insert(static_cast<std::size_t>(std::strtoul(e.path.c_str() + 13, nullptr, 10)));
    }
    std::vector<KeptFiles::File> hold;
    for (std::size_t i = 0; i < files.size(); ++i) {
      if (refused_files.count(i) != 0 || (whole && ids[i].empty())) continue;
      hold.push_back({ids[i], files[i].title, std::move(files[i].data), files[i].content_type});
    }
    if (!kept.keep(form_key, hold, std::chrono::steady_clock::now())) {
      hold.clear();
      errors.push_back({"/attachments",
                        "the files could not be kept for this form while the other fields are corrected "
                        "(too many files are held just now): choose them again"});
    }
    if (lost != 0) {
      errors.push_back({"/attachments", std::to_string(lost) + (lost == 1 ? " file" : " files") + " chosen earlier " +
                                            (lost == 1 ? "was" : "were") +
                                            " no longer held (files are kept for 2 hours): choose " +
                                            (lost == 1 ? "it" : "them") + " again"});
    }
    for (const auto& f : hold) state.held.push_back({f.id, f.title, f.content_type, f.data.size()});
  }

  // hold_files where the intake does its file work (the blocking pool):
  // it opens and inspects each file.
  asio::awaitable<void> hold_files_apart(FormState& state, const std::string& form_key, std::vector<Attachment>& files,
                                         const std::vector<std::string>& ids, std::vector<FieldError>& errors,
                                         std::size_t lost) {
    if (files.empty()) {
      hold_files(state, form_key, files, ids, errors, lost);
      co_return;
    }
    co_await async_file_work(intake, [&] {
      hold_files(state, form_key, files, ids, errors, lost);
      return true;
    });
  }

  // The form again (422) with every error next to its field, in the order of the form.
  Response invalid_form(FormState& state, std::vector<FieldError> errors, const std::vector<Attachment>& files) {
    ++invalid;
    std::stable_sort(errors.begin(), errors.end(), [](const FieldError& a, const FieldError& b) {
      const auto position = [](const FieldError& e) {
        return e.path.starts_with("/attachments") ? form_field_specs.size() : field_position(field_for_pointer(e.path));
      };
      return position(a) < position(b);
    });
    for (const auto& e : errors) {
      if (e.path == "/attachments" || e.path.starts_with("/attachments/")) {
        std::string label = "Records:";  // what is said of all the files
        if (e.path.size() > 13) {
          const auto i = static_cast<std::size_t>(std::strtoul(e.path.c_str() + 13, nullptr, 10));
          label = file_label(i, i < files.size() ? files[i].title : std::string("?"));
        }
        auto text = sentence(label, e.message);
        state.summary.emplace_back(std::string(attachments_field), text);
        state.file_errors.push_back(std::move(text));
        continue;
      }
      const auto field = field_for_pointer(e.path);
      const auto* spec = find_field(field);
      if (spec == nullptr) {
        state.summary.emplace_back("", sentence(e.path.empty() ? "The referral" : field, e.message));
        continue;
      }
      auto text = sentence(spec->label, e.message);
      state.summary.emplace_back(std::string(spec->anchor), text);
      state.errors.try_emplace(field, std::move(text));
    }
    auto r = html_response(422, pages.render_form(state));
    r.log_note = "form=invalid errors=" + std::to_string(errors.size()) + " held=" + std::to_string(state.held.size());
    return r;
  }

  // The head passed check(): Host and Content-Type are the form's.
  asio::awaitable<Response> submit(const Request& request) {
    // CSRF first: nothing about the fields or files is looked at for a
    // refused request, and its body is not even parsed. The cookie and the
    // field must both be tokens this process signed, for the same browser,
    // and the field's (the rendered form's) not expired.
    if (!from_public_origin(request, public_origins())) co_return csrf_refused("cross_origin");
    const auto now = CsrfTokens::Clock::now();
    const auto cookie = csrf_cookie(request);
    if (!cookie) co_return csrf_refused("no_cookie");
    const auto cookie_token = tokens.verify(*cookie, now);
    if (!cookie_token) co_return csrf_refused("invalid_cookie");

    // A large body (spooled, or with files in it) is read back and parsed by
    // GMime on the blocking pool, as the intake's own file work is, not on
    // this I/O thread.
    std::variant<Body, std::string> body;
    if (IntakeService::is_file_work(request.body_file != nullptr, request.body.size())) {
      bool unreadable = false;
      try {
        body =
            co_await async_file_work(intake, [this, &request] { return read_body(request, intake.spool_directory()); });
      } catch (const std::exception& e) {
        // The body's spool does not open (changed on disk) or a file's
        // spool cannot be written: nothing is stored, try again.
        spdlog::error("form.body_unreadable error=\"{}\"", e.what());
        unreadable = true;
      }
      if (unreadable) co_return body_unreadable();
    } else {
      body = read_body(request, {});
    }
    if (const auto* why = std::get_if<std::string>(&body)) co_return bad_request(*why);
    auto& data = std::get<Body>(body).fields;
    auto& uploads = std::get<Body>(body).files;
    const std::string* token = nullptr;
    for (const auto& [name, value] : data) {
      if (name == csrf_field) {
        if (token != nullptr) co_return csrf_refused("repeated_field");
        token = &value;
      }
    }
    if (token == nullptr) co_return csrf_refused("no_field");
    const auto field_token = tokens.verify(*token, now);
    if (!field_token) co_return csrf_refused("invalid_field");
    if (!tokens_equal(cookie_token->browser, field_token->browser)) co_return csrf_refused("mismatch");

    auto read = read_form_fields(data);
    if (const auto* why = std::get_if<std::string>(&read)) co_return bad_request(*why);
    auto& fields = std::get<FormFields>(read);
    FormState state;
    state.csrf = *token;
    state.values = std::move(fields.values);
    state.submission = std::move(fields.submission_token);
    if (!is_token(state.submission)) co_return bad_request("The form was incomplete.");
    const auto policy = intake.policy();
    state.file_limits = policy->attachment_limits;

    Submission submission;
    submission.channel = "form";
    submission.client = client_of(cookie_token->browser);
    // The files: those held from an earlier attempt of this form (bar the
    // ones ticked to be removed), then the ones chosen now.
    const std::string form_key = submission.client + " " + state.submission;
    std::vector<std::string> wanted;
    for (const auto& id : fields.kept_files) {
      if (std::find(fields.removed_files.begin(), fields.removed_files.end(), id) == fields.removed_files.end() &&
          std::find(wanted.begin(), wanted.end(), id) == wanted.end()) {
        wanted.push_back(id);
      }
    }
    auto held = kept.find(form_key, wanted, std::chrono::steady_clock::now());
    std::vector<Attachment> files;
    std::vector<std::string> ids;
    for (auto& f : held.files) {
      files.push_back({std::move(f.title), {}, std::move(f.data), 1, {}, {}});
      ids.push_back(std::move(f.id));
    }
    for (auto& u : uploads) {
      files.push_back({u.filename.empty() ? "file " + std::to_string(files.size() + 1) : std::move(u.filename),
                       {},
                       std::move(u.data),
                       1,
                       {},
                       std::move(u.spooled)});
      ids.emplace_back();
    }
    uploads.clear();

    // A held file let go (expired): nothing is sent without it.
    if (held.missing != 0) {
      std::vector<FieldError> errors;
      co_await hold_files_apart(state, form_key, files, ids, errors, held.missing);
      co_return invalid_form(state, std::move(errors), files);
    }

    submission.body = form_to_json(state.values, files);
    // The files go beside the JSON, and wait on disk, sealed, while the
    // referral is planned and stored (those of a spooled body are there
    // already; those held for the form and those of a body in memory are
    // sealed now); they come back only if the form does (hold_files).
    if (std::any_of(files.begin(), files.end(), [](const Attachment& f) { return !f.spooled; })) {
      co_await async_file_work(intake, [this, &files] {
        for (auto& f : files) f.spool(intake.spool_directory());
        return true;
      });
    }
    submission.files = files;
    // One key per rendered form: a double click, a reload or the back button
    // and a second press send it again, and the store answers with the first.
    submission.idempotency_key = state.submission;
    auto outcome = co_await async_submit(intake, std::move(submission), accepted_response);

    using Kind = SubmissionOutcome::Kind;
    switch (outcome.kind) {
      case Kind::accepted:
      case Kind::replayed: {
        kept.forget(form_key);
        (outcome.kind == Kind::accepted ? stored : replayed)++;
        const auto location = "/referrals/" + outcome.id;
        auto r = html_response(303, "<!doctype html><title>Referral sent</title><p>The referral is stored: <a href=\"" +
                                        html_escape(location) + "\">see the confirmation</a>.</p>");
        r.headers.emplace_back("Location", location);
        r.log_note = "form=stored id=" + outcome.id;
        if (outcome.kind == Kind::replayed) r.log_note = "form=replayed id=" + outcome.id;
        if (outcome.eligibility) {
          r.log_note += " decision=" + std::string(to_string(outcome.eligibility->decision));
          auto* counts = intake_counts.load();
          if (outcome.kind == Kind::accepted && counts != nullptr) {
            counts->count(Channel::form, outcome.eligibility->decision);
          }
        }
        co_return r;
      }
      case Kind::invalid: {
        co_await hold_files_apart(state, form_key, files, ids, outcome.errors, 0);
        co_return invalid_form(state, std::move(outcome.errors), files);
      }
      case Kind::conflict: {
        kept.forget(form_key);  // the form's referral is stored already
        ++conflicts;
        const auto id = html_escape(outcome.id);
        auto r = pages.message(409, "This form was already sent",
                               "<p>It was stored as referral <strong class=\"reference-inline\">" + id +
                                   "</strong>. The changes made after it was sent were not stored.</p>\n"
                                   "<p>To correct or add to referral " +
                                   id + ", " + pages.call_office() + ".</p>\n<p><a href=\"/referrals/" + id +
                                   "\">See the confirmation</a> · <a href=\"/\">Refer another patient</a></p>");
        r.log_note = "form=conflict id=" + outcome.id;
        co_return r;
      }
      case Kind::malformed:
      case Kind::too_large:  // the form's submissions carry no plain_body_limit
        co_return bad_request("The form could not be turned into a referral.");
      case Kind::unavailable:
      case Kind::overloaded: {
        ++unavailable;
        std::vector<FieldError> none;
        co_await hold_files_apart(state, form_key, files, ids, none, 0);
        state.notice =
            "<div class=\"notice\" role=\"alert\">\n<h2>The referral was not sent</h2>\n"
            "<p>It could not be stored just now, and nothing was saved. Your entries are kept below: "
            "please press “Send referral” again in a minute, or " +
            pages.call_office() + ".</p>\n</div>";
        auto r = html_response(503, pages.render_form(state));
        r.headers.emplace_back("Retry-After", "30");
        r.log_note = "form=unavailable";
        co_return r;
      }
    }
    co_return bad_request("The form could not be processed.");
  }

  asio::awaitable<Response> confirmation(const Request& request, std::string id) {
    const auto not_shown = [this] {
      return pages.message(404, "Confirmation not available",
                           "<p>A confirmation is shown only in the browser that sent the referral, until the "
                           "browser is closed.</p>\n<p>If you need the reference number or the decision, " +
                               pages.call_office() + ".</p>\n<p><a href=\"/\">Refer a patient</a></p>");
    };
    const auto cookie = csrf_cookie(request);
    const auto browser = cookie ? tokens.verify(*cookie, CsrfTokens::Clock::now()) : std::nullopt;
    if (!looks_like_referral_id(id) || !browser) co_return not_shown();
    auto found = std::make_shared<std::optional<store::ReferralRow>>();
    auto status = std::make_shared<std::optional<store::ReferralStatus>>();
    // A named query, not a temporary inside co_await (GCC 12 destroys those twice).
    store::ReaderPool::Query query = [id, found, status](store::Database& db) {
      *found = store::find_referral(db, id);
      if (*found) *status = store::status_of(db, id);
    };
    const auto error = co_await store::async_read(readers, std::move(query));
    if (!error.empty()) {
      auto r = pages.message(503, "The confirmation cannot be shown just now",
                             "<p>Please reload this page in a minute, or " + pages.call_office() + ".</p>");
      r.headers.emplace_back("Retry-After", "30");
      co_return r;
    }
    // A browser sees only the referrals it sent.
    if (!*found || (*found)->channel != "form" || (*found)->client != client_of(browser->browser))
      co_return not_shown();
    const auto& row = **found;
    auto r = html_response(200, pages.render_confirmation(row.id, row.decision, row.urgency, row.reasons,
                                                          *status ? (*status)->status : OfficeStatus::received));
    r.log_note = "id=" + row.id;
    co_return r;
  }

  // ---- the one-tap acknowledgement link: /ack/<token>
  //
  // The token is the credential (256 random bits, single use, expiring; the
  // store keeps only its hash). GET only shows a page, so a mail scanner or
  // a link preview that follows the link changes nothing; the page's button
  // POSTs to the same address, and only that acknowledges. No page shows
  // patient data: the reference number and the status at most.

  // Safe HTML: the time in the office's zone, kept on one line.
  std::string when(std::chrono::system_clock::time_point t) const {
    std::string text;
    try {
      text = format_local_time(t, pages.office.hours.time_zone);
    } catch (const std::exception&) {
      text = format_utc_timestamp(t);
    }
    return "<span class=\"nowrap\">" + html_escape(text) + "</span>";
  }

  Response ack_message(unsigned status, std::string_view title, const std::string& body, std::string note) const {
    auto r = pages.message(status, title, body);
    // A link whose token is in the address: never indexed, never kept.
    r.headers.emplace_back("X-Robots-Tag", "noindex, nofollow");
    r.log_note = std::move(note);
    return r;
  }

  Response ack_unknown() const {
    return ack_message(404, "Link not recognised",
                       "<p>This acknowledgement link is not one referrald issued. It may have been copied only "
                       "in part: open it from the notification itself.</p>\n<p>To acknowledge the referral "
                       "another way, use <code>referralctl ack</code> with its reference number, or " +
                           pages.call_office() + ".</p>",
                       "ack=unknown");
  }

  Response ack_expired(const std::string& id) const {
    const auto ref = html_escape(id);
    return ack_message(410, "This link has expired",
                       "<p>The acknowledgement link for referral <strong class=\"reference-inline\">" + ref +
                           "</strong> has expired. Nothing was recorded.</p>\n<p>To acknowledge it now, use "
                           "<code>referralctl ack " +
                           ref + "</code>, or " + pages.call_office() + ".</p>",
                       "ack=expired id=" + id);
  }

  Response ack_used(const std::string& id, std::optional<std::chrono::system_clock::time_point> used_at) const {
    const auto ref = html_escape(id);
    return ack_message(410, "This link was already used",
                       "<p>The acknowledgement link for referral <strong class=\"reference-inline\">" + ref +
                           "</strong> was used" + (used_at ? " on " + when(*used_at) : std::string()) +
                           ". A link acknowledges once; nothing more was recorded.</p>\n<p><code>referralctl show " +
                           ref + "</code> shows who acknowledged it and when.</p>",
                       "ack=used id=" + id);
  }

  asio::awaitable<Response> ack_page(const std::string& token) {
    if (!is_ack_token(token)) co_return ack_unknown();
    auto found = std::make_shared<store::TokenLookup>();
    auto status = std::make_shared<std::optional<store::ReferralStatus>>();
    const auto now = std::chrono::system_clock::now();
    store::ReaderPool::Query query = [hash = ack_token_hash(token), now, found, status](store::Database& db) {
      *found = store::find_ack_token(db, hash, now);
      if (found->state != store::TokenState::unknown) *status = store::status_of(db, found->referral_id);
    };
    const auto error = co_await store::async_read(readers, std::move(query));
    if (!error.empty()) co_return ack_unavailable();
    switch (found->state) {
      case store::TokenState::unknown: co_return ack_unknown();
      case store::TokenState::expired: co_return ack_expired(found->referral_id);
      case store::TokenState::used: co_return ack_used(found->referral_id, found->used_at);
      case store::TokenState::valid: break;
    }
    const auto ref = html_escape(found->referral_id);
    std::string body =
        "<div class=\"panel confirmation\">\n<p class=\"reference-label\">Reference number</p>\n"
        "<p class=\"reference\" id=\"reference\">" +
        ref + "</p>\n</div>\n";
    if (*status && is_acknowledged((*status)->status)) {
      body += "<p>This referral was already acknowledged";
      if ((*status)->acknowledged_at) body += " on " + when(*(*status)->acknowledged_at);
      body += "; its status is <strong>" + html_escape(to_string((*status)->status)) + "</strong>.</p>\n";
    } else {
      body +=
          "<p>Press the button to record that you have seen this referral. Its escalation stops: nobody "
          "else is paged or emailed about it.</p>\n";
    }
    // The same address: the token in the path is all the POST needs.
    body += "<form method=\"post\" action=\"" + std::string(ack_path_prefix) + html_escape(token) +
            "\" class=\"actions\">\n<button class=\"button\" type=\"submit\">Acknowledge</button>\n</form>\n";
    co_return ack_message(200, "Acknowledge this referral", body, "ack=shown id=" + found->referral_id);
  }

  Response ack_unavailable() const {
    auto r = ack_message(503, "Nothing was recorded",
                         "<p>The referral store cannot be reached just now, so nothing was recorded. Please try "
                         "again in a minute, or " +
                             pages.call_office() + ".</p>",
                         "ack=unavailable");
    r.headers.emplace_back("Retry-After", "30");
    return r;
  }

  asio::awaitable<Response> ack_post(const Request& request, const std::string& token) {
    if (!is_ack_token(token)) co_return ack_unknown();
    // The token is the credential, but a page elsewhere that learnt it must
    // still not press the button for someone: the same origin check as the form.
    if (!from_public_origin(request, public_origins())) {
      co_return ack_message(403, "Nothing was recorded",
                            "<p>The acknowledgement was not sent from this site's own page. Open the link from "
                            "the notification and press the button there.</p>",
                            "ack=cross_origin");
    }
    const auto outcome = co_await status_changes.acknowledge(token);
    const auto ref = html_escape(outcome.referral_id);
    const std::string panel =
        "<div class=\"panel confirmation\">\n<p class=\"reference-label\">Reference number"
        "</p>\n<p class=\"reference\" id=\"reference\">" +
        ref + "</p>\n</div>\n";
    using Kind = LinkOutcome::Kind;
    switch (outcome.kind) {
      case Kind::acknowledged:
        co_return ack_message(200, "Referral acknowledged",
                              panel +
                                  "<p>Thank you. The referral is recorded as acknowledged, and its escalation "
                                  "has stopped.</p>",
                              "ack=acknowledged id=" + outcome.referral_id);
      case Kind::already_acknowledged:
        co_return ack_message(200, "Referral already acknowledged",
                              panel + "<p>Someone acknowledged this referral before you; its status is <strong>" +
                                  html_escape(to_string(outcome.status)) +
                                  "</strong>. Nothing more was recorded, and this link is now used.</p>",
                              "ack=already id=" + outcome.referral_id);
      case Kind::used: co_return ack_used(outcome.referral_id, outcome.used_at);
      case Kind::expired: co_return ack_expired(outcome.referral_id);
      case Kind::unknown: co_return ack_unknown();
      case Kind::unavailable: co_return ack_unavailable();
    }
    co_return ack_unavailable();
  }
};

Form::Form(const std::filesystem::path& web_dir, OfficeConfig office, IntakeService& intake, store::ReaderPool& readers,
           StatusChanges& status_changes)
    : impl_(std::make_unique<Impl>(web_dir, std::move(office), intake, readers, status_changes)) {}

Form::~Form() = default;

void check_web_dir(const std::filesystem::path& web_dir) { Pages pages(web_dir, OfficeConfig{}); }

std::optional<Response> Form::check(const Request& request) const {
  const std::string& path = request.path;
  const bool get = request.method == "GET" || request.method == "HEAD";
  // HEAD wherever GET: the server leaves the body out.
  if (path == "/" || path == "/referrals") {
    if (path == "/" && !get) return impl_->pages.method_not_allowed("GET, HEAD");
    if (path == "/referrals" && !get && request.method != "POST") {
      return impl_->pages.method_not_allowed("GET, HEAD, POST");
    }
    if (!at_public_origin(request, impl_->public_origins())) return impl_->misdirected();
    if (request.method == "POST" &&
        (request.count("content-type") != 1 || !is_form_content_type(request.header("content-type")))) {
      return impl_->unsupported_media_type();
    }
    return std::nullopt;
  }
  if (path.starts_with(ack_path_prefix) && !get && request.method != "POST") {
    return impl_->pages.method_not_allowed("GET, HEAD, POST");
  }
  if ((path.starts_with("/referrals/") || path.starts_with("/static/")) && !get) {
    return impl_->pages.method_not_allowed("GET, HEAD");
  }
  return std::nullopt;
}

Response Form::rate_limited(const Request& request, long long retry_after) const {
  (void)request;
  auto r = impl_->pages.message(429, "Too many requests",
                                "<p>Nothing was stored. This computer has sent too many requests in a short "
                                "time. Please wait a minute and send the form again, or " +
                                    impl_->pages.call_office() + ".</p>");
  r.headers.emplace_back("Retry-After", std::to_string(std::max<long long>(1, retry_after)));
  r.log_note = "form=rate_limited";
  return r;
}

Response Form::too_large(const Request& request, std::size_t limit) const {
  if (request.path != "/referrals") return Handler::too_large(request, limit);
  auto r = impl_->pages.message(
      413, "The referral was not sent",
      "<p>Nothing was stored. The form with its files came to more than the " + html_escape(describe_size(limit)) +
          " it may be.</p>\n<p>Go back, choose fewer or smaller files and send it again, or send the records by fax "
          "to " +
          html_escape(impl_->pages.office.fax) + ". If this keeps happening, " + impl_->pages.call_office() + ".</p>");
  r.log_note = "form=too_large";
  return r;
}

void Form::set_public_origins(std::vector<std::string> origins) {
  std::unique_lock lock(impl_->origins_mutex);
  impl_->origins = std::move(origins);
}

void Form::set_intake_counts(IntakeCounts* counts) { impl_->intake_counts = counts; }

asio::awaitable<Response> Form::handle(const Request& request) {
  if (auto refused = check(request)) co_return std::move(*refused);
  const std::string& path = request.path;
  if (path == "/") co_return impl_->form(request);
  if (path == "/referrals") {
    if (request.method == "POST") co_return co_await impl_->submit(request);
    // Someone reloading the address of a submitted form: back to a new one.
    auto r =
        html_response(303, "<!doctype html><title>Refer a patient</title><p><a href=\"/\">Refer a patient</a></p>");
    r.headers.emplace_back("Location", "/");
    co_return r;
  }
  if (path.starts_with("/referrals/")) {
    std::string id = path.substr(std::string_view("/referrals/").size());
    co_return co_await impl_->confirmation(request, std::move(id));
  }
  if (path.starts_with(ack_path_prefix)) {
    std::string token = path.substr(ack_path_prefix.size());
    if (request.method == "POST") co_return co_await impl_->ack_post(request, token);
    co_return co_await impl_->ack_page(token);
  }
  if (path.starts_with("/static/")) {
    co_return impl_->asset(request, std::string_view(path).substr(std::string_view("/static/").size()));
  }
  if (path.starts_with("/api/")) co_return Response::error(404, "not found");
  co_return impl_->pages.not_found();
}

std::string Form::metrics() const {
  std::string out;
  out += "# HELP referrald_form_submissions_total Web form submissions by outcome.\n";
  out += "# TYPE referrald_form_submissions_total counter\n";
  const std::pair<const char*, const std::atomic<std::uint64_t>*> counts[] = {
      {"stored", &impl_->stored},        {"replayed", &impl_->replayed},      {"invalid", &impl_->invalid},
      {"csrf_refused", &impl_->refused}, {"conflict", &impl_->conflicts},     {"unavailable", &impl_->unavailable},
      {"bad_request", &impl_->rejected}, {"misdirected", &impl_->wrong_host},
  };
  for (const auto& [name, value] : counts) {
    out += "referrald_form_submissions_total{outcome=\"" + std::string(name) + "\"} " + std::to_string(value->load()) +
           "\n";
  }
  return out;
}

}  // namespace referrald::http
