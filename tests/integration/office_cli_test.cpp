// The office's side of a referral through the real referralctl binary, on
// databases filled by the real daemon: ack, decide and close (the status
// rules, the notes sealed at rest, the referrer's notices sent by the
// running daemon), show's status history and escalation steps, list
// --status and --overdue, audit verify against a row changed behind its
// back, purge keeping the chain whole, and rekey re-sealing notes. Each case
// on SQLite and on PostgreSQL, what only a file shows on SQLite.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <pwd.h>
#include <unistd.h>

#include <regex>
#include <set>
#include <thread>

#include "support/harness.hpp"
#include "support/postgres.hpp"
#include "util/strings.hpp"

namespace referrald::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

// Whom referralctl records: the effective user (no sudo in ctl()'s environment).
std::string effective_user() {
  const passwd* pw = ::getpwuid(::geteuid());
  return pw != nullptr ? pw->pw_name : "uid " + std::to_string(::geteuid());
}

// Notices of status changes go to an ordinary spool target here: what the
// referrer's own targets do with them is the dispatcher's tests' business.
Daemon::Options office_options(bool encryption = true) {
  Daemon::Options o;
  o.encryption = encryption;
  o.extra_config = R"(
[[target]]
name = "office-log"
type = "spool"
directory = "spool/office-log"

[closed_loop]
on = ["acknowledged", "accepted", "declined", "needs-info"]
notify = ["office-log"]
)";
  return o;
}

class OfficeCliBase : public ::testing::Test {
 protected:
  explicit OfficeCliBase(Backend backend) : store(backend), daemon(store.with(office_options())) {}
  void SetUp() override {
    fs::create_directories(daemon.spool("office-log"));
    daemon.start();
  }

  std::string config() const { return daemon.config_file().string(); }
  std::string db() const { return daemon.database().string(); }

  std::string post(const std::string& body = sample("asps-urgent.json")) {
    const auto r = daemon.post_referral(body);
    EXPECT_EQ(r.status, 202) << r.body;
    return json::parse(r.body)["id"];
  }

  CtlRun office(const std::vector<std::string>& args) {
    std::vector<std::string> all{"--config", config()};
    all.insert(all.end(), args.begin(), args.end());
    return ctl(all);
  }

  json show(const std::string& id) {
    const auto r = office({"show", "--json", id});
    EXPECT_EQ(r.status, 0) << describe(r);
    return r.parsed();
  }

  // referralctl on the daemon's store without its configuration: --db FILE
  // (SQLite) or, PostgreSQL having no file, the configuration.
  std::vector<std::string> on(std::vector<std::string> args) const { return store.ctl_args(daemon, std::move(args)); }
  // SQL behind referrald's back, on either backend: a count, or the rows a change changed.
  long long sql(const std::string& statement) const { return store.scalar(daemon, statement); }

  DaemonStore store;
  Daemon daemon;
};

// Each case on SQLite and on PostgreSQL (.../SQLite, .../PostgreSQL).
class OfficeCli : public OfficeCliBase, public ::testing::WithParamInterface<Backend> {
 protected:
  OfficeCli() : OfficeCliBase(GetParam()) {}
};
INSTANTIATE_TEST_SUITE_P(Backends, OfficeCli, both_backends, backend_param_name);

// What only a SQLite file shows: the bytes on disk.
class OfficeCliSqlite : public OfficeCliBase {
 protected:
  OfficeCliSqlite() : OfficeCliBase(Backend::sqlite) {}
};

