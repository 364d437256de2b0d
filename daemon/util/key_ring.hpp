// The keys referral payloads are encrypted with at rest
// (storage.encryption_keys): AES-256 keys, each with a short id, read from a
// key file. The first key encrypts new payloads; every key decrypts. Key
// material is wiped when a ring is destroyed and never appears in a message.
//
// Key file: one key per line, "<key-id> <64 hex digits>"; blank lines and
// lines starting with "#" are ignored. A key id is 1 to 32 letters, digits,
// ".", "_" or "-" (it is stored in the clear next to each payload).
#pragma once

#include <array>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace referrald {

inline constexpr std::size_t payload_key_bytes = 32;  // AES-256
inline constexpr std::size_t max_key_id_length = 32;

struct PayloadKey {
  std::string id;
  std::array<unsigned char, payload_key_bytes> bytes{};
};

class KeyRing {
 public:
  // `keys` must be non-empty with distinct ids (parse_key_file ensures it);
  // throws std::invalid_argument otherwise.
  explicit KeyRing(std::vector<PayloadKey> keys);
  ~KeyRing();  // wipes the key bytes
  KeyRing(const KeyRing&) = delete;
  KeyRing& operator=(const KeyRing&) = delete;

  const PayloadKey& current() const noexcept { return keys_.front(); }  // encrypts new payloads
  const PayloadKey* find(std::string_view id) const noexcept;
  std::string ids() const;  // "k2, k1", in file order, for messages

 private:
  std::vector<PayloadKey> keys_;
};

// A problem with a key file: its line (0: the file as a whole) and a
// message that never contains key material.
struct KeyFileProblem {
  int line = 0;
  std::string message;
  std::string to_string() const;  // "3: message", or just the message for line 0
};

bool is_key_id(std::string_view id) noexcept;

// Parses key file text; returns null and fills `problems` (every one, in
// line order) if the text is not a valid key file.
std::shared_ptr<const KeyRing> parse_key_file(std::string_view text, std::vector<KeyFileProblem>& problems);

// Whether read_key_file insists that only the owner may access the file.
// A systemd credential is private by construction (its directory is the
// service's alone) and shows group bits when systemd grants access by ACL.
enum class KeyFilePrivacy { owner_only, trusted };

// Reads and parses a key file. With owner_only, a file that group or others
// may read or write is refused (like ssh refuses such a private key).
std::shared_ptr<const KeyRing> read_key_file(const std::filesystem::path& file, KeyFilePrivacy privacy,
                                             std::vector<KeyFileProblem>& problems);

}  // namespace referrald
