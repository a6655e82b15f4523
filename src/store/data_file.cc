#include "store/data_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace keg::store {

Status DataFile::Map(std::string path, uint64_t id, uint32_t index, int fd, uint64_t size,
                     uint64_t map_size, std::shared_ptr<DataFile>* out) {
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  map_size = std::max(map_size, size);
  map_size = std::max<uint64_t>((map_size + page - 1) / page * page, page);
  void* map = mmap(nullptr, map_size, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) {
    const int err = errno;
    close(fd);
    return Status::FromErrno("mmap", path, -1, err);
  }
  // Reads are random: without this advice every fault reads up to the device's read-ahead (8 MiB
  // on some virtual disks), evicting more than it brings. Scans ask for read-ahead themselves.
  madvise(map, map_size, MADV_RANDOM);
  out->reset(new DataFile(std::move(path), id, index, fd, static_cast<char*>(map), map_size, size));
  return Status::OK();
}

uint64_t DataFile::PageSize() {
  static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  return page;
}

bool DataFile::Resident(uint64_t offset, uint64_t len) const {
  const uint64_t end = std::min(offset + len, size());
  if (end <= resident_upto() || offset >= end) return true;
  const uint64_t page = PageSize();
  uint64_t first = offset / page * page;
  unsigned char vec[64];
  while (first < end) {
    const uint64_t pages = std::min<uint64_t>((end - first + page - 1) / page, sizeof(vec));
    if (mincore(map_ + first, pages * page, vec) != 0) return true;  // cannot tell: read inline
    for (uint64_t i = 0; i < pages; ++i) {
      if ((vec[i] & 1) == 0) return false;
    }
    first += pages * page;
  }
  return true;
}

void DataFile::Fetch(uint64_t offset, uint64_t len) const {
  const uint64_t end = std::min(offset + len, size());
  if (offset >= end) return;
  const uint64_t page = PageSize();
  const uint64_t first = offset / page * page;
  // Up to 16 KiB: one pread into a scratch buffer (the cheapest way into the page cache: one
  // system call, no page-table work; the bytes copied are thrown away, readers use the mapping).
  // More: start the reads of all the pages at once, then wait for each by touching it (no copy).
  constexpr uint64_t kReadMax = 16384;
  if (end - first <= kReadMax) {
    alignas(64) static thread_local char scratch[kReadMax];
    if (pread(fd_, scratch, end - first, static_cast<off_t>(first)) >= 0) return;
  }
  if (end - first > page) madvise(map_ + first, end - first, MADV_WILLNEED);
  for (uint64_t p = first; p < end; p += page) {
    (void)*static_cast<const volatile char*>(map_ + std::max(p, offset));
  }
}

uint64_t DataFile::SweepResidency() {
  const uint64_t end = size();
  const uint64_t page = PageSize();
  constexpr uint64_t kChunk = 4096;  // pages per mincore call
  static thread_local unsigned char vec[kChunk];
  uint64_t at = 0;
  while (at < end) {
    const uint64_t pages = std::min<uint64_t>((end - at + page - 1) / page, kChunk);
    if (mincore(map_ + at, pages * page, vec) != 0) break;
    uint64_t i = 0;
    while (i < pages && (vec[i] & 1) != 0) ++i;
    if (i < pages) {
      at += i * page;
      break;
    }
    at += pages * page;
  }
  at = std::min(at, end);
  resident_upto_.store(at == end ? UINT64_MAX : at, std::memory_order_relaxed);
  return at;
}

void DataFile::DropPages() const {
  madvise(map_, map_size_, MADV_DONTNEED);  // a shared file mapping: drops our page-table entries only
  posix_fadvise(fd_, 0, 0, POSIX_FADV_DONTNEED);
  resident_upto_.store(0, std::memory_order_relaxed);
}

void DataFile::Advise(Advice advice, uint64_t offset, uint64_t len) const {
  const uint64_t page = PageSize();
  const uint64_t first = offset / page * page;
  const uint64_t end = std::min(offset + len, map_size_);
  if (first >= end) return;
  int how = MADV_RANDOM;
  switch (advice) {
    case Advice::kRandom: how = MADV_RANDOM; break;
    case Advice::kSequential: how = MADV_SEQUENTIAL; break;
    case Advice::kWillNeed: how = MADV_WILLNEED; break;
    case Advice::kCold: how = MADV_COLD; break;
  }
  madvise(map_ + first, end - first, how);
}

DataFile::~DataFile() {
  munmap(map_, map_size_);
  close(fd_);
}

}  // namespace keg::store
