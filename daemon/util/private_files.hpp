// Files that hold patient data or a daemon's state: written whole, 0600,
// never through a link.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

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

// One file of replace_files: names in the directory, not paths.
struct FileToReplace {
  std::string name;
  std::string_view text;
  std::string temp_name;
};

// replace_file for several files of one directory, with one data barrier
// and one directory fsync for them all rather than one of each per file
// (a spool target's burst of deliveries: bench/README.md, issue 17). Every
// text goes to its temporary file; then all of them are made durable at
// once, by syncfs(2) of the directory's file system (which writes back and
// commits them together; on ext4, XFS or Btrfs under Linux 5.8 or later,
// where it reports write-back errors), or by an fsync of each elsewhere,
// where syncfs is refused, or for one file; then each is renamed into place and the directory
// fsync'd. A file whose step fails has its temporary file removed and does
// not stop the others. Returns, in order, no error or the error of the step
// that failed each file; names in `files` must differ (the same temporary
// name twice would be one file).
std::vector<std::optional<FileWriteError>> replace_files(const std::filesystem::path& directory,
                                                         const std::vector<FileToReplace>& files);

}  // namespace referrald
