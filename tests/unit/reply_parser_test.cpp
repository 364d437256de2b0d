// The reply parser shared by the SNPP and HylaFAX clients: single and
// multi-line replies, SNPP's informational lines, partial input, garbage and
// oversized input (a protocol error, never a crash or unbounded growth).
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "adapters/protocol/reply.hpp"

namespace referrald::protocol {
namespace {

ParseResult ftp(std::string_view bytes, const ReplyLimits& limits = {}) {
  return parse_reply(bytes, Dialect::ftp, limits);
}
ParseResult snpp(std::string_view bytes, const ReplyLimits& limits = {}) {
  return parse_reply(bytes, Dialect::snpp, limits);
}

TEST(ReplyParser, SingleLine) {
  const auto r = ftp("220 vm server (HylaFAX (tm) Version 6.0.7) ready.\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.reply.code, 220);
  EXPECT_EQ(r.reply.text, "vm server (HylaFAX (tm) Version 6.0.7) ready.");
  EXPECT_EQ(r.consumed, 51U);
  EXPECT_EQ(r.reply.reply_class(), 2);
  EXPECT_TRUE(r.reply.positive());
}

TEST(ReplyParser, BareLfAndCodeWithoutText) {
  auto r = ftp("213\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.reply.code, 213);
  EXPECT_EQ(r.reply.text, "");
  r = ftp("213 \r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.reply.text, "");
}

TEST(ReplyParser, ConsumesOnlyTheFirstReply) {
  const std::string two = "331 Password required for secure.\r\n230 User secure logged in.\r\n";
  const auto first = ftp(two);
  ASSERT_EQ(first.status, ParseStatus::complete);
  EXPECT_EQ(first.reply.code, 331);
  const auto second = ftp(std::string_view(two).substr(first.consumed));
  ASSERT_EQ(second.status, ParseStatus::complete);
  EXPECT_EQ(second.reply.code, 230);
  EXPECT_EQ(first.consumed + second.consumed, two.size());
}

TEST(ReplyParser, IncompleteUntilTheLineEnds) {
  EXPECT_EQ(ftp("").status, ParseStatus::incomplete);
  EXPECT_EQ(ftp("2").status, ParseStatus::incomplete);
  EXPECT_EQ(ftp("250 Message text OK.").status, ParseStatus::incomplete);
  EXPECT_EQ(ftp("250 Message text OK.\r").status, ParseStatus::incomplete);
  EXPECT_EQ(ftp("250 Message text OK.\r\n").status, ParseStatus::complete);
}

TEST(ReplyParser, EveryPrefixOfAValidReplyIsIncomplete) {
  const std::string reply = "217-Job state: jobid 2 groupid 2\r\n    STATE: BLOCKED\r\n217 End of job 2 state.\r\n";
  for (std::size_t n = 0; n < reply.size(); ++n) {
    EXPECT_EQ(ftp(std::string_view(reply).substr(0, n)).status, ParseStatus::incomplete) << n;
  }
  EXPECT_EQ(ftp(reply).status, ParseStatus::complete);
}

TEST(ReplyParser, FtpMultiLine) {
  const auto r =
      ftp("213-DOCUMENT PDF docq/doc2.pdf.2\r\n"
          "213-DOCUMENT PDF docq/doc3.pdf.2\r\n"
          "213 End of documents.\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.reply.code, 213);
  EXPECT_EQ(r.reply.text, "End of documents.");
  ASSERT_EQ(r.reply.lines.size(), 3U);
  EXPECT_EQ(r.reply.lines[0], "DOCUMENT PDF docq/doc2.pdf.2");
  EXPECT_EQ(r.reply.lines[1], "DOCUMENT PDF docq/doc3.pdf.2");
}

TEST(ReplyParser, FtpMultiLineAllowsFreeTextAndOtherCodesInside) {
  // RFC 959: only "NNN " with the opening code closes the reply.
  const auto r =
      ftp("214-The following commands are recognized\r\n"
          "   USER    PASS    STOT\r\n"
          "200 this is not the end\r\n"
          "214-still help\r\n"
          "214 Direct comments to FaxMaster.\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.reply.code, 214);
  ASSERT_EQ(r.reply.lines.size(), 5U);
  EXPECT_EQ(r.reply.lines[1], "   USER    PASS    STOT");
  EXPECT_EQ(r.reply.lines[2], "200 this is not the end");
  EXPECT_EQ(r.reply.lines[3], "still help");
}

TEST(ReplyParser, FtpMultiLineClosedByBareCode) {
  const auto r = ftp("226-Transfer\r\n226\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.reply.code, 226);
}

TEST(ReplyParser, FtpDialectTreats214AsAReply) {
  const auto r = ftp("214 help text\r\n250 ok\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.reply.code, 214);
}

TEST(ReplyParser, SnppSkipsHelpAndInfoLinesBeforeTheReply) {
  const std::string bytes =
      "214 The following commands are recognized (* =>'s unimplemented).\r\n"
      "214 2WAY*   ALER*   DATA    HOLD    LOGI    MSTA*   PING    RTYP*   STAT\r\n"
      "218 gateway maintenance at 02:00\r\n"
      "250 Direct comments to FaxMaster@vm.\r\n";
  const auto r = snpp(bytes);
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.reply.code, 250);
  EXPECT_EQ(r.reply.text, "Direct comments to FaxMaster@vm.");
  EXPECT_EQ(r.reply.lines.size(), 4U);
  EXPECT_EQ(r.consumed, bytes.size());
  // Only info lines so far: wait for the reply.
  EXPECT_EQ(snpp("214 help\r\n218 info\r\n").status, ParseStatus::incomplete);
}

TEST(ReplyParser, SnppGreetingAfterPreamble) {
  const auto r = snpp("218 Welcome to the gateway\r\n220 SNPP server ready.\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.reply.code, 220);
}

TEST(ReplyParser, SnppFatalAndLevelThreeCodes) {
  auto r = snpp("421 Too many errors, closing connection.\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.reply.code, 421);
  EXPECT_FALSE(r.reply.positive());
  r = snpp("860 Delivered, awaiting reply\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.reply.code, 860);
}

TEST(ReplyParser, GarbageIsMalformed) {
  for (const std::string& bad : std::vector<std::string>{"hello\r\n", "25 short\r\n", "2500 long code\r\n", "250x\r\n",
                                                         "abc def\r\n", "\r\n", "012 leading zero\r\n", "-250 dash\r\n",
                                                         "250\tTab\r\n", std::string("\0\0\0 nul\r\n", 9)}) {
    const auto r = ftp(bad);
    EXPECT_EQ(r.status, ParseStatus::malformed) << bad;
    EXPECT_FALSE(r.error.empty());
    for (char c : r.error) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "error text is printable";
  }
}

TEST(ReplyParser, GarbageAfterAReplyDoesNotSpoilIt) {
  const auto r = ftp("250 ok\r\nthis is garbage\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.reply.code, 250);
  EXPECT_EQ(ftp(std::string_view("250 ok\r\nthis is garbage\r\n").substr(r.consumed)).status, ParseStatus::malformed);
}

TEST(ReplyParser, OverlongLineIsAnErrorEvenBeforeItEnds) {
  const std::string long_line = "250 " + std::string(5000, 'x');
  auto r = ftp(long_line);  // no line end yet
  ASSERT_EQ(r.status, ParseStatus::malformed);
  EXPECT_EQ(r.error, "reply line longer than 4096 bytes");
  r = ftp(long_line + "\r\n");
  ASSERT_EQ(r.status, ParseStatus::malformed);
  // Exactly at the limit is fine.
  r = ftp("250 " + std::string(4092, 'x') + "\r\n");
  EXPECT_EQ(r.status, ParseStatus::complete);
  // The limit is the caller's.
  ReplyLimits small;
  small.max_line_bytes = 16;
  EXPECT_EQ(ftp("250 0123456789abcdef\r\n", small).status, ParseStatus::malformed);
  EXPECT_EQ(ftp("250 0123456789ab\r\n", small).status, ParseStatus::complete);
}

TEST(ReplyParser, EndlessMultiLineReplyIsBounded) {
  std::string many = "213-start\r\n";
  for (int i = 0; i < 300; ++i) many += "213-line " + std::to_string(i) + "\r\n";
  auto r = ftp(many);
  ASSERT_EQ(r.status, ParseStatus::malformed);
  EXPECT_EQ(r.error, "reply longer than 256 lines");

  ReplyLimits limits;
  limits.max_lines = 100000;
  limits.max_reply_bytes = 1000;
  r = ftp(many, limits);
  ASSERT_EQ(r.status, ParseStatus::malformed);
  EXPECT_EQ(r.error, "reply longer than 1000 bytes");
}

TEST(ReplyParser, EndlessSnppPreambleIsBounded) {
  std::string many;
  for (int i = 0; i < 300; ++i) many += "214 help\r\n";
  const auto r = snpp(many);
  ASSERT_EQ(r.status, ParseStatus::malformed);
}

TEST(ReplyParser, ControlBytesInTextAreKeptButPrintableMakesThemSafe) {
  const auto r = ftp(std::string("250 caf\xc3\xa9 \x1b[31mred\r\n"));
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(printable(r.reply.text), "caf?? ?[31mred");
  EXPECT_EQ(printable(std::string(300, 'a'), 10), "aaaaaaaaaa...");
}

// A cheap in-tree fuzz: random bytes and mutations of real replies never
// crash, never consume more than they were given, and a complete reply
// always has a code in range. (The libFuzzer target can reuse parse_reply.)
TEST(ReplyParser, RandomInputNeverBreaksTheContract) {
  std::mt19937 rng(1861);
  const std::string seeds[] = {"220 ready\r\n", "213-a\r\n213-b\r\n213 c\r\n", "214 x\r\n218 y\r\n250 z\r\n",
                               "227 Entering passive mode (127,0,0,1,195,41)\r\n",
                               "150 FILE: /tmp/doc2.pdf (Opening).\r\n"};
  static constexpr char raw_alphabet[] = "0123456789- \r\n2aZ(),|\0\xff";
  const std::string alphabet(raw_alphabet, sizeof raw_alphabet - 1);
  for (int round = 0; round < 20000; ++round) {
    std::string input = seeds[static_cast<std::size_t>(round) % std::size(seeds)];
    const int edits = static_cast<int>(rng() % 6);
    for (int e = 0; e < edits; ++e) {
      const auto at = input.empty() ? 0 : rng() % input.size();
      const char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 3) {
        case 0: input.insert(input.begin() + static_cast<std::ptrdiff_t>(at), c); break;
        case 1:
          if (!input.empty()) input.erase(at, 1);
          break;
        default:
          if (!input.empty()) input[at] = c;
          break;
      }
    }
    for (const auto dialect : {Dialect::ftp, Dialect::snpp}) {
      ReplyLimits limits;
      limits.max_line_bytes = 32;
      limits.max_lines = 4;
      const auto r = parse_reply(input, dialect, limits);
      if (r.status == ParseStatus::complete) {
        EXPECT_LE(r.consumed, input.size());
        EXPECT_GT(r.consumed, 0U);
        EXPECT_GE(r.reply.code, 100);
        EXPECT_LE(r.reply.code, 999);
        EXPECT_LE(r.reply.lines.size(), limits.max_lines);
      } else {
        EXPECT_EQ(r.consumed, 0U);
      }
    }
  }
}

}  // namespace
}  // namespace referrald::protocol
