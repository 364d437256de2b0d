// Storage faults with a real filesystem: the database on a small tmpfs that
// fills up, or database files that turn read-only. Never a 202 then; recovery without a restart
// once the fault clears. Needs mount(2) (root); skipped elsewhere.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/mount.h>

#include <thread>

#include "support/harness.hpp"

namespace referrald::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

class SmallDisk {
 public:
  explicit SmallDisk(const fs::path& dir, const char* size = "size=4m") : dir_(dir) {
    fs::create_directories(dir_);
    mounted_ = ::mount("tmpfs", dir_.c_str(), "tmpfs", 0, size) == 0;
  }
  ~SmallDisk() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  bool remount(bool read_only) {
    return ::mount("tmpfs", dir_.c_str(), "tmpfs", MS_REMOUNT | (read_only ? MS_RDONLY : 0), nullptr) == 0;
  }
  // Fills the filesystem to the last byte with a ballast file.
  void fill() { shell("dd if=/dev/zero of=" + (dir_ / "ballast").string() + " bs=64k >/dev/null 2>&1"); }
  void drain() { fs::remove(dir_ / "ballast"); }

 private:
  fs::path dir_;
  bool mounted_ = false;
};

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
  EXPECT_EQ(daemon->get("/healthz", false).status, 503);

  disk->drain();
  const auto r = daemon->post_referral(sample("asps-routine.json"));
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(daemon->get("/api/v1/referrals/" + json::parse(r.body)["id"].get<std::string>()).status, 200);
  EXPECT_EQ(daemon->get("/healthz", false).status, 200);
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
  EXPECT_EQ(daemon.get("/healthz", false).status, 503);
  ASSERT_EQ(shell("chattr -i " + files), 0);
  const auto r = daemon.post_referral(sample("asps-routine.json"));
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(daemon.get("/api/v1/referrals/" + json::parse(r.body)["id"].get<std::string>()).status, 200);
  EXPECT_EQ(daemon.get("/healthz", false).status, 200);
}

}  // namespace
}  // namespace referrald::test
