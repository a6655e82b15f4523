// ClientSession: the command layer's side of one connection (net::Session).
//
// It looks commands up in the table, checks arity and AUTH, queues MULTI transactions and collects
// the write commands of one read into a single store batch. Replies stay in request order: while a
// batch is pending, a command that is not a write waits (kWaitThenRetry) until the batch is durable
// and its replies are written.
//
// Thread: the connection's I/O thread, except the fields CLIENT LIST reads (guarded by info_mu_ or
// atomic) and watch_dirty_ (set on the writer thread).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "net/session.h"
#include "server/command.h"
#include "server/state.h"

namespace keg::server {

struct CompletionInbox;  // session.cc: completions on their way back to one I/O thread

class ClientSession final : public net::Session, private resp::ErrorObserver {
 public:
  ClientSession(ServerState& server, net::Link* link);
  ~ClientSession() override;

  // ---- net::Session ----
  net::Outcome Execute(std::span<const std::string_view> args) override;
  net::Outcome EndOfInput() override;
  void Prefetch(std::span<const std::string_view> names, std::span<const std::string_view> keys) override;
  bool busy() const override { return busy_ || parked_ || cold_wait_; }
  bool awaiting_auth() const override { return !authenticated_; }
  uint32_t idle_timeout_seconds() const override;

  // ---- for handlers (I/O thread) ----
  uint64_t id() const { return id_; }
  int64_t created_ms() const { return created_ms_; }
  net::Link& link() { return *link_; }
  resp::Protocol protocol() const { return protocol_; }
  void set_protocol(resp::Protocol p);
  bool authenticated() const { return authenticated_; }
  /// AUTH / HELLO AUTH succeeded: this connection is now `user`'s.
  void Authenticate(std::shared_ptr<const AclUser> user);
  /// The connection's user (ACL); refreshed when the users change.
  const AclUser& user() const { return *user_; }
  std::shared_ptr<const AclUser> user_ptr() const { return user_; }
  /// The user's name; any thread (CLIENT LIST, CLIENT KILL USER).
  std::string user_name() const;
  std::string name() const;
  void set_name(std::string name);
  void set_lib(std::string_view field, std::string value);
  /// REPLCONF rdb-only: SYNC sends the snapshot alone (redis-cli --rdb). I/O thread.
  bool rdb_only() const { return rdb_only_; }
  void set_rdb_only(bool on) { rdb_only_ = on; }
  /// REPLCONF capa eof: it reads the diskless framing ($EOF:<mark> ... <mark>).
  bool capa_eof() const { return capa_eof_; }
  void set_capa_eof() { capa_eof_ = true; }
  bool in_multi() const { return in_multi_; }
  bool in_exec() const { return in_exec_; }

