// One-tap acknowledgement links: the link an email or a fax cover carries,
// <closed_loop.link_origin>/ack/<token>. The token is 32 random bytes in
// base64url without padding; only its SHA-256 (hex) is stored
// (store::add_ack_token), so the database alone cannot make a working link.
#pragma once

#include <string>
#include <string_view>

namespace referrald {

// The path a link's token follows. The rest of such a path is a credential:
// the HTTP request log shows this prefix only.
inline constexpr std::string_view ack_path_prefix = "/ack/";

struct AckToken {
  std::string token;  // goes into the link, never into the store or a log
  std::string hash;   // ack_token_hash(token): what the store keeps
};

// A new, unguessable token. Throws if the system has no randomness.
AckToken new_ack_token();

// Whether text has a token's shape (43 characters of base64url): anything
// else in a link is unknown without a look in the store.
bool is_ack_token(std::string_view text) noexcept;

// The SHA-256 of the token's text, lower-case hex: how the store finds it.
std::string ack_token_hash(std::string_view token);

// "<origin>/ack/<token>" (a trailing "/" of the origin is not doubled).
std::string ack_link(std::string_view origin, std::string_view token);

}  // namespace referrald
