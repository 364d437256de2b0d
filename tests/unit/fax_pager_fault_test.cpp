// Fault injection for the hylafax and snpp adapters: a scripted server on a
// loopback port answers each command as a test says — refusals, a 421, a
// dropped connection, garbage, an endless line, silence — and the adapter
// must turn each into the right outcome within its deadline.
#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "adapters/hylafax/hylafax_adapter.hpp"
#include "adapters/snpp/snpp_adapter.hpp"

namespace referrald {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;
constexpr auto as_result = asio::as_tuple(asio::use_awaitable);

// What the scripted server does when a command arrives.
struct Answer {
  std::string reply;   // sent as is (include CRLF); "" sends nothing
  bool hang = false;   // then say nothing more
  bool close = false;  // then drop the connection
};

// A line-protocol server: greets, then answers each command by its first
// word (or the whole line, which wins). PASV opens a data listener and names
// a bogus host; STOT reads the upload from it; LIST sends `listing`.
class ScriptedServer {
 public:
  explicit ScriptedServer(asio::io_context& ioc, const asio::ip::address& address = asio::ip::address_v4::loopback())
      : ioc_(ioc), acceptor_(ioc, tcp::endpoint(address, 0)) {
    asio::co_spawn(ioc_, serve(), asio::detached);
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

  Answer greeting{"220 test server ready.\r\n"};
  std::map<std::string, Answer> answers;
  std::string listing;
  std::vector<std::string> received;  // every command line, in order
  std::string uploaded;

 private:
  asio::awaitable<void> serve() {
    while (true) {
      auto [ec, socket] = co_await acceptor_.async_accept(as_result);
      if (ec) co_return;
      asio::co_spawn(ioc_, session(std::move(socket)), asio::detached);
    }
  }

  asio::awaitable<void> send(tcp::socket& socket, const std::string& text) {
    if (!text.empty()) co_await asio::async_write(socket, asio::buffer(text), as_result);
  }

  asio::awaitable<void> session(tcp::socket socket) {
    std::string buffer;
    std::unique_ptr<tcp::acceptor> data_listener;
    co_await send(socket, greeting.reply);
    if (greeting.hang || greeting.close) {
      if (greeting.hang) co_await hang();
      co_return;
    }
    while (true) {
      auto [ec, n] = co_await asio::async_read_until(socket, asio::dynamic_buffer(buffer), "\r\n", as_result);
      if (ec) co_return;
      std::string line = buffer.substr(0, n - 2);
      buffer.erase(0, n);
      received.push_back(line);
      const std::string word = line.substr(0, line.find(' '));
      Answer answer;
      if (auto it = answers.find(line); it != answers.end()) {
        answer = it->second;
      } else if (auto w = answers.find(word); w != answers.end()) {
        answer = w->second;
      } else if (word == "PASV") {
        data_listener = std::make_unique<tcp::acceptor>(ioc_, tcp::endpoint(tcp::v4(), 0));
        const auto p = data_listener->local_endpoint().port();
        // A host that is not ours: the client must connect to the control peer.
        answer.reply = "227 Entering passive mode (10,255,255,1," + std::to_string(p / 256) + "," +
                       std::to_string(p % 256) + ")\r\n";
      } else if (word == "EPSV") {
        data_listener = std::make_unique<tcp::acceptor>(ioc_, tcp::endpoint(acceptor_.local_endpoint().address(), 0));
        answer.reply = "229 Entering Extended Passive Mode (|||" +
                       std::to_string(data_listener->local_endpoint().port()) + "|)\r\n";
      } else if ((word == "STOT" || word == "LIST") && data_listener) {
        auto [aec, data] = co_await data_listener->async_accept(as_result);
        if (aec) co_return;
        if (word == "STOT") {
          co_await send(socket, "150 FILE: /tmp/doc9.pdf (Opening new data connection).\r\n");
          std::string upload;
          auto [rec, rn] = co_await asio::async_read(data, asio::dynamic_buffer(upload), as_result);
          (void)rn;
          uploaded = upload;
          answer.reply = "226 Transfer complete (FILE: /tmp/doc9.pdf).\r\n";
        } else {
          co_await send(socket, "150 Opening new data connection.\r\n");
          co_await asio::async_write(data, asio::buffer(listing), as_result);
          data.close();
          answer.reply = "226 Transfer complete.\r\n";
        }
      } else {
        answer.reply = default_reply(word);
      }
      co_await send(socket, answer.reply);
      if (answer.hang) co_await hang();
      if (answer.hang || answer.close) co_return;
      if (word == "QUIT") co_return;
    }
  }

  static std::string default_reply(const std::string& word) {
    if (word == "USER") return "230 User logged in.\r\n";
    if (word == "JNEW") return "200 New job created: jobid: 41 groupid: 41.\r\n";
    if (word == "JPARM") return "213 set.\r\n";
    if (word == "JSUBM") return "200 Job 41 submitted.\r\n";
    if (word == "JOBFMT" || word == "TYPE" || word == "FORM") return "200 OK.\r\n";
    if (word == "JOB") return "200 Current job: jobid: 41.\r\n";
    if (word == "QUIT") return "221 Goodbye.\r\n";
    if (word == "PAGE") return "250 Pager ID accepted; provider: 5551212 pin: 5551234 jobid: 7.\r\n";
    return "250 OK.\r\n";  // LOGI, SITE, MESS, SEND
  }

  asio::awaitable<void> hang() {
    asio::steady_timer t(ioc_);
    t.expires_after(30s);
    co_await t.async_wait(as_result);
  }

  asio::io_context& ioc_;
  tcp::acceptor acceptor_;
};

Delivery sample_delivery(int attempt = 1) {
  Delivery d;
  d.identity = "R-20261128-7K3M9-TZQXA.office-fax";
  d.referral_id = "R-20261128-7K3M9-TZQXA";
  d.target = "office-fax";
  d.attempt = attempt;
  d.urgency = Urgency::urgent;
  d.decision = Decision::review;
  d.document = "{}";
  return d;
}

// Runs one send to completion; also returns how long it took.
template <typename A>
std::pair<Outcome, std::chrono::milliseconds> run(asio::io_context& ioc, A& adapter, const Delivery& d) {
  const auto started = std::chrono::steady_clock::now();
  auto future = asio::co_spawn(ioc, adapter.send(d), asio::use_future);
  while (future.wait_for(0s) != std::future_status::ready) ioc.run_one_for(100ms);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  return {future.get(), took};
}

HylafaxSettings fax_settings(std::uint16_t port) {
  HylafaxSettings s;
  s.host = "127.0.0.1";
  s.port = port;
  s.user = "referrald";
  s.dial = "9015954011";
  s.from_user = "referrald";
  s.budget = 3s;
  s.io_timeout = 1s;
  s.poll_interval = 1s;
  return s;
}

HylafaxAdapter fax_adapter(asio::io_context& ioc, HylafaxSettings s) {
  return HylafaxAdapter(
      std::move(s), [](const Delivery&) { return std::string("%PDF-1.4 test document"); }, ioc.get_executor());
}

TEST(HylafaxFaults, SubmitsAndUploadsToTheControlPeer) {
  asio::io_context ioc;
  ScriptedServer server(ioc);
  auto adapter = fax_adapter(ioc, fax_settings(server.port()));
  const auto [outcome, took] = run(ioc, adapter, sample_delivery());
  EXPECT_EQ(outcome.kind, OutcomeClass::delivered) << outcome.message;
  EXPECT_EQ(outcome.external_id, "41");
  EXPECT_EQ(server.uploaded, "%PDF-1.4 test document");  // via 127.0.0.1, not 10.255.255.1
  const std::vector<std::string> expected{"USER referrald",
                                          "TYPE I",
                                          "FORM PDF",
                                          "PASV",
                                          "STOT",
                                          "JNEW",
                                          "JPARM FROMUSER \"referrald\"",
                                          "JPARM DIALSTRING \"9015954011\"",
                                          "JPARM NOTIFY \"none\"",
                                          "JPARM JOBINFO \"R-20261128-7K3M9-TZQXA.office-fax\"",
                                          "JPARM LASTTIME 000300",
                                          "JPARM MAXDIALS 12",
                                          "JPARM DOCUMENT /tmp/doc9.pdf",
                                          "JSUBM",
                                          "QUIT"};
  EXPECT_EQ(server.received, expected);
}

TEST(HylafaxFaults, OverIPv6ThePortComesFromEpsv) {
  asio::io_context ioc;
  ScriptedServer server(ioc, asio::ip::address_v6::loopback());
  auto s = fax_settings(server.port());
  s.host = "::1";
  auto adapter = fax_adapter(ioc, s);
  const auto [outcome, took] = run(ioc, adapter, sample_delivery());
  EXPECT_EQ(outcome.kind, OutcomeClass::delivered) << outcome.message;
  EXPECT_EQ(server.uploaded, "%PDF-1.4 test document");
  EXPECT_NE(std::find(server.received.begin(), server.received.end(), "EPSV"), server.received.end());
}

TEST(HylafaxFaults, SchedulerRefusalIsTransientOther5xxPermanent) {
  asio::io_context ioc;
  ScriptedServer server(ioc);
  auto adapter = fax_adapter(ioc, fax_settings(server.port()));
  server.answers["JSUBM"] = {"450 Unable to submit job: scheduler busy.\r\n"};
  auto [outcome, took] = run(ioc, adapter, sample_delivery());
  EXPECT_EQ(outcome.kind, OutcomeClass::transient) << outcome.message;
  EXPECT_EQ(outcome.code, "450");
  server.answers["JSUBM"] = {"504 Job 41 not submitted: missing MODEM.\r\n"};
  std::tie(outcome, took) = run(ioc, adapter, sample_delivery());
  EXPECT_EQ(outcome.kind, OutcomeClass::permanent) << outcome.message;
  EXPECT_EQ(outcome.message, "JSUBM (job 41): 504 Job 41 not submitted: missing MODEM.");
  // The dial string was set and accepted in this session: the server lost it
  // (hfaxd under concurrent submissions); a new job next time goes through.
  server.answers["JSUBM"] = {"504 Cannot submit job 41; null or missing DIALSTRING parameter.\r\n"};
  std::tie(outcome, took) = run(ioc, adapter, sample_delivery());
  EXPECT_EQ(outcome.kind, OutcomeClass::transient) << outcome.message;
  EXPECT_EQ(outcome.code, "504");
  server.answers.erase("JSUBM");
  server.answers["JPARM DIALSTRING \"9015954011\""] = {"503 Permission denied.\r\n"};
  std::tie(outcome, took) = run(ioc, adapter, sample_delivery());
  EXPECT_EQ(outcome.kind, OutcomeClass::misconfigured) << outcome.message;
  EXPECT_EQ(outcome.message, "JPARM DIALSTRING: 503 Permission denied.");
}

TEST(HylafaxFaults, LoginProblemsAreMisconfigured) {
  asio::io_context ioc;
  ScriptedServer server(ioc);
  auto adapter = fax_adapter(ioc, fax_settings(server.port()));
  server.answers["USER"] = {"331 Password required for referrald.\r\n"};
  auto [outcome, took] = run(ioc, adapter, sample_delivery());
  EXPECT_EQ(outcome.kind, OutcomeClass::misconfigured) << outcome.message;
  EXPECT_NE(outcome.message.find("no password_file"), std::string::npos);

  auto with_password = fax_settings(server.port());
  with_password.password = "secret";
  auto adapter2 = fax_adapter(ioc, with_password);
  server.answers["PASS"] = {"530 Login incorrect.\r\n"};
  std::tie(outcome, took) = run(ioc, adapter2, sample_delivery());
  EXPECT_EQ(outcome.kind, OutcomeClass::misconfigured) << outcome.message;
  EXPECT_EQ(outcome.message, "PASS ****: 530 Login incorrect.");
  EXPECT_EQ(outcome.message.find("secret"), std::string::npos);
}

TEST(HylafaxFaults, ARepeatTakesTheJobAlreadyQueuedUnderItsTag) {
  asio::io_context ioc;
  ScriptedServer server(ioc);
  server.listing = "3|W|someone-else\n12|B|R-20261128-7K3M9-TZQXA.office-fax\n";
  auto adapter = fax_adapter(ioc, fax_settings(server.port()));
  const auto [outcome, took] = run(ioc, adapter, sample_delivery(2));
  EXPECT_EQ(outcome.kind, OutcomeClass::delivered) << outcome.message;
  EXPECT_EQ(outcome.external_id, "12");
  for (const auto& line : server.received) EXPECT_NE(line, "JSUBM");
  EXPECT_TRUE(server.uploaded.empty());
}

TEST(HylafaxFaults, ARepeatWhosePreviousJobFailedFaxesAgain) {
  asio::io_context ioc;
  ScriptedServer server(ioc);
  server.listing = "12|F|R-20261128-7K3M9-TZQXA.office-fax\n";
  auto adapter = fax_adapter(ioc, fax_settings(server.port()));
  const auto [outcome, took] = run(ioc, adapter, sample_delivery(2));
  EXPECT_EQ(outcome.kind, OutcomeClass::delivered) << outcome.message;
  EXPECT_EQ(outcome.external_id, "41");
}

TEST(HylafaxFaults, ARepeatOnAServerThatHidesItsQueueFaxesAgain) {
  asio::io_context ioc;
  ScriptedServer server(ioc);
  server.answers["LIST"] = {"550 Permission denied: no access to sendq.\r\n"};
  auto adapter = fax_adapter(ioc, fax_settings(server.port()));
  const auto [outcome, took] = run(ioc, adapter, sample_delivery(3));
  EXPECT_EQ(outcome.kind, OutcomeClass::delivered) << outcome.message;
  EXPECT_EQ(outcome.external_id, "41");
  EXPECT_EQ(server.uploaded, "%PDF-1.4 test document");
}

TEST(HylafaxFaults, SilenceTimesOutWithinTheBudget) {
  asio::io_context ioc;
  ScriptedServer server(ioc);
  server.answers["JNEW"] = {"", true};
  auto adapter = fax_adapter(ioc, fax_settings(server.port()));
  const auto [outcome, took] = run(ioc, adapter, sample_delivery());
  EXPECT_EQ(outcome.kind, OutcomeClass::transient) << outcome.message;
  EXPECT_EQ(outcome.message, "timed out after 1s waiting for the reply to JNEW");
  EXPECT_LT(took, 3s);
}

TEST(HylafaxFaults, DoneWhenDoneReportsTheJobsEnd) {
  asio::io_context ioc;
  ScriptedServer server(ioc);
  auto s = fax_settings(server.port());
  s.wait_until_done = true;
  server.answers["JPARM STATE"] = {"213 DONE\r\n"};
  auto adapter = fax_adapter(ioc, s);
  auto [outcome, took] = run(ioc, adapter, sample_delivery());
  EXPECT_EQ(outcome.kind, OutcomeClass::delivered) << outcome.message;
  EXPECT_EQ(outcome.message, "HylaFAX job 41 done");
  server.answers["JPARM STATE"] = {"213 FAILED\r\n"};
  server.answers["JPARM STATUS"] = {"213 Busy signal detected\r\n"};
  std::tie(outcome, took) = run(ioc, adapter, sample_delivery());
  EXPECT_EQ(outcome.kind, OutcomeClass::permanent) << outcome.message;
  EXPECT_EQ(outcome.message, "HylaFAX job 41 failed: Busy signal detected");
  server.answers["JPARM STATE"] = {"213 SLEEPING\r\n"};
  std::tie(outcome, took) = run(ioc, adapter, sample_delivery());
  EXPECT_EQ(outcome.kind, OutcomeClass::transient) << outcome.message;
  EXPECT_EQ(outcome.message.rfind("HylaFAX job 41 still SLEEPING after ", 0), 0U) << outcome.message;
  EXPECT_LT(took, 3500ms);
}

SnppSettings pager_settings(std::uint16_t port) {
  SnppSettings s;
  s.host = "127.0.0.1";
  s.port = port;
  s.login = "referrald";
  s.password = "secret";
  s.pager_id = "5551234";
  s.hylafax = true;
  s.callback_phone = "1-888-226-4343";
  s.budget = 3s;
  s.io_timeout = 1s;
  return s;
}

TEST(SnppFaults, PagesWithTheHylafaxDialect) {
  asio::io_context ioc;
  ScriptedServer server(ioc);
  server.greeting = {"218 maintenance tonight\r\n220 SNPP server ready.\r\n"};
  SnppAdapter adapter(pager_settings(server.port()));
  const auto [outcome, took] = run(ioc, adapter, sample_delivery());
  EXPECT_EQ(outcome.kind, OutcomeClass::delivered) << outcome.message;
  EXPECT_EQ(outcome.external_id, "7");
  const std::vector<std::string> expected{"LOGI referrald secret",
                                          "SITE FROMUSER R-20261128-7K3M9-TZQXA.office-fax",
                                          "SITE JQUEUE yes",
                                          "PAGE 5551234",
                                          "MESS referrald R-20261128-7K3M9-TZQXA URGENT review call 1-888-226-4343",
                                          "SEND",
                                          "QUIT"};
  EXPECT_EQ(server.received, expected);
}

TEST(SnppFaults, RepliesAreClassified) {
  struct Case {
    std::string command;
    std::string reply;
    OutcomeClass expected;
  };
  const std::vector<Case> cases{
      {"LOGI", "550 Login incorrect.\r\n", OutcomeClass::misconfigured},
      {"LOGI", "421 Too many sessions.\r\n", OutcomeClass::transient},
      {"PAGE", "530 Please login with LOGIN.\r\n", OutcomeClass::misconfigured},
      {"PAGE", "550 Invalid pager ID REJECTME.\r\n", OutcomeClass::permanent},
      {"PAGE", "421 Gateway going down.\r\n", OutcomeClass::transient},
      {"MESS", "550 Error, message too long; no more than 128 characters accepted.\r\n", OutcomeClass::permanent},
      {"SEND", "554 Gateway unavailable.\r\n", OutcomeClass::transient},
      // hfaxd: its scheduler refused the job, which is not queued (docs/hylafax.md).
      {"SEND", "554 Failed to submit message 24: Unspecified reason (scheduler NAK'd request).\r\n",
       OutcomeClass::transient},
      {"SEND", "503 No pager.\r\n", OutcomeClass::permanent},
      {"SITE", "421 Service not available.\r\n", OutcomeClass::transient},
  };
  for (const auto& c : cases) {
    asio::io_context ioc;
    ScriptedServer server(ioc);
    server.answers[c.command] = {c.reply};
    SnppAdapter adapter(pager_settings(server.port()));
    const auto [outcome, took] = run(ioc, adapter, sample_delivery());
    EXPECT_EQ(outcome.kind, c.expected) << c.command << " " << c.reply << ": " << outcome.message;
    EXPECT_EQ(outcome.code, c.reply.substr(0, 3));
  }
}

TEST(SnppFaults, AServerWithoutSiteStillPages) {
  asio::io_context ioc;
  ScriptedServer server(ioc);
  server.answers["SITE"] = {"500 Command not recognized.\r\n"};
  SnppAdapter adapter(pager_settings(server.port()));
  const auto [outcome, took] = run(ioc, adapter, sample_delivery());
  EXPECT_EQ(outcome.kind, OutcomeClass::delivered) << outcome.message;
}

TEST(SnppFaults, NetworkAndProtocolFailuresAreTransient) {
  {
    asio::io_context ioc;
    ScriptedServer server(ioc);
    server.greeting = {"421 Too busy, try later.\r\n"};
    SnppAdapter adapter(pager_settings(server.port()));
    const auto [outcome, took] = run(ioc, adapter, sample_delivery());
    EXPECT_EQ(outcome.kind, OutcomeClass::transient);
    EXPECT_EQ(outcome.message, "server refused the session: 421 Too busy, try later.");
  }
  {
    asio::io_context ioc;
    ScriptedServer server(ioc);
    server.greeting = {"HTTP/1.1 400 Bad Request\r\n"};
    SnppAdapter adapter(pager_settings(server.port()));
    const auto [outcome, took] = run(ioc, adapter, sample_delivery());
    EXPECT_EQ(outcome.kind, OutcomeClass::transient);
    EXPECT_EQ(outcome.message, "protocol error in the greeting: malformed reply line \"HTTP/1.1 400 Bad Request\"");
  }
  {
    asio::io_context ioc;
    ScriptedServer server(ioc);
    server.greeting = {"220 " + std::string(10000, 'x')};  // an endless line
    SnppAdapter adapter(pager_settings(server.port()));
    const auto [outcome, took] = run(ioc, adapter, sample_delivery());
    EXPECT_EQ(outcome.kind, OutcomeClass::transient);
    EXPECT_EQ(outcome.message, "protocol error in the greeting: reply line longer than 4096 bytes");
  }
  {
    asio::io_context ioc;
    ScriptedServer server(ioc);
    server.answers["MESS"] = {"", false, true};  // drops the connection
    SnppAdapter adapter(pager_settings(server.port()));
    const auto [outcome, took] = run(ioc, adapter, sample_delivery());
    EXPECT_EQ(outcome.kind, OutcomeClass::transient);
    EXPECT_EQ(outcome.message, "connection closed by the server while waiting for the reply to MESS");
  }
  {
    asio::io_context ioc;
    ScriptedServer server(ioc);
    server.greeting = {"", true};  // accepts, never greets
    SnppAdapter adapter(pager_settings(server.port()));
    const auto [outcome, took] = run(ioc, adapter, sample_delivery());
    EXPECT_EQ(outcome.kind, OutcomeClass::transient);
    EXPECT_EQ(outcome.message, "timed out after 1s waiting for the greeting");
    EXPECT_LT(took, 2s);
  }
  {
    asio::io_context ioc;
    std::uint16_t closed_port = 0;
    {
      tcp::acceptor probe(ioc, tcp::endpoint(tcp::v4(), 0));
      closed_port = probe.local_endpoint().port();
    }
    SnppAdapter adapter(pager_settings(closed_port));
    const auto [outcome, took] = run(ioc, adapter, sample_delivery());
    EXPECT_EQ(outcome.kind, OutcomeClass::transient);
    EXPECT_EQ(outcome.message, "connect 127.0.0.1:" + std::to_string(closed_port) + ": Connection refused");
  }
}

// A repeat to hfaxd first lists its queues by sender over the client
// protocol (a second scripted server here); the SNPP server is only asked
// when no page of this delivery is queued there.
struct RepeatCheck {
  asio::io_context ioc;
  ScriptedServer snpp{ioc};
  ScriptedServer queues{ioc};
  SnppSettings settings() {
    auto s = pager_settings(snpp.port());
    s.hylafax_port = queues.port();
    return s;
  }
};

TEST(SnppFaults, ARepeatTakesThePageAlreadyQueuedUnderItsSender) {
  RepeatCheck check;
  check.queues.listing = "3|B|someone-else\n12|B|R-20261128-7K3M9-TZQXA.office-fax\n";
  SnppAdapter adapter(check.settings());
  const auto [outcome, took] = run(check.ioc, adapter, sample_delivery(2));
  EXPECT_EQ(outcome.kind, OutcomeClass::delivered) << outcome.message;
  EXPECT_EQ(outcome.external_id, "12");
  EXPECT_EQ(outcome.message, "page job 12 was already queued by an earlier attempt (BLOCKED)");
  EXPECT_TRUE(check.snpp.received.empty());  // not paged again
  const std::vector<std::string> asked{"USER referrald", "JOBFMT \"%j|%a|%S\"", "PASV", "LIST sendq", "QUIT"};
  EXPECT_EQ(check.queues.received, asked);
}

TEST(SnppFaults, AFirstAttemptDoesNotLook) {
  RepeatCheck check;
  check.queues.listing = "12|B|R-20261128-7K3M9-TZQXA.office-fax\n";
  SnppAdapter adapter(check.settings());
  const auto [outcome, took] = run(check.ioc, adapter, sample_delivery(1));
  EXPECT_EQ(outcome.external_id, "7") << outcome.message;
  EXPECT_TRUE(check.queues.received.empty());
}

TEST(SnppFaults, ARepeatWhoseEarlierPageFailedPagesAgain) {
  RepeatCheck check;
  check.queues.listing = "12|F|R-20261128-7K3M9-TZQXA.office-fax\n";
  SnppAdapter adapter(check.settings());
  const auto [outcome, took] = run(check.ioc, adapter, sample_delivery(2));
  EXPECT_EQ(outcome.kind, OutcomeClass::delivered) << outcome.message;
  EXPECT_EQ(outcome.external_id, "7");
  EXPECT_EQ(outcome.message, "page accepted: 250 OK.");  // nothing left unsure
  EXPECT_EQ(check.queues.received.back(), "QUIT");
  EXPECT_NE(std::find(check.queues.received.begin(), check.queues.received.end(), "LIST doneq"),
            check.queues.received.end());
}

TEST(SnppFaults, ARepeatFindingItsPageStillBeingSubmittedPagesAndSaysSo) {
  RepeatCheck check;
  check.queues.listing = "12|T|R-20261128-7K3M9-TZQXA.office-fax\n";
  SnppAdapter adapter(check.settings());
  const auto [outcome, took] = run(check.ioc, adapter, sample_delivery(2));
  EXPECT_EQ(outcome.kind, OutcomeClass::delivered) << outcome.message;
  EXPECT_EQ(outcome.external_id, "7");
  EXPECT_EQ(outcome.message, "page accepted: 250 OK. (earlier page job 12 still being submitted)");
}

TEST(SnppFaults, ARepeatThatCannotLookPagesAndSaysSo) {
  RepeatCheck check;
  check.queues.answers["LIST"] = {"550 Permission denied: no access to sendq.\r\n"};
  SnppAdapter adapter(check.settings());
  auto [outcome, took] = run(check.ioc, adapter, sample_delivery(2));
  EXPECT_EQ(outcome.external_id, "7") << outcome.message;
  EXPECT_EQ(outcome.message,
            "page accepted: 250 OK. (earlier page not looked for: LIST sendq: 550 Permission denied: no access to "
            "sendq.)");

  // Nothing listening: the page still goes out, and a failure says it too.
  std::uint16_t closed_port = 0;
  {
    tcp::acceptor probe(check.ioc, tcp::endpoint(tcp::v4(), 0));
    closed_port = probe.local_endpoint().port();
  }
  auto s = check.settings();
  s.hylafax_port = closed_port;
  SnppAdapter blind(s);
  check.snpp.answers["SEND"] = {"421 Gateway going down.\r\n"};
  std::tie(outcome, took) = run(check.ioc, blind, sample_delivery(3));
  EXPECT_EQ(outcome.kind, OutcomeClass::transient);
  EXPECT_EQ(outcome.message, "SEND: 421 Gateway going down. (earlier page not looked for: connect 127.0.0.1:" +
                                 std::to_string(closed_port) + ": Connection refused)");
}

TEST(SnppFaults, SendWaitsForAQueueingServerWithinTheBudget) {
  asio::io_context ioc;
  ScriptedServer server(ioc);
  server.answers["SEND"] = {"", true};  // hfaxd without JQUEUE: SEND blocks for the whole TAP call
  SnppAdapter adapter(pager_settings(server.port()));
  const auto [outcome, took] = run(ioc, adapter, sample_delivery());
  EXPECT_EQ(outcome.kind, OutcomeClass::transient);
  EXPECT_EQ(outcome.message.rfind("timed out after ", 0), 0U) << outcome.message;
  EXPECT_GE(took, 2s);  // longer than one step's timeout: SEND gets the rest of the budget
  EXPECT_LT(took, 3500ms);
}

}  // namespace
}  // namespace referrald
