#include "adapters/http_fax/http_fax_adapter.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cctype>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>

#include "adapters/document/referral_pdf.hpp"
#include "adapters/document/referral_text.hpp"
#include "adapters/protocol/settings.hpp"
#include "util/duration.hpp"
#include "util/strings.hpp"

namespace referrald {

namespace asio = boost::asio;
using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

namespace {

// The memory of pending faxes is bounded: a provider that never finishes
// cannot grow it without end (the oldest entry goes; its next attempt
// submits again under the same Idempotency-Key).
constexpr std::size_t max_remembered = 10000;

bool printable_ascii(const std::string& value) {
  return !value.empty() && std::all_of(value.begin(), value.end(), [](char ch) {
    const auto u = static_cast<unsigned char>(ch);
    return u >= 0x20 && u < 0x7f;
  });
}

// A form field name or file name goes between quotes in Content-Disposition.
bool form_name(const std::string& value) {
  return printable_ascii(value) && value.find('"') == std::string::npos && value.find('\\') == std::string::npos;
}

// RFC 9110 token: an HTTP header name.
bool header_token(const std::string& value) {
  static constexpr std::string_view extra = "!#$%&'*+-.^_`|~";
  return !value.empty() && std::all_of(value.begin(), value.end(), [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) != 0 || extra.find(ch) != std::string_view::npos;
  });
}

bool listed(const std::vector<std::string>& values, const std::string& lowered) {
  return std::any_of(values.begin(), values.end(), [&](const std::string& v) { return lower(v) == lowered; });
}

// A JSON scalar as text: strings as they are, numbers and booleans as JSON.
std::optional<std::string> scalar_text(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number() || value.is_boolean()) return value.dump();
  return std::nullopt;
}

const json* at_pointer(const json& doc, const std::string& pointer) {
  try {
    const json::json_pointer p(pointer);
    if (!doc.contains(p)) return nullptr;
    return &doc.at(p);
  } catch (const json::exception&) {
    return nullptr;  // e.g. a non-numeric segment into an array
  }
}

std::string http_message(std::string_view what, const http_client::Reply& reply) {
  return std::string(what) + ": HTTP " + std::to_string(reply.status) + " " +
         http_client::printable_excerpt(reply.body, 160);
}

bool access_refused(long status) {
  return (status >= 300 && status < 400) || status == 401 || status == 403 || status == 404 || status == 405 ||
         status == 407;
}

bool worth_retrying(long status) { return status >= 500 || status == 408 || status == 429; }

std::vector<std::string> list_setting(const TargetConfig& target, const std::string& key,
                                      std::vector<std::string> fallback) {
  if (const auto* list = target.get_list(key)) return *list;
  return fallback;
}

}  // namespace

