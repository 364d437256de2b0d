// `cmake --install` into a DESTDIR, checked file by file; the installed
// configuration checked and run; an operator's edited configuration kept
// across a reinstall; and the installed unit put through
// `systemd-analyze verify` and `systemd-analyze security`.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "support/harness.hpp"

namespace referrald::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (std::size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

unsigned mode_of(const fs::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

bool referralctl_built() { return fs::exists(binary_dir() / "cli" / "referralctl"); }

// A staging root with the tree `cmake --install --prefix /usr` lays out in it.
class Installed {
 public:
  Installed() { install(); }

  // Runs the install (again); returns its output. Fails the test on a non-zero exit.
  std::string install() {
    const auto log = tmp_ / ("install-" + std::to_string(++runs_) + ".log");
    const std::string command = "DESTDIR='" + root().string() + "' '" + REFERRALD_CMAKE_COMMAND + "' --install '" +
                                binary_dir().string() + "' --prefix /usr > '" + log.string() + "' 2>&1";
    const int status = shell(command);
    const std::string output = read_file(log);
    EXPECT_EQ(status, 0) << command << "\n" << output;
    return output;
  }

  fs::path root() const { return tmp_ / "root"; }
  fs::path operator/(const std::string& relative) const { return root() / relative; }
  const TempDir& scratch() const { return tmp_; }

 private:
  TempDir tmp_;
  int runs_ = 0;
};

// Every regular file under `dir`, relative to it.
std::set<std::string> files_under(const fs::path& dir) {
  std::set<std::string> out;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_directory()) out.insert(fs::relative(entry.path(), dir).string());
  }
  return out;
}

TEST(Install, LaysOutEveryFileWhereTheUnitAndConfigurationExpectIt) {
  Installed tree;
  const fs::path src = source_dir();

  // What is installed, and from where (empty: a build product).
  std::map<std::string, fs::path> expected{
      {"usr/sbin/referrald", {}},
      {"etc/referrald/referrald.toml", src / "config/referrald.production.toml"},
      {"etc/referrald/rules.toml", src / "config/rules.toml"},
      {"usr/lib/systemd/system/referrald.service", src / "systemd/referrald.service"},
      {"usr/lib/sysusers.d/referrald.conf", src / "systemd/referrald.sysusers"},
      {"usr/lib/tmpfiles.d/referrald.conf", src / "systemd/referrald.tmpfiles"},
      {"usr/share/doc/referrald/README.md", src / "README.md"},
      {"usr/share/doc/referrald/referrald.example.toml", src / "config/referrald.example.toml"},
      {"usr/share/doc/referrald/rules.example.toml", src / "config/rules.example.toml"},
      {"usr/share/doc/referrald/encryption.md", src / "docs/encryption.md"},
      {"usr/share/doc/referrald/referralctl.md", src / "docs/referralctl.md"},
      {"usr/share/doc/referrald/packaging.md", src / "docs/packaging.md"},
      // The man pages, as scdoc built them (man/CMakeLists.txt).
      {"usr/share/man/man8/referrald.8", binary_dir() / "man/referrald.8"},
      {"usr/share/man/man8/referralctl.8", binary_dir() / "man/referralctl.8"},
      {"usr/share/man/man5/referrald.toml.5", binary_dir() / "man/referrald.toml.5"},
      {"usr/share/man/man5/referrald-rules.toml.5", binary_dir() / "man/referrald-rules.toml.5"},
  };
  for (const auto& f : files_under(src / "schemas")) {
    if (f.ends_with(".json")) expected["usr/share/referrald/schemas/" + f] = src / "schemas" / f;
  }
  for (const auto& f : files_under(src / "web")) {
    if (f != "README.md") expected["usr/share/referrald/web/" + f] = src / "web" / f;
  }
  if (referralctl_built()) {
    expected["usr/bin/referralctl"] = fs::path{};
    expected["usr/share/bash-completion/completions/referralctl"] = src / "cli/referralctl.bash-completion";
  }

  const auto installed = files_under(tree.root());
  for (const auto& [file, source] : expected) {
    const fs::path at = tree / file;
    if (!fs::is_regular_file(at)) {
      ADD_FAILURE() << file << " was not installed";
      continue;
    }
    if (source.empty()) {
      EXPECT_EQ(mode_of(at), 0755U) << file;
    } else {
      EXPECT_EQ(read_file(at), read_file(source)) << file << " differs from " << source;
      EXPECT_EQ(mode_of(at), 0644U) << file;
    }
  }
  for (const auto& file : installed) {
    EXPECT_TRUE(expected.count(file)) << file << " was installed but is not expected (add it to this test)";
  }
  // Directories the configuration names exist even when empty.
  EXPECT_TRUE(fs::is_directory(tree / "usr/share/referrald/web"));

  // The installed binaries run.
  EXPECT_EQ(shell("'" + (tree / "usr/sbin/referrald").string() + "' --version > /dev/null"), 0);
  if (referralctl_built()) {
    EXPECT_EQ(shell("'" + (tree / "usr/bin/referralctl").string() + "' --version > /dev/null"), 0);
  }

  // The sysusers file makes the user the unit runs as.
  EXPECT_NE(read_file(tree / "usr/lib/sysusers.d/referrald.conf").find("\nu referrald "), std::string::npos);
}

