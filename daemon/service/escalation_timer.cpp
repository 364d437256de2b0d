#include "service/escalation_timer.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <algorithm>
#include <optional>
#include <vector>

#include "store/async.hpp"
#include "store/office.hpp"
#include "util/logging.hpp"

namespace referrald {

namespace asio = boost::asio;
using std::chrono::system_clock;

namespace {

// Steps fired per write: a backlog (a long outage) fires in several
// commits rather than one huge one.
constexpr int steps_per_batch = 256;
// The longest sleep, and the pause after a failed write: a clock set
// forward, or a store that failed for a moment, is looked at again soon.
constexpr auto longest_sleep = std::chrono::minutes(1);
constexpr auto wait_after_failure = std::chrono::seconds(5);

}  // namespace

struct EscalationTimer::Impl : std::enable_shared_from_this<EscalationTimer::Impl> {
  Impl(asio::any_io_executor ex, store::Writer& w, const Clock& c, std::function<void()> f)
      : strand(asio::make_strand(ex)), writer(w), clock(c), fired(std::move(f)), timer(strand) {}

  asio::strand<asio::any_io_executor> strand;
  store::Writer& writer;
  const Clock& clock;
  std::function<void()> fired;
  asio::steady_timer timer;
  bool running = false;
  bool stopping = false;
  bool wake_pending = false;
  bool looking = false;
  std::optional<asio::steady_timer> idle;  // signalled when a look ends while stopping

  struct Look {
    std::vector<store::EscalationRow> fired;
    std::optional<system_clock::time_point> next;
  };

  asio::awaitable<std::optional<Look>> look() {
    auto result = std::make_shared<Look>();
    store::Writer::Job job = [result, now = clock.now()](store::Database& db) {
      result->fired = store::fire_due_escalations(db, now, steps_per_batch);
      result->next = store::next_escalation_due(db);
    };
    const auto outcome = co_await store::async_write(writer, std::move(job));
    if (outcome.status != store::JobStatus::committed) {
      spdlog::warn("escalation.check_failed error=\"{}\" (tried again in {}s)", outcome.error,
                   std::chrono::duration_cast<std::chrono::seconds>(wait_after_failure).count());
      co_return std::nullopt;
    }
    co_return std::move(*result);
  }

  asio::awaitable<void> run() {
    auto self = shared_from_this();
    while (!stopping) {
      wake_pending = false;
      looking = true;
      std::optional<Look> seen;
      try {
        seen = co_await look();
      } catch (const std::exception& e) {
        spdlog::error("escalation.check_error error=\"{}\"", e.what());
      }
      looking = false;
      if (stopping) {
        if (idle) idle->cancel();
        break;
      }
      std::chrono::steady_clock::duration delay = wait_after_failure;
      if (seen) {
        for (const auto& step : seen->fired) {
          spdlog::warn("escalation.fired id={} step={} after={}s targets={}", step.referral_id, step.step,
                       step.after.count(), step.targets.size());
        }
        if (!seen->fired.empty()) {
          if (fired) fired();
          if (seen->fired.size() == static_cast<std::size_t>(steps_per_batch)) continue;  // more are due
        }
        delay = longest_sleep;
        if (seen->next) {
          const auto until = *seen->next - clock.now();
          delay = std::clamp<std::chrono::steady_clock::duration>(
              std::chrono::duration_cast<std::chrono::steady_clock::duration>(until),
              std::chrono::steady_clock::duration::zero(), longest_sleep);
        }
      }
      if (wake_pending) continue;
      timer.expires_after(delay);
      co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }

  asio::awaitable<void> stop() {
    auto self = shared_from_this();
    stopping = true;
    timer.cancel();
    if (!looking) co_return;
    // A look in the writer's hands finishes first (the writer drains its queue).
    idle.emplace(strand);
    idle->expires_after(std::chrono::seconds(10));
    co_await idle->async_wait(asio::as_tuple(asio::use_awaitable));
  }
};

EscalationTimer::EscalationTimer(asio::any_io_executor executor, store::Writer& writer, const Clock& clock,
                                 std::function<void()> fired)
    : impl_(std::make_shared<Impl>(std::move(executor), writer, clock, std::move(fired))) {}

EscalationTimer::~EscalationTimer() = default;

void EscalationTimer::start() {
  asio::post(impl_->strand, [impl = impl_] {
    if (impl->running) return;
    impl->running = true;
    asio::co_spawn(impl->strand, impl->run(), log_if_ended_by_error("escalation.loop_died"));
  });
}

void EscalationTimer::wake() {
  asio::post(impl_->strand, [impl = impl_] {
    impl->wake_pending = true;
    impl->timer.cancel();
  });
}

asio::awaitable<void> EscalationTimer::stop() {
  co_await asio::co_spawn(impl_->strand, impl_->stop(), asio::use_awaitable);
}

}  // namespace referrald
