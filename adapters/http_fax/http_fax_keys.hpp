// The keys a [[target]] of type "http-fax" takes, checked by the configuration
// loader before the adapter sees them (adapters/http_fax/, registered in adapters/registry.cpp).
#pragma once

#include <array>
#include <string_view>

#include "config/target_keys.hpp"

namespace referrald {

inline constexpr std::array http_fax_schemes{std::string_view("http"), std::string_view("https")};
inline constexpr std::array http_auth_values{std::string_view("basic"), std::string_view("header"),
                                             std::string_view("none")};

inline constexpr KeySpec http_fax_keys[] = {
    {"url", KeyKind::url, true, http_fax_schemes},
    {"auth", KeyKind::string, false, http_auth_values},
    {"username", KeyKind::string, false},
    {"password_file", KeyKind::path, false},
    {"header_name", KeyKind::string, false},
    {"to", KeyKind::string, true},
    {"file_field", KeyKind::string, false},
    {"to_field", KeyKind::string, false},
    {"id_path", KeyKind::string, false},
    {"status_url", KeyKind::string, false},  // may be a template with the provider's id
    {"status_path", KeyKind::string, false},
    {"poll_interval", KeyKind::duration, false},
    {"ca_file", KeyKind::path, false},
    // The success test and the status lists (docs/channels.md#http-fax).
    {"success_path", KeyKind::string, false},
    {"status_delivered", KeyKind::string_list, false},
    {"status_pending", KeyKind::string_list, false},
    {"status_retry", KeyKind::string_list, false},
    {"status_failed", KeyKind::string_list, false},
    max_fax_pages_key,
};

}  // namespace referrald
