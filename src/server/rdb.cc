#include "server/rdb.h"

#include <lzf.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>

namespace keg::server::rdb {
namespace {

constexpr uint8_t kTypeString = 0;
constexpr uint8_t kTypeHash = 4;  // RDB_TYPE_HASH
constexpr uint8_t kTypeHashListpack = 16;  // RDB_TYPE_HASH_LISTPACK
constexpr uint8_t kTypeSet = 2;            // RDB_TYPE_SET
constexpr uint8_t kTypeSetIntset = 11;     // RDB_TYPE_SET_INTSET
constexpr uint8_t kTypeList = 1;           // RDB_TYPE_LIST
constexpr uint8_t kTypeListQuicklist2 = 18;  // RDB_TYPE_LIST_QUICKLIST_2 (what Redis 7.0 writes)
constexpr uint8_t kTypeZset = 3;           // RDB_TYPE_ZSET (scores as text)
constexpr uint8_t kTypeZset2 = 5;          // RDB_TYPE_ZSET_2 (binary scores)
constexpr uint8_t kTypeZsetListpack = 17;  // RDB_TYPE_ZSET_LISTPACK (what Redis 7.0 writes for a small one)
constexpr uint64_t kQuicklistPlain = 1;    // QUICKLIST_NODE_CONTAINER_PLAIN: one large element
constexpr uint64_t kQuicklistPacked = 2;   // QUICKLIST_NODE_CONTAINER_PACKED: a listpack

// An intset (Redis's intset.c): u32 encoding (2, 4 or 8 bytes per value), u32 length, then the
// values, little endian, strictly increasing. Members come back as their decimal text.
bool ParseIntset(std::string_view is, std::vector<std::string>* out) {
  if (is.size() < 8) return false;
  uint32_t enc = 0;
  uint32_t len = 0;
  std::memcpy(&enc, is.data(), 4);
  std::memcpy(&len, is.data() + 4, 4);
  if ((enc != 2 && enc != 4 && enc != 8) || len == 0 || (is.size() - 8) / enc != len || (is.size() - 8) % enc != 0) {
    return false;
  }
  int64_t prev = 0;
  for (uint32_t i = 0; i < len; ++i) {
    const char* p = is.data() + 8 + static_cast<size_t>(i) * enc;
    int64_t v = 0;
    if (enc == 2) {
      int16_t x = 0;
      std::memcpy(&x, p, 2);
      v = x;
    } else if (enc == 4) {
      int32_t x = 0;
      std::memcpy(&x, p, 4);
      v = x;
    } else {
      std::memcpy(&v, p, 8);
    }
    if (i > 0 && v <= prev) return false;  // Redis's intsetValidateIntegrity: sorted, no duplicates
    prev = v;
    out->push_back(std::to_string(v));
  }
  return true;
}
constexpr uint8_t kOpcodeFunction2 = 245;  // RDB_OPCODE_FUNCTION2: a library's code
constexpr uint8_t kEncInt8 = 0xC0;   // RDB_ENCVAL << 6 | RDB_ENC_INT8
constexpr uint8_t kEncInt16 = 0xC1;
constexpr uint8_t kEncInt32 = 0xC2;
constexpr uint8_t kEncLzf = 0xC3;

// The tables of the reflected Jones polynomial (0xad93d23594c935a9, bit-reversed), for slicing by
// 8: tables[0] is the byte-at-a-time table; tables[k][b] is byte b's CRC followed by k zero bytes.
using Crc64Tables = std::array<std::array<uint64_t, 256>, 8>;
Crc64Tables MakeTables() {
  constexpr uint64_t kPoly = 0xad93d23594c935a9ULL;
  uint64_t reflected = 0;
  for (int i = 0; i < 64; ++i) {
    if (kPoly & (uint64_t{1} << i)) reflected |= uint64_t{1} << (63 - i);
  }
  Crc64Tables t{};
  for (uint64_t n = 0; n < 256; ++n) {
    uint64_t crc = n;
    for (int k = 0; k < 8; ++k) crc = (crc & 1) ? (crc >> 1) ^ reflected : crc >> 1;
    t[0][n] = crc;
  }
  for (size_t k = 1; k < 8; ++k) {
    for (size_t n = 0; n < 256; ++n) t[k][n] = (t[k - 1][n] >> 8) ^ t[0][t[k - 1][n] & 0xFF];
  }
  return t;
}

void PutLength(std::string* out, uint64_t len) {
  if (len < (1u << 6)) {
    out->push_back(static_cast<char>(len));
  } else if (len < (1u << 14)) {
    out->push_back(static_cast<char>(0x40 | (len >> 8)));
    out->push_back(static_cast<char>(len & 0xFF));
  } else if (len <= std::numeric_limits<uint32_t>::max()) {
    out->push_back(static_cast<char>(0x80));
    for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<char>((len >> shift) & 0xFF));
  } else {
    out->push_back(static_cast<char>(0x81));
    for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>((len >> shift) & 0xFF));
  }
}

