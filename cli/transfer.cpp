// referralctl export and import: a whole store to one file and back, to
// move an install from SQLite to PostgreSQL (or back). The file is JSON
// Lines, described in docs/storage.md ("Moving a store"); the rows come from
// and go to the store through store/transfer.hpp, as stored (sealed
// documents and files stay sealed).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <ostream>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "store/transfer.hpp"
#include "util/crypto.hpp"

namespace referrald::cli {

namespace fs = std::filesystem;

namespace {

constexpr const char* format_name = "referrald-export";
constexpr int format_version = 1;

const char* kind_name(store::CellKind k) {
  switch (k) {
    case store::CellKind::integer: return "integer";
    case store::CellKind::text: return "text";
    case store::CellKind::bytes: return "bytes";
  }
  return "?";
}

json header_tables() {
  json tables = json::object();
  for (const auto& t : store::transfer_tables()) {
    json columns = json::array();
    for (const auto& col : t.columns) columns.push_back({{"name", col.name}, {"type", kind_name(col.kind)}});
    tables[t.name] = columns;
  }
  return tables;
}

json cell_json(const store::TransferColumn& column, const store::Cell& cell) {
  if (std::holds_alternative<std::monostate>(cell)) return nullptr;
  if (const auto* n = std::get_if<std::int64_t>(&cell)) return *n;
  const std::string& s = std::get<std::string>(cell);
  return column.kind == store::CellKind::bytes ? json(base64(s)) : json(s);
}

store::Cell json_cell(const store::TransferTable& table, const store::TransferColumn& column, const json& v) {
  const auto wrong = [&](const char* expected) {
    return std::runtime_error(std::string(table.name) + "." + column.name + ": expected " + expected + ", found " +
                              v.type_name());
  };
  if (v.is_null()) return std::monostate{};
  switch (column.kind) {
    case store::CellKind::integer:
      if (!v.is_number_integer()) throw wrong("an integer");
      return v.get<std::int64_t>();
    case store::CellKind::text:
      if (!v.is_string()) throw wrong("text");
      return v.get<std::string>();
    case store::CellKind::bytes: {
      if (!v.is_string()) throw wrong("base64 text");
      auto bytes = base64_decode(v.get<std::string>());
      if (!bytes) throw std::runtime_error(std::string(table.name) + "." + column.name + ": not base64");
      return std::move(*bytes);
    }
  }
  throw wrong("a value");
}

// The rows per table, in the tables' order, for the report.
json counts_json(const std::map<std::string, std::int64_t>& counts) {
  json out = json::object();
  for (const auto& t : store::transfer_tables()) {
    const auto it = counts.find(t.name);
    out[t.name] = it == counts.end() ? 0 : it->second;
  }
  return out;
}

std::int64_t total(const std::map<std::string, std::int64_t>& counts) {
  std::int64_t n = 0;
  for (const auto& [table, rows] : counts) n += rows;
  return n;
}

std::int64_t count_of(const std::map<std::string, std::int64_t>& counts, const std::string& table) {
  const auto it = counts.find(table);
  return it == counts.end() ? 0 : it->second;
}

// Writes lines to a new file (0600, never over an existing one), hashing
// them; the file is removed unless finish() was reached.
class ExportWriter {
 public:
  explicit ExportWriter(const fs::path& file) : file_(file) {
    const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      const int e = errno;
      if (e == EEXIST) throw UsageError("--output: " + file.string() + " exists already; choose a new file");
      throw std::runtime_error("cannot create " + file.string() + ": " + std::strerror(e));
    }
    out_ = ::fdopen(fd, "w");
    if (out_ == nullptr) {
      ::close(fd);
      throw std::runtime_error("cannot write " + file.string());
    }
  }
  ~ExportWriter() {
    if (out_ != nullptr) std::fclose(out_);
    if (!done_) {
      std::error_code ec;
      fs::remove(file_, ec);
    }
  }
  ExportWriter(const ExportWriter&) = delete;
  ExportWriter& operator=(const ExportWriter&) = delete;

