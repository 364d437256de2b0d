// Moving a store between backends (store/transfer.hpp): the tables it moves
// are the schema's, every row arrives as it left, the target goes on from
// there, and an import is all or nothing into an empty store only.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "store/audit_chain.hpp"
#include "store/store.hpp"
#include "store/transfer.hpp"
#include "support/store_backends.hpp"

using namespace referrald;
using namespace referrald::store;
using namespace std::chrono_literals;

namespace {

using referrald::test::TestStore;

const TimePoint t0 = from_millis(1'795'000'000'000);  // late 2026

NewReferral referral(const std::string& id, TimePoint received) {
  NewReferral r;
  r.id = id;
  r.received_at = received;
  r.decision = Decision::review;
  r.urgency = Urgency::urgent;
  r.reasons = {{"NO_OPEN_TRIAL", "There is no open clinical trial for \"ASPS\" at this time."}};
  r.disease = "asps";
  r.channel = "api";
  r.client = "sha256:client-a";
  r.idempotency_key = "key-" + id;
  r.request_hash = "hash-" + id;
  // Bytes a document may hold once sealed: NUL and high bytes too.
  r.document = std::string("sealed\0\xff\x01", 9) + id;
  r.response = R"({"id":")" + id + R"(","decision":"review"})";
  r.targets = {"office-email", "office-fax"};
  r.escalations = {{1, received + 15min, 900s, {"office-pager"}}};
  r.identity_hash = "identity-of-ava";
  r.duplicate_window = 24h;
  return r;
}

void insert(Database& db, const NewReferral& r) {
  WriteTransaction write(db);
  insert_referral(db, r);
  write.commit();
}

using Rows = std::vector<std::pair<std::string, Row>>;
Rows all_rows(Database& db) {
  Rows out;
  ReadTransaction read(db);
  read_all_rows(db, [&](const TransferTable& t, const Row& row) { out.emplace_back(t.name, row); });
  return out;
}

CellKind kind_of_declared(std::string type) {
  for (auto& ch : type) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (type == "integer" || type == "bigint") return CellKind::integer;
  if (type == "text") return CellKind::text;
  if (type == "blob" || type == "bytea") return CellKind::bytes;
  throw std::runtime_error("unexpected column type " + type);
}

class TransferTablesTest : public ::testing::TestWithParam<Dialect> {};

// A table or column a later migration adds must be moved too: this fails
// until transfer_tables() names it.
TEST_P(TransferTablesTest, CoverEveryTableAndColumnOfTheSchema) {
  TestStore store(GetParam());
  auto db = store.open();
  migrate(*db);
  const bool sqlite = GetParam() == Dialect::sqlite;

  std::set<std::string> tables;
  {
    Statement st =
        db->prepare(sqlite ? "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
                           : "SELECT table_name FROM information_schema.tables "
                             "WHERE table_schema = current_schema()");
    while (st.step()) tables.insert(st.column_text(0));
  }
  tables.erase("schema_version");
  std::set<std::string> moved;
  for (const auto& t : transfer_tables()) moved.insert(t.name);
  EXPECT_EQ(moved, tables);

  for (const auto& t : transfer_tables()) {
    std::map<std::string, CellKind> columns;
    Statement st = db->prepare(sqlite ? "SELECT name, type FROM pragma_table_info(?1)"
                                      : "SELECT column_name, data_type FROM information_schema.columns "
                                        "WHERE table_schema = current_schema() AND table_name = ?1");
    st.bind(1, std::string_view(t.name));
    while (st.step()) columns[st.column_text(0)] = kind_of_declared(st.column_text(1));
    // SQLite's attachments keep their id in the implicit rowid.
    if (sqlite && std::string(t.name) == "attachments") columns["rowid"] = CellKind::integer;
    std::map<std::string, CellKind> listed;
    for (const auto& c : t.columns) listed[c.name] = c.kind;
    EXPECT_EQ(listed, columns) << t.name;
  }
}
INSTANTIATE_TEST_SUITE_P(Backends, TransferTablesTest, test::store_backends, test::backend_name);

// From one backend to the other: (source, target).
class TransferTest : public ::testing::TestWithParam<std::pair<Dialect, Dialect>> {
 protected:
  void SetUp() override {
    from_store = std::make_unique<TestStore>(GetParam().first);
    to_store = std::make_unique<TestStore>(GetParam().second);
    from = from_store->open();
    to = to_store->open();
    migrate(*from);
  }

