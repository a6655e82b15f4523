// Keyspace commands: DEL, EXISTS, the EXPIRE and TTL families, TYPE, KEYS, SCAN, RANDOMKEY,
// RENAME, DBSIZE, FLUSHDB / FLUSHALL.
#include <algorithm>
#include <climits>
#include <memory>

#include "resp/numbers.h"
#include "server/collection.h"
#include "server/list.h"
#include "server/collection_commands.h"
#include "server/command.h"
#include "server/notify.h"
#include "server/glob.h"
#include "server/rdb.h"
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

int64_t MaxBulk(Ctx& c) { return c.server().proto_max_bulk_len.load(std::memory_order_relaxed); }

void Del(Ctx& c) {
  for (size_t i = 1; i < c.argc(); ++i) {
    c.batch().Delete(std::string(c.arg(i)));
    c.Notify(kNotifyGeneric, "del", c.arg(i));
  }
  c.Then([](std::span<OpResult> r, resp::ReplyBuffer& out) {
    int64_t n = 0;
    for (const OpResult& x : r) n += x.applied ? 1 : 0;
    out.Integer(n);
  });
}

void Exists(Ctx& c) {
  int64_t n = 0;
  std::vector<bool> missing(c.argc(), false);
  c.ReadTogether(c.argc() - 1, [&] {  // the keys of a batch are all there or none
    n = 0;
    for (size_t i = 1; i < c.argc(); ++i) {
      ValueView v;
      const store::Status s = c.Get(c.arg(i), &v);
      missing[i] = s.IsNotFound();
      if (s.ok()) ++n;
    }
  });
  for (size_t i = 1; i < c.argc(); ++i) {
    if (missing[i]) c.NotifyNow(kNotifyKeyMiss, "keymiss", c.arg(i));
  }
  c.out().Integer(n);
}

void Type(Ctx& c) {
  ValueView v;
  c.out().SimpleString(c.Get(c.arg(1), &v).ok() ? TypeName(v.type) : "none");
}

// TTL family: -2 missing, -1 no expiry.
void TtlWith(Ctx& c, bool ms, bool absolute) {
  ValueView v;
  if (!c.Get(c.arg(1), &v).ok()) return c.out().Integer(-2);
  if (v.expire_at_ms == 0) return c.out().Integer(-1);
  if (absolute) return c.out().Integer(ms ? v.expire_at_ms : v.expire_at_ms / 1000);
  int64_t left = v.expire_at_ms - store::NowMs();
  if (left < 0) left = 0;
  c.out().Integer(ms ? left : (left + 500) / 1000);
}
void Ttl(Ctx& c) { TtlWith(c, false, false); }
void Pttl(Ctx& c) { TtlWith(c, true, false); }
void Expiretime(Ctx& c) { TtlWith(c, false, true); }
void Pexpiretime(Ctx& c) { TtlWith(c, true, true); }

