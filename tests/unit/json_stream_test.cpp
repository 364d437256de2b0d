// The intake's one streaming JSON reader (util/json_stream.hpp), under both
// of its rules for which strings are files: the v1 referral's
// /attachments/N/data and FHIR's "data" elements.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "model/referral.hpp"
#include "util/crypto.hpp"
#include "util/json_stream.hpp"
#include "util/sealed_spool.hpp"

namespace referrald {
namespace {

// The v1 referral's document (Boost.JSON's) and FHIR's (nlohmann's, ordered).
using Doc = boost::json::value;
using nlohmann::ordered_json;

std::string_view text_at(const Doc& root, std::string_view pointer) { return root.at_pointer(pointer).as_string(); }

JsonStreamOptions rule(FileStrings files, std::size_t max_depth = 16) {
  JsonStreamOptions o;
  o.files = files;
  o.max_depth = max_depth;
  return o;
}

class SpoolDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = std::filesystem::temp_directory_path() / ("json-stream-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
  }
  void TearDown() override { std::filesystem::remove_all(dir); }
  std::filesystem::path dir;
};

TEST(JsonStream, ReferralRuleDecodesOnlyAttachmentsData) {
  const std::string text = R"({"notes":"JVBERi0=","data":"JVBERi0=","x":{"attachments":[{"data":"JVBERi0="}]},)"
                           R"("attachments":[{"title":"a","data":"JVBERi0xLjQK"},{"title":"b","data":"@@@"},)"
                           R"({"title":"c","data":""}]})";
  auto read = read_json<Doc>(text, rule(FileStrings::referral_attachments));
  ASSERT_FALSE(read.error);
  EXPECT_EQ(text_at(read.root, "/notes"), "JVBERi0=");
  EXPECT_EQ(text_at(read.root, "/data"), "JVBERi0=");
  EXPECT_EQ(text_at(read.root, "/x/attachments/0/data"), "JVBERi0=");
  EXPECT_EQ(text_at(read.root, "/attachments/0/data"), std::string(attachment_data_stand_in));
  EXPECT_EQ(text_at(read.root, "/attachments/1/data"), std::string(attachment_data_stand_in));
  EXPECT_EQ(text_at(read.root, "/attachments/2/data"), "");  // for the schema's minLength
  ASSERT_EQ(read.files.size(), 3U);
  ASSERT_TRUE(read.files.at("/attachments/0/data"));
  EXPECT_EQ(read.files.at("/attachments/0/data")->bytes, "%PDF-1.4\n");
  EXPECT_FALSE(read.files.at("/attachments/1/data"));  // not base64
  ASSERT_TRUE(read.files.at("/attachments/2/data"));
  EXPECT_EQ(read.files.at("/attachments/2/data")->bytes, "");
}

TEST(JsonStream, ReferralRuleMarksFilesBesideTheJson) {
  auto options = rule(FileStrings::referral_attachments);
  options.files_beside = 1;
  auto read = read_json<Doc>(R"j({"attachments":[{"data":"(file)"},{"data":"(file)"}]})j", options);
  ASSERT_EQ(read.files.size(), 2U);
  EXPECT_TRUE(read.files.at("/attachments/0/data"));
  EXPECT_FALSE(read.files.at("/attachments/1/data"));  // no file beside it
}

TEST(JsonStream, FhirRuleDecodesEveryDataMemberAtAnyDepth) {
  const std::string text =
      R"({"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Binary","data":"/9j/4AAQ"}},)"
      R"({"resource":{"content":[{"attachment":{"contentType":"application/pdf","data":"JVBERi0xLjQK"}}]}},)"
      R"({"resource":{"data":"not base64!","text":"JVBERi0=","list":["data"],"data~/x":"JVBERi0="}},)"
      R"({"resource":{"data":7}}]})";
  auto read = read_json<ordered_json>(text, rule(FileStrings::fhir_data, 32));
  ASSERT_FALSE(read.error);
  ASSERT_EQ(read.files.size(), 3U) << read.root.dump();
  EXPECT_EQ(read.files.at("/entry/0/resource/data")->bytes, std::string("\xFF\xD8\xFF\xE0\x00\x10", 6));
  EXPECT_EQ(read.files.at("/entry/1/resource/content/0/attachment/data")->bytes, "%PDF-1.4\n");
  EXPECT_FALSE(read.files.at("/entry/2/resource/data"));
  EXPECT_EQ(read.root["entry"][0]["resource"]["data"], std::string(attachment_data_stand_in));
  EXPECT_EQ(read.root["entry"][2]["resource"]["text"], "JVBERi0=");
  EXPECT_EQ(read.root["entry"][2]["resource"]["data~/x"], "JVBERi0=");
  EXPECT_EQ(read.root["entry"][3]["resource"]["data"], 7);
  // The order the members came in (FHIR's documents are ordered).
  EXPECT_EQ(read.root.begin().key(), "resourceType");
}

TEST(JsonStream, RepeatedKeysKeepTheFirstUnderBothRules) {
  for (const auto files : {FileStrings::referral_attachments, FileStrings::fhir_data}) {
    auto read = read_json<Doc>(R"({"attachments":[{"data":"QUJD","data":"REVG"}],"a":1,"a":2})", rule(files));
    ASSERT_FALSE(read.error);
    EXPECT_EQ(read.duplicates, (std::vector<std::string>{"/attachments/0/data", "/a"}));
    EXPECT_EQ(read.root.at("a").as_int64(), 1);
    ASSERT_EQ(read.files.size(), 1U);
    EXPECT_EQ(read.files.begin()->second->bytes, "ABC");
  }
}

// A body of countless repeats must not become an answer many times its
// size: each place is named once, and at most max_reported_duplicates.
TEST(JsonStream, RepeatedKeysAreNamedOnceEachAndBoundedInNumber) {
  std::string same = R"({"a":0)";
  for (int i = 0; i < 5000; ++i) same += R"(,"a":0)";
  same += "}";
  EXPECT_EQ(read_json<Doc>(same, rule(FileStrings::fhir_data)).duplicates, std::vector<std::string>{"/a"});

  std::string many = "[";
  for (int i = 0; i < 1000; ++i) many += std::string(i == 0 ? "" : ",") + R"({"a":0,"a":0,"a":0})";
  many += "]";
  const auto read = read_json<Doc>(many, rule(FileStrings::fhir_data));
  ASSERT_FALSE(read.error);
  ASSERT_EQ(read.duplicates.size(), JsonStream<Doc>::max_reported_duplicates);
  EXPECT_EQ(read.duplicates.front(), "/0/a");
  EXPECT_EQ(read.duplicates.back(), "/99/a");
}

TEST(JsonStream, DepthAndSyntaxErrorsAreTheSameUnderBothRules) {
  for (const auto files : {FileStrings::referral_attachments, FileStrings::fhir_data}) {
    auto deep = read_json<Doc>(std::string(17, '[') + std::string(17, ']'), rule(files));
    EXPECT_TRUE(deep.too_deep);
    EXPECT_FALSE(deep.error);
    EXPECT_FALSE(read_json<Doc>(std::string(16, '[') + std::string(16, ']'), rule(files)).too_deep);

    EXPECT_EQ(read_json<Doc>(R"({"data": "QUJD" )", rule(files)).error,
              "invalid JSON at byte 16: unexpected end of input");
    EXPECT_EQ(read_json<Doc>(R"({"a": tru})", rule(files)).error, "invalid JSON at byte 9: unexpected '}'");
    EXPECT_EQ(read_json<Doc>("{\"a\": \"\xC3\x28\"}", rule(files)).error, "invalid UTF-8 at byte 8");
    EXPECT_EQ(read_json<Doc>(R"({} x)", rule(files)).error,
              "invalid JSON at byte 3: invalid literal; expected end of input");
  }
}

TEST(JsonStream, FilesPastTheMostAreCheckedNotKept) {
  auto options = rule(FileStrings::fhir_data);
  options.max_files = 1;
  auto read = read_json<Doc>(R"([{"data":"QUJD"},{"data":"REVG"},{"data":"!"}])", options);
  ASSERT_EQ(read.files.size(), 3U);
  EXPECT_FALSE(read.files.at("/0/data")->dropped);
  EXPECT_EQ(read.files.at("/0/data")->bytes, "ABC");
  EXPECT_TRUE(read.files.at("/1/data")->dropped);
  EXPECT_EQ(read.files.at("/1/data")->bytes, "");
  EXPECT_FALSE(read.files.at("/2/data"));
}

// A body on disk, read a block at a time: a file longer than a block is
// decoded into its own spool, byte for byte, under either rule.
TEST_F(SpoolDir, FromASpoolIntoSpools) {
  std::string file(3 * SealedSpool::block_size + 12345, '\0');
  for (std::size_t i = 0; i < file.size(); ++i) file[i] = static_cast<char>((i * 7919) % 251);
  const std::string encoded = base64(file);
  const std::string fhir = R"({"resourceType":"Binary","contentType":"application/pdf","data":")" + encoded + "\"}";
  const std::string v1 = R"({"attachments":[{"title":"t","data":")" + encoded + "\"}]}";
  for (const auto& [text, files, at] : {std::tuple{fhir, FileStrings::fhir_data, "/data"},
                                        std::tuple{v1, FileStrings::referral_attachments, "/attachments/0/data"}}) {
    SealedSpool body(dir);
    body.append(text);
    body.finish();
    auto options = rule(files);
    options.spool_directory = dir;
    auto read = read_json<ordered_json>(body, options);
    ASSERT_FALSE(read.error) << *read.error;
    ASSERT_TRUE(read.files.at(at));
    const auto& decoded = *read.files.at(at);
    ASSERT_TRUE(decoded.spooled);
    EXPECT_TRUE(decoded.bytes.empty());  // never in memory
    EXPECT_EQ(decoded.spooled->sha256_hex(), sha256_hex(file));
    EXPECT_EQ(decoded.spooled->read_all(), file);
  }
}

}  // namespace
}  // namespace referrald
