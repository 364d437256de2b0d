#include "adapters/smtp/mail_message.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <stdexcept>

#include "util/crypto.hpp"
#include "util/file_reader.hpp"
#include "util/sealed_spool.hpp"

namespace referrald {

namespace {

constexpr std::string_view crlf = "\r\n";
constexpr std::size_t no_attachment = static_cast<std::size_t>(-1);

bool is_printable_ascii(std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u > 0x7E) return false;
  }
  return true;
}

std::string controls_to_spaces(std::string_view s) {
  std::string out(s);
  for (auto& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) c = ' ';
  }
  return out;
}

// RFC 5322 atext plus space: a display name made of these needs no quotes.
bool is_plain_phrase(std::string_view s) {
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    std::string_view("!#$%&'*+-/=?^_`{|}~ ").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

// Splits UTF-8 text into pieces of at most max_bytes (first_max for the
// first), never inside a code point.
std::vector<std::string_view> utf8_chunks(std::string_view s, std::size_t first_max, std::size_t rest_max) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (start < s.size()) {
    const std::size_t max_bytes = out.empty() ? first_max : rest_max;
    std::size_t end = std::min(s.size(), start + max_bytes);
    while (end < s.size() && end > start && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
    if (end == start) end = std::min(s.size(), start + max_bytes);  // not UTF-8: cut anyway
    out.push_back(s.substr(start, end - start));
    start = end;
  }
  return out;
}

std::string encoded_words(std::string_view utf8, std::size_t used) {
  // 75 characters per word: "=?UTF-8?B?" + 60 base64 characters (45 bytes) + "?=".
  // A word is "=?UTF-8?B?" + base64 + "?=": 12 characters plus 4 for every
  // 3 bytes. The first shares its line with the header name; the others get
  // a folded line of their own (" " + at most 75 characters).
  const std::size_t room = used + 12 + 8 < 78 ? 78 - used - 12 : 8;
  std::string out;
  for (const auto chunk : utf8_chunks(utf8, room / 4 * 3, 45)) {
    if (!out.empty()) out += "\r\n ";
    out += "=?UTF-8?B?" + base64(chunk) + "?=";
  }
  return out;
}

// A display name as an RFC 5322 phrase.
std::string phrase(std::string_view name) {
  if (is_plain_phrase(name)) return std::string(name);
  if (is_printable_ascii(name)) {
    std::string out = "\"";
    for (char c : name) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    return out + "\"";
  }
  return encoded_words(name, 0);
}

std::string mailbox_text(const Mailbox& m) {
  if (m.display_name.empty()) return m.address;
  return phrase(m.display_name) + " <" + m.address + ">";
}

// "To: a, b" folded so no line grows past 78 characters where it can be helped.
std::string address_header(std::string_view name, const std::vector<Mailbox>& boxes) {
  std::string out(name);
  out += ": ";
  std::size_t column = out.size();
  for (std::size_t i = 0; i < boxes.size(); ++i) {
    std::string text = mailbox_text(boxes[i]);
    if (i + 1 < boxes.size()) text += ",";
    if (i > 0) {
      if (column + 1 + text.size() > 78) {
        out += "\r\n ";
        column = 1;
      } else {
        out += ' ';
        ++column;
      }
    }
    out += text;
    const auto last_break = text.rfind('\n');
    column = last_break == std::string::npos ? column + text.size() : text.size() - last_break - 1;
  }
  return out + "\r\n";
}

// FNV-1a, for a boundary that is the same on every attempt.
std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 1469598103934665603ULL;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

std::string hex64(std::uint64_t v) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i) {
    out[static_cast<std::size_t>(i)] = digits[v & 15];
    v >>= 4;
  }
  return out;
}

// Message-ID text: anything outside dot-atom-text becomes '_'.
std::string safe_message_id(std::string_view id) {
  std::string out;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    std::string_view("!#$%&'*+-/=?^_`{|}~.@").find(c) != std::string_view::npos;
    out += ok ? c : '_';
  }
  return out;
}

// A filename parameter: printable ASCII without quotes or backslashes.
std::string safe_filename(std::string_view name) {
  std::string out;
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u > 0x7E || c == '"' || c == '\\') ? '_' : c;
  }
  return out.empty() ? std::string("attachment") : out;
}

}  // namespace

