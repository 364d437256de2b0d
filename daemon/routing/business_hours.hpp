// When the referral office is staffed, in its own time zone.
#pragma once

#include <array>
#include <chrono>
#include <string>
#include <vector>

#include "model/referral.hpp"

namespace referrald {

struct BusinessHours {
  std::string time_zone = "America/Chicago";  // IANA name, resolved against the system tzdata
  std::array<bool, 7> open_days{false, true, true, true, true, true, false};  // [0]=Sunday
  std::chrono::minutes opens{8 * 60};    // local time of day
  std::chrono::minutes closes{17 * 60};  // exclusive
  std::vector<Date> holidays;            // local dates the office is closed all day
};

// True when t falls outside the office's hours. Throws std::runtime_error for
// an unknown time zone (configuration validation checks this up front).
bool is_after_hours(const BusinessHours& hours, std::chrono::system_clock::time_point t);

// True if the name resolves in the system time-zone database.
bool time_zone_exists(const std::string& name) noexcept;

}  // namespace referrald
