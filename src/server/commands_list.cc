// List commands (Redis 7.0's t_list.c replies and errors). A list is stored whole while small, per
// element past the thresholds (server/list.h, docs/types.md); reads run on the I/O thread as one
// consistent state, writes are kRun ops on the writer at the command's place in the batch.
#include <cerrno>
#include <climits>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "resp/numbers.h"
#include "server/blocking.h"
#include "server/collection.h"
#include "server/collection_commands.h"
#include "server/command.h"
#include "server/list.h"
#include "server/notify.h"
#include "server/session.h"
#include "server/state.h"
#include "server/stats_clock.h"
#include "store/format.h"

namespace keg::server {
namespace {

using store::OpResult;

constexpr uint8_t kList = store::format::kTypeList;

struct Result {
  std::string error;
  int64_t number = 0;
  bool exists = false;   // the key was there before (LPOP; a push: `new` otherwise)
  bool deleted = false;  // the change emptied the key
  std::vector<std::string> values;
  std::vector<ServedPop> served;  // blocked clients this command's push served (blocking.h)
};

// The replies of the blocked clients a push served, once its group is durable (in a finisher).
void SendServed(Result& res, std::span<OpResult> r) {
  if (res.served.empty()) return;
  BlockingRegistry::SendReplies(res.served, r.empty() ? store::Status::OK() : r[0].error);
}

// The body of a list command's kRun op on the writer (EditThenServe); `serve`: serve the clients
// blocked on the list in this group (a push).
template <class Change>
void EditList(store::Txn& txn, ServerState& server, uint32_t db, const std::string& key, Result& res, bool serve,
              Change&& change) {
  EditThenServe<ListEdit>(txn, server, serve ? &server.blocking : nullptr, db, key, res, change);
}

// Queues the change of the list at `key` as one kRun op (EditList; not a push: Push serves).
void UpdateList(Ctx& c, std::string key, std::shared_ptr<Result> res, std::function<bool(ListEdit&, Result&)> change) {
  c.batch().Run([res, server = &c.server(), db = c.db(), key, change = std::move(change)](store::Txn& txn) {
    EditList(txn, *server, db, key, *res, /*serve=*/false, change);
  }, key);
}

// Parses LEFT / RIGHT (Redis's getListPositionFromObjectOrReply).
bool ParseWhere(std::string_view arg, bool* left) {
  if (EqualsIgnoreCase(arg, "left")) {
    *left = true;
  } else if (EqualsIgnoreCase(arg, "right")) {
    *left = false;
  } else {
    return false;
  }
  return true;
}

// A push's state, shared by its function on the writer and its finisher: one allocation, and the
// closures hold only this pointer (store::InlineFunction keeps them without allocating).
struct PushJob {
  PushJob(Ctx& c, bool l, bool x)
      : server(&c.server()),
        db(c.db()),
        key(c.arg(1)),
        values(c.args().subspan(2)),
        notify_key(NotifyKey(c, kNotifyList | kNotifyNew, c.arg(1))),
        left(l),
        only_existing(x) {}
  ServerState* const server;
  const uint32_t db;
  const std::string key;
  const ArgCopy values;
  const std::optional<std::string> notify_key;  // set when list or new events are wanted
  const bool left;
  const bool only_existing;  // LPUSHX / RPUSHX
  Result res;                // written on the writer, read by the finisher after
};

// LPUSH / RPUSH / LPUSHX / RPUSHX key element [element ...].
void Push(Ctx& c, bool left, bool only_existing) {
  auto job = std::make_shared<PushJob>(c, left, only_existing);
  // A push serves the clients blocked on the list in its own group (Redis serves them before the
  // next command); inside EXEC or a script, the EXEC's or script's last op serves them
  // (BlockingRegistry::ServeWritten).
  const bool serve = !c.inline_only();
  if (serve) PropagateServing(c, std::shared_ptr<std::vector<ServedPop>>(job, &job->res.served));
  c.batch().Run([job, serve](store::Txn& txn) {
    EditList(txn, *job->server, job->db, job->key, job->res, serve, [&job = *job](ListEdit& l, Result& r) {
      if (job.only_existing && !l.exists()) return false;
      for (size_t i = 0; i < job.values.size(); ++i) l.Push(job.left, job.values[i]);
      r.number = static_cast<int64_t>(l.size());
      return true;
    });
  }, job->key);
  // `new` when the push created the list (as Redis's dbAdd), then lpush / rpush; then the events
  // of the blocked clients it served.
  c.Then([job](std::span<OpResult> r, resp::ReplyBuffer& out) {
    Result& res = job->res;
    if (job->notify_key && !r.empty() && r[0].applied && res.error.empty()) {
      if (!res.exists) NotifyKeyspaceEvent(*job->server, job->db, kNotifyNew, "new", *job->notify_key);
      NotifyKeyspaceEvent(*job->server, job->db, kNotifyList, job->left ? "lpush" : "rpush", *job->notify_key);
    }
    SendServed(res, r);
    if (!res.error.empty()) return out.Error(res.error);
    out.Integer(res.number);
  });
}

void Lpush(Ctx& c) { Push(c, true, false); }
void Rpush(Ctx& c) { Push(c, false, false); }
void Lpushx(Ctx& c) { Push(c, true, true); }
void Rpushx(Ctx& c) { Push(c, false, true); }

// The events of elements popped from `key` (listElementsRemoved): lpop / rpop, then del when the
// list went.
void NotifyPopped(ServerState& server, uint32_t db, const std::optional<std::string>& key, bool left, bool deleted) {
  if (!key) return;
  NotifyKeyspaceEvent(server, db, kNotifyList, left ? "lpop" : "rpop", *key);
  if (deleted) NotifyKeyspaceEvent(server, db, kNotifyGeneric, "del", *key);
}

// A pop's state, as PushJob's: one allocation.
struct PopJob {
  PopJob(Ctx& c, bool l, bool w, int64_t n)
      : server(&c.server()),
        db(c.db()),
        key(c.arg(1)),
        notify_key(NotifyKey(c, kNotifyList | kNotifyGeneric, c.arg(1))),
        left(l),
        with_count(w),
        count(n) {}
  ServerState* const server;
  const uint32_t db;
  const std::string key;
  const std::optional<std::string> notify_key;  // set when list or generic events are wanted
  const bool left;
  const bool with_count;
  const int64_t count;
  std::string one;  // the element popped without a count (no vector for it)
  Result res;       // written on the writer, read by the finisher after
};

// LPOP / RPOP key [count].
void Pop(Ctx& c, bool left) {
  if (c.argc() > 3) return c.Fail(WrongArity(c.command() != nullptr ? c.command()->name : "lpop"));
  const bool with_count = c.argc() == 3;
  int64_t count = 1;
  if (with_count) {
    if (!resp::ParseInt64(c.arg(2), &count) || count < 0) return c.Fail("value is out of range, must be positive");
  }
  // Nothing to pop: answered from a read, as Redis's pop of a missing key writes nothing.
  if (KeyAbsentNow(c, c.arg(1))) return with_count ? c.out().NullArray() : c.out().Null();
  auto job = std::make_shared<PopJob>(c, left, with_count, count);
  c.batch().Run([job](store::Txn& txn) {
    EditList(txn, *job->server, job->db, job->key, job->res, /*serve=*/false, [&job = *job](ListEdit& l, Result& r) {
      if (!l.exists() || job.count == 0) return false;
      if (!job.with_count) return l.Pop(job.left, &job.one);
      std::string v;
      for (int64_t i = 0; i < job.count && l.Pop(job.left, &v); ++i) r.values.push_back(std::move(v));
      return !r.values.empty();
    });
  }, job->key);
  c.Then([job](std::span<OpResult> r, resp::ReplyBuffer& out) {
    const Result& res = job->res;
    if (!res.error.empty()) return out.Error(res.error);
    if (!r.empty() && r[0].applied) NotifyPopped(*job->server, job->db, job->notify_key, job->left, res.deleted);
    if (!res.exists) return job->with_count ? out.NullArray() : out.Null();
    if (!job->with_count) return out.Bulk(job->one);
    out.ArrayHeader(res.values.size());
    for (const std::string& v : res.values) out.Bulk(v);
  });
}

void Lpop(Ctx& c) { Pop(c, true); }
void Rpop(Ctx& c) { Pop(c, false); }

void Llen(Ctx& c) {
  ListRead list(c);
  if (!list.Read(c.arg(1), 1, 0, [&] { c.out().Integer(0); })) return;
  c.out().Integer(static_cast<int64_t>(list.size()));
}

void Lindex(Ctx& c) {
  // The key first, then the index (Redis answers nil for a missing key whatever the index).
  int64_t index = 0;
  const bool valid = resp::ParseInt64(c.arg(2), &index);
  ListRead list(c);
  // A valid index reads that one element; an invalid one reads none (1..0; the error follows).
  if (!list.Read(c.arg(1), valid ? index : 1, valid ? index : 0, [&] { c.out().Null(); })) return;
  if (!valid) return c.out().Error(err::kNotInteger);
  // Redis's index: negative from the end; past either end is nil. Read normalised a negative
  // index that ran past the start to 0: check it here.
  const auto n = static_cast<int64_t>(list.size());
  if (index >= n || (index < 0 && index < -n) || list.elements().empty()) return c.out().Null();
  c.out().Bulk(list.elements()[0]);
}

void Lrange(Ctx& c) {
  int64_t start = 0;
  int64_t stop = 0;
  if (!resp::ParseInt64(c.arg(2), &start) || !resp::ParseInt64(c.arg(3), &stop)) {
    return c.out().Error(err::kNotInteger);
  }
  ListRead list(c);
  if (!list.Read(c.arg(1), start, stop, [&] { c.out().ArrayHeader(0); })) return;
  c.out().ArrayHeader(list.elements().size());
  for (std::string_view e : list.elements()) c.out().Bulk(e);
}

// LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len].
void Lpos(Ctx& c) {
  int64_t rank = 1;
  int64_t count = -1;  // -1: not given
  int64_t maxlen = 0;
  for (size_t j = 3; j < c.argc(); ++j) {
    const bool more = j + 1 < c.argc();
    if (EqualsIgnoreCase(c.arg(j), "rank") && more) {
      if (!resp::ParseInt64(c.arg(++j), &rank)) return c.out().Error(err::kNotInteger);
      if (rank == 0) {
        return c.out().Error(
            "RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to "
            "start from the end of the list");
      }
      if (rank == INT64_MIN) {
        return c.out().Error("value is out of range, value must between -9223372036854775807 and 9223372036854775807");
      }
    } else if (EqualsIgnoreCase(c.arg(j), "count") && more) {
      if (!resp::ParseInt64(c.arg(++j), &count) || count < 0) return c.out().Error("COUNT can't be negative");
    } else if (EqualsIgnoreCase(c.arg(j), "maxlen") && more) {
      if (!resp::ParseInt64(c.arg(++j), &maxlen) || maxlen < 0) return c.out().Error("MAXLEN can't be negative");
    } else {
      return c.out().Error(err::kSyntax);
    }
  }
  ListRead list(c);
  if (!list.Read(c.arg(1), 0, -1, [&] {
        if (count != -1) return c.out().ArrayHeader(0);
        c.out().Null();
      })) {
    return;
  }
  const bool backwards = rank < 0;
  const uint64_t skip = static_cast<uint64_t>(backwards ? -rank : rank) - 1;  // matches before the first reported
  const std::vector<std::string_view>& all = list.elements();
  const uint64_t n = all.size();
  const uint64_t limit = maxlen == 0 ? n : std::min<uint64_t>(n, static_cast<uint64_t>(maxlen));
  std::vector<int64_t> found;
  uint64_t matches = 0;
  for (uint64_t k = 0; k < limit; ++k) {
    const uint64_t i = backwards ? n - 1 - k : k;
    if (all[i] != c.arg(2)) continue;
    if (matches++ < skip) continue;
    found.push_back(static_cast<int64_t>(i));
    if (count == -1 || (count != 0 && found.size() >= static_cast<uint64_t>(count))) break;
  }
  if (count == -1) return found.empty() ? c.out().Null() : c.out().Integer(found[0]);
  c.out().ArrayHeader(found.size());
  for (int64_t i : found) c.out().Integer(i);
}

void Lset(Ctx& c) {
  auto res = std::make_shared<Result>();
  int64_t index = 0;
  const bool valid = resp::ParseInt64(c.arg(2), &index);
  UpdateList(c, std::string(c.arg(1)), res, [index, valid, value = std::string(c.arg(3))](ListEdit& l, Result& r) {
    if (!l.exists()) {
      r.error = "no such key";
      return false;
    }
    if (!valid) {
      r.error = std::string(err::kNotInteger);
      return false;
    }
    const auto n = static_cast<int64_t>(l.size());
    if (index >= n || index < -n) {
      r.error = "index out of range";
      return false;
    }
    l.Set(static_cast<uint64_t>(index < 0 ? n + index : index), value);
    return true;
  });
  c.Notify(kNotifyList, "lset", c.arg(1));
  c.Then([res](std::span<OpResult>, resp::ReplyBuffer& out) {
    if (!res->error.empty()) return out.Error(res->error);
    out.Ok();
  });
}

// LINSERT key BEFORE|AFTER pivot element.
void Linsert(Ctx& c) {
  bool after = false;
  if (EqualsIgnoreCase(c.arg(2), "after")) {
    after = true;
  } else if (!EqualsIgnoreCase(c.arg(2), "before")) {
    return c.Fail(std::string(err::kSyntax));
  }
  auto res = std::make_shared<Result>();
  UpdateList(c, std::string(c.arg(1)), res,
             [after, pivot = std::string(c.arg(3)), value = std::string(c.arg(4))](ListEdit& l, Result& r) {
               if (!l.exists()) return false;
               std::string e;
               for (uint64_t i = 0; i < l.size(); ++i) {
                 if (!l.At(i, &e)) return false;
                 if (e != pivot) continue;
                 l.Insert(after ? i + 1 : i, value);
                 r.number = static_cast<int64_t>(l.size());
                 return true;
               }
               r.number = -1;
               return false;
             });
  c.Notify(kNotifyList, "linsert", c.arg(1));
  c.Then([res](std::span<OpResult>, resp::ReplyBuffer& out) {
    if (!res->error.empty()) return out.Error(res->error);
    out.Integer(res->number);
  });
}

// LREM key count element.
void Lrem(Ctx& c) {
  int64_t count = 0;
  if (!resp::ParseInt64(c.arg(2), &count)) return c.Fail(std::string(err::kNotInteger));
  auto res = std::make_shared<Result>();
  UpdateList(c, std::string(c.arg(1)), res, [count, value = std::string(c.arg(3))](ListEdit& l, Result& r) {
    if (!l.exists()) return false;
    const uint64_t n = l.size();
    std::vector<std::string> all(n);
    for (uint64_t i = 0; i < n; ++i) {
      if (!l.At(i, &all[i])) return false;
    }
    const bool backwards = count < 0;
    const uint64_t limit = count == 0 ? UINT64_MAX : static_cast<uint64_t>(backwards ? -(count + 1) : count - 1) + 1;
    std::vector<bool> drop(n, false);
    uint64_t removed = 0;
    uint64_t first = n;
    for (uint64_t k = 0; k < n && removed < limit; ++k) {
      const uint64_t i = backwards ? n - 1 - k : k;
      if (all[i] != value) continue;
      drop[i] = true;
      ++removed;
      first = std::min(first, i);
    }
    if (removed == 0) return false;
    std::vector<std::string> rest;
    for (uint64_t i = first; i < n; ++i) {
      if (!drop[i]) rest.push_back(std::move(all[i]));
    }
    l.ReplaceFrom(first, rest);
    r.number = static_cast<int64_t>(removed);
    return true;
  });
  c.Then([res, server = &c.server(), db = c.db(), key = NotifyKey(c, kNotifyList | kNotifyGeneric, c.arg(1))](
             std::span<OpResult> r, resp::ReplyBuffer& out) {
    if (!res->error.empty()) return out.Error(res->error);
    if (key && !r.empty() && r[0].applied) {
      NotifyKeyspaceEvent(*server, db, kNotifyList, "lrem", *key);
      if (res->deleted) NotifyKeyspaceEvent(*server, db, kNotifyGeneric, "del", *key);
    }
    out.Integer(res->number);
  });
}

// LTRIM key start stop.
void Ltrim(Ctx& c) {
  int64_t start = 0;
  int64_t stop = 0;
  if (!resp::ParseInt64(c.arg(2), &start) || !resp::ParseInt64(c.arg(3), &stop)) {
    return c.Fail(std::string(err::kNotInteger));
  }
  auto res = std::make_shared<Result>();
  UpdateList(c, std::string(c.arg(1)), res, [start, stop](ListEdit& l, Result&) {
    if (!l.exists()) return false;
    uint64_t from = 0;
    uint64_t to = 0;
    if (list::NormalizeRange(start, stop, l.size(), &from, &to)) {
      l.Keep(from, to);
    } else {
      l.Keep(1, 0);  // nothing kept
    }
    if (!l.changed()) l.Touch();  // the whole list kept: still a change to WATCH and trackers, as Redis
    return true;
  });
  c.Then([res, server = &c.server(), db = c.db(), key = NotifyKey(c, kNotifyList | kNotifyGeneric, c.arg(1))](
             std::span<OpResult>, resp::ReplyBuffer& out) {
    if (!res->error.empty()) return out.Error(res->error);
    if (key && res->exists) {  // as Redis: ltrim even when nothing was removed
      NotifyKeyspaceEvent(*server, db, kNotifyList, "ltrim", *key);
      if (res->deleted) NotifyKeyspaceEvent(*server, db, kNotifyGeneric, "del", *key);
    }
    out.Ok();
  });
}

// Redis's getTimeoutFromObjectOrReply (seconds, fractional): the deadline in ms (0: for ever),
// or false with the error replied. A timeout past what a deadline can hold is out of range (Redis
// 7.0 overflows there).
}  // namespace

bool ParseTimeout(Ctx& c, std::string_view arg, int64_t* deadline_ms) {
  const std::string text(arg);
  char* end = nullptr;
  errno = 0;
  const long double v = text.empty() || std::isspace(static_cast<unsigned char>(text[0])) != 0
                            ? std::nanl("")
                            : std::strtold(text.c_str(), &end);
  if (std::isnan(v) || end != text.c_str() + text.size() || (errno == ERANGE && v != 0.0L)) {
    c.Fail("timeout is not a float or out of range");
    return false;
  }
  const long double ms = std::ceil(v * 1000.0L);
  if (ms < 0) {
    c.Fail("timeout is negative");
    return false;
  }
  const int64_t now = store::NowMs();
  if (!(ms < static_cast<long double>(INT64_MAX - now))) {
    c.Fail("timeout is out of range");
    return false;
  }
  *deadline_ms = ms == 0 ? 0 : now + static_cast<int64_t>(ms);
  return true;
}

// A pop that never waits, as one kRun op at the command's place: LMOVE, RPOPLPUSH and LMPOP, and
// the blocking pops inside MULTI or a script (where nothing blocks, as in Redis). A move's push
// serves the clients blocked on its destination (not inside EXEC or a script: blocking.h).
void PopOnce(Ctx& c, std::shared_ptr<BlockedPop> w) {
  w->db = c.db();
  ServerState* server = &c.server();
  auto reply = std::make_shared<ReplyWriter>();
  auto events = std::make_shared<std::function<void()>>();
  auto served = std::make_shared<std::vector<ServedPop>>();
  const bool serve = w->kind == BlockedPop::Kind::kMove && !c.inline_only();
  if (serve) c.client().ServesBlocked(served);
  auto prop = std::make_shared<PropagatedCommand>();
  // Replicas get the pop (a blocking one inside MULTI as the plain pop), then those it served.
  c.PropagateLate([prop, served](std::span<const OpResult>, std::vector<PropagatedCommand>* out) {
    BlockingRegistry::AppendPropagations(*served, out, prop.get());
  });
  c.batch().Run([server, w, reply, events, served, serve, prop](store::Txn& txn) {
    *reply = TryBlockedPop(txn, *server, *w, nullptr, events.get(), prop.get());
    if (*reply && serve) server->blocking.ServeNow(txn, w->db, w->dst, served.get());
  });
  c.Then([reply, events, served, null_array = w->null_array()](std::span<OpResult> r, resp::ReplyBuffer& out) {
    if (*events) (*events)();
    if (!served->empty()) BlockingRegistry::SendReplies(*served, r.empty() ? store::Status::OK() : r[0].error);
    if (*reply) return (*reply)(out);
    if (null_array) return out.NullArray();
    out.Null();
  });
}

bool ParseMpop(Ctx& c, size_t at, bool zset, BlockedPop* w) {
  int64_t numkeys = 0;
  if (!resp::ParseInt64(c.arg(at), &numkeys) || numkeys < 1) {
    c.Fail("numkeys should be greater than 0");
    return false;
  }
  if (numkeys > static_cast<int64_t>(c.argc() - at) - 2) {  // the keys and the end word must be there
    c.Fail(std::string(err::kSyntax));
    return false;
  }
  const size_t where_idx = at + 1 + static_cast<size_t>(numkeys);
  const std::string_view where = c.arg(where_idx);
  const bool valid = zset ? (EqualsIgnoreCase(where, "min") || EqualsIgnoreCase(where, "max"))
                          : ParseWhere(where, &w->left);
  if (!valid) {
    c.Fail(std::string(err::kSyntax));
    return false;
  }
  if (zset) w->left = EqualsIgnoreCase(where, "min");
  int64_t count = -1;
  for (size_t j = where_idx + 1; j < c.argc(); ++j) {
    if (count == -1 && EqualsIgnoreCase(c.arg(j), "count") && j + 1 < c.argc()) {
      if (!resp::ParseInt64(c.arg(++j), &count) || count < 1) {
        c.Fail("count should be greater than 0");
        return false;
      }
    } else {
      c.Fail(std::string(err::kSyntax));
      return false;
    }
  }
  w->zset = zset;
  w->kind = BlockedPop::Kind::kMpop;
  w->count = count == -1 ? 1 : count;
  w->keys.assign(c.args().begin() + static_cast<std::ptrdiff_t>(at + 1),
                 c.args().begin() + static_cast<std::ptrdiff_t>(where_idx));
  return true;
}

namespace {

// LMOVE source destination LEFT|RIGHT LEFT|RIGHT; RPOPLPUSH source destination (RIGHT LEFT).
std::shared_ptr<BlockedPop> MoveOf(Ctx& c, bool from_left, bool to_left) {
  auto w = std::make_shared<BlockedPop>();
  w->kind = BlockedPop::Kind::kMove;
  w->left = from_left;
  w->to_left = to_left;
  w->keys = {std::string(c.arg(1))};
  w->dst = c.arg(2);
  return w;
}

void Lmove(Ctx& c) {
  bool from_left = false;
  bool to_left = false;
  if (!ParseWhere(c.arg(3), &from_left) || !ParseWhere(c.arg(4), &to_left)) return c.Fail(std::string(err::kSyntax));
  PopOnce(c, MoveOf(c, from_left, to_left));
}

void Rpoplpush(Ctx& c) { PopOnce(c, MoveOf(c, false, true)); }

// LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count].
void Lmpop(Ctx& c) {
  auto w = std::make_shared<BlockedPop>();
  if (ParseMpop(c, 1, false, w.get())) PopOnce(c, std::move(w));
}

}  // namespace

// The blocking pops: one try now; when every key is empty, the client waits in the registry
// (blocking.h). In MULTI or a script, the try is all (PopOnce).
void BlockingPop(Ctx& c, std::shared_ptr<BlockedPop> w) {
  if (c.inline_only()) return PopOnce(c, std::move(w));
  const int64_t t0 = StatsNowNs();
  w->db = c.db();
  ServerState* server = &c.server();
  ClientSession* client = &c.client();
  w->client = client;
  w->client_id = client->id();
  w->link = client->link().Self();
  w->argv.assign(c.args().begin(), c.args().end());
  w->peer = client->peer();
  w->name = client->name();
  client->Block(w);
  client->link().WatchClose();  // keeps the connection while it waits; a hang-up ends the wait
  auto reply = std::make_shared<ReplyWriter>();
  auto served = std::make_shared<std::vector<ServedPop>>();
  store::WriteBatch batch;
  batch.SelectDb(w->db);
  auto events = std::make_shared<std::function<void()>>();
  auto prop = std::make_shared<PropagatedCommand>();
  batch.Run([server, w, reply, served, events, prop](store::Txn& txn) {
    *reply = TryBlockedPop(txn, *server, *w, nullptr, events.get(), prop.get());
    if (!*reply) {
      server->blocking.Add(w);  // where writes are serialized: no push slips between
      return;
    }
    server->blocking.ReplyComing(w);  // its invalidations after its reply
    if (w->kind == BlockedPop::Kind::kMove) {
      server->blocking.ServeNow(txn, w->db, w->dst, served.get());  // its push may serve others
    }
  });
  w->handler_usec = StatsSinceNs(t0) / 1000;  // (before the try: w is not changed once it may wait)
  server->store->Write(std::move(batch), [server, w, reply, served, events, prop](const store::Status& s,
                                                                                  std::vector<OpResult>) {
    // The writer role, the group durable: replicas get the pop as the plain one.
    if (s.ok() && server->repl.active()) server->repl.AppendCommands(BlockingRegistry::Propagations(*served, prop.get()));
    if (!s.ok()) {
      *reply = [text = StorageError(s)](resp::ReplyBuffer& out) { out.Error(text); };
    } else if (!*reply) {
      return;  // waiting (nothing popped, nobody served)
    }
    // Its events and reply, then those of the clients its move's push served: each on its client's
    // I/O thread behind the completions already on their way there (the push that filled the
    // list sends its lpush first), as BlockingRegistry::Finish.
    std::function<void()> popped = s.ok() ? std::move(*events) : nullptr;
    if (std::shared_ptr<net::Link> link = w->link.lock()) {
      ClientSession* popper = w->client;
      popper->DeliverInOrder(std::move(link), [popper, reply, served = s.ok(), popped = std::move(popped)] {
        if (popped) popped();
        popper->EndBlocked(*reply, served);
      });
    } else if (popped) {
      popped();  // the connection went; what it popped is popped all the same
    }
    BlockingRegistry::SendReplies(*served, s);
  });
}

namespace {

// BLPOP / BRPOP key [key ...] timeout.
void Bpop(Ctx& c, bool left) {
  auto w = std::make_shared<BlockedPop>();
  if (!ParseTimeout(c, c.arg(c.argc() - 1), &w->deadline_ms)) return;
  w->kind = BlockedPop::Kind::kPop;
  w->left = left;
  w->keys.assign(c.args().begin() + 1, c.args().end() - 1);
  BlockingPop(c, std::move(w));
}

void Blpop(Ctx& c) { Bpop(c, true); }
void Brpop(Ctx& c) { Bpop(c, false); }

// BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout; BRPOPLPUSH source destination timeout.
void Blmove(Ctx& c) {
  bool from_left = false;
  bool to_left = false;
  if (!ParseWhere(c.arg(3), &from_left) || !ParseWhere(c.arg(4), &to_left)) return c.Fail(std::string(err::kSyntax));
  auto w = MoveOf(c, from_left, to_left);
  if (ParseTimeout(c, c.arg(5), &w->deadline_ms)) BlockingPop(c, std::move(w));
}

void Brpoplpush(Ctx& c) {
  auto w = MoveOf(c, false, true);
  w->rpoplpush = true;
  if (ParseTimeout(c, c.arg(3), &w->deadline_ms)) BlockingPop(c, std::move(w));
}

// BLMPOP timeout numkeys key [key ...] LEFT|RIGHT [COUNT count].
void Blmpop(Ctx& c) {
  auto w = std::make_shared<BlockedPop>();
  if (ParseTimeout(c, c.arg(1), &w->deadline_ms) && ParseMpop(c, 2, false, w.get())) BlockingPop(c, std::move(w));
}

}  // namespace

void RegisterListCommands(std::vector<Command>* t) {
  const size_t first = t->size();
  constexpr uint32_t kW = kWrite;
  constexpr uint32_t kR = kReadOnly;
  t->push_back({"lpush", -3, kW | kFast, 1, 1, 1, Lpush, "@write @list @fast"});
  t->push_back({"rpush", -3, kW | kFast, 1, 1, 1, Rpush, "@write @list @fast"});
  t->push_back({"lpushx", -3, kW | kFast, 1, 1, 1, Lpushx, "@write @list @fast"});
  t->push_back({"rpushx", -3, kW | kFast, 1, 1, 1, Rpushx, "@write @list @fast"});
  t->push_back({"lpop", -2, kW | kFast, 1, 1, 1, Lpop, "@write @list @fast"});
  t->push_back({"rpop", -2, kW | kFast, 1, 1, 1, Rpop, "@write @list @fast"});
  t->push_back({"lset", 4, kW, 1, 1, 1, Lset, "@write @list @slow"});
  t->push_back({"linsert", 5, kW, 1, 1, 1, Linsert, "@write @list @slow"});
  t->push_back({"lrem", 4, kW, 1, 1, 1, Lrem, "@write @list @slow"});
  t->push_back({"ltrim", 4, kW, 1, 1, 1, Ltrim, "@write @list @slow"});
  t->push_back({"lmove", 5, kW, 1, 2, 1, Lmove, "@write @list @slow"});
  t->push_back({"rpoplpush", 3, kW, 1, 2, 1, Rpoplpush, "@write @list @slow"});
  t->push_back({"lmpop", -4, kW | kMovableKeys, 0, 0, 0, Lmpop, "@write @list @slow"});
  t->push_back({"blpop", -3, kW | kBlocking | kNoScript, 1, -2, 1, Blpop, "@write @list @slow @blocking"});
  t->push_back({"brpop", -3, kW | kBlocking | kNoScript, 1, -2, 1, Brpop, "@write @list @slow @blocking"});
  t->push_back({"blmove", 6, kW | kBlocking | kNoScript, 1, 2, 1, Blmove, "@write @list @slow @blocking"});
  t->push_back({"brpoplpush", 4, kW | kBlocking | kNoScript, 1, 2, 1, Brpoplpush, "@write @list @slow @blocking"});
  t->push_back({"blmpop", -5, kW | kBlocking | kMovableKeys, 0, 0, 0, Blmpop, "@write @list @slow @blocking"});
  t->push_back({"llen", 2, kR | kFast, 1, 1, 1, Llen, "@read @list @fast"});
  t->push_back({"lindex", 3, kR, 1, 1, 1, Lindex, "@read @list @slow"});
  t->push_back({"lrange", 4, kR, 1, 1, 1, Lrange, "@read @list @slow"});
  t->push_back({"lpos", -3, kR, 1, 1, 1, Lpos, "@read @list @slow"});
  for (size_t i = first; i < t->size(); ++i) {
    Command& cmd = (*t)[i];
    cmd.value_type = kList;
    // The elements they read of a large list, fetched off the event loop when cold.
    if (cmd.name == "lrange" || cmd.name == "lindex") cmd.first_member = kListRange;
  }
}

}  // namespace keg::server