void PutLittleEndian(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

// Redis's rdbTryIntegerEncoding: only a string that is exactly the canonical form of an integer
// that fits in 32 bits.
bool PutInteger(std::string* out, std::string_view s) {
  if (s.empty() || s.size() > 11) return false;
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return false;
  char canonical[24];
  const auto r = std::to_chars(canonical, canonical + sizeof(canonical), v);
  if (std::string_view(canonical, static_cast<size_t>(r.ptr - canonical)) != s) return false;
  if (v >= -(1 << 7) && v <= (1 << 7) - 1) {
    out->push_back(static_cast<char>(kEncInt8));
    PutLittleEndian(out, static_cast<uint64_t>(v), 1);
  } else if (v >= -(1 << 15) && v <= (1 << 15) - 1) {
    out->push_back(static_cast<char>(kEncInt16));
    PutLittleEndian(out, static_cast<uint64_t>(v), 2);
  } else if (v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max()) {
    out->push_back(static_cast<char>(kEncInt32));
    PutLittleEndian(out, static_cast<uint64_t>(v), 4);
  } else {
    return false;
  }
  return true;
}

// Reads from a payload; every read is bounds-checked (the payload is a client's bytes).
class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}
  bool AtEnd() const { return pos_ == bytes_.size(); }
  size_t Remaining() const { return bytes_.size() - pos_; }
  bool Byte(uint8_t* b) {
    if (pos_ >= bytes_.size()) return false;
    *b = static_cast<uint8_t>(bytes_[pos_++]);
    return true;
  }
  bool Bytes(size_t n, std::string_view* out) {
    if (n > bytes_.size() - pos_) return false;
    *out = bytes_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  // Redis's rdbLoadLen: a length, or (encoded) an encoding type.
  bool Length(uint64_t* len, bool* encoded) {
    uint8_t b = 0;
    if (!Byte(&b)) return false;
    *encoded = false;
    switch (b >> 6) {
      case 3:
        *encoded = true;
        *len = b & 0x3F;
        return true;
      case 0:
        *len = b & 0x3F;
        return true;
      case 1: {
        uint8_t b2 = 0;
        if (!Byte(&b2)) return false;
        *len = (uint64_t{b & 0x3Fu} << 8) | b2;
        return true;
      }
      default: {
        int n = b == 0x80 ? 4 : b == 0x81 ? 8 : 0;
        if (n == 0) return false;
        std::string_view raw;
        if (!Bytes(static_cast<size_t>(n), &raw)) return false;
        uint64_t v = 0;
        for (char c : raw) v = (v << 8) | static_cast<uint8_t>(c);
        *len = v;
        return true;
      }
    }
  }

 private:
  std::string_view bytes_;
  size_t pos_ = 0;
};

// Redis's rdbGenericLoadStringObject: a string, integer-encoded or LZF-compressed. `value` null:
// its framing and lengths are checked and it is skipped, not decoded (LZF data is not decompressed).
bool LoadStringObject(Reader& in, uint64_t max_len, std::string* value) {
  uint64_t len = 0;
  bool encoded = false;
  if (!in.Length(&len, &encoded)) return false;
  if (encoded) {
    std::string_view raw;
    int64_t v = 0;
    switch (len) {
      case 0:  // RDB_ENC_INT8
        if (!in.Bytes(1, &raw)) return false;
        v = static_cast<int8_t>(raw[0]);
        break;
      case 1:  // RDB_ENC_INT16
        if (!in.Bytes(2, &raw)) return false;
        v = static_cast<int16_t>(static_cast<uint16_t>(static_cast<uint8_t>(raw[0]) |
                                                       (static_cast<uint8_t>(raw[1]) << 8)));
        break;
      case 2: {  // RDB_ENC_INT32
        if (!in.Bytes(4, &raw)) return false;
        uint32_t u = 0;
        for (int i = 3; i >= 0; --i) u = (u << 8) | static_cast<uint8_t>(raw[static_cast<size_t>(i)]);
        v = static_cast<int32_t>(u);
        break;
      }
      case 3: {  // RDB_ENC_LZF: compressed length, plain length, data
        uint64_t clen = 0;
        uint64_t plain = 0;
        bool e1 = false;
        bool e2 = false;
        if (!in.Length(&clen, &e1) || !in.Length(&plain, &e2) || e1 || e2) return false;
        // The plain length is a client's claim: bounded before allocating.
        if (plain == 0 || plain > max_len || plain > std::numeric_limits<uint32_t>::max() ||
            clen > std::numeric_limits<uint32_t>::max()) {
          return false;
        }
        std::string_view compressed;
        if (!in.Bytes(static_cast<size_t>(clen), &compressed)) return false;
        if (value == nullptr) return true;
        value->resize(static_cast<size_t>(plain));
        const unsigned int n = lzf_decompress(compressed.data(), static_cast<unsigned int>(clen),
                                              value->data(), static_cast<unsigned int>(plain));
        return n == plain;
      }
      default:
        return false;
    }
    if (value != nullptr) *value = std::to_string(v);
    return true;
  }
  std::string_view raw;
  if (!in.Bytes(static_cast<size_t>(std::min<uint64_t>(len, std::numeric_limits<size_t>::max())), &raw)) {
    return false;
  }
  if (value != nullptr) value->assign(raw);
  return true;
}

}  // namespace

