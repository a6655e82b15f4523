// Sorted set commands (Redis 7.0's t_zset.c replies and errors). A sorted set is stored whole while
// small, per member past the thresholds with the store's ordered index (server/zset.h,
// docs/types.md): reads run on the I/O thread as one consistent state, writes are kRun ops on the
// writer at the command's place in the batch.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "resp/numbers.h"
#include "server/blocking.h"
#include "server/collection.h"
#include "server/collection_commands.h"
#include "server/command.h"
#include "server/glob.h"
#include "server/notify.h"
#include "server/session.h"
#include "server/small_collection.h"
#include "server/state.h"
#include "server/zset.h"
#include "store/format.h"

namespace keg::server {

using store::OpResult;
using Scored = std::vector<std::pair<std::string, double>>;

namespace {

constexpr uint8_t kZset = store::format::kTypeZset;
constexpr uint8_t kSet = store::format::kTypeSet;
constexpr std::string_view kNotFloat = "value is not a valid float";
constexpr std::string_view kNan = "resulting score is not a number (NaN)";

// Members with their scores, as a reply: flat (RESP2, or RESP3 without nesting) or one
// [member, score] array each (RESP3 nested).
void ReplyScored(resp::ReplyBuffer& out, const Scored& items, bool withscores, bool nested) {
  if (!withscores) {
    out.ArrayHeader(items.size());
    for (const auto& [m, s] : items) out.Bulk(m);
    return;
  }
  nested = nested && out.protocol() == resp::Protocol::kResp3;
  out.ArrayHeader(nested ? items.size() : items.size() * 2);
  for (const auto& [m, s] : items) {
    if (nested) out.ArrayHeader(2);
    out.Bulk(m);
    out.Double(s);
  }
}

struct Result {
  std::string error;
  int64_t number = 0;
  bool exists = false;
  bool deleted = false;
  bool has_score = false;
  double score = 0;
  Scored items;
  std::vector<ServedPop> served;
  std::vector<std::string> missing;  // keys read and not there (keymiss, as Redis's lookupKeyRead)
};

// The keymiss events of a write command's missing reads, before its own events.
void NotifyMissing(ServerState& server, uint32_t db, const Result& res) {
  for (const std::string& k : res.missing) NotifyKeyspaceEvent(server, db, kNotifyKeyMiss, "keymiss", k);
}

// The body of a sorted set command's kRun op on the writer (EditThenServe); `serve`: serve the
// clients blocked on the key in this group (ZADD, ZINCRBY).
template <class Change>
void EditZset(store::Txn& txn, ServerState& server, uint32_t db, const std::string& key, Result& res, bool serve,
              Change&& change) {
  EditThenServe<ZsetEdit>(txn, server, serve ? &server.blocking : nullptr, db, key, res, change);
}

// Whether the command serves blocked clients in its own group (not inside EXEC or a script, which
// serve them once they end); registers what replicas get either way.
bool Propagate(Ctx& c, std::shared_ptr<std::vector<ServedPop>> served, bool serves,
               std::span<const std::string_view> propagate_as) {
  const bool serve = serves && !c.inline_only();
  if (serve) {
    PropagateServing(c, std::move(served), propagate_as);
  } else if (!propagate_as.empty()) {
    c.PropagateAs(propagate_as);
  }
  return serve;
}

// Queues the change of the sorted set at `key` as one kRun op (see UpdateList): `change` edits it
// and returns false to leave it as it is. With `serves`, clients blocked on the key are served
// in the same group (ZADD, ZINCRBY; not inside EXEC or a script). `propagate_as`: what replicas
// get instead of the command's arguments (empty: those).
void UpdateZset(Ctx& c, std::string key, std::shared_ptr<Result> res, std::function<bool(ZsetEdit&, Result&)> change,
                bool serves = false, std::span<const std::string_view> propagate_as = {}) {
  const bool serve = Propagate(c, std::shared_ptr<std::vector<ServedPop>>(res, &res->served), serves, propagate_as);
  c.batch().Run([res, server = &c.server(), db = c.db(), key, serve, change = std::move(change)](store::Txn& txn) {
    EditZset(txn, *server, db, key, *res, serve, change);
  }, key);
}

void SendServed(Result& res, std::span<OpResult> r) {
  if (res.served.empty()) return;
  BlockingRegistry::SendReplies(res.served, r.empty() ? store::Status::OK() : r[0].error);
}

// ---- ZADD / ZINCRBY / ZREM ----------------------------------------------------------------------

constexpr uint32_t kNx = kZaddNx, kXx = kZaddXx, kGt = kZaddGt, kLt = kZaddLt, kCh = kZaddCh, kIncr = kZaddIncr;

// A ZADD's state, shared by its function on the writer and its finisher: one allocation, and the
// closures hold only this pointer (store::InlineFunction keeps them without allocating).
struct ZaddJob {
  ZaddJob(Ctx& c, uint32_t f, std::vector<std::pair<std::string, double>> p)
      : server(&c.server()),
        db(c.db()),
        key(c.arg(1)),
        flags(f),
        pairs(std::move(p)),
        notify_key(NotifyKey(c, kNotifyZset | kNotifyNew, c.arg(1))) {}
  bool Apply(ZsetEdit& z, Result& r) const;

