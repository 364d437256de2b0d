// One PostgreSQL server for a whole ctest run (docs/testing.md, "PostgreSQL
// in tests"): the fixture tests postgres_server_start and
// postgres_server_stop run `postgres_fixture start` and `postgres_fixture
// stop`.
//
// start forks a guard that owns the server (support/postgres.hpp's
// PostgresServer), writes the run file tests find it by (named after the
// ctest process, the parent of every test), and returns once the server
// answers. The guard stops the server and removes everything when stop asks
// (SIGTERM), when the ctest process ends without running stop (killed, or
// Ctrl-C), or when the server dies; the server itself dies with the guard
// (its parent-death signal). start first takes over what an earlier run
// left: a run file whose ctest process is gone is stopped and removed.
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>

#include "support/postgres.hpp"

namespace {

using namespace referrald::test;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

bool alive(pid_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

// Waits until `pid` (not our child) has ended, or `limit` passes.
bool wait_gone(pid_t pid, std::chrono::milliseconds limit) {
  const int fd = pidfd_open(pid);
  if (fd < 0) return !alive(pid);
  pollfd p{fd, POLLIN, 0};
  const int r = ::poll(&p, 1, static_cast<int>(limit.count()));
  ::close(fd);
  return r == 1;
}

// Is `pid` the postgres process of `run` (and not a process that reuses its id)?
bool is_postmaster_of(pid_t pid, const PostgresRun& run) {
  const std::string cmdline = read_file("/proc/" + std::to_string(pid) + "/cmdline");
  return cmdline.find("postgres") != std::string::npos && cmdline.find(run.directory.string()) != std::string::npos;
}

// Ends what `run` started: asks its guard, then (if the guard is gone or
// does not answer) stops the server itself; removes its directory and file.
void end_run(const fs::path& file, const PostgresRun& run) {
  if (alive(run.guard)) {
    ::kill(run.guard, SIGTERM);
    if (!wait_gone(run.guard, 60s)) ::kill(run.guard, SIGKILL);
  }
  if (alive(run.postmaster) && is_postmaster_of(run.postmaster, run)) {
    ::kill(run.postmaster, SIGQUIT);
    if (!wait_gone(run.postmaster, 30s)) ::kill(run.postmaster, SIGKILL);
  }
  std::error_code ec;
  if (run.directory.string().rfind(fs::temp_directory_path().string(), 0) == 0) fs::remove_all(run.directory, ec);
  fs::remove(file, ec);
}

// Run files of ctest processes that are gone (killed before the cleanup
// fixture ran, with their guard killed too), and one of our own ctest's
// (a pid reused, or start run twice).
void take_over_stale(pid_t ctest) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(postgres_run_directory(), ec)) {
    const fs::path file = entry.path();
    if (file.extension() == ".log") {
      // A guard's log, kept after its run for a look; gone with the next
      // run once its ctest is.
      const std::string stem = file.stem().string();  // ctest-PID
      const pid_t pid = static_cast<pid_t>(std::atol(stem.substr(stem.find('-') + 1).c_str()));
      if (pid != ctest && !alive(pid)) fs::remove(file, ec);
      continue;
    }
    if (file.extension() != ".json") continue;
    std::optional<PostgresRun> run;
    try {
      run = read_postgres_run(file);
    } catch (const std::exception& e) {
      std::cerr << e.what() << ": removed\n";
      fs::remove(file, ec);
      continue;
    }
    if (!run || (run->ctest != ctest && alive(run->ctest))) continue;  // another ctest run, still going
    std::cerr << "postgres_fixture: taking over " << file.string() << " (ctest " << run->ctest
              << (run->ctest == ctest ? ", this run" : ", gone") << ")\n";
    end_run(file, *run);
  }
}

