// referralctl export and import with the real binaries: a store filled by
// the real daemon (referrals with attachments, deliveries delivered to the
// real SMTP peer and others waiting for it) moved from SQLite to a real
// PostgreSQL and back; the daemon on the new store serves what was moved
// and sends what was waiting, once. An export cut short or altered is
// refused naming its line, and nothing of it stays.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <cctype>
#include <fstream>
#include <set>
#include <sstream>

#include "support/harness.hpp"
#include "support/peers.hpp"
#include "support/postgres.hpp"

namespace referrald::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

// Names no base64 of ciphertext will spell by chance.
constexpr const char* given_name = "Philomena";
constexpr const char* title = "Pathology report Quattlebaum";

std::string referral_with_file(const std::string& pdf) {
  auto doc = json::parse(sample("asps-routine.json"));
  doc["patient"]["given_name"] = given_name;
  doc["attachments"] = json::array({attachment_item(title, pdf)});
  return doc.dump();
}

// A daemon on a store of its own (a SQLite file in its directory, or a
// fresh database on the run's PostgreSQL), mailing to `mail`.
std::unique_ptr<Daemon> daemon_on(Backend backend, const MailServer& mail, const TempDir& secrets) {
  Daemon::Options o;
  if (backend == Backend::postgresql) {
    auto& server = shared_postgres();
    o.storage = postgres_storage(server, server.create_database(), secrets.path());
  }
  o.with_default_targets = false;
  o.extra_config = "\n[delivery]\ninitial_backoff = \"300ms\"\nmax_backoff = \"1s\"\n" +
                   smtp_target(mail, secrets.path()) + "\n[[route]]\nnotify = [\"office-email\"]\n";
  return std::make_unique<Daemon>(std::move(o));
}

