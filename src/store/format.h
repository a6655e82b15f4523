// The on-disk format of a keg data directory, in one place. docs/format.md describes it in prose;
// the static_asserts tie the two together. All integers are little-endian.
//
// Directory:
//   LOCK                      held with flock() by the one process that owns the directory
//   <id:016x>.data            data files; ids increase, ordering is by (id, offset)
//   <id:016x>.hint            hint file of a sealed data file (optional; checked before use)
//   *.tmp                     files being written by compaction; removed at start-up
//
// Data record (kRecordHeaderSize bytes of header, then the key, then the value):
//   0   u32 crc32c   of bytes [4, end of value)
//   4   u8  flags    kFlagTombstone | kFlagExpires, or one of kFlagFlushAll, kFlagFlushDb,
//                     kFlagSwapDb, kFlagFileHeader alone
//   5   u8  type     ValueType (0 string: every format-1 record)
//   6   u8  kind     RecordKind (0 whole value)
//   7   u8  db       the physical database the record belongs to (0 in format 1)
//   8   u32 key_size
//   12  u32 value_size   (0 for a tombstone)
//   16  i64 timestamp_ms  wall-clock time of the write: for audit only, never for ordering
//   24  i64 expire_at_ms  unix time in ms when the key expires; 0 when kFlagExpires is not set
//
// Hint file:
//   header   "KEGHINT1" | u64 data_file_id | u64 reserved (0)
//   entries  u64 offset | u32 key_size | u32 value_size | u32 flags | u32 tag (type | kind << 8 |
//            db << 16; 0 in format 1) |
//            i64 expire_at_ms | key
//   u64 data_file_size   bytes of the data file the entries describe
//   trailer  u64 entry_count | u32 crc32c of everything before the trailer | "KEGH"
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace keg::store::format {

// ---- Data records ----------------------------------------------------------------------------

constexpr size_t kRecordHeaderSize = 32;
constexpr size_t kCrcOffset = 0;
constexpr size_t kFlagsOffset = 4;
constexpr size_t kTypeOffset = 5;
constexpr size_t kKindOffset = 6;
constexpr size_t kDbOffset = 7;
constexpr size_t kKeySizeOffset = 8;
constexpr size_t kValueSizeOffset = 12;
constexpr size_t kTimestampOffset = 16;
constexpr size_t kExpireAtOffset = 24;
static_assert(kExpireAtOffset + 8 == kRecordHeaderSize, "header fields fill the header");

constexpr uint8_t kFlagTombstone = 1;
constexpr uint8_t kFlagExpires = 2;
/// FLUSHALL: every record before this one is deleted (no key, no value, no other flag). One record
/// in place of a tombstone per key, so a flush neither reads nor writes per key.
constexpr uint8_t kFlagFlushAll = 4;
/// FLUSHDB: every record of the header's db before this one is deleted (no key, no value).
constexpr uint8_t kFlagFlushDb = 8;
/// SWAPDB: the value holds the whole map from database index (as clients name them) to physical
/// database (the db byte of records), one byte each, as it is after the swap. Records keep their
/// physical database for ever; only this map changes, so a swap is O(1) and replay needs only the
/// last such record. Compaction copies these records (a few bytes each).
constexpr uint8_t kFlagSwapDb = 16;
/// The first record of every data file format-2 keg writes: value kFileMagic + u32 version, no
/// key. A format-1 keg refuses it as an unknown flag rather than misread a typed record.
constexpr uint8_t kFlagFileHeader = 32;
/// Set on every record of a write group (a batch, a pipeline's group, a script, MULTI/EXEC) but
/// its last: the newest file ending in a record that has it ends inside a group whose write was
/// cut short (a SIGKILL between two pages of the write, a power loss), and recovery cuts the
/// group's records off, so a group is all there or not at all. Any other flag may come with it.
constexpr uint8_t kFlagGroupContinues = 64;
constexpr uint8_t kKnownFlags = kFlagTombstone | kFlagExpires | kFlagFlushAll | kFlagFlushDb | kFlagSwapDb |
                                kFlagFileHeader | kFlagGroupContinues;
/// Flags that mark a record carrying no key (only alone).
constexpr uint8_t kSpecialFlags = kFlagFlushAll | kFlagFlushDb | kFlagSwapDb | kFlagFileHeader;

constexpr uint32_t kFormatVersion = 2;
constexpr char kFileMagic[4] = {'K', 'E', 'G', '2'};
constexpr size_t kFileHeaderValueSize = 8;
/// The size of the file header record.
constexpr uint64_t kFileHeaderSize = 32 + kFileHeaderValueSize;

/// Redis's OBJ_* numbers.
enum ValueType : uint8_t { kTypeString = 0, kTypeList = 1, kTypeSet = 2, kTypeZset = 3, kTypeHash = 4 };
constexpr uint8_t kMaxType = kTypeHash;
/// A record holds a whole value, a large collection's head, or one element of it (docs/types.md).
enum RecordKind : uint8_t { kKindWhole = 0, kKindHead = 1, kKindElement = 2 };
constexpr uint8_t kMaxKind = kKindElement;

/// A large collection is a head record (kind 1: key = the collection's key, value = its u64
/// incarnation) and one element record per element (kind 2: key = incarnation + the element, value
/// = a hash field's value, empty for a set member; a tombstone removes the element). Incarnations
/// are never reused while a record of theirs may remain, so DEL / RENAME / EXPIRE touch the head
/// alone (docs/types.md).
constexpr size_t kIncarnationSize = 8;
constexpr size_t kHeadValueSize = kIncarnationSize;
/// The key of an element record, into `out` (its memory reused: no allocation once it is large
/// enough).
inline void AssignElementKey(std::string* out, uint64_t incarnation, std::string_view element) {
  out->resize(kIncarnationSize + element.size());
  std::memcpy(out->data(), &incarnation, kIncarnationSize);
  if (!element.empty()) std::memcpy(out->data() + kIncarnationSize, element.data(), element.size());
}
/// The key of an element record.
inline std::string ElementKey(uint64_t incarnation, std::string_view element) {
  std::string key;
  AssignElementKey(&key, incarnation, element);
  return key;
}
/// The incarnation an element record's key (at least kIncarnationSize bytes) or a head's value names.
inline uint64_t IncarnationOf(std::string_view bytes) {
  uint64_t v;
  std::memcpy(&v, bytes.data(), kIncarnationSize);
  return v;
}

/// A sorted set element's value (docs/types.md): its score, the IEEE double's 8 bytes, little endian.
constexpr size_t kScoreSize = 8;
inline std::string EncodeScore(double score) {
  std::string v(kScoreSize, '\0');
  std::memcpy(v.data(), &score, kScoreSize);
  return v;
}
/// False when `value` is not a score (damage the CRC missed).
inline bool DecodeScore(std::string_view value, double* score) {
  if (value.size() != kScoreSize) return false;
  std::memcpy(score, value.data(), kScoreSize);
  return true;
}

/// The three bytes format 2 gave meaning to; all zero is a format-1 record (a string, db 0).
struct Tag {
  uint8_t type = kTypeString;
  uint8_t kind = kKindWhole;
  uint8_t db = 0;
  uint32_t Pack() const { return uint32_t{type} | uint32_t{kind} << 8 | uint32_t{db} << 16; }
  static Tag Unpack(uint32_t v) {
    return {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v >> 16)};
  }
};

