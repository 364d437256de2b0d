#include "rules/rules.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "rules/matching.hpp"
#include "util/config_error.hpp"
#include "util/strings.hpp"

namespace referrald {
namespace {

constexpr std::string_view code_systems[] = {"icd-10-cm", "icd-o-3", "snomed-ct"};
constexpr std::string_view credentials[] = {"MD", "DO", "NP", "PA", "RN", "other"};
constexpr std::int64_t oldest_age_limit = 120;  // the intake refuses birth dates older than this

int line_of(const toml::source_region& where) { return static_cast<int>(where.begin.line); }

std::string quote_value(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += '?';
    } else {
      out += c;
    }
  }
  return out + '"';
}

// What an operator wrote, for "expected X, got Y".
std::string describe(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string: return quote_value(node.as_string()->get());
    case toml::node_type::integer: return std::to_string(node.as_integer()->get());
    case toml::node_type::floating_point: {
      std::ostringstream out;
      out << node.as_floating_point()->get();
      return out.str();
    }
    case toml::node_type::boolean: return node.as_boolean()->get() ? "true" : "false";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    case toml::node_type::none: break;
  }
  return "nothing";
}

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Reads one rules document, collecting every problem instead of stopping at
// the first, so that --check-config shows them all.
class RulesReader {
 public:
  explicit RulesReader(std::string file) : file_(std::move(file)) {}

  RuleSet read(const toml::table& root) {
    RuleSet rules;
    check_keys(root, "", {"general", "disease"});

    if (const toml::node* general = root.get("general")) {
      if (const toml::table* t = expect_table(*general, "general")) read_general(*t, rules);
    } else {
      problem(0, "general", "is required");
    }

    if (const toml::node* diseases = root.get("disease")) {
      const toml::array* list = diseases->as_array();
      if (list == nullptr || (!list->empty() && !list->is_array_of_tables())) {
        problem(line_of(diseases->source()), "disease",
                "expected an array of tables ([[disease]]), got " + describe(*diseases));
      } else {
        for (std::size_t i = 0; i < list->size(); ++i) {
          read_disease(*list->get(i)->as_table(), "disease[" + std::to_string(i) + "]", rules);
        }
        check_unique(rules);
      }
    }
    return rules;
  }

  std::vector<ConfigProblem> problems;

 private:
  void problem(int line, std::string key, std::string message) {
    problems.push_back(ConfigProblem{file_, line, std::move(key), std::move(message)});
  }

  void problem(const toml::node& at, std::string key, std::string message) {
    problem(line_of(at.source()), std::move(key), std::move(message));
  }

  static std::string dotted(const std::string& prefix, std::string_view key) {
    return prefix.empty() ? std::string(key) : prefix + "." + std::string(key);
  }

  void check_keys(const toml::table& table, const std::string& prefix,
                  std::initializer_list<std::string_view> known) {
    for (auto&& [key, value] : table) {
      if (std::find(known.begin(), known.end(), key.str()) == known.end()) {
        problem(line_of(key.source()), dotted(prefix, key.str()), "unknown key (known: " + join(known) + ")");
      }
    }
  }

  const toml::table* expect_table(const toml::node& node, const std::string& key) {
    if (const toml::table* t = node.as_table()) return t;
    problem(node, key, "expected a table, got " + describe(node));
    return nullptr;
  }

  // The node at table[key], or nullptr (reporting it when required).
  const toml::node* member(const toml::table& table, std::string_view key, const std::string& dotted_key,
                           bool required) {
    const toml::node* node = table.get(key);
    if (node == nullptr && required) problem(line_of(table.source()), dotted_key, "is required");
    return node;
  }

  std::optional<std::string> string_value(const toml::node& node, const std::string& key) {
    const auto* s = node.as_string();
    if (s == nullptr) {
      problem(node, key, "expected a string, got " + describe(node));
      return std::nullopt;
    }
    if (s->get().empty()) {
      problem(node, key, "must not be empty");
      return std::nullopt;
    }
    return s->get();
  }

  std::optional<std::string> string_member(const toml::table& table, std::string_view name,
                                           const std::string& prefix, bool required) {
    const std::string key = dotted(prefix, name);
    const toml::node* node = member(table, name, key, required);
    return node != nullptr ? string_value(*node, key) : std::nullopt;
  }

