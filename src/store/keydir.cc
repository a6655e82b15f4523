#include "store/keydir.h"

// XXH3 compiled into Hash (xxhash.h's own option): a key is hashed 2-4 times a write (its head,
// an element's key, a list's meta element) and the library call's generic entry cost about as
// much as the hashing of a short key.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>

#include "store/table_memory.h"

namespace keg::store {
namespace {

constexpr size_t kInitialCapacity = 16;

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

size_t CapacityFor(size_t keys) {
  size_t cap = kInitialCapacity;
  while (keys * 5 > cap * 4) cap *= 2;  // at most 80% full
  return cap;
}

uint64_t ReverseBits(uint64_t v) {
  v = ((v >> 1) & 0x5555555555555555ull) | ((v & 0x5555555555555555ull) << 1);
  v = ((v >> 2) & 0x3333333333333333ull) | ((v & 0x3333333333333333ull) << 2);
  v = ((v >> 4) & 0x0F0F0F0F0F0F0F0Full) | ((v & 0x0F0F0F0F0F0F0F0Full) << 4);
  return __builtin_bswap64(v);
}

}  // namespace

Keydir::SlotArray::SlotArray(size_t n)
    : data_(static_cast<Slot*>(AllocateTable(n * sizeof(Slot)))), size_(n) {}  // zero: empty slots

Keydir::SlotArray::~SlotArray() { FreeTable(data_, size_ * sizeof(Slot)); }

Keydir::SlotArray& Keydir::SlotArray::operator=(SlotArray&& o) noexcept {
  if (this != &o) {
    FreeTable(data_, size_ * sizeof(Slot));
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

Keydir::Keydir(uint64_t secret_seed) {
  uint64_t state = secret_seed;
  for (size_t i = 0; i < secret_.size(); i += 8) {
    const uint64_t v = SplitMix64(state);
    for (size_t b = 0; b < 8; ++b) secret_[i + b] = static_cast<uint8_t>(v >> (8 * b));
  }
  for (Shard& s : shards_) s.slots = SlotArray(kInitialCapacity);
  memory_ = kShards * kInitialCapacity * sizeof(Slot);
}

uint64_t Keydir::Hash(std::string_view key) const {
  const uint64_t h = XXH3_64bits_withSecret(key.data(), key.size(), secret_.data(), secret_.size());
  return h == 0 ? 1 : h;
}

[[gnu::always_inline]] inline size_t Keydir::Probe(const Shard& shard, uint64_t hash, Location* out, size_t max) {
  const size_t mask = shard.slots.size() - 1;
  size_t n = 0;
  for (size_t i = Home(hash, mask); n < max; i = (i + 1) & mask) {
    const Slot& s = shard.slots[i];
    if (s.hash == 0) break;
    if (!Matches(s, hash)) continue;
    out[n++] = LocationOf(s);
  }
  return n;
}

size_t Keydir::FindCandidates(uint64_t hash, Location* out, size_t max) const {
  const Shard& shard = ShardFor(hash);
  std::shared_lock lock(shard.mu);
  return Probe(shard, hash, out, max);
}

size_t Keydir::FindCandidatesUnlocked(uint64_t hash, Location* out, size_t max) const {
  return Probe(ShardFor(hash), hash, out, max);
}

template <typename Match>
size_t Keydir::FindSlot(const Shard& shard, uint64_t hash, const Match& match) {
  const size_t mask = shard.slots.size() - 1;
  for (size_t i = Home(hash, mask);; i = (i + 1) & mask) {
    const Slot& s = shard.slots[i];
    if (s.hash == 0) return kNoSlot;
    if (Matches(s, hash) && match(LocationOf(s))) return i;
  }
}

bool Keydir::Upsert(uint64_t hash, const KeyMatcher& is_key, Location loc, Location* old) {
  Shard& shard = ShardFor(hash);
  std::unique_lock lock(shard.mu);
  const size_t found = FindSlot(shard, hash, is_key);
  if (found != kNoSlot) {
    *old = LocationOf(shard.slots[found]);
    shard.slots[found].hash = Tag(hash, loc);  // same home slot: the low bits are the hash's
    shard.slots[found].loc = loc.Pack();
    CountExpiring(*old, false);
    CountExpiring(loc, true);
    return true;
  }
  if ((shard.count + 1) * 5 > shard.slots.size() * 4) Resize(shard, shard.slots.size() * 2);
  const size_t mask = shard.slots.size() - 1;
  size_t i = Home(hash, mask);
  while (shard.slots[i].hash != 0) i = (i + 1) & mask;
  shard.slots[i] = Slot{Tag(hash, loc), loc.Pack()};
  CountExpiring(loc, true);
  ++shard.count;
  size_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

bool Keydir::Erase(uint64_t hash, const KeyMatcher& is_key, Location* old) {
  Shard& shard = ShardFor(hash);
  std::unique_lock lock(shard.mu);
  const size_t found = FindSlot(shard, hash, is_key);
  if (found == kNoSlot) return false;
  *old = LocationOf(shard.slots[found]);
  RemoveAt(shard, found);
  return true;
}

bool Keydir::ReplaceIfAt(uint64_t hash, const Location& expected, Location loc) {
  Shard& shard = ShardFor(hash);
  std::unique_lock lock(shard.mu);
  const size_t found =
      FindSlot(shard, hash, [&](const Location& l) { return l.SameRecord(expected); });
  if (found == kNoSlot) return false;
  // A moved record keeps its expiry, so the stored hash word stays as it is.
  CountExpiring(LocationOf(shard.slots[found]), false);
  shard.slots[found].loc = loc.Pack();
  CountExpiring(loc, true);
  return true;
}

bool Keydir::ReplaceAt(uint64_t hash, const Location& expected, Location loc, Location* old) {
  Shard& shard = ShardFor(hash);
  std::unique_lock lock(shard.mu);
  const size_t found =
      FindSlot(shard, hash, [&](const Location& l) { return l.SameRecord(expected); });
  if (found == kNoSlot) return false;
  *old = LocationOf(shard.slots[found]);
  shard.slots[found].hash = Tag(hash, loc);  // same home slot: the low bits are the hash's
  shard.slots[found].loc = loc.Pack();
  CountExpiring(*old, false);
  CountExpiring(loc, true);
  return true;
}

bool Keydir::EraseIfAt(uint64_t hash, const Location& expected) {
  Shard& shard = ShardFor(hash);
  std::unique_lock lock(shard.mu);
  const size_t found =
      FindSlot(shard, hash, [&](const Location& l) { return l.SameRecord(expected); });
  if (found == kNoSlot) return false;
  RemoveAt(shard, found);
  return true;
}

void Keydir::RemoveAt(Shard& shard, size_t i) {
  // Backward-shift deletion: pull later entries of the same probe run into the hole, so lookups
  // never need tombstones.
  CountExpiring(Location::Unpack(shard.slots[i].loc), false);
  const size_t mask = shard.slots.size() - 1;
  size_t j = i;
  for (;;) {
    j = (j + 1) & mask;
    const Slot& s = shard.slots[j];
    if (s.hash == 0) break;
    const size_t home = Home(s.hash, mask);
    const bool stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
    if (!stays) {
      shard.slots[i] = s;
      i = j;
    }
  }
  shard.slots[i] = Slot{0, 0};
  --shard.count;
  size_.fetch_sub(1, std::memory_order_relaxed);
}

void Keydir::Resize(Shard& shard, size_t capacity) {
  SlotArray old = std::move(shard.slots);
  shard.slots = SlotArray(capacity);
  const size_t mask = capacity - 1;
  for (const Slot& s : old) {
    if (s.hash == 0) continue;
    size_t i = Home(s.hash, mask);
    while (shard.slots[i].hash != 0) i = (i + 1) & mask;
    shard.slots[i] = s;
  }
  memory_.fetch_add((capacity - old.size()) * sizeof(Slot), std::memory_order_relaxed);
}

void Keydir::ForEachInShard(size_t shard_index,
                            const std::function<void(uint64_t, const Location&)>& fn) const {
  const Shard& shard = shards_[shard_index];
  std::shared_lock lock(shard.mu);
  for (const Slot& s : shard.slots) {
    if (s.hash != 0) fn(s.hash, LocationOf(s));
  }
}

bool Keydir::ScanBucket(size_t shard_index, uint64_t* cursor,
                        std::vector<std::pair<uint64_t, Location>>* out) const {
  const Shard& shard = shards_[shard_index];
  std::shared_lock lock(shard.mu);
  if (shard.count == 0) {
    *cursor = 0;
    return true;
  }
  const uint64_t mask = shard.slots.size() - 1;
  uint64_t v = *cursor;
  const uint64_t bucket = v & mask;
  // Linear probing keeps every slot from an entry's home to where it sits occupied, so the run
  // starting at the bucket holds all of the bucket's entries.
  for (uint64_t i = bucket;; i = (i + 1) & mask) {
    const Slot& s = shard.slots[i];
    if (s.hash == 0) break;
    if (Home(s.hash, mask) == bucket) out->emplace_back(s.hash, LocationOf(s));
  }
  // Increment the reversed cursor over the masked bits.
  v |= ~mask;
  v = ReverseBits(v);
  ++v;
  v = ReverseBits(v);
  *cursor = v;
  return v == 0;
}

bool Keydir::RandomEntry(uint64_t random, uint64_t* hash, Location* loc) const {
  for (size_t n = 0; n < kShards; ++n) {
    const Shard& shard = shards_[(random + n) % kShards];
    std::shared_lock lock(shard.mu);
    if (shard.count == 0) continue;
    const size_t mask = shard.slots.size() - 1;
    for (size_t i = (random >> 6) & mask;; i = (i + 1) & mask) {
      const Slot& s = shard.slots[i];
      if (s.hash != 0) {
        *hash = s.hash;
        *loc = LocationOf(s);
        return true;
      }
    }
  }
  return false;
}

void Keydir::ClearShards(size_t part, size_t parts) {
  for (size_t i = part; i < kShards; i += parts) {
    Shard& shard = shards_[i];
    std::unique_lock lock(shard.mu);
    size_t expiring = 0;
    for (const Slot& s : shard.slots) expiring += (s.hash != 0 && (s.loc >> 63) != 0) ? 1 : 0;
    const size_t old_capacity = shard.slots.size();
    shard.slots = SlotArray(kInitialCapacity);
    size_.fetch_sub(shard.count, std::memory_order_relaxed);
    expiring_.fetch_sub(expiring, std::memory_order_relaxed);
    memory_.fetch_sub((old_capacity - kInitialCapacity) * sizeof(Slot), std::memory_order_relaxed);
    shard.count = 0;
  }
}

void Keydir::Reserve(size_t keys) {
  const size_t per_shard = CapacityFor(keys / kShards + 1);
  for (Shard& shard : shards_) {
    std::unique_lock lock(shard.mu);
    if (shard.slots.size() < per_shard) Resize(shard, per_shard);
  }
}

}  // namespace keg::store