TEST(Install, InstalledConfigurationChecksAndServes) {
  Installed tree;
  // The production configuration names /usr/share/referrald and
  // /var/lib/referrald; point those into the staging root and listen on a
  // free port. Everything else, rules.toml beside it included, is as installed.
  const fs::path config = tree / "etc/referrald/referrald.toml";
  const unsigned short port = free_port();
  std::string text = read_file(config);
  ASSERT_NE(text.find("\nlisten = \"127.0.0.1:8080\"\n"), std::string::npos);
  ASSERT_NE(text.find("\ndatabase = \"/var/lib/referrald/referrald.db\"\n"), std::string::npos);
  text = replace_all(text, "\"/usr/share/referrald/", "\"" + (tree / "usr/share/referrald/").string());
  text = replace_all(text, "\"/var/lib/referrald/", "\"" + (tree / "var/lib/referrald/").string());
  text = replace_all(text, "\"127.0.0.1:8080\"", "\"127.0.0.1:" + std::to_string(port) + "\"");
  write_file(config, text);

  // The encryption keys arrive as the unit's credential: systemd would put
  // /etc/credstore/encryption-keys into $CREDENTIALS_DIRECTORY.
  const fs::path credentials = tree.scratch() / "credentials";
  write_key_file(credentials / "encryption-keys", new_key_line("k1"));
  const std::string env = "CREDENTIALS_DIRECTORY='" + credentials.string() + "' ";

  const fs::path referrald = tree / "usr/sbin/referrald";
  const fs::path out = tree.scratch() / "check.out";
  EXPECT_EQ(shell(env + "'" + referrald.string() + "' --check-config --config '" + config.string() + "' > '" +
                  out.string() + "' 2>&1"),
            0)
      << read_file(out);
  EXPECT_NE(read_file(out).find("configuration OK (1 targets, 1 routes,"), std::string::npos) << read_file(out);

  Process daemon({referrald.string(), "--config", config.string()}, tree.scratch() / "daemon.log",
                 {{"CREDENTIALS_DIRECTORY", credentials.string()}});
  ASSERT_TRUE(wait_for_port(port, 15s)) << daemon.log();
  HttpRequest health;
  health.url = "http://127.0.0.1:" + std::to_string(port) + "/healthz";
  EXPECT_EQ(http(health).status, 200) << daemon.log();
  // The form is served from the installed web directory.
  HttpRequest form;
  form.url = "http://127.0.0.1:" + std::to_string(port) + "/";
  const auto page = http(form);
  EXPECT_EQ(page.status, 200) << page.body << daemon.log();
  EXPECT_EQ(daemon.stop(), 0) << daemon.log();
  EXPECT_NE(daemon.log().find(" encryption_key=k1 "), std::string::npos) << daemon.log();
  EXPECT_EQ(mode_of(tree / "var/lib/referrald/referrald.db"), 0600U);
  EXPECT_TRUE(fs::is_directory(tree / "var/lib/referrald/spool"));
}

