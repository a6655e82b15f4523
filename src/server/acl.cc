#include "server/acl.h"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <unordered_map>

#include "resp/numbers.h"
#include "server/config.h"
#include "server/glob.h"
#include "store/io.h"
#include "store/store.h"

namespace keg::server {
namespace {

constexpr std::string_view kCategories[] = {
    "keyspace", "read",  "write", "set",     "sortedset", "list",      "hash",
    "string",   "bitmap", "hyperloglog", "geo", "stream", "pubsub",    "admin",
    "fast",     "slow",  "blocking", "dangerous", "connection", "transaction", "scripting"};

// A command or subcommand, by id.
struct Entry {
  const Command* cmd = nullptr;
  const Command* parent = nullptr;
  std::string fullname;  // "get", "client|list"
  uint32_t categories = 0;  // bit i: kCategories[i]
};

uint32_t CategoryMask(std::string_view text) {
  uint32_t mask = 0;
  size_t pos = 0;
  while ((pos = text.find('@', pos)) != std::string_view::npos) {
    size_t end = text.find(' ', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view name = text.substr(pos + 1, end - pos - 1);
    for (size_t i = 0; i < std::size(kCategories); ++i) {
      if (kCategories[i] == name) mask |= 1u << i;
    }
    pos = end;
  }
  return mask;
}

int CategoryIndex(std::string_view name) {
  for (size_t i = 0; i < std::size(kCategories); ++i) {
    if (EqualsIgnoreCase(kCategories[i], name)) return static_cast<int>(i);
  }
  return -1;
}

// Every command and subcommand in table order (the order ACL CAT and the rule descriptions use).
// A subcommand keg lists without categories has its parent's.
const std::vector<Entry>& Entries() {
  static const std::vector<Entry> entries = [] {
    std::vector<Entry> v(CommandIdCount());
    for (const Command& cmd : AllCommands()) {
      const uint32_t cats = CategoryMask(cmd.acl_categories);
      v[cmd.id] = Entry{&cmd, nullptr, std::string(cmd.name), cats};
      for (const Command& sub : cmd.subcommands) {
        const uint32_t own = CategoryMask(sub.acl_categories);
        v[sub.id] = Entry{&sub, &cmd, std::string(cmd.name) + "|" + std::string(sub.name), own != 0 ? own : cats};
      }
    }
    return v;
  }();
  return entries;
}

// Redis's key specs for keg's commands (src/commands/*.json of Redis 7.0.15): the first key's
// flags and the other keys' flags. A command not listed: RO access when it reads, RW access update
// when it writes.
struct KeySpec {
  std::vector<std::string_view> first;
  std::vector<std::string_view> rest;  // empty: as first
};
const std::unordered_map<std::string_view, KeySpec>& KeySpecs() {
  static const std::unordered_map<std::string_view, KeySpec> specs = [] {
    const std::vector<std::string_view> ro = {"RO"};
    const std::vector<std::string_view> ro_access = {"RO", "access"};
    const std::vector<std::string_view> rw_access_update = {"RW", "access", "update"};
    const std::vector<std::string_view> rw_update = {"RW", "update"};
    const std::vector<std::string_view> ow_update = {"OW", "update"};
    const std::vector<std::string_view> ow_insert = {"OW", "insert"};
    const std::vector<std::string_view> rm_delete = {"RM", "delete"};
    const std::vector<std::string_view> rw_access_delete = {"RW", "access", "delete"};
    std::unordered_map<std::string_view, KeySpec> m;
    for (auto n : {"bitcount", "bitfield_ro", "bitpos", "dump", "expiretime", "pexpiretime", "ttl", "pttl",
                   "get", "getbit", "getrange", "substr", "lcs", "mget"}) {
      m[n] = {ro_access, {}};
    }
    for (auto n : {"exists", "strlen", "touch", "type", "watch", "usage", "encoding", "freq", "idletime",
                   "refcount"}) {
      m[n] = {ro, {}};
    }
    for (auto n : {"decr", "decrby", "incr", "incrby", "incrbyfloat", "getex", "getset", "setbit"}) {
      m[n] = {rw_access_update, {}};
    }
    for (auto n : {"expire", "expireat", "pexpire", "pexpireat", "persist", "setrange"}) m[n] = {rw_update, {}};
    for (auto n : {"mset", "psetex", "setex", "restore"}) m[n] = {ow_update, {}};
    for (auto n : {"msetnx", "setnx"}) m[n] = {ow_insert, {}};
    for (auto n : {"del", "unlink"}) m[n] = {rm_delete, {}};
    m["append"] = {{"RW", "insert"}, {}};
    m["getdel"] = {rw_access_delete, {}};
    m["migrate"] = {rw_access_delete, {}};
    m["bitop"] = {ow_update, ro_access};
    m["copy"] = {ro_access, ow_update};
    m["rename"] = {rw_access_delete, ow_update};
    m["renamenx"] = {rw_access_delete, ow_insert};
    // Hashes and sets.
    for (auto n : {"hlen", "hstrlen", "hexists", "sismember", "scard"}) m[n] = {ro, {}};
    for (auto n : {"hset", "hmset"}) m[n] = {rw_update, {}};
    for (auto n : {"hsetnx", "sadd"}) m[n] = {{"RW", "insert"}, {}};
    for (auto n : {"hdel", "srem"}) m[n] = {{"RW", "delete"}, {}};
    for (auto n : {"hincrby", "hincrbyfloat"}) m[n] = {rw_access_update, {}};
    m["spop"] = {rw_access_delete, {}};
    m["smove"] = {rw_access_delete, {"RW", "insert"}};
    m["sinterstore"] = {rw_update, ro_access};
    for (auto n : {"sunionstore", "sdiffstore"}) m[n] = {ow_update, ro_access};
    // Lists, sorted sets and SORT (Redis 7.0's key specs).
    const std::vector<std::string_view> rw_insert = {"RW", "insert"};
    const std::vector<std::string_view> rw_delete = {"RW", "delete"};
    for (auto n : {"lmove", "blmove", "rpoplpush", "brpoplpush"}) m[n] = {rw_access_delete, rw_insert};
    for (auto n : {"lpush", "rpush", "lpushx", "rpushx", "linsert"}) m[n] = {rw_insert, {}};
    for (auto n : {"lpop", "rpop", "lmpop", "blmpop", "blpop", "brpop", "zpopmin", "zpopmax", "zmpop", "bzmpop",
                   "bzpopmin", "bzpopmax"}) {
      m[n] = {rw_access_delete, {}};
    }
    for (auto n : {"lrem", "ltrim", "zrem", "zremrangebyrank", "zremrangebyscore", "zremrangebylex"}) {
      m[n] = {rw_delete, {}};
    }
    m["lset"] = {rw_update, {}};
    m["zadd"] = {rw_update, {}};
    m["zincrby"] = {rw_access_update, {}};
    for (auto n : {"llen", "zcard"}) m[n] = {ro, {}};
    for (auto n : {"zrangestore", "zunionstore", "zinterstore", "zdiffstore"}) m[n] = {ow_update, ro_access};
    m["sort"] = {ro_access, ow_update};
    // GEO (Redis 7.0's key specs): GEOADD edits its key; the searches read theirs and overwrite
    // their STORE / STOREDIST destination (GEOSEARCHSTORE's first key).
    m["geoadd"] = {rw_update, {}};
    for (auto n : {"georadius", "georadiusbymember"}) m[n] = {ro_access, ow_update};
    m["geosearchstore"] = {ow_update, ro_access};
    // HyperLogLogs: PFCOUNT's cache write is no write to ACL (Redis's RW ACCESS: read access).
    m["pfadd"] = {rw_insert, {}};
    m["pfcount"] = {{"RW", "access"}, {}};
    m["pfmerge"] = {{"RW", "access", "insert"}, ro_access};
    m["pfdebug"] = {{"RW", "access"}, {}};
    return m;
  }();
  return specs;
}

// The argument positions of MIGRATE's keys: the key argument, or with an empty one the keys after
// KEYS (Redis's migrateGetKeys: AUTH takes one argument, AUTH2 two).
std::vector<size_t> MigrateKeys(std::span<const std::string_view> args) {
  if (args.size() < 6) return {};
  if (!args[3].empty()) return {3};
  for (size_t i = 6; i < args.size(); ++i) {
    if (EqualsIgnoreCase(args[i], "auth")) {
      ++i;
    } else if (EqualsIgnoreCase(args[i], "auth2")) {
      i += 2;
    } else if (EqualsIgnoreCase(args[i], "keys")) {
      std::vector<size_t> keys;
      for (size_t k = i + 1; k < args.size(); ++k) keys.push_back(k);
      return keys;
    }
  }
  return {};
}

}  // namespace

std::span<const std::string_view> AclCategories() { return kCategories; }

std::string HexEncode(std::span<const unsigned char> bytes) {
  static const char* const kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

std::string Sha256Hex(std::string_view data) {
  unsigned char hash[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), hash, &len, EVP_sha256(), nullptr);
  return HexEncode(std::span<const unsigned char>(hash, len));
}

// The key flags of `cmd` that do not depend on its arguments: its first key's and (empty: the
// same) its other keys'.
void StaticKeyFlags(const Command& cmd, std::vector<std::string_view>* first, std::vector<std::string_view>* rest) {
  if (cmd.name == "eval_ro" || cmd.name == "evalsha_ro" || cmd.name == "fcall_ro") {
    *first = {"RO", "access"};
  } else if (auto it = KeySpecs().find(cmd.name); it != KeySpecs().end()) {
    *first = it->second.first;
    *rest = it->second.rest;
  } else if ((cmd.flags & kWrite) != 0) {
    *first = {"RW", "access", "update"};
  } else {
    *first = {"RO", "access"};
  }
}

std::vector<KeyRef> CommandKeys(const Command& cmd, std::span<const std::string_view> args) {
  std::vector<size_t> positions;
  if (cmd.name == "migrate") {
    positions = MigrateKeys(args);
  } else if (cmd.name == "eval" || cmd.name == "evalsha" || cmd.name == "eval_ro" || cmd.name == "evalsha_ro" ||
             cmd.name == "fcall" || cmd.name == "fcall_ro") {
    // script numkeys key...: the declared keys (none when numkeys is not valid, as Redis's evalGetKeys).
    int64_t numkeys = 0;
    if (args.size() >= 3 && resp::ParseInt64(args[2], &numkeys) && numkeys > 0 &&
        numkeys <= static_cast<int64_t>(args.size()) - 3) {
      for (size_t i = 3; i < 3 + static_cast<size_t>(numkeys); ++i) positions.push_back(i);
    }
  } else if (cmd.name == "sort") {
    // sort key ... [STORE dst] (Redis's sortGetKeys): the key, and the last STORE's destination
    // (LIMIT's, GET's and BY's arguments skipped).
    positions.push_back(1);
    size_t store_at = 0;
    for (size_t i = 2; i < args.size(); ++i) {
      if (EqualsIgnoreCase(args[i], "limit")) {
        i += 2;
      } else if (EqualsIgnoreCase(args[i], "get") || EqualsIgnoreCase(args[i], "by")) {
        i += 1;
      } else if (EqualsIgnoreCase(args[i], "store") && i + 1 < args.size()) {
        store_at = i + 1;
      }
    }
    if (store_at != 0) positions.push_back(store_at);
  } else if (cmd.name == "georadius" || cmd.name == "georadiusbymember") {
    // key ... [STORE dst] [STOREDIST dst] (Redis 7.0's key specs, which COMMAND GETKEYS and ACL
    // use): the key, then the argument after the first STORE and the one after the first
    // STOREDIST, each looked for from the options' start (args[6], GEORADIUSBYMEMBER's args[5]).
    positions.push_back(1);
    const size_t from = cmd.name == "georadius" ? 6 : 5;
    for (std::string_view keyword : {"store", "storedist"}) {
      for (size_t i = from; i + 1 < args.size(); ++i) {
        if (EqualsIgnoreCase(args[i], keyword)) {
          positions.push_back(i + 1);
          break;
        }
      }
    }
  } else if (cmd.name == "zunionstore" || cmd.name == "zinterstore" || cmd.name == "zdiffstore") {
    // destination numkeys key... (Redis's zunionInterDiffStoreGetKeys): the destination too.
    int64_t numkeys = 0;
    if (args.size() >= 4 && resp::ParseInt64(args[2], &numkeys) && numkeys > 0 &&
        numkeys <= static_cast<int64_t>(args.size()) - 3) {
      positions.push_back(1);
      for (size_t i = 3; i < 3 + static_cast<size_t>(numkeys); ++i) positions.push_back(i);
    }
  } else if (cmd.name == "blmpop" || cmd.name == "bzmpop") {
    // blmpop / bzmpop timeout numkeys key... (Redis's blmpopGetKeys).
    int64_t numkeys = 0;
    if (args.size() >= 4 && resp::ParseInt64(args[2], &numkeys) && numkeys > 0 &&
        numkeys <= static_cast<int64_t>(args.size()) - 3) {
      for (size_t i = 3; i < 3 + static_cast<size_t>(numkeys); ++i) positions.push_back(i);
    }
  } else if (cmd.name == "sintercard" || cmd.name == "lmpop" || cmd.name == "zmpop" || cmd.name == "zunion" ||
             cmd.name == "zinter" || cmd.name == "zdiff" || cmd.name == "zintercard") {
    // sintercard / lmpop numkeys key... (Redis's sintercardGetKeys, lmpopGetKeys: none when
    // numkeys is not valid).
    int64_t numkeys = 0;
    if (args.size() >= 3 && resp::ParseInt64(args[1], &numkeys) && numkeys > 0 &&
        numkeys <= static_cast<int64_t>(args.size()) - 2) {
      for (size_t i = 2; i < 2 + static_cast<size_t>(numkeys); ++i) positions.push_back(i);
    }
  } else {
    KeyPositions(cmd, args.size(), &positions);
  }
  std::vector<KeyRef> out;
  if (positions.empty()) return out;
  std::vector<std::string_view> first;
  std::vector<std::string_view> rest;
  if (cmd.name == "set") {
    // Redis's setGetKeys: with GET the old value is read.
    bool get = false;
    for (size_t i = 3; i < args.size(); ++i) get |= EqualsIgnoreCase(args[i], "get");
    first = get ? std::vector<std::string_view>{"RW", "access", "update"} : std::vector<std::string_view>{"OW", "update"};
  } else if (cmd.name == "bitfield") {
    // Redis's bitfieldGetKeys: read-only when every operation is a GET.
    bool readonly = true;
    for (size_t i = 2; i < args.size(); ++i) {
      const size_t remaining = args.size() - i - 1;
      if (EqualsIgnoreCase(args[i], "get") && remaining >= 2) {
        i += 2;
      } else if (EqualsIgnoreCase(args[i], "overflow") && remaining >= 1) {
        i += 1;
      } else {
        readonly = false;
        break;
      }
    }
    first = readonly ? std::vector<std::string_view>{"RO", "access"}
                     : std::vector<std::string_view>{"RW", "access", "update"};
  } else {
    StaticKeyFlags(cmd, &first, &rest);
  }
  if (rest.empty()) rest = first;
  for (size_t i = 0; i < positions.size(); ++i) out.push_back({positions[i], i == 0 ? first : rest});
  return out;
}

void KeySpecsReply(resp::ReplyBuffer& out, const Command& cmd) {
  std::vector<std::string_view> first;
  std::vector<std::string_view> rest;
  if (cmd.name == "set" || cmd.name == "bitfield") {  // the flags depend on the arguments
    first = {"RW", "access", "update", "variable_flags"};
  } else {
    StaticKeyFlags(cmd, &first, &rest);
  }
  auto spec = [&out](const std::vector<std::string_view>& flags, int64_t index, bool keynum, int64_t last_or_keynumidx,
                     int64_t step_or_firstkey, int64_t limit_or_keystep) {
    out.MapHeader(3);
    out.Bulk("flags");
    out.SetHeader(flags.size());
    for (std::string_view f : flags) out.SimpleString(f);
    out.Bulk("begin_search");
    out.MapHeader(2);
    out.Bulk("type");
    out.Bulk("index");
    out.Bulk("spec");
    out.MapHeader(1);
    out.Bulk("index");
    out.Integer(index);
    out.Bulk("find_keys");
    out.MapHeader(2);
    out.Bulk("type");
    out.Bulk(keynum ? "keynum" : "range");
    out.Bulk("spec");
    out.MapHeader(3);
    out.Bulk(keynum ? "keynumidx" : "lastkey");
    out.Integer(last_or_keynumidx);
    out.Bulk(keynum ? "firstkey" : "keystep");
    out.Integer(step_or_firstkey);
    out.Bulk(keynum ? "keystep" : "limit");
    out.Integer(limit_or_keystep);
  };
  // Keys after a count argument (EVAL script numkeys key ...: numkeys at 2; SINTERCARD numkeys
  // key ...: at 1): keynum specs. MIGRATE's keys depend on its arguments: as Redis, the key
  // argument (the KEYS form is left to COMMAND GETKEYS).
  if (cmd.name == "eval" || cmd.name == "evalsha" || cmd.name == "eval_ro" || cmd.name == "evalsha_ro" ||
      cmd.name == "fcall" || cmd.name == "fcall_ro") {
    out.ArrayHeader(1);
    return spec(first, 2, true, 0, 1, 1);
  }
  if (cmd.name == "blmpop" || cmd.name == "bzmpop") {
    out.ArrayHeader(1);
    return spec(first, 2, true, 0, 1, 1);
  }
  if (cmd.name == "sintercard" || cmd.name == "lmpop" || cmd.name == "zmpop" || cmd.name == "zunion" ||
      cmd.name == "zinter" || cmd.name == "zdiff" || cmd.name == "zintercard") {
    out.ArrayHeader(1);
    return spec(first, 1, true, 0, 1, 1);
  }
  // A key found after a keyword (MIGRATE's KEYS, GEORADIUS's STORE): a keyword spec.
  auto keyword_spec = [&out](std::initializer_list<std::string_view> flags, std::string_view keyword, int64_t startfrom,
                             int64_t lastkey) {
    out.MapHeader(3);
    out.Bulk("flags");
    out.SetHeader(flags.size());
    for (std::string_view f : flags) out.SimpleString(f);
    out.Bulk("begin_search");
    out.MapHeader(2);
    out.Bulk("type");
    out.Bulk("keyword");
    out.Bulk("spec");
    out.MapHeader(2);
    out.Bulk("keyword");
    out.Bulk(keyword);
    out.Bulk("startfrom");
    out.Integer(startfrom);
    out.Bulk("find_keys");
    out.MapHeader(2);
    out.Bulk("type");
    out.Bulk("range");
    out.Bulk("spec");
    out.MapHeader(3);
    out.Bulk("lastkey");
    out.Integer(lastkey);
    out.Bulk("keystep");
    out.Integer(1);
    out.Bulk("limit");
    out.Integer(0);
  };
  if (cmd.name == "migrate") {  // the key argument, or (incomplete: it may be empty) the keys after KEYS
    out.ArrayHeader(2);
    spec(first, 3, false, 0, 1, 0);
    return keyword_spec({"RW", "access", "delete", "incomplete"}, "KEYS", -2, -1);
  }
  if (cmd.name == "georadius" || cmd.name == "georadiusbymember") {  // key, STORE dst, STOREDIST dst
    const int64_t from = cmd.name == "georadius" ? 6 : 5;
    out.ArrayHeader(3);
    spec(first, 1, false, 0, 1, 0);
    keyword_spec({"OW", "update"}, "STORE", from, 0);
    return keyword_spec({"OW", "update"}, "STOREDIST", from, 0);
  }
  if (cmd.first_key <= 0) return out.ArrayHeader(0);
  // Range specs from the table's first / last / step; a second one when the keys after the first
  // have other flags (COPY, RENAME, BITOP).
  auto last_of = [](int64_t begin, int64_t last) { return last < 0 ? last : last - begin; };
  if (rest.empty() || rest == first) {
    out.ArrayHeader(1);
    return spec(first, cmd.first_key, false, last_of(cmd.first_key, cmd.last_key), cmd.key_step, 0);
  }
  out.ArrayHeader(2);
  spec(first, cmd.first_key, false, 0, 1, 0);
  const int64_t second = cmd.first_key + cmd.key_step;
  spec(rest, second, false, last_of(second, cmd.last_key), cmd.key_step, 0);
}

AclDenial AclCheck(const AclUser& user, const Command& cmd, const Command* sub,
                   std::span<const std::string_view> args, size_t* arg_index) {
  const Command& run = sub != nullptr ? *sub : cmd;
  if (!user.all_commands && (cmd.flags & kNoAuth) == 0) {
    const bool allowed = run.id < user.commands.size() && user.commands[run.id] != 0;
    if (!allowed) {
      auto it = user.first_args.find(run.id);
      const size_t idx = sub != nullptr ? 2 : 1;
      if (it == user.first_args.end() || args.size() <= idx) return AclDenial::kCommand;
      const bool match = std::any_of(it->second.begin(), it->second.end(),
                                     [&](const std::string& a) { return EqualsIgnoreCase(a, args[idx]); });
      if (!match) return AclDenial::kCommand;
    }
  }
  if (!user.all_keys) {
    for (const KeyRef& key : CommandKeys(run, args)) {
      uint8_t need = 0;
      for (std::string_view f : key.flags) {
        if (f == "access") need |= AclUser::kKeyRead;
        if (f == "update" || f == "insert" || f == "delete") need |= AclUser::kKeyWrite;
      }
      const bool ok = std::any_of(user.keys.begin(), user.keys.end(), [&](const AclUser::KeyPattern& p) {
        return (p.perms & need) == need && GlobMatch(p.pattern, args[key.index]);
      });
      if (!ok) {
        *arg_index = key.index;
        return AclDenial::kKey;
      }
    }
  }
  // Channels (Redis's ACLCheckChannelAgainstList): a channel must match one of the user's
  // patterns; a PSUBSCRIBE pattern must be one of them, literally. Unsubscribing is never refused.
  if (!user.all_channels) {
    const std::string_view name = cmd.name;
    const bool literal = name == "psubscribe";
    size_t first = 0;
    size_t last = 0;  // exclusive
    if (name == "publish" || name == "spublish") {
      first = 1;
      last = 2;
    } else if (name == "subscribe" || name == "ssubscribe" || literal) {
      first = 1;
      last = args.size();
    }
    for (size_t i = first; i < last && i < args.size(); ++i) {
      if (!AclChannelAllowed(user, args[i], literal)) {
        *arg_index = i;
        return AclDenial::kChannel;
      }
    }
  }
  return AclDenial::kNone;
}

bool AclChannelAllowed(const AclUser& user, std::string_view channel, bool literal) {
  if (user.all_channels) return true;
  return std::any_of(user.channels.begin(), user.channels.end(),
                     [&](const std::string& p) { return literal ? p == channel : GlobMatch(p, channel); });
}

// ---- Rules -------------------------------------------------------------------------------------

namespace {

std::atomic<bool> pubsub_default_all{false};  // acl-pubsub-default allchannels

void SetCommand(AclUser& u, const Entry& e, bool allow) {
  u.commands[e.cmd->id] = allow ? 1 : 0;
  if (!allow) u.all_commands = false;
  u.first_args.erase(e.cmd->id);
  for (const Command& sub : e.cmd->subcommands) {
    u.commands[sub.id] = allow ? 1 : 0;
  }
}

void SetCategory(AclUser& u, int category, bool allow) {
  for (const Entry& e : Entries()) {
    if ((e.categories & (1u << category)) != 0) SetCommand(u, e, allow);
  }
}

void SetAllCommands(AclUser& u, bool allow) {
  std::fill(u.commands.begin(), u.commands.end(), allow ? 1 : 0);
  u.all_commands = allow;
  u.future_commands = allow;
  u.first_args.clear();
}

const Entry* FindEntry(std::string_view fullname) {
  for (const Entry& e : Entries()) {
    if (EqualsIgnoreCase(e.fullname, fullname)) return &e;
  }
  return nullptr;
}

bool HasSpaces(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char ch) { return ch == ' ' || ch == '\0' || ch == '\t' || ch == '\n' || ch == '\r'; });
}

bool ValidHash(std::string_view h) {
  return h.size() == 64 && std::all_of(h.begin(), h.end(), [](char ch) {
           return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
         });
}

constexpr std::string_view kUnknown = "Unknown command or category name in ACL";

// The stored form of a password rule: ">pw" / "<pw" hash the cleartext, "#h" / "!h" give the hash.
std::string PasswordHash(std::string_view op, std::string* hash) {
  if (op[0] == '>' || op[0] == '<') {
    *hash = Sha256Hex(op.substr(1));
    return {};
  }
  if (!ValidHash(op.substr(1))) {
    return "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters";
  }
  *hash = std::string(op.substr(1));
  return {};
}
constexpr std::string_view kSyntaxError = "Syntax error";

// Applies one rule; "" or the reason (Redis's ACLSetUserStringError texts).
std::string ApplyRule(AclUser& u, std::string_view op) {
  if (op.empty()) return {};
  auto is = [&](std::string_view w) { return EqualsIgnoreCase(op, w); };
  if (is("on")) {
    u.enabled = true;
  } else if (is("off")) {
    u.enabled = false;
  } else if (is("skip-sanitize-payload")) {
    u.sanitize_payload = 2;
  } else if (is("sanitize-payload")) {
    u.sanitize_payload = 1;
  } else if (is("nopass")) {
    u.nopass = true;
    u.passwords.clear();
  } else if (is("resetpass")) {
    u.nopass = false;
    u.passwords.clear();
  } else if (op[0] == '>' || op[0] == '#') {
    std::string hash;
    if (std::string err = PasswordHash(op, &hash); !err.empty()) return err;
    if (std::find(u.passwords.begin(), u.passwords.end(), hash) == u.passwords.end()) u.passwords.push_back(hash);
    u.nopass = false;
  } else if (op[0] == '<' || op[0] == '!') {
    std::string hash;
    if (std::string err = PasswordHash(op, &hash); !err.empty()) return err;
    auto it = std::find(u.passwords.begin(), u.passwords.end(), hash);
    if (it == u.passwords.end()) return "The password you are trying to remove from the user does not exist";
    u.passwords.erase(it);
  } else if (op[0] == '(') {
    return "keg has no ACL selectors: give the user's permissions without parentheses";
  } else if (is("clearselectors")) {
    // No selectors: nothing to clear.
  } else if (is("reset")) {
    u.nopass = false;
    u.passwords.clear();
    u.all_keys = false;
    u.keys.clear();
    u.all_channels = pubsub_default_all.load(std::memory_order_relaxed);  // (Redis's reset)
    u.channels.clear();
    u.enabled = false;
    u.sanitize_payload = 1;
    SetAllCommands(u, false);
  } else if (is("allkeys") || op == "~*") {
    u.all_keys = true;
    u.keys.clear();
  } else if (is("resetkeys")) {
    u.all_keys = false;
    u.keys.clear();
  } else if (is("allchannels") || op == "&*") {
    u.all_channels = true;
    u.channels.clear();
  } else if (is("resetchannels")) {
    u.all_channels = false;
    u.channels.clear();
  } else if (is("allcommands") || is("+@all")) {
    SetAllCommands(u, true);
  } else if (is("nocommands") || is("-@all")) {
    SetAllCommands(u, false);
  } else if (op[0] == '~' || op[0] == '%') {
    if (u.all_keys) {
      return "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have "
             "any effect. Try 'resetkeys' to start with an empty list of patterns";
    }
    uint8_t perms = 0;
    size_t offset = 1;
    if (op[0] == '%') {
      bool ok = true;
      for (; offset < op.size(); ++offset) {
        const char ch = static_cast<char>(std::toupper(static_cast<unsigned char>(op[offset])));
        if (ch == 'R' && (perms & AclUser::kKeyRead) == 0) {
          perms |= AclUser::kKeyRead;
        } else if (ch == 'W' && (perms & AclUser::kKeyWrite) == 0) {
          perms |= AclUser::kKeyWrite;
        } else if (op[offset] == '~') {
          ++offset;
          break;
        } else {
          ok = false;
          break;
        }
      }
      if (perms == 0 || !ok) return std::string(kSyntaxError);
    } else {
      perms = AclUser::kKeyRead | AclUser::kKeyWrite;
    }
    const std::string_view pattern = op.substr(std::min(offset, op.size()));
    if (HasSpaces(pattern)) return std::string(kSyntaxError);
    auto it = std::find_if(u.keys.begin(), u.keys.end(), [&](const AclUser::KeyPattern& p) { return p.pattern == pattern; });
    if (it == u.keys.end()) {
      u.keys.push_back({std::string(pattern), perms});
    } else {
      it->perms |= perms;
    }
    u.all_keys = false;
  } else if (op[0] == '&') {
    if (u.all_channels) {
      return "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not "
             "have any effect. Try 'resetchannels' to start with an empty list of channels";
    }
    const std::string_view pattern = op.substr(1);
    if (HasSpaces(pattern)) return std::string(kSyntaxError);
    if (std::find(u.channels.begin(), u.channels.end(), pattern) == u.channels.end()) {
      u.channels.emplace_back(pattern);
    }
    u.all_channels = false;
  } else if ((op[0] == '+' || op[0] == '-') && op.size() > 1 && op[1] == '@') {
    const int cat = CategoryIndex(op.substr(2));
    if (cat < 0) return std::string(kUnknown);
    SetCategory(u, cat, op[0] == '+');
  } else if (op[0] == '+') {
    const std::string_view name = op.substr(1);
    const size_t bar = name.rfind('|');
    if (bar == std::string_view::npos) {
      const Entry* e = FindEntry(name);
      if (e == nullptr) return std::string(kUnknown);
      SetCommand(u, *e, true);
    } else {
      const Entry* parent = FindEntry(name.substr(0, bar));
      if (parent == nullptr) return std::string(kUnknown);
      if (parent->parent != nullptr) return "Allowing first-arg of a subcommand is not supported";
      if (bar + 1 == name.size()) return std::string(kSyntaxError);
      if (!parent->cmd->subcommands.empty()) {
        const Entry* e = FindEntry(name);
        if (e == nullptr) return std::string(kUnknown);
        SetCommand(u, *e, true);
      } else {
        // A first argument of a command without subcommands (+select|0): allowed with it only.
        auto& args = u.first_args[parent->cmd->id];
        const std::string first = ToLower(name.substr(bar + 1));
        if (std::find(args.begin(), args.end(), first) == args.end()) args.push_back(first);
      }
    }
  } else if (op[0] == '-') {
    const Entry* e = FindEntry(op.substr(1));
    if (e == nullptr) return std::string(kUnknown);
    SetCommand(u, *e, false);
  } else {
    return std::string(kSyntaxError);
  }
  return {};
}

AclUser NewUser(std::string_view name) {
  AclUser u;
  u.name = std::string(name);
  u.commands.assign(CommandIdCount(), 0);
  u.all_channels = pubsub_default_all.load(std::memory_order_relaxed);
  return u;
}

AclUser DefaultUser() {
  AclUser d = NewUser("default");
  d.enabled = true;
  d.nopass = true;
  d.all_keys = true;
  d.all_channels = true;
  SetAllCommands(d, true);
  return d;
}

}  // namespace

