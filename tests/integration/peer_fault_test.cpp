// Peer faults: the real referrald, real peers (aiosmtpd with STARTTLS+AUTH,
// HylaFAX's hfaxd for fax and SNPP) and tests/peers/fault_proxy.py between
// them. Each test lets one peer fail in one way for a while (down, hang,
// drop mid-dialogue, answer 4xx) while referrals keep arriving through the
// API, then clears the fault, and checks what the referral office would:
//   - intake did not notice: every submission 202, latency as before;
//   - nothing is lost: every referral stored, no delivery dead;
//   - /metrics showed the backlog and the backoff while it lasted;
//   - after the fault every referral reaches the peer, repeats only where the
//     peer had done the work and the answer was lost (counted);
//   - hangs ended by the target's timeout: no 'sending' row, nothing in flight.
// The fault lasts REFERRALD_FAULT_SECONDS (default 5, the CI form); the
// long form (minutes) is bench/run-peer-faults, the same code.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include "support/harness.hpp"
#include "support/peers.hpp"

namespace referrald::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto submit_every = 200ms;
constexpr auto baseline_for = 2s;
// Short backoff for the test; the target's timeout ends a hung session.
constexpr auto initial_backoff = 1s;
constexpr auto max_backoff = 4s;
constexpr auto target_timeout = 3s;

std::chrono::seconds fault_duration() {
  const char* value = std::getenv("REFERRALD_FAULT_SECONDS");
  const int seconds = value != nullptr ? std::atoi(value) : 0;
  return std::chrono::seconds(seconds > 0 ? seconds : 5);
}

enum class Fault { down, hang, drop, refuse };

// One value of a Prometheus text exposition: `series` is the metric name
// with its labels exactly as rendered, e.g. referrald_deliveries{target="x",state="retry"}.
// A series that is absent is 0 (the gauges leave out empty states).
double metric(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 && line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return 0;
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const auto index = static_cast<std::size_t>(p * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(index, values.size() - 1)];
}

// One peer kind behind its fault proxy: how referrald is pointed at it, how
// it answers a temporary failure, and how many copies of a referral's
// notification it holds.
class Peer {
 public:
  virtual ~Peer() = default;
  virtual std::string target() const = 0;
  // [[target]] table(s) for referrald, pointing at the proxy.
  virtual std::string target_config() const = 0;
  // The proxy command that cuts a session mid-dialogue.
  virtual std::string drop_command() const = 0;
  // What the drop fault leaves at the peer.
  enum class AfterDrop {
    nothing,     // the cut comes before the peer has anything to act on
    recognised,  // the peer has the work; the next attempt finds it and sends nothing again
  };
  virtual AfterDrop after_drop() const = 0;
  // What the adapter logs when a retry finds the work already at the peer.
  virtual std::string recognised_event() const { return ""; }
  // The attempts (an SQL condition on attempts `a`) that ended without
  // knowing whether the peer had the work: only they may explain a repeat.
  virtual std::string unsure_attempts() const {
    // A timeout: on a loaded machine a reply may come later than the 3 s timeout.
    return "a.message LIKE '%timed out%'";
  }
  // The peer answers a temporary failure (4xx) to every attempt, or stops.
  virtual void refuse(bool on) = 0;
  // Delivery identity ("<referral id>.<target>") -> notifications the peer
  // holds with it and will send (or has sent), read in one pass (minutes of
  // faults leave thousands).
  virtual std::map<std::string, int> copies() const = 0;
  // What the peer holds that it will never send (for the report), "" if nothing.
  virtual std::string dead_work() const { return ""; }
  FaultProxy& proxy() { return *proxy_; }

 protected:
  std::string common_keys() const { return "timeout = \"" + std::to_string(target_timeout.count()) + "s\"\n"; }
  TempDir secrets_;
  std::unique_ptr<FaultProxy> proxy_;
};

