// Hash commands (Redis 7.0's t_hash.c replies and errors). A hash is stored whole (one record, the
// encoding of server/small_collection.h) while small, per field past the thresholds
// (docs/types.md); server/collection.h hides which. Reads run on the I/O thread; writes are kRun
// ops on the writer at the command's place in the batch.
#include <cmath>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "resp/numbers.h"
#include "server/collection.h"
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

struct Result {
  int64_t number = 0;
  std::string error;
  std::string value;
  bool found = false;
  bool deleted = false;  // the hash became empty and went
};

// Queues the change of the hash at the command's key (created when absent); a hash left empty goes.
void UpdateHash(Ctx& c, std::shared_ptr<Result> res, std::function<bool(CollectionEdit&, Result&)> change) {
  UpdateCollection<Result>(c, store::format::kTypeHash, std::move(res), std::move(change));
}

// Replies res->error, or `reply`.
void ThenReply(Ctx& c, std::shared_ptr<Result> res, std::function<void(Result&, resp::ReplyBuffer&)> reply) {
  c.Then([res, reply = std::move(reply)](std::span<OpResult>, resp::ReplyBuffer& out) {
    if (!res->error.empty()) return out.Error(res->error);
    reply(*res, out);
  });
}

// HSET of a hash stored whole (or absent), from views of the stored encoding and of the
// arguments: one encoding written, no string per field. False when the result must be stored per
// element (the caller then goes through CollectionEdit); else *value is the encoding to store, or
// res->error says why nothing is.
bool HsetWhole(ServerState& server, const store::ValueView* cur, const ArgCopy& pairs, Result* res,
               std::string* value) {
  // The writer's scratch: the decoded hash, changed in place (a pipelined HSET allocates no
  // vector of its own); emptied after, and its memory let go when a big hash grew it.
  static thread_local coll::View v;
  struct Release {
    ~Release() {
      v.elements.clear();
      if (v.elements.capacity() > 1024) v.elements.shrink_to_fit();
    }
  } release;
  v.flags = 0;
  if (cur != nullptr && (!coll::Decode(cur->value, &v) || v.elements.size() % 2 != 0)) {
    res->error = kMalformed;
    return true;
  }
  std::vector<std::string_view>& out = v.elements;
  std::unordered_map<std::string_view, size_t> index;  // field -> its slot in out (large hashes)
  // Searched while the hash and the fields set are few, else indexed (searching made HSET of
  // 100,000 new fields take 8 s on the writer).
  const bool small = out.size() + pairs.size() <= 32;
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
  int64_t added = 0;
  size_t bytes = 0;
  for (size_t i = 0; i + 1 < pairs.size(); i += 2) {
    if (const long at = find(pairs[i]); at >= 0) {
      out[static_cast<size_t>(at) + 1] = pairs[i + 1];
      continue;
    }
    if (!small) index.emplace(pairs[i], out.size());
    out.push_back(pairs[i]);
    out.push_back(pairs[i + 1]);
    ++added;
  }
  for (std::string_view e : out) bytes += e.size() + 2;
  if (StoredPerElement(server, store::format::kTypeHash, out.size() / 2, bytes, false)) return false;
  res->number = added;
  uint8_t flags = v.flags;
  if ((flags & coll::kConverted) == 0) {  // past the listpack thresholds: hashtable for good
    const auto max_entries = static_cast<size_t>(server.hash_max_entries.load(std::memory_order_relaxed));
    const auto max_value = static_cast<size_t>(server.hash_max_value.load(std::memory_order_relaxed));
    bool big = out.size() / 2 > max_entries;
    for (size_t i = 0; i + 1 < pairs.size() && !big; i += 2) {
      big = pairs[i].size() > max_value || pairs[i + 1].size() > max_value;
    }
    if (big) flags |= coll::kConverted;
  }
  *value = coll::Encode(flags, out);
  return true;
}

