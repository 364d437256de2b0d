// Attachments at intake: what a file is, decided from its bytes by the type's
// own library (attachments/inspect.cpp); the limits; and the pipeline with
// base64 attachments in a real referral (schema, validator, plan). The
// fixtures are real files (tests/data/attachments/README.md).
#include "attachments/inspect.hpp"

#include <gtest/gtest.h>
#include <jpeglib.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <png.h>
#include <tiffio.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <variant>

#include "attachments/pdf_check.hpp"
#include "intake/pipeline.hpp"
#include "spool_file.hpp"
#include "util/crypto.hpp"
#include "util/file_reader.hpp"
#include "util/sealed_spool.hpp"

namespace referrald {
namespace {

using namespace std::chrono;
using namespace std::chrono_literals;

std::string read_bytes_at(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string read_bytes(const std::string& relative) {
  return read_bytes_at(std::string(REFERRALD_SOURCE_DIR) + "/" + relative);
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

// ---- from a spool (util/sealed_spool.hpp), a block at a time ----

// Files of several spool blocks, made here by the types' own encoders from
// noise (which does not compress): their structures cross the blocks.
std::string noise(std::size_t n, unsigned seed) {
  std::mt19937 random(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(random() & 0xffU);
  return out;
}

std::string large_jpeg() {
  constexpr JDIMENSION side = 512;
  const std::string pixels = noise(std::size_t{side} * side * 3, 1);
  jpeg_compress_struct cinfo;
  jpeg_error_mgr error;
  cinfo.err = jpeg_std_error(&error);
  jpeg_create_compress(&cinfo);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&cinfo, &buffer, &size);
  cinfo.image_width = side;
  cinfo.image_height = side;
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, 95, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < side) {
    auto* row =
        reinterpret_cast<JSAMPLE*>(const_cast<char*>(pixels.data())) + std::size_t{cinfo.next_scanline} * side * 3;
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  std::string out(reinterpret_cast<const char*>(buffer), size);
  std::free(buffer);
  return out;
}

std::string large_png() {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = 400;
  image.height = 400;
  image.format = PNG_FORMAT_RGB;
  const std::string pixels = noise(std::size_t{400} * 400 * 3, 2);
  png_alloc_size_t size = 0;
  if (png_image_write_to_memory(&image, nullptr, &size, 0, pixels.data(), 0, nullptr) == 0) return {};
  std::string out(size, '\0');
  if (png_image_write_to_memory(&image, out.data(), &size, 0, pixels.data(), 0, nullptr) == 0) return {};
  out.resize(size);
  return out;
}

// Two pages, in strips of 16 rows.
std::string large_tiff() {
  const auto path = std::filesystem::temp_directory_path() / ("referrald-large-" + std::to_string(::getpid()) + ".tif");
  TIFF* tif = TIFFOpen(path.c_str(), "w");
  if (tif == nullptr) return {};
  constexpr std::uint32_t side = 300;
  for (unsigned page = 0; page < 2; ++page) {
    TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, side);
    TIFFSetField(tif, TIFFTAG_IMAGELENGTH, side);
    TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, 8);
    TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, 3);
    TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_RGB);
    TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    TIFFSetField(tif, TIFFTAG_COMPRESSION, COMPRESSION_NONE);
    TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, 16);
    std::string row = noise(side * 3, 3 + page);
    for (std::uint32_t y = 0; y < side; ++y) {
      std::rotate(row.begin(), row.begin() + 7, row.end());
      TIFFWriteScanline(tif, row.data(), y, 0);
    }
    TIFFWriteDirectory(tif);
  }
  TIFFClose(tif);
  std::string out = read_bytes_at(path);
  std::filesystem::remove(path);
  return out;
}

// records.pdf's pages 400 times over, written by qpdf: objects, xref and
// trailer spread over the blocks.
std::string large_pdf() {
  const std::string records = fixture("records.pdf");
  return merge_pdfs(std::vector<PdfPages>(400, PdfPages{records, 0, -1}));
}

