// The store's one way to a database: a connection with prepared statements,
// typed binds and errors as exceptions, over SQLite (a file, embedded) or
// PostgreSQL (a server, through libpq). Store code is written once against
// this; where the engines differ in SQL it asks dialect(). docs/storage.md
// describes the seam.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "util/key_ring.hpp"

struct sqlite3;

namespace referrald::store {

enum class Dialect { sqlite, postgresql };

class DatabaseError : public std::runtime_error {
 public:
  // `code` is an extended SQLite result code. PostgreSQL's errors are mapped
  // onto the nearest one by their SQLSTATE (kept in sqlstate()), so every
  // caller classifies both backends' errors the same way.
  DatabaseError(int code, const std::string& what, std::string sqlstate = {})
      : std::runtime_error(what), code_(code), sqlstate_(std::move(sqlstate)) {}
  int code() const noexcept { return code_; }
  const std::string& sqlstate() const noexcept { return sqlstate_; }  // PostgreSQL only; empty otherwise
  // Disk full, I/O error, read-only, locked/busy, cannot open, connection
  // lost: the store is unavailable (503) rather than the write being bad.
  bool is_unavailable() const noexcept;
  bool is_constraint() const noexcept;
  bool is_locked() const noexcept;       // busy or locked: another connection held the lock too long
  bool is_read_only() const noexcept;    // no write access to the file (or to its directory), or a standby server
  bool is_cannot_open() const noexcept;  // no such file, or no access to it; a server that cannot be reached
  // The error for a database file that is not there to open.
  static DatabaseError cannot_open(const std::string& what);
  // Why the store is unavailable, for /healthz and operators: a short phrase
  // ("the disk is full", "the database is locked by another connection" ...)
  // that names neither a statement nor data.
  const char* unavailable_reason() const noexcept;

 private:
  int code_;
  std::string sqlstate_;
};

namespace detail {
// What each backend implements (database_sqlite.cpp, database_postgresql.cpp).
class StatementBackend {
 public:
  virtual ~StatementBackend() = default;
  virtual void bind_int(int index, std::int64_t v) = 0;
  virtual void bind_text(int index, std::string_view v) = 0;
  virtual void bind_blob(int index, std::string_view v) = 0;
  virtual void bind_null(int index) = 0;
  // SQLite only (Database::incremental_blobs).
  virtual void bind_zeroblob(int index, std::size_t size);
  virtual bool step() = 0;
  virtual void reset() = 0;  // and clear the bindings
  virtual std::int64_t column_int(int i) const = 0;
  virtual std::string column_text(int i) const = 0;
  virtual std::string column_blob(int i) const = 0;
  virtual bool column_is_null(int i) const = 0;
};
class Connection;
}  // namespace detail

// One BLOB value read or written in place a block at a time (SQLite's
// incremental BLOB I/O), so that a value of megabytes (an attachment's file)
// is never whole in memory: Database::open_blob.
class Blob {
 public:
  virtual ~Blob() = default;
  virtual std::size_t size() const = 0;
  // Exactly `n` bytes from `offset` into `out`; throws DatabaseError.
  virtual void read(std::size_t offset, char* out, std::size_t n) = 0;
  // Over the value's bytes from `offset` (its size does not change: an
  // INSERT made it with bind_zeroblob); throws DatabaseError.
  virtual void write(std::size_t offset, std::string_view bytes) = 0;
};

class Statement {
 public:
  explicit Statement(std::unique_ptr<detail::StatementBackend> backend);
  ~Statement();
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&&) = delete;
  Statement(const Statement&) = delete;

  // Parameters are written ?1, ?2 ... in the SQL on every backend.
  Statement& bind(int index, std::int64_t v);
  Statement& bind(int index, std::string_view v);  // TEXT, copied
  Statement& bind_blob(int index, std::string_view v);
  Statement& bind_null(int index);
  Statement& bind(int index, const std::optional<std::string>& v);
  // A BLOB of `size` zero bytes, to be written in place (Database::open_blob);
  // SQLite only.
  Statement& bind_zeroblob(int index, std::size_t size);

  bool step();   // true while a row is available; throws DatabaseError
  void run();    // step to completion, then reset
  void reset();  // reset and clear bindings

  std::int64_t column_int(int i) const;  // a boolean is 0 or 1
  std::string column_text(int i) const;
  std::string column_blob(int i) const;  // the bytes as stored, NULs and all
  std::optional<std::string> column_optional_text(int i) const;
  bool column_is_null(int i) const;

 private:
  std::unique_ptr<detail::StatementBackend> backend_;
};

enum class OpenMode { read_write_create, read_write, read_only };

// Where a PostgreSQL store is: a libpq connection URI (postgresql://...,
// sslmode and the rest are libpq's) and the password, read from its file
// by the caller, if the URI does not carry one.
struct PostgresTarget {
  std::string url;
  std::optional<std::string> password;
  std::chrono::seconds connect_timeout{10};  // unless the URI sets connect_timeout
};

// Which store the configuration names.
struct StorageTarget {
  Dialect backend = Dialect::sqlite;
  std::filesystem::path file;  // sqlite
  PostgresTarget postgres;     // postgresql
};

// What a checkpoint found: frames in the write-ahead log, and how many of
// them are now written back into the database file.
struct CheckpointResult {
  int log = 0;
  int written = 0;
};

class Database {
 public:
  // SQLite: opens with WAL, synchronous=FULL, foreign keys on and a busy
  // timeout; creates the file 0600. Throws DatabaseError.
  Database(const std::filesystem::path& file, OpenMode mode);
  // PostgreSQL: connects, with synchronous_commit on; read_only makes every
  // transaction read-only. The modes that create or require a file mean
  // nothing here: the database must exist (its schema need not).
  Database(const PostgresTarget& target, OpenMode mode);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  Dialect dialect() const noexcept { return dialect_; }

