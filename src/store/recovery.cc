// Rebuilding the keydir at open. Files are replayed in id order, so the newest record of each key
// wins (ordering by position, never by clock). A sealed file is read through its hint file when the
// hint passes its checks, otherwise scanned with every record's CRC verified. Only the newest data
// file may end in a torn write, which is cut off and logged; a bad record anywhere else stops the
// open with the file and offset named (keg-check --repair can fix it).
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>

#include "store/hint_file.h"
#include "store/io.h"
#include "store/store_impl.h"

namespace keg::store {
namespace {

// How far past a bad record the recovery looks for a valid one, to tell a torn tail (nothing valid
// after it) from corruption in the middle of the newest file.
constexpr uint64_t kMaxTailProbe = 64ull << 20;

bool AllZero(const char* p, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

// True when some offset in (from, size) holds a complete record with a valid CRC.
bool ValidRecordAfter(const char* data, uint64_t from, uint64_t size) {
  const uint64_t end = std::min(size, from + kMaxTailProbe);
  format::RecordHeader h;
  for (uint64_t off = from + 1; off + format::kRecordHeaderSize <= end; ++off) {
    if (format::CheckRecord(data, size, off, true, &h) == format::RecordCheck::kOk) return true;
  }
  return false;
}

class Progress {
 public:
  explicit Progress(uint64_t total_bytes)
      : total_(total_bytes), start_(Clock::now()), last_(start_) {}
  void Update(uint64_t done_bytes, uint64_t keys, size_t file, size_t files) {
    const auto now = Clock::now();
    if (now - last_ < std::chrono::seconds(1)) return;
    last_ = now;
    const double secs = std::chrono::duration<double>(now - start_).count();
    spdlog::info(
        "recovery: file {}/{}, {:.1f}% of {} MB, {} keys, {:.0f} keys/s", file, files,
        total_ == 0 ? 100.0 : 100.0 * static_cast<double>(done_bytes) / static_cast<double>(total_),
        total_ >> 20, keys, static_cast<double>(keys) / secs);
  }
  double Seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

 private:
  using Clock = std::chrono::steady_clock;
  uint64_t total_;
  Clock::time_point start_;
  Clock::time_point last_;
};

}  // namespace

void StoreImpl::ReplayRecord(DataFile* file, uint64_t offset, uint64_t record_size, uint8_t flags,
                             int64_t expire_at_ms, std::string_view key, int64_t now_ms) {
  const uint64_t hash = keydir_.Hash(key);
  const bool expires = (flags & format::kFlagExpires) != 0;
  Location old;
  if ((flags & format::kFlagTombstone) != 0 || (expires && expire_at_ms <= now_ms)) {
    // Deleted or expired: older versions are dead, and so is this record.
    if (keydir_.Erase(hash, MatcherFor(key), &old)) MarkDead(old);
    file->dead_bytes.fetch_add(record_size, std::memory_order_relaxed);
    return;
  }
  const Location loc{file->index(), offset, expires};
  if (keydir_.Upsert(hash, MatcherFor(key), loc, &old)) MarkDead(old);
}

Status StoreImpl::LoadDataFile(const std::shared_ptr<DataFile>& file, bool newest, uint64_t* keys) {
  const int64_t now = NowMs();
  DataFile* f = file.get();
  if (!newest) {
    const std::string hint_path = options_.dir + "/" + format::HintFileName(f->id());
    if (access(hint_path.c_str(), F_OK) == 0) {
      Status s = ReadHintFile(
          hint_path, f->id(), f->size(), [&](const format::HintEntry& e, std::string_view key) {
            ReplayRecord(f, e.offset, e.record_size(), static_cast<uint8_t>(e.flags),
                         e.expire_at_ms, key, now);
            ++*keys;
          });
      if (s.ok()) {
        f->has_hint = true;
        return s;
      }
      spdlog::warn("recovery: ignoring {}; scanning its data file instead", s.ToString());
    }
  }
  const char* data = f->data();
  const uint64_t size = f->size();
  uint64_t off = 0;
  while (off < size) {
    format::RecordHeader h;
    const format::RecordCheck check = format::CheckRecord(data, size, off, true, &h);
    if (check == format::RecordCheck::kOk) {
      ReplayRecord(f, off, h.record_size(), h.flags, h.expire_at_ms,
                   std::string_view(data + off + format::kRecordHeaderSize, h.key_size), now);
      ++*keys;
      off += h.record_size();
      continue;
    }
    const bool torn =
        newest && (check == format::RecordCheck::kTruncated || AllZero(data + off, size - off) ||
                   !ValidRecordAfter(data, off, size));
    if (!torn) {
      return Status::Corruption("data file " + f->path() + ": " + format::RecordCheckName(check) +
                                " at offset " + std::to_string(off) +
                                " (run keg-check --repair on the directory)");
    }
    spdlog::warn("recovery: {}: torn write at offset {} ({}); cutting {} bytes off the end",
                 f->path(), off, format::RecordCheckName(check), size - off);
    if (ftruncate(f->fd(), static_cast<off_t>(off)) != 0) {
      return Status::FromErrno("ftruncate", f->path(), static_cast<long long>(off), errno);
    }
    Status s = io::SyncFile(f->fd(), f->path());
    if (!s.ok()) return s;
    f->set_size(off);
    break;
  }
  return Status::OK();
}

Status StoreImpl::Recover() {
  std::vector<std::string> names;
  Status s = io::ListDir(options_.dir, &names);
  if (!s.ok()) return s;
  std::vector<uint64_t> ids;
  bool removed = false;
  for (const std::string& name : names) {
    uint64_t id = 0;
    if (name.size() > format::kTempSuffix.size() &&
        name.ends_with(format::kTempSuffix)) {  // an interrupted compaction or hint file
      spdlog::info("recovery: removing leftover {}", name);
      unlink((options_.dir + "/" + name).c_str());
      removed = true;
    } else if (format::ParseFileName(name, format::kDataSuffix, &id)) {
      ids.push_back(id);
    }
  }
  std::sort(ids.begin(), ids.end());

  // Open and map every data file; empty ones (created, never written) are removed.
  std::vector<std::shared_ptr<DataFile>> files;
  uint64_t total_bytes = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string path = options_.dir + "/" + format::DataFileName(ids[i]);
    const int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return Status::FromErrno("open", path, -1, errno);
    uint64_t size = 0;
    s = io::FileSize(fd, path, &size);
    if (!s.ok()) {
      close(fd);
      return s;
    }
    max_file_id_ = std::max(max_file_id_, ids[i]);
    if (size == 0) {
      close(fd);
      unlink(path.c_str());
      unlink((options_.dir + "/" + format::HintFileName(ids[i])).c_str());
      removed = true;
      continue;
    }
    std::shared_ptr<DataFile> file;
    s = DataFile::Map(path, ids[i], NextFileIndex(), fd, size, size, &file);
    if (!s.ok()) return s;
    total_bytes += size;
    files.push_back(std::move(file));
  }
  if (removed) {
    s = io::SyncDir(options_.dir);
    if (!s.ok()) return s;
  }

  spdlog::info("recovery: {} data files, {} MB in {}", files.size(), total_bytes >> 20,
               options_.dir);
  Progress progress(total_bytes);
  uint64_t records = 0;
  uint64_t done_bytes = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    files_.Add(files[i]);
    s = LoadDataFile(files[i], i + 1 == files.size(), &records);
    if (!s.ok()) {
      spdlog::error("recovery: {}", s.ToString());
      return s;
    }
    done_bytes += files[i]->size();
    progress.Update(done_bytes, keydir_.Size(), i + 1, files.size());
  }
  spdlog::info("recovery: done in {:.2f} s: {} keys from {} records in {} files",
               progress.Seconds(), keydir_.Size(), records, files.size());
  return Status::OK();
}

}  // namespace keg::store
