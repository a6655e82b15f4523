// Bitmap commands on string values: SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD, BITFIELD_RO,
// with Redis 7.0's replies and errors (bitops.c is the reference for every edge case).
//
// Bit 0 is the most significant bit of byte 0. Writes run as Update ops on the writer thread (the
// value is read, changed and written back at the command's place in the batch, keeping the TTL);
// reads use Ctx::Lookup. Every offset a client sends is checked against proto-max-bulk-len before
// any arithmetic that could overflow.
#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "resp/numbers.h"
#include "server/command.h"
#include "server/notify.h"
#include "server/session.h"
#include "server/state.h"

namespace keg::server {
namespace {

using store::OpResult;
using store::UpdateDecision;
using store::ValueView;
using Action = store::UpdateDecision::Action;

constexpr std::string_view kBadOffset = "bit offset is not an integer or out of range";
constexpr std::string_view kBadBit = "bit is not an integer or out of range";
constexpr std::string_view kBadType =
    "Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.";

int64_t MaxBulk(Ctx& c) { return c.server().proto_max_bulk_len.load(std::memory_order_relaxed); }

// Redis's getBitOffsetFromArgument: a bit offset whose byte is below proto-max-bulk-len. With
// `bits` > 0 the "#N" form means N * bits (checked for overflow before multiplying).
bool ParseBitOffset(std::string_view arg, int bits, int64_t max_bulk, uint64_t* offset) {
  const bool hash = bits > 0 && !arg.empty() && arg[0] == '#';
  int64_t n = 0;
  if (!resp::ParseInt64(hash ? arg.substr(1) : arg, &n)) return false;
  if (n < 0) return false;
  if (hash) {
    if (n > std::numeric_limits<int64_t>::max() / bits) return false;
    n *= bits;
  }
  if ((n >> 3) >= max_bulk) return false;
  *offset = static_cast<uint64_t>(n);
  return true;
}

// "i1".."i64" or "u1".."u63".
bool ParseBitfieldType(std::string_view arg, bool* sign, int* bits) {
  if (arg.empty() || (arg[0] != 'i' && arg[0] != 'u')) return false;
  *sign = arg[0] == 'i';
  int64_t n = 0;
  if (!resp::ParseInt64(arg.substr(1), &n) || n < 1 || n > (*sign ? 64 : 63)) return false;
  *bits = static_cast<int>(n);
  return true;
}

uint8_t ByteAt(std::string_view s, uint64_t i) {
  return i < s.size() ? static_cast<uint8_t>(s[static_cast<size_t>(i)]) : 0;
}

// Reads `bits` bits at bit `offset`; bytes past the end of `s` read as zero.
uint64_t GetUnsigned(std::string_view s, uint64_t offset, int bits) {
  uint64_t value = 0;
  for (int j = 0; j < bits; ++j, ++offset) {
    const uint64_t bit = (ByteAt(s, offset >> 3) >> (7 - (offset & 7))) & 1;
    value = (value << 1) | bit;
  }
  return value;
}

int64_t GetSigned(std::string_view s, uint64_t offset, int bits) {
  uint64_t u = GetUnsigned(s, offset, bits);
  if (bits < 64 && (u & (uint64_t{1} << (bits - 1)))) u |= ~uint64_t{0} << bits;
  return static_cast<int64_t>(u);
}

// Writes `bits` bits at bit `offset`; `s` must already be long enough.
void SetBits(std::string& s, uint64_t offset, int bits, uint64_t value) {
  for (int j = 0; j < bits; ++j, ++offset) {
    const uint64_t bit = (value >> (bits - 1 - j)) & 1;
    const size_t byte = static_cast<size_t>(offset >> 3);
    const int shift = 7 - static_cast<int>(offset & 7);
    uint8_t b = static_cast<uint8_t>(s[byte]);
    b = static_cast<uint8_t>((b & ~(1u << shift)) | (bit << shift));
    s[byte] = static_cast<char>(b);
  }
}

enum class Overflow { kWrap, kSat, kFail };

// Redis's checkUnsignedBitfieldOverflow: 0 when value + incr fits in `bits` bits; else non-zero
// with *limit set to the wrapped or saturated result.
int UnsignedOverflow(uint64_t value, int64_t incr, int bits, Overflow ow, uint64_t* limit) {
  const uint64_t max = bits == 64 ? std::numeric_limits<uint64_t>::max() : (uint64_t{1} << bits) - 1;
  const int64_t maxincr = static_cast<int64_t>(max - value);
  const int64_t minincr = static_cast<int64_t>(0 - value);
  auto wrap = [&] {
    const uint64_t mask = bits == 64 ? 0 : ~uint64_t{0} << bits;
    *limit = (value + static_cast<uint64_t>(incr)) & ~mask;
  };
  if (value > max || (incr > 0 && incr > maxincr)) {
    if (ow == Overflow::kWrap) wrap();
    if (ow == Overflow::kSat) *limit = max;
    return 1;
  }
  if (incr < 0 && incr < minincr) {
    if (ow == Overflow::kWrap) wrap();
    if (ow == Overflow::kSat) *limit = 0;
    return -1;
  }
  return 0;
}

// Redis's checkSignedBitfieldOverflow.
int SignedOverflow(int64_t value, int64_t incr, int bits, Overflow ow, int64_t* limit) {
  const int64_t max = bits == 64 ? std::numeric_limits<int64_t>::max() : (int64_t{1} << (bits - 1)) - 1;
  const int64_t min = -max - 1;
  // As Redis: computed in unsigned arithmetic, used only once `value` is known to be in range.
  const int64_t maxincr = static_cast<int64_t>(static_cast<uint64_t>(max) - static_cast<uint64_t>(value));
  const int64_t minincr = static_cast<int64_t>(static_cast<uint64_t>(min) - static_cast<uint64_t>(value));
  auto wrap = [&] {
    const uint64_t msb = uint64_t{1} << (bits - 1);
    uint64_t r = static_cast<uint64_t>(value) + static_cast<uint64_t>(incr);
    if (bits < 64) {
      const uint64_t mask = ~uint64_t{0} << bits;
      r = (r & msb) ? (r | mask) : (r & ~mask);
    }
    *limit = static_cast<int64_t>(r);
  };
  if (value > max || (bits != 64 && incr > maxincr) || (value >= 0 && incr > 0 && incr > maxincr)) {
    if (ow == Overflow::kWrap) wrap();
    if (ow == Overflow::kSat) *limit = max;
    return 1;
  }
  if (value < min || (bits != 64 && incr < minincr) || (value < 0 && incr < 0 && incr < minincr)) {
    if (ow == Overflow::kWrap) wrap();
    if (ow == Overflow::kSat) *limit = min;
    return -1;
  }
  return 0;
}

// ---- SETBIT / GETBIT ----

void Setbit(Ctx& c) {
  uint64_t offset = 0;
  if (!ParseBitOffset(c.arg(2), 0, MaxBulk(c), &offset)) return c.Fail(std::string(kBadOffset));
  int64_t on = 0;
  if (!resp::ParseInt64(c.arg(3), &on) || (on & ~int64_t{1}) != 0) return c.Fail(std::string(kBadBit));
  auto old_bit = std::make_shared<int>(0);
  c.batch().Update(std::string(c.arg(1)), [old_bit, offset, on](const ValueView* cur) {
    UpdateDecision d;
    const size_t byte = static_cast<size_t>(offset >> 3);
    const int shift = 7 - static_cast<int>(offset & 7);
    const std::string_view old = cur != nullptr ? cur->value : std::string_view();
    const int bit = (ByteAt(old, byte) >> shift) & 1;
    *old_bit = bit;
    const bool grows = cur == nullptr || old.size() < byte + 1;
    if (!grows && bit == on) return d;  // nothing changes: nothing is written
    d.action = Action::kPut;
    d.keep_ttl = true;
    d.value.reserve(std::max(old.size(), byte + 1));
    d.value.assign(old);
    if (d.value.size() < byte + 1) d.value.resize(byte + 1, '\0');
    uint8_t b = static_cast<uint8_t>(d.value[byte]);
    b = static_cast<uint8_t>((b & ~(1u << shift)) | (static_cast<unsigned>(on) << shift));
    d.value[byte] = static_cast<char>(b);
    return d;
  });
  NotifyStringWrite(c, c.arg(1), "setbit");  // not when the bit was already so (nothing written)
  c.Then([old_bit](std::span<OpResult>, resp::ReplyBuffer& out) { out.Integer(*old_bit); });
}

void Getbit(Ctx& c) {
  uint64_t offset = 0;
  if (!ParseBitOffset(c.arg(2), 0, MaxBulk(c), &offset)) return c.Error(kBadOffset);
  ValueView v;
  const bool found = c.Lookup(c.arg(1), &v);
  if (c.read_failed()) return c.ReplyReadError();
  if (!found) return c.out().Integer(0);
  c.out().Integer((ByteAt(v.value, offset >> 3) >> (7 - (offset & 7))) & 1);
}

// ---- BITCOUNT / BITPOS ----

// A range of BITCOUNT / BITPOS resolved to bytes [start, end] with the masks of the bits outside
// the range in its first and last byte (BIT ranges), as Redis computes them.
struct ByteRange {
  int64_t start = 0;
  int64_t end = -1;
  uint8_t first_mask = 0;  // bits of the first byte before the range
  uint8_t last_mask = 0;   // bits of the last byte after the range
};

ByteRange Resolve(int64_t start, int64_t end, int64_t len, bool bit) {
  int64_t total = bit ? len * 8 : len;  // len <= proto-max-bulk-len: no overflow
  if (start < 0) start = total + start;
  if (end < 0) end = total + end;
  if (start < 0) start = 0;
  if (end < 0) end = 0;
  if (end >= total) end = total - 1;
  ByteRange r{start, end, 0, 0};
  if (bit && start <= end) {
    r.first_mask = static_cast<uint8_t>(~((1u << (8 - (start & 7))) - 1) & 0xFF);
    r.last_mask = static_cast<uint8_t>((1u << (7 - (end & 7))) - 1);
    r.start = start >> 3;
    r.end = end >> 3;
  }
  return r;
}

bool ParseBitUnit(std::string_view arg, bool* bit) {
  if (EqualsIgnoreCase(arg, "bit")) {
    *bit = true;
  } else if (EqualsIgnoreCase(arg, "byte")) {
    *bit = false;
  } else {
    return false;
  }
  return true;
}

int64_t Popcount(const uint8_t* p, size_t n) {
  int64_t count = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    count += std::popcount(w);
  }
  for (; i < n; ++i) count += std::popcount(p[i]);
  return count;
}

void Bitcount(Ctx& c) {
  ValueView v;
  const bool found = c.Lookup(c.arg(1), &v);
  if (c.read_failed()) return c.ReplyReadError();
  if (!found) return c.out().Integer(0);
  const auto* p = reinterpret_cast<const uint8_t*>(v.value.data());
  const auto len = static_cast<int64_t>(v.value.size());
  ByteRange r;
  if (c.argc() == 4 || c.argc() == 5) {
    int64_t start = 0;
    int64_t end = 0;
    if (!resp::ParseInt64(c.arg(2), &start) || !resp::ParseInt64(c.arg(3), &end)) {
      return c.Error(err::kNotInteger);
    }
    if (start < 0 && end < 0 && start > end) return c.out().Integer(0);
    bool bit = false;
    if (c.argc() == 5 && !ParseBitUnit(c.arg(4), &bit)) return c.Error(err::kSyntax);
    r = Resolve(start, end, len, bit);
  } else if (c.argc() == 2) {
    r = ByteRange{0, len - 1, 0, 0};
  } else {
    return c.Error(err::kSyntax);
  }
  if (r.start > r.end) return c.out().Integer(0);
  int64_t count = Popcount(p + r.start, static_cast<size_t>(r.end - r.start + 1));
  count -= std::popcount(static_cast<uint8_t>(p[r.start] & r.first_mask));
  count -= std::popcount(static_cast<uint8_t>(p[r.end] & r.last_mask));
  c.out().Integer(count);
}

// Redis's redisBitpos: the position of the first `bit` in p[0, n); for 0 not found, n * 8 (the
// string is taken as padded with zeros), for 1 not found, -1. A word at a time where it can.
int64_t FirstBit(const uint8_t* p, size_t n, int bit) {
  const uint8_t skip = bit ? 0x00 : 0xFF;
  const uint64_t skip_word = bit ? 0 : ~uint64_t{0};
  size_t i = 0;
  while (i + 8 <= n) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    if (w != skip_word) break;
    i += 8;
  }
  for (; i < n; ++i) {
    if (p[i] == skip) continue;
    const uint8_t b = bit ? p[i] : static_cast<uint8_t>(~p[i]);
    return static_cast<int64_t>(i) * 8 + std::countl_zero(b);
  }
  return bit ? -1 : static_cast<int64_t>(n) * 8;
}

