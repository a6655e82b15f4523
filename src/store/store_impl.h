// StoreImpl: the implementation behind Store (store.h). Split by role:
//   store.cc       open/close, reads, the writer thread (group commit, rotation, expiry)
//   recovery.cc    rebuilding the keydir from hint and data files at open
//   compaction.cc  the background thread: hint files and compaction
#pragma once

#include <array>
#include <atomic>
#include <bitset>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "store/data_file.h"
#include "store/element_index.h"
#include "store/ordered_index.h"
#include "store/position_index.h"
#include "store/format.h"
#include "store/group_state.h"
#include "store/hint_file.h"
#include "store/keydir.h"
#include "store/rw_spin_lock.h"
#include "store/store.h"

namespace keg::store {

class Progress;  // recovery.cc

/// Index -> DataFile for every live data file. Indexes are assigned once and never reused, so a
/// location read from the keydir can never name a different file later.
/// Thread: Get/Snapshot from any thread; Add/Remove from the writer thread (or during Open).
class FileTable {
 public:
  std::shared_ptr<DataFile> Get(uint32_t index) const;
  /// Without a reference: for the writer thread, which is the only one that removes files.
  DataFile* GetRaw(uint32_t index) const;
  void Add(std::shared_ptr<DataFile> file);
  void Remove(uint32_t index);
  /// All files, ordered by id.
  std::vector<std::shared_ptr<DataFile>> Snapshot() const;
  /// Starts loading the bytes at `offset` of file `index` into the cache (nothing if it is gone).
  void Prefetch(uint32_t index, uint64_t offset) const;
  /// Get, GetRaw and Prefetch without the lock (two atomic operations each): for the writer role
  /// alone, the one that adds and removes files, so nothing changes the table under it.
  std::shared_ptr<DataFile> GetUnlocked(uint32_t index) const {
    const std::shared_ptr<DataFile>* f = Find(index);
    return f == nullptr ? nullptr : *f;
  }
  DataFile* GetRawUnlocked(uint32_t index) const {
    const std::shared_ptr<DataFile>* f = Find(index);
    return f == nullptr ? nullptr : f->get();
  }
  void PrefetchUnlocked(uint32_t index, uint64_t offset) const;

 private:
  // The slot of `index`, or nullptr. Under mu_, or by the writer role (the table's one mutator).
  const std::shared_ptr<DataFile>* Find(uint32_t index) const {
    const uint32_t i = index - base_;  // wraps past the end when index < base_
    return i < slots_.size() && slots_[i] ? &slots_[i] : nullptr;
  }

  // A spin lock: readers hold it for an array load (every Get), writers for an insert or erase.
  mutable RwSpinLock mu_;
  // slots_[i] holds the file of index base_ + i (null once removed): indexes are dense and only
  // grow, so the array spans the live files' range; removals at the front move base_ up.
  uint32_t base_ = 0;
  std::vector<std::shared_ptr<DataFile>> slots_;
};

class StoreImpl final : public Store {
 public:
  explicit StoreImpl(const Options& options);
  ~StoreImpl() override;

