// Storage faults with a real filesystem and a real second SQLite connection:
// the database on a small tmpfs that fills up, database files that turn
// read-only, another process holding the write lock. Never a 202 then, and
// /healthz says why; recovery without a restart once the fault clears. The
// disk-full case needs mount(2) (root) and is skipped elsewhere.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>
#include <sys/mount.h>

#include <cstdio>
#include <thread>

#include "support/harness.hpp"
#include "support/small_disk.hpp"

namespace referrald::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

class StorageFault : public ::testing::Test {
 protected:
  void SetUp() override {
    disk = std::make_unique<SmallDisk>(scratch.path() / "disk");
    if (!disk->mounted()) GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
    Daemon::Options options;
    options.database = scratch.path() / "disk" / "referrald.db";
    daemon = std::make_unique<Daemon>(options);
    daemon->start();
  }
  void TearDown() override {
    if (daemon) daemon->kill9();
    daemon.reset();
    disk.reset();
  }

  // Submits until the answer is `status` or the attempts run out.
  long submit_until(long status, int attempts) {
    long last = 0;
    for (int i = 0; i < attempts; ++i) {
      last = daemon->post_referral(sample("asps-routine.json")).status;
      if (last == status) break;
    }
    return last;
  }

  TempDir scratch;
  std::unique_ptr<SmallDisk> disk;
  std::unique_ptr<Daemon> daemon;
};

TEST_F(StorageFault, DiskFullIs503ThenRecoversWithoutRestart) {
  ASSERT_EQ(daemon->post_referral(sample("asps-routine.json")).status, 202);
  disk->fill();
  // The WAL may still have room for a few pages; once it does not, 503 — and never a 202 after.
  ASSERT_EQ(submit_until(503, 200), 503);
  const auto refused = daemon->post_referral(sample("asps-routine.json"));
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_EQ(refused.headers.at("retry-after"), "5");
  const auto health = daemon->get("/healthz", false);
  EXPECT_EQ(health.status, 503);
  EXPECT_EQ(json::parse(health.body)["reason"], "storage: the disk is full") << health.body;

  disk->drain();
  const auto r = daemon->post_referral(sample("asps-routine.json"));
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(daemon->get("/api/v1/referrals/" + json::parse(r.body)["id"].get<std::string>()).status, 200);
  EXPECT_EQ(daemon->get("/healthz", false).status, 200);
}

// After a refusal on a full disk: nothing was stored, and once there is
// room the same body is taken.
void expect_nothing_stored_then_taken_with_room(SmallDisk& disk, Daemon& daemon, const std::string& body) {
  const auto referrals = [&] { return count_rows(daemon.database(), "SELECT count(*) FROM referrals"); };
  disk.drain();
  EXPECT_EQ(referrals(), 0);
  const auto taken = daemon.post_referral(body);
  EXPECT_EQ(taken.status, 202) << taken.body;
  EXPECT_EQ(referrals(), 1);
  daemon.kill9();
}

// A daemon whose database, and so the spools beside it, is in `dir` (a
// SmallDisk), and that spools an intake body over 4 kB.
Daemon::Options spooling_on(const fs::path& dir) {
  Daemon::Options options;
  options.database = dir / "referrald.db";
  options.extra_http = "max_body_bytes = 4096\n";
  return options;
}

// A large intake body is spooled beside the database while it is read: on a
// full disk the spool's first block is refused, the request is a 503 with
// Retry-After and nothing is stored; once there is room again, the same
// request is taken.
TEST(SpoolFault, ABodyThatCannotBeSpooledIs503WithRetryAfterAndStoresNothing) {
  TempDir scratch;
  SmallDisk disk(scratch.path() / "disk");
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  Daemon daemon(spooling_on(scratch.path() / "disk"));
  daemon.start();
  auto doc = json::parse(sample("asps-routine.json"));
  doc["attachments"] = json::array({attachment_item("Scan", attachment_fixture("image.tif"), "image/tiff")});
  const std::string body = doc.dump() + std::string(5000, ' ');  // over max_body_bytes: spooled

  disk.fill();
  const auto refused = daemon.post_referral(body);
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_EQ(refused.headers.count("retry-after"), 1u);
  EXPECT_NE(refused.body.find("could not be kept while it was read"), std::string::npos) << refused.body;
  expect_nothing_stored_then_taken_with_room(disk, daemon, body);
}

