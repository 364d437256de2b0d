// Operator queries and actions: what referralctl reads and changes. Plain C++
// types in and out, like store.hpp. Every query reads along an index, so
// list, queue and stats stay fast with a million referrals (bench/README.md).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/referral.hpp"
#include "office/status.hpp"
#include "store/database.hpp"
#include "store/store.hpp"

namespace referrald::store {

// Something an operator named does not exist (referralctl exits 1).
class NotFound : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// referralctl never migrates (the daemon does, on start): throws
// IncompatibleSchema unless the database is exactly at schema_version.
void require_current_schema(Database& db);

// ---- list ----

struct ListFilter {
  std::optional<Decision> decision;
  std::optional<Urgency> urgency;
  std::optional<DeliveryState> delivery_state;  // referrals with at least one delivery in this state
  std::vector<OfficeStatus> statuses;           // the office's status is one of these; empty: any
  std::optional<TimePoint> since;               // received at or after
  std::optional<std::string> before;            // keyset cursor: only referrals listed after this one
  int limit = 50;
};

struct DeliveryBrief {
  std::int64_t id = 0;
  std::string target;
  DeliveryState state = DeliveryState::pending;
};

struct ReferralSummary {
  std::string id;
  TimePoint received_at;
  Decision decision = Decision::review;
  Urgency urgency = Urgency::routine;
  std::optional<std::string> disease;
  std::string channel;
  OfficeStatus status = OfficeStatus::received;
  std::optional<std::string> duplicate_of;
  std::vector<DeliveryBrief> deliveries;
};

struct ReferralPage {
  std::vector<ReferralSummary> referrals;
  // Set when more referrals match: pass it as ListFilter::before.
  std::optional<std::string> next_before;
};

// Newest first (received time, then id, descending). Throws NotFound when
// `before` names no referral.
ReferralPage list_referrals(Database& db, const ListFilter& filter);

// ---- show ----

struct AttemptRow {
  std::int64_t delivery_id = 0;
  int attempt = 0;
  TimePoint started_at;
  TimePoint finished_at;
  AttemptOutcome outcome = AttemptOutcome::transient;
  std::optional<std::string> code;
  std::string message;
  std::optional<std::string> external_id;
};

struct AuditRow {
  std::int64_t id = 0;
  TimePoint at;
  std::optional<std::string> referral_id;
  std::optional<std::int64_t> delivery_id;
  std::string actor;
  std::string action;
  std::string detail;
};

std::vector<AttemptRow> attempts_of(Database& db, std::int64_t delivery_id);
std::vector<AuditRow> audit_of(Database& db, const std::string& referral_id);  // oldest first

// ---- queue ----

struct QueueFilter {
  std::optional<std::string> target;
  std::optional<DeliveryState> state;  // one of the non-final states
  int limit = 0;                       // 0: all
};

struct QueueEntry {
  DeliveryRow delivery;
  Urgency urgency = Urgency::routine;
};

// Deliveries not yet final (pending, sending, retry, held), soonest next
// attempt first.
std::vector<QueueEntry> queue_entries(Database& db, const QueueFilter& filter);
// Dead deliveries (to one target, or to any): what the queue no longer shows.
std::int64_t count_dead(Database& db, const std::optional<std::string>& target);

// ---- stats ----

inline constexpr std::array<Decision, 3> all_decisions{Decision::accepted, Decision::review, Decision::declined};
inline constexpr std::array<DeliveryState, 7> all_delivery_states{
    DeliveryState::pending,   DeliveryState::sending, DeliveryState::retry,    DeliveryState::held,
    DeliveryState::delivered, DeliveryState::dead,    DeliveryState::cancelled};

// Attempts that finished within a window, by outcome.
struct AttemptCounts {
  std::int64_t delivered = 0;
  std::int64_t transient = 0;
  std::int64_t permanent = 0;
  std::int64_t misconfigured = 0;
  std::int64_t failed() const { return transient + permanent + misconfigured; }
};

struct TargetActivity {
  std::string target;
  std::int64_t waiting = 0;  // not final now (pending, sending, retry, held)
  AttemptCounts last_hour;
  AttemptCounts last_day;
};

struct Stats {
  std::int64_t referrals = 0;
  std::array<std::int64_t, 3> by_decision{};  // indexed like all_decisions
  std::int64_t deliveries = 0;
  std::array<std::int64_t, 7> by_state{};  // indexed like all_delivery_states
  std::vector<std::int64_t> by_status;     // indexed like all_office_statuses()
  std::optional<DeliveryRow> oldest_due;   // pending/retry with the earliest next attempt <= now
  std::optional<TimePoint> next_due;       // the earliest next attempt still ahead
  std::vector<TargetActivity> targets;     // every target with a waiting delivery or recent attempt
};

Stats collect_stats(Database& db, TimePoint now);

// ---- actions ----

enum class Action { retry, cancel, hold, release };
std::string_view to_string(Action a) noexcept;

// The states each action moves a delivery out of; the others are skipped.
//   retry:   dead, retry      -> pending, next attempt now
//   cancel:  pending, retry, held, sending, dead -> cancelled
//   hold:    pending, retry   -> held
//   release: held             -> pending, next attempt now
bool action_accepts(Action a, DeliveryState from) noexcept;
DeliveryState action_result(Action a) noexcept;
// Why a delivery in `from` is skipped, e.g. "final", "being sent right now".
std::string action_refusal(Action a, DeliveryState from);

// An operator's name for deliveries: a delivery number ("42"), a referral id
// ("R-20261128-7K3M9-TZQXA": all its deliveries) or a delivery identity
// ("R-20261128-7K3M9-TZQXA.office-email", the intake notification;
// "R-20261128-7K3M9-TZQXA.backup-pager.escalation-1"). Throws NotFound for none of them.
std::vector<DeliveryRow> resolve_deliveries(Database& db, const std::string& name);
// Every delivery an action applies to (retry ALL), optionally of one target.
std::vector<DeliveryRow> deliveries_for_all(Database& db, Action a, const std::optional<std::string>& target);

struct ActionChange {
  DeliveryRow delivery;  // as it was before
  DeliveryState to = DeliveryState::pending;
  bool applied = false;
  std::string refusal;  // when not applied
};

// Applies the action to each delivery it accepts and writes one audit row
// per change, with `actor`. Must run inside the caller's (IMMEDIATE)
// transaction. Leaving 'sending' clears the lease.
std::vector<ActionChange> apply_action(Database& db, Action a, const std::vector<DeliveryRow>& deliveries,
                                       const std::string& actor, TimePoint now);

// ---- purge ----

struct PurgeCandidate {
  std::string id;
  TimePoint received_at;
  Decision decision = Decision::review;
};

// Referrals received before `cutoff` whose deliveries are all final, oldest
// first, continuing after `after` (the last candidate of the previous batch).
std::vector<PurgeCandidate> purge_candidates(Database& db, TimePoint cutoff, const std::optional<PurgeCandidate>& after,
                                             int limit);
// Deletes the referral with its reasons, deliveries and attempts; the audit
// trail keeps a "purged" row. Must run inside the caller's transaction.
void purge_referral(Database& db, const PurgeCandidate& referral, const std::string& actor, TimePoint now,
                    const std::string& detail);
// Referrals received before `cutoff` (those left after a purge are unfinished).
std::int64_t count_received_before(Database& db, TimePoint cutoff);

// ---- rekey ----

// Makes SQLite zero the bytes a document is rewritten over on this
// connection, rather than leave them in free pages (PRAGMA secure_delete).
void zero_freed_space(Database& db);

struct RekeyBatch {
  std::optional<std::string> last_id;  // where the next batch starts; nullopt: none was examined
  std::int64_t examined = 0;
  std::int64_t rekeyed = 0;
  std::vector<std::string> unreadable;  // PayloadError messages of documents left as they were
};

// Encrypts again, under db.payload_keys()->current(), the documents of the
// next `limit` referrals after `after` (in id order) that are not under it
// already (plain JSON rows written before encryption was enabled
// included), with one audit row each by `actor`. A document that cannot be
// opened is left as it is and reported. Must run inside the caller's
// (IMMEDIATE) transaction; throws std::logic_error without payload keys.
RekeyBatch rekey_referrals(Database& db, const std::optional<std::string>& after, int limit, const std::string& actor,
                           TimePoint now);

}  // namespace referrald::store
