#include "adapters/document/referral_pdf.hpp"

#include <hpdf.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <system_error>
#include <utility>
#include <vector>

#include "adapters/document/haru.hpp"
#include "adapters/document/referral_fields.hpp"
#include "adapters/document/referral_text.hpp"

namespace referrald {

namespace {

// ---- text encoding --------------------------------------------------------

// Decodes one UTF-8 code point at s[i], advancing i; U+FFFD for a bad sequence.
char32_t next_code_point(std::string_view s, std::size_t& i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = byte(i);
  std::size_t len = 0;
  char32_t cp = 0;
  if (b0 < 0x80) {
    ++i;
    return b0;
  } else if ((b0 & 0xE0) == 0xC0) {
    len = 2;
    cp = b0 & 0x1Fu;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3;
    cp = b0 & 0x0Fu;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4;
    cp = b0 & 0x07u;
  } else {
    ++i;
    return 0xFFFD;
  }
  if (i + len > s.size()) {
    i = s.size();
    return 0xFFFD;
  }
  for (std::size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) {
      i += k;
      return 0xFFFD;
    }
    cp = (cp << 6) | (byte(i + k) & 0x3Fu);
  }
  i += len;
  return cp;
}

// Windows-1252's 0x80..0x9F block (WinAnsiEncoding in PDF).
constexpr std::array<std::pair<char32_t, unsigned char>, 27> cp1252_high{{
    {0x20AC, 0x80}, {0x201A, 0x82}, {0x0192, 0x83}, {0x201E, 0x84}, {0x2026, 0x85}, {0x2020, 0x86}, {0x2021, 0x87},
    {0x02C6, 0x88}, {0x2030, 0x89}, {0x0160, 0x8A}, {0x2039, 0x8B}, {0x0152, 0x8C}, {0x017D, 0x8E}, {0x2018, 0x91},
    {0x2019, 0x92}, {0x201C, 0x93}, {0x201D, 0x94}, {0x2022, 0x95}, {0x2013, 0x96}, {0x2014, 0x97}, {0x02DC, 0x98},
    {0x2122, 0x99}, {0x0161, 0x9A}, {0x203A, 0x9B}, {0x0153, 0x9C}, {0x017E, 0x9E}, {0x0178, 0x9F},
}};

// The Windows-1252 byte for cp, or 0 when it has none (controls map to ' ').
unsigned char cp1252_byte(char32_t cp) {
  if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0)) return ' ';
  if (cp < 0x80 || (cp >= 0xA0 && cp <= 0xFF)) return static_cast<unsigned char>(cp);
  for (const auto& [from, to] : cp1252_high) {
    if (from == cp) return to;
  }
  return 0;
}

}  // namespace

std::string to_windows_1252(std::string_view utf8, std::size_t* replaced) {
  std::string out;
  out.reserve(utf8.size());
  std::size_t i = 0;
  while (i < utf8.size()) {
    const unsigned char b = cp1252_byte(next_code_point(utf8, i));
    if (b == 0) {
      out += '?';
      if (replaced != nullptr) ++*replaced;
    } else {
      out += static_cast<char>(b);
    }
  }
  return out;
}

bool fits_windows_1252(std::string_view utf8) {
  std::size_t i = 0;
  while (i < utf8.size()) {
    if (cp1252_byte(next_code_point(utf8, i)) == 0) return false;
  }
  return true;
}

namespace {

// Control characters (tabs, stray CRs) become spaces; the UTF-8 font path
// keeps everything else as it is.
std::string clean_utf8(std::string_view utf8) {
  std::string out;
  out.reserve(utf8.size());
  std::size_t i = 0;
  while (i < utf8.size()) {
    const std::size_t start = i;
    const char32_t cp = next_code_point(utf8, i);
    if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0)) {
      out += ' ';
    } else if (cp == 0xFFFD && utf8.substr(start, i - start) != "\xEF\xBF\xBD") {
      out += "\xEF\xBF\xBD";
    } else {
      out.append(utf8.substr(start, i - start));
    }
  }
  return out;
}

// ---- libharu --------------------------------------------------------------

enum class Style { regular, bold };

constexpr float text_width = page_width - 2 * margin;

// Advance widths (1/1000 em) of the 256 WinAnsi codes in Helvetica and
// Helvetica-Bold, read from libharu once per process: measuring text then
// costs a table look-up per byte instead of a call into libharu per line
// tried while wrapping.
struct Base14Widths {
  std::array<float, 256> regular{};
  std::array<float, 256> bold{};
};

