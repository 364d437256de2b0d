// Fax through a HylaFAX server, speaking its client protocol to hfaxd
// natively: upload the referral PDF, create and submit a job tagged with the
// delivery identity, and with done_when = "done" poll it until it is sent,
// within a budget shorter than the target's timeout. A repeated attempt takes
// a job with its tag instead of faxing twice. The dialogue, the outcomes and
// the target keys: docs/channels.md#hylafax.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "adapters/document/fax_document.hpp"
#include "config/config.hpp"
#include "dispatch/adapter.hpp"

namespace referrald {

struct HylafaxSettings {
  std::string host;  // name or literal address, no brackets
  std::uint16_t port = 4559;
  std::string user;
  std::optional<std::string> password;
  std::string dial;
  bool to_referrer = false;    // recipient = "referrer": dial each delivery's recipient instead
  std::string notify_address;  // empty: the server's default (user@client host)
  std::string from_user;
  bool wait_until_done = false;
  Duration poll_interval{std::chrono::seconds(30)};
  Duration budget{std::chrono::seconds(54)};      // the whole send, under the target's timeout
  Duration io_timeout{std::chrono::seconds(30)};  // one connect, read or write at most
};

// Reads and checks a [[target]] of type "hylafax"; throws std::runtime_error
// naming the target (an unreadable password file, a value that cannot be
// quoted in a JPARM).
HylafaxSettings hylafax_settings(const TargetConfig& target);

// A fax number as written in a referral ("+1 (901) 555-0101") as a dial
// string: its digits, with a leading "+" kept. Empty when it has no digit.
std::string fax_dial_string(std::string_view number);

class HylafaxAdapter final : public Adapter {
 public:
  HylafaxAdapter(HylafaxSettings settings, FaxRenderer render, boost::asio::any_io_executor blocking);
  boost::asio::awaitable<Outcome> send(const Delivery& delivery) override;

 private:
  HylafaxSettings settings_;
  FaxRenderer render_;  // runs on the blocking executor
  boost::asio::any_io_executor blocking_;
};

}  // namespace referrald
