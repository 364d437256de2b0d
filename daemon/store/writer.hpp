// Group commit. One thread owns the write connection; callers hand it jobs
// and are completed only after the transaction holding their job is durable:
// PostgreSQL's commit returns then; SQLite's log is fsynced by a second
// thread while the first runs the next batch. Many concurrent jobs share
// one commit, and one fsync may cover several commits.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "store/database.hpp"
#include "util/latency.hpp"

namespace referrald::store {

enum class JobStatus {
  committed,    // the job ran and its transaction is durable
  failed,       // the job itself threw (e.g. a constraint); its changes were rolled back, neighbours unaffected
  unavailable,  // the database could not commit (disk full, read-only, I/O error): nothing of it is stored
  overloaded,   // the queue was full; the job never ran
  stopped,      // the writer is shutting down; the job never ran
};

struct JobResult {
  JobStatus status = JobStatus::committed;
  std::string error;  // for failed/unavailable: a message without PHI
};

// Where the writer's jobs spent their time (docs/architecture.md, "Latency
// by stage"): `queued`, from submit() to its batch being taken (every job
// taken); `commit`, from then to the batch's COMMIT, and `sync` (SQLite),
// from that COMMIT to the end of the log's fsync that made it durable
// (each job of a batch that committed, a job that failed alone in its
// savepoint too). A job is completed right after its last stage.
struct WriteStages {
  LatencyHistogram::Snapshot queued, commit, sync;
};

struct WriterOptions {
  std::size_t max_batch = 1024;
  std::size_t queue_limit = 16384;
  // Called with the write connection after every (re)open and migration,
  // before any job runs on it; mainly for tests (e.g. to inject a disk-full
  // fault with PRAGMA max_page_count). Runs on the thread that opens it.
  std::function<void(Database&)> on_open;
  // SQLite: called with the write-ahead log's file descriptor before each
  // fsync that makes commits durable, on the thread that runs it; for tests
  // only: it may block (holding those commits unacknowledged) or throw
  // std::system_error (taken as the fsync failing with that error).
  std::function<void(int fd)> before_log_sync;
};

class Writer {
 public:
  // A job runs on the writer thread inside the batch's transaction (within a
  // savepoint of its own). It may throw to fail itself alone.
  using Job = std::function<void(Database&)>;
  // Called on one of the writer's threads once the outcome is final (for a
  // committed job: once its commit is on disk); must not block.
  using Completion = std::function<void(JobResult)>;

  // Opens (creating 0600) and migrates the database; throws DatabaseError or
  // IncompatibleSchema if it cannot.
  Writer(const std::filesystem::path& file, WriterOptions options);  // SQLite
  Writer(const StorageTarget& target, WriterOptions options);
  ~Writer();  // stop()s
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Never blocks. Completes immediately with overloaded or stopped when the
  // job cannot be queued.
  void submit(Job job, Completion done);

  // Called on one of the writer's threads after each successful commit is
  // durable, before its completions (e.g. to wake the dispatcher). Set
  // before the first submit.
  void on_commit(std::function<void()> hook);

  // The keys referral documents are sealed and opened with (null: stored
  // in the clear), from the next batch on: a reload takes effect for every
  // job not yet started.
  void set_payload_keys(std::shared_ptr<const KeyRing> keys);

  // SQLite: called once, on one of the writer's threads, when an fsync of
  // the write-ahead log fails; from then on every job is refused
  // (unavailable) and nothing is written, until the process starts again
  // and SQLite recovers from what is on disk (docs/architecture.md). `why`
  // names the file and the error, never a referral. Set before the first
  // submit; must not block.
  void on_fail_stop(std::function<void(const std::string& why)> hook);

  // Runs the queued jobs, then stops the thread. Idempotent.
  void stop();

  // Figures for /metrics and STATUS=.
  std::size_t queue_depth() const;
  std::uint64_t commits() const;
  std::uint64_t jobs_committed() const;
  WriteStages stages() const;
  // SQLite: write-ahead log checkpoints the checkpointer thread has run.
  std::uint64_t checkpoints() const;
  bool healthy() const;  // false while the last commit attempt failed
  // While unhealthy, why (DatabaseError::unavailable_reason); empty otherwise.
  std::string unhealthy_reason() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Read-only queries off the I/O threads: a few threads, each with its own
// connection. Completion runs on a reader thread.
class ReaderPool {
 public:
  using Query = std::function<void(Database&)>;
  ReaderPool(const std::filesystem::path& file, unsigned threads);  // SQLite
  // Each thread has its own connection (PostgreSQL: a pool of `threads`
  // connections), opened on first use and again after it broke.
  ReaderPool(const StorageTarget& target, unsigned threads);
  ~ReaderPool();
  ReaderPool(const ReaderPool&) = delete;
  ReaderPool& operator=(const ReaderPool&) = delete;

  // The query runs on a reader thread; `failed` is called instead with a
  // message if the database cannot be read.
  void submit(Query query, std::function<void(std::string)> failed);
  // As Writer::set_payload_keys, for queries not yet started.
  void set_payload_keys(std::shared_ptr<const KeyRing> keys);
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace referrald::store