TEST_P(OfficeCli, AckDecideAndCloseMoveTheStatusRecordWhoAndTellTheReferrer) {
  const std::string id = post();
  const std::string user = effective_user();

  // Each notice is a delivery of its own, which the running daemon sends.
  const auto notices = [&](const std::string& state) {
    return sql("SELECT count(*) FROM deliveries WHERE referral_id = '" + id +
               "' AND target = 'office-log' AND purpose LIKE 'notice-%'" +
               (state.empty() ? std::string() : " AND state = '" + state + "'"));
  };
  const auto sent = [&](long long n) {
    EXPECT_TRUE(wait_until([&] { return notices("delivered") == n; }, 15s)) << n << "\n" << daemon.log();
  };

  const auto ack = office({"ack", id, "--note", "Seen by the on-call nurse", "--json"});
  ASSERT_EQ(ack.status, 0) << describe(ack);
  const auto a = ack.parsed();
  EXPECT_EQ(a["referral_id"], id);
  EXPECT_EQ(a["from"], "received");
  EXPECT_EQ(a["to"], "acknowledged");
  EXPECT_EQ(a["actor"], user);
  EXPECT_EQ(a["note"], true);
  EXPECT_EQ(a["notices_planned"], 1);
  EXPECT_EQ(a["notice_targets"], json::array({"office-log"}));
  EXPECT_EQ(a["escalations_stopped"], 0);
  sent(1);

  // The note from standard input (a here-document's final line break dropped).
  TempDir tmp;
  const int piped = shell("printf 'Please send the MRI report of 2026-11-02\\n' | env -u SUDO_USER NO_COLOR=1 " +
                          referralctl_binary().string() + " --config " + config() + " decide " + id +
                          " needs-info --note - > " + (tmp / "out").string() + " 2> " + (tmp / "err").string());
  ASSERT_EQ(piped, 0) << read_file(tmp / "err");
  EXPECT_EQ(read_file(tmp / "out"), id + ": acknowledged -> needs-info (with a note); recorded as " + user +
                                        "\nthe referrer will be told: 1 notice (office-log), sent by the running "
                                        "daemon within seconds\n");
  sent(2);

  // needs-info may go back to acknowledged; then a decision, then closed.
  for (const std::vector<std::string>& step :
       {std::vector<std::string>{"ack", id}, std::vector<std::string>{"decide", id, "accepted"},
        std::vector<std::string>{"close", id, "--note", "First visit booked"}}) {
    const auto r = office(step);
    ASSERT_EQ(r.status, 0) << describe(r);
    if (step[0] == "ack") sent(3);
  }
  const auto closed = office({"show", id});
  ASSERT_EQ(closed.status, 0) << describe(closed);
  for (const std::string& expected :
       {std::string("  status        closed since "), std::string("  acknowledged  "), std::string("Status history"),
        std::string("cli  received -> acknowledged    Seen by the on-call nurse"),
        std::string("acknowledged -> needs-info  Please send the MRI report of 2026-11-02"),
        std::string("needs-info -> acknowledged  -"), std::string("accepted -> closed          First visit booked")}) {
    EXPECT_NE(closed.out.find(expected), std::string::npos) << expected << "\n" << closed.out;
  }

  const auto j = show(id);
  EXPECT_EQ(j["referral"]["status"], "closed");
  EXPECT_TRUE(j["referral"]["acknowledged_at"].is_string());
  EXPECT_TRUE(j["referral"]["duplicate_of"].is_null());
  ASSERT_EQ(j["status_history"].size(), 5U);
  const auto& first = j["status_history"][0];
  EXPECT_EQ(first["actor"], user);
  EXPECT_EQ(first["via"], "cli");
  EXPECT_EQ(first["from"], "received");
  EXPECT_EQ(first["to"], "acknowledged");
  EXPECT_EQ(first["note"], "Seen by the on-call nurse");
  EXPECT_EQ(j["status_history"][1]["note"], "Please send the MRI report of 2026-11-02");
  EXPECT_TRUE(j["status_history"][2]["note"].is_null());
  EXPECT_EQ(j["status_history"][4]["to"], "closed");
  // acknowledged_at is the first acknowledgement, not the later ones.
  EXPECT_EQ(j["referral"]["acknowledged_at"], first["at"]);

  // Four of the five changes are in closed_loop.on (closed is not): four notices.
  EXPECT_EQ(notices(""), 4);
  sent(4);

  // The audit trail says a note was given, never what it says; nor does the log.
  EXPECT_EQ(sql("SELECT count(*) FROM audit WHERE referral_id = '" + id + "' AND action = 'status'"), 5);
  EXPECT_EQ(sql("SELECT count(*) FROM audit WHERE referral_id = '" + id +
                "' AND action = 'status' AND detail LIKE '%note=yes%'"),
            3);
  EXPECT_EQ(sql("SELECT count(*) FROM audit WHERE detail LIKE '%MRI%' OR detail LIKE '%on-call%'"), 0);
  EXPECT_EQ(daemon.log().find("MRI report"), std::string::npos) << daemon.log();
}

