// Directories for files that hold PHI (the database, the spool).
#pragma once

#include <filesystem>

namespace referrald {

// Creates dir and every missing parent 0700. A parent made under the
// process's umask (often 0755) would let anyone on the machine list what is
// in it. Directories that already exist are left as the operator made them;
// errors are left for the write that follows to name.
void create_private_directories(const std::filesystem::path& dir);

}  // namespace referrald
