// Set commands (Redis 7.0's t_set.c replies and errors). A set is stored whole (one record, the
// encoding of server/small_collection.h) while small, per member past the thresholds, as hashes
// are (server/collection.h hides which): reads run on the I/O thread, writes are kRun ops on the
// writer at the command's place in the batch. While every
// member is an integer and the set is within set-max-intset-entries it reports `intset` and keeps
// its members in numeric order (as Redis's intset); past that, `hashtable` for good.
#include <algorithm>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
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
constexpr uint8_t kSet = store::format::kTypeSet;

struct Result {
  int64_t number = 0;
  std::string error;
  bool deleted = false;
  bool found = false;
  std::vector<std::string> members;
};

// SADD to a set stored whole (or absent): a hashtable set only grows here, its new members
// appended to the encoded bytes; an intset is kept in numeric order. False when the result must
// be stored per element (the caller then goes through CollectionEdit).
bool SaddWhole(store::Txn& txn, ServerState& server, uint32_t db, const std::string& key, const ValueView* cur,
               const ArgCopy& add, Result* res) {
  coll::View v;
  if (cur != nullptr && !coll::Decode(cur->value, &v)) {
    res->error = kMalformed;
    return true;
  }
  std::string value;
  if (cur != nullptr && (v.flags & coll::kConverted) != 0) {
    // The members present and those added so far: searched while both are few, else hashed (a
    // search per member made SADD of 100,000 members to such a set take 8 s on the writer).
    const bool small = v.elements.size() <= 16 && add.size() <= 16;
    std::unordered_set<std::string_view> have;
    if (!small) have.insert(v.elements.begin(), v.elements.end());
    std::vector<std::string_view> extra;
    for (size_t i = 0; i < add.size(); ++i) {
      const std::string_view m = add[i];
      if (small ? std::find(v.elements.begin(), v.elements.end(), m) != v.elements.end() ||
                      std::find(extra.begin(), extra.end(), m) != extra.end()
                : !have.insert(m).second) {
        continue;
      }
      extra.push_back(m);
    }
    if (extra.empty()) return true;
    size_t bytes = cur->value.size();
    for (std::string_view m : extra) bytes += m.size() + 2;
    if (StoredPerElement(server, kSet, v.elements.size() + extra.size(), bytes, false)) return false;
    res->number = static_cast<int64_t>(extra.size());
    value = coll::Append(cur->value, v, v.flags, extra);
  } else {
    // New, or an intset (kept in numeric order).
    std::vector<std::string> members(v.elements.begin(), v.elements.end());
    std::unordered_set<std::string_view> have(v.elements.begin(), v.elements.end());
    int64_t added = 0;
    for (size_t i = 0; i < add.size(); ++i) {
      const std::string_view m = add[i];
      if (!have.insert(m).second) continue;
      members.emplace_back(m);
      ++added;
    }
    if (added == 0) return true;
    uint8_t flags = v.flags;
    const bool intset = coll::SettleSet(
        &flags, &members, static_cast<size_t>(server.set_max_intset_entries.load(std::memory_order_relaxed)));
    std::vector<std::string_view> views(members.begin(), members.end());
    value = coll::Encode(flags, views);
    if (StoredPerElement(server, kSet, members.size(), value.size(), intset)) return false;
    res->number = added;
  }
  store::WriteBatch::Op op;
  op.kind = store::WriteBatch::Kind::kPut;
  op.db = db;
  op.key = key;
  op.value = std::move(value);
  op.type = kSet;
  op.keep_ttl = true;
  store::OpResult r;
  txn.Execute(std::move(op), &r);
  return true;
}

// A SADD's state, shared by its function on the writer and its finisher (one allocation; the
// closures hold only this pointer and std::function-like InlineFunction keeps them in place).
struct SaddJob {
  SaddJob(ServerState* s, uint32_t d, std::string_view k, std::span<const std::string_view> m)
      : server(s), db(d), key(k), add(m) {}
  void Run(store::Txn& txn);

  ServerState* const server;
  const uint32_t db;
  const std::string key;
  const ArgCopy add;  // the members
  Result res;         // written on the writer, read by the finisher after
};

