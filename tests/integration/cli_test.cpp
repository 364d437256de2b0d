// The real referralctl binary against stores filled by the real daemon, each
// case on SQLite and on PostgreSQL (the file-only ones on SQLite):
// every command's output and exit code, the --json shapes, retry making a
// dead delivery go out to a real peer (a spool directory), check agreeing
// with the daemon's decisions, and commands running while the daemon is
// under load.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fcntl.h>
#include <functional>
#include <set>
#include <thread>

#include "support/harness.hpp"
#include "support/postgres.hpp"
#include "util/strings.hpp"

namespace referrald::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::set<std::string> keys(const json& object) {
  std::set<std::string> out;
  for (const auto& [k, v] : object.items()) out.insert(k);
  return out;
}

class CliBase : public ::testing::Test {
 protected:
  explicit CliBase(Backend backend)
      : store(backend), daemon(store.with([] {
          // No rate limit: the load test posts as fast as it can.
          Daemon::Options o;
          o.extra_http = "rate_limit_per_minute = 0\n";
          return o;
        }())) {}
  void SetUp() override { daemon.start(); }

  // referralctl on the daemon's store: --db FILE (SQLite) or its
  // configuration (PostgreSQL), then `args`.
  std::vector<std::string> on(std::vector<std::string> args) const { return store.ctl_args(daemon, std::move(args)); }
  // SQL behind referrald's back (scalar() of the harness, on either backend).
  long long sql(const std::string& statement) const { return store.scalar(daemon, statement); }

  std::string db() const { return daemon.database().string(); }
  // show reads the encryption key from the configuration (with --db it has none).
  std::string config() const { return daemon.config_file().string(); }

  std::string post(const std::string& body) {
    const auto r = daemon.post_referral(body);
    EXPECT_EQ(r.status, 202) << r.body;
    return json::parse(r.body)["id"];
  }

  json show(const std::string& id) {
    const auto r = ctl({"--config", config(), "show", "--json", id});
    EXPECT_EQ(r.status, 0) << describe(r);
    return r.parsed();
  }

  std::string state_of(const std::string& id, const std::string& target) {
    const auto shown = show(id);
    for (const auto& d : shown["deliveries"]) {
      if (d["target"] == target) return d["state"];
    }
    return "(none)";
  }

  // Every delivery of the referral has reached a final state.
  void wait_final(const std::string& id) {
    ASSERT_TRUE(wait_until(
        [&] {
          const auto shown = show(id);
          for (const auto& d : shown["deliveries"]) {
            const std::string s = d["state"];
            if (s != "delivered" && s != "dead" && s != "cancelled") return false;
          }
          return true;
        },
        15s))
        << show(id).dump(2);
  }

  // The pager's spool directory becomes a regular file: the spool adapter
  // cannot write there and reports the target misconfigured (dead at once).
  void break_pager() {
    fs::remove_all(daemon.spool("office-pager"));
    write_file(daemon.spool("office-pager"), "not a directory");
  }
  void fix_pager() {
    fs::remove(daemon.spool("office-pager"));
    fs::create_directories(daemon.spool("office-pager"));
  }
  fs::path pager_file(const std::string& id) { return daemon.spool("office-pager") / (id + ".office-pager.json"); }

  std::string urgent(const std::string& name = "Mateo") {
    return referral_json(name, "2012-05-01", "Alveolar soft part sarcoma", "urgent");
  }

  DaemonStore store;
  Daemon daemon;
};

// Each case on SQLite and on PostgreSQL (.../SQLite, .../PostgreSQL).
class Cli : public CliBase, public ::testing::WithParamInterface<Backend> {
 protected:
  Cli() : CliBase(GetParam()) {}
};
INSTANTIATE_TEST_SUITE_P(Backends, Cli, both_backends, backend_param_name);

// What only a SQLite file shows: a missing or foreign file, its write lock
// held by another process, file permissions.
class CliSqlite : public CliBase {
 protected:
  CliSqlite() : CliBase(Backend::sqlite) {}
};

