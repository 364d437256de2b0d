// The office's side of the loop over HTTP, against the real daemon: key
// scopes, the status API, the status and its history in GET, the one-tap
// acknowledgement pages, the confirmation page's status and /metrics.
//
// Acknowledgement tokens are issued into the daemon's SQLite file with the
// store library (store::add_ack_token), as the dispatcher does when it sends
// a notification that carries the link.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <random>
#include <regex>

#include "store/database.hpp"
#include "store/office.hpp"
#include "support/harness.hpp"

namespace referrald::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using Clock = std::chrono::system_clock;

constexpr const char* office_token = "office-integration-token";
constexpr const char* other_submitter_token = "another-submitter-token";

Daemon::Options office_options() {
  Daemon::Options o;
  o.extra_http = "office_api_keys = [\"sha256:" + openssl_sha256_hex(office_token) + "\"]\n";
  return o;
}

HttpResult call(Daemon& daemon, const std::string& method, const std::string& path, const std::string& token,
                std::optional<std::string> body = std::nullopt, std::vector<std::string> headers = {}) {
  HttpRequest r;
  r.method = method;
  r.url = daemon.base_url() + path;
  if (!token.empty()) r.headers.push_back("Authorization: Bearer " + token);
  if (body) r.headers.push_back("Content-Type: application/json");
  for (auto& h : headers) r.headers.push_back(std::move(h));
  r.body = std::move(body);
  return http(r);
}

HttpResult set_status(Daemon& daemon, const std::string& id, const json& body,
                      const std::string& token = office_token) {
  return call(daemon, "POST", "/api/v1/referrals/" + id + "/status", token, body.dump());
}

std::string submit(Daemon& daemon, const std::string& sample_name = "asps-routine.json") {
  const auto r = daemon.post_referral(sample(sample_name));
  EXPECT_EQ(r.status, 202) << r.body;
  return json::parse(r.body).value("id", "");
}

// 43 characters of base64url: the shape of a link's token (32 random bytes).
std::string new_token() {
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::random_device random;
  std::string out;
  for (int i = 0; i < 43; ++i) out += alphabet[random() % 64];
  return out;
}

// Issues a token for `id` into the daemon's database, valid for `ttl` from
// `issued` (a ttl in the past makes an expired one).
std::string issue_token(const Daemon& daemon, const std::string& id, Clock::duration ttl,
                        Clock::time_point issued = Clock::now()) {
  const auto token = new_token();
  store::Database db(daemon.database(), store::OpenMode::read_write);
  store::WriteTransaction write(db);
  store::add_ack_token(db, id, openssl_sha256_hex(token), issued, issued + ttl);
  write.commit();
  return token;
}

// A step of the escalation ladder due in an hour, as intake plans one.
void plan_escalation_step(const Daemon& daemon, const std::string& id) {
  const auto due = std::chrono::duration_cast<std::chrono::milliseconds>((Clock::now() + 1h).time_since_epoch());
  ASSERT_EQ(scalar(daemon.database(),
                   "INSERT INTO escalations (referral_id, step, due_ms, after_s, targets) "
                   "VALUES ('" +
                       id + "', 1, " + std::to_string(due.count()) + ", 3600, 'office-pager')"),
            1);
}

std::string status_in_db(const Daemon& daemon, const std::string& id) {
  return query_text(daemon.database(), "SELECT status FROM referrals WHERE id = '" + id + "'").value_or("?");
}

long long count(const Daemon& daemon, const std::string& sql) { return count_rows(daemon.database(), sql); }

// What a browser sends when the page's own button is pressed.
HttpResult press_acknowledge(Daemon& daemon, const std::string& token, std::vector<std::string> headers = {}) {
  HttpRequest r;
  r.method = "POST";
  r.url = daemon.base_url() + "/ack/" + token;
  r.headers = {"Content-Type: application/x-www-form-urlencoded", "Origin: " + daemon.base_url(),
               "Sec-Fetch-Site: same-origin"};
  for (auto& h : headers) r.headers.push_back(std::move(h));
  r.body = "";
  return http(r);
}

