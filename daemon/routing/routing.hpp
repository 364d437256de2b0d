// [[route]] tables: every matching route adds its targets, deduplicated, in
// the order they first appear.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "model/referral.hpp"

namespace referrald {

struct Route {
  std::vector<Decision> decisions;  // empty: any decision
  std::vector<Urgency> urgencies;   // empty: any urgency
  std::optional<bool> after_hours;  // unset: any time
  std::vector<std::string> notify;  // target names
};

struct RouteInput {
  Decision decision;
  Urgency urgency;
  bool after_hours;
};

bool route_matches(const Route& route, const RouteInput& input) noexcept;
std::vector<std::string> route_targets(const std::vector<Route>& routes, const RouteInput& input);

}  // namespace referrald