  ServerState* const server;
  const uint32_t db;
  const std::string key;
  const uint32_t flags;
  const std::vector<std::pair<std::string, double>> pairs;
  const std::optional<std::string> notify_key;  // set when zset or new events are wanted
  bool serve = false;
  Result res;  // written on the writer, read by the finisher after
};

bool ZaddJob::Apply(ZsetEdit& z, Result& r) const {
  const bool only_existing = (flags & kXx) != 0;
  if (!z.exists() && only_existing) return false;
  int64_t added = 0;
  int64_t updated = 0;
  for (const auto& [member, given] : pairs) {
    double cur = 0;
    const bool had = z.Score(member, &cur);
    if (!z.error().empty()) return false;
    double score = given;
    if (had) {
      if ((flags & kNx) != 0) continue;
      if ((flags & kIncr) != 0) {
        score = cur + given;
        if (std::isnan(score)) {
          r.error = std::string(kNan);
          return added + updated > 0;
        }
      }
      if (((flags & kGt) != 0 && score <= cur) || ((flags & kLt) != 0 && score >= cur)) continue;
      r.has_score = true;
      r.score = score;
      if (score != cur) {  // -0 and 0 are equal: no update, as Redis
        z.PutKnown(member, score, true);
        ++updated;
      }
    } else {
      if (only_existing) continue;
      z.PutKnown(member, score, false);
      ++added;
      r.has_score = true;
      r.score = score;
    }
  }
  r.number = (flags & kCh) != 0 ? added + updated : added;
  return added + updated > 0;
}

}  // namespace

void ZaddPairs(Ctx& c, uint32_t flags, std::vector<std::pair<std::string, double>> pairs,
               std::span<const std::string_view> propagate_as) {
  auto job = std::make_shared<ZaddJob>(c, flags, std::move(pairs));
  job->serve = Propagate(c, std::shared_ptr<std::vector<ServedPop>>(job, &job->res.served), /*serves=*/true,
                         propagate_as);
  c.batch().Run([job](store::Txn& txn) {
    EditZset(txn, *job->server, job->db, job->key, job->res, job->serve,
             [&job = *job](ZsetEdit& z, Result& r) { return job.Apply(z, r); });
  }, job->key);
  c.Then([job](std::span<OpResult> r, resp::ReplyBuffer& out) {
    Result& res = job->res;
    const bool incr = (job->flags & kIncr) != 0;
    if (job->notify_key && !r.empty() && r[0].applied) {
      if (!res.exists) NotifyKeyspaceEvent(*job->server, job->db, kNotifyNew, "new", *job->notify_key);
      NotifyKeyspaceEvent(*job->server, job->db, kNotifyZset, incr ? "zincr" : "zadd", *job->notify_key);
    }
    SendServed(res, r);
    if (!res.error.empty()) return out.Error(res.error);
    if (incr) return res.has_score ? out.Double(res.score) : out.Null();
    out.Integer(res.number);
  });
}

namespace {

void ZaddGeneric(Ctx& c, uint32_t flags) {
  size_t at = 2;
  if ((flags & kIncr) == 0) {
    for (; at < c.argc(); ++at) {
      const std::string_view o = c.arg(at);
      if (EqualsIgnoreCase(o, "nx")) {
        flags |= kNx;
      } else if (EqualsIgnoreCase(o, "xx")) {
        flags |= kXx;
      } else if (EqualsIgnoreCase(o, "ch")) {
        flags |= kCh;
      } else if (EqualsIgnoreCase(o, "incr")) {
        flags |= kIncr;
      } else if (EqualsIgnoreCase(o, "gt")) {
        flags |= kGt;
      } else if (EqualsIgnoreCase(o, "lt")) {
        flags |= kLt;
      } else {
        break;
      }
    }
  }
  const size_t rest = c.argc() - at;
  if (rest == 0 || rest % 2 != 0) return c.Fail(std::string(err::kSyntax));
  const bool nx = (flags & kNx) != 0;
  const bool xx = (flags & kXx) != 0;
  const bool gt = (flags & kGt) != 0;
  const bool lt = (flags & kLt) != 0;
  const bool incr = (flags & kIncr) != 0;
  if (nx && xx) return c.Fail("XX and NX options at the same time are not compatible");
  if ((gt && nx) || (lt && nx) || (gt && lt)) {
    return c.Fail("GT, LT, and/or NX options at the same time are not compatible");
  }
  if (incr && rest > 2) return c.Fail("INCR option supports a single increment-element pair");
  std::vector<std::pair<std::string, double>> pairs;
  pairs.reserve(rest / 2);
  for (size_t j = at; j < c.argc(); j += 2) {
    double score = 0;
    if (!ParseScore(c.arg(j), &score)) return c.Fail(std::string(kNotFloat));
    pairs.emplace_back(std::string(c.arg(j + 1)), score);
  }
  ZaddPairs(c, flags, std::move(pairs));
}

void Zadd(Ctx& c) { ZaddGeneric(c, 0); }
void Zincrby(Ctx& c) {
  double inc = 0;
  if (!ParseScore(c.arg(2), &inc)) return c.Fail(std::string(kNotFloat));
  ZaddGeneric(c, kIncr);
}

void Zrem(Ctx& c) {
  auto res = std::make_shared<Result>();
  std::vector<std::string> members(c.args().begin() + 2, c.args().end());
  UpdateZset(c, std::string(c.arg(1)), res, [members = std::move(members)](ZsetEdit& z, Result& r) {
    if (!z.exists()) return false;
    for (const std::string& m : members) r.number += z.Remove(m) ? 1 : 0;
    return r.number > 0;
  });
  c.Then([res, server = &c.server(), db = c.db(), key = NotifyKey(c, kNotifyZset | kNotifyGeneric, c.arg(1))](
             std::span<OpResult> r, resp::ReplyBuffer& out) {
    if (!res->error.empty()) return out.Error(res->error);
    if (key && !r.empty() && r[0].applied) {
      NotifyKeyspaceEvent(*server, db, kNotifyZset, "zrem", *key);
      if (res->deleted) NotifyKeyspaceEvent(*server, db, kNotifyGeneric, "del", *key);
    }
    out.Integer(res->number);
  });
}

// ---- Reads: ZCARD, ZSCORE, ZMSCORE, ZRANK, ZCOUNT, ZLEXCOUNT -----------------------------------

void Zcard(Ctx& c) {
  uint64_t n = 0;
  if (!ReadZset(c, c.arg(1), [&] { c.out().Integer(0); }, [&](const ZsetSeq& z) { n = z.size(); })) return;
  c.out().Integer(static_cast<int64_t>(n));
}

void Zscore(Ctx& c) {
  bool found = false;
  double score = 0;
  if (!ReadZset(c, c.arg(1), [&] { c.out().Null(); },
                [&](const ZsetSeq& z) { found = z.Score(c.arg(2), &score); })) {
    return;
  }
  if (!found) return c.out().Null();
  c.out().Double(score);
}

void Zmscore(Ctx& c) {
  std::vector<std::optional<double>> scores;
  if (!ReadScores(c, 2, c.argc() - 2, &scores)) return;
  c.out().ArrayHeader(scores.size());
  for (const auto& s : scores) s ? c.out().Double(*s) : c.out().Null();
}

// ZRANK / ZREVRANK key member [WITHSCORE] (7.2's WITHSCORE is not 7.0's: arity 3).
void RankGeneric(Ctx& c, bool rev) {
  bool found = false;
  uint64_t rank = 0;
  if (!ReadZset(c, c.arg(1), [&] { c.out().Null(); }, [&](const ZsetSeq& z) {
        double score = 0;
        found = z.Score(c.arg(2), &score);
        if (!found) return;
        zset::Before key;
        key.kind = zset::Before::kKey;
        key.score = score;
        key.member = c.arg(2);
        rank = z.Rank(key);
        if (rev) rank = z.size() - 1 - rank;
      })) {
    return;
  }
  if (!found) return c.out().Null();
  c.out().Integer(static_cast<int64_t>(rank));
}
void Zrank(Ctx& c) { RankGeneric(c, false); }
void Zrevrank(Ctx& c) { RankGeneric(c, true); }

// ZCOUNT key min max (scores) / ZLEXCOUNT key min max (members): the items between the bounds.
void CountGeneric(Ctx& c, bool lex) {
  zset::Before lo, hi;
  if (lex ? !zset::ParseLexRange(c.arg(2), c.arg(3), &lo, &hi) : !zset::ParseScoreRange(c.arg(2), c.arg(3), &lo, &hi)) {
    return c.out().Error(lex ? "min or max not valid string range item" : "min or max is not a float");
  }
  uint64_t n = 0;
  if (!ReadZset(c, c.arg(1), [&] { c.out().Integer(0); }, [&](const ZsetSeq& z) {
        const uint64_t a = z.Rank(lo);
        const uint64_t b = z.Rank(hi);
        n = b > a ? b - a : 0;
      })) {
    return;
  }
  c.out().Integer(static_cast<int64_t>(n));
}
void Zcount(Ctx& c) { CountGeneric(c, false); }
void Zlexcount(Ctx& c) { CountGeneric(c, true); }

// A STORE form's result written to `dst` in its op (replacing whatever it holds; an empty
// result deletes it), with what its finisher needs: the count, whether dst was there.
void StoreResult(store::Txn& txn, ServerState& server, uint32_t db, const std::string& dst, Scored items, Result* res) {
  store::ValueView there;
  res->exists = txn.Get(db, dst, &there).ok();
  res->number = static_cast<int64_t>(items.size());
  if (items.empty() && !res->exists) return;
  WriteZset(txn, server, db, dst, std::move(items), false);
  server.watches.TouchKey(db, dst);
}

// A STORE form's finisher: keymiss for its missing sources, then `new` and `event` on the
// destination (or `del` when the result was empty), then the count.
void ThenStored(Ctx& c, std::shared_ptr<Result> res, std::string event) {
  c.Then([res, server = &c.server(), db = c.db(), event = std::move(event),
          key = NotifyKey(c, kNotifyZset | kNotifyGeneric | kNotifyNew | kNotifyKeyMiss, c.arg(1))](
             std::span<OpResult> r, resp::ReplyBuffer& out) {
    if (!res->error.empty()) return out.Error(res->error);
    if (key) NotifyMissing(*server, db, *res);
    if (key && !r.empty() && r[0].applied) {
      if (res->number > 0) {
        if (!res->exists) NotifyKeyspaceEvent(*server, db, kNotifyNew, "new", *key);
        NotifyKeyspaceEvent(*server, db, kNotifyZset, event, *key);
      } else {
        NotifyKeyspaceEvent(*server, db, kNotifyGeneric, "del", *key);
      }
    }
    out.Integer(res->number);
  });
}

// ---- Ranges -------------------------------------------------------------------------------------

// What a ZRANGE-family command asked for.
struct RangeSpec {
  enum Type : uint8_t { kRank, kScore, kLex } type = kRank;
  bool rev = false;
  bool withscores = false;
  int64_t start = 0;  // kRank
  int64_t stop = 0;
  zset::Before lo, hi;  // kScore, kLex (lo: before the min, hi: at most the max)
  int64_t offset = 0;
  int64_t limit = -1;
  std::string min_text, max_text;  // the bounds' own text (lo / hi view into them)
};

// The forward ranks [*a, *b) of `spec`'s items in `z`.
void RangeRanks(const ZsetSeq& z, const RangeSpec& spec, uint64_t* a_out, uint64_t* b_out) {
  *a_out = *b_out = 0;
  const uint64_t n = z.size();
  uint64_t a = 0;
  uint64_t b = 0;
  if (spec.type == RangeSpec::kRank) {
    int64_t start = spec.start;
    int64_t end = spec.stop;
    const auto len = static_cast<int64_t>(n);
    if (start < 0) start = len + start;
    if (end < 0) end = len + end;
    if (start < 0) start = 0;
    if (start > end || start >= len) return;
    if (end >= len) end = len - 1;
    if (spec.rev) {
      a = static_cast<uint64_t>(len - 1 - end);
      b = static_cast<uint64_t>(len - start);
    } else {
      a = static_cast<uint64_t>(start);
      b = static_cast<uint64_t>(end + 1);
    }
  } else {
    a = z.Rank(spec.lo);
    b = z.Rank(spec.hi);
    if (b <= a || spec.offset < 0) return;
    const auto off = static_cast<uint64_t>(spec.offset);
    if (off >= b - a) return;
    uint64_t take = b - a - off;
    if (spec.limit >= 0) take = std::min<uint64_t>(take, static_cast<uint64_t>(spec.limit));
    if (spec.rev) {
      b -= off;
      a = b - take;
    } else {
      a += off;
      b = a + take;
    }
  }
  *a_out = a;
  *b_out = b;
}

// Calls add(item) for the items of `spec` from `z`, in forward order (the caller reverses REV's).
template <class Add>
void VisitRange(const ZsetSeq& z, const RangeSpec& spec, Add&& add) {
  uint64_t a = 0;
  uint64_t b = 0;
  RangeRanks(z, spec, &a, &b);
  if (b <= a) return;
  z.Range(a, b, [&](const zset::Item& it) {
    add(it);
    return true;
  });
}

// The items of `spec` from `z`, in reply order.
void CollectRange(const ZsetSeq& z, const RangeSpec& spec, Scored* out) {
  out->clear();
  VisitRange(z, spec, [&](const zset::Item& it) { out->emplace_back(std::string(it.member), it.score); });
  if (spec.rev) std::reverse(out->begin(), out->end());
}

// A range read's items, their members copied into one buffer: no allocation per member, and
// none at all once the thread's buffers have grown (RangeRead keeps one per thread).
struct FlatItems {
  struct Entry {
    size_t at;
    size_t size;
    double score;
  };
  std::string bytes;
  std::vector<Entry> items;
  void Clear() {
    bytes.clear();
    items.clear();
  }
  std::string_view Member(const Entry& e) const { return std::string_view(bytes.data() + e.at, e.size); }
  // Buffers a large read grew are given back rather than kept by the thread.
  void Trim() {
    if (bytes.capacity() > (1U << 20)) std::string().swap(bytes);
    if (items.capacity() > (1U << 14)) std::vector<Entry>().swap(items);
  }
};

void CollectRange(const ZsetSeq& z, const RangeSpec& spec, FlatItems* out) {
  out->Clear();
  VisitRange(z, spec, [&](const zset::Item& it) {
    out->items.push_back(FlatItems::Entry{out->bytes.size(), it.member.size(), it.score});
    out->bytes.append(it.member);
  });
  if (spec.rev) std::reverse(out->items.begin(), out->items.end());
}

void ReplyScored(resp::ReplyBuffer& out, const FlatItems& flat, bool withscores, bool nested) {
  if (!withscores) {
    out.ArrayHeader(flat.items.size());
    for (const FlatItems::Entry& e : flat.items) out.Bulk(flat.Member(e));
    return;
  }
  nested = nested && out.protocol() == resp::Protocol::kResp3;
  out.ArrayHeader(nested ? flat.items.size() : flat.items.size() * 2);
  for (const FlatItems::Entry& e : flat.items) {
    if (nested) out.ArrayHeader(2);
    out.Bulk(flat.Member(e));
    out.Double(e.score);
  }
}

// Parses the range bounds of `spec` from args min_idx / max_idx: false with the error text.
bool ParseBounds(RangeSpec* spec, std::string_view min, std::string_view max, std::string* error) {
  if (spec->rev && spec->type != RangeSpec::kRank) std::swap(min, max);  // given as max min
  spec->min_text = min;
  spec->max_text = max;
  switch (spec->type) {
    case RangeSpec::kRank:
      if (!resp::ParseInt64(min, &spec->start) || !resp::ParseInt64(max, &spec->stop)) {
        *error = std::string(err::kNotInteger);
        return false;
      }
      return true;
    case RangeSpec::kScore:
      if (!zset::ParseScoreRange(spec->min_text, spec->max_text, &spec->lo, &spec->hi)) {
        *error = "min or max is not a float";
        return false;
      }
      return true;
    case RangeSpec::kLex:
      if (!zset::ParseLexRange(spec->min_text, spec->max_text, &spec->lo, &spec->hi)) {
        *error = "min or max not valid string range item";
        return false;
      }
      return true;
  }
  return false;
}

// Redis's zrangeGenericCommand argument parsing from args[first] = key (src), first+1 = min,
// first+2 = max, options after. `type` / `rev` preset by the legacy commands.
bool ParseRange(Ctx& c, size_t first, bool store, RangeSpec* spec, bool fixed_type, std::string* error) {
  bool type_set = fixed_type;
  bool rev_set = fixed_type;
  for (size_t j = first + 3; j < c.argc(); ++j) {
    const size_t left = c.argc() - j - 1;
    const std::string_view o = c.arg(j);
    if (!store && EqualsIgnoreCase(o, "withscores")) {
      spec->withscores = true;
    } else if (EqualsIgnoreCase(o, "limit") && left >= 2) {
      if (!resp::ParseInt64(c.arg(j + 1), &spec->offset) || !resp::ParseInt64(c.arg(j + 2), &spec->limit)) {
        *error = std::string(err::kNotInteger);
        return false;
      }
      j += 2;
    } else if (!rev_set && EqualsIgnoreCase(o, "rev")) {
      spec->rev = true;
      rev_set = true;
    } else if (!type_set && EqualsIgnoreCase(o, "bylex")) {
      spec->type = RangeSpec::kLex;
      type_set = true;
    } else if (!type_set && EqualsIgnoreCase(o, "byscore")) {
      spec->type = RangeSpec::kScore;
      type_set = true;
    } else {
      *error = std::string(err::kSyntax);
      return false;
    }
  }
  // Redis checks LIMIT by whether a limit was given: -1 counts as none.
  if (spec->limit != -1 && spec->type == RangeSpec::kRank) {
    *error = "syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX";
    return false;
  }
  if (spec->withscores && spec->type == RangeSpec::kLex) {
    *error = "syntax error, WITHSCORES not supported in combination with BYLEX";
    return false;
  }
  return ParseBounds(spec, c.arg(first + 1), c.arg(first + 2), error);
}

void RangeRead(Ctx& c, RangeSpec::Type type, bool rev, bool fixed) {
  RangeSpec spec;
  spec.type = type;
  spec.rev = rev;
  std::string error;
  if (!ParseRange(c, 1, false, &spec, fixed, &error)) return c.out().Error(error);
  thread_local FlatItems items;
  items.Clear();
  if (ReadZset(c, c.arg(1), [&] { c.out().ArrayHeader(0); },
               [&](const ZsetSeq& z) { CollectRange(z, spec, &items); })) {
    ReplyScored(c.out(), items, spec.withscores, true);
  }
  items.Trim();
}

void Zrange(Ctx& c) { RangeRead(c, RangeSpec::kRank, false, false); }
void Zrevrange(Ctx& c) { RangeRead(c, RangeSpec::kRank, true, true); }
void Zrangebyscore(Ctx& c) { RangeRead(c, RangeSpec::kScore, false, true); }
void Zrevrangebyscore(Ctx& c) { RangeRead(c, RangeSpec::kScore, true, true); }
void Zrangebylex(Ctx& c) { RangeRead(c, RangeSpec::kLex, false, true); }
void Zrevrangebylex(Ctx& c) { RangeRead(c, RangeSpec::kLex, true, true); }

// ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count].
void Zrangestore(Ctx& c) {
  auto spec = std::make_shared<RangeSpec>();
  std::string error;
  // The bounds view into the spec's own copies of the arguments (it lives in the op).
  if (!ParseRange(c, 2, true, spec.get(), false, &error)) return c.Fail(error);
  auto res = std::make_shared<Result>();
  ServerState* server = &c.server();
  c.batch().Run([res, server, spec, db = c.db(), dst = std::string(c.arg(1)), src = std::string(c.arg(2))](
                    store::Txn& txn) {
    ZsetEdit z(txn, *server, db, src);
    if (!z.Open()) {
      res->error = z.error();
      return;
    }
    Scored items;
    if (!z.exists()) res->missing.push_back(src);
    if (z.exists()) z.WithSeq([&](const ZsetSeq& seq) { CollectRange(seq, *spec, &items); });
    if (!z.error().empty()) {
      res->error = z.error();
      return;
    }
    StoreResult(txn, *server, db, dst, std::move(items), res.get());
  }, std::string(c.arg(1)));
  ThenStored(c, res, "zrangestore");
}

// ---- ZREMRANGEBY* -------------------------------------------------------------------------------

void RemRange(Ctx& c, RangeSpec::Type type, std::string_view event) {
  auto spec = std::make_shared<RangeSpec>();
  spec->type = type;
  std::string error;
  spec->min_text = c.arg(2);
  spec->max_text = c.arg(3);
  if (type == RangeSpec::kRank) {
    if (!resp::ParseInt64(c.arg(2), &spec->start) || !resp::ParseInt64(c.arg(3), &spec->stop)) {
      return c.Fail(std::string(err::kNotInteger));
    }
  } else if (type == RangeSpec::kScore) {
    if (!zset::ParseScoreRange(spec->min_text, spec->max_text, &spec->lo, &spec->hi)) {
      return c.Fail("min or max is not a float");
    }
  } else if (!zset::ParseLexRange(spec->min_text, spec->max_text, &spec->lo, &spec->hi)) {
    return c.Fail("min or max not valid string range item");
  }
  auto res = std::make_shared<Result>();
  UpdateZset(c, std::string(c.arg(1)), res, [spec](ZsetEdit& z, Result& r) {
    if (!z.exists()) return false;
    Scored items;
    z.WithSeq([&](const ZsetSeq& seq) { CollectRange(seq, *spec, &items); });
    if (!z.error().empty()) return false;
    for (const auto& [m, s] : items) z.Remove(m);
    r.number = static_cast<int64_t>(items.size());
    return !items.empty();
  });
  c.Then([res, event, server = &c.server(), db = c.db(), key = NotifyKey(c, kNotifyZset | kNotifyGeneric, c.arg(1))](
             std::span<OpResult> r, resp::ReplyBuffer& out) {
    if (!res->error.empty()) return out.Error(res->error);
    if (key && !r.empty() && r[0].applied) {
      NotifyKeyspaceEvent(*server, db, kNotifyZset, event, *key);
      if (res->deleted) NotifyKeyspaceEvent(*server, db, kNotifyGeneric, "del", *key);
    }
    out.Integer(res->number);
  });
}

void Zremrangebyrank(Ctx& c) { RemRange(c, RangeSpec::kRank, "zremrangebyrank"); }
void Zremrangebyscore(Ctx& c) { RemRange(c, RangeSpec::kScore, "zremrangebyscore"); }
void Zremrangebylex(Ctx& c) { RemRange(c, RangeSpec::kLex, "zremrangebylex"); }

// ---- Pops ---------------------------------------------------------------------------------------

// Pops up to `count` members from the low (min) or high end.
Scored PopItems(ZsetEdit& z, bool min, int64_t count) {
  Scored items;
  z.WithSeq([&](const ZsetSeq& seq) {
    items.clear();
    const uint64_t n = seq.size();
    const uint64_t k = std::min<uint64_t>(n, static_cast<uint64_t>(count));
    seq.Range(min ? 0 : n - k, min ? k : n, [&](const zset::Item& it) {
      items.emplace_back(std::string(it.member), it.score);
      return true;
    });
    if (!min) std::reverse(items.begin(), items.end());
  });
  if (!z.error().empty()) return {};
  for (const auto& [m, s] : items) z.Remove(m);
  return items;
}

// ZPOPMIN / ZPOPMAX key [count].
void Zpop(Ctx& c, bool min) {
  if (c.argc() > 3) return c.Fail(std::string(err::kSyntax));
  int64_t count = -1;
  if (c.argc() == 3 && (!resp::ParseInt64(c.arg(2), &count) || count < 0)) {
    return c.Fail("value is out of range, must be positive");
  }
  // Nothing to pop (redis-benchmark's ZPOPMIN once its set is empty): answered from a read.
  if (KeyAbsentNow(c, c.arg(1))) return c.out().ArrayHeader(0);
  auto res = std::make_shared<Result>();
  UpdateZset(c, std::string(c.arg(1)), res, [min, count](ZsetEdit& z, Result& r) {
    if (!z.exists() || count == 0) return false;
    r.items = PopItems(z, min, count == -1 ? 1 : count);
    return !r.items.empty();
  });
  c.Then([res, min, nested = count != -1, server = &c.server(), db = c.db(),
          key = NotifyKey(c, kNotifyZset | kNotifyGeneric, c.arg(1))](std::span<OpResult> r, resp::ReplyBuffer& out) {
    if (!res->error.empty()) return out.Error(res->error);
    if (key && !r.empty() && r[0].applied) {
      NotifyKeyspaceEvent(*server, db, kNotifyZset, min ? "zpopmin" : "zpopmax", *key);
      if (res->deleted) NotifyKeyspaceEvent(*server, db, kNotifyGeneric, "del", *key);
    }
    ReplyScored(out, res->items, true, nested);
  });
}
void Zpopmin(Ctx& c) { Zpop(c, true); }
void Zpopmax(Ctx& c) { Zpop(c, false); }

void Zmpop(Ctx& c) {
  auto w = std::make_shared<BlockedPop>();
  if (ParseMpop(c, 1, true, w.get())) PopOnce(c, std::move(w));
}

void Bzmpop(Ctx& c) {
  auto w = std::make_shared<BlockedPop>();
  if (ParseTimeout(c, c.arg(1), &w->deadline_ms) && ParseMpop(c, 2, true, w.get())) BlockingPop(c, std::move(w));
}

// BZPOPMIN / BZPOPMAX key [key ...] timeout.
void Bzpop(Ctx& c, bool min) {
  auto w = std::make_shared<BlockedPop>();
  if (!ParseTimeout(c, c.arg(c.argc() - 1), &w->deadline_ms)) return;
  w->zset = true;
  w->kind = BlockedPop::Kind::kPop;
  w->left = min;
  w->keys.assign(c.args().begin() + 1, c.args().end() - 1);
  BlockingPop(c, std::move(w));
}
void Bzpopmin(Ctx& c) { Bzpop(c, true); }
void Bzpopmax(Ctx& c) { Bzpop(c, false); }

// ---- ZRANDMEMBER, ZSCAN -------------------------------------------------------------------------

void Zrandmember(Ctx& c) {
  // Redis's order of checks (as RandomMembers for HRANDFIELD): the count, the syntax, the range.
  const bool with_count = c.argc() >= 3;
  int64_t count = 1;
  if (with_count) {
    if (!resp::ParseInt64(c.arg(2), &count)) return c.out().Error(err::kNotInteger);
    if (count == INT64_MIN) {
      return c.out().Error("value is out of range, value must between -9223372036854775807 and 9223372036854775807");
    }
  }
  if (c.argc() > 4 || (c.argc() == 4 && !EqualsIgnoreCase(c.arg(3), "withscores"))) {
    return c.out().Error(err::kSyntax);
  }
  const bool withscores = c.argc() == 4;
  if (withscores && (count < -INT64_MAX / 2 || count > INT64_MAX / 2)) return c.out().Error("value is out of range");
  // A negative count's reply is built whole: bounded by proto-max-bulk-len (Redis would try).
  if (count < 0) {
    const auto limit = static_cast<uint64_t>(c.server().proto_max_bulk_len.load(std::memory_order_relaxed));
    if (static_cast<uint64_t>(-count) > limit / 32) return c.out().Error("value is out of range");
  }
  Scored all;
  if (!ReadZset(c, c.arg(1), [&] { with_count ? c.out().ArrayHeader(0) : c.out().Null(); },
                [&](const ZsetSeq& z) {
                  all.clear();
                  // A few picks of a large set by rank; otherwise the whole of it.
                  const uint64_t n = z.size();
                  if (n == 0) return;
                  static thread_local std::mt19937_64 rng{std::random_device{}()};
                  if (!with_count || (count < 0 && static_cast<uint64_t>(-count) <= 64)) {
                    const uint64_t picks = with_count ? static_cast<uint64_t>(-count) : 1;
                    for (uint64_t i = 0; i < picks; ++i) {
                      const uint64_t r = rng() % n;
                      z.Range(r, r + 1, [&](const zset::Item& it) {
                        all.emplace_back(std::string(it.member), it.score);
                        return true;
                      });
                    }
                    return;
                  }
                  z.Range(0, n, [&](const zset::Item& it) {
                    all.emplace_back(std::string(it.member), it.score);
                    return true;
                  });
                })) {
    return;
  }
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  if (!with_count) {
    if (all.empty()) return c.out().Null();
    return c.out().Bulk(all[0].first);
  }
  if (count == 0 || all.empty()) return c.out().ArrayHeader(0);
  Scored picked;
  if (count < 0) {  // with repetition: the picks made by rank above, or drawn from the whole set
    const auto want = static_cast<uint64_t>(-count);
    if (want <= 64) {
      picked = std::move(all);
    } else {
      picked.reserve(static_cast<size_t>(want));
      for (uint64_t i = 0; i < want; ++i) picked.push_back(all[rng() % all.size()]);
    }
  } else {
    std::shuffle(all.begin(), all.end(), rng);
    if (static_cast<uint64_t>(count) < all.size()) all.resize(static_cast<size_t>(count));
    picked = std::move(all);
  }
  ReplyScored(c.out(), picked, withscores, true);
}

// ZSCAN key cursor [MATCH pattern] [COUNT count]: a small set whole in one reply (cursor 0), in
// its order, as Redis answers for a listpack; a large one by its element index's cursor, as HSCAN
// and SSCAN (a member present for the whole scan is returned exactly once, as Redis's hash-table
// cursor guarantees, however the set's ranks move meanwhile).
void Zscan(Ctx& c) { ScanCollection(c); }

// ---- ZUNION / ZINTER / ZDIFF and their STORE forms, ZINTERCARD ---------------------------------

enum class SetOp : uint8_t { kUnion, kInter, kDiff };
enum class Aggregate : uint8_t { kSum, kMin, kMax };

struct AlgebraSpec {
  SetOp op = SetOp::kUnion;
  std::vector<std::string> keys;
  std::vector<double> weights;
  Aggregate aggregate = Aggregate::kSum;
  bool withscores = false;
  int64_t limit = 0;  // ZINTERCARD: 0 unlimited
};

// One input: a sorted set's members with scores, or a set's (score 1).
struct Source {
  bool exists = false;
  Scored items;
};

// Parses numkeys key [key ...] [WEIGHTS w ...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES] from
// args[at]; the keys' types are checked first by the caller (Redis looks them up before the
// options). False with the error text.
bool ParseAlgebra(Ctx& c, size_t at, bool store, bool card_only, AlgebraSpec* spec, std::string* error,
                  std::string_view name, bool* options_failed = nullptr) {
  int64_t numkeys = 0;
  if (!resp::ParseInt64(c.arg(at), &numkeys)) {
    *error = std::string(err::kNotInteger);
    return false;
  }
  if (numkeys < 1) {
    *error = "at least 1 input key is needed for '" + std::string(name) + "' command";
    return false;
  }
  if (numkeys > static_cast<int64_t>(c.argc() - at - 1)) {
    *error = std::string(err::kSyntax);
    return false;
  }
  size_t j = at + 1;
  for (int64_t i = 0; i < numkeys; ++i, ++j) spec->keys.emplace_back(c.arg(j));
  spec->weights.assign(spec->keys.size(), 1.0);
  // From here on the errors are the options': Redis replies them after WRONGTYPE of a key.
  if (options_failed != nullptr) *options_failed = true;
  while (j < c.argc()) {
    const size_t remaining = c.argc() - j;
    const std::string_view o = c.arg(j);
    if (spec->op != SetOp::kDiff && !card_only && remaining >= spec->keys.size() + 1 &&
        EqualsIgnoreCase(o, "weights")) {
      ++j;
      for (size_t i = 0; i < spec->keys.size(); ++i, ++j) {
        if (!ParseScore(c.arg(j), &spec->weights[i])) {
          *error = "weight value is not a float";
          return false;
        }
      }
    } else if (spec->op != SetOp::kDiff && !card_only && remaining >= 2 && EqualsIgnoreCase(o, "aggregate")) {
      const std::string_view a = c.arg(j + 1);
      if (EqualsIgnoreCase(a, "sum")) {
        spec->aggregate = Aggregate::kSum;
      } else if (EqualsIgnoreCase(a, "min")) {
        spec->aggregate = Aggregate::kMin;
      } else if (EqualsIgnoreCase(a, "max")) {
        spec->aggregate = Aggregate::kMax;
      } else {
        *error = std::string(err::kSyntax);
        return false;
      }
      j += 2;
    } else if (!store && !card_only && EqualsIgnoreCase(o, "withscores")) {
      spec->withscores = true;
      ++j;
    } else if (card_only && remaining >= 2 && EqualsIgnoreCase(o, "limit")) {
      // Redis's getPositiveLongFromObjectOrReply with its message: for a non-number too.
      if (!resp::ParseInt64(c.arg(j + 1), &spec->limit) || spec->limit < 0) {
        *error = "LIMIT can't be negative";
        return false;
      }
      j += 2;
    } else {
      *error = std::string(err::kSyntax);
      return false;
    }
  }
  if (options_failed != nullptr) *options_failed = false;
  return true;
}

void AggregateInto(double* target, double v, Aggregate a) {
  switch (a) {
    case Aggregate::kSum:
      *target += v;
      if (std::isnan(*target)) *target = 0;  // inf + -inf
      break;
    case Aggregate::kMin: *target = std::min(*target, v); break;
    case Aggregate::kMax: *target = std::max(*target, v); break;
  }
}

double Weighted(double score, double weight) {
  const double v = score * weight;
  return std::isnan(v) ? 0 : v;  // inf * 0
}

// The result of the operation over `src` (src[i] for spec.keys[i]), in order; *card the count.
Scored Compute(const AlgebraSpec& spec, std::vector<Source>& src, uint64_t* card = nullptr) {
  std::vector<size_t> order(src.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  Scored out;
  if (spec.op == SetOp::kDiff) {
    if (src.empty() || src[0].items.empty()) return out;
    std::unordered_set<std::string_view> drop;
    for (size_t i = 1; i < src.size(); ++i) {
      for (const auto& [m, s] : src[i].items) drop.insert(m);
    }
    for (const auto& [m, s] : src[0].items) {
      if (drop.count(m) == 0) out.emplace_back(m, s);
    }
  } else if (spec.op == SetOp::kInter) {
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return src[a].items.size() < src[b].items.size(); });
    if (src[order[0]].items.empty()) return out;
    std::vector<std::unordered_map<std::string_view, double>> maps(src.size());
    for (size_t k = 1; k < order.size(); ++k) {
      for (const auto& [m, s] : src[order[k]].items) maps[order[k]].emplace(m, s);
    }
    uint64_t n = 0;
    for (const auto& [m, s] : src[order[0]].items) {
      double score = Weighted(s, spec.weights[order[0]]);
      bool all = true;
      for (size_t k = 1; k < order.size() && all; ++k) {
        auto it = maps[order[k]].find(m);
        if (it == maps[order[k]].end()) {
          all = false;
          break;
        }
        AggregateInto(&score, Weighted(it->second, spec.weights[order[k]]), spec.aggregate);
      }
      if (!all) continue;
      ++n;
      if (card != nullptr) {
        if (spec.limit != 0 && n >= static_cast<uint64_t>(spec.limit)) break;
        continue;
      }
      out.emplace_back(m, score);
    }
    if (card != nullptr) *card = n;
  } else {
    std::unordered_map<std::string_view, double> acc;
    std::vector<std::string_view> seen;
    for (size_t i = 0; i < src.size(); ++i) {
      for (const auto& [m, s] : src[i].items) {
        const double v = Weighted(s, spec.weights[i]);
        auto [it, added] = acc.try_emplace(m, v);
        if (added) {
          seen.push_back(m);
        } else {
          AggregateInto(&it->second, v, spec.aggregate);
        }
      }
    }
    out.reserve(seen.size());
    for (std::string_view m : seen) out.emplace_back(std::string(m), acc[m]);
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return zset::Less(a.second, a.first, b.second, b.first); });
  return out;
}

