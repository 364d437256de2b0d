// The store's tests run against both backends: one test body, the backend a
// parameter (docs/storage.md, "Tests"). A SQLite store is a file in a
// temporary directory; a PostgreSQL store is a fresh database on the test
// program's own server (support/postgres.hpp).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <ostream>
#include <string>

#include "store/database.hpp"
#include "store/store.hpp"
#include "support/harness.hpp"

namespace referrald::store {
// The backend by name in a test's failure message.
inline void PrintTo(Dialect d, std::ostream* os) { *os << (d == Dialect::sqlite ? "SQLite" : "PostgreSQL"); }
}  // namespace referrald::store

namespace referrald::test {

// Both, for INSTANTIATE_TEST_SUITE_P(Backends, Suite, store_backends, backend_name).
inline const auto store_backends = ::testing::Values(store::Dialect::sqlite, store::Dialect::postgresql);
std::string backend_name(const ::testing::TestParamInfo<store::Dialect>& info);

// A referral as the store's tests insert it: from the API and one client,
// a one-line document, one delivery (office-email).
store::NewReferral api_referral(const std::string& id, store::TimePoint received, Urgency urgency = Urgency::routine);

class TestStore {
 public:
  explicit TestStore(store::Dialect backend);
  store::Dialect backend() const { return target_.backend; }
  const store::StorageTarget& target() const { return target_; }
  // A new connection (SQLite: creating the file in read_write_create).
  std::unique_ptr<store::Database> open(store::OpenMode mode = store::OpenMode::read_write_create) const;
  // SQL run as the server's superuser (PostgreSQL only): for what a test
  // does behind the store's back.
  std::string admin_sql(const std::string& sql) const;

 private:
  TempDir dir_;
  std::string database_;  // PostgreSQL
  store::StorageTarget target_;
};

}  // namespace referrald::test