uint64_t Crc64(uint64_t crc, std::string_view bytes) {
  static const Crc64Tables t = MakeTables();
  const char* p = bytes.data();
  size_t n = bytes.size();
  // Eight bytes at a time (as Redis's crcspeed), little-endian words: the reflected CRC's order.
  static_assert(std::endian::native == std::endian::little);
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    crc ^= word;
    crc = t[7][crc & 0xFF] ^ t[6][(crc >> 8) & 0xFF] ^ t[5][(crc >> 16) & 0xFF] ^ t[4][(crc >> 24) & 0xFF] ^
          t[3][(crc >> 32) & 0xFF] ^ t[2][(crc >> 40) & 0xFF] ^ t[1][(crc >> 48) & 0xFF] ^ t[0][crc >> 56];
  }
  for (; n > 0; ++p, --n) crc = t[0][(crc ^ static_cast<uint8_t>(*p)) & 0xFF] ^ (crc >> 8);
  return crc;
}

namespace {

std::atomic<bool> g_compression{true};  // SetCompression

// A string object's encoding (no type byte), as rdbSaveStringObject: integers compact, long values
// LZF-compressed (under rdbcompression yes) when that saves at least 4 bytes.
void PutStringObject(std::string* out, std::string_view value) {
  bool done = value.size() <= 11 && PutInteger(out, value);
  if (!done && value.size() > 20 && g_compression.load(std::memory_order_relaxed)) {
    // As rdbSaveLzfStringObject: only when the compressed form is at least 4 bytes shorter.
    std::string compressed(value.size() - 4, '\0');
    const unsigned int n = value.size() - 4 > std::numeric_limits<unsigned int>::max()
                               ? 0
                               : lzf_compress(value.data(), static_cast<unsigned int>(value.size()),
                                              compressed.data(), static_cast<unsigned int>(value.size() - 4));
    if (n > 0) {
      out->push_back(static_cast<char>(kEncLzf));
      PutLength(out, n);
      PutLength(out, value.size());
      out->append(compressed.data(), n);
      done = true;
    }
  }
  if (!done) {
    PutLength(out, value.size());
    out->append(value);
  }
}

void PutFooter(std::string* out) {
  PutLittleEndian(out, kVersion, 2);
  PutLittleEndian(out, Crc64(0, *out), 8);
}

// The body of a payload whose version and checksum are right, else nullopt.
std::optional<std::string_view> CheckFooter(std::string_view payload) {
  if (payload.size() < 10) return std::nullopt;
  const std::string_view footer = payload.substr(payload.size() - 10);
  const uint16_t version = static_cast<uint16_t>(static_cast<uint8_t>(footer[0]) |
                                                 (static_cast<uint8_t>(footer[1]) << 8));
  if (version > kVersion) return std::nullopt;
  uint64_t crc = 0;
  for (int i = 7; i >= 0; --i) crc = (crc << 8) | static_cast<uint8_t>(footer[2 + static_cast<size_t>(i)]);
  if (Crc64(0, payload.substr(0, payload.size() - 8)) != crc) return std::nullopt;
  return payload.substr(0, payload.size() - 10);
}

}  // namespace

void SetCompression(bool on) { g_compression.store(on, std::memory_order_relaxed); }

std::string DumpString(std::string_view value) {
  std::string out;
  out.reserve(value.size() + 32);
  out.push_back(static_cast<char>(kTypeString));
  PutStringObject(&out, value);
  PutFooter(&out);
  return out;
}

std::string DumpFunctions(const std::vector<std::string>& codes) {
  std::string out;
  for (const std::string& code : codes) {
    out.push_back(static_cast<char>(kOpcodeFunction2));
    PutStringObject(&out, code);
  }
  PutFooter(&out);
  return out;
}

LoadResult LoadFunctions(std::string_view payload, uint64_t max_len, std::vector<std::string>* codes) {
  const std::optional<std::string_view> body = CheckFooter(payload);
  if (!body) return LoadResult::kBadVersionOrChecksum;
  Reader in(*body);
  codes->clear();
  uint8_t type = 0;
  while (in.Byte(&type)) {
    if (type != kOpcodeFunction2) return LoadResult::kUnsupportedType;
    std::string code;
    if (!LoadStringObject(in, max_len, &code)) return LoadResult::kBadFormat;
    codes->push_back(std::move(code));
  }
  return LoadResult::kOk;
}

