#include "http/csrf.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <cstdint>

#include "util/crypto.hpp"

namespace referrald::http {

namespace {

constexpr std::size_t time_chars = 16;
constexpr std::size_t browser_chars = 32;

bool is_lower_hex(std::string_view s) noexcept {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

}  // namespace

CsrfTokens::CsrfTokens() {
  const auto bytes = random_bytes(key_.size());
  std::copy(bytes.begin(), bytes.end(), key_.begin());
}

CsrfTokens::CsrfTokens(const std::array<unsigned char, 32>& key) : key_(key) {}

CsrfTokens::~CsrfTokens() { OPENSSL_cleanse(key_.data(), key_.size()); }

std::string CsrfTokens::new_browser() {
  const auto bytes = random_bytes(browser_chars / 2);
  return to_hex(bytes.data(), bytes.size());
}

std::string CsrfTokens::mac(std::string_view message) const {
  const auto digest = hmac_sha256(key_.data(), key_.size(), message);
  return to_hex(digest.data(), digest.size());
}

std::string CsrfTokens::issue(std::string_view browser, Clock::time_point now) const {
  const auto seconds = static_cast<std::uint64_t>(
      std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count()));
  std::array<unsigned char, 8> be{};
  for (std::size_t i = 0; i < be.size(); ++i) be[i] = static_cast<unsigned char>(seconds >> (56 - 8 * i));
  std::string message = to_hex(be.data(), be.size()) + std::string(browser);
  return message + mac(message);
}

std::optional<CsrfTokens::Verified> CsrfTokens::verify(std::string_view token, Clock::time_point now) const {
  if (token.size() != size || !is_lower_hex(token)) return std::nullopt;
  const auto message = token.substr(0, time_chars + browser_chars);
  const auto expected = mac(message);
  if (!constant_time_equal(reinterpret_cast<const unsigned char*>(expected.data()),
                           reinterpret_cast<const unsigned char*>(token.data() + message.size()), expected.size())) {
    return std::nullopt;
  }
  std::uint64_t seconds = 0;
  for (const char c : token.substr(0, time_chars)) {
    seconds = seconds * 16 + static_cast<std::uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
  }
  const auto issued = Clock::time_point(std::chrono::seconds(static_cast<std::int64_t>(seconds)));
  // Also refused: a time further ahead than a token lives (the clock was set back).
  const auto age = now - issued;
  if (age > lifetime || -age > lifetime) return std::nullopt;
  return Verified{std::string(token.substr(time_chars, browser_chars)), issued};
}

}  // namespace referrald::http
