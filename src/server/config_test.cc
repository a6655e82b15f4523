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
  const auto got = GetDirectives(c, "*timeout*");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], (std::pair<std::string, std::string>{"timeout", "30"}));
  const auto save = GetDirectives(c, "SAVE");
  ASSERT_EQ(save.size(), 1u);
  EXPECT_EQ(save[0].second, "");
}

}  // namespace
}  // namespace keg::server
