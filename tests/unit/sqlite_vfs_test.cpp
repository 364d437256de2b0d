// The store's SQLite VFS (store/sqlite_vfs.hpp): a frame's header is
// written with its page, in one call, and nothing else about the log
// changes. Seen from below: a recording VFS is made the process's default
// before the store's first connection, so the store's VFS stacks on it, and
// it passes every call on to the platform's file system (the files are
// real), noting each write, read and sync of a write-ahead log. It can also
// refuse a write to the log as a full disk would, which a real disk cannot
// be made to do at one chosen write.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstring>
#include <filesystem>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "store/database.hpp"
#include "support/harness.hpp"

namespace referrald {
namespace {

struct Event {
  char kind;  // 'w' write, 'r' read, 's' sync
  int bytes = 0;
  sqlite3_int64 offset = 0;
};

std::mutex events_mutex;
std::vector<Event> events;
int refuse_log_writes_after = -1;  // that many more writes to a log succeed; -1: all

sqlite3_vfs* platform = nullptr;
sqlite3_vfs recording{};

struct File {
  sqlite3_file base;
  sqlite3_file* real;
  bool log;
};

File& of(sqlite3_file* f) { return *reinterpret_cast<File*>(f); }

void note(char kind, int bytes, sqlite3_int64 offset) {
  std::lock_guard lock(events_mutex);
  events.push_back({kind, bytes, offset});
}

int log_write(sqlite3_file* f, const void* buffer, int amount, sqlite3_int64 offset) {
  {
    std::lock_guard lock(events_mutex);
    if (refuse_log_writes_after == 0) return SQLITE_FULL;
    if (refuse_log_writes_after > 0) --refuse_log_writes_after;
  }
  note('w', amount, offset);
  return of(f).real->pMethods->xWrite(of(f).real, buffer, amount, offset);
}
int log_read(sqlite3_file* f, void* buffer, int amount, sqlite3_int64 offset) {
  note('r', amount, offset);
  return of(f).real->pMethods->xRead(of(f).real, buffer, amount, offset);
}
int log_sync(sqlite3_file* f, int flags) {
  note('s', 0, 0);
  return of(f).real->pMethods->xSync(of(f).real, flags);
}

int recording_open(sqlite3_vfs* /*vfs*/, const char* name, sqlite3_file* file, int flags, int* out) {
  auto* f = new (file) File{};
  f->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<unsigned char*>(file) + sizeof(File));
  f->log = (flags & SQLITE_OPEN_WAL) != 0;
  const int rc = platform->xOpen(platform, name, f->real, flags, out);
  if (rc != SQLITE_OK) {
    if (f->real->pMethods != nullptr) f->real->pMethods->xClose(f->real);
    return rc;
  }
  // Every method of the platform's file, through this one: the log's
  // reads, writes and syncs noted on the way.
  static const sqlite3_io_methods* platform_methods = f->real->pMethods;
  static sqlite3_io_methods through = [] {
    sqlite3_io_methods m{};
    m.iVersion = platform_methods->iVersion;
    m.xClose = [](sqlite3_file* x) { return of(x).real->pMethods->xClose(of(x).real); };
    m.xRead = [](sqlite3_file* x, void* b, int n, sqlite3_int64 o) {
      return of(x).log ? log_read(x, b, n, o) : of(x).real->pMethods->xRead(of(x).real, b, n, o);
    };
    m.xWrite = [](sqlite3_file* x, const void* b, int n, sqlite3_int64 o) {
      return of(x).log ? log_write(x, b, n, o) : of(x).real->pMethods->xWrite(of(x).real, b, n, o);
    };
    m.xTruncate = [](sqlite3_file* x, sqlite3_int64 s) { return of(x).real->pMethods->xTruncate(of(x).real, s); };
    m.xSync = [](sqlite3_file* x, int fl) {
      return of(x).log ? log_sync(x, fl) : of(x).real->pMethods->xSync(of(x).real, fl);
    };
    m.xFileSize = [](sqlite3_file* x, sqlite3_int64* s) { return of(x).real->pMethods->xFileSize(of(x).real, s); };
    m.xLock = [](sqlite3_file* x, int l) { return of(x).real->pMethods->xLock(of(x).real, l); };
    m.xUnlock = [](sqlite3_file* x, int l) { return of(x).real->pMethods->xUnlock(of(x).real, l); };
    m.xCheckReservedLock = [](sqlite3_file* x, int* r) {
      return of(x).real->pMethods->xCheckReservedLock(of(x).real, r);
    };
    m.xFileControl = [](sqlite3_file* x, int op, void* a) {
      return of(x).real->pMethods->xFileControl(of(x).real, op, a);
    };
    m.xSectorSize = [](sqlite3_file* x) { return of(x).real->pMethods->xSectorSize(of(x).real); };
    m.xDeviceCharacteristics = [](sqlite3_file* x) { return of(x).real->pMethods->xDeviceCharacteristics(of(x).real); };
    m.xShmMap = [](sqlite3_file* x, int p, int s, int e, void volatile** o) {
      return of(x).real->pMethods->xShmMap(of(x).real, p, s, e, o);
    };
    m.xShmLock = [](sqlite3_file* x, int o, int n, int fl) {
      return of(x).real->pMethods->xShmLock(of(x).real, o, n, fl);
    };
    m.xShmBarrier = [](sqlite3_file* x) { of(x).real->pMethods->xShmBarrier(of(x).real); };
    m.xShmUnmap = [](sqlite3_file* x, int d) { return of(x).real->pMethods->xShmUnmap(of(x).real, d); };
    m.xFetch = [](sqlite3_file* x, sqlite3_int64 o, int n, void** p) {
      return of(x).real->pMethods->xFetch(of(x).real, o, n, p);
    };
    m.xUnfetch = [](sqlite3_file* x, sqlite3_int64 o, void* p) {
      return of(x).real->pMethods->xUnfetch(of(x).real, o, p);
    };
    return m;
  }();
  f->base.pMethods = &through;
  return SQLITE_OK;
}

// Made the default before the store's first connection registers its VFS
// (on top of the default), once for the whole binary.
class RecordingVfs : public ::testing::Environment {
 public:
  void SetUp() override {
    platform = sqlite3_vfs_find(nullptr);
    recording = *platform;
    recording.pNext = nullptr;
    recording.zName = "recording";
    recording.szOsFile = static_cast<int>(sizeof(File)) + platform->szOsFile;
    recording.xOpen = recording_open;
    ASSERT_EQ(sqlite3_vfs_register(&recording, 1), SQLITE_OK);
  }
};

const auto* const environment = ::testing::AddGlobalTestEnvironment(new RecordingVfs);

std::vector<Event> take_events() {
  std::lock_guard lock(events_mutex);
  return std::exchange(events, {});
}

class SqliteVfs : public ::testing::Test {
 protected:
  void SetUp() override {
    db = std::make_unique<store::Database>(dir / "referrald.db", store::OpenMode::read_write_create);
    db->exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)");
    take_events();
  }

