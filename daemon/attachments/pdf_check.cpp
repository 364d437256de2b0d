#include "attachments/pdf_check.hpp"

// qpdf 11: use std::shared_ptr, not its old PointerHolder (qpdf/PointerHolder.hh).
#define POINTERHOLDER_TRANSITION 4
#include <qpdf/QPDF.hh>
#include <qpdf/QPDFPageDocumentHelper.hh>
#include <qpdf/QPDFWriter.hh>

#include <exception>
#include <memory>
#include <stdexcept>

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

std::string merge_pdfs(const std::vector<PdfPages>& parts) {
  QPDF merged;
  merged.emptyPDF();
  QPDFPageDocumentHelper out(merged);
  // qpdf copies a page's streams when the merged file is written: every
  // source stays open until then.
  std::vector<std::unique_ptr<QPDF>> sources;
  try {
    for (std::size_t n = 0; n < parts.size(); ++n) {
      const PdfPages& part = parts[n];
      auto source = std::make_unique<QPDF>();
      source->setSuppressWarnings(true);
      source->processMemoryFile(("part " + std::to_string(n + 1)).c_str(), part.pdf.data(), part.pdf.size());
      if (source->isEncrypted()) throw std::runtime_error("encrypted");
      const auto pages = QPDFPageDocumentHelper(*source).getAllPages();
      const std::size_t first = static_cast<std::size_t>(part.first);
      const std::size_t end = part.count < 0 ? pages.size() : first + static_cast<std::size_t>(part.count);
      if (part.first < 0 || end > pages.size()) throw std::runtime_error("pages out of range");
      for (std::size_t p = first; p < end; ++p) out.addPage(pages[p], false);
      sources.push_back(std::move(source));
    }
    QPDFWriter writer(merged);
    writer.setOutputMemory();
    writer.setDeterministicID(true);  // the same parts give the same bytes
    writer.write();
    const auto buffer = writer.getBufferSharedPointer();
    return std::string(reinterpret_cast<const char*>(buffer->getBuffer()), buffer->getSize());
  } catch (const std::exception&) {
    // qpdf's message quotes the file's own objects: never passed on.
    throw std::runtime_error("qpdf could not merge the fax's PDF parts (a part is damaged, encrypted or too short)");
  }
}

}  // namespace referrald
