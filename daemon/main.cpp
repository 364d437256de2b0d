// referrald: the referral intake and routing daemon. Parses the command line
// and hands over to the core library.
#include <CLI/CLI.hpp>
#include <malloc.h>

#include <chrono>
#include <iostream>

#include "service/reload.hpp"
#include "service/service.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "referrald - takes in referrals, decides eligibility, stores them durably and "
      "notifies the referral office"};
  std::string config_file;
  bool check = false;
  pid_t reload_pid = 0;
  auto* config = app.add_option("-c,--config", config_file, "configuration file (TOML)");
  app.add_flag("--check-config", check,
               "validate the configuration and rules file, print every problem as FILE:LINE: key: message, "
               "and exit (0 when valid)");
  auto* reload = app.add_option("--reload", reload_pid,
                                "ask the running referrald PID to reload its configuration (SIGHUP) and wait for "
                                "its answer in $RUNTIME_DIRECTORY: exit 0 when it took the file, 1 with the "
                                "problems when it refused it (the unit's ExecReload=)");
  reload->excludes(config);
  app.set_version_flag("--version", "referrald " REFERRALD_VERSION);
  try {
    app.parse(argc, argv);
    if (!*reload && !*config) throw CLI::RequiredError(config->get_name());
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (*reload) {
    const auto directory = referrald::runtime_directory();
    if (!directory) {
      std::cerr << "referrald --reload: $RUNTIME_DIRECTORY is not set (systemd sets it from the unit's "
                   "RuntimeDirectory=; the daemon writes its answer there)\n";
      return 1;
    }
    return referrald::request_reload(reload_pid, *directory, std::chrono::seconds(30), std::cout, std::cerr);
  }
  if (check) return referrald::check_config(config_file, std::cout, std::cerr);
  // A buffer of a megabyte or more (an upload's file, its base64, its
  // sealed copy) is mapped for itself and given back when freed. glibc's
  // default threshold rises to the largest block freed (up to 32 MB), after
  // which such buffers come from the heap and stay in the daemon's RSS once
  // the uploads are done (docs/attachments.md, "Streaming to disk").
  mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
  return referrald::run_daemon(config_file);
}