// EXPIRE key n [NX|XX|GT|LT] and its three siblings.
void ExpireWith(Ctx& c, bool seconds, bool absolute) {
  // Options first, then the number, in Redis's order (so a bad option wins over a bad number).
  bool nx = false, xx = false, gt = false, lt = false;
  for (size_t i = 3; i < c.argc(); ++i) {
    const std::string opt = ToLower(c.arg(i));
    if (opt == "nx") nx = true;
    else if (opt == "xx") xx = true;
    else if (opt == "gt") gt = true;
    else if (opt == "lt") lt = true;
    else return c.Fail("Unsupported option " + std::string(c.arg(i)));
  }
  if (nx && (xx || gt || lt)) return c.Fail("NX and XX, GT or LT options at the same time are not compatible");
  if (gt && lt) return c.Fail("GT and LT options at the same time are not compatible");
  int64_t when = 0;
  if (!resp::ParseInt64(c.arg(2), &when)) return c.Fail(std::string(err::kNotInteger));
  const std::string invalid = "invalid expire time in '" + ToLower(c.arg(0)) + "' command";
  if (seconds) {
    if (when > INT64_MAX / 1000 || when < INT64_MIN / 1000) return c.Fail(invalid);
    when *= 1000;
  }
  const int64_t now = store::NowMs();
  if (!absolute) {
    // Only a sum past INT64_MAX is refused, as Redis's check: a negative time plus now (> 0)
    // cannot wrap, and is past (PEXPIRE k -9223372036854775808 deletes k, as there).
    if (when > INT64_MAX - now) return c.Fail(invalid);
    when += now;
  }
  // A time already past (as Redis's checkAlreadyExpired: at or before now) deletes the key. It is
  // decided here, once: the store compares an expiry with its group's clock, which inside a script
  // started before this handler ran (EXPIRE k 0 then kept k for a millisecond, and the script's
  // next write to k met the old value), so a past time goes to it as 1 ms after the epoch, past
  // for any clock (and never 0, which means "persist" there). The conditions compare the same
  // way with it: the key's own expiry, when it has one, is in the future.
  const bool past = when <= now;
  // XX may come with GT or LT, and both must hold (GT alone already needs an expiry).
  const store::ExpireCondition cond = nx         ? store::ExpireCondition::kNX
                                      : gt       ? store::ExpireCondition::kGT
                                      : xx && lt ? store::ExpireCondition::kXXLT
                                      : xx       ? store::ExpireCondition::kXX
                                      : lt       ? store::ExpireCondition::kLT
                                                 : store::ExpireCondition::kAlways;
  c.batch().Expire(std::string(c.arg(1)), past ? 1 : when, cond);
  if (c.propagating()) {
    // An absolute time in milliseconds (a DEL when it has passed), as Redis propagates EXPIRE.
    if (past) {
      c.PropagateAs({"DEL", c.arg(1)});
    } else {
      const std::string at = std::to_string(when);
      c.PropagateAs({"PEXPIREAT", c.arg(1), at});
    }
  }
  c.Notify(kNotifyGeneric, past ? "del" : "expire", c.arg(1));
  c.Then([](std::span<OpResult> r, resp::ReplyBuffer& out) { out.Integer(r[0].applied ? 1 : 0); });
}
void Expire(Ctx& c) { ExpireWith(c, true, false); }
void Pexpire(Ctx& c) { ExpireWith(c, false, false); }
void Expireat(Ctx& c) { ExpireWith(c, true, true); }
void Pexpireat(Ctx& c) { ExpireWith(c, false, true); }

void Persist(Ctx& c) {
  c.batch().Expire(std::string(c.arg(1)), 0);
  c.Notify(kNotifyGeneric, "persist", c.arg(1));
  c.Then([](std::span<OpResult> r, resp::ReplyBuffer& out) { out.Integer(r[0].applied ? 1 : 0); });
}

// Walks of the keyspace read every key from its record: when the data files are not all in the
// page cache (Store::MaybeCold) the walk runs on the read pool and the reply comes in the
// command's place once it is done, so no event loop waits for the disk. `walk` runs on either
// thread and returns the reply's writer. Inside EXEC these come from Ctx::keyspace instead.
using ReplyFn = std::function<void(resp::ReplyBuffer&)>;
void WalkOffTheLoop(Ctx& c, std::function<ReplyFn()> walk) {
  ColdReads* pool = c.server().cold_reads.get();
  if (pool == nullptr || c.inline_only() || !c.server().store->MaybeCold()) {
    walk()(c.out());
    return;
  }
  ClientSession* client = &c.client();
  std::shared_ptr<net::Link> keep = client->link().Self();
  client->Suspend();
  pool->Run([walk = std::move(walk), client, keep] {
    ReplyFn reply = walk();
    keep->Post([client, reply = std::move(reply)] {
      reply(client->link().out());
      client->Finish();
    });
  });
}

void Keys(Ctx& c) {
  const std::string pattern(c.arg(1));
  const bool all = pattern == "*";
  if (c.keyspace() != nullptr) {
    std::vector<std::string> keys;
    for (const std::string& k : c.keyspace()->key_list) {
      if (all || GlobMatch(pattern, k)) keys.push_back(k);
    }
    c.out().ArrayHeader(keys.size());
    for (const std::string& k : keys) c.out().Bulk(k);
    return;
  }
  store::Store* store = c.server().store.get();
  WalkOffTheLoop(c, [store, db = c.db(), pattern, all]() -> ReplyFn {
    auto keys = std::make_shared<std::vector<std::string>>();
    // The keys of one moment, as Redis's KEYS (which stops the server for the walk): a walk
    // beside writes listed a key renamed meanwhile under both names or neither, and the keys of
    // both databases across a SWAPDB. A walk that writes keep landing beside ends holding the
    // writer off (Store::ReadTogether).
    store->ReadTogether([&] {
      keys->clear();
      uint64_t cursor = 0;
      do {
        cursor = store->Scan(db, cursor, 1024, [&](std::string_view k, int64_t) {
          if (all || GlobMatch(pattern, k)) keys->emplace_back(k);
        });
      } while (cursor != 0);
    });
    return [keys](resp::ReplyBuffer& out) {
      out.ArrayHeader(keys->size());
      for (const std::string& k : *keys) out.Bulk(k);
    };
  });
}

