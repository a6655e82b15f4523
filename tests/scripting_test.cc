// Scripts and functions end to end (issue 15): a real keg-server, compared byte for byte with a
// real redis-server 7.0 where the reply is deterministic, and what only keg can show — atomicity
// against concurrent readers, all-or-nothing after SIGKILL, busy scripts, functions that outlive
// crashes and compaction, no fsync for a script that writes nothing.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "server/rdb.h"
#include "support/keg_process.h"

namespace keg::testing {
namespace {

using Cmd = std::vector<std::string>;

// A field of INFO's text ("" when absent).
std::string InfoField(RawClient& c, const std::string& section, const std::string& field) {
  const std::string info = c.Call({"INFO", section});
  const size_t at = info.find("\r\n" + field + ":");
  if (at == std::string::npos) return "";
  const size_t from = at + 3 + field.size();
  return info.substr(from, info.find("\r\n", from) - from);
}

// ---- The same scripts to keg and to redis-server: identical bytes ------------------------------

// Each case runs on a fresh connection after FLUSHALL and SCRIPT FLUSH; every reply is compared.
const std::vector<std::vector<Cmd>>& Cases() {
  static const std::vector<std::vector<Cmd>> cases = {
      // Lua -> RESP: integers (truncated), strings, tables up to the first nil, booleans, nil.
      {{"EVAL", "return 3.99", "0"}, {"EVAL", "return -3.99", "0"}, {"EVAL", "return 'x'", "0"},
       {"EVAL", "return {1, 2, 3, 'x', nil, 4}", "0"}, {"EVAL", "return true", "0"}, {"EVAL", "return false", "0"},
       {"EVAL", "return nil", "0"}, {"EVAL", "return {1, {2, {3, 'four'}}, true, false}", "0"},
       {"EVAL", "return {ok = 'FINE'}", "0"}, {"EVAL", "return {err = 'MYCODE my message'}", "0"},
       {"EVAL", "return redis.error_reply('MY err')", "0"}, {"EVAL", "return redis.status_reply('DONE')", "0"},
       {"EVAL", "return {double = 3.5}", "0"}, {"EVAL", "return {big_number = '123456789012345678901234567890'}", "0"},
       {"EVAL", "return {map = {a = 1}}", "0"}, {"EVAL", "return {set = {a = true}}", "0"},
       {"EVAL", "return {verbatim_string = {format = 'txt', string = 'v'}}", "0"},
       {"EVAL", "return {verbatim_string = {format = 'txt'}}", "0"},
       {"EVAL", "return {verbatim_string = {string = 'v'}}", "0"}, {"EVAL", "return 2^63", "0"}, {"EVAL", "return -(2^63)", "0"}, {"EVAL", "return 0/0", "0"}},
      // RESP -> Lua and read-your-writes: redis.call returns real results, the script's own writes.
      {{"EVAL",
        "redis.call('set', KEYS[1], '1'); local a = redis.call('incr', KEYS[1]); "
        "local b = redis.call('incrby', KEYS[1], 5); return {a, b, redis.call('get', KEYS[1])}",
        "1", "counter"},
       {"EVAL", "return redis.call('get', 'nokey')", "0"}, {"EVAL", "return type(redis.call('get', 'nokey'))", "0"},
       {"EVAL", "return redis.call('set', 'k', 'v')", "0"}, {"EVAL", "return redis.call('ping')", "0"},
       {"EVAL", "return type(redis.call('ping'))", "0"}, {"EVAL", "return redis.call('mget', 'k', 'nokey', 'counter')", "0"},
       {"EVAL", "return redis.call('exists', 'k', 'counter')", "0"}, {"EVAL", "return redis.call('del', 'k')", "0"},
       {"GET", "counter"}, {"EXISTS", "k"}},
      // Errors: Redis's texts, with the script's name and line.
      {{"EVAL", "return nosuch", "0"}, {"EVAL", "x = 1", "0"}, {"EVAL", "return redis.call('nosuch')", "0"},
       {"EVAL", "return redis.call('get')", "0"}, {"EVAL", "redis.call('set', 'a', 'b'); return redis.call('incr', 'a')", "0"},
       {"EVAL", "return redis.pcall('incr', 'a')", "0"}, {"EVAL", "return redis.call()", "0"},
       {"EVAL", "return redis.call('get', {})", "0"}, {"EVAL", "error('boom')", "0"},
       {"EVAL", "error({err = 'X boom'})", "0"}, {"EVAL", "return 'a' .. nil", "0"},
       {"EVAL", "return pcall(function() redis.call('incr', 'a') end)", "0"},
       {"EVAL", "return redis.call('multi')", "0"}, {"EVAL", "return redis.call('eval', 'return 1', '0')", "0"},
       {"EVAL", "print('x')", "0"}, {"EVAL", "return loadfile", "0"}, {"EVAL", "setmetatable(_G, {})", "0"},
       {"EVAL", "cjson.encode = nil", "0"}, {"EVAL", "rawset(_G, 'x', 1)", "0"},
       {"EVAL", "local g = getmetatable(_G); g.__index = {}", "0"}, {"EVAL", "return 1", "-1"},
       {"EVAL", "return 1", "3", "a"}, {"EVAL", "return 1", "x"}, {"EVAL", "syntax error here", "0"},
       {"EVALSHA", "1234567890123456789012345678901234567890", "0"}, {"EVALSHA", "short", "0"},
       {"EVAL", "return {unpack({1, 2, 3}, -2, 2147483647)}", "0"}, {"EVAL", "return bit.tohex(65535, -2147483648)", "0"},
       {"EVAL", "return loadstring(string.dump(function() return 1 end))", "0"}},
      // Read-only scripts and shebang flags.
      {{"EVAL_RO", "return redis.call('set', 'q', '1')", "0"}, {"EVAL_RO", "return redis.call('get', 'q')", "0"},
       {"EVAL", "#!lua flags=no-writes\nreturn redis.call('set', 'q', '1')", "0"},
       {"EVAL_RO", "#!lua\nreturn 1", "0"}, {"EVAL", "#!lua flags=bad\nreturn 1", "0"},
       {"EVAL", "#!perl\nreturn 1", "0"}, {"EVAL", "#!lua name=x\nreturn 1", "0"}, {"GET", "q"}},
      // The cache and SHA1s.
      {{"SCRIPT", "LOAD", "return 'cached'"}, {"EVALSHA", "952f49ffc8f7b098d8ab5da45d3164ca36ed18b1", "0"},
       {"SCRIPT", "EXISTS", "952f49ffc8f7b098d8ab5da45d3164ca36ed18b1", "ffffffffffffffffffffffffffffffffffffffff"},
       {"EVAL", "return redis.sha1hex('')", "0"}, {"SCRIPT", "FLUSH"}, {"SCRIPT", "FLUSH", "BAD"},
       {"SCRIPT", "KILL"}, {"EVAL", "return KEYS", "2", "k1", "k2", "a1"}, {"EVAL", "return ARGV", "1", "k1", "a1", "a2"}},
      // Libraries: cjson, bit, cmsgpack, math.random (Redis's generator, seeded as Redis seeds it).
      {{"EVAL", "return cjson.encode({1, 2, 'x'})", "0"}, {"EVAL", "return cjson.decode('[1,2,{\"a\":3}]')[3].a", "0"},
       {"EVAL", "return bit.band(7, 3) + bit.bor(8, 1) + bit.bxor(5, 1)", "0"},
       {"EVAL",
        "local e = cmsgpack.pack({1, 2, {a = 1}}, 'x', 0.1, -5, 300, true, nil, 2^40, -2^40, string.rep('y', 40)) "
        "local h = '' for i = 1, #e do h = h .. string.format('%02x', string.byte(e, i)) end return h",
        "0"},
       {"EVAL", "return cmsgpack.unpack(cmsgpack.pack({1, 2, 3}, 'a'))", "0"},
       {"EVAL", "return {cmsgpack.unpack_one(cmsgpack.pack(1, 2), 0)}", "0"},
       {"EVAL", "return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 2, 0)}", "0"},
       {"EVAL", "return cmsgpack.unpack(string.char(0xdd, 0xff, 0xff, 0xff, 0xff))", "0"},
       {"EVAL", "return cmsgpack.unpack(string.char(0xc1))", "0"},
       {"EVAL", "math.randomseed(42); return {math.random(100), math.random(1, 6)}", "0"},
       {"EVAL", "math.randomseed(7); return math.random(-2147483648, 2147483647)", "0"},
       {"EVAL", "return {bit.tohex(1e300), bit.tohex(0/0), bit.tohex(-1, 1e300), bit.tohex(2^40 + 5, 4)}", "0"},
       {"EVAL", "return {struct.pack('>i2<hBxc3s', 258, -2, 255, 'abc', 'zt')}", "0"},
       {"EVAL", "return {struct.unpack('>i2<hBxc3s', struct.pack('>i2<hBxc3s', 258, -2, 255, 'abc', 'zt'))}", "0"},
       {"EVAL", "return {struct.unpack('!4 b i d', struct.pack('!4 b i d', -1, 7, 2.5))}", "0"},
       {"EVAL", "return {struct.size('!4 b i d'), struct.size('>I3hc5')}", "0"},
       {"EVAL", "return {struct.unpack('Bc0', struct.pack('Bc0', 3, 'xyz'))}", "0"},
       {"EVAL", "return struct.size('s')", "0"}, {"EVAL", "return struct.pack('i33', 1)", "0"},
       {"EVAL", "return struct.pack('i99999999999', 1)", "0"}, {"EVAL", "return struct.unpack('i4', 'ab')", "0"},
       {"EVAL", "return struct.unpack('c0', 'ab')", "0"}, {"EVAL", "return struct.pack('!3 i', 1)", "0"},
       {"EVAL", "return struct.unpack('s', 'abc')", "0"}, {"EVAL", "return struct.unpack('i4', 'abcd', 9)", "0"},
       {"EVAL", "return redis.REDIS_VERSION", "0"}, {"EVAL", "return redis.setresp(4)", "0"}},
      // RESP3 from scripts (redis.setresp(3)) and for RESP3 clients.
      {{"HELLO", "3"}, {"EVAL", "return true", "0"}, {"EVAL", "return {map = {a = 1}}", "0"},
       {"EVAL", "return {set = {a = true}}", "0"}, {"EVAL", "return {double = 1.5}", "0"},
       {"EVAL", "return {big_number = '1234567890123456789012345'}", "0"}, {"EVAL", "return nil", "0"},
       {"EVAL", "redis.setresp(3); return redis.call('debug', 'protocol', 'map')", "0"},
       {"EVAL", "redis.setresp(3); return redis.call('debug', 'protocol', 'double')", "0"},
       {"EVAL", "redis.setresp(3); return redis.call('debug', 'protocol', 'verbatim')", "0"},
       {"EVAL", "return {verbatim_string = {format = 'txt', string = 'v'}}", "0"},
       {"EVAL", "redis.setresp(3); local t = redis.call('debug', 'protocol', 'true'); return tostring(t)", "0"},
       {"EVAL", "redis.setresp(3); return type(redis.call('get', 'nokey'))", "0"}},
      // Functions.
      {{"FUNCTION", "LOAD",
        "#!lua name=mylib\nredis.register_function('myfunc', function(keys, args) return redis.call('incr', keys[1]) end)\n"
        "redis.register_function{function_name='ro', callback=function(keys, args) return args[1] end, "
        "flags={'no-writes'}, description='echo'}"},
       {"FCALL", "myfunc", "1", "k"}, {"FCALL", "MYFUNC", "1", "k"}, {"FCALL_RO", "ro", "0", "hi"},
       {"FCALL_RO", "myfunc", "1", "k"}, {"FCALL", "nosuch", "0"}, {"FCALL", "myfunc", "x"},
       {"FUNCTION", "LOAD", "#!lua name=mylib\nredis.register_function('f2', function() return 1 end)"},
       {"FUNCTION", "LOAD", "#!lua name=other\nredis.register_function('myfunc', function() return 1 end)"},
       {"FUNCTION", "LOAD", "#!lua name=bad\nreturn 1"}, {"FUNCTION", "LOAD", "no metadata"},
       {"FUNCTION", "LOAD", "#!lua name=b2\nredis.call('ping')"}, {"FUNCTION", "LOAD", "#!lua name=b3\nx ="},
       {"FUNCTION", "LOAD", "#!lua name=b4\nredis.register_function('f\\0', function() end)"},
       {"FUNCTION", "DELETE", "nosuch"}, {"FUNCTION", "DELETE", "mylib"}, {"FCALL", "myfunc", "1", "k"},
       {"FUNCTION", "STATS"}, {"FUNCTION", "KILL"}, {"FUNCTION", "FLUSH"}},
      // FUNCTION LIST of one-function libraries (Redis lists a library's functions in hash order).
      {{"FUNCTION", "LOAD",
        "#!lua name=lib1\nredis.register_function{function_name='f1', callback=function() return 1 end, "
        "flags={'no-writes', 'allow-stale'}, description='one'}"},
       {"FUNCTION", "LIST"}, {"FUNCTION", "LIST", "WITHCODE", "LIBRARYNAME", "lib*"},
       {"FUNCTION", "LIST", "LIBRARYNAME", "x*"}, {"FUNCTION", "LIST", "BAD"}, {"FUNCTION", "LIST", "LIBRARYNAME"},
       {"FUNCTION", "RESTORE", "garbage"}, {"FUNCTION", "RESTORE", "garbage", "BADPOLICY"}},
  };
  return cases;
}

TEST(ScriptsVsRedis, SameScriptsGiveTheSameBytes) {
  Keg keg({"--enable-debug-command", "yes"});
  ASSERT_TRUE(keg.Start()) << keg.Log();
  Redis redis;
  ASSERT_TRUE(redis.ok());
  for (const auto& c : Cases()) {
    RawClient k(keg.port());
    RawClient r(redis.port());
    for (RawClient* x : {&k, &r}) {
      x->Call({"FLUSHALL"});
      x->Call({"SCRIPT", "FLUSH"});
      x->Call({"FUNCTION", "FLUSH"});
    }
    for (const Cmd& cmd : c) {
      if (cmd[0] == "HELLO") {  // its reply names the connection's id, which differs
        ASSERT_EQ(k.Call(cmd)[0], '%');
        ASSERT_EQ(r.Call(cmd)[0], '%');
        continue;
      }
      std::string where = cmd[0];
      for (size_t i = 1; i < cmd.size(); ++i) where += " " + cmd[i];
      EXPECT_EQ(k.Call(cmd), r.Call(cmd)) << where;
    }
  }
}

// ---- keg on its own ---------------------------------------------------------------------------

class ScriptingTest : public ::testing::Test {
 protected:
  void StartKeg(std::vector<std::string> extra = {}) {
    keg_ = std::make_unique<Keg>(std::move(extra));
    ASSERT_TRUE(keg_->Start()) << keg_->Log();
  }
  std::unique_ptr<Keg> keg_;
};

// A script's writes are one group: a reader on another I/O thread sees all of them or none, with
// the keydir updates slowed down (DEBUG APPLY-PAUSE) to widen any window.
TEST_F(ScriptingTest, ReadersNeverSeePartOfAScript) {
  StartKeg({"--io-threads", "2", "--enable-debug-command", "yes"});
  constexpr int kKeys = 32;
  Cmd mget{"MGET"};
  for (int k = 0; k < kKeys; ++k) mget.push_back("k" + std::to_string(k));
  const std::string script =
      "for i = 1, " + std::to_string(kKeys) + " do redis.call('set', 'k' .. (i - 1), ARGV[1]) end return 1";
  {
    RawClient c(keg_->port());
    ASSERT_EQ(c.Call({"EVAL", script, "0", "0"}), ":1\r\n");
    ASSERT_EQ(c.Call({"DEBUG", "APPLY-PAUSE", "50"}), "+OK\r\n");
  }
  std::atomic<bool> stop{false};
  std::atomic<long> torn{0};
  std::atomic<long> reads{0};
  std::string first_torn;
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&] {
      RawClient c(keg_->port());
      while (!stop.load()) {
        const std::string reply = c.Call(mget);
        // Every value of one reply is the same number.
        std::string first;
        size_t pos = reply.find("\r\n") + 2;
        bool same = true;
        for (int k = 0; k < kKeys; ++k) {
          const size_t value_at = reply.find("\r\n", pos) + 2;
          const size_t end = reply.find("\r\n", value_at);
          const std::string v = reply.substr(value_at, end - value_at);
          if (k == 0) first = v;
          same = same && v == first;
          pos = end + 2;
        }
        if (!same && torn.fetch_add(1) == 0) first_torn = reply;
        ++reads;
      }
    });
  }
  RawClient w(keg_->port());
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  for (long i = 1; std::chrono::steady_clock::now() < until; ++i) {
    ASSERT_EQ(w.Call({"EVAL", script, "0", std::to_string(i)}), ":1\r\n");
  }
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_GT(reads.load(), 100);
  EXPECT_EQ(torn.load(), 0) << "of " << reads.load() << " MGETs; the first: " << first_torn;
}