// An HSET's state, shared by its functions on the writer and its finisher: one allocation, and
// the closures hold only this pointer (store::InlineFunction keeps them without allocating).
struct HsetJob {
  HsetJob(ServerState* s, uint32_t d, std::string_view k, std::span<const std::string_view> p, bool m)
      : server(s), db(d), key(k), pairs(p), hmset(m) {}
  // The common case, a hash stored whole (or none): the store's read-modify-write of one record.
  UpdateDecision Update(const ValueView* cur);
  // The rest (a hash stored per element, or one that grows past the thresholds), through a Txn.
  void Run(store::Txn& txn);

  ServerState* const server;
  const uint32_t db;
  const std::string key;
  const ArgCopy pairs;  // field, value, ...
  const bool hmset;     // replies OK
  Result res;           // written on the writer, read by the finisher after
};

UpdateDecision HsetJob::Update(const ValueView* cur) {
  UpdateDecision d;
  if (cur != nullptr && cur->type != store::format::kTypeHash) {
    res.error = err::kWrongType;
    return d;
  }
  if ((cur != nullptr && cur->kind == store::format::kKindHead) || !HsetWhole(*server, cur, pairs, &res, &d.value)) {
    d.action = Action::kRun;
    return d;
  }
  if (res.error.empty()) {
    d.action = Action::kPut;
    d.keep_ttl = true;
    d.type = store::format::kTypeHash;
  }
  return d;
}

void HsetJob::Run(store::Txn& txn) {
  store::ValueView cur;
  const store::Status s = txn.Get(db, key, &cur);
  if (!s.ok() && !s.IsNotFound()) {
    res.error = CorruptionError(s);
    return;
  }
  const bool found = s.ok();
  if (found && cur.type != store::format::kTypeHash) {
    res.error = err::kWrongType;
    return;
  }
  std::string value;
  if ((!found || cur.kind != store::format::kKindHead) && HsetWhole(*server, found ? &cur : nullptr, pairs, &res, &value)) {
    if (!res.error.empty()) return;
    store::WriteBatch::Op op;
    op.kind = store::WriteBatch::Kind::kPut;
    op.db = db;
    op.key = key;
    op.value = std::move(value);
    op.type = store::format::kTypeHash;
    op.keep_ttl = true;
    store::OpResult r;
    txn.Execute(std::move(op), &r);
    return;
  }
  CollectionEdit h(txn, *server, db, key, store::format::kTypeHash);
  // A large hash's head, read above (HsetWhole, which is not called for one, writes nothing).
  if (!(found && cur.kind == store::format::kKindHead ? h.OpenFrom(cur) : h.Open())) {
    res.error = h.error();
    return;
  }
  for (size_t i = 0; i + 1 < pairs.size(); i += 2) res.number += h.Put(pairs[i], pairs[i + 1]) ? 1 : 0;
  h.Commit();
}

// HSET key field value [field value ...] / HMSET (replies OK).
void HsetWith(Ctx& c, bool hmset) {
  if (c.argc() % 2 != 0) return c.Fail(WrongArity(c.arg(0)));
  auto job = std::make_shared<HsetJob>(&c.server(), c.db(), c.arg(1), c.args().subspan(2), hmset);
  c.batch().UpdateOrRun(
      job->key, [job](const ValueView* cur) { return job->Update(cur); }, [job](store::Txn& txn) { job->Run(txn); });
  c.Notify(kNotifyNew, "new", c.arg(1));  // when it creates the hash (Redis's dbAdd)
  c.Notify(kNotifyHash, "hset", c.arg(1));
  c.Then([job](std::span<OpResult>, resp::ReplyBuffer& out) {
    if (!job->res.error.empty()) return out.Error(job->res.error);
    if (job->hmset) return out.Ok();
    out.Integer(job->res.number);
  });
}
void Hset(Ctx& c) { HsetWith(c, false); }
void Hmset(Ctx& c) { HsetWith(c, true); }

