// Files that hold patient data or a daemon's state: written whole, 0600,
// never through a link.
#pragma once

#include <filesystem>
#include <string_view>
#include <system_error>

namespace referrald {

// Writes all of data to fd, again after EINTR and short writes. False, with
// errno set, when a write fails.
bool write_all(int fd, std::string_view data);

// A replace_file that failed: code() is the errno, step() the system call
// ("open", "write", "fsync", "rename"), what() names the step and the file.
class FileWriteError : public std::system_error {
 public:
  FileWriteError(int error, const char* step, const std::filesystem::path& file);
  const char* step() const noexcept { return step_; }

 private:
  const char* step_;
};

// Makes the entries of `directory` (a file just created or renamed there)
// durable: fsync of the directory itself. False, with errno set, when it
// cannot be opened or synced.
bool sync_directory(const std::filesystem::path& directory);

// Puts text at path so that a reader finds the old file or the new one,
// never part of one, and a crash after the return keeps the new one: the
// text goes to temp_name (a file name, in path's directory; 0600, not
// followed if it is a link), is fsync'd, renamed over path, and the
// directory is fsync'd. On failure the temporary file is removed and
// FileWriteError thrown.
void replace_file(const std::filesystem::path& path, std::string_view text, std::string_view temp_name);

}  // namespace referrald