void SaddJob::Run(store::Txn& txn) {
  ValueView cur;
  const store::Status s = txn.Get(db, key, &cur);
  if (!s.ok() && !s.IsNotFound()) {
    res.error = CorruptionError(s);
    return;
  }
  if (s.ok() && cur.type != kSet) {
    res.error = err::kWrongType;
    return;
  }
  if ((!s.ok() || cur.kind != store::format::kKindHead) &&
      SaddWhole(txn, *server, db, key, s.ok() ? &cur : nullptr, add, &res)) {
    return;
  }
  CollectionEdit set(txn, *server, db, key, kSet);
  // A large set's head, read above (SaddWhole, which may write, is not called for one).
  if (!(s.ok() && cur.kind == store::format::kKindHead ? set.OpenFrom(cur) : set.Open())) {
    res.error = set.error();
    return;
  }
  for (size_t i = 0; i < add.size(); ++i) res.number += set.Put(add[i]) ? 1 : 0;
  set.Commit();
}

void Sadd(Ctx& c) {
  // Members all there already (Sidekiq's SADD of its queue name on every push): answered from a
  // read, as Redis's SADD that adds nothing writes nothing.
  if (MembersUnchanged(c, kSet, c.arg(1), c.args().subspan(2), true)) return c.out().Integer(0);
  auto job = std::make_shared<SaddJob>(&c.server(), c.db(), c.arg(1), c.args().subspan(2));
  c.batch().Run([job](store::Txn& txn) { job->Run(txn); }, job->key);
  c.Notify(kNotifyNew, "new", c.arg(1));  // when it creates the set (Redis's dbAdd)
  c.Notify(kNotifySet, "sadd", c.arg(1));
  c.Then([job](std::span<OpResult>, resp::ReplyBuffer& out) {
    if (!job->res.error.empty()) return out.Error(job->res.error);
    out.Integer(job->res.number);
  });
}

// Queues the change of the set at the command's key; a set left empty goes.
void UpdateSet(Ctx& c, std::shared_ptr<Result> res, std::function<bool(CollectionEdit&, Result&)> change) {
  UpdateCollection<Result>(c, kSet, std::move(res), std::move(change));
}

void Srem(Ctx& c) {
  if (MembersUnchanged(c, kSet, c.arg(1), c.args().subspan(2), false)) return c.out().Integer(0);
  auto res = std::make_shared<Result>();
  std::vector<std::string> rem(c.args().begin() + 2, c.args().end());
  UpdateSet(c, res, [rem = std::move(rem)](CollectionEdit& set, Result& r) {
    if (!set.exists()) return false;
    for (const std::string& m : rem) r.number += set.Remove(m) ? 1 : 0;
    return r.number > 0;
  });
  c.Then([res, server = &c.server(), db = c.db(), key = NotifyKey(c, kNotifySet | kNotifyGeneric, c.arg(1))](
             std::span<OpResult> r, resp::ReplyBuffer& out) {
    if (!res->error.empty()) return out.Error(res->error);
    if (key && !r.empty() && r[0].applied) {
      NotifyKeyspaceEvent(*server, db, kNotifySet, "srem", *key);
      if (res->deleted) NotifyKeyspaceEvent(*server, db, kNotifyGeneric, "del", *key);
    }
    out.Integer(res->number);
  });
}

// SPOP key [count].
void Spop(Ctx& c) {
  if (c.argc() > 3) return c.Fail(std::string(err::kSyntax));
  const bool with_count = c.argc() == 3;
  int64_t count = 1;
  if (with_count) {
    // (Redis's getPositiveLongFromObjectOrReply: one text for a count that is no integer too.)
    if (!resp::ParseInt64(c.arg(2), &count) || count < 0) return c.Fail("value is out of range, must be positive");
  }
  auto res = std::make_shared<Result>();
  if (c.propagating()) {
    // The members it picked at random, as SREM (Redis propagates SPOP so).
    c.PropagateLate([res, db = c.db(), key = std::string(c.arg(1))](std::span<const OpResult>,
                                                                    std::vector<PropagatedCommand>* out) {
      std::vector<std::string_view> args{"SREM", key};
      for (const std::string& m : res->members) args.push_back(m);
      PropagatedCommand p{db, {}};
      AppendCommand(&p.resp, args);
      out->push_back(std::move(p));
    });
  }
  UpdateSet(c, res, [count](CollectionEdit& set, Result& r) {
    if (!set.exists()) return false;
    r.found = true;
    if (count == 0) return false;
    r.members = set.RandomMembers(static_cast<size_t>(count));
    for (const std::string& m : r.members) set.Remove(m);
    return !r.members.empty();
  });
  c.Then([res, with_count, server = &c.server(), db = c.db(), key = NotifyKey(c, kNotifySet | kNotifyGeneric, c.arg(1))](
             std::span<OpResult> r, resp::ReplyBuffer& out) {
    if (!res->error.empty()) return out.Error(res->error);
    if (key && !r.empty() && r[0].applied) {
      NotifyKeyspaceEvent(*server, db, kNotifySet, "spop", *key);
      if (res->deleted) NotifyKeyspaceEvent(*server, db, kNotifyGeneric, "del", *key);
    }
    if (!with_count) {
      if (res->members.empty()) return out.Null();
      return out.Bulk(res->members[0]);
    }
    out.SetHeader(res->members.size());
    for (const std::string& m : res->members) out.Bulk(m);
  });
}

