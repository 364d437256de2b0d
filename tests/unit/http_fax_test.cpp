// The generic HTTP fax adapter's pure parts: settings checks, the multipart
// body, JSON paths, the submit and status mappings (docs/channels.md#http-fax).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "adapters/curl/http_client.hpp"
#include "adapters/http_fax/http_fax_adapter.hpp"

namespace referrald {
namespace {

namespace fs = std::filesystem;

TargetConfig fax_target() {
  TargetConfig t;
  t.name = "office-fax";
  t.type = "http-fax";
  t.settings["url"] = std::string("https://api.example.com/v2/faxes");
  t.settings["to"] = std::string("+19015954011");
  return t;
}

std::string settings_error(const TargetConfig& t) {
  try {
    http_fax_settings(t);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(JsonPath, BecomesAJsonPointer) {
  EXPECT_EQ(http_client::json_pointer_from_path("data.id"), "/data/id");
  EXPECT_EQ(http_client::json_pointer_from_path("id"), "/id");
  EXPECT_EQ(http_client::json_pointer_from_path("faxes.0.id"), "/faxes/0/id");
  EXPECT_EQ(http_client::json_pointer_from_path("a~b.c/d"), "/a~0b/c~1d");
  EXPECT_EQ(http_client::json_pointer_from_path(""), "");
  EXPECT_EQ(http_client::json_pointer_from_path("data..id"), "");
  EXPECT_EQ(http_client::json_pointer_from_path("data."), "");
}

TEST(HttpHelpers, LoopbackAndEncoding) {
  EXPECT_TRUE(http_client::is_loopback_url("http://127.0.0.1:8080/x"));
  EXPECT_TRUE(http_client::is_loopback_url("http://localhost/x"));
  EXPECT_TRUE(http_client::is_loopback_url("http://[::1]:80/x"));
  EXPECT_TRUE(http_client::is_loopback_url("http://user:pw@127.0.0.1/x"));
  EXPECT_FALSE(http_client::is_loopback_url("http://127.0.0.1.example.com/x"));
  EXPECT_FALSE(http_client::is_loopback_url("http://api.example.com/127.0.0.1"));
  EXPECT_FALSE(http_client::is_loopback_url("http://localhost@evil.example.com/"));
  EXPECT_TRUE(http_client::is_https_url("HTTPS://api.example.com"));
  EXPECT_EQ(http_client::percent_encode("ab-12_~.x/y z"), "ab-12_~.x%2Fy%20z");
}

TEST(HttpFaxSettings, DefaultsArePhaxioShaped) {
  const HttpFaxSettings s = http_fax_settings(fax_target());
  EXPECT_EQ(s.auth, FaxAuth::none);
  EXPECT_EQ(s.to_field, "to");
  EXPECT_EQ(s.file_field, "file");
  EXPECT_EQ(s.id_pointer, "/data/id");
  EXPECT_TRUE(s.status_url.empty());
  EXPECT_EQ(s.budget, std::chrono::seconds(54));
}

TEST(HttpFaxSettings, RefusesWhatCanNeverWork) {
  auto t = fax_target();
  t.settings["url"] = std::string("http://api.example.com/v2/faxes");
  EXPECT_EQ(settings_error(t),
            "target \"office-fax\": url: the fax is the referral itself; use https:// (plain http:// only to a "
            "loopback address), got \"http://api.example.com/v2/faxes\"");

  t = fax_target();
  t.settings["auth"] = std::string("basic");
  EXPECT_EQ(settings_error(t), "target \"office-fax\": auth = \"basic\" needs username and password_file");

  t = fax_target();
  t.settings["auth"] = std::string("header");
  t.settings["header_name"] = std::string("X Api Key");
  t.settings["password_file"] = std::string("/nonexistent");
  EXPECT_EQ(settings_error(t), "target \"office-fax\": header_name: not an HTTP header name: \"X Api Key\"");

  t = fax_target();
  t.settings["username"] = std::string("me");
  t.settings["auth"] = std::string("none");
  EXPECT_EQ(
      settings_error(t),
      "target \"office-fax\": auth = \"none\" sends no credentials: remove username, header_name and password_file");

  t = fax_target();
  t.settings["status_url"] = std::string("https://api.example.com/v2/faxes/{id}");
  EXPECT_EQ(settings_error(t), "target \"office-fax\": status_url and status_path go together (set both, or neither)");

  t = fax_target();
  t.settings["status_url"] = std::string("https://api.example.com/v2/faxes/");
  t.settings["status_path"] = std::string("data.status");
  EXPECT_EQ(settings_error(t), "target \"office-fax\": status_url: must hold \"{id}\", where the provider's id goes");

  t = fax_target();
  t.settings["status_pending"] = std::vector<std::string>{"queued", "Success"};
  EXPECT_EQ(settings_error(t), "target \"office-fax\": status_delivered and status_pending both list \"success\"");

  t = fax_target();
  t.settings["file_field"] = std::string("fi\"le");
  EXPECT_EQ(settings_error(t), "target \"office-fax\": file_field: printable text without '\"' or '\\'");

  t = fax_target();
  t.settings["id_path"] = std::string("data..id");
  EXPECT_EQ(settings_error(t), "target \"office-fax\": id_path: a dotted JSON path like \"data.id\", got \"data..id\"");

  t = fax_target();
  t.settings["status_url"] = std::string("https://api.example.com/v2/faxes/{id}");
  t.settings["status_path"] = std::string("data.status");
  t.timeout = std::chrono::seconds(60);  // 54s for a send
  EXPECT_EQ(settings_error(t), "");      // the default poll_interval, 10s
  t.settings["poll_interval"] = Duration(30000);
  EXPECT_EQ(settings_error(t),
            "target \"office-fax\": poll_interval (30s) must be at most half of what the target's timeout leaves for "
            "a send (54s); raise timeout or lower poll_interval");
  t.settings["poll_interval"] = Duration(27000);
  EXPECT_EQ(settings_error(t), "");

  t = fax_target();
  t.settings["poll_interval"] = Duration(10);
  EXPECT_EQ(settings_error(t), "target \"office-fax\": poll_interval: must be at least 100ms");
}

TEST(HttpFaxSettings, AnUnreadablePasswordFileIsAProblemNotAThrow) {
  auto t = fax_target();
  t.settings["username"] = std::string("referrald");
  t.settings["password_file"] = std::string("/nonexistent/referrald-fax-password");
  const HttpFaxSettings s = http_fax_settings(t);
  EXPECT_EQ(s.auth, FaxAuth::basic);
  ASSERT_TRUE(s.problem);
  EXPECT_EQ(*s.problem, "password_file cannot read /nonexistent/referrald-fax-password: No such file or directory");
}

TEST(Multipart, BodyIsCrlfFramed) {
  const std::vector<FormPart> parts{
      {"to", "+19015954011", "", ""},
      {"file", std::string("%PDF-1.4\r\n\0bin", 14), "referral-R-1.pdf", "application/pdf"}};
  const std::string body = multipart_body("BOUNDARY", parts);
  EXPECT_EQ(body,
            "--BOUNDARY\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\n+19015954011\r\n"
            "--BOUNDARY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"referral-R-1.pdf\"\r\n"
            "Content-Type: application/pdf\r\n\r\n" +
                std::string("%PDF-1.4\r\n\0bin", 14) + "\r\n--BOUNDARY--\r\n");
  const std::string boundary = multipart_boundary(parts);
  EXPECT_TRUE(boundary.starts_with("referrald-"));
  EXPECT_EQ(boundary.size(), 42U);
  EXPECT_NE(boundary, multipart_boundary(parts));
}

http_client::Reply http_reply(long status, std::string body) {
  http_client::Reply r;
  r.status = status;
  r.transfer.response_code = status;
  r.body = std::move(body);
  return r;
}

TEST(FaxSubmit, MapsTheProvidersAnswer) {
  auto t = fax_target();
  t.settings["success_path"] = std::string("success");
  const HttpFaxSettings s = http_fax_settings(t);

  Outcome o = classify_fax_submit(s, http_reply(200, R"({"success":true,"message":"Fax queued","data":{"id":1234}})"));
  EXPECT_EQ(o.kind, OutcomeClass::delivered);
  EXPECT_EQ(o.external_id, "1234");
  EXPECT_EQ(o.message, "accepted by the fax provider (HTTP 200, id 1234)");

  o = classify_fax_submit(s, http_reply(201, R"({"success":true,"data":{"id":"fx_9"}})"));
  EXPECT_EQ(o.external_id, "fx_9");

  o = classify_fax_submit(s, http_reply(200, R"({"success":false,"message":"nope"})"));
  EXPECT_EQ(o.kind, OutcomeClass::permanent);
  o = classify_fax_submit(s, http_reply(200, R"({"success":true,"data":{}})"));
  EXPECT_EQ(o.kind, OutcomeClass::misconfigured);
  EXPECT_NE(o.message.find("no id at data.id"), std::string::npos) << o.message;
  o = classify_fax_submit(s, http_reply(200, "<html>ok</html>"));
  EXPECT_EQ(o.kind, OutcomeClass::misconfigured);

  for (long status : {500L, 502L, 503L, 504L, 408L, 429L}) {
    EXPECT_EQ(classify_fax_submit(s, http_reply(status, "{}")).kind, OutcomeClass::transient) << status;
  }
  for (long status : {401L, 403L, 404L, 405L, 407L, 301L}) {
    EXPECT_EQ(classify_fax_submit(s, http_reply(status, "{}")).kind, OutcomeClass::misconfigured) << status;
  }
  for (long status : {400L, 413L, 415L, 422L}) {
    EXPECT_EQ(classify_fax_submit(s, http_reply(status, "{}")).kind, OutcomeClass::permanent) << status;
  }
  o = classify_fax_submit(s, http_reply(401, R"({"success":false,"message":"Invalid API credentials"})"));
  EXPECT_EQ(o.code, "401");
  EXPECT_EQ(o.message, "fax provider: HTTP 401 {'success':false,'message':'Invalid API credentials'}");
}

TEST(FaxStatus, ValuesMapThroughTheLists) {
  auto t = fax_target();
  t.settings["status_url"] = std::string("https://api.example.com/v2/faxes/{id}?x={id}");
  t.settings["status_path"] = std::string("data.status");
  t.settings["status_failed"] = std::vector<std::string>{"partialsuccess", "cancelled"};
  const HttpFaxSettings s = http_fax_settings(t);
  EXPECT_EQ(fax_status_url(s, "12 3/4"), "https://api.example.com/v2/faxes/12%203%2F4?x=12%203%2F4");

  std::string problem;
  EXPECT_EQ(fax_status_value(s, R"({"data":{"status":"queued"}})", &problem), "queued");
  EXPECT_EQ(fax_status_value(s, R"({"data":{"status":3}})", &problem), "3");
  EXPECT_FALSE(fax_status_value(s, R"({"data":{}})", &problem));
  EXPECT_EQ(problem, "the status reply has no value at data.status");
  EXPECT_FALSE(fax_status_value(s, "not json", &problem));
  EXPECT_EQ(problem, "the status reply is not JSON");

  EXPECT_EQ(classify_fax_status(s, "success"), FaxStatus::delivered);
  EXPECT_EQ(classify_fax_status(s, "SUCCESS"), FaxStatus::delivered);
  EXPECT_EQ(classify_fax_status(s, "queued"), FaxStatus::pending);
  EXPECT_EQ(classify_fax_status(s, "inprogress"), FaxStatus::pending);
  EXPECT_EQ(classify_fax_status(s, "failure"), FaxStatus::retry);
  EXPECT_EQ(classify_fax_status(s, "cancelled"), FaxStatus::failed);
  EXPECT_EQ(classify_fax_status(s, "exploded"), FaxStatus::unknown);
}

}  // namespace
}  // namespace referrald
