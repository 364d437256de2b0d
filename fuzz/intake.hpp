// What the JSON and form targets share: the validator and the rules, loaded
// once from the tree, and a fixed day, so that an input decides the same way
// on every run. The example rules, not the shipped ones: their catalogue has
// diseases with open trials and their own age limits, so every branch of the
// decision is reachable.
#pragma once

#include <chrono>

#include "check.hpp"
#include "intake/submission.hpp"
#include "rules/rules.hpp"

namespace referrald::fuzz {

inline constexpr Date kToday{std::chrono::year{2026}, std::chrono::November, std::chrono::day{28}};

struct Intake {
  ReferralValidator validator{source_path("schemas/referral.v1.schema.json")};
  RuleSet rules = load_rules(source_path("config/rules.example.toml"));
};

inline const Intake& intake() {
  static const Intake instance;
  return instance;
}

}  // namespace referrald::fuzz