// Reads one source on a reader: false with the error text.
bool ReadSourceOnce(Ctx& c, const std::string& key, Source* src, std::string* error) {
  src->items.clear();
  store::ValueView v;
  const store::Status s = c.Get(key, &v);
  if (s.IsNotFound()) return true;
  if (!s.ok()) {
    *error = CorruptionError(s);
    return false;
  }
  src->exists = true;
  if (v.type == kSet) {
    if (v.kind == store::format::kKindHead) {
      std::vector<store::ElementView> elems;
      std::vector<std::shared_ptr<const void>> pins;
      const store::Status es = c.ReadElements(store::format::IncarnationOf(v.value), &elems, &pins);
      if (!es.ok()) {
        *error = CorruptionError(es);
        return false;
      }
      for (const auto& e : elems) src->items.emplace_back(std::string(e.member), 1.0);
      return true;
    }
    coll::View cv;
    if (!coll::Decode(v.value, &cv)) {
      *error = std::string(kUndecodable);
      return false;
    }
    for (std::string_view m : cv.elements) src->items.emplace_back(std::string(m), 1.0);
    return true;
  }
  if (v.type != kZset) {
    *error = std::string(err::kWrongType);
    return false;
  }
  store::Status es;
  bool ok = ZsetItems(c, v, &src->items, &es);
  if (!ok) *error = CorruptionError(es);
  return ok;
}

