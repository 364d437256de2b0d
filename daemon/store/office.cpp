#include "store/office.hpp"

#include <algorithm>
#include <sstream>
#include <stdexcept>

#include "store/payload.hpp"
#include "store/queries.hpp"
#include "store/rows.hpp"

namespace referrald::store {

namespace {

using detail::ResetOnExit;
using detail::status_at;
using detail::unexpected_value;

std::optional<StatusVia> parse_via(std::string_view s) {
  for (const StatusVia v : {StatusVia::cli, StatusVia::api, StatusVia::link}) {
    if (to_string(v) == s) return v;
  }
  return std::nullopt;
}

std::optional<EscalationState> parse_escalation_state(std::string_view s) {
  for (const EscalationState e : {EscalationState::pending, EscalationState::fired, EscalationState::stopped}) {
    if (to_string(e) == s) return e;
  }
  return std::nullopt;
}

std::vector<std::string> split_targets(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string t; in >> t;) out.push_back(t);
  return out;
}

// Sealed under a context of its own, so a note cannot pass for the document
// (or another change's note) if copied between rows.
std::string note_context(const std::string& referral_id, std::int64_t change_id) {
  return referral_id + "/status/" + std::to_string(change_id);
}

// One delivery per distinct target, due at `at`, for `purpose`.
int plan_deliveries(Database& db, const std::string& referral_id, const std::vector<std::string>& targets,
                    const std::string& purpose, std::int64_t at_ms) {
  Statement& st = db.cached(
      "INSERT INTO deliveries (referral_id, target, purpose, state, attempts, created_ms, next_attempt_ms, "
      "updated_ms) VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4, ?4) "
      "ON CONFLICT (referral_id, target, purpose) DO NOTHING");
  ResetOnExit reset(st);
  int planned = 0;
  for (const std::string& target : targets) {
    st.bind(1, std::string_view(referral_id))
        .bind(2, std::string_view(target))
        .bind(3, std::string_view(purpose))
        .bind(4, at_ms);
    st.run();
    planned += db.changes();
  }
  if (planned > 0) db.note_due();
  return planned;
}

EscalationRow read_escalation(const Statement& st) {
  EscalationRow row;
  row.referral_id = st.column_text(0);
  row.step = static_cast<int>(st.column_int(1));
  row.due_at = from_millis(st.column_int(2));
  row.after = std::chrono::seconds{st.column_int(3)};
  row.targets = split_targets(st.column_text(4));
  const auto state = parse_escalation_state(st.column_text(5));
  if (!state) unexpected_value("escalations.state");
  row.state = *state;
  if (!st.column_is_null(6)) row.done_at = from_millis(st.column_int(6));
  return row;
}

constexpr const char* escalation_columns = "referral_id, step, due_ms, after_s, targets, state, done_ms";

}  // namespace

std::string_view to_string(StatusVia v) noexcept {
  switch (v) {
    case StatusVia::cli: return "cli";
    case StatusVia::api: return "api";
    case StatusVia::link: return "link";
  }
  return "cli";
}

std::string_view to_string(EscalationState s) noexcept {
  switch (s) {
    case EscalationState::pending: return "pending";
    case EscalationState::fired: return "fired";
    case EscalationState::stopped: return "stopped";
  }
  return "pending";
}

std::optional<ReferralStatus> status_of(Database& db, const std::string& referral_id) {
  Statement& st = db.cached(
      "SELECT status, coalesce(status_ms, received_ms), acknowledged_ms, duplicate_of FROM referrals WHERE id = ?1");
  ResetOnExit reset(st);
  st.bind(1, std::string_view(referral_id));
  if (!st.step()) return std::nullopt;
  ReferralStatus s;
  s.status = status_at(st, 0, "referrals.status");
  s.since = from_millis(st.column_int(1));
  if (!st.column_is_null(2)) s.acknowledged_at = from_millis(st.column_int(2));
  s.duplicate_of = st.column_optional_text(3);
  return s;
}

