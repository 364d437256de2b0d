#pragma once

#include <string_view>

namespace referrald {

// True for exactly 10 ASCII digits whose Luhn sum over "80840" + digits is 0 mod 10.
bool npi_is_valid(std::string_view npi) noexcept;

}  // namespace referrald
