// The smtp target against a real mail server: Debian's aiosmtpd with required
// STARTTLS and AUTH (tests/peers/smtp_server.py), a fresh self-signed
// certificate per test, the real referrald (and once its email adapter
// alone, for files of any size). What a person would check: the mail in
// the Maildir, decoded by Python's email module, its PDF read back with
// pdftotext; and the delivery's state through the API.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "adapters/smtp/smtp_adapter.hpp"
#include "support/harness.hpp"
#include "support/peers.hpp"
#include "util/sealed_spool.hpp"

namespace referrald::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

// The first value `sql` reads from the database file; "" when it reads no row.
std::string query(const fs::path& db, const std::string& sql) {
  const auto values = query_column(db, sql);
  return values.empty() ? std::string() : values.front();
}

Daemon::Options daemon_options(const MailServer& server, const SmtpTarget& t, const fs::path& secrets) {
  Daemon::Options o;
  o.with_default_targets = false;
  o.extra_config = "\n[delivery]\ninitial_backoff = \"200ms\"\nmax_backoff = \"1s\"\n" +
                   smtp_target(server, secrets, t) + "\n[[route]]\nnotify = [\"office-email\"]\n";
  return o;
}

// Polls the API until the referral's delivery reaches a final state.
json wait_for_final(Daemon& daemon, const std::string& id, std::chrono::seconds timeout = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  json delivery;
  while (std::chrono::steady_clock::now() < deadline) {
    const auto r = daemon.get("/api/v1/referrals/" + id);
    if (r.status == 200) {
      const auto body = json::parse(r.body);
      if (!body["deliveries"].empty()) {
        delivery = body["deliveries"][0];
        const std::string state = delivery["state"];
        if (state == "delivered" || state == "dead" || state == "cancelled") return delivery;
      }
    }
    std::this_thread::sleep_for(50ms);
  }
  ADD_FAILURE() << "delivery of " << id << " not final within " << timeout.count() << " s: " << delivery.dump();
  return delivery;
}

std::string post(Daemon& daemon, const std::string& body = sample("asps-routine.json")) {
  const auto r = daemon.post_referral(body);
  if (r.status != 202) throw std::runtime_error("POST answered " + std::to_string(r.status) + ": " + r.body);
  return json::parse(r.body)["id"];
}

// The mail as Python's email module reads it; the PDF attachment decoded to
// pdf_file.
json parse_mail(const fs::path& file, const fs::path& pdf_file) {
  const std::string script = R"PY(
import email, email.policy, json, sys
msg = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=email.policy.default)
out = {'subject': str(msg['subject']), 'message_id': str(msg['message-id']), 'from': str(msg['from']),
       'to': str(msg['to']), 'date': str(msg['date']), 'content_type': msg.get_content_type(),
       'defects': len(msg.defects), 'parts': []}
for part in msg.walk():
    if part.is_multipart():
        continue
    info = {'type': part.get_content_type(), 'filename': part.get_filename()}
    if part.get_content_type() == 'text/plain':
        info['text'] = part.get_content()
    if part.get_content_type() == 'application/pdf':
        open(sys.argv[2], 'wb').write(part.get_content())
    out['parts'].append(info)
print(json.dumps(out))
)PY";
  write_file(pdf_file.parent_path() / "parse.py", script);
  const std::string out = output_of(std::string(python3_path) + " " + (pdf_file.parent_path() / "parse.py").string() +
                                    " " + file.string() + " " + pdf_file.string());
  return json::parse(out);
}

std::string pdf_text(const fs::path& pdf) {
  return output_of("pdftotext -enc UTF-8 " + pdf.string() + " - 2>/dev/null");
}