// A spool of `bytes` in the temporary directory, and its file as this
// process has it open (to be changed under it).
struct Spooled {
  std::shared_ptr<SealedSpool> spool;
  std::filesystem::path file;
};
Spooled spooled(const std::string& bytes) {
  const auto dir = std::filesystem::temp_directory_path() / ("referrald-inspect-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  Spooled out{std::make_shared<SealedSpool>(dir), {}};
  out.spool->append(bytes);
  out.spool->finish();
  out.file = test::open_spool_file(dir);
  std::filesystem::remove(dir);  // the file has no name: the directory is empty
  return out;
}

struct LargeFile {
  const char* type;
  std::string bytes;
  int pages;
};
std::vector<LargeFile> large_files() {
  return {{"application/pdf", large_pdf(), 800},
          {"image/jpeg", large_jpeg(), 1},
          {"image/png", large_png(), 1},
          {"image/tiff", large_tiff(), 2}};
}

TEST(Attachments, AFileOfManySpoolBlocksIsInspectedFromTheSpoolAsFromMemory) {
  for (const auto& large : large_files()) {
    SCOPED_TRACE(large.type);
    ASSERT_GT(large.bytes.size(), 3 * SealedSpool::block_size) << "not a file of several blocks";
    // Whole: accepted from the spool, as from memory.
    auto whole = spooled(large.bytes);
    FileReader reader(*whole.spool);
    const auto inspected = inspect_file(reader);
    ASSERT_TRUE(std::holds_alternative<InspectedFile>(inspected)) << std::get<std::string>(inspected);
    EXPECT_EQ(std::get<InspectedFile>(inspected).content_type, large.type);
    EXPECT_EQ(std::get<InspectedFile>(inspected).pages, large.pages);
    EXPECT_EQ(accepted(large.bytes).pages, large.pages);

    // Cut short past its first blocks: refused with the message a file in
    // memory has.
    const std::string cut = large.bytes.substr(0, large.bytes.size() * 3 / 5);
    auto short_one = spooled(cut);
    FileReader short_reader(*short_one.spool);
    const auto refusal = inspect_file(short_reader);
    ASSERT_TRUE(std::holds_alternative<std::string>(refusal)) << "a file cut short is accepted";
    EXPECT_NE(std::get<std::string>(refusal).find("damaged or cut short"), std::string::npos)
        << std::get<std::string>(refusal);
    EXPECT_EQ(refused(cut), std::get<std::string>(refusal));

    // The same through inspect_attachments, the intake's step.
    std::vector<Attachment> files(1);
    files[0].spooled = whole.spool;
    EXPECT_TRUE(inspect_attachments({}, files).empty());
    EXPECT_EQ(files[0].content_type, large.type);
    EXPECT_EQ(files[0].sha256, sha256_hex(large.bytes));
  }
}

// A block of the spool changed on disk while the file waited: the
// inspection is an error (the intake's 503, nothing stored), never "the
// file is damaged" (a 422 that would blame the referrer).
TEST(Attachments, ASpoolChangedOnDiskIsAnErrorNotADamagedFile) {
  for (const auto& large : large_files()) {
    SCOPED_TRACE(large.type);
    auto changed = spooled(large.bytes);
    ASSERT_FALSE(changed.file.empty());
    // In its last block, which every decoder reads (qpdf reads a PDF's
    // trailer and the objects it needs, not every block).
    test::change_byte(changed.file,
                      static_cast<std::streamoff>((changed.spool->blocks() - 1) * (SealedSpool::block_size + 16) + 40));
    std::vector<Attachment> files(1);
    files[0].spooled = changed.spool;
    EXPECT_THROW(inspect_attachments({}, files), std::runtime_error);
    EXPECT_TRUE(files[0].content_type.empty());
  }
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
