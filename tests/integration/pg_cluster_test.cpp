// Several referrald on one PostgreSQL database (docs/storage.md, "Several
// instances"): the real daemons, each on its own port, the real SMTP peer,
// a real PostgreSQL 15. Every delivery reaches the peer exactly once; an
// instance killed while it sends leaves its work to the others after its
// lease, and the only repeats are the sends it had in flight; the server
// stopped under load is a 503, never a 202, and nothing answered 202 is lost.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "support/harness.hpp"
#include "support/peers.hpp"
#include "support/postgres.hpp"

namespace referrald::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

// Daemons sharing one fresh database, with one encryption key (each reads
// what the others stored), delivering by email to one peer. The database is
// on the run's server unless the test passes a server of its own (one it
// stops: the run's server is every test's).
class Cluster {
 public:
  Cluster(const MailServer& mail, int instances, const std::string& delivery = "",
          PostgresServer& server = shared_postgres())
      : server_(server),
        database_(server.create_database()),
        storage_(postgres_storage(server_, database_, secrets_.path())) {
    write_key_file(secrets_ / "encryption-keys", new_key_line("cluster-1"));
    for (int i = 0; i < instances; ++i) add(mail, delivery);
  }

  // One more instance (not started).
  Daemon& add(const MailServer& mail, const std::string& delivery = "", const std::string& more = "") {
    Daemon::Options o;
    o.encryption = false;  // the shared key below instead of one per daemon
    o.storage = storage_ + "encryption_keys = \"" + (secrets_ / "encryption-keys").string() + "\"\n";
    o.with_default_targets = false;
    o.extra_config = "\n[delivery]\ninitial_backoff = \"200ms\"\nmax_backoff = \"1s\"\n" + delivery +
                     smtp_target(mail, secrets_.path()) +
                     "concurrency = 4\n\n[[route]]\nnotify = [\"office-email\"]\n" + more;
    daemons_.push_back(std::make_unique<Daemon>(std::move(o)));
    return *daemons_.back();
  }

  Daemon& operator[](std::size_t i) { return *daemons_.at(i); }
  std::size_t size() const { return daemons_.size(); }
  void start_all() {
    for (auto& d : daemons_) d->start();
  }
  std::string logs() const {
    std::string out;
    for (std::size_t i = 0; i < daemons_.size(); ++i) {
      out += "---- instance " + std::to_string(i) + "\n" + daemons_[i]->log();
    }
    return out;
  }

  // One number from the database, as its superuser reads it.
  long long count(const std::string& sql) const { return std::stoll(server_.psql(database_, sql)); }
  // Rows of "a|b|..." lines.
  std::vector<std::string> rows(const std::string& sql) const {
    std::vector<std::string> out;
    std::istringstream in(server_.psql(database_, sql));
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) out.push_back(line);
    }
    return out;
  }

 private:
  PostgresServer& server_;
  TempDir secrets_;
  std::string database_;
  std::string storage_;  // [storage] on database_, its password file in secrets_
  std::vector<std::unique_ptr<Daemon>> daemons_;
};

// The intake delivery's Message-ID for a referral.
std::string message_id(const std::string& referral_id) { return referral_id + ".office-email@referrald"; }

// POSTs the sample referral; the id when it answered 202.
std::optional<std::string> try_submit(Daemon& daemon, long* status = nullptr) {
  const auto r = daemon.post_referral(sample("asps-routine.json"));
  if (status != nullptr) *status = r.status;
  if (r.status != 202) return std::nullopt;
  return json::parse(r.body)["id"].get<std::string>();
}

