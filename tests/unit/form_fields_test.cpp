// The web form's pure steps: decoding the body, escaping, mapping fields to
// the referral JSON and back, and the page templates. No daemon, no files.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cctype>
#include <chrono>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>

#include "http/csrf.hpp"
#include "http/form.hpp"
#include "http/form_fields.hpp"
#include "util/strings.hpp"

namespace referrald::test {
namespace {

using json = nlohmann::json;
using http::decode_form;
using http::FormData;
using namespace std::chrono_literals;

// CSRF tokens: only the key that signed one accepts it, within its lifetime.
TEST(CsrfTokens, OnlyTheSigningKeyAcceptsATokenWithinItsLifetime) {
  using http::CsrfTokens;
  std::array<unsigned char, 32> key{};
  key.fill(7);
  const CsrfTokens tokens(key);
  const auto issued = CsrfTokens::Clock::time_point(std::chrono::seconds(1'800'000'000));
  const auto browser = CsrfTokens::new_browser();
  ASSERT_EQ(browser.size(), 32U);
  const auto token = tokens.issue(browser, issued);
  ASSERT_EQ(token.size(), CsrfTokens::size);
  const auto ok = tokens.verify(token, issued + 1h);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->browser, browser);
  EXPECT_EQ(ok->issued, issued);
  EXPECT_TRUE(tokens.verify(token, issued + CsrfTokens::lifetime));
  EXPECT_FALSE(tokens.verify(token, issued + CsrfTokens::lifetime + 1s)) << "expired";
  EXPECT_FALSE(tokens.verify(token, issued - CsrfTokens::lifetime - 1s)) << "from the future";
  // Another key (another process, or this one after a restart).
  EXPECT_FALSE(CsrfTokens().verify(token, issued));
  // Any change to the time, the browser or the MAC; and values an attacker picks.
  for (const std::size_t at : {std::size_t{3}, std::size_t{20}, std::size_t{100}}) {
    auto forged = token;
    forged[at] = forged[at] == '0' ? '1' : '0';
    EXPECT_FALSE(tokens.verify(forged, issued)) << at;
  }
  EXPECT_FALSE(tokens.verify(std::string(CsrfTokens::size, 'a'), issued));
  EXPECT_FALSE(tokens.verify(std::string(64, 'a'), issued)) << "the old unsigned format";
  EXPECT_FALSE(tokens.verify("", issued));
  if (const auto shouted = upper(token); shouted != token) {
    EXPECT_FALSE(tokens.verify(shouted, issued));
  }
}

TEST(FormDecoding, DecodesPlusPercentAndUtf8) {
  const auto d = decode_form("a=1&b=two+words&c=%E2%9C%93%20ok&d=&e&f=%2B%26%3D");
  ASSERT_TRUE(d);
  const FormData expected{{"a", "1"}, {"b", "two words"}, {"c", "\u2713 ok"}, {"d", ""}, {"e", ""}, {"f", "+&="}};
  EXPECT_EQ(*d, expected);
}

TEST(FormDecoding, KeepsOrderAndRepeatsAndSkipsEmptyPairs) {
  const auto d = decode_form("&x=1&&x=2&");
  ASSERT_TRUE(d);
  EXPECT_EQ(*d, (FormData{{"x", "1"}, {"x", "2"}}));
  EXPECT_EQ(*decode_form(""), FormData{});
}

TEST(FormDecoding, DecodesNamesToo) {
  const auto d = decode_form("patient%2Egiven_name=Ava&na%6De=x+y");
  ASSERT_TRUE(d);
  EXPECT_EQ(*d, (FormData{{"patient.given_name", "Ava"}, {"name", "x y"}}));
}

TEST(FormDecoding, KeepsAnyUnicodeLetter) {
  const auto d = decode_form("n=%C5%81ucja+%E7%8E%8B+%F0%9F%98%80");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->at(0).second, "\u0141ucja \u738b \U0001F600");
}

TEST(FormDecoding, RefusesBrokenPercentEscapes) {
  for (const char* body : {"a=%", "a=%4", "a=%zz", "a=%4g", "%=1", "a=1%"}) {
    EXPECT_FALSE(decode_form(body)) << body;
  }
}

TEST(FormDecoding, RefusesInvalidUtf8) {
  for (const char* body : {
           "a=%C3%28",           // bad continuation
           "a=%80",              // continuation without a lead
           "a=%C0%AF",           // overlong '/'
           "a=%E0%80%AF",        // overlong, three bytes
           "a=%ED%A0%80",        // UTF-16 surrogate
           "a=%F4%90%80%80",     // above U+10FFFF
           "a=%F8%88%80%80%80",  // five-byte form
           "a=%E2%9C",           // truncated
           "%FF=1",              // in a name
       }) {
    EXPECT_FALSE(decode_form(body)) << body;
  }
  EXPECT_TRUE(http::is_valid_utf8("\xF4\x8F\xBF\xBF"));  // U+10FFFF
  EXPECT_FALSE(http::is_valid_utf8("\xF4\x90\x80\x80"));
}

TEST(HtmlEscape, EscapesMarkupQuotesAndControls) {
  EXPECT_EQ(http::html_escape(R"(<script>alert("x" & 'y')</script>)"),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;");
  EXPECT_EQ(http::html_escape(std::string("a\0b\x01\x7f\tc\nd", 9)), "a\uFFFDb\uFFFD\uFFFD\tc\nd");
  EXPECT_EQ(http::html_escape("Łucja 王"), "Łucja 王");
}

TEST(FormToJson, MapsDottedNamesAndLeavesOutEmptyOptionalFields) {
  const std::map<std::string, std::string> fields{
      {"patient.given_name", "Ava"},
      {"patient.family_name", "Nguyen"},
      {"patient.birth_date", "2014-03-09"},
      {"patient.sex", "female"},
      {"patient.postal_code", ""},
      {"patient.guardian.name", ""},
      {"diagnosis.name", "ASPS"},
      {"diagnosis.code.system", ""},
      {"diagnosis.code.value", ""},
      {"referrer.name", "Dana"},
      {"referrer.fax", ""},
      {"urgency", "routine"},
      {"notes", ""},
  };
  const auto doc = json::parse(http::form_to_json(fields));
  EXPECT_EQ(doc, json::parse(R"({"patient":{"given_name":"Ava","family_name":"Nguyen","birth_date":"2014-03-09",
    "sex":"female"},"diagnosis":{"name":"ASPS"},"referrer":{"name":"Dana"},"urgency":"routine"})"));
}

TEST(FormToJson, GuardianAndCodeOnlyWhenOneOfTheirFieldsIsFilled) {
  const auto doc = json::parse(http::form_to_json({{"patient.guardian.phone", "+1 901 555 0142"},
                                                   {"diagnosis.code.value", "9581/3"},
                                                   {"diagnosis.pathology_confirmed", "yes"}}));
  EXPECT_EQ(doc["patient"]["guardian"], json::parse(R"({"phone":"+1 901 555 0142"})"));
  EXPECT_EQ(doc["diagnosis"]["code"], json::parse(R"({"value":"9581/3"})"));
  EXPECT_EQ(doc["diagnosis"]["pathology_confirmed"], true);
  // Unticked is "not known", not false.
  EXPECT_FALSE(json::parse(http::form_to_json({}))["diagnosis"].contains("pathology_confirmed"));
}

TEST(FormToJson, FieldForPointerIsTheInverse) {
  EXPECT_EQ(http::field_for_pointer("/patient/birth_date"), "patient.birth_date");
  EXPECT_EQ(http::field_for_pointer("/patient/guardian/phone"), "patient.guardian.phone");
  EXPECT_EQ(http::field_for_pointer("/urgency"), "urgency");
  EXPECT_EQ(http::field_for_pointer(""), "");
}

TEST(FormFields, NormalisesTheValuesAndTakesTheSubmissionTokenButNotTheCsrfToken) {
  const auto read = http::read_form_fields({{"csrf_token", "c"},
                                            {"patient.given_name", "  Ava \t"},
                                            {"notes", "line one\r\nline two\rthree"},
                                            {"diagnosis.pathology_confirmed", "on"},
                                            {"referrer.fax", " "},
                                            {"submission_token", "s"}});
  ASSERT_TRUE(std::holds_alternative<http::FormFields>(read));
  const auto& fields = std::get<http::FormFields>(read);
  EXPECT_EQ(fields.submission_token, "s");
  const std::map<std::string, std::string> expected{{"patient.given_name", "Ava"},
                                                    {"notes", "line one\nline two\nthree"},
                                                    {"diagnosis.pathology_confirmed", "yes"},
                                                    {"referrer.fax", ""}};
  EXPECT_EQ(fields.values, expected);
}

TEST(FormFields, AFieldSentTwiceOrOneTheFormDoesNotHaveIsABadRequest) {
  const auto twice = http::read_form_fields({{"urgency", "routine"}, {"urgency", "emergent"}});
  ASSERT_TRUE(std::holds_alternative<std::string>(twice));
  EXPECT_EQ(std::get<std::string>(twice), "The form was sent with a field twice.");
  const auto unknown = http::read_form_fields({{"patient.age", "9"}});
  ASSERT_TRUE(std::holds_alternative<std::string>(unknown));
  EXPECT_EQ(std::get<std::string>(unknown), "The form was sent with a field it does not have.");
}

TEST(Template, SubstitutesPlaceholdersAndRefusesUnknownOnes) {
  const http::Template t("<p>{{a}} and {{b}}</p>", "t.html");
  auto resolve = [](std::string_view key) -> std::optional<std::string> {
    if (key == "a") return "A";
    if (key == "b") return "&lt;B&gt;";
    return std::nullopt;
  };
  EXPECT_EQ(t.render(resolve), "<p>A and &lt;B&gt;</p>");
  const http::Template unknown("{{a}} {{nope}}", "u.html");
  try {
    (void)unknown.render(resolve);
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "u.html: unknown placeholder {{nope}}");
  }
  EXPECT_THROW(http::Template("a {{b", "x.html"), std::runtime_error);
}

}  // namespace
}  // namespace referrald::test
