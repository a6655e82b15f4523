#include "store/ordered_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <iterator>
#include <map>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace keg::store {
namespace {

// Members live in `members` (loc = index); the model is a std::set of (score, member).
struct Model {
  std::vector<std::string> members;
  std::set<std::pair<double, std::string>> order;
  std::map<std::string, std::pair<double, uint64_t>> where;  // member -> score, loc
  OrderedIndex index;
  OrderedIndex::MemberFn member_of = [this](uint64_t loc) { return std::string_view(members[loc]); };

  void Put(const std::string& m, double score) {
    if (auto it = where.find(m); it != where.end()) {
      ASSERT_TRUE(index.Erase(it->second.first, m, it->second.second, member_of));
      order.erase({it->second.first, m});
    }
    members.push_back(m);
    const uint64_t loc = members.size() - 1;
    index.Insert(score, m, loc, member_of);
    order.insert({score, m});
    where[m] = {score, loc};
  }
  void Remove(const std::string& m) {
    auto it = where.find(m);
    if (it == where.end()) return;
    ASSERT_TRUE(index.Erase(it->second.first, m, it->second.second, member_of));
    order.erase({it->second.first, m});
    where.erase(it);
  }
  void Check() {
    ASSERT_EQ(index.Size(), order.size());
    size_t i = 0;
    auto it = order.begin();
    index.ForRange(0, index.Size(), [&](const OrderedIndex::Entry& e) {
      EXPECT_EQ(e.score, it->first);
      EXPECT_EQ(members[e.loc], it->second);
      ++it;
      ++i;
      return true;
    });
    ASSERT_EQ(i, order.size());
  }
};

TEST(OrderedIndexTest, KeepsScoreThenMemberOrderThroughInsertsAndErases) {
  Model m;
  std::mt19937_64 rng(7);
  for (int step = 0; step < 20000; ++step) {
    const std::string member = "m" + std::to_string(rng() % 3000);
    // Few distinct scores: ties are settled by member bytes, read through member_of.
    const double score = static_cast<double>(static_cast<int>(rng() % 40) - 20) / 2;
    if (rng() % 3 == 0) {
      m.Remove(member);
    } else {
      m.Put(member, score);
    }
    if (step % 2500 == 0) m.Check();
  }
  m.Check();
  // Ranks and positions agree with the model.
  size_t rank = 0;
  for (const auto& [score, member] : m.order) {
    const std::string& mem = member;
    const double sc = score;
    EXPECT_EQ(m.index.PartitionPoint([&](const OrderedIndex::Entry& e) {
                return OrderedIndex::Less(e, sc, mem, m.member_of);
              }),
              rank);
    const OrderedIndex::Entry e = m.index.At(rank);
    EXPECT_EQ(m.members[e.loc], member);
    ++rank;
  }
  // A score bound alone (no member read).
  const size_t below_zero = m.index.PartitionPoint([](const OrderedIndex::Entry& e) { return e.score < 0; });
  size_t expect = 0;
  for (const auto& [score, member] : m.order) expect += score < 0 ? 1 : 0;
  EXPECT_EQ(below_zero, expect);
  // Everything removed: empty, and usable again.
  std::vector<std::string> all;
  for (const auto& [member, w] : m.where) all.push_back(member);
  for (const std::string& member : all) m.Remove(member);
  m.Check();
  EXPECT_EQ(m.index.Size(), 0u);
  m.Put("again", 1);
  m.Check();
}

TEST(OrderedIndexTest, RepointsOnlyFromTheExpectedPlace) {
  Model m;
  for (int i = 0; i < 1000; ++i) m.Put("k" + std::to_string(i), i % 7);
  const auto [score, loc] = m.where["k500"];
  m.members.push_back("k500");
  const uint64_t moved = m.members.size() - 1;
  EXPECT_FALSE(m.index.Repoint(score, "k500", loc + 1, moved, m.member_of));
  EXPECT_TRUE(m.index.Repoint(score, "k500", loc, moved, m.member_of));
  m.where["k500"].second = moved;
  m.Check();
  m.Remove("k500");
  m.Check();
}

TEST(OrderedIndexTest, EraseMatchesTheLocationWithinItsScoreOnly) {
  // Erase looks for the entry by location among the first entries of its score, then by member:
  // a run of one score over several chunks, entries either side of it, and stale locations.
  Model m;
  int reads = 0;
  OrderedIndex::MemberFn counted = [&](uint64_t loc) {
    ++reads;
    return std::string_view(m.members[loc]);
  };
  for (int i = 0; i < 900; ++i) m.Put("tie" + std::to_string(1000 + i), 5);  // one run, 4+ chunks
  for (int i = 0; i < 300; ++i) m.Put("u" + std::to_string(i), i < 150 ? i - 150 : i);  // distinct
  m.Check();
  // A distinct score: found by location with no member read; a wrong location is refused.
  const auto [s_u, loc_u] = m.where["u200"];
  reads = 0;
  EXPECT_FALSE(m.index.Erase(s_u, "u200", loc_u + 1, counted));
  EXPECT_FALSE(m.index.Erase(s_u + 0.5, "u200", loc_u, counted));  // no entry of that score
  EXPECT_EQ(reads, 0);
  // Past the first entries of the run: by member (reads), and the location must still match.
  const auto [s_t, loc_t] = m.where["tie1700"];
  EXPECT_FALSE(m.index.Erase(s_t, "tie1700", loc_u, counted));
  EXPECT_GT(reads, 0);
  EXPECT_TRUE(m.index.Erase(s_t, "tie1700", loc_t, counted));
  m.order.erase({s_t, "tie1700"});
  m.where.erase("tie1700");
  m.Check();
  // Every other entry, in an order that takes the run from both ends and the middle.
  std::vector<std::string> all;
  for (const auto& [member, w] : m.where) all.push_back(member);
  std::shuffle(all.begin(), all.end(), std::mt19937_64(11));
  for (size_t i = 0; i < all.size(); ++i) {
    m.Remove(all[i]);
    if (i % 200 == 0) m.Check();
  }
  m.Check();
  EXPECT_EQ(m.index.Size(), 0u);
}

TEST(OrderedIndexTest, AssignedInOrderAndAboutTwentyOneBytesPerMember) {
  Model m;
  std::vector<OrderedIndex::Entry> entries;
  for (int i = 0; i < 200000; ++i) {
    m.members.push_back("member:" + std::to_string(i));
    entries.push_back({static_cast<double>(i), static_cast<uint64_t>(i)});
    m.order.insert({static_cast<double>(i), m.members.back()});
    m.where[m.members.back()] = {static_cast<double>(i), static_cast<uint64_t>(i)};
  }
  m.index.Assign(entries);
  m.Check();
  EXPECT_LE(static_cast<double>(m.index.MemoryBytes()) / 200000.0, 24.0);
  // Random inserts then keep the chunks between half and full: still well under 40 bytes.
  std::mt19937_64 rng(3);
  for (int i = 0; i < 100000; ++i) m.Put("r" + std::to_string(i), static_cast<double>(rng() % 1000000));
  m.Check();
  EXPECT_LE(static_cast<double>(m.index.MemoryBytes()) / static_cast<double>(m.index.Size()), 33.0);
}

TEST(OrderedIndexTest, PopsFromEitherEndBetweenInsertsKeepOrderRanksAndMemory) {
  // ZPOPMIN / ZPOPMAX empty the end chunks (the first retired in place, the last dropped), with
  // ZADDs landing anywhere — before the first live chunk too — and ranks read meanwhile.
  Model m;
  std::mt19937_64 rng(11);
  for (int i = 0; i < 60000; ++i) m.Put("s" + std::to_string(i), static_cast<double>(rng() % 100000));
  m.Check();
  const size_t full = m.index.MemoryBytes();
  int added = 0;
  for (int step = 0; step < 50000; ++step) {
    const uint64_t r = rng() % 10;
    if (r < 6 && !m.order.empty()) {
      m.Remove(m.order.begin()->second);  // ZPOPMIN
    } else if (r < 8 && !m.order.empty()) {
      m.Remove(std::prev(m.order.end())->second);  // ZPOPMAX
    } else {
      m.Put("n" + std::to_string(added++), static_cast<double>(rng() % 100000));
    }
    if (step % 5000 == 0) {
      m.Check();
      if (!m.order.empty()) {
        const size_t pos = rng() % m.order.size();
        auto it = m.order.begin();
        std::advance(it, static_cast<std::ptrdiff_t>(pos));
        EXPECT_EQ(m.members[m.index.At(pos).loc], it->second);
        const double sc = it->first;
        const std::string mem = it->second;
        EXPECT_EQ(m.index.PartitionPoint([&](const OrderedIndex::Entry& e) {
                    return OrderedIndex::Less(e, sc, mem, m.member_of);
                  }),
                  pos);
      }
    }
  }
  m.Check();
  // Popped to well under half: the retired chunks went (memory follows the members).
  EXPECT_LT(m.index.Size(), 60000u / 2);
  EXPECT_LT(m.index.MemoryBytes(), full * 3 / 4);
  // Popped to empty from the front, then usable again.
  while (!m.order.empty()) m.Remove(m.order.begin()->second);
  m.Check();
  EXPECT_EQ(m.index.Size(), 0u);
  m.Put("again", 1);
  m.Put("before", 0);
  m.Check();
}

}  // namespace
}  // namespace keg::store
