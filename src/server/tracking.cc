#include "server/tracking.h"

#include <algorithm>
#include <array>
#include <random>

#include "server/session.h"
#include "server/state.h"

namespace keg::server {
namespace {

// The keys of an invalidation as a RESP array, encoded once for all its receivers.
template <typename Keys>
std::shared_ptr<const std::string> EncodeKeys(const Keys& keys) {
  auto s = std::make_shared<std::string>("*" + std::to_string(std::size(keys)) + "\r\n");
  for (std::string_view k : keys) AppendBulk(s.get(), k);
  return s;
}

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

Tracking::Mode Tracking::Enable(ClientSession* session, uint64_t id, const Mode& mode) {
  std::lock_guard lock(mu_);
  auto [it, added] = clients_.try_emplace(id, Client{session, {}});
  Client& c = it->second;
  std::vector<std::string> prefixes = added ? std::vector<std::string>() : c.mode.prefixes;
  c.mode = mode;
  if (mode.bcast) {
    std::vector<std::string> wanted = mode.prefixes;
    if (wanted.empty()) wanted.emplace_back();  // the empty prefix: every key
    for (std::string& p : wanted) {
      if (std::find(prefixes.begin(), prefixes.end(), p) != prefixes.end()) continue;
      prefix_table_[p].push_back(id);
      prefixes.push_back(std::move(p));
    }
  }
  c.mode.prefixes = std::move(prefixes);
  clients_count_.store(clients_.size(), std::memory_order_relaxed);
  UpdateStoreHooks();
  return c.mode;
}

void Tracking::Disable(uint64_t id) {
  std::lock_guard lock(mu_);
  auto it = clients_.find(id);
  if (it == clients_.end()) return;
  for (const std::string& p : it->second.mode.prefixes) {
    auto pt = prefix_table_.find(p);
    if (pt == prefix_table_.end()) continue;
    std::erase(pt->second, id);
    if (pt->second.empty()) prefix_table_.erase(pt);
  }
  // Its ids in the table go lazily, as Redis's: an invalidation finds no such client and skips it.
  // With no tracking client left the whole table is such ids: it goes now (Redis empties it on
  // the next FLUSHALL, which keg's store reports only while someone tracks).
  clients_.erase(it);
  if (clients_.empty()) {
    table_.clear();
    table_size_.store(table_.size(), std::memory_order_relaxed);
    items_ = 0;
  }
  clients_count_.store(clients_.size(), std::memory_order_relaxed);
  UpdateStoreHooks();
}

void Tracking::UpdateStoreHooks() {
  // Writes are reported to OnWritten, and expired keys named, only while someone tracks.
  if (!server_.store) return;
  const bool on = !clients_.empty();
  server_.store->ReportWrites(on || server_.blocking.used());  // blocking pops need them too
  std::lock_guard config(server_.config_mu);
  server_.ApplyNotifyConfigLocked();  // it names expired keys for tracking too
}

std::string Tracking::CheckPrefixes(uint64_t id, std::span<const std::string_view> prefixes) const {
  auto overlap = [](std::string_view a, std::string_view b) {
    const size_t n = std::min(a.size(), b.size());
    return a.substr(0, n) == b.substr(0, n);
  };
  std::vector<std::string> current;
  {
    std::lock_guard lock(mu_);
    if (auto it = clients_.find(id); it != clients_.end()) current = it->second.mode.prefixes;
  }
  std::sort(current.begin(), current.end());  // Redis walks its prefixes in a radix tree's order
  for (size_t i = 0; i < prefixes.size(); ++i) {
    for (const std::string& c : current) {
      if (overlap(c, prefixes[i])) {
        return "Prefix '" + std::string(prefixes[i]) + "' overlaps with an existing prefix '" + c +
               "'. Prefixes for a single client must not overlap.";
      }
    }
    for (size_t j = i + 1; j < prefixes.size(); ++j) {
      if (overlap(prefixes[i], prefixes[j])) {
        return "Prefix '" + std::string(prefixes[i]) + "' overlaps with another provided prefix '" +
               std::string(prefixes[j]) + "'. Prefixes for a single client must not overlap.";
      }
    }
  }
  return {};
}

void Tracking::RememberLocked(uint64_t id, std::string_view key) {
  auto it = table_.find(key);
  if (it == table_.end()) {
    it = table_.emplace(std::string(key), std::vector<uint64_t>()).first;
    table_size_.store(table_.size(), std::memory_order_relaxed);
  }
  std::vector<uint64_t>& ids = it->second;
  if (std::find(ids.begin(), ids.end(), id) == ids.end()) {
    ids.push_back(id);
    ++items_;
  }
}

void Tracking::Remember(uint64_t id, std::span<const std::string_view> keys) {
  std::lock_guard lock(mu_);
  for (std::string_view key : keys) RememberLocked(id, key);
}

void Tracking::RememberInGroup(uint64_t id, std::span<const std::string_view> keys, size_t written) {
  std::lock_guard lock(mu_);
  for (std::string_view key : keys) group_reads_.push_back(GroupRead{id, std::string(key), written});
}

namespace {

// Tracking::Limit's caller: its own invalidations are gathered here instead of posted (this
// thread is its loop, so it can be read here).
thread_local const ClientSession* limit_caller = nullptr;
thread_local std::string* limit_caller_pushes = nullptr;

// The bytes of an invalidation for `target` in its protocol and pub/sub state ("" when none can
// be sent). `target`'s loop only.
std::string InvalidationFor(const ClientSession* target, const std::string* keys, bool redirected) {
  std::string msg;
  if (target->protocol() == resp::Protocol::kResp3) {
    msg = ">2\r\n$10\r\ninvalidate\r\n";
    msg += keys ? *keys : "_\r\n";
  } else if (redirected && target->subscribed()) {
    msg = "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n";
    msg += keys ? *keys : "$-1\r\n";
  }
  return msg;  // RESP2 without pub/sub: nothing can be sent on this connection
}

// Posts an invalidation (`keys`: a RESP array; null: everything) to `target`'s loop, where the
// message's form is chosen by the receiver's protocol and pub/sub state. `target` must be alive
// during the call.
void PostInvalidation(ClientSession* target, std::shared_ptr<const std::string> keys, bool redirected) {
  if (target == limit_caller) {
    *limit_caller_pushes += InvalidationFor(target, keys.get(), redirected);
    return;
  }
  target->link().Post([target, keys = std::move(keys), redirected] {
    const std::string msg = InvalidationFor(target, keys.get(), redirected);
    if (!msg.empty()) target->DeliverPush(msg);
  });
}

}  // namespace

void Tracking::SendLocked(const Client& c, const std::shared_ptr<const std::string>& keys) {
  if (c.mode.redirect == 0) return PostInvalidation(c.session, keys, false);
  const bool found = server_.clients.WithClient(c.mode.redirect, [&](ClientSession& r) {
    PostInvalidation(&r, keys, true);
  });
  if (found) return;
  // Redis tells the tracking client, in RESP3, that its invalidations have nowhere to go.
  ClientSession* self = c.session;
  self->MarkTrackingRedirectBroken();
  const uint64_t redirect = c.mode.redirect;
  self->link().Post([self, redirect] {
    if (self->protocol() != resp::Protocol::kResp3) return;
    self->DeliverPush(">2\r\n$21\r\ntracking-redir-broken\r\n:" + std::to_string(redirect) + "\r\n");
  });
}

void Tracking::InvalidateLocked(uint64_t origin, std::string_view key) {
  auto it = table_.find(key);
  if (it == table_.end()) return;
  std::shared_ptr<const std::string> keys;  // encoded for the first receiver, shared by the others
  for (uint64_t id : it->second) {
    auto c = clients_.find(id);
    if (c == clients_.end() || c->second.mode.bcast) continue;  // gone, or switched to BCAST
    if (c->second.mode.noloop && id == origin) continue;
    if (!keys) keys = EncodeKeys(std::array<std::string_view, 1>{key});
    SendLocked(c->second, keys);
  }
  items_ -= it->second.size();
  table_.erase(it);
  table_size_.store(table_.size(), std::memory_order_relaxed);
}

void Tracking::OnWritten(std::span<const store::Options::WrittenKey> keys) {
  std::lock_guard lock(mu_);
  if (clients_.empty()) {
    group_reads_.clear();
    return;
  }
  size_t next_read = 0;  // group_reads_ are in group order
  for (size_t i = 0; i < keys.size(); ++i) {
    // A read made in the group before this record: from here on its key is remembered. (By the
    // record's place, not i: SWAPDB records are not in `keys`, touched keys are in no record.)
    for (; next_read < group_reads_.size() && group_reads_[next_read].written <= keys[i].record; ++next_read) {
      RememberLocked(group_reads_[next_read].id, group_reads_[next_read].key);
    }
    const auto& w = keys[i];
    if (w.flush_all) {
      // FLUSHALL: every tracking client hears "everything" (a null), the table empties.
      for (const auto& [id, c] : clients_) SendLocked(c, nullptr);
      table_.clear();
      table_size_.store(table_.size(), std::memory_order_relaxed);
      items_ = 0;
      continue;
    }
    InvalidateLocked(w.origin, w.key);
  }
  for (; next_read < group_reads_.size(); ++next_read) {  // reads after the group's last record
    RememberLocked(group_reads_[next_read].id, group_reads_[next_read].key);
  }
  group_reads_.clear();
  BroadcastLocked(keys);
}

void Tracking::BroadcastLocked(std::span<const store::Options::WrittenKey> keys) {
  for (const auto& [prefix, ids] : prefix_table_) {
    // The keys under the prefix, each with the origin of its last write.
    std::map<std::string_view, uint64_t> under;
    for (const auto& w : keys) {
      if (!w.flush_all && StartsWith(w.key, prefix)) under[w.key] = w.origin;
    }
    if (under.empty()) continue;
    std::shared_ptr<const std::string> all;  // for the clients not in NOLOOP mode
    for (uint64_t id : ids) {
      auto c = clients_.find(id);
      if (c == clients_.end()) continue;
      if (!c->second.mode.noloop) {
        if (!all) {
          std::vector<std::string_view> names;
          names.reserve(under.size());
          for (const auto& [k, origin] : under) names.push_back(k);
          all = EncodeKeys(names);
        }
        SendLocked(c->second, all);
        continue;
      }
      std::vector<std::string_view> others;
      for (const auto& [k, origin] : under) {
        if (origin != id) others.push_back(k);
      }
      if (!others.empty()) SendLocked(c->second, EncodeKeys(others));
    }
  }
}

void Tracking::OnExpired(std::string_view key) {
  // Not through OnWritten: a key may expire while a group is being built (its reads placed in
  // the group wait for the group's own records).
  std::lock_guard lock(mu_);
  if (clients_.empty()) return;
  InvalidateLocked(0, key);
  const store::Options::WrittenKey w{0, key, false, 0, false};
  BroadcastLocked(std::span<const store::Options::WrittenKey>(&w, 1));
}

std::string Tracking::Limit(uint64_t max_keys, const ClientSession* self) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string own;
  // Checked without the lock first: this runs before every command while anyone tracks.
  if (max_keys == 0 || table_size_.load(std::memory_order_relaxed) <= max_keys) return own;
  std::lock_guard lock(mu_);
  if (table_.size() <= max_keys) return own;
  limit_caller = self;
  limit_caller_pushes = &own;
  // Random keys go (Redis walks its radix tree at random), at most 100 x the calls over the limit.
  size_t effort = 1000;
  while (table_.size() > max_keys && effort-- > 0) {
    const size_t buckets = table_.bucket_count();
    size_t b = std::uniform_int_distribution<size_t>(0, buckets - 1)(rng);
    for (size_t tries = 0; tries < buckets && table_.bucket_size(b) == 0; ++tries) b = (b + 1) % buckets;
    if (table_.bucket_size(b) == 0) break;
    const std::string key = table_.begin(b)->first;
    InvalidateLocked(0, key);
  }
  limit_caller = nullptr;
  limit_caller_pushes = nullptr;
  return own;
}

size_t Tracking::keys() const {
  std::lock_guard lock(mu_);
  return table_.size();
}

size_t Tracking::items() const {
  std::lock_guard lock(mu_);
  return items_;
}

size_t Tracking::prefixes() const {
  std::lock_guard lock(mu_);
  return prefix_table_.size();
}

}  // namespace keg::server
