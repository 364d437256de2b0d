// FHIR R4 against the real referrald binary (docs/fhir.md): a transaction
// Bundle, a message Bundle and a ServiceRequest with contained resources go
// through the same intake as the JSON API (channel "fhir"); the answer comes
// only after the commit; the Task follows the office's status; errors are
// OperationOutcomes naming the FHIR element with the JSON API's statuses;
// keys see only what they may; no PHI in the log.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <thread>

#include "support/harness.hpp"

namespace referrald::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* office_token = "fhir-office-token";

json fhir_sample(const std::string& name) { return json::parse(sample("fhir/" + name)); }

Daemon::Options office_options() {
  Daemon::Options o;
  o.extra_http = "office_api_keys = [\"sha256:" + openssl_sha256_hex(office_token) + "\"]\n";
  return o;
}

HttpResult call(Daemon& daemon, const std::string& method, const std::string& path,
                std::optional<std::string> body = std::nullopt, std::vector<std::string> headers = {},
                const std::string& token = Daemon::api_token) {
  HttpRequest r;
  r.method = method;
  r.url = daemon.base_url() + path;
  if (!token.empty()) r.headers.push_back("Authorization: Bearer " + token);
  const bool typed = std::any_of(headers.begin(), headers.end(),
                                 [](const std::string& h) { return h.rfind("Content-Type:", 0) == 0; });
  if (body && !typed) r.headers.push_back("Content-Type: application/fhir+json");
  for (auto& h : headers) r.headers.push_back(std::move(h));
  r.body = std::move(body);
  return http(r);
}

json parsed(const HttpResult& r) { return json::parse(r.body); }

// The one issue's expression of an OperationOutcome.
std::string expression_of(const HttpResult& r) {
  const auto body = parsed(r);
  EXPECT_EQ(body["resourceType"], "OperationOutcome") << r.body;
  EXPECT_EQ(body["issue"].size(), 1U) << r.body;
  return body["issue"][0].value("expression", json::array({""}))[0];
}

long long fhir_rows(Daemon& daemon) {
  return count_rows(daemon.database(), "SELECT count(*) FROM referrals WHERE channel = 'fhir'");
}

std::string id_of_location(const std::string& location) { return location.substr(location.rfind('/') + 1); }

// The files of referral `id` as the API lists them (title, bytes, sha256, url).
json stored_files(Daemon& daemon, const std::string& id) {
  const auto got = daemon.get("/api/v1/referrals/" + id);
  EXPECT_EQ(got.status, 200) << got.body;
  return got.status == 200 ? parsed(got).value("attachments", json::array()) : json::array();
}

class Fhir : public ::testing::Test {
 protected:
  void SetUp() override { daemon.start(); }
  Daemon daemon{office_options()};
};

TEST_F(Fhir, TransactionIsStoredBeforeItsResponseAndReadsBack) {
  const auto r = call(daemon, "POST", "/fhir/r4", fhir_sample("transaction.json").dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers.at("content-type"), "application/fhir+json; charset=utf-8");
  const auto bundle = parsed(r);
  EXPECT_EQ(bundle["type"], "transaction-response");
  ASSERT_EQ(bundle["entry"].size(), 6U);
  EXPECT_EQ(bundle["entry"][0]["response"]["status"], "201 Created");
  const std::string location = bundle["entry"][0]["response"]["location"];
  const auto id = id_of_location(location);
  EXPECT_EQ(location, "ServiceRequest/" + id);
  EXPECT_EQ(bundle["entry"][1]["response"]["location"], "Patient/" + id);
  // Committed before the answer: another connection sees it at once.
  EXPECT_EQ(fhir_rows(daemon), 1);

  // The stored referral is the mapped v1 document, through the same pipeline.
  const auto stored = daemon.stored_document(id);
  EXPECT_EQ(stored["patient"]["given_name"], "Ava");
  EXPECT_EQ(stored["referrer"]["npi"], "1234567893");
  const auto api = daemon.get("/api/v1/referrals/" + id);
  ASSERT_EQ(api.status, 200) << api.body;
  EXPECT_EQ(parsed(api)["decision"], "accepted");

  const auto task = call(daemon, "GET", "/fhir/r4/Task/" + id);
  ASSERT_EQ(task.status, 200) << task.body;
  EXPECT_EQ(parsed(task)["status"], "received");
  EXPECT_EQ(parsed(task)["focus"]["reference"], "ServiceRequest/" + id);
  const auto sr = call(daemon, "GET", "/fhir/r4/ServiceRequest/" + id);
  ASSERT_EQ(sr.status, 200) << sr.body;
  EXPECT_EQ(parsed(sr)["priority"], "routine");
  const auto patient = call(daemon, "GET", "/fhir/r4/Patient/" + id);
  ASSERT_EQ(patient.status, 200) << patient.body;
  EXPECT_EQ(parsed(patient)["birthDate"], "2014-03-09");
  EXPECT_NE(daemon.get("/metrics", false).body.find("referrald_intake_total{channel=\"fhir\",decision=\"accepted\"} 1"),
            std::string::npos);
}

