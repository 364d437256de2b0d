// Identities: referral reference numbers that are unguessable and easy to
// read over the phone, and the stable identity of a delivery.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace referrald {

// "R-20261128-7K3M9-TZQXA": the UTC date, then 50 random bits in Crockford
// base32 (no I, L, O, U) in two groups of five.
std::string new_referral_id(std::chrono::system_clock::time_point now);

// True for text shaped like a referral id (case-insensitive).
bool looks_like_referral_id(std::string_view text) noexcept;

// Stable per (referral, target, purpose): the same on every attempt and
// after a restart, so a repeated send can be recognised (Message-ID, job
// tags). "R-….office-email" for the intake notification (as before purposes
// existed, so an upgrade does not send it again), "R-….backup-pager.escalation-1"
// and "R-….referrer-email.notice-7" for the others.
std::string delivery_identity(std::string_view referral_id, std::string_view target,
                              std::string_view purpose = "intake");

}  // namespace referrald
