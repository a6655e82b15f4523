#include "resp/reply_buffer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

namespace keg::resp {
namespace {

// Everything pending, as the bytes a gathered write would send.
std::string Pending(const ReplyBuffer& out) {
  std::vector<iovec> iov(1024);
  const size_t n = out.Gather(iov);
  std::string bytes;
  for (size_t i = 0; i < n; ++i)
    bytes.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
  return bytes;
}

std::string Encode(Protocol protocol, void (*fill)(ReplyBuffer&)) {
  ReplyBuffer out;
  out.set_protocol(protocol);
  fill(out);
  return Pending(out);
}

struct TypeCase {
  const char* name;
  void (*fill)(ReplyBuffer&);
  std::string resp2;
  std::string resp3;
};

void PrintTo(const TypeCase& c, std::ostream* os) { *os << c.name; }

class ReplyEncodingTest : public ::testing::TestWithParam<TypeCase> {};

TEST_P(ReplyEncodingTest, Resp2) {
  EXPECT_EQ(Encode(Protocol::kResp2, GetParam().fill), GetParam().resp2);
}
TEST_P(ReplyEncodingTest, Resp3) {
  EXPECT_EQ(Encode(Protocol::kResp3, GetParam().fill), GetParam().resp3);
}

// Expected bytes are Redis 7.0.15's (clients.md §2 and captures of ZSCORE, GET, INFO, HELLO).
INSTANTIATE_TEST_SUITE_P(
    Types, ReplyEncodingTest,
    ::testing::Values(
        TypeCase{"Simple", [](ReplyBuffer& o) { o.SimpleString("string"); }, "+string\r\n",
                 "+string\r\n"},
        TypeCase{"SimpleWithNewlines", [](ReplyBuffer& o) { o.SimpleString("a\r\nb"); },
                 "+a  b\r\n", "+a  b\r\n"},
        TypeCase{"Ok", [](ReplyBuffer& o) { o.Ok(); }, "+OK\r\n", "+OK\r\n"},
        TypeCase{"Error", [](ReplyBuffer& o) { o.Error("syntax error"); }, "-ERR syntax error\r\n",
                 "-ERR syntax error\r\n"},
        TypeCase{"ErrorWithOwnCode",
                 [](ReplyBuffer& o) { o.Error("-NOAUTH Authentication required."); },
                 "-NOAUTH Authentication required.\r\n", "-NOAUTH Authentication required.\r\n"},
        TypeCase{"ErrorNewlinesBecomeSpaces",
                 [](ReplyBuffer& o) { o.Error("unknown command 'a\r\nb'"); },
                 "-ERR unknown command 'a  b'\r\n", "-ERR unknown command 'a  b'\r\n"},
        TypeCase{"Integer", [](ReplyBuffer& o) { o.Integer(-9223372036854775807LL - 1); },
                 ":-9223372036854775808\r\n", ":-9223372036854775808\r\n"},
        TypeCase{"Bulk", [](ReplyBuffer& o) { o.Bulk(std::string("a\r\n\0", 4)); },
                 std::string("$4\r\na\r\n\0\r\n", 10), std::string("$4\r\na\r\n\0\r\n", 10)},
        TypeCase{"EmptyBulk", [](ReplyBuffer& o) { o.Bulk(""); }, "$0\r\n\r\n", "$0\r\n\r\n"},
        TypeCase{"Null", [](ReplyBuffer& o) { o.Null(); }, "$-1\r\n", "_\r\n"},
        TypeCase{"NullArray", [](ReplyBuffer& o) { o.NullArray(); }, "*-1\r\n", "_\r\n"},
        TypeCase{"Array",
                 [](ReplyBuffer& o) {
                   o.ArrayHeader(2);
                   o.Bulk("0");
                   o.ArrayHeader(0);
                 },
                 "*2\r\n$1\r\n0\r\n*0\r\n", "*2\r\n$1\r\n0\r\n*0\r\n"},
        TypeCase{"Map",
                 [](ReplyBuffer& o) {
                   o.MapHeader(1);
                   o.Bulk("proto");
                   o.Integer(3);
                 },
                 "*2\r\n$5\r\nproto\r\n:3\r\n", "%1\r\n$5\r\nproto\r\n:3\r\n"},
        TypeCase{"Set",
                 [](ReplyBuffer& o) {
                   o.SetHeader(1);
                   o.Bulk("off");
                 },
                 "*1\r\n$3\r\noff\r\n", "~1\r\n$3\r\noff\r\n"},
        TypeCase{"Double", [](ReplyBuffer& o) { o.Double(0.1); }, "$19\r\n0.10000000000000001\r\n",
                 ",0.10000000000000001\r\n"},
        TypeCase{"DoubleInfinity", [](ReplyBuffer& o) { o.Double(-HUGE_VAL); }, "$4\r\n-inf\r\n",
                 ",-inf\r\n"},
        TypeCase{"BooleanTrue", [](ReplyBuffer& o) { o.Boolean(true); }, ":1\r\n", "#t\r\n"},
        TypeCase{"BooleanFalse", [](ReplyBuffer& o) { o.Boolean(false); }, ":0\r\n", "#f\r\n"},
        TypeCase{"Verbatim", [](ReplyBuffer& o) { o.Verbatim("# Keyspace\r\n"); },
                 "$12\r\n# Keyspace\r\n\r\n", "=16\r\ntxt:# Keyspace\r\n\r\n"},
        TypeCase{"Raw", [](ReplyBuffer& o) { o.Raw("+PONG\r\n"); }, "+PONG\r\n", "+PONG\r\n"}),
    [](const auto& p) { return std::string(p.param.name); });

// ---- External ranges and their keepalives ---------------------------------------------------

TEST(ReplyBufferTest, SmallValuesAreCopiedEvenWithAKeepalive) {
  ReplyBuffer out(16);
  auto pin = std::make_shared<int>(1);
  std::string value = "short";
  out.Bulk(value, pin);
  EXPECT_EQ(pin.use_count(), 1);  // not held: the bytes were copied
  value[0] = 'X';
  EXPECT_EQ(Pending(out), "$5\r\nshort\r\n");
}

TEST(ReplyBufferTest, LargeValuesAreSentFromWhereTheyLie) {
  ReplyBuffer out(16);
  auto pin = std::make_shared<int>(1);
  const std::string value(100, 'v');
  out.Ok();
  out.Bulk(value, pin);
  out.Integer(7);
  EXPECT_EQ(pin.use_count(), 2);
  std::vector<iovec> iov(8);
  const size_t n = out.Gather(iov);
  ASSERT_EQ(n, 3u);  // "+OK\r\n$100\r\n", the value itself, "\r\n:7\r\n"
  EXPECT_EQ(iov[1].iov_base, value.data());
  EXPECT_EQ(Pending(out), "+OK\r\n$100\r\n" + value + "\r\n:7\r\n");
}

TEST(ReplyBufferTest, LargeRawBytesAreSentFromWhereTheyLieWithoutACrlf) {
  ReplyBuffer out(16);
  auto rdb = std::make_shared<std::string>(100, 'r');  // a snapshot after its "$100" line
  out.Raw("$100\r\n");
  out.Raw(*rdb, rdb);
  EXPECT_EQ(rdb.use_count(), 2);
  std::vector<iovec> iov(8);
  ASSERT_EQ(out.Gather(iov), 2u);
  EXPECT_EQ(iov[1].iov_base, rdb->data());
  EXPECT_EQ(Pending(out), "$100\r\n" + *rdb);
  out.Consume(out.size());
  EXPECT_EQ(rdb.use_count(), 1);
  out.Raw("+OK\r\n", rdb);  // small: copied, not held
  EXPECT_EQ(rdb.use_count(), 1);
  EXPECT_EQ(Pending(out), "+OK\r\n");
}

TEST(ReplyBufferTest, KeepaliveIsReleasedOnlyWhenItsBytesAreConsumed) {
  ReplyBuffer out(16);
  auto pin = std::make_shared<int>(1);
  out.Bulk("");
  const std::string value(64, 'v');
  out.Bulk(value, pin);
  const size_t header = 6 + 5;  // "$0\r\n\r\n" + "$64\r\n"
  out.Consume(header + 63);
  EXPECT_EQ(pin.use_count(), 2);  // one byte of the value is still unsent
  out.Consume(1);
  EXPECT_EQ(pin.use_count(), 1);
  EXPECT_EQ(Pending(out), "\r\n");
  out.Consume(2);
  EXPECT_TRUE(out.empty());
}

TEST(ReplyBufferTest, ClearReleasesKeepalives) {
  ReplyBuffer out(16);
  auto pin = std::make_shared<int>(1);
  out.Bulk(std::string(32, 'v'), pin);
  out.Clear();
  EXPECT_EQ(pin.use_count(), 1);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(Pending(out), "");
}

TEST(ReplyBufferTest, TakeSinceHoldsBackWhatWasAddedAfterAMark) {
  ReplyBuffer out(16);
  auto pin = std::make_shared<int>(1);
  out.Ok();
  const uint64_t mark = out.added();
  const std::string value(100, 'v');
  out.Bulk(value, pin);  // referenced, not copied
  out.Integer(7);
  const std::string taken = out.TakeSince(mark);
  EXPECT_EQ(taken, "$100\r\n" + value + "\r\n:7\r\n");
  EXPECT_EQ(pin.use_count(), 1);  // copied out: the range is released
  EXPECT_EQ(Pending(out), "+OK\r\n");
  EXPECT_EQ(out.added(), mark + taken.size());
  out.Integer(1);  // what follows is not glued to a taken segment
  out.Raw(taken);
  EXPECT_EQ(Pending(out), "+OK\r\n:1\r\n" + taken);

  // Bytes written (consumed) since the mark stay written: only the pending rest is taken.
  ReplyBuffer w(16);
  const uint64_t m = w.added();
  w.SimpleString("abcdef");
  w.Consume(3);
  EXPECT_EQ(w.TakeSince(m), "cdef\r\n");  // "+ab" was written
  EXPECT_TRUE(w.empty());
  EXPECT_EQ(w.TakeSince(m), "");
  w.Ok();
  EXPECT_EQ(Pending(w), "+OK\r\n");
}

// ---- Gather / Consume across chunks ---------------------------------------------------------

TEST(ReplyBufferTest, PartialConsumeResumesMidSlice) {
  ReplyBuffer out;
  out.Bulk("hello");
  out.Consume(6);  // "$5\r\nhe"
  EXPECT_EQ(out.size(), 5u);
  EXPECT_EQ(Pending(out), "llo\r\n");
}

TEST(ReplyBufferTest, GatherStopsAtTheSliceLimit) {
  ReplyBuffer out(1);
  auto pin = std::make_shared<int>(1);
  const std::string value = "vv";
  for (int i = 0; i < 5; ++i) out.Bulk(value, pin);
  std::vector<iovec> iov(4);
  EXPECT_EQ(out.Gather(iov), 4u);
}

TEST(ReplyBufferTest, AppendingDuringAWriteKeepsGatheredSlicesValid) {
  ReplyBuffer out;
  out.Bulk(std::string(1000, 'a'));
  std::vector<iovec> iov(4);
  ASSERT_EQ(out.Gather(iov), 1u);
  const std::string in_flight(static_cast<const char*>(iov[0].iov_base), iov[0].iov_len);
  // Many more replies than one chunk holds arrive while the write is "in flight".
  for (int i = 0; i < 100; ++i) out.Bulk(std::string(1000, 'b'));
  EXPECT_EQ(std::string(static_cast<const char*>(iov[0].iov_base), iov[0].iov_len), in_flight);
  out.Consume(in_flight.size());
  EXPECT_EQ(out.size(), 100u * (1000 + 9));
}

TEST(ReplyBufferTest, LargeCopiesGetTheirOwnChunk) {
  ReplyBuffer out;
  const std::string big(3 * ReplyBuffer::kChunkSize, 'x');
  out.Ok();
  out.Bulk(big);
  out.Ok();
  EXPECT_EQ(Pending(out), "+OK\r\n$49152\r\n" + big + "\r\n+OK\r\n");
}

// A connection under steady load may never drain completely; consumed chunks must still be freed
// and the bytes must stay in order.
TEST(ReplyBufferTest, SteadyLoadNeverDrainsButStaysCorrect) {
  ReplyBuffer out;
  std::string expected;
  uint64_t next = 0;
  for (int round = 0; round < 2000; ++round) {
    for (int i = 0; i < 50; ++i) {
      const std::string v = std::to_string(next++);
      out.Bulk(v);
      expected += "$" + std::to_string(v.size()) + "\r\n" + v + "\r\n";
    }
    const std::string pending = Pending(out);
    ASSERT_EQ(pending, expected);
    const size_t sent = pending.size() - 7;  // always leave a little behind
    out.Consume(sent);
    expected.erase(0, sent);
  }
  EXPECT_LT(out.size(), 1000u);
  EXPECT_LE(out.capacity(), 2 * ReplyBuffer::kChunkSize);  // consumed chunks were freed
}

// Every way the pending bytes change, mixed at random against a plain string: a reply appended to
// the last run of chunk bytes, after a referenced value, after a partial or whole write, a new
// chunk, a drained buffer reused, Clear.
TEST(ReplyBufferTest, RandomAppendsAndWritesKeepTheBytesInOrder) {
  ReplyBuffer out(64);
  auto pin = std::make_shared<int>(1);
  const std::string big(200, 'R');  // referenced (over the threshold) when pinned
  std::string expected;
  uint64_t added = 0;  // every byte added, as ReplyBuffer::added() counts them
  uint64_t mark = 0;   // an earlier added(), for TakeSince
  auto expect = [&](const std::string& bytes) {
    expected += bytes;
    added += bytes.size();
  };
  uint32_t x = 2463534242u;
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
  };
  for (int step = 0; step < 20000; ++step) {
    switch (next() % 9) {
      case 0:
      case 1: {
        const std::string v(next() % 40, static_cast<char>('a' + next() % 26));
        out.Bulk(v);
        expect("$" + std::to_string(v.size()) + "\r\n" + v + "\r\n");
        break;
      }
      case 2:
        out.Bulk(big, pin);
        expect("$200\r\n" + big + "\r\n");
        break;
      case 3:
        out.Ok();
        expect("+OK\r\n");
        break;
      case 4: {
        const std::string v(ReplyBuffer::kChunkSize / 3 + next() % 100, 'c');  // fills chunks
        out.Bulk(v);
        expect("$" + std::to_string(v.size()) + "\r\n" + v + "\r\n");
        break;
      }
      case 5:
      case 6: {
        const size_t n = expected.empty() ? 0 : next() % (expected.size() + 1);
        out.Consume(n);
        expected.erase(0, n);
        break;
      }
      case 7:
        if (next() % 16 == 0) {
          out.Clear();
          expected.clear();
        } else {
          out.Integer(static_cast<int64_t>(next()));
          expect(":" + std::to_string(x) + "\r\n");
        }
        break;
      case 8: {  // what was added since the mark held back (the pending part of it), maybe added again
        const size_t n = static_cast<size_t>(std::min<uint64_t>(added - mark, expected.size()));
        const std::string taken = out.TakeSince(mark);
        ASSERT_EQ(taken, expected.substr(expected.size() - n)) << "step " << step;
        expected.erase(expected.size() - n);
        if (next() % 2 == 0) {
          out.Raw(taken);
          expect(taken);
        }
        break;
      }
    }
    if (next() % 8 == 0) mark = out.added();
    ASSERT_EQ(out.added(), added) << "step " << step;
    ASSERT_EQ(out.size(), expected.size()) << "step " << step;
    if (step % 16 == 0) {
      ASSERT_EQ(Pending(out), expected) << "step " << step;
    }
  }
  ASSERT_EQ(Pending(out), expected);
}

}  // namespace
}  // namespace keg::resp