// The guard: owns the server until stop, ctest's end or the server's end.
int guard(pid_t ctest, int ctest_fd, int ready_fd) {
  ::setsid();
  const fs::path log = postgres_run_directory() / ("ctest-" + std::to_string(ctest) + ".log");
  // ctest waits for every holder of a test's output pipe to close it: the
  // guard keeps none of them.
  const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const int null_fd = ::open("/dev/null", O_RDONLY);
  ::dup2(null_fd, 0);
  ::dup2(log_fd, 1);
  ::dup2(log_fd, 2);
  ::signal(SIGHUP, SIG_IGN);
  ::signal(SIGPIPE, SIG_IGN);
  const auto tell = [&](const std::string& text) {
    if (ready_fd < 0) return;
    if (::write(ready_fd, text.data(), text.size()) < 0) std::cerr << "cannot answer start\n";
    ::close(ready_fd);
    ready_fd = -1;
  };
  const fs::path file = postgres_run_file(ctest);
  try {
    PostgresServer server;
    PostgresRun run{ctest, ::getpid(), server.postmaster(), server.directory(), server.port()};
    write_postgres_run(file, run);
    std::cerr << "postgres_fixture: server " << run.postmaster << " on port " << run.port << " in "
              << run.directory.string() << " for ctest " << ctest << '\n';

    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    ::sigprocmask(SIG_BLOCK, &stop_signals, nullptr);
    const int signal_fd = ::signalfd(-1, &stop_signals, SFD_CLOEXEC);
    const int server_fd = pidfd_open(server.postmaster());
    tell("ready\n");

    pollfd watched[3] = {{signal_fd, POLLIN, 0}, {ctest_fd, POLLIN, 0}, {server_fd, POLLIN, 0}};
    while (::poll(watched, 3, -1) < 0 && errno == EINTR) {
    }
    if (watched[0].revents != 0) {
      std::cerr << "postgres_fixture: stop asked\n";
    } else if (watched[1].revents != 0) {
      std::cerr << "postgres_fixture: ctest " << ctest << " ended without the cleanup fixture: stopping the server\n";
    } else {
      std::cerr << "postgres_fixture: the server ended on its own:\n" << server.log();
    }
    // A later run's file under the same name is not ours to remove.
    const auto now = read_postgres_run(file);
    std::error_code ec;
    if (now && now->guard == ::getpid()) fs::remove(file, ec);
    return 0;  // the server stops, its directory goes, with `server`
  } catch (const std::exception& e) {
    tell(std::string("cannot start PostgreSQL: ") + e.what() + "\n");
    std::cerr << e.what() << '\n';
    return 1;
  }
}

int start() {
  const pid_t ctest = ::getppid();
  fs::create_directories(postgres_run_directory());
  take_over_stale(ctest);
  const int ctest_fd = pidfd_open(ctest);
  if (ctest_fd < 0 || ::getppid() != ctest) {
    std::cerr << "postgres_fixture: cannot watch the ctest process " << ctest << ": " << std::strerror(errno) << '\n';
    return 1;
  }
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) {
    std::cerr << "postgres_fixture: pipe: " << std::strerror(errno) << '\n';
    return 1;
  }
  std::cout.flush();
  std::cerr.flush();
  const pid_t child = ::fork();
  if (child < 0) {
    std::cerr << "postgres_fixture: fork: " << std::strerror(errno) << '\n';
    return 1;
  }
  if (child == 0) {
    ::close(ready[0]);
    std::exit(guard(ctest, ctest_fd, ready[1]));
  }
  ::close(ready[1]);
  std::string answer;
  char buffer[4096];
  for (ssize_t n; (n = ::read(ready[0], buffer, sizeof buffer)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    answer.append(buffer, static_cast<std::size_t>(n));
  }
  if (answer != "ready\n") {
    std::cerr << "postgres_fixture: " << (answer.empty() ? "the guard ended without an answer\n" : answer);
    return 1;
  }
  const auto run = read_postgres_run(postgres_run_file(ctest));
  std::cout << "PostgreSQL for ctest " << ctest << ": port " << run->port << ", " << run->directory.string()
            << " (guard " << run->guard << ", server " << run->postmaster << "); run file "
            << postgres_run_file(ctest).string() << '\n';
  return 0;
}

int stop() {
  const pid_t ctest = ::getppid();
  const fs::path file = postgres_run_file(ctest);
  const auto run = read_postgres_run(file);
  if (!run) {
    std::cout << "no PostgreSQL server for ctest " << ctest << " (" << file.string() << ")\n";
    return 0;
  }
  end_run(file, *run);
  std::cout << "stopped the PostgreSQL server for ctest " << ctest << '\n';
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string command = argc == 2 ? argv[1] : "";
  try {
    if (command == "start") return start();
    if (command == "stop") return stop();
  } catch (const std::exception& e) {
    std::cerr << "postgres_fixture " << command << ": " << e.what() << '\n';
    return 1;
  }
  std::cerr << "usage: postgres_fixture start|stop\n";
  return 2;
}
