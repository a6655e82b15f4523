// State shared by every connection of one keg-server: the store, the configuration, counters, the
// client registry and WATCH bookkeeping.
//
// Thread: any. Counters are relaxed atomics; the config and the registries have their own locks.
#pragma once

#include <atomic>
#include <condition_variable>
#include <thread>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <string_view>
#include <vector>

#include "net/server.h"
#include "server/acl.h"
#include "server/blocking.h"
#include "server/config.h"
#include "server/monitoring.h"
#include "server/pubsub.h"
#include "server/replica.h"
#include "server/replication.h"
#include "server/tracking.h"
#include "server/cold_reads.h"
#include "server/scripting.h"
#include "store/store.h"

namespace keg::server {

class ClientSession;
struct PendingSync;

/// Who watches which keys (WATCH). A write marks the watchers of its keys dirty on the writer
/// thread, just before it is applied, so an EXEC queued behind it sees the mark in its own
/// precondition.
class WatchRegistry {
 public:
  /// Keys are Ctx::SnapshotKey(db, key): a watch is of a key in one database.
  void Watch(ClientSession* client, const std::string& key);
  /// Removes every watch of `client`.
  void Unwatch(ClientSession* client, const std::vector<std::string>& keys);
  /// Writer thread: marks the watchers of every key of `batch` (in the op's database; MOVE: in
  /// both); a DeleteAll (FLUSHALL), DeleteDb (FLUSHDB) or SwapDb marks the watchers of every
  /// watched key of the databases concerned that is live before it (as Redis: a watched key that
  /// was absent or already expired is not touched by a flush).
  void Touch(const store::WriteBatch& batch, const store::WriteBatch::KeyProbe& live);
  /// Writer thread, after the batch's ops ran: marks the watchers of the keys its ops changed
  /// (`results[i].applied`; MOVE: in both databases), as Redis's signalModifiedKey. Touch (before
  /// the ops) handles only the flushes and swaps, which need the state before them.
  void TouchWritten(const store::WriteBatch& batch, std::span<const store::OpResult> results);
  /// Writer thread, inside a kRun op: marks the watchers of `key` in `db`, a key the op wrote
  /// besides the one its batch names (LMOVE's and SMOVE's destination, the key LMPOP popped from).
  void TouchKey(uint32_t db, std::string_view key);
  bool empty() const { return count_.load(std::memory_order_acquire) == 0; }

 private:
  std::mutex mu_;
  std::unordered_map<std::string, std::vector<ClientSession*>> watchers_;
  std::atomic<size_t> count_{0};
};

/// Every connected client, for CLIENT LIST / KILL and INFO.
class ClientRegistry {
 public:
  void Add(ClientSession* client);
  void Remove(ClientSession* client);
  size_t size() const;
  /// Calls fn for each client while holding the registry lock (clients cannot go away meanwhile).
  void ForEach(const std::function<void(ClientSession&)>& fn) const;
  /// Calls fn with the client of this id, under the registry lock; false if there is none.
  bool WithClient(uint64_t id, const std::function<void(ClientSession&)>& fn) const;
  /// Removes every client `pred` (called under the registry lock) is true for: CLIENT KILL takes
  /// its victims out at once, before their connections close on their own I/O threads.
  void RemoveIf(const std::function<bool(ClientSession&)>& pred);

 private:
  mutable std::mutex mu_;
  std::vector<ClientSession*> clients_;
};

/// Approximate last-access times of keys, for OBJECT IDLETIME, TOUCH and RESTORE IDLETIME: a
/// fixed table of 2^16 16-bit clocks in seconds (128 KiB, small enough to stay in the CPU's
/// cache: the touch on every command is a cache hit) indexed by a hash of the key. Keys that
/// share a slot share a clock, and the clock wraps after 18 hours, so an idle time can read low,
/// never high (Redis's own LRU clock is 24 bits of seconds). A key never accessed since the
/// server started reads as idle since the start (as Redis after loading). Thread: any (relaxed
/// atomics).
class AccessClock {
 public:
  AccessClock();
  void Touch(std::string_view key, int64_t now_ms);
  /// Starts loading the key's clock into the CPU's cache (a pipelined command's, ahead of Touch:
  /// under load the table is not in cache and the touch was a miss per command).
  void Prefetch(std::string_view key) const { __builtin_prefetch(&stamps_[Slot(key)], 1); }
  /// Seconds since the last access, or since `start_ms` if none was recorded.
  int64_t IdleSeconds(std::string_view key, int64_t now_ms, int64_t start_ms) const;
  /// As if the key had last been accessed `idle_seconds` ago (RESTORE IDLETIME).
  void SetIdle(std::string_view key, int64_t idle_seconds, int64_t now_ms);

