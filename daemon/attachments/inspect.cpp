#include "attachments/inspect.hpp"

#include <jpeglib.h>
#include <png.h>
#include <tiffio.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "attachments/pdf_check.hpp"
#include "util/crypto.hpp"
#include "util/file_reader.hpp"
#include "util/sealed_spool.hpp"

namespace referrald {

namespace {

// A decompression bomb (a small file that claims a huge picture) is refused
// before it is decoded: 50 megapixels is a letter page at 600 dpi and more.
constexpr std::uint64_t max_pixels = 50'000'000;

std::string too_many_pixels(std::uint64_t width, std::uint64_t height) {
  return "the image is " + std::to_string(width) + " x " + std::to_string(height) +
         " pixels, more than the 50 megapixels referrald accepts";
}

// --- PDF (qpdf) -----------------------------------------------------------

std::variant<InspectedFile, std::string> inspect_pdf(FileReader& file) {
  const auto pdf = check_pdf(file);
  if (!pdf.readable)
    return std::string("the file starts like a PDF but is not one that can be read (damaged or cut short)");
  if (pdf.encrypted) return std::string("the PDF is encrypted; send it without a password or restrictions");
  if (pdf.pages == 0) return std::string("the PDF has no pages");
  return InspectedFile{"application/pdf", pdf.pages};
}

// --- JPEG (libjpeg) -------------------------------------------------------

struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  bool warned = false;
};

[[noreturn]] void jpeg_fail(j_common_ptr cinfo) { std::longjmp(reinterpret_cast<JpegError*>(cinfo->err)->jump, 1); }

void jpeg_message(j_common_ptr cinfo, int level) {
  // Level -1 is a warning about the data itself (e.g. a premature end).
  if (level < 0) reinterpret_cast<JpegError*>(cinfo->err)->warned = true;
}

// libjpeg's source manager over a FileReader: a block at a time (memory:
// the whole file at once). At the end, an end-of-image marker and the
// warning libjpeg's own memory source gives, so a file cut short is told
// as one; a read of the spool that fails ends the decoding (the reader
// remembers it).
struct JpegSource {
  jpeg_source_mgr mgr;
  FileReader* file;
  std::size_t next;  // the offset of the next piece
};

boolean jpeg_fill(j_decompress_ptr cinfo) {
  auto* source = reinterpret_cast<JpegSource*>(cinfo->src);
  std::string_view piece;
  bool failed = false;
  try {
    piece = source->file->peek(source->next, SealedSpool::block_size);
  } catch (const std::exception&) {
    failed = true;  // outside the handler: error_exit jumps
  }
  if (failed) (*cinfo->err->error_exit)(reinterpret_cast<j_common_ptr>(cinfo));
  if (piece.empty()) {
    static const JOCTET end_of_image[2] = {0xFF, JPEG_EOI};
    reinterpret_cast<JpegError*>(cinfo->err)->warned = true;
    source->mgr.next_input_byte = end_of_image;
    source->mgr.bytes_in_buffer = 2;
    return TRUE;
  }
  source->next += piece.size();
  source->mgr.next_input_byte = reinterpret_cast<const JOCTET*>(piece.data());
  source->mgr.bytes_in_buffer = piece.size();
  return TRUE;
}

void jpeg_skip(j_decompress_ptr cinfo, long count) {
  if (count <= 0) return;
  auto* source = reinterpret_cast<JpegSource*>(cinfo->src);
  const auto n = static_cast<std::size_t>(count);
  if (n <= source->mgr.bytes_in_buffer) {
    source->mgr.next_input_byte += n;
    source->mgr.bytes_in_buffer -= n;
    return;
  }
  source->next += n - source->mgr.bytes_in_buffer;
  source->mgr.bytes_in_buffer = 0;  // the next read fills from there
}

void jpeg_no_op(j_decompress_ptr) {}

unsigned char luminance(unsigned r, unsigned g, unsigned b) {
  return static_cast<unsigned char>((299 * r + 587 * g + 114 * b) / 1000);
}

// Plain C inside: nothing with a destructor lives across the longjmp (`gray`
// is the caller's). With `gray`, the picture is decoded into it.
bool decode_jpeg(FileReader& file, std::uint64_t& width, std::uint64_t& height, bool& too_big,
                 GrayImage* gray = nullptr) {
  jpeg_decompress_struct cinfo;
  JpegError error;
  JpegSource source{};
  cinfo.err = jpeg_std_error(&error.mgr);
  error.mgr.error_exit = jpeg_fail;
  error.mgr.emit_message = jpeg_message;
  if (setjmp(error.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  source.mgr.init_source = jpeg_no_op;
  source.mgr.fill_input_buffer = jpeg_fill;
  source.mgr.skip_input_data = jpeg_skip;
  source.mgr.resync_to_restart = jpeg_resync_to_restart;
  source.mgr.term_source = jpeg_no_op;
  source.file = &file;
  cinfo.src = &source.mgr;
  if (jpeg_read_header(&cinfo, TRUE) != JPEG_HEADER_OK) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  width = cinfo.image_width;
  height = cinfo.image_height;
  if (width * height > max_pixels) {
    too_big = true;
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  // CMYK (Adobe's, stored inverted) cannot be turned to gray by libjpeg.
  const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  if (gray != nullptr) cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_GRAYSCALE;
  jpeg_start_decompress(&cinfo);
  JSAMPARRAY row = (*cinfo.mem->alloc_sarray)(reinterpret_cast<j_common_ptr>(&cinfo), JPOOL_IMAGE,
                                              cinfo.output_width * static_cast<JDIMENSION>(cinfo.output_components), 1);
  if (gray != nullptr) {
    gray->width = cinfo.output_width;
    gray->height = cinfo.output_height;
    gray->pixels.resize(std::size_t{gray->width} * gray->height);
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    const JDIMENSION y = cinfo.output_scanline;
    jpeg_read_scanlines(&cinfo, row, 1);
    if (gray == nullptr) continue;
    unsigned char* out = gray->pixels.data() + std::size_t{y} * gray->width;
    const JSAMPLE* in = row[0];
    for (JDIMENSION x = 0; x < cinfo.output_width; ++x) {
      if (cinfo.output_components == 4) {
        const unsigned k = in[4 * x + 3];
        out[x] = luminance(in[4 * x] * k / 255, in[4 * x + 1] * k / 255, in[4 * x + 2] * k / 255);
      } else {
        out[x] = in[x * static_cast<unsigned>(cinfo.output_components)];
      }
    }
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return !error.warned && width > 0 && height > 0;
}

std::variant<InspectedFile, std::string> inspect_jpeg(FileReader& file) {
  std::uint64_t width = 0, height = 0;
  bool too_big = false;
  if (decode_jpeg(file, width, height, too_big)) return InspectedFile{"image/jpeg", 1};
  if (too_big) return too_many_pixels(width, height);
  return std::string("the file starts like a JPEG image but is not one that can be read (damaged or cut short)");
}

// --- PNG (libpng) ---------------------------------------------------------

struct PngSource {
  FileReader* file;
  std::size_t at = 0;
};

// A read of the spool that fails is told as an error (outside the handler:
// png_error jumps); the reader remembers it.
void png_read_file(png_structp png, png_bytep out, png_size_t n) {
  auto* source = static_cast<PngSource*>(png_get_io_ptr(png));
  std::size_t got = 0;
  try {
    got = source->file->read(source->at, reinterpret_cast<char*>(out), n);
  } catch (const std::exception&) {
    got = 0;
  }
  if (got < n) png_error(png, "truncated");
  source->at += n;
}

void png_quiet(png_structp, png_const_charp) {}
[[noreturn]] void png_fail(png_structp png, png_const_charp) { png_longjmp(png, 1); }

// `row` is the caller's, so that nothing this frame owns changes between
// setjmp and a longjmp.
bool decode_png(FileReader& file, std::uint64_t& width, std::uint64_t& height, bool& too_big,
                std::vector<unsigned char>& row) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, png_fail, png_quiet);
  if (png == nullptr) return false;
  png_infop info = png_create_info_struct(png);
  PngSource source{&file};
  if (info == nullptr || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  png_set_read_fn(png, &source, png_read_file);
  png_read_info(png, info);
  width = png_get_image_width(png, info);
  height = png_get_image_height(png, info);
  if (width * height > max_pixels) {
    too_big = true;
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  const int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  row.resize(png_get_rowbytes(png, info));
  for (int pass = 0; pass < passes; ++pass) {
    for (png_uint_32 y = 0; y < height; ++y) png_read_row(png, row.data(), nullptr);
  }
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return width > 0 && height > 0;
}

// libpng's simplified API composes transparency and converts to gray; the
// file was inspected (decode_png) first.
bool gray_png(std::string_view bytes, GrayImage& gray) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (png_image_begin_read_from_memory(&image, bytes.data(), bytes.size()) == 0) return false;
  image.format = PNG_FORMAT_GRAY;
  if (std::uint64_t{image.width} * image.height > max_pixels) {
    png_image_free(&image);
    return false;
  }
  gray.width = image.width;
  gray.height = image.height;
  gray.pixels.resize(std::size_t{image.width} * image.height);  // one byte a pixel (PNG_FORMAT_GRAY)
  const png_color white{255, 255, 255};
  if (png_image_finish_read(&image, &white, gray.pixels.data(), 0, nullptr) == 0) {
    png_image_free(&image);
    return false;
  }
  return true;
}

std::variant<InspectedFile, std::string> inspect_png(FileReader& file) {
  std::uint64_t width = 0, height = 0;
  bool too_big = false;
  std::vector<unsigned char> row;
  if (decode_png(file, width, height, too_big, row)) return InspectedFile{"image/png", 1};
  if (too_big) return too_many_pixels(width, height);
  return std::string("the file starts like a PNG image but is not one that can be read (damaged or cut short)");
}

// --- TIFF (libtiff) -------------------------------------------------------

struct TiffSource {
  FileReader* file;
  toff_t at = 0;
};

// A read of the spool that fails is an error (-1) to libtiff; the reader
// remembers it.
tmsize_t tiff_read(thandle_t handle, void* out, tmsize_t n) {
  auto* source = static_cast<TiffSource*>(handle);
  if (n < 0 || source->at >= source->file->size()) return 0;
  try {
    const auto count = source->file->read(source->at, static_cast<char*>(out), static_cast<std::size_t>(n));
    source->at += count;
    return static_cast<tmsize_t>(count);
  } catch (const std::exception&) {
    return -1;
  }
}
tmsize_t tiff_write(thandle_t, void*, tmsize_t) { return 0; }
toff_t tiff_seek(thandle_t handle, toff_t offset, int whence) {
  auto* source = static_cast<TiffSource*>(handle);
  toff_t base = 0;
  if (whence == SEEK_CUR) base = source->at;
  if (whence == SEEK_END) base = source->file->size();
  source->at = base + offset;
  return source->at;
}
int tiff_close(thandle_t) { return 0; }
toff_t tiff_size(thandle_t handle) { return static_cast<TiffSource*>(handle)->file->size(); }
int tiff_map(thandle_t, void**, toff_t*) { return 0; }
void tiff_unmap(thandle_t, void*, toff_t) {}

int tiff_quiet(TIFF*, void*, const char*, const char*, va_list) { return 1; }

// Copies `rows` rows of a raster libtiff filled bottom-up (TIFFReadRGBA*'s
// origin is the lower left), `stride` pixels apart, to `gray` at (x, y).
void rgba_to_gray(const std::vector<std::uint32_t>& raster, std::uint32_t stride, std::uint32_t columns,
                  std::uint32_t rows, std::uint32_t x, std::uint32_t y, GrayImage& gray) {
  for (std::uint32_t r = 0; r < rows && y + r < gray.height; ++r) {
    const std::uint32_t* in = raster.data() + std::size_t{rows - 1 - r} * stride;
    unsigned char* out = gray.pixels.data() + std::size_t{y + r} * gray.width + x;
    for (std::uint32_t c = 0; c < columns && x + c < gray.width; ++c) {
      const std::uint32_t p = in[c];
      const unsigned a = TIFFGetA(p);
      out[c] =
          static_cast<unsigned char>((luminance(TIFFGetR(p), TIFFGetG(p), TIFFGetB(p)) * a + 255 * (255 - a)) / 255);
    }
  }
}

// Every page (directory) is decoded: a file cut short fails. With `page`,
// each is handed to it as gray.
std::variant<InspectedFile, std::string> inspect_tiff(FileReader& file,
                                                      const std::function<void(const GrayImage&)>* page = nullptr) {
  const std::string unreadable =
      "the file starts like a TIFF image but is not one that can be read (damaged or cut short)";
  TiffSource source{&file};
  TIFFOpenOptions* options = TIFFOpenOptionsAlloc();
  TIFFOpenOptionsSetErrorHandlerExtR(options, tiff_quiet, nullptr);
  TIFFOpenOptionsSetWarningHandlerExtR(options, tiff_quiet, nullptr);
  TIFF* tif = TIFFClientOpenExt("attachment", "rm", &source, tiff_read, tiff_write, tiff_seek, tiff_close, tiff_size,
                                tiff_map, tiff_unmap, options);
  TIFFOpenOptionsFree(options);
  if (tif == nullptr) return unreadable;
  std::variant<InspectedFile, std::string> result = InspectedFile{"image/tiff", 0};
  std::vector<std::uint32_t> pixels;
  GrayImage gray;
  do {
    std::uint32_t width = 0, height = 0;
    char message[1024];
    if (TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &width) != 1 || TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &height) != 1 ||
        width == 0 || height == 0 || !TIFFRGBAImageOK(tif, message)) {
      result = unreadable;
      break;
    }
    if (std::uint64_t{width} * height > max_pixels) {
      result = too_many_pixels(width, height);
      break;
    }
    if (page != nullptr) {
      gray.width = width;
      gray.height = height;
      gray.pixels.assign(std::size_t{width} * height, 255);
    }
    // Decode every strip or tile: a file cut short fails here.
    bool ok = true;
    if (TIFFIsTiled(tif)) {
      std::uint32_t tw = 0, th = 0;
      TIFFGetField(tif, TIFFTAG_TILEWIDTH, &tw);
      TIFFGetField(tif, TIFFTAG_TILELENGTH, &th);
      if (tw == 0 || th == 0 || std::uint64_t{tw} * th > max_pixels) {
        ok = false;
      } else {
        pixels.resize(std::size_t{tw} * th);
        for (std::uint32_t y = 0; ok && y < height; y += th) {
          for (std::uint32_t x = 0; ok && x < width; x += tw) {
            ok = TIFFReadRGBATile(tif, x, y, pixels.data()) == 1;
            // An edge tile is laid out as a whole one, its rows at the top.
            if (ok && page != nullptr) rgba_to_gray(pixels, tw, tw, th, x, y, gray);
          }
        }
      }
    } else {
      std::uint32_t rows = height;
      TIFFGetFieldDefaulted(tif, TIFFTAG_ROWSPERSTRIP, &rows);
      rows = std::min(std::max(rows, std::uint32_t{1}), height);
      pixels.resize(std::size_t{width} * rows);
      for (std::uint32_t y = 0; ok && y < height; y += rows) {
        ok = TIFFReadRGBAStrip(tif, y, pixels.data()) == 1;
        if (ok && page != nullptr) rgba_to_gray(pixels, width, width, std::min(rows, height - y), 0, y, gray);
      }
    }
    if (!ok) {
      result = unreadable;
      break;
    }
    ++std::get<InspectedFile>(result).pages;
    if (page != nullptr) (*page)(gray);
    if (TIFFLastDirectory(tif) != 0) break;
    // A page announced and not read: a file cut short between its pages.
    if (TIFFReadDirectory(tif) != 1) {
      result = unreadable;
      break;
    }
  } while (true);
  TIFFClose(tif);
  return result;
}

enum class FileKind { pdf, jpeg, png, tiff, other };

// What the first bytes say a file is: the one place that knows the magic
// numbers (the decoders then decide whether the rest agrees).
FileKind kind_of(FileReader& file) {
  using namespace std::string_view_literals;
  char head[8];
  const std::string_view bytes(head, file.read(0, head, sizeof head));
  const auto starts_with = [&](std::string_view magic) { return bytes.substr(0, magic.size()) == magic; };
  if (starts_with("%PDF-"sv)) return FileKind::pdf;
  if (starts_with("\xFF\xD8\xFF"sv)) return FileKind::jpeg;
  if (starts_with("\x89PNG\r\n\x1A\n"sv)) return FileKind::png;
  if (starts_with("II*\0"sv) || starts_with("MM\0*"sv)) return FileKind::tiff;
  return FileKind::other;
}

}  // namespace

std::variant<InspectedFile, std::string> inspect_file(std::string_view bytes) {
  FileReader file(bytes);
  return inspect_file(file);
}

std::variant<InspectedFile, std::string> inspect_file(FileReader& file) {
  const auto inspected = [&file]() -> std::variant<InspectedFile, std::string> {
    switch (kind_of(file)) {
      case FileKind::pdf: return inspect_pdf(file);
      case FileKind::jpeg: return inspect_jpeg(file);
      case FileKind::png: return inspect_png(file);
      case FileKind::tiff: return inspect_tiff(file);
      case FileKind::other: break;
    }
    return std::string("is not a PDF, JPEG, PNG or TIFF file (decided from its bytes, not its name or declared type)");
  }();
  // A spool that did not open is not a damaged file: the libraries only
  // said "error"; what the reader threw goes on (a 503, nothing stored).
  file.rethrow_failure();
  return inspected;
}

bool for_each_gray_page(std::string_view bytes, const std::function<void(const GrayImage&)>& page) {
  GrayImage gray;
  std::uint64_t width = 0, height = 0;
  bool too_big = false;
  FileReader file(bytes);
  switch (kind_of(file)) {
    case FileKind::jpeg:
      if (!decode_jpeg(file, width, height, too_big, &gray)) return false;
      page(gray);
      return true;
    case FileKind::png:
      if (!gray_png(bytes, gray)) return false;
      page(gray);
      return true;
    case FileKind::tiff: return std::holds_alternative<InspectedFile>(inspect_tiff(file, &page));
    case FileKind::pdf:
    case FileKind::other: break;
  }
  return false;
}

std::string attachment_file_name(const std::string& referral_id, int position, const std::string& content_type) {
  const char* extension = content_type == "application/pdf" ? ".pdf"
                          : content_type == "image/jpeg"    ? ".jpg"
                          : content_type == "image/png"     ? ".png"
                          : content_type == "image/tiff"    ? ".tif"
                                                            : ".bin";
  return "referral-" + referral_id + "-file-" + std::to_string(position) + extension;
}

std::string describe_size(std::size_t bytes) {
  // One decimal when not whole, rounded down: never more than the size.
  const auto in = [bytes](std::size_t unit, const char* name) {
    std::string out = std::to_string(bytes / unit);
    if (const std::size_t tenth = bytes % unit * 10 / unit; tenth > 0) out += "." + std::to_string(tenth);
    return out + " " + name;
  };
  if (bytes >= 1024 * 1024) return in(1024 * 1024, "MB");
  if (bytes >= 1024) return in(1024, "kB");
  return std::to_string(bytes) + " bytes";
}

std::vector<FieldError> inspect_attachments(const AttachmentLimits& limits, std::vector<Attachment>& attachments) {
  std::vector<FieldError> errors;
  if (attachments.empty()) return errors;
  if (limits.max_attachments == 0) {
    errors.push_back({"/attachments", "this office takes no attachments; send the records by other means"});
    return errors;
  }
  if (attachments.size() > limits.max_attachments) {
    errors.push_back({"/attachments", "has " + std::to_string(attachments.size()) + " files; at most " +
                                          std::to_string(limits.max_attachments) + " may come with one referral"});
    return errors;
  }
  std::size_t total = 0;
  for (std::size_t i = 0; i < attachments.size(); ++i) {
    Attachment& a = attachments[i];
    const std::string path = "/attachments/" + std::to_string(i) + "/data";
    const std::size_t size = a.size();
    total += size;
    if (size > limits.max_attachment_bytes) {
      errors.push_back({path, "is " + describe_size(size) + ", larger than the " +
                                  describe_size(limits.max_attachment_bytes) + " one file may be"});
      continue;
    }
    // A file waiting in a spool is read from it a block at a time, its
    // SHA-256 the one taken as it was spooled; it stays in the spool,
    // sealed once, until it is stored.
    auto inspected = [&a] {
      if (!a.spooled) return inspect_file(a.data);
      FileReader file(*a.spooled);
      return inspect_file(file);
    }();
    if (auto* problem = std::get_if<std::string>(&inspected)) {
      errors.push_back({path, std::move(*problem)});
      continue;
    }
    const auto& file = std::get<InspectedFile>(inspected);
    a.content_type = file.content_type;
    a.pages = file.pages;
    a.sha256 = a.spooled ? a.spooled->sha256_hex() : sha256_hex(a.data);
  }
  if (total > limits.max_total_bytes) {
    errors.push_back({"/attachments", "the files come to " + describe_size(total) + ", more than the " +
                                          describe_size(limits.max_total_bytes) + " one referral's files may be"});
  }
  return errors;
}

}  // namespace referrald
