#include "store/function_ref.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace keg::store {
namespace {

int Twice(FunctionRef<int(int)> f, int x) { return f(f(x)); }
void CallVoid(FunctionRef<void(int)> f) { f(7); }

TEST(FunctionRefTest, CallsTheCallableItRefersTo) {
  int offset = 3;
  auto add = [&offset](int x) { return x + offset; };
  EXPECT_EQ(Twice(add, 1), 7);
  offset = 10;  // a reference, not a copy: the change is seen
  EXPECT_EQ(Twice(add, 1), 21);
}

TEST(FunctionRefTest, KeepsTheStateOfAMutableLambda) {
  auto counter = [n = 0](int) mutable { return ++n; };
  EXPECT_EQ(Twice(counter, 0), 2);
  EXPECT_EQ(Twice(counter, 0), 4);  // the same object was called both times
}

TEST(FunctionRefTest, DropsTheResultForAVoidSignature) {
  std::string seen;
  CallVoid([&seen](int x) { seen = std::to_string(x); return 42; });
  EXPECT_EQ(seen, "7");
}

TEST(FunctionRefTest, RefersToAStdFunctionAndAFunctionPointer) {
  const std::function<int(int)> f = [](int x) { return x * 2; };
  EXPECT_EQ(Twice(f, 3), 12);
  int (*neg)(int) = [](int x) { return -x; };
  EXPECT_EQ(Twice(neg, 5), 5);
  // A FunctionRef passed on refers to the same callable.
  auto twice_again = [](FunctionRef<int(int)> g) { return Twice(g, 1); };
  int calls = 0;
  EXPECT_EQ(twice_again([&calls](int x) { ++calls; return x + 1; }), 3);
  EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace keg::store
