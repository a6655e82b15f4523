#include "store/crc32c.h"

#include <gtest/gtest.h>

#include <vector>

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
// The three-way interleaved hardware path must agree with the byte-at-a-time table for every
// length around its block boundaries (256 and 8192 bytes, three at a time), every short length,
// and any alignment.
TEST(Crc32cTest, InterleavedPathMatchesTheTable) {
  std::vector<uint8_t> data(3 * 8192 * 2 + 3 * 256 * 3 + 64);
  uint32_t x = 12345;
  for (uint8_t& b : data) {
    x = x * 1103515245u + 12345u;
    b = static_cast<uint8_t>(x >> 24);
  }
  auto table = [](const uint8_t* p, size_t n) {
    uint32_t crc = ~0u;
    for (size_t i = 0; i < n; ++i) {
      crc ^= p[i];
      for (int k = 0; k < 8; ++k) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
  };
  const size_t lengths[] = {0, 1, 7, 8, 255, 767, 768, 769, 770, 3 * 256 * 2 + 5, 24575, 24576,
                            24577, 24576 + 768, 49152, data.size() - 3};
  std::vector<size_t> all(std::begin(lengths), std::end(lengths));
  for (size_t len = 0; len <= 80; ++len) all.push_back(len);  // a record's sizes: every tail of 0-15 bytes
  for (size_t len : all) {
    for (size_t offset : {0u, 1u, 3u}) {
      EXPECT_EQ(crc32c::Value(data.data() + offset, len), table(data.data() + offset, len))
          << "length " << len << " offset " << offset;
    }
  }
  // Extending in two parts equals one pass over the whole.
  EXPECT_EQ(crc32c::Extend(crc32c::Value(data.data(), 30000), data.data() + 30000, 20000),
            crc32c::Value(data.data(), 50000));
}

}  // namespace keg::store
