// The escalation ladder: who else is told, and when, about a referral that
// nobody has acknowledged. Pure: the plan is computed once, at intake, and
// stored as rows, so a restart or a configuration reload never moves a step
// that is already planned.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "model/referral.hpp"
#include "routing/business_hours.hpp"

namespace referrald {

struct EscalationStep {
  std::chrono::seconds after{0};    // since receipt (open hours only, if the ladder says so)
  std::vector<std::string> notify;  // target names
};

// One [[escalation]] table.
struct EscalationLadder {
  std::vector<Urgency> urgencies;  // the referrals it covers; empty: every urgency
  bool business_hours = false;     // count only the office's open hours
  std::vector<EscalationStep> steps;
};

// One step planned for one referral.
struct PlannedEscalation {
  int step = 0;  // 1, 2, … in due order across every ladder that covers it
  std::chrono::system_clock::time_point due_at;
  std::chrono::seconds after{0};  // as configured, for the message ("waited 15 minutes")
  std::vector<std::string> notify;
};

// Every step of every ladder covering `urgency`, in due order (ties keep the
// configuration's order). A business-hours step beyond the two-year horizon
// of open_time_after is left out. Throws std::runtime_error for an unknown
// time zone (configuration validation checks it first).
std::vector<PlannedEscalation> plan_escalation(const std::vector<EscalationLadder>& ladders, Urgency urgency,
                                               std::chrono::system_clock::time_point received_at,
                                               const BusinessHours& hours);

// "15 minutes", "2 hours", "1 hour 30 minutes", "3 days": how long a referral
// has waited, for escalation messages.
std::string describe_wait(std::chrono::seconds waited);

}  // namespace referrald
