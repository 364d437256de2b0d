#include "store/writer.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <memory>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "store/store.hpp"
#include "util/private_files.hpp"
#include "util/latency.hpp"
#include "util/threads.hpp"

namespace referrald::store {

namespace {

// The writer waits less than readers for a lock (held only by a short
// referralctl transaction): better a prompt 503 than every queued request
// stalling behind it.
constexpr int writer_busy_timeout_ms = 2000;

// Each reader thread may have this many queries waiting for it.
constexpr std::size_t reader_queue_per_thread = 256;

void complete(const Writer::Completion& done, JobResult result) noexcept {
  if (!done) return;
  try {
    done(std::move(result));
  } catch (...) {
    // A completion that throws must not take the writer thread down; the
    // contract asks completions not to throw.
  }
}

// After these the connection itself is fine and the next batch can simply
// try again; after anything else (I/O error, file moved or replaced, cannot
// open) it is reopened.
bool connection_survives(const DatabaseError& e) {
  const int primary = e.code() & 0xff;
  return primary == SQLITE_FULL || primary == SQLITE_BUSY || primary == SQLITE_LOCKED;
}

struct Pending {
  Writer::Job job;
  Writer::Completion done;
  std::chrono::steady_clock::time_point submitted;
};

// SQLite: the write-ahead log's length in pages from which it is written
// back into the database file (SQLite's own default); how many pages the
// checkpointer may leave for the writer to write back itself, between two
// batches; and the length at which the writer writes it all back itself,
// because the checkpointer has not kept up (it cannot open the file, say).
// After a failed fsync of the log (Writer::Impl::fail_stop).
constexpr const char* fail_stop_reason = "the disk failed to store a commit; referrald must restart";
constexpr const char* fail_stop_message =
    "writer: stopped after an fsync of the write-ahead log failed; nothing more is stored until referrald restarts";

constexpr int checkpoint_pages = 1000;
constexpr int finish_pages = 256;
constexpr int checkpoint_inline_pages = 16 * checkpoint_pages;

// Writes SQLite's write-ahead log back into the database file (a PASSIVE
// checkpoint) on a thread and connection of its own, when the writer asks.
// A checkpoint writes back hundreds of pages and fsyncs the database file.
// Run by the commit that found the log long, as SQLite does by default, it
// held up that batch, and every request queued behind it, by several
// milliseconds, once every hundred or so referrals (bench/README.md, issue
// 17). But only a checkpoint that has written back the whole log lets the
// writer start the log again from its beginning, and under load the writer
// always adds to the log while this thread works: so this thread writes back
// the bulk, and the writer the last few pages, between two batches
// (Writer::Impl::wal_grown). Durability depends on neither: a commit is in
// the log, fsynced, before it is acknowledged.
class Checkpointer {
 public:
  explicit Checkpointer(std::filesystem::path file)
      : file_(std::move(file)), thread_([this] {
          name_this_thread("rd-checkpoint");
          run();
        }) {}
  ~Checkpointer() { stop(); }
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // Asks for a checkpoint of the log as the writer counts it: `generation`
  // goes up each time the log starts again from its beginning.
  void request(std::uint64_t generation) noexcept {
    {
      std::lock_guard lock(mutex_);
      requested_ = generation;
    }
    wake_.notify_one();
  }

  // What the last checkpoint asked for in `generation` reached, if any.
  std::optional<CheckpointResult> reached(std::uint64_t generation) const {
    std::lock_guard lock(mutex_);
    if (!reached_ || reached_generation_ != generation) return std::nullopt;
    return reached_;
  }

  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
    std::lock_guard join_lock(join_mutex_);
    if (thread_.joinable()) thread_.join();
  }

  std::uint64_t done() const noexcept { return done_.load(std::memory_order_relaxed); }

