// This server as a replica (issue 19; docs/server.md, "Replication"): REPLICAOF host port.
//
// A thread ("keg-replica") connects to the primary and speaks Redis's handshake with blocking
// reads: PING, AUTH (masterauth / masteruser), REPLCONF listening-port and capa eof psync2, then
// (once every write this server applied is in its feed: Quiesce) PSYNC with the history it has
// (its feed's id and offset) or `? -1`. On +FULLRESYNC it reads the RDB payload whole
// (`$<length>` or the diskless `$EOF:<mark>` framing), checks it (magic, CRC64, every object)
// before touching the data set, then replaces the data set with it (FLUSHALL and the keys, in
// batches; stopped by a newer REPLICAOF) and takes the primary's id and offset for its own stream. The socket is then handed to an I/O thread (net::Server::Adopt) as
// the master link: a ClientSession that applies the stream's commands as any client's, without
// replies (but to REPLCONF GETACK), may write although the server is read-only, forwards each
// command's bytes to this server's own feed in the order they take effect (its replicas get the
// primary's stream, with the primary's offsets), and acknowledges an offset only once the writes
// up to it are durable under this server's fsync policy (so the primary's WAIT counts durable
// copies). The thread sends REPLCONF ACK every second, closes a link silent for repl-timeout, and
// reconnects after a drop with PSYNC (a partial resync from the primary's backlog).
//
// While a replica: writes from clients get -READONLY (replica-read-only), keys do not expire here
// (the primary's DEL comes in the stream; reads already see an expired key as absent), and the
// stream's writes see keys past their expiry as present, as Redis's master client.
//
// Thread: Follow / Unfollow / status from any thread; mu_, and history_mu_ (taken before it) for
// one generation's sync at a time.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "net/session.h"
#include "store/store.h"

namespace keg::server {

class ClientSession;
struct ServerState;
namespace rdb {
struct Loaded;
}

/// Writes `v` (RESTORE's payload, or a key of an RDB file) at `key` of `db`, replacing what is
/// there, with expiry `at` (0: none): a collection stored whole or per element as the thresholds
/// say. Writer role (inside a kRun op).
void WriteLoaded(store::Txn& txn, ServerState& s, uint32_t db, const std::string& key, rdb::Loaded& v, int64_t at);

class ReplicaOf {
 public:
  explicit ReplicaOf(ServerState& server) : server_(server) {}
  ~ReplicaOf();
  ReplicaOf(const ReplicaOf&) = delete;
  ReplicaOf& operator=(const ReplicaOf&) = delete;

  /// REPLICAOF host port: follows that primary from now on (the previous link, if any, is
  /// closed). False when it already follows it. `failover`: a FAILOVER's last step, whose PSYNC
  /// carries FAILOVER (the target promotes itself) and reports its answer to Failover.
  bool Follow(const std::string& host, int64_t port, bool failover = false);
  /// REPLICAOF NO ONE: a primary again (the feed starts a new history; keys expire here again).
  void Unfollow();
  /// Stops the thread (shutdown).
  void Stop();
  /// Whether this server is a replica now. One relaxed load.
  bool active() const { return active_.load(std::memory_order_relaxed); }

  struct Status {
    std::string host;
    int64_t port = 0;
    std::string state;        ///< ROLE's: connect, connecting, sync, connected
    bool link_up = false;
    int64_t last_io_s = -1;   ///< seconds since the primary last sent anything
    int64_t down_since_s = 0; ///< seconds the link has been down (0 while up)
    bool sync_in_progress = false;
    uint64_t offset = 0;      ///< applied and durable (slave_repl_offset)
    uint64_t read_offset = 0; ///< read from the stream (slave_read_repl_offset)
  };
  Status status() const;
  /// The link to the primary is up (its sync done): Redis's repl_state == REPL_STATE_CONNECTED.
  bool link_up() const;

  // ---- The master link's session (its I/O thread).
  /// Bytes of the stream up to `offset` are applied and durable.
  void Applied(uint64_t offset) { applied_.store(offset, std::memory_order_release); }
  void Read(uint64_t offset) { read_.store(offset, std::memory_order_release); }
  uint64_t applied() const { return applied_.load(std::memory_order_acquire); }
  /// The primary sent something.
  void Heard();
  /// The link of generation `gen` hung up (its socket closed): down from now on (INFO, ROLE), and
  /// its thread reconnects. I/O thread.
  void LinkDown(uint64_t gen);
  /// The link of generation `gen` is gone (its session, after its last batch completed): down, if
  /// LinkDown did not say so first, and a new link may start its sync (Quiesce).
  void LinkClosed(uint64_t gen);
  /// Whether generation `gen` is still the one followed (a link of an older one must apply
  /// nothing more).
  bool Current(uint64_t gen) const;