  // Replication (replication.h). I/O thread.
  /// REPLCONF listening-port: the port this replica listens on (INFO's slaveN:port).
  int64_t replica_listening_port() const { return replica_port_; }
  void set_replica_listening_port(int64_t port) { replica_port_ = port; }
  /// REPLCONF ip-address: the address this replica announces ("" : the connection's).
  const std::string& replica_announced_ip() const { return replica_ip_; }
  void set_replica_announced_ip(std::string ip) { replica_ip_ = std::move(ip); }
  /// This connection is a replica (it sent SYNC or PSYNC): it gets the stream, and no replies.
  /// With `stream_on_ack`, a diskless snapshot was sent: the stream starts at its first REPLCONF
  /// ACK (it may have read past the snapshot's end mark: nothing may follow it until it loaded),
  /// as Redis's repl_start_cmd_stream_on_ack.
  void BecomeReplica(std::shared_ptr<Replica> r, bool stream_on_ack = false);
  /// A full sync (or a redis-cli --rdb snapshot) is being prepared for this connection: a replica
  /// for CLIENT LIST / KILL TYPE from now on, as Redis's SYNC flags it at once. I/O thread.
  void MarkSyncing() { repl_role_.store(kRoleReplica, std::memory_order_relaxed); }
  /// The connection closed (set by OnClose before it lets go of a replica being prepared). Any
  /// thread: a full sync's job, which adds the replica at its snapshot's moment, checks it after
  /// the add, so a replica that left just before is not kept.
  bool gone() const { return gone_.load(); }
  /// net::Session: the connection leaves the client registry (CLIENT LIST, KILL) and a master
  /// link's hang-up takes the link down (INFO master_link_status, ROLE) at once, not once its
  /// last batch completed and the session goes. Never called under the registry's lock.
  void OnClose() override;
  /// True once: the ack that starts the stream of a replica BecomeReplica(r, true) made.
  bool TakeStreamOnAck() { return std::exchange(stream_on_ack_, false); }
  Replica* replica() const { return replica_.get(); }
  const std::shared_ptr<Replica>& replica_shared() const { return replica_; }
  /// The stream's offset after this client's last write (WAIT).
  uint64_t write_offset() const { return write_offset_; }
  /// This connection is the link to this server's primary (replica.h), of ReplicaOf generation
  /// `gen`, its input starting at stream offset `offset`.
  void BecomeMasterLink(uint64_t gen, uint64_t offset);
  bool master_link() const { return master_link_; }
  /// The master link: REPLCONF ACK <offset applied and durable> to the primary (written even
  /// though the link's replies are off).
  void SendAck();
  /// The selected database (SELECT). I/O thread (db() also from any thread: CLIENT LIST).
  uint32_t db() const { return db_.load(std::memory_order_relaxed); }
  void set_db(uint32_t db) { db_.store(db, std::memory_order_relaxed); }

  /// The command will reply later (COMPACT, SAVE): Execute returns kWaitThenNext; call Finish()
  /// on the I/O thread once the reply is written.
  void Suspend() {
    suspended_ = true;
    suspended_target_ = error_target_;
  }
  void Finish();
  /// A blocking pop waits (blocking.h): the command is suspended until EndBlocked. I/O thread.
  void Block(std::shared_ptr<BlockedPop> w) {
    blocked_ = std::move(w);
    blocked_flag_.store(true, std::memory_order_relaxed);
    Suspend();
  }
  /// Runs `fn` on this session's I/O thread after every write completion delivered to that thread
  /// before it, in order (the completions of all its sessions share one queue, drained by one
  /// post). A blocked client's reply goes this way (BlockingRegistry::Finish): the EXEC or script
  /// whose push served it has run its last commands (a SLOWLOG RESET, a PUBLISH ...) by then, as
  /// in Redis, where the blocked client is served after the command that served it. A plain post
  /// could overtake: Asio queues an I/O thread's own posts until its handler returns. Any thread;
  /// `keep` is this session's link, which keeps it alive until `fn` ran.
  void DeliverInOrder(std::shared_ptr<net::Link> keep, std::function<void()> fn);
  /// The wait ended: writes its reply and goes on with the input. `log`: it popped on its first
  /// try (then the command goes to the slow log now, as Redis logs a blocking command when it is
  /// served, not when it blocks or times out; a client served while it waited was logged by
  /// BlockingRegistry::SendReplies). I/O thread.
  void EndBlocked(const std::function<void(resp::ReplyBuffer&)>& reply, bool log = false);
  /// The blocking pop was served (in a write op: any thread); its reply comes once that write is
  /// durable, and pushes (invalidations of what the pop wrote) wait for it, as after a client's
  /// own write (Redis runs the served pop as the client's command).
  void ServedReplyComing() { served_reply_coming_.store(true, std::memory_order_release); }
  bool blocked() const { return blocked_ != nullptr; }
  /// WAIT waits for acks (CLIENT LIST's `b`). I/O thread.
  void SetBlockedInWait(bool on) { blocked_flag_.store(on, std::memory_order_relaxed); }
  /// Close after this reply (QUIT), or right away without one.
  void CloseAfterReply() { close_ = true; }

