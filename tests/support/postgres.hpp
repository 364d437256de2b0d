// A real PostgreSQL 15 server for tests (docs/storage.md, "Tests"): Debian's
// initdb and postgres in a temporary directory, on a free loopback port,
// run as the `postgres` user when the tests run as root (PostgreSQL refuses
// root). Started in bounded time or the test fails with the server's log;
// no mock, and no skip when it is not installed.
//
// Under ctest one server serves the whole run: the fixture tests
// `postgres_server_start` and `postgres_server_stop` (tests/CMakeLists.txt,
// support/postgres_fixture.cpp) start and stop it, and a test process finds
// it through a run file named after the ctest process, its parent. A test
// program run by hand, or a test that needs a server to stop under it,
// starts a server of its own.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support/harness.hpp"

namespace referrald::test {

class PostgresServer {
 public:
  // A server of this process's own: initdb (once per build tree, then a
  // copy of that cluster), then the server. Throws std::runtime_error (with
  // the log) when any step fails.
  PostgresServer();
  // The server the ctest run this process belongs to has started (the
  // fixture), or null when there is none. Throws when the run names a server
  // that does not answer.
  static std::unique_ptr<PostgresServer> of_this_run();
  // Drops the databases and the role this process made on a run's server;
  // stops a server of its own (immediate shutdown).
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  unsigned short port() const { return port_; }
  // The password of this process's login role (made with its first database).
  const std::string& password();
  // A new, empty database owned by this process's role; returns its name.
  std::string create_database();
  // postgresql://ROLE@127.0.0.1:PORT/NAME (the password goes separately).
  std::string url(const std::string& database);
  // Runs SQL as the superuser in `database`; returns what psql printed
  // (unaligned, tuples only). Throws when psql fails.
  std::string psql(const std::string& database, const std::string& sql) const;

  // A server of its own only: stops it (immediate: as a crash would) and
  // starts it again on the same port and data, for tests of an unreachable
  // database. The run's server is shared by every test: std::logic_error.
  void stop();
  void start();
  bool running() const { return process_ != nullptr; }
  std::string log() const;

  // The postmaster's process id (a server of its own), and the directory
  // holding its data, socket and log.
  pid_t postmaster() const { return process_ ? process_->pid() : -1; }
  const std::filesystem::path& directory() const { return directory_; }

 private:
  struct Attach {};
  PostgresServer(Attach, std::filesystem::path directory, unsigned short port);
  void ensure_role();
  std::string run_psql(const std::string& database, const std::vector<std::string>& statements) const;

  std::unique_ptr<TempDir> own_;  // a server of its own: its directory
  TempDir scratch_;               // psql's output
  std::filesystem::path directory_;
  std::filesystem::path data_;
  unsigned short port_ = 0;
  std::unique_ptr<Process> process_;  // a server of its own, while it runs
  std::string role_;
  std::string password_;
  std::vector<std::string> databases_;
};

// The run's server if ctest started one, else one of this program's own;
// made on first use, dropped (or stopped) when the program exits.
PostgresServer& shared_postgres();

// The run file the fixture writes for the ctest process `ctest`
// (build/*/tests/postgres-server/ctest-PID.json) and what it holds.
struct PostgresRun {
  pid_t ctest = -1;       // the ctest process the server belongs to
  pid_t guard = -1;       // the fixture's process that owns the server and watches ctest
  pid_t postmaster = -1;  // the server
  std::filesystem::path directory;
  unsigned short port = 0;
};
std::filesystem::path postgres_run_directory();
std::filesystem::path postgres_run_file(pid_t ctest);
std::optional<PostgresRun> read_postgres_run(const std::filesystem::path& file);
void write_postgres_run(const std::filesystem::path& file, const PostgresRun& run);

// [storage] lines for a daemon on `database` of `server`, its password in
// SECRETS/pg-password (0600): Daemon::Options::storage.
std::string postgres_storage(PostgresServer& server, const std::string& database, const std::filesystem::path& secrets,
                             int pool = 2);

// Integration tests over both backends: the daemon's store is its own
// SQLite file (the harness's default) or a fresh database on the run's
// PostgreSQL server. Parameter names SQLite and PostgreSQL (the latter
// requires the fixture, tests/CMakeLists.txt).
enum class Backend { sqlite, postgresql };
std::string backend_label(Backend b);
inline void PrintTo(Backend b, std::ostream* os) { *os << backend_label(b); }
inline const auto both_backends = ::testing::Values(Backend::sqlite, Backend::postgresql);
inline std::string backend_param_name(const ::testing::TestParamInfo<Backend>& info) {
  return backend_label(info.param);
}

class DaemonStore {
 public:
  explicit DaemonStore(Backend backend);
  Backend backend() const { return backend_; }
  // Daemon::Options with this store ([storage] lines; nothing for SQLite).
  Daemon::Options with(Daemon::Options options) const;
  // How referralctl names the store of `daemon`: --db FILE, or (PostgreSQL:
  // there is no file) --config FILE, followed by `args`.
  std::vector<std::string> ctl_args(const Daemon& daemon, std::vector<std::string> args) const;
  // The first column of the first row of `sql` as an integer, or the number
  // of rows a change changed, behind the daemon's back (SQLite: the file;
  // PostgreSQL: as the server's superuser). -1 when it cannot run.
  long long scalar(const Daemon& daemon, const std::string& sql) const;
  std::optional<std::string> text(const Daemon& daemon, const std::string& sql) const;

 private:
  Backend backend_;
  std::unique_ptr<TempDir> secrets_;
  std::string database_;
  std::string storage_;
};

}  // namespace referrald::test
