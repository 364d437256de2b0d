#include "config/config.hpp"

#include <arpa/inet.h>
#include <libpq-fe.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <set>
#include <sstream>
#include <system_error>
#include <tuple>

#include <toml++/toml.h>

#include "config/config_keys.hpp"
#include "config/target_keys.hpp"
#include "config/toml_reader.hpp"
#include "util/crypto.hpp"
#include "util/dates.hpp"
#include "util/secret_file.hpp"
#include "util/strings.hpp"

namespace referrald {

namespace fs = std::filesystem;
using namespace config;

std::string ListenEndpoint::to_string() const {
  // Only an IPv6 literal contains a colon; it needs brackets to keep the port apart.
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

TargetSettingError::TargetSettingError(const TargetConfig& target, std::string key, std::string message)
    : std::runtime_error("target " + quote(target.name) + ": " + (key.empty() ? "" : key + ": ") + message),
      key_(std::move(key)),
      message_(std::move(message)) {}

namespace {

template <class T>
const T* find_setting(const std::map<std::string, SettingValue>& settings, const std::string& key) {
  const auto it = settings.find(key);
  return it == settings.end() ? nullptr : std::get_if<T>(&it->second);
}

}  // namespace

const std::string* TargetConfig::get_string(const std::string& key) const {
  return find_setting<std::string>(settings, key);
}

std::optional<std::int64_t> TargetConfig::get_integer(const std::string& key) const {
  const auto* v = find_setting<std::int64_t>(settings, key);
  return v ? std::optional{*v} : std::nullopt;
}

std::optional<bool> TargetConfig::get_bool(const std::string& key) const {
  const auto* v = find_setting<bool>(settings, key);
  return v ? std::optional{*v} : std::nullopt;
}

std::optional<Duration> TargetConfig::get_duration(const std::string& key) const {
  const auto* v = find_setting<Duration>(settings, key);
  return v ? std::optional{*v} : std::nullopt;
}

bool TargetConfig::to_referrer() const {
  const std::string* recipient = get_string("recipient");
  return recipient != nullptr && *recipient == "referrer";
}

const std::vector<std::string>* TargetConfig::get_list(const std::string& key) const {
  return find_setting<std::vector<std::string>>(settings, key);
}

namespace {

bool is_ipv4(const std::string& host) {
  in_addr addr{};
  return inet_pton(AF_INET, host.c_str(), &addr) == 1;
}

bool is_ipv6(const std::string& host) {
  in6_addr addr{};
  return inet_pton(AF_INET6, host.c_str(), &addr) == 1;
}

bool is_host_name(std::string_view host) {
  if (host.empty() || host.size() > 253 || host.front() == '-' || host.front() == '.') return false;
  return std::all_of(host.begin(), host.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
  });
}

enum class HostRule {
  ip_or_localhost,  // what the daemon binds: no name resolution at start-up
  any,              // a peer: a host name is fine
};

struct HostPort {
  std::string host;  // without brackets
  std::uint16_t port = 0;
};

// Either the parsed address or the message explaining what is wrong with it.
std::variant<HostPort, std::string> parse_host_port(std::string_view text, HostRule rule) {
  const std::string shape_error = R"(expected "host:port" with a port in 1..65535, got )" + quote(text);
  std::string host;
  std::string_view port_text;
  bool bracketed = false;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return shape_error;
    }
    host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
    bracketed = true;
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return shape_error;
    host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      return R"(expected an IPv6 address in brackets, e.g. "[::1]:8080", got )" + quote(text);
    }
  }
  if (port_text.empty() || port_text.size() > 5 ||
      !std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return shape_error;
  }
  unsigned long port = 0;
  for (const char c : port_text) port = port * 10 + static_cast<unsigned long>(c - '0');
  if (port < 1 || port > 65535) return shape_error;

  if (bracketed) {
    if (!is_ipv6(host)) return "expected an IPv6 address inside the brackets, got " + quote(text);
  } else if (rule == HostRule::ip_or_localhost) {
    if (host != "localhost" && !is_ipv4(host)) {
      return R"(expected the host to be an IP address or "localhost", got )" + quote(text);
    }
  } else if (!is_host_name(host)) {
    return "expected the host to be a host name or an IP address, got " + quote(text);
  }
  return HostPort{std::move(host), static_cast<std::uint16_t>(port)};
}

// A web origin as browsers send it in Origin ("https://host[:port]"),
// normalised (lower case, no default port); nullopt when it is not one.
std::optional<std::string> parse_origin(std::string_view text) {
  const std::string lowered = lower(text);
  std::string_view rest = lowered;
  std::string scheme;
  for (const char* s : {"http", "https"}) {
    if (rest.starts_with(std::string(s) + "://")) scheme = s;
  }
  if (scheme.empty()) return std::nullopt;
  rest.remove_prefix(scheme.size() + 3);
  std::string host;
  bool has_port = false;
  std::string_view port_text;
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string_view::npos || !is_ipv6(std::string(rest.substr(1, close - 1)))) return std::nullopt;
    host = std::string(rest.substr(0, close + 1));
    rest.remove_prefix(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      has_port = true;
      port_text = rest.substr(1);
    }
  } else {
    const auto colon = rest.find(':');
    host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) {
      has_port = true;
      port_text = rest.substr(colon + 1);
    }
    if (!is_host_name(host)) return std::nullopt;
  }
  std::string origin = scheme + "://" + host;
  if (has_port) {
    if (port_text.empty() || port_text.size() > 5 ||
        !std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::nullopt;
    }
    const auto port = std::stoul(std::string(port_text));
    if (port < 1 || port > 65535) return std::nullopt;
    if (!((scheme == "http" && port == 80) || (scheme == "https" && port == 443))) {
      origin += ":" + std::to_string(port);
    }
  }
  return origin;
}

// The origins of the listen addresses, when http.public_origins is not set.
std::vector<std::string> listen_origins(const HttpConfig& http) {
  const std::string scheme = http.tls_enabled() ? "https://" : "http://";
  const std::uint16_t default_port = http.tls_enabled() ? 443 : 80;
  std::vector<std::string> out;
  for (const auto& l : http.listen) {
    const std::string port = l.port == default_port ? "" : ":" + std::to_string(l.port);
    if (l.host == "localhost") {
      out.push_back(scheme + "localhost" + port);
      out.push_back(scheme + "127.0.0.1" + port);
    } else if (l.host.find(':') != std::string::npos) {
      out.push_back(scheme + "[" + l.host + "]" + port);
    } else {
      out.push_back(scheme + l.host + port);
    }
  }
  return out;
}