// A listpack (Redis's listpack.c): u32 total bytes, u16 count, entries, 0xFF. Each entry is an
// encoding (a small integer, a 13/16/24/32/64-bit integer, or a string of 6/12/32-bit length),
// its data, and its length backwards (1-5 bytes). Integers come back as their decimal text.
bool ParseListpack(std::string_view lp, uint64_t max_len, std::vector<std::string>* out) {
  if (lp.size() < 7 || static_cast<uint8_t>(lp.back()) != 0xFF) return false;
  uint32_t total = 0;
  std::memcpy(&total, lp.data(), 4);
  if (total != lp.size()) return false;
  size_t at = 6;
  auto u8 = [&](size_t i) { return static_cast<uint8_t>(lp[i]); };
  auto le = [&](size_t from, int bytes) {
    uint64_t v = 0;
    for (int b = bytes - 1; b >= 0; --b) v = (v << 8) | u8(from + static_cast<size_t>(b));
    return v;
  };
  while (at < lp.size() - 1) {
    const uint8_t e = u8(at);
    size_t head = 1;
    uint64_t len = 0;
    bool is_int = true;
    int64_t value = 0;
    size_t avail = lp.size() - 1 - at;
    if ((e & 0x80) == 0) {
      value = e & 0x7F;
    } else if ((e & 0xC0) == 0x80) {
      is_int = false;
      len = e & 0x3F;
    } else if ((e & 0xE0) == 0xC0) {
      if (avail < 2) return false;
      head = 2;
      const uint64_t raw = (uint64_t{e & 0x1Fu} << 8) | u8(at + 1);
      value = raw >= (1u << 12) ? static_cast<int64_t>(raw) - (1 << 13) : static_cast<int64_t>(raw);
    } else if ((e & 0xF0) == 0xE0) {
      if (avail < 2) return false;
      is_int = false;
      head = 2;
      len = (uint64_t{e & 0x0Fu} << 8) | u8(at + 1);
    } else if (e == 0xF0) {
      if (avail < 5) return false;
      is_int = false;
      head = 5;
      len = le(at + 1, 4);
    } else if (e >= 0xF1 && e <= 0xF4) {
      const int bytes = e == 0xF1 ? 2 : e == 0xF2 ? 3 : e == 0xF3 ? 4 : 8;
      if (avail < static_cast<size_t>(1 + bytes)) return false;
      const uint64_t raw = le(at + 1, bytes);
      const int shift = 64 - 8 * bytes;
      value = static_cast<int64_t>(raw << shift) >> shift;  // sign-extend
      head = 1 + static_cast<size_t>(bytes);
    } else {
      return false;  // 0xF5-0xFE are unused; 0xFF only at the end
    }
    const uint64_t data = is_int ? 0 : len;
    if (!is_int && (len > max_len || len > avail - head)) return false;
    const uint64_t entry = head + data;
    const size_t back = entry < 128 ? 1 : entry < 16384 ? 2 : entry < 2097152 ? 3 : entry < 268435456 ? 4 : 5;
    if (entry + back > avail) return false;
    if (is_int) {
      out->push_back(std::to_string(value));
    } else {
      out->emplace_back(lp.substr(at + head, static_cast<size_t>(len)));
    }
    at += static_cast<size_t>(entry) + back;
  }
  return at == lp.size() - 1;
}

std::string DumpHash(const std::vector<std::string_view>& elements) {
  std::string out;
  out.push_back(static_cast<char>(kTypeHash));
  PutLength(&out, elements.size() / 2);
  for (std::string_view e : elements) PutStringObject(&out, e);
  PutFooter(&out);
  return out;
}

namespace {

// RDB_TYPE_SET and RDB_TYPE_LIST: the type, the number of strings, then each string.
std::string DumpStrings(uint8_t type, const std::vector<std::string_view>& strings) {
  std::string out;
  out.push_back(static_cast<char>(type));
  PutLength(&out, strings.size());
  for (std::string_view e : strings) PutStringObject(&out, e);
  PutFooter(&out);
  return out;
}

}  // namespace

std::string DumpSet(const std::vector<std::string_view>& members) { return DumpStrings(kTypeSet, members); }

std::string DumpList(const std::vector<std::string_view>& elements) { return DumpStrings(kTypeList, elements); }

std::string DumpZset(const std::vector<std::pair<std::string, double>>& items) {
  std::string out;
  out.push_back(static_cast<char>(kTypeZset2));
  PutLength(&out, items.size());
  // Redis writes from the tail (its loader then inserts at the head); any order loads.
  for (auto it = items.rbegin(); it != items.rend(); ++it) {
    PutStringObject(&out, it->first);
    char raw[8];
    std::memcpy(raw, &it->second, 8);
    out.append(raw, 8);
  }
  PutFooter(&out);
  return out;
}

