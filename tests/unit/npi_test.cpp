#include "intake/npi.hpp"

#include <gtest/gtest.h>

#include <string>

namespace referrald {
namespace {

// Check digits were computed by hand per CMS "Requirements for NPI Check
// Digit" (docs/architecture.md#npi-check-digit) and cross-checked with an independent Luhn
// implementation over "80840" + the NPI.

TEST(Npi, CmsWorkedExampleIsValid) {
  // Base 123456789: doubled digits sum to 23, the others to 20, +24 = 67 -> 3.
  EXPECT_TRUE(npi_is_valid("1234567893"));
}

TEST(Npi, WrongCheckDigitIsInvalid) {
  EXPECT_FALSE(npi_is_valid("1234567890"));
  EXPECT_FALSE(npi_is_valid("1234567894"));
}

TEST(Npi, SampleReferrerNpiIsValid) {
  // Base 100300012: doubled 2,0,0,0,1 -> 4+0+0+0+2 = 6; others 1,0,3,0 = 4;
  // 6 + 4 + 24 = 34 -> check digit 6.
  EXPECT_TRUE(npi_is_valid("1003000126"));
  EXPECT_FALSE(npi_is_valid("1003000127"));
}

TEST(Npi, DoubledDigitsOverNineAreReduced) {
  // Base 987654321: doubled 1,3,5,7,9 -> 2+6+10+14+18 digit sums 2+6+1+5+9 = 23;
  // others 2,4,6,8 = 20; 23 + 20 + 24 = 67 -> check digit 3.
  EXPECT_TRUE(npi_is_valid("9876543213"));
  EXPECT_FALSE(npi_is_valid("9876543212"));
}

TEST(Npi, EveryWrongCheckDigitIsRejected) {
  for (char d = '0'; d <= '9'; ++d) {
    const std::string npi = std::string("123456789") + d;
    EXPECT_EQ(npi_is_valid(npi), d == '3') << npi;
  }
}

TEST(Npi, TransposedDigitsAreCaught) { EXPECT_FALSE(npi_is_valid("2134567893")); }

TEST(Npi, WrongLengthsAreInvalid) {
  EXPECT_FALSE(npi_is_valid(""));
  EXPECT_FALSE(npi_is_valid("123456789"));    // 9 digits
  EXPECT_FALSE(npi_is_valid("12345678930"));  // 11 digits
  // The same digits with the card-issuer prefix written out are a valid Luhn
  // number, but not an NPI.
  EXPECT_FALSE(npi_is_valid("808401234567893"));
}

TEST(Npi, NonDigitsAreInvalid) {
  EXPECT_FALSE(npi_is_valid("12345678a3"));
  EXPECT_FALSE(npi_is_valid("1234-67893"));
  EXPECT_FALSE(npi_is_valid(" 234567893"));
  EXPECT_FALSE(npi_is_valid("１234567893"));  // a full-width digit is not ASCII
  // ':' is '9' + 1: a naive "c - '0'" without a range check would count it as 10.
  EXPECT_FALSE(npi_is_valid("123456789:"));
}

}  // namespace
}  // namespace referrald
