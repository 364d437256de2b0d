// libFuzzer target: SNPP replies (RFC 1861) as the pager adapter reads them,
// parse_reply with Dialect::snpp fed in pieces (reply_stream.hpp), and
// printable(), which makes a reply's text fit for a log line and for the
// outcome an operator reads.
#include <cstddef>
#include <cstdint>

#include "reply_stream.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace referrald::fuzz;
  for (const auto& reply : check_reply_stream(data, size, Dialect::snpp)) {
    const std::string shown = referrald::protocol::printable(reply.text, 160);
    require(is_printable_ascii(shown), "printable() let a control or non-ASCII byte through");
    require(shown.size() <= 163, "printable() longer than its limit and \"...\"");
  }
  return 0;
}
