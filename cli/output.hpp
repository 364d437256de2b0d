// Human output for referralctl: aligned tables, local times, colour only on
// a terminal. Plain text in, text out; nothing here knows the store.
#pragma once

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace referrald::cli {

using TimePoint = std::chrono::system_clock::time_point;

enum class Colour { none, red, green, yellow, blue, cyan, dim, bold };

// Whether escape sequences are written at all.
struct Style {
  bool colour = false;
  std::string paint(std::string_view text, Colour c) const;
};

// colour when `mode` is "always", or "auto" and stdout is a terminal, TERM is
// not "dumb" and NO_COLOR is unset or empty (https://no-color.org).
Style detect_style(std::string_view mode);

// "2026-11-28 07:00:25" in the local time zone (TZ is honoured).
std::string local_time(TimePoint t);
// "in 4m", "12s ago", "now": the distance between t and now, rounded down
// to its two largest units ("3h12m ago", "2d4h ago").
std::string relative_time(TimePoint t, TimePoint now);
std::string short_duration(std::chrono::milliseconds d);
// 1234567 -> "1,234,567".
std::string grouped(std::int64_t n);

struct Cell {
  std::string text;
  Colour colour = Colour::none;
  // Already painted by the caller (its escape sequences are kept); every
  // other cell is passed through printable().
  bool painted = false;
};

// Text from a referral or a peer made safe for a terminal: line breaks and
// tabs become spaces, other control characters (ESC above all) "?".
std::string printable(std::string_view text);

// Columns padded to their widest cell (in code points, escape sequences
// not counted), two spaces apart; the last column is not padded.
class Table {
 public:
  explicit Table(std::vector<std::string> headers, std::string indent = {});
  void add(std::vector<Cell> row);
  bool empty() const { return rows_.empty(); }
  void print(std::ostream& out, const Style& style) const;

 private:
  std::vector<std::string> headers_;
  std::string indent_;
  std::vector<std::vector<Cell>> rows_;
};

// Display width of UTF-8 text, in code points.
std::size_t display_width(std::string_view text);

}  // namespace referrald::cli
