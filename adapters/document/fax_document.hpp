// The fax of a referral: the cover sheet and referral pages
// (referral_pdf.hpp), then every file that came with the referral as pages,
// in order: a PDF's own pages, merged with qpdf (attachments/pdf_check.hpp);
// an image (JPEG, PNG, each page of a TIFF) drawn in gray, scaled to fit the
// page. A fax that would have more pages than its target's max_fax_pages
// is the cover sheet and referral only, the cover saying where the files
// are. Both fax channels (hylafax, http-fax) send this document.
// docs/attachments.md#fax.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "adapters/document/referral_pdf.hpp"
#include "attachments/inspect.hpp"
#include "config/config.hpp"
#include "dispatch/adapter.hpp"
#include "util/clock.hpp"

namespace referrald {

// [[target]] max_fax_pages when not set.
inline constexpr int default_max_fax_pages = 50;

// A fax target's max_fax_pages (default_max_fax_pages when not set).
int max_fax_pages(const TargetConfig& target);

// The PDF bytes. Throws DocumentError (the referral cannot be read, libharu
// or qpdf fail on a file).
std::string render_fax_pdf(const Delivery& delivery, const OfficeConfig& office,
                           std::chrono::system_clock::time_point now, int max_pages,
                           const DocumentFonts& fonts = default_document_fonts());

// The fax document for a delivery, dated when it is sent (by `clock`, which
// must outlive it). CPU work: the channels run it off the I/O threads.
using FaxRenderer = std::function<std::string(const Delivery&)>;
FaxRenderer fax_renderer(const OfficeConfig& office, const Clock& clock, int max_pages);

// A rectangle on a page, in points from the lower left.
struct PageBox {
  float x = 0;
  float y = 0;
  float width = 0;
  float height = 0;
};

// Where a picture of width x height pixels goes in `box`: as large as fits,
// its shape kept, centred.
PageBox fit_in_box(std::uint32_t width, std::uint32_t height, const PageBox& box);

// `in` shrunk (never enlarged) to at most max_width x max_height pixels,
// its shape kept; each pixel the mean of those it covers, so thin lines of
// a scanned report stay visible.
GrayImage shrink_to_fit(const GrayImage& in, std::uint32_t max_width, std::uint32_t max_height);

// Where an attached image is drawn: the page within its margins, below the
// line that names the file.
PageBox image_box();

}  // namespace referrald
