// The text of a page (snpp, wctp): the reference number, the urgency, the
// decision and the office's call-back number; an escalation's page says
// which step and how long the referral has waited. Never patient data, never
// a link.
#pragma once

#include <cstddef>
#include <string>

#include "dispatch/adapter.hpp"

namespace referrald {

// Pure: at most max_length bytes, printable ASCII, one line; the longest of
// its forms that fits.
std::string page_text(const Delivery& delivery, const std::string& callback_phone, std::size_t max_length);

}  // namespace referrald
