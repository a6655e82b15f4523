#include "server/blocking.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <unordered_set>

#include "server/command.h"
#include "server/list.h"
#include "server/monitoring.h"
#include "server/notify.h"
#include "server/session.h"
#include "server/state.h"
#include "server/stats_clock.h"
#include "server/zset.h"

namespace keg::server {

ReplyWriter TryBlockedPop(store::Txn& txn, ServerState& s, const BlockedPop& w,
                          const std::string* only, std::function<void()>* events,
                          PropagatedCommand* prop, bool* other_type) {
  // What replicas get: the pop without blocking.
  auto propagate = [&](const std::string& key, size_t popped) {
    if (prop == nullptr) return;
    prop->db = w.db;
    prop->resp.clear();
    const std::string_view end = w.left ? "LEFT" : "RIGHT";
    if (w.kind == BlockedPop::Kind::kMove && w.rpoplpush) {
      AppendCommand(&prop->resp, {"RPOPLPUSH", key, w.dst});
    } else if (w.kind == BlockedPop::Kind::kMove) {
      AppendCommand(&prop->resp, {"LMOVE", key, w.dst, end, w.to_left ? "LEFT" : "RIGHT"});
    } else if (w.kind == BlockedPop::Kind::kPop) {
      AppendCommand(&prop->resp, {w.left ? "LPOP" : "RPOP", key});
    } else {
      const std::string n = std::to_string(popped);
      AppendCommand(&prop->resp, {w.left ? "LPOP" : "RPOP", key, n});
    }
  };
  auto notify = [&](const std::string& key, bool deleted, bool created = false) {
    if (events == nullptr) return;
    *events = [server = &s, db = w.db, key, deleted, created, left = w.left, move = w.kind == BlockedPop::Kind::kMove,
               to_left = w.to_left, dst = w.dst] {
      if (created) NotifyKeyspaceEvent(*server, db, kNotifyNew, "new", dst);
      if (move) NotifyKeyspaceEvent(*server, db, kNotifyList, to_left ? "lpush" : "rpush", dst);
      NotifyKeyspaceEvent(*server, db, kNotifyList, left ? "lpop" : "rpop", key);
      if (deleted) NotifyKeyspaceEvent(*server, db, kNotifyGeneric, "del", key);
    };
  };
  if (w.zset) return TryBlockedZpop(txn, s, w, only, events, prop, other_type);
  auto error = [](std::string text) -> ReplyWriter { return [text](resp::ReplyBuffer& out) { out.Error(text); }; };
  for (const std::string& key : w.keys) {
    if (only != nullptr && key != *only) continue;
    ListEdit src(txn, s, w.db, key);
    if (!src.Open()) {
      // Serving a key that became ready (a write to it) but holds another type now (LPUSH, DEL,
      // SET in one transaction): the client waits on, as Redis serves only lists.
      if (only != nullptr) {
        if (other_type != nullptr) *other_type = true;
        return nullptr;
      }
      return error(src.error());
    }
    if (src.size() == 0) continue;
    std::vector<std::string> values;
    if (w.kind == BlockedPop::Kind::kMove) {
      std::string v;
      if (key == w.dst) {  // a rotation
        if (!src.Pop(w.left, &v)) return error(src.error());
        src.Push(w.to_left, v);
        src.Commit();
        notify(key, false);
      } else {
        ListEdit dst(txn, s, w.db, w.dst);
        if (!dst.Open()) return error(dst.error());  // WRONGTYPE: nothing popped
        if (!src.Pop(w.left, &v)) return error(src.error());
        const bool created = !dst.exists();
        dst.Push(w.to_left, v);
        dst.Commit();
        src.Commit();
        notify(key, src.deleted(), created);
        s.watches.TouchKey(w.db, w.dst);
      }
      s.watches.TouchKey(w.db, key);
      propagate(key, 1);
      return [v = std::move(v)](resp::ReplyBuffer& out) { out.Bulk(v); };
    }
    const int64_t n = w.kind == BlockedPop::Kind::kMpop ? w.count : 1;
    std::string v;
    for (int64_t i = 0; i < n && src.Pop(w.left, &v); ++i) values.push_back(std::move(v));
    if (!src.error().empty()) return error(src.error());
    src.Commit();
    notify(key, src.deleted());
    s.watches.TouchKey(w.db, key);
    propagate(key, values.size());
    if (w.kind == BlockedPop::Kind::kPop) {
      return [key, v = std::move(values[0])](resp::ReplyBuffer& out) {
        out.ArrayHeader(2);
        out.Bulk(key);
        out.Bulk(v);
      };
    }
    return [key, values = std::move(values)](resp::ReplyBuffer& out) {
      out.ArrayHeader(2);
      out.Bulk(key);
      out.ArrayHeader(values.size());
      for (const std::string& e : values) out.Bulk(e);
    };
  }
  return nullptr;
}

BlockingRegistry::~BlockingRegistry() { Stop(); }

void BlockingRegistry::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string BlockingRegistry::Slot(uint32_t db, std::string_view key) { return Ctx::SnapshotKey(db, key); }

void BlockingRegistry::EnsureThread() {
  if (thread_.joinable() || stop_) return;
  thread_ = std::thread([this] { Loop(); });
}

void BlockingRegistry::Add(const std::shared_ptr<BlockedPop>& w) {
  // Before the client counts as blocked: whoever sees it counted (INFO blocked_clients) sees the
  // registry used too (a push then registers what it serves: PropagateServing), and the store
  // reports writes from now on.
  if (!used_.exchange(true)) server_.UpdateWriteReports();
  {
    std::lock_guard lock(mu_);
    if (w->cancelled || w->state != BlockedPop::State::kNew) return;
    // A pop that passed the read-only check on its I/O thread while this server was a primary and
    // reached the writer after REPLICAOF turned it into a replica: it blocked before the change, so
    // the change ends it (UnblockAll took mu_ after the mode changed, so it ran before this lock or
    // the mode is seen here). Waiting on would let the primary's stream serve it on this replica
    // alone. (On a writable replica a client may block, as in Redis.)
    if (server_.replica_of.active() && server_.replica_read_only.load(std::memory_order_relaxed) &&
        (w->client == nullptr || !w->client->master_link())) {
      w->state = BlockedPop::State::kDone;
      EndForRoleChange(*w);
      return;
    }
    w->state = BlockedPop::State::kWaiting;
    for (const std::string& key : w->keys) by_key_[Slot(w->db, key)].push_back(w);
    by_client_[w->client_id] = w;
    if (w->deadline_ms != 0) deadlines_.emplace(w->deadline_ms, w);
    count_.fetch_add(1, std::memory_order_relaxed);
    EnsureThread();
  }
  cv_.notify_all();  // a new deadline
}

void BlockingRegistry::RemoveLocked(const std::shared_ptr<BlockedPop>& w) {
  for (const std::string& key : w->keys) {
    auto it = by_key_.find(Slot(w->db, key));
    if (it == by_key_.end()) continue;
    std::erase(it->second, w);
    if (it->second.empty()) by_key_.erase(it);
  }
  if (auto it = by_client_.find(w->client_id); it != by_client_.end() && it->second == w) by_client_.erase(it);
  if (w->deadline_ms != 0) {
    for (auto [it, end] = deadlines_.equal_range(w->deadline_ms); it != end; ++it) {
      if (it->second == w) {
        deadlines_.erase(it);
        break;
      }
    }
  }
  count_.fetch_sub(1, std::memory_order_relaxed);
}

void BlockingRegistry::ReplyComing(const std::shared_ptr<BlockedPop>& w) {
  std::lock_guard lock(mu_);  // (the session cancels under mu_ before it goes: alive while set)
  if (!w->cancelled) w->client->ServedReplyComing();
}

void BlockingRegistry::Cancel(const std::shared_ptr<BlockedPop>& w) {
  std::lock_guard lock(mu_);
  w->cancelled = true;
  if (w->state == BlockedPop::State::kWaiting) {
    RemoveLocked(w);
    w->state = BlockedPop::State::kDone;
  }
}

bool BlockingRegistry::Unblock(uint64_t id, bool error) {
  std::shared_ptr<BlockedPop> w;
  {
    std::lock_guard lock(mu_);
    auto it = by_client_.find(id);
    if (it == by_client_.end() || it->second->state != BlockedPop::State::kWaiting) return false;
    w = it->second;
    RemoveLocked(w);
    w->state = BlockedPop::State::kDone;
  }
  if (error) {
    Finish(*w, [](resp::ReplyBuffer& out) { out.Error("-UNBLOCKED client unblocked via CLIENT UNBLOCK"); });
  } else {
    Finish(*w, nullptr);
  }
  return true;
}

void BlockingRegistry::UnblockAll() {
  std::vector<std::shared_ptr<BlockedPop>> all;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, w] : by_client_) {
      if (w->state == BlockedPop::State::kWaiting) all.push_back(w);
    }
    for (const auto& w : all) {
      RemoveLocked(w);
      w->state = BlockedPop::State::kDone;
    }
  }
  for (const auto& w : all) EndForRoleChange(*w);
}