std::optional<Mailbox> parse_mailbox(std::string_view text, std::string* problem) {
  auto fail = [&](std::string why) -> std::optional<Mailbox> {
    if (problem != nullptr) *problem = std::move(why);
    return std::nullopt;
  };
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) return fail("control characters (line breaks) are not allowed");
  }
  auto trim = [](std::string_view s) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    return s;
  };
  text = trim(text);
  Mailbox m;
  std::string_view address = text;
  const auto open = text.rfind('<');
  if (open != std::string_view::npos) {
    if (text.back() != '>') return fail("expected \"Name <address>\"");
    address = text.substr(open + 1, text.size() - open - 2);
    std::string_view name = trim(text.substr(0, open));
    if (name.size() >= 2 && name.front() == '"' && name.back() == '"') {
      std::string unquoted;
      for (std::size_t i = 1; i + 1 < name.size(); ++i) {
        if (name[i] == '\\' && i + 2 < name.size()) ++i;
        unquoted += name[i];
      }
      m.display_name = std::move(unquoted);
    } else {
      m.display_name = std::string(name);
    }
  }
  const auto at = address.rfind('@');
  if (address.empty()) return fail("the address is empty");
  if (at == std::string_view::npos || at == 0 || at + 1 == address.size()) {
    return fail("expected an address like name@domain");
  }
  for (char c : address) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7F || c == '<' || c == '>' || c == '(' || c == ')' || c == ',' || c == ';' || c == '"' ||
        c == '\\') {
      return fail("the address holds a character it may not (spaces, brackets, quotes, non-ASCII)");
    }
  }
  m.address = std::string(address);
  return m;
}

std::string format_rfc5322_date(std::chrono::system_clock::time_point t) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  ::gmtime_r(&seconds, &tm);
  static constexpr std::array<const char*, 7> days{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr std::array<const char*, 12> months{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[static_cast<std::size_t>(tm.tm_wday)],
                tm.tm_mday, months[static_cast<std::size_t>(tm.tm_mon)], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  return buf;
}

std::string encode_header_text(std::string_view utf8, std::size_t used) {
  const std::string text = controls_to_spaces(utf8);
  if (!is_printable_ascii(text)) return encoded_words(text, used);
  // Fold printable ASCII at spaces to stay within 78 characters a line.
  std::string out;
  std::size_t column = used;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t end = text.find(' ', i + 1);
    if (end == std::string::npos) end = text.size();
    const std::string_view piece = std::string_view(text).substr(i, end - i);  // starts with ' ' after the first
    if (!out.empty() && piece.front() == ' ' && column + piece.size() > 78) {
      out += "\r\n";
      column = 0;
    }
    out += piece;
    column += piece.size();
    i = end;
  }
  return out;
}

namespace {

// Appends the base64 lines of `data` to `out`, encoded straight into it a
// line (57 bytes) at a time: no temporary copy of a file's text is left
// behind in freed memory.
void append_base64_lines(std::string& out, std::string_view data) {
  const std::size_t start = out.size();
  out.resize(start + base64_lines_size(data.size()));
  auto* at = reinterpret_cast<unsigned char*>(out.data() + start);
  const auto* in = reinterpret_cast<const unsigned char*>(data.data());
  for (std::size_t i = 0; i < data.size(); i += MailStream::line_bytes) {
    const std::size_t n = std::min(MailStream::line_bytes, data.size() - i);
    at += EVP_EncodeBlock(at, in + i, static_cast<int>(n));
    *at++ = '\r';
    *at++ = '\n';
  }
}

}  // namespace

std::string base64_lines(std::string_view data) {
  std::string out;
  append_base64_lines(out, data);
  return out;
}

std::string quoted_printable(std::string_view text) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(start, nl - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    std::size_t column = 0;
    for (std::size_t i = 0; i < line.size(); ++i) {
      const auto u = static_cast<unsigned char>(line[i]);
      const bool last = i + 1 == line.size();
      std::string piece;
      if ((u >= 33 && u <= 126 && u != '=') || ((u == ' ' || u == '\t') && !last)) {
        piece = static_cast<char>(u);
      } else {
        piece = {'=', hex[u >> 4], hex[u & 15]};
      }
      // A soft break ("=") leaves room for the line to end at 76.
      if (column + piece.size() > 75) {
        out += "=\r\n";
        column = 0;
      }
      out += piece;
      column += piece.size();
    }
    if (nl == text.size()) {
      if (!line.empty()) out += crlf;
      break;
    }
    out += crlf;
    start = nl + 1;
  }
  return out;
}

