// Why a delivery is sent. Every delivery row has one purpose:
//   intake        the notification of a new referral (the routes' targets)
//   escalation-N  step N of the escalation ladder: nobody acknowledged it in time
//   notice-N      the referrer's notice of status change N (status_changes.id)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace referrald {

enum class PurposeKind { intake, escalation, notice };

struct DeliveryPurpose {
  PurposeKind kind = PurposeKind::intake;
  std::int64_t number = 0;  // the escalation step, or the status change's id; 0 for intake

  bool operator==(const DeliveryPurpose&) const = default;
};

// "intake", "escalation-2", "notice-17": the text the store keeps.
std::string to_string(const DeliveryPurpose& p);
// nullopt for anything else (a number must be 1 or more, without leading zeros).
std::optional<DeliveryPurpose> parse_delivery_purpose(std::string_view text) noexcept;

}  // namespace referrald
