// Pages the referral office through a WCTP 1.3 gateway (shared PROTOCOLS.md
// §2): one enterprise wctp-SubmitRequest per delivery, an HTTPS POST of
// text/xml on a CurlPool worker, the certificate verified (ca_file for a
// private CA). The page is the one SNPP sends (document/page_text): reference
// number, urgency, decision and the office's call-back number, never patient
// data. messageID is the delivery identity, the same on every attempt, so a
// host can recognise a repeat; urgent and emergent referrals are sent with
// deliveryPriority="HIGH".
//
// Target keys (config/target_keys.cpp): url, sender_id, security_code_file,
// recipient_id, ca_file, max_message_length (default 240), and the common
// timeout. Plain http:// is refused except to a loopback address: the
// securityCode travels in the body.
//
// A security_code_file that cannot be read is not thrown: the daemon keeps
// taking referrals and every send reports misconfigured until the file is
// fixed and the configuration reloaded. Outcomes: see wctp_message.hpp.
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
