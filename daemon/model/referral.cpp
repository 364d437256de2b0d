#include "model/referral.hpp"

namespace referrald {

std::string_view to_string(Urgency u) noexcept {
  switch (u) {
    case Urgency::routine: return "routine";
    case Urgency::urgent: return "urgent";
    case Urgency::emergent: return "emergent";
  }
  return "routine";
}

std::string_view to_string(Decision d) noexcept {
  switch (d) {
    case Decision::accepted: return "accepted";
    case Decision::review: return "review";
    case Decision::declined: return "declined";
  }
  return "review";
}

std::optional<Urgency> parse_urgency(std::string_view s) noexcept {
  if (s == "routine") return Urgency::routine;
  if (s == "urgent") return Urgency::urgent;
  if (s == "emergent") return Urgency::emergent;
  return std::nullopt;
}

std::optional<Decision> parse_decision(std::string_view s) noexcept {
  if (s == "accepted") return Decision::accepted;
  if (s == "review") return Decision::review;
  if (s == "declined") return Decision::declined;
  return std::nullopt;
}

}  // namespace referrald
