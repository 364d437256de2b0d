#include "adapters/smtp/smtp_adapter.hpp"
#include "util/secret_file.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "adapters/document/referral_fields.hpp"
#include "adapters/document/referral_pdf.hpp"
#include "adapters/document/referral_text.hpp"
#include "adapters/protocol/settings.hpp"
#include "adapters/smtp/smtp_keys.hpp"
#include "util/strings.hpp"

namespace referrald {

namespace asio = boost::asio;

namespace {

// Notes why the message could not be read, without a throw: nothing may
// leave a callback into libcurl's C. An empty note (no allocation) when
// even the copy fails.
void note_read_problem(SmtpTransfer& upload, const char* what) noexcept {
  try {
    upload.read_problem = what;
  } catch (...) {
    upload.read_problem.emplace();
  }
}

// libcurl's read callback: the next piece of the message. A file that
// cannot be read aborts the transfer before the message's final ".", so the
// server keeps nothing of it.
size_t read_upload(char* buffer, size_t size, size_t count, void* user) {
  auto* upload = static_cast<SmtpTransfer*>(user);
  try {
    return upload->message.read(buffer, size * count);
  } catch (const std::exception& e) {
    note_read_problem(*upload, e.what());
  } catch (...) {
    note_read_problem(*upload, "unknown error");
  }
  return CURL_READFUNC_ABORT;
}

// libcurl's seek callback: to read the message again from `offset`. libcurl
// (7.88) asks for a rewind only to resend an HTTP or RTSP upload, never
// SMTP's; each attempt starts its message from the first byte (configure).
// Set so that a rewind, were one ever asked for, is right rather than a
// failed send.
int seek_upload(void* user, curl_off_t offset, int origin) {
  auto* upload = static_cast<SmtpTransfer*>(user);
  if (origin != SEEK_SET || offset < 0) return CURL_SEEKFUNC_CANTSEEK;
  return upload->message.seek(static_cast<std::size_t>(offset)) ? CURL_SEEKFUNC_OK : CURL_SEEKFUNC_FAIL;
}

// smtp://host:port[/helo]: the URL path is the EHLO name; `helo` replaces it.
std::string with_helo(const std::string& url, const std::string& helo) {
  const auto scheme_end = url.find("://");
  const auto path = url.find('/', scheme_end == std::string::npos ? 0 : scheme_end + 3);
  return (path == std::string::npos ? url : url.substr(0, path)) + "/" + helo;
}

bool is_hostname(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '.' || c == '[' || c == ']' || c == ':';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::optional<std::string> read_secret_file(const std::string& path, std::string* problem) {
  return referrald::read_secret_file(path, "password_file ", problem);
}

namespace {

// The target's settings as the adapter uses them; throws TargetSettingError
// for any that can never work. The password file is read by the adapter.
struct SmtpSettings {
  std::string url;
  bool require_tls = true;
  std::string ca_file;
  Mailbox from;
  std::vector<Mailbox> to;
};

SmtpSettings smtp_settings(const TargetConfig& target) {
  SmtpSettings s;
  const std::string* url = target.get_string("url");
  if (url == nullptr) throw target_error(target, "url", "required");
  const bool implicit_tls = url->starts_with("smtps://");
  if (!implicit_tls && !url->starts_with("smtp://")) {
    throw target_error(target, "url", "must start with smtp:// or smtps://, got \"" + *url + "\"");
  }
  // Mail carries patient data: plain text only when the operator says so.
  const std::string* starttls = target.get_string("starttls");
  const bool plaintext = !implicit_tls && starttls != nullptr && *starttls == "none";
  if (plaintext && target.get_bool("allow_plaintext") != true) {
    throw target_error(target, "starttls",
                       R"("none" with an smtp:// URL sends mail unencrypted; set allow_plaintext = true to allow it)");
  }
  s.require_tls = !plaintext;
  s.url = *url;
  if (const std::string* helo = target.get_string("helo")) {
    if (!is_hostname(*helo)) throw target_error(target, "helo", "must be a host name, got \"" + *helo + "\"");
    s.url = with_helo(s.url, *helo);
  }
  if (const std::string* ca = target.get_string("ca_file")) s.ca_file = *ca;

  std::string problem;
  const std::string* from = target.get_string("from");
  if (from == nullptr) throw target_error(target, "from", "required");
  auto parsed_from = parse_mailbox(*from, &problem);
  if (!parsed_from) throw target_error(target, "from", problem);
  s.from = std::move(*parsed_from);
  const auto* to = target.get_list("to");
  if (target.to_referrer()) {
    if (to != nullptr) {
      throw target_error(target, "to",
                         R"(not used with recipient = "referrer": each notice goes to the referral's email)");
    }
  } else {
    if (to == nullptr || to->empty()) throw target_error(target, "to", "needs at least one address");
    for (const auto& address : *to) {
      auto parsed = parse_mailbox(address, &problem);
      if (!parsed) throw target_error(target, "to", "\"" + address + "\": " + problem);
      s.to.push_back(std::move(*parsed));
    }
  }
  if ((target.get_string("username") == nullptr) != (target.get_string("password_file") == nullptr)) {
    throw target_error(target, "username and password_file go together (set both, or neither)");
  }
  return s;
}

}  // namespace

void check_smtp_target(const TargetConfig& target, const OfficeConfig&) { smtp_settings(target); }

SmtpAdapter::SmtpAdapter(const TargetConfig& target, CurlPool& curl, OfficeConfig office, const Clock& clock)
    : target_name_(target.name),
      to_referrer_(target.to_referrer()),
      curl_(curl),
      office_(std::move(office)),
      clock_(clock) {
  SmtpSettings s = smtp_settings(target);
  url_ = std::move(s.url);
  require_tls_ = s.require_tls;
  ca_file_ = std::move(s.ca_file);
  from_ = std::move(s.from);
  to_ = std::move(s.to);

  std::string problem;
  const std::string* username = target.get_string("username");
  const std::string* password_file = target.get_string("password_file");
  if (username != nullptr) {
    username_ = *username;
    if (auto secret = read_secret_file(*password_file, &problem)) {
      password_ = std::move(*secret);
    } else {
      problem_ = problem;
      // Loud now, and on every delivery until the file is fixed and the
      // configuration reloaded (SIGHUP).
      spdlog::error("smtp.misconfigured target={} error=\"{}\"", target.name, problem);
    }
  }
  budget_ = protocol::send_budget(target.timeout);
  if (!default_document_fonts().unicode_font) {
    spdlog::warn(
        "smtp.font_missing target={} font=\"{}\" note=\"names outside Windows-1252 will show as ? in the "
        "PDF; install fonts-dejavu-core\"",
        target.name, unicode_font_hint);
  }
}

MailMessage SmtpAdapter::build_message(const Delivery& delivery, std::chrono::system_clock::time_point now) const {
  MailMessage m;
  m.from = from_;
  m.to = recipients(delivery);
  m.subject = render_email_subject(delivery);
  m.message_id = delivery.identity + "@referrald";
  m.date = now;
  const ReferralDocument document = read_referral_document(delivery, office_);
  m.text = render_email_text(delivery, document.referrer, office_);
  // A referrer's notice is the text alone: the referral (the patient's
  // details) is not sent back.
  if (!is_referrer_notice(delivery)) {
    m.attachments.push_back(
        {referral_pdf_filename(delivery), "application/pdf", render_referral_pdf(delivery, document, office_, now)});
    // Then each file that came with it, as received, in its own part: left
    // in the spool the store opened it into, and read from it a block at a
    // time as the message is sent (MailStream), never whole.
    for (std::size_t i = 0; i < delivery.attachments.size(); ++i) {
      const Attachment& a = delivery.attachments[i];
      m.attachments.push_back({attachment_filename(delivery, i), a.content_type, a.data, a.spooled});
    }
  }
  return m;
}

std::vector<Mailbox> SmtpAdapter::recipients(const Delivery& delivery) const {
  if (!to_referrer_) return to_;
  std::string problem;
  auto parsed = delivery.recipient ? parse_mailbox(*delivery.recipient, &problem) : std::nullopt;
  if (!parsed) {
    // The referral's address was validated at intake; one that is not an
    // address now would never become one.
    throw DocumentError("the referrer's email address cannot be used: " +
                        (delivery.recipient ? problem : std::string("none given")));
  }
  parsed->display_name.clear();  // the address alone: the name would be PHI-free but unchecked text
  return {std::move(*parsed)};
}

asio::awaitable<Outcome> SmtpAdapter::send(const Delivery& delivery) {
  if (problem_) co_return Outcome::misconfigured(*problem_);

  // The transfer must end before the dispatcher's timeout abandons the send:
  // an abandoned transfer would go on in the background while the retry
  // sends again. Rendering comes out of the same budget.
  const auto deadline = std::chrono::steady_clock::now() + budget_;
  // Everything libcurl points at lives in this frame until perform() returns.
  SmtpTransfer transfer;
  CurlPool::Setup setup = [&](CURL* curl) {
    // Rendering (the PDF above all) is CPU work: it runs here, on the
    // worker, not on the dispatcher's I/O thread. If it throws, CurlPool
    // performs no transfer and perform() rethrows.
    transfer.message = MailStream(build_message(delivery, clock_.now()));
    transfer.to = recipients(delivery);
    transfer.deadline = deadline;
    configure(curl, transfer);
  };
  std::optional<std::string> render_problem;
  CurlResult result;
  try {
    result = co_await curl_.perform(std::move(setup));
  } catch (const DocumentError& e) {
    render_problem = e.what();
  }
  // The same referral renders the same way next time: no retry would help.
  if (render_problem) co_return Outcome::permanent("could not render the referral document: " + *render_problem);
  // The store opens the files afresh for the next attempt.
  if (transfer.read_problem)
    co_return Outcome::transient("smtp: the message could not be read: " + *transfer.read_problem);
  co_return classify_smtp_result(result);
}

void SmtpAdapter::configure(CURL* curl, SmtpTransfer& transfer) const {
  curl_slist* list = nullptr;
  for (const auto& m : transfer.to.empty() ? to_ : transfer.to) {
    list = curl_slist_append(list, ("<" + m.address + ">").c_str());
  }
  transfer.recipients.reset(list);
  transfer.message.seek(0);
  transfer.read_problem.reset();

  curl_easy_setopt(curl, CURLOPT_URL, url_.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  curl_easy_setopt(curl, CURLOPT_USE_SSL, static_cast<long>(require_tls_ ? CURLUSESSL_ALL : CURLUSESSL_NONE));
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!ca_file_.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, ca_file_.c_str());
  if (username_) {
    curl_easy_setopt(curl, CURLOPT_USERNAME, username_->c_str());
    curl_easy_setopt(curl, CURLOPT_PASSWORD, password_.c_str());
  }
  curl_easy_setopt(curl, CURLOPT_MAIL_FROM, ("<" + from_.address + ">").c_str());
  curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, transfer.recipients.get());
  curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(curl, CURLOPT_READFUNCTION, read_upload);
  curl_easy_setopt(curl, CURLOPT_READDATA, &transfer);
  curl_easy_setopt(curl, CURLOPT_SEEKFUNCTION, seek_upload);
  curl_easy_setopt(curl, CURLOPT_SEEKDATA, &transfer);
  curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(transfer.message.size()));
  // What is left of the send budget (see send()); rendering already spent some.
  const auto now = std::chrono::steady_clock::now();
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(transfer.deadline.value_or(now + budget_) - now);
  const long timeout_ms = static_cast<long>(std::max<std::int64_t>(1, left.count()));
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, std::min(timeout_ms, 30000L));
}