bool is_wildcard(const ListenEndpoint& l) { return l.host == "0.0.0.0" || l.host == "::"; }

// "HH:MM" as minutes since midnight; "24:00" only where the caller allows
// it (an office that closes at midnight).
std::optional<std::chrono::minutes> parse_time_of_day(std::string_view text, bool allow_midnight_end) {
  if (text.size() != 5 || text[2] != ':') return std::nullopt;
  for (const std::size_t i : {0u, 1u, 3u, 4u}) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
  }
  const int hh = (text[0] - '0') * 10 + (text[1] - '0');
  const int mm = (text[3] - '0') * 10 + (text[4] - '0');
  if (mm > 59) return std::nullopt;
  if (hh > 23 && !(allow_midnight_end && hh == 24 && mm == 0)) return std::nullopt;
  return std::chrono::minutes{hh * 60 + mm};
}

std::string format_time_of_day(std::chrono::minutes m) {
  const auto count = m.count();
  const auto two = [](long long v) { return (v < 10 ? "0" : "") + std::to_string(v); };
  return two(count / 60) + ":" + two(count % 60);
}

constexpr std::array<std::string_view, 7> day_names{"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
constexpr std::array<std::string_view, 3> decision_names{"accepted", "review", "declined"};
constexpr std::array<std::string_view, 3> urgency_names{"routine", "urgent", "emergent"};
constexpr std::array<std::string_view, 5> log_levels{"trace", "debug", "info", "warn", "error"};

// What a path setting must point at.
enum class PathCheck {
  file,              // an existing regular file (certificates, secrets, rules)
  directory,         // an existing directory (schemas, web)
  creatable_dir,     // a directory the daemon creates if missing (a spool)
  creatable_parent,  // a file whose directory the daemon creates if missing (the database)
};

// Whether a path setting may name a systemd credential ("credential:NAME").
enum class Secret { no, may_be_credential };

constexpr std::string_view credential_prefix = "credential:";

// What LoadCredential= accepts as an ID and what is safe to join to a directory.
bool is_credential_name(std::string_view name) {
  return !name.empty() && name.size() <= 255 && name != "." && name != ".." &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                  c == '.' || c == '@' || c == ':';
         });
}

class Loader : public TomlReader {
 public:
  Loader(const fs::path& file_name, const LoadOptions& options) : TomlReader(file_name.string()), options_(options) {
    std::error_code ec;
    const fs::path absolute = fs::absolute(file_name, ec);
    file_path_ = (ec ? file_name : absolute).lexically_normal();
    base_dir_ = file_path_.parent_path();
  }
  Config load(std::string_view text);
  std::shared_ptr<const KeyRing> load_encryption_keys(std::string_view text);

 private:
  fs::path resolve(std::string_view text) const;
  std::optional<fs::path> path_setting(std::string_view text, PathCheck check, Secret secret, Where at,
                                       const std::string& key);
  std::optional<fs::path> check_path(const fs::path& path, PathCheck check, Where at, const std::string& key);
  std::optional<fs::path> get_path(const Scope& scope, std::string_view name, PathCheck check, bool is_required = false,
                                   Secret secret = Secret::no);

  void read_http(const toml::table& root, HttpConfig& http);
  void read_listen(const toml::node& node, const std::string& key, std::vector<ListenEndpoint>& out);
  void read_storage(const toml::table& root, StorageConfig& storage);
  void read_postgresql(const Scope& scope, StorageConfig& storage);
  void read_encryption_keys(const Scope& scope, StorageConfig& storage);
  void read_rules(const toml::table& root, Config& config);
  void read_paths(const toml::table& root, Config& config);
  void read_delivery(const toml::table& root, DeliveryConfig& delivery);
  void read_log(const toml::table& root, std::string& level);
  void read_office(const toml::table& root, OfficeConfig& office);
  void read_targets(const toml::table& root, std::vector<TargetConfig>& targets);
  Duration lease_{std::chrono::minutes(5)};  // [delivery] lease, read before the targets
  OfficeConfig office_;                      // [office], read before the targets: channels' checks see it
  void read_target(const Scope& scope, TargetConfig& target);
  void read_target_setting(const Scope& scope, const KeySpec& spec, const std::string& type, TargetConfig& target);
  // Every target name the file defines, even one whose other settings are
  // wrong: it is still a name a route may use, and reporting it unknown as
  // well would only add noise.
  std::set<std::string, std::less<>> target_names(const toml::table& root,
                                                  const std::vector<TargetConfig>& targets) const;
  // scope[name]: a non-empty list of known target names; each unknown one,
  // and each the `allowed` test refuses, is reported.
  void read_notify(const Scope& scope, std::string_view name, const std::set<std::string, std::less<>>& names,
                   const std::function<std::optional<std::string>(const std::string&)>& refuse,
                   std::vector<std::string>& out);
  void read_routes(const toml::table& root, const std::vector<TargetConfig>& targets, std::vector<Route>& routes);
  void read_intake(const toml::table& root, IntakeConfig& intake);
  void read_escalations(const toml::table& root, const std::vector<TargetConfig>& targets,
                        std::vector<EscalationLadder>& ladders);
  void read_closed_loop(const toml::table& root, const Config& config, ClosedLoopConfig& loop);
  void read_key_hashes(const Scope& scope, std::string_view name, std::vector<Sha256>& out);

  // scope[name], a value or a non-empty list of them, each one of `known`
  // (a `what`, for the message) and parsed into `out`.
  template <class Parse, class T>
  void read_values(const Scope& scope, std::string_view name, std::string_view what,
                   std::span<const std::string_view> known, Parse parse_value, std::vector<T>& out) {
    const toml::node* node = scope.get(name);
    if (!node) return;
    const std::string key = scope.key(name);
    const auto list = string_list(*node, key, true);
    if (!list) return;
    if (list->empty()) {
      add(Where(*node), key, "expected at least one " + std::string(what));
      return;
    }
    for (const auto& [text, element] : *list) {
      if (const auto value = parse_value(text)) {
        out.push_back(*value);
      } else {
        add(Where(*element), key, "unknown " + std::string(what) + " " + quote(text) + " (known: " + join(known) + ")");
      }
    }
  }

  LoadOptions options_;
  fs::path file_path_;  // absolute
  fs::path base_dir_;   // relative paths resolve here
};

