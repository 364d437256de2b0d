// Group commit and the reader pool against real SQLite files and a real
// PostgreSQL server (one test body, the backend its parameter; what only
// SQLite's files can show is SqliteWriterTest). Every wait has a deadline,
// so a bug fails a test instead of hanging it.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "store/store.hpp"
#include "store/writer.hpp"
#include "support/harness.hpp"
#include "support/small_disk.hpp"
#include "support/store_backends.hpp"

using namespace referrald;
using namespace referrald::store;
using namespace std::chrono_literals;

namespace {

constexpr auto deadline = 60s;

using referrald::test::TempDir;
using referrald::test::TestStore;

const TimePoint t0 = from_millis(1'795'000'000'000);

NewReferral sample(const std::string& id, std::size_t document_bytes = 2048) {
  NewReferral r;
  r.id = id;
  r.received_at = t0;
  r.decision = Decision::accepted;
  r.urgency = Urgency::routine;
  r.reasons = {{"OPEN_TRIAL_AVAILABLE", "An open trial is available."}};
  r.channel = "form";
  r.client = "form";
  r.request_hash = "hash-" + id;
  r.document = "{" + std::string(document_bytes - 1, 'x');  // JSON as far as the store looks
  r.response = "{}";
  r.targets = {"office-email", "office-fax"};
  return r;
}

Writer::Job insert_job(NewReferral r) {
  return [r = std::move(r)](Database& db) { insert_referral(db, r); };
}

// Collects job results from whichever thread completes them.
class Results {
 public:
  Writer::Completion slot(std::size_t index) {
    return [this, index](JobResult r) {
      std::lock_guard lock(mutex_);
      by_index_[index] = std::move(r);
      ++count_;
      changed_.notify_all();
    };
  }
  explicit Results(std::size_t n) : by_index_(n) {}
  [[nodiscard]] bool wait_all() {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, deadline, [this] { return count_ == by_index_.size(); });
  }
  JobResult at(std::size_t i) {
    std::lock_guard lock(mutex_);
    return by_index_.at(i);
  }
  bool done() {
    std::lock_guard lock(mutex_);
    return count_ == by_index_.size();
  }
  std::size_t count_of(JobStatus s) {
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const JobResult& r : by_index_) n += r.status == s ? 1 : 0;
    return n;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<JobResult> by_index_;
  std::size_t count_ = 0;
};

// A job that holds the writer thread (inside its transaction) until
// released, so the test can line up the next batch behind it.
class Gate {
 public:
  Writer::Job job() {
    return [this](Database&) {
      entered_.set_value();
      if (released_future_.wait_for(deadline) != std::future_status::ready) throw std::runtime_error("gate timeout");
    };
  }
  [[nodiscard]] bool wait_entered() { return entered_future_.wait_for(deadline) == std::future_status::ready; }
  void release() { released_.set_value(); }

 private:
  std::promise<void> entered_;
  std::future<void> entered_future_ = entered_.get_future();
  std::promise<void> released_;
  std::future<void> released_future_ = released_.get_future();
};

std::int64_t count_rows(const std::filesystem::path& file, const std::string& table) {
  Database db(file, OpenMode::read_only);
  Statement st = db.prepare("SELECT count(*) FROM " + table);
  st.step();
  return st.column_int(0);
}

class WriterTest : public ::testing::TestWithParam<Dialect> {
 protected:
  virtual Dialect backend() const { return GetParam(); }
  void SetUp() override { store = std::make_unique<TestStore>(backend()); }
  const StorageTarget& target() const { return store->target(); }
  std::filesystem::path file() const { return store->target().file; }
  std::int64_t rows(const std::string& table) const {
    const auto db = store->open(OpenMode::read_only);
    Statement st = db->prepare("SELECT count(*) FROM " + table);
    st.step();
    return st.column_int(0);
  }
  std::unique_ptr<TestStore> store;
  TempDir dir;
};
INSTANTIATE_TEST_SUITE_P(Backends, WriterTest, test::store_backends, test::backend_name);

// What only SQLite's files show: their modes, a disk full of pages, a file
// moved or deleted under the writer.
class SqliteWriterTest : public WriterTest {
 protected:
  Dialect backend() const override { return Dialect::sqlite; }
};

