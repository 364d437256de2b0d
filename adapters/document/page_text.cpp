#include "adapters/document/page_text.hpp"

#include <cctype>
#include <string_view>
#include <vector>

#include "adapters/protocol/reply.hpp"

namespace referrald {

namespace {

std::string upper(std::string_view text) {
  std::string out(text);
  for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

using protocol::printable;

std::string page_text(const Delivery& delivery, const std::string& callback_phone, std::size_t max_length) {
  const std::string id = printable(delivery.referral_id, 64);
  const std::string urgency = upper(to_string(delivery.urgency));
  const std::string decision(to_string(delivery.decision));
  const std::string phone = printable(callback_phone, 40);
  std::vector<std::string> forms;
  if (!phone.empty()) {
    forms.push_back("referrald " + id + " " + urgency + " " + decision + " call " + phone);
    forms.push_back(id + " " + urgency + " " + decision + " call " + phone);
    forms.push_back(id + " " + urgency + " " + decision + " " + phone);
    forms.push_back(id + " " + urgency + " " + phone);
  } else {
    forms.push_back("referrald " + id + " " + urgency + " " + decision);
  }
  forms.push_back(id + " " + urgency + " " + decision);
  forms.push_back(id + " " + urgency);
  for (const auto& form : forms) {
    if (form.size() <= max_length) return form;
  }
  return forms.back().substr(0, max_length);
}

}  // namespace referrald
