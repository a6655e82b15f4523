#include "store/group_state.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>

namespace keg::store {
namespace {

// GroupMap against std::map over random sets, replacements and clears, with hashes that collide
// often (a few low bits only), so probing, growth and the O(1) clear are all exercised.
TEST(GroupMapTest, MatchesAMapAcrossSetsClearsAndCollisions) {
  std::mt19937_64 rng(42);
  std::vector<std::string> keys;
  for (int i = 0; i < 3000; ++i) keys.push_back("key:" + std::to_string(i));
  GroupMap<int> map;
  std::map<std::string, int> model;
  auto hash = [](const std::string& k) { return std::hash<std::string>{}(k) & 0x3f; };  // 64 values
  for (int round = 0; round < 200; ++round) {
    const int ops = static_cast<int>(rng() % (round % 10 == 0 ? 5000 : 60));
    for (int i = 0; i < ops; ++i) {
      const std::string& k = keys[rng() % keys.size()];
      const int v = static_cast<int>(rng() % 1000);
      map.Set(k, hash(k), v);
      model[k] = v;
    }
    ASSERT_EQ(map.size(), model.size());
    for (int i = 0; i < 200; ++i) {
      const std::string& k = keys[rng() % keys.size()];
      const int* found = map.Find(k, hash(k));
      auto it = model.find(k);
      ASSERT_EQ(found != nullptr, it != model.end()) << k;
      if (found != nullptr) {
        ASSERT_EQ(*found, it->second) << k;
      }
    }
    std::map<std::string, int> listed;
    for (const auto& item : map.items()) listed[std::string(item.key)] = item.value;
    ASSERT_EQ(listed, model);
    map.Clear();
    model.clear();
    for (const std::string& k : keys) ASSERT_FALSE(map.Contains(k, hash(k)));
  }
}

// The pool keeps each op where it was added until Clear, however many are added.
TEST(OpPoolTest, OpsStayPutUntilClear) {
  OpPool pool;
  for (int round = 0; round < 3; ++round) {
    std::vector<std::pair<const WriteBatch::Op*, std::string>> added;
    for (int i = 0; i < 1000; ++i) {
      WriteBatch::Op op;
      op.key = "a key long enough to live on the heap " + std::to_string(i);
      const WriteBatch::Op& kept = pool.Add(std::move(op));
      added.emplace_back(&kept, kept.key);
    }
    for (const auto& [op, key] : added) ASSERT_EQ(op->key, key);
    pool.Clear();
  }
}

}  // namespace
}  // namespace keg::store
