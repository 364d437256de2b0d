// What the JSON and form targets share: the validator and the intake policy,
// loaded once from the tree, and a fixed time, so that an input decides the
// same way on every run. The example rules, not the shipped ones: their
// catalogue has diseases with open trials and their own age limits, so every
// branch of the decision is reachable. One route, which every referral
// matches, so that the routing step runs too.
#pragma once

#include <chrono>

#include "check.hpp"
#include "intake/pipeline.hpp"
#include "rules/rules.hpp"

namespace referrald::fuzz {

inline constexpr Date fuzz_today{std::chrono::year{2026}, std::chrono::November, std::chrono::day{28}};

struct Intake {
  ReferralValidator validator{source_path("schemas/referral.v1.schema.json")};
  IntakePolicy policy = [] {
    IntakePolicy p;
    p.rules = load_rules(source_path("config/rules.example.toml"));
    p.routes = {Route{{}, {}, {}, {"office"}}};
    return p;
  }();
};

// A submission of `body` received at noon (UTC) on fuzz_today.
inline Submission submission_of(std::string body) {
  Submission s;
  s.channel = "api";
  s.body = std::move(body);
  s.received_at = std::chrono::sys_days{fuzz_today} + std::chrono::hours{12};
  return s;
}

inline const Intake& intake() {
  static const Intake instance;
  return instance;
}

}  // namespace referrald::fuzz