void Srandmember(Ctx& c) { RandomMembers(c, 1); }

void Smembers(Ctx& c) {
  CollectionRead set(c);
  std::vector<Entry> all;
  if (!set.OpenWith(c.arg(1), [&] { c.out().SetHeader(0); }, [&] { set.All(&all); })) return;
  c.out().SetHeader(all.size());
  for (const Entry& e : all) c.out().Bulk(e.member);
}

void Sismember(Ctx& c) {
  // The head and the member read at one moment (FindTogether): a group landing between the two
  // reads of a large set (MULTI / DEL s / SADD s m / EXEC) made the member look absent.
  CollectionRead set(c);
  const std::string_view member = c.arg(2);
  std::optional<std::string_view> found;
  const auto absent = [&] { c.out().Integer(0); };
  if (!set.FindTogether(c.arg(1), std::span<const std::string_view>(&member, 1), absent,
                        std::span<std::optional<std::string_view>>(&found, 1))) {
    return;
  }
  c.out().Integer(found ? 1 : 0);
}

void Smismember(Ctx& c) {
  CollectionRead set(c);
  const size_t n = c.argc() - 2;
  std::vector<std::optional<std::string_view>> found(n);
  if (!set.FindTogether(c.arg(1), c.args().subspan(2), [&] {
        c.out().ArrayHeader(n);
        for (size_t i = 0; i < n; ++i) c.out().Integer(0);
      }, found)) {
    return;
  }
  c.out().ArrayHeader(n);
  for (const auto& f : found) c.out().Integer(f ? 1 : 0);
}

void Scard(Ctx& c) {
  CollectionRead set(c);
  uint64_t n = 0;
  if (!set.CountTogether(c.arg(1), [&] { c.out().Integer(0); }, &n)) return;
  c.out().Integer(static_cast<int64_t>(n));
}

enum class Algebra { kInter, kUnion, kDiff };
using Members = std::vector<std::string_view>;

// The result of SINTER / SUNION / SDIFF (null: a missing key, an empty set).
std::vector<std::string_view> Combine(Algebra op, const std::vector<const Members*>& sets, uint64_t limit = 0) {
  std::vector<std::string_view> out;
  switch (op) {
    case Algebra::kInter: {
      for (const Members* s : sets) {
        if (s == nullptr) return out;
      }
      // Iterate the smallest, probe the others.
      std::vector<const Members*> by_size = sets;
      std::sort(by_size.begin(), by_size.end(), [](const Members* a, const Members* b) { return a->size() < b->size(); });
      std::vector<std::unordered_set<std::string_view>> others;
      for (size_t i = 1; i < by_size.size(); ++i) others.emplace_back(by_size[i]->begin(), by_size[i]->end());
      for (std::string_view m : *by_size[0]) {
        bool all = true;
        for (const auto& o : others) {
          if (o.count(m) == 0) {
            all = false;
            break;
          }
        }
        if (!all) continue;
        out.push_back(m);
        if (limit != 0 && out.size() >= limit) break;
      }
      return out;
    }
    case Algebra::kUnion: {
      std::unordered_set<std::string_view> seen;
      for (const Members* s : sets) {
        if (s == nullptr) continue;
        for (std::string_view m : *s) {
          if (seen.insert(m).second) out.push_back(m);
        }
      }
      return out;
    }
    case Algebra::kDiff: {
      if (sets.empty() || sets[0] == nullptr) return out;
      std::unordered_set<std::string_view> minus;
      for (size_t i = 1; i < sets.size(); ++i) {
        if (sets[i] != nullptr) minus.insert(sets[i]->begin(), sets[i]->end());
      }
      std::unordered_set<std::string_view> seen;
      for (std::string_view m : *sets[0]) {
        if (minus.count(m) == 0 && seen.insert(m).second) out.push_back(m);
      }
      return out;
    }
  }
  return out;
}

