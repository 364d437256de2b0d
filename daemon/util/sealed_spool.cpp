#include "util/sealed_spool.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "util/crypto.hpp"

namespace referrald {

namespace {

constexpr std::size_t tag_size = 16;
constexpr std::size_t sealed_block = SealedSpool::block_size + tag_size;

using CipherContext = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

// The block's index is its nonce: each key seals one spool, and each block
// of it once.
std::array<unsigned char, 12> nonce_of(std::size_t index) {
  std::array<unsigned char, 12> nonce{};
  for (std::size_t i = 0; i < 8; ++i) {
    nonce[11 - i] = static_cast<unsigned char>((static_cast<std::uint64_t>(index) >> (8 * i)) & 0xffU);
  }
  return nonce;
}

int length(std::size_t n) { return static_cast<int>(n); }

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
  ::unlink(name.c_str());
  ::fchmod(fd, 0600);
  return fd;
}

}  // namespace

struct SealedSpool::Hash {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx{EVP_MD_CTX_new(), EVP_MD_CTX_free};
};

SealedSpool::SealedSpool(const std::filesystem::path& directory) : hash_(std::make_unique<Hash>()) {
  if (!hash_->ctx || EVP_DigestInit_ex(hash_->ctx.get(), EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("SHA-256 could not be started");
  }
  if (RAND_bytes(key_.data(), static_cast<int>(key_.size())) != 1) throw std::runtime_error("RAND_bytes failed");
  fd_ = open_unlinked(directory);
  pending_.reserve(block_size);
}

SealedSpool::~SealedSpool() {
  OPENSSL_cleanse(key_.data(), key_.size());
  if (fd_ >= 0) ::close(fd_);
}

void SealedSpool::append(std::string_view bytes) {
  if (finished_) throw std::logic_error("SealedSpool::append after finish");
  if (EVP_DigestUpdate(hash_->ctx.get(), bytes.data(), bytes.size()) != 1) {
    throw std::runtime_error("SHA-256 failed");
  }
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
  std::string().swap(pending_);
  unsigned char digest[32];
  unsigned int n = 0;
  if (EVP_DigestFinal_ex(hash_->ctx.get(), digest, &n) != 1) throw std::runtime_error("SHA-256 failed");
  sha256_ = to_hex(digest, n);
  finished_ = true;
}

void SealedSpool::write_block() {
  std::string out(pending_.size() + tag_size, '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  const auto nonce = nonce_of(blocks_);
  CipherContext ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  int n = 0, final_n = 0;
  const bool ok = ctx && EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key_.data(), nonce.data()) == 1 &&
                  EVP_EncryptUpdate(ctx.get(), o, &n, reinterpret_cast<const unsigned char*>(pending_.data()),
                                    length(pending_.size())) == 1 &&
                  EVP_EncryptFinal_ex(ctx.get(), o + n, &final_n) == 1 &&
                  EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, length(tag_size), o + pending_.size()) == 1;
  if (!ok) throw std::runtime_error("a spool block could not be sealed");
  const auto offset = static_cast<off_t>(blocks_ * sealed_block);
  std::size_t done = 0;
  while (done < out.size()) {
    const auto w = ::pwrite(fd_, out.data() + done, out.size() - done, offset + static_cast<off_t>(done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) throw std::system_error(w < 0 ? errno : ENOSPC, std::generic_category(), "cannot write a spool file");
    done += static_cast<std::size_t>(w);
  }
  ++blocks_;
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
  const auto nonce = nonce_of(index);
  auto* s = reinterpret_cast<unsigned char*>(sealed.data());
  CipherContext ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  int n = 0, final_n = 0;
  const bool ok =
      ctx && EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key_.data(), nonce.data()) == 1 &&
      EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &n, s, length(plain)) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, length(tag_size), s + plain) == 1 &&
      EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + n, &final_n) == 1;
  if (!ok) throw std::runtime_error("a spool block does not open (the file was changed)");
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

bool SealedSpool::contains(std::string_view needle) const {
  if (needle.empty()) return true;
  std::string window;  // the end of the previous block, then this one
  bool found = false;
  for (std::size_t i = 0; i < blocks_ && !found; ++i) {
    window += block(i);
    found = window.find(needle) != std::string::npos;
    if (window.size() >= needle.size()) window.erase(0, window.size() - (needle.size() - 1));
  }
  return found;
}

SealedSpoolBuf::int_type SealedSpoolBuf::underflow() {
  if (gptr() != nullptr && gptr() < egptr()) return traits_type::to_int_type(*gptr());
  if (next_ >= spool_.blocks()) return traits_type::eof();
  block_ = spool_.block(next_++);
  setg(block_.data(), block_.data(), block_.data() + block_.size());
  return traits_type::to_int_type(*gptr());
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