const Base14Widths& base14_widths() {
  static const Base14Widths widths = [] {
    Base14Widths w;
    HaruError error;
    DocHandle doc(HPDF_New(on_haru_error, &error), HPDF_Free);
    if (!doc) return w;
    HPDF_Font regular = HPDF_GetFont(doc.get(), "Helvetica", "WinAnsiEncoding");
    HPDF_Font bold = HPDF_GetFont(doc.get(), "Helvetica-Bold", "WinAnsiEncoding");
    for (unsigned code = 1; code < 256; ++code) {
      const HPDF_BYTE byte = static_cast<HPDF_BYTE>(code);
      if (regular != nullptr) w.regular[code] = static_cast<float>(HPDF_Font_TextWidth(regular, &byte, 1).width);
      if (bold != nullptr) w.bold[code] = static_cast<float>(HPDF_Font_TextWidth(bold, &byte, 1).width);
    }
    return w;
  }();
  return widths;
}

// True when the file starts like a TrueType font with a table directory
// that fits in it. libharu crashes on a file that is not a font, so nothing
// else reaches it (a package's font file passes; a truncated or wrong file,
// e.g. a misnamed path, does not).
bool looks_like_truetype(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  unsigned char head[12] = {};
  if (!in.read(reinterpret_cast<char*>(head), sizeof head)) return false;
  const bool version = (head[0] == 0 && head[1] == 1 && head[2] == 0 && head[3] == 0) ||
                       (head[0] == 't' && head[1] == 'r' && head[2] == 'u' && head[3] == 'e');
  const unsigned tables = (static_cast<unsigned>(head[4]) << 8) | head[5];
  std::error_code ec;
  const auto size = std::filesystem::file_size(file, ec);
  return version && tables > 0 && !ec && size >= 12 + 16ULL * tables;
}

// The document's two faces and how text reaches them.
class Typeface {
 public:
  Typeface(HPDF_Doc doc, HaruError& error, const DocumentFonts& fonts, bool need_unicode) {
    if (need_unicode && fonts.unicode_font && looks_like_truetype(*fonts.unicode_font)) {
      HPDF_UseUTFEncodings(doc);
      const char* name = HPDF_LoadTTFontFromFile(doc, fonts.unicode_font->c_str(), HPDF_TRUE);
      if (name == nullptr) {
        // A font libharu refuses: carry on with the base-14 font (and the
        // "?" note) rather than fail the referral.
        error = {};
        HPDF_ResetError(doc);
      } else {
        regular_ = HPDF_GetFont(doc, name, "UTF-8");
        // One embedded face keeps the document small; bold is drawn by
        // stroking the glyph outlines as well as filling them.
        bold_ = regular_;
        unicode_ = regular_ != nullptr;
      }
    }
    if (!unicode_) {
      regular_ = HPDF_GetFont(doc, "Helvetica", "WinAnsiEncoding");
      bold_ = HPDF_GetFont(doc, "Helvetica-Bold", "WinAnsiEncoding");
      lossy_ = need_unicode;
    }
  }

  bool unicode() const { return unicode_; }
  // True when characters had to be replaced (no Unicode font available).
  bool lossy() const { return lossy_; }

  // Text in the bytes the font's encoding expects.
  std::string encode(std::string_view utf8) {
    if (unicode_) return clean_utf8(utf8);
    return to_windows_1252(utf8);
  }

  float width(std::string_view encoded, Style style, float size) const {
    if (encoded.empty()) return 0;
    if (!unicode_) {
      const auto& table = style == Style::bold ? base14_widths().bold : base14_widths().regular;
      float sum = 0;
      for (char c : encoded) sum += table[static_cast<unsigned char>(c)];
      return sum * size / 1000.0F;
    }
    const HPDF_TextWidth w = HPDF_Font_TextWidth(font(style), reinterpret_cast<const HPDF_BYTE*>(encoded.data()),
                                                 static_cast<HPDF_UINT>(encoded.size()));
    return static_cast<float>(w.width) * size / 1000.0F + (style == Style::bold && unicode_ ? 0.3F : 0.0F);
  }

  HPDF_Font font(Style style) const { return style == Style::bold ? bold_ : regular_; }

 private:
  HPDF_Font regular_ = nullptr;
  HPDF_Font bold_ = nullptr;
  bool unicode_ = false;
  bool lossy_ = false;
};

