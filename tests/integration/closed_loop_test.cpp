// The closed loop against the real daemon and real peers: the escalation
// ladder pages the backup pager through HylaFAX's SNPP server when nobody
// acknowledges an emergent referral, stops when somebody does, fires a step
// once across a restart; a status change sends the referring clinician a
// notice by email (a second aiosmtpd mailbox) and by fax (HylaFAX); a
// referral for a patient with an open referral is marked a possible
// duplicate. Status changes are made with the store library on the same
// SQLite file, as referralctl makes them.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "store/database.hpp"
#include "store/office.hpp"
#include "store/store.hpp"
#include "support/harness.hpp"
#include "support/peers.hpp"
#include "util/key_ring.hpp"

namespace referrald::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::string emergent_referral(const std::string& given = "Mateo", const std::string& family = "Ortiz",
                              bool with_fax = true) {
  json doc = json::parse(sample("asps-urgent.json"));
  doc["urgency"] = "emergent";
  doc["patient"]["given_name"] = given;
  doc["patient"]["family_name"] = family;
  if (with_fax) doc["referrer"]["fax"] = "+1 (251) 555-0191";
  return doc.dump();
}

std::string post(Daemon& daemon, const std::string& body) {
  const auto r = daemon.post_referral(body);
  if (r.status != 202) throw std::runtime_error("POST failed: " + std::to_string(r.status) + " " + r.body);
  return json::parse(r.body)["id"].get<std::string>();
}

// The HylaFAX server's fax and SNPP targets, and a ladder that pages the
// backup pager `after` an emergent referral arrived unacknowledged.
Daemon::Options ladder_options(const HylafaxServer& server, const std::string& after) {
  Daemon::Options o;
  o.with_default_targets = false;
  const std::string snpp = "type = \"snpp\"\nhost = \"127.0.0.1:" + std::to_string(server.snpp_port()) +
                           "\"\nlogin = \"secure\"\npassword_file = \"secrets/hylafax-password\"\n"
                           "hylafax = true\nhylafax_port = " +
                           std::to_string(server.fax_port()) + "\ntimeout = \"20s\"\n";
  o.extra_config = R"(
[delivery]
initial_backoff = "1s"
max_backoff = "2s"

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

[[target]]
name = "backup-pager"
pager_id = "5559999"
)" + snpp + R"(
[[route]]
notify = ["office-fax"]

[[escalation]]
urgency = ["emergent"]
steps = [ { after = ")" +
                   after + R"(", notify = ["backup-pager"] } ]
)";
  return o;
}

void write_password(const Daemon& daemon) { write_file(daemon.dir() / "secrets" / "hylafax-password", "secret\n"); }

// A status change as referralctl makes it: the store library on the
// daemon's database file, in a transaction of its own.
store::StatusChangeResult change_status(const Daemon& daemon, const std::string& id, OfficeStatus to,
                                        std::optional<std::string> note = {}, std::vector<std::string> notices = {}) {
  store::Database db(daemon.database(), store::OpenMode::read_write);
  std::vector<KeyFileProblem> problems;
  db.set_payload_keys(read_key_file(daemon.key_file(), KeyFilePrivacy::owner_only, problems));
  store::WriteTransaction write(db);
  store::StatusChange change;
  change.referral_id = id;
  change.to = to;
  change.actor = "nurse";
  change.note = std::move(note);
  change.at = std::chrono::system_clock::now();
  change.notice_targets = std::move(notices);
  auto result = store::change_status(db, change);
  write.commit();
  return result;
}

std::string pdf_text(const fs::path& pdf, const fs::path& out) {
  if (shell("pdftotext -layout " + pdf.string() + " " + out.string()) != 0) return {};
  return read_file(out);
}

