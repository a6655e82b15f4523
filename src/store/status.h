// Status: the result of a store operation that can fail. OK costs nothing beyond an enum and an
// empty string; errors carry a message that names the file, offset and errno where there is one.
// Thread: a value type; safe to pass between threads.
#pragma once

#include <string>
#include <string_view>
#include <utility>

namespace keg::store {

class [[nodiscard]] Status {
 public:
  enum class Code : unsigned char {
    kOk,
    kNotFound,
    kCorruption,       ///< bad checksum, bad record, unreadable hint or data file
    kIOError,          ///< an OS call failed (message names file, offset, errno)
    kNoSpace,          ///< ENOSPC: writes fail, reads go on, writes resume when space returns
    kInvalidArgument,  ///< the caller asked for something impossible (bad option, huge key)
    kBusy,             ///< the resource is held by someone else (data directory lock)
    kFailed,           ///< the store stopped accepting writes after a failed fsync
    kAborted,          ///< a batch's precondition said no; nothing of it was applied
    kWrongType,        ///< an op that reads its key's value found another type (Op::check_type)
  };

  Status() = default;
  static Status OK() { return {}; }
  static Status NotFound() { return Status(Code::kNotFound, {}); }
  static Status Corruption(std::string msg) { return Status(Code::kCorruption, std::move(msg)); }
  static Status IOError(std::string msg) { return Status(Code::kIOError, std::move(msg)); }
  static Status NoSpace(std::string msg) { return Status(Code::kNoSpace, std::move(msg)); }
  static Status InvalidArgument(std::string msg) {
    return Status(Code::kInvalidArgument, std::move(msg));
  }
  static Status Busy(std::string msg) { return Status(Code::kBusy, std::move(msg)); }
  static Status Failed(std::string msg) { return Status(Code::kFailed, std::move(msg)); }
  static Status Aborted() { return Status(Code::kAborted, {}); }
  static Status WrongType() { return Status(Code::kWrongType, {}); }

  /// An OS error for `op` on `file` (at `offset` if not negative) with errno `err`:
  /// "write 0000000000100000.data at offset 4096: No space left on device (errno 28)".
  /// ENOSPC gives kNoSpace, everything else kIOError.
  static Status FromErrno(std::string_view op, std::string_view file, long long offset, int err);

  bool ok() const { return code_ == Code::kOk; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsCorruption() const { return code_ == Code::kCorruption; }
  bool IsNoSpace() const { return code_ == Code::kNoSpace; }
  bool IsAborted() const { return code_ == Code::kAborted; }
  bool IsWrongType() const { return code_ == Code::kWrongType; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  /// "Corruption: <message>" or "OK".
  std::string ToString() const;

 private:
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  Code code_ = Code::kOk;
  std::string message_;
};

}  // namespace keg::store
