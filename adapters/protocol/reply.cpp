#include "adapters/protocol/reply.hpp"

namespace referrald::protocol {

namespace {

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

// The reply code at the start of a line: three digits, the first 1..9.
// 0 when the line does not start with one.
int leading_code(std::string_view line) noexcept {
  if (line.size() < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2]) || line[0] == '0') {
    return 0;
  }
  return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
}

bool informational(Dialect dialect, int code) noexcept {
  return dialect == Dialect::snpp && (code == 214 || code == 218);
}

ParseResult malformed(std::string error) {
  ParseResult r;
  r.status = ParseStatus::malformed;
  r.error = std::move(error);
  return r;
}

}  // namespace

ParseResult parse_reply(std::string_view bytes, Dialect dialect, const ReplyLimits& limits) {
  Reply reply;
  int open_code = 0;  // the code of an open FTP multi-line reply, 0 when none is open
  std::size_t pos = 0;
  while (true) {
    const std::size_t newline = bytes.find('\n', pos);
    if (newline == std::string_view::npos) {
      // An unterminated line may still grow; but not beyond the limits.
      const std::size_t pending = bytes.size() - pos;
      if (pending > limits.max_line_bytes + 1) {  // +1: a CR may still come
        return malformed("reply line longer than " + std::to_string(limits.max_line_bytes) + " bytes");
      }
      if (bytes.size() > limits.max_reply_bytes) {
        return malformed("reply longer than " + std::to_string(limits.max_reply_bytes) + " bytes");
      }
      return {};
    }
    std::string_view line = bytes.substr(pos, newline - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = newline + 1;
    if (line.size() > limits.max_line_bytes) {
      return malformed("reply line longer than " + std::to_string(limits.max_line_bytes) + " bytes");
    }
    if (pos > limits.max_reply_bytes) {
      return malformed("reply longer than " + std::to_string(limits.max_reply_bytes) + " bytes");
    }
    if (reply.lines.size() >= limits.max_lines) {
      return malformed("reply longer than " + std::to_string(limits.max_lines) + " lines");
    }

    const int code = leading_code(line);
    if (open_code != 0) {
      // Inside a multi-line reply: "NNN " or "NNN" with the opening code
      // closes it; "NNN-" lines and (RFC 959) any other text continue it.
      if (code == open_code && (line.size() == 3 || line[3] == ' ')) {
        reply.code = code;
        reply.text = std::string(line.substr(line.size() == 3 ? 3 : 4));
        reply.lines.push_back(reply.text);
        if (informational(dialect, code)) {
          open_code = 0;
          continue;
        }
        break;
      }
      if (code == open_code && line[3] == '-') line.remove_prefix(4);
      reply.lines.emplace_back(line);
      continue;
    }

    if (code == 0 || (line.size() > 3 && line[3] != ' ' && line[3] != '-')) {
      return malformed("malformed reply line \"" + printable(line, 80) + "\"");
    }
    const std::string_view text = line.size() > 3 ? line.substr(4) : std::string_view();
    reply.lines.emplace_back(text);
    if (line.size() > 3 && line[3] == '-') {
      open_code = code;
      continue;
    }
    if (informational(dialect, code)) continue;
    reply.code = code;
    reply.text = std::string(text);
    break;
  }
  ParseResult r;
  r.status = ParseStatus::complete;
  r.consumed = pos;
  r.reply = std::move(reply);
  return r;
}

std::string printable(std::string_view text, std::size_t max_bytes) {
  std::string out;
  const bool cut = text.size() > max_bytes;
  if (cut) text = text.substr(0, max_bytes);
  out.reserve(text.size() + 3);
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    out.push_back(u >= 0x20 && u < 0x7f ? c : '?');
  }
  if (cut) out += "...";
  return out;
}

std::string reply_summary(const Reply& reply) { return std::to_string(reply.code) + " " + printable(reply.text, 160); }

}  // namespace referrald::protocol
