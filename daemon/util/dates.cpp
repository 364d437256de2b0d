#include "util/dates.hpp"

#include <date/tz.h>
#include <fmt/format.h>

namespace referrald {
namespace {

bool all_digits(std::string_view s) noexcept {
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

int to_int(std::string_view s) noexcept {
  int v = 0;
  for (char c : s) v = v * 10 + (c - '0');
  return v;
}

}  // namespace

std::optional<Date> parse_iso_date(std::string_view text) noexcept {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return std::nullopt;
  const auto y = text.substr(0, 4), m = text.substr(5, 2), d = text.substr(8, 2);
  if (!all_digits(y) || !all_digits(m) || !all_digits(d)) return std::nullopt;
  const Date date{std::chrono::year{to_int(y)}, std::chrono::month{static_cast<unsigned>(to_int(m))},
                  std::chrono::day{static_cast<unsigned>(to_int(d))}};
  if (!date.ok()) return std::nullopt;
  return date;
}

std::string format_iso_date(Date d) {
  return fmt::format("{:04d}-{:02d}-{:02d}", static_cast<int>(d.year()), static_cast<unsigned>(d.month()),
                     static_cast<unsigned>(d.day()));
}

int age_in_years(Date birth, Date on) noexcept {
  int years = static_cast<int>(on.year()) - static_cast<int>(birth.year());
  if (on.month() < birth.month() || (on.month() == birth.month() && on.day() < birth.day())) {
    --years;
  }
  return years;
}

Date utc_date(std::chrono::system_clock::time_point t) noexcept {
  return Date{std::chrono::floor<std::chrono::days>(t)};
}

std::string format_utc_timestamp(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto ms = floor<milliseconds>(t);
  const auto day = floor<days>(ms);
  const Date date{day};
  const hh_mm_ss tod{ms - day};
  return fmt::format("{}T{:02d}:{:02d}:{:02d}.{:03d}Z", format_iso_date(date), tod.hours().count(),
                     tod.minutes().count(), tod.seconds().count(), tod.subseconds().count());
}

std::string format_local_time(std::chrono::system_clock::time_point t, const std::string& time_zone) {
  const date::zoned_time zoned{date::locate_zone(time_zone), date::floor<std::chrono::minutes>(t)};
  return date::format("%Y-%m-%d %H:%M %Z", zoned);
}

}  // namespace referrald
