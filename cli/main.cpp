// referralctl: operators see and steer referrald's queue, like Postfix's
// postqueue and postsuper. Parses the command line; the commands (cli/read.cpp,
// act.cpp, check.cpp, maintain.cpp, office.cpp) do the work over the same
// store library as the daemon.
#include <CLI/CLI.hpp>

#include <ctime>
#include <iostream>

#include "cli/commands.hpp"
#include "util/duration.hpp"

namespace {

using namespace referrald;
using namespace referrald::cli;

constexpr const char* overview =
    "referralctl - see and steer referrald's referrals and delivery queue\n"
    "\n"
    "Works while referrald runs and while it is stopped (SQLite WAL). Reading\n"
    "commands open the database read-only; actions take the write lock for one\n"
    "short transaction, record who did what in the audit trail, and take effect\n"
    "in the running daemon within seconds, without a restart.";

constexpr const char* footer =
    "IDs:\n"
    "  A referral id (R-20261128-7K3M9-TZQXA, any case) stands for all of its deliveries;\n"
    "  a delivery number (the ID column of `queue`, `#12` in `show`) or a delivery\n"
    "  identity (R-20261128-7K3M9-TZQXA.office-fax) for one.\n"
    "\n"
    "Delivery states: pending (due), sending (claimed, under a lease), retry (failed,\n"
    "  due again later), held (by an operator), and the final ones: delivered, dead\n"
    "  (gave up, or the target is misconfigured), cancelled (by an operator).\n"
    "\n"
    "Output: aligned tables in local time (TZ is honoured), coloured only on a\n"
    "  terminal; --json prints the documented stable shape (docs/referralctl.md)\n"
    "  with RFC 3339 UTC times.\n"
    "\n"
    "Exit status:\n"
    "  0  done\n"
    "  1  no such referral, delivery or file\n"
    "  2  usage error\n"
    "  3  store unavailable: no database, locked beyond --wait, unreadable, not\n"
    "     writable for an action, or of another schema version (after an upgrade,\n"
    "     start the new referrald once); or the configuration cannot be read\n"
    "  4  check: the referral is not valid; import: the export file is not valid\n"
    "  5  a referral's document cannot be decrypted: its key is not in the\n"
    "     configuration's storage.encryption_keys (or the row was altered)\n"
    "  6  ack, decide, close: the status rules do not allow that change; import: the\n"
    "     database is not empty\n"
    "  7  audit verify: a row of the audit trail does not match the chain\n"
    "\n"
    "Environment:\n"
    "  NO_COLOR   when set and not empty, never colour (as --color never)\n"
    "  TZ         the time zone of human output\n"
    "  SUDO_USER  run through sudo, actions are recorded as \"root (sudo by USER)\"\n"
    "             (or \"referrald (sudo by USER)\" with sudo -u referrald)\n"
    "\n"
    "Files:\n"
    "  /etc/referrald/referrald.toml   default configuration ([storage] database and\n"
    "                                  encryption_keys, [rules] file and [paths]\n"
    "                                  schemas are read)\n"
    "  /run/credentials/referrald.service/\n"
    "                                  the running service's credentials: where\n"
    "                                  \"credential:NAME\" settings are read when\n"
    "                                  $CREDENTIALS_DIRECTORY is not set (as root)\n"
    "\n"
    "Examples:\n"
    "  referralctl queue                          what is waiting, like postqueue -p\n"
    "  referralctl list --state dead --since 7d   referrals with a dead delivery\n"
    "  referralctl show R-20261128-7K3M9-TZQXA    everything about one referral\n"
    "  referralctl retry ALL --target office-fax  after fixing the fax target\n"
    "  referralctl check referral.json            the decision, storing nothing\n"
    "  referralctl ack R-20261128-7K3M9-TZQXA     the office has seen it: escalation stops\n"
    "  referralctl list --overdue                 not acknowledged, past an escalation step\n"
    "\n"
    "See also: referrald(8); docs/referralctl.md for the --json shapes.";

// Usage errors are exit 2 whatever CLI11 would return.
int parse_failure(CLI::App& app, const CLI::ParseError& e) {
  if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
  std::cerr << "referralctl: " << e.what() << "\nRun with --help for more information.\n";
  return exit_usage;
}

template <typename T>
std::optional<T> parse_enum(const std::string& text, std::optional<T> (*parse)(std::string_view) noexcept) {
  if (text.empty()) return std::nullopt;
  return parse(text);
}

}  // namespace

