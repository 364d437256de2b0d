// libFuzzer target: SMTP server replies as the email adapter meets them.
// libcurl parses the replies; referrald configures the transfer and
// classifies its result. So this target runs the real thing: the adapter's
// own configure() on a libcurl easy handle, perform_transfer() as CurlPool's
// workers run it, and classify_smtp_result() — against a "server" that is the
// fuzz input.
//
// Why a socketpair: the input is written into one end before the transfer
// and that end is shut for writing, so libcurl (handed the other end through
// CURLOPT_OPENSOCKETFUNCTION, already connected) reads exactly the input and
// then EOF. No listener, no thread, no port, no waiting: a transfer costs a
// few system calls, which makes 10^6 executions a matter of minutes. A real
// loopback peer answering command by command would need a thread per run
// and gain nothing: libcurl reads replies in order whenever they arrive.
//
// The message is a fixed short text, not the referral PDF the adapter
// renders: rendering is not reply handling and would cost milliseconds.
// libcurl itself is Debian's (not instrumented): coverage feedback comes
// from referrald's code and libFuzzer's comparison tracing of its own, so
// the dictionary (fuzz/smtp_reply.dict) carries the SMTP vocabulary.
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
//     with no reply is never permanent (PROTOCOLS.md §5), and the outcome's
//     code is the reply code;
//   - the outcome's message is one line of printable ASCII (it goes to the
//     log and to the operator's screen).
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>

#include "adapters/curl/curl_pool.hpp"
#include "adapters/smtp/smtp_adapter.hpp"
#include "check.hpp"

namespace referrald::fuzz {
namespace {

constexpr std::string_view kPassword = "fuzz-Secret-7Qm2";
// Lines that cannot appear in cleartext when TLS is required.
constexpr std::array<std::string_view, 5> kAfterTls{"MAIL FROM", "RCPT TO", "AUTH ", "DATA", "Subject:"};

OfficeConfig office() {
  OfficeConfig o;
  o.phone = "1-555-0100";
  return o;
}

TargetConfig smtp_target(bool tls, bool login, const std::filesystem::path& password_file) {
  TargetConfig t;
  t.name = "office-mail";
  t.type = "smtp";
  t.settings["url"] = std::string("smtp://127.0.0.1:2525");
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

struct Harness {
  CurlPool pool{1};  // the adapters hold a reference; this target never uses it
  std::unique_ptr<SmtpAdapter> relay, relay_login, starttls;
  CURL* curl = nullptr;

  Harness() {
    spdlog::set_level(spdlog::level::off);
    // The adapter reads its password file once, in its constructor.
    const auto file = std::filesystem::temp_directory_path() / ("referrald-fuzz-" + std::to_string(::getpid()));
    std::ofstream(file) << kPassword << '\n';
    relay = std::make_unique<SmtpAdapter>(smtp_target(false, false, file), pool, office());
    relay_login = std::make_unique<SmtpAdapter>(smtp_target(false, true, file), pool, office());
    starttls = std::make_unique<SmtpAdapter>(smtp_target(true, true, file), pool, office());
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

// libCurl's socket: our end of the pair, already connected.
struct Socket {
  int fd = -1;
  bool handed_over = false;
};

curl_socket_t open_socket(void* user, curlsocktype /*purpose*/, curl_sockaddr* /*address*/) {
  auto* s = static_cast<Socket*>(user);
  if (s->handed_over) return CURL_SOCKET_BAD;  // one connection per run
  s->handed_over = true;
  return s->fd;
}

int already_connected(void* /*user*/, curl_socket_t /*fd*/, curlsocktype /*purpose*/) {
  return CURL_SOCKOPT_ALREADY_CONNECTED;
}

// Everything written to `fd` so far (libCurl's commands and message).
std::string drain(int fd) {
  std::string out;
  std::array<char, 4096> chunk{};
  while (true) {
    const ssize_t n = ::recv(fd, chunk.data(), chunk.size(), MSG_DONTWAIT);
    if (n <= 0) break;
    out.append(chunk.data(), static_cast<std::size_t>(n));
  }
  return out;
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
  if (size == 0 || size > 65536) return 0;  // the script must fit the socket buffer: no writer thread
  Harness& h = harness();
  const int choice = data[0] % 3;
  const SmtpAdapter& adapter = choice == 0 ? *h.relay : choice == 1 ? *h.relay_login : *h.starttls;
  const bool tls_required = choice == 2;
  const std::string_view script(reinterpret_cast<const char*>(data) + 1, size - 1);

  int fds[2];
  require(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0, "socketpair failed");
  const ssize_t written = script.empty() ? 0 : ::send(fds[1], script.data(), script.size(), MSG_DONTWAIT);
  require(written == static_cast<ssize_t>(script.size()), "the script did not fit the socket buffer");
  ::shutdown(fds[1], SHUT_WR);

  Socket socket{fds[0]};
  SmtpTransfer transfer;
  transfer.message =
      "From: <referrald@hospital.example>\r\nTo: <office@hospital.example>\r\nSubject: Referral R-1\r\n"
      "\r\nA referral is waiting.\r\n";
  CurlPool::Setup setup = [&](CURL* curl) {
    adapter.configure(curl, transfer);
    curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, &socket);
    curl_easy_setopt(curl, CURLOPT_SOCKOPTFUNCTION, already_connected);
    curl_easy_setopt(curl, CURLOPT_FORBID_REUSE, 1L);  // the next run brings its own socket
  };
  curl_easy_reset(h.curl);  // as CurlPool does between transfers
  const CurlResult result = perform_transfer(h.curl, setup);
  if (!socket.handed_over) ::close(fds[0]);  // libcurl closes what it was given
  const std::string wire = drain(fds[1]);
  ::close(fds[1]);

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
  require(outcome.message.find(kPassword) == std::string::npos, "the password is in the outcome");
  require(wire.find(kPassword) == std::string::npos, "the password went out verbatim");
  if (tls_required) {
    for (const auto line : kAfterTls) {
      require(wire.find(line) == std::string::npos, "cleartext before TLS: " + std::string(line));
    }
  }
  return 0;
}
