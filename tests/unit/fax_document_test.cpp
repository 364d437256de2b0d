// The fax of a referral with files: the cover sheet and referral, then every
// file as pages (adapters/document/fax_document.cpp). Checked as a person
// would: pdfinfo's page count, pdftotext's text, and pdfimages' list of the
// pictures with their size on the page (poppler-utils).
#include "adapters/document/fax_document.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <variant>

#include "attachments/inspect.hpp"
#include "attachments/pdf_check.hpp"
#include "support/harness.hpp"
#include "support/office.hpp"
#include "support/peers.hpp"

namespace referrald {
namespace {

using json = nlohmann::json;
using namespace std::chrono;
namespace fs = std::filesystem;
using test::output_of;

const auto sent = sys_days{year{2026} / November / 28} + 15h + 6min;

std::string fixture(const std::string& name) {
  return test::read_file(fs::path(REFERRALD_SOURCE_DIR) / "tests/data/attachments" / name);
}

// A file as the dispatcher hands it over: inspected at intake.
Attachment attachment(std::string bytes) {
  const auto inspected = inspect_file(bytes);
  EXPECT_TRUE(std::holds_alternative<InspectedFile>(inspected));
  Attachment a;
  a.title = "Pathology report for Ava Nguyen";
  a.data = std::move(bytes);
  if (const auto* file = std::get_if<InspectedFile>(&inspected)) {
    a.content_type = file->content_type;
    a.pages = file->pages;
  }
  return a;
}

Delivery delivery_with(std::vector<Attachment> files) {
  Delivery d;
  d.id = 7;
  d.referral_id = "R-20261128-7K3M9-TZQXA";
  d.target = "office-fax";
  d.identity = d.referral_id + "." + d.target;
  d.received_at = sent - 2min;
  d.document = test::read_file(fs::path(REFERRALD_SOURCE_DIR) / "tests/data/asps-routine.json");
  d.attachments = std::move(files);
  return d;
}

class Fax : public ::testing::Test {
 protected:
  void SetUp() override {
    if (output_of("command -v pdfinfo").empty()) GTEST_SKIP() << "pdfinfo (poppler-utils) is not installed";
  }

  fs::path write(const std::string& bytes, const std::string& ext = ".pdf") {
    const auto file = dir_ / ("file" + std::to_string(++count_) + ext);
    std::ofstream(file, std::ios::binary) << bytes;
    return file;
  }
  int pages_of(const std::string& pdf) {
    std::smatch m;
    const std::string info = output_of("pdfinfo " + write(pdf).string() + " 2>&1");
    if (!std::regex_search(info, m, std::regex(R"(Pages:\s+(\d+))"))) return -1;
    return std::stoi(m[1]);
  }
  std::string text_of(const std::string& pdf, int page = 0) {
    const std::string range = page > 0 ? " -f " + std::to_string(page) + " -l " + std::to_string(page) : "";
    return output_of("pdftotext -enc UTF-8" + range + " " + write(pdf).string() + " - 2>&1");
  }
  // The pictures on the fax's pages: page, width and height drawn in points.
  struct Picture {
    int page = 0;
    double width = 0;  // from pdfimages' whole pixels per inch
    double height = 0;
    int pixels_wide = 0;
  };
  std::vector<Picture> pictures_of(const std::string& pdf) {
    std::vector<Picture> out;
    std::istringstream list(output_of("pdfimages -list " + write(pdf).string() + " 2>&1"));
    std::string line;
    // page num type width height color comp bpc enc interp object ID x-ppi y-ppi size ratio
    while (std::getline(list, line)) {
      std::istringstream fields(line);
      Picture p;
      std::string num, type, color, comp, bpc, enc, interp, object, id;
      int height_px = 0;
      double x_ppi = 0, y_ppi = 0;
      if (!(fields >> p.page >> num >> type >> p.pixels_wide >> height_px >> color >> comp >> bpc >> enc >> interp >>
            object >> id >> x_ppi >> y_ppi))
        continue;
      p.width = p.pixels_wide / x_ppi * 72;
      p.height = height_px / y_ppi * 72;
      out.push_back(p);
    }
    return out;
  }

