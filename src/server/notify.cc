#include "server/notify.h"

#include "server/state.h"

namespace keg::server {

bool ParseKeyspaceEvents(std::string_view text, uint32_t* flags) {
  uint32_t f = 0;
  for (char c : text) {
    switch (c) {
      case 'A': f |= kNotifyAll; break;
      case 'g': f |= kNotifyGeneric; break;
      case '$': f |= kNotifyString; break;
      case 'l': f |= kNotifyList; break;
      case 's': f |= kNotifySet; break;
      case 'h': f |= kNotifyHash; break;
      case 'z': f |= kNotifyZset; break;
      case 'x': f |= kNotifyExpired; break;
      case 'e': f |= kNotifyEvicted; break;
      case 'K': f |= kNotifyKeyspace; break;
      case 'E': f |= kNotifyKeyevent; break;
      case 't': f |= kNotifyStream; break;
      case 'm': f |= kNotifyKeyMiss; break;
      case 'd': f |= kNotifyModule; break;
      case 'n': f |= kNotifyNew; break;
      default: return false;
    }
  }
  *flags = f;
  return true;
}

std::string KeyspaceEventsString(uint32_t flags) {
  std::string s;
  if ((flags & kNotifyAll) == kNotifyAll) {
    s += 'A';
  } else {
    static constexpr std::pair<uint32_t, char> kLetters[] = {
        {kNotifyGeneric, 'g'}, {kNotifyString, '$'}, {kNotifyList, 'l'},    {kNotifySet, 's'},
        {kNotifyHash, 'h'},    {kNotifyZset, 'z'},   {kNotifyExpired, 'x'}, {kNotifyEvicted, 'e'},
        {kNotifyStream, 't'},  {kNotifyModule, 'd'}, {kNotifyNew, 'n'}};
    for (const auto& [flag, letter] : kLetters) {
      if ((flags & flag) != 0) s += letter;
    }
  }
  if ((flags & kNotifyKeyspace) != 0) s += 'K';
  if ((flags & kNotifyKeyevent) != 0) s += 'E';
  if ((flags & kNotifyKeyMiss) != 0) s += 'm';
  return s;
}

void NotifyKeyspaceEvent(ServerState& server, uint32_t db, uint32_t cls, std::string_view event,
                         std::string_view key) {
  const uint32_t flags = server.notify_flags.load(std::memory_order_relaxed);
  if ((flags & cls) == 0 || server.pubsub.empty()) return;
  const std::string at = "@" + std::to_string(db) + "__:";
  if ((flags & kNotifyKeyspace) != 0) {
    std::string channel = "__keyspace" + at;
    channel.append(key);
    server.pubsub.Publish(PubSub::Kind::kChannel, channel, event);
  }
  if ((flags & kNotifyKeyevent) != 0) {
    std::string channel = "__keyevent" + at;
    channel.append(event);
    server.pubsub.Publish(PubSub::Kind::kChannel, channel, key);
  }
}

}  // namespace keg::server
