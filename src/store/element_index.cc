#include "store/element_index.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <shared_mutex>

#include "store/table_memory.h"

namespace keg::store {
namespace {

constexpr size_t kInitialCapacity = 16;

}  // namespace

ElementIndex::ElementIndex() = default;

ElementIndex::~ElementIndex() { FreeTable(slots_, capacity_ * sizeof(Slot)); }

void ElementIndex::Allocate(size_t capacity) {
  slots_ = static_cast<Slot*>(AllocateTable(capacity * sizeof(Slot)));  // tag 0: empty
  capacity_ = capacity;
}

template <typename Match>
size_t ElementIndex::FindSlot(uint32_t tag, const Match& match) const {
  if (capacity_ == 0) return kNoSlot;
  // The run ends at an empty slot or at the first entry homed after `tag`'s (its order: see Place).
  for (size_t i = Home(tag), d = 0;; i = Next(i), ++d) {
    const Slot& s = slots_[i];
    if (s.tag == 0 || Distance(i, Home(s.tag)) < d) return kNoSlot;
    if (s.tag == tag && match(LocationOf(s))) return i;
  }
}

size_t ElementIndex::FindCandidates(uint64_t hash, Location* out, size_t max) const {
  if (max == 0) return 0;
  std::shared_lock lock(mu_);
  size_t n = 0;
  FindSlot(TagOf(hash), [&](const Location& loc) {
    out[n++] = loc;
    return n == max;
  });
  return n;
}

void ElementIndex::Place(Slot slot) {
  // Robin Hood insertion: walking from the entry's home, it takes the first slot that is empty or
  // holds an entry closer to its own home, and that entry moves on in its place. So every run
  // holds its entries in the order of their homes, and a lookup stops at the first entry homed
  // after its own (FindSlot). Plain linear probing walked every lookup to the run's end: at 85 %
  // load about 20 slots (compaction's liveness checks of a 100,000-field hash read 35 a record).
  size_t d = 0;
  for (size_t i = Home(slot.tag);; i = Next(i), ++d) {
    Slot& s = slots_[i];
    if (s.tag == 0) {
      s = slot;
      return;
    }
    const size_t sd = Distance(i, Home(s.tag));
    if (sd < d) {
      std::swap(s, slot);
      d = sd;
    }
  }
}

void ElementIndex::FindEach(std::span<const uint64_t> hashes, FunctionRef<void(size_t, const Location&)> fn) const {
  std::shared_lock lock(mu_);
  if (capacity_ == 0) return;
  for (const uint64_t hash : hashes) __builtin_prefetch(slots_ + Home(TagOf(hash)));
  for (size_t k = 0; k < hashes.size(); ++k) {
    FindSlot(TagOf(hashes[k]), [&](const Location& loc) {
      fn(k, loc);
      return false;  // every entry with the tag
    });
  }
}

void ElementIndex::Grow() {
  Slot* old = slots_;
  const size_t old_capacity = capacity_;
  Allocate(old_capacity == 0 ? kInitialCapacity : old_capacity + old_capacity / 2);
  for (size_t j = 0; j < old_capacity; ++j) {
    if (old[j].tag != 0) Place(old[j]);
  }
  FreeTable(old, old_capacity * sizeof(Slot));
  memory_.store(capacity_ * sizeof(Slot), std::memory_order_relaxed);
}

bool ElementIndex::Upsert(uint64_t hash, const Keydir::KeyMatcher& is_key, Location loc, Location* old) {
  const uint32_t tag = TagOf(hash);
  std::unique_lock lock(mu_);
  if (const size_t found = FindSlot(tag, is_key); found != kNoSlot) {
    *old = LocationOf(slots_[found]);
    slots_[found] = SlotFor(tag, loc);
    return true;
  }
  if ((count_ + 1) * 20 > capacity_ * 17) Grow();  // past 85 % full
  Place(SlotFor(tag, loc));
  ++count_;
  size_.store(count_, std::memory_order_relaxed);
  return false;
}

void ElementIndex::RemoveAt(size_t i) {
  // Backward-shift deletion: pull later entries of the same probe run into the hole. (The entries
  // it moves are those homed at or before the hole: with the run in home order (Place), the ones
  // right after it, each one step back, which keeps the order.)
  size_t j = i;
  for (;;) {
    j = Next(j);
    const Slot& s = slots_[j];
    if (s.tag == 0) break;
    const size_t home = Home(s.tag);
    const bool stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
    if (!stays) {
      slots_[i] = s;
      i = j;
    }
  }
  slots_[i] = Slot{0, 0, 0};
  --count_;
  size_.store(count_, std::memory_order_relaxed);
}

bool ElementIndex::Erase(uint64_t hash, const Keydir::KeyMatcher& is_key, Location* old) {
  std::unique_lock lock(mu_);
  const size_t found = FindSlot(TagOf(hash), is_key);
  if (found == kNoSlot) return false;
  *old = LocationOf(slots_[found]);
  RemoveAt(found);
  return true;
}

bool ElementIndex::ReplaceIfAt(uint64_t hash, const Location& expected, Location loc) {
  const uint32_t tag = TagOf(hash);
  std::unique_lock lock(mu_);
  const size_t found = FindSlot(tag, [&](const Location& l) { return l.SameRecord(expected); });
  if (found == kNoSlot) return false;
  slots_[found] = SlotFor(tag, loc);
  return true;
}

void ElementIndex::ForEach(const std::function<void(const Location&)>& fn) const {
  std::shared_lock lock(mu_);
  for (size_t i = 0; i < capacity_; ++i) {
    if (slots_[i].tag != 0) fn(LocationOf(slots_[i]));
  }
}

void ElementIndex::Scan(uint64_t* cursor, size_t count, std::vector<Location>* out) const {
  std::shared_lock lock(mu_);
  const uint64_t from = *cursor;
  if (capacity_ == 0 || count_ == 0 || from > UINT32_MAX) {
    *cursor = 0;
    return;
  }
  // Entries with tag >= from have their home at or after Home(from) and sit between their home
  // and the end of its run (or wrapped to the table's start). Walk forward from there; stop at an
  // empty slot e once enough is collected: every entry whose home is before e has been seen, so
  // every tag below the first tag homed at e is complete, and that tag is the next cursor.
  const auto start = Home(static_cast<uint32_t>(from));
  struct Seen {
    uint32_t tag;
    Location loc;
  };
  std::vector<Seen> seen;
  size_t i = start;
  uint64_t next = uint64_t{1} << 32;  // the end: past every tag
  for (;; ++i) {
    if (i == capacity_) break;  // the end of the table: every home at or after start was walked
    const Slot& s = slots_[i];
    if (s.tag == 0) {
      if (i > start && seen.size() >= count) {
        // The smallest tag whose home is i: ceil(i * 2^32 / capacity).
        next = ((uint64_t{i} << 32) + capacity_ - 1) / capacity_;
        break;
      }
      continue;
    }
    if (Home(s.tag) > i) continue;  // wrapped from the table's end: taken below, if at all
    if (s.tag >= from) seen.push_back({s.tag, LocationOf(s)});
  }
  if (i == capacity_) {
    // Entries homed near the end that wrapped to the start.
    for (size_t w = 0; w < capacity_ && slots_[w].tag != 0; ++w) {
      if (Home(slots_[w].tag) > w && slots_[w].tag >= from) seen.push_back({slots_[w].tag, LocationOf(slots_[w])});
    }
  }
  for (const Seen& e : seen) {
    if (e.tag < next) out->push_back(e.loc);
  }
  *cursor = next > UINT32_MAX ? 0 : next;
}

bool ElementIndex::RandomEntry(uint64_t random, Location* loc) const {
  std::shared_lock lock(mu_);
  if (count_ == 0) return false;
  for (size_t i = static_cast<size_t>(random % capacity_);; i = Next(i)) {
    if (slots_[i].tag != 0) {
      *loc = LocationOf(slots_[i]);
      return true;
    }
  }
}

}  // namespace keg::store
