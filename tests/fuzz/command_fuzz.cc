// libFuzzer target for the command layer: random command sequences through ClientSession and the
// real store, in process (tests/support/in_process.h), under ASan/UBSan.
//
// The input is decoded with FuzzedDataProvider into up to 48 commands on three connections. A
// command's name (and subcommand) comes from the live command table, so every command added later
// is fuzzed without touching this file; its arguments come from a pool of a few keys, hostile
// numbers (INT64 limits, 2^32, offsets near proto-max-bulk-len, NaN, inf), the option words the
// commands take, DUMP payloads with valid checksums (strings, and each type and encoding as
// redis-server writes it; some with a damaged body), HyperLogLog headers
// with damaged runs, and raw bytes. Commands are grouped into reads (pipelines) of random length.
// A read is either run to its last reply before the next one, or only sent: its connection stays
// in flight — a blocking pop waiting, for ever or briefly, a write group under way — while the
// other connections' reads run (and may serve it, rename or delete its key, or CLIENT UNBLOCK it by
// the ids the fuzzer is told), until its next read or the end of the input collects it, or the end
// of the input closes it with its reply outstanding.
//
// Oracles, beyond "no crash, no hang, no leak, no sanitizer report, the server never asked to
// stop except by SHUTDOWN":
//  1. Every reply is well-formed RESP2/RESP3, and a read of N commands gets exactly N replies,
//     unless the connection closed (QUIT, CLIENT KILL) or its client used CLIENT REPLY, MONITOR or
//     a (un)subscribe command; RESP3 pushes are not counted as replies. A client that sent SYNC or
//     PSYNC is a replica from then on: its output is the replication stream, not checked.
//  2. After each input a fresh connection still gets PONG and a SET/GET round trip.
//  3. A read left in flight gets all its replies once what it waits on ends: a client still
//     blocked on keys when collected is unblocked as CLIENT UNBLOCK does (its pop replies nil),
//     and nothing else it waits on may outlast the usual 10 s.
//  4. Replication: a connection that sent PSYNC before the input's commands receives a well-formed
//     stream (+FULLRESYNC, the snapshot, then commands) that reaches the primary's offset, and
//     those commands replayed on a second server (the mirror) give the primary's DEBUG DIGEST —
//     whatever order the three connections' commands, blocked pops, transactions and scripts ran
//     in. Inputs with commands that change data without propagating by design (DEBUG), change the
//     primary's role (REPLICAOF, FAILOVER), or may cut the feed (SHUTDOWN, CLIENT KILL) skip it.
//  5. Recovery: on some inputs the commands run on a fresh server of their own (1 MiB data
//     files, so values seal files and hint files are written); once its writes are done a copy
//     of its directory — what a SIGKILL would leave — opens to the server's DEBUG DIGEST, and so
//     does the copy closed and opened again (a clean restart). Inputs with commands that make the
//     server a replica (REPLICAOF, SLAVEOF, FAILOVER) skip it.
// State: the server and its store live for the whole run; after each input the keyspace is
// flushed and the configuration restored, so an input replays the same way alone. (Oracle 5's
// fresh servers are discarded after their input.)
#include <fuzzer/FuzzedDataProvider.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "server/command.h"
#include "server/rdb.h"
#include "support/in_process.h"

