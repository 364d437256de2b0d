#include "util/file_reader.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <cstring>

#include "util/sealed_spool.hpp"

namespace referrald {

FileReader::FileReader(const SealedSpool& spool) : spool_(&spool), size_(spool.size()) {}

FileReader::~FileReader() { OPENSSL_cleanse(block_.data(), block_.size()); }  // plaintext of a referral

std::string_view FileReader::peek(std::size_t offset, std::size_t n) {
  if (offset >= size_ || n == 0) return {};
  if (spool_ == nullptr) return memory_.substr(offset, n);
  const std::size_t index = offset / SealedSpool::block_size;
  if (index != block_index_) {
    try {
      OPENSSL_cleanse(block_.data(), block_.size());
      block_index_ = static_cast<std::size_t>(-1);
      block_ = spool_->block(index);
      block_index_ = index;
    } catch (...) {
      failure_ = std::current_exception();
      throw;
    }
  }
  return std::string_view(block_).substr(offset - index * SealedSpool::block_size, n);
}

std::size_t FileReader::read(std::size_t offset, char* out, std::size_t n) {
  std::size_t done = 0;
  while (done < n) {
    const auto piece = peek(offset + done, n - done);
    if (piece.empty()) break;
    std::memcpy(out + done, piece.data(), piece.size());
    done += piece.size();
  }
  return done;
}

std::string FileReader::copy(std::size_t offset, std::size_t n) {
  std::string out(std::min(n, offset < size_ ? size_ - offset : 0), '\0');
  out.resize(read(offset, out.data(), out.size()));
  return out;
}

std::size_t FileReader::find(std::string_view needle, std::size_t from) {
  // Each piece is searched where it is; a match that runs from one piece
  // into the next is looked for in the end of the one (`carry`, shorter
  // than the needle) joined to the start of the other. Only a first piece
  // (from `from` to its block's end) may be shorter than the needle, and
  // nothing before `from` counts.
  std::string carry;
  std::size_t carry_at = from;  // the offset of carry[0]
  for (std::size_t at = from; at < size_;) {
    const auto piece = peek(at, size_ - at);
    if (!carry.empty()) {
      const std::string joint = carry + std::string(piece.substr(0, needle.size() - 1));
      if (const auto hit = joint.find(needle); hit < carry.size()) return carry_at + hit;
    }
    if (const auto hit = piece.find(needle); hit != std::string_view::npos) return at + hit;
    const std::size_t keep = std::min(piece.size(), needle.size() - 1);
    carry.assign(piece.substr(piece.size() - keep));
    carry_at = at + piece.size() - keep;
    at += piece.size();
  }
  return std::string_view::npos;
}

}  // namespace referrald
