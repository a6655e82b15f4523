#include "server/hyperloglog.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace keg::server::hll {
namespace {

std::vector<std::string> Elements(int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i < to; ++i) out.push_back("e:" + std::to_string(i));
  return out;
}

bool AddAll(std::string* sketch, const std::vector<std::string>& items, size_t max_bytes, bool* changed) {
  const std::vector<std::string_view> views(items.begin(), items.end());
  return Add(sketch, views, max_bytes, changed);
}

uint64_t CountOf(const std::string& sketch) {
  uint64_t n = 0;
  EXPECT_TRUE(Count(sketch, &n));
  return n;
}

// Registers and values redis-server 7.0.15 gave these elements (PFADD, then PFDEBUG DECODE): the
// same hash, so a sketch moves between keg and Redis and both count it alike.
TEST(HyperLogLogTest, HashesAsRedis) {
  struct Known {
    std::string_view element;
    uint32_t index;
    uint8_t value;
  };
  const Known known[] = {{"a", 12711, 2}, {"hello", 9216, 1}, {"", 5938, 2},
                         {"abcdefghijklmnopqrstuvwxyz", 13007, 1}, {"12345678", 10579, 3}};
  for (const Known& k : known) {
    uint32_t index = 0;
    uint8_t value = 0;
    Hash(k.element, &index, &value);
    EXPECT_EQ(index, k.index) << k.element;
    EXPECT_EQ(value, k.value) << k.element;
  }
}

// Redis's estimates of the same sets (PFCOUNT of e:0 ... e:N-1 in redis-server 7.0.15).
TEST(HyperLogLogTest, CountsAsRedis) {
  std::string sparse = NewSketch();
  bool changed = false;
  ASSERT_TRUE(AddAll(&sparse, Elements(0, 500), 3000, &changed));
  EXPECT_TRUE(changed);
  EXPECT_EQ(sparse[4], static_cast<char>(kSparse));
  EXPECT_EQ(CountOf(sparse), 500u);

  std::string dense = NewSketch();
  for (int s = 0; s < 100000; s += 1000) ASSERT_TRUE(AddAll(&dense, Elements(s, s + 1000), 3000, &changed));
  EXPECT_EQ(dense.size(), kDenseSize);
  EXPECT_EQ(CountOf(dense), 100342u);
}

TEST(HyperLogLogTest, NewSketchIsEmptySparseWithAValidCache) {
  const std::string s = NewSketch();
  ASSERT_TRUE(IsSketch(s));
  EXPECT_EQ(s.size(), kHeaderSize + 2);
  EXPECT_TRUE(CacheValid(s));
  EXPECT_EQ(CachedCount(s), 0u);
  EXPECT_EQ(CountOf(s), 0u);
}

TEST(HyperLogLogTest, AddReportsChangesAndMarksTheCacheStale) {
  std::string s = NewSketch();
  bool changed = false;
  ASSERT_TRUE(AddAll(&s, {"a", "b", "c"}, 3000, &changed));
  EXPECT_TRUE(changed);
  EXPECT_FALSE(CacheValid(s));
  SetCache(&s, CountOf(s));
  EXPECT_TRUE(CacheValid(s));
  EXPECT_EQ(CachedCount(s), 3u);
  ASSERT_TRUE(AddAll(&s, {"a", "b", "c"}, 3000, &changed));
  EXPECT_FALSE(changed);
  EXPECT_TRUE(CacheValid(s));
}

TEST(HyperLogLogTest, SparseBecomesDensePastItsLimit) {
  std::string s = NewSketch();
  bool changed = false;
  ASSERT_TRUE(AddAll(&s, Elements(0, 200), 3000, &changed));
  EXPECT_EQ(s[4], static_cast<char>(kSparse));
  ASSERT_TRUE(AddAll(&s, Elements(200, 400), 300, &changed));  // a limit it no longer fits
  EXPECT_EQ(s[4], static_cast<char>(kDense));
  EXPECT_EQ(s.size(), kDenseSize);
  EXPECT_EQ(CountOf(s), 401u);  // (redis-server 7.0.15's estimate of the same 400 elements)
}

