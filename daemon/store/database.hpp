// A thin RAII layer over one SQLite connection: prepared statements with
// typed binds, and errors as exceptions that keep SQLite's code.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "util/key_ring.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace referrald::store {

class DatabaseError : public std::runtime_error {
 public:
  DatabaseError(int code, const std::string& what) : std::runtime_error(what), code_(code) {}
  int code() const noexcept { return code_; }  // extended SQLite result code
  // Disk full, I/O error, read-only, locked/busy, cannot open: the store is
  // unavailable (503) rather than the write being bad.
  bool is_unavailable() const noexcept;
  bool is_constraint() const noexcept;
  bool is_locked() const noexcept;       // busy or locked: another connection held the lock too long
  bool is_read_only() const noexcept;    // no write access to the file (or to its directory)
  bool is_cannot_open() const noexcept;  // no such file, or no access to it
  // The error for a database file that is not there to open.
  static DatabaseError cannot_open(const std::string& what);
  // Why the store is unavailable, for /healthz and operators: a short phrase
  // ("the disk is full", "the database is locked by another connection" ...)
  // that names neither a statement nor data.
  const char* unavailable_reason() const noexcept;

 private:
  int code_;
};

class Statement {
 public:
  Statement(sqlite3* db, std::string_view sql);
  ~Statement();
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&&) = delete;
  Statement(const Statement&) = delete;

  Statement& bind(int index, std::int64_t v);
  Statement& bind(int index, std::string_view v);  // TEXT, copied
  Statement& bind_blob(int index, std::string_view v);
  Statement& bind_null(int index);
  Statement& bind(int index, const std::optional<std::string>& v);

  bool step();   // true while a row is available; throws DatabaseError
  void run();    // step to completion, then reset
  void reset();  // reset and clear bindings

  std::int64_t column_int(int i) const;
  std::string column_text(int i) const;
  std::string column_blob(int i) const;  // the bytes as stored, NULs and all
  std::optional<std::string> column_optional_text(int i) const;
  bool column_is_null(int i) const;

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

enum class OpenMode { read_write_create, read_write, read_only };

class Database {
 public:
  // Opens with WAL, synchronous=FULL, foreign keys on and a busy timeout;
  // creates the file 0600. Throws DatabaseError.
  Database(const std::filesystem::path& file, OpenMode mode);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  void exec(std::string_view sql);
  Statement prepare(std::string_view sql);
  // How long a statement waits for another connection's lock before it
  // fails with SQLITE_BUSY.
  void set_busy_timeout(std::chrono::milliseconds wait);
  // A statement prepared once and cached by its SQL text.
  Statement& cached(std::string_view sql);
  std::int64_t last_insert_rowid() const;
  int changes() const;
  std::int64_t data_version();  // PRAGMA data_version: changes by other connections
  sqlite3* handle() const noexcept { return db_; }
  const std::filesystem::path& file() const noexcept { return file_; }

  // The keys referral documents are sealed and opened with on this
  // connection (store/payload.hpp); none: new documents are stored in the
  // clear. The writer and the readers set them before each job, so a reload
  // reaches every connection.
  void set_payload_keys(std::shared_ptr<const KeyRing> keys) noexcept { payload_keys_ = std::move(keys); }
  const KeyRing* payload_keys() const noexcept { return payload_keys_.get(); }

 private:
  struct Cache;
  std::filesystem::path file_;
  std::shared_ptr<const KeyRing> payload_keys_;
  sqlite3* db_ = nullptr;
  std::unique_ptr<Cache> cache_;
};

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

// Takes the write lock up front (BEGIN IMMEDIATE, waiting the busy timeout
// for it), so what was read inside is what is changed. Rolled back at the end
// of its scope unless commit() was called.
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
