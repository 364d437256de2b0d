// A referral's files in the store (store/attachments.hpp) against a real
// SQLite file and a real PostgreSQL server: sealed into their rows a block at
// a time where the engine allows it (SQLite), opened a block at a time into a
// spool, in the format seal_text writes whole.
#include <gtest/gtest.h>
#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "store/attachments.hpp"
#include "store/payload.hpp"
#include "store/store.hpp"
#include "support/harness.hpp"
#include "support/small_disk.hpp"
#include "support/store_backends.hpp"
#include "util/crypto.hpp"
#include "util/key_ring.hpp"
#include "util/sealed_spool.hpp"

using namespace referrald;
using namespace referrald::store;
using namespace std::chrono_literals;
using referrald::test::TempDir;
using referrald::test::TestStore;

namespace {

const TimePoint t0 = from_millis(1'795'000'000'000);  // late 2026
const std::string k1 = "k1 " + std::string(64, 'a') + "\n";
const std::string k2 = "k2 " + std::string(64, 'b') + "\n";
constexpr std::size_t block = SealedSpool::block_size;

std::shared_ptr<const KeyRing> keys(const std::string& file) {
  std::vector<KeyFileProblem> problems;
  auto ring = parse_key_file(file, problems);
  EXPECT_TRUE(problems.empty());
  return ring;
}

std::string random_file(std::size_t size, unsigned seed) {
  std::mt19937 random(seed);
  std::string out(size, '\0');
  for (char& c : out) c = static_cast<char>(random() & 0xff);
  return out;
}

class AttachmentStoreTest : public ::testing::TestWithParam<Dialect> {
 protected:
  void SetUp() override {
    store = std::make_unique<TestStore>(GetParam());
    db = store->open();
    migrate(*db);
  }

  // Files as intake hands them over: every other one spooled.
  void insert(const std::string& id, const std::vector<std::string>& files) {
    NewReferral r = test::api_referral(id, t0);
    for (std::size_t i = 0; i < files.size(); ++i) {
      Attachment a;
      a.title = "Scan " + std::to_string(i + 1);
      a.content_type = "application/pdf";
      a.data = files[i];
      a.sha256 = sha256_hex(files[i]);
      if (i % 2 == 1) {
        EXPECT_TRUE(a.spool(spools.path()));
      }
      r.attachments.push_back(std::move(a));
    }
    db->begin_write();
    insert_referral(*db, r);
    db->exec("COMMIT");
  }

  // The data column as stored.
  std::string stored(const std::string& id, int position) {
    Statement st = db->prepare("SELECT data FROM attachments WHERE referral_id = ?1 AND position = ?2");
    st.bind(1, std::string_view(id)).bind(2, std::int64_t{position});
    EXPECT_TRUE(st.step());
    return st.column_blob(0);
  }

