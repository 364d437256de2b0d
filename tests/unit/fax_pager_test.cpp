// The pure parts of the hylafax and snpp adapters: what hfaxd's reply texts
// carry, the page text (no patient data, within the length limit), and the
// target settings each adapter checks at start-up.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "adapters/document/page_text.hpp"
#include "adapters/hylafax/hylafax_adapter.hpp"
#include "adapters/hylafax/hylafax_protocol.hpp"
#include "adapters/protocol/settings.hpp"
#include "adapters/snpp/snpp_adapter.hpp"

namespace referrald {
namespace {

using namespace std::chrono_literals;

TEST(HylafaxProtocol, PassivePortFromThe227Reply) {
  EXPECT_EQ(hylafax::parse_pasv_port("Entering passive mode (127,0,0,1,195,41)"), 195 * 256 + 41);
  EXPECT_EQ(hylafax::parse_pasv_port("Entering Passive Mode 10,1,2,3,4,5"), 4 * 256 + 5);
  EXPECT_EQ(hylafax::parse_pasv_port("=127,0,0,1,0,21"), 21);
  EXPECT_FALSE(hylafax::parse_pasv_port("Entering passive mode (127,0,0,1,0,0)"));
  EXPECT_FALSE(hylafax::parse_pasv_port("Entering passive mode (127,0,0,1,256,1)"));
  EXPECT_FALSE(hylafax::parse_pasv_port("Entering passive mode (127,0,0,1,195)"));
  EXPECT_FALSE(hylafax::parse_pasv_port("Entering passive mode"));
  EXPECT_FALSE(hylafax::parse_pasv_port("(1,2,3,4,5,99999999)"));
}

TEST(HylafaxProtocol, ExtendedPassivePort) {
  EXPECT_EQ(hylafax::parse_epsv_port("Entering Extended Passive Mode (|||49961|)"), 49961);
  EXPECT_EQ(hylafax::parse_epsv_port("Entering Extended Passive Mode (!!!6446!)"), 6446);
  EXPECT_FALSE(hylafax::parse_epsv_port("Entering Extended Passive Mode (|||0|)"));
  EXPECT_FALSE(hylafax::parse_epsv_port("Entering Extended Passive Mode (|||70000|)"));
  EXPECT_FALSE(hylafax::parse_epsv_port("Entering Extended Passive Mode (|1|::1|49961|)"));
  EXPECT_FALSE(hylafax::parse_epsv_port("(|||49961"));
}

TEST(HylafaxProtocol, StoredFileName) {
  EXPECT_EQ(hylafax::parse_stot_file("FILE: /tmp/doc2.pdf (Opening new data connection)."), "/tmp/doc2.pdf");
  EXPECT_EQ(hylafax::parse_stot_file("Transfer complete (FILE: /tmp/doc2.pdf)."), "/tmp/doc2.pdf");
  EXPECT_EQ(hylafax::parse_stot_file("FILE: /tmp/doc9."), "/tmp/doc9");
  EXPECT_FALSE(hylafax::parse_stot_file("Opening new data connection."));
  EXPECT_FALSE(hylafax::parse_stot_file("FILE: doc2.pdf"));
  EXPECT_FALSE(hylafax::parse_stot_file("FILE: "));
}

TEST(HylafaxProtocol, JobIds) {
  EXPECT_EQ(hylafax::parse_job_id("New job created: jobid: 77 groupid: 77."), "77");
  EXPECT_EQ(hylafax::parse_job_id("Job 12 submitted."), "12");
  EXPECT_FALSE(hylafax::parse_job_id("New job created: jobid: groupid: 77."));
  EXPECT_FALSE(hylafax::parse_job_id("Something else 12"));
}

TEST(HylafaxProtocol, JobStates) {
  EXPECT_EQ(hylafax::parse_job_state("DONE"), hylafax::JobState::done);
  EXPECT_EQ(hylafax::parse_job_state("failed"), hylafax::JobState::failed);
  EXPECT_EQ(hylafax::parse_job_state("SLEEPING"), hylafax::JobState::sleeping);
  EXPECT_EQ(hylafax::parse_job_state("WHATEVER"), hylafax::JobState::unknown);
  EXPECT_EQ(hylafax::job_state_from_symbol('W'), hylafax::JobState::ready);
  EXPECT_EQ(hylafax::job_state_from_symbol('F'), hylafax::JobState::failed);
  EXPECT_EQ(hylafax::to_string(hylafax::JobState::blocked), "BLOCKED");
}

TEST(HylafaxProtocol, JobListing) {
  const auto jobs = hylafax::parse_job_listing(
      "1|W|\n"
      "  2|B|R-20261128-7K3M9-TZQXA.office-fax\r\n"
      "garbage line\n"
      "x|D|tag\n"
      "3|F|R-20261128-7K3M9-TZQXA.office-fax");
  ASSERT_EQ(jobs.size(), 3U);
  EXPECT_EQ(jobs[0].id, "1");
  EXPECT_EQ(jobs[0].tag, "");
  EXPECT_EQ(jobs[1].id, "2");
  EXPECT_EQ(jobs[1].state, hylafax::JobState::blocked);
  EXPECT_EQ(jobs[1].tag, "R-20261128-7K3M9-TZQXA.office-fax");
  EXPECT_EQ(jobs[2].state, hylafax::JobState::failed);
}

TEST(HylafaxProtocol, QuotingAndTags) {
  EXPECT_TRUE(hylafax::quotable("9015954011"));
  EXPECT_TRUE(hylafax::quotable("Referral Office <fax@example.org>"));
  EXPECT_FALSE(hylafax::quotable(""));
  EXPECT_FALSE(hylafax::quotable("a\"b"));
  EXPECT_FALSE(hylafax::quotable("a\r\nJSUBM"));
  EXPECT_EQ(hylafax::job_tag("R-20261128-7K3M9-TZQXA.office-fax"), "R-20261128-7K3M9-TZQXA.office-fax");
  EXPECT_EQ(hylafax::job_tag("a|b c\"d"), "a_b_c_d");
}

Delivery sample_delivery(Urgency urgency = Urgency::urgent, Decision decision = Decision::review) {
  Delivery d;
  d.identity = "R-20261128-7K3M9-TZQXA.office-pager";
  d.referral_id = "R-20261128-7K3M9-TZQXA";
  d.target = "office-pager";
  d.urgency = urgency;
  d.decision = decision;
  d.document = R"({"patient":{"given_name":"Ava","family_name":"Nguyen","birth_date":"2014-03-09"}})";
  return d;
}

TEST(PageText, TheFullFormFitsHfaxdsLimit) {
  const auto text = page_text(sample_delivery(), "1-888-226-4343", 128);
  EXPECT_EQ(text, "referrald R-20261128-7K3M9-TZQXA URGENT review call 1-888-226-4343");
}

TEST(PageText, CarriesNoPatientData) {
  for (const auto length : {31U, 40U, 60U, 128U, 500U}) {
    const auto text = page_text(sample_delivery(Urgency::emergent, Decision::accepted), "1-888-226-4343", length);
    EXPECT_EQ(text.find("Ava"), std::string::npos);
    EXPECT_EQ(text.find("Nguyen"), std::string::npos);
    EXPECT_EQ(text.find("2014"), std::string::npos);
    EXPECT_NE(text.find("R-20261128-7K3M9-TZQXA"), std::string::npos) << length;
    EXPECT_LE(text.size(), length);
  }
}

TEST(PageText, ShortLimitsDropTheLeastUsefulWordsFirst) {
  const auto d = sample_delivery(Urgency::routine, Decision::accepted);
  EXPECT_EQ(page_text(d, "1-888-226-4343", 63), "R-20261128-7K3M9-TZQXA ROUTINE accepted call 1-888-226-4343");
  EXPECT_EQ(page_text(d, "1-888-226-4343", 58), "R-20261128-7K3M9-TZQXA ROUTINE accepted 1-888-226-4343");
  EXPECT_EQ(page_text(d, "1-888-226-4343", 50), "R-20261128-7K3M9-TZQXA ROUTINE 1-888-226-4343");
  EXPECT_EQ(page_text(d, "1-888-226-4343", 40), "R-20261128-7K3M9-TZQXA ROUTINE accepted");
  EXPECT_EQ(page_text(d, "1-888-226-4343", 31), "R-20261128-7K3M9-TZQXA ROUTINE");
  EXPECT_EQ(page_text(d, "", 128), "referrald R-20261128-7K3M9-TZQXA ROUTINE accepted");
}

TEST(PageText, IsOnePrintableLine) {
  const auto text = page_text(sample_delivery(), "901\r\nSEND", 128);
  EXPECT_EQ(text.find_first_of("\r\n"), std::string::npos);
}

struct TempFile {
  std::filesystem::path path;
  explicit TempFile(const std::string& content) {
    path = std::filesystem::temp_directory_path() /
           ("referrald-fax-pager-test-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "-" +
            std::to_string(reinterpret_cast<std::uintptr_t>(this)));
    std::ofstream(path) << content;
  }
  ~TempFile() { std::filesystem::remove(path); }
};

TargetConfig hylafax_target() {
  TargetConfig t;
  t.name = "office-fax";
  t.type = "hylafax";
  t.timeout = 60s;
  t.settings["host"] = std::string("127.0.0.1:4559");
  t.settings["user"] = std::string("referrald");
  t.settings["dial"] = std::string("9015954011");
  return t;
}

TEST(HylafaxSettings, DefaultsAndBudget) {
  const auto s = hylafax_settings(hylafax_target());
  EXPECT_EQ(s.host, "127.0.0.1");
  EXPECT_EQ(s.port, 4559);
  EXPECT_EQ(s.from_user, "referrald");
  EXPECT_FALSE(s.password);
  EXPECT_FALSE(s.wait_until_done);
  EXPECT_EQ(s.budget, 54s);  // under the dispatcher's 60 s
  EXPECT_EQ(s.io_timeout, 30s);
}

TEST(HylafaxSettings, PasswordFileIPv6AndDoneWhen) {
  TempFile password("secret\n");
  auto t = hylafax_target();
  t.settings["host"] = std::string("[::1]:4559");
  t.settings["password_file"] = password.path.string();
  t.settings["done_when"] = std::string("done");
  t.settings["poll_interval"] = Duration(5s);
  t.timeout = 10min;
  const auto s = hylafax_settings(t);
  EXPECT_EQ(s.host, "::1");
  EXPECT_EQ(s.password, "secret");
  EXPECT_TRUE(s.wait_until_done);
  EXPECT_EQ(s.poll_interval, 5s);
  EXPECT_EQ(s.budget, 10min - 10s);
}

TEST(HylafaxSettings, RefusesValuesThatCannotBeQuoted) {
  auto t = hylafax_target();
  t.settings["dial"] = std::string("901\"; JSUBM");
  try {
    hylafax_settings(t);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "target \"office-fax\": dial: must not be empty or hold '\"', '\\' or control characters");
  }
  t = hylafax_target();
  t.settings["password_file"] = std::string("/nonexistent/referrald-password");
  EXPECT_THROW(hylafax_settings(t), std::runtime_error);
}

TargetConfig snpp_target() {
  TargetConfig t;
  t.name = "office-pager";
  t.type = "snpp";
  t.settings["host"] = std::string("127.0.0.1:444");
  t.settings["pager_id"] = std::string("5551234");
  return t;
}

TEST(SnppSettings, ChecksTheTarget) {
  auto t = snpp_target();
  OfficeConfig office;
  office.phone = "1-888-226-4343";
  auto s = snpp_settings(t, office);
  EXPECT_EQ(s.max_message_length, 128U);
  EXPECT_EQ(s.callback_phone, "1-888-226-4343");
  EXPECT_TRUE(s.login.empty());

  t.settings["max_message_length"] = std::int64_t{20};
  try {
    snpp_settings(t, office);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(),
                 "target \"office-pager\": max_message_length: must be at least 31 (a reference number and the "
                 "urgency), got 20");
  }
  t.settings["max_message_length"] = std::int64_t{80};
  t.settings["pager_id"] = std::string("555 1234");
  EXPECT_THROW(snpp_settings(t, office), std::runtime_error);
}

