// Numbered schema migrations.
//
// The version lives in a `schema_version` table (one row per applied
// migration, with when it was applied) rather than PRAGMA user_version, so
// an operator can see the history with plain SQL. Migration N brings the
// schema from N-1 to N; all pending migrations run in one IMMEDIATE
// transaction, so a crash or a concurrent start (daemon and referralctl)
// never leaves a half-migrated database.
//
// Design notes on version 1:
// - Every table is STRICT: a value of the wrong type is an error, not a
//   silent conversion.
// - States and outcomes are text with CHECK constraints (readable with the
//   sqlite3 shell, and a bad value fails loudly).
// - A decision's reasons were rows of `referral_reasons` (referral, position,
//   code, message) rather than JSON text, when rf_store linked no JSON
//   library. Version 9 keeps them as JSON in their referral's row: one write
//   instead of a random-keyed row each (see version 9 below).
// - `audit` has no foreign keys: the trail (which holds no PHI) must outlive
//   a purge of the referrals it mentions.
// - A 'sending' row must carry a lease, or no claim would ever pick it up
//   again after a crash.
#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <chrono>
#include <iterator>
#include <regex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "model/reasons_json.hpp"
#include "store/audit_chain.hpp"
#include "store/store.hpp"

namespace referrald::store {

namespace {

struct Migration {
  int version;
  const char* sql;
  void (*then)(Database&) = nullptr;  // a step SQL cannot do, in the same transaction
  // Rebuilds tables that others reference: must run with foreign keys off,
  // or dropping the old table would cascade its deletes.
  bool rebuilds = false;
  // The same step in PostgreSQL's words: every migration after the
  // PostgreSQL baseline (version 8) has one.
  const char* postgresql = nullptr;
};

// Version 9's step: each referral's reasons, in order, into its row.
void move_reasons(Database& db) {
  Statement rows = db.prepare("SELECT referral_id, code, message FROM referral_reasons ORDER BY referral_id, position");
  Statement update = db.prepare("UPDATE referrals SET reasons = ?2 WHERE id = ?1");
  std::string id;
  std::vector<Reason> reasons;
  const auto flush = [&] {
    if (id.empty()) return;
    update.bind(1, std::string_view(id)).bind(2, std::string_view(reasons_json(reasons).dump()));
    update.run();
    reasons.clear();
  };
  while (rows.step()) {
    if (rows.column_text(0) != id) {
      flush();
      id = rows.column_text(0);
    }
    reasons.push_back(Reason{rows.column_text(1), rows.column_text(2)});
  }
  flush();
  db.exec("DROP TABLE referral_reasons");
}

// Version 10's step (SQLite): each CHECK (column IN ('a', 'b', 'c', ...))
// becomes CHECK ((column = 'a' OR column = 'b' OR ...)), which is the same
// test. SQLite builds a temporary b-tree of the values for an IN list of
// more than two each time an INSERT checks it: four for a referral, one for
// each delivery, a fifth of what inserting a referral cost (bench/README.md,
// issue 17). Only the text of the constraints changes, not a stored byte,
// so the tables' SQL is rewritten in place as SQLite describes for such
// changes (https://sqlite.org/lang_altertable.html#otheralter):
// writable_schema, then a new schema cookie so that every connection reads
// it again. A SQLite that refuses it (built with SQLITE_DBCONFIG_DEFENSIVE)
// fails the migration, which is rolled back and says why, as any other
// error does: an error is never taken for "nothing to do".
void plain_check_lists(Database& db) {
  // column IN ('a', 'b', 'c'[, ...]): three values or more.
  static const std::regex in_list(R"((\w+) IN \(('[^']*'(?:, '[^']*'){2,})\))");
  static const std::regex value(R"('[^']*')");
  std::vector<std::pair<std::string, std::string>> rewritten;  // table, its new SQL
  {
    Statement tables = db.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql IS NOT NULL");
    while (tables.step()) {
      const std::string sql = tables.column_text(1);
      std::string out;
      auto from = sql.cbegin();
      for (std::sregex_iterator m(sql.begin(), sql.end(), in_list), end; m != end; ++m) {
        out.append(from, (*m)[0].first);
        const std::string column = (*m)[1].str();
        const std::string values = (*m)[2].str();
        std::string alternatives;
        for (std::sregex_iterator v(values.begin(), values.end(), value); v != end; ++v) {
          alternatives += (alternatives.empty() ? "(" : " OR ") + column + " = " + v->str();
        }
        out += alternatives + ")";
        from = (*m)[0].second;
      }
      if (from == sql.cbegin()) continue;
      out.append(from, sql.cend());
      rewritten.emplace_back(tables.column_text(0), std::move(out));
    }
  }
  if (rewritten.empty()) return;
  std::int64_t next_cookie = 0;
  {
    Statement cookie = db.prepare("PRAGMA schema_version");
    if (!cookie.step()) throw std::logic_error("migration 10: no schema_version");
    next_cookie = cookie.column_int(0) + 1;
  }

  struct WritableSchema {
    Database& db;
    explicit WritableSchema(Database& d) : db(d) { db.exec("PRAGMA writable_schema = ON"); }
    ~WritableSchema() {
      try {
        db.exec("PRAGMA writable_schema = OFF");
      } catch (...) {
        // The migration's transaction rolls back either way.
      }
    }
  } writable{db};
  Statement update = db.prepare("UPDATE sqlite_master SET sql = ?2 WHERE type = 'table' AND name = ?1");
  for (const auto& [table, sql] : rewritten) {
    update.bind(1, std::string_view(table)).bind(2, std::string_view(sql));
    update.run();
  }
  db.exec("PRAGMA schema_version = " + std::to_string(next_cookie));
}

constexpr Migration migrations[] = {
    {1, R"sql(
CREATE TABLE schema_version (
  version     INTEGER PRIMARY KEY NOT NULL,
  applied_ms  INTEGER NOT NULL
) STRICT;

CREATE TABLE referrals (
  id               TEXT PRIMARY KEY NOT NULL,
  received_ms      INTEGER NOT NULL,
  decision         TEXT NOT NULL CHECK (decision IN ('accepted', 'review', 'declined')),
  urgency          TEXT NOT NULL CHECK (urgency IN ('routine', 'urgent', 'emergent')),
  disease          TEXT,
  channel          TEXT NOT NULL CHECK (channel IN ('api', 'form')),
  client           TEXT NOT NULL,
  idempotency_key  TEXT,
  request_hash     TEXT NOT NULL,
  document         BLOB NOT NULL,
  response         TEXT NOT NULL
) STRICT;
-- A repeated Idempotency-Key is looked up per client on every API request.
CREATE UNIQUE INDEX referrals_idempotency ON referrals (client, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX referrals_received ON referrals (received_ms);
CREATE INDEX referrals_decision ON referrals (decision, received_ms);

CREATE TABLE referral_reasons (
  referral_id  TEXT NOT NULL REFERENCES referrals (id) ON DELETE CASCADE,
  position     INTEGER NOT NULL CHECK (position >= 0),
  code         TEXT NOT NULL,
  message      TEXT NOT NULL,
  PRIMARY KEY (referral_id, position)
) STRICT, WITHOUT ROWID;

CREATE TABLE deliveries (
  id               INTEGER PRIMARY KEY,
  referral_id      TEXT NOT NULL REFERENCES referrals (id) ON DELETE CASCADE,
  target           TEXT NOT NULL,
  state            TEXT NOT NULL
                   CHECK (state IN ('pending', 'sending', 'delivered', 'retry', 'dead', 'cancelled', 'held')),
  attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  created_ms       INTEGER NOT NULL,
  next_attempt_ms  INTEGER NOT NULL,
  lease_until_ms   INTEGER,
  updated_ms       INTEGER NOT NULL,
  last_error       TEXT,
  external_id      TEXT,
  UNIQUE (referral_id, target),  -- also the index for deliveries_of and ON DELETE CASCADE
  CHECK (state <> 'sending' OR lease_until_ms IS NOT NULL)
) STRICT;
-- The two halves of "what is due", each read in time order by claim_due and
-- next_due; partial, so they hold only the rows that can become due.
CREATE INDEX deliveries_due ON deliveries (next_attempt_ms) WHERE state IN ('pending', 'retry');
CREATE INDEX deliveries_lease ON deliveries (lease_until_ms) WHERE state = 'sending';
CREATE INDEX deliveries_state_target ON deliveries (state, target);

CREATE TABLE attempts (
  id           INTEGER PRIMARY KEY,
  delivery_id  INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
  attempt      INTEGER NOT NULL CHECK (attempt >= 1),
  started_ms   INTEGER NOT NULL,
  finished_ms  INTEGER NOT NULL,
  outcome      TEXT NOT NULL CHECK (outcome IN ('delivered', 'transient', 'permanent', 'misconfigured')),
  code         TEXT,
  message      TEXT NOT NULL,
  external_id  TEXT
) STRICT;
CREATE INDEX attempts_delivery ON attempts (delivery_id, attempt);

CREATE TABLE audit (
  id           INTEGER PRIMARY KEY,
  at_ms        INTEGER NOT NULL,
  referral_id  TEXT,
  delivery_id  INTEGER,
  actor        TEXT NOT NULL,
  action       TEXT NOT NULL,
  detail       TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX audit_referral ON audit (referral_id);
)sql"},
    // Version 2, for referralctl: `list --state` reads referrals newest first
    // through their deliveries (created_ms is the referral's received_ms),
    // and `stats` counts the attempts of the last hour and day per target.
    {2, R"sql(
CREATE INDEX deliveries_state_created ON deliveries (state, created_ms);
CREATE INDEX attempts_finished ON attempts (finished_ms);
)sql"},
    // Version 3, for `referralctl stats`: referrals per decision and
    // deliveries per state, kept by triggers in the same transactions that
    // change them, so the counts cost ten rows to read instead of a scan of
    // every referral and delivery (~0.5 s with a million referrals). Foreign
    // key cascades (purge) fire the delete triggers too.
    {3, R"sql(
CREATE TABLE tallies (
  kind   TEXT NOT NULL CHECK (kind IN ('decision', 'state')),
  value  TEXT NOT NULL,
  n      INTEGER NOT NULL,
  PRIMARY KEY (kind, value)
) STRICT, WITHOUT ROWID;
INSERT INTO tallies (kind, value, n) VALUES
  ('decision', 'accepted', 0), ('decision', 'review', 0), ('decision', 'declined', 0),
  ('state', 'pending', 0), ('state', 'sending', 0), ('state', 'delivered', 0), ('state', 'retry', 0),
  ('state', 'dead', 0), ('state', 'cancelled', 0), ('state', 'held', 0);
UPDATE tallies SET n = (SELECT count(*) FROM referrals WHERE decision = tallies.value) WHERE kind = 'decision';
UPDATE tallies SET n = (SELECT count(*) FROM deliveries WHERE state = tallies.value) WHERE kind = 'state';

CREATE TRIGGER referrals_tally_insert AFTER INSERT ON referrals BEGIN
  UPDATE tallies SET n = n + 1 WHERE kind = 'decision' AND value = NEW.decision;
END;
CREATE TRIGGER referrals_tally_delete AFTER DELETE ON referrals BEGIN
  UPDATE tallies SET n = n - 1 WHERE kind = 'decision' AND value = OLD.decision;
END;
CREATE TRIGGER referrals_tally_update AFTER UPDATE OF decision ON referrals
  WHEN OLD.decision <> NEW.decision BEGIN
  UPDATE tallies SET n = n - 1 WHERE kind = 'decision' AND value = OLD.decision;
  UPDATE tallies SET n = n + 1 WHERE kind = 'decision' AND value = NEW.decision;
END;
CREATE TRIGGER deliveries_tally_insert AFTER INSERT ON deliveries BEGIN
  UPDATE tallies SET n = n + 1 WHERE kind = 'state' AND value = NEW.state;
END;
CREATE TRIGGER deliveries_tally_delete AFTER DELETE ON deliveries BEGIN
  UPDATE tallies SET n = n - 1 WHERE kind = 'state' AND value = OLD.state;
END;
CREATE TRIGGER deliveries_tally_update AFTER UPDATE OF state ON deliveries
  WHEN OLD.state <> NEW.state BEGIN
  UPDATE tallies SET n = n - 1 WHERE kind = 'state' AND value = OLD.state;
  UPDATE tallies SET n = n + 1 WHERE kind = 'state' AND value = NEW.state;
END;
)sql"},
    // Version 4: the audit trail becomes a hash chain (store/audit_chain.hpp,
    // docs/audit.md). Rows written before get their hashes here, in id order.
    // The columns may be NULL only so that ADD COLUMN works; every row has
    // both once this migration has committed.
    {4, R"sql(
ALTER TABLE audit ADD COLUMN prev_hash TEXT;
ALTER TABLE audit ADD COLUMN hash TEXT;
)sql",
     chain_unhashed_audit_rows},
    // Version 5, the closed loop: the office's status of each referral with
    // its history, the escalation ladder's steps as rows, single-use
    // acknowledgement tokens, and deliveries for more than the notification
    // at intake (an escalation step, a notice to the referrer), which
    // UNIQUE (referral_id, target) forbade. SQLite cannot drop a constraint
    // or widen a CHECK in place, so `referrals` (which also learns the
    // channel 'fhir' and the duplicate marks) and `deliveries` are rebuilt:
    // new table, copy, drop, rename, then their indexes and triggers again.
    // It runs with foreign keys off (see `rebuilds` below) and is checked
    // with foreign_key_check before it commits.
    {5, R"sql(
CREATE TABLE referrals_v5 (
  id               TEXT PRIMARY KEY NOT NULL,
  received_ms      INTEGER NOT NULL,
  decision         TEXT NOT NULL CHECK (decision IN ('accepted', 'review', 'declined')),
  urgency          TEXT NOT NULL CHECK (urgency IN ('routine', 'urgent', 'emergent')),
  disease          TEXT,
  channel          TEXT NOT NULL CHECK (channel IN ('api', 'form', 'fhir')),
  client           TEXT NOT NULL,
  idempotency_key  TEXT,
  request_hash     TEXT NOT NULL,
  document         BLOB NOT NULL,
  response         TEXT NOT NULL,
  status           TEXT NOT NULL DEFAULT 'received'
                   CHECK (status IN ('received', 'acknowledged', 'accepted', 'declined', 'needs-info', 'closed')),
  status_ms        INTEGER,           -- when the status last changed; NULL: never (received_ms)
  acknowledged_ms  INTEGER,           -- the first change away from 'received'
  identity_hash    TEXT,              -- keyed hash of the patient's name and birth date (duplicates)
  duplicate_of     TEXT               -- an open referral for the same patient, when received
) STRICT;
INSERT INTO referrals_v5 (id, received_ms, decision, urgency, disease, channel, client, idempotency_key,
                          request_hash, document, response)
  SELECT id, received_ms, decision, urgency, disease, channel, client, idempotency_key,
         request_hash, document, response FROM referrals;
DROP TABLE referrals;
ALTER TABLE referrals_v5 RENAME TO referrals;
CREATE UNIQUE INDEX referrals_idempotency ON referrals (client, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX referrals_received ON referrals (received_ms);
CREATE INDEX referrals_decision ON referrals (decision, received_ms);
-- `referralctl list --status` and the open referrals a duplicate is looked for in.
CREATE INDEX referrals_status ON referrals (status, received_ms);
CREATE INDEX referrals_identity ON referrals (identity_hash, received_ms) WHERE identity_hash IS NOT NULL;
CREATE TRIGGER referrals_tally_insert AFTER INSERT ON referrals BEGIN
  UPDATE tallies SET n = n + 1 WHERE kind = 'decision' AND value = NEW.decision;
END;
CREATE TRIGGER referrals_tally_delete AFTER DELETE ON referrals BEGIN
  UPDATE tallies SET n = n - 1 WHERE kind = 'decision' AND value = OLD.decision;
END;
CREATE TRIGGER referrals_tally_update AFTER UPDATE OF decision ON referrals
  WHEN OLD.decision <> NEW.decision BEGIN
  UPDATE tallies SET n = n - 1 WHERE kind = 'decision' AND value = OLD.decision;
  UPDATE tallies SET n = n + 1 WHERE kind = 'decision' AND value = NEW.decision;
END;

-- Referrals per status, for /metrics and `referralctl stats`, kept like tallies.
CREATE TABLE status_tallies (
  status  TEXT PRIMARY KEY NOT NULL,
  n       INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
INSERT INTO status_tallies (status, n) VALUES
  ('received', (SELECT count(*) FROM referrals)), ('acknowledged', 0), ('accepted', 0), ('declined', 0),
  ('needs-info', 0), ('closed', 0);
CREATE TRIGGER referrals_status_insert AFTER INSERT ON referrals BEGIN
  UPDATE status_tallies SET n = n + 1 WHERE status = NEW.status;
END;
CREATE TRIGGER referrals_status_delete AFTER DELETE ON referrals BEGIN
  UPDATE status_tallies SET n = n - 1 WHERE status = OLD.status;
END;
CREATE TRIGGER referrals_status_update AFTER UPDATE OF status ON referrals
  WHEN OLD.status <> NEW.status BEGIN
  UPDATE status_tallies SET n = n - 1 WHERE status = OLD.status;
  UPDATE status_tallies SET n = n + 1 WHERE status = NEW.status;
END;

-- Every change of status: who, when, through what, and the note (PHI: sealed
-- like the document, under the referral's id).
CREATE TABLE status_changes (
  id           INTEGER PRIMARY KEY,
  referral_id  TEXT NOT NULL REFERENCES referrals (id) ON DELETE CASCADE,
  at_ms        INTEGER NOT NULL,
  actor        TEXT NOT NULL,
  via          TEXT NOT NULL CHECK (via IN ('cli', 'api', 'link')),
  from_status  TEXT NOT NULL,
  to_status    TEXT NOT NULL,
  note         BLOB
) STRICT;
CREATE INDEX status_changes_referral ON status_changes (referral_id, id);

-- The escalation ladder of each referral, planned at intake. A step fires
-- once (pending -> fired) or is stopped by the first acknowledgement.
CREATE TABLE escalations (
  referral_id  TEXT NOT NULL REFERENCES referrals (id) ON DELETE CASCADE,
  step         INTEGER NOT NULL CHECK (step >= 1),
  due_ms       INTEGER NOT NULL,
  after_s      INTEGER NOT NULL CHECK (after_s >= 0),
  targets      TEXT NOT NULL,  -- target names, space-separated (a name holds no space)
  state        TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'fired', 'stopped')),
  done_ms      INTEGER,
  PRIMARY KEY (referral_id, step)
) STRICT, WITHOUT ROWID;
CREATE INDEX escalations_due ON escalations (due_ms) WHERE state = 'pending';

-- Single-use acknowledgement links: only the SHA-256 of the token is kept.
CREATE TABLE ack_tokens (
  token_hash   TEXT PRIMARY KEY NOT NULL,
  referral_id  TEXT NOT NULL REFERENCES referrals (id) ON DELETE CASCADE,
  created_ms   INTEGER NOT NULL,
  expires_ms   INTEGER NOT NULL,
  used_ms      INTEGER
) STRICT, WITHOUT ROWID;
CREATE INDEX ack_tokens_referral ON ack_tokens (referral_id);

-- A delivery is for one purpose: 'intake' (the notification of a new
-- referral), 'escalation-N' (step N of the ladder) or 'notice-N' (status
-- change N, to the referrer).
CREATE TABLE deliveries_v5 (
  id               INTEGER PRIMARY KEY,
  referral_id      TEXT NOT NULL REFERENCES referrals (id) ON DELETE CASCADE,
  target           TEXT NOT NULL,
  purpose          TEXT NOT NULL DEFAULT 'intake'
                   CHECK (purpose = 'intake' OR purpose GLOB 'escalation-[1-9]*' OR purpose GLOB 'notice-[1-9]*'),
  state            TEXT NOT NULL
                   CHECK (state IN ('pending', 'sending', 'delivered', 'retry', 'dead', 'cancelled', 'held')),
  attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  created_ms       INTEGER NOT NULL,
  next_attempt_ms  INTEGER NOT NULL,
  lease_until_ms   INTEGER,
  updated_ms       INTEGER NOT NULL,
  last_error       TEXT,
  external_id      TEXT,
  UNIQUE (referral_id, target, purpose),
  CHECK (state <> 'sending' OR lease_until_ms IS NOT NULL)
) STRICT;
INSERT INTO deliveries_v5 (id, referral_id, target, state, attempts, created_ms, next_attempt_ms,
                           lease_until_ms, updated_ms, last_error, external_id)
  SELECT id, referral_id, target, state, attempts, created_ms, next_attempt_ms,
         lease_until_ms, updated_ms, last_error, external_id FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_v5 RENAME TO deliveries;
CREATE INDEX deliveries_due ON deliveries (next_attempt_ms) WHERE state IN ('pending', 'retry');
CREATE INDEX deliveries_lease ON deliveries (lease_until_ms) WHERE state = 'sending';
CREATE INDEX deliveries_state_target ON deliveries (state, target);
CREATE INDEX deliveries_state_created ON deliveries (state, created_ms);
CREATE TRIGGER deliveries_tally_insert AFTER INSERT ON deliveries BEGIN
  UPDATE tallies SET n = n + 1 WHERE kind = 'state' AND value = NEW.state;
END;
CREATE TRIGGER deliveries_tally_delete AFTER DELETE ON deliveries BEGIN
  UPDATE tallies SET n = n - 1 WHERE kind = 'state' AND value = OLD.state;
END;
CREATE TRIGGER deliveries_tally_update AFTER UPDATE OF state ON deliveries
  WHEN OLD.state <> NEW.state BEGIN
  UPDATE tallies SET n = n - 1 WHERE kind = 'state' AND value = OLD.state;
  UPDATE tallies SET n = n + 1 WHERE kind = 'state' AND value = NEW.state;
END;
)sql",
     nullptr, true},
    // 6: a secret of the database's own, the identity hash's key when the
    // configuration names none (neither [intake] identity_key nor an
    // encryption key): docs/closed-loop.md.
    {6, R"sql(
CREATE TABLE identity_secret (
  id     INTEGER PRIMARY KEY CHECK (id = 1),
  secret BLOB NOT NULL CHECK (length(secret) = 32)
) STRICT;
)sql",
     nullptr, false},
    // Version 7: the office's figures for /metrics, kept by triggers in the
    // transaction that changes a referral or an escalation step, so a scrape
    // reads a few rows however many referrals there are. Both only count
    // up (Prometheus counters): a purge does not take anything back.
    {7, R"sql(
-- Time from receipt to the first acknowledgement, by urgency, in the
-- histogram's buckets as Prometheus counts them (each bucket holds every
-- time at or under its bound, le_ms; the +Inf bucket, le_ms the largest
-- integer, also keeps the sum of the times).
CREATE TABLE ack_times (
  urgency  TEXT NOT NULL CHECK (urgency IN ('routine', 'urgent', 'emergent')),
  le_ms    INTEGER NOT NULL,
  n        INTEGER NOT NULL DEFAULT 0,
  sum_ms   INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (urgency, le_ms)
) STRICT, WITHOUT ROWID;
INSERT INTO ack_times (urgency, le_ms)
  SELECT u.urgency, b.le_ms FROM
    (SELECT 'routine' AS urgency UNION ALL SELECT 'urgent' UNION ALL SELECT 'emergent') AS u,
    (SELECT 60000 AS le_ms UNION ALL SELECT 300000 UNION ALL SELECT 900000 UNION ALL SELECT 1800000
     UNION ALL SELECT 3600000 UNION ALL SELECT 7200000 UNION ALL SELECT 14400000 UNION ALL SELECT 28800000
     UNION ALL SELECT 86400000 UNION ALL SELECT 259200000 UNION ALL SELECT 604800000
     UNION ALL SELECT 9223372036854775807) AS b;
UPDATE ack_times SET
  n = (SELECT count(*) FROM referrals AS r WHERE r.urgency = ack_times.urgency AND r.acknowledged_ms IS NOT NULL
         AND max(0, r.acknowledged_ms - r.received_ms) <= ack_times.le_ms),
  sum_ms = CASE WHEN le_ms = 9223372036854775807 THEN
             (SELECT coalesce(sum(max(0, r.acknowledged_ms - r.received_ms)), 0) FROM referrals AS r
              WHERE r.urgency = ack_times.urgency AND r.acknowledged_ms IS NOT NULL)
           ELSE 0 END;
CREATE TRIGGER referrals_ack_time AFTER UPDATE OF acknowledged_ms ON referrals
  WHEN OLD.acknowledged_ms IS NULL AND NEW.acknowledged_ms IS NOT NULL BEGIN
  UPDATE ack_times SET n = n + 1
    WHERE urgency = NEW.urgency AND le_ms >= max(0, NEW.acknowledged_ms - NEW.received_ms);
  UPDATE ack_times SET sum_ms = sum_ms + max(0, NEW.acknowledged_ms - NEW.received_ms)
    WHERE urgency = NEW.urgency AND le_ms = 9223372036854775807;
END;

-- Escalation steps fired, by step number.
CREATE TABLE escalation_tallies (
  step   INTEGER PRIMARY KEY NOT NULL CHECK (step >= 1),
  fired  INTEGER NOT NULL
) STRICT;
INSERT INTO escalation_tallies (step, fired)
  SELECT step, count(*) FROM escalations WHERE state = 'fired' GROUP BY step;
CREATE TRIGGER escalations_fired AFTER UPDATE OF state ON escalations
  WHEN NEW.state = 'fired' AND OLD.state <> 'fired' BEGIN
  INSERT INTO escalation_tallies (step, fired) VALUES (NEW.step, 1)
    ON CONFLICT (step) DO UPDATE SET fired = fired + 1;
END;
)sql"},
    // Version 8: the files that come with a referral (store/attachments.hpp).
    // A rowid table: a file may be megabytes, and rowid tables keep large
    // rows' bytes in overflow pages away from the index.
    {8, R"sql(
CREATE TABLE attachments (
  referral_id   TEXT NOT NULL REFERENCES referrals (id) ON DELETE CASCADE,
  position      INTEGER NOT NULL CHECK (position >= 1),
  title         BLOB NOT NULL,   -- sealed like a status note (PHI)
  content_type  TEXT NOT NULL CHECK (content_type IN ('application/pdf', 'image/jpeg', 'image/png', 'image/tiff')),
  bytes         INTEGER NOT NULL CHECK (bytes >= 0),
  pages         INTEGER NOT NULL CHECK (pages >= 1),
  sha256        TEXT NOT NULL,   -- hex, of the file as received
  data          BLOB NOT NULL,   -- the file, sealed like the document
  UNIQUE (referral_id, position)
) STRICT;
)sql"},
    // Version 9: a decision's reasons move into their referral's row, as
    // JSON (model/reasons_json.hpp), and `referral_reasons` goes. Its key
    // began with the referral's random id, so every referral's reasons were
    // written to a leaf page of their own: the largest share of an intake
    // commit's pages (bench/README.md, issue 17). SQLite's aggregates have no
    // ORDER BY before 3.44, so the rows are moved by move_reasons, in order.
    {9, R"sql(
ALTER TABLE referrals ADD COLUMN reasons TEXT NOT NULL DEFAULT '[]';
)sql",
     move_reasons, false, R"sql(
ALTER TABLE referrals ADD COLUMN reasons TEXT NOT NULL DEFAULT '[]';
UPDATE referrals AS r
   SET reasons = (SELECT json_agg(json_build_object('code', code, 'message', message) ORDER BY position)::text
                    FROM referral_reasons WHERE referral_id = r.id)
 WHERE EXISTS (SELECT 1 FROM referral_reasons WHERE referral_id = r.id);
DROP TABLE referral_reasons;
)sql"},
    // Version 10: CHECK constraints that SQLite tests without building a
    // table per INSERT (plain_check_lists). PostgreSQL tests an IN list as
    // it is: nothing to change there.
    {10, "", plain_check_lists, false, "SELECT 1"},
};

