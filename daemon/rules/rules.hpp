// The disease catalogue and general eligibility rules (config/rules.toml).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "model/referral.hpp"

namespace referrald {

struct DiseaseCode {
  std::string system;  // icd-10-cm | icd-o-3 | snomed-ct
  std::string value;
};

struct Disease {
  std::string id;    // stable key, e.g. "asps"
  std::string name;  // display name
  std::vector<std::string> aliases;
  std::vector<DiseaseCode> codes;
  std::optional<int> max_age;  // inclusive, in completed years; else the general limit
  int open_trials = 0;
};

struct RuleSet {
  std::vector<Disease> diseases;
  std::vector<std::string> qualified_credentials{"MD", "DO", "NP", "PA"};
  int default_max_age = 21;
  std::vector<std::string> service_area_postal_prefixes;
};

// Loads and strictly validates a rules file. Throws ConfigError listing every
// problem as FILE:LINE: key: message.
RuleSet load_rules(const std::filesystem::path& file);
RuleSet parse_rules(std::string_view toml_text, const std::string& file_name);

}  // namespace referrald