  // MULTI / WATCH.
  void BeginMulti();
  void Discard();
  void Exec(Ctx& ctx);
  void Watch(std::span<const std::string_view> keys);
  void Unwatch();
  void MarkWatchDirty() { watch_dirty_.store(true, std::memory_order_release); }
  /// Thread: the writer's, in a precondition, or the I/O thread.
  bool WatchedKeyGone(const store::WriteBatch::KeyProbe& live) const;
  /// MONITOR: from now on this client receives every command the server runs.
  void StartMonitor();
  bool monitoring() const { return monitor_.load(std::memory_order_relaxed); }
  /// CLIENT NO-TOUCH: this client's commands do not update access times (except TOUCH).
  void set_no_touch(bool on) { no_touch_ = on; }
  /// CLIENT REPLY ON|OFF|SKIP (the handler replies OK for ON).
  void SetReplyMode(std::string_view mode);
  /// RESET: back to a fresh connection's state.
  void Reset();

  // Pub/sub.
  /// This connection's subscriptions (created on first use; lives as long as the session).
  Subscriber* subscriber();
  /// Subscribed to any channel, pattern or shard channel (Redis's CLIENT_PUBSUB flag).
  bool subscribed() const { return subscriber_ != nullptr && subscriber_->any(); }
  /// Subscribed to a channel, shard channel or pattern `user` may not use (Redis's
  /// ACLKillPubsubClientsIfNeeded: such a client is closed). I/O thread.
  bool SubscribedBeyond(const AclUser& user) const;
  /// After (un)subscribing: the connection's output-limit class follows.
  void SubscriptionsChanged() { link_->set_pubsub(subscribed()); }
  // CLIENT TRACKING (tracking.h). The mode as this connection set it (I/O thread).
  const Tracking::Mode* tracking_mode() const { return tracking_on_ ? &tracking_mode_ : nullptr; }
  /// CLIENT TRACKING on/off with `mode` (validated by the handler).
  void SetTracking(bool on, const Tracking::Mode& mode);
  /// CLIENT CACHING yes|no: applies to the next command.
  void SetTrackingCaching() { tracking_caching_ = true; }
  bool tracking_caching() const { return tracking_caching_; }
  /// Whether this command's reads are to be remembered (tracking on, not BCAST, OPTIN/OPTOUT and
  /// CLIENT CACHING agree).
  bool TracksReads() const {
    return tracking_on_ && !tracking_mode_.bcast && !(tracking_mode_.optin && !tracking_caching_) &&
           !(tracking_mode_.optout && tracking_caching_);
  }
  bool tracking_redirect_broken() const { return (tracking_bits_.load(std::memory_order_relaxed) & kTrackingBroken) != 0; }
  /// Any thread (Tracking, under its lock).
  void MarkTrackingRedirectBroken() { tracking_bits_.fetch_or(kTrackingBroken, std::memory_order_relaxed); }
  /// A push (invalidation, tracking-redir-broken) for this connection, on its I/O thread: written
  /// now (also while a suspended command waits: before its reply), or after the replies of the
  /// write in flight (Redis sends a client's own invalidations after its reply).
  void DeliverPush(std::string_view bytes);

  /// "normal", "pubsub", "master" (the link to this server's primary) or "replica" (a replica's
  /// connection), as Redis's getClientType (CLIENT LIST / KILL TYPE). Any thread.
  std::string_view client_type() const {
    const uint8_t role = repl_role_.load(std::memory_order_relaxed);
    if (role == kRoleMaster) return "master";
    if (role == kRoleReplica) return "replica";
    const Subscriber* s = subscriber_ptr_.load(std::memory_order_acquire);
    return s != nullptr && s->any() ? "pubsub" : "normal";
  }