  std::optional<int> int_member(const toml::table& table, std::string_view name, const std::string& prefix,
                                bool required, std::int64_t min, std::int64_t max) {
    const std::string key = dotted(prefix, name);
    const toml::node* node = member(table, name, key, required);
    if (node == nullptr) return std::nullopt;
    const auto* i = node->as_integer();
    if (i == nullptr) {
      problem(*node, key, "expected an integer, got " + describe(*node));
      return std::nullopt;
    }
    if (i->get() < min || i->get() > max) {
      problem(*node, key,
              "expected " + std::to_string(min) + ".." + std::to_string(max) + ", got " + describe(*node));
      return std::nullopt;
    }
    return static_cast<int>(i->get());
  }

  // The array at table[name], or nullptr (reporting it when it is missing but
  // required, or is not an array).
  const toml::array* array_member(const toml::table& table, std::string_view name, const std::string& key,
                                  bool required) {
    const toml::node* node = member(table, name, key, required);
    if (node == nullptr) return nullptr;
    const toml::array* a = node->as_array();
    if (a == nullptr) problem(*node, key, "expected an array, got " + describe(*node));
    return a;
  }

  std::vector<std::string> string_array(const toml::table& table, std::string_view name,
                                        const std::string& prefix, bool required) {
    std::vector<std::string> out;
    const std::string key = dotted(prefix, name);
    const toml::array* a = array_member(table, name, key, required);
    if (a == nullptr) return out;
    for (std::size_t i = 0; i < a->size(); ++i) {
      if (auto s = string_value(*a->get(i), key + "[" + std::to_string(i) + "]")) out.push_back(*s);
    }
    return out;
  }

  void read_general(const toml::table& t, RuleSet& rules) {
    const std::string prefix = "general";
    check_keys(t, prefix, {"qualified_credentials", "default_max_age", "service_area_postal_prefixes"});

    const std::string credentials_key = prefix + ".qualified_credentials";
    if (const toml::array* a = array_member(t, "qualified_credentials", credentials_key, true)) {
      rules.qualified_credentials.clear();
      for (std::size_t i = 0; i < a->size(); ++i) {
        const std::string key = credentials_key + "[" + std::to_string(i) + "]";
        const auto value = string_value(*a->get(i), key);
        if (!value) continue;
        // A credential the intake never accepts could never match: a typo.
        const bool known =
            std::any_of(std::begin(credentials), std::end(credentials),
                        [&](std::string_view c) { return lower_ascii(c) == lower_ascii(*value); });
        if (!known) {
          problem(*a->get(i), key, "expected one of " + join(credentials) + ", got " + quote_value(*value));
          continue;
        }
        rules.qualified_credentials.push_back(*value);
      }
    }

    if (auto age = int_member(t, "default_max_age", prefix, true, 0, oldest_age_limit)) {
      rules.default_max_age = *age;
    }

    const std::string prefixes_key = prefix + ".service_area_postal_prefixes";
    if (const toml::array* a = array_member(t, "service_area_postal_prefixes", prefixes_key, true)) {
      for (std::size_t i = 0; i < a->size(); ++i) {
        const std::string key = prefixes_key + "[" + std::to_string(i) + "]";
        const auto value = string_value(*a->get(i), key);
        if (!value) continue;
        const bool digits = value->size() <= 5 && std::all_of(value->begin(), value->end(),
                                                              [](char c) { return c >= '0' && c <= '9'; });
        if (!digits) {
          problem(*a->get(i), key, "expected 1 to 5 digits, got " + quote_value(*value));
          continue;
        }
        rules.service_area_postal_prefixes.push_back(*value);
      }
    }
  }

  void read_disease(const toml::table& t, const std::string& prefix, RuleSet& rules) {
    check_keys(t, prefix, {"id", "name", "aliases", "codes", "max_age", "open_trials"});
    Disease d;
    bool complete = true;

    if (auto id = string_member(t, "id", prefix, true)) {
      const bool well_formed = std::all_of(id->begin(), id->end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
      });
      if (well_formed) {
        d.id = *id;
      } else {
        problem(*t.get("id"), dotted(prefix, "id"),
                "expected lower-case letters, digits, '-' or '_', got " + quote_value(*id));
        complete = false;
      }
    } else {
      complete = false;
    }

    if (auto name = string_member(t, "name", prefix, true)) {
      d.name = *name;
    } else {
      complete = false;
    }

    d.aliases = string_array(t, "aliases", prefix, false);
    if (const toml::array* a = t.get_as<toml::array>("aliases")) {
      for (std::size_t i = 0; i < a->size() && i < d.aliases.size(); ++i) {
        if (normalized_words(d.aliases[i]).empty()) {
          problem(*a->get(i), dotted(prefix, "aliases") + "[" + std::to_string(i) + "]",
                  "has no letters or digits, so it can never match");
        }
      }
    }

