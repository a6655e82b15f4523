// The command table: every command is data — name, arity, flags, key positions, handler.
//
// Handlers run on the connection's I/O thread with a Ctx. A read command replies at once through
// ctx.out(). A write command (kWrite) adds ops to the connection's write batch and registers a
// finisher with ctx.Then(); the finisher writes the reply once the batch is durable, in request
// order. Inside EXEC, read commands run at the end against values captured at their place in the
// transaction's batch (see ClientSession), so they see the transaction's earlier writes.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "resp/reply_buffer.h"
#include "store/store.h"

namespace keg::server {

struct AclUser;
struct PropagatedCommand;
class ClientSession;
struct Command;
struct ServerState;

enum CommandFlag : uint32_t {
  kWrite = 1 << 0,     ///< joins the connection's write batch; replies once it is durable
  kReadOnly = 1 << 1,  ///< reads keys
  kFast = 1 << 2,
  kNoAuth = 1 << 3,    ///< allowed before AUTH
  kAdmin = 1 << 4,
  kNoMulti = 1 << 5,   ///< refused inside MULTI (Redis's no-multi: SAVE, SHUTDOWN, ...)
  kMultiControl = 1 << 6,  ///< runs at once inside MULTI instead of being queued (MULTI, EXEC,
                           ///< DISCARD, WATCH, QUIT, RESET, as Redis's processCommand)
  kNoTouch = 1 << 7,   ///< reads its keys without updating their access time (TTL, TYPE, OBJECT)
  kMovableKeys = 1 << 8,  ///< keys are not only at first/last/step (COMMAND INFO "movablekeys")
  kNoScript = 1 << 9,  ///< refused from scripts (Redis's noscript, and what touches the connection)
  kAllowBusy = 1 << 10,  ///< runs while a script is busy (Redis's allow-busy); others get -BUSY
  kBlocking = 1 << 11,   ///< may block (BLPOP ...): runs once the connection's pending batch is durable
  kStale = 1 << 12,      ///< served by a replica whose primary link is down even with
                         ///< replica-serve-stale-data no (Redis's stale); set from kStaleCommands
  kRunsScript = 1 << 13, ///< EVAL*, FCALL*: may write, but what a replica or min-replicas-to-write
                         ///< refuses is decided from the script's flags (Redis's scriptPrepareForRun)
  kMayReplicate = 1 << 14,  ///< writes nothing but goes to replicas (PUBLISH, SPUBLISH: Redis's
                            ///< may-replicate): a read-only script may not run it
  kNoAsyncLoading = 1 << 15,  ///< refused (-LOADING) while a replica loads a full sync (Redis's
                              ///< no-async-loading: SYNC, SAVE, ...; not REPLICAOF, which keg
                              ///< takes then: it interrupts the load, which changes nothing)
  kWritesCache = 1 << 16,  ///< with kWrite: a read whose only write is a cache of what it read
                           ///< (PFCOUNT's cardinality in its key's header). It joins the write
                           ///< batch (in order, propagated when it wrote), but a read-only replica
                           ///< runs it, min-replicas-to-write does not refuse it, and COMMAND
                           ///< shows it readonly, as Redis's
  // Redis's flags that COMMAND shows and that change nothing in keg but kSkipSlowlog's (kLoading
  // and kDenyOom set from lists in commands_server.cc, as Redis 7.0's src/commands/*.json):
  kLoading = 1 << 17,     ///< "loading": Redis serves it while loading its data (keg serves every
                          ///< command once it listens, and during a replica's load all but kNoAsyncLoading's)
  kDenyOom = 1 << 18,     ///< "denyoom": Redis refuses it past maxmemory (keg's maxmemory is 0)
  kPubsub = 1 << 19,      ///< "pubsub"
  kSkipMonitor = 1 << 20, ///< "skip_monitor": EVAL*, FCALL* (Redis feeds MONITOR for them itself)
  kSkipSlowlog = 1 << 21, ///< "skip_slowlog": EXEC (the slow log has its commands, not it)
  kNoMandatoryKeys = 1 << 22,  ///< "no_mandatory_keys": EVAL*, FCALL* (numkeys may be 0)
  kWakes = 1 << 23,  ///< may make a key a non-empty list or sorted set without serving the clients
                     ///< blocked on it itself (RENAME, COPY, MOVE, SWAPDB, RESTORE, SORT STORE, the
                     ///< STORE forms): they are served in its group, right after it (as Redis
                     ///< serves them before the next command). Pushes and ZADD serve in their op.
  // Every command that is not kWrite runs only once the connection's pending batch is durable.
};

/// A finished op range of the batch: the results of the ops this command added.
using Finisher = store::InlineFunction<void(std::span<store::OpResult> results, resp::ReplyBuffer& out)>;

/// A command run by a script's redis.call: on the writer thread, against the group being built
/// (see scripting.h). The handler's ops go to `batch` and run through `txn` right after it
/// returns; its reads see the group's earlier writes.
struct DirectRun {
  store::Txn* txn = nullptr;
  store::WriteBatch batch;
  Finisher finisher;          ///< set by Ctx::Then
  std::string failure;        ///< set by Ctx::Fail
  bool failed = false;
  uint32_t db = 0;            ///< the script's selected database (SELECT in a script changes it)
  /// The script caller's user (the ScriptRun holds it), for handlers with ACL rules of their own
  /// (SORT's BY / GET); null: no restriction.
  const AclUser* user = nullptr;
  uint64_t hits = 0;          ///< keyspace hits and misses of its reads
  uint64_t misses = 0;
  /// Ready for the next command; the batch keeps its capacity (a script reuses one DirectRun).
  void Reset(store::Txn* for_txn) {
    txn = for_txn;
    batch.mutable_ops().clear();
    finisher = nullptr;
    failure.clear();
    failed = false;
    hits = 0;
    misses = 0;
  }
};

/// What a queued read command of an EXEC sees of one of its keys: the value as it was at the
/// command's place in the transaction, or the failure of that read (a record or element that fails
/// its check is the command's error, never taken for a missing key). Keyed by Ctx::SnapshotKey.
struct SnapshotEntry {
  store::Status status;
  store::ValueView view;
};
using Snapshot = std::unordered_map<std::string, SnapshotEntry>;

class Ctx {
 public:
  Ctx(ServerState& server, ClientSession& client, std::span<const std::string_view> args,
      resp::ReplyBuffer& out, const Snapshot* snapshot, DirectRun* direct = nullptr);

