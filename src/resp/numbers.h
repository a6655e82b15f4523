// Number parsing and formatting with Redis's exact rules. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string_view>

namespace keg::resp {

/// Parses a signed 64-bit integer as Redis's string2ll does: optional '-', then digits, no '+',
/// no leading zeros (except "0" itself), no "-0", no spaces, at most 20 characters, no overflow.
/// Returns false (and leaves *out alone) when `text` is not such a number.
[[nodiscard]] bool ParseInt64(std::string_view text, int64_t* out);

/// Writes `value` in decimal into `buf` (at least 20 bytes) and returns the number of bytes.
size_t FormatInt64(int64_t value, char* buf);

/// Writes `value` as Redis's addReplyDouble does ("%.17g"; "inf" / "-inf") into `buf` (at least
/// 32 bytes) and returns the number of bytes.
size_t FormatDouble(double value, char* buf);

}  // namespace keg::resp
