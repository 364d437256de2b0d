#include "http/kept_files.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <iterator>

#include "util/crypto.hpp"

namespace referrald::http {

namespace {

void wipe(std::string& bytes) {
  if (!bytes.empty()) OPENSSL_cleanse(bytes.data(), bytes.size());
  bytes.clear();
  bytes.shrink_to_fit();
}

std::string new_file_id() {
  const auto bytes = random_bytes(16);
  return to_hex(bytes.data(), bytes.size());
}

}  // namespace

KeptFiles::~KeptFiles() {
  while (!entries_.empty()) drop(entries_.begin());
}

void KeptFiles::drop(std::map<std::string, Entry>::iterator it) {
  for (auto& f : it->second.files) {
    wipe(f.data);
    wipe(f.title);
  }
  bytes_ -= it->second.bytes;
  entries_.erase(it);
}

void KeptFiles::expire(Clock::time_point now) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    const auto next = std::next(it);
    if (now - it->second.kept_at >= limits_.max_age) drop(it);
    it = next;
  }
}

KeptFiles::Found KeptFiles::find(const std::string& form, const std::vector<std::string>& ids, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  expire(now);
  Found found;
  const auto it = entries_.find(form);
  for (const auto& id : ids) {
    const File* file = nullptr;
    if (it != entries_.end()) {
      const auto& files = it->second.files;
      const auto f = std::find_if(files.begin(), files.end(), [&id](const File& k) { return k.id == id; });
      if (f != files.end()) file = &*f;
    }
    if (file == nullptr) {
      ++found.missing;
    } else {
      found.files.push_back(*file);
    }
  }
  return found;
}

bool KeptFiles::keep(const std::string& form, std::vector<File>& files, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  expire(now);
  if (const auto it = entries_.find(form); it != entries_.end()) drop(it);
  if (files.empty()) return true;
  std::size_t bytes = 0;
  for (const auto& f : files) bytes += f.data.size() + f.title.size();
  if (bytes > limits_.max_bytes) return false;
  // Room: the forms that came back longest ago go first.
  while (!entries_.empty() && (bytes_ + bytes > limits_.max_bytes || entries_.size() + 1 > limits_.max_forms)) {
    drop(std::min_element(entries_.begin(), entries_.end(),
                          [](const auto& a, const auto& b) { return a.second.kept_at < b.second.kept_at; }));
  }
  for (auto& f : files) {
    if (f.id.empty()) f.id = new_file_id();
  }
  entries_[form] = Entry{files, bytes, now};
  bytes_ += bytes;
  return true;
}

void KeptFiles::forget(const std::string& form) {
  std::lock_guard lock(mutex_);
  if (const auto it = entries_.find(form); it != entries_.end()) drop(it);
}

std::size_t KeptFiles::bytes() const {
  std::lock_guard lock(mutex_);
  return bytes_;
}

}  // namespace referrald::http
