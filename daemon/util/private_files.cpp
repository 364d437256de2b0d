#include "util/private_files.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace referrald {

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

bool sync_directory(const std::filesystem::path& directory) {
  const int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool synced = ::fsync(fd) == 0;
  const int error = errno;
  ::close(fd);
  errno = error;
  return synced;
}

FileWriteError::FileWriteError(int error, const char* step, const std::filesystem::path& file)
    : std::system_error(error, std::generic_category(), std::string(step) + " " + file.string()), step_(step) {}

void replace_file(const std::filesystem::path& path, std::string_view text, std::string_view temp_name) {
  const auto directory = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  const auto temp_path = directory / temp_name;
  const int fd = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) throw FileWriteError(errno, "open", temp_path);
  const auto fail = [&](const char* step, const std::filesystem::path& file) {
    const int error = errno;
    ::unlink(temp_path.c_str());
    throw FileWriteError(error, step, file);
  };
  if (!write_all(fd, text)) {
    ::close(fd);
    fail("write", temp_path);
  }
  if (::fsync(fd) != 0) {
    ::close(fd);
    fail("fsync", temp_path);
  }
  ::close(fd);
  if (::rename(temp_path.c_str(), path.c_str()) != 0) fail("rename", path);
  // The rename is durable only once the directory is synced.
  sync_directory(directory);
}

}  // namespace referrald
