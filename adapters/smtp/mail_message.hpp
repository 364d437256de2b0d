// An RFC 5322 / MIME message built as text, CRLF throughout: headers with
// RFC 2047 encoded words where they need them, a quoted-printable text part
// and base64 attachments. Pure functions; nothing here reads a clock or a file.
//
// Header values never carry a line break of their own: display names are
// checked (parse_mailbox refuses control characters), the subject's controls
// become spaces and any non-ASCII or overlong text is encoded and folded here.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace referrald {

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
// dot-stuffing). With attachments it is multipart/mixed.
std::string render_mail(const MailMessage& message);

// "Sat, 28 Nov 2026 07:00:25 +0000"
std::string format_rfc5322_date(std::chrono::system_clock::time_point t);

// An unstructured header's value ("Subject: " has `used` characters before
// it): printable ASCII stays as it is, folded at spaces when long; anything
// else becomes RFC 2047 "=?UTF-8?B?...?=" words of at most 75 characters,
// one per folded line. Control characters become spaces.
std::string encode_header_text(std::string_view utf8, std::size_t used);

// Base64 in lines of 76 characters, each ending in CRLF.
std::string base64_lines(std::string_view data);

// Quoted-printable (RFC 2045) of UTF-8 text with "\n" line ends: CRLF line
// ends, soft breaks keep every line at most 76 characters.
std::string quoted_printable(std::string_view text);

}  // namespace referrald
