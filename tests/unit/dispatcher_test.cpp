// The dispatcher's start and stop against a real store: a stop waits for a
// claim the writer still holds (its rows are 'sending' once it commits), and
// a start sends at once what a previous run left leased; a send that
// outlasts the target's timeout is given up, and the process survives it;
// an outcome that arrives after its lease ran out is superseded.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <atomic>
#include <future>
#include <thread>

#include "dispatch/dispatcher.hpp"
#include "dispatch/offload.hpp"
#include "store/store.hpp"
#include "store/writer.hpp"

namespace referrald {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Delivers after a short wait, as a real channel would take a moment.
class SlowAdapter final : public Adapter {
 public:
  asio::awaitable<Outcome> send(const Delivery& delivery) override {
    asio::steady_timer t(co_await asio::this_coro::executor, 50ms);
    co_await t.async_wait(asio::use_awaitable);
    attempts.push_back(delivery.attempt);
    co_return Outcome::delivered("ok");
  }
  std::vector<int> attempts;  // touched only on the dispatcher's strand
};

// A channel whose work blocks a pool thread for longer than the target's
// timeout, as a libcurl transfer to a server that accepted and went silent.
class BlockingAdapter final : public Adapter {
 public:
  asio::awaitable<Outcome> send(const Delivery&) override {
    auto work = []() -> asio::awaitable<Outcome> {
      std::this_thread::sleep_for(300ms);
      co_return Outcome::delivered("too late");
    };
    co_return co_await offload(pool.get_executor(), std::move(work));
  }
  // Two threads: Boost delivers the cancellation on the pool's executor, so
  // with one (busy) thread it would arrive only after the work.
  asio::thread_pool pool{2};
};

// Returns once another thread or coroutine has set `flag`, looking every 10 ms.
asio::awaitable<void> until_set(const std::atomic<bool>& flag) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  while (!flag) {
    t.expires_after(10ms);
    co_await t.async_wait(asio::use_awaitable);
  }
}

// The first attempt outlives its lease: it answers (a transient failure)
// only once the next claim's send has delivered.
class LeaseOutlivingAdapter final : public Adapter {
 public:
  asio::awaitable<Outcome> send(const Delivery& delivery) override {
    if (delivery.attempt > 1) {
      next_delivered = true;
      co_return Outcome::delivered("ok");
    }
    co_await until_set(next_delivered);
    co_return Outcome::transient("too late");
  }
  std::atomic<bool> next_delivered{false};
};

class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "referrald-dispatch-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    writer_ = std::make_unique<store::Writer>(dir_ / "referrald.db", store::WriterOptions{});
  }
  void TearDown() override {
    if (io_thread_.joinable()) {
      ioc_.stop();
      io_thread_.join();
    }
    dispatcher_.reset();
    writer_.reset();
    fs::remove_all(dir_);
  }

  store::Writer::Job insert_referral(const std::string& id) {
    return [id, now = clock_.now()](store::Database& db) {
      store::NewReferral r;
      r.id = id;
      r.received_at = now;
      r.channel = "api";
      r.client = "test";
      r.document = "{}";
      r.response = "{}";
      r.targets = {"office-email"};
      store::insert_referral(db, r);
    };
  }

  void write(store::Writer::Job job) {
    std::promise<store::JobResult> done;
    writer_->submit(std::move(job), [&](store::JobResult r) { done.set_value(std::move(r)); });
    ASSERT_EQ(done.get_future().get().status, store::JobStatus::committed);
  }

  std::string state_of(const std::string& id) {
    std::string state;
    write(
        [&](store::Database& db) { state = std::string(store::to_string(store::deliveries_of(db, id).at(0).state)); });
    return state;
  }

  void start_dispatcher(std::chrono::milliseconds poll_interval = 20ms, std::shared_ptr<Adapter> adapter = nullptr,
                        Duration timeout = 10s, Duration lease = std::chrono::minutes(5)) {
    DispatcherOptions options;
    options.poll_interval = poll_interval;
    options.lease = lease;
    dispatcher_ = std::make_shared<Dispatcher>(ioc_.get_executor(), *writer_, clock_, options);
    dispatcher_->set_targets({{"office-email", adapter ? adapter : adapter_, 4, timeout}}, options);
    dispatcher_->start();
    io_thread_ = std::thread([this] {
      auto guard = asio::make_work_guard(ioc_);
      ioc_.run();
    });
  }

  fs::path dir_;
  SystemClock clock_;
  asio::io_context ioc_;
  std::unique_ptr<store::Writer> writer_;
  std::shared_ptr<SlowAdapter> adapter_ = std::make_shared<SlowAdapter>();
  std::shared_ptr<Dispatcher> dispatcher_;
  std::thread io_thread_;
};

