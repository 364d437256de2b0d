// The composition root: builds every part from the configuration, runs the
// daemon until SIGTERM, reloads on SIGHUP.
#pragma once

#include <filesystem>
#include <iosfwd>

namespace referrald {

// Runs the daemon; returns the process exit code: 0 after SIGTERM, 78
// (EX_CONFIG) for an invalid configuration, 1 when it cannot start otherwise.
int run_daemon(const std::filesystem::path& config_file);

// Validates the configuration and rules exactly as start-up does. Prints
// "configuration OK" to out, or each problem as FILE:LINE: key: message to
// err; returns 0 or 1.
int check_config(const std::filesystem::path& config_file, std::ostream& out, std::ostream& err);

}  // namespace referrald