TEST_P(OfficeCli, AChangeTheRulesForbidIsRefusedWithTheChangesAllowed) {
  const std::string id = post();
  const auto changes = [&] { return sql("SELECT count(*) FROM status_changes WHERE referral_id = '" + id + "'"); };

  const auto early = office({"decide", id, "accepted"});
  EXPECT_EQ(early.status, 6) << describe(early);
  EXPECT_EQ(early.err, "referralctl: " + id +
                           ": status is received: it can change to acknowledged or closed, "
                           "not to accepted\n");
  EXPECT_EQ(early.out, "");
  EXPECT_EQ(changes(), 0);

  ASSERT_EQ(office({"ack", id}).status, 0);
  const auto twice = office({"ack", id, "--json"});
  EXPECT_EQ(twice.status, 6);
  EXPECT_EQ(twice.err, "referralctl: " + id + ": status is already acknowledged\n");
  ASSERT_EQ(office({"close", id}).status, 0);
  const auto after_close = office({"decide", id, "declined", "--note", "too late"});
  EXPECT_EQ(after_close.status, 6);
  EXPECT_EQ(after_close.err, "referralctl: " + id + ": status is closed: it cannot change any more\n");
  EXPECT_EQ(changes(), 2);
  EXPECT_EQ(sql("SELECT count(*) FROM audit WHERE referral_id = '" + id + "' AND action = 'status'"), 2);

  // Unknown ids as elsewhere; ids in any case.
  const auto unknown = office({"ack", "R-20200101-AAAAA-AAAAA"});
  EXPECT_EQ(unknown.status, 1);
  EXPECT_EQ(unknown.err, "referralctl: no referral R-20200101-AAAAA-AAAAA\n");
  const std::string other = post();
  EXPECT_EQ(office({"ack", lower(other)}).status, 0);

  // Usage: a decision that is not one, an empty note, no configuration.
  EXPECT_EQ(office({"decide", other, "maybe"}).status, 2);
  EXPECT_EQ(office({"decide", other}).status, 2);
  const auto empty = office({"decide", other, "declined", "--note", "  "});
  EXPECT_EQ(empty.status, 2);
  EXPECT_NE(empty.err.find("--note: the note is empty"), std::string::npos) << empty.err;
  const auto long_note = office({"decide", other, "declined", "--note", std::string(4001, 'x')});
  EXPECT_EQ(long_note.status, 2);
  EXPECT_NE(long_note.err.find("--note: the note is 4,001 characters long; at most 4,000 are kept"), std::string::npos)
      << long_note.err;
  const auto with_db = ctl({"--db", db(), "close", other});
  EXPECT_EQ(with_db.status, 3);
  EXPECT_NE(with_db.err.find("needs referrald's configuration"), std::string::npos) << with_db.err;
  EXPECT_EQ(show(other)["referral"]["status"], "acknowledged");
}

TEST_F(OfficeCliSqlite, NotesAreSealedAtRestAndRekeyKeepsThemReadable) {
  const std::string id = post();
  const std::string note = "Mother reachable at 555-0199 after 5 pm";
  ASSERT_EQ(office({"ack", id, "--note", note}).status, 0);

  const std::string bytes = database_bytes(daemon.database());
  ASSERT_NE(bytes.find(id), std::string::npos);
  EXPECT_EQ(bytes.find("555-0199"), std::string::npos) << "the note is on disk in the clear";
  EXPECT_EQ(show(id)["status_history"][0]["note"], note);
  // Without the key (--db reads no configuration) the note cannot be shown.
  const auto keyless = ctl({"--db", db(), "show", id});
  EXPECT_EQ(keyless.status, 5) << describe(keyless);

  // A new key first, the old one kept; rekey re-seals the note too.
  const std::string old_key = read_file(daemon.key_file());
  const std::string new_key = new_key_line("test-2");
  write_key_file(daemon.key_file(), new_key + old_key);
  const auto rekey = office({"rekey", "--json"});
  ASSERT_EQ(rekey.status, 0) << describe(rekey);
  EXPECT_EQ(rekey.parsed()["notes_examined"], 1);
  EXPECT_EQ(rekey.parsed()["notes_rekeyed"], 1);
  EXPECT_EQ(sql("SELECT count(*) FROM audit WHERE referral_id = '" + id +
                "' AND action = 'rekeyed' AND detail LIKE 'note=% from=test-1 to=test-2'"),
            1);
  const auto again = office({"rekey"});
  ASSERT_EQ(again.status, 0) << describe(again);
  EXPECT_EQ(again.out,
            "rekeyed 0 referrals to key \"test-2\" (1 already under it), 0 status notes (1 already under "
            "it)\n");

  // The old key gone: the note still opens.
  write_key_file(daemon.key_file(), new_key);
  EXPECT_EQ(show(id)["status_history"][0]["note"], note);
  EXPECT_EQ(database_bytes(daemon.database()).find("555-0199"), std::string::npos);
}

