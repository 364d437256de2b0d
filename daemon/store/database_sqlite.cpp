// The SQLite backend: one connection to a database file.
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "store/database_backend.hpp"
#include "store/sqlite_vfs.hpp"
#include "util/private_dirs.hpp"

namespace referrald::store::detail {

namespace {

// Readers and referralctl wait this long for a lock before giving up; the
// writer sets its own, shorter value (see writer.cpp).
constexpr int default_busy_timeout_ms = 5000;

[[noreturn]] void throw_error(int code, std::string_view operation, std::string_view sql, const char* sqlite_message) {
  throw DatabaseError(
      code, error_text("sqlite", operation, sql, sqlite_message != nullptr ? sqlite_message : "unknown error"));
}

// The database holds PHI: create it 0600 ourselves rather than letting
// SQLite create it under whatever umask the process has. fchmod makes the
// mode exact even under a restrictive or odd umask.
void create_private_file(const std::filesystem::path& file) {
  int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, S_IRUSR | S_IWUSR);
  if (fd < 0) {
    if (errno == EEXIST) return;  // an existing database keeps the mode its operator gave it
    const int err = errno;
    throw DatabaseError(SQLITE_CANTOPEN, "cannot create database file " + file.string() + ": " + std::strerror(err));
  }
  const int rc = ::fchmod(fd, S_IRUSR | S_IWUSR);
  const int err = errno;
  ::close(fd);
  if (rc != 0) {
    throw DatabaseError(SQLITE_CANTOPEN, "cannot set mode 0600 on " + file.string() + ": " + std::strerror(err));
  }
}

void require_existing(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) {
    throw DatabaseError(SQLITE_CANTOPEN,
                        "database file " + file.string() + " does not exist (start referrald once to create it)");
  }
}

// SQLite gives -wal and -shm the mode of the database file; make sure of it,
// so the write-ahead log (which holds PHI too) is never more readable than
// the database itself.
void restrict_sidecars(const std::filesystem::path& file) {
  struct stat db_stat {};
  if (::stat(file.c_str(), &db_stat) != 0) return;
  const mode_t allowed = db_stat.st_mode & 0777;
  for (const char* suffix : {"-wal", "-shm"}) {
    const std::string side = file.string() + suffix;
    struct stat side_stat {};
    if (::stat(side.c_str(), &side_stat) != 0) continue;  // not created (yet)
    if ((side_stat.st_mode & 0777 & ~allowed) == 0) continue;
    if (::chmod(side.c_str(), allowed) != 0) {
      const int err = errno;
      throw DatabaseError(SQLITE_PERM, "cannot restrict the mode of " + side + ": " + std::strerror(err));
    }
  }
}

void touch(sqlite3* db, const std::filesystem::path& file) {
  if (sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr) != SQLITE_OK) {
    throw DatabaseError(sqlite3_extended_errcode(db), "sqlite open " + file.string() + ": " + sqlite3_errmsg(db));
  }
}

void check_bind(sqlite3* db, sqlite3_stmt* stmt, int rc) {
  if (rc != SQLITE_OK) throw_error(rc, "bind", sqlite3_sql(stmt), sqlite3_errmsg(db));
}

// SQLite binds NULL for a null pointer, so an empty string_view (whose data()
// may be null) is bound through a pointer to an empty literal instead.
const char* non_null(std::string_view v) { return v.data() != nullptr ? v.data() : ""; }

