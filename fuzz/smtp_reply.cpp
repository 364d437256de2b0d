// libFuzzer target: SMTP server replies as the email adapter meets them.
// libcurl parses the replies; referrald configures the transfer and
// classifies its result. So this target runs the real thing: the adapter's
// own configure() on a libcurl easy handle, perform_transfer() as CurlPool's
// workers run it, and classify_smtp_result() — against a "server" that is the
// fuzz input.
//
// The server is a loopback listener in this process: for each run a thread
// accepts libcurl's connection, sends the input, shuts its sending side and
// reads what libcurl sends until libcurl closes. libcurl connects, reads and
// writes exactly as in production (no socket of ours handed to it: libcurl
// 7.88 connects even a socket it is told is connected, curl issue 10626). No
// port outside the process, no waiting: the input is all there, then EOF, so
// a run takes a connection and a thread start, which makes 10^6 runs a matter
// of minutes. Replying command by command would gain nothing: libcurl reads
// the replies in order whenever they arrive.
//
// The message is a fixed short text, not the referral PDF the adapter
// renders: rendering is not reply handling and would cost milliseconds.
// libcurl itself is Debian's, not instrumented: libFuzzer would see only
// the few branches of referrald's code. So the target reports libcurl's
// progress itself, as extra counters (libFuzzer's __libfuzzer_extra_counters
// section): each command libcurl sent, by its position in the dialogue, and
// each (CURLcode, reply code) a transfer ended with, is a feature. An input
// that gets libcurl one step further is kept and mutated further; the
// dictionary (fuzz/smtp_reply.dict) carries the SMTP vocabulary.
//
// The first input byte picks one of the configurations operators use:
//   0  smtp:// with starttls = "none", allow_plaintext (a relay on loopback)
//   1  the same with username and password_file (AUTH over the relay)
//   2  smtp:// with STARTTLS required (the default) and username/password,
//      ca_file a CA whose key was thrown away: no peer can pass verification.
// smtps:// is left out: its first bytes are a TLS handshake, which is
// OpenSSL's to fuzz (OSS-Fuzz does), not referrald's.
//
// Checked, besides "no crash, no leak, no UB":
//   - delivered if and only if libcurl reported success, and then only after
//     the script said 354 to DATA and 2xx after it;
//   - with STARTTLS required, never delivered, and nothing of the envelope,
//     the login or the message ever leaves in cleartext;
//   - the password never appears in the outcome, nor verbatim on the wire;
//   - 5xx is never retried as transient, 4xx is never permanent, a failure
//     with no reply is never permanent (docs/channels.md#smtp), and the outcome's
//     code is the reply code;
//   - the outcome's message is one line of printable ASCII (it goes to the
//     log and to the operator's screen).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "adapters/curl/curl_pool.hpp"
#include "adapters/smtp/smtp_adapter.hpp"
#include "check.hpp"

namespace referrald::fuzz {
namespace {

constexpr std::string_view smtp_password = "fuzz-Secret-7Qm2";
// Lines that cannot appear in cleartext when TLS is required.
constexpr std::array<std::string_view, 5> after_tls_markers{"MAIL FROM", "RCPT TO", "AUTH ", "DATA", "Subject:"};

OfficeConfig office() {
  OfficeConfig o;
  o.phone = "1-555-0100";
  return o;
}

TargetConfig smtp_target(std::uint16_t port, bool tls, bool login, const std::filesystem::path& password_file) {
  TargetConfig t;
  t.name = "office-mail";
  t.type = "smtp";
  t.settings["url"] = "smtp://127.0.0.1:" + std::to_string(port);
  t.settings["from"] = std::string("referrald@hospital.example");
  t.settings["to"] = std::vector<std::string>{"office@hospital.example", "oncall@hospital.example"};
  if (tls) {
    t.settings["ca_file"] = source_path("fuzz/data/untrusted-ca.pem").string();
  } else {
    t.settings["starttls"] = std::string("none");
    t.settings["allow_plaintext"] = true;
  }
  if (login) {
    t.settings["username"] = std::string("referrald");
    t.settings["password_file"] = password_file.string();
  }
  return t;
}

// The scripted server's socket: 127.0.0.1, a port of the kernel's choosing.
int listen_loopback(std::uint16_t& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in at{};
  at.sin_family = AF_INET;
  at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(at);
  require(fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&at), length) == 0 && ::listen(fd, 8) == 0 &&
              ::getsockname(fd, reinterpret_cast<sockaddr*>(&at), &length) == 0,
          "cannot listen on 127.0.0.1");
  port = ntohs(at.sin_port);
  return fd;
}

