// CLIENT TRACKING (client-side caching), as Redis 7.0's tracking.c.
//
// Default mode: the keys a tracking client reads are remembered (key → client ids); the first
// write to such a key, by anyone (or its expiry, or FLUSHALL), sends each of those clients an
// invalidation and forgets the key. BCAST mode: nothing is remembered; every write to a key under
// one of the client's prefixes is sent, the keys of one write group gathered into one message
// per prefix. Invalidations go to the client itself as RESP3 pushes (["invalidate", [keys]]), or
// to the client named by REDIRECT: a RESP3 push there too, or, to a RESP2 connection in pub/sub
// mode, a message on `__redis__:invalidate` (RESP2 without redirection receives nothing).
//
// Ordering: a key is remembered *before* the read that returns it runs, so a write that lands in
// between still invalidates it (the read may then have returned either value; the invalidation
// comes after the reply on the same connection). Invalidations are posted to the receiving
// connection's event loop, and one whose connection is waiting for its own write's replies is
// written after them (Redis sends a client's own invalidations after its reply).
//
// The table is bounded by tracking-table-max-keys: past it, keys are forgotten (and invalidated)
// by ServerCron's Limit, as Redis's trackingLimitUsedSlots.
//
// Thread: any (one mutex); OnWritten / OnExpired from the writer role's holder.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "store/store.h"

namespace keg::server {

class ClientSession;
struct ServerState;

class Tracking {
 public:
  /// One client's mode (CLIENT TRACKING's options).
  struct Mode {
    bool bcast = false;
    bool optin = false;
    bool optout = false;
    bool noloop = false;
    uint64_t redirect = 0;  // client id; 0: none
    std::vector<std::string> prefixes;  // BCAST only; empty means every key
  };

  explicit Tracking(ServerState& server) : server_(server) {}

  /// Turns tracking on for `session` (id `id`), or changes its mode; `mode.prefixes` are added to
  /// those it has (checked by the caller: no collisions). Returns the mode in force (its prefixes
  /// all those added so far; BCAST without any: the empty prefix). Session's I/O thread.
  Mode Enable(ClientSession* session, uint64_t id, const Mode& mode);
  /// Turns it off (CLIENT TRACKING off, RESET, the connection closing). Session's I/O thread.
  void Disable(uint64_t id);
  /// "" when `prefixes` (to be added to client `id`'s) overlap neither each other nor its current
  /// ones; else Redis's error text.
  std::string CheckPrefixes(uint64_t id, std::span<const std::string_view> prefixes) const;

  /// Remembers that client `id` read `keys` (call before the read runs). Session's I/O thread.
  void Remember(uint64_t id, std::span<const std::string_view> keys);
  /// The same for a read inside a write group (EXEC, a script), at its place: `written` records
  /// of the group come before it (store::Txn::Written), and only the group's records after it
  /// invalidate the keys. Writer role.
  void RememberInGroup(uint64_t id, std::span<const std::string_view> keys, size_t written);

  /// Writer role: the keys a group wrote (Options::on_written), and a key that expired.
  void OnWritten(std::span<const store::Options::WrittenKey> keys);
  void OnExpired(std::string_view key);

  /// Forgets keys past tracking-table-max-keys (sending their invalidations), a bounded effort per
  /// call, as Redis's trackingLimitUsedSlots. Any thread: the 100 ms cron, and a session before
  /// each command (as Redis's processCommand). Invalidations for `self` (the session calling, on
  /// its own loop) are not posted but returned, for it to send before the command's reply as
  /// Redis does; the others are posted to their loops.
  std::string Limit(uint64_t max_keys, const ClientSession* self = nullptr);

  /// Clients with tracking on; one relaxed load (the read path's cost while nobody tracks).
  size_t clients() const { return clients_count_.load(std::memory_order_relaxed); }
  size_t keys() const;
  size_t items() const;
  size_t prefixes() const;

 private:
  struct Client {
    ClientSession* session;
    Mode mode;
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  // Sends one invalidation to `c` or its redirection: `keys`, the RESP array of the keys (the same
  // bytes in RESP2 and RESP3), or null for the whole keyspace (FLUSHALL). Called with mu_ held: the
  // sessions named cannot go meanwhile.
  void SendLocked(const Client& c, const std::shared_ptr<const std::string>& keys);
  void InvalidateLocked(uint64_t origin, std::string_view key);
  // BCAST: per prefix, the keys under it in one message (sorted and once each, as Redis's radix
  // tree gives them); a NOLOOP client is not told of the keys it wrote last.
  void BroadcastLocked(std::span<const store::Options::WrittenKey> keys);
  void UpdateStoreHooks();

  ServerState& server_;
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, Client> clients_;
  std::unordered_map<std::string, std::vector<uint64_t>, Hash, std::equal_to<>> table_;
  size_t items_ = 0;
  std::map<std::string, std::vector<uint64_t>, std::less<>> prefix_table_;  // BCAST prefix → clients
  // RememberInGroup's reads of the group being built, entered into the table by OnWritten at
  // their place among its records (a group that fails leaves them for the next: extra
  // invalidations, never missing ones).
  struct GroupRead {
    uint64_t id;
    std::string key;
    size_t written;
  };
  std::vector<GroupRead> group_reads_;
  void RememberLocked(uint64_t id, std::string_view key);
  std::atomic<size_t> clients_count_{0};
  std::atomic<size_t> table_size_{0};  // table_.size(), stored under mu_ at each change
};

}  // namespace keg::server
