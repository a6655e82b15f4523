// keg-server end to end: a real keg-server process on a free port in a temporary directory, driven
// over TCP with exact bytes (and hiredis), compared with a real redis-server 7.0 where the reply is
// deterministic.
//
// Needs redis-server on PATH (tools/install-deps.sh --test installs it).
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <ifaddrs.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <random>
#include <map>
#include <set>
#include <sstream>
#include <thread>
#include <atomic>

#include "support/keg_process.h"

namespace keg::testing {
namespace {

namespace fs = std::filesystem;
using Cmd = std::vector<std::string>;

// ---- The same commands to keg and to redis-server: identical bytes -----------------------------

// Each case starts from an empty database; every command's reply is compared.
const std::vector<std::vector<Cmd>>& DifferentialCases() {
  static const std::vector<std::vector<Cmd>> cases = {
      // Connection.
      {{"PING"}, {"PING", "hello"}, {"ping", "a", "b"}, {"ECHO", "x y"}, {"echo"}, {"SELECT", "0"},
       {"SELECT", "x"}, {"AUTH", "pw"}, {"AUTH", "a", "b"}, {"AUTH", "a", "b", "c"},
       {"HELLO", "4"}, {"HELLO", "x"}, {"HELLO", "2", "FOO"}},
      // Unknown commands and arity.
      {{"FOO"}, {"FOO", "a", "b"}, {"foo", std::string(200, 'x'), "y"}, {"GET"}, {"SET", "k"},
       {"client", "setname"}, {"CLIENT", "nosuch"}, {"CONFIG", "nosuch"}, {"MGET"}, {"MSET", "a"},
       {"MSET", "a", "1", "b"}, {"get", "a", "b"}},
      // SET and its options.
      {{"SET", "k", "v"}, {"GET", "k"}, {"SET", "k", "v2", "NX"}, {"SET", "k", "v3", "XX"},
       {"GET", "k"}, {"SET", "n", "v", "XX"}, {"SET", "k", "v4", "GET"}, {"SET", "n", "v", "NX", "GET"},
       {"SET", "k", "v", "NX", "XX"}, {"SET", "k", "v", "EX", "10", "PX", "10"},
       {"SET", "k", "v", "EX", "0"}, {"SET", "k", "v", "EX", "-1"}, {"SET", "k", "v", "EX", "x"},
       {"SET", "k", "v", "PX", "100000", "KEEPTTL"}, {"SET", "k", "v", "KEEPTTL"},
       {"SET", "k", "v", "EX", "9223372036854775807"}, {"SET", "k", "v", "FOO"}, {"SET", "k", "v", "EX"},
       {"SET", "k", "v", "EXAT", "99999999999"}, {"SET", "k", "v", "PXAT", "99999999999999"},
       {"SET", "e", ""}, {"GET", "e"}, {"STRLEN", "e"}, {"EXISTS", "e"}},
      // Strings.
      {{"SETNX", "a", "1"}, {"SETNX", "a", "2"}, {"GET", "a"}, {"SETEX", "b", "100", "x"},
       {"SETEX", "b", "0", "x"}, {"SETEX", "b", "x", "x"}, {"PSETEX", "c", "100000", "y"},
       {"PSETEX", "c", "-5", "y"}, {"GETSET", "a", "3"}, {"GETSET", "zz", "1"}, {"GETDEL", "a"},
       {"GETDEL", "a"}, {"GETEX", "zz"}, {"GETEX", "zz", "PERSIST"}, {"GETEX", "zz", "EX", "100"},
       {"GETEX", "zz", "EX", "0"}, {"GETEX", "zz", "FOO"}, {"GETEX", "nokey", "EX", "10"},
       {"APPEND", "s", "abc"}, {"APPEND", "s", "def"}, {"GET", "s"}, {"STRLEN", "s"},
       {"STRLEN", "none"}, {"GETRANGE", "s", "0", "2"}, {"GETRANGE", "s", "-3", "-1"},
       {"GETRANGE", "s", "5", "1"}, {"GETRANGE", "s", "0", "100"}, {"GETRANGE", "s", "-1", "-5"},
       {"GETRANGE", "none", "0", "1"}, {"GETRANGE", "s", "x", "1"}, {"SETRANGE", "s", "1", "XY"},
       {"GET", "s"}, {"SETRANGE", "s", "10", "Z"}, {"GET", "s"}, {"SETRANGE", "t", "2", "ab"},
       {"GET", "t"}, {"SETRANGE", "u", "0", ""}, {"EXISTS", "u"}, {"SETRANGE", "s", "-1", "x"},
       {"SETRANGE", "s", "536870912", "x"}},
      // Counters.
      {{"INCR", "i"}, {"INCR", "i"}, {"DECR", "i"}, {"INCRBY", "i", "10"}, {"DECRBY", "i", "3"},
       {"INCRBY", "i", "x"}, {"SET", "s", "abc"}, {"INCR", "s"}, {"SET", "m", "9223372036854775807"},
       {"INCR", "m"}, {"DECRBY", "i", "-9223372036854775808"}, {"SET", "sp", " 1"}, {"INCR", "sp"},
       {"INCRBYFLOAT", "f", "1.5"}, {"INCRBYFLOAT", "f", "0.1"}, {"INCRBYFLOAT", "f", "-1.6"},
       {"INCRBYFLOAT", "f", "3.0e3"}, {"INCRBYFLOAT", "f", "abc"}, {"INCRBYFLOAT", "s", "1"},
       {"INCRBYFLOAT", "i", "1.25"}, {"GET", "i"}, {"INCRBYFLOAT", "f", "inf"}},
      // Multi-key.
      {{"MSET", "a", "1", "b", "2"}, {"MGET", "a", "b", "c"}, {"MSETNX", "c", "3", "a", "9"},
       {"MGET", "a", "c"}, {"MSETNX", "c", "3", "d", "4"}, {"MGET", "c", "d"}, {"EXISTS", "a", "a", "zz"},
       {"DEL", "a", "zz", "b"}, {"DEL", "a"}, {"UNLINK", "c"}, {"DBSIZE"}},
      // Expiry and TTL (values far from the edges, so timing cannot change them).
      {{"SET", "k", "v"}, {"TTL", "k"}, {"PTTL", "k"}, {"TTL", "none"}, {"EXPIRETIME", "k"},
       {"EXPIRETIME", "none"}, {"EXPIRE", "k", "1000"}, {"TTL", "k"}, {"EXPIRE", "k", "100", "NX"},
       {"EXPIRE", "k", "2000", "XX"}, {"EXPIRE", "k", "100", "GT"}, {"EXPIRE", "k", "3000", "GT"},
       {"EXPIRE", "k", "3500", "LT"}, {"EXPIRE", "k", "10", "LT"}, {"EXPIRE", "k", "10", "NX", "XX"},
       {"EXPIRE", "k", "10", "GT", "LT"}, {"EXPIRE", "k", "10", "FOO"}, {"EXPIRE", "k", "x"},
       {"EXPIRE", "none", "10"}, {"PERSIST", "k"}, {"PERSIST", "k"}, {"TTL", "k"},
       {"EXPIREAT", "k", "99999999999"}, {"EXPIRETIME", "k"}, {"PEXPIRETIME", "k"},
       {"PEXPIREAT", "k", "99999999999000"}, {"PEXPIRE", "k", "100000000"}, {"EXPIRE", "k", "-1"},
       {"EXISTS", "k"}, {"SET", "k", "v"}, {"EXPIREAT", "k", "1"}, {"GET", "k"},
       {"EXPIRE", "k", "9223372036854775807"}, {"SET", "g", "v"}, {"EXPIRE", "g", "100", "GT"},
       {"EXPIRE", "g", "100", "LT"}, {"TTL", "g"}},
      // Keys.
      {{"SET", "a", "1"}, {"TYPE", "a"}, {"TYPE", "none"}, {"RENAME", "a", "b"}, {"GET", "b"},
       {"RENAME", "a", "b"}, {"RENAME", "b", "b"}, {"SET", "c", "3"}, {"RENAMENX", "b", "c"},
       {"RENAMENX", "b", "d"}, {"GET", "d"}, {"RENAMENX", "d", "d"}, {"RENAMENX", "zz", "d"},
       {"KEYS", "zz*"}, {"SCAN", "x"}, {"SCAN", "0", "COUNT", "0"}, {"SCAN", "0", "FOO", "1"},
       {"SCAN", "0", "COUNT"}, {"SCAN", "18446744073709551616"}, {"SET", "e", "1", "EX", "1000"},
       {"RENAME", "e", "f"}, {"TTL", "f"}, {"FLUSHDB", "x"}, {"FLUSHALL"}, {"DBSIZE"},
       {"RANDOMKEY"}, {"KEYS", "*"}, {"SCAN", "0"}},
      // Transactions.
      {{"EXEC", "x"}, {"MULTI"}, {"EXEC", "x"}, {"EXEC"}, {"MULTI"}, {"GET"}, {"EXEC"},
       {"EXEC"}, {"DISCARD"}, {"MULTI"}, {"MULTI"}, {"SET", "a", "1"}, {"GET", "a"}, {"INCR", "a"},
       {"MGET", "a", "b"}, {"EXEC"}, {"GET", "a"}, {"MULTI"}, {"SET", "a"}, {"GET", "a"}, {"EXEC"},
       {"MULTI"}, {"NOSUCH"}, {"EXEC"}, {"MULTI"}, {"SET", "x", "1"}, {"DISCARD"}, {"GET", "x"},
       {"MULTI"}, {"WATCH", "a"}, {"INCR", "s1"}, {"SET", "s1", "v", "EX", "0"}, {"EXEC"},
       {"MULTI"}, {"EXEC"}, {"WATCH", "a"}, {"UNWATCH"}, {"MULTI"}, {"PING"}, {"ECHO", "e"},
       {"DEL", "a"}, {"EXISTS", "a"}, {"EXEC"}},
      // Server commands with deterministic replies.
      {{"CONFIG", "GET", "save"}, {"CONFIG", "GET", "maxmemory"}, {"CONFIG", "SET", "nosuch", "1"},
       {"CONFIG", "SET", "timeout", "x"}, {"CONFIG", "SET", "timeout"},
       {"CONFIG", "SET", "maxclients", "100"}, {"CONFIG", "GET", "maxclients"},
       {"CONFIG", "SET", "timeout", "0"}, {"CONFIG", "GET", "timeout"}, {"CONFIG", "RESETSTAT"},
       {"SLOWLOG", "LEN"}, {"SLOWLOG", "RESET"}, {"LATENCY", "LATEST"},
       {"COMMAND", "INFO", "nosuchcommand"}, {"CLIENT", "SETNAME", "has space"},
       {"CLIENT", "SETNAME", "ok"}, {"CLIENT", "GETNAME"}, {"CLIENT", "KILL", "1.2.3.4:5"},
       {"CLIENT", "KILL", "ID", "999999"}, {"SHUTDOWN", "FOO"}, {"COMMAND", "GETKEYS", "get"},
       // The HELP subcommands run in scripts (no noscript flag), their containers' others not.
       // (CLIENT HELP has keg's SETINFO and NO-TOUCH besides Redis 7.0's text.)
       {"EVAL", "return redis.call('config', 'help')", "0"},
       {"EVAL", "return redis.call('acl', 'help')", "0"}, {"EVAL", "return redis.call('latency', 'help')", "0"},
       {"EVAL", "return redis.call('slowlog', 'help')", "0"}, {"EVAL", "return redis.call('script', 'help')", "0"},
       {"EVAL", "return redis.call('function', 'help')", "0"}, {"EVAL", "return redis.call('client', 'id')", "0"},
       {"EVAL", "return redis.call('config', 'get', 'x')", "0"}},
      // Databases: SELECT, MOVE, SWAPDB, COPY DB, FLUSHDB, and SELECT inside MULTI (which stays
      // selected after EXEC, as Redis 7.0).
      {{"SELECT", "1"}, {"SET", "k", "one"}, {"SELECT", "0"}, {"SET", "k", "zero"}, {"GET", "k"},
       {"SELECT", "1"}, {"GET", "k"}, {"DBSIZE"}, {"SELECT", "16"}, {"SELECT", "-1"}, {"SELECT", "x"},
       {"SELECT", "2147483648"}, {"GET", "k"}, {"MOVE", "k", "1"}, {"MOVE", "k", "0"}, {"MOVE", "k", "2"},
       {"MOVE", "k", "x"}, {"MOVE", "k", "16"}, {"MOVE", "nosuch", "2"}, {"SELECT", "2"}, {"GET", "k"},
       {"EXPIRE", "k", "100"}, {"SWAPDB", "2", "0"}, {"GET", "k"}, {"SELECT", "0"}, {"GET", "k"},
       {"TTL", "k"}, {"SWAPDB", "0", "16"}, {"SWAPDB", "x", "1"}, {"SWAPDB", "1", "x"}, {"SWAPDB", "3", "3"},
       {"COPY", "k", "k", "DB", "5"}, {"COPY", "k", "k", "DB", "5"}, {"COPY", "k", "k"},
       {"COPY", "k", "k", "DB", "16"}, {"COPY", "k", "k", "DB", "x"}, {"SELECT", "5"}, {"GET", "k"},
       {"FLUSHDB"}, {"DBSIZE"}, {"SELECT", "0"}, {"DBSIZE"}, {"KEYS", "*"}, {"MULTI"}, {"SELECT", "3"},
       {"SET", "m", "v"}, {"SELECT", "99"}, {"GET", "m"}, {"DBSIZE"}, {"EXEC"}, {"GET", "m"}, {"SELECT", "0"},
       {"GET", "m"}, {"MULTI"}, {"SELECT", "3"}, {"SWAPDB", "3", "4"}, {"GET", "m"}, {"SELECT", "4"},
       {"GET", "m"}, {"EXEC"}, {"FLUSHALL"}, {"DBSIZE"}, {"SELECT", "4"}, {"DBSIZE"}},
      // Hashes, and WRONGTYPE both ways (string commands on a hash, hash commands on a string).
      {{"HSET", "h", "a", "1", "b", "2"}, {"HSET", "h", "a", "3", "c", "4"}, {"HSET", "h", "x"},
       {"HMSET", "h", "d", "5"}, {"HSETNX", "h", "a", "9"}, {"HSETNX", "h", "e", "9"}, {"HGET", "h", "a"},
       {"HGET", "h", "zz"}, {"HGET", "nosuch", "a"}, {"HMGET", "h", "a", "zz", "b"}, {"HMGET", "nosuch", "a", "b"},
       {"HLEN", "h"}, {"HLEN", "nosuch"}, {"HSTRLEN", "h", "a"}, {"HSTRLEN", "h", "zz"}, {"HEXISTS", "h", "a"},
       {"HEXISTS", "h", "zz"}, {"HKEYS", "h"}, {"HVALS", "h"}, {"HGETALL", "h"}, {"HGETALL", "nosuch"},
       {"HINCRBY", "h", "a", "10"}, {"HINCRBY", "h", "new", "-5"}, {"HINCRBY", "h", "a", "x"},
       {"HINCRBY", "h", "a", "9223372036854775807"}, {"HSET", "h", "s", "str"}, {"HINCRBY", "h", "s", "1"},
       {"HINCRBYFLOAT", "h", "f", "1.5"}, {"HINCRBYFLOAT", "h", "s", "1"},
       {"HINCRBYFLOAT", "h", "f", "x"}, {"HSCAN", "h", "0"}, {"HSCAN", "h", "0", "MATCH", "a*"},
       {"HSCAN", "h", "x"}, {"HSCAN", "nosuch", "0"}, {"TYPE", "h"}, {"OBJECT", "ENCODING", "h"},
       {"GET", "h"}, {"INCR", "h"}, {"APPEND", "h", "x"}, {"SET", "h", "v", "GET"}, {"GETDEL", "h"},
       {"STRLEN", "h"}, {"MGET", "h", "nosuch"}, {"SETRANGE", "h", "0", "x"}, {"GETRANGE", "h", "0", "1"},
       {"SET", "str", "v"}, {"HSET", "str", "a", "1"}, {"HGET", "str", "a"}, {"HGETALL", "str"},
       {"HDEL", "h", "a", "b", "zz"}, {"HDEL", "h", "zz"}, {"HDEL", "nosuch", "a"}, {"HLEN", "h"},
       {"RENAME", "h", "h2"}, {"HGET", "h2", "c"}, {"TYPE", "h2"}, {"COPY", "h2", "h3"}, {"HGETALL", "h3"},
       {"EXPIRE", "h3", "100"}, {"HSET", "h3", "z", "1"}, {"TTL", "h3"}, {"DEL", "h2"}, {"EXISTS", "h2"},
       {"HSET", "big", "f", std::string(65, 'v')}, {"OBJECT", "ENCODING", "big"}, {"HDEL", "big", "f"},
       {"EXISTS", "big"}, {"HRANDFIELD", "nosuch"}, {"HRANDFIELD", "nosuch", "3"}, {"HRANDFIELD", "h3", "0"},
       {"HRANDFIELD", "h3", "x"}, {"HRANDFIELD", "h3", "1", "foo"}, {"SET", "h", "v"}, {"TYPE", "h"}},
      // Sets (intsets stay sorted, as Redis's; other sets are compared where order is defined).
      {{"SADD", "s", "3", "1", "2", "1"}, {"SMEMBERS", "s"}, {"OBJECT", "ENCODING", "s"}, {"SCARD", "s"},
       {"SISMEMBER", "s", "2"}, {"SISMEMBER", "s", "9"}, {"SMISMEMBER", "s", "1", "9"}, {"SADD", "s", "-5", "10"},
       {"SMEMBERS", "s"}, {"SREM", "s", "10", "nosuch"}, {"SMEMBERS", "s"}, {"SADD", "t", "2", "3", "4"},
       {"SINTER", "s", "t"}, {"SINTER", "s", "nosuch"}, {"SINTERCARD", "2", "s", "t"},
       {"SINTERCARD", "2", "s", "t", "LIMIT", "1"}, {"SINTERCARD", "0", "s"}, {"SINTERCARD", "3", "s", "t"},
       {"SINTERCARD", "1", "s", "LIMIT", "-1"}, {"SINTERSTORE", "d", "s", "t"}, {"SMEMBERS", "d"},
       {"SUNIONSTORE", "d", "s", "t"}, {"SMEMBERS", "d"}, {"SDIFFSTORE", "d", "s", "t"}, {"SMEMBERS", "d"},
       {"SINTERSTORE", "d", "s", "nosuch"}, {"EXISTS", "d"}, {"SET", "str", "v"}, {"SINTER", "s", "str"},
       {"SADD", "str", "x"}, {"SCARD", "str"}, {"SINTERSTORE", "str", "s", "t"}, {"TYPE", "str"},
       {"SMOVE", "s", "t", "-5"}, {"SMOVE", "s", "t", "nosuch"}, {"SMOVE", "s", "s", "1"}, {"SMEMBERS", "t"},
       {"SMOVE", "t", "str", "2"}, {"SADD", "w", "a"}, {"OBJECT", "ENCODING", "w"}, {"SREM", "w", "a"},
       {"EXISTS", "w"}, {"SPOP", "nosuch"}, {"SPOP", "nosuch", "2"}, {"SPOP", "s", "-1"}, {"SPOP", "s", "0"},
       {"SPOP", "s", "1", "2"}, {"SRANDMEMBER", "nosuch"}, {"SRANDMEMBER", "nosuch", "2"},
       {"SRANDMEMBER", "s", "0"}, {"SRANDMEMBER", "s", "x"}, {"SSCAN", "t", "0"}, {"SSCAN", "t", "0", "MATCH", "3"},
       {"DUMP", "nosuch"}, {"GET", "s"}, {"HGET", "s", "a"}},
      // Writes that change nothing (answered from a read when nothing of the connection's is
      // pending; pipelined, after the writes before them): SADD of members present, SREM and HDEL
      // of absent ones, of a whole and of a large (per-element) collection, a WATCH they do not
      // touch, WRONGTYPE, and the same commands right after a write that makes them change things.
      [] {
        std::vector<Cmd> c = {{"SADD", "s", "a", "b"}, {"SADD", "s", "a"}, {"SADD", "s", "b", "a"}, {"SREM", "s", "zz"},
                              {"SREM", "nokey", "a"}, {"HSET", "h", "f", "1"}, {"HDEL", "h", "g"}, {"HDEL", "nokey", "f"},
                              {"WATCH", "s", "h"}, {"SADD", "s", "a"}, {"SREM", "s", "q"}, {"HDEL", "h", "q"},
                              {"MULTI"}, {"SCARD", "s"}, {"EXEC"}, {"DEL", "s"}, {"SADD", "s", "a"}, {"SREM", "s", "a"},
                              {"SADD", "s", "a", "a"}, {"HDEL", "h", "f"}, {"HDEL", "h", "f"}, {"SET", "str", "v"},
                              {"SADD", "str", "a"}, {"SREM", "str", "a"}, {"HDEL", "str", "f"}};
        Cmd big = {"SADD", "big"};
        for (int i = 0; i < 200; ++i) big.push_back("m" + std::to_string(i));
        c.push_back(big);
        for (Cmd x : std::vector<Cmd>{{"SADD", "big", "m5", "m150"}, {"SREM", "big", "zz", "m999"}, {"SCARD", "big"},
                                      {"SADD", "big", "m5", "new"}, {"SREM", "big", "new", "zz"}, {"SCARD", "big"},
                                      {"OBJECT", "ENCODING", "big"}}) {
          c.push_back(std::move(x));
        }
        Cmd bigh = {"HSET", "bigh"};
        for (int i = 0; i < 200; ++i) {
          bigh.push_back("f" + std::to_string(i));
          bigh.push_back("v");
        }
        c.push_back(bigh);
        // In a transaction: reads of named members see the writes queued before them, not after.
        for (Cmd x : std::vector<Cmd>{{"HDEL", "bigh", "zz"}, {"HLEN", "bigh"}, {"HDEL", "bigh", "f7", "zz"}, {"HLEN", "bigh"},
                                      {"HMGET", "bigh", "f1", "f7", "zz"}, {"MULTI"}, {"HGET", "bigh", "f1"},
                                      {"HSET", "bigh", "f1", "new"}, {"HMGET", "bigh", "f1", "f1", "f2", "zz"},
                                      {"HEXISTS", "bigh", "f7"}, {"HSTRLEN", "bigh", "f1"}, {"SISMEMBER", "big", "m5"},
                                      {"SREM", "big", "m5"}, {"SMISMEMBER", "big", "m5", "m6", "zz"}, {"HLEN", "bigh"},
                                      {"SCARD", "big"}, {"HGET", "bigh", "f1"}, {"EXEC"}}) {
          c.push_back(std::move(x));
        }
        return c;
      }(),
  };
  return cases;
}

TEST(ServerVsRedis, SameCommandsGiveTheSameBytes) {
  // The slow log is off on both: on a loaded machine any command can pass 10 ms on one server and not
  // the other, and SLOWLOG LEN is among the compared replies.
  Redis redis({"--slowlog-log-slower-than", "-1"});
  ASSERT_TRUE(redis.ok()) << "redis-server must be on PATH";
  Keg keg({"--slowlog-log-slower-than", "-1"});
  ASSERT_TRUE(keg.Start());
  int n = 0;
  for (const auto& commands : DifferentialCases()) {
    RawClient r(redis.port());
    RawClient k(keg.port());
    ASSERT_EQ(r.Call({"FLUSHALL"}), "+OK\r\n");
    ASSERT_EQ(k.Call({"FLUSHALL"}), "+OK\r\n");
    for (const Cmd& cmd : commands) {
      std::string shown;
      for (const std::string& a : cmd) shown += a.substr(0, 40) + " ";
      const std::string want = r.Call(cmd);
      const std::string got = k.Call(cmd);
      EXPECT_EQ(got.substr(0, 300), want.substr(0, 300)) << "command: " << shown;
      ++n;
    }
  }
  EXPECT_GT(n, 230);
}

// DEBUG DIGEST and DIGEST-VALUE follow Redis's algorithm for every type and database: the same data
// gives the same digests (what Redis's tests compare across a reload or a replica).
TEST(ServerVsRedis, DigestsMatchForEveryTypeAndDatabase) {
  Redis redis({"--enable-debug-command", "yes"});
  ASSERT_TRUE(redis.ok());
  Keg keg({"--enable-debug-command", "yes"});
  ASSERT_TRUE(keg.Start());
  RawClient r(redis.port());
  RawClient k(keg.port());
  const std::vector<Cmd> writes = {
      {"SET", "s", "v"}, {"SET", "n", "12345"}, {"HSET", "h", "a", "1", "b", std::string(100, 'x')},
      {"SADD", "ints", "3", "1", "2"}, {"SADD", "strs", "a", "b", "c"}, {"EXPIRE", "h", "1000"},
      {"SELECT", "3"}, {"SET", "s", "in db 3"}, {"SADD", "ints", "7"}, {"SELECT", "0"},
      {"ZADD", "z", "1", "a", "2.5", "b", "-inf", "c", "1e300", "d"}, {"RPUSH", "l", "x", "y", "x"}};
  for (const Cmd& w : writes) ASSERT_EQ(k.Call(w), r.Call(w)) << w[0];
  for (const Cmd& cmd : std::vector<Cmd>{{"DEBUG", "DIGEST-VALUE", "s", "n", "h", "ints", "strs", "z", "l", "nosuch"},
                                         {"DEBUG", "DIGEST"}}) {
    EXPECT_EQ(k.Call(cmd), r.Call(cmd)) << cmd[1];
  }
}

// DUMP from keg RESTOREs into redis-server 7.0.15 and Redis's DUMP into keg, for every type and
// encoding keg has (int / embstr / raw strings, listpack / hashtable hashes, intset / hashtable
// sets): the values (DEBUG DIGEST-VALUE, order-free) and the encodings each server reports match.
TEST(ServerVsRedis, DumpRoundTripsEveryTypeAndEncodingBothWays) {
  Redis redis({"--enable-debug-command", "yes"});
  ASSERT_TRUE(redis.ok());
  Keg keg({"--enable-debug-command", "yes"});
  ASSERT_TRUE(keg.Start());
  RawClient r(redis.port());
  RawClient k(keg.port());
  Cmd big_hash = {"HSET", "hashtable"};
  Cmd big_set = {"SADD", "set-hashtable"};
  Cmd big_zset = {"ZADD", "zset-skiplist"};
  for (int i = 0; i < 600; ++i) {
    big_hash.insert(big_hash.end(), {"f" + std::to_string(i), std::string(static_cast<size_t>(i % 90), 'v')});
    big_set.push_back("m" + std::to_string(i));
    big_zset.insert(big_zset.end(), {std::to_string(i % 37) + ".25", "m" + std::to_string(i)});  // ties
  }
  const std::vector<Cmd> writes = {
      {"SET", "int", "12345"}, {"SET", "embstr", "short"}, {"SET", "raw", std::string(300, 'r')},
      {"HSET", "listpack", "a", "1", "b", "two", std::string("\0", 1), "bin"}, big_hash,
      {"SADD", "intset", "5", "-3", "100000", "1099511627776"}, big_set,
      {"ZADD", "zset-listpack", "1", "a", "-inf", "b", "3.5", std::string("\0z", 2), "1", "0"}, big_zset};
  const std::vector<std::string> keys = {"int",    "embstr",        "raw",           "listpack",     "hashtable",
                                         "intset", "set-hashtable", "zset-listpack", "zset-skiplist"};
  for (const Cmd& w : writes) ASSERT_EQ(k.Call(w), r.Call(w)) << w[0] << " " << w[1];
  auto payload = [](const std::string& bulk) {  // "$N\r\n<bytes>\r\n" -> bytes
    const size_t at = bulk.find("\r\n") + 2;
    return bulk.substr(at, bulk.size() - at - 2);
  };
  for (const std::string& key : keys) {
    const std::string digest = k.Call({"DEBUG", "DIGEST-VALUE", key});
    EXPECT_EQ(digest, r.Call({"DEBUG", "DIGEST-VALUE", key})) << key;
    const std::string encoding = k.Call({"OBJECT", "ENCODING", key});
    EXPECT_EQ(encoding, r.Call({"OBJECT", "ENCODING", key})) << key;
    // keg -> Redis, and Redis -> keg, under new names.
    EXPECT_EQ(r.Call({"RESTORE", key + ":from-keg", "0", payload(k.Call({"DUMP", key}))}), "+OK\r\n") << key;
    EXPECT_EQ(k.Call({"RESTORE", key + ":from-redis", "0", payload(r.Call({"DUMP", key}))}), "+OK\r\n") << key;
    EXPECT_EQ(r.Call({"DEBUG", "DIGEST-VALUE", key + ":from-keg"}), digest) << key;
    EXPECT_EQ(k.Call({"DEBUG", "DIGEST-VALUE", key + ":from-redis"}), digest) << key;
    EXPECT_EQ(r.Call({"OBJECT", "ENCODING", key + ":from-keg"}), encoding) << key;
    EXPECT_EQ(k.Call({"OBJECT", "ENCODING", key + ":from-redis"}), encoding) << key;
  }
}

// Pipelined: the whole case in one write, replies compared as one stream.
TEST(ServerVsRedis, PipelinedCasesGiveTheSameBytes) {
  Redis redis;
  ASSERT_TRUE(redis.ok());
  Keg keg;
  ASSERT_TRUE(keg.Start());
  for (const auto& commands : DifferentialCases()) {
    RawClient r(redis.port());
    RawClient k(keg.port());
    ASSERT_EQ(r.Call({"FLUSHALL"}), "+OK\r\n");
    ASSERT_EQ(k.Call({"FLUSHALL"}), "+OK\r\n");
    std::string batch;
    for (const Cmd& cmd : commands) batch += RawClient::Encode(cmd);
    r.Send(batch);
    k.Send(batch);
    const std::string want = r.Read(commands.size());
    const std::string got = k.Read(commands.size());
    if (got != want) {
      size_t at = 0;
      while (at < got.size() && at < want.size() && got[at] == want[at]) ++at;
      ADD_FAILURE() << "case starting with " << commands[0][0] << " differs at byte " << at
                    << ": keg '" << got.substr(at > 40 ? at - 40 : 0, 120) << "' redis '"
                    << want.substr(at > 40 ? at - 40 : 0, 120) << "'";
    }
  }
}

// COMMAND INFO's key specifications (element 9: what cluster-aware clients and proxies read to
// find a command's keys), flattened, against redis-server 7.0.15's for commands of every shape.
TEST(ServerVsRedis, CommandInfoKeySpecs) {
  Redis redis;
  ASSERT_TRUE(redis.ok());
  Keg keg;
  ASSERT_TRUE(keg.Start());
  auto flatten = [](const redisReply* r, std::string* out, auto&& self) -> void {
    if (r->type == REDIS_REPLY_ARRAY) {  // maps and sets too, in RESP2
      *out += "[";
      for (size_t i = 0; i < r->elements; ++i) {
        const redisReply* e = r->element[i];
        if (e->type == REDIS_REPLY_STRING && std::string_view(e->str, e->len) == "notes") {  // free text: not compared
          ++i;
          continue;
        }
        self(e, out, self);
      }
      *out += "]";
    } else if (r->type == REDIS_REPLY_INTEGER) {
      *out += std::to_string(r->integer) + " ";
    } else {
      *out += std::string(r->str, r->len) + " ";
    }
  };
  auto specs = [&](int port, const std::string& name) {
    redisContext* ctx = redisConnect("127.0.0.1", port);
    std::string out;
    auto* r = static_cast<redisReply*>(redisCommand(ctx, "COMMAND INFO %s", name.c_str()));
    if (r != nullptr && r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->type == REDIS_REPLY_ARRAY &&
        r->element[0]->elements >= 9) {
      flatten(r->element[0]->element[8], &out, flatten);
    }
    if (r != nullptr) freeReplyObject(r);
    redisFree(ctx);
    return out;
  };
  for (const std::string name : {"get", "set", "mset", "del", "copy", "rename", "bitop", "bitfield", "eval", "fcall_ro",
                                 "sintercard", "migrate", "hset", "hsetnx", "hdel", "hincrby", "hlen", "smove",
                                 "sinterstore", "sunionstore", "spop", "sismember", "object|encoding", "ping"}) {
    const std::string want = specs(redis.port(), name);
    ASSERT_FALSE(name != "ping" && want.empty()) << name;
    EXPECT_EQ(specs(keg.port(), name), want) << name;
  }
  // container|subcommand names: an unknown one, or one under a command without subcommands, is nil.
  RawClient r(redis.port());
  RawClient k(keg.port());
  for (const Cmd& cmd : std::vector<Cmd>{{"COMMAND", "INFO", "object|nosuch", "get|x", "nosuch|x"},
                                         {"COMMAND", "INFO", "config|get", "get"}}) {
    EXPECT_EQ(k.Call(cmd), r.Call(cmd)) << cmd[2];
  }
}

// The command table as COMMAND shows it — arity, flags, first / last key and step, ACL categories
// of every command and subcommand — against redis-server 7.0.15's, for every command both have:
// what clients and proxies read to route a command (readonly, write, movablekeys, blocking,
// pubsub) and to check it before sending (arity). The differences keg means are listed.
TEST(ServerVsRedis, CommandTableMatchesRedis) {
  Redis redis;
  ASSERT_TRUE(redis.ok());
  Keg keg;
  ASSERT_TRUE(keg.Start());
  // name -> "arity|flags (sorted)|first last step|categories (sorted)"
  auto table = [](int port) {
    std::map<std::string, std::string> out;
    redisContext* ctx = redisConnect("127.0.0.1", port);
    auto* r = static_cast<redisReply*>(redisCommand(ctx, "COMMAND"));
    auto strings = [](const redisReply* a) {
      std::vector<std::string> v;
      for (size_t i = 0; i < a->elements; ++i) v.emplace_back(a->element[i]->str, a->element[i]->len);
      std::sort(v.begin(), v.end());
      std::string joined;
      for (const std::string& x : v) joined += x + " ";
      return joined;
    };
    auto add = [&](const redisReply* e) {
      out[std::string(e->element[0]->str, e->element[0]->len)] =
          std::to_string(e->element[1]->integer) + "|" + strings(e->element[2]) + "|" +
          std::to_string(e->element[3]->integer) + " " + std::to_string(e->element[4]->integer) + " " +
          std::to_string(e->element[5]->integer) + "|" + strings(e->element[6]);
    };
    for (size_t i = 0; r != nullptr && i < r->elements; ++i) {
      const redisReply* e = r->element[i];
      add(e);
      if (e->elements > 9) {
        for (size_t j = 0; j < e->element[9]->elements; ++j) add(e->element[9]->element[j]);
      }
    }
    if (r != nullptr) freeReplyObject(r);
    redisFree(ctx);
    return out;
  };
  const std::map<std::string, std::string> want = table(redis.port());
  const std::map<std::string, std::string> got = table(keg.port());
  ASSERT_GT(want.size(), 300u);
  // Meant: MIGRATE is refused in MULTI and scripts (it waits on another server); REPLICAOF is
  // taken during a replica's load (it interrupts it, which changes nothing); the shard channels
  // of SPUBLISH / SSUBSCRIBE / SUNSUBSCRIBE are not keys to keg (no cluster: no slots).
  const std::set<std::string> meant = {"migrate", "replicaof", "slaveof", "spublish", "ssubscribe", "sunsubscribe"};
  size_t compared = 0;
  for (const auto& [name, spec] : want) {
    auto it = got.find(name);
    if (it == got.end() || meant.count(name) != 0) continue;  // (streams, geo, modules: not keg's)
    ++compared;
    EXPECT_EQ(it->second, spec) << name << " (arity|flags|first last step|categories)";
  }
  EXPECT_GT(compared, 300u);
}

// Before AUTH: which errors win (unknown command and arity before NOAUTH), and EXEC's.
TEST(ServerVsRedis, RequirepassGivesTheSameBytes) {
  const int port = FreePort();
  ServerProcess redis;
  ASSERT_TRUE(redis.Start({"redis-server", "--port", std::to_string(port), "--bind", "127.0.0.1",
                           "--save", "", "--requirepass", "pw", "--logfile", "/dev/null"},
                          port));
  Keg keg({"--requirepass", "pw"});
  ASSERT_TRUE(keg.Start());
  const std::vector<Cmd> commands = {
      {"FOO"}, {"GET"}, {"GET", "a"}, {"MULTI"}, {"HELLO"}, {"CLIENT", "SETNAME", "x"}, {"EXEC"},
      {"AUTH", "nope"}, {"AUTH", "default", "nope"}, {"HELLO", "3", "AUTH", "default", "nope"},
      {"AUTH", "pw"}, {"SET", "a", "1"}, {"GET", "a"}, {"QUIT"}};
  RawClient r(port);
  RawClient k(keg.port());
  for (const Cmd& cmd : commands) EXPECT_EQ(k.Call(cmd), r.Call(cmd)) << cmd[0];
}

TEST(ServerVsRedis, InlineCommandsAndProtocolErrors) {
  Redis redis;
  ASSERT_TRUE(redis.ok());
  Keg keg;
  ASSERT_TRUE(keg.Start());
  const std::vector<std::pair<std::string, size_t>> inputs = {
      {"PING\r\n", 1}, {"SET a \"b c\"\r\nGET a\r\n", 2}, {"\r\n*0\r\nPING\n", 1},
      {"*1\r\n$4\r\nPING\r\n*x\r\n", 2}, {"SET a b\r\nINCR n\r\n*x\r\n", 3}, {"*1\r\n+PING\r\n", 1}, {"SET a \"b\r\n", 1},
  };
  for (const auto& [bytes, replies] : inputs) {
    RawClient r(redis.port());
    RawClient k(keg.port());
    r.Send(bytes);
    k.Send(bytes);
    EXPECT_EQ(k.Read(replies), r.Read(replies)) << bytes;
  }
}

// ---- keg on its own ---------------------------------------------------------------------------

class ServerTest : public ::testing::Test {
 protected:
  void StartKeg(std::vector<std::string> extra = {}) {
    keg_ = std::make_unique<Keg>(std::move(extra));
    ASSERT_TRUE(keg_->Start()) << keg_->Log();
  }
  std::unique_ptr<Keg> keg_;
};

TEST_F(ServerTest, TenThousandPipelinedCommandsInOneWrite) {
  StartKeg();
  RawClient c(keg_->port());
  std::string batch;
  for (int i = 0; i < 5000; ++i) {
    batch += RawClient::Encode({"SET", "key:" + std::to_string(i), "value:" + std::to_string(i)});
    batch += RawClient::Encode({"GET", "key:" + std::to_string(i)});
  }
  ASSERT_TRUE(c.Send(batch));
  const std::string replies = c.Read(10000, 20000);
  std::string expected;
  for (int i = 0; i < 5000; ++i) {
    const std::string v = "value:" + std::to_string(i);
    expected += "+OK\r\n$" + std::to_string(v.size()) + "\r\n" + v + "\r\n";
  }
  EXPECT_EQ(replies, expected);
}

// A signal sent to the process goes to its main thread first, so the main thread runs the first
// event loop: a SIGSTOP stops the loop before it serves anything more, as a stopped Redis. (The
// loop had a thread of its own while the main thread slept; on a busy machine a stopped replica
// answered the GETACK of the WAIT that followed: Redis's unit/wait failed in CI.)
TEST_F(ServerTest, TheMainThreadRunsTheEventLoopAndStopsWithTheProcess) {
  StartKeg();
  const pid_t pid = keg_->proc().pid();
  // CPU ticks (user + system) per thread.
  auto ticks = [pid] {
    std::map<std::string, long> out;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
      std::ifstream in(entry.path() / "stat");
      std::string line;
      if (!std::getline(in, line)) continue;
      std::istringstream rest(line.substr(line.rfind(')') + 2));
      std::string field;
      long user = 0, sys = 0;
      for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14) user = std::stol(field);
        if (i == 15) sys = std::stol(field);
      }
      out[entry.path().filename().string()] = user + sys;
    }
    return out;
  };
  RawClient c(keg_->port());
  std::string batch;
  for (int i = 0; i < 20000; ++i) batch += RawClient::Encode({"PING"});
  const std::map<std::string, long> before = ticks();
  // Until the server spent a quarter of a second (25 ticks) serving them.
  for (int round = 0; round < 500; ++round) {
    ASSERT_TRUE(c.Send(batch));
    ASSERT_EQ(c.Read(20000, 30000).size(), 20000u * 7);  // +PONG\r\n
    long spent = 0;
    for (const auto& [tid, t] : ticks()) spent += t - (before.count(tid) ? before.at(tid) : 0);
    if (spent >= 25) break;
  }
  const std::map<std::string, long> after = ticks();
  auto delta = [&](const std::string& tid) { return after.at(tid) - (before.count(tid) ? before.at(tid) : 0); };
  const long main_work = delta(std::to_string(pid));
  EXPECT_GT(main_work, 0);
  for (const auto& [tid, t] : after) EXPECT_LE(delta(tid), main_work) << "thread " << tid << " outworked the main thread";

  ASSERT_EQ(kill(pid, SIGSTOP), 0);
  ASSERT_TRUE(c.Send(RawClient::Encode({"PING"})));
  EXPECT_EQ(c.Read(1, 300), "");  // stopped: no reply
  ASSERT_EQ(kill(pid, SIGCONT), 0);
  EXPECT_EQ(c.Read(1), "+PONG\r\n");
}

