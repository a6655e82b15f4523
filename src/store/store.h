// keg's storage engine: a Bitcask — an append-only log of records in data files, an in-memory
// keydir from key to its newest record, values read through memory maps without a copy.
//
//   keg::store::Options options;
//   options.dir = "./data";
//   std::unique_ptr<Store> store;
//   Status s = Store::Open(options, &store);            // recovers the directory
//   WriteBatch batch;
//   batch.Put("k", "v");
//   store->Write(std::move(batch), [](const Status& s, std::vector<OpResult> results) {...});
//   ValueView v;
//   if (store->Get(0, "k", &v).ok()) use(v.value);       // a pinned view into the mapped file
//
// Databases: every key lives in one of Options::databases databases, named by their index as
// clients name them (SELECT); reads and ops say which (`db`, WriteBatch::SelectDb). Internally
// each is one keydir, reached through a map that SWAPDB permutes (docs/types.md).
//
// Threads:
// - Get / Exists / Stats: any thread, concurrently with writes and compaction.
// - Write: any thread; batches join the single-writer queue. One writer thread takes everything
//   queued, appends it with one write, applies appendfsync (group commit), updates the keydir, and
//   then runs each batch's callback — on the writer thread. A callback must be quick and must not
//   call Write/WriteAll/WriteSync: the server's posts the result back to the connection's I/O thread.
// - WriteAll: when the writer is idle and nothing is queued, the calling thread takes the writer
//   role and does all of the above itself (under `always` the fdatasync too), callbacks included,
//   before WriteAll returns (no hand-off: an unpipelined write costs no thread switch). Only one
//   thread holds the role at a time, so writes stay serialized either way. A kRun function may
//   run long on the caller's thread this way; if it lets that thread run other work meanwhile
//   (the server's busy scripts do), a WriteAll made by that work queues for the writer thread,
//   behind the group.
// - Compaction and hint files are written by a background thread; results are installed by the
//   writer thread so a newer write is never overwritten.
// - Close (or the destructor) stops both threads after the queue drains.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "store/function_ref.h"
#include "store/inline_function.h"
#include "store/status.h"

namespace keg::store {

/// Redis's appendfsync policies.
enum class FsyncPolicy : uint8_t {
  kAlways,    ///< a write is acknowledged only after the fdatasync that covers it
  kEverySec,  ///< fdatasync once a second in the background
  kNo,        ///< the OS writes back when it likes (sealed files are still synced)
};

struct Options {
  std::string dir = "./data";
  /// Recovery keeps the keys it finds expired (else it drops them, no DEL for anyone), and the
  /// store starts with expiry paused (SetExpiryPaused): a replica keeps them for its primary's
  /// DELs, a primary drops them with ExpireAllDue once its replication history is back, so that
  /// their DELs reach its backlog (as Redis's primary skips expired keys while loading its RDB
  /// and feeds their DELs to its backlog).
  bool keep_expired_at_open = false;
  FsyncPolicy fsync = FsyncPolicy::kEverySec;
  /// A data file is sealed and a new one started when a write would take it past this size.
  uint64_t max_file_size = 256ull * 1024 * 1024;
  /// Verify each record's CRC on every read (a corrupt value is an error, never returned).
  bool verify_checksums = true;

  // Compaction (Riak's names and defaults, as fractions and bytes).
  bool auto_compaction = true;
  /// A sealed file this fragmented (dead / total) starts a compaction ...
  double frag_merge_trigger = 0.6;
  /// ... or one with this many dead bytes.
  uint64_t dead_bytes_merge_trigger = 512ull * 1024 * 1024;
  /// Compaction writes at most this many bytes per second (0: no limit).
  uint64_t compaction_rate_limit = 0;
  /// Records a compaction copies before it installs them and retires the inputs read to the end
  /// (a round): what bounds its memory, 32 bytes each (1M: 32 MiB, whatever the number of keys).
  size_t compaction_max_moves = size_t{1} << 20;
  /// How often the background thread looks for work (hint files, triggers), in milliseconds.
  uint32_t background_interval_ms = 1000;

  /// Seed of the keydir's hash secret; 0 picks a random one (the default, against hash flooding).
  uint64_t hash_seed = 0;

  /// Number of databases (Redis's `databases`), 1 to 256.
  uint32_t databases = 16;

  /// Called once per applied group, while Store::ReportWrites is on, with the key of every record
  /// the group wrote (in order, a key once per record) and the origin of its batch; `flush_all` for
  /// a FLUSHALL record (no key). After the group is visible, before any of its batches' callbacks.
  /// Thread: the writer role's holder; it must not call back into the store. CLIENT TRACKING.
  struct WrittenKey {
    uint64_t origin;
    std::string_view key;
    bool flush_all;  ///< FLUSHALL or FLUSHDB
    /// The database of the record as clients name it (blocking pops wake per database): through
    /// the map SWAPDB changes, as the group left it.
    uint32_t db;
    bool deferred;   ///< its batch defers wake-ups (WriteBatch::set_defers_wakes)
    /// Its place in the group as Txn::Written counts it: the record's index among the group's
    /// records (SWAPDB's, not reported, included); for a touched key (Txn::Touch), the number of
    /// records before it. A read placed at Txn::Written() == n came before the entries whose
    /// `record` is n or more.
    size_t record = 0;
  };
  std::function<void(std::span<const WrittenKey> keys)> on_written;
  /// Called for each SWAPDB record of an applied group (the two databases, as the batch named
  /// them), after the group is visible, before any of its batches' callbacks: clients blocked on
  /// a key of either may now be served. Thread: the writer role's holder; it must not call back
  /// into the store.
  std::function<void(uint32_t a, uint32_t b)> on_swapdb;

  /// Called with the database and key of each record dropped because it expired (by the expire
  /// cycle, or after a read found it expired), while Store::NameExpiredKeys is on (keyspace
  /// notifications' `expired`). Thread: the writer role's holder; it must not call back into the
  /// store.
  std::function<void(uint32_t db, std::string_view key)> on_expired;

  /// Called with the database and key of each record a group replaced (with a new value or a
  /// tombstone) whose expiry had passed at the group's time — a write over a key whose TTL ended
  /// before the expire cycle dropped it — while Store::NameExpiredKeys is on, before the batches'
  /// callbacks: Redis deletes such a key when the write looks it up and sends `expired` before the
  /// write's own event. Not for the records of a batch that sees expired keys (a replica's
  /// stream). Once per replaced record. Thread: the writer role's holder; it must not call back
  /// into the store.
  std::function<void(uint32_t db, std::string_view key)> on_expired_replaced;

