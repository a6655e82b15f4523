// Set commands (Redis 7.0's t_set.c replies and errors). A set is stored whole (one record, the
// encoding of server/small_collection.h), as hashes are: reads decode it, writes are
// read-modify-write ops on the writer thread at the command's place in the batch. While every
// member is an integer and the set is within set-max-intset-entries it reports `intset` and keeps
// its members in numeric order (as Redis's intset); past that, `hashtable` for good.
#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <unordered_set>
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
constexpr uint8_t kSet = store::format::kTypeSet;

// A set decoded for a change: owned members.
struct SetValue {
  uint8_t flags = 0;
  std::vector<std::string> members;
  // Views of members' strings: rebuilt (Index) whenever members may have moved.
  std::unordered_set<std::string_view> index;

  bool Decode(std::string_view value) {
    coll::View v;
    if (!coll::Decode(value, &v)) return false;
    flags = v.flags;
    members.assign(v.elements.begin(), v.elements.end());
    Index();
    return true;
  }
  void Index() {
    index.clear();
    index.reserve(members.size());
    for (const std::string& m : members) index.insert(m);
  }
  bool Has(std::string_view m) const { return index.count(m) != 0; }
  // Adds the members not present yet; returns how many.
  int64_t Add(const std::vector<std::string>& add, ServerState& s) {
    int64_t added = 0;
    members.reserve(members.size() + add.size());  // no reallocation below: the views stay valid
    Index();
    for (const std::string& m : add) {
      if (Has(m)) continue;
      members.push_back(m);
      index.insert(members.back());
      ++added;
    }
    Settle(s);
    return added;
  }
  int64_t Remove(const std::vector<std::string>& rem) {
    std::unordered_set<std::string_view> gone;
    for (const std::string& m : rem) {
      if (Has(m)) gone.insert(m);
    }
    if (gone.empty()) return 0;
    std::vector<std::string> kept;
    kept.reserve(members.size() - gone.size());
    for (std::string& m : members) {
      if (gone.count(m) == 0) kept.push_back(std::move(m));
    }
    const auto n = static_cast<int64_t>(members.size() - kept.size());
    members = std::move(kept);
    Index();
    return n;
  }
  // The encoding after a change: an intset while all integers and small enough (kept in numeric
  // order), else hashtable for good.
  void Settle(ServerState& s) {
    coll::SettleSet(&flags, &members, static_cast<size_t>(s.set_max_intset_entries.load(std::memory_order_relaxed)));
    Index();
  }
  std::string Encode() const {
    std::vector<std::string_view> views(members.begin(), members.end());
    return coll::Encode(flags, views);
  }
};

struct Result {
  int64_t number = 0;
  std::string error;
  bool deleted = false;
  bool found = false;
  std::vector<std::string> members;
};

UpdateDecision PutSet(const SetValue& s) {
  UpdateDecision d;
  d.action = Action::kPut;
  d.value = s.Encode();
  d.type = kSet;
  d.keep_ttl = true;
  return d;
}

void Sadd(Ctx& c) {
  auto res = std::make_shared<Result>();
  std::vector<std::string> add(c.args().begin() + 2, c.args().end());
  ServerState* server = &c.server();
  c.batch().Update(std::string(c.arg(1)), [res, server, add = std::move(add)](const ValueView* cur) {
    UpdateDecision d;
    coll::View v;
    if (cur != nullptr && !coll::Decode(cur->value, &v)) {
      res->error = kMalformed;
      return d;
    }
    if (cur != nullptr && (v.flags & coll::kConverted) != 0) {
      // A hashtable set only grows here: the new members are appended to the encoded bytes.
      std::unordered_set<std::string_view> have;
      const bool small = v.elements.size() <= 16;
      if (!small) have.insert(v.elements.begin(), v.elements.end());
      std::vector<std::string_view> extra;
      for (const std::string& m : add) {
        const bool present = small ? std::find(v.elements.begin(), v.elements.end(), m) != v.elements.end()
                                   : have.count(m) != 0;
        if (present || std::find(extra.begin(), extra.end(), m) != extra.end()) continue;
        extra.push_back(m);
      }
      res->number = static_cast<int64_t>(extra.size());
      if (extra.empty()) return d;
      d.action = Action::kPut;
      d.value = coll::Append(cur->value, v, v.flags, extra);
      d.type = kSet;
      d.keep_ttl = true;
      return d;
    }
    SetValue s;  // new, or an intset (kept in numeric order)
    if (cur != nullptr && !s.Decode(cur->value)) {
      res->error = kMalformed;
      return d;
    }
    res->number = s.Add(add, *server);
    if (res->number == 0) return d;
    return PutSet(s);
  });
  c.Notify(kNotifySet, "sadd", c.arg(1));
  c.Then([res](std::span<OpResult>, resp::ReplyBuffer& out) {
    if (!res->error.empty()) return out.Error(res->error);
    out.Integer(res->number);
  });
}

