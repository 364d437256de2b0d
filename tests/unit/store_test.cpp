// The store against real SQLite files in a temporary directory and a real
// PostgreSQL server: one test body per behaviour, the backend its parameter.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "store/audit_chain.hpp"
#include "store/database.hpp"
#include "store/queries.hpp"
#include "store/store.hpp"
#include "support/harness.hpp"
#include "support/store_backends.hpp"

using namespace referrald;
using namespace referrald::store;
using namespace std::chrono_literals;

namespace {

using referrald::test::TempDir;
using referrald::test::TestStore;

const TimePoint t0 = from_millis(1'795'000'000'000);  // late 2026

NewReferral sample(const std::string& id, TimePoint received,
                   std::vector<std::string> targets = {"office-email", "office-fax"}) {
  NewReferral r;
  r.id = id;
  r.received_at = received;
  r.decision = Decision::review;
  r.urgency = Urgency::urgent;
  r.reasons = {{"NO_OPEN_TRIAL", "There is no open clinical trial for \"ASPS\" at this time."}};
  r.disease = "asps";
  r.channel = "api";
  r.client = "sha256:client-a";
  r.request_hash = "hash-" + id;
  r.document = R"({"patient":{"given_name":"Ava"}})";
  r.response = R"({"id":")" + id + R"(","decision":"review"})";
  r.targets = std::move(targets);
  return r;
}

std::int64_t scalar(Database& db, const std::string& sql) {
  Statement st = db.prepare(sql);
  if (!st.step()) throw std::runtime_error("no row: " + sql);
  return st.column_int(0);
}

mode_t mode_of(const std::filesystem::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

std::filesystem::path sidecar(const std::filesystem::path& db, const char* suffix) { return db.string() + suffix; }

class StoreTest : public ::testing::TestWithParam<Dialect> {
 protected:
  virtual Dialect backend() const { return GetParam(); }
  void SetUp() override {
    store = std::make_unique<TestStore>(backend());
    db = store->open();
    migrate(*db);
  }
  std::filesystem::path file() const { return store->target().file; }

  InsertResult insert(const NewReferral& r) {
    db->begin_write();
    InsertResult result = insert_referral(*db, r);
    db->exec("COMMIT");
    return result;
  }

  std::unique_ptr<TestStore> store;
  std::unique_ptr<Database> db;
};
INSTANTIATE_TEST_SUITE_P(Backends, StoreTest, test::store_backends, test::backend_name);

// What only SQLite has: its files, data_version, its query planner.
class SqliteStoreTest : public StoreTest {
 protected:
  Dialect backend() const override { return Dialect::sqlite; }
};

// ---- Database ----

TEST(DatabaseError, ClassifiesUnavailableByPrimaryCode) {
  for (int code : {SQLITE_FULL, SQLITE_IOERR, SQLITE_IOERR_WRITE, SQLITE_IOERR_FSYNC, SQLITE_READONLY,
                   SQLITE_READONLY_DBMOVED, SQLITE_BUSY, SQLITE_BUSY_SNAPSHOT, SQLITE_LOCKED, SQLITE_CANTOPEN,
                   SQLITE_CORRUPT, SQLITE_NOTADB, SQLITE_PERM}) {
    EXPECT_TRUE(DatabaseError(code, "x").is_unavailable()) << code;
    EXPECT_FALSE(DatabaseError(code, "x").is_constraint()) << code;
  }
  for (int code : {SQLITE_CONSTRAINT, SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_CHECK, SQLITE_ERROR, SQLITE_MISUSE,
                   SQLITE_RANGE}) {
    EXPECT_FALSE(DatabaseError(code, "x").is_unavailable()) << code;
  }
  EXPECT_TRUE(DatabaseError(SQLITE_CONSTRAINT_FOREIGNKEY, "x").is_constraint());
}

TEST(Database, CreatesDatabaseAndLogFilesPrivateWhateverTheUmask) {
  for (mode_t mask : {mode_t{0}, mode_t{022}, mode_t{0277}}) {
    TempDir dir;
    const auto file = dir.path() / "referrald.db";
    const mode_t old = ::umask(mask);
    {
      Database db(file, OpenMode::read_write_create);
      migrate(db);  // writes, so -wal and -shm certainly exist
      ::umask(old);
      EXPECT_EQ(mode_of(file), 0600u) << "umask " << mask;
      EXPECT_EQ(mode_of(sidecar(file, "-wal")), 0600u) << "umask " << mask;
      EXPECT_EQ(mode_of(sidecar(file, "-shm")), 0600u) << "umask " << mask;
    }
  }
}

TEST(Database, UsesWalFullSyncAndForeignKeys) {
  TempDir dir;
  Database db(dir.path() / "referrald.db", OpenMode::read_write_create);
  Statement journal = db.prepare("PRAGMA journal_mode");
  ASSERT_TRUE(journal.step());
  EXPECT_EQ(journal.column_text(0), "wal");
  EXPECT_EQ(scalar(db, "PRAGMA synchronous"), 2);  // FULL
  EXPECT_EQ(scalar(db, "PRAGMA foreign_keys"), 1);
}

TEST(Database, OpeningAMissingFileWithoutCreateFailsClearlyAndCreatesNothing) {
  TempDir dir;
  const auto file = dir.path() / "missing.db";
  for (OpenMode mode : {OpenMode::read_only, OpenMode::read_write}) {
    try {
      Database db(file, mode);
      FAIL() << "opened a missing database";
    } catch (const DatabaseError& e) {
      EXPECT_EQ(std::string(e.what()),
                "database file " + file.string() + " does not exist (start referrald once to create it)");
      EXPECT_TRUE(e.is_unavailable());
    }
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(Database, AFileThatIsNotADatabaseFailsAtOpenWithItsName) {
  TempDir dir;
  const auto file = dir.path() / "notes.txt";
  std::FILE* f = std::fopen(file.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  const std::string text(8192, 'n');
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
  for (OpenMode mode : {OpenMode::read_only, OpenMode::read_write, OpenMode::read_write_create}) {
    try {
      Database db(file, mode);
      FAIL() << "opened a text file as a database";
    } catch (const DatabaseError& e) {
      EXPECT_EQ(e.code(), SQLITE_NOTADB);
      EXPECT_EQ(std::string(e.what()), "sqlite open " + file.string() + ": file is not a database");
    }
  }
}

TEST_P(StoreTest, ReadOnlyConnectionReadsButCannotWrite) {
  insert(sample("R-1", t0));
  const auto reader = store->open(OpenMode::read_only);
  EXPECT_TRUE(find_referral(*reader, "R-1").has_value());
  try {
    reader->exec("DELETE FROM audit");
    FAIL() << "a read-only connection wrote";
  } catch (const DatabaseError& e) {
    EXPECT_EQ(e.code() & 0xff, SQLITE_READONLY) << e.what();
  }
}

TEST_P(StoreTest, ErrorsNameTheStatementButNeverTheBoundValues) {
  NewReferral r = sample("R-SECRET-ID-1", t0);
  r.document = R"({"patient":{"given_name":"Persephone-Unique-Name"}})";
  insert(r);
  try {
    Statement st = db->prepare(
        "INSERT INTO referrals (id, received_ms, decision, urgency, channel, client, "
        "request_hash, document, response) VALUES (?1, 0, 'review', 'routine', 'api', "
        "'c', 'h', ?2, '')");
    st.bind(1, std::string_view("R-SECRET-ID-1")).bind_blob(2, r.document);
    st.run();
    FAIL() << "duplicate id inserted";
  } catch (const DatabaseError& e) {
    const std::string what = e.what();
    EXPECT_TRUE(e.is_constraint());
    EXPECT_FALSE(e.is_unavailable());
    const char* refusal = GetParam() == Dialect::sqlite
                              ? "UNIQUE constraint failed: referrals.id"
                              : "duplicate key value violates unique constraint \"referrals_pkey\"";
    EXPECT_NE(what.find(refusal), std::string::npos) << what;
    EXPECT_NE(what.find("INSERT INTO referrals"), std::string::npos) << what;
    EXPECT_EQ(what.find("R-SECRET-ID-1"), std::string::npos) << what;
    EXPECT_EQ(what.find("Persephone"), std::string::npos) << what;
  }
  // A value of the wrong type: PostgreSQL's own message quotes it.
  try {
    Statement st = db->prepare(
        "INSERT INTO escalations (referral_id, step, due_ms, after_s, targets) VALUES ('R-SECRET-ID-1', ?1, 0, 0, "
        "'t')");
    st.bind(1, std::string_view("Persephone-Unique-Name"));
    st.run();
    FAIL() << "text stored as a position";
  } catch (const DatabaseError& e) {
    const std::string what = e.what();
    EXPECT_TRUE(e.is_constraint()) << what;
    EXPECT_NE(what.find("INSERT INTO escalations"), std::string::npos) << what;
    EXPECT_EQ(what.find("Persephone"), std::string::npos) << what;
  }
}

TEST_F(SqliteStoreTest, DataVersionMovesWhenAnotherConnectionWrites) {
  Database other(file(), OpenMode::read_write);
  const std::int64_t before = db->data_version();
  EXPECT_EQ(db->data_version(), before);
  other.exec("BEGIN IMMEDIATE");
  insert_referral(other, sample("R-1", t0));
  other.exec("COMMIT");
  EXPECT_NE(db->data_version(), before);
}

// ---- Migrations ----

TEST(Migrations, MigrateAFreshDatabaseThenReopen) {
  TempDir dir;
  const auto file = dir.path() / "referrald.db";
  {
    Database db(file, OpenMode::read_write_create);
    EXPECT_EQ(current_schema_version(db), 0);
    migrate(db);
    EXPECT_EQ(current_schema_version(db), schema_version);
    std::set<std::string> tables;
    Statement st = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'");
    while (st.step()) tables.insert(st.column_text(0));
    for (const char* t : {"schema_version", "referrals", "deliveries", "attempts", "audit"}) {
      EXPECT_TRUE(tables.count(t)) << t;
    }
  }
  {
    Database db(file, OpenMode::read_write);
    EXPECT_EQ(current_schema_version(db), schema_version);
    migrate(db);  // nothing to do
    EXPECT_EQ(scalar(db, "SELECT count(*) FROM schema_version"), schema_version);
  }
}

TEST(Migrations, ADatabaseNewerThanThisBuildIsRefused) {
  TempDir dir;
  const auto file = dir.path() / "referrald.db";
  {
    Database db(file, OpenMode::read_write_create);
    migrate(db);
    db.exec("INSERT INTO schema_version (version, applied_ms) VALUES (" + std::to_string(schema_version + 1) + ", 0)");
  }
  Database db(file, OpenMode::read_write);
  try {
    migrate(db);
    FAIL() << "migrated a newer database";
  } catch (const IncompatibleSchema& e) {
    EXPECT_EQ(std::string(e.what()), "database schema version " + std::to_string(schema_version + 1) +
                                         " is newer than this referrald (" + std::to_string(schema_version) + ")");
  }
  EXPECT_EQ(current_schema_version(db), schema_version + 1);
}

TEST(Migrations, AForeignDatabaseIsRefused) {
  TempDir dir;
  const auto file = dir.path() / "other.db";
  Database db(file, OpenMode::read_write_create);
  db.exec("CREATE TABLE inventory (sku TEXT)");
  try {
    migrate(db);
    FAIL() << "migrated a foreign database";
  } catch (const IncompatibleSchema& e) {
    EXPECT_EQ(std::string(e.what()),
              "database " + file.string() + " has tables but no schema_version: not a referrald database");
  }
}

TEST_P(StoreTest, ConstraintsRefuseUnknownStates) {
  insert(sample("R-1", t0));
  EXPECT_THROW(db->exec("UPDATE deliveries SET state = 'lost'"), DatabaseError);
  EXPECT_THROW(db->exec("UPDATE referrals SET decision = 'maybe'"), DatabaseError);
  // A 'sending' row must carry a lease, or no claim would ever pick it up again.
  EXPECT_THROW(db->exec("UPDATE deliveries SET state = 'sending', lease_until_ms = NULL"), DatabaseError);
  // Deleting a referral takes its deliveries with it, not its audit trail.
  db->exec("DELETE FROM referrals");
  EXPECT_EQ(scalar(*db, "SELECT count(*) FROM deliveries"), 0);
  EXPECT_EQ(scalar(*db, "SELECT count(*) FROM audit"), 1);
}

// ---- Referrals ----

// Reasons that are not the JSON the store writes (a file edited by hand) are
// an error naming the column, never a referral with its reasons dropped.
TEST_P(StoreTest, ReasonsThatAreNotItsJsonAreAnErrorNamingTheColumn) {
  insert(sample("R-1", t0));
  for (const char* stored : {"'not json'", "'{}'", "'[{\"code\": 1}]'"}) {
    db->exec(std::string("UPDATE referrals SET reasons = ") + stored);
    try {
      find_referral(*db, "R-1");
      ADD_FAILURE() << "read reasons stored as " << stored;
    } catch (const DatabaseError& e) {
      EXPECT_NE(std::string(e.what()).find("referrals.reasons"), std::string::npos) << e.what();
    }
  }
}

TEST_P(StoreTest, InsertFindAndDeliveriesRoundTripVerbatim) {
  NewReferral r = sample("R-20261128-7K3M9-TZQXA", t0 + 123ms);
  r.document =
      "{\"patient\":{\"given_name\":\"Zoë 🦄\",\"family_name\":\"O'Brien\"},"
      "\"notes\":\"'); DROP TABLE referrals;--\\n\\u0000\"}";
  r.document += std::string("\0 raw nul", 9);
  r.reasons = {{"NO_OPEN_TRIAL", "No open trial; a person must decide."},
               {"DIAGNOSIS_UNRECOGNIZED", "Line one\nline \"two\" '); DROP TABLE audit;--"}};
  const InsertResult result = insert(r);
  EXPECT_EQ(result.status, InsertStatus::inserted);
  EXPECT_EQ(result.id, r.id);
  EXPECT_EQ(result.response, r.response);

  const auto found = find_referral(*db, r.id);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->id, r.id);
  EXPECT_EQ(found->received_at, r.received_at);
  EXPECT_EQ(found->decision, Decision::review);
  EXPECT_EQ(found->urgency, Urgency::urgent);
  EXPECT_EQ(found->reasons, r.reasons);
  EXPECT_EQ(found->disease, std::optional<std::string>("asps"));
  EXPECT_EQ(found->channel, "api");
  EXPECT_EQ(found->client, "sha256:client-a");
  EXPECT_EQ(found->document, r.document);
  EXPECT_EQ(scalar(*db, "SELECT count(*) FROM referrals"), 1);

  const auto deliveries = deliveries_of(*db, r.id);
  ASSERT_EQ(deliveries.size(), 2u);
  for (std::size_t i = 0; i < deliveries.size(); ++i) {
    const DeliveryRow& d = deliveries[i];
    EXPECT_EQ(d.referral_id, r.id);
    EXPECT_EQ(d.target, r.targets[i]);
    EXPECT_EQ(d.state, DeliveryState::pending);
    EXPECT_EQ(d.attempts, 0);
    EXPECT_EQ(d.created_at, r.received_at);
    EXPECT_EQ(d.next_attempt_at, r.received_at);
    EXPECT_EQ(d.updated_at, r.received_at);
    EXPECT_FALSE(d.lease_until.has_value());
    EXPECT_FALSE(d.last_error.has_value());
    EXPECT_FALSE(d.external_id.has_value());
  }

  Statement audit_rows = db->prepare("SELECT at_ms, referral_id, delivery_id, actor, action, detail FROM audit");
  ASSERT_TRUE(audit_rows.step());
  EXPECT_EQ(audit_rows.column_int(0), to_millis(r.received_at));
  EXPECT_EQ(audit_rows.column_text(1), r.id);
  EXPECT_TRUE(audit_rows.column_is_null(2));
  EXPECT_EQ(audit_rows.column_text(3), "referrald");
  EXPECT_EQ(audit_rows.column_text(4), "received");
  EXPECT_EQ(audit_rows.column_text(5), "decision=review targets=2");
  EXPECT_FALSE(audit_rows.step());

  EXPECT_FALSE(find_referral(*db, "R-20261128-NOPE0-NOPE0").has_value());
  EXPECT_TRUE(deliveries_of(*db, "R-20261128-NOPE0-NOPE0").empty());
}

TEST_P(StoreTest, ARepeatedTargetGetsOneDelivery) {
  insert(sample("R-1", t0, {"office-email", "pager", "office-email"}));
  const auto deliveries = deliveries_of(*db, "R-1");
  ASSERT_EQ(deliveries.size(), 2u);
  EXPECT_EQ(deliveries[0].target, "office-email");
  EXPECT_EQ(deliveries[1].target, "pager");
}

TEST_P(StoreTest, InsertReferralIsAtomicOnItsOwn) {
  // The audit row is written last; make it fail, outside any transaction.
  if (GetParam() == Dialect::sqlite) {
    db->exec(
        "CREATE TEMP TRIGGER refuse_audit BEFORE INSERT ON main.audit "
        "BEGIN SELECT RAISE(ABORT, 'injected'); END");
  } else {
    db->exec(
        "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION 'injected'; END $$; "
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit FOR EACH ROW EXECUTE FUNCTION refuse_audit()");
  }
  EXPECT_THROW(insert_referral(*db, sample("R-1", t0)), DatabaseError);
  EXPECT_EQ(scalar(*db, "SELECT count(*) FROM referrals"), 0);
  EXPECT_EQ(scalar(*db, "SELECT count(*) FROM deliveries"), 0);
  db->exec(GetParam() == Dialect::sqlite ? "DROP TRIGGER refuse_audit" : "DROP TRIGGER refuse_audit ON audit");
  EXPECT_EQ(insert_referral(*db, sample("R-2", t0)).status, InsertStatus::inserted);
  EXPECT_EQ(scalar(*db, "SELECT count(*) FROM deliveries"), 2);
}

TEST_P(StoreTest, IdempotencyKeyReplaysTheSameRequestAndRefusesADifferentOne) {
  NewReferral first = sample("R-1", t0);
  first.idempotency_key = "key-1";
  ASSERT_EQ(insert(first).status, InsertStatus::inserted);

  NewReferral again = sample("R-2", t0 + 5s);  // a new id would be drawn for the repeat
  again.idempotency_key = "key-1";
  again.request_hash = first.request_hash;
  const InsertResult replay = insert(again);
  EXPECT_EQ(replay.status, InsertStatus::replayed);
  EXPECT_EQ(replay.id, "R-1");
  EXPECT_EQ(replay.response, first.response);

  NewReferral different = sample("R-3", t0 + 6s);
  different.idempotency_key = "key-1";
  EXPECT_EQ(insert(different).status, InsertStatus::conflict);

  EXPECT_EQ(scalar(*db, "SELECT count(*) FROM referrals"), 1);
  EXPECT_EQ(scalar(*db, "SELECT count(*) FROM deliveries"), 2);
  EXPECT_EQ(scalar(*db, "SELECT count(*) FROM audit"), 1);

  // Keys are per client, and referrals without a key never collide.
  NewReferral other_client = sample("R-4", t0);
  other_client.client = "sha256:client-b";
  other_client.idempotency_key = "key-1";
  EXPECT_EQ(insert(other_client).status, InsertStatus::inserted);
  EXPECT_EQ(insert(sample("R-5", t0)).status, InsertStatus::inserted);
  EXPECT_EQ(insert(sample("R-6", t0)).status, InsertStatus::inserted);
  EXPECT_EQ(scalar(*db, "SELECT count(*) FROM referrals"), 4);
}

// ---- Claiming and finishing deliveries ----

std::vector<std::string> ids_of(const std::vector<DeliveryRow>& rows) {
  std::vector<std::string> ids;
  for (const DeliveryRow& r : rows) ids.push_back(r.referral_id + "/" + r.target);
  return ids;
}

TEST_P(StoreTest, ClaimDueTakesTheOldestDueFirstAndLeasesThem) {
  insert(sample("R-late", t0 + 3s, {"fax"}));
  insert(sample("R-first", t0 + 1s, {"fax"}));
  insert(sample("R-second", t0 + 2s, {"fax"}));

  const TimePoint now = t0 + 2500ms;
  auto claimed = claim_due(*db, now, 30s, 10);
  EXPECT_EQ(ids_of(claimed), (std::vector<std::string>{"R-first/fax", "R-second/fax"}));
  for (const DeliveryRow& d : claimed) {
    EXPECT_EQ(d.state, DeliveryState::sending);
    EXPECT_EQ(d.attempts, 1);
    EXPECT_EQ(d.lease_until, std::optional<TimePoint>(now + 30s));
    EXPECT_EQ(d.updated_at, now);
  }
  EXPECT_EQ(deliveries_of(*db, "R-first")[0].state, DeliveryState::sending);

  // Leased rows are not handed out twice; the future one is not due yet.
  EXPECT_TRUE(claim_due(*db, now, 30s, 10).empty());
  EXPECT_EQ(next_due(*db), std::optional<TimePoint>(t0 + 3s));

  // The limit takes the oldest.
  EXPECT_EQ(ids_of(claim_due(*db, t0 + 3s, 30s, 1)), (std::vector<std::string>{"R-late/fax"}));
  EXPECT_EQ(next_due(*db), std::optional<TimePoint>(now + 30s));

  // An expired lease (a worker that crashed) makes the row claimable again.
  EXPECT_TRUE(claim_due(*db, now + 30s - 1ms, 30s, 10).empty());
  claimed = claim_due(*db, now + 30s, 30s, 10);
  EXPECT_EQ(ids_of(claimed), (std::vector<std::string>{"R-first/fax", "R-second/fax"}));
  for (const DeliveryRow& d : claimed) EXPECT_EQ(d.attempts, 2);
  EXPECT_TRUE(claim_due(*db, now, 30s, 0).empty());
}

TEST_P(StoreTest, ClaimDueFiltersByTarget) {
  insert(sample("R-1", t0, {"office-email", "office-fax", "pager"}));
  EXPECT_EQ(ids_of(claim_due(*db, t0, 30s, 10, {"office-fax"})), (std::vector<std::string>{"R-1/office-fax"}));
  EXPECT_EQ(ids_of(claim_due(*db, t0, 30s, 10, {"pager", "office-email", "nowhere"})),
            (std::vector<std::string>{"R-1/office-email", "R-1/pager"}));
  EXPECT_TRUE(claim_due(*db, t0, 30s, 10).empty());
}

TEST_P(StoreTest, NextDueIgnoresHeldAndFinishedDeliveries) {
  EXPECT_EQ(next_due(*db), std::nullopt);
  insert(sample("R-1", t0, {"fax"}));
  insert(sample("R-2", t0 + 1s, {"fax"}));
  EXPECT_EQ(next_due(*db), std::optional<TimePoint>(t0));
  db->exec("UPDATE deliveries SET state = 'held' WHERE referral_id = 'R-1'");
  EXPECT_EQ(next_due(*db), std::optional<TimePoint>(t0 + 1s));
  EXPECT_TRUE(claim_due(*db, t0 + 500ms, 30s, 10).empty());
  db->exec("UPDATE deliveries SET state = 'cancelled'");
  EXPECT_EQ(next_due(*db), std::nullopt);
}

AttemptRecord attempt_for(const DeliveryRow& d, AttemptOutcome outcome, DeliveryState next) {
  AttemptRecord a;
  a.delivery_id = d.id;
  a.attempt = d.attempts;
  a.started_at = d.updated_at;
  a.finished_at = d.updated_at + 2s;
  a.outcome = outcome;
  a.next_state = next;
  a.message = outcome == AttemptOutcome::delivered ? "250 queued" : "Try again later";
  return a;
}

TEST_P(StoreTest, FinishAttemptMovesTheDeliveryAndRecordsIt) {
  insert(sample("R-1", t0, {"email", "fax", "pager"}));
  auto claimed = claim_due(*db, t0, 30s, 10);
  ASSERT_EQ(claimed.size(), 3u);

  AttemptRecord delivered = attempt_for(claimed[0], AttemptOutcome::delivered, DeliveryState::delivered);
  delivered.external_id = "<R-1.email@referrald>";
  EXPECT_EQ(finish_attempt(*db, delivered), Finished::applied);

  AttemptRecord retry = attempt_for(claimed[1], AttemptOutcome::transient, DeliveryState::retry);
  retry.code = "451";
  retry.next_attempt_at = t0 + 60s;
  EXPECT_EQ(finish_attempt(*db, retry), Finished::applied);

  AttemptRecord dead = attempt_for(claimed[2], AttemptOutcome::permanent, DeliveryState::dead);
  dead.code = "550";
  dead.message = "Pager unknown";
  EXPECT_EQ(finish_attempt(*db, dead), Finished::applied);

  const auto rows = deliveries_of(*db, "R-1");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].state, DeliveryState::delivered);
  EXPECT_EQ(rows[0].external_id, std::optional<std::string>("<R-1.email@referrald>"));
  EXPECT_FALSE(rows[0].last_error.has_value());
  EXPECT_FALSE(rows[0].lease_until.has_value());
  EXPECT_EQ(rows[0].updated_at, delivered.finished_at);
  EXPECT_EQ(rows[1].state, DeliveryState::retry);
  EXPECT_EQ(rows[1].next_attempt_at, t0 + 60s);
  EXPECT_EQ(rows[1].last_error, std::optional<std::string>("451 Try again later"));
  EXPECT_FALSE(rows[1].lease_until.has_value());
  EXPECT_EQ(rows[2].state, DeliveryState::dead);
  EXPECT_EQ(rows[2].last_error, std::optional<std::string>("550 Pager unknown"));
  EXPECT_TRUE(is_final(rows[0].state) && is_final(rows[2].state) && !is_final(rows[1].state));

  // The retry comes back when it is due, and only then.
  EXPECT_EQ(next_due(*db), std::optional<TimePoint>(t0 + 60s));
  EXPECT_TRUE(claim_due(*db, t0 + 59s, 30s, 10).empty());
  const auto again = claim_due(*db, t0 + 60s, 30s, 10);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].target, "fax");
  EXPECT_EQ(again[0].attempts, 2);

  Statement attempts =
      db->prepare("SELECT delivery_id, attempt, outcome, code, message, external_id FROM attempts ORDER BY id");
  ASSERT_TRUE(attempts.step());
  EXPECT_EQ(attempts.column_int(0), claimed[0].id);
  EXPECT_EQ(attempts.column_int(1), 1);
  EXPECT_EQ(attempts.column_text(2), "delivered");
  EXPECT_TRUE(attempts.column_is_null(3));
  EXPECT_EQ(attempts.column_text(4), "250 queued");
  EXPECT_EQ(attempts.column_optional_text(5), std::optional<std::string>("<R-1.email@referrald>"));
  ASSERT_TRUE(attempts.step());
  EXPECT_EQ(attempts.column_text(2), "transient");
  EXPECT_EQ(attempts.column_text(3), "451");
  ASSERT_TRUE(attempts.step());
  EXPECT_EQ(attempts.column_text(2), "permanent");
  EXPECT_FALSE(attempts.step());

  Statement audit_rows = db->prepare(
      "SELECT referral_id, delivery_id, action, detail FROM audit WHERE delivery_id IS NOT NULL ORDER BY id");
  std::vector<std::string> audit_lines;
  while (audit_rows.step()) {
    EXPECT_EQ(audit_rows.column_text(0), "R-1");
    audit_lines.push_back(audit_rows.column_text(2) + ": " + audit_rows.column_text(3));
  }
  EXPECT_EQ(audit_lines, (std::vector<std::string>{
                             "delivered: target=email attempt=1 outcome=delivered",
                             "retry: target=fax attempt=1 outcome=transient code=451",
                             "dead: target=pager attempt=1 outcome=permanent code=550",
                         }));
}

TEST_P(StoreTest, FinishAttemptLeavesACancelledDeliveryAlone) {
  insert(sample("R-1", t0, {"fax"}));
  const auto claimed = claim_due(*db, t0, 30s, 10);
  ASSERT_EQ(claimed.size(), 1u);
  // An operator cancels while the fax is being sent.
  db->exec("UPDATE deliveries SET state = 'cancelled', lease_until_ms = NULL");

  EXPECT_EQ(finish_attempt(*db, attempt_for(claimed[0], AttemptOutcome::delivered, DeliveryState::delivered)),
            Finished::left_alone);
  const auto rows = deliveries_of(*db, "R-1");
  EXPECT_EQ(rows[0].state, DeliveryState::cancelled);
  // The attempt still happened, and the trail says it was not applied.
  EXPECT_EQ(scalar(*db, "SELECT count(*) FROM attempts"), 1);
  Statement st = db->prepare("SELECT action, detail FROM audit WHERE delivery_id IS NOT NULL");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.column_text(0), "attempt-not-applied");
  EXPECT_EQ(st.column_text(1), "target=fax attempt=1 outcome=delivered state=cancelled");
}

