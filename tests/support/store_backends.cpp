#include "support/store_backends.hpp"

#include <stdexcept>

#include "support/postgres.hpp"

namespace referrald::test {

store::NewReferral api_referral(const std::string& id, store::TimePoint received, Urgency urgency) {
  store::NewReferral r;
  r.id = id;
  r.received_at = received;
  r.urgency = urgency;
  r.channel = "api";
  r.client = "sha256:client-a";
  r.request_hash = "hash-" + id;
  r.document = R"({"patient":{"given_name":"Ava"}})";
  r.response = "{}";
  r.targets = {"office-email"};
  return r;
}

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
