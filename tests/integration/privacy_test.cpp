// Privacy proofs against the real referrald binary and real peers:
//  - names cannot inject mail headers or recipients: control characters are
//    refused with a 422 naming the field (API and form); everything accepted
//    is delivered through aiosmtpd and the delivered message is read back
//    with Python's email package and the server's record of the envelope;
//  - PHI never reaches a log line: a full scenario (API and form; accepted,
//    review, declined, invalid and malformed submissions; email, an SNPP
//    page through HylaFAX, a failing target that retries; referralctl
//    list/show/retry/cancel; SIGHUP; a restart in journal format) and then
//    every line the daemon and referralctl wrote is searched for every
//    patient's and guardian's names and birth dates in several formats; the
//    pages HylaFAX queued carry no patient data either;
//  - every file the daemon created is 0600 and every directory 0700.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <algorithm>
#include <csignal>
#include <functional>
#include <set>
#include <sstream>
#include <thread>

#include "support/harness.hpp"
#include "support/peers.hpp"
#include "util/strings.hpp"

namespace referrald::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------
// CR/LF injection into mail headers

const std::vector<std::string> name_fields{"/patient/given_name", "/patient/family_name", "/patient/guardian/name",
                                           "/referrer/name", "/referrer/organization"};

json::json_pointer pointer(const std::string& path) { return json::json_pointer(path); }

// Every field that reaches a mail (the text part; none reaches a header)
// refuses line breaks and other controls with a 422 that names it.
TEST(MailInjection, ControlCharactersInNamesAre422NamingTheField) {
  Daemon daemon{Daemon::Options{}};
  daemon.start();
  for (const auto& field : name_fields) {
    for (const std::string& payload :
         {std::string("Ava\r\nBcc: victim@attacker.example"), std::string("Ava\nBcc: victim@attacker.example"),
          std::string("Ava\rBcc: victim@attacker.example"), std::string("Ava\u0085Bcc: victim@attacker.example"),
          std::string("Ava\r\n\r\n--boundary"), std::string("Ava\tNguyen\x1b[31m")}) {
      auto doc = json::parse(sample("asps-routine.json"));
      doc[pointer(field)] = payload;
      const auto r = daemon.post_referral(doc.dump());
      ASSERT_EQ(r.status, 422) << field << " " << json(payload).dump() << " -> " << r.body;
      const auto errors = json::parse(r.body)["errors"];
      ASSERT_EQ(errors.size(), 1U) << r.body;
      EXPECT_EQ(errors[0]["path"], field);
      EXPECT_EQ(errors[0]["message"], "must not contain control characters");
    }
  }
  // The form says the same next to the field.
  Browser browser{daemon};
  browser.open_form();
  Fields fields{{"patient.given_name", "Ava"},
                {"patient.family_name", "Nguyen"},
                {"patient.birth_date", "2014-03-09"},
                {"patient.sex", "female"},
                {"diagnosis.name", "Alveolar soft part sarcoma"},
                {"referrer.name", "Dana\r\nBcc: victim@attacker.example"},
                {"referrer.credential", "MD"},
                {"referrer.npi", "1234567893"},
                {"referrer.organization", "Delta Pediatrics"},
                {"referrer.phone", "+1 901 555 0100"},
                {"referrer.email", "dwhitfield@example.org"},
                {"urgency", "routine"}};
  const auto page = browser.post(fields, {"Origin: " + daemon.base_url()});
  EXPECT_EQ(page.status, 422);
  EXPECT_NE(page.body.find("Referring clinician&#39;s name must not contain control characters."), std::string::npos)
      << page.body;
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals"), 0);
}