// The sets at `keys`, read together (all of a group's writes or none, whichever way each is
// stored): false (reply written) on WRONGTYPE or corruption.
struct ReadSetsState {
  std::vector<ValueView> views;
  std::vector<Members> members;
  std::vector<const Members*> ptrs;
  std::vector<std::shared_ptr<const void>> pins;
};
bool ReadSets(Ctx& c, std::span<const std::string_view> keys, ReadSetsState* st) {
  const size_t n = keys.size();
  std::vector<store::Status> status(n);
  std::vector<std::vector<store::ElementView>> large(n);
  std::vector<store::Status> large_status(n);
  st->views.assign(n, ValueView{});
  // n + 1: one key is two reads too when it is a large set (its head, then its elements; read
  // apart, SINTER s of a set a transaction was replacing answered an empty set).
  c.ReadTogether(n + 1, [&] {
    st->pins.clear();
    for (size_t i = 0; i < n; ++i) {
      large[i].clear();
      status[i] = c.Get(keys[i], &st->views[i]);
      if (status[i].ok() && st->views[i].type == kSet && st->views[i].kind == store::format::kKindHead) {
        ReadGap(c);
        large_status[i] = c.ReadElements(store::format::IncarnationOf(st->views[i].value), &large[i], &st->pins);
      }
    }
  });
  st->members.assign(n, Members{});
  st->ptrs.assign(n, nullptr);
  bool failed = false;
  for (size_t i = 0; i < n; ++i) {
    store::Status s = std::move(status[i]);
    if (s.ok() && st->views[i].type != kSet) s = store::Status::WrongType();
    if (s.ok() && !large_status[i].ok()) s = std::move(large_status[i]);
    if (!c.AccountRead(std::move(s), keys[i])) {
      failed |= c.read_failed();
      continue;
    }
    if (st->views[i].kind == store::format::kKindHead) {
      for (const store::ElementView& e : large[i]) st->members[i].push_back(e.member);
    } else {
      coll::View v;
      if (!coll::Decode(st->views[i].value, &v)) {
        c.Error(kMalformed);
        return false;
      }
      st->members[i] = std::move(v.elements);
    }
    st->ptrs[i] = &st->members[i];
  }
  if (failed) {
    c.ReplyReadError();
    return false;
  }
  return true;
}

void AlgebraRead(Ctx& c, Algebra op) {
  ReadSetsState st;
  if (!ReadSets(c, c.args().subspan(1), &st)) return;
  const std::vector<std::string_view> result = Combine(op, st.ptrs);
  c.out().SetHeader(result.size());
  for (std::string_view m : result) c.out().Bulk(m);
}
void Sinter(Ctx& c) { AlgebraRead(c, Algebra::kInter); }
void Sunion(Ctx& c) { AlgebraRead(c, Algebra::kUnion); }
void Sdiff(Ctx& c) { AlgebraRead(c, Algebra::kDiff); }

// SINTERCARD numkeys key [key ...] [LIMIT limit]
void Sintercard(Ctx& c) {
  int64_t numkeys = 0;
  if (!resp::ParseInt64(c.arg(1), &numkeys) || numkeys <= 0) return c.Error("numkeys should be greater than 0");
  if (numkeys > static_cast<int64_t>(c.argc()) - 2) return c.Error("Number of keys can't be greater than number of args");
  uint64_t limit = 0;
  for (size_t j = 2 + static_cast<size_t>(numkeys); j < c.argc(); ++j) {
    if (EqualsIgnoreCase(c.arg(j), "limit") && j + 1 < c.argc()) {
      int64_t l = 0;
      if (!resp::ParseInt64(c.arg(++j), &l) || l < 0) return c.Error("LIMIT can't be negative");
      limit = static_cast<uint64_t>(l);
    } else {
      return c.Error(err::kSyntax);
    }
  }
  ReadSetsState st;
  if (!ReadSets(c, c.args().subspan(2, static_cast<size_t>(numkeys)), &st)) return;
  c.out().Integer(static_cast<int64_t>(Combine(Algebra::kInter, st.ptrs, limit).size()));
}

