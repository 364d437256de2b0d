#include "util/config_error.hpp"

namespace referrald {
namespace {

std::string summary(const std::vector<ConfigProblem>& problems) {
  std::string out;
  for (const auto& p : problems) {
    if (!out.empty()) out += '\n';
    out += p.to_string();
  }
  return out;
}

}  // namespace

std::string ConfigProblem::to_string() const {
  std::string out = file;
  if (line > 0) {
    out += ':';
    out += std::to_string(line);
  }
  out += ": ";
  if (!key.empty()) {
    out += key;
    out += ": ";
  }
  out += message;
  return out;
}

ConfigError::ConfigError(std::vector<ConfigProblem> problems)
    : std::runtime_error(summary(problems)), problems_(std::move(problems)) {}

}  // namespace referrald