  Status Get(uint32_t db, std::string_view key, ValueView* out) const override;
  Status GetEvenIfExpired(uint32_t db, std::string_view key, ValueView* out) const override;
  bool Exists(uint32_t db, std::string_view key) const override;
  void Prefetch(uint32_t db, std::span<const std::string_view> keys) const override;
  uint64_t Scan(uint32_t db, uint64_t cursor, size_t count,
                const std::function<void(std::string_view, int64_t)>& fn,
                bool include_expired) const override;
  bool RandomKey(uint32_t db, std::string* key) const override;
  uint64_t ExpiringKeys(uint32_t db) const override;
  uint64_t KeyCount(uint32_t db) const override;
  uint32_t Databases() const override { return visible_dbs_; }
  uint32_t StagingBase() const override { return keydirs_.size() > visible_dbs_ ? visible_dbs_ : 0; }
  uint64_t FlushAlls() const override { return flush_alls_.load(std::memory_order_relaxed); }
  Status BeginStaging() override;
  Status EndStaging(bool swap_in) override;
  Status GetElement(uint64_t inc, std::string_view member, ValueView* out) const override;
  uint64_t ElementCount(uint64_t inc) const override;
  Status VisitSnapshot(const std::function<void()>& at_moment,
                       const std::function<bool(const SnapshotItem&)>& fn) override;
  Status ReadElements(uint64_t inc, std::vector<ElementView>* out,
                      std::vector<std::shared_ptr<const void>>* pins) const override;
  uint64_t ScanElements(uint64_t inc, uint64_t cursor, size_t count,
                        const std::function<void(std::string_view, std::string_view)>& fn) const override;
  bool RandomElement(uint64_t inc, uint64_t random, std::string* member, std::string* value) const override;
  void ReadOrdered(uint64_t inc, FunctionRef<void(const OrderedView&)> fn) const override;
  Status GetElements(uint64_t inc, std::span<const std::string_view> members, std::vector<std::string_view>* values,
                     std::vector<std::shared_ptr<const void>>* pins) const override;
  void Write(WriteBatch batch, WriteCallback done) override;
  void WriteAll(std::vector<PendingWrite> writes) override;
  FsyncPolicy fsync_policy() const override { return options_.fsync; }
  // Holding the writer role: whether a group of `writes` surely fits the active file, so a caller
  // may write it inline without rotating.
  bool LeaderHasRoom(const std::vector<PendingWrite>& writes) const;
  Status WriteSync(WriteBatch batch, std::vector<OpResult>* results) override;
  Status Sync() override;
  void SyncAsync(std::function<void(const Status&)> done) override;
  void Compact(std::function<void(const Status&)> done) override;
  Status CompactSync() override;
  bool MaybeCold() const override { return maybe_cold_.load(std::memory_order_relaxed); }
  bool KeyResident(uint32_t db, std::string_view key) const override;
  void FetchKeys(uint32_t db, std::span<const std::string_view> keys) const override;
  bool ColdRanges(uint32_t db, std::string_view key, std::vector<ColdRange>* out) const override;
  void ColdElementRanges(uint32_t db, std::string_view key, const ElementSelection& which,
                         std::vector<ColdRange>* out) const override;
  uint64_t SweepResidency() override;
  uint64_t PagesReadBack() const override { return pages_read_back_.load(std::memory_order_relaxed); }
  void DropPageCache() override;
  Stats GetStats() const override;
  void KeyCountAsync(uint32_t db, std::function<void(uint64_t keys)> done) override;
  void Barrier(std::function<void()> done) override;
  void SetActiveExpire(bool on) override { active_expire_.store(on, std::memory_order_relaxed); }
  void TrackOwnExpiries(bool on) override { track_own_expiries_.store(on, std::memory_order_relaxed); }
  void ReportWrites(bool on) override { report_writes_.store(on && options_.on_written != nullptr, std::memory_order_relaxed); }
  void ReportExpiredInGroups(bool on) override {
    report_expired_in_groups_.store(on && options_.on_expired_in_group != nullptr, std::memory_order_relaxed);
  }
  void NameExpiredKeys(bool on) override { name_expired_.store(on && options_.on_expired != nullptr, std::memory_order_relaxed); }
  bool NamingExpiredKeys() const override { return name_expired_.load(std::memory_order_relaxed); }
  void SetExpiryPaused(bool paused) override { expiry_paused_.store(paused, std::memory_order_relaxed); }
  uint64_t ExpireAllDue() override;
  void SetApplyPauseUs(uint32_t us) override { apply_pause_us_.store(us, std::memory_order_relaxed); }
  void ReadTogether(FunctionRef<void()> reads) const override;
  Status Close() override;

  Status OpenImpl();

