#include "store/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace keg::store::crc32c {
namespace {

constexpr uint32_t kPolynomial = 0x82F63B78u;  // reflected Castagnoli

constexpr std::array<uint32_t, 256> MakeTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPolynomial : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kTable = MakeTable();

uint32_t ExtendPortable(uint32_t crc, const uint8_t* p, size_t n) {
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = kTable[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

// Shifting a CRC over `len` zero bytes is linear over GF(2): a 32x32 bit matrix, applied here
// through four 256-entry tables (one per byte of the CRC). The SSE4.2 path below uses it to join
// three CRCs computed side by side: the crc32 instruction has a latency of 3 cycles but a
// throughput of 1, so three independent streams run about three times faster than one.
struct ZerosTable {
  uint32_t t[4][256];
};

uint32_t MatrixTimes(const uint32_t* mat, uint32_t vec) {
  uint32_t sum = 0;
  for (int i = 0; vec != 0; ++i, vec >>= 1) {
    if (vec & 1) sum ^= mat[i];
  }
  return sum;
}

void MatrixSquare(uint32_t* out, const uint32_t* mat) {
  for (int i = 0; i < 32; ++i) out[i] = MatrixTimes(mat, mat[i]);
}

// The table that advances a (pre-inverted) CRC over `len` zero bytes; len must be a power of two.
ZerosTable MakeZeros(size_t len) {
  uint32_t op[32];  // one zero bit
  op[0] = kPolynomial;
  for (int i = 1; i < 32; ++i) op[i] = 1u << (i - 1);
  uint32_t sq[32];
  for (int bits = 0; bits < 3; ++bits) {  // 1 -> 2 -> 4 -> 8 zero bits: one zero byte
    MatrixSquare(sq, op);
    std::memcpy(op, sq, sizeof(op));
  }
  for (size_t bytes = 1; bytes < len; bytes <<= 1) {
    MatrixSquare(sq, op);
    std::memcpy(op, sq, sizeof(op));
  }
  ZerosTable z{};
  for (uint32_t n = 0; n < 256; ++n) {
    for (int b = 0; b < 4; ++b) z.t[b][n] = MatrixTimes(op, n << (8 * b));
  }
  return z;
}

inline uint32_t Shift(const ZerosTable& z, uint32_t crc) {
  return z.t[0][crc & 0xFF] ^ z.t[1][(crc >> 8) & 0xFF] ^ z.t[2][(crc >> 16) & 0xFF] ^
         z.t[3][crc >> 24];
}

constexpr size_t kLongBlock = 8192;
constexpr size_t kShortBlock = 256;

#if defined(__x86_64__)
// Three interleaved streams over three consecutive blocks, joined by shifting; returns the CRC so
// far (not inverted) and advances *p / *n past the whole triples.
__attribute__((target("sse4.2"))) uint64_t ThreeWay(uint64_t c0, const uint8_t** p, size_t* n,
                                                    size_t block, const ZerosTable& zeros) {
  const uint8_t* q = *p;
  size_t left = *n;
  while (left >= 3 * block) {
    uint64_t c1 = 0;
    uint64_t c2 = 0;
    for (size_t i = 0; i < block; i += 8) {
      uint64_t w0, w1, w2;
      std::memcpy(&w0, q + i, 8);
      std::memcpy(&w1, q + block + i, 8);
      std::memcpy(&w2, q + 2 * block + i, 8);
      c0 = _mm_crc32_u64(c0, w0);
      c1 = _mm_crc32_u64(c1, w1);
      c2 = _mm_crc32_u64(c2, w2);
    }
    c0 = Shift(zeros, static_cast<uint32_t>(c0)) ^ c1;
    c0 = Shift(zeros, static_cast<uint32_t>(c0)) ^ c2;
    q += 3 * block;
    left -= 3 * block;
  }
  *p = q;
  *n = left;
  return c0;
}

// Inputs of three short blocks or more: the interleaved streams (their tables built on first use).
__attribute__((target("sse4.2"), noinline)) uint64_t ExtendLong(uint64_t c0, const uint8_t** p, size_t* n) {
  static const ZerosTable kLongZeros = MakeZeros(kLongBlock);
  static const ZerosTable kShortZeros = MakeZeros(kShortBlock);
  c0 = ThreeWay(c0, p, n, kLongBlock, kLongZeros);
  return ThreeWay(c0, p, n, kShortBlock, kShortZeros);
}

// Records are mostly tens of bytes: a short input takes no table, and its last 0-7 bytes take at
// most three instructions (4, 2, 1 bytes) instead of one per byte.
__attribute__((target("sse4.2"))) uint32_t ExtendSse42(uint32_t crc, const uint8_t* p, size_t n) {
  uint64_t c0 = ~crc;
  if (n >= 3 * kShortBlock) c0 = ExtendLong(c0, &p, &n);
  while (n >= 16) {
    uint64_t w0, w1;
    std::memcpy(&w0, p, 8);
    std::memcpy(&w1, p + 8, 8);
    c0 = _mm_crc32_u64(_mm_crc32_u64(c0, w0), w1);
    p += 16;
    n -= 16;
  }
  if (n >= 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    c0 = _mm_crc32_u64(c0, word);
    p += 8;
    n -= 8;
  }
  uint32_t c32 = static_cast<uint32_t>(c0);
  if (n & 4) {
    uint32_t word;
    std::memcpy(&word, p, 4);
    c32 = _mm_crc32_u32(c32, word);
    p += 4;
  }
  if (n & 2) {
    uint16_t half;
    std::memcpy(&half, p, 2);
    c32 = _mm_crc32_u16(c32, half);
    p += 2;
  }
  if (n & 1) c32 = _mm_crc32_u8(c32, *p);
  return ~c32;
}
#endif

using ExtendFn = uint32_t (*)(uint32_t, const uint8_t*, size_t);

ExtendFn Choose() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("sse4.2")) return ExtendSse42;
#endif
  return ExtendPortable;
}

const ExtendFn kExtend = Choose();

}  // namespace

uint32_t Extend(uint32_t crc, const void* data, size_t n) {
  return kExtend(crc, static_cast<const uint8_t*>(data), n);
}

bool HardwareAccelerated() { return kExtend != ExtendPortable; }

}  // namespace keg::store::crc32c