void Bitpos(Ctx& c) {
  int64_t bit = 0;
  if (!resp::ParseInt64(c.arg(2), &bit)) return c.Error(err::kNotInteger);
  if (bit != 0 && bit != 1) return c.Error("The bit argument must be 1 or 0.");
  ValueView v;
  const bool found = c.Lookup(c.arg(1), &v);
  if (c.read_failed()) return c.ReplyReadError();
  if (!found) return c.out().Integer(bit ? -1 : 0);
  const auto* p = reinterpret_cast<const uint8_t*>(v.value.data());
  const auto len = static_cast<int64_t>(v.value.size());
  bool end_given = false;
  ByteRange r;
  if (c.argc() >= 4 && c.argc() <= 6) {
    int64_t start = 0;
    int64_t end = 0;
    if (!resp::ParseInt64(c.arg(3), &start)) return c.Error(err::kNotInteger);
    bool is_bit = false;
    if (c.argc() == 6 && !ParseBitUnit(c.arg(5), &is_bit)) return c.Error(err::kSyntax);
    if (c.argc() >= 5) {
      if (!resp::ParseInt64(c.arg(4), &end)) return c.Error(err::kNotInteger);
      end_given = true;
    } else {
      end = is_bit ? len * 8 + 7 : len - 1;
    }
    r = Resolve(start, end, len, is_bit);
  } else if (c.argc() == 3) {
    r = ByteRange{0, len - 1, 0, 0};
  } else {
    return c.Error(err::kSyntax);
  }
  if (r.start > r.end) return c.out().Integer(-1);
  // The bits outside a BIT range never match: set when looking for 0, cleared when looking for 1.
  const size_t n = static_cast<size_t>(r.end - r.start + 1);
  const uint8_t* scan = p + r.start;
  auto masked = [&](size_t i) {
    uint8_t b = scan[i];
    uint8_t m = 0;
    if (i == 0) m |= r.first_mask;
    if (i == n - 1) m |= r.last_mask;
    return bit ? static_cast<uint8_t>(b & ~m) : static_cast<uint8_t>(b | m);
  };
  int64_t pos = -1;
  const int want = static_cast<int>(bit);
  const uint8_t first = masked(0);
  if (const int64_t p0 = FirstBit(&first, 1, want); p0 != -1 && p0 != 8) {
    pos = p0;
  } else if (n > 2) {
    const int64_t pm = FirstBit(scan + 1, n - 2, want);
    if (pm != -1 && pm != static_cast<int64_t>(n - 2) * 8) pos = 8 + pm;
  }
  if (pos == -1 && n > 1) {
    const uint8_t last = masked(n - 1);
    const int64_t pl = FirstBit(&last, 1, want);
    if (pl != -1 && pl != 8) pos = static_cast<int64_t>(n - 1) * 8 + pl;
  }
  if (pos == -1 && !bit) pos = static_cast<int64_t>(n) * 8;
  // A 0 not found within an explicit range is not found at all: the range is not zero-padded.
  if (end_given && bit == 0 && pos == static_cast<int64_t>(n) * 8) return c.out().Integer(-1);
  if (pos != -1) pos += r.start * 8;
  c.out().Integer(pos);
}