 private:
  // ColdRanges and KeyResident: calls cold(file, from, to) for each part of the records under a
  // key's hash not in the page cache (store.cc).
  template <class Index, class Cold>
  bool VisitCold(const Index& index, std::string_view key, Cold&& cold) const;
  // The locations under `key`'s hash in `index` to look at, into out[kMaxCandidates]: the first
  // alone when its record is resident and holds `key` (a key has one entry, so the rest are other
  // keys': the probe stops at its first match instead of walking on to an empty slot — about a
  // dozen slots at the keydir's highest load), else all of them.
  // *first: the first's file, on that path (saves a second FileTable lookup), else left null.
  template <class Index>
  size_t CandidatesFor(const Index& index, std::string_view key, Location* out,
                       std::shared_ptr<DataFile>* first) const;
  // The same for the record at `off` of `file`, whatever its key (its header says).
  template <class Cold>
  bool VisitColdRecord(const std::shared_ptr<DataFile>& file, uint64_t off, uint64_t key_size, Cold&& cold) const;
  bool HeadIncarnation(const DataFile& file, uint64_t off, std::string_view key, uint64_t* inc) const;
  // ColdElementRanges once the collection's incarnation is known.
  void ElementRanges(uint64_t inc, const ElementSelection& which, std::vector<ColdRange>* out) const;
  // The keydir readers use for database `db` (as clients name it), or null when there is no such
  // database. Any thread; call inside Stable (SWAPDB changes the map under the group seqlock).
  const Keydir* ReaderKeydir(uint32_t db) const {
    if (db >= keydirs_.size()) return nullptr;
    return keydirs_[db_map_[db].load(std::memory_order_relaxed)].get();
  }
  // The keyed hash of a key (every keydir shares the secret).
  uint64_t Hash(std::string_view key) const { return keydirs_[0]->Hash(key); }
  // The overlay's hash of a key in physical database `pdb` (a key's entries differ per database).
  static uint64_t OverlayHash(uint64_t hash, uint8_t pdb) { return hash + uint64_t{pdb} * 0x9E3779B97F4A7C15ull; }
  // Runs `read` until it ran wholly between two groups' keydir changes (apply_seq_).
  template <class Read>
  void Stable(Read&& read) const;
  Status GetOnce(uint32_t db, std::string_view key, ValueView* out, bool even_if_expired = false) const;
  // Starts loading the records the keydir names under `hashes` (whose slots were prefetched).
  template <bool kAsWriter = false>  // (see Lookup)
  void PrefetchRecords(const Keydir& kd, std::span<const uint64_t> hashes) const;
  // A group's keys in op order, for ProcessGroup's loads ahead of its ops (writer role; reused).
  struct AheadKey {
    const Keydir* kd;
    uint64_t hash;
    const WriteBatch::Op* op;  // whose key it is
  };
  std::vector<AheadKey> ahead_;
  // The op ProcessGroup is running and its key's hash, from ahead_ (ExecuteOp hashes any other
  // op's key itself); null outside that one ExecuteOp call. Writer role.
  const WriteBatch::Op* hashed_op_ = nullptr;
  uint64_t hashed_op_hash_ = 0;
  // One item of the writer queue: a batch with its callback, or an internal task.
  struct Request {
    WriteBatch batch;
    WriteCallback done;
    std::function<void()> task;
  };
  // A record appended to the group buffer, applied to the keydir once durable.
  // Every field has its initializer and the constructor is user-provided, so emplace_back() runs
  // just those stores instead of zeroing the whole record first (one per record written).
  struct PendingRecord {
    PendingRecord() {}  // NOLINT(modernize-use-equals-default): `= default` would zero it first
    std::string_view key;  // points into the batch's op, alive until the group completes
    uint64_t hash = 0;
    uint8_t db = 0;        // physical database
    uint64_t group_offset = 0;  // offset in group_buf_
    uint64_t size = 0;
    bool tombstone = false;
    bool expires = false;
    uint32_t expire_s = 0;  // Location::ExpireSeconds of the record's expiry, when it expires
    bool flush_all = false;  // a FLUSHALL record: everything before it goes
    bool flush_db = false;   // a FLUSHDB record: everything of `db` before it goes
    bool swap_db = false;    // a SWAPDB record: swaps the map entries of logical dbs swap_a, swap_b
    uint8_t swap_a = 0;
    uint8_t swap_b = 0;
    uint64_t origin = 0;     // the batch's WriteBatch::origin (Options::on_written)
    bool sees_expired = false;  // the batch's WriteBatch::sees_expired (Options::on_expired_replaced)
    uint8_t kind = 0;        // format::RecordKind
    uint8_t type = 0;        // an element's format::ValueType
    uint64_t inc = 0;        // an element's collection, or the incarnation a head names
    std::string_view report_key;  // an element's collection key (Options::on_written)
    // Where the keydir had the key when the op that wrote this record looked it up (the group's
    // memo), so the apply finds its entry by location instead of comparing keys (Keydir::ReplaceAt).
    bool old_known = false;
    uint32_t old_file = 0;
    uint64_t old_offset = 0;
  };
  // The state of a key as later ops of the same group must see it.
  struct OverlayEntry {
    bool exists;
    uint64_t group_offset;  // record in group_buf_ (when exists); a FLUSHDB's when it deleted it
    uint8_t db;             // physical database
  };
  struct CurrentValue {
    Status error;  // Corruption: the key's record fails its check (exists is then false)
    bool exists = false;
    ValueView view;  // pin is null for a value still in the group buffer
  };

  // A large collection's element index (docs/types.md), shared by readers (shared_ptr) and kept
  // in collections_ while a live head names its incarnation.
  struct HeadSighting {  // recovery: a head record replayed as live (it may be replaced later)
    uint8_t pdb;
    uint64_t hash;
    Location loc;
  };
  struct Collection {
    // Element key (incarnation + member) -> its record: a list's positions in `positions`
    // (created with its first element), every other type's in `index`. Use the methods below,
    // which pick the one that holds the collection's elements.
    ElementIndex index;
    std::unique_ptr<PositionIndex> positions;
    // A sorted set's members in order (created with the collection's first zset element); under
    // walk_mu: the writer changes it holding walk_mu exclusively, readers hold it shared.
    std::unique_ptr<OrderedIndex> ordered;
    uint8_t type = 0;  // its elements' format::ValueType, once one was seen
    // The writer holds it exclusively while it applies a group's changes to `index`, ReadElements
    // shared while it copies the entries: a walk sees a group's writes to the collection all or
    // none. Point reads do not take it (the group seqlock covers them).
    mutable std::shared_mutex walk_mu;
    // Writer role: live heads naming it (two for a moment in RENAME's group), their database, and
    // whether a FLUSHALL emptied it (its records are then counted dead already).
    int64_t heads = 0;
    uint8_t pdb = 0;
    bool flushed = false;
    // Recovery: heads replayed as live; those still in their keydir at the end keep it alive.
    std::mutex replay_mu;
    std::vector<HeadSighting> sightings;

