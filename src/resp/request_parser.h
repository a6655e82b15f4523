// RequestParser: an incremental, resumable parser for Redis requests (RESP2 multibulk and
// inline commands), accepting exactly what redis-server 7.0 accepts and failing with its exact
// protocol-error texts.
//
// Usage, from a connection's read loop:
//
//   keg::resp::RequestParser parser(limits);
//   size_t pos = 0;
//   for (;;) {
//     ParseResult r = parser.Parse(std::span<char>(buf + pos, len - pos));
//     pos += r.consumed;
//     if (r.status == ParseStatus::kCommand) { Execute(parser.args()); continue; }
//     if (r.status == ParseStatus::kError) { Reply(parser.ErrorMessage()); Close(); }
//     break;  // kNeedMore: keep buf[pos, len), append more bytes after it, call Parse again.
//   }
//
// Contracts:
// - Arguments are views into the caller's buffer; nothing is copied. They stay valid until the
//   next call to Parse or Reset, or until the caller changes or moves those bytes.
// - Inline commands are unescaped in place (the unescaped text is never longer than the escaped
//   one), so the buffer is mutable.
// - After kNeedMore the next call must receive the same unconsumed bytes (they may have moved)
//   followed by more. Progress inside a partial command is remembered, so a command that arrives
//   one byte per read is scanned once, not once per read.
// - Empty inline lines, `*0` and `*-N` are skipped without producing a command, as Redis does.
// - Nothing is allocated in proportion to a length the peer merely claims; memory grows only with
//   arguments that actually arrived.
// - Thread: a parser belongs to one connection and is used by one thread at a time.
//
// Redis quirks reproduced on purpose (verified against redis-server 7.0.15, see docs/protocol.md):
// - The two bytes after a bulk payload and after a `*N\r` / `$N\r` line are skipped, not checked.
// - Line scans stop at a NUL byte, as Redis's strchr does: a NUL before the line end means "no line
//   yet", and the client is disconnected once the pending bytes pass the inline limit.
// - Numbers follow Redis's string2ll: no '+', no leading zeros, no "-0", at most 20 characters.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace keg::resp {

/// Limits enforced while parsing. Defaults are Redis 7.0's.
struct ParserLimits {
  /// `proto-max-bulk-len`: the largest bulk argument accepted.
  int64_t max_bulk_len = 512LL * 1024 * 1024;
  /// The largest argument count accepted in a multibulk request.
  int64_t max_multibulk_len = 2147483647;  // INT_MAX, as Redis
  /// PROTO_INLINE_MAX_SIZE: an inline line, or a `*N` / `$N` line, pending without its end.
  size_t max_inline_len = 64 * 1024;
  /// While authentication is required but not done: the largest argument count ...
  int64_t unauth_max_multibulk_len = 10;
  /// ... and the largest bulk argument.
  int64_t unauth_max_bulk_len = 16384;
};

/// What one call to Parse produced.
enum class ParseStatus : uint8_t {
  kCommand,   ///< a complete command; see args()
  kNeedMore,  ///< the input ends inside a command (or is used up)
  kError,     ///< a protocol error; see error() and ErrorMessage(); the connection must close
};

/// Protocol errors, one per distinct Redis error text.
enum class ProtocolError : uint8_t {
  kNone,
  kInvalidMultibulkLength,          ///< "invalid multibulk length"
  kInvalidBulkLength,               ///< "invalid bulk length"
  kExpectedDollar,                  ///< "expected '$', got '<c>'"
  kTooBigMbulkCountString,          ///< "too big mbulk count string"
  kTooBigBulkCountString,           ///< "too big bulk count string"
  kTooBigInlineRequest,             ///< "too big inline request"
  kUnbalancedQuotes,                ///< "unbalanced quotes in request"
  kUnauthenticatedMultibulkLength,  ///< "unauthenticated multibulk length"
  kUnauthenticatedBulkLength,       ///< "unauthenticated bulk length"
};

struct ParseResult {
  ParseStatus status;
  /// Bytes at the front of the input that are done with: the command (kCommand) and any skipped
  /// empty lines before it. On kNeedMore the partial command is not counted as consumed.
  size_t consumed;
};

/// See the file comment.
class RequestParser {
 public:
  explicit RequestParser(const ParserLimits& limits = {});

  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  /// Parses at most one command from the front of `input`.
  [[nodiscard]] ParseResult Parse(std::span<char> input);

  /// The arguments of the command returned by the last kCommand; args()[0] is the name.
  [[nodiscard]] std::span<const std::string_view> args() const { return args_; }

  /// The error of the last kError.
  [[nodiscard]] ProtocolError error() const { return error_; }