namespace {

using keg::testing::InProcessClient;
using keg::testing::InProcessServer;

InProcessServer* g_server = nullptr;
// The server this input runs on: g_server, or a fresh one for oracle 5.
InProcessServer* g_current = nullptr;
InProcessServer* g_mirror = nullptr;  // replays the primary's replication stream (oracle 4)
keg::server::Config* g_initial_config = nullptr;
bool g_verbose = false;  // KEG_FUZZ_VERBOSE=1: print each command (to replay a finding)
std::vector<std::string> g_client_ids;  // this input's connections, for CLIENT UNBLOCK / KILL ID

const char* const kKeys[] = {"k", "key", "{t}a", "{t}b", "x"};
const char* const kNumbers[] = {
    "0", "1", "-1", "2", "3", "10", "100", "-100", "1000000",
    "9223372036854775807", "-9223372036854775808", "9223372036854775806", "-9223372036854775807",
    "9223372036854775808", "4294967295", "4294967296", "2147483647", "-2147483648",
    "536870911", "536870912", "33554431", "33554432", "268435455", "268435456", "4294967288", "1.5", "-0.5", "1e308", "-1e308", "inf", "-inf", "nan",
    "+inf", "0x10", " 1", "1 ", "", "00", "-0", "1e", "17179869184", "922337203685477", "253402300800000"};
const char* const kWords[] = {
    "NX", "XX", "GT", "LT", "CH", "EX", "PX", "EXAT", "PXAT", "KEEPTTL", "GET", "PERSIST",
    "COUNT", "MATCH", "TYPE", "string", "hash", "set", "list", "LEFT", "RIGHT", "BEFORE", "AFTER", "RANK", "MAXLEN",
    "list-max-listpack-size", "WITHVALUES", "*", "k*", "[a-", "\\", "LIMIT", "WITHSCORES", "BYTE",
    "BIT", "AND", "OR", "XOR", "NOT", "INCRBY", "OVERFLOW", "WRAP", "SAT", "FAIL", "u8", "i64",
    "u63", "i5", "#1", "SET", "LEN", "IDX", "MINMATCHLEN", "WITHMATCHLEN", "REPLACE", "DB",
    "ABSTTL", "IDLETIME", "FREQ", "ON", "OFF", "SKIP", "WRITE", "ALL", "ID", "ADDR", "LADDR",
    "USER", "SKIPME", "yes", "no", "MAXAGE", "normal", "master", "replica", "pubsub", "default",
    "BCAST", "PREFIX", "OPTIN", "OPTOUT", "NOLOOP", "REDIRECT", "KEA", "AKEnm", "Ex", "g$",
    "__keyspace@0__:k", "__keyevent@0__:set", "__redis__:invalidate", "notify-keyspace-events",
    "tracking-table-max-keys", "client-output-buffer-limit", "hash-max-listpack-entries",
    "set-max-listpack-entries", "set-max-intset-entries", "zset-max-listpack-entries", "zset-max-listpack-value",
    "BYSCORE", "BYLEX", "REV", "LIMIT", "WITHSCORES", "WEIGHTS", "AGGREGATE", "MIN", "MAX", "SUM", "GT", "LT", "NX",
    "XX", "CH", "INCR", "(1", "[a", "(a", "-", "+", "-inf", "+inf", "inf", "nan",
    "WITHDIST", "WITHCOORD", "WITHHASH", "ANY", "ASC", "DESC", "STORE", "STOREDIST", "FROMMEMBER", "FROMLONLAT",
    "BYRADIUS", "BYBOX", "m", "km", "mi", "ft", "13.361389", "38.115556", "180", "-85.05112878", "85.05112878",
    "everything", "commandstats", "errorstats", "latencystats", "keyspace", "server",
    "slowlog-log-slower-than", "maxmemory", "timeout", "appendfsync", "save", "dbfilename",
    "proto-max-bulk-len", "latency-monitor-threshold", "hz", "loglevel", "notice", "ASYNC",
    "SYNC", "RESET", "LEN", "DROP-PAGE-CACHE", "HELP", "HISTORY", "LATEST", "DOCTOR", "GRAPH", "command", "NOSAVE",
    "ABORT", "FORCE", "NOW", "SAMPLES", "USAGE", "STATS", "ENCODING", "REFCOUNT", "TIMEOUT",
    "ERROR", "protover", "3", "2", "AUTH", "SETNAME", "127.0.0.1:1", "LIBRARYNAME", "WITHCODE",
    "GETREG", "DECODE", "TODENSE", "hll-sparse-max-bytes",
    // ACL rules and users.
    "u1", ">pw", "<pw", "pw", "nopass", "resetpass", "~*", "~k*", "%R~k*", "%W~x", "allkeys", "resetkeys",
    "&*", "+@all", "-@all", "+get", "-set", "+@read", "-@dangerous", "+select|0", "+client|id", "(~x)",
    "#0000000000000000000000000000000000000000000000000000000000000000"};

// DUMP payloads redis-server 7.0.15 wrote, one per type and encoding it writes (RDB 10), so the
// fuzzer's RESTOREs reach each decoder of keg's, whole or damaged.
const std::string_view kRedisPayloads[] = {
    // a listpack hash
    std::string_view("\x10\xc3\x21\x39\x0b\x39\x00\x00\x00\x06\x00\x82\x66\x31\x03\x82\x76\x20\x03"
                     "\x0a\x66\x32\x03\x02\x01\x82\x66\x33\x03\x9e\x78\xe0\x14\x00\x01\x1f\xff\x0a"
                     "\x00\xaf\x82\x9e\xbd\x1a\xd9\x5b\xc2",
                     47),
    // a listpack sorted set (with inf)
    std::string_view("\x11\x24\x24\x00\x00\x00\x08\x00\x81\x63\x02\xdf\xfd\x02\x81\x61\x02\x01\x01"
                     "\x81\x62\x02\x83\x32\x2e\x35\x04\x83\x69\x6e\x66\x04\x83\x69\x6e\x66\x04\xff"
                     "\x0a\x00\x54\x4d\x45\xc7\x9a\x1a\x41\xa8",
                     48),
    // an intset
    std::string_view(
        "\x0b\x1c\x04\x00\x00\x00\x05\x00\x00\x00\xf9\xff\xff\xff\x01\x00\x00\x00\x02\x00\x00\x00"
        "\x03\x00\x00\x00\xa0\x86\x01\x00\x0a\x00\x29\xb9\x7d\xfc\x05\x98\xe5\x06",
        40),
    // a set
    std::string_view("\x02\x03\x01\x63\x01\x61\x01\x62\x0a\x00\xd5\x1b\xc2\xf0\x96\x8e\x69\xc3",
                     18),
    // a quicklist of three listpack nodes
    std::string_view("\x12\x03\x02\x0d\x0d\x00\x00\x00\x02\x00\x81\x61\x02\x81\x62\x02\xff\x02\x0c"
                     "\x0c\x00\x00\x00\x02\x00\x81\x63\x02\x01\x01\xff\x02\x09\x09\x00\x00\x00\x01"
                     "\x00\x02\x01\xff\x0a\x00\xde\x90\x00\xa3\x75\xbd\xb3\x48",
                     52),
    // an LZF string
    std::string_view("\x00\xc3\x09\x40\x64\x01\x61\x61\xe0\x57\x00\x01\x61\x61\x0a\x00\xe8\xa3\xb5"
                     "\x07\xb0\x6d\xf2\x71",
                     24),
    // an integer string
    std::string_view("\x00\xc1\x39\x30\x0a\x00\x9d\x94\xea\x27\x93\xfc\x08\xb9", 14),
    // a hash of integer values
    std::string_view(
        "\x04\x02\x01\x61\xc0\x01\x01\x62\xc0\x02\x0a\x00\x17\x14\x3a\x96\xeb\xa7\x5d\x5c", 20),
    // a set of integers
    std::string_view("\x02\x02\xc0\x02\xc0\x01\x0a\x00\x0b\x85\x00\x52\xae\xa9\x1f\xa1", 16),
    // a sorted set with binary scores
    std::string_view("\x05\x02\x01\x62\x00\x00\x00\x00\x00\x00\x00\x40\x01\x61\x00\x00\x00\x00\x00"
                     "\x00\xf0\x3f\x0a\x00\x7b\x29\x9e\x12\xce\x94\x08\xd4",
                     32),
};

std::string PickArg(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 7)) {
    case 0:
    case 1:
      return kKeys[in.ConsumeIntegralInRange<size_t>(0, std::size(kKeys) - 1)];
    case 2:
      if (!g_client_ids.empty() && in.ConsumeIntegralInRange<int>(0, 7) == 0) {
        return g_client_ids[in.ConsumeIntegralInRange<size_t>(0, g_client_ids.size() - 1)];
      }
      return kNumbers[in.ConsumeIntegralInRange<size_t>(0, std::size(kNumbers) - 1)];
    case 3:
      return kWords[in.ConsumeIntegralInRange<size_t>(0, std::size(kWords) - 1)];
    case 4:
      return std::to_string(in.ConsumeIntegral<int64_t>());
    case 5: {
      // A DUMP payload with a valid checksum (the decoder is reached): a string keg wrote or one of
      // Redis's payloads, its body perhaps damaged in up to three bytes.
      std::string p = in.ConsumeBool()
                          ? keg::server::rdb::DumpString(in.ConsumeRandomLengthString(64))
                          : std::string(kRedisPayloads[in.ConsumeIntegralInRange<size_t>(
                                0, std::size(kRedisPayloads) - 1)]);
      if (in.ConsumeBool() && p.size() > 10) {
        for (int damaged = in.ConsumeIntegralInRange<int>(1, 3); damaged > 0; --damaged) {
          p[in.ConsumeIntegralInRange<size_t>(0, p.size() - 11)] =
              static_cast<char>(in.ConsumeIntegral<uint8_t>());
        }
        p.resize(p.size() - 8);
        const uint64_t crc = keg::server::rdb::Crc64(0, p);
        for (int i = 0; i < 8; ++i) p.push_back(static_cast<char>((crc >> (8 * i)) & 0xFF));
      }
      return p;
    }
    case 6: {
      // A HyperLogLog header (SET as a value, then PFADD / PFCOUNT / PFMERGE / PFDEBUG read it):
      // sparse, dense or an unknown encoding, its cache valid or not, then runs of any bytes
      // (runs past the last register, XZERO cut short), or a sparse sketch's one XZERO run
      // before them.
      std::string s = "HYLL";
      s.push_back(static_cast<char>(in.ConsumeIntegralInRange<uint8_t>(0, 2)));
      s.append(3, '\0');
      for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>(in.ConsumeIntegral<uint8_t>()));
      if (in.ConsumeBool()) s += std::string("\x7f\xff", 2);
      s += in.ConsumeRandomLengthString(64);
      return s;
    }
    default:
      return in.ConsumeRandomLengthString(64);
  }
}