  TempDir spools;
  std::unique_ptr<TestStore> store;
  std::unique_ptr<Database> db;
};
INSTANTIATE_TEST_SUITE_P(Backends, AttachmentStoreTest, test::store_backends, test::backend_name);

// Empty, one byte, exactly a block, a block and a byte, several megabytes:
// each comes back byte for byte, from a spool, and what is stored is
// seal_text's format (open_text opens it) at its exact size.
TEST_P(AttachmentStoreTest, FilesOfEverySizeComeBackByteForByteFromASpool) {
  const std::vector<std::size_t> sizes{0, 1, block, block + 1, 3 * 1024 * 1024 + 123};
  std::vector<std::string> files;
  for (std::size_t i = 0; i < sizes.size(); ++i) files.push_back(random_file(sizes[i], static_cast<unsigned>(i)));
  for (const bool sealed : {true, false}) {
    SCOPED_TRACE(sealed ? "encrypted" : "in the clear");
    const std::string id = sealed ? "R-SEALED" : "R-CLEAR";
    db->set_payload_keys(sealed ? keys(k1) : nullptr);
    // Twice over: each size spooled and from memory.
    std::vector<std::string> both = files;
    both.insert(both.end(), files.rbegin(), files.rend());
    insert(id, both);
    const auto opened = attachment_files(*db, id);
    ASSERT_EQ(opened.size(), both.size());
    for (std::size_t i = 0; i < both.size(); ++i) {
      SCOPED_TRACE("file " + std::to_string(i + 1) + ", " + std::to_string(both[i].size()) + " bytes");
      ASSERT_NE(opened[i].spooled, nullptr);
      EXPECT_TRUE(opened[i].data.empty());
      EXPECT_EQ(opened[i].size(), both[i].size());
      EXPECT_EQ(opened[i].spooled->sha256_hex(), sha256_hex(both[i]));
      EXPECT_EQ(opened[i].sha256, sha256_hex(both[i]));
      const std::string context = id + "/attachment/" + std::to_string(i + 1);
      const std::string raw = stored(id, static_cast<int>(i + 1));
      EXPECT_EQ(raw.size(), TextSealer(db->payload_keys(), context).sealed_size(both[i].size()));
      EXPECT_EQ(raw.rfind(sealed ? "RFE" : "RFT", 0), 0u);
      EXPECT_TRUE(open_text(db->payload_keys(), raw, context) == both[i]);
    }
    const auto one = attachment_file(*db, id, 4);
    ASSERT_TRUE(one.has_value());
    EXPECT_TRUE(one->bytes() == both[3]);
    EXPECT_FALSE(attachment_file(*db, id, 99).has_value());
  }
}

// One byte changed in the middle of a stored file: it does not open, and the
// error names the file (not its content).
TEST_P(AttachmentStoreTest, AFileChangedInTheDatabaseIsRefusedNamingIt) {
  db->set_payload_keys(keys(k1));
  const std::string file = random_file(3 * block + 7, 1);
  insert("R-1", {file, file});
  std::string raw = stored("R-1", 2);
  raw[raw.size() / 2] = static_cast<char>(raw[raw.size() / 2] ^ 0x01);
  {
    Statement st = db->prepare("UPDATE attachments SET data = ?1 WHERE referral_id = 'R-1' AND position = 2");
    st.bind_blob(1, raw).run();
  }
  EXPECT_TRUE(attachment_file(*db, "R-1", 1)->bytes() == file);
  for (const bool all : {false, true}) {
    try {
      if (all) {
        attachment_files(*db, "R-1");
      } else {
        attachment_file(*db, "R-1", 2);
      }
      ADD_FAILURE() << "a changed file opened";
    } catch (const PayloadError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("R-1/attachment/2"), std::string::npos) << what;
      EXPECT_NE(what.find("failed authentication"), std::string::npos) << what;
    }
  }
}

// A file sealed a block at a time is re-sealed by rekey like any other, and
// opens under the new key alone.
TEST_P(AttachmentStoreTest, RekeySealsAStreamedFileAgain) {
  db->set_payload_keys(keys(k1));
  const std::string file = random_file(2 * block + 5, 2);
  insert("R-1", {file, file});
  db->set_payload_keys(keys(k2 + k1));
  db->begin_write();
  const auto batch = rekey_attachments(*db, 0, 100, "operator", t0 + 1h);
  db->exec("COMMIT");
  EXPECT_EQ(batch.rekeyed, 2);
  db->set_payload_keys(keys(k2));
  const auto opened = attachment_files(*db, "R-1");
  ASSERT_EQ(opened.size(), 2u);
  for (const auto& a : opened) EXPECT_EQ(a.spooled->sha256_hex(), sha256_hex(file));
  db->set_payload_keys(keys(k1));
  EXPECT_THROW(attachment_files(*db, "R-1"), PayloadError);
}

// No spool can be made beside the database (its disk is full; or, for a
// referralctl user, its directory is not theirs to write): the file is
// opened whole into memory instead, still byte for byte and only once its
// tag has been checked.
TEST(AttachmentStoreSqlite, WithNoRoomForASpoolAFileIsOpenedIntoMemory) {
  TempDir dir;
  const auto mount_point = dir.path() / "fs";
  test::SmallDisk disk(mount_point, "size=4m,mode=0700");
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";

  Database db(mount_point / "referrald.db", OpenMode::read_write_create);
  migrate(db);
  db.set_payload_keys(keys(k1));
  const std::string file = random_file(3 * block + 7, 11);
  NewReferral r = test::api_referral("R-FULL", t0);
  Attachment a;
  a.title = "Scan";
  a.content_type = "application/pdf";
  a.data = file;
  a.sha256 = sha256_hex(file);
  r.attachments.push_back(std::move(a));
  db.begin_write();
  insert_referral(db, r);
  db.exec("COMMIT");
  ASSERT_NE(attachment_file(db, "R-FULL", 1)->spooled, nullptr);  // with room: a spool

  disk.fill();  // to the last byte
  const auto opened = attachment_file(db, "R-FULL", 1);
  ASSERT_TRUE(opened.has_value());
  EXPECT_EQ(opened->spooled, nullptr);
  EXPECT_EQ(sha256_hex(opened->data), sha256_hex(file));
  const auto all = attachment_files(db, "R-FULL");
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].bytes(), file);
}

}  // namespace
