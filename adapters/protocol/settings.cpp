#include "adapters/protocol/settings.hpp"

#include <algorithm>
#include <fstream>
#include <stdexcept>

namespace referrald::protocol {

namespace {}  // namespace

HostPort target_host_port(const TargetConfig& target, const std::string& key) {
  const std::string* text = target.get_string(key);
  if (text == nullptr) throw target_error(target, key, "missing");
  HostPort out;
  std::string_view port_text;
  if (!text->empty() && text->front() == '[') {
    const auto close = text->find(']');
    if (close == std::string::npos || close + 1 >= text->size() || (*text)[close + 1] != ':') {
      throw target_error(target, key, "expected \"host:port\", got \"" + *text + "\"");
    }
    out.host = text->substr(1, close - 1);
    port_text = std::string_view(*text).substr(close + 2);
  } else {
    const auto colon = text->rfind(':');
    if (colon == std::string::npos || colon == 0) {
      throw target_error(target, key, "expected \"host:port\", got \"" + *text + "\"");
    }
    out.host = text->substr(0, colon);
    port_text = std::string_view(*text).substr(colon + 1);
  }
  unsigned port = 0;
  for (const char c : port_text) {
    if (c < '0' || c > '9' || port > 65535) {
      port = 0;
      break;
    }
    port = port * 10 + static_cast<unsigned>(c - '0');
  }
  if (port == 0 || port > 65535) throw target_error(target, key, "port must be 1..65535, got \"" + *text + "\"");
  out.port = static_cast<std::uint16_t>(port);
  return out;
}

std::optional<std::string> read_secret(const TargetConfig& target, const std::string& key) {
  const std::string* path = target.get_string(key);
  if (path == nullptr) return std::nullopt;
  std::ifstream in(*path, std::ios::binary);
  std::string line;
  if (!in || !std::getline(in, line)) throw target_error(target, key, "cannot read " + *path);
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
  if (line.empty()) throw target_error(target, key, "" + *path + " is empty");
  return line;
}

Duration send_budget(Duration target_timeout) {
  const Duration margin = std::clamp<Duration>(target_timeout / 10, std::chrono::seconds(1), std::chrono::seconds(10));
  return std::max<Duration>(target_timeout - margin, target_timeout / 2);
}

}  // namespace referrald::protocol