class SqliteStatement final : public StatementBackend {
 public:
  SqliteStatement(sqlite3* db, std::string_view sql) : db_(db) {
    const char* tail = nullptr;
    const int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt_, &tail);
    if (rc != SQLITE_OK) {
      sqlite3_finalize(stmt_);
      throw_error(rc, "prepare", sql, sqlite3_errmsg(db_));
    }
    if (stmt_ == nullptr) throw DatabaseError(SQLITE_MISUSE, "sqlite prepare: empty statement");
    // One statement per Statement: text after the first would silently never run.
    for (const char* p = tail; p != nullptr && p < sql.data() + sql.size(); ++p) {
      if (*p != ' ' && *p != '\n' && *p != '\t' && *p != '\r' && *p != ';') {
        sqlite3_finalize(stmt_);
        throw DatabaseError(SQLITE_MISUSE, "sqlite prepare [" + describe_sql(sql) + "]: more than one statement");
      }
    }
  }
  ~SqliteStatement() override { sqlite3_finalize(stmt_); }
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;

  void bind_int(int index, std::int64_t v) override { check_bind(db_, stmt_, sqlite3_bind_int64(stmt_, index, v)); }
  void bind_text(int index, std::string_view v) override {
    check_bind(db_, stmt_, sqlite3_bind_text64(stmt_, index, non_null(v), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
  }
  void bind_blob(int index, std::string_view v) override {
    check_bind(db_, stmt_, sqlite3_bind_blob64(stmt_, index, non_null(v), v.size(), SQLITE_TRANSIENT));
  }
  void bind_null(int index) override { check_bind(db_, stmt_, sqlite3_bind_null(stmt_, index)); }
  void bind_zeroblob(int index, std::size_t size) override {
    check_bind(db_, stmt_, sqlite3_bind_zeroblob64(stmt_, index, size));
  }

  bool step() override {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) {
      // Reset at once (keeping the bindings) so a finished statement never
      // holds a read snapshot open on its connection.
      sqlite3_reset(stmt_);
      return false;
    }
    const std::string message = sqlite3_errmsg(db_);
    const std::string sql = sqlite3_sql(stmt_) != nullptr ? sqlite3_sql(stmt_) : "";
    sqlite3_reset(stmt_);
    throw_error(rc, "step", sql, message.c_str());
  }

  void reset() override {
    sqlite3_reset(stmt_);  // returns the last step's error, already reported by step()
    sqlite3_clear_bindings(stmt_);
  }

  std::int64_t column_int(int i) const override { return sqlite3_column_int64(stmt_, i); }

  std::string column_blob(int i) const override {
    const void* data = sqlite3_column_blob(stmt_, i);
    const int bytes = sqlite3_column_bytes(stmt_, i);
    if (data == nullptr) return {};
    return std::string(static_cast<const char*>(data), static_cast<std::size_t>(bytes));
  }

  std::string column_text(int i) const override {
    // column_text before column_bytes, as SQLite documents, so the length is
    // that of the returned representation.
    const unsigned char* text = sqlite3_column_text(stmt_, i);
    const int bytes = sqlite3_column_bytes(stmt_, i);
    if (text == nullptr) return {};
    return std::string(reinterpret_cast<const char*>(text), static_cast<std::size_t>(bytes));
  }

  bool column_is_null(int i) const override { return sqlite3_column_type(stmt_, i) == SQLITE_NULL; }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

class SqliteBlob final : public Blob {
 public:
  SqliteBlob(sqlite3* db, std::string_view table, std::string_view column, std::int64_t rowid, bool write) : db_(db) {
    const std::string t(table), c(column);
    const int rc = sqlite3_blob_open(db_, "main", t.c_str(), c.c_str(), rowid, write ? 1 : 0, &blob_);
    if (rc != SQLITE_OK) {
      const std::string message = sqlite3_errmsg(db_);
      sqlite3_blob_close(blob_);
      throw_error(rc, "blob open", t + "." + c, message.c_str());
    }
  }
  ~SqliteBlob() override { sqlite3_blob_close(blob_); }
  SqliteBlob(const SqliteBlob&) = delete;
  SqliteBlob& operator=(const SqliteBlob&) = delete;

  std::size_t size() const override { return static_cast<std::size_t>(sqlite3_blob_bytes(blob_)); }
  void read(std::size_t offset, char* out, std::size_t n) override {
    const int rc = sqlite3_blob_read(blob_, out, static_cast<int>(n), static_cast<int>(offset));
    if (rc != SQLITE_OK) throw_error(rc, "blob read", "", sqlite3_errmsg(db_));
  }
  void write(std::size_t offset, std::string_view bytes) override {
    const int rc = sqlite3_blob_write(blob_, non_null(bytes), static_cast<int>(bytes.size()), static_cast<int>(offset));
    if (rc != SQLITE_OK) throw_error(rc, "blob write", "", sqlite3_errmsg(db_));
  }

 private:
  sqlite3* db_;
  sqlite3_blob* blob_ = nullptr;
};

class SqliteConnection final : public Connection {
 public:
  SqliteConnection(const std::filesystem::path& file, OpenMode mode) {
    // One connection per thread: SQLite's own connection mutex is not needed.
    int flags = SQLITE_OPEN_NOMUTEX;
#ifdef SQLITE_OPEN_EXRESCODE
    flags |= SQLITE_OPEN_EXRESCODE;
#endif
    switch (mode) {
      case OpenMode::read_write_create:
        // The configuration allows a database whose directory does not exist yet.
        if (file.has_parent_path()) create_private_directories(file.parent_path());
        create_private_file(file);
        flags |= SQLITE_OPEN_READWRITE;  // no CREATE: the file exists now, with our mode
        break;
      case OpenMode::read_write:
        require_existing(file);
        flags |= SQLITE_OPEN_READWRITE;
        break;
      case OpenMode::read_only:
        require_existing(file);
        flags |= SQLITE_OPEN_READONLY;
        break;
    }

    const int rc = sqlite3_open_v2(file.c_str(), &db_, flags, sqlite_vfs_name());
    if (rc != SQLITE_OK) {
      const std::string message = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
      sqlite3_close_v2(db_);
      db_ = nullptr;
      throw DatabaseError(rc, "sqlite open " + file.string() + ": " + message);
    }

    try {
      sqlite3_extended_result_codes(db_, 1);
      sqlite3_busy_timeout(db_, default_busy_timeout_ms);
      // SQLite falls back to read-only when it cannot open for writing; say so
      // now rather than fail later with a vaguer message.
      if (mode != OpenMode::read_only && sqlite3_db_readonly(db_, "main") == 1) {
        throw DatabaseError(SQLITE_READONLY, "sqlite open " + file.string() +
                                                 ": the database is read-only (file permissions or a "
                                                 "read-only filesystem)");
      }
      // Read once at once: a file that is not a database fails here, with its
      // name, rather than at the first query.
      touch(db_, file);
      if (mode != OpenMode::read_only) {
        SqliteStatement journal(db_, "PRAGMA journal_mode=WAL");
        const std::string result = journal.step() ? journal.column_text(0) : std::string();
        if (result != "wal") {
          throw DatabaseError(
              SQLITE_CANTOPEN,
              "sqlite open " + file.string() + ": cannot use write-ahead logging (journal_mode is \"" + result + "\")");
        }
      }
      // synchronous=FULL: a commit is fsynced before it returns, which is what
      // lets a 202 promise that the referral is on disk.
      exec("PRAGMA synchronous=FULL");
      exec("PRAGMA foreign_keys=ON");
      // Statement journals in memory: each writer job runs in a savepoint,
      // which keeps the original of every page the job changes so that the
      // job alone can be undone. On disk (SQLite spills them past 64 kB)
      // they were most of the writer's system calls, more than the WAL's
      // (bench/README.md, "Intake"). A released savepoint's journal is
      // dropped, so this holds one job's pages at a time.
      exec("PRAGMA temp_store=MEMORY");
      // Reading in WAL mode makes the -wal and -shm files exist (SQLite
      // creates them even for a read-only connection), so their mode can be
      // checked.
      touch(db_, file);
      restrict_sidecars(file);
    } catch (...) {
      sqlite3_close_v2(db_);
      db_ = nullptr;
      throw;
    }
  }

  ~SqliteConnection() override {
    data_version_.reset();
    sqlite3_close_v2(db_);
  }
  SqliteConnection(const SqliteConnection&) = delete;
  SqliteConnection& operator=(const SqliteConnection&) = delete;

  void exec(std::string_view sql) override {
    const std::string text(sql);
    const int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) throw_error(rc, "exec", sql, sqlite3_errmsg(db_));
  }

  std::unique_ptr<StatementBackend> prepare(std::string_view sql) override {
    return std::make_unique<SqliteStatement>(db_, sql);
  }

  void set_busy_timeout(std::chrono::milliseconds wait) override {
    sqlite3_busy_timeout(db_, static_cast<int>(wait.count()));
  }

  std::int64_t last_insert_rowid() const override { return sqlite3_last_insert_rowid(db_); }
  int changes() const override { return sqlite3_changes(db_); }

  std::int64_t data_version() override {
    if (!data_version_) data_version_ = std::make_unique<SqliteStatement>(db_, "PRAGMA data_version");
    data_version_->step();
    const std::int64_t v = data_version_->column_int(0);
    data_version_->reset();
    return v;
  }

  bool in_transaction() const override { return sqlite3_get_autocommit(db_) == 0; }

  void reset_busy_statements() override {
    for (sqlite3_stmt* st = sqlite3_next_stmt(db_, nullptr); st != nullptr; st = sqlite3_next_stmt(db_, st)) {
      if (sqlite3_stmt_busy(st) != 0) sqlite3_reset(st);
    }
  }

  void begin_read() override { exec("BEGIN"); }
  void begin_write() override { exec("BEGIN IMMEDIATE"); }
  sqlite3* sqlite_handle() const noexcept override { return db_; }
  std::unique_ptr<Blob> open_blob(std::string_view table, std::string_view column, std::int64_t rowid,
                                  bool write) override {
    return std::make_unique<SqliteBlob>(db_, table, column, rowid, write);
  }

  void on_wal_commit(std::function<void(int pages)> grown) override {
    wal_grown_ = std::move(grown);
    // Replaces SQLite's own hook, the one that checkpoints at 1000 pages.
    sqlite3_wal_hook(
        db_,
        [](void* self, sqlite3*, const char*, int pages) {
          try {
            static_cast<SqliteConnection*>(self)->wal_grown_(pages);
          } catch (...) {
            // Whatever it does, the commit has happened: an error returned
            // here would make SQLite report it as failed.
          }
          return SQLITE_OK;
        },
        this);
  }

  CheckpointResult checkpoint() override {
    CheckpointResult result;
    const int rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, &result.log, &result.written);
    if (rc != SQLITE_OK) throw_error(rc, "checkpoint", "", sqlite3_errmsg(db_));
    return result;
  }

 private:
  sqlite3* db_ = nullptr;
  std::function<void(int pages)> wal_grown_;
  std::unique_ptr<SqliteStatement> data_version_;
};

}  // namespace

std::unique_ptr<Connection> open_sqlite(const std::filesystem::path& file, OpenMode mode) {
  return std::make_unique<SqliteConnection>(file, mode);
}

}  // namespace referrald::store::detail