// Reads one source inside a kRun op.
bool TxnSource(store::Txn& txn, ServerState& server, uint32_t db, const std::string& key, Source* src,
               std::string* error) {
  store::ValueView v;
  const store::Status s = txn.Get(db, key, &v);
  if (s.IsNotFound()) return true;
  if (!s.ok()) {
    *error = CorruptionError(s);
    return false;
  }
  src->exists = true;
  if (v.type == kSet) {
    CollectionEdit set(txn, server, db, key, kSet);
    if (!set.Open()) {
      *error = set.error();
      return false;
    }
    const store::Status fs = set.ForEach([&](std::string_view m, std::string_view) { src->items.emplace_back(m, 1.0); });
    if (!fs.ok()) {
      *error = CorruptionError(fs);
      return false;
    }
    return true;
  }
  if (v.type != kZset) {
    *error = std::string(err::kWrongType);
    return false;
  }
  ZsetEdit z(txn, server, db, key);
  if (!z.Open()) {
    *error = z.error();
    return false;
  }
  z.WithSeq([&](const ZsetSeq& seq) {
    src->items.clear();
    seq.Range(0, seq.size(), [&](const zset::Item& it) {
      src->items.emplace_back(std::string(it.member), it.score);
      return true;
    });
  });
  if (!z.error().empty()) {
    *error = z.error();
    return false;
  }
  return true;
}

