#include "intake/submission.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "store/store.hpp"
#include "util/crypto.hpp"
#include "util/ids.hpp"
#include "util/sealed_spool.hpp"

namespace referrald {

namespace {

// The channel's answer with what referrald received of each file, so the
// sender can check it: type, size, pages and SHA-256, never the title (the
// answer is stored in the clear, store/payload.hpp).
std::string with_attachments(std::string reply, const std::vector<Attachment>& attachments) {
  if (attachments.empty()) return reply;
  auto body = nlohmann::ordered_json::parse(reply, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object()) return reply;
  auto& list = body["attachments"] = nlohmann::ordered_json::array();
  int position = 0;
  for (const Attachment& a : attachments) {
    list.push_back({{"position", ++position},
                    {"content_type", a.content_type},
                    {"bytes", a.size()},
                    {"pages", a.pages},
                    {"sha256", a.sha256}});
  }
  return body.dump();
}

}  // namespace

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

void IntakeService::submit(Submission submission, const AcceptedReply& reply, Completion done) {
  const auto started = std::chrono::steady_clock::now();
  submission.received_at = clock_.now();
  if (submission.spool_directory.empty()) submission.spool_directory = spool_directory_;
  const bool files = !submission.files.empty() || is_file_work(submission.body_file != nullptr, submission.body.size());
  if (files && file_work_runner_) {
    file_work_runner_([this, submission = std::move(submission), reply, done = std::move(done), started]() mutable {
      plan_and_queue(std::move(submission), reply, std::move(done), started);
    });
    return;
  }
  plan_and_queue(std::move(submission), reply, std::move(done), started);
}

void IntakeService::plan_and_queue(Submission submission, const AcceptedReply& reply, Completion done,
                                   std::chrono::steady_clock::time_point started) {
  using Kind = SubmissionOutcome::Kind;
  std::optional<IntakeResult> planned;
  try {
    planned = plan_intake(*policy(), validator_, submission);
  } catch (const std::exception& e) {
    // A spool that no longer opens (its file was changed) or that the disk
    // refuses (an API attachment decoded into one), a library failing on a
    // file: nothing is stored, and the runner's thread goes on. The message
    // is the library's or the spool's, never the body's.
    spdlog::error("intake.plan_failed channel={} error=\"{}\"", submission.channel, e.what());
    SubmissionOutcome out;
    out.kind = Kind::unavailable;
    out.message =
        "the referral could not be kept on the server's disk while it was checked; nothing was saved, please try again";
    done(std::move(out));
    return;
  }
  auto& result = *planned;
  if (auto* large = std::get_if<BodyTooLarge>(&result)) {
    SubmissionOutcome out;
    out.kind = Kind::too_large;
    out.message = "request body is larger than " + std::to_string(large->limit) +
                  " bytes; only a referral with attachments may be larger";
    done(std::move(out));
    return;
  }
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
  auto& plan = std::get<IntakePlan>(result);

  auto row = std::make_shared<store::NewReferral>();
  row->id = new_referral_id(submission.received_at);
  row->received_at = submission.received_at;
  row->decision = plan.eligibility.decision;
  row->urgency = plan.referral.urgency;
  row->reasons = plan.eligibility.reasons;
  row->disease = plan.eligibility.disease;
  row->channel = std::move(submission.channel);
  row->client = std::move(submission.client);
  row->idempotency_key = std::move(submission.idempotency_key);
  row->request_hash = submission.body_file ? submission.body_file->sha256_hex() : sha256_hex(submission.body);
  // Files beside the JSON are part of what was sent: another file with the
  // same Idempotency-Key is another request.
  if (!submission.files.empty()) {
    std::string all = row->request_hash;
    for (const Attachment& f : submission.files)
      all += " " + (f.spooled ? f.spooled->sha256_hex() : sha256_hex(f.data));
    row->request_hash = sha256_hex(all);
  }
  row->document = std::move(plan.referral.document);
  row->attachments = std::move(plan.referral.attachments);
  // Inspected, the files wait for the writer on disk, sealed, not in memory:
  // a queue of large referrals costs the writer's turn, not their size.
  for (Attachment& a : row->attachments) a.spool(spool_directory_);
  row->response = with_attachments(reply(row->id, plan.eligibility), row->attachments);
  row->targets = std::move(plan.targets);
  row->escalations = std::move(plan.escalations);
  row->identity_hash = std::move(plan.identity_hash);
  row->duplicate_window = policy()->duplicate_window;

  auto inserted = std::make_shared<store::InsertResult>();
  stages_.check.record(std::chrono::steady_clock::now() - started);
  writer_.submit([row, inserted](store::Database& db) { *inserted = store::insert_referral(db, *row); },
                 [row, inserted, eligibility = std::move(plan.eligibility), urgency = plan.referral.urgency,
                  planned = planned_, done = std::move(done)](store::JobResult job) mutable {
                   SubmissionOutcome out;
                   switch (job.status) {
                     case store::JobStatus::committed:
                       out.stored_at = std::chrono::steady_clock::now();
                       out.id = inserted->id;
                       out.duplicate_of = inserted->duplicate_of;
                       switch (inserted->status) {
                         case store::InsertStatus::inserted:
                           if (const Planned p{!row->targets.empty(), !row->escalations.empty()};
                               planned && (p.deliveries || p.escalations)) {
                             planned(p);
                           }
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
