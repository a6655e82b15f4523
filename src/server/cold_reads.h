// ColdReads: the read pool that brings cold records into the page cache off the event loops.
//
// Data larger than memory: a GET of a key whose record is not in the page cache would fault on the
// I/O thread and stall every client of that thread for a disk read. Instead a session asks the
// store (Store::MaybeCold, then ColdRanges for the command's keys); when a key is cold it stops
// reading its connection and has the records read: through its event loop's io_uring
// (net::FileReads) when it can, else here (records over 16 KiB, no ring, cold-read-io-uring no,
// DEBUG COLD-READ-DELAY). A pool thread faults the records in (Store::FetchKeys, which keeps the
// reads of many keys in flight at once), then `done` runs and the session runs the command, now
// against resident pages: zero-copy as any other read, and its reply in its place. A sweeper thread
// refreshes the store's residency map once a second. Counts both ways (Note for the ring's).
//
// Thread: Fetch from any thread; `done` runs on a pool thread. The store must outlive this object.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "store/store.h"

namespace keg::server {

/// Pool threads, one command each at a time: enough for a disk's queue (fio: 20 reads in flight)
/// with the clients of every I/O thread waiting on it. A thread blocked on the disk costs no CPU.
inline constexpr size_t kColdReadThreads = 32;

class ColdReads {
 public:
  ColdReads(store::Store* store, size_t threads);
  ~ColdReads();  // Stop()
  /// Runs the fetches queued, stops the threads; later Fetch calls run `done` at once. Before the
  /// store closes. Idempotent.
  void Stop();
  ColdReads(const ColdReads&) = delete;
  ColdReads& operator=(const ColdReads&) = delete;

  /// Faults in the records of `keys` of database `db` on a pool thread, then calls `done` there.
  void Fetch(uint32_t db, std::vector<std::string> keys, std::function<void()> done);
  /// Runs `task` on a pool thread: work that reads many records through the maps (KEYS, SCAN,
  /// RANDOMKEY on a data set not all in the page cache). At once, on this thread, once stopped.
  void Run(std::function<void()> task) { Fetch(0, {}, std::move(task)); }

  /// Commands that waited for a fetch, the keys fetched, and the time they waited in all (µs).
  uint64_t fetches() const { return fetches_.load(std::memory_order_relaxed); }
  uint64_t keys() const { return keys_.load(std::memory_order_relaxed); }
  /// Of fetches(), those read through an event loop's io_uring (Note).
  uint64_t ring_fetches() const { return ring_fetches_.load(std::memory_order_relaxed); }
  uint64_t wait_usec() const { return wait_usec_.load(std::memory_order_relaxed); }
  /// Counts a command whose `keys` cold keys were read another way (an event loop's io_uring),
  /// after waiting `wait_usec`. Any thread.
  void Note(size_t keys, int64_t wait_usec) {
    fetches_.fetch_add(1, std::memory_order_relaxed);
    ring_fetches_.fetch_add(1, std::memory_order_relaxed);
    keys_.fetch_add(keys, std::memory_order_relaxed);
    wait_usec_.fetch_add(static_cast<uint64_t>(std::max<int64_t>(wait_usec, 0)), std::memory_order_relaxed);
  }
  /// Tests (DEBUG COLD-READ-DELAY): each fetch first waits this long, as a slow disk would; while
  /// set, every cold read goes through the pool.
  void set_delay_ms(int64_t ms) { delay_ms_.store(ms, std::memory_order_relaxed); }
  int64_t delay_ms() const { return delay_ms_.load(std::memory_order_relaxed); }
  /// Data-file bytes found in the page cache by the last sweep (from each file's start).
  uint64_t resident_bytes() const { return resident_bytes_.load(std::memory_order_relaxed); }

 private:
  struct Job {
    uint32_t db = 0;
    std::vector<std::string> keys;
    std::function<void()> done;
    int64_t queued_ns;
  };
  void Work();
  void Sweep();

  store::Store* const store_;
  std::mutex mu_;
  std::condition_variable cv_;        // jobs for the pool
  std::condition_variable sweep_cv_;  // the sweeper's stop
  std::deque<Job> jobs_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
  std::thread sweeper_;
  std::atomic<uint64_t> fetches_{0};
  std::atomic<uint64_t> keys_{0};
  std::atomic<uint64_t> ring_fetches_{0};
  std::atomic<uint64_t> wait_usec_{0};
  std::atomic<uint64_t> resident_bytes_{0};
  std::atomic<int64_t> delay_ms_{0};
};

}  // namespace keg::server
