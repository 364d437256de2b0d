// The SNPP and HylaFAX targets' shared harness: feeds bytes to parse_reply
// as a socket delivers them — in pieces, parsing after each and dropping
// each complete reply from the buffer as protocol::Connection::read_reply
// does — and checks the parser's promises against parsing everything at once.
#pragma once

#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/protocol/reply.hpp"
#include "check.hpp"

namespace referrald::fuzz {

using protocol::Dialect;
using protocol::ParseResult;
using protocol::ParseStatus;
using protocol::Reply;
using protocol::ReplyLimits;

// What the peer's bytes amount to: the replies in order, then how it ends
// (incomplete: waiting for more; malformed: the connection is dropped).
struct ReplyStream {
  std::vector<Reply> replies;
  ParseStatus end = ParseStatus::incomplete;
};

// One parse_reply call, with the promises of reply.hpp checked.
inline ParseResult parse_checked(std::string_view buffer, Dialect dialect, const ReplyLimits& limits) {
  ParseResult r = protocol::parse_reply(buffer, dialect, limits);
  switch (r.status) {
    case ParseStatus::incomplete: require(r.consumed == 0, "incomplete, yet bytes consumed"); break;
    case ParseStatus::malformed:
      require(!r.error.empty() && is_printable_ascii(r.error), "malformed without a printable error");
      break;
    case ParseStatus::complete: {
      require(r.consumed > 0 && r.consumed <= buffer.size(), "consumed outside the buffer");
      require(buffer[r.consumed - 1] == '\n', "a reply that does not end at a line end");
      require(r.consumed <= limits.max_reply_bytes, "a reply over max_reply_bytes");
      const Reply& reply = r.reply;
      require(reply.code >= 100 && reply.code <= 999, "reply code outside 100..999");
      require(!reply.lines.empty() && reply.lines.size() <= limits.max_lines, "reply line count out of bounds");
      require(reply.lines.back() == reply.text, "the final line is not the reply text");
      for (const auto& line : reply.lines) {
        require(line.size() <= limits.max_line_bytes, "a line over max_line_bytes");
        require(line.find('\n') == std::string::npos, "a line end inside a line");
      }
      if (dialect == Dialect::snpp)
        require(reply.code != 214 && reply.code != 218, "SNPP 214/218 returned as the reply");
      break;
    }
  }
  return r;
}

// All bytes at once, reply after reply.
inline ReplyStream parse_whole(std::string_view bytes, Dialect dialect, const ReplyLimits& limits) {
  ReplyStream out;
  while (true) {
    auto r = parse_checked(bytes, dialect, limits);
    if (r.status != ParseStatus::complete) {
      out.end = r.status;
      return out;
    }
    bytes.remove_prefix(r.consumed);
    out.replies.push_back(std::move(r.reply));
  }
}

// The same bytes arriving in pieces of the given sizes (the rest at the end).
inline ReplyStream parse_pieces(std::string_view bytes, const std::vector<std::size_t>& pieces, Dialect dialect,
                                const ReplyLimits& limits) {
  ReplyStream out;
  std::string buffer;
  std::size_t fed = 0;
  for (std::size_t i = 0; i <= pieces.size() && out.end != ParseStatus::malformed; ++i) {
    const std::size_t n = i < pieces.size() ? std::min(pieces[i], bytes.size() - fed) : bytes.size() - fed;
    buffer.append(bytes.substr(fed, n));
    fed += n;
    while (true) {
      auto r = parse_checked(buffer, dialect, limits);
      out.end = r.status;
      if (r.status != ParseStatus::complete) break;
      buffer.erase(0, r.consumed);
      out.replies.push_back(std::move(r.reply));
    }
  }
  return out;
}

inline bool same_reply(const Reply& a, const Reply& b) {
  return a.code == b.code && a.text == b.text && a.lines == b.lines;
}

// The fuzz input: the peer's bytes first, then (consumed from the end by
// FuzzedDataProvider) the limits and the sizes of the pieces they arrive in.
// A seed that is a plain transcript works as it is: its last bytes choose.
// Returns the complete replies, for the dialect's further checks.
inline std::vector<Reply> check_reply_stream(const std::uint8_t* data, std::size_t size, Dialect dialect) {
  FuzzedDataProvider input(data, size);
  ReplyLimits limits;
  if (input.ConsumeBool()) {
    // Small limits, so that inputs of a few hundred bytes reach every limit.
    limits.max_line_bytes = input.ConsumeIntegralInRange<std::size_t>(0, 64);
    limits.max_lines = input.ConsumeIntegralInRange<std::size_t>(1, 8);
    limits.max_reply_bytes = input.ConsumeIntegralInRange<std::size_t>(1, 256);
  }
  std::vector<std::size_t> pieces(input.ConsumeIntegralInRange<std::size_t>(0, 8));
  for (auto& n : pieces) n = input.ConsumeIntegralInRange<std::size_t>(0, 64);
  const std::string bytes = input.ConsumeRemainingBytesAsString();

  ReplyStream whole = parse_whole(bytes, dialect, limits);
  const ReplyStream pieced = parse_pieces(bytes, pieces, dialect, limits);
  // A complete reply stays what it was when more bytes arrive, and a peer
  // that broke the protocol is not redeemed by what it sends next.
  require(whole.replies.size() == pieced.replies.size(), "pieces give a different number of replies");
  for (std::size_t i = 0; i < whole.replies.size(); ++i) {
    require(same_reply(whole.replies[i], pieced.replies[i]), "pieces give a different reply");
  }
  require(whole.end == pieced.end, "pieces end the stream differently");
  return std::move(whole.replies);
}

}  // namespace referrald::fuzz
