// A real PostgreSQL 15 server for tests (docs/storage.md, "Tests"): Debian's
// initdb and postgres in a temporary directory, on a free loopback port,
// run as the `postgres` user when the tests run as root (PostgreSQL refuses
// root). Started in bounded time or the test fails with the server's log;
// no mock, and no skip when it is not installed.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "support/harness.hpp"

namespace referrald::test {

class PostgresServer {
 public:
  // initdb, start, and a login role `referrald` with a password. Throws
  // std::runtime_error (with the log) when any step fails.
  PostgresServer();
  ~PostgresServer();  // stops the server (immediate shutdown)
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  unsigned short port() const { return port_; }
  // The password of the role `referrald`.
  const std::string& password() const { return password_; }
  // A new, empty database owned by `referrald`; returns its name.
  std::string create_database();
  // postgresql://referrald@127.0.0.1:PORT/NAME (the password goes separately).
  std::string url(const std::string& database) const;
  // Runs SQL as the superuser in `database`; returns what psql printed
  // (unaligned, tuples only). Throws when psql fails.
  std::string psql(const std::string& database, const std::string& sql) const;

  // Stops the server (immediate: as a crash would) and starts it again on
  // the same port and data: for tests of an unreachable database.
  void stop();
  void start();
  bool running() const { return process_ != nullptr; }
  std::string log() const;

 private:
  std::vector<std::string> as_server_user(std::vector<std::string> argv) const;
  TempDir dir_;
  std::filesystem::path data_;
  unsigned short port_ = 0;
  std::string password_;
  int databases_ = 0;
  std::unique_ptr<Process> process_;
};

// One server for the whole test program, started on first use and stopped
// when the program exits.
PostgresServer& shared_postgres();

}  // namespace referrald::test
