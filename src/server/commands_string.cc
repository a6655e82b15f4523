// String commands: GET, SET and friends, counters, ranges, MGET / MSET.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <vector>

#include "resp/numbers.h"
#include "server/command.h"
#include "server/expiry.h"
#include "server/notify.h"
#include "server/session.h"
#include "server/state.h"

namespace keg::server {
// Redis's string2ld: the whole string, no spaces, no NaN.
bool ParseLongDouble(std::string_view s, long double* out) {
  if (s.empty() || s.size() > 5120) return false;
  if (std::isspace(static_cast<unsigned char>(s[0]))) return false;
  std::string buf(s);
  char* end = nullptr;
  errno = 0;
  const long double v = std::strtold(buf.c_str(), &end);
  if (end != buf.c_str() + buf.size() || std::isnan(v) || (errno == ERANGE && std::isinf(v))) return false;
  *out = v;
  return true;
}

// Redis's ld2string(LD_STR_HUMAN): %.17Lf without trailing zeros.
std::string FormatLongDouble(long double v) {
  char buf[5120];
  int n = std::snprintf(buf, sizeof(buf), "%.17Lf", v);
  std::string s(buf, static_cast<size_t>(n));
  if (s.find('.') != std::string::npos) {
    while (!s.empty() && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
  }
  if (s == "-0") s = "0";
  return s;
}

namespace {

using store::OpResult;
using store::UpdateDecision;
using store::ValueView;
using Action = store::UpdateDecision::Action;

int64_t MaxBulk(Ctx& c) { return c.server().proto_max_bulk_len.load(std::memory_order_relaxed); }

// GET replies with a view into the mapped file: large values go out without a copy.
void BulkView(resp::ReplyBuffer& out, const ValueView& v) { out.Bulk(v.value, v.pin); }

// The previous value an op asked for (want_old), or nil.
void BulkOrNull(resp::ReplyBuffer& out, const std::optional<ValueView>& v) {
  if (v) {
    BulkView(out, *v);
  } else {
    out.Null();
  }
}

void Get(Ctx& c) {
  ValueView v;
  if (c.Lookup(c.arg(1), &v)) {
    BulkView(c.out(), v);
  } else if (c.read_failed()) {
    c.ReplyReadError();
  } else {
    c.out().Null();
  }
}

void Strlen(Ctx& c) {
  ValueView v;
  const bool found = c.Lookup(c.arg(1), &v);
  if (c.read_failed()) return c.ReplyReadError();
  c.out().Integer(found ? static_cast<int64_t>(v.value.size()) : 0);
}

void Getrange(Ctx& c) {
  int64_t start = 0;
  int64_t end = 0;
  if (!resp::ParseInt64(c.arg(2), &start) || !resp::ParseInt64(c.arg(3), &end)) {
    c.Error(err::kNotInteger);
    return;
  }
  ValueView v;
  if (!c.Lookup(c.arg(1), &v)) {
    if (c.read_failed()) return c.ReplyReadError();
    c.out().Bulk("");
    return;
  }
  const int64_t len = static_cast<int64_t>(v.value.size());
  if (start < 0 && end < 0 && start > end) {
    c.out().Bulk("");
    return;
  }
  if (start < 0) start = len + start;
  if (end < 0) end = len + end;
  if (start < 0) start = 0;
  if (end < 0) end = 0;
  if (end >= len) end = len - 1;
  if (start > end || len == 0) {
    c.out().Bulk("");
    return;
  }
  c.out().Bulk(v.value.substr(static_cast<size_t>(start), static_cast<size_t>(end - start + 1)), v.pin);
}

void Mget(Ctx& c) {
  // Every key first, together (all of a batch's writes or none), and a corrupt one fails the whole
  // reply before any of it is written.
  std::vector<ValueView> values;
  std::vector<bool> found;
  c.LookupTogether(c.args().subspan(1), &values, &found);
  if (c.read_failed()) return c.ReplyReadError();
  c.out().ArrayHeader(c.argc() - 1);
  for (size_t i = 0; i < values.size(); ++i) {
    if (found[i] && values[i].type == 0) {  // a key of another type reads as nil (Redis's MGET)
      BulkView(c.out(), values[i]);
    } else {
      c.out().Null();
    }
  }
}

// SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]
void Set(Ctx& c) {
  store::PutCondition cond = store::PutCondition::kAlways;
  bool get = false;
  bool keep_ttl = false;
  Expiry expiry;
  // Redis's parseExtendedStringArgumentsOrReply: an option may repeat (the last expiry wins), but
  // NX/XX, and KEEPTTL or one expiry unit against another, conflict.
  for (size_t i = 3; i < c.argc(); ++i) {
    const std::string opt = ToLower(c.arg(i));
    const bool has_next = i + 1 < c.argc();
    const bool is_expiry = opt == "ex" || opt == "px" || opt == "exat" || opt == "pxat";
    if (opt == "nx" && cond != store::PutCondition::kIfPresent) {
      cond = store::PutCondition::kIfAbsent;
    } else if (opt == "xx" && cond != store::PutCondition::kIfAbsent) {
      cond = store::PutCondition::kIfPresent;
    } else if (opt == "get") {
      get = true;
    } else if (opt == "keepttl" && !expiry.set) {
      keep_ttl = true;
    } else if (is_expiry && !keep_ttl && (!expiry.set || expiry.unit == opt) && has_next) {
      expiry.set = true;
      expiry.unit = opt;
      expiry.text = c.arg(++i);
    } else {
      c.Fail(std::string(err::kSyntax));
      return;
    }
  }
  int64_t at = 0;
  if (expiry.set) {
    std::string error;
    if (!expiry.Resolve("set", &at, &error)) {
      c.Fail(error);
      return;
    }
  }
  c.batch().Put(std::string(c.arg(1)), std::string(c.arg(2)), at, cond, keep_ttl, get);
  if (c.propagating() && (at != 0 || cond != store::PutCondition::kAlways || get)) {
    // What it did, deterministically: the expiry as an absolute time (Redis's PXAT rewrite); the
    // condition held (it is propagated only when applied).
    const std::string at_text = std::to_string(at);
    if (at != 0) {
      c.PropagateAs({"SET", c.arg(1), c.arg(2), "PXAT", at_text});
    } else if (keep_ttl) {
      c.PropagateAs({"SET", c.arg(1), c.arg(2), "KEEPTTL"});
    } else {
      c.PropagateAs({"SET", c.arg(1), c.arg(2)});
    }
  }
  if (get) c.Notify(kNotifyKeyMiss, "keymiss", c.arg(1));
  NotifyStringWrite(c, c.arg(1), "set", at != 0);
  c.Then([get](std::span<OpResult> r, resp::ReplyBuffer& out) {
    if (get) {
      BulkOrNull(out, r[0].old);
    } else if (r[0].applied) {
      out.Ok();
    } else {
      out.Null();
    }
  });
}

void Setnx(Ctx& c) {
  c.batch().Put(std::string(c.arg(1)), std::string(c.arg(2)), 0, store::PutCondition::kIfAbsent);
  NotifyStringWrite(c, c.arg(1), "set", false);
  c.Then([](std::span<OpResult> r, resp::ReplyBuffer& out) { out.Integer(r[0].applied ? 1 : 0); });
}

void SetexWith(Ctx& c, const char* unit, const char* name) {
  Expiry e{true, unit, c.arg(2)};
  int64_t at = 0;
  std::string error;
  if (!e.Resolve(name, &at, &error)) {
    c.Fail(error);
    return;
  }
  c.batch().Put(std::string(c.arg(1)), std::string(c.arg(3)), at);
  if (c.propagating()) {
    const std::string at_text = std::to_string(at);
    c.PropagateAs({"SET", c.arg(1), c.arg(3), "PXAT", at_text});
  }
  NotifyStringWrite(c, c.arg(1), "set", true);
  c.Then([](std::span<OpResult>, resp::ReplyBuffer& out) { out.Ok(); });
}
void Setex(Ctx& c) { SetexWith(c, "ex", "setex"); }
void Psetex(Ctx& c) { SetexWith(c, "px", "psetex"); }

void Getset(Ctx& c) {
  c.batch().Put(std::string(c.arg(1)), std::string(c.arg(2)), 0, store::PutCondition::kAlways,
                false, true);
  if (c.propagating()) c.PropagateAs({"SET", c.arg(1), c.arg(2)});  // as Redis 7 (its GETSET rewrite)
  c.Notify(kNotifyKeyMiss, "keymiss", c.arg(1));
  NotifyStringWrite(c, c.arg(1), "set", false);
  c.Then([](std::span<OpResult> r, resp::ReplyBuffer& out) { BulkOrNull(out, r[0].old); });
}

void Getdel(Ctx& c) {
  c.batch().Delete(std::string(c.arg(1)), true);
  c.PropagateAs({"DEL", c.arg(1)});  // as Redis: replicas and the stream see a DEL
  c.Notify(kNotifyKeyMiss, "keymiss", c.arg(1));
  c.Notify(kNotifyGeneric, "del", c.arg(1));
  c.Then([](std::span<OpResult> r, resp::ReplyBuffer& out) { BulkOrNull(out, r[0].old); });
}

// The value an Update saw, copied out of the writer thread for the reply.
struct Captured {
  bool found = false;
  std::string value;
  std::string error;
  int64_t number = 0;
  int64_t by = 0;  ///< INCRBY's increment (in the Captured, not the closure: see IncrBy)
  std::string_view event;  ///< GETEX: the keyspace event of what it did (a literal)
};

// Replies with the Update's error, or else its number (INCR family, APPEND, SETRANGE) or its value
// (INCRBYFLOAT), once the batch is durable.
void ThenNumberOrError(Ctx& c, std::shared_ptr<Captured> cap) {
  c.Then([cap](std::span<OpResult>, resp::ReplyBuffer& out) {
    if (!cap->error.empty()) {
      out.Error(cap->error);
    } else {
      out.Integer(cap->number);
    }
  });
}

void ThenValueOrError(Ctx& c, std::shared_ptr<Captured> cap) {
  c.Then([cap](std::span<OpResult>, resp::ReplyBuffer& out) {
    if (!cap->error.empty()) {
      out.Error(cap->error);
    } else {
      out.Bulk(cap->value);
    }
  });
}

// GETEX key [EX s|PX ms|EXAT s|PXAT ms|PERSIST]
void Getex(Ctx& c) {
  Expiry expiry;
  bool persist = false;
  for (size_t i = 2; i < c.argc(); ++i) {
    const std::string opt = ToLower(c.arg(i));
    if ((opt == "ex" || opt == "px" || opt == "exat" || opt == "pxat") &&
        (!expiry.set || expiry.unit == opt) && !persist && i + 1 < c.argc()) {
      expiry = Expiry{true, opt, c.arg(++i)};
    } else if (opt == "persist" && !expiry.set) {
      persist = true;
    } else {
      c.Fail(std::string(err::kSyntax));
      return;
    }
  }
  int64_t at = 0;
  auto cap = std::make_shared<Captured>();
  // A bad time is refused once the key is found a string, as Redis checks it after the lookup:
  // a missing key gets nil and one of another type WRONGTYPE, whatever the time.
  if (expiry.set) expiry.Resolve("getex", &at, &cap->error);
  const bool change = expiry.set || persist;
  c.batch().Update(std::string(c.arg(1)), [cap, change, persist, at](const ValueView* cur) {
    UpdateDecision d;
    if (cur == nullptr) {
      cap->error.clear();
      return d;
    }
    if (!cap->error.empty()) return d;
    cap->found = true;
    cap->value.assign(cur->value);
    if (!change || (persist && cur->expire_at_ms == 0)) return d;
    if (!persist && at <= store::NowMs()) {  // an expiry in the past deletes the key, as Redis
      d.action = Action::kDelete;
      cap->event = "del";
      return d;
    }
    d.action = Action::kPut;
    d.value = cap->value;
    d.expire_at_ms = persist ? 0 : at;
    cap->event = persist ? "persist" : "expire";
    return d;
  });
  if (c.propagating()) {
    // What it did to the expiry: PEXPIREAT (absolute), PERSIST, or DEL when the time had passed.
    c.PropagateLate([cap, at, db = c.db(), key = std::string(c.arg(1))](std::span<const OpResult>,
                                                                        std::vector<PropagatedCommand>* out) {
      PropagatedCommand p{db, {}};
      const std::string at_text = std::to_string(at);
      if (cap->event == "del") {
        AppendCommand(&p.resp, {"DEL", key});
      } else if (cap->event == "persist") {
        AppendCommand(&p.resp, {"PERSIST", key});
      } else {
        AppendCommand(&p.resp, {"PEXPIREAT", key, at_text});
      }
      out->push_back(std::move(p));
    });
  }
  c.Notify(kNotifyKeyMiss, "keymiss", c.arg(1));
  c.Then([cap, server = &c.server(), db = c.db(), key = NotifyKey(c, kNotifyGeneric, c.arg(1))](std::span<OpResult> r,
                                                                                  resp::ReplyBuffer& out) {
    if (key && !r.empty() && r[0].applied) NotifyKeyspaceEvent(*server, db, kNotifyGeneric, cap->event, *key);
    if (!cap->error.empty()) {
      out.Error(cap->error);
    } else if (cap->found) {
      out.Bulk(cap->value);
    } else {
      out.Null();
    }
  });
}

void IncrBy(Ctx& c, int64_t by) {
  auto cap = std::make_shared<Captured>();
  cap->by = by;
  // The finisher below owns `cap`; the op's function holds a plain pointer, which std::function
  // keeps without an allocation (a shared_ptr capture costs one): a command's finisher lives (in
  // the connection's InFlight, or a script's DirectRun) until after its ops have run.
  Captured* raw = cap.get();
  c.batch().Update(std::string(c.arg(1)), [raw](const ValueView* cur) {
    UpdateDecision d;
    const int64_t step = raw->by;
    int64_t v = 0;
    if (cur != nullptr && !resp::ParseInt64(cur->value, &v)) {
      raw->error = err::kNotInteger;
      return d;
    }
    if ((step < 0 && v < 0 && step < INT64_MIN - v) || (step > 0 && v > 0 && step > INT64_MAX - v)) {
      raw->error = err::kOverflow;
      return d;
    }
    raw->number = v + step;
    d.action = Action::kPut;
    d.value = std::to_string(raw->number);
    d.keep_ttl = true;
    return d;
  });
  NotifyStringWrite(c, c.arg(1), "incrby");
  ThenNumberOrError(c, cap);
}

void Incr(Ctx& c) { IncrBy(c, 1); }
void Decr(Ctx& c) { IncrBy(c, -1); }
void Incrby(Ctx& c) {
  int64_t by = 0;
  if (!resp::ParseInt64(c.arg(2), &by)) return c.Fail(std::string(err::kNotInteger));
  IncrBy(c, by);
}
void Decrby(Ctx& c) {
  int64_t by = 0;
  if (!resp::ParseInt64(c.arg(2), &by)) return c.Fail(std::string(err::kNotInteger));
  if (by == INT64_MIN) return c.Fail("decrement would overflow");
  IncrBy(c, -by);
}

// Redis's order of checks: the key's type (the store's, before this runs), its value, then the
// increment.
void Incrbyfloat(Ctx& c) {
  long double by = 0;
  const bool by_ok = ParseLongDouble(c.arg(2), &by);
  auto cap = std::make_shared<Captured>();
  c.batch().Update(std::string(c.arg(1)), [cap, by, by_ok](const ValueView* cur) {
    UpdateDecision d;
    long double v = 0;
    if ((cur != nullptr && !ParseLongDouble(cur->value, &v)) || !by_ok) {
      cap->error = err::kNotFloat;
      return d;
    }
    v += by;
    if (std::isnan(v) || std::isinf(v)) {
      cap->error = "increment would produce NaN or Infinity";
      return d;
    }
    cap->value = FormatLongDouble(v);
    d.action = Action::kPut;
    d.value = cap->value;
    d.keep_ttl = true;
    return d;
  });
  if (c.propagating()) {
    // Its result, as Redis propagates INCRBYFLOAT (the same value on every replica, whatever
    // its floating point): SET key value KEEPTTL.
    c.PropagateLate([cap, db = c.db(), key = std::string(c.arg(1))](std::span<const OpResult>,
                                                                    std::vector<PropagatedCommand>* out) {
      PropagatedCommand p{db, {}};
      AppendCommand(&p.resp, {"SET", key, cap->value, "KEEPTTL"});
      out->push_back(std::move(p));
    });
  }
  NotifyStringWrite(c, c.arg(1), "incrbyfloat");
  ThenValueOrError(c, cap);
}

void Append(Ctx& c) {
  auto cap = std::make_shared<Captured>();
  const int64_t max = MaxBulk(c);
  c.batch().Update(std::string(c.arg(1)), [cap, max, tail = std::string(c.arg(2))](const ValueView* cur) {
    UpdateDecision d;
    const size_t old = cur != nullptr ? cur->value.size() : 0;
    if (static_cast<int64_t>(old + tail.size()) > max) {
      cap->error = err::kTooBig;
      return d;
    }
    d.action = Action::kPut;
    d.value.reserve(old + tail.size());
    if (cur != nullptr) d.value.assign(cur->value);
    d.value += tail;
    d.keep_ttl = true;
    cap->number = static_cast<int64_t>(d.value.size());
    return d;
  });
  NotifyStringWrite(c, c.arg(1), "append");
  ThenNumberOrError(c, cap);
}

void Setrange(Ctx& c) {
  int64_t offset = 0;
  if (!resp::ParseInt64(c.arg(2), &offset)) return c.Fail(std::string(err::kNotInteger));
  if (offset < 0) return c.Fail("offset is out of range");
  const int64_t max = MaxBulk(c);
  auto cap = std::make_shared<Captured>();
  c.batch().Update(std::string(c.arg(1)), [cap, max, offset, patch = std::string(c.arg(3))](
                                              const ValueView* cur) {
    UpdateDecision d;
    const size_t old = cur != nullptr ? cur->value.size() : 0;
    if (patch.empty()) {  // nothing to write: the length (0 when absent; no key is created)
      cap->number = static_cast<int64_t>(old);
      return d;
    }
    // offset <= max - size, never offset + size: a client's offset near INT64_MAX must not wrap.
    if (static_cast<int64_t>(patch.size()) > max || offset > max - static_cast<int64_t>(patch.size())) {
      cap->error = err::kTooBig;
      return d;
    }
    const size_t off = static_cast<size_t>(offset);
    d.action = Action::kPut;
    if (cur != nullptr) d.value.assign(cur->value);
    if (d.value.size() < off + patch.size()) d.value.resize(off + patch.size(), '\0');
    d.value.replace(off, patch.size(), patch);
    d.keep_ttl = true;
    cap->number = static_cast<int64_t>(d.value.size());
    return d;
  });
  NotifyStringWrite(c, c.arg(1), "setrange");
  ThenNumberOrError(c, cap);
}

void Mset(Ctx& c) {
  if (c.argc() % 2 == 0) return c.Fail(WrongArity(c.arg(0)));
  for (size_t i = 1; i < c.argc(); i += 2) {
    c.batch().Put(std::string(c.arg(i)), std::string(c.arg(i + 1)));
    NotifyStringWrite(c, c.arg(i), "set", false);
  }
  c.Then([](std::span<OpResult>, resp::ReplyBuffer& out) { out.Ok(); });
}

// All or nothing: the first pass notes whether any key exists, the second writes only if none.
void Msetnx(Ctx& c) {
  if (c.argc() % 2 == 0) return c.Fail(WrongArity(c.arg(0)));
  auto any = std::make_shared<bool>(false);
  for (size_t i = 1; i < c.argc(); i += 2) {
    c.batch().Update(std::string(c.arg(i)), [any](const ValueView* cur) {
      if (cur != nullptr) *any = true;
      return UpdateDecision{};
    });
  }
  for (size_t i = 1; i < c.argc(); i += 2) {
    c.batch().Update(std::string(c.arg(i)), [any, v = std::string(c.arg(i + 1))](const ValueView*) {
      UpdateDecision d;
      if (*any) return d;
      d.action = Action::kPut;
      d.value = v;
      return d;
    });
    NotifyStringWrite(c, c.arg(i), "set", false);
  }
  c.Then([any](std::span<OpResult>, resp::ReplyBuffer& out) { out.Integer(*any ? 0 : 1); });
}


// LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN]: Redis 7.0's dynamic programming table
// (its size bounded by proto-max-bulk-len, as Redis), its reply shapes and its range order.
void Lcs(Ctx& c) {
  std::vector<ValueView> views;
  std::vector<bool> found;
  c.LookupTogether(c.args().subspan(1, 2), &views, &found);
  if (c.read_failed()) return c.ReplyReadError();
  if ((found[0] && views[0].type != 0) || (found[1] && views[1].type != 0)) {
    return c.Error("The specified keys must contain string values");
  }
  const std::string_view a = found[0] ? views[0].value : std::string_view();
  const std::string_view b = found[1] ? views[1].value : std::string_view();
  bool getlen = false;
  bool getidx = false;
  bool withmatchlen = false;
  int64_t minmatchlen = 0;
  for (size_t j = 3; j < c.argc(); ++j) {
    const std::string opt = ToLower(c.arg(j));
    if (opt == "idx") {
      getidx = true;
    } else if (opt == "len") {
      getlen = true;
    } else if (opt == "withmatchlen") {
      withmatchlen = true;
    } else if (opt == "minmatchlen" && j + 1 < c.argc()) {
      if (!resp::ParseInt64(c.arg(++j), &minmatchlen)) return c.Error(err::kNotInteger);
      minmatchlen = std::max<int64_t>(minmatchlen, 0);
    } else {
      return c.Error(err::kSyntax);
    }
  }
  if (getlen && getidx) return c.Error("If you want both the length and indexes, please just use IDX.");
  if (a.size() >= UINT32_MAX - 1 || b.size() >= UINT32_MAX - 1) return c.Error("String too long for LCS");
  const auto alen = static_cast<uint32_t>(a.size());
  const auto blen = static_cast<uint32_t>(b.size());
  // Both below 2^32: the product fits in 64 bits; compared with the limit before allocating.
  const uint64_t cells = (uint64_t{alen} + 1) * (uint64_t{blen} + 1);
  if (cells * sizeof(uint32_t) > static_cast<uint64_t>(MaxBulk(c))) {
    return c.Error("Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len");
  }
  std::vector<uint32_t> table(static_cast<size_t>(cells), 0);
  auto at = [&](uint32_t i, uint32_t j) -> uint32_t& {
    return table[static_cast<size_t>(j) + static_cast<size_t>(i) * (blen + 1)];
  };
  for (uint32_t i = 1; i <= alen; ++i) {
    for (uint32_t j = 1; j <= blen; ++j) {
      at(i, j) = a[i - 1] == b[j - 1] ? at(i - 1, j - 1) + 1 : std::max(at(i - 1, j), at(i, j - 1));
    }
  }
  const uint32_t total = at(alen, blen);
  if (getlen) return c.out().Integer(total);
  // Walk back from the end, collecting the string and the matching ranges (last ones first).
  struct Range {
    uint32_t a_start, a_end, b_start, b_end;
  };
  std::vector<Range> ranges;
  std::string result(total, '\0');
  uint32_t idx = total;
  uint32_t a_start = alen;  // alen: no range open
  uint32_t a_end = 0;
  uint32_t b_start = 0;
  uint32_t b_end = 0;
  uint32_t i = alen;
  uint32_t j = blen;
  while (i > 0 && j > 0) {
    bool emit = false;
    if (a[i - 1] == b[j - 1]) {
      result[idx - 1] = a[i - 1];
      if (a_start == alen) {
        a_start = a_end = i - 1;
        b_start = b_end = j - 1;
      } else if (a_start == i && b_start == j) {
        --a_start;
        --b_start;
      } else {
        emit = true;
      }
      if (a_start == 0 || b_start == 0) emit = true;
      --idx;
      --i;
      --j;
    } else {
      if (at(i - 1, j) > at(i, j - 1)) {
        --i;
      } else {
        --j;
      }
      if (a_start != alen) emit = true;
    }
    if (emit) {
      const uint32_t len = a_end - a_start + 1;
      if (minmatchlen == 0 || len >= minmatchlen) ranges.push_back({a_start, a_end, b_start, b_end});
      a_start = alen;
    }
  }
  if (!getidx) return c.out().Bulk(result);
  resp::ReplyBuffer& out = c.out();
  out.MapHeader(2);
  out.Bulk("matches");
  out.ArrayHeader(ranges.size());
  for (const Range& r : ranges) {
    out.ArrayHeader(withmatchlen ? 3 : 2);
    out.ArrayHeader(2);
    out.Integer(r.a_start);
    out.Integer(r.a_end);
    out.ArrayHeader(2);
    out.Integer(r.b_start);
    out.Integer(r.b_end);
    if (withmatchlen) out.Integer(r.a_end - r.a_start + 1);
  }
  out.Bulk("len");
  out.Integer(total);
}

}  // namespace

void RegisterStringCommands(std::vector<Command>* t) {
  const size_t first = t->size();
  constexpr uint32_t kW = kWrite;
  constexpr uint32_t kR = kReadOnly;
  t->push_back({"get", 2, kR | kFast, 1, 1, 1, Get, "@read @string @fast"});
  t->push_back({"strlen", 2, kR | kFast, 1, 1, 1, Strlen, "@read @string @fast"});
  t->push_back({"getrange", 4, kR, 1, 1, 1, Getrange, "@read @string @slow"});
  t->push_back({"substr", 4, kR, 1, 1, 1, Getrange, "@read @string @slow"});
  t->push_back({"mget", -2, kR | kFast, 1, -1, 1, Mget, "@read @string @fast"});
  t->push_back({"set", -3, kW, 1, 1, 1, Set, "@write @string @slow"});
  t->push_back({"setnx", 3, kW | kFast, 1, 1, 1, Setnx, "@write @string @fast"});
  t->push_back({"setex", 4, kW, 1, 1, 1, Setex, "@write @string @slow"});
  t->push_back({"psetex", 4, kW, 1, 1, 1, Psetex, "@write @string @slow"});
  t->push_back({"getset", 3, kW | kFast, 1, 1, 1, Getset, "@write @string @fast"});
  t->push_back({"getdel", 2, kW | kFast, 1, 1, 1, Getdel, "@write @string @fast"});
  t->push_back({"getex", -2, kW | kFast, 1, 1, 1, Getex, "@write @string @fast"});
  t->push_back({"incr", 2, kW | kFast, 1, 1, 1, Incr, "@write @string @fast"});
  t->push_back({"decr", 2, kW | kFast, 1, 1, 1, Decr, "@write @string @fast"});
  t->push_back({"incrby", 3, kW | kFast, 1, 1, 1, Incrby, "@write @string @fast"});
  t->push_back({"decrby", 3, kW | kFast, 1, 1, 1, Decrby, "@write @string @fast"});
  t->push_back({"incrbyfloat", 3, kW | kFast, 1, 1, 1, Incrbyfloat, "@write @string @fast"});
  t->push_back({"append", 3, kW | kFast, 1, 1, 1, Append, "@write @string @fast"});
  t->push_back({"setrange", 4, kW, 1, 1, 1, Setrange, "@write @string @slow"});
  t->push_back({"mset", -3, kW, 1, -1, 2, Mset, "@write @string @slow"});
  t->push_back({"msetnx", -3, kW, 1, -1, 2, Msetnx, "@write @string @slow"});
  t->push_back({"lcs", -3, kR, 1, 2, 1, Lcs, "@read @string @slow"});
  // Every one of them works on string values: another type is WRONGTYPE. But MSETNX only asks
  // whether its keys exist (Redis: 0 for a key of any type), and MGET (nil) and LCS (its own
  // error) answer for a key of another type themselves.
  for (size_t i = first; i < t->size(); ++i) {
    const std::string_view n = (*t)[i].name;
    if (n != "msetnx" && n != "mget" && n != "lcs") (*t)[i].value_type = 0;  // format::kTypeString
  }
}

}  // namespace keg::server
