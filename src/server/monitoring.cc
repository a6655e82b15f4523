#include "server/monitoring.h"

#include <ctime>

namespace keg::server {
namespace {

constexpr size_t kSlowlogMaxArgc = 32;
constexpr size_t kSlowlogMaxString = 128;
constexpr size_t kLatencySamples = 160;

int64_t NowSeconds() { return static_cast<int64_t>(std::time(nullptr)); }

}  // namespace

void SlowLog::Add(std::span<const std::string_view> args, const std::vector<bool>& redact, int64_t duration_us, std::string peer,
                  std::string client_name) {
  Entry e;
  e.time_s = NowSeconds();
  e.duration_us = duration_us;
  const size_t argc = std::min(args.size(), kSlowlogMaxArgc);
  for (size_t i = 0; i < argc; ++i) {
    if (i < redact.size() && redact[i]) {
      e.args.emplace_back("(redacted)");
    } else if (argc != args.size() && i == argc - 1) {
      e.args.push_back("... (" + std::to_string(args.size() - argc + 1) + " more arguments)");
    } else if (args[i].size() > kSlowlogMaxString) {
      e.args.push_back(std::string(args[i].substr(0, kSlowlogMaxString)) + "... (" +
                       std::to_string(args[i].size() - kSlowlogMaxString) + " more bytes)");
    } else {
      e.args.emplace_back(args[i]);
    }
  }
  e.peer = std::move(peer);
  e.client_name = std::move(client_name);
  std::lock_guard lock(mu_);
  e.id = next_id_++;
  entries_.push_front(std::move(e));
  const int64_t max = max_len.load(std::memory_order_relaxed);
  while (static_cast<int64_t>(entries_.size()) > std::max<int64_t>(max, 0)) entries_.pop_back();
}

std::vector<SlowLog::Entry> SlowLog::Get(int64_t count) const {
  std::lock_guard lock(mu_);
  const size_t n = count < 0 ? entries_.size() : std::min(entries_.size(), static_cast<size_t>(count));
  return std::vector<Entry>(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(n));
}

size_t SlowLog::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

void SlowLog::Reset() {
  std::lock_guard lock(mu_);
  entries_.clear();
}

void LatencyMonitor::AddIfNeeded(std::string_view event, int64_t latency_ms) {
  const int64_t threshold = threshold_ms.load(std::memory_order_relaxed);
  if (threshold == 0 || latency_ms < threshold) return;
  const int64_t now = NowSeconds();
  std::lock_guard lock(mu_);
  Event& e = events_[std::string(event)];
  if (!e.samples.empty() && e.samples.back().time_s == now) {
    // As Redis: one sample per second, the highest.
    e.samples.back().latency_ms = std::max(e.samples.back().latency_ms, latency_ms);
  } else {
    e.samples.push_back(Sample{now, latency_ms});
    if (e.samples.size() > kLatencySamples) e.samples.pop_front();
  }
  e.max_ms = std::max(e.max_ms, latency_ms);
}

std::map<std::string, LatencyMonitor::Event> LatencyMonitor::Snapshot() const {
  std::lock_guard lock(mu_);
  return events_;
}

int64_t LatencyMonitor::Reset(std::span<const std::string_view> events) {
  std::lock_guard lock(mu_);
  if (events.empty()) {
    const int64_t n = static_cast<int64_t>(events_.size());
    events_.clear();
    return n;
  }
  int64_t n = 0;
  for (std::string_view e : events) n += static_cast<int64_t>(events_.erase(std::string(e)));
  return n;
}

}  // namespace keg::server
