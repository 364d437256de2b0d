// The referral office's status of a referral: what people have done with it,
// beside the automatic eligibility decision.
//
//   received ─► acknowledged ─► accepted | declined | needs-info ─► closed
//                    ▲                                  │
//                    └──────────────────────────────────┘ (needs-info)
//
// Any open status may be closed (a withdrawn referral, say); closed is final.
// Pure: the store records changes, the HTTP and CLI layers ask here first.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace referrald {

enum class OfficeStatus { received, acknowledged, accepted, declined, needs_info, closed };

// The longest note a status change keeps, in characters: as long as a
// referral's own notes may be (schemas/referral.v1.schema.json). A note is for
// a person to read, not a document.
inline constexpr std::size_t max_note_characters = 4000;

std::string_view to_string(OfficeStatus s) noexcept;  // "needs-info" for needs_info
std::optional<OfficeStatus> parse_office_status(std::string_view s) noexcept;

// Every status, in the order of the diagram (for listings and metrics).
const std::vector<OfficeStatus>& all_office_statuses();

// The statuses `from` may change to, in the order of the diagram.
std::vector<OfficeStatus> allowed_changes(OfficeStatus from);

// True once a person has seen the referral: every status but received.
// The escalation ladder stops at the first such change.
bool is_acknowledged(OfficeStatus s) noexcept;

// Nullopt when `from` may change to `to`; otherwise the sentence to show, which
// says what is allowed, e.g.
//   "status is received: it can change to acknowledged or closed, not to accepted"
//   "status is already acknowledged"
//   "status is closed: it cannot change any more"
std::optional<std::string> refuse_change(OfficeStatus from, OfficeStatus to);

// What a status means to the referring clinician, in plain words (notices,
// the confirmation page).
std::string_view plain_words(OfficeStatus s) noexcept;

}  // namespace referrald