TEST(SnppSettings, TheRepeatCheckPortIsForHfaxdOnly) {
  auto t = snpp_target();
  const OfficeConfig office;
  t.settings["hylafax_port"] = std::int64_t{4560};
  try {
    snpp_settings(t, office);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "target \"office-pager\": hylafax_port: only for hfaxd: set hylafax = true too");
  }
  t.settings["hylafax"] = true;
  EXPECT_EQ(snpp_settings(t, office).hylafax_port, 4560);
  t.settings.erase("hylafax_port");
  EXPECT_EQ(snpp_settings(t, office).hylafax_port, 4559);  // hfaxd's default
  t.settings["hylafax_port"] = std::int64_t{0};
  EXPECT_EQ(snpp_settings(t, office).hylafax_port, 0);  // no repeat check
  t.settings["hylafax_port"] = std::int64_t{70000};
  try {
    snpp_settings(t, office);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "target \"office-pager\": hylafax_port: must be 1..65535 (0: no repeat check), got 70000");
  }
}

TEST(SendBudget, StaysUnderTheTargetTimeout) {
  EXPECT_EQ(protocol::send_budget(60s), 54s);
  EXPECT_EQ(protocol::send_budget(5s), 4s);
  EXPECT_EQ(protocol::send_budget(2s), 1s);
  EXPECT_EQ(protocol::send_budget(1h), 1h - 10s);
}

}  // namespace
}  // namespace referrald
