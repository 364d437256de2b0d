#include "cli/output.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <ostream>

namespace referrald::cli {

std::string Style::paint(std::string_view text, Colour c) const {
  if (!colour || c == Colour::none || text.empty()) return std::string(text);
  const char* code = "";
  switch (c) {
    case Colour::none: break;
    case Colour::red: code = "31"; break;
    case Colour::green: code = "32"; break;
    case Colour::yellow: code = "33"; break;
    case Colour::blue: code = "34"; break;
    case Colour::cyan: code = "36"; break;
    case Colour::dim: code = "2"; break;
    case Colour::bold: code = "1"; break;
  }
  return "\x1b[" + std::string(code) + "m" + std::string(text) + "\x1b[0m";
}

Style detect_style(std::string_view mode) {
  if (mode == "always") return Style{true};
  if (mode == "never") return Style{false};
  const char* no_color = std::getenv("NO_COLOR");
  if (no_color != nullptr && no_color[0] != '\0') return Style{false};
  const char* term = std::getenv("TERM");
  if (term != nullptr && std::string_view(term) == "dumb") return Style{false};
  return Style{::isatty(STDOUT_FILENO) == 1};
}

std::string local_time(TimePoint t) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(std::chrono::floor<std::chrono::seconds>(t));
  std::tm tm{};
  ::localtime_r(&seconds, &tm);
  char buffer[32];
  const auto n = std::strftime(buffer, sizeof buffer, "%Y-%m-%d %H:%M:%S", &tm);
  return std::string(buffer, n);
}

std::string short_duration(std::chrono::milliseconds d) {
  using namespace std::chrono;
  auto s = duration_cast<seconds>(d).count();
  if (s < 60) return std::to_string(s) + "s";
  const auto m = s / 60;
  if (m < 60) return std::to_string(m) + "m" + (s % 60 != 0 ? std::to_string(s % 60) + "s" : "");
  const auto h = m / 60;
  if (h < 24) return std::to_string(h) + "h" + (m % 60 != 0 ? std::to_string(m % 60) + "m" : "");
  const auto days = h / 24;
  return std::to_string(days) + "d" + (h % 24 != 0 ? std::to_string(h % 24) + "h" : "");
}

std::string relative_time(TimePoint t, TimePoint now) {
  using namespace std::chrono;
  const auto d = duration_cast<milliseconds>(t - now);
  if (d > -1s && d < 1s) return "now";
  if (d > 0ms) return "in " + short_duration(d);
  return short_duration(-d) + " ago";
}

std::string grouped(std::int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::size_t display_width(std::string_view text) {
  return static_cast<std::size_t>(
      std::count_if(text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

Table::Table(std::vector<std::string> headers, std::string indent)
    : headers_(std::move(headers)), indent_(std::move(indent)) {}

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '\n' || c == '\r' || c == '\t') {
      out += ' ';
    } else if (c < 0x20 || c == 0x7f) {
      out += '?';
    } else if (c == 0xc2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(text[i + 1]) <= 0x9f) {
      out += '?';  // a C1 control character (U+0080..U+009F), e.g. CSI
      ++i;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

void Table::add(std::vector<Cell> row) {
  for (auto& cell : row) {
    if (!cell.painted) cell.text = printable(cell.text);
  }
  row.resize(headers_.size());
  rows_.push_back(std::move(row));
}

void Table::print(std::ostream& out, const Style& style) const {
  std::vector<std::size_t> widths(headers_.size(), 0);
  for (std::size_t i = 0; i < headers_.size(); ++i) widths[i] = display_width(headers_[i]);
  for (const auto& row : rows_) {
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], display_width(row[i].text));
  }
  const auto line = [&](const std::vector<Cell>& cells) {
    std::string text = indent_;
    for (std::size_t i = 0; i < cells.size(); ++i) {
      const bool last = i + 1 == cells.size();
      text += style.paint(cells[i].text, cells[i].colour);
      if (!last) text += std::string(widths[i] - display_width(cells[i].text) + 2, ' ');
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    out << text << '\n';
  };
  std::vector<Cell> header;
  for (const auto& h : headers_) header.push_back({h, Colour::bold});
  line(header);
  for (const auto& row : rows_) line(row);
}

}  // namespace referrald::cli