    const std::string codes_key = dotted(prefix, "codes");
    if (const toml::array* codes = array_member(t, "codes", codes_key, false)) {
      for (std::size_t i = 0; i < codes->size(); ++i) {
        const std::string key = codes_key + "[" + std::to_string(i) + "]";
        const toml::table* code = expect_table(*codes->get(i), key);
        if (code == nullptr) continue;
        check_keys(*code, key, {"system", "value"});
        auto system = string_member(*code, "system", key, true);
        auto value = string_member(*code, "value", key, true);
        if (system &&
            std::find(std::begin(code_systems), std::end(code_systems), *system) == std::end(code_systems)) {
          problem(*code->get("system"), key + ".system",
                  "expected one of " + join(code_systems) + ", got " + quote_value(*system));
          system.reset();
        }
        if (system && value) d.codes.push_back(DiseaseCode{*system, *value});
      }
    }

    d.max_age = int_member(t, "max_age", prefix, false, 0, oldest_age_limit);
    if (auto trials = int_member(t, "open_trials", prefix, true, 0, 10000)) {
      d.open_trials = *trials;
    } else {
      complete = false;
    }

    if (complete) {
      lines_.push_back(line_of(t.source()));
      keys_.push_back(prefix);
      rules.diseases.push_back(std::move(d));
    }
  }

  // Two entries claiming the same id, alias or code would make the match
  // depend on file order; refuse that rather than guess.
  void check_unique(const RuleSet& rules) {
    std::map<std::string, std::size_t> ids;
    std::map<std::string, std::size_t> aliases;
    std::map<std::string, std::size_t> codes;
    for (std::size_t i = 0; i < rules.diseases.size(); ++i) {
      const Disease& d = rules.diseases[i];
      if (auto [it, fresh] = ids.try_emplace(d.id, i); !fresh) {
        problem(lines_[i], keys_[i] + ".id",
                "duplicate id " + quote_value(d.id) + " (also " + keys_[it->second] + ")");
      }
      std::vector<std::string> names{d.name};
      names.insert(names.end(), d.aliases.begin(), d.aliases.end());
      for (const auto& name : names) {
        std::string words;
        for (const auto& w : normalized_words(name)) words += (words.empty() ? "" : " ") + w;
        if (words.empty()) continue;
        if (auto [it, fresh] = aliases.try_emplace(words, i); !fresh && it->second != i) {
          problem(lines_[i], keys_[i] + ".aliases",
                  "alias " + quote_value(name) + " also names " + keys_[it->second] + " (" +
                      rules.diseases[it->second].id + ")");
        }
      }
      for (const auto& code : d.codes) {
        const std::string k = lower_ascii(code.system) + " " + lower_ascii(code.value);
        if (auto [it, fresh] = codes.try_emplace(k, i); !fresh && it->second != i) {
          problem(lines_[i], keys_[i] + ".codes",
                  "code " + code.system + " " + code.value + " also belongs to " + keys_[it->second] + " (" +
                      rules.diseases[it->second].id + ")");
        }
      }
    }
  }

  std::string file_;
  std::vector<int> lines_;         // per accepted disease: its [[disease]] line
  std::vector<std::string> keys_;  // per accepted disease: "disease[N]"
};

}  // namespace

RuleSet parse_rules(std::string_view toml_text, const std::string& file_name) {
  toml::table root;
  try {
    root = toml::parse(toml_text, file_name);
  } catch (const toml::parse_error& e) {
    throw ConfigError({ConfigProblem{file_name, line_of(e.source()), "", std::string(e.description())}});
  }
  RulesReader reader(file_name);
  RuleSet rules = reader.read(root);
  if (!reader.problems.empty()) {
    // In file order, as an operator reads the file.
    std::stable_sort(reader.problems.begin(), reader.problems.end(),
                     [](const ConfigProblem& a, const ConfigProblem& b) { return a.line < b.line; });
    throw ConfigError(std::move(reader.problems));
  }
  return rules;
}

RuleSet load_rules(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    throw ConfigError(
        {ConfigProblem{file.string(), 0, "", std::string("cannot read: ") + std::strerror(errno)}});
  }
  std::ostringstream text;
  text << in.rdbuf();
  return parse_rules(text.str(), file.string());
}

}  // namespace referrald