TEST_P(StoreTest, FinishAttemptFromAnExpiredLeaseDoesNotOverwriteTheNewClaim) {
  insert(sample("R-1", t0, {"fax"}));
  const auto first = claim_due(*db, t0, 30s, 10);
  const auto second = claim_due(*db, t0 + 30s, 30s, 10);  // the first worker hung past its lease
  ASSERT_EQ(first.size(), 1u);
  ASSERT_EQ(second.size(), 1u);
  ASSERT_EQ(second[0].attempts, 2);

  AttemptRecord stale = attempt_for(first[0], AttemptOutcome::transient, DeliveryState::retry);
  stale.next_attempt_at = t0 + 90s;
  EXPECT_EQ(finish_attempt(*db, stale), Finished::superseded);
  EXPECT_EQ(deliveries_of(*db, "R-1")[0].state, DeliveryState::sending);
  EXPECT_EQ(finish_attempt(*db, attempt_for(second[0], AttemptOutcome::delivered, DeliveryState::delivered)),
            Finished::applied);
  EXPECT_EQ(deliveries_of(*db, "R-1")[0].state, DeliveryState::delivered);
  EXPECT_EQ(scalar(*db, "SELECT count(*) FROM attempts"), 2);

  // The first worker finishes later still, after the new claim's outcome:
  // dropped again; the trail says which claim decided.
  AttemptRecord late = attempt_for(first[0], AttemptOutcome::permanent, DeliveryState::dead);
  late.code = "550";
  EXPECT_EQ(finish_attempt(*db, late), Finished::superseded);
  EXPECT_EQ(deliveries_of(*db, "R-1")[0].state, DeliveryState::delivered);
  Statement st = db->prepare("SELECT detail FROM audit WHERE action = 'attempt-not-applied' ORDER BY id DESC");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.column_text(0), "target=fax attempt=1 outcome=permanent code=550 state=delivered claimed_again=2");
}

