// referrald: the referral intake and routing daemon. Parses the command line
// and hands over to the core library.
#include <CLI/CLI.hpp>

#include <iostream>

#include "service/service.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "referrald - takes in referrals, decides eligibility, stores them durably and "
      "notifies the referral office"};
  std::string config_file;
  bool check = false;
  app.add_option("-c,--config", config_file, "configuration file (TOML)")->required();
  app.add_flag("--check-config", check,
               "validate the configuration and rules file, print every problem as FILE:LINE: key: message, "
               "and exit (0 when valid)");
  app.set_version_flag("--version", "referrald " REFERRALD_VERSION);
  CLI11_PARSE(app, argc, argv);
  if (check) return referrald::check_config(config_file, std::cout, std::cerr);
  return referrald::run_daemon(config_file);
}
