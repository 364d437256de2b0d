// referralctl's office commands: ack, decide and close move a referral's
// status (office/status.hpp) in one write transaction; audit verify walks
// the audit trail's hash chain (store/audit_chain.hpp).
#include "cli/commands.hpp"

#include <iostream>
#include <iterator>
#include <ostream>

#include "cli/common.hpp"
#include "office/closed_loop.hpp"
#include "office/status.hpp"
#include "store/audit_chain.hpp"
#include "store/office.hpp"
#include "util/strings.hpp"

namespace referrald::cli {

using store::ReadTransaction;
using store::WriteTransaction;

namespace {

// "--note -": the note from standard input, without its final line break
// (what `echo` and a here-document add).
std::string read_note(const std::string& given) {
  std::string note = given;
  if (given == "-") {
    note.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    if (note.ends_with("\r\n")) {
      note.resize(note.size() - 2);
    } else if (note.ends_with('\n')) {
      note.pop_back();
    }
  }
  if (trim(note).empty()) throw UsageError("--note: the note is empty (leave --note out for none)");
  if (const std::size_t n = display_width(note); n > max_note_characters) {
    throw UsageError("--note: the note is " + grouped(static_cast<std::int64_t>(n)) + " characters long; at most " +
                     grouped(max_note_characters) + " are kept");
  }
  return note;
}

}  // namespace

int status_command(Context& c, const std::string& id_text, OfficeStatus to,
                   const std::optional<std::string>& note_option) {
  // The configuration says whom the referrer's notices go to, and holds the
  // key that seals the note: without it a change would silently skip the
  // notices, or keep the note in the clear.
  if (!c.settings.configuration) {
    throw SettingsError(
        "changing a referral's status needs referrald's configuration ([closed_loop] for the "
        "referrer's notices, storage.encryption_keys for the note): " +
        (c.settings.config_file.empty()
             ? std::string("with --db referralctl reads no configuration; give --config instead")
             : c.settings.why_no_payload_keys()));
  }
  const std::optional<std::string> note = note_option ? std::optional(read_note(*note_option)) : std::nullopt;
  const auto& loop = c.settings.configuration->config.closed_loop;
  auto db = open_store(c, true);

  store::StatusChange change;
  change.referral_id = upper(id_text);
  change.to = to;
  change.actor = operator_name();
  change.via = store::StatusVia::cli;
  change.note = note;
  change.at = c.now;
  change.notice_targets = notice_targets(loop, to);
  store::StatusChangeResult result;
  {
    WriteTransaction write(*db);
    result = store::change_status(*db, change);
    if (result.changed) write.commit();
  }
  if (!result.changed) {
    c.err << "referralctl: " << change.referral_id << ": " << result.refusal.value_or("not changed") << '\n';
    return exit_refused;
  }

  const std::string from(to_string(result.from));
  const std::string to_text(to_string(to));
  const std::vector<std::string> notified = result.notices > 0 ? change.notice_targets : std::vector<std::string>{};
  if (c.json) {
    print_json(c, json{{"referral_id", change.referral_id},
                       {"from", from},
                       {"to", to_text},
                       {"at", rfc3339(change.at)},
                       {"actor", change.actor},
                       {"change_id", result.change_id},
                       {"note", note.has_value()},
                       {"escalations_stopped", result.escalations_stopped},
                       {"notices_planned", result.notices},
                       {"notice_targets", notified}});
    return exit_ok;
  }
  c.out << change.referral_id << ": " << from << " -> " << c.style.paint(to_text, Colour::bold)
        << (note ? " (with a note)" : "") << "; recorded as " << change.actor << '\n';
  if (result.escalations_stopped > 0) {
    c.out << "stopped " << plural(result.escalations_stopped, "escalation step", "escalation steps")
          << " still pending\n";
  }
  if (result.notices > 0) {
    std::string targets;
    for (const auto& t : notified) join_into(targets, t);
    c.out << "the referrer will be told: " << plural(result.notices, "notice", "notices") << " (" << targets
          << "), sent by the running daemon within seconds\n";
  }
  return exit_ok;
}

int audit_verify_command(Context& c) {
  auto db = open_store(c, false);
  store::AuditVerification v;
  {
    ReadTransaction read(*db);
    v = store::verify_audit_chain(*db);
  }
  if (c.json) {
    print_json(c, json{{"verified", !v.first_bad.has_value()},
                       {"rows", v.rows},
                       {"first_bad", v.first_bad ? json(*v.first_bad) : json(nullptr)},
                       {"problem", v.first_bad ? json(v.problem) : json(nullptr)},
                       {"head", v.first_bad ? json(nullptr) : json(v.head)}});
  } else if (!v.first_bad) {
    c.out << "the audit trail verifies: " << plural(v.rows, "row", "rows");
    if (v.rows > 0) c.out << ", head " << v.head;
    c.out << '\n';
  }
  if (!v.first_bad) return exit_ok;
  c.err << "referralctl: audit row " << *v.first_bad << " " << v.problem << " (" << plural(v.rows - 1, "row", "rows")
        << " before it verified)\n";
  return exit_audit_broken;
}

}  // namespace referrald::cli
