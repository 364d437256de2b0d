// The real referrald binary on a free loopback port, driven by a real HTTP
// client: every status of the API contract, idempotency, HTTPS, durability
// across restarts, and concurrent submissions.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>
#include <sys/stat.h>

#include <atomic>
#include <set>
#include <thread>

#include "support/harness.hpp"

namespace referrald::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

Daemon::Options with_http(std::string lines) {
  Daemon::Options o;
  o.extra_http = std::move(lines);
  return o;
}

class Api : public ::testing::Test {
 protected:
  void SetUp() override { daemon.start(); }
  Daemon daemon{Daemon::Options{}};
};

// ASPS has no open trial today: from outside the service area a person
// reviews it; from inside (~180 miles of Memphis) it is accepted.
TEST_F(Api, AspsFromOutsideTheServiceAreaGoesToReview) {
  auto doc = json::parse(sample("asps-routine.json"));
  doc["patient"]["postal_code"] = "77030";  // Houston, TX
  const auto r = daemon.post_referral(doc.dump());
  ASSERT_EQ(r.status, 202) << r.body;
  const auto body = json::parse(r.body);
  EXPECT_EQ(body["decision"], "review");
  ASSERT_EQ(body["reasons"].size(), 1U);
  EXPECT_EQ(body["reasons"][0]["code"], "NO_OPEN_TRIAL");
}

TEST_F(Api, AcceptsTheSampleReferralAndShowsItsDeliveries) {
  // asps-routine.json comes from Jonesboro, AR (72401), about 70 miles from Memphis.
  const auto r = daemon.post_referral(sample("asps-routine.json"));
  ASSERT_EQ(r.status, 202) << r.body;
  const auto body = json::parse(r.body);
  const std::string id = body["id"];
  EXPECT_EQ(body["decision"], "accepted");
  ASSERT_EQ(body["reasons"].size(), 1U);
  EXPECT_EQ(body["reasons"][0]["code"], "WITHIN_SERVICE_AREA");
  EXPECT_EQ(r.headers.at("location"), "/api/v1/referrals/" + id);

  // The 202 means committed: another connection sees the referral at once.
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals WHERE id='" + id + "'"), 1);

  const auto got = daemon.get("/api/v1/referrals/" + id);
  ASSERT_EQ(got.status, 200) << got.body;
  const auto view = json::parse(got.body);
  EXPECT_EQ(view["decision"], "accepted");
  EXPECT_EQ(view["referral"]["patient"]["given_name"], "Ava");
  ASSERT_EQ(view["deliveries"].size(), 1U);  // routine: email only, no pager
  EXPECT_EQ(view["deliveries"][0]["target"], "office-email");

  // The spool target writes the delivery as a 0600 file.
  const auto file = daemon.spool("office-email") / (id + ".office-email.json");
  for (int i = 0; i < 200 && !fs::exists(file); ++i) std::this_thread::sleep_for(25ms);
  ASSERT_TRUE(fs::exists(file));
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600U);
  EXPECT_EQ(json::parse(read_file(file))["referral_id"], id);
  for (int i = 0; i < 200; ++i) {
    if (json::parse(daemon.get("/api/v1/referrals/" + id).body)["deliveries"][0]["state"] == "delivered") break;
    std::this_thread::sleep_for(25ms);
  }
  EXPECT_EQ(json::parse(daemon.get("/api/v1/referrals/" + id).body)["deliveries"][0]["state"], "delivered");
}

TEST_F(Api, UrgentReferralAlsoPagesTheOffice) {
  const auto r = daemon.post_referral(sample("asps-urgent.json"));
  ASSERT_EQ(r.status, 202) << r.body;
  const std::string id = json::parse(r.body)["id"];
  const auto view = json::parse(daemon.get("/api/v1/referrals/" + id).body);
  std::set<std::string> targets;
  for (const auto& d : view["deliveries"]) targets.insert(d["target"].get<std::string>());
  EXPECT_EQ(targets, (std::set<std::string>{"office-email", "office-pager"}));
}

TEST_F(Api, InvalidReferralIs422NamingTheField) {
  const auto r = daemon.post_referral(sample("invalid-npi.json"));
  ASSERT_EQ(r.status, 422) << r.body;
  const auto errors = json::parse(r.body)["errors"];
  ASSERT_EQ(errors.size(), 1U) << r.body;
  EXPECT_EQ(errors[0]["path"], "/referrer/npi");
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals"), 0);
}