TEST(OfficeCliPlain, RekeySealsNotesKeptInTheClearBeforeEncryption) {
  Daemon daemon(office_options(false));
  fs::create_directories(daemon.spool("office-log"));
  daemon.start();
  const auto r = daemon.post_referral(sample("asps-routine.json"));
  ASSERT_EQ(r.status, 202) << r.body;
  const std::string id = json::parse(r.body)["id"];
  const std::string config = daemon.config_file().string();
  ASSERT_EQ(ctl({"--config", config, "ack", id, "--note", "Clear-text note 8842"}).status, 0);
  EXPECT_NE(database_bytes(daemon.database()).find("Clear-text note 8842"), std::string::npos);
  ASSERT_EQ(daemon.stop(), 0);

  // Encryption enabled afterwards: rekey seals the note, which still reads.
  write_key_file(daemon.key_file(), new_key_line("k1"));
  write_file(daemon.config_file(),
             std::regex_replace(read_file(daemon.config_file()), std::regex("\\[storage\\]\n"),
                                "[storage]\nencryption_keys = \"" + daemon.key_file().filename().string() + "\"\n"));
  const auto rekey = ctl({"--config", config, "rekey", "--json"});
  ASSERT_EQ(rekey.status, 0) << describe(rekey);
  EXPECT_EQ(rekey.parsed()["notes_rekeyed"], 1);
  EXPECT_EQ(count_rows(daemon.database(),
                       "SELECT count(*) FROM audit WHERE action = 'rekeyed' AND detail LIKE "
                       "'note=% from=plaintext to=k1'"),
            1);
  EXPECT_EQ(database_bytes(daemon.database()).find("Clear-text note 8842"), std::string::npos);
  const auto shown = ctl({"--config", config, "show", "--json", id});
  ASSERT_EQ(shown.status, 0) << describe(shown);
  EXPECT_EQ(shown.parsed()["status_history"][0]["note"], "Clear-text note 8842");
}

