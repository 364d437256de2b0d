#include "util/key_ring.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <stdexcept>

#include "util/crypto.hpp"

namespace referrald {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

// Splits a line on spaces and tabs.
std::vector<std::string_view> fields_of(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_space(line[i])) ++i;
    const std::size_t start = i;
    while (i < line.size() && !is_space(line[i])) ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

// Text that held key material is wiped before its memory is given back.
struct WipeOnExit {
  std::string& text;
  ~WipeOnExit() { OPENSSL_cleanse(text.data(), text.size()); }
};

std::string octal_mode(mode_t mode) {
  char buffer[8];
  std::snprintf(buffer, sizeof buffer, "%04o", static_cast<unsigned>(mode & 07777));
  return buffer;
}

}  // namespace

KeyRing::KeyRing(std::vector<PayloadKey> keys) : keys_(std::move(keys)) {
  if (keys_.empty()) throw std::invalid_argument("a key ring needs at least one key");
  for (std::size_t i = 0; i < keys_.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (keys_[i].id == keys_[j].id) throw std::invalid_argument("duplicate key id " + keys_[i].id);
    }
  }
}

KeyRing::~KeyRing() {
  for (auto& key : keys_) OPENSSL_cleanse(key.bytes.data(), key.bytes.size());
}

const PayloadKey* KeyRing::find(std::string_view id) const noexcept {
  for (const auto& key : keys_) {
    if (key.id == id) return &key;
  }
  return nullptr;
}

std::string KeyRing::ids() const {
  std::string out;
  for (const auto& key : keys_) out += (out.empty() ? "" : ", ") + key.id;
  return out;
}

std::string KeyFileProblem::to_string() const { return line > 0 ? std::to_string(line) + ": " + message : message; }

bool is_key_id(std::string_view id) noexcept {
  return !id.empty() && id.size() <= max_key_id_length && std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}

std::shared_ptr<const KeyRing> parse_key_file(std::string_view text, std::vector<KeyFileProblem>& problems) {
  const std::size_t problems_before = problems.size();
  std::vector<PayloadKey> keys;
  // Reserved up front: a reallocation would leave copies of keys behind unwiped.
  keys.reserve(static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')) + 1);
  std::map<std::string, int, std::less<>> first_line;
  int line_number = 0;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    const std::size_t end = std::min(text.find('\n', pos), text.size());
    const std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_number;
    const auto fields = fields_of(line);
    if (fields.empty() || fields.front().front() == '#') continue;
    // Nothing of the line is echoed unless it is known to be an id: a
    // mistake here is often the key itself in the wrong place.
    if (fields.size() != 2) {
      problems.push_back({line_number, R"(expected "<key-id> <64 hex digits>")"});
      continue;
    }
    const std::string_view id = fields[0], hex = fields[1];
    if (!is_key_id(id)) {
      problems.push_back({line_number, "a key id is 1 to " + std::to_string(max_key_id_length) +
                                           R"( letters, digits, ".", "_" or "-")"});
      continue;
    }
    PayloadKey key;
    key.id = std::string(id);
    if (!from_hex(hex, key.bytes.data(), key.bytes.size())) {
      OPENSSL_cleanse(key.bytes.data(), key.bytes.size());
      problems.push_back(
          {line_number, "key \"" + key.id + "\": expected " + std::to_string(2 * payload_key_bytes) +
                            " hex digits (openssl rand -hex 32), got " +
                            (hex.size() == 2 * payload_key_bytes ? std::string("a character that is not a hex digit")
                                                                 : std::to_string(hex.size()) + " characters")});
      continue;
    }
    const auto [it, inserted] = first_line.emplace(key.id, line_number);
    if (!inserted) {
      OPENSSL_cleanse(key.bytes.data(), key.bytes.size());
      problems.push_back(
          {line_number, "key \"" + key.id + "\" is listed twice (first at line " + std::to_string(it->second) + ")"});
      continue;
    }
    keys.push_back(key);
    OPENSSL_cleanse(key.bytes.data(), key.bytes.size());
  }
  // Keys parsed before a problem was found are wiped here (KeyRing's
  // destructor does it for a ring that is built).
  if (problems.size() != problems_before || keys.empty()) {
    if (problems.size() == problems_before) problems.push_back({0, "holds no key"});
    for (auto& key : keys) OPENSSL_cleanse(key.bytes.data(), key.bytes.size());
    return nullptr;
  }
  return std::make_shared<const KeyRing>(std::move(keys));
}

std::shared_ptr<const KeyRing> read_key_file(const std::filesystem::path& file, KeyFilePrivacy privacy,
                                             std::vector<KeyFileProblem>& problems) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    problems.push_back({0, std::string("cannot read: ") + std::strerror(errno)});
    return nullptr;
  }
  struct CloseOnExit {
    int fd;
    ~CloseOnExit() { ::close(fd); }
  } close_on_exit{fd};
  // The mode of the file that was opened, not of whatever the path names now.
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    problems.push_back({0, "not a regular file"});
    return nullptr;
  }
  if (privacy == KeyFilePrivacy::owner_only && (st.st_mode & 077) != 0) {
    problems.push_back({0, "may be read or written by group or others (mode " + octal_mode(st.st_mode) +
                               "); make it private to referrald's user (chmod 600)"});
    return nullptr;
  }
  constexpr off_t limit = 64 * 1024;  // thousands of keys; anything larger is not a key file
  if (st.st_size > limit) {
    problems.push_back({0, "is larger than a key file can be (" + std::to_string(limit) + " bytes)"});
    return nullptr;
  }
  std::string text(static_cast<std::size_t>(st.st_size), '\0');
  WipeOnExit wipe{text};
  std::size_t have = 0;
  while (have < text.size()) {
    const ssize_t n = ::read(fd, text.data() + have, text.size() - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      problems.push_back({0, std::string("cannot read: ") + std::strerror(errno)});
      return nullptr;
    }
    if (n == 0) break;
    have += static_cast<std::size_t>(n);
  }
  return parse_key_file(std::string_view(text).substr(0, have), problems);
}

}  // namespace referrald