namespace {

std::string ScoreBytes(double score) {
  std::string v(8, '\0');
  std::memcpy(v.data(), &score, 8);
  return v;
}

// A score as text (a listpack entry, RDB_TYPE_ZSET's encoding): false when it is not a number.
bool ScoreFromText(std::string_view text, double* out) {
  if (text.empty() || text.size() > 300) return false;
  const std::string buf(text);
  char* end = nullptr;
  const double v = std::strtod(buf.c_str(), &end);
  if (end != buf.c_str() + buf.size() || std::isnan(v)) return false;
  *out = v;
  return true;
}

// RDB_TYPE_ZSET, RDB_TYPE_ZSET_2, RDB_TYPE_ZSET_LISTPACK into `out`'s elements (member, score).
LoadResult LoadZset(uint8_t type, Reader& in, uint64_t body_size, uint64_t max_len, Loaded* out) {
  out->type = 3;  // store::format::kTypeZset
  out->elements.clear();
  if (type == kTypeZsetListpack) {
    std::vector<std::string> flat;
    std::string lp;
    if (!LoadStringObject(in, max_len, &lp) || !ParseListpack(lp, max_len, &flat) || flat.empty() ||
        flat.size() % 2 != 0) {
      return LoadResult::kBadFormat;
    }
    for (size_t i = 0; i < flat.size(); i += 2) {
      double score = 0;
      if (!ScoreFromText(flat[i + 1], &score)) return LoadResult::kBadFormat;
      out->elements.push_back(std::move(flat[i]));
      out->elements.push_back(ScoreBytes(score));
    }
  } else {
    uint64_t n = 0;
    bool encoded = false;
    if (!in.Length(&n, &encoded) || encoded || n == 0 || n > body_size) return LoadResult::kBadFormat;
    for (uint64_t i = 0; i < n; ++i) {
      std::string member;
      if (!LoadStringObject(in, max_len, &member)) return LoadResult::kBadFormat;
      double score = 0;
      if (type == kTypeZset2) {
        std::string_view raw;
        if (!in.Bytes(8, &raw)) return LoadResult::kBadFormat;
        std::memcpy(&score, raw.data(), 8);
      } else {  // rdbLoadDoubleValue: a length byte (253 nan, 254 inf, 255 -inf), then the text
        uint8_t len = 0;
        if (!in.Byte(&len)) return LoadResult::kBadFormat;
        if (len == 253) return LoadResult::kBadFormat;
        if (len == 254 || len == 255) {
          score = len == 254 ? std::numeric_limits<double>::infinity() : -std::numeric_limits<double>::infinity();
        } else {
          std::string_view text;
          if (!in.Bytes(len, &text) || !ScoreFromText(text, &score)) return LoadResult::kBadFormat;
        }
      }
      if (std::isnan(score)) return LoadResult::kBadFormat;
      out->elements.push_back(std::move(member));
      out->elements.push_back(ScoreBytes(score));
    }
  }
  // Redis refuses a sorted set with a duplicate member (corrupt-dump tests): so does keg.
  std::vector<std::string_view> members;
  for (size_t i = 0; i < out->elements.size(); i += 2) members.push_back(out->elements[i]);
  std::sort(members.begin(), members.end());
  if (std::adjacent_find(members.begin(), members.end()) != members.end()) return LoadResult::kBadFormat;
  return LoadResult::kOk;
}

}  // namespace

namespace {

// One object of RDB type `type` (a DUMP payload's, or a key's in an RDB file) from `in`, which it
// may not read to its end. Counts are checked against the bytes left before anything is allocated.
LoadResult LoadObject(uint8_t type, Reader& in, uint64_t max_len, Loaded* out) {
  const uint64_t limit = in.Remaining();
  if (type == kTypeString) {
    out->type = 0;
    return LoadStringObject(in, max_len, &out->value) ? LoadResult::kOk : LoadResult::kBadFormat;
  }
  if (type == kTypeHash || type == kTypeHashListpack) {
    out->type = 4;  // store::format::kTypeHash
    out->elements.clear();
    if (type == kTypeHashListpack) {  // what redis-server 7.0 writes for a small hash
      std::string lp;
      if (!LoadStringObject(in, max_len, &lp) || !ParseListpack(lp, max_len, &out->elements) ||
          out->elements.empty() || out->elements.size() % 2 != 0) {
        return LoadResult::kBadFormat;
      }
    } else {
      uint64_t n = 0;
      bool encoded = false;
      if (!in.Length(&n, &encoded) || encoded || n == 0 || n > limit) return LoadResult::kBadFormat;
      for (uint64_t i = 0; i < 2 * n; ++i) {
        std::string e;
        if (!LoadStringObject(in, max_len, &e)) return LoadResult::kBadFormat;
        out->elements.push_back(std::move(e));
      }
    }
    // Redis refuses a hash with a duplicate field (corrupt-dump tests): so does keg.
    std::vector<std::string_view> fields;
    for (size_t i = 0; i < out->elements.size(); i += 2) fields.push_back(out->elements[i]);
    std::sort(fields.begin(), fields.end());
    if (std::adjacent_find(fields.begin(), fields.end()) != fields.end()) return LoadResult::kBadFormat;
    return LoadResult::kOk;
  }
  if (type == kTypeSet || type == kTypeSetIntset) {
    out->type = 2;  // store::format::kTypeSet
    out->elements.clear();
    if (type == kTypeSetIntset) {
      std::string is;
      if (!LoadStringObject(in, max_len, &is) || !ParseIntset(is, &out->elements)) {
        return LoadResult::kBadFormat;
      }
      return LoadResult::kOk;
    }
    uint64_t n = 0;
    bool encoded = false;
    if (!in.Length(&n, &encoded) || encoded || n == 0 || n > limit) return LoadResult::kBadFormat;
    for (uint64_t i = 0; i < n; ++i) {
      std::string e;
      if (!LoadStringObject(in, max_len, &e)) return LoadResult::kBadFormat;
      out->elements.push_back(std::move(e));
    }
    std::vector<std::string_view> sorted(out->elements.begin(), out->elements.end());
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) return LoadResult::kBadFormat;
    return LoadResult::kOk;
  }
  if (type == kTypeList || type == kTypeListQuicklist2) {
    out->type = 1;  // store::format::kTypeList
    out->elements.clear();
    uint64_t n = 0;
    bool encoded = false;
    if (!in.Length(&n, &encoded) || encoded || n == 0 || n > limit) return LoadResult::kBadFormat;
    for (uint64_t i = 0; i < n; ++i) {
      if (type == kTypeList) {
        std::string e;
        if (!LoadStringObject(in, max_len, &e)) return LoadResult::kBadFormat;
        out->elements.push_back(std::move(e));
        continue;
      }
      // A quicklist node: its container, then a listpack of elements (or one plain element).
      uint64_t container = 0;
      if (!in.Length(&container, &encoded) || encoded ||
          (container != kQuicklistPlain && container != kQuicklistPacked)) {
        return LoadResult::kBadFormat;
      }
      std::string node;
      if (!LoadStringObject(in, max_len, &node)) return LoadResult::kBadFormat;
      if (container == kQuicklistPlain) {
        out->elements.push_back(std::move(node));
        continue;
      }
      const size_t before = out->elements.size();
      if (!ParseListpack(node, max_len, &out->elements) || out->elements.size() == before) {
        return LoadResult::kBadFormat;  // Redis refuses an empty node (corrupt-dump tests)
      }
    }
    return LoadResult::kOk;
  }
  if (type == kTypeZset || type == kTypeZset2 || type == kTypeZsetListpack) {
    return LoadZset(type, in, limit, max_len, out);
  }
  const bool object_type = type <= 7 || (type >= 9 && type <= 21);
  return object_type ? LoadResult::kUnsupportedType : LoadResult::kBadFormat;
}

}  // namespace

