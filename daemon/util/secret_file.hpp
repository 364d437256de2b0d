// Secrets kept in files (password_file, security_code_file, systemd
// credentials): one line, read once when a target is built.
#pragma once

#include <optional>
#include <string>

namespace referrald {

// The file's content without its trailing CR/LF; nullopt with the reason in
// *problem when it cannot be read, is empty or holds more than one line. The
// reason names the file as `label` + path (e.g. "password_file /etc/x"),
// never the secret.
std::optional<std::string> read_secret_file(const std::string& path, const std::string& label, std::string* problem);

}  // namespace referrald
