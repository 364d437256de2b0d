// Where time goes, for /metrics: a histogram of durations that threads
// record into without a lock, and the Prometheus text of a histogram
// (docs/architecture.md, "Latency by stage").
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace referrald {

// Counts durations into fixed buckets, from 50 µs to 10 s. record() is a
// few relaxed atomic additions: safe from any thread, and cheap enough for
// every request.
class LatencyHistogram {
 public:
  static constexpr std::array<std::chrono::microseconds, 16> bounds{
      std::chrono::microseconds(50),      std::chrono::microseconds(100),     std::chrono::microseconds(250),
      std::chrono::microseconds(500),     std::chrono::microseconds(1000),    std::chrono::microseconds(2500),
      std::chrono::microseconds(5000),    std::chrono::microseconds(10000),   std::chrono::microseconds(25000),
      std::chrono::microseconds(50000),   std::chrono::microseconds(100000),  std::chrono::microseconds(250000),
      std::chrono::microseconds(500000),  std::chrono::microseconds(1000000), std::chrono::microseconds(2500000),
      std::chrono::microseconds(10000000)};

  // Counts `d` once, or `times` times (the jobs of one batch, say).
  void record(std::chrono::steady_clock::duration d, std::uint64_t times = 1) noexcept;

  struct Snapshot {
    std::array<std::uint64_t, bounds.size() + 1> counts{};  // per bucket, the last past every bound
    std::uint64_t sum_ns = 0;
  };
  // Read while others record: each figure is one that was true at some
  // moment, so the sum may be a record or two ahead of the buckets or
  // behind them.
  Snapshot snapshot() const noexcept;

 private:
  std::array<std::atomic<std::uint64_t>, bounds.size() + 1> counts_{};
  std::atomic<std::uint64_t> sum_ns_{0};
};

// One series of a Prometheus histogram: the _bucket lines, each with its
// `le` and `labels` (e.g. stage="sync"; empty for none), _sum and _count.
// `buckets` are (upper bound as written in `le`, how many at or under it),
// the last "+Inf", whose count is the total.
std::string histogram_text(std::string_view name, std::string_view labels,
                           const std::vector<std::pair<std::string, std::uint64_t>>& buckets, double sum);

// The series of a LatencyHistogram, in seconds.
std::string histogram_text(std::string_view name, std::string_view labels, const LatencyHistogram::Snapshot& s);

}  // namespace referrald