    // The element index's interface, keyed by the element key too (a list's index needs its
    // member, the hashed one its hash); the threads are the indexes' (see their headers).
    static std::string_view MemberOf(std::string_view ekey) {
      return ekey.size() >= format::kIncarnationSize ? ekey.substr(format::kIncarnationSize) : std::string_view();
    }
    size_t FindCandidates(std::string_view ekey, uint64_t hash, Location* out, size_t max) const {
      if (positions) return max > 0 && positions->Find(MemberOf(ekey), out) ? 1 : 0;
      return index.FindCandidates(hash, out, max);
    }
    bool Upsert(std::string_view ekey, uint64_t hash, const Keydir::KeyMatcher& is_key, Location loc,
                Location* old) {
      return positions ? positions->Upsert(MemberOf(ekey), loc, old) : index.Upsert(hash, is_key, loc, old);
    }
    bool Erase(std::string_view ekey, uint64_t hash, const Keydir::KeyMatcher& is_key, Location* old) {
      return positions ? positions->Erase(MemberOf(ekey), old) : index.Erase(hash, is_key, old);
    }
    bool ReplaceIfAt(std::string_view ekey, uint64_t hash, const Location& expected, Location loc) {
      return positions ? positions->ReplaceIfAt(MemberOf(ekey), expected, loc)
                       : index.ReplaceIfAt(hash, expected, loc);
    }
    size_t Size() const { return positions ? positions->Size() : index.Size(); }
    size_t MemoryBytes() const {
      return index.MemoryBytes() + (positions ? positions->MemoryBytes() : 0) + (ordered ? ordered->MemoryBytes() : 0);
    }
    void ForEach(const std::function<void(const Location&)>& fn) const {
      if (positions) {
        positions->ForEach(fn);
      } else {
        index.ForEach(fn);
      }
    }
    void Scan(uint64_t* cursor, size_t count, std::vector<Location>* out) const {
      if (positions) {
        positions->Scan(cursor, count, out);
      } else {
        index.Scan(cursor, count, out);
      }
    }
    bool RandomEntry(uint64_t random, Location* loc) const {
      return positions ? positions->RandomEntry(random, loc) : index.RandomEntry(random, loc);
    }
  };
  // The candidate locations of `key` (hash `hash`) in a database's keydir or a collection.
  // (kAsWriter: see Lookup; a collection's index takes its lock either way.)
  template <bool kAsWriter>
  static size_t Candidates(const Keydir& kd, std::string_view, uint64_t hash, Location* out, size_t max) {
    return kAsWriter ? kd.FindCandidatesUnlocked(hash, out, max) : kd.FindCandidates(hash, out, max);
  }
  template <bool kAsWriter>
  static size_t Candidates(const Collection& c, std::string_view key, uint64_t hash, Location* out, size_t max) {
    return c.FindCandidates(key, hash, out, max);
  }
  // Any thread: the collection of `inc`, or null.
  std::shared_ptr<Collection> FindCollection(uint64_t inc) const;
  // Writer role (or recovery): the collection of `inc`, created empty when missing; `type` is
  // its elements' (format::ValueType; 0 when unknown): a sorted set gets its ordered index.
  Collection& CollectionFor(uint64_t inc, uint8_t pdb, uint8_t type = 0);
  // Writer role: the ordered index's reader of members (files read raw: the writer never retires
  // a file under itself).
  OrderedIndex::MemberFn WriterMemberFn() const;
  // Writer role: keeps a sorted set's ordered index in step with its element index: the element
  // at `old` (when had_old) went, and the one at `now` (when has_now) came.
  void UpdateOrdered(Collection& coll, std::string_view member, bool had_old, const Location& old, bool has_now,
                     const Location& now);
  // Recovery: builds the ordered index of every sorted set from its element index.
  void BuildOrderedIndexes();
  // Lends fn an OrderedView of collection `inc` (`coll` null: empty), its records' files resolved
  // by file_of (null: retired). The caller holds what keeps the index still (walk_mu, or the
  // writer role).
  void LendOrdered(uint64_t inc, const Collection* coll, FunctionRef<const DataFile*(uint32_t)> file_of,
                   FunctionRef<void(const OrderedView&)> fn) const;
  // Writer role: a head naming `inc` became live / stopped being live.
  void HeadCame(uint64_t inc, uint8_t pdb);
  void HeadGone(uint64_t inc);
  // Writer role: removes collections whose heads all went (maybe_dead_), after a group's changes.
  void DropDeadCollections();
  // Writer role: MarkDead, and when the record is a head, HeadGone for its incarnation.
  void ReleaseRecord(const Location& loc);
  // Whether the key record at `loc` (a keydir location, with its coarse expiry) had expired at
  // `now_ms`: its header is read only within the second its expiry names. Writer role.
  bool RecordExpiredAt(const Location& loc, int64_t now_ms) const;
  // Recovery: keeps the collections a live head names, drops the others.
  void FinishCollections();
  // Reads the element record at `loc` of `file`: false when it fails its check (*error set).
  bool ReadElementAt(const DataFile& file, uint64_t offset, std::string_view* member,
                     std::string_view* value, Status* error) const;
  // The member of the element record at `offset` for an ordering comparison: its header checked,
  // not its CRC (a search reads log n members; what is served is read with ReadElementAt). Empty
  // when the header fails its check.
  std::string_view MemberForCompare(const DataFile& file, uint64_t offset) const;
  // The member and value of the element record at `offset` for the ordered index's own use
  // (comparisons, the scores UpdateOrdered moves entries by): its header checked, not its CRC.
  // False when the header fails its check.
  bool ElementForIndex(const DataFile& file, uint64_t offset, std::string_view* member, std::string_view* value) const;
  Status GetElementOnce(uint64_t inc, std::string_view member, ValueView* out) const;
  // Writer role: an element's state as the next op of the group sees it.
  CurrentValue CurrentElement(uint64_t inc, std::string_view ekey, uint64_t hash, bool need_value);
  struct GroupCollection;
  // Writer role: appends an element record (or its tombstone) of collection `inc` to the group.
  // `ekey` is the element's key (format::ElementKey), `hash` its Hash: copied as needed. `fresh`:
  // the caller knows the group holds no live record of the element (no in-place rewrite is
  // tried). Returns the group's state of the collection.
  GroupCollection& AppendElement(uint8_t pdb, std::string_view coll_key, uint8_t type, uint64_t inc,
                                 std::string_view ekey, uint64_t hash, std::string_view value, bool tombstone,
                                 bool fresh = false);
  // AppendElement's rewrite of an element record this group holds already (same value size, no
  // flush or swap since): true when done. `key` is the element key, `hash` its Hash.
  bool RewriteElementInPlace(std::string_view key, uint64_t hash, uint8_t pdb, uint8_t type, std::string_view value);
  std::string txn_element_key_;  // the group Txn's element key being looked up or written (writer role)

