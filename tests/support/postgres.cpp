#include "support/postgres.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <unistd.h>

#include <csignal>
#include <stdexcept>
#include <thread>

#include "support/peers.hpp"

namespace referrald::test {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

const fs::path bin_dir = "/usr/lib/postgresql/15/bin";
constexpr auto start_limit = 60s;

std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string joined(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) out += (out.empty() ? "" : " ") + quoted(a);
  return out;
}

bool as_root() { return ::geteuid() == 0; }

}  // namespace

std::vector<std::string> PostgresServer::as_server_user(std::vector<std::string> argv) const {
  if (!as_root()) return argv;
  // setpriv execs the command itself (no process in between), so the
  // process this harness signals is the server.
  std::vector<std::string> out{"/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

PostgresServer::PostgresServer() : data_(dir_.path() / "data"), port_(free_port()) {
  if (!fs::exists(bin_dir / "initdb")) {
    throw std::runtime_error("PostgreSQL 15 is not installed (" + (bin_dir / "initdb").string() +
                             "): run scripts/install-deps --test");
  }
  if (as_root()) {
    const passwd* pw = ::getpwnam("postgres");
    if (pw == nullptr) throw std::runtime_error("no user postgres to run PostgreSQL as (root is refused)");
    if (::chown(dir_.path().c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      throw std::runtime_error("cannot hand " + dir_.path().string() + " to the postgres user");
    }
  }
  password_ = output_of("openssl rand -hex 16");
  while (!password_.empty() && (password_.back() == '\n' || password_.back() == '\r')) password_.pop_back();

  // initdb takes seconds and CTest runs each test case in a process of its
  // own: the first server of a build tree keeps its fresh cluster (made
  // under a lock, renamed into place whole) and every later one starts
  // from a copy of it. cp -a keeps the postgres user's ownership.
  const fs::path cached = binary_dir() / "tests" / "postgres-15-cluster";
  const int lock = ::open((cached.string() + ".lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  if (lock < 0 || ::flock(lock, LOCK_EX) != 0) {
    if (lock >= 0) ::close(lock);
    throw std::runtime_error("cannot lock " + cached.string() + ".lock");
  }
  struct Unlock {
    int fd;
    ~Unlock() { ::close(fd); }
  } unlock{lock};
  if (!fs::exists(cached / "PG_VERSION")) {
    const std::string initdb = joined(
        as_server_user({(bin_dir / "initdb").string(), "-D", data_.string(), "-U", "postgres", "--auth-local=trust",
                        "--auth-host=scram-sha-256", "-E", "UTF8", "--wal-segsize=1", "--no-instructions"}));
    if (shell("cd " + quoted(dir_.path().string()) + " && " + initdb + " >" + quoted((dir_ / "initdb.log").string()) +
              " 2>&1") != 0) {
      throw std::runtime_error("initdb failed:\n" + read_file(dir_ / "initdb.log"));
    }
    const std::string staged = cached.string() + ".new";
    if (shell("rm -rf " + quoted(staged) + " && cp -a " + quoted(data_.string()) + " " + quoted(staged) + " && mv " +
              quoted(staged) + " " + quoted(cached.string())) != 0) {
      throw std::runtime_error("cannot keep the cluster in " + cached.string());
    }
  } else if (shell("cp -a " + quoted(cached.string()) + " " + quoted(data_.string())) != 0) {
    throw std::runtime_error("cannot copy the cluster from " + cached.string());
  }
  start();
  psql("postgres", "CREATE ROLE referrald LOGIN PASSWORD '" + password_ + "'");
}

PostgresServer::~PostgresServer() {
  try {
    stop();
  } catch (...) {
    // The process is killed by its own destructor then.
  }
}

void PostgresServer::start() {
  if (process_) return;
  // fsync off: the tests check what referrald does, not the disk; every
  // commit still waits for the server (synchronous_commit stays on). Small
  // buffers and 1 MB WAL segments (initdb above) keep a start and a copy
  // of the cluster cheap.
  process_ = std::make_unique<Process>(
      as_server_user({(bin_dir / "postgres").string(), "-D", data_.string(), "-p", std::to_string(port_), "-k",
                      dir_.path().string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c",
                      "shared_buffers=16MB", "-c", "min_wal_size=4MB", "-c", "max_wal_size=64MB"}),
      dir_ / "server.log");
  const auto deadline = std::chrono::steady_clock::now() + start_limit;
  const std::string ready = "pg_isready -q -h " + quoted(dir_.path().string()) + " -p " + std::to_string(port_);
  while (shell(ready) != 0) {
    if (!process_->running() || std::chrono::steady_clock::now() >= deadline) {
      const std::string log = read_file(dir_ / "server.log");
      process_.reset();
      throw std::runtime_error("PostgreSQL did not start on port " + std::to_string(port_) + ":\n" + log);
    }
    std::this_thread::sleep_for(50ms);
  }
}

void PostgresServer::stop() {
  if (!process_) return;
  // SIGQUIT: PostgreSQL's immediate shutdown, as pg_ctl -m immediate sends it.
  process_->signal(SIGQUIT);
  if (!process_->wait(30s)) process_->kill9();
  process_.reset();
}

std::string PostgresServer::log() const { return read_file(dir_ / "server.log"); }

std::string PostgresServer::psql(const std::string& database, const std::string& sql) const {
  const fs::path out = dir_ / "psql.out";
  const std::string command = "psql -X -q -A -t -v ON_ERROR_STOP=1 -h " + quoted(dir_.path().string()) + " -p " +
                              std::to_string(port_) + " -U postgres -d " + quoted(database) + " -c " + quoted(sql) +
                              " >" + quoted(out.string()) + " 2>&1";
  if (shell(command) != 0) throw std::runtime_error("psql failed: " + read_file(out));
  return read_file(out);
}

std::string PostgresServer::create_database() {
  const std::string name = "t_" + std::to_string(::getpid()) + "_" + std::to_string(++databases_);
  // Byte order for text, as SQLite compares it (docs/storage.md).
  psql("postgres",
       "CREATE DATABASE " + name + " OWNER referrald TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'");
  return name;
}

std::string PostgresServer::url(const std::string& database) const {
  return "postgresql://referrald@127.0.0.1:" + std::to_string(port_) + "/" + database;
}

PostgresServer& shared_postgres() {
  static PostgresServer server;
  return server;
}

}  // namespace referrald::test
