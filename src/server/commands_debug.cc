// DEBUG: the subcommands Redis's test suite uses, behind enable-debug-command as in Redis (the
// default `no` refuses DEBUG; `local` allows it from loopback connections only).
//
// keg's log is its save file, so RELOAD and LOADAOF have nothing to load: they make everything
// durable (fsync) and reply OK; every key is unchanged, which is what callers check.
#include <cctype>
#include <csignal>
#include <openssl/evp.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "resp/numbers.h"
#include "server/command.h"
#include "server/config.h"
#include "server/list.h"
#include "server/rdb.h"
#include "server/replication.h"
#include "server/session.h"
#include "server/small_collection.h"
#include "store/format.h"
#include "server/state.h"

namespace keg::server {
namespace {

// Redis's DEBUG DIGEST building blocks (debug.c): xor in the SHA1 of `data`, or mix it in
// (digest = SHA1(digest xor SHA1(data))) where order matters.
using Digest = std::array<unsigned char, 20>;

void XorDigest(Digest& d, std::string_view data) {
  unsigned char hash[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), hash, &len, EVP_sha1(), nullptr);
  for (size_t j = 0; j < d.size(); ++j) d[j] ^= hash[j];
}

void MixDigest(Digest& d, std::string_view data) {
  XorDigest(d, data);
  unsigned int len = 0;
  unsigned char hash[EVP_MAX_MD_SIZE];
  EVP_Digest(d.data(), d.size(), hash, &len, EVP_sha1(), nullptr);
  std::memcpy(d.data(), hash, d.size());
}

// Redis's xorObjectDigest: the type (big endian), then a string's bytes, a set's members (each
// xored in: order does not matter), a hash's fields with their values (each pair mixed on its
// own, then xored in), and whether it expires.
void ValueDigest(store::Store& st, Digest& d, const store::ValueView& v, bool expires) {
  const char type[4] = {0, 0, 0, static_cast<char>(v.type)};
  MixDigest(d, std::string_view(type, 4));
  coll::View elements;
  std::vector<store::ElementView> large;
  std::vector<std::shared_ptr<const void>> pins;
  std::vector<store::ValueView> list;
  if (v.kind == store::format::kKindHead && v.type == store::format::kTypeList) {  // in order
    store::Status s;
    st.ReadTogether([&] { s = ListElements(st, store::format::IncarnationOf(v.value), &list); });
    for (const store::ValueView& e : list) elements.elements.push_back(e.value);
  } else if (v.kind == store::format::kKindHead) {  // per element: the same entries as stored whole
    if (st.ReadElements(store::format::IncarnationOf(v.value), &large, &pins).ok()) {
      for (const store::ElementView& e : large) {
        elements.elements.push_back(e.member);
        if (v.type == store::format::kTypeHash || v.type == store::format::kTypeZset) {
          elements.elements.push_back(e.value);
        }
      }
    }
  }
  if (v.type == store::format::kTypeString ||
      (v.kind != store::format::kKindHead && !coll::Decode(v.value, &elements))) {
    MixDigest(d, v.value);
  } else if (v.type == store::format::kTypeList) {  // order matters: each element mixed in turn
    for (std::string_view e : elements.elements) MixDigest(d, e);
  } else if (v.type == store::format::kTypeHash || v.type == store::format::kTypeZset) {
    for (size_t i = 0; i + 1 < elements.elements.size(); i += 2) {
      Digest pair{};
      MixDigest(pair, elements.elements[i]);
      std::string_view second = elements.elements[i + 1];
      char score_text[40];
      double score = 0;
      if (v.type == store::format::kTypeZset && store::format::DecodeScore(second, &score)) {
        // A sorted set's score as Redis mixes it in: "%.17g".
        const int n = std::snprintf(score_text, sizeof(score_text), "%.17g", score);
        second = std::string_view(score_text, static_cast<size_t>(n));
      }
      MixDigest(pair, second);
      XorDigest(d, std::string_view(reinterpret_cast<const char*>(pair.data()), pair.size()));
    }
  } else {
    for (std::string_view m : elements.elements) XorDigest(d, m);
  }
  if (expires) XorDigest(d, "!!expire!!");
}

std::string Hex(const Digest& d) {
  std::string out;
  char buf[3];
  for (unsigned char b : d) {
    std::snprintf(buf, sizeof(buf), "%02x", b);
    out += buf;
  }
  return out;
}

}  // namespace