// ---- Registry ----------------------------------------------------------------------------------

AclRegistry::AclRegistry() { users_.emplace("default", std::make_shared<const AclUser>(DefaultUser())); }

void SetAclPubsubDefault(bool all_channels) { pubsub_default_all.store(all_channels, std::memory_order_relaxed); }

std::string AclRegistry::LoadFile(const std::string& path, std::string_view shown) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "Error loading ACLs, opening file '" + path + "': " + std::strerror(errno);
  std::map<std::string, std::shared_ptr<const AclUser>, std::less<>> users;
  std::string errors;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const size_t first = line.find_first_not_of(" \t\r\n");
    if (first == std::string::npos) continue;  // blank
    const size_t last = line.find_last_not_of(" \t\r\n");
    const std::vector<std::string> words = SplitWords(std::string_view(line).substr(first, last - first + 1));
    const std::string where = std::string(shown) + ":" + std::to_string(number);
    if (words.size() < 2 || words[0] != "user") {
      errors += where + " should start with user keyword followed by the username. ";
      continue;
    }
    if (users.contains(words[1])) {
      errors += "WARNING: Duplicate user '" + words[1] + "' found on line " + std::to_string(number) + ". ";
      continue;
    }
    AclUser u = NewUser(words[1]);
    for (size_t i = 2; i < words.size(); ++i) {
      if (std::string err = ApplyRule(u, words[i]); !err.empty()) {
        errors += where + ": Error in applying operation '" + words[i] + "': " + err + ". ";
        break;  // (what follows may depend on it)
      }
    }
    users.emplace(words[1], std::make_shared<const AclUser>(std::move(u)));
  }
  if (!errors.empty()) {
    return errors + "WARNING: ACL errors detected, no change to the previously active ACL rules was performed";
  }
  if (!users.contains("default")) users.emplace("default", std::make_shared<const AclUser>(DefaultUser()));
  std::lock_guard lock(mu_);
  users_.swap(users);
  version_.fetch_add(1, std::memory_order_release);
  return {};
}

