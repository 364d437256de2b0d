#include "support/store_backends.hpp"

#include <stdexcept>

#include "support/postgres.hpp"

namespace referrald::test {

std::string backend_name(const ::testing::TestParamInfo<store::Dialect>& info) {
  return info.param == store::Dialect::sqlite ? "SQLite" : "PostgreSQL";
}

TestStore::TestStore(store::Dialect backend) {
  target_.backend = backend;
  if (backend == store::Dialect::sqlite) {
    target_.file = dir_.path() / "referrald.db";
    return;
  }
  PostgresServer& server = shared_postgres();
  database_ = server.create_database();
  target_.postgres.url = server.url(database_);
  target_.postgres.password = server.password();
}

std::unique_ptr<store::Database> TestStore::open(store::OpenMode mode) const {
  return store::open_database(target_, mode);
}

std::string TestStore::admin_sql(const std::string& sql) const {
  if (target_.backend != store::Dialect::postgresql) throw std::logic_error("admin_sql: PostgreSQL only");
  return shared_postgres().psql(database_, sql);
}

}  // namespace referrald::test
