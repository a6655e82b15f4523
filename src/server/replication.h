// Replication (issue 19; docs/server.md, "Replication"), the primary's side: the RDB snapshot a
// full sync sends (commands_replication.cc), and the stream of writes that follows it — Redis's
// replication buffer and backlog — with its byte offsets, the replicas it feeds, their acks, and
// WAIT.
//
// What a write propagates is decided where it is applied (the writer role, design.md "one
// serialized place"): each write command says what it propagates (its own arguments, a rewrite
// into a deterministic form — relative expiries made absolute, SPOP's random pick as SREM, a
// script's effects, a served blocking pop as the plain pop — or nothing when none of its ops
// applied), and the batch's completion appends that to the stream once its group is durable, in
// the order groups are applied. A full sync's snapshot is taken between two groups, at a known
// offset of the stream, so snapshot + stream from that offset is exactly the data set.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "net/session.h"
#include "store/store.h"

namespace keg::server {

class ClientSession;
struct ServerState;

/// 40 random hex digits: a replication id, a diskless snapshot's end mark.
std::string RandomHex40();

/// Writes an RDB file (version 10, as redis-server 7.0.15 writes one: aux fields, a SELECTDB per
/// non-empty database, each live key with its expiry, EOF and CRC64) of the whole store as of one
/// moment (Store::VisitSnapshot) to *out. `at_moment`, when given, runs on the writer at that
/// moment (a full sync notes the stream's offset there). Corruption when a record fails its check
/// or a value does not decode. Any thread but the writer's; reads every record, so not an event
/// loop's. With `drain`, the file goes in pieces: drain(out) is called each time *out holds about 1 MiB
/// (and once at the end) and must take its bytes (leave it empty); it returns false to stop (the
/// snapshot then ends Aborted). Peak memory is then a piece, not the file. `wanted`, when given, is
/// asked every 1024 keys (every key while rdb-key-save-delay slows the build) whether anyone still
/// waits for the snapshot; false ends it Aborted (Redis kills a child whose RDB no replica waits
/// for).
store::Status WriteRdbSnapshot(ServerState& s, std::string* out, const std::function<void()>& at_moment = nullptr,
                               const std::function<bool(std::string* out)>& drain = nullptr,
                               const std::function<bool()>& wanted = nullptr);

/// Appends `args` as a RESP array of bulk strings.
void AppendCommand(std::string* out, std::span<const std::string_view> args);
void AppendCommand(std::string* out, std::initializer_list<std::string_view> args);

/// One command of the stream (a RESP array) and the database it acts in (ReplicationFeed::kNoDb:
/// MULTI, EXEC, PING, REPLCONF GETACK).
struct PropagatedCommand {
  uint32_t db = 0;
  std::string resp;
  /// A replica forwarding its primary's SELECT: the database it selects (UINT32_MAX: not one).
  uint32_t selects = UINT32_MAX;
};

/// What one write command propagates (Redis's also_propagate for one call), filled on the
/// command's I/O thread (its arguments or their rewrite) or on the writer (`late`: what only the
/// run knows, such as SPOP's members or a script's effects). Appended to the stream only when one
/// of its ops applied (or `always`).
struct Propagation {
  size_t first_op = 0;  ///< the command's ops in its batch: [first_op, first_op + op_count)
  size_t op_count = 0;
  PropagatedCommand command;  ///< when `late` is not set
  /// Run on the writer role at the batch's completion, with the command's op results: appends
  /// what it propagates to `out`.
  std::function<void(std::span<const store::OpResult> results, std::vector<PropagatedCommand>* out)> late;
  /// Propagated whether or not an op applied (a command that writes outside the batch's ops).
  bool always = false;
  /// Several commands `late` gives go in MULTI ... EXEC (a script's effects, as Redis); otherwise
  /// one after another (a push and the blocked pops it served, as Redis).
  bool transaction = false;
};

/// Where a cleanly stopped server's data set is in its replication history (Redis keeps this in
/// its RDB's repl-id, repl-offset and repl-stream-db aux fields): the stream's id, the offset every
/// write up to which is in the data files, and the database its last SELECT selected. Saved at
/// shutdown once the store is closed; taken (read and removed, durably) at start before any write,
/// so a data set that moved on after it never claims it.
struct SavedHistory {
  std::string replid;
  uint64_t offset = 0;
  uint32_t db = 0;
};
/// Writes `h` to `path` (store::io::ReplaceFile). "" or the error.
std::string SaveHistory(const std::string& path, const SavedHistory& h);
/// Reads `path` into *h (*found: there was one that parses) and removes it. The error when it
/// cannot be removed (the server must not start: the file would outlive the data set's next write).
std::string TakeHistory(const std::string& path, SavedHistory* h, bool* found);

/// One replica connected to this server (its connection is a client that sent SYNC or PSYNC).
struct Replica {
  uint64_t client_id = 0;
  std::weak_ptr<net::Link> link;
  std::string ip;
  int64_t port = 0;            ///< REPLCONF listening-port
  // Under ReplicationFeed::mu_:
  bool online = false;         ///< its snapshot was sent (INFO's state=online; WAIT, min-replicas, FAILOVER count it)
  bool streaming = false;      ///< it gets the stream: from online on, or after a diskless snapshot its first ack
  bool posted = false;         ///< a send to it is queued on its I/O thread
  uint64_t sent = 0;           ///< stream offset sent up to
  uint64_t acked = 0;          ///< REPLCONF ACK: offset the replica has applied (and made durable)
  int64_t ack_ms = 0;          ///< when it last acked
  int64_t soft_since_ms = 0;   ///< while not streaming: since when the stream held for it passed the soft limit
  // (Nothing here belongs to the replica's I/O thread alone: ReplicationFeed::Replicas copies
  // every field under the mutex, from any thread. That state is its ClientSession's.)
};

/// How a WAIT ended: with its count of acks (they came, or its timeout, or CLIENT UNBLOCK ...
/// TIMEOUT), by CLIENT UNBLOCK ... ERROR, or because this server became a replica (the client gets
/// kUnblockedByRoleChange and its connection closes).
enum class WaitEnd : uint8_t { kCount, kUnblockError, kRoleChange };

/// The replication stream. Thread: Append and MarkSnapshot on the writer role; the rest any thread
/// (one mutex; active() and offset() are atomic loads).
class ReplicationFeed {
 public:
  /// A command that acts in no database (MULTI, EXEC, PING, REPLCONF GETACK): no SELECT before it.
  static constexpr uint32_t kNoDb = UINT32_MAX;

