// referralctl check: a referral file through the daemon's intake pipeline,
// storing nothing.
#include "cli/commands.hpp"

#include <cerrno>
#include <fstream>
#include <ostream>
#include <sstream>
#include <system_error>

#include "cli/common.hpp"
#include "intake/pipeline.hpp"
#include "rules/rules.hpp"
#include "model/reasons_json.hpp"

namespace referrald::cli {

namespace fs = std::filesystem;

// ---- check ----

int check_command(Context& c, const fs::path& file) {
  const Settings& settings = c.settings;
  if (settings.rules_file.empty() || settings.schema_dir.empty()) {
    throw SettingsError("check needs referrald's configuration for the rules and the schema (--config FILE)");
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) throw store::NotFound("cannot read " + file.string() + ": " + std::generic_category().message(errno));
  std::ostringstream body;
  body << in.rdbuf();

  // The daemon's intake pipeline, received now: validate against the schema
  // with today's date, decide, route. Nothing is stored. Without a valid
  // configuration there are rules but no routes or office hours to show.
  IntakePolicy policy;
  policy.rules = settings.configuration ? settings.configuration->rules : load_rules(settings.rules_file);
  if (settings.configuration) {
    policy.routes = settings.configuration->config.routes;
    policy.hours = settings.configuration->config.office.hours;
    policy.attachment_limits = settings.configuration->config.intake.attachments;
  }
  const ReferralValidator validator(settings.schema_dir / "referral.v1.schema.json");
  Submission submission;
  submission.channel = "api";  // a JSON file: what the API takes
  submission.body = body.str();
  submission.received_at = c.now;
  auto result = plan_intake(policy, validator, submission);

  std::vector<FieldError> errors;
  if (auto* malformed = std::get_if<MalformedInput>(&result)) {
    errors.push_back({"", malformed->message});
  } else if (auto* invalid = std::get_if<InvalidReferral>(&result)) {
    errors = invalid->errors;
  }
  if (!errors.empty()) {
    if (c.json) {
      json j{{"valid", false}, {"errors", json::array()}};
      for (const auto& e : errors) j["errors"].push_back({{"path", e.path}, {"message", e.message}});
      print_json(c, j);
    } else {
      c.out << file.string() << ": " << c.style.paint("not a valid referral", Colour::red) << " ("
            << plural(static_cast<std::int64_t>(errors.size()), "problem", "problems") << "; nothing stored)\n";
      Table t({"PATH", "PROBLEM"}, "  ");
      for (const auto& e : errors) t.add({{e.path.empty() ? "(document)" : e.path}, {e.message}});
      t.print(c.out, c.style);
    }
    return exit_invalid;
  }

  const auto& plan = std::get<IntakePlan>(result);
  const auto& referral = plan.referral;
  const auto& eligibility = plan.eligibility;
  std::optional<std::vector<std::string>> targets;
  std::optional<bool> after_hours;
  if (settings.configuration) {
    after_hours = plan.after_hours;
    targets = plan.targets;
  }
  if (c.json) {
    json j{{"valid", true},
           {"decision", std::string(to_string(eligibility.decision))},
           {"reasons", reasons_json<json>(eligibility.reasons)}};
    j["disease"] = optional_text(eligibility.disease);
    j["urgency"] = std::string(to_string(referral.urgency));
    j["targets"] = targets ? json(*targets) : json(nullptr);
    j["after_hours"] = after_hours ? json(*after_hours) : json(nullptr);
    print_json(c, j);
    return exit_ok;
  }
  c.out << file.string() << ": valid referral (nothing stored)\n";
  Table t({"", ""}, "  ");
  t.add({{"decision"}, {std::string(to_string(eligibility.decision)), colour_of(eligibility.decision)}});
  for (std::size_t i = 0; i < eligibility.reasons.size(); ++i) {
    t.add({{i == 0 ? "reasons" : ""}, {eligibility.reasons[i].code + ": " + eligibility.reasons[i].message}});
  }
  t.add({{"disease"}, {eligibility.disease.value_or("- (not in the catalogue)")}});
  t.add({{"urgency"}, {std::string(to_string(referral.urgency))}});
  if (targets) {
    std::string list;
    for (const auto& name : *targets) join_into(list, name);
    t.add({{"would notify"},
           {(list.empty() ? std::string("nobody (no route matches)") : list) +
            " (now: " + (*after_hours ? "after hours" : "business hours") + ")"}});
  }
  print_rows(c, t);
  if (!targets) {
    c.err << "referralctl: note: routes not shown; the configuration does not validate here:\n";
    for (const auto& p : settings.problems) c.err << "  " << p << '\n';
  }
  return exit_ok;
}

}  // namespace referrald::cli