void Srem(Ctx& c) {
  auto res = std::make_shared<Result>();
  std::vector<std::string> rem(c.args().begin() + 2, c.args().end());
  c.batch().Update(std::string(c.arg(1)), [res, rem = std::move(rem)](const ValueView* cur) {
    UpdateDecision d;
    if (cur == nullptr) return d;
    SetValue s;
    if (!s.Decode(cur->value)) {
      res->error = kMalformed;
      return d;
    }
    res->number = s.Remove(rem);
    if (res->number == 0) return d;
    if (s.members.empty()) {
      res->deleted = true;
      d.action = Action::kDelete;
      return d;
    }
    return PutSet(s);
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

std::mt19937_64& Rng() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return rng;
}

// SPOP key [count].
void Spop(Ctx& c) {
  if (c.argc() > 3) return c.Fail(std::string(err::kSyntax));
  const bool with_count = c.argc() == 3;
  int64_t count = 1;
  if (with_count) {
    if (!resp::ParseInt64(c.arg(2), &count)) return c.Fail(std::string(err::kNotInteger));
    if (count < 0) return c.Fail("value is out of range, must be positive");
  }
  auto res = std::make_shared<Result>();
  c.batch().Update(std::string(c.arg(1)), [res, count](const ValueView* cur) {
    UpdateDecision d;
    if (cur == nullptr) return d;
    SetValue s;
    if (!s.Decode(cur->value)) {
      res->error = kMalformed;
      return d;
    }
    res->found = true;
    if (count == 0) return d;
    const size_t n = std::min<size_t>(static_cast<size_t>(count), s.members.size());
    for (size_t i = 0; i < n; ++i) {  // a partial shuffle picks n distinct members
      std::swap(s.members[i], s.members[i + Rng()() % (s.members.size() - i)]);
    }
    res->members.assign(std::make_move_iterator(s.members.begin()),
                        std::make_move_iterator(s.members.begin() + static_cast<std::ptrdiff_t>(n)));
    s.members.erase(s.members.begin(), s.members.begin() + static_cast<std::ptrdiff_t>(n));
    if (s.members.empty()) {
      res->deleted = true;
      d.action = Action::kDelete;
      return d;
    }
    // An intset stays sorted: re-sort what the shuffle moved (a removal never converts it).
    coll::SettleSet(&s.flags, &s.members, SIZE_MAX);
    return PutSet(s);
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
  coll::View s;
  ValueView v;
  if (!ReadWhole(c, c.arg(1), &s, &v, [&] { c.out().SetHeader(0); })) return;
  c.out().SetHeader(s.elements.size());
  for (std::string_view m : s.elements) c.out().Bulk(m);
}

void Sismember(Ctx& c) {
  coll::View s;
  ValueView v;
  if (!ReadWhole(c, c.arg(1), &s, &v, [&] { c.out().Integer(0); })) return;
  c.out().Integer(std::find(s.elements.begin(), s.elements.end(), c.arg(2)) != s.elements.end() ? 1 : 0);
}

void Smismember(Ctx& c) {
  coll::View s;
  ValueView v;
  const size_t n = c.argc() - 2;
  if (!ReadWhole(c, c.arg(1), &s, &v, [&] {
        c.out().ArrayHeader(n);
        for (size_t i = 0; i < n; ++i) c.out().Integer(0);
      })) {
    return;
  }
  const std::unordered_set<std::string_view> members(s.elements.begin(), s.elements.end());
  c.out().ArrayHeader(n);
  for (size_t i = 2; i < c.argc(); ++i) c.out().Integer(members.count(c.arg(i)) != 0 ? 1 : 0);
}

void Scard(Ctx& c) {
  coll::View s;
  ValueView v;
  if (!ReadWhole(c, c.arg(1), &s, &v, [&] { c.out().Integer(0); })) return;
  c.out().Integer(static_cast<int64_t>(s.elements.size()));
}

enum class Algebra { kInter, kUnion, kDiff };

// The result of SINTER / SUNION / SDIFF over decoded sets (null: a missing key, an empty set).
std::vector<std::string_view> Combine(Algebra op, const std::vector<const coll::View*>& sets, uint64_t limit = 0) {
  std::vector<std::string_view> out;
  switch (op) {
    case Algebra::kInter: {
      for (const coll::View* s : sets) {
        if (s == nullptr) return out;
      }
      // Iterate the smallest, probe the others.
      std::vector<const coll::View*> by_size = sets;
      std::sort(by_size.begin(), by_size.end(), [](const coll::View* a, const coll::View* b) {
        return a->elements.size() < b->elements.size();
      });
      std::vector<std::unordered_set<std::string_view>> others;
      for (size_t i = 1; i < by_size.size(); ++i) others.emplace_back(by_size[i]->elements.begin(), by_size[i]->elements.end());
      for (std::string_view m : by_size[0]->elements) {
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
      for (const coll::View* s : sets) {
        if (s == nullptr) continue;
        for (std::string_view m : s->elements) {
          if (seen.insert(m).second) out.push_back(m);
        }
      }
      return out;
    }
    case Algebra::kDiff: {
      if (sets.empty() || sets[0] == nullptr) return out;
      std::unordered_set<std::string_view> minus;
      for (size_t i = 1; i < sets.size(); ++i) {
        if (sets[i] != nullptr) minus.insert(sets[i]->elements.begin(), sets[i]->elements.end());
      }
      std::unordered_set<std::string_view> seen;
      for (std::string_view m : sets[0]->elements) {
        if (minus.count(m) == 0 && seen.insert(m).second) out.push_back(m);
      }
      return out;
    }
  }
  return out;
}

// Reads `keys` together as sets: false (reply written) on WRONGTYPE or corruption.
bool ReadSets(Ctx& c, std::span<const std::string_view> keys, std::vector<ValueView>* views,
              std::vector<coll::View>* sets, std::vector<const coll::View*>* ptrs) {
  std::vector<bool> found;
  c.LookupTogether(keys, views, &found);
  if (c.read_failed()) {
    c.ReplyReadError();
    return false;
  }
  sets->assign(keys.size(), coll::View{});
  ptrs->assign(keys.size(), nullptr);
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!found[i]) continue;
    if (!coll::Decode((*views)[i].value, &(*sets)[i])) {
      c.Error(kMalformed);
      return false;
    }
    (*ptrs)[i] = &(*sets)[i];
  }
  return true;
}

void AlgebraRead(Ctx& c, Algebra op) {
  std::vector<ValueView> views;
  std::vector<coll::View> sets;
  std::vector<const coll::View*> ptrs;
  if (!ReadSets(c, c.args().subspan(1), &views, &sets, &ptrs)) return;
  const std::vector<std::string_view> result = Combine(op, ptrs);
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
  std::vector<ValueView> views;
  std::vector<coll::View> sets;
  std::vector<const coll::View*> ptrs;
  if (!ReadSets(c, c.args().subspan(2, static_cast<size_t>(numkeys)), &views, &sets, &ptrs)) return;
  c.out().Integer(static_cast<int64_t>(Combine(Algebra::kInter, ptrs, limit).size()));
}

// SINTERSTORE / SUNIONSTORE / SDIFFSTORE destination key [key ...]: the sources are read and the
// destination written by ops at this command's place (one group: atomic). The destination may
// hold any type (it is replaced); an empty result deletes it.
void AlgebraStore(Ctx& c, Algebra op, std::string_view event) {
  struct Shared {
    std::vector<std::string> values;  // the sources' records (empty: absent)
    std::vector<bool> present;
    std::string error;
    int64_t size = 0;
    bool deleted = false;
  };
  auto sh = std::make_shared<Shared>();
  const size_t n = c.argc() - 2;
  sh->values.resize(n);
  sh->present.assign(n, false);
  for (size_t i = 0; i < n; ++i) {
    c.batch().Update(std::string(c.arg(i + 2)), [sh, i](const ValueView* cur) {
      if (cur != nullptr) {
        sh->values[i].assign(cur->value);
        sh->present[i] = true;
      }
      return UpdateDecision{};
    });
  }
  ServerState* server = &c.server();
  c.batch().Update(std::string(c.arg(1)), [sh, op, n, server](const ValueView* cur) {
    UpdateDecision d;
    std::vector<coll::View> sets(n);
    std::vector<const coll::View*> ptrs(n, nullptr);
    for (size_t i = 0; i < n; ++i) {
      if (!sh->present[i]) continue;
      if (!coll::Decode(sh->values[i], &sets[i])) {
        sh->error = kMalformed;
        return d;
      }
      ptrs[i] = &sets[i];
    }
    const std::vector<std::string_view> result = Combine(op, ptrs);
    sh->size = static_cast<int64_t>(result.size());
    if (result.empty()) {
      if (cur != nullptr) {
        d.action = Action::kDelete;
        sh->deleted = true;
      }
      return d;
    }
    SetValue s;
    s.members.assign(result.begin(), result.end());
    s.Settle(*server);
    d = PutSet(s);
    d.keep_ttl = false;  // a new value: no expiry (setKey)
    return d;
  });
  c.Then([sh, event, server, db = c.db(), key = NotifyKey(c, kNotifySet | kNotifyGeneric, c.arg(1))](
             std::span<OpResult> r, resp::ReplyBuffer& out) {
    if (!sh->error.empty()) return out.Error(sh->error);
    if (key && !r.empty() && r.back().applied) {
      NotifyKeyspaceEvent(*server, db, sh->deleted ? kNotifyGeneric : kNotifySet, sh->deleted ? "del" : event, *key);
    }
    out.Integer(sh->size);
  });
  // The destination is replaced whatever it holds: only the sources must be sets.
  c.batch().mutable_ops().back().check_type = false;
}
void Sinterstore(Ctx& c) { AlgebraStore(c, Algebra::kInter, "sinterstore"); }
void Sunionstore(Ctx& c) { AlgebraStore(c, Algebra::kUnion, "sunionstore"); }
void Sdiffstore(Ctx& c) { AlgebraStore(c, Algebra::kDiff, "sdiffstore"); }

// SMOVE source destination member, with Redis's order of checks: a missing source answers 0
// whatever the destination holds; then a source or destination of another type is WRONGTYPE.
void Smove(Ctx& c) {
  struct Shared {
    std::string error;
    int dst_type = -1;       // the destination's type before the move (-1: absent)
    bool moved = false;      // removed from the source
    bool src_deleted = false;
    bool member = false;
    bool dst_added = false;
  };
  auto sh = std::make_shared<Shared>();
  const std::string member(c.arg(3));
  const bool same = c.arg(1) == c.arg(2);
  ServerState* server = &c.server();
  c.batch().Update(std::string(c.arg(2)), [sh](const ValueView* cur) {
    sh->dst_type = cur != nullptr ? cur->type : -1;
    return UpdateDecision{};
  });
  c.batch().Update(std::string(c.arg(1)), [sh, member, same](const ValueView* cur) {
    UpdateDecision d;
    if (cur == nullptr) return d;
    if (cur->type != kSet || (sh->dst_type >= 0 && sh->dst_type != kSet)) {
      sh->error = err::kWrongType;
      return d;
    }
    SetValue s;
    if (!s.Decode(cur->value)) {
      sh->error = kMalformed;
      return d;
    }
    if (!s.Has(member)) return d;
    sh->member = true;
    if (same) return d;
    s.Remove({member});
    sh->moved = true;
    if (s.members.empty()) {
      sh->src_deleted = true;
      d.action = Action::kDelete;
      return d;
    }
    return PutSet(s);
  });
  c.batch().Update(std::string(c.arg(2)), [sh, member, server](const ValueView* cur) {
    UpdateDecision d;
    if (!sh->moved) return d;
    SetValue s;
    if (cur != nullptr && !s.Decode(cur->value)) {
      sh->error = kMalformed;
      return d;
    }
    if (s.Add({member}, *server) == 0) return d;
    sh->dst_added = true;
    return PutSet(s);
  });
  c.Then([sh, server, db = c.db(), src = NotifyKey(c, kNotifySet | kNotifyGeneric, c.arg(1)),
          dst = NotifyKey(c, kNotifySet, c.arg(2))](std::span<OpResult>, resp::ReplyBuffer& out) {
    if (!sh->error.empty()) return out.Error(sh->error);
    if (sh->moved && src) {
      NotifyKeyspaceEvent(*server, db, kNotifySet, "srem", *src);
      if (sh->src_deleted) NotifyKeyspaceEvent(*server, db, kNotifyGeneric, "del", *src);
    }
    if (sh->dst_added && dst) NotifyKeyspaceEvent(*server, db, kNotifySet, "sadd", *dst);
    out.Integer(sh->member ? 1 : 0);
  });
  // The types are checked above, in Redis's order.
  auto& ops = c.batch().mutable_ops();
  for (size_t i = ops.size() - 3; i < ops.size(); ++i) ops[i].check_type = false;
}

void Sscan(Ctx& c) { ScanWhole(c, 1); }

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
  for (size_t i = first; i < t->size(); ++i) (*t)[i].value_type = kSet;
}

}  // namespace keg::server
