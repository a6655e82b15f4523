// Blocking list pops: BLPOP, BRPOP, BLMOVE, BRPOPLPUSH and BLMPOP (Redis 7.0's semantics).
//
// A blocking command first tries to pop as the plain command would, in a kRun op on the writer
// role. When every key is empty the same op registers the client here, so no push can slip
// between the try and the registration: both happen where writes are serialized. A push serves
// the key's clients in its own op (ServeNow), an EXEC or a script those of every key it wrote in
// its last op (ServeWritten): first come, first served, as long as the list has elements, each
// pop durable before its reply is sent. Any other write to a key with clients waiting (a record
// written under the key: Options::on_written) marks the key ready; this registry's thread then
// queues one kRun op that serves it. The same thread times clients out (millisecond deadlines).
// CLIENT UNBLOCK and a closed connection end a wait too.
//
// Thread: Add and the serving op run on the writer role; OnWritten on the writer role's holder;
// Cancel on the client's I/O thread; Unblock and blocked() on any thread. One mutex guards the
// waiting clients; replies are posted to each client's I/O thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "net/session.h"
#include "resp/reply_buffer.h"
#include "server/replication.h"
#include "store/store.h"

namespace keg::server {

class ClientSession;
class SlowLog;
struct ServerState;

/// What a client blocked in a pop or in WAIT gets when this server becomes a replica (Redis's
/// disconnectAllBlockedClients); its connection closes after it.
inline constexpr const char* kUnblockedByRoleChange =
    "-UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)";

/// Writes a reply on the client's I/O thread.
using ReplyWriter = std::function<void(resp::ReplyBuffer&)>;

/// One client blocked in a pop. Immutable once registered, except `state` (under the registry's
/// lock).
struct BlockedPop {
  enum class Kind : uint8_t { kPop, kMove, kMpop };
  Kind kind = Kind::kPop;
  uint32_t db = 0;
  std::vector<std::string> keys;  ///< in the order given (the first non-empty one is served)
  bool left = true;               ///< the end popped
  bool to_left = true;            ///< kMove: the end pushed
  std::string dst;                ///< kMove: the destination list
  bool rpoplpush = false;         ///< kMove by BRPOPLPUSH: propagated as RPOPLPUSH (as Redis), not LMOVE
  int64_t count = 1;              ///< kMpop: at most this many elements
  bool zset = false;              ///< BZPOPMIN / BZPOPMAX / BZMPOP (left: the minimum)
  int64_t deadline_ms = 0;        ///< 0: waits for ever
  uint64_t client_id = 0;
  /// The client: used on its I/O thread (posted through `link`), which cancels the wait before
  /// the session goes; elsewhere only under the registry's lock while not `cancelled`.
  ClientSession* client = nullptr;
  std::weak_ptr<net::Link> link;
  /// The slow log's entry once served (BlockingPop, before the first try): the command line, the
  /// client's address and name, how long the command ran before it waited.
  std::vector<std::string> argv;
  std::string peer;
  std::string name;
  int64_t handler_usec = 0;

