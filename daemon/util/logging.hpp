// Logging: spdlog, one line per event, a stable event name and key=value
// fields. Never a patient name, birth date, free text from a referral, or a secret.
#pragma once

#include <exception>
#include <string_view>

namespace referrald {

enum class LogTarget {
  console,  // timestamps, for a terminal
  journal,  // "<N>" syslog priority prefixes and no timestamps (JOURNAL_STREAM is set)
};

// Configures the default logger on stderr; `level` is trace|debug|info|warn|error.
void setup_logging(std::string_view level, LogTarget target);

// LogTarget::journal when stderr is connected to journald, else console.
LogTarget detect_log_target() noexcept;

// Logs the exception that ended a loop at critical level as
// `<event> error="…"`, e.g. "dispatch.loop_died".
void log_loop_error(const char* event, std::exception_ptr e) noexcept;

// The completion (co_spawn's handler) of a loop that should run until it is
// stopped: logs the exception that ended it, if one did. `event` must
// outlive it (a string literal).
inline auto log_if_ended_by_error(const char* event) {
  return [event](std::exception_ptr e) {
    if (e) log_loop_error(event, e);
  };
}

}  // namespace referrald
