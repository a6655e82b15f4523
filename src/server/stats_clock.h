// A cheap clock for statistics: how long a command or a script's redis.call took (INFO
// commandstats, SLOWLOG, LATENCY) and how long a script has run (busy-reply-threshold).
#pragma once

#include <cstdint>

namespace keg::server {

/// Monotonic nanoseconds. On a CPU with an invariant TSC it reads the TSC (about 10 ns, against
/// 25-30 ns for clock_gettime in a VM, and a command reads it twice) scaled by its rate, measured
/// against CLOCK_MONOTONIC over the first 200 ms of calls; until then, and elsewhere, it is
/// clock_gettime(CLOCK_MONOTONIC). Only differences of nearby readings are meaningful: the TSC's
/// rate is known to about a millionth. Any thread.
int64_t StatsNowNs();

/// Monotonic milliseconds (CLOCK_MONOTONIC): deadlines and ages (WAIT, replication acks and
/// timeouts, FUNCTION LOAD's time limit). Any thread.
int64_t MonoMs();

/// Nanoseconds since `start` (a StatsNowNs reading), never negative: two readings on different
/// threads, or on either side of the calibration, may differ by a few nanoseconds the wrong way,
/// and a duration is added to unsigned counters.
inline int64_t StatsSinceNs(int64_t start) {
  const int64_t d = StatsNowNs() - start;
  return d > 0 ? d : 0;
}

}  // namespace keg::server