 private:
  static constexpr size_t kSlots = size_t{1} << 16;
  static constexpr uint32_t kPeriod = 65535;  // stamps are 1..65535; 0: never touched
  static size_t Slot(std::string_view key);
  static uint16_t Stamp(int64_t seconds) { return static_cast<uint16_t>(seconds % kPeriod + 1); }
  std::unique_ptr<std::atomic<uint16_t>[]> stamps_;
};

/// Clients in MONITOR mode. Every command run (except admin ones) is sent to each of them as one
/// line, in the order its own connection ran them. Thread: any (one lock; empty() is lock-free so
/// a server without monitors pays one atomic load per command).
class MonitorRegistry {
 public:
  void Add(ClientSession* client);
  void Remove(ClientSession* client);
  bool empty() const { return count_.load(std::memory_order_acquire) == 0; }
  /// Formats `args` as Redis does (`+<sec>.<usec> [<db> <addr>] "arg" ...`, AUTH's secrets
  /// redacted) and posts the line to every monitor's connection.
  void Feed(const ClientSession& from, std::span<const std::string_view> args);
  /// The same for a command a script ran: "[<db> lua]" in place of the client's address. Any thread.
  void Feed(uint32_t db, std::string_view source, std::span<const std::string_view> args);
  /// Feed's line, formatted now, and its sending (later, from another thread). Any thread.
  static std::string Line(uint32_t db, std::string_view source,
                          std::span<const std::string_view> args);
  void Send(std::string line);

 private:
  mutable std::mutex mu_;
  std::vector<ClientSession*> monitors_;
  std::atomic<size_t> count_{0};
};

struct Counters {
  std::atomic<uint64_t> commands{0};
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> rejected_connections{0};
  std::atomic<uint64_t> keyspace_hits{0};
  std::atomic<uint64_t> keyspace_misses{0};
  std::atomic<uint64_t> error_replies{0};
  std::atomic<uint64_t> changes_since_save{0};
};

/// INFO errorstats: error replies by their first word ("ERR", "WRONGTYPE"), as Redis 7.0 counts
/// them (afterErrorReply). Errors are rare: one lock. Any thread.
class ErrorStats {
 public:
  /// `text` as given to ReplyBuffer::Error.
  void Add(std::string_view text);
  /// Sorted by name.
  std::vector<std::pair<std::string, uint64_t>> Snapshot() const;
  void Reset();

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, uint64_t> counts_;
};

/// Threads doing one long job each (a SYNC's snapshot) that shutdown waits for before the store
/// closes: once Wait() returns, every job and everything it held are gone. Thread: any.
class BackgroundJobs {
 public:
  /// Runs fn on a thread of its own.
  void Run(std::function<void()> fn) {
    {
      std::lock_guard lock(mu_);
      ++running_;
    }
    std::thread([this, fn = std::move(fn)]() mutable {
      fn();
      // Its captures go before Wait() can return: the last reference to a connection (a SYNC's
      // replica, its session) is destroyed here, and its destructor reaches the ServerState.
      fn = nullptr;
      std::lock_guard lock(mu_);  // nothing touches `this` once the lock is released
      --running_;
      cv_.notify_all();
    }).detach();
  }
  /// Waits until every job ran to its end.
  void Wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return running_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int running_ = 0;
};

/// CLIENT PAUSE / UNPAUSE. A command that must wait parks its connection here (returning
/// kWaitThenRetry); every parked connection is resumed on its I/O thread when the pause ends, at
/// CLIENT UNPAUSE or at the end time (a timer thread), and runs the command again.
class PauseState {
 public:
  PauseState() = default;
  PauseState(const PauseState&) = delete;
  PauseState& operator=(const PauseState&) = delete;
  ~PauseState();
  /// CLIENT PAUSE: pauses every command (`all`) or only those that may write, until `end_ms`
  /// (wall clock); replaces the current client pause, as Redis's last CLIENT PAUSE wins.
  /// `on_change(true/false)` is called, with the pause's lock held (it must be quick and must not
  /// call back), when the first pause starts and when the last ends (the store's expiry follows).
  void Pause(int64_t end_ms, bool all);
  /// CLIENT UNPAUSE: ends the client pause (not a FAILOVER's).
  void Unpause();
  /// A FAILOVER's pause of writes, kept apart from CLIENT PAUSE as Redis's PAUSE_DURING_FAILOVER.
  void PauseForFailover(bool on) { PauseWrites(kFailover, on); }
  /// A shutdown's pause of writes while it waits for its replicas (PAUSE_DURING_SHUTDOWN).
  void PauseForShutdown(bool on) { PauseWrites(kShutdown, on); }
  /// True when a command (that may write: `write`) must wait now. Any thread; one relaxed load
  /// when nothing is paused.
  bool MustWait(bool write) const {
    const int mode = mode_.load(std::memory_order_acquire);
    return mode != 0 && ((mode & kClientMask) == kClientAll || write);
  }
  /// Parks `link` until the pause ends; false when it already ended (run the command now).
  bool Park(std::shared_ptr<net::Link> link, bool write);
  /// A parked connection closed: it is no longer waiting (blocked_clients).
  void Unpark(const net::Link* link);
  /// Connections waiting (INFO blocked_clients).
  size_t parked() const;
  std::function<void(bool paused)> on_change;  // set once, before any pause

