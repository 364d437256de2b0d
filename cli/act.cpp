// referralctl's actions on deliveries: retry, cancel, hold, release. One
// short write transaction, recorded in the audit trail.
#include "cli/commands.hpp"

#include <map>
#include <ostream>
#include <set>

#include "cli/common.hpp"

namespace referrald::cli {

using store::WriteTransaction;

// ---- actions ----

int action_command(Context& c, store::Action action, const std::vector<std::string>& names,
                   const std::optional<std::string>& target) {
  const std::string verb(store::to_string(action));
  bool all = false;
  for (const auto& n : names) {
    if (n == "ALL") {
      if (action != store::Action::retry) {
        throw UsageError(verb + " takes delivery numbers or referral ids; only retry takes ALL");
      }
      all = true;
    } else if (n == "all" || n == "All") {
      throw UsageError("\"" + n + "\" is not an id; to " + verb +
                       " every dead and waiting delivery, write ALL in capitals");
    }
  }
  if (all && names.size() > 1) throw UsageError("ALL stands alone: retry ALL [--target NAME]");

  auto db = open_store(c, true);
  const std::string actor = operator_name();
  std::vector<store::ActionChange> changes;
  {
    WriteTransaction write(*db);
    std::vector<store::DeliveryRow> selected;
    if (all) {
      selected = store::deliveries_for_all(*db, action, target);
    } else {
      std::set<std::int64_t> seen;
      for (const auto& n : names) {
        for (auto& d : store::resolve_deliveries(*db, n)) {
          if (target && d.target != *target) continue;
          if (seen.insert(d.id).second) selected.push_back(std::move(d));
        }
      }
    }
    changes = store::apply_action(*db, action, selected, actor, c.now);
    write.commit();
  }

  std::int64_t applied = 0;
  for (const auto& ch : changes) applied += ch.applied ? 1 : 0;
  if (c.json) {
    json j;
    j["action"] = verb;
    j["actor"] = actor;
    j["changed"] = json::array();
    j["skipped"] = json::array();
    for (const auto& ch : changes) {
      json row{{"id", ch.delivery.id},
               {"referral_id", ch.delivery.referral_id},
               {"target", ch.delivery.target},
               {"from", str(ch.delivery.state)}};
      if (ch.applied) {
        row["to"] = str(ch.to);
        j["changed"].push_back(std::move(row));
      } else {
        row["reason"] = ch.refusal;
        j["skipped"].push_back(std::move(row));
      }
    }
    print_json(c, j);
    return exit_ok;
  }
  if (!changes.empty()) {
    Table t({"ID", "REFERRAL", "TARGET", "CHANGE"});
    for (const auto& ch : changes) {
      const std::string change = ch.applied
                                     ? str(ch.delivery.state) + " -> " + c.style.paint(str(ch.to), colour_of(ch.to))
                                     : str(ch.delivery.state) + ", skipped: " + ch.refusal;
      t.add({{std::to_string(ch.delivery.id)},
             {ch.delivery.referral_id},
             {ch.delivery.target},
             {change, Colour::none, true}});
    }
    t.print(c.out, c.style);
  }
  static const std::map<store::Action, std::pair<const char*, const char*>> done{
      {store::Action::retry, {"retried", " (the daemon sends within seconds)"}},
      {store::Action::cancel, {"cancelled", ""}},
      {store::Action::hold, {"held", " (release them to send)"}},
      {store::Action::release, {"released", " (the daemon sends within seconds)"}}};
  const auto& [past, note] = done.at(action);
  c.out << plural(applied, "delivery", "deliveries") << " " << past << (applied > 0 ? note : "");
  if (changes.size() > static_cast<std::size_t>(applied)) {
    c.out << ", " << grouped(static_cast<std::int64_t>(changes.size()) - applied) << " skipped";
  }
  if (changes.empty()) c.out << (all ? " (nothing is dead or waiting to retry)" : " (nothing matched)");
  c.out << "; recorded as " << actor << '\n';
  return exit_ok;
}

}  // namespace referrald::cli
