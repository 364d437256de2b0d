#include "office/ack_link.hpp"

#include <algorithm>

#include "util/crypto.hpp"

namespace referrald {

AckToken new_ack_token() {
  const auto bytes = random_bytes(32);
  AckToken t;
  t.token = base64url(bytes.data(), bytes.size());
  t.hash = ack_token_hash(t.token);
  return t;
}

std::string ack_token_hash(std::string_view token) { return sha256_hex(token); }

bool is_ack_token(std::string_view text) noexcept {
  constexpr std::size_t chars = 43;  // 32 bytes in base64url without padding
  return text.size() == chars && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
         });
}

std::string ack_link(std::string_view origin, std::string_view token) {
  std::string out(origin);
  while (!out.empty() && out.back() == '/') out.pop_back();
  out += ack_path_prefix;
  out += token;
  return out;
}

}  // namespace referrald