TEST_F(Api, MalformedJsonIs400AndNothingIsStored) {
  for (const std::string& body :
       std::vector<std::string>{"{\"patient\": ", "not json", "{\"a\":1}}", "{\"x\":\"\xff\xfe\"}"}) {
    const auto r = daemon.post_referral(body);
    EXPECT_EQ(r.status, 400) << body << " -> " << r.body;
    EXPECT_FALSE(json::parse(r.body)["errors"][0]["message"].get<std::string>().empty());
  }
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals"), 0);
}

TEST_F(Api, WrongShapesAreRefusedWithTheirPaths) {
  EXPECT_EQ(daemon.post_referral("[1,2]").status, 422);
  EXPECT_EQ(daemon.post_referral("\"a referral\"").status, 422);
  std::string deep = std::string(100, '[') + std::string(100, ']');
  EXPECT_EQ(daemon.post_referral(deep).status, 400);
  auto doc = json::parse(sample("asps-routine.json"));
  doc["patient"]["shoe_size"] = 5;
  doc["urgency"] = 3;
  const auto r = daemon.post_referral(doc.dump());
  ASSERT_EQ(r.status, 422);
  std::set<std::string> paths;
  const auto errors = json::parse(r.body);
  for (const auto& e : errors["errors"]) paths.insert(e["path"].get<std::string>());
  EXPECT_TRUE(paths.count("/patient/shoe_size")) << r.body;
  EXPECT_TRUE(paths.count("/urgency")) << r.body;
  // Duplicate keys are ambiguous: refused, not silently resolved.
  const auto dup = daemon.post_referral(R"({"urgency":"routine","urgency":"emergent"})");
  EXPECT_EQ(dup.status, 422) << dup.body;
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals"), 0);
}

TEST_F(Api, AuthenticationIsRequired) {
  HttpRequest r;
  r.method = "POST";
  r.url = daemon.base_url() + "/api/v1/referrals";
  r.headers = {"Content-Type: application/json"};
  r.body = sample("asps-routine.json");
  auto res = http(r);
  EXPECT_EQ(res.status, 401);
  EXPECT_EQ(res.headers["www-authenticate"], "Bearer realm=\"referrald\"");
  r.headers.push_back("Authorization: Bearer wrong-token");
  EXPECT_EQ(http(r).status, 401);
  EXPECT_EQ(daemon.get("/api/v1/referrals/R-20261128-ABCDE-FGHJK", false).status, 401);
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals"), 0);
}

TEST_F(Api, ContentTypeMustBeJson) {
  const auto r = daemon.post_referral(sample("asps-routine.json"), {"Content-Type: text/plain"});
  EXPECT_EQ(r.status, 415);
  const auto ok = daemon.post_referral(sample("asps-routine.json"), {"Content-Type: application/json; charset=utf-8"});
  EXPECT_EQ(ok.status, 202) << ok.body;
  EXPECT_EQ(
      daemon.post_referral(sample("asps-routine.json"), {"Content-Type: Application/JSON;Charset=\"UTF-8\""}).status,
      202);
  // JSON is UTF-8: a body declared in another charset would be misread.
  for (const char* type : {"application/json; charset=iso-8859-1", "application/json; charset=utf-16",
                           "application/json; charset=", "application/json;charset=utf-8;charset=latin1"}) {
    const auto refused = daemon.post_referral(sample("asps-routine.json"), {std::string("Content-Type: ") + type});
    EXPECT_EQ(refused.status, 415) << type << " " << refused.body;
  }
  // Two Content-Types: which one is meant is anyone's guess.
  EXPECT_EQ(
      daemon.post_referral(sample("asps-routine.json"), {"Content-Type: application/json", "Content-Type: text/plain"})
          .status,
      400);
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals"), 2);
}

TEST_F(Api, BodyOverTheLimitIs413) {
  const std::string big(70000, ' ');
  const auto r = daemon.post_referral("{\"notes\":\"" + big + "\"}");
  EXPECT_EQ(r.status, 413);
  EXPECT_TRUE(daemon.running());
}

TEST_F(Api, UnknownReferralIs404AndOddPathsAreHarmless) {
  EXPECT_EQ(daemon.get("/api/v1/referrals/R-20261128-ABCDE-FGHJK").status, 404);
  EXPECT_EQ(daemon.get("/api/v1/referrals/../../etc/passwd").status, 404);
  EXPECT_EQ(daemon.get("/api/v1/referrals/%2e%2e%2fetc%2fpasswd").status, 404);
  EXPECT_EQ(daemon.get("/nope").status, 404);
  HttpRequest del;
  del.method = "DELETE";
  del.url = daemon.base_url() + "/api/v1/referrals";
  EXPECT_EQ(http(del).status, 405);
}

