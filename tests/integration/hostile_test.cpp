// Hostile clients against the real referrald binary: slow heads (Slowloris),
// slow bodies, clients that never read, connection floods, path traversal and
// per-client rate limits. The attackers are raw sockets (tests/support
// RawClient), the honest client is libcurl from another loopback address
// (127.0.0.2: Linux routes all of 127.0.0.0/8 to loopback), and the daemon's
// own view comes from /proc (open descriptors, resident memory).
//
// Deadlines are configured short (2 s) so that each test takes seconds; the
// slack on every upper bound covers a loaded 2-core CI machine under ASan.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/resource.h>

#include <atomic>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include "support/harness.hpp"

namespace referrald::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

constexpr auto kReadTimeout = 2s;
constexpr auto kWriteTimeout = 2s;
constexpr auto kSlack = 1500ms;
constexpr const char* kHonestAddress = "127.0.0.2";

// [http] lines: short deadlines, and the limits under test.
Daemon::Options limits(const std::string& more) {
  Daemon::Options o;
  o.extra_http = "read_timeout = \"2s\"\nwrite_timeout = \"2s\"\nidle_timeout = \"10s\"\n" + more;
  return o;
}

double seconds(steady::duration d) { return std::chrono::duration<double>(d).count(); }

// An honest client from another address, asking for the form every `every`
// while an attack runs; each answer's status and latency are kept.
class HonestClient {
 public:
  HonestClient(const Daemon& daemon, std::chrono::milliseconds every) {
    thread_ = std::thread([this, url = daemon.base_url() + "/healthz", every] {
      while (!stop_) {
        HttpRequest r;
        r.url = url;
        r.source_address = kHonestAddress;
        r.timeout = 3s;
        const auto started = steady::now();
        const auto res = http(r);
        {
          std::lock_guard lock(mutex_);
          answers_.push_back({res.status, steady::now() - started});
        }
        std::this_thread::sleep_for(every);
      }
    });
  }
  ~HonestClient() { finish(); }

  struct Answer {
    long status;
    steady::duration latency;
  };
  std::vector<Answer> finish() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    std::lock_guard lock(mutex_);
    return answers_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::vector<Answer> answers_;
  std::thread thread_;
};

void expect_prompt_answers(const std::vector<HonestClient::Answer>& answers) {
  ASSERT_GE(answers.size(), 3U);
  for (const auto& a : answers) {
    EXPECT_EQ(a.status, 200);
    EXPECT_LT(a.latency, 1s) << seconds(a.latency) << " s";
  }
}

// A connection that dribbles `bytes`, one every `pace`, from when it opened;
// when the daemon closes it is noted.
struct Dribbler {
  std::unique_ptr<RawClient> client;
  steady::time_point opened;
  std::optional<steady::duration> closed_after;
  std::size_t sent = 0;
};

// Feeds every dribbler one byte per round until each is closed or `limit`.
void dribble(std::vector<Dribbler>& all, const std::string& bytes, std::chrono::milliseconds pace,
             steady::duration limit) {
  const auto until = steady::now() + limit;
  while (steady::now() < until) {
    bool open = false;
    for (auto& d : all) {
      if (d.closed_after) continue;
      if (d.client->peer_closed()) {
        d.closed_after = steady::now() - d.opened;
        continue;
      }
      open = true;
      if (d.sent < bytes.size()) d.client->send(std::string_view(bytes).substr(d.sent++, 1));
    }
    if (!open) return;
    std::this_thread::sleep_for(pace);
  }
}

// ---------------------------------------------------------------------------
// Slowloris

// 150 connections from one address send a request head one byte every
// 200 ms (it would take ~15 s). The address may hold 60 of them: those are
// closed at the read deadline, the rest are refused at once with a 503; an
// honest client from another address is answered promptly all along.
TEST(Slowloris, HeadsSentByteByByteAreCutAtTheReadDeadline) {
  Daemon daemon{limits("max_connections = 100\nmax_connections_per_client = 60\n")};
  daemon.start();
  const std::string head =
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\nAccept: text/html\r\nX-a: b\r\n\r\n";
  HonestClient honest(daemon, 300ms);
  std::vector<Dribbler> slow(150);
  for (auto& d : slow) {
    d.client = std::make_unique<RawClient>(daemon.port());
    d.opened = steady::now();
  }
  dribble(slow, head, 200ms, kReadTimeout + 3 * kSlack);
  const auto answers = honest.finish();

  int held = 0, refused = 0;
  for (const auto& d : slow) {
    ASSERT_TRUE(d.closed_after) << "a slow connection was still open after " << seconds(kReadTimeout + 3 * kSlack)
                                << " s";
    if (status_of(d.client->received()) == 503) {
      ++refused;
      EXPECT_LT(*d.closed_after, 1s);
    } else {
      ++held;
      EXPECT_EQ(d.client->received(), "") << "a half-sent head was answered";
      EXPECT_GE(*d.closed_after, kReadTimeout - 100ms);
      EXPECT_LE(*d.closed_after, kReadTimeout + kSlack) << seconds(*d.closed_after) << " s";
    }
  }
  EXPECT_EQ(held, 60);
  EXPECT_EQ(refused, 90);
  expect_prompt_answers(answers);
  EXPECT_TRUE(daemon.running());
  EXPECT_EQ(daemon.get("/healthz", false).status, 200);
}

// The read deadline runs from a request's first byte on a kept-alive
// connection too, not from the (longer) idle deadline.
TEST(Slowloris, ASecondHeadOnAKeptAliveConnectionHasTheReadDeadline) {
  Daemon daemon{limits("")};
  daemon.start();
  std::vector<Dribbler> slow(1);
  slow[0].client = std::make_unique<RawClient>(daemon.port());
  ASSERT_TRUE(slow[0].client->send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
  const auto first_sent = steady::now();
  while (slow[0].client->received().find("{\"status\":\"ok\"}") == std::string::npos &&
         steady::now() - first_sent < 5s) {
    ASSERT_FALSE(slow[0].client->peer_closed()) << "the first request's connection was not kept alive";
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(status_of(slow[0].client->received()), 200) << slow[0].client->received();
  slow[0].opened = steady::now();
  dribble(slow, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\n\r\n", 200ms, 12s);
  ASSERT_TRUE(slow[0].closed_after) << "still open after 12 s";
  // The idle deadline (10 s) would have let it live five times as long.
  EXPECT_LE(*slow[0].closed_after, kReadTimeout + kSlack) << seconds(*slow[0].closed_after) << " s";
}

}  // namespace
}  // namespace referrald::test
