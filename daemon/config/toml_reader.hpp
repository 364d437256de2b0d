// The layer every configuration file shares on top of toml++ (referrald.toml,
// the rules file): problems collected with FILE:LINE instead of thrown one at
// a time, typed getters whose messages name the key, unknown-key checks, and
// the quoting of values echoed in messages. One reader, one message format:
//   FILE:LINE: key: message
//   FILE:LINE: http.listn: unknown key (known: listen, tls_certificate, ...)
//   FILE:LINE: http.threads: expected an integer, got string
//   FILE:LINE: http.threads: expected 1..256, got 300
//   FILE: storage.database: required
#pragma once

#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <toml++/toml.h>

#include "util/config_error.hpp"
#include "util/strings.hpp"
#include "util/duration.hpp"

namespace referrald::config {

// What toml++ calls a node's type, for "expected X, got TYPE": "string",
// "integer", "float", "boolean", "date", "time", "date-time", "array", "table".
// The type rather than the value: a value in the wrong place may be a secret.
std::string type_name(const toml::node& node);

// A value echoed in a message, in double quotes; quotes, backslashes and
// control characters escaped so a terminal line cannot be garbled.
std::string quote(std::string_view text);

bool contains(std::span<const std::string_view> items, std::string_view item);

// "target[2]".
std::string indexed(std::string_view key, std::size_t index);

// "http" + "listen" -> "http.listen"; "" + "http" -> "http".
std::string join_key(std::string_view prefix, std::string_view key);

// A file's text; throws ConfigError ("FILE: file not found", "not a regular
// file", "cannot be read: ...") when it cannot be had.
std::string read_file_text(const std::filesystem::path& file);

// Where a problem is: the line goes into the message; the column only keeps
// several problems on one line (an inline table) in reading order.
struct Where {
  Where(int line_number = 0, int column_number = 0) : line(line_number), column(column_number) {}
  Where(const toml::source_region& source)
      : line(static_cast<int>(source.begin.line)), column(static_cast<int>(source.begin.column)) {}
  Where(const toml::node& node) : Where(node.source()) {}
  int line;
  int column;
};

// A table being read, with the dotted prefix its keys report under and the
// line of its header (0 when the file does not have it).
struct Scope {
  explicit Scope(const toml::table* scope_table = nullptr, std::string key_prefix = {}, int header_line = 0,
                 bool already_reported = false, int header_column = 0)
      : table(scope_table),
        prefix(std::move(key_prefix)),
        line(header_line),
        reported(already_reported),
        column(header_column) {}

  const toml::table* table;
  std::string prefix;
  int line;
  // A section of the wrong type has already been reported; what it would
  // have held is not reported missing on top.
  bool reported;
  int column;  // of the header: a key missing from an inline table sorts there

  const toml::node* get(std::string_view key) const { return table ? table->get(key) : nullptr; }
  std::string key(std::string_view name) const { return join_key(prefix, name); }
};

// The whole document: keys report under their own names.
inline Scope top_scope(const toml::table& root) { return Scope(&root); }

class TomlReader {
 public:
  explicit TomlReader(std::string file) : file_(std::move(file)) {}

  const std::string& file() const { return file_; }

  void add(Where at, std::string key, std::string message);
  bool has_problems() const { return !problems_.empty(); }
  std::size_t problem_count() const { return problems_.size(); }
  // In the order the operator reads the file; those without a line (a
  // missing setting) last.
  std::vector<ConfigProblem> sorted_problems() const;
  // Throws ConfigError with sorted_problems() when there are any.
  void throw_if_problems() const;

  // nullopt: the syntax error is a problem.
  std::optional<toml::table> parse(std::string_view text);

  // The scope of root[name]; an absent section is an empty scope, one that
  // is not a table is reported.
  Scope section(const toml::table& root, std::string_view name);
  // A scope over a node that must be a table (reported otherwise: nullopt).
  std::optional<Scope> table_scope(const toml::node& node, std::string key);
  // "unknown key (known: a, b, c)" for every key of the scope not in `known`.
  void check_keys(const Scope& scope, std::span<const std::string_view> known);
  void check_keys(const Scope& scope, std::initializer_list<std::string_view> known) {
    check_keys(scope, std::span<const std::string_view>(known.begin(), known.size()));
  }
  // root[name] as an array of tables ([[name]]); nullptr when absent or reported.
  const toml::array* array_of_tables(const Scope& scope, std::string_view name);

  // The node, or nullptr; reported at the scope's line when missing.
  const toml::node* required(const Scope& scope, std::string_view name, std::string_view message = "required");
  const toml::node* member(const Scope& scope, std::string_view name, bool is_required) {
    return is_required ? required(scope, name) : scope.get(name);
  }

  // A non-empty string.
  std::optional<std::string> string_value(const toml::node& node, const std::string& key);
  std::optional<std::string> get_string(const Scope& scope, std::string_view name, bool is_required = false);
  // A string among `known`: "unknown WHAT "x" (known: a, b)" otherwise.
  std::optional<std::string> enum_value(const toml::node& node, const std::string& key, std::string_view what,
                                        std::span<const std::string_view> known);
  std::optional<std::string> get_enum(const Scope& scope, std::string_view name, std::string_view what,
                                      std::span<const std::string_view> known);
  // An integer in min..max.
  std::optional<std::int64_t> integer_value(const toml::node& node, const std::string& key, std::int64_t min,
                                            std::int64_t max);
  std::optional<std::int64_t> get_integer(const Scope& scope, std::string_view name, std::int64_t min, std::int64_t max,
                                          bool is_required = false);
  template <class T>
  void read_integer(const Scope& scope, std::string_view name, std::int64_t min, std::int64_t max, T& out) {
    if (const auto v = get_integer(scope, name, min, max)) out = static_cast<T>(*v);
  }
  std::optional<bool> bool_value(const toml::node& node, const std::string& key);
  std::optional<bool> get_bool(const Scope& scope, std::string_view name);
  // A duration ("30s", "1h30m") greater than zero.
  std::optional<Duration> duration_value(const toml::node& node, const std::string& key);
  void read_duration(const Scope& scope, std::string_view name, Duration& out);

  // A string or (when allow_single) an array of non-empty strings, each with
  // its node so callers can point at the element's line. nullopt when any
  // element is wrong (each reported).
  using StringList = std::vector<std::pair<std::string, const toml::node*>>;
  std::optional<StringList> string_list(const toml::node& node, const std::string& key, bool allow_single);
  // The array at the node, reported when it is not one.
  const toml::array* array_value(const toml::node& node, const std::string& key);

 private:
  std::string file_;  // as given, for messages
  std::vector<ConfigProblem> problems_;
  std::vector<int> columns_;  // parallel to problems_
};

}  // namespace referrald::config
