#include "store/format.h"

#include <gtest/gtest.h>

#include <string>

namespace keg::store::format {
namespace {

TEST(FormatTest, RecordRoundTrip) {
  std::string buf;
  AppendRecord(&buf, kFlagExpires, "key", std::string("v\0\r\n", 4), 123, 456);
  ASSERT_EQ(buf.size(), RecordSize(3, 4));
  RecordHeader h;
  ASSERT_EQ(CheckRecord(buf.data(), buf.size(), 0, true, &h), RecordCheck::kOk);
  EXPECT_EQ(h.key_size, 3u);
  EXPECT_EQ(h.value_size, 4u);
  EXPECT_EQ(h.timestamp_ms, 123);
  EXPECT_EQ(h.expire_at_ms, 456);
  EXPECT_TRUE(h.expires());
  EXPECT_FALSE(h.tombstone());
}

TEST(FormatTest, EmptyValueIsNotATombstone) {
  std::string buf;
  AppendRecord(&buf, 0, "k", "", 1, 0);
  RecordHeader h;
  ASSERT_EQ(CheckRecord(buf.data(), buf.size(), 0, true, &h), RecordCheck::kOk);
  EXPECT_FALSE(h.tombstone());
  EXPECT_EQ(h.value_size, 0u);
}

// The CRC covers the header as well as key and value: a flip anywhere after the CRC is caught.
TEST(FormatTest, EveryBitFlipIsDetected) {
  std::string buf;
  AppendRecord(&buf, kFlagExpires, "key", "value", 77, 99);
  for (size_t byte = 0; byte < buf.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string damaged = buf;
      damaged[byte] = static_cast<char>(damaged[byte] ^ (1 << bit));
      RecordHeader h;
      EXPECT_NE(CheckRecord(damaged.data(), damaged.size(), 0, true, &h), RecordCheck::kOk)
          << "byte " << byte << " bit " << bit;
    }
  }
}

TEST(FormatTest, TruncatedRecordIsReportedAsSuch) {
  std::string buf;
  AppendRecord(&buf, 0, "key", "value", 1, 0);
  for (size_t len = 0; len < buf.size(); ++len) {
    RecordHeader h;
    EXPECT_EQ(CheckRecord(buf.data(), len, 0, true, &h), RecordCheck::kTruncated) << len;
  }
}

TEST(FormatTest, FileNames) {
  EXPECT_EQ(DataFileName(0x100000), "0000000000100000.data");
  uint64_t id = 0;
  EXPECT_TRUE(ParseFileName("0000000000100001.hint", kHintSuffix, &id));
  EXPECT_EQ(id, 0x100001u);
  EXPECT_FALSE(ParseFileName("0000000000100001.data.tmp", kDataSuffix, &id));
  EXPECT_FALSE(ParseFileName("000000000010000G.data", kDataSuffix, &id));
  EXPECT_FALSE(ParseFileName("LOCK", kDataSuffix, &id));
}

}  // namespace
}  // namespace keg::store::format
