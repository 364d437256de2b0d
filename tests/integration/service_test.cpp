// referrald as systemd runs it: the sd_notify messages on a NOTIFY_SOCKET
// (READY once the port answers, WATCHDOG from the loop at a third of
// WATCHDOG_USEC, RELOADING/READY around SIGHUP, STOPPING), reload with a good
// and a bad configuration, SIGTERM under load, leases left by a crash, and
// the journal's log format.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "support/harness.hpp"

namespace referrald::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

// The service manager's end of sd_notify: an AF_UNIX datagram socket that
// records every message with its arrival time and the sender's pid.
class NotifyListener {
 public:
  struct Message {
    steady::time_point at;
    pid_t pid = 0;
    std::string text;
    bool has(std::string_view line) const {
      std::istringstream in(text);
      for (std::string l; std::getline(in, l);) {
        if (l == line) return true;
      }
      return false;
    }
    std::optional<std::string> value(std::string_view key) const {
      std::istringstream in(text);
      for (std::string l; std::getline(in, l);) {
        if (l.starts_with(std::string(key) + "=")) return l.substr(key.size() + 1);
      }
      return std::nullopt;
    }
  };

  // A file system path, or "@name" for the abstract namespace (as systemd
  // passes it inside some containers).
  explicit NotifyListener(std::string address) : address_(std::move(address)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("socket(AF_UNIX) failed");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::string name = address_;
    if (name.size() >= sizeof addr.sun_path) throw std::runtime_error("socket address too long: " + name);
    if (name[0] == '@') name[0] = '\0';
    std::memcpy(addr.sun_path, name.data(), name.size());
    // The exact length: an abstract name has no terminating NUL.
    const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), length) != 0) {
      throw std::runtime_error("bind " + address_ + ": " + std::strerror(errno));
    }
    const int on = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
    thread_ = std::thread([this] { receive(); });
  }

  ~NotifyListener() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  NotifyListener(const NotifyListener&) = delete;
  NotifyListener& operator=(const NotifyListener&) = delete;

  const std::string& address() const { return address_; }

  // The index of the first message at or after `from` that has `line`
  // (e.g. "READY=1"), waiting up to `timeout` for it.
  std::optional<std::size_t> wait_for(std::string_view line, std::chrono::milliseconds timeout, std::size_t from = 0) {
    std::unique_lock lock(mutex_);
    std::optional<std::size_t> found;
    arrived_.wait_for(lock, timeout, [&] {
      for (std::size_t i = from; i < messages_.size(); ++i) {
        if (messages_[i].has(line)) {
          found = i;
          return true;
        }
      }
      return false;
    });
    return found;
  }

  std::vector<Message> messages() const {
    std::lock_guard lock(mutex_);
    return messages_;
  }
  Message at(std::size_t i) const {
    std::lock_guard lock(mutex_);
    return messages_.at(i);
  }
  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return messages_.size();
  }

  // Every message, one per line, for failure output.
  std::string dump() const {
    std::string out;
    for (const auto& m : messages()) out += "  [" + std::to_string(m.pid) + "] " + m.text + "\n";
    return out;
  }

 private:
  void receive() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      char buffer[4096];
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
      iovec iov{buffer, sizeof buffer};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      const ssize_t n = ::recvmsg(fd_, &msg, MSG_DONTWAIT);
      if (n < 0) continue;
      Message m{steady::now(), 0, std::string(buffer, static_cast<std::size_t>(n))};
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
          ucred cred{};
          std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
          m.pid = cred.pid;
        }
      }
      {
        std::lock_guard lock(mutex_);
        messages_.push_back(std::move(m));
      }
      arrived_.notify_all();
    }
  }

  std::string address_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  mutable std::mutex mutex_;
  std::condition_variable arrived_;
  std::vector<Message> messages_;
  std::thread thread_;
};

long long monotonic_usec() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000000LL + ts.tv_nsec / 1000;
}