  /// The error text Redis sends, without the "-ERR " prefix and the CRLF, e.g.
  /// "Protocol error: invalid bulk length".
  [[nodiscard]] std::string ErrorMessage() const;

  /// After kNeedMore: how many unconsumed bytes the pending command needs at least before Parse can
  /// make progress (the start of the command up to the end of the bulk being read), or 0 when
  /// unknown. Lets the caller grow its buffer once for a large argument.
  [[nodiscard]] size_t BytesWanted() const;

  /// Looks ahead in the unparsed input without consuming it: the first whole canonical multibulk
  /// commands at the front of `input` (at most keys.size() of them) are parsed and kept, so the
  /// Parse calls that reach them take them as they are; each one's second argument (its first key,
  /// for most commands) goes to keys[i], an empty view when it has one argument, and, when `names`
  /// is given (as long as `keys`), its first argument to names[i]. Stops at the first
  /// command that is partial, inline, not in the fast form or past a limit (Parse then decides
  /// about it). Returns how many (*scanned: the bytes they take); the views point into `input`.
  /// Contract: the bytes of `input` do not change until those commands are parsed; a Parse call
  /// whose input does not start at the next kept command drops them all (so does ForgetAhead, for
  /// a caller that moves its buffer, Reset, and a change of limits or authentication).
  size_t ParseAhead(std::span<char> input, std::span<std::string_view> keys, size_t* scanned,
                    std::span<std::string_view> names = {});
  void ForgetAhead() {
    ahead_.clear();
    ahead_args_.clear();
    ahead_next_ = 0;
  }

  /// Applies the unauthenticated limits (true) or the normal ones (false).
  void set_auth_required(bool required) {
    auth_required_ = required;
    ForgetAhead();
  }
  [[nodiscard]] bool auth_required() const { return auth_required_; }

  void set_limits(const ParserLimits& limits) {
    limits_ = limits;
    ForgetAhead();
  }
  [[nodiscard]] const ParserLimits& limits() const { return limits_; }

  /// Forgets any partial command.
  void Reset();

 private:
  // An argument of the command being parsed, as an offset from the command's first byte. Offsets
  // survive the caller moving its buffer between calls; views are made once the command is whole.
  struct ArgRef {
    size_t offset;
    size_t size;
  };

  // Fast path: a multibulk command wholly in the buffer, with canonical numbers within limits.
  // Returns false, having consumed nothing, for anything else; ParseMultibulk then decides.
  bool ParseWholeMultibulk(char* cmd, size_t avail, size_t* used) { return WholeMultibulk(cmd, avail, used, &args_); }
  // The same, appending the arguments to *out (unchanged size when it returns false).
  bool WholeMultibulk(char* cmd, size_t avail, size_t* used, std::vector<std::string_view>* out) const;
  // The general path: every rule and error, resumable at any byte.
  ParseStatus ParseMultibulk(char* cmd, size_t avail, size_t* used);
  ParseStatus ParseInline(char* cmd, size_t avail, size_t* used);
  ParseStatus Fail(ProtocolError error);
  // Forgets the finished (or failed) command's progress, so the next one starts clean.
  void EndCommand();
  // Finds the end of a line starting at cmd[from]: the first `target` byte before any NUL.
  // Returns its offset, or npos when none is there yet. Remembers how far it looked in scan_pos_.
  size_t FindLineEnd(const char* cmd, size_t avail, size_t from, char target);

  ParserLimits limits_;
  bool auth_required_ = false;

  std::vector<std::string_view> args_;  // the last command's arguments
  ProtocolError error_ = ProtocolError::kNone;
  char error_byte_ = 0;  // the byte seen instead of '$'

  // Resume state of a partial command. Offsets are relative to the command's first byte, which
  // stays the first unconsumed input byte until the command completes.
  bool in_multibulk_ = false;   // the `*N` line has been read
  size_t cmd_pos_ = 0;          // where parsing of the partial command continues
  int64_t remaining_args_ = 0;  // bulk arguments still to read
  int64_t bulk_len_ = -1;       // length of the bulk being read, -1 before its `$N` line
  size_t scan_pos_ = 0;         // a line search from cmd_pos_ has looked up to here
  bool scan_hit_nul_ = false;   // ... and found a NUL first: the line can never end
  std::vector<ArgRef> refs_;    // arguments of the multibulk command read so far

  // Commands ParseAhead parsed: where each starts in the caller's buffer, how many bytes it takes,
  // and its arguments in ahead_args_; ahead_next_ is the next one Parse should reach.
  struct Ahead {
    const char* start;
    size_t size;
    size_t first_arg;
    size_t argc;
  };
  std::vector<Ahead> ahead_;
  std::vector<std::string_view> ahead_args_;
  size_t ahead_next_ = 0;
};



}  // namespace keg::resp