void Scan(Ctx& c) {
  ScanArgs a;
  if (const std::string_view e = ParseScanArgs(c.args(), &a); !e.empty()) return c.Error(e);
  // SCAN TYPE: each key's type is read from its record (one lookup per key matched).
  if (c.keyspace() != nullptr) {
    std::vector<std::string> keys;
    for (const std::string& k : c.keyspace()->key_list) {
      if (a.use_pattern && !GlobMatch(a.pattern, k)) continue;
      store::ValueView v;
      if (!a.type.empty() && !(c.Get(k, &v).ok() && TypeName(v.type) == a.type)) continue;
      keys.push_back(k);
    }
    c.out().ArrayHeader(2);
    c.out().Bulk(std::to_string(c.keyspace()->keys));
    c.out().ArrayHeader(keys.size());
    for (const std::string& k : keys) c.out().Bulk(k);
    return;
  }
  store::Store* store = c.server().store.get();
  WalkOffTheLoop(c, [store, db = c.db(), type = a.type, pattern = std::string(a.pattern), use_pattern = a.use_pattern,
                     cursor = a.cursor, count = static_cast<size_t>(a.count)]() -> ReplyFn {
    auto keys = std::make_shared<std::vector<std::string>>();
    const uint64_t next = store->Scan(db, cursor, count, [&](std::string_view k, int64_t) {
      if (!use_pattern || GlobMatch(pattern, k)) keys->emplace_back(k);
    });
    if (!type.empty()) {
      std::erase_if(*keys, [&](const std::string& k) {
        store::ValueView v;
        return !(store->Get(db, k, &v).ok() && TypeName(v.type) == type);
      });
    }
    return [keys, next](resp::ReplyBuffer& out) {
      out.ArrayHeader(2);
      out.Bulk(std::to_string(next));
      out.ArrayHeader(keys->size());
      for (const std::string& k : *keys) out.Bulk(k);
    };
  });
}

void Randomkey(Ctx& c) {
  if (c.keyspace() != nullptr) {
    if (c.keyspace()->key_list.empty()) return c.out().Null();
    return c.out().Bulk(c.keyspace()->key_list.front());
  }
  store::Store* store = c.server().store.get();
  WalkOffTheLoop(c, [store, db = c.db()]() -> ReplyFn {
    auto key = std::make_shared<std::string>();
    bool found = false;
    // (Together: the database's keydir and the key read from it are of one moment, SWAPDB or not.)
    store->ReadTogether([&] { found = store->RandomKey(db, key.get()); });
    if (!found) return [](resp::ReplyBuffer& out) { out.Null(); };
    return [key](resp::ReplyBuffer& out) { out.Bulk(*key); };
  });
}

// What each reads inside EXEC (Command::keyspace).
bool DbsizeQuery(std::span<const std::string_view>, store::KeysQuery* q) {
  q->mode = store::KeysQuery::Mode::kCount;
  return true;
}
bool KeysAllQuery(std::span<const std::string_view>, store::KeysQuery* q) {
  q->mode = store::KeysQuery::Mode::kAll;
  return true;
}
bool RandomkeyQuery(std::span<const std::string_view>, store::KeysQuery* q) {
  q->mode = store::KeysQuery::Mode::kRandom;
  return true;
}
bool ScanQuery(std::span<const std::string_view> args, store::KeysQuery* q) {
  ScanArgs a;
  if (!ParseScanArgs(args, &a).empty()) return false;
  q->mode = store::KeysQuery::Mode::kScan;
  q->cursor = a.cursor;
  q->count = static_cast<size_t>(a.count);
  return true;
}

// DBSIZE: counted on the writer, after this connection's writes and the lazy expiries of its
// reads (Redis's DBSIZE sees both). Inside EXEC, at its place in the transaction (Ctx::keyspace).
void Dbsize(Ctx& c) {
  if (c.keyspace() != nullptr) return c.out().Integer(static_cast<int64_t>(c.keyspace()->keys));
  if (c.inline_only()) return c.out().Integer(static_cast<int64_t>(c.server().store->KeyCount(c.db())));
  ClientSession* client = &c.client();
  std::shared_ptr<net::Link> keep = client->link().Self();
  client->Suspend();
  c.server().store->KeyCountAsync(c.db(), [client, keep](uint64_t keys) {
    keep->Post([client, keys] {
      client->link().out().Integer(static_cast<int64_t>(keys));
      client->Finish();
    });
  });
}

