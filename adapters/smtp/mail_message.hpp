// An RFC 5322 / MIME message built as text, CRLF throughout: headers with
// RFC 2047 encoded words where they need them, a quoted-printable text part
// and base64 attachments. Nothing here reads a clock; the only file read is
// an attachment's sealed spool, as the message is streamed (MailStream).
//
// Header values never carry a line break of their own: display names are
// checked (parse_mailbox refuses control characters), the subject's controls
// become spaces and any non-ASCII or overlong text is encoded and folded here.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace referrald {

class FileReader;   // util/file_reader.hpp
class SealedSpool;  // util/sealed_spool.hpp

struct Mailbox {
  std::string display_name;  // UTF-8, may be empty
  std::string address;       // addr-spec: local@domain, ASCII
  bool operator==(const Mailbox&) const = default;
};

// Parses `a@b.example` or `Display Name <a@b.example>` (the name may be
// quoted). nullopt, with the reason in *problem, for anything else: control
// characters, spaces or brackets inside the address, no "@", non-ASCII in
// the address.
std::optional<Mailbox> parse_mailbox(std::string_view text, std::string* problem = nullptr);

struct MailAttachment {
  std::string filename;      // ASCII
  std::string content_type;  // e.g. application/pdf
  std::string data;          // raw bytes
  // Or the bytes in a sealed spool, read a block at a time as the message
  // is streamed; `data` is empty then.
  std::shared_ptr<const SealedSpool> spooled = nullptr;
};

struct MailMessage {
  Mailbox from;
  std::vector<Mailbox> to;
  std::string subject;     // UTF-8, one line
  std::string message_id;  // without the angle brackets: identity@domain
  std::chrono::system_clock::time_point date;
  std::string text;  // UTF-8, "\n" line ends
  std::vector<MailAttachment> attachments;
};

// The whole message, CRLF line ends, ready for SMTP DATA (libcurl does the
// dot-stuffing). With attachments it is multipart/mixed. Each file is read
// and encoded whole: for tests and small messages; a delivery streams its
// message (MailStream), the same bytes.
std::string render_mail(const MailMessage& message);

// A piece of a message: text, or the base64 lines of attachment `attachment`.
struct MailPiece {
  std::string text;
  std::size_t attachment = static_cast<std::size_t>(-1);  // -1: text
  std::size_t start = 0;                                  // its first byte's offset in the message
  std::size_t size = 0;
};

// The message render_mail builds, read a piece at a time as libcurl sends
// it (CURLOPT_READFUNCTION): the headers, the text part and in-memory files
// from the message, each spooled file's base64 lines encoded `chunk_bytes`
// at a time from its spool. Besides the message it holds one spool block
// (a FileReader) and one chunk with its base64, whatever the files' sizes.
// It can go back to any offset (CURLOPT_SEEKFUNCTION: a rewind for a retry).
class MailStream {
 public:
  // 57 bytes make one 76-character base64 line: a chunk is whole lines, so
  // chunks encoded apart join into the lines of the whole file. 1,149 lines
  // are 65,493 bytes, about a spool block (SealedSpool::block_size).
  static constexpr std::size_t line_bytes = 57;
  static constexpr std::size_t chunk_bytes = line_bytes * 1149;

  MailStream();  // an empty message
  explicit MailStream(MailMessage message);
  // A message rendered already (the SMTP fuzz target's).
  explicit MailStream(std::string rendered);
  ~MailStream();
  MailStream(MailStream&&) noexcept;
  MailStream& operator=(MailStream&&) noexcept;

  // Of the whole message (CURLOPT_INFILESIZE), known before any of it is read.
  std::size_t size() const { return size_; }
  // Copies up to `n` of the next bytes to `out`; fewer only at the end (0
  // there). Throws std::runtime_error when a spool's block cannot be read
  // or does not open, or a file reads back shorter than it was.
  std::size_t read(char* out, std::size_t n);
  // Reads from byte `offset` on (0: from the start again); false past the end.
  bool seek(std::size_t offset);

 private:
  // The base64 lines of chunk `chunk` of attachment `attachment`, encoded
  // into encoded_ unless they are there already.
  const std::string& encoded_chunk(std::size_t attachment, std::size_t chunk);

  MailMessage message_;
  std::vector<MailPiece> pieces_;
  std::size_t size_ = 0;
  std::size_t piece_ = 0;               // the piece being read
  std::size_t offset_ = 0;              // in it
  std::unique_ptr<FileReader> reader_;  // of attachment reader_for_
  std::size_t reader_for_ = static_cast<std::size_t>(-1);
  std::string raw_;      // a chunk of a file
  std::string encoded_;  // its base64 lines: chunk encoded_chunk_ of attachment encoded_for_
  std::size_t encoded_for_ = static_cast<std::size_t>(-1);
  std::size_t encoded_chunk_ = 0;
};

// "Sat, 28 Nov 2026 07:00:25 +0000"
std::string format_rfc5322_date(std::chrono::system_clock::time_point t);

// An unstructured header's value ("Subject: " has `used` characters before
// it): printable ASCII stays as it is, folded at spaces when long; anything
// else becomes RFC 2047 "=?UTF-8?B?...?=" words of at most 75 characters,
// one per folded line. Control characters become spaces.
std::string encode_header_text(std::string_view utf8, std::size_t used);

// Base64 in lines of 76 characters, each ending in CRLF.
std::string base64_lines(std::string_view data);
// How long base64_lines(data) is for `size` bytes of data.
std::size_t base64_lines_size(std::size_t size);

// Quoted-printable (RFC 2045) of UTF-8 text with "\n" line ends: CRLF line
// ends, soft breaks keep every line at most 76 characters.
std::string quoted_printable(std::string_view text);

}  // namespace referrald
