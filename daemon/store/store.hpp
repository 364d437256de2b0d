// The referral store: schema, migrations and every query referrald and
// referralctl run. Plain C++ types in, plain C++ types out.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/outcome.hpp"
#include "model/referral.hpp"
#include "office/escalation.hpp"
#include "store/database.hpp"

namespace referrald::store {

using TimePoint = std::chrono::system_clock::time_point;

enum class DeliveryState { pending, sending, delivered, retry, dead, cancelled, held };
std::string_view to_string(DeliveryState s) noexcept;
std::optional<DeliveryState> parse_delivery_state(std::string_view s) noexcept;
bool is_final(DeliveryState s) noexcept;  // delivered, dead, cancelled

inline constexpr int schema_version = 10;

// Brings a database to schema_version (tests: to `target`, to build an older
// database) inside one transaction. Throws DatabaseError, or
// IncompatibleSchema for a database newer than this build.
void migrate(Database& db, int target = schema_version);
int current_schema_version(Database& db);  // 0 for an empty database

class IncompatibleSchema : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// current_schema_version, or IncompatibleSchema for what this build cannot
// use: a newer schema, or tables without a schema_version (not referrald's).
int checked_schema_version(Database& db);

// Everything written when a referral is accepted for processing.
struct NewReferral {
  std::string id;
  TimePoint received_at;
  Decision decision = Decision::review;
  Urgency urgency = Urgency::routine;
  std::vector<Reason> reasons;
  std::optional<std::string> disease;
  std::string channel;  // "api" | "form"
  std::string client;   // who submitted: API key fingerprint, or form client
  std::optional<std::string> idempotency_key;
  std::string request_hash;                    // hex SHA-256 of the body, for Idempotency-Key
  std::string document;                        // referral JSON
  std::string response;                        // the exact 202 body, replayed for a repeated key
  std::vector<std::string> targets;            // one delivery row each, due now
  std::vector<PlannedEscalation> escalations;  // the ladder's steps, kept as rows (store/office.hpp)
  // A keyed hash of the patient's normalised name and birth date: with it, an
  // open referral with the same hash received within `duplicate_window`
  // before this one is recorded as its duplicate_of.
  std::optional<std::string> identity_hash;
  std::chrono::milliseconds duplicate_window{0};
  // The files that came with it, inspected (content type, pages, SHA-256):
  // stored in the same transaction (store/attachments.hpp).
  std::vector<Attachment> attachments;
};

enum class InsertStatus { inserted, replayed, conflict };
struct InsertResult {
  InsertStatus status;
  std::string id;                           // the stored referral's id (the earlier one for replay)
  std::string response;                     // the stored response (for replay)
  std::optional<std::string> duplicate_of;  // inserted, replayed: an open referral for the same patient
};

// Inserts referral, deliveries and an audit row; with an idempotency key
// already used by the same client, returns replayed (same hash) or conflict.
// Must run inside a transaction (the writer's).
InsertResult insert_referral(Database& db, const NewReferral& r);

struct DeliveryRow {
  std::int64_t id = 0;
  std::string referral_id;
  std::string target;
  DeliveryState state = DeliveryState::pending;
  int attempts = 0;
  TimePoint created_at;
  TimePoint next_attempt_at;
  std::optional<TimePoint> lease_until;
  std::optional<std::string> last_error;
  std::optional<std::string> external_id;
  TimePoint updated_at;
  std::string purpose = "intake";  // intake | escalation-N | notice-N (model/purpose.hpp)
};

struct ReferralRow {
  std::string id;
  TimePoint received_at;
  Decision decision = Decision::review;
  Urgency urgency = Urgency::routine;
  std::vector<Reason> reasons;
  std::optional<std::string> disease;
  std::string channel;
  std::string client;  // who submitted it (the API only shows a referral to its submitter)
  std::string document;
};

std::optional<ReferralRow> find_referral(Database& db, const std::string& id);
std::vector<DeliveryRow> deliveries_of(Database& db, const std::string& referral_id);

// Claims up to `limit` due deliveries (pending/retry due now, or sending with
// an expired lease), moving them to 'sending' with lease_until = now + lease,
// attempts + 1, in one statement. Ordered by next attempt time.
std::vector<DeliveryRow> claim_due(Database& db, TimePoint now, std::chrono::milliseconds lease, int limit,
                                   const std::vector<std::string>& targets = {});
// Deliveries a previous run left 'sending' (it crashed, or its stop grace ran
// out mid-send) become due at `now` instead of when their lease runs out: one
// daemon owns the database, so nothing else is sending them. The attempt they
// were on stays counted (at-least-once). Returns how many were released.
// On PostgreSQL, which several instances may share, none: a lease there is
// taken over only once it has run out.
int release_leases(Database& db, TimePoint now);
// The earliest time something becomes due (next attempt or lease expiry), if any.
std::optional<TimePoint> next_due(Database& db);

using referrald::AttemptOutcome;  // model/outcome.hpp: the adapters return it too
using referrald::to_string;

struct AttemptRecord {
  std::int64_t delivery_id = 0;
  int attempt = 0;
  TimePoint started_at;
  TimePoint finished_at;
  AttemptOutcome outcome = AttemptOutcome::transient;
  std::optional<std::string> code;  // protocol code, e.g. "451"
  std::string message;              // no PHI
  std::optional<std::string> external_id;
  // Where the delivery goes next: delivered, retry (with next_attempt_at) or dead.
  DeliveryState next_state = DeliveryState::delivered;
  std::optional<TimePoint> next_attempt_at;
};

// What became of an attempt's outcome (finish_attempt).
enum class Finished {
  applied,     // the delivery moved to the attempt's next state
  superseded,  // the attempt's lease ran out and the delivery was claimed again: that claim decides
  left_alone,  // no longer 'sending' for another reason (an operator cancelled it), or purged meanwhile
};

// Records an attempt and moves the delivery, only if it is still 'sending'
// on this attempt: the attempt number is the claim's token (every claim
// adds one to it and nothing takes it back), so a worker whose lease ran
// out and whose delivery another claim took over cannot overwrite that
// claim's outcome; its attempt is recorded, and audited as not applied.
Finished finish_attempt(Database& db, const AttemptRecord& a);

// A claimed delivery that is not sent and will not be: e.g. a referrer's
// notice for a referral that gives no email (or fax). It becomes
// 'cancelled' with `reason` as its last error (what `referralctl show`
// prints), and an audit row "skipped" says why; no attempt is recorded and
// it is no dead letter. Only while it is still 'sending' on `attempt` (the
// claim's); returns false otherwise.
bool skip_delivery(Database& db, std::int64_t delivery_id, int attempt, const std::string& reason, TimePoint now);

// Appends a row to the audit trail's hash chain (store/audit_chain.hpp).
// Must run inside the caller's write transaction.
void audit(Database& db, TimePoint at, const std::optional<std::string>& referral_id,
           std::optional<std::int64_t> delivery_id, const std::string& actor, const std::string& action,
           const std::string& detail);

// 32 random bytes kept in the database, made on first use: the identity
// hash's key when the configuration gives none (docs/closed-loop.md). Must
// run inside a write transaction (the writer's).
std::vector<unsigned char> identity_secret(Database& db);

std::int64_t to_millis(TimePoint t) noexcept;
TimePoint from_millis(std::int64_t ms) noexcept;

}  // namespace referrald::store
