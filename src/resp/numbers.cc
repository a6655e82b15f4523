#include "resp/numbers.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

namespace keg::resp {

bool ParseInt64(std::string_view text, int64_t* out) {
  const size_t n = text.size();
  // LONG_STR_SIZE in Redis is 21: anything that long cannot be a 64-bit number.
  if (n == 0 || n >= 21) return false;
  const char* p = text.data();
  if (n == 1 && p[0] == '0') {
    *out = 0;
    return true;
  }
  size_t i = 0;
  const bool negative = p[0] == '-';
  if (negative && ++i == n) return false;
  if (p[i] < '1' || p[i] > '9') return false;  // no leading zero, no '+'
  uint64_t v = static_cast<uint64_t>(p[i++] - '0');
  for (; i < n; ++i) {
    const unsigned digit = static_cast<unsigned char>(p[i]) - unsigned{'0'};
    if (digit > 9) return false;
    if (v > std::numeric_limits<uint64_t>::max() / 10) return false;
    v *= 10;
    if (v > std::numeric_limits<uint64_t>::max() - digit) return false;
    v += digit;
  }
  constexpr uint64_t kMax = std::numeric_limits<int64_t>::max();
  if (negative) {
    if (v > kMax + 1) return false;
    *out = v == kMax + 1 ? std::numeric_limits<int64_t>::min() : -static_cast<int64_t>(v);
  } else {
    if (v > kMax) return false;
    *out = static_cast<int64_t>(v);
  }
  return true;
}

size_t FormatInt64(int64_t value, char* buf) {
  auto [end, ec] = std::to_chars(buf, buf + 20, value);
  (void)ec;  // 20 bytes always fit an int64_t
  return static_cast<size_t>(end - buf);
}

size_t FormatDouble(double value, char* buf) {
  if (std::isinf(value)) {
    const char* text = value > 0 ? "inf" : "-inf";
    const size_t len = std::strlen(text);
    std::memcpy(buf, text, len);
    return len;
  }
  const int len = std::snprintf(buf, 32, "%.17g", value);
  return len > 0 ? static_cast<size_t>(len) : 0;
}

}  // namespace keg::resp
