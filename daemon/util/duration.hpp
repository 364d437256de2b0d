// Durations as operators write them in configuration: "30s", "30m", "48h",
// "1h30m", "365d", "250ms".
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace referrald {

using Duration = std::chrono::milliseconds;

// nullopt for anything but one or more <digits><unit> groups with units
// ms, s, m, h, d (no sign, no spaces, no bare numbers).
std::optional<Duration> parse_duration(std::string_view text) noexcept;
std::string format_duration(Duration d);

}  // namespace referrald