// Hostile names that are not control characters are stored; delivered, they
// add no header, no recipient and no MIME part, and the subject is ours.
TEST(MailInjection, AcceptedHostileNamesAddNoHeaderNoRecipientNoPart) {
  MailServer server({});
  TempDir work;
  SmtpTarget office;
  office.to = {"referrals@hospital.example", "Night Desk <night@hospital.example>"};
  Daemon::Options options;
  options.with_default_targets = false;
  options.extra_config = "\n[delivery]\ninitial_backoff = \"200ms\"\nmax_backoff = \"1s\"\n" +
                         smtp_target(server, work / "secrets", office) + "\n[[route]]\nnotify = [\"office-email\"]\n";
  Daemon daemon{options};
  daemon.start();

  const std::vector<std::map<std::string, std::string>> hostile{
      {{"/patient/given_name", "Ava\u2028Bcc: victim@attacker.example"},
       {"/patient/family_name", "Nguyen\u2029To: victim@attacker.example"},
       {"/patient/guardian/name", "Bcc: victim@attacker.example"},
       {"/referrer/name", "=?UTF-8?B?DQpCY2M6IHZpY3RpbUBhdHRhY2tlci5leGFtcGxl?="},
       {"/referrer/organization", "\"Delta\" <victim@attacker.example>, other@attacker.example"}},
      {{"/patient/given_name", std::string(100, 'A')},
       {"/patient/family_name", "%0d%0aBcc:%20victim@attacker.example"},
       {"/referrer/name", "Dana Whitfield\u2028\u2029\u2028Subject: free"},
       {"/referrer/organization", std::string(60, 'O') + " \u00e9\u00e9\u00e9 " + std::string(60, 'P') + "\u2028"}},
  };
  std::map<std::string, std::string> subjects;  // Message-ID → the subject it must have
  for (const auto& fields : hostile) {
    auto doc = json::parse(sample("asps-routine.json"));
    for (const auto& [path, value] : fields) doc[pointer(path)] = value;
    const auto r = daemon.post_referral(doc.dump());
    ASSERT_EQ(r.status, 202) << r.body;
    const auto body = json::parse(r.body);
    const std::string id = body["id"];
    subjects["<" + id + ".office-email@referrald>"] =
        "Referral " + id + " (routine) \u2014 " + body["decision"].get<std::string>();
    // Stored exactly as sent.
    const auto view = json::parse(daemon.get("/api/v1/referrals/" + id).body);
    for (const auto& [path, value] : fields) EXPECT_EQ(view["referral"][pointer(path)], value) << path;
  }
  ASSERT_TRUE(wait_until([&] { return server.messages().size() == hostile.size(); }, 20s)) << daemon.log();

  // Every header of every message, as Python's email package reads it.
  const std::string script = R"PY(
import email, email.policy, json, sys
out = []
for path in sys.argv[1:]:
    msg = email.message_from_binary_file(open(path, 'rb'), policy=email.policy.default)
    parts = [p.get_content_type() for p in msg.walk() if not p.is_multipart()]
    out.append({'headers': [[k, str(v)] for k, v in msg.items()], 'defects': len(msg.defects),
                'subject': str(msg['subject']), 'to': [a.addr_spec for a in msg['to'].addresses],
                'parts': parts, 'raw_header_lines': [l for l in open(path, 'rb').read().split(b'\r\n\r\n')[0]
                                                     .decode('ascii', 'replace').split('\r\n')]})
print(json.dumps(out))
)PY";
  write_file(work / "headers.py", script);
  std::string args;
  for (const auto& m : server.messages()) args += " " + m.string();
  const auto mails = json::parse(output_of(std::string(python3_path) + " " + (work / "headers.py").string() + args));
  ASSERT_EQ(mails.size(), hostile.size());
  const std::set<std::string> expected_headers{"From",       "To",           "Subject",        "Date",
                                               "Message-ID", "MIME-Version", "Auto-Submitted", "Content-Type"};
  for (const auto& mail : mails) {
    std::set<std::string> names;
    std::string message_id;
    for (const auto& h : mail["headers"]) {
      names.insert(h[0].get<std::string>());
      if (h[0] == "Message-ID") message_id = h[1];
      EXPECT_EQ(lower(h[1].get<std::string>()).find("attacker"), std::string::npos) << h.dump();
    }
    EXPECT_EQ(names, expected_headers) << mail["headers"].dump();
    EXPECT_EQ(mail["defects"], 0);
    // Each raw header line is printable ASCII (names, if any, are encoded).
    for (const auto& line : mail["raw_header_lines"]) {
      const std::string l = line;
      EXPECT_TRUE(std::all_of(l.begin(), l.end(), [](char c) { return c >= 0x20 && c < 0x7f; })) << l;
      EXPECT_LE(l.size(), 998U);
    }
    ASSERT_EQ(subjects.count(message_id), 1U) << message_id;
    EXPECT_EQ(mail["subject"], subjects[message_id]);
    EXPECT_EQ(mail["to"], json::parse(R"(["referrals@hospital.example", "night@hospital.example"])"));
    EXPECT_EQ(mail["parts"], json::parse(R"(["text/plain", "application/pdf"])"));
  }
  // The envelope: exactly the configured recipients, from the configured sender.
  std::istringstream envelopes(read_file(server.envelopes()));
  int envelopes_seen = 0;
  for (std::string line; std::getline(envelopes, line);) {
    const auto e = json::parse(line);
    ++envelopes_seen;
    EXPECT_EQ(e["mail_from"], "referrald@hospital.example");
    EXPECT_EQ(e["rcpt_tos"], json::parse(R"(["referrals@hospital.example", "night@hospital.example"])")) << line;
  }
  EXPECT_EQ(envelopes_seen, static_cast<int>(hostile.size()));
}