class SmtpPeer : public Peer {
 public:
  // `drop`: where the drop fault cuts (see drop_command()).
  explicit SmtpPeer(std::string drop = "drop 8") : drop_(std::move(drop)), server_(MailServer::Options{}) {
    write_file(secrets_ / "smtp-password", "s3cret\n");
    proxy_ = std::make_unique<FaultProxy>(server_.port());
  }
  std::string target() const override { return "office-email"; }
  std::string target_config() const override {
    return "[[target]]\nname = \"office-email\"\ntype = \"smtp\"\n"
           "url = \"smtp://127.0.0.1:" +
           std::to_string(proxy_->port()) +
           "\"\n"
           "ca_file = \"" +
           server_.ca_file().string() +
           "\"\n"
           "username = \"referrald\"\n"
           "password_file = \"" +
           (secrets_ / "smtp-password").string() +
           "\"\n"
           "from = \"Referral Office <referrald@hospital.example>\"\n"
           "to = [\"referrals@hospital.example\"]\n" +
           common_keys();
  }
  // After STARTTLS the proxy sees TLS records only, so the cut is placed by
  // counting client segments of a real session (the proxy's "stats": EHLO,
  // STARTTLS, two handshake flights, EHLO, AUTH, MAIL, RCPT, DATA, ...):
  // "drop 8" cuts after RCPT, before any message data, "drop 3" in the
  // middle of the TLS handshake. Neither can leave a mail at the server.
  std::string drop_command() const override { return drop_; }
  AfterDrop after_drop() const override { return AfterDrop::nothing; }
  // aiosmtpd itself answers 451 to every RCPT (smtp_server.py --tempfail-while).
  void refuse(bool on) override { server_.refuse_temporarily(on); }
  std::map<std::string, int> copies() const override {
    std::map<std::string, int> out;
    for (const auto& mail : server_.messages()) {
      const auto id = message_id_of(mail);  // "<identity>@referrald"
      ++out[id.substr(0, id.find('@'))];
    }
    return out;
  }

 private:
  std::string drop_;
  MailServer server_;
};

class HylafaxPeer : public Peer {
 public:
  explicit HylafaxPeer(bool pager) : pager_(pager) {
    server_.start();
    write_file(secrets_ / "hylafax-password", "secret\n");
    proxy_ = std::make_unique<FaultProxy>(pager ? server_.snpp_port() : server_.fax_port());
  }
  std::string target() const override { return pager_ ? "office-pager" : "office-fax"; }
  std::string target_config() const override {
    const std::string host = "host = \"127.0.0.1:" + std::to_string(proxy_->port()) + "\"\n";
    const std::string password = "password_file = \"" + (secrets_ / "hylafax-password").string() + "\"\n";
    if (pager_) {
      // The repeat check goes to hfaxd's client protocol itself, not through the proxy.
      return "[[target]]\nname = \"office-pager\"\ntype = \"snpp\"\n" + host + "login = \"secure\"\n" + password +
             "pager_id = \"5551234\"\nhylafax = true\nhylafax_port = " + std::to_string(server_.fax_port()) + "\n" +
             common_keys();
    }
    return "[[target]]\nname = \"office-fax\"\ntype = \"hylafax\"\n" + host + "user = \"secure\"\n" + password +
           "dial = \"9015954011\"\n" + common_keys();
  }
  // The cut comes right after the command that makes HylaFAX queue the job
  // (JSUBM; SEND for a page): hfaxd has it, referrald never hears so. The
  // next attempt finds the job (a fax by its tag, a page by its sender over
  // hfaxd's client protocol) and does not send it again.
  std::string drop_command() const override { return pager_ ? "drop-at SEND" : "drop-at JSUBM"; }
  AfterDrop after_drop() const override { return AfterDrop::recognised; }
  std::string recognised_event() const override {
    return pager_ ? "snpp.repeat_recognised" : "hylafax.repeat_recognised";
  }
  std::string unsure_attempts() const override {
    // A page goes out again only when the retry could not list hfaxd's
    // queues, or found the earlier job still being submitted (SUSPENDED:
    // its SEND had not reached the scheduler yet, which may still take it);
    // the attempt's message says which. A timeout alone is not unsure any
    // more: the retry looks first.
    if (pager_) return "a.message LIKE '%earlier page%'";
    return Peer::unsure_attempts();
  }
  void refuse(bool on) override {
    if (pager_) {
      // hfaxd's own answer while its shutdown file is there: "421 SNPP server unavailable".
      server_.shut_down(on);
    } else {
      // A mock: hfaxd's fax protocol has no switch for a temporary refusal
      // (a shut-down server greets with 220 and then stalls the login), so
      // the proxy greets with the 421 RFC 959 gives for "service not
      // available" and closes, as an overloaded server would.
      proxy_->command(on ? "reply 421 Service not available, closing control connection." : "pass");
    }
  }
  // A page's sender and a fax's job tag are the delivery's identity. A job
  // HylaFAX failed (state 8: faxq rejected it or it expired; it sits in
  // doneq) is not a page or fax anybody receives.
  std::map<std::string, int> copies() const override {
    std::map<std::string, int> out;
    for (const auto& job : server_.jobs()) {
      if (job.get("state") != failed_state) ++out[job.get(key())];
    }
    return out;
  }
  std::string dead_work() const override {
    std::string out;
    for (const auto& job : server_.jobs()) {
      if (job.get("state") == failed_state) {
        out += "job " + job.get("jobid") + " of " + job.get(key()) + " failed: " + job.get("status") + "\n";
      }
    }
    return out;
  }

