// The referral document (PDF) and the email's words. The PDF is checked the
// way a person would: its text, extracted by poppler's pdftotext, must hold
// what the office needs; page counts come from pdfinfo.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

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
namespace fs = std::filesystem;
using test::output_of;

const auto received = sys_days{year{2026} / November / 28} + 15h + 4min;  // 09:04 in Memphis
const auto sent = received + 2min;

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

json sample() { return json::parse(read_all(fs::path(REFERRALD_SOURCE_DIR) / "tests/data/asps-routine.json")); }

Delivery delivery_for(const json& doc, Urgency urgency = Urgency::routine) {
  Delivery d;
  d.id = 7;
  d.referral_id = "R-20261128-7K3M9-TZQXA";
  d.target = "office-email";
  d.identity = d.referral_id + "." + d.target;
  d.attempt = 1;
  d.received_at = received;
  d.decision = Decision::review;
  d.urgency = urgency;
  d.reasons = {
      {"NO_OPEN_TRIAL", "Alveolar soft part sarcoma is treated here, but no clinical trial is open for it now."}};
  d.document = doc.dump();
  return d;
}

OfficeConfig office() { return test::sample_office(); }

class Pdf : public ::testing::Test {
 protected:
  void SetUp() override {
    if (output_of("command -v pdftotext").empty()) GTEST_SKIP() << "pdftotext (poppler-utils) is not installed";
  }

  // The PDF's text as pdftotext extracts it (reading order, not layout).
  std::string text_of(const std::string& pdf) {
    const auto file = dir_ / ("doc" + std::to_string(++count_) + ".pdf");
    std::ofstream(file, std::ios::binary) << pdf;
    return output_of("pdftotext -enc UTF-8 " + file.string() + " - 2>&1");
  }
  int pages_of(const std::string& pdf) {
    const auto file = dir_ / ("doc" + std::to_string(++count_) + ".pdf");
    std::ofstream(file, std::ios::binary) << pdf;
    std::smatch m;
    const std::string info = output_of("pdfinfo " + file.string() + " 2>&1");
    if (!std::regex_search(info, m, std::regex(R"(Pages:\s+(\d+))"))) return -1;
    return std::stoi(m[1]);
  }

  test::TempDir dir_;
  int count_ = 0;
};

TEST_F(Pdf, CoverSheetAndReferralCarryWhatTheOfficeNeeds) {
  const std::string pdf = render_referral_pdf(delivery_for(sample()), office(), sent);
  ASSERT_TRUE(pdf.starts_with("%PDF-"));
  const std::string text = text_of(pdf);
  // Cover sheet: to the office and its fax, from the referrer, reference,
  // date in the office's time zone, pages, call-back numbers, the notice.
  EXPECT_NE(text.find("FAX"), std::string::npos) << text;
  EXPECT_NE(text.find("Physician/Patient Referral Office"), std::string::npos);
  EXPECT_NE(text.find("901-595-4011"), std::string::npos);
  EXPECT_NE(text.find("R-20261128-7K3M9-TZQXA"), std::string::npos);
  EXPECT_NE(text.find("Dana Whitfield, MD"), std::string::npos);
  EXPECT_NE(text.find("Delta Pediatrics"), std::string::npos);
  EXPECT_NE(text.find("+1 870 555 0101"), std::string::npos);  // the referrer's fax
  EXPECT_NE(text.find("1-888-226-4343"), std::string::npos);
  EXPECT_NE(text.find("1-800-349-4334"), std::string::npos);
  EXPECT_NE(text.find("2026-11-28 09:06 CST"), std::string::npos) << text;
  EXPECT_NE(text.find("CONFIDENTIALITY NOTICE"), std::string::npos);
  EXPECT_NE(text.find("protected health information"), std::string::npos);
  // The referral: the patient and every other field.
  EXPECT_NE(text.find("Ava Nguyen"), std::string::npos);
  for (const char* value :
       {"2014-03-09", "Female", "72401", "Linh Nguyen", "mother", "+1 870 555 0142", "Alveolar soft part sarcoma",
        "ICD-O-3 9581/3", "2026-10-02", "1234567893", "+1 870 555 0100", "dwhitfield@example.org",
        "Painless mass in the left thigh", "no clinical trial is open", "NO_OPEN_TRIAL", "review", "routine"}) {
    EXPECT_NE(text.find(value), std::string::npos) << value << "\n" << text;
  }
  EXPECT_NE(text.find("age 12 at referral"), std::string::npos) << text;
}

