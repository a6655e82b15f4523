#include "server/pubsub.h"

#include <algorithm>
#include <mutex>

#include "net/server.h"
#include "server/glob.h"

namespace keg::server {

void AppendBulk(std::string* out, std::string_view s) {
  out->push_back('$');
  out->append(std::to_string(s.size()));
  out->append("\r\n");
  out->append(s);
  out->append("\r\n");
}

namespace {

// `*n` then the bulks: the RESP2 form. A RESP3 receiver gets the same bytes with '>' in front of
// them instead of '*' (a push): Deliver swaps the first byte.
std::string Encode(std::initializer_list<std::string_view> parts) {
  size_t size = 8;
  for (std::string_view p : parts) size += p.size() + 16;
  std::string out;
  out.reserve(size);
  out.push_back('*');
  out.append(std::to_string(parts.size()));
  out.append("\r\n");
  for (std::string_view p : parts) AppendBulk(&out, p);
  return out;
}

// Receivers on this thread's loop that were written in place during the current turn: each is
// flushed once, at the end of the turn (Redis writes its clients' buffers before it sleeps).
struct PendingFlushes {
  std::vector<std::pair<std::shared_ptr<net::Link>, Subscriber*>> receivers;
};
thread_local PendingFlushes pending_flushes;

// The links held keep their sessions, and so their Subscribers, alive until here.
void FlushPending() {
  std::vector<std::pair<std::shared_ptr<net::Link>, Subscriber*>> receivers;
  receivers.swap(pending_flushes.receivers);
  for (auto& [link, s] : receivers) {
    s->flush_pending = false;
    link->Flush();
  }
}

// Past this much in a receiver's buffer within one turn, it is written (and its output limit
// checked) at once rather than at the end of the turn.
constexpr size_t kFlushNowBytes = 256 * 1024;

// Appends a message encoded in RESP2 form: as it is, or as a RESP3 push ('>' for '*').
void AppendMessage(resp::ReplyBuffer& out, std::string_view bytes, bool resp3) {
  if (resp3) {
    out.Push(">");
    bytes.remove_prefix(1);
  }
  out.Push(bytes);
}

// Appends one encoded message (RESP2 form) to `s`'s buffer, or posts it to `s`'s loop.
void Deliver(Subscriber* s, const std::string& bytes, std::shared_ptr<const std::string>* shared,
             const void* here) {
  const bool resp3 = s->resp.load(std::memory_order_relaxed) == 3;
  if (here != nullptr && s->loop == here) {
    resp::ReplyBuffer& out = s->link->out();
    AppendMessage(out, bytes, resp3);
    if (out.size() > kFlushNowBytes) {
      s->link->Flush();  // writes, and closes a connection past its output limit
      return;
    }
    if (!s->flush_pending) {
      s->flush_pending = true;
      if (pending_flushes.receivers.empty()) net::PostToCurrentLoop(FlushPending);
      pending_flushes.receivers.emplace_back(s->link->Self(), s);
    }
    return;
  }
  if (!*shared) *shared = std::make_shared<const std::string>(bytes);
  net::Link* link = s->link;
  link->Post([link, msg = *shared, resp3] {
    AppendMessage(link->out(), *msg, resp3);
    link->Flush();
  });
}

}  // namespace

Subscriber::Subscriber(net::Link* l) : link(l), loop(net::CurrentLoop()) {}

std::string PubSub::Confirmation(int resp, std::string_view kind, const std::string_view* name, int64_t count) {
  std::string out;
  out.reserve(32 + kind.size() + (name != nullptr ? name->size() : 0));
  out.append(resp == 3 ? ">3\r\n" : "*3\r\n");
  AppendBulk(&out, kind);
  if (name != nullptr) {
    AppendBulk(&out, *name);
  } else {
    out.append(resp == 3 ? "_\r\n" : "$-1\r\n");
  }
  out.push_back(':');
  out.append(std::to_string(count));
  out.append("\r\n");
  return out;
}

void PubSub::RemoveFrom(Map& m, std::string_view name, Subscriber* s) {
  auto it = m.find(name);
  if (it == m.end()) return;
  if (it->second.Remove(s)) m.erase(it);  // millions of channels used once do not stay (as Redis)
}

bool PubSub::Subscribe(Subscriber* s, Kind kind, std::string_view channel) {
  auto& mine = kind == Kind::kShard ? s->shard_channels : s->channels;
  if (mine.contains(channel)) return false;
  {
    std::unique_lock lock(mu_);
    Map& m = map(kind);
    auto entry = m.find(channel);
    if (entry == m.end()) {
      entry = m.emplace(std::string(channel), Subscribers()).first;
      counter(kind).fetch_add(1, std::memory_order_relaxed);
    }
    entry->second.Add(s);
    mine.insert(std::string_view(entry->first));  // the map's copy: stable while subscribed
  }
  (kind == Kind::kShard ? s->n_shard : s->n_channels).fetch_add(1, std::memory_order_relaxed);
  return true;
}

bool PubSub::Unsubscribe(Subscriber* s, Kind kind, std::string_view channel) {
  auto& mine = kind == Kind::kShard ? s->shard_channels : s->channels;
  auto it = mine.find(channel);
  if (it == mine.end()) return false;
  {
    std::unique_lock lock(mu_);
    Map& m = map(kind);
    const size_t before = m.size();
    const std::string_view name = *it;
    mine.erase(it);  // before the map's copy of the name may go
    RemoveFrom(m, name, s);
    if (m.size() != before) counter(kind).fetch_sub(1, std::memory_order_relaxed);
  }
  (kind == Kind::kShard ? s->n_shard : s->n_channels).fetch_sub(1, std::memory_order_relaxed);
  return true;
}

bool PubSub::SubscribePattern(Subscriber* s, std::string_view pattern) {
  if (std::find(s->patterns.begin(), s->patterns.end(), pattern) != s->patterns.end()) return false;
  s->patterns.emplace_back(pattern);
  {
    std::unique_lock lock(mu_);
    auto [entry, created] = patterns_.try_emplace(s->patterns.back());
    entry->second.Add(s);
    if (created) pattern_count_.fetch_add(1, std::memory_order_relaxed);
  }
  s->n_patterns.fetch_add(1, std::memory_order_relaxed);
  return true;
}

bool PubSub::UnsubscribePattern(Subscriber* s, std::string_view pattern) {
  auto it = std::find(s->patterns.begin(), s->patterns.end(), pattern);
  if (it == s->patterns.end()) return false;
  {
    std::unique_lock lock(mu_);
    const size_t before = patterns_.size();
    RemoveFrom(patterns_, *it, s);
    if (patterns_.size() != before) pattern_count_.fetch_sub(1, std::memory_order_relaxed);
  }
  s->patterns.erase(it);
  s->n_patterns.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

void PubSub::UnsubscribeAll(Subscriber* s) {
  {
    std::unique_lock lock(mu_);
    // Each name is a view of the map's copy, read by RemoveFrom before it erases that entry.
    for (std::string_view c : s->channels) RemoveFrom(channels_, c, s);
    for (std::string_view c : s->shard_channels) RemoveFrom(shard_, c, s);
    for (const std::string& p : s->patterns) RemoveFrom(patterns_, p, s);
    channel_count_.store(channels_.size(), std::memory_order_relaxed);
    shard_count_.store(shard_.size(), std::memory_order_relaxed);
    pattern_count_.store(patterns_.size(), std::memory_order_relaxed);
  }
  s->channels.clear();
  s->shard_channels.clear();
  s->patterns.clear();
  s->n_channels.store(0, std::memory_order_relaxed);
  s->n_shard.store(0, std::memory_order_relaxed);
  s->n_patterns.store(0, std::memory_order_relaxed);
}

namespace {
thread_local std::vector<PubSub::HeldMessage>* t_held = nullptr;  // PubSub::Hold
}  // namespace

PubSub::Hold::Hold(std::vector<HeldMessage>* held) : previous_(t_held) { t_held = held; }

PubSub::Hold::~Hold() { t_held = previous_; }

void PubSub::SendHeld(const std::vector<HeldMessage>& held) {
  for (const HeldMessage& m : held) Publish(m.kind, m.channel, m.message);
}

int64_t PubSub::Publish(Kind kind, std::string_view channel, std::string_view message) {
  const bool shard = kind == Kind::kShard;
  if ((shard ? shard_channel_count() : channel_count() + pattern_count()) == 0) return 0;
  const void* here = net::CurrentLoop();
  int64_t receivers = 0;
  std::shared_lock lock(mu_);
  const Map& m = map(kind);
  if (t_held != nullptr) {  // counted now, sent later (Hold)
    if (auto it = m.find(channel); it != m.end())
      receivers += static_cast<int64_t>(it->second.size());
    if (!shard) {
      for (const auto& [pattern, subs] : patterns_) {
        if (GlobMatch(pattern, channel)) receivers += static_cast<int64_t>(subs.size());
      }
    }
    t_held->push_back({kind, std::string(channel), std::string(message)});
    return receivers;
  }
  if (auto it = m.find(channel); it != m.end()) {
    const std::string bytes = Encode({shard ? "smessage" : "message", channel, message});
    std::shared_ptr<const std::string> shared;
    it->second.ForEach([&](Subscriber* s) {
      Deliver(s, bytes, &shared, here);
      ++receivers;
    });
  }
  if (shard) return receivers;  // shard channels ignore patterns
  for (const auto& [pattern, subs] : patterns_) {
    if (!GlobMatch(pattern, channel)) continue;
    const std::string bytes = Encode({"pmessage", pattern, channel, message});
    std::shared_ptr<const std::string> shared;
    subs.ForEach([&](Subscriber* s) {
      Deliver(s, bytes, &shared, here);
      ++receivers;
    });
  }
  return receivers;
}

std::vector<std::string> PubSub::Channels(Kind kind, const std::string_view* pattern) const {
  std::vector<std::string> out;
  std::shared_lock lock(mu_);
  for (const auto& [name, subs] : map(kind)) {
    if (pattern == nullptr || GlobMatch(*pattern, name)) out.push_back(name);
  }
  return out;
}

int64_t PubSub::NumSub(Kind kind, std::string_view channel) const {
  std::shared_lock lock(mu_);
  const Map& m = map(kind);
  auto it = m.find(channel);
  return it == m.end() ? 0 : static_cast<int64_t>(it->second.size());
}

}  // namespace keg::server