  enum class State : uint8_t { kNew, kWaiting, kServing, kDone };
  State state = State::kNew;  // under BlockingRegistry::mu_
  bool cancelled = false;     // under BlockingRegistry::mu_: the client went
  /// The reply when nothing was popped without waiting (inside MULTI or a script): nil array
  /// (BLPOP, BLMPOP) or nil (BLMOVE, BRPOPLPUSH). A wait that times out or is ended by CLIENT
  /// UNBLOCK replies a nil array for every kind, as Redis 7.0's replyToBlockedClientTimedOut.
  bool null_array() const { return kind != Kind::kMove; }
};

/// Tries `w`'s pop against the group (writer role): from `only` (a key that became ready), or from
/// the first of w's keys that is a non-empty list. Returns the reply when it popped, or when a key
/// holds another type (WRONGTYPE, nothing popped); null when there was nothing to pop.
/// When it popped, *events (if given) sends the keyspace events of what it did (lpop / rpop on the
/// source, del when it went, lpush / rpush on a move's destination), as Redis's serving does; call
/// it once the group is durable.
/// When it popped, *prop (if given) is what replicas get for it: the pop without blocking (LPOP
/// key, RPOP key count, LMOVE, ZPOPMIN ...), as Redis rewrites a served blocking command.
/// *other_type (if given) is set when `only` holds a type w does not pop (a sorted set for BLPOP,
/// a list for BZPOPMIN): w waits on, and the key's waiters of the other kind may be served.
ReplyWriter TryBlockedPop(store::Txn& txn, ServerState& s, const BlockedPop& w,
                          const std::string* only, std::function<void()>* events = nullptr,
                          PropagatedCommand* prop = nullptr, bool* other_type = nullptr);

class Ctx;
/// Parses a blocking command's timeout (seconds, fractional; 0 = for ever) into a deadline (0: none);
/// false with the error replied.
bool ParseTimeout(Ctx& c, std::string_view arg, int64_t* deadline_ms);
/// Parses LMPOP's / BLMPOP's (zset: ZMPOP's / BZMPOP's) numkeys key [key ...] LEFT|RIGHT (MIN|MAX)
/// [COUNT count] from args[at] into w; false with the error replied.
bool ParseMpop(Ctx& c, size_t at, bool zset, BlockedPop* w);
/// A pop that never waits, as one kRun op at the command's place (LMOVE, LMPOP, ZMPOP, and the
/// blocking pops inside MULTI or a script).
void PopOnce(Ctx& c, std::shared_ptr<BlockedPop> w);
/// A blocking pop: one try now; when every key is empty the client waits in the registry.
void BlockingPop(Ctx& c, std::shared_ptr<BlockedPop> w);

/// A client served, and its reply (sent once the group that served it is durable).
struct ServedPop {
  std::shared_ptr<BlockedPop> waiter;
  ReplyWriter reply;
  std::function<void()> events;  // its keyspace events (TryBlockedPop)
  PropagatedCommand prop;        // what replicas get for it (TryBlockedPop)
  SlowLog* slowlog = nullptr;    // where its entry goes (SendReplies)
  int64_t serve_usec = 0;        // how long serving it took
};

/// A write that may serve blocked clients in its own op (a push, ZADD): replicas get its
/// arguments (or `as`, a rewrite: GEOADD's ZADD), then the pops it served (`served`, filled on the
/// writer), one after another; and should its group fail, they get its error
/// (ClientSession::ServesBlocked).
void PropagateServing(Ctx& c, std::shared_ptr<std::vector<ServedPop>> served,
                      std::span<const std::string_view> as = {});

class BlockingRegistry {
 public:
  explicit BlockingRegistry(ServerState& s) : server_(s) {}
  ~BlockingRegistry();
  BlockingRegistry(const BlockingRegistry&) = delete;
  BlockingRegistry& operator=(const BlockingRegistry&) = delete;

  /// Writer role, inside the try's kRun op: `w` waits on its keys (unless its client went, or this
  /// server is a read-only replica by now: then it ends as UnblockAll ends a wait).
  void Add(const std::shared_ptr<BlockedPop>& w);
  /// Writer role, inside the try's kRun op when it popped at once: the invalidations its own
  /// writes post to its client wait for its reply (ClientSession::ServedReplyComing), as Redis
  /// sends them after it. Nothing when the client went (Cancel).
  void ReplyComing(const std::shared_ptr<BlockedPop>& w);
  /// The client's I/O thread, when its session goes: the wait ends without a reply.
  void Cancel(const std::shared_ptr<BlockedPop>& w);
  /// CLIENT UNBLOCK: ends the wait of client `id` with the timeout's reply or an UNBLOCKED error;
  /// false when it is not blocked here.
  bool Unblock(uint64_t id, bool error);
  /// This server becomes a replica (Redis's disconnectAllBlockedClients): every waiting client
  /// gets `-UNBLOCKED force unblock from blocking operation, instance state changed (master ->
  /// replica?)` and its connection closes after it. Otherwise a push of the new primary's stream
  /// would serve it, popping on the replica alone (the two data sets then differ). Any thread.
  void UnblockAll();
  /// Clients waiting (INFO blocked_clients). Any thread.
  size_t blocked() const { return count_.load(std::memory_order_relaxed); }
  /// Whether any client ever blocked (the store then reports written keys). Any thread.
  bool used() const { return used_.load(std::memory_order_relaxed); }
  /// Writer role, inside the op that just pushed to `key` (LPUSH, RPUSH, LMOVE ...): serves the
  /// clients waiting on it, first come first served, in the same group — so every later command
  /// sees them served, as in Redis — and the lists their BLMOVEs push to, in turn. Appends them
  /// to *served; the caller sends the replies once the group is durable (SendReplies).
  void ServeNow(store::Txn& txn, uint32_t db, const std::string& key, std::vector<ServedPop>* served);
  /// Writer role, in the last op of an EXEC or of a script: serves, as ServeNow, the clients
  /// waiting on every key the group wrote from record `from` on (Txn::Written), in the order first
  /// written.
  void ServeWritten(store::Txn& txn, size_t from, std::vector<ServedPop>* served);
  /// Writer role, right after a SWAPDB of databases a and b: serves, as ServeNow, the clients
  /// waiting on a key of either (each now holds what the other database had).
  void ServeSwapped(store::Txn& txn, uint32_t a, uint32_t b, std::vector<ServedPop>* served);
  /// What replicas get for `first` (a command's own pop, when given) and then the pops of
  /// `served`, in order (writer role, once the group is durable).
  static std::vector<PropagatedCommand> Propagations(const std::vector<ServedPop>& served,
                                                     const PropagatedCommand* first = nullptr);
  /// The same, appended to *out (a Propagation's `late`).
  static void AppendPropagations(const std::vector<ServedPop>& served, std::vector<PropagatedCommand>* out,
                                 const PropagatedCommand* first = nullptr);
  /// Once the group that served them is durable, on the thread of the command that served them
  /// before its next command runs (any thread): their keyspace events and slow-log entries go now,
  /// as Redis's serving adds them before the next command; their replies go to their I/O threads.
  static void SendReplies(std::vector<ServedPop>& served, const store::Status& s);
  /// Options::on_written: marks the written keys that have clients waiting as ready; those of a
  /// batch that defers wake-ups (EXEC's) are held for its origin until Release.
  void OnWritten(std::span<const store::Options::WrittenKey> keys);
  /// Client `origin`'s EXEC has run every command (its I/O thread, after the steps): the keys its
  /// group wrote that clients wait on are ready now. Otherwise a client woken by the EXEC's push
  /// on another I/O thread could be served before the EXEC's later commands ran (a SLOWLOG RESET
  /// erased the served BLPOP's entry). Any thread; cheap when nothing is held.
  void Release(uint64_t origin);
  /// Options::on_swapdb: every key of databases a and b that has clients waiting is ready (each
  /// now holds what the other database had), as Redis's swapdb (scanDatabaseForReadyKeys).
  void OnSwapDb(uint32_t a, uint32_t b);
  /// Stops the thread (server shutdown); waiting clients get no reply.
  void Stop();

