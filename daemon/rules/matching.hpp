// Diagnosis matching: case, hyphens and punctuation are ignored; an alias
// matches only as whole words; a code matches exactly (after normalising case
// and spaces). "alveolar rhabdomyosarcoma" is not ASPS.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rules/rules.hpp"

namespace referrald {

// Lower-cased words of text, split on anything that is not a letter or digit
// (Unicode letters kept as they are, ASCII folded to lower case).
std::vector<std::string> normalized_words(std::string_view text);

// The catalogue entry the diagnosis names, or nullptr.
const Disease* match_disease(const RuleSet& rules, const Diagnosis& diagnosis);

}  // namespace referrald
