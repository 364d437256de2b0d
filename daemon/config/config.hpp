// referrald.toml: loaded and validated strictly. Every problem is reported as
// FILE:LINE: key: message, all of them at once (ConfigError).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "attachments/inspect.hpp"
#include "office/closed_loop.hpp"
#include "office/escalation.hpp"
#include "routing/business_hours.hpp"
#include "routing/routing.hpp"
#include "config/target_keys.hpp"
#include "rules/rules.hpp"
#include "util/config_error.hpp"
#include "util/duration.hpp"
#include "util/key_ring.hpp"

namespace referrald {

struct ListenEndpoint {
  std::string host;  // literal IPv4 or IPv6 address (no brackets) or "localhost"
  std::uint16_t port = 0;
  std::string to_string() const;  // "127.0.0.1:8080", "[::1]:8080"
};

using Sha256 = std::array<unsigned char, 32>;

struct HttpConfig {
  std::vector<ListenEndpoint> listen;
  // Both set: HTTPS only. Either may be "credential:NAME" in the file,
  // resolved here to $CREDENTIALS_DIRECTORY/NAME.
  std::filesystem::path tls_certificate;
  std::filesystem::path tls_private_key;
  std::vector<Sha256> api_keys;         // SHA-256 of each bearer token: submit, read their own
  std::vector<Sha256> office_api_keys;  // the office's systems: read every referral, change status
  std::size_t max_body_bytes = 65536;
  // The body limit of the intake requests (the API's POST and the form's),
  // which may carry attachments: derived from [intake]'s attachment limits
  // (upload_body_limit); max_body_bytes when attachments are off.
  std::size_t max_upload_body_bytes = 0;
  std::size_t max_header_bytes = 8192;
  std::size_t max_connections = 1024;
  std::size_t max_connections_per_client = 128;  // per client address
  unsigned threads = 2;                          // I/O threads
  Duration read_timeout{std::chrono::seconds(10)};
  Duration write_timeout{std::chrono::seconds(10)};
  Duration idle_timeout{std::chrono::seconds(30)};
  unsigned rate_limit_per_minute = 600;  // per client address; 0 disables
  unsigned rate_limit_burst = 120;
  // The origins browsers reach the form at ("https://referrals.example.org",
  // "http://127.0.0.1:8080"): lower case, no path, the port only when not the
  // scheme's default. Defaults to one per listen address (both
  // http://localhost:P and http://127.0.0.1:P for "localhost:P").
  std::vector<std::string> public_origins;

  bool tls_enabled() const { return !tls_certificate.empty(); }
};

enum class StorageBackend { sqlite, postgresql };

struct StorageConfig {
  StorageBackend backend = StorageBackend::sqlite;
  std::filesystem::path database;  // sqlite
  // postgresql (docs/storage.md): a libpq connection URI without a password,
  // the password read from password_file ("credential:NAME" too), and the
  // number of connections the readers share (the writer has its own).
  std::string url;
  int url_line = 0;  // where url is, for the problems --check-config finds on connecting
  std::filesystem::path password_file;
  std::optional<std::string> password;
  unsigned pool = 4;
  // storage.encryption_keys, resolved ("credential:NAME" too) and read:
  // referral documents are encrypted with keys->current(). Null when the
  // setting is absent: documents are stored in the clear.
  std::filesystem::path encryption_keys;
  std::shared_ptr<const KeyRing> keys;
  std::size_t max_batch = 1024;     // writes per group commit
  std::size_t queue_limit = 16384;  // pending writes before back-pressure (503)
};

struct DeliveryConfig {
  int max_attempts = 10;
  Duration initial_backoff{std::chrono::seconds(30)};
  Duration max_backoff{std::chrono::minutes(30)};
  Duration give_up_after{std::chrono::hours(48)};
  Duration lease{std::chrono::minutes(5)};  // a 'sending' row is due again after this
  // How often an idle dispatcher looks for due work nothing woke it for.
  Duration poll_interval{std::chrono::seconds(1)};
};

// The referral office, as referring clinicians and pages name it.
struct OfficeConfig {
  std::string name = "Physician/Patient Referral Office";
  std::string phone;
  std::string fax;
  std::string pager;  // 24-hour line
  BusinessHours hours;
};

using SettingValue = std::variant<std::string, std::int64_t, bool, Duration, std::vector<std::string>>;

// One [[target]] table. Type-specific keys are validated against the key
// table of its type (LoadOptions::target_kinds); paths are already resolved
// relative to the configuration file, and "credential:NAME" to the systemd
// credential's file in $CREDENTIALS_DIRECTORY.
struct TargetConfig {
  std::string name;
  std::string type;
  int line = 0;
  unsigned concurrency = 4;
  Duration timeout{std::chrono::seconds(60)};
  std::map<std::string, SettingValue> settings;

