// Attachments at intake: what a file is, decided from its bytes by the type's
// own library (attachments/inspect.cpp); the limits; and the pipeline with
// base64 attachments in a real referral (schema, validator, plan). The
// fixtures are real files (tests/data/attachments/README.md).
#include "attachments/inspect.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include <fstream>
#include <sstream>
#include <string>
#include <variant>

#include "intake/pipeline.hpp"
#include "util/crypto.hpp"

namespace referrald {
namespace {

using namespace std::chrono;
using namespace std::chrono_literals;

std::string read_bytes(const std::string& relative) {
  std::ifstream in(std::string(REFERRALD_SOURCE_DIR) + "/" + relative, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string fixture(const std::string& name) { return read_bytes("tests/data/attachments/" + name); }

// Base64 by OpenSSL's encoder, not by the decoder under test.
std::string base64(const std::string& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

InspectedFile accepted(const std::string& bytes) {
  auto result = inspect_file(bytes);
  EXPECT_TRUE(std::holds_alternative<InspectedFile>(result)) << std::get<std::string>(result);
  return std::holds_alternative<InspectedFile>(result) ? std::get<InspectedFile>(result) : InspectedFile{};
}

std::string refused(const std::string& bytes) {
  auto result = inspect_file(bytes);
  EXPECT_TRUE(std::holds_alternative<std::string>(result))
      << "accepted as " << std::get<InspectedFile>(result).content_type;
  return std::holds_alternative<std::string>(result) ? std::get<std::string>(result) : std::string();
}

TEST(Attachments, EachAcceptedTypeIsToldFromItsBytesWithItsPages) {
  const auto pdf = accepted(fixture("records.pdf"));
  EXPECT_EQ(pdf.content_type, "application/pdf");
  EXPECT_EQ(pdf.pages, 2);
  EXPECT_EQ(accepted(fixture("image.jpg")).content_type, "image/jpeg");
  EXPECT_EQ(accepted(fixture("image.png")).content_type, "image/png");
  const auto tiff = accepted(fixture("image.tif"));
  EXPECT_EQ(tiff.content_type, "image/tiff");
  EXPECT_EQ(tiff.pages, 1);
}

TEST(Attachments, AnythingElseIsRefusedWhateverItIsCalled) {
  EXPECT_NE(refused(read_bytes("tests/data/asps-routine.json")).find("is not a PDF, JPEG, PNG or TIFF"),
            std::string::npos);
  std::ifstream in("/bin/true", std::ios::binary);  // an executable, as a referrer's "report.pdf"
  std::ostringstream elf;
  elf << in.rdbuf();
  EXPECT_NE(refused(elf.str()).find("is not a PDF, JPEG, PNG or TIFF"), std::string::npos);
  EXPECT_FALSE(refused("").empty());
}

TEST(Attachments, AnEncryptedPdfIsRefused) {
  EXPECT_NE(refused(fixture("encrypted.pdf")).find("encrypted"), std::string::npos);
}

TEST(Attachments, AFileThatOnlyStartsLikeItsTypeIsRefused) {
  for (const char* name : {"records.pdf", "image.jpg", "image.png", "image.tif"}) {
    const std::string whole = fixture(name);
    const std::string problem = refused(whole.substr(0, whole.size() / 2));
    EXPECT_NE(problem.find("damaged or cut short"), std::string::npos) << name << ": " << problem;
  }
  EXPECT_NE(refused("%PDF-1.7\nnothing else").find("damaged or cut short"), std::string::npos);
  EXPECT_NE(refused(std::string("\xFF\xD8\xFF\xE0", 4) + std::string(100, 'x')).find("damaged or cut short"),
            std::string::npos);
}

TEST(Attachments, TheLimitsNameTheFileAndTheLimit) {
  AttachmentLimits limits;
  limits.max_attachments = 2;
  limits.max_attachment_bytes = 3072;
  limits.max_total_bytes = 4096;
  std::vector<Attachment> files(3);
  for (auto& f : files) f.data = fixture("records.pdf");
  auto errors = inspect_attachments(limits, files);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].path, "/attachments");
  EXPECT_EQ(errors[0].message, "has 3 files; at most 2 may come with one referral");

  files = {Attachment{}, Attachment{}};
  files[0].data = fixture("records.pdf");    // 910 bytes
  files[1].data = fixture("encrypted.pdf");  // under the size limit, but encrypted
  errors = inspect_attachments(limits, files);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].path, "/attachments/1/data");
  EXPECT_EQ(files[0].content_type, "application/pdf");
  EXPECT_EQ(files[0].sha256, sha256_hex(fixture("records.pdf")));

