#include "store/crc32c.h"

#include <gtest/gtest.h>

#include <string>

namespace keg::store {
namespace {

// Check values from RFC 3720 (iSCSI) appendix B.4 and the CRC catalogue.
TEST(Crc32cTest, KnownValues) {
  EXPECT_EQ(crc32c::Value("123456789", 9), 0xE3069283u);
  const std::string zeros(32, '\0');
  EXPECT_EQ(crc32c::Value(zeros.data(), zeros.size()), 0x8A9136AAu);
  const std::string ones(32, '\xff');
  EXPECT_EQ(crc32c::Value(ones.data(), ones.size()), 0x62A8AB43u);
  EXPECT_EQ(crc32c::Value("", 0), 0u);
}

TEST(Crc32cTest, ExtendEqualsWhole) {
  std::string data;
  for (int i = 0; i < 1000; ++i) data.push_back(static_cast<char>(i * 31));
  for (size_t split = 0; split <= data.size(); split += 37) {
    const uint32_t part =
        crc32c::Extend(crc32c::Value(data.data(), split), data.data() + split, data.size() - split);
    EXPECT_EQ(part, crc32c::Value(data.data(), data.size())) << split;
  }
}

TEST(Crc32cTest, UsesHardwareWhereAvailable) {
#if defined(__x86_64__)
  EXPECT_EQ(crc32c::HardwareAccelerated(), __builtin_cpu_supports("sse4.2") != 0);
#endif
}

}  // namespace
}  // namespace keg::store