  /// Called with the database and key of each expired record an op of a group found as its key's
  /// current value (the op then acts as if the key were absent), while Store::ReportExpiredInGroups
  /// is on: a replica, which does not expire keys itself, must get a DEL for it before the write
  /// (replication). The key is not dropped by this; a key may be reported more than once. Thread:
  /// the writer role's holder; it must not call back into the store.
  std::function<void(uint32_t db, std::string_view key)> on_expired_in_group;
};

/// A value read from the store: a view into a memory-mapped data file, with a pin that keeps the
/// mapping alive as long as this object (or a copy of `pin`) lives. Cheap to move; copying copies
/// the pin (an atomic increment), never the bytes.
struct ValueView {
  std::shared_ptr<const void> pin;
  std::string_view value;
  int64_t expire_at_ms = 0;  ///< 0: no expiry
  uint8_t type = 0;          ///< format::ValueType: what `value` encodes (0: a string)
  /// format::RecordKind: kKindHead when `value` is a large collection's incarnation (its elements
  /// are read with GetElement and friends, docs/types.md); kKindWhole otherwise.
  uint8_t kind = 0;
};

/// One element of a large collection (Store::ReadElements): views into records kept mapped by the
/// pins the call returned.
struct ElementView {
  std::string_view member;
  std::string_view value;  ///< a hash field's value; empty for a set member
};

/// One key of Store::VisitSnapshot: views valid during the visit's call.
struct SnapshotItem {
  uint32_t db = 0;  ///< the logical database
  std::string_view key;
  ValueView value;  ///< type, kind, expiry; a head's value is its incarnation
  /// A large collection's elements (value.kind == kKindHead): a list's in order, its meta element
  /// left out; a sorted set's values are their 8-byte scores.
  std::vector<ElementView> elements;
};

/// A large sorted set's members in order (docs/types.md, "Sorted sets"): by score, then member
/// bytes. Lent to a function by Store::ReadOrdered / Txn::ReadOrdered, valid during the call; one
/// consistent state of the collection. Positions are 0-based ranks.
class OrderedView {
 public:
  struct Item {
    double score = 0;
    std::string_view member;  ///< valid during the ReadOrdered call
  };
  /// One entry as a search sees it: its score, and its member read on demand (a record read, so
  /// a predicate that can decide from the score alone should).
  class Probe {
   public:
    Probe(const OrderedView& view, double score, uint64_t loc, bool for_compare = false)
        : view_(view), score_(score), loc_(loc), for_compare_(for_compare) {}
    double score() const { return score_; }
    std::string_view member() const { return for_compare_ ? view_.CompareMember(loc_) : view_.MemberAt(loc_); }

   private:
    const OrderedView& view_;
    double score_;
    uint64_t loc_;
    bool for_compare_;
  };
  using Before = FunctionRef<bool(const Probe&)>;

  virtual uint64_t Size() const = 0;
  /// The number of leading members for which `before` holds (true for a prefix of the order,
  /// false after it): O(log n) calls.
  virtual uint64_t PartitionPoint(Before before) const = 0;
  /// The number of leading members scored below `score` (at most `score` when `inclusive`): a
  /// PartitionPoint on scores alone, which a view may answer without a call per comparison.
  virtual uint64_t CountBelow(double score, bool inclusive) const {
    return PartitionPoint([&](const Probe& p) { return inclusive ? p.score() <= score : p.score() < score; });
  }
  /// Calls fn for the members at positions [from, to) in order while it returns true.
  virtual void ForRange(uint64_t from, uint64_t to, FunctionRef<bool(const Item&)> fn) const = 0;
  /// Finds `member`: true with its score and position.
  virtual bool Find(std::string_view member, double* score, uint64_t* pos) const = 0;
  /// The first failure of a record read by this view (Corruption naming file and offset); its
  /// member then read as empty.
  virtual const Status& error() const = 0;