 private:
  void PauseWrites(int purpose, bool on);  // kFailover or kShutdown on or off
  void EndLocked();  // ends the client pause (if any) and resumes the parked; mu_ held
  void ResumeParkedLocked();  // (a parked command still paused parks again)
  void TimerLoop();

  // mode_: the client pause in the low bits (kClientWrite or kClientAll), kFailover and kShutdown beside it.
  static constexpr int kClientWrite = 1;
  static constexpr int kClientAll = 2;
  static constexpr int kClientMask = 3;
  static constexpr int kFailover = 4;
  static constexpr int kShutdown = 8;
  static constexpr int kPurposes = kFailover | kShutdown;  // the pauses that are not CLIENT PAUSE's
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<int> mode_{0};
  int64_t end_ms_ = 0;
  std::vector<std::shared_ptr<net::Link>> parked_;
  std::thread timer_;
  bool stop_ = false;
};

/// Redis's debugDelay, for its test hooks (rdb-key-save-delay, key-load-delay): sleeps `usec`
/// microseconds when positive; when negative, 1 µs with probability 1 / -usec. Any thread.
void DebugDelay(int64_t usec);

/// Descriptors kept for the listening sockets, logs and the like (Redis's CONFIG_MIN_RESERVED_FDS).
inline constexpr int64_t kReservedDescriptors = 32;
/// As Redis's adjustOpenFilesLimit: `maxclients` connections need that many descriptors, plus
/// kReservedDescriptors, plus one per data file keg holds open (`data_files`). Raises the soft RLIMIT_NOFILE toward that (as far as the hard limit allows) and
/// returns how many clients the limit then allows: `maxclients` when it sufficed. Any thread.
int64_t RaiseFileLimitFor(int64_t maxclients, uint64_t data_files);

/// Redis's used_memory on keg: the process's own resident memory (anonymous pages; the mapped data
/// files are page cache). Not glibc's mallinfo2, which walks every free chunk of the heap (hundreds
/// of milliseconds with a million keys). Any thread.
int64_t UsedMemory();
/// The process's resident memory from /proc/self/statm: its own (anonymous) pages, and the
/// file-backed ones (the mapped data files' pages in the page cache, and the executable's).
struct ResidentMemory {
  int64_t anon = 0;
  int64_t file = 0;
};
ResidentMemory Resident();
/// CPU seconds (user, system) of this process's threads, summed by thread name ("keg-io-0",
/// "keg-writer", ...), sorted by name; from /proc/self/task. Any thread.
std::vector<std::pair<std::string, std::pair<double, double>>> ThreadCpuSeconds();

/// Redis's instantaneous metrics: a thread ("keg-cron") samples the counters every 100 ms and
/// each rate is the mean over the last 16 samples (Redis's trackInstantaneousMetric); it also
/// keeps the peak of used memory.
class Sampler {
 public:
  struct Reading {
    uint64_t commands = 0;
    uint64_t bytes_in = 0;
    uint64_t bytes_out = 0;
    int64_t used_memory = 0;
  };
  Sampler() = default;
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;
  ~Sampler();
  /// Starts sampling `read` (called on the sampler thread). Once.
  void Start(std::function<Reading()> read);
  /// Stops the thread (before what `read` reads goes away). Idempotent.
  void Stop();
  double ops_per_sec() const { return Mean(0); }
  /// CONFIG RESETSTAT (Redis's resetServerStats): the rates start again from 0. Any thread.
  void Reset();
  double input_kbps() const { return Mean(1) / 1024; }
  double output_kbps() const { return Mean(2) / 1024; }
  int64_t peak_memory() const { return peak_.load(std::memory_order_relaxed); }
  void NotePeak(int64_t used);

