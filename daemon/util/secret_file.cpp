#include "util/secret_file.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace referrald {

std::optional<std::string> read_secret_file(const std::string& path, const std::string& label, std::string* problem) {
  const std::string name = label + path;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (problem != nullptr) *problem = "cannot read " + name + ": " + std::strerror(errno);
    return std::nullopt;
  }
  std::ostringstream s;
  s << in.rdbuf();
  std::string secret = s.str();
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.empty()) {
    if (problem != nullptr) *problem = name + " is empty";
    return std::nullopt;
  }
  if (secret.find_first_of("\r\n") != std::string::npos) {
    if (problem != nullptr) *problem = name + " holds more than one line";
    return std::nullopt;
  }
  return secret;
}

}  // namespace referrald
