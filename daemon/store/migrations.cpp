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
// - A decision's reasons are rows of `referral_reasons` (referral, position,
//   code, message) rather than JSON text: rf_store links no JSON library and
//   hand-written escaping is a bug waiting to happen; rows also let
//   referralctl count reasons with SQL.
// - `audit` has no foreign keys: the trail (which holds no PHI) must outlive
//   a purge of the referrals it mentions.
// - A 'sending' row must carry a lease, or no claim would ever pick it up
//   again after a crash.
#include <chrono>
#include <string>

#include "store/store.hpp"

namespace referrald::store {

namespace {

struct Migration {
  int version;
  const char* sql;
};

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
};

static_assert(sizeof(migrations) / sizeof(migrations[0]) == schema_version,
              "one migration per schema version");

bool has_table(Database& db, std::string_view name) {
  Statement st = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1");
  st.bind(1, name);
  return st.step();
}

bool has_user_objects(Database& db) {
  Statement st = db.prepare("SELECT 1 FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'");
  return st.step();
}

// Reads the version, refusing what this build cannot handle.
int checked_version(Database& db) {
  const int version = current_schema_version(db);
  if (version > schema_version) {
    throw IncompatibleSchema("database schema version " + std::to_string(version) +
                             " is newer than this referrald (" + std::to_string(schema_version) + ")");
  }
  if (version == 0 && has_user_objects(db)) {
    throw IncompatibleSchema("database " + db.file().string() +
                             " has tables but no schema_version: not a referrald database");
  }
  return version;
}

}  // namespace

int current_schema_version(Database& db) {
  if (!has_table(db, "schema_version")) return 0;
  Statement st = db.prepare("SELECT coalesce(max(version), 0) FROM schema_version");
  st.step();
  return static_cast<int>(st.column_int(0));
}

void migrate(Database& db) {
  // The common case, an up-to-date database, needs no write lock.
  if (checked_version(db) == schema_version) return;

  WriteTransaction write(db);
  // Again under the lock: another process may have migrated meanwhile.
  const int from = checked_version(db);
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  for (const Migration& m : migrations) {
    if (m.version <= from) continue;
    db.exec(m.sql);
    Statement record = db.prepare("INSERT INTO schema_version (version, applied_ms) VALUES (?1, ?2)");
    record.bind(1, std::int64_t{m.version}).bind(2, std::int64_t{now_ms});
    record.run();
  }
  write.commit();
}

}  // namespace referrald::store
