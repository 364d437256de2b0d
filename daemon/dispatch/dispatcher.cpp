#include "dispatch/dispatcher.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <mutex>
#include <optional>
#include <random>

#include <nlohmann/json.hpp>

#include "office/ack_link.hpp"
#include "store/attachments.hpp"
#include "store/async.hpp"
#include "store/office.hpp"
#include "store/payload.hpp"
#include "store/store.hpp"
#include "util/dates.hpp"
#include "util/ids.hpp"
#include "util/logging.hpp"

namespace referrald {

namespace asio = boost::asio;
using namespace boost::asio::experimental::awaitable_operators;
using std::chrono::system_clock;

namespace {

// How soon a claim the store refused is tried again (at most: the poll may be sooner).
constexpr std::chrono::seconds claim_retry{1};

// How many due deliveries to claim for one target, and what its deliveries need.
struct ClaimWant {
  std::string target;
  int limit;
  ReferrerContact referrer = ReferrerContact::none;
  bool ack_links = false;
  bool attachments = false;
};

const char* contact_words(ReferrerContact c) {
  switch (c) {
    case ReferrerContact::email: return "email address";
    case ReferrerContact::fax: return "fax number";
    case ReferrerContact::email_or_fax: return "email address or fax number";
    case ReferrerContact::none: break;
  }
  return "address";
}

// Fills in what the delivery's purpose needs from the store (the step, the
// status change, the possible duplicate), the referrer's address and an
// acknowledgement link. Returns why the delivery is skipped, if it is.
std::optional<std::string> prepare(store::Database& db, Delivery& d, const store::DeliveryRow& row,
                                   const ClaimWant& want, const DispatcherOptions& options,
                                   system_clock::time_point now) {
  d.purpose = parse_delivery_purpose(row.purpose).value_or(DeliveryPurpose{});
  const auto status = store::status_of(db, row.referral_id);
  if (status) d.duplicate_of = status->duplicate_of;
  switch (d.purpose.kind) {
    case PurposeKind::intake: break;
    case PurposeKind::escalation: {
      EscalationNotice e;
      e.step = static_cast<int>(d.purpose.number);
      for (const auto& step : store::escalations_of(db, row.referral_id)) {
        if (step.step == e.step) e.after = step.after;
      }
      e.waited = std::chrono::floor<std::chrono::seconds>(now - d.received_at);
      d.escalation = e;
      break;
    }
    case PurposeKind::notice: {
      if (auto change = store::status_change(db, row.referral_id, d.purpose.number)) {
        d.notice = StatusNotice{change->to, std::move(change->note)};
      }
      if (!d.notice) return "status change " + std::to_string(d.purpose.number) + " is no longer in the store";
      break;
    }
  }
  if (want.attachments && d.purpose.kind != PurposeKind::notice) {
    d.attachments = store::attachment_files(db, row.referral_id);
  }
  if (want.referrer != ReferrerContact::none) {
    d.recipient = referrer_recipient(d.document, want.referrer);
    if (!d.recipient) {
      return std::string("the referral gives no ") + contact_words(want.referrer) + " for the referrer";
    }
  } else if (want.ack_links && !options.link_origin.empty() && d.purpose.kind != PurposeKind::notice && status &&
             !is_acknowledged(status->status)) {
    const AckToken token = new_ack_token();
    store::add_ack_token(db, row.referral_id, token.hash, now, now + options.ack_link_ttl);
    d.ack_link = ack_link(options.link_origin, token.token);
  }
  return std::nullopt;
}

}  // namespace

struct Dispatcher::Impl : std::enable_shared_from_this<Dispatcher::Impl> {
  Impl(asio::any_io_executor ex, store::Writer& w, const Clock& c, DispatcherOptions o)
      : strand(asio::make_strand(ex)),
        writer(w),
        clock(c),
        options(std::move(o)),
        wakeup(strand),
        rng(std::random_device{}()) {}

  struct TargetState {
    DispatchTarget target;
    unsigned in_flight = 0;
  };

