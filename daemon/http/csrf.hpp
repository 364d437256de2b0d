// The web form's CSRF tokens, bound to this server: a token is
//   16 hex digits   its issue time (Unix seconds)
//   32 hex digits   the browser's id (128 random bits, kept while the cookie is)
//   64 hex digits   HMAC-SHA-256 of both under a key made at start
// so only this process can make one, and one it made says when. The key is
// kept for the life of the process (a SIGHUP keeps it; a restart makes a new
// one, and forms opened before it are refused with the "open a new form" page).
#pragma once

#include <array>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace referrald::http {

class CsrfTokens {
 public:
  using Clock = std::chrono::system_clock;
  // How long a token is accepted after it was issued.
  static constexpr std::chrono::seconds lifetime{std::chrono::hours(12)};
  // GET / issues the cookie again (same browser id, new time) once it is this
  // old, so a form rendered now can be sent for at least lifetime − this.
  static constexpr std::chrono::seconds refresh_after{std::chrono::hours(4)};
  static constexpr std::size_t size = 16 + 32 + 64;

  CsrfTokens();  // a random key
  explicit CsrfTokens(const std::array<unsigned char, 32>& key);
  ~CsrfTokens();  // wipes the key
  CsrfTokens(const CsrfTokens&) = delete;
  CsrfTokens& operator=(const CsrfTokens&) = delete;

  // A new browser id (32 hex digits).
  static std::string new_browser();
  std::string issue(std::string_view browser, Clock::time_point now) const;

  struct Verified {
    std::string browser;
    Clock::time_point issued;
  };
  // The token's browser and issue time when this process made it and it is
  // within its lifetime at `now`; nullopt otherwise (malformed, forged,
  // from before a restart, expired). Compares the HMAC in constant time.
  std::optional<Verified> verify(std::string_view token, Clock::time_point now) const;

 private:
  std::string mac(std::string_view message) const;
  std::array<unsigned char, 32> key_{};
};

}  // namespace referrald::http
