// The PostgreSQL backend: one libpq connection. Statements are sent with
// PQexecParams (one round trip each, parsed by the server every time, and
// nothing server-side to lose when a connection is replaced); results come
// back whole, in text format. Errors keep their SQLSTATE and are mapped onto
// the SQLite result code that callers already classify (DatabaseError).
#include <libpq-fe.h>
#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "store/database_backend.hpp"

namespace referrald::store::detail {

namespace {

// The advisory lock every referrald on a database takes first in a write
// transaction, a (class, object) pair so that it cannot collide with another
// application's single keys. It serialises write transactions the way
// SQLite's file lock does; migrations run under it too, so of several
// instances starting together one migrates and the others then find
// nothing left to do.
constexpr int lock_class = 0x52464c44;  // "RFLD"
constexpr int write_lock = 1;

constexpr int default_lock_timeout_ms = 5000;

constexpr Oid bool_oid = 16;
constexpr Oid bytea_oid = 17;
constexpr Oid text_oid = 25;

// The nearest SQLite result code for a SQLSTATE, so DatabaseError's
// predicates (unavailable, constraint, locked, read-only) hold for both.
int sqlite_code_for(std::string_view state) {
  const auto cls = state.substr(0, 2);
  if (cls == "23") return SQLITE_CONSTRAINT;                // integrity constraint violation
  if (cls == "22") return SQLITE_CONSTRAINT_DATATYPE;       // data exception: a bad value, like a STRICT type error
  if (cls == "08") return SQLITE_IOERR;                     // connection exception
  if (cls == "28") return SQLITE_PERM;                      // invalid authorization
  if (state == "53100") return SQLITE_FULL;                 // disk full
  if (state == "53200") return SQLITE_NOMEM;                // out of memory
  if (cls == "53") return SQLITE_BUSY;                      // insufficient resources: too many connections ...
  if (state == "25006") return SQLITE_READONLY;             // read-only transaction: a standby, or read_only mode
  if (state == "55P03" || cls == "40") return SQLITE_BUSY;  // lock not available; serialization failure, deadlock
  if (state == "57014") return SQLITE_BUSY;                 // statement timeout or cancelled
  if (cls == "57") return SQLITE_IOERR;                     // operator intervention: admin or crash shutdown
  if (state == "58030") return SQLITE_IOERR;                // the server's own I/O error
  if (cls == "XX") return SQLITE_CORRUPT;                   // internal error, data corrupted
  if (state == "3D000") return SQLITE_CANTOPEN;             // no such database
  return SQLITE_ERROR;
}

// libpq's message, its first line only: the lines after it (DETAIL, HINT,
// CONTEXT) can quote the values of a failing row.
std::string trimmed(const char* message) {
  std::string out = message != nullptr ? message : "unknown error";
  out = out.substr(0, out.find('\n'));
  while (!out.empty() && out.back() == ' ') out.pop_back();
  for (char& c : out) {
    if (c == '\t') c = ' ';
  }
  return out.empty() ? "unknown error" : out;
}

// libpq's message about a connection (one that failed to open, or broke):
// a line per host it tried (a multi-host url), each perhaps followed by
// indented hints or DETAIL and HINT lines. The hosts' lines are kept and
// joined, so an operator sees every host's reason; libpq never says the
// password.
std::string connection_message(const char* message) {
  std::string out;
  std::string_view rest = message != nullptr ? message : "";
  while (!rest.empty()) {
    const std::size_t end = std::min(rest.find('\n'), rest.size());
    const std::string line(rest.substr(0, end));
    rest.remove_prefix(std::min(end + 1, rest.size()));
    if (line.empty() || line[0] == ' ' || line[0] == '\t' || line.starts_with("DETAIL:") || line.starts_with("HINT:")) {
      continue;
    }
    out += (out.empty() ? "" : "; ") + trimmed(line.c_str());
  }
  return out.empty() ? "unknown error" : out;
}

// A failed command's error. Without a result (the connection is gone) it is
// a connection failure.
[[noreturn]] void throw_result_error(PGconn* conn, const PGresult* res, std::string_view operation,
                                     std::string_view sql) {
  const char* state = res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  std::string sqlstate = state != nullptr ? state : "";
  if (sqlstate.empty()) sqlstate = PQstatus(conn) == CONNECTION_BAD ? "08006" : "XX000";
  // The primary message only: DETAIL can quote the values of a failing row.
  // A data exception's (class 22) primary message quotes the value itself
  // ("invalid input syntax for type bigint: \"...\""), so it is not passed on.
  const char* primary = res != nullptr ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
  const std::string said = sqlstate.starts_with("22")
                               ? std::string("a value was refused by its column's type")
                               : (primary != nullptr ? trimmed(primary) : trimmed(PQerrorMessage(conn)));
  const std::string message = said + " (SQLSTATE " + sqlstate + ")";
  throw DatabaseError(sqlite_code_for(sqlstate), error_text("postgresql", operation, sql, message), sqlstate);
}

using Result = std::unique_ptr<PGresult, decltype(&PQclear)>;

// PostgreSQL answers COMMIT of a transaction that an error aborted with
// "ROLLBACK" and no error; SQLite would have failed the COMMIT. Said as an
// error here, so a rolled-back transaction is never taken for a commit.
void refuse_silent_rollback(const PGresult* res, std::string_view sql) {
  const std::size_t start = sql.find_first_not_of(" \n\t");
  if (start == std::string_view::npos || sql.size() - start < 6) return;
  std::string head(sql.substr(start, 6));
  for (char& c : head) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (head != "COMMIT") return;
  if (std::strcmp(PQcmdStatus(const_cast<PGresult*>(res)), "ROLLBACK") != 0) return;
  throw DatabaseError(
      SQLITE_ABORT, "postgresql [" + describe_sql(sql) + "]: the transaction had failed and was rolled back", "25P02");
}

// SQLite's SQL as PostgreSQL takes it. The store writes one statement for
// both engines where it can (docs/storage.md); this bridges the two
// spellings that cannot be shared:
// - ?N placeholders (and bare ?, numbered as SQLite numbers them: one more
//   than the largest so far) become $N;
// - `INDEXED BY name`, a hint for SQLite's planner that PostgreSQL has no
//   word for, is left out.
// Quoted text and comments are copied as they are.
struct Translated {
  std::string sql;
  std::vector<bool> used;  // per parameter: does the text refer to it
};

Translated translate(std::string_view sql) {
  static constexpr std::string_view hint = "INDEXED BY ";
  Translated out;
  out.sql.reserve(sql.size() + 8);
  const auto is_word = [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  };
  for (std::size_t i = 0; i < sql.size(); ++i) {
    const char c = sql[i];
    if (c == '\'' || c == '"') {
      const std::size_t end = sql.find(c, i + 1);
      const std::size_t stop = end == std::string_view::npos ? sql.size() : end + 1;
      out.sql.append(sql.substr(i, stop - i));
      i = stop - 1;
      continue;
    }
    if (c == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {
      const std::size_t end = sql.find('\n', i);
      const std::size_t stop = end == std::string_view::npos ? sql.size() : end;
      out.sql.append(sql.substr(i, stop - i));
      i = stop - 1;
      continue;
    }
    if (sql.substr(i, hint.size()) == hint && (i == 0 || !is_word(sql[i - 1]))) {
      std::size_t j = i + hint.size();
      while (j < sql.size() && is_word(sql[j])) ++j;
      i = j - 1;
      continue;
    }
    if (c != '?') {
      out.sql += c;
      continue;
    }
    std::size_t j = i + 1;
    std::size_t n = 0;
    while (j < sql.size() && sql[j] >= '0' && sql[j] <= '9' && n <= 32766) {
      n = n * 10 + static_cast<std::size_t>(sql[j++] - '0');
    }
    if (j == i + 1) n = out.used.size() + 1;
    if (n < 1 || n > 32766) {
      throw DatabaseError(SQLITE_RANGE, "postgresql prepare [" + describe_sql(sql) + "]: bad parameter number");
    }
    if (n > out.used.size()) out.used.resize(n, false);
    out.used[n - 1] = true;
    out.sql += '$';
    out.sql += std::to_string(n);
    i = j - 1;
  }
  return out;
}

class PgConnection;

class PgStatement final : public StatementBackend {
 public:
  PgStatement(PgConnection& connection, std::string_view sql);

  void bind_int(int index, std::int64_t v) override { set(index, std::to_string(v), 0); }
  void bind_text(int index, std::string_view v) override { set(index, std::string(v), 0); }
  // Binary format: the bytes as they are, for a bytea parameter. libpq
  // sends a parameter whole, and has no incremental BLOBs to write one in
  // place (large objects are another type, which copies and transfers do
  // not carry): bind_zeroblob and Database::open_blob are SQLite's alone,
  // and an attachment's file is sealed and bound whole here.
  void bind_blob(int index, std::string_view v) override { set(index, std::string(v), 1); }
  void bind_null(int index) override {
    slot(index);
    values_[static_cast<std::size_t>(index - 1)].reset();
  }

  bool step() override;

  void reset() override {
    result_.reset();
    for (auto& v : values_) v.reset();
  }

  std::int64_t column_int(int i) const override {
    if (column_is_null(i)) return 0;
    const char* text = PQgetvalue(result_.get(), row_, i);
    if (PQftype(result_.get(), i) == bool_oid) return text[0] == 't' ? 1 : 0;
    std::int64_t v = 0;
    std::from_chars(text, text + std::strlen(text), v);
    return v;
  }

  std::string column_text(int i) const override {
    if (PQftype(result_.get(), i) == bytea_oid) return column_blob(i);
    return std::string(PQgetvalue(result_.get(), row_, i),
                       static_cast<std::size_t>(PQgetlength(result_.get(), row_, i)));
  }

  std::string column_blob(int i) const override {
    if (column_is_null(i)) return {};
    const char* text = PQgetvalue(result_.get(), row_, i);
    if (PQftype(result_.get(), i) != bytea_oid) {
      return std::string(text, static_cast<std::size_t>(PQgetlength(result_.get(), row_, i)));
    }
    std::size_t length = 0;
    unsigned char* bytes = PQunescapeBytea(reinterpret_cast<const unsigned char*>(text), &length);
    if (bytes == nullptr) throw DatabaseError(SQLITE_NOMEM, "postgresql read: cannot decode a bytea value");
    std::string out(reinterpret_cast<const char*>(bytes), length);
    PQfreemem(bytes);
    return out;
  }

  bool column_is_null(int i) const override { return PQgetisnull(result_.get(), row_, i) != 0; }

 private:
  void slot(int index) {
    if (index < 1 || static_cast<std::size_t>(index) > values_.size()) {
      throw DatabaseError(SQLITE_RANGE,
                          "postgresql bind [" + describe_sql(sql_) + "]: no parameter " + std::to_string(index));
    }
  }
  void set(int index, std::string v, int format) {
    slot(index);
    const auto k = static_cast<std::size_t>(index - 1);
    values_[k] = std::move(v);
    formats_[k] = format;
  }

  PgConnection& connection_;
  std::string sql_;
  std::vector<std::optional<std::string>> values_;  // unbound: NULL, as in SQLite
  std::vector<int> formats_;
  std::vector<Oid> types_;  // 0: the server infers it
  Result result_{nullptr, &PQclear};
  int row_ = -1;
};

class PgConnection final : public Connection {
 public:
  PgConnection(const PostgresTarget& target, OpenMode mode) {
    const ConnectParams params(target);
    conn_ = PQconnectdbParams(params.keys.data(), params.values.data(), 1);
    if (conn_ == nullptr) throw DatabaseError(SQLITE_NOMEM, "postgresql connect: out of memory");
    if (PQstatus(conn_) != CONNECTION_OK) {
      // libpq reports a failed login only as text; what it says is kept.
      const std::string message = connection_message(PQerrorMessage(conn_));
      const bool login =
          PQconnectionNeedsPassword(conn_) != 0 || message.find("authentication failed") != std::string::npos;
      PQfinish(conn_);
      conn_ = nullptr;
      const std::string state = login ? "28P01" : "08001";
      throw DatabaseError(login ? SQLITE_PERM : SQLITE_CANTOPEN,
                          "postgresql connect to " + describe_postgres(target) + ": " + message, state);
    }
    // The server's notices (a table that already exists ...) are not ours to print.
    PQsetNoticeProcessor(
        conn_, [](void*, const char*) {}, nullptr);
    try {
      // A commit returns once its WAL is flushed (and, with synchronous
      // standbys configured, replicated): what lets a 202 promise the
      // referral is stored. Set here in case the server's default is off.
      exec("SET synchronous_commit = on");
      exec("SET TIME ZONE 'UTC'");
      // As long as SQLite's default busy timeout: a lock held longer is an
      // error (55P03, "locked") rather than a wait without end.
      set_busy_timeout(std::chrono::milliseconds(default_lock_timeout_ms));
      if (mode == OpenMode::read_only) exec("SET default_transaction_read_only = on");
    } catch (...) {
      PQfinish(conn_);
      conn_ = nullptr;
      throw;
    }
  }

  ~PgConnection() override { PQfinish(conn_); }
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  PGconn* handle() const noexcept { return conn_; }

  void exec(std::string_view sql) override {
    const std::string text(sql);
    Result res(PQexec(conn_, text.c_str()), &PQclear);
    const ExecStatusType status = res ? PQresultStatus(res.get()) : PGRES_FATAL_ERROR;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) throw_result_error(conn_, res.get(), "exec", sql);
    refuse_silent_rollback(res.get(), sql);
  }

  std::unique_ptr<StatementBackend> prepare(std::string_view sql) override {
    return std::make_unique<PgStatement>(*this, sql);
  }

  void set_busy_timeout(std::chrono::milliseconds wait) override {
    exec("SET lock_timeout = " + std::to_string(wait.count()));
  }

  std::int64_t last_insert_rowid() const override {
    throw DatabaseError(SQLITE_MISUSE, "postgresql: last_insert_rowid is SQLite's; use RETURNING");
  }

  int changes() const override { return changes_; }
  void record_changes(const PGresult* res) {
    const char* status = PQcmdStatus(const_cast<PGresult*>(res));
    if (std::strncmp(status, "INSERT", 6) != 0 && std::strncmp(status, "UPDATE", 6) != 0 &&
        std::strncmp(status, "DELETE", 6) != 0) {
      return;
    }
    const char* n = PQcmdTuples(const_cast<PGresult*>(res));
    int v = 0;
    std::from_chars(n, n + std::strlen(n), v);
    changes_ = v;
  }

  std::int64_t data_version() override { throw DatabaseError(SQLITE_MISUSE, "postgresql: data_version is SQLite's"); }

  bool in_transaction() const override {
    const PGTransactionStatusType s = PQtransactionStatus(conn_);
    return s == PQTRANS_INTRANS || s == PQTRANS_INERROR || s == PQTRANS_ACTIVE;
  }

  void reset_busy_statements() override {}  // results are read whole: nothing stays open on the server

  void begin_read() override { exec("BEGIN ISOLATION LEVEL REPEATABLE READ"); }

  void begin_write() override {
    exec("BEGIN");
    try {
      lock(write_lock);
    } catch (...) {
      try {
        exec("ROLLBACK");
      } catch (...) {
        // The lock's error is the one to report.
      }
      throw;
    }
  }

  void lock(int object) {
    exec("SELECT pg_advisory_xact_lock(" + std::to_string(lock_class) + ", " + std::to_string(object) + ")");
  }

 private:
  PGconn* conn_ = nullptr;
  int changes_ = 0;
};

PgStatement::PgStatement(PgConnection& connection, std::string_view sql) : connection_(connection) {
  Translated t = translate(sql);
  sql_ = std::move(t.sql);
  values_.resize(t.used.size());
  formats_.resize(t.used.size(), 0);
  // A parameter the text does not use (SQLite numbers may leave gaps) gets a
  // type, or PostgreSQL could not infer one and would refuse the statement.
  types_.resize(t.used.size(), 0);
  for (std::size_t k = 0; k < t.used.size(); ++k) {
    if (!t.used[k]) types_[k] = text_oid;
  }
}

bool PgStatement::step() {
  if (!result_) {
    std::vector<const char*> values(values_.size(), nullptr);
    std::vector<int> lengths(values_.size(), 0);
    for (std::size_t k = 0; k < values_.size(); ++k) {
      if (!values_[k]) continue;
      values[k] = values_[k]->c_str();
      lengths[k] = static_cast<int>(values_[k]->size());
    }
    Result res(PQexecParams(connection_.handle(), sql_.c_str(), static_cast<int>(values_.size()), types_.data(),
                            values.data(), lengths.data(), formats_.data(), 0),
               &PQclear);
    const ExecStatusType status = res ? PQresultStatus(res.get()) : PGRES_FATAL_ERROR;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      throw_result_error(connection_.handle(), res.get(), "step", sql_);
    }
    connection_.record_changes(res.get());
    refuse_silent_rollback(res.get(), sql_);
    result_ = std::move(res);
    row_ = -1;
  }
  if (row_ + 1 < PQntuples(result_.get())) {
    ++row_;
    return true;
  }
  // Done: the next step runs the statement again with the same bindings, as
  // SQLite's does.
  result_.reset();
  return false;
}

}  // namespace

