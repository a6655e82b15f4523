#include "store/format.h"

#include <cstdio>

#include "store/crc32c.h"

namespace keg::store::format {

void AppendRecord(std::string* out, uint8_t flags, std::string_view key, std::string_view value,
                  int64_t timestamp_ms, int64_t expire_at_ms, Tag tag) {
  const size_t start = out->size();
  out->resize(start + kRecordHeaderSize);
  char* h = out->data() + start;
  std::memset(h, 0, kRecordHeaderSize);
  h[kFlagsOffset] = static_cast<char>(flags);
  h[kTypeOffset] = static_cast<char>(tag.type);
  h[kKindOffset] = static_cast<char>(tag.kind);
  h[kDbOffset] = static_cast<char>(tag.db);
  Store<uint32_t>(h + kKeySizeOffset, static_cast<uint32_t>(key.size()));
  Store<uint32_t>(h + kValueSizeOffset, static_cast<uint32_t>(value.size()));
  Store<int64_t>(h + kTimestampOffset, timestamp_ms);
  Store<int64_t>(h + kExpireAtOffset, expire_at_ms);
  out->append(key);
  out->append(value);
  char* record = out->data() + start;
  Store<uint32_t>(record + kCrcOffset, ComputeRecordCrc(record, out->size() - start));
}

void AppendFileHeader(std::string* out, int64_t timestamp_ms) {
  char value[kFileHeaderValueSize];
  std::memcpy(value, kFileMagic, 4);
  Store<uint32_t>(value + 4, kFormatVersion);
  AppendRecord(out, kFlagFileHeader, {}, std::string_view(value, sizeof(value)), timestamp_ms, 0);
}

uint32_t ComputeRecordCrc(const char* p, uint64_t record_size) {
  return crc32c::Value(p + 4, static_cast<size_t>(record_size - 4));
}

RecordCheck CheckRecord(const char* data, uint64_t size, uint64_t offset, bool verify_crc,
                        RecordHeader* header) {
  if (offset > size || size - offset < kRecordHeaderSize) return RecordCheck::kTruncated;
  const char* p = data + offset;
  DecodeHeaderInto(p, header);
  const uint8_t special = header->flags & kSpecialFlags;
  if ((header->flags & ~kKnownFlags) != 0 || header->tag.type > kMaxType || header->tag.kind > kMaxKind ||
      header->key_size > kMaxKeySize || (header->tombstone() && header->value_size != 0) ||
      (!header->expires() && header->expire_at_ms != 0)) {
    return RecordCheck::kBadHeader;
  }
  if (header->tag.kind != kKindWhole &&
      (header->tag.type == kTypeString || special != 0 ||
       (header->tag.kind == kKindElement && header->key_size < kIncarnationSize) ||
       (header->tag.kind == kKindHead && (header->tombstone() || header->value_size != kHeadValueSize)))) {
    return RecordCheck::kBadHeader;  // heads and elements belong to collections, with their sizes
  }
  if (special != 0) {
    // One special flag alone, no key, no type; only FLUSHDB names a db, only SWAPDB (its map) and
    // the file header carry a value.
    const bool ok = (header->flags & ~kFlagGroupContinues) == special && (special & (special - 1)) == 0 && header->key_size == 0 && header->tag.type == 0 &&
                    header->tag.kind == 0 && (special == kFlagFlushDb || header->tag.db == 0) &&
                    (special == kFlagSwapDb ? header->value_size >= 1 && header->value_size <= 256
                     : special == kFlagFileHeader ? header->value_size == kFileHeaderValueSize
                                                  : header->value_size == 0);
    if (!ok) return RecordCheck::kBadHeader;
  }
  if (header->record_size() > size - offset) return RecordCheck::kTruncated;
  if (verify_crc && ComputeRecordCrc(p, header->record_size()) != header->crc) {
    return RecordCheck::kBadChecksum;
  }
  return RecordCheck::kOk;
}

const char* RecordCheckName(RecordCheck check) {
  switch (check) {
    case RecordCheck::kOk:
      return "ok";
    case RecordCheck::kTruncated:
      return "truncated record";
    case RecordCheck::kBadHeader:
      return "bad record header";
    case RecordCheck::kBadChecksum:
      return "checksum mismatch";
  }
  return "?";
}

namespace {
std::string NameWithSuffix(uint64_t id, std::string_view suffix) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(id));
  return std::string(buf) + std::string(suffix);
}
}  // namespace

std::string DataFileName(uint64_t id) { return NameWithSuffix(id, kDataSuffix); }
std::string HintFileName(uint64_t id) { return NameWithSuffix(id, kHintSuffix); }

bool ParseFileName(std::string_view name, std::string_view suffix, uint64_t* id) {
  if (name.size() != 16 + suffix.size() || name.substr(16) != suffix) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < 16; ++i) {
    const char c = name[i];
    uint64_t d;
    if (c >= '0' && c <= '9') {
      d = static_cast<uint64_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      d = static_cast<uint64_t>(c - 'a' + 10);
    } else {
      return false;
    }
    v = v << 4 | d;
  }
  *id = v;
  return true;
}

}  // namespace keg::store::format
