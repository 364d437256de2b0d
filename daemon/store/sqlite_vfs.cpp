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

// A WAL frame's header (SQLite's file format, "The WAL File Format").
constexpr int frame_header_bytes = 24;

sqlite3_vfs* platform_vfs = nullptr;

// What SQLite allocates for each open file (szOsFile): this, and the
// platform VFS's own file right after it.
struct File {
  sqlite3_file base;  // first: SQLite's handle is a pointer to it
  sqlite3_file* real = nullptr;
  bool log = false;  // the write-ahead log: headers are held back
  bool held = false;
  sqlite3_int64 held_at = 0;
  // Where the last write through this handle ended (-1: none yet). Only a
  // header that carries on from there is held back: SQLite writes frames
  // one after another, each header right after the page before it (or
  // after the log's own header). It also writes headers alone, in place,
  // when a commit rewrites its frames' checksums (a transaction that
  // spilled a page to the log and changed it again), and the last of those
  // is the commit's last write: never held, as none of them follows on
  // from the write before it.
  sqlite3_int64 next = -1;
  std::array<unsigned char, frame_header_bytes> header{};
  std::vector<unsigned char> joined;  // header and page, written as one
};

constexpr std::size_t file_bytes = (sizeof(File) + 7) & ~std::size_t{7};

File& of(sqlite3_file* file) { return *reinterpret_cast<File*>(file); }

const sqlite3_io_methods& real_methods(File& f) { return *f.real->pMethods; }

// Writes a header that is held back; before anything else touches the file.
int release(File& f) {
  if (!f.held) return SQLITE_OK;
  f.held = false;
  const int rc = real_methods(f).xWrite(f.real, f.header.data(), frame_header_bytes, f.held_at);
  f.next = rc == SQLITE_OK ? f.held_at + frame_header_bytes : -1;
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

// The header and the page after it in one buffer; false when there is no
// memory for it (then they are written apart, as SQLite would).
bool join(File& f, const void* page, int amount) noexcept {
  try {
    f.joined.resize(static_cast<std::size_t>(frame_header_bytes + amount));
  } catch (const std::bad_alloc&) {
    return false;
  }
  std::memcpy(f.joined.data(), f.header.data(), frame_header_bytes);
  std::memcpy(f.joined.data() + frame_header_bytes, page, static_cast<std::size_t>(amount));
  return true;
}

int file_write(sqlite3_file* file, const void* buffer, int amount, sqlite3_int64 offset) {
  File& f = of(file);
  if (!f.log) return real_methods(f).xWrite(f.real, buffer, amount, offset);
  // The page right after a held header: the two in one call.
  if (f.held && offset == f.held_at + frame_header_bytes && amount > 0 && join(f, buffer, amount)) {
    f.held = false;
    const int rc = real_methods(f).xWrite(f.real, f.joined.data(), frame_header_bytes + amount, f.held_at);
    f.next = rc == SQLITE_OK ? offset + amount : -1;
    return rc;
  }
  if (const int rc = release(f); rc != SQLITE_OK) return rc;
  if (amount == frame_header_bytes && offset == f.next) {
    std::memcpy(f.header.data(), buffer, frame_header_bytes);
    f.held_at = offset;
    f.held = true;
    return SQLITE_OK;
  }
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
  // point, syncs, and writes the rest, which can be 24 bytes and the
  // commit's last write. (The writer's connection syncs nothing itself.)
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
