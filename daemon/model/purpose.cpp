#include "model/purpose.hpp"

#include <charconv>

namespace referrald {

std::string to_string(const DeliveryPurpose& p) {
  switch (p.kind) {
    case PurposeKind::intake: return "intake";
    case PurposeKind::escalation: return "escalation-" + std::to_string(p.number);
    case PurposeKind::notice: return "notice-" + std::to_string(p.number);
  }
  return "intake";
}

std::optional<DeliveryPurpose> parse_delivery_purpose(std::string_view text) noexcept {
  if (text == "intake") return DeliveryPurpose{};
  const auto numbered = [&](std::string_view prefix, PurposeKind kind) -> std::optional<DeliveryPurpose> {
    if (!text.starts_with(prefix)) return std::nullopt;
    const std::string_view digits = text.substr(prefix.size());
    if (digits.empty() || digits.front() == '0') return std::nullopt;
    for (char c : digits) {
      if (c < '0' || c > '9') return std::nullopt;
    }
    std::int64_t n = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
    return DeliveryPurpose{kind, n};
  };
  if (auto p = numbered("escalation-", PurposeKind::escalation)) return p;
  return numbered("notice-", PurposeKind::notice);
}

}  // namespace referrald