  test::TempDir dir_;
  int count_ = 0;
};

TEST_F(Fax, WithoutFilesItIsTheReferralDocument) {
  const auto d = delivery_with({});
  const std::string fax = render_fax_pdf(d, test::sample_office(), sent, 50);
  EXPECT_EQ(pages_of(fax), pages_of(render_referral_pdf(d, test::sample_office(), sent)));
  EXPECT_EQ(text_of(fax).find("Records"), std::string::npos);
}

TEST_F(Fax, EveryFileFollowsTheReferralAsPagesAndTheCoverCountsThem) {
  const auto referral_only = pages_of(render_referral_pdf(delivery_with({}), test::sample_office(), sent));
  ASSERT_GE(referral_only, 2);
  const auto d = delivery_with({attachment(fixture("records.pdf")), attachment(fixture("image.jpg")),
                                attachment(fixture("two-pages.tif")), attachment(fixture("image.png"))});
  const std::string fax = render_fax_pdf(d, test::sample_office(), sent, 50);
  const int expected = referral_only + 2 + 1 + 2 + 1;
  EXPECT_EQ(pages_of(fax), expected);

  const std::string cover = text_of(fax, 1);
  EXPECT_NE(cover.find(std::to_string(expected) + " (including this cover sheet)"), std::string::npos) << cover;
  EXPECT_NE(cover.find("4 files, 6 pages"), std::string::npos) << cover;
  EXPECT_EQ(cover.find("Pathology report for Ava"), std::string::npos) << "a file's title is not on the fax";
  // The PDF's own pages come first after the referral, as they are.
  EXPECT_EQ(text_of(fax, referral_only + 1), text_of(fixture("records.pdf"), 1));
  // Each image page names its file and is numbered in the fax.
  const std::string tiff_page_2 = text_of(fax, referral_only + 5);
  EXPECT_NE(tiff_page_2.find("file 3 of 4 (TIFF image), page 2 of 2"), std::string::npos) << tiff_page_2;
  EXPECT_NE(tiff_page_2.find("Page " + std::to_string(referral_only + 5) + " of " + std::to_string(expected)),
            std::string::npos)
      << tiff_page_2;
  // One picture on each image page: the JPEG, both TIFF pages, the PNG.
  const auto pictures = pictures_of(fax);
  ASSERT_EQ(pictures.size(), 4U);
  EXPECT_EQ(pictures[0].page, referral_only + 3);
  EXPECT_EQ(pictures[1].page, referral_only + 4);
  EXPECT_EQ(pictures[2].page, referral_only + 5);
  EXPECT_EQ(pictures[3].page, referral_only + 6);
}

TEST_F(Fax, OverMaxFaxPagesTheFilesFollowByOtherMeans) {
  const auto referral_only = pages_of(render_referral_pdf(delivery_with({}), test::sample_office(), sent));
  const auto d = delivery_with({attachment(fixture("records.pdf")), attachment(fixture("image.jpg"))});
  // Room for the referral and the PDF, not the image too.
  const std::string fax = render_fax_pdf(d, test::sample_office(), sent, referral_only + 2);
  EXPECT_EQ(pages_of(fax), referral_only);
  const std::string cover = text_of(fax, 1);
  EXPECT_NE(cover.find(std::to_string(referral_only) + " (including this cover sheet)"), std::string::npos) << cover;
  EXPECT_NE(cover.find("NOT in this fax"), std::string::npos) << cover;
  EXPECT_NE(cover.find("referralctl attachment R-20261128-7K3M9-TZQXA"), std::string::npos) << cover;
  // Exactly at the limit, they are in it.
  EXPECT_EQ(pages_of(render_fax_pdf(d, test::sample_office(), sent, referral_only + 3)), referral_only + 3);
}

TEST_F(Fax, AFileThatCannotBeDrawnLeavesTheFilesOutNotTheReferral) {
  const auto referral_only = pages_of(render_referral_pdf(delivery_with({}), test::sample_office(), sent));
  // Inspected at intake as a PNG; by the time the fax is drawn its pixels
  // do not decode (a decoder stricter than the inspection, say).
  Attachment broken = attachment(fixture("image.png"));
  broken.data.resize(broken.data.size() / 2);
  const auto d = delivery_with({attachment(fixture("records.pdf")), broken});
  const std::string fax = render_fax_pdf(d, test::sample_office(), sent, 50);
  EXPECT_EQ(pages_of(fax), referral_only);
  const std::string cover = text_of(fax, 1);
  EXPECT_NE(cover.find(std::to_string(referral_only) + " (including this cover sheet)"), std::string::npos) << cover;
  EXPECT_NE(cover.find("NOT in this fax"), std::string::npos) << cover;
  EXPECT_NE(cover.find("could not be made into fax pages"), std::string::npos) << cover;
  EXPECT_NE(cover.find("referralctl attachment R-20261128-7K3M9-TZQXA"), std::string::npos) << cover;
}

TEST_F(Fax, ACoverSheetOfTwoPagesCountsItselfAndWhereTheFilesStart) {
  // An organization's name long enough to push the cover onto a second page.
  auto d = delivery_with({attachment(fixture("records.pdf"))});
  json document = json::parse(d.document);
  std::string organization;
  for (int n = 0; n < 90; ++n) organization += "Delta Pediatrics Regional Network Clinic " + std::to_string(n) + " ";
  document["referrer"]["organization"] = organization;
  d.document = document.dump();
  const std::string fax = render_fax_pdf(d, test::sample_office(), sent, 50);
  const int pages = pages_of(fax);
  const std::string cover = text_of(fax, 1) + text_of(fax, 2);
  ASSERT_NE(text_of(fax, 2).find("Page 2 of " + std::to_string(pages)), std::string::npos) << text_of(fax, 2);
  ASSERT_EQ(text_of(fax, 2).find("Referral R-20261128-7K3M9-TZQXA"), std::string::npos)
      << "the second page should still be the cover sheet";
  EXPECT_NE(cover.find(std::to_string(pages) + " (including this cover sheet)"), std::string::npos) << cover;
  // records.pdf has 2 pages: the last two of the fax.
  EXPECT_NE(cover.find("pages " + std::to_string(pages - 1) + " to " + std::to_string(pages) + " of this fax"),
            std::string::npos)
      << cover;
  EXPECT_EQ(text_of(fax, pages - 1), text_of(fixture("records.pdf"), 1));
}

TEST_F(Fax, AnImageIsScaledToFitThePageWithinItsMargins) {
  if (output_of("command -v pdftoppm").empty()) GTEST_SKIP() << "pdftoppm (poppler-utils) is not installed";
  // A page scanned at 300 dpi (2550 x 3300 pixels) and the small JPEG (255 x 330).
  const auto scan = dir_ / "scan";
  ASSERT_EQ(test::shell("pdftoppm -r 300 -f 1 -l 1 -singlefile -png " +
                        (fs::path(REFERRALD_SOURCE_DIR) / "tests/data/attachments/records.pdf").string() + " " +
                        scan.string()),
            0);
  const auto d = delivery_with({attachment(test::read_file(scan.string() + ".png")), attachment(fixture("image.jpg"))});
  const auto pictures = pictures_of(render_fax_pdf(d, test::sample_office(), sent, 50));
  ASSERT_EQ(pictures.size(), 2U);
  const PageBox box = image_box();
  // pdfimages gives whole pixels per inch: the JPEG's 36.4 shows as 36, so
  // sizes are known to 2 %.
  for (const auto& p : pictures) {
    EXPECT_LE(p.width, box.width * 1.02) << "page " << p.page;
    EXPECT_LE(p.height, box.height * 1.02) << "page " << p.page;
    // As large as fits: one side fills the box.
    EXPECT_TRUE(p.width > box.width * 0.98 || p.height > box.height * 0.98) << p.width << " x " << p.height;
  }
  // The scan is drawn at a fax's resolution, not its own: fewer pixels.
  EXPECT_LT(pictures[0].pixels_wide, 2550);
  EXPECT_GE(pictures[0].pixels_wide, 1300);
}

TEST(FitInBox, KeepsTheShapeAndCentres) {
  const PageBox box{54, 54, 504, 660};
  const auto wide = fit_in_box(2000, 1000, box);
  EXPECT_FLOAT_EQ(wide.width, 504);
  EXPECT_FLOAT_EQ(wide.height, 252);
  EXPECT_FLOAT_EQ(wide.x, 54);
  EXPECT_FLOAT_EQ(wide.y, 54 + (660 - 252) / 2.0F);
  const auto tall = fit_in_box(100, 660, box);
  EXPECT_FLOAT_EQ(tall.height, 660);
  EXPECT_FLOAT_EQ(tall.width, 100 * 660 / 660.0F);
  EXPECT_FLOAT_EQ(tall.x, 54 + (504 - 100) / 2.0F);
}

// A scan larger than the fax's box is shrunk, and what it shows stays where
// it was: here a page whose top half is white and bottom half black.
TEST(ShrinkToFit, KeepsWhatTheImageShowsWhereItIs) {
  GrayImage scan;
  scan.width = 3000;
  scan.height = 3000;
  scan.pixels.assign(std::size_t{3000} * 3000, 255);
  std::fill(scan.pixels.begin() + std::ptrdiff_t{3000} * 1500, scan.pixels.end(), 0);
  const GrayImage out = shrink_to_fit(scan, 1400, 1833);
  ASSERT_EQ(out.width, 1400U);
  ASSERT_EQ(out.height, 1400U);
  const auto mean_of_rows = [&](std::uint32_t first, std::uint32_t last) {
    std::uint64_t sum = 0;
    for (std::uint32_t y = first; y < last; ++y) {
      for (std::uint32_t x = 0; x < out.width; ++x) sum += out.pixels[std::size_t{y} * out.width + x];
    }
    return static_cast<double>(sum) / (static_cast<double>(last - first) * out.width);
  };
  EXPECT_EQ(mean_of_rows(0, 690), 255.0);   // the white half, white
  EXPECT_EQ(mean_of_rows(710, 1400), 0.0);  // the black half, black
  // An image that fits is left as it is.
  EXPECT_EQ(shrink_to_fit(out, 1400, 1833).pixels, out.pixels);
}

TEST(GrayPages, EachPageOfATiffIsDecoded) {
  std::vector<std::pair<std::uint32_t, std::uint32_t>> sizes;
  int dark = 0;
  ASSERT_TRUE(for_each_gray_page(fixture("two-pages.tif"), [&](const GrayImage& page) {
    sizes.emplace_back(page.width, page.height);
    ASSERT_EQ(page.pixels.size(), std::size_t{page.width} * page.height);
    for (unsigned char p : page.pixels) dark += p < 128;
  }));
  EXPECT_EQ(sizes, (std::vector<std::pair<std::uint32_t, std::uint32_t>>{{255, 330}, {255, 330}}));
  EXPECT_GT(dark, 0) << "the page's text is there, not a blank";
  EXPECT_FALSE(for_each_gray_page(fixture("records.pdf"), [](const GrayImage&) {}));
}

TEST(MergePdfs, TakesThePagesAskedForInOrder) {
  const std::string records = fixture("records.pdf");
  EXPECT_EQ(check_pdf(merge_pdfs({{records, 1, 1}, {records, 0, -1}})).pages, 3);
  EXPECT_THROW(merge_pdfs({{records, 1, 2}}), std::runtime_error);
  EXPECT_THROW(merge_pdfs({{fixture("encrypted.pdf"), 0, -1}}), std::runtime_error);
}

}  // namespace
}  // namespace referrald
