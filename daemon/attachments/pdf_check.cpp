#include "attachments/pdf_check.hpp"

// qpdf 11: use std::shared_ptr, not its old PointerHolder (qpdf/PointerHolder.hh).
#define POINTERHOLDER_TRANSITION 4
#include <qpdf/QPDF.hh>

#include <exception>

namespace referrald {

PdfCheck check_pdf(std::string_view bytes) {
  PdfCheck result;
  try {
    QPDF pdf;
    pdf.setSuppressWarnings(true);
    pdf.processMemoryFile("attachment", bytes.data(), bytes.size());
    result.encrypted = pdf.isEncrypted();
    if (!result.encrypted) result.pages = static_cast<int>(pdf.getAllPages().size());
    result.readable = true;
  } catch (const std::exception&) {
    // qpdf's message quotes the file's own objects: never passed on.
    result = PdfCheck{};
  }
  return result;
}

}  // namespace referrald
