// The request parser against the real redis-server 7.0: each case goes, as the same chunks, to a
// redis-server and to keg's parser; a tiny PING / ECHO executor turns the parser's commands into
// replies with keg's ReplyBuffer. The bytes, and whether the connection was closed, must match.
//
// Needs redis-server on PATH (tools/install-deps.sh --test installs it); fails without it.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "resp/reply_buffer.h"
#include "support/parse_driver.h"
#include "support/server_process.h"

extern char** environ;

namespace keg::resp {
namespace {

using Chunks = std::vector<std::string>;

using keg::testing::FreePort;
int Connect(int port) { return keg::testing::ConnectTo(port); }

// A redis-server child process on a free loopback port, stopped with the test program.
class RedisServer {
 public:
  explicit RedisServer(std::vector<std::string> extra) {
    port_ = FreePort();
    std::vector<std::string> args = {
        "redis-server", "--port", std::to_string(port_), "--bind",   "127.0.0.1", "--save", "",
        "--appendonly", "no",     "--logfile",           "/dev/null"};
    args.insert(args.end(), extra.begin(), extra.end());
    ready_ = process_.Start(std::move(args), port_);
  }

  bool ready() const { return ready_; }
  int port() const { return port_; }

 private:
  keg::testing::ServerProcess process_;
  int port_ = -1;
  bool ready_ = false;
};

struct Transcript {
  std::string bytes;
  bool closed = false;
  bool operator==(const Transcript&) const = default;
};

void PrintTo(const Transcript& t, std::ostream* os) {
  std::string shown;
  for (char c : t.bytes.substr(0, 300)) {
    if (std::isprint(static_cast<unsigned char>(c))) {
      shown += c;
    } else {
      char hex[8];
      snprintf(hex, sizeof(hex), "\\x%02x", static_cast<unsigned char>(c));
      shown += hex;
    }
  }
  *os << '"' << shown << (t.bytes.size() > 300 ? "..." : "") << '"' << (t.closed ? " +close" : "");
}

// Sends the chunks on a fresh connection and reads until the server closes or falls silent.
Transcript AskRedis(int port, const Chunks& chunks) {
  Transcript t;
  const int fd = Connect(port);
  if (fd < 0) return t;
  for (const std::string& chunk : chunks) {
    size_t sent = 0;
    while (sent < chunk.size()) {
      const ssize_t n = send(fd, chunk.data() + sent, chunk.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // keep the chunks apart
  }
  char buf[65536];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 300) <= 0) break;  // silent for 300 ms: nothing more is coming
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) {
      t.closed = true;
      break;
    }
    t.bytes.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return t;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// What a server built on keg's parser and encoder sends for the same chunks. Commands other than
// PING and ECHO are not modelled: a case using one fails with a message.
std::optional<Transcript> AskKeg(const Chunks& chunks, bool auth_required) {
  std::vector<std::string_view> views(chunks.begin(), chunks.end());
  const testing::ParseOutcome outcome = testing::ParseChunks(views, {}, auth_required);
  ReplyBuffer out;
  for (const auto& args : outcome.commands) {
    const std::string name = Lower(args[0]);
    if (auth_required) {
      out.Error("-NOAUTH Authentication required.");
    } else if (name == "ping" && args.size() <= 2) {
      args.size() == 1 ? out.SimpleString("PONG") : out.Bulk(args[1]);
    } else if (name == "echo" && args.size() == 2) {
      out.Bulk(args[1]);
    } else if (name == "ping" || name == "echo") {
      out.Error("wrong number of arguments for '" + name + "' command");
    } else {
      return std::nullopt;
    }
  }
  if (!outcome.error.empty()) out.Error(outcome.error);
  std::vector<iovec> iov(4096);
  Transcript t;
  const size_t n = out.Gather(iov);
  for (size_t i = 0; i < n; ++i)
    t.bytes.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
  t.closed = !outcome.error.empty();
  return t;
}

struct Case {
  const char* name;
  Chunks chunks;
  bool auth_required = false;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::vector<Case> Cases() {
  const std::string big(70000, 'a');
  return {
      // clients.md §2.2 and reliability.md §8.4
      {"EmptyLineThenPing", {"\r\n", "PING\r\n"}},
      {"NegativeMultibulkIgnored", {"*-10\r\n", "PING\r\n"}},
      {"MultibulkTooLarge", {"*3000000000\r\n"}},
      {"MultibulkNotANumber", {"*x\r\n"}},
      {"ExpectedDollarGotF", {"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n"}},
      {"ExpectedDollarGotPlus", {"*1\r\n+PING\r\n"}},
      {"ExpectedDollarGotCr", {"*1\r\n\r\n"}},
      {"NegativeBulkLength", {"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n"}},
      {"BulkAboveProtoMaxBulkLen", {"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$2000000000\r\n"}},
      {"BulkOneAboveLimit", {"*1\r\n$536870913\r\n"}},
      {"BulkNotANumber", {"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$blabla\r\n"}},
      {"BareWordInMultibulk", {"*1\r\nfoo\r\n"}},
      {"PingArity", {"PING x y z\r\n"}},
      {"UnbalancedQuotes", {"set \"\"\"test-key\"\"\" test-value\r\n"}},
      {"UnbalancedOpenQuote", {"ECHO \"a b\r\n"}},
      {"TooBigInline", {big}},
      {"TooBigInlineAfterNul", {std::string(1, '\0') + big}},
      {"TooBigMbulkCount", {"*1" + std::string(65536, '1')}},
      {"TooBigMbulkCountAfterNul", {std::string("*\0", 2) + big}},
      {"TooBigBulkCount", {"*1\r\n$" + std::string(65540, '1')}},
      {"TooBigBulkCountAfterNul", {std::string("*1\r\n$\0", 6) + big}},
      // 65536 bytes pending without the '\n' (the '\r' counts) is the most Redis accepts.
      {"InlineLimitExactlyAccepted", {"ECHO " + std::string(65530, 'a') + "\r", "\n", "PING\r\n"}},
      {"InlineLimitPlusOne", {"ECHO " + std::string(65532, 'a'), "\n"}},
      {"UnauthMultibulk", {"*11\r\n"}, true},
      {"UnauthMultibulkBoundary", {"*10\r\n"}, true},
      {"UnauthBulk", {"*1\r\n$16385\r\n"}, true},
      {"UnauthBulkBoundary", {"*1\r\n$16384\r\n"}, true},
      {"UnauthInlinePing", {"PING\r\n"}, true},
      // Quirks: skipped trailer bytes, strict numbers, NUL stops line scans.
      {"TrailerNotChecked", {"*1\r\n$4\r\nPINGxx*1\rX$4\r\nPING\r\n"}},
      {"MultibulkLeadingZero", {"*01\r\n$4\r\nPING\r\n"}},
      {"MultibulkMinusZero", {"*-0\r\n"}},
      {"BulkLeadingZero", {"*1\r\n$04\r\nPING\r\n"}},
      {"BulkEmptyLength", {"*1\r\n$\r\n"}},
      {"NullBulkInRequest", {"*1\r\n$-1\r\n"}},
      {"MultibulkIntMax", {"*2147483647\r\n"}},
      {"MultibulkIntMaxPlusOne", {"*2147483648\r\n"}},
      {"InlineNulWaits", {std::string("PING\0\r\n", 7)}},
      {"NulAfterCommand", {std::string("*1\r\n$4\r\nPING\r\n\0", 15)}},
      // Inline quoting, as sdssplitargs.
      {"InlineEscapes", {"ECHO \"a\\x41b\\n\\r\\t\\b\\a\\\\\"\r\n"}},
      {"InlineBadHexEscapes", {"ECHO \"\\xZZ\"\r\nECHO \"\\x4\"\r\nECHO \"\\x\"\r\n"}},
      {"InlineSingleQuotes", {"ECHO 'it\\'s'\r\nECHO 'a\\b'\r\nECHO '\\x41'\r\n"}},
      {"InlineEmptyQuotes", {"ECHO \"\"\r\n"}},
      {"InlineQuoteMidToken", {"ECHO a\"b c\"\r\n"}},
      {"InlineQuoteThenText", {"ECHO \"a\"b\r\n"}},
      {"InlineBackslashAtEnd", {"ECHO \"abc\\\r\n"}},
      {"InlineVerticalTab", {"\vPING\r\nECHO a\vb\r\n"}},
      {"InlineLoneCr", {"PING\rX\n", "ECHO a\rb\r\n"}},
      {"InlineHighBytes", {"ECHO \xff\xfe\r\n"}},
      {"InlineTab", {"ECHO\t\"x\"\r\n"}},
      {"BlankLines", {"   \r\n\n\r\n\r\r\nPING\r\n"}},
      // Binary-safe arguments and pipelines split across reads.
      {"BinaryEcho", {std::string("*2\r\n$4\r\nECHO\r\n$6\r\na\r\n\0b\n\r\n", 26)}},
      {"PipelineSplit",
       {"*1\r\n$4\r\nPI", "NG\r\nPING\r", "\n*2\r\n$4\r\nECHO\r\n$3\r\nx", "yz\r\n"}},
      {"CommandsBeforeError", {"PING\r\n*1\r\n$4\r\nPING\r\n*x\r\n"}},
      {"BulkThenInlineTooBig", {"*1\r\n$4\r\nPING" + big}},
  };
}

class RespVsRedisTest : public ::testing::TestWithParam<Case> {
 protected:
  static void SetUpTestSuite() {
    open_ = std::make_unique<RedisServer>(std::vector<std::string>{});
    secured_ = std::make_unique<RedisServer>(std::vector<std::string>{"--requirepass", "secret"});
  }
  static void TearDownTestSuite() {
    open_.reset();
    secured_.reset();
  }
  static std::unique_ptr<RedisServer> open_;
  static std::unique_ptr<RedisServer> secured_;
};

std::unique_ptr<RedisServer> RespVsRedisTest::open_;
std::unique_ptr<RedisServer> RespVsRedisTest::secured_;

TEST_P(RespVsRedisTest, SameBytesAndSameClose) {
  ASSERT_TRUE(open_->ready() && secured_->ready())
      << "could not start redis-server 7.0 (install it with tools/install-deps.sh --test)";
  const Case& c = GetParam();
  const std::optional<Transcript> keg = AskKeg(c.chunks, c.auth_required);
  ASSERT_TRUE(keg.has_value()) << "case uses a command the test does not model";
  const Transcript redis = AskRedis(c.auth_required ? secured_->port() : open_->port(), c.chunks);
  EXPECT_EQ(*keg, redis);
}

INSTANTIATE_TEST_SUITE_P(Redis70, RespVsRedisTest, ::testing::ValuesIn(Cases()),
                         [](const auto& p) { return std::string(p.param.name); });

}  // namespace
}  // namespace keg::resp
