// The keys a [[target]] of type "snpp" takes, checked by the configuration
// loader before the adapter sees them (adapters/snpp/, registered in adapters/registry.cpp).
#pragma once

#include <array>
#include <string_view>

#include "config/target_keys.hpp"

namespace referrald {

inline constexpr KeySpec snpp_keys[] = {
    {"host", KeyKind::host_port, true},
    {"login", KeyKind::string, false},
    {"password_file", KeyKind::path, false},
    {"pager_id", KeyKind::string, true},
    {"max_message_length", KeyKind::integer, false},
    {"hylafax", KeyKind::boolean, false},       // HylaFAX's SNPP server speaks a dialect
    {"hylafax_port", KeyKind::integer, false},  // hfaxd's client protocol: the repeat check
};

}  // namespace referrald