fs::path Loader::resolve(std::string_view text) const {
  fs::path path{text};
  if (path.is_relative()) path = base_dir_ / path;
  return path.lexically_normal();
}

std::optional<fs::path> Loader::check_path(const fs::path& path, PathCheck check, Where at, const std::string& key) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  const bool exists = fs::exists(status);
  switch (check) {
    case PathCheck::file:
      if (!exists) {
        add(at, key, "file not found: " + path.string());
        return std::nullopt;
      }
      if (!fs::is_regular_file(status)) {
        add(at, key, "not a regular file: " + path.string());
        return std::nullopt;
      }
      return path;
    case PathCheck::directory:
      if (!exists) {
        add(at, key, "directory not found: " + path.string());
        return std::nullopt;
      }
      if (!fs::is_directory(status)) {
        add(at, key, "not a directory: " + path.string());
        return std::nullopt;
      }
      return path;
    case PathCheck::creatable_dir:
    case PathCheck::creatable_parent: {
      if (exists) {
        if (check == PathCheck::creatable_dir && !fs::is_directory(status)) {
          add(at, key, "not a directory: " + path.string());
          return std::nullopt;
        }
        if (check == PathCheck::creatable_parent && fs::is_directory(status)) {
          add(at, key, "is a directory: " + path.string());
          return std::nullopt;
        }
        return path;
      }
      // Nothing is created here (--check-config must not change the
      // system); it is enough that the nearest existing ancestor is a
      // directory the daemon could create the rest in.
      fs::path ancestor = path.parent_path();
      while (!ancestor.empty() && !fs::exists(ancestor, ec) && ancestor != ancestor.root_path()) {
        ancestor = ancestor.parent_path();
      }
      if (!ancestor.empty() && fs::exists(ancestor, ec) && !fs::is_directory(ancestor, ec)) {
        add(at, key, "cannot be created: " + ancestor.string() + " is not a directory");
        return std::nullopt;
      }
      return path;
    }
  }
  return path;
}

std::optional<fs::path> Loader::get_path(const Scope& scope, std::string_view name, PathCheck check, bool is_required,
                                         Secret secret) {
  const toml::node* node = is_required ? required(scope, name) : scope.get(name);
  if (!node) return std::nullopt;
  const auto text = string_value(*node, scope.key(name));
  if (!text) return std::nullopt;
  return path_setting(*text, check, secret, Where(*node), scope.key(name));
}

// A path relative to the configuration file, or where secrets live,
// "credential:NAME": the file systemd's LoadCredential= put in
// $CREDENTIALS_DIRECTORY (readable by this service only, never on a disk it
// could be copied from by accident).
std::optional<fs::path> Loader::path_setting(std::string_view text, PathCheck check, Secret secret, Where at,
                                             const std::string& key) {
  if (!text.starts_with(credential_prefix)) return check_path(resolve(text), check, at, key);
  if (secret != Secret::may_be_credential) {
    add(at, key,
        "a credential can stand only for a secret file (password_file, security_code_file, ca_file, "
        "http.tls_certificate, http.tls_private_key, storage.encryption_keys), got " +
            quote(text));
    return std::nullopt;
  }
  const std::string_view name = text.substr(credential_prefix.size());
  if (!is_credential_name(name)) {
    add(at, key,
        R"(expected a credential name after "credential:" (letters, digits, ".", "_", "-", "@", ":"), got )" +
            quote(text));
    return std::nullopt;
  }
  const char* variable = std::getenv("CREDENTIALS_DIRECTORY");
  const std::vector<fs::path> directories = variable != nullptr && variable[0] != '\0'
                                                ? std::vector<fs::path>{fs::path(variable)}
                                                : options_.credential_fallbacks;
  if (directories.empty()) {
    add(at, key,
        "credential " + quote(name) +
            " requested but $CREDENTIALS_DIRECTORY is not set (run under systemd with LoadCredential=" +
            std::string(name) + ")");
    return std::nullopt;
  }
  std::string looked;
  for (const auto& directory : directories) {
    const fs::path path = (directory / fs::path(name)).lexically_normal();
    std::error_code ec;
    if (fs::exists(fs::status(path, ec))) return check_path(path, check, at, key);
    looked += (looked.empty() ? "" : ", ") + path.string();
    // Not "not found" when it could not be looked for (/etc/credstore is root's).
    if (ec && ec != std::errc::no_such_file_or_directory) looked += " (" + ec.message() + ")";
  }
  add(at, key, "credential not found: " + looked);
  return std::nullopt;
}

void Loader::read_listen(const toml::node& node, const std::string& key, std::vector<ListenEndpoint>& out) {
  const auto list = string_list(node, key, true);
  if (!list) return;
  if (list->empty()) {
    add(Where(node), key, "expected at least one address");
    return;
  }
  for (const auto& [text, element] : *list) {
    auto parsed = parse_host_port(text, HostRule::ip_or_localhost);
    if (auto* message = std::get_if<std::string>(&parsed)) {
      add(Where(*element), key, std::move(*message));
    } else {
      auto& hp = std::get<HostPort>(parsed);
      out.push_back({std::move(hp.host), hp.port});
    }
  }
}

