// SLOWLOG and the LATENCY monitor, as Redis 7.0 keeps them (slowlog.c, latency.c).
//
// Thread: any. Each has one mutex; entries are added only for commands past a configured
// threshold (rare by design), so the lock is off the hot path: the thresholds are atomics read
// without it.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace keg::server {

class SlowLog {
 public:
  struct Entry {
    uint64_t id;
    int64_t time_s;
    int64_t duration_us;
    std::vector<std::string> args;  // at most 32, each at most 128 bytes, as Redis trims them
    std::string peer;
    std::string client_name;
  };

  /// slowlog-log-slower-than (microseconds; negative disables, 0 logs everything).
  std::atomic<int64_t> slower_than_us{10000};
  /// slowlog-max-len.
  std::atomic<int64_t> max_len{128};

  bool Wants(int64_t duration_us) const {
    const int64_t t = slower_than_us.load(std::memory_order_relaxed);
    return t >= 0 && duration_us >= t;
  }
  /// `redact`: the arguments shown as "(redacted)" (RedactedArguments).
  void Add(std::span<const std::string_view> args, const std::vector<bool>& redact, int64_t duration_us, std::string peer,
           std::string client_name);
  /// Newest first; count < 0: all.
  std::vector<Entry> Get(int64_t count) const;
  size_t size() const;
  void Reset();

 private:
  mutable std::mutex mu_;
  std::deque<Entry> entries_;  // newest first
  uint64_t next_id_ = 0;
};

class LatencyMonitor {
 public:
  struct Sample {
    int64_t time_s;
    int64_t latency_ms;
  };
  struct Event {
    std::deque<Sample> samples;  // oldest first, at most 160 (Redis's LATENCY_TS_LEN)
    int64_t max_ms = 0;
  };

  /// latency-monitor-threshold in milliseconds (0: off).
  std::atomic<int64_t> threshold_ms{0};

  /// Records `latency_ms` for `event` when the monitor is on and it reaches the threshold.
  void AddIfNeeded(std::string_view event, int64_t latency_ms);
  std::map<std::string, Event> Snapshot() const;
  /// Resets one event (or all when empty); returns how many were reset.
  int64_t Reset(std::span<const std::string_view> events);

 private:
  mutable std::mutex mu_;
  std::map<std::string, Event> events_;
};

}  // namespace keg::server