TEST_F(Fhir, ServiceRequestWithContainedResourcesIs201WithLocation) {
  const auto r = call(daemon, "POST", "/fhir/r4/ServiceRequest", fhir_sample("service-request.json").dump());
  ASSERT_EQ(r.status, 201) << r.body;
  const auto id = id_of_location(r.headers.at("location"));
  EXPECT_EQ(r.headers.at("location"), "/fhir/r4/ServiceRequest/" + id);
  EXPECT_EQ(parsed(r)["id"], id);
  EXPECT_EQ(parsed(r)["priority"], "asap");  // stat: emergent
  EXPECT_EQ(fhir_rows(daemon), 1);
}

TEST_F(Fhir, MessageBundleThroughProcessMessage) {
  const auto r = call(daemon, "POST", "/fhir/r4/$process-message", fhir_sample("message.json").dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const auto bundle = parsed(r);
  EXPECT_EQ(bundle["entry"][1]["response"]["location"].get<std::string>().rfind("Task/", 0), 0U) << r.body;
  const auto id = id_of_location(bundle["entry"][1]["response"]["location"]);
  EXPECT_EQ(parsed(call(daemon, "GET", "/fhir/r4/ServiceRequest/" + id))["priority"], "urgent");
}

TEST_F(Fhir, ConditionalCreateAnswersWithTheReferralAlreadyStored) {
  // A transaction entry's ifNoneExist.
  const auto bundle = fhir_sample("transaction.json").dump();
  const auto first = call(daemon, "POST", "/fhir/r4", bundle);
  ASSERT_EQ(first.status, 200) << first.body;
  const auto again = call(daemon, "POST", "/fhir/r4", bundle);
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(parsed(again)["entry"][0]["response"]["status"], "200 OK");
  EXPECT_EQ(parsed(again)["entry"][0]["response"]["location"], parsed(first)["entry"][0]["response"]["location"]);
  // Even with other content: the identifier names the referral.
  auto changed = fhir_sample("transaction.json");
  changed["entry"][0]["resource"]["priority"] = "urgent";
  const auto third = call(daemon, "POST", "/fhir/r4", changed.dump());
  ASSERT_EQ(third.status, 200) << third.body;
  EXPECT_EQ(parsed(third)["entry"][0]["response"]["location"], parsed(first)["entry"][0]["response"]["location"]);
  EXPECT_EQ(fhir_rows(daemon), 1);

  // The If-None-Exist header on a create.
  const auto request = fhir_sample("service-request.json").dump();
  const std::vector<std::string> condition{
      "If-None-Exist: identifier=urn:oid:2.16.840.1.113883.3.1234.5|DP-REF-20261201-18"};
  const auto created = call(daemon, "POST", "/fhir/r4/ServiceRequest", request, condition);
  ASSERT_EQ(created.status, 201) << created.body;
  const auto found = call(daemon, "POST", "/fhir/r4/ServiceRequest", request, condition);
  ASSERT_EQ(found.status, 200) << found.body;
  EXPECT_EQ(found.headers.at("location"), created.headers.at("location"));
  EXPECT_EQ(fhir_rows(daemon), 2);
  // Another search is not supported.
  const auto other = call(daemon, "POST", "/fhir/r4/ServiceRequest", request, {"If-None-Exist: subject=Patient/1"});
  EXPECT_EQ(other.status, 400) << other.body;
}

TEST_F(Fhir, IdempotencyKeyReplaysOrConflicts) {
  const auto request = fhir_sample("service-request.json").dump();
  const auto first = call(daemon, "POST", "/fhir/r4/ServiceRequest", request, {"Idempotency-Key: ehr-42"});
  ASSERT_EQ(first.status, 201) << first.body;
  const auto again = call(daemon, "POST", "/fhir/r4/ServiceRequest", request, {"Idempotency-Key: ehr-42"});
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(again.headers.at("idempotent-replayed"), "true");
  EXPECT_EQ(again.headers.at("location"), first.headers.at("location"));
  auto changed = fhir_sample("service-request.json");
  changed["priority"] = "routine";
  const auto conflict = call(daemon, "POST", "/fhir/r4/ServiceRequest", changed.dump(), {"Idempotency-Key: ehr-42"});
  EXPECT_EQ(conflict.status, 409) << conflict.body;
  EXPECT_EQ(parsed(conflict)["issue"][0]["code"], "conflict");
  EXPECT_EQ(fhir_rows(daemon), 1);
}

TEST_F(Fhir, ErrorsAreOperationOutcomesWithTheApisStatuses) {
  auto bundle = fhir_sample("transaction.json");
  bundle["entry"][1]["resource"].erase("birthDate");
  const auto missing = call(daemon, "POST", "/fhir/r4", bundle.dump());
  ASSERT_EQ(missing.status, 422) << missing.body;
  EXPECT_EQ(expression_of(missing), "Bundle.entry[1].resource.birthDate");

  bundle = fhir_sample("transaction.json");
  bundle["entry"][3]["resource"]["identifier"][0]["value"] = "1234567890";
  const auto npi = call(daemon, "POST", "/fhir/r4", bundle.dump());
  ASSERT_EQ(npi.status, 422) << npi.body;
  EXPECT_EQ(expression_of(npi), "Bundle.entry[3].resource.identifier[0].value");

  bundle = fhir_sample("transaction.json");
  bundle["type"] = "collection";
  EXPECT_EQ(expression_of(call(daemon, "POST", "/fhir/r4", bundle.dump())), "Bundle.type");

  const auto malformed = call(daemon, "POST", "/fhir/r4", std::string("{\"resourceType\": \"Bundle\","));
  EXPECT_EQ(malformed.status, 400);
  EXPECT_EQ(parsed(malformed)["resourceType"], "OperationOutcome");

  // Larger than [http] max_body_bytes: refused by the server before the
  // body is read, still as an OperationOutcome.
  const auto huge = call(daemon, "POST", "/fhir/r4", std::string(4 * 1024 * 1024, ' '));
  EXPECT_EQ(huge.status, 413);
  EXPECT_EQ(parsed(huge)["resourceType"], "OperationOutcome") << huge.body;
  EXPECT_EQ(parsed(huge)["issue"][0]["code"], "too-costly");

  const auto anonymous = call(daemon, "POST", "/fhir/r4", fhir_sample("transaction.json").dump(), {}, "");
  EXPECT_EQ(anonymous.status, 401);
  EXPECT_EQ(parsed(anonymous)["issue"][0]["code"], "login");

  HttpRequest text;
  text.method = "POST";
  text.url = daemon.base_url() + "/fhir/r4";
  text.headers = {"Authorization: Bearer " + std::string(Daemon::api_token), "Content-Type: text/plain"};
  text.body = fhir_sample("transaction.json").dump();
  const auto unsupported = http(text);
  EXPECT_EQ(unsupported.status, 415);
  EXPECT_EQ(parsed(unsupported)["resourceType"], "OperationOutcome");
  // application/json is taken too.
  text.headers[1] = "Content-Type: application/json";
  text.body = fhir_sample("service-request.json").dump();
  text.url = daemon.base_url() + "/fhir/r4/ServiceRequest";
  EXPECT_EQ(http(text).status, 201);

  const auto office = call(daemon, "POST", "/fhir/r4", fhir_sample("transaction.json").dump(), {}, office_token);
  EXPECT_EQ(office.status, 403);
  EXPECT_EQ(call(daemon, "GET", "/fhir/r4/Observation/1").status, 404);
  EXPECT_EQ(call(daemon, "DELETE", "/fhir/r4/Task/R-1").status, 405);
  EXPECT_EQ(fhir_rows(daemon), 1);  // only the application/json one
}

// Records with a FHIR referral: a DocumentReference with its file inline
// and one whose file is a Binary, named by supportingInfo, stored as the
// API's attachments (checked by their bytes, SHA-256 as sent).
TEST_F(Fhir, DocumentReferencesAndBinariesArriveAsTheReferralsFiles) {
  const std::string pdf = attachment_fixture("records.pdf"), jpeg = attachment_fixture("image.jpg");
  auto bundle = fhir_sample("transaction.json");
  const json post_document{{"method", "POST"}, {"url", "DocumentReference"}};
  bundle["entry"].push_back({{"fullUrl", "urn:uuid:d0c0a000-0000-4000-8000-000000000001"},
                             {"resource",
                              {{"resourceType", "DocumentReference"},
                               {"status", "current"},
                               {"content", json::array({{{"attachment",
                                                          {{"contentType", "application/pdf"},
                                                           {"title", "Pathology report"},
                                                           {"data", openssl_base64(pdf)}}}}})}}},
                             {"request", post_document}});
  bundle["entry"].push_back(
      {{"fullUrl", "urn:uuid:d0c0a000-0000-4000-8000-000000000002"},
       {"resource",
        {{"resourceType", "DocumentReference"},
         {"status", "current"},
         {"description", "MRI still"},
         {"content", json::array({{{"attachment", {{"url", "urn:uuid:d0c0a000-0000-4000-8000-000000000003"}}}}})}}},
       {"request", post_document}});
  bundle["entry"].push_back(
      {{"fullUrl", "urn:uuid:d0c0a000-0000-4000-8000-000000000003"},
       {"resource", {{"resourceType", "Binary"}, {"contentType", "image/jpeg"}, {"data", openssl_base64(jpeg)}}},
       {"request", {{"method", "POST"}, {"url", "Binary"}}}});
  bundle["entry"][0]["resource"]["supportingInfo"] =
      json::array({{{"reference", "urn:uuid:d0c0a000-0000-4000-8000-000000000001"}},
                   {{"reference", "urn:uuid:d0c0a000-0000-4000-8000-000000000002"}}});
  const auto r = call(daemon, "POST", "/fhir/r4", bundle.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const auto answer = parsed(r);
  ASSERT_EQ(answer["entry"].size(), 9U);
  EXPECT_EQ(answer["entry"][6]["response"]["status"], "201 Created");
  const auto id = id_of_location(answer["entry"][0]["response"]["location"]);

  const auto files = stored_files(daemon, id);
  ASSERT_EQ(files.size(), 2U) << files.dump();
  EXPECT_EQ(files[0]["title"], "Pathology report");
  EXPECT_EQ(files[0]["content_type"], "application/pdf");
  EXPECT_EQ(files[0]["sha256"], openssl_sha256_hex(pdf));
  EXPECT_EQ(files[1]["title"], "MRI still");
  EXPECT_EQ(files[1]["content_type"], "image/jpeg");
  EXPECT_EQ(daemon.get(files[1]["url"].get<std::string>()).body, jpeg);

  // A file that is not what it claims: refused naming the Binary's data.
  bundle["entry"][8]["resource"]["data"] = openssl_base64("MZ this is an executable");
  bundle["entry"][0]["request"].erase("ifNoneExist");
  const auto refused = call(daemon, "POST", "/fhir/r4", bundle.dump());
  EXPECT_EQ(refused.status, 422) << refused.body;
  EXPECT_EQ(expression_of(refused), "Bundle.entry[8].resource.data");
}

// The transaction Bundle with one record: a DocumentReference (entry 6)
// whose file is the Binary of entry 7, in base64 `data`.
json with_binary(const std::string& data) {
  auto bundle = fhir_sample("transaction.json");
  bundle["entry"].push_back(
      {{"fullUrl", "urn:uuid:d0c0a000-0000-4000-8000-000000000001"},
       {"resource",
        {{"resourceType", "DocumentReference"},
         {"status", "current"},
         {"description", "Pathology scan"},
         {"content", json::array({{{"attachment", {{"url", "urn:uuid:d0c0a000-0000-4000-8000-000000000002"}}}}})}}},
       {"request", {{"method", "POST"}, {"url", "DocumentReference"}}}});
  bundle["entry"].push_back(
      {{"fullUrl", "urn:uuid:d0c0a000-0000-4000-8000-000000000002"},
       {"resource", {{"resourceType", "Binary"}, {"contentType", "application/pdf"}, {"data", data}}},
       {"request", {{"method", "POST"}, {"url", "Binary"}}}});
  bundle["entry"][0]["resource"]["supportingInfo"] =
      json::array({{{"reference", "urn:uuid:d0c0a000-0000-4000-8000-000000000001"}}});
  bundle["entry"][0]["request"].erase("ifNoneExist");
  return bundle;
}

// A FHIR body over max_body_bytes goes to a sealed spool as it arrives, as
// the API's does (docs/fhir.md): its Binary is decoded from there into a
// spool of its own, so the daemon never holds the upload, and the file is
// stored byte for byte. Bad base64 there is a 422 naming the Binary's data;
// a large body without a file is still a 413.
TEST_F(Fhir, AMultiMegabyteBinaryIsSpooledAndArrivesByteForByte) {
  const std::string pdf = large_pdf(4 * 1024 * 1024);
  const std::string body = with_binary(openssl_base64(pdf)).dump();
  const std::string head =
      "POST /fhir/r4 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(Daemon::api_token) +
      "\r\nContent-Type: application/fhir+json\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\n\r\n";
  std::string answer;
  {
    RawClient client(daemon.port());
    ASSERT_TRUE(send_whole(client, head + body.substr(0, body.size() / 2)));
    // Half the body in: it is in an unlinked file beside the database.
    EXPECT_TRUE(wait_until([&] { return open_spools(daemon).size() == 1; }, 10s)) << "the FHIR body is not spooled";
    ASSERT_TRUE(send_whole(client, body.substr(body.size() / 2)));
    ASSERT_TRUE(client.wait_closed(120s));
    answer = client.received();
  }
  ASSERT_EQ(status_of(answer), 200) << answer.substr(0, 2000);
  const auto bundle = json::parse(answer.substr(answer.find("\r\n\r\n") + 4));
  const auto id = id_of_location(bundle["entry"][0]["response"]["location"]);
  const auto files = stored_files(daemon, id);
  ASSERT_EQ(files.size(), 1U) << files.dump();
  EXPECT_EQ(files[0]["title"], "Pathology scan");
  EXPECT_EQ(files[0]["bytes"], pdf.size());
  EXPECT_EQ(files[0]["sha256"], openssl_sha256_hex(pdf));
  EXPECT_EQ(openssl_sha256_hex(daemon.get(files[0]["url"].get<std::string>()).body), openssl_sha256_hex(pdf));
  EXPECT_TRUE(wait_until([&] { return open_spools(daemon).empty(); }, 10s)) << "a spool outlived its request";

  // Not base64, deep in the large Binary: named by its FHIR element.
  std::string broken = openssl_base64(pdf);
  broken[broken.size() / 2] = '!';
  const auto refused = call(daemon, "POST", "/fhir/r4", with_binary(broken).dump());
  ASSERT_EQ(refused.status, 422) << refused.body;
  EXPECT_EQ(expression_of(refused), "Bundle.entry[7].resource.data");
  EXPECT_NE(parsed(refused)["issue"][0]["diagnostics"].get<std::string>().find("base64"), std::string::npos);

  // As large, without a file: max_body_bytes holds.
  auto plain = fhir_sample("transaction.json");
  plain["entry"][0]["resource"]["note"] = json::array({{{"text", std::string(200 * 1024, 'x')}}});
  const auto large = call(daemon, "POST", "/fhir/r4", plain.dump());
  EXPECT_EQ(large.status, 413) << large.body;
  EXPECT_EQ(fhir_rows(daemon), 1);
}

TEST_F(Fhir, MetadataIsTheCapabilityStatement) {
  const auto r = call(daemon, "GET", "/fhir/r4/metadata", std::nullopt, {}, "");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto statement = parsed(r);
  EXPECT_EQ(statement["resourceType"], "CapabilityStatement");
  EXPECT_EQ(statement["fhirVersion"], "4.0.1");
  std::vector<std::string> types;
  for (const auto& resource : statement["rest"][0]["resource"]) types.push_back(resource["type"]);
  EXPECT_EQ(types, (std::vector<std::string>{"ServiceRequest", "Task", "Patient"}));
}

TEST_F(Fhir, TaskFollowsTheOfficeStatusAndSearchPollsByLastUpdated) {
  const auto r = call(daemon, "POST", "/fhir/r4/ServiceRequest", fhir_sample("service-request.json").dump());
  ASSERT_EQ(r.status, 201) << r.body;
  const auto id = id_of_location(r.headers.at("location"));
  const auto search = [&](const std::string& query) {
    const auto found = call(daemon, "GET", "/fhir/r4/Task?" + query);
    EXPECT_EQ(found.status, 200) << found.body;
    return parsed(found);
  };
  const auto before = search("focus=ServiceRequest/" + id);
  EXPECT_EQ(before["type"], "searchset");
  ASSERT_EQ(before["total"], 1) << before.dump();
  const std::string last = before["entry"][0]["resource"]["lastModified"];
  EXPECT_EQ(search("focus=ServiceRequest%2F" + id + "&_lastUpdated=gt" + last)["total"], 0);

  std::this_thread::sleep_for(5ms);  // a later millisecond for the change
  const auto status = [&](const std::string& to, const std::string& note) {
    const auto changed =
        call(daemon, "POST", "/api/v1/referrals/" + id + "/status", json{{"status", to}, {"note", note}}.dump(),
             {"Content-Type: application/json"}, office_token);
    ASSERT_EQ(changed.status, 200) << changed.body;
  };
  status("acknowledged", "");
  status("declined", "outside our programme");
  const auto after = search("focus=ServiceRequest%2F" + id + "&_lastUpdated=gt" + last);
  ASSERT_EQ(after["total"], 1) << after.dump();
  const auto task = after["entry"][0]["resource"];
  EXPECT_EQ(task["status"], "rejected");
  EXPECT_EQ(task["statusReason"]["text"], "outside our programme");
  EXPECT_GT(task["lastModified"].get<std::string>(), last);
  EXPECT_EQ(parsed(call(daemon, "GET", "/fhir/r4/ServiceRequest/" + id))["status"], "revoked");

  EXPECT_EQ(call(daemon, "GET", "/fhir/r4/Task?_lastUpdated=gt" + last).status, 400);
  EXPECT_EQ(call(daemon, "GET", "/fhir/r4/Task?focus=" + id + "&_lastUpdated=yesterday").status, 400);
  EXPECT_EQ(call(daemon, "GET", "/fhir/r4/Task?focus=" + id + "&owner=x").status, 400);
}

TEST_F(Fhir, AKeyReadsOnlyWhatItSubmittedAndAnOfficeKeyReadsAll) {
  const auto r = call(daemon, "POST", "/fhir/r4/ServiceRequest", fhir_sample("service-request.json").dump());
  ASSERT_EQ(r.status, 201) << r.body;
  const auto id = id_of_location(r.headers.at("location"));
  EXPECT_EQ(call(daemon, "GET", "/fhir/r4/Patient/" + id, std::nullopt, {}, office_token).status, 200);
  EXPECT_EQ(call(daemon, "GET", "/fhir/r4/Patient/" + id, std::nullopt, {}, "").status, 401);

  // Another submitting key: the same 404 as an id that does not exist.
  daemon.stop();
  auto config = read_file(daemon.config_file());
  const auto line = "api_keys = [\"sha256:" + openssl_sha256_hex(Daemon::api_token) + "\"";
  const auto at = config.find(line);
  ASSERT_NE(at, std::string::npos);
  config.insert(at + line.size(), ", \"sha256:" + openssl_sha256_hex("another-ehr") + "\"");
  write_file(daemon.config_file(), config);
  daemon.start();
  EXPECT_EQ(call(daemon, "GET", "/fhir/r4/Patient/" + id, std::nullopt, {}, "another-ehr").status, 404);
  EXPECT_EQ(call(daemon, "GET", "/fhir/r4/Task/" + id, std::nullopt, {}, "another-ehr").status, 404);
  const auto none = call(daemon, "GET", "/fhir/r4/Task?focus=ServiceRequest/" + id, std::nullopt, {}, "another-ehr");
  EXPECT_EQ(parsed(none)["total"], 0);
}

TEST_F(Fhir, AcknowledgedReferralsSurviveKillNine) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    const auto r = call(daemon, "POST", "/fhir/r4/$process-message", fhir_sample("message.json").dump());
    ASSERT_EQ(r.status, 200) << r.body;
    ids.push_back(id_of_location(parsed(r)["entry"][1]["response"]["location"]));
  }
  daemon.kill9();
  daemon.start();
  for (const auto& id : ids) EXPECT_EQ(call(daemon, "GET", "/fhir/r4/Task/" + id).status, 200) << id;
}

