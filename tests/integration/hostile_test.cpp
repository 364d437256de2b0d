// Hostile clients against the real referrald binary: slow heads (Slowloris),
// slow bodies, clients that never read, connection floods, path traversal,
// per-client rate limits, and requests whose framing, Host or Expect would
// smuggle a second request or skip a check (RFC 9112). The attackers are raw sockets (tests/support
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

constexpr auto client_read_timeout = 2s;
constexpr auto client_write_timeout = 2s;
constexpr auto deadline_slack = 1500ms;
constexpr const char* honest_address = "127.0.0.2";

// [http] lines: short deadlines, and the limits under test.
Daemon::Options limits(const std::string& more) {
  Daemon::Options o;
  o.extra_http = "read_timeout = \"2s\"\nwrite_timeout = \"2s\"\nidle_timeout = \"10s\"\n" + more;
  return o;
}

double seconds(steady::duration d) { return std::chrono::duration<double>(d).count(); }

// The daemon's open descriptors once its connections from earlier requests
// have wound down (the count is the same for 300 ms).
std::size_t settled_fds(pid_t pid) {
  auto last = open_fds(pid);
  for (int same = 0; same < 15;) {
    std::this_thread::sleep_for(20ms);
    const auto now = open_fds(pid);
    same = now == last ? same + 1 : 0;
    last = now;
  }
  return last;
}