 private:
  static std::string Slot(uint32_t db, std::string_view key);
  void EnsureThread();  // holds mu_
  void Loop();
  void Serve(std::vector<std::pair<uint32_t, std::string>> ready);
  // Serves the waiters of each key of `keys` (and of the keys their moves push to) in the group.
  void ServeKeys(store::Txn& txn, std::vector<std::pair<uint32_t, std::string>> keys, std::vector<ServedPop>* served);
  void RemoveLocked(const std::shared_ptr<BlockedPop>& w);
  // Appends the keys the clients waiting in database a or b wait on (holds mu_; SWAPDB).
  void AddKeysOfDbsLocked(uint32_t a, uint32_t b, std::vector<std::pair<uint32_t, std::string>>* out) const;
  /// Sends `reply` (or the timeout's nil when null) to w's client and resumes it, on its I/O
  /// thread after the completions delivered there before (ClientSession::DeliverInOrder). Any
  /// thread.
  static void Finish(const BlockedPop& w, ReplyWriter reply);
  /// Posts kUnblockedByRoleChange to w's client, whose connection then closes (any thread).
  static void EndForRoleChange(const BlockedPop& w);

  ServerState& server_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<std::string, std::deque<std::shared_ptr<BlockedPop>>> by_key_;  // FIFO per key
  std::unordered_map<uint64_t, std::shared_ptr<BlockedPop>> by_client_;
  std::multimap<int64_t, std::shared_ptr<BlockedPop>> deadlines_;
  std::vector<std::pair<uint32_t, std::string>> ready_;
  // Keys written by an EXEC still running its commands, by its client (Release).
  std::unordered_map<uint64_t, std::vector<std::pair<uint32_t, std::string>>> held_;
  std::atomic<bool> any_held_{false};  // !held_.empty(), read without the lock
  std::atomic<size_t> count_{0};
  std::atomic<bool> used_{false};
  bool stop_ = false;
  std::thread thread_;
};

/// The body of a list or sorted set command's kRun op on the writer (writer role): opens the `Edit`
/// (ListEdit, ZsetEdit) of `key`, lets `change` edit it (false: leave it as it is) and commits; an
/// error met meanwhile is res.error and nothing is written. With `serve`, the clients blocked on
/// the key are served in the same group (a push, ZADD). `Res` has error, exists, deleted, served.
template <class Edit, class Res, class Change>
void EditThenServe(store::Txn& txn, ServerState& server, BlockingRegistry* serve, uint32_t db,
                   const std::string& key, Res& res, Change&& change) {
  Edit e(txn, server, db, key);
  if (!e.Open()) {
    res.error = e.error();
    return;
  }
  res.exists = e.exists();
  const bool changed = change(e, res);
  if (!e.error().empty()) {
    res.error = e.error();
    return;
  }
  if (!changed) return;
  e.Commit();
  res.deleted = e.deleted();
  if (serve != nullptr) serve->ServeNow(txn, db, key, &res.served);
}

}  // namespace keg::server
