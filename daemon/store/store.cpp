#include "store/store.hpp"

#include "model/reasons_json.hpp"
#include "store/audit_chain.hpp"
#include "store/attachments.hpp"
#include "store/payload.hpp"
#include "store/rows.hpp"
#include "util/crypto.hpp"
#include "util/strings.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <string>
#include <unordered_set>

namespace referrald::store {

namespace {

using detail::read_delivery;
using detail::ResetOnExit;
using detail::unexpected_value;

// Makes a multi-statement write atomic on its own: nested in the writer's
// transaction it is a savepoint; alone it is a transaction of its own.
// Runs once per referral: prepared once per connection, like every query.
class Savepoint {
 public:
  Savepoint(Database& db, std::string name) : db_(db), name_(std::move(name)) {
    // PostgreSQL has no savepoint outside a transaction (SQLite starts one):
    // there it is a write transaction of its own.
    outer_ = db_.dialect() == Dialect::postgresql && !db_.in_transaction();
    if (outer_) {
      db_.begin_write();
    } else {
      db_.cached("SAVEPOINT " + name_).run();
    }
  }
  ~Savepoint() {
    if (released_) return;
    try {
      if (outer_) {
        db_.exec("ROLLBACK");
        return;
      }
      db_.cached("ROLLBACK TO " + name_).run();
      db_.cached("RELEASE " + name_).run();
    } catch (...) {
      // SQLite rolled the whole transaction back already (I/O error, disk
      // full); the exception that brought us here says why.
    }
  }
  void release() {
    if (outer_) {
      db_.commit();
    } else {
      db_.cached("RELEASE " + name_).run();
    }
    released_ = true;
  }
  Savepoint(const Savepoint&) = delete;
  Savepoint& operator=(const Savepoint&) = delete;

