// Keydir: the in-memory index from key to the location of its newest live record.
//
// Keys are not kept in RAM. Each entry is 16 bytes: a 64-bit hash of the key under a per-process
// random secret (so peers cannot choose colliding keys), and the record's packed location. A
// lookup finds the entries with the key's hash, and the caller confirms the key against the record
// in the memory-mapped data file — which a GET reads anyway, since the value follows the key.
// An entry whose record expires keeps 32 bits of the hash (the top 6 that pick the shard and the
// low 26 that pick the home slot) and the expiry in seconds in the other 32: matching on 32 bits
// of the hash within one probe run almost never yields a second candidate, the record confirms
// the key anyway, and keys with a TTL cost no more memory than keys without.
//
// The table is split into 64 shards, each an open-addressing table (linear probing, deletion by
// backward shift, grown at 80% load) behind a reader/writer lock. Tables of 2 MiB and more ask for
// transparent huge pages: lookups are random, and TLB misses would otherwise dominate them.
//
// Thread: Find, Size and ForEachInShard may be called from any thread. Upsert, Erase,
// ReplaceIfAt and EraseIfAt are for the store's writer thread (one mutator at a time), which is
// what makes check-then-act sequences such as NX / XX atomic.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <shared_mutex>
#include <utility>
#include <string_view>
#include <vector>

#include "store/rw_spin_lock.h"

namespace keg::store {

/// A record's place: runtime file index (23 bits), offset in the file (40 bits), and whether the
/// record carries an expiry (1 bit), packed in 64 bits. With an expiry, the keydir also keeps its
/// time in whole seconds rounded up (expire_s, in the entry's hash word: see Keydir), so the
/// active expire cycle finds expired keys without reading a record.
struct Location {
  uint32_t file = 0;
  uint64_t offset = 0;
  bool expires = false;
  uint32_t expire_s = 0;  ///< when expires: ceil(expire_at_ms / 1000), clamped to [1, 2^32 - 1]

  static constexpr uint32_t kMaxFile = (1u << 23) - 1;
  /// expire_s for a record's expire_at_ms: a key is certainly expired once now_ms >= expire_s * 1000.
  static uint32_t ExpireSeconds(int64_t expire_at_ms) {
    if (expire_at_ms <= 1000) return 1;
    const int64_t s = expire_at_ms / 1000 + (expire_at_ms % 1000 != 0 ? 1 : 0);  // no overflow at INT64_MAX
    return s >= int64_t{UINT32_MAX} ? UINT32_MAX : static_cast<uint32_t>(s);
  }

  uint64_t Pack() const { return (uint64_t{expires} << 63) | (uint64_t{file} << 40) | offset; }
  static Location Unpack(uint64_t v) {
    return {static_cast<uint32_t>((v >> 40) & kMaxFile), v & ((1ull << 40) - 1), (v >> 63) != 0};
  }
  bool SameRecord(const Location& o) const { return file == o.file && offset == o.offset; }
};

/// Room for N locations, left uninitialised: a `Location[N]` is zeroed where it is declared, which
/// on a key lookup's path writes 24 * N bytes for nothing (LRANGE of 100: the largest single cost of
/// reading its elements). Index lookups write the locations they return; read only those.
template <size_t N>
struct LocationBuffer {
  LocationBuffer() {}  // `at` is not initialised
  union {
    Location at[N];
  };
  operator Location*() { return at; }
  operator const Location*() const { return at; }
};

class Keydir {
 public:
  static constexpr size_t kShards = 64;

  /// `secret_seed` seeds the hash secret (random per process in the server; fixed in tests).
  explicit Keydir(uint64_t secret_seed);
  Keydir(const Keydir&) = delete;
  Keydir& operator=(const Keydir&) = delete;

  /// The keyed 64-bit hash of `key` (never 0).
  uint64_t Hash(std::string_view key) const;

  /// Confirms that the record at a location holds the key being looked for. A non-owning reference
  /// to any callable `bool(const Location&)`; the callable must outlive the call it is passed to.
  class KeyMatcher {
   public:
    template <typename F>
    KeyMatcher(const F& f)  // NOLINT: implicit, like std::function_ref
        : object_(&f),
          call_([](const void* o, const Location& l) { return (*static_cast<const F*>(o))(l); }) {}
    bool operator()(const Location& loc) const { return call_(object_, loc); }

