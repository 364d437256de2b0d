// Unit tests that change a spool's file under it (util/sealed_spool.hpp):
// the file has no name, so it is found among this process's descriptors.
#pragma once

#include <filesystem>
#include <string>
#include <system_error>

namespace referrald::test {

// The descriptor (as /proc/self/fd/N) of the spool this process has open in
// `directory`, or an empty path.
inline std::filesystem::path open_spool_file(const std::filesystem::path& directory) {
  for (const auto& fd : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    if (std::filesystem::read_symlink(fd.path(), ec).string().rfind(directory.string() + "/", 0) == 0) return fd.path();
  }
  return {};
}

}  // namespace referrald::test