// SINTERSTORE / SUNIONSTORE / SDIFFSTORE destination key [key ...]: the sources are read and the
// destination written by one kRun op at this command's place (atomic). The destination may hold
// any type (it is replaced); an empty result deletes it.
void AlgebraStore(Ctx& c, Algebra op, std::string_view event) {
  struct Shared {
    std::string error;
    int64_t size = 0;
    bool deleted = false;
    bool existed = false;                // the destination, before
    std::vector<std::string> missing;   // sources not there (keymiss, as Redis's lookupKeyRead)
  };
  auto sh = std::make_shared<Shared>();
  std::vector<std::string> sources(c.args().begin() + 2, c.args().end());
  ServerState* server = &c.server();
  std::string dest(c.arg(1));
  c.batch().Run([sh, op, server, db = c.db(), dest, sources = std::move(sources)](store::Txn& txn) {
    const size_t n = sources.size();
    std::vector<std::vector<std::string>> owned(n);
    std::vector<Members> members(n);
    std::vector<const Members*> ptrs(n, nullptr);
    for (size_t i = 0; i < n; ++i) {
      CollectionEdit set(txn, *server, db, sources[i], kSet);
      if (!set.Open()) {
        sh->error = set.error();
        return;
      }
      if (!set.exists()) {
        sh->missing.push_back(sources[i]);
        continue;
      }
      if (const store::Status s = set.ForEach([&](std::string_view m, std::string_view) { owned[i].emplace_back(m); });
          !s.ok()) {
        sh->error = CorruptionError(s);  // a result without the unreadable member would be wrong
        return;
      }
      members[i].assign(owned[i].begin(), owned[i].end());
      ptrs[i] = &members[i];
    }
    const std::vector<std::string_view> result = Combine(op, ptrs);
    sh->size = static_cast<int64_t>(result.size());
    sh->deleted = result.empty();
    ValueView there;
    sh->existed = txn.Get(db, dest, &there).ok();
    // A new value: no expiry (setKey).
    WriteCollection(txn, *server, db, dest, kSet, 0, result, /*keep_ttl=*/false);
  }, dest);
  c.Then([sh, event, server, db = c.db(),
          key = NotifyKey(c, kNotifySet | kNotifyGeneric | kNotifyNew | kNotifyKeyMiss, c.arg(1))](
             std::span<OpResult> r, resp::ReplyBuffer& out) {
    if (!sh->error.empty()) return out.Error(sh->error);
    if (key) {
      for (const std::string& m : sh->missing) NotifyKeyspaceEvent(*server, db, kNotifyKeyMiss, "keymiss", m);
    }
    if (key && !r.empty() && r.back().applied) {
      if (!sh->deleted && !sh->existed) NotifyKeyspaceEvent(*server, db, kNotifyNew, "new", *key);
      NotifyKeyspaceEvent(*server, db, sh->deleted ? kNotifyGeneric : kNotifySet, sh->deleted ? "del" : event, *key);
    }
    out.Integer(sh->size);
  });
}
void Sinterstore(Ctx& c) { AlgebraStore(c, Algebra::kInter, "sinterstore"); }
void Sunionstore(Ctx& c) { AlgebraStore(c, Algebra::kUnion, "sunionstore"); }
void Sdiffstore(Ctx& c) { AlgebraStore(c, Algebra::kDiff, "sdiffstore"); }

// SMOVE source destination member, with Redis's order of checks: a missing source answers 0
// whatever the destination holds; then a source or destination of another type is WRONGTYPE.
void Smove(Ctx& c) {
  struct Shared {
    std::string error;
    bool moved = false;      // removed from the source
    bool src_deleted = false;
    bool member = false;
    bool dst_added = false;
    bool dst_created = false;
  };
  auto sh = std::make_shared<Shared>();
  ServerState* server = &c.server();
  std::string src(c.arg(1));
  std::string dst(c.arg(2));
  c.batch().Run([sh, server, db = c.db(), src, dst, member = std::string(c.arg(3))](store::Txn& txn) {
    ValueView sv;
    ValueView dv;
    const store::Status ss = txn.Get(db, src, &sv);
    const store::Status ds = txn.Get(db, dst, &dv);
    if (!ss.ok() && !ss.IsNotFound()) {
      sh->error = CorruptionError(ss);
      return;
    }
    if (ss.IsNotFound()) return;
    if (sv.type != kSet || (ds.ok() && dv.type != kSet)) {
      sh->error = err::kWrongType;
      return;
    }
    CollectionEdit from(txn, *server, db, src, kSet);
    if (!from.Open()) {
      sh->error = from.error();
      return;
    }
    if (!from.Has(member)) return;
    sh->member = true;
    if (src == dst) return;
    CollectionEdit to(txn, *server, db, dst, kSet);
    if (!to.Open()) {
      sh->error = to.error();
      return;
    }
    from.Remove(member);
    from.Commit();
    sh->moved = true;
    sh->src_deleted = from.deleted();
    sh->dst_created = !to.exists();
    if (to.Put(member)) {
      // The batch names the source; Redis signals the destination only when the member was added.
      server->watches.TouchKey(db, dst);
      sh->dst_added = true;
      to.Commit();
    }
  }, src);
  c.Then([sh, server, db = c.db(), src = NotifyKey(c, kNotifySet | kNotifyGeneric, c.arg(1)),
          dst = NotifyKey(c, kNotifySet | kNotifyNew, c.arg(2))](std::span<OpResult>, resp::ReplyBuffer& out) {
    if (!sh->error.empty()) return out.Error(sh->error);
    if (sh->moved && src) {
      NotifyKeyspaceEvent(*server, db, kNotifySet, "srem", *src);
      if (sh->src_deleted) NotifyKeyspaceEvent(*server, db, kNotifyGeneric, "del", *src);
    }
    if (sh->dst_added && dst) {
      if (sh->dst_created) NotifyKeyspaceEvent(*server, db, kNotifyNew, "new", *dst);
      NotifyKeyspaceEvent(*server, db, kNotifySet, "sadd", *dst);
    }
    out.Integer(sh->member ? 1 : 0);
  });
}

