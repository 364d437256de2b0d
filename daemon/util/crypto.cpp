#include "util/crypto.hpp"

#include "util/base64_decoder.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <memory>
#include <stdexcept>

namespace referrald {

std::array<unsigned char, 32> sha256(std::string_view data) {
  std::array<unsigned char, 32> out{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1 || len != out.size()) {
    throw std::runtime_error("SHA-256 failed");
  }
  return out;
}

std::array<unsigned char, 32> hmac_sha256(const unsigned char* key, std::size_t key_size, std::string_view data) {
  std::array<unsigned char, 32> out{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key, static_cast<int>(key_size), reinterpret_cast<const unsigned char*>(data.data()),
           data.size(), out.data(), &len) == nullptr ||
      len != out.size()) {
    throw std::runtime_error("HMAC-SHA-256 failed");
  }
  return out;
}

std::string to_hex(const unsigned char* data, std::size_t size) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (std::size_t i = 0; i < size; ++i) {
    out += digits[data[i] >> 4];
    out += digits[data[i] & 15];
  }
  return out;
}

std::string sha256_hex(std::string_view data) {
  const auto h = sha256(data);
  return to_hex(h.data(), h.size());
}

Sha256Stream::Sha256Stream() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr || EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr) != 1) {
    EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_));
    throw std::runtime_error("SHA-256 failed");
  }
}

Sha256Stream::~Sha256Stream() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void Sha256Stream::update(std::string_view data) {
  if (EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data.data(), data.size()) != 1) {
    throw std::runtime_error("SHA-256 failed");
  }
}

std::string Sha256Stream::hex() {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> copy(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  std::array<unsigned char, 32> out{};
  unsigned int len = 0;
  if (!copy || EVP_MD_CTX_copy_ex(copy.get(), static_cast<EVP_MD_CTX*>(ctx_)) != 1 ||
      EVP_DigestFinal_ex(copy.get(), out.data(), &len) != 1 || len != out.size()) {
    throw std::runtime_error("SHA-256 failed");
  }
  return to_hex(out.data(), out.size());
}

namespace {

int length(std::size_t n) { return static_cast<int>(n); }
const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }
EVP_CIPHER_CTX* cipher(void* ctx) { return static_cast<EVP_CIPHER_CTX*>(ctx); }

// A GCM context keyed, with its nonce and the additional data taken in;
// throws (the context freed) when OpenSSL fails.
void* start_gcm(bool encrypt, const unsigned char* key, const unsigned char* nonce,
                std::initializer_list<std::string_view> aad) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int n = 0;
  bool ok = ctx != nullptr &&
            EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), nullptr, nullptr, nullptr, encrypt ? 1 : 0) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, length(aes_gcm_nonce_bytes), nullptr) == 1 &&
            EVP_CipherInit_ex(ctx, nullptr, nullptr, key, nonce, encrypt ? 1 : 0) == 1;
  for (const auto piece : aad) ok = ok && EVP_CipherUpdate(ctx, nullptr, &n, bytes(piece), length(piece.size())) == 1;
  if (!ok) {
    EVP_CIPHER_CTX_free(ctx);
    throw std::runtime_error(encrypt ? "AES-256-GCM encryption failed" : "AES-256-GCM decryption failed");
  }
  return ctx;
}

// EVP_CipherUpdate takes an int length: a piece at a time.
bool cipher_update(void* ctx, std::string_view in, unsigned char* out) {
  constexpr std::size_t most = std::size_t{1} << 30;
  for (std::size_t at = 0; at < in.size(); at += most) {
    const auto piece = in.substr(at, most);
    int n = 0;
    if (EVP_CipherUpdate(cipher(ctx), out + at, &n, bytes(piece), length(piece.size())) != 1 ||
        static_cast<std::size_t>(n) != piece.size()) {
      return false;
    }
  }
  return true;
}

}  // namespace

AesGcmSealer::AesGcmSealer(const unsigned char* key, const unsigned char* nonce,
                           std::initializer_list<std::string_view> aad)
    : ctx_(start_gcm(true, key, nonce, aad)) {}

AesGcmSealer::~AesGcmSealer() { EVP_CIPHER_CTX_free(cipher(ctx_)); }

void AesGcmSealer::update(std::string_view plain, unsigned char* out) {
  if (!cipher_update(ctx_, plain, out)) throw std::runtime_error("AES-256-GCM encryption failed");
}