HttpResult open_link(Daemon& daemon, const std::string& token, const std::string& method = "GET") {
  HttpRequest r;
  r.method = method;
  r.url = daemon.base_url() + "/ack/" + token;
  return http(r);
}

class OfficeApi : public ::testing::Test {
 protected:
  void SetUp() override { daemon.start(); }
  Daemon daemon{office_options()};
};

// ---- scopes

TEST_F(OfficeApi, ASubmittingKeyGets403OnTheStatusApiAndNothingChanges) {
  const auto id = submit(daemon);
  const auto r = set_status(daemon, id, {{"status", "acknowledged"}}, Daemon::api_token);
  ASSERT_EQ(r.status, 403) << r.body;
  const auto message = json::parse(r.body)["errors"][0]["message"].get<std::string>();
  EXPECT_NE(message.find("office key"), std::string::npos) << message;
  EXPECT_NE(message.find("office_api_keys"), std::string::npos) << message;
  EXPECT_EQ(status_in_db(daemon, id), "received");
  EXPECT_EQ(count(daemon, "SELECT count(*) FROM status_changes"), 0);

  // No key, or a key nobody configured: 401, as for the rest of the API.
  EXPECT_EQ(set_status(daemon, id, {{"status", "acknowledged"}}, "").status, 401);
  EXPECT_EQ(set_status(daemon, id, {{"status", "acknowledged"}}, "not-a-key").status, 401);
}

TEST_F(OfficeApi, AnOfficeKeyReadsEveryReferralButDoesNotSubmit) {
  const auto id = submit(daemon);
  const auto got = call(daemon, "GET", "/api/v1/referrals/" + id, office_token);
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(json::parse(got.body)["id"], id);

  const auto posted = call(daemon, "POST", "/api/v1/referrals", office_token, sample("asps-routine.json"));
  EXPECT_EQ(posted.status, 403) << posted.body;
  EXPECT_EQ(count(daemon, "SELECT count(*) FROM referrals"), 1);
}

TEST(OfficeApiScopes, ASubmittingKeySeesOnlyItsOwnReferrals) {
  Daemon daemon(office_options());
  // A second submitting key beside the harness's own.
  auto config = read_file(daemon.config_file());
  const auto line = "api_keys = [\"sha256:" + openssl_sha256_hex(Daemon::api_token) + "\"";
  const auto at = config.find(line);
  ASSERT_NE(at, std::string::npos);
  config.insert(at + line.size(), ", \"sha256:" + openssl_sha256_hex(other_submitter_token) + "\"");
  write_file(daemon.config_file(), config);
  daemon.start();

  const auto id = submit(daemon);
  EXPECT_EQ(call(daemon, "GET", "/api/v1/referrals/" + id, Daemon::api_token).status, 200);
  EXPECT_EQ(call(daemon, "GET", "/api/v1/referrals/" + id, other_submitter_token).status, 404);
  EXPECT_EQ(call(daemon, "GET", "/api/v1/referrals/" + id, office_token).status, 200);
}

// ---- the status API