TEST(Smtp, DeliversTheReferralAsPdfOverStarttlsWithAuth) {
  MailServer server({});
  TempDir work;
  Daemon daemon(daemon_options(server, {}, work / "secrets"));
  daemon.start();
  const auto r = daemon.post_referral(sample("asps-routine.json"));
  ASSERT_EQ(r.status, 202) << r.body;
  const std::string id = json::parse(r.body)["id"];
  const std::string decision = json::parse(r.body)["decision"];

  const auto delivery = wait_for_final(daemon, id);
  EXPECT_EQ(delivery["state"], "delivered") << delivery.dump() << "\n" << daemon.log();
  EXPECT_EQ(delivery["attempts"], 1);
  const auto mails = server.messages();
  ASSERT_EQ(mails.size(), 1U) << server.log();

  const auto mail = parse_mail(mails[0], work / "referral.pdf");
  EXPECT_EQ(mail["defects"], 0);
  EXPECT_EQ(mail["subject"], "Referral " + id + " (routine) — " + decision);
  EXPECT_EQ(mail["message_id"], "<" + id + ".office-email@referrald>");
  EXPECT_EQ(mail["from"], "Referral Office <referrald@hospital.example>");
  EXPECT_EQ(mail["to"], "referrals@hospital.example");
  EXPECT_FALSE(std::string(mail["date"]).empty());
  EXPECT_EQ(mail["content_type"], "multipart/mixed");
  ASSERT_EQ(mail["parts"].size(), 2U) << mail.dump();
  EXPECT_EQ(mail["parts"][0]["type"], "text/plain");
  const std::string text = mail["parts"][0]["text"];
  EXPECT_NE(text.find("Referred by: Dana Whitfield, MD, Delta Pediatrics"), std::string::npos) << text;
  EXPECT_NE(text.find("The referral is attached as PDF"), std::string::npos) << text;
  EXPECT_EQ(text.find("Nguyen"), std::string::npos) << "patient data in the text part";
  EXPECT_EQ(mail["parts"][1]["type"], "application/pdf");
  EXPECT_EQ(mail["parts"][1]["filename"], "referral-" + id + ".pdf");

  const std::string pdf = pdf_text(work / "referral.pdf");
  EXPECT_NE(pdf.find(id), std::string::npos) << pdf;
  EXPECT_NE(pdf.find("901-595-4011"), std::string::npos);
  EXPECT_NE(pdf.find("Ava Nguyen"), std::string::npos);
  EXPECT_NE(pdf.find("CONFIDENTIALITY NOTICE"), std::string::npos);

  // Logs name the referral, never the patient.
  EXPECT_NE(daemon.log().find("delivery.sent id=" + id + " target=office-email attempt=1"), std::string::npos);
  EXPECT_EQ(daemon.log().find("Nguyen"), std::string::npos);
}

// The email adapter streams each file from its spool into the message
// (MailStream): files of the sizes where base64 lines and spool blocks
// begin and end reach the real server byte for byte.
TEST(Smtp, SpooledFilesOfAnySizeArriveByteForByte) {
  MailServer server({});
  TempDir work;
  write_file(work / "smtp-password", "s3cret\n");
  TargetConfig target;
  target.name = "office-email";
  target.type = "smtp";
  target.settings["url"] = "smtp://127.0.0.1:" + std::to_string(server.port());
  target.settings["ca_file"] = server.ca_file().string();
  target.settings["username"] = std::string("referrald");
  target.settings["password_file"] = (work / "smtp-password").string();
  target.settings["from"] = std::string("Referral Office <referrald@hospital.example>");
  target.settings["to"] = std::vector<std::string>{"referrals@hospital.example"};
  CurlPool::global_init();
  CurlPool curl(1);
  SystemClock clock;
  SmtpAdapter adapter(target, curl, OfficeConfig{}, clock);

  Delivery d;
  d.referral_id = "R-20261128-7K3M9-TZQXA";
  d.target = "office-email";
  d.identity = d.referral_id + ".office-email";
  d.received_at = clock.now();
  d.document = json::parse(sample("asps-routine.json")).dump();
  std::mt19937 rng(13);
  std::vector<std::string> hashes;
  for (const std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{56}, std::size_t{57}, std::size_t{58},
                                 3 * SealedSpool::block_size + 1}) {
    std::string bytes(size, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng() & 0xFFu);
    auto spool = std::make_shared<SealedSpool>(work.path());
    spool->append(bytes);
    spool->finish();
    Attachment a;
    a.content_type = "application/pdf";
    a.sha256 = openssl_sha256_hex(bytes);
    a.spooled = std::move(spool);
    hashes.push_back(a.sha256);
    d.attachments.push_back(std::move(a));
  }

  boost::asio::io_context io;
  std::optional<Outcome> outcome;
  boost::asio::co_spawn(io, adapter.send(d), [&](std::exception_ptr e, Outcome o) {
    if (e) std::rethrow_exception(e);
    outcome = std::move(o);
  });
  io.run();
  ASSERT_TRUE(outcome);
  ASSERT_EQ(outcome->kind, OutcomeClass::delivered) << outcome->message << "\n" << server.log();
  const auto mails = server.messages();
  ASSERT_EQ(mails.size(), 1U) << server.log();
  const auto mail = mail_parts(mails[0], work.path());
  EXPECT_EQ(mail["defects"], 0);
  const auto& parts = mail["parts"];
  ASSERT_EQ(parts.size(), 2 + hashes.size()) << mail.dump();  // the text, the referral PDF, the files
  for (std::size_t i = 0; i < hashes.size(); ++i) {
    EXPECT_EQ(parts[2 + i]["filename"], "referral-" + d.referral_id + "-file-" + std::to_string(i + 1) + ".pdf");
    EXPECT_EQ(parts[2 + i]["sha256"], hashes[i]) << "file " << i + 1 << " of " << d.attachments[i].size() << " bytes";
  }
}

