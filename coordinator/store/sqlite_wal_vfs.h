// A SQLite VFS that passes everything to the default VFS except writes to a
// database's write-ahead log: contiguous WAL writes are gathered in memory and
// reach the file as one pwrite at the next point where anything could look at
// the file. SQLite writes each WAL frame as two calls (24-byte header, then
// the page), so a commit of 30 pages cost 60 pwrite system calls; it now costs
// one.
//
// What SQLite sees does not change. The gathered bytes are written before
// any other call on the WAL file (read, sync, truncate, size, lock, file
// control, close) and before any shared-memory lock change or barrier on the
// database they belong to. So they are in the file before a commit is
// synced (synchronous=FULL) or published in the WAL index (any synchronous
// setting), before the write lock is released, and before the connection
// reads its own frames back. A write error surfaces at that next call, which
// fails with SQLITE_IOERR_WRITE like the write itself would have; the
// gathered bytes are then dropped (never written later, after SQLite moved
// on). A process killed with bytes still gathered loses only frames of a
// transaction that had not committed yet: SQLite ignores those after a crash
// anyway.
#pragma once

namespace txc {

// The VFS's name for sqlite3_open_v2, registered on the first call
// (thread-safe); nullptr when registration failed (the caller then opens with
// the default VFS: correct, only slower).
const char* CoalescingWalVfsName();

}  // namespace txc