int main(int argc, char** argv) {
  ::tzset();
  CLI::App app{overview, "referralctl"};
  app.footer(footer);
  app.get_formatter()->column_width(34);
  app.require_subcommand(1);
  app.set_version_flag("--version", "referralctl " REFERRALD_VERSION);

  GlobalOptions global;
  std::string config_file, database, lock_wait = "5s";
  auto* config_option = app.add_option("-c,--config", config_file,
                                       "referrald's configuration: where the database, rules and schema are "
                                       "(default /etc/referrald/referrald.toml)");
  config_option->type_name("FILE");
  app.add_option("--db", database, "the database file itself; commands other than check then need no configuration")
      ->type_name("FILE");
  app.add_option("--wait", lock_wait, "how long an action waits for the database's write lock (default 5s)")
      ->type_name("DURATION");
  app.add_option("--color", global.colour, "colour human output: auto (on a terminal, unless NO_COLOR), always, never")
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->type_name("WHEN");

  bool json = false;
  const auto add_json = [&json](CLI::App* sub) {
    sub->add_flag("--json", json, "print JSON (shape in docs/referralctl.md) instead of a table");
  };

  // list
  std::string decision, state, urgency, since, before;
  std::vector<std::string> statuses;
  bool overdue = false;
  int limit = 50;
  auto* list = app.add_subcommand("list", "referrals, newest first, with their deliveries' states");
  list->add_option("--decision", decision, "only this decision")
      ->check(CLI::IsMember({"accepted", "review", "declined"}))
      ->type_name("accepted|review|declined");
  list->add_option("--state", state, "only referrals with a delivery in this state")
      ->check(CLI::IsMember({"pending", "sending", "retry", "held", "delivered", "dead", "cancelled"}))
      ->type_name("STATE");
  list->add_option("--status", statuses, "only referrals whose office status is one of these (comma-separated)")
      ->delimiter(',')
      ->check(CLI::IsMember({"received", "acknowledged", "accepted", "declined", "needs-info", "closed"}))
      ->type_name("STATUS[,STATUS]");
  auto* overdue_flag =
      list->add_flag("--overdue", overdue,
                     "instead: referrals nobody has acknowledged although an escalation step is due, oldest first");
  list->add_option("--urgency", urgency, "only this urgency")
      ->check(CLI::IsMember({"routine", "urgent", "emergent"}))
      ->type_name("routine|urgent|emergent");
  list->add_option("--since", since,
                   "received since: a duration ago (24h, 7d) or a local date/time (2026-11-01, 2026-11-01T08:00; "
                   "a trailing Z means UTC)")
      ->type_name("WHEN");
  list->add_option("--limit", limit, "at most this many referrals per page (default 50)")
      ->check(CLI::Range(1, 100000))
      ->type_name("N");
  list->add_option("--before", before,
                   "the next page: referrals listed after this one (the id printed after \"more:\", or "
                   "next_before in JSON)")
      ->type_name("ID");
  for (const char* other : {"--status", "--decision", "--state", "--urgency", "--since", "--limit", "--before"}) {
    overdue_flag->excludes(other);
  }
  list->footer(
      "Paging is by key, not by offset: a page costs the same however deep it is, and referrals\n"
      "arriving meanwhile do not shift it.\n"
      "STATUS is the office's: received, acknowledged, accepted, declined, needs-info, closed\n"
      "(a possible duplicate shows \", dup of R-...\" after it). --overdue lists every referral still\n"
      "received with an escalation step due, with the step and how long it has waited; it takes\n"
      "no other filter.");
  add_json(list);

  // show
  std::string show_id;
  auto* show = app.add_subcommand("show",
                                  "one referral: its decision and reasons, the referral itself, each delivery "
                                  "with every attempt, and the audit trail");
  show->add_option("ID", show_id, "the referral id")->required();
  show->footer(
      "Also the office's status with its history (who, when, how, and the notes: patient data,\n"
      "shown to the operator only) and the escalation ladder's steps.");
  add_json(show);

  // attachment
  std::string attachment_id;
  int attachment_position = 0;
  std::filesystem::path attachment_output;
  auto* attachment = app.add_subcommand("attachment",
                                        "write one of a referral's attached files, decrypted, to a new file (mode "
                                        "0600)");
  attachment->add_option("ID", attachment_id, "the referral id")->required();
  attachment->add_option("N", attachment_position, "which file: its N in `show` (from 1)")
      ->required()
      ->check(CLI::Range(1, 1000));
  attachment->add_option("--output,-o", attachment_output, "the file to write; it must not exist yet")
      ->required()
      ->type_name("FILE");
  attachment->footer(
      "The file is the referrer's bytes exactly: its SHA-256 is the one `show` lists and the 202\n"
      "answer gave. It is patient data: keep it private and remove it when done.");
  add_json(attachment);

  // queue
  std::string queue_target, queue_state;
  int queue_limit = 0;
  auto* queue = app.add_subcommand("queue",
                                   "deliveries not yet final (pending, sending, retry, held), soonest first, "
                                   "like postqueue -p");
  queue->add_option("--target", queue_target, "only this target")->type_name("NAME");
  queue->add_option("--state", queue_state, "only this state")
      ->check(CLI::IsMember({"pending", "sending", "retry", "held"}))
      ->type_name("pending|sending|retry|held");
  queue->add_option("--limit", queue_limit, "at most this many (default: all)")
      ->check(CLI::Range(1, 10000000))
      ->type_name("N");
  add_json(queue);

  // stats
  auto* stats = app.add_subcommand("stats",
                                   "counts by decision, status and delivery state, the overdue, the oldest "
                                   "due delivery, attempts per target over the last hour and day");
  add_json(stats);

  // actions
  std::vector<std::string> ids;
  std::string action_target;
  const auto add_action = [&](const char* name, const char* description, const char* states) {
    auto* sub = app.add_subcommand(name, description);
    sub->add_option("ID", ids, "referral ids, delivery numbers or REFERRAL.TARGET identities")->required();
    sub->add_option("--target", action_target, "only the deliveries to this target")->type_name("NAME");
    sub->footer(states);
    add_json(sub);
    return sub;
  };
  auto* retry =
      add_action("retry", "send dead and retrying deliveries again, now (ID... or ALL)",
                 "retry moves dead and retry deliveries to pending, due now; the running daemon sends them within\n"
                 "seconds. Others are skipped (delivered, cancelled, sending, pending; held: use release).\n"
                 "ALL, in capitals as with postsuper, means every dead and retry delivery (with --target, of one\n"
                 "target). The attempt count goes on: a delivery that had used up max_attempts or give_up_after\n"
                 "gets one more attempt, and is dead again if that one fails.");
  auto* cancel =
      add_action("cancel", "stop delivering: the deliveries become cancelled (final)",
                 "cancel moves pending, retry, held, sending and dead deliveries to cancelled; delivered and\n"
                 "cancelled ones are skipped. A delivery being sent right now may still go out; its outcome is\n"
                 "recorded but does not change the state. Cancelled deliveries are left out of retry ALL.");
  auto* hold = add_action("hold", "keep deliveries from being sent until released",
                          "hold moves pending and retry deliveries to held; others are skipped (one being sent\n"
                          "right now cannot be held: try again in a moment).");
  auto* release = add_action("release", "send held deliveries again, now",
                             "release moves held deliveries to pending, due now; others are skipped.");

  // check
  std::string check_file;
  auto* check = app.add_subcommand("check",
                                   "validate a referral and show the decision with its reasons (and the "
                                   "targets it would notify now), storing nothing");
  check->add_option("FILE", check_file, "the referral JSON, as posted to /api/v1/referrals")
      ->required()
      ->type_name("FILE.json");
  check->footer(
      "Runs referrald's own validation and eligibility rules (the configuration's rules file and\n"
      "schema). Exit 0 for a valid referral, 4 with each problem for an invalid one, 1 if the\n"
      "file cannot be read. Needs --config (or the default configuration), not the database.");
  add_json(check);

  // purge
  std::string older_than;
  bool dry_run = false;
  auto* purge = app.add_subcommand("purge", "delete old referrals whose deliveries are all final");
  purge->add_option("--older-than", older_than, "received longer ago than this (e.g. 365d)")
      ->required()
      ->type_name("DURATION");
  purge->add_flag("--dry-run", dry_run, "count what would be purged; change nothing");
  purge->footer(
      "Deletes each referral with its reasons, deliveries and attempts, holding the write lock\n"
      "~100 ms at a time so the running daemon keeps taking referrals; referrals with a delivery\n"
      "not yet final are kept.\n"
      "The audit trail keeps a \"purged\" entry per referral (it holds no patient data), at the\n"
      "end of its hash chain: audit verify checks it whole afterwards.");
  add_json(purge);

  // the office's status
  std::string status_id, decided, note;
  const auto add_status = [&](const char* name, const char* description, const char* footer) {
    auto* sub = app.add_subcommand(name, description);
    sub->add_option("ID", status_id, "the referral id")->required();
    if (std::string_view(name) == "decide") {
      sub->add_option("DECISION", decided, "the office's decision")
          ->required()
          ->check(CLI::IsMember({"accepted", "declined", "needs-info"}))
          ->type_name("accepted|declined|needs-info");
    }
    sub->add_option("--note", note,
                    "why, for the record and (for needs-info) the referrer's notice. Patient data: stored "
                    "encrypted, never logged; - reads it from standard input, out of sight of ps and the "
                    "shell's history")
        ->type_name("TEXT");
    sub->footer(std::string(footer) +
                "\n\nStatuses: received -> acknowledged -> accepted | declined | needs-info -> closed;\n"
                "needs-info may go back to acknowledged, any open status may be closed, closed is final.\n"
                "A change the rules do not allow is refused with the changes that are (exit 6). The\n"
                "change is recorded with the operator's user name; with [closed_loop] the referrer's\n"
                "notices are queued and the running daemon sends them within seconds. Needs the\n"
                "configuration (not --db).");
    add_json(sub);
    return sub;
  };
  auto* ack = add_status("ack", "acknowledge a referral: the office has seen it, its escalation stops",
                         "ack moves a received (or needs-info) referral to acknowledged; the escalation steps\n"
                         "not yet fired are stopped.");
  auto* decide = add_status("decide", "record the office's decision: accepted, declined or needs-info",
                            "decide moves an acknowledged referral to accepted, declined or needs-info.");
  auto* close = add_status("close", "close a referral (done, or withdrawn)",
                           "close ends any open referral; it cannot change afterwards.");

  // audit
  auto* audit = app.add_subcommand("audit", "the audit trail");
  audit->require_subcommand(1);
  auto* audit_verify = audit->add_subcommand(
      "verify",
      "check the audit trail's hash chain, row by row: exit 0 with the count, or 7 naming the first "
      "row that does not match");
  audit_verify->footer(
      "Every audit row carries the SHA-256 of its content and of the row before it; a row\n"
      "changed or removed outside referrald breaks the chain from there on. Record the head\n"
      "it prints somewhere else to notice a rewritten trail (docs/audit.md).");
  add_json(audit_verify);

  // rekey
  auto* rekey = app.add_subcommand("rekey",
                                   "encrypt every stored referral and status note under the first key of "
                                   "storage.encryption_keys (after adding a new key)");
  rekey->footer(
      "Re-encrypts, in short transactions while referrald runs, each referral whose document is\n"
      "not under the first key of the key file yet (rows stored before encryption was enabled\n"
      "included), then each status note likewise, and records each in the audit trail. Run it after putting a new key "
      "first and\n"
      "reloading referrald; once it reports nothing left, the old key's line can be removed.\n"
      "Needs the configuration (not --db). Exit 5 names each document it could not decrypt.\n"
      "Step by step: docs/encryption.md.");
  add_json(rekey);

  // export, import
  std::filesystem::path export_output, import_file;
  auto* export_command_ = app.add_subcommand(
      "export",
      "write everything the store holds to a new file (mode 0600), to move it to another database with import");
  export_command_->add_option("--output,-o", export_output, "the file to write; it must not exist yet")
      ->required()
      ->type_name("FILE");
  export_command_->footer(
      "Referrals, their deliveries and attempts, attachments, status changes, escalation steps,\n"
      "acknowledgement tokens, idempotency keys, duplicate marks, the audit trail and the\n"
      "counters, as stored, in one read snapshot (referrald may keep running). With\n"
      "storage.encryption_keys set, documents, notes and files stay sealed: the file holds their\n"
      "ciphertext. Without it they are stored readable, and so is the export. Either way the file\n"
      "is as private as the database. Format: docs/storage.md.");
  add_json(export_command_);
  auto* import_command_ = app.add_subcommand("import", "fill a new, empty database from an export, in one transaction");
  import_command_->add_option("FILE", import_file, "the file export wrote")->required()->type_name("FILE");
  import_command_->footer(
      "The database is the one --config (its [storage]) or --db names; a SQLite file is created.\n"
      "It must hold no referral, delivery or audit row (exit 6 otherwise). Everything is\n"
      "imported in one transaction or nothing is: a file cut short or altered is refused (exit 4)\n"
      "naming its line. The audit trail is checked, gets an \"imported\" row and is checked\n"
      "again. Sealed documents are opened later with the same storage.encryption_keys as the\n"
      "source's. Run it with referrald stopped; step by step: docs/deployment.md.");
  add_json(import_command_);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return parse_failure(app, e);
  }

  if (!config_file.empty()) global.config_file = config_file;
  if (!database.empty()) global.database = database;
  if (!config_file.empty() && !database.empty() && !check->parsed()) {
    std::cerr << "referralctl: give --config or --db, not both\nRun with --help for more information.\n";
    return exit_usage;
  }
  const auto wait = parse_duration(lock_wait);
  if (!wait) {
    std::cerr << "referralctl: --wait: expected a duration like 5s or 1m, got \"" << lock_wait << "\"\n";
    return exit_usage;
  }
  global.lock_wait = *wait;

  Context c{global, {}, detect_style(global.colour), json, std::cout, std::cerr};

  if (list->parsed() && overdue) return run_command(c, false, [&] { return overdue_command(c); });
  if (list->parsed()) {
    store::ListFilter filter;
    for (const auto& s : statuses) filter.statuses.push_back(*parse_office_status(s));
    filter.decision = parse_enum<Decision>(decision, parse_decision);
    filter.urgency = parse_enum<Urgency>(urgency, parse_urgency);
    filter.delivery_state = parse_enum<store::DeliveryState>(state, store::parse_delivery_state);
    if (!since.empty()) {
      filter.since = parse_since(since, c.now);
      if (!filter.since) {
        std::cerr << "referralctl: --since: expected a duration (24h, 7d) or a date/time (2026-11-01, "
                     "2026-11-01T08:00), got \""
                  << since << "\"\n";
        return exit_usage;
      }
    }
    if (!before.empty()) filter.before = before;
    filter.limit = limit;
    return run_command(c, false, [&] { return list_command(c, filter); });
  }
  if (show->parsed()) return run_command(c, false, [&] { return show_command(c, show_id); });
  if (attachment->parsed()) {
    return run_command(c, false,
                       [&] { return attachment_command(c, attachment_id, attachment_position, attachment_output); });
  }
  if (ack->parsed() || decide->parsed() || close->parsed()) {
    const OfficeStatus to = ack->parsed()     ? OfficeStatus::acknowledged
                            : close->parsed() ? OfficeStatus::closed
                                              : *parse_office_status(decided);  // IsMember checked it
    CLI::App* sub = ack->parsed() ? ack : close->parsed() ? close : decide;
    std::optional<std::string> given;
    if (sub->count("--note") > 0) given = note;
    return run_command(c, false, [&] { return status_command(c, status_id, to, given); });
  }
  if (audit_verify->parsed()) return run_command(c, false, [&] { return audit_verify_command(c); });
  if (queue->parsed()) {
    store::QueueFilter filter;
    if (!queue_target.empty()) filter.target = queue_target;
    filter.state = parse_enum<store::DeliveryState>(queue_state, store::parse_delivery_state);
    filter.limit = queue_limit;
    return run_command(c, false, [&] { return queue_command(c, filter); });
  }
  if (stats->parsed()) return run_command(c, false, [&] { return stats_command(c); });
  for (auto [sub, action] : {std::pair{retry, store::Action::retry}, std::pair{cancel, store::Action::cancel},
                             std::pair{hold, store::Action::hold}, std::pair{release, store::Action::release}}) {
    if (!sub->parsed()) continue;
    std::optional<std::string> target;
    if (!action_target.empty()) target = action_target;
    return run_command(c, false, [&, action = action] { return action_command(c, action, ids, target); });
  }
  if (check->parsed()) return run_command(c, true, [&] { return check_command(c, check_file); });
  if (export_command_->parsed()) return run_command(c, false, [&] { return export_command(c, export_output); });
  if (import_command_->parsed()) return run_command(c, false, [&] { return import_command(c, import_file); });
  if (rekey->parsed()) return run_command(c, false, [&] { return rekey_command(c); });
  if (purge->parsed()) {
    const auto d = parse_duration(older_than);
    if (!d) {
      std::cerr << "referralctl: --older-than: expected a duration like 365d, got \"" << older_than << "\"\n";
      return exit_usage;
    }
    return run_command(c, false, [&] { return purge_command(c, *d, dry_run); });
  }
  return exit_usage;
}
