// The hylafax and snpp adapters against a real HylaFAX server: a private
// spool (tests/peers/hylafax-spool.sh prepare), faxq and hfaxd on fresh
// loopback ports, and the real referrald. With no modem, jobs stay in the
// server's queue, and the tests read them there as an operator would: the
// fax job's qfile and its PDF, the page's qfile and its text.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <functional>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "support/harness.hpp"
#include "support/peers.hpp"

namespace referrald::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

struct Targets {
  std::string password = "secret";
  std::string pager_id = "5551234";
  std::string fax_extra;  // more keys for the fax target
  std::string delivery = "[delivery]\ninitial_backoff = \"1s\"\nmax_backoff = \"2s\"\n";
};

// A referrald that faxes every referral and pages urgent ones, through the server.
Daemon::Options options_for(const HylafaxServer& server, const Targets& t) {
  Daemon::Options o;
  o.with_default_targets = false;
  o.extra_config = "\n" + t.delivery + R"(
[[target]]
name = "office-fax"
type = "hylafax"
host = "127.0.0.1:)" +
                   std::to_string(server.fax_port()) +
                   R"("
user = "secure"
password_file = "secrets/hylafax-password"
dial = "9015954011"
timeout = "20s"
)" + t.fax_extra + R"(
[[target]]
name = "office-pager"
type = "snpp"
host = "127.0.0.1:)" +
                   std::to_string(server.snpp_port()) +
                   R"("
login = "secure"
password_file = "secrets/hylafax-password"
pager_id = ")" + t.pager_id +
                   R"("
hylafax = true
hylafax_port = )" + std::to_string(server.fax_port()) +
                   R"(
timeout = "20s"

[[route]]
notify = ["office-fax"]

[[route]]
when = { urgency = ["urgent", "emergent"] }
notify = ["office-pager"]
)";
  return o;
}

void write_password(const Daemon& daemon, const std::string& password) {
  write_file(daemon.dir() / "secrets" / "hylafax-password", password + "\n");
}

// Polls the API until every delivery of the referral is final (delivered,
// dead) or the time is up; returns target -> delivery view.
std::map<std::string, json> wait_until_final(Daemon& daemon, const std::string& id,
                                             std::chrono::milliseconds limit = 30s) {
  std::map<std::string, json> out;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (true) {
    out.clear();
    bool final = true;
    const auto got = daemon.get("/api/v1/referrals/" + id);
    if (got.status == 200) {
      const auto view = json::parse(got.body);  // named: a range-for over a temporary's member dangles
      for (const auto& d : view.at("deliveries")) {
        out[d["target"].get<std::string>()] = d;
        const auto state = d["state"].get<std::string>();
        if (state != "delivered" && state != "dead") final = false;
      }
    } else {
      final = false;
    }
    if (final || std::chrono::steady_clock::now() >= deadline) return out;
    std::this_thread::sleep_for(100ms);
  }
}

// Polls the API until the referral's first delivery (the fax) is as `done`
// wants it or the time is up; returns it as last seen.
json wait_for_fax(Daemon& daemon, const std::string& id, const std::function<bool(const json&)>& done,
                  std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  json fax;
  while (std::chrono::steady_clock::now() < deadline) {
    fax = json::parse(daemon.get("/api/v1/referrals/" + id).body)["deliveries"][0];
    if (done(fax)) break;
    std::this_thread::sleep_for(100ms);
  }
  return fax;
}

std::string post(Daemon& daemon, const std::string& body) {
  const auto r = daemon.post_referral(body);
  if (r.status != 202) throw std::runtime_error("POST failed: " + std::to_string(r.status) + " " + r.body);
  return json::parse(r.body)["id"].get<std::string>();
}