  // One or more statements without parameters or results (migrations).
  void exec(std::string_view sql);
  Statement prepare(std::string_view sql);
  // How long a statement waits for another connection's lock before it
  // fails with SQLITE_BUSY (PostgreSQL: lock_timeout, 55P03, mapped to it).
  void set_busy_timeout(std::chrono::milliseconds wait);
  // A statement prepared once and cached by its SQL text.
  Statement& cached(std::string_view sql);
  // SQLite only: the rowid of the last insert. Portable code uses RETURNING.
  std::int64_t last_insert_rowid() const;
  // Rows changed by the last INSERT, UPDATE or DELETE (not by its triggers).
  int changes() const;
  // SQLite only: PRAGMA data_version, which changes when another
  // connection commits. PostgreSQL has no such counter (throws).
  std::int64_t data_version();
  bool in_transaction() const;
  // Resets every statement still mid-step (a job or query that threw while
  // iterating): such statements can make ROLLBACK TO fail and would keep a
  // read snapshot pinned.
  void reset_busy_statements();
  // Starts the transactions ReadTransaction and WriteTransaction hold (and
  // the writer's batches): one snapshot for reading; the write lock taken
  // up front (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction-scoped
  // advisory lock every writer of the database takes first).
  void begin_read();
  void begin_write();
  // Commits the transaction begin_* started. On PostgreSQL, if note_due()
  // was called in it, a notification on due_channel goes with the commit
  // (delivered to listeners only if the commit succeeds).
  void commit();
  // Something became due now (a delivery planned or made due again): the
  // commit tells idle dispatchers of every instance (PostgreSQL; SQLite has
  // one daemon, woken by its writer). Costs nothing until the commit.
  void note_due() noexcept { due_noted_ = true; }

  // SQLite: after each commit, `grown` is called with the length of the
  // write-ahead log in pages, on the committing thread, and this connection
  // no longer copies the log into the database file (checkpoints) by itself
  // at 1000 pages; checkpoint() does, without waiting for readers or
  // writers (PASSIVE), and says how far it got. The writer uses them to
  // checkpoint mostly on a thread of its own (store/writer.cpp). Neither
  // does anything on PostgreSQL.
  void on_wal_commit(std::function<void(int pages)> grown);
  CheckpointResult checkpoint();

  // Whether a BLOB can be written and read a block at a time, in place:
  // SQLite (sqlite3_blob_*). PostgreSQL's libpq sends a bytea parameter and
  // returns a bytea column whole, so there a large value is bound and read
  // whole.
  bool incremental_blobs() const noexcept { return dialect_ == Dialect::sqlite; }
  // SQLite only: column `column` of the row `rowid` of `table`, opened in
  // place for reading, or for writing too (inside the caller's
  // transaction). Throws DatabaseError (std::logic_error on PostgreSQL).
  std::unique_ptr<Blob> open_blob(std::string_view table, std::string_view column, std::int64_t rowid, bool write);

  // SQLite only (tests trace statements with it): the connection; null on
  // PostgreSQL. Store code asks the methods above instead.
  sqlite3* handle() const noexcept;

  // SQLite: the file. PostgreSQL: empty.
  const std::filesystem::path& file() const noexcept { return file_; }
  // The database for messages: the file, or the server and database name
  // (never the password).
  const std::string& name() const noexcept { return name_; }

  // The keys referral documents are sealed and opened with on this
  // connection (store/payload.hpp); none: new documents are stored in the
  // clear. The writer and the readers set them before each job, so a reload
  // reaches every connection.
  void set_payload_keys(std::shared_ptr<const KeyRing> keys) noexcept { payload_keys_ = std::move(keys); }
  const KeyRing* payload_keys() const noexcept { return payload_keys_.get(); }

 private:
  struct Cache;
  Dialect dialect_;
  std::filesystem::path file_;
  std::string name_;
  std::shared_ptr<const KeyRing> payload_keys_;
  std::unique_ptr<detail::Connection> connection_;
  std::unique_ptr<Cache> cache_;
  bool due_noted_ = false;
};

// The PostgreSQL notification channel a commit that made deliveries due
// notifies (Database::note_due); store::DueListener listens on it.
inline constexpr std::string_view due_channel = "referrald_due";
// The payload of this process's notifications on due_channel: random, made
// once per process. A daemon's listener ignores its own (its dispatcher was
// woken already by the code that committed) and wakes for other instances'
// and referralctl's.
const std::string& due_token();

// Opens the store the configuration names.
std::unique_ptr<Database> open_database(const StorageTarget& target, OpenMode mode);
// The store for messages and logs: the file, or the server and database
// name (never a password).
std::string describe(const StorageTarget& target);

// One snapshot for everything read inside it (BEGIN ... COMMIT at the end
// of its scope): a reading command shows one consistent state.
class ReadTransaction {
 public:
  explicit ReadTransaction(Database& db);
  ~ReadTransaction();
  ReadTransaction(const ReadTransaction&) = delete;
  ReadTransaction& operator=(const ReadTransaction&) = delete;

 private:
  Database& db_;
};

// Takes the write lock up front (Database::begin_write, waiting the busy
// timeout for it), so what was read inside is what is changed. Rolled back
// at the end of its scope unless commit() was called.
class WriteTransaction {
 public:
  explicit WriteTransaction(Database& db);
  ~WriteTransaction();
  void commit();
  WriteTransaction(const WriteTransaction&) = delete;
  WriteTransaction& operator=(const WriteTransaction&) = delete;

 private:
  Database& db_;
  bool done_ = false;
};

}  // namespace referrald::store