  ReplicationFeed();

  /// Write commands say what they propagate only while this is true: from the first replica on
  /// (Redis creates its backlog then, and keeps it). One relaxed load.
  bool active() const { return active_.load(std::memory_order_relaxed); }
  /// The replication id (40 hex digits) and the stream's end offset (master_repl_offset). On a
  /// replica, its primary's: the stream is the primary's, forwarded byte for byte.
  std::string replid() const;
  /// The history before the last change of id (a promotion): replid2 and second_repl_offset (the
  /// first offset it does not cover; -1 when none).
  std::string replid2() const;
  int64_t second_offset() const;
  uint64_t offset() const { return end_.load(std::memory_order_acquire); }
  void set_backlog_size(uint64_t bytes);
  /// client-output-buffer-limit replica: a replica that is not online yet (its snapshot is being
  /// built) and for which the stream holds more than `hard` bytes, or more than `soft` for
  /// `soft_seconds`, is disconnected (once online, its connection holds it to the same limits).
  void set_limits(uint64_t hard, uint64_t soft, int64_t soft_seconds);
  uint64_t backlog_size() const { return backlog_size_.load(std::memory_order_relaxed); }
  /// Bytes the stream's blocks hold (the backlog, and what replicas have not been sent or their
  /// connections not yet written): INFO's mem_total_replication_buffers, as Redis's shared
  /// replication buffer. Any thread.
  uint64_t buffer_bytes() const;

