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

template <class Index>
void StoreImpl::ReplayRecord(Index& kd, DataFile* file, uint64_t hash, uint64_t offset, uint64_t record_size,
                             uint8_t flags, int64_t expire_at_ms, std::string_view key,
                             int64_t now_ms) {
  const bool expires = (flags & format::kFlagExpires) != 0;
  Location old;
  if ((flags & format::kFlagTombstone) != 0 || (expires && expire_at_ms <= now_ms)) {
    // Deleted or expired: older versions are dead, and so is this record.
    bool had = false;
    if constexpr (std::is_same_v<Index, Collection>) {
      had = kd.Erase(key, hash, MatcherFor(key), &old);
    } else {
      had = kd.Erase(hash, MatcherFor(key), &old);
    }
    if (had) MarkDead(old);
    file->dead_bytes.fetch_add(record_size, std::memory_order_relaxed);
    return;
  }
  const Location loc{file->index(), offset, expires, expires ? Location::ExpireSeconds(expire_at_ms) : 0};
  bool had = false;
  if constexpr (std::is_same_v<Index, Collection>) {
    had = kd.Upsert(key, hash, MatcherFor(key), loc, &old);
  } else {
    had = kd.Upsert(hash, MatcherFor(key), loc, &old);
  }
  if (had) MarkDead(old);
}

