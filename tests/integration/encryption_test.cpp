// Encryption at rest with the real daemon and referralctl: the SQLite files
// on disk (WAL included) hold no patient data while the API, referralctl and
// the deliveries still see it; key rotation end to end (a new key first,
// SIGHUP, rekey, the old key removed, restart); a missing key is a clear
// error, never a crash; --check-config judges the key file.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include <algorithm>
#include <filesystem>

#include "support/harness.hpp"

namespace referrald::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

// How many referrals are stored encrypted under `key_id` (read with SQL, not referrald's code).
long long sealed_under(const fs::path& db, const std::string& key_id) {
  return count_rows(db, "SELECT count(*) FROM referrals WHERE substr(document, 1, " +
                            std::to_string(5 + key_id.size()) + ") = CAST('RFE' || char(1) || char(" +
                            std::to_string(key_id.size()) + ") || '" + key_id + "' AS BLOB)");
}

std::string posted_id(Daemon& daemon, const std::string& body) {
  const auto r = daemon.post_referral(body);
  EXPECT_EQ(r.status, 202) << r.body;
  return r.status == 202 ? json::parse(r.body)["id"].get<std::string>() : std::string();
}

bool delivered(const Daemon& daemon, const std::string& id) {
  return count_rows(daemon.database(),
                    "SELECT count(*) FROM deliveries WHERE referral_id = '" + id + "' AND state = 'delivered'") == 1;
}

// The spool delivery of a referral: the office's copy, meant to be read there.
std::string spooled(const Daemon& daemon, const std::string& id) {
  for (const auto& entry : fs::directory_iterator(daemon.spool("office-email"))) {
    if (entry.path().filename().string().find(id) != std::string::npos) return read_file(entry.path());
  }
  return {};
}

TEST(Encryption, TheDatabaseFilesHoldNoPatientDataWhileTheApiAndReferralctlShowIt) {
  Daemon daemon(Daemon::Options{});
  daemon.start();
  const std::string id = posted_id(daemon, sample("asps-routine.json"));
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(wait_until([&] { return delivered(daemon, id); }, 10s)) << daemon.log();

  // Raw bytes, with the daemon still running (the WAL not yet checkpointed).
  const std::string bytes = database_bytes(daemon.database());
  ASSERT_NE(bytes.find(id), std::string::npos) << "the referral is in these files";
  for (const std::string phi : {"Nguyen", "2014-03-09", "+1 870 555 0142", "Painless mass", "Linh"}) {
    EXPECT_EQ(bytes.find(phi), std::string::npos) << phi << " is on disk in the clear";
  }
  EXPECT_EQ(sealed_under(daemon.database(), "test-1"), 1);

  const auto api = daemon.get("/api/v1/referrals/" + id);
  ASSERT_EQ(api.status, 200) << api.body;
  EXPECT_EQ(json::parse(api.body)["referral"]["patient"]["family_name"], "Nguyen");
  EXPECT_EQ(daemon.stored_document(id)["patient"]["birth_date"], "2014-03-09");
  // The office's delivery is the referral itself (spool output is not encrypted: it is for reading).
  EXPECT_NE(spooled(daemon, id).find("Nguyen"), std::string::npos);
  EXPECT_NE(daemon.log().find("encryption_key=test-1"), std::string::npos) << daemon.log();
  EXPECT_EQ(daemon.log().find("storage.unencrypted"), std::string::npos) << daemon.log();

  // And after the checkpoint at stop, in the database file alone.
  EXPECT_EQ(daemon.stop(), 0);
  const std::string at_rest = read_file(daemon.database());
  EXPECT_EQ(at_rest.find("Nguyen"), std::string::npos);
  EXPECT_EQ(at_rest.find("2014-03-09"), std::string::npos);
}