 private:
  void run() {
    std::unique_ptr<Database> db;
    struct stat opened {};
    for (;;) {
      std::uint64_t generation = 0;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [this] { return stopping_ || requested_.has_value(); });
        if (stopping_) break;
        generation = *requested_;
        requested_.reset();
      }
      try {
        // The file the writer uses now: one replaced under the daemon
        // (which the writer refuses) is not the one to write back into.
        struct stat now {};
        if (::stat(file_.c_str(), &now) != 0) {
          db.reset();
          continue;
        }
        if (!db || now.st_dev != opened.st_dev || now.st_ino != opened.st_ino) {
          db.reset();
          db = std::make_unique<Database>(file_, OpenMode::read_write);
          opened = now;
        }
        const CheckpointResult result = db->checkpoint();
        {
          std::lock_guard lock(mutex_);
          reached_ = result;
          reached_generation_ = generation;
        }
        done_.fetch_add(1, std::memory_order_relaxed);
      } catch (const std::exception&) {
        // Opened again at the next request; meanwhile the writer writes
        // the log back itself past checkpoint_inline_pages.
        db.reset();
      }
    }
  }

  const std::filesystem::path file_;
  mutable std::mutex mutex_;  // guards requested_, reached_, reached_generation_, stopping_
  std::condition_variable wake_;
  std::optional<std::uint64_t> requested_;
  std::optional<CheckpointResult> reached_;
  std::uint64_t reached_generation_ = 0;
  bool stopping_ = false;
  std::atomic<std::uint64_t> done_{0};
  std::mutex join_mutex_;
  std::thread thread_;  // last: it starts running in the constructor
};

// SQLite's write-ahead log, opened apart from SQLite's own handle so that a
// thread other than the writer's can fsync it (fsync makes every write to
// the file durable, whichever descriptor made it). The writer's connection
// exists, so the log does, and stays while that connection is open.
class LogFile {
 public:
  explicit LogFile(const std::filesystem::path& database) : path_(database.string() + "-wal") {
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw error("open", errno);
    // SQLite may just have created the log: its name in the directory must
    // survive a crash as surely as what is written into it.
    if (!sync_directory(path_.parent_path().empty() ? std::filesystem::path(".") : path_.parent_path())) {
      const int e = errno;
      ::close(fd_);
      throw error("fsync the directory of", e);
    }
  }
  ~LogFile() { ::close(fd_); }
  LogFile(const LogFile&) = delete;
  LogFile& operator=(const LogFile&) = delete;

  // fdatasync; throws DatabaseError (SQLITE_FULL or SQLITE_IOERR_FSYNC)
  // when it fails. `before` (WriterOptions::before_log_sync) runs first.
  void sync(const std::function<void(int fd)>& before) const {
    int e = 0;
    try {
      if (before) before(fd_);
      if (::fdatasync(fd_) != 0) e = errno;
    } catch (const std::system_error& failure) {
      e = failure.code().value();  // a test standing in for a failing fsync
    }
    if (e != 0) throw error("fsync", e);
  }

 private:
  DatabaseError error(const char* step, int e) const {
    const int code = (e == ENOSPC || e == EDQUOT) ? SQLITE_FULL : SQLITE_IOERR_FSYNC;
    return DatabaseError(code, std::string("writer: cannot ") + step + " the write-ahead log " + path_.string() + ": " +
                                   std::strerror(e));
  }

  std::filesystem::path path_;
  int fd_ = -1;
};

// A batch committed to the log but not yet fsynced, with what waits for it.
struct Committed {
  std::shared_ptr<LogFile> log;
  std::vector<Pending> batch;
  std::vector<JobResult> results;
  std::function<void()> hook;
  std::chrono::steady_clock::time_point committed_at;
};

// Makes the writer's commits durable off its thread (SQLite). The writer's
// connection commits with synchronous=NORMAL: the batch's frames are in the
// write-ahead log, not yet fsynced. This thread fsyncs the log and only then
// completes the batch's jobs (a 202 follows one), while the writer already
// runs the next batch. With the fsync in the commit, as synchronous=FULL
// does, every batch took its own work plus an fsync of about the same
// length (2.4 ms on the bench machine), and the requests queued meanwhile
// waited for both. One fsync covers every batch committed before it starts,
// so batches that arrive while one runs share the next. Measured
// (bench/README.md, issue 17): 18% more referrals a second when every one
// plans a delivery (the writer also commits the dispatcher's claims and
// outcomes); no change without deliveries, where the cores are the limit.
class LogSyncer {
 public:
  // `failed`: called on this thread with what a failed fsync threw;
  // `waited`: each job's time from its commit to its fsync's end.
  LogSyncer(std::function<void(int fd)> before_sync, std::function<void(const DatabaseError&)> failed,
            LatencyHistogram& waited)
      : before_sync_(std::move(before_sync)), failed_(std::move(failed)), waited_(waited), thread_([this] {
          name_this_thread("rd-logsync");
          run();
        }) {}
  ~LogSyncer() { stop(); }
  LogSyncer(const LogSyncer&) = delete;
  LogSyncer& operator=(const LogSyncer&) = delete;