TEST(Smtp, ATemporaryRefusalIsRetriedAndEveryRecipientGetsOneMail) {
  MailServer server({.tls = true, .tempfail = 1});
  TempDir work;
  SmtpTarget target;
  target.to = {"referrals@hospital.example", "Night Desk <tempfail@hospital.example>"};
  Daemon daemon(daemon_options(server, target, work / "secrets"));
  daemon.start();
  const std::string id = post(daemon);

  const auto delivery = wait_for_final(daemon, id);
  EXPECT_EQ(delivery["state"], "delivered") << delivery.dump();
  EXPECT_EQ(delivery["attempts"], 2);
  // The first attempt stopped at the 451 before DATA: nobody got a copy then.
  const auto mails = server.messages();
  ASSERT_EQ(mails.size(), 1U);
  const auto mail = parse_mail(mails[0], work / "referral.pdf");
  EXPECT_EQ(mail["to"], "referrals@hospital.example, Night Desk <tempfail@hospital.example>");
  EXPECT_EQ(query(daemon.database(),
                  "SELECT group_concat(outcome || ':' || coalesce(code, ''), ',') FROM "
                  "(SELECT outcome, code FROM attempts ORDER BY attempt)"),
            "transient:451,delivered:");
  EXPECT_NE(daemon.log().find("class=transient code=451"), std::string::npos) << daemon.log();
}

TEST(Smtp, APermanentRefusalIsDeadAfterOneAttempt) {
  MailServer server({});
  TempDir work;
  SmtpTarget target;
  target.to = {"reject@hospital.example"};
  Daemon daemon(daemon_options(server, target, work / "secrets"));
  daemon.start();
  const std::string id = post(daemon);

  const auto delivery = wait_for_final(daemon, id);
  EXPECT_EQ(delivery["state"], "dead") << delivery.dump();
  EXPECT_EQ(delivery["attempts"], 1);
  EXPECT_NE(std::string(delivery.value("last_error", "")).find("550"), std::string::npos) << delivery.dump();
  EXPECT_EQ(query(daemon.database(), "SELECT outcome || ':' || code FROM attempts"), "permanent:550");
  EXPECT_TRUE(server.messages().empty());
}

TEST(Smtp, AWrongPasswordIsMisconfiguredAndLoud) {
  MailServer server({});
  TempDir work;
  SmtpTarget target;
  target.password = "wrong\n";
  Daemon daemon(daemon_options(server, target, work / "secrets"));
  daemon.start();
  const std::string id = post(daemon);

  const auto delivery = wait_for_final(daemon, id);
  EXPECT_EQ(delivery["state"], "dead") << delivery.dump();
  EXPECT_EQ(delivery["attempts"], 1);
  EXPECT_EQ(query(daemon.database(), "SELECT outcome FROM attempts"), "misconfigured");
  const std::string log = daemon.log();
  EXPECT_NE(log.find(" error delivery.failed id=" + id + " target=office-email attempt=1 class=misconfigured code=535"),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find("wrong"), std::string::npos) << "the password reached the log";
  EXPECT_TRUE(server.messages().empty());
}

