#include "server/stats_clock.h"

#include <atomic>
#include <ctime>

#if defined(__x86_64__)
#include <cpuid.h>
#include <x86intrin.h>
#endif

namespace keg::server {
namespace {

__extension__ typedef unsigned __int128 U128;

int64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

#if defined(__x86_64__)
uint64_t Ticks() { return __rdtsc(); }
bool InvariantTsc() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(0x80000000u, &eax, &ebx, &ecx, &edx) == 0 || eax < 0x80000007u) return false;
  if (__get_cpuid(0x80000007u, &eax, &ebx, &ecx, &edx) == 0) return false;
  return (edx & (1u << 8)) != 0;  // "TscInvariant": constant rate in every P-, C- and T-state
}
#else
uint64_t Ticks() { return 0; }
bool InvariantTsc() { return false; }
#endif

constexpr int64_t kCalibrationNs = 200'000'000;

struct Calibration {
  bool usable = InvariantTsc();
  uint64_t tsc0 = usable ? Ticks() : 0;
  int64_t ns0 = MonotonicNs();
  // Nanoseconds per tick in 32.32 fixed point; 0 until measured.
  std::atomic<uint64_t> scale{0};
};

Calibration& TheCalibration() {
  static Calibration c;
  return c;
}

}  // namespace

int64_t MonoMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

int64_t StatsNowNs() {
  Calibration& c = TheCalibration();
  const uint64_t scale = c.scale.load(std::memory_order_relaxed);
  if (scale != 0) {
    const uint64_t ticks = Ticks() - c.tsc0;
    return c.ns0 + static_cast<int64_t>((static_cast<U128>(ticks) * scale) >> 32);
  }
  const int64_t now = MonotonicNs();
  if (c.usable && now - c.ns0 >= kCalibrationNs) {
    const uint64_t ticks = Ticks() - c.tsc0;
    if (ticks > 0) {
      const auto ns = static_cast<U128>(now - c.ns0);
      // The first thread to measure sets the rate for good: it never changes under a reading.
      uint64_t unset = 0;
      c.scale.compare_exchange_strong(unset, static_cast<uint64_t>((ns << 32) / ticks), std::memory_order_relaxed);
    }
  }
  return now;
}

}  // namespace keg::server