TEST_F(Fhir, LogsNameReferralsByIdNeverByPatient) {
  auto bundle = fhir_sample("transaction.json");
  auto& patient = bundle["entry"][1]["resource"];
  patient["name"][1]["given"] = json::array({"Quintessa"});
  patient["name"][1]["family"] = "Vanderbilt-Oyelaran";
  patient["birthDate"] = "2013-05-17";
  const auto r = call(daemon, "POST", "/fhir/r4", bundle.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  const auto id = id_of_location(parsed(r)["entry"][0]["response"]["location"]);
  call(daemon, "GET", "/fhir/r4/Patient/" + id);
  call(daemon, "POST", "/fhir/r4", bundle.dump().substr(0, 300));  // malformed: never echoed
  patient["gender"] = "Vanderbilt";                                // invalid: named by element only
  const auto invalid = call(daemon, "POST", "/fhir/r4", bundle.dump());
  EXPECT_EQ(invalid.status, 422);
  EXPECT_EQ(invalid.body.find("Vanderbilt"), std::string::npos) << invalid.body;
  daemon.stop();
  const auto log = daemon.log();
  EXPECT_NE(log.find(id), std::string::npos);
  for (const char* phi : {"Quintessa", "Vanderbilt", "Oyelaran", "2013-05-17", "Linh", "thigh"}) {
    EXPECT_EQ(log.find(phi), std::string::npos) << phi << " appears in the log:\n" << log;
  }
}

}  // namespace
}  // namespace referrald::test