  // Everything below is touched only on `strand`.
  asio::strand<asio::any_io_executor> strand;
  store::Writer& writer;
  const Clock& clock;
  DispatcherOptions options;
  std::map<std::string, TargetState> targets;
  asio::steady_timer wakeup;
  bool wake_pending = true;
  bool running = false;
  bool stopping = false;
  bool claiming = false;  // a claim is in the writer's hands: what it returns must be sent or stay leased
  unsigned in_flight = 0;
  std::mt19937_64 rng;
  std::optional<asio::steady_timer> drained;  // signalled when in_flight reaches 0 while stopping

  std::atomic<std::uint64_t> delivered{0}, transient{0}, permanent{0}, misconfigured{0}, superseded{0};
  std::atomic<std::uint64_t> in_flight_count{0};

  // A claimed delivery whose referral document could not be decrypted.
  struct Unreadable {
    std::string referral_id;
    std::string target;
    int attempt = 0;
    std::string error;
  };

  // A claimed delivery that will not be sent (store::skip_delivery).
  struct Skipped {
    std::string referral_id;
    std::string target;
    std::string purpose;
    std::string reason;
  };

  struct Claimed {
    std::vector<Delivery> deliveries;
    std::vector<Unreadable> unreadable;  // already recorded dead
    std::vector<Skipped> skipped;        // already recorded cancelled
    std::optional<system_clock::time_point> next_due;
    system_clock::time_point as_of{};  // the claim's "now": what was due then and not taken waits
    bool failed = false;               // the store did not take the claim: nothing is known of what is due
  };

  asio::awaitable<Claimed> claim() {
    std::vector<ClaimWant> wants;
    for (auto& [name, state] : targets) {
      if (state.in_flight < state.target.concurrency) {
        wants.push_back({name, static_cast<int>(state.target.concurrency - state.in_flight), state.target.referrer,
                         state.target.ack_links, state.target.attachments});
      }
    }
    auto result = std::make_shared<Claimed>();
    result->as_of = clock.now();
    // Every target is sending as much as it may: nothing can be taken, and
    // the end of a send wakes this loop. Asking the store anyway would be a
    // writer commit for nothing, as often as the loop turns.
    if (wants.empty()) co_return std::move(*result);
    // Named, not a temporary inside co_await: GCC 12 mishandles the lifetime
    // of temporaries in co_await expressions.
    store::Writer::Job job = [wants = std::move(wants), result, now = result->as_of,
                              options = options](store::Database& db) {
      for (const auto& want : wants) {
        for (auto& row : store::claim_due(db, now, options.lease, want.limit, {want.target})) {
          std::optional<store::ReferralRow> referral;
          Delivery d;
          std::optional<std::string> skip;
          try {
            referral = store::find_referral(db, row.referral_id);
            if (!referral) continue;  // purged meanwhile; the cascade removed the delivery too
            d.id = row.id;
            d.identity = delivery_identity(row.referral_id, row.target, row.purpose);
            d.referral_id = row.referral_id;
            d.target = row.target;
            d.attempt = row.attempts;
            d.received_at = referral->received_at;
            d.decision = referral->decision;
            d.urgency = referral->urgency;
            d.reasons = referral->reasons;
            d.document = std::move(referral->document);
            skip = prepare(db, d, row, want, options, now);
          } catch (const store::PayloadError& e) {
            // Nothing can be sent without the document (its key is no longer
            // in storage.encryption_keys, or the row was altered). Left due,
            // it would be claimed again at once, forever: it is dead and
            // loud, like a misconfigured target; once the key is back,
            // `referralctl retry` sends it.
            store::AttemptRecord a;
            a.delivery_id = row.id;
            a.attempt = row.attempts;
            a.started_at = a.finished_at = now;
            a.outcome = store::AttemptOutcome::misconfigured;
            a.message = e.what();
            a.next_state = store::DeliveryState::dead;
            store::finish_attempt(db, a);
            result->unreadable.push_back({row.referral_id, row.target, row.attempts, e.what()});
            continue;
          }
          if (skip) {
            // Nothing to send it to: recorded on the delivery and in the
            // audit trail, not retried, not a dead letter.
            store::skip_delivery(db, row.id, row.attempts, *skip, now);
            result->skipped.push_back({row.referral_id, row.target, row.purpose, *skip});
            continue;
          }
          result->deliveries.push_back(std::move(d));
        }
      }
      result->next_due = store::next_due(db);
    };
    const auto job_result = co_await store::async_write(writer, std::move(job));
    if (job_result.status != store::JobStatus::committed) {
      spdlog::warn("dispatch.claim_failed status={} error=\"{}\"", static_cast<int>(job_result.status),
                   job_result.error);
      result->deliveries.clear();
      result->unreadable.clear();
      result->skipped.clear();
      result->next_due.reset();
      result->failed = true;
    }
    for (const auto& k : result->skipped) {
      spdlog::info("delivery.skipped id={} target={} purpose={} reason=\"{}\"", k.referral_id, k.target, k.purpose,
                   k.reason);
    }
    for (const auto& u : result->unreadable) {
      ++misconfigured;
      spdlog::error(
          "delivery.failed id={} target={} attempt={} class=misconfigured error=\"{}\" next=dead "
          "(restore the key to storage.encryption_keys and reload, then: referralctl retry {})",
          u.referral_id, u.target, u.attempt, u.error, u.referral_id);
    }
    co_return std::move(*result);
  }