// Waits until the referral's delivery to `target` for `purpose` is
// delivered: only then has the peer written the whole job file.
bool delivered(const Daemon& daemon, const std::string& id, const std::string& target, const std::string& purpose) {
  return wait_until(
      [&] {
        return query_text(daemon.database(), "SELECT state FROM deliveries WHERE referral_id = '" + id +
                                                 "' AND target = '" + target + "' AND purpose = '" + purpose + "'") ==
               "delivered";
      },
      60s);
}

std::string escalation_state(const Daemon& daemon, const std::string& id) {
  return query_text(daemon.database(), "SELECT state FROM escalations WHERE referral_id = '" + id + "' AND step = 1")
      .value_or("(none)");
}

TEST(ClosedLoop, UnacknowledgedEmergentReferralPagesTheBackupPager) {
  HylafaxServer server;
  server.start();
  Daemon daemon(ladder_options(server, "2s"));
  write_password(daemon);
  daemon.start();

  const std::string id = post(daemon, emergent_referral());
  const std::string sender = id + ".backup-pager.escalation-1";
  ASSERT_TRUE(delivered(daemon, id, "backup-pager", "escalation-1")) << "no page to the backup pager\n" << daemon.log();
  ASSERT_TRUE(delivered(daemon, id, "office-fax", "intake")) << daemon.log();
  const auto pages = server.jobs_where("sender", sender);
  ASSERT_EQ(pages.size(), 1U);
  EXPECT_EQ(pages[0].get("page"), "0::5559999");
  const auto text = read_file(server.spool() / pages[0].get("data").substr(3));
  EXPECT_NE(text.find("ESC"), std::string::npos) << text;
  EXPECT_NE(text.find(id), std::string::npos) << text;
  EXPECT_NE(text.find("1-888-226-4343"), std::string::npos) << "the office's call-back number: " << text;
  for (const char* never : {"Mateo", "Ortiz", "2011", "http", "/ack/"}) {
    EXPECT_EQ(text.find(never), std::string::npos) << never << " in the page: " << text;
  }
  EXPECT_EQ(escalation_state(daemon, id), "fired");
  EXPECT_EQ(count_rows(daemon.database(),
                       "SELECT count(*) FROM deliveries WHERE referral_id = '" + id + "' AND purpose = 'escalation-1'"),
            1);

  // The office's fax (the intake notification) carries the one-tap link;
  // only its hash is stored.
  const auto faxes = server.jobs_where("jobtag", id + ".office-fax");
  ASSERT_EQ(faxes.size(), 1U);
  const auto cover = pdf_text(server.spool() / faxes[0].get("pdf").substr(3), daemon.dir() / "fax.txt");
  const auto link_at = cover.find(daemon.base_url() + "/ack/");
  ASSERT_NE(link_at, std::string::npos) << cover;
  const std::string token = cover.substr(link_at + daemon.base_url().size() + 5, 43);
  // What the store keeps is the token's SHA-256, computed here by the openssl
  // CLI. (Each attempt makes a token of its own: a retried fax leaves two.)
  const std::string hash = output_of("printf %s '" + token + "' | openssl dgst -sha256 -r | cut -d' ' -f1");
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM ack_tokens WHERE referral_id = '" + id +
                                              "' AND token_hash = '" + hash.substr(0, 64) + "'"),
            1)
      << token;
}

TEST(ClosedLoop, AcknowledgedBeforeTheStepNothingEscalates) {
  HylafaxServer server;
  server.start();
  Daemon daemon(ladder_options(server, "4s"));
  write_password(daemon);
  daemon.start();

  const std::string id = post(daemon, emergent_referral());
  const auto result = change_status(daemon, id, OfficeStatus::acknowledged);
  ASSERT_TRUE(result.changed) << result.refusal.value_or("");
  if (result.escalations_stopped != 1) GTEST_SKIP() << "the step fired before the test could acknowledge it";
  EXPECT_EQ(escalation_state(daemon, id), "stopped");

  // Past the step's time, and a later referral's step has fired since: the
  // timer has looked at the ladder after the first step's time.
  const std::string later = post(daemon, emergent_referral("Ana", "Lopez"));
  ASSERT_TRUE(wait_until([&] { return escalation_state(daemon, later) == "fired"; }, 60s)) << daemon.log();
  EXPECT_EQ(escalation_state(daemon, id), "stopped");
  EXPECT_EQ(count_rows(daemon.database(),
                       "SELECT count(*) FROM deliveries WHERE referral_id = '" + id + "' AND purpose <> 'intake'"),
            0);
  EXPECT_TRUE(server.jobs_where("sender", id + ".backup-pager.escalation-1").empty());
}