  ServerState& server() { return server_; }
  ClientSession& client() { return client_; }
  std::span<const std::string_view> args() const { return args_; }
  std::string_view arg(size_t i) const { return args_[i]; }
  size_t argc() const { return args_.size(); }

  /// Read commands: the reply buffer.
  resp::ReplyBuffer& out() { return out_; }
  /// The database this command acts in: the connection's (SELECT), a script's own, or the one a
  /// command queued in MULTI had at its place.
  uint32_t db() const;
  /// SELECT: the database later commands act in (the connection's, or a script's).
  void SelectDb(uint32_t db);
  /// Fixes db() for this command (a step of EXEC run after later SELECTs).
  void set_db(uint32_t db) { db_override_ = static_cast<int64_t>(db); }
  /// The key of an EXEC snapshot entry: the database index and the key.
  static std::string SnapshotKey(uint32_t db, std::string_view key);

  /// Reads a key (from the store, or from the EXEC snapshot). OK, NotFound or Corruption.
  store::Status Get(std::string_view key, store::ValueView* view);
  /// Counts a keyspace hit or miss and reads. False when absent, and also when the key's record
  /// is corrupt: then read_failed() is true and the handler must reply ReplyReadError() instead
  /// of its answer (a corrupt value is never served, nor taken for a missing key).
  bool Lookup(std::string_view key, store::ValueView* view);
  /// Lookup of several keys that sees them together (all of a batch's writes or none: MGET, LCS,
  /// EXISTS): found[i] and views[i] for keys[i].
  void LookupTogether(std::span<const std::string_view> keys, std::vector<store::ValueView>* views,
                      std::vector<bool>* found);
  /// Runs `reads` (Get calls of `keys` keys) so that they see the store together
  /// (store::Store::ReadTogether; with one key a Get alone already does); `reads` may run more
  /// than once and must only collect.
  void ReadTogether(size_t keys, store::FunctionRef<void()> reads);
  bool read_failed() const { return !read_error_.ok(); }
  /// The accounting LookupTogether does for one key read by a handler's own Get: counts a hit or
  /// miss, keeps a read error (WRONGTYPE included), sends keymiss. True when found.
  bool AccountRead(store::Status s, std::string_view key);
  /// Large collections (a head's incarnation, docs/types.md), read as Get reads: through a
  /// script's Txn (its group's writes included), or from the store. (EXEC's snapshot holds such a
  /// collection whole: its handlers never get here.)
  store::Status GetElement(uint64_t inc, std::string_view member, store::ValueView* out);
  uint64_t ElementCount(uint64_t inc);
  /// store::Store::GetElements, or (in a script) GetElement of each through its Txn.
  store::Status GetElements(uint64_t inc, std::span<const std::string_view> members,
                            std::vector<std::string_view>* values, std::vector<std::shared_ptr<const void>>* pins);
  store::Status ReadElements(uint64_t inc, std::vector<store::ElementView>* out,
                             std::vector<std::shared_ptr<const void>>* pins);
  /// HSCAN / SSCAN of a large collection (in a script: all of it at once, cursor 0).
  uint64_t ScanElements(uint64_t inc, uint64_t cursor, size_t count,
                        const std::function<void(std::string_view member, std::string_view value)>& fn);
  /// The command being run (its value_type decides WRONGTYPE); set by whoever runs the handler.
  void set_command(const Command* cmd) { cmd_ = cmd; }
  const Command* command() const { return cmd_; }
  /// The reply must be written now, not later from another thread: inside EXEC or a script (run by
  /// redis.call on the writer thread, where the handler must not touch client(): commands that
  /// would are kNoScript).
  bool inline_only() const;
  /// A write command may answer from a read made now, as a read command would at this point:
  /// nothing of the connection's is pending before it, and it runs in neither EXEC nor a script.
  bool may_answer_from_read() const;
  /// Run by a script's redis.call (on the writer thread, or inline on the leader's): client() is
  /// not the caller's connection to touch.
  bool in_script() const { return direct_ != nullptr; }
  /// The user whose permissions the command runs with: the connection's, or in a script its
  /// caller's (null: unrestricted).
  const AclUser* acl_user() const;
  /// A script's Txn (its group being built), or null outside scripts.
  store::Txn* script_txn() const;
  void ReplyReadError();

