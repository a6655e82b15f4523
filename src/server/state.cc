#include "server/state.h"

#include "server/notify.h"
#include "server/rdb.h"
#include "server/session.h"
#include "server/stats_clock.h"

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "server/crash_report.h"

namespace keg::server {

store::Options ServerState::StoreOptions() {
  store::Options o = config.StoreOptions();
  o.on_expired = [this](uint32_t db, std::string_view key) {
    NotifyKeyspaceEvent(*this, db, kNotifyExpired, "expired", key);
    if (tracking.clients() > 0) tracking.OnExpired(key);
    // Replicas do not expire keys: they wait for the primary's DEL (as Redis's propagateDeletion).
    if (repl.active() && !repl.forwarding()) {  // (a replica's stream is its primary's alone)
      std::string del;
      AppendCommand(&del, {"DEL", key});
      repl.Append(db, del);
    }
  };
  // (Only the event: the write that replaced the key invalidates it for tracking clients, and
  // goes to replicas, where it replaces the key too.)
  o.on_expired_replaced = [this](uint32_t db, std::string_view key) {
    NotifyKeyspaceEvent(*this, db, kNotifyExpired, "expired", key);
  };
  o.on_expired_in_group = [this](uint32_t db, std::string_view key) {
    if (repl.forwarding()) return;
    std::string del;
    AppendCommand(&del, {"DEL", key});
    repl.Append(db, del);
  };
  o.on_written = [this](std::span<const store::Options::WrittenKey> keys) {
    tracking.OnWritten(keys);
    blocking.OnWritten(keys);
  };
  o.on_swapdb = [this](uint32_t a, uint32_t b) { blocking.OnSwapDb(a, b); };
  return o;
}

void ServerState::UpdateWriteReports() {
  if (store) store->ReportWrites(tracking.clients() > 0 || blocking.used());
}

void ServerState::ApplyNotifyConfigLocked() {
  const uint32_t f = config.notify_keyspace_events;
  notify_flags.store(f, std::memory_order_relaxed);
  // The expire cycle names the keys it drops only while `expired` events, or tracking clients (an
  // expired key is invalidated), need them.
  if (store) {
    store->NameExpiredKeys(((f & kNotifyExpired) != 0 && (f & (kNotifyKeyspace | kNotifyKeyevent)) != 0) ||
                           tracking.clients() > 0 || repl.active());
  }
}

bool ServerState::EnoughGoodReplicas() const {
  const int64_t want = min_replicas_to_write.load(std::memory_order_relaxed);
  const int64_t max_lag = min_replicas_max_lag.load(std::memory_order_relaxed);
  if (want <= 0 || max_lag <= 0 || replica_of.active()) return true;
  return static_cast<int64_t>(repl.GoodReplicas(max_lag, MonoMs())) >= want;
}

void ServerState::AfterWritesInFlight(std::function<void()> done) {
  store::Store* st = store.get();
  if (st == nullptr) return done();
  if (io_barrier) {
    io_barrier([st, done = std::move(done)]() mutable { st->Barrier(std::move(done)); });
  } else {
    st->Barrier(std::move(done));
  }
}

bool ServerState::WaitForWritesInFlight(const std::function<bool()>& stop) {
  struct Signal {
    std::mutex mu;
    std::condition_variable cv;
    bool set = false;
  };
  auto signal = std::make_shared<Signal>();  // (outlives a give-up: the barrier still runs)
  AfterWritesInFlight([signal] {
    std::lock_guard lock(signal->mu);
    signal->set = true;
    signal->cv.notify_all();
  });
  std::unique_lock lock(signal->mu);
  while (!signal->set) {
    if (signal->cv.wait_for(lock, std::chrono::milliseconds(100)) == std::cv_status::timeout && stop()) return false;
  }
  return true;
}

bool ServerState::RunningStale() const {
  return !replica_serve_stale_data.load(std::memory_order_relaxed) && replica_of.active() && !replica_of.link_up();
}

void ServerState::ApplyConfigLocked() {
  ApplyNotifyConfigLocked();
  SetCrashReportEnabled(config.crash_log_enabled);
  SetAclPubsubDefault(config.acl_pubsub_default == "allchannels");
  rdb::SetCompression(config.rdbcompression);
  tracking_table_max_keys.store(static_cast<uint64_t>(config.tracking_table_max_keys), std::memory_order_relaxed);
  timeout.store(static_cast<uint32_t>(config.timeout), std::memory_order_relaxed);
  maxclients.store(config.maxclients, std::memory_order_relaxed);
  replica_read_only.store(config.replica_read_only, std::memory_order_relaxed);
  panic_on_propagation_error.store(config.propagation_error_behavior != "ignore", std::memory_order_relaxed);
  replica_serve_stale_data.store(config.replica_serve_stale_data, std::memory_order_relaxed);
  min_replicas_to_write.store(config.min_replicas_to_write, std::memory_order_relaxed);
  min_replicas_max_lag.store(config.min_replicas_max_lag, std::memory_order_relaxed);
  repl.set_backlog_size(static_cast<uint64_t>(config.repl_backlog_size));
  repl.set_ping_period(config.repl_ping_replica_period);
  repl.set_backlog_ttl(config.repl_backlog_ttl);
  shutdown_timeout.store(config.shutdown_timeout, std::memory_order_relaxed);
  repl.set_timeout(config.repl_timeout);
  protected_mode.store(config.protected_mode, std::memory_order_relaxed);
  acl.SetDefaultPassword(config.requirepass);  // only when requirepass changed (ACL SETUSER default stays)
  acl.log_max_len.store(config.acllog_max_len, std::memory_order_relaxed);
  proto_max_bulk_len.store(config.proto_max_bulk_len, std::memory_order_relaxed);
  rdb_key_save_delay.store(config.rdb_key_save_delay, std::memory_order_relaxed);
  key_load_delay.store(config.key_load_delay, std::memory_order_relaxed);
  limits.query_buffer_limit.store(static_cast<uint64_t>(config.client_query_buffer_limit));
  limits.output_hard_limit.store(static_cast<uint64_t>(config.output_hard));
  limits.output_soft_limit.store(static_cast<uint64_t>(config.output_soft));
  // Seconds past 2^32 (~136 years) mean "never" as well as 2^32 - 1 does; not a wrapped count.
  auto seconds = [](int64_t s) { return static_cast<uint32_t>(std::min<int64_t>(s, UINT32_MAX)); };
  limits.output_soft_seconds.store(seconds(config.output_soft_seconds));
  limits.pubsub_hard_limit.store(static_cast<uint64_t>(config.pubsub_output_hard));
  limits.pubsub_soft_limit.store(static_cast<uint64_t>(config.pubsub_output_soft));
  limits.pubsub_soft_seconds.store(seconds(config.pubsub_output_soft_seconds));
  // A replica's hard limit below repl-backlog-size counts as repl-backlog-size (Redis's
  // checkClientOutputBufferLimits): a partial resync of a backlog's worth must not end in a
  // disconnection, and what the replica holds is the backlog's memory anyway. 0 stays "none".
  const uint64_t replica_hard = config.replica_output_hard == 0
                                    ? 0
                                    : static_cast<uint64_t>(std::max(config.replica_output_hard, config.repl_backlog_size));
  limits.replica_hard_limit.store(replica_hard);
  limits.replica_soft_limit.store(static_cast<uint64_t>(config.replica_output_soft));
  limits.replica_soft_seconds.store(seconds(config.replica_output_soft_seconds));
  repl.set_limits(replica_hard, static_cast<uint64_t>(config.replica_output_soft), config.replica_output_soft_seconds);
  limits.tcp_keepalive.store(static_cast<uint32_t>(config.tcp_keepalive));
  limits.file_read_depth.store(static_cast<uint32_t>(config.cold_read_depth));
  slowlog.slower_than_us.store(config.slowlog_log_slower_than, std::memory_order_relaxed);
  slowlog.max_len.store(config.slowlog_max_len, std::memory_order_relaxed);
  latency.threshold_ms.store(config.latency_monitor_threshold, std::memory_order_relaxed);
  latency_tracking.store(config.latency_tracking, std::memory_order_relaxed);
  cold_read_io_uring.store(config.cold_read_io_uring, std::memory_order_relaxed);
  busy_reply_threshold_ms.store(config.busy_reply_threshold, std::memory_order_relaxed);
  hash_max_entries.store(config.hash_max_listpack_entries, std::memory_order_relaxed);
  hash_max_value.store(config.hash_max_listpack_value, std::memory_order_relaxed);
  set_max_intset_entries.store(config.set_max_intset_entries, std::memory_order_relaxed);
  set_max_entries.store(config.set_max_listpack_entries, std::memory_order_relaxed);
  set_max_value.store(config.set_max_listpack_value, std::memory_order_relaxed);
  zset_max_entries.store(config.zset_max_listpack_entries, std::memory_order_relaxed);
  zset_max_value.store(config.zset_max_listpack_value, std::memory_order_relaxed);
  list_max_listpack_size.store(config.list_max_listpack_size, std::memory_order_relaxed);
  hll_sparse_max_bytes.store(config.hll_sparse_max_bytes, std::memory_order_relaxed);
  debug_command.store(config.enable_debug_command == "yes"     ? 1
                      : config.enable_debug_command == "local" ? 2
                                                               : 0,
                      std::memory_order_relaxed);
  switch (config.loglevel) {
    case LogLevel::kDebug:
    case LogLevel::kVerbose:
      spdlog::set_level(spdlog::level::debug);
      break;
    case LogLevel::kNotice:
      spdlog::set_level(spdlog::level::info);
      break;
    case LogLevel::kWarning:
      spdlog::set_level(spdlog::level::warn);
      break;
  }
  config_epoch.fetch_add(1, std::memory_order_release);
}

int64_t RaiseFileLimitFor(int64_t maxclients, uint64_t data_files) {
  const rlim_t reserved = static_cast<rlim_t>(kReservedDescriptors) + static_cast<rlim_t>(data_files);
  const rlim_t want = static_cast<rlim_t>(std::max<int64_t>(maxclients, 0)) + reserved;
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return maxclients;  // (as Redis: nothing known)
  if (limit.rlim_cur < want) {
    const rlim_t old = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max == RLIM_INFINITY ? want : std::min(want, limit.rlim_max);
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) limit.rlim_cur = old;
  }
  if (limit.rlim_cur >= want) return maxclients;
  return static_cast<int64_t>(limit.rlim_cur) - static_cast<int64_t>(reserved);
}

