#include "server/rdb.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace keg::server::rdb {
namespace {

// Replaces the CRC of `payload` with the right one, so a test reaches the decoder.
std::string Reseal(std::string payload) {
  payload.resize(payload.size() - 8);
  const uint64_t crc = Crc64(0, payload);
  for (int i = 0; i < 8; ++i) payload.push_back(static_cast<char>((crc >> (8 * i)) & 0xFF));
  return payload;
}

TEST(Rdb, Crc64IsRedisJones) { EXPECT_EQ(Crc64(0, "123456789"), 0xe9c6d914c4b8d9caULL); }

// Crc64 takes eight bytes at a time: equal to the bit-at-a-time definition (reflected Jones) for
// every length and alignment, and continued across any split (Crc64(Crc64(0, a), b)).
TEST(Rdb, Crc64WordAtATimeMatchesBitAtATime) {
  auto reference = [](uint64_t crc, std::string_view bytes) {
    for (char c : bytes) {
      crc ^= static_cast<uint8_t>(c);
      for (int k = 0; k < 8; ++k) crc = (crc & 1) ? (crc >> 1) ^ 0x95ac9329ac4bc9b5ULL : crc >> 1;
    }
    return crc;
  };
  std::string data;
  for (int i = 0; i < 300; ++i) data.push_back(static_cast<char>(static_cast<uint8_t>((i * 131 + 7) & 0xFF)));
  for (size_t start = 0; start < 9; ++start) {
    for (size_t len = 0; start + len <= data.size(); len += 7) {
      const std::string_view bytes = std::string_view(data).substr(start, len);
      ASSERT_EQ(Crc64(0, bytes), reference(0, bytes)) << start << " " << len;
      const size_t split = len / 3;
      ASSERT_EQ(Crc64(Crc64(0, bytes.substr(0, split)), bytes.substr(split)), reference(0, bytes));
    }
  }
}

TEST(Rdb, DumpMatchesRedisEncodings) {
  // Bytes from redis-server 7.0.15: DUMP of "1", of "hello", of "12345678901" (too big for int32).
  EXPECT_EQ(DumpString("1").substr(0, 3), std::string("\x00\xc0\x01", 3));
  EXPECT_EQ(DumpString("hello").substr(0, 6), std::string("\x00\x05hello", 7).substr(0, 6));
  EXPECT_EQ(DumpString("12345678901")[1], '\x0b');  // raw, length 11
  EXPECT_EQ(DumpString(std::string(100, 'a'))[1], '\xc3');  // LZF
}

TEST(Rdb, RoundTrips) {
  for (const std::string& v : {std::string(), std::string("0"), std::string("-129"), std::string("007"),
                              std::string("2147483648"), std::string(100, 'a'), std::string(70000, 'x'),
                              std::string("\x00\xff\r\n", 4)}) {
    std::string out;
    ASSERT_EQ(LoadString(DumpString(v), 1 << 20, &out), LoadResult::kOk) << v;
    EXPECT_EQ(out, v);
  }
}

TEST(Rdb, RefusesBadPayloads) {
  std::string out;
  EXPECT_EQ(LoadString("short", 1 << 20, &out), LoadResult::kBadVersionOrChecksum);
  std::string p = DumpString("hello");
  p[3] ^= 1;  // body changed, CRC not
  EXPECT_EQ(LoadString(p, 1 << 20, &out), LoadResult::kBadVersionOrChecksum);
  EXPECT_EQ(LoadString(Reseal(p), 1 << 20, &out), LoadResult::kOk);  // a valid payload again
  std::string future = DumpString("x");
  future[future.size() - 10] = 11;  // RDB version 11
  EXPECT_EQ(LoadString(Reseal(future), 1 << 20, &out), LoadResult::kBadVersionOrChecksum);
  // A length past the end, an LZF block claiming 4 GB, an unknown encoding, a list.
  EXPECT_EQ(LoadString(Reseal(std::string("\x00\x3f" "abc" "\x0a\x00" "12345678", 15)), 1 << 20, &out),
            LoadResult::kBadFormat);
  EXPECT_EQ(LoadString(Reseal(std::string("\x00\xc3\x02\x80\xff\xff\xff\xff" "ab" "\x0a\x00" "12345678", 20)),
                       1 << 20, &out),
            LoadResult::kBadFormat);
  EXPECT_EQ(LoadString(Reseal(std::string("\x00\xc5" "\x0a\x00" "12345678", 12)), 1 << 20, &out),
            LoadResult::kBadFormat);
  EXPECT_EQ(LoadString(Reseal(std::string("\x12\x01" "\x0a\x00" "12345678", 12)), 1 << 20, &out),
            LoadResult::kUnsupportedType);
  // Longer than the limit.
  EXPECT_EQ(LoadString(DumpString(std::string(5000, 'a')), 1000, &out), LoadResult::kBadFormat);
}

TEST(Rdb, LoadFileReadsWhatFileKeyWrote) {
  std::string file;
  FileHeader(&file, 1700000000000);
  ASSERT_TRUE(FileFunctions(&file, DumpFunctions({"#!lua name=lib\nredis.register_function('f', function() return 1 end)"})));
  FileSelectDb(&file, 0);
  ASSERT_TRUE(FileKey(&file, "s", DumpString("hello"), 0));
  ASSERT_TRUE(FileKey(&file, "n", DumpString("12345"), 1700000001234));
  FileSelectDb(&file, 7);
  ASSERT_TRUE(FileKey(&file, "l", DumpList({"a", "b", "c"}), 0));
  ASSERT_TRUE(FileKey(&file, "h", DumpHash({"f", "v", "g", "w"}), 0));
  FileEnd(&file);
  std::vector<std::string> seen;
  std::vector<std::string> codes;
  FileVisitor v;
  v.function = [&](std::string code) {
    codes.push_back(std::move(code));
    return true;
  };
  v.key = [&](uint32_t db, std::string key, Loaded value, int64_t at) {
    seen.push_back(std::to_string(db) + ":" + key + ":" + std::to_string(value.type) + ":" +
                   (value.type == 0 ? value.value : std::to_string(value.elements.size())) + ":" + std::to_string(at));
    return true;
  };
  ASSERT_EQ(LoadFile(file, 1 << 20, v), LoadResult::kOk);
  EXPECT_EQ(codes.size(), 1u);
  EXPECT_EQ(seen, (std::vector<std::string>{"0:s:0:hello:0", "0:n:0:12345:1700000001234", "7:l:1:3:0", "7:h:4:4:0"}));
  // Any flipped byte fails the file's checksum; a cut file has no EOF; a bad magic is refused.
  std::string flipped = file;
  flipped[file.size() / 2] = static_cast<char>(flipped[file.size() / 2] ^ 1);
  EXPECT_EQ(LoadFile(flipped, 1 << 20, v), LoadResult::kBadVersionOrChecksum);
  EXPECT_NE(LoadFile(file.substr(0, file.size() - 20), 1 << 20, v), LoadResult::kOk);
  EXPECT_EQ(LoadFile("NOTRDB0010" + file.substr(10), 1 << 20, v), LoadResult::kBadFormat);
  // A skim (the replica's check pass): strings skipped, not decoded; the rest as before; a cut
  // file and an LZF claim past the limit still refused.
  seen.clear();
  v.skim_strings = true;
  ASSERT_EQ(LoadFile(file, 1 << 20, v), LoadResult::kOk);
  EXPECT_EQ(seen, (std::vector<std::string>{"0::0::0", "0::0::1700000001234", "7:l:1:3:0", "7:h:4:4:0"}));
  EXPECT_NE(LoadFile(file.substr(0, file.size() - 20), 1 << 20, v), LoadResult::kOk);
  std::string compressed;  // an LZF-compressed value (FileStringKey compresses what shrinks)
  FileHeader(&compressed, 1700000000000);
  FileSelectDb(&compressed, 0);
  FileStringKey(&compressed, "z", std::string(4000, 'z'), 0);
  FileEnd(&compressed);
  seen.clear();
  ASSERT_EQ(LoadFile(compressed, 1 << 20, v), LoadResult::kOk);
  EXPECT_EQ(LoadFile(compressed, 1000, v), LoadResult::kBadFormat);  // its plain length is checked
  v.skim_strings = false;
  ASSERT_EQ(LoadFile(compressed, 1 << 20, v), LoadResult::kOk);
  EXPECT_EQ(seen.back(), "0:z:0:" + std::string(4000, 'z') + ":0");
  // A visitor that refuses stops the load.
  v.key = [](uint32_t, std::string, Loaded, int64_t) { return false; };
  EXPECT_EQ(LoadFile(file, 1 << 20, v), LoadResult::kBadFormat);
}

// StreamLoader: the same file fed in pieces of any size visits what LoadFile visits, in order; a
// damaged, cut or longer file fails; a large entry split over many pieces is waited for.
TEST(Rdb, StreamLoaderReadsAFileFedInPieces) {
  std::string file;
  FileHeader(&file, 1700000000000);
  ASSERT_TRUE(FileFunctions(&file, DumpFunctions({"#!lua name=lib\nredis.register_function('f', function() return 1 end)"})));
  FileSelectDb(&file, 0);
  for (int i = 0; i < 300; ++i) {
    FileStringKey(&file, "k" + std::to_string(i), std::string(static_cast<size_t>(i % 50), 'v'), i % 3 == 0 ? 1700000001000 + i : 0);
  }
  FileSelectDb(&file, 3);
  std::vector<std::string> fields;
  for (int i = 0; i < 2000; ++i) fields.push_back("field" + std::to_string(i));
  std::vector<std::string_view> views(fields.begin(), fields.end());
  ASSERT_TRUE(FileKey(&file, "bighash", DumpHash(views), 0));  // about 20 KB in one entry
  ASSERT_TRUE(FileKey(&file, "l", DumpList({"a", "b"}), 0));
  FileStringKey(&file, "z", std::string(4000, 'z'), 0);  // LZF
  FileEnd(&file);
  auto visitor = [](std::vector<std::string>* seen) {
    FileVisitor v;
    v.function = [seen](std::string code) {
      seen->push_back("fn:" + std::to_string(code.size()));
      return true;
    };
    v.key = [seen](uint32_t db, std::string key, Loaded value, int64_t at) {
      seen->push_back(std::to_string(db) + ":" + key + ":" + std::to_string(value.type) + ":" +
                      (value.type == 0 ? value.value : std::to_string(value.elements.size())) + ":" + std::to_string(at));
      return true;
    };
    return v;
  };
  std::vector<std::string> whole;
  FileVisitor vw = visitor(&whole);
  ASSERT_EQ(LoadFile(file, 1 << 20, vw), LoadResult::kOk);
  ASSERT_EQ(whole.size(), 1u + 300 + 3);
  for (size_t piece : {size_t{1}, size_t{7}, size_t{4096}, size_t{65536}, file.size()}) {
    std::vector<std::string> seen;
    FileVisitor v = visitor(&seen);
    StreamLoader loader(1 << 20, v);
    for (size_t at = 0; at < file.size(); at += piece) {
      ASSERT_EQ(loader.Feed(std::string_view(file).substr(at, piece)), LoadResult::kOk) << piece << " at " << at;
    }
    EXPECT_EQ(loader.Finish(), LoadResult::kOk) << piece;
    EXPECT_EQ(seen, whole) << piece;
    EXPECT_EQ(loader.received(), file.size());
  }
  auto stream = [&](std::string_view bytes, size_t piece) {
    std::vector<std::string> seen;
    FileVisitor v = visitor(&seen);
    StreamLoader loader(1 << 20, v);
    for (size_t at = 0; at < bytes.size(); at += piece) {
      if (LoadResult r = loader.Feed(bytes.substr(at, piece)); r != LoadResult::kOk) return r;
    }
    return loader.Finish();
  };
  // A flipped byte in a value: the checksum at the end says so.
  std::string flipped = file;
  flipped[file.size() / 3] = static_cast<char>(flipped[file.size() / 3] ^ 1);
  EXPECT_NE(stream(flipped, 1000), LoadResult::kOk);
  std::string crc_flipped = file;
  crc_flipped[file.size() - 2] = static_cast<char>(crc_flipped[file.size() - 2] ^ 1);
  EXPECT_EQ(stream(crc_flipped, 1000), LoadResult::kBadVersionOrChecksum);
  EXPECT_EQ(stream(std::string_view(file).substr(0, file.size() - 3), 1000), LoadResult::kBadFormat);  // cut
  EXPECT_EQ(stream(std::string_view(file).substr(0, file.size() / 2), 1000), LoadResult::kBadFormat);
  EXPECT_EQ(stream(file + "x", 1000), LoadResult::kBadFormat);  // something after the checksum
  EXPECT_EQ(stream("NOTRDB0010" + file.substr(10), 1000), LoadResult::kBadFormat);
  // A visitor that refuses stops it at once, without trying the entry again.
  int calls = 0;
  FileVisitor refuse;
  refuse.function = [](std::string) { return true; };
  refuse.key = [&calls](uint32_t, std::string, Loaded, int64_t) { return ++calls, false; };
  StreamLoader loader(1 << 20, refuse);
  EXPECT_EQ(loader.Feed(file), LoadResult::kBadFormat);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(loader.Feed("more"), LoadResult::kBadFormat);
}

}  // namespace
}  // namespace keg::server::rdb