  // ---- recovery.cc ----
  // A data file to replay, and its hint file when that passed its checks.
  struct RecoverySource {
    std::shared_ptr<DataFile> file;
    std::unique_ptr<HintFile> hint;
  };
  Status Recover();
  // Checks every record; counts them into *records, those of large collections' elements into
  // *elements too.
  Status ValidateDataFile(const std::shared_ptr<DataFile>& file, bool newest, uint64_t* records,
                          uint64_t* elements);
  void ReplaySources(const std::vector<RecoverySource>& sources, size_t part, size_t parts,
                     Progress* progress);
  template <class Index>  // a database's Keydir or a Collection
  void ReplayRecord(Index& kd, DataFile* file, uint64_t hash, uint64_t offset, uint64_t record_size,
                    uint8_t flags, int64_t expire_at_ms, std::string_view key, int64_t now_ms);

  // ---- store.cc: reads ----
  // Finds the live record of `key`; the pin keeps its file mapped. NotFound / Corruption. `verify`
  // checks the whole record's CRC (the header is always checked).
  // The index is a database's Keydir or a Collection (store.cc instantiates both).
  // kAsWriter: the caller holds the writer role, so a database's keydir and the file table are
  // read without their locks (nothing else changes them).
  template <class Index, bool kAsWriter = false>
  Status Lookup(const Index& kd, std::string_view key, uint64_t hash, bool verify,
                std::shared_ptr<DataFile>* pin, format::RecordHeader* header, uint64_t* offset) const;
  bool RecordHasKey(const DataFile& file, uint64_t offset, std::string_view key) const;
  // The same for the key of element `member` of collection `inc` (format::AssignElementKey's
  // bytes), compared in place: no key is built.
  bool RecordHasElementKey(const DataFile& file, uint64_t offset, uint64_t inc, std::string_view member) const;
  // Calls fn(key, expire_at_ms) for the record at `loc` when it is live (or expired and now_ms is
  // INT64_MIN); false if its file was retired meanwhile or its header fails its check.
  bool VisitRecord(const Location& loc, int64_t now_ms,
                   const std::function<void(std::string_view, int64_t)>& fn) const;
  // A callable confirming that a location holds `key`; for the writer thread and recovery (it
  // reads files without pinning them, which is safe only where files are never retired).
  auto MatcherFor(std::string_view key) const {
    return [this, key](const Location& loc) {
      const DataFile* file = files_.GetRaw(loc.file);
      return file != nullptr && RecordHasKey(*file, loc.offset, key);
    };
  }

