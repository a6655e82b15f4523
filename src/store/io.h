// Thin wrappers over the POSIX calls the store makes, each returning a Status that names the file,
// the offset and errno. Thread-safe (they share no state).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "store/status.h"

namespace keg::store::io {

/// Fault injection for tests: when a hook is installed, each WriteAll and SyncFile first asks it;
/// a non-zero errno makes the call fail with that errno without touching the file (for a write, the
/// hook may instead return -N: the first N bytes are written, then the call fails with ENOSPC, as
/// a disk filling up mid-write does). Process-wide; install before the store is used.
enum class FaultOp { kWrite, kSync };
using FaultHook = int (*)(FaultOp op, std::string_view path);
void SetFaultHook(FaultHook hook);

/// pwrite of all `n` bytes at `offset`, retrying short writes and EINTR.
Status WriteAll(int fd, std::string_view path, uint64_t offset, const void* data, size_t n);
/// fdatasync.
Status SyncFile(int fd, std::string_view path);
/// fsync of a directory, so creations, renames and deletions in it are durable.
Status SyncDir(const std::string& dir);
/// Replaces the file `path` with `bytes` durably and atomically: written to `path`.tmp, fdatasynced,
/// renamed over `path`, its directory fsynced. After an error (naming file, offset and errno)
/// `path` is as it was.
Status ReplaceFile(const std::string& path, std::string_view bytes);
/// Removes `path` durably (its directory fsynced); a missing file is no error.
Status RemoveFile(const std::string& path);
/// Names of the entries of `dir` (no "." or "..").
Status ListDir(const std::string& dir, std::vector<std::string>* names);
/// Size of an open file.
Status FileSize(int fd, std::string_view path, uint64_t* size);

/// A whole file mapped read-only for the lifetime of the object.
struct MappedFile {
  const char* data = nullptr;
  uint64_t size = 0;
  MappedFile() = default;
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
};
Status MapWholeFile(const std::string& path, MappedFile* out);

}  // namespace keg::store::io
