// What qpdf makes of a PDF: whether it opens, is encrypted, and its pages.
// Kept apart from inspect.cpp, and free of the project's C++20 headers, so
// that clang can compile it as C++17: qpdf 11.3's JSON.hh does not compile
// with clang 14 and libstdc++ 12 as C++20 (a std::vector of the class being
// defined, destroyed in a defaulted destructor inside it), which the fuzz
// build (clang) would otherwise trip on.
#pragma once

#include <string_view>

namespace referrald {

struct PdfCheck {
  bool readable = false;   // qpdf opened it: not damaged, not cut short
  bool encrypted = false;  // a password or restrictions
  int pages = 0;
};

PdfCheck check_pdf(std::string_view bytes);

}  // namespace referrald