TEST_P(Cli, ListShowsReferralsNewestFirstWithFiltersAndPaging) {
  const std::string first = post(sample("asps-routine.json"));  // accepted, routine
  std::this_thread::sleep_for(5ms);
  auto outside = json::parse(sample("asps-routine.json"));
  outside["patient"]["postal_code"] = "77030";
  const std::string second = post(outside.dump());  // review
  std::this_thread::sleep_for(5ms);
  const std::string third = post(sample("asps-urgent.json"));  // review, urgent
  wait_final(third);

  const auto human = ctl(on({"list"}));
  ASSERT_EQ(human.status, 0) << describe(human);
  EXPECT_EQ(human.out.rfind("RECEIVED             ID                      DECISION  URGENCY  STATUS", 0), 0U)
      << human.out;
  // The second is the first's patient again (only the postal code differs).
  EXPECT_NE(human.out.find("received, dup of " + first), std::string::npos) << human.out;
  EXPECT_LT(human.out.find(third), human.out.find(second));
  EXPECT_LT(human.out.find(second), human.out.find(first));
  EXPECT_EQ(human.out.find("\x1b["), std::string::npos) << "no colour when stdout is not a terminal";
  EXPECT_NE(human.out.find("office-email delivered, office-pager delivered"), std::string::npos) << human.out;

  const auto all = ctl(on({"list", "--json"}));
  ASSERT_EQ(all.status, 0) << describe(all);
  const auto page = all.parsed();
  EXPECT_EQ(keys(page), (std::set<std::string>{"referrals", "next_before"}));
  EXPECT_TRUE(page["next_before"].is_null());
  ASSERT_EQ(page["referrals"].size(), 3U);
  const auto& row = page["referrals"][0];
  EXPECT_EQ(keys(row), (std::set<std::string>{"id", "received_at", "decision", "urgency", "disease", "channel",
                                              "status", "duplicate_of", "deliveries"}));
  EXPECT_EQ(row["status"], "received");
  EXPECT_EQ(row["id"], third);
  EXPECT_EQ(row["decision"], "review");
  EXPECT_EQ(row["urgency"], "urgent");
  EXPECT_EQ(row["disease"], "asps");
  EXPECT_EQ(row["channel"], "api");
  EXPECT_EQ(row["received_at"].get<std::string>().back(), 'Z');
  ASSERT_EQ(row["deliveries"].size(), 2U);
  EXPECT_EQ(keys(row["deliveries"][0]), (std::set<std::string>{"id", "target", "state"}));

  const auto ids = [](const CtlRun& r) {
    std::vector<std::string> out;
    const auto listed = r.parsed();
    for (const auto& x : listed["referrals"]) out.push_back(x["id"]);
    return out;
  };
  EXPECT_EQ(ids(ctl(on({"list", "--json", "--decision", "accepted"}))), std::vector<std::string>{first});
  EXPECT_EQ(ids(ctl(on({"list", "--json", "--urgency", "urgent"}))), std::vector<std::string>{third});
  EXPECT_EQ(ids(ctl(on({"list", "--json", "--decision", "review", "--state", "delivered"}))),
            (std::vector<std::string>{third, second}));
  EXPECT_TRUE(ids(ctl(on({"list", "--json", "--state", "dead"}))).empty());
  EXPECT_EQ(ids(ctl(on({"list", "--json", "--since", "1h"}))).size(), 3U);
  EXPECT_TRUE(ids(ctl(on({"list", "--json", "--since", "2200-01-01"}))).empty());
  EXPECT_EQ(ctl(on({"list", "--since", "2999-01-01"})).status, 2);  // past what the clock can count

  // Keyset paging: --limit 2, then --before the id it names.
  const auto p1 = ctl(on({"list", "--json", "--limit", "2"}));
  EXPECT_EQ(ids(p1), (std::vector<std::string>{third, second}));
  EXPECT_EQ(p1.parsed()["next_before"], second);
  const auto p2 = ctl(on({"list", "--json", "--limit", "2", "--before", second}));
  EXPECT_EQ(ids(p2), std::vector<std::string>{first});
  EXPECT_TRUE(p2.parsed()["next_before"].is_null());
  const auto human_page = ctl(on({"list", "--limit", "2"}));
  EXPECT_NE(human_page.out.find("more: referralctl list --before " + second), std::string::npos) << human_page.out;

  const auto nothing = ctl(on({"list", "--decision", "declined"}));
  EXPECT_EQ(nothing.status, 0);
  EXPECT_EQ(nothing.out, "no referrals match\n");
  EXPECT_EQ(ctl(on({"list", "--before", "R-20200101-AAAAA-AAAAA"})).status, 1);

  // The same through the configuration file instead of --db.
  const auto via_config = ctl({"--config", daemon.config_file().string(), "list", "--json"});
  ASSERT_EQ(via_config.status, 0) << describe(via_config);
  EXPECT_EQ(via_config.parsed()["referrals"].size(), 3U);
}

TEST_P(Cli, ShowPrintsTheReferralItsDeliveriesAttemptsAndAuditTrail) {
  const std::string id = post(sample("asps-urgent.json"));
  wait_final(id);

  const auto human = ctl({"--config", config(), "show", id});
  ASSERT_EQ(human.status, 0) << describe(human);
  for (const std::string& expected :
       {"Referral " + id, std::string("  decision   review"), std::string("NO_OPEN_TRIAL: "),
        std::string("  urgency    urgent"), std::string("Mateo Ortiz"), std::string("Deliveries"),
        std::string("office-email  delivered  1 attempt"), std::string("office-pager  delivered  1 attempt"),
        std::string("Audit trail"), std::string("referrald  received"), std::string("decision=review targets=2")}) {
    EXPECT_NE(human.out.find(expected), std::string::npos) << expected << "\n" << human.out;
  }
  // Lower case works too (ids are read over the phone).
  EXPECT_EQ(ctl({"--config", config(), "show", lower(id)}).status, 0);

  const auto j = show(id);
  EXPECT_EQ(keys(j),
            (std::set<std::string>{"referral", "attachments", "status_history", "escalations", "deliveries", "audit"}));
  EXPECT_EQ(j["attachments"], json::array());
  EXPECT_EQ(keys(j["referral"]),
            (std::set<std::string>{"id", "received_at", "decision", "reasons", "disease", "urgency", "channel",
                                   "client", "status", "acknowledged_at", "duplicate_of", "document"}));
  EXPECT_EQ(j["referral"]["status"], "received");
  EXPECT_TRUE(j["status_history"].empty());
  EXPECT_EQ(j["referral"]["reasons"][0]["code"], "NO_OPEN_TRIAL");
  EXPECT_EQ(j["referral"]["document"]["patient"]["given_name"], "Mateo");
  ASSERT_EQ(j["deliveries"].size(), 2U);
  const auto& d = j["deliveries"][0];
  EXPECT_EQ(keys(d), (std::set<std::string>{"id", "referral_id", "target", "identity", "state", "attempts",
                                            "created_at", "next_attempt_at", "lease_until", "last_error", "external_id",
                                            "updated_at", "attempt_log"}));
  EXPECT_EQ(d["identity"], id + "." + d["target"].get<std::string>());
  ASSERT_EQ(d["attempt_log"].size(), 1U);
  EXPECT_EQ(keys(d["attempt_log"][0]), (std::set<std::string>{"attempt", "started_at", "finished_at", "outcome", "code",
                                                              "message", "external_id"}));
  EXPECT_EQ(d["attempt_log"][0]["outcome"], "delivered");
  ASSERT_GE(j["audit"].size(), 3U);
  EXPECT_EQ(keys(j["audit"][0]), (std::set<std::string>{"at", "actor", "action", "delivery_id", "detail"}));
  EXPECT_EQ(j["audit"][0]["action"], "received");

  // Free text from a referral cannot drive the operator's terminal.
  auto hostile = json::parse(sample("asps-routine.json"));
  hostile["notes"] = "\x1b]0;owned\x07 line one\nline two \x1b[2J";
  const auto posted = daemon.post_referral(hostile.dump());
  if (posted.status == 202) {
    const auto shown = ctl({"--config", config(), "show", json::parse(posted.body)["id"].get<std::string>()});
    ASSERT_EQ(shown.status, 0) << describe(shown);
    EXPECT_EQ(shown.out.find('\x1b'), std::string::npos) << shown.out;
    EXPECT_EQ(shown.out.find('\x07'), std::string::npos) << shown.out;
    EXPECT_NE(shown.out.find("?]0;owned? line one line two ?[2J"), std::string::npos) << shown.out;
  }

  const auto missing = ctl(on({"show", "R-20200101-AAAAA-AAAAA"}));
  EXPECT_EQ(missing.status, 1);
  EXPECT_EQ(missing.err, "referralctl: no referral R-20200101-AAAAA-AAAAA\n");
}

