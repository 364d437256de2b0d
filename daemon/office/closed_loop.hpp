// The closed loop's one rule: which status changes the referring clinician
// hears about, and through which targets ([closed_loop] in referrald.toml).
// Every way a status changes (referralctl, the office API, a one-tap link)
// asks here, so they all plan the same notices.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "office/status.hpp"
#include "util/duration.hpp"

namespace referrald {

// [closed_loop]: the referring clinician hears back.
struct ClosedLoopConfig {
  std::vector<OfficeStatus> on;                       // the changes that send a notice; empty: none
  std::vector<std::string> notify;                    // target names (usually recipient = "referrer")
  Duration ack_link_ttl{std::chrono::hours(24 * 7)};  // one-tap acknowledgement links
  // The origin the links in emails and faxes point at
  // ("https://referrals.example.org"); defaults to the first [http] public_origins.
  std::string link_origin;
};

// The targets to notify of a change to `to`: closed_loop.notify when `to` is
// one of closed_loop.on, otherwise none.
std::vector<std::string> notice_targets(const ClosedLoopConfig& loop, OfficeStatus to);

}  // namespace referrald