 protected:
  ~OrderedView() = default;
  /// The member at `loc`, its record checked as any read (an item served).
  virtual std::string_view MemberAt(uint64_t loc) const = 0;
  /// The same for a comparison in a search: the header checked, not the CRC.
  virtual std::string_view CompareMember(uint64_t loc) const = 0;
};

/// What an Update callback decides, given the current value (nullptr if the key is absent).
struct UpdateDecision {
  /// kRun: nothing decided; the op's RunFn runs instead, at the same place (WriteBatch::UpdateOrRun).
  enum class Action : uint8_t { kKeep, kPut, kDelete, kRun };
  Action action = Action::kKeep;
  std::string value;         ///< kPut
  int64_t expire_at_ms = 0;  ///< kPut: 0 = no expiry (unless keep_ttl)
  bool keep_ttl = false;     ///< kPut: keep the current expiry
  uint8_t type = 0;          ///< kPut: format::ValueType of `value`
  /// kPut: format::RecordKind of `value` (kKindHead: RENAME moving a large collection's head,
  /// whose value is its incarnation).
  uint8_t kind = 0;
};
/// Runs on the writer thread, atomically with respect to every other write. `current` is valid only
/// during the call.
using UpdateFn = InlineFunction<UpdateDecision(const ValueView* current)>;

enum class PutCondition : uint8_t { kAlways, kIfAbsent, kIfPresent };  // SET, NX, XX

/// Redis 7's EXPIRE conditions. XX may come with GT (which implies it) or LT: kXXLT.
enum class ExpireCondition : uint8_t { kAlways, kNX, kXX, kGT, kLT, kXXLT };

/// What a WriteBatch::ReadKeys op reads, into its OpResult.
struct KeysQuery {
  enum class Mode : uint8_t {
    kCount,   ///< keys: the number of keys (expired ones not yet dropped counted, as Redis's DBSIZE)
    kAll,     ///< key_list: every live key (KEYS)
    kScan,    ///< key_list: about `count` live keys from `cursor`, keys: the next cursor (SCAN's
              ///< contract; a key the group wrote so far is listed by every such op)
    kRandom,  ///< key_list: one random live key, or none when there is none (RANDOMKEY)
  };
  Mode mode = Mode::kCount;
  uint64_t cursor = 0;  ///< kScan
  size_t count = 10;    ///< kScan
};

class Txn;
struct OpResult;
/// A function run on the writer thread at its op's place in the group (a script): it reads and
/// writes through `txn`, which sees every earlier op of the group, its own writes included. Its
/// records are part of the group: durable together, visible to readers together. It must not call
/// into the store other than through `txn`, nor keep `txn` past the call.
using RunFn = InlineFunction<void(Txn& txn)>;

/// A group of writes applied in order, atomically with respect to other batches.
class WriteBatch {
 public:
  /// Sets `key` to `value`; expire_at_ms 0 means no expiry (unless keep_ttl).
  void Put(std::string key, std::string value, int64_t expire_at_ms = 0,
           PutCondition condition = PutCondition::kAlways, bool keep_ttl = false,
           bool want_old = false, uint8_t type = 0);
  /// Deletes `key` (nothing is written when it is absent).
  void Delete(std::string key, bool want_old = false);
  /// Sets (expire_at_ms > 0) or removes (0) the expiry of an existing key, if `condition` holds; an
  /// expiry already in the past deletes the key (a tombstone), as Redis's EXPIRE does.
  void Expire(std::string key, int64_t expire_at_ms,
              ExpireCondition condition = ExpireCondition::kAlways);
  /// Read-modify-write of one key on the writer thread (INCR, APPEND, SETRANGE, ...).
  void Update(std::string key, UpdateFn fn, bool want_old = false);
  /// Update, for a command whose common case is a rewrite of the key's one record and whose other
  /// cases need a Txn (a collection stored per element): `fn` sees the current value first and
  /// either decides, or answers kRun and `run` runs in its place (as Run(run, key) would).
  void UpdateOrRun(std::string key, UpdateFn fn, RunFn run);
  /// Deletes every key (FLUSHALL / FLUSHDB) at this op's place in the batch: keys written by earlier
  /// ops of the same group go too, later ops see an empty store. Writes one tombstone per key
  /// (O(keys), like Redis's synchronous flush); expired keys are dropped without one.
  void DeleteAll();
  /// Deletes every key of the selected database (FLUSHDB): one record, as DeleteAll.
  void DeleteDb();
  /// Swaps databases `a` and `b` (SWAPDB): O(1), one record. Later ops (and readers, once the
  /// group is applied) see each one's keys under the other's index.
  void SwapDb(uint32_t a, uint32_t b);
  /// Moves `key` from the selected database to `to` (MOVE): applied only when it exists here and
  /// not there. Its value, type and expiry go with it.
  void Move(std::string key, uint32_t to);
  /// Writes nothing: reads the whole keyspace as it is at this op's place (earlier ops of the group
  /// included) — DBSIZE, KEYS, SCAN and RANDOMKEY inside MULTI. See KeysQuery for what it returns.
  void ReadKeys(KeysQuery query);
  /// Runs `fn` on the writer thread at this op's place (see RunFn). The op's result is applied
  /// when `fn` wrote anything. `key`: the one key `fn` writes, when it is a single-key command
  /// (WATCH counts it written when applied); empty for a script.
  void Run(RunFn fn, std::string key = {});

  /// The database later ops act in (SELECT); 0 until called.
  void SelectDb(uint32_t db) { db_ = db; }
  uint32_t selected_db() const { return db_; }

  /// Starts the ops of the next command. When an op fails (OpResult::error: its key's record is
  /// corrupt), the later ops of the same command are skipped, so a multi-op command (RENAME,
  /// MSETNX) never half-applies around a value it could not read.
  void BeginCommand() { ++command_; }

  /// Whether `key` is live (present, not expired) in the state the op at that point sees: earlier
  /// batches of the same group included. For preconditions; valid only during the call.
  using KeyProbe = std::function<bool(uint32_t db, std::string_view key)>;
  /// A check run on the writer thread just before the batch's ops, atomically with them (WATCH /
  /// EXEC). When it returns false nothing is applied and the callback gets Status::Aborted(). It
  /// must be quick and must not call into the store other than through `live`.
  using Precondition = std::function<bool(const WriteBatch&, const KeyProbe& live)>;
  void SetPrecondition(Precondition fn) { precondition_ = std::move(fn); }
  const Precondition& precondition() const { return precondition_; }
  /// Run on the writer thread right after the batch's ops, with their results, before the next
  /// batch's precondition (WATCH: the keys the batch really changed). Same rules as Precondition.
  using Postcondition = std::function<void(const WriteBatch&, std::span<const OpResult> results)>;
  void SetPostcondition(Postcondition fn) { postcondition_ = std::move(fn); }
  const Postcondition& postcondition() const { return postcondition_; }

  /// Who wrote the batch (a client id; 0: nobody in particular), passed on with its records to
  /// Options::on_written (CLIENT TRACKING's NOLOOP).
  void set_origin(uint64_t origin) { origin_ = origin; }
  uint64_t origin() const { return origin_; }
  /// Options::on_written reports the batch's keys as `deferred`: the server wakes the clients
  /// waiting on them only when the batch's origin says so (EXEC: once every command it holds ran,
  /// as Redis serves blocked clients after the command that served them).
  void set_defers_wakes(bool on) { defers_wakes_ = on; }
  bool defers_wakes() const { return defers_wakes_; }
  /// The batch is a replica's primary's stream: its ops see a key past its expiry as present, as
  /// Redis's master client does (the primary decides when a key expires and sends its DEL). Other
  /// batches, a writable replica's own clients' included, see such a key absent.
  void set_sees_expired(bool on) { sees_expired_ = on; }
  bool sees_expired() const { return sees_expired_; }

  size_t size() const { return ops_.size(); }
  bool empty() const { return ops_.empty(); }