// RENAME / RENAMENX: one batch, so the move is atomic. The source's value and expiry are captured by
// the op that deletes it and written by the op after it.
void RenameWith(Ctx& c, bool nx) {
  std::string src(c.arg(1));
  std::string dst(c.arg(2));
  struct Move {
    bool found = false;
    bool dst_exists = false;
    std::string value;
    int64_t expire_at_ms = 0;
    uint8_t type = 0;
    uint8_t kind = 0;
  };
  auto m = std::make_shared<Move>();
  if (src == dst) {
    c.batch().Update(src, [m](const ValueView* cur) {
      m->found = cur != nullptr;
      m->dst_exists = m->found;
      return UpdateDecision{};
    });
  } else {
    if (nx) {
      c.batch().Update(dst, [m](const ValueView* cur) {
        m->dst_exists = cur != nullptr;
        return UpdateDecision{};
      });
    }
    c.batch().Update(src, [m, nx](const ValueView* cur) {
      UpdateDecision d;
      if (cur == nullptr) return d;
      m->found = true;
      if (nx && m->dst_exists) return d;
      m->value.assign(cur->value);
      m->expire_at_ms = cur->expire_at_ms;
      m->type = cur->type;
      m->kind = cur->kind;  // a large collection's head moves alone: O(1)
      d.action = Action::kDelete;
      return d;
    });
    c.batch().Update(dst, [m, nx](const ValueView*) {
      UpdateDecision d;
      if (!m->found || (nx && m->dst_exists)) return d;
      d.action = Action::kPut;
      d.value = std::move(m->value);
      d.expire_at_ms = m->expire_at_ms;
      d.type = m->type;
      d.kind = m->kind;
      return d;
    });
    // Redis's order: the destination is added (`new`), then rename_from and rename_to.
    c.Notify(kNotifyNew, "new", dst);
    c.Notify(kNotifyGeneric, "rename_from", src, 1);
    c.Notify(kNotifyGeneric, "rename_to", dst);
  }
  c.Then([m, nx](std::span<OpResult>, resp::ReplyBuffer& out) {
    if (!m->found) {
      out.Error(err::kNoSuchKey);
    } else if (nx) {
      out.Integer(m->dst_exists ? 0 : 1);
    } else {
      out.Ok();
    }
  });
}
// A database index argument as Redis's getIntFromObjectOrReply reads it (an int), then checked
// against `databases`: the error text, or empty.
std::string DbIndex(Ctx& c, std::string_view arg, std::string_view not_int, uint32_t* db) {
  int32_t v = 0;
  if (std::string e = ParseIntArgument(arg, not_int, &v); !e.empty()) return e;
  if (v < 0 || v >= static_cast<int64_t>(c.server().store->Databases())) return "DB index is out of range";
  *db = static_cast<uint32_t>(v);
  return {};
}

// COPY source destination [DB db] [REPLACE]: the value, its type and its expiry, read and written
// at this command's place in the batch.
void Copy(Ctx& c) {
  bool replace = false;
  uint32_t to = c.db();
  for (size_t j = 3; j < c.argc(); ++j) {
    const std::string opt = ToLower(c.arg(j));
    if (opt == "replace") {
      replace = true;
    } else if (opt == "db" && j + 1 < c.argc()) {
      if (std::string e = DbIndex(c, c.arg(++j), {}, &to); !e.empty()) return c.Fail(std::move(e));
    } else {
      return c.Fail(std::string(err::kSyntax));
    }
  }
  if (to == c.db() && c.arg(1) == c.arg(2)) return c.Fail("source and destination objects are the same");
  struct Copied {
    bool copied = false;
    std::string error;  // an element of the source failed its check: nothing was copied
  };
  auto m = std::make_shared<Copied>();
  ServerState* server = &c.server();
  std::string dst(c.arg(2));
  // One kRun op: a large collection is copied element by element into a new incarnation (O(n),
  // as Redis copies); anything else is one record.
  c.batch().Run([m, server, from = c.db(), to, replace, src = std::string(c.arg(1)), dst](store::Txn& txn) {
    ValueView cur;
    if (const store::Status s = txn.Get(from, src, &cur); !s.ok()) {
      if (!s.IsNotFound()) m->error = CorruptionError(s);  // never taken for a missing source
      return;
    }
    ValueView there;
    if (!replace) {
      const store::Status s = txn.Get(to, dst, &there);
      if (!s.ok() && !s.IsNotFound()) m->error = CorruptionError(s);
      if (!s.IsNotFound()) return;
    }
    if (cur.kind == store::format::kKindHead && cur.type == store::format::kTypeList) {
      std::vector<std::string> items;
      if (const store::Status s = ListElements(txn, store::format::IncarnationOf(cur.value), &items); !s.ok()) {
        m->error = CorruptionError(s);
        return;
      }
      m->copied = true;
      const std::vector<std::string_view> views(items.begin(), items.end());
      WriteList(txn, *server, to, dst, views, false, cur.expire_at_ms);
      return;
    }
    if (cur.kind == store::format::kKindHead) {
      std::vector<std::string> items;
      const size_t stride = StrideOf(cur.type);
      const store::Status s =
          txn.ForEachElement(store::format::IncarnationOf(cur.value), [&](std::string_view k, std::string_view v) {
            items.emplace_back(k);
            if (stride == 2) items.emplace_back(v);
          });
      if (!s.ok()) {
        m->error = CorruptionError(s);
        return;
      }
      m->copied = true;
      const std::vector<std::string_view> views(items.begin(), items.end());
      WriteCollection(txn, *server, to, dst, cur.type, coll::kConverted, views, false, cur.expire_at_ms);
      return;
    }
    m->copied = true;
    store::WriteBatch::Op op;
    op.kind = store::WriteBatch::Kind::kPut;
    op.db = to;
    op.key = dst;
    op.value.assign(cur.value);
    op.type = cur.type;
    op.expire_at_ms = cur.expire_at_ms;
    store::OpResult r;
    txn.Execute(std::move(op), &r);
  }, dst);
  c.batch().mutable_ops().back().db = to;  // WATCH: the key written is the target's
  c.Notify(kNotifyNew, "new", c.arg(2), 0, to);
  c.Notify(kNotifyGeneric, "copy_to", c.arg(2), 0, to);
  c.Then([m](std::span<OpResult>, resp::ReplyBuffer& out) {
    if (!m->error.empty()) return out.Error(m->error);
    out.Integer(m->copied ? 1 : 0);
  });
}