void Loader::read_http(const toml::table& root, HttpConfig& http) {
  const Scope scope = section(root, "http");
  check_keys(scope, config_keys::http);

  if (const toml::node* listen = scope.get("listen")) {
    read_listen(*listen, scope.key("listen"), http.listen);
  } else {
    http.listen.push_back({"127.0.0.1", 8080});  // loopback only unless asked otherwise
  }

  // An empty string leaves TLS off, as the documented template has it.
  const auto tls_file = [&](std::string_view name, fs::path& out) -> const toml::node* {
    const toml::node* node = scope.get(name);
    if (!node) return nullptr;
    if (const auto* s = node->as_string(); s && s->get().empty()) return nullptr;
    if (auto path = get_path(scope, name, PathCheck::file, false, Secret::may_be_credential)) {
      out = std::move(*path);
    }
    return node;
  };
  const toml::node* certificate = tls_file("tls_certificate", http.tls_certificate);
  const toml::node* private_key = tls_file("tls_private_key", http.tls_private_key);
  if (certificate && !private_key) {
    add(Where(*certificate), scope.key("tls_private_key"), "required when http.tls_certificate is set");
  } else if (private_key && !certificate) {
    add(Where(*private_key), scope.key("tls_certificate"), "required when http.tls_private_key is set");
  }

  read_key_hashes(scope, "api_keys", http.api_keys);
  read_key_hashes(scope, "office_api_keys", http.office_api_keys);
  for (const Sha256& office_key : http.office_api_keys) {
    if (std::find(http.api_keys.begin(), http.api_keys.end(), office_key) != http.api_keys.end()) {
      add(Where(*scope.get("office_api_keys")), scope.key("office_api_keys"),
          "a key is in both http.api_keys and http.office_api_keys: give each key one scope");
      break;
    }
  }

  read_integer(scope, "max_body_bytes", 1024, 16 * 1024 * 1024, http.max_body_bytes);
  read_integer(scope, "max_header_bytes", 1024, 1024 * 1024, http.max_header_bytes);
  read_integer(scope, "max_connections", 1, 100000, http.max_connections);
  read_integer(scope, "max_connections_per_client", 1, 100000, http.max_connections_per_client);
  read_integer(scope, "threads", 1, 256, http.threads);
  read_duration(scope, "read_timeout", http.read_timeout);
  read_duration(scope, "write_timeout", http.write_timeout);
  read_duration(scope, "idle_timeout", http.idle_timeout);
  read_integer(scope, "rate_limit_per_minute", 0, 1000000, http.rate_limit_per_minute);
  read_integer(scope, "rate_limit_burst", 1, 1000000, http.rate_limit_burst);

  // After listen and TLS: the default is derived from both.
  if (const toml::node* node = scope.get("public_origins")) {
    const std::string key = scope.key("public_origins");
    if (const auto list = string_list(*node, key, true)) {
      if (list->empty()) add(Where(*node), key, "expected at least one origin");
      for (const auto& [text, element] : *list) {
        if (auto origin = parse_origin(text)) {
          http.public_origins.push_back(std::move(*origin));
        } else {
          add(Where(*element), key,
              R"(expected an origin like "https://referrals.example.org" or "http://127.0.0.1:8080" )"
              "(scheme, host, optional port; no path), got " +
                  quote(text));
        }
      }
    }
  } else if (const auto wildcard = std::find_if(http.listen.begin(), http.listen.end(), is_wildcard);
             wildcard != http.listen.end()) {
    const toml::node* listen = scope.get("listen");
    add(listen != nullptr ? Where(*listen) : Where{}, scope.key("public_origins"),
        "required when http.listen has a wildcard address (" + wildcard->to_string() +
            "): the form answers only at the origins browsers use to reach it");
  } else {
    http.public_origins = listen_origins(http);
  }
}

void Loader::read_key_hashes(const Scope& scope, std::string_view name, std::vector<Sha256>& out) {
  if (const toml::node* node = scope.get(name)) {
    const std::string key = scope.key(name);
    if (const auto* array = node->as_array()) {
      for (std::size_t i = 0; i < array->size(); ++i) {
        const toml::node& element = *array->get(i);
        const auto* s = element.as_string();
        constexpr std::string_view prefix = "sha256:";
        Sha256 digest{};
        if (!s || !s->get().starts_with(prefix) ||
            !from_hex(std::string_view(s->get()).substr(prefix.size()), digest.data(), digest.size())) {
          // The value is not echoed: a mistake here is often the token itself.
          add(Where(element), indexed(key, i),
              R"(expected "sha256:" followed by the 64 hex digits of the token's SHA-256)");
          continue;
        }
        out.push_back(digest);
      }
    } else {
      add(Where(*node), key, "expected an array of strings, got " + type_name(*node));
    }
  }
}

void Loader::read_storage(const toml::table& root, StorageConfig& storage) {
  const Scope scope = section(root, "storage");
  check_keys(scope, config_keys::storage);
  static constexpr std::string_view backends[] = {"sqlite", "postgresql"};
  if (const auto backend = get_enum(scope, "backend", "backend", backends); backend == "postgresql") {
    storage.backend = StorageBackend::postgresql;
  }
  if (storage.backend == StorageBackend::sqlite) {
    if (auto path = get_path(scope, "database", PathCheck::creatable_parent, true)) {
      storage.database = std::move(*path);
    }
    for (const std::string_view name : {"url", "password_file", "pool"}) {
      if (const toml::node* node = scope.get(name)) {
        add(Where(*node), scope.key(name), R"(only with backend = "postgresql")");
      }
    }
  } else {
    read_postgresql(scope, storage);
  }
  read_encryption_keys(scope, storage);
  read_integer(scope, "max_batch", 1, 100000, storage.max_batch);
  read_integer(scope, "queue_limit", 1, 10000000, storage.queue_limit);
}

// The server's URI is libpq's to read (PQconninfoParse). The password lives
// in password_file, never in the configuration; the URI is not echoed, since
// it could hold one, and neither are libpq's words when it refuses one: some
// of its messages quote the whole URI, password and all.
void Loader::read_postgresql(const Scope& scope, StorageConfig& storage) {
  if (const toml::node* node = scope.get("database")) {
    add(Where(*node), scope.key("database"), R"(only with backend = "sqlite" (PostgreSQL is named by url))");
  }
  if (const toml::node* node = required(scope, "url", R"(required with backend = "postgresql")")) {
    const std::string key = scope.key("url");
    if (auto text = string_value(*node, key)) {
      char* error = nullptr;
      PQconninfoOption* options = nullptr;
      if (!text->starts_with("postgresql://") && !text->starts_with("postgres://")) {
        add(Where(*node), key, "expected a URI starting with postgresql://");
      } else if ((options = PQconninfoParse(text->c_str(), &error)) == nullptr) {
        add(Where(*node), key,
            "is not a PostgreSQL URI libpq can read (postgresql://[user@]host[:port]/database[?param=value...])");
      } else {
        bool has_password = false;
        for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
          if (std::string_view(o->keyword) == "password" && o->val != nullptr) has_password = true;
        }
        if (has_password) {
          add(Where(*node), key, "must not contain a password (use password_file)");
        } else {
          storage.url = std::move(*text);
          storage.url_line = Where(*node).line;
        }
      }
      if (options != nullptr) PQconninfoFree(options);
      if (error != nullptr) PQfreemem(error);
    }
  }
  if (const toml::node* node = scope.get("password_file")) {
    if (auto path = get_path(scope, "password_file", PathCheck::file, false, Secret::may_be_credential)) {
      std::string problem;
      if (auto secret = read_secret_file(path->string(), "password_file ", &problem)) {
        storage.password_file = *path;
        storage.password = std::move(*secret);
      } else {
        add(Where(*node), scope.key("password_file"), problem);
      }
    }
  }
  read_integer(scope, "pool", 1, 256, storage.pool);
}