  /// Write commands: the batch to add ops to, and the finisher of this command.
  store::WriteBatch& batch();
  void Then(Finisher fn);
  /// Write commands: an error reply in this command's place (no ops are added).
  void Fail(std::string text);

  /// Write commands: the keyspace event `event` of class `cls` about `key` (notify-keyspace-
  /// events), sent when the op added last (or `ops_back` before it) is applied — for kNotifyNew,
  /// only when its key did not exist before it; for kNotifyKeyMiss (a command that reads its key
  /// as it writes: GETDEL, SET GET), when the key was absent. Call after adding that op and before
  /// Then(); events go out before the command's reply, in the order they were declared. One atomic
  /// load when the class is off.
  /// The event names database `db` (-1: db(); COPY ... DB names its target's).
  void Notify(uint32_t cls, std::string_view event, std::string_view key, size_t ops_back = 0, int64_t db = -1);
  /// The same, sent now (for what happened already: a read's miss, an EXEC-time effect).
  void NotifyNow(uint32_t cls, std::string_view event, std::string_view key);

  /// Any command: an error reply in this command's place.
  void Error(std::string_view text);

  // Replication (replication.h): by default a write command propagates its own arguments when
  // one of its ops applied. These say otherwise; each is a relaxed load when no replica attached.
  /// Whether what this command propagates is recorded (a replica is attached); handlers build a
  /// rewrite only then.
  bool propagating() const;
  /// Propagates `args` (a deterministic form: PEXPIREAT for EXPIRE ...) instead.
  void PropagateAs(std::span<const std::string_view> args);
  void PropagateAs(std::initializer_list<std::string_view> args) {
    PropagateAs(std::span<const std::string_view>(args.begin(), args.size()));
  }
  /// What it propagates is known only once its ops ran (SPOP's members, a script's effects):
  /// `late` runs on the writer with the command's op results (Propagation::late).
  /// `transaction`: several commands it gives go in MULTI ... EXEC (a script's effects).
  void PropagateLate(std::function<void(std::span<const store::OpResult>, std::vector<PropagatedCommand>*)> late,
                     bool transaction = false);
  bool propagated_transaction() const { return prop_transaction_; }
  /// Commands that follow what the command propagates, outside the transaction `late` forms (the
  /// pops of the clients a script served: Redis propagates them after the script's MULTI ... EXEC).
  /// Run on the writer as `late` is.
  void PropagateAfter(std::function<void(std::vector<PropagatedCommand>*)> after) {
    if (propagating()) prop_after_ = std::move(after);
  }
  std::function<void(std::vector<PropagatedCommand>*)>& propagated_after() { return prop_after_; }
  /// Propagated even when none of its ops changed anything (FLUSHDB / FLUSHALL of empty
  /// databases, which Redis 7 always propagates).
  void PropagateAlways() { prop_always_ = true; }
  bool propagated_always() const { return prop_always_; }
  /// What was asked, for whoever runs the handler: 0 its arguments, 1 `prop_args_`, 2 `prop_late_`.
  int propagation_mode() const { return prop_mode_; }
  std::string& propagated_resp() { return prop_resp_; }
  std::function<void(std::span<const store::OpResult>, std::vector<PropagatedCommand>*)>& propagated_late() {
    return prop_late_;
  }