TEST_P(StoreTest, FinishAttemptRefusesANonsensicalNextState) {
  insert(sample("R-1", t0, {"fax"}));
  const auto claimed = claim_due(*db, t0, 30s, 10);
  EXPECT_THROW(finish_attempt(*db, attempt_for(claimed[0], AttemptOutcome::transient, DeliveryState::pending)),
               std::invalid_argument);
  // retry without a time
  EXPECT_THROW(finish_attempt(*db, attempt_for(claimed[0], AttemptOutcome::transient, DeliveryState::retry)),
               std::invalid_argument);
  EXPECT_EQ(deliveries_of(*db, "R-1")[0].state, DeliveryState::sending);
}

TEST(DeliveryState, RoundTripsThroughText) {
  for (DeliveryState s : {DeliveryState::pending, DeliveryState::sending, DeliveryState::delivered,
                          DeliveryState::retry, DeliveryState::dead, DeliveryState::cancelled, DeliveryState::held}) {
    EXPECT_EQ(parse_delivery_state(to_string(s)), s);
  }
  EXPECT_EQ(parse_delivery_state("Pending"), std::nullopt);
  EXPECT_EQ(from_millis(to_millis(t0 + 1500ms)), t0 + 1500ms);
}

// ---- Every per-request and per-delivery query uses an index ----

