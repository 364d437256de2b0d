#include "rules/rules.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cstdint>
#include <map>

#include "config/toml_reader.hpp"
#include "rules/matching.hpp"
#include "rules/rules_keys.hpp"
#include "util/config_error.hpp"
#include "util/strings.hpp"

namespace referrald {
namespace {

using namespace config;

constexpr std::string_view code_systems[] = {"icd-10-cm", "icd-o-3", "snomed-ct"};
constexpr std::string_view credentials[] = {"MD", "DO", "NP", "PA", "RN", "other"};
constexpr std::int64_t oldest_age_limit = 120;  // the intake refuses birth dates older than this

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Reads one rules document, collecting every problem instead of stopping at
// the first, so that --check-config shows them all.
class RulesReader : public TomlReader {
 public:
  using TomlReader::TomlReader;

  RuleSet read(const toml::table& root) {
    RuleSet rules;
    const Scope top = top_scope(root);
    check_keys(top, rules_keys::top);

    if (required(top, "general")) {
      const Scope general = section(root, "general");
      if (general.table) read_general(general, rules);
    }
    if (const toml::array* list = array_of_tables(top, "disease")) {
      for (std::size_t i = 0; i < list->size(); ++i) {
        const toml::node& table = *list->get(i);
        read_disease(Scope{table.as_table(), indexed("disease", i), Where(table).line, false}, rules);
      }
      check_unique(rules);
    }
    return rules;
  }

 private:
  // The array at scope[name], or nullptr (reporting it when it is missing but
  // required, or is not an array).
  const toml::array* array_member(const Scope& scope, std::string_view name, bool is_required) {
    const toml::node* node = member(scope, name, is_required);
    return node != nullptr ? array_value(*node, scope.key(name)) : nullptr;
  }

  // Each string of the array; an element that is not one is reported and left out.
  std::vector<std::string> string_array(const Scope& scope, std::string_view name) {
    std::vector<std::string> out;
    const toml::array* a = array_member(scope, name, false);
    if (a == nullptr) return out;
    for (std::size_t i = 0; i < a->size(); ++i) {
      if (auto s = string_value(*a->get(i), indexed(scope.key(name), i))) out.push_back(*s);
    }
    return out;
  }

  void read_general(const Scope& general, RuleSet& rules) {
    check_keys(general, rules_keys::general);

    const std::string credentials_key = general.key("qualified_credentials");
    if (const toml::array* a = array_member(general, "qualified_credentials", true)) {
      rules.qualified_credentials.clear();
      for (std::size_t i = 0; i < a->size(); ++i) {
        const std::string key = indexed(credentials_key, i);
        const auto value = string_value(*a->get(i), key);
        if (!value) continue;
        // A credential the intake never accepts could never match: a typo.
        const bool known = std::any_of(std::begin(credentials), std::end(credentials),
                                       [&](std::string_view c) { return lower_ascii(c) == lower_ascii(*value); });
        if (!known) {
          add(*a->get(i), key, "expected one of " + join(credentials) + ", got " + quote(*value));
          continue;
        }
        rules.qualified_credentials.push_back(*value);
      }
    }

    if (auto age = get_integer(general, "default_max_age", 0, oldest_age_limit, true)) {
      rules.default_max_age = static_cast<int>(*age);
    }

    const std::string prefixes_key = general.key("service_area_postal_prefixes");
    if (const toml::array* a = array_member(general, "service_area_postal_prefixes", true)) {
      for (std::size_t i = 0; i < a->size(); ++i) {
        const std::string key = indexed(prefixes_key, i);
        const auto value = string_value(*a->get(i), key);
        if (!value) continue;
        const bool digits = value->size() <= 5 &&
                            std::all_of(value->begin(), value->end(), [](char c) { return c >= '0' && c <= '9'; });
        if (!digits) {
          add(*a->get(i), key, "expected 1 to 5 digits, got " + quote(*value));
          continue;
        }
        rules.service_area_postal_prefixes.push_back(*value);
      }
    }
  }