TEST_F(ServerTest, BinaryValuesWithNulAndCrlfRoundTrip) {
  StartKeg();
  redisContext* ctx = redisConnect("127.0.0.1", keg_->port());
  ASSERT_TRUE(ctx != nullptr && ctx->err == 0);
  std::string value("a\0b\r\nc\r\n\0", 9);
  for (int i = 0; i < 256; ++i) value.push_back(static_cast<char>(i));
  value += std::string(100000, '\n');  // large: sent straight from the map
  std::string key("k\0\r\n", 4);
  auto* r = static_cast<redisReply*>(redisCommand(ctx, "SET %b %b", key.data(), key.size(), value.data(), value.size()));
  ASSERT_EQ(r->type, REDIS_REPLY_STATUS);
  freeReplyObject(r);
  r = static_cast<redisReply*>(redisCommand(ctx, "GET %b", key.data(), key.size()));
  ASSERT_EQ(r->type, REDIS_REPLY_STRING);
  EXPECT_EQ(std::string(r->str, r->len), value);
  freeReplyObject(r);
  redisFree(ctx);
}

TEST_F(ServerTest, ValueAtTheBulkLimitAndOnePast) {
  StartKeg({"--proto-max-bulk-len", "1mb"});
  RawClient c(keg_->port());
  const std::string at(1024 * 1024, 'x');
  EXPECT_EQ(c.Call({"SET", "big", at}), "+OK\r\n");
  EXPECT_EQ(c.Call({"STRLEN", "big"}), ":1048576\r\n");
  RawClient d(keg_->port());
  d.Send(RawClient::Encode({"SET", "big", at + "y"}));
  EXPECT_EQ(d.Read(1), "-ERR Protocol error: invalid bulk length\r\n");
  EXPECT_TRUE(d.Closed());
  EXPECT_EQ(c.Call({"APPEND", "big", "y"}),
            "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n");
  EXPECT_EQ(c.Call({"STRLEN", "big"}), ":1048576\r\n");  // the other client is unaffected
}