  const std::string* get_string(const std::string& key) const;
  std::optional<std::int64_t> get_integer(const std::string& key) const;
  std::optional<bool> get_bool(const std::string& key) const;
  std::optional<Duration> get_duration(const std::string& key) const;
  const std::vector<std::string>* get_list(const std::string& key) const;
  // recipient = "referrer": the address or fax number comes from each
  // referral, and the target carries only the referrer's notices.
  bool to_referrer() const;
};

// [intake]: what intake does beside validation and the decision.
struct IntakeConfig {
  // A referral for a patient with an open referral received within this
  // window is marked a possible duplicate of it.
  Duration duplicate_window{std::chrono::hours(24 * 30)};
  // The key of the keyed hash that compares patients (resolved, may be a
  // credential); empty: derived as docs/closed-loop.md describes.
  std::filesystem::path identity_key;
  AttachmentLimits attachments;  // max_attachments, max_attachment_bytes, max_attachments_total_bytes
};

// The largest intake body the attachment limits allow: max_body_bytes for
// the referral itself, plus every file in base64 with MIME line breaks
// and a little for each one's title and multipart headers.
std::size_t upload_body_limit(std::size_t max_body_bytes, const AttachmentLimits& limits);

struct Config {
  std::filesystem::path file;  // the configuration file itself
  HttpConfig http;
  StorageConfig storage;
  std::filesystem::path rules_file;
  std::filesystem::path schema_dir;  // [paths] schemas
  std::filesystem::path web_dir;     // [paths] web
  DeliveryConfig delivery;
  OfficeConfig office;
  std::vector<TargetConfig> targets;
  std::vector<Route> routes;
  IntakeConfig intake;
  std::vector<EscalationLadder> escalations;  // [[escalation]]
  ClosedLoopConfig closed_loop;
  std::string log_level = "info";  // trace|debug|info|warn|error
};

struct Configuration {
  Config config;
  RuleSet rules;
};

// Where systemd looks for the file of a `LoadCredential=NAME` without a
// path, in its order: an operator's secrets live there (README.md).
inline const std::vector<std::filesystem::path> credential_stores = {"/etc/credstore", "/run/credstore",
                                                                     "/usr/lib/credstore"};

struct LoadOptions {
  // Where "credential:NAME" is looked for, in this order, when
  // $CREDENTIALS_DIRECTORY is not set: the first directory holding NAME
  // wins; none: nowhere (a problem). The daemon passes none. Tools run by
  // hand pass where the unit's credentials come from: --check-config
  // credential_stores, referralctl the running service's directory first
  // (cli/settings.hpp).
  std::vector<std::filesystem::path> credential_fallbacks;
  // The channels, in the order messages list them: the composition root
  // passes the adapters' registry (adapters/registry.hpp, target_kinds()).
  // Empty: a [[target]]'s name, type, concurrency and timeout are read, its
  // other keys neither judged nor kept (referralctl, which sends nothing).
  std::span<const TargetKind> target_kinds;
};

// Loads the configuration and the rules file it names; throws ConfigError
// with every problem of both. Start-up and --check-config both call this.
Configuration load_configuration(const std::filesystem::path& file, const LoadOptions& options = {});

// storage.encryption_keys alone, read and judged exactly as
// load_configuration reads it: for referralctl, which still needs the keys
// when another part of the configuration does not load (a target's
// credential it cannot read). Null when the setting is absent or has
// problems (added to `problems`).
std::shared_ptr<const KeyRing> load_encryption_keys(const std::filesystem::path& file, const LoadOptions& options,
                                                    std::vector<ConfigProblem>& problems);

// Parses configuration text (for tests); file_name appears in messages and
// relative paths resolve against its directory. Does not load rules.
Config parse_config(std::string_view toml_text, const std::filesystem::path& file_name,
                    const LoadOptions& options = {});

}  // namespace referrald
