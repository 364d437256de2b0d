// What an attached file is, decided from its bytes: the magic number says
// which type it claims to be, and the type's own library must then open it
// (qpdf for PDF, libjpeg, libpng, libtiff), so a file that only starts like
// one, is cut short or is an encrypted PDF is refused. Never from a file name
// or the type the sender declared. docs/attachments.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "model/referral.hpp"
#include "util/file_reader.hpp"

namespace referrald {

// [intake] max_attachments, max_attachment_bytes, max_attachments_total_bytes.
// The most `[intake] max_attachments` may be: past this many files in one
// body, the intake keeps none of the rest (it only checks their base64),
// so that a body of countless tiny files cannot open a spool for each.
inline constexpr std::size_t max_attachments_ceiling = 100;

struct AttachmentLimits {
  std::size_t max_attachments = 10;                     // 0: attachments are refused
  std::size_t max_attachment_bytes = 20 * 1024 * 1024;  // each file, decoded
  std::size_t max_total_bytes = 50 * 1024 * 1024;       // all of one referral's files, decoded
};

struct InspectedFile {
  std::string content_type;  // application/pdf | image/jpeg | image/png | image/tiff
  int pages = 1;             // a PDF's or TIFF's pages; 1 for JPEG and PNG
};

// The file's type, or a sentence saying why it is refused (for the referrer:
// no content of the file in it).
// Read through `file` (a spooled file a block at a time); throws what a
// read of the spool threw (it did not open: not the file's fault).
std::variant<InspectedFile, std::string> inspect_file(std::string_view bytes);
std::variant<InspectedFile, std::string> inspect_file(FileReader& file);

// Checks a validated referral's attachments against the limits and inspects
// each: sets content_type, pages and sha256 on every one that passes, and
// returns a problem per attachment that does not, at /attachments/N/data
// (N counted from 0, as a JSON Pointer counts) or /attachments for too many.
std::vector<FieldError> inspect_attachments(const AttachmentLimits& limits, std::vector<Attachment>& attachments);

// One page of an image, 8-bit gray (0 black, 255 white), rows from the top.
struct GrayImage {
  std::uint32_t width = 0;
  std::uint32_t height = 0;
  std::vector<unsigned char> pixels;  // width * height
};

// Decodes each page of an image file inspect_file accepts (JPEG, PNG, TIFF
// with all its pages), in order, to gray (colour by its luminance,
// transparency over white), by the same decoders that inspect it, and hands
// each page to `page` before decoding the next: one page in memory at a
// time (at most 50 megapixels, 50 MB). False when the file is not an image
// those decoders read; a fax draws the pages (adapters/document/fax_document).
bool for_each_gray_page(std::string_view bytes, const std::function<void(const GrayImage&)>& page);

// "referral-R-20261128-7K3M9-TZQXA-file-1.pdf": the name a file is handed
// out under (email, the API), by its position and the type found, never by
// its title (which may name the patient).
std::string attachment_file_name(const std::string& referral_id, int position, const std::string& content_type);

// "20 MB", "512 kB", "300 bytes": a size for a message.
std::string describe_size(std::size_t bytes);

}  // namespace referrald
