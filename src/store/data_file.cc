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
  const uint64_t last = (end - 1) / page;
  uint64_t p = offset / page;
  while (p <= last && PageKnownResident(p)) ++p;
  if (p > last) return true;
  // Ask about the pages from the first not known resident; remember the ones that are.
  unsigned char vec[64];
  while (p <= last) {
    const uint64_t pages = std::min<uint64_t>(last - p + 1, sizeof(vec));
    residency_queries_.fetch_add(1, std::memory_order_relaxed);
    if (mincore(map_ + p * page, pages * page, vec) != 0) return true;  // cannot tell: read inline
    for (uint64_t i = 0; i < pages; ++i) {
      if ((vec[i] & 1) == 0) return false;
      resident_pages_[(p + i) / 64].fetch_or(uint64_t{1} << ((p + i) % 64), std::memory_order_relaxed);
    }
    p += pages;
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
  constexpr uint64_t kChunk = 4096;  // pages per mincore call (a multiple of 64: whole bitmap words)
  static thread_local unsigned char vec[kChunk];
  uint64_t prefix = UINT64_MAX;  // the first page found evicted, as a byte offset
  uint64_t evicted = 0;
  uint64_t at = 0;
  while (at < end) {
    const uint64_t pages = std::min<uint64_t>((end - at + page - 1) / page, kChunk);
    if (mincore(map_ + at, pages * page, vec) != 0) {
      if (prefix == UINT64_MAX) prefix = at;
      evicted += (end - at + page - 1) / page;  // (not known: counted out)
      break;
    }
    const uint64_t first_page = at / page;
    for (uint64_t w = 0; w * 64 < pages; ++w) {
      uint64_t bits = 0;
      const uint64_t n = std::min(pages, w * 64 + 64) - w * 64;
      for (uint64_t i = w * 64; i < w * 64 + n; ++i) bits |= uint64_t{vec[i] & 1u} << (i % 64);
      resident_pages_[first_page / 64 + w].store(bits, std::memory_order_relaxed);
      evicted += n - static_cast<uint64_t>(__builtin_popcountll(bits));
    }
    if (prefix == UINT64_MAX) {
      uint64_t i = 0;
      while (i < pages && (vec[i] & 1) != 0) ++i;
      if (i < pages) prefix = at + i * page;
    }
    at += pages * page;
  }
  const uint64_t upto = std::min(prefix, end);
  resident_upto_.store(upto == end ? UINT64_MAX : upto, std::memory_order_relaxed);
  evicted_pages_.store(upto == end ? 0 : evicted, std::memory_order_relaxed);
  return upto;
}

void DataFile::FetchEvicted() const {
  if (evicted_pages() == 0) return;
  const uint64_t end = size();
  const uint64_t page = PageSize();
  for (uint64_t p = resident_upto() / page; p * page < end;) {
    if (PageKnownResident(p)) {
      ++p;
      continue;
    }
    uint64_t last = p;
    while ((last + 1) * page < end && !PageKnownResident(last + 1)) ++last;
    Fetch(p * page, (last - p + 1) * page);
    p = last + 1;
  }
}

void DataFile::DropPages() const {
  madvise(map_, map_size_, MADV_DONTNEED);  // a shared file mapping: drops our page-table entries only
  posix_fadvise(fd_, 0, 0, POSIX_FADV_DONTNEED);
  resident_upto_.store(0, std::memory_order_relaxed);
  for (uint64_t i = 0; i < PageWords(map_size_); ++i) resident_pages_[i].store(0, std::memory_order_relaxed);
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