// Records the SQL of every statement the store runs (never values: sqlite3_sql
// is the unexpanded text), so the test checks the real queries.
int record_sql(unsigned /*type*/, void* context, void* statement, void* /*text*/) {
  auto* seen = static_cast<std::set<std::string>*>(context);
  const char* sql = sqlite3_sql(static_cast<sqlite3_stmt*>(statement));
  if (sql != nullptr) seen->insert(sql);
  return 0;
}

std::vector<std::string> query_plan(Database& db, const std::string& sql) {
  Statement st = db.prepare("EXPLAIN QUERY PLAN " + sql);
  std::vector<std::string> lines;
  while (st.step()) lines.push_back(st.column_text(3));
  return lines;
}

TEST_F(SqliteStoreTest, EveryQueryUsesAnIndex) {
  std::set<std::string> seen;
  sqlite3_trace_v2(db->handle(), SQLITE_TRACE_STMT, record_sql, &seen);

  NewReferral r = sample("R-1", t0);
  r.idempotency_key = "k";
  insert(r);
  insert(r);  // replay
  find_referral(*db, "R-1");
  deliveries_of(*db, "R-1");
  next_due(*db);
  auto claimed = claim_due(*db, t0, 30s, 1);
  claimed.push_back(claim_due(*db, t0, 30s, 1, {"office-fax", "office-email"}).at(0));
  AttemptRecord a = attempt_for(claimed[0], AttemptOutcome::delivered, DeliveryState::delivered);
  finish_attempt(*db, a);
  finish_attempt(*db, a);  // refused: reads the row by id
  sqlite3_trace_v2(db->handle(), 0, nullptr, nullptr);

  const std::regex full_scan(R"(^SCAN (referrals|deliveries|attempts|audit)( |$))");
  const std::regex control(R"(^(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|PRAGMA))");
  std::string claim_plan, next_due_plan, idempotency_plan;
  int checked = 0;
  for (const std::string& sql : seen) {
    if (std::regex_search(sql, control)) continue;
    ++checked;
    std::string plan;
    for (const std::string& line : query_plan(*db, sql)) {
      plan += line + "\n";
      // "SCAN t USING INDEX" of a partial index would be bounded, but none is
      // expected; a bare "SCAN t" is a full table scan.
      EXPECT_FALSE(std::regex_search(line, full_scan)) << sql << "\n  plan line: " << line;
    }
    if (sql.rfind("UPDATE deliveries SET state = 'sending'", 0) == 0) claim_plan += plan;
    if (sql.find("min(next_attempt_ms)") != std::string::npos) next_due_plan += plan;
    if (sql.find("idempotency_key = ?2") != std::string::npos) idempotency_plan += plan;
    RecordProperty("plan" + std::to_string(checked), sql + "\n" + plan);
  }
  EXPECT_GE(checked, 10);
  EXPECT_NE(claim_plan.find("USING INDEX deliveries_due"), std::string::npos) << claim_plan;
  EXPECT_NE(claim_plan.find("USING INDEX deliveries_lease"), std::string::npos) << claim_plan;
  EXPECT_NE(claim_plan.find("INTEGER PRIMARY KEY"), std::string::npos) << claim_plan;
  EXPECT_NE(next_due_plan.find("deliveries_due"), std::string::npos) << next_due_plan;
  EXPECT_NE(next_due_plan.find("deliveries_lease"), std::string::npos) << next_due_plan;
  EXPECT_NE(idempotency_plan.find("referrals_idempotency"), std::string::npos) << idempotency_plan;
}

}  // namespace

