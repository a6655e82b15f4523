// RwSpinLock: a reader/writer lock in one atomic word, for critical sections of a few nanoseconds
// (a keydir probe). Writer-preferring: once a writer waits, new readers hold back, so the single
// writer thread is not starved by a stream of GETs. Satisfies SharedLockable, so std::shared_lock
// and std::unique_lock work with it. Never hold it across I/O or anything that can block.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>

namespace keg::store {

class RwSpinLock {
 public:
  void lock() {
    // Announce the writer, then wait for the readers to leave.
    uint32_t s = state_.load(std::memory_order_relaxed);
    for (int spins = 0;; ++spins) {
      if ((s & kWriter) == 0 &&
          state_.compare_exchange_weak(s, s | kWriter, std::memory_order_acquire)) {
        break;
      }
      Pause(spins);
      s = state_.load(std::memory_order_relaxed);
    }
    for (int spins = 0; (state_.load(std::memory_order_acquire) & kReaders) != 0; ++spins) {
      Pause(spins);
    }
  }
  void unlock() { state_.fetch_and(~kWriter, std::memory_order_release); }

  void lock_shared() {
    for (int spins = 0;; ++spins) {
      uint32_t s = state_.load(std::memory_order_relaxed);
      if ((s & kWriter) == 0 &&
          state_.compare_exchange_weak(s, s + kReader, std::memory_order_acquire)) {
        return;
      }
      Pause(spins);
    }
  }
  void unlock_shared() { state_.fetch_sub(kReader, std::memory_order_release); }

 private:
  static constexpr uint32_t kWriter = 1;
  static constexpr uint32_t kReader = 2;
  static constexpr uint32_t kReaders = ~kWriter;

  static void Pause(int spins) {
    if (spins < 64) {
#if defined(__x86_64__)
      __builtin_ia32_pause();
#endif
    } else {
      std::this_thread::yield();
    }
  }

  std::atomic<uint32_t> state_{0};
};

}  // namespace keg::store
