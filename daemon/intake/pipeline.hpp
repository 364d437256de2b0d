// The intake pipeline: what a submission becomes before anything is stored.
// Validate, decide, tell business hours from after hours, route: one pure
// function, so that the daemon (IntakeService::submit, which then stores the
// plan), `referralctl check` and the JSON intake fuzz target take the same
// steps in the same order. Knows nothing of HTTP or of the store.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "attachments/inspect.hpp"
#include "intake/identity.hpp"
#include "intake/validator.hpp"
#include "model/referral.hpp"
#include "office/escalation.hpp"
#include "routing/business_hours.hpp"
#include "routing/routing.hpp"
#include "rules/rules.hpp"
#include "util/sealed_spool.hpp"

namespace referrald {

// What decides and routes; the daemon replaces it as a whole on reload.
struct IntakePolicy {
  RuleSet rules;
  std::vector<Route> routes;
  BusinessHours hours;
  std::vector<EscalationLadder> escalations;        // [[escalation]]
  std::shared_ptr<const IdentityKey> identity_key;  // null: no duplicate check
  std::chrono::milliseconds duplicate_window{0};    // [intake] duplicate_window
  AttachmentLimits attachment_limits;               // [intake] max_attachments, max_attachment_bytes, ...
};

// What arrived, on whichever channel.
struct Submission {
  std::string channel;  // "api" | "form": the way it came in
  std::string client;   // who sent it: the API key's fingerprint, or the form's client id
  std::string body;     // the referral as JSON text
  // Or the JSON text kept on disk while it came in (a large intake body,
  // util/sealed_spool.hpp); `body` is empty then.
  std::shared_ptr<const SealedSpool> body_file;
  // Where the files of a body on disk are decoded to, each into a spool of
  // its own as the body is read (IntakeService sets it); empty: in memory.
  std::filesystem::path spool_directory;
  // The attachments' files when they come beside the JSON (the web form's,
  // in the order of its "attachments", whose "data" then only stands in).
  std::vector<Attachment> files;
  // A body larger than this, in memory or spooled, must carry files (the
  // API's max_body_bytes: every other field's length is bounded by the
  // schema); JSON without a non-empty "attachments" is BodyTooLarge, decided
  // by the one parse of the body, so it is not read an extra time to find out.
  std::size_t plain_body_limit = static_cast<std::size_t>(-1);
  std::optional<std::string> idempotency_key;
  std::chrono::system_clock::time_point received_at{};  // sets "today" (the dates' bound) and after hours
};

// A valid submission's plan: what the store writes in one transaction.
struct IntakePlan {
  Referral referral;                           // validated; referral.document is the form the store keeps;
                                               // its attachments inspected (type, pages, SHA-256)
  Eligibility eligibility;                     // the decision and its reasons
  bool after_hours = false;                    // at received_at, by the office hours
  std::vector<std::string> targets;            // one delivery each: the targets of the routes that match
  std::vector<PlannedEscalation> escalations;  // the ladder's steps for this urgency, from received_at
  std::optional<std::string> identity_hash;    // with policy.identity_key: for possible duplicates
};

// JSON without files in a body over Submission::plain_body_limit (HTTP 413).
struct BodyTooLarge {
  std::size_t limit = 0;
};

// The plan, or why there is none: the body is not JSON that can be read
// (MalformedInput, HTTP 400), not a valid referral (InvalidReferral, 422), or
// larger than a referral without files may be (BodyTooLarge, 413).
using IntakeResult = std::variant<IntakePlan, MalformedInput, InvalidReferral, BodyTooLarge>;

IntakeResult plan_intake(const IntakePolicy& policy, const ReferralValidator& validator, const Submission& submission);

}  // namespace referrald