// ---- the audit trail's hash chain ----

class AuditChainTest : public StoreTest {
 protected:
  // Three referrals and one delivery attempt: four audit rows.
  void SetUp() override {
    StoreTest::SetUp();
    insert(sample("R-1", t0));
    insert(sample("R-2", t0 + 1s));
    insert(sample("R-3", t0 + 2s));
    db->begin_write();
    auto claimed = claim_due(*db, t0 + 3s, 30s, 1);
    AttemptRecord a;
    a.delivery_id = claimed.at(0).id;
    a.attempt = 1;
    a.started_at = a.finished_at = t0 + 4s;
    a.outcome = AttemptOutcome::delivered;
    a.message = "250 queued";
    finish_attempt(*db, a);
    db->exec("COMMIT");
  }
  std::string hash_of(std::int64_t id) {
    Statement st = db->prepare("SELECT hash FROM audit WHERE id = ?1");
    st.bind(1, id);
    return st.step() ? st.column_text(0) : "";
  }
};
INSTANTIATE_TEST_SUITE_P(Backends, AuditChainTest, test::store_backends, test::backend_name);

TEST_P(AuditChainTest, EveryRowIsChainedToTheOneBefore) {
  EXPECT_EQ(scalar(*db, "SELECT count(*) FROM audit"), 4);
  EXPECT_EQ(scalar(*db, "SELECT count(*) FROM audit WHERE hash IS NULL OR prev_hash IS NULL"), 0);
  EXPECT_EQ(scalar(*db,
                   "SELECT count(*) FROM audit AS a JOIN audit AS b ON b.id = a.id + 1 "
                   "WHERE b.prev_hash <> a.hash"),
            0);
  Statement first = db->prepare("SELECT prev_hash FROM audit ORDER BY id LIMIT 1");
  ASSERT_TRUE(first.step());
  EXPECT_EQ(first.column_text(0), audit_chain_origin);

  const AuditVerification v = verify_audit_chain(*db);
  EXPECT_EQ(v.rows, 4);
  EXPECT_FALSE(v.first_bad.has_value()) << v.problem;
  EXPECT_EQ(v.head, hash_of(4));
}