// ---- BITOP ----

void Bitop(Ctx& c) {
  const std::string op = ToLower(c.arg(1));
  if (op != "and" && op != "or" && op != "xor" && op != "not") return c.Fail(std::string(err::kSyntax));
  if (op == "not" && c.argc() != 4) return c.Fail("BITOP NOT must be called with a single source key.");
  const size_t n = c.argc() - 3;
  struct Sources {
    std::vector<std::string> values;
    int64_t length = 0;
  };
  auto src = std::make_shared<Sources>();
  src->values.resize(n);
  // Read every source at this command's place (copies: the views live only during the call) ...
  for (size_t j = 0; j < n; ++j) {
    c.batch().Update(std::string(c.arg(3 + j)), [src, j](const ValueView* cur) {
      if (cur != nullptr) src->values[j].assign(cur->value);
      return UpdateDecision{};
    });
    c.Notify(kNotifyKeyMiss, "keymiss", c.arg(3 + j));
  }
  // ... then write the result (or delete the target when every source is empty), without a TTL.
  const char kind = op[0];  // a(nd), o(r), x(or), n(ot)
  c.batch().Update(std::string(c.arg(2)), [src, kind](const ValueView* cur) {
    UpdateDecision d;
    size_t maxlen = 0;
    for (const std::string& s : src->values) maxlen = std::max(maxlen, s.size());
    src->length = static_cast<int64_t>(maxlen);
    if (maxlen == 0) {
      if (cur != nullptr) d.action = Action::kDelete;
      return d;
    }
    std::string res(maxlen, '\0');
    const std::vector<std::string>& in = src->values;
    for (size_t i = 0; i < maxlen; ++i) {
      auto at = [&](size_t j) { return i < in[j].size() ? static_cast<uint8_t>(in[j][i]) : uint8_t{0}; };
      uint8_t out = at(0);
      if (kind == 'n') {
        out = static_cast<uint8_t>(~out);
      } else {
        for (size_t j = 1; j < in.size(); ++j) {
          if (kind == 'a') out &= at(j);
          if (kind == 'o') out |= at(j);
          if (kind == 'x') out ^= at(j);
        }
      }
      res[i] = static_cast<char>(out);
    }
    d.action = Action::kPut;
    d.value = std::move(res);
    return d;
  });
  c.Notify(kNotifyNew, "new", c.arg(2));
  c.Then([src, server = &c.server(), db = c.db(), key = NotifyKey(c, kNotifyGeneric | kNotifyString, c.arg(2))](
             std::span<OpResult> r, resp::ReplyBuffer& out) {
    if (key && !r.empty() && r.back().applied) {  // the target written, or deleted (every source empty)
      if (src->length > 0) {
        NotifyKeyspaceEvent(*server, db, kNotifyString, "set", *key);
      } else {
        NotifyKeyspaceEvent(*server, db, kNotifyGeneric, "del", *key);
      }
    }
    out.Integer(src->length);
  });
  // The destination is replaced whatever it holds (as Redis): only the sources must be strings.
  c.batch().mutable_ops().back().check_type = false;
}

