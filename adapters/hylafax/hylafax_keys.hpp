// The keys a [[target]] of type "hylafax" takes, checked by the configuration
// loader before the adapter sees them (adapters/hylafax/, registered in adapters/registry.cpp).
#pragma once

#include <array>
#include <string_view>

#include "config/target_keys.hpp"

namespace referrald {

inline constexpr std::array done_when_values{std::string_view("queued"), std::string_view("done")};

inline constexpr KeySpec hylafax_keys[] = {
    {"host", KeyKind::host_port, true},
    {"user", KeyKind::string, true},
    {"password_file", KeyKind::path, false},
    {"dial", KeyKind::string, false},  // required unless recipient = "referrer"
    recipient_key,
    {"notify_address", KeyKind::string, false},
    {"from_user", KeyKind::string, false},
    {"done_when", KeyKind::string, false, done_when_values},
    {"poll_interval", KeyKind::duration, false},
    max_fax_pages_key,
};

}  // namespace referrald
