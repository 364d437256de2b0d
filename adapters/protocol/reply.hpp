// Replies of the line-oriented protocols referrald speaks as a client: the
// HylaFAX client protocol (FTP-style) and SNPP (RFC 1861). A pure function
// over received bytes, so it can be tested and fuzzed without a socket.
//
// A reply is one or more CRLF (or bare LF) terminated lines:
//   "250 text"                      a single line (the text may be empty: "250")
//   "213-first\r\n...\r\n213 last"   FTP multi-line: "NNN-" opens it, a line
//                                    starting "NNN " (same code) closes it;
//                                    lines between may be anything
//   "214 help\r\n218 info\r\n250 ok" SNPP dialect only: complete 214/218 lines
//                                    are informational and precede the reply
// Limits bound every line and every reply: a peer that sends an endless line
// or an endless reply gets a protocol error, never unbounded memory.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace referrald::protocol {

enum class Dialect {
  ftp,   // HylaFAX hfaxd (port 4559)
  snpp,  // RFC 1861: 214/218 lines before a reply are skipped
};

struct ReplyLimits {
  std::size_t max_line_bytes = 4096;    // one line, without its line end
  std::size_t max_lines = 256;          // lines in one reply, informational lines included
  std::size_t max_reply_bytes = 65536;  // all lines of one reply, line ends included
};

struct Reply {
  int code = 0;                    // 100..999
  std::string text;                // the final line after "NNN " (may be empty)
  std::vector<std::string> lines;  // the text of every line, in order (the final one last)

  int reply_class() const noexcept { return code / 100; }  // 2 for 2xx
  bool positive() const noexcept { return code >= 100 && code < 400; }
};

enum class ParseStatus {
  incomplete,  // more bytes are needed; nothing is consumed
  complete,    // `reply` holds the reply; `consumed` bytes make it up
  malformed,   // the peer broke the protocol; `error` says how
};

struct ParseResult {
  ParseStatus status = ParseStatus::incomplete;
  std::size_t consumed = 0;
  Reply reply;
  std::string error;  // for malformed; printable ASCII only
};

// Parses the first reply at the start of `bytes`. Never throws for any input
// (only std::bad_alloc), never reads past `bytes`.
ParseResult parse_reply(std::string_view bytes, Dialect dialect, const ReplyLimits& limits = {});

// Peer text made safe for a log line or an operator message: control and
// non-ASCII bytes become '?', and it is cut to `max_bytes` with "...".
std::string printable(std::string_view text, std::size_t max_bytes = 200);

// "554 Failed to submit ...": a reply as an operator message quotes it
// (the code, then the text made printable and cut to 160 bytes).
std::string reply_summary(const Reply& reply);

}  // namespace referrald::protocol