  void hand(Committed committed) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(committed));
    }
    wake_.notify_one();
  }

  bool on_this_thread() const noexcept { return std::this_thread::get_id() == thread_.get_id(); }

  // Syncs and completes everything handed over, then ends the thread;
  // from a completion (this thread) it only asks for that.
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
    if (std::this_thread::get_id() == thread_.get_id()) return;
    std::lock_guard join_lock(join_mutex_);
    if (thread_.joinable()) thread_.join();
  }

 private:
  void run() {
    for (;;) {
      std::vector<Committed> group;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) break;
        group.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
        queue_.clear();
      }
      // Normally one log; two when the writer reopened its connection
      // between these batches.
      for (std::size_t i = 0; i < group.size(); ++i) {
        const auto& log = group[i].log;
        const bool first = std::none_of(group.begin(), group.begin() + static_cast<std::ptrdiff_t>(i),
                                        [&](const Committed& c) { return c.log == log; });
        if (first) sync(*log);
      }
      const auto synced = std::chrono::steady_clock::now();
      for (Committed& c : group) {
        if (failure_) {
          for (JobResult& r : c.results) r = JobResult{JobStatus::unavailable, *failure_};
        } else {
          waited_.record(synced - c.committed_at, c.batch.size());
        }
        if (!failure_ && c.hook) {
          try {
            c.hook();
          } catch (...) {
            // The hook only wakes others; its failure must not stop the writer.
          }
        }
        for (std::size_t j = 0; j < c.batch.size(); ++j) complete(c.batch[j].done, std::move(c.results[j]));
      }
    }
  }

  // After a failed fsync nothing written to the log since the last good
  // one can be trusted to be on disk (Linux may have dropped those pages,
  // and reports that once only), while SQLite already counts those commits
  // as made: no later fsync is tried, every batch still waiting fails, and
  // the writer stops for good (Writer::Impl::fail_stop).
  void sync(LogFile& log) {
    if (failure_) return;
    try {
      log.sync(before_sync_);
    } catch (const DatabaseError& e) {
      failure_ = e.what();
      failed_(e);
    }
  }

  std::function<void(int fd)> before_sync_;
  std::function<void(const DatabaseError&)> failed_;
  LatencyHistogram& waited_;
  std::optional<std::string> failure_;  // this thread's: what the failed fsync said
  std::mutex mutex_;                    // guards queue_, stopping_
  std::condition_variable wake_;
  std::deque<Committed> queue_;
  bool stopping_ = false;
  std::mutex join_mutex_;
  std::thread thread_;  // last: it starts running in the constructor
};

}  // namespace

// ---- Writer ----

struct Writer::Impl {
  Impl(StorageTarget t, WriterOptions o) : target(std::move(t)), file(target.file), options(std::move(o)) {
    if (target.backend == Dialect::sqlite) {
      checkpointer = std::make_unique<Checkpointer>(file);
      syncer = std::make_unique<LogSyncer>(
          options.before_log_sync, [this](const DatabaseError& e) { fail_stop(e.what()); }, stages.sync);
    }
    options.max_batch = std::max<std::size_t>(options.max_batch, 1);
  }

  ~Impl() {
    syncer.reset();
    checkpointer.reset();
  }

  const StorageTarget target;
  const std::filesystem::path file;  // SQLite's
  WriterOptions options;

  // Their threads use the members below: stopped first (~Impl).
  std::unique_ptr<Checkpointer> checkpointer;  // SQLite
  std::unique_ptr<LogSyncer> syncer;           // SQLite
  std::shared_ptr<LogFile> log_file;           // SQLite: the writer connection's, while it is open

  // The write-ahead log as the writer thread saw it at its last commit.
  int log_pages = 0;
  std::uint64_t log_generation = 0;
  bool finish_checkpoint = false;

  // Owned by the writer thread once it runs.
  std::unique_ptr<Database> db;

