#include "server/stats_clock.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace keg::server {
namespace {

int64_t SteadyNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Past its calibration (the first 200 ms of calls), the TSC-based clock measures what
// CLOCK_MONOTONIC measures: 100 ms sleeps agree within 1 %, and no reading goes backwards.
TEST(StatsClockTest, AgreesWithTheMonotonicClockAfterCalibration) {
  StatsNowNs();
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  StatsNowNs();  // calibrates (where the CPU has an invariant TSC)
  for (int round = 0; round < 3; ++round) {
    const int64_t s0 = SteadyNs();
    const int64_t t0 = StatsNowNs();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const int64_t t1 = StatsNowNs();
    const int64_t s1 = SteadyNs();
    const double ratio = static_cast<double>(t1 - t0) / static_cast<double>(s1 - s0);
    EXPECT_NEAR(ratio, 1.0, 0.01) << "round " << round;
  }
  int64_t last = StatsNowNs();
  for (int i = 0; i < 100000; ++i) {
    const int64_t now = StatsNowNs();
    ASSERT_GE(now, last);
    last = now;
  }
  EXPECT_EQ(StatsSinceNs(last + 1'000'000'000), 0);  // a start "in the future" gives 0, not < 0
}

}  // namespace
}  // namespace keg::server
