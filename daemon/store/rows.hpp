// Store-internal helpers shared by store.cpp, queries.cpp and office.cpp: reading rows
// out of statements. Not part of the store's interface.
#pragma once

#include <sqlite3.h>

#include <string>

#include "office/status.hpp"
#include "store/store.hpp"

namespace referrald::store::detail {

// Resets a cached statement when the guard leaves scope, even on a throw, so
// none keeps a read snapshot (and the WAL) pinned between calls.
class ResetOnExit {
 public:
  explicit ResetOnExit(Statement& st) : st_(st) {}
  ~ResetOnExit() { st_.reset(); }
  ResetOnExit(const ResetOnExit&) = delete;
  ResetOnExit& operator=(const ResetOnExit&) = delete;

 private:
  Statement& st_;
};

// CHECK constraints make this unreachable unless the file was edited by
// hand; the value itself is not repeated (it could be anything).
[[noreturn]] inline void unexpected_value(const char* column) {
  throw DatabaseError(SQLITE_CORRUPT, std::string("sqlite read: unexpected value in ") + column);
}

// The office's status in `column` (named `name` if it is not one).
inline OfficeStatus status_at(const Statement& st, int column, const char* name) {
  const auto s = parse_office_status(st.column_text(column));
  if (!s) unexpected_value(name);
  return *s;
}

// A delivery from the first 12 columns, in this order: id, referral_id,
// target, state, attempts, created_ms, next_attempt_ms, lease_until_ms,
// last_error, external_id, updated_ms, purpose.
inline DeliveryRow read_delivery(const Statement& st) {
  DeliveryRow row;
  row.id = st.column_int(0);
  row.referral_id = st.column_text(1);
  row.target = st.column_text(2);
  const auto state = parse_delivery_state(st.column_text(3));
  if (!state) unexpected_value("deliveries.state");
  row.state = *state;
  row.attempts = static_cast<int>(st.column_int(4));
  row.created_at = from_millis(st.column_int(5));
  row.next_attempt_at = from_millis(st.column_int(6));
  if (!st.column_is_null(7)) row.lease_until = from_millis(st.column_int(7));
  row.last_error = st.column_optional_text(8);
  row.external_id = st.column_optional_text(9);
  row.updated_at = from_millis(st.column_int(10));
  row.purpose = st.column_text(11);
  return row;
}

}  // namespace referrald::store::detail