// One piece of text at a place on a page (already encoded for the font).
struct Placed {
  float x = 0;
  float y = 0;
  Style style = Style::regular;
  float size = 10;
  std::string text;
};

struct Rule {
  float y = 0;
};

struct PageLayout {
  std::vector<Placed> texts;
  std::vector<Rule> rules;
};

// The start of the next UTF-8 code point after position i.
std::size_t next_boundary(std::string_view s, std::size_t i, bool utf8) {
  if (!utf8) return i + 1;
  ++i;
  while (i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) ++i;
  return i;
}

// Greedy word wrap of encoded text into lines no wider than `max`; a word
// longer than a line is broken between characters. Line breaks are kept.
// Each word is measured once: a line's width is the sum of its words' and
// spaces' (neither font kerns here).
std::vector<std::string> wrap(const Typeface& face, const std::string& encoded, Style style, float size, float max) {
  std::vector<std::string> lines;
  const float space = face.width(" ", style, size);
  std::size_t start = 0;
  while (start <= encoded.size()) {
    const std::size_t nl = encoded.find('\n', start);
    const std::string_view paragraph =
        std::string_view(encoded).substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    std::string line;
    float line_width = 0;
    std::size_t i = 0;
    while (i < paragraph.size()) {
      std::size_t end = paragraph.find(' ', i);
      if (end == std::string_view::npos) end = paragraph.size();
      std::string_view word = paragraph.substr(i, end - i);
      float word_width = face.width(word, style, size);
      if (line.empty() ? word_width <= max : line_width + space + word_width <= max) {
        line_width = line.empty() ? word_width : line_width + space + word_width;
        if (!line.empty()) line += ' ';
        line += word;
      } else {
        if (!line.empty()) lines.push_back(std::move(line));
        line.clear();
        // Break an overlong word between characters.
        while (word_width > max) {
          std::size_t cut = 0;
          std::size_t next = next_boundary(word, 0, face.unicode());
          while (next < word.size() && face.width(word.substr(0, next), style, size) <= max) {
            cut = next;
            next = next_boundary(word, next, face.unicode());
          }
          if (cut == 0) cut = next_boundary(word, 0, face.unicode());
          lines.emplace_back(word.substr(0, cut));
          word.remove_prefix(cut);
          word_width = face.width(word, style, size);
        }
        line = std::string(word);
        line_width = word_width;
      }
      i = end + 1;
    }
    lines.push_back(std::move(line));
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  return lines;
}

// Places lines top to bottom, starting a new page when one is full.
class Flow {
 public:
  Flow(Typeface& face, float top, float bottom) : face_(face), top_(top), bottom_(bottom) { new_page(); }

  void gap(float points) { y_ -= points; }

  void heading(const std::string& utf8) {
    ensure(40);  // keep a heading with at least two lines of what follows
    gap(8);
    line(margin, face_.encode(utf8), Style::bold, 12, 16);
    pages_.back().rules.push_back({y_ + 1});
    gap(4);
  }

  void field(const std::string& label_utf8, const std::string& value_utf8, float label_width = 150) {
    const auto label_lines = wrap(face_, face_.encode(label_utf8), Style::bold, 10, label_width - 8);
    const auto value_lines = wrap(face_, face_.encode(value_utf8), Style::regular, 10, text_width - label_width);
    const std::size_t rows = std::max(label_lines.size(), value_lines.size());
    for (std::size_t k = 0; k < rows; ++k) {
      ensure(14);
      if (k < label_lines.size()) place(margin, label_lines[k], Style::bold, 10);
      if (k < value_lines.size()) place(margin + label_width, value_lines[k], Style::regular, 10);
      y_ -= 14;
    }
    gap(2);
  }

  void paragraph(const std::string& utf8, Style style = Style::regular, float size = 10) {
    for (auto& l : wrap(face_, face_.encode(utf8), style, size, text_width))
      line(margin, std::move(l), style, size, size * 1.4F);
  }

  std::vector<PageLayout> take() { return std::move(pages_); }

 private:
  void new_page() {
    pages_.emplace_back();
    y_ = top_;
  }
  void ensure(float needed) {
    if (y_ - needed < bottom_) new_page();
  }
  void line(float x, std::string encoded, Style style, float size, float advance) {
    ensure(advance);
    place(x, std::move(encoded), style, size);
    y_ -= advance;
  }
  void place(float x, std::string encoded, Style style, float size) {
    if (encoded.empty()) return;
    pages_.back().texts.push_back({x, y_ - size, style, size, std::move(encoded)});
  }

  Typeface& face_;
  float top_;
  float bottom_;
  float y_ = 0;
  std::vector<PageLayout> pages_;
};

bool document_needs_unicode(const std::vector<DocumentSection>& sections, const OfficeConfig& office) {
  for (const auto* s : {&office.name, &office.phone, &office.fax, &office.pager}) {
    if (!fits_windows_1252(*s)) return true;
  }
  for (const auto& section : sections) {
    for (const auto& f : section.fields) {
      if (!fits_windows_1252(f.label) || !fits_windows_1252(f.value)) return true;
    }
  }
  return false;
}

std::string upper_ascii(std::string s) {
  for (auto& c : s) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return s;
}

std::string plural(int n, const char* one, const char* many) { return std::to_string(n) + " " + (n == 1 ? one : many); }

// The cover sheet's line on the referral's files: where they are in this fax,
// or that they follow by other means (the limit and the ways the office has).
std::string records_line(const FaxRecords& records, int own_pages, bool included) {
  const std::string what = plural(records.files, "file", "files") + ", " + plural(records.pages, "page", "pages");
  if (included) {
    return what + ", sent with the referral: pages " + std::to_string(own_pages + 1) + " to " +
           std::to_string(own_pages + records.pages) + " of this fax.";
  }
  const std::string why = records.unreadable ? "they could not be made into fax pages here"
                                             : "with them it would have " + std::to_string(own_pages + records.pages) +
                                                   " pages; this fax line carries at most " +
                                                   std::to_string(records.max_pages) + ", max_fax_pages";
  return what + ": NOT in this fax (" + why +
         "). They follow by other means: by email where the office takes referrals by email, "
         "and the office can write each one out with the command below.";
}

std::string or_dash(const std::string& s) { return s.empty() ? std::string("—") : s; }

std::string confidentiality_notice(const OfficeConfig& office, const std::string& addressee) {
  std::string text =
      "CONFIDENTIALITY NOTICE: This transmission contains protected health information (PHI) that is "
      "confidential and protected by law (HIPAA). It is intended only for the " +
      addressee +
      " named above. If you are not the intended recipient, any review, use, disclosure, copying or "
      "distribution of it is prohibited";
  if (!office.phone.empty()) {
    text += "; please notify the sender at " + office.phone + " at once";
  }
  text += " and destroy all copies.";
  return text;
}

}  // namespace