  // ---- The writer role (Append also from any thread, for what is ordered with no write:
  // FUNCTION LOAD, PING).
  /// Appends `commands` (RESP arrays) acting in `db`, after a SELECT when the stream's last
  /// database differs; wakes the replicas. Nothing while forwarding: a replica's own writes (a
  /// writable replica's clients, PFCOUNT's cache) stay local, as Redis's, and its stream and
  /// offsets stay its primary's, which its replicas and a PSYNC after a promotion count on.
  void Append(uint32_t db, std::string_view commands);
  /// Appends the propagations of one completed batch (a connection's turn of commands, an EXEC
  /// when `transaction`: MULTI ... EXEC around more than one command) with its op results. While
  /// forwarding, only the master link's batches come here (a replica's own commands are not
  /// captured: ClientSession::RunHandler).
  void AppendBatch(std::span<Propagation> props, std::span<const store::OpResult> results, bool transaction);
  /// Appends commands that did not come through a connection's batch (blocked pops served by the
  /// registry), one after another; nothing while forwarding, as Append.
  void AppendCommands(std::vector<PropagatedCommand> cmds);
  /// At a full sync's snapshot moment: the offset the snapshot is at; the next command appended
  /// names its database (a new replica knows none).
  uint64_t MarkSnapshot();

  // ---- This server as a replica (replica.h).
  /// A full sync from a primary: the stream is now its history `replid` at `offset` (the bytes
  /// held are dropped, and the replicas of this server, whose history that was, disconnected).
  void StartHistory(std::string replid, uint64_t offset);
  /// A full sync starts replacing the data set: the history held so far no longer describes it
  /// (a new random id at offset 0; the replicas of this server go), so neither a shutdown nor a
  /// PSYNC during or after a failed load claims it.
  void ForgetHistory();
  /// The primary's +CONTINUE named a new id (it was promoted): the old one stays valid up to here.
  void ContinueAs(std::string replid);
  /// Appends bytes of the primary's stream as they are (no SELECT of its own). Any thread, in
  /// the primary's order. `selects`: the database when the bytes are a SELECT.
  void Forward(std::string_view bytes, uint32_t selects = kNoDb);
  /// The database the stream's last SELECT selected (0 before any, and after a full sync): where
  /// a master link continuing the stream after a partial resync starts (Redis's cached master
  /// keeps its database).
  uint32_t stream_db() const;
  /// While forwarding, the feed adds nothing of its own (no PING): its offsets are the primary's.
  void set_forwarding(bool on) { forwarding_.store(on, std::memory_order_relaxed); }
  bool forwarding() const { return forwarding_.load(std::memory_order_relaxed); }
  /// At start, before any write: continues the history `h` a clean shutdown saved. As a replica
  /// (`replica`: the replicaof directive names its primary), its PSYNC then asks for what follows
  /// `h.offset`; as a primary (Redis's way after loading its RDB), a new id starts at `h.offset`
  /// with `h.replid` valid up to it, so replicas that have exactly that resync partially. Creates
  /// the backlog.
  void Restore(const SavedHistory& h, bool replica);
  /// What to save at shutdown (stream_db included).
  SavedHistory Current() const;
  /// REPLICAOF NO ONE: a new history starts here; the old id stays valid up to here, so replicas
  /// of the old primary continue with this one (PSYNC of replid2).
  void Promote();

  // ---- Replicas (their connection's I/O thread).
  /// Creates the backlog (once): from here on writes are captured.
  void Activate();
  /// A replica that will get the stream from offset `from` once Online.
  std::shared_ptr<Replica> Add(uint64_t client_id, std::shared_ptr<net::Link> link, std::string ip, int64_t port,
                               uint64_t from);
  /// Its snapshot was sent: it is online (Redis's replicaPutOnline), and, when `stream`, gets the
  /// stream from its offset on. Otherwise the stream waits for StartStream (a diskless snapshot's
  /// replica: at its first ack).
  void Online(const std::shared_ptr<Replica>& r, bool stream = true);
  void StartStream(const std::shared_ptr<Replica>& r);
  void Remove(const Replica* r);
  /// Removes the replica of connection `client_id`, if any (one that hung up during its full
  /// sync, before it streams). Any thread.
  void RemoveClient(uint64_t client_id);
  /// Whether `r` is still one of the replicas (not removed: hung up, killed, over its limit). Any
  /// thread.
  bool Holds(const Replica* r);
  /// PSYNC replid offset: when the stream still holds everything after `offset` (the bytes the
  /// replica has) of the history `replid` names, a replica (not yet online) that will get it
  /// from there; null otherwise.
  std::shared_ptr<Replica> TryContinue(std::string_view replid, uint64_t offset, uint64_t client_id,
                                       std::shared_ptr<net::Link> link, std::string ip, int64_t port);
  /// REPLCONF ACK.
  void Ack(Replica& r, uint64_t offset, int64_t now_ms);
  /// The replica's connection read something (a newline a loading replica sends each second, an
  /// ack): it is alive at `now_ms`, as Redis's repl_ack_time.
  void Heard(Replica& r, int64_t now_ms);
  /// Replicas that acked at least `offset` (WAIT).
  size_t CountAcked(uint64_t offset) const;
  /// Online replicas whose last ack is at most `max_lag_s` whole seconds old at `now_ms` (steady
  /// clock): Redis's repl_good_slaves_count for min-replicas-to-write.
  size_t GoodReplicas(int64_t max_lag_s, int64_t now_ms) const;
  size_t replica_count() const;
  /// For INFO replication and ROLE.
  std::vector<Replica> Replicas() const;
  /// First byte's offset held and bytes held (repl_backlog_first_byte_offset / histlen).
  std::pair<uint64_t, uint64_t> BacklogRange() const;