static_assert(sizeof(migrations) / sizeof(migrations[0]) == schema_version, "one migration per schema version");

// PostgreSQL starts at version 8: this one script makes the schema that
// SQLite's migrations 1 to 8 make, in PostgreSQL's words, and records
// version 8 alone. The tables, columns, constraints and indexes are the
// same (docs/storage.md); what differs is spelt per engine:
// - INTEGER is BIGINT (SQLite's integers are 64-bit); a rowid alias
//   (`id INTEGER PRIMARY KEY`) is an identity column; BLOB is BYTEA.
// - GLOB patterns are regular expressions; max(a, b) is greatest(a, b).
// - Each trigger calls a PL/pgSQL function of its own.
// - SQLite's partial indexes and WITHOUT ROWID tables are plain tables
//   with the same primary keys and partial indexes.
// Every later migration carries its text for both engines.
constexpr const char* postgresql_baseline = R"sql(
CREATE TABLE schema_version (
  version     BIGINT PRIMARY KEY NOT NULL,
  applied_ms  BIGINT NOT NULL
);

CREATE TABLE referrals (
  id               TEXT PRIMARY KEY NOT NULL,
  received_ms      BIGINT NOT NULL,
  decision         TEXT NOT NULL CHECK (decision IN ('accepted', 'review', 'declined')),
  urgency          TEXT NOT NULL CHECK (urgency IN ('routine', 'urgent', 'emergent')),
  disease          TEXT,
  channel          TEXT NOT NULL CHECK (channel IN ('api', 'form', 'fhir')),
  client           TEXT NOT NULL,
  idempotency_key  TEXT,
  request_hash     TEXT NOT NULL,
  document         BYTEA NOT NULL,
  response         TEXT NOT NULL,
  status           TEXT NOT NULL DEFAULT 'received'
                   CHECK (status IN ('received', 'acknowledged', 'accepted', 'declined', 'needs-info', 'closed')),
  status_ms        BIGINT,
  acknowledged_ms  BIGINT,
  identity_hash    TEXT,
  duplicate_of     TEXT
);
CREATE UNIQUE INDEX referrals_idempotency ON referrals (client, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX referrals_received ON referrals (received_ms);
CREATE INDEX referrals_decision ON referrals (decision, received_ms);
CREATE INDEX referrals_status ON referrals (status, received_ms);
CREATE INDEX referrals_identity ON referrals (identity_hash, received_ms) WHERE identity_hash IS NOT NULL;

CREATE TABLE referral_reasons (
  referral_id  TEXT NOT NULL REFERENCES referrals (id) ON DELETE CASCADE,
  position     BIGINT NOT NULL CHECK (position >= 0),
  code         TEXT NOT NULL,
  message      TEXT NOT NULL,
  PRIMARY KEY (referral_id, position)
);

CREATE TABLE deliveries (
  id               BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  referral_id      TEXT NOT NULL REFERENCES referrals (id) ON DELETE CASCADE,
  target           TEXT NOT NULL,
  purpose          TEXT NOT NULL DEFAULT 'intake'
                   CHECK (purpose = 'intake' OR purpose ~ '^escalation-[1-9]' OR purpose ~ '^notice-[1-9]'),
  state            TEXT NOT NULL
                   CHECK (state IN ('pending', 'sending', 'delivered', 'retry', 'dead', 'cancelled', 'held')),
  attempts         BIGINT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  created_ms       BIGINT NOT NULL,
  next_attempt_ms  BIGINT NOT NULL,
  lease_until_ms   BIGINT,
  updated_ms       BIGINT NOT NULL,
  last_error       TEXT,
  external_id      TEXT,
  UNIQUE (referral_id, target, purpose),
  CHECK (state <> 'sending' OR lease_until_ms IS NOT NULL)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_ms) WHERE state IN ('pending', 'retry');
CREATE INDEX deliveries_lease ON deliveries (lease_until_ms) WHERE state = 'sending';
CREATE INDEX deliveries_state_target ON deliveries (state, target);
CREATE INDEX deliveries_state_created ON deliveries (state, created_ms);

CREATE TABLE attempts (
  id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  delivery_id  BIGINT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
  attempt      BIGINT NOT NULL CHECK (attempt >= 1),
  started_ms   BIGINT NOT NULL,
  finished_ms  BIGINT NOT NULL,
  outcome      TEXT NOT NULL CHECK (outcome IN ('delivered', 'transient', 'permanent', 'misconfigured')),
  code         TEXT,
  message      TEXT NOT NULL,
  external_id  TEXT
);
CREATE INDEX attempts_delivery ON attempts (delivery_id, attempt);
CREATE INDEX attempts_finished ON attempts (finished_ms);

CREATE TABLE audit (
  id           BIGINT PRIMARY KEY,
  at_ms        BIGINT NOT NULL,
  referral_id  TEXT,
  delivery_id  BIGINT,
  actor        TEXT NOT NULL,
  action       TEXT NOT NULL,
  detail       TEXT NOT NULL DEFAULT '',
  prev_hash    TEXT,
  hash         TEXT
);
CREATE INDEX audit_referral ON audit (referral_id);

CREATE TABLE tallies (
  kind   TEXT NOT NULL CHECK (kind IN ('decision', 'state')),
  value  TEXT NOT NULL,
  n      BIGINT NOT NULL,
  PRIMARY KEY (kind, value)
);
INSERT INTO tallies (kind, value, n) VALUES
  ('decision', 'accepted', 0), ('decision', 'review', 0), ('decision', 'declined', 0),
  ('state', 'pending', 0), ('state', 'sending', 0), ('state', 'delivered', 0), ('state', 'retry', 0),
  ('state', 'dead', 0), ('state', 'cancelled', 0), ('state', 'held', 0);

CREATE TABLE status_tallies (
  status  TEXT PRIMARY KEY NOT NULL,
  n       BIGINT NOT NULL
);
INSERT INTO status_tallies (status, n) VALUES
  ('received', 0), ('acknowledged', 0), ('accepted', 0), ('declined', 0), ('needs-info', 0), ('closed', 0);

CREATE FUNCTION referrals_tally() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    UPDATE tallies SET n = n - 1 WHERE kind = 'decision' AND value = OLD.decision;
    UPDATE status_tallies SET n = n - 1 WHERE status = OLD.status;
  END IF;
  IF TG_OP IN ('UPDATE', 'INSERT') THEN
    UPDATE tallies SET n = n + 1 WHERE kind = 'decision' AND value = NEW.decision;
    UPDATE status_tallies SET n = n + 1 WHERE status = NEW.status;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER referrals_tally AFTER INSERT OR DELETE ON referrals
  FOR EACH ROW EXECUTE FUNCTION referrals_tally();
CREATE TRIGGER referrals_tally_update AFTER UPDATE OF decision, status ON referrals
  FOR EACH ROW WHEN (OLD.decision IS DISTINCT FROM NEW.decision OR OLD.status IS DISTINCT FROM NEW.status)
  EXECUTE FUNCTION referrals_tally();

CREATE FUNCTION deliveries_tally() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    UPDATE tallies SET n = n - 1 WHERE kind = 'state' AND value = OLD.state;
  END IF;
  IF TG_OP IN ('UPDATE', 'INSERT') THEN
    UPDATE tallies SET n = n + 1 WHERE kind = 'state' AND value = NEW.state;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER deliveries_tally AFTER INSERT OR DELETE ON deliveries
  FOR EACH ROW EXECUTE FUNCTION deliveries_tally();
CREATE TRIGGER deliveries_tally_update AFTER UPDATE OF state ON deliveries
  FOR EACH ROW WHEN (OLD.state <> NEW.state) EXECUTE FUNCTION deliveries_tally();

CREATE TABLE status_changes (
  id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  referral_id  TEXT NOT NULL REFERENCES referrals (id) ON DELETE CASCADE,
  at_ms        BIGINT NOT NULL,
  actor        TEXT NOT NULL,
  via          TEXT NOT NULL CHECK (via IN ('cli', 'api', 'link')),
  from_status  TEXT NOT NULL,
  to_status    TEXT NOT NULL,
  note         BYTEA
);
CREATE INDEX status_changes_referral ON status_changes (referral_id, id);

CREATE TABLE escalations (
  referral_id  TEXT NOT NULL REFERENCES referrals (id) ON DELETE CASCADE,
  step         BIGINT NOT NULL CHECK (step >= 1),
  due_ms       BIGINT NOT NULL,
  after_s      BIGINT NOT NULL CHECK (after_s >= 0),
  targets      TEXT NOT NULL,
  state        TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'fired', 'stopped')),
  done_ms      BIGINT,
  PRIMARY KEY (referral_id, step)
);
CREATE INDEX escalations_due ON escalations (due_ms) WHERE state = 'pending';

