#include "routing/business_hours.hpp"

#include <algorithm>

#include <date/tz.h>

namespace referrald {

bool is_after_hours(const BusinessHours& hours, std::chrono::system_clock::time_point t) {
  // locate_zone throws std::runtime_error for a name the tzdata does not hold.
  const date::time_zone* zone = date::locate_zone(hours.time_zone);
  // The office's wall clock, which is what opens/closes and holidays mean;
  // the zone's rules decide the UTC offset on that date, so DST is handled.
  const date::zoned_time<std::chrono::system_clock::duration> zoned{zone, t};
  const auto local = zoned.get_local_time();
  const auto local_midnight = date::floor<date::days>(local);
  const std::chrono::system_clock::duration time_of_day = local - local_midnight;

  // Reinterpret the local day count as a std::chrono calendar date (the
  // type BusinessHours uses); both count days from 1970-01-01.
  const std::chrono::sys_days day{std::chrono::days{local_midnight.time_since_epoch().count()}};
  const std::chrono::weekday weekday{day};
  if (!hours.open_days[weekday.c_encoding()]) return true;
  if (std::find(hours.holidays.begin(), hours.holidays.end(), Date{day}) != hours.holidays.end()) {
    return true;
  }
  return time_of_day < hours.opens || time_of_day >= hours.closes;
}

bool time_zone_exists(const std::string& name) noexcept {
  try {
    return date::locate_zone(name) != nullptr;
  } catch (...) {
    return false;
  }
}

}  // namespace referrald