  // The pending batch (write commands).
  store::WriteBatch& batch() { return batch_; }
  size_t pending_ops() const { return batch_.size(); }
  /// Commands of this read wait for the pending batch to reply (their finishers).
  bool has_steps() const { return !steps_.empty(); }
  void AddStep(size_t first_op, Finisher fn);
  /// A command of the batch being built may serve blocked clients into `served` (on the writer):
  /// those its finisher has not replied to get their replies after the batch's steps, or the
  /// group's error when it failed (no finisher runs then). I/O thread.
  void ServesBlocked(std::shared_ptr<std::vector<ServedPop>> served) { serving_.push_back(std::move(served)); }
  /// Keyspace hit or miss of a read (INFO keyspace_hits / keyspace_misses).
  void CountLookup(bool hit) { ++(hit ? hits_ : misses_); }
  /// An error in this command's place (deferred while a batch is pending).
  void ReplyError(std::string_view text);

  /// One line of CLIENT LIST (without the newline). Any thread, under the registry lock.
  std::string Describe(int64_t now_ms) const;
  std::string peer() const { return link_->peer(); }
  std::string local() const { return link_->local(); }

 private:
  struct Step {
    size_t first_op;
    size_t op_count;
    Finisher fn;
    const Command* cmd = nullptr;  // for commandstats (failed_calls, usec)
    bool muted = false;            // CLIENT REPLY OFF / SKIP when the command ran
  };
  struct WatchedKey {
    std::string key;
    uint32_t db;
    bool live;  // live at WATCH: EXEC aborts if it is not any more (expired), as Redis 7.0
  };
  // A batch in flight, with what completing it needs.
  struct InFlight {
    std::vector<Step> steps;
    bool exec = false;
    bool muted = false;  // EXEC's own reply muted (CLIENT REPLY)
    std::vector<std::vector<std::string>> owned_args;  // EXEC: the queued commands' arguments
    std::vector<Propagation> props;  // what its commands propagate (while a replica is attached)
    uint64_t write_offset = 0;       // the stream's end after them (set on the writer)
    uint64_t input_end = 0;          // the master link: the stream offset its commands end at
    bool forward = false;            // the master link's: its props are the primary's bytes
    // EXEC: the blocked clients its writes served in its last op (filled on the writer); their
    // pops go to replicas after it.
    std::shared_ptr<std::vector<ServedPop>> exec_served;
    // The clients its commands may serve (ServesBlocked), EXEC's included: replied to after its
    // steps ran (those a command's finisher has not), or with the group's error when it failed.
    std::vector<std::shared_ptr<std::vector<ServedPop>>> served;
  };

