// Possible duplicates: a keyed hash of who the patient is (normalised
// family name, given name and birth date), so that referrals for the same
// patient can be found without the names or dates being indexed in the
// clear. The key: docs/closed-loop.md#possible-duplicates.
#pragma once

#include <array>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model/referral.hpp"

namespace referrald {

class KeyRing;

// A name as compared for duplicates: Unicode NFKC case folding (ICU), then
// decomposed with every accent, space, hyphen, apostrophe and other
// character that is not a letter or digit dropped. "Nguyễn", "NGUYEN" and
// "nguyen" are the same; so are "O'Brien-Smith" and "obrien smith".
std::string normalise_name(std::string_view utf8);

class IdentityKey {
 public:
  explicit IdentityKey(const std::array<unsigned char, 32>& bytes) : bytes_(bytes) {}
  ~IdentityKey();  // wipes the key
  IdentityKey(const IdentityKey&) = delete;
  IdentityKey& operator=(const IdentityKey&) = delete;

  // HMAC-SHA-256, lower-case hex, of the normalised family name, given name
  // and the ISO birth date (separated by U+001F, which no normalised name holds).
  std::string hash(const Patient& patient) const;

  // The key for the hash from some secret material: HKDF-SHA-256 with its
  // own purpose, so the key is never the material itself (an encryption key
  // stays an encryption key).
  static std::shared_ptr<const IdentityKey> derive(const unsigned char* material, std::size_t size);

 private:
  std::array<unsigned char, 32> bytes_;
};

// Where the key comes from, in this order: [intake] identity_key (a file
// whose one line is the secret, at least 32 characters), else the current
// key of storage.encryption_keys, else `database_secret` (store::identity_secret).
// Throws std::runtime_error naming the file when identity_key cannot be read.
std::shared_ptr<const IdentityKey> load_identity_key(const std::filesystem::path& identity_key_file,
                                                     const KeyRing* encryption_keys,
                                                     const std::vector<unsigned char>& database_secret);

}  // namespace referrald