  mutable std::mutex mutex;  // guards queue, stopping, commit_hook, payload_keys
  std::condition_variable wake;
  std::deque<Pending> queue;
  bool stopping = false;
  std::function<void()> commit_hook;
  std::shared_ptr<const KeyRing> payload_keys;

  std::mutex join_mutex;  // two threads calling stop() must not both join
  std::thread thread;
  std::thread::id thread_id;

  // SQLite: which file the connection has open. In WAL mode SQLite keeps writing to
  // an open database that was deleted or replaced on disk; commits there
  // would be acknowledged and then lost, so every batch checks before it
  // commits.
  dev_t file_device = 0;
  ino_t file_inode = 0;

  // Set once a fsync of the log failed: every job after it is refused.
  std::atomic<bool> stopped_for_good{false};
  std::function<void(const std::string&)> fail_stop_hook;  // guarded by mutex

  std::atomic<std::uint64_t> commits{0};
  std::atomic<std::uint64_t> jobs_committed{0};
  struct {
    LatencyHistogram queued, commit, sync;
  } stages;
  std::atomic<bool> healthy{true};
  mutable std::mutex reason_mutex;  // guards unhealthy_reason
  std::string unhealthy_reason;

  void open(OpenMode mode) {
    auto fresh = open_database(target, mode);
    fresh->set_busy_timeout(std::chrono::milliseconds(writer_busy_timeout_ms));
    migrate(*fresh);
    if (options.on_open) options.on_open(*fresh);
    if (target.backend != Dialect::sqlite) {
      db = std::move(fresh);
      return;
    }
    // Commits go into the log without an fsync; the syncer thread fsyncs
    // the log before any of them is acknowledged (LogSyncer).
    fresh->exec("PRAGMA synchronous=NORMAL");
    log_file = std::make_shared<LogFile>(file);
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) {
      throw DatabaseError(SQLITE_CANTOPEN, "writer: database file " + file.string() + " vanished while opening");
    }
    file_device = st.st_dev;
    file_inode = st.st_ino;
    fresh->on_wal_commit([this](int pages) { wal_grown(pages); });
    db = std::move(fresh);
  }

  // After each commit (SQLite), with the log's length in pages: asks the
  // checkpointer to write the log back, or, once it has written back all
  // but a few pages (or has not kept up at all), has the writer finish it
  // after this batch's completions, so that the next batch starts the log
  // again from its beginning.
  void wal_grown(int pages) {
    if (pages < log_pages) ++log_generation;  // the log started again
    log_pages = pages;
    if (pages < checkpoint_pages) return;
    const auto reached = checkpointer->reached(log_generation);
    if (pages >= checkpoint_inline_pages || (reached && pages - reached->written <= finish_pages)) {
      finish_checkpoint = true;
    } else {
      checkpointer->request(log_generation);
    }
  }

  // On the syncer's thread, after a failed fsync of the log. Reopening
  // would not do: SQLite's shared index already lists the commits that
  // fsync was to make durable, a checkpoint could copy what never reached
  // the disk into the database file, and a new descriptor is not told of
  // the old error. So nothing is written any more (checkpoints included);
  // the daemon restarts (Writer::on_fail_stop), and SQLite recovers from
  // what is on disk.
  void fail_stop(const std::string& why) {
    {
      std::lock_guard lock(reason_mutex);
      unhealthy_reason = fail_stop_reason;
      healthy.store(false, std::memory_order_relaxed);
    }
    if (stopped_for_good.exchange(true)) return;
    if (checkpointer) checkpointer->stop();
    std::function<void(const std::string&)> hook;
    {
      std::lock_guard lock(mutex);
      hook = fail_stop_hook;
    }
    if (hook) hook(why);
  }

  void check_file_unmoved() const {
    if (target.backend != Dialect::sqlite) return;
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0 || st.st_dev != file_device || st.st_ino != file_inode) {
      throw DatabaseError(SQLITE_READONLY_DBMOVED,
                          "writer: database file " + file.string() + " was moved, replaced or deleted while open");
    }
  }

  void run() {
    for (;;) {
      std::vector<Pending> batch;
      std::function<void()> hook;
      std::shared_ptr<const KeyRing> keys;
      {
        std::unique_lock lock(mutex);
        wake.wait(lock, [this] { return stopping || !queue.empty(); });
        if (queue.empty()) break;  // stopping, and everything queued has run
        const std::size_t n = std::min(queue.size(), options.max_batch);
        batch.reserve(n);
        for (std::size_t i = 0; i < n; ++i) {
          batch.push_back(std::move(queue.front()));
          queue.pop_front();
        }
        hook = commit_hook;
        keys = payload_keys;
      }
      const auto picked = std::chrono::steady_clock::now();
      for (const Pending& p : batch) stages.queued.record(picked - p.submitted);

      std::vector<JobResult> results(batch.size());
      if (stopped_for_good.load()) {
        for (std::size_t i = 0; i < batch.size(); ++i) {
          complete(batch[i].done, JobResult{JobStatus::unavailable, fail_stop_message});
        }
        continue;
      }
      const bool committed = run_batch(batch, results, std::move(keys));
      const auto committed_at = std::chrono::steady_clock::now();
      if (committed) stages.commit.record(committed_at - picked, batch.size());
      if (committed && syncer) {
        // Acknowledged once the log is on disk; this thread goes on.
        syncer->hand(Committed{log_file, std::move(batch), std::move(results), std::move(hook), committed_at});
      } else if (committed && hook) {
        try {
          hook();
        } catch (...) {
          // The hook only wakes others; its failure must not stop the writer.
        }
      }
      // Completions run after COMMIT returned (SQLite: the syncer's, after
      // the fsync) and outside the queue mutex, so they may submit again or
      // read queue_depth().
      for (std::size_t i = 0; i < batch.size(); ++i) complete(batch[i].done, std::move(results[i]));
      if (finish_checkpoint && !stopped_for_good.load()) {
        finish_checkpoint = false;
        try {
          if (db) db->checkpoint();
        } catch (const DatabaseError&) {
          // SQLITE_BUSY while the checkpointer runs: the next commit asks again.
        }
      }
    }
    db.reset();  // closed on the thread that used it
  }

  // Runs the batch as one transaction. Returns true if it committed.
  bool run_batch(std::vector<Pending>& batch, std::vector<JobResult>& results, std::shared_ptr<const KeyRing> keys) {
    try {
      if (!db) open(OpenMode::read_write);  // reopen after a broken connection; never recreate
      db->set_payload_keys(std::move(keys));
      db->begin_write();
      std::uint64_t ok = 0;
      for (std::size_t i = 0; i < batch.size(); ++i) {
        results[i] = run_job(*db, batch[i].job);
        if (results[i].status == JobStatus::committed) ++ok;
      }
      check_file_unmoved();  // as late as possible: right before the commit
      db->commit();          // with the notification, if a job noted due work
      commits.fetch_add(1, std::memory_order_relaxed);
      jobs_committed.fetch_add(ok, std::memory_order_relaxed);
      if (!stopped_for_good.load()) healthy.store(true, std::memory_order_relaxed);
      return true;
    } catch (const DatabaseError& e) {
      abandon(results, e.what(), e.unavailable_reason(), connection_survives(e));
    } catch (const std::exception& e) {
      // E.g. IncompatibleSchema on reopen: the database was replaced.
      abandon(results, e.what(), "the database cannot be used", false);
    } catch (...) {
      abandon(results, "writer: unknown error", "the last commit failed", false);
    }
    return false;
  }

  // One job inside its own savepoint, so a job that throws is undone alone.
  // Throws (failing the batch) if the store itself is unavailable.
  JobResult run_job(Database& conn, const Job& job) {
    conn.cached("SAVEPOINT j").run();
    JobResult result{JobStatus::failed, {}};
    try {
      job(conn);
      conn.cached("RELEASE j").run();
      return JobResult{JobStatus::committed, {}};
    } catch (const DatabaseError& e) {
      if (e.is_unavailable()) throw;
      result.error = e.what();
    } catch (const std::exception& e) {
      result.error = e.what();
    } catch (...) {
      result.error = "job failed with an unknown exception";
    }
    conn.reset_busy_statements();
    if (!conn.in_transaction()) {
      // SQLite rolled back the whole transaction (or the job ended it):
      // the jobs before this one are gone too.
      throw DatabaseError(SQLITE_ABORT, "writer: transaction ended while a job failed (" + result.error + ")");
    }
    conn.cached("ROLLBACK TO j").run();
    conn.cached("RELEASE j").run();
    return result;
  }

  void abandon(std::vector<JobResult>& results, const std::string& why, const char* reason, bool connection_ok) {
    {
      // Both under the mutex, so a reader that sees the failure sees its reason.
      std::lock_guard lock(reason_mutex);
      unhealthy_reason = reason;
      healthy.store(false, std::memory_order_relaxed);
    }
    if (db) {
      try {
        db->reset_busy_statements();
        if (db->in_transaction()) db->cached("ROLLBACK").run();
      } catch (...) {
        connection_ok = false;
      }
      if (!connection_ok) db.reset();  // the next batch reopens it
    }
    for (JobResult& r : results) r = JobResult{JobStatus::unavailable, why};
  }
};