// ZUNION / ZINTER / ZDIFF numkeys key ... [WEIGHTS ...] [AGGREGATE ...] [WITHSCORES]; ZINTERCARD.
void AlgebraRead(Ctx& c, SetOp op, bool card_only, std::string_view name) {
  AlgebraSpec spec;
  spec.op = op;
  std::string error;
  // Redis looks the keys up (WRONGTYPE) before it parses the options; the keys come first here too.
  int64_t numkeys = 0;
  if (resp::ParseInt64(c.arg(1), &numkeys) && numkeys >= 1 && numkeys <= static_cast<int64_t>(c.argc() - 2)) {
    for (int64_t i = 0; i < numkeys; ++i) {
      store::ValueView v;
      const store::Status s = c.Get(c.arg(2 + static_cast<size_t>(i)), &v);
      if (s.ok() && v.type != kZset && v.type != kSet) return c.out().Error(err::kWrongType);
    }
  }
  if (!ParseAlgebra(c, 1, false, card_only, &spec, &error, name)) return c.out().Error(error);
  std::vector<Source> src(spec.keys.size());
  bool failed = false;
  c.ReadTogether(spec.keys.size() + 1, [&] {
    failed = false;
    for (size_t i = 0; i < spec.keys.size() && !failed; ++i) {
      src[i] = Source{};
      failed = !ReadSourceOnce(c, spec.keys[i], &src[i], &error);
    }
  });
  if (failed) return c.out().Error(error);
  for (size_t i = 0; i < spec.keys.size(); ++i) {
    if (!src[i].exists) c.NotifyNow(kNotifyKeyMiss, "keymiss", spec.keys[i]);
  }
  if (card_only) {
    uint64_t n = 0;
    Compute(spec, src, &n);
    return c.out().Integer(static_cast<int64_t>(n));
  }
  const Scored out = Compute(spec, src);
  ReplyScored(c.out(), out, spec.withscores, true);
}

