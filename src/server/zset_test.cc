// ZsetSeq: a large sorted set's committed order with a write group's changes over it
// (zset::GroupChanges) reads as the set those changes leave — checked against a model (std::set)
// through random pops from either end, adds, score changes and removals, as a pipeline of sorted
// set commands makes them.
#include "server/zset.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <iterator>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "store/format.h"

namespace keg::server {
namespace {

// A committed order held in a vector: an entry's location is its position.
class VectorOrder final : public store::OrderedView {
 public:
  explicit VectorOrder(std::vector<std::pair<double, std::string>> items) : items_(std::move(items)) {}

  uint64_t Size() const override { return items_.size(); }
  uint64_t PartitionPoint(Before before) const override {
    uint64_t lo = 0;
    uint64_t hi = items_.size();
    while (lo < hi) {
      const uint64_t mid = lo + (hi - lo) / 2;
      if (before(Probe(*this, items_[mid].first, mid))) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo;
  }
  void ForRange(uint64_t from, uint64_t to, store::FunctionRef<bool(const Item&)> fn) const override {
    for (uint64_t i = from; i < to && i < items_.size(); ++i) {
      if (!fn(Item{items_[i].first, items_[i].second})) return;
    }
  }
  bool Find(std::string_view member, double* score, uint64_t* pos) const override {
    for (uint64_t i = 0; i < items_.size(); ++i) {
      if (items_[i].second == member) {
        *score = items_[i].first;
        *pos = i;
        return true;
      }
    }
    return false;
  }
  const store::Status& error() const override { return ok_; }

 protected:
  std::string_view MemberAt(uint64_t loc) const override { return items_[loc].second; }
  std::string_view CompareMember(uint64_t loc) const override { return items_[loc].second; }

 private:
  std::vector<std::pair<double, std::string>> items_;
  store::Status ok_;
};

using Model = std::set<std::pair<double, std::string>>;

std::vector<std::pair<double, std::string>> RangeOf(const ZsetSeq& seq, uint64_t from, uint64_t to) {
  std::vector<std::pair<double, std::string>> out;
  seq.Range(from, to, [&](const zset::Item& it) {
    out.emplace_back(it.score, std::string(it.member));
    return true;
  });
  return out;
}

std::vector<std::pair<double, std::string>> RangeOf(const Model& m, uint64_t from, uint64_t to) {
  std::vector<std::pair<double, std::string>> out;
  uint64_t i = 0;
  for (const auto& it : m) {
    if (i >= from && i < to) out.push_back(it);
    ++i;
  }
  return out;
}

TEST(ZsetSeqTest, GroupChangesReadAsTheSetTheyLeave) {
  for (uint32_t seed = 1; seed <= 60; ++seed) {
    std::mt19937_64 rng(seed);
    const size_t committed = seed % 5 == 0 ? 0 : 1 + rng() % 300;
    Model model;
    std::vector<std::pair<double, std::string>> items;
    for (size_t i = 0; i < committed; ++i) {
      // Few distinct scores: ties ordered by member, as Redis's.
      model.emplace(static_cast<double>(rng() % 40), "c" + std::to_string(i));
    }
    items.assign(model.begin(), model.end());
    VectorOrder order(items);
    zset::GroupChanges changes;
    ZsetSeq seq;
    seq.SetCommitted(&order);
    seq.SetChanges(&changes);
    int added = 0;
    for (int op = 0; op < 400; ++op) {
      const uint64_t kind = rng() % 10;
      std::string member;
      const std::string* value = nullptr;
      std::string encoded;
      if (kind < 4 && !model.empty()) {  // ZPOPMIN, mostly, or ZPOPMAX: a run of removed positions
        auto it = kind < 3 ? model.begin() : std::prev(model.end());
        member = it->second;
        model.erase(it);
      } else if (kind < 6) {  // ZADD of a new member
        member = "a" + std::to_string(added++);
        const double score = static_cast<double>(rng() % 40);
        model.emplace(score, member);
        encoded = store::format::EncodeScore(score);
        value = &encoded;
      } else if (!model.empty()) {  // an existing member: a new score (ZINCRBY) or ZREM
        auto it = model.begin();
        std::advance(it, static_cast<std::ptrdiff_t>(rng() % model.size()));
        member = it->second;
        model.erase(it);
        if (kind < 8) {
          const double score = static_cast<double>(rng() % 40);
          model.emplace(score, member);
          encoded = store::format::EncodeScore(score);
          value = &encoded;
        }
      } else {
        continue;
      }
      const std::string_view v = value != nullptr ? std::string_view(*value) : std::string_view();
      changes.Apply(&order, member, value != nullptr ? &v : nullptr);
      ASSERT_EQ(seq.size(), model.size()) << "seed " << seed << " op " << op;
      const uint64_t n = model.size();
      const uint64_t from = n == 0 ? 0 : rng() % n;
      const uint64_t to = from + rng() % 12;
      ASSERT_EQ(RangeOf(seq, from, to), RangeOf(model, from, to)) << "seed " << seed << " op " << op << " [" << from << ", " << to << ")";
      ASSERT_EQ(RangeOf(seq, 0, 3), RangeOf(model, 0, 3)) << "seed " << seed << " op " << op;
      if (n > 0) {
        ASSERT_EQ(RangeOf(seq, n - 1, n), RangeOf(model, n - 1, n)) << "seed " << seed << " op " << op;
      }
    }
    ASSERT_EQ(RangeOf(seq, 0, model.size()), RangeOf(model, 0, model.size())) << "seed " << seed;
  }
}

}  // namespace
}  // namespace keg::server