  // ---- store.cc: the writer thread ----
  void WriterLoop();
  // Runs queued requests in order; the caller holds role_mu_.
  void RunWork(std::vector<Request>& work);
  void ProcessGroup(std::vector<Request>& work, size_t begin, size_t end);
  // Writer thread: a ReadKeys op (the keyspace at its place in the group being built).
  void ReadKeys(uint8_t pdb, const KeysQuery& query, OpResult* result);
  void ExecuteOp(const WriteBatch::Op& op, OpResult* result);
  // Writer thread: a kRun op's function, given a Txn over the group being built.
  void RunOp(const WriteBatch::Op& op, OpResult* result);
  void DeleteAllKeys(OpResult* result);
  void DeleteDb(uint8_t pdb, OpResult* result);
  void SwapDbs(uint32_t a, uint32_t b, OpResult* result);
  void MoveKey(const WriteBatch::Op& op, uint8_t from, uint8_t to, OpResult* result);
  // Writer role: the physical database of logical `db` for the group being built (SWAPDB ops of
  // the group included); db 0's when out of range (the server checks ranges first).
  uint8_t GroupDb(uint32_t db) const { return db < keydirs_.size() ? group_map_[db] : group_map_[0]; }
  // The logical database whose keys physical database `pdb` holds as the group being built sees
  // it (group_map_ inverted: the group's own SWAPDB records included). What the server is told a
  // record's database is: its clients name logical databases.
  uint32_t GroupLogicalDb(uint8_t pdb) const {
    for (uint32_t db = 0; db < keydirs_.size(); ++db) {
      if (group_map_[db] == pdb) return db;
    }
    return pdb;
  }
  // The key's state as the next op of the group sees it; `need_value` when the op reads the bytes.
  CurrentValue Current(uint8_t pdb, std::string_view key, uint64_t hash, bool need_value);
  void AppendToGroup(uint8_t pdb, std::string_view key, uint64_t hash, uint8_t flags, std::string_view value,
                     int64_t expire_at_ms, uint8_t type = 0, uint8_t kind = 0);
  Status CommitGroup();
  void ApplyGroup();
  Status Rotate(uint64_t reserve);
  Status CreateActiveFile(uint64_t reserve);
  void MarkDead(const Location& loc);
  // Expiry cycle, and under everysec the file whose fdatasync is due (run by the caller after
  // giving up the role), or null.
  std::shared_ptr<DataFile> Periodic();
  void ActiveExpireCycle();
  // Drops the expired keys of one keydir shard (`expired`: scratch space); returns how many.
  // `exact`: also those due within the current second (their records read). Holding the writer
  // role.
  size_t ExpireShard(size_t pdb, size_t shard, int64_t now, bool exact,
                     std::vector<std::pair<uint64_t, Location>>* expired);
  // TrackOwnExpiries' part of the cycle: drops the remembered keys that expired, forgets those gone
  // or no longer expiring.
  void ExpireOwnKeys();
  // Writer thread: removes `key` from the keydir if its newest record has expired (no tombstone
  // needed: the expired record shadows older ones, as in ActiveExpireCycle).
  void DropExpired(uint8_t pdb, std::string_view key, uint64_t hash);
  // Any thread: queues `task` for the writer, after every request queued before; false (task not
  // queued) once the store is stopping.
  bool QueueTask(std::function<void()> task);
  // Any thread (a reader): asks the writer to drop `key`, found expired. Writer: drops them all.
  void DropExpiredLater(uint8_t pdb, std::string_view key) const;
  void DrainLazyExpired();
  Status FailStop(Status cause);
  // Runs `task` on the writer thread and waits for it; false (task not run) once the store is
  // closing, when no writer thread will take it.
  bool RunOnWriter(std::function<void()> task);
  // The fsync of SAVE; on the writer thread.
  Status SyncOnWriter();
  // fdatasync of a data file, timed into fsync_usec_. Any thread.
  Status SyncData(int fd, const std::string& path);

  // ---- compaction.cc: the background thread ----
  void BackgroundLoop();
  void WriteMissingHints();
  Status WriteHintFor(const std::shared_ptr<DataFile>& file);
  Status RunCompaction(bool manual);
  bool NeedsCompaction(const DataFile& file) const;

  uint32_t NextFileIndex() { return next_index_.fetch_add(1); }

  const Options options_;
  int lock_fd_ = -1;
  // One keydir per physical database; a record's db byte names its keydir for ever. The first
  // visible_dbs_ logical databases are the clients'; the rest (as many, when they fit) are the
  // staging databases (StagingBase).
  std::vector<std::unique_ptr<Keydir>> keydirs_;
  uint32_t visible_dbs_ = 0;
  std::atomic<uint64_t> flush_alls_{0};  // FLUSHALL ops run (writer role), for FlushAlls
  uint64_t staging_flushes_ = 0;          // FlushAlls at BeginStaging (the loading thread's)
  // After recovery: keys in a staging database are a crashed load's when its note is there (then
  // *leftover), else the directory's refusal. Empties them with a batch (writer running).
  Status CheckStaging(bool* leftover);
  Status EmptyStaging();
  // Logical database (as clients name it) -> physical, as applied (readers) ...
  std::array<std::atomic<uint8_t>, 256> db_map_{};
  // ... and as the group being built sees it (writer role), and physical -> logical as applied
  // (keyspace events of the expire cycle). Each changed only by SWAPDB.
  std::array<uint8_t, 256> group_map_{};
  std::array<uint8_t, 256> logical_of_{};
  FileTable files_;
  std::atomic<uint32_t> next_index_{1};
  bool closed_ = false;

  // The writer role: held by whoever runs groups, tasks and Periodic and so owns the writer-thread
  // state below — the writer thread, or a thread in WriteAll that found the writer idle and the
  // queue empty (it then writes its batches itself: no hand-off). Taken before queue_mu_.
  std::mutex role_mu_;
  // Writer queue.
  mutable std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::vector<Request> queue_;
  bool stopping_ = false;
  // Keys readers found expired (lazy expiry), drained by the writer before each run of requests
  // and after each group.
  // Mutable: const readers add to it.
  mutable std::mutex lazy_mu_;
  mutable std::vector<std::pair<uint8_t, std::string>> lazy_expired_;  // physical db, key
  mutable std::atomic<bool> lazy_queued_{false};  // lazy_expired_ may hold keys (set under lazy_mu_)
  std::thread writer_;