  net::Outcome ExecuteCommand(std::span<const std::string_view> args);
  // Data larger than memory: when a key of the command (of each queued command, for EXEC) is not
  // in the page cache, starts reading its records off the loop and returns true; the command comes
  // again once they are in. I/O thread.
  bool FetchIfCold(const Command& cmd, std::span<const std::string_view> args);
  // The cold keys of one command and the ranges of their records being read (pinned until read).
  struct ColdFetch {
    std::vector<std::string> keys;
    // What the command (each queued one, for EXEC) reads of the elements of a large collection at
    // keys[i] (Command::first_member); a key may come more than once.
    std::vector<store::ElementSelection> elements;
    std::vector<store::ColdRange> ranges;
    int64_t started_ns = 0;
    int round = 0;
  };
  // Reads fetch->ranges through the loop's io_uring, then looks at the keys again (a record's rest
  // is known once its header is in) until they are resident; the read pool does what the ring
  // cannot (no ring, records over 16 KiB, DEBUG COLD-READ-DELAY, a third round). Ends with
  // fetched_ set and the command resumed. I/O thread.
  void ReadCold(std::shared_ptr<ColdFetch> fetch);
  void ColdDone(const ColdFetch& fetch);
  // On a read pool thread: reads the cold element records `fetch` names into the page cache
  // (Store::ColdElementRanges, buffered preads), waiting for the disk.
  static void ReadColdElements(const store::Store& st, uint32_t db, const ColdFetch& fetch);
  net::Outcome Dispatch(const Command& cmd, std::span<const std::string_view> args);
  // Holds back the reply written since `reply_mark` (ReplyBuffer::added()) until the writer has
  // dropped the expired keys the command's reads found (Store::Barrier), then writes it: the
  // command is suspended meanwhile. I/O thread.
  void HoldReplyForExpiredDrops(uint64_t reply_mark);
  // Runs a handler, timing it and counting it against its command's stats.
  // `feed`: send the command to MONITOR clients (EXEC feeds its queued commands itself, in order).
  void RunHandler(const Command& cmd, Ctx& ctx, bool feed = true);
  // MONITOR's line for `args` (this client, its database now): sent now, or, while a script is
  // in the batch being built (script_in_batch_), by an op at this place in it, so the line comes
  // after the "lua" lines the script sends when it runs on the writer, as Redis orders them.
  void FeedMonitors(std::span<const std::string_view> args);
  void OnErrorReply(std::string_view text) override;
  std::vector<std::string> WatchedKeyNames() const;
  // Refuses a command (arity, NOAUTH) with Redis's reply; flags an open MULTI.
  net::Outcome Reject(const Command& cmd, std::string_view error);
  /// A command on a replica's connection (not REPLCONF): logged as Redis logs it, not run, and
  /// the connection closed.
  net::Outcome EndRogueReplica(std::span<const std::string_view> args);
  // The flags Redis's processCommand checks a command with (getCommandFlags): its subcommand's,
  // and for EVAL / FCALL kWrite and kStale from the script's declared flags (none without them).
  uint32_t EffectiveFlags(const Command& cmd, std::span<const std::string_view> args) const;
  // Whether some command queued in MULTI (or, `every`, each one) has `flag` (EffectiveFlags).
  bool QueuedCommandsHave(uint32_t flag, bool every) const;
  void set_authenticated(bool yes);
  // The user again, after ACL SETUSER / DELUSER (a deleted user may run nothing).
  void RefreshUser();
  // ACL: "" when user_ may run the command line, else the NOPERM reply (and an ACL LOG entry).
  // In EXEC, the reply Redis gives when the rules changed after the command was queued.
  std::string CheckAcl(const Command& cmd, std::span<const std::string_view> args, bool in_exec);
  net::Outcome Submit(bool exec);
  void Complete(InFlight& flight, const store::Status& status, std::vector<store::OpResult>& results);
  void RunSteps(InFlight& flight, std::vector<store::OpResult>& results);
  void RefreshLimits();
  void FlushCounters();

  ServerState& server_;
  net::Link* link_;
  /// The completion queue of the I/O thread that created this session (its own): set once.
  const std::shared_ptr<CompletionInbox> inbox_;
  const uint64_t id_;
  const int64_t created_ms_;
  resp::Protocol protocol_ = resp::Protocol::kResp2;
  bool authenticated_ = true;
  uint64_t config_epoch_ = ~0ull;
  std::shared_ptr<const AclUser> user_;  // never null
  uint64_t acl_version_ = 0;             // AclRegistry::version() when user_ was looked up

  // CLIENT REPLY: OFF mutes every reply; SKIP mutes the next command's.
  bool reply_off_ = false;
  bool no_touch_ = false;  // CLIENT NO-TOUCH
  std::atomic<bool> monitor_{false};  // MONITOR (CLIENT LIST flags=O)
  bool skip_requested_ = false;  // set by CLIENT REPLY SKIP, armed when that command is done
  bool skip_armed_ = false;      // the current command's reply is skipped