StatusChangeResult change_status(Database& db, const StatusChange& change) {
  const auto current = status_of(db, change.referral_id);
  if (!current) throw NotFound("no referral " + change.referral_id);
  StatusChangeResult result;
  result.from = current->status;
  result.refusal = refuse_change(current->status, change.to);
  if (result.refusal) return result;

  const std::int64_t at_ms = to_millis(change.at);
  {
    Statement& st = db.cached(
        "UPDATE referrals SET status = ?2, status_ms = ?3, acknowledged_ms = coalesce(acknowledged_ms, ?4) "
        "WHERE id = ?1 AND status = ?5");
    ResetOnExit reset(st);
    st.bind(1, std::string_view(change.referral_id))
        .bind(2, to_string(change.to))
        .bind(3, at_ms)
        .bind(5, to_string(current->status));
    if (is_acknowledged(change.to)) {
      st.bind(4, at_ms);
    } else {
      st.bind_null(4);
    }
    st.run();
  }
  {
    Statement& st = db.cached(
        "INSERT INTO status_changes (referral_id, at_ms, actor, via, from_status, to_status) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id");
    ResetOnExit reset(st);
    st.bind(1, std::string_view(change.referral_id))
        .bind(2, at_ms)
        .bind(3, std::string_view(change.actor))
        .bind(4, to_string(change.via))
        .bind(5, to_string(current->status))
        .bind(6, to_string(change.to));
    st.step();
    result.change_id = st.column_int(0);
  }
  if (change.note) {
    Statement& st = db.cached("UPDATE status_changes SET note = ?2 WHERE id = ?1");
    ResetOnExit reset(st);
    st.bind(1, result.change_id)
        .bind_blob(2, seal_text(db.payload_keys(), *change.note, note_context(change.referral_id, result.change_id)));
    st.run();
  }
  if (is_acknowledged(change.to)) {
    Statement& st = db.cached(
        "UPDATE escalations SET state = 'stopped', done_ms = ?2 WHERE referral_id = ?1 AND state = 'pending'");
    ResetOnExit reset(st);
    st.bind(1, std::string_view(change.referral_id)).bind(2, at_ms);
    st.run();
    result.escalations_stopped = db.changes();
  }
  result.notices = plan_deliveries(db, change.referral_id, change.notice_targets,
                                   "notice-" + std::to_string(result.change_id), at_ms);
  audit(db, change.at, change.referral_id, std::nullopt, change.actor, "status",
        "from=" + std::string(to_string(current->status)) + " to=" + std::string(to_string(change.to)) +
            " via=" + std::string(to_string(change.via)) + " note=" + (change.note ? "yes" : "no") +
            " notices=" + std::to_string(result.notices));
  result.changed = true;
  return result;
}

namespace {

// A status_changes row from columns id, at_ms, actor, via, from_status,
// to_status, note; the note opened.
StatusHistoryEntry read_status_change(Database& db, const Statement& st, const std::string& referral_id) {
  StatusHistoryEntry e;
  e.id = st.column_int(0);
  e.at = from_millis(st.column_int(1));
  e.actor = st.column_text(2);
  const auto via = parse_via(st.column_text(3));
  if (!via) unexpected_value("status_changes.via");
  e.via = *via;
  e.from = status_at(st, 4, "status_changes.from_status");
  e.to = status_at(st, 5, "status_changes.to_status");
  if (!st.column_is_null(6)) {
    e.note = open_text(db.payload_keys(), st.column_blob(6), note_context(referral_id, e.id));
  }
  return e;
}

}  // namespace

std::vector<StatusHistoryEntry> status_history(Database& db, const std::string& referral_id) {
  Statement& st = db.cached(
      "SELECT id, at_ms, actor, via, from_status, to_status, note FROM status_changes "
      "WHERE referral_id = ?1 ORDER BY id");
  ResetOnExit reset(st);
  st.bind(1, std::string_view(referral_id));
  std::vector<StatusHistoryEntry> rows;
  while (st.step()) rows.push_back(read_status_change(db, st, referral_id));
  return rows;
}