namespace {

// CURLE_SSL_CONNECT_ERROR stands for two different things: a handshake the
// server refused (no common protocol version or cipher, a TLS alert), which
// is configuration, and a connection that broke during the handshake (reset,
// closed: the network or a restarting server), which is not. OpenSSL reports
// the second as SSL_ERROR_SYSCALL or an unexpected EOF, and curl's message
// carries it; the code alone does not tell them apart.
bool handshake_broke(const std::string& error) {
  const std::string e = lower(error);
  for (const char* sign : {"ssl_error_syscall", "unexpected eof", "connection reset", "broken pipe"}) {
    if (e.find(sign) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

Outcome classify_smtp_result(const CurlResult& r) {
  const long reply = r.response_code;
  const std::optional<std::string> code = reply > 0 ? std::optional<std::string>(std::to_string(reply)) : std::nullopt;
  if (r.code == CURLE_OK) return Outcome::delivered("accepted for delivery (" + std::to_string(reply) + ")");
  const std::string message = "smtp: " + r.error + (reply > 0 ? " (reply " + std::to_string(reply) + ")" : "");
  if (r.code == CURLE_SSL_CONNECT_ERROR && handshake_broke(r.error)) return Outcome::transient(message, code);
  switch (r.code) {
    case CURLE_LOGIN_DENIED:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_USE_SSL_FAILED:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_AUTH_ERROR: return Outcome::misconfigured(message, code);
    default: break;
  }
  if (reply == 530 || reply == 535) return Outcome::misconfigured(message, code);
  if (reply >= 400 && reply < 500) return Outcome::transient(message, code);
  if (reply >= 500 && reply < 600) return Outcome::permanent(message, code);
  // No reply code: the connection failed, timed out or broke. Try again later.
  return Outcome::transient(message, code);
}

}  // namespace referrald
