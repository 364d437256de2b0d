#include "store/figures.hpp"

namespace referrald::store {

std::vector<StateCount> open_delivery_counts(Database& db) {
  // One range of the (state, target) index per state: no scan of the history.
  auto& stmt = db.cached(
      "SELECT target, state, count(*) FROM deliveries "
      "WHERE state IN ('pending','sending','retry','held','dead') GROUP BY state, target");
  std::vector<StateCount> out;
  while (stmt.step()) {
    StateCount c;
    c.target = stmt.column_text(0);
    c.state = parse_delivery_state(stmt.column_text(1)).value_or(DeliveryState::pending);
    c.count = stmt.column_int(2);
    out.push_back(std::move(c));
  }
  stmt.reset();
  return out;
}

std::optional<TimePoint> oldest_due(Database& db, TimePoint now) {
  auto& stmt = db.cached(
      "SELECT min(next_attempt_ms) FROM deliveries INDEXED BY deliveries_due "
      "WHERE state IN ('pending','retry') AND next_attempt_ms <= ?1");
  stmt.bind(1, to_millis(now));
  std::optional<TimePoint> out;
  if (stmt.step() && !stmt.column_is_null(0)) out = from_millis(stmt.column_int(0));
  stmt.reset();
  return out;
}

std::optional<TimePoint> oldest_unsent(Database& db) {
  // Three ranges of the (state, target) index: only the open rows are read.
  auto& stmt = db.cached(
      "SELECT min(created_ms) FROM deliveries INDEXED BY deliveries_state_target "
      "WHERE state IN ('pending','sending','retry')");
  std::optional<TimePoint> out;
  if (stmt.step() && !stmt.column_is_null(0)) out = from_millis(stmt.column_int(0));
  stmt.reset();
  return out;
}

}  // namespace referrald::store
