#include "server/config.h"

#include <gtest/gtest.h>

#include "server/glob.h"

namespace keg::server {
namespace {

TEST(GlobMatchTest, RedisPatterns) {
  EXPECT_TRUE(GlobMatch("*", "anything"));
  EXPECT_TRUE(GlobMatch("user:*", "user:42"));
  EXPECT_FALSE(GlobMatch("user:*", "users:42"));
  EXPECT_TRUE(GlobMatch("h?llo", "hello"));
  EXPECT_FALSE(GlobMatch("h?llo", "hllo"));
  EXPECT_TRUE(GlobMatch("h[ae]llo", "hallo"));
  EXPECT_FALSE(GlobMatch("h[ae]llo", "hillo"));
  EXPECT_TRUE(GlobMatch("h[^e]llo", "hallo"));
  EXPECT_FALSE(GlobMatch("h[^e]llo", "hello"));
  EXPECT_TRUE(GlobMatch("h[a-c]llo", "hbllo"));
  EXPECT_TRUE(GlobMatch("h[c-a]llo", "hbllo"));  // reversed ranges work, as in Redis
  EXPECT_TRUE(GlobMatch("a\\*b", "a*b"));
  EXPECT_FALSE(GlobMatch("a\\*b", "axb"));
  EXPECT_TRUE(GlobMatch("MAXCLIENTS", "maxclients", true));
  EXPECT_FALSE(GlobMatch("MAXCLIENTS", "maxclients", false));
  EXPECT_FALSE(GlobMatch("*", ""));  // Redis's stringmatchlen too; KEYS/SCAN treat "*" apart
  // A pathological pattern ends quickly instead of backtracking exponentially.
  EXPECT_FALSE(GlobMatch("a*a*a*a*a*a*a*a*a*a*a*a*b", std::string(60, 'a')));
}

// "user" lines (Redis's users in redis.conf) are kept in order for the server to apply; on the
// command line one quoted argument holds the whole rule list.
TEST(ConfigTest, UserLinesFromTheFileAndTheCommandLine) {
  Config c;
  std::string error;
  ASSERT_TRUE(ParseConfigText("user alice on >pw ~* +@all\nuser default off\n", &c, &error)) << error;
  EXPECT_EQ(c.users, (std::vector<std::vector<std::string>>{{"alice", "on", ">pw", "~*", "+@all"}, {"default", "off"}}));
  EXPECT_FALSE(ParseConfigText("user\n", &c, &error));
  Config d;
  std::vector<std::string> args = {"keg-server", "--user", "bob on >x ~b* +get", "--port", "7001"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  ASSERT_TRUE(LoadConfig(static_cast<int>(argv.size()), argv.data(), &d, &error)) << error;
  EXPECT_EQ(d.users, (std::vector<std::vector<std::string>>{{"bob", "on", ">x", "~b*", "+get"}}));
  EXPECT_EQ(d.port, 7001);
}

TEST(ConfigTest, ParsesDirectivesUnitsAndQuotes) {
  Config c;
  std::string error;
  ASSERT_TRUE(ParseConfigText("# comment\n\nport 7000\nmaxclients 5\n"
                              "proto-max-bulk-len 2mb\nclient-query-buffer-limit 1gb\n"
                              "requirepass \"a b\\\"c\"\nbind 0.0.0.0 -::1\nappendfsync always\n"
                              "client-output-buffer-limit normal 4mb 1mb 10\nauto-compaction no\n",
                              &c, &error))
      << error;
  EXPECT_EQ(c.port, 7000);
  EXPECT_EQ(c.maxclients, 5);
  EXPECT_EQ(c.proto_max_bulk_len, 2 * 1024 * 1024);
  EXPECT_EQ(c.client_query_buffer_limit, 1024ll * 1024 * 1024);
  EXPECT_EQ(c.requirepass, "a b\"c");
  EXPECT_EQ(c.bind, (std::vector<std::string>{"0.0.0.0", "-::1"}));
  EXPECT_EQ(c.appendfsync, store::FsyncPolicy::kAlways);
  EXPECT_EQ(c.output_hard, 4 * 1024 * 1024);
  EXPECT_EQ(c.output_soft, 1024 * 1024);
  EXPECT_EQ(c.output_soft_seconds, 10);
  EXPECT_FALSE(c.auto_compaction);
  int64_t v = 0;
  EXPECT_TRUE(ParseMemory("10k", &v));
  EXPECT_EQ(v, 10000);
  EXPECT_TRUE(ParseMemory("1GB", &v));
  EXPECT_EQ(v, 1024ll * 1024 * 1024);
  EXPECT_FALSE(ParseMemory("12x", &v));
  EXPECT_FALSE(ParseMemory("99999999999999gb", &v));
  EXPECT_FALSE(ParseMemory("-1", &v));
  // Redis's words for a negative memory value, not the directive's range.
  Config c2;
  EXPECT_EQ(SetDirective(&c2, "hll-sparse-max-bytes", {"-1"}, true), "argument must be a memory value");
  EXPECT_EQ(SetDirective(&c2, "hll-sparse-max-bytes", {"1kb"}, true), "");
  EXPECT_EQ(c2.hll_sparse_max_bytes, 1024);
}

TEST(ConfigTest, ErrorsNameTheLineAndTheDirective) {
  Config c;
  std::string error;
  EXPECT_FALSE(ParseConfigText("port 7000\nport 99999\n", &c, &error));
  EXPECT_NE(error.find("at line 2"), std::string::npos) << error;
  EXPECT_NE(error.find("'port 99999'"), std::string::npos) << error;
  EXPECT_NE(error.find("between 0 and 65535"), std::string::npos) << error;
  EXPECT_FALSE(ParseConfigText("protected-mode maybe\n", &c, &error));
  EXPECT_NE(error.find("argument must be 'yes' or 'no'"), std::string::npos) << error;
  EXPECT_FALSE(ParseConfigText("requirepass \"open\n", &c, &error));
  EXPECT_NE(error.find("Unbalanced quotes"), std::string::npos) << error;
  EXPECT_FALSE(ParseConfigText("port\n", &c, &error));
  EXPECT_NE(error.find("Bad directive or wrong number of arguments"), std::string::npos) << error;
  EXPECT_EQ(c.port, 7000);  // a failed line changes nothing
}

TEST(ConfigTest, RuntimeSetRefusesImmutableDirectivesAndGetMatchesGlobs) {
  Config c;
  EXPECT_EQ(SetDirective(&c, "timeout", {"30"}, true), "");
  EXPECT_EQ(c.timeout, 30);
  EXPECT_EQ(SetDirective(&c, "dir", {"/tmp"}, true), "can't set immutable config");
  EXPECT_EQ(SetDirective(&c, "appendfsync", {"no"}, true), "can't set immutable config");
  EXPECT_EQ(SetDirective(&c, "appendfsync", {"no"}, false), "");
  EXPECT_EQ(SetDirective(&c, "timeout", {"x"}, true), "argument couldn't be parsed into an integer");
  const auto got = GetDirectives(c, "t*meout");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], (std::pair<std::string, std::string>{"timeout", "30"}));
  const auto save = GetDirectives(c, "SAVE");
  ASSERT_EQ(save.size(), 1u);
  EXPECT_EQ(save[0].second, "");
}

TEST(ConfigTest, ReplDisklessLoadTakesRedissValues) {
  Config c;
  EXPECT_EQ(GetDirectives(c, "repl-diskless-load")[0].second, "disabled");  // Redis's default
  EXPECT_EQ(SetDirective(&c, "repl-diskless-load", {"SWAPDB"}, true), "");
  EXPECT_EQ(GetDirectives(c, "repl-diskless-load")[0].second, "swapdb");
  EXPECT_EQ(SetDirective(&c, "repl-diskless-load", {"on-empty-db"}, true), "");
  EXPECT_EQ(SetDirective(&c, "repl-diskless-load", {"sometimes"}, true),
            "argument(s) must be one of the following: disabled, on-empty-db, swapdb");
  EXPECT_EQ(c.repl_diskless_load, "on-empty-db");  // a refused value changes nothing
}

TEST(ConfigTest, SavePointsAreKeptAsRedisDoes) {
  // Accepted and reported (keg's log satisfies any of them): CONFIG SET replaces, each config file
  // line adds, "" clears; malformed ones get Redis's error.
  Config c;
  EXPECT_EQ(SetDirective(&c, "save", {"3600 1  300 100"}, true), "");
  EXPECT_EQ(c.save, "3600 1 300 100");
  EXPECT_EQ(SetDirective(&c, "save", {"900 1"}, true), "");
  EXPECT_EQ(c.save, "900 1");
  EXPECT_EQ(SetDirective(&c, "save", {"60", "10000"}, false), "");  // a second line of a file
  EXPECT_EQ(c.save, "900 1 60 10000");
  EXPECT_EQ(SetDirective(&c, "save", {""}, true), "");
  EXPECT_EQ(c.save, "");
  EXPECT_EQ(SetDirective(&c, "save", {"900"}, true), "Invalid save parameters");
  EXPECT_EQ(SetDirective(&c, "save", {"900 x"}, true), "Invalid save parameters");
  EXPECT_EQ(SetDirective(&c, "save", {"-1 1"}, true), "Invalid save parameters");
  EXPECT_EQ(c.save, "");
}

TEST(ConfigTest, DirectivesKegHonoursOneWay) {
  Config c;
  // keg's value is accepted; another well-formed one is refused with the reason; a malformed one
  // gets Redis's error.
  EXPECT_EQ(SetDirective(&c, "maxmemory", {"0"}, true), "");
  EXPECT_NE(SetDirective(&c, "maxmemory", {"1mb"}, true).find("never evicts"), std::string::npos);
  EXPECT_EQ(SetDirective(&c, "maxmemory", {"bla"}, true), "argument must be a memory value");
  EXPECT_EQ(SetDirective(&c, "maxmemory-policy", {"noeviction"}, true), "");
  EXPECT_NE(SetDirective(&c, "maxmemory-policy", {"allkeys-lru"}, true).find("noeviction"), std::string::npos);
  EXPECT_NE(SetDirective(&c, "maxmemory-policy", {"nope"}, true).find("must be one of"), std::string::npos);
  EXPECT_EQ(SetDirective(&c, "appendonly", {"yes"}, true), "");
  EXPECT_NE(SetDirective(&c, "appendonly", {"no"}, true).find("cannot be turned off"), std::string::npos);
  EXPECT_EQ(SetDirective(&c, "databases", {"1"}, false), "");
  EXPECT_EQ(SetDirective(&c, "databases", {"256"}, false), "");
  EXPECT_EQ(c.databases, 256);
  EXPECT_NE(SetDirective(&c, "databases", {"257"}, false).find("between 1 and 256"), std::string::npos);
  EXPECT_NE(SetDirective(&c, "databases", {"16"}, true), "");  // immutable at runtime
  EXPECT_EQ(SetDirective(&c, "daemonize", {"no"}, false), "");
  EXPECT_NE(SetDirective(&c, "daemonize", {"yes"}, false).find("foreground"), std::string::npos);
  EXPECT_EQ(SetDirective(&c, "cluster-enabled", {"yes"}, true), "can't set immutable config");
  // maxmemory-clients: a size or a percentage, as Redis reads them; only 0 is keg's.
  EXPECT_EQ(SetDirective(&c, "maxmemory-clients", {"0"}, true), "");
  EXPECT_EQ(SetDirective(&c, "maxmemory-clients", {"0%"}, true), "");
  EXPECT_NE(SetDirective(&c, "maxmemory-clients", {"10mb"}, true).find("never evicts clients"), std::string::npos);
  EXPECT_NE(SetDirective(&c, "maxmemory-clients", {"5%"}, true).find("never evicts clients"), std::string::npos);
  EXPECT_EQ(SetDirective(&c, "maxmemory-clients", {"101%"}, true), "percentage argument must be less or equal to 100");
  EXPECT_EQ(SetDirective(&c, "maxmemory-clients", {"-1"}, true), "argument must be a memory or percent value");
  // The eviction tuning is kept and reported, as Redis checks it.
  EXPECT_EQ(SetDirective(&c, "maxmemory-samples", {"7"}, true), "");
  EXPECT_EQ(GetDirectives(c, "maxmemory-samples")[0].second, "7");
  EXPECT_NE(SetDirective(&c, "maxmemory-eviction-tenacity", {"101"}, true).find("between 0 and 100"), std::string::npos);
  // Sizes as memtoull reads them: "" and a bare unit are 0; a long tail is no unit.
  EXPECT_EQ(SetDirective(&c, "zset-max-listpack-value", {""}, true), "");
  EXPECT_EQ(c.zset_max_listpack_value, 0);
  EXPECT_EQ(SetDirective(&c, "zset-max-listpack-value", {"1" + std::string(1000, 'x')}, true),
            "argument must be a memory value");
  EXPECT_EQ(SetDirective(&c, "repl-backlog-size", {"1"}, true), "");
  EXPECT_EQ(c.repl_backlog_size, 16 * 1024);  // Redis's minimum
  EXPECT_EQ(SetDirective(&c, "no-such-directive", {"1"}, true), "Bad directive or wrong number of arguments");
}

TEST(ConfigTest, RedisRdbAndProcessDirectivesAsRedisValidatesThem) {
  Config c;
  EXPECT_EQ(SetDirective(&c, "pidfile", {"/run/keg.pid"}, false), "");
  EXPECT_EQ(c.pidfile, "/run/keg.pid");
  EXPECT_EQ(SetDirective(&c, "pidfile", {"/tmp/x.pid"}, true), "can't set immutable config");
  EXPECT_TRUE(c.rdbcompression);  // Redis's default
  EXPECT_EQ(SetDirective(&c, "rdbcompression", {"no"}, true), "");
  EXPECT_FALSE(c.rdbcompression);
  EXPECT_EQ(SetDirective(&c, "rdbcompression", {"maybe"}, true), "argument must be 'yes' or 'no'");
  EXPECT_EQ(SetDirective(&c, "dbfilename", {"data/dump.rdb"}, false), "dbfilename can't be a path, just a filename");
  EXPECT_EQ(SetDirective(&c, "dbfilename", {"other.rdb"}, false), "");
  // A protected config, as in Redis 7.0: refused at runtime unless enable-protected-configs.
  EXPECT_EQ(SetDirective(&c, "dbfilename", {"third.rdb"}, true), "can't set protected config");
  EXPECT_EQ(SetDirective(&c, "enable-protected-configs", {"yes"}, false), "");
  EXPECT_EQ(SetDirective(&c, "dbfilename", {"third.rdb"}, true), "");
  EXPECT_EQ(GetDirectives(c, "dbfilename")[0].second, "third.rdb");
  EXPECT_EQ(SetDirective(&c, "always-show-logo", {"yes"}, true), "can't set immutable config");
  EXPECT_EQ(SetDirective(&c, "enable-module-command", {"local"}, false), "");
  EXPECT_EQ(SetDirective(&c, "propagation-error-behavior", {"panic-on-replicas"}, true), "");
  EXPECT_EQ(SetDirective(&c, "propagation-error-behavior", {"loud"}, true),
            "argument(s) must be one of the following: ignore, panic, panic-on-replicas");
  for (const char* name : {"no-appendfsync-on-rewrite", "activerehashing"}) {
    EXPECT_EQ(SetDirective(&c, name, {"no"}, true), "") << name;
  }
  // A redis.conf that sets it starts keg (RESTORE checks every payload whole whatever it says).
  EXPECT_EQ(GetDirectives(c, "sanitize-dump-payload")[0].second, "no");
  EXPECT_EQ(SetDirective(&c, "sanitize-dump-payload", {"CLIENTS"}, false), "");
  EXPECT_EQ(SetDirective(&c, "sanitize-dump-payload", {"yes"}, true), "");
  EXPECT_EQ(GetDirectives(c, "sanitize-dump-payload")[0].second, "yes");
  EXPECT_EQ(SetDirective(&c, "sanitize-dump-payload", {"foo"}, true),
            "argument(s) must be one of the following: no, yes, clients");
}

// Directives Redis's integration tests set, as redis-server 7.0.15 reads and prints them.
TEST(ConfigTest, UnixSocketShutdownBacklogAndHzDirectives) {
  Config c;
  EXPECT_EQ(SetDirective(&c, "unixsocket", {"/tmp/keg.sock"}, false), "");
  EXPECT_EQ(SetDirective(&c, "unixsocket", {"/tmp/other.sock"}, true), "can't set immutable config");
  EXPECT_EQ(SetDirective(&c, "unixsocketperm", {"700"}, false), "");
  EXPECT_EQ(c.unixsocketperm, 0700);  // octal, as Redis's OCTAL_CONFIG
  EXPECT_EQ(GetDirectives(c, "unixsocketperm")[0].second, "700");
  EXPECT_EQ(SetDirective(&c, "unixsocketperm", {"789"}, false), "argument couldn't be parsed into an integer");
  EXPECT_EQ(SetDirective(&c, "unixsocketperm", {"1000"}, false), "argument must be between 0 and 511 inclusive");
  EXPECT_EQ(GetDirectives(c, "shutdown-timeout")[0].second, "10");
  EXPECT_EQ(SetDirective(&c, "shutdown-timeout", {"300"}, true), "");
  EXPECT_EQ(SetDirective(&c, "shutdown-timeout", {"-1"}, true), "argument must be between 0 and 2147483647 inclusive");
  EXPECT_EQ(GetDirectives(c, "repl-backlog-ttl")[0].second, "3600");
  EXPECT_EQ(SetDirective(&c, "repl-backlog-ttl", {"0"}, true), "");
  EXPECT_EQ(SetDirective(&c, "hz", {"100"}, true), "");
  EXPECT_EQ(GetDirectives(c, "hz")[0].second, "100");
  EXPECT_EQ(SetDirective(&c, "hz", {"100000"}, true), "");  // clamped, as Redis's updateHZ
  EXPECT_EQ(GetDirectives(c, "hz")[0].second, "500");
  EXPECT_EQ(SetDirective(&c, "hz", {"0"}, true), "");
  EXPECT_EQ(GetDirectives(c, "hz")[0].second, "1");
}

TEST(ConfigTest, LatencyTrackingPercentiles) {
  Config c;
  EXPECT_EQ(SetDirective(&c, "latency-tracking-info-percentiles", {"50 99.9 100"}, true), "");
  EXPECT_EQ(GetDirectives(c, "latency-tracking-info-percentiles")[0].second, "50 99.9 100");
  EXPECT_EQ(SetDirective(&c, "latency-tracking-info-percentiles", {"101"}, true),
            "latency-tracking-info-percentiles parameters should sit between [0.0,100.0]");
  EXPECT_EQ(SetDirective(&c, "latency-tracking-info-percentiles", {"x"}, true),
            "Invalid latency-tracking-info-percentiles parameters");
  EXPECT_EQ(SetDirective(&c, "latency-tracking-info-percentiles", {"nan"}, true),
            "Invalid latency-tracking-info-percentiles parameters");
  EXPECT_EQ(SetDirective(&c, "latency-tracking-info-percentiles", {"50  99"}, true),  // an empty word
            "Invalid latency-tracking-info-percentiles parameters");
  EXPECT_EQ(GetDirectives(c, "latency-tracking-info-percentiles")[0].second, "50 99.9 100");  // unchanged
  EXPECT_EQ(SetDirective(&c, "latency-tracking-info-percentiles", {"50", "99"}, false), "");  // a file line
  EXPECT_EQ(GetDirectives(c, "latency-tracking-info-percentiles")[0].second, "50 99");
  EXPECT_EQ(SetDirective(&c, "latency-tracking-info-percentiles", {""}, true), "");  // none
  EXPECT_EQ(GetDirectives(c, "latency-tracking-info-percentiles")[0].second, "");
  EXPECT_EQ(SetDirective(&c, "latency-tracking", {"no"}, true), "");
  EXPECT_FALSE(c.latency_tracking);
}

}  // namespace
TEST(ConfigTest, RewriteKeepsCommentsAndWritesCurrentValues) {
  const std::string old_text =
      "# keg config\n"
      "port 7000\n"
      "\n"
      "# the primary\n"
      "replicaof 10.0.0.1 6379\n"
      "timeout 10\n"
      "timeout 20\n"
      "client-output-buffer-limit pubsub 32mb 8mb 60\n"
      "slave-read-only yes\n";
  Config c;
  ASSERT_TRUE(ParseConfigText(old_text, &c, nullptr));
  c.timeout = 30;                          // CONFIG SET
  c.replicaof.clear();                     // REPLICAOF NO ONE
  c.replica_read_only = false;             // through its alias's line
  c.maxclients = 50;                       // not in the file, not the default: appended
  c.notify_keyspace_events = 0;            // the default: not appended
  const std::string text = RewriteConfigText(old_text, c);
  EXPECT_EQ(text,
            "# keg config\n"
            "port 7000\n"
            "\n"
            "# the primary\n"
            "timeout 30\n"
            "client-output-buffer-limit pubsub 32mb 8mb 60\n"
            "slave-read-only no\n"
            "# Generated by CONFIG REWRITE\n"
            "maxclients 50\n");
  // Read back, it is the same configuration; a replica's line comes back after REPLICAOF.
  Config again;
  ASSERT_TRUE(ParseConfigText(text, &again, nullptr));
  EXPECT_EQ(again.timeout, 30);
  EXPECT_EQ(again.maxclients, 50);
  EXPECT_FALSE(again.replica_read_only);
  c.replicaof = "127.0.0.1 7001";
  c.masterauth = "a secret \"quoted\"";
  const std::string replica = RewriteConfigText(text, c);
  Config back;
  ASSERT_TRUE(ParseConfigText(replica, &back, nullptr));
  EXPECT_EQ(back.replicaof, "127.0.0.1 7001");
  EXPECT_EQ(back.masterauth, "a secret \"quoted\"");
}