TEST_P(WriterTest, ThousandJobsFromEightThreadsShareFewCommits) {
  Writer writer(target(), WriterOptions{});
  std::atomic<int> hooks{0};
  writer.on_commit([&] { hooks.fetch_add(1); });

  constexpr std::size_t threads = 8;
  constexpr std::size_t per_thread = 125;
  constexpr std::size_t jobs = threads * per_thread;
  Results results(jobs);
  const auto started = std::chrono::steady_clock::now();
  std::vector<std::thread> submitters;
  for (std::size_t t = 0; t < threads; ++t) {
    submitters.emplace_back([&, t] {
      for (std::size_t i = 0; i < per_thread; ++i) {
        const std::size_t n = t * per_thread + i;
        writer.submit(insert_job(sample("R-" + std::to_string(n))), results.slot(n));
      }
    });
  }
  for (std::thread& t : submitters) t.join();
  ASSERT_TRUE(results.wait_all());
  const auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  EXPECT_EQ(results.count_of(JobStatus::committed), jobs);
  EXPECT_EQ(writer.jobs_committed(), jobs);
  EXPECT_LT(writer.commits(), jobs);  // group commit really happened
  EXPECT_GE(writer.commits(), 1u);
  EXPECT_EQ(static_cast<std::uint64_t>(hooks.load()), writer.commits());
  EXPECT_TRUE(writer.healthy());
  EXPECT_EQ(writer.queue_depth(), 0u);
  std::printf("[ figures  ] %zu jobs in %llu commits (%.1f jobs/commit), %.0f jobs/s\n", jobs,
              static_cast<unsigned long long>(writer.commits()),
              static_cast<double>(jobs) / static_cast<double>(writer.commits()), static_cast<double>(jobs) / elapsed);
  RecordProperty("commits", static_cast<int>(writer.commits()));

  writer.stop();
  EXPECT_EQ(rows("referrals"), static_cast<std::int64_t>(jobs));
  EXPECT_EQ(rows("deliveries"), static_cast<std::int64_t>(2 * jobs));
}

