// The man pages (man/*.scd) against the program: every key the
// configuration loader takes and every referralctl command and option is
// documented, and everything documented exists. The real lists come from
// the code: the loader's key tables (config/config_keys.hpp,
// rules/rules_keys.hpp), the channels' keys (adapters/registry.cpp), and
// the options CLI11 prints for `--help` of the built binaries.
#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "adapters/registry.hpp"
#include "config/config_keys.hpp"
#include "rules/rules_keys.hpp"
#include "support/harness.hpp"

namespace referrald::test {
namespace {

namespace fs = std::filesystem;
using Names = std::set<std::string>;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::string page(const std::string& name) { return read_file(source_dir() / "man" / (name + ".scd")); }

// The lines of one top-level section ("# KEYS") of an scdoc page.
std::vector<std::string> section(const std::string& text, const std::string& title) {
  std::vector<std::string> out;
  bool inside = false;
  for (const auto& line : lines_of(text)) {
    if (line.starts_with("# ")) {
      inside = line == "# " + title;
      continue;
    }
    if (inside) out.push_back(line);
  }
  return out;
}

// Reports what one side has and the other lacks, naming both.
void expect_same(const Names& real, const Names& documented, const std::string& what, const std::string& where) {
  for (const auto& name : real) {
    EXPECT_TRUE(documented.count(name)) << what << " " << name << " exists but " << where << " does not document it";
  }
  for (const auto& name : documented) {
    EXPECT_TRUE(real.count(name)) << where << " documents " << what << " " << name << ", which does not exist";
  }
  EXPECT_FALSE(real.empty()) << "no " << what << " found in the code";
}

// A KEYS section's keys, as "table.key" (and each table's name alone): a
// heading "## [name]" or "## [[name]]" opens a table ("## [[target]] type =
// "smtp"" the keys of that channel: "target.smtp.KEY"), and a line that
// starts with "*key*" documents a key of it ("*when.decision*" under
// [[route]] is route.when.decision).
struct Documented {
  Names keys;
  Names channels;
};
Documented documented_keys(const std::string& text) {
  Documented out;
  const std::regex heading(R"re(^## \[\[?([a-z_]+)\]\]?(?: type = "([a-z-]+)")?$)re");
  const std::regex key(R"(^\*([a-z_][a-z0-9_.]*)\*)");
  std::string prefix;
  for (const auto& line : section(text, "KEYS")) {
    std::smatch m;
    if (std::regex_match(line, m, heading)) {
      out.keys.insert(m[1]);
      prefix = m[1];
      if (m[2].matched) {
        out.channels.insert(m[2]);
        prefix += "." + m[2].str();
      }
    } else if (line.starts_with("## ")) {
      ADD_FAILURE() << "a heading in KEYS that names no table: " << line;
    } else if (std::regex_search(line, m, key)) {
      EXPECT_FALSE(prefix.empty()) << "a key before the first table: " << line;
      out.keys.insert(prefix + "." + m[1].str());
    }
  }
  return out;
}

template <typename Table, std::size_t N>
Names real_keys(const Table (&tables)[N]) {
  Names out;
  for (const auto& table : tables) {
    for (const auto key : table.keys) {
      out.insert(table.name.empty() ? std::string(key) : std::string(table.name) + "." + std::string(key));
    }
  }
  return out;
}

TEST(ManPages, ReferraldTomlDocumentsEveryKeyTheLoaderTakes) {
  Names real = real_keys(config_keys::tables);
  Names channels;
  for (const auto& kind : target_kinds()) {
    channels.insert(std::string(kind.type));
    for (const auto& spec : kind.keys) real.insert("target." + std::string(kind.type) + "." + std::string(spec.name));
  }
  const auto documented = documented_keys(page("referrald.toml.5"));
  expect_same(real, documented.keys, "key", "referrald.toml(5)");
  expect_same(channels, documented.channels, "target type", "referrald.toml(5)");
}

TEST(ManPages, RulesTomlDocumentsEveryKeyTheRulesReaderTakes) {
  const auto documented = documented_keys(page("referrald-rules.toml.5"));
  expect_same(real_keys(rules_keys::tables), documented.keys, "key", "referrald-rules.toml(5)");
  EXPECT_TRUE(documented.channels.empty());
}

// The options ("--name") and subcommands a CLI11 help text lists.
struct Help {
  Names options;
  Names subcommands;
};
Help parse_help(const std::string& text) {
  Help out;
  const std::regex option(R"(^  (?:-[a-zA-Z],)?--([a-z][a-z-]*))");
  const std::regex subcommand(R"(^  ([a-z][a-z-]*)\s)");
  std::string part;
  for (const auto& line : lines_of(text)) {
    if (!line.empty() && line[0] != ' ') part = line;
    std::smatch m;
    if (part == "Options:" && std::regex_search(line, m, option)) out.options.insert("--" + m[1].str());
    if (part == "Subcommands:" && std::regex_search(line, m, subcommand)) out.subcommands.insert(m[1]);
  }
  return out;
}

Help ctl_help(const std::vector<std::string>& command) {
  std::vector<std::string> args = command;
  args.push_back("--help");
  const CtlRun run = ctl(args);
  EXPECT_EQ(run.status, 0) << describe(run);
  return parse_help(run.out);
}

// Every `--option` written in bold in these lines.
Names bold_options(const std::vector<std::string>& lines) {
  Names out;
  const std::regex option(R"(\*(--[a-z][a-z-]*)\*)");
  for (const auto& line : lines) {
    for (auto it = std::sregex_iterator(line.begin(), line.end(), option); it != std::sregex_iterator(); ++it) {
      out.insert((*it)[1]);
    }
  }
  return out;
}

TEST(ManPages, ReferralctlDocumentsEveryCommandAndOption) {
  ASSERT_TRUE(fs::exists(referralctl_binary())) << referralctl_binary();
  const std::string text = page("referralctl.8");

  // The commands: a line of COMMANDS that starts with "*name*" (or "*audit
  // verify*") opens one; its options are the bold --options on that line and
  // in its description, up to the next command.
  std::map<std::string, Names> documented;
  const std::regex command(R"(^\*([a-z][a-z -]*[a-z])\*)");
  std::vector<std::string> block;
  std::string current;
  const auto close = [&] {
    if (!current.empty()) documented[current].merge(bold_options(block));
    block.clear();
  };
  for (const auto& line : section(text, "COMMANDS")) {
    std::smatch m;
    if (std::regex_search(line, m, command)) {
      close();
      current = m[1];
    }
    block.push_back(line);
  }
  close();

  // The real ones: each subcommand, and a subcommand's own subcommands
  // ("audit verify") in place of it. --help and --json every command takes
  // (the page says so once).
  const Help top = ctl_help({});
  std::map<std::string, Names> real;
  std::vector<std::vector<std::string>> pending;
  for (const auto& s : top.subcommands) pending.push_back({s});
  while (!pending.empty()) {
    const auto words = pending.back();
    pending.pop_back();
    const Help help = ctl_help(words);
    if (!help.subcommands.empty()) {
      for (const auto& s : help.subcommands) {
        auto deeper = words;
        deeper.push_back(s);
        pending.push_back(deeper);
      }
      continue;
    }
    std::string name;
    for (const auto& w : words) name += (name.empty() ? "" : " ") + w;
    Names options = help.options;
    options.erase("--help");
    EXPECT_TRUE(options.erase("--json")) << "referralctl " << name << " has no --json, which the page promises";
    real[name] = options;
  }

  Names real_commands, documented_commands;
  for (const auto& [name, options] : real) real_commands.insert(name);
  for (const auto& [name, options] : documented) documented_commands.insert(name);
  expect_same(real_commands, documented_commands, "command", "referralctl(8)");
  for (const auto& [name, options] : real) {
    if (documented.count(name)) {
      expect_same(options.empty() ? Names{"(none)"} : options,
                  documented[name].empty() ? Names{"(none)"} : documented[name], "option of " + name, "referralctl(8)");
    }
  }
  EXPECT_TRUE(text.find("takes *--json*") != std::string::npos);

  // The global options, in OPTIONS.
  expect_same(top.options, bold_options(section(text, "OPTIONS")), "option", "referralctl(8)");
}

// The bash completion offers every command referralctl has (its
// `commands` word list), and no command it does not have.
TEST(ManPages, ReferralctlCompletionOffersEveryCommand) {
  const std::string script = read_file(source_dir() / "cli" / "referralctl.bash-completion");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(script, m, std::regex(R"re(local commands="([^"]*)")re"))) << "no commands list";
  Names offered;
  const std::string words = m[1];
  const std::regex word(R"([a-z-]+)");
  for (auto it = std::sregex_iterator(words.begin(), words.end(), word); it != std::sregex_iterator(); ++it) {
    offered.insert(it->str());
  }
  expect_same(ctl_help({}).subcommands, offered, "command", "cli/referralctl.bash-completion");
}

TEST(ManPages, ReferraldDocumentsEveryOption) {
  TempDir dir;
  const fs::path out = dir / "help";
  ASSERT_EQ(shell("'" + referrald_binary().string() + "' --help > '" + out.string() + "' 2>&1"), 0) << read_file(out);
  expect_same(parse_help(read_file(out)).options, bold_options(section(page("referrald.8"), "OPTIONS")), "option",
              "referrald(8)");
}

}  // namespace
}  // namespace referrald::test