TEST_F(Pdf, CoverSheetCountsEveryPage) {
  auto doc = sample();
  std::string notes;
  while (notes.size() < 3900) notes += "Imaging on 2026-10-01 showed a 6 cm mass; biopsy confirmed the diagnosis.\n";
  doc["notes"] = notes;
  const std::string pdf = render_referral_pdf(delivery_for(doc), office(), sent);
  const int pages = pages_of(pdf);
  ASSERT_GE(pages, 3);  // the cover sheet and at least two referral pages
  const std::string text = text_of(pdf);
  EXPECT_NE(text.find(std::to_string(pages) + " (including this cover sheet)"), std::string::npos) << text;
  EXPECT_NE(text.find("Page " + std::to_string(pages) + " of " + std::to_string(pages)), std::string::npos);
}

TEST_F(Pdf, NamesOutsideLatin1AreShownWithTheUnicodeFont) {
  if (!default_document_fonts().unicode_font) GTEST_SKIP() << "fonts-dejavu-core is not installed";
  auto doc = sample();
  doc["patient"]["given_name"] = "Thị Ánh";
  doc["patient"]["family_name"] = "Nguyễn";
  doc["patient"]["guardian"]["name"] = "Дмитрий Łukasz";
  const std::string pdf = render_referral_pdf(delivery_for(doc), office(), sent);
  const std::string text = text_of(pdf);
  EXPECT_NE(text.find("Thị Ánh Nguyễn"), std::string::npos) << text;
  EXPECT_NE(text.find("Дмитрий Łukasz"), std::string::npos) << text;
  EXPECT_NE(text.find("R-20261128-7K3M9-TZQXA"), std::string::npos);
  EXPECT_NE(text.find("901-595-4011"), std::string::npos);
  EXPECT_NE(text.find("CONFIDENTIALITY NOTICE"), std::string::npos);
  EXPECT_EQ(text.find("appear as \"?\""), std::string::npos);
}

TEST_F(Pdf, WithoutTheUnicodeFontCharactersAreReplacedAndTheCoverSaysSo) {
  auto doc = sample();
  doc["patient"]["family_name"] = "Nguyễn";
  doc["patient"]["given_name"] = "Zoë";  // Windows-1252 holds ë
  const std::string pdf = render_referral_pdf(delivery_for(doc), office(), sent, DocumentFonts{});
  const std::string text = text_of(pdf);
  EXPECT_NE(text.find("Zoë Nguy?n"), std::string::npos) << text;
  EXPECT_NE(text.find("cannot be shown"), std::string::npos) << text;
  EXPECT_NE(text.find("R-20261128-7K3M9-TZQXA"), std::string::npos);
}

TEST_F(Pdf, AFontFileThatIsNoFontFallsBackInsteadOfFailing) {
  std::ofstream(dir_ / "broken.ttf") << "not a font";
  auto doc = sample();
  doc["patient"]["family_name"] = "Nguyễn";
  const std::string pdf = render_referral_pdf(delivery_for(doc), office(), sent, DocumentFonts{dir_ / "broken.ttf"});
  const std::string text = text_of(pdf);
  EXPECT_NE(text.find("Ava Nguy?n"), std::string::npos) << text;
  EXPECT_NE(text.find("cannot be shown"), std::string::npos);
}

TEST_F(Pdf, PropertiesALaterSchemaAddsAreListedToo) {
  auto doc = sample();
  doc["insurance"] = {{"payer", "Acme Health"}};
  doc["patient"]["language"] = "Vietnamese";
  const std::string text = text_of(render_referral_pdf(delivery_for(doc), office(), sent));
  EXPECT_NE(text.find("Other fields"), std::string::npos) << text;
  EXPECT_NE(text.find("/insurance/payer"), std::string::npos) << text;
  EXPECT_NE(text.find("Acme Health"), std::string::npos);
  EXPECT_NE(text.find("/patient/language"), std::string::npos);
  EXPECT_NE(text.find("Vietnamese"), std::string::npos);
}

