// Every key of referrald.toml, table by table. The loader (config.cpp)
// refuses any other key in a table; the man page referrald.toml(5)
// documents each one, and tests/unit/man_pages_test.cpp holds the two
// together. A [[target]]'s own keys are its channel's (adapters/*/_keys.hpp,
// config/target_keys.hpp), besides target_common_keys.
#pragma once

#include <span>
#include <string_view>

namespace referrald::config_keys {

using Keys = std::span<const std::string_view>;

inline constexpr std::string_view top[] = {"http",   "storage", "rules",  "paths", "delivery",   "log",
                                           "office", "intake",  "target", "route", "escalation", "closed_loop"};
inline constexpr std::string_view http[] = {"listen",
                                            "tls_certificate",
                                            "tls_private_key",
                                            "api_keys",
                                            "max_body_bytes",
                                            "max_header_bytes",
                                            "max_connections",
                                            "max_connections_per_client",
                                            "threads",
                                            "read_timeout",
                                            "write_timeout",
                                            "idle_timeout",
                                            "rate_limit_per_minute",
                                            "rate_limit_burst",
                                            "public_origins",
                                            "office_api_keys"};
inline constexpr std::string_view storage[] = {"backend", "database",  "url",         "password_file",
                                               "pool",    "max_batch", "queue_limit", "encryption_keys"};
inline constexpr std::string_view rules[] = {"file"};
inline constexpr std::string_view paths[] = {"schemas", "web"};
inline constexpr std::string_view delivery[] = {"max_attempts",  "initial_backoff", "max_backoff",
                                                "give_up_after", "lease",           "poll_interval"};
inline constexpr std::string_view log[] = {"level"};
inline constexpr std::string_view office[] = {"name",      "phone", "fax",    "pager",   "time_zone",
                                              "open_days", "opens", "closes", "holidays"};
inline constexpr std::string_view intake[] = {"duplicate_window", "identity_key", "max_attachments",
                                              "max_attachment_bytes", "max_attachments_total_bytes"};
inline constexpr std::string_view target_common[] = {"name", "type", "concurrency", "timeout"};
inline constexpr std::string_view route[] = {"when", "notify"};
inline constexpr std::string_view route_when[] = {"decision", "urgency", "after_hours"};
inline constexpr std::string_view escalation[] = {"urgency", "business_hours", "steps"};
inline constexpr std::string_view escalation_step[] = {"after", "notify"};
inline constexpr std::string_view closed_loop[] = {"on", "notify", "ack_link_ttl", "link_origin"};

// Each table by the name the man page gives it ("" is the file's top level).
struct Table {
  std::string_view name;
  Keys keys;
};
inline constexpr Table tables[] = {
    {"", top},
    {"http", http},
    {"storage", storage},
    {"rules", rules},
    {"paths", paths},
    {"delivery", delivery},
    {"log", log},
    {"office", office},
    {"intake", intake},
    {"target", target_common},
    {"route", route},
    {"route.when", route_when},
    {"escalation", escalation},
    {"escalation.steps", escalation_step},
    {"closed_loop", closed_loop},
};

}  // namespace referrald::config_keys
