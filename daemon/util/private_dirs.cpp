#include "util/private_dirs.hpp"

#include <sys/stat.h>

namespace referrald {

void create_private_directories(const std::filesystem::path& dir) {
  std::filesystem::path prefix;
  for (const auto& part : dir) {
    prefix /= part;
    if (::mkdir(prefix.c_str(), S_IRWXU) == 0) {
      ::chmod(prefix.c_str(), S_IRWXU);  // a umask may have taken bits from the owner too
    }
    // EEXIST (or an error) here: the write names the real problem later.
  }
}

}  // namespace referrald
