// The web form: its templates checked at start, then the real referrald
// binary driven by a real HTTP client (libcurl) the way a browser would:
// CSRF, the 422 page, escaping of what comes back, security headers, static
// files, double submits and the rate limit. The decoder, escaping and field
// mapping as plain functions: tests/unit/form_fields_test.cpp.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <algorithm>
#include <functional>
#include <regex>
#include <set>
#include <thread>

#include "http/form.hpp"
#include "intake/submission.hpp"
#include "intake/validator.hpp"
#include "store/writer.hpp"
#include "support/harness.hpp"
#include "support/peers.hpp"
#include "util/clock.hpp"

namespace referrald::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

// A web directory whose form.html has been changed by `edit`: the message
// the Form refuses to start with, or "" when it starts.
std::string start_error(const std::function<void(std::string&)>& edit) {
  TempDir dir;
  fs::copy(source_dir() / "web", dir / "web");
  auto page = read_file(dir / "web" / "form.html");
  edit(page);
  write_file(dir / "web" / "form.html", page);

  ReferralValidator validator(source_dir() / "schemas" / "referral.v1.schema.json");
  store::Writer writer(dir / "db.sqlite", {});
  store::ReaderPool readers(dir / "db.sqlite", 1);
  SystemClock clock;
  IntakeService intake(validator, writer, clock, std::make_shared<IntakePolicy>());
  http::StatusChanges status_changes(writer, clock);
  std::string error;
  try {
    http::Form form(dir / "web", OfficeConfig{}, intake, readers, status_changes);
  } catch (const std::runtime_error& e) {
    error = e.what();
    const auto prefix = (dir / "web").string() + "/";
    if (error.starts_with(prefix)) error.erase(0, prefix.size());
  }
  readers.stop();
  writer.stop();
  return error;
}

void replace(std::string& text, const std::string& from, const std::string& to) {
  const auto at = text.find(from);
  ASSERT_NE(at, std::string::npos) << from;
  text.replace(at, from.size(), to);
}