const DocumentFonts& default_document_fonts() {
  static const DocumentFonts fonts = [] {
    DocumentFonts f;
    for (const char* candidate :
         {"/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf"}) {
      std::error_code ec;
      if (std::filesystem::is_regular_file(candidate, ec) && looks_like_truetype(candidate)) {
        f.unicode_font = candidate;
        break;
      }
    }
    return f;
  }();
  return fonts;
}

std::string render_referral_pdf(const Delivery& delivery, const OfficeConfig& office,
                                std::chrono::system_clock::time_point now) {
  return render_referral_pdf(delivery, office, now, default_document_fonts());
}

std::string render_referral_pdf(const Delivery& delivery, const OfficeConfig& office,
                                std::chrono::system_clock::time_point now, const DocumentFonts& fonts) {
  return render_referral_pdf(delivery, read_referral_document(delivery, office), office, now, fonts);
}

std::string page_footer_notice(const std::string& referral_id) {
  return "CONFIDENTIAL — protected health information. Reference " + referral_id + ".";
}

std::string render_referral_pdf(const Delivery& delivery, const ReferralDocument& document, const OfficeConfig& office,
                                std::chrono::system_clock::time_point now, const DocumentFonts& fonts) {
  return render_referral_fax(delivery, document, office, now, fonts, FaxRecords{}).pdf;
}