// The key file is read here, so --check-config and a reload judge it as
// start-up does, and a reload that brings a new key file brings its keys.
void Loader::read_encryption_keys(const Scope& scope, StorageConfig& storage) {
  const toml::node* node = scope.get("encryption_keys");
  if (!node) return;
  const std::string key = scope.key("encryption_keys");
  const auto text = string_value(*node, key);
  if (!text) return;
  const auto path = path_setting(*text, PathCheck::file, Secret::may_be_credential, Where(*node), key);
  if (!path) return;
  const auto privacy = text->starts_with(credential_prefix) ? KeyFilePrivacy::trusted : KeyFilePrivacy::owner_only;
  std::vector<KeyFileProblem> problems;
  storage.keys = read_key_file(*path, privacy, problems);
  for (const auto& problem : problems) {
    add(Where(*node), key, path->string() + (problem.line > 0 ? ":" : ": ") + problem.to_string());
  }
  if (storage.keys) storage.encryption_keys = *path;
}

void Loader::read_rules(const toml::table& root, Config& config) {
  const Scope scope = section(root, "rules");
  check_keys(scope, config_keys::rules);
  if (auto path = get_path(scope, "file", PathCheck::file, true)) config.rules_file = std::move(*path);
}

void Loader::read_paths(const toml::table& root, Config& config) {
  const Scope scope = section(root, "paths");
  check_keys(scope, config_keys::paths);
  // The defaults fit the source tree: config/ next to schemas/ and web/.
  const auto read = [&](std::string_view name, std::string_view fallback, fs::path& out) {
    if (scope.get(name)) {
      if (auto path = get_path(scope, name, PathCheck::directory)) out = std::move(*path);
    } else if (auto path = check_path(resolve(fallback), PathCheck::directory, 0, scope.key(name))) {
      out = std::move(*path);
    }
  };
  read("schemas", "../schemas", config.schema_dir);
  read("web", "../web", config.web_dir);
}

void Loader::read_delivery(const toml::table& root, DeliveryConfig& delivery) {
  const Scope scope = section(root, "delivery");
  check_keys(scope, config_keys::delivery);
  read_integer(scope, "max_attempts", 1, 1000, delivery.max_attempts);
  read_duration(scope, "initial_backoff", delivery.initial_backoff);
  read_duration(scope, "max_backoff", delivery.max_backoff);
  read_duration(scope, "give_up_after", delivery.give_up_after);
  read_duration(scope, "lease", delivery.lease);
  read_duration(scope, "poll_interval", delivery.poll_interval);
  if (delivery.max_backoff < delivery.initial_backoff) {
    // Point at whichever of the two the operator wrote; max_backoff if both.
    if (const toml::node* node = scope.get("max_backoff")) {
      add(Where(*node), scope.key("max_backoff"),
          "must not be less than delivery.initial_backoff (" + format_duration(delivery.initial_backoff) + "), got " +
              quote(format_duration(delivery.max_backoff)));
    } else if (const toml::node* initial = scope.get("initial_backoff")) {
      add(Where(*initial), scope.key("initial_backoff"),
          "must not exceed delivery.max_backoff (" + format_duration(delivery.max_backoff) + "), got " +
              quote(format_duration(delivery.initial_backoff)));
    }
  }
}

void Loader::read_log(const toml::table& root, std::string& level) {
  const Scope scope = section(root, "log");
  check_keys(scope, config_keys::log);
  if (auto value = get_enum(scope, "level", "level", log_levels)) level = std::move(*value);
}

void Loader::read_office(const toml::table& root, OfficeConfig& office) {
  const Scope scope = section(root, "office");
  check_keys(scope, config_keys::office);
  if (auto v = get_string(scope, "name")) office.name = std::move(*v);
  if (auto v = get_string(scope, "phone")) office.phone = std::move(*v);
  if (auto v = get_string(scope, "fax")) office.fax = std::move(*v);
  if (auto v = get_string(scope, "pager")) office.pager = std::move(*v);

  BusinessHours& hours = office.hours;
  if (const toml::node* node = scope.get("time_zone")) {
    if (auto zone = string_value(*node, scope.key("time_zone"))) {
      if (time_zone_exists(*zone)) {
        hours.time_zone = std::move(*zone);
      } else {
        add(Where(*node), scope.key("time_zone"), "unknown time zone " + quote(*zone));
      }
    }
  }

  if (const toml::node* node = scope.get("open_days")) {
    const std::string key = scope.key("open_days");
    if (const auto list = string_list(*node, key, false)) {
      std::array<bool, 7> days{};
      bool ok = true;
      for (const auto& [name, element] : *list) {
        const auto it = std::find(day_names.begin(), day_names.end(), name);
        if (it == day_names.end()) {
          add(Where(*element), key, "unknown day " + quote(name) + " (known: " + join(day_names) + ")");
          ok = false;
          continue;
        }
        // day_names starts on Monday; BusinessHours counts from Sunday.
        const auto monday_based = static_cast<std::size_t>(std::distance(day_names.begin(), it));
        days[(monday_based + 1) % 7] = true;
      }
      if (ok) hours.open_days = days;
    }
  }

  // True when the setting is absent (the default stands) or valid.
  const auto read_time = [&](std::string_view name, bool allow_midnight_end, std::chrono::minutes& out) {
    const toml::node* node = scope.get(name);
    if (!node) return true;
    const auto text = string_value(*node, scope.key(name));
    if (!text) return false;
    const auto time = parse_time_of_day(*text, allow_midnight_end);
    if (!time) {
      add(Where(*node), scope.key(name), R"(expected a time "HH:MM", got )" + quote(*text));
      return false;
    }
    out = *time;
    return true;
  };
  std::chrono::minutes opens = hours.opens;
  std::chrono::minutes closes = hours.closes;
  const bool opens_ok = read_time("opens", false, opens);
  const bool closes_ok = read_time("closes", true, closes);
  if (opens_ok && closes_ok) {
    if (closes <= opens) {
      const toml::node* node = scope.get("closes") ? scope.get("closes") : scope.get("opens");
      add(node ? Where(*node) : Where{scope.line}, scope.key("closes"),
          "must be after office.opens (" + format_time_of_day(opens) + "), got " + quote(format_time_of_day(closes)));
    } else {
      hours.opens = opens;
      hours.closes = closes;
    }
  }

  if (const toml::node* node = scope.get("holidays")) {
    const std::string key = scope.key("holidays");
    if (const auto* array = node->as_array()) {
      for (std::size_t i = 0; i < array->size(); ++i) {
        const toml::node& element = *array->get(i);
        // A bare TOML date (2026-12-25) is as clear as a quoted one.
        if (const auto* date = element.as_date()) {
          const toml::date d = date->get();
          const Date day{std::chrono::year{d.year}, std::chrono::month{d.month}, std::chrono::day{d.day}};
          hours.holidays.push_back(day);
        } else if (const auto* s = element.as_string()) {
          if (const auto day = parse_iso_date(s->get())) {
            hours.holidays.push_back(*day);
          } else {
            add(Where(element), key, R"(expected a date "YYYY-MM-DD", got )" + quote(s->get()));
          }
        } else {
          add(Where(element), indexed(key, i), R"(expected a date "YYYY-MM-DD", got )" + type_name(element));
        }
      }
    } else {
      add(Where(*node), key, "expected an array of dates, got " + type_name(*node));
    }
  }
}