// Reads the database with the sqlite3 C API: the test checks the file, not our store code.
std::vector<std::string> query(const fs::path& db, const std::string& sql) {
  sqlite3* handle = nullptr;
  std::vector<std::string> rows;
  if (sqlite3_open_v2(db.c_str(), &handle, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(handle);
    throw std::runtime_error("cannot open " + db.string());
  }
  sqlite3_busy_timeout(handle, 5000);
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(handle, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    const std::string error = sqlite3_errmsg(handle);
    sqlite3_close(handle);
    throw std::runtime_error(sql + ": " + error);
  }
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    const auto* text = sqlite3_column_text(stmt, 0);
    rows.emplace_back(text ? reinterpret_cast<const char*>(text) : "");
  }
  sqlite3_finalize(stmt);
  sqlite3_close(handle);
  return rows;
}

long long count(const fs::path& db, const std::string& sql) { return std::stoll(query(db, sql).at(0)); }

void execute(const fs::path& db, const std::string& sql) {
  sqlite3* handle = nullptr;
  ASSERT_EQ(sqlite3_open_v2(db.c_str(), &handle, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
  sqlite3_busy_timeout(handle, 5000);
  char* error = nullptr;
  const int rc = sqlite3_exec(handle, sql.c_str(), nullptr, nullptr, &error);
  const std::string message = error ? error : "";
  sqlite3_free(error);
  sqlite3_close(handle);
  ASSERT_EQ(rc, SQLITE_OK) << sql << ": " << message;
}

Daemon::Options unlimited() {
  Daemon::Options o;
  o.extra_http = "rate_limit_per_minute = 0\n";  // load tests come from one address
  return o;
}

class Service : public ::testing::Test {
 protected:
  Service() { daemon.set_env("NOTIFY_SOCKET", notify.address()); }

  // Launches the daemon and waits for READY=1; returns its index.
  std::size_t start_and_wait_ready() {
    daemon.launch();
    const auto ready = notify.wait_for("READY=1", 20s);
    if (!ready) {
      ADD_FAILURE() << "no READY=1 within 20 s; messages:\n" << notify.dump() << "log:\n" << daemon.log();
      throw std::runtime_error("not ready");
    }
    return *ready;
  }

  std::string post_id(const std::string& body) {
    const auto r = daemon.post_referral(body);
    if (r.status != 202) {
      ADD_FAILURE() << r.status << " " << r.body << r.error;
      return {};
    }
    return json::parse(r.body)["id"];
  }

  std::set<std::string> targets_of(const std::string& id) {
    const auto got = daemon.get("/api/v1/referrals/" + id);
    std::set<std::string> out;
    if (got.status != 200) {
      ADD_FAILURE() << got.status << " " << got.body;
      return out;
    }
    const auto view = json::parse(got.body);  // named: a range-for would not keep a temporary alive
    for (const auto& d : view["deliveries"]) out.insert(d["target"].get<std::string>());
    return out;
  }

  // Waits for RELOADING=1 and then READY=1 after message `from`.
  void expect_reload_cycle(std::size_t from) {
    const auto reloading = notify.wait_for("RELOADING=1", 10s, from);
    ASSERT_TRUE(reloading) << notify.dump() << daemon.log();
    const auto ready = notify.wait_for("READY=1", 10s, *reloading + 1);
    ASSERT_TRUE(ready) << notify.dump() << daemon.log();
  }

  Daemon daemon{unlimited()};
  NotifyListener notify{(daemon.dir() / "notify.sock").string()};
};

// ---- READY ------------------------------------------------------------------

TEST_F(Service, ReadyComesFromTheMainProcessOnceThePortAnswers) {
  const auto ready = start_and_wait_ready();
  // Listeners are bound before READY=1: the first request after it succeeds.
  HttpRequest r;
  r.url = daemon.base_url() + "/healthz";
  r.timeout = 2s;
  const auto health = http(r);
  EXPECT_EQ(health.status, 200) << health.error;

  const auto m = notify.at(ready);
  EXPECT_EQ(m.pid, daemon.process()->pid());  // NotifyAccess=main
  ASSERT_TRUE(m.value("STATUS")) << m.text;
  EXPECT_NE(m.value("STATUS")->find("write queue 0"), std::string::npos) << m.text;
  EXPECT_NE(m.value("STATUS")->find("deliveries in flight"), std::string::npos) << m.text;
  // Nothing claims readiness twice without a reload in between.
  EXPECT_FALSE(notify.wait_for("READY=1", 300ms, ready + 1)) << notify.dump();
}

// What `top -H` and `ps -L` show an operator: the process is referrald and
// each of its other threads says what it is for.
TEST_F(Service, EveryThreadButTheMainOneIsNamedForItsWork) {
  start_and_wait_ready();
  const std::string pid = std::to_string(daemon.process()->pid());
  const auto read_names = [&] {
    std::map<std::string, std::string> names;  // thread id -> name
    for (const auto& task : fs::directory_iterator(fs::path("/proc") / pid / "task")) {
      std::ifstream in(task.path() / "comm");
      std::getline(in, names[task.path().filename().string()]);
    }
    return names;
  };
  // A thread names itself as it starts (the last HTTP thread starts just
  // after READY=1): wait until none is left with the process's name.
  // ThreadSanitizer starts a thread of its own from the main thread, which
  // keeps the main thread's name.
#if defined(__SANITIZE_THREAD__)
  const std::size_t not_ours = 1;
#else
  const std::size_t not_ours = 0;
#endif
  std::multiset<std::string> others;
  std::string main_name;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  do {
    others.clear();
    for (const auto& [tid, name] : read_names()) {
      if (tid == pid) {
        main_name = name;
      } else {
        others.insert(name);
      }
    }
    if (others.count("referrald") == not_ours && others.count("rd-http") == 1) break;
    std::this_thread::sleep_for(20ms);
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(main_name, "referrald");
  EXPECT_EQ(others.count("referrald"), not_ours) << "a thread left unnamed";
  EXPECT_EQ(others.count("rd-http"), 1U);  // http.threads = 2: this one and the main thread
  EXPECT_EQ(others.count("rd-writer"), 1U);
  EXPECT_EQ(others.count("rd-logsync"), 1U);
  EXPECT_EQ(others.count("rd-checkpoint"), 1U);
  EXPECT_EQ(others.count("rd-reader"), 2U);
  EXPECT_EQ(others.count("rd-blocking"), 2U);
  EXPECT_EQ(others.count("rd-curl"), 8U);
}

TEST(ServiceNotify, ReadyReachesAnAbstractNotifySocket) {
  Daemon d{Daemon::Options{}};
  NotifyListener abstract("@referrald-test-" + std::to_string(::getpid()) + "-" + d.dir().filename().string());
  d.set_env("NOTIFY_SOCKET", abstract.address());
  d.launch();
  EXPECT_TRUE(abstract.wait_for("READY=1", 20s)) << abstract.dump() << d.log();
}

TEST_F(Service, NoReadyWhenTheListenerCannotBind) {
  // Someone else holds the port: start-up fails, and systemd must not hear READY.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(daemon.port());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  daemon.launch();
  const auto status = daemon.process()->wait(15s);
  ::close(fd);
  ASSERT_TRUE(status) << "referrald kept running on a port it cannot bind";
  EXPECT_EQ(*status, 1);
  EXPECT_FALSE(notify.wait_for("READY=1", 100ms)) << notify.dump();
  EXPECT_NE(daemon.log().find("referrald.start_failed"), std::string::npos) << daemon.log();
}

TEST_F(Service, AnInvalidConfigurationExitsWithExConfigAndNoReady) {
  write_file(daemon.config_file(), read_file(daemon.config_file()) + "\n[[route]]\nnotify = [\"nowhere\"]\n");
  daemon.launch();
  const auto status = daemon.process()->wait(15s);
  ASSERT_TRUE(status) << "referrald kept running on an invalid configuration";
  // 78 (EX_CONFIG): the unit's RestartPreventExitStatus=78 stops systemd from retrying.
  EXPECT_EQ(*status, 78) << daemon.log();
  EXPECT_FALSE(notify.wait_for("READY=1", 100ms)) << notify.dump();
  EXPECT_NE(daemon.log().find("config.invalid problem=\"" + daemon.config_file().string()), std::string::npos)
      << daemon.log();
}

// ---- WATCHDOG ---------------------------------------------------------------

TEST_F(Service, WatchdogPingsAtAThirdOfTheTimeout) {
  // systemd's deadline 900 ms: a ping every 300 ms (a third), not every
  // 450 ms (half, sd_watchdog_enabled's advice) nor in a busy loop. A busy
  // machine delays single pings by a few hundred milliseconds (the receiving
  // end is a test thread too), so the interval is judged by the median gap,
  // and only a gap as long as the deadline itself counts as a miss.
  daemon.set_env("WATCHDOG_USEC", "900000");
  const auto ready = start_and_wait_ready();
  std::this_thread::sleep_for(3s);
  const auto messages = notify.messages();
  const auto ready_at = messages[ready].at;
  std::vector<steady::duration> gaps;
  auto previous = ready_at;
  for (const auto& m : messages) {
    if (m.has("WATCHDOG=1")) {
      EXPECT_EQ(m.pid, daemon.process()->pid());
      if (m.at > ready_at + 3s) break;
      gaps.push_back(m.at - previous);
      previous = m.at;
    }
  }
  // 10 in 3 s; far from "not at all" and from a busy loop.
  ASSERT_GE(gaps.size(), 5U) << notify.dump();
  EXPECT_LE(gaps.size(), 20U) << notify.dump();
  auto sorted = gaps;
  std::sort(sorted.begin(), sorted.end());
  const auto median = sorted[sorted.size() / 2];
  EXPECT_GE(median, 200ms) << notify.dump();
  EXPECT_LE(median, 400ms) << notify.dump();
  EXPECT_LT(sorted.back(), 900ms) << "a gap as long as systemd's deadline\n" << notify.dump();
}

TEST_F(Service, NoWatchdogWhenItIsMeantForAnotherProcess) {
  daemon.set_env("WATCHDOG_USEC", "300000");
  daemon.set_env("WATCHDOG_PID", "1");
  start_and_wait_ready();
  std::this_thread::sleep_for(700ms);
  for (const auto& m : notify.messages()) EXPECT_FALSE(m.has("WATCHDOG=1")) << m.text;
}

TEST_F(Service, NoWatchdogWithoutWatchdogUsec) {
  start_and_wait_ready();
  std::this_thread::sleep_for(500ms);
  for (const auto& m : notify.messages()) EXPECT_FALSE(m.has("WATCHDOG=1")) << m.text;
}

// ---- reload -----------------------------------------------------------------

TEST_F(Service, ReloadSendsReloadingWithMonotonicTimeThenReady) {
  const auto ready = start_and_wait_ready();
  const auto before = monotonic_usec();
  daemon.process()->signal(SIGHUP);
  const auto reloading = notify.wait_for("RELOADING=1", 10s, ready + 1);
  ASSERT_TRUE(reloading) << notify.dump() << daemon.log();
  const auto after = monotonic_usec();
  const auto m = notify.at(*reloading);
  ASSERT_TRUE(m.value("MONOTONIC_USEC")) << m.text;
  const long long usec = std::stoll(*m.value("MONOTONIC_USEC"));
  EXPECT_GE(usec, before);
  EXPECT_LE(usec, after);
  const auto ready_again = notify.wait_for("READY=1", 10s, *reloading + 1);
  ASSERT_TRUE(ready_again) << notify.dump();
  EXPECT_TRUE(notify.at(*ready_again).value("STATUS")) << notify.at(*ready_again).text;
  EXPECT_TRUE(wait_until([&] { return daemon.log().find("config.reloaded") != std::string::npos; }, 5s))
      << daemon.log();
}

constexpr const char* fax_target_and_route = R"(
[[target]]
name = "office-fax"
type = "spool"
directory = "spool/office-fax"

[[route]]
notify = ["office-fax"]
)";

TEST_F(Service, GoodReloadRoutesNewReferralsAndLeavesDeliveriesInFlightAlone) {
  const auto ready = start_and_wait_ready();
  const auto first = post_id(referral_json("Ava", "2014-03-09"));
  EXPECT_EQ(targets_of(first), (std::set<std::string>{"office-email"}));

  // Referrals keep arriving while the configuration changes under them.
  std::atomic<bool> stop{false};
  std::vector<std::string> during;
  std::mutex during_mutex;
  std::thread load([&] {
    while (!stop) {
      const auto r = daemon.post_referral(referral_json("Ava", "2014-03-09"));
      ASSERT_EQ(r.status, 202) << r.body << r.error;
      std::lock_guard lock(during_mutex);
      during.push_back(json::parse(r.body)["id"]);
    }
  });
  std::this_thread::sleep_for(200ms);
  write_file(daemon.config_file(), read_file(daemon.config_file()) + fax_target_and_route);
  daemon.process()->signal(SIGHUP);
  expect_reload_cycle(ready + 1);
  std::this_thread::sleep_for(200ms);
  stop = true;
  load.join();
  EXPECT_NE(daemon.log().find("config.reloaded targets=3 routes=3"), std::string::npos) << daemon.log();

  const auto second = post_id(referral_json("Ava", "2014-03-09"));
  EXPECT_EQ(targets_of(second), (std::set<std::string>{"office-email", "office-fax"}));
  EXPECT_TRUE(wait_until([&] { return fs::exists(daemon.spool("office-fax") / (second + ".office-fax.json")); }, 10s));

  // Everything submitted around the reload is delivered, once, by the target it was routed to.
  ASSERT_FALSE(during.empty());
  EXPECT_TRUE(wait_until(
      [&] { return count(daemon.database(), "SELECT count(*) FROM deliveries WHERE state <> 'delivered'") == 0; }, 20s))
      << daemon.log();
  EXPECT_EQ(count(daemon.database(), "SELECT count(*) FROM deliveries WHERE attempts <> 1"), 0);
  EXPECT_EQ(count(daemon.database(), "SELECT count(*) FROM referrals"), static_cast<long long>(during.size()) + 2);
}

TEST_F(Service, BadReloadIsRefusedAndTheOldConfigurationKeepsServing) {
  const auto ready = start_and_wait_ready();
  // A valid change and a mistake: nothing of the file may take effect.
  write_file(daemon.config_file(),
             read_file(daemon.config_file()) + fax_target_and_route + "\n[[route]]\nnotify = [\"nowhere\"]\n");
  const auto lines = [&] {
    std::size_t n = 0;
    for (const char c : read_file(daemon.config_file())) n += c == '\n' ? 1 : 0;
    return n;
  }();
  daemon.process()->signal(SIGHUP);
  expect_reload_cycle(ready + 1);
  ASSERT_TRUE(wait_until([&] { return daemon.log().find("config.reload_refused") != std::string::npos; }, 5s))
      << daemon.log();
  const std::string log = daemon.log();
  // The problem names the file and line, as --check-config would.
  EXPECT_NE(log.find("config.reload_refused problem=\"" + daemon.config_file().string() + ":" + std::to_string(lines) +
                     ": route[3].notify: unknown target \"nowhere\"\""),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("the previous configuration keeps running"), std::string::npos) << log;
  EXPECT_EQ(log.find("config.reloaded"), std::string::npos) << log;

  ASSERT_TRUE(daemon.running());
  const auto id = post_id(referral_json("Ava", "2014-03-09"));
  EXPECT_EQ(targets_of(id), (std::set<std::string>{"office-email"}));
  EXPECT_EQ(daemon.stop(), 0);
}

// ---- systemctl reload: the unit's ExecReload= (referrald --reload $MAINPID) ----

class ServiceReloadCommand : public Service {
 protected:
  ServiceReloadCommand() {
    fs::create_directories(runtime_);
    daemon.set_env("RUNTIME_DIRECTORY", runtime_.string());
  }
  // What systemd runs for `systemctl reload`, with the unit's environment.
  CtlRun reload_command() {
    return run_program(referrald_binary(), {"--reload", std::to_string(daemon.process()->pid())},
                       {{"RUNTIME_DIRECTORY", runtime_.string()}});
  }
  fs::path runtime_ = daemon.dir() / "run";
};

TEST_F(ServiceReloadCommand, SucceedsWhenTheDaemonTakesTheFile) {
  start_and_wait_ready();
  write_file(daemon.config_file(), read_file(daemon.config_file()) + fax_target_and_route);
  const auto run = reload_command();
  EXPECT_EQ(run.status, 0) << describe(run) << daemon.log();
  EXPECT_NE(run.out.find("reloaded its configuration"), std::string::npos) << describe(run);
  // The daemon answered only after it had switched: the next referral takes the new route.
  EXPECT_EQ(targets_of(post_id(referral_json("Ava", "2014-03-09"))),
            (std::set<std::string>{"office-email", "office-fax"}));
  // Each reload is answered anew, not by the previous answer.
  const auto again = reload_command();
  EXPECT_EQ(again.status, 0) << describe(again);
  const std::string log = daemon.log();
  std::size_t reloads = 0;
  for (auto at = log.find("config.reloaded "); at != std::string::npos; at = log.find("config.reloaded ", at + 1)) {
    ++reloads;
  }
  EXPECT_EQ(reloads, 2U) << log;
  EXPECT_EQ(fs::status(runtime_ / "reload-outcome").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
}

TEST_F(ServiceReloadCommand, FailsWithTheProblemsWhenTheDaemonRefusesTheFile) {
  start_and_wait_ready();
  write_file(daemon.config_file(), read_file(daemon.config_file()) + "\n[[route]]\nnotify = [\"nowhere\"]\n");
  const auto run = reload_command();
  EXPECT_EQ(run.status, 1) << describe(run) << daemon.log();
  EXPECT_NE(run.err.find("refused the configuration and keeps running the previous one"), std::string::npos)
      << describe(run);
  EXPECT_NE(run.err.find(daemon.config_file().string() + ":"), std::string::npos) << describe(run);
  EXPECT_NE(run.err.find(R"(unknown target "nowhere")"), std::string::npos) << describe(run);
  ASSERT_TRUE(daemon.running());
  EXPECT_EQ(targets_of(post_id(referral_json("Ava", "2014-03-09"))), (std::set<std::string>{"office-email"}));
}

TEST_F(ServiceReloadCommand, FailsForAProcessThatIsNotThere) {
  start_and_wait_ready();
  const pid_t gone = [] {
    const pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    ::waitpid(child, nullptr, 0);
    return child;
  }();
  const auto run =
      run_program(referrald_binary(), {"--reload", std::to_string(gone)}, {{"RUNTIME_DIRECTORY", runtime_.string()}});
  EXPECT_EQ(run.status, 1) << describe(run);
  EXPECT_NE(run.err.find("cannot signal process " + std::to_string(gone)), std::string::npos) << describe(run);
  // Without the directory systemd would have made, it says what is missing.
  const auto bare = run_program(referrald_binary(), {"--reload", std::to_string(daemon.process()->pid())},
                                {{"RUNTIME_DIRECTORY", ""}});
  EXPECT_EQ(bare.status, 1) << describe(bare);
  EXPECT_NE(bare.err.find("$RUNTIME_DIRECTORY is not set"), std::string::npos) << describe(bare);
}

// ---- stop -------------------------------------------------------------------

TEST_F(Service, SigtermSendsStoppingAndExitsZero) {
  const auto ready = start_and_wait_ready();
  const auto id = post_id(referral_json("Ava", "2014-03-09"));
  daemon.process()->signal(SIGTERM);
  EXPECT_TRUE(notify.wait_for("STOPPING=1", 10s, ready + 1)) << notify.dump();
  const auto status = daemon.process()->wait(30s);
  ASSERT_TRUE(status) << "referrald did not exit within 30 s of SIGTERM";
  EXPECT_EQ(*status, 0) << daemon.log();
  EXPECT_NE(daemon.log().find("referrald.stopped"), std::string::npos) << daemon.log();
  EXPECT_EQ(count(daemon.database(), "SELECT count(*) FROM referrals WHERE id = '" + id + "'"), 1);
}

TEST_F(Service, SigtermUnderLoadLosesNoAcceptedReferralAndLeavesNothingSending) {
  start_and_wait_ready();
  std::atomic<bool> terminated{false};
  std::atomic<int> accepted{0};
  std::mutex ids_mutex;
  std::vector<std::string> ids;
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&, t] {
      const auto deadline = steady::now() + 60s;
      for (int i = 0; steady::now() < deadline; ++i) {
        const auto urgency = (i + t) % 3 == 0 ? "urgent" : "routine";  // two targets for some
        const auto r = daemon.post_referral(referral_json("Ava", "2014-03-09", "Alveolar soft part sarcoma", urgency));
        if (r.status == 202) {
          ++accepted;
          std::lock_guard lock(ids_mutex);
          ids.push_back(json::parse(r.body)["id"]);
        } else if (terminated && r.status == 0) {
          return;  // the listener is closed: the daemon is going
        } else if (!terminated) {
          ADD_FAILURE() << "before SIGTERM: " << r.status << " " << r.body << r.error;
          return;
        }
      }
    });
  }
  ASSERT_TRUE(wait_until([&] { return accepted >= 200; }, 30s)) << accepted;
  terminated = true;
  daemon.process()->signal(SIGTERM);
  const auto status = daemon.process()->wait(40s);
  for (auto& c : clients) c.join();
  ASSERT_TRUE(status) << "referrald did not exit within 40 s of SIGTERM";
  EXPECT_EQ(*status, 0) << daemon.log();

  // Every 202 is a committed referral, with its deliveries.
  const auto stored = query(daemon.database(), "SELECT id FROM referrals");
  const std::set<std::string> in_db(stored.begin(), stored.end());
  for (const auto& id : ids) EXPECT_TRUE(in_db.count(id)) << id << " was answered 202 but is not stored";
  EXPECT_EQ(count(daemon.database(),
                  "SELECT count(*) FROM referrals r WHERE NOT EXISTS "
                  "(SELECT 1 FROM deliveries d WHERE d.referral_id = r.id)"),
            0);
  // Sends in progress finished (or were never started): nothing is left leased.
  EXPECT_EQ(count(daemon.database(), "SELECT count(*) FROM deliveries WHERE state = 'sending'"), 0) << daemon.log();
  EXPECT_EQ(daemon.log().find("dispatch.stop_timeout"), std::string::npos) << daemon.log();

  // What was still queued goes out after a restart.
  daemon.start();
  EXPECT_TRUE(wait_until(
      [&] { return count(daemon.database(), "SELECT count(*) FROM deliveries WHERE state <> 'delivered'") == 0; }, 60s))
      << daemon.log();
  EXPECT_EQ(daemon.stop(), 0);
}