  enum class Kind : uint8_t { kPut, kDelete, kExpire, kUpdate, kDeleteAll, kReadKeys, kRun, kDeleteDb, kSwapDb, kMove };
  struct Op {
    Kind kind = Kind::kPut;
    uint8_t type = 0;      ///< kPut: format::ValueType of the value
    uint8_t record_kind = 0;  ///< kPut: format::RecordKind (kKindHead: the value is an incarnation)
    uint32_t command = 0;  ///< ops of one command share it (BeginCommand)
    uint32_t db = 0;       ///< the database the op acts in (SelectDb when it was added)
    uint32_t db2 = 0;      ///< kSwapDb: the other database; kMove: the target
    PutCondition put_condition = PutCondition::kAlways;
    ExpireCondition expire_condition = ExpireCondition::kAlways;
    bool keep_ttl = false;
    bool want_old = false;
    /// Report in OpResult::existed whether the key was live before the op (keyspace
    /// notifications' `new`): a plain SET then looks its key up, which it otherwise skips.
    bool want_existed = false;
    /// The op reads its key's value as `type` (a string command's read-modify-write, SET GET,
    /// GETDEL): a value of another type fails it with Status::WrongType, nothing written, and the
    /// rest of its command skipped (as a corrupt record does).
    bool check_type = false;
    int64_t expire_at_ms = 0;
    std::string key;
    std::string value;
    UpdateFn fn;
    KeysQuery query;  ///< kReadKeys
    RunFn run;        ///< kRun
  };
  const std::vector<Op>& ops() const { return ops_; }
  /// The ops, to be moved out (Txn::Execute); the batch is left for destruction.
  std::vector<Op>& mutable_ops() { return ops_; }

 private:
  Op& Add(Kind kind, std::string key);

  std::vector<Op> ops_;
  Precondition precondition_;
  Postcondition postcondition_;
  uint32_t command_ = 0;
  uint32_t db_ = 0;
  uint64_t origin_ = 0;
  bool sees_expired_ = false;
  bool defers_wakes_ = false;
};

/// Which elements of a large collection a command reads (Store::ColdElementRanges).
struct ElementSelection {
  std::vector<std::string> members;  ///< those it names (HGET, HMGET, SISMEMBER, SADD ...)
  bool all = false;                  ///< every element (HGETALL, SMEMBERS, the set algebra)
  bool scan = false;                 ///< the slice ScanElements(inc, cursor, count) reads (HSCAN, SSCAN)
  uint64_t cursor = 0;
  size_t count = 0;
  /// A large list's elements [start, stop] by index, negative from the end (LRANGE, LINDEX), and
  /// its meta element.
  bool list_range = false;
  int64_t start = 0;
  int64_t stop = 0;
  bool empty() const { return members.empty() && !all && !scan && !list_range; }
};

/// The outcome of one op of a batch.
struct OpResult {
  bool applied = false;          ///< the op changed the store (a record written, or one its group wrote rewritten)
  std::optional<ValueView> old;  ///< the previous value, when asked for and present
  /// Not OK when the op could not run: the key's current record fails its checksum (Corruption,
  /// naming file and offset). Nothing was written for it, and the rest of its command was skipped.
  Status error;
  /// kReadKeys: KeysQuery::kCount, the number of keys; kScan, the next cursor.
  uint64_t keys = 0;
  /// kReadKeys: the keys read (kAll, kScan, kRandom).
  std::vector<std::string> key_list;
  /// The op's key was live before it (set for ops with want_existed).
  bool existed = false;
  /// A kRun op named a key changed though it wrote no record for it (Txn::Touch): WATCH and
  /// CLIENT TRACKING treat it as written; replicas get nothing (as Redis, whose dirty count stays).
  bool touched = false;
};

/// How far a walk of one collection's writes in the group being built got (Txn::GroupElementsFrom).
struct GroupCursor {
  uint64_t epoch = 0;   ///< the group state walked (Txn::GroupEpoch); 0: nothing walked yet
  size_t records = 0;   ///< element records walked
  uint64_t writes = 0;  ///< element writes seen (records, and values rewritten in place)
};

/// The store as a kRun op's function sees it: the group being built, at the op's place. Thread:
/// the writer role's holder (the writer thread, or a WriteAll caller), during the call only.
class Txn {
 public:
  /// Reads `key` as Store::Get does, but seeing the group's earlier writes. A value still in the
  /// group's buffer is copied (the view owns it); one in a data file is pinned.
  virtual Status Get(uint32_t db, std::string_view key, ValueView* out) = 0;
  /// Runs one op now, at this place in the group, with the result it would have in a batch.
  /// A kRun op runs its function with this Txn. The Txn keeps the op (the group refers to its key
  /// until it completes): passing it by move saves the copy.
  virtual void Execute(WriteBatch::Op op, OpResult* result) = 0;
  /// How many records the group holds so far: this place's index among the keys the group will
  /// report to Options::on_written (CLIENT TRACKING remembers a read at its place in a group).
  virtual size_t Written() const = 0;
  /// Written() when the batch whose op runs began (its first record's index, when it wrote one).
  virtual size_t BatchBegan() const = 0;
  /// Names `key` (of database `db`) changed although nothing is written for it, as Redis's
  /// signalModifiedKey for a command that leaves its key as it was (LTRIM keeping a whole list):
  /// Options::on_written reports it at this place among the group's records (CLIENT TRACKING),
  /// and the op's OpResult::touched is set (WATCH). Not a record: not in Written() nor
  /// WrittenKeysFrom, and nothing for replicas.
  virtual void Touch(uint32_t db, std::string_view key) = 0;
  /// Calls fn(db, key) for the key of each record the group holds from index `from` on (Written()
  /// taken earlier), as Options::on_written reports them: an element's collection key (in the
  /// database clients name, as the group so far maps it), none for a FLUSHALL, FLUSHDB or SWAPDB
  /// record. A key comes once per record. The view is valid during
  /// the call; fn must not use the Txn.
  virtual void WrittenKeysFrom(size_t from, FunctionRef<void(uint32_t db, std::string_view key)> fn) const = 0;