void BlockingRegistry::EndForRoleChange(const BlockedPop& w) {
  std::shared_ptr<net::Link> link = w.link.lock();
  if (!link) return;  // the connection went
  net::Link* l = link.get();  // (Post keeps the connection alive until the task ran)
  link->Post([client = w.client, l] {
    client->EndBlocked([](resp::ReplyBuffer& out) { out.Error(kUnblockedByRoleChange); });
    l->CloseAfterReply();
  });
}

void BlockingRegistry::OnWritten(std::span<const store::Options::WrittenKey> keys) {
  if (count_.load(std::memory_order_relaxed) == 0) return;
  bool any = false;
  {
    std::lock_guard lock(mu_);
    for (const store::Options::WrittenKey& k : keys) {
      if (k.flush_all || !by_key_.contains(Slot(k.db, k.key))) continue;
      if (k.deferred) {
        held_[k.origin].emplace_back(k.db, std::string(k.key));
        any_held_.store(true, std::memory_order_relaxed);
        continue;
      }
      ready_.emplace_back(k.db, std::string(k.key));
      any = true;
    }
  }
  if (any) cv_.notify_all();
}

void BlockingRegistry::Release(uint64_t origin) {
  // (Relaxed is enough: OnWritten ran before the group's callback, which handed the EXEC's
  // completion to this thread through a lock.)
  if (!any_held_.load(std::memory_order_relaxed)) return;
  {
    std::lock_guard lock(mu_);
    auto it = held_.find(origin);
    if (it == held_.end()) return;
    for (auto& k : it->second) ready_.push_back(std::move(k));
    held_.erase(it);
    any_held_.store(!held_.empty(), std::memory_order_relaxed);
  }
  cv_.notify_all();
}