// A form template that does not fit the code fails at start, naming the file,
// rather than rendering a hole or dropping a value.
TEST(FormTemplates, ATemplateThatDoesNotFitTheCodeFailsAtStart) {
  EXPECT_EQ(start_error([](std::string&) {}), "");
  EXPECT_EQ(start_error([](std::string& p) { replace(p, "{{v:referrer.npi}}", "{{v:referrer.nip}}"); }),
            "form.html: unknown placeholder {{v:referrer.nip}}");
  EXPECT_EQ(start_error([](std::string& p) { replace(p, R"(name="referrer.npi")", R"(name="referrer.nip")"); }),
            R"(form.html: no input named "referrer.npi")");
  EXPECT_EQ(start_error([](std::string& p) {
              replace(p, "<textarea ", R"(<input type="text" name="patient.ssn"><textarea )");
            }),
            R"(form.html: <input name="patient.ssn"> is not a field of the referral)");
  const auto unterminated = start_error([](std::string& p) { replace(p, "{{summary}}", "{{summary"); });
  EXPECT_TRUE(unterminated.starts_with(R"(form.html: unterminated "{{" at byte )")) << unterminated;
}

// ---------------------------------------------------------------------------
// The real daemon

// --check-config runs the same check of the web pages as start-up.
TEST(FormTemplates, CheckConfigReportsABrokenPage) {
  Daemon daemon(Daemon::Options{});
  const auto web = daemon.dir() / "web";
  fs::copy(source_dir() / "web", web);
  auto page = read_file(web / "form.html");
  page.replace(page.find("{{summary}}"), 11, "{{sumary}}");
  write_file(web / "form.html", page);
  auto config = read_file(daemon.config_file());
  const auto source_web = "web = \"" + (source_dir() / "web").string() + "\"";
  ASSERT_NE(config.find(source_web), std::string::npos);
  config.replace(config.find(source_web), source_web.size(), "web = \"" + web.string() + "\"");
  write_file(daemon.config_file(), config);
  const auto out = daemon.dir() / "check.out";
  const auto check = "'" + referrald_binary().string() + "' --check-config --config '" + daemon.config_file().string() +
                     "' > '" + out.string() + "' 2>&1";
  EXPECT_EQ(shell(check), 1);
  EXPECT_EQ(read_file(out),
            daemon.config_file().string() + ": " + (web / "form.html").string() + ": unknown placeholder {{sumary}}\n");
}

class Form : public ::testing::Test {
 protected:
  void SetUp() override { daemon.start(); }
  long long referrals() { return count_rows(daemon.database(), "SELECT count(*) FROM referrals"); }
  Daemon daemon{Daemon::Options{}};
};

constexpr const char* expected_csp =
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'";

TEST_F(Form, ServesTheFormWithSecurityHeadersAndACsrfCookie) {
  Browser b{daemon};
  const auto r = b.open_form();
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers.at("content-type"), "text/html; charset=utf-8");
  EXPECT_EQ(r.headers.at("content-security-policy"), expected_csp);
  EXPECT_EQ(r.headers.at("x-content-type-options"), "nosniff");
  EXPECT_EQ(r.headers.at("x-frame-options"), "DENY");
  EXPECT_EQ(r.headers.at("referrer-policy"), "same-origin");
  // Plain HTTP: no __Host- prefix and no Secure (the browser would drop it).
  const std::regex cookie_re("csrf=[0-9a-f]{112}; Path=/; HttpOnly; SameSite=Strict");
  EXPECT_TRUE(std::regex_match(r.headers.at("set-cookie"), cookie_re)) << r.headers.at("set-cookie");
  EXPECT_EQ(b.cookie, "csrf=" + b.csrf);
  EXPECT_EQ(b.submission.size(), 64U);
  // No inline script or style: the CSP would block it.
  EXPECT_EQ(r.body.find("<script>"), std::string::npos);
  EXPECT_EQ(r.body.find("style="), std::string::npos);
  EXPECT_EQ(r.body.find("http://"), std::string::npos);
  EXPECT_EQ(r.body.find("https://"), std::string::npos);
  // The office's contacts from the configuration.
  EXPECT_NE(r.body.find("1-888-226-4343"), std::string::npos);
  EXPECT_NE(r.body.find("901-595-4011"), std::string::npos);
  EXPECT_NE(r.body.find("1-800-349-4334"), std::string::npos);

  // The same browser keeps its token (two tabs must both work); each render
  // has a submission token of its own.
  const auto first_submission = b.submission;
  const auto again = b.open_form();
  EXPECT_EQ(again.headers.count("set-cookie"), 0U);
  EXPECT_EQ(hidden_value(again.body, "csrf_token"), b.cookie.substr(5));
  EXPECT_NE(b.submission, first_submission);
}

TEST_F(Form, EveryInputHasALabelAndFieldNamesMirrorTheJsonPaths) {
  Browser b{daemon};
  const auto page = b.open_form().body;
  const std::regex input_re(R"re(<(input|select|textarea) id="([^"]+)" (?:type="([^"]+)" )?name="([^"]+)")re");
  std::set<std::string> names;
  int inputs = 0;
  for (auto it = std::sregex_iterator(page.begin(), page.end(), input_re); it != std::sregex_iterator(); ++it) {
    ++inputs;
    const std::string id = (*it)[2];
    const std::string type = (*it)[3];
    names.insert((*it)[4]);
    if (type == "radio") {
      // Radios are wrapped in their label or labelled by for=.
      EXPECT_TRUE(page.find("<label><input id=\"" + id + "\"") != std::string::npos ||
                  page.find("<label for=\"" + id + "\"") != std::string::npos)
          << id;
    } else {
      EXPECT_NE(page.find("<label for=\"" + id + "\""), std::string::npos) << id;
    }
  }
  EXPECT_GE(inputs, 22);
  for (const char* n :
       {"patient.given_name", "patient.birth_date", "patient.guardian.phone", "diagnosis.name", "diagnosis.code.system",
        "diagnosis.pathology_confirmed", "referrer.npi", "referrer.email", "urgency", "notes"}) {
    EXPECT_EQ(names.count(n), 1U) << n;
  }
  EXPECT_NE(page.find(R"(id="patient-birth_date" name="patient.birth_date" type="date")"), std::string::npos);
  EXPECT_NE(page.find(R"(name="referrer.email" type="email" autocomplete="work email")"), std::string::npos);
  EXPECT_NE(page.find(R"(name="referrer.phone" type="tel" autocomplete="work tel")"), std::string::npos);
}

TEST_F(Form, AValidReferralRedirectsToItsConfirmationAndIsStored) {
  Browser b{daemon};
  b.open_form();
  const auto r = b.post(valid_fields(), {"Origin: " + daemon.base_url(), "Sec-Fetch-Site: same-origin"});
  ASSERT_EQ(r.status, 303) << r.body;
  const std::string location = r.headers.at("location");
  const std::regex location_re("/referrals/R-[0-9]{8}-[0-9A-Z]{5}-[0-9A-Z]{5}");
  ASSERT_TRUE(std::regex_match(location, location_re)) << location;
  const std::string id = location.substr(11);

  // Committed before the answer: another connection sees it at once.
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals WHERE id='" + id + "' AND channel='form'"),
            1);
  const auto document = daemon.stored_document(id);
  EXPECT_EQ(document["patient"]["guardian"]["relationship"], "mother") << document;
  EXPECT_EQ(document["diagnosis"]["pathology_confirmed"], true) << document;
  EXPECT_FALSE(document["referrer"].contains("fax")) << document;

  const auto page = b.get(location);
  ASSERT_EQ(page.status, 200) << page.body;
  EXPECT_EQ(page.headers.at("content-security-policy"), expected_csp);
  EXPECT_NE(page.body.find(id), std::string::npos);
  // Jonesboro is within the service area: accepted.
  EXPECT_NE(page.body.find("The referral office will contact you."), std::string::npos);
  EXPECT_NE(page.body.find("1-888-226-4343"), std::string::npos);
  EXPECT_NE(page.body.find("901-595-4011"), std::string::npos);
  EXPECT_NE(page.body.find("1-800-349-4334"), std::string::npos);
  EXPECT_EQ(page.body.find("Call the 24-hour line now"), std::string::npos);
  // No patient data on the confirmation.
  for (const char* phi : {"Ava", "Nguyen", "2014-03-09", "Linh", "72401"}) {
    EXPECT_EQ(page.body.find(phi), std::string::npos) << phi;
  }
}

TEST_F(Form, APostWithoutAValidCsrfTokenIsRefused) {
  Browser b{daemon};
  b.open_form();

  Browser stranger{daemon};  // no cookie at all, but the page's field
  stranger.csrf = b.csrf;
  stranger.submission = b.submission;
  auto r = stranger.post(valid_fields());
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.headers.at("content-security-policy"), expected_csp);
  EXPECT_NE(r.body.find("Nothing was stored"), std::string::npos);

  // Cookie but no field.
  r = b.post_raw(encode(valid_fields()) + "&submission_token=" + b.submission);
  EXPECT_EQ(r.status, 403);

  // Cookie and a different field.
  Browser other{daemon};
  other.open_form();
  auto swapped = b;
  swapped.csrf = other.csrf;
  EXPECT_EQ(swapped.post(valid_fields()).status, 403);

  // The right token, but the browser says the request came from another site.
  EXPECT_EQ(b.post(valid_fields(), {"Sec-Fetch-Site: cross-site"}).status, 403);
  EXPECT_EQ(b.post(valid_fields(), {"Origin: http://evil.example"}).status, 403);

  // Two csrf cookies (one tossed in from elsewhere) are refused too.
  auto tossed = b;
  tossed.cookie += "; csrf=" + other.csrf;
  EXPECT_EQ(tossed.post(valid_fields()).status, 403);

  // A cookie and a field an attacker sets to the same value of their choosing
  // (the double-submit check alone let these through): the server did not sign them.
  for (const std::string& chosen :
       {std::string(64, 'a'), std::string(112, 'a'), b.csrf.substr(0, 48) + std::string(64, '0')}) {
    Browser attacker{daemon};
    attacker.cookie = "csrf=" + chosen;
    attacker.csrf = chosen;
    attacker.submission = b.submission;
    EXPECT_EQ(attacker.post(valid_fields()).status, 403) << chosen;
  }

  // "Origin: null" (a sandboxed frame, a data: URL) is another origin.
  EXPECT_EQ(b.post(valid_fields(), {"Origin: null"}).status, 403);
  EXPECT_EQ(b.post(valid_fields(), {"Origin: " + daemon.base_url(), "Origin: http://evil.example"}).status, 403);

  EXPECT_EQ(referrals(), 0);
  // And the genuine one still works.
  EXPECT_EQ(b.post(valid_fields()).status, 303);
  EXPECT_EQ(referrals(), 1);
}

TEST_F(Form, InvalidInputShowsTheFormAgainWithEveryValueKeptAndEscaped) {
  Browser b{daemon};
  b.open_form();
  auto fields = valid_fields();
  set_field(fields, "patient.given_name", "<script>alert(1)</script>");
  set_field(fields, "patient.family_name", "O'Brien \"Jr\" & Łucja");
  set_field(fields, "referrer.npi", "1234567890");        // bad check digit
  set_field(fields, "patient.birth_date", "2999-01-01");  // in the future
  set_field(fields, "referrer.email", "");                // required
  set_field(fields, "notes", "\nline one\r\nline </textarea> two");
  const auto r = b.post(fields);
  ASSERT_EQ(r.status, 422) << r.body;
  const auto& page = r.body;
  EXPECT_EQ(r.headers.at("content-security-policy"), expected_csp);
  EXPECT_NE(page.find("<title>Error: "), std::string::npos);

  // Escaped, never executed.
  EXPECT_EQ(page.find("<script>alert(1)"), std::string::npos);
  EXPECT_NE(page.find(R"(value="&lt;script&gt;alert(1)&lt;/script&gt;")"), std::string::npos);
  EXPECT_NE(page.find(R"(value="O&#39;Brien &quot;Jr&quot; &amp; Łucja")"), std::string::npos);
  EXPECT_EQ(page.find("line </textarea> two"), std::string::npos);
  EXPECT_NE(page.find("\n\nline one\nline &lt;/textarea&gt; two</textarea>"), std::string::npos);

  // The API's messages, with the field's name, in the summary and by the field.
  const auto api = daemon.post_referral(http::form_to_json([&] {
    std::map<std::string, std::string> m(fields.begin(), fields.end());
    return m;
  }()));
  ASSERT_EQ(api.status, 422) << api.body;
  const auto errors = json::parse(api.body)["errors"];
  ASSERT_EQ(errors.size(), 3U) << api.body;
  for (const auto& e : errors) {
    const std::string message = e["message"];
    EXPECT_NE(page.find(message), std::string::npos) << message;
  }
  EXPECT_NE(page.find(R"(<a href="#referrer-npi">NPI is not a valid NPI: check digit does not match.</a>)"),
            std::string::npos);
  EXPECT_NE(page.find(R"(<a href="#patient-birth_date">Patient&#39;s date of birth must not be in the future.</a>)"),
            std::string::npos);
  EXPECT_NE(page.find(R"(<a href="#referrer-email">Email address is required.</a>)"), std::string::npos);
  // In the order of the form (the API sorts by path: email before npi).
  EXPECT_LT(page.find(R"(<a href="#patient-birth_date">)"), page.find(R"(<a href="#referrer-npi">)"));
  EXPECT_LT(page.find(R"(<a href="#referrer-npi">)"), page.find(R"(<a href="#referrer-email">)"));
  EXPECT_NE(
      page.find(
          R"(<p class="field-message" id="referrer-npi-error"><span class="visually-hidden">Error: </span>NPI is not a valid NPI: check digit does not match.</p>)"),
      std::string::npos);
  EXPECT_NE(
      page.find(
          R"(id="referrer-npi" name="referrer.npi" type="text" class="w-npi" inputmode="numeric" autocomplete="off" spellcheck="false" required value="1234567890" aria-invalid="true" aria-describedby="referrer-npi-hint referrer-npi-error")"),
      std::string::npos);

  // Every other value is kept: text, radios, selects, the checkbox.
  for (const char* kept :
       {R"(value="Delta Pediatrics")", R"(value="2999-01-01")", R"(value="Linh Nguyen")",
        R"(value="female" required checked)", R"(value="routine" required checked)", R"(value="icd-o-3" selected)",
        R"(value="MD" selected)", R"(value="yes" checked)", R"(value="9581/3")", R"(value="72401")"}) {
    EXPECT_NE(page.find(kept), std::string::npos) << kept;
  }
  // The same tokens go back, so fixing and sending is still one referral.
  EXPECT_EQ(hidden_value(page, "csrf_token"), b.csrf);
  EXPECT_EQ(hidden_value(page, "submission_token"), b.submission);
  EXPECT_EQ(referrals(), 0);

  set_field(fields, "referrer.npi", "1234567893");
  set_field(fields, "patient.birth_date", "2014-03-09");
  set_field(fields, "referrer.email", "dwhitfield@example.org");
  const auto sent = b.post(fields);
  ASSERT_EQ(sent.status, 303);
  EXPECT_EQ(referrals(), 1);
  const std::string location = sent.headers.at("location");
  EXPECT_EQ(daemon.stored_document(location.substr(location.rfind('/') + 1))["patient"]["given_name"],
            "<script>alert(1)</script>");
}

TEST_F(Form, TheSameFormSentTwiceStoresOneReferral) {
  Browser b{daemon};
  b.open_form();
  // A double click: both requests at once.
  HttpResult first, second;
  std::thread t1([&] { first = Browser(b).post(valid_fields()); });
  std::thread t2([&] { second = Browser(b).post(valid_fields()); });
  t1.join();
  t2.join();
  ASSERT_EQ(first.status, 303) << first.body;
  ASSERT_EQ(second.status, 303) << second.body;
  EXPECT_EQ(first.headers.at("location"), second.headers.at("location"));
  // A reload of the POST, or back and send again.
  const auto third = b.post(valid_fields());
  EXPECT_EQ(third.headers.at("location"), first.headers.at("location"));
  EXPECT_EQ(referrals(), 1);
  EXPECT_EQ(b.get(first.headers.at("location")).status, 200);

  // A new form is a new referral.
  b.open_form();
  EXPECT_NE(b.post(valid_fields()).headers.at("location"), first.headers.at("location"));
  EXPECT_EQ(referrals(), 2);
}

TEST_F(Form, ChangingASentFormAndSendingItAgainStoresNothingNew) {
  Browser b{daemon};
  b.open_form();
  const auto first = b.post(valid_fields());
  ASSERT_EQ(first.status, 303);
  const std::string id = first.headers.at("location").substr(11);
  auto changed = valid_fields();
  set_field(changed, "notes", "Also: MRI from last week.");
  const auto r = b.post(changed);
  EXPECT_EQ(r.status, 409);
  EXPECT_NE(r.body.find("This form was already sent"), std::string::npos);
  EXPECT_NE(r.body.find(id), std::string::npos);
  EXPECT_NE(r.body.find("1-888-226-4343"), std::string::npos);
  EXPECT_EQ(referrals(), 1);
}

TEST_F(Form, AConfirmationIsShownOnlyToTheBrowserThatSentIt) {
  Browser b{daemon};
  b.open_form();
  const std::string location = b.post(valid_fields()).headers.at("location");
  ASSERT_EQ(b.get(location).status, 200);

  Browser other{daemon};
  other.open_form();
  const auto r = other.get(location);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.body.find(location.substr(11)), std::string::npos);
  EXPECT_EQ(Browser{daemon}.get(location).status, 404);                 // no cookie
  EXPECT_EQ(b.get("/referrals/R-20260101-AAAAA-AAAAA").status, 404);    // no such referral
  EXPECT_EQ(b.get("/referrals/..%2F..%2Freferrald.toml").status, 404);  // not an id

  // A referral sent through the API is not a form's to show.
  const auto api = daemon.post_referral(sample("asps-routine.json"));
  ASSERT_EQ(api.status, 202);
  EXPECT_EQ(b.get("/referrals/" + json::parse(api.body)["id"].get<std::string>()).status, 404);
}

TEST_F(Form, AnEmergentReferralsConfirmationSaysToCallTheTwentyFourHourLineNow) {
  Browser b{daemon};
  b.open_form();
  auto fields = valid_fields();
  set_field(fields, "urgency", "emergent");
  const auto page = b.get(b.post(fields).headers.at("location"));
  ASSERT_EQ(page.status, 200);
  EXPECT_NE(page.body.find("Emergent: call the 24-hour line now"), std::string::npos);
  EXPECT_NE(page.body.find(R"(<a href="tel:18003494334">1-800-349-4334</a>)"), std::string::npos);
}

TEST_F(Form, ADeclinedReferralsConfirmationSaysWhyAndWhomToCall) {
  Browser b{daemon};
  b.open_form();
  auto fields = valid_fields();
  set_field(fields, "referrer.credential", "RN");  // not a qualified referrer in rules.toml
  const auto page = b.get(b.post(fields).headers.at("location"));
  ASSERT_EQ(page.status, 200);
  EXPECT_NE(page.body.find("The hospital cannot accept this referral."), std::string::npos);
  EXPECT_NE(page.body.find("The referrer&#39;s credential (RN) is not one of those"), std::string::npos);
  EXPECT_NE(page.body.find("call the referral office at <a href=\"tel:18882264343\">1-888-226-4343</a>"),
            std::string::npos);
  EXPECT_EQ(page.body.find("Emergent"), std::string::npos);
}

TEST_F(Form, AReviewReferralsConfirmationSaysAPersonWillCall) {
  Browser b{daemon};
  b.open_form();
  auto fields = valid_fields();
  set_field(fields, "patient.postal_code", "77030");  // Houston: outside the service area, ASPS has no trial
  const auto page = b.get(b.post(fields).headers.at("location"));
  ASSERT_EQ(page.status, 200);
  EXPECT_NE(page.body.find("A member of the referral office will review it and call you."), std::string::npos);
  EXPECT_NE(page.body.find("no open clinical trials at this time"), std::string::npos);
}

TEST_F(Form, StaticFilesComeFromAFixedList) {
  Browser b{daemon};
  auto css = b.get("/static/style.css");
  ASSERT_EQ(css.status, 200);
  EXPECT_EQ(css.headers.at("content-type"), "text/css; charset=utf-8");
  EXPECT_EQ(css.headers.at("x-content-type-options"), "nosniff");
  EXPECT_EQ(css.body, read_file(source_dir() / "web" / "style.css"));
  const auto js = b.get("/static/form.js");
  ASSERT_EQ(js.status, 200);
  EXPECT_EQ(js.headers.at("content-type"), "text/javascript; charset=utf-8");
  EXPECT_EQ(b.get("/static/favicon.svg").headers.at("content-type"), "image/svg+xml");

  // Revalidation by ETag.
  HttpRequest again;
  again.url = daemon.base_url() + "/static/style.css";
  again.headers = {"If-None-Match: " + css.headers.at("etag")};
  EXPECT_EQ(http(again).status, 304);

  for (const char* path : {"/static/../referrald.toml", "/static/%2e%2e/referrald.toml", "/static/..%2Freferrald.toml",
                           "/static/", "/static/README.md", "/static/form.html", "/static/style.css/",
                           "/static//etc/passwd", "/web/style.css", "/referrald.toml", "/form.html"}) {
    const auto r = b.get(path);
    EXPECT_EQ(r.status, 404) << path;
    EXPECT_EQ(r.body.find("[http]"), std::string::npos) << path;
  }
  // Paths under /api/ the API does not serve stay JSON.
  const auto api = b.get("/api/v1/nothing");
  EXPECT_EQ(api.status, 404);
  EXPECT_EQ(api.headers.at("content-type"), "application/json");
}

TEST_F(Form, ABodyThatIsNotAFormIsRefused) {
  Browser b{daemon};
  b.open_form();
  const std::string tokens = "csrf_token=" + b.csrf + "&submission_token=" + b.submission;
  auto r = b.post_raw(tokens + "&patient.given_name=%C3%28");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("Nothing was stored"), std::string::npos);
  EXPECT_EQ(b.post_raw(tokens + "&patient.given_name=%zz").status, 400);
  EXPECT_EQ(b.post_raw(tokens + "&patient.evil=1").status, 400);                             // not a field
  EXPECT_EQ(b.post_raw(tokens + "&urgency=routine&urgency=emergent").status, 400);           // twice
  EXPECT_EQ(b.post_raw("csrf_token=" + b.csrf + "&" + encode(valid_fields())).status, 400);  // no submission token
  EXPECT_EQ(b.post_raw(tokens, {}, "application/json").status, 415);
  EXPECT_EQ(referrals(), 0);
}

TEST_F(Form, OtherMethodsAndPagesAreAnsweredPlainly) {
  Browser b{daemon};
  HttpRequest put;
  put.method = "PUT";
  put.url = daemon.base_url() + "/";
  const auto r = http(put);
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.headers.at("allow"), "GET, HEAD");
  const auto get_referrals = b.get("/referrals");
  EXPECT_EQ(get_referrals.status, 303);
  EXPECT_EQ(get_referrals.headers.at("location"), "/");
  const auto missing = b.get("/no-such-page");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.headers.at("content-type"), "text/html; charset=utf-8");
}

TEST_F(Form, MetricsCountFormOutcomes) {
  Browser b{daemon};
  b.open_form();
  b.post(valid_fields());
  b.post(valid_fields());
  Browser{daemon}.post(valid_fields());
  const auto m = b.get("/metrics").body;
  EXPECT_NE(m.find("referrald_form_submissions_total{outcome=\"stored\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("referrald_form_submissions_total{outcome=\"replayed\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("referrald_form_submissions_total{outcome=\"csrf_refused\"} 1"), std::string::npos) << m;
}

// The server's per-address rate limit covers the form like everything else.
// The elements of an HTML page as Python's html.parser reads it (as a
// browser tokenises): tag, attributes (entities decoded), and the text of
// each textarea.
json elements_of(const std::string& page) {
  TempDir dir;
  write_file(dir / "page.html", page);
  write_file(dir / "dom.py", R"PY(
import html.parser, json, sys
class P(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out = []
        self.textarea = None
    def handle_starttag(self, tag, attrs):
        self.out.append({'tag': tag, 'attrs': {k: (v if v is not None else '') for k, v in attrs}})
        if tag == 'textarea':
            self.textarea = self.out[-1]
            self.textarea['text'] = ''
    def handle_endtag(self, tag):
        if tag == 'textarea' and self.textarea is not None:
            # As browsers do (HTML spec): a line break right after <textarea> is dropped.
            if self.textarea['text'].startswith('\n'):
                self.textarea['text'] = self.textarea['text'][1:]
            self.textarea = None
    def handle_data(self, data):
        if self.textarea is not None:
            self.textarea['text'] += data
p = P()
p.feed(open(sys.argv[1], encoding='utf-8').read())
print(json.dumps(p.out))
)PY");
  return json::parse(
      output_of(std::string(python3_path) + " " + (dir / "dom.py").string() + " " + (dir / "page.html").string()));
}

// Markup in every text field, through the web form: the 422 page keeps each
// value exactly (as the attribute's or textarea's text), adds no element and
// no attribute, expands no placeholder; the confirmation shows none of it.
TEST_F(Form, MarkupInEveryFieldStaysText) {
  const std::map<std::string, std::string> hostile{
      {"patient.given_name", "<script>alert(1)</script>"},
      {"patient.family_name", "\"><img src=x onerror=alert(1)>"},
      {"patient.guardian.name", "'><svg onload=alert(1)>"},
      {"patient.guardian.relationship", "\" autofocus onfocus=\"alert(5)"},
      {"diagnosis.name", "<a href=\"javascript:alert(3)\">Alveolar soft part sarcoma</a>"},
      {"referrer.name", "{{csrf}} {{v:referrer.npi}}"},
      {"referrer.organization", "</textarea><script>alert(2)</script>"},
      {"notes", "</textarea><img src=x onerror=alert(4)>{{summary}} &lt;b&gt; &amp;"},
  };
  Browser b{daemon};
  const auto blank = elements_of(b.open_form().body);
  auto fields = valid_fields();
  for (const auto& [name, value] : hostile) set_field(fields, name, value);
  set_field(fields, "referrer.npi", "1234567890");  // bad check digit: the form comes back
  const auto r = b.post(fields);
  ASSERT_EQ(r.status, 422) << r.body;
  const auto page = elements_of(r.body);

  std::multiset<std::string> blank_tags, tags;
  for (const auto& e : blank) blank_tags.insert(e["tag"].get<std::string>());
  std::map<std::string, std::string> shown;  // field → value as the browser sees it
  for (const auto& e : page) {
    const std::string tag = e["tag"];
    tags.insert(tag);
    for (const auto& [attr, value] : e["attrs"].items()) {
      EXPECT_FALSE(attr.starts_with("on")) << e.dump();
      EXPECT_NE(attr, "autofocus") << e.dump();
      EXPECT_FALSE(value.get<std::string>().starts_with("javascript:")) << e.dump();
    }
    if (!e["attrs"].contains("name")) continue;
    const std::string name = e["attrs"]["name"];
    if (tag == "textarea")
      shown[name] = e["text"];
    else if (tag == "input" && e["attrs"].value("type", "text") != "radio")
      shown[name] = e["attrs"].value("value", "");
  }
  // The 422 page adds its summary and the field message, nothing else.
  for (const char* tag : {"script", "img", "svg", "a", "textarea", "input", "select", "form"}) {
    const auto extra = std::string(tag) == "a" ? 1U : 0U;  // the summary's one link (one error)
    EXPECT_EQ(tags.count(tag), blank_tags.count(tag) + extra) << tag;
  }
  for (const auto& [name, value] : hostile) EXPECT_EQ(shown[name], value) << name;
  EXPECT_EQ(hidden_value(r.body, "csrf_token"), b.csrf);  // {{csrf}} in a value did not become the token

  set_field(fields, "referrer.npi", "1234567893");
  const auto sent = b.post(fields);
  ASSERT_EQ(sent.status, 303) << sent.body;
  const auto confirmation = b.get(sent.headers.at("location"));
  ASSERT_EQ(confirmation.status, 200);
  for (const auto& [name, value] : hostile) {
    EXPECT_EQ(confirmation.body.find(value), std::string::npos) << name;
    EXPECT_EQ(confirmation.body.find(http::html_escape(value)), std::string::npos) << name << ": no patient data";
  }
  for (const auto& e : elements_of(confirmation.body)) {
    EXPECT_NE(e["tag"], "img");
    EXPECT_NE(e["tag"], "svg");
    for (const auto& [attr, value] : e["attrs"].items()) EXPECT_FALSE(attr.starts_with("on")) << e.dump();
  }
  const auto id = sent.headers.at("location").substr(std::string("/referrals/").size());
  // The stored document (encrypted at rest), as referralctl reads it back.
  const auto document = daemon.stored_document(id);
  for (const auto& [name, value] : hostile) {
    std::string pointer = "/" + name;
    std::replace(pointer.begin(), pointer.end(), '.', '/');
    const nlohmann::json::json_pointer at(pointer);
    EXPECT_TRUE(document.contains(at) && document[at] == value) << name << " was not stored exactly";
  }
}

TEST(FormRateLimit, PostsBeyondTheAddresssLimitAreRefused) {
  Daemon::Options o;
  o.extra_http = "rate_limit_per_minute = 1\nrate_limit_burst = 4\n";
  Daemon daemon(o);
  daemon.start();
  Browser b{daemon};
  b.open_form();  // 1
  std::vector<long> statuses;
  for (int i = 0; i < 5; ++i) {
    b.submission = std::string(63, 'a') + static_cast<char>('0' + i);
    statuses.push_back(b.post(valid_fields()).status);
  }
  // The burst of 4 is spent by the form and three posts; the rest wait.
  EXPECT_EQ(statuses[0], 303);
  EXPECT_EQ(statuses[2], 303);
  EXPECT_EQ(statuses[3], 429);
  EXPECT_EQ(statuses[4], 429);
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals"), 3);
}

// A page on another name (a DNS-rebinding site that resolves to this
// address) cannot drive the form: 421 for a Host that is not one of
// http.public_origins, and a POST from another Origin is refused.
TEST_F(Form, OnlyThePublicOriginsServeTheForm) {
  Browser b{daemon};
  ASSERT_EQ(b.open_form().status, 200);
  const std::string port = std::to_string(daemon.port());
  for (const std::string& host :
       {"evil.example:" + port, "localhost:" + port, std::string("127.0.0.1"), std::string("127.0.0.1:1")}) {
    HttpRequest get;
    get.url = daemon.base_url() + "/";
    get.headers = {"Host: " + host};
    const auto page = http(get);
    EXPECT_EQ(page.status, 421) << host;
    EXPECT_EQ(page.headers.at("content-type"), "text/html; charset=utf-8");
    EXPECT_EQ(page.headers.count("set-cookie"), 0U) << host;
    EXPECT_EQ(b.post(valid_fields(), {"Host: " + host, "Origin: http://" + host}).status, 421) << host;
  }
  // The right Host, another Origin.
  EXPECT_EQ(b.post(valid_fields(), {"Origin: http://evil.example:" + port}).status, 403);
  EXPECT_EQ(b.post(valid_fields(), {"Origin: https://127.0.0.1:" + port}).status, 403);
  EXPECT_EQ(referrals(), 0);
  // The daemon's own origin, in any case.
  EXPECT_EQ(b.post(valid_fields(), {"Origin: HTTP://127.0.0.1:" + port, "Host: 127.0.0.1:" + port}).status, 303);
  EXPECT_EQ(referrals(), 1);
  // The API and the static files do not depend on the name (a key guards the
  // API; the files are public).
  HttpRequest css;
  css.url = daemon.base_url() + "/static/style.css";
  css.headers = {"Host: evil.example"};
  EXPECT_EQ(http(css).status, 200);
  EXPECT_NE(daemon.get("/metrics", false).body.find("referrald_form_submissions_total{outcome=\"misdirected\"} 8\n"),
            std::string::npos);
}

// Behind a proxy the form is reached under the proxy's name: public_origins
// says which, and only those then serve it. A SIGHUP applies a change.
TEST(FormOrigins, ConfiguredPublicOriginsReplaceTheListenAddresses) {
  Daemon::Options o;
  o.extra_http = "public_origins = [\"https://referrals.example.org\"]\n";
  Daemon daemon(o);
  daemon.start();
  Browser b{daemon};
  EXPECT_EQ(b.open_form().status, 421);
  HttpRequest get;
  get.url = daemon.base_url() + "/";
  get.headers = {"Host: referrals.example.org"};
  const auto page = http(get);
  ASSERT_EQ(page.status, 200);
  b.cookie = page.headers.at("set-cookie").substr(0, page.headers.at("set-cookie").find(';'));
  b.csrf = hidden_value(page.body, "csrf_token");
  b.submission = hidden_value(page.body, "submission_token");
  EXPECT_EQ(b.post(valid_fields(), {"Host: referrals.example.org", "Origin: http://referrals.example.org"}).status,
            403);
  EXPECT_EQ(b.post(valid_fields(), {"Host: referrals.example.org", "Origin: https://referrals.example.org"}).status,
            303);

  auto config = read_file(daemon.config_file());
  config.replace(config.find("https://referrals.example.org"), 29, "https://intake.example.org");
  write_file(daemon.config_file(), config);
  daemon.process()->signal(SIGHUP);
  ASSERT_TRUE(wait_until([&] { return daemon.log().find("config.reloaded") != std::string::npos; }, 10s));
  get.headers = {"Host: intake.example.org"};
  EXPECT_EQ(http(get).status, 200);
  get.headers = {"Host: referrals.example.org"};
  EXPECT_EQ(http(get).status, 421);
}

// The CSRF key lives as long as the process: a form opened before a SIGHUP
// is sent after it. (After a restart it is not: the 403 page says to open a
// new form.)
TEST_F(Form, AFormOpenedBeforeAReloadIsSentAfterIt) {
  Browser b{daemon};
  ASSERT_EQ(b.open_form().status, 200);
  daemon.process()->signal(SIGHUP);
  ASSERT_TRUE(wait_until([&] { return daemon.log().find("config.reloaded") != std::string::npos; }, 10s));
  const auto r = b.post(valid_fields(), {"Origin: " + daemon.base_url()});
  EXPECT_EQ(r.status, 303) << r.body;
  EXPECT_EQ(referrals(), 1);
  // Stored form referrals are counted with the API's, by channel.
  const auto metrics = daemon.get("/metrics", false).body;
  EXPECT_NE(metrics.find("referrald_intake_total{channel=\"form\",decision=\"accepted\"} 1\n"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("referrald_intake_total{channel=\"api\",decision=\"accepted\"} 0\n"), std::string::npos);

  Browser later{daemon};
  ASSERT_EQ(later.open_form().status, 200);
  daemon.stop();
  daemon.start();
  EXPECT_EQ(later.post(valid_fields()).status, 403);
  // Opening the form again gives the browser a new cookie, and it works.
  EXPECT_EQ(later.open_form().headers.count("set-cookie"), 1U);
  EXPECT_EQ(later.post(valid_fields()).status, 303);
}

TEST(FormTls, OverHttpsTheCookieIsHostPrefixedAndSecure) {
  Daemon::Options o;
  o.tls = true;
  Daemon daemon(o);
  daemon.start();
  Browser b{daemon};
  const auto r = b.open_form();
  ASSERT_EQ(r.status, 200) << r.error;
  const std::regex cookie_re("__Host-csrf=[0-9a-f]{112}; Path=/; HttpOnly; SameSite=Strict; Secure");
  EXPECT_TRUE(std::regex_match(r.headers.at("set-cookie"), cookie_re)) << r.headers.at("set-cookie");
  EXPECT_EQ(r.headers.at("strict-transport-security"), "max-age=31536000");
  EXPECT_EQ(b.post(valid_fields()).status, 303);
  // A plain "csrf" cookie means nothing over HTTPS.
  Browser plain{daemon};
  plain.cookie = "csrf=" + b.csrf;
  plain.csrf = b.csrf;
  plain.submission = b.submission;
  EXPECT_EQ(plain.post(valid_fields()).status, 403);
}

}  // namespace
}  // namespace referrald::test