std::string DatasetDigest(store::Store& st) {
  Digest final{};
  for (uint32_t db = 0; db < st.Databases(); ++db) {
    // A scan may visit a key twice (the keydir can grow meanwhile), and xor would cancel it out:
    // collect the keys first.
    std::unordered_map<std::string, bool> keys;  // key -> expires
    uint64_t cursor = 0;
    do {
      cursor = st.Scan(db, cursor, 1024, [&](std::string_view key, int64_t expire_at_ms) {
        keys.emplace(std::string(key), expire_at_ms != 0);
      });
    } while (cursor != 0);
    bool any = false;
    for (const auto& [key, expires] : keys) {
      store::ValueView v;
      if (!st.Get(db, key, &v).ok()) continue;
      if (!any) {  // the database's number, big-endian (Redis: htonl(j)), once it has a key
        const char id[4] = {static_cast<char>(db >> 24), static_cast<char>(db >> 16),
                            static_cast<char>(db >> 8), static_cast<char>(db)};
        MixDigest(final, std::string_view(id, 4));
        any = true;
      }
      Digest d{};
      MixDigest(d, key);
      ValueDigest(st, d, v, expires);
      // Redis's xorDigest(final, digest, 20): the SHA1 of the key's digest goes into the total.
      XorDigest(final, std::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
    }
  }
  return Hex(final);
}

namespace {

void DebugProtocol(Ctx& c) {
  const std::string name = ToLower(c.arg(2));
  resp::ReplyBuffer& out = c.out();
  const bool resp3 = c.out().protocol() == resp::Protocol::kResp3;  // a script's, inside one
  if (name == "string") return out.Bulk("Hello World");
  if (name == "integer") return out.Integer(12345);
  if (name == "double") return out.Double(3.141);
  if (name == "bignum") {
    return resp3 ? out.Raw("(1234567999999999999999999999999999999\r\n")
                 : out.Bulk("1234567999999999999999999999999999999");
  }
  if (name == "null") return out.Null();
  if (name == "array" || name == "set") {
    name == "array" ? out.ArrayHeader(3) : out.SetHeader(3);
    for (int j = 0; j < 3; ++j) out.Integer(j);
    return;
  }
  if (name == "map") {
    out.MapHeader(3);
    for (int j = 0; j < 3; ++j) {
      out.Integer(j);
      out.Boolean(j == 1);
    }
    return;
  }
  if (name == "attrib") {
    if (resp3) out.Raw("|1\r\n$14\r\nkey-popularity\r\n*2\r\n$7\r\nkey:123\r\n:90\r\n");
    return out.Bulk("Some real reply following the attribute");
  }
  if (name == "push") {
    if (!resp3) return c.Error("RESP2 is not supported by this command");
    out.Raw(">2\r\n$16\r\nserver-cpu-usage\r\n:42\r\n");
    return out.Bulk("Some real reply following the push reply");
  }
  if (name == "true") return out.Boolean(true);
  if (name == "false") return out.Boolean(false);
  if (name == "verbatim") return out.Verbatim("This is a verbatim\nstring");
  c.Error("Wrong protocol type name. Please use one of the following: "
          "string|integer|double|bignum|null|array|set|map|attrib|push|verbatim|true|false");
}

void Debug(Ctx& c) {
  const int mode = c.server().debug_command.load(std::memory_order_relaxed);
  if (mode == 0 || (mode == 2 && !c.client().link().loopback())) {
    return c.Error("DEBUG command not allowed. If the enable-debug-command option is set to "
                   "\"local\", you can run it from a local connection, otherwise you need to set "
                   "this option in the configuration file, and then restart the server.");
  }
  const std::string sub = ToLower(c.arg(1));
  if (sub == "help" && c.argc() == 2) {
    static constexpr std::string_view kLines[] = {
        "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "APPLY-PAUSE <microseconds>",
        "    (keg) Make the writer sleep this long before each keydir update of a group, and after.",
        "COLD-READ-DELAY <milliseconds>",
        "    (keg) Make every fetch of the cold-read pool wait this long first, as a slow disk would.",
        "DIGEST", "    Output a hex signature representing the current DB content (Redis's algorithm).",
        "DIGEST-VALUE <key> [<key> ...]", "    Output a hex signature of the values of all the specified keys.",
        "DROP-PAGE-CACHE",
        "    (keg) Evict the data files' clean pages from the page cache: the next reads are cold.",
        "HTSTATS <dbid>", "    Return the size of the keydir.",
        "LOADAOF", "    Flush the log to disk (keg has nothing to reload).",
        "OBJECT <key>", "    Show low level info about the `key` and associated value.",
        "PAUSE-CRON <0|1>",
        "    Stop periodic cron job processing.",
        "POPULATE <count> [<prefix>] [<size>]",
        "    Create <count> string keys named key:<num>. If <prefix> is specified then",
        "    it is used instead of the 'key' prefix. These are not propagated to",
        "    replicas. Cluster slots are not respected so keys not belonging to the",
        "    current node can be created in cluster mode.",
        "REPLICATE <command> [<arg> ...]",
        "    Send <command> to the replicas as if it were a write of this server (not run here).",
        "PROTOCOL <type>",
        "    Reply with a test value of the specified type. <type> can be: string,",
        "    integer, double, bignum, null, array, set, map, attrib, push, verbatim,",
        "    true, false.",
        "READ-GAP <microseconds>",
        "    (keg) Make a read of a large collection sleep this long between its head and elements.",
        "RELOAD", "    Flush the log to disk (keg's log is its save file).",
        "SEGFAULT", "    Crash the server with sigsegv.",
        "SET-ACTIVE-EXPIRE <0|1>",
        "    Setting it to 0 disables expiring keys in background when they are not",
        "    accessed (otherwise the Redis behavior). Setting it to 1 reenables back the",
        "    default.",
        "SLEEP <seconds>", "    Stop the server for <seconds>. Decimals allowed.",
        "HELP", "    Prints this help."};
    c.out().ArrayHeader(std::size(kLines));
    for (std::string_view l : kLines) c.out().SimpleString(l);
    return;
  }
  if (sub == "segfault" && c.argc() == 2) {
    // As Redis: the server dies of SIGSEGV, its crash report in the log (crash_report.h).
    spdlog::warn("DEBUG SEGFAULT: crashing the server on purpose");
    spdlog::default_logger()->flush();
    ::raise(SIGSEGV);
    return;
  }
  if (sub == "sleep" && c.argc() == 3) {
    // As Redis, this stops the thread that runs it (the connection's I/O thread).
    // Redis reads the number with strtod and sleeps 0 on garbage.
    const std::string text(c.arg(2));
    double secs = std::strtod(text.c_str(), nullptr);
    if (!std::isfinite(secs) || secs < 0) secs = 0;
    std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int64_t>(std::min(secs, 3600.0) * 1e6)));
    return c.out().Ok();
  }
  if (sub == "drop-page-cache" && c.argc() == 2) {
    c.server().store->DropPageCache();
    return c.out().Ok();
  }
  if (sub == "apply-pause" && c.argc() == 3) {
    int64_t us = 0;
    if (!resp::ParseInt64(c.arg(2), &us) || us < 0 || us > 1'000'000) return c.Error(err::kNotInteger);
    c.server().store->SetApplyPauseUs(static_cast<uint32_t>(us));
    return c.out().Ok();
  }
  if (sub == "read-gap" && c.argc() == 3) {
    int64_t us = 0;
    if (!resp::ParseInt64(c.arg(2), &us) || us < 0 || us > 1'000'000) return c.Error(err::kNotInteger);
    c.server().read_gap_us.store(static_cast<uint32_t>(us), std::memory_order_relaxed);
    return c.out().Ok();
  }
  if (sub == "cold-read-delay" && c.argc() == 3) {
    int64_t ms = 0;
    if (!resp::ParseInt64(c.arg(2), &ms) || ms < 0 || ms > 60'000) return c.Error(err::kNotInteger);
    if (c.server().cold_reads) c.server().cold_reads->set_delay_ms(ms);
    return c.out().Ok();
  }
  if (sub == "set-disable-deny-scripts" && c.argc() == 3) {
    int64_t on = 0;
    if (!resp::ParseInt64(c.arg(2), &on)) return c.Error(err::kNotInteger);
    c.server().script_allow_denied.store(on != 0, std::memory_order_relaxed);
    return c.out().Ok();
  }
  if (sub == "pause-cron" && c.argc() == 3) {
    int64_t on = 0;
    if (!resp::ParseInt64(c.arg(2), &on)) return c.Error(err::kNotInteger);
    c.server().cron_paused.store(on != 0, std::memory_order_relaxed);
    return c.out().Ok();
  }
  if (sub == "quicklist-packed-threshold" && c.argc() == 3) {
    // Redis's threshold for storing a list element in a node of its own (a plain node). keg keeps
    // every element of a large list in a record of its own whatever its size: accepted, no effect.
    int64_t bytes = 0;
    std::string_view arg = c.arg(2);
    if (arg.size() > 1 && (arg.back() == 'b' || arg.back() == 'B') && std::isdigit(static_cast<unsigned char>(arg[arg.size() - 2])) != 0) {
      arg.remove_suffix(1);  // "1b": bytes, as Redis's memtoull
    }
    if (!ParseMemory(arg, &bytes) || bytes < 0 || bytes > (int64_t{1} << 32) - (int64_t{1} << 20)) {
      return c.Error("argument must be a memory value bigger than 1 and smaller than 4gb");
    }
    return c.out().Ok();
  }
  if (sub == "set-active-expire" && c.argc() == 3) {
    int64_t on = 0;
    if (!resp::ParseInt64(c.arg(2), &on)) return c.Error(err::kNotInteger);
    c.server().store->SetActiveExpire(on != 0);
    return c.out().Ok();
  }
  if (sub == "protocol" && c.argc() == 3) return DebugProtocol(c);
  if (sub == "reload" && c.argc() >= 3) {
    // Redis reloads its RDB; NOFLUSH without MERGE loads the functions over the existing ones and
    // fails when there are any. keg's data never leaves its log, so only that outcome is emulated.
    bool noflush = false;
    bool merge = false;
    for (size_t i = 2; i < c.argc(); ++i) {
      noflush |= EqualsIgnoreCase(c.arg(i), "noflush");
      merge |= EqualsIgnoreCase(c.arg(i), "merge");
    }
    if (noflush && !merge && c.server().scripts->functions().library_count() > 0) {
      return c.Error("Error trying to load the RDB dump, check server logs.");
    }
  }
  if ((sub == "reload" || sub == "loadaof") && c.argc() >= 2) {
    // An fsync on the writer; this connection waits for it, its I/O thread does not.
    return c.server().store->SyncAsync(ReplyOkWhenDone(c));
  }
  if (sub == "digest" && c.argc() == 2) return c.out().SimpleString(DatasetDigest(*c.server().store));
  if (sub == "digest-value" && c.argc() >= 2) {
    c.out().ArrayHeader(c.argc() - 2);
    for (size_t i = 2; i < c.argc(); ++i) {
      Digest d{};
      store::ValueView v;
      store::Status s;
      // The key and a large collection's elements as of one moment (a group replacing the key
      // between them digested a collection without its elements).
      c.ReadTogether(2, [&] {
        d = Digest{};
        s = c.Get(c.arg(i), &v);
        if (s.ok()) ValueDigest(*c.server().store, d, v, v.expire_at_ms != 0);
      });
      if (!c.AccountRead(std::move(s), c.arg(i))) d = Digest{};
      c.out().SimpleString(Hex(d));
    }
    return;
  }
  if (sub == "populate" && c.argc() >= 3 && c.argc() <= 5) {
    // DEBUG POPULATE count [prefix] [size]: keys prefix:0.. with "value:N" (padded with zeros
    // or cut to `size`), skipping keys that exist; one batch, replied once durable.
    int64_t count = 0;
    int64_t size = 0;
    if (!resp::ParseInt64(c.arg(2), &count) || count < 0) {
      return c.Error("value is out of range, must be positive");
    }
    if (c.argc() == 5 && (!resp::ParseInt64(c.arg(4), &size) || size < 0)) {
      return c.Error("value is out of range, must be positive");
    }
    if (size > c.server().proto_max_bulk_len.load()) return c.Error(err::kTooBig);
    const std::string prefix = c.argc() >= 4 ? std::string(c.arg(3)) : std::string("key");
    store::WriteBatch batch;
    batch.SelectDb(c.db());  // the client's database, as Redis's
    for (int64_t j = 0; j < count; ++j) {
      std::string value = "value:" + std::to_string(j);
      if (size > 0) value.resize(static_cast<size_t>(size), '\0');
      batch.Put(prefix + ":" + std::to_string(j), std::move(value), 0, store::PutCondition::kIfAbsent);
    }
    auto done = ReplyOkWhenDone(c);
    c.server().store->Write(std::move(batch),
                            [done](const store::Status& s, std::vector<store::OpResult>) { done(s); });
    return;
  }
  if (sub == "htstats" && c.argc() >= 3) {
    int64_t db = 0;
    if (!resp::ParseInt64(c.arg(2), &db)) return c.Error(err::kNotInteger);
    if (db < 0 || db >= static_cast<int64_t>(c.server().store->Databases())) return c.Error("Out of range database");
    const auto index = static_cast<uint32_t>(db);
    return c.out().Verbatim("[Dictionary HT]\nkeg keydir: " + std::to_string(c.server().store->KeyCount(index)) +
                            " keys\n[Expires HT]\nkeys with an expiry: " +
                            std::to_string(c.server().store->ExpiringKeys(index)) + "\n");
  }
  if (sub == "replicate" && c.argc() >= 3) {
    // Redis's test hook: the command goes to the replication stream only, at its end now (as
    // Redis feeds it to its replicas in the stream's current database).
    if (c.server().repl.active()) {
      std::string resp;
      AppendCommand(&resp, c.args().subspan(2));
      c.server().repl.Append(ReplicationFeed::kNoDb, resp);
    }
    return c.out().Ok();
  }
  if (sub == "object" && c.argc() == 3) {
    // As Redis's, from the data set as it is: a key past its expiry that is still held (a
    // replica's, until its primary's DEL) is shown too.
    store::ValueView v;
    const store::Status s = c.server().store->GetEvenIfExpired(c.db(), c.arg(2), &v);
    if (s.IsNotFound()) return c.Error(err::kNoSuchKey);
    if (!s.ok()) return c.out().Error(CorruptionError(s));
    return c.out().SimpleString(
        "Value at:0x0 refcount:1 encoding:" + std::string(ValueEncoding(v)) +
        " serializedlength:" + std::to_string(rdb::DumpString(v.value).size() - 11) + " lru:0 lru_seconds_idle:" +
        std::to_string(c.server().access.IdleSeconds(c.arg(2), store::NowMs(), c.server().start_ms)));
  }
  c.Error("unknown subcommand or wrong number of arguments for '" +
          std::string(c.arg(1)).substr(0, 128) + "'. Try DEBUG HELP.");
}

}  // namespace

