// ElementIndex: the in-RAM index of one large collection's elements (docs/types.md), from an
// element record's key hash to the record's location, confirmed against the record as the keydir
// confirms keys.
//
// Each entry is 12 bytes: 32 bits of the hash (never 0: 0 marks an empty slot) and the location
// (file and offset, 63 bits; element records never expire). Open addressing with linear probing
// and backward-shift deletion, like the keydir, but with Robin Hood insertion (a run keeps its
// entries in the order of their homes, so a lookup stops at the first entry homed after its own),
// and an entry's home slot is fastrange(tag, n) — monotonic in the tag — so the table may have
// any size: it grows by half at 85 % load, keeping
// the load between about 57 % and 85 % (at most 21 bytes per element, about 17 on average), where
// doubling a power-of-two table would leave it as low as 40 % (30 bytes). Scans walk tags in
// order, so SCAN's cursor is a tag, which growing never invalidates: an element present for a
// whole scan is returned exactly once (a cursor never splits equal tags).
//
// Thread: FindCandidates, FindEach, Size, MemoryBytes, ForEach, Scan and RandomEntry from any thread (under
// the index's read lock); Upsert, Erase and ReplaceIfAt from one mutator at a time (the store's
// writer role, or recovery's replay threads, which the lock serialises).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "store/function_ref.h"
#include "store/keydir.h"
#include "store/rw_spin_lock.h"

namespace keg::store {

class ElementIndex {
 public:
  ElementIndex();
  ~ElementIndex();
  ElementIndex(const ElementIndex&) = delete;
  ElementIndex& operator=(const ElementIndex&) = delete;

  /// Collects up to `max` locations stored under `hash` (almost always 0 or 1), in probe order,
  /// stopping once it has `max` (as Keydir::FindCandidates).
  size_t FindCandidates(uint64_t hash, Location* out, size_t max) const;
  /// FindCandidates for each of `hashes` under one hold of the read lock, every probe's first
  /// slot loaded ahead before the first is walked: calls fn(i, location) for each entry stored
  /// under hashes[i]. For compaction's liveness checks, whose random probes of a large index are
  /// cache misses one after another otherwise. fn must not call back into the index.
  void FindEach(std::span<const uint64_t> hashes, FunctionRef<void(size_t, const Location&)> fn) const;
  /// Points the element (hash + matcher) at `loc`: true and *old when it was present.
  bool Upsert(uint64_t hash, const Keydir::KeyMatcher& is_key, Location loc, Location* old);
  /// Removes the element: true and *old when it was present.
  bool Erase(uint64_t hash, const Keydir::KeyMatcher& is_key, Location* old);
  /// If the entry under `hash` still points at `expected`, points it at `loc` (compaction).
  bool ReplaceIfAt(uint64_t hash, const Location& expected, Location loc);

  size_t Size() const { return size_.load(std::memory_order_relaxed); }
  size_t MemoryBytes() const { return memory_.load(std::memory_order_relaxed); }

  /// Calls fn(location) for every entry, holding the read lock; fn must not call back.
  void ForEach(const std::function<void(const Location&)>& fn) const;
  /// HSCAN / SSCAN: appends the locations of the entries whose tag is at or past `*cursor`, in tag
  /// order, about `count` of them (never splitting a tag), and sets `*cursor` to the next tag to
  /// ask for, or 0 when the scan is done (start with 0).
  void Scan(uint64_t* cursor, size_t count, std::vector<Location>* out) const;
  /// The first entry at or after a slot picked from `random`; false when empty.
  bool RandomEntry(uint64_t random, Location* loc) const;

 private:
  struct Slot {
    uint32_t tag;  // 0: empty
    uint32_t lo;   // the packed location, low and high halves (12-byte slots: no padding)
    uint32_t hi;
  };
  static_assert(sizeof(Slot) == 12);
  static uint32_t TagOf(uint64_t hash) {
    const auto t = static_cast<uint32_t>(hash >> 32);
    return t == 0 ? 1 : t;
  }
  size_t Home(uint32_t tag) const { return static_cast<size_t>((uint64_t{tag} * capacity_) >> 32); }
  static Location LocationOf(const Slot& s) { return Location::Unpack(uint64_t{s.hi} << 32 | s.lo); }
  static Slot SlotFor(uint32_t tag, const Location& loc) {
    const uint64_t packed = Location{loc.file, loc.offset, false, 0}.Pack();
    return Slot{tag, static_cast<uint32_t>(packed), static_cast<uint32_t>(packed >> 32)};
  }
  size_t Next(size_t i) const { return i + 1 == capacity_ ? 0 : i + 1; }
  // How far slot i lies past `home` (a run may wrap from the table's end to its start).
  size_t Distance(size_t i, size_t home) const { return i >= home ? i - home : i + capacity_ - home; }
  void Place(Slot slot);  // holds mu_ exclusively; a free slot exists
  template <typename Match>
  // The first slot of `tag`'s probe run holding `tag` whose location `match` accepts (each entry
  // with the tag is offered in turn); kNoSlot when none. Holds mu_.
  size_t FindSlot(uint32_t tag, const Match& match) const;
  void RemoveAt(size_t i);                                   // holds mu_ exclusively
  void Grow();                                               // holds mu_ exclusively
  void Allocate(size_t capacity);

  static constexpr size_t kNoSlot = static_cast<size_t>(-1);
  mutable RwSpinLock mu_;
  Slot* slots_ = nullptr;
  size_t capacity_ = 0;
  size_t count_ = 0;  // under mu_
  std::atomic<size_t> size_{0};
  std::atomic<size_t> memory_{0};
};

}  // namespace keg::store