TEST(HyperLogLogTest, SparseAndDenseAgreeAndMergeAlike) {
  std::string sparse = NewSketch();
  std::string dense = NewSketch();
  ASSERT_TRUE(ToDense(&dense));
  bool changed = false;
  const auto items = Elements(0, 1500);
  ASSERT_TRUE(AddAll(&sparse, items, 1 << 20, &changed));
  ASSERT_TRUE(AddAll(&dense, items, 1 << 20, &changed));
  ASSERT_EQ(sparse[4], static_cast<char>(kSparse));
  EXPECT_EQ(CountOf(sparse), CountOf(dense));
  std::vector<uint8_t> a(kRegisters, 0);
  std::vector<uint8_t> b(kRegisters, 0);
  ASSERT_TRUE(MergeInto(sparse, a.data()));
  ASSERT_TRUE(MergeInto(dense, b.data()));
  EXPECT_EQ(a, b);
  EXPECT_EQ(Estimate(a.data()), CountOf(dense));
  // A sparse target raised to them comes out dense when asked.
  std::string target = NewSketch();
  ASSERT_TRUE(Raise(&target, a.data(), /*dense=*/true, 3000));
  EXPECT_EQ(target.size(), kDenseSize);
  EXPECT_EQ(CountOf(target), CountOf(dense));
}

TEST(HyperLogLogTest, WhatIsNoSketch) {
  std::string s = NewSketch();
  EXPECT_FALSE(IsSketch(s.substr(0, kHeaderSize - 1)));
  std::string bad_magic = s;
  bad_magic[0] = 'X';
  EXPECT_FALSE(IsSketch(bad_magic));
  std::string bad_encoding = s;
  bad_encoding[4] = 2;
  EXPECT_FALSE(IsSketch(bad_encoding));
  std::string short_dense = s;
  short_dense[4] = static_cast<char>(kDense);  // a dense header on a sparse body: the wrong length
  EXPECT_FALSE(IsSketch(short_dense));
  EXPECT_FALSE(IsSketch("123"));
}

// Runs that pass the last register, or do not reach it, are corruption; the sums are checked
// before they can overflow (Redis's CVE-2025-32023 tests: 4 GB of runs in XZERO or ZERO ops).
TEST(HyperLogLogTest, CorruptRunsAreDetected) {
  const std::string header = NewSketch().substr(0, kHeaderSize);
  std::string tail = NewSketch() + "hello";  // runs after the last register
  uint64_t n = 0;
  EXPECT_FALSE(Count(tail, &n));
  std::string many = header;
  for (int i = 0; i < 131072 + 1000; ++i) many += std::string{static_cast<char>(0x7f), static_cast<char>(0xff)};
  many.push_back(static_cast<char>(0xff));
  EXPECT_FALSE(Count(many, &n));
  std::vector<uint8_t> regs(kRegisters, 0);
  EXPECT_FALSE(MergeInto(many, regs.data()));
  std::string text;
  EXPECT_FALSE(DescribeSparse(many, &text));
  EXPECT_TRUE(text.empty());
  std::string s = many;
  EXPECT_FALSE(ToDense(&s));
  bool changed = false;
  EXPECT_FALSE(AddAll(&s, {"a"}, 3000, &changed));
  std::string cut = header + std::string(1, static_cast<char>(0x40));  // an XZERO without its second byte
  EXPECT_FALSE(Count(cut, &n));
  EXPECT_FALSE(DescribeSparse(cut, &text));
  std::string short_runs = header + std::string(1, static_cast<char>(0x00));  // 1 register of 16384
  EXPECT_FALSE(Count(short_runs, &n));
}

TEST(HyperLogLogTest, DescribesSparseRunsInRedissWords) {
  std::string s = NewSketch();
  std::string text;
  ASSERT_TRUE(DescribeSparse(s, &text));
  EXPECT_EQ(text, "Z:16384");
  bool changed = false;
  ASSERT_TRUE(AddAll(&s, {"a"}, 3000, &changed));  // register 12711, value 2
  ASSERT_TRUE(DescribeSparse(s, &text));
  EXPECT_EQ(text, "Z:12711 v:2,1 Z:3672");
  ASSERT_TRUE(AddAll(&s, Elements(0, 500), 3000, &changed));  // short zero runs too
  ASSERT_TRUE(DescribeSparse(s, &text));
  EXPECT_NE(text.find("z:"), std::string::npos);
  size_t total = 0;  // the runs' lengths add up to the registers
  for (size_t at = 0; at < text.size();) {
    const size_t end = std::min(text.find(' ', at), text.size());
    const std::string run = text.substr(at, end - at);
    total += std::stoul(run.substr(run.find_last_of(":,") + 1));
    at = end + 1;
  }
  EXPECT_EQ(total, kRegisters);
}

TEST(HyperLogLogTest, SelfTestPasses) { EXPECT_EQ(SelfTest(), ""); }

}  // namespace
}  // namespace keg::server::hll