TEST_F(Api, IdempotencyKeyReplaysOrConflicts) {
  const auto body = sample("asps-routine.json");
  const auto first = daemon.post_referral(body, {"Idempotency-Key: ehr-4711"});
  ASSERT_EQ(first.status, 202) << first.body;
  auto again = daemon.post_referral(body, {"Idempotency-Key: ehr-4711"});
  ASSERT_EQ(again.status, 202) << again.body;
  EXPECT_EQ(again.body, first.body);
  EXPECT_EQ(again.headers["idempotent-replayed"], "true");
  auto changed = json::parse(body);
  changed["urgency"] = "urgent";
  EXPECT_EQ(daemon.post_referral(changed.dump(), {"Idempotency-Key: ehr-4711"}).status, 409);
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals"), 1);
  // Without a key, the same body is a new referral.
  EXPECT_EQ(daemon.post_referral(body).status, 202);
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals"), 2);
}

// The key is 1 to 200 bytes of UTF-8 text, sent once.
TEST_F(Api, IdempotencyKeysAreCheckedAsBytesOfUtf8) {
  const auto body = sample("asps-routine.json");
  const std::string message = "Idempotency-Key must be 1 to 200 bytes of UTF-8 text without control characters";
  // 100 two-byte letters are 200 bytes: the limit; one more byte is over it.
  std::string letters;
  for (int i = 0; i < 100; ++i) letters += "\u00e9";
  EXPECT_EQ(daemon.post_referral(body, {"Idempotency-Key: " + letters}).status, 202);
  const auto over = daemon.post_referral(body, {"Idempotency-Key: " + letters + "x"});
  EXPECT_EQ(over.status, 400) << over.body;
  EXPECT_NE(over.body.find(message), std::string::npos) << over.body;
  // Not UTF-8 (a Latin-1 byte), or a control character.
  EXPECT_EQ(daemon.post_referral(body, {"Idempotency-Key: caf\xe9"}).status, 400);
  EXPECT_EQ(daemon.post_referral(body, {"Idempotency-Key: a\tb"}).status, 400);
  // Twice: which one the client meant cannot be known.
  const auto twice = daemon.post_referral(body, {"Idempotency-Key: one", "Idempotency-Key: two"});
  EXPECT_EQ(twice.status, 400) << twice.body;
  EXPECT_NE(twice.body.find("more than one Idempotency-Key header"), std::string::npos) << twice.body;
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals"), 1);
}

TEST_F(Api, NamesAreStoredAndReturnedVerbatim) {
  auto doc = json::parse(sample("asps-routine.json"));
  const std::string sql = "Robert'); DROP TABLE referrals;--";
  const std::string emoji = "Zoë 🌟 Nguyễn";
  doc["patient"]["given_name"] = emoji;
  doc["patient"]["family_name"] = sql;
  const auto r = daemon.post_referral(doc.dump());
  ASSERT_EQ(r.status, 202) << r.body;
  const auto view = json::parse(daemon.get("/api/v1/referrals/" + json::parse(r.body)["id"].get<std::string>()).body);
  EXPECT_EQ(view["referral"]["patient"]["given_name"], emoji);
  EXPECT_EQ(view["referral"]["patient"]["family_name"], sql);
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals"), 1);
}

TEST_F(Api, HealthAndMetricsAnswer) {
  const auto h = daemon.get("/healthz", false);
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(json::parse(h.body)["status"], "ok");
  ASSERT_EQ(daemon.post_referral(sample("asps-routine.json")).status, 202);
  const auto m = daemon.get("/metrics", false);
  EXPECT_EQ(m.status, 200);
  EXPECT_NE(m.body.find("referrald_intake_total{channel=\"api\",decision=\"accepted\"} 1\n"), std::string::npos)
      << m.body;
  EXPECT_NE(m.body.find("referrald_intake_total{channel=\"form\",decision=\"accepted\"} 0\n"), std::string::npos)
      << m.body;
  // A replay stores nothing new and counts nothing.
  ASSERT_EQ(daemon.post_referral(sample("asps-routine.json"), {"Idempotency-Key: k1"}).status, 202);
  ASSERT_EQ(daemon.post_referral(sample("asps-routine.json"), {"Idempotency-Key: k1"}).status, 202);
  EXPECT_NE(
      daemon.get("/metrics", false).body.find("referrald_intake_total{channel=\"api\",decision=\"accepted\"} 2\n"),
      std::string::npos);
  EXPECT_NE(m.body.find("referrald_store_readable 1"), std::string::npos) << m.body;
  EXPECT_NE(m.body.find("referrald_oldest_due_delivery_age_seconds "), std::string::npos) << m.body;
  EXPECT_NE(m.body.find("referrald_http_responses_total{code=\"202\"} 1"), std::string::npos) << m.body;
}

