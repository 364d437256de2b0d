#include "config/toml_reader.hpp"

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>
#include <system_error>
#include <tuple>

namespace referrald::config {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view duration_hint = R"(expected a duration like "30s", "5m", "48h")";

}  // namespace

bool contains(std::span<const std::string_view> items, std::string_view item) {
  return std::find(items.begin(), items.end(), item) != items.end();
}

std::string type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "boolean";
    case toml::node_type::date: return "date";
    case toml::node_type::time: return "time";
    case toml::node_type::date_time: return "date-time";
    case toml::node_type::array: return "array";
    case toml::node_type::table: return "table";
    case toml::node_type::none: break;
  }
  return "nothing";
}

std::string quote(std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "\"";
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20 || byte == 0x7f) {
      out += "\\x";
      out += hex[byte >> 4];
      out += hex[byte & 0xf];
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string indexed(std::string_view key, std::size_t index) {
  return std::string(key) + "[" + std::to_string(index) + "]";
}

std::string join_key(std::string_view prefix, std::string_view key) {
  if (prefix.empty()) return std::string(key);
  return std::string(prefix) + "." + std::string(key);
}

std::string read_file_text(const fs::path& file) {
  const auto unreadable = [&](std::string message) {
    return ConfigError({ConfigProblem{file.string(), 0, "", std::move(message)}});
  };
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) {
    throw unreadable(fs::exists(file, ec) ? "not a regular file" : "file not found");
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) throw unreadable("cannot be read: " + std::generic_category().message(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void TomlReader::add(Where at, std::string key, std::string message) {
  problems_.push_back({file_, at.line, std::move(key), std::move(message)});
  columns_.push_back(at.column);
}

std::vector<ConfigProblem> TomlReader::sorted_problems() const {
  std::vector<std::size_t> order(problems_.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  const auto rank = [&](std::size_t i) { return std::tuple{problems_[i].line == 0, problems_[i].line, columns_[i]}; };
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return rank(a) < rank(b); });
  std::vector<ConfigProblem> out;
  out.reserve(order.size());
  for (const std::size_t i : order) out.push_back(problems_[i]);
  return out;
}

void TomlReader::throw_if_problems() const {
  if (has_problems()) throw ConfigError(sorted_problems());
}

std::optional<toml::table> TomlReader::parse(std::string_view text) {
  try {
    return toml::parse(text, file_);
  } catch (const toml::parse_error& e) {
    add(Where(e.source()), "", std::string(e.description()));
    return std::nullopt;
  }
}

Scope TomlReader::section(const toml::table& root, std::string_view name) {
  Scope scope(nullptr, std::string(name));
  if (const toml::node* node = root.get(name)) {
    scope.line = Where(*node).line;
    if (const auto* table = node->as_table()) {
      scope.table = table;
    } else {
      add(scope.line, scope.prefix, "expected a table, got " + type_name(*node));
      scope.reported = true;
    }
  }
  return scope;
}

std::optional<Scope> TomlReader::table_scope(const toml::node& node, std::string key) {
  const auto* table = node.as_table();
  if (!table) {
    add(node, std::move(key), "expected a table, got " + type_name(node));
    return std::nullopt;
  }
  const Where at(node);
  return Scope(table, std::move(key), at.line, false, at.column);
}

void TomlReader::check_keys(const Scope& scope, std::span<const std::string_view> known) {
  if (!scope.table) return;
  for (const auto& [key, value] : *scope.table) {
    if (!contains(known, key.str())) {
      add(key.source(), scope.key(key.str()), "unknown key (known: " + join(known) + ")");
    }
  }
}

const toml::array* TomlReader::array_of_tables(const Scope& scope, std::string_view name) {
  const toml::node* node = scope.get(name);
  if (!node) return nullptr;
  const auto* array = node->as_array();
  if (!array || (!array->empty() && !array->is_array_of_tables())) {
    add(*node, scope.key(name),
        "expected an array of tables ([[" + std::string(name) + "]]), got " +
            (array ? std::string("an array of values") : type_name(*node)));
    return nullptr;
  }
  return array;
}

const toml::node* TomlReader::required(const Scope& scope, std::string_view name, std::string_view message) {
  const toml::node* node = scope.get(name);
  if (!node && !scope.reported) add(Where(scope.line, scope.column), scope.key(name), std::string(message));
  return node;
}

std::optional<std::string> TomlReader::string_value(const toml::node& node, const std::string& key) {
  const auto* s = node.as_string();
  if (!s) {
    add(node, key, "expected a string, got " + type_name(node));
    return std::nullopt;
  }
  if (s->get().empty()) {
    add(node, key, "must not be empty");
    return std::nullopt;
  }
  return s->get();
}

std::optional<std::string> TomlReader::get_string(const Scope& scope, std::string_view name, bool is_required) {
  const toml::node* node = member(scope, name, is_required);
  if (!node) return std::nullopt;
  return string_value(*node, scope.key(name));
}

std::optional<std::string> TomlReader::enum_value(const toml::node& node, const std::string& key, std::string_view what,
                                                  std::span<const std::string_view> known) {
  auto value = string_value(node, key);
  if (value && !contains(known, *value)) {
    add(node, key, "unknown " + std::string(what) + " " + quote(*value) + " (known: " + join(known) + ")");
    return std::nullopt;
  }
  return value;
}

std::optional<std::string> TomlReader::get_enum(const Scope& scope, std::string_view name, std::string_view what,
                                                std::span<const std::string_view> known) {
  const toml::node* node = scope.get(name);
  if (!node) return std::nullopt;
  return enum_value(*node, scope.key(name), what, known);
}

std::optional<std::int64_t> TomlReader::integer_value(const toml::node& node, const std::string& key, std::int64_t min,
                                                      std::int64_t max) {
  const auto* integer = node.as_integer();
  if (!integer) {
    add(node, key, "expected an integer, got " + type_name(node));
    return std::nullopt;
  }
  const std::int64_t value = integer->get();
  if (value < min || value > max) {
    add(node, key, "expected " + std::to_string(min) + ".." + std::to_string(max) + ", got " + std::to_string(value));
    return std::nullopt;
  }
  return value;
}

std::optional<std::int64_t> TomlReader::get_integer(const Scope& scope, std::string_view name, std::int64_t min,
                                                    std::int64_t max, bool is_required) {
  const toml::node* node = member(scope, name, is_required);
  if (!node) return std::nullopt;
  return integer_value(*node, scope.key(name), min, max);
}

std::optional<bool> TomlReader::bool_value(const toml::node& node, const std::string& key) {
  if (const auto* b = node.as_boolean()) return b->get();
  add(node, key, "expected a boolean, got " + type_name(node));
  return std::nullopt;
}

std::optional<bool> TomlReader::get_bool(const Scope& scope, std::string_view name) {
  const toml::node* node = scope.get(name);
  if (!node) return std::nullopt;
  return bool_value(*node, scope.key(name));
}

std::optional<Duration> TomlReader::duration_value(const toml::node& node, const std::string& key) {
  const auto* s = node.as_string();
  if (!s) {
    add(node, key, std::string(duration_hint) + ", got " + type_name(node));
    return std::nullopt;
  }
  const auto duration = parse_duration(s->get());
  if (!duration) {
    add(node, key, std::string(duration_hint) + ", got " + quote(s->get()));
    return std::nullopt;
  }
  // Every duration referrald reads is a timeout, a backoff or an interval:
  // zero would mean "immediately" or "never", never what an operator meant.
  if (duration->count() == 0) {
    add(node, key, "expected a duration greater than 0, got " + quote(s->get()));
    return std::nullopt;
  }
  return duration;
}

void TomlReader::read_duration(const Scope& scope, std::string_view name, Duration& out) {
  if (const toml::node* node = scope.get(name)) {
    if (const auto d = duration_value(*node, scope.key(name))) out = *d;
  }
}

std::optional<TomlReader::StringList> TomlReader::string_list(const toml::node& node, const std::string& key,
                                                              bool allow_single) {
  StringList out;
  if (allow_single && node.is_string()) {
    auto value = string_value(node, key);
    if (!value) return std::nullopt;
    out.emplace_back(std::move(*value), &node);
    return out;
  }
  const auto* array = node.as_array();
  if (!array) {
    add(node, key,
        std::string(allow_single ? "expected a string or an array of strings" : "expected an array of strings") +
            ", got " + type_name(node));
    return std::nullopt;
  }
  bool ok = true;
  for (std::size_t i = 0; i < array->size(); ++i) {
    const toml::node& element = *array->get(i);
    auto value = string_value(element, indexed(key, i));
    if (value) {
      out.emplace_back(std::move(*value), &element);
    } else {
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

const toml::array* TomlReader::array_value(const toml::node& node, const std::string& key) {
  const auto* array = node.as_array();
  if (!array) add(node, key, "expected an array, got " + type_name(node));
  return array;
}

}  // namespace referrald::config
