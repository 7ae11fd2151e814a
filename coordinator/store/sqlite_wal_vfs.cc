#include "coordinator/store/sqlite_wal_vfs.h"

#include <glog/logging.h>
#include <sqlite3.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

namespace txc {
namespace {

constexpr char kVfsName[] = "txc-wal-gather";
// Gathered bytes are written once they would pass this (a large transaction
// does not buffer its whole WAL).
constexpr size_t kMaxGatherBytes = 1 << 20;
// The most one write to the unix VFS may carry: it masks a write's length to
// 17 bits (os_unix.c seekAndWriteFd), so larger ones go in pieces. 124 KiB
// holds a commit of 30 pages with their frame headers.
constexpr size_t kMaxWriteBytes = 124 * 1024;

sqlite3_vfs* Root(sqlite3_vfs* vfs) { return static_cast<sqlite3_vfs*>(vfs->pAppData); }

// One open file: ours, then the default VFS's file in the same allocation.
struct File {
  sqlite3_file base;  // first: SQLite sees a File as a sqlite3_file
  sqlite3_file* real = nullptr;
  bool wal = false;
  std::string path;      // as opened: "<db>" for the database, "<db>-wal" for its WAL
  std::string wal_path;  // a database's: "<db>-wal", made once at open
  // WAL files only:
  std::mutex mu;  // guards everything below (a shared-memory call of another
                  // connection to the same database may flush these bytes)
  std::vector<unsigned char> gathered;
  sqlite3_int64 gathered_offset = 0;
  int failed_rc = SQLITE_OK;  // a flush failed where no error could be returned
};

// The open WAL files, for the shared-memory calls of their databases.
std::mutex registry_mu;
std::vector<File*>* registry = new std::vector<File*>();  // never destroyed

int FlushLocked(File* f) {
  int rc = SQLITE_OK;
  for (size_t done = 0; done < f->gathered.size() && rc == SQLITE_OK;) {
    const size_t n = std::min(kMaxWriteBytes, f->gathered.size() - done);
    rc = f->real->pMethods->xWrite(f->real, f->gathered.data() + done, static_cast<int>(n),
                                   f->gathered_offset + static_cast<sqlite3_int64>(done));
    done += n;
  }
  f->gathered.clear();
  if (f->gathered.capacity() > kMaxGatherBytes) f->gathered.shrink_to_fit();
  return rc;
}

// Flushes before a call on the WAL file itself; the call's error when it fails.
int FlushFor(File* f) {
  if (!f->wal) return SQLITE_OK;
  std::lock_guard<std::mutex> lock(f->mu);
  if (f->failed_rc != SQLITE_OK) return f->failed_rc;
  return FlushLocked(f);
}

// Before a shared-memory call on database `db`: every WAL file of it flushed.
// These calls cannot report a write error; it is kept and every later call on
// that WAL file fails with it. (The store runs synchronous=FULL, where the
// commit's sync reports it first.)
void FlushWalsOf(const File* db) {
  std::lock_guard<std::mutex> registry_lock(registry_mu);
  for (File* w : *registry) {
    if (w->path != db->wal_path) continue;
    std::lock_guard<std::mutex> lock(w->mu);
    if (w->failed_rc != SQLITE_OK) continue;
    const int rc = FlushLocked(w);
    if (rc != SQLITE_OK) {
      w->failed_rc = rc;
      LOG(ERROR) << "sqlite WAL write of " << w->path << " failed (code " << rc
                 << "); the connection fails from here";
    }
  }
}

File* Of(sqlite3_file* f) { return reinterpret_cast<File*>(f); }

int Close(sqlite3_file* pf) {
  File* f = Of(pf);
  int rc = SQLITE_OK;
  if (f->wal) {
    {
      std::lock_guard<std::mutex> registry_lock(registry_mu);
      registry->erase(std::remove(registry->begin(), registry->end(), f), registry->end());
    }
    rc = FlushFor(f);
  }
  const int close_rc = f->real->pMethods->xClose(f->real);
  f->~File();
  return rc != SQLITE_OK ? rc : close_rc;
}

int Read(sqlite3_file* pf, void* out, int amount, sqlite3_int64 offset) {
  File* f = Of(pf);
  const int rc = FlushFor(f);
  if (rc != SQLITE_OK) return rc;
  return f->real->pMethods->xRead(f->real, out, amount, offset);
}

int Write(sqlite3_file* pf, const void* data, int amount, sqlite3_int64 offset) {
  File* f = Of(pf);
  if (!f->wal) return f->real->pMethods->xWrite(f->real, data, amount, offset);
  std::lock_guard<std::mutex> lock(f->mu);
  if (f->failed_rc != SQLITE_OK) return f->failed_rc;
  const auto n = static_cast<size_t>(amount);
  const bool follows =
      !f->gathered.empty() &&
      offset == f->gathered_offset + static_cast<sqlite3_int64>(f->gathered.size());
  if (!f->gathered.empty() && (!follows || f->gathered.size() + n > kMaxGatherBytes)) {
    const int rc = FlushLocked(f);
    if (rc != SQLITE_OK) return rc;
  }
  if (n > kMaxWriteBytes) return f->real->pMethods->xWrite(f->real, data, amount, offset);
  if (f->gathered.empty()) f->gathered_offset = offset;
  const auto* bytes = static_cast<const unsigned char*>(data);
  f->gathered.insert(f->gathered.end(), bytes, bytes + n);
  return SQLITE_OK;
}

int Truncate(sqlite3_file* pf, sqlite3_int64 size) {
  File* f = Of(pf);
  const int rc = FlushFor(f);
  if (rc != SQLITE_OK) return rc;
  return f->real->pMethods->xTruncate(f->real, size);
}

int Sync(sqlite3_file* pf, int flags) {
  File* f = Of(pf);
  const int rc = FlushFor(f);
  if (rc != SQLITE_OK) return rc;
  return f->real->pMethods->xSync(f->real, flags);
}

int FileSize(sqlite3_file* pf, sqlite3_int64* size) {
  File* f = Of(pf);
  const int rc = FlushFor(f);
  if (rc != SQLITE_OK) return rc;
  return f->real->pMethods->xFileSize(f->real, size);
}

int Lock(sqlite3_file* pf, int level) {
  File* f = Of(pf);
  const int rc = FlushFor(f);
  if (rc != SQLITE_OK) return rc;
  return f->real->pMethods->xLock(f->real, level);
}

int Unlock(sqlite3_file* pf, int level) {
  File* f = Of(pf);
  const int rc = FlushFor(f);
  if (rc != SQLITE_OK) return rc;
  return f->real->pMethods->xUnlock(f->real, level);
}

int CheckReservedLock(sqlite3_file* pf, int* out) {
  File* f = Of(pf);
  return f->real->pMethods->xCheckReservedLock(f->real, out);
}

int FileControl(sqlite3_file* pf, int op, void* arg) {
  File* f = Of(pf);
  if (op == SQLITE_FCNTL_VFSNAME) {
    // Name the stack ("txc-wal-gather/unix") as SQLite's own shims do.
    const int rc = f->real->pMethods->xFileControl(f->real, op, arg);
    if (rc == SQLITE_OK) {
      char** name = static_cast<char**>(arg);
      char* stacked = sqlite3_mprintf("%s/%z", kVfsName, *name);
      *name = stacked;
    }
    return rc;
  }
  const int rc = FlushFor(f);
  if (rc != SQLITE_OK) return rc;
  return f->real->pMethods->xFileControl(f->real, op, arg);
}

int SectorSize(sqlite3_file* pf) {
  File* f = Of(pf);
  return f->real->pMethods->xSectorSize(f->real);
}

int DeviceCharacteristics(sqlite3_file* pf) {
  File* f = Of(pf);
  return f->real->pMethods->xDeviceCharacteristics(f->real);
}

int ShmMap(sqlite3_file* pf, int page, int page_size, int extend, void volatile** out) {
  File* f = Of(pf);
  return f->real->pMethods->xShmMap(f->real, page, page_size, extend, out);
}

int ShmLock(sqlite3_file* pf, int offset, int n, int flags) {
  File* f = Of(pf);
  FlushWalsOf(f);
  return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

void ShmBarrier(sqlite3_file* pf) {
  File* f = Of(pf);
  FlushWalsOf(f);
  f->real->pMethods->xShmBarrier(f->real);
}

int ShmUnmap(sqlite3_file* pf, int delete_flag) {
  File* f = Of(pf);
  FlushWalsOf(f);
  return f->real->pMethods->xShmUnmap(f->real, delete_flag);
}

int Fetch(sqlite3_file* pf, sqlite3_int64 offset, int amount, void** out) {
  File* f = Of(pf);
  const int rc = FlushFor(f);
  if (rc != SQLITE_OK) return rc;
  return f->real->pMethods->xFetch(f->real, offset, amount, out);
}

int Unfetch(sqlite3_file* pf, sqlite3_int64 offset, void* p) {
  File* f = Of(pf);
  return f->real->pMethods->xUnfetch(f->real, offset, p);
}

// One table per version of the underlying file's methods: SQLite calls
// methods past the version it is given only when the real file has them.
sqlite3_io_methods MethodsOfVersion(int version) {
  sqlite3_io_methods m{};
  m.iVersion = version;
  m.xClose = Close;
  m.xRead = Read;
  m.xWrite = Write;
  m.xTruncate = Truncate;
  m.xSync = Sync;
  m.xFileSize = FileSize;
  m.xLock = Lock;
  m.xUnlock = Unlock;
  m.xCheckReservedLock = CheckReservedLock;
  m.xFileControl = FileControl;
  m.xSectorSize = SectorSize;
  m.xDeviceCharacteristics = DeviceCharacteristics;
  if (version >= 2) {
    m.xShmMap = ShmMap;
    m.xShmLock = ShmLock;
    m.xShmBarrier = ShmBarrier;
    m.xShmUnmap = ShmUnmap;
  }
  if (version >= 3) {
    m.xFetch = Fetch;
    m.xUnfetch = Unfetch;
  }
  return m;
}

const sqlite3_io_methods kMethods[3] = {MethodsOfVersion(1), MethodsOfVersion(2),
                                        MethodsOfVersion(3)};

int Open(sqlite3_vfs* vfs, sqlite3_filename name, sqlite3_file* pf, int flags, int* out_flags) {
  File* f = new (pf) File();
  f->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(pf) + sizeof(File));
  f->wal = (flags & SQLITE_OPEN_WAL) != 0;
  if (name != nullptr) f->path = name;
  if (!f->wal) f->wal_path = f->path + "-wal";  // not per shared-memory call
  const int rc = Root(vfs)->xOpen(Root(vfs), name, f->real, flags, out_flags);
  if (rc != SQLITE_OK || f->real->pMethods == nullptr) {
    // SQLite does not close a file whose open failed.
    if (f->real->pMethods != nullptr) f->real->pMethods->xClose(f->real);
    f->~File();
    pf->pMethods = nullptr;
    return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
  }
  const int version = std::clamp(f->real->pMethods->iVersion, 1, 3);
  f->base.pMethods = &kMethods[version - 1];
  if (f->wal) {
    std::lock_guard<std::mutex> registry_lock(registry_mu);
    registry->push_back(f);
  }
  return SQLITE_OK;
}

// The rest of the VFS passes the root VFS, not ours, to the root's methods.
int Delete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
  return Root(vfs)->xDelete(Root(vfs), name, sync_dir);
}
int Access(sqlite3_vfs* vfs, const char* name, int flags, int* out) {
  return Root(vfs)->xAccess(Root(vfs), name, flags, out);
}
int FullPathname(sqlite3_vfs* vfs, const char* name, int n, char* out) {
  return Root(vfs)->xFullPathname(Root(vfs), name, n, out);
}
void* DlOpen(sqlite3_vfs* vfs, const char* name) { return Root(vfs)->xDlOpen(Root(vfs), name); }
void DlError(sqlite3_vfs* vfs, int n, char* out) { Root(vfs)->xDlError(Root(vfs), n, out); }
void (*DlSym(sqlite3_vfs* vfs, void* handle, const char* symbol))(void) {
  return Root(vfs)->xDlSym(Root(vfs), handle, symbol);
}
void DlClose(sqlite3_vfs* vfs, void* handle) { Root(vfs)->xDlClose(Root(vfs), handle); }
int Randomness(sqlite3_vfs* vfs, int n, char* out) {
  return Root(vfs)->xRandomness(Root(vfs), n, out);
}
int Sleep(sqlite3_vfs* vfs, int micros) { return Root(vfs)->xSleep(Root(vfs), micros); }
int CurrentTime(sqlite3_vfs* vfs, double* out) { return Root(vfs)->xCurrentTime(Root(vfs), out); }
int GetLastError(sqlite3_vfs* vfs, int n, char* out) {
  return Root(vfs)->xGetLastError(Root(vfs), n, out);
}
int CurrentTimeInt64(sqlite3_vfs* vfs, sqlite3_int64* out) {
  return Root(vfs)->xCurrentTimeInt64(Root(vfs), out);
}

const char* Register() {
  sqlite3_vfs* root = sqlite3_vfs_find(nullptr);
  if (root == nullptr || root->iVersion < 2 || root->xCurrentTimeInt64 == nullptr) {
    LOG(WARNING) << "sqlite: no default VFS of version 2 or later; WAL writes are not gathered";
    return nullptr;
  }
  auto* vfs = new sqlite3_vfs{};  // lives as long as the process
  vfs->iVersion = 2;
  vfs->szOsFile = static_cast<int>(sizeof(File)) + root->szOsFile;
  vfs->mxPathname = root->mxPathname;
  vfs->zName = kVfsName;
  vfs->pAppData = root;
  vfs->xOpen = Open;
  vfs->xDelete = Delete;
  vfs->xAccess = Access;
  vfs->xFullPathname = FullPathname;
  vfs->xDlOpen = DlOpen;
  vfs->xDlError = DlError;
  vfs->xDlSym = DlSym;
  vfs->xDlClose = DlClose;
  vfs->xRandomness = Randomness;
  vfs->xSleep = Sleep;
  vfs->xCurrentTime = CurrentTime;
  vfs->xGetLastError = GetLastError;
  vfs->xCurrentTimeInt64 = CurrentTimeInt64;
  const int rc = sqlite3_vfs_register(vfs, /*makeDflt=*/0);
  if (rc != SQLITE_OK) {
    LOG(WARNING) << "sqlite: registering the WAL-gathering VFS failed (code " << rc
                 << "); WAL writes are not gathered";
    return nullptr;
  }
  return kVfsName;
}

}  // namespace

const char* CoalescingWalVfsName() {
  static const char* const name = Register();
  return name;
}

}  // namespace txc