 private:
  static constexpr size_t kSamples = 16;
  double Mean(size_t metric) const;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  double rates_[3][kSamples] = {};
  size_t next_ = 0;
  bool reset_ = false;  // Reset() since the last sample: the next one only takes the counters
  std::atomic<int64_t> peak_{0};
  std::thread thread_;
  bool stop_ = false;
};

struct ServerState {
  ServerState() {
    pause.on_change = [this](bool paused) {
      // A replica never expires keys itself (replica.h): a pause's end does not resume it.
      if (store) store->SetExpiryPaused(paused || replica_of.active());
    };
  }
  ~ServerState() { blocking.Stop(); }  // before the store closes: its thread writes to it
  ServerState(const ServerState&) = delete;
  ServerState& operator=(const ServerState&) = delete;

  /// Pub/sub, and the keyspace notifications' classes (notify-keyspace-events; notify.h). Declared
  /// before the store: its writer publishes `expired` events until it closes.
  PubSub pubsub;
  std::atomic<uint32_t> notify_flags{0};
  /// DEBUG READ-GAP (tests): microseconds a read of a large collection sleeps between its head's
  /// read and its elements' (ReadGap), widening the moment a group could land between them.
  std::atomic<uint32_t> read_gap_us{0};
  /// CLIENT TRACKING (tracking.h) and tracking-table-max-keys.
  Tracking tracking{*this};
  /// Clients blocked in BLPOP and friends (blocking.h). Declared before the store (its writer
  /// reports written keys to it until it closes); its thread is stopped first (~ServerState).
  BlockingRegistry blocking{*this};
  BackgroundJobs jobs;  // SYNC's snapshots
  /// The diskless full sync that waits to start (repl-diskless-sync-delay), which a replica asking
  /// now joins; null when none waits (commands_replication.cc).
  std::mutex pending_sync_mu;
  std::shared_ptr<PendingSync> pending_sync;
  /// The replication stream and the replicas it feeds (replication.h). Declared before the store:
  /// its writer appends to it until it closes.
  ReplicationFeed repl;
  /// net::Server::Barrier (set by main once listening; null in process tests): a full sync waits
  /// for it so that every batch built before replication started, which says nothing of what it
  /// propagates, is queued before its snapshot (replication.h).
  std::function<void(std::function<void()> done)> io_barrier;
  /// net::Server::Adopt (set by main once listening; null in process tests).
  std::function<bool(int fd, std::function<std::unique_ptr<net::Session>(net::Link*)> make)> adopt;
  /// This server as a replica (REPLICAOF; replica.h). Stopped by main before the store closes.
  ReplicaOf replica_of{*this};
  /// Turns the store's reports of written keys on while tracking or blocking needs them.
  void UpdateWriteReports();
  std::atomic<uint64_t> tracking_table_max_keys{1000000};
  /// Options for opening the store: the configuration's, with the `expired` notifications' hook.
  store::Options StoreOptions();

