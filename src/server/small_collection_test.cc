#include "server/small_collection.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/rdb.h"

namespace keg::server::coll {
namespace {

TEST(SmallCollectionTest, RoundTripsBinaryElementsInOrder) {
  const std::string big(300, 'x');  // a length past one varint byte
  const std::vector<std::string_view> in = {"", std::string_view("\0\r\n", 3), big, "f"};
  const std::string enc = Encode(kConverted, in);
  View v;
  ASSERT_TRUE(Decode(enc, &v));
  EXPECT_EQ(v.flags, kConverted);
  EXPECT_EQ(v.elements, in);
}

TEST(SmallCollectionTest, RefusesEveryTruncationAndTrailingBytes) {
  const std::vector<std::string_view> in = {"field", "value", "f2", "v2"};
  const std::string enc = Encode(0, in);
  View v;
  for (size_t n = 0; n < enc.size(); ++n) EXPECT_FALSE(Decode(enc.substr(0, n), &v)) << n;
  EXPECT_FALSE(Decode(enc + "x", &v));
  // A count larger than the bytes that follow is refused before anything is reserved.
  std::string huge = enc.substr(0, 1) + "\xff\xff\xff\xff\x0f";
  EXPECT_FALSE(Decode(huge, &v));
}

TEST(SmallCollectionTest, HashSetReplacesInPlaceAndRemoveKeepsOrder) {
  Hash h;
  EXPECT_TRUE(h.Set("a", "1"));
  EXPECT_TRUE(h.Set("b", "2"));
  EXPECT_TRUE(h.Set("c", "3"));
  EXPECT_FALSE(h.Set("a", "10"));  // existing: replaced where it is
  EXPECT_TRUE(h.Remove("b"));
  EXPECT_FALSE(h.Remove("b"));
  Hash back;
  ASSERT_TRUE(DecodeHash(h.Encode(), &back));
  EXPECT_EQ(back.items, (std::vector<std::string>{"a", "10", "c", "3"}));
  // An odd number of elements is not a hash.
  const std::vector<std::string_view> odd = {"a", "1", "b"};
  EXPECT_FALSE(DecodeHash(Encode(0, odd), &back));
}

TEST(SmallCollectionTest, HashDumpRestoresAndRefusesDuplicateFields) {
  const std::vector<std::string_view> fields = {"a", "1", "b", std::string_view("\0", 1)};
  rdb::Loaded loaded;
  ASSERT_EQ(rdb::LoadValue(rdb::DumpHash(fields), 1 << 20, &loaded), rdb::LoadResult::kOk);
  EXPECT_EQ(loaded.type, 4);
  EXPECT_EQ(loaded.elements, (std::vector<std::string>{"a", "1", "b", std::string("\0", 1)}));
  const std::vector<std::string_view> dup = {"a", "1", "a", "2"};
  EXPECT_EQ(rdb::LoadValue(rdb::DumpHash(dup), 1 << 20, &loaded), rdb::LoadResult::kBadFormat);
}

// Point reads scan the encoding in place: the same answers as a decode, malformed input refused.
TEST(SmallCollectionTest, FindAndCountReadTheEncodingInPlace) {
  const std::vector<std::string_view> hash = {"f1", "v1", std::string_view("\0x", 2), "", "f3", "longer value"};
  const std::string enc = Encode(kConverted, hash);
  uint64_t count = 0;
  ASSERT_TRUE(Count(enc, &count));
  EXPECT_EQ(count, 6u);
  std::string_view v;
  EXPECT_EQ(Find(enc, 2, "f3", &v), 1);
  EXPECT_EQ(v, "longer value");
  EXPECT_EQ(Find(enc, 2, std::string_view("\0x", 2), &v), 1);
  EXPECT_EQ(v, "");
  EXPECT_EQ(Find(enc, 2, "v1", &v), 0);  // a value is not a field
  EXPECT_EQ(Find(enc, 2, "f", &v), 0);
  EXPECT_EQ(Find(enc, 1, "v1", &v), 1);  // as a set of six members
  EXPECT_EQ(Find(enc, 4, "f1", &v), -1);  // 6 elements are no whole entries of 4
  for (size_t cut = 2; cut < enc.size(); ++cut) {  // every truncation before the last entry
    const int r = Find(std::string_view(enc).substr(0, cut), 2, "f3", &v);
    EXPECT_EQ(r, -1) << cut;
  }
  EXPECT_FALSE(Count("", &count));
  EXPECT_FALSE(Count(std::string("\0\x05", 2), &count));  // 5 elements cannot fit in no bytes
}

}  // namespace
}  // namespace keg::server::coll
