// Store-internal: what a backend's connection implements behind Database
// (database_sqlite.cpp, database_postgresql.cpp). Not part of the store's
// interface.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "store/database.hpp"

namespace referrald::store::detail {

class Connection {
 public:
  virtual ~Connection() = default;
  virtual void exec(std::string_view sql) = 0;
  virtual std::unique_ptr<StatementBackend> prepare(std::string_view sql) = 0;
  virtual void set_busy_timeout(std::chrono::milliseconds wait) = 0;
  virtual std::int64_t last_insert_rowid() const = 0;
  virtual int changes() const = 0;
  virtual std::int64_t data_version() = 0;
  virtual bool in_transaction() const = 0;
  virtual void reset_busy_statements() = 0;
  virtual void begin_read() = 0;
  virtual void begin_write() = 0;
  virtual sqlite3* sqlite_handle() const noexcept { return nullptr; }
  // Database::open_blob: SQLite's; the other engines have none (throws
  // std::logic_error).
  virtual std::unique_ptr<Blob> open_blob(std::string_view table, std::string_view column, std::int64_t rowid,
                                          bool write);
  // SQLite's write-ahead log (Database::on_wal_commit, checkpoint); the
  // other engines have nothing to do.
  virtual void on_wal_commit(std::function<void(int pages)> /*grown*/) {}
  virtual CheckpointResult checkpoint() { return {}; }
};

std::unique_ptr<Connection> open_sqlite(const std::filesystem::path& file, OpenMode mode);
std::unique_ptr<Connection> open_postgresql(const PostgresTarget& target, OpenMode mode);

// One readable line naming the statement, for error messages. SQL text never
// holds values (they are always bound), so this carries no PHI.
std::string describe_sql(std::string_view sql);
// "ENGINE OPERATION [statement]: message", the text of a DatabaseError.
std::string error_text(std::string_view engine, std::string_view operation, std::string_view sql,
                       std::string_view message);

// The server and database a PostgreSQL URI names, for messages: never its
// password.
std::string describe_postgres(const PostgresTarget& target);

// libpq's keywords and values for connecting to `target` (both
// null-terminated, as PQconnectdbParams takes them); valid while it lives.
class ConnectParams {
 public:
  explicit ConnectParams(const PostgresTarget& target);
  ConnectParams(const ConnectParams&) = delete;
  ConnectParams& operator=(const ConnectParams&) = delete;
  std::vector<const char*> keys;
  std::vector<const char*> values;

 private:
  std::string timeout_;
};

// libpq's message about a connection that failed to open or broke: the
// reason of every host it tried, joined on one line (never the hints
// after them, nor the password).
std::string libpq_connection_message(const char* message);

}  // namespace referrald::store::detail
