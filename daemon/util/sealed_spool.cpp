#include "util/sealed_spool.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <openssl/crypto.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "util/crypto.hpp"
#include "util/private_files.hpp"

namespace referrald {

namespace {

constexpr std::size_t tag_size = aes_gcm_tag_bytes;
constexpr std::size_t sealed_block = SealedSpool::block_size + tag_size;

// The block's index is its nonce: each key seals one spool, and each block
// of it once.
std::array<unsigned char, aes_gcm_nonce_bytes> nonce_of(std::size_t index) {
  std::array<unsigned char, aes_gcm_nonce_bytes> nonce{};
  for (std::size_t i = 0; i < 8; ++i) {
    nonce[11 - i] = static_cast<unsigned char>((static_cast<std::uint64_t>(index) >> (8 * i)) & 0xffU);
  }
  return nonce;
}

// An unlinked file only this process can reach: O_TMPFILE where the file
// system has it, else a named file removed at once.
int open_unlinked(const std::filesystem::path& directory) {
  int fd = ::open(directory.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC | O_EXCL, 0600);
  if (fd >= 0) return fd;
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
    throw std::system_error(errno, std::generic_category(), "cannot open a spool file in " + directory.string());
  }
  std::string name = (directory / "upload-XXXXXX").string();
  fd = ::mkostemp(name.data(), O_CLOEXEC);
  if (fd < 0) {
    throw std::system_error(errno, std::generic_category(), "cannot open a spool file in " + directory.string());
  }
  ::unlink(name.c_str());  // mkostemp made it 0600
  return fd;
}

}  // namespace

SealedSpool::SealedSpool(const std::filesystem::path& directory) {
  auto key = random_bytes(key_.size());
  std::copy(key.begin(), key.end(), key_.begin());
  OPENSSL_cleanse(key.data(), key.size());
  fd_ = open_unlinked(directory);
  pending_.reserve(block_size);
}

SealedSpool::~SealedSpool() {
  OPENSSL_cleanse(key_.data(), key_.size());
  OPENSSL_cleanse(pending_.data(), pending_.size());
  if (fd_ >= 0) ::close(fd_);
}

void SealedSpool::append(std::string_view bytes) {
  if (finished_) throw std::logic_error("SealedSpool::append after finish");
  hash_.update(bytes);
  size_ += bytes.size();
  while (!bytes.empty()) {
    const std::size_t n = std::min(bytes.size(), block_size - pending_.size());
    pending_.append(bytes.substr(0, n));
    bytes.remove_prefix(n);
    if (pending_.size() == block_size) write_block();
  }
}

void SealedSpool::finish() {
  if (finished_) return;
  if (!pending_.empty()) write_block();
  std::string().swap(pending_);  // write_block wiped it
  sha256_ = hash_.hex();
  finished_ = true;
}

void SealedSpool::write_block() {
  std::string out(pending_.size() + tag_size, '\0');
  aes256_gcm_seal(key_.data(), nonce_of(blocks_).data(), {}, pending_, reinterpret_cast<unsigned char*>(out.data()));
  // Blocks are written in order at the file's offset (block() reads with
  // pread, which leaves it), so block n starts at n * sealed_block.
  if (!write_all(fd_, out)) throw std::system_error(errno, std::generic_category(), "cannot write a spool file");
  ++blocks_;
  OPENSSL_cleanse(pending_.data(), pending_.size());  // plaintext of a referral
  pending_.clear();
}

std::string SealedSpool::block(std::size_t index) const {
  if (index >= blocks_) throw std::out_of_range("spool block");
  const std::size_t plain = index + 1 < blocks_ ? block_size : size_ - index * block_size;
  std::string sealed(plain + tag_size, '\0');
  const auto offset = static_cast<off_t>(index * sealed_block);
  std::size_t done = 0;
  while (done < sealed.size()) {
    const auto r = ::pread(fd_, sealed.data() + done, sealed.size() - done, offset + static_cast<off_t>(done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) throw std::runtime_error("a spool file could not be read");
    done += static_cast<std::size_t>(r);
  }
  std::string out(plain, '\0');
  if (!aes256_gcm_open(key_.data(), nonce_of(index).data(), {}, sealed, reinterpret_cast<unsigned char*>(out.data())))
    throw std::runtime_error("a spool block does not open (the file was changed)");
  return out;
}

void SealedSpool::for_each_block(const std::function<void(std::string_view)>& each) const {
  for (std::size_t i = 0; i < blocks_; ++i) each(block(i));
}

std::string SealedSpool::read_all() const {
  std::string out;
  out.reserve(size_);
  for_each_block([&out](std::string_view b) { out.append(b); });
  return out;
}

std::filesystem::path default_spool_directory(const std::filesystem::path& database) {
  if (!database.empty()) {
    const auto dir = database.parent_path();
    return dir.empty() ? std::filesystem::path(".") : dir;
  }
  if (const char* state = std::getenv("STATE_DIRECTORY"); state != nullptr && *state != '\0') {
    // systemd may list several, separated by colons: the first is ours.
    const std::string_view all(state);
    return std::filesystem::path(std::string(all.substr(0, all.find(':'))));
  }
  return "/var/tmp";
}

}  // namespace referrald