TEST(Hylafax, UrgentReferralIsFaxedAndPaged) {
  HylafaxServer server;
  server.start();
  Daemon daemon(options_for(server, {}));
  write_password(daemon, "secret");
  daemon.start();

  const std::string id = post(daemon, sample("asps-urgent.json"));
  const auto deliveries = wait_until_final(daemon, id);
  ASSERT_EQ(deliveries.size(), 2U) << daemon.log();
  EXPECT_EQ(deliveries.at("office-fax")["state"], "delivered") << deliveries.at("office-fax").dump() << daemon.log();
  EXPECT_EQ(deliveries.at("office-pager")["state"], "delivered") << deliveries.at("office-pager").dump();
  EXPECT_EQ(deliveries.at("office-fax")["attempts"], 1);

  // The fax: one job tagged with the delivery's identity, dialling the
  // configured number, with the referral PDF in docq.
  const auto faxes = server.jobs_where("jobtag", id + ".office-fax");
  ASSERT_EQ(faxes.size(), 1U);
  const auto& fax = faxes[0];
  EXPECT_EQ(fax.get("jobtype"), "facsimile");
  EXPECT_EQ(fax.get("number"), "9015954011");
  EXPECT_EQ(fax.get("owner"), "secure");
  EXPECT_EQ(fax.get("notify"), "none");
  const std::string document = fax.get("pdf");  // "0::docq/doc7.pdf.7"
  ASSERT_EQ(document.rfind("0::docq/", 0), 0U) << document;
  const auto pdf = read_file(server.spool() / document.substr(3));
  EXPECT_EQ(pdf.rfind("%PDF-", 0), 0U) << "the document is a PDF";
  EXPECT_GT(pdf.size(), 500U);
  // It is the referral document: its text names the referral (pdftotext, from poppler-utils).
  const auto text_file = daemon.dir() / "fax.txt";
  ASSERT_EQ(shell("pdftotext -layout " + (server.spool() / document.substr(3)).string() + " " + text_file.string()), 0);
  const auto fax_text = read_file(text_file);
  EXPECT_NE(fax_text.find(id), std::string::npos) << fax_text;
  EXPECT_NE(fax_text.find("Ortiz"), std::string::npos) << "the fax carries the referral itself";
  // The job id is recorded with the delivery.
  const auto external_id = query_text(
      daemon.database(), "SELECT external_id FROM deliveries WHERE referral_id='" + id + "' AND target='office-fax'");
  ASSERT_TRUE(external_id);
  EXPECT_EQ(*external_id, fax.get("jobid"));
  EXPECT_EQ(fax.file.filename().string(), "q" + *external_id);

  // The page: one pager job for the PIN, sent by the delivery's identity,
  // whose text names the referral and nothing about the patient.
  const auto pages = server.jobs_where("sender", id + ".office-pager");
  ASSERT_EQ(pages.size(), 1U);
  const auto& page = pages[0];
  EXPECT_EQ(page.get("jobtype"), "pager");
  EXPECT_EQ(page.get("page"), "0::5551234");
  const std::string data = page.get("data");  // "0::docq/doc8.page.8"
  ASSERT_EQ(data.rfind("0::docq/", 0), 0U) << data;
  const auto text = read_file(server.spool() / data.substr(3));
  EXPECT_NE(text.find(id), std::string::npos) << text;
  EXPECT_NE(text.find("URGENT"), std::string::npos) << text;
  EXPECT_NE(text.find("1-888-226-4343"), std::string::npos) << text;
  for (const char* phi : {"Mateo", "Ortiz", "2011-07-21", "2011", "ASPS", "Priya"}) {
    EXPECT_EQ(text.find(phi), std::string::npos) << phi << " in the page: " << text;
  }
  EXPECT_LE(text.size(), 128U);
  const auto page_job = query_text(
      daemon.database(), "SELECT external_id FROM deliveries WHERE referral_id='" + id + "' AND target='office-pager'");
  ASSERT_TRUE(page_job);
  EXPECT_EQ(*page_job, page.get("jobid"));

  // A routine referral is faxed but not paged.
  const std::string routine = post(daemon, sample("asps-routine.json"));
  const auto routine_deliveries = wait_until_final(daemon, routine);
  ASSERT_EQ(routine_deliveries.size(), 1U);
  EXPECT_EQ(routine_deliveries.at("office-fax")["state"], "delivered");
  EXPECT_EQ(server.jobs_where("jobtag", routine + ".office-fax").size(), 1U);
  EXPECT_TRUE(server.jobs_where("sender", routine + ".office-pager").empty());
}

TEST(Hylafax, RejectedPagerIdIsDeadAfterOneAttempt) {
  HylafaxServer server;
  server.start();
  Targets t;
  t.pager_id = "REJECTME";
  Daemon daemon(options_for(server, t));
  write_password(daemon, "secret");
  daemon.start();

  const std::string id = post(daemon, sample("asps-urgent.json"));
  const auto deliveries = wait_until_final(daemon, id);
  const auto& pager = deliveries.at("office-pager");
  EXPECT_EQ(pager["state"], "dead") << pager.dump();
  EXPECT_EQ(pager["attempts"], 1);
  EXPECT_NE(pager.value("last_error", "").find("550"), std::string::npos) << pager.dump();
  EXPECT_EQ(deliveries.at("office-fax")["state"], "delivered");
  for (const auto& job : server.jobs()) EXPECT_NE(job.get("jobtype"), "pager");
}