TEST_F(ServerTest, Resp3AfterHello3) {
  StartKeg();
  RawClient c(keg_->port());
  const std::string hello = c.Call({"HELLO", "3"});
  EXPECT_EQ(hello.substr(0, 3), "%7\r");
  EXPECT_NE(hello.find("$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n"), std::string::npos);
  EXPECT_EQ(c.Call({"GET", "missing"}), "_\r\n");
  EXPECT_EQ(c.Call({"CONFIG", "GET", "save"}), "%1\r\n$4\r\nsave\r\n$0\r\n\r\n");
  EXPECT_EQ(c.Call({"INFO", "server"}).substr(0, 1), "=");
  EXPECT_EQ(c.Call({"MGET", "a", "b"}), "*2\r\n_\r\n_\r\n");
  EXPECT_EQ(c.Call({"HELLO", "2"}).substr(0, 5), "*14\r\n");
  EXPECT_EQ(c.Call({"GET", "missing"}), "$-1\r\n");
}

TEST_F(ServerTest, AuthFlows) {
  StartKeg({"--requirepass", "s3cret"});
  RawClient c(keg_->port());
  EXPECT_EQ(c.Call({"GET", "a"}), "-NOAUTH Authentication required.\r\n");
  EXPECT_EQ(c.Call({"HELLO", "3"}).substr(0, 42), "-NOAUTH HELLO must be called with the clie");
  EXPECT_EQ(c.Call({"AUTH", "wrong"}), "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
  EXPECT_EQ(c.Call({"AUTH", "default", "wrong"}), "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
  EXPECT_EQ(c.Call({"AUTH", "s3cret"}), "+OK\r\n");
  EXPECT_EQ(c.Call({"SET", "a", "1"}), "+OK\r\n");
  RawClient h(keg_->port());
  EXPECT_EQ(h.Call({"HELLO", "2", "AUTH", "default", "s3cret"}).substr(0, 5), "*14\r\n");
  EXPECT_EQ(h.Call({"GET", "a"}), "$1\r\n1\r\n");
  // Before AUTH, Redis's smaller limits apply: more than 10 arguments closes the connection.
  RawClient u(keg_->port());
  Cmd many = {"MGET"};
  for (int i = 0; i < 12; ++i) many.push_back("k");
  u.Send(RawClient::Encode(many));
  EXPECT_EQ(u.Read(1), "-ERR Protocol error: unauthenticated multibulk length\r\n");
  EXPECT_TRUE(u.Closed());
  // RESET forgets the authentication.
  EXPECT_EQ(c.Call({"RESET"}), "+RESET\r\n");
  EXPECT_EQ(c.Call({"GET", "a"}), "-NOAUTH Authentication required.\r\n");
}

TEST_F(ServerTest, MaxClientsIdleTimeoutAndPostHost) {
  StartKeg({"--maxclients", "2", "--timeout", "1"});
  RawClient a(keg_->port());
  RawClient b(keg_->port());
  EXPECT_EQ(a.Call({"PING"}), "+PONG\r\n");
  EXPECT_EQ(b.Call({"PING"}), "+PONG\r\n");
  RawClient third(keg_->port());
  EXPECT_EQ(third.Read(1), "-ERR max number of clients reached\r\n");
  EXPECT_TRUE(third.Closed());
  // Idle clients are closed after `timeout` seconds.
  EXPECT_TRUE(a.Closed(4000));
  EXPECT_TRUE(b.Closed(4000));
  // POST / Host: closes without a reply.
  RawClient web(keg_->port());
  web.Send("POST / HTTP/1.1\r\nHost: example\r\n\r\n");
  EXPECT_TRUE(web.Closed());
  EXPECT_EQ(web.pending(), "");
  RawClient after(keg_->port());
  EXPECT_EQ(after.Call({"PING"}), "+PONG\r\n");
}

TEST_F(ServerTest, ClientThatDoesNotReadIsDisconnectedAndOthersAreServed) {
  StartKeg({"--client-output-buffer-limit", "normal", "4mb", "0", "0"});
  RawClient c(keg_->port());
  ASSERT_EQ(c.Call({"SET", "v", std::string(100000, 'v')}), "+OK\r\n");
  // Pipeline 20,000 GETs of a 100 KB value (2 GB of replies) and never read.
  std::string get = RawClient::Encode({"GET", "v"});
  std::string batch;
  for (int i = 0; i < 1000; ++i) batch += get;
  RawClient hog(keg_->port());
  int sent = 0;
  for (int i = 0; i < 20; ++i) {
    if (::send(hog.fd(), batch.data(), batch.size(), MSG_NOSIGNAL | MSG_DONTWAIT) <= 0) break;
    ++sent;
  }
  EXPECT_GT(sent, 0);
  EXPECT_TRUE(hog.Closed(10000));
  EXPECT_EQ(c.Call({"PING"}), "+PONG\r\n");
  std::ifstream statm("/proc/" + std::to_string(keg_->proc().pid()) + "/status");
  std::string line;
  int64_t rss_kb = 0;
  while (std::getline(statm, line)) {
    if (line.rfind("VmRSS:", 0) == 0) rss_kb = std::stoll(line.substr(6));
  }
  EXPECT_LT(rss_kb, 200 * 1024) << "server memory must stay bounded";
  EXPECT_NE(keg_->Log().find("output buffer limits"), std::string::npos) << keg_->Log();
}

// The soft output limit: a client above it for <soft seconds> is closed (here 1 s), checked by the
// once-a-second tick even while nothing else happens on the connection.
TEST_F(ServerTest, SoftOutputLimitClosesAClientThatStaysAboveIt) {
  StartKeg({"--client-output-buffer-limit", "normal", "0", "1mb", "1"});
  RawClient c(keg_->port());
  ASSERT_EQ(c.Call({"SET", "v", std::string(100000, 'v')}), "+OK\r\n");
  std::string batch;
  for (int i = 0; i < 200; ++i) batch += RawClient::Encode({"GET", "v"});  // 20 MB of replies
  RawClient slow(keg_->port());
  ASSERT_TRUE(slow.Send(batch));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(c.Call({"PING"}), "+PONG\r\n");
  EXPECT_EQ(keg_->Log().find("output buffer limits"), std::string::npos);  // not before a second
  // Without reading (reading would drain the replies below the limit), wait for the close.
  bool logged = false;
  for (int i = 0; i < 50 && !logged; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    logged = keg_->Log().find("output buffer limits") != std::string::npos;
  }
  EXPECT_TRUE(logged) << keg_->Log();
  EXPECT_TRUE(slow.Closed(5000));
}

// The soft limit counts the time the output stays above it without a break: a client that drains
// its output (here: reads every reply) and then goes above the limit again gets its whole
// <soft seconds> from then. Found by review (hunting a flaky run of Redis's obuf-limits unit):
// only a check (a command's replies, the tick) restarted the timer, not a write that drained the
// output, so when no check fell into the drained moment the timer ran on from the first time the
// limit was passed, and the client was closed 2.4 s after it passed it again, not 3 s.
TEST_F(ServerTest, SoftOutputLimitRestartsItsTimerWhenTheOutputDrains) {
  StartKeg({"--client-output-buffer-limit", "normal", "0", "1mb", "3"});
  RawClient c(keg_->port());
  const std::string value(2 << 20, 'v');
  ASSERT_EQ(c.Call({"SET", "v", value}), "+OK\r\n");
  std::string batch;
  for (int i = 0; i < 10; ++i) batch += RawClient::Encode({"GET", "v"});  // 20 MB of replies
  RawClient slow(keg_->port());
  ASSERT_EQ(slow.Call({"CLIENT", "SETNAME", "slow"}), "+OK\r\n");
  auto connected = [&] { return c.Call({"CLIENT", "LIST"}).find("name=slow ") != std::string::npos; };
  ASSERT_TRUE(slow.Send(batch));  // above the limit: the timer starts
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  ASSERT_TRUE(connected());
  // Drain: read every reply (keg writes the rest as the socket takes it), then at once pass the
  // limit again with replies no socket buffer holds.
  EXPECT_EQ(slow.Read(10, 10000).size(), 10 * (value.size() + 12));
  const auto again = std::chrono::steady_clock::now();
  ASSERT_TRUE(slow.Send(batch));
  // Closed no sooner than 3 s after it went above the limit again (the tick checks once a second).
  bool closed = false;
  double closed_after = 0;
  while (!closed) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    closed_after = std::chrono::duration<double>(std::chrono::steady_clock::now() - again).count();
    closed = !connected();
    if (closed_after > 10) break;
  }
  EXPECT_TRUE(closed) << "still connected after 10 s";
  EXPECT_GE(closed_after, 3.0) << "closed " << closed_after << " s after passing the soft limit again";
}

TEST_F(ServerTest, QueryBufferLimitClosesTheClient) {
  StartKeg({"--client-query-buffer-limit", "1mb"});
  RawClient c(keg_->port());
  std::string partial = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3000000\r\n" + std::string(2000000, 'x');
  c.Send(partial);
  EXPECT_TRUE(c.Closed());
  RawClient d(keg_->port());
  EXPECT_EQ(d.Call({"PING"}), "+PONG\r\n");
}

TEST_F(ServerTest, WatchAbortsExecWhenAnotherClientWrites) {
  StartKeg();
  RawClient a(keg_->port());
  RawClient b(keg_->port());
  EXPECT_EQ(a.Call({"SET", "k", "1"}), "+OK\r\n");
  EXPECT_EQ(a.Call({"WATCH", "k"}), "+OK\r\n");
  EXPECT_EQ(b.Call({"SET", "k", "2"}), "+OK\r\n");
  EXPECT_EQ(a.Call({"MULTI"}), "+OK\r\n");
  EXPECT_EQ(a.Call({"SET", "k", "3"}), "+QUEUED\r\n");
  EXPECT_EQ(a.Call({"EXEC"}), "*-1\r\n");
  EXPECT_EQ(a.Call({"GET", "k"}), "$1\r\n2\r\n");
  // Without interference the transaction runs, and its reads see its own writes.
  EXPECT_EQ(a.Call({"WATCH", "k"}), "+OK\r\n");
  a.Send(RawClient::Encode({"MULTI"}) + RawClient::Encode({"INCR", "k"}) +
         RawClient::Encode({"GET", "k"}) + RawClient::Encode({"EXEC"}));
  EXPECT_EQ(a.Read(4), "+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n:3\r\n$1\r\n3\r\n");
}

// A command that writes two keys (SMOVE, LMOVE, RPOPLPUSH) or a key found at run time (LMPOP)
// dirties a WATCH of each key it wrote, as Redis's signalModifiedKey (SMOVE: of the destination
// only when the member was added there): found by review — the write was counted only for the
// key the batch names, so an EXEC watching the destination ran.
TEST_F(ServerTest, WatchSeesEveryKeyAMultiKeyCommandWrites) {
  StartKeg();
  RawClient a(keg_->port());
  RawClient b(keg_->port());
  const std::vector<std::pair<std::string, Cmd>> cases = {
      {"dst", {"SMOVE", "src", "dst", "m"}},
      {"ldst", {"LMOVE", "lsrc", "ldst", "LEFT", "RIGHT"}},
      {"ldst", {"RPOPLPUSH", "lsrc", "ldst"}},
      {"lsrc", {"LMPOP", "2", "nokey", "lsrc", "LEFT"}},
  };
  for (const auto& [watched, write] : cases) {
    EXPECT_EQ(a.Call({"SADD", "src", "m"}), ":1\r\n");
    EXPECT_EQ(a.Call({"RPUSH", "lsrc", "x", "y"}), ":2\r\n");
    EXPECT_EQ(a.Call({"WATCH", watched}), "+OK\r\n");
    EXPECT_EQ(b.Call(write).substr(0, 1) == "-", false) << write[0];
    EXPECT_EQ(a.Call({"MULTI"}), "+OK\r\n");
    EXPECT_EQ(a.Call({"SET", "side", "effect"}), "+QUEUED\r\n");
    EXPECT_EQ(a.Call({"EXEC"}), "*-1\r\n") << write[0] << " did not dirty a WATCH of " << watched;
    EXPECT_EQ(a.Call({"DEL", "src", "dst", "lsrc", "ldst", "side"}).substr(0, 1), ":");
  }
}

// Blocking pops (blocking.h): a client blocked on an empty list is served by a push from another
// connection, first come first served; a push serves blocked clients before the next command runs
// (the chained BRPOPLPUSHes are done when RPUSH replies); a timeout answers nil; a client that
// hangs up while blocked is forgotten, so the next push is not popped for nobody.
TEST_F(ServerTest, BlockedClientsAreServedInOrderAndForgottenWhenTheyHangUp) {
  StartKeg();
  RawClient a(keg_->port());
  RawClient b(keg_->port());
  RawClient c(keg_->port());
  RawClient admin(keg_->port());
  auto blocked = [&](int n) {
    for (int i = 0; i < 200; ++i) {
      if (admin.Call({"INFO", "clients"}).find("blocked_clients:" + std::to_string(n) + "\r\n") != std::string::npos) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };
  ASSERT_TRUE(a.Send(RawClient::Encode({"BLPOP", "q", "other", "0"})));
  ASSERT_TRUE(blocked(1));
  ASSERT_TRUE(b.Send(RawClient::Encode({"BRPOP", "q", "0"})));
  ASSERT_TRUE(blocked(2));
  EXPECT_EQ(admin.Call({"RPUSH", "q", "one", "two", "three"}), ":3\r\n");
  EXPECT_EQ(a.Read(1), "*2\r\n$1\r\nq\r\n$3\r\none\r\n");    // first come: the left end
  EXPECT_EQ(b.Read(1), "*2\r\n$1\r\nq\r\n$5\r\nthree\r\n");  // then the right end
  EXPECT_EQ(admin.Call({"LRANGE", "q", "0", "-1"}), "*1\r\n$3\r\ntwo\r\n");

  // Circular BRPOPLPUSH, as Redis's test: served within the push, seen by the next command.
  ASSERT_TRUE(a.Send(RawClient::Encode({"BRPOPLPUSH", "l1", "l2", "0"})));
  ASSERT_TRUE(blocked(1));
  ASSERT_TRUE(b.Send(RawClient::Encode({"BRPOPLPUSH", "l2", "l1", "0"})));
  ASSERT_TRUE(blocked(2));
  EXPECT_EQ(admin.Call({"RPUSH", "l1", "foo"}), ":1\r\n");
  EXPECT_EQ(admin.Call({"LRANGE", "l1", "0", "-1"}), "*1\r\n$3\r\nfoo\r\n");
  EXPECT_EQ(admin.Call({"EXISTS", "l2"}), ":0\r\n");
  EXPECT_EQ(a.Read(1), "$3\r\nfoo\r\n");
  EXPECT_EQ(b.Read(1), "$3\r\nfoo\r\n");

  // A timeout: a nil array, BLMOVE's and BRPOPLPUSH's too (Redis 7.0's replyToBlockedClientTimedOut;
  // keg answered them a nil bulk), and the connection goes on. Without waiting (inside MULTI) the
  // moves answer a nil bulk, as Redis's.
  EXPECT_EQ(c.Call({"BLPOP", "empty", "0.05"}), "*-1\r\n");
  EXPECT_EQ(c.Call({"BLMOVE", "empty", "x", "LEFT", "RIGHT", "0.05"}), "*-1\r\n");
  EXPECT_EQ(c.Call({"BRPOPLPUSH", "empty", "x", "0.05"}), "*-1\r\n");
  EXPECT_EQ(c.Call({"MULTI"}), "+OK\r\n");
  EXPECT_EQ(c.Call({"BLMOVE", "empty", "x", "LEFT", "RIGHT", "0"}), "+QUEUED\r\n");
  EXPECT_EQ(c.Call({"BRPOPLPUSH", "empty", "x", "0"}), "+QUEUED\r\n");
  EXPECT_EQ(c.Call({"BLPOP", "empty", "0"}), "+QUEUED\r\n");
  EXPECT_EQ(c.Call({"EXEC"}), "*3\r\n$-1\r\n$-1\r\n*-1\r\n");
  EXPECT_EQ(c.Call({"PING"}), "+PONG\r\n");
  // A timeout no deadline can hold is refused (Redis 7.0 overflows there), as are bad ones.
  EXPECT_EQ(c.Call({"BLPOP", "empty", "inf"}), "-ERR timeout is out of range\r\n");
  EXPECT_EQ(c.Call({"BLPOP", "empty", "1e300"}), "-ERR timeout is out of range\r\n");
  EXPECT_EQ(c.Call({"BLPOP", "empty", "nan"}), "-ERR timeout is not a float or out of range\r\n");
  EXPECT_EQ(c.Call({"BLMPOP", "0", "99", "a", "LEFT"}), "-ERR syntax error\r\n");

  // A hang-up while blocked: the element pushed afterwards stays in the list.
  {
    RawClient gone(keg_->port());
    ASSERT_TRUE(gone.Send(RawClient::Encode({"BLPOP", "kept", "0"})));
    ASSERT_TRUE(blocked(1));
  }
  ASSERT_TRUE(blocked(0));
  EXPECT_EQ(admin.Call({"RPUSH", "kept", "v"}), ":1\r\n");
  EXPECT_EQ(admin.Call({"LRANGE", "kept", "0", "-1"}), "*1\r\n$1\r\nv\r\n");
}

TEST_F(ServerTest, ScanVisitsEveryKeyAndKeysMatches) {
  StartKeg();
  RawClient c(keg_->port());
  std::string batch;
  for (int i = 0; i < 2000; ++i) batch += RawClient::Encode({"SET", "user:" + std::to_string(i), "x"});
  batch += RawClient::Encode({"SET", "other", "x"});
  c.Send(batch);
  c.Read(2001);
  std::set<std::string> seen;
  std::string cursor = "0";
  do {
    redisContext* ctx = redisConnect("127.0.0.1", keg_->port());
    auto* r = static_cast<redisReply*>(redisCommand(ctx, "SCAN %s MATCH user:* COUNT 100", cursor.c_str()));
    ASSERT_EQ(r->type, REDIS_REPLY_ARRAY);
    ASSERT_EQ(r->elements, 2u);
    cursor = r->element[0]->str;
    for (size_t i = 0; i < r->element[1]->elements; ++i) seen.insert(r->element[1]->element[i]->str);
    freeReplyObject(r);
    redisFree(ctx);
  } while (cursor != "0");
  EXPECT_EQ(seen.size(), 2000u);
  EXPECT_EQ(seen.count("other"), 0u);
  EXPECT_EQ(c.Call({"DBSIZE"}), ":2001\r\n");
  EXPECT_EQ(c.Call({"KEYS", "oth?r"}), "*1\r\n$5\r\nother\r\n");
}

TEST_F(ServerTest, CompactRepliesWhenDoneAndKeepsData) {
  // No automatic compaction: on a slow build one started by the writes' fragmentation made this
  // COMPACT the second.
  StartKeg({"--data-file-size", "1mb", "--auto-compaction", "no"});
  RawClient c(keg_->port());
  std::string batch;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 3000; ++i) {
      batch += RawClient::Encode({"SET", "k" + std::to_string(i), std::string(200, char('a' + round))});
    }
  }
  c.Send(batch);
  c.Read(9000, 30000);
  EXPECT_EQ(c.Call({"COMPACT"}), "+OK\r\n");
  const std::string info = c.Call({"INFO", "keg"});
  EXPECT_NE(info.find("compactions:1"), std::string::npos) << info;
  EXPECT_EQ(c.Call({"GET", "k2999"}), "$200\r\n" + std::string(200, 'c') + "\r\n");
  EXPECT_EQ(c.Call({"COMPACT", "ASYNC"}), "+Compaction started\r\n");
  EXPECT_EQ(c.Call({"DBSIZE"}), ":3000\r\n");
}