  // Writer-thread state: only the holder of role_mu_ touches it.
  std::shared_ptr<DataFile> active_;
  std::atomic<uint64_t> active_id_{0};
  uint64_t max_file_id_ = 0;
  uint64_t write_offset_ = 0;
  std::string group_buf_;
  std::vector<PendingRecord> pending_;
  // Element records of this group rewritten in place (RewriteElementInPlace): a kRun op that only
  // rewrote wrote all the same, so RunOp counts these with pending_'s growth. Writer thread.
  uint64_t group_rewrites_ = 0;
  // Ops a kRun function executed through its Txn: pending_ and overlay_ point at their keys, so
  // they live until the group completes (the pool never moves them). Writer thread.
  OpPool txn_ops_;
  GroupMap<OverlayEntry> overlay_;
  // The last key Current() found in the files, for the group being built: a script or MULTI that
  // reads a key and then updates it (GET then INCR) looks it up once. Cleared with overlay_; the
  // record it names stays valid meanwhile (only the writer changes a key's value, and the group has
  // not been applied; compaction moves records but not what they hold). It names the file by index,
  // not by a pin (two atomic operations an op less): a hit whose file was retired meanwhile looks
  // the key up again.
  struct LookupMemo {
    bool valid = false;
    bool verified = false;  // its CRC was checked
    uint64_t hash = 0;
    uint8_t db = 0;
    std::string key;
    uint32_t file = 0;
    format::RecordHeader header;
    uint64_t offset = 0;
  };
  LookupMemo memo_;
  // Large collections in the group being built: element records' state (as overlay_ for keys),
  // their keys (owned here: records and overlay entries point at them), and per incarnation the
  // change in element count and the group's element records (indexes into pending_).
  GroupMap<OverlayEntry> elem_overlay_;
  ByteArena elem_keys_;
  std::string_view last_report_key_;  // the last collection key stored in elem_keys_ (each is stored once in a row)
  struct GroupCollection {
    int64_t delta = 0;
    std::vector<uint32_t> records;
    uint64_t writes = 0;  // element writes: records, and values rewritten in place (Txn::GroupCursorValid)
  };
  uint64_t group_epoch_ = 0;  // Txn::GroupEpoch: a new one at each ForgetWrittenKeys (every group start)
  std::unordered_map<uint64_t, GroupCollection> group_colls_;
  // The entry of group_colls_ AppendElement wrote last (a pipeline's element writes mostly go to
  // one collection: a map lookup each cost ~110 instructions, three a list pop); the map's
  // references survive its inserts. Null once the map is cleared.
  uint64_t group_coll_last_inc_ = 0;
  GroupCollection* group_coll_last_ = nullptr;
  // Forgets the keys the group wrote (overlay_) and memo_; ClearGroup also drops its records and a
  // script's ops: the state of no group being built.
  void ForgetWrittenKeys();
  void ClearGroup();
  // The group being built holds a FLUSHALL: the keydir is as good as empty to its later ops (only
  // the overlay, cleared at the flush, holds keys).
  std::bitset<256> flushed_;  // physical databases a FLUSHDB / FLUSHALL of the group emptied
  bool group_swapped_ = false;  // the group holds a SWAPDB
  int64_t group_now_ms_ = 0;  // the clock for every op of the group being built (one read)
  uint64_t group_last_record_ = 0;  // offset in group_buf_ of its last record (CommitGroup ends the group there)
  // Offset in group_buf_ just past its last FLUSHALL / FLUSHDB / SWAPDB record: an element record
  // before it is never rewritten in place (AppendElement), since the flush or swap follows it.
  uint64_t group_barrier_ = 0;
  bool dirty_ = false;  // written since the last fsync
  int64_t last_sync_ms_ = 0;
  int64_t last_expire_ms_ = 0;
  size_t expire_cursor_ = 0;
  Status failed_;                 // set once an fsync failed: every later write fails with it
  Status last_write_error_;       // the last group commit's failure, until one succeeds (failed_mu_)
  std::atomic<bool> write_error_set_{false};  // last_write_error_ is not OK (writer role)
  mutable std::mutex failed_mu_;  // guards failed_ for GetStats

  // Background thread.
  std::mutex bg_mu_;
  std::condition_variable bg_cv_;
  bool bg_stopping_ = false;
  std::vector<std::function<void(const Status&)>> compact_waiters_;
  std::thread background_;