TEST_F(DispatcherTest, StopWaitsForAClaimTheWriterStillHolds) {
  // No polling of its own: a claim the dispatcher had already handed the
  // writer could share a group commit with the job that holds the writer
  // below, and then the dispatcher would (rightly) never poll again.
  start_dispatcher(std::chrono::hours(1));
  std::this_thread::sleep_for(100ms);  // its first claim is done: nothing is due

  // Hold the writer, queue a referral behind it, and wake the dispatcher so
  // its claim queues behind that.
  std::promise<void> entered, release;
  auto released = release.get_future().share();
  writer_->submit(
      [&entered, released](store::Database&) {
        entered.set_value();
        released.wait();
      },
      [](store::JobResult) {});
  entered.get_future().wait();
  writer_->submit(insert_referral("R-1"), [](store::JobResult) {});
  asio::post(ioc_, [this] { dispatcher_->wake(); });
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (writer_->queue_depth() < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  ASSERT_EQ(writer_->queue_depth(), 2U) << "the dispatcher did not poll";

  // SIGTERM arrives now: stop must not return while that claim is pending.
  std::atomic<bool> stopped{false};
  asio::co_spawn(
      ioc_,
      [&]() -> asio::awaitable<void> {
        co_await dispatcher_->stop(std::chrono::seconds(5));
        stopped = true;
      },
      asio::detached);
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(stopped) << "stop returned while a claim was in the writer's hands";

  release.set_value();
  for (int i = 0; i < 500 && !stopped; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(stopped);
  // The claimed delivery was sent before stop returned: nothing is left 'sending'.
  EXPECT_EQ(state_of("R-1"), "delivered");
}

// A claim the store refuses (here its write lock is held elsewhere past the
// writer's busy timeout) is tried again within a second, not at the next
// poll (an hour here): the wake-up it answered may be the only one for the
// work that is due.
TEST_F(DispatcherTest, AClaimTheStoreRefusedIsTriedAgainSoonNotAtTheNextPoll) {
  start_dispatcher(std::chrono::hours(1));
  std::this_thread::sleep_for(100ms);  // its first claim is done: nothing is due
  {
    store::Database other(dir_ / "referrald.db", store::OpenMode::read_write);
    other.exec("BEGIN IMMEDIATE");
    insert_referral("R-4")(other);  // due now, and nobody is told
    asio::post(ioc_, [this] { dispatcher_->wake(); });
    std::this_thread::sleep_for(3s);  // the claim waits the writer's 2 s for the lock, and fails
    other.exec("COMMIT");
  }
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (state_of("R-4") != "delivered" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(state_of("R-4"), "delivered");
}

// Holds every send until it is let go.
class GatedAdapter final : public Adapter {
 public:
  asio::awaitable<Outcome> send(const Delivery&) override {
    co_await until_set(open);
    co_return Outcome::delivered("ok");
  }
  std::atomic<bool> open{false};
};

// Due work the dispatcher cannot take now (every slot of its target busy,
// or a target no longer configured) waits for a slot, not in a loop of
// empty claims: each claim is a writer commit (a drain of 2,000 deliveries
// made 66,130 of them, bench/README.md).
TEST_F(DispatcherTest, DueWorkThatCannotBeTakenNowDoesNotKeepTheWriterCommitting) {
  for (int i = 0; i < 6; ++i) write(insert_referral("R-gated-" + std::to_string(i)));
  write([now = clock_.now()](store::Database& db) {
    store::NewReferral r;
    r.id = "R-retired";
    r.received_at = now;
    r.channel = "api";
    r.client = "test";
    r.document = "{}";
    r.response = "{}";
    r.targets = {"retired-fax"};  // removed from the configuration since
    store::insert_referral(db, r);
  });
  auto gated = std::make_shared<GatedAdapter>();
  start_dispatcher(std::chrono::hours(1), gated);
  // Four sends start (the target's concurrency); two deliveries stay due.
  const auto started = std::chrono::steady_clock::now() + 10s;
  auto count_in = [&](const std::string& state) {
    int n = 0;
    for (int i = 0; i < 6; ++i) n += state_of("R-gated-" + std::to_string(i)) == state;
    return n;
  };
  while (count_in("sending") < 4 && std::chrono::steady_clock::now() < started) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(count_in("sending"), 4);
  const auto before = writer_->commits();
  std::this_thread::sleep_for(500ms);
  // The state_of reads above and below are commits too; the loop made
  // thousands in that half second.
  EXPECT_LE(writer_->commits() - before, 3U);
  gated->open = true;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (count_in("delivered") < 6 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(20ms);
  EXPECT_EQ(count_in("delivered"), 6);
  EXPECT_EQ(state_of("R-retired"), "pending");
}

TEST_F(DispatcherTest, StartSendsWhatAPreviousRunLeftLeased) {
  write(insert_referral("R-2"));
  // As a crash mid-send leaves it: claimed (attempt 1 counted), leased for an hour.
  write([in_an_hour = store::to_millis(clock_.now() + 1h)](store::Database& db) {
    auto st = db.prepare("UPDATE deliveries SET state = 'sending', attempts = 1, lease_until_ms = ?1");
    st.bind(1, in_an_hour).run();
  });
  start_dispatcher();
  std::string state;
  for (int i = 0; i < 300 && state != "delivered"; ++i) {
    std::this_thread::sleep_for(10ms);
    state = state_of("R-2");
  }
  EXPECT_EQ(state, "delivered");
  ioc_.stop();  // adapter_->attempts is read once the loop's thread is gone
  io_thread_.join();
  EXPECT_EQ(adapter_->attempts, std::vector<int>{2});
}

// The timeout cancels the send while its blocking work still runs. Before
// offload() shielded that work, Boost's co_spawn threw "Operation canceled"
// on the pool thread when the work ended, and the process terminated.
TEST_F(DispatcherTest, ASendPastTheTimeoutIsRetriedAndTheProcessSurvivesIt) {
  write(insert_referral("R-3"));
  auto adapter = std::make_shared<BlockingAdapter>();
  start_dispatcher(20ms, adapter, 50ms);
  std::string state;
  for (int i = 0; i < 300 && state != "retry"; ++i) {
    std::this_thread::sleep_for(10ms);
    state = state_of("R-3");
  }
  EXPECT_EQ(state, "retry");
  std::this_thread::sleep_for(500ms);  // the blocking work ends meanwhile
  std::string error;
  write([&](store::Database& db) { error = store::deliveries_of(db, "R-3").at(0).last_error.value_or(""); });
  EXPECT_NE(error.find("timed out"), std::string::npos) << error;
  EXPECT_EQ(dispatcher_->stats().in_flight, 0U);
  EXPECT_EQ(dispatcher_->stats().transient, 1U);
}

// A send outlives its lease (200 ms): the delivery is claimed again and
// delivered by the next attempt, and the first attempt's late outcome (a
// transient failure) is dropped as superseded: the delivery stays
// delivered, the drop is counted.
TEST_F(DispatcherTest, ALateOutcomeAfterTheLeaseRanOutIsSupersededByTheNextClaim) {
  write(insert_referral("R-5"));
  auto adapter = std::make_shared<LeaseOutlivingAdapter>();
  start_dispatcher(20ms, adapter, 10s, 200ms);
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (dispatcher_->stats().superseded == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(dispatcher_->stats().superseded, 1U);
  EXPECT_EQ(dispatcher_->stats().delivered, 1U);
  store::DeliveryRow row;
  write([&](store::Database& db) { row = store::deliveries_of(db, "R-5").at(0); });
  EXPECT_EQ(row.state, store::DeliveryState::delivered);
  EXPECT_EQ(row.attempts, 2);
}

TEST(ReferrerRecipient, TheReferralsEmailOrFax) {
  const std::string both = R"({"referrer": {"email": "dw@example.org", "fax": "+1 870 555 0101"}})";
  const std::string email_only = R"({"referrer": {"email": "dw@example.org", "fax": ""}})";
  const std::string fax_only = R"({"referrer": {"fax": "+1 870 555 0101"}})";
  EXPECT_EQ(referrer_recipient(both, ReferrerContact::email), "dw@example.org");
  EXPECT_EQ(referrer_recipient(both, ReferrerContact::fax), "+1 870 555 0101");
  EXPECT_EQ(referrer_recipient(email_only, ReferrerContact::fax), std::nullopt);
  EXPECT_EQ(referrer_recipient(fax_only, ReferrerContact::email), std::nullopt);
  EXPECT_EQ(referrer_recipient(fax_only, ReferrerContact::email_or_fax), "+1 870 555 0101");
  EXPECT_EQ(referrer_recipient(both, ReferrerContact::email_or_fax), "dw@example.org");
  EXPECT_EQ(referrer_recipient("not json", ReferrerContact::email), std::nullopt);
  EXPECT_EQ(referrer_recipient(both, ReferrerContact::none), std::nullopt);
}

}  // namespace
}  // namespace referrald