// Where keg differs from Redis on purpose (storage settings fixed at start; no command docs, so
// redis-cli uses its built-in help).
TEST_F(ServerTest, IntentionalDifferencesFromRedis) {
  StartKeg();
  RawClient c(keg_->port());
  EXPECT_EQ(c.Call({"CONFIG", "SET", "port", "1"}),
            "-ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config\r\n");
  EXPECT_EQ(c.Call({"CONFIG", "SET", "appendfsync", "always"}),
            "-ERR CONFIG SET failed (possibly related to argument 'appendfsync') - can't set immutable config\r\n");
  EXPECT_EQ(c.Call({"COMMAND", "DOCS"}).substr(0, 5), "-ERR ");
  EXPECT_EQ(c.Call({"CONFIG", "GET", "appendonly"}), "*2\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n");
}

// SRANDMEMBER / HRANDFIELD with a negative count repeat members: a count the client chose must not
// build an unbounded reply (before the limit, one such request ran the server out of memory and
// killed it). Past proto-max-bulk-len bytes it is refused; smaller ones are served.
TEST_F(ServerTest, RandomMembersWithAHugeNegativeCountAreRefused) {
  StartKeg();
  RawClient c(keg_->port());
  ASSERT_EQ(c.Call({"SADD", "s", "a"}), ":1\r\n");
  ASSERT_EQ(c.Call({"HSET", "h", "f", "v"}), ":1\r\n");
  EXPECT_EQ(c.Call({"SRANDMEMBER", "s", "-9223372036854775807"}), "-ERR value is out of range\r\n");
  EXPECT_EQ(c.Call({"HRANDFIELD", "h", "-9223372036854775807"}), "-ERR value is out of range\r\n");
  EXPECT_EQ(c.Call({"HRANDFIELD", "h", "-4611686018427387903", "WITHVALUES"}), "-ERR value is out of range\r\n");
  EXPECT_EQ(c.Call({"SRANDMEMBER", "s", "-3"}), "*3\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n");
  EXPECT_EQ(c.Call({"HRANDFIELD", "h", "-2", "WITHVALUES"}), "*4\r\n$1\r\nf\r\n$1\r\nv\r\n$1\r\nf\r\n$1\r\nv\r\n");
  EXPECT_EQ(c.Call({"PING"}), "+PONG\r\n");
}