 private:
  static constexpr const char* failed_state = "8";  // FaxRequest::state_failed
  std::string key() const { return pager_ ? "sender" : "jobtag"; }
  bool pager_;
  HylafaxServer server_;
};

// What one scenario measured; printed for the report.
struct Figures {
  std::vector<double> baseline_ms, fault_ms;
  int submitted = 0;
  double max_retry = 0;       // most deliveries of the target in 'retry' at one scrape
  double transient = 0;       // transient attempts counted during the fault
  double max_unsent_age = 0;  // referrald_oldest_unsent_delivery_age_seconds, highest seen
  double max_due_age = 0;     // referrald_oldest_due_delivery_age_seconds, highest seen
  double max_in_flight = 0;
  long long attempts = 0;    // attempts of the target, all of them
  double max_gap_s = 0;      // longest wait between two attempts of one delivery
  double max_attempt_s = 0;  // longest single attempt
  double drain_s = 0;        // fault cleared -> every delivery delivered
  int repeats = 0;
};

class PeerFaults : public ::testing::Test {
 protected:
  void run(Peer& peer, Fault fault);
};

void PeerFaults::run(Peer& peer, Fault fault) {
  const std::string target = peer.target();
  Daemon::Options options;
  options.with_default_targets = false;
  // A second target on every referral: a failing peer must not hold it up.
  options.extra_config =
      "\n[delivery]\nmax_attempts = 1000\n"
      "initial_backoff = \"" +
      std::to_string(initial_backoff.count()) +
      "s\"\n"
      "max_backoff = \"" +
      std::to_string(max_backoff.count()) + "s\"\n\n" + peer.target_config() +
      "\n[[target]]\nname = \"office-archive\"\ntype = \"spool\"\ndirectory = \"spool/archive\"\n"
      "\n[[route]]\nnotify = [\"" +
      target + "\", \"office-archive\"]\n";
  Daemon daemon(options);
  daemon.start();

  Figures f;
  std::vector<std::string> ids;
  const auto submit = [&](std::vector<double>& latencies) {
    const auto started = Clock::now();
    const auto r = daemon.post_referral(sample(ids.size() % 2 == 0 ? "asps-routine.json" : "asps-urgent.json"));
    latencies.push_back(std::chrono::duration<double, std::milli>(Clock::now() - started).count());
    ASSERT_EQ(r.status, 202) << r.body << r.error << "\n" << daemon.log();
    ids.push_back(json::parse(r.body)["id"]);
    ++f.submitted;
  };
  const auto count = [&](const std::string& where) {
    return count_rows(daemon.database(), "SELECT count(*) FROM deliveries WHERE " + where);
  };
  const auto wait_all_delivered = [&](std::chrono::seconds limit) {
    const auto deadline = Clock::now() + limit;
    while (count("state <> 'delivered'") != 0 && Clock::now() < deadline) std::this_thread::sleep_for(50ms);
    return count("state <> 'delivered'") == 0;
  };
  const auto metrics = [&] { return daemon.get("/metrics", false).body; };
  const std::string retry_series = "referrald_deliveries{target=\"" + target + "\",state=\"retry\"}";
  const std::string transient_series = "referrald_delivery_attempts_total{outcome=\"transient\"}";

  // Baseline: the peer as it is.
  for (auto until = Clock::now() + baseline_for; Clock::now() < until;) {
    ASSERT_NO_FATAL_FAILURE(submit(f.baseline_ms));
    std::this_thread::sleep_for(submit_every);
  }
  ASSERT_TRUE(wait_all_delivered(30s)) << daemon.log();
  const auto delivered_before = count("target = '" + target + "' AND state = 'delivered'");
  const double transient_before = metric(metrics(), transient_series);

  // The fault, with referrals arriving steadily and /metrics read as an operator would.
  switch (fault) {
    case Fault::down: peer.proxy().command("down"); break;
    case Fault::hang: peer.proxy().command("hang"); break;
    case Fault::drop: peer.proxy().command(peer.drop_command()); break;
    case Fault::refuse: peer.refuse(true); break;
  }
  const auto fault_for = fault_duration();
  auto next_scrape = Clock::now();
  std::string last_metrics;
  for (auto until = Clock::now() + fault_for; Clock::now() < until;) {
    ASSERT_NO_FATAL_FAILURE(submit(f.fault_ms));
    if (Clock::now() >= next_scrape) {
      const auto m = metrics();
      last_metrics = m;
      f.max_retry = std::max(f.max_retry, metric(m, retry_series));
      f.max_unsent_age = std::max(f.max_unsent_age, metric(m, "referrald_oldest_unsent_delivery_age_seconds"));
      f.max_due_age = std::max(f.max_due_age, metric(m, "referrald_oldest_due_delivery_age_seconds"));
      f.max_in_flight = std::max(f.max_in_flight, metric(m, "referrald_deliveries_in_flight"));
      f.transient = metric(m, transient_series) - transient_before;
      next_scrape = Clock::now() + 500ms;
    }
    std::this_thread::sleep_for(submit_every);
  }
  // While it lasted nothing was given up, and nothing went out to the peer
  // unless it had the work already and the retry found it there.
  const bool recognised = fault == Fault::drop && peer.after_drop() == Peer::AfterDrop::recognised;
  if (!recognised) {
    EXPECT_EQ(count("target = '" + target + "' AND state = 'delivered'"), delivered_before) << daemon.log();
  }
  EXPECT_EQ(count("state = 'dead'"), 0) << daemon.log();
  // The other target did not wait for the failing one (its last few may
  // still be on their way).
  const auto archived = Clock::now() + 5s;
  while (count("target = 'office-archive' AND state <> 'delivered'") != 0 && Clock::now() < archived) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(count("target = 'office-archive' AND state <> 'delivered'"), 0);

  // Recovery.
  switch (fault) {
    case Fault::refuse: peer.refuse(false); break;
    default: peer.proxy().command("pass"); break;
  }
  const auto cleared = Clock::now();
  // A delivery that failed just before may wait out max_backoff, and a hung
  // session its timeout; then the backlog goes out at the target's pace
  // (HylaFAX, the slowest, takes about 3 faxes a second here).
  const auto drain_limit =
      std::chrono::seconds(30) + max_backoff + target_timeout + std::chrono::seconds(f.submitted / 2);
  EXPECT_TRUE(wait_all_delivered(std::chrono::duration_cast<std::chrono::seconds>(drain_limit)))
      << count("state <> 'delivered'") << " deliveries not delivered\n"
      << daemon.log();
  f.drain_s = std::chrono::duration<double>(Clock::now() - cleared).count();

  // Nothing lost: every referral stored once, every one at the peer.
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals"), static_cast<long long>(ids.size()));
  EXPECT_EQ(count("state IN ('sending', 'retry', 'pending', 'dead')"), 0);
  auto at_peer = peer.copies();
  for (const auto& id : ids) {
    const int copies = at_peer[id + "." + target];
    EXPECT_GE(copies, 1) << "no notification at the peer for " << id;
    f.repeats += std::max(0, copies - 1);
  }
  const std::string of_target =
      "FROM attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.target = '" + target + "'";
  // A repeat only where an attempt ended without knowing whether the peer
  // had taken the work (Peer::unsure_attempts says which attempts those are).
  EXPECT_LE(f.repeats,
            count_rows(daemon.database(), "SELECT count(*) " + of_target + " AND (" + peer.unsure_attempts() + ")"))
      << query_text(daemon.database(),
                    "SELECT group_concat(m, ' | ') FROM (SELECT DISTINCT a.message AS m " + of_target + ")")
             .value_or("")
      << "\n"
      << peer.dead_work();
  if (recognised) {
    EXPECT_NE(daemon.log().find(peer.recognised_event()), std::string::npos);
  }

  // The backoff, as /metrics showed it and as the attempts record it.
  EXPECT_GT(f.max_retry, 0) << "no delivery of " << target << " was ever seen in retry";
  EXPECT_GE(f.transient, 2) << "transient attempts did not grow during the fault";
  if (!recognised) {
    EXPECT_GE(f.max_unsent_age, 0.5 * static_cast<double>(fault_for.count()))
        << "the oldest unsent delivery's age did not grow with the fault\n"
        << last_metrics;
  }
  if (fault == Fault::hang) {
    // Hung sessions hold every slot until the timeout: due deliveries queue up.
    EXPECT_GT(f.max_due_age, 0.5);
  }
  f.attempts = count_rows(daemon.database(), "SELECT count(*) " + of_target);
  // Longest wait from the end of one attempt to the start of the next.
  f.max_gap_s = static_cast<double>(count_rows(daemon.database(),
                                               "SELECT coalesce(max(b.started_ms - a.finished_ms), 0) FROM attempts a "
                                               "JOIN attempts b ON b.delivery_id = a.delivery_id AND b.attempt = "
                                               "a.attempt + 1 JOIN deliveries d ON d.id = a.delivery_id "
                                               "WHERE d.target = '" +
                                                   target + "'")) /
                1000.0;
  f.max_attempt_s = static_cast<double>(count_rows(
                        daemon.database(), "SELECT coalesce(max(a.finished_ms - a.started_ms), 0) " + of_target)) /
                    1000.0;
  // No attempt outlived the target's timeout (a hang ends there).
  EXPECT_LE(f.max_attempt_s, std::chrono::duration<double>(target_timeout).count() + 1.0);
  // Backed off (no hot loop), and never longer than max_backoff (+ claim latency).
  EXPECT_GE(f.max_gap_s, 0.4 * std::chrono::duration<double>(initial_backoff).count());
  if (f.max_due_age < 1) {
    // Every retry ran when it was due, so no wait exceeds max_backoff. With
    // a backlog the target cannot work through in time (a hung peer holds
    // every slot; minutes of faults pile up hundreds), deliveries also wait
    // for a slot after their backoff: the report shows those waits.
    EXPECT_LE(f.max_gap_s, std::chrono::duration<double>(max_backoff).count() + 2.0);
  }

  // Hangs ended by the timeout: nothing in flight any more.
  const auto after = metrics();
  EXPECT_EQ(metric(after, "referrald_deliveries_in_flight"), 0);
  EXPECT_EQ(metric(after, retry_series), 0);
  EXPECT_EQ(metric(after, "referrald_oldest_unsent_delivery_age_seconds"), 0);

  // Intake did not notice: same answers, same latency. The bound is loose
  // on purpose (2 shared cores in CI); the real figures are printed.
  const double p50_base = percentile(f.baseline_ms, 0.5), p99_base = percentile(f.baseline_ms, 0.99);
  const double p50_fault = percentile(f.fault_ms, 0.5), p99_fault = percentile(f.fault_ms, 0.99);
  // A submission that waited on the peer would take the target's timeout (3 s).
  EXPECT_LT(p99_fault, 4 * p99_base + 1500) << "intake slowed down during the fault";

  std::ostringstream line;
  line.setf(std::ios::fixed);
  line.precision(1);
  line << "FIGURES target=" << target << " fault=" << ::testing::UnitTest::GetInstance()->current_test_info()->name()
       << " fault_s=" << fault_for.count() << " referrals=" << f.submitted << " intake_ms_before p50=" << p50_base
       << " p99=" << p99_base << " during p50=" << p50_fault << " p99=" << p99_fault << " attempts=" << f.attempts
       << " transient_during=" << f.transient << " max_retry=" << f.max_retry << " max_gap_s=" << f.max_gap_s
       << " max_attempt_s=" << f.max_attempt_s << " max_unsent_age_s=" << f.max_unsent_age
       << " max_due_age_s=" << f.max_due_age << " max_in_flight=" << f.max_in_flight << " drain_s=" << f.drain_s
       << " repeats=" << f.repeats;
  std::cout << line.str() << std::endl;
  std::cout << peer.dead_work();  // jobs HylaFAX will never send, with its reason
  RecordProperty("figures", line.str());
  EXPECT_EQ(daemon.stop(), 0);
}