Writer::Writer(const std::filesystem::path& file, WriterOptions options)
    : Writer(StorageTarget{Dialect::sqlite, file, {}}, std::move(options)) {}

Writer::Writer(const StorageTarget& target, WriterOptions options)
    : impl_(std::make_unique<Impl>(target, std::move(options))) {
  impl_->open(OpenMode::read_write_create);
  impl_->thread = std::thread([impl = impl_.get()] {
    name_this_thread("rd-writer");
    impl->run();
  });
  impl_->thread_id = impl_->thread.get_id();
}

Writer::~Writer() { stop(); }

void Writer::submit(Job job, Completion done) {
  const auto submitted = std::chrono::steady_clock::now();
  std::optional<JobResult> refused;
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->stopping) {
      refused = JobResult{JobStatus::stopped, "writer is stopping"};
    } else if (impl_->queue.size() >= impl_->options.queue_limit) {
      refused = JobResult{JobStatus::overloaded, "writer queue is full"};
    } else {
      impl_->queue.push_back(Pending{std::move(job), std::move(done), submitted});
    }
  }
  if (refused) {
    complete(done, std::move(*refused));
    return;
  }
  impl_->wake.notify_one();
}

void Writer::on_fail_stop(std::function<void(const std::string& why)> hook) {
  std::lock_guard lock(impl_->mutex);
  impl_->fail_stop_hook = std::move(hook);
}

