#include "intake/submission.hpp"

#include <nlohmann/json.hpp>

#include "rules/eligibility.hpp"
#include "store/store.hpp"
#include "util/crypto.hpp"
#include "util/dates.hpp"
#include "util/ids.hpp"

namespace referrald {

std::string accepted_response(const std::string& id, const Eligibility& eligibility) {
  nlohmann::ordered_json body;
  body["id"] = id;
  body["decision"] = std::string(to_string(eligibility.decision));
  body["reasons"] = nlohmann::ordered_json::array();
  for (const auto& r : eligibility.reasons) {
    body["reasons"].push_back({{"code", r.code}, {"message", r.message}});
  }
  body["status_url"] = "/api/v1/referrals/" + id;
  return body.dump();
}

IntakeService::IntakeService(const ReferralValidator& validator, store::Writer& writer, const Clock& clock,
                             std::shared_ptr<const IntakePolicy> policy)
    : validator_(validator), writer_(writer), clock_(clock), policy_(std::move(policy)) {}

void IntakeService::set_policy(std::shared_ptr<const IntakePolicy> policy) {
  std::lock_guard lock(policy_mutex_);
  policy_ = std::move(policy);
}

std::shared_ptr<const IntakePolicy> IntakeService::policy() const {
  std::lock_guard lock(policy_mutex_);
  return policy_;
}

std::variant<Eligibility, MalformedInput, InvalidReferral> check_submission(const ReferralValidator& validator,
                                                                            const RuleSet& rules,
                                                                            std::string_view body, Date today) {
  auto result = validator.validate(body, today);
  if (auto* malformed = std::get_if<MalformedInput>(&result)) return std::move(*malformed);
  if (auto* invalid = std::get_if<InvalidReferral>(&result)) return std::move(*invalid);
  return decide(rules, std::get<Referral>(result), today);
}

void IntakeService::submit(SubmissionRequest request, Completion done) {
  using Kind = SubmissionOutcome::Kind;
  const auto now = clock_.now();
  auto result = validator_.validate(request.body, utc_date(now));
  if (auto* malformed = std::get_if<MalformedInput>(&result)) {
    SubmissionOutcome out;
    out.kind = Kind::malformed;
    out.message = malformed->message;
    done(std::move(out));
    return;
  }
  if (auto* invalid = std::get_if<InvalidReferral>(&result)) {
    SubmissionOutcome out;
    out.kind = Kind::invalid;
    out.errors = std::move(invalid->errors);
    done(std::move(out));
    return;
  }
  auto& referral = std::get<Referral>(result);
  const auto p = policy();
  auto eligibility = decide(p->rules, referral, utc_date(now));
  const bool after_hours = is_after_hours(p->hours, now);

  auto row = std::make_shared<store::NewReferral>();
  row->id = new_referral_id(now);
  row->received_at = now;
  row->decision = eligibility.decision;
  row->urgency = referral.urgency;
  row->reasons = eligibility.reasons;
  row->disease = eligibility.disease;
  row->channel = request.channel;
  row->client = request.client;
  row->idempotency_key = request.idempotency_key;
  row->request_hash = sha256_hex(request.body);
  row->document = std::move(referral.document);
  row->response = accepted_response(row->id, eligibility);
  row->targets = route_targets(p->routes, {eligibility.decision, referral.urgency, after_hours});

  auto inserted = std::make_shared<store::InsertResult>();
  writer_.submit(
      [row, inserted](store::Database& db) { *inserted = store::insert_referral(db, *row); },
      [row, inserted, eligibility = std::move(eligibility), urgency = referral.urgency,
       planned = deliveries_planned_, done = std::move(done)](store::JobResult job) mutable {
        SubmissionOutcome out;
        switch (job.status) {
          case store::JobStatus::committed:
            out.id = inserted->id;
            switch (inserted->status) {
              case store::InsertStatus::inserted:
                if (planned && !row->targets.empty()) planned();
                out.kind = Kind::accepted;
                out.response = row->response;
                out.eligibility = std::move(eligibility);
                out.urgency = urgency;
                break;
              case store::InsertStatus::replayed:
                out.kind = Kind::replayed;
                out.response = inserted->response;
                break;
              case store::InsertStatus::conflict:
                out.kind = Kind::conflict;
                out.message = "this Idempotency-Key was already used with a different request body";
                break;
            }
            break;
          case store::JobStatus::overloaded:
            out.kind = Kind::overloaded;
            out.message = "too many submissions are waiting to be stored; try again shortly";
            break;
          case store::JobStatus::failed:
          case store::JobStatus::unavailable:
          case store::JobStatus::stopped:
            out.kind = Kind::unavailable;
            out.message = "the referral could not be stored; nothing was saved, please try again";
            break;
        }
        done(std::move(out));
      });
}

}  // namespace referrald