  std::atomic<bool> active_expire_{true};
  std::atomic<bool> name_expired_{false};  // call options_.on_expired (NameExpiredKeys)
  std::atomic<bool> report_expired_in_groups_{false};  // call options_.on_expired_in_group
  bool current_sees_expired_ = false;  // writer role: WriteBatch::sees_expired of the batch whose ops run
  std::atomic<bool> track_own_expiries_{false};  // TrackOwnExpiries
  // Writer role: the keys TrackOwnExpiries remembers, each its physical database's byte + the key.
  std::unordered_set<std::string> own_expiring_;
  std::atomic<bool> report_writes_{false};  // call options_.on_written (ReportWrites)
  uint64_t current_origin_ = 0;  // writer role: the origin of the batch whose ops run
  std::vector<uint64_t> deferring_origins_;  // writer role: the group's batches that defer wake-ups
  size_t batch_began_ = 0;  // writer role: pending_.size() when the batch whose ops run began (Txn::BatchBegan)
  std::vector<Options::WrittenKey> written_;  // writer role: on_written's argument, reused
  // Keys the group's ops named changed without a record (Txn::Touch), each with the number of
  // records the group held then (its place among them). Writer role; cleared with the group.
  struct TouchedKey {
    size_t at;
    uint64_t origin;
    uint32_t db;
    std::string key;
  };
  std::vector<TouchedKey> touched_;
  std::atomic<bool> expiry_paused_{false};
  // Odd while ApplyGroup changes the keydir for a group of several records: readers (Stable) retry
  // a lookup that overlapped a change, so none sees part of a group.
  alignas(64) std::atomic<uint64_t> apply_seq_{0};
  // ReadTogether's last resort: ApplyGroup holds it exclusively while it applies a group, and reads
  // that groups kept landing beside (a walk of a large collection under a steady stream of writes)
  // run holding it shared, so between two groups — the writer waits for them, as every client of
  // Redis waits for its HGETALL. Order: before walk_mu and collections_mu_.
  mutable std::shared_mutex apply_gate_;
  std::atomic<uint32_t> apply_pause_us_{0};

  // Counters.
  std::atomic<uint64_t> expired_keys_{0};
  std::atomic<uint64_t> compactions_{0};
  std::atomic<uint64_t> compaction_reclaimed_{0};
  std::atomic<int64_t> last_compaction_ms_{0};
  std::atomic<int64_t> compaction_total_ms_{0};
  // Automatic compaction's failures in a row and the last one's text (background thread; read by
  // GetStats): retries back off exponentially.
  std::atomic<uint64_t> compaction_failures_{0};
  std::atomic<uint64_t> compaction_rounds_{0};
  mutable std::mutex compaction_error_mu_;
  std::string compaction_error_;
  std::chrono::milliseconds AutoCompactionDelay() const;
  void NoteAutoCompaction(const Status& s);
  std::atomic<uint64_t> compaction_bytes_read_{0};
  std::atomic<uint64_t> compaction_bytes_written_{0};
  std::atomic<uint64_t> bytes_written_{0};
  std::atomic<uint64_t> groups_{0};
  std::atomic<uint64_t> group_records_{0};
  AtomicHistogram group_size_;
  AtomicHistogram fsync_usec_;
  std::atomic<int64_t> recovery_ms_{0};
  std::atomic<uint64_t> recovery_records_{0};
  std::atomic<uint64_t> recovery_hint_files_{0};
  std::atomic<uint64_t> expire_cycle_us_{0};
  std::atomic<uint64_t> expire_time_cap_reached_{0};
  // Recovery: the end of the last FLUSHALL record replayed (thread 0 of the replay writes it).
  struct FlushMark {
    DataFile* file = nullptr;
    uint64_t end = 0;
  };
  FlushMark last_flush_;
  // Recovery: the database map of the last SWAPDB record replayed (thread 0 of the replay), and
  // whether a data file without a file header record (format 1) was found.
  std::array<uint8_t, 256> replay_map_{};
  bool replay_swapped_ = false;
  std::atomic<uint32_t> replay_max_db_{0};  // the largest db byte seen past the databases
  bool saw_format1_ = false;  // phase 1 (one thread)
  // Records found dead without reading them (the expire cycle): their sizes are added to their
  // files' dead_bytes by the background thread, which may wait for the disk.
  std::mutex dead_later_mu_;
  std::vector<Location> dead_later_;
  void MarkDeadLater(const Location& loc);
  void DrainDeadLater();
  // Large collections: incarnation -> element index. Changed by the writer role (and recovery)
  // under collections_mu_ exclusively; readers and compaction look up under it shared.
  mutable std::shared_mutex collections_mu_;
  std::unordered_map<uint64_t, std::shared_ptr<Collection>> collections_;
  uint64_t next_incarnation_ = 1;              // writer role
  std::vector<uint64_t> maybe_dead_;           // writer role: incarnations to check after a group
  std::atomic<uint64_t> replay_max_inc_{0};    // recovery: the largest incarnation any record names
  // Collections dropped (deleted, expired, flushed): the background thread adds their records to
  // their files' dead bytes (unless a FLUSHALL counted them) and frees them (dead_later_mu_).
  std::vector<std::pair<std::shared_ptr<Collection>, bool>> dropped_;
  // Cold reads: set by SweepResidency; true until the first sweep (nothing is known yet).
  std::atomic<bool> maybe_cold_{true};
  // Set by DropPageCache, cleared by the first sweep that finds every page back: until then a
  // sweep reads nothing back (SweepResidency).
  std::atomic<bool> pages_dropped_{false};
  // One sweep at a time (the sweeper thread's, DropPageCache's): a sweep that began before a drop
  // must not end after it and clear pages_dropped_ with what it saw before.
  std::mutex sweep_mu_;
  std::atomic<uint64_t> pages_read_back_{0};  // by sweeps, in all
};

}  // namespace keg::store