// CONFIG SET's one argument of a multi-word directive, split as Redis's sdssplitlen: each space
// ends a word, so " " holds two empty words (which client-output-buffer-limit then refuses).
TEST(ConfigTest, SplitsAMultiWordValueAtEachSpace) {
  using V = std::vector<std::string_view>;
  EXPECT_EQ(SplitAtEachSpace(""), V{});
  EXPECT_EQ(SplitAtEachSpace(" "), (V{"", ""}));
  EXPECT_EQ(SplitAtEachSpace("normal 0 0 0"), (V{"normal", "0", "0", "0"}));
  EXPECT_EQ(SplitAtEachSpace("a  b "), (V{"a", "", "b", ""}));
  Config c;
  EXPECT_EQ(
      SetDirective(&c, "client-output-buffer-limit", SplitAtEachSpace("pubsub 1mb 1mb 10 "), true),
      "Wrong number of arguments in buffer limit configuration.");
  EXPECT_EQ(
      SetDirective(&c, "client-output-buffer-limit", SplitAtEachSpace("pubsub 1mb 2mb 10"), true),
      "");
  EXPECT_EQ(c.pubsub_output_hard, 1024 * 1024);
  EXPECT_EQ(c.pubsub_output_soft, 2 * 1024 * 1024);
}

}  // namespace keg::server
