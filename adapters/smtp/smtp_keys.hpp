// The keys a [[target]] of type "smtp" takes, checked by the configuration
// loader before the adapter sees them (adapters/smtp/, registered in adapters/registry.cpp).
#pragma once

#include <array>
#include <string_view>

#include "config/target_keys.hpp"

namespace referrald {

inline constexpr std::array smtp_schemes{std::string_view("smtp"), std::string_view("smtps")};
inline constexpr std::array starttls_values{std::string_view("required"), std::string_view("none")};

inline constexpr KeySpec smtp_keys[] = {
    {"url", KeyKind::url, true, smtp_schemes},
    {"starttls", KeyKind::string, false, starttls_values},
    {"allow_plaintext", KeyKind::boolean, false},
    {"ca_file", KeyKind::path, false},
    {"username", KeyKind::string, false},
    {"password_file", KeyKind::path, false},
    {"from", KeyKind::string, true},
    {"to", KeyKind::string_list, false},  // required unless recipient = "referrer"
    recipient_key,
    {"helo", KeyKind::string, false},
};

// What only SMTP understands: the mailboxes' syntax, a plain-text URL
// without allow_plaintext, username without password_file. Throws
// TargetSettingError (smtp_adapter.cpp).
void check_smtp_target(const TargetConfig& target, const OfficeConfig& office);

}  // namespace referrald
