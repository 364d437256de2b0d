// Intake: a submission becomes a plan (intake/pipeline.hpp) and the plan one
// durable write. Shared by the JSON API and the web form; knows nothing of HTTP.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "intake/pipeline.hpp"
#include "intake/validator.hpp"
#include "model/referral.hpp"
#include "store/writer.hpp"
#include "util/clock.hpp"
#include "util/latency.hpp"

namespace referrald {

struct SubmissionOutcome {
  enum class Kind {
    accepted,     // 202: stored now
    replayed,     // 202: the same Idempotency-Key and body were stored before
    malformed,    // 400
    invalid,      // 422
    conflict,     // 409: Idempotency-Key reused with a different body
    unavailable,  // 503: storage cannot commit; nothing stored
    overloaded,   // 503: too many writes queued; nothing stored
    too_large,    // 413: no files in a body over Submission::plain_body_limit
  };
  Kind kind = Kind::unavailable;
  std::string id;
  std::string response;                     // the AcceptedReply body, as stored (accepted, replayed)
  std::optional<Eligibility> eligibility;   // accepted
  std::optional<Urgency> urgency;           // accepted
  std::optional<std::string> duplicate_of;  // accepted, replayed: an open referral for the same patient
  std::vector<FieldError> errors;           // invalid
  std::string message;                      // malformed, unavailable, conflict, too_large: a sentence, no PHI
  // When the store's answer came (accepted, replayed: after the commit's
  // fsync), for IntakeStages::resume.
  std::optional<std::chrono::steady_clock::time_point> stored_at;
};

// Where a stored referral's time went outside the store (whose own stages
// are store::WriteStages; docs/architecture.md, "Latency by stage"):
// `check`, from submit() to its write being queued (validation, rules,
// routing, sealing its files); `resume`, from the store's answer to the
// channel's coroutine running again on its I/O thread.
struct IntakeStages {
  LatencyHistogram check, resume;
};

class IntakeService {
 public:
  using Completion = std::function<void(SubmissionOutcome)>;
  // The body the channel answers a newly stored referral with (the 202 body
  // of the API). The store keeps it, so that a repeated Idempotency-Key gets
  // the same answer.
  using AcceptedReply = std::function<std::string(const std::string& id, const Eligibility& eligibility)>;

  // A body over this may carry files (a FHIR Bundle with its Binaries, a
  // form's multipart body): its work is file work.
  static constexpr std::size_t large_body_bytes = 256 * 1024;
  // Whether reading a body is file work (for the runner, not an I/O
  // thread): it is on disk, or large enough to carry files.
  static bool is_file_work(bool on_disk, std::size_t body_size) { return on_disk || body_size > large_body_bytes; }

  IntakeService(const ReferralValidator& validator, store::Writer& writer, const Clock& clock,
                std::shared_ptr<const IntakePolicy> policy);

  // Stamps received_at from the clock and plans the submission (plan_intake:
  // pure), then queues the write; `done` runs on the writer thread once the
  // outcome is final, after the commit for accepted referrals. A referral
  // without files is planned on the caller's thread (fast); one with files
  // (a spooled body, files beside the JSON, a large body) is handed to the
  // runner set with set_file_work_runner, when there is one: decoding,
  // inspecting and sealing files is no work for an I/O thread. A body that
  // cannot be read back (its spool was changed under the daemon) or any
  // other exception while planning is `unavailable`: nothing is stored.
  void submit(Submission submission, const AcceptedReply& reply, Completion done);

  // Runs work elsewhere (the daemon: its blocking pool). Set before use.
  using Runner = std::function<void(std::function<void()>)>;
  void set_file_work_runner(Runner runner) { file_work_runner_ = std::move(runner); }
  // Runs `work` where file work runs (the runner, else at once, here): a
  // channel's own file work, such as the form's reading of its multipart
  // body. `work` must not throw.
  void run_file_work(std::function<void()> work) const {
    if (file_work_runner_) {
      file_work_runner_(std::move(work));
    } else {
      work();
    }
  }

  // What a newly stored referral planned: deliveries (the dispatcher has
  // work) and escalation steps (the escalation timer may have an earlier
  // step to wait for).
  struct Planned {
    bool deliveries = false;
    bool escalations = false;
  };
  // Called (on the writer thread, after the commit) when a newly stored
  // referral planned either. Set before use.
  void on_planned(std::function<void(Planned)> hook) { planned_ = std::move(hook); }

  // Where a submission's files wait for their commit, sealed
  // (util/sealed_spool.hpp); empty (the default): in memory. Set before use.
  void set_spool_directory(std::filesystem::path directory) { spool_directory_ = std::move(directory); }
  const std::filesystem::path& spool_directory() const { return spool_directory_; }

  IntakeStages& stages() { return stages_; }

  void set_policy(std::shared_ptr<const IntakePolicy> policy);
  std::shared_ptr<const IntakePolicy> policy() const;

 private:
  const ReferralValidator& validator_;
  store::Writer& writer_;
  const Clock& clock_;
  mutable std::mutex policy_mutex_;
  std::shared_ptr<const IntakePolicy> policy_;
  std::function<void(Planned)> planned_;
  std::filesystem::path spool_directory_;
  Runner file_work_runner_;
  IntakeStages stages_;

  void plan_and_queue(Submission submission, const AcceptedReply& reply, Completion done,
                      std::chrono::steady_clock::time_point started);
};

}  // namespace referrald