TEST_F(PeerFaults, SmtpDown) {
  SmtpPeer peer;
  run(peer, Fault::down);
}
TEST_F(PeerFaults, SmtpHang) {
  SmtpPeer peer;
  run(peer, Fault::hang);
}
TEST_F(PeerFaults, SmtpDropMidDialogue) {
  SmtpPeer peer;
  run(peer, Fault::drop);
}
TEST_F(PeerFaults, SmtpDropInTlsHandshake) {
  SmtpPeer peer("drop 3");
  run(peer, Fault::drop);
}
TEST_F(PeerFaults, SmtpTemporaryRefusal) {
  SmtpPeer peer;
  run(peer, Fault::refuse);
}

TEST_F(PeerFaults, FaxDown) {
  HylafaxPeer peer(false);
  run(peer, Fault::down);
}
TEST_F(PeerFaults, FaxHang) {
  HylafaxPeer peer(false);
  run(peer, Fault::hang);
}
TEST_F(PeerFaults, FaxDropAfterSubmit) {
  HylafaxPeer peer(false);
  run(peer, Fault::drop);
}
TEST_F(PeerFaults, FaxTemporaryRefusal) {
  HylafaxPeer peer(false);
  run(peer, Fault::refuse);
}

TEST_F(PeerFaults, PagerDown) {
  HylafaxPeer peer(true);
  run(peer, Fault::down);
}
TEST_F(PeerFaults, PagerHang) {
  HylafaxPeer peer(true);
  run(peer, Fault::hang);
}
TEST_F(PeerFaults, PagerDropAfterSend) {
  HylafaxPeer peer(true);
  run(peer, Fault::drop);
}
TEST_F(PeerFaults, PagerTemporaryRefusal) {
  HylafaxPeer peer(true);
  run(peer, Fault::refuse);
}

}  // namespace
}  // namespace referrald::test