// Pieces of Lua a script is made of: calls into the server (any command, hostile arguments),
// conversions both ways, the libraries with hostile numbers, and fragments that break the syntax.
// Nothing loops or allocates without bound (Redis has no Lua memory limit either).
const char* const kLuaParts[] = {
    "return redis.call(", "return redis.pcall(", "redis.call(", "local r = redis.pcall(", "'set'", "'get'",
    "'incr'", "'del'", "'mget'", "'expire'", "'keys'", "'dbsize'", "'eval'", "'multi'", "'info'", "'flushall'",
    "'client'", "'debug'", "'setrange'", "'getrange'", "'select'", "'swapdb'", "'move'", "'flushdb'", "'hset'", "'hgetall'", "'sadd'", "'smembers'", "'lpush'", "'rpop'", "'lrange'", "'linsert'", "'sinterstore'", "'zadd'", "'zrange'", "'zpopmin'", "'zrangebyscore'", "'zunionstore'", "KEYS[1]", "ARGV[1]", "'k'", "'x'", ",", ")", ")\n",
    "return {", "}", "return ", "cmsgpack.unpack(", "cmsgpack.pack(", "cmsgpack.unpack_one(", "cmsgpack.unpack_limit(",
    "cjson.decode(", "cjson.encode(", "bit.tohex(", "bit.band(", "unpack({1,2,3}, ", "tostring(", "tonumber(",
    "math.random(", "math.randomseed(", "redis.setresp(3)\n", "redis.setresp(2)\n", "redis.sha1hex(",
    "redis.error_reply(", "redis.status_reply(", "redis.log(redis.LOG_DEBUG, ", "redis.set_repl(",
    "{err='x'}", "{ok='y'}", "{double=1.5}", "{big_number='12'}", "{map={a=1, b={1,2}}}", "{set={a=true}}",
    "{verbatim_string={format='txt', string='v'}}", "local t = {} t[1] = t return t\n", "nil", "true", "false",
    "0/0", "1e308", "-1e308", "2^63", "-2147483648", "2147483647", "4294967296", "-1", "0", "1", "'\\0'",
    "string.char(0xdd, 0xff, 0xff, 0xff, 0xff)", "string.char(0xc1)", "string.char(0x91, 0x91, 0x91)",
    "'[1,[2,[3]]]'", "'{\"a\":'", "pcall(", "error(", "function() ", " end", "if true then ", " end\n",
    "for i = 1, 3 do ", "local ", "x = 1\n", "setmetatable(_G, {})", "rawset(_G, 'y', 1)",
    "getmetatable('').__index = nil", "loadstring('return 1')()", "loadstring(string.dump(function() end))",
    "#!lua flags=no-writes\n", "#!lua name=lib\n", "redis.register_function('f', function(k, a) ", ")\n"};

std::string PickScript(FuzzedDataProvider& in) {
  std::string s;
  const size_t n = in.ConsumeIntegralInRange<size_t>(1, 12);
  for (size_t i = 0; i < n && in.remaining_bytes() > 0; ++i) {
    s += kLuaParts[in.ConsumeIntegralInRange<size_t>(0, std::size(kLuaParts) - 1)];
    if (in.ConsumeIntegralInRange<int>(0, 3) == 0) s += " ";
  }
  return s;
}