TEST(Install, AnEditedConfigurationIsNeverOverwritten) {
  Installed tree;
  const fs::path config = tree / "etc/referrald/referrald.toml";
  const fs::path rules = tree / "etc/referrald/rules.toml";
  const std::string shipped = read_file(source_dir() / "config/referrald.production.toml");
  const std::string edited = shipped + "# the operator's change\n";
  write_file(config, edited);

  const auto output = tree.install();
  EXPECT_EQ(read_file(config), edited);
  ASSERT_TRUE(fs::exists(config.string() + ".dist")) << output;
  EXPECT_EQ(read_file(config.string() + ".dist"), shipped);
  EXPECT_NE(output.find("Keeping: " + config.string() + " (edited); the new default is " + config.string() + ".dist"),
            std::string::npos)
      << output;
  // An unedited file is simply up to date: nothing beside it.
  EXPECT_EQ(read_file(rules), read_file(source_dir() / "config/rules.toml"));
  EXPECT_FALSE(fs::exists(rules.string() + ".dist"));

  // A third install changes nothing the operator wrote either.
  tree.install();
  EXPECT_EQ(read_file(config), edited);

  // A removed file comes back.
  fs::remove(rules);
  tree.install();
  EXPECT_EQ(read_file(rules), read_file(source_dir() / "config/rules.toml"));
}

// ---- the unit, as systemd 252 reads it -----------------------------------------

std::optional<fs::path> systemd_analyze() {
  for (const char* dir : {"/usr/bin", "/bin"}) {
    const fs::path p = fs::path(dir) / "systemd-analyze";
    if (fs::exists(p)) return p;
  }
  return std::nullopt;
}

// The installed unit, with its absolute paths moved into the staging root,
// so that systemd-analyze checks the binary that was installed.
fs::path staged_unit(const Installed& tree) {
  const std::string unit = read_file(tree / "usr/lib/systemd/system/referrald.service");
  const fs::path dir = tree.scratch() / "units";
  const fs::path copy = dir / "referrald.service";
  write_file(copy, replace_all(unit, "/usr/sbin/referrald", (tree / "usr/sbin/referrald").string()));
  return copy;
}

TEST(Unit, SystemdAnalyzeVerifyIsClean) {
  const auto analyze = systemd_analyze();
  ASSERT_TRUE(analyze) << "systemd-analyze not found: scripts/install-deps --test installs it (package systemd)";
  Installed tree;
  const fs::path unit = staged_unit(tree);
  const fs::path out = tree.scratch() / "verify.out";
  const int status = shell("'" + analyze->string() + "' verify '" + unit.string() + "' > '" + out.string() + "' 2>&1");
  EXPECT_EQ(status, 0) << read_file(out);
  // Unknown keys and bad values are only warnings to verify: any output is a finding.
  EXPECT_EQ(read_file(out), "");

  // The check is real: the same unit naming a binary that is not there fails.
  const fs::path broken = tree.scratch() / "broken" / "referrald.service";
  write_file(broken, replace_all(read_file(unit), (tree / "usr/sbin/referrald").string(),
                                 (tree / "usr/sbin/no-such-referrald").string()));
  EXPECT_NE(shell("'" + analyze->string() + "' verify '" + broken.string() + "' > /dev/null 2>&1"), 0);
}

