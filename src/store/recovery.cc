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
#include <thread>

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

}  // namespace

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

void StoreImpl::ReplayRecord(DataFile* file, uint64_t hash, uint64_t offset, uint64_t record_size,
                             uint8_t flags, int64_t expire_at_ms, std::string_view key,
                             int64_t now_ms) {
  const bool expires = (flags & format::kFlagExpires) != 0;
  Location old;
  if ((flags & format::kFlagTombstone) != 0 || (expires && expire_at_ms <= now_ms)) {
    // Deleted or expired: older versions are dead, and so is this record.
    if (keydir_.Erase(hash, MatcherFor(key), &old)) MarkDead(old);
    file->dead_bytes.fetch_add(record_size, std::memory_order_relaxed);
    return;
  }
  const Location loc{file->index(), offset, expires, expires ? Location::ExpireSeconds(expire_at_ms) : 0};
  if (keydir_.Upsert(hash, MatcherFor(key), loc, &old)) MarkDead(old);
}

Status StoreImpl::ValidateDataFile(const std::shared_ptr<DataFile>& file, bool newest,
                                   uint64_t* records) {
  const char* data = file->data();
  const uint64_t size = file->size();
  uint64_t off = 0;
  while (off < size) {
    format::RecordHeader h;
    const format::RecordCheck check = format::CheckRecord(data, size, off, true, &h);
    if (check == format::RecordCheck::kOk) {
      ++*records;
      off += h.record_size();
      continue;
    }
    const bool torn =
        newest && (check == format::RecordCheck::kTruncated || AllZero(data + off, size - off) ||
                   !ValidRecordAfter(data, off, size));
    if (!torn) {
      return Status::Corruption("data file " + file->path() + ": " +
                                format::RecordCheckName(check) + " at offset " +
                                std::to_string(off) + " (run keg-check --repair on the directory)");
    }
    spdlog::warn("recovery: {}: torn write at offset {} ({}); cutting {} bytes off the end",
                 file->path(), off, format::RecordCheckName(check), size - off);
    if (ftruncate(file->fd(), static_cast<off_t>(off)) != 0) {
      return Status::FromErrno("ftruncate", file->path(), static_cast<long long>(off), errno);
    }
    Status s = io::SyncFile(file->fd(), file->path());
    if (!s.ok()) return s;
    file->set_size(off);
    break;
  }
  return Status::OK();
}

namespace {

// One record to replay, gathered in batches so the keydir slots can be prefetched together.
struct ReplayItem {
  uint64_t hash;
  std::string_view key;
  uint64_t offset;
  uint64_t size;
  uint8_t flags;
  int64_t expire_at_ms;
};
constexpr size_t kReplayBatch = 32;

}  // namespace

