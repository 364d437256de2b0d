// The floor under referrald's intake: how many durable commits per second
// this machine's disk allows with the settings referrald uses (WAL,
// synchronous=FULL), inserting 2 KB rows into a fresh database for a fixed
// time. Compare referrald's stored referrals per second with rows/s here:
// group commit lets referrald exceed one referral per commit.
//
//   sqlite_commit_loop [FILE] [SECONDS] [ROWS_PER_COMMIT] [ROW_BYTES]
//
// Defaults: ./sqlite_commit_loop.db, 5 s, 1 row per commit, 2048 bytes. The
// file (and its -wal/-shm) is replaced at the start and removed at the end.
// Prints one line of key=value figures.
#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

[[noreturn]] void die(sqlite3* db, const char* what) {
  std::fprintf(stderr, "sqlite_commit_loop: %s: %s\n", what, db != nullptr ? sqlite3_errmsg(db) : "out of memory");
  std::exit(1);
}

void exec(sqlite3* db, const char* sql) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) die(db, sql);
}

void remove_database(const std::string& file) {
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) std::remove((file + suffix).c_str());
}

long parse_positive(const char* text, const char* name) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v <= 0) {
    std::fprintf(stderr, "sqlite_commit_loop: %s must be a positive integer, got \"%s\"\n", name, text);
    std::exit(2);
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 5) {
    std::fprintf(stderr, "usage: sqlite_commit_loop [FILE] [SECONDS] [ROWS_PER_COMMIT] [ROW_BYTES]\n");
    return 2;
  }
  const std::string file = argc > 1 ? argv[1] : "sqlite_commit_loop.db";
  const long seconds = argc > 2 ? parse_positive(argv[2], "SECONDS") : 5;
  const long rows_per_commit = argc > 3 ? parse_positive(argv[3], "ROWS_PER_COMMIT") : 1;
  const long row_bytes = argc > 4 ? parse_positive(argv[4], "ROW_BYTES") : 2048;

  remove_database(file);
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    die(db, "open");
  }
  {
    // journal_mode answers with the mode in effect; WAL can be refused (e.g. on some network filesystems).
    sqlite3_stmt* journal = nullptr;
    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &journal, nullptr) != SQLITE_OK) die(db, "journal_mode");
    const bool wal = sqlite3_step(journal) == SQLITE_ROW &&
                     std::string(reinterpret_cast<const char*>(sqlite3_column_text(journal, 0))) == "wal";
    sqlite3_finalize(journal);
    if (!wal) die(db, "journal_mode=WAL not in effect");
  }
  exec(db, "PRAGMA synchronous=FULL");
  exec(db, "CREATE TABLE rows (id INTEGER PRIMARY KEY, received_ms INTEGER NOT NULL, body BLOB NOT NULL)");

  sqlite3_stmt* begin = nullptr;
  sqlite3_stmt* insert = nullptr;
  sqlite3_stmt* commit = nullptr;
  if (sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, nullptr) != SQLITE_OK) die(db, "prepare BEGIN");
  if (sqlite3_prepare_v2(db, "INSERT INTO rows (received_ms, body) VALUES (?1, ?2)", -1, &insert, nullptr) !=
      SQLITE_OK) {
    die(db, "prepare INSERT");
  }
  if (sqlite3_prepare_v2(db, "COMMIT", -1, &commit, nullptr) != SQLITE_OK) die(db, "prepare COMMIT");

  // Not all one byte, so the row is not trivially compressible by a filesystem.
  std::string body(static_cast<std::size_t>(row_bytes), '\0');
  for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + i % 26);

  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  const auto stop_at = start + std::chrono::seconds(seconds);
  std::uint64_t commits = 0;
  std::uint64_t rows = 0;
  while (clock::now() < stop_at) {
    if (sqlite3_step(begin) != SQLITE_DONE) die(db, "BEGIN");
    sqlite3_reset(begin);
    for (long i = 0; i < rows_per_commit; ++i) {
      const auto now_ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
              .count();
      sqlite3_bind_int64(insert, 1, static_cast<sqlite3_int64>(now_ms));
      sqlite3_bind_blob(insert, 2, body.data(), static_cast<int>(body.size()), SQLITE_STATIC);
      if (sqlite3_step(insert) != SQLITE_DONE) die(db, "INSERT");
      sqlite3_reset(insert);
      ++rows;
    }
    if (sqlite3_step(commit) != SQLITE_DONE) die(db, "COMMIT");
    sqlite3_reset(commit);
    ++commits;
  }
  const double elapsed = std::chrono::duration<double>(clock::now() - start).count();

  sqlite3_finalize(begin);
  sqlite3_finalize(insert);
  sqlite3_finalize(commit);
  sqlite3_close(db);
  remove_database(file);

  std::printf(
      "sqlite_commit_loop: journal=wal synchronous=full row_bytes=%ld rows_per_commit=%ld seconds=%.2f "
      "commits=%llu rows=%llu commits_per_s=%.0f rows_per_s=%.0f\n",
      row_bytes, rows_per_commit, elapsed, static_cast<unsigned long long>(commits),
      static_cast<unsigned long long>(rows), static_cast<double>(commits) / elapsed,
      static_cast<double>(rows) / elapsed);
  return 0;
}
