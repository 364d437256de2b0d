// referralctl's commands over the store. Each returns the process exit code;
// main.cpp only parses the command line. By group: read.cpp (list, show,
// queue, stats), act.cpp (retry, cancel, hold, release), check.cpp (check),
// maintain.cpp (purge, rekey), office.cpp (ack, decide, close, audit verify),
// transfer.cpp (export, import);
// what they share: common.hpp.
#pragma once

#include <chrono>
#include <filesystem>
#include <iosfwd>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli/output.hpp"
#include "cli/settings.hpp"
#include "office/status.hpp"
#include "store/queries.hpp"
#include "util/duration.hpp"

namespace referrald::cli {

enum ExitCode : int {
  exit_ok = 0,
  exit_not_found = 1,      // no such referral, delivery or file
  exit_usage = 2,          // the command line is wrong
  exit_unavailable = 3,    // the store is missing, locked, unreadable or of another schema version
  exit_invalid = 4,        // check: the referral is not valid; import: the export file is not valid
  exit_undecryptable = 5,  // a referral's document cannot be decrypted (key not in the key file, or altered)
  exit_refused = 6,        // ack, decide, close: the status rules do not allow that change; import: not empty
  exit_audit_broken = 7,   // audit verify: a row does not match the chain
};

// A file given to a command is not what it must be (import: the export
// file, named with its line): exit_invalid.
class InvalidInput : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A command line that parses but asks for something impossible.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct GlobalOptions {
  std::optional<std::filesystem::path> config_file;
  std::optional<std::filesystem::path> database;
  Duration lock_wait{std::chrono::seconds(5)};
  std::string colour = "auto";
};

struct Context {
  GlobalOptions global;
  Settings settings;
  Style style;
  bool json = false;
  std::ostream& out;
  std::ostream& err;
  TimePoint now = std::chrono::system_clock::now();
};

// Locates the store (and rules), runs `command`, and turns every failure
// into a message on stderr and its exit code.
template <typename Command>
int run_command(Context& c, bool need_rules, Command&& command);

int list_command(Context& c, const store::ListFilter& filter);
int overdue_command(Context& c);  // list --overdue
int show_command(Context& c, const std::string& id);
// Writes attachment `position` (from 1) of the referral, decrypted, to a new
// 0600 file.
int attachment_command(Context& c, const std::string& id, int position, const std::filesystem::path& output);
int queue_command(Context& c, const store::QueueFilter& filter);
int stats_command(Context& c);
int action_command(Context& c, store::Action action, const std::vector<std::string>& names,
                   const std::optional<std::string>& target);
int check_command(Context& c, const std::filesystem::path& file);
int purge_command(Context& c, Duration older_than, bool dry_run);
int rekey_command(Context& c);
// ack, decide, close: `note` as given to --note ("-": read standard input).
int status_command(Context& c, const std::string& id, OfficeStatus to, const std::optional<std::string>& note);
int audit_verify_command(Context& c);
// The whole store to a new file (0600) of JSON Lines, and back into an
// empty store in one transaction (docs/storage.md, "Moving a store").
int export_command(Context& c, const std::filesystem::path& output);
int import_command(Context& c, const std::filesystem::path& input);

// The operator for the audit trail: the effective user's name, and
// "root (sudo by alice)" or "referrald (sudo by alice)" when run through sudo.
std::string operator_name();

// Parses "24h", "7d" (that long ago), "2026-11-01" (local midnight) or
// "2026-11-01T08:00" / "2026-11-01 08:00[:SS]" (local) / "...Z" (UTC).
std::optional<TimePoint> parse_since(const std::string& text, TimePoint now);

int report_failure(Context& c, const std::exception_ptr& failure);

template <typename Command>
int run_command(Context& c, bool need_rules, Command&& command) {
  try {
    c.settings = locate(c.global.config_file, c.global.database, need_rules);
    return command();
  } catch (...) {
    return report_failure(c, std::current_exception());
  }
}

}  // namespace referrald::cli