int64_t UsedMemory() { return Resident().anon; }

void DebugDelay(int64_t usec) {
  if (usec == 0) return;
  if (usec < 0) {
    thread_local std::minstd_rand random(std::random_device{}());
    const auto one_in = static_cast<uint64_t>(usec == INT64_MIN ? INT64_MAX : -usec);
    usec = random() % one_in == 0 ? 1 : 0;
  }
  if (usec > 0) std::this_thread::sleep_for(std::chrono::microseconds(usec));
}

ResidentMemory Resident() {
  std::ifstream in("/proc/self/statm");
  long size = 0, resident = 0, shared = 0;
  in >> size >> resident >> shared;
  const long page = sysconf(_SC_PAGESIZE);
  return ResidentMemory{static_cast<int64_t>(resident - shared) * page, static_cast<int64_t>(shared) * page};
}

// CPU seconds of this process's threads by name, from /proc/self/task/*/stat ("keg-io-0" ...; the
// main thread is "keg-io-0").
std::vector<std::pair<std::string, std::pair<double, double>>> ThreadCpuSeconds() {
  std::vector<std::pair<std::string, std::pair<double, double>>> out;
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  const std::string main_tid = std::to_string(getpid());
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream in(entry.path() / "stat");
    std::string line;
    if (!std::getline(in, line)) continue;
    const size_t open = line.find('(');
    const size_t close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    std::string name = line.substr(open + 1, close - open - 1);
    // The main thread runs the first I/O loop (net::ServerOptions::first_loop_on_caller) under
    // the process's name, which pgrep and pkill match: counted as the loop it runs.
    if (entry.path().filename() == main_tid) name = "keg-io-0";
    std::istringstream rest(line.substr(close + 2));
    std::string field;
    double user = 0, sys = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
      if (i == 14) user = std::strtod(field.c_str(), nullptr) / tick;
      if (i == 15) sys = std::strtod(field.c_str(), nullptr) / tick;
    }
    auto it = std::find_if(out.begin(), out.end(), [&](const auto& x) { return x.first == name; });
    if (it == out.end()) {
      out.push_back({name, {user, sys}});
    } else {
      it->second.first += user;
      it->second.second += sys;
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

Sampler::~Sampler() { Stop(); }

void Sampler::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Sampler::Start(std::function<Reading()> read) {
  thread_ = std::thread([this, read = std::move(read)] {
    pthread_setname_np(pthread_self(), "keg-cron");
    Reading last = read();
    auto last_time = std::chrono::steady_clock::now();
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stop_; })) {
      lock.unlock();
      const Reading now = read();
      const auto t = std::chrono::steady_clock::now();
      const double secs = std::max(std::chrono::duration<double>(t - last_time).count(), 1e-3);
      NotePeak(now.used_memory);
      lock.lock();
      if (reset_) {
        reset_ = false;  // the counters may have been zeroed: this sample only takes them
      } else {
        // A counter below its last sample was zeroed meanwhile (CONFIG RESETSTAT): counted from 0.
        auto delta = [](uint64_t cur, uint64_t prev) { return static_cast<double>(cur >= prev ? cur - prev : cur); };
        rates_[0][next_] = delta(now.commands, last.commands) / secs;
        rates_[1][next_] = delta(now.bytes_in, last.bytes_in) / secs;
        rates_[2][next_] = delta(now.bytes_out, last.bytes_out) / secs;
        next_ = (next_ + 1) % kSamples;
      }
      last = now;
      last_time = t;
    }
  });
}

