// The template of server/collection.h (it needs Ctx and ServerState, which collection.h only
// declares). Include collection.h, not this.
#pragma once

#include <utility>

#include "server/command.h"
#include "server/state.h"

namespace keg::server {

template <class R>
void UpdateCollection(Ctx& c, uint8_t type, std::shared_ptr<R> res, std::function<bool(CollectionEdit&, R&)> change) {
  ServerState* server = &c.server();
  std::string key(c.arg(1));
  c.batch().Run([res, server, type, db = c.db(), key, change = std::move(change)](store::Txn& txn) {
    CollectionEdit edit(txn, *server, db, key, type);
    if (!edit.Open()) {
      res->error = edit.error();
      return;
    }
    if (!change(edit, *res)) return;
    edit.Commit();
    res->deleted = edit.deleted();
  }, key);
}

}  // namespace keg::server
