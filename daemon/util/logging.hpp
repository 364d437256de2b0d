// Logging: spdlog, one line per event, a stable event name and key=value
// fields. Never a patient name, birth date, free text from a referral, or a secret.
#pragma once

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

}  // namespace referrald