// Like the HTTP path: eight clients that each wait for their answer before
// sending the next referral. At most eight jobs can share a commit, and
// while one commit is being fsynced the others queue up behind it.
TEST_P(WriterTest, EightWaitingClientsShareCommits) {
  Writer writer(target(), WriterOptions{});
  constexpr std::size_t clients = 8;
  constexpr std::size_t per_client = 125;
  constexpr std::size_t jobs = clients * per_client;
  std::atomic<std::size_t> committed{0};
  const auto started = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (std::size_t c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      for (std::size_t i = 0; i < per_client; ++i) {
        std::promise<JobResult> answer;
        auto future = answer.get_future();
        writer.submit(insert_job(sample("R-" + std::to_string(c) + "-" + std::to_string(i))),
                      [&answer](JobResult r) { answer.set_value(std::move(r)); });
        if (future.wait_for(deadline) != std::future_status::ready) return;
        if (future.get().status == JobStatus::committed) committed.fetch_add(1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(committed.load(), jobs);
  EXPECT_EQ(writer.jobs_committed(), jobs);
  EXPECT_LT(writer.commits(), jobs);
  std::printf("[ figures  ] %zu jobs from %zu waiting clients in %llu commits (%.1f jobs/commit), %.0f jobs/s\n", jobs,
              clients, static_cast<unsigned long long>(writer.commits()),
              static_cast<double>(jobs) / static_cast<double>(writer.commits()), static_cast<double>(jobs) / elapsed);
  RecordProperty("commits", static_cast<int>(writer.commits()));
}

TEST_P(WriterTest, AJobThatThrowsFailsAloneWhileItsNeighboursCommit) {
  Writer writer(target(), WriterOptions{});
  Gate gate;
  Results results(5);
  writer.submit(gate.job(), results.slot(0));
  ASSERT_TRUE(gate.wait_entered());
  // These four queue up behind the gate and form the next batch.
  writer.submit(insert_job(sample("R-A")), results.slot(1));
  writer.submit(
      [](Database& db) {
        insert_referral(db, sample("R-B"));
        throw std::runtime_error("rendering failed");
      },
      results.slot(2));
  writer.submit(insert_job(sample("R-A")), results.slot(3));  // same id again: a constraint
  writer.submit(insert_job(sample("R-D")), results.slot(4));
  EXPECT_EQ(writer.queue_depth(), 4u);
  gate.release();
  ASSERT_TRUE(results.wait_all());

  EXPECT_EQ(results.at(0).status, JobStatus::committed);
  EXPECT_EQ(results.at(1).status, JobStatus::committed);
  EXPECT_EQ(results.at(2).status, JobStatus::failed);
  EXPECT_EQ(results.at(2).error, "rendering failed");
  EXPECT_EQ(results.at(3).status, JobStatus::failed);
  EXPECT_NE(results.at(3).error.find(GetParam() == Dialect::sqlite
                                         ? "UNIQUE constraint failed: referrals.id"
                                         : "duplicate key value violates unique constraint \"referrals_pkey\""),
            std::string::npos)
      << results.at(3).error;
  EXPECT_EQ(results.at(4).status, JobStatus::committed);
  EXPECT_EQ(writer.commits(), 2u);
  EXPECT_EQ(writer.jobs_committed(), 3u);
  EXPECT_TRUE(writer.healthy());
  writer.stop();

  const auto db = store->open(OpenMode::read_only);
  EXPECT_TRUE(find_referral(*db, "R-A").has_value());
  EXPECT_FALSE(find_referral(*db, "R-B").has_value());  // its own writes were rolled back
  EXPECT_TRUE(find_referral(*db, "R-D").has_value());
  EXPECT_EQ(rows("deliveries"), 4);
  EXPECT_EQ(rows("audit"), 2);
}

TEST_P(WriterTest, ACompletionRunsOnlyOnceTheRowIsVisibleToOtherConnections) {
  Writer writer(target(), WriterOptions{});
  // Used only inside completions of committed jobs, which all run on one
  // thread (SQLite: the one that fsyncs the log).
  const auto observer_connection = store->open(OpenMode::read_only);
  Database& observer = *observer_connection;
  constexpr std::size_t jobs = 100;
  std::atomic<std::size_t> visible{0};
  Results results(jobs);
  std::vector<std::thread> submitters;
  for (std::size_t t = 0; t < 4; ++t) {
    submitters.emplace_back([&, t] {
      for (std::size_t i = 0; i < jobs / 4; ++i) {
        const std::size_t n = t * (jobs / 4) + i;
        const std::string id = "R-" + std::to_string(n);
        auto done = results.slot(n);
        writer.submit(insert_job(sample(id)), [&, id, done](JobResult r) {
          if (r.status == JobStatus::committed && find_referral(observer, id).has_value()) visible.fetch_add(1);
          done(std::move(r));
        });
      }
    });
  }
  for (std::thread& t : submitters) t.join();
  ASSERT_TRUE(results.wait_all());
  EXPECT_EQ(results.count_of(JobStatus::committed), jobs);
  EXPECT_EQ(visible.load(), jobs);
}

TEST_P(WriterTest, ACompletionMaySubmitAgain) {
  Writer writer(target(), WriterOptions{});
  Results results(2);
  writer.submit(insert_job(sample("R-1")), [&](JobResult r) {
    // Would deadlock if completions ran under the queue mutex.
    (void)writer.queue_depth();
    writer.submit(insert_job(sample("R-2")), results.slot(1));
    results.slot(0)(std::move(r));
  });
  ASSERT_TRUE(results.wait_all());
  EXPECT_EQ(results.at(0).status, JobStatus::committed);
  EXPECT_EQ(results.at(1).status, JobStatus::committed);
}

TEST_P(WriterTest, AFullQueueRefusesAtOnceOnTheCallersThread) {
  WriterOptions options;
  options.queue_limit = 2;
  Writer writer(target(), options);
  Gate gate;
  Results results(4);
  writer.submit(gate.job(), results.slot(0));
  ASSERT_TRUE(gate.wait_entered());  // the gate left the queue: two places free
  writer.submit(insert_job(sample("R-1")), results.slot(1));
  writer.submit(insert_job(sample("R-2")), results.slot(2));

  bool completed_inline = false;
  std::thread::id completed_on;
  writer.submit(insert_job(sample("R-3")), [&](JobResult r) {
    completed_inline = true;
    completed_on = std::this_thread::get_id();
    results.slot(3)(std::move(r));
  });
  EXPECT_TRUE(completed_inline);
  EXPECT_EQ(completed_on, std::this_thread::get_id());
  EXPECT_EQ(results.at(3).status, JobStatus::overloaded);

  gate.release();
  ASSERT_TRUE(results.wait_all());
  EXPECT_EQ(results.at(1).status, JobStatus::committed);
  EXPECT_EQ(results.at(2).status, JobStatus::committed);
  writer.stop();
  EXPECT_EQ(rows("referrals"), 2);
}

TEST_P(WriterTest, StopRunsWhatIsQueuedThenRefuses) {
  Writer writer(target(), WriterOptions{});
  Gate gate;
  constexpr std::size_t queued = 5;
  Results results(queued + 1);
  writer.submit(gate.job(), results.slot(0));
  ASSERT_TRUE(gate.wait_entered());
  for (std::size_t i = 1; i <= queued; ++i)
    writer.submit(insert_job(sample("R-" + std::to_string(i))), results.slot(i));
  std::thread stopper([&] { writer.stop(); });
  gate.release();
  stopper.join();
  ASSERT_TRUE(results.wait_all());
  EXPECT_EQ(results.count_of(JobStatus::committed), queued + 1);

  JobResult late;
  late.status = JobStatus::committed;
  writer.submit(insert_job(sample("R-late")), [&](JobResult r) { late = std::move(r); });
  EXPECT_EQ(late.status, JobStatus::stopped);
  writer.stop();  // idempotent
  EXPECT_EQ(rows("referrals"), static_cast<std::int64_t>(queued));
}

// Disk full, injected: the write connection may not grow the file beyond the
// pages it has when it opens. A small job still fits in existing pages; a
// referral with a large document does not.
TEST_F(SqliteWriterTest, DiskFullFailsTheWholeBatchAndTheWriterRecoversWhenItClears) {
  std::atomic<int> opens{0};
  WriterOptions options;
  options.on_open = [&](Database& db) {
    opens.fetch_add(1);
    Statement pages = db.prepare("PRAGMA page_count");
    pages.step();
    db.exec("PRAGMA max_page_count = " + std::to_string(pages.column_int(0)));
  };
  Writer writer(file(), options);
  std::atomic<int> hooks{0};
  writer.on_commit([&] { hooks.fetch_add(1); });

  auto small_job = [](Database& db) { audit(db, t0, std::nullopt, std::nullopt, "test", "note", "small"); };
  Gate gate;
  Results batch(4);
  writer.submit(gate.job(), batch.slot(0));
  ASSERT_TRUE(gate.wait_entered());
  writer.submit(small_job, batch.slot(1));
  writer.submit(insert_job(sample("R-big", 256 * 1024)), batch.slot(2));
  writer.submit(small_job, batch.slot(3));
  gate.release();
  ASSERT_TRUE(batch.wait_all());
  EXPECT_EQ(batch.at(0).status, JobStatus::committed);  // the gate ran alone, in a batch of its own
  // The small jobs would fit, but share the batch with the one that does not.
  for (std::size_t i = 1; i < 4; ++i) {
    EXPECT_EQ(batch.at(i).status, JobStatus::unavailable) << i;
    EXPECT_NE(batch.at(i).error.find("database or disk is full"), std::string::npos) << batch.at(i).error;
  }
  EXPECT_FALSE(writer.healthy());
  EXPECT_EQ(writer.unhealthy_reason(), "the disk is full");
  EXPECT_EQ(writer.commits(), 1u);
  EXPECT_EQ(hooks.load(), 1);
  EXPECT_EQ(count_rows(file(), "audit"), 0);  // nothing of the batch was stored
  EXPECT_EQ(count_rows(file(), "referrals"), 0);

  // Still full: the same write fails again, alone.
  Results retry(1);
  writer.submit(insert_job(sample("R-big", 256 * 1024)), retry.slot(0));
  ASSERT_TRUE(retry.wait_all());
  EXPECT_EQ(retry.at(0).status, JobStatus::unavailable);

  // The fault clears (space freed); the same Writer commits again.
  Results after(2);
  writer.submit([](Database& db) { db.exec("PRAGMA max_page_count = 1073741823"); }, after.slot(0));
  writer.submit(insert_job(sample("R-big", 256 * 1024)), after.slot(1));
  ASSERT_TRUE(after.wait_all());
  EXPECT_EQ(after.at(0).status, JobStatus::committed);
  EXPECT_EQ(after.at(1).status, JobStatus::committed);
  EXPECT_TRUE(writer.healthy());
  EXPECT_EQ(writer.unhealthy_reason(), "");
  EXPECT_EQ(opens.load(), 1);  // disk full does not need a new connection
  writer.stop();
  EXPECT_EQ(count_rows(file(), "referrals"), 1);
}

// Another connection holding the write lock longer than the writer's busy
// timeout: the batch is unavailable (the store, not the job, is at fault),
// the connection is kept, and the next batch after the release commits.
TEST_P(WriterTest, AWriteLockHeldElsewhereIsUnavailableUntilReleased) {
  std::atomic<int> opens{0};
  WriterOptions options;
  options.on_open = [&](Database&) { opens.fetch_add(1); };
  Writer writer(target(), options);
  const auto other = store->open(OpenMode::read_write);
  other->begin_write();
  Results locked(1);
  const auto started = std::chrono::steady_clock::now();
  writer.submit(insert_job(sample("R-1")), locked.slot(0));
  ASSERT_TRUE(locked.wait_all());
  EXPECT_GE(std::chrono::steady_clock::now() - started, 1s);  // it waited for the lock first
  EXPECT_EQ(locked.at(0).status, JobStatus::unavailable);
  EXPECT_NE(locked.at(0).error.find(GetParam() == Dialect::sqlite ? "database is locked" : "lock timeout"),
            std::string::npos)
      << locked.at(0).error;
  EXPECT_EQ(writer.unhealthy_reason(), "the database is locked by another connection");

  other->exec("ROLLBACK");
  Results released(1);
  writer.submit(insert_job(sample("R-1")), released.slot(0));
  ASSERT_TRUE(released.wait_all());
  EXPECT_EQ(released.at(0).status, JobStatus::committed) << released.at(0).error;
  EXPECT_TRUE(writer.healthy());
  EXPECT_EQ(opens.load(), 1);
}

// The real thing where the machine allows it: the database on a tiny tmpfs
// that a ballast file fills up, then deleting the ballast.
TEST_F(SqliteWriterTest, RealDiskFullOnATinyFilesystemRecoversWithoutRestart) {
  const auto mount_point = dir.path() / "fs";
  test::SmallDisk disk(mount_point, "size=2m,mode=0700");
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  const auto db_file = mount_point / "referrald.db";

  Writer writer(db_file, WriterOptions{});
  Results warm(1);
  writer.submit(insert_job(sample("R-1")), warm.slot(0));
  ASSERT_TRUE(warm.wait_all());
  ASSERT_EQ(warm.at(0).status, JobStatus::committed);

  disk.fill();
  Results full(1);
  writer.submit(insert_job(sample("R-2", 512 * 1024)), full.slot(0));
  ASSERT_TRUE(full.wait_all());
  EXPECT_EQ(full.at(0).status, JobStatus::unavailable) << full.at(0).error;
  EXPECT_FALSE(writer.healthy());

  disk.drain();
  Results recovered(1);
  writer.submit(insert_job(sample("R-2", 512 * 1024)), recovered.slot(0));
  ASSERT_TRUE(recovered.wait_all());
  EXPECT_EQ(recovered.at(0).status, JobStatus::committed) << recovered.at(0).error;
  EXPECT_TRUE(writer.healthy());
  writer.stop();
  EXPECT_EQ(count_rows(db_file, "referrals"), 2);
}

// A database file moved or deleted under a running writer: in WAL mode
// SQLite would keep committing into the open (possibly unlinked) file, so
// the writer refuses, reopens by name on the next batch, and never
// recreates a missing file empty.
// A read-only filesystem. (Linux refuses to remount a filesystem read-only
// while a file on it is open for writing, so this cannot happen under a
// running writer; it can at start or at a reopen.) SQLite would quietly open
// the database read-only; the open fails instead, saying why.
TEST_F(SqliteWriterTest, ADatabaseOnAReadOnlyFilesystemIsRefusedAtOpen) {
  const auto mount_point = dir.path() / "fs";
  std::filesystem::create_directory(mount_point);
  if (::mount("tmpfs", mount_point.c_str(), "tmpfs", 0, "size=4m,mode=0700") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno) << ")";
  }
  struct Unmount {
    std::filesystem::path p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{mount_point};
  const auto remount = [&](bool read_only) {
    return ::mount("tmpfs", mount_point.c_str(), "tmpfs", MS_REMOUNT | (read_only ? MS_RDONLY : 0), nullptr) == 0;
  };
  const auto db_file = mount_point / "referrald.db";
  {
    Writer writer(db_file, WriterOptions{});
    Results r(1);
    writer.submit(insert_job(sample("R-1")), r.slot(0));
    ASSERT_TRUE(r.wait_all());
    ASSERT_EQ(r.at(0).status, JobStatus::committed);
  }
  ASSERT_TRUE(remount(true)) << std::strerror(errno);
  try {
    Writer writer(db_file, WriterOptions{});
    ADD_FAILURE() << "a writer started on a read-only filesystem";
  } catch (const DatabaseError& e) {
    EXPECT_TRUE(e.is_unavailable());
    EXPECT_EQ(std::string(e.what()), "sqlite open " + db_file.string() +
                                         ": the database is read-only (file permissions or a read-only filesystem)");
  }
  ASSERT_TRUE(remount(false)) << std::strerror(errno);
  Writer writer(db_file, WriterOptions{});
  Results r(1);
  writer.submit(insert_job(sample("R-2")), r.slot(0));
  ASSERT_TRUE(r.wait_all());
  EXPECT_EQ(r.at(0).status, JobStatus::committed) << r.at(0).error;
}

TEST_F(SqliteWriterTest, AMovedDatabaseIsReopenedAndNeverRecreated) {
  std::atomic<int> opens{0};
  WriterOptions options;
  options.on_open = [&](Database&) { opens.fetch_add(1); };
  Writer writer(file(), options);
  const auto submit_one = [&](const std::string& id) {
    Results r(1);
    writer.submit(insert_job(sample(id)), r.slot(0));
    EXPECT_TRUE(r.wait_all());
    return r.at(0);
  };
  ASSERT_EQ(submit_one("R-1").status, JobStatus::committed);

  const auto moved = dir.path() / "moved.db";
  std::filesystem::rename(file(), moved);
  const JobResult while_moved = submit_one("R-2");
  EXPECT_EQ(while_moved.status, JobStatus::unavailable);
  EXPECT_EQ(while_moved.error,
            "writer: database file " + file().string() + " was moved, replaced or deleted while open");
  EXPECT_FALSE(writer.healthy());
  EXPECT_EQ(writer.unhealthy_reason(), "the database file was moved, replaced or deleted");

  // Gone for good: still unavailable, and no empty database appears.
  const JobResult while_missing = submit_one("R-3");
  EXPECT_EQ(while_missing.status, JobStatus::unavailable);
  EXPECT_NE(while_missing.error.find("does not exist"), std::string::npos) << while_missing.error;
  EXPECT_FALSE(std::filesystem::exists(file()));
  EXPECT_EQ(writer.unhealthy_reason(), "the database cannot be opened");

  std::filesystem::rename(moved, file());
  EXPECT_EQ(submit_one("R-4").status, JobStatus::committed);
  EXPECT_TRUE(writer.healthy());
  EXPECT_EQ(opens.load(), 2);
  writer.stop();
  Database db(file(), OpenMode::read_only);
  EXPECT_TRUE(find_referral(db, "R-1").has_value());
  EXPECT_FALSE(find_referral(db, "R-2").has_value());
  EXPECT_TRUE(find_referral(db, "R-4").has_value());
}

// Under a steady stream of commits the write-ahead log is written back into
// the database file mostly by the checkpointer's thread, and still starts
// again from its beginning, so that it stays short: never many times the
// 1,000 pages after which it is written back. (The checkpointer alone could
// not do that: the writer always adds to the log while it works.)
TEST_F(SqliteWriterTest, UnderSteadyCommitsTheLogIsWrittenBackOffTheWriterAndStaysShort) {
  Writer writer(file(), WriterOptions{});
  const std::filesystem::path wal = file().string() + "-wal";
  constexpr std::size_t referrals = 3000;
  constexpr std::size_t wave = 64;
  Results results(referrals);
  std::uintmax_t longest = 0;
  for (std::size_t next = 0; next < referrals;) {
    // Keep the writer's queue from running dry: one wave waits while the
    // next is queued.
    for (std::size_t end = std::min(next + wave, referrals); next < end; ++next) {
      writer.submit(insert_job(sample("R-" + std::to_string(next))), results.slot(next));
    }
    std::error_code ec;
    longest = std::max(longest, std::filesystem::file_size(wal, ec));
    const auto deadline_at = std::chrono::steady_clock::now() + deadline;
    while (writer.jobs_committed() + wave < next && std::chrono::steady_clock::now() < deadline_at) {
      std::this_thread::sleep_for(1ms);
    }
  }
  ASSERT_TRUE(results.wait_all());
  EXPECT_EQ(results.count_of(JobStatus::committed), referrals);
  EXPECT_GE(writer.checkpoints(), 1u);
  EXPECT_LT(longest, 4u * 1000u * 4096u) << "the log grew to " << longest << " bytes";
  EXPECT_EQ(count_rows(file(), "referrals"), static_cast<std::int64_t>(referrals));
}

// The writer commits without an fsync and a thread of its own fsyncs the
// log: no job may be completed before that fsync returns, and the next
// batch is committed meanwhile.
TEST_F(SqliteWriterTest, NoJobIsCompletedBeforeTheLogHoldingItIsFsynced) {
  std::promise<int> entered;
  std::promise<void> released;
  std::shared_future<void> release = released.get_future().share();
  std::atomic<int> syncs{0};
  WriterOptions options;
  options.before_log_sync = [&](int fd) {
    if (syncs.fetch_add(1) != 0) return;
    entered.set_value(fd);
    if (release.wait_for(deadline) != std::future_status::ready) throw std::runtime_error("sync gate timeout");
  };
  Writer writer(file(), options);
  const auto observer = store->open(OpenMode::read_only);

  Results first(1);
  writer.submit(insert_job(sample("R-1")), first.slot(0));
  auto entered_future = entered.get_future();
  ASSERT_EQ(entered_future.wait_for(deadline), std::future_status::ready);
  // The descriptor synced is the database's write-ahead log.
  struct stat synced {};
  struct stat wal {};
  ASSERT_EQ(::fstat(entered_future.get(), &synced), 0);
  ASSERT_EQ(::stat((file().string() + "-wal").c_str(), &wal), 0);
  EXPECT_EQ(synced.st_ino, wal.st_ino);
  EXPECT_EQ(synced.st_dev, wal.st_dev);

  // Committed, not yet durable: readable, not acknowledged.
  EXPECT_TRUE(find_referral(*observer, "R-1").has_value());
  // The writer goes on with the next batch while the fsync is held.
  Results second(1);
  writer.submit(insert_job(sample("R-2")), second.slot(0));
  const auto visible_by = std::chrono::steady_clock::now() + deadline;
  while (!find_referral(*observer, "R-2") && std::chrono::steady_clock::now() < visible_by) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_TRUE(find_referral(*observer, "R-2").has_value());
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(writer.jobs_committed(), 2u);
  // Neither completion has run: both wait for an fsync.
  EXPECT_FALSE(first.done());
  EXPECT_FALSE(second.done());

  released.set_value();
  ASSERT_TRUE(first.wait_all());
  ASSERT_TRUE(second.wait_all());
  EXPECT_EQ(first.at(0).status, JobStatus::committed);
  EXPECT_EQ(second.at(0).status, JobStatus::committed);
}

// An fsync of the log that fails (EIO; a real disk cannot be made to fail
// on cue here, so the test hook stands in for it): the batch it was to make
// durable is unavailable, and so is every job after it: the writer stops
// writing, says why once, and leaves recovery to a restart.
TEST_F(SqliteWriterTest, AFailedLogFsyncStopsTheWriterForGoodAndSaysSoOnce) {
  std::atomic<int> opens{0};
  std::atomic<bool> fail_next{true};
  WriterOptions options;
  options.on_open = [&](Database&) { opens.fetch_add(1); };
  options.before_log_sync = [&](int) {
    if (fail_next.exchange(false)) throw std::system_error(EIO, std::generic_category());
  };
  Writer writer(file(), options);
  ASSERT_EQ(opens.load(), 1);
  std::mutex mutex;
  std::vector<std::string> stops;
  writer.on_fail_stop([&](const std::string& why) {
    std::lock_guard lock(mutex);
    stops.push_back(why);
  });

  Results failed(1);
  writer.submit(insert_job(sample("R-1")), failed.slot(0));
  ASSERT_TRUE(failed.wait_all());
  EXPECT_EQ(failed.at(0).status, JobStatus::unavailable);
  EXPECT_NE(failed.at(0).error.find("cannot fsync the write-ahead log"), std::string::npos) << failed.at(0).error;
  EXPECT_FALSE(writer.healthy());
  EXPECT_EQ(writer.unhealthy_reason(), "the disk failed to store a commit; referrald must restart");

  // The disk would take the next fsync; the writer does not try.
  Results after(2);
  writer.submit(insert_job(sample("R-2")), after.slot(0));
  writer.submit(insert_job(sample("R-3")), after.slot(1));
  ASSERT_TRUE(after.wait_all());
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(after.at(i).status, JobStatus::unavailable) << i;
    EXPECT_NE(after.at(i).error.find("until referrald restarts"), std::string::npos) << after.at(i).error;
  }
  EXPECT_FALSE(writer.healthy());
  EXPECT_EQ(opens.load(), 1);  // never reopened
  writer.stop();
  {
    // R-1 may be there (it was committed, its fsync is what failed: a 503
    // that was stored after all, docs/architecture.md); nothing after it is.
    Database db(file(), OpenMode::read_only);
    EXPECT_FALSE(find_referral(db, "R-2").has_value());
    EXPECT_FALSE(find_referral(db, "R-3").has_value());
  }
  std::lock_guard lock(mutex);
  ASSERT_EQ(stops.size(), 1u);
  EXPECT_NE(stops[0].find("-wal"), std::string::npos) << stops[0];
}

// How many of a stage's jobs took at least `at_least` (counted in a bucket
// whose bound is past it), and how many in all.
std::uint64_t at_least(const referrald::LatencyHistogram::Snapshot& s, std::chrono::microseconds at_least) {
  std::uint64_t n = s.counts.back();
  for (std::size_t i = 0; i < referrald::LatencyHistogram::bounds.size(); ++i) {
    if (referrald::LatencyHistogram::bounds[i] > at_least) n += s.counts[i];
  }
  return n;
}
std::uint64_t total(const referrald::LatencyHistogram::Snapshot& s) { return at_least(s, -1us); }

// Each job is counted once in each stage it went through: two queued
// behind a batch held 60 ms waited at least that long; a job that failed
// alone in its savepoint was still in a batch that committed and was
// fsynced.
TEST_F(SqliteWriterTest, StagesCountEachJobWithTheTimeItSpent) {
  Writer writer(file(), WriterOptions{});
  Gate gate;
  Results results(3);
  writer.submit(gate.job(), results.slot(0));
  ASSERT_TRUE(gate.wait_entered());
  writer.submit(insert_job(sample("R-A")), results.slot(1));
  writer.submit([](Database&) { throw std::runtime_error("fails alone"); }, results.slot(2));
  std::this_thread::sleep_for(60ms);
  gate.release();
  ASSERT_TRUE(results.wait_all());
  EXPECT_EQ(results.at(2).status, JobStatus::failed);

  const WriteStages stages = writer.stages();
  EXPECT_EQ(total(stages.queued), 3U);
  // The two behind the gate (a slow machine may add the gate's own).
  EXPECT_GE(at_least(stages.queued, 50ms), 2U);
  EXPECT_EQ(total(stages.commit), 3U);
  EXPECT_GE(at_least(stages.commit, 50ms), 1U);  // the gate's own batch
  EXPECT_EQ(total(stages.sync), 3U);
  EXPECT_GE(std::chrono::nanoseconds(stages.queued.sum_ns), 120ms);
}

// A batch whose fsync failed is not counted as synced; jobs refused after
// it were taken (queued) and never committed.
TEST_F(SqliteWriterTest, AFailedFsyncIsNoSyncInTheStages) {
  WriterOptions options;
  std::atomic<bool> fail_next{true};
  options.before_log_sync = [&](int) {
    if (fail_next.exchange(false)) throw std::system_error(EIO, std::generic_category());
  };
  Writer writer(file(), options);
  Results failed(1);
  writer.submit(insert_job(sample("R-1")), failed.slot(0));
  ASSERT_TRUE(failed.wait_all());
  Results after(1);
  writer.submit(insert_job(sample("R-2")), after.slot(0));
  ASSERT_TRUE(after.wait_all());
  EXPECT_EQ(after.at(0).status, JobStatus::unavailable);

  const WriteStages stages = writer.stages();
  EXPECT_EQ(total(stages.queued), 2U);
  EXPECT_EQ(total(stages.commit), 1U);
  EXPECT_EQ(total(stages.sync), 0U);
}

// A completion may stop the writer (on the thread that fsyncs the log)
// while another thread is stopping it too: neither waits for the other.
TEST_F(SqliteWriterTest, StopFromACompletionWhileAnotherThreadStopsDoesNotHang) {
  for (int round = 0; round < 20; ++round) {
    auto writer = std::make_unique<Writer>(file(), WriterOptions{});
    std::promise<void> in_completion;
    std::promise<void> may_stop;
    std::shared_future<void> go = may_stop.get_future().share();
    Results results(1);
    writer->submit(insert_job(sample("R-" + std::to_string(round))), [&, go](JobResult r) {
      in_completion.set_value();
      (void)go.wait_for(deadline);
      writer->stop();
      results.slot(0)(std::move(r));
    });
    ASSERT_EQ(in_completion.get_future().wait_for(deadline), std::future_status::ready);
    auto stopper = std::async(std::launch::async, [&] { writer->stop(); });
    std::this_thread::sleep_for(1ms);
    may_stop.set_value();
    ASSERT_EQ(stopper.wait_for(deadline), std::future_status::ready) << "round " << round;
    ASSERT_TRUE(results.wait_all());
    writer.reset();
  }
}

TEST_F(SqliteWriterTest, ADeletedDatabaseIsNotWrittenToAnyMore) {
  Writer writer(file(), WriterOptions{});
  Results first(1);
  writer.submit(insert_job(sample("R-1")), first.slot(0));
  ASSERT_TRUE(first.wait_all());
  ASSERT_EQ(first.at(0).status, JobStatus::committed);
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(file().string() + suffix);
  Results second(1);
  writer.submit(insert_job(sample("R-2")), second.slot(0));
  ASSERT_TRUE(second.wait_all());
  EXPECT_EQ(second.at(0).status, JobStatus::unavailable);  // never acknowledged into a ghost file
  EXPECT_FALSE(std::filesystem::exists(file()));
}

TEST_P(WriterTest, RefusesADatabaseNewerThanItself) {
  {
    const auto db = store->open();
    migrate(*db);
    db->exec("INSERT INTO schema_version (version, applied_ms) VALUES (" + std::to_string(schema_version + 1) + ", 0)");
  }
  try {
    Writer writer(target(), WriterOptions{});
    FAIL() << "writer started on a newer database";
  } catch (const IncompatibleSchema& e) {
    EXPECT_EQ(std::string(e.what()), "database schema version " + std::to_string(schema_version + 1) +
                                         " is newer than this referrald (" + std::to_string(schema_version) + ")");
  }
}

TEST_F(SqliteWriterTest, CreatesTheDatabasePrivate) {
  Writer writer(file(), WriterOptions{});
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const std::filesystem::path p = file().string() + suffix;
    EXPECT_EQ(std::filesystem::status(p).permissions(),
              std::filesystem::perms::owner_read | std::filesystem::perms::owner_write)
        << p;
  }
}

// ---- ReaderPool ----

TEST_P(WriterTest, ReaderPoolRunsQueriesAndReportsFailures) {
  {
    Writer writer(target(), WriterOptions{});
    Results results(1);
    writer.submit(insert_job(sample("R-1")), results.slot(0));
    ASSERT_TRUE(results.wait_all());
  }
  ReaderPool pool(target(), 2);

  std::promise<std::optional<ReferralRow>> found;
  pool.submit([&](Database& db) { found.set_value(find_referral(db, "R-1")); },
              [&](std::string message) { ADD_FAILURE() << message; });
  auto found_future = found.get_future();
  ASSERT_EQ(found_future.wait_for(deadline), std::future_status::ready);
  EXPECT_TRUE(found_future.get().has_value());

  std::promise<std::string> thrown;
  pool.submit([](Database&) { throw std::runtime_error("query exploded"); },
              [&](std::string message) { thrown.set_value(std::move(message)); });
  auto thrown_future = thrown.get_future();
  ASSERT_EQ(thrown_future.wait_for(deadline), std::future_status::ready);
  EXPECT_EQ(thrown_future.get(), "query exploded");

  std::promise<std::string> write;
  pool.submit([](Database& db) { db.exec("DELETE FROM referrals"); },
              [&](std::string message) { write.set_value(std::move(message)); });
  auto write_future = write.get_future();
  ASSERT_EQ(write_future.wait_for(deadline), std::future_status::ready);
  EXPECT_NE(write_future.get().find(GetParam() == Dialect::sqlite ? "readonly" : "read-only transaction"),
            std::string::npos);
  pool.stop();
  EXPECT_EQ(rows("referrals"), 1);

  std::string after_stop;
  pool.submit([](Database&) {}, [&](std::string message) { after_stop = std::move(message); });
  EXPECT_EQ(after_stop, "reader pool is stopping");
}

TEST_F(SqliteWriterTest, ReaderPoolOnAMissingDatabaseFailsEachQuery) {
  ReaderPool pool(file(), 1);
  std::promise<std::string> failed;
  pool.submit([](Database&) {}, [&](std::string message) { failed.set_value(std::move(message)); });
  auto future = failed.get_future();
  ASSERT_EQ(future.wait_for(deadline), std::future_status::ready);
  EXPECT_NE(future.get().find("does not exist"), std::string::npos);
  pool.stop();
  EXPECT_FALSE(std::filesystem::exists(file()));
}

}  // namespace
