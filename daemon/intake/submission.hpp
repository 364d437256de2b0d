// Intake: a submission becomes a decision, planned deliveries and one durable
// write. Shared by the JSON API and the web form; knows nothing of HTTP.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <variant>
#include <string>
#include <vector>

#include "intake/validator.hpp"
#include "model/referral.hpp"
#include "routing/business_hours.hpp"
#include "routing/routing.hpp"
#include "rules/rules.hpp"
#include "store/writer.hpp"
#include "util/clock.hpp"

namespace referrald {

// What decides and routes; replaced as a whole on reload.
struct IntakePolicy {
  RuleSet rules;
  std::vector<Route> routes;
  BusinessHours hours;
};

struct SubmissionRequest {
  std::string body;                            // JSON text
  std::string channel;                         // "api" | "form"
  std::string client;                          // API key fingerprint, or the form's client id
  std::optional<std::string> idempotency_key;
};

struct SubmissionOutcome {
  enum class Kind {
    accepted,     // 202: stored now
    replayed,     // 202: the same Idempotency-Key and body were stored before
    malformed,    // 400
    invalid,      // 422
    conflict,     // 409: Idempotency-Key reused with a different body
    unavailable,  // 503: storage cannot commit; nothing stored
    overloaded,   // 503: too many writes queued; nothing stored
  };
  Kind kind = Kind::unavailable;
  std::string id;
  std::string response;                    // the 202 JSON body (accepted, replayed)
  std::optional<Eligibility> eligibility;  // accepted
  std::optional<Urgency> urgency;          // accepted
  std::vector<FieldError> errors;          // invalid
  std::string message;                     // malformed, unavailable, conflict: a sentence, no PHI
};

class IntakeService {
 public:
  using Completion = std::function<void(SubmissionOutcome)>;

  IntakeService(const ReferralValidator& validator, store::Writer& writer, const Clock& clock,
                std::shared_ptr<const IntakePolicy> policy);

  // Validates and decides on the caller's thread (pure, fast), then queues the
  // write; `done` runs on the writer thread once the outcome is final, after
  // the commit for accepted referrals.
  void submit(SubmissionRequest request, Completion done);

  // Called (on the writer thread, after the commit) when a newly stored
  // referral planned deliveries: the dispatcher has work. Set before use.
  void on_deliveries_planned(std::function<void()> hook) { deliveries_planned_ = std::move(hook); }

  void set_policy(std::shared_ptr<const IntakePolicy> policy);
  std::shared_ptr<const IntakePolicy> policy() const;

 private:
  const ReferralValidator& validator_;
  store::Writer& writer_;
  const Clock& clock_;
  mutable std::mutex policy_mutex_;
  std::shared_ptr<const IntakePolicy> policy_;
  std::function<void()> deliveries_planned_;
};

// Validation, then the decision on valid ones; nothing is stored. The steps
// submit() takes before it writes, for callers without a writer: the JSON
// intake fuzz target (fuzz/intake_json.cpp).
std::variant<Eligibility, MalformedInput, InvalidReferral> check_submission(const ReferralValidator& validator,
                                                                            const RuleSet& rules,
                                                                            std::string_view body, Date today);

// The 202 body: {"id", "decision", "reasons":[{"code","message"}], "status_url"}.
std::string accepted_response(const std::string& id, const Eligibility& eligibility);

}  // namespace referrald
