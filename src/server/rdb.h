// Redis's RDB serialization of one value, as DUMP and RESTORE exchange it: the value's RDB encoding
// (type byte, then the object), the RDB version (2 bytes, little endian) and a CRC64 (Jones
// polynomial, as Redis's crc64.c, 8 bytes little endian) of everything before it.
//
// keg writes strings, hashes (RDB_TYPE_HASH), sets (RDB_TYPE_SET) and lists (RDB_TYPE_LIST):
// redis-server 7.0 loads them and picks its own encodings. It reads those and what Redis 7.0
// writes (a listpack hash, an intset, a quicklist of listpacks); a payload of another type (sorted
// sets, streams) is refused as Redis refuses a payload it cannot load. Thread: any (pure
// functions).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keg::server::rdb {

/// The RDB version Redis 7.0 writes (RDB_VERSION); RESTORE accepts payloads up to it.
inline constexpr uint16_t kVersion = 10;

/// CRC64 (Jones, reflected, as Redis's crc64(0, ...)): crc64 of "123456789" is 0xe9c6d914c4b8d9ca.
uint64_t Crc64(uint64_t crc, std::string_view bytes);

/// DUMP of a string value: byte for byte what redis-server 7.0 (rdbcompression yes) writes —
/// integers in their compact encodings, values over 20 bytes LZF-compressed when that saves space.
std::string DumpString(std::string_view value);
/// rdbcompression: whether DUMP payloads and snapshots LZF-compress strings (yes by default, as
/// Redis's server.rdb_compression). Any thread.
void SetCompression(bool on);

enum class LoadResult { kOk, kBadVersionOrChecksum, kBadFormat, kUnsupportedType };

/// DUMP of a hash: RDB_TYPE_HASH, the number of fields, then each field and value.
std::string DumpHash(const std::vector<std::string_view>& elements);
/// DUMP of a set: RDB_TYPE_SET, the number of members, then each member.
std::string DumpSet(const std::vector<std::string_view>& members);

/// DUMP of a list: RDB_TYPE_LIST, the number of elements, then each element (redis-server 7.0
/// loads it into its own encoding).
std::string DumpList(const std::vector<std::string_view>& elements);

/// DUMP of a sorted set: RDB_TYPE_ZSET_2, the number of members, then each member and its score
/// (8 bytes, little endian), as redis-server 7.0 writes a skiplist sorted set.
std::string DumpZset(const std::vector<std::pair<std::string, double>>& items);

/// A value RESTORE can load: a string (`value`), a hash (`elements`: field, value, ...), a set
/// (`elements`: its members), a sorted set (`elements`: member, score as 8 bytes
/// (store::format::EncodeScore), ...: RDB_TYPE_ZSET, RDB_TYPE_ZSET_2 or RDB_TYPE_ZSET_LISTPACK) or a list (`elements`, in order: RDB_TYPE_LIST or what Redis 7.0
/// writes, RDB_TYPE_LIST_QUICKLIST_2).
struct Loaded {
  uint8_t type = 0;  // store::format::ValueType
  std::string value;
  std::vector<std::string> elements;
};
/// LoadString's checks for any type keg has; kUnsupportedType for a valid type it cannot load.
LoadResult LoadValue(std::string_view payload, uint64_t max_len, Loaded* out);

/// Checks a DUMP payload's version and checksum (Redis's verifyDumpPayload) and decodes it. On
/// kOk, *value holds the string. kUnsupportedType: a valid RDB type keg has no type for yet. A
/// value longer than `max_len` (proto-max-bulk-len) is kBadFormat, checked before allocating.
LoadResult LoadString(std::string_view payload, uint64_t max_len, std::string* value);

