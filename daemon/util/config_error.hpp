// Configuration problems are collected, not thrown one at a time: an operator
// sees every mistake in one run of --check-config.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace referrald {

struct ConfigProblem {
  std::string file;  // as given to the loader
  int line = 0;      // 1-based; 0 when the problem has no position
  std::string key;   // dotted path, e.g. "target[2].port" or "http.listen"
  std::string message;

  // "FILE:LINE: key: message" (LINE omitted when 0, key omitted when empty).
  std::string to_string() const;
};

class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<ConfigProblem> problems);
  const std::vector<ConfigProblem>& problems() const noexcept { return problems_; }

 private:
  std::vector<ConfigProblem> problems_;
};

}  // namespace referrald
