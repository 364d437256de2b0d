#include <gtest/gtest.h>

#include "http/rate_limit.hpp"

namespace referrald {
namespace {

using namespace std::chrono;
using namespace std::chrono_literals;

TEST(RateLimiter, AllowsTheBurstThenTheSustainedRate) {
  http::RateLimiter limiter(60, 3);  // one per second, three at once
  const auto now = steady_clock::now();
  EXPECT_FALSE(limiter.acquire("10.0.0.1", now));
  EXPECT_FALSE(limiter.acquire("10.0.0.1", now));
  EXPECT_FALSE(limiter.acquire("10.0.0.1", now));
  const auto wait = limiter.acquire("10.0.0.1", now);
  ASSERT_TRUE(wait.has_value());
  EXPECT_EQ(*wait, 1);
  // Another client has its own bucket.
  EXPECT_FALSE(limiter.acquire("10.0.0.2", now));
  // A second later one more request is allowed.
  EXPECT_FALSE(limiter.acquire("10.0.0.1", now + 1s));
  EXPECT_TRUE(limiter.acquire("10.0.0.1", now + 1s).has_value());
}

TEST(RateLimiter, ZeroDisables) {
  http::RateLimiter limiter(0, 1);
  const auto now = steady_clock::now();
  for (int i = 0; i < 1000; ++i) EXPECT_FALSE(limiter.acquire("x", now));
}

}  // namespace
}  // namespace referrald