TEST(Encryption, KeyRotationEndToEnd) {
  Daemon daemon(Daemon::Options{});
  const std::string key_a = read_file(daemon.key_file());
  daemon.start();
  const std::string first = posted_id(daemon, sample("asps-routine.json"));

  // A key file with a mistake is refused on reload; the keys in use stay.
  write_key_file(daemon.key_file(), "test-2 0123\n" + key_a);
  daemon.process()->signal(SIGHUP);
  ASSERT_TRUE(wait_until([&] { return daemon.log().find("config.reload_refused") != std::string::npos; }, 10s))
      << daemon.log();
  EXPECT_NE(daemon.log().find(R"(key "test-2": expected 64 hex digits)"), std::string::npos) << daemon.log();
  EXPECT_EQ(daemon.log().find("encryption_key=test-2"), std::string::npos);

  // A new key goes first; the old one stays to read what it encrypted.
  const std::string key_b = new_key_line("test-2");
  write_key_file(daemon.key_file(), "# rotated\n" + key_b + key_a);
  daemon.process()->signal(SIGHUP);
  ASSERT_TRUE(wait_until([&] { return daemon.log().find("encryption_key=test-2") != std::string::npos; }, 10s))
      << daemon.log();
  const std::string second = posted_id(daemon, sample("asps-urgent.json"));
  EXPECT_EQ(sealed_under(daemon.database(), "test-1"), 1);
  EXPECT_EQ(sealed_under(daemon.database(), "test-2"), 1);

  const std::string config = daemon.config_file().string();
  const auto rekey = ctl({"--config", config, "rekey", "--json"}, {{"SUDO_USER", "alice"}});
  ASSERT_EQ(rekey.status, 0) << describe(rekey);
  EXPECT_EQ(rekey.parsed(), json::parse(R"({"key":"test-2","examined":2,"rekeyed":1,"notes_examined":0,
                                          "notes_rekeyed":0,"attachments_examined":0,
                                          "attachments_rekeyed":0,"unreadable":[]})"));
  EXPECT_EQ(sealed_under(daemon.database(), "test-2"), 2);
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM audit WHERE referral_id = '" + first +
                                              "' AND action = 'rekeyed' AND detail = 'from=test-1 to=test-2' "
                                              "AND actor LIKE '% (sudo by alice)'"),
            1);
  // Nothing left under the old key: a second run changes nothing.
  const auto again = ctl({"--config", config, "rekey"});
  ASSERT_EQ(again.status, 0) << describe(again);
  EXPECT_EQ(again.out, "rekeyed 0 referrals to key \"test-2\" (2 already under it)\n");

  // The old key's line is removed; after a restart everything still reads.
  write_key_file(daemon.key_file(), key_b);
  EXPECT_EQ(daemon.stop(), 0);
  daemon.start();
  EXPECT_EQ(daemon.stored_document(first)["patient"]["given_name"], "Ava");
  EXPECT_EQ(daemon.stored_document(second)["patient"]["given_name"], "Mateo");
  const auto api = daemon.get("/api/v1/referrals/" + first);
  ASSERT_EQ(api.status, 200) << api.body;
  EXPECT_EQ(json::parse(api.body)["referral"]["patient"]["family_name"], "Nguyen");
}

TEST(Encryption, RekeyEncryptsDocumentsStoredBeforeEncryptionWasEnabled) {
  Daemon::Options options;
  options.encryption = false;
  Daemon daemon(options);
  daemon.start();
  const std::string id = posted_id(daemon, sample("asps-routine.json"));
  EXPECT_NE(daemon.log().find("storage.unencrypted"), std::string::npos) << daemon.log();
  EXPECT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM referrals WHERE substr(document, 1, 1) = x'7b'"), 1);
  EXPECT_EQ(daemon.stop(), 0);

  // Encryption is switched on for the same database; the old row still reads.
  write_key_file(daemon.key_file(), new_key_line("k1"));
  std::string text = read_file(daemon.config_file());
  const std::string storage = "[storage]\n";
  text.insert(text.find(storage) + storage.size(), "encryption_keys = \"encryption-keys\"\n");
  write_file(daemon.config_file(), text);
  daemon.start();
  const std::string config = daemon.config_file().string();
  EXPECT_EQ(daemon.stored_document(id)["patient"]["family_name"], "Nguyen");

  const auto rekey = ctl({"--config", config, "rekey"});
  ASSERT_EQ(rekey.status, 0) << describe(rekey);
  EXPECT_NE(rekey.out.find("rekeyed 1 referral to key \"k1\""), std::string::npos) << rekey.out;
  EXPECT_EQ(sealed_under(daemon.database(), "k1"), 1);
  EXPECT_EQ(count_rows(daemon.database(),
                       "SELECT count(*) FROM audit WHERE action = 'rekeyed' AND "
                       "detail = 'from=plaintext to=k1'"),
            1);
  EXPECT_EQ(daemon.stored_document(id)["patient"]["family_name"], "Nguyen");
  // secure_delete: the clear copy was overwritten, not left in a free page.
  EXPECT_EQ(daemon.stop(), 0);
  EXPECT_EQ(read_file(daemon.database()).find("Nguyen"), std::string::npos);
}

