#include "office/ack_link.hpp"

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

std::string ack_link(std::string_view origin, std::string_view token) {
  std::string out(origin);
  while (!out.empty() && out.back() == '/') out.pop_back();
  out += "/ack/";
  out += token;
  return out;
}

}  // namespace referrald