void Zunion(Ctx& c) { AlgebraRead(c, SetOp::kUnion, false, "zunion"); }
void Zinter(Ctx& c) { AlgebraRead(c, SetOp::kInter, false, "zinter"); }
void Zdiff(Ctx& c) { AlgebraRead(c, SetOp::kDiff, false, "zdiff"); }
void Zintercard(Ctx& c) { AlgebraRead(c, SetOp::kInter, true, "zintercard"); }

// ZUNIONSTORE / ZINTERSTORE / ZDIFFSTORE destination numkeys key ... [WEIGHTS ...] [AGGREGATE ...].
void AlgebraStore(Ctx& c, SetOp op, std::string_view name) {
  auto spec = std::make_shared<AlgebraSpec>();
  spec->op = op;
  std::string error;
  bool options_failed = false;
  if (!ParseAlgebra(c, 2, true, false, spec.get(), &error, name, &options_failed) && !options_failed) {
    return c.Fail(error);
  }
  auto res = std::make_shared<Result>();
  ServerState* server = &c.server();
  c.batch().Run([res, server, spec, db = c.db(), dst = std::string(c.arg(1)), option_error = error](store::Txn& txn) {
    // The keys' types first, then the options' error (Redis's order).
    for (const std::string& key : spec->keys) {
      store::ValueView v;
      if (txn.Get(db, key, &v).ok() && v.type != kZset && v.type != kSet) {
        res->error = std::string(err::kWrongType);
        return;
      }
    }
    if (!option_error.empty()) {
      res->error = option_error;
      return;
    }
    std::vector<Source> src(spec->keys.size());
    for (size_t i = 0; i < spec->keys.size(); ++i) {
      if (!TxnSource(txn, *server, db, spec->keys[i], &src[i], &res->error)) return;
      if (!src[i].exists) res->missing.push_back(spec->keys[i]);
    }
    StoreResult(txn, *server, db, dst, Compute(*spec, src), res.get());
  }, std::string(c.arg(1)));
  ThenStored(c, res, std::string(name));
}

