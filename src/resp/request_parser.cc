#include "resp/request_parser.h"

#include <cstring>

#include "resp/numbers.h"

namespace keg::resp {
namespace {

constexpr size_t kNpos = static_cast<size_t>(-1);

// Argument vectors above this capacity are released after their command, so one huge request does
// not pin its memory for the rest of the connection's life.
constexpr size_t kMaxRetainedArgs = 4096;

// C-locale isspace(), as sdssplitargs uses it to skip blanks and to check what follows a quote.
inline bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

inline bool IsHexDigit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

inline char HexValue(char c) {
  if (c >= '0' && c <= '9') return static_cast<char>(c - '0');
  if (c >= 'a' && c <= 'f') return static_cast<char>(c - 'a' + 10);
  return static_cast<char>(c - 'A' + 10);
}

// Splits line[0, len) into arguments the way Redis's sdssplitargs does, unescaping in place: the
// output cursor never passes the input cursor. Returns false on unbalanced quotes.
bool SplitInline(char* line, size_t len, std::vector<std::string_view>* args) {
  char* p = line;
  char* const end = line + len;
  // The line behaves as a C string ending at `end` (it holds no NUL: line scans stop at one).
  auto at = [end](const char* q) -> char { return q < end ? *q : '\0'; };
  for (;;) {
    while (p < end && IsSpace(*p)) ++p;
    if (p == end) return true;
    char* const token = p;
    char* out = p;
    bool in_double = false;
    bool in_single = false;
    bool done = false;
    while (!done) {
      const char c = at(p);
      if (in_double) {
        if (c == '\\' && at(p + 1) == 'x' && IsHexDigit(at(p + 2)) && IsHexDigit(at(p + 3))) {
          *out++ = static_cast<char>(HexValue(at(p + 2)) * 16 + HexValue(at(p + 3)));
          p += 3;
        } else if (c == '\\' && at(p + 1) != '\0') {
          ++p;
          switch (*p) {
            case 'n':
              *out++ = '\n';
              break;
            case 'r':
              *out++ = '\r';
              break;
            case 't':
              *out++ = '\t';
              break;
            case 'b':
              *out++ = '\b';
              break;
            case 'a':
              *out++ = '\a';
              break;
            default:
              *out++ = *p;
              break;
          }
        } else if (c == '"') {
          // A closing quote must be followed by a space or the end of the line.
          if (at(p + 1) != '\0' && !IsSpace(at(p + 1))) return false;
          done = true;
        } else if (c == '\0') {
          return false;  // unterminated quotes
        } else {
          *out++ = c;
        }
      } else if (in_single) {
        if (c == '\\' && at(p + 1) == '\'') {
          ++p;
          *out++ = '\'';
        } else if (c == '\'') {
          if (at(p + 1) != '\0' && !IsSpace(at(p + 1))) return false;
          done = true;
        } else if (c == '\0') {
          return false;
        } else {
          *out++ = c;
        }
      } else {
        // Only these end an unquoted token: '\v' and '\f' are skipped before a token but kept
        // inside one, as in Redis.
        switch (c) {
          case ' ':
          case '\n':
          case '\r':
          case '\t':
          case '\0':
            done = true;
            break;
          case '"':
            in_double = true;
            break;
          case '\'':
            in_single = true;
            break;
          default:
            *out++ = c;
            break;
        }
      }
      if (at(p) != '\0') ++p;
    }
    args->emplace_back(token, static_cast<size_t>(out - token));
  }
}

// Reads a length line "<digits>\r?" at p when it is in canonical form (no sign, no leading zero,
// at most 17 digits) and both line-end bytes are present; advances p past them. Anything else is
// left to the general path, which knows every rule and error.
inline bool FastLength(const char*& p, const char* end, int64_t* out) {
  const char* q = p;
  if (q == end) return false;
  uint64_t v = static_cast<unsigned char>(*q) - uint64_t{'0'};
  if (v > 9) return false;
  ++q;
  if (v != 0) {
    while (q < end) {
      const uint64_t digit = static_cast<unsigned char>(*q) - uint64_t{'0'};
      if (digit > 9) break;
      v = v * 10 + digit;
      if (++q - p > 17) return false;
    }
  }
  if (end - q < 2 || *q != '\r') return false;
  *out = static_cast<int64_t>(v);
  p = q + 2;
  return true;
}

}  // namespace

RequestParser::RequestParser(const ParserLimits& limits) : limits_(limits) {}

void RequestParser::Reset() {
  EndCommand();
  args_.clear();
  ForgetAhead();
}

void RequestParser::EndCommand() {
  in_multibulk_ = false;
  cmd_pos_ = 0;
  remaining_args_ = 0;
  bulk_len_ = -1;
  scan_pos_ = 0;
  scan_hit_nul_ = false;
  refs_.clear();
}

ParseResult RequestParser::Parse(std::span<char> input) {
  size_t pos = 0;
  for (;;) {
    const size_t avail = input.size() - pos;
    if (avail == 0) return {ParseStatus::kNeedMore, pos};
    char* cmd = input.data() + pos;
    size_t used = 0;
    if (ahead_next_ < ahead_.size()) {
      const Ahead& a = ahead_[ahead_next_];
      if (!in_multibulk_ && a.start == cmd && a.size <= avail) {  // parsed by ParseAhead
        ++ahead_next_;
        args_.assign(ahead_args_.begin() + static_cast<std::ptrdiff_t>(a.first_arg),
                     ahead_args_.begin() + static_cast<std::ptrdiff_t>(a.first_arg + a.argc));
        EndCommand();
        return {ParseStatus::kCommand, pos + a.size};
      }
      ForgetAhead();
    }
    if (args_.capacity() > kMaxRetainedArgs) args_ = {};
    args_.clear();
    if (!in_multibulk_ && cmd[0] == '*' && ParseWholeMultibulk(cmd, avail, &used)) {
      EndCommand();
      return {ParseStatus::kCommand, pos + used};
    }
    const ParseStatus status = (in_multibulk_ || cmd[0] == '*') ? ParseMultibulk(cmd, avail, &used)
                                                                : ParseInline(cmd, avail, &used);
    if (status != ParseStatus::kCommand) return {status, pos};
    EndCommand();  // the next line scan starts afresh, whichever path finished this command
    pos += used;
    if (!args_.empty()) return {ParseStatus::kCommand, pos};
    // An empty line, *0 or *-N: Redis skips it without a reply.
  }
}

bool RequestParser::WholeMultibulk(char* cmd, size_t avail, size_t* used, std::vector<std::string_view>* out) const {
  const char* p = cmd + 1;
  const char* const end = cmd + avail;
  int64_t count = 0;
  if (!FastLength(p, end, &count) || count == 0 || count > limits_.max_multibulk_len ||
      (auth_required_ && count > limits_.unauth_max_multibulk_len)) {
    return false;
  }
  const size_t first = out->size();
  for (int64_t i = 0; i < count; ++i) {
    int64_t len = 0;
    if (p == end || *p != '$' || !FastLength(++p, end, &len) || len > limits_.max_bulk_len ||
        (auth_required_ && len > limits_.unauth_max_bulk_len) ||
        static_cast<size_t>(end - p) < static_cast<size_t>(len) + 2) {
      out->resize(first);
      return false;
    }
    out->emplace_back(p, static_cast<size_t>(len));
    p += len + 2;  // the payload and the two bytes after it, unchecked as in Redis
  }
  *used = static_cast<size_t>(p - cmd);
  return true;
}

size_t RequestParser::ParseAhead(std::span<char> input, std::span<std::string_view> keys, size_t* scanned,
                                 std::span<std::string_view> names) {
  ForgetAhead();
  if (ahead_args_.capacity() > kMaxRetainedArgs) ahead_args_ = {};
  size_t pos = 0;
  size_t n = 0;
  while (n < keys.size() && !in_multibulk_ && input.size() - pos > 1 && input[pos] == '*') {
    const size_t first = ahead_args_.size();
    size_t used = 0;
    if (!WholeMultibulk(input.data() + pos, input.size() - pos, &used, &ahead_args_)) break;
    const size_t argc = ahead_args_.size() - first;
    ahead_.push_back(Ahead{input.data() + pos, used, first, argc});
    if (n < names.size()) names[n] = ahead_args_[first];
    keys[n++] = argc > 1 ? ahead_args_[first + 1] : std::string_view();
    pos += used;
  }
  *scanned = pos;
  return n;
}

size_t RequestParser::FindLineEnd(const char* cmd, size_t avail, size_t from, char target) {
  if (scan_pos_ < from) {
    scan_pos_ = from;
    scan_hit_nul_ = false;
  }
  if (scan_hit_nul_) return kNpos;
  size_t i = scan_pos_;
  // Lines are short on the hot path ("$3\r"): look at a few bytes before calling memchr.
  const size_t quick_end = avail - i > 24 ? i + 24 : avail;
  for (; i < quick_end; ++i) {
    if (cmd[i] == target) return i;
    if (cmd[i] == '\0') {
      scan_pos_ = i;
      scan_hit_nul_ = true;
      return kNpos;
    }
  }
  if (i < avail) {
    const void* hit = std::memchr(cmd + i, target, avail - i);
    const size_t limit = hit ? static_cast<size_t>(static_cast<const char*>(hit) - cmd) : avail;
    if (std::memchr(cmd + i, '\0', limit - i) != nullptr) {
      scan_pos_ = i;
      scan_hit_nul_ = true;
      return kNpos;
    }
    if (hit) return limit;
  }
  scan_pos_ = avail;
  return kNpos;
}

ParseStatus RequestParser::ParseMultibulk(char* cmd, size_t avail, size_t* used) {
  if (!in_multibulk_) {
    // The "*N" line. Redis searches for '\r' and then needs one more byte, which it skips.
    const size_t cr = FindLineEnd(cmd, avail, 0, '\r');
    if (cr == kNpos && avail > limits_.max_inline_len) {  // as Redis: only while no '\r' came
      return Fail(ProtocolError::kTooBigMbulkCountString);
    }
    if (cr == kNpos || cr + 2 > avail) return ParseStatus::kNeedMore;
    int64_t count = 0;
    if (!ParseInt64(std::string_view(cmd + 1, cr - 1), &count) ||
        count > limits_.max_multibulk_len) {
      return Fail(ProtocolError::kInvalidMultibulkLength);
    }
    if (auth_required_ && count > limits_.unauth_max_multibulk_len) {
      return Fail(ProtocolError::kUnauthenticatedMultibulkLength);
    }
    if (refs_.capacity() > kMaxRetainedArgs) {
      refs_ = {};
      args_ = {};
    }
    refs_.clear();
    args_.clear();
    if (count <= 0) {  // *0 and *-N are no-ops
      *used = cr + 2;
      return ParseStatus::kCommand;
    }
    in_multibulk_ = true;
    remaining_args_ = count;
    bulk_len_ = -1;
    cmd_pos_ = cr + 2;
  }

  while (remaining_args_ > 0) {
    if (bulk_len_ < 0) {
      const size_t cr = FindLineEnd(cmd, avail, cmd_pos_, '\r');
      if (cr == kNpos && avail - cmd_pos_ > limits_.max_inline_len) {
        return Fail(ProtocolError::kTooBigBulkCountString);
      }
      if (cr == kNpos || cr + 2 > avail) return ParseStatus::kNeedMore;
      if (cmd[cmd_pos_] != '$') {
        error_byte_ = cmd[cmd_pos_];
        return Fail(ProtocolError::kExpectedDollar);
      }
      int64_t len = 0;
      if (!ParseInt64(std::string_view(cmd + cmd_pos_ + 1, cr - cmd_pos_ - 1), &len) || len < 0 ||
          len > limits_.max_bulk_len) {
        return Fail(ProtocolError::kInvalidBulkLength);
      }
      if (auth_required_ && len > limits_.unauth_max_bulk_len) {
        return Fail(ProtocolError::kUnauthenticatedBulkLength);
      }
      bulk_len_ = len;
      cmd_pos_ = cr + 2;
    }
    // The payload and the two bytes after it (Redis skips them without looking).
    const size_t need = static_cast<size_t>(bulk_len_) + 2;
    if (avail - cmd_pos_ < need) return ParseStatus::kNeedMore;
    refs_.push_back({cmd_pos_, static_cast<size_t>(bulk_len_)});
    cmd_pos_ += need;
    bulk_len_ = -1;
    --remaining_args_;
  }

  args_.resize(refs_.size());
  for (size_t i = 0; i < refs_.size(); ++i) args_[i] = {cmd + refs_[i].offset, refs_[i].size};
  *used = cmd_pos_;
  return ParseStatus::kCommand;
}

ParseStatus RequestParser::ParseInline(char* cmd, size_t avail, size_t* used) {
  const size_t nl = FindLineEnd(cmd, avail, 0, '\n');
  // As Redis: the limit applies while no newline has come. A longer line that arrives whole is
  // served; what "whole" means depends on how much one read brings (16 KiB, as Redis reads).
  if (nl == kNpos && avail > limits_.max_inline_len) {
    return Fail(ProtocolError::kTooBigInlineRequest);
  }
  if (nl == kNpos) return ParseStatus::kNeedMore;
  const size_t line_len = nl > 0 && cmd[nl - 1] == '\r' ? nl - 1 : nl;
  if (args_.capacity() > kMaxRetainedArgs) args_ = {};
  args_.clear();
  if (!SplitInline(cmd, line_len, &args_)) return Fail(ProtocolError::kUnbalancedQuotes);
  *used = nl + 1;
  return ParseStatus::kCommand;
}

ParseStatus RequestParser::Fail(ProtocolError error) {
  error_ = error;
  Reset();
  return ParseStatus::kError;
}

size_t RequestParser::BytesWanted() const {
  if (!in_multibulk_ || bulk_len_ < 0) return 0;
  return cmd_pos_ + static_cast<size_t>(bulk_len_) + 2;
}

std::string RequestParser::ErrorMessage() const {
  switch (error_) {
    case ProtocolError::kNone:
      return {};
    case ProtocolError::kInvalidMultibulkLength:
      return "Protocol error: invalid multibulk length";
    case ProtocolError::kInvalidBulkLength:
      return "Protocol error: invalid bulk length";
    case ProtocolError::kExpectedDollar: {
      // Redis formats the byte with %c, then turns CR and LF into spaces.
      const char c = error_byte_ == '\r' || error_byte_ == '\n' ? ' ' : error_byte_;
      std::string text = "Protocol error: expected '$', got ' '";
      text[text.size() - 2] = c;
      return text;
    }
    case ProtocolError::kTooBigMbulkCountString:
      return "Protocol error: too big mbulk count string";
    case ProtocolError::kTooBigBulkCountString:
      return "Protocol error: too big bulk count string";
    case ProtocolError::kTooBigInlineRequest:
      return "Protocol error: too big inline request";
    case ProtocolError::kUnbalancedQuotes:
      return "Protocol error: unbalanced quotes in request";
    case ProtocolError::kUnauthenticatedMultibulkLength:
      return "Protocol error: unauthenticated multibulk length";
    case ProtocolError::kUnauthenticatedBulkLength:
      return "Protocol error: unauthenticated bulk length";
  }
  return {};
}

}  // namespace keg::resp