RenderedReferral render_referral_fax(const Delivery& delivery, const ReferralDocument& document,
                                     const OfficeConfig& office, std::chrono::system_clock::time_point now,
                                     const DocumentFonts& fonts, const FaxRecords& records) {
  const auto& sections = document.sections;
  const auto& referrer = document.referrer;

  HaruError error;
  DocHandle doc = new_haru_document(error);
  // A referrer's notice: one page of its own, no referral pages (notice_fields).
  const std::vector<DocumentField> notice =
      delivery.notice ? notice_fields(delivery, office) : std::vector<DocumentField>{};
  const bool needs_unicode =
      document_needs_unicode(sections, office) || document_needs_unicode({DocumentSection{"", notice}}, office);
  // An embedded font is large: compress it (set before it is loaded). Text
  // alone is small, and compressing it would cost more time than it saves.
  if (needs_unicode && fonts.unicode_font) HPDF_SetCompressionMode(doc.get(), HPDF_COMP_ALL);
  Typeface face(doc.get(), error, fonts, needs_unicode);
  HPDF_SetInfoAttr(doc.get(), HPDF_INFO_CREATOR, "referrald");
  const std::string title = "Referral " + delivery.referral_id;
  HPDF_SetInfoAttr(doc.get(), HPDF_INFO_TITLE, title.c_str());  // the id is ASCII

  const std::string urgency = std::string(to_string(delivery.urgency));
  const std::string decision = std::string(to_string(delivery.decision));

  // ---- referral pages (laid out first: the cover sheet counts them) ----
  Flow body(face, page_height - margin - 24, margin + 24);
  if (!delivery.notice) {
    for (const auto& section : sections) {
      body.heading(section.title);
      for (const auto& f : section.fields) {
        if (f.label.empty()) {
          body.paragraph(f.value);
        } else {
          body.field(f.label, f.value, section.title == "Other fields" ? 220.0F : 150.0F);
        }
      }
    }
  }
  auto referral_pages = body.take();

  // ---- cover sheet (a referrer's notice: the notice) ----
  // It counts the fax's pages, its own among them, and says where the files
  // start: laid out for one page, then again for as many as it took (an
  // escalation headline, an acknowledgement link and the font note can make
  // it longer).
  const auto lay_out_cover = [&](int fax_pages, int own_pages, bool records_included) {
    Flow cover(face, page_height - margin, margin);
    cover.paragraph("FAX", Style::bold, 28);
    if (delivery.notice) {
      cover.paragraph("Referral update — reference " + delivery.referral_id, Style::bold, 13);
      cover.gap(10);
      cover.heading("To");
      cover.field("Referring clinician", or_dash(referrer.name));
      cover.field("Organization", or_dash(referrer.organization));
      cover.field("Fax", or_dash(referrer.fax));
      cover.heading("From");
      cover.field("Office", office.name);
      cover.field("Phone", or_dash(office.phone));
      cover.field("Fax", or_dash(office.fax));
      cover.heading("Your referral");
      for (const auto& f : notice) cover.field(f.label, f.value);
      cover.heading("This transmission");
      cover.field("Date", format_office_time(office, now));
      cover.field("Pages", std::to_string(fax_pages));
      cover.gap(6);
      cover.paragraph("Please quote the reference number " + delivery.referral_id +
                      " when you call or write. The patient is named by initials and birth year only.");
    } else {
      if (delivery.escalation) {
        cover.paragraph(escalation_headline(delivery), Style::bold, 13);
        cover.gap(4);
      }
      cover.paragraph("Patient referral — " + upper_ascii(urgency) + " — reference " + delivery.referral_id,
                      Style::bold, 13);
      cover.gap(10);
      cover.heading("To");
      cover.field("Office", office.name);
      cover.field("Fax", or_dash(office.fax));
      cover.field("Phone", or_dash(office.phone));
      cover.heading("From");
      cover.field("Referring clinician", or_dash(referrer.name));
      cover.field("Organization", or_dash(referrer.organization));
      cover.field("Phone", or_dash(referrer.phone));
      cover.field("Fax", or_dash(referrer.fax));
      cover.heading("This transmission");
      cover.field("Date", format_office_time(office, now));
      cover.field("Pages", std::to_string(fax_pages) + " (including this cover sheet)");
      if (records.files > 0) cover.field("Records", records_line(records, own_pages, records_included));
      if (records.files > 0 && !records_included)
        cover.field("Each file", "referralctl attachment " + delivery.referral_id + " N --output FILE");
      cover.field("Reference number", delivery.referral_id);
      cover.field("Urgency", urgency);
      cover.field("Decision", decision);
      if (delivery.duplicate_of) cover.field("Possible duplicate of", *delivery.duplicate_of);
      cover.heading("Call-back numbers");
      cover.field("Referring clinician",
                  or_dash(referrer.phone) + (referrer.fax.empty() ? "" : " (fax " + referrer.fax + ")"));
      std::string office_numbers = or_dash(office.phone);
      if (!office.pager.empty()) office_numbers += "; 24-hour pager " + office.pager;
      cover.field("Referral office", office_numbers);
      if (!delivery.ack_link.empty()) {
        cover.heading("Acknowledge");
        cover.paragraph(
            "Open this link to acknowledge the referral (the page asks you to confirm; it works once), "
            "or run: referralctl ack " +
            delivery.referral_id);
        cover.paragraph(delivery.ack_link, Style::bold, 10);
      }
    }
    if (face.lossy()) {
      cover.gap(6);
      cover.paragraph(
          "NOTE: some characters in this referral cannot be shown with the fonts installed and appear "
          "as \"?\". The referral record (reference " +
              delivery.referral_id + ") holds every name exactly as submitted.",
          Style::bold, 10);
    }
    cover.gap(12);
    cover.paragraph(confidentiality_notice(office, delivery.notice ? std::string("referring clinician") : office.name),
                    Style::bold, 9);
    return cover.take();
  };
  std::size_t cover_length = 1;
  int own_pages = 0;
  bool records_included = false;
  std::vector<PageLayout> cover_pages;
  for (int layout = 0; layout < 3; ++layout) {
    own_pages = static_cast<int>(referral_pages.size() + cover_length);
    records_included = records.files > 0 && !records.unreadable && own_pages + records.pages <= records.max_pages;
    cover_pages = lay_out_cover(own_pages + (records_included ? records.pages : 0), own_pages, records_included);
    if (cover_pages.size() == cover_length) break;
    cover_length = cover_pages.size();
  }

  // ---- draw ----
  std::vector<PageLayout> pages;
  for (auto& p : cover_pages) pages.push_back(std::move(p));
  const std::size_t first_referral_page = pages.size();
  for (auto& p : referral_pages) pages.push_back(std::move(p));
  const std::size_t drawn = pages.size();
  const std::size_t total = drawn + (records_included ? static_cast<std::size_t>(records.pages) : 0);
  const std::string footer_notice = face.encode(page_footer_notice(delivery.referral_id));

  for (std::size_t n = 0; n < drawn; ++n) {
    auto& layout = pages[n];
    const std::string number = "Page " + std::to_string(n + 1) + " of " + std::to_string(total);
    if (n >= first_referral_page) {
      layout.texts.push_back({margin, page_height - margin - 10, Style::bold, 10,
                              face.encode("Referral " + delivery.referral_id + " — " + urgency + " — " + decision)});
      layout.rules.push_back({page_height - margin - 14});
    }
    layout.texts.push_back({margin, margin - 14, Style::regular, 8, footer_notice});
    const std::string number_text = face.encode(number);
    layout.texts.push_back({page_width - margin - face.width(number_text, Style::regular, 8), margin - 14,
                            Style::regular, 8, number_text});

    HPDF_Page page = HPDF_AddPage(doc.get());
    HPDF_Page_SetSize(page, HPDF_PAGE_SIZE_LETTER, HPDF_PAGE_PORTRAIT);
    HPDF_Page_SetLineWidth(page, 0.5F);
    for (const auto& rule : layout.rules) {
      HPDF_Page_MoveTo(page, margin, rule.y);
      HPDF_Page_LineTo(page, page_width - margin, rule.y);
      HPDF_Page_Stroke(page);
    }
    HPDF_Page_SetLineWidth(page, 0.3F);
    HPDF_Page_BeginText(page);
    // Text state changes only when it must: every libharu operator costs
    // (it clears a 512-byte buffer a byte at a time).
    std::optional<std::pair<Style, float>> current;
    for (const auto& t : layout.texts) {
      if (!current || current->first != t.style || current->second != t.size) {
        HPDF_Page_SetFontAndSize(page, face.font(t.style), t.size);
        if (face.unicode() && (!current || current->first != t.style)) {
          HPDF_Page_SetTextRenderingMode(page, t.style == Style::bold ? HPDF_FILL_THEN_STROKE : HPDF_FILL);
        }
        current.emplace(t.style, t.size);
      }
      HPDF_Page_TextOut(page, t.x, t.y, t.text.c_str());
    }
    HPDF_Page_EndText(page);
  }

  return {haru_document_bytes(doc.get(), error), static_cast<int>(drawn), records_included};
}

}  // namespace referrald