// A JPEG of about `size` bytes: the fixture with comment segments (COM,
// at most 65,535 bytes each) after its start marker, which a decoder skips.
std::string jpeg_of_about(std::size_t size) {
  const std::string image = attachment_fixture("image.jpg");
  std::string comments;
  while (image.size() + comments.size() < size) {
    const std::size_t length = 60000;
    comments += "\xFF\xFE";
    comments += static_cast<char>(length >> 8);
    comments += static_cast<char>(length & 0xff);
    comments += std::string(length - 2, 'c');
  }
  return image.substr(0, 2) + comments + image.substr(2);
}

// The body fits on the disk, but a file decoded out of it does not: the
// intake cannot keep the attachment it is checking. The request is a 503
// with Retry-After that says so, nothing is stored, and the log names no
// patient; once there is room, the same request is taken.
TEST(SpoolFault, AnAttachmentThatCannotBeSpooledIs503AndStoresNothing) {
  TempDir scratch;
  SmallDisk disk(scratch.path() / "disk", "size=8m");
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  Daemon daemon(spooling_on(scratch.path() / "disk"));
  daemon.start();
  auto doc = json::parse(sample("asps-routine.json"));
  const std::string file = jpeg_of_about(600 * 1024);
  doc["attachments"] = json::array({attachment_item("MRI still", file, "image/jpeg")});
  const std::string body = doc.dump();

  // Room for the body's spool (its text, and a tag per 64 kB block), not
  // for the file's beside it.
  disk.fill_leaving(body.size() + 128 * 1024);
  const auto refused = daemon.post_referral(body);
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_EQ(refused.headers.count("retry-after"), 1u);
  EXPECT_NE(refused.body.find("could not be kept on the server's disk while it was checked"), std::string::npos)
      << refused.body;
  EXPECT_NE(daemon.log().find("intake.plan_failed"), std::string::npos) << daemon.log();
  EXPECT_EQ(daemon.log().find("Nguyen"), std::string::npos);
  EXPECT_EQ(daemon.log().find("2014-03-09"), std::string::npos);
  expect_nothing_stored_then_taken_with_room(disk, daemon, body);
}

// Linux refuses to remount a filesystem read-only while a file on it is open
// for writing, so the database files are made immutable instead (chattr +i):
// every write through the daemon's open descriptors then fails with EPERM,
// as on a read-only medium.
TEST(StorageReadOnly, ReadOnlyDatabaseIs503ThenRecoversWithoutRestart) {
  Daemon daemon{Daemon::Options{}};
  daemon.start();
  ASSERT_EQ(daemon.post_referral(sample("asps-routine.json")).status, 202);
  const auto db = daemon.database().string();
  const std::string files = db + " " + db + "-wal";
  if (shell("chattr +i " + files + " 2>/dev/null") != 0) {
    GTEST_SKIP() << "chattr +i is not supported here";
  }
  struct Undo {
    std::string files;
    ~Undo() { shell("chattr -i " + files + " 2>/dev/null"); }
  } undo{files};
  for (int i = 0; i < 5; ++i) {
    const auto r = daemon.post_referral(sample("asps-routine.json"));
    EXPECT_EQ(r.status, 503) << r.body;
  }
  const auto health = daemon.get("/healthz", false);
  EXPECT_EQ(health.status, 503);
  EXPECT_EQ(json::parse(health.body)["reason"], "storage: the database is read-only") << health.body;
  ASSERT_EQ(shell("chattr -i " + files), 0);
  const auto r = daemon.post_referral(sample("asps-routine.json"));
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(daemon.get("/api/v1/referrals/" + json::parse(r.body)["id"].get<std::string>()).status, 200);
  EXPECT_EQ(daemon.get("/healthz", false).status, 200);
}

// The writer waits this long for another connection's write lock before it
// gives up on a batch (writer_busy_timeout_ms in daemon/store/writer.cpp).
constexpr auto writer_busy_timeout = 2s;