void Writer::on_commit(std::function<void()> hook) {
  std::lock_guard lock(impl_->mutex);
  impl_->commit_hook = std::move(hook);
}

void Writer::set_payload_keys(std::shared_ptr<const KeyRing> keys) {
  std::lock_guard lock(impl_->mutex);
  impl_->payload_keys = std::move(keys);
}

void Writer::stop() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  // Called from a completion: the thread drains and ends by itself.
  if (std::this_thread::get_id() == impl_->thread_id) return;
  // From a completion on the syncer's thread: the writer drains by itself,
  // and whoever stops it next (at the latest ~Writer) joins both; joining
  // here could wait for a stop() that is joining this very thread.
  if (impl_->syncer && impl_->syncer->on_this_thread()) return;
  std::lock_guard join_lock(impl_->join_mutex);
  if (impl_->thread.joinable()) impl_->thread.join();
  // Every committed batch synced and completed.
  if (impl_->syncer) impl_->syncer->stop();
  if (impl_->checkpointer) impl_->checkpointer->stop();
}

std::size_t Writer::queue_depth() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->queue.size();
}

std::uint64_t Writer::commits() const { return impl_->commits.load(std::memory_order_relaxed); }

std::uint64_t Writer::jobs_committed() const { return impl_->jobs_committed.load(std::memory_order_relaxed); }

WriteStages Writer::stages() const {
  return {impl_->stages.queued.snapshot(), impl_->stages.commit.snapshot(), impl_->stages.sync.snapshot()};
}

std::uint64_t Writer::checkpoints() const { return impl_->checkpointer ? impl_->checkpointer->done() : 0; }

bool Writer::healthy() const { return impl_->healthy.load(std::memory_order_relaxed); }

std::string Writer::unhealthy_reason() const {
  std::lock_guard lock(impl_->reason_mutex);
  return healthy() ? std::string() : impl_->unhealthy_reason;
}

// ---- ReaderPool ----

struct ReaderPool::Impl {
  struct Item {
    Query query;
    std::function<void(std::string)> failed;
  };