void AesGcmSealer::finish(unsigned char* out) {
  int n = 0;
  std::array<unsigned char, 16> rest{};  // GCM writes nothing here
  if (EVP_EncryptFinal_ex(cipher(ctx_), rest.data(), &n) != 1 || n != 0 ||
      EVP_CIPHER_CTX_ctrl(cipher(ctx_), EVP_CTRL_GCM_GET_TAG, length(aes_gcm_tag_bytes), out) != 1) {
    throw std::runtime_error("AES-256-GCM encryption failed");
  }
}

AesGcmOpener::AesGcmOpener(const unsigned char* key, const unsigned char* nonce,
                           std::initializer_list<std::string_view> aad)
    : ctx_(start_gcm(false, key, nonce, aad)) {}

AesGcmOpener::~AesGcmOpener() { EVP_CIPHER_CTX_free(cipher(ctx_)); }

void AesGcmOpener::update(std::string_view sealed, unsigned char* out) {
  if (!cipher_update(ctx_, sealed, out)) throw std::runtime_error("AES-256-GCM decryption failed");
}

bool AesGcmOpener::finish(const unsigned char* tag) {
  // OpenSSL takes the expected tag through a non-const pointer.
  std::array<unsigned char, aes_gcm_tag_bytes> expected{};
  std::copy_n(tag, expected.size(), expected.begin());
  std::array<unsigned char, 16> rest{};
  int n = 0;
  return EVP_CIPHER_CTX_ctrl(cipher(ctx_), EVP_CTRL_GCM_SET_TAG, length(expected.size()), expected.data()) == 1 &&
         EVP_DecryptFinal_ex(cipher(ctx_), rest.data(), &n) == 1 && n == 0;
}

void aes256_gcm_seal(const unsigned char* key, const unsigned char* nonce, std::initializer_list<std::string_view> aad,
                     std::string_view plain, unsigned char* out) {
  AesGcmSealer sealer(key, nonce, aad);
  sealer.update(plain, out);
  sealer.finish(out + plain.size());
}

bool aes256_gcm_open(const unsigned char* key, const unsigned char* nonce, std::initializer_list<std::string_view> aad,
                     std::string_view sealed, unsigned char* out) {
  if (sealed.size() < aes_gcm_tag_bytes) return false;
  const std::size_t plain = sealed.size() - aes_gcm_tag_bytes;
  bool ok = false;
  try {
    AesGcmOpener opener(key, nonce, aad);
    opener.update(sealed.substr(0, plain), out);
    ok = opener.finish(bytes(sealed) + plain);
  } catch (const std::runtime_error&) {
    ok = false;
  }
  // The plaintext is released only once the tag has been checked.
  if (!ok) OPENSSL_cleanse(out, plain);
  return ok;
}

bool from_hex(std::string_view hex, unsigned char* out, std::size_t size) {
  if (hex.size() != size * 2) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < size; ++i) {
    const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<unsigned char>((hi << 4) | lo);
  }
  return true;
}

bool constant_time_equal(const unsigned char* a, const unsigned char* b, std::size_t size) noexcept {
  return CRYPTO_memcmp(a, b, size) == 0;
}

std::vector<unsigned char> random_bytes(std::size_t n) {
  std::vector<unsigned char> out(n);
  if (RAND_bytes(out.data(), static_cast<int>(n)) != 1) {
    throw std::runtime_error("RAND_bytes failed");
  }
  return out;
}

std::string base64(std::string_view data) {
  // EVP_EncodeBlock takes an int: 3 MB at a time (a multiple of 3 bytes, so
  // the pieces join into one text).
  constexpr std::size_t block = 3 * 1024 * 1024;
  std::string out;
  out.reserve(4 * ((data.size() + 2) / 3) + 1);
  std::size_t at = 0;
  do {
    const auto piece = data.substr(at, block);
    const auto start = out.size();
    out.resize(start + 4 * ((piece.size() + 2) / 3) + 1);
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data() + start),
                                  reinterpret_cast<const unsigned char*>(piece.data()), static_cast<int>(piece.size()));
    if (n < 0) throw std::runtime_error("base64 encoding failed");
    out.resize(start + static_cast<std::size_t>(n));
    at += piece.size();
  } while (at < data.size());
  return out;
}

std::string base64url(const unsigned char* data, std::size_t size) {
  std::string out = base64(std::string_view(reinterpret_cast<const char*>(data), size));
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return out;
}