// Replies that depend on time or identity: their shape, and what they do.
TEST_F(ServerTest, ServerCommandsWithTimeDependentReplies) {
  StartKeg();
  RawClient c(keg_->port());
  const std::string time = c.Call({"TIME"});
  EXPECT_EQ(time.substr(0, 5), "*2\r\n$");
  const std::string before = c.Call({"LASTSAVE"});
  EXPECT_EQ(before[0], ':');
  EXPECT_EQ(c.Call({"SET", "a", "1"}), "+OK\r\n");
  EXPECT_NE(c.Call({"INFO", "persistence"}).find("rdb_changes_since_last_save:1"), std::string::npos);
  EXPECT_EQ(c.Call({"SAVE"}), "+OK\r\n");
  EXPECT_NE(c.Call({"INFO", "persistence"}).find("rdb_changes_since_last_save:0"), std::string::npos);
  EXPECT_EQ(c.Call({"BGSAVE"}), "+Background saving started\r\n");
  EXPECT_EQ(c.Call({"BGREWRITEAOF"}), "+Background append only file rewriting started\r\n");
  EXPECT_EQ(c.Call({"SLOWLOG", "GET"}), "*0\r\n");
  EXPECT_EQ(c.Call({"LATENCY", "RESET"}), ":0\r\n");
  const std::string hello = c.Call({"HELLO"});
  EXPECT_EQ(hello.substr(0, 5), "*14\r\n");
  const std::string client_info = c.Call({"CLIENT", "INFO"});
  EXPECT_NE(client_info.find("cmd=client"), std::string::npos) << client_info;
  EXPECT_EQ(c.Call({"RANDOMKEY"}), "$1\r\na\r\n");
}

