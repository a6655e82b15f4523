#include "store/element_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <iterator>
#include <map>
#include <random>
#include <set>
#include <span>
#include <vector>

namespace keg::store {
namespace {

// Entries keyed by their location's offset (the "key" the matcher confirms).
struct Model {
  ElementIndex index;
  std::map<uint64_t, uint64_t> hash_of;  // offset -> hash

  static Location At(uint64_t offset) { return Location{1, offset, false, 0}; }
  void Put(uint64_t hash, uint64_t offset) {
    Location old;
    auto is = [offset](const Location& l) { return l.offset == offset; };
    index.Upsert(hash, is, At(offset), &old);
    hash_of[offset] = hash;
  }
  bool Del(uint64_t offset) {
    Location old;
    auto is = [offset](const Location& l) { return l.offset == offset; };
    const bool was = index.Erase(hash_of.at(offset), is, &old);
    hash_of.erase(offset);
    return was;
  }
  bool Has(uint64_t offset) const {
    Location out[8];
    const size_t n = index.FindCandidates(hash_of.at(offset), out, 8);
    for (size_t i = 0; i < n; ++i) {
      if (out[i].offset == offset) return true;
    }
    return false;
  }
};

TEST(ElementIndexTest, FindsWhatWasPutAndForgetsWhatWasErased) {
  Model m;
  std::mt19937_64 rng(1);
  for (uint64_t i = 1; i <= 20000; ++i) m.Put(rng(), i);
  m.Put(m.hash_of[7], 7);  // an update in place
  EXPECT_EQ(m.index.Size(), 20000u);
  for (uint64_t i = 1; i <= 20000; i += 3) EXPECT_TRUE(m.Del(i));
  for (uint64_t i = 1; i <= 20000; ++i) {
    if (i % 3 == 1) continue;
    ASSERT_TRUE(m.Has(i)) << i;
  }
  EXPECT_EQ(m.index.Size(), 20000u - 6667u);
  // Memory: 12-byte slots at most 85 % full, grown by half: never past 12 / 0.566 bytes a slot.
  EXPECT_LE(static_cast<double>(m.index.MemoryBytes()) / 20000.0, 21.3);
  Location moved{2, 5, false, 0};
  EXPECT_TRUE(m.index.ReplaceIfAt(m.hash_of[2], Model::At(2), moved));
  EXPECT_FALSE(m.index.ReplaceIfAt(m.hash_of[2], Model::At(2), moved));  // not there any more
}

TEST(ElementIndexTest, EqualAndWrappingTagsAreFound) {
  // Hashes whose top 32 bits collide (up to the 8 candidates a lookup takes: the hash is keyed, so
  // more than two equal tags are vanishingly rare), and tags homed at the table's last slots (which
  // wrap to its start).
  Model m;
  for (uint64_t i = 1; i <= 8; ++i) m.Put((uint64_t{0xFFFFFFFF} << 32) | i, i);
  for (uint64_t i = 9; i <= 12; ++i) m.Put((uint64_t{0xFFFFFFFE} << 32) | i, i);
  for (uint64_t i = 13; i <= 20; ++i) m.Put(uint64_t{0x12345678} << 32, i);
  for (uint64_t i = 1; i <= 20; ++i) ASSERT_TRUE(m.Has(i)) << i;
  for (uint64_t i = 1; i <= 20; i += 2) EXPECT_TRUE(m.Del(i)) << i;
  for (uint64_t i = 2; i <= 20; i += 2) ASSERT_TRUE(m.Has(i)) << i;
}

// A scan returns every entry present for all of it exactly once, however the table grows and
// shrinks between calls; tags equal across calls are never split.
TEST(ElementIndexTest, ScanReturnsEveryStableEntryOnceWhileTheTableChanges) {
  for (const uint64_t count : {1u, 7u, 100u}) {
    Model m;
    std::mt19937_64 rng(count);
    uint64_t next_offset = 1;
    std::set<uint64_t> stable;
    for (int i = 0; i < 3000; ++i) {
      // Some hashes share their tag (the top 32 bits).
      const uint64_t h = i % 10 == 0 ? (uint64_t{0xABCDEF} << 32) | rng() >> 40 : rng();
      m.Put(h, next_offset);
      stable.insert(next_offset++);
    }
    std::vector<uint64_t> transient;
    std::multiset<uint64_t> seen;
    uint64_t cursor = 0;
    int calls = 0;
    do {
      std::vector<Location> out;
      m.index.Scan(&cursor, count, &out);
      for (const Location& l : out) seen.insert(l.offset);
      // Meanwhile: the table grows (new entries) and loses the ones added before.
      for (const uint64_t off : transient) m.Del(off);
      transient.clear();
      for (int j = 0; j < 40; ++j) {
        m.Put(rng(), next_offset);
        transient.push_back(next_offset++);
      }
      ++calls;
    } while (cursor != 0 && calls < 100000);
    ASSERT_EQ(cursor, 0u);
    for (const uint64_t off : stable) EXPECT_EQ(seen.count(off), 1u) << "offset " << off << ", count " << count;
    if (count == 1) {
      EXPECT_GT(calls, 300);  // in steps of about `count` (a run of entries at least)
    }
  }
}

// Lookups stop at the first entry homed after their own (Robin Hood order): random puts, updates,
// erases and moves over clustered tags, some homed at the table's end (runs that wrap), checked
// against a model after every step, through FindCandidates and FindEach.
TEST(ElementIndexTest, RandomChangesAgreeWithAModel) {
  Model m;
  std::mt19937_64 rng(11);
  auto hash = [&rng]() -> uint64_t {
    switch (rng() % 4) {
      case 0: return (uint64_t{0xFFFFFF00} + rng() % 256) << 32 | (rng() & 0xFFFFFFFF);  // the table's end
      case 1: return (uint64_t{0x40000000} + rng() % 64) << 32 | (rng() & 0xFFFFFFFF);   // one cluster
      case 2: return (uint64_t{0x7000000} + rng() % 256) << 32 | (rng() & 0xFFFFFFFF);  // equal tags (a few)
      default: return rng();
    }
  };
  std::set<uint64_t> erased;
  uint64_t next_offset = 1;
  for (int step = 0; step < 6000; ++step) {
    const uint64_t op = rng() % 10;
    if (op < 5 || m.hash_of.empty()) {
      if (m.hash_of.size() < 200 || op < 3) {
        m.Put(hash(), next_offset++);
      }
    } else if (op < 8) {
      auto it = m.hash_of.begin();
      std::advance(it, static_cast<long>(rng() % m.hash_of.size()));
      const uint64_t off = it->first;
      if (op == 5) {
        m.Put(it->second, off);  // an update in place
      } else {
        ASSERT_TRUE(m.Del(off));
        erased.insert(off);
      }
    } else {  // a move (compaction), then moved back
      auto it = m.hash_of.begin();
      std::advance(it, static_cast<long>(rng() % m.hash_of.size()));
      const Location moved{2, it->first, false, 0};
      ASSERT_TRUE(m.index.ReplaceIfAt(it->second, Model::At(it->first), moved));
      ASSERT_TRUE(m.index.ReplaceIfAt(it->second, moved, Model::At(it->first)));
    }
    if (step % 50 != 0) continue;
    ASSERT_EQ(m.index.Size(), m.hash_of.size());
    std::vector<uint64_t> hashes;
    std::vector<uint64_t> offsets;
    for (const auto& [off, h] : m.hash_of) {
      ASSERT_TRUE(m.Has(off)) << "step " << step << ", offset " << off;
      hashes.push_back(h);
      offsets.push_back(off);
    }
    std::vector<bool> found(hashes.size(), false);
    for (size_t from = 0; from < hashes.size(); from += 32) {
      const size_t n = std::min<size_t>(32, hashes.size() - from);
      m.index.FindEach(std::span<const uint64_t>(hashes.data() + from, n), [&](size_t i, const Location& l) {
        if (l.offset == offsets[from + i]) found[from + i] = true;
      });
    }
    for (size_t i = 0; i < found.size(); ++i) ASSERT_TRUE(found[i]) << "FindEach, offset " << offsets[i];
    for (const uint64_t off : erased) {
      // Its hash is gone from the model: no entry of the index may still name it.
      m.index.ForEach([&](const Location& l) { ASSERT_NE(l.offset, off); });
    }
  }
  EXPECT_GT(m.hash_of.size(), 100u);
  EXPECT_GT(erased.size(), 500u);
}

TEST(ElementIndexTest, RandomEntriesCoverTheTable) {
  Model m;
  std::mt19937_64 rng(3);
  for (uint64_t i = 1; i <= 100; ++i) m.Put(rng(), i);
  std::set<uint64_t> seen;
  for (int i = 0; i < 5000; ++i) {
    Location l;
    ASSERT_TRUE(m.index.RandomEntry(rng(), &l));
    seen.insert(l.offset);
  }
  EXPECT_GT(seen.size(), 90u);
  ElementIndex empty;
  Location l;
  EXPECT_FALSE(empty.RandomEntry(1, &l));
  uint64_t cursor = 0;
  std::vector<Location> out;
  empty.Scan(&cursor, 10, &out);
  EXPECT_EQ(cursor, 0u);
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace keg::store
