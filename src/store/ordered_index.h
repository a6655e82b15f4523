// OrderedIndex: a large sorted set's members in order (docs/types.md, "Sorted sets"): by score,
// then by member bytes (memcmp, a prefix first), as Redis's skiplist orders them.
//
// Each entry is 16 bytes: the score and the packed location of the member's element record. No
// member is kept in RAM: when two scores tie, the order is settled by reading both members from
// their records (a MemberFn the caller passes, which reads the mapped data files). The entries
// live in chunks of up to kChunk entries, each chunk sorted and the chunks in order; a Fenwick
// tree over the chunk sizes gives ranks and positions in O(log n). Chunks split when full and
// merge with a neighbour when under a quarter full, so they stay about 3/4 full: ~21 bytes per
// member. The first and last chunks do not merge: pops from either end (ZPOPMIN, ZPOPMAX) empty
// them, and an emptied end chunk goes in O(1) — the last is dropped, the first retired in place
// (chunks [0, head_) are retired, of size 0 in the tree, and dropped together once they are half
// of the array) — where removing a chunk from the array rebuilt the tree, O(chunks).
//
// Thread: not synchronised. The store's writer role mutates it while holding the collection's
// walk lock exclusively; readers hold that lock shared.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "store/function_ref.h"

namespace keg::store {

class OrderedIndex {
 public:
  struct Entry {
    double score;
    uint64_t loc;  // Location::Pack() of the element record
  };
  /// The member of the element record at `loc` (valid while the caller keeps the files mapped).
  using MemberFn = std::function<std::string_view(uint64_t loc)>;
  /// A predicate true for a prefix of the order and false after it.
  using Before = FunctionRef<bool(const Entry&)>;

  OrderedIndex() = default;
  OrderedIndex(const OrderedIndex&) = delete;
  OrderedIndex& operator=(const OrderedIndex&) = delete;

  size_t Size() const { return size_; }
  size_t MemoryBytes() const;

  /// The number of leading entries for which `before` holds: O(log n) calls of it.
  size_t PartitionPoint(Before before) const;
  /// The number of entries scored below `score` (at most `score` when `inclusive`): PartitionPoint
  /// on scores alone, its comparisons inline (ZRANGEBYSCORE's bounds, ZCOUNT, the GEO cells).
  size_t CountBelow(double score, bool inclusive) const;
  /// The entry at position `pos` (< Size()).
  Entry At(size_t pos) const;
  /// Calls fn for the entries at positions [from, to) in order while it returns true.
  void ForRange(size_t from, size_t to, FunctionRef<bool(const Entry&)> fn) const;

  /// Inserts (score, member) at `loc`.
  void Insert(double score, std::string_view member, uint64_t loc, const MemberFn& member_of);
  /// Removes the entry of (score, member) that points at `loc`: false when there is none.
  bool Erase(double score, std::string_view member, uint64_t loc, const MemberFn& member_of);
  /// Compaction moved (score, member)'s record from `from` to `to`: repoints the entry when it
  /// still points at `from`.
  bool Repoint(double score, std::string_view member, uint64_t from, uint64_t to, const MemberFn& member_of);
  /// Replaces the whole contents with `entries`, which must be in order (recovery).
  void Assign(std::vector<Entry> entries);

  /// Whether entry `e` orders before (score, member).
  static bool Less(const Entry& e, double score, std::string_view member, const MemberFn& member_of) {
    if (e.score != score) return e.score < score;
    return member_of(e.loc) < member;
  }

 private:
  // The first entry for which `before` (a prefix predicate, inline) does not hold: its chunk and
  // index in it. False when there is none (*chunk, *at: the end of the last chunk, if any).
  template <class Pred>
  bool LocateIf(const Pred& before, size_t* chunk, size_t* at) const;
  // PartitionPoint with the predicate inline (ordered_index.cc).
  template <class Pred>
  size_t PartitionPointIf(const Pred& before) const;
  static constexpr size_t kChunk = 256;
  static constexpr int kEraseScan = 8;  // entries of a score Erase checks by location alone
  struct Chunk {
    uint32_t n = 0;
    Entry e[kChunk];
  };
  // The first entry not before (score, member): its chunk and index in it (LocateIf).
  bool Find(double score, std::string_view member, const MemberFn& member_of, size_t* chunk, size_t* at) const;
  void Locate(size_t pos, size_t* chunk, size_t* at) const;  // pos < size_
  void Rebuild();                                            // the Fenwick tree, from the chunks
  void Add(size_t chunk, int64_t delta);                     // Fenwick update
  size_t Prefix(size_t chunk) const;                         // entries in chunks [0, chunk)
  void RemoveAt(size_t chunk, size_t at);
  void DropChunk(size_t chunk);  // removes an empty chunk

  std::vector<std::unique_ptr<Chunk>> chunks_;  // [0, head_) retired (null), the rest live
  size_t head_ = 0;
  std::vector<int64_t> fenwick_;  // 1-based over chunks_' sizes
  size_t size_ = 0;
};

}  // namespace keg::store
