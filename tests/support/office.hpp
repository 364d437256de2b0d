// The referral office the channel and document tests render for, with the
// hospital's published numbers (header only: no library to link).
#pragma once

#include "config/config.hpp"

namespace referrald::test {

inline OfficeConfig sample_office() {
  OfficeConfig o;
  o.phone = "1-888-226-4343";
  o.fax = "901-595-4011";
  o.pager = "1-800-349-4334";
  return o;
}

}  // namespace referrald::test