TEST_P(AuditChainTest, AChangedRowIsNamed) {
  db->exec("UPDATE audit SET detail = 'decision=accepted targets=2' WHERE id = 2");
  const AuditVerification v = verify_audit_chain(*db);
  ASSERT_TRUE(v.first_bad.has_value());
  EXPECT_EQ(*v.first_bad, 2);
  EXPECT_EQ(v.problem, "does not match its hash: it was changed");
  EXPECT_EQ(v.rows, 2);
}

TEST_P(AuditChainTest, AChangedRowWithItsHashRecomputedIsFoundAtTheNextRow) {
  AuditEntry forged{2, to_millis(t0 + 1s), std::string("R-2"), std::nullopt, "referrald", "received", "forged"};
  Statement prev = db->prepare("SELECT prev_hash FROM audit WHERE id = 2");
  ASSERT_TRUE(prev.step());
  Statement update = db->prepare("UPDATE audit SET detail = 'forged', hash = ?1 WHERE id = 2");
  update.bind(1, std::string_view(audit_row_hash(prev.column_text(0), forged)));
  update.run();
  const AuditVerification v = verify_audit_chain(*db);
  ASSERT_TRUE(v.first_bad.has_value());
  EXPECT_EQ(*v.first_bad, 3);
  EXPECT_EQ(v.problem, "does not follow row 2: a row between them was removed, or that row was changed");
}

TEST_P(AuditChainTest, ARemovedRowIsFoundAtTheRowAfterIt) {
  db->exec("DELETE FROM audit WHERE id = 3");
  const AuditVerification v = verify_audit_chain(*db);
  ASSERT_TRUE(v.first_bad.has_value());
  EXPECT_EQ(*v.first_bad, 4);
  EXPECT_EQ(v.problem, "does not follow row 2: a row between them was removed, or that row was changed");

  db->exec("DELETE FROM audit WHERE id = 1");
  EXPECT_EQ(verify_audit_chain(*db).problem, "is not the start of the chain: the rows before it were removed");
}

TEST_P(AuditChainTest, AppendingOutsideATransactionIsRefused) {
  EXPECT_THROW(audit(*db, t0, std::nullopt, std::nullopt, "operator", "test", ""), std::logic_error);
  EXPECT_EQ(scalar(*db, "SELECT count(*) FROM audit"), 4);
}

TEST_P(AuditChainTest, TheEncodingKeepsFieldsApart) {
  AuditEntry a{1, 0, std::string("R-1"), std::nullopt, "ab", "c", ""};
  AuditEntry b{1, 0, std::string("R-1"), std::nullopt, "a", "bc", ""};
  AuditEntry c{1, 0, std::nullopt, std::nullopt, "ab", "c", ""};
  AuditEntry d{1, 0, std::string(""), std::nullopt, "ab", "c", ""};
  EXPECT_NE(audit_row_hash(audit_chain_origin, a), audit_row_hash(audit_chain_origin, b));
  EXPECT_NE(audit_row_hash(audit_chain_origin, c), audit_row_hash(audit_chain_origin, d));
  EXPECT_NE(audit_row_hash(audit_chain_origin, a), audit_row_hash(hash_of(1), a));
}

TEST_P(AuditChainTest, ChainingUnhashedRowsGivesTheSameChain) {
  const std::string head = verify_audit_chain(*db).head;
  db->exec("UPDATE audit SET prev_hash = NULL, hash = NULL WHERE id >= 3");
  EXPECT_EQ(verify_audit_chain(*db).first_bad, 3);
  db->begin_write();
  chain_unhashed_audit_rows(*db);
  db->exec("COMMIT");
  const AuditVerification v = verify_audit_chain(*db);
  EXPECT_FALSE(v.first_bad.has_value()) << v.problem;
  EXPECT_EQ(v.head, head);
}

// A version 3 database as referrald 0.1 wrote it, with a referral that has
// a delivery, an attempt and audit rows: migrating keeps every row, chains
// the audit trail and turns foreign keys back on.
TEST(Migrations, FromVersion3KeepsEveryRowAndChainsTheAuditTrail) {
  TempDir dir;
  Database db(dir.path() / "referrald.db", OpenMode::read_write_create);
  migrate(db, 3);
  ASSERT_EQ(current_schema_version(db), 3);
  db.exec(R"sql(
INSERT INTO referrals (id, received_ms, decision, urgency, disease, channel, client, request_hash, document, response)
  VALUES ('R-OLD', 1000, 'review', 'emergent', 'asps', 'form', 'form', 'h', X'7B7D', '{}');
INSERT INTO referral_reasons VALUES ('R-OLD', 0, 'NO_OPEN_TRIAL', 'No open trial.');
INSERT INTO deliveries (id, referral_id, target, state, attempts, created_ms, next_attempt_ms, updated_ms)
  VALUES (7, 'R-OLD', 'office-email', 'delivered', 1, 1000, 1000, 2000);
INSERT INTO attempts (delivery_id, attempt, started_ms, finished_ms, outcome, message)
  VALUES (7, 1, 1500, 2000, 'delivered', '250 ok');
INSERT INTO audit (at_ms, referral_id, actor, action, detail) VALUES (1000, 'R-OLD', 'referrald', 'received', 'x');
INSERT INTO audit (at_ms, referral_id, delivery_id, actor, action, detail)
  VALUES (2000, 'R-OLD', 7, 'referrald', 'delivered', 'y');
)sql");

  migrate(db);
  EXPECT_EQ(current_schema_version(db), schema_version);
  EXPECT_EQ(scalar(db, "PRAGMA foreign_keys"), 1);
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM attempts WHERE delivery_id = 7"), 1);
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM deliveries WHERE id = 7 AND purpose = 'intake'"), 1);
  EXPECT_EQ(scalar(db, "SELECT n FROM tallies WHERE kind = 'decision' AND value = 'review'"), 1);
  EXPECT_EQ(scalar(db, "SELECT n FROM tallies WHERE kind = 'state' AND value = 'delivered'"), 1);
  EXPECT_EQ(scalar(db, "SELECT n FROM status_tallies WHERE status = 'received'"), 1);
  const auto referral = find_referral(db, "R-OLD");
  ASSERT_TRUE(referral.has_value());
  EXPECT_EQ(referral->channel, "form");
  EXPECT_EQ(referral->reasons, (std::vector<Reason>{{"NO_OPEN_TRIAL", "No open trial."}}));
  const AuditVerification v = verify_audit_chain(db);
  EXPECT_EQ(v.rows, 2);
  EXPECT_FALSE(v.first_bad.has_value()) << v.problem;

  // The triggers came back with the rebuilt tables.
  db.exec("DELETE FROM referrals WHERE id = 'R-OLD'");
  EXPECT_EQ(scalar(db, "SELECT n FROM tallies WHERE kind = 'decision' AND value = 'review'"), 0);
  EXPECT_EQ(scalar(db, "SELECT n FROM tallies WHERE kind = 'state' AND value = 'delivered'"), 0);
  EXPECT_EQ(scalar(db, "SELECT n FROM status_tallies WHERE status = 'received'"), 0);
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM attempts"), 0);  // cascades again
}