TEST_F(Service, SendLeftLeasedByACrashIsRetriedAtStartNotWhenTheLeaseRunsOut) {
  start_and_wait_ready();
  const auto id = post_id(referral_json("Ava", "2014-03-09"));
  const auto file = daemon.spool("office-email") / (id + ".office-email.json");
  ASSERT_TRUE(wait_until([&] { return fs::exists(file); }, 10s));
  ASSERT_EQ(daemon.stop(), 0);
  // As a crash mid-send leaves it: claimed, attempt counted, leased for an hour.
  fs::remove(file);
  const auto in_an_hour =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch() + 1h)
          .count();
  execute(daemon.database(), "UPDATE deliveries SET state = 'sending', attempts = attempts + 1, lease_until_ms = " +
                                 std::to_string(in_an_hour) + " WHERE referral_id = '" + id + "'");
  daemon.start();
  EXPECT_TRUE(wait_until([&] { return fs::exists(file); }, 15s)) << daemon.log();
  EXPECT_TRUE(wait_until(
      [&] {
        return query(daemon.database(), "SELECT state FROM deliveries WHERE referral_id = '" + id + "'") ==
               std::vector<std::string>{"delivered"};
      },
      10s));
  EXPECT_EQ(query(daemon.database(), "SELECT attempts FROM deliveries WHERE referral_id = '" + id + "'"),
            std::vector<std::string>{"3"});
  EXPECT_NE(daemon.log().find("dispatch.leases_released count=1"), std::string::npos) << daemon.log();
}

