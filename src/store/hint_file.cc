#include "store/hint_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "store/crc32c.h"

namespace keg::store {

using format::Load;
using format::Store;

HintWriter::~HintWriter() { Abandon(); }

Status HintWriter::Open(std::string final_path, uint64_t data_file_id) {
  final_path_ = std::move(final_path);
  tmp_path_ = final_path_ + std::string(format::kTempSuffix);
  fd_ = open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) return Status::FromErrno("create", tmp_path_, -1, errno);
  buffer_.reserve(kFlushBytes + 4096);
  buffer_.assign(format::kHintMagic, sizeof(format::kHintMagic));
  buffer_.resize(format::kHintHeaderSize);
  Store<uint64_t>(buffer_.data() + 8, data_file_id);
  Store<uint64_t>(buffer_.data() + 16, 0);  // data size: not checked in the header (trailer has it)
  return Status::OK();
}

void HintWriter::Add(const format::HintEntry& e, std::string_view key) {
  const size_t at = buffer_.size();
  buffer_.resize(at + format::kHintEntryHeaderSize);
  char* p = buffer_.data() + at;
  Store<uint64_t>(p, e.offset);
  Store<uint32_t>(p + 8, e.key_size);
  Store<uint32_t>(p + 12, e.value_size);
  Store<uint32_t>(p + 16, e.flags);
  Store<uint32_t>(p + 20, e.tag.Pack());
  Store<int64_t>(p + 24, e.expire_at_ms);
  buffer_.append(key);
  ++count_;
  // Written in 64 KiB pieces: as fast as larger ones, and the buffer (kept by the background
  // thread's malloc arena once freed) stays small.
  if (buffer_.size() >= kFlushBytes) (void)Flush();  // an error resurfaces in Finish
}

Status HintWriter::Flush() {
  if (fd_ < 0) return Status::IOError("hint file " + tmp_path_ + " is not open");
  crc_ = crc32c::Extend(crc_, buffer_.data(), buffer_.size());
  Status s = io::WriteAll(fd_, tmp_path_, written_, buffer_.data(), buffer_.size());
  written_ += buffer_.size();
  buffer_.clear();
  return s;
}

Status HintWriter::Finish(uint64_t data_file_size) {
  // The data size goes in the trailer, covered by the CRC.
  char tail[8 + format::kHintTrailerSize];
  Store<uint64_t>(tail, data_file_size);
  buffer_.append(tail, 8);
  Status s = Flush();
  if (!s.ok()) return s;
  Store<uint64_t>(tail, count_);
  Store<uint32_t>(tail + 8, crc_);
  std::memcpy(tail + 12, format::kHintEndMagic, 4);
  s = io::WriteAll(fd_, tmp_path_, written_, tail, format::kHintTrailerSize);
  if (s.ok()) s = io::SyncFile(fd_, tmp_path_);
  close(fd_);
  fd_ = -1;
  if (s.ok() && rename(tmp_path_.c_str(), final_path_.c_str()) != 0) {
    s = Status::FromErrno("rename", tmp_path_, -1, errno);
  }
  if (!s.ok()) unlink(tmp_path_.c_str());
  return s;
}

void HintWriter::Abandon() {
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
    unlink(tmp_path_.c_str());
  }
}

Status BuildHintFile(const std::string& hint_path, uint64_t data_id, const char* data,
                     uint64_t size) {
  HintWriter hint;
  Status s = hint.Open(hint_path, data_id);
  if (!s.ok()) return s;
  for (uint64_t off = 0; off < size;) {
    format::RecordHeader h;
    const format::RecordCheck check = format::CheckRecord(data, size, off, true, &h);
    if (check != format::RecordCheck::kOk) {
      return Status::Corruption("data file " + format::DataFileName(data_id) + ": " +
                                format::RecordCheckName(check) + " at offset " +
                                std::to_string(off));
    }
    hint.Add({off, h.key_size, h.value_size, h.flags, h.tag, h.expire_at_ms},
             std::string_view(data + off + format::kRecordHeaderSize, h.key_size));
    off += h.record_size();
  }
  return hint.Finish(size);
}

Status HintFile::Open(const std::string& path, uint64_t data_id, uint64_t data_size,
                      std::unique_ptr<HintFile>* out) {
  auto hint = std::make_unique<HintFile>();
  Status s = io::MapWholeFile(path, &hint->file_);
  if (!s.ok()) return s;
  const char* p = hint->file_.data;
  const uint64_t n = hint->file_.size;
  auto bad = [&](const char* why) { return Status::Corruption("hint file " + path + ": " + why); };
  constexpr uint64_t kMin = format::kHintHeaderSize + 8 + format::kHintTrailerSize;
  if (n < kMin) return bad("too short");
  if (std::memcmp(p, format::kHintMagic, 8) != 0) return bad("bad magic");
  if (Load<uint64_t>(p + 8) != data_id) return bad("belongs to another data file");
  const char* trailer = p + n - format::kHintTrailerSize;
  if (std::memcmp(trailer + 12, format::kHintEndMagic, 4) != 0) return bad("bad trailer");
  const uint64_t body_end = n - format::kHintTrailerSize;  // includes the 8-byte data size
  if (crc32c::Value(p, body_end) != Load<uint32_t>(trailer + 8)) return bad("checksum mismatch");
  if (Load<uint64_t>(p + body_end - 8) != data_size) return bad("does not match its data file");
  const uint64_t count = Load<uint64_t>(trailer);
  uint64_t off = format::kHintHeaderSize;
  const uint64_t entries_end = body_end - 8;
  for (uint64_t i = 0; i < count; ++i) {
    if (entries_end - off < format::kHintEntryHeaderSize) return bad("entry past the end");
    const uint32_t key_size = Load<uint32_t>(p + off + 8);
    off += format::kHintEntryHeaderSize;
    if (entries_end - off < key_size) return bad("key past the end");
    off += key_size;
  }
  if (off != entries_end) return bad("entry count does not match");
  hint->count_ = count;
  *out = std::move(hint);
  return Status::OK();
}

bool HintFile::Cursor::Next(format::HintEntry* e, std::string_view* key) {
  if (left_ == 0) return false;
  --left_;
  e->offset = Load<uint64_t>(p_);
  e->key_size = Load<uint32_t>(p_ + 8);
  e->value_size = Load<uint32_t>(p_ + 12);
  e->flags = Load<uint32_t>(p_ + 16);
  e->tag = format::Tag::Unpack(Load<uint32_t>(p_ + 20));
  e->expire_at_ms = Load<int64_t>(p_ + 24);
  p_ += format::kHintEntryHeaderSize;
  *key = std::string_view(p_, e->key_size);
  p_ += e->key_size;
  return true;
}

}  // namespace keg::store