bool AclRegistry::SaveFile(const std::string& path) const {
  std::string text;
  for (const auto& u : Users()) text += "user " + u->name + " " + Describe(*u) + "\n";
  // (A temporary file, fsynced, renamed over the old one, the directory synced.)
  if (const store::Status s = store::io::ReplaceFile(path, text); !s.ok()) {
    spdlog::warn("ACL SAVE: {}", s.ToString());
    return false;
  }
  return true;
}

AclRegistry::LogEntry AclDenialEntry(AclDenial denial, const Command& cmd, const Command* sub,
                                     std::span<const std::string_view> args, size_t index, std::string context,
                                     std::string username) {
  AclRegistry::LogEntry e;
  e.reason = denial == AclDenial::kCommand ? "command" : denial == AclDenial::kKey ? "key" : "channel";
  e.context = std::move(context);
  e.object = denial != AclDenial::kCommand ? std::string(args[index])
             : sub != nullptr               ? std::string(cmd.name) + "|" + std::string(sub->name)
                                            : std::string(cmd.name);
  e.username = std::move(username);
  e.ctime_ms = store::NowMs();
  return e;
}

std::string AclRegistry::SetUser(std::string_view name, std::span<const std::string_view> rules) {
  if (HasSpaces(name)) return "Usernames can't contain spaces or null characters";
  std::lock_guard lock(mu_);
  auto it = users_.find(name);
  AclUser u = it != users_.end() ? *it->second : NewUser(name);
  for (std::string_view rule : rules) {
    const std::string err = ApplyRule(u, rule);
    if (!err.empty()) return "Error in ACL SETUSER modifier '" + std::string(rule) + "': " + err;
  }
  auto shared = std::make_shared<const AclUser>(std::move(u));
  if (it != users_.end()) {
    it->second = std::move(shared);
  } else {
    users_.emplace(std::string(name), std::move(shared));
  }
  version_.fetch_add(1, std::memory_order_release);
  return {};
}