/// An RDB file (version 10), as redis-server 7.0 writes one for SAVE or a full sync, built piece by
/// piece: FileHeader (the magic and aux fields redis-ver, redis-bits, ctime, used-mem, aof-base),
/// then for each non-empty database FileSelectDb and its keys (FileKey, from a DUMP payload of the
/// value: its type byte and object are reused, its footer dropped), then FileEnd (EOF opcode and
/// the CRC64 of everything before it).
void FileHeader(std::string* out, int64_t now_ms);
void FileSelectDb(std::string* out, uint32_t db);
/// `expire_at_ms` 0: no expiry. False (nothing written) when `dump_payload` is too short to be one.
bool FileKey(std::string* out, std::string_view key, std::string_view dump_payload, int64_t expire_at_ms);
/// A string key's entry: what FileKey writes of DumpString(value), without building that payload
/// (and its checksum, which the file's replaces).
void FileStringKey(std::string* out, std::string_view key, std::string_view value, int64_t expire_at_ms);
/// The function libraries of a FUNCTION DUMP payload (its RDB_OPCODE_FUNCTION2 entries, which an
/// RDB file holds after its aux fields); false when it is too short to be one.
bool FileFunctions(std::string* out, std::string_view function_dump);
/// `crc_before`: the CRC64 of the file's bytes before *out (a file sent in pieces: those already
/// gone), 0 when *out holds it all.
void FileEnd(std::string* out, uint64_t crc_before = 0);

/// What LoadFile reports, in the file's order. Returning false stops it (kBadFormat).
struct FileVisitor {
  std::function<void(std::string_view name, std::string_view value)> aux;  ///< may be null
  /// A function library's code (RDB_OPCODE_FUNCTION2).
  std::function<bool(std::string code)> function;
  /// A key of database `db` with its value, and its expiry (0: none; may be past).
  std::function<bool(uint32_t db, std::string key, Loaded value, int64_t expire_at_ms)> key;
  /// A check pass: string keys' names and values are skipped, their framing and lengths checked
  /// but not decoded (LZF data is not decompressed), and `key` gets them empty.
  bool skim_strings = false;
};
/// Reads a whole RDB file (versions 1 to 10, as a full sync from redis-server 7.0 or keg sends):
/// its checksum (unless 0, or verify_crc is false: the caller checked it), aux fields, function
/// libraries, databases and keys with their expiry (LRU / LFU hints skipped). kUnsupportedType for what keg cannot load (module data, Redis 7.0's
/// streams); every length is checked against the bytes left.
LoadResult LoadFile(std::string_view file, uint64_t max_len, const FileVisitor& visit, bool verify_crc = true);

/// LoadFile of a file that arrives in pieces (a replica's full sync, loaded as it is received):
/// each entry goes to the visitor once it is whole; the checksum is checked at the end (a caller
/// that must not act on a damaged file acts only after Finish is kOk). Memory: about the largest
/// entry, plus one piece. Thread: one at a time; `visit` must outlive it.
class StreamLoader {
 public:
  StreamLoader(uint64_t max_len, const FileVisitor& visit);
  ~StreamLoader();
  StreamLoader(const StreamLoader&) = delete;
  StreamLoader& operator=(const StreamLoader&) = delete;
  /// The next bytes. kOk: go on; anything else: the load failed (it stays failed).
  LoadResult Feed(std::string_view bytes);
  /// No more bytes: kOk when the file ended with its EOF opcode and a matching checksum (or 0).
  LoadResult Finish();
  uint64_t received() const { return received_; }

 private:
  struct State;
  LoadResult Parse(bool final);
  const uint64_t max_len_;
  const FileVisitor& visit_;
  std::unique_ptr<State> state_;
  std::string buffer_;  // bytes from cursor_ on are not parsed yet
  size_t cursor_ = 0;
  size_t retry_at_ = 0;  // an entry failed with less: wait until this many bytes are at hand
  uint64_t crc_ = 0;     // CRC64 of the bytes parsed before summed_
  size_t summed_ = 0;
  uint64_t received_ = 0;
  bool header_done_ = false;
  bool crc_checked_ = false;
  LoadResult result_ = LoadResult::kOk;
};

/// FUNCTION DUMP: each library's code as an RDB_OPCODE_FUNCTION2 entry, then version and CRC64,
/// byte for byte as redis-server 7.0 writes it (FUNCTION RESTORE on either side reads it).
std::string DumpFunctions(const std::vector<std::string>& codes);
/// FUNCTION RESTORE's payload: the libraries' codes. kUnsupportedType: an entry that is not a
/// function (Redis: "given type is not a function").
LoadResult LoadFunctions(std::string_view payload, uint64_t max_len, std::vector<std::string>* codes);

}  // namespace keg::server::rdb
