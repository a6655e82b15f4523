#include "store/check.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "store/format.h"
#include "store/hint_file.h"
#include "store/io.h"
#include "store/store.h"

namespace keg::store {
namespace {

// Closes the lock file (releasing the flock) when the check ends.
struct LockGuard {
  int fd = -1;
  ~LockGuard() {
    if (fd >= 0) close(fd);
  }
};

// The first offset after `from` where a valid record starts, or `size`.
uint64_t NextValidRecord(const char* data, uint64_t from, uint64_t size) {
  format::RecordHeader h;
  for (uint64_t off = from + 1; off + format::kRecordHeaderSize <= size; ++off) {
    if (format::CheckRecord(data, size, off, true, &h) == format::RecordCheck::kOk) return off;
  }
  return size;
}

struct KeyState {
  size_t file;
  uint64_t size;
  uint64_t head_inc = 0;  // a head's incarnation (incarnations start at 1)
};

}  // namespace

Status CheckDirectory(const std::string& dir, bool repair, CheckReport* report,
                      const std::function<void(uint64_t, uint64_t)>& progress) {
  LockGuard lock;
  const std::string lock_path = dir + "/" + std::string(format::kLockFileName);
  lock.fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock.fd < 0) return Status::FromErrno("open", lock_path, -1, errno);
  if (flock(lock.fd, LOCK_EX | LOCK_NB) != 0) {
    return Status::Busy("data directory " + dir + " is in use (stop keg-server first)");
  }
  std::vector<std::string> names;
  Status s = io::ListDir(dir, &names);
  if (!s.ok()) return s;
  std::vector<uint64_t> ids;
  for (const std::string& name : names) {
    uint64_t id = 0;
    if (name.ends_with(format::kTempSuffix)) {
      report->leftovers.push_back(name);
    } else if (format::ParseFileName(name, format::kDataSuffix, &id)) {
      ids.push_back(id);
    } else if (format::ParseFileName(name, format::kHintSuffix, &id)) {
      ++report->hint_files;
    }
  }
  std::sort(ids.begin(), ids.end());
  report->data_files = ids.size();

  std::vector<std::unique_ptr<io::MappedFile>> maps;
  uint64_t total = 0;
  for (uint64_t id : ids) {
    auto map = std::make_unique<io::MappedFile>();
    s = io::MapWholeFile(dir + "/" + format::DataFileName(id), map.get());
    if (!s.ok()) return s;
    total += map->size;
    maps.push_back(std::move(map));
  }
  report->total_bytes = total;