  // Large collections (docs/types.md): a head record (a kPut op with record_kind kKindHead, value =
  // the incarnation as 8 little-endian bytes) names an incarnation; its elements are records of
  // their own. Write the elements of a new incarnation before its head: a group cut short by a
  // crash then leaves elements no head names (dropped at the next start), never a head without
  // its elements.
  /// An incarnation never used before.
  virtual uint64_t NewIncarnation() = 0;
  /// Reads element `member` of collection `inc`, the group's earlier writes included.
  virtual Status GetElement(uint64_t inc, std::string_view member, ValueView* out) = 0;
  /// GetElement for a value used at once (a list's meta element): calls fn(value) and returns OK,
  /// or returns NotFound or the read error without calling it. The view is valid during the call
  /// only (it may lie in the group's buffer, which moves); unlike GetElement nothing is pinned or
  /// copied.
  virtual Status ReadElement(uint64_t inc, std::string_view member,
                             const std::function<void(std::string_view value)>& fn) = 0;
  /// Sets element `member` of collection `inc` (of `type`, at `key` in database `db`: the key is
  /// what Options::on_written reports) to `value` (empty for a set member); returns whether it
  /// was new.
  virtual bool PutElement(uint32_t db, std::string_view key, uint8_t type, uint64_t inc,
                          std::string_view member, std::string_view value) = 0;
  /// PutElement of a member the caller knows is absent (a list's push to the position past either
  /// end: no element lies outside them; the group may have deleted one there), without looking it
  /// up; counted as new. (Were one there after all, its record is superseded as by PutElement,
  /// and ElementCount is one too high until the group is applied.)
  virtual void AddElement(uint32_t db, std::string_view key, uint8_t type, uint64_t inc, std::string_view member,
                          std::string_view value) = 0;
  /// PutElement of a member whose presence the caller learnt in this group (GetElement: a ZADD
  /// reads the score it replaces), without looking it up again: `exists` as that read found it,
  /// counted as new when it is false. The caller must not have changed the element since.
  virtual void PutKnownElement(uint32_t db, std::string_view key, uint8_t type, uint64_t inc,
                               std::string_view member, std::string_view value, bool exists) = 0;
  /// Removes element `member`; returns whether it was there.
  virtual bool DeleteElement(uint32_t db, std::string_view key, uint8_t type, uint64_t inc,
                             std::string_view member) = 0;
  /// Reads element `member` into *value and removes it, finding it once (a list's pop): OK,
  /// NotFound (nothing removed) or the read error (nothing removed).
  virtual Status TakeElement(uint32_t db, std::string_view key, uint8_t type, uint64_t inc, std::string_view member,
                             std::string* value) = 0;
  /// The number of elements of collection `inc`, the group's writes included.
  virtual uint64_t ElementCount(uint64_t inc) = 0;
  /// A random element of collection `inc` as applied and not written by the group (the first at
  /// or after a slot picked by `random`; one the group wrote — SPOP's earlier pops — is passed
  /// over for another pick): false when none was found in a few picks (empty, or mostly written
  /// by the group: then walk it with ForEachElement instead). The group's new elements are not
  /// among the picks.
  virtual bool RandomElement(uint64_t inc, uint64_t random, std::string* member) = 0;
  /// Calls fn(member, value) for every element of collection `inc`, the group's writes included,
  /// in no particular order. The views are valid during the call; fn must not use the Txn. An
  /// element whose record fails its check is not passed to fn: the walk goes on, and returns the
  /// first such failure (Corruption naming file and offset), OK when there was none.
  virtual Status ForEachElement(uint64_t inc,
                                const std::function<void(std::string_view member, std::string_view value)>& fn) = 0;
  /// Calls fn(member, value) for each element of collection `inc` the group wrote so far, with
  /// its state now: value null when the group deleted it.
  virtual void GroupElements(uint64_t inc,
                             const std::function<void(std::string_view member, const std::string_view* value)>& fn) = 0;
  /// The state of the group being built: changes when a group starts and when a FLUSHALL in it
  /// forgets what it wrote. Unique in the process, so state derived from a group's writes (a sorted
  /// set's order with them) can be kept under it and reused by its later ops.
  virtual uint64_t GroupEpoch() const = 0;
  /// Whether `cursor` still describes a prefix of collection `inc`'s records in this group state:
  /// false for another epoch, or when a value it walked was rewritten in place since (an element
  /// written again with a value of the same size takes its record's place). Then walk from a
  /// fresh cursor.
  virtual bool GroupCursorValid(uint64_t inc, const GroupCursor& cursor) = 0;
  /// Calls fn(member, value) for each element record of collection `inc` the group wrote after
  /// *cursor (every one, for a fresh cursor), in the order written — value null for a deletion;
  /// a member may come more than once, its last record being its state — and moves the cursor
  /// past them. The views are valid during the call; fn must not use the Txn.
  virtual void GroupElementsFrom(uint64_t inc, GroupCursor* cursor,
                                 FunctionRef<void(std::string_view member, const std::string_view* value)> fn) = 0;
  /// Lends fn the order of sorted set `inc` as applied, without the group's writes (combine with
  /// GroupElements). An unknown incarnation reads as empty. It does not change while a group is
  /// built (the group's writes reach it when the group is applied).
  virtual void ReadOrdered(uint64_t inc, FunctionRef<void(const OrderedView&)> fn) = 0;

 protected:
  ~Txn() = default;
};

/// Called once per batch on the writer thread. When `status` is not OK nothing of the batch was
/// acknowledged (results are empty).
using WriteCallback = InlineFunction<void(const Status& status, std::vector<OpResult> results)>;

/// A histogram with power-of-two buckets: bucket 0 counts values of at most 1, bucket i > 0 those
/// in (2^(i-1), 2^i]; the last bucket also takes everything larger.
struct Histogram {
  static constexpr size_t kBuckets = 40;
  std::array<uint64_t, kBuckets> buckets{};
  uint64_t count = 0;
  uint64_t sum = 0;
  /// The bucket of a value.
  static size_t Bucket(uint64_t v) {
    if (v <= 1) return 0;
    const size_t b = static_cast<size_t>(64 - __builtin_clzll(v - 1));
    return b < kBuckets ? b : kBuckets - 1;
  }
  /// The upper bound of bucket i.
  static uint64_t UpperBound(size_t i) { return uint64_t{1} << i; }
  /// The upper bound of the bucket holding the p-th percentile (0 < p <= 100); 0 when empty.
  uint64_t Percentile(double p) const {
    if (count == 0) return 0;
    const double want = p / 100.0 * static_cast<double>(count);
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += buckets[i];
      if (static_cast<double>(seen) >= want) return UpperBound(i);
    }
    return UpperBound(kBuckets - 1);
  }
};

