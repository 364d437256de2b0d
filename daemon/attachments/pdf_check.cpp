#include "attachments/pdf_check.hpp"

// qpdf 11: use std::shared_ptr, not its old PointerHolder (qpdf/PointerHolder.hh).
#define POINTERHOLDER_TRANSITION 4
#include <qpdf/InputSource.hh>
#include <qpdf/QPDF.hh>
#include <qpdf/QPDFPageDocumentHelper.hh>
#include <qpdf/QPDFWriter.hh>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <memory>
#include <stdexcept>

namespace referrald {

namespace {

// qpdf's view of a FileReader: a position in it, moved by reads and seeks.
class ReaderSource : public InputSource {
 public:
  explicit ReaderSource(FileReader& file) : file_(file) {}

  const std::string& getName() const override { return name_; }
  qpdf_offset_t tell() override { return at_; }
  void rewind() override { at_ = 0; }
  void seek(qpdf_offset_t offset, int whence) override {
    const qpdf_offset_t base = whence == SEEK_END ? end() : whence == SEEK_CUR ? at_ : 0;
    if (base + offset < 0) throw std::runtime_error(name_ + ": seek before the start of the file");
    at_ = base + offset;
  }
  void unreadCh(char) override {
    if (at_ > 0) --at_;
  }
  std::size_t read(char* out, std::size_t length) override {
    last_offset = std::min(at_, end());  // InputSource's contract: where the read began
    if (at_ >= end()) return 0;
    const std::size_t n = file_.read(static_cast<std::size_t>(at_), out, length);
    at_ += static_cast<qpdf_offset_t>(n);
    return n;
  }
  // Moves past the next end of line (and any that follow it); returns
  // where that line ended, or the end of the file when there is none.
  qpdf_offset_t findAndSkipNextEOL() override {
    const auto is_eol = [](char c) { return c == '\r' || c == '\n'; };
    while (at_ < end()) {
      const auto piece = file_.peek(static_cast<std::size_t>(at_), static_cast<std::size_t>(end() - at_));
      const auto it = std::find_if(piece.begin(), piece.end(), is_eol);
      at_ += static_cast<qpdf_offset_t>(it - piece.begin());
      if (it != piece.end()) break;
    }
    const qpdf_offset_t eol = at_;
    while (at_ < end()) {
      const auto piece = file_.peek(static_cast<std::size_t>(at_), static_cast<std::size_t>(end() - at_));
      const auto it = std::find_if_not(piece.begin(), piece.end(), is_eol);
      at_ += static_cast<qpdf_offset_t>(it - piece.begin());
      if (it != piece.end()) break;
    }
    return eol;
  }

 private:
  qpdf_offset_t end() const { return static_cast<qpdf_offset_t>(file_.size()); }

  FileReader& file_;
  const std::string name_ = "attachment";
  qpdf_offset_t at_ = 0;
};

}  // namespace

PdfCheck check_pdf(std::string_view bytes) {
  FileReader file(bytes);
  return check_pdf(file);
}

PdfCheck check_pdf(FileReader& file) {
  PdfCheck result;
  try {
    QPDF pdf;
    pdf.setSuppressWarnings(true);
    pdf.processInputSource(std::make_shared<ReaderSource>(file));
    result.encrypted = pdf.isEncrypted();
    if (!result.encrypted) result.pages = static_cast<int>(pdf.getAllPages().size());
    result.readable = true;
  } catch (const std::exception&) {
    // qpdf's message quotes the file's own objects: never passed on.
    result = PdfCheck{};
  }
  // A spool that did not open is not a damaged PDF (qpdf may have
  // recovered from the read that failed, or told it as damage).
  file.rethrow_failure();
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