TEST(Encryption, AMissingKeyIsAClearErrorAndRestoringItRecovers) {
  Daemon daemon(Daemon::Options{});
  const std::string key_a = read_file(daemon.key_file());
  daemon.start();
  const std::string id = posted_id(daemon, sample("asps-routine.json"));
  ASSERT_TRUE(wait_until([&] { return delivered(daemon, id); }, 10s)) << daemon.log();
  EXPECT_EQ(daemon.stop(), 0);

  // The key that encrypted it is gone (replaced, not added to); a delivery
  // of it is due again (as `referralctl retry` makes one).
  write_key_file(daemon.key_file(), new_key_line("test-9"));
  ASSERT_EQ(count_rows(daemon.database(), "SELECT count(*) FROM deliveries"), 1);
  ASSERT_EQ(shell("sqlite3 '" + daemon.database().string() +
                  "' \"UPDATE deliveries SET state = 'pending', next_attempt_ms = 0\""),
            0);
  daemon.start();

  const std::string expected = "referral " + id +
                               ": document is encrypted with key \"test-1\", which is not in "
                               "storage.encryption_keys (it has test-9)";
  // The pending delivery cannot be sent: it is dead with the reason, not retried forever.
  ASSERT_TRUE(wait_until(
      [&] { return count_rows(daemon.database(), "SELECT count(*) FROM deliveries WHERE state = 'dead'") == 1; }, 10s))
      << daemon.log();
  EXPECT_EQ(count_rows(daemon.database(),
                       "SELECT count(*) FROM attempts WHERE outcome = 'misconfigured' AND "
                       "message = '" +
                           expected + "'"),
            1);
  // The dispatcher logs the outcome once it is committed: the row can be
  // seen a moment before the line.
  EXPECT_TRUE(wait_until(
      [&] {
        return daemon.log().find("class=misconfigured error=\"" + expected + "\" next=dead") != std::string::npos;
      },
      5s))
      << daemon.log();

  const auto api = daemon.get("/api/v1/referrals/" + id);
  EXPECT_EQ(api.status, 500) << api.body;
  EXPECT_NE(daemon.log().find("api.referral_unreadable id=" + id + " error=\"" + expected + "\""), std::string::npos)
      << daemon.log();
  EXPECT_EQ(daemon.log().find(R"("Nguyen")"), std::string::npos);
  const std::string config = daemon.config_file().string();
  const auto shown = ctl({"--config", config, "show", id});
  EXPECT_EQ(shown.status, 5) << describe(shown);
  EXPECT_EQ(shown.err, "referralctl: " + expected + "\n");
  // With --db referralctl reads no configuration, so it has no key at all, and says so.
  const auto without = ctl({"--db", daemon.database().string(), "show", id});
  EXPECT_EQ(without.status, 5) << describe(without);
  EXPECT_NE(without.err.find("name the configuration with --config instead"), std::string::npos) << without.err;
  const auto rekey = ctl({"--config", config, "rekey"});
  EXPECT_EQ(rekey.status, 5) << describe(rekey);
  EXPECT_NE(rekey.err.find(expected), std::string::npos) << rekey.err;
  EXPECT_EQ(daemon.get("/healthz").status, 200) << daemon.log();

  // The old key back (second, so new referrals use the new one), a reload, a retry: delivered.
  write_key_file(daemon.key_file(), new_key_line("test-9") + key_a);
  daemon.process()->signal(SIGHUP);
  ASSERT_TRUE(wait_until([&] { return daemon.log().find("config.reloaded") != std::string::npos; }, 10s));
  const auto retry = ctl({"--config", config, "retry", id});
  ASSERT_EQ(retry.status, 0) << describe(retry);
  ASSERT_TRUE(wait_until([&] { return delivered(daemon, id); }, 10s)) << daemon.log();
  EXPECT_EQ(daemon.stored_document(id)["patient"]["family_name"], "Nguyen");
}

TEST(Encryption, CheckConfigJudgesTheKeyFile) {
  Daemon daemon(Daemon::Options{});
  const fs::path out = daemon.dir() / "check.out";
  const auto check = [&] {
    const int status = shell("'" + referrald_binary().string() + "' --check-config --config '" +
                             daemon.config_file().string() + "' > '" + out.string() + "' 2>&1");
    return std::pair{status, read_file(out)};
  };
  EXPECT_EQ(check().first, 0) << check().second;

  const std::string text = read_file(daemon.config_file());
  const auto before = text.substr(0, text.find("encryption_keys"));
  const auto line = std::count(before.begin(), before.end(), '\n') + 1;
  const std::string where = daemon.config_file().string() + ":" + std::to_string(line) + ": storage.encryption_keys: ";
  const std::string key = new_key_line("k1");

  write_file(daemon.key_file(), key);  // the umask's 0644
  fs::permissions(daemon.key_file(),
                  fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read);
  auto [status, output] = check();
  EXPECT_EQ(status, 1);
  EXPECT_EQ(output, where + daemon.key_file().string() +
                        ": may be read or written by group or others (mode 0644); make it private to referrald's "
                        "user (chmod 600)\n");

  write_key_file(daemon.key_file(), key + key);
  std::tie(status, output) = check();
  EXPECT_EQ(status, 1);
  EXPECT_EQ(output, where + daemon.key_file().string() +
                        R"(:2: key "k1" is listed twice (first at line 1))"
                        "\n");
  EXPECT_EQ(output.find(key.substr(3, 16)), std::string::npos) << "no key material in messages";

  // The daemon refuses to start on it, with the same message.
  daemon.launch();
  ASSERT_TRUE(daemon.process()->wait(15s).has_value());
  EXPECT_NE(daemon.log().find("is listed twice (first at line 1)"), std::string::npos) << daemon.log();
}

}  // namespace
}  // namespace referrald::test