TEST_P(OfficeCli, ListFiltersByStatusAndOverdueShowsWhatNobodyAcknowledged) {
  const std::string waiting = post();
  const std::string seen = post(referral_json("Ana", "2012-05-01", "Alveolar soft part sarcoma", "urgent"));
  const std::string decided = post(referral_json("Ben", "2013-06-02"));
  ASSERT_EQ(office({"ack", seen}).status, 0);
  ASSERT_EQ(office({"ack", decided}).status, 0);
  ASSERT_EQ(office({"decide", decided, "accepted"}).status, 0);

  const auto ids = [&](const std::vector<std::string>& args) {
    std::vector<std::string> all{"list", "--json"};
    all.insert(all.end(), args.begin(), args.end());
    const auto r = office(all);
    EXPECT_EQ(r.status, 0) << describe(r);
    std::set<std::string> out;
    const auto listed = r.parsed();
    for (const auto& x : listed["referrals"]) out.insert(x["id"]);
    return out;
  };
  EXPECT_EQ(ids({"--status", "received"}), std::set<std::string>{waiting});
  EXPECT_EQ(ids({"--status", "acknowledged,accepted"}), (std::set<std::string>{seen, decided}));
  EXPECT_EQ(ids({"--status", "accepted", "--urgency", "routine"}), std::set<std::string>{decided});
  EXPECT_TRUE(ids({"--status", "closed"}).empty());
  EXPECT_EQ(office({"list", "--status", "lost"}).status, 2);
  const auto listed = office({"list", "--json"}).parsed();
  EXPECT_EQ(listed["referrals"][0]["status"], "accepted");
  EXPECT_TRUE(listed["referrals"][0]["duplicate_of"].is_null());
  const auto table = office({"list"});
  EXPECT_NE(table.out.find("DECISION  URGENCY  STATUS        DISEASE"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("routine  accepted      asps"), std::string::npos) << table.out;

  // Nothing is overdue without an escalation step due.
  const auto none = office({"list", "--overdue"});
  ASSERT_EQ(none.status, 0) << describe(none);
  EXPECT_EQ(none.out, "no referral is overdue\n");

  // Ladders as intake plans them (steps written here: the daemon stopped, so
  // its escalation timer does not fire them meanwhile). `waiting`: step 1 due
  // two hours ago, step 2 still ahead; `seen`: its step due, but acknowledged.
  ASSERT_EQ(daemon.stop(), 0);
  const auto step = [&](const std::string& id, int n, const std::string& due) {
    ASSERT_EQ(
        sql("INSERT INTO escalations (referral_id, step, due_ms, after_s, targets, state) VALUES ('" + id + "', " +
            std::to_string(n) + ", " + due + ", " + std::to_string(900 * n) + ", 'office-pager', 'pending')"),
        1);
  };
  const std::string now_ms = store.backend() == Backend::sqlite
                                 ? "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
                                 : "CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)";
  step(waiting, 1, now_ms + " - 7200000");
  step(waiting, 2, now_ms + " + 3600000");
  step(seen, 1, now_ms + " - 7200000");

  const auto overdue = office({"list", "--overdue", "--json"});
  ASSERT_EQ(overdue.status, 0) << describe(overdue);
  const auto o = overdue.parsed();
  ASSERT_EQ(o["overdue"].size(), 1U) << o.dump(2);
  EXPECT_EQ(o["overdue"][0]["id"], waiting);
  EXPECT_EQ(o["overdue"][0]["urgency"], "urgent");
  EXPECT_EQ(o["overdue"][0]["step"], 1);
  // stats counts by status (kept by triggers), and the overdue.
  const auto stats = ctl(on({"stats", "--json"}));
  ASSERT_EQ(stats.status, 0) << describe(stats);
  EXPECT_EQ(stats.parsed()["referrals"]["by_status"],
            json::parse(R"({"received": 1, "acknowledged": 1, "accepted": 1, "declined": 0, "needs-info": 0,
                            "closed": 0})"));
  EXPECT_EQ(stats.parsed()["referrals"]["overdue"], 1);
  const auto stats_text = ctl(on({"stats"}));
  EXPECT_NE(
      stats_text.out.find("received 1  acknowledged 1  accepted 1  declined 0  needs-info 0  closed 0  overdue 1"),
      std::string::npos)
      << stats_text.out;

  const auto human = office({"list", "--overdue"});
  EXPECT_NE(human.out.find("RECEIVED             ID                      URGENCY  WAITING  STEP DUE"),
            std::string::npos)
      << human.out;
  EXPECT_NE(human.out.find(waiting + "  urgent   "), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("step 1 at "), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("(2h ago)"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("-- 1 referral not acknowledged past an escalation step"), std::string::npos) << human.out;
  EXPECT_EQ(office({"list", "--overdue", "--status", "received"}).status, 2);

  // show lists the ladder; ack stops what is still pending, and it is not overdue any more.
  const auto ladder = show(waiting)["escalations"];
  ASSERT_EQ(ladder.size(), 2U);
  EXPECT_EQ(ladder[0]["step"], 1);
  EXPECT_EQ(ladder[0]["state"], "pending");
  EXPECT_EQ(ladder[1]["after_s"], 1800);
  EXPECT_EQ(ladder[1]["targets"], json::array({"office-pager"}));
  const auto ack = office({"ack", waiting, "--json"});
  ASSERT_EQ(ack.status, 0) << describe(ack);
  EXPECT_EQ(ack.parsed()["escalations_stopped"], 2);
  EXPECT_EQ(office({"list", "--overdue", "--json"}).parsed()["overdue"].size(), 0U);
  const auto after = office({"show", waiting});
  EXPECT_NE(after.out.find("Escalation"), std::string::npos) << after.out;
  EXPECT_NE(after.out.find("office-pager  stopped "), std::string::npos) << after.out;
}

TEST_P(OfficeCli, AuditVerifyPassesThenNamesTheRowChangedBehindItsBack) {
  const std::string a = post();
  const std::string b = post(sample("asps-routine.json"));
  ASSERT_EQ(office({"ack", a, "--note", "seen"}).status, 0);
  ASSERT_TRUE(wait_until([&] { return sql("SELECT count(*) FROM deliveries WHERE state <> 'delivered'") == 0; }, 15s));
  ASSERT_EQ(daemon.stop(), 0);
  const long long total = sql("SELECT count(*) FROM audit");
  ASSERT_GT(total, 4);

  const auto ok = ctl(on({"audit", "verify"}));
  ASSERT_EQ(ok.status, 0) << describe(ok);
  const std::string head = store.text(daemon, "SELECT hash FROM audit ORDER BY id DESC LIMIT 1").value();
  EXPECT_EQ(ok.out, "the audit trail verifies: " + std::to_string(total) + " rows, head " + head + "\n");
  const auto ok_json = ctl(on({"audit", "verify", "--json"}));
  ASSERT_EQ(ok_json.status, 0) << describe(ok_json);
  EXPECT_EQ(ok_json.parsed(),
            (json{{"verified", true}, {"rows", total}, {"first_bad", nullptr}, {"problem", nullptr}, {"head", head}}));

  // One row's detail changed by hand, as someone covering a trace would.
  const std::string id3 = store.text(daemon, "SELECT id FROM audit ORDER BY id LIMIT 1 OFFSET 2").value();
  ASSERT_EQ(sql("UPDATE audit SET detail = detail || ' (edited)' WHERE id = " + id3), 1);
  const auto bad = ctl(on({"audit", "verify"}));
  EXPECT_EQ(bad.status, 7) << describe(bad);
  EXPECT_EQ(bad.out, "");
  EXPECT_EQ(bad.err, "referralctl: audit row " + id3 +
                         " does not match its hash: it was changed (2 rows before it "
                         "verified)\n");
  const auto bad_json = ctl(on({"audit", "verify", "--json"}));
  EXPECT_EQ(bad_json.status, 7);
  EXPECT_EQ(bad_json.parsed()["verified"], false);
  EXPECT_EQ(bad_json.parsed()["first_bad"], std::stoll(id3));

  // A row removed: the next one no longer follows.
  ASSERT_EQ(sql("DELETE FROM audit WHERE id = " + id3), 1);
  const auto removed = ctl(on({"audit", "verify"}));
  EXPECT_EQ(removed.status, 7);
  EXPECT_NE(removed.err.find("does not follow row"), std::string::npos) << removed.err;
  EXPECT_EQ(ctl(on({"audit"})).status, 2);
  (void)b;
}

TEST_P(OfficeCli, PurgeKeepsTheAuditChainVerifiable) {
  const std::string old = post(sample("asps-routine.json"));
  ASSERT_EQ(office({"ack", old, "--note", "old note"}).status, 0);
  ASSERT_EQ(office({"close", old}).status, 0);
  const std::string recent = post(sample("asps-routine.json"));
  ASSERT_TRUE(wait_until([&] { return sql("SELECT count(*) FROM deliveries WHERE state <> 'delivered'") == 0; }, 15s));
  ASSERT_EQ(daemon.stop(), 0);
  ASSERT_EQ(sql("UPDATE referrals SET received_ms = received_ms - 34560000000 WHERE id = '" + old + "'"), 1);
  const auto purge = ctl(on({"purge", "--older-than", "365d", "--json"}));
  ASSERT_EQ(purge.status, 0) << describe(purge);
  EXPECT_EQ(purge.parsed()["purged"], 1);
  // The status history goes with the referral; the trail stays, and whole.
  EXPECT_EQ(sql("SELECT count(*) FROM status_changes WHERE referral_id = '" + old + "'"), 0);
  EXPECT_EQ(sql("SELECT count(*) FROM audit WHERE referral_id = '" + old + "' AND action = 'status'"), 2);
  const auto verify = ctl(on({"audit", "verify", "--json"}));
  ASSERT_EQ(verify.status, 0) << describe(verify);
  EXPECT_EQ(verify.parsed()["rows"], sql("SELECT count(*) FROM audit"));
  // The daemon appends to the same chain after the purge.
  daemon.start();
  ASSERT_EQ(office({"ack", recent}).status, 0);
  EXPECT_EQ(ctl(on({"audit", "verify"})).status, 0);
}

}  // namespace
}  // namespace referrald::test
