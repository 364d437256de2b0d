// When the referral office is staffed, in its own time zone.
#pragma once

#include <array>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "model/referral.hpp"

namespace referrald {

struct BusinessHours {
  std::string time_zone = "America/Chicago";  // IANA name, resolved against the system tzdata
  std::array<bool, 7> open_days{false, true, true, true, true, true, false};  // [0]=Sunday
  std::chrono::minutes opens{8 * 60};                                         // local time of day
  std::chrono::minutes closes{17 * 60};                                       // exclusive
  std::vector<Date> holidays;  // local dates the office is closed all day
};

// True when t falls outside the office's hours. Throws std::runtime_error for
// an unknown time zone (configuration validation checks this up front).
bool is_after_hours(const BusinessHours& hours, std::chrono::system_clock::time_point t);

// The moment `amount` of the office's open time has passed since `start`:
// closed days, holidays and the hours outside opens..closes do not count
// (DST is the zone's: a 23-hour day is shorter only at night). `amount` zero
// is `start` itself. Nullopt when the office opens on no day within two
// years, which configuration validation refuses. Throws std::runtime_error
// for an unknown time zone.
std::optional<std::chrono::system_clock::time_point> open_time_after(const BusinessHours& hours,
                                                                     std::chrono::system_clock::time_point start,
                                                                     std::chrono::system_clock::duration amount);

// True if the name resolves in the system time-zone database.
bool time_zone_exists(const std::string& name) noexcept;

}  // namespace referrald