TEST_P(Cli, RetrySendsADeadDeliveryToTheRealPeerWithinSeconds) {
  break_pager();
  const std::string id = post(urgent());
  wait_final(id);
  ASSERT_EQ(state_of(id, "office-pager"), "dead");
  ASSERT_EQ(state_of(id, "office-email"), "delivered");

  // Dead is final: not in the queue, but counted, and found by list --state dead.
  const auto queue = ctl(on({"queue"}));
  ASSERT_EQ(queue.status, 0) << describe(queue);
  EXPECT_EQ(queue.out, "the queue is empty; 1 dead delivery (referralctl list --state dead)\n");
  const auto dead = ctl(on({"list", "--json", "--state", "dead"})).parsed();
  ASSERT_EQ(dead["referrals"].size(), 1U);
  EXPECT_EQ(dead["referrals"][0]["id"], id);
  const auto shown = show(id);
  std::int64_t pager_id = 0;
  for (const auto& d : shown["deliveries"]) {
    if (d["target"] == "office-pager") {
      pager_id = d["id"];
      EXPECT_EQ(d["attempt_log"][0]["outcome"], "misconfigured");
      EXPECT_NE(d["last_error"].get<std::string>().find("Not a directory"), std::string::npos) << d;
    }
  }

  fix_pager();
  const auto retry = ctl(on({"retry", id}), {{"SUDO_USER", "alice"}});
  ASSERT_EQ(retry.status, 0) << describe(retry);
  // The referral's delivered email is skipped, the dead pager retried.
  EXPECT_NE(retry.out.find("office-pager  dead -> pending"), std::string::npos) << retry.out;
  EXPECT_NE(retry.out.find("office-email  delivered, skipped: final"), std::string::npos) << retry.out;
  EXPECT_NE(retry.out.find("1 delivery retried"), std::string::npos) << retry.out;

  // The running daemon sends it within seconds, without a restart.
  const auto start = std::chrono::steady_clock::now();
  // (The dispatcher polls every second; 10 s leaves room for a loaded CI machine.)
  ASSERT_TRUE(wait_until([&] { return fs::exists(pager_file(id)); }, 10s)) << daemon.log();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_EQ(json::parse(read_file(pager_file(id)))["attempt"], 2);
  ASSERT_TRUE(wait_until([&] { return state_of(id, "office-pager") == "delivered"; }, 5s));

  // The audit trail names the operator.
  std::string expected_actor = ::geteuid() == 0 ? "root (sudo by alice)" : "";
  bool found = false;
  const auto trail = show(id);
  for (const auto& a : trail["audit"]) {
    if (a["action"] != "retry") continue;
    found = true;
    EXPECT_EQ(a["delivery_id"], pager_id);
    EXPECT_EQ(a["detail"], "target=office-pager from=dead to=pending");
    if (!expected_actor.empty()) {
      EXPECT_EQ(a["actor"], expected_actor);
    }
  }
  EXPECT_TRUE(found);

  // Nothing left to retry.
  const auto again = ctl(on({"retry", "ALL", "--json"}));
  ASSERT_EQ(again.status, 0) << describe(again);
  EXPECT_EQ(again.parsed()["changed"].size(), 0U);
}