/// A Histogram updated from any thread (relaxed atomics).
class AtomicHistogram {
 public:
  void Add(uint64_t v) {
    buckets_[Histogram::Bucket(v)].fetch_add(1, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(v, std::memory_order_relaxed);
  }
  Histogram Snapshot() const {
    Histogram h;
    for (size_t i = 0; i < Histogram::kBuckets; ++i) h.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
    h.count = count_.load(std::memory_order_relaxed);
    h.sum = sum_.load(std::memory_order_relaxed);
    return h;
  }

 private:
  std::array<std::atomic<uint64_t>, Histogram::kBuckets> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_{0};
};

struct Stats {
  uint64_t keys = 0;
  uint64_t collections = 0;          ///< large collections (stored per element)
  uint64_t collection_elements = 0;  ///< their elements
  uint64_t collection_index_bytes = 0;  ///< RAM of their element indexes
  uint64_t data_files = 0;
  uint64_t total_bytes = 0;  ///< bytes in all data files
  uint64_t dead_bytes = 0;   ///< bytes of records no longer needed
  uint64_t keydir_bytes = 0;
  uint64_t compactions = 0;
  uint64_t compaction_bytes_reclaimed = 0;
  int64_t last_compaction_ms = 0;  ///< duration of the last compaction
  uint64_t expired_keys = 0;
  // Writes.
  uint64_t bytes_written = 0;   ///< bytes appended to data files by group commits
  uint64_t groups = 0;          ///< group commits
  uint64_t group_records = 0;   ///< records written by them
  Histogram group_size;         ///< records per group commit
  Histogram fsync_usec;         ///< every fdatasync of a data file (writer and compaction), in µs
  uint64_t writer_queue = 0;    ///< requests waiting for the writer now
  // Compaction (beyond the counts above).
  uint64_t compaction_bytes_read = 0;
  uint64_t compaction_bytes_written = 0;
  int64_t compaction_total_ms = 0;
  uint64_t compaction_rounds = 0;    ///< installs of compaction results (several per compaction past the move budget)
  uint64_t compaction_failures = 0;  ///< automatic compactions failed in a row (retried with backoff)
  std::string compaction_error;      ///< the last failure's text, while failing
  // Recovery at open.
  int64_t recovery_ms = 0;
  uint64_t recovery_records = 0;     ///< records replayed (from data files and hint files)
  uint64_t recovery_hint_files = 0;  ///< data files recovered from their hint file
  // Hint files: sealed (not active) data files, and how many of them have one.
  uint64_t sealed_files = 0;
  uint64_t hint_files = 0;
  // The active expire cycle.
  uint64_t expire_cycle_us = 0;           ///< time spent in it
  uint64_t expire_time_cap_reached = 0;   ///< cycles that stopped at their time budget
  bool writes_failed = false;  ///< fail-stop after a failed fsync
  std::string write_error;     ///< the cause, when writes are failing
  /// The last group commit failed (ENOSPC, EIO from pwrite), and none succeeded since: writes are
  /// being refused now, though not for good (writes_failed is).
  bool last_write_failed = false;
  std::string last_write_error;
};

/// Part of a data file to read into the page cache (Store::ColdRanges). `pin` keeps the file open,
/// and so `fd` valid, while it is held, however compaction moves on.
struct ColdRange {
  std::shared_ptr<const void> pin;
  int fd = -1;
  uint64_t offset = 0;  // a multiple of the page size
  uint64_t length = 0;  // whole pages, but never past the file's end
};

class Store {
 public:
  /// Opens (creating if needed) the directory in options.dir: takes its lock, recovers the keydir
  /// from hint and data files (cutting a torn tail of the newest file, refusing to open on
  /// corruption anywhere else), starts the writer and background threads.
  static Status Open(const Options& options, std::unique_ptr<Store>* store);

  virtual ~Store() = default;

  /// Reads `key`. NotFound when absent or expired; Corruption when its record fails its checksum.
  /// A key found expired is dropped soon after by the writer (lazy expiry, as Redis deletes an
  /// expired key it reads), before any write or task queued after this call.
  virtual Status Get(uint32_t db, std::string_view key, ValueView* out) const = 0;
  /// Get, except that a key past its expiry is read as present (and not dropped): what the data
  /// set holds, for DEBUG OBJECT, which Redis answers from its dictionary alone (a replica keeps
  /// such keys until its primary's DEL).
  virtual Status GetEvenIfExpired(uint32_t db, std::string_view key, ValueView* out) const = 0;
  /// True when `key` is present and not expired.
  virtual bool Exists(uint32_t db, std::string_view key) const = 0;
  /// Starts loading the memory that reads of `keys` (of `db`) will touch — their keydir slots, then
  /// the records those name — without waiting for it, so a pipeline of reads overlaps its cache
  /// misses instead of taking them one after another. A hint: it changes nothing. Any thread.
  virtual void Prefetch(uint32_t db, std::span<const std::string_view> keys) const = 0;
  /// Runs `reads` (Get / Exists calls) so that together they see the store between two groups:
  /// all of a group's writes or none of them, as one command reading several keys must (MGET).
  /// Each Get or Exists on its own already sees whole groups. `reads` may run more than once (a
  /// group was applied meanwhile): it must only collect what it reads. Reads that groups keep
  /// landing beside run, after a few tries, while the writer waits (no group applied meanwhile):
  /// `reads` must not wait for the writer (no Write, Sync or KeyCount in it). Any thread.
  virtual void ReadTogether(FunctionRef<void()> reads) const = 0;

  /// Iterates the keys as Redis's SCAN does: start with cursor 0 and pass each returned cursor back
  /// until it returns 0. Each call visits about `count` keys, calling fn(key, expire_at_ms) for the
  /// live ones (expired keys are skipped unless include_expired: FLUSHALL must delete those too). A
  /// key present for the whole iteration is visited at least once; a key may be visited more than
  /// once. fn runs on the caller's thread, with no lock held; the key view is valid only during
  /// the call. Any thread.
  virtual uint64_t Scan(uint32_t db, uint64_t cursor, size_t count,
                        const std::function<void(std::string_view key, int64_t expire_at_ms)>& fn,
                        bool include_expired = false) const = 0;
  /// A random live key (RANDOMKEY); false when there is none.
  virtual bool RandomKey(uint32_t db, std::string* key) const = 0;
  /// Number of keys carrying an expiry (INFO keyspace `expires=`), expired ones included until
  /// they are reclaimed.
  virtual uint64_t ExpiringKeys(uint32_t db) const = 0;
  /// Number of keys of a database as of the last applied group (INFO keyspace). Any thread.
  virtual uint64_t KeyCount(uint32_t db) const = 0;
  /// Options::databases: the databases clients name (0 to Databases() - 1).
  virtual uint32_t Databases() const = 0;
  /// The staging databases (a replica's full sync loads there, then swaps them in: docs/format.md):
  /// as many as Databases(), from logical database StagingBase() on, reached like any other
  /// through WriteBatch::SelectDb and the reads; never in a snapshot (VisitSnapshot). 0 when there
  /// are none (more than 128 databases: the record's db byte has no room for them).
  virtual uint32_t StagingBase() const = 0;
  /// FLUSHALL ops run so far (this process): a load into the staging databases, which a FLUSHALL
  /// empties too, checks it did not change before swapping them in. Any thread; on the writer
  /// role (a batch's precondition), it counts every op before.
  virtual uint64_t FlushAlls() const = 0;
  /// A load into the staging databases (a replica's full sync): BeginStaging empties them and
  /// notes in the directory that a load is under way (a crash leaves the note: the next Open
  /// empties them again, and otherwise refuses a directory with keys there, as one written with
  /// more databases). EndStaging(true) swaps them in for the visible ones, all in one group (readers
  /// and recovery see the old data set or the new, never part of either), then empties them (the
  /// old data set goes); Aborted, nothing swapped, when a FLUSHALL ran since BeginStaging (it
  /// emptied them too). EndStaging(false) empties them. Either way the note goes. Synchronous,
  /// through the writer; the caller runs one load at a time. InvalidArgument without staging
  /// databases (StagingBase 0).
  virtual Status BeginStaging() = 0;
  virtual Status EndStaging(bool swap_in) = 0;

