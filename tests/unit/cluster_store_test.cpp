// Several referrald instances on one PostgreSQL database, at the store's
// level: claims from many connections at once, and the notification a
// commit sends to idle dispatchers (docs/storage.md, "Several instances").
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "store/due_listener.hpp"
#include "store/queries.hpp"
#include "store/store.hpp"
#include "support/harness.hpp"
#include "support/postgres.hpp"
#include "support/store_backends.hpp"

using namespace referrald;
using namespace referrald::store;
using namespace std::chrono_literals;

namespace {

using referrald::test::TestStore;
using referrald::test::wait_until;

const TimePoint t0 = from_millis(1'795'000'000'000);  // late 2026

NewReferral referral(int n, std::vector<std::string> targets) {
  NewReferral r;
  r.id = "R-" + std::to_string(n);
  r.received_at = t0;
  r.channel = "api";
  r.client = "sha256:client-a";
  r.request_hash = "hash-" + r.id;
  r.document = R"({"patient":{"given_name":"Ava"}})";
  r.response = R"({"id":")" + r.id + R"("})";
  r.targets = std::move(targets);
  return r;
}

void insert_referrals(Database& db, int first, int count) {
  WriteTransaction write(db);
  for (int n = first; n < first + count; ++n) insert_referral(db, referral(n, {"office-email", "office-fax"}));
  write.commit();
}

// Four connections (four instances) claim in small batches at once: every
// due delivery is claimed exactly once. Each claims in a plain transaction,
// without the cluster's write lock that the writer takes (which would run
// the claims one after another and prove nothing): the claim statement
// itself (FOR UPDATE SKIP LOCKED, a materialised pick) must not hand a row
// out twice.
TEST(PostgresClaims, ConcurrentClaimsTakeEveryDueDeliveryOnce) {
  TestStore store(Dialect::postgresql);
  const auto setup = store.open();
  migrate(*setup);
  constexpr int referrals = 150;
  insert_referrals(*setup, 0, referrals);

  std::mutex mutex;
  std::multiset<std::int64_t> claimed;
  std::atomic<int> ready{0};
  std::vector<std::string> errors;
  std::vector<std::thread> instances;
  for (int i = 0; i < 4; ++i) {
    instances.emplace_back([&] {
      try {
        const auto db = store.open(OpenMode::read_write);
        ++ready;
        while (ready.load() < 4) std::this_thread::yield();
        for (;;) {
          db->exec("BEGIN");
          const auto rows = claim_due(*db, t0 + 1s, 30s, 7);
          db->commit();
          if (rows.empty()) break;
          std::lock_guard lock(mutex);
          for (const auto& row : rows) claimed.insert(row.id);
        }
      } catch (const std::exception& e) {
        std::lock_guard lock(mutex);
        errors.emplace_back(e.what());
      }
    });
  }
  for (auto& t : instances) t.join();

  EXPECT_TRUE(errors.empty()) << errors.front();
  const std::set<std::int64_t> distinct(claimed.begin(), claimed.end());
  EXPECT_EQ(claimed.size(), distinct.size()) << "a delivery was claimed twice";
  EXPECT_EQ(distinct.size(), static_cast<std::size_t>(2 * referrals));
  Statement st = setup->prepare("SELECT count(*) FROM deliveries WHERE state = 'sending' AND attempts = 1");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.column_int(0), 2 * referrals);
}

// A claim that another instance's claim took over after its lease ran out
// cannot decide the delivery (Finished::superseded), on whichever
// connection it finishes.
TEST(PostgresClaims, ALateFinisherOnAnotherConnectionDoesNotOverwriteTheNewerClaim) {
  TestStore store(Dialect::postgresql);
  const auto a = store.open();
  migrate(*a);
  const auto b = store.open();
  {
    WriteTransaction write(*a);
    insert_referral(*a, referral(1, {"fax"}));
    write.commit();
  }
  const auto first = claim_due(*a, t0, 30s, 10);
  ASSERT_EQ(first.size(), 1u);
  const auto second = claim_due(*b, t0 + 31s, 30s, 10);  // instance a stopped past its lease
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].attempts, 2);

  AttemptRecord done;
  done.delivery_id = second[0].id;
  done.attempt = second[0].attempts;
  done.started_at = t0 + 31s;
  done.finished_at = t0 + 32s;
  done.outcome = AttemptOutcome::delivered;
  done.message = "250 queued";
  done.next_state = DeliveryState::delivered;
  EXPECT_EQ(finish_attempt(*b, done), Finished::applied);

  AttemptRecord late = done;
  late.attempt = first[0].attempts;
  late.outcome = AttemptOutcome::transient;
  late.message = "timed out";
  late.next_state = DeliveryState::retry;
  late.next_attempt_at = t0 + 90s;
  EXPECT_EQ(finish_attempt(*a, late), Finished::superseded);
  const auto rows = deliveries_of(*a, "R-1");
  EXPECT_EQ(rows[0].state, DeliveryState::delivered);
  EXPECT_EQ(rows[0].attempts, 2);
}

