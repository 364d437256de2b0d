// Claims due deliveries from the store and runs them through their adapters,
// concurrently, with a per-target limit. Every outcome is recorded; transient
// failures come back at a backoff; nothing is held only in memory: a claimed
// delivery carries a lease, so a crash returns it to the queue.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dispatch/adapter.hpp"
#include "dispatch/backoff.hpp"
#include "store/writer.hpp"
#include "util/clock.hpp"

namespace referrald {

// Which of the referral's contacts a target with recipient = "referrer"
// sends to; none: the target's own address (every other target).
enum class ReferrerContact { none, email, fax, email_or_fax };

struct DispatchTarget {
  std::string name;
  std::shared_ptr<Adapter> adapter;
  unsigned concurrency = 4;
  Duration timeout{std::chrono::seconds(60)};
  ReferrerContact referrer = ReferrerContact::none;
  // Email and fax: the office's intake and escalation messages carry a
  // one-tap acknowledgement link (never a page, never a referrer's notice).
  bool ack_links = false;
  // Email (fax later): the office's intake and escalation messages carry the
  // referral's attached files (docs/attachments.md); never a page or a notice.
  bool attachments = false;
};

struct DispatcherOptions {
  RetryPolicy retry;
  Duration lease{std::chrono::minutes(5)};
  Duration poll_interval{std::chrono::seconds(1)};  // picks up referralctl's changes
  std::string link_origin;                          // empty: no acknowledgement links
  Duration ack_link_ttl{std::chrono::hours(24 * 7)};
};

// The referral's address for `contact` (/referrer/email, /referrer/fax; for
// email_or_fax the email if given, else the fax), or nullopt when the
// document gives none. Pure.
std::optional<std::string> referrer_recipient(const std::string& document, ReferrerContact contact);

struct DispatcherStats {
  std::uint64_t delivered = 0;
  std::uint64_t transient = 0;
  std::uint64_t permanent = 0;
  std::uint64_t misconfigured = 0;
  std::uint64_t in_flight = 0;
  // Outcomes not applied because the send outlived its lease and the
  // delivery was claimed again (store::Finished::superseded).
  std::uint64_t superseded = 0;
};

class Dispatcher : public std::enable_shared_from_this<Dispatcher> {
 public:
  Dispatcher(boost::asio::any_io_executor executor, store::Writer& writer, const Clock& clock,
             DispatcherOptions options);
  ~Dispatcher();

  // Replaces the target set (on start and on reload). Deliveries in flight
  // finish with the adapter they started with.
  void set_targets(std::vector<DispatchTarget> targets, DispatcherOptions options);

  // Starts the claim loop. Deliveries left 'sending' by a previous run are
  // made due at once.
  void start();

  // Thread-safe: something may be due (called after each commit).
  void wake();

  // Stops claiming and waits up to `grace` for sends in progress.
  boost::asio::awaitable<void> stop(Duration grace);

  DispatcherStats stats() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace referrald
