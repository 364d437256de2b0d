#include "adapters/document/referral_text.hpp"

#include "attachments/inspect.hpp"

#include "adapters/document/referral_fields.hpp"
#include "office/escalation.hpp"

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

std::string escalation_headline(const Delivery& delivery) {
  if (!delivery.escalation) return {};
  const auto& e = *delivery.escalation;
  return "ESCALATION, step " + std::to_string(e.step) + ": the " + std::string(to_string(delivery.urgency)) +
         " referral " + delivery.referral_id + " has not been acknowledged (waited " + describe_wait(e.waited) +
         "; the step is due after " + describe_wait(e.after) + ").";
}

std::string_view next_steps(OfficeStatus status) noexcept {
  switch (status) {
    case OfficeStatus::received: return "The referral office will review the referral shortly.";
    case OfficeStatus::acknowledged:
      return "A member of the referral office is reviewing the referral. You will hear from us again when it "
             "is decided.";
    case OfficeStatus::accepted:
      return "The referral office will contact you and the family to arrange the first visit.";
    case OfficeStatus::declined:
      return "The referral office will call you to explain the decision and to talk about other options.";
    case OfficeStatus::needs_info:
      return "Please send the information asked for below to the referral office, by fax or by phone, quoting "
             "the reference number. The review goes on as soon as it arrives.";
    case OfficeStatus::closed:
      return "Nothing more is planned for this referral. Please call us if you did not expect this.";
  }
  return "";
}

std::vector<DocumentField> notice_fields(const Delivery& delivery, const OfficeConfig& office) {
  std::vector<DocumentField> out;
  const PatientBrief patient = patient_brief(delivery);
  out.push_back({"Reference number", delivery.referral_id});
  std::string who = patient.initials.empty() ? std::string("(no name given)") : patient.initials;
  if (!patient.birth_year.empty()) who += ", born " + patient.birth_year;
  out.push_back({"Patient", who});
  out.push_back({"Received", format_office_time(office, delivery.received_at)});
  if (delivery.notice) {
    const OfficeStatus status = delivery.notice->status;
    out.push_back({"Status", std::string(plain_words(status)) + " (" + std::string(to_string(status)) + ")"});
    out.push_back({"What happens next", std::string(next_steps(status))});
    if (status == OfficeStatus::needs_info && delivery.notice->note && !delivery.notice->note->empty()) {
      out.push_back({"Information needed", *delivery.notice->note});
    }
  }
  std::string numbers;
  if (!office.phone.empty()) numbers += "phone " + office.phone;
  if (!office.fax.empty()) numbers += (numbers.empty() ? "fax " : ", fax ") + office.fax;
  if (!office.pager.empty()) numbers += (numbers.empty() ? "24-hour pager " : ", 24-hour pager ") + office.pager;
  out.push_back({"Contact", office.name + (numbers.empty() ? "" : ": " + numbers)});
  return out;
}

std::string render_email_subject(const Delivery& delivery) {
  if (delivery.notice) {
    return "Your referral " + delivery.referral_id + ": " + std::string(to_string(delivery.notice->status));
  }
  if (delivery.escalation) {
    return "ESCALATION step " + std::to_string(delivery.escalation->step) + ": referral " + delivery.referral_id +
           " (" + std::string(to_string(delivery.urgency)) + ") not acknowledged";
  }
  return "Referral " + delivery.referral_id + " (" + std::string(to_string(delivery.urgency)) + ") — " +
         std::string(to_string(delivery.decision));
}

std::string referral_pdf_filename(const Delivery& delivery) { return "referral-" + delivery.referral_id + ".pdf"; }

std::string attachment_filename(const Delivery& delivery, std::size_t index) {
  return attachment_file_name(delivery.referral_id, static_cast<int>(index + 1),
                              delivery.attachments.at(index).content_type);
}

std::string render_email_text(const Delivery& delivery, const OfficeConfig& office) {
  return render_email_text(delivery, referrer_summary(delivery), office);
}

