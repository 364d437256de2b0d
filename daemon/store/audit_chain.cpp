#include "store/audit_chain.hpp"

#include <stdexcept>

#include "store/rows.hpp"
#include "util/crypto.hpp"

namespace referrald::store {

namespace {

using detail::ResetOnExit;

// Each field as its byte length, a colon and its bytes; absent as "-".
void put(std::string& out, std::string_view field) {
  out += std::to_string(field.size());
  out += ':';
  out += field;
}
void put_optional(std::string& out, const std::optional<std::string>& field) {
  if (field) {
    put(out, std::string_view(*field));
  } else {
    out += '-';
  }
}

AuditEntry entry_at(const Statement& st) {
  AuditEntry row;
  row.id = st.column_int(0);
  row.at_ms = st.column_int(1);
  row.referral_id = st.column_optional_text(2);
  if (!st.column_is_null(3)) row.delivery_id = st.column_int(3);
  row.actor = st.column_text(4);
  row.action = st.column_text(5);
  row.detail = st.column_text(6);
  return row;
}

constexpr const char* select_rows =
    "SELECT id, at_ms, referral_id, delivery_id, actor, action, detail, prev_hash, hash FROM audit ";

}  // namespace

std::string audit_row_hash(std::string_view prev_hash, const AuditEntry& row) {
  std::string encoded = "referrald-audit-1";
  put(encoded, prev_hash);
  put(encoded, std::to_string(row.id));
  put(encoded, std::to_string(row.at_ms));
  put_optional(encoded, row.referral_id);
  put_optional(encoded, row.delivery_id ? std::optional{std::to_string(*row.delivery_id)} : std::nullopt);
  put(encoded, row.actor);
  put(encoded, row.action);
  put(encoded, row.detail);
  return sha256_hex(encoded);
}

void append_audit(Database& db, AuditEntry row) {
  if (!db.in_transaction()) {
    throw std::logic_error("append_audit outside a transaction");
  }
  std::string prev_hash{audit_chain_origin};
  {
    Statement& last = db.cached("SELECT id, hash FROM audit WHERE id = (SELECT max(id) FROM audit)");
    ResetOnExit reset(last);
    row.id = 1;
    if (last.step()) {
      row.id = last.column_int(0) + 1;
      prev_hash = last.column_text(1);
    }
  }
  const std::string hash = audit_row_hash(prev_hash, row);
  Statement& st = db.cached(
      "INSERT INTO audit (id, at_ms, referral_id, delivery_id, actor, action, detail, prev_hash, hash) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
  ResetOnExit reset(st);
  st.bind(1, row.id).bind(2, row.at_ms).bind(3, row.referral_id);
  if (row.delivery_id) {
    st.bind(4, *row.delivery_id);
  } else {
    st.bind_null(4);
  }
  st.bind(5, std::string_view(row.actor))
      .bind(6, std::string_view(row.action))
      .bind(7, std::string_view(row.detail))
      .bind(8, std::string_view(prev_hash))
      .bind(9, std::string_view(hash));
  st.run();
}

void chain_unhashed_audit_rows(Database& db) {
  std::string prev_hash{audit_chain_origin};
  Statement rows = db.prepare(std::string(select_rows) + "ORDER BY id");
  Statement update = db.prepare("UPDATE audit SET prev_hash = ?2, hash = ?3 WHERE id = ?1");
  while (rows.step()) {
    if (!rows.column_is_null(8)) {
      prev_hash = rows.column_text(8);
      continue;
    }
    const AuditEntry row = entry_at(rows);
    const std::string hash = audit_row_hash(prev_hash, row);
    update.bind(1, row.id).bind(2, std::string_view(prev_hash)).bind(3, std::string_view(hash));
    update.run();
    prev_hash = hash;
  }
}

AuditVerification verify_audit_chain(Database& db) {
  AuditVerification v;
  std::string prev_hash{audit_chain_origin};
  std::optional<std::int64_t> prev_id;
  Statement rows = db.prepare(std::string(select_rows) + "ORDER BY id");
  while (rows.step()) {
    const AuditEntry row = entry_at(rows);
    ++v.rows;
    const auto stored_prev = rows.column_optional_text(7);
    const auto stored_hash = rows.column_optional_text(8);
    const auto fail = [&](std::string problem) {
      v.first_bad = row.id;
      v.problem = std::move(problem);
      return v;
    };
    if (!stored_prev || !stored_hash) return fail("has no hash");
    if (*stored_prev != prev_hash) {
      return fail(prev_id ? "does not follow row " + std::to_string(*prev_id) +
                                ": a row between them was removed, or that row was changed"
                          : "is not the start of the chain: the rows before it were removed");
    }
    if (audit_row_hash(prev_hash, row) != *stored_hash) return fail("does not match its hash: it was changed");
    prev_hash = *stored_hash;
    prev_id = row.id;
  }
  v.head = prev_hash;
  return v;
}

}  // namespace referrald::store