  // Large collections (docs/types.md): a key whose ValueView has kind kKindHead holds a collection
  // stored per element; its value is the incarnation (format::IncarnationOf) these calls take.
  // Any thread. A collection no head names reads as empty.
  /// Reads element `member` of collection `inc`: NotFound, Corruption, or a pinned view of the
  /// value. Call it inside ReadTogether with the Get of the head, so both see the same groups.
  virtual Status GetElement(uint64_t inc, std::string_view member, ValueView* out) const = 0;
  /// GetElement of several members at once (LRANGE of a large list): (*values)[i] is members[i]'s
  /// value, a view into a record kept mapped by `pins` (one per data file met: no reference count
  /// is touched per element). NotFound when one of them is missing (nothing else is then
  /// reliable), Corruption when one fails its check. Call it inside ReadTogether, as GetElement.
  virtual Status GetElements(uint64_t inc, std::span<const std::string_view> members,
                             std::vector<std::string_view>* values,
                             std::vector<std::shared_ptr<const void>>* pins) const = 0;
  /// The number of elements (as of the last group applied).
  virtual uint64_t ElementCount(uint64_t inc) const = 0;
  /// Every element, as views into records kept mapped by `pins`: one consistent state of the
  /// collection (a group's writes to it all or none; the writer waits for the walk, which copies
  /// 16 bytes per element, not the elements). Corruption when a record fails its check.
  virtual Status ReadElements(uint64_t inc, std::vector<ElementView>* out,
                              std::vector<std::shared_ptr<const void>>* pins) const = 0;
  /// HSCAN / SSCAN: as Scan, over the collection's elements (cursor 0 starts and ends). fn's views
  /// are valid during the call.
  virtual uint64_t ScanElements(uint64_t inc, uint64_t cursor, size_t count,
                                const std::function<void(std::string_view member, std::string_view value)>& fn) const = 0;
  /// A random element (the first at or after a slot picked by `random`); false when empty.
  virtual bool RandomElement(uint64_t inc, uint64_t random, std::string* member, std::string* value) const = 0;
  /// Lends fn the order of sorted set `inc` as of one group (a group's writes to it all or none;
  /// the writer waits while fn runs: keep it short). Call it inside ReadTogether with the Get of
  /// the head. An unknown incarnation reads as empty.
  virtual void ReadOrdered(uint64_t inc, FunctionRef<void(const OrderedView&)> fn) const = 0;

  /// Visits every live key of every database as of one moment between two groups, for a full
  /// snapshot (SYNC, a replica's full sync): the locations of the keys and of the large
  /// collections' elements are copied on the writer (8-16 bytes each, no record read: writes wait
  /// about that long), then fn reads them on the calling thread (database by database, each in the
  /// files' order, front to back), the data files kept mapped, while writes go on. Keys expired at
  /// that moment are left out. fn returns false to stop.
  /// Corruption (naming file and offset) when a record fails its check; Failed when the store is
  /// closing. Any thread but the writer's.
  /// `at_moment` (when set) runs on the writer at that moment: it must be quick and must not call
  /// into the store (a full sync notes the replication stream's offset there).
  virtual Status VisitSnapshot(const std::function<void()>& at_moment,
                               const std::function<bool(const SnapshotItem&)>& fn) = 0;

  /// Queues a batch for the writer; `done` runs on the writer thread.
  virtual void Write(WriteBatch batch, WriteCallback done) = 0;
  /// Queues several batches at once, in order (one lock, one wake-up of the writer): what an I/O
  /// thread collected from all its connections in one turn of its event loop. When the writer is
  /// idle the batches are written (under `always`, and synced) on the calling thread and their
  /// callbacks run before this returns (see Threads above).
  struct PendingWrite {
    WriteBatch batch;
    WriteCallback done;
  };
  virtual void WriteAll(std::vector<PendingWrite> writes) = 0;
  /// The policy the store was opened with (fixed for its lifetime; any thread).
  virtual FsyncPolicy fsync_policy() const = 0;
  /// Writes a batch and waits for it (tools and tests).
  virtual Status WriteSync(WriteBatch batch, std::vector<OpResult>* results = nullptr) = 0;

  /// Fsyncs the active file now (SAVE / BGSAVE); waits for it. Fails (never blocks) once the store
  /// is closing.
  virtual Status Sync() = 0;
  /// Same, without waiting: `done` runs on the writer thread once the sync covering every write
  /// queued before it returned, or at once (on the caller's thread) when the store is closing.
  virtual void SyncAsync(std::function<void(const Status&)> done) = 0;

  /// The number of keys (expired ones not yet dropped included, as Redis's DBSIZE), counted on the
  /// writer thread after every write and lazy expiry queued before this call: `done` runs there,
  /// or at once on the caller's thread when the store is closing.
  virtual void KeyCountAsync(uint32_t db, std::function<void(uint64_t keys)> done) = 0;

  /// `done` runs on the writer thread once every batch queued before this call was applied and its
  /// callback ran; at once, on the caller's thread, when the store is closing. (A replica's PSYNC
  /// offset must cover every write it applied: replica.h.)
  virtual void Barrier(std::function<void()> done) = 0;