std::optional<ReferralWithStatus> find_referral_with_status(Database& db, const std::string& referral_id) {
  auto row = find_referral(db, referral_id);
  if (!row) return std::nullopt;
  return ReferralWithStatus{std::move(*row), status_of(db, referral_id), status_history(db, referral_id)};
}

std::optional<StatusHistoryEntry> status_change(Database& db, const std::string& referral_id, std::int64_t change_id) {
  Statement& st = db.cached(
      "SELECT id, at_ms, actor, via, from_status, to_status, note FROM status_changes "
      "WHERE id = ?1 AND referral_id = ?2");
  ResetOnExit reset(st);
  st.bind(1, change_id).bind(2, std::string_view(referral_id));
  if (!st.step()) return std::nullopt;
  return read_status_change(db, st, referral_id);
}

NoteRekeyBatch rekey_status_notes(Database& db, std::int64_t after_id, int limit, const std::string& actor,
                                  TimePoint now) {
  const KeyRing* keys = db.payload_keys();
  if (keys == nullptr) throw std::logic_error("rekey needs storage.encryption_keys");
  const std::string& current = keys->current().id;
  Statement& select = db.cached(
      "SELECT id, referral_id, note FROM status_changes WHERE id > ?1 AND note IS NOT NULL ORDER BY id LIMIT ?2");
  Statement& update = db.cached("UPDATE status_changes SET note = ?2 WHERE id = ?1");
  struct Stored {
    std::int64_t id;
    std::string referral_id;
    std::string note;
  };
  std::vector<Stored> rows;
  {
    ResetOnExit reset(select);
    select.bind(1, after_id).bind(2, std::int64_t{limit});
    while (select.step()) rows.push_back({select.column_int(0), select.column_text(1), select.column_blob(2)});
  }
  NoteRekeyBatch batch;
  for (const Stored& row : rows) {
    ++batch.examined;
    batch.last_id = row.id;
    const std::string context = note_context(row.referral_id, row.id);
    try {
      const auto from = text_key_id(row.note, context);
      if (from == current) continue;
      const std::string sealed = seal_text(keys, open_text(keys, row.note, context), context);
      {
        ResetOnExit reset(update);
        update.bind(1, row.id).bind_blob(2, sealed);
        update.run();
      }
      audit(db, now, row.referral_id, std::nullopt, actor, "rekeyed",
            "note=" + std::to_string(row.id) + " from=" + from.value_or("plaintext") + " to=" + current);
      ++batch.rekeyed;
    } catch (const PayloadError& e) {
      batch.unreadable.push_back(e.what());
    }
  }
  return batch;
}

std::vector<EscalationRow> escalations_of(Database& db, const std::string& referral_id) {
  Statement& st =
      db.cached(std::string("SELECT ") + escalation_columns + " FROM escalations WHERE referral_id = ?1 ORDER BY step");
  ResetOnExit reset(st);
  st.bind(1, std::string_view(referral_id));
  std::vector<EscalationRow> rows;
  while (st.step()) rows.push_back(read_escalation(st));
  return rows;
}

