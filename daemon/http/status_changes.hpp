// The office's status changes that arrive over HTTP: the office API
// (POST /api/v1/referrals/{id}/status) and the one-tap acknowledgement link
// (POST /ack/<token>). Each is one job on the store's writer thread, so it
// shares group commits with intake and is answered only once durable.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "office/status.hpp"
#include "store/office.hpp"
#include "store/writer.hpp"
#include "util/clock.hpp"

namespace referrald::http {

// The targets to notify (the referrer's notices) for a change to a status:
// notice_targets(config.closed_loop, to), set by the composition root.
using NoticeTargets = std::function<std::vector<std::string>(OfficeStatus)>;

struct ChangeOutcome {
  enum class Kind {
    changed,      // recorded now
    replayed,     // the same change by the same caller was the last one: nothing new recorded
    refused,      // the status rules forbid it (result.refusal says why)
    not_found,    // no such referral
    unavailable,  // the store could not commit; nothing recorded
  };
  Kind kind = Kind::unavailable;
  store::StatusChangeResult result;
};

struct LinkOutcome {
  enum class Kind {
    acknowledged,          // this link acknowledged the referral now
    already_acknowledged,  // someone acknowledged it before; the link is used up now
    used,                  // the link was used before (used_at)
    expired,
    unknown,      // no such token
    unavailable,  // the store could not commit; nothing recorded
  };
  Kind kind = Kind::unavailable;
  std::string referral_id;                                       // all but unknown and unavailable
  std::optional<std::chrono::system_clock::time_point> used_at;  // used
  OfficeStatus status = OfficeStatus::received;                  // already_acknowledged: the status now
};

class StatusChanges {
 public:
  StatusChanges(store::Writer& writer, const Clock& clock);

  // Safe to call while requests run (SIGHUP).
  void set_notice_targets(NoticeTargets targets);
  // Called after a commit that planned notices (wakes the dispatcher; any
  // thread). Set before use.
  void on_deliveries_planned(std::function<void()> hook) { deliveries_planned_ = std::move(hook); }

  // Changes the referral's status as `actor` (the office key's id) through
  // the API. A request that repeats the last change exactly (same status,
  // same actor, same note) is replayed rather than refused, so a client
  // that lost the answer may send it again.
  boost::asio::awaitable<ChangeOutcome> change(std::string referral_id, OfficeStatus to,
                                               std::optional<std::string> note, std::string actor);

  // Uses a valid link token: marks it used and acknowledges its referral
  // (actor "link") if nobody has; else reports what the token's state is.
  // `token` has passed is_ack_token.
  boost::asio::awaitable<LinkOutcome> acknowledge(std::string token);

 private:
  std::vector<std::string> notice_targets(OfficeStatus to) const;

  store::Writer& writer_;
  const Clock& clock_;
  mutable std::mutex targets_mutex_;
  NoticeTargets notice_targets_;
  std::function<void()> deliveries_planned_;
};

}  // namespace referrald::http
