// The audit trail as a hash chain: every row carries the SHA-256 of its own
// content and of the row before it, so a row changed or removed with a plain
// sqlite3 shell is found by `referralctl audit verify`. docs/audit.md has the
// format, what it proves and what it cannot.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "store/database.hpp"

namespace referrald::store {

// What one audit row says, as hashed.
struct AuditEntry {
  std::int64_t id = 0;
  std::int64_t at_ms = 0;
  std::optional<std::string> referral_id;
  std::optional<std::int64_t> delivery_id;
  std::string actor;
  std::string action;
  std::string detail;
};

// The prev_hash of the first row in the chain: 64 zeros.
inline constexpr std::string_view audit_chain_origin =
    "0000000000000000000000000000000000000000000000000000000000000000";

// Hex SHA-256 over a versioned, length-prefixed encoding of `prev_hash` and
// every field of `row` (docs/audit.md), so no two different rows encode alike.
std::string audit_row_hash(std::string_view prev_hash, const AuditEntry& row);

// Appends `row` (its id is chosen here: one past the last) to the chain.
// Must run inside the caller's write transaction, which makes reading the
// last row and appending one atomic against every other writer.
void append_audit(Database& db, AuditEntry row);

// Gives every row that has no hash yet (written before schema version 4) its
// place in the chain, in id order. Part of the migration to version 4.
void chain_unhashed_audit_rows(Database& db);

struct AuditVerification {
  std::int64_t rows = 0;                  // rows checked
  std::optional<std::int64_t> first_bad;  // the first row that does not match
  std::string problem;                    // why, for that row
  std::string head;                       // the last row's hash: record it elsewhere to anchor the chain
};

// Walks the whole chain in id order. Reads only: run it in a read transaction
// for a consistent view while the daemon writes.
AuditVerification verify_audit_chain(Database& db);

}  // namespace referrald::store
