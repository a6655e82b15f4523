// Redis's replication protocol, its first part (issue 19; docs/server.md, "Replication"): a full
// snapshot of the data set in Redis's RDB format, sent by SYNC to a client that asked for the
// snapshot alone (REPLCONF rdb-only 1: `redis-cli --rdb FILE`, a backup redis-server loads). The
// command stream that follows a snapshot for a real replica is not built yet: SYNC without
// rdb-only, and PSYNC, are refused rather than leave a replica with a snapshot it never hears
// more of.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "resp/numbers.h"
#include "server/command.h"
#include "server/rdb.h"
#include "server/replication.h"
#include "server/scripting.h"
#include "server/session.h"
#include "server/small_collection.h"
#include "server/state.h"
#include "store/format.h"

namespace keg::server {

namespace {

using store::format::kKindHead;
using store::format::kTypeHash;
using store::format::kTypeList;
using store::format::kTypeSet;
using store::format::kTypeString;
using store::format::kTypeZset;

// The DUMP payload of one snapshot item; false when its record does not decode.
bool PayloadOf(const store::SnapshotItem& item, std::string* out) {
  const uint8_t type = item.value.type;
  if (type == kTypeString) {
    *out = rdb::DumpString(item.value.value);
    return true;
  }
  // The elements, flat: a hash's field and value, a sorted set's member and 8-byte score, a set's
  // member, a list's element (in order).
  std::vector<std::string_view> flat;
  coll::View whole;
  if (item.value.kind == kKindHead) {
    const bool pairs = type == kTypeHash || type == kTypeZset;
    flat.reserve(item.elements.size() * (pairs ? 2 : 1));
    for (const store::ElementView& e : item.elements) {
      flat.push_back(type == kTypeList ? e.value : e.member);
      if (pairs) flat.push_back(e.value);
    }
  } else {
    if (!coll::Decode(item.value.value, &whole)) return false;
    flat = std::move(whole.elements);
  }
  switch (type) {
    case kTypeHash:
      if (flat.size() % 2 != 0) return false;
      *out = rdb::DumpHash(flat);
      return true;
    case kTypeSet:
      *out = rdb::DumpSet(flat);
      return true;
    case kTypeList:
      *out = rdb::DumpList(flat);
      return true;
    case kTypeZset: {
      if (flat.size() % 2 != 0) return false;
      std::vector<std::pair<std::string, double>> items;
      items.reserve(flat.size() / 2);
      for (size_t i = 0; i < flat.size(); i += 2) {
        double score = 0;
        if (!store::format::DecodeScore(flat[i + 1], &score)) return false;
        items.emplace_back(std::string(flat[i]), score);
      }
      *out = rdb::DumpZset(items);
      return true;
    }
    default:
      return false;
  }
}

// REPLCONF option value [option value ...]: what a replica (or redis-cli) tells about itself.
void Replconf(Ctx& c) {
  if (c.argc() % 2 == 0) return c.Error(err::kSyntax);
  for (size_t j = 1; j + 1 < c.argc(); j += 2) {
    const std::string option = ToLower(c.arg(j));
    int64_t v = 0;
    if (option == "rdb-only") {
      if (!resp::ParseInt64(c.arg(j + 1), &v)) return c.Error(err::kNotInteger);
      if (v != 0 && v != 1) return c.Error("value is out of range, value must between 0 and 1");
      c.client().set_rdb_only(v == 1);
    } else if (option == "listening-port") {
      if (!resp::ParseInt64(c.arg(j + 1), &v)) return c.Error(err::kNotInteger);
    } else if (option == "ip-address" || option == "capa") {
      // Noted by Redis for INFO replication and its choice of framing; keg's SYNC sends the
      // length-prefixed framing every client reads, and lists no replica yet.
    } else {
      return c.Error("Unrecognized REPLCONF option: " + std::string(c.arg(j)));
    }
  }
  c.out().Ok();
}

// SYNC: the snapshot, as `$<length>\r\n` and the RDB file's bytes (no CRLF after them).
void Sync(Ctx& c) {
  if (!c.client().rdb_only()) {
    return c.Error("keg does not stream the replication feed yet: SYNC sends a snapshot only after "
                   "REPLCONF rdb-only 1 (redis-cli --rdb)");
  }
  ClientSession* client = &c.client();
  std::shared_ptr<net::Link> keep = client->link().Self();
  ServerState* server = &c.server();
  client->Suspend();
  // Off the event loop: the snapshot reads every record (the writer waits only for its copy).
  server->jobs.Run([client, keep, server] {
    auto rdb = std::make_shared<std::string>();
    const store::Status s = WriteRdbSnapshot(*server, rdb.get());
    keep->Post([client, rdb, s] {
      if (!s.ok()) {
        client->link().out().Error(StorageError(s));
      } else {
        client->link().out().Raw("$" + std::to_string(rdb->size()) + "\r\n");
        client->link().out().Raw(*rdb, rdb);  // sent from the string, not copied
      }
      client->Finish();
    });
  });
}

// ROLE: keg is a primary with no replicas yet (INFO replication says the same): its offset in the
// replication stream, 0 while there is no stream, and the empty list of its replicas.
void Role(Ctx& c) {
  c.out().ArrayHeader(3);
  c.out().Bulk("master");
  c.out().Integer(0);
  c.out().ArrayHeader(0);
}

}  // namespace

store::Status WriteRdbSnapshot(ServerState& s, std::string* out) {
  out->clear();
  rdb::FileHeader(out, store::NowMs());
  // The function libraries (as of now: they change only by FUNCTION commands, rarely), as Redis
  // writes them before the keys.
  if (!rdb::FileFunctions(out, s.scripts->functions().Dump())) {
    return store::Status::Corruption("FUNCTION DUMP gave a payload too short to be one");
  }
  uint32_t db = UINT32_MAX;
  std::string payload;
  store::Status bad;
  uint64_t keys = 0;
  store::Status st = s.store->VisitSnapshot([&](const store::SnapshotItem& item) {
    if (!PayloadOf(item, &payload) || payload.size() < 11) {
      bad = store::Status::Corruption("the value of key '" + std::string(item.key) + "' does not decode");
      return false;
    }
    if (item.db != db) {
      db = item.db;
      rdb::FileSelectDb(out, db);
    }
    (void)rdb::FileKey(out, item.key, payload, item.value.expire_at_ms);  // long enough: checked above
    ++keys;
    return true;
  });
  if (st.ok()) st = bad;
  if (!st.ok()) return st;
  rdb::FileEnd(out);
  spdlog::info("snapshot: {} keys, {} bytes of RDB", keys, out->size());
  return st;
}

void RegisterReplicationCommands(std::vector<Command>* t) {
  t->push_back({"replconf", -1, kAdmin | kNoScript | kAllowBusy, 0, 0, 0, Replconf, "@admin @slow @dangerous"});
  t->push_back({"role", 1, kNoScript | kFast, 0, 0, 0, Role, "@admin @fast @dangerous"});
  t->push_back({"sync", 1, kAdmin | kNoMulti | kNoScript, 0, 0, 0, Sync, "@admin @slow @dangerous"});
}

}  // namespace keg::server
