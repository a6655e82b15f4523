#include "store/ordered_index.h"

#include <algorithm>
#include <cstring>

namespace keg::store {

size_t OrderedIndex::MemoryBytes() const {
  return (chunks_.size() - head_) * sizeof(Chunk) + chunks_.size() * (sizeof(std::unique_ptr<Chunk>) + sizeof(int64_t)) +
         sizeof(*this);
}

void OrderedIndex::Rebuild() {
  fenwick_.assign(chunks_.size() + 1, 0);
  for (size_t i = 1; i <= chunks_.size(); ++i) {
    if (chunks_[i - 1]) fenwick_[i] += chunks_[i - 1]->n;
    const size_t parent = i + (i & (~i + 1));
    if (parent <= chunks_.size()) fenwick_[parent] += fenwick_[i];
  }
}

void OrderedIndex::Add(size_t chunk, int64_t delta) {
  for (size_t i = chunk + 1; i < fenwick_.size(); i += i & (~i + 1)) fenwick_[i] += delta;
}

size_t OrderedIndex::Prefix(size_t chunk) const {
  int64_t sum = 0;
  for (size_t i = chunk; i > 0; i -= i & (~i + 1)) sum += fenwick_[i];
  return static_cast<size_t>(sum);
}

void OrderedIndex::Locate(size_t pos, size_t* chunk, size_t* at) const {
  // Fenwick descent: the largest prefix of chunks holding at most `pos` entries.
  size_t idx = 0;
  size_t step = 1;
  while (step * 2 <= chunks_.size()) step *= 2;
  auto rest = static_cast<int64_t>(pos);
  for (; step > 0; step /= 2) {
    const size_t next = idx + step;
    if (next <= chunks_.size() && fenwick_[next] <= rest) {
      idx = next;
      rest -= fenwick_[next];
    }
  }
  *chunk = idx;  // chunks [0, idx) hold <= pos entries; pos falls in chunk idx
  *at = static_cast<size_t>(rest);
}

template <class Pred>
bool OrderedIndex::LocateIf(const Pred& before, size_t* chunk, size_t* at) const {
  if (size_ == 0) {
    *chunk = 0;
    *at = 0;
    return false;
  }
  // The first chunk whose last entry is not before: the partition point is inside it.
  size_t lo = head_;
  size_t hi = chunks_.size();
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    const Chunk& c = *chunks_[mid];
    if (before(c.e[c.n - 1])) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo == chunks_.size()) {
    *chunk = chunks_.size() - 1;
    *at = chunks_.back()->n;
    return false;
  }
  const Chunk& c = *chunks_[lo];
  *chunk = lo;
  *at = static_cast<size_t>(std::partition_point(c.e, c.e + c.n, [&](const Entry& e) { return before(e); }) - c.e);
  return true;
}

template <class Pred>
size_t OrderedIndex::PartitionPointIf(const Pred& before) const {
  size_t c = 0;
  size_t at = 0;
  return LocateIf(before, &c, &at) ? Prefix(c) + at : size_;
}

size_t OrderedIndex::PartitionPoint(Before before) const {
  return PartitionPointIf([&](const Entry& e) { return before(e); });
}

size_t OrderedIndex::CountBelow(double score, bool inclusive) const {
  if (inclusive) return PartitionPointIf([score](const Entry& e) { return e.score <= score; });
  return PartitionPointIf([score](const Entry& e) { return e.score < score; });
}

bool OrderedIndex::Find(double score, std::string_view member, const MemberFn& member_of, size_t* chunk,
                        size_t* at) const {
  // Inline (no FunctionRef per step); a member is read only where scores tie.
  return LocateIf([&](const Entry& e) { return Less(e, score, member, member_of); }, chunk, at);
}

OrderedIndex::Entry OrderedIndex::At(size_t pos) const {
  size_t c = 0;
  size_t at = 0;
  Locate(pos, &c, &at);
  return chunks_[c]->e[at];
}

void OrderedIndex::ForRange(size_t from, size_t to, FunctionRef<bool(const Entry&)> fn) const {
  to = std::min(to, size_);
  if (from >= to) return;
  size_t c = 0;
  size_t at = 0;
  Locate(from, &c, &at);
  for (size_t left = to - from; left > 0; ++c, at = 0) {
    const Chunk& ch = *chunks_[c];
    for (; at < ch.n && left > 0; ++at, --left) {
      if (!fn(ch.e[at])) return;
    }
  }
}

