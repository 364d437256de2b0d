#include "adapters/document/referral_text.hpp"

#include "adapters/document/referral_fields.hpp"

namespace referrald {

namespace {

// One line of the referral's own text: line breaks and other controls become
// spaces, so a field cannot start a line of its own.
std::string one_line(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7F) ? ' ' : c;
  }
  return out;
}

// Greedy wrap at spaces to `width` characters (counting code points).
std::string wrap(const std::string& text, std::size_t width, const std::string& indent = "") {
  auto length = [](std::string_view s) {
    std::size_t n = 0;
    for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80 ? 1 : 0;
    return n;
  };
  std::string out;
  std::string line;
  std::size_t i = 0;
  while (i <= text.size()) {
    std::size_t end = text.find(' ', i);
    if (end == std::string::npos) end = text.size();
    const std::string word = text.substr(i, end - i);
    if (!word.empty()) {
      if (!line.empty() && length(line) + 1 + length(word) > width) {
        out += line + "\n";
        line = indent;
      }
      line += (line.empty() || line == indent) ? word : " " + word;
    }
    i = end + 1;
  }
  if (!line.empty()) out += line + "\n";
  return out;
}

}  // namespace

std::string render_email_subject(const Delivery& delivery) {
  return "Referral " + delivery.referral_id + " (" + std::string(to_string(delivery.urgency)) + ") — " +
         std::string(to_string(delivery.decision));
}

std::string referral_pdf_filename(const Delivery& delivery) { return "referral-" + delivery.referral_id + ".pdf"; }

std::string render_email_text(const Delivery& delivery, const OfficeConfig& office) {
  return render_email_text(delivery, referrer_summary(delivery), office);
}

std::string render_email_text(const Delivery& delivery, const ReferrerSummary& referrer, const OfficeConfig& office) {
  const std::string urgency(to_string(delivery.urgency));
  const std::string decision(to_string(delivery.decision));
  std::string out;
  out += wrap("New " + urgency + " referral " + delivery.referral_id + " for the " + office.name + ".", 76);
  out += "\n";
  out += wrap("Referred by: " + one_line(referrer.name.empty() ? "(no name given)" : referrer.name) +
                  (referrer.organization.empty() ? "" : ", " + one_line(referrer.organization)),
              76, "  ");
  if (!referrer.phone.empty() || !referrer.fax.empty()) {
    std::string numbers = "Call-back: " + one_line(referrer.phone);
    if (!referrer.fax.empty()) numbers += (referrer.phone.empty() ? "fax " : ", fax ") + one_line(referrer.fax);
    out += wrap(numbers, 76, "  ");
  }
  if (!referrer.email.empty()) out += wrap("Email: " + one_line(referrer.email), 76, "  ");
  out += "Received: " + format_office_time(office, delivery.received_at) + "\n";
  out += "Urgency: " + urgency + "\n";
  out += "Decision: " + decision + "\n";
  if (!delivery.reasons.empty()) {
    out += "\nReasons:\n";
    for (const auto& r : delivery.reasons) out += wrap("- " + one_line(r.message) + " (" + r.code + ")", 76, "  ");
  }
  out += "\n";
  out += wrap("The referral is attached as PDF (" + referral_pdf_filename(delivery) +
                  "): the patient's details, the diagnosis and the referring clinician's notes are in the "
                  "attachment only.",
              76);
  out += "\n";
  std::string contact = "Questions about this message: the " + office.name;
  if (!office.phone.empty()) contact += ", " + office.phone;
  if (!office.pager.empty()) contact += " (24-hour pager " + office.pager + ")";
  out += wrap(contact + ".", 76);
  out += "\n";
  out += wrap("This message and its attachment contain protected health information. If you received it in "
              "error, please tell the sender and delete it.",
              76);
  out += "\n-- \nreferrald, delivery " + delivery.identity + " (attempt " + std::to_string(delivery.attempt) + ")\n";
  return out;
}

}  // namespace referrald
