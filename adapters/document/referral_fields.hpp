// The referral's fields as labelled text, in the order a person reads them.
// Shared by the PDF and (for the referrer only) the email text, so both name
// things the same way. Every property of the document appears: one this
// code does not know (a later schema) is listed under "Other fields".
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "dispatch/adapter.hpp"

namespace referrald {

struct DocumentField {
  std::string label;
  std::string value;  // UTF-8; may hold line breaks (notes)
};

struct DocumentSection {
  std::string title;
  std::vector<DocumentField> fields;
};

// The referrer as the cover sheet and the email name them.
struct ReferrerSummary {
  std::string name;  // "Dana Whitfield, MD"
  std::string organization;
  std::string phone;
  std::string fax;  // empty when not given
  std::string email;
};

// The patient as a referrer's notice names them: initials and birth year
// only ("A. N.", "2014"), never the name or the full date.
struct PatientBrief {
  std::string initials;    // empty when the document gives no name
  std::string birth_year;  // empty when it gives no birth date
};
PatientBrief patient_brief(const Delivery& delivery);

// The delivery's document read once, for everything rendered from it.
struct ReferralDocument {
  std::vector<DocumentSection> sections;
  ReferrerSummary referrer;
};

// Throw DocumentError (referral_pdf.hpp) unless delivery.document is a JSON object.
ReferralDocument read_referral_document(const Delivery& delivery, const OfficeConfig& office);
std::vector<DocumentSection> referral_sections(const Delivery& delivery, const OfficeConfig& office);
ReferrerSummary referrer_summary(const Delivery& delivery);

// "2026-11-28 09:15 CST" in the office's time zone (UTC if it is unknown).
std::string format_office_time(const OfficeConfig& office, std::chrono::system_clock::time_point t);

}  // namespace referrald