TEST(Document, KnownFieldsAreNotListedTwice) {
  const auto sections = referral_sections(delivery_for(sample()), office());
  for (const auto& s : sections) EXPECT_NE(s.title, "Other fields");
}

TEST(Document, ADocumentThatIsNotAReferralIsAnError) {
  Delivery d = delivery_for(sample());
  d.document = "not json";
  EXPECT_THROW(render_referral_pdf(d, office(), sent), DocumentError);
  d.document = "[1,2]";
  EXPECT_THROW(render_referral_pdf(d, office(), sent), DocumentError);
  EXPECT_THROW(render_email_text(d, office()), DocumentError);
}

TEST(Document, Windows1252) {
  std::size_t replaced = 0;
  EXPECT_EQ(to_windows_1252("Zoë — “quoted” €", &replaced), "Zo\xEB \x97 \x93quoted\x94 \x80");
  EXPECT_EQ(replaced, 0U);
  EXPECT_EQ(to_windows_1252("Nguyễn 阮", &replaced), "Nguy?n ?");
  EXPECT_EQ(replaced, 2U);
  EXPECT_EQ(to_windows_1252("a\tb\nc"), "a b c");
  EXPECT_EQ(to_windows_1252("bad \xC3 end"), "bad ? end");  // a broken sequence is replaced, not dropped
  EXPECT_TRUE(fits_windows_1252("José Ødegård"));
  EXPECT_FALSE(fits_windows_1252("Łukasz"));
}

TEST(EmailText, SubjectNamesReferenceUrgencyAndDecisionOnly) {
  EXPECT_EQ(render_email_subject(delivery_for(sample(), Urgency::urgent)),
            "Referral R-20261128-7K3M9-TZQXA (urgent) — review");
}

TEST(EmailText, SaysWhoReferredTheDecisionAndThatThePdfIsAttached) {
  const std::string text = render_email_text(delivery_for(sample()), office());
  EXPECT_NE(text.find("Referred by: Dana Whitfield, MD, Delta Pediatrics"), std::string::npos) << text;
  EXPECT_NE(text.find("Decision: review"), std::string::npos);
  const std::string unwrapped = std::regex_replace(text, std::regex("\n +"), " ");
  EXPECT_NE(unwrapped.find("- Alveolar soft part sarcoma is treated here, but no clinical trial is open for it now. "
                           "(NO_OPEN_TRIAL)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("The referral is attached as PDF"), std::string::npos);
  EXPECT_NE(text.find("R-20261128-7K3M9-TZQXA"), std::string::npos);
  EXPECT_NE(text.find("+1 870 555 0100"), std::string::npos);
  // No patient data in the text part: that is in the attachment only.
  for (const char* phi : {"Ava", "Nguyen", "2014-03-09", "72401", "Painless", "0142"}) {
    EXPECT_EQ(text.find(phi), std::string::npos) << phi;
  }
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) EXPECT_LE(line.size(), 78U) << line;
}

TEST(EmailText, ALineBreakInAReferrerFieldCannotStartALine) {
  auto doc = sample();
  doc["referrer"]["organization"] = "Delta\nDecision: accepted";
  const std::string text = render_email_text(delivery_for(doc), office());
  EXPECT_EQ(text.find("\nDecision: accepted"), std::string::npos) << text;
  EXPECT_NE(text.find("Delta Decision: accepted"), std::string::npos) << text;
}

TEST(EmailText, OfficeTimeFallsBackToUtcForAnUnknownZone) {
  OfficeConfig o = office();
  EXPECT_EQ(format_office_time(o, received), "2026-11-28 09:04 CST");
  o.hours.time_zone = "Nowhere/Atlantis";
  EXPECT_EQ(format_office_time(o, received), "2026-11-28 15:04 UTC");
}

}  // namespace
}  // namespace referrald