// DUMP key: the value in Redis's DUMP format (server/rdb.h), or nil.
void Dump(Ctx& c) {
  std::string payload;
  int64_t expire_at_ms = 0;
  const int found = DumpKey(c, c.arg(1), &payload, &expire_at_ms);
  if (found < 0) return;  // the reply is written
  if (found == 0) return c.out().Null();
  c.out().Bulk(payload);
}

// RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f], with Redis 7.0's checks in its
// order: options, then (on the writer, at this command's place) BUSYKEY, then the TTL and the
// payload. IDLETIME sets the key's access clock; keg keeps no LFU data, so FREQ is checked and
// otherwise ignored.
void Restore(Ctx& c) {
  bool replace = false;
  bool absttl = false;
  bool idle = false;
  int64_t idle_seconds = 0;
  bool freq = false;
  for (size_t j = 4; j < c.argc(); ++j) {
    const std::string opt = ToLower(c.arg(j));
    const bool more = j + 1 < c.argc();
    int64_t n = 0;
    if (opt == "replace") {
      replace = true;
    } else if (opt == "absttl") {
      absttl = true;
    } else if (opt == "idletime" && more && !freq) {
      if (!resp::ParseInt64(c.arg(++j), &n)) return c.Fail(std::string(err::kNotInteger));
      if (n < 0) return c.Fail("Invalid IDLETIME value, must be >= 0");
      idle = true;
      idle_seconds = n;
    } else if (opt == "freq" && more && !idle) {
      if (!resp::ParseInt64(c.arg(++j), &n)) return c.Fail(std::string(err::kNotInteger));
      if (n < 0 || n > 255) return c.Fail("Invalid FREQ value, must be >= 0 and <= 255");
      freq = true;
    } else {
      return c.Fail(std::string(err::kSyntax));
    }
  }
  // Errors that Redis gives only after BUSYKEY are decided here and replied from the writer.
  std::string error;
  int64_t ttl = 0;
  rdb::Loaded loaded;
  if (!resp::ParseInt64(c.arg(2), &ttl)) {
    error = err::kNotInteger;
  } else if (ttl < 0) {
    error = "Invalid TTL value, must be >= 0";
  } else {
    switch (rdb::LoadValue(c.arg(3), static_cast<uint64_t>(MaxBulk(c)), &loaded)) {
      case rdb::LoadResult::kOk:
        break;
      case rdb::LoadResult::kBadVersionOrChecksum:
        error = "DUMP payload version or checksum are wrong";
        break;
      case rdb::LoadResult::kBadFormat:
        error = "Bad data format";
        break;
      case rdb::LoadResult::kUnsupportedType:
        error = "Bad data format: keg loads strings, hashes, sets, lists and sorted sets only (no streams yet)";
        break;
    }
  }
  int64_t at = 0;
  if (error.empty() && ttl > 0) {
    const int64_t now = store::NowMs();
    if (!absttl && ttl > INT64_MAX - now) {
      error = "invalid expire time in 'restore' command";  // now + ttl would overflow
    } else {
      at = absttl ? ttl : now + ttl;
    }
  }
  struct Outcome {
    std::string error;
    bool busy = false;
    bool existed = false;
    bool deleted = false;  // the payload's expiry had passed: an existing key went instead
  };
  auto o = std::make_shared<Outcome>();
  o->error = std::move(error);
  auto payload = std::make_shared<rdb::Loaded>(std::move(loaded));
  if (c.propagating()) {
    // Replicas get the expiry as an absolute time (ABSTTL), or a DEL when it had passed, as Redis.
    std::vector<std::string_view> args(c.args().begin(), c.args().end());
    const std::string at_text = std::to_string(at);
    if (at != 0 && !absttl) {
      args[2] = at_text;
      args.push_back("ABSTTL");
    }
    std::string restore;
    AppendCommand(&restore, args);
    std::string del;
    AppendCommand(&del, {"DEL", c.arg(1)});
    c.PropagateLate([o, db = c.db(), restore = std::move(restore), del = std::move(del)](
                        std::span<const OpResult>, std::vector<PropagatedCommand>* out) {
      out->push_back(PropagatedCommand{db, o->deleted ? del : restore});
    });
  }
  // One kRun op: a collection is stored whole or per element as the thresholds say (as Redis
  // converts on load).
  c.batch().Run([o, replace, at, payload, server = &c.server(), db = c.db(), key = std::string(c.arg(1))](store::Txn& txn) {
    ValueView cur;
    o->existed = txn.Get(db, key, &cur).ok();
    if (!replace && o->existed) {
      o->busy = true;
      return;
    }
    if (!o->error.empty()) return;
    if (at != 0 && at <= store::NowMs()) {  // already expired: the key goes (REPLACE), nothing is added
      if (o->existed) {
        store::WriteBatch::Op del;
        del.kind = store::WriteBatch::Kind::kDelete;
        del.db = db;
        del.key = key;
        store::OpResult r;
        txn.Execute(std::move(del), &r);
      }
      o->deleted = true;
      return;
    }
    if (payload->type != store::format::kTypeString && payload->elements.empty()) {
      o->error = "Bad data format";  // an empty collection is no key (Redis refuses such a payload)
      return;
    }
    // Replaces the key, whatever it holds, with the payload's expiry.
    WriteLoaded(txn, *server, db, key, *payload, at);
  }, std::string(c.arg(1)));
  ServerState* server = &c.server();
  // REPLACE deletes the old key and adds the new one: `new` even when the key existed (Redis).
  const bool notify = NotifyKey(c, kNotifyGeneric | kNotifyNew, c.arg(1)).has_value();
  c.Then([o, server, idle, idle_seconds, notify, replace, db = c.db(), key = std::string(c.arg(1))](std::span<OpResult> r,
                                                                                      resp::ReplyBuffer& out) {
    if (o->busy) return out.Error("-BUSYKEY Target key name already exists.");
    if (!o->error.empty()) return out.Error(o->error);
    if (notify && !r.empty() && r[0].applied) {
      if (!o->deleted && (replace || !o->existed)) NotifyKeyspaceEvent(*server, db, kNotifyNew, "new", key);
      NotifyKeyspaceEvent(*server, db, kNotifyGeneric, o->deleted ? "del" : "restore", key);
    }
    if (idle) server->access.SetIdle(key, idle_seconds, store::NowMs());
    out.Ok();
  });
}

