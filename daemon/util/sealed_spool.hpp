// Bytes a request brings (a large intake body, an attachment's file) kept on
// disk while the request is handled, so that memory does not grow with
// uploads: an unlinked file (O_TMPFILE, mode 0600) in a directory of the
// daemon's, written in blocks of 64 kB, each sealed with AES-256-GCM under a
// key made for this spool alone and held only in memory. Nothing is on disk
// in the clear, and the file is gone when the last handle to the spool goes,
// or the process ends (a crash leaves nothing to clean up).
// docs/attachments.md, "Streaming to disk".
#pragma once

#include <array>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "util/crypto.hpp"

namespace referrald {

class SealedSpool {
 public:
  static constexpr std::size_t block_size = 64 * 1024;

  // Opens the unlinked file in `directory`; throws std::system_error naming
  // the directory when it cannot.
  explicit SealedSpool(const std::filesystem::path& directory);
  ~SealedSpool();
  SealedSpool(const SealedSpool&) = delete;
  SealedSpool& operator=(const SealedSpool&) = delete;

  // Appends bytes (sealed and written a block at a time); throws
  // std::system_error when the disk refuses them. Not after finish().
  void append(std::string_view bytes);
  // Seals and writes what is left of the last block.
  void finish();

  std::size_t size() const { return size_; }
  // SHA-256 of every byte appended, in hex (after finish()).
  const std::string& sha256_hex() const { return sha256_; }

  // How many blocks there are, and block `index` opened; throws
  // std::runtime_error for a block that cannot be read or does not open
  // (the file was changed under the daemon).
  std::size_t blocks() const { return blocks_; }
  std::string block(std::size_t index) const;
  // Each block opened, in order.
  void for_each_block(const std::function<void(std::string_view)>& each) const;
  // The whole of it, opened.
  std::string read_all() const;

 private:
  void write_block();

  int fd_ = -1;
  std::array<unsigned char, aes_gcm_key_bytes> key_{};
  std::string pending_;  // the block being filled
  std::size_t blocks_ = 0;
  std::size_t size_ = 0;
  bool finished_ = false;
  Sha256Stream hash_;
  std::string sha256_;
};

// Where spools go (there is no configuration key for it): the directory of
// the SQLite database (the daemon's state directory), else
// $STATE_DIRECTORY (systemd's StateDirectory=), else /var/tmp.
std::filesystem::path default_spool_directory(const std::filesystem::path& database);

}  // namespace referrald
