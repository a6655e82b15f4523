#include "store/inline_function.h"

#include <gtest/gtest.h>

#include <array>
#include <memory>
#include <string>

namespace keg::store {
namespace {

// Counts the live copies of a callable, to check that every copy is destroyed exactly once.
struct Counted {
  explicit Counted(int* counter) : live(counter) { ++*live; }
  Counted(const Counted& o) : live(o.live) { ++*live; }
  Counted(Counted&& o) noexcept : live(o.live) { ++*live; }
  ~Counted() { --*live; }
  int* live;
};

TEST(InlineFunctionTest, CallsWhatItHoldsInPlaceOrOnTheHeap) {
  auto shared = std::make_shared<int>(40);
  InlineFunction<int(int)> small = [shared](int x) { return *shared + x; };
  EXPECT_EQ(small(2), 42);

  std::array<char, 200> big{};  // past the inline room: held on the heap
  big[199] = 7;
  InlineFunction<int(int)> large = [big](int x) { return big[199] + x; };
  EXPECT_EQ(large(1), 8);

  InlineFunction<void()> empty;
  EXPECT_FALSE(empty);
  EXPECT_TRUE(empty == nullptr);
  EXPECT_TRUE(small);
}

TEST(InlineFunctionTest, CopiesAreIndependentAndMovesEmptyTheSource) {
  InlineFunction<int()> counter = [n = 0]() mutable { return ++n; };
  EXPECT_EQ(counter(), 1);
  InlineFunction<int()> copy = counter;  // copies the state as it is
  EXPECT_EQ(copy(), 2);
  EXPECT_EQ(copy(), 3);
  EXPECT_EQ(counter(), 2);

  InlineFunction<int()> moved = std::move(counter);
  EXPECT_FALSE(counter);  // NOLINT: a moved-from one is empty, by contract
  EXPECT_EQ(moved(), 3);

  std::string text(100, 'x');  // a heap-held one moves too
  InlineFunction<size_t()> heap = [text, pad = std::array<char, 100>{}] { return text.size() + pad.size(); };
  InlineFunction<size_t()> heap2 = std::move(heap);
  EXPECT_FALSE(heap);  // NOLINT
  EXPECT_EQ(heap2(), 200u);
  heap = heap2;
  EXPECT_EQ(heap(), 200u);
}

TEST(InlineFunctionTest, DestroysEveryCopyOnce) {
  int live = 0;
  {
    InlineFunction<int()> a = [c = Counted(&live)] { return *c.live; };
    EXPECT_EQ(live, 1);
    InlineFunction<int()> b = a;
    EXPECT_EQ(live, 2);
    InlineFunction<int()> d = std::move(b);
    EXPECT_EQ(live, 2);
    a = nullptr;
    EXPECT_EQ(live, 1);
    InlineFunction<int()>& same = d;
    d = same;  // self-assignment keeps it
    EXPECT_EQ(live, 1);
    a = d;
    EXPECT_EQ(live, 2);
  }
  EXPECT_EQ(live, 0);
  {
    std::array<char, 128> pad{};
    InlineFunction<int()> a = [c = Counted(&live), pad] { return pad[0]; };
    InlineFunction<int()> b = a;
    EXPECT_EQ(live, 2);
    b = std::move(a);
    EXPECT_EQ(live, 1);
  }
  EXPECT_EQ(live, 0);
}

}  // namespace
}  // namespace keg::store
