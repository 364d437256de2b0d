#include "util/ids.hpp"

#include <array>
#include <stdexcept>

#include "util/crypto.hpp"
#include "util/dates.hpp"

namespace referrald {
namespace {

constexpr std::string_view crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

}  // namespace

std::string new_referral_id(std::chrono::system_clock::time_point now) {
  std::string date = format_iso_date(utc_date(now));
  std::string id = "R-";
  for (char c : date) {
    if (c != '-') id += c;
  }
  id += '-';
  const auto bytes = random_bytes(7);  // 56 bits, 50 used
  std::uint64_t bits = 0;
  for (unsigned char b : bytes) bits = (bits << 8) | b;
  for (int i = 0; i < 10; ++i) {
    if (i == 5) id += '-';
    id += crockford[(bits >> (5 * (9 - i))) & 31U];
  }
  return id;
}

bool looks_like_referral_id(std::string_view text) noexcept {
  // R-YYYYMMDD-XXXXX-XXXXX
  if (text.size() != 22) return false;
  auto is_b32 = [](char c) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    return crockford.find(c) != std::string_view::npos;
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (i == 0) {
      if (c != 'R' && c != 'r') return false;
    } else if (i == 1 || i == 10 || i == 16) {
      if (c != '-') return false;
    } else if (i < 10) {
      if (c < '0' || c > '9') return false;
    } else if (!is_b32(c)) {
      return false;
    }
  }
  return true;
}

std::string delivery_identity(std::string_view referral_id, std::string_view target, std::string_view purpose) {
  std::string out(referral_id);
  out += '.';
  out += target;
  if (purpose != "intake") {
    out += '.';
    out += purpose;
  }
  return out;
}

}  // namespace referrald