// ---- BITFIELD / BITFIELD_RO ----

struct FieldOp {
  enum Code { kGet, kSet, kIncrby } code = kGet;
  uint64_t offset = 0;
  int64_t value = 0;  // SET value or INCRBY increment
  Overflow overflow = Overflow::kWrap;
  int bits = 0;
  bool sign = false;
};

// Parses the subcommands; "" or the error to reply. *writes: any SET or INCRBY.
std::string ParseBitfield(Ctx& c, std::vector<FieldOp>* ops, uint64_t* highest, bool* writes) {
  Overflow overflow = Overflow::kWrap;
  *writes = false;
  *highest = 0;
  for (size_t j = 2; j < c.argc(); ++j) {
    const size_t remaining = c.argc() - j - 1;
    const std::string_view sub = c.arg(j);
    FieldOp op;
    if (EqualsIgnoreCase(sub, "get") && remaining >= 2) {
      op.code = FieldOp::kGet;
    } else if (EqualsIgnoreCase(sub, "set") && remaining >= 3) {
      op.code = FieldOp::kSet;
    } else if (EqualsIgnoreCase(sub, "incrby") && remaining >= 3) {
      op.code = FieldOp::kIncrby;
    } else if (EqualsIgnoreCase(sub, "overflow") && remaining >= 1) {
      const std::string_view type = c.arg(++j);
      if (EqualsIgnoreCase(type, "wrap")) {
        overflow = Overflow::kWrap;
      } else if (EqualsIgnoreCase(type, "sat")) {
        overflow = Overflow::kSat;
      } else if (EqualsIgnoreCase(type, "fail")) {
        overflow = Overflow::kFail;
      } else {
        return std::string("Invalid OVERFLOW type specified");
      }
      continue;
    } else {
      return std::string(err::kSyntax);
    }
    if (!ParseBitfieldType(c.arg(j + 1), &op.sign, &op.bits)) {
      return std::string(kBadType);
    }
    if (!ParseBitOffset(c.arg(j + 2), op.bits, MaxBulk(c), &op.offset)) {
      return std::string(kBadOffset);
    }
    if (op.code != FieldOp::kGet) {
      *writes = true;
      *highest = std::max(*highest, op.offset + static_cast<uint64_t>(op.bits) - 1);
      if (!resp::ParseInt64(c.arg(j + 3), &op.value)) {
        return std::string(err::kNotInteger);
      }
    }
    op.overflow = overflow;
    ops->push_back(op);
    j += op.code == FieldOp::kGet ? 2 : 3;
  }
  return {};
}