// The loader refuses to start without the file at all; a file that is there
// but unusable is found by the adapter, which keeps intake running.
TEST(Smtp, AnUnusablePasswordFileIsMisconfiguredButReferralsAreStillTaken) {
  MailServer server({});
  TempDir work;
  SmtpTarget target;
  target.password = "\n";
  Daemon daemon(daemon_options(server, target, work / "secrets"));
  daemon.start();
  EXPECT_NE(daemon.log().find(" error smtp.misconfigured target=office-email error=\"password_file "),
            std::string::npos)
      << daemon.log();
  const std::string id = post(daemon);
  const auto delivery = wait_for_final(daemon, id);
  EXPECT_EQ(delivery["state"], "dead");
  EXPECT_EQ(query(daemon.database(), "SELECT outcome FROM attempts"), "misconfigured");
}

TEST(Smtp, AServerWithoutStarttlsIsRefusedAndNothingGoesInClear) {
  MailServer server({.tls = false});
  TempDir work;
  make_certificate(work / "ca");  // some CA: the server never gets as far as showing a certificate
  SmtpTarget target;
  target.ca_file = work / "ca" / "cert.pem";
  Daemon daemon(daemon_options(server, target, work / "secrets"));
  daemon.start();
  const std::string id = post(daemon);

  const auto delivery = wait_for_final(daemon, id);
  EXPECT_EQ(delivery["state"], "dead") << delivery.dump();
  EXPECT_EQ(delivery["attempts"], 1);
  EXPECT_EQ(query(daemon.database(), "SELECT outcome FROM attempts"), "misconfigured");
  EXPECT_TRUE(server.messages().empty()) << "a message went out without TLS";
}

TEST(Smtp, ACertificateTheCaFileDoesNotVouchForIsRefused) {
  MailServer server({});
  TempDir work;
  make_certificate(work / "other-ca");
  SmtpTarget target;
  target.ca_file = work / "other-ca" / "cert.pem";  // an unrelated certificate
  Daemon daemon(daemon_options(server, target, work / "secrets"));
  daemon.start();
  const std::string id = post(daemon);

  const auto delivery = wait_for_final(daemon, id);
  EXPECT_EQ(delivery["state"], "dead") << delivery.dump();
  EXPECT_EQ(query(daemon.database(), "SELECT outcome FROM attempts"), "misconfigured");
  EXPECT_TRUE(server.messages().empty());
}

}  // namespace
}  // namespace referrald::test

namespace referrald::test {
namespace {

// kill -9 while mails are going out: after the restart every delivery
// completes; a repeat can only be a send that was in flight at the kill, and
// carries the same Message-ID, so the office can recognise it.
TEST(SmtpCrash, KillNineWhileSendingLosesNoDelivery) {
  MailServer server({});
  TempDir work;
  Daemon daemon(daemon_options(server, {}, work / "secrets"));
  // The server stores each mail and then takes 30 s to say so: the first
  // sends are still in flight, and the rest queued, whenever the kill
  // comes, however fast the daemon takes the referrals in and sends.
  server.confirm_slowly(true);
  daemon.start();
  constexpr int referrals = 40;
  std::set<std::string> ids;
  for (int i = 0; i < referrals; ++i) ids.insert(post(daemon));
  // Kill as soon as the first mails have arrived.
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (server.messages().empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  daemon.kill9();
  const auto delivered_at_kill = server.messages().size();
  EXPECT_GT(delivered_at_kill, 0U) << "no mail was in flight";
  EXPECT_LT(delivered_at_kill, static_cast<std::size_t>(referrals)) << "the kill came too late to prove anything";

  server.confirm_slowly(false);
  daemon.start();
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < until &&
         query(daemon.database(), "SELECT count(*) FROM deliveries WHERE state = 'delivered'") !=
             std::to_string(referrals)) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(query(daemon.database(), "SELECT count(*) FROM deliveries WHERE state = 'delivered'"),
            std::to_string(referrals))
      << daemon.log();

  const auto copies = server.message_ids();
  int repeats = 0;
  for (const auto& id : ids) {
    const auto it = copies.find(id + ".office-email@referrald");
    ASSERT_NE(it, copies.end()) << "no mail for " << id;
    repeats += it->second - 1;
  }
  EXPECT_EQ(copies.size(), ids.size());  // nothing but these referrals' mails
  // Only sends in flight at the kill may repeat: at most the target's concurrency.
  EXPECT_LE(repeats, 4) << repeats << " repeated mails";
  RecordProperty("repeated_mails", repeats);
  EXPECT_EQ(daemon.stop(), 0);
}

}  // namespace
}  // namespace referrald::test