namespace {

std::size_t attachment_size(const MailAttachment& a) { return a.spooled ? a.spooled->size() : a.data.size(); }

// The message as pieces: the text between the files, and each file's slot
// for its base64 lines (render_mail encodes each whole, MailStream a chunk
// at a time).
std::vector<MailPiece> mail_pieces(const MailMessage& m) {
  std::vector<MailPiece> pieces;
  std::string out;
  out.reserve(1024 + m.text.size() * 2);
  out += "Date: " + format_rfc5322_date(m.date) + "\r\n";
  out += address_header("From", {m.from});
  out += address_header("To", m.to);
  out += "Subject: " + encode_header_text(m.subject, 9) + "\r\n";
  out += "Message-ID: <" + safe_message_id(m.message_id) + ">\r\n";
  out += "MIME-Version: 1.0\r\n";
  out += "Auto-Submitted: auto-generated\r\n";
  const std::string text_headers =
      "Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n";
  if (m.attachments.empty()) {
    out += text_headers + "\r\n";
    out += quoted_printable(m.text);
  } else {
    // "=_" never occurs in base64 or quoted-printable text, so the boundary
    // cannot appear inside a part.
    const std::string boundary = "=_referrald_" + hex64(fnv1a(m.message_id));
    out += "Content-Type: multipart/mixed; boundary=\"" + boundary + "\"\r\n";
    out += "\r\nThis is a MIME message: a text part and the referral as PDF.\r\n";
    out += "\r\n--" + boundary + "\r\n";
    out += text_headers + "\r\n";
    out += quoted_printable(m.text);
    for (std::size_t i = 0; i < m.attachments.size(); ++i) {
      const MailAttachment& a = m.attachments[i];
      const std::string name = safe_filename(a.filename);
      out += "\r\n--" + boundary + "\r\n";
      out += "Content-Type: " + a.content_type + ";\r\n name=\"" + name + "\"\r\n";
      out += "Content-Disposition: attachment;\r\n filename=\"" + name + "\"\r\n";
      out += "Content-Transfer-Encoding: base64\r\n\r\n";
      pieces.push_back({std::move(out), no_attachment});
      pieces.push_back({{}, i});
      out.clear();
    }
    out += "\r\n--" + boundary + "--\r\n";
  }
  pieces.push_back({std::move(out), no_attachment});
  std::size_t start = 0;
  for (auto& p : pieces) {
    p.start = start;
    p.size =
        p.attachment == no_attachment ? p.text.size() : base64_lines_size(attachment_size(m.attachments[p.attachment]));
    start += p.size;
  }
  return pieces;
}

// The base64 lines of a whole chunk (MailStream::chunk_bytes): 76
// characters and CRLF for each 57 bytes.
constexpr std::size_t encoded_chunk_size = MailStream::chunk_bytes / MailStream::line_bytes * 78;

}  // namespace

std::size_t base64_lines_size(std::size_t size) {
  const std::size_t encoded = 4 * ((size + 2) / 3);
  return encoded + 2 * ((encoded + 75) / 76);
}

std::string render_mail(const MailMessage& m) {
  const auto pieces = mail_pieces(m);
  std::string out;
  out.reserve(pieces.back().start + pieces.back().size);
  for (const auto& p : pieces) {
    if (p.attachment == no_attachment) {
      out += p.text;
    } else {
      const MailAttachment& a = m.attachments[p.attachment];
      out += base64_lines(a.spooled ? a.spooled->read_all() : a.data);
    }
  }
  return out;
}

MailStream::MailStream() : MailStream(std::string()) {}

MailStream::MailStream(MailMessage message) : message_(std::move(message)), pieces_(mail_pieces(message_)) {
  size_ = pieces_.back().start + pieces_.back().size;
}

MailStream::MailStream(std::string rendered) {
  size_ = rendered.size();
  pieces_.push_back({std::move(rendered), no_attachment, 0, size_});
}