LoadResult LoadValue(std::string_view payload, uint64_t max_len, Loaded* out) {
  const std::optional<std::string_view> body = CheckFooter(payload);
  if (!body) return LoadResult::kBadVersionOrChecksum;
  Reader in(*body);
  uint8_t type = 0;
  if (!in.Byte(&type)) return LoadResult::kBadFormat;
  const LoadResult r = LoadObject(type, in, max_len, out);
  // (A string's payload was never held to its end: as before, and as Redis reads it.)
  if (r == LoadResult::kOk && type != kTypeString && !in.AtEnd()) return LoadResult::kBadFormat;
  return r;
}

LoadResult LoadString(std::string_view payload, uint64_t max_len, std::string* value) {
  const std::optional<std::string_view> body = CheckFooter(payload);
  if (!body) return LoadResult::kBadVersionOrChecksum;
  Reader in(*body);
  uint8_t type = 0;
  if (!in.Byte(&type)) return LoadResult::kBadFormat;
  if (type != kTypeString) {
    const bool object_type = type <= 7 || (type >= 9 && type <= 21);
    return object_type ? LoadResult::kUnsupportedType : LoadResult::kBadFormat;
  }
  return LoadStringObject(in, max_len, value) ? LoadResult::kOk : LoadResult::kBadFormat;
}

namespace {

constexpr uint8_t kOpcodeAux = 250;
constexpr uint8_t kOpcodeExpireTimeMs = 252;
constexpr uint8_t kOpcodeSelectDb = 254;
constexpr uint8_t kOpcodeEof = 255;

void PutAux(std::string* out, std::string_view key, std::string_view value) {
  out->push_back(static_cast<char>(kOpcodeAux));
  PutStringObject(out, key);
  PutStringObject(out, value);
}

}  // namespace

void FileHeader(std::string* out, int64_t now_ms) {
  out->append("REDIS0010");  // RDB_VERSION 10, as "REDIS%04d"
  PutAux(out, "redis-ver", "7.0.15");
  PutAux(out, "redis-bits", "64");
  PutAux(out, "ctime", std::to_string(now_ms / 1000));
  PutAux(out, "used-mem", "0");
  PutAux(out, "aof-base", "0");
}

void FileSelectDb(std::string* out, uint32_t db) {
  out->push_back(static_cast<char>(kOpcodeSelectDb));
  PutLength(out, db);
}

bool FileFunctions(std::string* out, std::string_view function_dump) {
  if (function_dump.size() < 10) return false;  // the entries, then a 10-byte footer
  out->append(function_dump.substr(0, function_dump.size() - 10));
  return true;
}

bool FileKey(std::string* out, std::string_view key, std::string_view dump_payload, int64_t expire_at_ms) {
  if (dump_payload.size() < 11) return false;  // a type byte, an object, a 10-byte footer at least
  if (expire_at_ms != 0) {
    out->push_back(static_cast<char>(kOpcodeExpireTimeMs));
    PutLittleEndian(out, static_cast<uint64_t>(expire_at_ms), 8);
  }
  out->push_back(dump_payload[0]);  // the value's type
  PutStringObject(out, key);
  out->append(dump_payload.substr(1, dump_payload.size() - 11));
  return true;
}