// ---------------------------------------------------------------------------
// PHI never in logs; files 0600

struct Patient {
  std::string given, family, guardian_given, guardian_family;
  int year, month, day;

  std::string birth_date() const {
    char s[11];
    std::snprintf(s, sizeof s, "%04d-%02d-%02d", year, month, day);
    return s;
  }
  // Every way a log line could spell what identifies this patient.
  std::vector<std::string> phi() const {
    std::vector<std::string> out{given, family, guardian_given, guardian_family, birth_date()};
    if (auto dash = family.find('-'); dash != std::string::npos) {
      out.push_back(family.substr(0, dash));
      out.push_back(family.substr(dash + 1));
    }
    const auto y = std::to_string(year), m = std::to_string(month), d = std::to_string(day);
    char two_m[3], two_d[3];
    std::snprintf(two_m, sizeof two_m, "%02d", month);
    std::snprintf(two_d, sizeof two_d, "%02d", day);
    out.push_back(m + "/" + d + "/" + y);                       // US
    out.push_back(std::string(two_m) + "/" + two_d + "/" + y);  // US, zero-padded
    out.push_back(std::string(two_d) + "." + two_m + "." + y);  // European
    out.push_back(y + two_m + two_d);                           // compact
    return out;
  }
};

std::string referral_for(const Patient& p, const std::string& urgency, const std::string& postal_code) {
  auto doc = json::parse(sample("asps-routine.json"));
  doc["patient"]["given_name"] = p.given;
  doc["patient"]["family_name"] = p.family;
  doc["patient"]["birth_date"] = p.birth_date();
  doc["patient"]["postal_code"] = postal_code;
  doc["patient"]["guardian"]["name"] = p.guardian_given + " " + p.guardian_family;
  doc["urgency"] = urgency;
  return doc.dump();
}