  void line(const json& j) {
    // Text a peer sent (an error message) may not be UTF-8: replaced, as
    // referralctl prints it, never a failure of the whole export.
    const std::string text = j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    hash_.update(text);
    if (std::fwrite(text.data(), 1, text.size(), out_) != text.size()) fail();
    ++lines_;
  }
  std::int64_t lines() const { return lines_; }
  std::string hash() { return hash_.hex(); }
  // Flushed and on disk before the command says it is done.
  void finish() {
    if (std::fflush(out_) != 0 || ::fsync(::fileno(out_)) != 0) fail();
    if (std::fclose(out_) != 0) {
      out_ = nullptr;
      fail();
    }
    out_ = nullptr;
    done_ = true;
  }

 private:
  [[noreturn]] void fail() { throw std::runtime_error("cannot write " + file_.string() + ": " + std::strerror(errno)); }
  fs::path file_;
  std::FILE* out_ = nullptr;
  Sha256Stream hash_;
  std::int64_t lines_ = 0;
  bool done_ = false;
};

const char* dialect_name(store::Dialect d) { return d == store::Dialect::sqlite ? "sqlite" : "postgresql"; }

}  // namespace

int export_command(Context& c, const fs::path& output) {
  auto db = open_store(c, false);
  ExportWriter writer(output);
  std::map<std::string, std::int64_t> counts;
  {
    store::ReadTransaction read(*db);  // one snapshot while the daemon writes
    writer.line({{"format", format_name},
                 {"version", format_version},
                 {"schema_version", store::schema_version},
                 {"exported_at", rfc3339(c.now)},
                 {"source", dialect_name(db->dialect())},
                 {"tables", header_tables()}});
    store::read_all_rows(*db, [&](const store::TransferTable& t, const store::Row& row) {
      json values = json::array();
      for (std::size_t i = 0; i < row.size(); ++i) values.push_back(cell_json(t.columns[i], row[i]));
      writer.line({{"table", t.name}, {"row", std::move(values)}});
      ++counts[t.name];
    });
  }
  const std::int64_t rows = writer.lines() - 1;
  writer.line({{"end", {{"rows", rows}, {"sha256", writer.hash()}}}});
  writer.finish();

  if (c.json) {
    print_json(c, {{"file", output.string()},
                   {"store", c.settings.store_name()},
                   {"schema_version", store::schema_version},
                   {"rows", counts_json(counts)}});
  } else {
    c.out << "exported " << plural(count_of(counts, "referrals"), "referral", "referrals") << " ("
          << plural(total(counts), "row", "rows") << ") from " << c.settings.store_name() << " to " << output.string()
          << '\n';
  }
  return exit_ok;
}

