// The email's words: a subject without patient data and a plain-text part
// that says who referred, the decision and its reasons, and that the
// referral itself (with the patient's details) is the attached PDF. An
// escalation says so first (which step, how long the referral has waited);
// a referrer's notice (purpose notice-N) is a message of its own: the
// status in plain words, what happens next, the office's numbers, the
// patient by initials and birth year only. Pure.
#pragma once

#include <string>
#include <vector>

#include "config/config.hpp"
#include "dispatch/adapter.hpp"

namespace referrald {

struct DocumentField;

// "ESCALATION, step 1: the emergent referral R-… has not been acknowledged
// (waited 17 minutes; the step is due after 15 minutes)". Empty unless the
// delivery is an escalation.
std::string escalation_headline(const Delivery& delivery);

// What happens next after a change to `status`, for the referrer.
std::string_view next_steps(OfficeStatus status) noexcept;

// A referrer's notice as labelled fields, shared by the email and the fax:
// reference number, patient (initials, birth year), status in plain words,
// what happens next, the office's note (needs-info only) and numbers.
// Throws DocumentError for a document that is not a JSON object.
std::vector<DocumentField> notice_fields(const Delivery& delivery, const OfficeConfig& office);

// True when the delivery is a referrer's notice: no attachment, no link.
inline bool is_referrer_notice(const Delivery& delivery) { return delivery.notice.has_value(); }

// "Referral R-20261128-7K3M9-TZQXA (urgent) — review" (UTF-8); an
// escalation: "ESCALATION step 1: referral R-… (emergent) not acknowledged";
// a notice: "Your referral R-…: accepted".
std::string render_email_subject(const Delivery& delivery);

// The text part (UTF-8, "\n" line ends, lines of at most 76 characters where
// words allow). Throws DocumentError for a document that is not a JSON object.
std::string render_email_text(const Delivery& delivery, const OfficeConfig& office);
struct ReferrerSummary;
// With the referrer already read (read_referral_document) by the caller.
std::string render_email_text(const Delivery& delivery, const ReferrerSummary& referrer, const OfficeConfig& office);

// "referral-R-20261128-7K3M9-TZQXA.pdf"
std::string referral_pdf_filename(const Delivery& delivery);
// "referral-R-20261128-7K3M9-TZQXA-file-1.pdf": the delivery's attachment
// `index` (from 0), named by position and type, never by its title (PHI).
std::string attachment_filename(const Delivery& delivery, std::size_t index);

}  // namespace referrald