  /// Lua scripts (scripting.h). Declared before the store so it is destroyed after it: the store's
  /// writer may be running a script until the store closes.
  std::unique_ptr<ScriptEngine> scripts = std::make_unique<ScriptEngine>(*this);
  std::unique_ptr<store::Store> store;
  /// The read pool for cold keys (set by main after the store opens; null in process tests, where
  /// reads fault inline). Stopped before the store closes.
  std::unique_ptr<ColdReads> cold_reads;

  // Configuration: the full copy under config_mu; hot values mirrored into atomics.
  mutable std::mutex config_mu;
  Config config;
  net::Limits limits;
  std::atomic<uint64_t> config_epoch{0};  // bumps on CONFIG SET (sessions refresh their limits)
  std::atomic<uint32_t> timeout{0};
  std::atomic<int64_t> maxclients{10000};
  std::atomic<bool> replica_read_only{true};  // replica-read-only
  // propagation-error-behavior panic or panic-on-replicas (the same for keg, which has no AOF to
  // load): a read-only replica aborts on an error in its primary's stream (ClientSession::OnErrorReply).
  std::atomic<bool> panic_on_propagation_error{false};
  std::atomic<uint64_t> unexpected_error_replies{0};  // INFO stats: errors a replication link "sent"
  std::atomic<bool> replica_serve_stale_data{true};
  std::atomic<int64_t> min_replicas_to_write{0};
  std::atomic<int64_t> min_replicas_max_lag{10};
  std::atomic<bool> protected_mode{true};
  std::atomic<int64_t> proto_max_bulk_len{512ll * 1024 * 1024};
  std::atomic<int64_t> rdb_key_save_delay{0};  // Config::rdb_key_save_delay (DebugDelay)
  std::atomic<int64_t> key_load_delay{0};      // Config::key_load_delay (DebugDelay)
  // A replica loading a full sync: into staging databases, the old data set served meanwhile
  // (INFO async_loading), or in place (INFO loading).
  std::atomic<bool> async_loading{false};
  std::atomic<bool> loading{false};
  /// Whether a full sync is being loaded (either way): Redis's -LOADING refusals apply. Any thread.
  bool LoadingSync() const {
    return async_loading.load(std::memory_order_relaxed) || loading.load(std::memory_order_relaxed);
  }
  // Snapshots being built (a full sync's, redis-cli --rdb's): INFO rdb_bgsave_in_progress, keg's
  // counterpart of Redis's RDB child.
  std::atomic<int> snapshots_building{0};

  Counters counters;
  ErrorStats errors;
  SlowLog slowlog;
  AccessClock access;
  LatencyMonitor latency;
  std::atomic<bool> latency_tracking{true};  // latency-tracking
  std::atomic<bool> cold_read_io_uring{true};  // cold reads through the loops' io_uring (else the pool)
  std::atomic<int64_t> busy_reply_threshold_ms{5000};  // busy-reply-threshold (lua-time-limit)
  // The small-collection thresholds (Config), read by every collection write.
  std::atomic<int64_t> hash_max_entries{512};
  std::atomic<int64_t> hash_max_value{64};
  std::atomic<int64_t> set_max_intset_entries{512};
  std::atomic<int64_t> set_max_entries{128};
  std::atomic<int64_t> set_max_value{64};
  std::atomic<int64_t> zset_max_entries{128};
  std::atomic<int64_t> zset_max_value{64};
  std::atomic<int64_t> list_max_listpack_size{-2};
  std::atomic<int64_t> hll_sparse_max_bytes{3000};  // hll-sparse-max-bytes
  /// DEBUG SET-DISABLE-DENY-SCRIPTS (tests): scripts may call noscript commands that answer in
  /// place (CLIENT LIST, DEBUG PROTOCOL); never those that act on a connection.
  std::atomic<bool> script_allow_denied{false};
  // DEBUG PAUSE-CRON: the 100 ms cron skips its work (the tracking table's limit), as Redis's
  // serverCron does; only tests use it.
  std::atomic<bool> cron_paused{false};
  std::atomic<int> debug_command{0};  // enable-debug-command: 0 no, 1 yes, 2 local
  AclRegistry acl;  // users (ACL); the default user's password follows requirepass
  ClientRegistry clients;
  PauseState pause;
  Failover failover{*this};  // FAILOVER (after replica_of, repl and pause: it uses them)
  Sampler sampler;
  /// The network layer's traffic (set by main once listening; null in process).
  std::function<net::Traffic()> traffic;
  /// traffic() at the last CONFIG RESETSTAT: INFO reports what came after it, as Redis resets its
  /// counters (the metrics endpoint's stay monotonic, as Prometheus counters are).
  std::mutex traffic_base_mu;
  net::Traffic traffic_base;  // guarded by traffic_base_mu
  int64_t startup_memory = 0;  // allocated bytes before the store opened (used_memory_startup)
  std::atomic<uint64_t> saves{0};  // SAVE / BGSAVE runs (rdb_saves)
  MonitorRegistry monitors;
  WatchRegistry watches;
  std::atomic<uint64_t> next_client_id{1};
  std::atomic<int64_t> last_save_s{0};
  std::atomic<bool> compaction_running{false};
  /// Keys found expired and dropped at startup (INFO rdb_last_load_keys_expired).
  std::atomic<uint64_t> load_keys_expired{0};
  int64_t start_ms = 0;
  std::string run_id;
  std::atomic<uint16_t> port{0};  // the bound port, known once listening
  /// Recovered and serving (the readiness probe); false while loading and once shutting down.
  std::atomic<bool> ready{false};
  std::string executable;
  std::string config_file;

