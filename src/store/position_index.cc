#include "store/position_index.h"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <mutex>
#include <new>
#include <shared_mutex>

namespace keg::store {
namespace {

constexpr uint64_t kNarrowLimit = uint64_t{1} << 32;  // offsets a narrow chunk can hold
// How far outside the deque (in chunks, at least) a position may land and still extend it.
constexpr uint64_t kMinReach = 1024;
constexpr size_t kFarEntryBytes = 48;  // an unordered_map node, roughly

uint64_t Packed(const Location& loc) { return Location{loc.file, loc.offset, false, 0}.Pack(); }

}  // namespace

PositionIndex::~PositionIndex() {
  for (Chunk* c : chunks_) FreeChunk(c);
}

bool PositionIndex::PositionOf(std::string_view member, uint64_t* pos) {
  if (member.size() != 8) return false;
  uint64_t v = 0;
  for (const char ch : member) v = v << 8 | static_cast<uint8_t>(ch);
  *pos = v;
  return true;
}

Location PositionIndex::Chunk::At(size_t i) const {
  return wide != 0 ? Location::Unpack(packed()[i]) : Location{file, offsets()[i], false, 0};
}

PositionIndex::Chunk* PositionIndex::NewChunk(bool wide) {
  void* p = std::malloc(ChunkBytes(wide));
  if (p == nullptr) throw std::bad_alloc();
  Chunk* c = static_cast<Chunk*>(p);
  c->present = 0;
  c->file = 0;
  c->wide = wide ? 1 : 0;
  chunk_bytes_ += ChunkBytes(wide);
  return c;
}

void PositionIndex::FreeChunk(Chunk* c) {
  if (c == nullptr) return;
  chunk_bytes_ -= ChunkBytes(c->wide != 0);
  std::free(c);
}

void PositionIndex::Store(Chunk*& c, size_t i, const Location& loc) {
  if (c->wide == 0) {
    if ((c->present & ~(uint64_t{1} << i)) == 0) c->file = loc.file;  // no other slot: any file
    if (loc.file == c->file && loc.offset < kNarrowLimit) {
      c->offsets()[i] = static_cast<uint32_t>(loc.offset);
      return;
    }
    Chunk* w = NewChunk(true);  // another file (or past 4 GiB): widen
    w->present = c->present;
    for (uint64_t bits = c->present; bits != 0; bits &= bits - 1) {
      const int j = std::countr_zero(bits);
      w->packed()[j] = Packed(c->At(static_cast<size_t>(j)));
    }
    FreeChunk(c);
    c = w;
  }
  c->packed()[i] = Packed(loc);
  // Narrow again once every slot shares one file (compaction moved the chunk's records together).
  const uint64_t bits = c->present | (uint64_t{1} << i);
  for (uint64_t b = bits; b != 0; b &= b - 1) {
    const Location l = c->At(static_cast<size_t>(std::countr_zero(b)));
    if (l.file != loc.file || l.offset >= kNarrowLimit) return;
  }
  Chunk* n = NewChunk(false);
  n->present = c->present;
  n->file = loc.file;
  for (uint64_t b = bits; b != 0; b &= b - 1) {
    const int j = std::countr_zero(b);
    n->offsets()[j] = static_cast<uint32_t>(c->At(static_cast<size_t>(j)).offset);
  }
  FreeChunk(c);
  c = n;
}

PositionIndex::Chunk** PositionIndex::SlotFor(uint64_t n) {
  if (chunks_.empty()) {
    base_ = n;
    chunks_.push_back(nullptr);
    return &chunks_.front();
  }
  const uint64_t reach = std::max<uint64_t>(chunks_.size(), kMinReach);
  if (n < base_) {
    if (base_ - n > reach) return nullptr;
    while (base_ > n) {
      chunks_.push_front(nullptr);
      --base_;
    }
  } else if (n - base_ >= chunks_.size()) {
    if (n - base_ - chunks_.size() >= reach) return nullptr;
    while (n - base_ >= chunks_.size()) chunks_.push_back(nullptr);
  }
  return &chunks_[n - base_];
}

void PositionIndex::Trim() {
  while (!chunks_.empty() && chunks_.front() == nullptr) {
    chunks_.pop_front();
    ++base_;
  }
  while (!chunks_.empty() && chunks_.back() == nullptr) chunks_.pop_back();
}

void PositionIndex::Account() {
  memory_.store(chunk_bytes_ + chunks_.size() * sizeof(Chunk*) + far_.size() * kFarEntryBytes,
                std::memory_order_relaxed);
}

PositionIndex::Chunk** PositionIndex::Holding(uint64_t pos, size_t* i) const {
  const uint64_t n = pos >> kShift;
  if (n < base_ || n - base_ >= chunks_.size()) return nullptr;
  Chunk* const& c = chunks_[n - base_];
  *i = pos & (kSlots - 1);
  if (c == nullptr || (c->present >> *i & 1) == 0) return nullptr;
  return const_cast<Chunk**>(&c);
}

void PositionIndex::FindMany(std::span<const std::string_view> members, Location* out, uint8_t* found) const {
  std::shared_lock lock(mu_);
  for (size_t i = 0; i < members.size(); ++i) found[i] = FindLocked(members[i], &out[i]) ? 1 : 0;
}

void PositionIndex::FindPositions(uint64_t first, size_t n, Location* out, uint8_t* found) const {
  std::shared_lock lock(mu_);
  for (size_t i = 0; i < n; ++i) found[i] = FindPositionLocked(first + i, &out[i]) ? 1 : 0;
}

bool PositionIndex::Find(std::string_view member, Location* out) const {
  std::shared_lock lock(mu_);
  return FindLocked(member, out);
}

bool PositionIndex::FindLocked(std::string_view member, Location* out) const {
  if (member.empty()) {
    if (has_meta_) *out = meta_;
    return has_meta_;
  }
  uint64_t pos = 0;
  return PositionOf(member, &pos) && FindPositionLocked(pos, out);
}

bool PositionIndex::FindPositionLocked(uint64_t pos, Location* out) const {
  size_t i = 0;
  if (Chunk** c = Holding(pos, &i)) {
    *out = (*c)->At(i);
    return true;
  }
  if (far_.empty()) return false;
  auto it = far_.find(pos);
  if (it == far_.end()) return false;
  *out = Location::Unpack(it->second);
  return true;
}

bool PositionIndex::Upsert(std::string_view member, Location loc, Location* old) {
  loc = Location{loc.file, loc.offset, false, 0};  // element records never expire
  std::unique_lock lock(mu_);
  if (member.empty()) {
    const bool had = has_meta_;
    if (had) *old = meta_;
    meta_ = loc;
    has_meta_ = true;
    if (!had) size_.fetch_add(1, std::memory_order_relaxed);
    return had;
  }
  uint64_t pos = 0;
  if (!PositionOf(member, &pos)) return false;
  if (!far_.empty()) {
    if (auto it = far_.find(pos); it != far_.end()) {
      *old = Location::Unpack(it->second);
      it->second = Packed(loc);
      return true;
    }
  }
  Chunk** slot = SlotFor(pos >> kShift);
  if (slot == nullptr) {  // far outside the deque: never from the server; kept all the same
    far_.emplace(pos, Packed(loc));
    size_.fetch_add(1, std::memory_order_relaxed);
    Account();
    return false;
  }
  if (*slot == nullptr) *slot = NewChunk(false);
  const size_t i = pos & (kSlots - 1);
  const bool had = ((*slot)->present >> i & 1) != 0;
  if (had) *old = (*slot)->At(i);
  Store(*slot, i, loc);
  (*slot)->present |= uint64_t{1} << i;
  if (!had) size_.fetch_add(1, std::memory_order_relaxed);
  Account();
  return had;
}

bool PositionIndex::Erase(std::string_view member, Location* old) {
  std::unique_lock lock(mu_);
  if (member.empty()) {
    if (!has_meta_) return false;
    *old = meta_;
    has_meta_ = false;
    size_.fetch_sub(1, std::memory_order_relaxed);
    return true;
  }
  uint64_t pos = 0;
  if (!PositionOf(member, &pos)) return false;
  size_t i = 0;
  if (Chunk** held = Holding(pos, &i)) {
    Chunk*& c = *held;
    *old = c->At(i);
    c->present &= ~(uint64_t{1} << i);
    if (c->present == 0) {
      FreeChunk(c);
      c = nullptr;
      Trim();
    }
    size_.fetch_sub(1, std::memory_order_relaxed);
    Account();
    return true;
  }
  auto it = far_.find(pos);
  if (it == far_.end()) return false;
  *old = Location::Unpack(it->second);
  far_.erase(it);
  size_.fetch_sub(1, std::memory_order_relaxed);
  Account();
  return true;
}

bool PositionIndex::ReplaceIfAt(std::string_view member, const Location& expected, Location loc) {
  loc = Location{loc.file, loc.offset, false, 0};
  std::unique_lock lock(mu_);
  if (member.empty()) {
    if (!has_meta_ || !meta_.SameRecord(expected)) return false;
    meta_ = loc;
    return true;
  }
  uint64_t pos = 0;
  if (!PositionOf(member, &pos)) return false;
  size_t i = 0;
  if (Chunk** held = Holding(pos, &i)) {
    if (!(*held)->At(i).SameRecord(expected)) return false;
    Store(*held, i, loc);
    Account();
    return true;
  }
  auto it = far_.find(pos);
  if (it == far_.end() || !Location::Unpack(it->second).SameRecord(expected)) return false;
  it->second = Packed(loc);
  return true;
}

void PositionIndex::ForEach(const std::function<void(const Location&)>& fn) const {
  std::shared_lock lock(mu_);
  if (has_meta_) fn(meta_);
  for (const Chunk* c : chunks_) {
    if (c == nullptr) continue;
    for (uint64_t b = c->present; b != 0; b &= b - 1) fn(c->At(static_cast<size_t>(std::countr_zero(b))));
  }
  for (const auto& [pos, packed] : far_) fn(Location::Unpack(packed));
}

void PositionIndex::Scan(uint64_t* cursor, size_t count, std::vector<Location>* out) const {
  // The cursor is the chunk number to go on from, plus one (0 starts); the far entries come last,
  // all at once (there are never many).
  std::shared_lock lock(mu_);
  uint64_t n = *cursor == 0 ? base_ : std::max(*cursor - 1, base_);
  size_t added = 0;
  for (; n - base_ < chunks_.size() && added < count; ++n) {
    const Chunk* c = chunks_[n - base_];
    if (c == nullptr) continue;
    for (uint64_t b = c->present; b != 0; b &= b - 1) {
      out->push_back(c->At(static_cast<size_t>(std::countr_zero(b))));
      ++added;
    }
  }
  if (n - base_ < chunks_.size()) {
    *cursor = n + 1;
    return;
  }
  for (const auto& [pos, packed] : far_) out->push_back(Location::Unpack(packed));
  *cursor = 0;
}

bool PositionIndex::Bounds(uint64_t* first, uint64_t* count) const {
  std::shared_lock lock(mu_);
  if (chunks_.empty()) return false;  // trimmed: the front chunk is never empty
  *first = (base_ << kShift) + static_cast<uint64_t>(std::countr_zero(chunks_.front()->present));
  *count = size_.load(std::memory_order_relaxed) - (has_meta_ ? 1 : 0);
  return true;
}

bool PositionIndex::RandomEntry(uint64_t random, Location* loc) const {
  std::shared_lock lock(mu_);
  if (!chunks_.empty()) {
    // A chunk from the random number (the ends are never empty), then one of its entries.
    for (size_t k = 0, i = random % chunks_.size(); k < chunks_.size(); ++k, i = i + 1 == chunks_.size() ? 0 : i + 1) {
      const Chunk* c = chunks_[i];
      if (c == nullptr) continue;
      uint64_t b = c->present;
      for (auto skip = (random >> 32) % static_cast<uint64_t>(std::popcount(b)); skip > 0; --skip) b &= b - 1;
      *loc = c->At(static_cast<size_t>(std::countr_zero(b)));
      return true;
    }
  }
  if (!far_.empty()) {
    *loc = Location::Unpack(far_.begin()->second);
    return true;
  }
  if (has_meta_) *loc = meta_;
  return has_meta_;
}

}  // namespace keg::store