// Another process holding the database's write lock, as an sqlite3 shell
// with BEGIN EXCLUSIVE open, a backup tool or a stuck script would: a
// connection of this test process (not the daemon's), opened with the
// sqlite3 C API.
class WriteLock {
 public:
  explicit WriteLock(const fs::path& db) {
    if (sqlite3_open_v2(db.c_str(), &handle_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      throw std::runtime_error("cannot open " + db.string());
    }
    sqlite3_busy_timeout(handle_, 10000);  // the daemon's own commits come and go
    if (sqlite3_exec(handle_, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr) != SQLITE_OK) {
      throw std::runtime_error(std::string("BEGIN EXCLUSIVE: ") + sqlite3_errmsg(handle_));
    }
  }
  ~WriteLock() {
    release();
    sqlite3_close(handle_);
  }
  WriteLock(const WriteLock&) = delete;
  WriteLock& operator=(const WriteLock&) = delete;
  void release() {
    if (sqlite3_get_autocommit(handle_) == 0) sqlite3_exec(handle_, "ROLLBACK", nullptr, nullptr, nullptr);
  }

 private:
  sqlite3* handle_ = nullptr;
};

struct Timed {
  HttpResult result;
  std::chrono::milliseconds took;
};

Timed timed_post(Daemon& daemon) {
  const auto start = std::chrono::steady_clock::now();
  auto result = daemon.post_referral(sample("asps-routine.json"));
  return {std::move(result),
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start)};
}

// A lock shorter than the writer's busy timeout (a referralctl action, a
// quick script) is waited out: the submission is late, not refused.
TEST(StorageLocked, ALockShorterThanTheBusyTimeoutDelaysButDoesNotRefuse) {
  Daemon daemon{Daemon::Options{}};
  daemon.start();
  ASSERT_EQ(daemon.post_referral(sample("asps-routine.json")).status, 202);
  constexpr auto held = writer_busy_timeout / 2;
  WriteLock lock(daemon.database());
  std::thread releaser([&] {
    std::this_thread::sleep_for(held);
    lock.release();
  });
  const auto post = timed_post(daemon);
  releaser.join();
  EXPECT_EQ(post.result.status, 202) << post.result.body;
  // It really waited for the lock (else this proves nothing).
  EXPECT_GE(post.took, held / 2);
  std::printf("[ figures  ] lock held %lld ms: %ld answered after %lld ms\n",
              static_cast<long long>(std::chrono::milliseconds(held).count()), post.result.status,
              static_cast<long long>(post.took.count()));
  EXPECT_EQ(daemon.get("/healthz", false).status, 200);
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals"), 2);
}

// A lock held past the busy timeout: 503 with Retry-After, promptly, never a
// 202; /healthz says the database is locked. Released, the daemon is
// healthy again by itself (the dispatcher's next claim commits) and takes
// referrals without a restart.
TEST(StorageLocked, ALockHeldPastTheBusyTimeoutIs503ThenRecoversWhenReleased) {
  Daemon daemon{Daemon::Options{}};
  daemon.start();
  ASSERT_EQ(daemon.post_referral(sample("asps-routine.json")).status, 202);
  auto lock = std::make_unique<WriteLock>(daemon.database());
  for (int i = 0; i < 2; ++i) {
    const auto post = timed_post(daemon);
    EXPECT_EQ(post.result.status, 503) << post.result.body;
    EXPECT_EQ(post.result.headers.at("retry-after"), "5");
    // At worst behind one dispatcher claim that waits out the lock, then its own batch.
    EXPECT_LT(post.took, 2 * writer_busy_timeout + 2s) << "the answer waited past the writer's deadline";
    std::printf("[ figures  ] locked: %ld answered after %lld ms\n", post.result.status,
                static_cast<long long>(post.took.count()));
  }
  const auto health = daemon.get("/healthz", false);
  EXPECT_EQ(health.status, 503);
  EXPECT_EQ(json::parse(health.body)["reason"], "storage: the database is locked by another connection") << health.body;

  lock.reset();
  EXPECT_TRUE(wait_until([&] { return daemon.get("/healthz", false).status == 200; }, 2 * writer_busy_timeout + 2s))
      << "still unhealthy after the lock was released";
  const auto post = timed_post(daemon);
  ASSERT_EQ(post.result.status, 202) << post.result.body;
  EXPECT_LT(post.took, writer_busy_timeout);
  const std::string id = json::parse(post.result.body)["id"];
  EXPECT_EQ(daemon.get("/api/v1/referrals/" + id).status, 200);
  // The refused submissions left nothing behind.
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals"), 2);
  EXPECT_EQ(daemon.stop(), 0);
}

}  // namespace
}  // namespace referrald::test