  /// Runs a compaction of every sealed file now, in the background; `done` runs when it finishes
  /// (on the background thread).
  virtual void Compact(std::function<void(const Status&)> done) = 0;
  /// Compacts and waits.
  virtual Status CompactSync() = 0;

  virtual Stats GetStats() const = 0;

  // Cold reads (data larger than memory; docs/store.md): an event loop asks ColdRanges before a
  // command touches a key, and when something is cold has it read (its io_uring, or a read pool
  // thread calling FetchKeys) and runs the command after, so no event loop or writer waits for the
  // disk. KeyResident answers the same question without the ranges.
  /// False when the last residency sweep found every data file wholly in the page cache: no read
  /// can then wait for the disk, and callers need not ask KeyResident. Any thread.
  virtual bool MaybeCold() const = 0;
  /// Whether reading `key` (each record stored under its hash) touches only pages in the page
  /// cache. Never touches a data page itself (mincore). Any thread.
  virtual bool KeyResident(uint32_t db, std::string_view key) const = 0;
  /// Reads the records stored under each key's hash into the page cache, with the disk reads of
  /// all the keys in flight together. Blocks on the disk: for a read pool thread. Any thread.
  virtual void FetchKeys(uint32_t db, std::span<const std::string_view> keys) const = 0;
  /// Appends to `out` what of the records stored under `key`'s hash is not in the page cache, as
  /// whole pages of a data file: a record's header and key when they are cold, else (only once
  /// they are resident may its size be read) the rest of the record. The caller reads the ranges
  /// by any means that fills the page cache (buffered pread, io_uring) and asks again until
  /// nothing is appended: one round for most records, two when a record spans past its header's
  /// pages. Appends nothing when the key is resident (no allocation). Never touches a page that is
  /// not resident. Returns true when the key's record is resident and heads a large collection
  /// (then ColdElementRanges has the rest to say). Any thread.
  virtual bool ColdRanges(uint32_t db, std::string_view key, std::vector<ColdRange>* out) const = 0;
  /// ColdRanges for the elements of a large hash or set (docs/types.md: records of their own) that
  /// a command will read (`which`): appends what of those element records of the collection at
  /// `key` is not in the page cache, by the same rules and rounds, adjacent pages merged. Appends
  /// nothing unless `key` is a large collection whose head is resident (its ColdRanges comes
  /// first). Any thread.
  virtual void ColdElementRanges(uint32_t db, std::string_view key, const ElementSelection& which,
                                 std::vector<ColdRange>* out) const = 0;
  /// Asks the kernel which pages of each data file are cached (for MaybeCold and KeyResident's
  /// fast path); returns the bytes of data files found resident from their start. About once a
  /// second, from one thread.
  virtual uint64_t SweepResidency() = 0;
  /// Pages sweeps found evicted and read back, in all: a few pages gone from a store otherwise in
  /// memory (a host reclaiming idle pages) are read back so that MaybeCold stays false (not after
  /// DropPageCache, nor when more than 1% of the pages went). Any thread.
  virtual uint64_t PagesReadBack() const = 0;
  /// Tests and DEBUG DROP-PAGE-CACHE: evicts the data files' clean pages from the page cache (and
  /// this process's page tables), then sweeps, so the next reads are cold. Written pages stay
  /// until they are written back (sync first). Any thread.
  virtual void DropPageCache() = 0;

  /// Whether Options::on_expired is called. Off by default: the expire cycle names no key (it
  /// drops keys by their keydir entries alone); on, it reads each expired key's record to name it
  /// (a page of a data file, which may fault). Any thread.
  virtual void NameExpiredKeys(bool on) = 0;
  /// Whether NameExpiredKeys is on. Any thread.
  virtual bool NamingExpiredKeys() const = 0;
  /// A replica's own expiries (Redis's expireSlaveKeys): while on, a key given an expiry by a
  /// batch that does not see expired keys (a writable replica's own clients, not its primary's
  /// stream) is remembered, and the writer drops each such key once it expires, every expire
  /// cycle, whether or not the cycle itself is paused (a replica's is: its primary's keys wait for
  /// its DEL). Off forgets them. Any thread.
  virtual void TrackOwnExpiries(bool on) = 0;
  /// Whether Options::on_expired_in_group is called (replicas attached). Any thread.
  virtual void ReportExpiredInGroups(bool on) = 0;
  /// Whether Options::on_written is called (CLIENT TRACKING on). Off by default: a group then
  /// collects no keys for it. Any thread.
  virtual void ReportWrites(bool on) = 0;
  /// Turns the active expire cycle on or off (DEBUG SET-ACTIVE-EXPIRE); expired keys stay
  /// invisible to reads either way. Any thread.
  virtual void SetActiveExpire(bool on) = 0;
  /// While paused, no expired key is dropped, neither by the expire cycle nor after a read found
  /// it expired (those are dropped once unpaused); reads still see them as absent. CLIENT PAUSE
  /// WRITE, as Redis stops expiring keys while writes are paused. Any thread.
  virtual void SetExpiryPaused(bool paused) = 0;
  /// Drops every key expired by now, in every database, at once (no time budget; expiry being
  /// paused or the active cycle off does not stop it), calling Options::on_expired for each while
  /// NameExpiredKeys is on. Returns how many. For startup, before any client: a primary drops
  /// what expired while it was down before it serves (Redis skips expired keys when a primary
  /// loads its RDB, and sends their DELs to its backlog). Any thread; takes the writer role.
  virtual uint64_t ExpireAllDue() = 0;
  /// Tests (DEBUG APPLY-PAUSE): the writer sleeps this long before each keydir update of a group's
  /// records, and after the last, widening the window in which a reader could see part of a group
  /// (or a ReadTogether one record's change). Any thread.
  virtual void SetApplyPauseUs(uint32_t us) = 0;

  /// Drains the writer queue, syncs, stops the threads and releases the directory lock.
  virtual Status Close() = 0;
};

/// Milliseconds since the Unix epoch (the clock of TTLs).
int64_t NowMs();

/// How many times a read on the calling thread found a key expired and left its drop to the
/// writer (which drops it, and calls Options::on_expired, at its next round, before the replies
/// of the group it runs with): a command whose reads moved this holds its reply until the writer
/// ran (Store::Barrier), so the key's `expired` event comes first, as Redis sends it while the
/// read runs. A counter of the calling thread, never reset.
uint64_t ExpiredReadsOnThisThread();

}  // namespace keg::store