TEST(ClosedLoop, AStepThatPassedWhileStoppedFiresOnceAtStart) {
  HylafaxServer server;
  server.start();
  Daemon daemon(ladder_options(server, "5s"));
  write_password(daemon);
  daemon.start();
  const std::string id = post(daemon, emergent_referral());
  ASSERT_EQ(daemon.stop(), 0);
  if (escalation_state(daemon, id) != "pending") GTEST_SKIP() << "the step fired before the daemon stopped";

  const auto due_ms = count_rows(daemon.database(), "SELECT due_ms FROM escalations WHERE referral_id = '" + id + "'");
  const auto now_ms = [] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  while (now_ms() <= due_ms) std::this_thread::sleep_for(100ms);

  daemon.start();
  const std::string sender = id + ".backup-pager.escalation-1";
  ASSERT_TRUE(delivered(daemon, id, "backup-pager", "escalation-1")) << daemon.log();
  // Once: another restart sends nothing more.
  ASSERT_EQ(daemon.stop(), 0);
  daemon.start();
  const std::string later = post(daemon, sample("asps-routine.json"));
  ASSERT_TRUE(delivered(daemon, later, "office-fax", "intake")) << daemon.log();
  EXPECT_EQ(server.jobs_where("sender", sender).size(), 1U);
  EXPECT_EQ(count_rows(daemon.database(),
                       "SELECT count(*) FROM deliveries WHERE referral_id = '" + id + "' AND purpose = 'escalation-1'"),
            1);
  EXPECT_EQ(count_rows(daemon.database(),
                       "SELECT count(*) FROM audit WHERE referral_id = '" + id + "' AND action = 'escalated'"),
            1);
}