  files = {Attachment{}, Attachment{}};
  files[0].data = fixture("image.tif");  // 2706
  files[1].data = std::string(4096, 'x');
  errors = inspect_attachments(limits, files);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0].path, "/attachments/1/data");
  EXPECT_EQ(errors[0].message, "is 4 kB, larger than the 3 kB one file may be");
  EXPECT_EQ(errors[1].path, "/attachments");
  EXPECT_EQ(errors[1].message, "the files come to 6.6 kB, more than the 4 kB one referral's files may be");

  limits.max_attachments = 0;
  files.resize(1);
  errors = inspect_attachments(limits, files);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].message, "this office takes no attachments; send the records by other means");
}

TEST(Attachments, Base64IsDecodedWithPaddingAndMimeLineBreaks) {
  EXPECT_EQ(base64_decode("aGVsbG8="), "hello");
  EXPECT_EQ(base64_decode("aGVs\r\nbG8="), "hello");
  EXPECT_EQ(base64_decode(""), "");
  EXPECT_FALSE(base64_decode("aGVsbG8*"));
  EXPECT_FALSE(base64_decode("aGVsbG"));  // not whole
  const std::string pdf = fixture("records.pdf");
  EXPECT_EQ(base64_decode(base64(pdf)), pdf);
}

// ---- through the pipeline ----

const ReferralValidator& validator() {
  static const ReferralValidator v(std::string(REFERRALD_SOURCE_DIR) + "/schemas/referral.v1.schema.json");
  return v;
}

IntakeResult plan_with(const nlohmann::json& attachments, const AttachmentLimits& limits = {}) {
  auto doc = nlohmann::json::parse(read_bytes("tests/data/asps-routine.json"));
  doc["attachments"] = attachments;
  IntakePolicy policy;
  policy.attachment_limits = limits;
  Submission s;
  s.channel = "api";
  s.client = "key:1a2b3c4d";
  s.body = doc.dump();
  s.received_at = sys_days{2026y / December / 1} + 16h;
  return plan_intake(policy, validator(), s);
}

TEST(Attachments, AReferralCarriesItsFilesApartFromItsDocument) {
  const auto result = plan_with(nlohmann::json::array(
      {{{"title", "Pathology report"}, {"content_type", "image/png"}, {"data", base64(fixture("records.pdf"))}},
       {{"title", "MRI"}, {"data", base64(fixture("image.jpg"))}}}));
  ASSERT_TRUE(std::holds_alternative<IntakePlan>(result));
  const auto& referral = std::get<IntakePlan>(result).referral;
  ASSERT_EQ(referral.attachments.size(), 2u);
  EXPECT_EQ(referral.attachments[0].title, "Pathology report");
  EXPECT_EQ(referral.attachments[0].content_type, "application/pdf") << "the declared type is not believed";
  EXPECT_EQ(referral.attachments[0].data, fixture("records.pdf"));
  EXPECT_EQ(referral.attachments[0].pages, 2);
  EXPECT_EQ(referral.attachments[1].content_type, "image/jpeg");
  EXPECT_EQ(referral.attachments[1].sha256, sha256_hex(fixture("image.jpg")));
  EXPECT_FALSE(nlohmann::json::parse(referral.document).contains("attachments"));
}

TEST(Attachments, AFileThatIsRefusedIsNamedByItsPointer) {
  const auto result = plan_with(nlohmann::json::array({{{"title", "ok"}, {"data", base64(fixture("image.png"))}},
                                                       {{"title", "report.pdf"}, {"data", base64("MZ\x90\x00")}},
                                                       {{"title", "x"}, {"data", "not base64!"}},
                                                       {{"title", "a\u0007b"}, {"data", base64("x")}}}));
  ASSERT_TRUE(std::holds_alternative<InvalidReferral>(result));
  const auto& errors = std::get<InvalidReferral>(result).errors;
  std::vector<std::string> paths;
  for (const auto& e : errors) paths.push_back(e.path);
  // Field checks first: the files are opened only for an otherwise valid referral.
  EXPECT_EQ(paths, (std::vector<std::string>{"/attachments/2/data", "/attachments/3/title"}));

  const auto bytes_only = plan_with(nlohmann::json::array(
      {{{"title", "ok"}, {"data", base64(fixture("image.png"))}}, {{"title", "report.pdf"}, {"data", base64("MZ")}}}));
  ASSERT_TRUE(std::holds_alternative<InvalidReferral>(bytes_only));
  const auto& e = std::get<InvalidReferral>(bytes_only).errors;
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].path, "/attachments/1/data");
}

TEST(Attachments, TheSchemaRefusesAnAttachmentWithoutTitleOrData) {
  const auto result = plan_with(nlohmann::json::array({{{"data", base64("x")}}, {{"title", "t"}, {"size", 3}}}));
  ASSERT_TRUE(std::holds_alternative<InvalidReferral>(result));
  std::vector<std::string> paths;
  for (const auto& e : std::get<InvalidReferral>(result).errors) paths.push_back(e.path);
  EXPECT_NE(std::find(paths.begin(), paths.end(), "/attachments/0/title"), paths.end());
  EXPECT_NE(std::find(paths.begin(), paths.end(), "/attachments/1/data"), paths.end());
}

}  // namespace
}  // namespace referrald
