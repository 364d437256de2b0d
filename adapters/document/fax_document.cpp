#include "adapters/document/fax_document.hpp"

#include <hpdf.h>

#include <algorithm>
#include <stdexcept>
#include <spdlog/spdlog.h>
#include <vector>

#include "adapters/document/haru.hpp"
#include "adapters/document/referral_fields.hpp"
#include "attachments/inspect.hpp"
#include "attachments/pdf_check.hpp"

namespace referrald {

namespace {

// A fax's fine resolution is about 200 dots per inch: an image is drawn
// with no more pixels than that gives its place on the page.
constexpr float fax_dpi = 200;
constexpr float header_height = 24;

const char* kind_of(const std::string& content_type) {
  if (content_type == "image/jpeg") return "JPEG image";
  if (content_type == "image/png") return "PNG image";
  if (content_type == "image/tiff") return "TIFF image";
  return "PDF";
}

// Every page of the referral's images, in the order of the files, each with
// a line naming its file (by number and type, never its title) and the fax's
// page number; `first_page[n]` is the fax's page number of file n's first
// page. `pages_of` gets each image's page count, in order.
std::string render_image_pages(const Delivery& delivery, const std::vector<int>& first_page, int fax_pages,
                               std::vector<int>& pages_of) {
  HaruError error;
  DocHandle doc = new_haru_document(error);
  HPDF_SetCompressionMode(doc.get(), HPDF_COMP_IMAGE);
  HPDF_SetInfoAttr(doc.get(), HPDF_INFO_CREATOR, "referrald");
  HPDF_Font font = HPDF_GetFont(doc.get(), "Helvetica", "WinAnsiEncoding");
  HPDF_Font bold = HPDF_GetFont(doc.get(), "Helvetica-Bold", "WinAnsiEncoding");
  const std::string footer = to_windows_1252(page_footer_notice(delivery.referral_id));
  const PageBox box = image_box();
  const auto max_width = static_cast<std::uint32_t>(box.width / 72 * fax_dpi);
  const auto max_height = static_cast<std::uint32_t>(box.height / 72 * fax_dpi);
  const auto files = static_cast<int>(delivery.attachments.size());
  for (int n = 0; n < files; ++n) {
    const Attachment& file = delivery.attachments[static_cast<std::size_t>(n)];
    if (file.content_type == "application/pdf") continue;
    int fax_page = first_page[static_cast<std::size_t>(n)];
    int page_of_file = 0;
    const bool read = for_each_gray_page(file.bytes(), [&](const GrayImage& picture) {
      ++page_of_file;
      const GrayImage drawn = shrink_to_fit(picture, max_width, max_height);
      HPDF_Page page = HPDF_AddPage(doc.get());
      HPDF_Page_SetSize(page, HPDF_PAGE_SIZE_LETTER, HPDF_PAGE_PORTRAIT);
      std::string heading = "Referral " + delivery.referral_id + " - file " + std::to_string(n + 1) + " of " +
                            std::to_string(files) + " (" + kind_of(file.content_type) + ")";
      if (file.pages > 1) heading += ", page " + std::to_string(page_of_file) + " of " + std::to_string(file.pages);
      const std::string number = "Page " + std::to_string(fax_page) + " of " + std::to_string(fax_pages);
      HPDF_Page_BeginText(page);
      HPDF_Page_SetFontAndSize(page, bold, 10);
      HPDF_Page_TextOut(page, margin, page_height - margin - 10, heading.c_str());
      HPDF_Page_SetFontAndSize(page, font, 8);
      HPDF_Page_TextOut(page, margin, margin - 14, footer.c_str());
      HPDF_Page_TextOut(page, page_width - margin - HPDF_Page_TextWidth(page, number.c_str()), margin - 14,
                        number.c_str());
      HPDF_Page_EndText(page);
      HPDF_Image image =
          HPDF_LoadRawImageFromMem(doc.get(), drawn.pixels.data(), drawn.width, drawn.height, HPDF_CS_DEVICE_GRAY, 8);
      const PageBox at = fit_in_box(drawn.width, drawn.height, box);
      if (image != nullptr) HPDF_Page_DrawImage(page, image, at.x, at.y, at.width, at.height);
      ++fax_page;
    });
    if (!read) throw DocumentError("file " + std::to_string(n + 1) + " of the referral could not be read as an image");
    pages_of.push_back(page_of_file);
  }
  return haru_document_bytes(doc.get(), error);
}

// The fax with every file as pages after the referral's: PDFs merged as they
// are, images drawn. DocumentError when a file cannot be drawn or merged.
std::string with_records(const Delivery& delivery, const RenderedReferral& referral, const FaxRecords& records,
                         bool any_image) {
  const int fax_pages = referral.pages + records.pages;
  // The images' pages are drawn in one document of their own, numbered as
  // the fax will have them.
  std::vector<int> first_page;
  for (int next = referral.pages + 1; const auto& file : delivery.attachments) {
    first_page.push_back(next);
    next += file.pages;
  }
  std::vector<int> image_pages;
  std::string images;
  if (any_image) images = render_image_pages(delivery, first_page, fax_pages, image_pages);
  std::vector<PdfPages> parts{{referral.pdf, 0, -1}};
  // qpdf merges from memory: each PDF is read whole from the spool the
  // store opened it into (reserved: `parts` points into it).
  std::vector<std::string> pdfs;
  pdfs.reserve(delivery.attachments.size());
  int next_image_page = 0;
  std::size_t image = 0;
  for (const auto& file : delivery.attachments) {
    if (file.content_type == "application/pdf") {
      parts.push_back({pdfs.emplace_back(file.bytes()), 0, -1});
    } else {
      parts.push_back({images, next_image_page, image_pages.at(image)});
      next_image_page += image_pages[image++];
    }
  }
  try {
    return merge_pdfs(parts);
  } catch (const std::runtime_error& e) {
    throw DocumentError(e.what());
  }
}

}  // namespace

GrayImage shrink_to_fit(const GrayImage& in, std::uint32_t max_width, std::uint32_t max_height) {
  if (in.width <= max_width && in.height <= max_height) return in;
  const double scale = std::min(static_cast<double>(max_width) / in.width, static_cast<double>(max_height) / in.height);
  GrayImage out;
  out.width = std::max<std::uint32_t>(1, static_cast<std::uint32_t>(in.width * scale));
  out.height = std::max<std::uint32_t>(1, static_cast<std::uint32_t>(in.height * scale));
  out.pixels.resize(std::size_t{out.width} * out.height);
  std::vector<std::uint32_t> sums(out.width);
  std::vector<std::uint32_t> counts(out.width);
  std::vector<std::uint32_t> column_of(in.width);
  for (std::uint32_t x = 0; x < in.width; ++x)
    column_of[x] = static_cast<std::uint32_t>(std::uint64_t{x} * out.width / in.width);
  std::uint32_t y = 0;
  for (std::uint32_t oy = 0; oy < out.height; ++oy) {
    const auto end = static_cast<std::uint32_t>(std::uint64_t{oy + 1} * in.height / out.height);
    std::fill(sums.begin(), sums.end(), 0);
    std::fill(counts.begin(), counts.end(), 0);
    // At least one input row per output row; the bound is fixed before the
    // loop (it must not grow with y, or the first row would take them all).
    const std::uint32_t stop = std::min(in.height, std::max(end, y + 1));
    for (; y < stop; ++y) {
      const unsigned char* row = in.pixels.data() + std::size_t{y} * in.width;
      for (std::uint32_t x = 0; x < in.width; ++x) {
        sums[column_of[x]] += row[x];
        ++counts[column_of[x]];
      }
    }
    unsigned char* out_row = out.pixels.data() + std::size_t{oy} * out.width;
    for (std::uint32_t ox = 0; ox < out.width; ++ox)
      out_row[ox] = static_cast<unsigned char>(counts[ox] == 0 ? 255 : sums[ox] / counts[ox]);
  }
  return out;
}

int max_fax_pages(const TargetConfig& target) {
  const auto value = target.get_integer("max_fax_pages");
  return value ? static_cast<int>(std::min<std::int64_t>(*value, 100000)) : default_max_fax_pages;
}

PageBox image_box() { return {margin, margin, page_width - 2 * margin, page_height - 2 * margin - header_height}; }

PageBox fit_in_box(std::uint32_t width, std::uint32_t height, const PageBox& box) {
  if (width == 0 || height == 0) return {box.x, box.y, 0, 0};
  const float scale = std::min(box.width / static_cast<float>(width), box.height / static_cast<float>(height));
  const float w = static_cast<float>(width) * scale;
  const float h = static_cast<float>(height) * scale;
  return {box.x + (box.width - w) / 2, box.y + (box.height - h) / 2, w, h};
}

std::string render_fax_pdf(const Delivery& delivery, const OfficeConfig& office,
                           std::chrono::system_clock::time_point now, int max_pages, const DocumentFonts& fonts) {
  FaxRecords records{static_cast<int>(delivery.attachments.size()), 0, max_pages};
  bool any_image = false;
  for (const auto& file : delivery.attachments) {
    records.pages += file.pages;
    any_image = any_image || file.content_type != "application/pdf";
  }
  const ReferralDocument document = read_referral_document(delivery, office);
  auto referral = render_referral_fax(delivery, document, office, now, fonts, records);
  if (!referral.records_included) return std::move(referral.pdf);
  try {
    return with_records(delivery, referral, records, any_image);
  } catch (const DocumentError& e) {
    // The referral still goes out: a file that cannot be drawn or merged
    // (it passed inspection at intake) must not keep the office from the
    // referral. The cover says the files follow by other means.
    spdlog::warn("fax.records_left_out id={} files={} reason=\"{}\"", delivery.referral_id, records.files, e.what());
    records.unreadable = true;
    return render_referral_fax(delivery, document, office, now, fonts, records).pdf;
  }
}

FaxRenderer fax_renderer(const OfficeConfig& office, const Clock& clock, int max_pages) {
  return [office, &clock, max_pages](const Delivery& delivery) {
    return render_fax_pdf(delivery, office, clock.now(), max_pages);
  };
}

}  // namespace referrald