   private:
    const void* object_;
    bool (*call_)(const void*, const Location&);
  };

  /// Collects up to `max` locations stored under `hash` (almost always 0 or 1), in probe order;
  /// the walk stops once it has `max`, so a lookup that asks for one first and finds its key
  /// there does not walk the rest of the probe run. Any thread.
  size_t FindCandidates(uint64_t hash, Location* out, size_t max) const;
  /// The same without the shard's read lock (two atomic operations a lookup): only while no other
  /// thread mutates the keydir (the writer role, its one mutator, or recovery).
  size_t FindCandidatesUnlocked(uint64_t hash, Location* out, size_t max) const;

  /// Writer thread: points `key` (hash + matcher) at `loc`. Returns true and sets *old when the key
  /// was present (its previous location), false when it was inserted.
  bool Upsert(uint64_t hash, const KeyMatcher& is_key, Location loc, Location* old);

  /// Writer thread: Upsert of a key whose entry the caller saw at `expected` (its lookup in the
  /// same group): found by location, so no record is read to compare keys. False, changing
  /// nothing, when no entry under `hash` points there any more (compaction moved it): the caller
  /// then upserts by key.
  bool ReplaceAt(uint64_t hash, const Location& expected, Location loc, Location* old);

  /// Writer thread: removes `key`; returns true and sets *old when it was present.
  bool Erase(uint64_t hash, const KeyMatcher& is_key, Location* old);

  /// Writer thread: if the entry under `hash` still points at the record `expected`, points it at
  /// `loc` instead (compaction moving a record). Returns whether it did.
  bool ReplaceIfAt(uint64_t hash, const Location& expected, Location loc);

  /// Writer thread: removes the entry under `hash` pointing at record `expected` (an expired key).
  bool EraseIfAt(uint64_t hash, const Location& expected);

  /// Starts loading the cache line where `hash` would be found. Only while no other thread
  /// mutates the keydir (recovery, or the writer role, its one mutator), since it reads the table
  /// without the lock.
  void Prefetch(uint64_t hash) const {
    const Shard& shard = ShardFor(hash);
    __builtin_prefetch(shard.slots.data() + Home(hash, shard.slots.size() - 1));
  }

  /// The same from any thread: takes the shard's read lock to find the table.
  void PrefetchLocked(uint64_t hash) const {
    const Shard& shard = ShardFor(hash);
    std::shared_lock lock(shard.mu);
    __builtin_prefetch(shard.slots.data() + Home(hash, shard.slots.size() - 1));
  }

  /// The shard of a hash (recovery splits the work by shard between threads).
  static size_t ShardOf(uint64_t hash) { return hash >> 58; }

  /// Number of keys. Any thread.
  size_t Size() const { return size_.load(std::memory_order_relaxed); }
  /// Bytes of memory held by the tables.
  size_t MemoryBytes() const { return memory_.load(std::memory_order_relaxed); }

  /// Calls fn(hash, location) for every entry of shard `shard`, holding its read lock; fn must not
  /// call back into the keydir. For an entry with an expiry, `hash` is its stored form (32 bits of
  /// the hash and the expiry), which Find/Erase/ReplaceIfAt accept as the hash. Any thread.
  void ForEachInShard(size_t shard, const std::function<void(uint64_t, const Location&)>& fn) const;

  /// SCAN: appends to `out` every entry of `shard` whose home bucket is `*cursor`'s, then advances
  /// `*cursor` in reverse-binary order over the table's bits (Redis's dictScan). Tables only grow,
  /// so an entry present for a whole iteration is returned at least once (maybe more). Returns
  /// true when the shard is done (the cursor wrapped to 0). Any thread.
  bool ScanBucket(size_t shard, uint64_t* cursor,
                  std::vector<std::pair<uint64_t, Location>>* out) const;

  /// RANDOMKEY: the first entry at or after a slot picked from `random`; false when empty.
  bool RandomEntry(uint64_t random, uint64_t* hash, Location* loc) const;