  void insert_rows(int n, int bytes) {
    db->begin_write();
    for (int i = 0; i < n; ++i) {
      auto st = db->prepare("INSERT INTO t (v) VALUES (randomblob(?1))");
      st.bind(1, std::int64_t{bytes});
      st.run();
    }
    db->commit();
  }

  test::TempDir dir;
  std::unique_ptr<store::Database> db;
};

// As the writer commits: synchronous=NORMAL, the log fsynced by another
// descriptor (store/writer.cpp).
TEST_F(SqliteVfs, EachFrameOfTheLogIsWrittenWithItsHeaderInOneCall) {
  db->exec("PRAGMA synchronous=NORMAL");
  // The first commit, then one after a checkpoint of the whole log, which
  // starts the log again from its beginning.
  for (int round = 0; round < 2; ++round) {
    insert_rows(20, 3000);  // a page or more each: many frames in one commit
    int frames = 0, alone = 0;
    for (const Event& e : take_events()) {
      if (e.kind != 'w') continue;
      // The log's own header is 32 bytes; a frame is 24 bytes of header and
      // a page. Only the commit's first frame may be written in two calls,
      // when the write before it was another connection's or a sync came
      // between (a new log's header is synced before its first frame).
      if (e.bytes == 24) ++alone;
      if (e.bytes == 24 + 4096) ++frames;
    }
    EXPECT_GE(frames, 20) << "round " << round;
    EXPECT_LE(alone, 1) << "round " << round;
    const auto checkpoint = db->checkpoint();
    EXPECT_EQ(checkpoint.written, checkpoint.log);
    take_events();
  }
}