Status StoreImpl::ValidateDataFile(const std::shared_ptr<DataFile>& file, bool newest,
                                   uint64_t* records, uint64_t* elements) {
  const char* data = file->data();
  const uint64_t size = file->size();
  uint64_t off = 0;
  uint64_t group_start = 0;  // where the group the records since began: after the last group's end
  uint64_t group_records = 0;
  uint64_t group_elements = 0;
  while (off < size) {
    format::RecordHeader h;
    const format::RecordCheck check = format::CheckRecord(data, size, off, true, &h);
    if (check == format::RecordCheck::kOk) {
      ++*records;
      *elements += h.tag.kind == format::kKindElement ? 1 : 0;
      off += h.record_size();
      ++group_records;
      group_elements += h.tag.kind == format::kKindElement ? 1 : 0;
      if ((h.flags & format::kFlagGroupContinues) == 0) {
        group_start = off;
        group_records = group_elements = 0;
      }
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
  // The writer's newest file (not a compaction output, whose records are copies that keep the flag
  // their group gave them) ending inside a group: the group's write was cut short, between two of
  // its records. All of it goes, as the torn record would have.
  if (newest && file->id() % format::kFileIdGap == 0 && group_start < file->size()) {
    spdlog::warn("recovery: {}: a write group cut short at offset {}: cutting its {} records ({} bytes) off "
                 "the end",
                 file->path(), group_start, group_records, file->size() - group_start);
    if (ftruncate(file->fd(), static_cast<off_t>(group_start)) != 0) {
      return Status::FromErrno("ftruncate", file->path(), static_cast<long long>(group_start), errno);
    }
    Status s = io::SyncFile(file->fd(), file->path());
    if (!s.ok()) return s;
    file->set_size(group_start);
    *records -= group_records;
    *elements -= group_elements;
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
  uint8_t db;  // physical
  int64_t expire_at_ms;
  uint8_t kind = 0;  // format::RecordKind
  uint64_t inc = 0;  // an element's collection, or the incarnation a head names
  uint8_t type = 0;  // format::ValueType
};
constexpr size_t kReplayBatch = 32;

}  // namespace

void StoreImpl::ReplaySources(const std::vector<RecoverySource>& sources, size_t part, size_t parts,
                              Progress* progress) {
  // Kept at open: no record counts as expired here (INT64_MIN: none is due).
  const int64_t now = options_.keep_expired_at_open ? INT64_MIN : NowMs();
  ReplayItem batch[kReplayBatch];
  size_t n = 0;
  DataFile* file = nullptr;
  // The collection of the last element replayed: a collection's elements mostly come together.
  uint64_t last_inc = 0;
  Collection* last_coll = nullptr;
  auto flush = [&] {
    for (size_t i = 0; i < n; ++i) {
      if (batch[i].kind != format::kKindElement) keydirs_[batch[i].db]->Prefetch(batch[i].hash);
    }
    for (size_t i = 0; i < n; ++i) {
      const ReplayItem& r = batch[i];
      if (r.kind == format::kKindElement) {
        // Into its collection's index, created on first sight (its head may come later, or never:
        // FinishCollections keeps only collections a live head names).
        if (last_coll == nullptr || last_inc != r.inc) {
          last_coll = &CollectionFor(r.inc, r.db, r.type);
          last_inc = r.inc;
        }
        ReplayRecord(*last_coll, file, r.hash, r.offset, r.size, r.flags, r.expire_at_ms, r.key, now);
        continue;
      }
      ReplayRecord(*keydirs_[r.db], file, r.hash, r.offset, r.size, r.flags, r.expire_at_ms, r.key, now);
      if (r.kind == format::kKindHead && (r.flags & format::kFlagTombstone) == 0 &&
          !((r.flags & format::kFlagExpires) != 0 && r.expire_at_ms <= now)) {
        Collection& coll = CollectionFor(r.inc, r.db);
        std::lock_guard lock(coll.replay_mu);
        coll.sightings.push_back({r.db, r.hash, Location{file->index(), r.offset, false, 0}});
      }
    }
    n = 0;
  };
  auto note_inc = [&](uint64_t inc) {
    uint64_t seen = replay_max_inc_.load(std::memory_order_relaxed);
    while (inc > seen && !replay_max_inc_.compare_exchange_weak(seen, inc)) {
    }
  };
  auto add = [&](const ReplayItem& item) {
    if (item.db >= keydirs_.size()) {  // `databases` was lowered: Recover refuses to open
      uint32_t seen = replay_max_db_.load(std::memory_order_relaxed);
      while (item.db > seen && !replay_max_db_.compare_exchange_weak(seen, item.db)) {
      }
      return;
    }
    if ((item.flags & format::kSpecialFlags) != 0) {
      // Every thread sees these, after replaying what it had batched (a batch never spans files,
      // so it is all earlier). FLUSHALL / FLUSHDB: what came before is deleted; each thread
      // empties its own shards. SWAPDB: thread 0 keeps the map (only the last one matters: records
      // name their physical database). The file header: nothing to do.
      flush();
      if ((item.flags & format::kFlagFlushAll) != 0) {
        for (auto& kd : keydirs_) kd->ClearShards(part, parts);
        if (part == 0) last_flush_ = {file, item.offset + item.size};
      } else if ((item.flags & format::kFlagFlushDb) != 0) {
        keydirs_[item.db]->ClearShards(part, parts);
        if (part == 0) file->dead_bytes.fetch_add(item.size, std::memory_order_relaxed);
      } else if ((item.flags & format::kFlagSwapDb) != 0) {
        if (part == 0) {
          const uint64_t value_size = item.size - format::kRecordHeaderSize;
          const char* map = file->data() + item.offset + format::kRecordHeaderSize;
          for (size_t i = 0; i < keydirs_.size(); ++i) {
            replay_map_[i] = i < value_size ? static_cast<uint8_t>(map[i]) : static_cast<uint8_t>(i);
          }
          replay_swapped_ = true;
        }
      } else if (part == 0) {  // the file header
        file->dead_bytes.fetch_add(item.size, std::memory_order_relaxed);
      }
      return;
    }
    // A list's elements all go to one thread (by incarnation), so its positional index sees them
    // in log order and spans only what the list held; any other record goes by its own hash.
    const bool list_element = item.kind == format::kKindElement && item.type == format::kTypeList;
    if (Keydir::ShardOf(list_element ? Hash(item.key.substr(0, format::kIncarnationSize)) : item.hash) % parts != part) {
      return;
    }
    if (item.kind != format::kKindWhole) note_inc(item.inc);
    batch[n++] = item;
    if (n == kReplayBatch) flush();
  };
  // A replay item; a head's incarnation is read from its record (hint files do not hold values).
  auto Item = [&](std::string_view key, uint64_t offset, uint64_t size, uint8_t flags, format::Tag tag,
                  int64_t expire_at_ms) {
    ReplayItem item{Hash(key), key, offset, size, flags, tag.db, expire_at_ms, tag.kind, 0, tag.type};
    if (tag.kind == format::kKindElement && key.size() >= format::kIncarnationSize) {
      item.inc = format::IncarnationOf(key);
    } else if (tag.kind == format::kKindHead && (flags & format::kFlagTombstone) == 0 &&
               size == format::RecordSize(key.size(), format::kHeadValueSize) &&
               offset + size <= file->size()) {
      item.inc = format::IncarnationOf(
          std::string_view(file->data() + offset + format::kRecordHeaderSize + key.size(), format::kHeadValueSize));
    } else {
      item.kind = format::kKindWhole;  // checked records cannot be otherwise; a damaged hint could
    }
    return item;
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
        add(Item(key, e.offset, e.record_size(), static_cast<uint8_t>(e.flags), e.tag, e.expire_at_ms));
      }
    } else {  // validated already: walk the records without checking them again
      const char* data = file->data();
      const uint64_t size = file->size();
      for (uint64_t off = 0; off < size;) {
        const format::RecordHeader h = format::DecodeHeader(data + off);
        const std::string_view key(data + off + format::kRecordHeaderSize, h.key_size);
        add(Item(key, off, h.record_size(), h.flags, h.tag, h.expire_at_ms));
        off += h.record_size();
      }
    }
    flush();  // a batch never spans files: `file` names the batch's file
    done_bytes += file->size();
    if (progress != nullptr) {
      size_t keys = 0;
      for (const auto& kd : keydirs_) keys += kd->Size();
      progress->Update(done_bytes, keys, f + 1, sources.size());
    }
  }
}