  /// Number of entries whose record carries an expiry. Any thread.
  size_t Expiring() const { return expiring_.load(std::memory_order_relaxed); }

  /// Writer thread (or recovery, each thread its own shards): empties the shards whose index is
  /// `part` modulo `parts` (FLUSHALL: all of them with part 0, parts 1), giving their memory back.
  void ClearShards(size_t part, size_t parts);

  /// Writer thread, before anyone reads: pre-sizes the tables for about `keys` keys (recovery).
  void Reserve(size_t keys);

 private:
  struct Slot {
    uint64_t hash;  // 0: empty. With an expiry: kKeptHash bits of the hash | expire_s << 26
    uint64_t loc;
  };
  static constexpr uint64_t kKeptHash = 0xFC00000003FFFFFFull;  // shard bits, home-slot bits
  static constexpr uint64_t kHomeBits = 0x3FFFFFFull;          // tables of up to 2^26 slots a shard
  static uint64_t Tag(uint64_t hash, const Location& loc) {
    // expire_s is at least 1, so the word is never 0 (an empty slot).
    return loc.expires ? (hash & kKeptHash) | (uint64_t{loc.expire_s > 0 ? loc.expire_s : 1u} << 26) : hash;
  }
  static bool Matches(const Slot& s, uint64_t hash) {
    return (s.loc >> 63) != 0 ? ((s.hash ^ hash) & kKeptHash) == 0 : s.hash == hash;
  }
  static Location LocationOf(const Slot& s) {
    Location l = Location::Unpack(s.loc);
    if (l.expires) l.expire_s = static_cast<uint32_t>(s.hash >> 26);
    return l;
  }
  static size_t Home(uint64_t hash, size_t mask) { return hash & kHomeBits & mask; }
  // Slot storage: a power-of-two array, huge-page backed when large.
  class SlotArray {
   public:
    SlotArray() = default;
    explicit SlotArray(size_t n);
    ~SlotArray();
    SlotArray(SlotArray&& o) noexcept : data_(o.data_), size_(o.size_) {
      o.data_ = nullptr;
      o.size_ = 0;
    }
    SlotArray& operator=(SlotArray&& o) noexcept;
    SlotArray(const SlotArray&) = delete;
    SlotArray& operator=(const SlotArray&) = delete;
    Slot& operator[](size_t i) { return data_[i]; }
    const Slot& operator[](size_t i) const { return data_[i]; }
    Slot* data() const { return data_; }
    size_t size() const { return size_; }
    Slot* begin() const { return data_; }
    Slot* end() const { return data_ + size_; }

   private:
    Slot* data_ = nullptr;
    size_t size_ = 0;
  };
  struct alignas(64) Shard {
    mutable RwSpinLock mu;
    SlotArray slots;
    size_t count = 0;
  };

  Shard& ShardFor(uint64_t hash) { return shards_[ShardOf(hash)]; }
  const Shard& ShardFor(uint64_t hash) const { return shards_[ShardOf(hash)]; }
  void Resize(Shard& shard, size_t capacity);
  // FindCandidates's walk of the probe run; the caller holds shard.mu or the writer role.
  static size_t Probe(const Shard& shard, uint64_t hash, Location* out, size_t max);
  // The index of the entry under `hash` whose location satisfies `match`, or kNoSlot. The caller
  // holds shard.mu.
  static constexpr size_t kNoSlot = static_cast<size_t>(-1);
  template <typename Match>
  static size_t FindSlot(const Shard& shard, uint64_t hash,
                         const Match& match);  // holds shard.mu exclusively
  void RemoveAt(Shard& shard, size_t index);
  void CountExpiring(const Location& loc, bool added) {
    if (loc.expires) {
      if (added) expiring_.fetch_add(1, std::memory_order_relaxed);
      else expiring_.fetch_sub(1, std::memory_order_relaxed);
    }
  }

  std::array<uint8_t, 192> secret_;  // XXH3 secret
  std::array<Shard, kShards> shards_;
  std::atomic<size_t> size_{0};
  std::atomic<size_t> memory_{0};
  std::atomic<size_t> expiring_{0};
};

}  // namespace keg::store
