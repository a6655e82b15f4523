// Expiry arguments (EX, PX, EXAT, PXAT and the EXPIRE family) turned into absolute milliseconds,
// with Redis 7.0's checks and error texts.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace keg::server {

struct Expiry {
  bool set = false;
  std::string unit;       ///< "ex", "px", "exat" or "pxat"
  std::string_view text;  ///< the number as sent
  /// Absolute milliseconds in *at. False with *error: "value is not an integer or out of range"
  /// or "invalid expire time in '<command>' command".
  bool Resolve(std::string_view command, int64_t* at, std::string* error) const;
};

}  // namespace keg::server
