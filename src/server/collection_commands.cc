// Helpers shared by the commands of collections stored whole (hashes, sets), and SCAN's arguments.
#include "server/collection_commands.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <random>
#include <vector>

#include "resp/numbers.h"
#include "server/collection.h"
#include "server/glob.h"
#include "server/state.h"

namespace keg::server {

ArgCopy::ArgCopy(std::span<const std::string_view> args) : count_(args.size()) {
  size_t total = 0;
  for (std::string_view a : args) total += a.size();
  char* out = inline_bytes_;
  if (total > kInlineBytes) {
    heap_ = std::make_unique_for_overwrite<char[]>(total);
    out = heap_.get();
    data_ = out;
  }
  if (args.size() > kInline) more_ends_.reserve(args.size() - kInline);
  size_t end = 0;
  for (size_t i = 0; i < args.size(); ++i) {
    if (!args[i].empty()) std::memcpy(out + end, args[i].data(), args[i].size());
    end += args[i].size();
    if (i < kInline) {
      inline_ends_[i] = end;
    } else {
      more_ends_.push_back(end);
    }
  }
}

bool ParseScanCursor(std::string_view text, uint64_t* cursor) {
  // Redis's parseScanCursorOrReply: strtoul(ptr, &eptr, 10), refused when the first byte is a
  // space, when eptr is not at the string's end (its NUL), or on ERANGE.
  text = text.substr(0, text.find('\0'));
  if (!text.empty() && std::isspace(static_cast<unsigned char>(text[0])) != 0) return false;
  size_t i = 0;
  const bool negative = !text.empty() && text[0] == '-';
  if (!text.empty() && (text[0] == '-' || text[0] == '+')) i = 1;
  if (i == text.size()) {  // "" is 0 (no digits, and eptr at the end); a lone sign is not
    *cursor = 0;
    return i == 0;
  }
  uint64_t v = 0;
  for (; i < text.size(); ++i) {
    const char ch = text[i];
    if (ch < '0' || ch > '9') return false;
    const auto d = static_cast<uint64_t>(ch - '0');
    if (v > (UINT64_MAX - d) / 10) return false;  // ERANGE
    v = v * 10 + d;
  }
  *cursor = negative ? 0 - v : v;  // strtoul negates in unsigned arithmetic
  return true;
}

std::string_view ParseScanOptions(std::span<const std::string_view> args, size_t from, ScanArgs* a,
                                  bool allow_type) {
  for (size_t i = from; i < args.size(); i += 2) {
    const std::string opt = ToLower(args[i]);
    if (i + 1 >= args.size()) return err::kSyntax;
    if (opt == "count") {
      if (!resp::ParseInt64(args[i + 1], &a->count)) return err::kNotInteger;
      if (a->count < 1) return err::kSyntax;
    } else if (opt == "match") {
      a->pattern = args[i + 1];
      a->use_pattern = a->pattern != "*";
    } else if (opt == "type" && allow_type) {
      a->type = ToLower(args[i + 1]);
    } else {
      return err::kSyntax;
    }
  }
  return {};
}

std::string_view ParseScanArgs(std::span<const std::string_view> args, ScanArgs* a, bool allow_type) {
  if (!ParseScanCursor(args[1], &a->cursor)) return "invalid cursor";
  return ParseScanOptions(args, 2, a, allow_type);
}

bool ReadWhole(Ctx& c, std::string_view key, coll::View* out, store::ValueView* keep,
               const std::function<void()>& absent) {
  if (!c.Lookup(key, keep)) {
    if (c.read_failed()) {
      c.ReplyReadError();
    } else {
      absent();
    }
    return false;
  }
  if (!coll::Decode(keep->value, out)) {
    c.Error(kUndecodable);
    return false;
  }
  return true;
}

void RandomMembers(Ctx& c, size_t stride) {
  int64_t count = 0;
  const bool with_count = c.argc() >= 3;
  bool withvalues = false;
  if (stride == 1 && c.argc() > 3) return c.Error(err::kSyntax);  // SRANDMEMBER: before the count
  if (with_count) {
    if (!resp::ParseInt64(c.arg(2), &count)) return c.Error(err::kNotInteger);
    if (count == INT64_MIN) {
      return c.Error("value is out of range, value must between -9223372036854775807 and 9223372036854775807");
    }
    const bool values_ok = stride == 2 && c.argc() == 4 && EqualsIgnoreCase(c.arg(3), "withvalues");
    if (c.argc() > 4 || (c.argc() == 4 && !values_ok)) return c.Error(err::kSyntax);
    if (c.argc() == 4) {
      withvalues = true;
      if (count < -INT64_MAX / 2 || count > INT64_MAX / 2) return c.Error("value is out of range");
    }
  }
  CollectionRead coll(c);
  thread_local std::mt19937_64 rng(std::random_device{}());
  std::vector<Entry> v;
  bool one = false;  // one element of a large collection: no walk
  std::optional<std::string> member;
  const auto absent = [&] {
    if (with_count) {
      c.out().ArrayHeader(0);
    } else {
      c.out().Null();
    }
  };
  if (!coll.OpenWith(c.arg(1), absent, [&] {
        v.clear();
        member.reset();
        one = !with_count && coll.large() && !c.in_script();
        if (!one) return (void)coll.All(&v);
        const uint64_t inc = store::format::IncarnationOf(coll.record().value);
        ReadGap(c);
        std::string m, value;
        if (c.server().store->RandomElement(inc, rng(), &m, &value)) member = std::move(m);
      })) {
    return;
  }
  if (one) return member ? c.out().Bulk(*member) : c.out().Null();
  const size_t size = v.size();
  if (size == 0) return with_count ? c.out().ArrayHeader(0) : c.out().Null();
  const bool resp3 = c.out().protocol() == resp::Protocol::kResp3;
  auto emit = [&](size_t i) {
    if (withvalues && resp3) c.out().ArrayHeader(2);
    c.out().Bulk(v[i].member);
    if (withvalues) c.out().Bulk(v[i].value);
  };
  if (!with_count) return c.out().Bulk(v[rng() % size].member);
  if (count == 0) return c.out().ArrayHeader(0);
  const bool pairs = withvalues && !resp3;  // RESP2: field and value flat
  if (count < 0) {  // repeats allowed, random order
    const auto n = static_cast<uint64_t>(-count);
    // The reply is built whole before it is sent: a count the client chose must not make it
    // unbounded (Redis would try, and run out of memory). Past proto-max-bulk-len bytes, refused.
    uint64_t widest = 0;
    for (const Entry& e : v) widest = std::max<uint64_t>(widest, e.member.size() + (withvalues ? e.value.size() : 0) + 32);
    const auto limit = static_cast<uint64_t>(c.server().proto_max_bulk_len.load(std::memory_order_relaxed));
    if (n > limit / widest) return c.Error("value is out of range");
    c.out().ArrayHeader(pairs ? n * 2 : n);
    for (uint64_t i = 0; i < n; ++i) emit(rng() % size);
    return;
  }
  const auto n = std::min<uint64_t>(static_cast<uint64_t>(count), size);
  std::vector<size_t> order(size);
  for (size_t i = 0; i < size; ++i) order[i] = i;
  if (n < size) {  // n distinct: a partial shuffle
    for (size_t i = 0; i < n; ++i) std::swap(order[i], order[i + rng() % (size - i)]);
  }
  c.out().ArrayHeader(pairs ? n * 2 : n);
  for (size_t i = 0; i < n; ++i) emit(order[i]);
}

void ScanCollection(Ctx& c) {
  // Redis's order: the cursor, then the key (missing: an empty scan, its options unread; the
  // wrong type: WRONGTYPE), then the options.
  ScanArgs a;
  if (!ParseScanCursor(c.arg(2), &a.cursor)) return c.Error("invalid cursor");
  // The options' error comes after the key's (missing: an empty scan; the wrong type: WRONGTYPE).
  const std::string_view options_error = ParseScanOptions(c.args(), 3, &a, false);
  CollectionRead coll(c);
  std::vector<Entry> all;
  uint64_t next = 0;
  std::vector<std::string> owned;  // a large collection's entries (the scan's views end with it)
  const auto absent = [&] {
    c.out().ArrayHeader(2);
    c.out().Bulk("0");
    c.out().ArrayHeader(0);
  };
  if (!coll.OpenWith(c.arg(1), absent, [&] {
        all.clear();
        owned.clear();
        next = 0;
        if (!options_error.empty()) return;
        // A small one all in one call, cursor 0 (as Redis for a listpack or intset).
        if (!coll.large()) return (void)coll.All(&all);
        const uint64_t inc = store::format::IncarnationOf(coll.record().value);
        ReadGap(c);
        next = c.ScanElements(inc, a.cursor, static_cast<size_t>(a.count),
                              [&](std::string_view m, std::string_view v) {
                                if (a.use_pattern && !GlobMatch(a.pattern, m)) return;
                                owned.emplace_back(m);
                                owned.emplace_back(v);
                              });
      })) {
    return;
  }
  if (!options_error.empty()) return c.Error(options_error);
  const size_t stride = StrideOf(coll.type());
  std::vector<Entry> hits;
  for (const Entry& e : all) {
    if (!a.use_pattern || GlobMatch(a.pattern, e.member)) hits.push_back(e);
  }
  for (size_t i = 0; i + 1 < owned.size(); i += 2) hits.push_back({owned[i], owned[i + 1]});
  const bool zset = coll.type() == store::format::kTypeZset;  // its values are 8-byte scores
  std::vector<double> scores(zset ? hits.size() : 0);
  for (size_t i = 0; i < scores.size(); ++i) {
    if (!store::format::DecodeScore(hits[i].value, &scores[i])) return c.Error(kUndecodable);
  }
  c.out().ArrayHeader(2);
  c.out().Bulk(std::to_string(next));
  c.out().ArrayHeader(hits.size() * stride);
  for (size_t i = 0; i < hits.size(); ++i) {
    c.out().Bulk(hits[i].member);
    if (zset) {
      // A bulk string in RESP3 too: Redis's ZSCAN replies with the scores' text, not doubles.
      char text[32];
      c.out().Bulk(std::string_view(text, resp::FormatDouble(scores[i], text)));
    } else if (stride == 2) {
      c.out().Bulk(hits[i].value);
    }
  }
}

}  // namespace keg::server