// Runs the ops on `value` (grown to cover every written bit when *writes); one reply per op:
// a number, or nil for a write refused by OVERFLOW FAIL. Returns whether anything changed.
struct FieldReply {
  bool null = false;
  int64_t number = 0;
};
bool RunBitfield(const std::vector<FieldOp>& ops, std::string& value, std::vector<FieldReply>* replies) {
  bool changed = false;
  for (const FieldOp& op : ops) {
    FieldReply r;
    if (op.code == FieldOp::kGet) {
      r.number = op.sign ? GetSigned(value, op.offset, op.bits)
                         : static_cast<int64_t>(GetUnsigned(value, op.offset, op.bits));
    } else if (op.sign) {
      const int64_t old = GetSigned(value, op.offset, op.bits);
      int64_t wrapped = 0;
      int64_t next = 0;
      int overflow = 0;
      if (op.code == FieldOp::kIncrby) {
        overflow = SignedOverflow(old, op.value, op.bits, op.overflow, &wrapped);
        next = overflow ? wrapped
                        : static_cast<int64_t>(static_cast<uint64_t>(old) + static_cast<uint64_t>(op.value));
        r.number = next;
      } else {
        next = op.value;
        overflow = SignedOverflow(next, 0, op.bits, op.overflow, &wrapped);
        if (overflow) next = wrapped;
        r.number = old;
      }
      if (overflow && op.overflow == Overflow::kFail) {
        r.null = true;
      } else {
        SetBits(value, op.offset, op.bits, static_cast<uint64_t>(next));
        changed |= old != next;
      }
    } else {
      const uint64_t old = GetUnsigned(value, op.offset, op.bits);
      uint64_t wrapped = 0;
      uint64_t next = 0;
      int overflow = 0;
      if (op.code == FieldOp::kIncrby) {
        next = old + static_cast<uint64_t>(op.value);
        overflow = UnsignedOverflow(old, op.value, op.bits, op.overflow, &wrapped);
        if (overflow) next = wrapped;
        r.number = static_cast<int64_t>(next);
      } else {
        next = static_cast<uint64_t>(op.value);
        overflow = UnsignedOverflow(next, 0, op.bits, op.overflow, &wrapped);
        if (overflow) next = wrapped;
        r.number = static_cast<int64_t>(old);
      }
      if (overflow && op.overflow == Overflow::kFail) {
        r.null = true;
      } else {
        SetBits(value, op.offset, op.bits, next);
        changed |= old != next;
      }
    }
    replies->push_back(r);
  }
  return changed;
}

