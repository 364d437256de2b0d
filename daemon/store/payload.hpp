// How a referral's document (the submitted JSON: full PHI) is stored in
// referrals.document: encrypted with AES-256-GCM when storage.encryption_keys
// is set, as plain JSON otherwise (and in rows written before it was set).
//
// Encrypted layout (all of it one BLOB):
//   "RFE"  magic (a JSON document starts with "{", so the two never mix)
//   0x01   format version
//   n      key id length (1..32), then the key id's n bytes
//   12     random nonce (RAND_bytes; never reused: 2^-96 per pair of payloads)
//   ...    ciphertext (as long as the JSON)
//   16     GCM tag
// The additional authenticated data is the header (magic..key id) followed
// by the referral id, so an altered byte anywhere, a changed key id, or a
// payload copied into another referral's row fails authentication.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "util/crypto.hpp"
#include "util/key_ring.hpp"

namespace referrald::store {

// A stored payload that cannot be read: the message names the referral and
// the key id, never any content.
class PayloadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The document as stored: encrypted under keys->current() for the referral
// `referral_id`, or unchanged when `keys` is null (encryption off).
std::string seal_payload(const KeyRing* keys, std::string_view document, std::string_view referral_id);

// The document back from what seal_payload stored (or from a plain JSON row
// written before encryption was enabled). Throws PayloadError when the key
// it names is not in `keys` (or there are no keys), when authentication
// fails, or when the bytes are neither format.
std::string open_payload(const KeyRing* keys, std::string_view stored, std::string_view referral_id);

// Free text that is PHI (a status change's note), sealed the same way under
// `context` (e.g. "R-…/status/7", so it cannot pass for another row's). With
// encryption off it is stored as "RFT" followed by the text: never JSON and
// never a sealed payload, so open_text can tell the three apart.
std::string seal_text(const KeyRing* keys, std::string_view text, std::string_view context);
// Throws PayloadError as open_payload does, and for a plain JSON document.
std::string open_text(const KeyRing* keys, std::string_view stored, std::string_view context);

// seal_text a piece at a time, for text too large to hold whole (an
// attachment's file written into its row in blocks): head(), then what
// update() writes for each piece of the text in order, then finish(), are
// byte for byte the format seal_text returns (and open_text reads); seal_text
// itself is written on it. With `keys` null, the text in the clear after
// "RFT", as seal_text.
class TextSealer {
 public:
  TextSealer(const KeyRing* keys, std::string_view context);
  ~TextSealer();
  TextSealer(const TextSealer&) = delete;
  TextSealer& operator=(const TextSealer&) = delete;
  // The whole stored value's size for `text_size` bytes of text.
  std::size_t sealed_size(std::size_t text_size) const;
  // What comes before the text: the header and the nonce (or "RFT").
  const std::string& head() const { return head_; }
  // Writes what stands for `text` in the stored value (text.size() bytes)
  // to `out`.
  void update(std::string_view text, char* out);
  // What comes after it: the GCM tag (nothing in the clear).
  std::string finish();

 private:
  std::string head_;
  std::unique_ptr<AesGcmSealer> sealer_;  // null in the clear
};

// open_text a piece at a time: the text's bytes are those from
// text_offset() for text_size() bytes, each piece given to update() in
// order; finish() checks the tag (the stored value's last tag_size() bytes)
// and nothing written by update() may be trusted before it returns.
class TextOpener {
 public:
  // The most of a stored value's first bytes the constructor needs: magic,
  // version, key id length, the longest key id, the nonce.
  static constexpr std::size_t head_max = 3 + 2 + max_key_id_length + aes_gcm_nonce_bytes;
  // `head`: the stored value's first min(stored_size, head_max) bytes.
  // Throws PayloadError as open_text does (a key not in `keys`, a header
  // that is neither format).
  TextOpener(const KeyRing* keys, std::string_view head, std::size_t stored_size, std::string_view context);
  ~TextOpener();
  TextOpener(const TextOpener&) = delete;
  TextOpener& operator=(const TextOpener&) = delete;
  std::size_t text_offset() const { return text_offset_; }
  std::size_t text_size() const { return text_size_; }
  std::size_t tag_size() const { return opener_ ? aes_gcm_tag_bytes : 0; }
  // Writes the text of the next piece of the stored bytes to `out`.
  void update(std::string_view stored, char* out);
  // Throws PayloadError, as open_text, when `tag` does not authenticate
  // everything given to update().
  void finish(std::string_view tag);

 private:
  std::string context_;
  std::string key_id_;
  std::size_t text_offset_ = 0;
  std::size_t text_size_ = 0;
  std::unique_ptr<AesGcmOpener> opener_;  // null in the clear
};

// The id of the key a stored payload is encrypted under; nullopt for a plain
// JSON row. Throws PayloadError for bytes that are neither.
std::optional<std::string> payload_key_id(std::string_view stored, std::string_view referral_id);
// The same for what seal_text stored: nullopt for text kept in the clear.
std::optional<std::string> text_key_id(std::string_view stored, std::string_view context);

}  // namespace referrald::store