void BlockingRegistry::AddKeysOfDbsLocked(uint32_t a, uint32_t b, std::vector<std::pair<uint32_t, std::string>>* out) const {
  for (const auto& [id, w] : by_client_) {
    if (w->db != a && w->db != b) continue;
    for (const std::string& key : w->keys) out->emplace_back(w->db, key);
  }
}

void BlockingRegistry::OnSwapDb(uint32_t a, uint32_t b) {
  if (count_.load(std::memory_order_relaxed) == 0) return;
  bool any = false;
  {
    std::lock_guard lock(mu_);
    const size_t before = ready_.size();
    AddKeysOfDbsLocked(a, b, &ready_);
    any = ready_.size() != before;
  }
  if (any) cv_.notify_all();
}

void BlockingRegistry::Finish(const BlockedPop& w, ReplyWriter reply) {
  std::shared_ptr<net::Link> link = w.link.lock();
  if (!link) return;  // the connection went; what it popped is popped all the same
  // Behind the completions already on their way to the client's I/O thread.
  ClientSession* client = w.client;
  client->DeliverInOrder(std::move(link), [client, reply = std::move(reply)] {
    client->EndBlocked([&](resp::ReplyBuffer& out) {
      if (reply) return reply(out);
      out.NullArray();  // a timeout or CLIENT UNBLOCK: BLMOVE's too (BlockedPop::null_array)
    }, /*log=*/false);  // (a served one was logged when its reply was sent: SendReplies)
  });
}