void Loader::read_target_setting(const Scope& scope, const KeySpec& spec, const std::string& type,
                                 TargetConfig& target) {
  const toml::node* node =
      spec.required ? required(scope, spec.name, "required for type " + quote(type)) : scope.get(spec.name);
  if (!node) return;
  const std::string key = scope.key(spec.name);
  const std::string name{spec.name};
  const Where at = Where(*node);
  switch (spec.kind) {
    case KeyKind::string: {
      auto value = spec.allowed.empty() ? string_value(*node, key) : enum_value(*node, key, "value", spec.allowed);
      if (!value) return;
      target.settings[name] = std::move(*value);
      return;
    }
    case KeyKind::path:
    case KeyKind::directory: {
      const auto text = string_value(*node, key);
      if (!text) return;
      const bool file = spec.kind == KeyKind::path;
      // Files a target names are its secrets and CA bundles: a credential fits them.
      if (auto path = path_setting(*text, file ? PathCheck::file : PathCheck::creatable_dir,
                                   file ? Secret::may_be_credential : Secret::no, at, key)) {
        target.settings[name] = path->string();
      }
      return;
    }
    case KeyKind::integer: {
      if (const auto value = get_integer(scope, spec.name, 0, 1000000)) target.settings[name] = *value;
      return;
    }
    case KeyKind::boolean: {
      if (const auto value = get_bool(scope, spec.name)) target.settings[name] = *value;
      return;
    }
    case KeyKind::duration: {
      if (const auto value = duration_value(*node, key)) target.settings[name] = *value;
      return;
    }
    case KeyKind::string_list: {
      const auto list = string_list(*node, key, false);
      if (!list) return;
      if (list->empty()) {
        add(at, key, "expected at least one value");
        return;
      }
      std::vector<std::string> values;
      for (const auto& [value, element] : *list) values.push_back(value);
      target.settings[name] = std::move(values);
      return;
    }
    case KeyKind::host_port: {
      auto text = string_value(*node, key);
      if (!text) return;
      auto parsed = parse_host_port(*text, HostRule::any);
      if (auto* message = std::get_if<std::string>(&parsed)) {
        add(at, key, std::move(*message));
        return;
      }
      target.settings[name] = std::move(*text);
      return;
    }
    case KeyKind::url: {
      auto text = string_value(*node, key);
      if (!text) return;
      const auto separator = text->find("://");
      const std::string scheme = separator == std::string::npos ? "" : text->substr(0, separator);
      const std::string rest = separator == std::string::npos ? *text : text->substr(separator + 3);
      const std::string authority = rest.substr(0, rest.find('/'));
      // Secrets live in files, never in the configuration; and the URL is
      // not echoed, since it would print the password.
      if (authority.find('@') != std::string::npos) {
        add(at, key, "must not contain a user name or password (use username and password_file)");
        return;
      }
      const bool scheme_ok = separator != std::string::npos && (spec.allowed.empty() || contains(spec.allowed, scheme));
      if (!scheme_ok || authority.empty()) {
        std::vector<std::string> forms;
        for (const auto s : spec.allowed) forms.push_back(std::string(s) + "://");
        std::vector<std::string_view> views(forms.begin(), forms.end());
        add(at, key, "expected a URL starting with " + join(views, " or ") + ", got " + quote(*text));
        return;
      }
      target.settings[name] = std::move(*text);
      return;
    }
  }
}

bool is_target_name(std::string_view name) {
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.';
  });
}

void Loader::read_target(const Scope& scope, TargetConfig& target) {
  target.line = scope.line;
  if (const toml::node* node = required(scope, "name")) {
    if (auto name = string_value(*node, scope.key("name"))) {
      // Names end up in log fields, Message-IDs and HylaFAX job tags.
      if (is_target_name(*name)) {
        target.name = std::move(*name);
      } else {
        add(Where(*node), scope.key("name"), R"(expected letters, digits, ".", "_" or "-" only, got )" + quote(*name));
      }
    }
  }

  const std::size_t problems_before = problem_count();
  std::optional<std::string> type;
  const TargetKind* kind = nullptr;
  if (const toml::node* node = required(scope, "type")) {
    type = string_value(*node, scope.key("type"));
    const auto kinds = options_.target_kinds;
    const auto found = std::find_if(kinds.begin(), kinds.end(), [&](const TargetKind& k) { return type == k.type; });
    if (found != kinds.end()) {
      kind = &*found;
    } else if (type && !kinds.empty()) {
      std::vector<std::string_view> names;
      for (const auto& k : kinds) names.push_back(k.type);
      add(Where(*node), scope.key("type"), "unknown type " + quote(*type) + " (known: " + join(names) + ")");
      type.reset();
    }
  }
  read_integer(scope, "concurrency", 1, 64, target.concurrency);
  read_duration(scope, "timeout", target.timeout);
  // Without a known type the other keys cannot be judged; the type is the problem.
  if (!type) return;
  target.type = *type;
  // Loaded without the channels (referralctl, which sends nothing): the
  // type-specific keys are not judged, and not kept.
  if (!kind) return;

  std::vector<std::string_view> known(std::begin(config_keys::target_common), std::end(config_keys::target_common));
  for (const auto& spec : kind->keys) known.push_back(spec.name);
  check_keys(scope, known);
  for (const auto& spec : kind->keys) read_target_setting(scope, spec, *type, target);

  // What only the channel understands, once its keys are all well-formed.
  if (!kind->check || problem_count() != problems_before) return;
  try {
    kind->check(target, office_);
  } catch (const TargetSettingError& e) {
    const toml::node* node = e.key().empty() ? nullptr : scope.get(e.key());
    add(node ? Where(*node) : Where(scope.line), e.key().empty() ? scope.prefix : scope.key(e.key()), e.message());
  } catch (const std::exception& e) {
    add(Where(scope.line), scope.prefix, e.what());
  }
}