CREATE TABLE ack_tokens (
  token_hash   TEXT PRIMARY KEY NOT NULL,
  referral_id  TEXT NOT NULL REFERENCES referrals (id) ON DELETE CASCADE,
  created_ms   BIGINT NOT NULL,
  expires_ms   BIGINT NOT NULL,
  used_ms      BIGINT
);
CREATE INDEX ack_tokens_referral ON ack_tokens (referral_id);

CREATE TABLE identity_secret (
  id     BIGINT PRIMARY KEY CHECK (id = 1),
  secret BYTEA NOT NULL CHECK (octet_length(secret) = 32)
);

CREATE TABLE ack_times (
  urgency  TEXT NOT NULL CHECK (urgency IN ('routine', 'urgent', 'emergent')),
  le_ms    BIGINT NOT NULL,
  n        BIGINT NOT NULL DEFAULT 0,
  sum_ms   BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (urgency, le_ms)
);
INSERT INTO ack_times (urgency, le_ms)
  SELECT u.urgency, b.le_ms FROM
    (VALUES ('routine'), ('urgent'), ('emergent')) AS u (urgency),
    (VALUES (60000::bigint), (300000), (900000), (1800000), (3600000), (7200000), (14400000), (28800000),
            (86400000), (259200000), (604800000), (9223372036854775807)) AS b (le_ms);
