// A decision's reasons as JSON, in the one shape they have everywhere: the
// API's answers, referralctl's --json, and the stored `referrals.reasons`
// column: [{"code": "NO_OPEN_TRIAL", "message": "..."}, ...], in order.
#pragma once

#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string_view>
#include <vector>

#include "model/referral.hpp"

namespace referrald {

// Json: nlohmann::json, or nlohmann::ordered_json for an answer whose keys
// keep the order they were set in (each reason's are the same either way).
template <class Json = nlohmann::json>
Json reasons_json(const std::vector<Reason>& reasons) {
  Json out = Json::array();
  for (const Reason& r : reasons) out.push_back({{"code", r.code}, {"message", r.message}});
  return out;
}

// The reasons of reasons_json's text; std::invalid_argument for anything
// else (the caller names where the text came from).
inline std::vector<Reason> reasons_from_json(std::string_view text) {
  const nlohmann::json parsed = nlohmann::json::parse(text, nullptr, false);
  if (!parsed.is_array()) throw std::invalid_argument("reasons are not a JSON array");
  std::vector<Reason> out;
  out.reserve(parsed.size());
  for (const nlohmann::json& item : parsed) {
    const auto code = item.find("code");
    const auto message = item.find("message");
    if (!item.is_object() || code == item.end() || message == item.end() || !code->is_string() ||
        !message->is_string()) {
      throw std::invalid_argument("a reason is not {\"code\": text, \"message\": text}");
    }
    out.push_back(Reason{code->get<std::string>(), message->get<std::string>()});
  }
  return out;
}

}  // namespace referrald