  asio::awaitable<void> release_leases_left_behind() {
    auto count = std::make_shared<int>(0);
    store::Writer::Job job = [count, now = clock.now()](store::Database& db) {
      *count = store::release_leases(db, now);
    };
    const auto result = co_await store::async_write(writer, std::move(job));
    if (result.status != store::JobStatus::committed) {
      spdlog::warn("dispatch.leases_release_failed error=\"{}\" (they are retried when their leases run out)",
                   result.error);
    } else if (*count > 0) {
      spdlog::info("dispatch.leases_released count={} (sends a previous run did not finish; tried again now)", *count);
    }
  }

  asio::awaitable<void> run() {
    auto self = shared_from_this();
    co_await release_leases_left_behind();
    while (!stopping) {
      wake_pending = false;
      Claimed claimed;
      // A stop that arrives meanwhile waits for this claim: the rows it
      // returns are already 'sending' and are sent within the grace.
      claiming = true;
      try {
        claimed = co_await claim();
      } catch (const std::exception& e) {
        spdlog::error("dispatch.claim_error error=\"{}\"", e.what());
        claimed.failed = true;
      }
      claiming = false;
      for (auto& d : claimed.deliveries) launch(std::move(d));
      notify_if_drained();
      if (stopping) break;
      if (wake_pending) continue;
      auto delay = std::chrono::duration_cast<std::chrono::steady_clock::duration>(options.poll_interval);
      // A claim the store refused (its connection lost with the server's
      // restart, say) is tried again within a second, not after the poll:
      // a wake-up it answered may have been the only one for that work.
      if (claimed.failed) delay = std::min<std::chrono::steady_clock::duration>(delay, claim_retry);
      // Work that was due when the claim ran and that it did not take is for
      // a target with no free slot (the end of one of its sends wakes this
      // loop) or for one that is no longer configured (nothing here sends
      // it): waking for it at once would claim nothing, again and again.
      if (claimed.next_due && *claimed.next_due > claimed.as_of) {
        const auto until = *claimed.next_due - clock.now();
        if (until < delay)
          delay = std::max(std::chrono::steady_clock::duration::zero(),
                           std::chrono::duration_cast<std::chrono::steady_clock::duration>(until));
      }
      wakeup.expires_after(delay);
      co_await wakeup.async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }

  void launch(Delivery d) {
    auto it = targets.find(d.target);
    if (it == targets.end()) return;  // cannot happen: we claim only configured targets
    ++it->second.in_flight;
    ++in_flight;
    ++in_flight_count;
    asio::co_spawn(strand, deliver(std::move(d), it->second.target), asio::detached);
  }

  asio::awaitable<void> deliver(Delivery d, DispatchTarget target) {
    auto self = shared_from_this();
    const auto started = clock.now();
    Outcome outcome;
    try {
      asio::steady_timer deadline(strand);
      deadline.expires_after(target.timeout);
      auto raced = co_await (target.adapter->send(d) || deadline.async_wait(asio::as_tuple(asio::use_awaitable)));
      if (raced.index() == 0) {
        outcome = std::get<0>(std::move(raced));
      } else {
        outcome = Outcome::transient("timed out after " + format_duration(target.timeout));
      }
    } catch (const std::exception& e) {
      outcome = Outcome::transient(std::string("adapter error: ") + e.what());
    }
    // The send is over: free the target's slot now, before the outcome is
    // committed, so the next claim runs alongside this record instead of
    // after it (the row stays 'sending' under its lease until the record
    // commits, so it cannot be claimed twice). `in_flight` still counts this
    // delivery until it is recorded, for stop(). Otherwise every slot sat
    // idle for a record and then a claim round trip through the writer after
    // each send (seen in the smtp drain benchmark, bench/README.md).
    auto it = targets.find(d.target);
    if (it != targets.end() && it->second.in_flight > 0) --it->second.in_flight;
    wake_pending = true;
    wakeup.cancel();
    co_await record(d, target, started, std::move(outcome));
    --in_flight;
    --in_flight_count;
    notify_if_drained();
  }

  // Wakes stop() once nothing is claimed or being sent.
  void notify_if_drained() {
    if (stopping && in_flight == 0 && !claiming && drained) drained->cancel();
  }

  asio::awaitable<void> stop(Duration grace) {
    auto self = shared_from_this();
    stopping = true;
    wakeup.cancel();
    if (in_flight == 0 && !claiming) co_return;
    drained.emplace(strand);
    drained->expires_after(grace);
    co_await drained->async_wait(asio::as_tuple(asio::use_awaitable));
    if (in_flight > 0 || claiming) {
      spdlog::warn(
          "dispatch.stop_timeout in_flight={} claiming={} (they stay leased and are sent again at the "
          "next start)",
          in_flight, claiming);
    }
  }

  asio::awaitable<void> record(const Delivery& d, const DispatchTarget&, system_clock::time_point started,
                               Outcome outcome) {
    const auto now = clock.now();
    store::AttemptRecord a;
    a.delivery_id = d.id;
    a.attempt = d.attempt;
    a.started_at = started;
    a.finished_at = now;
    a.outcome = outcome.kind;
    a.code = outcome.code;
    a.message = outcome.message;
    a.external_id = outcome.external_id;
    std::optional<system_clock::time_point> retry_at;
    switch (outcome.kind) {
      case OutcomeClass::delivered:
        a.next_state = store::DeliveryState::delivered;
        ++delivered;
        break;
      case OutcomeClass::transient: {
        ++transient;
        std::uniform_real_distribution<double> jitter(0.0, 1.0);
        // The delivery's creation is the referral's arrival: give_up_after counts from there.
        retry_at = next_retry(options.retry, d.attempt, d.received_at, now, jitter(rng));
        a.next_state = retry_at ? store::DeliveryState::retry : store::DeliveryState::dead;
        a.next_attempt_at = retry_at;
        break;
      }
      case OutcomeClass::permanent:
        ++permanent;
        a.next_state = store::DeliveryState::dead;
        break;
      case OutcomeClass::misconfigured:
        ++misconfigured;
        a.next_state = store::DeliveryState::dead;
        break;
    }
    const auto code = outcome.code.value_or("-");
    if (outcome.kind == OutcomeClass::delivered) {
      spdlog::info("delivery.sent id={} target={} attempt={}", d.referral_id, d.target, d.attempt);
    } else if (outcome.kind == OutcomeClass::misconfigured) {
      spdlog::error(
          "delivery.failed id={} target={} attempt={} class=misconfigured code={} error=\"{}\" "
          "next=dead (fix the target's configuration, then: referralctl retry {})",
          d.referral_id, d.target, d.attempt, code, outcome.message, d.referral_id);
    } else {
      spdlog::warn("delivery.failed id={} target={} attempt={} class={} code={} error=\"{}\" next={}", d.referral_id,
                   d.target, d.attempt, store::to_string(outcome.kind), code, outcome.message,
                   retry_at ? format_utc_timestamp(*retry_at) : std::string("dead"));
    }
    auto finished = std::make_shared<store::Finished>(store::Finished::applied);
    store::Writer::Job job = [a, finished](store::Database& db) { *finished = store::finish_attempt(db, a); };
    const auto result = co_await store::async_write(writer, std::move(job));
    if (result.status != store::JobStatus::committed) {
      // The row stays 'sending' under its lease and is tried again when the
      // lease expires: at-least-once, never lost.
      spdlog::error("delivery.record_failed id={} target={} attempt={} error=\"{}\"", d.referral_id, d.target,
                    d.attempt, result.error);
    } else if (*finished == store::Finished::superseded) {
      // This send outlived its lease and another claim (here or on another
      // instance sharing the database) took the delivery over: that claim's
      // outcome stands; this one is in the attempts and the audit trail.
      ++superseded;
      spdlog::warn(
          "delivery.outcome_superseded id={} target={} attempt={} class={} (its lease ran out and the delivery "
          "was claimed again; that claim decides)",
          d.referral_id, d.target, d.attempt, store::to_string(outcome.kind));
    }
  }
};

Dispatcher::Dispatcher(asio::any_io_executor executor, store::Writer& writer, const Clock& clock,
                       DispatcherOptions options)
    : impl_(std::make_shared<Impl>(std::move(executor), writer, clock, std::move(options))) {}

Dispatcher::~Dispatcher() = default;

void Dispatcher::set_targets(std::vector<DispatchTarget> targets, DispatcherOptions options) {
  asio::post(impl_->strand, [impl = impl_, targets = std::move(targets), options = std::move(options)]() mutable {
    std::map<std::string, Impl::TargetState> next;
    for (auto& t : targets) {
      const auto name = t.name;
      const auto old = impl->targets.find(name);
      next[name] = Impl::TargetState{std::move(t), old == impl->targets.end() ? 0U : old->second.in_flight};
    }
    impl->targets = std::move(next);
    impl->options = std::move(options);
    impl->wake_pending = true;
    impl->wakeup.cancel();
  });
}

void Dispatcher::start() {
  asio::post(impl_->strand, [impl = impl_] {
    if (impl->running) return;
    impl->running = true;
    asio::co_spawn(impl->strand, impl->run(), log_if_ended_by_error("dispatch.loop_died"));
  });
}

void Dispatcher::wake() {
  asio::post(impl_->strand, [impl = impl_] {
    impl->wake_pending = true;
    impl->wakeup.cancel();
  });
}

asio::awaitable<void> Dispatcher::stop(Duration grace) {
  co_await asio::co_spawn(impl_->strand, impl_->stop(grace), asio::use_awaitable);
}

std::optional<std::string> referrer_recipient(const std::string& document, ReferrerContact contact) {
  const auto doc = nlohmann::json::parse(document, nullptr, /*allow_exceptions=*/false);
  const auto field = [&](const char* pointer) -> std::optional<std::string> {
    const nlohmann::json::json_pointer p(pointer);
    if (!doc.is_object() || !doc.contains(p) || !doc.at(p).is_string()) return std::nullopt;
    std::string value = doc.at(p).get<std::string>();
    if (value.empty()) return std::nullopt;
    return value;
  };
  switch (contact) {
    case ReferrerContact::email: return field("/referrer/email");
    case ReferrerContact::fax: return field("/referrer/fax");
    case ReferrerContact::email_or_fax: {
      auto email = field("/referrer/email");
      return email ? email : field("/referrer/fax");
    }
    case ReferrerContact::none: break;
  }
  return std::nullopt;
}

DispatcherStats Dispatcher::stats() const {
  return {impl_->delivered.load(),     impl_->transient.load(),       impl_->permanent.load(),
          impl_->misconfigured.load(), impl_->in_flight_count.load(), impl_->superseded.load()};
}

}  // namespace referrald