// A non-loopback IPv4 address of this machine, or "" when it has none.
std::string NonLoopbackAddress() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return "";
  std::string found;
  for (ifaddrs* i = list; i != nullptr && found.empty(); i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) continue;
    const auto* in = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
    if ((ntohl(in->sin_addr.s_addr) >> 24) == 127) continue;
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof(buf));
    found = buf;
  }
  freeifaddrs(list);
  return found;
}

TEST_F(ServerTest, ProtectedModeRefusesRemoteClientsWithoutPassword) {
  const std::string addr = NonLoopbackAddress();
  if (addr.empty()) GTEST_SKIP() << "no non-loopback IPv4 address on this machine";
  StartKeg({"--bind", "0.0.0.0"});
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(keg_->port()));
  inet_pton(AF_INET, addr.c_str(), &sa.sin_addr);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
  std::string got;
  char buf[4096];
  for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) got.append(buf, static_cast<size_t>(n));
  close(fd);
  EXPECT_EQ(got.substr(0, 49), "-DENIED Redis is running in protected mode becaus");
  EXPECT_EQ(got.substr(got.size() - 2), "\r\n");
  RawClient local(keg_->port());  // loopback clients are still served
  EXPECT_EQ(local.Call({"PING"}), "+PONG\r\n");
}

TEST_F(ServerTest, ClientCommands) {
  StartKeg();
  RawClient a(keg_->port());
  RawClient b(keg_->port());
  EXPECT_EQ(a.Call({"CLIENT", "SETNAME", "alpha"}), "+OK\r\n");
  EXPECT_EQ(a.Call({"CLIENT", "GETNAME"}), "$5\r\nalpha\r\n");
  EXPECT_EQ(a.Call({"CLIENT", "SETINFO", "LIB-NAME", "test"}), "+OK\r\n");
  const std::string id = a.Call({"CLIENT", "ID"});
  ASSERT_EQ(id[0], ':');
  const std::string list = b.Call({"CLIENT", "LIST"});
  EXPECT_NE(list.find("name=alpha"), std::string::npos) << list;
  EXPECT_NE(list.find("lib-name=test"), std::string::npos) << list;
  EXPECT_EQ(b.Call({"CLIENT", "KILL", "ID", id.substr(1, id.size() - 3)}), ":1\r\n");
  EXPECT_TRUE(a.Closed());
  EXPECT_EQ(b.Call({"PING"}), "+PONG\r\n");
}

// A connection idle for 2 s gives its 16 KiB read buffer back (CLIENT LIST qbuf-free=0), which
// cancels the receive it had pending into that buffer; it then reads on as before, pipelined and
// large commands included. (Redis frees an idle client's query buffer too.)
TEST_F(ServerTest, IdleConnectionGivesItsReadBufferBackAndReadsOn) {
  StartKeg();
  RawClient idle(keg_->port());
  RawClient other(keg_->port());
  EXPECT_EQ(idle.Call({"CLIENT", "SETNAME", "idle"}), "+OK\r\n");
  EXPECT_EQ(idle.Call({"SET", "k", "v"}), "+OK\r\n");
  auto field = [&](const std::string& name) {
    const std::string list = other.Call({"CLIENT", "LIST"});
    const size_t line = list.find("name=idle ");
    if (line == std::string::npos) return std::string("no client");
    const size_t at = list.find(" " + name + "=", line);
    const size_t end = list.find(' ', at + 1);
    return list.substr(at + name.size() + 2, end - at - name.size() - 2);
  };
  EXPECT_NE(field("qbuf-free"), "0");
  std::string freed;
  for (int i = 0; i < 60 && freed != "0"; ++i) {  // the once-a-second tick, after 2 s idle
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    freed = field("qbuf-free");
  }
  EXPECT_EQ(freed, "0");
  const std::string big(100000, 'b');
  std::string batch = RawClient::Encode({"GET", "k"}) + RawClient::Encode({"SET", "big", big}) +
                      RawClient::Encode({"STRLEN", "big"});
  ASSERT_TRUE(idle.Send(batch));
  EXPECT_EQ(idle.Read(3), "$1\r\nv\r\n+OK\r\n:100000\r\n");
  EXPECT_EQ(idle.Call({"PING"}), "+PONG\r\n");
}

TEST_F(ServerTest, CommandTableAndInfo) {
  StartKeg();
  RawClient c(keg_->port());
  const std::string count = c.Call({"COMMAND", "COUNT"});
  EXPECT_GT(std::stoi(count.substr(1)), 60);
  const std::string info = c.Call({"COMMAND", "INFO", "get", "compact"});
  EXPECT_EQ(info.substr(0, 22), "*2\r\n*10\r\n$3\r\nget\r\n:2\r\n");
  EXPECT_NE(info.find("$7\r\ncompact\r\n"), std::string::npos);
  EXPECT_EQ(c.Call({"GET", "missing"}), "$-1\r\n");
  EXPECT_EQ(c.Call({"SET", "a", "1"}), "+OK\r\n");
  EXPECT_EQ(c.Call({"GET", "a"}), "$1\r\n1\r\n");
  const std::string all = c.Call({"INFO"});
  EXPECT_NE(all.find("keyspace_hits:1\r\n"), std::string::npos) << all;
  EXPECT_NE(all.find("keyspace_misses:1\r\n"), std::string::npos) << all;
  for (const char* field : {"redis_version:7.0.15", "loading:0", "connected_clients:1",
                            "cluster_enabled:0", "role:master", "aof_rewrite_in_progress:0",
                            "# Keyspace", "# Keg", "keydir_bytes_per_key:"}) {
    EXPECT_NE(all.find(field), std::string::npos) << field;
  }
}