void BlockingRegistry::Loop() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    if (!ready_.empty()) {
      std::vector<std::pair<uint32_t, std::string>> ready;
      ready.swap(ready_);
      lock.unlock();
      Serve(std::move(ready));
      lock.lock();
      continue;
    }
    const int64_t now = store::NowMs();
    std::vector<std::shared_ptr<BlockedPop>> expired;
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      std::shared_ptr<BlockedPop> w = deadlines_.begin()->second;
      if (w->state != BlockedPop::State::kWaiting) {  // being served: look again shortly
        break;
      }
      RemoveLocked(w);
      w->state = BlockedPop::State::kDone;
      expired.push_back(std::move(w));
    }
    if (!expired.empty()) {
      lock.unlock();
      for (const auto& w : expired) Finish(*w, nullptr);
      lock.lock();
      continue;
    }
    if (deadlines_.empty()) {
      cv_.wait(lock);
    } else {
      const int64_t first = deadlines_.begin()->first;
      const int64_t wait_ms = first > now ? first - now : 1;
      cv_.wait_for(lock, std::chrono::milliseconds(wait_ms));
    }
  }
}

void BlockingRegistry::ServeKeys(store::Txn& txn, std::vector<std::pair<uint32_t, std::string>> keys,
                                 std::vector<ServedPop>* served) {
  // A worklist: a served BLMOVE pushes to its destination, whose own clients come next.
  for (size_t next = 0; next < keys.size(); ++next) {
    const auto [db, key] = keys[next];
    const std::string slot = Slot(db, key);
    // Waiters this key's type does not serve (a BZPOPMIN's on a list): passed over, as Redis's
    // serveClientsBlockedOnListKey skips the clients not blocked on a list; those after them are
    // served.
    std::vector<const BlockedPop*> passed;
    for (;;) {
      std::shared_ptr<BlockedPop> w;
      {
        std::lock_guard lock(mu_);
        auto it = by_key_.find(slot);
        if (it == by_key_.end()) break;
        for (const auto& candidate : it->second) {
          if (candidate->state == BlockedPop::State::kWaiting &&
              std::find(passed.begin(), passed.end(), candidate.get()) == passed.end()) {
            w = candidate;
            break;
          }
        }
        if (!w) break;
        w->state = BlockedPop::State::kServing;  // claimed: neither a timeout nor UNBLOCK takes it now
      }
      std::function<void()> events;
      PropagatedCommand prop;
      const int64_t t0 = StatsNowNs();
      bool other_type = false;
      ReplyWriter reply = TryBlockedPop(txn, server_, *w, &key, &events, &prop, &other_type);
      const int64_t serve_usec = StatsSinceNs(t0) / 1000;
      std::lock_guard lock(mu_);
      if (!reply) {  // nothing (left) for it to pop: the client waits on
        if (w->cancelled) {
          RemoveLocked(w);
          w->state = BlockedPop::State::kDone;
        } else {
          w->state = BlockedPop::State::kWaiting;
        }
        if (!other_type) break;  // the key is empty or gone: nobody else gets anything either
        passed.push_back(w.get());
        continue;
      }
      RemoveLocked(w);
      w->state = BlockedPop::State::kDone;
      // Before the op's writes are applied (and their invalidations posted): those wait for it.
      // (Not cancelled, under mu_: the session is alive, as it cancels under mu_ before it goes.)
      if (!w->cancelled) w->client->ServedReplyComing();
      if (w->kind == BlockedPop::Kind::kMove && w->dst != key) keys.emplace_back(w->db, w->dst);
      served->push_back({std::move(w), std::move(reply), std::move(events), std::move(prop), &server_.slowlog, serve_usec});
    }
  }
}

void BlockingRegistry::ServeNow(store::Txn& txn, uint32_t db, const std::string& key, std::vector<ServedPop>* served) {
  if (count_.load(std::memory_order_relaxed) == 0) return;
  ServeKeys(txn, {{db, key}}, served);
}

