#include "store/io.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>

namespace keg::store::io {
namespace {
std::atomic<FaultHook> g_fault_hook{nullptr};
}  // namespace

void SetFaultHook(FaultHook hook) { g_fault_hook.store(hook); }

Status WriteAll(int fd, std::string_view path, uint64_t offset, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  if (FaultHook hook = g_fault_hook.load(std::memory_order_relaxed)) {
    const int fault = hook(FaultOp::kWrite, path);
    if (fault > 0) return Status::FromErrno("write", path, static_cast<long long>(offset), fault);
    if (fault < 0) {  // a partial write, then the disk is full
      const size_t part = std::min(n, static_cast<size_t>(-fault));
      const ssize_t written = pwrite(fd, p, part, static_cast<off_t>(offset));
      (void)written;  // the partial write is the fault being simulated; its result does not matter
      return Status::FromErrno("write", path, static_cast<long long>(offset + part), ENOSPC);
    }
  }
  while (n > 0) {
    const ssize_t w = pwrite(fd, p, n, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("write", path, static_cast<long long>(offset), errno);
    }
    p += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
  return Status::OK();
}

Status SyncFile(int fd, std::string_view path) {
  if (FaultHook hook = g_fault_hook.load(std::memory_order_relaxed)) {
    if (const int fault = hook(FaultOp::kSync, path); fault > 0) {
      return Status::FromErrno("fdatasync", path, -1, fault);
    }
  }
  if (fdatasync(fd) != 0) return Status::FromErrno("fdatasync", path, -1, errno);
  return Status::OK();
}

Status SyncDir(const std::string& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open directory", dir, -1, errno);
  Status s;
  if (fsync(fd) != 0) s = Status::FromErrno("fsync directory", dir, -1, errno);
  close(fd);
  return s;
}

namespace {
std::string DirOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
}
}  // namespace

Status ReplaceFile(const std::string& path, std::string_view bytes) {
  const std::string tmp = path + ".tmp";
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno("open", tmp, -1, errno);
  Status s = WriteAll(fd, tmp, 0, bytes.data(), bytes.size());
  if (s.ok()) s = SyncFile(fd, tmp);
  close(fd);
  if (s.ok() && rename(tmp.c_str(), path.c_str()) != 0) s = Status::FromErrno("rename to " + path, tmp, -1, errno);
  if (!s.ok()) {
    unlink(tmp.c_str());
    return s;
  }
  return SyncDir(DirOf(path));
}

Status RemoveFile(const std::string& path) {
  if (unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return Status::OK();
    return Status::FromErrno("unlink", path, -1, errno);
  }
  return SyncDir(DirOf(path));
}

Status ListDir(const std::string& dir, std::vector<std::string>* names) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return Status::FromErrno("open directory", dir, -1, errno);
  names->clear();
  while (const dirent* e = readdir(d)) {
    const std::string_view name = e->d_name;
    if (name != "." && name != "..") names->emplace_back(name);
  }
  closedir(d);
  return Status::OK();
}

Status FileSize(int fd, std::string_view path, uint64_t* size) {
  struct stat st;
  if (fstat(fd, &st) != 0) return Status::FromErrno("stat", path, -1, errno);
  *size = static_cast<uint64_t>(st.st_size);
  return Status::OK();
}

MappedFile::~MappedFile() {
  if (data != nullptr && size > 0) munmap(const_cast<char*>(data), size);
}

Status MapWholeFile(const std::string& path, MappedFile* out) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open", path, -1, errno);
  uint64_t size = 0;
  Status s = FileSize(fd, path, &size);
  if (s.ok() && size > 0) {
    void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      s = Status::FromErrno("mmap", path, -1, errno);
    } else {
      // Read front to back (keg-check, hint files): read ahead, and let the pages go soon after,
      // so an offline check does not push a running server's hot pages out of the page cache.
      madvise(p, size, MADV_SEQUENTIAL);
      out->data = static_cast<const char*>(p);
      out->size = size;
    }
  }
  close(fd);
  return s;
}

}  // namespace keg::store::io
