// DataFile: one data file of the store, memory-mapped read-only.
//
// Lifetime: owned by std::shared_ptr. The store's file table holds one reference while the file is
// live; every reader holds another (a pin) for as long as it uses bytes of the mapping. The mapping
// is released when the last reference goes, never earlier, so a view can never dangle; compaction
// unlinks retired files while pins may still exist (the inode lives until munmap).
//
// The file is never truncated while mapped. The active file is mapped with a fixed reservation
// (at least the data file size limit) and grows by pwrite from the writer thread; size() is how far
// readers may read, published by the writer (release) after the bytes are written. Pages beyond
// the end of the file are never touched, so no read can raise SIGBUS.
//
// Thread: data(), size(), id(), index() from any thread; set_size() and the byte counters from the
// writer thread (the counters are read by any thread for stats).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "store/status.h"

namespace keg::store {

class DataFile {
 public:
  /// Maps the file at `path` (`size` bytes readable now) with a reservation of at least
  /// `map_size` bytes. `fd` is adopted (closed with the file).
  static Status Map(std::string path, uint64_t id, uint32_t index, int fd, uint64_t size,
                    uint64_t map_size, std::shared_ptr<DataFile>* out);

  ~DataFile();
  DataFile(const DataFile&) = delete;
  DataFile& operator=(const DataFile&) = delete;

  uint64_t id() const { return id_; }
  uint32_t index() const { return index_; }
  const std::string& path() const { return path_; }
  int fd() const { return fd_; }
  const char* data() const { return map_; }
  uint64_t size() const { return size_.load(std::memory_order_acquire); }
  uint64_t map_size() const { return map_size_; }

  /// Writer thread: makes [0, size) readable (the bytes must already be written).
  void set_size(uint64_t size) { size_.store(size, std::memory_order_release); }

  /// Whether every page of [offset, offset + len) is in the page cache, so that reading it through
  /// the mapping cannot wait for the disk. Asks the kernel (mincore); never touches the pages.
  /// Bytes below resident_upto(), and pages the last sweep (or a check since) found resident, are
  /// taken as resident without asking. Any thread.
  bool Resident(uint64_t offset, uint64_t len) const;
  /// Brings [offset, offset + len) into the page cache: starts the reads of all its pages at once
  /// (MADV_WILLNEED), then waits for them by touching each page. Blocks on the disk: for a read
  /// pool thread, never an event loop. Any thread.
  void Fetch(uint64_t offset, uint64_t len) const;
  /// Residency sweep (the server's cron, about once a second): finds the first page of [0, size())
  /// not in the page cache and stores its offset — or, when the whole file is resident, "all of
  /// it, and whatever is appended before the next sweep": appends go through the page cache, so a
  /// key just written does not cost a mincore until a sweep finds part of the file evicted.
  /// Records every page's residency too (see Resident). Returns the resident prefix's length (at
  /// most size()). Any thread; one sweeper at a time.
  uint64_t SweepResidency();
  uint64_t resident_upto() const { return resident_upto_.load(std::memory_order_relaxed); }
  /// Pages of [0, size()) the last sweep found out of the page cache.
  uint64_t evicted_pages() const { return evicted_pages_.load(std::memory_order_relaxed); }
  /// Reads the pages the last sweep found evicted back into the page cache (Fetch, a run of
  /// adjacent pages at a time). Blocks on the disk. Any thread; the sweeper's.
  void FetchEvicted() const;
  /// How many times Resident() has asked the kernel, over every file of the process (tests).
  static uint64_t ResidencyQueries() { return residency_queries_.load(std::memory_order_relaxed); }
  /// Access advice for a range of the mapping: kRandom (serving reads: a fault reads one page, not
  /// the device's read-ahead), kSequential (a scan: read ahead), kWillNeed (start reading now),
  /// kCold (a scan is done with these pages: reclaim them before others; nothing is dropped while
  /// memory is plentiful). Best effort: failures are ignored. Any thread.
  /// Unmaps the file's pages from this process and evicts the clean ones from the page cache
  /// (tests: DEBUG DROP-PAGE-CACHE). Any thread.
  void DropPages() const;
  enum class Advice { kRandom, kSequential, kWillNeed, kCold };
  static uint64_t PageSize();
  void Advise(Advice advice, uint64_t offset, uint64_t len) const;

  /// Bytes of records that are no longer the newest version of their key (or are tombstones).
  std::atomic<uint64_t> dead_bytes{0};
  /// True once a hint file describes this (sealed) file.
  std::atomic<bool> has_hint{false};

 private:
  DataFile(std::string path, uint64_t id, uint32_t index, int fd, char* map, uint64_t map_size,
           uint64_t size)
      : path_(std::move(path)),
        id_(id),
        index_(index),
        fd_(fd),
        map_(map),
        map_size_(map_size),
        size_(size),
        resident_pages_(new std::atomic<uint64_t>[PageWords(map_size)]) {
    for (uint64_t i = 0; i < PageWords(map_size); ++i) resident_pages_[i].store(0, std::memory_order_relaxed);
  }

  static uint64_t PageWords(uint64_t bytes) { return (bytes / PageSize() + 64) / 64; }
  bool PageKnownResident(uint64_t page) const {
    return (resident_pages_[page / 64].load(std::memory_order_relaxed) >> (page % 64) & 1) != 0;
  }

  const std::string path_;
  const uint64_t id_;
  const uint32_t index_;
  const int fd_;
  char* const map_;
  const uint64_t map_size_;
  std::atomic<uint64_t> size_;
  mutable std::atomic<uint64_t> resident_upto_{0};
  std::atomic<uint64_t> evicted_pages_{0};
  // One bit per page of the mapping: set when the last sweep, or a check since, found the page
  // in the page cache. A file partly evicted (memory pressure, or a host that reclaims pages
  // idle for a minute) then costs a bit test per read, not a mincore: only a page whose bit is
  // clear is asked about again. A bit can be stale for up to a sweep's interval, as the resident
  // prefix can.
  std::unique_ptr<std::atomic<uint64_t>[]> resident_pages_;
  static inline std::atomic<uint64_t> residency_queries_{0};
};

}  // namespace keg::store