  Impl(StorageTarget t, std::size_t limit) : target(std::move(t)), queue_limit(limit) {}

  const StorageTarget target;
  const std::size_t queue_limit;

  std::mutex mutex;  // guards queue, stopping, payload_keys
  std::condition_variable wake;
  std::deque<Item> queue;
  bool stopping = false;
  std::shared_ptr<const KeyRing> payload_keys;

  std::mutex join_mutex;
  std::vector<std::thread> threads;
  std::vector<std::thread::id> thread_ids;

  static void fail(const std::function<void(std::string)>& failed, std::string message) noexcept {
    if (!failed) return;
    try {
      failed(std::move(message));
    } catch (...) {
      // Same contract as a writer completion: must not throw.
    }
  }

  void run() {
    // Opened lazily, and again after an error that may have broken it, so a
    // pool started before the database exists recovers once it does.
    std::unique_ptr<Database> db;
    for (;;) {
      Item item;
      std::shared_ptr<const KeyRing> keys;
      {
        std::unique_lock lock(mutex);
        wake.wait(lock, [this] { return stopping || !queue.empty(); });
        if (queue.empty()) break;
        item = std::move(queue.front());
        queue.pop_front();
        keys = payload_keys;
      }
      std::optional<std::string> error;
      bool reopen = false;
      try {
        if (!db) {
          // Readers only read, enforced by the engine: SQLite's query_only,
          // PostgreSQL's read-only transactions.
          if (target.backend == Dialect::sqlite) {
            auto fresh = open_database(target, OpenMode::read_write);
            fresh->exec("PRAGMA query_only=ON");
            db = std::move(fresh);
          } else {
            db = open_database(target, OpenMode::read_only);
          }
        }
        db->set_payload_keys(std::move(keys));
        item.query(*db);
      } catch (const DatabaseError& e) {
        error = e.what();
        reopen = e.is_unavailable();
      } catch (const std::exception& e) {
        error = e.what();
      } catch (...) {
        error = "query failed with an unknown exception";
      }
      if (db) {
        // Whatever the query left open must not pin a snapshot until the next one.
        try {
          db->reset_busy_statements();
          if (db->in_transaction()) db->exec("ROLLBACK");
        } catch (...) {
          reopen = true;
        }
        if (reopen) db.reset();
      }
      if (error) fail(item.failed, std::move(*error));
    }
  }
};

ReaderPool::ReaderPool(const std::filesystem::path& file, unsigned threads)
    : ReaderPool(StorageTarget{Dialect::sqlite, file, {}}, threads) {}

ReaderPool::ReaderPool(const StorageTarget& target, unsigned threads)
    : impl_(std::make_unique<Impl>(target, reader_queue_per_thread * std::max(threads, 1u))) {
  const unsigned n = std::max(threads, 1u);
  for (unsigned i = 0; i < n; ++i) {
    impl_->threads.emplace_back([impl = impl_.get()] {
      name_this_thread("rd-reader");
      impl->run();
    });
    impl_->thread_ids.push_back(impl_->threads.back().get_id());
  }
}

ReaderPool::~ReaderPool() { stop(); }

void ReaderPool::submit(Query query, std::function<void(std::string)> failed) {
  std::optional<std::string> refused;
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->stopping) {
      refused = "reader pool is stopping";
    } else if (impl_->queue.size() >= impl_->queue_limit) {
      refused = "reader queue is full";
    } else {
      impl_->queue.push_back(Impl::Item{std::move(query), std::move(failed)});
    }
  }
  if (refused) {
    Impl::fail(failed, std::move(*refused));
    return;
  }
  impl_->wake.notify_one();
}

void ReaderPool::set_payload_keys(std::shared_ptr<const KeyRing> keys) {
  std::lock_guard lock(impl_->mutex);
  impl_->payload_keys = std::move(keys);
}

void ReaderPool::stop() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  // From a query on a reader thread: the threads end by themselves (joining
  // here could deadlock with another thread's stop()).
  const auto self = std::this_thread::get_id();
  for (const std::thread::id id : impl_->thread_ids) {
    if (id == self) return;
  }
  std::lock_guard join_lock(impl_->join_mutex);
  for (std::thread& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
}

}  // namespace referrald::store
