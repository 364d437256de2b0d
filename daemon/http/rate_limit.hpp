// Per-client token buckets: `per_minute` sustained, `burst` at once.
#pragma once

#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace referrald::http {

class RateLimiter {
 public:
  RateLimiter(unsigned per_minute, unsigned burst);

  // nullopt when the request may proceed; otherwise the seconds to wait.
  std::optional<long long> acquire(const std::string& client, std::chrono::steady_clock::time_point now);

 private:
  struct Bucket {
    double tokens;
    std::chrono::steady_clock::time_point updated;
  };
  void prune(std::chrono::steady_clock::time_point now);

  double rate_per_second_;
  double burst_;
  std::mutex mutex_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace referrald::http
