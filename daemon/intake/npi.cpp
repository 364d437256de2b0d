#include "intake/npi.hpp"

namespace referrald {

// CMS "Requirements for NPI Check Digit": Luhn mod 10 over the card-issuer
// prefix 80840 followed by the NPI. The prefix's own contribution is constant
// (24), so it is added instead of being run through the loop.
bool npi_is_valid(std::string_view npi) noexcept {
  if (npi.size() != 10) return false;
  constexpr int prefix_80840_sum = 24;
  int sum = prefix_80840_sum;
  bool double_it = false;  // the rightmost digit (the check digit) is not doubled
  for (auto it = npi.rbegin(); it != npi.rend(); ++it) {
    if (*it < '0' || *it > '9') return false;
    int digit = *it - '0';
    if (double_it) {
      digit *= 2;
      if (digit > 9) digit -= 9;
    }
    sum += digit;
    double_it = !double_it;
  }
  return sum % 10 == 0;
}

}  // namespace referrald