int AclRegistry::DeleteUsers(std::span<const std::string_view> names) {
  std::lock_guard lock(mu_);
  int deleted = 0;
  for (std::string_view n : names) {
    if (n == "default") continue;
    auto it = users_.find(n);
    if (it == users_.end()) continue;
    users_.erase(it);
    ++deleted;
  }
  if (deleted > 0) version_.fetch_add(1, std::memory_order_release);
  return deleted;
}

std::shared_ptr<const AclUser> AclRegistry::Get(std::string_view name) const {
  std::lock_guard lock(mu_);
  auto it = users_.find(name);
  return it == users_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<const AclUser>> AclRegistry::Users() const {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<const AclUser>> out;
  for (const auto& [name, u] : users_) out.push_back(u);
  return out;
}

bool AclRegistry::CheckCredentials(std::string_view name, std::string_view pass) const {
  const std::shared_ptr<const AclUser> u = Get(name);
  if (u == nullptr || !u->enabled) return false;
  if (u->nopass) return true;
  const std::string hash = Sha256Hex(pass);
  bool match = false;
  for (const std::string& p : u->passwords) {
    unsigned char diff = 0;  // constant time
    for (size_t i = 0; i < hash.size() && i < p.size(); ++i) diff |= static_cast<unsigned char>(hash[i] ^ p[i]);
    match |= diff == 0 && p.size() == hash.size();
  }
  return match;
}

void AclRegistry::SetDefaultPassword(std::string_view pass) {
  {
    std::lock_guard lock(mu_);
    if (pass == applied_requirepass_) return;
    applied_requirepass_ = std::string(pass);
  }
  const std::string rule = pass.empty() ? std::string("nopass") : ">" + std::string(pass);
  const std::string_view rules[] = {"resetpass", rule};
  SetUser("default", rules);
}

std::string AclRegistry::DescribeCommands(const AclUser& u) {
  // Redis's ACLDescribeSelectorCommandRules: start from +@all or -@all, apply the categories that
  // fit best, then single commands, checking each step against a scratch user.
  AclUser fake = NewUser("");
  AclUser temp = u;
  const bool additive = !u.future_commands;
  std::string rules = additive ? "-@all " : "+@all ";
  SetAllCommands(fake, !additive);
  std::vector<bool> applied(std::size(kCategories), false);
  while (true) {
    int best = -1;
    uint64_t mindiff = INT_MAX;
    uint64_t maxsame = 0;
    for (size_t j = 0; j < std::size(kCategories); ++j) {
      if (applied[j]) continue;
      uint64_t on = 0;
      uint64_t off = 0;
      for (const Entry& e : Entries()) {
        if ((e.categories & (1u << j)) == 0) continue;
        (temp.commands[e.cmd->id] != 0 ? on : off) += 1;
      }
      const uint64_t diff = additive ? off : on;
      const uint64_t same = additive ? on : off;
      if (same > diff && (diff < mindiff || (diff == mindiff && same > maxsame))) {
        best = static_cast<int>(j);
        mindiff = diff;
        maxsame = same;
      }
    }
    if (best < 0) break;
    SetCategory(fake, best, additive);
    SetCategory(temp, best, !additive);
    rules += std::string(additive ? "+@" : "-@") + std::string(kCategories[static_cast<size_t>(best)]) + " ";
    applied[static_cast<size_t>(best)] = true;
  }
  for (const Entry& e : Entries()) {
    const bool userbit = u.commands[e.cmd->id] != 0;
    const bool fakebit = fake.commands[e.cmd->id] != 0;
    if (userbit != fakebit) {
      rules += (userbit ? "+" : "-") + e.fullname + " ";
      SetCommand(fake, e, userbit);
    }
    if (!userbit) {
      if (auto it = u.first_args.find(e.cmd->id); it != u.first_args.end()) {
        for (const std::string& a : it->second) rules += "+" + e.fullname + "|" + a + " ";
      }
    }
  }
  if (!rules.empty()) rules.pop_back();
  return rules;
}

std::string AclRegistry::DescribeKeys(const AclUser& u) {
  if (u.all_keys) return "~*";
  std::string s;
  for (const AclUser::KeyPattern& p : u.keys) {
    if (!s.empty()) s += ' ';
    if (p.perms == (AclUser::kKeyRead | AclUser::kKeyWrite)) {
      s += "~";
    } else {
      s += (p.perms == AclUser::kKeyRead) ? "%R~" : "%W~";
    }
    s += p.pattern;
  }
  return s;
}

std::string AclRegistry::DescribeChannels(const AclUser& u) {
  if (u.all_channels) return "&*";
  std::string s;
  for (const std::string& c : u.channels) s += (s.empty() ? "&" : " &") + c;
  return s;
}

std::string AclRegistry::Describe(const AclUser& u) {
  std::string s = u.enabled ? "on " : "off ";
  if (u.nopass) s += "nopass ";
  if (u.sanitize_payload == 2) s += "skip-sanitize-payload ";
  if (u.sanitize_payload == 1) s += "sanitize-payload ";
  for (const std::string& p : u.passwords) s += "#" + p + " ";
  const std::string keys = DescribeKeys(u);
  if (!keys.empty()) s += keys + " ";
  if (u.all_channels) {
    s += "&* ";
  } else {
    s += "resetchannels ";
    for (const std::string& c : u.channels) s += "&" + c + " ";
  }
  return s + DescribeCommands(u);
}

void AclRegistry::Log(LogEntry entry) {
  std::lock_guard lock(log_mu_);
  // Redis's grouping: the same reason, context, object and user within 60 s count as one entry
  // (among the 10 newest).
  for (size_t i = 0; i < log_.size() && i < 10; ++i) {
    LogEntry& e = log_[i];
    if (e.reason == entry.reason && e.context == entry.context && e.object == entry.object &&
        e.username == entry.username && std::llabs(e.ctime_ms - entry.ctime_ms) <= 60000) {
      e.client_info = std::move(entry.client_info);
      e.ctime_ms = entry.ctime_ms;
      ++e.count;
      LogEntry moved = std::move(e);
      log_.erase(log_.begin() + static_cast<std::ptrdiff_t>(i));
      log_.push_front(std::move(moved));
      return;
    }
  }
  log_.push_front(std::move(entry));
  const auto max = static_cast<size_t>(std::max<int64_t>(log_max_len.load(std::memory_order_relaxed), 0));
  while (log_.size() > max) log_.pop_back();
}

std::vector<AclRegistry::LogEntry> AclRegistry::LogEntries(size_t count) const {
  std::lock_guard lock(log_mu_);
  return std::vector<LogEntry>(log_.begin(), log_.begin() + static_cast<std::ptrdiff_t>(std::min(count, log_.size())));
}

void AclRegistry::ResetLog() {
  std::lock_guard lock(log_mu_);
  log_.clear();
}

}  // namespace keg::server
