#include "resp/request_parser.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "support/parse_driver.h"

// ---- Allocation tracking: the largest single allocation made while tracking is on. ------------
// ThreadSanitizer defines operator new itself, so under TSan the replacement (and the one test that
// needs it) is left out; the Release and ASan builds run it.
#if defined(__SANITIZE_THREAD__)
#define KEG_TRACK_ALLOCATIONS 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KEG_TRACK_ALLOCATIONS 0
#endif
#endif
#ifndef KEG_TRACK_ALLOCATIONS
#define KEG_TRACK_ALLOCATIONS 1
#endif

namespace {
std::atomic<bool> g_track_allocations{false};
std::atomic<size_t> g_largest_allocation{0};
}  // namespace

#if KEG_TRACK_ALLOCATIONS
namespace {
void* TrackedAlloc(size_t size) {
  if (g_track_allocations.load(std::memory_order_relaxed)) {
    size_t seen = g_largest_allocation.load(std::memory_order_relaxed);
    while (size > seen && !g_largest_allocation.compare_exchange_weak(seen, size)) {
    }
  }
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(size_t size) { return TrackedAlloc(size); }
void* operator new[](size_t size) { return TrackedAlloc(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
#endif

namespace keg::resp {
namespace {

using testing::EncodeRequest;
using testing::ParseChunks;
using testing::ParseOutcome;
using testing::ParsePieces;
using Args = std::vector<std::string>;

ParseOutcome Parse(std::string_view input) { return ParseChunks({input}); }

ParseOutcome Commands(std::vector<Args> commands, std::string error = {}) {
  return ParseOutcome{std::move(commands), std::move(error)};
}

// ---- Well-formed input ---------------------------------------------------------------------

TEST(RequestParserTest, MultibulkCommand) {
  EXPECT_EQ(Parse("*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n"), Commands({{"GET", "key"}}));
}

// The look-ahead a connection does before running a pipeline: second arguments of whole commands
// only, stopping at a partial or inline one, never reading past the input; the Parse calls that
// reach those commands return them as parsed, and a Parse elsewhere drops them.
TEST(RequestParserTest, ParseAheadOfWholeCommands) {
  std::string in =
      "*3\r\n$4\r\nHGET\r\n$2\r\nh1\r\n$1\r\nf\r\n"
      "*1\r\n$4\r\nPING\r\n"
      "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n"
      "*2\r\n$3\r\nGET\r\n$5\r\nparti";
  std::string_view keys[8];
  std::string_view names[8];
  size_t scanned = 0;
  keg::resp::RequestParser parser;
  ASSERT_EQ(parser.ParseAhead(in, keys, &scanned, names), 3u);
  EXPECT_EQ(keys[0], "h1");
  EXPECT_EQ(keys[1], "");
  EXPECT_EQ(keys[2], "key");
  EXPECT_EQ(names[0], "HGET");
  EXPECT_EQ(names[1], "PING");
  EXPECT_EQ(names[2], "GET");
  EXPECT_EQ(scanned, in.find("*2\r\n$3\r\nGET\r\n$5"));
  std::vector<Args> got;
  size_t pos = 0;
  for (;;) {
    const keg::resp::ParseResult r = parser.Parse(std::span<char>(in.data() + pos, in.size() - pos));
    pos += r.consumed;
    if (r.status != keg::resp::ParseStatus::kCommand) break;
    got.emplace_back(parser.args().begin(), parser.args().end());
  }
  EXPECT_EQ(got, (std::vector<Args>{{"HGET", "h1", "f"}, {"PING"}, {"GET", "key"}}));
  EXPECT_EQ(pos, scanned);  // the partial one waits
  in += "\r\n";
  ASSERT_EQ(parser.Parse(std::span<char>(in.data() + pos, in.size() - pos)).status, keg::resp::ParseStatus::kCommand);
  EXPECT_EQ(parser.args()[1], "parti");
  // At most keys.size() commands.
  ASSERT_EQ(parser.ParseAhead(in, std::span<std::string_view>(keys, 1), &scanned), 1u);
  EXPECT_EQ(scanned, in.find("*1\r\n"));
  // The buffer moved (a copy elsewhere): the kept command is not taken from the old place.
  std::string moved = in;
  ASSERT_EQ(parser.Parse(std::span<char>(moved.data(), moved.size())).status, keg::resp::ParseStatus::kCommand);
  EXPECT_EQ(parser.args()[1].data(), moved.data() + moved.find("h1"));
  // Inline commands and bad lengths stop it: the real parser decides about those.
  for (std::string bad : {"GET key\r\n", "*2\r\n$3\r\nGET\r\n$-1\r\n", "*2\r\n$3\r\nGET\r\n$99999999999\r\nk\r\n",
                          "*1\r\n$3\r\nGET\r\n*2\r\n$03\r\nGET\r\n$1\r\nk\r\n"}) {
    keg::resp::RequestParser p;
    const size_t n = p.ParseAhead(bad, keys, &scanned);
    EXPECT_LE(n, 1u) << bad;
    EXPECT_LE(scanned, bad.size());
  }
  // Past the unauthenticated limits: not parsed ahead while authentication is required.
  keg::resp::RequestParser unauth;
  unauth.set_auth_required(true);
  std::string big = "*2\r\n$3\r\nGET\r\n$" + std::to_string(unauth.limits().unauth_max_bulk_len + 1) + "\r\n" +
                    std::string(static_cast<size_t>(unauth.limits().unauth_max_bulk_len) + 1, 'k') + "\r\n";
  EXPECT_EQ(unauth.ParseAhead(big, keys, &scanned), 0u);
}

TEST(RequestParserTest, PipelinedCommandsComeOutInOrder) {
  EXPECT_EQ(Parse("*1\r\n$4\r\nPING\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$1\r\nx\r\n"),
            Commands({{"PING"}, {"PING"}, {"ECHO", "x"}}));
}

TEST(RequestParserTest, ArgumentsAreViewsIntoTheCallersBuffer) {
  std::string buffer = "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
  RequestParser parser;
  const ParseResult r = parser.Parse(std::span<char>(buffer));
  ASSERT_EQ(r.status, ParseStatus::kCommand);
  EXPECT_EQ(r.consumed, buffer.size());
  ASSERT_EQ(parser.args().size(), 2u);
  EXPECT_EQ(parser.args()[1].data(), buffer.data() + 17);
}

TEST(RequestParserTest, BinaryArgumentsWithCrlfAndNul) {
  const std::string value("a\r\nb\0c\r\n", 8);
  EXPECT_EQ(Parse(EncodeRequest({"SET", std::string("k\0\n", 3), value})),
            Commands({{"SET", std::string("k\0\n", 3), value}}));
}

TEST(RequestParserTest, EmptyBulkArgument) {
  EXPECT_EQ(Parse("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"), Commands({{"SET", "k", ""}}));
}

TEST(RequestParserTest, EmptyLinesAndEmptyMultibulksProduceNothing) {
  EXPECT_EQ(Parse("\r\n\n   \r\n*0\r\n*-1\r\n*-10\r\nPING\r\n"), Commands({{"PING"}}));
  EXPECT_EQ(Parse("\r\n"), Commands({}));
  EXPECT_EQ(Parse("\r\r\n"), Commands({}));
}

TEST(RequestParserTest, ConsumedCountsSkippedLinesEvenWithoutACommand) {
  std::string buffer = "\r\n*0\r\n*1\r\n$4\r\nPI";
  RequestParser parser;
  const ParseResult r = parser.Parse(std::span<char>(buffer));
  EXPECT_EQ(r.status, ParseStatus::kNeedMore);
  EXPECT_EQ(r.consumed, 6u);  // the empty line and *0, not the partial PING
}

// Redis skips the two bytes after a payload and after a length line without looking at them.
TEST(RequestParserTest, BytesAfterPayloadAreSkippedLikeRedis) {
  EXPECT_EQ(Parse("*1\r\n$4\r\nPINGxx*1\rX$4\r\nPING\r\n"), Commands({{"PING"}, {"PING"}}));
}

TEST(RequestParserTest, LengthsAtTheLimitsAreAccepted) {
  // Accepted and waiting for the data: no error, and (see HugeDeclaredLengths) no allocation.
  EXPECT_EQ(Parse("*2147483647\r\n"), Commands({}));
  EXPECT_EQ(Parse("*1\r\n$536870912\r\n"), Commands({}));
}

// Found by the fuzzer: a `*N` line split across reads left its scan position behind when the fast
// path completed the command, so the next line's scan skipped a NUL and looped forever.
TEST(RequestParserTest, Regression_StaleScanAfterSplitCountLine) {
  using namespace std::string_literals;
  const std::string second = "\r\n$4\r\nPING\r\nA\0BCD\r\n"s;
  EXPECT_EQ(ParseChunks({"*1", second}), Commands({{"PING"}}));
}

// ---- Inline commands -------------------------------------------------------------------------

TEST(RequestParserTest, InlineWithCrlfOrBareLf) {
  EXPECT_EQ(Parse("PING\r\nECHO hi\n"), Commands({{"PING"}, {"ECHO", "hi"}}));
}

TEST(RequestParserTest, InlineSplitsOnSpacesTabsAndLoneCr) {
  EXPECT_EQ(Parse("SET\tk   v\r\n"), Commands({{"SET", "k", "v"}}));
  EXPECT_EQ(Parse("PING\rX\n"), Commands({{"PING", "X"}}));
  EXPECT_EQ(Parse("ECHO a\rb\r\n"), Commands({{"ECHO", "a", "b"}}));
}

TEST(RequestParserTest, InlineQuotingAsSdssplitargs) {
  EXPECT_EQ(Parse("ECHO \"a b\"\r\n"), Commands({{"ECHO", "a b"}}));
  EXPECT_EQ(Parse("ECHO \"a\\x41b\\n\"\r\n"), Commands({{"ECHO", "aAb\n"}}));
  EXPECT_EQ(Parse("ECHO \"\\r\\t\\b\\a\\\\\\\"\"\r\n"), Commands({{"ECHO", "\r\t\b\a\\\""}}));
  EXPECT_EQ(Parse("ECHO \"\\xZZ\" \"\\x4\" \"\\x\"\r\n"), Commands({{"ECHO", "xZZ", "x4", "x"}}));
  EXPECT_EQ(Parse("ECHO 'it\\'s' 'a\\b' '\\x41'\r\n"),
            Commands({{"ECHO", "it's", "a\\b", "\\x41"}}));
  EXPECT_EQ(Parse("ECHO \"\" ''\r\n"), Commands({{"ECHO", "", ""}}));
  EXPECT_EQ(Parse("ECHO a\"b c\"\r\n"), Commands({{"ECHO", "ab c"}}));
  EXPECT_EQ(Parse("ECHO\t\"x\"\r\n"), Commands({{"ECHO", "x"}}));
}

TEST(RequestParserTest, InlineVerticalTabIsSkippedBeforeATokenButKeptInside) {
  EXPECT_EQ(Parse("\vPING\r\n"), Commands({{"PING"}}));
  EXPECT_EQ(Parse("ECHO a\vb\r\n"), Commands({{"ECHO", "a\vb"}}));
}

TEST(RequestParserTest, InlineHighBytesAreOrdinary) {
  EXPECT_EQ(Parse("ECHO \xff\xfe\r\n"), Commands({{"ECHO", "\xff\xfe"}}));
}

TEST(RequestParserTest, InlineWithNulWaitsForMoreLikeRedis) {
  // Redis looks for the newline with strchr, which stops at NUL: the line never ends.
  EXPECT_EQ(Parse(std::string_view("PING\0\r\n", 7)), Commands({}));
  EXPECT_EQ(Parse(std::string_view("ECHO \"a\0b\"\r\n", 12)), Commands({}));
  EXPECT_EQ(Parse(std::string_view("*1\r\n$4\r\nPING\r\n\0", 15)), Commands({{"PING"}}));
}

// ---- Protocol errors: the exact text of clients.md §2.2 and reliability.md §8.4 --------------

struct ErrorCase {
  const char* name;
  std::string input;
  ParseOutcome expected;
  bool auth_required = false;
};

void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.name; }

std::vector<ErrorCase> ErrorCases() {
  const std::string big_line(70000, 'a');
  return {
      {"InvalidMultibulkLength", "*x\r\n",
       Commands({}, "Protocol error: invalid multibulk length")},
      {"MultibulkAboveIntMax", "*3000000000\r\n",
       Commands({}, "Protocol error: invalid multibulk length")},
      {"MultibulkIntMaxPlusOne", "*2147483648\r\n",
       Commands({}, "Protocol error: invalid multibulk length")},
      {"MultibulkLeadingZero", "*01\r\n$4\r\nPING\r\n",
       Commands({}, "Protocol error: invalid multibulk length")},
      {"MultibulkPlusSign", "*+1\r\n", Commands({}, "Protocol error: invalid multibulk length")},
      {"MultibulkTrailingSpace", "*1 \r\n",
       Commands({}, "Protocol error: invalid multibulk length")},
      {"MultibulkMinusZero", "*-0\r\n", Commands({}, "Protocol error: invalid multibulk length")},
      {"MultibulkEmpty", "*\r\n", Commands({}, "Protocol error: invalid multibulk length")},
      {"MultibulkTooLong", "*" + std::string(30, '1') + "\r\n",
       Commands({}, "Protocol error: invalid multibulk length")},
      {"ExpectedDollarGotPlus", "*1\r\n+PING\r\n",
       Commands({}, "Protocol error: expected '$', got '+'")},
      {"ExpectedDollarGotF", "*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n",
       Commands({}, "Protocol error: expected '$', got 'f'")},
      {"ExpectedDollarForBareWord", "*1\r\nfoo\r\n",
       Commands({}, "Protocol error: expected '$', got 'f'")},
      {"ExpectedDollarGotCrShownAsSpace", "*1\r\n\r\n",
       Commands({}, "Protocol error: expected '$', got ' '")},
      {"ExpectedDollarGotLfShownAsSpace", "*1\r\n\n\r\n",
       Commands({}, "Protocol error: expected '$', got ' '")},
      {"NegativeBulkLength", "*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n",
       Commands({}, "Protocol error: invalid bulk length")},
      {"NullBulkInRequest", "*1\r\n$-1\r\n", Commands({}, "Protocol error: invalid bulk length")},
      {"BulkAboveProtoMaxBulkLen", "*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$2000000000\r\n",
       Commands({}, "Protocol error: invalid bulk length")},
      {"BulkOneAboveDefaultLimit", "*1\r\n$536870913\r\n",
       Commands({}, "Protocol error: invalid bulk length")},
      {"BulkNotANumber", "*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$blabla\r\n",
       Commands({}, "Protocol error: invalid bulk length")},
      {"BulkLeadingZero", "*1\r\n$04\r\nPING\r\n",
       Commands({}, "Protocol error: invalid bulk length")},
      {"BulkMinusZero", "*1\r\n$-0\r\n", Commands({}, "Protocol error: invalid bulk length")},
      {"BulkEmptyLength", "*1\r\n$\r\n", Commands({}, "Protocol error: invalid bulk length")},
      {"TooBigInlineRequest", big_line, Commands({}, "Protocol error: too big inline request")},
      {"TooBigInlineAfterNul", std::string(1, '\0') + big_line,
       Commands({}, "Protocol error: too big inline request")},
      {"TooBigMbulkCountString", "*1" + std::string(65536, '1'),
       Commands({}, "Protocol error: too big mbulk count string")},
      {"TooBigMbulkCountAfterNul", std::string("*\0", 2) + big_line,
       Commands({}, "Protocol error: too big mbulk count string")},
      {"TooBigBulkCountString", "*1\r\n$" + std::string(65540, '1'),
       Commands({}, "Protocol error: too big bulk count string")},
      {"TooBigBulkCountAfterNul", std::string("*1\r\n$\0", 6) + big_line,
       Commands({}, "Protocol error: too big bulk count string")},
      {"UnbalancedDoubleQuote", "SET \"a b\r\n",
       Commands({}, "Protocol error: unbalanced quotes in request")},
      {"UnbalancedTripleQuotes", "set \"\"\"test-key\"\"\" test-value\r\n",
       Commands({}, "Protocol error: unbalanced quotes in request")},
      {"QuoteFollowedByText", "ECHO \"a\"b\r\n",
       Commands({}, "Protocol error: unbalanced quotes in request")},
      {"SingleQuoteFollowedByText", "ECHO 'a'b\r\n",
       Commands({}, "Protocol error: unbalanced quotes in request")},
      {"BackslashAtEndOfQuote", "ECHO \"abc\\\r\n",
       Commands({}, "Protocol error: unbalanced quotes in request")},
      {"UnterminatedSingleQuote", "ECHO 'abc\r\n",
       Commands({}, "Protocol error: unbalanced quotes in request")},
      {"UnauthenticatedMultibulkLength", "*11\r\n",
       Commands({}, "Protocol error: unauthenticated multibulk length"), true},
      {"UnauthenticatedBulkLength", "*1\r\n$16385\r\n",
       Commands({}, "Protocol error: unauthenticated bulk length"), true},
      {"CommandsBeforeTheErrorStillCount", "PING\r\n*1\r\n$4\r\nPING\r\n*x\r\n",
       Commands({{"PING"}, {"PING"}}, "Protocol error: invalid multibulk length")},
      {"BulkThenInlineTooBig", "*1\r\n$1\r\nx" + big_line,
       Commands({{"x"}}, "Protocol error: too big inline request")},
  };
}

class RequestParserErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(RequestParserErrorTest, ExactRedisText) {
  const ErrorCase& c = GetParam();
  EXPECT_EQ(ParseChunks({c.input}, {}, c.auth_required), c.expected);
}

// The same input split at every byte position parses identically (for long inputs: every
// position near the ends, and a stride through the middle).
TEST_P(RequestParserErrorTest, SameOutcomeAtEverySplit) {
  const ErrorCase& c = GetParam();
  const size_t n = c.input.size();
  for (size_t split = 0; split <= n; ++split) {
    if (n > 512 && split > 256 && split < n - 256 && split % 997 != 0) continue;
    ASSERT_EQ(ParsePieces(c.input, {split}, {}, c.auth_required), c.expected) << "split " << split;
  }
  if (n <= 512) {
    EXPECT_EQ(ParsePieces(c.input, std::vector<size_t>(n, 1), {}, c.auth_required), c.expected)
        << "byte by byte";
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, RequestParserErrorTest, ::testing::ValuesIn(ErrorCases()),
                         [](const auto& p) { return std::string(p.param.name); });

TEST(RequestParserTest, InlineLimitBoundaryMatchesRedis) {
  // Redis errors once more than 64 KiB are pending without a newline: 65536 bytes then '\n' is
  // fine, 65537 is not; a '\r' before the '\n' counts as pending.
  EXPECT_EQ(ParseChunks({std::string(65536, 'a'), "\n"}).error, "");
  EXPECT_EQ(ParseChunks({std::string(65535, 'a') + "\r", "\n"}).error, "");
  EXPECT_EQ(ParseChunks({std::string(65537, 'a'), "\n"}).error,
            "Protocol error: too big inline request");
  // The limit only applies while no newline has come: a longer line that arrives in one piece is
  // parsed (Redis too; how much arrives at once depends on its 16 KiB reads, which keg imitates).
  EXPECT_EQ(ParseChunks({std::string(65537, 'a') + "\n"}).error, "");
  EXPECT_EQ(ParseChunks({"*" + std::string(70000, '1') + "\r\n"}).error,
            "Protocol error: invalid multibulk length");
}

TEST(RequestParserTest, UnauthenticatedLimitsAllowUpToTheBoundary) {
  EXPECT_EQ(ParseChunks({"*10\r\n"}, {}, true), Commands({}));
  EXPECT_EQ(ParseChunks({"*1\r\n$16384\r\n"}, {}, true), Commands({}));
  EXPECT_EQ(ParseChunks({"*-5\r\n*1\r\n$4\r\nPING\r\n"}, {}, true), Commands({{"PING"}}));
}

TEST(RequestParserTest, AuthRequiredCanBeLiftedMidConnection) {
  RequestParser parser;
  parser.set_auth_required(true);
  std::string big = EncodeRequest({"SET", "k", std::string(20000, 'v')});
  EXPECT_EQ(parser.Parse(std::span<char>(big)).status, ParseStatus::kError);
  parser.set_auth_required(false);
  EXPECT_EQ(parser.Parse(std::span<char>(big)).status, ParseStatus::kCommand);
}

TEST(RequestParserTest, LimitsAreConfigurable) {
  ParserLimits limits;
  limits.max_bulk_len = 10;
  limits.max_multibulk_len = 3;
  limits.max_inline_len = 16;
  EXPECT_EQ(ParseChunks({EncodeRequest({"SET", "k", std::string(10, 'v')})}, limits),
            Commands({{"SET", "k", std::string(10, 'v')}}));
  EXPECT_EQ(ParseChunks({EncodeRequest({"SET", "k", std::string(11, 'v')})}, limits).error,
            "Protocol error: invalid bulk length");
  EXPECT_EQ(ParseChunks({"*4\r\n"}, limits).error, "Protocol error: invalid multibulk length");
  EXPECT_EQ(ParseChunks({std::string(17, 'a')}, limits).error,
            "Protocol error: too big inline request");
}

// ---- Huge declared lengths and resumption ---------------------------------------------------

TEST(RequestParserTest, HugeDeclaredLengthsDoNotAllocate) {
  if (!KEG_TRACK_ALLOCATIONS) GTEST_SKIP() << "allocation tracking is unavailable under TSan";
  for (std::string input : {std::string("*2147483647\r\n"), std::string("*1\r\n$536870912\r\n"),
                            std::string("*2147483647\r\n$536870912\r\n")}) {
    RequestParser parser;
    g_largest_allocation = 0;
    g_track_allocations = true;
    const ParseResult r = parser.Parse(std::span<char>(input));
    g_track_allocations = false;
    EXPECT_EQ(r.status, ParseStatus::kNeedMore) << input;
    EXPECT_LT(g_largest_allocation.load(), 4096u) << input;
  }
}

TEST(RequestParserTest, BytesWantedAnnouncesTheWholeBulk) {
  std::string buffer = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\nxyz";
  RequestParser parser;
  const ParseResult r = parser.Parse(std::span<char>(buffer));
  EXPECT_EQ(r.status, ParseStatus::kNeedMore);
  EXPECT_EQ(r.consumed, 0u);
  // From the first byte of the command to the end of the payload's trailing CRLF.
  EXPECT_EQ(parser.BytesWanted(), buffer.size() - 3 + 100000 + 2);
}

TEST(RequestParserTest, ResumesAfterTheBufferMoves) {
  // The connection compacts its buffer between reads; offsets must survive the move.
  const std::string request = EncodeRequest({"SET", "key", std::string(3000, 'v')});
  RequestParser parser;
  std::string first = "*1\r\n$4\r\nPING\r\n" + request.substr(0, 1500);
  ParseResult r = parser.Parse(std::span<char>(first));
  ASSERT_EQ(r.status, ParseStatus::kCommand);
  r = parser.Parse(std::span<char>(first.data() + r.consumed, first.size() - r.consumed));
  ASSERT_EQ(r.status, ParseStatus::kNeedMore);
  std::string second = request;  // a fresh allocation: the bytes moved
  r = parser.Parse(std::span<char>(second));
  ASSERT_EQ(r.status, ParseStatus::kCommand);
  EXPECT_EQ(r.consumed, request.size());
  ASSERT_EQ(parser.args().size(), 3u);
  EXPECT_EQ(parser.args()[2], std::string(3000, 'v'));
  EXPECT_EQ(parser.args()[2].data(), second.data() + request.size() - 3002);
}

TEST(RequestParserTest, ManyArgumentsByteByByte) {
  Args args = {"MSET"};
  for (int i = 0; i < 200; ++i) args.push_back("k" + std::to_string(i));
  const std::string request = EncodeRequest(args);
  EXPECT_EQ(ParsePieces(request, std::vector<size_t>(request.size(), 1)), Commands({args}));
}

TEST(RequestParserTest, WellFormedPipelineAtEverySplit) {
  const std::string input = EncodeRequest({"SET", "a\r\nb", std::string("\0x", 2)}) +
                            "ECHO \"q \\x41\"\r\n\r\n*0\r\n" + EncodeRequest({"GET", ""}) +
                            "PING\n";
  const ParseOutcome whole = Parse(input);
  ASSERT_EQ(whole.commands.size(), 4u);
  for (size_t split = 0; split <= input.size(); ++split) {
    for (size_t second = split; second <= input.size(); second += 7) {
      ASSERT_EQ(ParsePieces(input, {split, second - split}), whole) << split << "," << second;
    }
  }
}

}  // namespace
}  // namespace keg::resp
