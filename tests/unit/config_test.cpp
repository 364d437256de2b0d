#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>

#include "adapters/registry.hpp"
#include "config/config.hpp"
#include "config/target_keys.hpp"
#include "support/harness.hpp"
#include "util/crypto.hpp"

namespace referrald {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using test::TempDir;
using ::testing::ElementsAre;

// The configuration as the daemon reads it: with the channels' keys and checks.
LoadOptions with_channels(std::vector<fs::path> credential_fallbacks = {}) {
  LoadOptions options;
  options.credential_fallbacks = std::move(credential_fallbacks);
  options.target_kinds = target_kinds();
  return options;
}

// A throwaway installation: root/etc holds the configuration file and the
// files it may name; root/schemas and root/web are where the default
// [paths] point (../schemas and ../web from etc/).
class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = temp_.path();
    fs::create_directories(root_ / "etc" / "tls");
    fs::create_directories(root_ / "etc" / "secrets");
    fs::create_directories(root_ / "schemas");
    fs::create_directories(root_ / "web");
    for (const char* f : {"etc/rules.toml", "etc/tls/cert.pem", "etc/tls/key.pem", "etc/secrets/smtp", "etc/ca.pem"}) {
      std::ofstream(root_ / f) << "x\n";
    }
    file_ = (root_ / "etc" / "referrald.toml").string();
  }

  // Leading newline dropped so that line 1 is the first line of the literal.
  static std::string_view text_of(std::string_view text) { return text.starts_with('\n') ? text.substr(1) : text; }

  Config parse(std::string_view text) { return parse_config(text_of(text), file_, with_channels()); }

  // Every problem, formatted as an operator sees it; empty when it loads.
  std::vector<std::string> problems(std::string_view text) {
    try {
      parse(text);
    } catch (const ConfigError& e) {
      std::vector<std::string> out;
      for (const auto& p : e.problems()) out.push_back(p.to_string());
      return out;
    }
    return {};
  }

  // The expected form of one problem: "FILE:LINE: rest".
  std::string at(int line, std::string_view rest) const {
    return file_ + ":" + std::to_string(line) + ": " + std::string(rest);
  }

  std::string abs(std::string_view relative_to_root) const {
    return (root_ / relative_to_root).lexically_normal().string();
  }

  TempDir temp_;
  fs::path root_;
  std::string file_;
};

// The two required settings, at lines 1-4, for tests about something else.
constexpr std::string_view required_part = R"(
[storage]
database = "../var/referrald.db"
[rules]
file = "rules.toml"
)";

std::string with_required(std::string_view rest) {
  return std::string(required_part.substr(1)) + std::string(rest.starts_with('\n') ? rest.substr(1) : rest);
}

// ---- what a minimal file gives ---------------------------------------------

TEST_F(ConfigTest, MinimalFileResolvesPathsAndTakesDefaults) {
  const Config c = parse(with_required(""));
  EXPECT_EQ(c.file, fs::path(file_));
  EXPECT_EQ(c.storage.database, fs::path(abs("var/referrald.db")));
  EXPECT_TRUE(c.storage.database.is_absolute());
  EXPECT_EQ(c.rules_file, fs::path(abs("etc/rules.toml")));
  EXPECT_EQ(c.schema_dir, fs::path(abs("schemas")));
  EXPECT_EQ(c.web_dir, fs::path(abs("web")));
  ASSERT_EQ(c.http.listen.size(), 1u);
  EXPECT_EQ(c.http.listen[0].to_string(), "127.0.0.1:8080");
  EXPECT_FALSE(c.http.tls_enabled());
  EXPECT_EQ(c.http.max_body_bytes, 65536u);
  EXPECT_EQ(c.delivery.initial_backoff, 30s);
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.office.hours.time_zone, "America/Chicago");
  EXPECT_TRUE(c.targets.empty());
  EXPECT_TRUE(c.routes.empty());
}

TEST_F(ConfigTest, MissingRequiredSettingsHaveNoLineAndComeLast) {
  EXPECT_THAT(problems(""), ElementsAre(file_ + ": storage.database: required", file_ + ": rules.file: required"));
  // With the section present the problem points at its header.
  EXPECT_THAT(problems("[storage]\nmax_batch = 10\n[rules]\nfile = \"rules.toml\"\n"),
              ElementsAre(at(1, "storage.database: required")));
}

TEST_F(ConfigTest, RelativePathsAreLexicallyNormalAndAbsolutePathsKept) {
  const Config c = parse(R"(
[storage]
database = "./data/../db/./referrald.db"
[rules]
file = "../etc/rules.toml"
[paths]
schemas = ")" + abs("schemas") +
                         R"("
web = "../web/"
)");
  EXPECT_EQ(c.storage.database, fs::path(abs("etc/db/referrald.db")));
  EXPECT_EQ(c.rules_file, fs::path(abs("etc/rules.toml")));
  EXPECT_EQ(c.schema_dir, fs::path(abs("schemas")));
  EXPECT_EQ(fs::path(c.web_dir).lexically_normal(), fs::path(abs("web") + "/"));
}

// ---- unknown keys and types ------------------------------------------------

