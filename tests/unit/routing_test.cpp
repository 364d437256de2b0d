#include <gtest/gtest.h>

#include <stdexcept>

#include "routing/business_hours.hpp"
#include "routing/routing.hpp"

namespace referrald {
namespace {

using namespace std::chrono;
using namespace std::chrono_literals;

// ---- route matching -------------------------------------------------------

Route route(std::vector<Decision> decisions, std::vector<Urgency> urgencies, std::optional<bool> after_hours,
            std::vector<std::string> notify) {
  return Route{std::move(decisions), std::move(urgencies), after_hours, std::move(notify)};
}

TEST(RouteMatches, EmptyConditionsMatchEverything) {
  const Route any = route({}, {}, std::nullopt, {"office-email"});
  for (const auto d : {Decision::accepted, Decision::review, Decision::declined}) {
    for (const auto u : {Urgency::routine, Urgency::urgent, Urgency::emergent}) {
      EXPECT_TRUE(route_matches(any, {d, u, false}));
      EXPECT_TRUE(route_matches(any, {d, u, true}));
    }
  }
}

TEST(RouteMatches, ByDecision) {
  const Route r = route({Decision::accepted, Decision::review}, {}, std::nullopt, {"x"});
  EXPECT_TRUE(route_matches(r, {Decision::accepted, Urgency::routine, false}));
  EXPECT_TRUE(route_matches(r, {Decision::review, Urgency::emergent, true}));
  EXPECT_FALSE(route_matches(r, {Decision::declined, Urgency::routine, false}));
}

TEST(RouteMatches, ByUrgency) {
  const Route r = route({}, {Urgency::urgent, Urgency::emergent}, std::nullopt, {"x"});
  EXPECT_FALSE(route_matches(r, {Decision::accepted, Urgency::routine, false}));
  EXPECT_TRUE(route_matches(r, {Decision::accepted, Urgency::urgent, false}));
  EXPECT_TRUE(route_matches(r, {Decision::declined, Urgency::emergent, false}));
}

TEST(RouteMatches, ByAfterHoursBothWays) {
  const Route after = route({}, {}, true, {"x"});
  const Route during = route({}, {}, false, {"x"});
  EXPECT_TRUE(route_matches(after, {Decision::review, Urgency::routine, true}));
  EXPECT_FALSE(route_matches(after, {Decision::review, Urgency::routine, false}));
  EXPECT_TRUE(route_matches(during, {Decision::review, Urgency::routine, false}));
  EXPECT_FALSE(route_matches(during, {Decision::review, Urgency::routine, true}));
}

TEST(RouteMatches, AllConditionsMustHold) {
  const Route r = route({Decision::accepted}, {Urgency::emergent}, true, {"x"});
  EXPECT_TRUE(route_matches(r, {Decision::accepted, Urgency::emergent, true}));
  EXPECT_FALSE(route_matches(r, {Decision::review, Urgency::emergent, true}));
  EXPECT_FALSE(route_matches(r, {Decision::accepted, Urgency::urgent, true}));
  EXPECT_FALSE(route_matches(r, {Decision::accepted, Urgency::emergent, false}));
}

// The routes of the development configuration.
std::vector<Route> office_routes() {
  return {
      route({Decision::accepted, Decision::review}, {}, std::nullopt, {"office-email", "office-fax"}),
      route({}, {Urgency::urgent, Urgency::emergent}, std::nullopt, {"office-pager"}),
      route({}, {}, true, {"office-pager"}),
  };
}

TEST(RouteTargets, CollectsEveryMatchingRouteInOrderWithoutDuplicates) {
  const auto routes = office_routes();
  using V = std::vector<std::string>;
  EXPECT_EQ(route_targets(routes, {Decision::accepted, Urgency::routine, false}), (V{"office-email", "office-fax"}));
  EXPECT_EQ(route_targets(routes, {Decision::review, Urgency::emergent, false}),
            (V{"office-email", "office-fax", "office-pager"}));
  // Urgent and after hours both name the pager: it appears once.
  EXPECT_EQ(route_targets(routes, {Decision::accepted, Urgency::urgent, true}),
            (V{"office-email", "office-fax", "office-pager"}));
  EXPECT_EQ(route_targets(routes, {Decision::declined, Urgency::routine, false}), V{});
  EXPECT_EQ(route_targets(routes, {Decision::declined, Urgency::routine, true}), V{"office-pager"});
}

TEST(RouteTargets, KeepsFirstSeenOrderAcrossRoutes) {
  const std::vector<Route> routes{
      route({}, {}, std::nullopt, {"b", "a"}),
      route({}, {}, std::nullopt, {"c", "b", "c"}),
  };
  EXPECT_EQ(route_targets(routes, {Decision::review, Urgency::routine, false}),
            (std::vector<std::string>{"b", "a", "c"}));
  EXPECT_TRUE(route_targets({}, {Decision::review, Urgency::routine, false}).empty());
}

// ---- business hours -------------------------------------------------------

system_clock::time_point utc(sys_days day, minutes time_of_day) { return day + time_of_day; }

BusinessHours chicago() { return BusinessHours{}; }  // the defaults: Mon-Fri 08:00-17:00, America/Chicago

TEST(BusinessHours, WeekdayInsideAndOutsideHours) {
  // Wednesday 2026-01-14; Chicago is UTC-6 in January.
  const sys_days wed = 2026y / January / 14;
  EXPECT_FALSE(is_after_hours(chicago(), utc(wed, 16h)));         // 10:00 local
  EXPECT_TRUE(is_after_hours(chicago(), utc(wed, 13h)));          // 07:00 local
  EXPECT_TRUE(is_after_hours(chicago(), utc(wed, 23h + 30min)));  // 17:30 local
  EXPECT_TRUE(is_after_hours(chicago(), utc(wed, 3h)));           // 21:00 the day before
}

TEST(BusinessHours, BoundariesAtOpensAndClosesExactly) {
  const sys_days wed = 2026y / January / 14;
  const auto opens = utc(wed, 14h);   // 08:00 local
  const auto closes = utc(wed, 23h);  // 17:00 local
  EXPECT_TRUE(is_after_hours(chicago(), opens - 1s));
  EXPECT_FALSE(is_after_hours(chicago(), opens));
  EXPECT_FALSE(is_after_hours(chicago(), closes - 1ns));
  EXPECT_TRUE(is_after_hours(chicago(), closes));
}

TEST(BusinessHours, WeekendIsAfterHoursAllDay) {
  const sys_days sat = 2026y / January / 17;
  const sys_days sun = 2026y / January / 18;
  EXPECT_TRUE(is_after_hours(chicago(), utc(sat, 18h)));  // Saturday noon
  EXPECT_TRUE(is_after_hours(chicago(), utc(sun, 18h)));  // Sunday noon
  BusinessHours saturdays = chicago();
  saturdays.open_days[6] = true;
  EXPECT_FALSE(is_after_hours(saturdays, utc(sat, 18h)));
  EXPECT_TRUE(is_after_hours(saturdays, utc(sun, 18h)));
}

TEST(BusinessHours, HolidayIsAfterHoursAllDay) {
  BusinessHours hours = chicago();
  hours.holidays = {2026y / December / 25};                              // a Friday
  EXPECT_TRUE(is_after_hours(hours, utc(2026y / December / 25, 18h)));   // noon local
  EXPECT_FALSE(is_after_hours(hours, utc(2026y / December / 24, 18h)));  // the day before
  EXPECT_FALSE(is_after_hours(chicago(), utc(2026y / December / 25, 18h)));
}

TEST(BusinessHours, UsesTheLocalDateNotTheUtcDate) {
  // Auckland is UTC+13 in December: Friday 10:00 local is Thursday 21:00 UTC.
  BusinessHours hours;
  hours.time_zone = "Pacific/Auckland";
  const auto friday_morning = utc(2026y / December / 24, 21h);
  EXPECT_FALSE(is_after_hours(hours, friday_morning));
  hours.holidays = {2026y / December / 25};
  EXPECT_TRUE(is_after_hours(hours, friday_morning));
  hours.holidays = {2026y / December / 24};
  EXPECT_FALSE(is_after_hours(hours, friday_morning));

  // Monday 08:30 in Tokyo is Sunday 23:30 UTC.
  BusinessHours tokyo;
  tokyo.time_zone = "Asia/Tokyo";
  EXPECT_FALSE(is_after_hours(tokyo, utc(2026y / January / 18, 23h + 30min)));
}

TEST(BusinessHours, SpringForwardMovesOpeningAnHourEarlierInUtc) {
  // US DST starts Sunday 2026-03-08. Friday before: CST (UTC-6); Monday after: CDT (UTC-5).
  const sys_days fri = 2026y / March / 6;
  const sys_days mon = 2026y / March / 9;
  EXPECT_TRUE(is_after_hours(chicago(), utc(fri, 13h + 30min)));   // 07:30 CST
  EXPECT_FALSE(is_after_hours(chicago(), utc(fri, 14h)));          // 08:00 CST
  EXPECT_FALSE(is_after_hours(chicago(), utc(fri, 22h + 30min)));  // 16:30 CST
  EXPECT_FALSE(is_after_hours(chicago(), utc(mon, 13h)));          // 08:00 CDT
  EXPECT_TRUE(is_after_hours(chicago(), utc(mon, 12h + 59min)));   // 07:59 CDT
  EXPECT_TRUE(is_after_hours(chicago(), utc(mon, 22h)));           // 17:00 CDT
  EXPECT_FALSE(is_after_hours(chicago(), utc(mon, 21h + 59min)));  // 16:59 CDT
}

TEST(BusinessHours, FallBackMovesOpeningAnHourLaterInUtc) {
  // US DST ends Sunday 2026-11-01. Friday before: CDT (UTC-5); Monday after: CST (UTC-6).
  const sys_days fri = 2026y / October / 30;
  const sys_days mon = 2026y / November / 2;
  EXPECT_FALSE(is_after_hours(chicago(), utc(fri, 13h)));          // 08:00 CDT
  EXPECT_TRUE(is_after_hours(chicago(), utc(fri, 22h)));           // 17:00 CDT
  EXPECT_TRUE(is_after_hours(chicago(), utc(mon, 13h + 30min)));   // 07:30 CST
  EXPECT_FALSE(is_after_hours(chicago(), utc(mon, 14h)));          // 08:00 CST
  EXPECT_FALSE(is_after_hours(chicago(), utc(mon, 22h + 30min)));  // 16:30 CST
}

TEST(BusinessHours, CustomHoursAndMidnightClose) {
  BusinessHours hours = chicago();
  hours.opens = 7h + 30min;
  hours.closes = 24h;
  const sys_days wed = 2026y / January / 14;
  EXPECT_FALSE(is_after_hours(hours, utc(wed, 13h + 30min)));           // 07:30 local
  EXPECT_FALSE(is_after_hours(hours, utc(wed + days{1}, 5h + 59min)));  // 23:59 local Wednesday
}

// ---- open time: the escalation ladder's business-hours clock --------------

TEST(OpenTimeAfter, WithinOneOpenDay) {
  const sys_days wed = 2026y / January / 14;                                // Chicago is UTC-6
  EXPECT_EQ(open_time_after(chicago(), utc(wed, 16h), 2h), utc(wed, 18h));  // 10:00 + 2h = 12:00 local
  EXPECT_EQ(open_time_after(chicago(), utc(wed, 16h), 0s), utc(wed, 16h));
}

TEST(OpenTimeAfter, ClosedHoursDoNotCount) {
  const sys_days wed = 2026y / January / 14;
  // 16:00 local + 2h: one hour today, the second from 08:00 Thursday.
  EXPECT_EQ(open_time_after(chicago(), utc(wed, 22h), 2h), utc(wed + days{1}, 15h));
  // Received at 21:00 local (before opening): counts from 08:00 the next day.
  EXPECT_EQ(open_time_after(chicago(), utc(wed, 3h), 30min), utc(wed, 14h + 30min));
  // Exactly a whole day of open hours ends at closing, not the next morning.
  EXPECT_EQ(open_time_after(chicago(), utc(wed, 14h), 9h), utc(wed, 23h));
}

TEST(OpenTimeAfter, SkipsTheWeekendAndHolidays) {
  const sys_days fri = 2026y / January / 16;
  // Friday 16:30 local + 1h: 30 minutes on Friday, 30 on Monday from 08:00.
  EXPECT_EQ(open_time_after(chicago(), utc(fri, 22h + 30min), 1h), utc(fri + days{3}, 14h + 30min));
  BusinessHours hours = chicago();
  hours.holidays.push_back(2026y / January / 19);  // that Monday
  EXPECT_EQ(open_time_after(hours, utc(fri, 22h + 30min), 1h), utc(fri + days{4}, 14h + 30min));
}

TEST(OpenTimeAfter, FollowsTheZoneAcrossDaylightSavingTime) {
  // US DST starts Sunday 2026-03-08: Friday 16:00 CST (22:00 UTC) + 2h opens
  // Monday at 08:00 CDT, 13:00 UTC, and ends an hour later.
  const sys_days fri = 2026y / March / 6;
  EXPECT_EQ(open_time_after(chicago(), utc(fri, 22h), 2h), utc(fri + days{3}, 14h));
}

TEST(OpenTimeAfter, NeverOpenIsNullopt) {
  BusinessHours hours = chicago();
  hours.open_days.fill(false);
  EXPECT_EQ(open_time_after(hours, utc(2026y / January / 14, 16h), 1h), std::nullopt);
}

TEST(BusinessHours, UnknownZoneThrows) {
  BusinessHours hours = chicago();
  hours.time_zone = "America/Chicgo";
  EXPECT_THROW(is_after_hours(hours, system_clock::now()), std::runtime_error);
}

TEST(BusinessHours, TimeZoneExists) {
  EXPECT_TRUE(time_zone_exists("America/Chicago"));
  EXPECT_TRUE(time_zone_exists("UTC"));
  EXPECT_FALSE(time_zone_exists("America/Chicgo"));
  EXPECT_FALSE(time_zone_exists(""));
  EXPECT_FALSE(time_zone_exists("../../etc/passwd"));
}

}  // namespace
}  // namespace referrald
