#include "store/database.hpp"

#include <sqlite3.h>

#include <map>
#include <utility>

#include "store/database_backend.hpp"
#include "util/crypto.hpp"

namespace referrald::store {

namespace detail {

std::string describe_sql(std::string_view sql) {
  constexpr std::size_t max_chars = 96;
  std::string out;
  bool pending_space = false;
  for (char c : sql) {
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out += ' ';
    pending_space = false;
    out += c;
    if (out.size() >= max_chars) {
      out += "...";
      break;
    }
  }
  return out;
}

std::string error_text(std::string_view engine, std::string_view operation, std::string_view sql,
                       std::string_view message) {
  std::string what(engine);
  what += ' ';
  what += operation;
  if (!sql.empty()) {
    what += " [";
    what += describe_sql(sql);
    what += "]";
  }
  what += ": ";
  what += message;
  return what;
}

}  // namespace detail

// ---- DatabaseError ----

bool DatabaseError::is_unavailable() const noexcept {
  switch (code_ & 0xff) {
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_READONLY:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_CANTOPEN:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_PERM:
    // Not the write's fault either: out of memory, and a WAL lock protocol
    // failure that SQLite reports when it cannot get a consistent snapshot.
    case SQLITE_NOMEM:
    case SQLITE_PROTOCOL: return true;
    default: return false;
  }
}

const char* DatabaseError::unavailable_reason() const noexcept {
  // PostgreSQL's own words where SQLite has none for the case.
  if (sqlstate_.rfind("08", 0) == 0) return "the database server cannot be reached";
  if (sqlstate_.rfind("28", 0) == 0) return "the database server refused the login";
  if (sqlstate_ == "57P01" || sqlstate_ == "57P02" || sqlstate_ == "57P03") {
    return "the database server is shutting down or starting";
  }
  if (sqlstate_ == "53300") return "the database server has no connection to spare";
  if (code_ == SQLITE_READONLY_DBMOVED) return "the database file was moved, replaced or deleted";
  switch (code_ & 0xff) {
    case SQLITE_FULL: return "the disk is full";
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      // Another process (referralctl, a backup, an sqlite3 shell) holds the
      // write lock for longer than the writer's busy timeout.
      return "the database is locked by another connection";
    case SQLITE_READONLY:
    case SQLITE_PERM: return "the database is read-only";
    case SQLITE_IOERR: return "an I/O error on the database";
    case SQLITE_CANTOPEN: return "the database cannot be opened";
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return "the database file is damaged";
    case SQLITE_NOMEM: return "out of memory";
    default: return "the last commit failed";
  }
}

bool DatabaseError::is_constraint() const noexcept { return (code_ & 0xff) == SQLITE_CONSTRAINT; }

bool DatabaseError::is_locked() const noexcept {
  return (code_ & 0xff) == SQLITE_BUSY || (code_ & 0xff) == SQLITE_LOCKED;
}

bool DatabaseError::is_read_only() const noexcept { return (code_ & 0xff) == SQLITE_READONLY; }

bool DatabaseError::is_cannot_open() const noexcept { return (code_ & 0xff) == SQLITE_CANTOPEN; }

DatabaseError DatabaseError::cannot_open(const std::string& what) { return DatabaseError(SQLITE_CANTOPEN, what); }

// ---- Statement ----

Statement::Statement(std::unique_ptr<detail::StatementBackend> backend) : backend_(std::move(backend)) {}

Statement::~Statement() = default;

Statement::Statement(Statement&& other) noexcept = default;

Statement& Statement::bind(int index, std::int64_t v) {
  backend_->bind_int(index, v);
  return *this;
}

Statement& Statement::bind(int index, std::string_view v) {
  backend_->bind_text(index, v);
  return *this;
}

Statement& Statement::bind_blob(int index, std::string_view v) {
  backend_->bind_blob(index, v);
  return *this;
}

Statement& Statement::bind_zeroblob(int index, std::size_t size) {
  backend_->bind_zeroblob(index, size);
  return *this;
}

void detail::StatementBackend::bind_zeroblob(int /*index*/, std::size_t /*size*/) {
  throw std::logic_error("bind_zeroblob: this database engine has no incremental BLOBs");
}

std::unique_ptr<Blob> detail::Connection::open_blob(std::string_view /*table*/, std::string_view /*column*/,
                                                    std::int64_t /*rowid*/, bool /*write*/) {
  throw std::logic_error("open_blob: this database engine has no incremental BLOBs");
}

Statement& Statement::bind_null(int index) {
  backend_->bind_null(index);
  return *this;
}

Statement& Statement::bind(int index, const std::optional<std::string>& v) {
  return v ? bind(index, std::string_view(*v)) : bind_null(index);
}

bool Statement::step() { return backend_->step(); }

void Statement::run() {
  while (step()) {
  }
  reset();
}

void Statement::reset() { backend_->reset(); }

std::int64_t Statement::column_int(int i) const { return backend_->column_int(i); }

std::string Statement::column_text(int i) const { return backend_->column_text(i); }

std::string Statement::column_blob(int i) const { return backend_->column_blob(i); }

std::optional<std::string> Statement::column_optional_text(int i) const {
  if (column_is_null(i)) return std::nullopt;
  return column_text(i);
}

bool Statement::column_is_null(int i) const { return backend_->column_is_null(i); }

// ---- Database ----

struct Database::Cache {
  std::map<std::string, Statement, std::less<>> statements;
};

Database::Database(const std::filesystem::path& file, OpenMode mode)
    : dialect_(Dialect::sqlite),
      file_(file),
      name_(file.string()),
      connection_(detail::open_sqlite(file, mode)),
      cache_(std::make_unique<Cache>()) {}

Database::Database(const PostgresTarget& target, OpenMode mode)
    : dialect_(Dialect::postgresql),
      name_(detail::describe_postgres(target)),
      connection_(detail::open_postgresql(target, mode)),
      cache_(std::make_unique<Cache>()) {}

Database::~Database() {
  cache_.reset();  // finalize cached statements before closing
  connection_.reset();
}

void Database::set_busy_timeout(std::chrono::milliseconds wait) { connection_->set_busy_timeout(wait); }

void Database::exec(std::string_view sql) { connection_->exec(sql); }

Statement Database::prepare(std::string_view sql) { return Statement(connection_->prepare(sql)); }

Statement& Database::cached(std::string_view sql) {
  auto it = cache_->statements.find(sql);
  if (it == cache_->statements.end()) {
    it = cache_->statements.emplace(std::string(sql), prepare(sql)).first;
  }
  // A previous user may have stopped stepping early or thrown mid-way.
  it->second.reset();
  return it->second;
}

std::int64_t Database::last_insert_rowid() const { return connection_->last_insert_rowid(); }

int Database::changes() const { return connection_->changes(); }

std::int64_t Database::data_version() { return connection_->data_version(); }

bool Database::in_transaction() const { return connection_->in_transaction(); }

void Database::reset_busy_statements() { connection_->reset_busy_statements(); }

void Database::begin_read() {
  due_noted_ = false;
  connection_->begin_read();
}

void Database::begin_write() {
  due_noted_ = false;
  connection_->begin_write();
}

void Database::commit() {
  if (due_noted_ && dialect_ == Dialect::postgresql) {
    // Sent at COMMIT, and only if it commits; repeats within one
    // transaction would be folded into one by the server anyway.
    cached("SELECT pg_notify('" + std::string(due_channel) + "', ?1)").bind(1, std::string_view(due_token())).run();
  }
  due_noted_ = false;
  cached("COMMIT").run();
}

sqlite3* Database::handle() const noexcept { return connection_->sqlite_handle(); }

void Database::on_wal_commit(std::function<void(int pages)> grown) { connection_->on_wal_commit(std::move(grown)); }

CheckpointResult Database::checkpoint() { return connection_->checkpoint(); }

std::unique_ptr<Blob> Database::open_blob(std::string_view table, std::string_view column, std::int64_t rowid,
                                          bool write) {
  return connection_->open_blob(table, column, rowid, write);
}

const std::string& due_token() {
  static const std::string token = [] {
    const auto bytes = random_bytes(8);
    return to_hex(bytes.data(), bytes.size());
  }();
  return token;
}

std::unique_ptr<Database> open_database(const StorageTarget& target, OpenMode mode) {
  if (target.backend == Dialect::postgresql) return std::make_unique<Database>(target.postgres, mode);
  return std::make_unique<Database>(target.file, mode);
}

std::string describe(const StorageTarget& target) {
  if (target.backend == Dialect::postgresql) return detail::describe_postgres(target.postgres);
  return target.file.string();
}

ReadTransaction::ReadTransaction(Database& db) : db_(db) { db_.begin_read(); }

ReadTransaction::~ReadTransaction() {
  try {
    db_.exec("COMMIT");
  } catch (...) {
    // Read-only: nothing to lose.
  }
}

WriteTransaction::WriteTransaction(Database& db) : db_(db) { db_.begin_write(); }

WriteTransaction::~WriteTransaction() {
  if (done_) return;
  try {
    db_.exec("ROLLBACK");
  } catch (...) {
    // SQLite may have rolled back already (an I/O error, say): the error
    // that ended the transaction is the one worth reporting.
  }
}

void WriteTransaction::commit() {
  db_.commit();
  done_ = true;
}

}  // namespace referrald::store
