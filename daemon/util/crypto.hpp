// Small wrappers over OpenSSL for what referrald needs: hashes, an HMAC,
// constant-time comparison and random bytes.
#pragma once

#include <array>
#include <cstddef>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace referrald {

std::array<unsigned char, 32> sha256(std::string_view data);
std::string sha256_hex(std::string_view data);

// SHA-256 of data that arrives in pieces (a file written or read a line at
// a time), through OpenSSL's EVP digest.
class Sha256Stream {
 public:
  Sha256Stream();
  ~Sha256Stream();
  Sha256Stream(const Sha256Stream&) = delete;
  Sha256Stream& operator=(const Sha256Stream&) = delete;
  void update(std::string_view data);
  // Of everything so far; the digest goes on afterwards (a copy of the
  // context, some hundred bytes, is finished: the running state is kept).
  std::string hex();

 private:
  void* ctx_;  // EVP_MD_CTX, kept out of this header
};
// AES-256-GCM (OpenSSL EVP) with a 96-bit nonce and a 128-bit tag, the
// one authenticated cipher of the project: stored documents, attachments and
// notes (store/payload), the sealed spool of large bodies (util/sealed_spool).
// The additional data is the concatenation of `aad`'s pieces.
inline constexpr std::size_t aes_gcm_key_bytes = 32;
inline constexpr std::size_t aes_gcm_nonce_bytes = 12;
inline constexpr std::size_t aes_gcm_tag_bytes = 16;
// AES-256-GCM a piece at a time, for what is too large to hold whole (an
// attachment's file sealed into, or opened from, the database a block at a
// time): the same cipher text and tag as the whole-value functions below,
// which are written on these. GCM is a stream cipher: each piece's output
// is exactly as long as the piece.
class AesGcmSealer {
 public:
  AesGcmSealer(const unsigned char* key, const unsigned char* nonce, std::initializer_list<std::string_view> aad);
  ~AesGcmSealer();
  AesGcmSealer(const AesGcmSealer&) = delete;
  AesGcmSealer& operator=(const AesGcmSealer&) = delete;
  // Writes the ciphertext of `plain` (plain.size() bytes) to `out`.
  void update(std::string_view plain, unsigned char* out);
  // Writes the tag (aes_gcm_tag_bytes) to `out`; nothing may follow.
  void finish(unsigned char* out);

 private:
  void* ctx_;  // EVP_CIPHER_CTX, kept out of this header
};
class AesGcmOpener {
 public:
  AesGcmOpener(const unsigned char* key, const unsigned char* nonce, std::initializer_list<std::string_view> aad);
  ~AesGcmOpener();
  AesGcmOpener(const AesGcmOpener&) = delete;
  AesGcmOpener& operator=(const AesGcmOpener&) = delete;
  // Writes the plaintext of a piece of ciphertext to `out`: not to be
  // trusted, or let go, until finish() has said the tag matches.
  void update(std::string_view cipher, unsigned char* out);
  // Whether `tag` (aes_gcm_tag_bytes) matches everything given to update().
  bool finish(const unsigned char* tag);

 private:
  void* ctx_;
};

// Writes the ciphertext of `plain` and then the tag to `out`
// (plain.size() + aes_gcm_tag_bytes); throws std::runtime_error when OpenSSL fails.
void aes256_gcm_seal(const unsigned char* key, const unsigned char* nonce, std::initializer_list<std::string_view> aad,
                     std::string_view plain, unsigned char* out);
// Opens `sealed` (ciphertext, then the tag) into `out`
// (sealed.size() - aes_gcm_tag_bytes); false, with `out` wiped, when the tag
// does not match (altered bytes, another key, other additional data).
bool aes256_gcm_open(const unsigned char* key, const unsigned char* nonce, std::initializer_list<std::string_view> aad,
                     std::string_view sealed, unsigned char* out);

// HMAC-SHA-256 of `data` under `key` (OpenSSL); throws on failure.
std::array<unsigned char, 32> hmac_sha256(const unsigned char* key, std::size_t key_size, std::string_view data);
std::string to_hex(const unsigned char* data, std::size_t size);
// nullopt-free: returns false if `hex` is not exactly 2*N hex digits.
bool from_hex(std::string_view hex, unsigned char* out, std::size_t size);

// Compares without an early exit, so timing does not reveal a prefix.
bool constant_time_equal(const unsigned char* a, const unsigned char* b, std::size_t size) noexcept;

// Cryptographically secure random bytes (OpenSSL RAND_bytes); throws on failure.
std::vector<unsigned char> random_bytes(std::size_t n);

// Standard base64 (RFC 4648 section 4) with padding, on one line, through
// OpenSSL's encoder.
std::string base64(std::string_view data);

// Base64url (RFC 4648 section 5) without padding, through OpenSSL's encoder:
// text that may stand in a URL path as it is.
std::string base64url(const unsigned char* data, std::size_t size);

// Standard base64 (RFC 4648 section 4) back to bytes, through OpenSSL's
// decoder: padding and line breaks as MIME writes them are accepted; nullopt
// for any other character, or a length that is not whole.
std::optional<std::string> base64_decode(std::string_view text);

// HKDF-SHA-256 (RFC 5869, OpenSSL's EVP_KDF): `length` bytes derived from the
// input key material `ikm` for the purpose named by `info`. Throws on failure.
std::vector<unsigned char> hkdf_sha256(const unsigned char* ikm, std::size_t ikm_size, std::string_view salt,
                                       std::string_view info, std::size_t length);

}  // namespace referrald