TEST(ClosedLoop, StatusChangeSendsTheReferrerANoticeByEmailAndFax) {
  MailServer office({});
  MailServer referrer({});
  HylafaxServer fax;
  fax.start();
  TempDir secrets;
  Daemon::Options o;
  o.with_default_targets = false;
  SmtpTarget to_referrer;
  to_referrer.name = "referrer-email";
  to_referrer.to.clear();
  std::string referrer_table = smtp_target(referrer, secrets.path(), to_referrer);
  // recipient = "referrer" takes the place of `to`.
  const auto to_line = referrer_table.find("\nto = ");
  if (to_line != std::string::npos) referrer_table.erase(to_line + 1, referrer_table.find('\n', to_line + 1) - to_line);
  referrer_table += "recipient = \"referrer\"\n";
  o.extra_config = smtp_target(office, secrets.path() / "office") + referrer_table + R"(
[[target]]
name = "referrer-fax"
type = "hylafax"
recipient = "referrer"
host = "127.0.0.1:)" +
                   std::to_string(fax.fax_port()) +
                   R"("
user = "secure"
password_file = "secrets/hylafax-password"
timeout = "20s"

[[route]]
notify = ["office-email"]

[closed_loop]
on = ["acknowledged", "needs-info"]
notify = ["referrer-email", "referrer-fax"]
)";
  Daemon daemon(o);
  write_password(daemon);
  daemon.start();

  const std::string id = post(daemon, emergent_referral());
  ASSERT_TRUE(wait_until([&] { return office.messages().size() == 1; }, 60s)) << daemon.log();
  std::string office_mail = read_file(office.messages()[0]);
  for (std::size_t at; (at = office_mail.find("=\r\n")) != std::string::npos;) office_mail.erase(at, 3);
  EXPECT_NE(office_mail.find(daemon.base_url() + "/ack/"), std::string::npos)
      << "the office's email carries the one-tap link";

  const std::string note = "Please fax the chest CT report for Mateo.";
  const auto changed = change_status(daemon, id, OfficeStatus::needs_info, note, {"referrer-email", "referrer-fax"});
  ASSERT_FALSE(changed.changed) << "received cannot go to needs-info directly";
  ASSERT_TRUE(change_status(daemon, id, OfficeStatus::acknowledged).changed);
  const auto asked = change_status(daemon, id, OfficeStatus::needs_info, note, {"referrer-email", "referrer-fax"});
  ASSERT_TRUE(asked.changed) << asked.refusal.value_or("");
  EXPECT_EQ(asked.notices, 2);

  ASSERT_TRUE(wait_until([&] { return referrer.messages().size() == 1; }, 60s)) << daemon.log();
  const auto mail = read_file(referrer.messages()[0]);
  const auto envelopes = read_file(referrer.envelopes());
  EXPECT_NE(envelopes.find("praman@example.org"), std::string::npos) << envelopes;
  EXPECT_NE(mail.find("Subject: Your referral " + id + ": needs-info"), std::string::npos) << mail;
  // quoted-printable may fold long lines: compare without soft breaks.
  std::string body = mail;
  for (std::size_t at; (at = body.find("=\r\n")) != std::string::npos;) body.erase(at, 3);
  EXPECT_NE(body.find("Please fax the chest CT report"), std::string::npos) << body;
  EXPECT_NE(body.find("M. O., born 2011"), std::string::npos) << body;
  EXPECT_NE(body.find("1-888-226-4343"), std::string::npos) << body;
  EXPECT_EQ(body.find("Ortiz"), std::string::npos) << "the patient only by initials: " << body;
  EXPECT_EQ(body.find("2011-07-21"), std::string::npos) << body;
  EXPECT_EQ(body.find("application/pdf"), std::string::npos) << "no referral attached";
  EXPECT_EQ(body.find("/ack/"), std::string::npos) << "no acknowledgement link for the referrer";

  const std::string tag = id + ".referrer-fax.notice-" + std::to_string(asked.change_id);
  ASSERT_TRUE(delivered(daemon, id, "referrer-fax", "notice-" + std::to_string(asked.change_id))) << daemon.log();
  const auto jobs = fax.jobs_where("jobtag", tag);
  ASSERT_EQ(jobs.size(), 1U);
  const auto& job = jobs[0];
  EXPECT_EQ(job.get("number"), "+12515550191");
  const auto text = pdf_text(fax.spool() / job.get("pdf").substr(3), daemon.dir() / "notice.txt");
  EXPECT_NE(text.find(id), std::string::npos) << text;
  EXPECT_NE(text.find("needs-info"), std::string::npos) << text;
  EXPECT_EQ(text.find("Ortiz"), std::string::npos) << text;
  // The acknowledgement was recorded without notices: only needs-info's two.
  EXPECT_EQ(count_rows(daemon.database(),
                       "SELECT count(*) FROM deliveries WHERE referral_id = '" + id + "' AND purpose GLOB 'notice-*'"),
            2);

  // A referral that gives no fax number: the fax notice is skipped and
  // says why; the email goes out.
  const std::string no_fax = post(daemon, emergent_referral("Ana", "Lopez", false));
  ASSERT_TRUE(
      change_status(daemon, no_fax, OfficeStatus::acknowledged, std::nullopt, {"referrer-email", "referrer-fax"})
          .changed);
  ASSERT_TRUE(wait_until([&] {
    return query_text(daemon.database(), "SELECT state FROM deliveries WHERE referral_id = '" + no_fax +
                                             "' AND target = 'referrer-fax'") == "cancelled";
  })) << daemon.log();
  EXPECT_EQ(query_text(daemon.database(), "SELECT last_error FROM deliveries WHERE referral_id = '" + no_fax +
                                              "' AND target = 'referrer-fax'"),
            "the referral gives no fax number for the referrer");
  EXPECT_EQ(count_rows(daemon.database(),
                       "SELECT count(*) FROM audit WHERE referral_id = '" + no_fax + "' AND action = 'skipped'"),
            1);
  EXPECT_EQ(count_rows(daemon.database(),
                       "SELECT count(*) FROM attempts JOIN deliveries d ON d.id = delivery_id "
                       "WHERE d.referral_id = '" +
                           no_fax + "' AND d.target = 'referrer-fax'"),
            0);
  EXPECT_TRUE(wait_until([&] { return referrer.messages().size() == 2; }, 60s));
}