void ReplyFields(resp::ReplyBuffer& out, const std::vector<FieldReply>& replies) {
  out.ArrayHeader(replies.size());
  for (const FieldReply& r : replies) {
    if (r.null) {
      out.Null();
    } else {
      out.Integer(r.number);
    }
  }
}

void BitfieldRead(Ctx& c, const std::vector<FieldOp>& ops) {
  ValueView v;
  const bool found = c.Lookup(c.arg(1), &v);
  if (c.read_failed()) return c.ReplyReadError();
  std::string value = found ? std::string(v.value) : std::string();
  std::vector<FieldReply> replies;
  RunBitfield(ops, value, &replies);
  ReplyFields(c.out(), replies);
}

void Bitfield(Ctx& c) {
  std::vector<FieldOp> ops;
  uint64_t highest = 0;
  bool writes = false;
  if (std::string e = ParseBitfield(c, &ops, &highest, &writes); !e.empty()) return c.Fail(e);
  auto replies = std::make_shared<std::vector<FieldReply>>();
  c.batch().Update(std::string(c.arg(1)), [ops = std::move(ops), highest, writes,
                                            replies](const ValueView* cur) {
    UpdateDecision d;
    std::string value = cur != nullptr ? std::string(cur->value) : std::string();
    const size_t need = writes ? static_cast<size_t>(highest >> 3) + 1 : 0;
    const bool grows = writes && (cur == nullptr || value.size() < need);
    if (grows) value.resize(need, '\0');
    replies->clear();
    const bool changed = RunBitfield(ops, value, replies.get());
    if (!grows && !changed) return d;
    d.action = Action::kPut;
    d.keep_ttl = true;
    d.value = std::move(value);
    return d;
  });
  NotifyStringWrite(c, c.arg(1), "setbit");
  c.Then([replies](std::span<OpResult>, resp::ReplyBuffer& out) { ReplyFields(out, *replies); });
}