void Loader::read_targets(const toml::table& root, std::vector<TargetConfig>& targets) {
  const toml::array* array = array_of_tables(top_scope(root), "target");
  if (!array) return;
  std::map<std::string, int> first_line;
  for (std::size_t i = 0; i < array->size(); ++i) {
    const auto* table = array->get(i)->as_table();
    const Scope scope{table, indexed("target", i), Where(*table).line, false};
    TargetConfig target;
    read_target(scope, target);
    // A send that outlives its lease would let the dispatcher claim the same
    // delivery again while the first send is still running.
    if (target.timeout >= lease_) {
      const toml::node* node = scope.get("timeout");
      add(node != nullptr ? Where(*node) : Where(scope.line), scope.key("timeout"),
          "must be shorter than delivery.lease (" + format_duration(lease_) + "), got " +
              quote(format_duration(target.timeout)));
    }
    if (!target.name.empty()) {
      const auto [it, inserted] = first_line.emplace(target.name, target.line);
      if (!inserted) {
        add(Where(*scope.get("name")), scope.key("name"),
            "duplicate target name " + quote(target.name) + " (first defined at line " + std::to_string(it->second) +
                ")");
        continue;
      }
    }
    targets.push_back(std::move(target));
  }
}

std::set<std::string, std::less<>> Loader::target_names(const toml::table& root,
                                                        const std::vector<TargetConfig>& targets) const {
  std::set<std::string, std::less<>> names;
  for (const auto& t : targets) names.insert(t.name);
  if (const toml::array* target_tables = root.get("target") ? root.get("target")->as_array() : nullptr) {
    for (const auto& element : *target_tables) {
      if (const auto* table = element.as_table()) {
        if (const auto name = table->get_as<std::string>("name")) names.insert(name->get());
      }
    }
  }
  return names;
}

void Loader::read_notify(const Scope& scope, std::string_view name, const std::set<std::string, std::less<>>& names,
                         const std::function<std::optional<std::string>(const std::string&)>& refuse,
                         std::vector<std::string>& out) {
  const toml::node* notify = required(scope, name);
  if (!notify) return;
  const std::string key = scope.key(name);
  const auto list = string_list(*notify, key, true);
  if (!list) return;
  if (list->empty()) add(Where(*notify), key, "expected at least one target name");
  for (const auto& [target, element] : *list) {
    if (names.count(target) == 0) {
      add(Where(*element), key, "unknown target " + quote(target));
    } else if (auto why = refuse(target)) {
      add(Where(*element), key, "target " + quote(target) + " " + *why);
    } else {
      out.push_back(target);
    }
  }
}

namespace {

// A target that writes to the referring clinician carries only the
// referrer's notices; an office notification sent there would go to the
// wrong person.
std::function<std::optional<std::string>(const std::string&)> office_only(const std::vector<TargetConfig>& targets) {
  return [&targets](const std::string& name) -> std::optional<std::string> {
    const auto t = std::find_if(targets.begin(), targets.end(), [&](const TargetConfig& c) { return c.name == name; });
    if (t != targets.end() && t->to_referrer()) {
      return std::string(R"(has recipient = "referrer": it carries only the notices of closed_loop.notify)");
    }
    return std::nullopt;
  };
}

}  // namespace

void Loader::read_routes(const toml::table& root, const std::vector<TargetConfig>& targets,
                         std::vector<Route>& routes) {
  const toml::array* array = array_of_tables(top_scope(root), "route");
  if (!array) return;
  const auto names = target_names(root, targets);

  for (std::size_t i = 0; i < array->size(); ++i) {
    const auto* table = array->get(i)->as_table();
    const Scope scope{table, indexed("route", i), Where(*table).line, false};
    check_keys(scope, config_keys::route);
    Route route;

    if (const toml::node* when_node = scope.get("when")) {
      if (const auto* when_table = when_node->as_table()) {
        const Scope when{when_table, scope.key("when"), Where(*when_node).line, false};
        check_keys(when, config_keys::route_when);
        read_values(when, "decision", "decision", decision_names, parse_decision, route.decisions);
        read_values(when, "urgency", "urgency", urgency_names, parse_urgency, route.urgencies);
        route.after_hours = get_bool(when, "after_hours");
      } else {
        add(Where(*when_node), scope.key("when"), "expected a table, got " + type_name(*when_node));
      }
    }
    read_notify(scope, "notify", names, office_only(targets), route.notify);
    routes.push_back(std::move(route));
  }
}

void Loader::read_intake(const toml::table& root, IntakeConfig& intake) {
  const Scope scope = section(root, "intake");
  check_keys(scope, config_keys::intake);
  read_duration(scope, "duplicate_window", intake.duplicate_window);
  read_integer(scope, "max_attachments", 0, max_attachments_ceiling, intake.attachments.max_attachments);
  read_integer(scope, "max_attachment_bytes", 1024, std::int64_t{256} * 1024 * 1024,
               intake.attachments.max_attachment_bytes);
  read_integer(scope, "max_attachments_total_bytes", 1024, std::int64_t{1024} * 1024 * 1024,
               intake.attachments.max_total_bytes);
  if (auto path = get_path(scope, "identity_key", PathCheck::file, false, Secret::may_be_credential)) {
    intake.identity_key = std::move(*path);
  }
}

