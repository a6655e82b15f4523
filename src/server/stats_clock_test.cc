#include "server/stats_clock.h"
#include "server/command.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

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


// Every call counted by threads racing on one command's stats: more threads than shards, so some
// own a shard (plain load and store) and the rest share the last one (atomic adds); a Reset in the
// middle of the counting takes away exactly what was counted before it.
TEST(CommandStatsTest, ShardedCountsAddUpAcrossThreadsAndReset) {
  CommandStats stats;
  constexpr int kThreads = 12;
  constexpr int kCalls = 20000;
  auto count = [&] {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < kCalls; ++i) {
          stats.AddCall(1500, true);  // 2 µs bucket
          if (i % 4 == 0) stats.AddFailed();
          if (i % 5 == 0) stats.AddRejected();
        }
      });
    }
    for (auto& t : threads) t.join();
  };
  count();
  CommandStats::Totals t = stats.Read();
  EXPECT_EQ(t.calls, uint64_t{kThreads} * kCalls);
  EXPECT_EQ(t.nsec, uint64_t{kThreads} * kCalls * 1500);
  EXPECT_EQ(t.failed_calls, uint64_t{kThreads} * kCalls / 4);
  EXPECT_EQ(t.rejected_calls, uint64_t{kThreads} * kCalls / 5);
  EXPECT_EQ(t.latency[1], uint64_t{kThreads} * kCalls);
  EXPECT_EQ(t.Percentile(99), 2.0);
  stats.Reset();
  t = stats.Read();
  EXPECT_FALSE(t.any());
  EXPECT_EQ(t.latency[1], 0u);
  stats.AddCall(500, false);  // the histogram only when tracking is on
  t = stats.Read();
  EXPECT_EQ(t.calls, 1u);
  EXPECT_EQ(t.latency[0], 0u);
  count();
  EXPECT_EQ(stats.Read().calls, uint64_t{kThreads} * kCalls + 1);
}

}  // namespace
}  // namespace keg::server
