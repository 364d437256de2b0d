// The one seam between the dispatcher and the channels. An adapter is handed
// a delivery (a value) and returns an outcome; it never touches the store, the
// HTTP layer or another adapter. Outcomes are classified once, here.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/outcome.hpp"
#include "model/purpose.hpp"
#include "model/referral.hpp"
#include "office/status.hpp"

namespace referrald {

// Step N of the escalation ladder (purpose escalation-N).
struct EscalationNotice {
  int step = 0;
  std::chrono::seconds after{0};   // the step's delay as configured (open hours only, if its ladder says so)
  std::chrono::seconds waited{0};  // since receipt, by the wall clock, when this attempt was made
};

// The referrer's notice of a status change (purpose notice-N).
struct StatusNotice {
  OfficeStatus status = OfficeStatus::acknowledged;  // the new status
  std::optional<std::string> note;                   // the office's note (PHI: never logged)
};

// What a channel needs to send one notification about one referral.
struct Delivery {
  std::int64_t id = 0;
  // Stable per (referral, target, purpose): Message-ID, job tags (delivery_identity).
  std::string identity;
  std::string referral_id;
  std::string target;
  int attempt = 1;  // 1 for the first try
  std::chrono::system_clock::time_point received_at;
  Decision decision = Decision::review;
  Urgency urgency = Urgency::routine;
  std::vector<Reason> reasons;
  std::string document;  // the referral JSON (PHI: never logged)

  DeliveryPurpose purpose;                     // intake, escalation-N, notice-N
  std::optional<std::string> duplicate_of;     // a possible duplicate of this open referral
  std::optional<EscalationNotice> escalation;  // set for escalation-N
  std::optional<StatusNotice> notice;          // set for notice-N
  // For a target with recipient = "referrer": the referrer's email address
  // or fax number from the referral, which replaces the target's own.
  std::optional<std::string> recipient;
  // The files that came with the referral, opened, in order: for email and
  // fax deliveries of intake and escalation-N (DispatchTarget::attachments);
  // empty for every other delivery. PHI: never logged.
  std::vector<Attachment> attachments;
  // A one-tap acknowledgement link (<link_origin>/ack/<token>) for email and
  // fax deliveries of intake and escalation-N; empty otherwise. Never on a page.
  std::string ack_link;
};

using OutcomeClass = AttemptOutcome;

struct Outcome {
  OutcomeClass kind = OutcomeClass::transient;
  std::optional<std::string> code;  // protocol reply code, e.g. "451"
  std::string message;              // for operators; no PHI
  std::optional<std::string> external_id;

  static Outcome delivered(std::string message, std::optional<std::string> external_id = {}) {
    return {OutcomeClass::delivered, std::nullopt, std::move(message), std::move(external_id)};
  }
  static Outcome transient(std::string message, std::optional<std::string> code = {}) {
    return {OutcomeClass::transient, std::move(code), std::move(message), std::nullopt};
  }
  static Outcome permanent(std::string message, std::optional<std::string> code = {}) {
    return {OutcomeClass::permanent, std::move(code), std::move(message), std::nullopt};
  }
  static Outcome misconfigured(std::string message, std::optional<std::string> code = {}) {
    return {OutcomeClass::misconfigured, std::move(code), std::move(message), std::nullopt};
  }
};

class Adapter {
 public:
  virtual ~Adapter() = default;
  // Runs on the dispatcher's executor; must not block it (offload blocking
  // work) and must finish within the target's timeout or report transient.
  virtual boost::asio::awaitable<Outcome> send(const Delivery& delivery) = 0;
};

}  // namespace referrald
