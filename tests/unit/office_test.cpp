#include <gtest/gtest.h>

#include "office/escalation.hpp"
#include "office/status.hpp"

namespace referrald {
namespace {

using namespace std::chrono;
using namespace std::chrono_literals;
using enum OfficeStatus;

// ---- the office's status ---------------------------------------------------

TEST(OfficeStatus, NamesRoundTrip) {
  for (const OfficeStatus s : all_office_statuses()) EXPECT_EQ(parse_office_status(to_string(s)), s);
  EXPECT_EQ(to_string(needs_info), "needs-info");
  EXPECT_EQ(parse_office_status("needs_info"), std::nullopt);
  EXPECT_EQ(parse_office_status("Accepted"), std::nullopt);
  EXPECT_EQ(parse_office_status(""), std::nullopt);
}

TEST(OfficeStatus, TheChangesTheOfficeMayMake) {
  EXPECT_EQ(allowed_changes(received), (std::vector{acknowledged, closed}));
  EXPECT_EQ(allowed_changes(acknowledged), (std::vector{accepted, declined, needs_info, closed}));
  EXPECT_EQ(allowed_changes(needs_info), (std::vector{acknowledged, closed}));
  EXPECT_EQ(allowed_changes(accepted), (std::vector{closed}));
  EXPECT_EQ(allowed_changes(declined), (std::vector{closed}));
  EXPECT_TRUE(allowed_changes(closed).empty());
}

TEST(OfficeStatus, RefuseChangeAgreesWithAllowedChanges) {
  for (const OfficeStatus from : all_office_statuses()) {
    const auto allowed = allowed_changes(from);
    for (const OfficeStatus to : all_office_statuses()) {
      const bool is_allowed = std::find(allowed.begin(), allowed.end(), to) != allowed.end();
      EXPECT_EQ(refuse_change(from, to).has_value(), !is_allowed) << to_string(from) << " -> " << to_string(to);
    }
  }
}

TEST(OfficeStatus, ARefusalSaysWhatIsAllowed) {
  EXPECT_EQ(refuse_change(received, accepted),
            "status is received: it can change to acknowledged or closed, not to accepted");
  EXPECT_EQ(refuse_change(acknowledged, received),
            "status is acknowledged: it can change to accepted, declined, needs-info or closed, not to received");
  EXPECT_EQ(refuse_change(accepted, declined), "status is accepted: it can change to closed, not to declined");
  EXPECT_EQ(refuse_change(closed, acknowledged), "status is closed: it cannot change any more");
  EXPECT_EQ(refuse_change(acknowledged, acknowledged), "status is already acknowledged");
}

TEST(OfficeStatus, AcknowledgedIsEveryStatusButReceived) {
  EXPECT_FALSE(is_acknowledged(received));
  for (const OfficeStatus s : {acknowledged, accepted, declined, needs_info, closed}) EXPECT_TRUE(is_acknowledged(s));
}

// ---- the escalation ladder -------------------------------------------------

const system_clock::time_point wednesday_10am_chicago = sys_days{2026y / January / 14} + 16h;

std::vector<EscalationLadder> ladders() {
  return {
      EscalationLadder{
          {Urgency::emergent}, false, {{45min, {"director-pager", "office-email"}}, {15min, {"backup-pager"}}}},
      EscalationLadder{{Urgency::urgent}, true, {{2h, {"office-pager"}}}},
  };
}

TEST(Escalation, PlansEveryStepOfTheLaddersThatCoverTheUrgency) {
  const auto plan = plan_escalation(ladders(), Urgency::emergent, wednesday_10am_chicago, BusinessHours{});
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].step, 1);
  EXPECT_EQ(plan[0].due_at, wednesday_10am_chicago + 15min);
  EXPECT_EQ(plan[0].after, 15min);
  EXPECT_EQ(plan[0].notify, (std::vector<std::string>{"backup-pager"}));
  EXPECT_EQ(plan[1].step, 2);
  EXPECT_EQ(plan[1].due_at, wednesday_10am_chicago + 45min);
  EXPECT_EQ(plan[1].notify, (std::vector<std::string>{"director-pager", "office-email"}));
  EXPECT_TRUE(plan_escalation(ladders(), Urgency::routine, wednesday_10am_chicago, BusinessHours{}).empty());
}

TEST(Escalation, BusinessHoursLaddersCountOnlyOpenTime) {
  // Urgent at 16:00 local on Wednesday: one open hour left, the second hour
  // runs from 08:00 on Thursday.
  const auto received = sys_days{2026y / January / 14} + 22h;
  const auto plan = plan_escalation(ladders(), Urgency::urgent, received, BusinessHours{});
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].due_at, sys_days{2026y / January / 15} + 15h);
  EXPECT_EQ(plan[0].after, 2h);
}

TEST(Escalation, ALadderWithoutUrgenciesCoversEveryReferral) {
  const std::vector<EscalationLadder> every{EscalationLadder{{}, false, {{1h, {"office-email"}}}}};
  for (const auto u : {Urgency::routine, Urgency::urgent, Urgency::emergent}) {
    EXPECT_EQ(plan_escalation(every, u, wednesday_10am_chicago, BusinessHours{}).size(), 1u);
  }
}

TEST(Escalation, DescribesTheWait) {
  EXPECT_EQ(describe_wait(15min), "15 minutes");
  EXPECT_EQ(describe_wait(1min), "1 minute");
  EXPECT_EQ(describe_wait(30s), "30 seconds");
  EXPECT_EQ(describe_wait(2h), "2 hours");
  EXPECT_EQ(describe_wait(1h + 30min), "1 hour 30 minutes");
  EXPECT_EQ(describe_wait(days{3}), "3 days");
  EXPECT_EQ(describe_wait(days{1} + 1h + 5min), "1 day 1 hour");
}

}  // namespace
}  // namespace referrald