// Where a referral's time went, by stage: each stored referral is counted
// once in each of the intake's stages, and its write in each of the
// store's (with the dispatcher's writes beside it there).
TEST_F(Api, MetricsSplitAReferralsTimeByStage) {
  ASSERT_EQ(daemon.post_referral(sample("asps-routine.json")).status, 202);
  ASSERT_EQ(daemon.post_referral(sample("asps-urgent.json")).status, 202);
  ASSERT_EQ(daemon.post_referral("{}").status, 422);  // answered without the store: in no stage
  const std::string m = daemon.get("/metrics", false).body;
  for (const char* stage : {"check", "resume"}) {
    const std::string series = std::string("referrald_intake_stage_seconds_count{stage=\"") + stage + "\"}";
    EXPECT_EQ(metric(m, series), 2) << series << "\n" << m;
    EXPECT_EQ(metric(m, std::string("referrald_intake_stage_seconds_bucket{stage=\"") + stage + "\",le=\"+Inf\"}"), 2);
    EXPECT_GT(metric(m, std::string("referrald_intake_stage_seconds_sum{stage=\"") + stage + "\"}"), 0) << m;
  }
  for (const char* stage : {"queued", "commit", "sync"}) {
    const std::string series = std::string("referrald_store_write_seconds_count{stage=\"") + stage + "\"}";
    EXPECT_GE(metric(m, series), 2) << series << "\n" << m;
    // The buckets only grow, up to the count.
    double previous = 0;
    for (const char* le : {"5e-05", "0.001", "0.01", "1", "10", "+Inf"}) {
      const double at =
          metric(m, std::string("referrald_store_write_seconds_bucket{stage=\"") + stage + "\",le=\"" + le + "\"}");
      EXPECT_GE(at, previous) << stage << " le=" << le << "\n" << m;
      previous = at;
    }
    EXPECT_EQ(previous, metric(m, series)) << m;
  }
}

TEST_F(Api, LogsNameReferralsByIdNeverByPatient) {
  auto doc = json::parse(sample("asps-routine.json"));
  doc["patient"]["given_name"] = "Quintessa";
  doc["patient"]["family_name"] = "Vanderbilt-Oyelaran";
  doc["patient"]["birth_date"] = "2013-05-17";
  const auto r = daemon.post_referral(doc.dump());
  ASSERT_EQ(r.status, 202);
  const std::string id = json::parse(r.body)["id"];
  daemon.post_referral(doc.dump().substr(0, 80));  // a malformed body must not be echoed either
  doc["referrer"]["npi"] = "1234567890";
  daemon.post_referral(doc.dump());
  daemon.stop();
  const auto log = daemon.log();
  EXPECT_NE(log.find(id), std::string::npos);
  for (const char* phi : {"Quintessa", "Vanderbilt", "Oyelaran", "2013-05-17", "Linh", "thigh"}) {
    EXPECT_EQ(log.find(phi), std::string::npos) << phi << " appears in the log:\n" << log;
  }
}

TEST(ApiLimits, RateLimitAnswers429WithRetryAfter) {
  Daemon daemon{with_http("rate_limit_per_minute = 60\nrate_limit_burst = 3\n")};
  daemon.start();
  int limited = 0;
  std::string retry_after;
  for (int i = 0; i < 6; ++i) {
    auto r = daemon.post_referral(sample("asps-routine.json"));
    if (r.status == 429) {
      ++limited;
      retry_after = r.headers["retry-after"];
    }
  }
  EXPECT_GE(limited, 2);
  EXPECT_FALSE(retry_after.empty());
  EXPECT_EQ(daemon.get("/healthz", false).status, 200);  // health checks are not rate limited
}

TEST(ApiDurability, EveryAcknowledgedReferralSurvivesKillNine) {
  Daemon daemon{Daemon::Options{}};
  daemon.start();
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    const auto r = daemon.post_referral(sample("asps-routine.json"));
    ASSERT_EQ(r.status, 202);
    ids.push_back(json::parse(r.body)["id"]);
  }
  daemon.kill9();
  daemon.start();
  for (const auto& id : ids) {
    EXPECT_EQ(daemon.get("/api/v1/referrals/" + id).status, 200) << id;
  }
  EXPECT_EQ(daemon.stop(), 0);
}

