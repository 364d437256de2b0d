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

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

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

// The id of the key a stored payload is encrypted under; nullopt for a plain
// JSON row. Throws PayloadError for bytes that are neither.
std::optional<std::string> payload_key_id(std::string_view stored, std::string_view referral_id);
// The same for what seal_text stored: nullopt for text kept in the clear.
std::optional<std::string> text_key_id(std::string_view stored, std::string_view context);

}  // namespace referrald::store
