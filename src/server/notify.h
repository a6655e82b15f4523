// Keyspace notifications (notify-keyspace-events), as Redis 7.0's notify.c: an event about a key is
// published on `__keyspace@0__:<key>` (message: the event) and `__keyevent@0__:<event>` (message:
// the key), for the classes the configuration turns on. Events are sent once the write that
// causes them is done: after its group is durable, in the order of the commands of the client's
// batch (a pipeline, an EXEC); a script's with its reply (held while it runs on the writer:
// PubSub::Hold). Like all of pub/sub, they are fire and forget.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace keg::server {

struct ServerState;

/// Redis's NOTIFY_* classes, with their letters.
enum NotifyClass : uint32_t {
  kNotifyKeyspace = 1u << 0,   // K
  kNotifyKeyevent = 1u << 1,   // E
  kNotifyGeneric = 1u << 2,    // g
  kNotifyString = 1u << 3,     // $
  kNotifyList = 1u << 4,       // l
  kNotifySet = 1u << 5,        // s
  kNotifyHash = 1u << 6,       // h
  kNotifyZset = 1u << 7,       // z
  kNotifyExpired = 1u << 8,    // x
  kNotifyEvicted = 1u << 9,    // e
  kNotifyStream = 1u << 10,    // t
  kNotifyKeyMiss = 1u << 11,   // m (not part of A)
  kNotifyModule = 1u << 13,    // d
  kNotifyNew = 1u << 14,       // n (not part of A)
  kNotifyAll = kNotifyGeneric | kNotifyString | kNotifyList | kNotifySet | kNotifyHash | kNotifyZset |
               kNotifyExpired | kNotifyEvicted | kNotifyStream | kNotifyModule,  // A
};

/// notify-keyspace-events' letters to flags (Redis's keyspaceEventsStringToFlags); false on an
/// unknown letter.
bool ParseKeyspaceEvents(std::string_view text, uint32_t* flags);
/// Flags to letters, as CONFIG GET shows them (keyspaceEventsFlagsToString).
std::string KeyspaceEventsString(uint32_t flags);

/// Publishes `event` about `key` of database `db` if its class is on and anyone is subscribed
/// (`__keyspace@<db>__:<key>`, `__keyevent@<db>__:<event>`). Any thread.
void NotifyKeyspaceEvent(ServerState& server, uint32_t db, uint32_t cls, std::string_view event,
                         std::string_view key);

}  // namespace keg::server