Fields form_for(const Patient& p, const std::string& urgency, const std::string& npi) {
  return {{"patient.given_name", p.given},
          {"patient.family_name", p.family},
          {"patient.birth_date", p.birth_date()},
          {"patient.sex", "female"},
          {"patient.postal_code", "72401"},
          {"patient.guardian.name", p.guardian_given + " " + p.guardian_family},
          {"patient.guardian.phone", "+1 901 555 0142"},
          {"patient.guardian.relationship", "mother"},
          {"diagnosis.name", "Alveolar soft part sarcoma"},
          {"referrer.name", "Dana Whitfield"},
          {"referrer.credential", "MD"},
          {"referrer.npi", npi},
          {"referrer.organization", "Delta Pediatrics"},
          {"referrer.phone", "+1 870 555 0100"},
          {"referrer.email", "dwhitfield@example.org"},
          {"urgency", urgency},
          {"notes", "Family prefers mornings."}};
}

// The files and directories under `root`, relative, with their modes.
std::map<std::string, unsigned> modes_under(const fs::path& root) {
  std::map<std::string, unsigned> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0) continue;  // gone meanwhile (a temp file)
    out[fs::relative(it->path(), root).string()] = st.st_mode;
  }
  return out;
}

TEST(Privacy, NoPatientDataInAnyLogLineAndEveryFileIsPrivate) {
  HylafaxServer fax;
  fax.start();
  MailServer mail({});
  TempDir outside;  // secrets and referralctl's output: not the daemon's files
  write_file(outside / "hylafax-password", "secret\n");
  const unsigned short dead_port = free_port();  // nothing listens: every attempt fails

  Daemon::Options options;
  options.with_default_targets = false;
  options.extra_config =
      "\n[log]\nlevel = \"trace\"\n"
      // The backup target must still be retrying after the restart, however slow the machine.
      "\n[delivery]\nmax_attempts = 1000\ninitial_backoff = \"200ms\"\nmax_backoff = \"500ms\"\n" +
      smtp_target(mail, outside / "smtp") +
      "\n[[target]]\nname = \"office-backup\"\ntype = \"smtp\"\nurl = \"smtp://127.0.0.1:" + std::to_string(dead_port) +
      "\"\nca_file = \"" + mail.ca_file().string() + "\"\nusername = \"referrald\"\npassword_file = \"" +
      (outside / "smtp" / "smtp-password").string() +
      "\"\nfrom = \"referrald@hospital.example\"\nto = [\"backup@hospital.example\"]\ntimeout = \"2s\"\n"
      "\n[[target]]\nname = \"office-archive\"\ntype = \"spool\"\ndirectory = \"spool/archive/office\"\n"
      "\n[[target]]\nname = \"office-pager\"\ntype = \"snpp\"\nhost = \"127.0.0.1:" +
      std::to_string(fax.snpp_port()) + "\"\nlogin = \"secure\"\npassword_file = \"" +
      (outside / "hylafax-password").string() +
      "\"\npager_id = \"5551234\"\nhylafax = true\ntimeout = \"20s\"\n"
      "\n[[route]]\nnotify = [\"office-email\", \"office-backup\", \"office-archive\"]\n"
      "\n[[route]]\nwhen = { urgency = [\"urgent\", \"emergent\"] }\nnotify = [\"office-pager\"]\n";
  Daemon daemon{options};
  const auto before_start = modes_under(daemon.dir());
  daemon.start();

  const std::vector<Patient> patients{
      {"Zephyrine", "Quillfeather", "Thaddeus", "Brightwater", 2014, 7, 19},       // API, accepted, urgent
      {"Anselma", "Rosenkrantz-Oyelowo", "Perpetua", "Vandersloot", 2012, 11, 3},  // API, review
      {"Ignatius", "Wolfenden", "Hortensia", "Blackwood", 1990, 2, 14},            // API, declined (age), emergent
      {"Cornelius", "Featherstonehaugh", "Wilhelmina", "Ashcombe", 2015, 4, 27},   // API, invalid (422)
      {"Marguerite", "Oyelaran-Tiwari", "Barnaby", "Fitzwilliam", 2016, 9, 8},     // form, accepted, urgent
      {"Leopoldine", "Hawksworth", "Evander", "Pemberton", 2013, 1, 30},           // form, invalid (422)
      {"Octavian", "Greyhallow", "Clementine", "Ravensworth", 2011, 6, 21},        // API, malformed (400)
  };
  std::vector<std::string> ids;
  auto post = [&](const std::string& body, long expected) {
    const auto r = daemon.post_referral(body);
    EXPECT_EQ(r.status, expected) << r.body;
    if (r.status == 202) ids.push_back(json::parse(r.body)["id"]);
  };
  post(referral_for(patients[0], "urgent", "72401"), 202);
  post(referral_for(patients[1], "routine", "77030"), 202);
  post(referral_for(patients[2], "emergent", "72401"), 202);
  auto invalid = json::parse(referral_for(patients[3], "routine", "72401"));
  invalid["referrer"]["npi"] = "1234567890";
  post(invalid.dump(), 422);
  const auto malformed = referral_for(patients[6], "routine", "72401");
  post(malformed.substr(0, malformed.size() - 40), 400);

  Browser browser{daemon};
  browser.open_form();
  const auto stored = browser.post(form_for(patients[4], "urgent", "1234567893"), {"Origin: " + daemon.base_url()});
  ASSERT_EQ(stored.status, 303) << stored.body;
  ids.push_back(stored.headers.at("location").substr(std::string("/referrals/").size()));
  EXPECT_EQ(browser.get(stored.headers.at("location")).status, 200);  // the confirmation
  browser.open_form();
  EXPECT_EQ(browser.post(form_for(patients[5], "routine", "1234567890"), {"Origin: " + daemon.base_url()}).status, 422);
  ASSERT_EQ(ids.size(), 4U);
  const std::vector<std::string> decisions{"accepted", "review", "declined", "accepted"};
  for (std::size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals WHERE id='" + ids[i] + "' AND decision='" +
                                                decisions[i] + "'"),
              1)
        << ids[i];
  }

  // Deliveries: four mails, three pages, four archived files, and the
  // backup target failing again and again.
  ASSERT_TRUE(wait_until([&] { return mail.messages().size() == 4; }, 30s)) << daemon.log();
  ASSERT_TRUE(wait_until([&] { return fax.jobs_where("jobtype", "pager").size() == 3; }, 30s)) << daemon.log();
  ASSERT_TRUE(wait_until(
      [&] {
        return count_rows(daemon.database(), "SELECT min(attempts) FROM deliveries WHERE target='office-backup'") >= 2;
      },
      30s))
      << daemon.log();

  // The files the daemon has created so far, while it runs (-wal, -shm).
  auto check_modes = [&](const char* when) {
    for (const auto& [name, mode] : modes_under(daemon.dir())) {
      if (before_start.count(name) != 0 || name.starts_with("daemon-")) continue;  // ours, not the daemon's
      if (S_ISDIR(mode)) {
        EXPECT_EQ(mode & 07777, 0700U) << when << ": directory " << name;
      } else {
        EXPECT_EQ(mode & 07777, 0600U) << when << ": file " << name;
      }
    }
  };
  const auto created = modes_under(daemon.dir());
  EXPECT_TRUE(created.count("var/referrald.db-wal")) << "the scenario should have a WAL file to check";
  EXPECT_TRUE(created.count("spool/archive/office")) << "the scenario should have a spool to check";
  check_modes("while running");

  // The operator's tools: stderr is a log too.
  const fs::path ctl = binary_dir() / "cli" / "referralctl";
  std::string ctl_stderr;
  int ctl_runs = 0;
  auto referralctl = [&](const std::string& args) {
    const auto err = outside / ("ctl-" + std::to_string(++ctl_runs) + ".err");
    const int status = shell("timeout 60 '" + ctl.string() + "' --config '" + daemon.config_file().string() + "' " +
                             args + " > '" + (outside / "ctl.out").string() + "' 2> '" + err.string() + "'");
    ctl_stderr += read_file(err);
    return status;
  };
  EXPECT_EQ(referralctl("list"), 0);
  EXPECT_EQ(referralctl("list --json"), 0);
  EXPECT_EQ(referralctl("show " + ids[0]), 0);
  EXPECT_EQ(referralctl("show --json " + ids[1]), 0);
  EXPECT_EQ(referralctl("queue"), 0);
  EXPECT_EQ(referralctl("retry " + ids[1]), 0);
  EXPECT_EQ(referralctl("cancel " + ids[2]), 0);
  EXPECT_NE(referralctl("show R-20200101-AAAAA-AAAAA"), 0);  // an error on stderr
  EXPECT_NE(referralctl("check /nonexistent.json"), 0);

  // A reload, then a restart whose lines are in the journal's format.
  daemon.process()->signal(SIGHUP);
  EXPECT_TRUE(wait_until([&] { return daemon.log().find("config.reloaded ") != std::string::npos; }, 10s))
      << daemon.log();
  EXPECT_EQ(daemon.stop(), 0);
  const auto journal_log = daemon.log_file();
  write_file(journal_log, "");
  struct stat st {};
  ASSERT_EQ(::stat(journal_log.c_str(), &st), 0);
  daemon.set_env("JOURNAL_STREAM", std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino));
  daemon.start();
  const auto attempts =
      count_rows(daemon.database(), "SELECT max(attempts) FROM deliveries WHERE target='office-backup'");
  EXPECT_TRUE(wait_until(
      [&] {
        return count_rows(daemon.database(), "SELECT max(attempts) FROM deliveries WHERE target='office-backup'") >
               attempts;
      },
      20s));
  check_modes("after the restart");
  EXPECT_EQ(daemon.stop(), 0);
  check_modes("after the stop");

  // Every log line, both generations.
  std::string logs;
  int log_files = 0;
  for (const auto& entry : fs::directory_iterator(daemon.dir())) {
    if (entry.path().filename().string().starts_with("daemon-")) {
      logs += read_file(entry.path());
      ++log_files;
    }
  }
  EXPECT_EQ(log_files, 2);
  EXPECT_NE(logs.find("<6>referrald.started "), std::string::npos) << "no journal-format generation";
  for (const auto& id : ids) EXPECT_NE(logs.find(id), std::string::npos) << "the logs should name " << id;
  EXPECT_NE(logs.find("delivery.failed id=" + ids[0] + " target=office-backup"), std::string::npos);
  EXPECT_NE(logs.find("status=422"), std::string::npos);
  EXPECT_NE(logs.find("status=400"), std::string::npos);
  const std::string haystack = lower(logs);
  const std::string ctl_haystack = lower(ctl_stderr);
  EXPECT_NE(ctl_stderr.find("R-20200101-AAAAA-AAAAA"), std::string::npos) << ctl_stderr;
  for (const auto& p : patients) {
    for (const auto& phi : p.phi()) {
      EXPECT_EQ(haystack.find(lower(phi)), std::string::npos) << "\"" << phi << "\" is in a daemon log line";
      EXPECT_EQ(ctl_haystack.find(lower(phi)), std::string::npos) << "\"" << phi << "\" is in referralctl's stderr";
    }
  }
  // Nor free text from a referral.
  EXPECT_EQ(haystack.find("family prefers mornings"), std::string::npos);

  // The pages HylaFAX queued: the reference number, nothing about the patient.
  for (const auto& job : fax.jobs_where("jobtype", "pager")) {
    const std::string data = job.get("data");
    ASSERT_EQ(data.rfind("0::docq/", 0), 0U) << data;
    const auto text = lower(read_file(fax.spool() / data.substr(3)));
    EXPECT_NE(text.find("r-"), std::string::npos) << text;
    for (const auto& p : patients) {
      for (const auto& phi : p.phi()) EXPECT_EQ(text.find(lower(phi)), std::string::npos) << phi << " in " << text;
    }
  }
}

}  // namespace
}  // namespace referrald::test
