#include "dispatch/backoff.hpp"

#include <algorithm>
#include <cmath>

namespace referrald {

std::optional<std::chrono::system_clock::time_point> next_retry(const RetryPolicy& policy, int attempts_made,
                                                                std::chrono::system_clock::time_point created,
                                                                std::chrono::system_clock::time_point now,
                                                                double jitter) noexcept {
  if (attempts_made >= policy.max_attempts) return std::nullopt;
  if (now - created >= policy.give_up_after) return std::nullopt;
  // initial * 2^(n-1), computed in double to avoid overflow, then capped.
  const double nominal_ms =
      std::min(static_cast<double>(policy.initial_backoff.count()) * std::pow(2.0, std::max(0, attempts_made - 1)),
               static_cast<double>(policy.max_backoff.count()));
  const double factor = 0.5 + 0.5 * std::clamp(jitter, 0.0, 1.0);
  const auto delay = Duration{static_cast<Duration::rep>(nominal_ms * factor)};
  const auto at = now + delay;
  // Never schedule past the give-up deadline by more than one attempt: the
  // last try happens at the deadline at the latest.
  return std::min(at, created + policy.give_up_after);
}

}  // namespace referrald
