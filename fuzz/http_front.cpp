// libFuzzer target: raw bytes on a TCP connection to the HTTP front, as a
// hostile client sends them. The real Server (Beast's parser, the deadlines,
// the framing, Host and Expect checks) runs in this process on 127.0.0.1
// with the real JSON API and web form behind it (the real validator,
// decision and store, on a SQLite file in a temporary directory). Each input
// is written on a new connection, the write side is shut, and everything the
// server answers is read until it closes.
//
// Checked besides "no crash, no leak, no UB" (in the server, the handlers,
// the store):
//   - the server closes the connection once the client has: within
//     close_bound, ten times the read deadline, and far below the idle
//     deadline, so a server that ignored the client's end and waited for its
//     next request would be caught. A close slower than slow_close (a machine
//     that stalled the process, as a loaded CI host can) is not a finding but
//     is reported on stderr with the server's counters, so a slow close in a
//     log says whether the server had even accepted the connection;
//   - no 500 (a handler that threw);
//   - nothing follows a response that says "Connection: close": a request
//     refused for its framing never lets the rest of its bytes run as a
//     request of their own (request smuggling);
//   - every answer starts with a status line.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "check.hpp"
#include "config/config.hpp"
#include "http/api.hpp"
#include "http/form.hpp"
#include "http/server.hpp"
#include "intake/submission.hpp"
#include "intake/validator.hpp"
#include "rules/rules.hpp"
#include "store/writer.hpp"
#include "util/clock.hpp"
#include "util/crypto.hpp"

namespace referrald::fuzz {
namespace {

// The bearer key and the form's public origin (fuzz/http_front.dict has both).
constexpr std::string_view submit_token = "fuzz-token";
constexpr std::string_view office_token = "fuzz-office-token";
constexpr const char* form_origin = "http://fuzz.example";

std::filesystem::path make_temp_dir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "referrald-fuzz-http-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) fail("mkdtemp failed");
  return pattern;
}

constexpr std::chrono::seconds read_deadline{2};
constexpr std::chrono::seconds close_bound{20};
constexpr std::chrono::seconds slow_close{5};

HttpConfig http_config() {
  HttpConfig c;
  c.listen.push_back({"127.0.0.1", 0});  // any free port
  c.api_keys.push_back(sha256(submit_token));
  c.rate_limit_per_minute = 0;  // every input is answered
  c.read_timeout = read_deadline;
  c.write_timeout = read_deadline;
  c.idle_timeout = std::chrono::seconds(120);  // beyond close_bound: see above
  c.threads = 2;
  return c;
}

// Everything the server needs, made once and kept for the whole run (never
// destroyed: its threads run until the process exits).
struct Front {
  std::filesystem::path dir = make_temp_dir();
  ReferralValidator validator{source_path("schemas/referral.v1.schema.json")};
  store::Writer writer{dir / "referrald.db", {}};
  store::ReaderPool readers{dir / "referrald.db", 1};
  SystemClock clock;
  IntakeService intake{validator, writer, clock, [] {
                         auto p = std::make_shared<IntakePolicy>();
                         p->rules = load_rules(source_path("config/rules.example.toml"));
                         return p;
                       }()};
  http::StatusChanges status_changes{writer, clock};
  http::Api api{intake, writer, readers, status_changes, {sha256(submit_token)}, {sha256(office_token)}};
  http::Form form{source_path("web"), OfficeConfig{}, intake, readers, status_changes};
  boost::asio::io_context ioc;
  http::Server server{ioc.get_executor(), http_config(), api};
  std::vector<std::thread> threads;
  unsigned short port = 0;

  Front() {
    api.set_fallback(&form);
    form.set_intake_counts(&api.intake_counts());
    form.set_public_origins({form_origin});
    server.start();
    const auto endpoint = server.local_endpoints().at(0);
    port = static_cast<unsigned short>(std::stoi(endpoint.substr(endpoint.rfind(':') + 1)));
    for (int i = 0; i < 2; ++i) threads.emplace_back([this] { ioc.run(); });
    for (auto& t : threads) t.detach();
    std::atexit([] { std::filesystem::remove_all(instance().dir); });
  }

  static Front& instance() {
    static Front* front = new Front;
    return *front;
  }
};

std::string describe(const http::ServerStats& s) {
  return "open connections " + std::to_string(s.connections_open) + ", requests answered " +
         std::to_string(s.requests) + ", in progress " + std::to_string(s.requests_in_progress) + ", refused " +
         std::to_string(s.connections_refused);
}

// Writes the input, shuts the write side, reads until the server closes.
std::string exchange(const http::Server& server, unsigned short port, std::string_view bytes) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  // Each exchange leaves a TIME_WAIT on this side (the client ends first).
  // Hundreds a second, with other tests on the machine, can use up the
  // ephemeral ports for a moment: that is the client's machine, not a
  // finding, so connect is tried again (for at most 10 s) when no local
  // port is free.
  int fd = -1;
  for (int attempt = 0;; ++attempt) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail(std::string("socket failed: ") + std::strerror(errno));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) break;
    const int error = errno;
    ::close(fd);
    if (error != EADDRNOTAVAIL || attempt == 100) {
      fail(std::string("cannot connect to the server: ") + std::strerror(error) + " (" + describe(server.stats()) +
           ")");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const http::ServerStats before = server.stats();
  // The server may answer and close before it has read everything (a
  // refused head): a failed write is not a finding.
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    const auto n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  using steady = std::chrono::steady_clock;
  const auto closed_by = steady::now() + close_bound;
  const auto slow_after = steady::now() + slow_close;
  std::optional<http::ServerStats> when_slow;
  std::string received;
  char buffer[16384];
  while (true) {
    const auto now = steady::now();
    if (now >= closed_by) {
      fail("the server kept a connection open " + std::to_string(close_bound.count()) +
           " s after the client closed it (before: " + describe(before) + "; now: " + describe(server.stats()) + ")");
    }
    if (!when_slow && now >= slow_after) when_slow = server.stats();
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::min(closed_by, when_slow ? closed_by : slow_after) - now);
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(wait.count()) + 1) <= 0) continue;
    const auto n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;  // closed (or reset after an early answer)
    received.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  if (when_slow) {
    std::fprintf(stderr, "fuzz note: a slow close (over %lld s; before: %s; at %lld s: %s; after: %s)\n",
                 static_cast<long long>(slow_close.count()), describe(before).c_str(),
                 static_cast<long long>(slow_close.count()), describe(*when_slow).c_str(),
                 describe(server.stats()).c_str());
  }
  return received;
}

void check_answers(const std::string& received) {
  if (received.empty()) return;  // e.g. an incomplete head, then EOF
  require(received.starts_with("HTTP/1.1 "), "an answer that does not start with a status line");
  require(received.find("HTTP/1.1 500 ") == std::string::npos, "a 500: a handler threw");
  // Our bodies never hold a raw CR LF followed by a status line (JSON
  // escapes line breaks; the pages hold no "HTTP/1."), so each status line
  // after a CR LF starts a response.
  const auto close = received.find("\r\nConnection: close\r\n");
  if (close != std::string::npos) {
    require(received.find("\r\nHTTP/1.", close) == std::string::npos,
            "a response followed one that closes the connection");
  }
}

}  // namespace
}  // namespace referrald::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace referrald::fuzz;
  auto& front = Front::instance();
  const std::string received =
      exchange(front.server, front.port, std::string_view(reinterpret_cast<const char*>(data), size));
  check_answers(received);
  return 0;
}