int import_command(Context& c, const fs::path& input) {
  std::ifstream in(input, std::ios::binary);
  if (!in) throw store::NotFound("cannot read " + input.string() + ": " + std::strerror(errno));

  std::int64_t line_number = 0;
  const auto at = [&](const std::string& what) {
    return InvalidInput(input.string() + ":" + std::to_string(line_number) + ": " + what);
  };
  std::string line;
  Sha256Stream hash;
  const auto next_line = [&]() -> bool {
    if (!std::getline(in, line)) return false;
    ++line_number;
    return true;
  };
  const auto parse = [&]() {
    try {
      return json::parse(line);
    } catch (const json::parse_error& e) {
      // Not e.what(): nlohmann's message ends with the text it last read,
      // which may be part of a row (a message, an audit detail, a document).
      throw at("not a JSON record (cut short or altered?) at byte " + std::to_string(e.byte));
    }
  };

  // The header: what the file is, and of which schema.
  if (!next_line()) throw at("empty: not a referralctl export");
  hash.update(line + "\n");
  const json header = parse();
  try {
    if (!header.is_object() || header.value("format", "") != format_name) {
      throw at("not a referralctl export (no \"format\": \"" + std::string(format_name) + "\")");
    }
    if (header.value("version", 0) != format_version) {
      throw at("export format version " + header.value("version", json(nullptr)).dump() + "; this referralctl reads " +
               std::to_string(format_version));
    }
    if (header.value("schema_version", 0) != store::schema_version) {
      throw at("the export is of schema version " + header.value("schema_version", json(nullptr)).dump() +
               " and this referralctl imports " + std::to_string(store::schema_version) +
               ": export and import with the same referrald version");
    }
    if (header.value("tables", json()) != header_tables()) {
      throw at("the tables the header lists are not this schema's");
    }
  } catch (const json::exception& e) {
    throw at(std::string("not a referralctl export header: ") + e.what());
  }

  std::unique_ptr<store::Database> db;
  if (c.settings.postgres) {
    db = std::make_unique<store::Database>(*c.settings.postgres, store::OpenMode::read_write);
  } else {
    db = std::make_unique<store::Database>(c.settings.database, store::OpenMode::read_write_create);
  }
  db->set_busy_timeout(c.global.lock_wait);
  store::Import importer(*db);  // nothing stays unless it commits below

  std::map<std::string, std::int64_t> counts;
  bool ended = false;
  while (next_line()) {
    if (ended) throw at("a record after the end record");
    const json record = parse();
    try {
      if (!record.is_object()) throw at("not a record");
      if (record.contains("end")) {
        const json& end = record["end"];
        const std::int64_t rows = total(counts);
        if (!end.is_object() || end.value("rows", std::int64_t{-1}) != rows) {
          throw at("the end record counts " + end.value("rows", json(nullptr)).dump() + " rows but the file holds " +
                   std::to_string(rows));
        }
        if (end.value("sha256", "") != hash.hex()) {
          throw at("the file's checksum does not match its end record: it was altered after the export");
        }
        ended = true;
        continue;
      }
      hash.update(line + "\n");
      const std::string name = record.value("table", "");
      const store::TransferTable* table = store::find_transfer_table(name);
      if (table == nullptr) throw at("no table \"" + name + "\" in this schema");
      const json& values = record.value("row", json());
      if (!values.is_array() || values.size() != table->columns.size()) {
        throw at("table " + name + ": expected a row of " + std::to_string(table->columns.size()) + " values");
      }
      store::Row row;
      row.reserve(values.size());
      try {
        for (std::size_t i = 0; i < values.size(); ++i) row.push_back(json_cell(*table, table->columns[i], values[i]));
        importer.add(*table, row);
      } catch (const store::DatabaseError& e) {
        if (e.is_unavailable()) throw;
        throw at("table " + name + ": the database refuses the row: " + e.what());
      } catch (const std::exception& e) {
        throw at(e.what());
      }
      ++counts[name];
    } catch (const json::exception& e) {
      throw at(std::string("not a record of an export: ") + e.what());
    }
  }
  if (!ended) throw at("the export ends without its end record: it was cut short (nothing was imported)");

  const std::string detail = "from=" + header.value("source", std::string("?")) +
                             " exported_at=" + header.value("exported_at", std::string("?")) +
                             " referrals=" + std::to_string(count_of(counts, "referrals")) +
                             " rows=" + std::to_string(total(counts));
  const store::AuditVerification audit = importer.finish(c.now, operator_name(), detail);

  if (c.json) {
    print_json(c, {{"file", input.string()},
                   {"store", c.settings.store_name()},
                   {"rows", counts_json(counts)},
                   {"audit", {{"rows", audit.rows}, {"head", audit.head}}}});
  } else {
    c.out << "imported " << plural(count_of(counts, "referrals"), "referral", "referrals") << " ("
          << plural(total(counts), "row", "rows") << ") into " << c.settings.store_name() << '\n'
          << "audit trail: " << plural(audit.rows, "row", "rows") << " verified, head " << audit.head << '\n';
  }
  return exit_ok;
}

}  // namespace referrald::cli
