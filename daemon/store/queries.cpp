#include "store/queries.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <map>
#include <unordered_set>

#include "model/purpose.hpp"
#include "store/payload.hpp"
#include "store/rows.hpp"
#include "util/ids.hpp"
#include "util/strings.hpp"

namespace referrald::store {

namespace {

using detail::read_delivery;
using detail::ResetOnExit;
using detail::unexpected_value;

// The delivery columns of store.cpp, qualified with the table alias `d`.
constexpr const char* delivery_columns =
    "d.id, d.referral_id, d.target, d.state, d.attempts, d.created_ms, d.next_attempt_ms, d.lease_until_ms, "
    "d.last_error, d.external_id, d.updated_ms, d.purpose";
constexpr int delivery_column_count = 12;

DeliveryState state_at(const Statement& st, int column) {
  const auto state = parse_delivery_state(st.column_text(column));
  if (!state) unexpected_value("deliveries.state");
  return *state;
}

Decision decision_at(const Statement& st, int column) {
  const auto d = parse_decision(st.column_text(column));
  if (!d) unexpected_value("referrals.decision");
  return *d;
}

Urgency urgency_at(const Statement& st, int column) {
  const auto u = parse_urgency(st.column_text(column));
  if (!u) unexpected_value("referrals.urgency");
  return *u;
}

bool all_digits(const std::string& s) {
  return !s.empty() && s.size() <= 18 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::size_t index_of(DeliveryState s) {
  const auto it = std::find(all_delivery_states.begin(), all_delivery_states.end(), s);
  return static_cast<std::size_t>(it - all_delivery_states.begin());
}

std::size_t index_of(Decision d) {
  const auto it = std::find(all_decisions.begin(), all_decisions.end(), d);
  return static_cast<std::size_t>(it - all_decisions.begin());
}

void add_outcome(AttemptCounts& counts, AttemptOutcome outcome, std::int64_t n) {
  switch (outcome) {
    case AttemptOutcome::delivered: counts.delivered += n; break;
    case AttemptOutcome::transient: counts.transient += n; break;
    case AttemptOutcome::permanent: counts.permanent += n; break;
    case AttemptOutcome::misconfigured: counts.misconfigured += n; break;
  }
}

std::optional<AttemptOutcome> parse_outcome(std::string_view s) {
  for (auto o : {AttemptOutcome::delivered, AttemptOutcome::transient, AttemptOutcome::permanent,
                 AttemptOutcome::misconfigured}) {
    if (to_string(o) == s) return o;
  }
  return std::nullopt;
}

}  // namespace

void require_current_schema(Database& db) {
  const int version = current_schema_version(db);
  if (version > schema_version) {
    throw IncompatibleSchema("database schema version " + std::to_string(version) +
                             " is newer than this referralctl (" + std::to_string(schema_version) +
                             "): use the referralctl installed with the referrald that wrote it");
  }
  if (version == 0) {
    throw IncompatibleSchema("database " + db.name() + " has no referrald schema (start referrald once to create it)");
  }
  if (version < schema_version) {
    throw IncompatibleSchema("database schema version " + std::to_string(version) +
                             " is older than this referralctl (" + std::to_string(schema_version) +
                             "): start the new referrald once to upgrade it");
  }
}

// ---- list ----

ReferralPage list_referrals(Database& db, const ListFilter& filter) {
  const int limit = std::max(1, filter.limit);
  std::optional<std::int64_t> cursor_ms;
  std::string cursor_id;
  if (filter.before) {
    cursor_id = upper(*filter.before);
    Statement st = db.prepare("SELECT received_ms FROM referrals WHERE id = ?1");
    st.bind(1, std::string_view(cursor_id));
    if (!st.step()) throw NotFound("no referral " + *filter.before);
    cursor_ms = st.column_int(0);
  }

  // Without a delivery state the referrals are read newest first along
  // referrals_received (or referrals_decision). With one, along
  // deliveries_state_created, whose created_ms is the referral's received_ms:
  // a rare state (dead, held) then costs as little as a common one.
  // SQLite's CROSS JOIN keeps that order; PostgreSQL's planner chooses its
  // own, and its CROSS JOIN takes no ON.
  std::string sql;
  if (filter.delivery_state) {
    sql = std::string(
              "SELECT r.id, r.received_ms, r.decision, r.urgency, r.disease, r.channel, r.status, r.duplicate_of "
              "FROM deliveries AS d INDEXED BY deliveries_state_created ") +
          (db.dialect() == Dialect::sqlite ? "CROSS JOIN" : "JOIN") +
          " referrals AS r ON r.id = d.referral_id WHERE d.state = ?7";
    if (filter.since) sql += " AND d.created_ms >= ?3";
    if (cursor_ms) sql += " AND d.created_ms <= ?4";
  } else {
    sql =
        "SELECT r.id, r.received_ms, r.decision, r.urgency, r.disease, r.channel, r.status, r.duplicate_of "
        "FROM referrals AS r WHERE TRUE";
  }
  // Statuses are bound from ?10 on, one parameter each.
  if (!filter.statuses.empty()) {
    sql += " AND r.status IN (";
    for (std::size_t i = 0; i < filter.statuses.size(); ++i) {
      sql += (i == 0 ? "?" : ", ?") + std::to_string(10 + i);
    }
    sql += ")";
  }
  if (filter.decision) sql += " AND r.decision = ?1";
  if (filter.urgency) sql += " AND r.urgency = ?2";
  if (filter.since) sql += " AND r.received_ms >= ?3";
  if (cursor_ms) sql += " AND r.received_ms <= ?4 AND NOT (r.received_ms = ?4 AND r.id >= ?5)";
  if (filter.delivery_state) {
    // A referral with two deliveries in the state comes twice: counted once below.
    sql += " ORDER BY d.created_ms DESC, r.id DESC";
  } else {
    sql += " ORDER BY r.received_ms DESC, r.id DESC LIMIT ?6";
  }

  Statement st = db.prepare(sql);
  if (filter.decision) st.bind(1, to_string(*filter.decision));
  if (filter.urgency) st.bind(2, to_string(*filter.urgency));
  if (filter.since) st.bind(3, to_millis(*filter.since));
  if (cursor_ms) st.bind(4, *cursor_ms).bind(5, std::string_view(cursor_id));
  for (std::size_t i = 0; i < filter.statuses.size(); ++i) {
    st.bind(10 + static_cast<int>(i), to_string(filter.statuses[i]));
  }
  if (filter.delivery_state) {
    st.bind(7, to_string(*filter.delivery_state));
  } else {
    st.bind(6, std::int64_t{limit} + 1);
  }

  ReferralPage page;
  std::unordered_set<std::string> seen;
  bool more = false;
  while (st.step()) {
    std::string id = st.column_text(0);
    if (!seen.insert(id).second) continue;
    if (static_cast<int>(page.referrals.size()) == limit) {
      more = true;
      break;
    }
    ReferralSummary row;
    row.id = std::move(id);
    row.received_at = from_millis(st.column_int(1));
    row.decision = decision_at(st, 2);
    row.urgency = urgency_at(st, 3);
    row.disease = st.column_optional_text(4);
    row.channel = st.column_text(5);
    row.status = detail::status_at(st, 6, "referrals.status");
    row.duplicate_of = st.column_optional_text(7);
    page.referrals.push_back(std::move(row));
  }
  st.reset();
  if (more) page.next_before = page.referrals.back().id;

  Statement deliveries = db.prepare("SELECT id, target, state FROM deliveries WHERE referral_id = ?1 ORDER BY id");
  for (auto& row : page.referrals) {
    deliveries.bind(1, std::string_view(row.id));
    while (deliveries.step()) {
      row.deliveries.push_back({deliveries.column_int(0), deliveries.column_text(1), state_at(deliveries, 2)});
    }
    deliveries.reset();
  }
  return page;
}

// ---- show ----

std::vector<AttemptRow> attempts_of(Database& db, std::int64_t delivery_id) {
  Statement& st = db.cached(
      "SELECT delivery_id, attempt, started_ms, finished_ms, outcome, code, message, external_id "
      "FROM attempts WHERE delivery_id = ?1 ORDER BY attempt, id");
  ResetOnExit reset(st);
  st.bind(1, delivery_id);
  std::vector<AttemptRow> rows;
  while (st.step()) {
    AttemptRow a;
    a.delivery_id = st.column_int(0);
    a.attempt = static_cast<int>(st.column_int(1));
    a.started_at = from_millis(st.column_int(2));
    a.finished_at = from_millis(st.column_int(3));
    const auto outcome = parse_outcome(st.column_text(4));
    if (!outcome) unexpected_value("attempts.outcome");
    a.outcome = *outcome;
    a.code = st.column_optional_text(5);
    a.message = st.column_text(6);
    a.external_id = st.column_optional_text(7);
    rows.push_back(std::move(a));
  }
  return rows;
}

std::vector<AuditRow> audit_of(Database& db, const std::string& referral_id) {
  Statement& st = db.cached(
      "SELECT id, at_ms, referral_id, delivery_id, actor, action, detail FROM audit "
      "WHERE referral_id = ?1 ORDER BY at_ms, id");
  ResetOnExit reset(st);
  st.bind(1, std::string_view(referral_id));
  std::vector<AuditRow> rows;
  while (st.step()) {
    AuditRow a;
    a.id = st.column_int(0);
    a.at = from_millis(st.column_int(1));
    a.referral_id = st.column_optional_text(2);
    if (!st.column_is_null(3)) a.delivery_id = st.column_int(3);
    a.actor = st.column_text(4);
    a.action = st.column_text(5);
    a.detail = st.column_text(6);
    rows.push_back(std::move(a));
  }
  return rows;
}

// ---- queue ----

std::vector<QueueEntry> queue_entries(Database& db, const QueueFilter& filter) {
  // deliveries_state_target holds the few non-final rows among the many
  // final ones; the sort is over those few.
  std::string sql = std::string("SELECT ") + delivery_columns +
                    ", r.urgency FROM deliveries AS d INDEXED BY deliveries_state_target "
                    "JOIN referrals AS r ON r.id = d.referral_id "
                    "WHERE d.state IN ('pending', 'sending', 'retry', 'held')";
  if (filter.state) sql += " AND d.state = ?1";
  if (filter.target) sql += " AND d.target = ?2";
  sql += " ORDER BY d.next_attempt_ms, d.id";
  if (filter.limit > 0) sql += " LIMIT ?3";
  Statement st = db.prepare(sql);
  if (filter.state) st.bind(1, to_string(*filter.state));
  if (filter.target) st.bind(2, std::string_view(*filter.target));
  if (filter.limit > 0) st.bind(3, std::int64_t{filter.limit});
  std::vector<QueueEntry> rows;
  while (st.step()) rows.push_back({read_delivery(st), urgency_at(st, delivery_column_count)});
  return rows;
}

std::int64_t count_dead(Database& db, const std::optional<std::string>& target) {
  Statement st = db.prepare("SELECT count(*) FROM deliveries INDEXED BY deliveries_state_target WHERE state = 'dead'" +
                            std::string(target ? " AND target = ?1" : ""));
  if (target) st.bind(1, std::string_view(*target));
  st.step();
  return st.column_int(0);
}

// ---- stats ----

Stats collect_stats(Database& db, TimePoint now) {
  Stats s;
  const std::int64_t now_ms = to_millis(now);

  // Kept by triggers (schema version 3): ten rows, however many referrals.
  {
    Statement st = db.prepare("SELECT kind, value, n FROM tallies");
    while (st.step()) {
      const std::string kind = st.column_text(0);
      const std::string value = st.column_text(1);
      const std::int64_t n = st.column_int(2);
      if (kind == "decision") {
        const auto d = parse_decision(value);
        if (!d) unexpected_value("tallies.value");
        s.by_decision[index_of(*d)] = n;
        s.referrals += n;
      } else {
        const auto state = parse_delivery_state(value);
        if (!state) unexpected_value("tallies.value");
        s.by_state[index_of(*state)] = n;
        s.deliveries += n;
      }
    }
  }

  // Kept by triggers too (schema version 5): one row per status.
  {
    const auto& statuses = all_office_statuses();
    s.by_status.assign(statuses.size(), 0);
    Statement st = db.prepare("SELECT status, n FROM status_tallies");
    while (st.step()) {
      const OfficeStatus status = detail::status_at(st, 0, "status_tallies.status");
      s.by_status[static_cast<std::size_t>(std::find(statuses.begin(), statuses.end(), status) - statuses.begin())] =
          st.column_int(1);
    }
  }

  // The two halves of "due", as claim_due reads them.
  {
    Statement st =
        db.prepare(std::string("SELECT ") + delivery_columns +
                   ", d.next_attempt_ms AS due FROM deliveries AS d "
                   "INDEXED BY deliveries_due WHERE d.state IN ('pending', 'retry') AND d.next_attempt_ms <= ?1 "
                   "ORDER BY d.next_attempt_ms, d.id LIMIT 1");
    st.bind(1, now_ms);
    if (st.step()) s.oldest_due = read_delivery(st);
    st.reset();
    Statement lease =
        db.prepare(std::string("SELECT ") + delivery_columns +
                   " FROM deliveries AS d INDEXED BY deliveries_lease "
                   "WHERE d.state = 'sending' AND d.lease_until_ms <= ?1 ORDER BY d.lease_until_ms, d.id LIMIT 1");
    lease.bind(1, now_ms);
    if (lease.step()) {
      DeliveryRow row = read_delivery(lease);
      if (!s.oldest_due || row.lease_until < s.oldest_due->next_attempt_at) s.oldest_due = std::move(row);
    }
    Statement next = db.prepare(
        "SELECT min(next_attempt_ms) FROM deliveries INDEXED BY deliveries_due "
        "WHERE state IN ('pending', 'retry') AND next_attempt_ms > ?1");
    next.bind(1, now_ms);
    if (next.step() && !next.column_is_null(0)) s.next_due = from_millis(next.column_int(0));
  }

  std::map<std::string, TargetActivity> targets;
  auto target = [&](const std::string& name) -> TargetActivity& {
    auto& t = targets[name];
    t.target = name;
    return t;
  };
  {
    Statement st = db.prepare(
        "SELECT target, count(*) FROM deliveries INDEXED BY deliveries_state_target "
        "WHERE state IN ('pending', 'sending', 'retry', 'held') GROUP BY target");
    while (st.step()) target(st.column_text(0)).waiting = st.column_int(1);
  }
  {
    const std::int64_t hour_ago = now_ms - 3'600'000;
    const std::int64_t day_ago = now_ms - 86'400'000;
    Statement st = db.prepare(
        "SELECT d.target, a.outcome, count(*), sum(CASE WHEN a.finished_ms >= ?2 THEN 1 ELSE 0 END) "
        "FROM attempts AS a INDEXED BY attempts_finished JOIN deliveries AS d ON d.id = a.delivery_id "
        "WHERE a.finished_ms >= ?1 GROUP BY d.target, a.outcome");
    st.bind(1, day_ago).bind(2, hour_ago);
    while (st.step()) {
      const auto outcome = parse_outcome(st.column_text(1));
      if (!outcome) unexpected_value("attempts.outcome");
      auto& t = target(st.column_text(0));
      add_outcome(t.last_day, *outcome, st.column_int(2));
      add_outcome(t.last_hour, *outcome, st.column_int(3));
    }
  }
  for (auto& [name, activity] : targets) s.targets.push_back(std::move(activity));
  return s;
}

// ---- actions ----

std::string_view to_string(Action a) noexcept {
  switch (a) {
    case Action::retry: return "retry";
    case Action::cancel: return "cancel";
    case Action::hold: return "hold";
    case Action::release: return "release";
  }
  return "retry";
}

bool action_accepts(Action a, DeliveryState from) noexcept {
  using S = DeliveryState;
  switch (a) {
    case Action::retry: return from == S::dead || from == S::retry;
    case Action::cancel:
      return from == S::pending || from == S::retry || from == S::held || from == S::sending || from == S::dead;
    case Action::hold: return from == S::pending || from == S::retry;
    case Action::release: return from == S::held;
  }
  return false;
}

DeliveryState action_result(Action a) noexcept {
  switch (a) {
    case Action::retry: return DeliveryState::pending;
    case Action::cancel: return DeliveryState::cancelled;
    case Action::hold: return DeliveryState::held;
    case Action::release: return DeliveryState::pending;
  }
  return DeliveryState::pending;
}

std::string action_refusal(Action a, DeliveryState from) {
  using S = DeliveryState;
  switch (from) {
    case S::delivered:
    case S::cancelled: return "final";
    case S::sending: return "being sent right now";
    case S::held: return a == Action::hold ? "already held" : "release it instead";
    case S::pending: return a == Action::release ? "not held" : "already due";
    case S::dead: return a == Action::release ? "not held" : "final; retry it first";
    case S::retry: return "not held";
  }
  return "not applicable";
}

std::vector<DeliveryRow> resolve_deliveries(Database& db, const std::string& name) {
  std::vector<DeliveryRow> rows;
  if (all_digits(name)) {
    Statement st = db.prepare(std::string("SELECT ") + delivery_columns + " FROM deliveries AS d WHERE d.id = ?1");
    st.bind(1, static_cast<std::int64_t>(std::stoll(name)));
    if (!st.step()) throw NotFound("no delivery " + name);
    rows.push_back(read_delivery(st));
    return rows;
  }
  if (looks_like_referral_id(name)) {
    const std::string id = upper(name);
    Statement exists = db.prepare("SELECT 1 FROM referrals WHERE id = ?1");
    exists.bind(1, std::string_view(id));
    if (!exists.step()) throw NotFound("no referral " + name);
    return deliveries_of(db, id);
  }
  const auto dot = name.find('.');
  if (dot != std::string::npos && looks_like_referral_id(std::string_view(name).substr(0, dot))) {
    // REFERRAL.TARGET (the intake notification) or REFERRAL.TARGET.PURPOSE
    // (util/ids.hpp's delivery_identity); a target name may hold dots too.
    std::string_view target = std::string_view(name).substr(dot + 1);
    std::string purpose = "intake";
    const auto last = target.rfind('.');
    if (last != std::string_view::npos && parse_delivery_purpose(target.substr(last + 1))) {
      purpose = std::string(target.substr(last + 1));
      target = target.substr(0, last);
    }
    Statement st = db.prepare(std::string("SELECT ") + delivery_columns +
                              " FROM deliveries AS d WHERE d.referral_id = ?1 AND d.target = ?2 AND d.purpose = ?3");
    const std::string referral_id = upper(name.substr(0, dot));
    st.bind(1, std::string_view(referral_id)).bind(2, target).bind(3, std::string_view(purpose));
    if (!st.step()) throw NotFound("no delivery " + name);
    rows.push_back(read_delivery(st));
    return rows;
  }
  throw NotFound("no referral or delivery " + name +
                 " (expected a delivery number, a referral id like R-20261128-7K3M9-TZQXA, or REFERRAL.TARGET)");
}

std::vector<DeliveryRow> deliveries_for_all(Database& db, Action a, const std::optional<std::string>& target) {
  std::string states;
  for (auto s : all_delivery_states) {
    if (!action_accepts(a, s)) continue;
    states += states.empty() ? "'" : ", '";
    states += to_string(s);
    states += "'";
  }
  std::string sql = std::string("SELECT ") + delivery_columns +
                    " FROM deliveries AS d INDEXED BY deliveries_state_target WHERE d.state IN (" + states + ")";
  if (target) sql += " AND d.target = ?1";
  sql += " ORDER BY d.id";
  Statement st = db.prepare(sql);
  if (target) st.bind(1, std::string_view(*target));
  std::vector<DeliveryRow> rows;
  while (st.step()) rows.push_back(read_delivery(st));
  return rows;
}

std::vector<ActionChange> apply_action(Database& db, Action a, const std::vector<DeliveryRow>& deliveries,
                                       const std::string& actor, TimePoint now) {
  const std::int64_t now_ms = to_millis(now);
  const DeliveryState to = action_result(a);
  // retry and release make the delivery due now: on PostgreSQL the commit
  // wakes the idle dispatchers (Database::note_due); they also poll the
  // store at least every second and claim it.
  const bool due_now = a == Action::retry || a == Action::release;
  Statement& st = db.cached(
      "UPDATE deliveries SET state = ?1, next_attempt_ms = CASE WHEN ?2 THEN ?3 ELSE next_attempt_ms END, "
      "lease_until_ms = NULL, updated_ms = ?3 WHERE id = ?4 AND state = ?5");
  std::vector<ActionChange> changes;
  for (const DeliveryRow& d : deliveries) {
    ActionChange change{d, to, false, {}};
    if (!action_accepts(a, d.state)) {
      change.refusal = action_refusal(a, d.state);
      changes.push_back(std::move(change));
      continue;
    }
    {
      ResetOnExit reset(st);
      st.bind(1, to_string(to))
          .bind(2, std::int64_t{due_now ? 1 : 0})
          .bind(3, now_ms)
          .bind(4, d.id)
          .bind(5, to_string(d.state));
      st.run();
    }
    if (db.changes() != 1) {
      // Another writer moved it between reading and now (only possible
      // outside an IMMEDIATE transaction).
      change.refusal = "changed meanwhile; look again";
      changes.push_back(std::move(change));
      continue;
    }
    change.applied = true;
    if (due_now) db.note_due();
    audit(db, now, d.referral_id, d.id, actor, std::string(to_string(a)),
          "target=" + d.target + " from=" + std::string(to_string(d.state)) + " to=" + std::string(to_string(to)));
    changes.push_back(std::move(change));
  }
  return changes;
}

// ---- purge ----

std::vector<PurgeCandidate> purge_candidates(Database& db, TimePoint cutoff, const std::optional<PurgeCandidate>& after,
                                             int limit) {
  std::string sql =
      "SELECT r.id, r.received_ms, r.decision FROM referrals AS r INDEXED BY referrals_received "
      "WHERE r.received_ms < ?1 AND NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.referral_id = r.id "
      "AND d.state IN ('pending', 'sending', 'retry', 'held'))";
  if (after) sql += " AND r.received_ms >= ?2 AND NOT (r.received_ms = ?2 AND r.id <= ?3)";
  sql += " ORDER BY r.received_ms, r.id LIMIT ?4";
  Statement& st = db.cached(sql);
  ResetOnExit reset(st);
  st.bind(1, to_millis(cutoff)).bind(4, std::int64_t{limit});
  if (after) st.bind(2, to_millis(after->received_at)).bind(3, std::string_view(after->id));
  std::vector<PurgeCandidate> rows;
  while (st.step()) rows.push_back({st.column_text(0), from_millis(st.column_int(1)), decision_at(st, 2)});
  return rows;
}

void purge_referral(Database& db, const PurgeCandidate& referral, const std::string& actor, TimePoint now,
                    const std::string& detail) {
  {
    Statement& st = db.cached("DELETE FROM referrals WHERE id = ?1");
    ResetOnExit reset(st);
    st.bind(1, std::string_view(referral.id));
    st.run();
  }
  audit(db, now, referral.id, std::nullopt, actor, "purged", detail);
}

std::int64_t count_received_before(Database& db, TimePoint cutoff) {
  Statement st = db.prepare("SELECT count(*) FROM referrals WHERE received_ms < ?1");
  st.bind(1, to_millis(cutoff));
  st.step();
  return st.column_int(0);
}

// ---- rekey ----

void zero_freed_space(Database& db) {
  // PostgreSQL has no such setting: a row's old versions stay in the table's
  // pages until VACUUM reuses them (docs/storage.md).
  if (db.dialect() == Dialect::sqlite) db.exec("PRAGMA secure_delete = ON");
}

RekeyBatch rekey_referrals(Database& db, const std::optional<std::string>& after, int limit, const std::string& actor,
                           TimePoint now) {
  const KeyRing* keys = db.payload_keys();
  if (keys == nullptr) throw std::logic_error("rekey needs storage.encryption_keys");
  const std::string& current = keys->current().id;
  // Along the primary key, so each batch costs `limit` rows however many
  // referrals there are, and rows the daemon adds meanwhile cannot make a
  // batch skip or repeat one.
  Statement& select = db.cached("SELECT id, document FROM referrals WHERE id > ?1 ORDER BY id LIMIT ?2");
  Statement& update = db.cached("UPDATE referrals SET document = ?2 WHERE id = ?1");
  struct Stored {
    std::string id;
    std::string document;
  };
  std::vector<Stored> rows;
  {
    ResetOnExit reset(select);
    select.bind(1, std::string_view(after.value_or(""))).bind(2, std::int64_t{limit});
    while (select.step()) rows.push_back({select.column_text(0), select.column_blob(1)});
  }
  RekeyBatch batch;
  for (const Stored& row : rows) {
    ++batch.examined;
    batch.last_id = row.id;
    try {
      const auto from = payload_key_id(row.document, row.id);
      if (from == current) continue;
      const std::string sealed = seal_payload(keys, open_payload(keys, row.document, row.id), row.id);
      {
        ResetOnExit reset(update);
        update.bind(1, std::string_view(row.id)).bind_blob(2, sealed);
        update.run();
      }
      audit(db, now, row.id, std::nullopt, actor, "rekeyed", "from=" + from.value_or("plaintext") + " to=" + current);
      ++batch.rekeyed;
    } catch (const PayloadError& e) {
      batch.unreadable.push_back(e.what());
    }
  }
  return batch;
}

}  // namespace referrald::store
