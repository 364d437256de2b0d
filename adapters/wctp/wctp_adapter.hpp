// Pages the referral office through a WCTP 1.3 gateway: one enterprise
// wctp-SubmitRequest per delivery, POSTed over HTTPS on a CurlPool worker,
// carrying the SNPP page's text (document/page_text; never patient data) and the delivery
// identity as messageID. A security_code_file that cannot be read makes every
// send misconfigured instead of stopping the daemon. The document, the
// outcomes and the target keys: docs/channels.md#wctp.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "adapters/curl/curl_pool.hpp"
#include "config/config.hpp"
#include "dispatch/adapter.hpp"
#include "util/clock.hpp"

namespace referrald {

struct WctpSettings {
  std::string target;
  std::string url;
  std::string sender_id;
  std::optional<std::string> security_code;
  std::string recipient_id;
  std::string ca_file;
  std::size_t max_message_length = 240;
  std::string callback_phone;  // the office's phone
  Duration budget{std::chrono::seconds(54)};
  std::optional<std::string> problem;  // set: every send is misconfigured
};

// The shortest page max_message_length may ask for (as for SNPP): a
// reference number and an urgency word.
inline constexpr std::size_t min_wctp_page_length = 31;

// Reads and checks a [[target]] of type "wctp"; throws std::runtime_error
// naming the target for settings that can never work.
WctpSettings wctp_settings(const TargetConfig& target, const OfficeConfig& office);

class WctpAdapter final : public Adapter {
 public:
  // `clock` dates each request.
  WctpAdapter(WctpSettings settings, CurlPool& curl, const Clock& clock);
  boost::asio::awaitable<Outcome> send(const Delivery& delivery) override;

  // The request body for one attempt; for tests and send().
  std::string build_request(const Delivery& delivery, std::chrono::system_clock::time_point now) const;

 private:
  WctpSettings settings_;
  CurlPool& curl_;
  const Clock& clock_;
};

}  // namespace referrald