  /// WAIT: calls fn (on whichever thread saw it: an ack's I/O thread, or the feed's timer) once,
  /// when acks bring the count of replicas at `offset` to `count`, or at `deadline_ms` (steady
  /// clock; 0: none), or when `link` is gone.
  /// fn's argument says how the wait ended (WaitEnd). On a replica (forwarding) fn is called at
  /// once with kRoleChange.
  void OnAcked(uint64_t offset, size_t count, int64_t deadline_ms, std::weak_ptr<net::Link> link,
               uint64_t client_id, std::function<void(WaitEnd)> fn);
  /// CLIENT UNBLOCK of a client in WAIT: calls its fn (kUnblockError with `error`, else kCount)
  /// now, on this thread; false when that client waits in no WAIT.
  bool Unblock(uint64_t client_id, bool error);
  /// This server became a replica (after set_forwarding(true)): every WAIT ends with kRoleChange,
  /// on this thread (Redis's disconnectAllBlockedClients).
  void UnblockAll();
  /// Clients waiting in WAIT (INFO's blocked_clients). Any thread.
  size_t waiting() const;
  /// REPLCONF GETACK * into the stream: the replicas ack at once (WAIT).
  void RequestAcks();
  /// repl-ping-replica-period (seconds): the timer appends a PING this often while replicas are
  /// attached, so they see the link alive.
  void set_ping_period(int64_t seconds) { ping_period_s_.store(seconds, std::memory_order_relaxed); }
  /// repl-timeout (seconds): the timer drops an online replica heard nothing from for longer
  /// (Redis's "Disconnecting timedout replica (streaming sync)").
  void set_timeout(int64_t seconds) { timeout_s_.store(seconds, std::memory_order_relaxed); }
  /// repl-backlog-ttl (seconds; 0: never): a primary without replicas for longer drops its backlog
  /// and starts a new history (Redis's changeReplicationId + freeReplicationBacklog), so a replica
  /// that comes back later does a full sync. A replica keeps its own.
  void set_backlog_ttl(int64_t seconds) { backlog_ttl_s_.store(seconds, std::memory_order_relaxed); }
  /// While a FAILOVER waits for a replica to ack the whole stream, no PING goes into it.
  void set_pings_paused(bool on) { pings_paused_.store(on, std::memory_order_relaxed); }

  ~ReplicationFeed();

  /// INFO stats: full syncs served, partial resyncs accepted and refused.
  std::atomic<uint64_t> sync_full{0};
  std::atomic<uint64_t> sync_partial_ok{0};
  std::atomic<uint64_t> sync_partial_err{0};