TEST_F(OfficeApi, TheOfficeMovesAReferralAndGetShowsItsHistory) {
  const auto id = submit(daemon);
  // The 202 says where it starts.
  {
    const auto view = json::parse(daemon.get("/api/v1/referrals/" + id).body);
    EXPECT_EQ(view["status"], "received");
    EXPECT_FALSE(view.contains("acknowledged_at"));
    EXPECT_EQ(view["status_history"], json::array());
  }

  auto r = set_status(daemon, id, {{"status", "acknowledged"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["status"], "acknowledged");
  EXPECT_EQ(json::parse(r.body)["previous_status"], "received");
  r = set_status(daemon, id, {{"status", "needs-info"}, {"note", "Please fax the pathology report."}});
  ASSERT_EQ(r.status, 200) << r.body;

  const auto got = daemon.get("/api/v1/referrals/" + id);  // the submitter's own key
  ASSERT_EQ(got.status, 200) << got.body;
  const auto view = json::parse(got.body);
  EXPECT_EQ(view["status"], "needs-info");
  EXPECT_TRUE(view.contains("acknowledged_at"));
  ASSERT_EQ(view["status_history"].size(), 2U) << view.dump(2);
  const auto& first = view["status_history"][0];
  EXPECT_EQ(first["from"], "received");
  EXPECT_EQ(first["to"], "acknowledged");
  EXPECT_EQ(first["via"], "api");
  EXPECT_EQ(first["actor"], "key:" + openssl_sha256_hex(office_token).substr(0, 8));
  EXPECT_FALSE(first.contains("note"));
  EXPECT_EQ(view["acknowledged_at"], first["at"]);
  const auto& second = view["status_history"][1];
  EXPECT_EQ(second["from"], "acknowledged");
  EXPECT_EQ(second["to"], "needs-info");
  EXPECT_EQ(second["note"], "Please fax the pathology report.");

  // The note is PHI: sealed at rest like the document, never in the log.
  EXPECT_EQ(count(daemon, "SELECT count(*) FROM status_changes WHERE CAST(note AS TEXT) LIKE '%pathology%'"), 0);
  EXPECT_EQ(daemon.log().find("pathology report"), std::string::npos);
}

TEST_F(OfficeApi, AForbiddenChangeIs409SayingWhatIsAllowed) {
  const auto id = submit(daemon);
  const auto r = set_status(daemon, id, {{"status", "accepted"}});
  ASSERT_EQ(r.status, 409) << r.body;
  const auto body = json::parse(r.body);
  EXPECT_EQ(body["errors"][0]["path"], "/status");
  EXPECT_EQ(body["errors"][0]["message"],
            "status is received: it can change to acknowledged or closed, not to accepted");
  EXPECT_EQ(body["status"], "received");
  EXPECT_EQ(body["allowed"], json::array({"acknowledged", "closed"}));
  EXPECT_EQ(status_in_db(daemon, id), "received");

  // Closed is final.
  ASSERT_EQ(set_status(daemon, id, {{"status", "closed"}, {"note", "Withdrawn by the referrer."}}).status, 200);
  const auto again = set_status(daemon, id, {{"status", "acknowledged"}});
  ASSERT_EQ(again.status, 409) << again.body;
  EXPECT_EQ(json::parse(again.body)["errors"][0]["message"], "status is closed: it cannot change any more");
  EXPECT_EQ(json::parse(again.body)["allowed"], json::array());
}

TEST_F(OfficeApi, TheSameChangeSentAgainIsAnsweredOnceRecorded) {
  const auto id = submit(daemon);
  const json change{{"status", "acknowledged"}, {"note", "Seen by the nurse on call."}};
  ASSERT_EQ(set_status(daemon, id, change).status, 200);
  const auto repeat = set_status(daemon, id, change);
  ASSERT_EQ(repeat.status, 200) << repeat.body;
  EXPECT_EQ(repeat.headers.at("idempotent-replayed"), "true");
  EXPECT_EQ(count(daemon, "SELECT count(*) FROM status_changes"), 1);
  // Another note is another change, and that one the rules refuse.
  EXPECT_EQ(set_status(daemon, id, {{"status", "acknowledged"}, {"note", "Other."}}).status, 409);
}

TEST_F(OfficeApi, ABadStatusBodyIsRefusedNamingTheField) {
  const auto id = submit(daemon);
  const auto error_of = [&](const std::string& body) {
    const auto r = call(daemon, "POST", "/api/v1/referrals/" + id + "/status", office_token, body);
    EXPECT_EQ(r.status, 422) << body << " -> " << r.body;
    const auto errors = json::parse(r.body)["errors"];
    return std::make_pair(errors[0]["path"].get<std::string>(), errors[0]["message"].get<std::string>());
  };
  EXPECT_EQ(error_of("{}"), std::make_pair(std::string("/status"), std::string("is required")));
  EXPECT_EQ(error_of(R"({"status": 3})"), std::make_pair(std::string("/status"), std::string("must be a string")));
  EXPECT_EQ(error_of(R"({"status": "received"})"),
            std::make_pair(std::string("/status"),
                           std::string("must be one of: acknowledged, accepted, declined, needs-info, closed")));
  EXPECT_EQ(error_of(R"({"status": "acknowledged", "note": 5})"),
            std::make_pair(std::string("/note"), std::string("must be a string")));
  EXPECT_EQ(error_of(R"({"status": "acknowledged", "note": "a\u0007b"})"),
            std::make_pair(std::string("/note"),
                           std::string("must not contain control characters other than tab and line breaks")));
  EXPECT_EQ(error_of(json{{"status", "acknowledged"}, {"note", std::string(4001, 'x')}}.dump()),
            std::make_pair(std::string("/note"), std::string("must be at most 4000 characters")));
  EXPECT_EQ(error_of(R"({"status": "acknowledged", "by": "me"})"),
            std::make_pair(std::string("/by"), std::string("unknown field")));
  EXPECT_EQ(error_of("[]"), std::make_pair(std::string(""), std::string("must be an object")));

  const auto malformed =
      call(daemon, "POST", "/api/v1/referrals/" + id + "/status", office_token, "{\"status\": \"Ava Nguyen");
  EXPECT_EQ(malformed.status, 400) << malformed.body;
  EXPECT_EQ(malformed.body.find("Ava"), std::string::npos) << "the error quotes the body: " << malformed.body;

  HttpRequest text;
  text.method = "POST";
  text.url = daemon.base_url() + "/api/v1/referrals/" + id + "/status";
  text.headers = {"Authorization: Bearer " + std::string(office_token), "Content-Type: text/plain"};
  text.body = R"({"status": "acknowledged"})";
  EXPECT_EQ(http(text).status, 415);
  EXPECT_EQ(call(daemon, "GET", "/api/v1/referrals/" + id + "/status", office_token).status, 405);
  EXPECT_EQ(status_in_db(daemon, id), "received");
}

TEST_F(OfficeApi, AnUnknownReferralIs404) {
  EXPECT_EQ(set_status(daemon, "R-20260101-AAAAA-BBBBB", {{"status", "acknowledged"}}).status, 404);
  EXPECT_EQ(set_status(daemon, "not-an-id", {{"status", "acknowledged"}}).status, 404);
}

TEST_F(OfficeApi, TheAcceptedAnswerSaysTheReferralIsReceived) {
  const auto r = daemon.post_referral(sample("asps-routine.json"));
  ASSERT_EQ(r.status, 202) << r.body;
  const auto body = json::parse(r.body);
  EXPECT_EQ(body["status"], "received");
  EXPECT_FALSE(body.contains("duplicate_of"));
}

// ---- /metrics

TEST_F(OfficeApi, MetricsCountStatusesAndTimesToAcknowledge) {
  const auto first = submit(daemon, "asps-urgent.json");
  const auto second = submit(daemon);
  ASSERT_EQ(set_status(daemon, first, {{"status", "acknowledged"}}).status, 200);

  const auto text = daemon.get("/metrics", false).body;
  EXPECT_EQ(metric(text, "referrald_referrals{status=\"received\"}"), 1) << text;
  EXPECT_EQ(metric(text, "referrald_referrals{status=\"acknowledged\"}"), 1) << text;
  EXPECT_EQ(metric(text, "referrald_referrals{status=\"closed\"}"), 0) << text;
  // Acknowledged within a minute of its receipt: in every bucket from 60 s up.
  EXPECT_EQ(metric(text, "referrald_time_to_acknowledge_seconds_bucket{urgency=\"urgent\",le=\"60\"}"), 1) << text;
  EXPECT_EQ(metric(text, "referrald_time_to_acknowledge_seconds_bucket{urgency=\"urgent\",le=\"+Inf\"}"), 1);
  EXPECT_EQ(metric(text, "referrald_time_to_acknowledge_seconds_count{urgency=\"urgent\"}"), 1);
  EXPECT_EQ(metric(text, "referrald_time_to_acknowledge_seconds_count{urgency=\"routine\"}"), 0);
  EXPECT_NE(text.find("# TYPE referrald_time_to_acknowledge_seconds histogram"), std::string::npos);
  EXPECT_NE(text.find("# TYPE referrald_escalation_steps_fired_total counter"), std::string::npos);
  (void)second;
}

// ---- the acknowledgement link

TEST_F(OfficeApi, OpeningTheLinkShowsTheReferenceAndChangesNothing) {
  const auto id = submit(daemon);
  plan_escalation_step(daemon, id);
  const auto token = issue_token(daemon, id, 7 * 24h);

  // A mail scanner, a link preview, a person: GET and HEAD, as often as they like.
  for (int i = 0; i < 3; ++i) {
    const auto page = open_link(daemon, token);
    ASSERT_EQ(page.status, 200) << page.body;
    EXPECT_NE(page.body.find(id), std::string::npos);
    EXPECT_NE(page.body.find("<form method=\"post\" action=\"/ack/" + token + "\""), std::string::npos) << page.body;
    EXPECT_NE(page.body.find(">Acknowledge</button>"), std::string::npos);
    EXPECT_EQ(page.body.find("Ava"), std::string::npos) << "patient data on the page";
    EXPECT_EQ(page.body.find("Nguyen"), std::string::npos) << "patient data on the page";
    EXPECT_NE(page.headers.at("content-security-policy").find("form-action 'self'"), std::string::npos);
    EXPECT_EQ(page.headers.at("x-frame-options"), "DENY");
  }
  EXPECT_EQ(open_link(daemon, token, "HEAD").status, 200);

  EXPECT_EQ(status_in_db(daemon, id), "received");
  EXPECT_EQ(count(daemon, "SELECT count(*) FROM ack_tokens WHERE used_ms IS NOT NULL"), 0);
  EXPECT_EQ(count(daemon, "SELECT count(*) FROM status_changes"), 0);
  EXPECT_EQ(count(daemon, "SELECT count(*) FROM escalations WHERE state = 'pending'"), 1);
  // The token never reaches the log: the path is logged, so only its page's note is.
  EXPECT_EQ(daemon.log().find(token), std::string::npos);
}

TEST_F(OfficeApi, PressingTheButtonAcknowledgesAndStopsTheLadder) {
  const auto id = submit(daemon, "asps-urgent.json");
  plan_escalation_step(daemon, id);
  const auto token = issue_token(daemon, id, 7 * 24h);

  const auto r = press_acknowledge(daemon, token);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("Referral acknowledged"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find(id), std::string::npos);
  EXPECT_EQ(status_in_db(daemon, id), "acknowledged");
  EXPECT_EQ(count(daemon, "SELECT count(*) FROM escalations WHERE state = 'stopped'"), 1);
  EXPECT_EQ(count(daemon, "SELECT count(*) FROM ack_tokens WHERE used_ms IS NOT NULL"), 1);

  const auto view = json::parse(call(daemon, "GET", "/api/v1/referrals/" + id, office_token).body);
  ASSERT_EQ(view["status_history"].size(), 1U);
  EXPECT_EQ(view["status_history"][0]["actor"], "link");
  EXPECT_EQ(view["status_history"][0]["via"], "link");

  // The link acknowledges once: opened or pressed again, it says when it was used.
  for (const auto& again : {open_link(daemon, token), press_acknowledge(daemon, token)}) {
    EXPECT_EQ(again.status, 410) << again.body;
    EXPECT_NE(again.body.find("already used"), std::string::npos) << again.body;
    EXPECT_TRUE(
        std::regex_search(again.body, std::regex("used on (<[^>]+>)?20[0-9]{2}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}")))
        << again.body;
  }
  EXPECT_EQ(count(daemon, "SELECT count(*) FROM status_changes"), 1);
}

TEST_F(OfficeApi, ALinkForAReferralSomeoneElseAcknowledgedSaysSoAndIsUsedUp) {
  const auto id = submit(daemon);
  const auto token = issue_token(daemon, id, 7 * 24h);
  ASSERT_EQ(set_status(daemon, id, {{"status", "acknowledged"}}).status, 200);

  const auto page = open_link(daemon, token);
  ASSERT_EQ(page.status, 200) << page.body;
  EXPECT_NE(page.body.find("already acknowledged"), std::string::npos) << page.body;

  const auto r = press_acknowledge(daemon, token);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("already acknowledged"), std::string::npos) << r.body;
  EXPECT_EQ(count(daemon, "SELECT count(*) FROM ack_tokens WHERE used_ms IS NOT NULL"), 1);
  EXPECT_EQ(count(daemon, "SELECT count(*) FROM status_changes"), 1);  // the office key's, only
}

TEST_F(OfficeApi, ExpiredAndUnknownLinksSaySoAndRecordNothing) {
  const auto id = submit(daemon);
  const auto expired = issue_token(daemon, id, 1h, Clock::now() - 2h);
  for (const auto& r : {open_link(daemon, expired), press_acknowledge(daemon, expired)}) {
    EXPECT_EQ(r.status, 410) << r.body;
    EXPECT_NE(r.body.find("has expired"), std::string::npos) << r.body;
    EXPECT_NE(r.body.find(id), std::string::npos) << r.body;
  }
  for (const auto& token : {new_token(), std::string("short"), std::string(43, '!')}) {
    for (const auto& r : {open_link(daemon, token), press_acknowledge(daemon, token)}) {
      EXPECT_EQ(r.status, 404) << token << ": " << r.body;
      EXPECT_NE(r.body.find("not recognised"), std::string::npos) << r.body;
    }
  }
  EXPECT_EQ(status_in_db(daemon, id), "received");
  EXPECT_EQ(count(daemon, "SELECT count(*) FROM ack_tokens WHERE used_ms IS NOT NULL"), 0);
}

TEST_F(OfficeApi, AButtonPressedOnAnotherSiteIsRefused) {
  const auto id = submit(daemon);
  const auto token = issue_token(daemon, id, 7 * 24h);
  HttpRequest r;
  r.method = "POST";
  r.url = daemon.base_url() + "/ack/" + token;
  r.headers = {"Content-Type: application/x-www-form-urlencoded", "Origin: https://evil.example",
               "Sec-Fetch-Site: cross-site"};
  r.body = "";
  const auto refused = http(r);
  EXPECT_EQ(refused.status, 403) << refused.body;
  EXPECT_EQ(status_in_db(daemon, id), "received");
  EXPECT_EQ(count(daemon, "SELECT count(*) FROM ack_tokens WHERE used_ms IS NOT NULL"), 0);
  // Other methods are not ways in either.
  EXPECT_EQ(open_link(daemon, token, "PUT").status, 405);
  EXPECT_EQ(open_link(daemon, token, "DELETE").status, 405);
}

// ---- the form's confirmation page

TEST_F(OfficeApi, TheConfirmationPageShowsTheCurrentStatusInPlainWords) {
  Browser browser(daemon);
  ASSERT_EQ(browser.open_form().status, 200);
  const auto sent = browser.post(valid_fields());
  ASSERT_EQ(sent.status, 303) << sent.body;
  const auto location = sent.headers.at("location");
  const auto id = location.substr(location.rfind('/') + 1);

  auto page = browser.get(location);
  ASSERT_EQ(page.status, 200) << page.body;
  EXPECT_NE(page.body.find("Received; the referral office has not reviewed it yet."), std::string::npos) << page.body;

  ASSERT_EQ(set_status(daemon, id, {{"status", "acknowledged"}}).status, 200);
  ASSERT_EQ(set_status(daemon, id, {{"status", "accepted"}}).status, 200);
  page = browser.get(location);
  EXPECT_NE(page.body.find("Accepted; the referral office will contact you to arrange the first visit."),
            std::string::npos)
      << page.body;
}

}  // namespace
}  // namespace referrald::test