Base64Decoder::Base64Decoder() : ctx_(EVP_ENCODE_CTX_new()) {
  if (ctx_ == nullptr) throw std::runtime_error("EVP_ENCODE_CTX_new failed");
  EVP_DecodeInit(static_cast<EVP_ENCODE_CTX*>(ctx_));
}

Base64Decoder::~Base64Decoder() { EVP_ENCODE_CTX_free(static_cast<EVP_ENCODE_CTX*>(ctx_)); }

bool Base64Decoder::update(std::string_view text, const std::function<void(std::string_view)>& out) {
  // EVP_DecodeUpdate takes an int length and writes at most 3/4 of what it
  // is given plus what it held back (under 80 characters): fed in pieces
  // through a buffer of a fixed size.
  constexpr std::size_t piece = 48 * 1024;
  std::array<unsigned char, 3 * (piece + 80) / 4> buffer{};
  std::string input;
  for (std::size_t at = 0; at < text.size() && !failed_ && !stopped_; at += piece) {
    std::string_view part = text.substr(at, piece);
    // OpenSSL keeps no state between calls for a group it has decoded: after
    // one that ended in padding ("QUI=", "QQ=="), a call that goes on with
    // more base64 would start afresh and take it, where one call over the
    // whole text refuses it. That group is fed again ahead of the piece
    // (its bytes were handed out already; nothing else may follow it), so
    // that the pieces are read as the whole text is.
    const std::string_view padded = padding_ == 1 ? "QUI=" : padding_ == 2 ? "QQ==" : "";
    if (!padded.empty()) {
      input.assign(padded);
      input.append(part);
      part = input;
    }
    int n = 0;
    const int rv =
        EVP_DecodeUpdate(static_cast<EVP_ENCODE_CTX*>(ctx_), buffer.data(), &n, bytes(part), length(part.size()));
    if (rv < 0) {
      failed_ = true;
      break;
    }
    if (n > 0 && padded.empty()) {
      out(std::string_view(reinterpret_cast<const char*>(buffer.data()), static_cast<std::size_t>(n)));
    }
    padding_ = 0;
    if (rv == 0 && part.find('-') != std::string_view::npos) {
      stopped_ = true;  // the end marker: one call reads nothing after it, nor do the pieces
    } else if (rv == 0) {
      // Ended on padding (and perhaps line breaks after it): how much.
      for (std::size_t k = part.size(); k > 0 && padding_ < 3; --k) {
        const char c = part[k - 1];
        if (c == '=') {
          ++padding_;
        } else if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
          break;
        }
      }
    }
  }
  return !failed_;
}

bool Base64Decoder::finish(const std::function<void(std::string_view)>& out) {
  if (failed_) return false;
  std::array<unsigned char, 96> buffer{};
  int n = 0;
  if (EVP_DecodeFinal(static_cast<EVP_ENCODE_CTX*>(ctx_), buffer.data(), &n) != 1) {
    failed_ = true;
    return false;
  }
  if (n > 0) out(std::string_view(reinterpret_cast<const char*>(buffer.data()), static_cast<std::size_t>(n)));
  return true;
}

std::optional<std::string> base64_decode(std::string_view text) {
  std::string decoded;
  decoded.reserve(3 * (text.size() / 4) + 3);
  const auto append = [&decoded](std::string_view bytes) { decoded.append(bytes); };
  Base64Decoder decoder;
  if (!decoder.update(text, append) || !decoder.finish(append)) return std::nullopt;
  return decoded;
}

std::vector<unsigned char> hkdf_sha256(const unsigned char* ikm, std::size_t ikm_size, std::string_view salt,
                                       std::string_view info, std::size_t length) {
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  if (kdf == nullptr) throw std::runtime_error("HKDF is not available");
  EVP_KDF_CTX* ctx = EVP_KDF_CTX_new(kdf);
  EVP_KDF_free(kdf);
  if (ctx == nullptr) throw std::runtime_error("HKDF failed");
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<unsigned char*>(ikm), ikm_size),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<char*>(salt.data()), salt.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<char*>(info.data()), info.size()),
      OSSL_PARAM_construct_end()};
  std::vector<unsigned char> out(length);
  const int ok = EVP_KDF_derive(ctx, out.data(), out.size(), params);
  EVP_KDF_CTX_free(ctx);
  if (ok != 1) throw std::runtime_error("HKDF failed");
  return out;
}

}  // namespace referrald
