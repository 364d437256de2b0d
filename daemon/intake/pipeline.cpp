#include "intake/pipeline.hpp"

#include "rules/eligibility.hpp"
#include "util/dates.hpp"

namespace referrald {

IntakeResult plan_intake(const IntakePolicy& policy, const ReferralValidator& validator, const Submission& submission) {
  const Date today = utc_date(submission.received_at);
  const std::size_t size = submission.body_file ? submission.body_file->size() : submission.body.size();
  const bool files_required = size > submission.plain_body_limit;
  auto result = [&] {
    if (!submission.body_file) return validator.validate(submission.body, today, submission.files, files_required);
    return validator.validate(*submission.body_file, today, files_required, submission.spool_directory);
  }();
  if (std::holds_alternative<FilesRequired>(result)) return BodyTooLarge{submission.plain_body_limit};
  if (auto* malformed = std::get_if<MalformedInput>(&result)) return std::move(*malformed);
  if (auto* invalid = std::get_if<InvalidReferral>(&result)) return std::move(*invalid);
  IntakePlan plan;
  plan.referral = std::move(std::get<Referral>(result));
  // Files beside the JSON (the form's): the parse kept only their places;
  // each keeps its bytes where they wait (a spool: sealed once, stored from it).
  for (std::size_t i = 0; i < submission.files.size() && i < plan.referral.attachments.size(); ++i) {
    plan.referral.attachments[i].data = submission.files[i].data;
    plan.referral.attachments[i].spooled = submission.files[i].spooled;
  }
  // The files last: only a referral that is otherwise valid has them opened.
  if (auto errors = inspect_attachments(policy.attachment_limits, plan.referral.attachments); !errors.empty()) {
    return InvalidReferral{std::move(errors)};
  }
  plan.eligibility = decide(policy.rules, plan.referral, today);
  plan.after_hours = is_after_hours(policy.hours, submission.received_at);
  plan.targets = route_targets(policy.routes, {plan.eligibility.decision, plan.referral.urgency, plan.after_hours});
  plan.escalations = plan_escalation(policy.escalations, plan.referral.urgency, submission.received_at, policy.hours);
  if (policy.identity_key) plan.identity_hash = policy.identity_key->hash(plan.referral.patient);
  return plan;
}

}  // namespace referrald
