#include "office/status.hpp"

#include <algorithm>

namespace referrald {

std::string_view to_string(OfficeStatus s) noexcept {
  switch (s) {
    case OfficeStatus::received: return "received";
    case OfficeStatus::acknowledged: return "acknowledged";
    case OfficeStatus::accepted: return "accepted";
    case OfficeStatus::declined: return "declined";
    case OfficeStatus::needs_info: return "needs-info";
    case OfficeStatus::closed: return "closed";
  }
  return "received";
}

const std::vector<OfficeStatus>& all_office_statuses() {
  static const std::vector<OfficeStatus> all{OfficeStatus::received, OfficeStatus::acknowledged, OfficeStatus::accepted,
                                             OfficeStatus::declined, OfficeStatus::needs_info,   OfficeStatus::closed};
  return all;
}

std::optional<OfficeStatus> parse_office_status(std::string_view s) noexcept {
  for (const OfficeStatus status : all_office_statuses()) {
    if (to_string(status) == s) return status;
  }
  return std::nullopt;
}

std::vector<OfficeStatus> allowed_changes(OfficeStatus from) {
  using enum OfficeStatus;
  switch (from) {
    case received: return {acknowledged, closed};
    case acknowledged: return {accepted, declined, needs_info, closed};
    case needs_info: return {acknowledged, closed};
    case accepted:
    case declined: return {closed};
    case closed: return {};
  }
  return {};
}

bool is_acknowledged(OfficeStatus s) noexcept { return s != OfficeStatus::received; }

std::optional<std::string> refuse_change(OfficeStatus from, OfficeStatus to) {
  if (from == to) return "status is already " + std::string(to_string(from));
  const std::vector<OfficeStatus> allowed = allowed_changes(from);
  if (std::find(allowed.begin(), allowed.end(), to) != allowed.end()) return std::nullopt;
  std::string message = "status is " + std::string(to_string(from));
  if (allowed.empty()) return message + ": it cannot change any more";
  message += ": it can change to ";
  for (std::size_t i = 0; i < allowed.size(); ++i) {
    if (i > 0) message += i + 1 == allowed.size() ? " or " : ", ";
    message += to_string(allowed[i]);
  }
  return message + ", not to " + std::string(to_string(to));
}

std::string_view plain_words(OfficeStatus s) noexcept {
  switch (s) {
    case OfficeStatus::received: return "received; the referral office has not reviewed it yet";
    case OfficeStatus::acknowledged: return "received and being reviewed by the referral office";
    case OfficeStatus::accepted: return "accepted; the referral office will contact you to arrange the first visit";
    case OfficeStatus::declined: return "declined; the referral office will call you to explain";
    case OfficeStatus::needs_info: return "on hold: the referral office needs more information from you";
    case OfficeStatus::closed: return "closed";
  }
  return "received";
}

}  // namespace referrald