TEST_P(Cli, RetryAllWithATargetRetriesEveryDeadDeliveryOfIt) {
  break_pager();
  const std::string a = post(urgent("Ana"));
  const std::string b = post(urgent("Ben"));
  wait_final(a);
  wait_final(b);
  fix_pager();
  const auto r = ctl(on({"retry", "ALL", "--target", "office-pager", "--json"}));
  ASSERT_EQ(r.status, 0) << describe(r);
  const auto j = r.parsed();
  EXPECT_EQ(keys(j), (std::set<std::string>{"action", "actor", "changed", "skipped"}));
  EXPECT_EQ(j["action"], "retry");
  ASSERT_EQ(j["changed"].size(), 2U);
  EXPECT_EQ(keys(j["changed"][0]), (std::set<std::string>{"id", "referral_id", "target", "from", "to"}));
  EXPECT_EQ(j["changed"][0]["from"], "dead");
  EXPECT_EQ(j["changed"][0]["to"], "pending");
  EXPECT_TRUE(wait_until([&] { return fs::exists(pager_file(a)) && fs::exists(pager_file(b)); }, 10s));
}

TEST_P(Cli, HoldKeepsADeliveryFromTheRunningDaemonUntilReleased) {
  break_pager();
  const std::string id = post(urgent());
  wait_final(id);
  const std::string pager = id + ".office-pager";

  // Stopped daemon: the actions work on the file alone.
  ASSERT_EQ(daemon.stop(), 0);
  fix_pager();
  auto r = ctl(on({"retry", pager}));
  ASSERT_EQ(r.status, 0) << describe(r);
  r = ctl(on({"hold", pager}));
  ASSERT_EQ(r.status, 0) << describe(r);
  EXPECT_NE(r.out.find("pending -> held"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1 delivery held"), std::string::npos) << r.out;

  const auto queue = ctl(on({"queue", "--json"}));
  ASSERT_EQ(queue.status, 0) << describe(queue);
  const auto q = queue.parsed();
  EXPECT_EQ(keys(q), (std::set<std::string>{"deliveries", "dead"}));
  ASSERT_EQ(q["deliveries"].size(), 1U);
  EXPECT_EQ(keys(q["deliveries"][0]), (std::set<std::string>{"id", "referral_id", "target", "identity", "state",
                                                             "attempts", "created_at", "next_attempt_at", "lease_until",
                                                             "last_error", "external_id", "updated_at", "urgency"}));
  EXPECT_EQ(q["deliveries"][0]["state"], "held");
  EXPECT_EQ(q["deliveries"][0]["urgency"], "urgent");
  const auto human = ctl(on({"queue"}));
  EXPECT_NE(
      human.out.find("ID  REFERRAL                TARGET        STATE  ATTEMPTS  URGENCY  NEXT ATTEMPT  LAST ERROR"),
      std::string::npos)
      << human.out;
  EXPECT_NE(human.out.find("-- 1 delivery waiting (1 held)"), std::string::npos) << human.out;

  // Running again, the daemon leaves the held delivery alone...
  daemon.start();
  std::this_thread::sleep_for(2500ms);
  EXPECT_FALSE(fs::exists(pager_file(id)));
  EXPECT_EQ(state_of(id, "office-pager"), "held");
  // ...until it is released: then it goes out within seconds.
  r = ctl(on({"release", pager}));
  ASSERT_EQ(r.status, 0) << describe(r);
  EXPECT_NE(r.out.find("held -> pending"), std::string::npos) << r.out;
  EXPECT_TRUE(wait_until([&] { return fs::exists(pager_file(id)); }, 10s)) << daemon.log();

  // Refusals are reported, not errors.
  r = ctl(on({"hold", pager}));
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_NE(r.out.find("0 deliveries held, 1 skipped"), std::string::npos) << r.out;
}

TEST_P(Cli, CancelStopsADeliveryAndClearsItsLease) {
  break_pager();
  const std::string id = post(urgent());
  wait_final(id);
  ASSERT_EQ(daemon.stop(), 0);
  // A delivery caught mid-send by a crash: 'sending' under a lease.
  ASSERT_EQ(sql("UPDATE deliveries SET state = 'sending', lease_until_ms = 4102444800000 "
                "WHERE referral_id = '" +
                id + "' AND target = 'office-pager'"),
            1);
  const auto r = ctl(on({"cancel", id, "--json"}));
  ASSERT_EQ(r.status, 0) << describe(r);
  const auto j = r.parsed();
  ASSERT_EQ(j["changed"].size(), 1U);
  EXPECT_EQ(j["changed"][0]["from"], "sending");
  EXPECT_EQ(j["changed"][0]["to"], "cancelled");
  ASSERT_EQ(j["skipped"].size(), 1U);
  EXPECT_EQ(j["skipped"][0]["reason"], "final");
  EXPECT_EQ(sql("SELECT count(*) FROM deliveries WHERE referral_id = '" + id +
                "' AND state = 'cancelled' AND lease_until_ms IS NULL"),
            1);
  // Cancelled is final: retry ALL leaves it alone, and the daemon does not send it.
  fix_pager();
  EXPECT_EQ(ctl(on({"retry", "ALL", "--json"})).parsed()["changed"].size(), 0U);
  daemon.start();
  std::this_thread::sleep_for(2s);
  EXPECT_FALSE(fs::exists(pager_file(id)));
  EXPECT_EQ(state_of(id, "office-pager"), "cancelled");
}

TEST_P(Cli, StatsCountsDecisionsStatesAndPerTargetAttempts) {
  break_pager();
  const std::string a = post(sample("asps-routine.json"));
  const std::string b = post(urgent());
  wait_final(a);
  wait_final(b);

  const auto human = ctl(on({"stats"}));
  ASSERT_EQ(human.status, 0) << describe(human);
  EXPECT_NE(human.out.find("referrals   2      accepted 2  review 0  declined 0"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("TARGET        WAITING  HOUR SENT  HOUR FAILED  DAY SENT  DAY FAILED"), std::string::npos)
      << human.out;
  EXPECT_NE(human.out.find("office-pager  0        0          1            0         1"), std::string::npos)
      << human.out;

  const auto r = ctl(on({"stats", "--json"}));
  ASSERT_EQ(r.status, 0) << describe(r);
  const auto j = r.parsed();
  EXPECT_EQ(keys(j),
            (std::set<std::string>{"generated_at", "referrals", "deliveries", "oldest_due", "next_due_at", "targets"}));
  EXPECT_EQ(j["referrals"]["total"], 2);
  EXPECT_EQ(keys(j["referrals"]["by_decision"]), (std::set<std::string>{"accepted", "review", "declined"}));
  EXPECT_EQ(j["referrals"]["by_decision"]["accepted"], 2);
  EXPECT_EQ(j["deliveries"]["total"], 3);
  EXPECT_EQ(keys(j["deliveries"]["by_state"]),
            (std::set<std::string>{"pending", "sending", "retry", "held", "delivered", "dead", "cancelled"}));
  EXPECT_EQ(j["deliveries"]["by_state"]["delivered"], 2);
  EXPECT_EQ(j["deliveries"]["by_state"]["dead"], 1);
  EXPECT_TRUE(j["oldest_due"].is_null());
  ASSERT_EQ(j["targets"].size(), 2U);
  const auto& pager = j["targets"][1];
  EXPECT_EQ(keys(pager), (std::set<std::string>{"target", "waiting", "attempts_last_hour", "attempts_last_day"}));
  EXPECT_EQ(pager["target"], "office-pager");
  EXPECT_EQ(pager["attempts_last_day"]["misconfigured"], 1);
  EXPECT_EQ(j["targets"][0]["attempts_last_hour"]["delivered"], 2);

  // A held-then-released delivery with the daemon stopped is due: the oldest due.
  ASSERT_EQ(daemon.stop(), 0);
  ASSERT_EQ(ctl(on({"retry", b})).status, 0);
  const auto due = ctl(on({"stats", "--json"})).parsed();
  ASSERT_FALSE(due["oldest_due"].is_null());
  EXPECT_EQ(due["oldest_due"]["referral_id"], b);
  EXPECT_EQ(due["targets"][1]["waiting"], 1);
}

// The same bodies through the daemon and through check: the same decision
// and reasons, and check stores nothing.
TEST_P(Cli, CheckAgreesWithTheDaemonsDecisions) {
  auto outside = json::parse(sample("asps-routine.json"));
  outside["patient"]["postal_code"] = "77030";
  auto nurse = json::parse(sample("asps-routine.json"));
  nurse["referrer"]["credential"] = "other";
  const std::vector<std::string> bodies{
      sample("asps-routine.json"),
      sample("asps-urgent.json"),
      outside.dump(),
      nurse.dump(),
      referral_json("Olga", "1990-01-01"),                                // over the age limit
      referral_json("Iris", "2015-01-01", "Mystery illness of the ear"),  // not in the catalogue
      referral_json("Leo", "2016-02-02", "Acute lymphoblastic leukemia"),
  };
  TempDir dir;
  std::set<std::string> decisions;
  for (std::size_t i = 0; i < bodies.size(); ++i) {
    const auto file = dir / ("r" + std::to_string(i) + ".json");
    write_file(file, bodies[i]);
    const auto before = sql("SELECT count(*) FROM referrals");
    ASSERT_GE(before, 0) << "the count could not be read: the comparison below would hold for any check";
    const auto checked = ctl({"--config", daemon.config_file().string(), "check", "--json", file.string()});
    ASSERT_EQ(checked.status, 0) << describe(checked);
    EXPECT_EQ(sql("SELECT count(*) FROM referrals"), before) << "check stored something";
    const auto c = checked.parsed();
    EXPECT_EQ(keys(c),
              (std::set<std::string>{"valid", "decision", "reasons", "disease", "urgency", "targets", "after_hours"}));
    const auto posted = daemon.post_referral(bodies[i]);
    ASSERT_EQ(posted.status, 202) << posted.body;
    const auto d = json::parse(posted.body);
    EXPECT_EQ(c["decision"], d["decision"]) << bodies[i];
    EXPECT_EQ(c["reasons"], d["reasons"]) << bodies[i];
    decisions.insert(d["decision"]);
    // The targets it would notify are the deliveries the daemon planned.
    std::set<std::string> planned, predicted;
    const auto stored = show(d["id"]);
    for (const auto& x : stored["deliveries"]) planned.insert(x["target"]);
    for (const auto& x : c["targets"]) predicted.insert(x);
    EXPECT_EQ(predicted, planned) << bodies[i];
  }
  EXPECT_EQ(decisions, (std::set<std::string>{"accepted", "review", "declined"}));

  const auto human = ctl({"--config", daemon.config_file().string(), "check", (dir / "r1.json").string()});
  ASSERT_EQ(human.status, 0) << describe(human);
  EXPECT_NE(human.out.find("valid referral (nothing stored)"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("  decision      review"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("  would notify  office-email, office-pager"), std::string::npos) << human.out;

  // Invalid: exit 4 with each problem; malformed JSON likewise; no file: exit 1.
  const auto invalid_file = source_dir() / "tests" / "data" / "invalid-npi.json";
  const auto invalid = ctl({"--config", daemon.config_file().string(), "check", invalid_file.string()});
  EXPECT_EQ(invalid.status, 4) << describe(invalid);
  EXPECT_NE(invalid.out.find("/referrer/npi  is not a valid NPI"), std::string::npos) << invalid.out;
  const auto invalid_json = ctl({"--config", daemon.config_file().string(), "check", "--json", invalid_file.string()});
  EXPECT_EQ(invalid_json.status, 4);
  EXPECT_EQ(invalid_json.parsed()["valid"], false);
  EXPECT_EQ(invalid_json.parsed()["errors"][0]["path"], "/referrer/npi");
  write_file(dir / "bad.json", "{\"patient\": ");
  EXPECT_EQ(ctl({"--config", daemon.config_file().string(), "check", (dir / "bad.json").string()}).status, 4);
  EXPECT_EQ(ctl({"--config", daemon.config_file().string(), "check", (dir / "none.json").string()}).status, 1);
}

TEST_P(Cli, PurgeDeletesOldFinishedReferralsAndKeepsTheTrail) {
  break_pager();
  const std::string done = post(sample("asps-routine.json"));
  const std::string waiting = post(urgent());
  const std::string recent = post(sample("asps-routine.json"));
  wait_final(done);
  wait_final(waiting);
  wait_final(recent);
  ASSERT_EQ(daemon.stop(), 0);
  ASSERT_EQ(ctl(on({"retry", waiting})).status, 0);
  ASSERT_EQ(ctl(on({"hold", waiting})).status, 0);  // not final: must survive
  // Age two of them by 400 days (the store is the daemon's; the test writes it directly).
  ASSERT_EQ(sql("UPDATE referrals SET received_ms = received_ms - 34560000000 "
                "WHERE id IN ('" +
                done + "', '" + waiting + "')"),
            2);

  const auto dry = ctl(on({"purge", "--older-than", "365d", "--dry-run", "--json"}));
  ASSERT_EQ(dry.status, 0) << describe(dry);
  EXPECT_EQ(keys(dry.parsed()),
            (std::set<std::string>{"older_than", "cutoff", "dry_run", "purged", "kept_unfinished"}));
  EXPECT_EQ(dry.parsed()["purged"], 1);
  EXPECT_EQ(sql("SELECT count(*) FROM referrals"), 3);

  const auto r = ctl(on({"purge", "--older-than", "365d"}));
  ASSERT_EQ(r.status, 0) << describe(r);
  EXPECT_NE(r.out.find("purged 1 referral received before"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("kept 1 with deliveries not yet final"), std::string::npos) << r.out;
  EXPECT_EQ(sql("SELECT count(*) FROM referrals WHERE id = '" + done + "'"), 0);
  EXPECT_EQ(sql("SELECT count(*) FROM deliveries WHERE referral_id = '" + done + "'"), 0);
  EXPECT_EQ(sql("SELECT count(*) FROM referrals"), 2);
  EXPECT_EQ(sql("SELECT count(*) FROM audit WHERE referral_id = '" + done + "' AND action = 'purged'"), 1);
  // The stats tallies follow the purge's cascades.
  const auto stats = ctl(on({"stats", "--json"})).parsed();
  EXPECT_EQ(stats["referrals"]["total"], sql("SELECT count(*) FROM referrals"));
  EXPECT_EQ(stats["deliveries"]["total"], sql("SELECT count(*) FROM deliveries"));
  EXPECT_EQ(stats["deliveries"]["by_state"]["held"], 1);
  const auto gone = ctl(on({"show", done}));
  EXPECT_EQ(gone.status, 1);
  EXPECT_NE(gone.err.find("(purged "), std::string::npos) << gone.err;
  EXPECT_EQ(ctl(on({"purge"})).status, 2);  // --older-than is required
  EXPECT_EQ(ctl(on({"purge", "--older-than", "a year"})).status, 2);
}

TEST_P(Cli, PurgeGoesThroughManyBatchesAndSkipsTheUnfinishedInTheMiddle) {
  std::vector<std::string> ids;
  for (int i = 0; i < 130; ++i) ids.push_back(post(referral_json("P" + std::to_string(i), "2012-05-01")));
  wait_final(ids.back());
  ASSERT_EQ(daemon.stop(), 0);
  ASSERT_EQ(sql("UPDATE deliveries SET state = 'held' WHERE referral_id = '" + ids[77] + "'"), 1);
  ASSERT_EQ(sql("UPDATE referrals SET received_ms = received_ms - 34560000000"), 130);
  const auto r = ctl(on({"purge", "--older-than", "365d", "--json"}));
  ASSERT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.parsed()["purged"], 129);
  EXPECT_EQ(r.parsed()["kept_unfinished"], 1);
  EXPECT_EQ(sql("SELECT count(*) FROM referrals"), 1);
  EXPECT_EQ(sql("SELECT count(*) FROM referrals WHERE id = '" + ids[77] + "'"), 1);
  EXPECT_EQ(sql("SELECT count(*) FROM audit WHERE action = 'purged'"), 129);
}

TEST_P(Cli, UsageNotFoundAndHelpExitCodes) {
  const std::string id = post(sample("asps-routine.json"));
  const auto help = ctl({"--help"});
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("Exit status:"), std::string::npos);
  EXPECT_NE(ctl({"retry", "--help"}).out.find("ALL, in capitals"), std::string::npos);
  EXPECT_EQ(ctl({}).status, 2);
  EXPECT_EQ(ctl(on({"frobnicate"})).status, 2);
  EXPECT_EQ(ctl(on({"list", "--state", "lost"})).status, 2);
  EXPECT_EQ(ctl(on({"list", "--since", "yesterday"})).status, 2);
  EXPECT_EQ(ctl({"--db", db(), "--config", daemon.config_file().string(), "list"}).status, 2);
  const auto lower_all = ctl(on({"retry", "all"}));
  EXPECT_EQ(lower_all.status, 2);
  EXPECT_NE(lower_all.err.find("write ALL in capitals"), std::string::npos) << lower_all.err;
  EXPECT_EQ(ctl(on({"cancel", "ALL"})).status, 2);
  EXPECT_EQ(ctl(on({"retry", "ALL", id})).status, 2);
  EXPECT_EQ(ctl(on({"show"})).status, 2);
  // Not found: an unknown id changes nothing else named with it.
  const auto unknown = ctl(on({"cancel", id, "R-20200101-AAAAA-AAAAA"}));
  EXPECT_EQ(unknown.status, 1);
  EXPECT_EQ(unknown.err, "referralctl: no referral R-20200101-AAAAA-AAAAA\n");
  EXPECT_EQ(sql("SELECT count(*) FROM deliveries WHERE state = 'cancelled'"), 0);
  EXPECT_EQ(ctl(on({"retry", "999999"})).status, 1);
  EXPECT_EQ(ctl(on({"hold", "nonsense"})).status, 1);
}

TEST_F(CliSqlite, StoreProblemsAreExit3WithAClearMessage) {
  const std::string id = post(sample("asps-routine.json"));
  wait_final(id);

  const auto missing = ctl({"--db", (daemon.dir() / "nowhere.db").string(), "list"});
  EXPECT_EQ(missing.status, 3);
  EXPECT_EQ(missing.err, "referralctl: no database at " + (daemon.dir() / "nowhere.db").string() +
                             " (start referrald once to create it)\n");
  const auto no_config = ctl({"--config", (daemon.dir() / "nowhere.toml").string(), "list"});
  EXPECT_EQ(no_config.status, 3);
  EXPECT_EQ(no_config.err, "referralctl: no configuration at " + (daemon.dir() / "nowhere.toml").string() + "\n");
  const auto not_a_db = ctl({"--db", daemon.config_file().string(), "queue"});
  EXPECT_EQ(not_a_db.status, 3);
  EXPECT_NE(not_a_db.err.find("not a database"), std::string::npos) << not_a_db.err;

  // Locked: another process holds the write lock. Readers still read (WAL);
  // an action gives up after --wait with exit 3.
  sqlite3* holder = nullptr;
  ASSERT_EQ(sqlite3_open(db().c_str(), &holder), SQLITE_OK);
  sqlite3_busy_timeout(holder, 5000);  // the daemon's own claims take the lock briefly too
  ASSERT_EQ(sqlite3_exec(holder, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  const auto read = ctl({"--db", db(), "list", "--json"});
  EXPECT_EQ(read.status, 0) << describe(read);
  const auto start = std::chrono::steady_clock::now();
  const auto locked = ctl({"--db", db(), "--wait", "300ms", "cancel", id});
  EXPECT_EQ(locked.status, 3) << describe(locked);
  EXPECT_NE(locked.err.find("is locked: another process held it for more than 300ms"), std::string::npos) << locked.err;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  sqlite3_exec(holder, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(holder);

  // A database from a newer referrald.
  ASSERT_EQ(daemon.stop(), 0);
  ASSERT_EQ(scalar(daemon.database(), "INSERT INTO schema_version (version, applied_ms) VALUES (99, 0)"), 1);
  const auto newer = ctl({"--db", db(), "stats"});
  EXPECT_EQ(newer.status, 3);
  EXPECT_NE(newer.err.find("database schema version 99 is newer than this referralctl"), std::string::npos)
      << newer.err;
}

TEST_F(CliSqlite, ReadingNeedsOnlyReadAccessAndActionsSayWhenTheyCannotWrite) {
  const std::string id = post(sample("asps-routine.json"));
  wait_final(id);
  ASSERT_EQ(daemon.stop(), 0);
  // An immutable file cannot be opened for writing, even by root.
  if (shell("chattr +i " + db() + " 2>/dev/null") != 0) GTEST_SKIP() << "chattr +i is not supported here";
  const auto list = ctl({"--db", db(), "list", "--json"});
  const auto stats = ctl({"--db", db(), "stats"});
  const auto write = ctl({"--db", db(), "cancel", id});
  shell("chattr -i " + db());
  EXPECT_EQ(list.status, 0) << describe(list);
  EXPECT_EQ(list.parsed()["referrals"].size(), 1U);
  EXPECT_EQ(stats.status, 0) << describe(stats);
  EXPECT_EQ(write.status, 3) << describe(write);
  EXPECT_NE(write.err.find("cannot change " + db() + ": no write access"), std::string::npos) << write.err;
}

// An operator who may read the database but not write its directory.
TEST_F(CliSqlite, AReaderWithoutWriteAccessReadsWhileTheDaemonRunsAndIsToldWhyNotWhenStopped) {
  if (::geteuid() != 0 || shell("command -v setpriv > /dev/null") != 0) GTEST_SKIP() << "needs root and setpriv";
  const std::string id = post(sample("asps-routine.json"));
  wait_final(id);
  TempDir shared;
  fs::permissions(shared.path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                     fs::perms::others_read | fs::perms::others_exec);
  const auto as_nobody = [&](const std::string& args) {
    return shell("cd / && setpriv --reuid=65534 --regid=65534 --clear-groups " + referralctl_binary().string() +
                 " --db " + (shared / "referrald.db").string() + " " + args + " > " + (shared / "out").string() +
                 " 2>&1");
  };
  if (shell("setpriv --reuid=65534 --regid=65534 --clear-groups test -x " + referralctl_binary().string()) != 0) {
    GTEST_SKIP() << "the build directory is not reachable for an unprivileged user";
  }
  // While the daemon runs, its -wal and -shm exist: read access is enough.
  const auto readable = [&](const std::string& suffix) {
    fs::copy_file(daemon.database().string() + suffix, (shared / "referrald.db").string() + suffix);
    fs::permissions((shared / "referrald.db").string() + suffix,
                    fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read);
  };
  sqlite3* keeper = nullptr;  // holds the copy open in WAL mode, as the daemon would
  ASSERT_EQ(daemon.stop(), 0);
  readable("");
  ASSERT_EQ(sqlite3_open((shared / "referrald.db").c_str(), &keeper), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(keeper, "SELECT count(*) FROM referrals", nullptr, nullptr, nullptr), SQLITE_OK);
  for (const char* suffix : {"-wal", "-shm"}) {
    fs::permissions((shared / "referrald.db").string() + suffix,
                    fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read);
  }
  EXPECT_EQ(as_nobody("list --json"), 0) << read_file(shared / "out");
  EXPECT_NE(read_file(shared / "out").find(id), std::string::npos);
  EXPECT_EQ(as_nobody("cancel " + id), 3);
  EXPECT_NE(read_file(shared / "out").find("no write access"), std::string::npos) << read_file(shared / "out");
  sqlite3_close(keeper);  // the last connection removes -wal and -shm: "stopped"
  ASSERT_FALSE(fs::exists((shared / "referrald.db").string() + "-shm"));
  EXPECT_EQ(as_nobody("queue"), 3);
  EXPECT_NE(read_file(shared / "out").find("while referrald is stopped: SQLite must create"), std::string::npos)
      << read_file(shared / "out");
}

TEST_P(Cli, ColourOnlyWhenAskedOrOnATerminalAndTimesInLocalTime) {
  const std::string id = post(sample("asps-routine.json"));
  wait_final(id);
  const auto always = ctl(on({"--color", "always", "list"}));
  EXPECT_NE(always.out.find("\x1b[32mdelivered\x1b[0m"), std::string::npos) << always.out;
  EXPECT_EQ(ctl(on({"--color", "always", "list", "--json"})).out.find("\x1b["), std::string::npos);
  EXPECT_EQ(ctl(on({"list"}), {{"NO_COLOR", "1"}}).out.find("\x1b["), std::string::npos);

  // Human output follows TZ; JSON is UTC.
  const std::string received = ctl(on({"list", "--json"})).parsed()["referrals"][0]["received_at"];
  const auto utc = ctl(on({"list"}), {{"TZ", "UTC"}}).out;
  const auto tokyo = ctl(on({"list"}), {{"TZ", "Asia/Tokyo"}}).out;
  // received_at is 2026-11-28T07:00:25.123Z: the UTC table shows "2026-11-28 07:00:25".
  const std::string utc_text = received.substr(0, 10) + " " + received.substr(11, 8);
  EXPECT_NE(utc.find(utc_text), std::string::npos) << utc;
  EXPECT_EQ(tokyo.find(utc_text), std::string::npos) << tokyo;
}

// list, queue and stats answer while four clients keep posting; actions
// take the write lock briefly and never make the daemon refuse a referral.
TEST_P(Cli, CommandsRunWhileTheDaemonIsUnderLoad) {
  std::atomic<bool> stop{false};
  std::atomic<int> accepted{0}, refused{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      int n = 0;
      while (!stop) {
        ++n;
        const auto body = referral_json("Load" + std::to_string(t) + "x" + std::to_string(n), "2012-05-01",
                                        "Alveolar soft part sarcoma", n % 3 == 0 ? "urgent" : "routine");
        const auto r = daemon.post_referral(body);
        (r.status == 202 ? accepted : refused)++;
      }
    });
  }
  std::this_thread::sleep_for(300ms);
  // A fixed number of rounds, not a time: how many fit in a few seconds says
  // how fast the machine is (two under ASan on a busy CI runner), not whether
  // the commands work. That submissions went on meanwhile is checked below.
  const int accepted_before = accepted.load();
  for (int round = 0; round < 3; ++round) {
    for (const char* command : {"list", "queue", "stats"}) {
      const auto r = ctl(on({command, "--json"}));
      EXPECT_EQ(r.status, 0) << command << "\n" << describe(r);
      EXPECT_NO_THROW(r.parsed()) << r.out;
    }
    const auto human = ctl(on({"queue"}));
    EXPECT_EQ(human.status, 0) << describe(human);
    const auto retry = ctl(on({"retry", "ALL"}));
    EXPECT_EQ(retry.status, 0) << describe(retry);
  }
  const int accepted_during = accepted.load() - accepted_before;
  stop = true;
  for (auto& c : clients) c.join();
  EXPECT_GT(accepted_during, 0) << "no referral was accepted while referralctl ran";
  EXPECT_EQ(refused.load(), 0) << "the daemon refused referrals while referralctl ran";
  const auto page = ctl(on({"list", "--json", "--limit", "100000"})).parsed();
  EXPECT_EQ(static_cast<int>(page["referrals"].size()), accepted.load());
}

}  // namespace
}  // namespace referrald::test
