// Moving a whole store from one database to another (SQLite to PostgreSQL
// and back): every row of every table, as stored. `referralctl export` and
// `import` put these rows in a file (docs/storage.md, "Moving a store");
// here is only what touches the database. Sealed documents, notes, titles
// and files are copied as their ciphertext: a move needs no key, and the
// target opens them with the same keys as the source did.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "store/audit_chain.hpp"
#include "store/database.hpp"
#include "store/store.hpp"

namespace referrald::store {

enum class CellKind { integer, text, bytes };

struct TransferColumn {
  const char* name;
  CellKind kind;
};

struct TransferTable {
  const char* name;
  std::vector<TransferColumn> columns;
  const char* key;  // ORDER BY: rows leave in key order
  // Counted by triggers or only counting up (tallies, /metrics figures):
  // an import replaces what the target's triggers made with the source's.
  bool counter = false;
};

// Every table of the current schema but schema_version (the target records
// its own), in an order an import can insert them: a row's parent before it.
const std::vector<TransferTable>& transfer_tables();
const TransferTable* find_transfer_table(std::string_view name);

// A cell: NULL, an integer, or text or bytes (which, the column says).
using Cell = std::variant<std::monostate, std::int64_t, std::string>;
using Row = std::vector<Cell>;

// Calls `each` for every row of every table, table by table in
// transfer_tables() order, each table in key order. Run it inside a
// ReadTransaction: one snapshot, while the daemon writes.
void read_all_rows(Database& db, const std::function<void(const TransferTable&, const Row&)>& each);

// The target holds something already: an import never merges.
class ImportRefused : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Fills an empty store in one write transaction: nothing is kept unless
// finish() commits.
class Import {
 public:
  // Brings `db` to the current schema (its own transaction: an empty
  // schema is no half import), refuses a store that holds any row
  // (ImportRefused naming the table), and begins the write transaction.
  explicit Import(Database& db);
  ~Import();
  Import(const Import&) = delete;
  Import& operator=(const Import&) = delete;

  // One row of `table`, as read_all_rows gave it. Throws std::invalid_argument
  // for a row that does not fit the table (the column named), DatabaseError
  // for one the database refuses (a constraint).
  void add(const TransferTable& table, const Row& row);
  // Sets PostgreSQL's identity columns past the imported ids, checks the
  // imported audit trail, appends `actor`'s "imported" row with `detail`
  // to it, checks it whole again and commits. Throws ImportRefused when the
  // imported trail does not verify.
  AuditVerification finish(TimePoint at, const std::string& actor, const std::string& detail);

 private:
  Database& db_;
  std::unique_ptr<WriteTransaction> write_;
  std::map<std::string, std::string> insert_sql_;  // each table's INSERT, by its name
};

}  // namespace referrald::store