 private:
  Database& db_;
  std::string name_;
  bool outer_ = false;
  bool released_ = false;
};

constexpr const char* delivery_columns =
    "id, referral_id, target, state, attempts, created_ms, next_attempt_ms, lease_until_ms, "
    "last_error, external_id, updated_ms, purpose";

std::string claim_sql(Dialect dialect, std::size_t target_count) {
  // Targets are bound as ?4, ?5, ...; the statement is cached per count.
  std::string filter;
  if (target_count > 0) {
    filter = " AND target IN (";
    for (std::size_t i = 0; i < target_count; ++i) {
      if (i > 0) filter += ", ";
      filter += "?" + std::to_string(i + 4);
    }
    filter += ")";
  }
  // Each half reads at most `limit` rows from its partial index in time
  // order, so a claim costs O(limit) however large a backlog is. INDEXED BY
  // because, without statistics, SQLite prefers deliveries_state_target and
  // sorts every due row; it also turns a lost index into an error instead
  // of a slow plan. The id list is materialised before the UPDATE changes
  // any row.
  //
  // PostgreSQL, which several instances share: each half locks the rows it
  // reads and skips those another transaction holds, and a row another
  // claim moved meanwhile is read again once locked and dropped for no
  // longer matching, so two claims never take one row even without the
  // write lock the writer's transactions hold (docs/storage.md, "Several
  // instances"). The pick is a materialised CTE there, evaluated once
  // whatever plan the UPDATE gets.
  const bool pg = dialect == Dialect::postgresql;
  const std::string lock = pg ? " FOR UPDATE SKIP LOCKED" : "";
  const std::string picked =
      "SELECT id FROM ("
      "SELECT id, due FROM (SELECT id, next_attempt_ms AS due FROM deliveries INDEXED BY deliveries_due "
      "WHERE state IN ('pending', 'retry') AND next_attempt_ms <= ?1" +
      filter + " ORDER BY next_attempt_ms, id LIMIT ?3" + lock +
      ") AS due_rows "
      "UNION ALL "
      "SELECT id, due FROM (SELECT id, lease_until_ms AS due FROM deliveries INDEXED BY deliveries_lease "
      "WHERE state = 'sending' AND lease_until_ms <= ?1" +
      filter + " ORDER BY lease_until_ms, id LIMIT ?3" + lock +
      ") AS lease_rows"
      ") AS claimable ORDER BY due, id LIMIT ?3";
  return (pg ? "WITH picked AS MATERIALIZED (" + picked + ") " : std::string()) +
         "UPDATE deliveries SET state = 'sending', lease_until_ms = ?2, attempts = attempts + 1, "
         "updated_ms = ?1 WHERE id IN (" +
         (pg ? std::string("SELECT id FROM picked") : picked) + ") RETURNING " + delivery_columns;
}

std::string last_error_of(const AttemptRecord& a) {
  if (a.outcome == AttemptOutcome::delivered) return {};
  return a.code ? *a.code + " " + a.message : a.message;
}

}  // namespace

std::string_view to_string(DeliveryState s) noexcept {
  switch (s) {
    case DeliveryState::pending: return "pending";
    case DeliveryState::sending: return "sending";
    case DeliveryState::delivered: return "delivered";
    case DeliveryState::retry: return "retry";
    case DeliveryState::dead: return "dead";
    case DeliveryState::cancelled: return "cancelled";
    case DeliveryState::held: return "held";
  }
  return "pending";
}

std::optional<DeliveryState> parse_delivery_state(std::string_view s) noexcept {
  if (s == "pending") return DeliveryState::pending;
  if (s == "sending") return DeliveryState::sending;
  if (s == "delivered") return DeliveryState::delivered;
  if (s == "retry") return DeliveryState::retry;
  if (s == "dead") return DeliveryState::dead;
  if (s == "cancelled") return DeliveryState::cancelled;
  if (s == "held") return DeliveryState::held;
  return std::nullopt;
}

bool is_final(DeliveryState s) noexcept {
  return s == DeliveryState::delivered || s == DeliveryState::dead || s == DeliveryState::cancelled;
}

std::int64_t to_millis(TimePoint t) noexcept {
  return std::chrono::floor<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

TimePoint from_millis(std::int64_t ms) noexcept {
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(std::chrono::milliseconds(ms)));
}

InsertResult insert_referral(Database& db, const NewReferral& r) {
  if (r.idempotency_key) {
    Statement& find = db.cached(
        "SELECT id, request_hash, response, duplicate_of FROM referrals WHERE client = ?1 AND idempotency_key = ?2");
    ResetOnExit reset(find);
    find.bind(1, std::string_view(r.client)).bind(2, std::string_view(*r.idempotency_key));
    if (find.step()) {
      if (find.column_text(1) == r.request_hash) {
        return {InsertStatus::replayed, find.column_text(0), find.column_text(2), find.column_optional_text(3)};
      }
      return {InsertStatus::conflict, find.column_text(0), {}, {}};
    }
  }

  Savepoint savepoint(db, "insert_referral");
  const std::int64_t received_ms = to_millis(r.received_at);
  const std::string document = seal_payload(db.payload_keys(), r.document, r.id);
  const std::string reasons = reasons_json(r.reasons).dump();

  // The newest open referral for the same patient within the window; in
  // the same transaction as the insert, so two at once see each other. The
  // open statuses as a chain of ORs: SQLite builds a table for an IN list of
  // more than two values each time the statement runs (bench/README.md,
  // issue 17).
  std::optional<std::string> duplicate_of;
  if (r.identity_hash && r.duplicate_window.count() > 0) {
    Statement& st = db.cached(
        "SELECT id FROM referrals INDEXED BY referrals_identity WHERE identity_hash = ?1 AND received_ms >= ?2 "
        "AND (status = 'received' OR status = 'acknowledged' OR status = 'accepted' OR status = 'needs-info') "
        "ORDER BY received_ms DESC LIMIT 1");
    ResetOnExit reset(st);
    st.bind(1, std::string_view(*r.identity_hash)).bind(2, received_ms - r.duplicate_window.count());
    if (st.step()) duplicate_of = st.column_text(0);
  }

  {
    Statement& st = db.cached(
        "INSERT INTO referrals (id, received_ms, decision, urgency, disease, channel, client, "
        "idempotency_key, request_hash, document, response, identity_hash, duplicate_of, reasons) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)");
    ResetOnExit reset(st);
    st.bind(1, std::string_view(r.id))
        .bind(2, received_ms)
        .bind(3, to_string(r.decision))
        .bind(4, to_string(r.urgency))
        .bind(5, r.disease)
        .bind(6, std::string_view(r.channel))
        .bind(7, std::string_view(r.client))
        .bind(8, r.idempotency_key)
        .bind(9, std::string_view(r.request_hash))
        .bind_blob(10, document)
        .bind(11, std::string_view(r.response))
        .bind(12, r.identity_hash)
        .bind(13, duplicate_of)
        .bind(14, std::string_view(reasons));
    st.run();
  }

  // Routing promises distinct targets; a repeat would only violate
  // UNIQUE(referral_id, target) and lose the whole referral, so skip it.
  std::size_t target_count = 0;
  {
    Statement& st = db.cached(
        "INSERT INTO deliveries (referral_id, target, state, attempts, created_ms, next_attempt_ms, "
        "updated_ms) VALUES (?1, ?2, 'pending', 0, ?3, ?3, ?3)");
    ResetOnExit reset(st);
    std::unordered_set<std::string_view> seen;
    for (const std::string& target : r.targets) {
      if (!seen.insert(target).second) continue;
      st.bind(1, std::string_view(r.id)).bind(2, std::string_view(target)).bind(3, received_ms);
      st.run();
      ++target_count;
    }
  }
  if (target_count > 0) db.note_due();

  if (!r.escalations.empty()) {
    Statement& st =
        db.cached("INSERT INTO escalations (referral_id, step, due_ms, after_s, targets) VALUES (?1, ?2, ?3, ?4, ?5)");
    ResetOnExit reset(st);
    for (const PlannedEscalation& step : r.escalations) {
      // Target names in one column, space-separated (a name holds no space).
      const std::string targets = join(step.notify, " ");
      st.bind(1, std::string_view(r.id))
          .bind(2, std::int64_t{step.step})
          .bind(3, to_millis(step.due_at))
          .bind(4, std::int64_t{step.after.count()})
          .bind(5, std::string_view(targets));
      st.run();
    }
  }

  std::string detail = "decision=" + std::string(to_string(r.decision)) + " targets=" + std::to_string(target_count);
  if (!r.escalations.empty()) detail += " escalation_steps=" + std::to_string(r.escalations.size());
  if (duplicate_of) detail += " duplicate_of=" + *duplicate_of;
  if (!r.attachments.empty()) detail += " attachments=" + std::to_string(r.attachments.size());
  audit(db, r.received_at, r.id, std::nullopt, "referrald", "received", detail);
  insert_attachments(db, r.id, r.received_at, r.attachments);
  savepoint.release();
  return {InsertStatus::inserted, r.id, r.response, duplicate_of};
}

std::optional<ReferralRow> find_referral(Database& db, const std::string& id) {
  ReferralRow row;
  {
    Statement& st = db.cached(
        "SELECT id, received_ms, decision, urgency, disease, channel, client, document, reasons FROM referrals "
        "WHERE id = ?1");
    ResetOnExit reset(st);
    st.bind(1, std::string_view(id));
    if (!st.step()) return std::nullopt;
    row.id = st.column_text(0);
    row.received_at = from_millis(st.column_int(1));
    const auto decision = parse_decision(st.column_text(2));
    if (!decision) unexpected_value("referrals.decision");
    row.decision = *decision;
    const auto urgency = parse_urgency(st.column_text(3));
    if (!urgency) unexpected_value("referrals.urgency");
    row.urgency = *urgency;
    row.disease = st.column_optional_text(4);
    row.channel = st.column_text(5);
    row.client = st.column_text(6);
    row.document = open_payload(db.payload_keys(), st.column_blob(7), row.id);
    try {
      row.reasons = reasons_from_json(st.column_text(8));
    } catch (const std::invalid_argument&) {
      unexpected_value("referrals.reasons");
    }
  }
  return row;
}

std::vector<DeliveryRow> deliveries_of(Database& db, const std::string& referral_id) {
  Statement& st =
      db.cached(std::string("SELECT ") + delivery_columns + " FROM deliveries WHERE referral_id = ?1 ORDER BY id");
  ResetOnExit reset(st);
  st.bind(1, std::string_view(referral_id));
  std::vector<DeliveryRow> rows;
  while (st.step()) rows.push_back(read_delivery(st));
  return rows;
}

std::vector<DeliveryRow> claim_due(Database& db, TimePoint now, std::chrono::milliseconds lease, int limit,
                                   const std::vector<std::string>& targets) {
  std::vector<DeliveryRow> rows;
  if (limit <= 0) return rows;
  const std::int64_t now_ms = to_millis(now);
  Statement& st = db.cached(claim_sql(db.dialect(), targets.size()));
  ResetOnExit reset(st);
  st.bind(1, now_ms).bind(2, now_ms + lease.count()).bind(3, std::int64_t{limit});
  int index = 4;
  for (const std::string& target : targets) st.bind(index++, std::string_view(target));
  while (st.step()) rows.push_back(read_delivery(st));
  // RETURNING yields rows in no promised order; hand them out oldest first.
  std::sort(rows.begin(), rows.end(), [](const DeliveryRow& a, const DeliveryRow& b) {
    return a.next_attempt_at != b.next_attempt_at ? a.next_attempt_at < b.next_attempt_at : a.id < b.id;
  });
  return rows;
}

int release_leases(Database& db, TimePoint now) {
  // Several referrald may share a PostgreSQL database: a lease left behind
  // may be another instance's, sending now. It runs out by itself.
  if (db.dialect() == Dialect::postgresql) return 0;
  auto& st = db.cached(
      "UPDATE deliveries SET lease_until_ms = ?1, updated_ms = ?1 "
      "WHERE state = 'sending' AND lease_until_ms > ?1");
  ResetOnExit reset(st);
  st.bind(1, to_millis(now)).run();
  return db.changes();
}

std::optional<TimePoint> next_due(Database& db) {
  Statement& st = db.cached(
      "SELECT min(due) FROM ("
      "SELECT min(next_attempt_ms) AS due FROM deliveries INDEXED BY deliveries_due "
      "WHERE state IN ('pending', 'retry') "
      "UNION ALL "
      "SELECT min(lease_until_ms) AS due FROM deliveries INDEXED BY deliveries_lease "
      "WHERE state = 'sending') AS due_times");
  ResetOnExit reset(st);
  if (!st.step() || st.column_is_null(0)) return std::nullopt;
  return from_millis(st.column_int(0));
}

Finished finish_attempt(Database& db, const AttemptRecord& a) {
  switch (a.next_state) {
    case DeliveryState::delivered:
    case DeliveryState::dead: break;
    case DeliveryState::retry:
      if (!a.next_attempt_at) throw std::invalid_argument("finish_attempt: retry needs next_attempt_at");
      break;
    default: throw std::invalid_argument("finish_attempt: next_state must be delivered, retry or dead");
  }

  Savepoint savepoint(db, "finish_attempt");
  const std::int64_t finished_ms = to_millis(a.finished_at);
  const std::string last_error = last_error_of(a);

  // The attempt number is the lease's token: a worker whose lease expired
  // and whose delivery was claimed again must not overwrite the new claim.
  std::optional<std::string> referral_id;
  std::string target;
  bool applied = false;
  {
    Statement& st = db.cached(
        "UPDATE deliveries SET state = ?1, next_attempt_ms = coalesce(?2, next_attempt_ms), "
        "lease_until_ms = NULL, last_error = ?3, external_id = coalesce(?4, external_id), "
        "updated_ms = ?5 "
        "WHERE id = ?6 AND state = 'sending' AND attempts = ?7 "
        "RETURNING referral_id, target");
    ResetOnExit reset(st);
    st.bind(1, to_string(a.next_state));
    if (a.next_state == DeliveryState::retry) {
      st.bind(2, to_millis(*a.next_attempt_at));
    } else {
      st.bind_null(2);
    }
    if (last_error.empty()) {
      st.bind_null(3);
    } else {
      st.bind(3, std::string_view(last_error));
    }
    st.bind(4, a.external_id).bind(5, finished_ms).bind(6, a.delivery_id).bind(7, std::int64_t{a.attempt});
    if (st.step()) {
      applied = true;
      referral_id = st.column_text(0);
      target = st.column_text(1);
      while (st.step()) {
      }
    }
  }

  std::string state_now;
  std::int64_t attempts_now = a.attempt;
  if (!applied) {
    Statement& st = db.cached("SELECT referral_id, target, state, attempts FROM deliveries WHERE id = ?1");
    ResetOnExit reset(st);
    st.bind(1, a.delivery_id);
    if (!st.step()) return Finished::left_alone;  // purged meanwhile: nothing left to record against
    referral_id = st.column_text(0);
    target = st.column_text(1);
    state_now = st.column_text(2);
    attempts_now = st.column_int(3);
  }
  const bool superseded = !applied && attempts_now > a.attempt;

  // The attempt happened either way (a message may have gone out after an
  // operator cancelled), so it is always recorded.
  {
    Statement& st = db.cached(
        "INSERT INTO attempts (delivery_id, attempt, started_ms, finished_ms, outcome, code, message, "
        "external_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
    ResetOnExit reset(st);
    st.bind(1, a.delivery_id)
        .bind(2, std::int64_t{a.attempt})
        .bind(3, to_millis(a.started_at))
        .bind(4, finished_ms)
        .bind(5, to_string(a.outcome))
        .bind(6, a.code)
        .bind(7, std::string_view(a.message))
        .bind(8, a.external_id);
    st.run();
  }

  std::string detail =
      "target=" + target + " attempt=" + std::to_string(a.attempt) + " outcome=" + std::string(to_string(a.outcome));
  if (a.code) detail += " code=" + *a.code;
  if (applied) {
    audit(db, a.finished_at, referral_id, a.delivery_id, "referrald", std::string(to_string(a.next_state)), detail);
  } else {
    // Superseded: the claim that took the delivery over (its attempt) decides.
    audit(db, a.finished_at, referral_id, a.delivery_id, "referrald", "attempt-not-applied",
          detail + " state=" + state_now + (superseded ? " claimed_again=" + std::to_string(attempts_now) : ""));
  }
  savepoint.release();
  if (applied) return Finished::applied;
  return superseded ? Finished::superseded : Finished::left_alone;
}

bool skip_delivery(Database& db, std::int64_t delivery_id, int attempt, const std::string& reason, TimePoint now) {
  Savepoint savepoint(db, "skip_delivery");
  const std::int64_t now_ms = to_millis(now);
  Statement& st = db.cached(
      "UPDATE deliveries SET state = 'cancelled', lease_until_ms = NULL, last_error = ?3, updated_ms = ?4 "
      "WHERE id = ?1 AND state = 'sending' AND attempts = ?2 RETURNING referral_id, target");
  ResetOnExit reset(st);
  st.bind(1, delivery_id).bind(2, std::int64_t{attempt}).bind(3, std::string_view(reason)).bind(4, now_ms);
  if (!st.step()) return false;
  const std::string referral_id = st.column_text(0);
  const std::string target = st.column_text(1);
  while (st.step()) {
  }
  audit(db, now, referral_id, delivery_id, "referrald", "skipped", "target=" + target + " reason=" + reason);
  savepoint.release();
  return true;
}

std::vector<unsigned char> identity_secret(Database& db) {
  {
    Statement& st = db.cached("SELECT secret FROM identity_secret WHERE id = 1");
    ResetOnExit reset(st);
    if (st.step()) {
      const std::string blob = st.column_blob(0);
      return {blob.begin(), blob.end()};
    }
  }
  const auto secret = random_bytes(32);
  Statement& st = db.cached("INSERT INTO identity_secret (id, secret) VALUES (1, ?1)");
  ResetOnExit reset(st);
  st.bind_blob(1, std::string(secret.begin(), secret.end()));
  st.run();
  return secret;
}

void audit(Database& db, TimePoint at, const std::optional<std::string>& referral_id,
           std::optional<std::int64_t> delivery_id, const std::string& actor, const std::string& action,
           const std::string& detail) {
  append_audit(db, AuditEntry{0, to_millis(at), referral_id, delivery_id, actor, action, detail});
}

}  // namespace referrald::store
