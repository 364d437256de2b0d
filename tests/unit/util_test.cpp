#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <chrono>
#include <thread>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "spool_file.hpp"
#include "util/config_error.hpp"
#include "model/purpose.hpp"
#include "util/base64_decoder.hpp"
#include "util/crypto.hpp"
#include "util/dates.hpp"
#include "util/duration.hpp"
#include "util/file_reader.hpp"
#include "util/ids.hpp"
#include "util/latency.hpp"
#include "util/private_files.hpp"
#include "util/sealed_spool.hpp"
#include "util/secret_file.hpp"
#include "util/strings.hpp"

namespace referrald {
namespace {

using namespace std::chrono;

TEST(Duration, ParsesOperatorForms) {
  EXPECT_EQ(parse_duration("30s"), Duration{30000});
  EXPECT_EQ(parse_duration("30m"), Duration{30 * 60000});
  EXPECT_EQ(parse_duration("48h"), Duration{48 * 3600000LL});
  EXPECT_EQ(parse_duration("1h30m"), Duration{90 * 60000});
  EXPECT_EQ(parse_duration("365d"), Duration{365LL * 86400000});
  EXPECT_EQ(parse_duration("250ms"), Duration{250});
}

TEST(Duration, RefusesWhatIsNotADuration) {
  for (const char* bad : {"", "30", "s", "-5s", "5 s", "5x", "1.5h", "99999999999999999999d"}) {
    EXPECT_FALSE(parse_duration(bad).has_value()) << bad;
  }
}

TEST(Duration, FormatsRoundTrip) {
  EXPECT_EQ(format_duration(Duration{90 * 60000}), "1h30m");
  EXPECT_EQ(format_duration(Duration{0}), "0s");
  EXPECT_EQ(parse_duration(format_duration(Duration{123456789})), Duration{123456789});
}

TEST(Dates, ParsesOnlyRealCalendarDates) {
  EXPECT_EQ(parse_iso_date("2014-03-09"), (year{2014} / March / 9));
  EXPECT_EQ(parse_iso_date("2024-02-29"), (year{2024} / February / 29));
  for (const char* bad : {"2023-02-29", "2014-13-01", "2014-00-10", "2014-3-9", "20140309", "2014-03-09T00:00",
                          "abcd-ef-gh", "2014-04-31"}) {
    EXPECT_FALSE(parse_iso_date(bad).has_value()) << bad;
  }
}

TEST(Dates, AgeInCompletedYears) {
  const Date birth = year{2005} / June / 15;
  EXPECT_EQ(age_in_years(birth, year{2026} / June / 14), 20);
  EXPECT_EQ(age_in_years(birth, year{2026} / June / 15), 21);
  EXPECT_EQ(age_in_years(year{2008} / February / 29, year{2026} / February / 28), 17);
  EXPECT_EQ(age_in_years(year{2008} / February / 29, year{2026} / March / 1), 18);
}

TEST(Dates, FormatsUtcTimestamps) {
  const auto t = sys_days{year{2026} / November / 28} + hours{7} + minutes{5} + seconds{9} + milliseconds{42};
  EXPECT_EQ(format_utc_timestamp(t), "2026-11-28T07:05:09.042Z");
}

TEST(Ids, ReferralIdsAreReadableAndDistinct) {
  const auto now = sys_days{year{2026} / November / 28} + hours{7};
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const auto id = new_referral_id(now);
    EXPECT_TRUE(id.starts_with("R-20261128-")) << id;
    EXPECT_TRUE(looks_like_referral_id(id)) << id;
    EXPECT_EQ(id.find_first_of("ILOU"), std::string::npos) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000U);
  EXPECT_FALSE(looks_like_referral_id("R-20261128-ABCDE-FGHIU"));
  EXPECT_FALSE(looks_like_referral_id("../../etc/passwd"));
}

// Prometheus' `le`: a duration counts in the first bucket whose bound is at
// or over it; what is over 10 s only in +Inf.
TEST(Latency, EachDurationCountsAtOrUnderItsBound) {
  using std::chrono::microseconds;
  LatencyHistogram h;
  h.record(microseconds(50));          // le 5e-05
  h.record(microseconds(51));          // le 0.0001
  h.record(std::chrono::seconds(3));   // le 10
  h.record(std::chrono::seconds(20));  // +Inf only
  h.record(microseconds(-5));          // a clock step back: the first bucket, nothing off the sum
  const std::string text = histogram_text("t_seconds", R"(stage="x")", h.snapshot());
  EXPECT_NE(text.find("t_seconds_bucket{stage=\"x\",le=\"5e-05\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("t_seconds_bucket{stage=\"x\",le=\"0.0001\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("t_seconds_bucket{stage=\"x\",le=\"2.5\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("t_seconds_bucket{stage=\"x\",le=\"10\"} 4\n"), std::string::npos) << text;
  EXPECT_NE(text.find("t_seconds_bucket{stage=\"x\",le=\"+Inf\"} 5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("t_seconds_sum{stage=\"x\"} 23.000101\n"), std::string::npos) << text;
  EXPECT_NE(text.find("t_seconds_count{stage=\"x\"} 5\n"), std::string::npos) << text;
}

// A batch's jobs counted at once: each of them, and each in the sum.
TEST(Latency, ADurationCountedForSeveralAtOnce) {
  LatencyHistogram h;
  h.record(std::chrono::milliseconds(2), 3);
  const std::string text = histogram_text("t_seconds", "", h.snapshot());
  EXPECT_NE(text.find("t_seconds_bucket{le=\"0.001\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("t_seconds_bucket{le=\"0.0025\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("t_seconds_sum 0.006000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("t_seconds_count 3\n"), std::string::npos) << text;
}

TEST(Latency, ASeriesWithoutLabels) {
  const std::string text = histogram_text("t_seconds", "", {{"1", 2}, {"+Inf", 3}}, 1.5);
  EXPECT_EQ(text,
            "t_seconds_bucket{le=\"1\"} 2\n"
            "t_seconds_bucket{le=\"+Inf\"} 3\n"
            "t_seconds_sum 1.500000\n"
            "t_seconds_count 3\n");
}

// Threads record at once and nothing is lost.
TEST(Latency, RecordsFromManyThreadsAllCount) {
  LatencyHistogram h;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&h] {
      for (int i = 0; i < 10000; ++i) h.record(std::chrono::microseconds(i % 2000));
    });
  }
  for (auto& t : threads) t.join();
  const auto s = h.snapshot();
  std::uint64_t total = 0;
  for (const auto n : s.counts) total += n;
  EXPECT_EQ(total, 40000U);
  EXPECT_EQ(s.counts.back(), 0U);
}

// Fed in pieces cut anywhere, the decoder accepts and yields what
// base64_decode does of the whole text: good text, MIME's line breaks,
// characters outside the alphabet, text after the padding, a length that is
// not whole.
TEST(Crypto, Base64DecoderInPiecesAgreesWithTheWholeText) {
  const char raw[] = "\x00\xff referral \x80\x7f scan";
  const std::string bytes = std::string(raw, sizeof raw - 1) + std::string(100, 'Z');
  const std::string good = base64(bytes);
  const std::vector<std::string> texts = {good,
                                          good.substr(0, 20) + "\r\n" + good.substr(20),
                                          good.substr(0, 30) + "*" + good.substr(30),
                                          good + "QUJD",
                                          good.substr(0, good.size() - 5),
                                          "QUJD=",
                                          "QUJDQQ==",
                                          "QUJDQUI=\n\nQUJD",
                                          "QUJDQQ===",
                                          "QUJDQQ==\r\n=",
                                          "QUJD\nQUJD-!!",
                                          ""};
  for (const auto& text : texts) {
    const auto whole = base64_decode(text);
    for (std::size_t cut = 0; cut <= text.size(); ++cut) {
      for (std::size_t second = cut; second <= text.size(); second += 7) {
        std::string out;
        const auto append = [&out](std::string_view piece) { out.append(piece); };
        Base64Decoder decoder;
        bool ok = decoder.update(std::string_view(text).substr(0, cut), append);
        ok = decoder.update(std::string_view(text).substr(cut, second - cut), append) && ok;
        ok = decoder.update(std::string_view(text).substr(second), append) && ok;
        ok = decoder.finish(append) && ok;
        ASSERT_EQ(ok, whole.has_value()) << text << " cut at " << cut << " and " << second;
        if (ok) {
          ASSERT_EQ(out, *whole) << text << " cut at " << cut << " and " << second;
        }
      }
    }
  }
  EXPECT_EQ(base64_decode(good), bytes);
}

TEST(Crypto, Sha256AndConstantTimeCompare) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::array<unsigned char, 32> h{};
  ASSERT_TRUE(from_hex(sha256_hex("token"), h.data(), h.size()));
  const auto direct = sha256("token");
  EXPECT_TRUE(constant_time_equal(h.data(), direct.data(), 32));
  h[31] ^= 1;
  EXPECT_FALSE(constant_time_equal(h.data(), direct.data(), 32));
  EXPECT_FALSE(from_hex("zz", h.data(), 1));
}

TEST(ConfigProblem, FormatsAsFileLineKeyMessage) {
  EXPECT_EQ((ConfigProblem{"referrald.toml", 42, "target[2].port", "expected 1..65535"}).to_string(),
            "referrald.toml:42: target[2].port: expected 1..65535");
  EXPECT_EQ((ConfigProblem{"r.toml", 0, "", "cannot open file"}).to_string(), "r.toml: cannot open file");
}

TEST(SecretFile, ReadsOneLineAndNamesTheFileNotTheSecret) {
  const auto dir = std::filesystem::temp_directory_path() / ("referrald-secret-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto file = [&](const char* name, const char* text) {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  };
  std::string problem;
  EXPECT_EQ(read_secret_file(file("ok", "s3cret\r\n"), "password_file ", &problem), "s3cret");
  EXPECT_FALSE(read_secret_file(file("empty", "\n"), "password_file ", &problem));
  EXPECT_EQ(problem, "password_file " + (dir / "empty").string() + " is empty");
  EXPECT_FALSE(read_secret_file(file("two", "s3cret\nmore\n"), "", &problem));
  EXPECT_EQ(problem, (dir / "two").string() + " holds more than one line");
  EXPECT_EQ(problem.find("s3cret"), std::string::npos);
  EXPECT_FALSE(read_secret_file((dir / "missing").string(), "", &problem));
  EXPECT_EQ(problem.rfind("cannot read " + (dir / "missing").string() + ": ", 0), 0U) << problem;
  std::filesystem::remove_all(dir);
}

TEST(Strings, UpperAndLowerChangeAsciiLettersOnly) {
  EXPECT_EQ(upper("r-20261128-7k3m9-tzqxa.office-fax"), "R-20261128-7K3M9-TZQXA.OFFICE-FAX");
  EXPECT_EQ(lower("Application/JSON; Charset=UTF-8"), "application/json; charset=utf-8");
  // A name's letters beyond ASCII are left as they are, byte for byte.
  EXPECT_EQ(upper("\u0141ucja \u00e9"), "\u0141UCJA \u00e9");
  EXPECT_EQ(lower("\u00c9MILE"), "\u00c9mile");
  EXPECT_EQ(upper(""), "");
}

TEST(Strings, EqualIgnoringCase) {
  EXPECT_TRUE(equal_ignoring_case("md", "MD"));
  EXPECT_TRUE(equal_ignoring_case("Bearer", "bEARER"));
  EXPECT_FALSE(equal_ignoring_case("MD", "MD "));
  EXPECT_FALSE(equal_ignoring_case("DO", "NP"));
  EXPECT_FALSE(equal_ignoring_case("\u00e9", "\u00c9"));  // ASCII only
}

TEST(Strings, TrimTakesWhiteSpaceOffBothEndsOnly) {
  EXPECT_EQ(trim("  Ava \t"), "Ava");
  EXPECT_EQ(trim("\r\n250 OK\r\n"), "250 OK");
  EXPECT_EQ(trim("two  words"), "two  words");
  EXPECT_EQ(trim(" \t\f\v "), "");
  EXPECT_EQ(trim(""), "");
}

TEST(Strings, JoinPutsTheSeparatorBetweenItems) {
  EXPECT_EQ(join(std::vector<std::string>{"MD", "DO", "NP"}), "MD, DO, NP");
  EXPECT_EQ(join(std::vector<std::string_view>{"a", "b"}, " or "), "a or b");
  EXPECT_EQ(join(std::vector<std::string>{"only"}), "only");
  EXPECT_EQ(join(std::vector<std::string>{}), "");
  // An empty item still takes its place.
  EXPECT_EQ(join(std::vector<std::string>{"", "x"}, "/"), "/x");
}

TEST(Purpose, TextRoundTripsAndAnythingElseIsRefused) {
  for (const char* text : {"intake", "escalation-1", "escalation-12", "notice-7"}) {
    const auto p = parse_delivery_purpose(text);
    ASSERT_TRUE(p) << text;
    EXPECT_EQ(to_string(*p), text);
  }
  EXPECT_EQ(parse_delivery_purpose("notice-7")->kind, PurposeKind::notice);
  EXPECT_EQ(parse_delivery_purpose("escalation-12")->number, 12);
  for (const char* text : {"", "Intake", "escalation-", "escalation-0", "escalation-01", "notice-x", "notice-1x",
                           "notice--1", "other-1"}) {
    EXPECT_FALSE(parse_delivery_purpose(text)) << text;
  }
}

TEST(Purpose, DeliveryIdentityOfTheIntakeNotificationIsAsBeforePurposes) {
  EXPECT_EQ(delivery_identity("R-20261128-7K3M9-TZQXA", "office-email"), "R-20261128-7K3M9-TZQXA.office-email");
  EXPECT_EQ(delivery_identity("R-20261128-7K3M9-TZQXA", "office-email", "intake"),
            "R-20261128-7K3M9-TZQXA.office-email");
  EXPECT_EQ(delivery_identity("R-20261128-7K3M9-TZQXA", "office-email", "escalation-2"),
            "R-20261128-7K3M9-TZQXA.office-email.escalation-2");
  EXPECT_EQ(delivery_identity("R-20261128-7K3M9-TZQXA", "referrer-fax", "notice-9"),
            "R-20261128-7K3M9-TZQXA.referrer-fax.notice-9");
}

// A directory of its own under the system's temporary directory, removed with
// what is in it.
class FileDir : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "referrald-util-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  static std::string contents(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  std::filesystem::path dir_;
};

TEST_F(FileDir, ReplaceFileLeavesTheNewTextAloneOwnerOnly) {
  const auto file = dir_ / "outcome";
  replace_file(file, "first\n", "outcome.new");
  replace_file(file, "second, longer\n", "outcome.new");
  EXPECT_EQ(contents(file), "second, longer\n");
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "outcome.new"));
}

TEST_F(FileDir, ReplaceFileDoesNotWriteThroughALinkAndKeepsTheOldFile) {
  const auto file = dir_ / "outcome";
  replace_file(file, "kept\n", "outcome.new");
  const auto elsewhere = dir_ / "elsewhere";
  std::filesystem::create_symlink(elsewhere, dir_ / "outcome.new");
  try {
    replace_file(file, "new\n", "outcome.new");
    FAIL() << "wrote through a symbolic link";
  } catch (const FileWriteError& e) {
    EXPECT_STREQ(e.step(), "open");
    EXPECT_EQ(e.code().value(), ELOOP);
    EXPECT_NE(std::string(e.what()).find("outcome.new"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(elsewhere));
  EXPECT_EQ(contents(file), "kept\n");
}

TEST_F(FileDir, ReplaceFileOverADirectoryFailsAtTheRenameAndLeavesNoTemporaryFile) {
  const auto file = dir_ / "taken";
  std::filesystem::create_directories(file / "inside");
  try {
    replace_file(file, "text\n", "taken.new");
    FAIL() << "replaced a directory";
  } catch (const FileWriteError& e) {
    EXPECT_STREQ(e.step(), "rename");
  }
  EXPECT_FALSE(std::filesystem::exists(dir_ / "taken.new"));
}

TEST_F(FileDir, ReplaceFilesWritesEachAndAFailureStaysWithItsFile) {
  std::filesystem::create_directories(dir_ / "taken" / "inside");
  const auto errors = replace_files(
      dir_, {{"one", "first\n", ".one.new"}, {"taken", "second\n", ".taken.new"}, {"three", "third\n", ".three.new"}});
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_FALSE(errors[0]);
  ASSERT_TRUE(errors[1]);
  EXPECT_STREQ(errors[1]->step(), "rename");
  EXPECT_FALSE(errors[2]);
  EXPECT_EQ(contents(dir_ / "one"), "first\n");
  EXPECT_EQ(contents(dir_ / "three"), "third\n");
  for (const char* name : {"one", "three"}) {
    struct stat st {};
    ASSERT_EQ(::stat((dir_ / name).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
  }
  for (const char* temp : {".one.new", ".taken.new", ".three.new"}) EXPECT_FALSE(std::filesystem::exists(dir_ / temp));
}

// tmpfs is not among the file systems whose syncfs is a barrier to count
// on: there every file is fsynced, and written all the same.
TEST(ReplaceFiles, WhereSyncfsIsNotUsedEachFileIsFsyncedAndWritten) {
  if (!std::filesystem::is_directory("/dev/shm")) GTEST_SKIP() << "no /dev/shm";
  std::string pattern = "/dev/shm/referrald-util-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
  const std::filesystem::path dir = pattern;
  const auto errors = replace_files(dir, {{"one", "1\n", ".one.new"}, {"two", "2\n", ".two.new"}});
  for (const auto& e : errors) EXPECT_FALSE(e) << e->what();
  std::ifstream one(dir / "one"), two(dir / "two");
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(one), {}), "1\n");
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(two), {}), "2\n");
  EXPECT_FALSE(std::filesystem::exists(dir / ".one.new"));
  std::filesystem::remove_all(dir);
}

TEST_F(FileDir, ReplaceFilesInADirectoryThatCannotBeOpenedFailsEachAtOpen) {
  const auto errors = replace_files(dir_ / "missing", {{"one", "1\n", ".one.new"}, {"two", "2\n", ".two.new"}});
  for (const auto& e : errors) {
    ASSERT_TRUE(e);
    EXPECT_STREQ(e->step(), "open");
    EXPECT_EQ(e->code().value(), ENOENT);
  }
}

TEST(WriteAll, WritesEveryByteThroughAPipe) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const std::string text(40000, 'x');  // less than a pipe holds, more than one page
  ASSERT_TRUE(write_all(fds[1], text));
  ::close(fds[1]);
  std::string read_back;
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buffer, sizeof buffer)) > 0) read_back.append(buffer, static_cast<std::size_t>(n));
  ::close(fds[0]);
  EXPECT_EQ(read_back, text);
}

