// The referral as a document a person reads: a fax cover sheet and the
// referral pages (every field, the decision and its reasons), rendered as PDF
// with libharu. Pure: the same inputs give the same bytes (apart from the
// PDF's own creation metadata, which libharu does not write here).
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>

#include "config/config.hpp"
#include "dispatch/adapter.hpp"

namespace referrald {

// Which fonts the document may use. Text that Windows-1252 can show is set in
// the PDF base-14 Helvetica (small and fast); a document with any other
// character (Nguyễn, Łukasz, Дмитрий, 阮) embeds `unicode_font`, a TrueType
// font, with libharu's UTF-8 encoder. Without that font such characters are
// replaced by "?" and the document says so on its first page — the referral
// is never dropped for a name it cannot show.
struct DocumentFonts {
  std::optional<std::filesystem::path> unicode_font;
};

// DejaVu Sans from Debian's fonts-dejavu-core, looked up once per process;
// unicode_font is empty when the package is not installed.
const DocumentFonts& default_document_fonts();

// The package and file default_document_fonts() looks for, for messages.
inline constexpr const char* unicode_font_hint =
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf (Debian package fonts-dejavu-core)";

class DocumentError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The PDF bytes. `now` is the cover sheet's date (in the office's time zone).
// Throws DocumentError when the delivery's document is not a referral JSON
// object or libharu fails.
std::string render_referral_pdf(const Delivery& delivery, const OfficeConfig& office,
                                std::chrono::system_clock::time_point now);
std::string render_referral_pdf(const Delivery& delivery, const OfficeConfig& office,
                                std::chrono::system_clock::time_point now, const DocumentFonts& fonts);
struct ReferralDocument;
// With the document already read (read_referral_document) by the caller.
std::string render_referral_pdf(const Delivery& delivery, const ReferralDocument& document, const OfficeConfig& office,
                                std::chrono::system_clock::time_point now,
                                const DocumentFonts& fonts = default_document_fonts());

// What a fax carries after the referral pages: the referral's files as
// pages (document/fax_document.hpp). The cover sheet counts them in the
// fax's pages, or, when they would take the fax over max_pages, says that
// they follow by other means and which.
struct FaxRecords {
  int files = 0;            // no files: nothing said
  int pages = 0;            // every file's pages
  int max_pages = 0;        // the fax target's max_fax_pages
  bool unreadable = false;  // they could not be made into pages: the fax goes without them
};

struct RenderedReferral {
  std::string pdf;                // cover sheet and referral
  int pages = 0;                  // its pages
  bool records_included = false;  // the fax goes on with records.pages more (counted in every "Page N of M")
};

RenderedReferral render_referral_fax(const Delivery& delivery, const ReferralDocument& document,
                                     const OfficeConfig& office, std::chrono::system_clock::time_point now,
                                     const DocumentFonts& fonts, const FaxRecords& records);

// The line at the foot of every page (not the page number).
std::string page_footer_notice(const std::string& referral_id);

// Converts UTF-8 to Windows-1252 (what libharu's WinAnsiEncoding shows).
// Characters it cannot hold become '?', counted in `replaced`; control
// characters become spaces.
std::string to_windows_1252(std::string_view utf8, std::size_t* replaced = nullptr);
bool fits_windows_1252(std::string_view utf8);

}  // namespace referrald