// A version 8 database with a referral whose two reasons were stored out of
// order and one without reasons: version 9 keeps each referral's reasons, in
// position order, in its row, and the old table is gone. On both engines
// (SQLite moves them in C++, PostgreSQL in SQL).
void check_reasons_move_to_version_9(Database& db) {
  migrate(db, 8);
  ASSERT_EQ(current_schema_version(db), 8);
  const std::string document = db.dialect() == Dialect::sqlite ? "X'7B7D'" : "'{}'::bytea";  // "{}"
  db.exec(
      "INSERT INTO referrals (id, received_ms, decision, urgency, disease, channel, client, request_hash, document, "
      "response) VALUES ('R-TWO', 1000, 'review', 'emergent', 'asps', 'api', 'c', 'h', " +
      document + ", '{}'), ('R-NONE', 2000, 'accepted', 'routine', 'asps', 'api', 'c', 'h', " + document + ", '{}')");
  db.exec(R"sql(
INSERT INTO referral_reasons (referral_id, position, code, message)
  VALUES ('R-TWO', 1, 'AFTER_HOURS', 'Received after hours: "paged".'),
         ('R-TWO', 0, 'NO_OPEN_TRIAL', 'No open trial.');
)sql");
  migrate(db);
  EXPECT_EQ(current_schema_version(db), schema_version);
  const auto two = find_referral(db, "R-TWO");
  ASSERT_TRUE(two.has_value());
  EXPECT_EQ(two->reasons, (std::vector<Reason>{{"NO_OPEN_TRIAL", "No open trial."},
                                               {"AFTER_HOURS", "Received after hours: \"paged\"."}}));
  const auto none = find_referral(db, "R-NONE");
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->reasons.empty());
  EXPECT_THROW(db.exec("SELECT 1 FROM referral_reasons"), DatabaseError);
}

TEST(Migrations, ToVersion9KeepsEachReferralsReasonsInOrderInItsRow) {
  TempDir dir;
  Database db(dir.path() / "referrald.db", OpenMode::read_write_create);
  check_reasons_move_to_version_9(db);
}

TEST(PostgresSchema, ToVersion9KeepsEachReferralsReasonsInOrderInItsRow) {
  TestStore store(Dialect::postgresql);
  check_reasons_move_to_version_9(*store.open());
}

// How many temporary b-trees SQLite builds to run `sql` once: one per IN
// list of more than two values it tests.
std::int64_t temporary_tables(Database& db, const std::string& sql) {
  Statement program = db.prepare("EXPLAIN " + sql);
  std::int64_t n = 0;
  while (program.step()) n += program.column_text(1) == "OpenEphemeral" ? 1 : 0;
  return n;
}

// A version 9 database with a referral: version 10 keeps it, every CHECK
// still refuses what it refused and allows what it allowed, and inserting a
// referral or a delivery tests its states without a temporary table.
TEST(Migrations, ToVersion10KeepsEveryCheckWithoutATablePerInsert) {
  TempDir dir;
  Database db(dir.path() / "referrald.db", OpenMode::read_write_create);
  migrate(db, 9);
  {
    WriteTransaction tx(db);
    insert_referral(db, sample("R-1", t0, {"office-email"}));
    tx.commit();
  }
  const std::string insert_referral_sql =
      "INSERT INTO referrals (id, received_ms, decision, urgency, channel, client, request_hash, document, "
      "response) VALUES ('R-2', 1, 'review', 'urgent', 'api', 'c', 'h', X'00', '{}')";
  const std::string insert_delivery_sql =
      "INSERT INTO deliveries (referral_id, target, state, attempts, created_ms, next_attempt_ms, "
      "updated_ms) VALUES ('R-1', 'office-fax', 'pending', 0, 1, 1, 1)";
  ASSERT_EQ(temporary_tables(db, insert_referral_sql), 4);  // decision, urgency, channel, status
  ASSERT_EQ(temporary_tables(db, insert_delivery_sql), 1);

  migrate(db);
  EXPECT_EQ(current_schema_version(db), schema_version);
  // This connection, which migrated, reads the new schema too.
  EXPECT_EQ(temporary_tables(db, insert_referral_sql), 0);
  EXPECT_EQ(temporary_tables(db, insert_delivery_sql), 0);
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM referrals WHERE id = 'R-1'"), 1);
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM deliveries WHERE referral_id = 'R-1' AND state = 'pending'"), 1);
  Statement integrity = db.prepare("PRAGMA integrity_check");
  ASSERT_TRUE(integrity.step());
  EXPECT_EQ(integrity.column_text(0), "ok");

  // Every value each rewritten CHECK names is still allowed, and no other.
  struct Check {
    const char* table;
    const char* column;
    std::vector<const char*> values;
  };
  const std::vector<Check> checks = {
      {"referrals", "decision", {"accepted", "review", "declined"}},
      {"referrals", "urgency", {"routine", "urgent", "emergent"}},
      {"referrals", "channel", {"api", "form", "fhir"}},
      {"referrals", "status", {"received", "acknowledged", "accepted", "declined", "needs-info", "closed"}},
      {"deliveries", "state", {"pending", "sending", "delivered", "retry", "dead", "cancelled", "held"}},
  };
  db.exec("UPDATE deliveries SET lease_until_ms = 5");  // 'sending' needs a lease
  for (const Check& c : checks) {
    const std::string update = std::string("UPDATE ") + c.table + " SET " + c.column + " = ";
    for (const char* v : c.values) EXPECT_NO_THROW(db.exec(update + "'" + v + "'")) << c.column << " " << v;
    EXPECT_THROW(db.exec(update + "'bogus'"), DatabaseError) << c.column;
    EXPECT_THROW(db.exec(update + "'" + c.values[0] + " '"), DatabaseError) << c.column;
  }
  // The tallies followed every change.
  EXPECT_EQ(scalar(db, "SELECT n FROM tallies WHERE kind = 'state' AND value = 'held'"), 1);
  EXPECT_EQ(scalar(db, "SELECT sum(n) FROM tallies WHERE kind = 'state'"), 1);
  EXPECT_EQ(scalar(db, "SELECT n FROM status_tallies WHERE status = 'closed'"), 1);
  EXPECT_EQ(scalar(db, "SELECT sum(n) FROM status_tallies"), 1);

  // A connection opened afterwards reads the same schema.
  Database other(dir.path() / "referrald.db", OpenMode::read_write);
  EXPECT_EQ(temporary_tables(other, insert_referral_sql), 0);
  const std::string attempt =
      "INSERT INTO attempts (delivery_id, attempt, started_ms, finished_ms, outcome, message) "
      "SELECT id, 1, 1, 1, ";
  EXPECT_THROW(other.exec(attempt + "'lost', 'x' FROM deliveries"), DatabaseError);
  EXPECT_NO_THROW(other.exec(attempt + "'transient', 'x' FROM deliveries"));
}

// ---- One statement for both engines ----

namespace {

TEST_P(StoreTest, PlaceholdersAreNumberedMayLeaveGapsAndQuotedTextIsLeftAlone) {
  insert(sample("R-1", t0));
  Statement st = db->prepare(
      "SELECT '?1 stays text', count(*) FROM referrals INDEXED BY referrals_received "
      "WHERE received_ms >= ?1 AND client <> ?3");
  st.bind(1, to_millis(t0)).bind(3, std::string_view("sha256:someone-else"));
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.column_text(0), "?1 stays text");
  EXPECT_EQ(st.column_int(1), 1);
  EXPECT_FALSE(st.step());
  // Run again with the same bindings, as SQLite's statements do.
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.column_int(1), 1);
}

// ---- PostgreSQL's schema: version 8 in one script, then the migrations after it ----

using Columns = std::set<std::string>;  // "table.column", and "index NAME"

Columns sqlite_schema() {
  TempDir dir;
  Database db(dir.path() / "referrald.db", OpenMode::read_write_create);
  migrate(db);
  Columns out;
  Statement columns = db.prepare(
      "SELECT m.name, p.name FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p WHERE m.type = 'table'");
  while (columns.step()) out.insert(columns.column_text(0) + "." + columns.column_text(1));
  Statement indexes = db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL");
  while (indexes.step()) out.insert("index " + indexes.column_text(0));
  return out;
}