TEST(WriteAll, AFailedWriteIsFalseWithErrno) {
  errno = 0;
  EXPECT_FALSE(write_all(-1, "text"));
  EXPECT_EQ(errno, EBADF);
}

// What the spool's file holds on disk: every file this process has open in
// `dir` (an O_TMPFILE has no name; /proc/self/fd still reaches it).
std::vector<std::string> open_files_in(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  for (const auto& fd : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const auto target = std::filesystem::read_symlink(fd.path(), ec);
    if (ec || target.string().rfind(dir.string() + "/", 0) != 0) continue;
    struct stat st {};
    if (::stat(fd.path().c_str(), &st) == 0) {
      EXPECT_EQ(st.st_mode & 0777, 0600u) << target;
    }
    std::ifstream in(fd.path(), std::ios::binary);
    out.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return out;
}

TEST(SealedSpool, GivesBackWhatWasAppendedAndKeepsNoneOfItInTheClearOnDisk) {
  const auto dir = std::filesystem::temp_directory_path() / ("referrald-spool-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string text;
  for (int i = 0; text.size() < 3 * SealedSpool::block_size + 1000; ++i) {
    text += "Ava Nguyen, born 2014-03-09, line " + std::to_string(i) + "\n";
  }
  {
    SealedSpool spool(dir);
    // In pieces that straddle the blocks.
    for (std::size_t at = 0; at < text.size(); at += 7001) spool.append(std::string_view(text).substr(at, 7001));
    spool.finish();
    EXPECT_EQ(spool.size(), text.size());
    EXPECT_EQ(spool.blocks(), 4u);
    EXPECT_EQ(spool.read_all(), text);
    EXPECT_EQ(spool.sha256_hex(), sha256_hex(text));

    const auto files = open_files_in(dir);
    ASSERT_EQ(files.size(), 1u);
    EXPECT_EQ(files[0].size(), text.size() + 4 * 16) << "a 16-byte tag per block";
    EXPECT_EQ(files[0].find("Nguyen"), std::string::npos);
    EXPECT_TRUE(std::filesystem::is_empty(dir)) << "the file has no name";
  }
  EXPECT_TRUE(open_files_in(dir).empty()) << "gone with the spool";
  std::filesystem::remove_all(dir);
}

// A byte of the file changed under the spool (another process with access
// to the directory, a failing disk): the block does not open, and reading it
// is an error, never other bytes.
TEST(SealedSpool, ABlockChangedOnDiskDoesNotOpen) {
  const auto dir = std::filesystem::temp_directory_path() / ("referrald-spool-t-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    SealedSpool spool(dir);
    spool.append(std::string(SealedSpool::block_size + 10, 'a'));
    spool.finish();
    const auto file = test::open_spool_file(dir);
    ASSERT_FALSE(file.empty());
    test::change_byte(file, SealedSpool::block_size + 16 + 3);  // in the second block
    EXPECT_EQ(spool.block(0), std::string(SealedSpool::block_size, 'a'));
    EXPECT_THROW(spool.block(1), std::runtime_error);
    EXPECT_THROW(spool.read_all(), std::runtime_error);
  }
  std::filesystem::remove_all(dir);
}

// The one reader over a file in memory or in a spool: the same bytes by
// offset either way, and a search that finds what runs across two blocks.
TEST(SealedSpool, AFileReaderReadsAndSearchesAcrossTheBlocksAsInMemory) {
  const auto dir = std::filesystem::temp_directory_path() / ("referrald-reader-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::string text(3 * SealedSpool::block_size + 500, '.');
    const std::size_t across = SealedSpool::block_size - 3;  // "needle" runs from block 0 into block 1
    text.replace(across, 6, "needle");
    text.replace(2 * SealedSpool::block_size + 10, 6, "needle");
    SealedSpool spool(dir);
    spool.append(text);
    spool.finish();
    FileReader from_spool(spool);
    FileReader from_memory(text);
    for (FileReader* reader : {&from_spool, &from_memory}) {
      EXPECT_EQ(reader->size(), text.size());
      EXPECT_EQ(reader->copy(across - 10, 20), text.substr(across - 10, 20));
      EXPECT_EQ(reader->copy(text.size() - 5, 100), text.substr(text.size() - 5));
      EXPECT_EQ(reader->copy(text.size(), 1), "");
      EXPECT_EQ(reader->find("needle", 0), across);
      EXPECT_EQ(reader->find("needle", across - 2), across) << "a first piece shorter than the needle";
      EXPECT_EQ(reader->find("needle", across + 1), 2 * SealedSpool::block_size + 10);
      EXPECT_EQ(reader->find("needle", 2 * SealedSpool::block_size + 11), std::string_view::npos);
      EXPECT_EQ(reader->find(".", text.size()), std::string_view::npos);
      EXPECT_FALSE(reader->failed());
    }
  }
  std::filesystem::remove_all(dir);
}

TEST(SealedSpool, AnEmptySpoolAndAMissingDirectory) {
  const auto dir = std::filesystem::temp_directory_path();
  SealedSpool empty(dir);
  empty.finish();
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_EQ(empty.read_all(), "");
  EXPECT_EQ(empty.sha256_hex(), sha256_hex(""));
  try {
    SealedSpool missing(dir / "referrald-no-such-directory");
    FAIL() << "opened a spool in a missing directory";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find("referrald-no-such-directory"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace referrald