TEST(ClosedLoop, APatientWithAnOpenReferralIsMarkedAPossibleDuplicate) {
  Daemon daemon(Daemon::Options{});
  daemon.start();
  const std::string first = post(daemon, emergent_referral("Mateo", "Ortiz"));
  // The same patient written another way; then another patient.
  const std::string again = post(daemon, emergent_referral("MATEO", "ortíz"));
  const std::string other = post(daemon, emergent_referral("Mateo", "Ortega"));

  const auto duplicate_of = [&](const std::string& id) {
    return query_text(daemon.database(), "SELECT coalesce(duplicate_of, '') FROM referrals WHERE id = '" + id + "'");
  };
  EXPECT_EQ(duplicate_of(first), "");
  EXPECT_EQ(duplicate_of(again), first);
  EXPECT_EQ(duplicate_of(other), "");
  // No identity in the clear: the hash is 64 hex digits.
  const auto hash = query_text(daemon.database(), "SELECT identity_hash FROM referrals WHERE id = '" + first + "'");
  ASSERT_TRUE(hash);
  EXPECT_EQ(hash->size(), 64U);

  // The office's notification says so.
  const auto file = daemon.spool("office-email") / (again + ".office-email.json");
  ASSERT_TRUE(wait_until([&] { return fs::exists(file); })) << daemon.log();
  EXPECT_EQ(json::parse(read_file(file)).value("duplicate_of", ""), first);

  // A closed referral is not open: a new one for the patient is no duplicate of it.
  ASSERT_TRUE(change_status(daemon, first, OfficeStatus::closed).changed);
  ASSERT_TRUE(change_status(daemon, again, OfficeStatus::closed).changed);
  const std::string later = post(daemon, emergent_referral("Mateo", "Ortiz"));
  EXPECT_EQ(duplicate_of(later), "");
}

TEST(ClosedLoop, CheckConfigAndStartJudgeTheIdentityKeyFile) {
  Daemon::Options o;
  o.extra_config = "\n[intake]\nidentity_key = \"identity-key\"\n";
  Daemon daemon(o);
  write_file(daemon.dir() / "identity-key", "too-short\n");
  const fs::path out = daemon.dir() / "check.out";
  const auto check = [&] {
    const int status = shell("'" + referrald_binary().string() + "' --check-config --config '" +
                             daemon.config_file().string() + "' > '" + out.string() + "' 2>&1");
    return std::pair{status, read_file(out)};
  };
  const auto [refused, message] = check();
  EXPECT_NE(refused, 0);
  EXPECT_NE(message.find("intake.identity_key " + (daemon.dir() / "identity-key").string() +
                         ": the secret must be at least 32 characters"),
            std::string::npos)
      << message;
  EXPECT_EQ(message.find("too-short"), std::string::npos) << "never the secret: " << message;

  write_file(daemon.dir() / "identity-key", std::string(64, 'a') + "\n");
  EXPECT_EQ(check().first, 0) << check().second;
  daemon.start();
  const std::string first = post(daemon, emergent_referral());
  const std::string again = post(daemon, emergent_referral());
  EXPECT_EQ(query_text(daemon.database(), "SELECT duplicate_of FROM referrals WHERE id = '" + again + "'"), first);
}

}  // namespace
}  // namespace referrald::test