void FileStringKey(std::string* out, std::string_view key, std::string_view value, int64_t expire_at_ms) {
  if (expire_at_ms != 0) {
    out->push_back(static_cast<char>(kOpcodeExpireTimeMs));
    PutLittleEndian(out, static_cast<uint64_t>(expire_at_ms), 8);
  }
  out->push_back(static_cast<char>(kTypeString));
  PutStringObject(out, key);
  PutStringObject(out, value);
}

namespace {

// What the entries of an RDB file carry to the ones after them.
struct EntryState {
  uint32_t db = 0;
  int64_t expire_at_ms = 0;
  bool eof = false;      // the EOF opcode was read
  bool refused = false;  // the visitor refused an entry (kBadFormat, and the load stops)
};

// The magic and version (the first 9 bytes).
LoadResult CheckHeader(std::string_view head) {
  if (head.size() < 9 || head.substr(0, 5) != "REDIS") return LoadResult::kBadFormat;
  int version = 0;
  for (char ch : head.substr(5, 4)) {
    if (ch < '0' || ch > '9') return LoadResult::kBadFormat;
    version = version * 10 + (ch - '0');
  }
  return version < 1 || version > kVersion ? LoadResult::kBadVersionOrChecksum : LoadResult::kOk;
}

// One entry (an opcode and what it carries) from `in`: its state changes in *st, a key or a
// function or an aux field goes to the visitor. On a failure *st may be changed (a caller that
// tries again restores it).
LoadResult LoadEntry(Reader& in, uint64_t max_len, const FileVisitor& visit, EntryState* st) {
  constexpr uint8_t kOpcodeFunctionOld = 246, kOpcodeModuleAux = 247, kOpcodeIdle = 248, kOpcodeFreq = 249,
                    kOpcodeResizeDb = 251, kOpcodeExpireTime = 253;
  uint8_t op = 0;
  if (!in.Byte(&op)) return LoadResult::kBadFormat;  // no EOF opcode
  std::string_view raw;
  uint64_t len = 0;
  bool encoded = false;
  switch (op) {
    case kOpcodeEof:
      st->eof = true;
      return LoadResult::kOk;
    case kOpcodeSelectDb:
      if (!in.Length(&len, &encoded) || encoded || len > UINT32_MAX) return LoadResult::kBadFormat;
      st->db = static_cast<uint32_t>(len);
      return LoadResult::kOk;
    case kOpcodeResizeDb: {
      uint64_t expires = 0;
      if (!in.Length(&len, &encoded) || encoded || !in.Length(&expires, &encoded) || encoded) return LoadResult::kBadFormat;
      return LoadResult::kOk;
    }
    case kOpcodeAux: {
      std::string key;
      std::string value;
      if (!LoadStringObject(in, max_len, &key) || !LoadStringObject(in, max_len, &value)) return LoadResult::kBadFormat;
      if (visit.aux) visit.aux(key, value);
      return LoadResult::kOk;
    }
    case kOpcodeExpireTimeMs: {
      if (!in.Bytes(8, &raw)) return LoadResult::kBadFormat;
      uint64_t v = 0;
      for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(raw[static_cast<size_t>(i)]);
      // 0 (the epoch) and past INT64_MAX are long past: 1 ms, never "no expiry" or negative.
      st->expire_at_ms = v == 0 || v > static_cast<uint64_t>(INT64_MAX) ? 1 : static_cast<int64_t>(v);
      return LoadResult::kOk;
    }
    case kOpcodeExpireTime: {
      if (!in.Bytes(4, &raw)) return LoadResult::kBadFormat;
      uint32_t v = 0;
      for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(raw[static_cast<size_t>(i)]);
      st->expire_at_ms = std::max<int64_t>(int64_t{static_cast<int32_t>(v)} * 1000, 1);
      return LoadResult::kOk;
    }
    case kOpcodeIdle:
      if (!in.Length(&len, &encoded) || encoded) return LoadResult::kBadFormat;
      return LoadResult::kOk;
    case kOpcodeFreq:
      return in.Byte(&op) ? LoadResult::kOk : LoadResult::kBadFormat;
    case kOpcodeFunction2: {
      std::string code;
      if (!LoadStringObject(in, max_len, &code)) return LoadResult::kBadFormat;
      if (visit.function && !visit.function(std::move(code))) {
        st->refused = true;
        return LoadResult::kBadFormat;
      }
      return LoadResult::kOk;
    }
    case kOpcodeFunctionOld:
    case kOpcodeModuleAux:
      return LoadResult::kUnsupportedType;
    default:
      break;
  }
  // A key: its value's type (op), its name, its object.
  std::string key;
  Loaded value;
  if (visit.skim_strings && op == kTypeString) {
    if (!LoadStringObject(in, max_len, nullptr) || !LoadStringObject(in, max_len, nullptr)) return LoadResult::kBadFormat;
  } else {
    if (!LoadStringObject(in, max_len, &key)) return LoadResult::kBadFormat;
    const LoadResult r = LoadObject(op, in, max_len, &value);
    if (r != LoadResult::kOk) return r;
  }
  const int64_t at = st->expire_at_ms;
  st->expire_at_ms = 0;
  if (!visit.key(st->db, std::move(key), std::move(value), at)) {
    st->refused = true;
    return LoadResult::kBadFormat;
  }
  return LoadResult::kOk;
}

}  // namespace

