// PositionIndex: the in-RAM index of one large list's elements (docs/types.md, "Lists"), from an
// element's position to its record's location. It replaces the ElementIndex for lists: a list's
// members are its positions (8 bytes, big endian) and they are contiguous, so a position names its
// slot directly — no hash, no probing, no confirming read — and a run of 64 positions whose records
// share a data file (the common case: pushes append) costs 4 bytes each (the offset in that file)
// plus 16 bytes of header, about 4.5 bytes per element in all where the element index spends 17–21.
//
// Layout: a deque of chunks of 64 slots, chunk number = position / 64, the first chunk's number in
// `base_`. A chunk is narrow (one file, u32 offsets) until a slot's record lies in another file or
// past 4 GiB, then wide (packed 8-byte locations); a wide chunk narrows again once its slots share
// a file (compaction moves a chunk's records together). Emptied chunks are freed and the deque
// trimmed at both ends, so a queue that pushes on one side and pops on the other stays the size of
// its contents. A position far outside the deque's span (which the server never writes: its
// positions stay contiguous, and recovery replays one list's records in log order) goes to a small
// spill map instead of stretching the deque. The list's meta element (member "") has a slot of its
// own. A member of another size is not indexed (no list record has one).
//
// Thread: Find, Size, MemoryBytes and ForEach from any thread (under the index's read lock);
// Upsert, Erase and ReplaceIfAt from one mutator at a time (the writer role, or recovery's replay).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "store/keydir.h"
#include "store/rw_spin_lock.h"

namespace keg::store {

class PositionIndex {
 public:
  PositionIndex() = default;
  ~PositionIndex();
  PositionIndex(const PositionIndex&) = delete;
  PositionIndex& operator=(const PositionIndex&) = delete;

  /// The location of the element whose member is `member`: false when absent.
  bool Find(std::string_view member, Location* out) const;
  /// Find of each of `members` under one hold of the lock (LRANGE's batch): found[i] is 1 with
  /// out[i] set, or 0.
  void FindMany(std::span<const std::string_view> members, Location* out, uint8_t* found) const;
  /// Find of the positions first .. first + n - 1 under one hold of the lock (LRANGE's cold
  /// check): found[i] is 1 with out[i] set, or 0.
  void FindPositions(uint64_t first, size_t n, Location* out, uint8_t* found) const;
  /// Points the element at `loc`: true and *old when it was present. False, not indexed, for a
  /// member that is neither a position nor the meta member.
  bool Upsert(std::string_view member, Location loc, Location* old);
  /// Removes the element: true and *old when it was present.
  bool Erase(std::string_view member, Location* old);
  /// If the element still points at `expected`, points it at `loc` (compaction).
  bool ReplaceIfAt(std::string_view member, const Location& expected, Location loc);

  /// Entries, the meta element's included.
  size_t Size() const { return size_.load(std::memory_order_relaxed); }
  size_t MemoryBytes() const { return memory_.load(std::memory_order_relaxed); }
  /// Calls fn(location) for every entry (the meta element first, then in position order), holding
  /// the read lock; fn must not call back.
  void ForEach(const std::function<void(const Location&)>& fn) const;
  /// A scan in position order: appends about `count` locations from `*cursor` on and sets
  /// `*cursor` to where to go on, 0 when done (start with 0). The meta element is not scanned.
  void Scan(uint64_t* cursor, size_t count, std::vector<Location>* out) const;
  /// The lowest position held (the deque's; far positions aside) and how many positions are held
  /// (the meta element not counted): false when none. A list's positions are contiguous, so its
  /// element i is at *first + i.
  bool Bounds(uint64_t* first, uint64_t* count) const;
  /// Some entry picked from `random`; false when empty.
  bool RandomEntry(uint64_t random, Location* loc) const;

  /// The member of position `pos` (8 bytes, big endian); false for any other member.
  static bool PositionOf(std::string_view member, uint64_t* pos);

  static constexpr unsigned kShift = 6;
  static constexpr size_t kSlots = size_t{1} << kShift;

 private:
  struct Chunk {
    uint64_t present;  // bit i: slot i holds a location
    uint32_t file;     // narrow: the data file of every slot
    uint32_t wide;     // 0: u32 offsets in `file` follow; 1: packed Locations (u64) follow
    uint32_t* offsets() { return reinterpret_cast<uint32_t*>(this + 1); }
    const uint32_t* offsets() const { return reinterpret_cast<const uint32_t*>(this + 1); }
    uint64_t* packed() { return reinterpret_cast<uint64_t*>(this + 1); }
    const uint64_t* packed() const { return reinterpret_cast<const uint64_t*>(this + 1); }
    Location At(size_t i) const;
  };
  static_assert(sizeof(Chunk) == 16);
  static size_t ChunkBytes(bool wide) { return sizeof(Chunk) + kSlots * (wide ? 8 : 4); }
  Chunk* NewChunk(bool wide);
  void FreeChunk(Chunk* c);
  // Holding mu_ exclusively: stores `loc` in slot i of *c (widening or narrowing it as needed).
  void Store(Chunk*& c, size_t i, const Location& loc);
  // Holding mu_ exclusively: the chunk slot for chunk number `n`, extending the deque to reach it;
  // null when `n` is too far outside the deque (the position goes to far_).
  Chunk** SlotFor(uint64_t n);
  // Holding mu_: the chunk whose slot *i holds `pos`; null when no chunk does (it may be in far_:
  // a far position stays there even once the deque grows to reach it).
  Chunk** Holding(uint64_t pos, size_t* i) const;
  bool FindLocked(std::string_view member, Location* out) const;  // holding mu_ (shared)
  bool FindPositionLocked(uint64_t pos, Location* out) const;       // holding mu_ (shared)
  void Trim();                                // holding mu_ exclusively: drops empty ends
  void Account();                             // holding mu_ exclusively: refreshes memory_

  mutable RwSpinLock mu_;
  std::deque<Chunk*> chunks_;  // under mu_; null: no entry in that chunk
  uint64_t base_ = 0;          // chunk number of chunks_[0]
  std::unordered_map<uint64_t, uint64_t> far_;  // position -> packed location, outside the deque
  size_t chunk_bytes_ = 0;                      // under mu_
  bool has_meta_ = false;
  Location meta_;
  std::atomic<size_t> size_{0};
  std::atomic<size_t> memory_{0};
};

}  // namespace keg::store