// ---- logs for the journal -----------------------------------------------------

// Starts, logs at several levels (a reload that needs a restart warns; a bad
// one errs), stops; returns the log.
std::string exercise_logging(Daemon& d) {
  d.start();
  const std::string config = read_file(d.config_file());
  // A changed listen address is a warning (it needs a restart) ...
  write_file(d.config_file(), std::regex_replace(config, std::regex("listen = \"127.0.0.1:"), "listen = \"127.0.0.2:"));
  d.process()->signal(SIGHUP);
  wait_until([&] { return d.log().find("config.reloaded") != std::string::npos; }, 10s);
  // ... and a broken file an error.
  write_file(d.config_file(), config + "\n[nonsense]\n");
  d.process()->signal(SIGHUP);
  wait_until([&] { return d.log().find("config.reload_refused") != std::string::npos; }, 10s);
  d.stop();
  return d.log();
}

TEST(ServiceLogs, UnderJournaldLinesCarryPriorityAndNoTimestamp) {
  Daemon d{Daemon::Options{}};
  // systemd connects stderr to the journal and names that stream in
  // JOURNAL_STREAM as device:inode; here the stream is the log file.
  const auto log_file = d.log_file();
  write_file(log_file, "");
  struct stat st {};
  ASSERT_EQ(::stat(log_file.c_str(), &st), 0);
  d.set_env("JOURNAL_STREAM", std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino));
  const std::string log = exercise_logging(d);

  std::istringstream in(log);
  int lines = 0;
  const std::regex journal_line(R"(^<[0-7]>[a-z0-9_]+\.[a-z0-9_.]+( .*)?$)");
  const std::regex timestamp(R"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2})");
  for (std::string line; std::getline(in, line);) {
    ++lines;
    EXPECT_TRUE(std::regex_match(line, journal_line)) << line;
    EXPECT_FALSE(std::regex_search(line, timestamp)) << line;
  }
  EXPECT_GT(lines, 3);
  EXPECT_NE(log.find("<6>referrald.started "), std::string::npos) << log;
  EXPECT_NE(log.find("<4>config.reload_partial "), std::string::npos) << log;
  EXPECT_NE(log.find("<3>config.reload_refused "), std::string::npos) << log;
  EXPECT_NE(log.find("<6>referrald.stopped"), std::string::npos) << log;
}

TEST(ServiceLogs, OnATerminalLinesCarryTimestampsAndNoPriority) {
  Daemon d{Daemon::Options{}};
  // A JOURNAL_STREAM that is not our stderr (inherited from a parent whose
  // stderr went to the journal) must not switch the format.
  d.set_env("JOURNAL_STREAM", "1:1");
  const std::string log = exercise_logging(d);
  std::istringstream in(log);
  const std::regex console_line(
      R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2} [a-z]+ [a-z0-9_]+\.[a-z0-9_.]+.*$)");
  int lines = 0;
  for (std::string line; std::getline(in, line);) {
    ++lines;
    EXPECT_TRUE(std::regex_match(line, console_line)) << line;
  }
  EXPECT_GT(lines, 3);
}

}  // namespace
}  // namespace referrald::test
