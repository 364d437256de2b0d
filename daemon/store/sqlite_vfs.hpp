// The SQLite VFS every connection of the store opens its database with: the
// platform's own, with one change to how the write-ahead log is written.
//
// SQLite writes each frame of the log with two write() calls, the frame's
// 24-byte header and then its page. The writer commits a few frames for
// every referral (one per page it changes), so those calls were half of the
// writer's system calls. This VFS holds a frame's header back and writes it
// with the page that follows it, as one call. Only a header that follows on
// from the write before it is held (frames are appended one after another);
// a header SQLite rewrites in place (a commit correcting its frames'
// checksums) is written at once. Nothing else changes: any
// other call on the log (a read, a sync, its size, a truncation, a write
// elsewhere, closing it) first writes a header that is held back, so SQLite
// and every other connection see the log exactly as SQLite wrote it, and a
// commit's frames are all written before the commit returns (and before its
// fsync, which is what a 202 waits for). A header held back when the
// process dies is a write that had not happened yet: the frame it heads was
// not written either, and no commit counted on it.
#pragma once

namespace referrald::store::detail {

// The VFS's name for sqlite3_open_v2, registered on first use (not as the
// default: other users of SQLite in the process are left alone).
const char* sqlite_vfs_name();

}  // namespace referrald::store::detail