void StoreImpl::FinishCollections() {
  // A collection lives on when a head replayed as live is still in its keydir (not replaced,
  // deleted, expired or flushed since). The others' records are dead (those before the last
  // FLUSHALL are counted dead already).
  auto before_flush = [&](const Location& loc) {
    if (last_flush_.file == nullptr) return false;
    const DataFile* f = files_.GetRaw(loc.file);
    return f != nullptr && (f->id() < last_flush_.file->id() ||
                            (f == last_flush_.file && loc.offset < last_flush_.end));
  };
  size_t dropped = 0;
  for (auto it = collections_.begin(); it != collections_.end();) {
    Collection& coll = *it->second;
    coll.heads = 0;
    for (const HeadSighting& s : coll.sightings) {
      LocationBuffer<8> candidates;
      const size_t n = keydirs_[s.pdb]->FindCandidates(s.hash, candidates, 8);
      for (size_t i = 0; i < n; ++i) {
        if (candidates[i].SameRecord(s.loc)) {
          ++coll.heads;
          coll.pdb = s.pdb;
        }
      }
    }
    std::vector<HeadSighting>().swap(coll.sightings);
    if (coll.heads > 0) {
      ++it;
      continue;
    }
    coll.ForEach([&](const Location& loc) {
      if (!before_flush(loc)) MarkDead(loc);
    });
    it = collections_.erase(it);
    ++dropped;
  }
  BuildOrderedIndexes();
  next_incarnation_ = replay_max_inc_.load() + 1;
  if (!collections_.empty() || dropped > 0) {
    uint64_t elements = 0;
    for (const auto& [inc, coll] : collections_) elements += coll->Size();
    spdlog::info("recovery: {} large collections ({} elements); {} without a live head dropped",
                 collections_.size(), elements, dropped);
  }
}

