// The email's words: a subject without patient data and a plain-text part
// that says who referred, the decision and its reasons, and that the
// referral itself (with the patient's details) is the attached PDF. Pure.
#pragma once

#include <string>

#include "config/config.hpp"
#include "dispatch/adapter.hpp"

namespace referrald {

// "Referral R-20261128-7K3M9-TZQXA (urgent) — review" (UTF-8).
std::string render_email_subject(const Delivery& delivery);

// The text part (UTF-8, "\n" line ends, lines of at most 76 characters where
// words allow). Throws DocumentError for a document that is not a JSON object.
std::string render_email_text(const Delivery& delivery, const OfficeConfig& office);
struct ReferrerSummary;
// With the referrer already read (read_referral_document) by the caller.
std::string render_email_text(const Delivery& delivery, const ReferrerSummary& referrer, const OfficeConfig& office);

// "referral-R-20261128-7K3M9-TZQXA.pdf"
std::string referral_pdf_filename(const Delivery& delivery);

}  // namespace referrald
