// The keys a [[target]] of type "wctp" takes, checked by the configuration
// loader before the adapter sees them (adapters/wctp/, registered in adapters/registry.cpp).
#pragma once

#include <array>
#include <string_view>

#include "config/target_keys.hpp"

namespace referrald {

inline constexpr std::array wctp_schemes{std::string_view("http"), std::string_view("https")};

inline constexpr KeySpec wctp_keys[] = {
    {"url", KeyKind::url, true, wctp_schemes},
    {"sender_id", KeyKind::string, true},
    {"security_code_file", KeyKind::path, false},
    {"recipient_id", KeyKind::string, true},
    {"ca_file", KeyKind::path, false},
    {"max_message_length", KeyKind::integer, false},
};

}  // namespace referrald