  // Two referrals, one delivery sent (an attempt), the other's escalation
  // fired, the audit trail the store wrote for all of it.
  void fill() {
    insert(*from, referral("R-1", t0));
    insert(*from, referral("R-2", t0 + 1s));
    WriteTransaction write(*from);
    auto claimed = claim_due(*from, t0 + 2s, 30s, 1);
    ASSERT_EQ(claimed.size(), 1u);
    AttemptRecord a;
    a.delivery_id = claimed[0].id;
    a.attempt = 1;
    a.started_at = t0 + 2s;
    a.finished_at = t0 + 3s;
    a.outcome = AttemptOutcome::delivered;
    a.code = "250";
    a.message = "queued as 7K3M9";
    a.next_state = DeliveryState::delivered;
    ASSERT_EQ(finish_attempt(*from, a), Finished::applied);
    write.commit();
  }

  void import_all(const Rows& rows) {
    Import importer(*to);
    for (const auto& [name, row] : rows) importer.add(*find_transfer_table(name), row);
    importer.finish(t0 + 1h, "tester", "rows=" + std::to_string(rows.size()));
  }

  std::unique_ptr<TestStore> from_store, to_store;
  std::unique_ptr<Database> from, to;
};

std::string direction_name(const ::testing::TestParamInfo<std::pair<Dialect, Dialect>>& info) {
  const auto name = [](Dialect d) { return d == Dialect::sqlite ? "SQLite" : "PostgreSQL"; };
  return std::string(name(info.param.first)) + "To" + name(info.param.second);
}

TEST_P(TransferTest, EveryRowArrivesAsItLeftAndTheTargetGoesOnFromThere) {
  fill();
  const Rows rows = all_rows(*from);
  import_all(rows);

  // The same rows, plus the import's own audit row at the end of the chain.
  Rows arrived = all_rows(*to);
  const auto imported = std::find_if(arrived.begin(), arrived.end(), [](const auto& r) {
    return r.first == "audit" && std::get<std::string>(r.second[5]) == "imported";
  });
  ASSERT_NE(imported, arrived.end());
  EXPECT_EQ(std::get<std::string>(imported->second[4]), "tester");
  arrived.erase(imported);
  EXPECT_EQ(arrived, rows);
  {
    ReadTransaction read(*to);
    const auto chain = verify_audit_chain(*to);
    EXPECT_FALSE(chain.first_bad) << chain.problem;
  }

  // New work takes new ids (PostgreSQL's identity columns were moved past
  // the imported ones), and the duplicate mark finds the imported referral.
  insert(*to, referral("R-3", t0 + 2h));
  const auto deliveries = deliveries_of(*to, "R-3");
  ASSERT_EQ(deliveries.size(), 2u);
  for (const auto& d : deliveries_of(*from, "R-2")) EXPECT_LT(d.id, deliveries[0].id);
  Statement dup = to->prepare("SELECT duplicate_of FROM referrals WHERE id = 'R-3'");
  ASSERT_TRUE(dup.step());
  EXPECT_EQ(dup.column_optional_text(0), "R-2");
}

TEST_P(TransferTest, AStoreThatHoldsARowIsRefusedAndAFailedImportLeavesNothing) {
  fill();
  const Rows rows = all_rows(*from);

  // A row the target refuses (a delivery of a referral the file never had):
  // everything before it goes too.
  {
    Import importer(*to);
    importer.add(*find_transfer_table("referrals"), rows.front().second);
    Row orphan = std::find_if(rows.begin(), rows.end(), [](const auto& r) { return r.first == "deliveries"; })->second;
    orphan[1] = std::string("R-nowhere");
    EXPECT_THROW(importer.add(*find_transfer_table("deliveries"), orphan), DatabaseError);
  }
  for (const auto& [name, row] : all_rows(*to)) EXPECT_TRUE(find_transfer_table(name)->counter) << name;

  import_all(rows);
  try {
    Import again(*to);
    FAIL() << "a second import into the same store was accepted";
  } catch (const ImportRefused& e) {
    EXPECT_NE(std::string(e.what()).find("is not empty: its table referrals holds 2 rows"), std::string::npos)
        << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, TransferTest,
                         ::testing::Values(std::pair{Dialect::sqlite, Dialect::postgresql},
                                           std::pair{Dialect::postgresql, Dialect::sqlite}),
                         direction_name);

}  // namespace
