#include "adapters/hylafax/hylafax_protocol.hpp"
#include "util/strings.hpp"

#include <algorithm>
#include <array>
#include <cctype>

namespace referrald::hylafax {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Reads an unsigned decimal at `pos` (at most 6 digits); advances pos.
std::optional<unsigned> read_number(std::string_view text, std::size_t& pos) {
  const std::size_t start = pos;
  unsigned value = 0;
  while (pos < text.size() && is_digit(text[pos]) && pos - start < 6) {
    value = value * 10 + static_cast<unsigned>(text[pos] - '0');
    ++pos;
  }
  if (pos == start || (pos < text.size() && is_digit(text[pos]))) return std::nullopt;
  return value;
}

}  // namespace

std::optional<std::uint16_t> parse_pasv_port(std::string_view text) {
  // The six numbers may or may not be in parentheses (RFC 959 leaves the
  // text free): take the first run of six comma-separated numbers.
  for (std::size_t start = 0; start < text.size(); ++start) {
    if (!is_digit(text[start]) || (start > 0 && is_digit(text[start - 1]))) continue;
    std::array<unsigned, 6> n{};
    std::size_t pos = start;
    bool ok = true;
    for (std::size_t i = 0; i < n.size() && ok; ++i) {
      const auto value = read_number(text, pos);
      if (!value || *value > 255) {
        ok = false;
        break;
      }
      n[i] = *value;
      if (i + 1 < n.size()) {
        if (pos >= text.size() || text[pos] != ',') ok = false;
        ++pos;
      }
    }
    if (!ok) continue;
    const unsigned port = n[4] * 256 + n[5];
    if (port == 0) return std::nullopt;
    return static_cast<std::uint16_t>(port);
  }
  return std::nullopt;
}

std::optional<std::uint16_t> parse_epsv_port(std::string_view text) {
  const auto open = text.find('(');
  if (open == std::string_view::npos || open + 4 >= text.size()) return std::nullopt;
  const char d = text[open + 1];  // the delimiter, "|" by convention
  if (d < 33 || d > 126 || is_digit(d) || text[open + 2] != d || text[open + 3] != d) return std::nullopt;
  std::size_t pos = open + 4;
  const auto port = read_number(text, pos);
  if (!port || *port == 0 || *port > 65535 || pos + 1 >= text.size() || text[pos] != d || text[pos + 1] != ')') {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(*port);
}

std::optional<std::string> parse_stot_file(std::string_view text) {
  constexpr std::string_view marker = "FILE: ";
  const auto at = text.find(marker);
  if (at == std::string_view::npos) return std::nullopt;
  std::size_t start = at + marker.size();
  std::size_t end = start;
  while (end < text.size() && text[end] != ' ' && text[end] != ')' && text[end] != '\t') ++end;
  if (end == start) return std::nullopt;
  std::string path(text.substr(start, end - start));
  if (path.back() == '.') path.pop_back();  // "FILE: /tmp/doc2.pdf." at the end of a sentence
  if (path.empty() || path.front() != '/') return std::nullopt;
  return path;
}

std::optional<std::string> parse_job_id(std::string_view text) {
  // "New job created: jobid: 77 groupid: 77." or "Job 77 submitted."
  std::size_t pos = text.find("jobid:");
  if (pos != std::string_view::npos) {
    pos += 6;
  } else if (text.substr(0, 4) == "Job ") {
    pos = 4;
  } else {
    return std::nullopt;
  }
  while (pos < text.size() && text[pos] == ' ') ++pos;
  const std::size_t start = pos;
  while (pos < text.size() && is_digit(text[pos])) ++pos;
  if (pos == start || pos - start > 10) return std::nullopt;
  return std::string(text.substr(start, pos - start));
}

JobState parse_job_state(std::string_view text) {
  const auto word = upper(text.substr(0, text.find(' ')));
  if (word == "SUSPENDED") return JobState::suspended;
  if (word == "PENDING") return JobState::pending;
  if (word == "SLEEPING") return JobState::sleeping;
  if (word == "BLOCKED") return JobState::blocked;
  if (word == "READY") return JobState::ready;
  if (word == "ACTIVE") return JobState::active;
  if (word == "DONE") return JobState::done;
  if (word == "FAILED") return JobState::failed;
  return JobState::unknown;
}

JobState job_state_from_symbol(char symbol) {
  switch (symbol) {
    case 'T': return JobState::suspended;
    case 'P': return JobState::pending;
    case 'S': return JobState::sleeping;
    case 'B': return JobState::blocked;
    case 'W': return JobState::ready;
    case 'R': return JobState::active;
    case 'D': return JobState::done;
    case 'F': return JobState::failed;
    default: return JobState::unknown;
  }
}

std::string_view to_string(JobState state) {
  switch (state) {
    case JobState::suspended: return "SUSPENDED";
    case JobState::pending: return "PENDING";
    case JobState::sleeping: return "SLEEPING";
    case JobState::blocked: return "BLOCKED";
    case JobState::ready: return "READY";
    case JobState::active: return "ACTIVE";
    case JobState::done: return "DONE";
    case JobState::failed: return "FAILED";
    case JobState::unknown: break;
  }
  return "UNKNOWN";
}

std::vector<ListedJob> parse_job_listing(std::string_view data) {
  std::vector<ListedJob> jobs;
  while (!data.empty()) {
    const auto newline = data.find('\n');
    std::string_view line = data.substr(0, newline);
    data = newline == std::string_view::npos ? std::string_view() : data.substr(newline + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const auto first = line.find('|');
    if (first == std::string_view::npos) continue;
    const auto second = line.find('|', first + 1);
    if (second == std::string_view::npos) continue;
    std::string_view id = line.substr(0, first);
    while (!id.empty() && id.front() == ' ') id.remove_prefix(1);
    while (!id.empty() && id.back() == ' ') id.remove_suffix(1);
    const std::string_view state = line.substr(first + 1, second - first - 1);
    if (id.empty() || !std::all_of(id.begin(), id.end(), is_digit)) continue;
    ListedJob job;
    job.id = std::string(id);
    job.state = state.size() == 1 ? job_state_from_symbol(state[0]) : JobState::unknown;
    job.tag = std::string(line.substr(second + 1));
    while (!job.tag.empty() && job.tag.back() == ' ') job.tag.pop_back();
    jobs.push_back(std::move(job));
  }
  return jobs;
}

bool quotable(std::string_view value) {
  return !value.empty() && std::none_of(value.begin(), value.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return c == '"' || c == '\\' || u < 0x20 || u == 0x7f;
  });
}

std::string job_tag(std::string_view identity) {
  std::string out(identity);
  for (auto& c : out) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' || c == '_' || c == '-';
    if (!ok) c = '_';
  }
  return out;
}

}  // namespace referrald::hylafax