struct Harness {
  CurlPool pool{1};  // the adapters hold a reference; this target never uses it
  SystemClock clock;
  std::uint16_t port = 0;
  int listener = listen_loopback(port);
  std::unique_ptr<SmtpAdapter> relay, relay_login, starttls;
  CURL* curl = nullptr;
  // REFERRALD_FUZZ_TRACE=1: print each dialogue, to see what an input does.
  bool trace = std::getenv("REFERRALD_FUZZ_TRACE") != nullptr;

  Harness() {
    spdlog::set_level(spdlog::level::off);
    // The adapter reads its password file once, in its constructor.
    const auto file = std::filesystem::temp_directory_path() / ("referrald-fuzz-" + std::to_string(::getpid()));
    std::ofstream(file) << smtp_password << '\n';
    relay = std::make_unique<SmtpAdapter>(smtp_target(port, false, false, file), pool, office(), clock);
    relay_login = std::make_unique<SmtpAdapter>(smtp_target(port, false, true, file), pool, office(), clock);
    starttls = std::make_unique<SmtpAdapter>(smtp_target(port, true, true, file), pool, office(), clock);
    std::filesystem::remove(file);
    require(!relay_login->problem() && !starttls->problem(), "the password file was not read");
    curl = curl_easy_init();
    require(curl != nullptr, "curl_easy_init failed");
  }
};

Harness& harness() {
  static Harness instance;
  return instance;
}

// libFuzzer reads these after each run (and clears them before the next).
__attribute__((used, section("__libfuzzer_extra_counters"))) std::uint8_t progress[4096];

void feature(std::string_view what, std::size_t step) {
  const std::size_t slot = (std::hash<std::string_view>{}(what) ^ (step * 0x9E3779B97F4A7C15u)) % sizeof(progress);
  progress[slot] = static_cast<std::uint8_t>(progress[slot] + 1);
}