void StoreImpl::BuildOrderedIndexes() {
  const OrderedIndex::MemberFn member_of = WriterMemberFn();
  size_t sets = 0;
  for (auto& [inc, coll] : collections_) {
    if (coll->type != format::kTypeZset) continue;  // the replay noted each collection's type
    std::vector<OrderedIndex::Entry> entries;
    entries.reserve(coll->Size());
    coll->ForEach([&](const Location& loc) {
      const DataFile* file = files_.GetRaw(loc.file);
      std::string_view member, value;
      double score = 0;
      Status error;
      if (file != nullptr && ReadElementAt(*file, loc.offset, &member, &value, &error) &&
          format::DecodeScore(value, &score)) {
        entries.push_back({score, Location{loc.file, loc.offset, false, 0}.Pack()});
      }
    });
    std::sort(entries.begin(), entries.end(), [&](const OrderedIndex::Entry& a, const OrderedIndex::Entry& b) {
      return a.score != b.score ? a.score < b.score : member_of(a.loc) < member_of(b.loc);
    });
    coll->ordered = std::make_unique<OrderedIndex>();
    coll->ordered->Assign(std::move(entries));
    ++sets;
  }
  if (sets > 0) spdlog::info("recovery: ordered {} large sorted sets", sets);
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
    if (size == format::kFileHeaderSize) {  // a file header alone (created, never written)
      std::string head(format::kFileHeaderSize, '\0');
      format::RecordHeader h;
      if (pread(fd, head.data(), head.size(), 0) == static_cast<ssize_t>(head.size()) &&
          format::CheckRecord(head.data(), head.size(), 0, true, &h) == format::RecordCheck::kOk &&
          h.file_header()) {
        size = 0;
      }
    }
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
  uint64_t elements = 0;  // of large collections: in their own indexes, not in a keydir
  for (size_t i = 0; i < sources.size(); ++i) {
    RecoverySource& src = sources[i];
    const bool newest = i + 1 == sources.size();
    files_.Add(src.file);
    if (src.file->size() < format::kRecordHeaderSize ||
        !format::DecodeHeader(src.file->data()).file_header()) {
      saw_format1_ = true;
    }
    if (!newest) {
      const std::string hint_path = options_.dir + "/" + format::HintFileName(src.file->id());
      if (access(hint_path.c_str(), F_OK) == 0) {
        s = HintFile::Open(hint_path, src.file->id(), src.file->size(), &src.hint);
        if (s.ok()) {
          src.file->has_hint = true;
          records += src.hint->count();
          HintFile::Cursor cursor(*src.hint);
          format::HintEntry e;
          std::string_view key;
          while (cursor.Next(&e, &key)) elements += e.tag.kind == format::kKindElement ? 1 : 0;
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
    s = ValidateDataFile(src.file, newest, &records, &elements);
    if (!s.ok()) {
      spdlog::error("recovery: {}", s.ToString());
      return s;
    }
  }

  if (saw_format1_) {
    spdlog::info("recovery: data directory {} holds format-1 files (strings, database 0): read as "
                 "they are; new files are format {}", options_.dir, format::kFormatVersion);
  }
  // Phase 2 (all cores): replay in file order; each thread owns a disjoint set of keydir shards,
  // so every key is still replayed in order, by one thread.
  // Sized for every record in database 0, where a format-1 directory's keys all are (and most
  // keys usually): the other keydirs grow as they fill.
  keydirs_[0]->Reserve(records - elements);
  const size_t parts = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 4);
  std::vector<std::thread> helpers;
  for (size_t p = 1; p < parts; ++p) {
    helpers.emplace_back([&, p] { ReplaySources(sources, p, parts, nullptr); });
  }
  ReplaySources(sources, 0, parts, &progress);
  for (auto& t : helpers) t.join();
  for (const RecoverySource& src : sources) src.file->Advise(DataFile::Advice::kRandom, 0, src.file->size());
  if (const uint32_t max_db = replay_max_db_.load(); max_db >= keydirs_.size()) {
    // (A physical database: with that many visible ones it is reachable whichever database the
    // SWAPDB map makes it; fewer may do, CheckStaging then says how many.)
    return Status::InvalidArgument("data directory " + options_.dir + " holds keys of database " +
                                   std::to_string(max_db) + ": set `databases` to at least " +
                                   std::to_string(max_db + 1));
  }
  if (replay_swapped_) {  // the last SWAPDB's map, which must be a permutation of the databases
    std::vector<bool> seen(keydirs_.size(), false);
    for (size_t i = 0; i < keydirs_.size(); ++i) {
      if (replay_map_[i] >= keydirs_.size() || seen[replay_map_[i]]) {
        return Status::InvalidArgument("data directory " + options_.dir +
                                       " was written with more databases (SWAPDB): raise `databases`");
      }
      seen[replay_map_[i]] = true;
    }
    for (size_t i = 0; i < keydirs_.size(); ++i) {
      db_map_[i].store(replay_map_[i], std::memory_order_relaxed);
      group_map_[i] = replay_map_[i];
      logical_of_[replay_map_[i]] = static_cast<uint8_t>(i);
    }
  }
  FinishCollections();
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
  size_t keys = 0;
  for (const auto& kd : keydirs_) keys += kd->Size();
  spdlog::info("recovery: done in {:.2f} s: {} keys from {} records in {} files",
               progress.Seconds(), keys, records, sources.size());
  recovery_ms_ = static_cast<int64_t>(progress.Seconds() * 1000);
  recovery_records_ = records;
  recovery_hint_files_ = static_cast<uint64_t>(
      std::count_if(sources.begin(), sources.end(), [](const RecoverySource& src) { return src.hint != nullptr; }));
  return Status::OK();
}

}  // namespace keg::store
