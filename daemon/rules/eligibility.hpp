// The eligibility decision: a pure function of the referral, the rules and today.
#pragma once

#include "model/referral.hpp"
#include "rules/rules.hpp"

namespace referrald {

// Reason codes (fixed by the operator contract; more may be added).
namespace reason {
inline constexpr const char* open_trial_available = "OPEN_TRIAL_AVAILABLE";
inline constexpr const char* within_service_area = "WITHIN_SERVICE_AREA";
inline constexpr const char* no_open_trial = "NO_OPEN_TRIAL";
inline constexpr const char* diagnosis_unrecognized = "DIAGNOSIS_UNRECOGNIZED";
inline constexpr const char* referrer_not_qualified = "REFERRER_NOT_QUALIFIED";
inline constexpr const char* age_over_limit = "AGE_OVER_LIMIT";
}  // namespace reason

Eligibility decide(const RuleSet& rules, const Referral& referral, Date today);

}  // namespace referrald