TEST_F(ConfigTest, UnknownKeyInSectionAndUnknownSection) {
  EXPECT_THAT(problems(with_required(R"(
[log]
level = "info"
levl = "debug"
[htp]
)")),
              ElementsAre(at(7, "log.levl: unknown key (known: level)"),
                          at(8,
                             "htp: unknown key (known: http, storage, rules, paths, delivery, log, office, "
                             "intake, target, route, escalation, closed_loop)")));
}

TEST_F(ConfigTest, WrongTypeNamesBothTypes) {
  EXPECT_THAT(problems(with_required(R"(
[http]
max_body_bytes = "64k"
threads = 1.5
[office]
name = 7
)")),
              ElementsAre(at(6, "http.max_body_bytes: expected an integer, got string"),
                          at(7, "http.threads: expected an integer, got float"),
                          at(9, "office.name: expected a string, got integer")));
}

TEST_F(ConfigTest, SectionOfTheWrongType) {
  EXPECT_THAT(problems("storage = \"x.db\"\n[rules]\nfile = \"rules.toml\"\n"),
              ElementsAre(at(1, "storage: expected a table, got string")));
}

TEST_F(ConfigTest, IntegersOutOfRangeSayTheRange) {
  EXPECT_THAT(problems(with_required(R"(
[http]
threads = 0
max_body_bytes = 100
rate_limit_per_minute = -1
[delivery]
max_attempts = 1001
)")),
              ElementsAre(at(6, "http.threads: expected 1..256, got 0"),
                          at(7, "http.max_body_bytes: expected 1024..16777216, got 100"),
                          at(8, "http.rate_limit_per_minute: expected 0..1000000, got -1"),
                          at(10, "delivery.max_attempts: expected 1..1000, got 1001")));
}

// ---- durations ---------------------------------------------------------------

TEST_F(ConfigTest, BadDurations) {
  EXPECT_THAT(
      problems(with_required(R"(
[delivery]
initial_backoff = "30 seconds"
give_up_after = 48
lease = "0s"
)")),
      ElementsAre(at(6, R"(delivery.initial_backoff: expected a duration like "30s", "5m", "48h", got "30 seconds")"),
                  at(7, R"(delivery.give_up_after: expected a duration like "30s", "5m", "48h", got integer)"),
                  at(8, R"(delivery.lease: expected a duration greater than 0, got "0s")")));
}

TEST_F(ConfigTest, DurationsAreRead) {
  const Config c = parse(with_required(R"(
[delivery]
max_attempts = 5
initial_backoff = "1m"
max_backoff = "1h30m"
give_up_after = "2d"
lease = "90s"
[http]
read_timeout = "250ms"
)"));
  EXPECT_EQ(c.delivery.max_attempts, 5);
  EXPECT_EQ(c.delivery.initial_backoff, 1min);
  EXPECT_EQ(c.delivery.max_backoff, 90min);
  EXPECT_EQ(c.delivery.give_up_after, 48h);
  EXPECT_EQ(c.delivery.lease, 90s);
  EXPECT_EQ(c.http.read_timeout, 250ms);
}

TEST_F(ConfigTest, MaxBackoffBelowInitialBackoff) {
  EXPECT_THAT(
      problems(with_required(R"(
[delivery]
initial_backoff = "5m"
max_backoff = "1m"
)")),
      ElementsAre(at(7, R"(delivery.max_backoff: must not be less than delivery.initial_backoff (5m), got "1m")")));
  // Only initial_backoff written: it is the one named, against the default maximum.
  EXPECT_THAT(problems(with_required("[delivery]\ninitial_backoff = \"1h\"\n")),
              ElementsAre(at(6, R"(delivery.initial_backoff: must not exceed delivery.max_backoff (30m), got "1h")")));
}

// ---- listen addresses --------------------------------------------------------

TEST_F(ConfigTest, ListenAddresses) {
  const Config c = parse(with_required(R"(
[http]
listen = ["127.0.0.1:8080", "[::1]:8443", "localhost:9000", "0.0.0.0:80"]
public_origins = "https://referrals.example.org"
)"));
  ASSERT_EQ(c.http.listen.size(), 4u);
  EXPECT_EQ(c.http.listen[1].host, "::1");
  EXPECT_EQ(c.http.listen[1].port, 8443);
  EXPECT_EQ(c.http.listen[1].to_string(), "[::1]:8443");
  EXPECT_EQ(c.http.listen[2].to_string(), "localhost:9000");
  EXPECT_EQ(c.http.listen[3].port, 80);
}

TEST_F(ConfigTest, BadListenAddresses) {
  const auto bad = [&](std::string_view value) {
    const auto p = problems(with_required("[http]\nlisten = \"" + std::string(value) + "\"\n"));
    return p.size() == 1 ? p[0] : "(" + std::to_string(p.size()) + " problems)";
  };
  const std::string port = R"(http.listen: expected "host:port" with a port in 1..65535, got )";
  EXPECT_EQ(bad("localhost"), at(6, port + R"("localhost")"));
  EXPECT_EQ(bad("127.0.0.1:0"), at(6, port + R"("127.0.0.1:0")"));
  EXPECT_EQ(bad("127.0.0.1:65536"), at(6, port + R"("127.0.0.1:65536")"));
  EXPECT_EQ(bad("127.0.0.1:http"), at(6, port + R"("127.0.0.1:http")"));
  EXPECT_EQ(bad(":8080"), at(6, port + R"(":8080")"));
  EXPECT_EQ(bad("::1:8080"),
            at(6, R"(http.listen: expected an IPv6 address in brackets, e.g. "[::1]:8080", got "::1:8080")"));
  EXPECT_EQ(bad("[::g]:8080"), at(6, R"(http.listen: expected an IPv6 address inside the brackets, got "[::g]:8080")"));
  EXPECT_EQ(bad("example.org:8080"),
            at(6, R"(http.listen: expected the host to be an IP address or "localhost", got "example.org:8080")"));
  EXPECT_EQ(bad("10.0.0:8080"),
            at(6, R"(http.listen: expected the host to be an IP address or "localhost", got "10.0.0:8080")"));

  EXPECT_THAT(problems(with_required("[http]\nlisten = [\"127.0.0.1:8080\",\n  8081]\n")),
              ElementsAre(at(7, "http.listen[1]: expected a string, got integer")));
  EXPECT_THAT(problems(with_required("[http]\nlisten = []\n")),
              ElementsAre(at(6, "http.listen: expected at least one address")));
  EXPECT_THAT(problems(with_required("[http]\nlisten = 8080\n")),
              ElementsAre(at(6, "http.listen: expected a string or an array of strings, got integer")));
}

// ---- public origins (the web form's Host and Origin checks) ------------------

TEST_F(ConfigTest, PublicOriginsDefaultToTheListenAddresses) {
  EXPECT_THAT(parse(with_required("")).http.public_origins, ElementsAre("http://127.0.0.1:8080"));
  const Config c = parse(with_required(R"(
[http]
listen = ["127.0.0.1:8080", "[::1]:8443", "localhost:9000", "10.1.2.3:80"]
)"));
  EXPECT_THAT(c.http.public_origins, ElementsAre("http://127.0.0.1:8080", "http://[::1]:8443", "http://localhost:9000",
                                                 "http://127.0.0.1:9000", "http://10.1.2.3"));
}

TEST_F(ConfigTest, PublicOriginsAreNormalised) {
  const Config c = parse(with_required(R"(
[http]
public_origins = ["HTTPS://Referrals.Example.org", "https://referrals.example.org:443", "http://[::1]:8080",
                  "http://intake.example.org:8080"]
)"));
  EXPECT_THAT(c.http.public_origins, ElementsAre("https://referrals.example.org", "https://referrals.example.org",
                                                 "http://[::1]:8080", "http://intake.example.org:8080"));
}

TEST_F(ConfigTest, BadPublicOrigins) {
  const auto bad = [&](std::string_view value) {
    const auto p = problems(with_required("[http]\npublic_origins = \"" + std::string(value) + "\"\n"));
    return p.size() == 1 ? p[0] : "(" + std::to_string(p.size()) + " problems)";
  };
  const std::string shape =
      R"(http.public_origins: expected an origin like "https://referrals.example.org" or "http://127.0.0.1:8080" )"
      "(scheme, host, optional port; no path), got ";
  for (const char* value :
       {"referrals.example.org", "https://referrals.example.org/", "https://x.org/form", "ftp://x.org",
        "https://user@x.org", "https://x.org:0", "https://x.org:99999", "https://[::g]", "null", "https://"}) {
    EXPECT_EQ(bad(value), at(6, shape + "\"" + value + "\"")) << value;
  }
  EXPECT_THAT(problems(with_required("[http]\npublic_origins = []\n")),
              ElementsAre(at(6, "http.public_origins: expected at least one origin")));
  // A wildcard address has no origin of its own: the form would answer to any Host.
  EXPECT_THAT(problems(with_required("[http]\nlisten = [\"127.0.0.1:8080\", \"0.0.0.0:443\"]\n")),
              ElementsAre(at(6,
                             "http.public_origins: required when http.listen has a wildcard address "
                             "(0.0.0.0:443): the form answers only at the origins browsers use to reach it")));
}

// ---- TLS and API keys --------------------------------------------------------

TEST_F(ConfigTest, TlsFilesResolveAndMustExist) {
  const Config c = parse(with_required(R"(
[http]
tls_certificate = "tls/cert.pem"
tls_private_key = "tls/key.pem"
)"));
  EXPECT_TRUE(c.http.tls_enabled());
  EXPECT_EQ(c.http.tls_certificate, fs::path(abs("etc/tls/cert.pem")));
  EXPECT_EQ(c.http.tls_private_key, fs::path(abs("etc/tls/key.pem")));

  EXPECT_THAT(problems(with_required(R"(
[http]
tls_certificate = "tls/missing.pem"
tls_private_key = "tls"
)")),
              ElementsAre(at(6, "http.tls_certificate: file not found: " + abs("etc/tls/missing.pem")),
                          at(7, "http.tls_private_key: not a regular file: " + abs("etc/tls"))));
}

TEST_F(ConfigTest, TlsCertificateAndKeyComeTogether) {
  EXPECT_THAT(problems(with_required("[http]\ntls_certificate = \"tls/cert.pem\"\n")),
              ElementsAre(at(6, "http.tls_private_key: required when http.tls_certificate is set")));
  EXPECT_THAT(problems(with_required("[http]\ntls_private_key = \"tls/key.pem\"\n")),
              ElementsAre(at(6, "http.tls_certificate: required when http.tls_private_key is set")));
  // Empty strings, as in the documented template, leave TLS off.
  EXPECT_FALSE(parse(with_required("[http]\ntls_certificate = \"\"\ntls_private_key = \"\"\n")).http.tls_enabled());
}

TEST_F(ConfigTest, ApiKeysAreSha256Digests) {
  const std::string digest = sha256_hex("dev-token-change-me");
  const Config c = parse(with_required("[http]\napi_keys = [\"sha256:" + digest + "\"]\n"));
  ASSERT_EQ(c.http.api_keys.size(), 1u);
  EXPECT_EQ(c.http.api_keys[0], sha256("dev-token-change-me"));

  const std::string expected = R"(expected "sha256:" followed by the 64 hex digits of the token's SHA-256)";
  const auto p = problems(with_required("[http]\napi_keys = [\n  \"sha256:" + digest +
                                        "\",\n  \"my-secret-token\",\n  \"sha256:" + digest.substr(1) +
                                        "\",\n  \"sha1:" + digest + "\"]\n"));
  EXPECT_THAT(p, ElementsAre(at(8, "http.api_keys[1]: " + expected), at(9, "http.api_keys[2]: " + expected),
                             at(10, "http.api_keys[3]: " + expected)));
  // A token pasted by mistake must not be printed back.
  for (const auto& line : p) EXPECT_EQ(line.find("my-secret-token"), std::string::npos);
}

// ---- storage, rules, paths, log ----------------------------------------------

TEST_F(ConfigTest, DatabaseDirectoryMustBeCreatable) {
  EXPECT_THAT(
      problems(R"(
[storage]
database = "rules.toml/sub/referrald.db"
[rules]
file = "rules.toml"
)"),
      ElementsAre(at(2, "storage.database: cannot be created: " + abs("etc/rules.toml") + " is not a directory")));
  EXPECT_THAT(problems("[storage]\ndatabase = \"tls\"\n[rules]\nfile = \"rules.toml\"\n"),
              ElementsAre(at(2, "storage.database: is a directory: " + abs("etc/tls"))));
  // A parent that does not exist yet is fine, and the loader creates nothing.
  parse("[storage]\ndatabase = \"new/deeper/referrald.db\"\n[rules]\nfile = \"rules.toml\"\n");
  EXPECT_FALSE(fs::exists(root_ / "etc" / "new"));
}

TEST_F(ConfigTest, PostgresqlIsNamedByUrlWithThePasswordInItsFile) {
  const Config c = parse(R"(
[storage]
backend = "postgresql"
url = "postgresql://referrald@db.hospital.example:5432/referrald?sslmode=verify-full"
password_file = "secrets/smtp"
pool = 8
[rules]
file = "rules.toml"
)");
  EXPECT_EQ(c.storage.backend, StorageBackend::postgresql);
  EXPECT_EQ(c.storage.url, "postgresql://referrald@db.hospital.example:5432/referrald?sslmode=verify-full");
  EXPECT_EQ(c.storage.url_line, 3);
  EXPECT_EQ(c.storage.password_file, fs::path(abs("etc/secrets/smtp")));
  EXPECT_EQ(c.storage.password, std::optional<std::string>("x"));
  EXPECT_EQ(c.storage.pool, 8u);
  EXPECT_TRUE(c.storage.database.empty());
  EXPECT_EQ(parse("[storage]\ndatabase = \"x.db\"\n[rules]\nfile = \"rules.toml\"\n").storage.backend,
            StorageBackend::sqlite);
}

TEST_F(ConfigTest, StorageKeysBelongToTheirBackend) {
  EXPECT_THAT(problems("[storage]\nbackend = \"postgresql\"\n[rules]\nfile = \"rules.toml\"\n"),
              ElementsAre(at(1, R"(storage.url: required with backend = "postgresql")")));
  EXPECT_THAT(problems(R"(
[storage]
backend = "postgresql"
url = "postgresql://referrald:hunter2@db/referrald"
database = "x.db"
pool = 0
[rules]
file = "rules.toml"
)"),
              ElementsAre(at(3, "storage.url: must not contain a password (use password_file)"),
                          at(4, R"(storage.database: only with backend = "sqlite" (PostgreSQL is named by url))"),
                          at(5, "storage.pool: expected 1..256, got 0")));
  EXPECT_THAT(problems(R"(
[storage]
backend = "oracle"
database = "x.db"
url = "postgresql://db/referrald"
[rules]
file = "rules.toml"
)"),
              ElementsAre(at(2, R"(storage.backend: unknown backend "oracle" (known: sqlite, postgresql))"),
                          at(4, R"(storage.url: only with backend = "postgresql")")));
  EXPECT_THAT(problems(R"(
[storage]
backend = "postgresql"
url = "mysql://db/referrald"
[rules]
file = "rules.toml"
)"),
              ElementsAre(at(3, "storage.url: expected a URI starting with postgresql://")));
  // A URI libpq cannot read is refused without its text: libpq's own
  // messages quote it, and here it holds a password (a bad percent escape).
  const auto unreadable = problems(R"(
[storage]
backend = "postgresql"
url = "postgresql://referrald:hunter%zz2@db/referrald"
[rules]
file = "rules.toml"
)");
  ASSERT_EQ(unreadable.size(), 1U);
  EXPECT_EQ(unreadable[0].find("hunter"), std::string::npos) << unreadable[0];
  EXPECT_NE(unreadable[0].find("storage.url: is not a PostgreSQL URI libpq can read"), std::string::npos)
      << unreadable[0];
}

TEST_F(ConfigTest, RulesFileMustExist) {
  EXPECT_THAT(problems("[storage]\ndatabase = \"x.db\"\n[rules]\nfile = \"rulez.toml\"\n"),
              ElementsAre(at(4, "rules.file: file not found: " + abs("etc/rulez.toml"))));
}

TEST_F(ConfigTest, PathDirectoriesMustExistIncludingDefaults) {
  fs::remove_all(root_ / "web");
  EXPECT_THAT(problems(with_required("[paths]\nschemas = \"nowhere\"\n")),
              ElementsAre(at(6, "paths.schemas: directory not found: " + abs("etc/nowhere")),
                          file_ + ": paths.web: directory not found: " + abs("web")));
}

TEST_F(ConfigTest, LogLevel) {
  EXPECT_EQ(parse(with_required("[log]\nlevel = \"debug\"\n")).log_level, "debug");
  EXPECT_THAT(problems(with_required("[log]\nlevel = \"verbose\"\n")),
              ElementsAre(at(6, R"(log.level: unknown level "verbose" (known: trace, debug, info, warn, error))")));
}

// ---- office ------------------------------------------------------------------

TEST_F(ConfigTest, OfficeIsRead) {
  const Config c = parse(with_required(R"(
[office]
name = "Referral Office"
phone = "1-888-226-4343"
fax = "901-595-4011"
pager = "1-800-349-4334"
time_zone = "America/New_York"
open_days = ["mon", "wed", "sat"]
opens = "07:30"
closes = "24:00"
holidays = ["2026-12-25", 2027-01-01]
)"));
  EXPECT_EQ(c.office.name, "Referral Office");
  EXPECT_EQ(c.office.phone, "1-888-226-4343");
  EXPECT_EQ(c.office.fax, "901-595-4011");
  EXPECT_EQ(c.office.pager, "1-800-349-4334");
  const BusinessHours& h = c.office.hours;
  EXPECT_EQ(h.time_zone, "America/New_York");
  EXPECT_EQ(h.open_days, (std::array<bool, 7>{false, true, false, true, false, false, true}));
  EXPECT_EQ(h.opens, 7h + 30min);
  EXPECT_EQ(h.closes, 24h);
  using namespace std::chrono;
  EXPECT_EQ(h.holidays, (std::vector<Date>{2026y / December / 25, 2027y / January / 1}));
}

TEST_F(ConfigTest, OfficeProblems) {
  EXPECT_THAT(problems(with_required(R"(
[office]
time_zone = "America/Chicgo"
open_days = ["mon", "monday", "fri"]
opens = "8am"
closes = "24:30"
holidays = ["2026-12-25", "2026-02-30", 20261226]
)")),
              ElementsAre(at(6, R"(office.time_zone: unknown time zone "America/Chicgo")"),
                          at(7, R"(office.open_days: unknown day "monday" (known: mon, tue, wed, thu, fri, sat, sun))"),
                          at(8, R"(office.opens: expected a time "HH:MM", got "8am")"),
                          at(9, R"(office.closes: expected a time "HH:MM", got "24:30")"),
                          at(10, R"(office.holidays: expected a date "YYYY-MM-DD", got "2026-02-30")"),
                          at(10, R"(office.holidays[2]: expected a date "YYYY-MM-DD", got integer)")));
  EXPECT_THAT(problems(with_required("[office]\nopens = \"09:00\"\ncloses = \"09:00\"\n")),
              ElementsAre(at(7, R"(office.closes: must be after office.opens (09:00), got "09:00")")));
  EXPECT_THAT(problems(with_required("[office]\nopens = \"24:00\"\n")),
              ElementsAre(at(6, R"(office.opens: expected a time "HH:MM", got "24:00")")));
}

// ---- targets -----------------------------------------------------------------

TEST_F(ConfigTest, TargetsOfEveryTypeAreRead) {
  const Config c = parse(with_required(R"(
[[target]]
name = "office-email"
type = "smtp"
url = "smtps://mail.example.org:465"
starttls = "required"
ca_file = "ca.pem"
username = "referrald"
password_file = "secrets/smtp"
from = "referrald@example.org"
to = ["referrals@example.org", "backup@example.org"]
concurrency = 2
timeout = "2m"

[[target]]
name = "office-fax"
type = "hylafax"
host = "fax.example.org:4559"
user = "referrald"
dial = "9015954011"
done_when = "done"
poll_interval = "30s"

[[target]]
name = "office-pager"
type = "snpp"
host = "[::1]:444"
pager_id = "1234567"
max_message_length = 160
hylafax = true

[[target]]
name = "spool"
type = "spool"
directory = "../var/spool/x"
)"));
  ASSERT_EQ(c.targets.size(), 4u);
  const TargetConfig& smtp = c.targets[0];
  EXPECT_EQ(smtp.name, "office-email");
  EXPECT_EQ(smtp.type, "smtp");
  EXPECT_EQ(smtp.line, 5);
  EXPECT_EQ(smtp.concurrency, 2u);
  EXPECT_EQ(smtp.timeout, 2min);
  ASSERT_NE(smtp.get_string("url"), nullptr);
  EXPECT_EQ(*smtp.get_string("url"), "smtps://mail.example.org:465");
  EXPECT_EQ(*smtp.get_string("ca_file"), abs("etc/ca.pem"));
  EXPECT_EQ(*smtp.get_string("password_file"), abs("etc/secrets/smtp"));
  ASSERT_NE(smtp.get_list("to"), nullptr);
  EXPECT_THAT(*smtp.get_list("to"), ElementsAre("referrals@example.org", "backup@example.org"));
  EXPECT_EQ(smtp.get_string("helo"), nullptr);
  EXPECT_EQ(smtp.get_list("from"), nullptr);  // a string, not a list

  const TargetConfig& fax = c.targets[1];
  EXPECT_EQ(fax.concurrency, 4u);
  EXPECT_EQ(fax.timeout, 60s);
  EXPECT_EQ(*fax.get_string("host"), "fax.example.org:4559");
  EXPECT_EQ(fax.get_duration("poll_interval"), 30s);

  const TargetConfig& pager = c.targets[2];
  EXPECT_EQ(pager.get_integer("max_message_length"), 160);
  EXPECT_EQ(pager.get_bool("hylafax"), true);
  EXPECT_EQ(pager.get_bool("login"), std::nullopt);

  EXPECT_EQ(*c.targets[3].get_string("directory"), abs("var/spool/x"));
}

// ---- systemd credentials ("credential:NAME") -----------------------------------

// Sets $CREDENTIALS_DIRECTORY (or unsets it) for one test and restores it after.
class CredentialsDirectory {
 public:
  explicit CredentialsDirectory(const std::optional<fs::path>& dir) {
    if (const char* old = std::getenv("CREDENTIALS_DIRECTORY")) old_ = old;
    if (dir) {
      ::setenv("CREDENTIALS_DIRECTORY", dir->c_str(), 1);
    } else {
      ::unsetenv("CREDENTIALS_DIRECTORY");
    }
  }
  ~CredentialsDirectory() {
    if (old_) {
      ::setenv("CREDENTIALS_DIRECTORY", old_->c_str(), 1);
    } else {
      ::unsetenv("CREDENTIALS_DIRECTORY");
    }
  }
  CredentialsDirectory(const CredentialsDirectory&) = delete;
  CredentialsDirectory& operator=(const CredentialsDirectory&) = delete;

 private:
  std::optional<std::string> old_;
};

constexpr std::string_view credential_targets = R"(
[http]
tls_certificate = "credential:tls-cert"
tls_private_key = "credential:tls-key"

[[target]]
name = "office-email"
type = "smtp"
url = "smtp://mail.example.org:587"
ca_file = "ca.pem"
password_file = "credential:smtp-password"
from = "referrald@example.org"
to = ["referrals@example.org"]
username = "referrald"
[[target]]
name = "office-pager-wctp"
type = "wctp"
url = "https://wctp.example.org/wctp"
sender_id = "referrald"
security_code_file = "credential:wctp-security-code"
recipient_id = "8003494334"
)";

TEST_F(ConfigTest, CredentialsResolveInCredentialsDirectory) {
  const fs::path credentials = root_ / "run" / "credentials" / "referrald.service";
  fs::create_directories(credentials);
  for (const char* name : {"tls-cert", "tls-key", "smtp-password", "wctp-security-code"}) {
    std::ofstream(credentials / name) << "secret\n";
  }
  const CredentialsDirectory env(credentials);
  const Config c = parse(with_required(credential_targets));
  EXPECT_TRUE(c.http.tls_enabled());
  EXPECT_EQ(c.http.tls_certificate, credentials / "tls-cert");
  EXPECT_EQ(c.http.tls_private_key, credentials / "tls-key");
  ASSERT_EQ(c.targets.size(), 2u);
  EXPECT_EQ(*c.targets[0].get_string("password_file"), (credentials / "smtp-password").string());
  EXPECT_EQ(*c.targets[0].get_string("ca_file"), abs("etc/ca.pem"));  // a plain path beside a credential
  EXPECT_EQ(*c.targets[1].get_string("security_code_file"), (credentials / "wctp-security-code").string());
}

TEST_F(ConfigTest, CredentialWithoutCredentialsDirectory) {
  const CredentialsDirectory env(std::nullopt);
  const auto expected = [&](int line, std::string_view key, std::string_view name) {
    return at(line, std::string(key) + ": credential \"" + std::string(name) +
                        "\" requested but $CREDENTIALS_DIRECTORY is not set (run under systemd with "
                        "LoadCredential=" +
                        std::string(name) + ")");
  };
  EXPECT_THAT(
      problems(with_required(credential_targets)),
      ElementsAre(expected(6, "http.tls_certificate", "tls-cert"), expected(7, "http.tls_private_key", "tls-key"),
                  expected(14, "target[0].password_file", "smtp-password"),
                  expected(23, "target[1].security_code_file", "wctp-security-code")));
  // An empty variable is no directory either.
  const CredentialsDirectory empty(fs::path{});
  EXPECT_EQ(problems(with_required(credential_targets)).size(), 4u);
}

TEST_F(ConfigTest, CredentialThatSystemdDidNotProvide) {
  const fs::path credentials = root_ / "credentials";
  fs::create_directories(credentials / "tls-key");  // a directory is not a key
  std::ofstream(credentials / "tls-cert") << "x\n";
  std::ofstream(credentials / "wctp-security-code") << "x\n";
  const CredentialsDirectory env(credentials);
  EXPECT_THAT(problems(with_required(credential_targets)),
              ElementsAre(at(7, "http.tls_private_key: not a regular file: " + (credentials / "tls-key").string()),
                          at(14, "target[0].password_file: credential not found: " +
                                     (credentials / "smtp-password").string())));
}

// Run by hand (--check-config, referralctl), with no $CREDENTIALS_DIRECTORY:
// a credential is looked for in each fallback directory in turn, as
// systemd's LoadCredential=NAME looks through the credential stores.
TEST_F(ConfigTest, CredentialFallbacksAreSearchedInOrder) {
  const CredentialsDirectory env(std::nullopt);
  const fs::path first = root_ / "etc" / "credstore";
  const fs::path second = root_ / "usr" / "lib" / "credstore";
  fs::create_directories(first);
  fs::create_directories(second);
  for (const char* name : {"tls-cert", "smtp-password"}) std::ofstream(second / name) << "in the second\n";
  for (const char* name : {"tls-cert", "tls-key"}) std::ofstream(first / name) << "in the first\n";
  const std::string full = with_required(credential_targets);
  const std::string_view text = text_of(full);
  try {
    parse_config(text, file_, with_channels({first, second}));
    FAIL() << "the WCTP security code is in neither directory";
  } catch (const ConfigError& e) {
    ASSERT_EQ(e.problems().size(), 1U);
    EXPECT_EQ(e.problems()[0].to_string(),
              at(23, "target[1].security_code_file: credential not found: " + (first / "wctp-security-code").string() +
                         ", " + (second / "wctp-security-code").string()));
  }
  std::ofstream(second / "wctp-security-code") << "x\n";
  const Config c = parse_config(text, file_, with_channels({first, second}));
  EXPECT_EQ(c.http.tls_certificate, first / "tls-cert");  // the first directory that holds it
  EXPECT_EQ(c.http.tls_private_key, first / "tls-key");
  EXPECT_EQ(*c.targets[0].get_string("password_file"), (second / "smtp-password").string());
  EXPECT_EQ(*c.targets[1].get_string("security_code_file"), (second / "wctp-security-code").string());
}

TEST_F(ConfigTest, CredentialNamesAndPlacesAreChecked) {
  const CredentialsDirectory env(root_ / "etc");
  EXPECT_THAT(problems(with_required(R"(
[[target]]
name = "office-fax"
type = "hylafax"
host = "fax.example.org:4559"
user = "referrald"
dial = "9015954011"
password_file = "credential:../secrets/smtp"

[[target]]
name = "spool"
type = "spool"
directory = "credential:spool"

[[target]]
name = "office-pager"
type = "snpp"
host = "snpp.example.org:444"
pager_id = "1234567"
password_file = "credential:"
)")),
              ElementsAre(at(11,
                             "target[0].password_file: expected a credential name after \"credential:\" "
                             "(letters, digits, \".\", \"_\", \"-\", \"@\", \":\"), got "
                             "\"credential:../secrets/smtp\""),
                          at(16,
                             "target[1].directory: a credential can stand only for a secret file "
                             "(password_file, security_code_file, ca_file, http.tls_certificate, "
                             "http.tls_private_key, storage.encryption_keys), got \"credential:spool\""),
                          at(23,
                             "target[2].password_file: expected a credential name after \"credential:\" "
                             "(letters, digits, \".\", \"_\", \"-\", \"@\", \":\"), got \"credential:\"")));
  // Only secrets come from credentials: the rules file and the database do not.
  EXPECT_THAT(problems("[storage]\ndatabase = \"credential:db\"\n[rules]\nfile = \"credential:rules.toml\"\n"),
              ElementsAre(at(2,
                             "storage.database: a credential can stand only for a secret file (password_file, "
                             "security_code_file, ca_file, http.tls_certificate, http.tls_private_key, "
                             "storage.encryption_keys), got \"credential:db\""),
                          at(4,
                             "rules.file: a credential can stand only for a secret file (password_file, "
                             "security_code_file, ca_file, http.tls_certificate, http.tls_private_key, "
                             "storage.encryption_keys), got \"credential:rules.toml\"")));
}

// ---- storage.encryption_keys --------------------------------------------------

const std::string key_hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

// The required settings with storage.encryption_keys = VALUE on line 3.
std::string with_keys(const std::string& value) {
  return "[storage]\ndatabase = \"../var/referrald.db\"\nencryption_keys = " + value +
         "\n[rules]\nfile = \"rules.toml\"\n";
}

void write_private(const fs::path& file, const std::string& text,
                   fs::perms perms = fs::perms::owner_read | fs::perms::owner_write) {
  std::ofstream(file) << text;
  fs::permissions(file, perms);
}

TEST_F(ConfigTest, EncryptionKeysAreReadFromAPrivateFileBesideTheConfiguration) {
  write_private(root_ / "etc" / "keys", "# newest first\nk2 " + key_hex + "\nk1 " + std::string(64, 'f') + "\n");
  const Config c = parse(with_keys("\"keys\""));
  EXPECT_EQ(c.storage.encryption_keys, fs::path(abs("etc/keys")));
  ASSERT_NE(c.storage.keys, nullptr);
  EXPECT_EQ(c.storage.keys->current().id, "k2");
  EXPECT_NE(c.storage.keys->find("k1"), nullptr);
  // Without the setting: no keys (documents are stored in the clear).
  EXPECT_EQ(parse(with_required("")).storage.keys, nullptr);
}

TEST_F(ConfigTest, EncryptionKeyFileProblemsNameTheFileAndLine) {
  const std::string text = with_keys("\"keys\"");
  const std::string keys = abs("etc/keys");
  EXPECT_THAT(problems(text), ElementsAre(at(3, "storage.encryption_keys: file not found: " + keys)));

  write_private(root_ / "etc" / "keys", "k1 " + key_hex + "\n",
                fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  EXPECT_THAT(problems(text), ElementsAre(at(3, "storage.encryption_keys: " + keys +
                                                    ": may be read or written by group or others (mode 0640); "
                                                    "make it private to referrald's user (chmod 600)")));

  write_private(root_ / "etc" / "keys", "k1 " + key_hex + "\nk2 " + key_hex.substr(2) + "\nk1 " + key_hex + "\n");
  EXPECT_THAT(
      problems(text),
      ElementsAre(at(3, "storage.encryption_keys: " + keys +
                            R"(:2: key "k2": expected 64 hex digits (openssl rand -hex 32), got 62 characters)"),
                  at(3, "storage.encryption_keys: " + keys + R"(:3: key "k1" is listed twice (first at line 1))")));
  for (const auto& p : problems(text)) EXPECT_EQ(p.find(key_hex.substr(4, 16)), std::string::npos) << p;

  EXPECT_THAT(problems(with_keys("7")), ElementsAre(at(3, "storage.encryption_keys: expected a string, got integer")));
}

TEST_F(ConfigTest, EncryptionKeysLoadAloneWhenAnotherPartOfTheFileDoesNot) {
  // referralctl still reads referrals when, say, a target's directory is gone.
  write_private(root_ / "etc" / "keys", "k1 " + key_hex + "\n");
  std::ofstream(file_) << with_keys("\"keys\"") << "[[target]]\nname = \"x\"\ntype = \"fax2\"\n";
  std::vector<ConfigProblem> problems;
  const auto keys = load_encryption_keys(file_, {}, problems);
  ASSERT_NE(keys, nullptr);
  EXPECT_EQ(keys->current().id, "k1");
  EXPECT_TRUE(problems.empty());

  // The key file's own problems come out as load_configuration reports them.
  write_private(root_ / "etc" / "keys", "k1 " + key_hex.substr(1) + "\n");
  EXPECT_EQ(load_encryption_keys(file_, {}, problems), nullptr);
  ASSERT_EQ(problems.size(), 1U);
  EXPECT_EQ(problems[0].to_string(),
            at(3, "storage.encryption_keys: " + abs("etc/keys") +
                      R"(:1: key "k1": expected 64 hex digits (openssl rand -hex 32), got 63 characters)"));
}

TEST_F(ConfigTest, EncryptionKeysAsACredentialNeedNoOwnerOnlyMode) {
  const fs::path credentials = root_ / "credentials";
  fs::create_directories(credentials);
  // systemd grants the service's user access by ACL, which shows as group bits.
  write_private(credentials / "encryption-keys", "k1 " + key_hex + "\n", fs::perms::owner_read | fs::perms::group_read);
  const std::string text = with_keys("\"credential:encryption-keys\"");
  {
    const CredentialsDirectory env(credentials);
    const Config c = parse(text);
    ASSERT_NE(c.storage.keys, nullptr);
    EXPECT_EQ(c.storage.encryption_keys, credentials / "encryption-keys");
  }
  // referralctl, which systemd does not start, looks where the running service's credentials are.
  const CredentialsDirectory none(std::nullopt);
  EXPECT_EQ(problems(text).size(), 1U);
  const Config c = parse_config(text_of(text), file_, with_channels({credentials}));
  ASSERT_NE(c.storage.keys, nullptr);
  EXPECT_EQ(c.storage.keys->current().id, "k1");
}

TEST_F(ConfigTest, UnknownTargetType) {
  EXPECT_THAT(problems(with_required(R"(
[[target]]
name = "office-email"
type = "spool"
directory = "spool"
[[target]]
name = "office-fax"
type = "fax2"
dial = "9015954011"
)")),
              ElementsAre(at(
                  11, R"(target[1].type: unknown type "fax2" (known: smtp, hylafax, http-fax, snpp, wctp, spool))")));
}

TEST_F(ConfigTest, TargetNamesAreRequiredUniqueAndPlain) {
  EXPECT_THAT(
      problems(with_required(R"(
[[target]]
name = "office-fax"
type = "spool"
directory = "a"
[[target]]
name = "office-fax"
type = "spool"
directory = "b"
[[target]]
type = "spool"
directory = "c"
[[target]]
name = "office fax"
type = "spool"
directory = "d"
)")),
      ElementsAre(at(10, R"(target[1].name: duplicate target name "office-fax" (first defined at line 5))"),
                  at(13, "target[2].name: required"),
                  at(17, R"(target[3].name: expected letters, digits, ".", "_" or "-" only, got "office fax")")));
}

TEST_F(ConfigTest, TargetRequiredAndUnknownKeys) {
  EXPECT_THAT(
      problems(with_required(R"(
[[target]]
name = "office-email"
type = "smtp"
from = "referrald@example.org"
to = ["referrals@example.org"]
dial = "9015954011"
password = "hunter2"
)")),
      ElementsAre(at(5, R"(target[0].url: required for type "smtp")"),
                  at(10,
                     "target[0].dial: unknown key (known: name, type, concurrency, timeout, url, starttls, "
                     "allow_plaintext, ca_file, username, password_file, from, to, recipient, helo)"),
                  at(11,
                     "target[0].password: unknown key (known: name, type, concurrency, timeout, url, "
                     "starttls, allow_plaintext, ca_file, username, password_file, from, to, recipient, helo)")));
  EXPECT_THAT(problems(with_required("[[target]]\nname = \"x\"\n")), ElementsAre(at(5, "target[0].type: required")));
}

TEST_F(ConfigTest, TargetValuesAreCheckedByKind) {
  EXPECT_THAT(
      problems(with_required(R"(
[[target]]
name = "office-email"
type = "smtp"
url = "http://mail.example.org"
starttls = "yes"
allow_plaintext = "no"
ca_file = "missing-ca.pem"
from = ""
to = "referrals@example.org"
[[target]]
name = "office-fax"
type = "hylafax"
host = "fax.example.org"
user = "referrald"
dial = "9015954011"
done_when = "sent"
poll_interval = "soon"
concurrency = 0
[[target]]
name = "office-pager"
type = "snpp"
host = "pager_host!:444"
pager_id = ["1"]
max_message_length = -1
[[target]]
name = "spool"
type = "spool"
directory = "rules.toml"
[[target]]
name = "wctp"
type = "wctp"
url = "https://user:secret@wctp.example.org/wctp"
sender_id = "referrald"
recipient_id = "1234"
security_code_file = "secrets/none"
)")),
      ElementsAre(
          at(8, R"(target[0].url: expected a URL starting with smtp:// or smtps://, got "http://mail.example.org")"),
          at(9, R"(target[0].starttls: unknown value "yes" (known: required, none))"),
          at(10, "target[0].allow_plaintext: expected a boolean, got string"),
          at(11, "target[0].ca_file: file not found: " + abs("etc/missing-ca.pem")),
          at(12, "target[0].from: must not be empty"), at(13, "target[0].to: expected an array of strings, got string"),
          at(17, R"(target[1].host: expected "host:port" with a port in 1..65535, got "fax.example.org")"),
          at(20, R"(target[1].done_when: unknown value "sent" (known: queued, done))"),
          at(21, R"(target[1].poll_interval: expected a duration like "30s", "5m", "48h", got "soon")"),
          at(22, "target[1].concurrency: expected 1..64, got 0"),
          at(26, R"(target[2].host: expected the host to be a host name or an IP address, got "pager_host!:444")"),
          at(27, "target[2].pager_id: expected a string, got array"),
          at(28, "target[2].max_message_length: expected 0..1000000, got -1"),
          at(32, "target[3].directory: not a directory: " + abs("etc/rules.toml")),
          at(36, "target[4].url: must not contain a user name or password (use username and password_file)"),
          at(39, "target[4].security_code_file: file not found: " + abs("etc/secrets/none"))));
}

TEST_F(ConfigTest, PlainTextMailNeedsExplicitConsent) {
  const std::string target = R"(
[[target]]
name = "office-email"
type = "smtp"
url = "smtp://127.0.0.1:2525"
starttls = "none"
from = "referrald@example.org"
to = ["referrals@example.org"]
)";
  EXPECT_THAT(
      problems(with_required(target)),
      ElementsAre(at(
          9,
          R"(target[0].starttls: "none" with an smtp:// URL sends mail unencrypted; set allow_plaintext = true to allow it)")));
  EXPECT_TRUE(problems(with_required(target + "allow_plaintext = true\n")).empty());
}

TEST_F(ConfigTest, ChannelProblemsAreListedWithTheRestAtTheirLines) {
  EXPECT_THAT(problems(with_required(R"(
[log]
level = "loud"
[[target]]
name = "office-email"
type = "smtp"
url = "smtp://mail.example.org"
from = "not an address"
to = ["referrals@example.org"]
[[target]]
name = "office-fax"
type = "http-fax"
url = "https://fax.example.org/send"
to = "+19015954011"
status_url = "https://fax.example.org/status/{id}"
)")),
              ElementsAre(at(6, R"(log.level: unknown level "loud" (known: trace, debug, info, warn, error))"),
                          testing::StartsWith(at(11, "target[0].from: ")),
                          at(13, "target[1]: status_url and status_path go together (set both, or neither)")));
}

TEST_F(ConfigTest, WithoutTheChannelsTargetsKeepOnlyTheirCommonKeys) {
  // referralctl reads the configuration for the database and the rules; it
  // sends nothing, so a target's channel keys are not its business.
  const Config c = parse_config(text_of(with_required(R"(
[[target]]
name = "office-fax"
type = "fax2"
dial = 12
timeout = "30s"
)")),
                                file_);
  ASSERT_EQ(c.targets.size(), 1u);
  EXPECT_EQ(c.targets[0].name, "office-fax");
  EXPECT_EQ(c.targets[0].type, "fax2");
  EXPECT_EQ(c.targets[0].timeout, 30s);
  EXPECT_TRUE(c.targets[0].settings.empty());
}

TEST_F(ConfigTest, TargetMustBeAnArrayOfTables) {
  EXPECT_THAT(problems(with_required("[target]\nname = \"x\"\n")),
              ElementsAre(at(5, "target: expected an array of tables ([[target]]), got table")));
}

// ---- routes ------------------------------------------------------------------

constexpr std::string_view two_targets = R"(
[[target]]
name = "office-email"
type = "spool"
directory = "e"
[[target]]
name = "office-pager"
type = "spool"
directory = "p"
)";  // lines 5-12 after with_required

TEST_F(ConfigTest, RoutesAreRead) {
  const Config c = parse(with_required(std::string(two_targets) + R"(
[[route]]
when = { decision = ["accepted", "review"] }
notify = ["office-email"]
[[route]]
when = { urgency = "emergent", after_hours = true, decision = "declined" }
notify = "office-pager"
[[route]]
notify = ["office-email", "office-pager"]
)"));
  ASSERT_EQ(c.routes.size(), 3u);
  EXPECT_THAT(c.routes[0].decisions, ElementsAre(Decision::accepted, Decision::review));
  EXPECT_TRUE(c.routes[0].urgencies.empty());
  EXPECT_FALSE(c.routes[0].after_hours.has_value());
  EXPECT_THAT(c.routes[0].notify, ElementsAre("office-email"));
  EXPECT_THAT(c.routes[1].decisions, ElementsAre(Decision::declined));
  EXPECT_THAT(c.routes[1].urgencies, ElementsAre(Urgency::emergent));
  EXPECT_EQ(c.routes[1].after_hours, true);
  EXPECT_THAT(c.routes[1].notify, ElementsAre("office-pager"));
  EXPECT_TRUE(c.routes[2].decisions.empty());
  EXPECT_THAT(c.routes[2].notify, ElementsAre("office-email", "office-pager"));
}

TEST_F(ConfigTest, RouteProblems) {
  EXPECT_THAT(
      problems(with_required(std::string(two_targets) + R"(
[[route]]
when = { decision = ["acepted"], urgency = "soon", after_hours = "yes", weekday = "mon" }
notify = ["office-email", "office-fx"]
[[route]]
when = { decision = [] }
[[route]]
when = "always"
notify = []
bogus = 1
)")),
      ElementsAre(at(15, R"(route[0].when.decision: unknown decision "acepted" (known: accepted, review, declined))"),
                  at(15, R"(route[0].when.urgency: unknown urgency "soon" (known: routine, urgent, emergent))"),
                  at(15, "route[0].when.after_hours: expected a boolean, got string"),
                  at(15, "route[0].when.weekday: unknown key (known: decision, urgency, after_hours)"),
                  at(16, R"(route[0].notify: unknown target "office-fx")"), at(17, "route[1].notify: required"),
                  at(18, "route[1].when.decision: expected at least one decision"),
                  at(20, "route[2].when: expected a table, got string"),
                  at(21, "route[2].notify: expected at least one target name"),
                  at(22, "route[2].bogus: unknown key (known: when, notify)")));
}

TEST_F(ConfigTest, RouteMayNameATargetWhoseOtherSettingsAreWrong) {
  // Only the target's own problem is reported, not an unknown target as well.
  EXPECT_THAT(problems(with_required(R"(
[[target]]
name = "office-fax"
type = "hylafax"
[[route]]
notify = ["office-fax"]
)")),
              ElementsAre(at(5, R"(target[0].host: required for type "hylafax")"),
                          at(5, R"(target[0].user: required for type "hylafax")")));
}

// ---- the closed loop: escalation, notices, intake, office keys -----------------

constexpr std::string_view loop_targets = R"(
[[target]]
name = "backup-pager"
type = "spool"
directory = "p"
[[target]]
name = "referrer-email"
type = "spool"
directory = "r"
recipient = "referrer"
)";  // lines 5-13 after with_required

TEST_F(ConfigTest, ClosedLoopSectionsAreReadWithTheirDefaults) {
  const Config plain = parse(with_required(""));
  EXPECT_TRUE(plain.escalations.empty());
  EXPECT_TRUE(plain.closed_loop.on.empty());
  EXPECT_EQ(plain.closed_loop.ack_link_ttl, std::chrono::hours(24 * 7));
  EXPECT_EQ(plain.closed_loop.link_origin, "http://127.0.0.1:8080");  // the first public origin
  EXPECT_EQ(plain.intake.duplicate_window, std::chrono::hours(24 * 30));
  EXPECT_TRUE(plain.intake.identity_key.empty());
  EXPECT_TRUE(plain.http.office_api_keys.empty());

  const std::string office_key = "sha256:" + std::string(64, 'a');
  const Config c = parse(with_required(std::string(loop_targets) + R"(
[[escalation]]
urgency = ["emergent"]
steps = [ { after = "15m", notify = ["backup-pager"] },
          { after = "45m", notify = "backup-pager" } ]
[[escalation]]
business_hours = true
steps = [ { after = "2h", notify = ["backup-pager"] } ]
[closed_loop]
on = ["acknowledged", "needs-info", "acknowledged"]
notify = ["referrer-email"]
ack_link_ttl = "3d"
link_origin = "HTTPS://Referrals.Example.org:443"
[intake]
duplicate_window = "14d"
[http]
office_api_keys = [")" + office_key + R"("]
)"));
  ASSERT_EQ(c.escalations.size(), 2u);
  EXPECT_THAT(c.escalations[0].urgencies, ElementsAre(Urgency::emergent));
  EXPECT_FALSE(c.escalations[0].business_hours);
  ASSERT_EQ(c.escalations[0].steps.size(), 2u);
  EXPECT_EQ(c.escalations[0].steps[0].after, std::chrono::minutes(15));
  EXPECT_THAT(c.escalations[0].steps[1].notify, ElementsAre("backup-pager"));
  EXPECT_TRUE(c.escalations[1].urgencies.empty());  // every urgency
  EXPECT_TRUE(c.escalations[1].business_hours);
  EXPECT_THAT(c.closed_loop.on, ElementsAre(OfficeStatus::acknowledged, OfficeStatus::needs_info));
  EXPECT_THAT(c.closed_loop.notify, ElementsAre("referrer-email"));
  EXPECT_EQ(c.closed_loop.ack_link_ttl, std::chrono::hours(72));
  EXPECT_EQ(c.closed_loop.link_origin, "https://referrals.example.org");
  EXPECT_EQ(c.intake.duplicate_window, std::chrono::hours(24 * 14));
  ASSERT_EQ(c.http.office_api_keys.size(), 1u);
  EXPECT_EQ(c.http.office_api_keys[0][0], 0xaa);
  EXPECT_TRUE(c.targets[1].to_referrer());
  EXPECT_FALSE(c.targets[0].to_referrer());

  EXPECT_THAT(notice_targets(c.closed_loop, OfficeStatus::needs_info), ElementsAre("referrer-email"));
  EXPECT_TRUE(notice_targets(c.closed_loop, OfficeStatus::accepted).empty());
  EXPECT_TRUE(notice_targets(plain.closed_loop, OfficeStatus::acknowledged).empty());
}

TEST_F(ConfigTest, ClosedLoopProblemsNameTheKey) {
  const std::string key = "sha256:" + std::string(64, 'b');
  EXPECT_THAT(problems(with_required(std::string(loop_targets) + R"(
[[escalation]]
urgency = "soon"
steps = [ { after = "45m", notify = ["backup-pager"] },
          { after = "15m", notify = ["referrer-email", "nobody"] },
          { notify = ["backup-pager"], when = "later" } ]
[[escalation]]
steps = []
[closed_loop]
on = ["received", "acepted"]
notify = []
link_origin = "https://referrals.example.org/ack"
[intake]
duplicate_window = "0s"
[[route]]
notify = ["referrer-email"]
[http]
api_keys = [")" + key + R"("]
office_api_keys = [")" + key + R"("]
)")),
              ElementsAre(
                  at(16, R"(escalation[0].urgency: unknown urgency "soon" (known: routine, urgent, emergent))"),
                  at(18, R"(escalation[0].steps[1].after: must be later than the step before it (45m), got "15m")"),
                  at(18, R"(escalation[0].steps[1].notify: target "referrer-email" has recipient = "referrer": )"
                         "it carries only the notices of closed_loop.notify"),
                  at(18, R"(escalation[0].steps[1].notify: unknown target "nobody")"),
                  at(19, "escalation[0].steps[2].after: required"),
                  at(19, "escalation[0].steps[2].when: unknown key (known: after, notify)"),
                  at(21, "escalation[1].steps: expected at least one step"),
                  at(23, R"(closed_loop.on: unknown status "received" (known: acknowledged, accepted, declined, )"
                         R"(needs-info, closed))"),
                  at(23, R"(closed_loop.on: unknown status "acepted" (known: acknowledged, accepted, declined, )"
                         R"(needs-info, closed))"),
                  at(24, "closed_loop.notify: expected at least one target name"),
                  at(25, R"(closed_loop.link_origin: expected an origin like "https://referrals.example.org" )"
                         R"((scheme, host, optional port; no path), got "https://referrals.example.org/ack")"),
                  at(27, "intake.duplicate_window: expected a duration greater than 0, got \"0s\""),
                  at(29, R"(route[0].notify: target "referrer-email" has recipient = "referrer": )"
                         "it carries only the notices of closed_loop.notify"),
                  at(32,
                     "http.office_api_keys: a key is in both http.api_keys and http.office_api_keys: give each "
                     "key one scope")));
}

TEST_F(ConfigTest, ReferrerTargetsTakeTheirAddressFromTheReferral) {
  // An smtp or hylafax target for the referrer has no fixed address or number.
  const Config c = parse(with_required(R"(
[[target]]
name = "referrer-email"
type = "smtp"
url = "smtps://mail.example.org"
from = "referrals@example.org"
recipient = "referrer"
[[target]]
name = "referrer-fax"
type = "hylafax"
host = "127.0.0.1:4559"
user = "referrald"
recipient = "referrer"
)"));
  EXPECT_TRUE(c.targets[0].to_referrer());
  EXPECT_TRUE(c.targets[1].to_referrer());

  EXPECT_THAT(problems(with_required(R"(
[[target]]
name = "referrer-email"
type = "smtp"
url = "smtps://mail.example.org"
from = "referrals@example.org"
to = ["referrals@example.org"]
recipient = "referrer"
[[target]]
name = "office-fax"
type = "hylafax"
host = "127.0.0.1:4559"
user = "referrald"
[[target]]
name = "pager"
type = "snpp"
host = "127.0.0.1:444"
pager_id = "1"
recipient = "referrer"
[[target]]
name = "spool"
type = "spool"
directory = "s"
recipient = "office"
)")),
              ElementsAre(at(10, R"(target[0].to: not used with recipient = "referrer": each notice goes to the )"
                                 "referral's email"),
                          at(12, R"(target[1].dial: required (or recipient = "referrer"))"),
                          ::testing::StartsWith(at(22, "target[2].recipient: unknown key")),
                          at(27, R"(target[3].recipient: unknown value "office" (known: referrer))")));
}

// ---- syntax and collection -----------------------------------------------------

TEST_F(ConfigTest, SyntaxErrorIsOneProblemWithTheParsersLine) {
  const auto p = problems(with_required("[http]\nlisten = \"127.0.0.1:8080\nthreads = 2\n"));
  ASSERT_EQ(p.size(), 1u);
  EXPECT_THAT(p[0], ::testing::StartsWith(at(6, "")));
  EXPECT_GT(p[0].size(), at(6, "").size());  // toml++'s description follows
}

TEST_F(ConfigTest, EveryProblemIsReportedAtOnceInLineOrder) {
  // Sections are out of the order the loader reads them in.
  EXPECT_THAT(problems(R"(
[[route]]
notify = ["nowhere"]
[log]
level = "loud"
[http]
threads = 0
[storage]
database = "x.db"
queue_limit = "big"
[delivery]
lease = "forever"
)"),
              ElementsAre(at(2, R"(route[0].notify: unknown target "nowhere")"),
                          at(4, R"(log.level: unknown level "loud" (known: trace, debug, info, warn, error))"),
                          at(6, "http.threads: expected 1..256, got 0"),
                          at(9, "storage.queue_limit: expected an integer, got string"),
                          at(11, R"(delivery.lease: expected a duration like "30s", "5m", "48h", got "forever")"),
                          file_ + ": rules.file: required"));
}

TEST_F(ConfigTest, ErrorMessageListsEveryProblemOnItsOwnLine) {
  try {
    parse("[log]\nlevel = 3\n");
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), at(2, "log.level: expected a string, got integer") + "\n" + file_ +
                                         ": storage.database: required\n" + file_ + ": rules.file: required");
  }
}

// ---- load_configuration: the file and its rules ---------------------------------

TEST_F(ConfigTest, LoadConfigurationReportsAMissingFile) {
  try {
    load_configuration(root_ / "etc" / "nowhere.toml", with_channels());
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.problems(), ::testing::SizeIs(1));
    EXPECT_EQ(std::string(e.what()), abs("etc/nowhere.toml") + ": file not found");
  }
}

TEST_F(ConfigTest, LoadConfigurationReportsConfigAndRulesProblemsTogether) {
  std::ofstream(file_) << with_required("[log]\nlevel = \"loud\"\n");
  std::ofstream(root_ / "etc" / "rules.toml") << "this is = = not toml\n";
  try {
    load_configuration(file_, with_channels());
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    ASSERT_GE(e.problems().size(), 2u) << e.what();
    EXPECT_EQ(e.problems()[0].to_string(),
              at(6, R"(log.level: unknown level "loud" (known: trace, debug, info, warn, error))"));
    EXPECT_EQ(e.problems()[1].file, abs("etc/rules.toml")) << e.what();
  }
}

// ---- the target key tables -------------------------------------------------------

TEST(TargetKeys, EveryChannelHasKeysAndSmtpRequiresItsServer) {
  std::vector<std::string_view> types;
  for (const auto& kind : target_kinds()) {
    types.push_back(kind.type);
    EXPECT_FALSE(kind.keys.empty()) << kind.type;
  }
  EXPECT_THAT(types, ElementsAre("smtp", "hylafax", "http-fax", "snpp", "wctp", "spool"));
  std::set<std::string_view> smtp_required;
  for (const auto& k : target_kinds()[0].keys) {
    if (k.required) smtp_required.insert(k.name);
  }
  // `to` too, unless recipient = "referrer" (checked by the channel).
  EXPECT_EQ(smtp_required, (std::set<std::string_view>{"url", "from"}));
}

// ---- the shipped files --------------------------------------------------------

const fs::path source_dir{REFERRALD_SOURCE_DIR};

std::string read_text(const fs::path& file) {
  std::ifstream in(file);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(ShippedConfig, DevelopmentConfigLoadsWithItsTargetsAndRoutes) {
  const fs::path file = source_dir / "config" / "referrald.toml";
  // scripts/run makes the key file under var/ (git-ignored); here a
  // temporary one stands in for it, named where the file names its own.
  std::string text = read_text(file);
  const std::string setting = "encryption_keys = \"../var/encryption-keys\"\n";
  ASSERT_NE(text.find("\n" + setting), std::string::npos);
  const TempDir dir;
  const fs::path keys = dir / "encryption-keys";
  std::ofstream(keys) << "dev " << std::string(64, '0') << "\n";
  fs::permissions(keys, fs::perms::owner_read | fs::perms::owner_write);
  text.replace(text.find(setting), setting.size(), "encryption_keys = \"" + keys.string() + "\"\n");
  Config c;
  try {
    c = parse_config(text, file, with_channels());
  } catch (const ConfigError& e) {
    FAIL() << e.what();
  }
  ASSERT_NE(c.storage.keys, nullptr);
  EXPECT_EQ(c.storage.keys->current().id, "dev");
  ASSERT_EQ(c.http.listen.size(), 1u);
  EXPECT_EQ(c.http.listen[0].to_string(), "127.0.0.1:8080");
  EXPECT_FALSE(c.http.tls_enabled());
  ASSERT_EQ(c.http.api_keys.size(), 1u);
  EXPECT_EQ(c.http.api_keys[0], sha256("dev-token-change-me"));
  EXPECT_EQ(c.storage.database, (source_dir / "var" / "referrald.db").lexically_normal());
  EXPECT_EQ(c.rules_file, (source_dir / "config" / "rules.toml").lexically_normal());
  EXPECT_EQ(c.schema_dir, (source_dir / "schemas").lexically_normal());
  EXPECT_EQ(c.office.phone, "1-888-226-4343");
  EXPECT_EQ(c.office.fax, "901-595-4011");
  EXPECT_EQ(c.office.pager, "1-800-349-4334");
  EXPECT_EQ(c.office.hours.time_zone, "America/Chicago");

  std::vector<std::string> names;
  for (const auto& t : c.targets) {
    names.push_back(t.name);
    EXPECT_EQ(t.type, "spool") << t.name;
    ASSERT_NE(t.get_string("directory"), nullptr);
    EXPECT_EQ(*t.get_string("directory"), (source_dir / "var" / "spool" / t.name).lexically_normal().string());
  }
  EXPECT_THAT(names, ElementsAre("office-email", "office-fax", "office-pager"));

  using V = std::vector<std::string>;
  const auto& r = c.routes;
  EXPECT_EQ(route_targets(r, {Decision::accepted, Urgency::routine, false}), (V{"office-email", "office-fax"}));
  EXPECT_EQ(route_targets(r, {Decision::review, Urgency::routine, false}), (V{"office-email", "office-fax"}));
  EXPECT_EQ(route_targets(r, {Decision::declined, Urgency::routine, false}), V{});
  EXPECT_EQ(route_targets(r, {Decision::review, Urgency::urgent, false}),
            (V{"office-email", "office-fax", "office-pager"}));
  EXPECT_EQ(route_targets(r, {Decision::declined, Urgency::emergent, false}), V{"office-pager"});
  EXPECT_EQ(route_targets(r, {Decision::accepted, Urgency::routine, true}),
            (V{"office-email", "office-fax", "office-pager"}));
}

TEST(ShippedConfig, ProductionExampleHasOnlyMissingFileProblems) {
  // The example names files under /etc/referrald and /usr/share/referrald
  // that a build machine does not have; anything else would be a mistake in it.
  // Its secrets are credentials, which systemd would provide: here a directory does.
  const TempDir dir;
  const fs::path& credentials = dir.path();
  for (const char* name : {"tls-key", "smtp-password", "hylafax-password", "snpp-password"}) {
    std::ofstream(credentials / name) << "secret\n";
  }
  std::ofstream(credentials / "encryption-keys") << "k1 " << std::string(64, '0') << "\n";
  const fs::path file = source_dir / "config" / "referrald.example.toml";
  const std::string text = read_text(file);
  ASSERT_FALSE(text.empty());
  std::vector<ConfigProblem> problems;
  {
    const CredentialsDirectory env(credentials);
    try {
      parse_config(text, file, with_channels());
    } catch (const ConfigError& e) {
      problems = e.problems();
    }
  }
  std::set<std::string> keys;
  for (const auto& p : problems) {
    EXPECT_TRUE(p.message.starts_with("file not found: /") || p.message.starts_with("directory not found: /"))
        << p.to_string();
    keys.insert(p.key);
  }
  // On a machine without a referrald installation, exactly these are missing.
  if (!fs::exists("/etc/referrald") && !fs::exists("/usr/share/referrald")) {
    EXPECT_EQ(keys, (std::set<std::string>{"http.tls_certificate", "rules.file", "paths.schemas", "paths.web"}));
  }
}

TEST(ShippedConfig, InstalledConfigurationListensOnLoopbackAndSpoolsUnderVarLib) {
  // config/referrald.production.toml is installed as /etc/referrald/referrald.toml
  // beside rules.toml; here it sits beside config/rules.toml the same way.
  const fs::path file = source_dir / "config" / "referrald.production.toml";
  const std::string text = read_text(file);
  ASSERT_FALSE(text.empty());
  // Its encryption keys are a credential, which systemd would provide: here a directory does.
  const TempDir dir;
  std::ofstream(dir / "encryption-keys") << "k1 " << std::string(64, '0') << "\n";
  Config c;
  std::vector<ConfigProblem> problems;
  {
    const CredentialsDirectory env(dir.path());
    try {
      c = parse_config(text, file, with_channels());
    } catch (const ConfigError& e) {
      problems = e.problems();
    }
  }
  if (!fs::exists("/usr/share/referrald")) {
    // Only what the installation brings is missing.
    ASSERT_EQ(problems.size(), 2u);
    EXPECT_EQ(problems[0].key + ": " + problems[0].message,
              "paths.schemas: directory not found: /usr/share/referrald/schemas");
    EXPECT_EQ(problems[1].key + ": " + problems[1].message, "paths.web: directory not found: /usr/share/referrald/web");
    return;
  }
  ASSERT_TRUE(problems.empty());
  ASSERT_EQ(c.http.listen.size(), 1u);
  EXPECT_EQ(c.http.listen[0].to_string(), "127.0.0.1:8080");
  EXPECT_FALSE(c.http.tls_enabled());
  EXPECT_EQ(c.storage.database, fs::path("/var/lib/referrald/referrald.db"));
  ASSERT_NE(c.storage.keys, nullptr);
  EXPECT_EQ(c.rules_file, (source_dir / "config" / "rules.toml").lexically_normal());
  ASSERT_EQ(c.targets.size(), 1u);
  EXPECT_EQ(*c.targets[0].get_string("directory"), "/var/lib/referrald/spool");
}

}  // namespace
}  // namespace referrald

namespace referrald {
namespace {

TEST(ConfigLease, TargetTimeoutMustBeShorterThanTheLease) {
  const std::string text = R"([storage]
database = "var/referrald.db"
[rules]
file = "rules.toml"
[delivery]
lease = "2m"
[[target]]
name = "slow-fax"
type = "spool"
directory = "spool"
timeout = "3m"
)";
  try {
    parse_config(text, "/nonexistent-dir/referrald.toml", with_channels());
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    bool found = false;
    for (const auto& p : e.problems()) {
      if (p.key == "target[0].timeout") {
        found = true;
        EXPECT_EQ(p.to_string(),
                  "/nonexistent-dir/referrald.toml:11: target[0].timeout: must be shorter than delivery.lease (2m), "
                  "got \"3m\"");
      }
    }
    EXPECT_TRUE(found) << e.what();
  }
}

}  // namespace
}  // namespace referrald