// With synchronous=FULL (referralctl's connections) the commit still ends
// with its sync, and what follows a sync is never held: only the first
// frame after one is written in two calls.
TEST_F(SqliteVfs, WithFullSyncEachCommitEndsWithItsSync) {
  for (int commit = 0; commit < 3; ++commit) {
    insert_rows(10, 3000);
    const auto seen = take_events();
    ASSERT_FALSE(seen.empty());
    EXPECT_EQ(seen.back().kind, 's');
    int alone = 0;
    for (const Event& e : seen) alone += e.kind == 'w' && e.bytes == 24 ? 1 : 0;
    EXPECT_LE(alone, 1) << "commit " << commit;
  }
}

TEST_F(SqliteVfs, AnotherConnectionReadsWhatWasCommitted) {
  insert_rows(50, 1000);
  store::Database reader(dir / "referrald.db", store::OpenMode::read_only);
  auto st = reader.prepare("SELECT count(*), sum(length(v)) FROM t");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.column_int(0), 50);
  EXPECT_EQ(st.column_int(1), 50 * 1000);
  const auto result = db->checkpoint();
  EXPECT_EQ(result.written, result.log);
}

// A transaction larger than the page cache spills pages to the log before
// its commit; a spilled page changed again is written over in place, and
// the commit then rewrites the checksums of its frames: their headers
// alone, the commit frame's last. With synchronous=NORMAL (the writer's)
// nothing follows, and the fsync that acknowledges the commit is another
// descriptor's. So the commit's every byte must be in the file when the
// commit returns: a copy of the files taken then, as a crash would leave
// them, holds the whole transaction.
TEST_F(SqliteVfs, ACommitThatRewritesItsChecksumsIsWhollyInTheFileWhenItReturns) {
  db->exec("PRAGMA cache_size=5");
  db->exec("PRAGMA synchronous=NORMAL");
  db->begin_write();
  for (int i = 0; i < 60; ++i) {
    auto st = db->prepare("INSERT INTO t (v) VALUES (zeroblob(3000))");
    st.run();
  }
  db->exec("UPDATE t SET v = randomblob(3000)");  // the spilled pages, changed again
  db->commit();

  // The files as they are now, without SQLite's shared index: opening the
  // copy recovers the log from its frames and their checksums.
  test::TempDir crash;
  std::filesystem::copy_file(dir / "referrald.db", crash / "referrald.db");
  std::filesystem::copy_file(dir / "referrald.db-wal", crash / "referrald.db-wal");
  store::Database copy(crash / "referrald.db", store::OpenMode::read_write);
  auto st = copy.prepare("SELECT count(*), sum(v = zeroblob(3000)) FROM t");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.column_int(0), 60);
  EXPECT_EQ(st.column_int(1), 0);  // every row as updated
}

// A full disk at a frame's page: the commit fails, and what was committed
// before it is all there is, after the connection is opened anew.
TEST_F(SqliteVfs, AFullDiskAtAFrameFailsTheCommitAndLosesNothingCommitted) {
  insert_rows(5, 3000);
  {
    std::lock_guard lock(events_mutex);
    refuse_log_writes_after = 3;
  }
  EXPECT_THROW(insert_rows(20, 3000), store::DatabaseError);
  {
    std::lock_guard lock(events_mutex);
    refuse_log_writes_after = -1;
  }
  db.reset();
  store::Database again(dir / "referrald.db", store::OpenMode::read_write);
  auto st = again.prepare("SELECT count(*) FROM t");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.column_int(0), 5);
  auto check = again.prepare("PRAGMA integrity_check");
  ASSERT_TRUE(check.step());
  EXPECT_EQ(check.column_text(0), "ok");
}

}  // namespace
}  // namespace referrald
