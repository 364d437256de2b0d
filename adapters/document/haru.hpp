// What the documents drawn with libharu share (referral_pdf.cpp,
// fax_document.cpp): its error handler and a document's bytes.
#pragma once

#include <hpdf.h>

#include <memory>
#include <string>
#include <type_traits>

namespace referrald {

// Every page is US Letter, in points, with the same margins.
inline constexpr float page_width = 612;
inline constexpr float page_height = 792;
inline constexpr float margin = 54;

// The first error libharu reports (its handler records; nothing throws
// through the C library).
struct HaruError {
  HPDF_STATUS error = HPDF_OK;
  HPDF_STATUS detail = 0;
};

void on_haru_error(HPDF_STATUS error, HPDF_STATUS detail, void* user);

using DocHandle = std::unique_ptr<std::remove_pointer_t<HPDF_Doc>, decltype(&HPDF_Free)>;

// A new document reporting into `error`; throws DocumentError when libharu
// cannot make one.
DocHandle new_haru_document(HaruError& error);

// The document as PDF bytes; throws DocumentError naming libharu's error
// when one was reported while drawing or saving.
std::string haru_document_bytes(HPDF_Doc doc, const HaruError& error);

}  // namespace referrald