// What a commit makes due (a referral's deliveries, referralctl's retry)
// wakes a DueListener on another connection; one that makes nothing due
// does not have to. When the server ends the listener's connection, it
// connects again by itself and wakes once it is back (it may have missed
// something meanwhile).
TEST(PostgresDueListener, CommitsThatMakeWorkDueWakeItAndItReconnectsAfterItsConnectionIsKilled) {
  TestStore store(Dialect::postgresql);
  const auto db = store.open();
  migrate(*db);

  boost::asio::io_context ioc;
  auto work = boost::asio::make_work_guard(ioc);
  boost::asio::thread_pool blocking(1);
  std::atomic<int> wakes{0};
  // No own token: this test's commits stand for another instance's.
  DueListener listener(ioc.get_executor(), blocking.get_executor(), store.target().postgres, "", [&] { ++wakes; });
  listener.start();
  std::thread loop([&] { ioc.run(); });

  ASSERT_TRUE(wait_until([&] { return wakes.load() >= 1; }, 20s)) << "no wake after connecting";
  // Connected: the server shows its LISTEN.
  const auto listening = [&] {
    return std::stoll(store.admin_sql("SELECT count(*) FROM pg_stat_activity "
                                      "WHERE query = 'LISTEN referrald_due' AND datname = current_database()")) > 0;
  };
  ASSERT_TRUE(wait_until(listening, 20s));

  int before = wakes.load();
  insert_referrals(*db, 0, 1);
  EXPECT_TRUE(wait_until([&] { return wakes.load() > before; }, 20s)) << "the new referral's commit woke nothing";

  // referralctl's retry of a dead delivery, in its own transaction.
  db->exec("UPDATE deliveries SET state = 'dead' WHERE referral_id = 'R-0'");
  before = wakes.load();
  {
    WriteTransaction write(*db);
    const auto changes = apply_action(*db, Action::retry, deliveries_of(*db, "R-0"), "tester", t0);
    ASSERT_EQ(changes.size(), 2u);
    EXPECT_TRUE(changes[0].applied);
    write.commit();
  }
  EXPECT_TRUE(wait_until([&] { return wakes.load() > before; }, 20s)) << "referralctl's retry woke nothing";

  // The server ends the connection (as a restart or a failover would).
  before = wakes.load();
  // This test's database only: the run's server is shared with other tests.
  store.admin_sql(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
      "WHERE query = 'LISTEN referrald_due' AND datname = current_database()");
  EXPECT_TRUE(wait_until([&] { return wakes.load() > before && listening(); }, 20s)) << "not listening again";
  before = wakes.load();
  insert_referrals(*db, 1, 1);
  EXPECT_TRUE(wait_until([&] { return wakes.load() > before; }, 20s)) << "a commit after reconnecting woke nothing";

  boost::asio::co_spawn(ioc, listener.stop(), [&](std::exception_ptr) { work.reset(); });
  loop.join();
  blocking.join();
}

// A listener and the io_context it runs on, for the tests below.
struct RunningListener {
  boost::asio::io_context ioc;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work = boost::asio::make_work_guard(ioc);
  boost::asio::thread_pool blocking{1};
  std::atomic<int> wakes{0};
  DueListener listener;
  std::thread loop;

  RunningListener(const PostgresTarget& target, std::string own_token)
      : listener(ioc.get_executor(), blocking.get_executor(), target, std::move(own_token), [this] { ++wakes; }) {
    listener.start();
    loop = std::thread([this] { ioc.run(); });
  }
  ~RunningListener() {
    boost::asio::co_spawn(ioc, listener.stop(), [this](std::exception_ptr) { work.reset(); });
    loop.join();
    blocking.join();
  }
};

bool listening_on(const std::function<std::string(const std::string&)>& admin_sql) {
  return std::stoll(admin_sql("SELECT count(*) FROM pg_stat_activity "
                              "WHERE query = 'LISTEN referrald_due' AND datname = current_database()")) > 0;
}

// A daemon's own commits woke its dispatcher already: the notification they
// send comes back through its own LISTEN and is ignored (it carries the
// process's due_token()); another instance's wakes it.
TEST(PostgresDueListener, ItsOwnProcesssNotificationsAreIgnoredAndAnotherInstancesWakeIt) {
  TestStore store(Dialect::postgresql);
  const auto db = store.open();
  migrate(*db);
  const auto admin = [&](const std::string& sql) { return store.admin_sql(sql); };

  RunningListener l(store.target().postgres, due_token());
  ASSERT_TRUE(wait_until([&] { return l.wakes.load() >= 1 && listening_on(admin); }, 20s)) << "not listening";
  const int before = l.wakes.load();
  insert_referrals(*db, 0, 1);  // notifies with this process's token
  // Notifications arrive in commit order: once another instance's has woken
  // the listener, ours has been read before it.
  store.admin_sql("SELECT pg_notify('referrald_due', 'another-instance')");
  ASSERT_TRUE(wait_until([&] { return l.wakes.load() > before; }, 20s)) << "another instance's commit woke nothing";
  EXPECT_EQ(l.wakes.load(), before + 1) << "woken by its own commit too";
}

// The server goes away under the listener (stopped as a crash would stop
// it) and comes back on the same port: the listener connects again by
// itself, listens, and is woken by commits again.
TEST(PostgresDueListener, AServerThatStopsAndComesBackIsListenedToAgain) {
  test::PostgresServer server;
  const std::string database = server.create_database();
  const PostgresTarget target{server.url(database), server.password(), std::chrono::seconds(5)};
  const auto admin = [&](const std::string& sql) { return server.psql(database, sql); };
  {
    Database setup(target, OpenMode::read_write);
    migrate(setup);
  }

  RunningListener l(target, "");
  ASSERT_TRUE(wait_until([&] { return l.wakes.load() >= 1 && listening_on(admin); }, 20s)) << "not listening";
  server.stop();
  const int before = l.wakes.load();
  server.start();
  // Connected again: it wakes once for what it may have missed.
  ASSERT_TRUE(wait_until([&] { return l.wakes.load() > before && listening_on(admin); }, 30s))
      << "not listening again after the server came back";
  const int after = l.wakes.load();
  Database db(target, OpenMode::read_write);
  insert_referrals(db, 0, 1);
  EXPECT_TRUE(wait_until([&] { return l.wakes.load() > after; }, 20s)) << "a commit after the restart woke nothing";
}

}  // namespace
