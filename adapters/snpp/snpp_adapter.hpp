// Pages the referral office through an SNPP gateway (RFC 1861 levels 1-2; or
// HylaFAX's hfaxd with hylafax = true): one page on one line, never patient
// data, shortened (never split) to max_message_length. The dialogue, the page
// text, the outcomes and the target keys: docs/channels.md#snpp.
//
// A repeat (attempt > 1) to HylaFAX first looks for the page an earlier
// attempt may have queued, over hfaxd's client protocol (hylafax_port), and
// takes it instead of paging twice: docs/hylafax.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "dispatch/adapter.hpp"

namespace referrald {

struct SnppSettings {
  std::string host;
  std::uint16_t port = 444;
  std::string login;  // empty: no LOGI (a level-1 server)
  std::optional<std::string> password;
  std::string pager_id;
  std::size_t max_message_length = 128;
  bool hylafax = false;
  std::uint16_t hylafax_port = 4559;  // hfaxd's client protocol, for the repeat check; 0: no check
  std::string callback_phone;         // the office's phone
  Duration budget{std::chrono::seconds(54)};
  Duration io_timeout{std::chrono::seconds(30)};
};

// The shortest page max_message_length may ask for: a reference number and
// an urgency word.
inline constexpr std::size_t min_page_length = 31;

// Reads and checks a [[target]] of type "snpp"; throws std::runtime_error
// naming the target.
SnppSettings snpp_settings(const TargetConfig& target, const OfficeConfig& office);

class SnppAdapter final : public Adapter {
 public:
  explicit SnppAdapter(SnppSettings settings);
  boost::asio::awaitable<Outcome> send(const Delivery& delivery) override;

 private:
  SnppSettings settings_;
};

}  // namespace referrald
