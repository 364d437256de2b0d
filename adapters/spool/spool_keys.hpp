// The keys a [[target]] of type "spool" takes, checked by the configuration
// loader before the adapter sees them (adapters/spool/, registered in adapters/registry.cpp).
#pragma once

#include <array>
#include <string_view>

#include "config/target_keys.hpp"

namespace referrald {

inline constexpr KeySpec spool_keys[] = {
    {"directory", KeyKind::directory, true},
    recipient_key,
};

}  // namespace referrald