namespace {

// The referrer's notice: its fields, one paragraph each, and no PHI beyond
// the patient's initials and birth year (and the office's own note).
std::string render_notice_text(const Delivery& delivery, const OfficeConfig& office) {
  std::string out;
  out += wrap("The " + office.name + " has an update on your referral " + delivery.referral_id + ".", 76);
  out += "\n";
  for (const auto& field : notice_fields(delivery, office)) {
    if (field.label == "Information needed") {
      out += "\n" + field.label + ":\n";
      // The office's own words, line breaks kept; each line wrapped.
      std::size_t start = 0;
      while (start <= field.value.size()) {
        std::size_t nl = field.value.find('\n', start);
        if (nl == std::string::npos) nl = field.value.size();
        const std::string line = one_line(field.value.substr(start, nl - start));
        out += line.empty() ? std::string("\n") : wrap(line, 76, "  ").insert(0, "  ");
        start = nl + 1;
      }
      out += "\n";
      continue;
    }
    out += wrap(field.label + ": " + one_line(field.value), 76, "  ");
  }
  out += "\n";
  out += wrap("Please quote the reference number " + delivery.referral_id + " when you call or write.", 76);
  out += "\n";
  out += wrap("This message was sent automatically. It names the patient by initials and birth year only.", 76);
  out += "\n-- \nreferrald, delivery " + delivery.identity + " (attempt " + std::to_string(delivery.attempt) + ")\n";
  return out;
}

}  // namespace

std::string render_email_text(const Delivery& delivery, const ReferrerSummary& referrer, const OfficeConfig& office) {
  if (delivery.notice) return render_notice_text(delivery, office);
  const std::string urgency(to_string(delivery.urgency));
  const std::string decision(to_string(delivery.decision));
  std::string out;
  if (delivery.escalation) {
    out += wrap(escalation_headline(delivery), 76);
    out += "\n";
    out += wrap(
        "This is an escalation: the referral below was sent to the office when it arrived, and nobody "
        "has acknowledged it yet.",
        76);
    out += "\n";
  }
  out += wrap("New " + urgency + " referral " + delivery.referral_id + " for the " + office.name + ".", 76);
  out += "\n";
  if (delivery.duplicate_of) {
    out += wrap("Possible duplicate of " + *delivery.duplicate_of +
                    ": an open referral for a patient with the same name and birth date.",
                76);
    out += "\n";
  }
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
  if (!delivery.ack_link.empty()) {
    out += wrap("Acknowledge this referral with one tap (the page asks you to confirm; the link works once):", 76);
    out += delivery.ack_link + "\n";
    out += wrap("Or: referralctl ack " + delivery.referral_id, 76);
    out += "\n";
  }
  out += wrap("The referral is attached as PDF (" + referral_pdf_filename(delivery) +
                  "): the patient's details, the diagnosis and the referring clinician's notes are in the "
                  "attachment only.",
              76);
  if (!delivery.attachments.empty()) {
    out += "\n";
    out += wrap(
        "With it, as the referrer sent them (their titles are in `referralctl show " + delivery.referral_id + "`):",
        76);
    for (std::size_t i = 0; i < delivery.attachments.size(); ++i) {
      const Attachment& a = delivery.attachments[i];
      std::string line = "- " + attachment_filename(delivery, i) + " (" + a.content_type;
      if (a.content_type == "application/pdf" || a.content_type == "image/tiff") {
        line += ", " + std::to_string(a.pages) + (a.pages == 1 ? " page" : " pages");
      }
      out += wrap(line + ", SHA-256 " + a.sha256 + ")", 76, "  ");
    }
  }
  out += "\n";
  std::string contact = "Questions about this message: the " + office.name;
  if (!office.phone.empty()) contact += ", " + office.phone;
  if (!office.pager.empty()) contact += " (24-hour pager " + office.pager + ")";
  out += wrap(contact + ".", 76);
  out += "\n";
  out += wrap(
      "This message and its attachment contain protected health information. If you received it in "
      "error, please tell the sender and delete it.",
      76);
  out += "\n-- \nreferrald, delivery " + delivery.identity + " (attempt " + std::to_string(delivery.attempt) + ")\n";
  return out;
}

}  // namespace referrald