// A command from the table (a subcommand for container commands), or now and then a made-up name.
// `in_flight`: the read is only sent (its replies collected later), so a blocking pop may wait for
// ever or long enough for another connection to serve it.
// *timeout_at: the index of a blocking pop's timeout argument, 0 if none.
std::vector<std::string> PickCommand(FuzzedDataProvider& in, bool in_flight, size_t* timeout_at_out) {
  const auto& table = keg::server::AllCommands();
  std::vector<std::string> args;
  if (in.ConsumeIntegralInRange<int>(0, 63) == 0) {
    args.push_back(in.ConsumeRandomLengthString(16));
  } else {
    const keg::server::Command& cmd = table[in.ConsumeIntegralInRange<size_t>(0, table.size() - 1)];
    args.emplace_back(cmd.name);
    if (!cmd.subcommands.empty()) {
      const auto& sub = cmd.subcommands[in.ConsumeIntegralInRange<size_t>(0, cmd.subcommands.size() - 1)];
      const std::string_view full = sub.name;  // "parent|sub"
      const size_t bar = full.find('|');
      args.emplace_back(bar == std::string_view::npos ? full : full.substr(bar + 1));
    }
  }
  const size_t extra = in.ConsumeIntegralInRange<size_t>(0, 6);
  for (size_t i = 0; i < extra && in.remaining_bytes() > 0; ++i) args.push_back(PickArg(in));
  // Scripts get Lua made of pieces (random bytes are almost never a script): EVAL body numkeys,
  // SCRIPT LOAD body, FUNCTION LOAD [REPLACE] library.
  const std::string name = args[0];  // a copy: args is resized below
  // A blocking pop waits for its timeout: a short one (or a bad one), never 0 (for ever) in a
  // read that is waited for, so it still gets all its replies.
  const size_t timeout_at = name == "blmpop" || name == "bzmpop" ? 1 : name == "brpoplpush" ? 3 : name == "blmove" ? 5
                          : (name == "blpop" || name == "brpop" || name == "bzpopmin" || name == "bzpopmax") ? args.size() - 1
                                                                                                           : 0;
  *timeout_at_out = timeout_at < args.size() ? timeout_at : 0;
  if (timeout_at > 0 && timeout_at < args.size()) {
    static const char* const kTimeouts[] = {"0.01", "0.001", "0.02", "-1", "x", "1e400", "nan", "0", "0.5", "0"};
    args[timeout_at] = kTimeouts[in.ConsumeIntegralInRange<size_t>(0, std::size(kTimeouts) - (in_flight ? 1 : 4))];
  }
  // WAIT (no replica acks here) waits out its timeout in milliseconds, as Redis's: a short one or a
  // bad one, never 0 (for ever).
  if (name == "wait" && args.size() >= 3) {
    static const char* const kWaitTimeouts[] = {"1", "5", "20", "-1", "x", "99999999999999999999"};
    args[2] = kWaitTimeouts[in.ConsumeIntegralInRange<size_t>(0, std::size(kWaitTimeouts) - 1)];
  }
  if (name == "eval" || name == "eval_ro") {
    args.resize(std::max<size_t>(args.size(), 3));
    args[1] = PickScript(in);
    args[2] = std::to_string(in.ConsumeIntegralInRange<int>(0, 2));
    if (args.size() < 3 + static_cast<size_t>(args[2][0] - '0')) args.resize(3 + static_cast<size_t>(args[2][0] - '0'), "k");
  } else if ((name == "script" || name == "function") && args.size() >= 2 && args[1] == "load") {
    args.resize(3);
    args[2] = name == "function" ? "#!lua name=lib" + std::to_string(in.ConsumeIntegralInRange<int>(0, 2)) + "\n" +
                                       PickScript(in)
                                 : PickScript(in);
  }
  return args;
}

// `bytes` for KEG_FUZZ_VERBOSE's lines: other than printable ASCII as \xNN, CR LF as \r\n.
std::string Printable(std::string_view bytes) {
  std::string out;
  for (const char ch : bytes) {
    const auto u = static_cast<unsigned char>(ch);
    if (ch == '\r') {
      out += "\\r";
    } else if (ch == '\n') {
      out += "\\n";
    } else if (u < 0x20 || u >= 0x7f || ch == '\\') {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\x%02x", u);
      out += hex;
    } else {
      out += ch;
    }
  }
  return out;
}

// One command on a line of stderr, after `prefix`, its arguments quoted and Printable.
void PrintCommand(const std::string& prefix, const std::vector<std::string>& cmd) {
  std::fprintf(stderr, "%s", prefix.c_str());
  for (const auto& a : cmd) std::fprintf(stderr, " '%s'", Printable(a).c_str());
  std::fprintf(stderr, "\n");
}

// Skips one RESP2/RESP3 value at `pos`; false if `bytes` does not hold a well-formed one there.
bool SkipValue(std::string_view bytes, size_t* pos, int depth = 0) {
  if (depth > 2048 || *pos >= bytes.size()) return false;  // scripts nest replies up to 1,000 deep
  const char type = bytes[*pos];
  const size_t eol = bytes.find("\r\n", *pos);
  if (eol == std::string_view::npos) return false;
  const std::string_view line = bytes.substr(*pos + 1, eol - *pos - 1);
  *pos = eol + 2;
  auto number = [&](int64_t* n) {
    if (line.empty()) return false;
    char* end = nullptr;
    const std::string s(line);
    *n = std::strtoll(s.c_str(), &end, 10);
    return end == s.c_str() + s.size();
  };
  int64_t n = 0;
  switch (type) {
    case '+': case '-': case ':': case ',': case '#': case '(': case '_':
      return line.find('\r') == std::string_view::npos && line.find('\n') == std::string_view::npos;
    case '$': case '=': case '!':
      if (!number(&n)) return false;
      if (n == -1 && type == '$') return true;
      if (n < 0 || bytes.size() - *pos < static_cast<size_t>(n) + 2) return false;
      if (bytes.substr(*pos + static_cast<size_t>(n), 2) != "\r\n") return false;
      *pos += static_cast<size_t>(n) + 2;
      return true;
    case '*': case '~': case '>': case '%': case '|':
      if (!number(&n)) return false;
      if (n == -1 && type == '*') return true;
      if (n < 0) return false;
      if (type == '%' || type == '|') n *= 2;
      for (int64_t i = 0; i < n; ++i) {
        if (!SkipValue(bytes, pos, depth + 1)) return false;
      }
      if (type == '|') return SkipValue(bytes, pos, depth + 1);  // the attribute precedes a value
      return true;
    default:
      return false;
  }
}

size_t CountReplies(std::string_view bytes) {
  size_t pos = 0;
  size_t count = 0;
  while (pos < bytes.size()) {
    // Attributes and pushes (pub/sub messages, invalidations in RESP3) are not replies.
    const bool attribute = bytes[pos] == '|' || bytes[pos] == '>';
    if (!SkipValue(bytes, &pos)) {
      std::fprintf(stderr, "malformed reply at byte %zu of:\n%.*s\n", pos,
                   static_cast<int>(std::min<size_t>(bytes.size(), 4000)), bytes.data());
      std::abort();
    }
    if (!attribute) ++count;
  }
  return count;
}

