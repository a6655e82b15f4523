#include "resp/numbers.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

namespace keg::resp {
namespace {

TEST(ParseInt64Test, AcceptsWhatString2llAccepts) {
  int64_t v = 0;
  EXPECT_TRUE(ParseInt64("0", &v));
  EXPECT_EQ(v, 0);
  EXPECT_TRUE(ParseInt64("42", &v));
  EXPECT_EQ(v, 42);
  EXPECT_TRUE(ParseInt64("-7", &v));
  EXPECT_EQ(v, -7);
  EXPECT_TRUE(ParseInt64("9223372036854775807", &v));
  EXPECT_EQ(v, std::numeric_limits<int64_t>::max());
  EXPECT_TRUE(ParseInt64("-9223372036854775808", &v));
  EXPECT_EQ(v, std::numeric_limits<int64_t>::min());
}

TEST(ParseInt64Test, RejectsWhatString2llRejects) {
  int64_t v = 99;
  for (const char* bad :
       {"", "-", "+1", "01", "-0", "00", " 1", "1 ", "1a", "0x10", "9223372036854775808",
        "-9223372036854775809", "18446744073709551616", "123456789012345678901"}) {
    EXPECT_FALSE(ParseInt64(bad, &v)) << bad;
  }
  EXPECT_EQ(v, 99);  // untouched on failure
}

TEST(FormatTest, Int64) {
  char buf[20];
  EXPECT_EQ(std::string(buf, FormatInt64(std::numeric_limits<int64_t>::min(), buf)),
            "-9223372036854775808");
  EXPECT_EQ(std::string(buf, FormatInt64(0, buf)), "0");
}

TEST(FormatTest, DoubleAsRedis70) {
  // Bytes captured from redis-server 7.0.15 (ZSCORE replies).
  char buf[32];
  EXPECT_EQ(std::string(buf, FormatDouble(0.1, buf)), "0.10000000000000001");
  EXPECT_EQ(std::string(buf, FormatDouble(1e300, buf)), "1.0000000000000001e+300");
  EXPECT_EQ(std::string(buf, FormatDouble(3, buf)), "3");
  EXPECT_EQ(std::string(buf, FormatDouble(HUGE_VAL, buf)), "inf");
  EXPECT_EQ(std::string(buf, FormatDouble(-HUGE_VAL, buf)), "-inf");
}

}  // namespace
}  // namespace keg::resp
