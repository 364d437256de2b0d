// The SQLite VFS every connection of the store opens its database with: the
// platform's own, with one change to how the write-ahead log is written.
//
// SQLite writes each frame of the log with two write() calls, the frame's
// 24-byte header and then its page, and the writer commits a few frames for
// every referral (one per page it changes): those calls were most of the
// writer's system calls. This VFS holds back what SQLite appends to the log
// and writes it when the transaction's commit frame is complete, a whole
// commit at once (in pieces of 64 KiB, as many as it takes, where it took
// two calls for every frame). Only a write
// that carries on from the write before it is held (frames are appended one
// after another); a write SQLite makes in place, before the end of the log
// (a page changed again within its transaction, a commit correcting its
// frames' checksums), is passed on at once, after what is held. Nothing else
// changes: any other call on the log (a read, a sync, its size, a
// truncation, a file control, closing it) first writes what is held, so
// SQLite and every other connection see the log exactly as SQLite wrote it,
// and a commit's frames are all written before the commit returns (and
// before its fsync, which is what a 202 waits for). Other connections read
// only committed frames. What is held when the process dies is writes that
// had not happened yet, of a transaction that had not committed.
#pragma once

namespace referrald::store::detail {

// The VFS's name for sqlite3_open_v2, registered on first use (not as the
// default: other users of SQLite in the process are left alone).
const char* sqlite_vfs_name();

}  // namespace referrald::store::detail
