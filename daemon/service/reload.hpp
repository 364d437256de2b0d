// `systemctl reload` that fails when referrald refuses the file.
//
// systemd 252 (Debian 12) has no Type=notify-reload, so the unit reloads with
// ExecReload=. That command runs in a namespace of its own in which the
// service's credentials are not mounted (systemd issue #35227), so it cannot
// judge a configuration that names "credential:…" secrets by loading it. The
// daemon judges it instead, when it gets SIGHUP, and writes what it decided to
// `reload-outcome` in $RUNTIME_DIRECTORY (the unit's RuntimeDirectory=);
// `referrald --reload PID` (the unit's ExecReload=) sends the signal, waits
// for that answer and exits 0 when the file was taken, 1 with its problems
// when it was refused (the old configuration keeps running either way).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <sys/types.h>

namespace referrald {

struct ReloadOutcome {
  pid_t pid = 0;                 // the daemon that decided
  std::uint64_t generation = 0;  // its 1st, 2nd ... reload
  bool taken = false;
  std::vector<std::string> problems;  // FILE:LINE: key: message, when refused (never PHI)
};

// $RUNTIME_DIRECTORY (the first, when systemd lists several), if set.
std::optional<std::filesystem::path> runtime_directory();

// Replaces `directory`/reload-outcome (0600, written whole then renamed).
// Throws std::system_error.
void write_reload_outcome(const std::filesystem::path& directory, const ReloadOutcome& outcome);
// nullopt when there is none, or it cannot be read.
std::optional<ReloadOutcome> read_reload_outcome(const std::filesystem::path& directory);

// Sends SIGHUP to `pid` and waits up to `wait` for its outcome in
// `directory`. Prints what happened (problems to `err`); returns the exit
// status: 0 taken, 1 refused, no such process, or no answer in time.
int request_reload(pid_t pid, const std::filesystem::path& directory, std::chrono::milliseconds wait, std::ostream& out,
                   std::ostream& err);

}  // namespace referrald