TEST(ApiConcurrency, ConcurrentSubmissionsAreAllCommitted) {
  Daemon daemon{with_http("rate_limit_per_minute = 0\n")};
  daemon.start();
  constexpr int threads = 16, per_thread = 25;
  std::atomic<int> accepted{0};
  std::mutex ids_mutex;
  std::set<std::string> ids;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) {
        const auto r = daemon.post_referral(sample("asps-urgent.json"));
        if (r.status == 202) {
          ++accepted;
          std::lock_guard lock(ids_mutex);
          ids.insert(json::parse(r.body)["id"].get<std::string>());
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  EXPECT_EQ(accepted.load(), threads * per_thread);
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(threads * per_thread));
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals"), threads * per_thread);
  // Two deliveries each (email + pager), planned in the same transaction.
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM deliveries"), 2 * threads * per_thread);
  EXPECT_EQ(daemon.stop(), 0);
}

TEST(ApiTls, ServesHttpsWithTheConfiguredCertificate) {
  Daemon::Options tls;
  tls.tls = true;
  Daemon daemon{tls};
  daemon.start();
  auto r = daemon.post_referral(sample("asps-routine.json"));
  ASSERT_EQ(r.status, 202) << r.error << r.body;
  EXPECT_EQ(r.headers["strict-transport-security"], "max-age=31536000");
  // Plain HTTP on the TLS port gets no referral in.
  HttpRequest plain;
  plain.method = "POST";
  plain.url = "http://127.0.0.1:" + std::to_string(daemon.port()) + "/api/v1/referrals";
  plain.body = sample("asps-routine.json");
  plain.headers = {"Authorization: Bearer " + std::string(Daemon::api_token), "Content-Type: application/json"};
  plain.timeout = 3s;
  EXPECT_NE(http(plain).status, 202);
  // TLS 1.1 and older are refused.
  EXPECT_NE(
      shell("echo | openssl s_client -connect 127.0.0.1:" + std::to_string(daemon.port()) + " -tls1_1 >/dev/null 2>&1"),
      0);
  const auto tls12_with = [&](const std::string& suites) {
    return shell("echo | openssl s_client -connect 127.0.0.1:" + std::to_string(daemon.port()) + " -tls1_2 -cipher '" +
                 suites + "' -CAfile " + daemon.ca_file().string() + " -verify_return_error >/dev/null 2>&1");
  };
  EXPECT_EQ(tls12_with("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256"), 0);
  // TLS 1.2 offers nothing but forward-secret AEAD suites: CBC, static RSA
  // key exchange and SHA-1 MACs are refused even when the client asks only for them.
  EXPECT_NE(tls12_with("ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES256-SHA384"), 0);
  EXPECT_NE(tls12_with("AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA"), 0);
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals"), 1);
}

TEST(ApiStorage, DatabaseFileIsPrivate) {
  Daemon daemon{Daemon::Options{}};
  daemon.start();
  ASSERT_EQ(daemon.post_referral(sample("asps-routine.json")).status, 202);
  for (const char* suffix : {"", "-wal"}) {
    struct stat st {};
    const auto f = daemon.database().string() + suffix;
    ASSERT_EQ(::stat(f.c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 0777, 0600U) << f;
  }
}

}  // namespace
}  // namespace referrald::test

namespace referrald::test {
namespace {

// An idle daemon stays idle: the dispatcher's poll is its only store work
// (about one commit a second), never a wake-up loop on its own commits.
TEST(ApiIdle, AnIdleDaemonCommitsAboutOncePerSecond) {
  Daemon daemon{Daemon::Options{}};
  daemon.start();
  ASSERT_EQ(daemon.post_referral(sample("asps-routine.json")).status, 202);
  auto commits = [&] { return metric(daemon.get("/metrics", false).body, "referrald_store_commits_total"); };
  std::this_thread::sleep_for(500ms);  // the referral's delivery goes out
  const auto before = commits();
  std::this_thread::sleep_for(2s);
  const auto after = commits();
  ASSERT_GE(before, 0);
  EXPECT_LE(after - before, 10) << "commits while idle: " << (after - before);
}

}  // namespace
}  // namespace referrald::test

namespace referrald::test {
namespace {

// Headers over http.max_header_bytes (8 KiB by default) are refused with 431
// before any body is read, and the daemon keeps serving.
TEST(ApiLimits, OversizedHeadersAre431) {
  Daemon daemon{Daemon::Options{}};
  daemon.start();
  HttpRequest r;
  r.url = daemon.base_url() + "/healthz";
  r.headers = {"X-Padding: " + std::string(10000, 'a')};
  EXPECT_EQ(http(r).status, 431);
  EXPECT_EQ(daemon.get("/healthz", false).status, 200);
}

}  // namespace
}  // namespace referrald::test
