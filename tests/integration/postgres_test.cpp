// referrald and referralctl on PostgreSQL: the real daemon with
// [storage] backend = "postgresql" on a real PostgreSQL 15 server, delivering
// to the real SMTP peer; the server stopped under it and started again.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <set>
#include <thread>

#include "support/harness.hpp"
#include "support/peers.hpp"
#include "support/postgres.hpp"

namespace referrald::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

// A daemon whose store is a fresh database (on the run's server, unless
// the test brings its own), its password in a file beside the
// configuration, delivering by email.
struct PostgresDaemon {
  explicit PostgresDaemon(const MailServer& mail, PostgresServer& server = shared_postgres())
      : database(server.create_database()) {
    Daemon::Options o;
    o.storage = postgres_storage(server, database, secrets.path());
    o.with_default_targets = false;
    o.extra_config = "\n[delivery]\ninitial_backoff = \"200ms\"\nmax_backoff = \"1s\"\n" +
                     smtp_target(mail, secrets.path()) + "\n[[route]]\nnotify = [\"office-email\"]\n";
    daemon = std::make_unique<Daemon>(std::move(o));
  }
  TempDir secrets;
  std::string database;
  std::unique_ptr<Daemon> daemon;
};

std::string submit(Daemon& daemon) {
  const auto r = daemon.post_referral(sample("asps-routine.json"));
  if (r.status != 202) throw std::runtime_error("POST answered " + std::to_string(r.status) + ": " + r.body);
  return json::parse(r.body)["id"];
}

TEST(Postgres, ReferralsAreStoredDeliveredAndListedByReferralctl) {
  MailServer mail({});
  PostgresDaemon pg(mail);
  Daemon& daemon = *pg.daemon;
  daemon.start();

  std::set<std::string> ids;
  for (int i = 0; i < 12; ++i) ids.insert(submit(daemon));
  ASSERT_EQ(ids.size(), 12u);

  // Every referral mailed once, its Message-ID naming it.
  ASSERT_TRUE(wait_until([&] { return mail.messages().size() >= ids.size(); }, 60s)) << daemon.log();
  const auto by_id = mail.message_ids();
  EXPECT_EQ(by_id.size(), ids.size());
  for (const auto& [message_id, n] : by_id) EXPECT_EQ(n, 1) << message_id;
  for (const std::string& id : ids) {
    const auto r = daemon.get("/api/v1/referrals/" + id);
    ASSERT_EQ(r.status, 200) << r.body;
    ASSERT_TRUE(wait_until([&] {
      const auto again = json::parse(daemon.get("/api/v1/referrals/" + id).body);
      return again["deliveries"][0]["state"] == "delivered";
    }));
  }

  // referralctl reads the same database through the configuration.
  const auto list = ctl({"--config", daemon.config_file().string(), "list", "--json"});
  ASSERT_EQ(list.status, 0) << describe(list);
  std::set<std::string> listed;
  const json listing = list.parsed();
  for (const auto& r : listing["referrals"]) listed.insert(r["id"].get<std::string>());
  EXPECT_EQ(listed, ids) << describe(list);
  const std::string first = *ids.begin();
  const auto show = ctl({"--config", daemon.config_file().string(), "show", "--json", first});
  ASSERT_EQ(show.status, 0) << describe(show);
  EXPECT_EQ(show.parsed()["referral"]["id"], first);
  EXPECT_EQ(show.parsed()["referral"]["document"]["patient"]["given_name"],
            json::parse(sample("asps-routine.json"))["patient"]["given_name"]);
  EXPECT_EQ(daemon.stop(), 0) << daemon.log();
}

TEST(Postgres, CheckConfigConnectsAndNamesWhatIsWrong) {
  MailServer mail({});
  PostgresDaemon pg(mail);
  const auto check = [&] {
    const auto run = run_program(referrald_binary(), {"--check-config", "--config", pg.daemon->config_file().string()});
    return std::make_pair(run.status, run.out + run.err);
  };
  auto [ok, ok_text] = check();
  EXPECT_EQ(ok, 0) << ok_text;

  write_file(pg.secrets / "pg-password", "wrong\n");
  auto [auth, auth_text] = check();
  EXPECT_NE(auth, 0);
  EXPECT_NE(auth_text.find("storage.url: "), std::string::npos) << auth_text;
  EXPECT_NE(auth_text.find("password authentication failed"), std::string::npos) << auth_text;
  EXPECT_EQ(auth_text.find("wrong"), std::string::npos) << auth_text;  // the password is never printed
}

// The server stops under a running daemon: intake answers 503 (never a
// 202) while it is down, and takes referrals again once it is back, with
// no restart of referrald.
TEST(Postgres, AnUnreachableServerIsA503AndIntakeRecoversWithoutRestart) {
  MailServer mail({});
  PostgresServer own;  // the run's server is shared: this one is stopped
  PostgresDaemon pg(mail, own);
  Daemon& daemon = *pg.daemon;
  daemon.start();
  const std::string before = submit(daemon);
  // Its delivery goes out before the server stops. Otherwise the stop may
  // cut the claim's COMMIT: the server may have taken the claim while the
  // daemon cannot know, so the delivery waits for its lease (5 minutes),
  // longer than this test waits.
  ASSERT_TRUE(wait_until([&] { return mail.messages().size() >= 1; }, 60s)) << daemon.log();

  own.stop();
  const auto down = daemon.post_referral(sample("asps-routine.json"));
  const auto health = daemon.get("/healthz", false);
  own.start();
  EXPECT_EQ(down.status, 503) << down.body;
  EXPECT_EQ(health.status, 503) << health.body;
  EXPECT_NE(health.body.find("database server"), std::string::npos) << health.body;

  std::string after;
  ASSERT_TRUE(wait_until(
      [&] {
        const auto r = daemon.post_referral(sample("asps-routine.json"));
        if (r.status == 202) after = json::parse(r.body)["id"];
        return r.status == 202;
      },
      30s))
      << daemon.log();
  ASSERT_TRUE(wait_until([&] { return mail.messages().size() >= 2; }, 60s)) << daemon.log();
  const auto ids = mail.message_ids();
  EXPECT_EQ(ids.size(), 2u);
  EXPECT_TRUE(daemon.running());
  EXPECT_NE(before, after);
}

}  // namespace
}  // namespace referrald::test