CREATE FUNCTION referrals_ack_time() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE ack_times SET n = n + 1
    WHERE urgency = NEW.urgency AND le_ms >= greatest(0, NEW.acknowledged_ms - NEW.received_ms);
  UPDATE ack_times SET sum_ms = sum_ms + greatest(0, NEW.acknowledged_ms - NEW.received_ms)
    WHERE urgency = NEW.urgency AND le_ms = 9223372036854775807;
  RETURN NULL;
END $$;
CREATE TRIGGER referrals_ack_time AFTER UPDATE OF acknowledged_ms ON referrals
  FOR EACH ROW WHEN (OLD.acknowledged_ms IS NULL AND NEW.acknowledged_ms IS NOT NULL)
  EXECUTE FUNCTION referrals_ack_time();

CREATE TABLE escalation_tallies (
  step   BIGINT PRIMARY KEY NOT NULL CHECK (step >= 1),
  fired  BIGINT NOT NULL
);
CREATE FUNCTION escalations_fired() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO escalation_tallies AS t (step, fired) VALUES (NEW.step, 1)
    ON CONFLICT (step) DO UPDATE SET fired = t.fired + 1;
  RETURN NULL;
END $$;
CREATE TRIGGER escalations_fired AFTER UPDATE OF state ON escalations
  FOR EACH ROW WHEN (NEW.state = 'fired' AND OLD.state <> 'fired') EXECUTE FUNCTION escalations_fired();

