#include "support/postgres.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cctype>
#include <cerrno>
#include <csignal>
#include <stdexcept>
#include <thread>

#include "support/peers.hpp"
#include "util/crypto.hpp"

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

// initdb runs through setpriv as the postgres user when we are root.
std::vector<std::string> as_server_user(std::vector<std::string> argv) {
  if (!as_root()) return argv;
  std::vector<std::string> out{"/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

struct ServerUser {
  uid_t uid;
  gid_t gid;
};
ServerUser server_user() {
  const passwd* pw = ::getpwnam("postgres");
  if (pw == nullptr) throw std::runtime_error("no user postgres to run PostgreSQL as (root is refused)");
  return {pw->pw_uid, pw->pw_gid};
}

// Lower-case hex from OpenSSL's random source (2 digits a byte): names and
// passwords that no other test process picks (process ids are reused over a
// long run).
std::string random_hex(std::size_t bytes) {
  const auto random = random_bytes(bytes);
  return to_hex(random.data(), random.size());
}

bool answers(const fs::path& socket_dir, unsigned short port) {
  return shell("pg_isready -q -h " + quoted(socket_dir.string()) + " -p " + std::to_string(port)) == 0;
}

}  // namespace

PostgresServer::PostgresServer()
    : own_(std::make_unique<TempDir>()), directory_(own_->path()), data_(directory_ / "data"), port_(free_port()) {
  if (!fs::exists(bin_dir / "initdb")) {
    throw std::runtime_error("PostgreSQL 15 is not installed (" + (bin_dir / "initdb").string() +
                             "): run scripts/install-deps --test");
  }
  if (as_root()) {
    const ServerUser user = server_user();
    if (::chown(directory_.c_str(), user.uid, user.gid) != 0) {
      throw std::runtime_error("cannot hand " + directory_.string() + " to the postgres user");
    }
  }

  // initdb takes seconds: the first server of a build tree keeps its fresh
  // cluster (made under a lock, renamed into place whole) and every later
  // one starts from a copy of it. cp -a keeps the postgres user's ownership.
  const fs::path cached = binary_dir() / "tests" / "postgres-15-cluster";
  fs::create_directories(cached.parent_path());
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
    if (shell("cd " + quoted(directory_.string()) + " && " + initdb + " >" +
              quoted((directory_ / "initdb.log").string()) + " 2>&1") != 0) {
      throw std::runtime_error("initdb failed:\n" + read_file(directory_ / "initdb.log"));
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
}

PostgresServer::PostgresServer(Attach, fs::path directory, unsigned short port)
    : directory_(std::move(directory)), data_(directory_ / "data"), port_(port) {}

std::unique_ptr<PostgresServer> PostgresServer::of_this_run() {
  const fs::path file = postgres_run_file(::getppid());
  const auto run = read_postgres_run(file);
  if (!run) return nullptr;
  if (!answers(run->directory, run->port)) {
    throw std::runtime_error("the ctest run's PostgreSQL server (" + file.string() + ", port " +
                             std::to_string(run->port) + ") does not answer: did postgres_server_start fail?");
  }
  return std::unique_ptr<PostgresServer>(new PostgresServer(Attach{}, run->directory, run->port));
}

PostgresServer::~PostgresServer() {
  try {
    if (own_) {
      stop();
    } else if (!role_.empty()) {
      // The run's server outlives this process: leave it as it was found.
      std::vector<std::string> drops;
      for (const auto& d : databases_) drops.push_back("DROP DATABASE IF EXISTS " + d + " WITH (FORCE)");
      drops.push_back("DROP ROLE IF EXISTS " + role_);
      run_psql("postgres", drops);
    }
  } catch (...) {
    // Nothing to report to at exit; the fixture removes the whole server.
  }
}

void PostgresServer::start() {
  if (!own_) throw std::logic_error("the ctest run's PostgreSQL server is shared: start a PostgresServer of your own");
  if (process_) return;
  // fsync off: the tests check what referrald does, not the disk; every
  // commit still waits for the server (synchronous_commit stays on). Small
  // buffers and 1 MB WAL segments (initdb above) keep a start and a copy
  // of the cluster cheap.
  std::vector<std::string> argv{(bin_dir / "postgres").string(),
                                "-D",
                                data_.string(),
                                "-p",
                                std::to_string(port_),
                                "-k",
                                directory_.string(),
                                "-c",
                                "listen_addresses=127.0.0.1",
                                "-c",
                                "fsync=off",
                                "-c",
                                "shared_buffers=16MB",
                                "-c",
                                "min_wal_size=4MB",
                                "-c",
                                "max_wal_size=64MB",
                                "-c",
                                "max_connections=200"};
  const ServerUser user = as_root() ? server_user() : ServerUser{::geteuid(), ::getegid()};
  // The server dies with the thread that started it (PR_SET_PDEATHSIG) when
  // that is a process's main thread: a test program or fixture killed by
  // ctest's timeout leaves no server behind. (Not from another thread: the
  // signal follows the thread, not the process.) The user is switched here
  // rather than through setpriv: a change of user clears the parent-death
  // signal, so it is set after it.
  const bool die_with_parent = ::getpid() == static_cast<pid_t>(::syscall(SYS_gettid));
  const pid_t parent = ::getpid();
  const bool switch_user = as_root();
  process_ = std::make_unique<Process>(argv, directory_ / "server.log", std::map<std::string, std::string>{}, [&] {
    if (switch_user && (::setgroups(1, &user.gid) != 0 || ::setgid(user.gid) != 0 || ::setuid(user.uid) != 0)) {
      ::_exit(126);
    }
    if (die_with_parent && (::prctl(PR_SET_PDEATHSIG, SIGQUIT) != 0 || ::getppid() != parent)) ::_exit(125);
  });
  const auto deadline = std::chrono::steady_clock::now() + start_limit;
  while (!answers(directory_, port_)) {
    if (!process_->running() || std::chrono::steady_clock::now() >= deadline) {
      stop();
      throw std::runtime_error("PostgreSQL did not start on port " + std::to_string(port_) + ":\n" + log());
    }
    std::this_thread::sleep_for(50ms);
  }
}

void PostgresServer::stop() {
  if (!own_) throw std::logic_error("the ctest run's PostgreSQL server is shared: stop a PostgresServer of your own");
  if (!process_) return;
  // SIGQUIT: PostgreSQL's immediate shutdown, as pg_ctl -m immediate sends it.
  process_->signal(SIGQUIT);
  if (!process_->wait(30s)) process_->kill9();
  process_.reset();
}

std::string PostgresServer::log() const { return read_file(directory_ / "server.log"); }

std::string PostgresServer::run_psql(const std::string& database, const std::vector<std::string>& statements) const {
  // One -c per statement: each runs in a transaction of its own (CREATE and
  // DROP DATABASE refuse to run inside one).
  const fs::path out = scratch_ / "psql.out";
  std::string command = "psql -X -q -A -t -v ON_ERROR_STOP=1 -h " + quoted(directory_.string()) + " -p " +
                        std::to_string(port_) + " -U postgres -d " + quoted(database);
  for (const auto& s : statements) command += " -c " + quoted(s);
  command += " >" + quoted(out.string()) + " 2>&1";
  if (shell(command) != 0) throw std::runtime_error("psql failed: " + read_file(out));
  return read_file(out);
}

std::string PostgresServer::psql(const std::string& database, const std::string& sql) const {
  return run_psql(database, {sql});
}

void PostgresServer::ensure_role() {
  if (!role_.empty()) return;
  const std::string name = "r_" + std::to_string(::getpid()) + "_" + random_hex(3);
  const std::string password = random_hex(16);
  psql("postgres", "CREATE ROLE " + name + " LOGIN PASSWORD '" + password + "'");
  role_ = name;
  password_ = password;
}

const std::string& PostgresServer::password() {
  ensure_role();
  return password_;
}

std::string PostgresServer::create_database() {
  ensure_role();
  const std::string name = "t_" + std::to_string(::getpid()) + "_" + random_hex(4);
  // Byte order for text, as SQLite compares it (docs/storage.md).
  psql("postgres", "CREATE DATABASE " + name + " OWNER " + role_ +
                       " TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'");
  databases_.push_back(name);
  return name;
}

std::string PostgresServer::url(const std::string& database) {
  ensure_role();
  return "postgresql://" + role_ + "@127.0.0.1:" + std::to_string(port_) + "/" + database;
}

PostgresServer& shared_postgres() {
  static const std::unique_ptr<PostgresServer> server = [] {
    auto run = PostgresServer::of_this_run();
    return run ? std::move(run) : std::make_unique<PostgresServer>();
  }();
  return *server;
}

fs::path postgres_run_directory() { return binary_dir() / "tests" / "postgres-server"; }

fs::path postgres_run_file(pid_t ctest) {
  return postgres_run_directory() / ("ctest-" + std::to_string(ctest) + ".json");
}

std::optional<PostgresRun> read_postgres_run(const fs::path& file) {
  std::error_code ec;
  if (!fs::exists(file, ec)) return std::nullopt;
  try {
    const auto j = nlohmann::json::parse(read_file(file));
    PostgresRun run;
    run.ctest = j.at("ctest").get<pid_t>();
    run.guard = j.at("guard").get<pid_t>();
    run.postmaster = j.at("postmaster").get<pid_t>();
    run.directory = j.at("directory").get<std::string>();
    run.port = j.at("port").get<unsigned short>();
    return run;
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(file.string() + ": not a PostgreSQL run file: " + e.what());
  }
}

void write_postgres_run(const fs::path& file, const PostgresRun& run) {
  const nlohmann::json j{{"ctest", run.ctest},
                         {"guard", run.guard},
                         {"postmaster", run.postmaster},
                         {"directory", run.directory.string()},
                         {"port", run.port}};
  // Whole or not at all: a test never reads half a file.
  const fs::path staged = file.string() + ".new";
  write_file(staged, j.dump() + "\n");
  fs::rename(staged, file);
}

std::string postgres_storage(PostgresServer& server, const std::string& database, const fs::path& secrets, int pool) {
  const fs::path file = secrets / "pg-password";
  write_file(file, server.password() + "\n");
  fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write);
  return "backend = \"postgresql\"\nurl = \"" + server.url(database) + "\"\npassword_file = \"" + file.string() +
         "\"\npool = " + std::to_string(pool) + "\n";
}

std::string backend_label(Backend b) { return b == Backend::sqlite ? "SQLite" : "PostgreSQL"; }

DaemonStore::DaemonStore(Backend backend) : backend_(backend) {
  if (backend_ == Backend::sqlite) return;
  secrets_ = std::make_unique<TempDir>();
  database_ = shared_postgres().create_database();
  storage_ = postgres_storage(shared_postgres(), database_, secrets_->path());
}

Daemon::Options DaemonStore::with(Daemon::Options options) const {
  if (backend_ == Backend::postgresql) options.storage = storage_;
  return options;
}

std::vector<std::string> DaemonStore::ctl_args(const Daemon& daemon, std::vector<std::string> args) const {
  std::vector<std::string> out = backend_ == Backend::sqlite
                                     ? std::vector<std::string>{"--db", daemon.database().string()}
                                     : std::vector<std::string>{"--config", daemon.config_file().string()};
  out.insert(out.end(), args.begin(), args.end());
  return out;
}

namespace {
bool is_change(const std::string& sql) {
  std::string head;
  for (char c : sql.substr(0, 8)) head += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return head.rfind("UPDATE", 0) == 0 || head.rfind("INSERT", 0) == 0 || head.rfind("DELETE", 0) == 0;
}
}  // namespace

std::optional<std::string> DaemonStore::text(const Daemon& daemon, const std::string& sql) const {
  if (backend_ == Backend::sqlite) return query_text(daemon.database(), sql);
  try {
    std::string out = shared_postgres().psql(database_, sql);
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    if (out.empty()) return std::nullopt;
    return out.substr(0, out.find('\n'));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

long long DaemonStore::scalar(const Daemon& daemon, const std::string& sql) const {
  if (backend_ == Backend::sqlite) return test::scalar(daemon.database(), sql);
  // A change says how many rows it changed, as sqlite3_changes does.
  const auto value =
      text(daemon, is_change(sql) ? "WITH changed AS (" + sql + " RETURNING 1) SELECT count(*) FROM changed" : sql);
  if (!value) return -1;
  try {
    return std::stoll(*value);
  } catch (const std::exception&) {
    return -1;
  }
}

}  // namespace referrald::test