TEST(Hylafax, WrongPasswordIsMisconfiguredAndDead) {
  HylafaxServer server;
  server.start();
  Daemon daemon(options_for(server, {}));
  write_password(daemon, "not-the-secret");
  daemon.start();

  const std::string id = post(daemon, sample("asps-urgent.json"));
  const auto deliveries = wait_until_final(daemon, id);
  const auto& fax = deliveries.at("office-fax");
  EXPECT_EQ(fax["state"], "dead") << fax.dump();
  EXPECT_EQ(fax["attempts"], 1);
  EXPECT_NE(fax.value("last_error", "").find("530"), std::string::npos) << fax.dump();
  const auto& pager = deliveries.at("office-pager");
  EXPECT_EQ(pager["state"], "dead") << pager.dump();
  EXPECT_EQ(pager["attempts"], 1);
  EXPECT_NE(pager.value("last_error", "").find("LOGI"), std::string::npos) << pager.dump();
  EXPECT_TRUE(server.jobs().empty());
  // Loud: the log says what to fix.
  EXPECT_NE(daemon.log().find("class=misconfigured"), std::string::npos);
  EXPECT_EQ(daemon.log().find("not-the-secret"), std::string::npos) << "the password is never logged";
}

TEST(Hylafax, ServerDownAtFirstThenEveryDeliveryGoesOutOnce) {
  HylafaxServer server;  // prepared, not started: nothing listens on its ports
  Daemon daemon(options_for(server, {}));
  write_password(daemon, "secret");
  daemon.start();

  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(post(daemon, sample("asps-urgent.json")));

  // The deliveries wait and back off: tried, failed transiently, due again.
  const auto waiting_deadline = std::chrono::steady_clock::now() + 20s;
  bool all_retried = false;
  while (!all_retried && std::chrono::steady_clock::now() < waiting_deadline) {
    all_retried = true;
    for (const auto& id : ids) {
      const auto view = json::parse(daemon.get("/api/v1/referrals/" + id).body);
      for (const auto& d : view.at("deliveries")) {
        if (d["attempts"].get<int>() < 2 || d["state"] == "delivered" || d["state"] == "dead") all_retried = false;
      }
    }
    if (!all_retried) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(all_retried) << daemon.log();
  EXPECT_NE(daemon.log().find("class=transient"), std::string::npos);

  server.start();
  for (const auto& id : ids) {
    const auto deliveries = wait_until_final(daemon, id, 40s);
    EXPECT_EQ(deliveries.at("office-fax")["state"], "delivered") << deliveries.at("office-fax").dump();
    EXPECT_EQ(deliveries.at("office-pager")["state"], "delivered") << deliveries.at("office-pager").dump();
    // None lost, none twice.
    EXPECT_EQ(server.jobs_where("jobtag", id + ".office-fax").size(), 1U) << id;
    EXPECT_EQ(server.jobs_where("sender", id + ".office-pager").size(), 1U) << id;
  }
  EXPECT_EQ(server.jobs().size(), 6U);
}

// The server cannot store the document (hfaxd's 553 "Unable to open
// sequence number file", as when two sessions race to create a new spool's
// docq/seqf; here a directory stands where the file belongs, which hfaxd
// refuses every time): the delivery is retried, not dropped, and goes
// through once the server can store it again.
TEST(Hylafax, AServerThatCannotStoreTheDocumentIsRetriedNotDropped) {
  HylafaxServer server;
  server.start();
  const auto seqf = server.spool() / "docq" / "seqf";
  std::filesystem::create_directory(seqf);
  Daemon daemon(options_for(server, {}));
  write_password(daemon, "secret");
  daemon.start();

  const std::string id = post(daemon, sample("asps-routine.json"));
  const json fax = wait_for_fax(
      daemon, id, [](const json& f) { return f["state"] != "pending" && f["state"] != "sending"; }, 20s);
  EXPECT_EQ(fax["state"], "retry") << fax.dump() << daemon.log();
  EXPECT_NE(fax.value("last_error", "").find("553"), std::string::npos) << fax.dump();
  EXPECT_NE(fax.value("last_error", "").find("sequence number file"), std::string::npos) << fax.dump();

  std::filesystem::remove(seqf);
  const auto deliveries = wait_until_final(daemon, id, 20s);
  EXPECT_EQ(deliveries.at("office-fax")["state"], "delivered") << deliveries.at("office-fax").dump();
  EXPECT_EQ(server.jobs_where("jobtag", id + ".office-fax").size(), 1U);
}

// done_when = "done": the job cannot finish without a modem, so each attempt
// ends transient before the target's timeout ("still ..."), and every later
// attempt finds the first job by its tag instead of faxing again.
TEST(Hylafax, WaitingForTheJobResumesTheSameJobOnEveryAttempt) {
  HylafaxServer server;
  server.start();
  Targets t;
  t.fax_extra = "done_when = \"done\"\npoll_interval = \"1s\"\n";
  Daemon daemon(options_for(server, t));
  // A short timeout for the fax target: each attempt waits about 3.6 s.
  auto config = read_file(daemon.config_file());
  config.replace(config.find("timeout = \"20s\""), 15, "timeout = \"4s\"");
  write_file(daemon.config_file(), config);
  write_password(daemon, "secret");
  daemon.start();

  const std::string id = post(daemon, sample("asps-routine.json"));
  const json fax = wait_for_fax(
      daemon, id, [](const json& f) { return f["attempts"].get<int>() >= 3 && f["state"] == "retry"; }, 40s);
  ASSERT_GE(fax["attempts"].get<int>(), 3) << fax.dump() << daemon.log();
  EXPECT_EQ(fax["state"], "retry") << fax.dump();
  EXPECT_NE(fax.value("last_error", "").find("still"), std::string::npos) << fax.dump();
  EXPECT_EQ(server.jobs_where("jobtag", id + ".office-fax").size(), 1U);
  EXPECT_NE(daemon.log().find("hylafax.repeat_recognised"), std::string::npos);
}

// done_when = "done" and the job fails at HylaFAX (here: removed with faxrm,
// which leaves it FAILED in doneq, "Job aborted by request"): the delivery
// is dead after one attempt, with HylaFAX's reason.
TEST(Hylafax, WaitingForTheJobReportsItsFailure) {
  HylafaxServer server;
  server.start();
  Targets t;
  t.fax_extra = "done_when = \"done\"\npoll_interval = \"1s\"\n";
  Daemon daemon(options_for(server, t));
  // A user the server trusts by address (no password), so faxrm run as the
  // same user may remove the job.
  auto config = read_file(daemon.config_file());
  const std::string password_login = "user = \"secure\"\npassword_file = \"secrets/hylafax-password\"\n";
  config.replace(config.find(password_login), password_login.size(), "user = \"referrald\"\n");
  write_file(daemon.config_file(), config);
  write_password(daemon, "secret");
  daemon.start();

  const std::string id = post(daemon, sample("asps-routine.json"));
  std::vector<QueuedJob> jobs;
  for (int i = 0; i < 200 && jobs.empty(); ++i) {
    jobs = server.jobs_where("jobtag", id + ".office-fax");
    if (jobs.empty()) std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(jobs.size(), 1U) << daemon.log();
  const std::string job = jobs[0].get("jobid");
  ASSERT_EQ(shell("FAXUSER=referrald faxrm -h 127.0.0.1:" + std::to_string(server.fax_port()) + " " + job +
                  " >/dev/null 2>&1"),
            0);

  const auto deliveries = wait_until_final(daemon, id, 20s);
  const auto& fax = deliveries.at("office-fax");
  EXPECT_EQ(fax["state"], "dead") << fax.dump();
  EXPECT_EQ(fax["attempts"], 1) << fax.dump();
  EXPECT_NE(fax.value("last_error", "").find("HylaFAX job " + job + " failed: Job aborted by request"),
            std::string::npos)
      << fax.dump();
}

// The fax job's document in the server's spool, its page count (pdfinfo) and
// its text (pdftotext), as an operator would read them.
struct FaxDocument {
  int pages = -1;
  std::string text;
};

FaxDocument fax_document(const HylafaxServer& server, const Daemon& daemon, const std::string& id) {
  const auto jobs = server.jobs_where("jobtag", id + ".office-fax");
  EXPECT_EQ(jobs.size(), 1U);
  if (jobs.size() != 1) return {};
  const std::string document = jobs[0].get("pdf");  // "0::docq/doc7.pdf.7"
  EXPECT_EQ(document.rfind("0::docq/", 0), 0U) << document;
  const auto file = server.spool() / document.substr(3);
  FaxDocument out;
  const std::string info = output_of("pdfinfo " + file.string() + " 2>&1");
  std::smatch m;
  if (std::regex_search(info, m, std::regex(R"(Pages:\s+(\d+))"))) out.pages = std::stoi(m[1]);
  const auto text_file = daemon.dir() / (id + ".txt");
  EXPECT_EQ(shell("pdftotext " + file.string() + " " + text_file.string()), 0);
  out.text = read_file(text_file);
  return out;
}

std::string with_files(const std::string& sample_name, const nlohmann::json& files) {
  auto doc = json::parse(sample(sample_name));
  doc["attachments"] = files;
  return doc.dump();
}

// A PDF of 2 pages and a JPEG, as a referrer's EHR sends them.
nlohmann::json records_and_image() {
  return json::array({attachment_item("Pathology report", attachment_fixture("records.pdf")),
                      attachment_item("MRI still", attachment_fixture("image.jpg"), "image/jpeg")});
}

// The same referral sent without files and with records_and_image(); both
// delivered; their faxes, and the id of the one with files.
struct TwoFaxes {
  FaxDocument without;
  FaxDocument with;
  std::string id;
};

TwoFaxes fax_without_and_with_files(const HylafaxServer& server, Daemon& daemon, const std::string& sample_name) {
  const std::string bare = post(daemon, sample(sample_name));
  const std::string id = post(daemon, with_files(sample_name, records_and_image()));
  for (const auto& referral : {bare, id}) {
    const auto deliveries = wait_until_final(daemon, referral);
    EXPECT_EQ(deliveries.at("office-fax")["state"], "delivered") << deliveries.at("office-fax").dump() << daemon.log();
  }
  return {fax_document(server, daemon, bare), fax_document(server, daemon, id), id};
}

TEST(Hylafax, TheFaxCarriesTheReferralsFilesAsPagesAndThePageNone) {
  HylafaxServer server;
  server.start();
  Daemon daemon(options_for(server, {}));
  write_password(daemon, "secret");
  daemon.start();

  // The same referral without files and with a PDF (2 pages) and a JPEG.
  const auto [without, with, id] = fax_without_and_with_files(server, daemon, "asps-urgent.json");
  ASSERT_GE(without.pages, 2);
  EXPECT_EQ(with.pages, without.pages + 3) << "cover, referral, the PDF's 2 pages and the image's 1";
  EXPECT_NE(with.text.find(std::to_string(with.pages) + " (including this cover sheet)"), std::string::npos)
      << with.text;
  EXPECT_NE(with.text.find("2 files, 3 pages"), std::string::npos) << with.text;
  EXPECT_NE(with.text.find("file 2 of 2 (JPEG image)"), std::string::npos) << with.text;

  // The page is the same few lines with files or without.
  EXPECT_EQ(wait_until_final(daemon, id).at("office-pager")["state"], "delivered");
  const auto pages = server.jobs_where("sender", id + ".office-pager");
  ASSERT_EQ(pages.size(), 1U);
  const auto text = read_file(server.spool() / pages[0].get("data").substr(3));
  EXPECT_LE(text.size(), 128U);
  EXPECT_NE(text.find(id), std::string::npos) << text;
}

TEST(Hylafax, AFaxOverMaxFaxPagesIsTheReferralAndSaysWhereTheFilesAre) {
  HylafaxServer server;
  server.start();
  Targets targets;
  targets.fax_extra = "max_fax_pages = 4\n";  // the referral fits, not with 3 more pages
  Daemon daemon(options_for(server, targets));
  write_password(daemon, "secret");
  daemon.start();

  const auto [without, with, id] = fax_without_and_with_files(server, daemon, "asps-routine.json");
  ASSERT_GE(without.pages, 2);
  ASSERT_GT(without.pages + 3, 4) << "the files must not fit for this test";
  EXPECT_EQ(with.pages, without.pages);
  EXPECT_NE(with.text.find(std::to_string(with.pages) + " (including this cover sheet)"), std::string::npos)
      << with.text;
  EXPECT_NE(with.text.find("NOT in this fax"), std::string::npos) << with.text;
  EXPECT_NE(with.text.find("referralctl attachment " + id), std::string::npos) << with.text;
}

}  // namespace
}  // namespace referrald::test