TEST(Unit, SystemdAnalyzeSecurityRatesItAtMost2) {
  const auto analyze = systemd_analyze();
  ASSERT_TRUE(analyze) << "systemd-analyze not found: scripts/install-deps --test installs it (package systemd)";
  Installed tree;
  const fs::path unit = staged_unit(tree);
  const fs::path out = tree.scratch() / "security.out";
  shell("'" + analyze->string() + "' security --offline=true --no-pager '" + unit.string() + "' > '" + out.string() +
        "' 2>&1");
  const std::string report = read_file(out);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(report, m, std::regex(R"(Overall exposure level for referrald\.service: (\d+\.\d+))")))
      << report;
  const double exposure = std::stod(m[1]);
  RecordProperty("exposure", m[1].str());
  EXPECT_LE(exposure, 2.0) << report;
  // And systemd's own threshold agrees (exit status non-zero above it).
  EXPECT_EQ(shell("'" + analyze->string() + "' security --offline=true --threshold=20 --no-pager '" + unit.string() +
                  "' > /dev/null 2>&1"),
            0);
}

TEST(Unit, RunsTheDaemonTheWayItExpects) {
  const std::string unit = read_file(source_dir() / "systemd/referrald.service");
  const auto lines = [&] {
    std::set<std::string> out;
    std::istringstream in(unit);
    for (std::string l; std::getline(in, l);) {
      if (!l.empty() && l[0] != '#') out.insert(l);
    }
    return out;
  }();
  for (const char* line : {
           "Type=notify",
           "NotifyAccess=main",
           "ExecStart=/usr/sbin/referrald --config /etc/referrald/referrald.toml",
           "ExecReload=/usr/sbin/referrald --reload $MAINPID",
           "RuntimeDirectory=referrald",
           "Restart=on-failure",
           "RestartPreventExitStatus=78",
           "User=referrald",
           "StateDirectory=referrald",
           "ConfigurationDirectory=referrald",
           "NoNewPrivileges=yes",
           "ProtectSystem=strict",
           "PrivateTmp=yes",
       }) {
    EXPECT_TRUE(lines.count(line)) << "missing: " << line;
  }
  std::smatch watchdog;
  ASSERT_TRUE(std::regex_search(unit, watchdog, std::regex(R"(\nWatchdogSec=(\d+)s\n)")));
  EXPECT_GE(std::stoi(watchdog[1]), 10);
  // The daemon stops in at most 10 s (requests) + 10 s (sends): systemd must wait longer before SIGKILL.
  std::smatch stop;
  ASSERT_TRUE(std::regex_search(unit, stop, std::regex(R"(\nTimeoutStopSec=(\d+)s\n)")));
  EXPECT_GT(std::stoi(stop[1]), 20);

  // Every secret is a credential, and every credential a configuration names is loaded.
  std::set<std::string> loaded;
  const std::regex load_credential(R"(^LoadCredential(Encrypted)?=([A-Za-z0-9._@-]+)(:.*)?$)");
  for (const auto& line : lines) {
    std::smatch m;
    if (std::regex_match(line, m, load_credential)) loaded.insert(m[2]);
  }
  for (const char* secret : {"smtp-password", "hylafax-password", "snpp-password", "wctp-security-code", "tls-key",
                             "encryption-keys", "pg-password"}) {
    EXPECT_TRUE(loaded.count(secret)) << "no LoadCredential=" << secret;
  }
  for (const char* file : {"config/referrald.production.toml", "config/referrald.example.toml"}) {
    const std::string text = read_file(source_dir() / file);
    // Lower case: the comments' placeholder "credential:NAME" is not a use.
    const std::regex used(R"("credential:([a-z0-9._@-]+)\")");
    int uses = 0;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), used); it != std::sregex_iterator(); ++it) {
      ++uses;
      EXPECT_TRUE(loaded.count((*it)[1])) << file << " names credential " << (*it)[1] << " that the unit does not load";
    }
    EXPECT_GT(uses, 0) << file;
  }
}

}  // namespace
}  // namespace referrald::test