void Sampler::NotePeak(int64_t used) {
  int64_t peak = peak_.load(std::memory_order_relaxed);
  while (used > peak && !peak_.compare_exchange_weak(peak, used, std::memory_order_relaxed)) {
  }
}

void Sampler::Reset() {
  std::lock_guard lock(mu_);
  for (auto& metric : rates_) std::fill(std::begin(metric), std::end(metric), 0.0);
  next_ = 0;
  reset_ = true;
}

double Sampler::Mean(size_t metric) const {
  std::lock_guard lock(mu_);
  double sum = 0;
  for (double r : rates_[metric]) sum += r;
  return sum / kSamples;
}

PauseState::~PauseState() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (timer_.joinable()) timer_.join();
}

void PauseState::Pause(int64_t end_ms, bool all) {
  std::lock_guard lock(mu_);
  if (end_ms <= store::NowMs()) {
    // Already over (CLIENT PAUSE 0): ends a pause in progress, as a shorter one would.
    EndLocked();
    return;
  }
  // on_change runs under the lock, so a pause and an unpause racing cannot leave the store's
  // expiry paused with no pause in force.
  const int old = mode_.load();
  if (old == 0 && on_change) on_change(true);
  end_ms_ = end_ms;
  mode_.store((old & kPurposes) | (all ? kClientAll : kClientWrite), std::memory_order_release);
  if (!timer_.joinable()) timer_ = std::thread([this] { TimerLoop(); });
  cv_.notify_all();
}