std::string state_of(Daemon& daemon, const std::string& id) {
  const auto r = daemon.get("/api/v1/referrals/" + id);
  if (r.status != 200) return "(" + std::to_string(r.status) + ")";
  return json::parse(r.body)["deliveries"][0]["state"];
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::string joined(const std::vector<std::string>& lines, std::size_t count) {
  std::string out;
  for (std::size_t i = 0; i < count && i < lines.size(); ++i) out += lines[i] + "\n";
  return out;
}

class Transfer : public ::testing::TestWithParam<std::pair<Backend, Backend>> {};

std::string direction_name(const ::testing::TestParamInfo<std::pair<Backend, Backend>>& param) {
  return backend_label(param.param.first) + "To" + backend_label(param.param.second);
}

TEST_P(Transfer, TheDaemonOnTheNewStoreServesWhatWasMovedAndSendsWhatWasWaitingOnce) {
  const auto [from_backend, to_backend] = GetParam();
  MailServer mail({});
  TempDir secrets, work;
  const std::string pdf = attachment_fixture("records.pdf");

  // The old store: two referrals mailed, two more waiting (the mail server
  // refuses for a while), every one with a file.
  auto from = daemon_on(from_backend, mail, secrets);
  from->start();
  std::vector<std::string> ids;
  const auto submit = [&] {
    const auto r = from->post_referral(referral_with_file(pdf));
    ASSERT_EQ(r.status, 202) << r.body;
    ids.push_back(json::parse(r.body)["id"]);
  };
  submit();
  submit();
  ASSERT_TRUE(wait_until([&] { return mail.message_ids().size() == 2; }, 60s)) << from->log();
  ASSERT_TRUE(
      wait_until([&] { return state_of(*from, ids[0]) == "delivered" && state_of(*from, ids[1]) == "delivered"; }));
  mail.refuse_temporarily(true);
  submit();
  submit();
  ASSERT_TRUE(wait_until([&] { return state_of(*from, ids[2]) == "retry" && state_of(*from, ids[3]) == "retry"; }, 60s))
      << from->log();
  ASSERT_EQ(from->stop(), 0) << from->log();

  // Export: one private file, with no patient data in the clear.
  const fs::path file = work / "referrald.export";
  const auto exported = ctl({"--config", from->config_file().string(), "export", "--output", file.string()});
  ASSERT_EQ(exported.status, 0) << describe(exported);
  EXPECT_NE(exported.out.find("exported 4 referrals"), std::string::npos) << exported.out;
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const std::string text = read_file(file);
  EXPECT_EQ(text.find(given_name), std::string::npos) << "a patient's name in the clear";
  EXPECT_EQ(text.find(title), std::string::npos) << "a file's title in the clear";
  EXPECT_EQ(text.find(openssl_base64(pdf.substr(0, 48))), std::string::npos) << "a file's bytes in the clear";
  // Never over an existing file.
  const auto again = ctl({"--config", from->config_file().string(), "export", "-o", file.string()});
  EXPECT_EQ(again.status, 2) << describe(again);
  EXPECT_EQ(read_file(file), text);

  // Import into the new store, which has the old store's key.
  auto to = daemon_on(to_backend, mail, secrets);
  write_key_file(to->key_file(), read_file(from->key_file()));
  const auto imported = ctl({"--config", to->config_file().string(), "import", file.string(), "--json"});
  ASSERT_EQ(imported.status, 0) << describe(imported);
  const json report = imported.parsed();
  EXPECT_EQ(report["rows"]["referrals"], 4);
  EXPECT_EQ(report["rows"]["attachments"], 4);
  EXPECT_EQ(report["rows"]["deliveries"], 4);
  const auto verified = ctl({"--config", to->config_file().string(), "audit", "verify", "--json"});
  ASSERT_EQ(verified.status, 0) << describe(verified);
  EXPECT_EQ(verified.parsed()["rows"], report["audit"]["rows"]);

  // A second import into the same store is refused and changes nothing.
  const auto twice = ctl({"--config", to->config_file().string(), "import", file.string()});
  EXPECT_EQ(twice.status, 6) << describe(twice);
  EXPECT_NE(twice.err.find("is not empty"), std::string::npos) << twice.err;

  // The daemon on the new store: what was waiting goes out once, what was
  // delivered does not go again; referralctl opens the sealed documents and
  // files with the old key.
  mail.refuse_temporarily(false);
  to->start();
  ASSERT_TRUE(
      wait_until([&] { return state_of(*to, ids[2]) == "delivered" && state_of(*to, ids[3]) == "delivered"; }, 60s))
      << to->log();
  const auto sent = mail.message_ids();
  EXPECT_EQ(sent.size(), 4u);
  for (const auto& [message_id, n] : sent) EXPECT_EQ(n, 1) << message_id;
  for (const auto& id : ids) {
    const auto show = ctl({"--config", to->config_file().string(), "show", "--json", id});
    ASSERT_EQ(show.status, 0) << describe(show);
    const json shown = show.parsed();
    EXPECT_EQ(shown["referral"]["document"]["patient"]["given_name"], given_name);
    ASSERT_EQ(shown["attachments"].size(), 1u) << shown.dump(2);
    EXPECT_EQ(shown["attachments"][0]["title"], title);
    const fs::path out = work / (id + ".pdf");
    const auto written = ctl({"--config", to->config_file().string(), "attachment", id, "1", "-o", out.string()});
    ASSERT_EQ(written.status, 0) << describe(written);
    EXPECT_EQ(read_file(out), pdf);
  }
  EXPECT_EQ(to->stop(), 0) << to->log();
}

INSTANTIATE_TEST_SUITE_P(Backends, Transfer,
                         ::testing::Values(std::pair{Backend::sqlite, Backend::postgresql},
                                           std::pair{Backend::postgresql, Backend::sqlite}),
                         direction_name);

// A file cut short, a line that is not JSON and a changed value are each
// refused naming the line; nothing of them stays, and the whole file then
// imports.
TEST(PostgresTransfer, AnExportCutShortOrAlteredIsRefusedNamingItsLineAndLeavesNothing) {
  Daemon from{Daemon::Options{}};
  from.start();
  for (int i = 0; i < 3; ++i) ASSERT_EQ(from.post_referral(sample("asps-routine.json")).status, 202);
  ASSERT_EQ(from.stop(), 0) << from.log();
  TempDir work;
  const fs::path file = work / "whole.export";
  ASSERT_EQ(ctl({"--db", from.database().string(), "export", "-o", file.string()}).status, 0);
  const auto lines = lines_of(read_file(file));
  ASSERT_GT(lines.size(), 10u);

  MailServer mail({});
  TempDir secrets;
  auto to = daemon_on(Backend::postgresql, mail, secrets);
  const std::string config = to->config_file().string();
  const auto import = [&](const std::string& name, const std::string& content) {
    write_file(work / name, content);
    return ctl({"--config", config, "import", (work / name).string()});
  };
  const auto empty = [&] {
    const auto list = ctl({"--config", config, "list", "--json"});
    return list.status == 0 && list.parsed()["referrals"].empty();
  };

  // Cut short: the end record is missing, named at the last line read.
  const auto cut = import("cut.export", joined(lines, lines.size() - 3));
  EXPECT_EQ(cut.status, 4) << describe(cut);
  EXPECT_NE(cut.err.find("cut.export:" + std::to_string(lines.size() - 3) + ": "), std::string::npos) << cut.err;
  EXPECT_NE(cut.err.find("cut short"), std::string::npos) << cut.err;
  EXPECT_TRUE(empty());

  // Line 5 broken in the middle.
  auto broken = lines;
  broken[4] = broken[4].substr(0, broken[4].size() / 2);
  const auto corrupt = import("corrupt.export", joined(broken, broken.size()));
  EXPECT_EQ(corrupt.status, 4) << describe(corrupt);
  EXPECT_NE(corrupt.err.find("corrupt.export:5: not a JSON record"), std::string::npos) << corrupt.err;
  // Nothing of the row is echoed: the text read last before the cut stays out.
  const std::string tail = broken[4].substr(broken[4].size() - 12);
  EXPECT_EQ(corrupt.err.find(tail), std::string::npos) << "the row's text is in the message: " << corrupt.err;
  EXPECT_TRUE(empty());

  // A value changed, still valid JSON: the checksum in the end record tells.
  // (The first digit of the first referral's received_ms.)
  auto altered = lines;
  const auto at = altered[1].find("\",", altered[1].find("\"row\"")) + 2;
  ASSERT_TRUE(at < altered[1].size() && std::isdigit(static_cast<unsigned char>(altered[1][at]))) << altered[1];
  altered[1][at] = altered[1][at] == '1' ? '2' : '1';
  const auto changed = import("altered.export", joined(altered, altered.size()));
  EXPECT_EQ(changed.status, 4) << describe(changed);
  EXPECT_NE(changed.err.find("altered.export:" + std::to_string(lines.size()) + ": the file's checksum"),
            std::string::npos)
      << changed.err;
  EXPECT_TRUE(empty());

  // A header of another format version, or of another schema: line 1 says which.
  const auto with_header = [&](const std::string& key, const json& value) {
    auto edited = lines;
    auto header = json::parse(edited[0]);
    header[key] = value;
    edited[0] = header.dump();
    return joined(edited, edited.size());
  };
  const auto newer_format = import("format.export", with_header("version", 2));
  EXPECT_EQ(newer_format.status, 4) << describe(newer_format);
  EXPECT_NE(newer_format.err.find("format.export:1: export format version 2"), std::string::npos) << newer_format.err;
  const int newer_schema = json::parse(lines[0]).at("schema_version").get<int>() + 1;
  const auto other_schema = import("schema.export", with_header("schema_version", newer_schema));
  EXPECT_EQ(other_schema.status, 4) << describe(other_schema);
  EXPECT_NE(other_schema.err.find("schema.export:1: the export is of schema version " + std::to_string(newer_schema)),
            std::string::npos)
      << other_schema.err;
  EXPECT_TRUE(empty());

  const auto whole = ctl({"--config", config, "import", file.string()});
  ASSERT_EQ(whole.status, 0) << describe(whole);
  EXPECT_NE(whole.out.find("imported 3 referrals"), std::string::npos) << whole.out;
}

}  // namespace
}  // namespace referrald::test
