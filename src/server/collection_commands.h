// Helpers shared by the hash and set commands (commands_hash.cc, commands_set.cc), and SCAN's
// argument parsing (SCAN, HSCAN, SSCAN). Thread: the handler's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "server/command.h"
#include "server/small_collection.h"

namespace keg::server {

/// The reply for a collection whose record does not decode (damage the CRC missed, or a bug).
inline constexpr std::string_view kUndecodable = "Corruption: the value's record does not decode";

/// A copy of some of a command's arguments, for a queued write that runs after the request buffer
/// is reused: the bytes in one string, their ends inline up to kInline arguments (a pipelined
/// HSET or SADD of one field allocates once for its arguments, not once per long argument plus
/// the vector). Immutable once built; thread: any.
class ArgCopy {
 public:
  explicit ArgCopy(std::span<const std::string_view> args);
  ArgCopy(const ArgCopy&) = delete;  // data_ may point into the object itself
  ArgCopy& operator=(const ArgCopy&) = delete;
  size_t size() const { return count_; }
  std::string_view operator[](size_t i) const {
    const size_t begin = i == 0 ? 0 : End(i - 1);
    return std::string_view(data_ + begin, End(i) - begin);
  }

 private:
  static constexpr size_t kInline = 6;
  static constexpr size_t kInlineBytes = 64;  // a field and a short value: no allocation
  size_t End(size_t i) const { return i < kInline ? inline_ends_[i] : more_ends_[i - kInline]; }
  char inline_bytes_[kInlineBytes];
  std::unique_ptr<char[]> heap_;  // when the arguments exceed inline_bytes_
  const char* data_ = inline_bytes_;
  size_t count_ = 0;
  size_t inline_ends_[kInline] = {};
  std::vector<size_t> more_ends_;
};

/// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type] (TYPE only with allow_type: SCAN).
struct ScanArgs {
  uint64_t cursor = 0;
  int64_t count = 10;
  std::string_view pattern;
  bool use_pattern = false;
  std::string type;
};
/// Parses a cursor as Redis does (strtoul, base 10): no leading space; a sign is taken ("-1" is
/// 2^64 - 1); "" is 0; the text ends at a NUL byte (a C string's end); past 2^64 - 1 refused.
bool ParseScanCursor(std::string_view text, uint64_t* cursor);
/// Parses the options from args[from] on (COUNT, MATCH, TYPE when `allow_type`): the error text,
/// or empty.
std::string_view ParseScanOptions(std::span<const std::string_view> args, size_t from, ScanArgs* a,
                                  bool allow_type);
/// Parses args[1] (the cursor) and the options after it: the error text, or empty.
std::string_view ParseScanArgs(std::span<const std::string_view> args, ScanArgs* a, bool allow_type = true);

/// Reads the collection at `key` for a read command of its type (Ctx::Lookup checks the type):
/// false when the reply is written already — `absent()` for a missing key, the read error
/// (WRONGTYPE, corruption) otherwise. `keep` pins the record `out` points into.
bool ReadWhole(Ctx& c, std::string_view key, coll::View* out, store::ValueView* keep,
               const std::function<void()>& absent);

/// HRANDFIELD / SRANDMEMBER key [count [WITHVALUES]] (Redis 7.0's cases): parses the count and
/// options from args[2] on, reads the collection and replies. `stride` 2 for a hash (WITHVALUES
/// allowed), 1 for a set.
void RandomMembers(Ctx& c, size_t stride);

/// HSCAN / SSCAN / ZSCAN key cursor [MATCH pattern] [COUNT count]: a collection stored whole in one call
/// (cursor 0, as Redis for a listpack or intset); one stored per element by its cursor. A sorted
/// set's scores are formatted as Redis formats doubles.
void ScanCollection(Ctx& c);

}  // namespace keg::server
