#include "office/closed_loop.hpp"

#include <algorithm>

namespace referrald {

std::vector<std::string> notice_targets(const ClosedLoopConfig& loop, OfficeStatus to) {
  if (std::find(loop.on.begin(), loop.on.end(), to) == loop.on.end()) return {};
  return loop.notify;
}

}  // namespace referrald
