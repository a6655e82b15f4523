#include "store/position_index.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace keg::store {
namespace {

std::string Member(uint64_t pos) {
  std::string m(8, '\0');
  for (int i = 7; i >= 0; --i, pos >>= 8) m[static_cast<size_t>(i)] = static_cast<char>(pos & 0xff);
  return m;
}

constexpr uint64_t kMiddle = uint64_t{1} << 63;

// The index beside a std::map of what it must hold.
struct Model {
  PositionIndex index;
  std::map<uint64_t, Location> want;

  void Put(uint64_t pos, Location loc) {
    Location old;
    const bool had = index.Upsert(Member(pos), loc, &old);
    auto it = want.find(pos);
    ASSERT_EQ(had, it != want.end()) << pos;
    if (had) {
      EXPECT_TRUE(old.SameRecord(it->second)) << pos;
    }
    want[pos] = loc;
  }
  void Del(uint64_t pos) {
    Location old;
    const bool had = index.Erase(Member(pos), &old);
    auto it = want.find(pos);
    ASSERT_EQ(had, it != want.end()) << pos;
    if (had) {
      EXPECT_TRUE(old.SameRecord(it->second)) << pos;
      want.erase(it);
    }
  }
  // `ordered`: ForEach in position order (not so with far positions: they come last).
  void Check(bool ordered = true) {
    ASSERT_EQ(index.Size(), want.size());
    for (const auto& [pos, loc] : want) {
      Location got;
      ASSERT_TRUE(index.Find(Member(pos), &got)) << pos;
      ASSERT_TRUE(got.SameRecord(loc)) << pos;
    }
    // FindMany agrees with Find, for present and absent positions alike.
    std::vector<std::string> names;
    for (const auto& [pos, loc] : want) {
      names.push_back(Member(pos));
      names.push_back(Member(pos + 1));
    }
    const std::vector<std::string_view> views(names.begin(), names.end());
    std::vector<Location> many(views.size());
    std::vector<uint8_t> found(views.size());
    index.FindMany(views, many.data(), found.data());
    for (size_t i = 0; i < views.size(); ++i) {
      Location one;
      ASSERT_EQ(found[i] == 1, index.Find(views[i], &one)) << i;
      if (found[i] == 1) {
        ASSERT_TRUE(one.SameRecord(many[i])) << i;
      }
    }
    // FindPositions agrees with Find over a run of positions around each one held (the run's
    // ends and the positions between entries included).
    for (const auto& [pos, loc] : want) {
      const uint64_t first = pos >= 3 ? pos - 3 : 0;
      Location run[8];
      uint8_t run_found[8];
      index.FindPositions(first, 8, run, run_found);
      for (size_t i = 0; i < 8; ++i) {
        Location one;
        ASSERT_EQ(run_found[i] == 1, index.Find(Member(first + i), &one)) << first + i;
        if (run_found[i] == 1) {
          ASSERT_TRUE(one.SameRecord(run[i])) << first + i;
        }
      }
    }
    std::vector<Location> seen;
    index.ForEach([&](const Location& l) { seen.push_back(l); });
    ASSERT_EQ(seen.size(), want.size());
    if (!ordered) return;
    size_t i = 0;
    for (const auto& [pos, loc] : want) EXPECT_TRUE(seen[i++].SameRecord(loc)) << pos;
  }
};

TEST(PositionIndexTest, AQueueKeepsItsEntriesAndOnlyItsSize) {
  // Pushes on the right, pops on the left, as a job queue: the index follows and does not grow
  // with the positions it has been through.
  Model m;
  uint64_t first = kMiddle, end = kMiddle;
  uint64_t offset = 0;
  for (int round = 0; round < 40; ++round) {
    for (int i = 0; i < 5000; ++i) m.Put(end++, Location{1, offset += 60, false, 0});
    for (int i = 0; i < 4900; ++i) m.Del(first++);
  }
  m.Check();
  EXPECT_EQ(m.index.Size(), 4000u);
  uint64_t lowest = 0, held = 0;
  ASSERT_TRUE(m.index.Bounds(&lowest, &held));
  EXPECT_EQ(lowest, first);
  EXPECT_EQ(held, 4000u);
  EXPECT_LE(m.index.MemoryBytes(), 4000u * 6);
  while (first < end) m.Del(first++);
  EXPECT_EQ(m.index.Size(), 0u);
  EXPECT_LE(m.index.MemoryBytes(), 64u);
  EXPECT_FALSE(m.index.Bounds(&lowest, &held));
}

TEST(PositionIndexTest, RandomOperationsAtBothEndsAndInsideMatchAModel) {
  Model m;
  std::mt19937_64 rng(7);
  uint64_t lo = kMiddle, hi = kMiddle;  // [lo, hi) spans what the model may hold
  for (int step = 0; step < 200000; ++step) {
    const uint32_t file = 1 + static_cast<uint32_t>(rng() % 3);  // three files: chunks widen, narrow
    const Location loc{file, rng() % (uint64_t{1} << 33), false, 0};  // some past 4 GiB
    switch (rng() % 6) {
      case 0: m.Put(--lo, loc); break;
      case 1: m.Put(hi++, loc); break;
      case 2: if (lo < hi) m.Del(lo++); break;
      case 3: if (lo < hi) m.Del(--hi); break;
      case 4: if (lo < hi) m.Put(lo + rng() % (hi - lo), loc); break;
      default: if (lo < hi) m.Del(lo + rng() % (hi - lo)); break;
    }
    if (step % 50000 == 0) m.Check();
  }
  m.Check();
}

TEST(PositionIndexTest, ChunksNarrowAgainWhenTheirRecordsShareAFile) {
  Model m;
  for (uint64_t i = 0; i < 6400; ++i) m.Put(kMiddle + i, Location{1, i * 50, false, 0});
  const size_t narrow = m.index.MemoryBytes();
  EXPECT_LE(narrow, 6400u * 5);  // 4 bytes an element and a 16-byte header per 64
  // Compaction moves them one by one into file 9: mixed chunks go wide meanwhile...
  for (uint64_t i = 0; i < 6400; i += 2) {
    ASSERT_TRUE(m.index.ReplaceIfAt(Member(kMiddle + i), m.want[kMiddle + i], Location{9, i * 40, false, 0}));
    m.want[kMiddle + i] = Location{9, i * 40, false, 0};
  }
  EXPECT_GT(m.index.MemoryBytes(), narrow * 3 / 2);
  EXPECT_FALSE(m.index.ReplaceIfAt(Member(kMiddle), Location{1, 0, false, 0}, Location{9, 1, false, 0}));
  for (uint64_t i = 1; i < 6400; i += 2) {
    ASSERT_TRUE(m.index.ReplaceIfAt(Member(kMiddle + i), m.want[kMiddle + i], Location{9, i * 40, false, 0}));
    m.want[kMiddle + i] = Location{9, i * 40, false, 0};
  }
  m.Check();
  EXPECT_EQ(m.index.MemoryBytes(), narrow);  // ...and narrow again once all of them moved
}

TEST(PositionIndexTest, TheMetaElementAndFarPositionsAreEntriesToo) {
  Model m;
  PositionIndex& ix = m.index;
  Location old;
  EXPECT_FALSE(ix.Upsert("", Location{1, 8, false, 0}, &old));
  EXPECT_TRUE(ix.Upsert("", Location{1, 16, false, 0}, &old));
  EXPECT_EQ(old.offset, 8u);
  EXPECT_FALSE(ix.Upsert("abc", Location{1, 24, false, 0}, &old));  // not a position: not indexed
  EXPECT_EQ(ix.Size(), 1u);
  m.Put(kMiddle, Location{1, 32, false, 0});
  m.Put(5, Location{1, 40, false, 0});  // far below: kept aside, not a 2^57-chunk deque
  m.Put(UINT64_MAX, Location{1, 48, false, 0});
  EXPECT_LE(ix.MemoryBytes(), 1024u);
  Location got;
  ASSERT_TRUE(ix.Find("", &got));
  EXPECT_EQ(got.offset, 16u);
  ASSERT_TRUE(ix.Find(Member(5), &got));
  EXPECT_EQ(got.offset, 40u);
  EXPECT_EQ(ix.Size(), 4u);
  std::set<uint64_t> offsets;
  ix.ForEach([&](const Location& l) { offsets.insert(l.offset); });
  EXPECT_EQ(offsets, (std::set<uint64_t>{16, 32, 40, 48}));
  m.Del(5);
  m.Del(UINT64_MAX);
  EXPECT_TRUE(ix.Erase("", &old));
  EXPECT_FALSE(ix.Find("", &got));
  m.Check();
  // A far position stays found once the deque grows to reach its chunk, and leaves when erased.
  const uint64_t far = kMiddle + 64 * 1500 + 3;
  m.Put(far, Location{2, 56, false, 0});
  for (uint64_t k = 1; k <= 1600; ++k) m.Put(kMiddle + 64 * k, Location{2, 64 + k, false, 0});
  m.Check(/*ordered=*/false);
  m.Del(far);
  m.Check();
  m.Put(far, Location{2, 57, false, 0});  // now in its chunk
  m.Check();
  for (const auto& [pos, loc] : std::map<uint64_t, Location>(m.want)) m.Del(pos);
  EXPECT_EQ(ix.Size(), 0u);
}

TEST(PositionIndexTest, ScanVisitsEveryEntryOnceAndRandomEntriesArePresent) {
  Model m;
  for (uint64_t i = 0; i < 1000; ++i) m.Put(kMiddle + i * 3, Location{1, 100 + i, false, 0});
  std::multiset<uint64_t> seen;
  uint64_t cursor = 0;
  int calls = 0;
  do {
    std::vector<Location> out;
    m.index.Scan(&cursor, 10, &out);
    for (const Location& l : out) seen.insert(l.offset);
    ++calls;
  } while (cursor != 0 && calls < 10000);
  EXPECT_GT(calls, 20);
  ASSERT_EQ(seen.size(), 1000u);
  for (uint64_t i = 0; i < 1000; ++i) EXPECT_EQ(seen.count(100 + i), 1u);
  std::mt19937_64 rng(3);
  std::set<uint64_t> picked;
  for (int i = 0; i < 2000; ++i) {
    Location l;
    ASSERT_TRUE(m.index.RandomEntry(rng(), &l));
    ASSERT_GE(l.offset, 100u);
    ASSERT_LT(l.offset, 1100u);
    picked.insert(l.offset);
  }
  EXPECT_GT(picked.size(), 500u);  // spread over the list, not one chunk's
}

}  // namespace
}  // namespace keg::store