void BitfieldRo(Ctx& c) {
  std::vector<FieldOp> ops;
  uint64_t highest = 0;
  bool writes = false;
  if (std::string e = ParseBitfield(c, &ops, &highest, &writes); !e.empty()) return c.Error(e);
  if (writes) return c.Error("BITFIELD_RO only supports the GET subcommand");
  BitfieldRead(c, ops);
}

}  // namespace

void RegisterBitCommands(std::vector<Command>* t) {
  const size_t first = t->size();
  t->push_back({"setbit", 4, kWrite, 1, 1, 1, Setbit, "@write @bitmap @slow"});
  t->push_back({"getbit", 3, kReadOnly | kFast, 1, 1, 1, Getbit, "@read @bitmap @fast"});
  t->push_back({"bitcount", -2, kReadOnly, 1, 1, 1, Bitcount, "@read @bitmap @slow"});
  t->push_back({"bitpos", -3, kReadOnly, 1, 1, 1, Bitpos, "@read @bitmap @slow"});
  t->push_back({"bitop", -4, kWrite, 2, -1, 1, Bitop, "@write @bitmap @slow"});
  t->push_back({"bitfield", -2, kWrite, 1, 1, 1, Bitfield, "@write @bitmap @slow"});
  t->push_back({"bitfield_ro", -2, kReadOnly | kFast, 1, 1, 1, BitfieldRo, "@read @bitmap @fast"});
  // Every one of them works on string values: another type is WRONGTYPE.
  for (size_t i = first; i < t->size(); ++i) (*t)[i].value_type = 0;  // format::kTypeString
}

}  // namespace keg::server