// The servers' configuration. proto-max-bulk-len 32mb (Redis's default is 512mb): every limit
// check is still reached by the hostile numbers around it, and a long run's memory stays bounded
// (BITOP of three 512 MB values under ASan would exceed -rss_limit_mb). Collection thresholds of
// 2: a hash or set of three elements is stored per element (a head and a record per element,
// docs/types.md), so both storage paths are fuzzed (CONFIG SET may raise them again within an
// input). Oracle 5's fresh servers (`fresh`) also seal their data files at 1 MiB, so a large value
// starts a new file and the background thread writes hint files, and compact only when told:
// the copy of a directory is taken while no compaction runs.
std::vector<std::pair<std::string, std::string>> Directives(bool fresh) {
  std::vector<std::pair<std::string, std::string>> d = {{"proto-max-bulk-len", "32mb"},
                                                        {"hash-max-listpack-entries", "2"},
                                                        {"set-max-listpack-entries", "2"},
                                                        {"set-max-intset-entries", "2"},
                                                        {"loglevel", "warning"}};  // (then off)
  if (fresh) {
    d.emplace_back("data-file-size", "1mb");
    d.emplace_back("auto-compaction", "no");
  }
  return d;
}

void Reset() {
  keg::server::ServerState& state = g_server->state();
  (void)state.failover.Abort();  // a FAILOVER waiting for a replica (none answers here)
  state.pause.Unpause();
  state.replica_of.Unfollow();  // REPLICAOF host port: a primary again, read-write
  g_server->clear_shutdown();
  {
    std::lock_guard lock(state.config_mu);
    state.config = *g_initial_config;
    state.ApplyConfigLocked();
  }
  spdlog::set_level(spdlog::level::off);  // SHUTDOWN and CONFIG SET loglevel are noise here
  state.config_epoch.fetch_add(1);
  // Users as at start: the default user open to everything, no other user.
  std::vector<std::string> names;
  for (const auto& u : state.acl.Users()) names.push_back(u->name);
  const std::vector<std::string_view> others(names.begin(), names.end());
  state.acl.DeleteUsers(others);
  const std::string_view open[] = {"reset", "on", "nopass", "~*", "&*", "+@all"};
  state.acl.SetUser("default", open);
  auto admin = InProcessClient::Connect(*g_server);
  const std::string r = admin->Run({{"FLUSHALL"}, {"PING"}, {"SET", "probe", "v"}, {"GET", "probe"},
                                    {"DEL", "probe"}});
  if (r != "+OK\r\n+PONG\r\n+OK\r\n$1\r\nv\r\n:1\r\n") {
    std::fprintf(stderr, "the server no longer answers (hung %d, closed %d, busy %d, pending ops %zu): %s\n",
                 admin->hung(), admin->closed(), admin->session().busy(), admin->session().pending_ops(),
                 r.c_str());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Quiet: the server logs warnings for some of what the fuzzer sends.
  g_server = new InProcessServer(Directives(false));
  if (!g_server->ok()) {
    std::fprintf(stderr, "cannot start the in-process server: %s\n", g_server->error().c_str());
    std::abort();
  }
  g_initial_config = new keg::server::Config(g_server->state().config);
  g_mirror = new InProcessServer();
  if (!g_mirror->ok()) {
    std::fprintf(stderr, "cannot start the mirror server: %s\n", g_mirror->error().c_str());
    std::abort();
  }
  g_verbose = std::getenv("KEG_FUZZ_VERBOSE") != nullptr;
  spdlog::set_level(spdlog::level::off);
  // libFuzzer ends a timed run with exit(): stop the store's threads first, before static
  // destructors free spdlog's registry under a compaction that is still logging (registered after
  // the registry exists, so this runs before its destructor).
  std::atexit([] {
    for (InProcessServer* s : {g_server, g_mirror}) {
      s->state().failover.Stop();    // (FAILOVER's and REPLICAOF's threads: TSan counts one
      s->state().replica_of.Stop();  // left unjoined at exit a leak)
      if (s->state().cold_reads) s->state().cold_reads->Stop();
      (void)s->state().store->Close();
    }
  });
  return 0;
}

// Reads what a replica receives (oracle 4): "+FULLRESYNC <id> <offset>", the snapshot ($<len> or
// $EOF:<mark> framing), then commands as RESP arrays of bulk strings. Newlines alone (keep-alives
// before the snapshot) are skipped. Aborts on anything else.
class StreamReader {
 public:
  void Add(std::string_view bytes) { buf_.append(bytes); }
  bool snapshot_done() const { return snapshot_done_; }
  uint64_t start_offset() const { return start_offset_; }
  uint64_t command_bytes() const { return command_bytes_; }
  // Parses what is complete; returns the commands found after the snapshot.
  std::vector<std::vector<std::string>> Take() {
    std::vector<std::vector<std::string>> out;
    for (;;) {
      if (!snapshot_done_) {
        while (pos_ < buf_.size() && buf_[pos_] == '\n') ++pos_;
        const size_t eol = buf_.find("\r\n", pos_);
        if (eol == std::string::npos) break;
        const std::string line = buf_.substr(pos_, eol - pos_);
        if (!resync_seen_) {
          unsigned long long offset = 0;
          char id[41] = {};
          if (std::sscanf(line.c_str(), "+FULLRESYNC %40s %llu", id, &offset) != 2) Fail("not +FULLRESYNC");
          start_offset_ = offset;
          resync_seen_ = true;
          pos_ = eol + 2;
          continue;
        }
        if (line.rfind("$EOF:", 0) == 0) {
          const std::string mark = line.substr(5);
          const size_t end = buf_.find(mark, eol + 2);
          if (end == std::string::npos) break;
          pos_ = end + mark.size();
        } else if (line.rfind("$", 0) == 0) {
          const size_t len = std::strtoull(line.c_str() + 1, nullptr, 10);
          if (buf_.size() - (eol + 2) < len) break;
          pos_ = eol + 2 + len;
        } else {
          Fail("no snapshot after +FULLRESYNC");
        }
        snapshot_done_ = true;
        continue;
      }
      std::vector<std::string> cmd;
      const size_t used = ParseCommand(&cmd);
      if (used == 0) break;
      command_bytes_ += used;
      pos_ += used;
      out.push_back(std::move(cmd));
    }
    return out;
  }

 private:
  // One "*n\r\n($len\r\nbytes\r\n)*n" at pos_: its size, 0 if incomplete.
  size_t ParseCommand(std::vector<std::string>* cmd) {
    size_t p = pos_;
    auto line = [&](char type, int64_t* n) {
      if (p >= buf_.size()) return false;
      if (buf_[p] != type) Fail("a command that is not an array of bulk strings");
      const size_t eol = buf_.find("\r\n", p);
      if (eol == std::string::npos) return false;
      *n = std::strtoll(buf_.c_str() + p + 1, nullptr, 10);
      p = eol + 2;
      return true;
    };
    int64_t n = 0;
    if (!line('*', &n)) return 0;
    if (n <= 0) Fail("an empty command");
    for (int64_t i = 0; i < n; ++i) {
      int64_t len = 0;
      if (!line('$', &len)) return 0;
      if (len < 0) Fail("a null argument");
      if (buf_.size() - p < static_cast<size_t>(len) + 2) return 0;
      cmd->push_back(buf_.substr(p, static_cast<size_t>(len)));
      p += static_cast<size_t>(len) + 2;
    }
    return p - pos_;
  }
  [[noreturn]] void Fail(const char* what) {
    std::fprintf(stderr, "malformed replication stream (%s) at byte %zu of:\n%.*s\n", what, pos_,
                 static_cast<int>(std::min<size_t>(buf_.size(), 4000)), buf_.c_str());
    std::abort();
  }

  std::string buf_;
  size_t pos_ = 0;
  bool resync_seen_ = false;
  bool snapshot_done_ = false;
  uint64_t start_offset_ = 0;
  uint64_t command_bytes_ = 0;
};

// The mirror's connection lives on threads of its own: an I/O thread serves one server (a loop
// turn's write batches are gathered per thread, and a session's completions go through the inbox
// of the thread that made it), and the calling thread plays the primary's.
std::shared_ptr<InProcessClient> ConnectToMirror() {
  std::shared_ptr<InProcessClient> mirror;
  std::thread([&] { mirror = InProcessClient::Connect(*g_mirror); }).join();
  return mirror;
}
std::string RunOnMirror(InProcessClient& mirror, const std::vector<std::vector<std::string>>& cmds) {
  std::string replies;
  std::thread([&] { replies = mirror.Run(cmds); }).join();
  return replies;
}

// Oracle 4: reads the feed until it reached the primary's offset, replays its commands on the
// mirror, and compares the digests. A key whose expiry falls between the two digests differs
// once: the check is repeated (the primary's expiry DEL comes through the feed meanwhile).
void CheckReplicaDigest(InProcessClient& feed, StreamReader& stream, InProcessClient& mirror) {
  using namespace std::chrono_literals;
  auto admin = InProcessClient::Connect(*g_current);
  std::string primary;
  std::string replayed;
  for (int attempt = 0; attempt < 4; ++attempt) {
    const auto until = std::chrono::steady_clock::now() + 10s;
    for (;;) {
      stream.Add(feed.Run({}));
      const std::vector<std::vector<std::string>> cmds = stream.Take();
      if (g_verbose) {
        for (const auto& cmd : cmds) PrintCommand("stream:", cmd);
      }
      if (!cmds.empty()) (void)RunOnMirror(mirror, cmds);
      const uint64_t end = g_current->state().repl.offset();
      if (stream.snapshot_done() && stream.start_offset() + stream.command_bytes() == end) break;
      if (feed.closed() || std::chrono::steady_clock::now() > until) {
        std::fprintf(stderr, "the replication feed %s at offset %llu + %llu of %llu\n",
                     feed.closed() ? "closed" : "stopped", static_cast<unsigned long long>(stream.start_offset()),
                     static_cast<unsigned long long>(stream.command_bytes()), static_cast<unsigned long long>(end));
        std::abort();
      }
      (void)admin->Run({});  // pumps the queue: the stream's sends run
      std::this_thread::sleep_for(1ms);
    }
    // (Not DEBUG DIGEST: DEBUG is disabled here, enable-debug-command no, as it is for the fuzzed
    // commands.)
    primary = keg::server::DatasetDigest(*g_current->state().store);
    replayed = keg::server::DatasetDigest(*g_mirror->state().store);
    if (primary == replayed) return;
    std::this_thread::sleep_for(2ms);
  }
  std::fprintf(stderr, "the primary's digest %s differs from its replayed stream's %s\n", primary.c_str(),
               replayed.c_str());
  std::abort();
}

// Commands after which oracle 4 does not hold by design, or whose effect on the feed is not
// modelled: DEBUG changes data without propagating; REPLICAOF, FAILOVER and SHUTDOWN end the
// primary's role or the feed; CLIENT KILL may cut the feed; SYNC / PSYNC start other feeds.
bool EndsReplicaCheck(const std::vector<std::string>& cmd) {
  static const char* const kNames[] = {"debug", "replicaof", "slaveof", "failover", "shutdown", "sync", "psync"};
  for (const char* n : kNames) {
    if (keg::server::EqualsIgnoreCase(cmd[0], n)) return true;
  }
  return cmd.size() >= 2 && keg::server::EqualsIgnoreCase(cmd[0], "client") &&
         keg::server::EqualsIgnoreCase(cmd[1], "kill");
}

// Commands after which oracle 5 does not hold by design: REPLICAOF, SLAVEOF and FAILOVER make
// the server a replica (which may load a sync into staging databases, and keeps expired keys).
bool EndsRecoveryCheck(const std::vector<std::string>& cmd) {
  static const char* const kNames[] = {"replicaof", "slaveof", "failover"};
  for (const char* n : kNames) {
    if (keg::server::EqualsIgnoreCase(cmd[0], n)) return true;
  }
  return false;
}

// Copies the files of directory `from` into a new directory `to`, file by file. A file gone by
// the time it is copied (the background thread renames a hint file into place) is left out, as a
// crash then would find it gone; a copy a signal interrupted is done again (an ASan run aborted
// on "Interrupted system call" after 24,462 inputs, 2026-12-07).
void CopyDirectory(const std::filesystem::path& from, const std::filesystem::path& to) {
  std::error_code ec;
  std::filesystem::create_directories(to, ec);
  for (const auto& entry : std::filesystem::directory_iterator(from, ec)) {
    if (entry.is_directory(ec)) {
      CopyDirectory(entry.path(), to / entry.path().filename());
      continue;
    }
    // A signal (libFuzzer's timer) can interrupt the copy's system calls: copied again then.
    for (int attempt = 0; attempt < 8; ++attempt) {
      ec.clear();
      std::filesystem::copy_file(entry.path(), to / entry.path().filename(),
                                 std::filesystem::copy_options::overwrite_existing, ec);
      if (ec != std::errc::interrupted) break;
    }
    if (ec && ec != std::errc::no_such_file_or_directory) break;
    ec.clear();
  }
  if (ec) {
    std::fprintf(stderr, "cannot copy %s: %s\n", from.string().c_str(), ec.message().c_str());
    std::abort();
  }
}

// Oracle 5: once the server's writes are done, a copy of its directory (what a SIGKILL leaves:
// every write the OS took) opens to the digest the server serves, and so does the copy closed and
// opened again. A key whose expiry falls between the digests differs once: the check is repeated
// while the server's own digest changed meanwhile.
void CheckRecoveredDigest(InProcessServer& server) {
  using namespace std::chrono_literals;
  keg::server::ServerState& st = server.state();
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (st.compaction_running.load()) {  // COMPACT ASYNC, BGREWRITEAOF: a copy is taken between
    if (std::chrono::steady_clock::now() > until) {
      std::fprintf(stderr, "a compaction ran for 10 s\n");
      std::abort();
    }
    std::this_thread::sleep_for(1ms);
  }
  st.jobs.Wait();  // a SYNC's snapshot: its file in the directory comes and goes
  std::atomic<bool> applied{false};
  st.store->Barrier([&applied] { applied = true; });
  while (!applied) std::this_thread::sleep_for(100us);
  keg::store::Options options;
  {
    std::lock_guard lock(st.config_mu);
    options = st.config.StoreOptions();
  }
  options.dir = server.dir() + ".copy";
  std::error_code ec;
  for (int attempt = 0; attempt < 8; ++attempt) {
    const std::string served = keg::server::DatasetDigest(*st.store);
    std::filesystem::remove_all(options.dir, ec);
    CopyDirectory(server.dir(), options.dir);
    std::string recovered[2];  // after the crash, after a clean restart
    for (std::string& digest : recovered) {
      std::unique_ptr<keg::store::Store> copy;
      const keg::store::Status s = keg::store::Store::Open(options, &copy);
      if (!s.ok()) {
        std::fprintf(stderr, "the copy of the server's directory does not open: %s\n", s.ToString().c_str());
        std::abort();
      }
      digest = keg::server::DatasetDigest(*copy);
      (void)copy->Close();
    }
    std::filesystem::remove_all(options.dir, ec);
    if (g_verbose) {
      std::fprintf(stderr, "recovery: served %s, recovered %s, after a clean restart %s\n", served.c_str(),
                   recovered[0].c_str(), recovered[1].c_str());
    }
    if (recovered[0] == served && recovered[1] == served) return;
    if (keg::server::DatasetDigest(*st.store) == served) {
      std::fprintf(stderr, "the server serves digest %s; its directory recovers %s, and %s after a clean restart\n",
                   served.c_str(), recovered[0].c_str(), recovered[1].c_str());
      std::abort();
    }
  }
}

// One connection of an input, and what the oracle knows of it.
struct FuzzClient {
  std::shared_ptr<InProcessClient> conn;
  bool muted = false;    // its reply count is not checked (CLIENT REPLY, MONITOR, (un)subscribe)
  bool replica = false;  // SYNC / PSYNC made it a replica: its output is the replication stream
  std::vector<std::vector<std::string>> in_flight;  // the read sent and not yet collected
};

// Fails the run: `read` got `got` replies (`replies`) where each command owes one.
[[noreturn]] void FailReplies(const std::vector<std::vector<std::string>>& read, size_t got, bool hung,
                              const std::string& replies) {
  std::fprintf(stderr, "%zu commands got %zu replies%s:\n", read.size(), got, hung ? " (hung)" : "");
  for (const auto& cmd : read) PrintCommand("", cmd);
  std::fprintf(stderr, "%s\n", Printable(replies).c_str());
  std::abort();
}

// Checks the replies of `read` on `c` (oracle 1), closing a connection that became a replica.
void CheckReplies(FuzzClient& c, const std::vector<std::vector<std::string>>& read, const std::string& replies) {
  if (g_verbose) std::fprintf(stderr, "replies: %s\n", Printable(replies).c_str());
  const size_t got = c.replica ? 0 : CountReplies(replies);
  // A replica that never acks would hold the other clients' WAIT: it leaves once it got its sync.
  if (c.replica) c.conn->Close();
  if (c.conn->hung() || (!c.conn->closed() && !c.muted && got != read.size())) {
    FailReplies(read, got, c.conn->hung(), replies);
  }
}

// Collects the read `c` left in flight (oracle 3). While the client is still blocked on keys it is
// unblocked as CLIENT UNBLOCK <id> does; what else it waits for (a write group, WAIT's few
// milliseconds) is waited for.
void Collect(FuzzClient& c) {
  if (c.in_flight.empty()) return;
  InProcessClient& conn = *c.conn;
  // Each blocking command of the read may block in turn; the rest is bounded by Finish's 10 s
  // (which also closes the connection after a SHUTDOWN, as the server's exit would).
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!g_current->shutdown_requested() && conn.Pump() && std::chrono::steady_clock::now() < until) {
    if (conn.session().blocked()) (void)g_current->state().blocking.Unblock(conn.session().id(), false);
    (void)conn.Pump(std::chrono::milliseconds(5));
  }
  const std::string replies = conn.Finish();
  const std::vector<std::vector<std::string>> read = std::move(c.in_flight);
  c.in_flight.clear();
  CheckReplies(c, read, replies);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  // Oracle 4 on one input in four (a full sync per input costs): the feed subscribes first.
  // Oracle 5 on one in four (a server per input costs), one in eight both.
  const int oracles = in.ConsumeIntegralInRange<int>(0, 7);
  bool check_replica = oracles < 2;
  bool check_recovery = oracles == 1 || oracles == 2;
  std::unique_ptr<InProcessServer> fresh;
  g_current = g_server;
  if (check_recovery) {
    fresh = std::make_unique<InProcessServer>(Directives(true));
    if (!fresh->ok()) {
      std::fprintf(stderr, "cannot start a fresh server: %s\n", fresh->error().c_str());
      std::abort();
    }
    spdlog::set_level(spdlog::level::off);
    g_current = fresh.get();
  }
  FuzzClient clients[3];
  g_client_ids.clear();
  for (FuzzClient& c : clients) {
    c.conn = InProcessClient::Connect(*g_current);
    g_client_ids.push_back(std::to_string(c.conn->session().id()));
  }
  size_t commands = 0;
  using namespace std::chrono_literals;
  std::shared_ptr<InProcessClient> feed;
  std::shared_ptr<InProcessClient> mirror;
  StreamReader stream;
  if (check_replica) {
    mirror = ConnectToMirror();
    (void)RunOnMirror(*mirror, {{"FLUSHALL"}});
    feed = InProcessClient::Connect(*g_current);
    stream.Add(feed->Run({{"PSYNC", "?", "-1"}}));
  }
  while (in.remaining_bytes() > 0 && commands < 48) {
    const size_t which = in.ConsumeIntegralInRange<size_t>(0, 2);
    FuzzClient& fc = clients[which];
    Collect(fc);  // a connection's reads are answered in order: the one in flight first
    bool send_only = in.ConsumeIntegralInRange<int>(0, 3) == 0;
    std::vector<std::vector<std::string>> read;
    bool pauses = false;  // CLIENT PAUSE in this read: its later commands may wait for the pause
    std::vector<std::pair<size_t, size_t>> timeouts;  // (command, argument) of blocking pops' timeouts
    const size_t n = in.ConsumeIntegralInRange<size_t>(1, 6);
    for (size_t i = 0; i < n && in.remaining_bytes() > 0; ++i) {
      size_t timeout_at = 0;
      read.push_back(PickCommand(in, send_only, &timeout_at));
      if (timeout_at > 0) timeouts.emplace_back(read.size() - 1, timeout_at);
      ++commands;
      const auto& cmd = read.back();
      // CLIENT REPLY OFF|SKIP drops replies on purpose, MONITOR adds lines (and a second MONITOR
      // has no reply): that client's count is no longer checked.
      // The (un)subscribe commands answer once per channel, and a RESP2 subscriber gets messages
      // as arrays: that client's count is not checked either.
      const std::string_view name = cmd[0];
      const bool subscribes = name.size() >= 9 && keg::server::EqualsIgnoreCase(name.substr(name.size() - 9), "subscribe");
      if ((cmd.size() >= 2 && keg::server::EqualsIgnoreCase(cmd[0], "client") &&
           keg::server::EqualsIgnoreCase(cmd[1], "reply")) ||
          keg::server::EqualsIgnoreCase(cmd[0], "monitor") || subscribes) {
        fc.muted = true;
      }
      if (keg::server::EqualsIgnoreCase(cmd[0], "sync") || keg::server::EqualsIgnoreCase(cmd[0], "psync")) {
        fc.muted = true;
        fc.replica = true;
      }
      if (EndsReplicaCheck(cmd)) check_replica = false;
      if (EndsRecoveryCheck(cmd)) check_recovery = false;
      pauses |= (cmd.size() >= 2 && keg::server::EqualsIgnoreCase(cmd[0], "client") &&
                 keg::server::EqualsIgnoreCase(cmd[1], "pause")) ||
                keg::server::EqualsIgnoreCase(cmd[0], "failover");  // a started FAILOVER pauses writes
    }
    // A pause or a sync is run to its end (the harness lifts the pause; a replica leaves).
    if (send_only && (pauses || fc.replica)) {
      send_only = false;
      // Waited for after all: no pop may wait for ever (or long).
      for (const auto& [cmd, at] : timeouts) {
        if (read[cmd][at] == "0" || read[cmd][at] == "0.5") read[cmd][at] = "0.01";
      }
    }
    InProcessClient& c = *fc.conn;
    if (c.closed()) continue;
    if (g_verbose) {
      std::fprintf(stderr, "-- a read of %zu\n", read.size());
      const std::string prefix = "client " + std::to_string(which) + (send_only ? " (sent only):" : ":");
      for (const auto& cmd : read) PrintCommand(prefix, cmd);
    }
    if (send_only) {
      c.Send(read);
      fc.in_flight = std::move(read);
      continue;
    }
    std::string replies;
    if (pauses) {
      // Commands after the pause park until it ends: end it after a short wait, and the parked
      // commands must then run and reply.
      replies = c.Run(read, 100ms);
      (void)g_current->state().failover.Abort();
      g_current->state().pause.Unpause();
      c.clear_hung();
      replies += c.Run({});
    } else {
      replies = c.Run(read);
    }
    CheckReplies(fc, read, replies);
  }
  // What is still in flight is collected, or its connection closes with the replies outstanding
  // (a blocked client that hangs up; what it was served, if anything, is lost with it, as in Redis).
  for (FuzzClient& c : clients) {
    if (!c.in_flight.empty() && in.ConsumeBool()) Collect(c);
  }
  for (FuzzClient& c : clients) {
    c.conn->Close();
    c.conn.reset();
  }
  if (feed) {
    // The closed connections' work still completes (their groups, their pops, the registry's);
    // the oracle waits for the feed to reach the primary's offset.
    if (check_replica && !g_current->shutdown_requested()) CheckReplicaDigest(*feed, stream, *mirror);
    feed->Close();
    feed.reset();
    mirror->Close();
    mirror.reset();
  }
  g_client_ids.clear();
  if (!fresh) {
    Reset();
    return 0;
  }
  if (check_recovery && !fresh->shutdown_requested()) CheckRecoveredDigest(*fresh);
  fresh->state().failover.Stop();
  fresh->state().replica_of.Stop();
  fresh.reset();
  g_current = nullptr;
  return 0;
}
