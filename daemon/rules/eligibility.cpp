#include "rules/eligibility.hpp"

#include <algorithm>
#include <string>

#include "rules/matching.hpp"
#include "util/dates.hpp"
#include "util/strings.hpp"

namespace referrald {
namespace {

// Sentences name the disease and the figures, never the patient: they travel
// in API answers, emails and the audit trail.

bool is_qualified(const RuleSet& rules, const std::string& credential) {
  return std::any_of(rules.qualified_credentials.begin(), rules.qualified_credentials.end(),
                     [&](const std::string& q) { return equal_ignoring_case(q, credential); });
}

bool within_service_area(const RuleSet& rules, const std::optional<std::string>& postal_code) {
  if (!postal_code) return false;
  return std::any_of(rules.service_area_postal_prefixes.begin(), rules.service_area_postal_prefixes.end(),
                     [&](const std::string& prefix) {
                       return !prefix.empty() && postal_code->compare(0, prefix.size(), prefix) == 0;
                     });
}

Reason not_qualified(const RuleSet& rules, const std::string& credential) {
  return {reason::referrer_not_qualified, "The referrer's credential (" + credential +
                                              ") is not one of those the hospital accepts referrals from (" +
                                              join(rules.qualified_credentials) + ")."};
}

Reason over_disease_limit(const Disease& disease, int limit, int age) {
  return {reason::age_over_limit, disease.name + " is accepted up to age " + std::to_string(limit) +
                                      "; the patient is " + std::to_string(age) + "."};
}

Reason over_general_limit(int limit, int age) {
  return {reason::age_over_limit,
          "The patient is " + std::to_string(age) + ", over the general age limit of " + std::to_string(limit) +
              "; some diseases accept older patients, so the referral office will review this referral."};
}

Reason unrecognized() {
  return {reason::diagnosis_unrecognized,
          "The diagnosis does not match any disease in the hospital's catalogue; the referral office "
          "will review this referral."};
}

Reason open_trials(const Disease& disease) {
  const std::string count = std::to_string(disease.open_trials);
  return {reason::open_trial_available,
          disease.name + " has " + count +
              (disease.open_trials == 1 ? " open clinical trial" : " open clinical trials") +
              " the patient may be able to enroll in."};
}

Reason service_area(const Disease& disease) {
  return {reason::within_service_area,
          disease.name +
              " has no open clinical trials at this time, but the patient lives within the hospital's "
              "service area."};
}

Reason no_trial(const Disease& disease) {
  return {reason::no_open_trial, disease.name +
                                     " has no open clinical trials at this time; the referral office will "
                                     "review this referral."};
}

}  // namespace

Eligibility decide(const RuleSet& rules, const Referral& referral, Date today) {
  Eligibility out;
  const Disease* disease = match_disease(rules, referral.diagnosis);
  if (disease != nullptr) out.disease = disease->id;
  const int age = age_in_years(referral.patient.birth_date, today);

  // Declining reasons are all reported, so the office sees every one at once.
  if (!is_qualified(rules, referral.referrer.credential)) {
    out.reasons.push_back(not_qualified(rules, referral.referrer.credential));
  }
  if (disease != nullptr) {
    const int limit = disease->max_age.value_or(rules.default_max_age);
    if (age > limit) out.reasons.push_back(over_disease_limit(*disease, limit, age));
  }
  if (!out.reasons.empty()) {
    out.decision = Decision::declined;
    return out;
  }

  if (disease == nullptr) {
    // Without a disease we cannot know its age limit, so an older patient is
    // not declined: a person decides.
    out.decision = Decision::review;
    out.reasons.push_back(unrecognized());
    if (age > rules.default_max_age) out.reasons.push_back(over_general_limit(rules.default_max_age, age));
  } else if (disease->open_trials > 0) {
    out.decision = Decision::accepted;
    out.reasons.push_back(open_trials(*disease));
  } else if (within_service_area(rules, referral.patient.postal_code)) {
    out.decision = Decision::accepted;
    out.reasons.push_back(service_area(*disease));
  } else {
    out.decision = Decision::review;
    out.reasons.push_back(no_trial(*disease));
  }
  return out;
}

}  // namespace referrald