void Hsetnx(Ctx& c) {
  auto res = std::make_shared<Result>();
  UpdateHash(c, res, [field = std::string(c.arg(2)), value = std::string(c.arg(3))](CollectionEdit& h, Result& r) {
    if (h.Has(field)) return false;
    h.Put(field, value);
    r.number = 1;
    return true;
  });
  c.Notify(kNotifyNew, "new", c.arg(1));  // when it creates the hash (Redis's dbAdd)
  c.Notify(kNotifyHash, "hset", c.arg(1));
  ThenReply(c, res, [](Result& r, resp::ReplyBuffer& out) { out.Integer(r.number); });
}

void Hdel(Ctx& c) {
  if (MembersUnchanged(c, store::format::kTypeHash, c.arg(1), c.args().subspan(2), false)) return c.out().Integer(0);
  auto res = std::make_shared<Result>();
  std::vector<std::string> fields(c.args().begin() + 2, c.args().end());
  UpdateHash(c, res, [fields = std::move(fields)](CollectionEdit& h, Result& r) {
    if (!h.exists()) return false;
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
  UpdateHash(c, res, [by, field = std::string(c.arg(2))](CollectionEdit& h, Result& r) {
    int64_t v = 0;
    std::string cur;
    if (h.Get(field, &cur) && !resp::ParseInt64(cur, &v)) {
      r.error = "hash value is not an integer";
      return false;
    }
    if ((by < 0 && v < 0 && by < INT64_MIN - v) || (by > 0 && v > 0 && by > INT64_MAX - v)) {
      r.error = err::kOverflow;
      return false;
    }
    r.number = v + by;
    h.Put(field, std::to_string(r.number));
    return true;
  });
  c.Notify(kNotifyNew, "new", c.arg(1));  // when it creates the hash (Redis's dbAdd)
  c.Notify(kNotifyHash, "hincrby", c.arg(1));
  ThenReply(c, res, [](Result& r, resp::ReplyBuffer& out) { out.Integer(r.number); });
}

void Hincrbyfloat(Ctx& c) {
  long double by = 0;
  if (!ParseLongDouble(c.arg(3), &by)) return c.Fail(std::string(err::kNotFloat));
  if (std::isnan(by) || std::isinf(by)) return c.Fail("value is NaN or Infinity");
  auto res = std::make_shared<Result>();
  UpdateHash(c, res, [by, field = std::string(c.arg(2))](CollectionEdit& h, Result& r) {
    long double v = 0;
    std::string cur;
    if (h.Get(field, &cur) && !ParseLongDouble(cur, &v)) {
      r.error = "hash value is not a float";
      return false;
    }
    v += by;
    if (std::isnan(v) || std::isinf(v)) {
      r.error = "increment would produce NaN or Infinity";
      return false;
    }
    r.value = FormatLongDouble(v);
    h.Put(field, r.value);
    return true;
  });
  if (c.propagating()) {  // its result, as Redis propagates HINCRBYFLOAT: HSET key field value
    c.PropagateLate([res, db = c.db(), key = std::string(c.arg(1)), field = std::string(c.arg(2))](
                        std::span<const OpResult>, std::vector<PropagatedCommand>* out) {
      PropagatedCommand p{db, {}};
      AppendCommand(&p.resp, {"HSET", key, field, res->value});
      out->push_back(std::move(p));
    });
  }
  c.Notify(kNotifyNew, "new", c.arg(1));  // when it creates the hash (Redis's dbAdd)
  c.Notify(kNotifyHash, "hincrbyfloat", c.arg(1));
  ThenReply(c, res, [](Result& r, resp::ReplyBuffer& out) { out.Bulk(r.value); });
}

// HGET, HSTRLEN, HEXISTS: the field's value (nullopt: none) with the hash's head read at the same
// moment (FindTogether): a large hash's head and element are records of their own, and a group
// landing between the two reads (MULTI / DEL h / HSET h f v / EXEC) made the field look absent
// in a hash that had it all along. False when the reply is written already (`absent` or an error).
// *value points into `h` (the records it keeps): the caller's `h` must outlive its use.
bool FindField(Ctx& c, CollectionRead& h, const std::function<void()>& absent,
               std::optional<std::string_view>* value) {
  const std::string_view field = c.arg(2);
  return h.FindTogether(c.arg(1), std::span<const std::string_view>(&field, 1), absent,
                        std::span<std::optional<std::string_view>>(value, 1));
}

void Hget(Ctx& c) {
  CollectionRead h(c);
  std::optional<std::string_view> v;
  if (!FindField(c, h, [&] { c.out().Null(); }, &v)) return;
  if (v) {
    c.out().Bulk(*v);
  } else {
    c.out().Null();
  }
}

void Hmget(Ctx& c) {
  CollectionRead h(c);
  const size_t n = c.argc() - 2;
  std::vector<std::optional<std::string_view>> values(n);
  if (!h.FindTogether(c.arg(1), c.args().subspan(2), [&] {
        c.out().ArrayHeader(n);
        for (size_t i = 0; i < n; ++i) c.out().Null();
      }, values)) {
    return;
  }
  c.out().ArrayHeader(n);
  for (const auto& v : values) {
    if (v) {
      c.out().Bulk(*v);
    } else {
      c.out().Null();
    }
  }
}

void Hlen(Ctx& c) {
  CollectionRead h(c);
  uint64_t n = 0;
  if (!h.CountTogether(c.arg(1), [&] { c.out().Integer(0); }, &n)) return;
  c.out().Integer(static_cast<int64_t>(n));
}

void Hstrlen(Ctx& c) {
  CollectionRead h(c);
  std::optional<std::string_view> v;
  if (!FindField(c, h, [&] { c.out().Integer(0); }, &v)) return;
  c.out().Integer(v ? static_cast<int64_t>(v->size()) : 0);
}

void Hexists(Ctx& c) {
  CollectionRead h(c);
  std::optional<std::string_view> v;
  if (!FindField(c, h, [&] { c.out().Integer(0); }, &v)) return;
  c.out().Integer(v ? 1 : 0);
}

// HKEYS / HVALS / HGETALL (a map in RESP3).
void Hgetall(Ctx& c) {
  const std::string name = ToLower(c.arg(0));
  const bool keys = name != "hvals";
  const bool values = name != "hkeys";
  const bool map = keys && values;
  CollectionRead h(c);
  std::vector<Entry> entries;
  const auto absent = [&] {
    if (map) {
      c.out().MapHeader(0);
    } else {
      c.out().ArrayHeader(0);
    }
  };
  if (!h.OpenWith(c.arg(1), absent, [&] { h.All(&entries); })) return;
  if (map) {
    c.out().MapHeader(entries.size());
  } else {
    c.out().ArrayHeader(entries.size());
  }
  for (const Entry& e : entries) {
    if (keys) c.out().Bulk(e.member);
    if (values) c.out().Bulk(e.value);
  }
}

void Hrandfield(Ctx& c) { RandomMembers(c, 2); }

void Hscan(Ctx& c) { ScanCollection(c); }

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
  // The elements each one reads of a large hash (Command::first_member, member_step).
  const std::unordered_map<std::string_view, std::pair<int, int>> members = {
      {"hset", {2, 2}}, {"hmset", {2, 2}}, {"hsetnx", {2, 2}}, {"hdel", {2, 1}}, {"hincrby", {2, 2}},
      {"hincrbyfloat", {2, 2}}, {"hget", {2, 1}}, {"hmget", {2, 1}}, {"hstrlen", {2, 1}}, {"hexists", {2, 1}},
      {"hkeys", {kAllElements, 1}}, {"hvals", {kAllElements, 1}}, {"hgetall", {kAllElements, 1}},
      {"hscan", {kScanElements, 1}}};
  for (size_t i = first; i < t->size(); ++i) {
    Command& cmd = (*t)[i];
    cmd.value_type = store::format::kTypeHash;
    if (auto it = members.find(cmd.name); it != members.end()) std::tie(cmd.first_member, cmd.member_step) = it->second;
  }
}

}  // namespace keg::server
