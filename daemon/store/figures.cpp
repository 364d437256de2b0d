#include "store/figures.hpp"

#include <map>

#include "store/office.hpp"

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

OfficeFigures office_figures(Database& db, TimePoint now) {
  OfficeFigures out;
  {
    auto& stmt = db.cached("SELECT status, n FROM status_tallies");
    std::map<std::string, std::int64_t, std::less<>> counts;
    while (stmt.step()) counts[stmt.column_text(0)] = stmt.column_int(1);
    stmt.reset();
    for (const OfficeStatus s : all_office_statuses()) {
      const auto it = counts.find(to_string(s));
      out.by_status.emplace_back(s, it == counts.end() ? 0 : it->second);
    }
  }
  {
    auto& stmt = db.cached("SELECT urgency, le_ms, n, sum_ms FROM ack_times ORDER BY urgency, le_ms");
    std::map<Urgency, AckTimes> by_urgency;
    while (stmt.step()) {
      const auto urgency = parse_urgency(stmt.column_text(0));
      if (!urgency) continue;
      auto& times = by_urgency[*urgency];
      times.urgency = *urgency;
      times.buckets.push_back({stmt.column_int(1), stmt.column_int(2)});
      times.sum_ms += stmt.column_int(3);
    }
    stmt.reset();
    for (const Urgency u : {Urgency::routine, Urgency::urgent, Urgency::emergent}) {
      if (const auto it = by_urgency.find(u); it != by_urgency.end()) out.ack_times.push_back(std::move(it->second));
    }
  }
  {
    auto& stmt = db.cached("SELECT step, fired FROM escalation_tallies ORDER BY step");
    while (stmt.step()) out.escalations_fired.emplace_back(static_cast<int>(stmt.column_int(0)), stmt.column_int(1));
    stmt.reset();
  }
  out.overdue = static_cast<std::int64_t>(overdue_referrals(db, now).size());
  return out;
}

}  // namespace referrald::store