void BlockingRegistry::ServeWritten(store::Txn& txn, size_t from, std::vector<ServedPop>* served) {
  if (count_.load(std::memory_order_relaxed) == 0) return;
  std::vector<std::pair<uint32_t, std::string>> keys;
  {
    std::unordered_set<std::string> seen;  // (a key comes once per record: linear, however many)
    std::lock_guard lock(mu_);
    txn.WrittenKeysFrom(from, [&](uint32_t db, std::string_view key) {
      std::string slot = Slot(db, key);
      if (by_key_.contains(slot) && seen.insert(std::move(slot)).second) keys.emplace_back(db, std::string(key));
    });
  }
  if (!keys.empty()) ServeKeys(txn, std::move(keys), served);
}

void BlockingRegistry::ServeSwapped(store::Txn& txn, uint32_t a, uint32_t b, std::vector<ServedPop>* served) {
  if (count_.load(std::memory_order_relaxed) == 0) return;
  std::vector<std::pair<uint32_t, std::string>> keys;
  {
    std::lock_guard lock(mu_);
    AddKeysOfDbsLocked(a, b, &keys);
  }
  if (!keys.empty()) ServeKeys(txn, std::move(keys), served);
}

void PropagateServing(Ctx& c, std::shared_ptr<std::vector<ServedPop>> served,
                      std::span<const std::string_view> as) {
  // (Not before any client ever blocked: a push's hot path stays as it was. A first wait that
  // starts between this handler and its op, in a group that then fails, is the one left out.)
  if (c.server().blocking.used()) c.client().ServesBlocked(served);
  if (!c.propagating()) return;
  PropagatedCommand own{c.db(), {}};
  AppendCommand(&own.resp, as.empty() ? c.args() : as);
  c.PropagateLate([served = std::move(served), own = std::move(own)](std::span<const store::OpResult>,
                                                                     std::vector<PropagatedCommand>* out) {
    BlockingRegistry::AppendPropagations(*served, out, &own);
  });
}

void BlockingRegistry::AppendPropagations(const std::vector<ServedPop>& served, std::vector<PropagatedCommand>* out,
                                           const PropagatedCommand* first) {
  if (first != nullptr && !first->resp.empty()) out->push_back(*first);
  for (const ServedPop& p : served) {
    if (!p.prop.resp.empty()) out->push_back(p.prop);
  }
}

std::vector<PropagatedCommand> BlockingRegistry::Propagations(const std::vector<ServedPop>& served,
                                                               const PropagatedCommand* first) {
  std::vector<PropagatedCommand> out;
  AppendPropagations(served, &out, first);
  return out;
}

void BlockingRegistry::SendReplies(std::vector<ServedPop>& served, const store::Status& s) {
  for (ServedPop& one : served) {
    if (s.ok()) {
      // Here, not on the served client's I/O thread: a command the serving client sends next (a
      // SLOWLOG RESET, a PUBLISH) comes after them, as in Redis.
      if (one.events) one.events();
      const BlockedPop& w = *one.waiter;
      const int64_t usec = w.handler_usec + one.serve_usec;
      if (one.slowlog != nullptr && one.slowlog->Wants(usec)) {
        const std::vector<std::string_view> args(w.argv.begin(), w.argv.end());
        one.slowlog->Add(args, RedactedArguments(args), usec, w.peer, w.name);
      }
      Finish(w, std::move(one.reply));
    } else {
      Finish(*one.waiter, [text = StorageError(s)](resp::ReplyBuffer& out) { out.Error(text); });
    }
  }
  served.clear();
}

void BlockingRegistry::Serve(std::vector<std::pair<uint32_t, std::string>> ready) {
  // One op serves every ready key's clients in their order, at one place among the writes.
  auto served = std::make_shared<std::vector<ServedPop>>();
  store::WriteBatch batch;
  batch.Run([this, ready = std::move(ready), served](store::Txn& txn) { ServeKeys(txn, ready, served.get()); });
  // The replies go once the pops are durable.
  server_.store->Write(std::move(batch), [this, served](const store::Status& s, std::vector<store::OpResult>) {
    if (s.ok() && server_.repl.active()) server_.repl.AppendCommands(Propagations(*served));
    SendReplies(*served, s);
  });
  cv_.notify_all();  // deadlines passed while serving
}

}  // namespace keg::server