// An honest client from another address, asking for the form every `every`
// while an attack runs; each answer's status and latency are kept.
class HonestClient {
 public:
  HonestClient(const Daemon& daemon, std::chrono::milliseconds every) {
    thread_ = std::thread([this, url = daemon.base_url() + "/healthz", every] {
      while (!stop_) {
        HttpRequest r;
        r.url = url;
        r.source_address = honest_address;
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
  dribble(slow, head, 200ms, client_read_timeout + 3 * deadline_slack);
  const auto answers = honest.finish();

  int held = 0, refused = 0;
  for (const auto& d : slow) {
    ASSERT_TRUE(d.closed_after) << "a slow connection was still open after "
                                << seconds(client_read_timeout + 3 * deadline_slack) << " s";
    if (status_of(d.client->received()) == 503) {
      ++refused;
      EXPECT_LT(*d.closed_after, 1s);
    } else {
      ++held;
      EXPECT_EQ(d.client->received(), "") << "a half-sent head was answered";
      EXPECT_GE(*d.closed_after, client_read_timeout - 100ms);
      EXPECT_LE(*d.closed_after, client_read_timeout + deadline_slack) << seconds(*d.closed_after) << " s";
    }
  }
  EXPECT_EQ(held, 60);
  EXPECT_EQ(refused, 90);
  expect_prompt_answers(answers);
  steady::duration slowest_cut{}, slowest_answer{};
  for (const auto& d : slow) slowest_cut = std::max(slowest_cut, *d.closed_after);
  for (const auto& a : answers) slowest_answer = std::max(slowest_answer, a.latency);
  std::cout << "[ slowloris ] 60 held connections cut by " << seconds(slowest_cut) << " s (read_timeout 2 s); "
            << answers.size() << " honest requests, slowest " << seconds(slowest_answer) * 1000 << " ms\n";
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
  EXPECT_LE(*slow[0].closed_after, client_read_timeout + deadline_slack) << seconds(*slow[0].closed_after) << " s";
}

// A complete head announcing a body that then comes one byte every 200 ms:
// cut at the read deadline after the head, nothing stored, honest clients
// served meanwhile.
TEST(Slowloris, SlowBodiesAreCutAtTheReadDeadline) {
  Daemon daemon{limits("")};
  daemon.start();
  const std::string head = "POST /api/v1/referrals HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
                           std::string(Daemon::api_token) +
                           "\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n";
  HonestClient honest(daemon, 300ms);
  std::vector<Dribbler> slow(20);
  for (auto& d : slow) {
    d.client = std::make_unique<RawClient>(daemon.port());
    ASSERT_TRUE(d.client->send(head));
    d.opened = steady::now();
  }
  dribble(slow, sample("asps-routine.json"), 200ms, client_read_timeout + 3 * deadline_slack);
  const auto answers = honest.finish();
  for (const auto& d : slow) {
    ASSERT_TRUE(d.closed_after) << "a slow body was still being read";
    EXPECT_GE(*d.closed_after, client_read_timeout - 100ms);
    EXPECT_LE(*d.closed_after, client_read_timeout + deadline_slack) << seconds(*d.closed_after) << " s";
  }
  expect_prompt_answers(answers);
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals"), 0);
}

// A client that asks for the form a thousand times on one connection and
// never reads: once the socket buffers are full the daemon's write waits,
// and the write deadline closes the connection (its descriptor is freed).
TEST(Slowloris, AClientThatNeverReadsIsCutAtTheWriteDeadline) {
  Daemon daemon{limits("rate_limit_per_minute = 0\n")};
  daemon.start();
  const pid_t pid = daemon.process()->pid();
  const auto baseline = settled_fds(pid);
  std::string requests;
  const std::string get = "GET / HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(daemon.port()) + "\r\n\r\n";
  for (int i = 0; i < 1000; ++i) requests += get;  // ~13 MB of answers
  RawClient reader(daemon.port(), "", 4096);
  const auto started = steady::now();
  reader.send(requests);
  // Its connection is open while the daemon writes.
  std::this_thread::sleep_for(200ms);
  EXPECT_GT(open_fds(pid), baseline);
  EXPECT_EQ(daemon.get("/healthz", false).status, 200);  // others are served meanwhile
  while (open_fds(pid) > baseline && steady::now() - started < client_write_timeout + 3 * deadline_slack) {
    std::this_thread::sleep_for(20ms);
  }
  const auto closed_after = steady::now() - started;
  EXPECT_EQ(open_fds(pid), baseline) << "the connection of a client that never reads is still open";
  EXPECT_GE(closed_after, client_write_timeout - 100ms);
  EXPECT_LE(closed_after, client_write_timeout + deadline_slack) << seconds(closed_after) << " s";
  EXPECT_TRUE(daemon.running());
}

// ---------------------------------------------------------------------------
// Connection flood

// 600 connections at once against a bound of 50: the daemon stays up, each
// connection over the bound gets a 503 at once, an honest client is answered
// (after retries once the held connections reach their deadline), and
// afterwards the open descriptors are back to where they were.
TEST(ConnectionFlood, FarMoreConnectionsThanTheBoundLeaveNoTrace) {
  // The flood needs its 600 descriptors here; the daemon inherits the limit.
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < 2048 && limit.rlim_max >= 2048) {
    limit.rlim_cur = 2048;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
  Daemon daemon{limits("max_connections = 50\nmax_connections_per_client = 50\n")};
  daemon.start();
  const pid_t pid = daemon.process()->pid();
  ASSERT_EQ(daemon.get("/healthz", false).status, 200);
  const auto fds_before = settled_fds(pid);
  const long rss_before = vm_rss_kb(pid);

  std::vector<std::unique_ptr<RawClient>> flood;
  for (int i = 0; i < 600; ++i) flood.push_back(std::make_unique<RawClient>(daemon.port()));

  // An honest client from another address: a 503 while the bound is full is
  // an answer; it retries until it is served.
  const auto started = steady::now();
  long status = 0;
  int attempts = 0;
  while (status != 200 && steady::now() - started < client_read_timeout + 3 * deadline_slack) {
    HttpRequest r;
    r.url = daemon.base_url() + "/healthz";
    r.source_address = honest_address;
    r.timeout = 2s;
    const auto res = http(r);
    ++attempts;
    status = res.status;
    EXPECT_TRUE(status == 200 || status == 503) << status << " " << res.error;
    if (status == 503) {
      EXPECT_EQ(res.headers.at("retry-after"), "1");
      std::this_thread::sleep_for(200ms);
    }
  }
  const auto served_after = steady::now() - started;
  EXPECT_EQ(status, 200);
  EXPECT_LE(served_after, client_read_timeout + deadline_slack)
      << seconds(served_after) << " s, " << attempts << " attempts";

  int refused = 0, cut = 0;
  for (auto& c : flood) {
    ASSERT_TRUE(c->wait_closed(deadline_slack)) << "a flood connection outlived the read deadline";
    if (status_of(c->received()) == 503) {
      ++refused;
    } else {
      EXPECT_EQ(c->received(), "");
      ++cut;
    }
  }
  EXPECT_EQ(cut, 50);
  EXPECT_EQ(refused, 550);
  flood.clear();

  const auto until = steady::now() + 3s;
  while (open_fds(pid) > fds_before && steady::now() < until) std::this_thread::sleep_for(20ms);
  EXPECT_LE(open_fds(pid), fds_before) << "descriptors leaked";
  const long rss_after = vm_rss_kb(pid);
  std::cout << "[ flood ] VmRSS before " << rss_before << " kB, after 600 connections " << rss_after << " kB; "
            << "honest client served after " << seconds(served_after) << " s (" << attempts << " attempts)\n";
  RecordProperty("vmrss_before_kb", std::to_string(rss_before));
  RecordProperty("vmrss_after_kb", std::to_string(rss_after));
  EXPECT_LT(rss_after - rss_before, 16 * 1024) << "memory grew by more than 16 MB";
  EXPECT_TRUE(daemon.running());
  EXPECT_EQ(daemon.get("/healthz", false).status, 200);
  EXPECT_EQ(daemon.stop(), 0);
}

// ---------------------------------------------------------------------------
// Path traversal

// Request targets that try to leave web/ (or the API's id space) every way
// we know: dot segments plain, percent-encoded, double-encoded and overlong,
// backslashes, NUL, absolute URLs, very long paths. On GET and POST, none
// reaches a file outside web/, none is a 500; each is a 400 or 404 (or a
// 405 for a POST to a read-only page, or 431 for a head over the limit).
TEST(PathTraversal, NoTargetReachesAFileOutsideTheWebDirectory) {
  TempDir site;
  fs::copy(source_dir() / "web", site / "web");
  const std::string secret = "SECRET-OUTSIDE-WEB-7f3a";
  write_file(site / "secret.txt", secret);
  write_file(site / "web" / "secret.txt", secret);  // beside the served files, not in the allow-list
  Daemon::Options options = limits("rate_limit_per_minute = 0\n");
  options.web = site / "web";
  Daemon daemon{options};
  daemon.start();

  const std::string dots_up = [] {
    std::string s;
    for (int i = 0; i < 1000; ++i) s += "../";
    return s;
  }();
  const std::vector<std::string> targets{
      "/../secret.txt",
      "/static/../secret.txt",
      "/static/../../secret.txt",
      "/static/secret.txt",
      "/static/./secret.txt",
      "/%2e%2e/secret.txt",
      "/static/%2e%2e/secret.txt",
      "/static/%2E%2E%2Fsecret.txt",
      "/static/..%2fsecret.txt",
      "/static/..%2F..%2Fsecret.txt",
      "/static/%252e%252e%252fsecret.txt",
      "/static/%c0%ae%c0%ae/secret.txt",
      "/static/..\\secret.txt",
      "/static/..%5csecret.txt",
      "/static/style.css%00",
      "/static/style.css%00/../secret.txt",
      "/static/../../../../../../etc/passwd",
      "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
      "//etc/passwd",
      "/static//etc/passwd",
      "/" + dots_up + "etc/passwd",
      "/static/" + std::string(4000, 'a'),
      "http://127.0.0.1/static/../secret.txt",
      "http://attacker.example/../../etc/passwd",
      "/referrals/../secret.txt",
      "/referrals/%2e%2e%2fsecret.txt",
      "/api/v1/referrals/../../../etc/passwd",
      "/api/v1/referrals/%2e%2e%2f%2e%2e%2fsecret.txt",
      "/api/v1/referrals/..%5c..%5csecret.txt",
      "/api/v1/referrals/R-20261128-ABCDE-FGHJK%00",
      "/api/v1/referrals/R-20261128-ABCDE-FGHJK/../../secret.txt",
      "/api/v1/referrals/" + std::string(4000, 'R'),
  };
  const std::string passwd = read_file("/etc/passwd").substr(0, 20);
  const std::string auth = "Authorization: Bearer " + std::string(Daemon::api_token) + "\r\n";
  for (const auto& target : targets) {
    for (const std::string method : {"GET", "POST"}) {
      std::string request = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth + "Connection: close\r\n";
      if (method == "POST")
        request += "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
      else
        request += "\r\n";
      const auto response = raw_request(daemon.port(), request);
      const int status = status_of(response);
      const bool allowed = status == 400 || status == 404 || (method == "POST" && status == 405);
      EXPECT_TRUE(allowed) << method << " " << target.substr(0, 80) << " -> " << response.substr(0, 200);
      EXPECT_EQ(response.find(secret), std::string::npos) << method << " " << target.substr(0, 80);
      EXPECT_EQ(response.find(passwd), std::string::npos) << method << " " << target.substr(0, 80);
    }
  }
  // Bytes no URL may hold, raw in the target: NUL, backslash, a space.
  for (const std::string& target : {std::string("/static/style.css\0/../../secret.txt", 35),
                                    std::string("/static/..\\..\\secret.txt"), std::string("/static/../ secret.txt")}) {
    const auto response =
        raw_request(daemon.port(), "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    const int status = status_of(response);
    EXPECT_TRUE(status == 400 || status == 404) << response.substr(0, 200);
    EXPECT_EQ(response.find(secret), std::string::npos);
  }
  // A path longer than the head limit: 431, and the log line stays short.
  const auto huge = raw_request(daemon.port(), "GET /static/" + std::string(20000, 'a') +
                                                   " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(status_of(huge), 431) << huge.substr(0, 200);
  // The files themselves are still served, so the 404s above are not an accident.
  EXPECT_EQ(status_of(raw_request(daemon.port(),
                                  "GET /static/style.css HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")),
            200);
  EXPECT_TRUE(daemon.running());
  EXPECT_EQ(daemon.log().find(" error "), std::string::npos) << daemon.log();
  std::istringstream lines(daemon.log());
  for (std::string line; std::getline(lines, line);) EXPECT_LT(line.size(), 400U) << line.substr(0, 200);
}

// ---------------------------------------------------------------------------
// Framing, Host and Expect: the exact bytes an attacker sends

// The status line of every response in what a connection received.
std::vector<int> statuses(const std::string& received) {
  std::vector<int> out;
  for (std::size_t at = received.find("HTTP/1.1 "); at != std::string::npos; at = received.find("HTTP/1.1 ", at + 1)) {
    if (at == 0 || received.compare(at - 2, 2, "\r\n") == 0 || received[at - 1] == '}' || received[at - 1] == '>' ||
        received[at - 1] == '\n') {
      out.push_back(status_of(std::string_view(received).substr(at)));
    }
  }
  return out;
}

// Sends `bytes` on one connection; what came back once the daemon closed it
// (the test fails if it did not close within 5 s).
std::string closed_after(unsigned short port, const std::string& bytes) {
  RawClient client(port);
  EXPECT_TRUE(client.send(bytes));
  EXPECT_TRUE(client.wait_closed(5s)) << "the connection stayed open after: " << bytes.substr(0, 200);
  return client.received();
}

const std::string smuggled_request = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

std::string api_head(const std::string& more) {
  return "POST /api/v1/referrals HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(Daemon::api_token) +
         "\r\nContent-Type: application/json\r\n" + more + "\r\n";
}

// A Transfer-Encoding that does not end in chunked leaves the body's length
// unknown: answered 400 and the connection closed, so the bytes after the
// head never run as a request of their own (they did: 400, then 200).
TEST(Smuggling, ATransferEncodingNotEndingInChunkedIsA400AndCloses) {
  Daemon daemon{limits("")};
  daemon.start();
  for (const std::string te : {"chunked, identity", "identity", "chunked, gzip", "gzip", "chunked;q=1, x", ", ",
                               "chunked\r\nTransfer-Encoding: identity"}) {
    const auto received = closed_after(daemon.port(), api_head("Transfer-Encoding: " + te + "\r\n") + smuggled_request);
    EXPECT_EQ(statuses(received), std::vector<int>{400}) << te << "\n" << received;
    EXPECT_EQ(received.find("\"status\":\"ok\""), std::string::npos) << te;
  }
  // Another coding before chunked is one referrald does not implement: 501.
  for (const std::string te : {"gzip, chunked", "identity, chunked", "deflate,chunked"}) {
    const auto received = closed_after(daemon.port(), api_head("Transfer-Encoding: " + te + "\r\n") + smuggled_request);
    EXPECT_EQ(statuses(received), std::vector<int>{501}) << te << "\n" << received;
  }
  // chunked twice, and chunked beside a Content-Length: which length wins is
  // exactly what a smuggler plays on.
  for (const std::string more :
       {"Transfer-Encoding: chunked, chunked\r\n", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n"}) {
    const auto received = closed_after(daemon.port(), api_head(more) + "0\r\n\r\n" + smuggled_request);
    EXPECT_EQ(statuses(received), std::vector<int>{400}) << more << "\n" << received;
  }
  // HTTP/1.0 has no Transfer-Encoding.
  const auto old = closed_after(daemon.port(),
                                "POST /api/v1/referrals HTTP/1.0\r\nHost: x\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" +
                                    smuggled_request);
  EXPECT_EQ(statuses(old), std::vector<int>{400}) << old;
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals"), 0);
  // A chunked body itself is fine, and the connection goes on after it.
  const std::string body = sample("asps-routine.json");
  char size[16];
  std::snprintf(size, sizeof size, "%zx", body.size());
  const auto chunked = closed_after(daemon.port(), api_head("Transfer-Encoding: chunked\r\n") + size + "\r\n" + body +
                                                       "\r\n0\r\n\r\n" + smuggled_request);
  EXPECT_EQ(statuses(chunked), (std::vector<int>{202, 200})) << chunked;
  // A chunked body's trailer fields are not headers: a Content-Type (or a
  // key) there does not count. The head alone is refused (415, as it has no
  // Content-Type), before its body is read, so the connection closes.
  const auto trailer = closed_after(
      daemon.port(), "POST /api/v1/referrals HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                         std::string(Daemon::api_token) + "\r\nTransfer-Encoding: chunked\r\n\r\n" + size + "\r\n" +
                         body + "\r\n0\r\nContent-Type: application/json\r\n\r\n" + smuggled_request);
  EXPECT_EQ(statuses(trailer), std::vector<int>{415}) << trailer;
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals"), 1);
  EXPECT_TRUE(daemon.running());
}

// RFC 9112, 3.2: an HTTP/1.1 request without Host, or any request with two
// or with one that is not a host, is a 400 (and the connection closes).
TEST(Smuggling, AMissingDuplicateOrMalformedHostIsA400) {
  Daemon daemon{limits("")};
  daemon.start();
  for (const std::string head :
       {"GET /healthz HTTP/1.1\r\n\r\n", "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /healthz HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "GET / HTTP/1.1\r\nHost: a@b\r\n\r\n"}) {
    const auto received = closed_after(daemon.port(), head + smuggled_request);
    EXPECT_EQ(statuses(received), std::vector<int>{400}) << head << "\n" << received;
  }
  // HTTP/1.0 may leave Host out; HTTP/2 in an HTTP/1 head is malformed.
  EXPECT_EQ(status_of(raw_request(daemon.port(), "GET /healthz HTTP/1.0\r\n\r\n")), 200);
  EXPECT_EQ(statuses(closed_after(daemon.port(), "GET /healthz HTTP/2.0\r\nHost: a\r\n\r\n")), std::vector<int>{400});
}

// "Expect: 100-continue" without a valid key is answered 401 at once: the
// client is not invited to send a body that would only be refused, and the
// connection closes (its body, if it sends one anyway, is never read).
TEST(Expect, ContinueIsSentOnlyWhenTheHeadCouldSucceed) {
  Daemon daemon{limits("")};
  daemon.start();
  const std::string body = sample("asps-routine.json");
  const std::string length = "Content-Length: " + std::to_string(body.size()) + "\r\n";
  for (const std::string& auth : {std::string(), std::string("Authorization: Bearer wrong-key\r\n")}) {
    RawClient client(daemon.port());
    ASSERT_TRUE(client.send("POST /api/v1/referrals HTTP/1.1\r\nHost: x\r\n" + auth +
                            "Content-Type: application/json\r\nExpect: 100-continue\r\n" + length + "\r\n"));
    ASSERT_TRUE(client.wait_closed(5s)) << client.received();
    EXPECT_EQ(statuses(client.received()), std::vector<int>{401}) << client.received();
    EXPECT_EQ(client.received().find("100 Continue"), std::string::npos);
  }
  // The same for a head that is wrong in any other way: media type, method,
  // Idempotency-Key, the form's Host.
  for (const std::string& head :
       {api_head("Expect: 100-continue\r\nContent-Type: text/plain\r\n" + length),
        "PUT /api/v1/referrals HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n" + length,
        "POST /referrals HTTP/1.1\r\nHost: evil.example:8080\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        "Expect: 100-continue\r\n" +
            length}) {
    RawClient client(daemon.port());
    ASSERT_TRUE(client.send(head + "\r\n"));
    ASSERT_TRUE(client.wait_closed(5s)) << client.received();
    const auto got = statuses(client.received());
    ASSERT_EQ(got.size(), 1U) << client.received();
    EXPECT_TRUE(got[0] == 400 || got[0] == 405 || got[0] == 415 || got[0] == 421) << client.received();
    EXPECT_EQ(client.received().find("100 Continue"), std::string::npos);
  }
  // A valid key: 100 Continue, then the body, then the 202.
  RawClient client(daemon.port());
  ASSERT_TRUE(client.send(api_head("Expect: 100-continue\r\nConnection: close\r\n" + length)));
  ASSERT_TRUE(
      wait_until([&] { return client.peer_closed() || client.received().find("\r\n\r\n") != std::string::npos; }, 5s));
  EXPECT_EQ(status_of(client.received()), 100) << client.received();
  ASSERT_TRUE(client.send(body));
  ASSERT_TRUE(client.wait_closed(5s));
  EXPECT_EQ(statuses(client.received()), (std::vector<int>{100, 202})) << client.received();
  // An expectation referrald does not know: 417, and the body is not read.
  const auto unknown = closed_after(daemon.port(), api_head("Expect: the-unexpected\r\n" + length) + body);
  EXPECT_EQ(statuses(unknown), std::vector<int>{417}) << unknown;
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals"), 1);
}

// The whole request, head and body, must arrive within read_timeout of its
// first byte: a head that takes most of it leaves the body the rest, not a
// read_timeout of its own.
TEST(Slowloris, HeadAndBodyShareOneReadDeadline) {
  Daemon daemon{limits("")};
  daemon.start();
  const std::string head = api_head("Content-Length: 60000\r\n");
  RawClient client(daemon.port());
  const auto opened = steady::now();
  ASSERT_TRUE(client.send(head.substr(0, 1)));
  std::this_thread::sleep_for(client_read_timeout - 500ms);
  ASSERT_TRUE(client.send(head.substr(1)));
  std::optional<steady::duration> cut;
  for (std::size_t i = 0; !cut && steady::now() - opened < 3 * client_read_timeout; ++i) {
    if (client.peer_closed() || !client.send("{")) cut = steady::now() - opened;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(cut) << "the body was still being read after " << seconds(3 * client_read_timeout) << " s";
  // One deadline from the first byte; two would have let it live until
  // 1.5 s + 2 s.
  EXPECT_LE(*cut, client_read_timeout + 800ms) << seconds(*cut) << " s";
  EXPECT_GE(*cut, client_read_timeout - 100ms) << seconds(*cut) << " s";
}

// HEAD is answered where GET is, with GET's headers (Content-Length too)
// and no body, so the next response on the connection starts where the
// client expects it.
TEST(Head, AnswersLikeGetWithoutABodyAndKeepsTheConnectionInStep) {
  Daemon daemon{limits("")};
  daemon.start();
  const auto get = raw_request(daemon.port(), "GET / HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(daemon.port()) +
                                                  "\r\nConnection: close\r\n\r\n");
  ASSERT_EQ(status_of(get), 200) << get.substr(0, 300);
  const auto get_body = get.substr(get.find("\r\n\r\n") + 4);
  for (const std::string path : {"/", "/healthz", "/metrics", "/static/style.css"}) {
    const auto received =
        closed_after(daemon.port(), "HEAD " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(daemon.port()) +
                                        "\r\n\r\n" + smuggled_request);
    EXPECT_EQ(statuses(received), (std::vector<int>{200, 200})) << path << "\n" << received.substr(0, 400);
    // The second response begins right after the first one's head.
    const auto first_end = received.find("\r\n\r\n");
    ASSERT_NE(first_end, std::string::npos);
    EXPECT_EQ(received.compare(first_end + 4, 9, "HTTP/1.1 "), 0) << path << "\n" << received.substr(0, 400);
    if (path == "/") {
      EXPECT_NE(received.find("Content-Length: " + std::to_string(get_body.size()) + "\r\n"), std::string::npos)
          << received.substr(0, first_end);
    }
  }
  // Allow names HEAD with GET.
  const auto post = raw_request(daemon.port(),
                                "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                                "Connection: close\r\n\r\n");
  EXPECT_EQ(status_of(post), 405);
  EXPECT_NE(post.find("Allow: GET, HEAD\r\n"), std::string::npos) << post;
  const auto put = raw_request(daemon.port(), "PUT / HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(daemon.port()) +
                                                  "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(status_of(put), 405);
  EXPECT_NE(put.find("Allow: GET, HEAD\r\n"), std::string::npos) << put.substr(0, 400);
}

// ---------------------------------------------------------------------------
// Rate limits

// One address over its budget gets 429 with Retry-After and nothing stored;
// a second address is not affected.
TEST(RateLimit, OneClientOverItsBudgetDoesNotSlowAnother) {
  Daemon daemon{limits("rate_limit_per_minute = 60\nrate_limit_burst = 3\n")};
  daemon.start();
  auto post_from = [&](const std::string& source) {
    HttpRequest r;
    r.method = "POST";
    r.url = daemon.base_url() + "/api/v1/referrals";
    r.headers = {"Authorization: Bearer " + std::string(Daemon::api_token), "Content-Type: application/json"};
    r.body = sample("asps-routine.json");
    r.source_address = source;
    return http(r);
  };
  int accepted = 0, limited = 0;
  for (int i = 0; i < 8; ++i) {
    const auto r = post_from("127.0.0.1");
    if (r.status == 202) {
      ++accepted;
    } else {
      EXPECT_EQ(r.status, 429) << r.body;
      ++limited;
      const int retry_after = std::stoi(r.headers.at("retry-after"));
      EXPECT_GE(retry_after, 1);
      EXPECT_LE(retry_after, 60);
    }
  }
  EXPECT_GE(accepted, 3);  // the burst; the refill (one a second) may add one
  EXPECT_LE(accepted, 4);
  EXPECT_GE(limited, 4);
  for (int i = 0; i < 3; ++i) {
    const auto r = post_from(honest_address);
    EXPECT_EQ(r.status, 202) << "the second client was limited for the first one's requests: " << r.body;
  }
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals"), accepted + 3);
  EXPECT_NE(daemon.log().find("status=429 "), std::string::npos);
}

// A person at the form who is over the limit reads a page, not JSON.
TEST(RateLimit, TheFormAndItsFilesGetAnHtmlPage) {
  Daemon daemon{limits("rate_limit_per_minute = 1\nrate_limit_burst = 1\n")};
  daemon.start();
  const std::string host = "Host: 127.0.0.1:" + std::to_string(daemon.port()) + "\r\n";
  EXPECT_EQ(status_of(raw_request(daemon.port(), "GET / HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n")), 200);
  for (const std::string path : {"/", "/static/style.css", "/referrals/R-20261128-ABCDE-FGHJK"}) {
    const auto r = raw_request(daemon.port(), "GET " + path + " HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n");
    EXPECT_EQ(status_of(r), 429) << r.substr(0, 300);
    EXPECT_NE(r.find("Content-Type: text/html; charset=utf-8\r\n"), std::string::npos) << r.substr(0, 300);
    EXPECT_NE(r.find("Retry-After: "), std::string::npos);
    EXPECT_NE(r.find("Too many requests"), std::string::npos);
  }
  const auto api = raw_request(
      daemon.port(), "GET /api/v1/referrals/R-20261128-ABCDE-FGHJK HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n");
  EXPECT_EQ(status_of(api), 429);
  EXPECT_NE(api.find("Content-Type: application/json\r\n"), std::string::npos) << api.substr(0, 300);
}

}  // namespace
}  // namespace referrald::test