/// Keys and values are limited as Redis limits them (512 MB by default; at most 4 GiB - 1 here).
constexpr uint64_t kMaxKeySize = 512ull * 1024 * 1024;
constexpr uint64_t kMaxValueSize = 0xFFFFFFFFull;

/// Offsets within a data file fit in 40 bits (the keydir packs them).
constexpr uint64_t kMaxFileSize = (1ull << 40) - 1;

/// Ids of data files written by the writer are multiples of this; compaction outputs take the ids
/// just above their newest input, so they sort after their inputs and before any later file.
constexpr uint64_t kFileIdGap = 1ull << 20;

struct RecordHeader {
  uint32_t crc = 0;
  uint8_t flags = 0;
  uint32_t key_size = 0;
  uint32_t value_size = 0;
  int64_t timestamp_ms = 0;
  int64_t expire_at_ms = 0;
  Tag tag;

  bool tombstone() const { return (flags & kFlagTombstone) != 0; }
  bool expires() const { return (flags & kFlagExpires) != 0; }
  bool flush_all() const { return (flags & kFlagFlushAll) != 0; }
  bool flush_db() const { return (flags & kFlagFlushDb) != 0; }
  bool swap_db() const { return (flags & kFlagSwapDb) != 0; }
  bool file_header() const { return (flags & kFlagFileHeader) != 0; }
  /// A record without a key: FLUSHALL, FLUSHDB, SWAPDB or the file header.
  bool special() const { return (flags & kSpecialFlags) != 0; }
  uint64_t record_size() const { return kRecordHeaderSize + uint64_t{key_size} + value_size; }
};