// Two I/O threads, clients on both: every INCR of a shared counter is applied exactly once, and
// CLIENT LIST / WATCH work across threads (the TSan build runs this too). SIGINT stops cleanly.
TEST_F(ServerTest, TwoIoThreadsServeConcurrentClients) {
  StartKeg({"--io-threads", "2"});
  constexpr int kClients = 6;
  constexpr int kIncrs = 2000;
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < kClients; ++t) {
    threads.emplace_back([&, t] {
      RawClient c(keg_->port());
      std::string batch;
      for (int i = 0; i < kIncrs; ++i) {
        batch += RawClient::Encode({"INCR", "counter"});
        batch += RawClient::Encode({"SET", "t" + std::to_string(t) + ":" + std::to_string(i), "v"});
      }
      c.Send(batch);
      const std::string replies = c.Read(2 * kIncrs, 30000);
      if (std::count(replies.begin(), replies.end(), '\n') != 2 * kIncrs) ++bad;
      if (c.Call({"CLIENT", "LIST"}).find("id=") == std::string::npos) ++bad;
      if (c.Call({"WATCH", "counter"}) != "+OK\r\n") ++bad;
      if (c.Call({"UNWATCH"}) != "+OK\r\n") ++bad;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  RawClient c(keg_->port());
  EXPECT_EQ(c.Call({"GET", "counter"}), "$5\r\n" + std::to_string(kClients * kIncrs) + "\r\n");
  EXPECT_EQ(c.Call({"DBSIZE"}), ":" + std::to_string(kClients * kIncrs + 1) + "\r\n");
  const int status = keg_->proc().Signal(SIGINT);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// Issue 15: a reader on another I/O thread never sees some of a batch's writes without the others
// (MSET, MULTI/EXEC): neither within one MGET or EXISTS nor across two commands read one after the
// other. DEBUG APPLY-PAUSE widens the writer's window between the keydir updates of one batch.
TEST_F(ServerTest, ReadersNeverSeePartOfABatch) {
  StartKeg({"--io-threads", "2", "--enable-debug-command", "yes"});
  constexpr int kKeys = 64;
  auto keys = [](const std::string& cmd, const std::string& value) {
    std::vector<std::string> v{cmd};
    for (int k = 0; k < kKeys; ++k) {
      v.push_back("k" + std::to_string(k));
      if (!value.empty()) v.push_back(value);
    }
    return v;
  };
  // The values of an MGET reply (all present: the keys are set before the readers start).
  auto values = [](const std::string& reply) {
    std::vector<long> out;
    std::istringstream in(reply);
    std::string line;
    std::getline(in, line);  // *64
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '$') continue;
      out.push_back(std::stol(line));
    }
    return out;
  };
  {
    RawClient c(keg_->port());
    ASSERT_EQ(c.Call(keys("MSET", "0")), "+OK\r\n");
    EXPECT_EQ(c.Call({"DEBUG", "APPLY-PAUSE", "-1"}), "-ERR value is not an integer or out of range\r\n");
    EXPECT_EQ(c.Call({"DEBUG", "APPLY-PAUSE", "1000001"}), "-ERR value is not an integer or out of range\r\n");
    ASSERT_EQ(c.Call({"DEBUG", "APPLY-PAUSE", "50"}), "+OK\r\n");
  }
  std::atomic<bool> stop{false};
  std::atomic<long> torn{0};
  std::atomic<long> reads{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {  // spread over both I/O threads with the writer
    readers.emplace_back([&] {
      RawClient c(keg_->port());
      while (!stop.load()) {
        const std::vector<long> v = values(c.Call(keys("MGET", "")));
        if (v.size() != kKeys || std::adjacent_find(v.begin(), v.end(), std::not_equal_to<>()) != v.end()) ++torn;
        // Two commands: the last key of a batch read after its first is never older.
        const std::string first = c.Call({"GET", "k0"});
        const std::string last = c.Call({"GET", "k" + std::to_string(kKeys - 1)});
        const long a = std::stol(first.substr(first.find("\r\n") + 2));
        const long b = std::stol(last.substr(last.find("\r\n") + 2));
        if (b < a) ++torn;
        // EXISTS of a key every batch deletes and recreates with the others: all or none.
        const std::string n = c.Call({"EXISTS", "gone", "back"});
        if (n != ":0\r\n" && n != ":2\r\n") ++torn;
        ++reads;
      }
    });
  }
  RawClient w(keg_->port());
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  for (long i = 1; std::chrono::steady_clock::now() < until; ++i) {
    if (i % 3 == 0) {
      ASSERT_EQ(w.Call(keys("MSET", std::to_string(i))), "+OK\r\n");
    } else if (i % 3 == 1) {
      ASSERT_EQ(w.Call({"MSET", "gone", "x", "back", "x"}), "+OK\r\n");
      w.Send(RawClient::Encode({"MULTI"}) + RawClient::Encode({"DEL", "gone"}) + RawClient::Encode({"DEL", "back"}) +
             RawClient::Encode({"EXEC"}));
      ASSERT_FALSE(w.Read(4, 5000).empty());
    } else {
      std::string tx = RawClient::Encode({"MULTI"});
      for (int k = 0; k < kKeys; ++k) tx += RawClient::Encode({"SET", "k" + std::to_string(k), std::to_string(i)});
      tx += RawClient::Encode({"EXEC"});
      w.Send(tx);
      ASSERT_FALSE(w.Read(kKeys + 3, 5000).empty());
    }
  }
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_GT(reads.load(), 100);
  EXPECT_EQ(torn.load(), 0) << "reads that saw part of a batch, of " << reads.load();
}

// A large sorted set changed by transactions that keep its size (ZREM one member, ZADD another;
// ZINCRBY): readers on both I/O threads always see it whole and in order — its ordered index and
// its elements change together, a group at a time (docs/types.md, "Sorted sets").
TEST_F(ServerTest, SortedSetReadersNeverSeePartOfAGroup) {
  StartKeg({"--io-threads", "2", "--enable-debug-command", "yes"});
  constexpr int kMembers = 300;  // past zset-max-listpack-entries: per member, ordered index
  {
    RawClient c(keg_->port());
    Cmd add = {"ZADD", "z"};
    for (int i = 0; i < kMembers; ++i) add.insert(add.end(), {std::to_string(i % 50), "m" + std::to_string(i)});
    ASSERT_EQ(c.Call(add), ":" + std::to_string(kMembers) + "\r\n");
    ASSERT_EQ(c.Call({"OBJECT", "ENCODING", "z"}), "$8\r\nskiplist\r\n");
    ASSERT_EQ(c.Call({"DEBUG", "APPLY-PAUSE", "20"}), "+OK\r\n");
  }
  std::atomic<bool> stop{false};
  std::atomic<long> torn{0};
  std::atomic<long> reads{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&] {
      RawClient c(keg_->port());
      while (!stop.load()) {
        if (c.Call({"ZCARD", "z"}) != ":" + std::to_string(kMembers) + "\r\n") ++torn;
        if (c.Call({"ZCOUNT", "z", "-inf", "+inf"}) != ":" + std::to_string(kMembers) + "\r\n") ++torn;
        // Every member once, scores never decreasing.
        const std::string all = c.Call({"ZRANGE", "z", "0", "-1", "WITHSCORES"});
        std::istringstream in(all);
        std::string line;
        std::getline(in, line);
        if (line != "*" + std::to_string(2 * kMembers) + "\r") ++torn;
        std::set<std::string> seen;
        double last = -1e300;
        while (std::getline(in, line)) {
          if (line.empty() || line[0] == '$') continue;
          line.pop_back();  // \r
          if (line[0] == 'm') {
            if (!seen.insert(line).second) ++torn;
          } else {
            const double score = std::stod(line);
            if (score < last) ++torn;
            last = score;
          }
        }
        if (seen.size() != static_cast<size_t>(kMembers)) ++torn;
        ++reads;
      }
    });
  }
  RawClient w(keg_->port());
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  std::mt19937 rng(5);
  for (long i = 0; std::chrono::steady_clock::now() < until; ++i) {
    const std::string gone = "m" + std::to_string(rng() % kMembers);
    if (i % 2 == 0) {  // a member goes and comes back with another score, in one transaction
      w.Send(RawClient::Encode({"MULTI"}) + RawClient::Encode({"ZREM", "z", gone}) +
             RawClient::Encode({"ZADD", "z", std::to_string(rng() % 60), gone}) + RawClient::Encode({"EXEC"}));
      ASSERT_FALSE(w.Read(4, 5000).empty());
    } else {
      ASSERT_NE(w.Call({"ZINCRBY", "z", "0.5", gone})[0], '-');
    }
  }
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_GT(reads.load(), 20);
  EXPECT_EQ(torn.load(), 0) << "reads that saw part of a group, of " << reads.load();
}

// ---- durability and lifecycle -------------------------------------------------------------------

TEST_F(ServerTest, DataSurvivesGracefulRestartAndShutdown) {
  StartKeg();
  {
    RawClient c(keg_->port());
    EXPECT_EQ(c.Call({"SET", "a", "1"}), "+OK\r\n");
    EXPECT_EQ(c.Call({"SET", "t", "v", "EX", "1000"}), "+OK\r\n");
  }
  const int status = keg_->proc().Signal(SIGTERM);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_NE(keg_->Log().find("ready to exit"), std::string::npos);
  ASSERT_TRUE(keg_->Start());
  {
    RawClient c(keg_->port());
    EXPECT_EQ(c.Call({"GET", "a"}), "$1\r\n1\r\n");
    const std::string ttl = c.Call({"TTL", "t"});
    EXPECT_TRUE(ttl == ":1000\r\n" || ttl == ":999\r\n") << ttl;
    EXPECT_EQ(c.Call({"SET", "b", "2"}), "+OK\r\n");
    c.Send(RawClient::Encode({"SHUTDOWN"}));
    EXPECT_TRUE(c.Closed(5000));
  }
  EXPECT_TRUE(keg_->proc().ExitsWithin(5000));
  EXPECT_TRUE(WIFEXITED(keg_->proc().exit_status()));
  EXPECT_EQ(WEXITSTATUS(keg_->proc().exit_status()), 0);
  ASSERT_TRUE(keg_->Start());
  RawClient c(keg_->port());
  EXPECT_EQ(c.Call({"MGET", "a", "b"}), "*2\r\n$1\r\n1\r\n$1\r\n2\r\n");
}

TEST_F(ServerTest, AcknowledgedWritesSurviveSigkillUnderAlways) {
  StartKeg({"--appendfsync", "always"});
  for (int cycle = 0; cycle < 3; ++cycle) {
    {
      RawClient c(keg_->port());
      std::string batch;
      for (int i = 0; i < 500; ++i) {
        batch += RawClient::Encode({"SET", "c" + std::to_string(cycle) + ":" + std::to_string(i), std::to_string(i)});
      }
      c.Send(batch);
      ASSERT_EQ(c.Read(500).size(), 500u * 5);  // every +OK arrived: all acknowledged
      EXPECT_EQ(c.Call({"INCR", "counter"}), ":" + std::to_string(cycle + 1) + "\r\n");
    }
    keg_->proc().Kill();
    ASSERT_TRUE(keg_->Start()) << keg_->Log();
    RawClient c(keg_->port());
    for (int past = 0; past <= cycle; ++past) {
      EXPECT_EQ(c.Call({"GET", "c" + std::to_string(past) + ":499"}), "$3\r\n499\r\n");
    }
    EXPECT_EQ(c.Call({"GET", "counter"}), "$1\r\n" + std::to_string(cycle + 1) + "\r\n");
    EXPECT_EQ(c.Call({"DBSIZE"}), ":" + std::to_string(500 * (cycle + 1) + 1) + "\r\n");
  }
}

// Every bulk string of a reply, in order (array headers skipped): HGETALL's fields and values,
// HSCAN's cursor then its entries.
std::vector<std::string> Elements(const std::string& r) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < r.size()) {
    const size_t eol = r.find("\r\n", pos);
    if (eol == std::string::npos) break;
    if (r[pos] == '$') {
      const size_t len = std::stoul(r.substr(pos + 1, eol - pos - 1));
      out.push_back(r.substr(eol + 2, len));
      pos = eol + 2 + len + 2;
    } else {
      pos = eol + 2;
    }
  }
  return out;
}

// A field of INFO's reply, or "".
std::string InfoField(RawClient& c, const std::string& field) {
  const std::string info = c.Call({"INFO", "keg"});
  const size_t at = info.find("\n" + field + ":");
  if (at == std::string::npos) return "";
  const size_t from = at + field.size() + 2;
  return info.substr(from, info.find('\r', from) - from);
}

// A sorted set past the thresholds (per member, with the ordered index) answers through MULTI,
// scripts, RENAME, EXPIRE, COPY, a SIGKILL and a compaction as a small one would.
TEST_F(ServerTest, LargeSortedSetsAnswerThroughEverything) {
  StartKeg({"--appendfsync", "always"});
  RawClient c(keg_->port());
  std::string batch;
  for (int i = 0; i < 2000; ++i) {
    batch += RawClient::Encode({"ZADD", "z", std::to_string(i % 100), "m" + std::to_string(i)});
  }
  c.Send(batch);
  ASSERT_EQ(c.Read(2000).size(), 2000u * 4);  // ":1\r\n" each
  EXPECT_EQ(c.Call({"OBJECT", "ENCODING", "z"}), "$8\r\nskiplist\r\n");
  EXPECT_EQ(c.Call({"ZCARD", "z"}), ":2000\r\n");
  // Score 0: m0, m100, m1000, m1100, ... in member order.
  EXPECT_EQ(c.Call({"ZRANGE", "z", "0", "2"}), "*3\r\n$2\r\nm0\r\n$4\r\nm100\r\n$5\r\nm1000\r\n");
  EXPECT_EQ(c.Call({"ZRANK", "z", "m1"}), ":20\r\n");
  EXPECT_EQ(c.Call({"ZCOUNT", "z", "(98", "+inf"}), ":20\r\n");
  // MULTI: each read sees the state at its place, OBJECT ENCODING included.
  EXPECT_EQ(c.Call({"MULTI"}), "+OK\r\n");
  c.Call({"ZADD", "z", "-1", "first"});
  c.Call({"ZRANGE", "z", "0", "0", "WITHSCORES"});
  c.Call({"ZPOPMIN", "z"});
  c.Call({"ZRANK", "z", "m0"});
  c.Call({"OBJECT", "ENCODING", "z"});
  EXPECT_EQ(c.Call({"EXEC"}), "*5\r\n:1\r\n*2\r\n$5\r\nfirst\r\n$2\r\n-1\r\n*2\r\n$5\r\nfirst\r\n$2\r\n-1\r\n"
                              ":0\r\n$8\r\nskiplist\r\n");
  // A script sees its own writes in order.
  EXPECT_EQ(c.Call({"EVAL", "redis.call('ZADD', KEYS[1], 1000, 'top'); redis.call('ZREM', KEYS[1], 'm0'); "
                            "return {redis.call('ZREVRANGE', KEYS[1], 0, 0), redis.call('ZRANK', KEYS[1], 'm100')}",
                    "1", "z"}),
            "*2\r\n*1\r\n$3\r\ntop\r\n:0\r\n");
  // ZSCAN walks the element index's cursor: a member present for the whole scan comes exactly
  // once, with its score, even while writes move every rank (a cursor of ranks repeated some).
  {
    std::map<std::string, int> times;
    std::map<std::string, std::string> score;
    std::string cursor = "0";
    int calls = 0;
    int low = 0;
    do {
      const std::vector<std::string> r = Elements(c.Call({"ZSCAN", "z", cursor, "COUNT", "50"}));
      ASSERT_GE(r.size(), 1u);
      cursor = r[0];
      for (size_t i = 1; i + 1 < r.size(); i += 2) {
        ++times[r[i]];
        score[r[i]] = r[i + 1];
      }
      for (int k = 0; k < 20; ++k) c.Call({"ZADD", "z", "-5", "low" + std::to_string(low++)});
    } while (cursor != "0" && ++calls < 10000);
    EXPECT_GT(calls, 10);
    for (int i = 1; i < 2000; ++i) ASSERT_EQ(times["m" + std::to_string(i)], 1) << i;
    EXPECT_EQ(times["top"], 1);
    EXPECT_EQ(score["top"], "1000");
    EXPECT_EQ(score["m1234"], "34");
    std::vector<std::string> lows;
    for (int k = 0; k < low; ++k) lows.push_back("low" + std::to_string(k));
    std::vector<std::string> zrem = {"ZREM", "z"};
    zrem.insert(zrem.end(), lows.begin(), lows.end());
    EXPECT_EQ(c.Call(zrem), ":" + std::to_string(low) + "\r\n");
    const std::vector<std::string> m = Elements(c.Call({"ZSCAN", "z", "0", "MATCH", "m123?", "COUNT", "5000"}));
    EXPECT_EQ(m.size(), 1u + 2 * 10);  // the cursor, m1230..m1239 with scores
  }
  EXPECT_EQ(c.Call({"RENAME", "z", "z2"}), "+OK\r\n");
  EXPECT_EQ(c.Call({"EXPIRE", "z2", "1000"}), ":1\r\n");
  EXPECT_EQ(c.Call({"COPY", "z2", "zc"}), ":1\r\n");
  EXPECT_EQ(c.Call({"ZINCRBY", "zc", "5", "m1"}), "$1\r\n6\r\n");
  EXPECT_EQ(c.Call({"ZSCORE", "z2", "m1"}), "$1\r\n1\r\n");
  const std::string digest = c.Call({"DEBUG", "DIGEST-VALUE", "z2", "zc"});
  const std::string range = c.Call({"ZRANGE", "z2", "0", "-1", "WITHSCORES"});
  keg_->proc().Kill();
  ASSERT_TRUE(keg_->Start()) << keg_->Log();
  RawClient d(keg_->port());
  EXPECT_EQ(d.Call({"DEBUG", "DIGEST-VALUE", "z2", "zc"}), digest);
  EXPECT_EQ(d.Call({"ZRANGE", "z2", "0", "-1", "WITHSCORES"}), range);
  EXPECT_EQ(d.Call({"OBJECT", "ENCODING", "z2"}), "$8\r\nskiplist\r\n");
  EXPECT_EQ(d.Call({"COMPACT"}), "+OK\r\n");
  EXPECT_EQ(d.Call({"ZRANGE", "z2", "0", "-1", "WITHSCORES"}), range);
  EXPECT_EQ(d.Call({"ZRANK", "zc", "m1"}), d.Call({"ZCOUNT", "zc", "-inf", "(6"}));
  EXPECT_EQ(d.Call({"DEL", "z2"}), ":1\r\n");
  EXPECT_EQ(d.Call({"ZCARD", "z2"}), ":0\r\n");
}

