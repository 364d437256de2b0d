#include "util/duration.hpp"

#include <limits>

namespace referrald {

std::optional<Duration> parse_duration(std::string_view text) noexcept {
  if (text.empty()) return std::nullopt;
  using Rep = Duration::rep;
  constexpr Rep max_ms = std::numeric_limits<Rep>::max() / 1000;
  Rep total = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    Rep number = 0;
    const std::size_t start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (number > max_ms / 10) return std::nullopt;
      number = number * 10 + (text[i] - '0');
      ++i;
    }
    if (i == start) return std::nullopt;
    Rep unit_ms = 0;
    if (text.substr(i, 2) == "ms") {
      unit_ms = 1;
      i += 2;
    } else if (i < text.size()) {
      switch (text[i]) {
        case 's': unit_ms = 1000; break;
        case 'm': unit_ms = 60 * 1000; break;
        case 'h': unit_ms = 3600 * 1000; break;
        case 'd': unit_ms = 24 * 3600 * 1000; break;
        default: return std::nullopt;
      }
      ++i;
    } else {
      return std::nullopt;  // a bare number has no unit
    }
    if (number > max_ms / unit_ms) return std::nullopt;
    total += number * unit_ms;
    if (total > max_ms) return std::nullopt;
  }
  return Duration{total};
}

std::string format_duration(Duration d) {
  auto ms = d.count();
  if (ms == 0) return "0s";
  std::string out;
  const struct {
    Duration::rep size;
    const char* unit;
  } units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};
  for (const auto& u : units) {
    if (ms >= u.size) {
      out += std::to_string(ms / u.size);
      out += u.unit;
      ms %= u.size;
    }
  }
  return out;
}

}  // namespace referrald
