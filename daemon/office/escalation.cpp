#include "office/escalation.hpp"

#include <algorithm>

namespace referrald {

std::vector<PlannedEscalation> plan_escalation(const std::vector<EscalationLadder>& ladders, Urgency urgency,
                                               std::chrono::system_clock::time_point received_at,
                                               const BusinessHours& hours) {
  std::vector<PlannedEscalation> plan;
  for (const EscalationLadder& ladder : ladders) {
    const bool covers = ladder.urgencies.empty() ||
                        std::find(ladder.urgencies.begin(), ladder.urgencies.end(), urgency) != ladder.urgencies.end();
    if (!covers) continue;
    for (const EscalationStep& step : ladder.steps) {
      const auto due = ladder.business_hours ? open_time_after(hours, received_at, step.after)
                                             : std::optional{received_at + step.after};
      if (!due) continue;
      plan.push_back(PlannedEscalation{0, *due, step.after, step.notify});
    }
  }
  std::stable_sort(plan.begin(), plan.end(),
                   [](const PlannedEscalation& a, const PlannedEscalation& b) { return a.due_at < b.due_at; });
  for (std::size_t i = 0; i < plan.size(); ++i) plan[i].step = static_cast<int>(i + 1);
  return plan;
}

std::string describe_wait(std::chrono::seconds waited) {
  using namespace std::chrono;
  const auto unit = [](std::int64_t n, const char* name) {
    return std::to_string(n) + " " + name + (n == 1 ? "" : "s");
  };
  if (waited < minutes{1}) return unit(std::max<std::int64_t>(waited.count(), 0), "second");
  const auto d = duration_cast<days>(waited);
  const auto h = duration_cast<hours>(waited - d);
  const auto m = duration_cast<minutes>(waited - d - h);
  if (d.count() > 0)
    return h.count() > 0 ? unit(d.count(), "day") + " " + unit(h.count(), "hour") : unit(d.count(), "day");
  if (h.count() > 0)
    return m.count() > 0 ? unit(h.count(), "hour") + " " + unit(m.count(), "minute") : unit(h.count(), "hour");
  return unit(m.count(), "minute");
}

}  // namespace referrald
