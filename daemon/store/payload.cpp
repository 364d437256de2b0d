#include "store/payload.hpp"

#include <openssl/crypto.h>

#include <algorithm>
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

// The header of an encrypted payload; nullopt for plain JSON. `stored` may
// be the stored value's first bytes only (TextOpener::head_max of them, or
// all): `stored_size` is its whole size.
std::optional<Header> read_header(std::string_view stored, std::size_t stored_size, std::string_view referral_id) {
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
  if (stored_size < fixed + id_length + nonce_bytes + tag_bytes || stored.size() < fixed + id_length + nonce_bytes) {
    throw PayloadError(referral(referral_id) + "encrypted payload is truncated");
  }
  const std::string_view key_id = stored.substr(fixed, id_length);
  if (!is_key_id(key_id)) throw PayloadError(referral(referral_id) + "encrypted payload has a malformed key id");
  return Header{stored.substr(0, fixed + id_length), key_id};
}

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }
unsigned char* bytes(char* s) { return reinterpret_cast<unsigned char*>(s); }

}  // namespace

std::string seal_payload(const KeyRing* keys, std::string_view document, std::string_view referral_id) {
  if (keys == nullptr) return std::string(document);
  try {
    TextSealer sealer(keys, referral_id);
    std::string out;
    out.reserve(sealer.sealed_size(document.size()));
    out = sealer.head();
    const std::size_t body_offset = out.size();
    out.resize(body_offset + document.size());
    sealer.update(document, out.data() + body_offset);
    out += sealer.finish();
    return out;
  } catch (const PayloadError&) {
    throw;
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(referral(referral_id) + e.what());
  }
}

std::string open_payload(const KeyRing* keys, std::string_view stored, std::string_view referral_id) {
  if (!read_header(stored, stored.size(), referral_id)) return std::string(stored);
  TextOpener opener(keys, stored.substr(0, TextOpener::head_max), stored.size(), referral_id);
  std::string out(opener.text_size(), '\0');
  opener.update(stored.substr(opener.text_offset(), opener.text_size()), out.data());
  try {
    opener.finish(stored.substr(opener.text_offset() + opener.text_size()));
  } catch (const PayloadError&) {
    // The plaintext is released only once the tag has been checked.
    OPENSSL_cleanse(out.data(), out.size());
    throw;
  }
  return out;
}

namespace {
constexpr std::string_view plain_text_magic = "RFT";

// Whether what seal_text stored is in the clear; throws for bytes that are
// neither that nor sealed.
bool text_in_clear(std::string_view stored, std::string_view context) {
  if (stored.starts_with(plain_text_magic)) return true;
  if (!stored.starts_with(magic)) {
    throw PayloadError(referral(context) + "stored text is neither plain nor an encrypted referrald payload");
  }
  return false;
}
}  // namespace

std::string seal_text(const KeyRing* keys, std::string_view text, std::string_view context) {
  if (keys == nullptr) return std::string(plain_text_magic) + std::string(text);
  return seal_payload(keys, text, context);
}

std::string open_text(const KeyRing* keys, std::string_view stored, std::string_view context) {
  if (!text_key_id(stored, context)) return std::string(stored.substr(plain_text_magic.size()));
  return open_payload(keys, stored, context);
}

TextSealer::TextSealer(const KeyRing* keys, std::string_view context) {
  if (keys == nullptr) {
    head_ = plain_text_magic;
    return;
  }
  const PayloadKey& key = keys->current();
  head_.reserve(magic.size() + 2 + key.id.size() + nonce_bytes);
  head_ += magic;
  head_ += static_cast<char>(format_version);
  head_ += static_cast<char>(key.id.size());
  head_ += key.id;
  const std::size_t header_size = head_.size();
  const auto nonce = random_bytes(nonce_bytes);
  head_.append(reinterpret_cast<const char*>(nonce.data()), nonce.size());
  // The AAD: the header, then the context (the referral id, or a row's).
  sealer_ = std::make_unique<AesGcmSealer>(
      key.bytes.data(), nonce.data(),
      std::initializer_list<std::string_view>{std::string_view(head_).substr(0, header_size), context});
}

TextSealer::~TextSealer() = default;

std::size_t TextSealer::sealed_size(std::size_t text_size) const {
  return head_.size() + text_size + (sealer_ ? tag_bytes : 0);
}

void TextSealer::update(std::string_view text, char* out) {
  if (sealer_) {
    sealer_->update(text, bytes(out));
  } else {
    std::copy(text.begin(), text.end(), out);
  }
}

std::string TextSealer::finish() {
  if (!sealer_) return {};
  std::string tag(tag_bytes, '\0');
  sealer_->finish(bytes(tag.data()));
  return tag;
}

TextOpener::TextOpener(const KeyRing* keys, std::string_view head, std::size_t stored_size, std::string_view context)
    : context_(context) {
  if (text_in_clear(head, context)) {
    text_offset_ = plain_text_magic.size();
    text_size_ = stored_size - text_offset_;
    return;
  }
  const auto header = read_header(head, stored_size, context);
  key_id_ = header->key_id;
  if (keys == nullptr) {
    throw PayloadError(referral(context) + "document is encrypted with key \"" + key_id_ +
                       "\" but no storage.encryption_keys is configured");
  }
  const PayloadKey* key = keys->find(key_id_);
  if (key == nullptr) {
    throw PayloadError(referral(context) + "document is encrypted with key \"" + key_id_ +
                       "\", which is not in storage.encryption_keys (it has " + keys->ids() + ")");
  }
  text_offset_ = header->bytes.size() + nonce_bytes;
  text_size_ = stored_size - text_offset_ - tag_bytes;
  opener_ = std::make_unique<AesGcmOpener>(
      key->bytes.data(), bytes(head.substr(header->bytes.size(), nonce_bytes)),
      std::initializer_list<std::string_view>{header->bytes, std::string_view(context_)});
}

TextOpener::~TextOpener() = default;

void TextOpener::update(std::string_view stored, char* out) {
  if (opener_) {
    opener_->update(stored, bytes(out));
  } else {
    std::copy(stored.begin(), stored.end(), out);
  }
}

void TextOpener::finish(std::string_view tag) {
  if (!opener_) return;
  if (tag.size() != tag_bytes || !opener_->finish(bytes(tag))) {
    throw PayloadError(referral(context_) + "document failed authentication under key \"" + key_id_ +
                       "\" (altered, copied from another referral, or a different key under the same id)");
  }
}

std::optional<std::string> payload_key_id(std::string_view stored, std::string_view referral_id) {
  const auto header = read_header(stored, stored.size(), referral_id);
  if (!header) return std::nullopt;
  return std::string(header->key_id);
}

std::optional<std::string> text_key_id(std::string_view stored, std::string_view context) {
  if (text_in_clear(stored, context)) return std::nullopt;
  return payload_key_id(stored, context);
}

}  // namespace referrald::store
