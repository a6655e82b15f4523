#include "server/expiry.h"

#include "resp/numbers.h"
#include "server/command.h"
#include "store/store.h"

namespace keg::server {

bool Expiry::Resolve(std::string_view command, int64_t* at, std::string* error) const {
  int64_t v = 0;
  if (!resp::ParseInt64(text, &v)) {
    *error = err::kNotInteger;
    return false;
  }
  const std::string invalid = "invalid expire time in '" + std::string(command) + "' command";
  if (v <= 0) {
    *error = invalid;
    return false;
  }
  const bool seconds = unit == "ex" || unit == "exat";
  if (seconds) {
    if (v > INT64_MAX / 1000) {
      *error = invalid;
      return false;
    }
    v *= 1000;
  }
  if (unit == "ex" || unit == "px") {
    const int64_t now = store::NowMs();
    if (v > INT64_MAX - now) {
      *error = invalid;
      return false;
    }
    v += now;
  }
  *at = v;
  return true;
}

}  // namespace keg::server
