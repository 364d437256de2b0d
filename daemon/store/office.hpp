// The office's side of a referral in the store: its status and the history
// of changes, the escalation ladder's steps, and acknowledgement tokens.
// Every function runs inside the caller's write (or read) transaction.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "office/status.hpp"
#include "store/database.hpp"
#include "store/store.hpp"

namespace referrald::store {

// ---- status ----

enum class StatusVia { cli, api, link };  // referralctl, the office API, a one-tap link
std::string_view to_string(StatusVia v) noexcept;

struct ReferralStatus {
  OfficeStatus status = OfficeStatus::received;
  TimePoint since;  // the last change (receipt until then)
  std::optional<TimePoint> acknowledged_at;
  std::optional<std::string> duplicate_of;
};
std::optional<ReferralStatus> status_of(Database& db, const std::string& referral_id);

struct StatusChange {
  std::string referral_id;
  OfficeStatus to = OfficeStatus::acknowledged;
  std::string actor;  // the operator's user name, the office key's id, "link"
  StatusVia via = StatusVia::cli;
  std::optional<std::string> note;  // PHI: sealed like the document
  TimePoint at;
  std::vector<std::string> notice_targets;  // the referrer's notices to plan, one delivery each
};

struct StatusChangeResult {
  bool changed = false;
  OfficeStatus from = OfficeStatus::received;
  std::optional<std::string> refusal;  // why not (office/status.hpp's sentence)
  std::int64_t change_id = 0;
  int escalations_stopped = 0;
  int notices = 0;
};

// Checks the change against the status rules and, if allowed, records it: the
// referral's status, a status_changes row, an audit row, the end of its
// escalation ladder at the first acknowledgement, and one delivery per
// notice target (purpose notice-<change id>), due at once. Throws NotFound
// (queries.hpp) for an id the store does not hold.
StatusChangeResult change_status(Database& db, const StatusChange& change);

struct StatusHistoryEntry {
  std::int64_t id = 0;
  TimePoint at;
  std::string actor;
  StatusVia via = StatusVia::cli;
  OfficeStatus from = OfficeStatus::received;
  OfficeStatus to = OfficeStatus::received;
  std::optional<std::string> note;  // opened (PHI)
};
// Oldest first. Throws PayloadError for a note it cannot open.
std::vector<StatusHistoryEntry> status_history(Database& db, const std::string& referral_id);

// A referral with its office status and that status's history, as the API
// and FHIR show it; nullopt for an unknown id. Throws PayloadError when the
// document cannot be decrypted.
struct ReferralWithStatus {
  ReferralRow row;
  std::optional<ReferralStatus> status;
  std::vector<StatusHistoryEntry> history;
};
std::optional<ReferralWithStatus> find_referral_with_status(Database& db, const std::string& referral_id);
// One change of that referral (a notice opens its own note, not every one).
std::optional<StatusHistoryEntry> status_change(Database& db, const std::string& referral_id, std::int64_t change_id);

struct NoteRekeyBatch {
  std::optional<std::int64_t> last_id;  // where the next batch starts; nullopt: none was examined
  std::int64_t examined = 0;            // notes looked at
  std::int64_t rekeyed = 0;
  std::vector<std::string> unreadable;  // PayloadError messages of notes left as they were
};

// Seals again, under db.payload_keys()->current(), the next `limit` status
// notes after change `after_id` (in id order) that are not under it already
// (notes kept in the clear included), with one audit row each by `actor`.
// A note that cannot be opened is left as it is and reported. Must run
// inside the caller's (IMMEDIATE) transaction; throws std::logic_error
// without payload keys.
NoteRekeyBatch rekey_status_notes(Database& db, std::int64_t after_id, int limit, const std::string& actor,
                                  TimePoint now);

// ---- the escalation ladder ----

enum class EscalationState { pending, fired, stopped };
std::string_view to_string(EscalationState s) noexcept;

struct EscalationRow {
  std::string referral_id;
  int step = 0;
  TimePoint due_at;
  std::chrono::seconds after{0};
  std::vector<std::string> targets;
  EscalationState state = EscalationState::pending;
  std::optional<TimePoint> done_at;
};
std::vector<EscalationRow> escalations_of(Database& db, const std::string& referral_id);

// Every pending step due at `now` (at most `limit`): for a referral still
// 'received' the step fires — a delivery per target (purpose escalation-N)
// due now, the step marked fired, an audit row — once, however often this
// runs; for one acknowledged meanwhile the step is marked stopped. Returns
// the steps that fired.
std::vector<EscalationRow> fire_due_escalations(Database& db, TimePoint now, int limit);
// When the next pending step is due, if any.
std::optional<TimePoint> next_escalation_due(Database& db);

// A referral nobody has acknowledged although a step of its ladder is due:
// still 'received', with a step due at or before `now` (fired or, if the
// timer has not run yet, pending). `referralctl list --overdue` and /metrics.
struct OverdueReferral {
  std::string referral_id;
  Urgency urgency = Urgency::routine;
  TimePoint received_at;
  int step = 0;      // the latest step due
  TimePoint due_at;  // when that step was due
};
// Oldest first.
std::vector<OverdueReferral> overdue_referrals(Database& db, TimePoint now);

// ---- acknowledgement tokens ----

// Keeps the SHA-256 (hex) of a token that acknowledges `referral_id` until
// `expires_at`. The token itself is never stored.
void add_ack_token(Database& db, const std::string& referral_id, std::string_view token_hash, TimePoint now,
                   TimePoint expires_at);

enum class TokenState { valid, used, expired, unknown };
struct TokenLookup {
  TokenState state = TokenState::unknown;
  std::string referral_id;  // empty for unknown
  std::optional<TimePoint> used_at;
};
TokenLookup find_ack_token(Database& db, std::string_view token_hash, TimePoint now);
// Marks a valid token used; false if it was not valid any more (used, expired, unknown).
bool use_ack_token(Database& db, std::string_view token_hash, TimePoint now);

}  // namespace referrald::store
