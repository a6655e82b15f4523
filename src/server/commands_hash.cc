// Hash commands (Redis 7.0's t_hash.c replies and errors). A hash is stored whole (one record, the
// encoding of server/small_collection.h): reads decode the record, writes are read-modify-write
// ops on the writer thread at the command's place in the batch. docs/types.md says where large
// hashes go next (one record per field).
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "resp/numbers.h"
#include "server/collection_commands.h"
#include "server/command.h"
#include "server/glob.h"
#include "server/notify.h"
#include "server/session.h"
#include "server/small_collection.h"
#include "server/state.h"
#include "store/format.h"

namespace keg::server {
namespace {

using store::OpResult;
using store::UpdateDecision;
using store::ValueView;
using Action = store::UpdateDecision::Action;

constexpr std::string_view kMalformed = kUndecodable;

// Whether `h` is past the listpack thresholds (then it reports hashtable from now on).
void NoteSize(ServerState& s, coll::Hash* h) {
  if ((h->flags & coll::kConverted) != 0) return;
  const auto max_entries = static_cast<size_t>(s.hash_max_entries.load(std::memory_order_relaxed));
  const auto max_value = static_cast<size_t>(s.hash_max_value.load(std::memory_order_relaxed));
  bool big = h->size() > max_entries;
  for (size_t i = 0; i < h->items.size() && !big; ++i) big = h->items[i].size() > max_value;
  if (big) h->flags |= coll::kConverted;
}

struct Result {
  int64_t number = 0;
  std::string error;
  std::string value;
  bool found = false;
  bool deleted = false;  // the hash became empty and went
};

// Queues the read-modify-write of the hash at `key` (created when absent): `change` edits it and
// returns false to leave it as it is (res->error set for an error reply). A hash left empty goes.
void UpdateHash(Ctx& c, std::shared_ptr<Result> res, std::function<bool(coll::Hash&, Result&)> change) {
  ServerState* server = &c.server();
  c.batch().Update(std::string(c.arg(1)), [res, server, change = std::move(change)](const ValueView* cur) {
    UpdateDecision d;
    coll::Hash h;
    if (cur != nullptr && !coll::DecodeHash(cur->value, &h)) {
      res->error = kMalformed;
      return d;
    }
    if (!change(h, *res)) return d;
    if (h.size() == 0) {
      res->deleted = true;
      if (cur != nullptr) d.action = Action::kDelete;
      return d;
    }
    NoteSize(*server, &h);
    d.action = Action::kPut;
    d.value = h.Encode();
    d.type = store::format::kTypeHash;
    d.keep_ttl = true;
    return d;
  });
}

// Replies res->error, or `reply`.
void ThenReply(Ctx& c, std::shared_ptr<Result> res, std::function<void(Result&, resp::ReplyBuffer&)> reply) {
  c.Then([res, reply = std::move(reply)](std::span<OpResult>, resp::ReplyBuffer& out) {
    if (!res->error.empty()) return out.Error(res->error);
    reply(*res, out);
  });
}

// HSET key field value [field value ...] / HMSET (replies OK).
void HsetWith(Ctx& c, bool hmset) {
  if (c.argc() % 2 != 0) return c.Fail(WrongArity(c.arg(0)));
  auto res = std::make_shared<Result>();
  std::vector<std::string> pairs(c.args().begin() + 2, c.args().end());
  ServerState* server = &c.server();
  // Views of the stored hash and of the arguments, one encoding written: no string per field.
  c.batch().Update(std::string(c.arg(1)), [res, server, pairs = std::move(pairs)](const ValueView* cur) {
    UpdateDecision d;
    coll::View v;
    if (cur != nullptr && (!coll::Decode(cur->value, &v) || v.elements.size() % 2 != 0)) {
      res->error = kMalformed;
      return d;
    }
    std::vector<std::string_view> out(v.elements.begin(), v.elements.end());
    std::unordered_map<std::string_view, size_t> index;  // field -> its slot in out (large hashes)
    const bool small = out.size() <= 32;
    if (!small) {
      for (size_t i = 0; i < out.size(); i += 2) index.emplace(out[i], i);
    }
    auto find = [&](std::string_view f) -> long {
      if (!small) {
        auto it = index.find(f);
        return it == index.end() ? -1 : static_cast<long>(it->second);
      }
      for (size_t i = 0; i < out.size(); i += 2) {
        if (out[i] == f) return static_cast<long>(i);
      }
      return -1;
    };
    for (size_t i = 0; i + 1 < pairs.size(); i += 2) {
      if (const long at = find(pairs[i]); at >= 0) {
        out[static_cast<size_t>(at) + 1] = pairs[i + 1];
        continue;
      }
      if (!small) index.emplace(pairs[i], out.size());
      out.push_back(pairs[i]);
      out.push_back(pairs[i + 1]);
      ++res->number;
    }
    uint8_t flags = v.flags;
    if ((flags & coll::kConverted) == 0) {  // past the listpack thresholds: hashtable for good
      const auto max_entries = static_cast<size_t>(server->hash_max_entries.load(std::memory_order_relaxed));
      const auto max_value = static_cast<size_t>(server->hash_max_value.load(std::memory_order_relaxed));
      bool big = out.size() / 2 > max_entries;
      for (size_t i = 0; i + 1 < pairs.size() && !big; i += 2) {
        big = pairs[i].size() > max_value || pairs[i + 1].size() > max_value;
      }
      if (big) flags |= coll::kConverted;
    }
    d.action = Action::kPut;
    d.value = coll::Encode(flags, out);
    d.type = store::format::kTypeHash;
    d.keep_ttl = true;
    return d;
  });
  c.Notify(kNotifyHash, "hset", c.arg(1));
  ThenReply(c, res, [hmset](Result& r, resp::ReplyBuffer& out) {
    if (hmset) return out.Ok();
    out.Integer(r.number);
  });
}
void Hset(Ctx& c) { HsetWith(c, false); }
void Hmset(Ctx& c) { HsetWith(c, true); }

void Hsetnx(Ctx& c) {
  auto res = std::make_shared<Result>();
  UpdateHash(c, res, [field = std::string(c.arg(2)), value = std::string(c.arg(3))](coll::Hash& h, Result& r) {
    if (h.Find(field) >= 0) return false;
    h.Set(field, value);
    r.number = 1;
    return true;
  });
  c.Notify(kNotifyHash, "hset", c.arg(1));
  ThenReply(c, res, [](Result& r, resp::ReplyBuffer& out) { out.Integer(r.number); });
}

void Hdel(Ctx& c) {
  auto res = std::make_shared<Result>();
  std::vector<std::string> fields(c.args().begin() + 2, c.args().end());
  UpdateHash(c, res, [fields = std::move(fields)](coll::Hash& h, Result& r) {
    if (h.size() == 0) return false;  // absent
    for (const std::string& f : fields) r.number += h.Remove(f) ? 1 : 0;
    return r.number > 0;
  });
  c.Then([res, server = &c.server(), db = c.db(), key = NotifyKey(c, kNotifyHash | kNotifyGeneric, c.arg(1))](
             std::span<OpResult> r, resp::ReplyBuffer& out) {
    if (!res->error.empty()) return out.Error(res->error);
    if (key && !r.empty() && r[0].applied) {
      NotifyKeyspaceEvent(*server, db, kNotifyHash, "hdel", *key);
      if (res->deleted) NotifyKeyspaceEvent(*server, db, kNotifyGeneric, "del", *key);
    }
    out.Integer(res->number);
  });
}

// HINCRBY / HINCRBYFLOAT.
void Hincrby(Ctx& c) {
  int64_t by = 0;
  if (!resp::ParseInt64(c.arg(3), &by)) return c.Fail(std::string(err::kNotInteger));
  auto res = std::make_shared<Result>();
  UpdateHash(c, res, [by, field = std::string(c.arg(2))](coll::Hash& h, Result& r) {
    int64_t v = 0;
    if (const long at = h.Find(field); at >= 0 && !resp::ParseInt64(h.items[static_cast<size_t>(at) * 2 + 1], &v)) {
      r.error = "hash value is not an integer";
      return false;
    }
    if ((by < 0 && v < 0 && by < INT64_MIN - v) || (by > 0 && v > 0 && by > INT64_MAX - v)) {
      r.error = err::kOverflow;
      return false;
    }
    r.number = v + by;
    h.Set(field, std::to_string(r.number));
    return true;
  });
  c.Notify(kNotifyHash, "hincrby", c.arg(1));
  ThenReply(c, res, [](Result& r, resp::ReplyBuffer& out) { out.Integer(r.number); });
}

void Hincrbyfloat(Ctx& c) {
  long double by = 0;
  if (!ParseLongDouble(c.arg(3), &by)) return c.Fail(std::string(err::kNotFloat));
  if (std::isnan(by) || std::isinf(by)) return c.Fail("value is NaN or Infinity");
  auto res = std::make_shared<Result>();
  UpdateHash(c, res, [by, field = std::string(c.arg(2))](coll::Hash& h, Result& r) {
    long double v = 0;
    if (const long at = h.Find(field); at >= 0 && !ParseLongDouble(h.items[static_cast<size_t>(at) * 2 + 1], &v)) {
      r.error = "hash value is not a float";
      return false;
    }
    v += by;
    if (std::isnan(v) || std::isinf(v)) {
      r.error = "increment would produce NaN or Infinity";
      return false;
    }
    r.value = FormatLongDouble(v);
    h.Set(field, r.value);
    return true;
  });
  c.Notify(kNotifyHash, "hincrbyfloat", c.arg(1));
  ThenReply(c, res, [](Result& r, resp::ReplyBuffer& out) { out.Bulk(r.value); });
}

// The value of `field` in a decoded hash, or null.
const std::string_view* Field(const coll::View& h, std::string_view field) {
  for (size_t i = 0; i + 1 < h.elements.size(); i += 2) {
    if (h.elements[i] == field) return &h.elements[i + 1];
  }
  return nullptr;
}

void Hget(Ctx& c) {
  coll::View h;
  ValueView v;
  if (!ReadWhole(c, c.arg(1), &h, &v, [&] { c.out().Null(); })) return;
  const std::string_view* f = Field(h, c.arg(2));
  if (f == nullptr) return c.out().Null();
  c.out().Bulk(*f);
}

void Hmget(Ctx& c) {
  coll::View h;
  ValueView v;
  const size_t n = c.argc() - 2;
  if (!ReadWhole(c, c.arg(1), &h, &v, [&] {
        c.out().ArrayHeader(n);
        for (size_t i = 0; i < n; ++i) c.out().Null();
      })) {
    return;
  }
  c.out().ArrayHeader(n);
  for (size_t i = 2; i < c.argc(); ++i) {
    const std::string_view* f = Field(h, c.arg(i));
    if (f == nullptr) {
      c.out().Null();
    } else {
      c.out().Bulk(*f);
    }
  }
}

void Hlen(Ctx& c) {
  coll::View h;
  ValueView v;
  if (!ReadWhole(c, c.arg(1), &h, &v, [&] { c.out().Integer(0); })) return;
  c.out().Integer(static_cast<int64_t>(h.elements.size() / 2));
}

void Hstrlen(Ctx& c) {
  coll::View h;
  ValueView v;
  if (!ReadWhole(c, c.arg(1), &h, &v, [&] { c.out().Integer(0); })) return;
  const std::string_view* f = Field(h, c.arg(2));
  c.out().Integer(f == nullptr ? 0 : static_cast<int64_t>(f->size()));
}

void Hexists(Ctx& c) {
  coll::View h;
  ValueView v;
  if (!ReadWhole(c, c.arg(1), &h, &v, [&] { c.out().Integer(0); })) return;
  c.out().Integer(Field(h, c.arg(2)) != nullptr ? 1 : 0);
}

// HKEYS / HVALS / HGETALL (a map in RESP3).
void Hgetall(Ctx& c) {
  const std::string name = ToLower(c.arg(0));
  const bool keys = name != "hvals";
  const bool values = name != "hkeys";
  const bool map = keys && values;
  coll::View h;
  ValueView v;
  if (!ReadWhole(c, c.arg(1), &h, &v, [&] {
        if (map) {
          c.out().MapHeader(0);
        } else {
          c.out().ArrayHeader(0);
        }
      })) {
    return;
  }
  const size_t n = h.elements.size() / 2;
  if (map) {
    c.out().MapHeader(n);
  } else {
    c.out().ArrayHeader(n);
  }
  for (size_t i = 0; i < n; ++i) {
    if (keys) c.out().Bulk(h.elements[2 * i]);
    if (values) c.out().Bulk(h.elements[2 * i + 1]);
  }
}

void Hrandfield(Ctx& c) { RandomMembers(c, 2); }

void Hscan(Ctx& c) { ScanWhole(c, 2); }

}  // namespace

void RegisterHashCommands(std::vector<Command>* t) {
  const size_t first = t->size();
  constexpr uint32_t kW = kWrite;
  constexpr uint32_t kR = kReadOnly;
  t->push_back({"hset", -4, kW | kFast, 1, 1, 1, Hset, "@write @hash @fast"});
  t->push_back({"hmset", -4, kW | kFast, 1, 1, 1, Hmset, "@write @hash @fast"});
  t->push_back({"hsetnx", 4, kW | kFast, 1, 1, 1, Hsetnx, "@write @hash @fast"});
  t->push_back({"hdel", -3, kW | kFast, 1, 1, 1, Hdel, "@write @hash @fast"});
  t->push_back({"hincrby", 4, kW | kFast, 1, 1, 1, Hincrby, "@write @hash @fast"});
  t->push_back({"hincrbyfloat", 4, kW | kFast, 1, 1, 1, Hincrbyfloat, "@write @hash @fast"});
  t->push_back({"hget", 3, kR | kFast, 1, 1, 1, Hget, "@read @hash @fast"});
  t->push_back({"hmget", -3, kR | kFast, 1, 1, 1, Hmget, "@read @hash @fast"});
  t->push_back({"hlen", 2, kR | kFast, 1, 1, 1, Hlen, "@read @hash @fast"});
  t->push_back({"hstrlen", 3, kR | kFast, 1, 1, 1, Hstrlen, "@read @hash @fast"});
  t->push_back({"hexists", 3, kR | kFast, 1, 1, 1, Hexists, "@read @hash @fast"});
  t->push_back({"hkeys", 2, kR, 1, 1, 1, Hgetall, "@read @hash @slow"});
  t->push_back({"hvals", 2, kR, 1, 1, 1, Hgetall, "@read @hash @slow"});
  t->push_back({"hgetall", 2, kR, 1, 1, 1, Hgetall, "@read @hash @slow"});
  t->push_back({"hrandfield", -2, kR, 1, 1, 1, Hrandfield, "@read @hash @slow"});
  t->push_back({"hscan", -3, kR, 1, 1, 1, Hscan, "@read @hash @slow"});
  for (size_t i = first; i < t->size(); ++i) (*t)[i].value_type = store::format::kTypeHash;
}

}  // namespace keg::server
