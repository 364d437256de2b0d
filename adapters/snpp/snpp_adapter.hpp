// Pages the referral office through an SNPP gateway (RFC 1861 levels 1-2;
// see shared PROTOCOLS.md §1): LOGI, PAGE, MESS, SEND, QUIT. HylaFAX's hfaxd
// (`hylafax = true`) also gets SITE FROMUSER <delivery identity> (the job's
// "sender:", so a repeat is recognisable in its queue) and SITE JQUEUE yes
// (SEND answers once the page is queued, not when the TAP call ends).
//
// The page carries no patient data: the reference number, the urgency, the
// decision and the office's call-back number, e.g.
//   "referrald R-20261128-7K3M9-TZQXA URGENT review call 1-888-226-4343"
// It is always one page on one line (MESS). When it is longer than
// max_message_length (default 128, hfaxd's limit) the least useful words go
// first — "referrald", "call", the decision, the call-back number — and the
// reference number and urgency stay. It is never split into several pages:
// a split page can arrive out of order or in part, and a retry after a
// partial failure would repeat the first part.
//
// A repeat (attempt > 1) to HylaFAX first looks for the page an earlier
// attempt may have queued: over hfaxd's client protocol (hylafax_port,
// default 4559, the same login) it lists sendq and doneq by sender. A page
// job there that HylaFAX has queued or sent is taken instead of paging
// again ("snpp.repeat_recognised"), so a reply lost after SEND, a timeout
// or a crash does not page the office twice. When the queues cannot be
// read, or hold only a job still being submitted (SUSPENDED), the attempt
// pages and its message says so: the only cases that may repeat a page.
// docs/hylafax.md has the details and the HylaFAX source behind them.
//
// Outcomes: 550/552 to PAGE -> permanent (unknown pager id); 4xx (421) and
// 554 -> transient (hfaxd's "554 Failed to submit message N" to SEND: its
// scheduler did not queue the page); 530/550 to LOGI (or 530 anywhere) ->
// misconfigured; other 5xx to MESS/SEND -> permanent; connection failures,
// timeouts -> transient.
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
  std::string callback_phone;  // the office's phone
  Duration budget{std::chrono::seconds(54)};
  Duration io_timeout{std::chrono::seconds(30)};
};

// The shortest page max_message_length may ask for: a reference number and
// an urgency word.
inline constexpr std::size_t min_page_length = 31;

// Reads and checks a [[target]] of type "snpp"; throws std::runtime_error
// naming the target.
SnppSettings snpp_settings(const TargetConfig& target, const OfficeConfig& office);

// The page text (pure): at most max_length bytes, printable ASCII, one line.
std::string page_text(const Delivery& delivery, const std::string& callback_phone, std::size_t max_length);

class SnppAdapter final : public Adapter {
 public:
  explicit SnppAdapter(SnppSettings settings);
  boost::asio::awaitable<Outcome> send(const Delivery& delivery) override;

 private:
  SnppSettings settings_;
};

}  // namespace referrald