HttpFaxSettings http_fax_settings(const TargetConfig& target) {
  HttpFaxSettings s;
  s.target = target.name;
  const std::string* url = target.get_string("url");
  if (url == nullptr) throw target_error(target, "url", "missing");
  if (!http_client::is_https_url(*url) && !http_client::is_loopback_url(*url)) {
    throw target_error(target, "url",
                       "the fax is the referral itself; use https:// (plain http:// only to a "
                       "loopback address), got \"" +
                           *url + "\"");
  }
  s.url = *url;

  const std::string* username = target.get_string("username");
  const std::string* header_name = target.get_string("header_name");
  const std::string* password_file = target.get_string("password_file");
  const std::string* auth = target.get_string("auth");
  const std::string mode = auth != nullptr          ? *auth
                           : username != nullptr    ? "basic"
                           : header_name != nullptr ? "header"
                                                    : "none";
  if (mode == "basic") {
    s.auth = FaxAuth::basic;
    if (username == nullptr || password_file == nullptr) {
      throw target_error(target, "auth = \"basic\" needs username and password_file");
    }
    if (username->find(':') != std::string::npos || !printable_ascii(*username)) {
      throw target_error(target, "username", "printable text without ':'");
    }
    s.username = *username;
  } else if (mode == "header") {
    s.auth = FaxAuth::header;
    if (header_name == nullptr || password_file == nullptr) {
      throw target_error(target, "auth = \"header\" needs header_name and password_file");
    }
    if (!header_token(*header_name))
      throw target_error(target, "header_name", "not an HTTP header name: \"" + *header_name + "\"");
    s.header_name = *header_name;
  } else {
    s.auth = FaxAuth::none;
    if (username != nullptr || password_file != nullptr || header_name != nullptr) {
      throw target_error(target,
                         "auth = \"none\" sends no credentials: remove username, header_name and password_file");
    }
  }
  if (password_file != nullptr) {
    std::string problem;
    if (auto secret = http_client::read_secret_line(*password_file, &problem)) {
      if (!printable_ascii(*secret)) {
        s.problem = "password_file " + *password_file + " holds a control character";
      } else {
        s.secret = std::move(*secret);
      }
    } else {
      s.problem = "password_file " + problem;
    }
  }

  const std::string* to = target.get_string("to");
  if (to == nullptr || !printable_ascii(*to)) throw target_error(target, "to", "the fax number, printable text");
  s.to = *to;
  if (const std::string* field = target.get_string("to_field")) s.to_field = *field;
  if (const std::string* field = target.get_string("file_field")) s.file_field = *field;
  if (!form_name(s.to_field)) throw target_error(target, "to_field", "printable text without '\"' or '\\'");
  if (!form_name(s.file_field)) throw target_error(target, "file_field", "printable text without '\"' or '\\'");
  if (s.to_field == s.file_field) throw target_error(target, "to_field and file_field must differ");

  if (const std::string* path = target.get_string("id_path")) s.id_path = *path;
  s.id_pointer = http_client::json_pointer_from_path(s.id_path);
  if (s.id_pointer.empty())
    throw target_error(target, "id_path", "a dotted JSON path like \"data.id\", got \"" + s.id_path + "\"");
  if (const std::string* path = target.get_string("success_path")) {
    s.success_path = *path;
    s.success_pointer = http_client::json_pointer_from_path(*path);
    if (s.success_pointer.empty()) throw target_error(target, "success_path", "a dotted JSON path like \"success\"");
  }

  const std::string* status_url = target.get_string("status_url");
  const std::string* status_path = target.get_string("status_path");
  if ((status_url == nullptr) != (status_path == nullptr)) {
    throw target_error(target, "status_url and status_path go together (set both, or neither)");
  }
  if (status_url != nullptr) {
    if (status_url->find("{id}") == std::string::npos) {
      throw target_error(target, "status_url", "must hold \"{id}\", where the provider's id goes");
    }
    if (!http_client::is_https_url(*status_url) && !http_client::is_loopback_url(*status_url)) {
      throw target_error(
          target, "status_url: use https:// (plain http:// only to a loopback address), got \"" + *status_url + "\"");
    }
    s.status_url = *status_url;
    s.status_path = *status_path;
    s.status_pointer = http_client::json_pointer_from_path(*status_path);
    if (s.status_pointer.empty()) throw target_error(target, "status_path", "a dotted JSON path like \"data.status\"");
  }
  s.status_delivered = list_setting(target, "status_delivered", s.status_delivered);
  s.status_pending = list_setting(target, "status_pending", s.status_pending);
  s.status_retry = list_setting(target, "status_retry", s.status_retry);
  s.status_failed = list_setting(target, "status_failed", s.status_failed);
  const std::pair<const char*, const std::vector<std::string>*> lists[] = {{"status_delivered", &s.status_delivered},
                                                                           {"status_pending", &s.status_pending},
                                                                           {"status_retry", &s.status_retry},
                                                                           {"status_failed", &s.status_failed}};
  for (std::size_t i = 0; i < std::size(lists); ++i) {
    for (std::size_t j = i + 1; j < std::size(lists); ++j) {
      for (const auto& value : *lists[i].second) {
        if (listed(*lists[j].second, lower(value))) {
          throw target_error(target,
                             std::string(lists[i].first) + " and " + lists[j].first + " both list \"" + value + "\"");
        }
      }
    }
  }
  if (auto interval = target.get_duration("poll_interval")) {
    if (*interval < std::chrono::milliseconds(100))
      throw target_error(target, "poll_interval", "must be at least 100ms");
    s.poll_interval = *interval;
  }
  if (const std::string* ca = target.get_string("ca_file")) s.ca_file = *ca;
  s.budget = protocol::send_budget(target.timeout);
  if (!s.status_url.empty() && s.poll_interval * 2 > s.budget) {
    // Otherwise an attempt would end before it asks twice, and every
    // attempt would come back "not final" until the delivery dies.
    throw target_error(target, "poll_interval (" + format_duration(s.poll_interval) +
                                   ") must be at most half of what the target's timeout leaves for a send (" +
                                   format_duration(s.budget) + "); raise timeout or lower poll_interval");
  }
  return s;
}