void Loader::read_escalations(const toml::table& root, const std::vector<TargetConfig>& targets,
                              std::vector<EscalationLadder>& ladders) {
  const toml::array* array = array_of_tables(top_scope(root), "escalation");
  if (!array) return;
  const auto names = target_names(root, targets);

  for (std::size_t i = 0; i < array->size(); ++i) {
    const auto* table = array->get(i)->as_table();
    const Scope scope{table, indexed("escalation", i), Where(*table).line, false};
    check_keys(scope, config_keys::escalation);
    EscalationLadder ladder;
    read_values(scope, "urgency", "urgency", urgency_names, parse_urgency, ladder.urgencies);
    if (const auto b = get_bool(scope, "business_hours")) ladder.business_hours = *b;

    const toml::node* steps_node = required(scope, "steps");
    const toml::array* steps = steps_node ? array_value(*steps_node, scope.key("steps")) : nullptr;
    if (steps && steps->empty()) add(Where(*steps_node), scope.key("steps"), "expected at least one step");
    for (std::size_t j = 0; steps && j < steps->size(); ++j) {
      const std::string key = indexed(scope.key("steps"), j);
      const auto step_scope = table_scope(*steps->get(j), key);
      if (!step_scope) continue;
      check_keys(*step_scope, config_keys::escalation_step);
      EscalationStep step;
      if (const toml::node* after = required(*step_scope, "after")) {
        if (const auto d = duration_value(*after, step_scope->key("after"))) {
          step.after = std::chrono::duration_cast<std::chrono::seconds>(*d);
          if (step.after < std::chrono::seconds(1)) {
            add(Where(*after), step_scope->key("after"), "must be at least 1s, got " + quote(format_duration(*d)));
          } else if (!ladder.steps.empty() && step.after <= ladder.steps.back().after) {
            add(Where(*after), step_scope->key("after"),
                "must be later than the step before it (" +
                    format_duration(std::chrono::duration_cast<Duration>(ladder.steps.back().after)) + "), got " +
                    quote(format_duration(*d)));
          }
        }
      }
      read_notify(*step_scope, "notify", names, office_only(targets), step.notify);
      ladder.steps.push_back(std::move(step));
    }
    ladders.push_back(std::move(ladder));
  }
}

void Loader::read_closed_loop(const toml::table& root, const Config& config, ClosedLoopConfig& loop) {
  const Scope scope = section(root, "closed_loop");
  if (!scope.table) return;
  check_keys(scope, config_keys::closed_loop);

  if (const toml::node* on = required(scope, "on")) {
    const std::string key = scope.key("on");
    if (const auto list = string_list(*on, key, true)) {
      for (const auto& [text, element] : *list) {
        const auto status = parse_office_status(text);
        if (!status || *status == OfficeStatus::received) {
          std::vector<std::string> known;
          for (const OfficeStatus s : all_office_statuses()) {
            if (s != OfficeStatus::received) known.emplace_back(to_string(s));
          }
          add(Where(*element), key, "unknown status " + quote(text) + " (known: " + join(known, ", ") + ")");
        } else if (std::find(loop.on.begin(), loop.on.end(), *status) == loop.on.end()) {
          loop.on.push_back(*status);
        }
      }
    }
  }
  const auto names = target_names(root, config.targets);
  read_notify(
      scope, "notify", names, [](const std::string&) { return std::optional<std::string>(); }, loop.notify);

  read_duration(scope, "ack_link_ttl", loop.ack_link_ttl);
  if (const toml::node* node = scope.get("link_origin")) {
    if (auto text = string_value(*node, scope.key("link_origin"))) {
      if (auto origin = parse_origin(*text)) {
        loop.link_origin = std::move(*origin);
      } else {
        add(Where(*node), scope.key("link_origin"),
            R"(expected an origin like "https://referrals.example.org" (scheme, host, optional port; no path), got )" +
                quote(*text));
      }
    }
  }
}

Config Loader::load(std::string_view text) {
  Config config;
  config.file = file_path_;
  const auto parsed = parse(text);
  if (!parsed) return config;
  const toml::table& root = *parsed;

  check_keys(top_scope(root), config_keys::top);
  read_http(root, config.http);
  read_storage(root, config.storage);
  read_rules(root, config);
  read_paths(root, config);
  read_delivery(root, config.delivery);
  read_log(root, config.log_level);
  read_office(root, config.office);
  lease_ = config.delivery.lease;
  office_ = config.office;
  read_targets(root, config.targets);
  read_routes(root, config.targets, config.routes);
  read_intake(root, config.intake);
  read_escalations(root, config.targets, config.escalations);
  read_closed_loop(root, config, config.closed_loop);
  config.http.max_upload_body_bytes = upload_body_limit(config.http.max_body_bytes, config.intake.attachments);
  if (config.closed_loop.link_origin.empty() && !config.http.public_origins.empty()) {
    config.closed_loop.link_origin = config.http.public_origins.front();
  }
  return config;
}

std::shared_ptr<const KeyRing> Loader::load_encryption_keys(std::string_view text) {
  const auto root = parse(text);
  if (!root) return nullptr;
  StorageConfig storage;
  read_encryption_keys(section(*root, "storage"), storage);
  return storage.keys;
}

}  // namespace

std::size_t upload_body_limit(std::size_t max_body_bytes, const AttachmentLimits& limits) {
  if (limits.max_attachments == 0) return max_body_bytes;
  std::size_t encoded = (limits.max_total_bytes + 2) / 3 * 4;
  encoded += encoded / 76 * 2;
  return max_body_bytes + encoded + limits.max_attachments * 1024;
}

Config parse_config(std::string_view toml_text, const fs::path& file_name, const LoadOptions& options) {
  Loader loader(file_name, options);
  Config config = loader.load(toml_text);
  if (auto problems = loader.sorted_problems(); !problems.empty()) throw ConfigError(std::move(problems));
  return config;
}

Configuration load_configuration(const fs::path& file, const LoadOptions& options) {
  const std::string text = read_file_text(file);
  Loader loader(file, options);
  Configuration result;
  result.config = loader.load(text);
  std::vector<ConfigProblem> problems = loader.sorted_problems();

  // rules_file is set only when the file exists; otherwise that is already a problem.
  if (!result.config.rules_file.empty()) {
    try {
      result.rules = load_rules(result.config.rules_file);
    } catch (const ConfigError& e) {
      problems.insert(problems.end(), e.problems().begin(), e.problems().end());
    } catch (const std::exception& e) {
      // --check-config must report, not crash, whatever the rules loader throws.
      problems.push_back({result.config.rules_file.string(), 0, "", e.what()});
    }
  }
  if (!problems.empty()) throw ConfigError(std::move(problems));
  return result;
}

std::shared_ptr<const KeyRing> load_encryption_keys(const fs::path& file, const LoadOptions& options,
                                                    std::vector<ConfigProblem>& problems) {
  try {
    Loader loader(file, options);
    auto keys = loader.load_encryption_keys(read_file_text(file));
    auto found = loader.sorted_problems();
    problems.insert(problems.end(), found.begin(), found.end());
    return found.empty() ? keys : nullptr;
  } catch (const ConfigError& e) {
    problems.insert(problems.end(), e.problems().begin(), e.problems().end());
    return nullptr;
  }
}

}  // namespace referrald