  // Scan every record, replaying into a key -> newest-record map (an offline tool may spend RAM).
  std::unordered_map<std::string, KeyState> live;
  // Large collections' element records, by their key (incarnation + member): live at the end only
  // when a live head names their incarnation (docs/types.md).
  std::unordered_map<std::string, KeyState> elements;
  std::vector<bool> damaged(ids.size(), false);
  std::vector<bool> hint_ok(ids.size(), false);
  const int64_t now = NowMs();
  uint64_t done = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string name = format::DataFileName(ids[i]);
    const char* data = maps[i]->data;
    const uint64_t size = maps[i]->size;
    for (uint64_t off = 0; off < size;) {
      format::RecordHeader h;
      const format::RecordCheck check = format::CheckRecord(data, size, off, true, &h);
      if (check != format::RecordCheck::kOk) {
        const uint64_t next = NextValidRecord(data, off, size);
        const bool tail = next == size && i + 1 == ids.size();
        report->corrupt.push_back({name, off, next - off,
                                   std::string(format::RecordCheckName(check)) +
                                       (tail ? " (torn tail of the newest file)" : "")});
        damaged[i] = true;
        off = next;
        continue;
      }
      ++report->records;
      if (h.special()) {
        if (h.flush_all()) {  // FLUSHALL: every key before it is deleted
          for (const auto& [k, state] : live) report->dead_bytes += state.size;
          live.clear();
        } else if (h.flush_db()) {  // FLUSHDB: every key of its database before it
          for (auto it = live.begin(); it != live.end();) {
            if (static_cast<uint8_t>(it->first[0]) == h.tag.db) {
              report->dead_bytes += it->second.size;
              it = live.erase(it);
            } else {
              ++it;
            }
          }
        }
        // SWAPDB records stay live (the database map); the file header never is.
        if (!h.swap_db()) report->dead_bytes += h.record_size();
        off += h.record_size();
        if (progress) progress(done + off, total);
        continue;
      }
      if (h.tag.kind == format::kKindElement) {
        std::string key(data + off + format::kRecordHeaderSize, h.key_size);
        auto it = elements.find(key);
        if (it != elements.end()) {
          report->dead_bytes += it->second.size;
          if (h.tombstone()) elements.erase(it);
        }
        if (h.tombstone()) {
          report->dead_bytes += h.record_size();
        } else {
          elements[key] = KeyState{i, h.record_size()};
        }
        off += h.record_size();
        if (progress) progress(done + off, total);
        continue;
      }
      // Keys are per database: the physical database byte, then the key.
      std::string key(1, static_cast<char>(h.tag.db));
      key.append(data + off + format::kRecordHeaderSize, h.key_size);
      const bool gone = h.tombstone() || (h.expires() && h.expire_at_ms <= now);
      auto it = live.find(key);
      if (it != live.end()) {
        report->dead_bytes += it->second.size;
        if (gone) live.erase(it);
      }
      if (gone) {
        report->dead_bytes += h.record_size();
      } else {
        KeyState state{i, h.record_size()};
        if (h.tag.kind == format::kKindHead) {
          state.head_inc = format::IncarnationOf(
              std::string_view(data + off + format::kRecordHeaderSize + h.key_size, h.value_size));
        }
        live[key] = state;
      }
      off += h.record_size();
      if (progress) progress(done + off, total);
    }
    done += size;
    const std::string hint_path = dir + "/" + format::HintFileName(ids[i]);
    if (access(hint_path.c_str(), F_OK) == 0) {
      std::unique_ptr<HintFile> hint;
      s = HintFile::Open(hint_path, ids[i], size, &hint);
      if (s.ok()) {
        hint_ok[i] = true;
      } else {
        report->bad_hints.push_back(s.message());
      }
    }
  }
  if (progress) progress(total, total);
  report->live_keys = live.size();
  std::unordered_set<uint64_t> live_incs;
  for (const auto& [k, state] : live) {
    if (state.head_inc != 0) live_incs.insert(state.head_inc);
  }
  for (const auto& [k, state] : elements) {
    if (live_incs.contains(format::IncarnationOf(k))) {
      ++report->live_elements;
    } else {
      report->dead_bytes += state.size;
    }
  }
  report->collections = live_incs.size();
  if (!repair) return Status::OK();

  // ---- Repair ----
  for (const std::string& name : report->leftovers) {
    unlink((dir + "/" + name).c_str());
    report->actions.push_back("removed leftover " + name);
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!damaged[i]) continue;
    const std::string name = format::DataFileName(ids[i]);
    const std::string path = dir + "/" + name;
    const char* data = maps[i]->data;
    const uint64_t size = maps[i]->size;
    // Keep exactly the records that pass their checks, in order.
    std::string kept;
    for (uint64_t off = 0; off < size;) {
      format::RecordHeader h;
      if (format::CheckRecord(data, size, off, true, &h) != format::RecordCheck::kOk) {
        off = NextValidRecord(data, off, size);
        continue;
      }
      kept.append(data + off, h.record_size());
      off += h.record_size();
    }
    const std::string tmp = path + std::string(format::kTempSuffix);
    const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return Status::FromErrno("create", tmp, -1, errno);
    s = io::WriteAll(fd, tmp, 0, kept.data(), kept.size());
    if (s.ok()) s = io::SyncFile(fd, tmp);
    close(fd);
    if (s.ok() && rename(tmp.c_str(), path.c_str()) != 0)
      s = Status::FromErrno("rename", tmp, -1, errno);
    if (!s.ok()) return s;
    unlink((dir + "/" + format::HintFileName(ids[i])).c_str());  // its offsets no longer hold
    hint_ok[i] = false;
    report->actions.push_back("rewrote " + name + " without " + std::to_string(size - kept.size()) +
                              " damaged bytes");
  }
  maps.clear();                                  // repaired files are re-read from disk below
  for (size_t i = 0; i + 1 < ids.size(); ++i) {  // the newest file gets no hint: it is active next
    if (hint_ok[i]) continue;
    const std::string name = format::DataFileName(ids[i]);
    io::MappedFile map;
    s = io::MapWholeFile(dir + "/" + name, &map);
    if (s.ok())
      s = BuildHintFile(dir + "/" + format::HintFileName(ids[i]), ids[i], map.data, map.size);
    if (!s.ok()) return s;
    report->actions.push_back("wrote hint file for " + name);
  }
  s = io::SyncDir(dir);
  if (!s.ok()) return s;
  report->repaired = true;
  return Status::OK();
}

}  // namespace keg::store