Columns postgresql_schema(Database& db) {
  Columns out;
  Statement columns = db.prepare(
      "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()");
  while (columns.step()) {
    // SQLite's implicit rowid is a column of that name in PostgreSQL.
    if (columns.column_text(1) == "rowid") continue;
    out.insert(columns.column_text(0) + "." + columns.column_text(1));
  }
  // Not the indexes behind primary keys and UNIQUE constraints (SQLite's are
  // automatic, without SQL).
  Statement indexes = db.prepare(
      "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
      "AND indexname NOT LIKE '%\\_pkey' AND indexname NOT LIKE '%\\_key'");
  while (indexes.step()) out.insert("index " + indexes.column_text(0));
  return out;
}

TEST(PostgresSchema, HasTheTablesColumnsAndIndexesOfSqlites) {
  static_assert(schema_version == 10, "a new migration needs its PostgreSQL text: check it here too");
  TestStore store(Dialect::postgresql);
  const auto db = store.open();
  migrate(*db);
  EXPECT_EQ(current_schema_version(*db), schema_version);
  EXPECT_EQ(postgresql_schema(*db), sqlite_schema());
}

TEST(PostgresSchema, InstancesStartingTogetherMigrateOnce) {
  TestStore store(Dialect::postgresql);
  std::vector<std::thread> starts;
  std::atomic<int> failures{0};
  for (int i = 0; i < 4; ++i) {
    starts.emplace_back([&] {
      try {
        const auto db = store.open();
        migrate(*db);
      } catch (const std::exception& e) {
        ++failures;
        ADD_FAILURE() << e.what();
      }
    });
  }
  for (auto& t : starts) t.join();
  EXPECT_EQ(failures.load(), 0);
  const auto db = store.open(OpenMode::read_only);
  // The baseline (8), then each migration after it, once, all in one run.
  EXPECT_EQ(scalar(*db, "SELECT count(*) FROM schema_version"), schema_version - 8 + 1);
  EXPECT_EQ(scalar(*db, "SELECT count(DISTINCT applied_ms) FROM schema_version"), 1);
  EXPECT_EQ(current_schema_version(*db), schema_version);
}

TEST(PostgresSchema, ANewerSchemaAndAForeignDatabaseAreRefused) {
  {
    TestStore store(Dialect::postgresql);
    const auto db = store.open();
    migrate(*db);
    db->exec("INSERT INTO schema_version (version, applied_ms) VALUES (" + std::to_string(schema_version + 1) + ", 0)");
    EXPECT_THROW(migrate(*db), IncompatibleSchema);
  }
  TestStore store(Dialect::postgresql);
  const auto db = store.open();
  db->exec("CREATE TABLE inventory (sku TEXT)");
  try {
    migrate(*db);
    FAIL() << "migrated a foreign database";
  } catch (const IncompatibleSchema& e) {
    EXPECT_NE(std::string(e.what()).find("has tables but no schema_version: not a referrald database"),
              std::string::npos)
        << e.what();
  }
}

// ---- PostgreSQL's errors, classified as SQLite's ----

TEST(PostgresErrors, AnUnreachableServerAndABadPasswordAreUnavailableAndSaySo) {
  TestStore store(Dialect::postgresql);
  PostgresTarget wrong_password = store.target().postgres;
  wrong_password.password = "not-the-password";
  try {
    Database db(wrong_password, OpenMode::read_write);
    FAIL() << "connected with a wrong password";
  } catch (const DatabaseError& e) {
    EXPECT_TRUE(e.is_unavailable()) << e.what();
    EXPECT_EQ(e.sqlstate(), "28P01") << e.what();
    EXPECT_STREQ(e.unavailable_reason(), "the database server refused the login");
    EXPECT_NE(std::string(e.what()).find("password authentication failed"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("not-the-password"), std::string::npos) << e.what();
  }
  PostgresTarget nowhere{"postgresql://referrald@127.0.0.1:" + std::to_string(test::free_port()) + "/referrald",
                         std::string("x"), std::chrono::seconds(5)};
  try {
    Database db(nowhere, OpenMode::read_write);
    FAIL() << "connected to a closed port";
  } catch (const DatabaseError& e) {
    EXPECT_TRUE(e.is_unavailable()) << e.what();
    EXPECT_TRUE(e.is_cannot_open()) << e.what();
    EXPECT_STREQ(e.unavailable_reason(), "the database server cannot be reached");
  }
}

// A multi-host url that no host takes (the first refuses the connection,
// the second the login): the message names every host's reason, on one
// line, never the password.
TEST(PostgresErrors, AConnectThatNoHostTakesSaysEveryHostsReason) {
  TestStore store(Dialect::postgresql);
  PostgresTarget target = store.target().postgres;
  const std::string closed = std::to_string(test::free_port());
  const auto at = target.url.find("127.0.0.1:");
  ASSERT_NE(at, std::string::npos) << target.url;
  target.url.insert(at, "127.0.0.1:" + closed + ",");
  target.password = "not-the-password";
  try {
    Database db(target, OpenMode::read_write);
    FAIL() << "connected with a wrong password";
  } catch (const DatabaseError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("port " + closed + " failed: Connection refused"), std::string::npos) << what;
    EXPECT_NE(what.find("password authentication failed"), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    EXPECT_EQ(what.find("not-the-password"), std::string::npos) << what;
  }
}

TEST(PostgresErrors, SqlstatesMapOntoTheClassesCallersAsk) {
  TestStore store(Dialect::postgresql);
  const auto db = store.open();
  migrate(*db);
  const auto error_of = [&](const std::string& sql) -> DatabaseError {
    try {
      db->exec(sql);
    } catch (const DatabaseError& e) {
      return e;
    }
    throw std::runtime_error("no error from " + sql);
  };
  // 53100 (disk full) and 57P01 (admin shutdown) as the server raises them.
  db->exec(
      "CREATE FUNCTION fail_with(state text) RETURNS void LANGUAGE plpgsql AS $$ "
      "BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = state; END $$");
  const DatabaseError full = error_of("SELECT fail_with('53100')");
  EXPECT_TRUE(full.is_unavailable());
  EXPECT_STREQ(full.unavailable_reason(), "the disk is full");
  const DatabaseError shutdown = error_of("SELECT fail_with('57P01')");
  EXPECT_TRUE(shutdown.is_unavailable());
  EXPECT_STREQ(shutdown.unavailable_reason(), "the database server is shutting down or starting");
  const DatabaseError check = error_of("INSERT INTO tallies (kind, value, n) VALUES ('mood', 'calm', 0)");
  EXPECT_EQ(check.sqlstate(), "23514");
  EXPECT_TRUE(check.is_constraint());
  EXPECT_FALSE(check.is_unavailable());
  const DatabaseError read_only = error_of("BEGIN READ ONLY; DELETE FROM audit");
  db->exec("ROLLBACK");
  EXPECT_TRUE(read_only.is_read_only());
  EXPECT_TRUE(read_only.is_unavailable());
}

}  // namespace

namespace {

// referralctl's list, newest first, on both engines.
TEST_P(StoreTest, ListReadsNewestFirst) {
  insert(sample("R-1", t0));
  insert(sample("R-2", t0 + 1s));
  ListFilter filter;
  const ReferralPage page = list_referrals(*db, filter);
  ASSERT_EQ(page.referrals.size(), 2u);
  EXPECT_EQ(page.referrals[0].id, "R-2");
  EXPECT_EQ(page.referrals[1].id, "R-1");
  EXPECT_EQ(page.referrals[1].deliveries.size(), 2u);
}

}  // namespace