std::string multipart_body(const std::string& boundary, const std::vector<FormPart>& parts) {
  std::string body;
  for (const auto& part : parts) {
    body += "--" + boundary + "\r\n";
    body += "Content-Disposition: form-data; name=\"" + part.name + "\"";
    if (!part.filename.empty()) body += "; filename=\"" + part.filename + "\"";
    body += "\r\n";
    if (!part.content_type.empty()) body += "Content-Type: " + part.content_type + "\r\n";
    body += "\r\n";
    body += part.value;
    body += "\r\n";
  }
  body += "--" + boundary + "--\r\n";
  return body;
}

std::string multipart_boundary(const std::vector<FormPart>& parts) {
  static constexpr char hex[] = "0123456789abcdef";
  std::random_device random;
  while (true) {
    std::string boundary = "referrald-";
    for (int i = 0; i < 32; ++i) boundary += hex[random() % 16];
    const bool clash = std::any_of(parts.begin(), parts.end(),
                                   [&](const FormPart& p) { return p.value.find(boundary) != std::string::npos; });
    if (!clash) return boundary;
  }
}

Outcome classify_fax_submit(const HttpFaxSettings& settings, const http_client::Reply& reply) {
  if (auto failed = http_client::classify_transfer(reply, "fax provider")) return *failed;
  const long status = reply.status;
  const std::string code = std::to_string(status);
  if (status < 200 || status >= 300) {
    const std::string message = http_message("fax provider", reply);
    if (worth_retrying(status)) return Outcome::transient(message, code);
    if (access_refused(status)) return Outcome::misconfigured(message, code);
    return Outcome::permanent(message, code);
  }
  // From here on the provider said yes: never submit again on our own
  // account, whatever is wrong with the reply.
  const json doc = json::parse(reply.body, nullptr, false);
  if (doc.is_discarded()) {
    return Outcome::misconfigured("fax provider: HTTP " + code +
                                      " but the reply is not JSON, so the fax's id is "
                                      "unknown (it may have been sent): " +
                                      http_client::printable_excerpt(reply.body, 120),
                                  code);
  }
  if (!settings.success_pointer.empty()) {
    const json* ok = at_pointer(doc, settings.success_pointer);
    if (ok == nullptr || *ok != true) {
      return Outcome::permanent("fax provider: HTTP " + code + " but " + settings.success_path +
                                    " is not true: " + http_client::printable_excerpt(reply.body, 160),
                                code);
    }
  }
  const json* id = at_pointer(doc, settings.id_pointer);
  const auto id_text = id != nullptr ? scalar_text(*id) : std::nullopt;
  if (!id_text || id_text->empty()) {
    return Outcome::misconfigured(
        "fax provider: HTTP " + code + " but no id at " + settings.id_path +
            " (the fax may have been sent; check id_path): " + http_client::printable_excerpt(reply.body, 160),
        code);
  }
  return Outcome::delivered(
      "accepted by the fax provider (HTTP " + code + ", id " + http_client::printable_excerpt(*id_text, 64) + ")",
      *id_text);
}

std::optional<std::string> fax_status_value(const HttpFaxSettings& settings, const std::string& body,
                                            std::string* problem) {
  const json doc = json::parse(body, nullptr, false);
  if (doc.is_discarded()) {
    if (problem != nullptr) *problem = "the status reply is not JSON";
    return std::nullopt;
  }
  const json* value = at_pointer(doc, settings.status_pointer);
  auto text = value != nullptr ? scalar_text(*value) : std::nullopt;
  if (!text) {
    if (problem != nullptr) *problem = "the status reply has no value at " + settings.status_path;
    return std::nullopt;
  }
  return text;
}