// `per_instance` referrals to every instance at once, one client thread each.
std::set<std::string> submit_to_all(Cluster& cluster, int per_instance) {
  std::mutex mutex;
  std::set<std::string> ids;
  std::vector<std::string> failures;
  std::vector<std::thread> clients;
  for (std::size_t i = 0; i < cluster.size(); ++i) {
    clients.emplace_back([&, i] {
      for (int n = 0; n < per_instance; ++n) {
        long status = 0;
        const auto id = try_submit(cluster[i], &status);
        std::lock_guard lock(mutex);
        if (id) {
          ids.insert(*id);
        } else {
          failures.push_back("instance " + std::to_string(i) + " answered " + std::to_string(status));
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  if (!failures.empty()) ADD_FAILURE() << failures.front() << "\n" << cluster.logs();
  return ids;
}

// Every delivery recorded delivered: nothing is left to send or to record.
bool all_delivered(const Cluster& cluster) {
  return cluster.count("SELECT count(*) FROM deliveries WHERE state <> 'delivered'") == 0;
}

// For each delivery of `ids`: one recorded attempt (the last), and a mail
// for it plus one for each claim whose outcome was never recorded (an
// instance killed while sending, the database gone when it finished): a
// repeat only where at-least-once allows one. `exact`: every claim ended
// in a send the peer took (no claim was lost before its send), so mails
// and claims are equal; otherwise mails may be fewer. Nothing else was
// stored either (no answer other than 202 stored a referral).
void expect_one_mail_per_claim(const Cluster& cluster, const MailServer& mail, const std::set<std::string>& ids,
                               bool exact, std::set<std::string>* repeated = nullptr) {
  const auto mails = mail.message_ids();
  std::map<std::string, std::pair<long long, long long>> claims;  // referral -> (attempts, recorded attempts)
  for (const std::string& row :
       cluster.rows("SELECT d.referral_id, d.attempts, (SELECT count(*) FROM attempts AS a WHERE a.delivery_id = "
                    "d.id) FROM deliveries AS d")) {
    const auto bar1 = row.find('|');
    const auto bar2 = row.find('|', bar1 + 1);
    claims[row.substr(0, bar1)] = {std::stoll(row.substr(bar1 + 1, bar2 - bar1 - 1)), std::stoll(row.substr(bar2 + 1))};
  }
  if (exact) {
    EXPECT_EQ(claims.size(), ids.size());
  }
  for (const std::string& id : ids) {
    const auto mailed = mails.find(message_id(id));
    ASSERT_NE(mailed, mails.end()) << id << " never reached the peer";
    ASSERT_EQ(claims.count(id), 1u) << id;
    const auto [attempts, recorded] = claims[id];
    EXPECT_EQ(recorded, 1) << id << ": recorded attempts";
    if (exact) {
      EXPECT_EQ(mailed->second, attempts) << id << ": mails and claims differ";
    } else {
      EXPECT_LE(mailed->second, attempts) << id << ": more mails than claims";
    }
    if (mailed->second > 1 && repeated != nullptr) repeated->insert(id);
  }
  if (exact) {
    EXPECT_EQ(mails.size(), ids.size()) << "a mail for a referral that was never answered 202";
  }
}

void cluster_delivers_each_referral_once(int instances) {
  MailServer mail({});
  Cluster cluster(mail, instances);
  cluster.start_all();
  const auto ids = submit_to_all(cluster, 12);
  ASSERT_EQ(ids.size(), static_cast<std::size_t>(12 * instances));

  ASSERT_TRUE(wait_until([&] { return all_delivered(cluster); }, 60s)) << cluster.logs();
  const auto mails = mail.message_ids();
  for (const std::string& id : ids) {
    const auto it = mails.find(message_id(id));
    EXPECT_TRUE(it != mails.end() && it->second == 1)
        << id << " mailed " << (it == mails.end() ? 0 : it->second) << " times";
  }
  EXPECT_EQ(mails.size(), ids.size());
  // Every claim ended in the one recorded attempt: no delivery was claimed twice.
  EXPECT_EQ(cluster.count("SELECT count(*) FROM deliveries WHERE attempts <> 1"), 0);
  EXPECT_EQ(cluster.count("SELECT count(*) FROM attempts"), static_cast<long long>(ids.size()));
  for (std::size_t i = 0; i < cluster.size(); ++i) EXPECT_EQ(cluster[i].stop(), 0) << cluster[i].log();
}

TEST(PostgresCluster, TwoInstancesDeliverEveryReferralExactlyOnce) { cluster_delivers_each_referral_once(2); }

TEST(PostgresCluster, ThreeInstancesDeliverEveryReferralExactlyOnce) { cluster_delivers_each_referral_once(3); }

// An instance killed (-9) while it sends: its claimed deliveries stay
// leased until the lease runs out, then the others claim and send them.
// Each delivery arrives at least once, and exactly the ones it had in
// flight (their mail already taken by the peer, their outcome never
// recorded) arrive twice.
TEST(PostgresCluster, AnInstanceKilledWhileSendingLeavesItsWorkToTheOthersAfterItsLease) {
  MailServer mail({});
  const std::string lease = "lease = \"12s\"\n";  // longer than the target's 10 s timeout
  Cluster cluster(mail, 3, lease);
  Daemon& doomed = cluster[0];
  doomed.start();

  // The peer takes each mail and then keeps the sender waiting: the
  // instance holds its four sends (the target's concurrency) in flight.
  mail.confirm_slowly(true);
  std::set<std::string> ids;
  for (int n = 0; n < 16; ++n) {
    const auto id = try_submit(doomed);
    ASSERT_TRUE(id) << doomed.log();
    ids.insert(*id);
  }
  ASSERT_TRUE(wait_until([&] { return mail.messages().size() >= 4; }, 30s)) << doomed.log();
  doomed.kill9();
  mail.confirm_slowly(false);

  // What it had in flight: the mails the peer holds, none recorded, each
  // delivery still leased to it.
  std::set<std::string> in_flight;
  for (const auto& [message, n] : mail.message_ids()) in_flight.insert(message.substr(0, message.find('.')));
  EXPECT_EQ(in_flight.size(), 4u);
  EXPECT_EQ(cluster.count("SELECT count(*) FROM attempts"), 0);
  EXPECT_EQ(cluster.count("SELECT count(*) FROM deliveries WHERE state = 'sending'"), 4);

  cluster[1].start();
  cluster[2].start();
  ASSERT_TRUE(wait_until([&] { return all_delivered(cluster); }, 60s)) << cluster.logs();
  std::set<std::string> repeated;
  expect_one_mail_per_claim(cluster, mail, ids, true, &repeated);
  EXPECT_EQ(repeated, in_flight);
  EXPECT_EQ(cluster[1].stop(), 0) << cluster[1].log();
  EXPECT_EQ(cluster[2].stop(), 0) << cluster[2].log();
}

// The server stopped while two instances take referrals: every answer
// while it is down is a 503, never a 202; once it is back, both take
// referrals again without a restart, and everything answered 202 is
// delivered, repeated only where an outcome could not be recorded.
TEST(PostgresCluster, AStoppedServerIsA503OnEveryInstanceAndNothingAnswered202IsLost) {
  MailServer mail({});
  PostgresServer own;  // stopped below
  Cluster cluster(mail, 2, "lease = \"12s\"\n", own);
  cluster.start_all();

  // Load on both while the server goes away.
  std::atomic<bool> loading{true};
  std::mutex mutex;
  std::set<std::string> ids;
  std::vector<std::thread> clients;
  for (std::size_t i = 0; i < cluster.size(); ++i) {
    clients.emplace_back([&, i] {
      while (loading) {
        if (const auto id = try_submit(cluster[i])) {
          std::lock_guard lock(mutex);
          ids.insert(*id);
        }
      }
    });
  }
  ASSERT_TRUE(wait_until(
      [&] {
        std::lock_guard lock(mutex);
        return ids.size() >= 20;
      },
      30s));
  own.stop();
  loading = false;
  for (auto& t : clients) t.join();

  // Down: every instance says so, every time.
  for (int n = 0; n < 3; ++n) {
    for (std::size_t i = 0; i < cluster.size(); ++i) {
      long status = 0;
      EXPECT_FALSE(try_submit(cluster[i], &status));
      EXPECT_EQ(status, 503) << "instance " << i;
    }
  }
  own.start();

  for (std::size_t i = 0; i < cluster.size(); ++i) {
    ASSERT_TRUE(wait_until(
        [&] {
          const auto id = try_submit(cluster[i]);
          if (id) ids.insert(*id);
          return id.has_value();
        },
        30s))
        << cluster[i].log();
  }
  // A commit the server took as it stopped may have been answered 503 (the
  // client cannot know it committed): such a referral is delivered too, and
  // a claim that committed so is sent by the next claim after its lease.
  ASSERT_TRUE(wait_until([&] { return all_delivered(cluster); }, 60s)) << cluster.logs();
  expect_one_mail_per_claim(cluster, mail, ids, false);
  for (std::size_t i = 0; i < cluster.size(); ++i) {
    EXPECT_TRUE(cluster[i].running());
    EXPECT_EQ(cluster[i].stop(), 0) << cluster[i].log();
  }
}

// A delivery that referralctl makes due (retry) reaches an idle dispatcher
// through the database's notification: the dispatcher polls only once an
// hour here, so without it nothing would be sent within the test. Also
// after the server was restarted under the daemon (its listening
// connection connects again).
TEST(PostgresCluster, ReferralctlsRetryWakesAnIdleDispatcherWithoutItsPoll) {
  MailServer mail({});
  PostgresServer own;  // restarted below
  Cluster cluster(mail, 1, "max_attempts = 1\npoll_interval = \"1h\"\n", own);
  Daemon& daemon = cluster[0];
  daemon.start();

  mail.refuse_temporarily(true);  // 451: with one attempt allowed, the deliveries are dead
  const auto first = try_submit(daemon);
  const auto second = try_submit(daemon);
  ASSERT_TRUE(first && second) << daemon.log();
  ASSERT_TRUE(
      wait_until([&] { return cluster.count("SELECT count(*) FROM deliveries WHERE state = 'dead'") == 2; }, 30s))
      << daemon.log();
  mail.refuse_temporarily(false);
  const auto retry = [&](const std::string& id) {
    const auto run = ctl({"--config", daemon.config_file().string(), "retry", id});
    EXPECT_EQ(run.status, 0) << describe(run);
  };

  retry(*first);
  EXPECT_TRUE(wait_until([&] { return mail.message_ids().count(message_id(*first)) == 1; }, 30s)) << daemon.log();

  own.stop();
  own.start();
  retry(*second);
  EXPECT_TRUE(wait_until([&] { return mail.message_ids().count(message_id(*second)) == 1; }, 30s)) << daemon.log();
  EXPECT_EQ(daemon.stop(), 0) << daemon.log();
}

// Two instances watch the same escalation step come due: it pages once.
TEST(PostgresCluster, AnEscalationStepDueOnTwoInstancesFiresOnce) {
  MailServer mail({});
  const std::string ladder =
      "\n[[escalation]]\nurgency = [\"routine\", \"urgent\", \"emergent\"]\n"
      "steps = [ { after = \"4s\", notify = [\"office-email\"] } ]\n";
  Cluster cluster(mail, 0);
  cluster.add(mail, "", ladder);
  cluster.add(mail, "", ladder);
  cluster[0].start();
  const auto id = try_submit(cluster[0]);
  ASSERT_TRUE(id) << cluster[0].log();
  // Started after the referral, the second instance finds the step at its
  // start and waits for it as the first does.
  cluster[1].start();

  const std::string paged = *id + ".office-email.escalation-1@referrald";
  ASSERT_TRUE(wait_until([&] { return mail.message_ids().count(paged) == 1 && all_delivered(cluster); }, 40s))
      << cluster.logs();
  // Both have looked at the step once it was due (each looks again within a minute at most).
  EXPECT_EQ(cluster[0].stop(), 0) << cluster[0].log();
  EXPECT_EQ(cluster[1].stop(), 0) << cluster[1].log();
  EXPECT_EQ(mail.message_ids().at(paged), 1);
  EXPECT_EQ(cluster.count("SELECT count(*) FROM audit WHERE action = 'escalated'"), 1);
  EXPECT_EQ(cluster.count("SELECT count(*) FROM deliveries WHERE purpose = 'escalation-1'"), 1);
}

}  // namespace
}  // namespace referrald::test
