// `referrald --reload` (service/reload.hpp) when the daemon does not answer:
// a process that ignores SIGHUP, one that ends on it, and an outcome file
// that belongs to another process. The answers themselves are tested against
// the real daemon in tests/integration/service_test.cpp.
#include "service/reload.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "support/harness.hpp"

namespace referrald {
namespace {

using namespace std::chrono_literals;

// A child that waits for a signal; with `ignore_hup` SIGHUP does not end it.
pid_t waiting_child(bool ignore_hup) {
  const pid_t child = ::fork();
  if (child == 0) {
    if (ignore_hup) ::signal(SIGHUP, SIG_IGN);
    for (;;) ::pause();
  }
  return child;
}

TEST(ReloadCommand, NoAnswerInTimeIsAFailureThatSaysWhere) {
  test::TempDir dir;
  const pid_t child = waiting_child(true);
  std::this_thread::sleep_for(50ms);  // its SIGHUP disposition is set
  std::ostringstream out, err;
  EXPECT_EQ(request_reload(child, dir.path(), 300ms, out, err), 1);
  EXPECT_NE(err.str().find("no answer from process " + std::to_string(child)), std::string::npos) << err.str();
  EXPECT_NE(err.str().find((dir.path() / "reload-outcome").string()), std::string::npos) << err.str();
  EXPECT_TRUE(out.str().empty());
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
}

TEST(ReloadCommand, AProcessThatEndsBeforeItAnswersIsAFailure) {
  test::TempDir dir;
  const pid_t child = waiting_child(false);
  // Reaped as soon as it ends, as systemd reaps its service's main process.
  std::thread reaper([child] { ::waitpid(child, nullptr, 0); });
  std::ostringstream out, err;
  EXPECT_EQ(request_reload(child, dir.path(), 20s, out, err), 1);
  reaper.join();
  EXPECT_NE(err.str().find("process " + std::to_string(child) + " ended before it answered"), std::string::npos)
      << err.str();
}

TEST(ReloadCommand, AnOutcomeOfAnotherProcessIsNoAnswer) {
  test::TempDir dir;
  const pid_t child = waiting_child(true);
  std::this_thread::sleep_for(50ms);
  write_reload_outcome(dir.path(), ReloadOutcome{child + 1, 7, true, {}});
  std::ostringstream out, err;
  EXPECT_EQ(request_reload(child, dir.path(), 300ms, out, err), 1);
  EXPECT_NE(err.str().find("no answer"), std::string::npos) << err.str();
  // The file round-trips what the daemon wrote.
  const auto read = read_reload_outcome(dir.path());
  ASSERT_TRUE(read);
  EXPECT_EQ(read->pid, child + 1);
  EXPECT_EQ(read->generation, 7U);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
}

}  // namespace
}  // namespace referrald