void Sscan(Ctx& c) { ScanCollection(c); }

}  // namespace

void RegisterSetCommands(std::vector<Command>* t) {
  const size_t first = t->size();
  constexpr uint32_t kW = kWrite;
  constexpr uint32_t kR = kReadOnly;
  t->push_back({"sadd", -3, kW | kFast, 1, 1, 1, Sadd, "@write @set @fast"});
  t->push_back({"srem", -3, kW | kFast, 1, 1, 1, Srem, "@write @set @fast"});
  t->push_back({"spop", -2, kW | kFast, 1, 1, 1, Spop, "@write @set @fast"});
  t->push_back({"smove", 4, kW | kFast, 1, 2, 1, Smove, "@write @set @fast"});
  t->push_back({"sinterstore", -3, kW, 1, -1, 1, Sinterstore, "@write @set @slow"});
  t->push_back({"sunionstore", -3, kW, 1, -1, 1, Sunionstore, "@write @set @slow"});
  t->push_back({"sdiffstore", -3, kW, 1, -1, 1, Sdiffstore, "@write @set @slow"});
  t->push_back({"smembers", 2, kR, 1, 1, 1, Smembers, "@read @set @slow"});
  t->push_back({"sismember", 3, kR | kFast, 1, 1, 1, Sismember, "@read @set @fast"});
  t->push_back({"smismember", -3, kR | kFast, 1, 1, 1, Smismember, "@read @set @fast"});
  t->push_back({"scard", 2, kR | kFast, 1, 1, 1, Scard, "@read @set @fast"});
  t->push_back({"srandmember", -2, kR, 1, 1, 1, Srandmember, "@read @set @slow"});
  t->push_back({"sinter", -2, kR, 1, -1, 1, Sinter, "@read @set @slow"});
  t->push_back({"sintercard", -3, kR | kMovableKeys, 0, 0, 0, Sintercard, "@read @set @slow"});
  t->push_back({"sunion", -2, kR, 1, -1, 1, Sunion, "@read @set @slow"});
  t->push_back({"sdiff", -2, kR, 1, -1, 1, Sdiff, "@read @set @slow"});
  t->push_back({"sscan", -3, kR, 1, 1, 1, Sscan, "@read @set @slow"});
  // The elements each one reads of a large set (Command::first_member, member_step).
  const std::unordered_map<std::string_view, int> members = {
      {"sadd", 2}, {"srem", 2}, {"sismember", 2}, {"smismember", 2}, {"smove", 3},
      {"smembers", kAllElements}, {"sinter", kAllElements},
      {"sintercard", kAllElements}, {"sunion", kAllElements}, {"sdiff", kAllElements}, {"sinterstore", kAllElements},
      {"sunionstore", kAllElements}, {"sdiffstore", kAllElements}, {"sscan", kScanElements}};
  for (size_t i = first; i < t->size(); ++i) {
    Command& cmd = (*t)[i];
    cmd.value_type = kSet;
    if (auto it = members.find(cmd.name); it != members.end()) cmd.first_member = it->second;
  }
}

}  // namespace keg::server
