// A file's bytes read by offset wherever they wait: in memory, or in a
// sealed spool (util/sealed_spool.hpp), of which one opened block is held at
// a time. The attachments' decoders read through it (qpdf's InputSource,
// libjpeg's source manager, libpng's and libtiff's callbacks), so a spooled
// file is never whole in memory to be inspected. C++17 on purpose:
// attachments/pdf_check.cpp includes it (qpdf's headers and clang).
// docs/attachments.md, "Streaming to disk".
#pragma once

#include <cstddef>
#include <exception>
#include <string>
#include <string_view>

namespace referrald {

class SealedSpool;

class FileReader {
 public:
  // The bytes where they are (not copied: they must outlive the reader).
  explicit FileReader(std::string_view bytes) : memory_(bytes), size_(bytes.size()) {}
  // The spool's blocks, opened as they are read (it must outlive the reader).
  explicit FileReader(const SealedSpool& spool);
  ~FileReader();
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  std::size_t size() const { return size_; }

  // The bytes from `offset` to the end of the block that holds them, at
  // most `n` (empty at or past the end): valid until the next call.
  // Throws std::runtime_error when a spool's block cannot be read or does
  // not open (its file was changed under the daemon), and remembers it.
  std::string_view peek(std::size_t offset, std::size_t n);
  // Copies up to `n` bytes from `offset` into `out`: fewer only at the
  // end. Throws as peek does.
  std::size_t read(std::size_t offset, char* out, std::size_t n);
  // Up to `n` bytes from `offset`, copied. Throws as peek does.
  std::string copy(std::size_t offset, std::size_t n);
  // Where `needle` (not empty) next starts at or after `from`, across the
  // blocks; npos when it does not. Throws as peek does.
  std::size_t find(std::string_view needle, std::size_t from);

  // Whether a read failed, and what it threw again: for a caller behind a
  // library that does not pass exceptions on (qpdf recovers from what it
  // can; the C libraries' callbacks only say "error"), so that a spool
  // that does not open is not taken for a damaged file.
  bool failed() const { return failure_ != nullptr; }
  void rethrow_failure() const {
    if (failure_) std::rethrow_exception(failure_);
  }

 private:
  std::string_view memory_;
  const SealedSpool* spool_ = nullptr;
  std::size_t size_ = 0;
  std::string block_;  // the spool's block `block_index_`, opened
  std::size_t block_index_ = static_cast<std::size_t>(-1);
  std::exception_ptr failure_;
};

}  // namespace referrald