void Zunionstore(Ctx& c) { AlgebraStore(c, SetOp::kUnion, "zunionstore"); }
void Zinterstore(Ctx& c) { AlgebraStore(c, SetOp::kInter, "zinterstore"); }
void Zdiffstore(Ctx& c) { AlgebraStore(c, SetOp::kDiff, "zdiffstore"); }

}  // namespace

// ---- Blocking pops' serving (blocking.h) --------------------------------------------------------

std::function<void(resp::ReplyBuffer&)> TryBlockedZpop(store::Txn& txn, ServerState& s,
                                                       const BlockedPop& w, const std::string* only,
                                                       std::function<void()>* events,
                                                       PropagatedCommand* prop, bool* other_type) {
  for (const std::string& key : w.keys) {
    if (only != nullptr && key != *only) continue;
    ZsetEdit z(txn, s, w.db, key);
    if (!z.Open()) {
      if (only != nullptr) {  // another type now: the client waits on
        if (other_type != nullptr) *other_type = true;
        return nullptr;
      }
      return [text = z.error()](resp::ReplyBuffer& out) { out.Error(text); };
    }
    if (!z.exists() || z.size() == 0) continue;
    Scored items = PopItems(z, w.left, w.kind == BlockedPop::Kind::kMpop ? w.count : 1);
    if (!z.error().empty()) return [text = z.error()](resp::ReplyBuffer& out) { out.Error(text); };
    z.Commit();
    if (events != nullptr) {
      *events = [server = &s, db = w.db, key, deleted = z.deleted(), min = w.left] {
        NotifyKeyspaceEvent(*server, db, kNotifyZset, min ? "zpopmin" : "zpopmax", key);
        if (deleted) NotifyKeyspaceEvent(*server, db, kNotifyGeneric, "del", key);
      };
    }
    s.watches.TouchKey(w.db, key);
    if (prop != nullptr) {
      prop->db = w.db;
      prop->resp.clear();
      const std::string_view name = w.left ? "ZPOPMIN" : "ZPOPMAX";
      if (w.kind == BlockedPop::Kind::kPop) {
        AppendCommand(&prop->resp, {name, key});
      } else {
        const std::string n = std::to_string(items.size());
        AppendCommand(&prop->resp, {name, key, n});
      }
    }
    if (w.kind == BlockedPop::Kind::kPop) {
      return [key, item = std::move(items[0])](resp::ReplyBuffer& out) {
        out.ArrayHeader(3);
        out.Bulk(key);
        out.Bulk(item.first);
        out.Double(item.second);
      };
    }
    return [key, items = std::move(items)](resp::ReplyBuffer& out) {
      out.ArrayHeader(2);
      out.Bulk(key);
      out.ArrayHeader(items.size());
      for (const auto& [m, sc] : items) {
        out.ArrayHeader(2);
        out.Bulk(m);
        out.Double(sc);
      }
    };
  }
  return nullptr;
}

