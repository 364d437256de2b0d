// What the configuration loader knows of a channel: its type name, the keys
// its [[target]] tables take and the checks only it understands. The loader
// knows no channel itself: the composition root hands it the adapters'
// registry (adapters/registry.hpp, target_kinds()) in LoadOptions.
#pragma once

#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

namespace referrald {

struct TargetConfig;
struct OfficeConfig;

enum class KeyKind {
  string,     // any non-empty string
  path,       // a file that must exist; resolved relative to the config file, or
              // "credential:NAME" for $CREDENTIALS_DIRECTORY/NAME (systemd LoadCredential=)
  directory,  // a directory (created at start if missing); resolved likewise
  integer,    // a non-negative integer
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

// A target setting a channel refuses. what(): target "NAME": KEY: MESSAGE
// (without "KEY: " when no one setting is to blame); the loader reports it
// as FILE:LINE: target[N].KEY: MESSAGE, at the key's line.
class TargetSettingError : public std::runtime_error {
 public:
  TargetSettingError(const TargetConfig& target, std::string key, std::string message);
  const std::string& key() const noexcept { return key_; }
  const std::string& message() const noexcept { return message_; }

 private:
  std::string key_;
  std::string message_;
};

inline TargetSettingError target_error(const TargetConfig& target, std::string key, std::string message) {
  return TargetSettingError(target, std::move(key), std::move(message));
}
inline TargetSettingError target_error(const TargetConfig& target, std::string message) {
  return TargetSettingError(target, "", std::move(message));
}

// `recipient = "referrer"`: the target's address or number comes from each
// referral (the referring clinician's), for the closed loop's notices. The
// channels that can reach a referrer (smtp, hylafax, spool) list this key.
inline constexpr std::string_view recipient_values[] = {"referrer"};
inline constexpr KeySpec recipient_key{"recipient", KeyKind::string, false, recipient_values};

// The most pages a fax target sends with the referral's files in them
// (adapters/document/fax_document.hpp): over it, the cover sheet and
// referral only. The fax channels (hylafax, http-fax) list this key.
inline constexpr KeySpec max_fax_pages_key{"max_fax_pages", KeyKind::integer, false};

// One channel, as the loader sees it.
struct TargetKind {
  std::string_view type;
  // Keys besides the common ones (name, type, concurrency, timeout).
  std::span<const KeySpec> keys;
  // Run once every key has been read and found well-formed: what only the
  // channel understands (a mailbox's syntax, settings that go together).
  // Throws TargetSettingError (or std::runtime_error) naming the problem.
  void (*check)(const TargetConfig& target, const OfficeConfig& office) = nullptr;
};

}  // namespace referrald
