// A small tmpfs for disk-full tests: mounted where the test says (mount(2):
// root only; a test skips when mounted() is false), filled with a ballast
// file and drained again, unmounted at the end.
#pragma once

#include <sys/mount.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "support/harness.hpp"

namespace referrald::test {

// `options`: tmpfs's, e.g. "size=4m" or "size=2m,mode=0700".
class SmallDisk {
 public:
  explicit SmallDisk(const std::filesystem::path& dir, const char* options = "size=4m") : dir_(dir) {
    std::filesystem::create_directories(dir_);
    mounted_ = ::mount("tmpfs", dir_.c_str(), "tmpfs", 0, options) == 0;
  }
  ~SmallDisk() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  bool remount(bool read_only) {
    return ::mount("tmpfs", dir_.c_str(), "tmpfs", MS_REMOUNT | (read_only ? MS_RDONLY : 0), nullptr) == 0;
  }
  // Fills the filesystem to the last byte with a ballast file.
  void fill() { shell("dd if=/dev/zero of=" + (dir_ / "ballast").string() + " bs=64k >/dev/null 2>&1"); }
  // Fills it but for about `room` bytes.
  void fill_leaving(std::uintmax_t room) {
    const auto free = std::filesystem::space(dir_).available;
    if (free > room) shell("fallocate -l " + std::to_string(free - room) + " " + (dir_ / "ballast").string());
  }
  void drain() { std::filesystem::remove(dir_ / "ballast"); }

 private:
  std::filesystem::path dir_;
  bool mounted_ = false;
};

}  // namespace referrald::test
