// Queue figures for /metrics and the service status: cheap queries that stay
// on indexes however large the history grows.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "office/status.hpp"
#include "store/store.hpp"

namespace referrald::store {

struct StateCount {
  std::string target;
  DeliveryState state = DeliveryState::pending;
  std::int64_t count = 0;
};

// Deliveries per target in every state that still needs attention (pending,
// sending, retry, held) and dead ones; delivered and cancelled deliveries
// only grow and are counted by the dispatcher instead.
std::vector<StateCount> open_delivery_counts(Database& db);

// The next-attempt time of the longest-waiting due delivery (pending or
// retry, due at or before now), if any.
std::optional<TimePoint> oldest_due(Database& db, TimePoint now);

// The creation time of the oldest delivery still to be sent (pending,
// sending or retry; not held, which waits for an operator). Unlike
// oldest_due it keeps growing while a delivery sits out its backoff, so it
// shows how long a peer has been failing.
std::optional<TimePoint> oldest_unsent(Database& db);

// ---- the office's figures (kept by triggers, schema version 7) ----

struct AckTimeBucket {
  std::int64_t le_ms = 0;  // upper bound; INT64_MAX is +Inf
  std::int64_t count = 0;  // acknowledgements at or under le_ms (cumulative)
};

// Time from receipt to first acknowledgement for one urgency.
struct AckTimes {
  Urgency urgency = Urgency::routine;
  std::vector<AckTimeBucket> buckets;  // ascending le_ms, the last one +Inf
  std::int64_t sum_ms = 0;
};

struct OfficeFigures {
  std::vector<std::pair<OfficeStatus, std::int64_t>> by_status;  // every status, in the diagram's order
  std::vector<AckTimes> ack_times;                               // routine, urgent, emergent
  std::vector<std::pair<int, std::int64_t>> escalations_fired;   // by step, ascending
  std::int64_t overdue = 0;  // still received with an escalation step due at `now` (overdue_referrals)
};

// A few dozen rows, however many referrals, and the overdue referrals (the
// received ones' range of an index: what the office has not seen yet).
OfficeFigures office_figures(Database& db, TimePoint now);

}  // namespace referrald::store
