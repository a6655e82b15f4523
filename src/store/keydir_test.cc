#include "store/keydir.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <unordered_map>
#include <vector>

namespace keg::store {
namespace {

// The "records": key i lives at offset i of file 1; the matcher compares by offset.
struct Model {
  std::vector<std::string> keys;
  auto MatcherFor(const std::string& key) {
    return [this, key](const Location& loc) { return keys.at(loc.offset) == key; };
  }
};

TEST(KeydirTest, MatchesAMapUnderRandomOperations) {
  Keydir keydir(42);
  Model model;
  std::unordered_map<std::string, uint64_t> expected;  // key -> offset
  std::unordered_map<std::string, uint32_t> expiry;    // key -> expire_s (0: none)
  std::mt19937_64 rng(7);
  for (int step = 0; step < 200000; ++step) {
    const std::string key = "k" + std::to_string(rng() % 5000);
    const uint64_t h = keydir.Hash(key);
    Location old;
    if (rng() % 3 == 0) {
      const bool had = keydir.Erase(h, model.MatcherFor(key), &old);
      ASSERT_EQ(had, expected.count(key) == 1);
      if (had) {
        EXPECT_EQ(old.offset, expected[key]);
      }
      expected.erase(key);
    } else {
      const uint64_t off = model.keys.size();
      model.keys.push_back(key);
      // Half the records expire: their entries keep 32 bits of the hash and the expiry.
      const bool expires = step % 2 == 0;
      const uint32_t expire_s = expires ? 1'700'000'000u + static_cast<uint32_t>(step) : 0;
      const bool had = keydir.Upsert(h, model.MatcherFor(key), Location{1, off, expires, expire_s}, &old);
      ASSERT_EQ(had, expected.count(key) == 1);
      expected[key] = off;
      expiry[key] = expire_s;
    }
  }
  ASSERT_EQ(keydir.Size(), expected.size());
  for (const auto& [key, off] : expected) {
    Location c[4];
    const size_t n = keydir.FindCandidates(keydir.Hash(key), c, 4);
    ASSERT_EQ(n, 1u) << key;
    EXPECT_EQ(c[0].offset, off);
    EXPECT_EQ(c[0].expires, expiry[key] != 0);
    EXPECT_EQ(c[0].expire_s, expiry[key]);
  }
  // The walk the expire cycle does sees every expiry, and its hash word erases the entry.
  size_t expiring = 0;
  for (size_t shard = 0; shard < Keydir::kShards; ++shard) {
    std::vector<std::pair<uint64_t, Location>> entries;
    keydir.ForEachInShard(shard, [&](uint64_t hash, const Location& loc) { entries.emplace_back(hash, loc); });
    for (const auto& [hash, loc] : entries) {
      const std::string& key = model.keys.at(loc.offset);
      ASSERT_EQ(loc.expire_s, expiry[key]) << key;
      if (loc.expires) {
        ++expiring;
        ASSERT_TRUE(keydir.EraseIfAt(hash, loc)) << key;
        expected.erase(key);
      }
    }
  }
  EXPECT_GT(expiring, 0u);
  EXPECT_EQ(keydir.Expiring(), 0u);
  ASSERT_EQ(keydir.Size(), expected.size());
  for (const auto& [key, off] : expected) {
    Location c[4];
    ASSERT_EQ(keydir.FindCandidates(keydir.Hash(key), c, 4), 1u) << key;
    EXPECT_FALSE(c[0].expires);
  }
}

TEST(KeydirTest, ExpireSeconds) {
  EXPECT_EQ(Location::ExpireSeconds(1'700'000'000'000), 1'700'000'000u);
  EXPECT_EQ(Location::ExpireSeconds(1'700'000'000'001), 1'700'000'001u);  // rounded up
  EXPECT_EQ(Location::ExpireSeconds(-5), 1u);
  EXPECT_EQ(Location::ExpireSeconds(INT64_MAX), UINT32_MAX);
}

TEST(KeydirTest, LocationPacking) {
  const Location loc{Location::kMaxFile, (1ull << 40) - 1, true};
  const Location back = Location::Unpack(loc.Pack());
  EXPECT_EQ(back.file, loc.file);
  EXPECT_EQ(back.offset, loc.offset);
  EXPECT_TRUE(back.expires);
}

TEST(KeydirTest, CompareAndSetOnlyMovesTheExpectedRecord) {
  Keydir keydir(1);
  Model model{{"a", "a"}};
  const uint64_t h = keydir.Hash("a");
  Location old;
  keydir.Upsert(h, model.MatcherFor("a"), Location{1, 0, false}, &old);
  EXPECT_FALSE(keydir.ReplaceIfAt(h, Location{1, 1, false}, Location{2, 5, false}));
  EXPECT_TRUE(keydir.ReplaceIfAt(h, Location{1, 0, false}, Location{2, 5, false}));
  Location c[2];
  ASSERT_EQ(keydir.FindCandidates(h, c, 2), 1u);
  EXPECT_EQ(c[0].file, 2u);
  EXPECT_FALSE(keydir.EraseIfAt(h, Location{1, 0, false}));
  EXPECT_TRUE(keydir.EraseIfAt(h, Location{2, 5, false}));
  EXPECT_EQ(keydir.Size(), 0u);
}

// The group's apply finds a key's entry by the location its lookup saw; under one hash two keys
// (a collision) must each keep their own entry, and an entry moved since is not touched.
TEST(KeydirTest, ReplaceAtFindsTheEntryByLocationOnly) {
  Keydir keydir(1);
  Model model{{"a", "b"}};
  const uint64_t h = keydir.Hash("a");
  Location old;
  keydir.Upsert(h, model.MatcherFor("a"), Location{1, 0, false}, &old);
  keydir.Upsert(h, model.MatcherFor("b"), Location{1, 1, false}, &old);  // the same hash, another key
  EXPECT_FALSE(keydir.ReplaceAt(h, Location{1, 7, false}, Location{3, 9, false}, &old));  // moved: nothing
  ASSERT_TRUE(keydir.ReplaceAt(h, Location{1, 1, false}, Location{2, 5, true, 100}, &old));
  EXPECT_EQ(old.offset, 1u);
  EXPECT_EQ(keydir.Size(), 2u);
  EXPECT_EQ(keydir.Expiring(), 1u);
  Location c[4];
  ASSERT_EQ(keydir.FindCandidates(h, c, 4), 2u);
  EXPECT_EQ(c[0].offset, 0u);  // a's entry as it was
  EXPECT_EQ(c[1].file, 2u);    // b's moved
  EXPECT_EQ(c[1].offset, 5u);
  EXPECT_TRUE(c[1].expires);
}

// Two keys under one hash (a collision): Lookup asks for the first candidate alone, then for all
// of them when it is not its key, so `max` must stop at the first one in the same order.
TEST(KeydirTest, CandidatesComeInProbeOrderUpToMax) {
  Keydir keydir(1);
  Model model{{"a", "b", "c"}};
  const uint64_t h = keydir.Hash("a");
  Location old;
  keydir.Upsert(h, model.MatcherFor("a"), Location{1, 0, false}, &old);
  keydir.Upsert(h, model.MatcherFor("b"), Location{1, 1, false}, &old);  // the same hash, another key
  keydir.Upsert(keydir.Hash("c"), model.MatcherFor("c"), Location{1, 2, false}, &old);
  Location all[4];
  ASSERT_EQ(keydir.FindCandidates(h, all, 4), 2u);
  EXPECT_EQ(all[0].offset, 0u);
  EXPECT_EQ(all[1].offset, 1u);
  Location first[4] = {};
  ASSERT_EQ(keydir.FindCandidates(h, first, 1), 1u);
  EXPECT_EQ(first[0].offset, 0u);
  EXPECT_EQ(first[1].offset, 0u);  // untouched past max
  EXPECT_EQ(first[1].file, 0u);
}

TEST(KeydirTest, SeedChangesHashes) {
  EXPECT_NE(Keydir(1).Hash("same key"), Keydir(2).Hash("same key"));
  EXPECT_EQ(Keydir(3).Hash("same key"), Keydir(3).Hash("same key"));
}

}  // namespace
}  // namespace keg::store