void StoreImpl::ReplaySources(const std::vector<RecoverySource>& sources, size_t part, size_t parts,
                              Progress* progress) {
  const int64_t now = NowMs();
  ReplayItem batch[kReplayBatch];
  size_t n = 0;
  DataFile* file = nullptr;
  auto flush = [&] {
    for (size_t i = 0; i < n; ++i) keydir_.Prefetch(batch[i].hash);
    for (size_t i = 0; i < n; ++i) {
      const ReplayItem& r = batch[i];
      ReplayRecord(file, r.hash, r.offset, r.size, r.flags, r.expire_at_ms, r.key, now);
    }
    n = 0;
  };
  auto add = [&](const ReplayItem& item) {
    if ((item.flags & format::kFlagFlushAll) != 0) {
      // FLUSHALL: what came before is deleted. Every thread sees it and empties its own shards,
      // after replaying what it had batched (a batch never spans files, so it is all earlier).
      flush();
      keydir_.ClearShards(part, parts);
      if (part == 0) last_flush_ = {file, item.offset + item.size};
      return;
    }
    if (Keydir::ShardOf(item.hash) % parts != part) return;
    batch[n++] = item;
    if (n == kReplayBatch) flush();
  };
  uint64_t done_bytes = 0;
  for (size_t f = 0; f < sources.size(); ++f) {
    const RecoverySource& src = sources[f];
    file = src.file.get();
    if (src.hint) {
      HintFile::Cursor cursor(*src.hint);
      format::HintEntry e;
      std::string_view key;
      while (cursor.Next(&e, &key)) {
        add({keydir_.Hash(key), key, e.offset, e.record_size(), static_cast<uint8_t>(e.flags),
             e.expire_at_ms});
      }
    } else {  // validated already: walk the records without checking them again
      const char* data = file->data();
      const uint64_t size = file->size();
      for (uint64_t off = 0; off < size;) {
        const format::RecordHeader h = format::DecodeHeader(data + off);
        const std::string_view key(data + off + format::kRecordHeaderSize, h.key_size);
        add({keydir_.Hash(key), key, off, h.record_size(), h.flags, h.expire_at_ms});
        off += h.record_size();
      }
    }
    flush();  // a batch never spans files: `file` names the batch's file
    done_bytes += file->size();
    if (progress != nullptr) progress->Update(done_bytes, keydir_.Size(), f + 1, sources.size());
  }
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
  std::vector<RecoverySource> sources;
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
    RecoverySource src;
    s = DataFile::Map(path, ids[i], NextFileIndex(), fd, size, size, &src.file);
    if (!s.ok()) return s;
    total_bytes += size;
    sources.push_back(std::move(src));
  }
  if (removed) {
    s = io::SyncDir(options_.dir);
    if (!s.ok()) return s;
  }
  spdlog::info("recovery: {} data files, {} MB in {}", sources.size(), total_bytes >> 20,
               options_.dir);
  Progress progress(total_bytes);

  // Phase 1 (one thread): every source is checked before anything is replayed — a hint file by
  // its CRC, a data file without a usable hint record by record. Only the newest may be torn.
  uint64_t records = 0;
  for (size_t i = 0; i < sources.size(); ++i) {
    RecoverySource& src = sources[i];
    const bool newest = i + 1 == sources.size();
    files_.Add(src.file);
    if (!newest) {
      const std::string hint_path = options_.dir + "/" + format::HintFileName(src.file->id());
      if (access(hint_path.c_str(), F_OK) == 0) {
        s = HintFile::Open(hint_path, src.file->id(), src.file->size(), &src.hint);
        if (s.ok()) {
          src.file->has_hint = true;
          records += src.hint->count();
          continue;
        }
        // A hint is only a cache of its data file: scan the data file, and remove the bad hint so
        // the background thread writes a good one (instead of failing this check at every start).
        spdlog::warn("recovery: ignoring {}; scanning its data file instead (the hint file is "
                     "removed and rebuilt)", s.ToString());
        unlink(hint_path.c_str());
      }
    }
    // A scan: read ahead (the maps are random-access for serving; set back after the replay).
    src.file->Advise(DataFile::Advice::kSequential, 0, src.file->size());
    s = ValidateDataFile(src.file, newest, &records);
    if (!s.ok()) {
      spdlog::error("recovery: {}", s.ToString());
      return s;
    }
  }

  // Phase 2 (all cores): replay in file order; each thread owns a disjoint set of keydir shards,
  // so every key is still replayed in order, by one thread.
  keydir_.Reserve(records);
  const size_t parts = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 4);
  std::vector<std::thread> helpers;
  for (size_t p = 1; p < parts; ++p) {
    helpers.emplace_back([&, p] { ReplaySources(sources, p, parts, nullptr); });
  }
  ReplaySources(sources, 0, parts, &progress);
  for (auto& t : helpers) t.join();
  for (const RecoverySource& src : sources) src.file->Advise(DataFile::Advice::kRandom, 0, src.file->size());
  if (last_flush_.file != nullptr) {
    // Everything up to the last FLUSHALL record is dead (what replay counted after it stays).
    bool before = true;
    for (const RecoverySource& src : sources) {
      DataFile* f = src.file.get();
      if (f == last_flush_.file) {
        f->dead_bytes.store(std::max(f->dead_bytes.load(), last_flush_.end));
        before = false;
      } else if (before) {
        f->dead_bytes.store(f->size());
      }
    }
    last_flush_ = {};
  }
  spdlog::info("recovery: done in {:.2f} s: {} keys from {} records in {} files",
               progress.Seconds(), keydir_.Size(), records, sources.size());
  recovery_ms_ = static_cast<int64_t>(progress.Seconds() * 1000);
  recovery_records_ = records;
  recovery_hint_files_ = static_cast<uint64_t>(
      std::count_if(sources.begin(), sources.end(), [](const RecoverySource& src) { return src.hint != nullptr; }));
  return Status::OK();
}

}  // namespace keg::store