  void read_disease(const Scope& disease, RuleSet& rules) {
    check_keys(disease, rules_keys::disease);
    Disease d;
    bool complete = true;

    if (auto id = get_string(disease, "id", true)) {
      const bool well_formed = std::all_of(id->begin(), id->end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
      });
      if (well_formed) {
        d.id = *id;
      } else {
        add(*disease.get("id"), disease.key("id"),
            "expected lower-case letters, digits, '-' or '_', got " + quote(*id));
        complete = false;
      }
    } else {
      complete = false;
    }

    if (auto name = get_string(disease, "name", true)) {
      d.name = *name;
    } else {
      complete = false;
    }

    d.aliases = string_array(disease, "aliases");
    if (const toml::array* a = disease.table->get_as<toml::array>("aliases")) {
      for (std::size_t i = 0; i < a->size() && i < d.aliases.size(); ++i) {
        if (normalized_words(d.aliases[i]).empty()) {
          add(*a->get(i), indexed(disease.key("aliases"), i), "has no letters or digits, so it can never match");
        }
      }
    }

    if (const toml::array* codes = array_member(disease, "codes", false)) {
      for (std::size_t i = 0; i < codes->size(); ++i) {
        const auto code = table_scope(*codes->get(i), indexed(disease.key("codes"), i));
        if (!code) continue;
        check_keys(*code, rules_keys::disease_code);
        auto system = get_string(*code, "system", true);
        auto value = get_string(*code, "value", true);
        if (system && std::find(std::begin(code_systems), std::end(code_systems), *system) == std::end(code_systems)) {
          add(*code->get("system"), code->key("system"),
              "expected one of " + join(code_systems) + ", got " + quote(*system));
          system.reset();
        }
        if (system && value) d.codes.push_back(DiseaseCode{*system, *value});
      }
    }

    if (const auto age = get_integer(disease, "max_age", 0, oldest_age_limit)) d.max_age = static_cast<int>(*age);
    if (auto trials = get_integer(disease, "open_trials", 0, 10000, true)) {
      d.open_trials = static_cast<int>(*trials);
    } else {
      complete = false;
    }

    if (complete) {
      lines_.push_back(disease.line);
      keys_.push_back(disease.prefix);
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
        add(lines_[i], keys_[i] + ".id", "duplicate id " + quote(d.id) + " (also " + keys_[it->second] + ")");
      }
      std::vector<std::string> names{d.name};
      names.insert(names.end(), d.aliases.begin(), d.aliases.end());
      for (const auto& name : names) {
        std::string words;
        for (const auto& w : normalized_words(name)) words += (words.empty() ? "" : " ") + w;
        if (words.empty()) continue;
        if (auto [it, fresh] = aliases.try_emplace(words, i); !fresh && it->second != i) {
          add(lines_[i], keys_[i] + ".aliases",
              "alias " + quote(name) + " also names " + keys_[it->second] + " (" + rules.diseases[it->second].id + ")");
        }
      }
      for (const auto& code : d.codes) {
        const std::string k = lower_ascii(code.system) + " " + lower_ascii(code.value);
        if (auto [it, fresh] = codes.try_emplace(k, i); !fresh && it->second != i) {
          add(lines_[i], keys_[i] + ".codes",
              "code " + code.system + " " + code.value + " also belongs to " + keys_[it->second] + " (" +
                  rules.diseases[it->second].id + ")");
        }
      }
    }
  }

  std::vector<int> lines_;         // per accepted disease: its [[disease]] line
  std::vector<std::string> keys_;  // per accepted disease: "disease[N]"
};

}  // namespace

RuleSet parse_rules(std::string_view toml_text, const std::string& file_name) {
  RulesReader reader(file_name);
  RuleSet rules;
  if (const auto root = reader.parse(toml_text)) rules = reader.read(*root);
  reader.throw_if_problems();
  return rules;
}

RuleSet load_rules(const std::filesystem::path& file) { return parse_rules(read_file_text(file), file.string()); }

}  // namespace referrald