std::string_view StringEncoding(std::string_view value) {
  int64_t v = 0;
  if (value.size() <= 20 && resp::ParseInt64(value, &v)) return "int";
  return value.size() <= 44 ? "embstr" : "raw";
}

std::string_view ValueEncoding(const store::ValueView& v) {
  if (v.type == store::format::kTypeString) return StringEncoding(v.value);
  if (v.type == store::format::kTypeList) return "quicklist";  // as Redis 7.0 reports every list
  if (v.type == store::format::kTypeZset) {
    // Stored whole only while small (never marked converted), except EXEC's copy of a large one.
    const bool converted = !v.value.empty() && (static_cast<uint8_t>(v.value[0]) & coll::kConverted) != 0;
    return v.kind == store::format::kKindHead || converted ? "skiplist" : "listpack";
  }
  if (v.kind == store::format::kKindHead) return "hashtable";  // stored per element: past the thresholds
  const bool converted = !v.value.empty() && (static_cast<uint8_t>(v.value[0]) & coll::kConverted) != 0;
  switch (v.type) {
    case store::format::kTypeHash:
      return converted ? "hashtable" : "listpack";
    case store::format::kTypeSet:
      return converted ? "hashtable" : "intset";
    default:
      return "unknown";
  }
}

std::string_view TypeName(uint8_t type) {
  switch (type) {
    case store::format::kTypeString: return "string";
    case store::format::kTypeList: return "list";
    case store::format::kTypeSet: return "set";
    case store::format::kTypeZset: return "zset";
    case store::format::kTypeHash: return "hash";
    default: return "unknown";
  }
}

void RegisterDebugCommands(std::vector<Command>* t) {
  t->push_back({"debug", -2, kAdmin | kNoScript, 0, 0, 0, Debug, "@admin @slow @dangerous"});
}

}  // namespace keg::server
