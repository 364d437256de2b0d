#include <gtest/gtest.h>

#include "dispatch/backoff.hpp"

namespace referrald {
namespace {

using namespace std::chrono;
using namespace std::chrono_literals;

const auto t0 = sys_days{year{2026} / November / 28} + 9h;

RetryPolicy policy() { return {10, 30s, 30min, 48h}; }

TEST(Backoff, DoublesFromTheInitialDelay) {
  // jitter 1.0 gives the nominal delay.
  EXPECT_EQ(*next_retry(policy(), 1, t0, t0, 1.0) - t0, 30s);
  EXPECT_EQ(*next_retry(policy(), 2, t0, t0, 1.0) - t0, 60s);
  EXPECT_EQ(*next_retry(policy(), 3, t0, t0, 1.0) - t0, 120s);
  EXPECT_EQ(*next_retry(policy(), 5, t0, t0, 1.0) - t0, 480s);
}

TEST(Backoff, IsCappedAtMaxBackoff) {
  EXPECT_EQ(*next_retry(policy(), 9, t0, t0, 1.0) - t0, 30min);
  RetryPolicy many = policy();
  many.max_attempts = 1000;
  EXPECT_EQ(*next_retry(many, 500, t0, t0, 1.0) - t0, 30min);  // no overflow
}

TEST(Backoff, JitterSpreadsOverTheUpperHalf) {
  EXPECT_EQ(*next_retry(policy(), 1, t0, t0, 0.0) - t0, 15s);
  EXPECT_EQ(*next_retry(policy(), 1, t0, t0, 0.5) - t0, 22500ms);
}

TEST(Backoff, GivesUpAfterMaxAttempts) {
  EXPECT_TRUE(next_retry(policy(), 9, t0, t0, 1.0).has_value());
  EXPECT_FALSE(next_retry(policy(), 10, t0, t0, 1.0).has_value());
}

TEST(Backoff, GivesUpAfterTheDeadlineAndNeverSchedulesPastIt) {
  EXPECT_FALSE(next_retry(policy(), 3, t0, t0 + 48h, 1.0).has_value());
  const auto last = next_retry(policy(), 9, t0, t0 + 47h + 50min, 1.0);
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(*last, t0 + 48h);
}

}  // namespace
}  // namespace referrald