// TOUCH key...: how many exist; their access time is now (RunHandler touches every key). The keys
// are read at one moment, as EXISTS's: read one by one, TOUCH b c answered 0 beside a SWAPDB and
// a transaction that each kept one of b, c in the database.
void Touch(Ctx& c) {
  std::vector<ValueView> views;
  std::vector<bool> found;
  c.LookupTogether(c.args().subspan(1), &views, &found);
  if (c.read_failed()) return c.ReplyReadError();
  c.out().Integer(std::count(found.begin(), found.end(), true));
}

// OBJECT ENCODING|REFCOUNT|IDLETIME|FREQ key, OBJECT HELP. keg stores bytes, not Redis objects: the
// answers are those Redis gives for the same string value (its encoding by content, the shared
// integers 0..9999 with their INT_MAX refcount), the idle time from the access clock, and FREQ's
// error for a server without an LFU maxmemory policy (keg has no eviction).
void Object(Ctx& c) {
  const std::string sub = ToLower(c.arg(1));
  if (sub == "help" && c.argc() == 2) {
    return Help(c, {"ENCODING <key>", "    Return the kind of internal representation used in order to store the value",
                    "    associated with a <key>.",
                    "FREQ <key>",
                    "    Return the access frequency index of the <key>. The returned integer is",
                    "    proportional to the logarithm of the recent access frequency of the key.",
                    "IDLETIME <key>",
                    "    Return the idle time of the <key>, that is the approximated number of",
                    "    seconds elapsed since the last access to the key.",
                    "REFCOUNT <key>",
                    "    Return the number of references of the value associated with the specified",
                    "    <key>."});
  }
  if (c.argc() != 3 || (sub != "encoding" && sub != "refcount" && sub != "idletime" && sub != "freq")) {
    return c.Error(SubcommandSyntaxError(c));
  }
  ValueView v;
  const bool found = c.Lookup(c.arg(2), &v);
  if (c.read_failed()) return c.ReplyReadError();
  if (!found) return c.out().Null();
  if (sub == "encoding") return c.out().Bulk(ValueEncoding(v));
  if (sub == "refcount") {
    int64_t n = 0;
    const bool shared = v.type == store::format::kTypeString && StringEncoding(v.value) == "int" &&
                        resp::ParseInt64(v.value, &n) && n >= 0 && n < 10000;
    return c.out().Integer(shared ? INT32_MAX : 1);
  }
  if (sub == "idletime") {
    return c.out().Integer(c.server().access.IdleSeconds(c.arg(2), store::NowMs(), c.server().start_ms));
  }
  c.Error("An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when "
          "switching between policies at runtime LRU and LFU data will take some time to adjust.");
}

