#include "util/latency.hpp"

#include <algorithm>
#include <cstdio>

namespace referrald {

void LatencyHistogram::record(std::chrono::steady_clock::duration d, std::uint64_t times) noexcept {
  const std::chrono::nanoseconds ns = std::max(std::chrono::nanoseconds::zero(), d);
  // The first bound at or over it: Prometheus' `le`.
  const auto bucket = static_cast<std::size_t>(std::lower_bound(bounds.begin(), bounds.end(), ns) - bounds.begin());
  counts_[bucket].fetch_add(times, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<std::uint64_t>(ns.count()) * times, std::memory_order_relaxed);
}

LatencyHistogram::Snapshot LatencyHistogram::snapshot() const noexcept {
  Snapshot s;
  for (std::size_t i = 0; i < counts_.size(); ++i) s.counts[i] = counts_[i].load(std::memory_order_relaxed);
  s.sum_ns = sum_ns_.load(std::memory_order_relaxed);
  return s;
}

std::string histogram_text(std::string_view name, std::string_view labels,
                           const std::vector<std::pair<std::string, std::uint64_t>>& buckets, double sum) {
  const std::string before_le = std::string(labels) + (labels.empty() ? "" : ",");
  const std::string series = labels.empty() ? std::string() : "{" + std::string(labels) + "}";
  std::string out;
  for (const auto& [le, count] : buckets) {
    out.append(name).append("_bucket{").append(before_le).append("le=\"").append(le).append("\"} ");
    out.append(std::to_string(count)).append("\n");
  }
  const std::uint64_t total = buckets.empty() ? 0 : buckets.back().second;
  char sum_text[32];
  std::snprintf(sum_text, sizeof sum_text, "%.6f", sum);
  out.append(name).append("_sum").append(series).append(" ").append(sum_text).append("\n");
  out.append(name).append("_count").append(series).append(" ").append(std::to_string(total)).append("\n");
  return out;
}

std::string histogram_text(std::string_view name, std::string_view labels, const LatencyHistogram::Snapshot& s) {
  std::vector<std::pair<std::string, std::uint64_t>> buckets;
  buckets.reserve(s.counts.size());
  std::uint64_t at_or_under = 0;
  for (std::size_t i = 0; i < LatencyHistogram::bounds.size(); ++i) {
    char le[32];
    std::snprintf(le, sizeof le, "%g", std::chrono::duration<double>(LatencyHistogram::bounds[i]).count());
    at_or_under += s.counts[i];
    buckets.emplace_back(le, at_or_under);
  }
  buckets.emplace_back("+Inf", at_or_under + s.counts.back());
  return histogram_text(name, labels, buckets, static_cast<double>(s.sum_ns) / 1e9);
}

}  // namespace referrald