-- SQLite's implicit rowid, made a column of the same name, so that the
-- store's statements that page through attachments by rowid serve both.
CREATE TABLE attachments (
  rowid         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  referral_id   TEXT NOT NULL REFERENCES referrals (id) ON DELETE CASCADE,
  position      BIGINT NOT NULL CHECK (position >= 1),
  title         BYTEA NOT NULL,
  content_type  TEXT NOT NULL CHECK (content_type IN ('application/pdf', 'image/jpeg', 'image/png', 'image/tiff')),
  bytes         BIGINT NOT NULL CHECK (bytes >= 0),
  pages         BIGINT NOT NULL CHECK (pages >= 1),
  sha256        TEXT NOT NULL,
  data          BYTEA NOT NULL,
  UNIQUE (referral_id, position)
);
)sql";

// The version PostgreSQL's schema starts at.
constexpr int postgresql_baseline_version = 8;

bool has_table(Database& db, std::string_view name) {
  Statement st =
      db.prepare(db.dialect() == Dialect::sqlite ? "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1"
                                                 : "SELECT 1 FROM information_schema.tables "
                                                   "WHERE table_schema = current_schema() AND table_name = ?1");
  st.bind(1, name);
  return st.step();
}

bool has_user_objects(Database& db) {
  Statement st = db.prepare(db.dialect() == Dialect::sqlite
                                ? "SELECT 1 FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
                                : "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema()");
  return st.step();
}

}  // namespace

