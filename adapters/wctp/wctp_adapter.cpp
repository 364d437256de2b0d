#include "adapters/wctp/wctp_adapter.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <stdexcept>

#include "adapters/curl/http_client.hpp"
#include "adapters/protocol/settings.hpp"
#include "adapters/document/page_text.hpp"
#include "adapters/wctp/wctp_message.hpp"

namespace referrald {

namespace asio = boost::asio;

namespace {

// Values written into the XML come from the configuration: printable text
// only (the writer escapes markup; control characters have no place here).
bool printable_value(const std::string& value) {
  return !value.empty() && std::none_of(value.begin(), value.end(), [](char ch) {
    const auto u = static_cast<unsigned char>(ch);
    return u < 0x20 || u == 0x7f;
  });
}

}  // namespace

WctpSettings wctp_settings(const TargetConfig& target, const OfficeConfig& office) {
  WctpSettings s;
  s.target = target.name;
  const std::string* url = target.get_string("url");
  if (url == nullptr) throw target_error(target, "url", "missing");
  if (!http_client::is_https_url(*url) && !http_client::is_loopback_url(*url)) {
    throw target_error(target, "url",
                       "WCTP carries the security code; use https:// (plain http:// only to a "
                       "loopback address), got \"" +
                           *url + "\"");
  }
  s.url = *url;
  const std::string* sender = target.get_string("sender_id");
  if (sender == nullptr || !printable_value(*sender)) throw target_error(target, "sender_id", "must be printable text");
  s.sender_id = *sender;
  const std::string* recipient = target.get_string("recipient_id");
  if (recipient == nullptr || !printable_value(*recipient)) {
    throw target_error(target, "recipient_id", "must be printable text");
  }
  s.recipient_id = *recipient;
  if (const std::string* ca = target.get_string("ca_file")) s.ca_file = *ca;
  if (auto length = target.get_integer("max_message_length")) {
    if (*length < static_cast<std::int64_t>(min_wctp_page_length)) {
      throw target_error(target, "max_message_length",
                         "must be at least " + std::to_string(min_wctp_page_length) +
                             " (a reference number and the urgency), got " + std::to_string(*length));
    }
    s.max_message_length = static_cast<std::size_t>(*length);
  }
  if (const std::string* file = target.get_string("security_code_file")) {
    std::string problem;
    if (auto code = http_client::read_secret_line(*file, &problem)) {
      if (!printable_value(*code)) {
        s.problem = "security_code_file " + *file + " holds a control character";
      } else {
        s.security_code = std::move(*code);
      }
    } else {
      s.problem = "security_code_file " + problem;
    }
  }
  s.callback_phone = office.phone;
  s.budget = protocol::send_budget(target.timeout);
  return s;
}

WctpAdapter::WctpAdapter(WctpSettings settings, CurlPool& curl, const Clock& clock)
    : settings_(std::move(settings)), curl_(curl), clock_(clock) {
  if (settings_.problem) {
    // Loud now, and on every delivery until the file is fixed and the
    // configuration reloaded (SIGHUP).
    spdlog::error("wctp.misconfigured target={} error=\"{}\"", settings_.target, *settings_.problem);
  }
}

std::string WctpAdapter::build_request(const Delivery& delivery, std::chrono::system_clock::time_point now) const {
  WctpSubmit submit;
  submit.sender_id = settings_.sender_id;
  submit.security_code = settings_.security_code;
  submit.message_id = delivery.identity;
  submit.recipient_id = settings_.recipient_id;
  submit.submitted = now;
  submit.text = page_text(delivery, settings_.callback_phone, settings_.max_message_length);
  submit.high_priority = delivery.urgency != Urgency::routine;
  return build_wctp_submit(submit);
}

asio::awaitable<Outcome> WctpAdapter::send(const Delivery& delivery) {
  if (settings_.problem) co_return Outcome::misconfigured(*settings_.problem);
  http_client::Request request;
  try {
    request.body = build_request(delivery, clock_.now());
  } catch (const std::invalid_argument& e) {
    // The same delivery builds the same way next time.
    co_return Outcome::permanent(std::string("wctp: cannot build the request: ") + e.what());
  }
  request.method = "POST";
  request.url = settings_.url;
  request.headers = {"Content-Type: text/xml; charset=utf-8", "Accept: text/xml, application/xml"};
  request.ca_file = settings_.ca_file;
  request.timeout = settings_.budget;
  const http_client::Reply reply = co_await http_client::exchange(curl_, request);
  co_return classify_wctp_reply(reply);
}

}  // namespace referrald