  /// Asks main to shut down (SHUTDOWN; `now`: without waiting for the replicas to catch up);
  /// set by main before the I/O threads start. Any thread.
  std::function<void(bool now)> request_shutdown;
  /// SHUTDOWN ABORT: ends a shutdown still waiting for its replicas (false: none was). Any thread.
  std::function<bool()> abort_shutdown;
  /// shutdown-timeout (seconds; 0: a shutdown does not wait for the replicas).
  std::atomic<int64_t> shutdown_timeout{10};
  /// While a shutdown waits for its replicas: when that wait ends (MonoMs; 0: no such wait). INFO's
  /// shutdown_in_milliseconds.
  std::atomic<int64_t> shutdown_deadline_ms{0};
  /// Connections whose SHUTDOWN waits with the server (no reply: the server exits); a SHUTDOWN
  /// ABORT answers them "Errors trying to SHUTDOWN. Check logs.", as Redis. Any thread.
  void AddShutdownWaiter(std::weak_ptr<net::Link> link, ClientSession* client);
  void FailShutdownWaiters();
  /// Connections (still open) waiting in SHUTDOWN: INFO blocked_clients counts them, as Redis's
  /// BLOCKED_SHUTDOWN. Any thread.
  size_t ShutdownWaiters();
  std::mutex shutdown_waiters_mu;
  std::vector<std::pair<std::weak_ptr<net::Link>, ClientSession*>> shutdown_waiters;

  /// Applies `config` to the atomics and the logger. Call with config_mu held.
  void ApplyConfigLocked();
  /// The notify-keyspace-events part of it (again once the store is open). config_mu held.
  void ApplyNotifyConfigLocked();

  /// Redis's checkGoodReplicasStatus: false when this primary has min-replicas-to-write set (with
  /// min-replicas-max-lag) and fewer replicas acked within max-lag seconds; writes are then
  /// refused with -NOREPLICAS. Always true on a replica. Any thread; two relaxed loads when off.
  bool EnoughGoodReplicas() const;
  /// Runs `done` once every write a command dispatched before this call is applied and its group
  /// durable, so in the replication stream: the batches the I/O threads have built, a turn's group
  /// not yet handed to the store included (io_barrier, then the store's Barrier). On the writer
  /// thread; at once, here, without a store. A pause of writes (CLIENT PAUSE, FAILOVER, a
  /// shutdown waiting for its replicas) waits for this before it says the stream stopped: a write
  /// that passed the pause's check on another I/O thread just before is still coming. Any thread.
  void AfterWritesInFlight(std::function<void()> done);
  /// AfterWritesInFlight, waited for: false when `stop()` said to give up first (checked every
  /// 100 ms). Not on an I/O thread.
  bool WaitForWritesInFlight(const std::function<bool()>& stop);
  /// Redis's running-stale state: a replica whose link to its primary is down while
  /// replica-serve-stale-data is no (commands without Redis's `stale` flag get -MASTERDOWN).
  bool RunningStale() const;
};

}  // namespace keg::server
