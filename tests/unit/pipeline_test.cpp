// The intake pipeline (plan_intake): one submission in, its plan or the
// reason there is none out, exactly as the daemon, `referralctl check` and
// the fuzz target see it. Real schema, real example rules, no store.
#include "intake/pipeline.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include "rules/eligibility.hpp"
#include "util/dates.hpp"

namespace referrald {
namespace {

using namespace std::chrono;
using namespace std::chrono_literals;

std::string read_text(const std::string& relative) {
  std::ifstream in(std::string(REFERRALD_SOURCE_DIR) + "/" + relative, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The office of config/referrald.example.toml's shape: America/Chicago,
// Monday to Friday, 08:00 to 17:00; routine business-hours referrals by
// email, anything urgent to the pager, everything after hours to the fax.
IntakePolicy policy() {
  IntakePolicy p;
  p.rules = load_rules(std::string(REFERRALD_SOURCE_DIR) + "/config/rules.example.toml");
  p.routes = {Route{{}, {Urgency::routine}, false, {"office-email"}},
              Route{{}, {Urgency::urgent, Urgency::emergent}, {}, {"on-call-pager"}},
              Route{{}, {}, true, {"night-fax"}}};
  return p;
}

const ReferralValidator& validator() {
  static const ReferralValidator v(std::string(REFERRALD_SOURCE_DIR) + "/schemas/referral.v1.schema.json");
  return v;
}

// Tuesday 2026-12-01: 10:00 in Chicago is 16:00 UTC, 03:00 is 09:00 UTC.
const auto tuesday_10am_chicago = sys_days{2026y / December / 1} + 16h;
const auto tuesday_3am_chicago = sys_days{2026y / December / 1} + 9h;

Submission submission(std::string body, system_clock::time_point at) {
  Submission s;
  s.channel = "api";
  s.client = "key:1a2b3c4d";
  s.body = std::move(body);
  s.received_at = at;
  return s;
}

// The body through the pipeline under policy(), received `at`.
IntakeResult plan_of(std::string body, system_clock::time_point at) {
  return plan_intake(policy(), validator(), submission(std::move(body), at));
}

TEST(IntakePipeline, AValidReferralIsDecidedAndRoutedForTheHourItArrived) {
  const auto by_day = plan_of(read_text("tests/data/asps-routine.json"), tuesday_10am_chicago);
  ASSERT_TRUE(std::holds_alternative<IntakePlan>(by_day));
  const auto& plan = std::get<IntakePlan>(by_day);
  EXPECT_EQ(plan.referral.urgency, Urgency::routine);
  EXPECT_EQ(plan.eligibility.disease, "asps");
  const auto decided = decide(policy().rules, plan.referral, Date{2026y / December / 1});
  EXPECT_EQ(plan.eligibility.decision, decided.decision);
  EXPECT_EQ(plan.eligibility.reasons, decided.reasons);
  EXPECT_FALSE(plan.after_hours);
  EXPECT_EQ(plan.targets, std::vector<std::string>{"office-email"});

  const auto by_night = plan_of(read_text("tests/data/asps-routine.json"), tuesday_3am_chicago);
  ASSERT_TRUE(std::holds_alternative<IntakePlan>(by_night));
  EXPECT_TRUE(std::get<IntakePlan>(by_night).after_hours);
  EXPECT_EQ(std::get<IntakePlan>(by_night).targets, std::vector<std::string>{"night-fax"});
}

TEST(IntakePipeline, EveryRouteThatMatchesAddsItsTargetsOnce) {
  const auto result = plan_of(read_text("tests/data/asps-urgent.json"), tuesday_3am_chicago);
  ASSERT_TRUE(std::holds_alternative<IntakePlan>(result));
  EXPECT_EQ(std::get<IntakePlan>(result).targets, (std::vector<std::string>{"on-call-pager", "night-fax"}));
}

TEST(IntakePipeline, TheStoredDocumentIsPlannedTheSameWayAgain) {
  const auto first = plan_of(read_text("tests/data/asps-routine.json"), tuesday_10am_chicago);
  ASSERT_TRUE(std::holds_alternative<IntakePlan>(first));
  const auto& plan = std::get<IntakePlan>(first);
  const auto again = plan_of(plan.referral.document, tuesday_10am_chicago);
  ASSERT_TRUE(std::holds_alternative<IntakePlan>(again));
  EXPECT_EQ(std::get<IntakePlan>(again).eligibility.decision, plan.eligibility.decision);
  EXPECT_EQ(std::get<IntakePlan>(again).eligibility.reasons, plan.eligibility.reasons);
  EXPECT_EQ(std::get<IntakePlan>(again).eligibility.disease, plan.eligibility.disease);
  EXPECT_EQ(std::get<IntakePlan>(again).targets, plan.targets);
}

TEST(IntakePipeline, ABodyThatIsNotJsonIsMalformed) {
  const auto result = plan_of("{\"patient\": ", tuesday_10am_chicago);
  ASSERT_TRUE(std::holds_alternative<MalformedInput>(result));
  EXPECT_FALSE(std::get<MalformedInput>(result).message.empty());
}

// A body over plain_body_limit (max_body_bytes) is a referral with files or
// nothing: in memory as on disk, the one parse decides, whatever the text
// says elsewhere (a note that mentions "attachments" is not a file).
TEST(IntakePipeline, ABodyOverThePlainLimitWithoutFilesIsTooLarge) {
  auto referral = nlohmann::json::parse(read_text("tests/data/asps-routine.json"));
  referral["notes"] = "the \"attachments\" follow by fax";
  auto large = submission(referral.dump(2), tuesday_10am_chicago);
  large.plain_body_limit = 512;
  const auto result = plan_intake(policy(), validator(), large);
  ASSERT_TRUE(std::holds_alternative<BodyTooLarge>(result));
  EXPECT_EQ(std::get<BodyTooLarge>(result).limit, 512U);
  // At or under the limit, the same body is planned.
  large.plain_body_limit = large.body.size();
  EXPECT_TRUE(std::holds_alternative<IntakePlan>(plan_intake(policy(), validator(), large)));
}

TEST(IntakePipeline, AnInvalidReferralNamesEachFieldAndIsNotPlanned) {
  const auto result = plan_of(read_text("tests/data/invalid-npi.json"), tuesday_10am_chicago);
  ASSERT_TRUE(std::holds_alternative<InvalidReferral>(result));
  const auto& errors = std::get<InvalidReferral>(result).errors;
  ASSERT_FALSE(errors.empty());
  EXPECT_EQ(errors.front().path, "/referrer/npi");
}

// "Today" is the day the submission was received: the sample's diagnosis
// (2026-10-02) lies in the future for a referral received the day before.
TEST(IntakePipeline, DatesAreBoundedByTheDayOfReceipt) {
  const auto result = plan_of(read_text("tests/data/asps-routine.json"), sys_days{2026y / October / 1} + 16h);
  ASSERT_TRUE(std::holds_alternative<InvalidReferral>(result));
  const auto& errors = std::get<InvalidReferral>(result).errors;
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].path, "/diagnosis/diagnosed_on");
}

}  // namespace
}  // namespace referrald