 private:
  // Bytes of every block alive: in blocks_, or only in a replica connection's output (sent to it,
  // not yet written to its socket). Shared with the blocks, which may outlive the feed there.
  using LiveBytes = std::shared_ptr<std::atomic<uint64_t>>;
  struct Block {
    Block(LiveBytes counter, size_t capacity)
        : bytes(std::make_unique<char[]>(capacity)), cap(capacity), live(std::move(counter)) {
      live->fetch_add(cap, std::memory_order_relaxed);
    }
    ~Block() { live->fetch_sub(cap, std::memory_order_relaxed); }
    Block(const Block&) = delete;
    Block& operator=(const Block&) = delete;
    std::unique_ptr<char[]> bytes;
    size_t cap = 0;
    size_t size = 0;     // under mu_
    uint64_t start = 0;  // the stream offset of bytes[0]
    LiveBytes live;
  };
  struct Waiter {
    uint64_t offset;
    size_t count;
    int64_t deadline_ms;
    std::weak_ptr<net::Link> link;
    uint64_t client_id;
    std::function<void(WaitEnd)> fn;
  };
  // The feed's thread ("keg-repl", from Activate or the first WAIT): WAIT's deadlines, the
  // periodic PING.
  void TimerLoop();
  void StartTimerLocked();
  void AppendLocked(std::string_view bytes);
  // A new id from here on; the old one stays valid up to here (replid2 / second_repl_offset).
  void ShiftHistoryLocked(std::string replid);
  // A SELECT first when `db` is not the stream's last database (kNoDb: none needed).
  void SelectLocked(uint32_t db);
  // Writes `cmds` with the SELECTs they need, in MULTI ... EXEC as a whole (`wrap_all`) or by
  // `groups` ([begin, end) ranges of cmds).
  void WriteLocked(const std::vector<PropagatedCommand>& cmds, const std::vector<std::pair<size_t, size_t>>& groups,
                   bool wrap_all);
  void TrimLocked();
  // The first offset the stream must keep: repl-backlog-size bytes before `end`, or what a
  // replica has not been sent yet if earlier. Under mu_.
  uint64_t NeededFromLocked(uint64_t end) const;
  // The first offset of the backlog (a PSYNC can continue from it): NeededFromLocked, to the
  // byte, within the blocks kept. Under mu_.
  uint64_t FirstLocked(uint64_t end) const;
  void WakeLocked();
  void Send(const std::shared_ptr<Replica>& r);
  // Disconnects the replicas waiting for their snapshot that passed the limits (set_limits).
  void DropOverLimitLocked();
  size_t CountAckedLocked(uint64_t offset) const;

  std::atomic<bool> active_{false};
  std::atomic<bool> forwarding_{false};
  std::string replid_;   // under mu_
  std::string replid2_ = std::string(40, '0');
  int64_t second_offset_ = -1;
  std::atomic<uint64_t> backlog_size_{1 << 20};
  std::atomic<uint64_t> end_{0};
  // The writer role's: the database the stream's last command acted in (kNoDb: none yet).
  uint32_t last_db_ = kNoDb;
  uint32_t stream_db_ = 0;  // under mu_: what the last SELECT in the stream selected

  mutable std::mutex mu_;
  // mu_ for a scope. Connections referenced under it (to post a send or a close to) are kept in
  // keep_ and released only after mu_ is: dropping the last reference to one destroys its session,
  // whose destructor takes mu_ (Remove) — on this thread, that would deadlock.
  class Guard {
   public:
    explicit Guard(const ReplicationFeed& feed) : feed_(feed), lock_(feed.mu_) {}
    ~Guard() {
      std::vector<std::shared_ptr<net::Link>> release;
      release.swap(feed_.keep_);
      lock_.unlock();
    }  // `release` goes here, mu_ free
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

   private:
    const ReplicationFeed& feed_;
    std::unique_lock<std::mutex> lock_;
  };
  mutable std::vector<std::shared_ptr<net::Link>> keep_;  // under mu_; see Guard
  std::deque<std::shared_ptr<Block>> blocks_;
  LiveBytes live_bytes_ = std::make_shared<std::atomic<uint64_t>>(0);
  std::vector<std::shared_ptr<Replica>> replicas_;
  std::vector<Waiter> waiters_;
  std::atomic<int64_t> ping_period_s_{10};
  std::atomic<int64_t> timeout_s_{60};
  std::atomic<int64_t> backlog_ttl_s_{3600};
  // Timer thread, under mu_: drops online replicas silent past timeout_s_.
  void DropSilentLocked(int64_t now_ms);
  std::atomic<bool> pings_paused_{false};
  std::atomic<uint64_t> hard_limit_{256ull << 20};
  std::atomic<uint64_t> soft_limit_{64ull << 20};
  std::atomic<int64_t> soft_seconds_{60};
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread timer_;
};

}  // namespace keg::server
