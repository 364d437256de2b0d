#include "http/rate_limit.hpp"

#include <algorithm>
#include <cmath>

namespace referrald::http {

namespace {
constexpr std::size_t prune_above = 10000;  // distinct clients kept before idle ones are dropped
}

RateLimiter::RateLimiter(unsigned per_minute, unsigned burst)
    : rate_per_second_(per_minute / 60.0), burst_(std::max(1U, burst)) {}

std::optional<long long> RateLimiter::acquire(const std::string& client, std::chrono::steady_clock::time_point now) {
  if (rate_per_second_ <= 0) return std::nullopt;  // disabled
  std::lock_guard lock(mutex_);
  if (buckets_.size() > prune_above) prune(now);
  auto [it, inserted] = buckets_.try_emplace(client, Bucket{burst_, now});
  auto& b = it->second;
  if (!inserted) {
    const double elapsed = std::chrono::duration<double>(now - b.updated).count();
    b.tokens = std::min(burst_, b.tokens + elapsed * rate_per_second_);
    b.updated = now;
  }
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return std::nullopt;
  }
  return static_cast<long long>(std::ceil((1.0 - b.tokens) / rate_per_second_));
}

void RateLimiter::prune(std::chrono::steady_clock::time_point now) {
  // A bucket that would be full again carries no state worth keeping.
  std::erase_if(buckets_, [&](const auto& entry) {
    const double elapsed = std::chrono::duration<double>(now - entry.second.updated).count();
    return entry.second.tokens + elapsed * rate_per_second_ >= burst_;
  });
}

}  // namespace referrald::http
