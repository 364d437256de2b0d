#include "intake/identity.hpp"

#include <openssl/crypto.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <stdexcept>

#include "util/crypto.hpp"
#include "util/dates.hpp"
#include "util/key_ring.hpp"
#include "util/secret_file.hpp"

namespace referrald {

namespace {

constexpr std::string_view hkdf_salt = "referrald";
constexpr std::string_view hkdf_info = "patient identity hash v1";
constexpr std::size_t min_secret_length = 32;

}  // namespace

std::string normalise_name(std::string_view utf8) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* fold = icu::Normalizer2::getNFKCCasefoldInstance(status);
  const icu::Normalizer2* decompose = icu::Normalizer2::getNFDInstance(status);
  if (U_FAILURE(status)) throw std::runtime_error("ICU normalisation is not available");
  const icu::UnicodeString text =
      icu::UnicodeString::fromUTF8(icu::StringPiece(utf8.data(), static_cast<int32_t>(utf8.size())));
  icu::UnicodeString folded = fold->normalize(text, status);
  icu::UnicodeString parts = decompose->normalize(folded, status);
  if (U_FAILURE(status)) throw std::runtime_error("ICU normalisation failed");
  icu::UnicodeString kept;
  for (int32_t i = 0; i < parts.length();) {
    const UChar32 c = parts.char32At(i);
    if (u_isalnum(c)) kept.append(c);
    i += U16_LENGTH(c);
  }
  std::string out;
  kept.toUTF8String(out);
  return out;
}

IdentityKey::~IdentityKey() { OPENSSL_cleanse(bytes_.data(), bytes_.size()); }

std::string IdentityKey::hash(const Patient& patient) const {
  const std::string message = normalise_name(patient.family_name) + '\x1f' + normalise_name(patient.given_name) +
                              '\x1f' + format_iso_date(patient.birth_date);
  const auto mac = hmac_sha256(bytes_.data(), bytes_.size(), message);
  return to_hex(mac.data(), mac.size());
}

std::shared_ptr<const IdentityKey> IdentityKey::derive(const unsigned char* material, std::size_t size) {
  auto derived = hkdf_sha256(material, size, hkdf_salt, hkdf_info, 32);
  std::array<unsigned char, 32> bytes{};
  std::copy(derived.begin(), derived.end(), bytes.begin());
  OPENSSL_cleanse(derived.data(), derived.size());
  auto key = std::make_shared<const IdentityKey>(bytes);
  OPENSSL_cleanse(bytes.data(), bytes.size());
  return key;
}

std::shared_ptr<const IdentityKey> load_identity_key(const std::filesystem::path& identity_key_file,
                                                     const KeyRing* encryption_keys,
                                                     const std::vector<unsigned char>& database_secret) {
  if (!identity_key_file.empty()) {
    std::string problem;
    auto secret = read_secret_file(identity_key_file.string(), "intake.identity_key ", &problem);
    if (!secret) throw std::runtime_error(problem);
    if (secret->size() < min_secret_length) {
      OPENSSL_cleanse(secret->data(), secret->size());
      throw std::runtime_error("intake.identity_key " + identity_key_file.string() + ": the secret must be at least " +
                               std::to_string(min_secret_length) + " characters (e.g. openssl rand -hex 32)");
    }
    auto key = IdentityKey::derive(reinterpret_cast<const unsigned char*>(secret->data()), secret->size());
    OPENSSL_cleanse(secret->data(), secret->size());
    return key;
  }
  if (encryption_keys != nullptr) {
    const auto& current = encryption_keys->current();
    return IdentityKey::derive(current.bytes.data(), current.bytes.size());
  }
  if (database_secret.empty()) throw std::logic_error("load_identity_key: no key material");
  return IdentityKey::derive(database_secret.data(), database_secret.size());
}

}  // namespace referrald
