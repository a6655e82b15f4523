// Pub/sub: channels, patterns and shard channels, as Redis 7.0's pubsub.c.
//
// Each connection that subscribes owns one Subscriber (ClientSession::subscriber_); PubSub maps
// channels and patterns to the Subscribers listening. PUBLISH encodes a message once and appends it
// to each receiver's reply buffer: in place when the receiver lives on the publisher's event loop
// (one write per receiver at the end of the loop's turn, however many messages it got), posted to
// the receiver's loop otherwise. A publisher's messages reach every subscriber in the order it
// published them: in place or through the receiver's loop queue, one publisher's messages to one
// receiver take one path, in order. Pub/sub is fire and forget, as in Redis: a message goes to the
// connections subscribed when it is published, is never stored, and is lost with a connection.
//
// Thread: PubSub's methods from any thread (one shared_mutex: publishers share it, (un)subscribing
// takes it alone). A Subscriber's sets are its connection's I/O thread's; its counts and protocol
// are atomics that CLIENT LIST and publishers on other threads read.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "net/session.h"

namespace keg::server {

/// Appends `s` as a RESP bulk string to `out` (for messages encoded once and sent to many).
void AppendBulk(std::string* out, std::string_view s);

/// One connection's subscriptions.
struct Subscriber {
  /// `link` must outlive the Subscriber's registration (the session unsubscribes everything before
  /// its connection goes). Construct on the connection's I/O thread.
  explicit Subscriber(net::Link* link);

  net::Link* const link;
  const void* const loop;        // the connection's event loop (net::CurrentLoop())
  std::atomic<int> resp{2};      // the connection's protocol: messages are pushes in RESP3

  // The connection's I/O thread only. The channel names are views of PubSub's own copies, which
  // live as long as the channel has a subscriber (this one): one copy of a name per channel.
  std::unordered_set<std::string_view> channels;
  std::unordered_set<std::string_view> shard_channels;
  std::vector<std::string> patterns;  // in subscription order (Redis keeps a list)
  bool flush_pending = false;         // written in place this turn; flushed at its end

  // Any thread (CLIENT LIST sub= psub= ssub=).
  std::atomic<uint32_t> n_channels{0};
  std::atomic<uint32_t> n_patterns{0};
  std::atomic<uint32_t> n_shard{0};

  /// Redis's clientSubscriptionsCount (channels and patterns) and the shard count.
  uint32_t count() const { return n_channels.load(std::memory_order_relaxed) + n_patterns.load(std::memory_order_relaxed); }
  uint32_t shard_count() const { return n_shard.load(std::memory_order_relaxed); }
  bool any() const { return count() + shard_count() > 0; }
};

class PubSub {
 public:
  enum class Kind { kChannel, kShard };

  // Subscribing and unsubscribing: the subscriber's I/O thread. Each returns true when the
  // subscription was added (removed); the caller replies.
  bool Subscribe(Subscriber* s, Kind kind, std::string_view channel);
  bool Unsubscribe(Subscriber* s, Kind kind, std::string_view channel);
  bool SubscribePattern(Subscriber* s, std::string_view pattern);
  bool UnsubscribePattern(Subscriber* s, std::string_view pattern);
  /// Drops every subscription of `s` without replies (the connection closes, or RESET).
  void UnsubscribeAll(Subscriber* s);

  /// Sends `message` to the subscribers of `channel` (and, for kChannel, of every matching
  /// pattern); returns how many received it. Any thread; in place for receivers on the caller's
  /// event loop (their buffers are written at the end of its turn), posted for the others.
  /// While a Hold is alive on the calling thread, the message is held there instead (its
  /// receivers counted now) and goes out with SendHeld.
  int64_t Publish(Kind kind, std::string_view channel, std::string_view message);

  /// A message held back by a Hold.
  struct HeldMessage {
    Kind kind;
    std::string channel;
    std::string message;
  };
  /// While alive, Publish on this thread holds what it would send in *held: a script runs on the
  /// writer before its group is durable, and what it publishes — its PUBLISHes and keyspace
  /// events — goes with its reply (SendHeld), after the messages of the commands its client sent
  /// before it, as Redis sends each command's as it runs. Nests (the previous one comes back).
  class Hold {
   public:
    explicit Hold(std::vector<HeldMessage>* held);
    ~Hold();
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;

   private:
    std::vector<HeldMessage>* previous_;
  };
  /// Publishes the messages `held` holds, in order. Any thread.
  void SendHeld(const std::vector<HeldMessage>& held);

  /// PUBSUB CHANNELS / SHARDCHANNELS: the channels with subscribers matching `pattern` (all when
  /// null). PUBSUB NUMSUB / SHARDNUMSUB: subscribers of one channel. NUMPAT: distinct patterns.
  std::vector<std::string> Channels(Kind kind, const std::string_view* pattern) const;
  int64_t NumSub(Kind kind, std::string_view channel) const;
  size_t channel_count() const { return channel_count_.load(std::memory_order_relaxed); }
  size_t pattern_count() const { return pattern_count_.load(std::memory_order_relaxed); }
  size_t shard_channel_count() const { return shard_count_.load(std::memory_order_relaxed); }

  /// Keyspace notifications and CLIENT TRACKING's redirection channel cost nothing while nobody
  /// listens: true when no subscription of any kind exists.
  bool empty() const {
    return channel_count() == 0 && pattern_count() == 0;
  }

  /// Encodes the (un)subscribe confirmation Redis sends: [kind, name or nil, count], an array in
  /// RESP2 and a push in RESP3.
  static std::string Confirmation(int resp, std::string_view kind, const std::string_view* name, int64_t count);

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  // A channel's subscribers: most channels have one, kept without an allocation of its own.
  struct Subscribers {
    Subscriber* first = nullptr;
    std::vector<Subscriber*> more;
    template <typename F>
    void ForEach(F&& f) const {
      if (first != nullptr) f(first);
      for (Subscriber* s : more) f(s);
    }
    size_t size() const { return (first != nullptr ? 1 : 0) + more.size(); }
    void Add(Subscriber* s) {
      if (first == nullptr && more.empty()) {
        first = s;
      } else {
        more.push_back(s);
      }
    }
    /// Removes `s`; true when none is left.
    bool Remove(Subscriber* s) {
      if (first == s) {
        first = nullptr;
        if (!more.empty()) {  // keep subscription order: the next one moves up
          first = more.front();
          more.erase(more.begin());
        }
      } else {
        std::erase(more, s);
      }
      return first == nullptr && more.empty();
    }
  };
  using Map = std::unordered_map<std::string, Subscribers, Hash, std::equal_to<>>;
  Map& map(Kind kind) { return kind == Kind::kShard ? shard_ : channels_; }
  const Map& map(Kind kind) const { return kind == Kind::kShard ? shard_ : channels_; }
  std::atomic<size_t>& counter(Kind kind) { return kind == Kind::kShard ? shard_count_ : channel_count_; }
  static void RemoveFrom(Map& m, std::string_view name, Subscriber* s);

  mutable std::shared_mutex mu_;
  Map channels_;
  Map shard_;
  Map patterns_;
  std::atomic<size_t> channel_count_{0};
  std::atomic<size_t> pattern_count_{0};
  std::atomic<size_t> shard_count_{0};
};

}  // namespace keg::server