FaxStatus classify_fax_status(const HttpFaxSettings& settings, const std::string& value) {
  const std::string v = lower(value);
  if (listed(settings.status_delivered, v)) return FaxStatus::delivered;
  if (listed(settings.status_pending, v)) return FaxStatus::pending;
  if (listed(settings.status_retry, v)) return FaxStatus::retry;
  if (listed(settings.status_failed, v)) return FaxStatus::failed;
  return FaxStatus::unknown;
}

std::string fax_status_url(const HttpFaxSettings& settings, const std::string& provider_id) {
  std::string url = settings.status_url;
  const std::string encoded = http_client::percent_encode(provider_id);
  for (auto at = url.find("{id}"); at != std::string::npos; at = url.find("{id}", at + encoded.size())) {
    url.replace(at, 4, encoded);
  }
  return url;
}

HttpFaxAdapter::HttpFaxAdapter(HttpFaxSettings settings, FaxRenderer render, CurlPool& curl)
    : settings_(std::move(settings)), render_(std::move(render)), curl_(curl) {
  if (settings_.problem) {
    spdlog::error("httpfax.misconfigured target={} error=\"{}\"", settings_.target, *settings_.problem);
  }
}

http_client::Request HttpFaxAdapter::base_request(SteadyClock::time_point deadline) const {
  http_client::Request r;
  r.ca_file = settings_.ca_file;
  r.headers.push_back("Accept: application/json");
  if (settings_.auth == FaxAuth::basic) {
    r.username = settings_.username;
    r.password = settings_.secret;
  } else if (settings_.auth == FaxAuth::header) {
    r.headers.push_back(settings_.header_name + ": " + settings_.secret);
  }
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
  r.timeout = std::max<std::chrono::milliseconds>(left, std::chrono::seconds(1));
  return r;
}

std::optional<HttpFaxAdapter::Memory> HttpFaxAdapter::recall(const std::string& identity) {
  std::lock_guard lock(memory_mutex_);
  const auto it = memory_.find(identity);
  if (it == memory_.end()) return std::nullopt;
  return it->second;
}

void HttpFaxAdapter::remember(const std::string& identity, Memory memory) {
  std::lock_guard lock(memory_mutex_);
  if (memory_.size() >= max_remembered && memory_.find(identity) == memory_.end()) memory_.erase(memory_.begin());
  memory_[identity] = std::move(memory);
}

void HttpFaxAdapter::forget(const std::string& identity) {
  std::lock_guard lock(memory_mutex_);
  memory_.erase(identity);
}

asio::awaitable<Outcome> HttpFaxAdapter::send(const Delivery& delivery) {
  if (settings_.problem) co_return Outcome::misconfigured(*settings_.problem);
  const auto deadline = SteadyClock::now() + settings_.budget;
  const std::optional<Memory> memory = recall(delivery.identity);
  if (memory && memory->pending_id) {
    spdlog::info("httpfax.resume id={} target={} attempt={} provider_id={}", delivery.referral_id, delivery.target,
                 delivery.attempt, http_client::printable_excerpt(*memory->pending_id, 64));
    co_return co_await poll(delivery, *memory->pending_id, deadline);
  }
  const std::string key = memory && !memory->key.empty() ? memory->key : delivery.identity;
  Outcome submitted = co_await submit(delivery, key, deadline);
  if (submitted.kind != OutcomeClass::delivered) {
    if (submitted.kind != OutcomeClass::transient) forget(delivery.identity);
    co_return submitted;
  }
  if (settings_.status_url.empty()) {
    forget(delivery.identity);
    co_return submitted;
  }
  const std::string provider_id = *submitted.external_id;
  remember(delivery.identity, Memory{provider_id, key});
  co_return co_await poll(delivery, provider_id, deadline);
}

