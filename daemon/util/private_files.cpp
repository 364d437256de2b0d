#include "util/private_files.hpp"

#include <fcntl.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>

namespace referrald {

namespace {

// Whether syncfs(2) of the file system `dir` is on is a barrier to count
// on: it reports write-back errors from Linux 5.8 on (before, it returned 0
// after one), and it is known to write back and flush on ext4, XFS and
// Btrfs (a FUSE or network file system may do less than fsync would).
// Elsewhere each file is fsynced.
bool syncfs_is_a_barrier(int dir) {
  static const bool kernel = [] {
    utsname name{};
    if (::uname(&name) != 0) return false;
    unsigned major = 0, minor = 0;
    if (std::sscanf(name.release, "%u.%u", &major, &minor) != 2) return false;
    return major > 5 || (major == 5 && minor >= 8);
  }();
  if (!kernel) return false;
  struct statfs fs {};
  if (::fstatfs(dir, &fs) != 0) return false;
  constexpr decltype(fs.f_type) ext4 = 0xEF53, xfs = 0x58465342, btrfs = 0x9123683E;
  return fs.f_type == ext4 || fs.f_type == xfs || fs.f_type == btrfs;
}

}  // namespace

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
  auto errors = replace_files(directory, {{path.filename().string(), text, std::string(temp_name)}});
  if (errors.front()) throw *errors.front();
}

std::vector<std::optional<FileWriteError>> replace_files(const std::filesystem::path& directory,
                                                         const std::vector<FileToReplace>& files) {
  std::vector<std::optional<FileWriteError>> errors(files.size());
  std::vector<int> fds(files.size(), -1);
  int dir = -1;
  const auto temp_path = [&](std::size_t i) { return directory / files[i].temp_name; };
  // Fails file i at `step` with errno (read first: building a path may
  // change it), naming its temporary file or, for the rename, its name; its
  // temporary file goes.
  const auto fail = [&](std::size_t i, const char* step, bool at_name = false) {
    const int error = errno;
    if (fds[i] >= 0) ::close(fds[i]);
    fds[i] = -1;
    ::unlinkat(dir, files[i].temp_name.c_str(), 0);
    errors[i].emplace(error, step, at_name ? directory / files[i].name : temp_path(i));
  };

  // Opened before anything is written: syncfs reports the file system's
  // write-back errors since then (Linux 5.8 and later).
  dir = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) {
    const int error = errno;
    for (auto& e : errors) e.emplace(error, "open", directory);
    return errors;
  }
  try {
    std::size_t written = 0;
    for (std::size_t i = 0; i < files.size(); ++i) {
      fds[i] = ::openat(dir, files[i].temp_name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
      if (fds[i] < 0) {
        const int error = errno;
        errors[i].emplace(error, "open", temp_path(i));
        continue;
      }
      if (!write_all(fds[i], files[i].text)) {
        fail(i, "write");
        continue;
      }
      ++written;
    }

    // The data barrier: every written file durable before any is renamed, so
    // a crash never leaves a name on a file that is not whole.
    bool together = false;
    if (written > 1 && syncfs_is_a_barrier(dir)) {
      if (::syncfs(dir) == 0) {
        together = true;
      } else if (errno != ENOSYS && errno != EPERM) {
        // A write-back error somewhere on the file system, perhaps in one of
        // these files: none of them is known to be durable.
        const int error = errno;
        for (std::size_t i = 0; i < files.size(); ++i) {
          if (fds[i] < 0) continue;
          errno = error;
          fail(i, "fsync");
        }
      }
    }
    for (std::size_t i = 0; i < files.size(); ++i) {
      if (fds[i] < 0) continue;
      if (!together && ::fsync(fds[i]) != 0) {
        fail(i, "fsync");
        continue;
      }
      ::close(fds[i]);
      fds[i] = -1;
      if (::renameat(dir, files[i].temp_name.c_str(), dir, files[i].name.c_str()) != 0) {
        fail(i, "rename", /*at_name=*/true);
        continue;
      }
    }

    // The renames are durable only once the directory is synced.
    bool renamed = false;
    for (const auto& e : errors) renamed = renamed || !e;
    if (renamed && ::fsync(dir) != 0) {
      const int error = errno;
      for (auto& e : errors) {
        if (!e) e.emplace(error, "fsync", directory);
      }
    }
  } catch (...) {
    // No memory for a path or an error: nothing is left open.
    for (const int fd : fds) {
      if (fd >= 0) ::close(fd);
    }
    ::close(dir);
    throw;
  }
  ::close(dir);
  return errors;
}

}  // namespace referrald