  // Per-command outcome flags set by handlers.
  bool suspended_ = false;
  std::shared_ptr<BlockedPop> blocked_;  // the blocking pop this client waits in
  std::vector<std::string> blocked_args_;  // its command line, and how long its handler took (the
  int64_t blocked_usec_ = 0;               // slow log's entry once served)
  std::atomic<bool> blocked_flag_{false};  // blocked_ set, or in WAIT (CLIENT LIST's `b`, any thread)
  // A write batch (a write command, EXEC, a script) is on its way to the store: pushes wait for
  // its replies (DeliverPush). A suspended read (DBSIZE, INFO, ...) does not hold them.
  bool write_in_flight_ = false;
  bool reply_held_ = false;  // HoldReplyForExpiredDrops: pushes wait for the reply, as for a write's
  std::atomic<bool> served_reply_coming_{false};  // ServedReplyComing .. EndBlocked
  bool close_ = false;
  bool rdb_only_ = false;  // REPLCONF rdb-only
  bool capa_eof_ = false;  // REPLCONF capa eof

  // The batch being collected from this read, and the finishers of its commands.
  store::WriteBatch batch_;
  std::vector<Step> steps_;
  std::vector<Propagation> props_;  // what the batch's commands propagate (replication.h)
  std::shared_ptr<std::vector<ServedPop>> exec_served_;  // Exec to Submit: InFlight::exec_served
  std::vector<std::shared_ptr<std::vector<ServedPop>>> serving_;  // to Submit: InFlight::served
  // The batch being built's kWakes serve ops: the group record the next one scans from (kNoRecord:
  // from the batch's first, Txn::BatchBegan). Each scans only what was written since the last
  // one, so a pipeline of them costs linear time. A new one per batch (Submit).
  std::shared_ptr<size_t> wake_cursor_;
  static constexpr size_t kNoRecord = ~size_t{0};
  // A kWakes command wrote: queues the op that serves the clients blocked on what it wrote (or,
  // SWAPDB, on either database), right after its ops; `propagates`: replicas get the pops after
  // the command. I/O thread.
  void ServeAfter(Ctx& ctx, const Command& cmd, bool propagates);
  // Records what a write command just run by RunHandler propagates (ops from first_op on).
  void Capture(Ctx& ctx, size_t first_op);
  // Replication.
  int64_t replica_port_ = 0;
  std::string replica_ip_;
  std::shared_ptr<Replica> replica_;
  bool stream_on_ack_ = false;
  uint64_t write_offset_ = 0;
  // client_type()'s view of the two above (any thread).
  static constexpr uint8_t kRoleNone = 0, kRoleMaster = 1, kRoleReplica = 2;
  std::atomic<uint8_t> repl_role_{kRoleNone};
  std::atomic<bool> gone_{false};  // gone()
  // The master link (BecomeMasterLink).
  bool master_link_ = false;
  uint64_t master_gen_ = 0;
  uint64_t master_base_ = 0;     // the stream offset at the link's first input byte
  uint64_t last_cmd_end_ = 0;    // the stream offset the last command run ends at
  bool forwarded_ = false;       // the command being run was forwarded already (EXEC)
  // The primary's transaction being queued: its bytes (MULTI included) wait here and go to this
  // server's stream whole with its EXEC, and the applied offset stays at multi_start_ (its
  // MULTI's first byte) until then, as Redis's master client: a replica of this one that takes
  // its full sync meanwhile, or a PSYNC after the link drops, starts before the MULTI.
  std::string multi_forward_;
  uint32_t multi_selects_ = 0;   // the last SELECT queued in it (ReplicationFeed::kNoDb: none)
  uint64_t multi_start_ = 0;
  // The stream offset the writes run so far end at (before a transaction being queued).
  uint64_t AppliedEnd() const { return multi_forward_.empty() ? last_cmd_end_ : multi_start_; }
  // The master link, after each command: its bytes go to this server's own stream, in the order
  // they take effect (with the pending batch, or now), and the applied offset moves.
  void ForwardFromMaster(std::span<const std::string_view> args);
  bool busy_ = false;  // a batch or a suspended command is in flight
  bool parked_ = false;  // waiting for CLIENT PAUSE to end (PauseState::Park)
  bool cold_wait_ = false;  // waiting for the command's cold keys to be read
  bool fetched_ = false;    // they were fetched: run the command without asking again