void Rename(Ctx& c) { RenameWith(c, false); }
void Renamenx(Ctx& c) { RenameWith(c, true); }

// FLUSHDB / FLUSHALL [ASYNC|SYNC]: deletes every key in one op.
void Flush(Ctx& c) {
  if (c.argc() > 2) return c.Fail(std::string(err::kSyntax));
  if (c.argc() == 2) {
    const std::string opt = ToLower(c.arg(1));
    if (opt != "async" && opt != "sync") return c.Fail(std::string(err::kSyntax));
  }
  // On the writer, at this command's place: a write queued before it (in this pipeline, or earlier
  // in the same MULTI) is deleted too, never left behind by a scan that ran before it landed.
  if (EqualsIgnoreCase(c.arg(0), "flushdb")) {
    c.batch().DeleteDb();
  } else {
    c.batch().DeleteAll();
  }
  c.PropagateAlways();  // as Redis 7: replicas get every FLUSHDB / FLUSHALL, empty databases or not
  // FLUSHALL with save points set: Redis saves its (empty) RDB there and then, so
  // rdb_changes_since_last_save is 0 after it; keg's log holds the flush, durable as any write.
  bool saves = false;
  if (!EqualsIgnoreCase(c.arg(0), "flushdb")) {
    std::lock_guard lock(c.server().config_mu);
    saves = !c.server().config.save.empty();
  }
  c.Then([server = &c.server(), saves](std::span<OpResult>, resp::ReplyBuffer& out) {
    if (saves) {
      server->counters.changes_since_save = 0;
      server->last_save_s = store::NowMs() / 1000;
    }
    out.Ok();
  });
}

// MOVE key db: 1 when moved; 0 when the key is absent here or present there (Redis 7.0).
void Move(Ctx& c) {
  uint32_t to = 0;
  if (std::string e = DbIndex(c, c.arg(2), {}, &to); !e.empty()) return c.Fail(std::move(e));
  if (to == c.db()) return c.Fail("source and destination objects are the same");
  c.batch().Move(std::string(c.arg(1)), to);
  c.Notify(kNotifyGeneric, "move_from", c.arg(1));
  c.Then([server = &c.server(), to, key = NotifyKey(c, kNotifyGeneric, c.arg(1))](std::span<OpResult> r,
                                                                                 resp::ReplyBuffer& out) {
    const bool moved = !r.empty() && r[0].applied;
    if (moved && key) NotifyKeyspaceEvent(*server, to, kNotifyGeneric, "move_to", *key);
    out.Integer(moved ? 1 : 0);
  });
}

// SWAPDB index1 index2: O(1) (one record; the store swaps its database map).
void Swapdb(Ctx& c) {
  uint32_t a = 0;
  uint32_t b = 0;
  if (std::string e = DbIndex(c, c.arg(1), "invalid first DB index", &a); !e.empty()) return c.Fail(std::move(e));
  if (std::string e = DbIndex(c, c.arg(2), "invalid second DB index", &b); !e.empty()) return c.Fail(std::move(e));
  c.batch().SwapDb(a, b);
  c.Then([](std::span<OpResult>, resp::ReplyBuffer& out) { out.Ok(); });
}

}  // namespace

