// Target settings the line-protocol adapters (hylafax, snpp) share: where to
// connect, the secret a password_file holds, and the time a send may take.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "config/config.hpp"
#include "util/duration.hpp"

namespace referrald::protocol {

struct HostPort {
  std::string host;  // a name or a literal address; IPv6 without brackets
  std::uint16_t port = 0;
};

// "host:port" or "[v6]:port", as the config loader has already checked it;
// throws std::runtime_error naming the target otherwise.
HostPort target_host_port(const TargetConfig& target, const std::string& key);

// The first line of the file a key names (its line end removed); nullopt
// when the key is not set. Throws std::runtime_error naming the target and
// key when the file cannot be read or its first line is empty.
std::optional<std::string> read_secret(const TargetConfig& target, const std::string& key);

// How long one send may take: the target's timeout less a tenth (at least
// 1 s, at most 10 s), so the adapter ends the session cleanly and reports
// what it waited for before the dispatcher's own deadline cuts it off.
Duration send_budget(Duration target_timeout);

}  // namespace referrald::protocol
