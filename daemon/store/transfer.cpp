#include "store/transfer.hpp"

#include <algorithm>

#include "store/rows.hpp"

namespace referrald::store {

namespace {

constexpr CellKind I = CellKind::integer;
constexpr CellKind T = CellKind::text;
constexpr CellKind B = CellKind::bytes;

std::string column_list(const TransferTable& t) {
  std::string out;
  for (const auto& c : t.columns) {
    if (!out.empty()) out += ", ";
    out += c.name;
  }
  return out;
}

std::string insert_sql(const TransferTable& t) {
  std::string values;
  for (std::size_t i = 1; i <= t.columns.size(); ++i) values += (i == 1 ? "?" : ", ?") + std::to_string(i);
  return "INSERT INTO " + std::string(t.name) + " (" + column_list(t) + ") VALUES (" + values + ")";
}

// SQLite's rowid aliases fill themselves past the largest id; PostgreSQL's
// identity columns count from their own sequence, which the explicit ids of
// an import did not move.
constexpr std::pair<const char*, const char*> identity_columns[] = {
    {"deliveries", "id"}, {"attempts", "id"}, {"status_changes", "id"}, {"attachments", "rowid"}};

}  // namespace

const std::vector<TransferTable>& transfer_tables() {
  static const std::vector<TransferTable> tables = {
      {"referrals",
       {{"id", T},
        {"received_ms", I},
        {"decision", T},
        {"urgency", T},
        {"disease", T},
        {"channel", T},
        {"client", T},
        {"idempotency_key", T},
        {"request_hash", T},
        {"document", B},
        {"response", T},
        {"status", T},
        {"status_ms", I},
        {"acknowledged_ms", I},
        {"identity_hash", T},
        {"duplicate_of", T},
        {"reasons", T}},
       "id"},
      {"deliveries",
       {{"id", I},
        {"referral_id", T},
        {"target", T},
        {"purpose", T},
        {"state", T},
        {"attempts", I},
        {"created_ms", I},
        {"next_attempt_ms", I},
        {"lease_until_ms", I},
        {"updated_ms", I},
        {"last_error", T},
        {"external_id", T}},
       "id"},
      {"attempts",
       {{"id", I},
        {"delivery_id", I},
        {"attempt", I},
        {"started_ms", I},
        {"finished_ms", I},
        {"outcome", T},
        {"code", T},
        {"message", T},
        {"external_id", T}},
       "id"},
      {"status_changes",
       {{"id", I},
        {"referral_id", T},
        {"at_ms", I},
        {"actor", T},
        {"via", T},
        {"from_status", T},
        {"to_status", T},
        {"note", B}},
       "id"},
      {"escalations",
       {{"referral_id", T}, {"step", I}, {"due_ms", I}, {"after_s", I}, {"targets", T}, {"state", T}, {"done_ms", I}},
       "referral_id, step"},
      {"ack_tokens",
       {{"token_hash", T}, {"referral_id", T}, {"created_ms", I}, {"expires_ms", I}, {"used_ms", I}},
       "token_hash"},
      {"attachments",
       {{"rowid", I},
        {"referral_id", T},
        {"position", I},
        {"title", B},
        {"content_type", T},
        {"bytes", I},
        {"pages", I},
        {"sha256", T},
        {"data", B}},
       "rowid"},
      {"audit",
       {{"id", I},
        {"at_ms", I},
        {"referral_id", T},
        {"delivery_id", I},
        {"actor", T},
        {"action", T},
        {"detail", T},
        {"prev_hash", T},
        {"hash", T}},
       "id"},
      {"identity_secret", {{"id", I}, {"secret", B}}, "id"},
      {"tallies", {{"kind", T}, {"value", T}, {"n", I}}, "kind, value", true},
      {"status_tallies", {{"status", T}, {"n", I}}, "status", true},
      {"ack_times", {{"urgency", T}, {"le_ms", I}, {"n", I}, {"sum_ms", I}}, "urgency, le_ms", true},
      {"escalation_tallies", {{"step", I}, {"fired", I}}, "step", true},
  };
  return tables;
}

const TransferTable* find_transfer_table(std::string_view name) {
  const auto& tables = transfer_tables();
  const auto it = std::find_if(tables.begin(), tables.end(), [&](const TransferTable& t) { return t.name == name; });
  return it == tables.end() ? nullptr : &*it;
}

void read_all_rows(Database& db, const std::function<void(const TransferTable&, const Row&)>& each) {
  for (const TransferTable& t : transfer_tables()) {
    Statement st = db.prepare("SELECT " + column_list(t) + " FROM " + t.name + " ORDER BY " + t.key);
    Row row(t.columns.size());
    while (st.step()) {
      for (std::size_t i = 0; i < t.columns.size(); ++i) {
        const int at = static_cast<int>(i);
        if (st.column_is_null(at)) {
          row[i] = std::monostate{};
        } else if (t.columns[i].kind == CellKind::integer) {
          row[i] = st.column_int(at);
        } else if (t.columns[i].kind == CellKind::text) {
          row[i] = st.column_text(at);
        } else {
          row[i] = st.column_blob(at);
        }
      }
      each(t, row);
    }
  }
}

Import::Import(Database& db) : db_(db) {
  migrate(db_);
  write_ = std::make_unique<WriteTransaction>(db_);
  for (const TransferTable& t : transfer_tables()) {
    if (t.counter) continue;
    Statement st = db_.prepare("SELECT count(*) FROM " + std::string(t.name));
    st.step();
    if (const auto n = st.column_int(0); n > 0) {
      throw ImportRefused(db_.name() + " is not empty: its table " + t.name + " holds " + std::to_string(n) +
                          (n == 1 ? " row" : " rows") + " (an import fills a new, empty database only)");
    }
  }
  // The counters come from the export whole; the target's triggers would
  // count the imported rows on top of them.
  for (const TransferTable& t : transfer_tables()) {
    if (t.counter) db_.exec("DELETE FROM " + std::string(t.name));
  }
}

Import::~Import() = default;

void Import::add(const TransferTable& table, const Row& row) {
  if (row.size() != table.columns.size()) {
    throw std::invalid_argument("table " + std::string(table.name) + ": " + std::to_string(row.size()) +
                                " values for " + std::to_string(table.columns.size()) + " columns");
  }
  // Built once per table, not for every row.
  auto [sql, fresh] = insert_sql_.try_emplace(std::string(table.name));
  if (fresh) sql->second = insert_sql(table);
  Statement& st = db_.cached(sql->second);
  detail::ResetOnExit reset(st);
  for (std::size_t i = 0; i < row.size(); ++i) {
    const int at = static_cast<int>(i) + 1;
    const TransferColumn& c = table.columns[i];
    if (std::holds_alternative<std::monostate>(row[i])) {
      st.bind_null(at);
    } else if (const auto* n = std::get_if<std::int64_t>(&row[i])) {
      if (c.kind != CellKind::integer) {
        throw std::invalid_argument(std::string(table.name) + "." + c.name + ": expected text, not a number");
      }
      st.bind(at, *n);
    } else {
      const std::string& s = std::get<std::string>(row[i]);
      if (c.kind == CellKind::integer) {
        throw std::invalid_argument(std::string(table.name) + "." + c.name + ": expected a number");
      }
      if (c.kind == CellKind::text) {
        st.bind(at, std::string_view(s));
      } else {
        st.bind_blob(at, s);
      }
    }
  }
  st.run();
}

AuditVerification Import::finish(TimePoint at, const std::string& actor, const std::string& detail) {
  if (db_.dialect() == Dialect::postgresql) {
    for (const auto& [table, column] : identity_columns) {
      const std::string t = table, c = column;
      Statement st = db_.prepare("SELECT setval(pg_get_serial_sequence('" + t + "', '" + c + "'), coalesce(max(" + c +
                                 "), 0) + 1, false) FROM " + t);
      st.step();
    }
  }
  if (const auto imported = verify_audit_chain(db_); imported.first_bad) {
    throw ImportRefused("the audit trail in the export does not verify: row " + std::to_string(*imported.first_bad) +
                        " " + imported.problem);
  }
  audit(db_, at, std::nullopt, std::nullopt, actor, "imported", detail);
  AuditVerification whole = verify_audit_chain(db_);
  if (whole.first_bad) {
    throw ImportRefused("the audit trail does not verify after the import: row " + std::to_string(*whole.first_bad) +
                        " " + whole.problem);
  }
  write_->commit();
  return whole;
}

}  // namespace referrald::store