void RegisterZsetCommands(std::vector<Command>* t) {
  const size_t first = t->size();
  constexpr uint32_t kW = kWrite;
  constexpr uint32_t kR = kReadOnly;
  t->push_back({"zadd", -4, kW | kFast, 1, 1, 1, Zadd, "@write @sortedset @fast"});
  t->push_back({"zincrby", 4, kW | kFast, 1, 1, 1, Zincrby, "@write @sortedset @fast"});
  t->push_back({"zrem", -3, kW | kFast, 1, 1, 1, Zrem, "@write @sortedset @fast"});
  t->push_back({"zremrangebyrank", 4, kW, 1, 1, 1, Zremrangebyrank, "@write @sortedset @slow"});
  t->push_back({"zremrangebyscore", 4, kW, 1, 1, 1, Zremrangebyscore, "@write @sortedset @slow"});
  t->push_back({"zremrangebylex", 4, kW, 1, 1, 1, Zremrangebylex, "@write @sortedset @slow"});
  t->push_back({"zpopmin", -2, kW | kFast, 1, 1, 1, Zpopmin, "@write @sortedset @fast"});
  t->push_back({"zpopmax", -2, kW | kFast, 1, 1, 1, Zpopmax, "@write @sortedset @fast"});
  t->push_back({"zmpop", -4, kW | kMovableKeys, 0, 0, 0, Zmpop, "@write @sortedset @slow"});
  t->push_back({"bzpopmin", -3, kW | kFast | kBlocking | kNoScript, 1, -2, 1, Bzpopmin, "@write @sortedset @fast @blocking"});
  t->push_back({"bzpopmax", -3, kW | kFast | kBlocking | kNoScript, 1, -2, 1, Bzpopmax, "@write @sortedset @fast @blocking"});
  t->push_back({"bzmpop", -5, kW | kBlocking | kMovableKeys, 0, 0, 0, Bzmpop, "@write @sortedset @slow @blocking"});
  t->push_back({"zrangestore", -5, kW | kWakes, 1, 2, 1, Zrangestore, "@write @sortedset @slow"});
  t->push_back({"zunionstore", -4, kW | kWakes | kMovableKeys, 1, 1, 1, Zunionstore, "@write @sortedset @slow"});
  t->push_back({"zinterstore", -4, kW | kWakes | kMovableKeys, 1, 1, 1, Zinterstore, "@write @sortedset @slow"});
  t->push_back({"zdiffstore", -4, kW | kWakes | kMovableKeys, 1, 1, 1, Zdiffstore, "@write @sortedset @slow"});
  t->push_back({"zcard", 2, kR | kFast, 1, 1, 1, Zcard, "@read @sortedset @fast"});
  t->push_back({"zscore", 3, kR | kFast, 1, 1, 1, Zscore, "@read @sortedset @fast"});
  t->push_back({"zmscore", -3, kR | kFast, 1, 1, 1, Zmscore, "@read @sortedset @fast"});
  t->push_back({"zrank", 3, kR | kFast, 1, 1, 1, Zrank, "@read @sortedset @fast"});
  t->push_back({"zrevrank", 3, kR | kFast, 1, 1, 1, Zrevrank, "@read @sortedset @fast"});
  t->push_back({"zcount", 4, kR | kFast, 1, 1, 1, Zcount, "@read @sortedset @fast"});
  t->push_back({"zlexcount", 4, kR | kFast, 1, 1, 1, Zlexcount, "@read @sortedset @fast"});
  t->push_back({"zrange", -4, kR, 1, 1, 1, Zrange, "@read @sortedset @slow"});
  t->push_back({"zrevrange", -4, kR, 1, 1, 1, Zrevrange, "@read @sortedset @slow"});
  t->push_back({"zrangebyscore", -4, kR, 1, 1, 1, Zrangebyscore, "@read @sortedset @slow"});
  t->push_back({"zrevrangebyscore", -4, kR, 1, 1, 1, Zrevrangebyscore, "@read @sortedset @slow"});
  t->push_back({"zrangebylex", -4, kR, 1, 1, 1, Zrangebylex, "@read @sortedset @slow"});
  t->push_back({"zrevrangebylex", -4, kR, 1, 1, 1, Zrevrangebylex, "@read @sortedset @slow"});
  t->push_back({"zrandmember", -2, kR, 1, 1, 1, Zrandmember, "@read @sortedset @slow"});
  t->push_back({"zscan", -3, kR, 1, 1, 1, Zscan, "@read @sortedset @slow"});
  t->push_back({"zunion", -3, kR | kMovableKeys, 0, 0, 0, Zunion, "@read @sortedset @slow"});
  t->push_back({"zinter", -3, kR | kMovableKeys, 0, 0, 0, Zinter, "@read @sortedset @slow"});
  t->push_back({"zdiff", -3, kR | kMovableKeys, 0, 0, 0, Zdiff, "@read @sortedset @slow"});
  t->push_back({"zintercard", -3, kR | kMovableKeys, 0, 0, 0, Zintercard, "@read @sortedset @slow"});
  // The elements each one reads of a large set by name (Command::first_member: fetched off the
  // event loop when cold, and all a transaction's copy needs of it); ZSCAN the slice at its cursor.
  // The commands reading by rank or score read the order, and read all of a copy in EXEC.
  const std::unordered_map<std::string_view, int> members = {
      {"zscore", 2}, {"zmscore", 2}, {"zrem", 2}, {"zincrby", 3}, {"zscan", kScanElements}};
  for (size_t i = first; i < t->size(); ++i) {
    Command& cmd = (*t)[i];
    cmd.value_type = kZset;
    if (auto it = members.find(cmd.name); it != members.end()) cmd.first_member = it->second;
  }
}

}  // namespace keg::server
