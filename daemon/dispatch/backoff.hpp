// The retry schedule, as a pure function: capped exponential backoff with
// jitter, bounded by max_attempts and give_up_after.
#pragma once

#include <chrono>
#include <optional>

#include "util/duration.hpp"

namespace referrald {

struct RetryPolicy {
  int max_attempts = 10;
  Duration initial_backoff{std::chrono::seconds(30)};
  Duration max_backoff{std::chrono::minutes(30)};
  Duration give_up_after{std::chrono::hours(48)};
};

// When to try again after `attempts_made` failed attempts (1 after the first),
// or nullopt when the delivery should be given up (dead). `jitter` in [0, 1)
// spreads retries over [0.5, 1.0] of the nominal delay so a recovering peer is
// not hit by every delivery at once.
std::optional<std::chrono::system_clock::time_point> next_retry(const RetryPolicy& policy, int attempts_made,
                                                                std::chrono::system_clock::time_point created,
                                                                std::chrono::system_clock::time_point now,
                                                                double jitter) noexcept;

}  // namespace referrald
