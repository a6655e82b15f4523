#include "store/status.h"

#include <cstring>
#include <string>

namespace keg::store {

Status Status::FromErrno(std::string_view op, std::string_view file, long long offset, int err) {
  std::string msg(op);
  msg += ' ';
  msg += file;
  if (offset >= 0) {
    msg += " at offset ";
    msg += std::to_string(offset);
  }
  msg += ": ";
  msg += std::strerror(err);
  msg += " (errno ";
  msg += std::to_string(err);
  msg += ')';
  return err == ENOSPC ? NoSpace(std::move(msg)) : IOError(std::move(msg));
}

std::string Status::ToString() const {
  const char* name = "OK";
  switch (code_) {
    case Code::kOk:
      return "OK";
    case Code::kNotFound:
      name = "NotFound";
      break;
    case Code::kCorruption:
      name = "Corruption";
      break;
    case Code::kIOError:
      name = "IO error";
      break;
    case Code::kNoSpace:
      name = "No space";
      break;
    case Code::kInvalidArgument:
      name = "Invalid argument";
      break;
    case Code::kBusy:
      name = "Busy";
      break;
    case Code::kFailed:
      name = "Failed";
      break;
    case Code::kAborted:
      name = "Aborted";
      break;
    case Code::kWrongType:
      name = "Wrong type";
      break;
  }
  return message_.empty() ? std::string(name) : std::string(name) + ": " + message_;
}

}  // namespace keg::store
