#include "routing/routing.hpp"

#include <algorithm>

namespace referrald {
namespace {

// An empty condition list places no constraint.
template <class T>
bool allows(const std::vector<T>& accepted, T value) noexcept {
  return accepted.empty() || std::find(accepted.begin(), accepted.end(), value) != accepted.end();
}

}  // namespace

bool route_matches(const Route& route, const RouteInput& input) noexcept {
  return allows(route.decisions, input.decision) && allows(route.urgencies, input.urgency) &&
         (!route.after_hours || *route.after_hours == input.after_hours);
}

std::vector<std::string> route_targets(const std::vector<Route>& routes, const RouteInput& input) {
  std::vector<std::string> targets;
  for (const auto& route : routes) {
    if (!route_matches(route, input)) continue;
    for (const auto& name : route.notify) {
      // A handful of targets at most: a linear search keeps first-seen order cheaply.
      if (std::find(targets.begin(), targets.end(), name) == targets.end()) targets.push_back(name);
    }
  }
  return targets;
}

}  // namespace referrald
