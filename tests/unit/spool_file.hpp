// Unit tests that change a spool's file under it (util/sealed_spool.hpp):
// the file has no name, so it is found among this process's descriptors.
#pragma once

#include <filesystem>
#include <fstream>
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

// Changes the byte at `offset` of `file` (to its complement: never to the
// byte it was, which a fixed value would be one time in 256).
inline void change_byte(const std::filesystem::path& file, std::streamoff offset) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(offset);
  const auto byte = static_cast<char>(~f.get());
  f.seekp(offset);
  f.put(byte);
}

}  // namespace referrald::test