inline uint64_t RecordSize(size_t key_size, size_t value_size) {
  return kRecordHeaderSize + key_size + value_size;
}

template <typename T>
inline T Load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;  // little-endian hosts only (x86_64, aarch64); see docs/format.md
}

template <typename T>
inline void Store(char* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

/// The header at `p` into *h. Every byte is loaded before any field is stored, and each field is
/// stored on its own: built whole on the stack and copied (`*h = DecodeHeader(p)`), GCC copied it
/// with loads spanning several narrower stores, which the CPU cannot forward (two stalls per
/// record read: the largest cost of CheckRecord, run for every element LRANGE serves).
inline void DecodeHeaderInto(const char* p, RecordHeader* h) {
  const uint32_t crc = Load<uint32_t>(p + kCrcOffset);
  const auto flags = static_cast<uint8_t>(p[kFlagsOffset]);
  const uint32_t key_size = Load<uint32_t>(p + kKeySizeOffset);
  const uint32_t value_size = Load<uint32_t>(p + kValueSizeOffset);
  const auto timestamp_ms = Load<int64_t>(p + kTimestampOffset);
  const auto expire_at_ms = Load<int64_t>(p + kExpireAtOffset);
  const auto type = static_cast<uint8_t>(p[kTypeOffset]);
  const auto kind = static_cast<uint8_t>(p[kKindOffset]);
  const auto db = static_cast<uint8_t>(p[kDbOffset]);
  h->crc = crc;
  h->flags = flags;
  h->key_size = key_size;
  h->value_size = value_size;
  h->timestamp_ms = timestamp_ms;
  h->expire_at_ms = expire_at_ms;
  h->tag.type = type;
  h->tag.kind = kind;
  h->tag.db = db;
}

inline RecordHeader DecodeHeader(const char* p) {
  RecordHeader h;
  DecodeHeaderInto(p, &h);
  return h;
}

/// Appends one complete record (header with its CRC, key, value) to `out`.
void AppendRecord(std::string* out, uint8_t flags, std::string_view key, std::string_view value,
                  int64_t timestamp_ms, int64_t expire_at_ms, Tag tag = {});
/// Appends the file header record (kFlagFileHeader) to `out`.
void AppendFileHeader(std::string* out, int64_t timestamp_ms);

/// The CRC a record starting at `p` (whole record present) should carry.
uint32_t ComputeRecordCrc(const char* p, uint64_t record_size);

/// Why a record at some offset cannot be used.
enum class RecordCheck {
  kOk,
  kTruncated,    ///< the header or the body runs past the end of the data
  kBadHeader,    ///< unknown flags, type or kind, sizes over the limits, a malformed special record
  kBadChecksum,  ///< the CRC does not match
};

/// Checks the record at data[offset, size): header sanity, sizes, CRC (when `verify_crc`).
RecordCheck CheckRecord(const char* data, uint64_t size, uint64_t offset, bool verify_crc,
                        RecordHeader* header);

const char* RecordCheckName(RecordCheck check);

// ---- File names ------------------------------------------------------------------------------

constexpr std::string_view kLockFileName = "LOCK";
/// Present while a load into the staging databases is under way (Store::BeginStaging): it holds
/// "databases <n>\n", the count the load ran under.
constexpr std::string_view kStagingFileName = "STAGING";
constexpr std::string_view kDataSuffix = ".data";
constexpr std::string_view kHintSuffix = ".hint";
constexpr std::string_view kTempSuffix = ".tmp";

std::string DataFileName(uint64_t id);  // "0000000000100000.data"
std::string HintFileName(uint64_t id);  // "0000000000100000.hint"
/// Parses "<16 hex digits><suffix>"; false for anything else.
bool ParseFileName(std::string_view name, std::string_view suffix, uint64_t* id);

// ---- Hint files ------------------------------------------------------------------------------

constexpr char kHintMagic[8] = {'K', 'E', 'G', 'H', 'I', 'N', 'T', '1'};
constexpr char kHintEndMagic[4] = {'K', 'E', 'G', 'H'};
constexpr size_t kHintHeaderSize = 24;
constexpr size_t kHintEntryHeaderSize = 32;
constexpr size_t kHintTrailerSize = 16;

struct HintEntry {
  uint64_t offset = 0;
  uint32_t key_size = 0;
  uint32_t value_size = 0;
  uint32_t flags = 0;
  Tag tag;
  int64_t expire_at_ms = 0;
  uint64_t record_size() const { return RecordSize(key_size, value_size); }
};

}  // namespace keg::store::format