ConnectParams::ConnectParams(const PostgresTarget& target) : timeout_(std::to_string(target.connect_timeout.count())) {
  // Later keywords override what the URI (expanded from dbname) says; the
  // connect timeout and the keepalives come first so that the URI may set
  // its own. Keepalives: a connection that only listens (DueListener)
  // notices a server that vanished without closing it.
  keys = {"connect_timeout", "keepalives_idle",  "keepalives_interval", "keepalives_count",
          "dbname",          "application_name", "client_encoding"};
  values = {timeout_.c_str(), "30", "10", "3", target.url.c_str(), "referrald", "UTF8"};
  if (target.password) {
    keys.push_back("password");
    values.push_back(target.password->c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
}

std::string libpq_connection_message(const char* message) { return connection_message(message); }

std::unique_ptr<Connection> open_postgresql(const PostgresTarget& target, OpenMode mode) {
  return std::make_unique<PgConnection>(target, mode);
}

std::string describe_postgres(const PostgresTarget& target) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(target.url.c_str(), &error);
  if (options == nullptr) {
    if (error != nullptr) PQfreemem(error);
    return "postgresql (an unreadable url)";
  }
  std::string host, port, dbname, user;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    const std::string_view key = o->keyword;
    if (key == "host" || (key == "hostaddr" && host.empty())) host = o->val;
    if (key == "port") port = o->val;
    if (key == "dbname") dbname = o->val;
    if (key == "user") user = o->val;
  }
  PQconninfoFree(options);
  std::string out = "postgresql database " + (dbname.empty() ? std::string("(default)") : dbname) + " on " +
                    (host.empty() ? std::string("the local socket") : host);
  if (!port.empty()) out += ":" + port;
  if (!user.empty()) out += " as " + user;
  return out;
}

}  // namespace referrald::store::detail