MailStream::~MailStream() {
  // The plaintext of a referral's files (the reader wipes its block).
  OPENSSL_cleanse(raw_.data(), raw_.size());
  OPENSSL_cleanse(encoded_.data(), encoded_.size());
}

// The reader is not moved: it may point into a file's `data`, which a move
// of a short string copies elsewhere. The next read opens it again.
MailStream::MailStream(MailStream&& other) noexcept
    : message_(std::move(other.message_)),
      pieces_(std::move(other.pieces_)),
      size_(other.size_),
      piece_(other.piece_),
      offset_(other.offset_),
      raw_(std::move(other.raw_)),
      encoded_(std::move(other.encoded_)),
      encoded_for_(other.encoded_for_),
      encoded_chunk_(other.encoded_chunk_) {
  other.reader_.reset();
  other.reader_for_ = no_attachment;
  other.encoded_for_ = no_attachment;
}

MailStream& MailStream::operator=(MailStream&& other) noexcept {
  if (this == &other) return *this;
  OPENSSL_cleanse(raw_.data(), raw_.size());
  OPENSSL_cleanse(encoded_.data(), encoded_.size());
  message_ = std::move(other.message_);
  pieces_ = std::move(other.pieces_);
  size_ = other.size_;
  piece_ = other.piece_;
  offset_ = other.offset_;
  reader_.reset();
  reader_for_ = no_attachment;
  raw_ = std::move(other.raw_);
  encoded_ = std::move(other.encoded_);
  encoded_for_ = other.encoded_for_;
  encoded_chunk_ = other.encoded_chunk_;
  other.reader_.reset();
  other.reader_for_ = no_attachment;
  other.encoded_for_ = no_attachment;
  return *this;
}

const std::string& MailStream::encoded_chunk(std::size_t attachment, std::size_t chunk) {
  if (encoded_for_ == attachment && encoded_chunk_ == chunk) return encoded_;
  const MailAttachment& a = message_.attachments[attachment];
  if (reader_for_ != attachment) {
    reader_for_ = no_attachment;
    reader_ = a.spooled ? std::make_unique<FileReader>(*a.spooled) : std::make_unique<FileReader>(a.data);
    reader_for_ = attachment;
  }
  const std::size_t from = chunk * chunk_bytes;
  encoded_for_ = no_attachment;  // until the new chunk is in
  OPENSSL_cleanse(raw_.data(), raw_.size());
  raw_.resize(std::min(chunk_bytes, reader_->size() - std::min(from, reader_->size())));
  raw_.resize(reader_->read(from, raw_.data(), raw_.size()));
  OPENSSL_cleanse(encoded_.data(), encoded_.size());
  encoded_.clear();
  append_base64_lines(encoded_, raw_);
  encoded_for_ = attachment;
  encoded_chunk_ = chunk;
  return encoded_;
}

std::size_t MailStream::read(char* out, std::size_t n) {
  std::size_t done = 0;
  while (done < n && piece_ < pieces_.size()) {
    const MailPiece& p = pieces_[piece_];
    if (offset_ >= p.size) {
      ++piece_;
      offset_ = 0;
      continue;
    }
    std::string_view from = p.text;
    std::size_t at = offset_;
    if (p.attachment != no_attachment) {
      const std::size_t chunk = offset_ / encoded_chunk_size;
      from = encoded_chunk(p.attachment, chunk);
      at = offset_ - chunk * encoded_chunk_size;
      // The piece's size was counted from the file's: a file that reads
      // back shorter would leave the message cut short, and this loop stuck.
      if (at >= from.size()) throw std::runtime_error("an attached file read back shorter than it was");
    }
    const std::size_t k = std::min(n - done, from.size() - at);
    std::memcpy(out + done, from.data() + at, k);
    done += k;
    offset_ += k;
  }
  return done;
}

bool MailStream::seek(std::size_t offset) {
  if (offset > size_) return false;
  piece_ = 0;
  while (piece_ < pieces_.size() && offset >= pieces_[piece_].start + pieces_[piece_].size) ++piece_;
  offset_ = piece_ < pieces_.size() ? offset - pieces_[piece_].start : 0;
  return true;
}

}  // namespace referrald
