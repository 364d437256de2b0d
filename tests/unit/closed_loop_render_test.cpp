// What the closed loop's messages say: the escalation email, fax cover and
// page; the referrer's notice (email and fax) with the patient by initials
// and birth year only; "possible duplicate of"; the acknowledgement link
// (on email and fax, never on a page). Pure rendering, no peers.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "adapters/document/page_text.hpp"
#include "adapters/document/referral_fields.hpp"
#include "adapters/document/referral_pdf.hpp"
#include "adapters/document/referral_text.hpp"
#include "support/harness.hpp"
#include "support/office.hpp"
#include "support/peers.hpp"

namespace referrald {
namespace {

using json = nlohmann::json;
using namespace std::chrono;

const auto received = sys_days{year{2026} / November / 28} + 15h + 4min;
const std::string link = "https://referrals.example.org/ack/3q2-7wEJnOJ8kU8yQv6Yc8d0oXh0bX6c1vF3tB0A9aQ";

Delivery delivery() {
  Delivery d;
  d.id = 7;
  d.referral_id = "R-20261128-7K3M9-TZQXA";
  d.target = "office-email";
  d.identity = d.referral_id + "." + d.target;
  d.received_at = received;
  d.decision = Decision::review;
  d.urgency = Urgency::emergent;
  d.document = test::sample("asps-routine.json");
  return d;
}

Delivery escalation(int step, seconds after, seconds waited) {
  Delivery d = delivery();
  d.purpose = {PurposeKind::escalation, step};
  d.escalation = EscalationNotice{step, after, waited};
  return d;
}

Delivery notice(OfficeStatus status, std::optional<std::string> note = {}) {
  Delivery d = delivery();
  d.target = "referrer-email";
  d.purpose = {PurposeKind::notice, 12};
  d.notice = StatusNotice{status, std::move(note)};
  d.recipient = "dwhitfield@example.org";
  return d;
}

OfficeConfig office() { return test::sample_office(); }

// The patient's identity as the sample holds it: none of it may be in a
// referrer's notice or a page.
const char* const patient_details[] = {"Ava", "Nguyen", "2014-03-09", "Linh", "72401", "sarcoma"};

std::string pdf_text(const std::string& pdf) {
  test::TempDir dir;
  test::write_file(dir / "d.pdf", pdf);
  return test::output_of("pdftotext -enc UTF-8 " + (dir / "d.pdf").string() + " - 2>&1");
}

bool has_pdftotext() { return !test::output_of("command -v pdftotext").empty(); }

TEST(EscalationMessage, EmailSaysItIsAnEscalationWhichStepAndHowLong) {
  Delivery d = escalation(2, 45min, 47min);
  d.ack_link = link;
  EXPECT_EQ(render_email_subject(d), "ESCALATION step 2: referral R-20261128-7K3M9-TZQXA (emergent) not acknowledged");
  const std::string text = render_email_text(d, office());
  EXPECT_EQ(text.rfind("ESCALATION, step 2: the emergent referral R-20261128-7K3M9-TZQXA has not", 0), 0U) << text;
  EXPECT_NE(text.find("waited 47 minutes"), std::string::npos) << text;
  EXPECT_NE(text.find("due after 45 minutes"), std::string::npos) << text;
  EXPECT_NE(text.find(link + "\n"), std::string::npos) << "the link on a line of its own: " << text;
  EXPECT_NE(text.find("referralctl ack R-20261128-7K3M9-TZQXA"), std::string::npos) << text;
}

TEST(EscalationMessage, PageNamesStepWaitReferenceAndCallBackButNoLinkOrPatient) {
  Delivery d = escalation(1, 15min, 16min);
  d.ack_link = link;  // never carried into a page
  const std::string page = page_text(d, "1-888-226-4343", 128);
  EXPECT_EQ(page,
            "referrald ESCALATION 1 R-20261128-7K3M9-TZQXA EMERGENT not acknowledged after 16 minutes call "
            "1-888-226-4343");
  const std::string short_page = page_text(d, "1-888-226-4343", 64);
  EXPECT_EQ(short_page, "ESC1 R-20261128-7K3M9-TZQXA EMERGENT 16 minutes 1-888-226-4343");
  for (const auto& p : {page, short_page}) {
    EXPECT_EQ(p.find("http"), std::string::npos) << p;
    for (const char* phi : patient_details) EXPECT_EQ(p.find(phi), std::string::npos) << phi << ": " << p;
  }
}

TEST(EscalationMessage, FaxCoverSaysEscalationAndCarriesTheLink) {
  if (!has_pdftotext()) GTEST_SKIP() << "pdftotext (poppler-utils) is not installed";
  Delivery d = escalation(1, 15min, 20min);
  d.ack_link = link;
  const std::string text = pdf_text(render_referral_pdf(d, office(), received + 20min));
  EXPECT_NE(text.find("ESCALATION, step 1"), std::string::npos) << text;
  EXPECT_NE(text.find("waited 20 minutes"), std::string::npos) << text;
  EXPECT_NE(text.find(link), std::string::npos) << text;
}

TEST(IntakeMessage, PossibleDuplicateIsNamedInTheEmailAndOnTheCover) {
  Delivery d = delivery();
  d.duplicate_of = "R-20261120-AB3CD-EF4GH";
  const std::string text = render_email_text(d, office());
  EXPECT_NE(text.find("Possible duplicate of R-20261120-AB3CD-EF4GH"), std::string::npos) << text;
  if (!has_pdftotext()) return;
  const std::string cover = pdf_text(render_referral_pdf(d, office(), received));
  EXPECT_NE(cover.find("Possible duplicate of"), std::string::npos) << cover;
  EXPECT_NE(cover.find("R-20261120-AB3CD-EF4GH"), std::string::npos) << cover;
}

TEST(IntakeMessage, WithoutALinkOrDuplicateTheEmailSaysNeither) {
  const std::string text = render_email_text(delivery(), office());
  EXPECT_EQ(text.find("duplicate"), std::string::npos);
  EXPECT_EQ(text.find("Acknowledge"), std::string::npos);
}

TEST(ReferrerNotice, EmailHasReferenceStatusNextStepsNumbersAndTheNote) {
  const Delivery d = notice(OfficeStatus::needs_info, "Please fax the pathology report\nand the MRI.");
  EXPECT_EQ(render_email_subject(d), "Your referral R-20261128-7K3M9-TZQXA: needs-info");
  const std::string text = render_email_text(d, office());
  for (const char* expected :
       {"R-20261128-7K3M9-TZQXA", "A. N., born 2014", "Status: on hold: the referral office needs more",
        "What happens next: Please send the information", "Information needed:", "  Please fax the pathology report",
        "  and the MRI.", "1-888-226-4343", "901-595-4011", "1-800-349-4334"}) {
    EXPECT_NE(text.find(expected), std::string::npos) << expected << "\n" << text;
  }
  for (const char* phi : patient_details) EXPECT_EQ(text.find(phi), std::string::npos) << phi << "\n" << text;
}

TEST(ReferrerNotice, TheNoteIsOnlyForNeedsInfo) {
  const std::string text = render_email_text(notice(OfficeStatus::accepted, "internal: bed 4 on Monday"), office());
  EXPECT_EQ(text.find("bed 4"), std::string::npos) << text;
  EXPECT_NE(text.find("Status: accepted; the referral office will contact you"), std::string::npos) << text;
  EXPECT_NE(text.find("What happens next: The referral office will contact you and the family"), std::string::npos)
      << text;
}

TEST(ReferrerNotice, FaxIsOnePageWithoutThePatientsDetails) {
  if (!has_pdftotext()) GTEST_SKIP() << "pdftotext (poppler-utils) is not installed";
  const std::string text = pdf_text(render_referral_pdf(notice(OfficeStatus::declined), office(), received));
  EXPECT_NE(text.find("Referral update"), std::string::npos) << text;
  EXPECT_NE(text.find("A. N., born 2014"), std::string::npos) << text;
  EXPECT_NE(text.find("declined"), std::string::npos) << text;
  EXPECT_NE(text.find("Dana Whitfield"), std::string::npos) << "addressed to the referrer: " << text;
  for (const char* phi : patient_details) EXPECT_EQ(text.find(phi), std::string::npos) << phi << "\n" << text;
}

TEST(ReferrerNotice, InitialsOfNamesOutsideAscii) {
  Delivery d = delivery();
  json doc = json::parse(d.document);
  doc["patient"]["given_name"] = "élodie";
  doc["patient"]["family_name"] = "Łukasiewicz";
  d.document = doc.dump();
  const PatientBrief p = patient_brief(d);
  EXPECT_EQ(p.initials, "é. Ł.");
  EXPECT_EQ(p.birth_year, "2014");
}

}  // namespace
}  // namespace referrald
