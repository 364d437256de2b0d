#include "config/target_keys.hpp"

#include <array>

namespace referrald {
namespace {

using namespace std::string_view_literals;

// Enumerations and URL schemes live next to the keys, so the loader checks
// them and an adapter can rely on the value being one it knows.
constexpr std::array smtp_schemes{"smtp"sv, "smtps"sv};
constexpr std::array http_schemes{"http"sv, "https"sv};
constexpr std::array starttls_values{"required"sv, "none"sv};
constexpr std::array http_auth_values{"basic"sv, "header"sv, "none"sv};
constexpr std::array done_when_values{"queued"sv, "done"sv};

constexpr KeySpec smtp_keys[] = {
    {"url", KeyKind::url, true, smtp_schemes},
    {"starttls", KeyKind::string, false, starttls_values},
    {"allow_plaintext", KeyKind::boolean, false},
    {"ca_file", KeyKind::path, false},
    {"username", KeyKind::string, false},
    {"password_file", KeyKind::path, false},
    {"from", KeyKind::string, true},
    {"to", KeyKind::string_list, true},
    {"helo", KeyKind::string, false},
};

constexpr KeySpec hylafax_keys[] = {
    {"host", KeyKind::host_port, true},
    {"user", KeyKind::string, true},
    {"password_file", KeyKind::path, false},
    {"dial", KeyKind::string, true},
    {"notify_address", KeyKind::string, false},
    {"from_user", KeyKind::string, false},
    {"done_when", KeyKind::string, false, done_when_values},
    {"poll_interval", KeyKind::duration, false},
};

constexpr KeySpec http_fax_keys[] = {
    {"url", KeyKind::url, true, http_schemes},
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
    // The generic contract's success test and status value map (PROTOCOLS.md §4).
    {"success_path", KeyKind::string, false},
    {"status_delivered", KeyKind::string_list, false},
    {"status_pending", KeyKind::string_list, false},
    {"status_retry", KeyKind::string_list, false},
    {"status_failed", KeyKind::string_list, false},
};

constexpr KeySpec snpp_keys[] = {
    {"host", KeyKind::host_port, true},
    {"login", KeyKind::string, false},
    {"password_file", KeyKind::path, false},
    {"pager_id", KeyKind::string, true},
    {"max_message_length", KeyKind::integer, false},
    {"hylafax", KeyKind::boolean, false},  // HylaFAX's SNPP server speaks a dialect
    {"hylafax_port", KeyKind::integer, false},  // hfaxd's client protocol: the repeat check
};

constexpr KeySpec wctp_keys[] = {
    {"url", KeyKind::url, true, http_schemes},
    {"sender_id", KeyKind::string, true},
    {"security_code_file", KeyKind::path, false},
    {"recipient_id", KeyKind::string, true},
    {"ca_file", KeyKind::path, false},
    {"max_message_length", KeyKind::integer, false},
};

constexpr KeySpec spool_keys[] = {
    {"directory", KeyKind::directory, true},
};

}  // namespace

const std::vector<std::string>& known_target_types() {
  static const std::vector<std::string> types{"smtp", "hylafax", "http-fax", "snpp", "wctp", "spool"};
  return types;
}

std::span<const KeySpec> target_keys(std::string_view type) {
  if (type == "smtp") return smtp_keys;
  if (type == "hylafax") return hylafax_keys;
  if (type == "http-fax") return http_fax_keys;
  if (type == "snpp") return snpp_keys;
  if (type == "wctp") return wctp_keys;
  if (type == "spool") return spool_keys;
  return {};
}

}  // namespace referrald