void RegisterKeyCommands(std::vector<Command>* t) {
  constexpr uint32_t kW = kWrite;
  constexpr uint32_t kR = kReadOnly;
  t->push_back({"del", -2, kW, 1, -1, 1, Del, "@keyspace @write @slow"});
  t->push_back({"unlink", -2, kW | kFast, 1, -1, 1, Del, "@keyspace @write @fast"});
  t->push_back({"exists", -2, kR | kFast | kNoTouch, 1, -1, 1, Exists, "@keyspace @read @fast"});
  t->push_back({"type", 2, kR | kFast | kNoTouch, 1, 1, 1, Type, "@keyspace @read @fast"});
  t->push_back({"ttl", 2, kR | kFast | kNoTouch, 1, 1, 1, Ttl, "@keyspace @read @fast"});
  t->push_back({"pttl", 2, kR | kFast | kNoTouch, 1, 1, 1, Pttl, "@keyspace @read @fast"});
  t->push_back({"expiretime", 2, kR | kFast | kNoTouch, 1, 1, 1, Expiretime, "@keyspace @read @fast"});
  t->push_back({"pexpiretime", 2, kR | kFast | kNoTouch, 1, 1, 1, Pexpiretime, "@keyspace @read @fast"});
  t->push_back({"expire", -3, kW | kFast, 1, 1, 1, Expire, "@keyspace @write @fast"});
  t->push_back({"pexpire", -3, kW | kFast, 1, 1, 1, Pexpire, "@keyspace @write @fast"});
  t->push_back({"expireat", -3, kW | kFast, 1, 1, 1, Expireat, "@keyspace @write @fast"});
  t->push_back({"pexpireat", -3, kW | kFast, 1, 1, 1, Pexpireat, "@keyspace @write @fast"});
  t->push_back({"persist", 2, kW | kFast, 1, 1, 1, Persist, "@keyspace @write @fast"});
  t->push_back({"keys", 2, kR, 0, 0, 0, Keys, "@keyspace @read @slow @dangerous"});
  t->back().keyspace = KeysAllQuery;
  t->push_back({"scan", -2, kR, 0, 0, 0, Scan, "@keyspace @read @slow"});
  t->back().keyspace = ScanQuery;
  t->push_back({"randomkey", 1, kR, 0, 0, 0, Randomkey, "@keyspace @read @slow"});
  t->back().keyspace = RandomkeyQuery;
  t->push_back({"dbsize", 1, kR | kFast, 0, 0, 0, Dbsize, "@keyspace @read @fast"});
  t->back().keyspace = DbsizeQuery;
  t->push_back({"rename", 3, kW | kWakes, 1, 2, 1, Rename, "@keyspace @write @slow"});
  t->push_back({"renamenx", 3, kW | kWakes | kFast, 1, 2, 1, Renamenx, "@keyspace @write @fast"});
  t->push_back({"copy", -3, kW | kWakes, 1, 2, 1, Copy, "@keyspace @write @slow"});
  t->push_back({"move", 3, kW | kWakes | kFast, 1, 1, 1, Move, "@keyspace @write @fast"});
  t->push_back({"swapdb", 3, kW | kWakes | kFast, 0, 0, 0, Swapdb, "@keyspace @write @fast @dangerous"});
  t->push_back({"dump", 2, kR, 1, 1, 1, Dump, "@keyspace @read @slow"});
  t->push_back({"touch", -2, kR | kFast, 1, -1, 1, Touch, "@keyspace @read @fast"});
  t->push_back({"object", -2, kNoTouch, 0, 0, 0, Object, "@slow",
                {{"encoding", 3, kR | kNoTouch, 2, 2, 1, nullptr, "@keyspace @read @slow"},
                 {"freq", 3, kR | kNoTouch, 2, 2, 1, nullptr, "@keyspace @read @slow"},
                 {"help", 2, kNoTouch, 0, 0, 0, nullptr, "@keyspace @slow"},
                 {"idletime", 3, kR | kNoTouch, 2, 2, 1, nullptr, "@keyspace @read @slow"},
                 {"refcount", 3, kR | kNoTouch, 2, 2, 1, nullptr, "@keyspace @read @slow"}}});
  t->push_back({"restore", -4, kW | kWakes, 1, 1, 1, Restore, "@keyspace @write @slow @dangerous"});
  t->push_back({"flushdb", -1, kW, 0, 0, 0, Flush, "@keyspace @write @slow @dangerous"});
  t->push_back({"flushall", -1, kW, 0, 0, 0, Flush, "@keyspace @write @slow @dangerous"});
}

}  // namespace keg::server