int current_schema_version(Database& db) {
  if (!has_table(db, "schema_version")) return 0;
  Statement st = db.prepare("SELECT coalesce(max(version), 0) FROM schema_version");
  st.step();
  return static_cast<int>(st.column_int(0));
}

int checked_schema_version(Database& db) {
  const int version = current_schema_version(db);
  if (version > schema_version) {
    throw IncompatibleSchema("database schema version " + std::to_string(version) + " is newer than this referrald (" +
                             std::to_string(schema_version) + ")");
  }
  if (version == 0 && has_user_objects(db)) {
    throw IncompatibleSchema("database " + db.name() + " has tables but no schema_version: not a referrald database");
  }
  return version;
}

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void record_version(Database& db, int version, std::int64_t at_ms) {
  Statement record = db.prepare("INSERT INTO schema_version (version, applied_ms) VALUES (?1, ?2)");
  record.bind(1, std::int64_t{version}).bind(2, at_ms);
  record.run();
}

// PostgreSQL: the baseline for an empty database, then what follows it, all
// in one transaction under the write lock (an advisory lock every instance
// takes), so instances starting together migrate once.
void migrate_postgresql(Database& db, int target) {
  if (target < postgresql_baseline_version) {
    throw std::logic_error("migrate: a PostgreSQL database starts at schema version " +
                           std::to_string(postgresql_baseline_version));
  }
  WriteTransaction write(db);
  const int from = checked_schema_version(db);
  if (from >= target) return;
  const std::int64_t applied_ms = now_ms();
  if (from == 0) {
    db.exec(postgresql_baseline);
    record_version(db, postgresql_baseline_version, applied_ms);
  }
  for (const Migration& m : migrations) {
    if (m.version <= std::max(from, postgresql_baseline_version) || m.version > target) continue;
    if (m.postgresql == nullptr) {
      throw std::logic_error("migration " + std::to_string(m.version) + " has no PostgreSQL text");
    }
    db.exec(m.postgresql);
    record_version(db, m.version, applied_ms);
  }
  write.commit();
}

}  // namespace