asio::awaitable<Outcome> HttpFaxAdapter::submit(const Delivery& delivery, const std::string& key,
                                                SteadyClock::time_point deadline) {
  http_client::Request request = base_request(deadline);
  request.method = "POST";
  request.url = settings_.url;
  request.headers.push_back("Idempotency-Key: " + key);
  // Rendering the PDF is CPU work: it happens on the CurlPool worker.
  request.prepare = [this, &delivery](http_client::Request& r) {
    std::vector<FormPart> parts;
    parts.push_back({settings_.to_field, settings_.to, "", ""});
    parts.push_back({settings_.file_field, render_(delivery), referral_pdf_filename(delivery), "application/pdf"});
    const std::string boundary = multipart_boundary(parts);
    r.body = multipart_body(boundary, parts);
    r.headers.push_back("Content-Type: multipart/form-data; boundary=" + boundary);
  };
  http_client::Reply reply;
  std::optional<std::string> render_problem;
  try {
    reply = co_await http_client::exchange(curl_, std::move(request));
  } catch (const DocumentError& e) {
    render_problem = e.what();
  }
  // The same referral renders the same way next time: no retry would help.
  if (render_problem) co_return Outcome::permanent("could not render the referral document: " + *render_problem);
  co_return classify_fax_submit(settings_, reply);
}

asio::awaitable<Outcome> HttpFaxAdapter::poll(const Delivery& delivery, const std::string& provider_id,
                                              SteadyClock::time_point deadline) {
  const std::string shown_id = http_client::printable_excerpt(provider_id, 64);
  asio::steady_timer timer(co_await asio::this_coro::executor);
  std::string last = "not yet asked";
  bool warned_unknown = false;
  while (SteadyClock::now() + settings_.poll_interval < deadline) {
    timer.expires_after(settings_.poll_interval);
    co_await timer.async_wait(asio::use_awaitable);

    http_client::Request request = base_request(deadline);
    request.method = "GET";
    request.url = fax_status_url(settings_, provider_id);
    const http_client::Reply reply = co_await http_client::exchange(curl_, std::move(request));
    if (auto failed = http_client::classify_transfer(reply, "fax status")) {
      if (failed->kind == OutcomeClass::misconfigured) {
        forget(delivery.identity);
        co_return *failed;
      }
      last = failed->message;
      continue;
    }
    if (reply.status < 200 || reply.status >= 300) {
      last = http_message("fax status", reply);
      if (access_refused(reply.status)) {
        forget(delivery.identity);
        co_return Outcome::misconfigured(last + " (fax id " + shown_id + ")", std::to_string(reply.status));
      }
      continue;  // 5xx, 429 and the like: ask again
    }
    std::string problem;
    const auto value = fax_status_value(settings_, reply.body, &problem);
    if (!value) {
      forget(delivery.identity);
      co_return Outcome::misconfigured("fax status: " + problem + " (check status_path; fax id " + shown_id +
                                       "): " + http_client::printable_excerpt(reply.body, 120));
    }
    const std::string shown_value = http_client::printable_excerpt(*value, 40);
    switch (classify_fax_status(settings_, *value)) {
      case FaxStatus::delivered:
        forget(delivery.identity);
        co_return Outcome::delivered("fax " + shown_id + " " + shown_value + " at the provider", provider_id);
      case FaxStatus::failed:
        forget(delivery.identity);
        co_return Outcome::permanent("fax " + shown_id + " " + shown_value + " at the provider", shown_value);
      case FaxStatus::retry:
        // The call failed (busy, no answer ...): fax again next attempt,
        // under a key the provider has not seen.
        remember(delivery.identity,
                 Memory{std::nullopt, delivery.identity + ".after-" + std::to_string(delivery.attempt)});
        co_return Outcome::transient("fax " + shown_id + " " + shown_value + " at the provider; sending again",
                                     shown_value);
      case FaxStatus::unknown:
        if (!warned_unknown) {
          spdlog::warn(
              "httpfax.status_unknown id={} target={} provider_id={} status=\"{}\" note=\"not in any "
              "status_* list; treated as pending\"",
              delivery.referral_id, delivery.target, shown_id, shown_value);
          warned_unknown = true;
        }
        [[fallthrough]];
      case FaxStatus::pending: last = "status " + shown_value; break;
    }
  }
  co_return Outcome::transient("fax " + shown_id + " not final within " + format_duration(settings_.budget) + " (" +
                               last + "); the next attempt asks again");
}

}  // namespace referrald