  /// Inside EXEC, for a command that reads the whole keyspace (Command::keyspace): the keyspace
  /// as its ReadKeys op read it at its place in the transaction. Null otherwise.
  const store::OpResult* keyspace() const { return keyspace_; }
  void set_keyspace(const store::OpResult* r) { keyspace_ = r; }


 private:
  // Lookup's accounting of one read's outcome: counts a hit or miss, keeps a read error.
  bool Account(store::Status s);
  ServerState& server_;
  ClientSession& client_;
  std::span<const std::string_view> args_;
  resp::ReplyBuffer& out_;
  const Snapshot* snapshot_;
  size_t first_op_;  // the batch's size when this command started
  store::Status read_error_;
  const store::OpResult* keyspace_ = nullptr;
  DirectRun* direct_ = nullptr;
  int64_t db_override_ = -1;  // set_db
  int prop_mode_ = 0;         // PropagateAs / PropagateLate
  bool prop_transaction_ = false;
  bool prop_always_ = false;
  std::string prop_resp_;
  std::function<void(std::span<const store::OpResult>, std::vector<PropagatedCommand>*)> prop_late_;
  std::function<void(std::vector<PropagatedCommand>*)> prop_after_;
  const Command* cmd_ = nullptr;
  // Events waiting for their ops' results (Notify), handed to the finisher by Then.
  struct Note {
    uint32_t cls;
    std::string_view event;  // a literal
    std::string key;
    size_t op;               // among this command's ops
    uint32_t db;
  };
  std::vector<Note> notes_;
};

/// Keyspace events of a command that writes a string: `new` when it creates the key, then `event`
/// ($) and, with `expire`, `expire` (g) — what Redis's setKey and setExpire send.
void NotifyStringWrite(Ctx& c, std::string_view key, std::string_view event, bool expire = false);
/// `key`, copied, when events of class `cls` are on (for a finisher that decides its event once
/// the op ran); nullopt otherwise.
std::optional<std::string> NotifyKey(Ctx& c, uint32_t cls, std::string_view key);

using Handler = void (*)(Ctx&);

/// INFO commandstats of one command or subcommand. Thread: any.
///
/// Counting is on every command's path, so it takes no locked instruction: each thread that counts
/// owns a shard of its own (the first kShards - 1 threads to count; later ones share the last
/// shard, with atomic adds) and bumps it with a plain load and store. Readers sum the shards.
/// Reset() does not write the shards (an owner's load/store could undo it): it records the sums
/// as a baseline that reads subtract.
class CommandStats {
 public:
  /// Latency histogram (LATENCY HISTOGRAM, INFO latencystats): bucket 0 counts calls of at most
  /// 1 µs, bucket i > 0 those in (2^(i-1), 2^i] µs.
  static constexpr size_t kBuckets = 40;

  struct Totals {
    uint64_t calls = 0;
    uint64_t nsec = 0;            ///< time in the handler (INFO shows µs: sub-µs calls add up)
    uint64_t rejected_calls = 0;  ///< refused before running (arity, NOAUTH, MULTI)
    uint64_t failed_calls = 0;    ///< ran and replied an error
    uint64_t latency[kBuckets] = {};
    bool any() const { return calls != 0 || rejected_calls != 0 || failed_calls != 0; }
    /// The upper bound in µs of the bucket holding the `p`-th percentile (0 < p <= 100), or 0.
    double Percentile(double p) const;
  };

  /// A call that ran for `nsec`; its latency goes to the histogram when `histogram`.
  void AddCall(uint64_t nsec, bool histogram);
  void AddRejected();
  void AddFailed();
  /// Since the last Reset(); each counter exact as of some moment during the call.
  Totals Read() const;
  void Reset();

