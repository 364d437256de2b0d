// What the fuzz targets share: where the tree is, and how a broken
// invariant ends the run (libFuzzer saves the input that did it).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

namespace referrald::fuzz {

inline std::filesystem::path source_path(const char* relative) {
  return std::filesystem::path(REFERRALD_SOURCE_DIR) / relative;
}

// A promise of the code under test that this input broke: a finding, as
// much as a crash. abort() makes libFuzzer write the crash artifact.
[[noreturn]] inline void fail(std::string_view what) {
  std::fprintf(stderr, "fuzz invariant broken: %.*s\n", static_cast<int>(what.size()), what.data());
  std::abort();
}

inline void require(bool ok, std::string_view what) {
  if (!ok) fail(what);
}

inline bool is_printable_ascii(std::string_view text) {
  for (const char c : text) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

}  // namespace referrald::fuzz
