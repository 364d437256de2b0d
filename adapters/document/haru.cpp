#include "adapters/document/haru.hpp"

#include <cstdio>

#include "adapters/document/referral_pdf.hpp"

namespace referrald {

void on_haru_error(HPDF_STATUS error, HPDF_STATUS detail, void* user) {
  auto* e = static_cast<HaruError*>(user);
  if (e->error == HPDF_OK) {
    e->error = error;
    e->detail = detail;
  }
}

DocHandle new_haru_document(HaruError& error) {
  DocHandle doc(HPDF_New(on_haru_error, &error), HPDF_Free);
  if (!doc) throw DocumentError("libharu could not create a document");
  return doc;
}

std::string haru_document_bytes(HPDF_Doc doc, const HaruError& error) {
  if (error.error == HPDF_OK) HPDF_SaveToStream(doc);
  if (error.error != HPDF_OK) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "libharu error 0x%04X (detail %u)", static_cast<unsigned>(error.error),
                  static_cast<unsigned>(error.detail));
    throw DocumentError(buf);
  }
  const HPDF_UINT32 expected = HPDF_GetStreamSize(doc);
  std::string pdf(expected, '\0');
  HPDF_UINT32 size = expected;
  HPDF_ReadFromStream(doc, reinterpret_cast<HPDF_BYTE*>(pdf.data()), &size);
  if (size != expected || expected == 0) throw DocumentError("libharu could not hand out the document");
  return pdf;
}

}  // namespace referrald
