// Where referralctl finds the store and, for `check`, the rules and schema.
#pragma once

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "store/database.hpp"

namespace referrald::cli {

inline constexpr const char* default_config_file = "/etc/referrald/referrald.toml";
// Where systemd keeps the running service's credentials (LoadCredential=):
// "credential:NAME" settings resolve there first when $CREDENTIALS_DIRECTORY
// is not set, so root can run referralctl against the running service's
// keys, then in the credential stores the unit loads them from
// (config.hpp's credential_stores), so it works while the service is down.
inline constexpr const char* service_credentials_directory = "/run/credentials/referrald.service";

// The configuration cannot tell where the store is (referralctl exits 3).
class SettingsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Settings {
  std::filesystem::path config_file;  // empty with --db and no --config
  std::filesystem::path database;
  // [storage] backend = "postgresql" (and no --db): the server instead of
  // the file.
  std::optional<store::PostgresTarget> postgres;
  std::filesystem::path rules_file;  // empty unless a configuration was read
  std::filesystem::path schema_dir;
  // The whole configuration when it validates as referrald's start-up
  // validates it; outside systemd a "credential:NAME" secret cannot resolve,
  // so referralctl then reads only the paths it needs (`problems` says why).
  std::optional<Configuration> configuration;
  std::vector<std::string> problems;

  // storage.encryption_keys: read with the configuration, or alone when
  // another part of it does not load; null without the setting, with --db
  // alone, or when the key file has problems (then among `problems`).
  std::shared_ptr<const KeyRing> payload_keys;
  // Why payload_keys is null, for a message.
  std::string why_no_payload_keys() const;
  // The store for messages: the file, or the server and database.
  std::string store_name() const;
};

// --db wins for the database; the configuration (given, or the default) is
// read when there is no --db, or when `need_rules` (check). Throws
// SettingsError.
Settings locate(const std::optional<std::filesystem::path>& config_file,
                const std::optional<std::filesystem::path>& database, bool need_rules);

}  // namespace referrald::cli