// Under `always`, SIGKILL while scripts write ten keys each: after every restart each script's
// keys all hold the same value (all of a script's writes or none), and every acknowledged script
// is there.
TEST_F(ScriptingTest, ScriptWritesAreAllOrNothingAfterSigkill) {
  StartKeg({"--appendfsync", "always"});
  const std::string script =
      "for i = 1, 10 do redis.call('set', KEYS[1] .. ':' .. i, ARGV[1]) end return redis.call('incr', KEYS[1] .. ':n')";
  for (int cycle = 0; cycle < 3; ++cycle) {
    std::atomic<long> acknowledged{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> writers;
    for (int t = 0; t < 3; ++t) {
      writers.emplace_back([&, t] {
        RawClient c(keg_->port());
        const std::string key = "w" + std::to_string(t);
        for (long i = 1; !stop.load(); ++i) {
          const std::string reply = c.Call({"EVAL", script, "1", key, std::to_string(i)});
          if (reply.empty() || reply[0] != ':') return;  // the server is gone
          acknowledged.store(std::max(acknowledged.load(), i));
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    keg_->proc().Kill();
    stop = true;
    for (auto& t : writers) t.join();
    ASSERT_TRUE(keg_->Start()) << keg_->Log();
    RawClient c(keg_->port());
    long total = 0;
    for (int t = 0; t < 3; ++t) {
      const std::string key = "w" + std::to_string(t);
      Cmd mget{"MGET"};
      for (int i = 1; i <= 10; ++i) mget.push_back(key + ":" + std::to_string(i));
      const std::string reply = c.Call(mget);
      // All ten the same value (or all absent before the first script of the first cycle).
      std::vector<std::string> values;
      size_t pos = reply.find("\r\n") + 2;
      for (int i = 0; i < 10; ++i) {
        const size_t end = reply.find("\r\n", pos);
        std::string head = reply.substr(pos, end - pos);
        if (head == "$-1") {
          values.push_back("nil");
          pos = end + 2;
          continue;
        }
        const size_t vend = reply.find("\r\n", end + 2);
        values.push_back(reply.substr(end + 2, vend - end - 2));
        pos = vend + 2;
      }
      for (const std::string& v : values) EXPECT_EQ(v, values[0]) << reply;
      const std::string n = c.Call({"GET", key + ":n"});
      if (n != "$-1\r\n") total += std::stol(n.substr(n.find("\r\n") + 2));
    }
    EXPECT_GT(total, 0);
    EXPECT_GE(total, acknowledged.load());  // at least every script one writer saw acknowledged
  }
}

// Past busy-reply-threshold other clients get -BUSY; SCRIPT KILL stops a script that has not
// written; one that has is UNKILLABLE and SHUTDOWN NOSAVE ends the server without its writes.
TEST_F(ScriptingTest, BusyScriptsKillAndShutdownNosave) {
  StartKeg({"--busy-reply-threshold", "100"});
  {
    RawClient runner(keg_->port());
    runner.Send(RawClient::Encode({"EVAL", "local i = 0 while true do i = i + 1 end", "0"}));
    RawClient other(keg_->port());
    std::string reply;
    for (int i = 0; i < 100 && reply.rfind("-BUSY", 0) != 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      reply = other.Call({"GET", "x"});
    }
    EXPECT_EQ(reply, "-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n");
    EXPECT_EQ(other.Call({"FUNCTION", "KILL"}),
              "-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n");
    // (SUBSCRIBE too, as Redis 7.0: it has no allow-busy flag.)
    EXPECT_EQ(other.Call({"SUBSCRIBE", "ch"}),
              "-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n");
    EXPECT_EQ(other.Call({"SCRIPT", "KILL"}), "+OK\r\n");
    const std::string killed = runner.Read(1);
    EXPECT_NE(killed.find("Script killed by user with SCRIPT KILL"), std::string::npos) << killed;
    EXPECT_EQ(other.Call({"PING"}), "+PONG\r\n");
    EXPECT_EQ(other.Call({"SCRIPT", "KILL"}), "-NOTBUSY No scripts in execution right now.\r\n");
  }
  {
    RawClient runner(keg_->port());
    runner.Send(RawClient::Encode({"EVAL", "redis.call('set', 'x', '1') while true do end", "0"}));
    RawClient other(keg_->port());
    std::string reply;
    for (int i = 0; i < 100 && reply.rfind("-BUSY", 0) != 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      reply = other.Call({"PING"});
    }
    EXPECT_EQ(reply.rfind("-BUSY", 0), 0u) << reply;
    EXPECT_EQ(other.Call({"SCRIPT", "KILL"}).rfind("-UNKILLABLE Sorry the script already executed write commands", 0), 0u);
    EXPECT_EQ(other.Call({"SHUTDOWN"}).rfind("-BUSY", 0), 0u);
    other.Send(RawClient::Encode({"SHUTDOWN", "NOSAVE"}));
    EXPECT_TRUE(keg_->proc().ExitsWithin(5000));
  }
  ASSERT_TRUE(keg_->Start()) << keg_->Log();
  RawClient c(keg_->port());
  EXPECT_EQ(c.Call({"EXISTS", "x"}), ":0\r\n");  // the unfinished script's write never happened
}

// Functions are durable: they survive SIGKILL, restarts and compaction; a corrupt functions file
// stops the server with a message instead of losing them silently.
TEST_F(ScriptingTest, FunctionsSurviveSigkillAndCompaction) {
  StartKeg();
  {
    RawClient c(keg_->port());
    ASSERT_EQ(c.Call({"FUNCTION", "LOAD",
                      "#!lua name=lib\nredis.register_function('hello', function(keys, args) return 'hi ' .. args[1] end)"}),
              "$3\r\nlib\r\n");
    for (int i = 0; i < 200; ++i) c.Call({"SET", "k" + std::to_string(i % 10), std::to_string(i)});
  }
  keg_->proc().Kill();
  ASSERT_TRUE(keg_->Start()) << keg_->Log();
  {
    RawClient c(keg_->port());
    EXPECT_EQ(c.Call({"FCALL", "hello", "0", "there"}), "$8\r\nhi there\r\n");
    EXPECT_EQ(c.Call({"COMPACT"}), "+OK\r\n");
    EXPECT_EQ(c.Call({"FCALL", "hello", "0", "again"}), "$8\r\nhi again\r\n");
    EXPECT_EQ(c.Call({"FUNCTION", "DELETE", "lib"}), "+OK\r\n");
  }
  keg_->proc().Kill();
  ASSERT_TRUE(keg_->Start()) << keg_->Log();
  {
    RawClient c(keg_->port());
    EXPECT_EQ(c.Call({"FCALL", "hello", "0", "x"}), "-ERR Function not found\r\n");
    EXPECT_EQ(c.Call({"FUNCTION", "LOAD", "#!lua name=lib2\nredis.register_function('f', function() return 1 end)"}),
              "$4\r\nlib2\r\n");
  }
  keg_->proc().Kill();
  {
    std::fstream f(keg_->dir() / "data" / "functions.rdb", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(3);
    f.put('\x7f');  // a bit flip inside the payload: its CRC64 no longer matches
  }
  EXPECT_FALSE(keg_->Start());
  EXPECT_NE(keg_->Log().find("cannot load the functions"), std::string::npos) << keg_->Log();
}

// FUNCTION DUMP is byte for byte Redis's, and payloads restore in both directions with Redis's
// policies and errors.
TEST_F(ScriptingTest, FunctionDumpRestoreBothWaysWithRedis) {
  StartKeg();
  Redis redis;
  ASSERT_TRUE(redis.ok());
  RawClient k(keg_->port());
  RawClient r(redis.port());
  const std::string lib1 = "#!lua name=lib1\nredis.register_function('f1', function() return 'one ' .. string.rep('x', 30) end)";
  const std::string lib2 = "#!lua name=lib2\nredis.register_function('f2', function() return 'two' end)";
  ASSERT_EQ(k.Call({"FUNCTION", "LOAD", lib1}), "$4\r\nlib1\r\n");
  ASSERT_EQ(r.Call({"FUNCTION", "LOAD", lib1}), "$4\r\nlib1\r\n");
  const std::string keg_dump = k.Call({"FUNCTION", "DUMP"});
  ASSERT_EQ(keg_dump, r.Call({"FUNCTION", "DUMP"}));  // the same bytes (LZF-compressed code)
  const std::string payload = keg_dump.substr(keg_dump.find("\r\n") + 2, keg_dump.size() - keg_dump.find("\r\n") - 4);
  for (RawClient* c : {&k, &r}) {
    EXPECT_EQ(c->Call({"FUNCTION", "RESTORE", payload}), "-ERR Library lib1 already exists\r\n");
    EXPECT_EQ(c->Call({"FUNCTION", "RESTORE", payload, "REPLACE"}), "+OK\r\n");
    EXPECT_EQ(c->Call({"FUNCTION", "LOAD", lib2}), "$4\r\nlib2\r\n");
    EXPECT_EQ(c->Call({"FUNCTION", "RESTORE", payload, "FLUSH"}), "+OK\r\n");  // lib2 gone
    EXPECT_EQ(c->Call({"FCALL", "f2", "0"}), "-ERR Function not found\r\n");
  }
  // Redis's payload into keg and keg's into Redis.
  ASSERT_EQ(k.Call({"FUNCTION", "LOAD", lib2}), "$4\r\nlib2\r\n");
  const std::string from_keg = k.Call({"FUNCTION", "DUMP"});
  EXPECT_EQ(r.Call({"FUNCTION", "FLUSH"}), "+OK\r\n");
  EXPECT_EQ(r.Call({"FUNCTION", "RESTORE", from_keg.substr(from_keg.find("\r\n") + 2, from_keg.size() - from_keg.find("\r\n") - 4)}),
            "+OK\r\n");
  EXPECT_EQ(r.Call({"FCALL", "f2", "0"}), "$3\r\ntwo\r\n");
  EXPECT_EQ(k.Call({"FUNCTION", "FLUSH"}), "+OK\r\n");
  const std::string from_redis = r.Call({"FUNCTION", "DUMP"});
  EXPECT_EQ(k.Call({"FUNCTION", "RESTORE", from_redis.substr(from_redis.find("\r\n") + 2, from_redis.size() - from_redis.find("\r\n") - 4)}),
            "+OK\r\n");
  EXPECT_EQ(k.Call({"FCALL", "f1", "0"}), r.Call({"FCALL", "f1", "0"}));
}

// Hostile payloads and bodies: a compressed entry claiming 4,000,000,000 bytes is refused before
// anything is allocated (the server's peak memory stays small), precompiled bytecode is never
// loaded as a script, and struct's offsets out of any range are errors, not conversions.
TEST_F(ScriptingTest, HostileFunctionPayloadsAndScriptBodies) {
  StartKeg();
  RawClient c(keg_->port());
  std::string p;
  p += static_cast<char>(245);   // RDB_OPCODE_FUNCTION2
  p += static_cast<char>(0xC3);  // an LZF-compressed string
  p += static_cast<char>(3);     // compressed length 3
  p += '\x80';                   // plain length: 32-bit form
  for (int shift = 24; shift >= 0; shift -= 8) p += static_cast<char>((4000000000u >> shift) & 0xff);
  p += "abc";
  p += static_cast<char>(server::rdb::kVersion & 0xff);
  p += static_cast<char>(server::rdb::kVersion >> 8);
  const uint64_t crc = server::rdb::Crc64(0, p);
  for (int i = 0; i < 8; ++i) p += static_cast<char>((crc >> (8 * i)) & 0xff);
  EXPECT_EQ(c.Call({"FUNCTION", "RESTORE", p}), "-ERR failed loading the given functions payload\r\n");
  std::ifstream status("/proc/" + std::to_string(keg_->proc().pid()) + "/status");
  long peak_kb = 0;
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) peak_kb = std::stol(line.substr(6));
  }
  EXPECT_GT(peak_kb, 0);
  EXPECT_LT(peak_kb, 512 * 1024) << "the server's peak resident memory (kB)";
  const std::string bytecode = std::string("\x1bLua\x51\x00\x01\x04\x08\x04\x08\x00", 12) + std::string(64, '\0');
  EXPECT_EQ(c.Call({"EVAL", bytecode, "0"}).rfind("-ERR Error compiling script (new function): user_script: binary chunks are not allowed", 0), 0u);
  EXPECT_EQ(c.Call({"SCRIPT", "LOAD", bytecode}).rfind("-ERR Error compiling script", 0), 0u);
  for (const char* at : {"1e300", "-1e300", "0/0", "2^63"}) {
    const std::string reply = c.Call({"EVAL", std::string("return struct.unpack('i4', 'abcd', ") + at + ")", "0"});
    EXPECT_NE(reply.find("data string too short"), std::string::npos) << at << ": " << reply;
  }
  EXPECT_EQ(c.Call({"PING"}), "+PONG\r\n");
}

// A script that writes nothing costs no fsync under `always`; one that writes costs one per group.
TEST_F(ScriptingTest, ReadOnlyScriptsCostNoFsync) {
  StartKeg({"--appendfsync", "always"});
  RawClient c(keg_->port());
  ASSERT_EQ(c.Call({"SET", "x", "1"}), "+OK\r\n");
  const long before = std::stol(InfoField(c, "keg", "fsyncs"));
  for (int i = 0; i < 50; ++i) ASSERT_EQ(c.Call({"EVAL", "return redis.call('get', 'x')", "0"}), "$1\r\n1\r\n");
  EXPECT_EQ(std::stol(InfoField(c, "keg", "fsyncs")), before);
  ASSERT_EQ(c.Call({"EVAL", "return redis.call('incr', 'x')", "0"}), ":2\r\n");
  EXPECT_EQ(std::stol(InfoField(c, "keg", "fsyncs")), before + 1);
}

// MULTI/EXEC and WATCH see scripts as writes: a script in a transaction runs at its place, and a
// script writing a watched key aborts the watcher's EXEC.
TEST_F(ScriptingTest, ScriptsInTransactionsAndWatch) {
  StartKeg();
  RawClient a(keg_->port());
  RawClient b(keg_->port());
  EXPECT_EQ(a.Call({"WATCH", "w"}), "+OK\r\n");
  EXPECT_EQ(b.Call({"EVAL", "return redis.call('set', 'w', 'changed')", "0"}), "+OK\r\n");
  EXPECT_EQ(a.Call({"MULTI"}), "+OK\r\n");
  EXPECT_EQ(a.Call({"SET", "w", "mine"}), "+QUEUED\r\n");
  EXPECT_EQ(a.Call({"EXEC"}), "*-1\r\n");
  EXPECT_EQ(a.Call({"MULTI"}), "+OK\r\n");
  EXPECT_EQ(a.Call({"SET", "t", "1"}), "+QUEUED\r\n");
  EXPECT_EQ(a.Call({"EVAL", "return redis.call('incr', 't')", "0"}), "+QUEUED\r\n");
  EXPECT_EQ(a.Call({"GET", "t"}), "+QUEUED\r\n");
  EXPECT_EQ(a.Call({"EXEC"}), "*3\r\n+OK\r\n:2\r\n$1\r\n2\r\n");
}

}  // namespace
}  // namespace keg::testing