// Hashes and sets past the thresholds are stored per element (docs/types.md): every command
// answers as for a small one, through MULTI, scripts, RENAME, EXPIRE, COPY and a SIGKILL.
TEST_F(ServerTest, LargeCollectionsAnswerAsSmallOnesThroughEverything) {
  StartKeg({"--appendfsync", "always"});
  RawClient c(keg_->port());
  std::string batch;
  for (int i = 0; i < 2000; ++i) batch += RawClient::Encode({"HSET", "big", "f" + std::to_string(i), "v" + std::to_string(i)});
  for (int i = 0; i < 1000; ++i) batch += RawClient::Encode({"SADD", "s1", "m" + std::to_string(i)});
  for (int i = 500; i < 1500; ++i) batch += RawClient::Encode({"SADD", "s2", "m" + std::to_string(i)});
  c.Send(batch);
  ASSERT_EQ(c.Read(4000).size(), 4000u * 4);  // ":1\r\n" each
  EXPECT_EQ(InfoField(c, "large_collections"), "3");
  EXPECT_EQ(InfoField(c, "large_collection_elements"), "4000");
  EXPECT_EQ(c.Call({"OBJECT", "ENCODING", "big"}), "$9\r\nhashtable\r\n");
  EXPECT_EQ(c.Call({"HLEN", "big"}), ":2000\r\n");
  EXPECT_EQ(c.Call({"HGET", "big", "f1234"}), "$5\r\nv1234\r\n");
  EXPECT_EQ(c.Call({"HGET", "big", "nope"}), "$-1\r\n");
  EXPECT_EQ(c.Call({"HSET", "big", "f1", "new", "extra", "x"}), ":1\r\n");
  EXPECT_EQ(c.Call({"HDEL", "big", "f2", "f3", "nope"}), ":2\r\n");
  EXPECT_EQ(c.Call({"HINCRBY", "big", "n", "5"}), ":5\r\n");
  EXPECT_EQ(c.Call({"HLEN", "big"}), ":2000\r\n");
  EXPECT_EQ(c.Call({"GET", "big"}), "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
  // HSCAN: a real cursor, every field at least once.
  std::set<std::string> seen;
  std::string cursor = "0";
  int calls = 0;
  do {
    const std::vector<std::string> r = Elements(c.Call({"HSCAN", "big", cursor, "COUNT", "50"}));
    ASSERT_GE(r.size(), 1u);
    cursor = r[0];
    for (size_t i = 1; i + 1 < r.size(); i += 2) seen.insert(r[i]);
    ++calls;
  } while (cursor != "0" && calls < 10000);
  EXPECT_GT(calls, 10);
  EXPECT_EQ(seen.size(), 2000u);
  EXPECT_EQ(Elements(c.Call({"HGETALL", "big"})).size(), 4000u);
  // MULTI: each read sees the state at its place.
  EXPECT_EQ(c.Call({"MULTI"}), "+OK\r\n");
  c.Call({"HGET", "big", "later"});
  c.Call({"HSET", "big", "later", "1"});
  c.Call({"HGET", "big", "later"});
  c.Call({"HLEN", "big"});
  c.Call({"HDEL", "big", "later"});
  EXPECT_EQ(c.Call({"EXEC"}), "*5\r\n$-1\r\n:1\r\n$1\r\n1\r\n:2001\r\n:1\r\n");
  // A script sees its own writes.
  EXPECT_EQ(c.Call({"EVAL", "redis.call('HSET', KEYS[1], 'lua', 'x'); return {redis.call('HGET', KEYS[1], 'lua'), "
                            "redis.call('HLEN', KEYS[1]), redis.call('SISMEMBER', KEYS[2], 'm999')}",
                    "2", "big", "s1"}),
            "*3\r\n$1\r\nx\r\n:2001\r\n:1\r\n");
  // Set algebra and moves.
  EXPECT_EQ(c.Call({"SINTERSTORE", "both", "s1", "s2"}), ":500\r\n");
  EXPECT_EQ(c.Call({"SCARD", "both"}), ":500\r\n");
  EXPECT_EQ(c.Call({"SINTERCARD", "2", "s1", "s2"}), ":500\r\n");
  EXPECT_EQ(c.Call({"SMOVE", "s1", "s2", "m0"}), ":1\r\n");
  EXPECT_EQ(c.Call({"SISMEMBER", "s2", "m0"}), ":1\r\n");
  EXPECT_EQ(Elements(c.Call({"SPOP", "s1", "10"})).size(), 10u);
  EXPECT_EQ(c.Call({"SCARD", "s1"}), ":989\r\n");
  // RENAME and EXPIRE move or rewrite the head alone; COPY copies every element.
  EXPECT_EQ(c.Call({"RENAME", "big", "big2"}), "+OK\r\n");
  EXPECT_EQ(c.Call({"EXPIRE", "big2", "1000"}), ":1\r\n");
  EXPECT_EQ(c.Call({"COPY", "big2", "copy"}), ":1\r\n");
  EXPECT_EQ(c.Call({"HSET", "copy", "f5", "changed"}), ":0\r\n");
  EXPECT_EQ(c.Call({"HGET", "big2", "f5"}), "$2\r\nv5\r\n");
  const std::string digest = c.Call({"DEBUG", "DIGEST-VALUE", "big2"});
  keg_->proc().Kill();
  ASSERT_TRUE(keg_->Start()) << keg_->Log();
  RawClient d(keg_->port());
  EXPECT_EQ(d.Call({"HLEN", "big2"}), ":2001\r\n");
  EXPECT_EQ(d.Call({"HGET", "big2", "f1"}), "$3\r\nnew\r\n");
  EXPECT_EQ(d.Call({"HGET", "copy", "f5"}), "$7\r\nchanged\r\n");
  EXPECT_EQ(d.Call({"DEBUG", "DIGEST-VALUE", "big2"}), digest);
  const std::string ttl = d.Call({"TTL", "big2"});
  EXPECT_TRUE(ttl == ":1000\r\n" || ttl == ":999\r\n" || ttl == ":998\r\n") << ttl;
  EXPECT_EQ(d.Call({"EXISTS", "big"}), ":0\r\n");
  EXPECT_EQ(d.Call({"SCARD", "s2"}), ":1001\r\n");
  EXPECT_EQ(InfoField(d, "large_collections"), "5");
  // MEMORY USAGE counts the elements' records (sampled), not the head alone.
  const std::string usage = d.Call({"MEMORY", "USAGE", "big2"});
  ASSERT_EQ(usage[0], ':') << usage;
  EXPECT_GT(std::stoll(usage.substr(1)), 2001 * 48) << usage;
  // DEL drops a collection at once; UNLINK too.
  EXPECT_EQ(d.Call({"DEL", "big2", "copy"}), ":2\r\n");
  EXPECT_EQ(d.Call({"UNLINK", "s1"}), ":1\r\n");
  EXPECT_EQ(InfoField(d, "large_collections"), "2");
  EXPECT_EQ(d.Call({"HLEN", "big2"}), ":0\r\n");
}

// Thresholds are hostile numbers too: entries x value must not wrap (2^62 x 64 x 2 is 2^70, which
// wrapped to 0 bytes and stored every hash per element).
TEST_F(ServerTest, HugeCollectionThresholdsDoNotOverflow) {
  StartKeg();
  RawClient c(keg_->port());
  EXPECT_EQ(c.Call({"CONFIG", "SET", "hash-max-listpack-entries", "4611686018427387904"}), "+OK\r\n");
  EXPECT_EQ(c.Call({"HSET", "h", "a", "0123456789", "b", "0123456789", "c", "0123456789"}), ":3\r\n");
  EXPECT_EQ(InfoField(c, "large_collections"), "0");
  EXPECT_EQ(c.Call({"OBJECT", "ENCODING", "h"}), "$8\r\nlistpack\r\n");
  EXPECT_EQ(c.Call({"CONFIG", "SET", "hash-max-listpack-entries", "2"}), "+OK\r\n");
  EXPECT_EQ(c.Call({"HSET", "h", "d", "4"}), ":1\r\n");
  EXPECT_EQ(InfoField(c, "large_collections"), "1");
  EXPECT_EQ(c.Call({"HLEN", "h"}), ":4\r\n");
}

TEST_F(ServerTest, SecondServerOnTheSameDirectoryExits) {
  StartKeg();
  ServerProcess second;
  const int port = FreePort();
  EXPECT_FALSE(second.Start({KEG_SERVER_PATH, "--port", std::to_string(port), "--dir",
                             (keg_->dir() / "data").string(), "--logfile", "/dev/null"}, port));
  EXPECT_TRUE(WIFEXITED(second.exit_status()));
  EXPECT_EQ(WEXITSTATUS(second.exit_status()), 1);
}

TEST(ServerConfig, BadDirectivesStopStartupNamingThem) {
  const fs::path dir = TempDir("conf");
  {
    std::ofstream conf(dir / "bad.conf");
    conf << "# comment\nport 7000\nnosuch-directive 1\n";
  }
  const std::string cmd = std::string(KEG_SERVER_PATH) + " " + (dir / "bad.conf").string() + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  std::string out;
  while (size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  EXPECT_NE(WEXITSTATUS(pclose(p)), 0);
  EXPECT_NE(out.find("at line 3"), std::string::npos) << out;
  EXPECT_NE(out.find("nosuch-directive"), std::string::npos) << out;
  const std::string cmd2 = std::string(KEG_SERVER_PATH) + " --appendfsync sometimes 2>&1";
  p = popen(cmd2.c_str(), "r");
  out.clear();
  while (size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  EXPECT_NE(WEXITSTATUS(pclose(p)), 0);
  EXPECT_NE(out.find("appendfsync"), std::string::npos) << out;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace keg::testing