  // MULTI.
  bool in_multi_ = false;
  std::atomic<int64_t> multi_queued_{-1};  // commands queued in MULTI, -1 outside (CLIENT LIST `multi=`, any thread)
  void LeaveMulti();  // out of MULTI, its queue dropped (DISCARD, RESET)
  bool in_exec_ = false;
  bool multi_error_ = false;
  std::vector<std::vector<std::string>> queued_;
  // WATCH.
  std::atomic<uint32_t> db_{0};  // SELECT; written on the I/O thread, read by CLIENT LIST anywhere
  std::vector<WatchedKey> watched_;
  std::atomic<bool> watch_dirty_{false};

  std::vector<size_t> key_positions_;  // scratch for RunHandler

  // Pub/sub: null until the first (un)subscribe. Registered in server_.pubsub while it has
  // subscriptions; dropped from it before the session goes.
  std::unique_ptr<Subscriber> subscriber_;
  // CLIENT TRACKING: the mode (I/O thread), CLIENT LIST's view of it (any thread), the CLIENT
  // CACHING flag for the next command, and pushes waiting for the replies in flight.
  static constexpr uint8_t kTrackingOn = 1, kTrackingBcast = 2, kTrackingBroken = 4;
  bool tracking_on_ = false;
  // A script's op is in batch_ (EVAL, FCALL ... in a pipeline or an EXEC): FeedMonitors places
  // the MONITOR lines of what follows in the batch. Cleared when the batch is sent.
  bool script_in_batch_ = false;
  bool exec_fed_ = false;  // EXEC fed MONITOR its own line (after a script's): RunHandler does not
  Tracking::Mode tracking_mode_;
  bool tracking_caching_ = false;
  std::atomic<uint8_t> tracking_bits_{0};
  std::atomic<int64_t> tracking_redirect_{-1};
  std::string pending_pushes_;
  // Writes pending_pushes_ (after a write's replies, or a suspended command's).
  void FlushPendingPushes();
  // Remembers the keys a read command is about to read, for a tracking connection (not those of a
  // read-only command that also writes, PFCOUNT's cache: RememberTrackedInGroup after it).
  void RememberTracked(const Command& cmd, std::span<const std::string_view> args);
  // Queues to batch_ the remembering of the keys a read-only command reads, at this place in its
  // group: only the group's writes after it invalidate them (a transaction's reads; a PFCOUNT, so
  // its own cache write does not invalidate what it read, as Redis remembers after the command).
  void RememberTrackedInGroup(const Command& cmd, std::span<const std::string_view> args);
  // The keys a read-only command reads (none for other commands), as Redis's call() remembers
  // them for every CMD_READONLY command, those that may write a cache (PFCOUNT) included.
  std::vector<std::string_view> TrackedKeys(const Command& cmd, std::span<const std::string_view> args);
  std::atomic<const Subscriber*> subscriber_ptr_{nullptr};  // the same, for CLIENT LIST (any thread)

  // The command an error reply is counted against (failed_calls / rejected_calls), if any.
  const Command* error_target_ = nullptr;
  // error_target_ of a suspended command, until its reply is written (Finish): its late errors.
  const Command* suspended_target_ = nullptr;

  // Local counters, added to the server's once per read.
  uint64_t commands_ = 0;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
  uint64_t errors_ = 0;

  // What CLIENT LIST shows.
  mutable std::mutex info_mu_;
  std::string name_;
  std::string lib_name_;
  std::string lib_ver_;
  std::string user_name_ = "default";
  std::atomic<int64_t> last_interaction_ms_;
  std::atomic<const Command*> last_command_{nullptr};
  std::atomic<const Command*> last_subcommand_{nullptr};  // with last_command_: "client|list"
  std::atomic<int> resp_{2};
};

}  // namespace keg::server
