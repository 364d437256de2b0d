#include "store/payload.hpp"

#include <memory>

#include "util/crypto.hpp"

namespace referrald::store {

namespace {

constexpr std::string_view magic = "RFE";
constexpr unsigned char format_version = 1;
constexpr std::size_t nonce_bytes = aes_gcm_nonce_bytes;
constexpr std::size_t tag_bytes = aes_gcm_tag_bytes;

struct Header {
  std::string_view bytes;  // magic .. key id: the first part of the AAD
  std::string_view key_id;
};

std::string referral(std::string_view id) { return "referral " + std::string(id) + ": "; }

// The header of an encrypted payload; nullopt for plain JSON.
std::optional<Header> read_header(std::string_view stored, std::string_view referral_id) {
  if (!stored.empty() && stored.front() == '{') return std::nullopt;
  if (!stored.starts_with(magic)) {
    throw PayloadError(referral(referral_id) + "stored document is neither JSON nor an encrypted referrald payload");
  }
  const std::size_t fixed = magic.size() + 2;
  if (stored.size() < fixed) throw PayloadError(referral(referral_id) + "encrypted payload is truncated");
  const auto version = static_cast<unsigned char>(stored[magic.size()]);
  if (version != format_version) {
    throw PayloadError(referral(referral_id) + "encrypted payload has format version " + std::to_string(version) +
                       ", which this referrald does not know (it knows " + std::to_string(format_version) + ")");
  }
  const std::size_t id_length = static_cast<unsigned char>(stored[magic.size() + 1]);
  if (stored.size() < fixed + id_length + nonce_bytes + tag_bytes) {
    throw PayloadError(referral(referral_id) + "encrypted payload is truncated");
  }
  const std::string_view key_id = stored.substr(fixed, id_length);
  if (!is_key_id(key_id)) throw PayloadError(referral(referral_id) + "encrypted payload has a malformed key id");
  return Header{stored.substr(0, fixed + id_length), key_id};
}

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }
unsigned char* bytes(std::string& s, std::size_t offset) { return reinterpret_cast<unsigned char*>(s.data()) + offset; }

}  // namespace

std::string seal_payload(const KeyRing* keys, std::string_view document, std::string_view referral_id) {
  if (keys == nullptr) return std::string(document);
  const PayloadKey& key = keys->current();
  std::string out;
  out.reserve(magic.size() + 2 + key.id.size() + nonce_bytes + document.size() + tag_bytes);
  out += magic;
  out += static_cast<char>(format_version);
  out += static_cast<char>(key.id.size());
  out += key.id;
  const std::size_t header_size = out.size();
  const auto nonce = random_bytes(nonce_bytes);
  out.append(reinterpret_cast<const char*>(nonce.data()), nonce.size());
  const std::size_t body_offset = out.size();
  out.resize(body_offset + document.size() + tag_bytes);

  // The AAD: the header, then the referral id.
  const std::string_view header = std::string_view(out).substr(0, header_size);  // out is sized: it stays put
  try {
    aes256_gcm_seal(key.bytes.data(), nonce.data(), {header, referral_id}, document, bytes(out, body_offset));
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(referral(referral_id) + e.what());
  }
  return out;
}

std::string open_payload(const KeyRing* keys, std::string_view stored, std::string_view referral_id) {
  const auto header = read_header(stored, referral_id);
  if (!header) return std::string(stored);
  const std::string key_id(header->key_id);
  if (keys == nullptr) {
    throw PayloadError(referral(referral_id) + "document is encrypted with key \"" + key_id +
                       "\" but no storage.encryption_keys is configured");
  }
  const PayloadKey* key = keys->find(key_id);
  if (key == nullptr) {
    throw PayloadError(referral(referral_id) + "document is encrypted with key \"" + key_id +
                       "\", which is not in storage.encryption_keys (it has " + keys->ids() + ")");
  }
  const std::string_view nonce = stored.substr(header->bytes.size(), nonce_bytes);
  const std::size_t body_offset = header->bytes.size() + nonce_bytes;
  const std::string_view sealed = stored.substr(body_offset);
  std::string out(sealed.size() - tag_bytes, '\0');
  if (!aes256_gcm_open(key->bytes.data(), bytes(nonce), {header->bytes, referral_id}, sealed, bytes(out, 0))) {
    throw PayloadError(referral(referral_id) + "document failed authentication under key \"" + key_id +
                       "\" (altered, copied from another referral, or a different key under the same id)");
  }
  return out;
}

namespace {
constexpr std::string_view plain_text_magic = "RFT";
}  // namespace

std::string seal_text(const KeyRing* keys, std::string_view text, std::string_view context) {
  if (keys == nullptr) return std::string(plain_text_magic) + std::string(text);
  return seal_payload(keys, text, context);
}

std::string open_text(const KeyRing* keys, std::string_view stored, std::string_view context) {
  if (!text_key_id(stored, context)) return std::string(stored.substr(plain_text_magic.size()));
  return open_payload(keys, stored, context);
}

std::optional<std::string> payload_key_id(std::string_view stored, std::string_view referral_id) {
  const auto header = read_header(stored, referral_id);
  if (!header) return std::nullopt;
  return std::string(header->key_id);
}

std::optional<std::string> text_key_id(std::string_view stored, std::string_view context) {
  if (stored.starts_with(plain_text_magic)) return std::nullopt;
  if (!stored.starts_with(magic)) {
    throw PayloadError(referral(context) + "stored text is neither plain nor an encrypted referrald payload");
  }
  return payload_key_id(stored, context);
}

}  // namespace referrald::store