LoadResult LoadFile(std::string_view file, uint64_t max_len, const FileVisitor& visit, bool verify_crc) {
  if (file.size() < 9 + 1 + 8) return LoadResult::kBadFormat;
  if (const LoadResult r = CheckHeader(file); r != LoadResult::kOk) return r;
  // The CRC64 of everything before it (0: the writer did not compute one, rdbchecksum no).
  uint64_t crc = 0;
  for (int i = 7; i >= 0; --i) crc = (crc << 8) | static_cast<uint8_t>(file[file.size() - 8 + static_cast<size_t>(i)]);
  if (verify_crc && crc != 0 && Crc64(0, file.substr(0, file.size() - 8)) != crc) {
    return LoadResult::kBadVersionOrChecksum;
  }
  Reader in(file.substr(9, file.size() - 9 - 8));
  EntryState st;
  while (!st.eof) {
    if (const LoadResult r = LoadEntry(in, max_len, visit, &st); r != LoadResult::kOk) return r;
  }
  return in.AtEnd() ? LoadResult::kOk : LoadResult::kBadFormat;
}

struct StreamLoader::State {
  EntryState entry;
};

StreamLoader::StreamLoader(uint64_t max_len, const FileVisitor& visit)
    : max_len_(max_len), visit_(visit), state_(std::make_unique<State>()) {}

StreamLoader::~StreamLoader() = default;

LoadResult StreamLoader::Feed(std::string_view bytes) {
  if (result_ != LoadResult::kOk) return result_;
  buffer_.append(bytes);
  received_ += bytes.size();
  result_ = Parse(false);
  return result_;
}

LoadResult StreamLoader::Finish() {
  if (result_ != LoadResult::kOk) return result_;
  result_ = Parse(true);
  if (result_ == LoadResult::kOk && !crc_checked_) result_ = LoadResult::kBadFormat;  // it ended early
  return result_;
}

LoadResult StreamLoader::Parse(bool final) {
  // The CRC64 of what was parsed, brought up to cursor_ (in runs, not entry by entry).
  auto sum = [this] {
    crc_ = Crc64(crc_, std::string_view(buffer_).substr(summed_, cursor_ - summed_));
    summed_ = cursor_;
  };
  if (!header_done_) {
    if (buffer_.size() < 9) return final ? LoadResult::kBadFormat : LoadResult::kOk;
    if (const LoadResult r = CheckHeader(buffer_); r != LoadResult::kOk) return r;
    cursor_ = 9;
    header_done_ = true;
  }
  for (;;) {
    const std::string_view rest = std::string_view(buffer_).substr(cursor_);
    if (state_->entry.eof) {  // then the CRC64 of everything before it, and nothing more
      if (crc_checked_) return rest.empty() ? LoadResult::kOk : LoadResult::kBadFormat;
      if (rest.size() < 8) return final ? LoadResult::kBadFormat : LoadResult::kOk;
      sum();
      uint64_t crc = 0;
      for (int i = 7; i >= 0; --i) crc = (crc << 8) | static_cast<uint8_t>(rest[static_cast<size_t>(i)]);
      if (crc != 0 && crc != crc_) return LoadResult::kBadVersionOrChecksum;
      crc_checked_ = true;
      cursor_ += 8;
      summed_ = cursor_;
      continue;
    }
    if (rest.empty() || (!final && rest.size() < retry_at_)) break;
    // An entry parses whole or not at all: one that fails may only be incomplete (its counts are
    // checked against the bytes at hand), so it is tried again once what is buffered of it has
    // doubled, and at the end (then its failure is the file's).
    Reader in(rest);
    const EntryState before = state_->entry;
    const LoadResult r = LoadEntry(in, max_len_, visit_, &state_->entry);
    if (r == LoadResult::kOk) {
      cursor_ += rest.size() - in.Remaining();
      retry_at_ = 0;
      continue;
    }
    if (final || state_->entry.refused || r == LoadResult::kUnsupportedType) return r;
    state_->entry = before;
    retry_at_ = rest.size() * 2;
    break;
  }
  // What was parsed goes from the front now and then (a memmove of what is left: usually less
  // than one piece).
  if (cursor_ >= (size_t{4} << 20)) {
    sum();
    buffer_.erase(0, cursor_);
    cursor_ = summed_ = 0;
  }
  return LoadResult::kOk;
}

void FileEnd(std::string* out, uint64_t crc_before) {
  out->push_back(static_cast<char>(kOpcodeEof));
  PutLittleEndian(out, Crc64(crc_before, *out), 8);
}

}  // namespace keg::server::rdb
