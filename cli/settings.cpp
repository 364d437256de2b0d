#include "cli/settings.hpp"

#include <toml++/toml.h>

#include "config/storage_target.hpp"

namespace referrald::cli {

namespace fs = std::filesystem;

namespace {

// Only the three paths, resolved as the loader resolves them (relative to
// the configuration file's directory).
void read_paths_leniently(Settings& s) {
  toml::table root;
  try {
    root = toml::parse_file(s.config_file.string());
  } catch (const toml::parse_error& e) {
    throw SettingsError(s.config_file.string() + ": " + std::string(e.description()));
  }
  const fs::path base = s.config_file.parent_path();
  const auto path_of = [&](std::string_view section, std::string_view key,
                           std::optional<std::string_view> fallback) -> fs::path {
    const auto value = root[section][key].value<std::string>();
    if (!value && !fallback) return {};
    fs::path p{value ? *value : std::string(*fallback)};
    if (p.is_relative()) p = base / p;
    return p.lexically_normal();
  };
  if (s.database.empty() && root["storage"]["backend"].value<std::string>() == "postgresql") {
    throw SettingsError(s.config_file.string() +
                        ": storage.backend is \"postgresql\" but the configuration does not load, so its "
                        "server cannot be reached:\n  " +
                        (s.problems.empty() ? std::string() : s.problems.front()));
  }
  if (s.database.empty()) {
    s.database = path_of("storage", "database", std::nullopt);
    if (s.database.empty()) {
      throw SettingsError(s.config_file.string() + ": storage.database is not set");
    }
  }
  s.rules_file = path_of("rules", "file", std::nullopt);
  s.schema_dir = path_of("paths", "schemas", "../schemas");
}

}  // namespace

std::string Settings::why_no_payload_keys() const {
  if (config_file.empty()) {
    return "with --db referralctl reads no configuration; name the configuration with --config instead, so "
           "it can read storage.encryption_keys";
  }
  if (problems.empty()) return config_file.string() + " sets no storage.encryption_keys";
  std::string out = "the configuration " + config_file.string() + " did not load";
  for (const auto& p : problems) out += "\n  " + p;
  return out;
}

std::string Settings::store_name() const {
  if (postgres) return store::describe(store::StorageTarget{store::Dialect::postgresql, {}, *postgres});
  return database.string();
}

Settings locate(const std::optional<fs::path>& config_file, const std::optional<fs::path>& database, bool need_rules) {
  Settings s;
  if (database) s.database = *database;
  if (database && !config_file && !need_rules) return s;
  s.config_file = config_file ? *config_file : fs::path(default_config_file);

  // Without the channels: referralctl sends nothing, so a target's channel
  // keys are not its business (LoadOptions::target_kinds).
  LoadOptions credentials;
  credentials.credential_fallbacks = {service_credentials_directory};
  credentials.credential_fallbacks.insert(credentials.credential_fallbacks.end(), credential_stores.begin(),
                                          credential_stores.end());
  std::error_code ec;
  if (!fs::exists(s.config_file, ec)) {
    throw SettingsError(
        "no configuration at " + s.config_file.string() +
        (config_file ? std::string() : " (name it with --config FILE, or the database with --db FILE)"));
  }
  try {
    s.configuration = load_configuration(s.config_file, credentials);
    s.payload_keys = s.configuration->config.storage.keys;
    const StorageConfig& storage = s.configuration->config.storage;
    if (!database && storage.backend == StorageBackend::postgresql) {
      s.postgres = storage_target(storage).postgres;
    } else if (s.database.empty()) {
      s.database = storage.database;
    }
    s.rules_file = s.configuration->config.rules_file;
    s.schema_dir = s.configuration->config.schema_dir;
    return s;
  } catch (const ConfigError& e) {
    for (const auto& p : e.problems()) s.problems.push_back(p.to_string());
  }
  read_paths_leniently(s);
  // Its problems, if any, are among those above already.
  std::vector<ConfigProblem> key_problems;
  s.payload_keys = load_encryption_keys(s.config_file, credentials, key_problems);
  return s;
}

}  // namespace referrald::cli
