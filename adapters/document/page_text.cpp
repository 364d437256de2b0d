#include "adapters/document/page_text.hpp"

#include <cctype>
#include <string_view>
#include <vector>

#include "adapters/protocol/reply.hpp"
#include "office/escalation.hpp"
#include "util/strings.hpp"

namespace referrald {

namespace {}  // namespace

using protocol::printable;

std::string page_text(const Delivery& delivery, const std::string& callback_phone, std::size_t max_length) {
  const std::string id = printable(delivery.referral_id, 64);
  const std::string urgency = upper(to_string(delivery.urgency));
  const std::string decision(to_string(delivery.decision));
  const std::string phone = printable(callback_phone, 40);
  std::vector<std::string> forms;
  if (delivery.escalation) {
    // Which step and how long it has waited: the pager's holder must know it
    // is a second call, not the first.
    const std::string step = std::to_string(delivery.escalation->step);
    const std::string waited = printable(describe_wait(delivery.escalation->waited), 40);
    if (!phone.empty()) {
      forms.push_back("referrald ESCALATION " + step + " " + id + " " + urgency + " not acknowledged after " + waited +
                      " call " + phone);
      forms.push_back("ESCALATION " + step + " " + id + " " + urgency + " waited " + waited + " call " + phone);
      forms.push_back("ESC" + step + " " + id + " " + urgency + " " + waited + " " + phone);
      forms.push_back("ESC" + step + " " + id + " " + urgency + " " + phone);
    }
    forms.push_back("ESCALATION " + step + " " + id + " " + urgency + " waited " + waited);
    forms.push_back("ESC" + step + " " + id + " " + urgency);
  } else if (delivery.notice) {
    const std::string status(to_string(delivery.notice->status));
    if (!phone.empty()) forms.push_back("referrald " + id + " status " + status + " call " + phone);
    forms.push_back(id + " status " + status);
  } else {
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
  }
  for (const auto& form : forms) {
    if (form.size() <= max_length) return form;
  }
  return forms.back().substr(0, max_length);
}

}  // namespace referrald
