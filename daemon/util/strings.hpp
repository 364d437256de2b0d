// Small text helpers: ASCII case, white space at the ends, lists. ASCII on
// purpose: they serve protocol words, ids, codes and credentials, never a
// person's name (a non-ASCII byte is left as it is).
#pragma once

#include <string>
#include <string_view>

namespace referrald {

std::string upper(std::string_view text);
std::string lower(std::string_view text);
bool equal_ignoring_case(std::string_view a, std::string_view b) noexcept;

// Without the white space (space, tab, CR, LF, FF, VT) at either end.
std::string_view trim(std::string_view text) noexcept;

// A JSON Pointer's reference token (RFC 6901): "~" as "~0", "/" as "~1".
std::string json_pointer_token(std::string_view token);

// The items with `separator` between them: "MD, DO, NP".
template <typename Range>
std::string join(const Range& items, std::string_view separator = ", ") {
  std::string out;
  bool first = true;
  for (const auto& item : items) {
    if (!first) out += separator;
    out += item;
    first = false;
  }
  return out;
}

}  // namespace referrald
