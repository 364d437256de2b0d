// libFuzzer target: the TOML configuration loaders, parse_config (the
// daemon's referrald.toml, with the channels' keys and checks) and parse_rules (the disease catalogue,
// rules.toml), on the same text. The contract is the operator's: whatever the
// file holds, --check-config reports problems (ConfigError) and never
// crashes, hangs or throws anything else; each problem names the file given
// and a line that exists. Paths resolve against the tree's config/ folder,
// as for the checked-in files the corpus starts from.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "adapters/registry.hpp"
#include "check.hpp"
#include "config/config.hpp"
#include "rules/rules.hpp"

namespace referrald::fuzz {
namespace {

void check_problems(const ConfigError& e, const std::string& file, std::string_view text) {
  require(!e.problems().empty(), "ConfigError without a problem");
  // The last line may be unterminated, and toml++ may point one past it.
  const auto lines = static_cast<int>(std::count(text.begin(), text.end(), '\n')) + 2;
  for (const auto& p : e.problems()) {
    require(p.file == file, "a problem names another file");
    require(p.line >= 0 && p.line <= lines, "a problem names a line the file does not have");
    require(!p.message.empty(), "a problem without a message");
    require(p.to_string().starts_with(file + ":"), "a problem that does not start FILE:");
  }
}

void check_config(const Config& config) {
  std::set<std::string> names;
  for (const auto& t : config.targets) {
    require(!t.name.empty() && names.insert(t.name).second, "a target without a name, or two of one name");
  }
  for (const auto& route : config.routes) {
    for (const auto& n : route.notify) require(names.count(n) != 0, "a route notifies a target that is not there");
  }
  require(!config.http.listen.empty(), "a configuration that listens nowhere");
}

void check_rules(const RuleSet& rules) {
  std::set<std::string> ids;
  for (const auto& d : rules.diseases) {
    require(!d.id.empty() && ids.insert(d.id).second, "a disease without an id, or two of one id");
  }
}

}  // namespace
}  // namespace referrald::fuzz

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  spdlog::set_level(spdlog::level::off);  // the loaders' warnings would drown libFuzzer's output
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace referrald;
  using namespace referrald::fuzz;
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  const std::string config_file = source_path("config/referrald.toml").string();
  try {
    // As the daemon reads it: with the channels' keys and checks.
    LoadOptions options;
    options.target_kinds = target_kinds();
    check_config(parse_config(text, config_file, options));
  } catch (const ConfigError& e) {
    check_problems(e, config_file, text);
  }

  const std::string rules_file = source_path("config/rules.toml").string();
  try {
    check_rules(parse_rules(text, rules_file));
  } catch (const ConfigError& e) {
    check_problems(e, rules_file, text);
  }
  return 0;
}