void PauseState::Unpause() {
  std::lock_guard lock(mu_);
  EndLocked();
}

void PauseState::EndLocked() {
  const int old = mode_.load();
  if ((old & kClientMask) == 0) return;
  mode_.store(old & kPurposes, std::memory_order_release);
  if ((old & kPurposes) == 0 && on_change) on_change(false);
  ResumeParkedLocked();
}

void PauseState::PauseWrites(int purpose, bool on) {
  std::lock_guard lock(mu_);
  const int old = mode_.load();
  if (on == ((old & purpose) != 0)) return;
  if (on) {
    if (old == 0 && on_change) on_change(true);
    mode_.store(old | purpose, std::memory_order_release);
    return;
  }
  const int left = old & ~purpose;
  mode_.store(left, std::memory_order_release);
  if (left == 0 && on_change) on_change(false);
  ResumeParkedLocked();
}

void PauseState::ResumeParkedLocked() {
  // Post only queues the resume on each connection's I/O thread (and keeps it alive until then);
  // a command that must still wait (the other pause) parks again.
  for (const std::shared_ptr<net::Link>& link : parked_) {
    net::Link* l = link.get();
    l->Post([l] { l->Resume(); });
  }
  parked_.clear();
}

bool PauseState::Park(std::shared_ptr<net::Link> link, bool write) {
  std::lock_guard lock(mu_);
  if (!MustWait(write)) return false;
  parked_.push_back(std::move(link));
  return true;
}

void PauseState::Unpark(const net::Link* link) {
  std::shared_ptr<net::Link> gone;  // let go with mu_ free
  {
    std::lock_guard lock(mu_);
    auto it = std::find_if(parked_.begin(), parked_.end(), [&](const auto& l) { return l.get() == link; });
    if (it == parked_.end()) return;
    gone = std::move(*it);
    parked_.erase(it);
  }
}

size_t PauseState::parked() const {
  std::lock_guard lock(mu_);
  return parked_.size();
}

void PauseState::TimerLoop() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    if ((mode_.load() & kClientMask) == 0) {  // no client pause to end (a FAILOVER ends its own)
      cv_.wait(lock);
      continue;
    }
    const int64_t left = end_ms_ - store::NowMs();
    if (left <= 0) {
      EndLocked();
      continue;
    }
    cv_.wait_for(lock, std::chrono::milliseconds(std::min<int64_t>(left, 100)));
  }
}

}  // namespace keg::server

namespace keg::server {

size_t ServerState::ShutdownWaiters() {
  std::lock_guard lock(shutdown_waiters_mu);
  return static_cast<size_t>(std::count_if(shutdown_waiters.begin(), shutdown_waiters.end(),
                                           [](const auto& w) { return !w.first.expired(); }));
}

void ServerState::AddShutdownWaiter(std::weak_ptr<net::Link> link, ClientSession* client) {
  std::lock_guard lock(shutdown_waiters_mu);
  shutdown_waiters.emplace_back(std::move(link), client);
}

void ServerState::FailShutdownWaiters() {
  std::vector<std::pair<std::weak_ptr<net::Link>, ClientSession*>> waiters;
  {
    std::lock_guard lock(shutdown_waiters_mu);
    waiters.swap(shutdown_waiters);
  }
  for (auto& waiter : waiters) {
    std::shared_ptr<net::Link> link = waiter.first.lock();
    if (!link) continue;  // gone (and with it its session)
    link->Post([client = waiter.second] {
      client->link().out().Error("Errors trying to SHUTDOWN. Check logs.");
      client->Finish();
    });
  }
}

}  // namespace keg::server
