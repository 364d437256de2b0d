// The keys each target type accepts. One table, checked by the config loader;
// adapters read the validated values from TargetConfig::settings.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace referrald {

enum class KeyKind {
  string,       // any non-empty string
  path,         // a file that must exist; resolved relative to the config file, or
                // "credential:NAME" for $CREDENTIALS_DIRECTORY/NAME (systemd LoadCredential=)
  directory,    // a directory (created at start if missing); resolved likewise
  integer,      // a non-negative integer
  boolean,
  duration,     // "30s"
  string_list,  // array of non-empty strings
  host_port,    // "host:port"
  url,          // scheme://...
};

struct KeySpec {
  std::string_view name;
  KeyKind kind;
  bool required;
  // string: the only values accepted (empty: any); url: the schemes accepted.
  std::span<const std::string_view> allowed{};
};

// Known types, in the order shown in messages: smtp, hylafax, http-fax, snpp, wctp, spool.
const std::vector<std::string>& known_target_types();

// Keys accepted by a type besides the common ones (name, type, concurrency,
// timeout); empty for an unknown type.
std::span<const KeySpec> target_keys(std::string_view type);

}  // namespace referrald
