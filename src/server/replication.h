// Replication (issue 19; docs/server.md, "Replication"): what is built so far is the full
// snapshot a SYNC sends, in Redis's RDB format (commands_replication.cc).
#pragma once

#include <string>

#include "store/store.h"

namespace keg::server {

struct ServerState;

/// Writes an RDB file (version 10, as redis-server 7.0.15 writes one: aux fields, a SELECTDB per
/// non-empty database, each live key with its expiry, EOF and CRC64) of the whole store as of one
/// moment (Store::VisitSnapshot) to *out. Corruption when a record fails its check or a value does
/// not decode. Any thread but the writer's; reads every record, so not an event loop's.
store::Status WriteRdbSnapshot(ServerState& s, std::string* out);

}  // namespace keg::server
