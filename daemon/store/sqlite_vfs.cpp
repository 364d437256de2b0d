#include "store/sqlite_vfs.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

namespace referrald::store::detail {
namespace {

// A WAL frame's header (SQLite's file format, "The WAL File Format"):
// bytes 4 to 7 hold, for the frame that commits a transaction, the
// database's size in pages after it, and zero for every other frame.
constexpr int frame_header_bytes = 24;

// The most a log's handle holds back before it writes it anyway: a large
// transaction (a referral with its files) is passed on as it grows.
constexpr std::size_t held_limit = std::size_t{4} << 20;

sqlite3_vfs* platform_vfs = nullptr;

// What SQLite allocates for each open file (szOsFile): this, and the
// platform VFS's own file right after it.
struct File {
  sqlite3_file base;  // first: SQLite's handle is a pointer to it
  sqlite3_file* real = nullptr;
  bool log = false;  // the write-ahead log: appended frames are held back
  // Bytes [held_at, held_at + held.size()) of the log, written by SQLite
  // but not yet passed on.
  std::vector<unsigned char> held;
  sqlite3_int64 held_at = 0;
  // Where the last write through this handle ended (-1: none yet, or a sync
  // came after it). Only a write that carries on from there is held back:
  // SQLite appends frames one after another, header then page. It also
  // writes in place, before the end: a page it changed again within one
  // transaction, and the headers of frames whose checksums a commit
  // rewrites. Such a write is passed on at once, after what is held.
  sqlite3_int64 next = -1;
  // The last write held was the header of the frame that commits a
  // transaction: its page is the transaction's last write.
  bool commit_header = false;
};

constexpr std::size_t file_bytes = (sizeof(File) + 7) & ~std::size_t{7};

File& of(sqlite3_file* file) { return *reinterpret_cast<File*>(file); }

const sqlite3_io_methods& real_methods(File& f) { return *f.real->pMethods; }

// The most the platform's VFS writes in one call: its unix VFS takes no
// more than 17 bits' worth (128 KiB less a byte), as SQLite never writes
// more than a 64 KiB page at once itself.
constexpr std::size_t piece_bytes = std::size_t{64} << 10;

// Writes what is held back (in pieces the platform's VFS takes); before
// anything else touches the file, and when a commit's last frame is
// complete.
int release(File& f) {
  int rc = SQLITE_OK;
  for (std::size_t done = 0; done < f.held.size() && rc == SQLITE_OK; done += piece_bytes) {
    const std::size_t n = std::min(piece_bytes, f.held.size() - done);
    rc = real_methods(f).xWrite(f.real, f.held.data() + done, static_cast<int>(n),
                                f.held_at + static_cast<sqlite3_int64>(done));
  }
  if (rc != SQLITE_OK) f.next = -1;
  f.held.clear();
  f.commit_header = false;
  return rc;
}

int file_close(sqlite3_file* file) {
  File& f = of(file);
  const int released = release(f);
  const int closed = real_methods(f).xClose(f.real);
  f.~File();
  return released != SQLITE_OK ? released : closed;
}

int file_read(sqlite3_file* file, void* buffer, int amount, sqlite3_int64 offset) {
  File& f = of(file);
  if (const int rc = release(f); rc != SQLITE_OK) return rc;
  return real_methods(f).xRead(f.real, buffer, amount, offset);
}

// Adds a write to what is held; false when there is no memory for it (then
// it is written as SQLite would, after what is held).
bool hold(File& f, const void* buffer, int amount, sqlite3_int64 offset) noexcept {
  const auto* bytes = static_cast<const unsigned char*>(buffer);
  try {
    if (f.held.empty()) f.held_at = offset;
    f.held.insert(f.held.end(), bytes, bytes + amount);
  } catch (const std::bad_alloc&) {
    return false;
  }
  return true;
}

bool is_commit_header(const void* buffer) {
  unsigned char size[4];
  std::memcpy(size, static_cast<const unsigned char*>(buffer) + 4, sizeof size);
  return (size[0] | size[1] | size[2] | size[3]) != 0;
}

int file_write(sqlite3_file* file, const void* buffer, int amount, sqlite3_int64 offset) {
  File& f = of(file);
  if (!f.log) return real_methods(f).xWrite(f.real, buffer, amount, offset);
  if (offset == f.next && amount > 0 && hold(f, buffer, amount, offset)) {
    f.next = offset + amount;
    // The page after a commit frame's header ends the transaction: the
    // whole of it goes to the file now, before the commit returns (and
    // before the fsync that a 202 waits for, which is another descriptor's).
    const bool commit_ends = f.commit_header && amount != frame_header_bytes;
    f.commit_header = amount == frame_header_bytes && is_commit_header(buffer);
    if (commit_ends || f.held.size() >= held_limit) return release(f);
    return SQLITE_OK;
  }
  if (const int rc = release(f); rc != SQLITE_OK) return rc;
  const int rc = real_methods(f).xWrite(f.real, buffer, amount, offset);
  f.next = rc == SQLITE_OK ? offset + amount : -1;
  return rc;
}

int file_truncate(sqlite3_file* file, sqlite3_int64 size) {
  File& f = of(file);
  if (const int rc = release(f); rc != SQLITE_OK) return rc;
  f.next = -1;
  return real_methods(f).xTruncate(f.real, size);
}

int file_sync(sqlite3_file* file, int flags) {
  File& f = of(file);
  if (const int rc = release(f); rc != SQLITE_OK) return rc;
  // What follows a sync is not held: with synchronous=FULL and a sector
  // larger than a page, SQLite splits a padding frame's page at the sync
  // point, syncs, and writes the rest, which can be the commit's last write
  // without a commit header before it. (The writer's connection syncs
  // nothing itself.)
  f.next = -1;
  return real_methods(f).xSync(f.real, flags);
}

int file_size(sqlite3_file* file, sqlite3_int64* size) {
  File& f = of(file);
  if (const int rc = release(f); rc != SQLITE_OK) return rc;
  return real_methods(f).xFileSize(f.real, size);
}

int file_lock(sqlite3_file* file, int level) { return real_methods(of(file)).xLock(of(file).real, level); }
int file_unlock(sqlite3_file* file, int level) { return real_methods(of(file)).xUnlock(of(file).real, level); }
int file_check_reserved_lock(sqlite3_file* file, int* out) {
  return real_methods(of(file)).xCheckReservedLock(of(file).real, out);
}

int file_control(sqlite3_file* file, int op, void* arg) {
  File& f = of(file);
  if (const int rc = release(f); rc != SQLITE_OK) return rc;
  return real_methods(f).xFileControl(f.real, op, arg);
}

int file_sector_size(sqlite3_file* file) { return real_methods(of(file)).xSectorSize(of(file).real); }
int file_device_characteristics(sqlite3_file* file) {
  return real_methods(of(file)).xDeviceCharacteristics(of(file).real);
}

// Version 2: the shared memory of the WAL's index (the database file's).
int file_shm_map(sqlite3_file* file, int page, int page_size, int extend, void volatile** out) {
  return real_methods(of(file)).xShmMap(of(file).real, page, page_size, extend, out);
}
int file_shm_lock(sqlite3_file* file, int offset, int n, int flags) {
  return real_methods(of(file)).xShmLock(of(file).real, offset, n, flags);
}
void file_shm_barrier(sqlite3_file* file) { real_methods(of(file)).xShmBarrier(of(file).real); }
int file_shm_unmap(sqlite3_file* file, int delete_flag) {
  return real_methods(of(file)).xShmUnmap(of(file).real, delete_flag);
}

// Version 3: memory-mapped reads.
int file_fetch(sqlite3_file* file, sqlite3_int64 offset, int amount, void** out) {
  return real_methods(of(file)).xFetch(of(file).real, offset, amount, out);
}
int file_unfetch(sqlite3_file* file, sqlite3_int64 offset, void* p) {
  return real_methods(of(file)).xUnfetch(of(file).real, offset, p);
}

// One table per version, so that SQLite asks of a file only what the
// platform's file can do.
constexpr sqlite3_io_methods methods_of_version(int version) {
  return {version,
          file_close,
          file_read,
          file_write,
          file_truncate,
          file_sync,
          file_size,
          file_lock,
          file_unlock,
          file_check_reserved_lock,
          file_control,
          file_sector_size,
          file_device_characteristics,
          version >= 2 ? file_shm_map : nullptr,
          version >= 2 ? file_shm_lock : nullptr,
          version >= 2 ? file_shm_barrier : nullptr,
          version >= 2 ? file_shm_unmap : nullptr,
          version >= 3 ? file_fetch : nullptr,
          version >= 3 ? file_unfetch : nullptr};
}

constexpr std::array<sqlite3_io_methods, 3> methods = {methods_of_version(1), methods_of_version(2),
                                                       methods_of_version(3)};

int vfs_open(sqlite3_vfs* /*vfs*/, const char* name, sqlite3_file* file, int flags, int* out_flags) {
  auto* f = new (file) File{};
  f->base.pMethods = nullptr;  // until the platform's file is open
  f->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<unsigned char*>(file) + file_bytes);
  f->log = (flags & SQLITE_OPEN_WAL) != 0;
  const int rc = platform_vfs->xOpen(platform_vfs, name, f->real, flags, out_flags);
  if (rc != SQLITE_OK || f->real->pMethods == nullptr) {
    if (f->real->pMethods != nullptr) f->real->pMethods->xClose(f->real);
    f->~File();
    return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
  }
  const int version = std::clamp(f->real->pMethods->iVersion, 1, 3);
  f->base.pMethods = &methods[static_cast<std::size_t>(version - 1)];
  return SQLITE_OK;
}

sqlite3_vfs vfs{};

void register_vfs() {
  platform_vfs = sqlite3_vfs_find(nullptr);
  if (platform_vfs == nullptr) throw std::runtime_error("sqlite: no default VFS");
  // Everything but opening a file is the platform's, as it is.
  vfs = *platform_vfs;
  vfs.pNext = nullptr;
  vfs.zName = "referrald";
  vfs.szOsFile = static_cast<int>(file_bytes) + platform_vfs->szOsFile;
  vfs.xOpen = vfs_open;
  if (const int rc = sqlite3_vfs_register(&vfs, /*makeDflt=*/0); rc != SQLITE_OK) {
    throw std::runtime_error(std::string("sqlite: cannot register the VFS: ") + sqlite3_errstr(rc));
  }
}

}  // namespace

const char* sqlite_vfs_name() {
  static std::once_flag once;
  std::call_once(once, register_vfs);
  return vfs.zName;
}

}  // namespace referrald::store::detail