void migrate(Database& db, int target) {
  if (target < 0 || target > schema_version)
    throw std::logic_error("migrate: no schema version " + std::to_string(target));
  // The common case, an up-to-date database, needs no write lock.
  const int seen = checked_schema_version(db);
  if (seen >= target) return;
  if (db.dialect() == Dialect::postgresql) {
    migrate_postgresql(db, target);
    return;
  }

  // PRAGMA foreign_keys is a no-op inside a transaction: set it before. (If
  // another process migrates meanwhile, keys are off for nothing, briefly.)
  const bool rebuilds = std::any_of(std::begin(migrations), std::end(migrations), [&](const Migration& m) {
    return m.version > seen && m.version <= target && m.rebuilds;
  });
  struct ForeignKeysOff {
    Database& db;
    bool on;
    ~ForeignKeysOff() {
      if (on) db.exec("PRAGMA foreign_keys = ON");
    }
  } keys_off{db, rebuilds};
  if (rebuilds) db.exec("PRAGMA foreign_keys = OFF");

  WriteTransaction write(db);
  // Again under the lock: another process may have migrated meanwhile.
  const int from = checked_schema_version(db);
  const std::int64_t applied_ms = now_ms();
  for (const Migration& m : migrations) {
    if (m.version <= from || m.version > target) continue;
    db.exec(m.sql);
    if (m.then != nullptr) m.then(db);
    if (m.rebuilds && db.prepare("PRAGMA foreign_key_check").step()) {
      throw DatabaseError(SQLITE_CONSTRAINT_FOREIGNKEY,
                          "migration to schema version " + std::to_string(m.version) +
                              " would leave rows whose parent row is missing (PRAGMA foreign_key_check)");
    }
    record_version(db, m.version, applied_ms);
  }
  write.commit();
}

}  // namespace referrald::store