// How far libcurl got: the verbs of the commands it sent, in order, up to
// DATA (what follows is the message) or TLS; then how the transfer ended.
void record_progress(std::string_view wire, const CurlResult& result) {
  std::size_t step = 0;
  for (std::size_t pos = 0; pos < wire.size() && step < 16; ++step) {
    const auto end = wire.find("\r\n", pos);
    const auto line = wire.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
    const auto verb = line.substr(0, line.find(' '));
    // A TLS record is not a command (and its random bytes no feature).
    if (verb.empty() || verb.size() > 8 ||
        !std::all_of(verb.begin(), verb.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) {
      break;
    }
    feature(verb, step);
    if (verb == "DATA" || end == std::string_view::npos) break;
    pos = end + 2;
  }
  feature("end", static_cast<std::size_t>(result.code) * 1000 + static_cast<std::size_t>(result.response_code % 1000));
}

// The peer's side of one run: accepts libcurl's connection, sends the
// script, closes its sending side and returns what libcurl sent.
std::string serve(int listener, std::string_view script) {
  pollfd waiting{listener, POLLIN, 0};
  if (::poll(&waiting, 1, 10000) != 1) return "(libcurl did not connect)";
  const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  require(fd >= 0, "accept failed");
  // libcurl may stop reading and close early: no SIGPIPE, just stop sending.
  for (std::size_t sent = 0; sent < script.size();) {
    const ssize_t n = ::send(fd, script.data() + sent, script.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  std::string wire;
  std::array<char, 4096> chunk{};
  for (ssize_t n; (n = ::recv(fd, chunk.data(), chunk.size(), 0)) > 0;) {
    wire.append(chunk.data(), static_cast<std::size_t>(n));
  }
  ::close(fd);
  return wire;
}

// A line of the script that starts with `prefix`, at or after `from`.
std::size_t find_line(std::string_view script, std::string_view prefix, std::size_t from) {
  for (std::size_t pos = from; pos < script.size();) {
    if (script.substr(pos).starts_with(prefix)) return pos;
    const auto newline = script.find('\n', pos);
    if (newline == std::string_view::npos) break;
    pos = newline + 1;
  }
  return std::string_view::npos;
}

bool accepted_data(std::string_view script) {
  const auto go_ahead = find_line(script, "354", 0);
  if (go_ahead == std::string_view::npos) return false;
  return find_line(script, "2", go_ahead + 1) != std::string_view::npos;
}

}  // namespace
}  // namespace referrald::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace referrald;
  using namespace referrald::fuzz;
  if (size == 0) return 0;
  Harness& h = harness();
  const int choice = data[0] % 3;
  const SmtpAdapter& adapter = choice == 0 ? *h.relay : choice == 1 ? *h.relay_login : *h.starttls;
  const bool tls_required = choice == 2;
  const std::string_view script(reinterpret_cast<const char*>(data) + 1, size - 1);

  std::string wire;
  std::thread peer([&] { wire = serve(h.listener, script); });
  SmtpTransfer transfer;
  transfer.message = MailStream(
      std::string("From: <referrald@hospital.example>\r\nTo: <office@hospital.example>\r\nSubject: Referral R-1\r\n"
                  "\r\nA referral is waiting.\r\n"));
  CurlPool::Setup setup = [&](CURL* curl) {
    adapter.configure(curl, transfer);
    curl_easy_setopt(curl, CURLOPT_FORBID_REUSE, 1L);  // every run is a connection of its own
  };
  curl_easy_reset(h.curl);  // as CurlPool does between transfers
  const CurlResult result = perform_transfer(h.curl, setup);
  peer.join();

  record_progress(wire, result);
  if (h.trace) {
    std::fprintf(stderr, "---- libcurl sent:\n%s\n---- CURLcode %d, reply %ld: %s\n", wire.c_str(),
                 static_cast<int>(result.code), result.response_code, result.error.c_str());
  }

  const Outcome outcome = classify_smtp_result(result);
  const long reply = result.response_code;

  require((outcome.kind == OutcomeClass::delivered) == (result.code == CURLE_OK),
          "delivered does not match libcurl's result");
  if (outcome.kind == OutcomeClass::delivered) {
    require(accepted_data(script), "delivered without 354 to DATA and a 2xx after it");
    require(!tls_required, "delivered with STARTTLS required, against a server that cannot do TLS");
  } else {
    require(outcome.code == (reply > 0 ? std::optional<std::string>(std::to_string(reply)) : std::nullopt),
            "the outcome's code is not the reply code");
    if (reply >= 500 && reply < 600) require(outcome.kind != OutcomeClass::transient, "5xx retried as transient");
    if (reply >= 400 && reply < 500) require(outcome.kind != OutcomeClass::permanent, "4xx given up as permanent");
    if (reply == 0) require(outcome.kind != OutcomeClass::permanent, "no reply, yet permanent");
  }
  require(is_printable_ascii(outcome.message), "the outcome's message is not one printable line");
  require(outcome.message.find(smtp_password) == std::string::npos, "the password is in the outcome");
  require(wire.find(smtp_password) == std::string::npos, "the password went out verbatim");
  if (tls_required) {
    for (const auto line : after_tls_markers) {
      require(wire.find(line) == std::string::npos, "cleartext before TLS: " + std::string(line));
    }
  }
  return 0;
}
