// Queue figures for /metrics and the service status: cheap queries that stay
// on indexes however large the history grows.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

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

}  // namespace referrald::store
