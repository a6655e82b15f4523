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
      const bool had =
          keydir.Upsert(h, model.MatcherFor(key), Location{1, off, step % 2 == 0}, &old);
      ASSERT_EQ(had, expected.count(key) == 1);
      expected[key] = off;
    }
  }
  ASSERT_EQ(keydir.Size(), expected.size());
  for (const auto& [key, off] : expected) {
    Location c[4];
    const size_t n = keydir.FindCandidates(keydir.Hash(key), c, 4);
    ASSERT_EQ(n, 1u) << key;
    EXPECT_EQ(c[0].offset, off);
  }
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

TEST(KeydirTest, SeedChangesHashes) {
  EXPECT_NE(Keydir(1).Hash("same key"), Keydir(2).Hash("same key"));
  EXPECT_EQ(Keydir(3).Hash("same key"), Keydir(3).Hash("same key"));
}

}  // namespace
}  // namespace keg::store
