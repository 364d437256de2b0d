#include "routing/business_hours.hpp"

#include <algorithm>

#include <date/tz.h>

namespace referrald {

namespace {

using Duration = std::chrono::system_clock::duration;
using LocalDay = date::local_days;

// The local day count as a std::chrono calendar date (the type BusinessHours
// uses); both count days from 1970-01-01.
Date to_date(LocalDay day) { return Date{std::chrono::sys_days{std::chrono::days{day.time_since_epoch().count()}}}; }

bool is_open_day(const BusinessHours& hours, LocalDay day) {
  const Date date = to_date(day);
  const std::chrono::weekday weekday{std::chrono::sys_days{date}};
  if (!hours.open_days[weekday.c_encoding()]) return false;
  return std::find(hours.holidays.begin(), hours.holidays.end(), date) == hours.holidays.end();
}

}  // namespace

bool is_after_hours(const BusinessHours& hours, std::chrono::system_clock::time_point t) {
  // locate_zone throws std::runtime_error for a name the tzdata does not hold.
  const date::time_zone* zone = date::locate_zone(hours.time_zone);
  // The office's wall clock, which is what opens/closes and holidays mean;
  // the zone's rules decide the UTC offset on that date, so DST is handled.
  const date::zoned_time<Duration> zoned{zone, t};
  const auto local = zoned.get_local_time();
  const LocalDay local_midnight = date::floor<date::days>(local);
  const Duration time_of_day = local - local_midnight;
  if (!is_open_day(hours, local_midnight)) return true;
  return time_of_day < hours.opens || time_of_day >= hours.closes;
}

std::optional<std::chrono::system_clock::time_point> open_time_after(const BusinessHours& hours,
                                                                     std::chrono::system_clock::time_point start,
                                                                     Duration amount) {
  if (amount <= Duration::zero()) return start;
  const date::time_zone* zone = date::locate_zone(hours.time_zone);
  LocalDay day = date::floor<date::days>(date::zoned_time<Duration>{zone, start}.get_local_time());
  Duration remaining = amount;
  constexpr int horizon_days = 2 * 366;
  for (int i = 0; i < horizon_days; ++i, day += date::days{1}) {
    if (!is_open_day(hours, day)) continue;
    // Opening and closing on this local day as instants; a time the DST
    // change skips or repeats takes its earliest instant.
    const auto opens = zone->to_sys(date::local_time<Duration>{day + hours.opens}, date::choose::earliest);
    const auto closes = zone->to_sys(date::local_time<Duration>{day + hours.closes}, date::choose::earliest);
    const auto from = std::max(std::chrono::system_clock::time_point{opens}, start);
    if (from >= closes) continue;
    const Duration open_left_today = closes - from;
    if (remaining <= open_left_today) return from + remaining;
    remaining -= open_left_today;
  }
  return std::nullopt;
}

bool time_zone_exists(const std::string& name) noexcept {
  try {
    return date::locate_zone(name) != nullptr;
  } catch (...) {
    return false;
  }
}

}  // namespace referrald
