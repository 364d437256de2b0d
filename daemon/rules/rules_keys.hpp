// Every key of the rules file (rules.toml), table by table. The reader
// (rules.cpp) refuses any other key; the man page referrald-rules.toml(5)
// documents each one (tests/unit/man_pages_test.cpp holds them together).
#pragma once

#include <span>
#include <string_view>

namespace referrald::rules_keys {

inline constexpr std::string_view top[] = {"general", "disease"};
inline constexpr std::string_view general[] = {"qualified_credentials", "default_max_age",
                                               "service_area_postal_prefixes"};
inline constexpr std::string_view disease[] = {"id", "name", "aliases", "codes", "max_age", "open_trials"};
inline constexpr std::string_view disease_code[] = {"system", "value"};

// Each table by the name the man page gives it ("" is the file's top level).
struct Table {
  std::string_view name;
  std::span<const std::string_view> keys;
};
inline constexpr Table tables[] = {
    {"", top},
    {"general", general},
    {"disease", disease},
    {"disease.codes", disease_code},
};

}  // namespace referrald::rules_keys
