// What qpdf makes of a PDF: whether it opens, is encrypted, and its pages.
// Kept apart from inspect.cpp, and free of the project's C++20 headers, so
// that clang can compile it as C++17: qpdf 11.3's JSON.hh does not compile
// with clang 14 and libstdc++ 12 as C++20 (a std::vector of the class being
// defined, destroyed in a defaulted destructor inside it), which the fuzz
// build (clang) would otherwise trip on.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "util/file_reader.hpp"

namespace referrald {

struct PdfCheck {
  bool readable = false;   // qpdf opened it: not damaged, not cut short
  bool encrypted = false;  // a password or restrictions
  int pages = 0;
};

// qpdf reads the file through `file` (an InputSource over it: a spooled
// file a block at a time); throws what a read of the spool threw.
PdfCheck check_pdf(FileReader& file);
PdfCheck check_pdf(std::string_view bytes);

// Pages [first, first + count) of one PDF (count -1: to its last page).
struct PdfPages {
  std::string_view pdf;
  int first = 0;
  int count = -1;
};

// The pages of each part, in order, as one PDF (a fax: the cover sheet and
// referral, then each attachment). Every part must be a readable,
// unencrypted PDF (as check_pdf finds); throws std::runtime_error otherwise,
// with no content of the files in its message.
std::string merge_pdfs(const std::vector<PdfPages>& parts);

}  // namespace referrald