void OrderedIndex::Insert(double score, std::string_view member, uint64_t loc, const MemberFn& member_of) {
  if (size_ == 0) {  // (no live chunk)
    chunks_.clear();
    head_ = 0;
    chunks_.push_back(std::make_unique<Chunk>());
    Rebuild();
  }
  size_t c = 0;
  size_t at = 0;
  Find(score, member, member_of, &c, &at);
  if (chunks_[c]->n == kChunk) {  // split in halves, then insert into the half it falls in
    auto right = std::make_unique<Chunk>();
    Chunk& left = *chunks_[c];
    const uint32_t half = kChunk / 2;
    right->n = kChunk - half;
    std::memcpy(right->e, left.e + half, sizeof(Entry) * right->n);
    left.n = half;
    chunks_.insert(chunks_.begin() + static_cast<std::ptrdiff_t>(c) + 1, std::move(right));
    Rebuild();
    if (at > half) {
      ++c;
      at -= half;
    }
  }
  Chunk& ch = *chunks_[c];
  std::memmove(ch.e + at + 1, ch.e + at, sizeof(Entry) * (ch.n - at));
  ch.e[at] = Entry{score, loc};
  ++ch.n;
  ++size_;
  Add(c, 1);
}

void OrderedIndex::RemoveAt(size_t c, size_t at) {
  Chunk& ch = *chunks_[c];
  std::memmove(ch.e + at, ch.e + at + 1, sizeof(Entry) * (ch.n - at - 1));
  --ch.n;
  --size_;
  Add(c, -1);
  if (ch.n == 0) {
    DropChunk(c);
    return;
  }
  // Under a quarter full: merged into a neighbour when both fit in 3/4 of a chunk — but not an end
  // chunk, which pops from that end empty and remove in O(1) (a merge rebuilds the tree).
  if (ch.n >= kChunk / 4 || c == head_ || c + 1 == chunks_.size()) return;
  const size_t left = chunks_[c - 1]->n + ch.n <= kChunk * 3 / 4   ? c - 1
                      : chunks_[c + 1]->n + ch.n <= kChunk * 3 / 4 ? c
                                                                   : chunks_.size();
  if (left == chunks_.size()) return;
  Chunk& a = *chunks_[left];
  Chunk& b = *chunks_[left + 1];
  std::memcpy(a.e + a.n, b.e, sizeof(Entry) * b.n);
  Add(left, b.n);
  Add(left + 1, -static_cast<int64_t>(b.n));
  a.n += b.n;
  b.n = 0;
  DropChunk(left + 1);
}

void OrderedIndex::DropChunk(size_t c) {
  if (size_ == 0) {
    chunks_.clear();
    head_ = 0;
    Rebuild();
    return;
  }
  if (c + 1 == chunks_.size()) {  // the last: no other node of the tree counts it
    chunks_.pop_back();
    fenwick_.pop_back();
    return;
  }
  if (c == head_) {  // the first: retired in place (its size is 0 in the tree already)
    chunks_[c].reset();
    ++head_;
    if (head_ < 64 || head_ * 2 < chunks_.size()) return;
    chunks_.erase(chunks_.begin(), chunks_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
    Rebuild();
    return;
  }
  chunks_.erase(chunks_.begin() + static_cast<std::ptrdiff_t>(c));
  Rebuild();
}

bool OrderedIndex::Erase(double score, std::string_view member, uint64_t loc, const MemberFn& member_of) {
  size_t c = 0;
  size_t at = 0;
  // The entry points at `loc`: among the first few entries of `score` it is found by location
  // alone, with no member read (a ZADD that changes a score erases its old entry); past them (many
  // members share the score, as in a set ranged by lex), by member.
  if (!LocateIf([score](const Entry& e) { return e.score < score; }, &c, &at)) return false;
  for (int i = 0; i < kEraseScan; ++i) {
    const Chunk& ch = *chunks_[c];
    if (ch.e[at].score != score) return false;
    if (ch.e[at].loc == loc) {
      RemoveAt(c, at);
      return true;
    }
    if (++at == ch.n) {
      if (++c == chunks_.size()) return false;
      at = 0;
    }
  }
  if (!Find(score, member, member_of, &c, &at) || chunks_[c]->e[at].loc != loc) return false;
  RemoveAt(c, at);
  return true;
}

bool OrderedIndex::Repoint(double score, std::string_view member, uint64_t from, uint64_t to,
                           const MemberFn& member_of) {
  size_t c = 0;
  size_t at = 0;
  if (!Find(score, member, member_of, &c, &at) || chunks_[c]->e[at].loc != from) return false;
  chunks_[c]->e[at].loc = to;
  return true;
}

void OrderedIndex::Assign(std::vector<Entry> entries) {
  chunks_.clear();
  head_ = 0;
  size_ = entries.size();
  const size_t fill = kChunk * 3 / 4;
  for (size_t i = 0; i < entries.size(); i += fill) {
    auto ch = std::make_unique<Chunk>();
    ch->n = static_cast<uint32_t>(std::min(fill, entries.size() - i));
    std::memcpy(ch->e, entries.data() + i, sizeof(Entry) * ch->n);
    chunks_.push_back(std::move(ch));
  }
  Rebuild();
}

}  // namespace keg::store