 private:
  void Run(uint64_t gen, std::string host, int64_t port, bool failover);
  // One connection's life: handshake, sync, then the link until it closes. False to stop.
  void Connect(uint64_t gen, const std::string& host, int64_t port, bool failover);
  void SetState(uint64_t gen, const char* state);
  // Before a PSYNC: waits until every write this server applied, or accepted before it turned
  // replica, is in its feed, so that the offset it sends covers them (the stream from there on is
  // applied: a write landing after it would be applied twice and shift this server's offsets from
  // its primary's, and a later partial resync would then skip bytes). False to give up.
  bool Quiesce(uint64_t gen);
  // Replaces the data set with an RDB file's, which `source` reads and hands to its sink piece by
  // piece (false: the link failed, or the sink said stop); the error, or empty. With staging
  // databases the file is loaded as it arrives, into them, and swapped in at the end; without,
  // it is read whole, checked, then loaded in place. *received: false when the link failed.
  // Stops early, with an error, once `gen` is not the current generation.
  using Sink = std::function<bool(std::string_view)>;
  std::string Load(uint64_t gen, const std::function<bool(const Sink&)>& source, bool* received);
  // Sleeps up to `ms`, waking when the generation changes (false if it did), and with
  // `until_down` also when the link goes down (LinkDown).
  bool Pause(uint64_t gen, int64_t ms, bool until_down = false);
  void ApplyMode(bool replica);

  ServerState& server_;
  std::atomic<bool> active_{false};
  std::atomic<uint64_t> applied_{0};
  std::atomic<uint64_t> read_{0};
  std::atomic<int64_t> heard_ms_{0};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t gen_ = 0;       // bumps on every Follow / Unfollow
  bool link_open_ = false; // the adopted link of gen_ is alive
  int live_links_ = 0;     // master-link sessions of any generation not destroyed yet
  // Held by a connection from its PSYNC until the history it was answered is in place (its
  // snapshot loaded), and by Unfollow: one generation's sync never overlaps another's, nor a
  // promotion. Taken before mu_, never while waiting for an I/O thread.
  std::mutex history_mu_;
  std::string host_;
  int64_t port_ = 0;
  std::string state_ = "connect";
  int64_t down_since_ms_ = 0;
  bool stop_ = false;
  int wire_fd_ = -1;  // the handshake's socket while the thread uses it
  std::thread thread_;
  // Threads of earlier generations, ending (each with its "ended" flag): the ended ones are
  // joined at the next Follow / Unfollow, the rest at Stop.
  std::vector<std::pair<std::thread, std::shared_ptr<std::atomic<bool>>>> old_threads_;
  std::shared_ptr<std::atomic<bool>> ended_;  // thread_'s flag
  // Moves thread_ to old_threads_ and joins those that ended. mu_ held.
  void RetireThreadLocked();
  void InterruptLocked();
};

/// FAILOVER [TO host port [FORCE]] [TIMEOUT ms] | ABORT (Redis 7.0's coordinated failover): this
/// primary pauses writes, waits until the target replica (or any) acked the whole stream, then
/// follows it with PSYNC <replid> <offset> FAILOVER, which makes the target promote itself (a
/// partial resync both ways); writes resume once the PSYNC is answered. Past TIMEOUT it aborts,
/// or with FORCE fails over anyway. Thread: any (its own thread waits for the sync).
class Failover {
 public:
  enum State { kNone = 0, kWaitForSync = 1, kInProgress = 2 };
  explicit Failover(ServerState& server) : server_(server) {}
  ~Failover() { Stop(); }
  Failover(const Failover&) = delete;
  Failover& operator=(const Failover&) = delete;

  /// INFO's master_failover_state.
  const char* state_name() const;
  bool active() const { return state_.load(std::memory_order_acquire) != kNone; }
  /// The primary follows its target and waits for its PSYNC FAILOVER to be answered.
  bool in_progress() const { return state_.load(std::memory_order_acquire) == kInProgress; }
  /// FAILOVER: "" (started) or Redis's error. `host` empty: any replica; `timeout_ms` 0: none.
  std::string Start(const std::string& host, int64_t port, int64_t timeout_ms, bool force);
  /// FAILOVER ABORT: "" or Redis's error.
  std::string Abort();
  /// ReplicaOf's thread: the failover's PSYNC was answered (+CONTINUE / +FULLRESYNC: `ok`).
  void PsyncAnswered(bool ok);
  /// Shutdown.
  void Stop();

 private:
  void Wait();  // the thread: until a replica caught up, the timeout, an abort
  void EndLocked(const char* why);  // back to no failover; writes resume. mu_ held.

  ServerState& server_;
  std::atomic<int> state_{kNone};
  std::mutex mu_;
  std::condition_variable cv_;
  std::string host_;  // the target ("" until one is chosen)
  int64_t port_ = 0;
  int64_t end_ms_ = 0;  // steady clock; 0: no timeout
  bool force_ = false;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace keg::server
