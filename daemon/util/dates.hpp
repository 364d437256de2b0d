// Calendar helpers over std::chrono dates.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "model/referral.hpp"

namespace referrald {

// Parses a strict ISO 8601 calendar date "YYYY-MM-DD"; nullopt unless the
// text has exactly that shape and names a real day (no 2023-02-29).
std::optional<Date> parse_iso_date(std::string_view text) noexcept;
std::string format_iso_date(Date d);

// Completed years between birth and on (the age a parent would say).
int age_in_years(Date birth, Date on) noexcept;

// Today's date in UTC for the given instant.
Date utc_date(std::chrono::system_clock::time_point t) noexcept;

// RFC 3339 UTC timestamp with milliseconds, e.g. 2026-11-28T07:00:25.123Z.
std::string format_utc_timestamp(std::chrono::system_clock::time_point t);

// The wall-clock time in an IANA time zone, for a person to read:
// "2026-12-06 08:02 CST". Throws std::runtime_error for an unknown zone.
std::string format_local_time(std::chrono::system_clock::time_point t, const std::string& time_zone);

}  // namespace referrald
