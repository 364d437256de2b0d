// libFuzzer target: the body of POST /api/v1/referrals up to its plan.
// plan_intake() is the pipeline IntakeService::submit runs before it writes:
// JSON parsing (SAX, duplicate keys and depth seen while parsing), the JSON
// Schema (valijson), the semantic checks (dates, NPI check digit), the
// eligibility decision and the routes (policy and time: intake.hpp). The
// store is left out: nothing here writes.
//
// Besides "never crashes, never leaks, no UB", it checks what a client and
// the office rely on:
//   - a 400 message is one short line of printable ASCII (fixed words and a
//     byte offset: the body may hold a patient's name);
//   - a 422 lists each problem once, sorted by JSON Pointer, with a sentence;
//   - a decision carries reasons with the contract's codes, and a disease
//     only from the catalogue;
//   - the document the store would keep, submitted again, is valid and gets
//     the same decision (what the API returns later is what was decided).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "check.hpp"
#include "intake.hpp"
#include "intake/pipeline.hpp"
#include "rules/eligibility.hpp"

namespace referrald::fuzz {
namespace {

bool known_reason(const std::string& code) {
  for (const char* known : {reason::open_trial_available, reason::within_service_area, reason::no_open_trial,
                            reason::diagnosis_unrecognized, reason::referrer_not_qualified, reason::age_over_limit}) {
    if (code == known) return true;
  }
  return false;
}

void check_malformed(const MalformedInput& malformed) {
  // Built from fixed words and numbers only: the body may hold a patient's name.
  require(!malformed.message.empty() && malformed.message.size() < 200, "400 message empty or long");
  require(is_printable_ascii(malformed.message), "400 message has bytes beyond printable ASCII");
}

void check_invalid(const InvalidReferral& invalid) {
  require(!invalid.errors.empty(), "422 without an error");
  for (std::size_t i = 0; i < invalid.errors.size(); ++i) {
    const auto& e = invalid.errors[i];
    require(e.path.empty() || e.path.front() == '/', "422 path is not a JSON Pointer");
    require(!e.message.empty(), "422 error without a sentence");
    if (i > 0) require(invalid.errors[i - 1].path < e.path, "422 errors not sorted by path, or one path twice");
  }
}

void check_decision(const Eligibility& eligibility, const RuleSet& rules) {
  require(!eligibility.reasons.empty(), "a decision without a reason");
  for (const auto& r : eligibility.reasons) {
    require(known_reason(r.code), "a reason code outside the contract");
    require(!r.message.empty(), "a reason without a sentence");
  }
  if (eligibility.disease) {
    bool found = false;
    for (const auto& d : rules.diseases) found = found || d.id == *eligibility.disease;
    require(found, "a disease id that is not in the catalogue");
  }
  if (eligibility.decision == Decision::accepted) {
    require(eligibility.disease.has_value(), "accepted without a recognised disease");
  }
}

}  // namespace
}  // namespace referrald::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace referrald;
  using namespace referrald::fuzz;
  const auto& [validator, policy] = intake();
  const std::string_view body(reinterpret_cast<const char*>(data), size);

  const auto result = plan_intake(policy, validator, submission_of(std::string(body)));
  if (const auto* malformed = std::get_if<MalformedInput>(&result)) {
    check_malformed(*malformed);
    return 0;
  }
  if (const auto* invalid = std::get_if<InvalidReferral>(&result)) {
    check_invalid(*invalid);
    return 0;
  }
  const auto& plan = std::get<IntakePlan>(result);
  check_decision(plan.eligibility, policy.rules);
  require(plan.targets == std::vector<std::string>{"office"}, "the route every referral matches was not taken");

  // The stored form of an accepted body: valid again, decided the same.
  const auto again = plan_intake(policy, validator, submission_of(plan.referral.document));
  const auto* same = std::get_if<IntakePlan>(&again);
  require(same != nullptr, "the stored document is not a valid referral");
  require(same->eligibility.decision == plan.eligibility.decision &&
              same->eligibility.reasons == plan.eligibility.reasons &&
              same->eligibility.disease == plan.eligibility.disease,
          "the stored document decides differently from the body");
  return 0;
}