std::vector<EscalationRow> fire_due_escalations(Database& db, TimePoint now, int limit) {
  const std::int64_t now_ms = to_millis(now);
  std::vector<EscalationRow> due;
  {
    Statement& st = db.cached(std::string("SELECT ") + escalation_columns +
                              " FROM escalations INDEXED BY escalations_due "
                              "WHERE state = 'pending' AND due_ms <= ?1 ORDER BY due_ms LIMIT ?2");
    ResetOnExit reset(st);
    st.bind(1, now_ms).bind(2, std::int64_t{limit});
    while (st.step()) due.push_back(read_escalation(st));
  }
  std::vector<EscalationRow> fired;
  Statement& mark = db.cached(
      "UPDATE escalations SET state = ?3, done_ms = ?4 WHERE referral_id = ?1 AND step = ?2 AND state = 'pending'");
  for (EscalationRow& step : due) {
    const auto status = status_of(db, step.referral_id);
    const bool fires = status && !is_acknowledged(status->status);
    {
      ResetOnExit reset(mark);
      mark.bind(1, std::string_view(step.referral_id))
          .bind(2, std::int64_t{step.step})
          .bind(3, std::string_view(fires ? "fired" : "stopped"))
          .bind(4, now_ms);
      mark.run();
    }
    if (db.changes() != 1 || !fires) continue;
    const int planned =
        plan_deliveries(db, step.referral_id, step.targets, "escalation-" + std::to_string(step.step), now_ms);
    audit(db, now, step.referral_id, std::nullopt, "referrald", "escalated",
          "step=" + std::to_string(step.step) + " after_s=" + std::to_string(step.after.count()) +
              " targets=" + std::to_string(planned));
    step.state = EscalationState::fired;
    step.done_at = now;
    fired.push_back(std::move(step));
  }
  return fired;
}

std::optional<TimePoint> next_escalation_due(Database& db) {
  Statement& st = db.cached("SELECT min(due_ms) FROM escalations INDEXED BY escalations_due WHERE state = 'pending'");
  ResetOnExit reset(st);
  if (!st.step() || st.column_is_null(0)) return std::nullopt;
  return from_millis(st.column_int(0));
}

std::vector<OverdueReferral> overdue_referrals(Database& db, TimePoint now) {
  Statement& st = db.cached(
      "SELECT r.id, r.urgency, r.received_ms, max(e.step), max(e.due_ms) "
      "FROM referrals AS r INDEXED BY referrals_status JOIN escalations AS e ON e.referral_id = r.id "
      "WHERE r.status = 'received' AND e.due_ms <= ?1 GROUP BY r.id ORDER BY r.received_ms, r.id");
  ResetOnExit reset(st);
  st.bind(1, to_millis(now));
  std::vector<OverdueReferral> out;
  while (st.step()) {
    OverdueReferral o;
    o.referral_id = st.column_text(0);
    const auto urgency = parse_urgency(st.column_text(1));
    if (!urgency) unexpected_value("referrals.urgency");
    o.urgency = *urgency;
    o.received_at = from_millis(st.column_int(2));
    o.step = static_cast<int>(st.column_int(3));
    o.due_at = from_millis(st.column_int(4));
    out.push_back(std::move(o));
  }
  return out;
}

void add_ack_token(Database& db, const std::string& referral_id, std::string_view token_hash, TimePoint now,
                   TimePoint expires_at) {
  Statement& st =
      db.cached("INSERT INTO ack_tokens (token_hash, referral_id, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)");
  ResetOnExit reset(st);
  st.bind(1, token_hash).bind(2, std::string_view(referral_id)).bind(3, to_millis(now)).bind(4, to_millis(expires_at));
  st.run();
}

TokenLookup find_ack_token(Database& db, std::string_view token_hash, TimePoint now) {
  Statement& st = db.cached("SELECT referral_id, expires_ms, used_ms FROM ack_tokens WHERE token_hash = ?1");
  ResetOnExit reset(st);
  st.bind(1, token_hash);
  TokenLookup t;
  if (!st.step()) return t;
  t.referral_id = st.column_text(0);
  if (!st.column_is_null(2)) {
    t.state = TokenState::used;
    t.used_at = from_millis(st.column_int(2));
  } else if (st.column_int(1) <= to_millis(now)) {
    t.state = TokenState::expired;
  } else {
    t.state = TokenState::valid;
  }
  return t;
}

bool use_ack_token(Database& db, std::string_view token_hash, TimePoint now) {
  Statement& st =
      db.cached("UPDATE ack_tokens SET used_ms = ?2 WHERE token_hash = ?1 AND used_ms IS NULL AND expires_ms > ?2");
  ResetOnExit reset(st);
  st.bind(1, token_hash).bind(2, to_millis(now));
  st.run();
  return db.changes() == 1;
}

}  // namespace referrald::store