 private:
  static constexpr size_t kShards = 8;
  struct alignas(64) Shard {
    std::atomic<uint64_t> calls{0};
    std::atomic<uint64_t> nsec{0};
    std::atomic<uint64_t> rejected_calls{0};
    std::atomic<uint64_t> failed_calls{0};
    std::atomic<uint64_t> latency[kBuckets] = {};
  };
  Totals Sum() const;
  Shard shards_[kShards];
  mutable std::mutex mu_;  // guards base_
  Totals base_;
};

struct Command {
  std::string_view name;  ///< lower case
  int arity;              ///< Redis's: N exact (name included), -N at least N
  uint32_t flags;
  int first_key;  ///< 0: no keys
  int last_key;   ///< -1: the last argument
  int key_step;
  Handler handler;
  std::string_view acl_categories;  ///< for COMMAND INFO, e.g. "@write @string @slow"
  std::vector<Command> subcommands = {};
  CommandStats* stats = nullptr;  ///< set by the table (lives as long as the process)
  /// Commands that read the whole keyspace (DBSIZE, KEYS, SCAN, RANDOMKEY): what they read, for
  /// EXEC to place a ReadKeys op at the command's place in the transaction. Returns false when the
  /// arguments are invalid (the handler then replies the error). Null for every other command.
  bool (*keyspace)(std::span<const std::string_view> args, store::KeysQuery* query) = nullptr;
  /// Index of this command or subcommand among all of them (ACL permissions); set by the table.
  uint32_t id = 0;
  /// What the command reads of a large hash or set at each of its keys, for the cold-read check
  /// before it runs (docs/types.md: a large collection's elements are records of their own): the
  /// elements its arguments name from first_member on, every member_step-th (HGET, HMGET, HSET,
  /// SADD ...), every element with kAllElements (HGETALL, SMEMBERS, SINTER ...), the slice its
  /// cursor names with kScanElements (HSCAN, SSCAN), a list's range with kListRange (LRANGE,
  /// LINDEX); 0: the head record alone (HLEN, SCARD, DEL),
  /// or elements it cannot name before it runs (SPOP's, SRANDMEMBER's and HRANDFIELD's random
  /// picks: those may fault on the event loop).
  int first_member = 0;
  int member_step = 1;
  /// A command on values of one type (store::format::ValueType: the string and bit commands, the
  /// hash commands ...): its reads (Ctx::Lookup) and its read-modify-write ops refuse a key of
  /// another type with WRONGTYPE. -1: any type (DEL, EXPIRE, RENAME ...).
  int value_type = -1;
};

/// Command::first_member of a command that reads every element of a large collection.
inline constexpr int kAllElements = -1;
/// Command::first_member of HSCAN / SSCAN: the slice from the cursor (args[2]) they read.
inline constexpr int kScanElements = -2;
/// Command::first_member of LRANGE / LINDEX: a list's elements from index args[2] to args[3]
/// (LINDEX: args[2] alone).
inline constexpr int kListRange = -3;

/// The distinct members `cmd` names in `args` (Command::first_member / member_step), in no
/// particular order; none for a command that names none or reads every element.
std::vector<std::string_view> MemberArguments(const Command& cmd, std::span<const std::string_view> args);
/// What `cmd` with `args` reads of a large collection at its key(s) (Command::first_member): for
/// the cold-read check. Empty for a command that reads no element, or whose arguments are invalid.
store::ElementSelection ElementsRead(const Command& cmd, std::span<const std::string_view> args);

/// The table, looked up case-insensitively. Thread: any (immutable after start).
const Command* FindCommand(std::string_view name);
const std::vector<Command>& AllCommands();
/// Number of command ids (commands and subcommands).
size_t CommandIdCount();
const Command* FindSubcommand(const Command& parent, std::string_view name);

// Handlers, by file.
void RegisterStringCommands(std::vector<Command>* table);   // commands_string.cc
void RegisterKeyCommands(std::vector<Command>* table);      // commands_key.cc
void RegisterServerCommands(std::vector<Command>* table);   // commands_server.cc
void RegisterConnectionCommands(std::vector<Command>* table);  // commands_connection.cc
void RegisterDebugCommands(std::vector<Command>* table);       // commands_debug.cc
/// DEBUG DIGEST's value: Redis's dataset digest (xor over keys of mix(key) then the value's digest,
/// after mixing in the database number), so the same data gives the same digest in keg and in
/// Redis; 40 hex digits. Any thread (it reads through the store).
std::string DatasetDigest(store::Store& st);
void RegisterBitCommands(std::vector<Command>* table);         // commands_bit.cc
void RegisterMigrateCommands(std::vector<Command>* table);     // commands_migrate.cc
void RegisterAclCommands(std::vector<Command>* table);         // commands_acl.cc
void RegisterScriptCommands(std::vector<Command>* table);      // commands_script.cc
void RegisterPubsubCommands(std::vector<Command>* table);      // commands_pubsub.cc
void RegisterHashCommands(std::vector<Command>* table);        // commands_hash.cc
void RegisterSetCommands(std::vector<Command>* table);         // commands_set.cc
void RegisterListCommands(std::vector<Command>* table);        // commands_list.cc
void RegisterZsetCommands(std::vector<Command>* table);        // commands_zset.cc
void RegisterSortCommands(std::vector<Command>* table);        // commands_sort.cc
void RegisterGeoCommands(std::vector<Command>* table);         // commands_geo.cc
void RegisterHllCommands(std::vector<Command>* table);         // commands_hll.cc
void RegisterReplicationCommands(std::vector<Command>* table);  // commands_replication.cc

/// Shared error texts (Redis 7.0's).
namespace err {
inline constexpr std::string_view kSyntax = "syntax error";
inline constexpr std::string_view kNotInteger = "value is not an integer or out of range";
inline constexpr std::string_view kNotFloat = "value is not a valid float";
inline constexpr std::string_view kOverflow = "increment or decrement would overflow";
inline constexpr std::string_view kNoSuchKey = "no such key";
inline constexpr std::string_view kTooBig = "string exceeds maximum allowed size (proto-max-bulk-len)";
inline constexpr std::string_view kWrongType = "-WRONGTYPE Operation against a key holding the wrong kind of value";
}  // namespace err

std::string WrongArity(std::string_view name);
/// Redis's string2ld: the whole string, no spaces, no NaN (INCRBYFLOAT, HINCRBYFLOAT).
bool ParseLongDouble(std::string_view s, long double* out);
/// Redis's ld2string(LD_STR_HUMAN): %.17Lf without trailing zeros.
std::string FormatLongDouble(long double v);
/// An int argument as Redis's getIntFromObjectOrReply reads it: the error text (`msg` when given,
/// else Redis's own for a non-number and for one outside the int range), or empty with *out set.
std::string ParseIntArgument(std::string_view arg, std::string_view msg, int32_t* out);
/// "unknown subcommand or wrong number of arguments for '<sub>'. Try <CMD> HELP."
std::string SubcommandSyntaxError(Ctx& c);
/// A HELP reply in Redis's layout: "<CMD> <subcommand> ...", the lines, then HELP's own.
void Help(Ctx& c, std::initializer_list<std::string_view> lines);
/// The argument positions of the keys of `cmd` (a subcommand counts from the parent's name) for
/// `argc` arguments, from its first/last/step. False when the command takes no keys.
bool KeyPositions(const Command& cmd, size_t argc, std::vector<size_t>* out);
std::string ToLower(std::string_view s);
std::string ToUpper(std::string_view s);
/// Redis's encoding of a string value: "int", "embstr" (<= 44 bytes) or "raw".
std::string_view StringEncoding(std::string_view value);
/// Redis's name of a value's encoding (OBJECT ENCODING): a string's, or a collection's (listpack
/// while stored within its thresholds, else hashtable ...).
std::string_view ValueEncoding(const store::ValueView& v);
/// TYPE's answer for a store::format::ValueType.
std::string_view TypeName(uint8_t type);
bool EqualsIgnoreCase(std::string_view a, std::string_view b);
/// Redis's reply for a storage failure: "-MISCONF Errors writing to the AOF file: <why>".
std::string StorageError(const store::Status& s);
/// The reply for an op that could not read its value: "ERR Corruption: <file> at offset <n>: ..." for
/// a record that fails its checksum, WRONGTYPE for a value of another type.
std::string CorruptionError(const store::Status& s);
/// Which arguments of a command line are secrets that SLOWLOG and MONITOR show as "(redacted)",
/// as Redis: AUTH's, HELLO ... AUTH's username and password, MIGRATE's AUTH / AUTH2 ones.
std::vector<bool> RedactedArguments(std::span<const std::string_view> args);
/// For a command that replies once the store is done (SAVE, DEBUG RELOAD): suspends the client
/// and returns the callback to give the store; it replies +OK or the storage error in the
/// command's place, on the connection's I/O thread. Call from the handler.
std::function<void(const store::Status&)> ReplyOkWhenDone(Ctx& c);
/// The command or subcommand whose stats a call counts (CLIENT LIST counts as client|list).
const Command& StatsTarget(const Command& cmd, std::span<const std::string_view> args);

}  // namespace keg::server
