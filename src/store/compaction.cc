// The background thread: hint files for sealed data files, and compaction.
//
// Compaction merges a prefix of the sealed files (every sealed file up to some id) into new files
// holding only the records that are live — the newest version of a key, not expired. Why a prefix:
// every older record of a key then lies inside the merge, so dropping tombstones and expired
// records can never let an older value reappear after a restart.
//
// Crash safety, step by step:
//  1. Outputs are written as *.tmp, fsynced, renamed, and the directory fsynced. A crash before the
//     rename leaves *.tmp files, which start-up deletes. Output ids sort right after the newest
//     input and before any later file, so an output always wins over its inputs and loses to newer
//     writes.
//  2. The writer thread installs the result: each moved key is repointed only if it still points at
//     the record that was copied (a newer write is never overwritten).
//  3. The active file is synced (the newest versions of the keys whose old versions go with the
//     inputs must not exist only in the page cache), then inputs are deleted oldest first, each
//     unlink made durable by a directory fsync before the next. Whatever subset of inputs a crash
//     or a power cut leaves is a suffix, and replaying a suffix plus the outputs gives every key
//     its newest state (a tombstone or expired record that survives still shadows the older
//     versions, which are gone with the prefix).
// Readers that pinned an input keep reading it: the mapping outlives the unlink.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <future>
#include <thread>

#include "store/hint_file.h"
#include "store/io.h"
#include "store/store_impl.h"

namespace keg::store {
namespace {

using Clock = std::chrono::steady_clock;

// One output data file being written, with its hint file.
struct Output {
  uint64_t id = 0;
  uint32_t index = 0;
  std::string path;  // final name; written as path + ".tmp"
  int fd = -1;
  uint64_t size = 0;
  std::string buffer;
  HintWriter hint;
};

struct Move {
  uint64_t hash;
  Location from;
  Location to;
  uint64_t size;
};

}  // namespace

void StoreImpl::BackgroundLoop() {
  auto last_check = Clock::now();
  for (;;) {
    std::vector<std::function<void(const Status&)>> waiters;
    {
      std::unique_lock lock(bg_mu_);
      bg_cv_.wait_for(lock, std::chrono::milliseconds(options_.background_interval_ms),
                      [this] { return bg_stopping_ || !compact_waiters_.empty(); });
      if (bg_stopping_) break;
      waiters.swap(compact_waiters_);
    }
    WriteMissingHints();
    if (!waiters.empty()) {
      const Status s = RunCompaction(true);
      for (auto& done : waiters) done(s);
    } else if (options_.auto_compaction &&
               Clock::now() - last_check >=
                   std::chrono::milliseconds(options_.background_interval_ms)) {
      last_check = Clock::now();
      const Status s = RunCompaction(false);
      if (!s.ok()) spdlog::error("compaction: {}", s.ToString());
    }
  }
  std::vector<std::function<void(const Status&)>> waiters;
  {
    std::lock_guard lock(bg_mu_);
    waiters.swap(compact_waiters_);
  }
  for (auto& done : waiters) done(Status::Failed("the store is closing"));
}

void StoreImpl::Compact(std::function<void(const Status&)> done) {
  {
    std::lock_guard lock(bg_mu_);
    if (!bg_stopping_) {
      compact_waiters_.push_back(std::move(done));
      bg_cv_.notify_one();
      return;
    }
  }
  done(Status::Failed("the store is closing"));
}

Status StoreImpl::CompactSync() {
  std::promise<Status> promise;
  auto future = promise.get_future();
  Compact([&](const Status& s) { promise.set_value(s); });
  return future.get();
}

bool StoreImpl::NeedsCompaction(const DataFile& file) const {
  const uint64_t dead = file.dead_bytes.load(std::memory_order_relaxed);
  const uint64_t total = file.size();
  return dead >= options_.dead_bytes_merge_trigger ||
         (total > 0 &&
          static_cast<double>(dead) >= options_.frag_merge_trigger * static_cast<double>(total));
}

void StoreImpl::WriteMissingHints() {
  const uint64_t active = active_id_.load();
  for (const auto& file : files_.Snapshot()) {
    if (file->id() >= active || file->has_hint.load()) continue;
    {
      std::lock_guard lock(bg_mu_);
      if (bg_stopping_) return;
    }
    const Status s = WriteHintFor(file);
    if (!s.ok()) spdlog::warn("hint file for {}: {}", file->path(), s.ToString());
  }
}

Status StoreImpl::WriteHintFor(const std::shared_ptr<DataFile>& file) {
  Status s = BuildHintFile(options_.dir + "/" + format::HintFileName(file->id()), file->id(),
                           file->data(), file->size());
  if (s.ok()) s = io::SyncDir(options_.dir);
  if (s.ok()) file->has_hint = true;
  return s;
}

Status StoreImpl::RunCompaction(bool manual) {
  const auto start = Clock::now();
  if (manual) {
    // Seal the active file so that everything written so far can be merged.
    Status rotated = Status::Failed("the store is closing");
    RunOnWriter([&] {
      rotated = Status::OK();
      if (write_offset_ > 0) rotated = Rotate(options_.max_file_size);
    });
    if (!rotated.ok()) return rotated;
  }
  const uint64_t active = active_id_.load();
  std::vector<std::shared_ptr<DataFile>> sealed;
  for (auto& f : files_.Snapshot()) {
    if (f->id() < active) sealed.push_back(std::move(f));
  }
  // The prefix: everything (manual), or up to the newest file past a trigger (automatic).
  size_t count = 0;
  if (manual) {
    count = sealed.size();
  } else {
    for (size_t i = 0; i < sealed.size(); ++i) {
      if (NeedsCompaction(*sealed[i])) count = i + 1;
    }
  }
  // Outputs take the ids right after the last input; the next file must leave room for them.
  while (count > 0 && count < sealed.size() && sealed[count]->id() == sealed[count - 1]->id() + 1) {
    ++count;
  }
  if (count == 0) return Status::OK();
  sealed.resize(count);

  uint64_t input_bytes = 0;
  for (const auto& f : sealed) input_bytes += f->size();
  spdlog::info("compaction: start, {} files, {} MB{}", count, input_bytes >> 20,
               manual ? " (requested)" : "");

  const int64_t now = NowMs();
  uint64_t next_id = sealed.back()->id() + 1;
  std::vector<std::unique_ptr<Output>> outputs;
  std::vector<Move> moves;
  uint64_t read_bytes = 0;
  uint64_t written_bytes = 0;
  auto last_log = Clock::now();
  Status s;

  auto flush = [&](Output& out) -> Status {
    Status st =
        io::WriteAll(out.fd, out.path + ".tmp", out.size, out.buffer.data(), out.buffer.size());
    out.size += out.buffer.size();
    out.buffer.clear();
    return st;
  };
  auto finish = [&](Output& out) -> Status {
    Status st = flush(out);
    if (st.ok()) st = SyncData(out.fd, out.path + ".tmp");
    if (st.ok()) st = out.hint.Finish(out.size);
    if (st.ok() && rename((out.path + ".tmp").c_str(), out.path.c_str()) != 0) {
      st = Status::FromErrno("rename", out.path + ".tmp", -1, errno);
    }
    return st;
  };
  auto open_output = [&]() -> Status {
    auto out = std::make_unique<Output>();
    out->id = next_id++;
    out->index = NextFileIndex();
    out->path = options_.dir + "/" + format::DataFileName(out->id);
    const std::string tmp = out->path + ".tmp";
    out->fd = open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out->fd < 0) return Status::FromErrno("create", tmp, -1, errno);
    Status st = out->hint.Open(options_.dir + "/" + format::HintFileName(out->id), out->id);
    outputs.push_back(std::move(out));
    return st;
  };

  for (const auto& in : sealed) {
    const char* data = in->data();
    const uint64_t size = in->size();
    for (uint64_t off = 0; off < size && s.ok();) {
      format::RecordHeader h;
      const format::RecordCheck check = format::CheckRecord(data, size, off, true, &h);
      if (check != format::RecordCheck::kOk) {
        s = Status::Corruption(in->path() + ": " + format::RecordCheckName(check) + " at offset " +
                               std::to_string(off));
        break;
      }
      const uint64_t rec_size = h.record_size();
      const std::string_view key(data + off + format::kRecordHeaderSize, h.key_size);
      const uint64_t here = off;
      off += rec_size;
      read_bytes += rec_size;
      if (h.tombstone() || (h.expires() && h.expire_at_ms <= now)) continue;
      const uint64_t hash = keydir_.Hash(key);
      Location candidates[8];
      const size_t n = keydir_.FindCandidates(hash, candidates, 8);
      bool live = false;
      for (size_t i = 0; i < n && !live; ++i) {
        live = candidates[i].file == in->index() && candidates[i].offset == here;
      }
      if (!live) continue;
      if (outputs.empty() || outputs.back()->size + outputs.back()->buffer.size() + rec_size >
                                 options_.max_file_size) {
        if (!outputs.empty()) s = finish(*outputs.back());
        if (s.ok()) s = open_output();
        if (!s.ok()) break;
      }
      Output& out = *outputs.back();
      const uint64_t to = out.size + out.buffer.size();
      out.buffer.append(data + here, rec_size);  // copied verbatim: same bytes, same CRC
      out.hint.Add({to, h.key_size, h.value_size, h.flags, h.expire_at_ms}, key);
      moves.push_back({hash, Location{in->index(), here, h.expires()},
                       Location{out.index, to, h.expires()}, rec_size});
      written_bytes += rec_size;
      if (out.buffer.size() >= (1u << 20)) s = flush(out);
      if (options_.compaction_rate_limit > 0) {
        const double allowed = std::chrono::duration<double>(Clock::now() - start).count() *
                               static_cast<double>(options_.compaction_rate_limit);
        if (static_cast<double>(written_bytes) > allowed) {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
      }
      if (Clock::now() - last_log >= std::chrono::seconds(1)) {
        last_log = Clock::now();
        spdlog::info("compaction: {:.1f}% read ({} of {} MB), {} MB written",
                     100.0 * static_cast<double>(read_bytes) / static_cast<double>(input_bytes),
                     read_bytes >> 20, input_bytes >> 20, written_bytes >> 20);
      }
      {
        std::lock_guard lock(bg_mu_);
        if (bg_stopping_) s = Status::Failed("the store is closing");
      }
    }
    if (!s.ok()) break;
  }
  if (s.ok() && !outputs.empty()) s = finish(*outputs.back());
  if (s.ok()) s = io::SyncDir(options_.dir);

  std::vector<std::shared_ptr<DataFile>> mapped;
  for (auto& out : outputs) {
    if (!s.ok()) break;
    std::shared_ptr<DataFile> file;
    s = DataFile::Map(out->path, out->id, out->index, out->fd, out->size, out->size, &file);
    out->fd = -1;  // adopted by the DataFile (or closed by Map on failure)
    if (s.ok()) {
      file->has_hint = true;
      mapped.push_back(std::move(file));
    }
  }
  if (!s.ok()) {
    for (auto& out : outputs) {
      if (out->fd >= 0) close(out->fd);
      out->hint.Abandon();
      unlink((out->path + ".tmp").c_str());
    }
    for (auto& file : mapped) unlink(file->path().c_str());
    for (auto& out : outputs) unlink((options_.dir + "/" + format::HintFileName(out->id)).c_str());
    spdlog::error("compaction: abandoned: {}", s.ToString());
    return s;
  }

  // Install on the writer thread: repoint keys still at the copied records, retire the inputs.
  // (The writer outlives this thread: Close stops the background thread first.)
  uint64_t moved = 0;
  RunOnWriter([&] {
    for (auto& file : mapped) files_.Add(file);
    for (const Move& m : moves) {
      if (keydir_.ReplaceIfAt(m.hash, m.from, m.to)) {
        ++moved;
      } else {  // overwritten or deleted while we copied: the copy is dead on arrival
        files_.GetRaw(m.to.file)->dead_bytes.fetch_add(m.size, std::memory_order_relaxed);
      }
    }
    for (const auto& in : sealed) files_.Remove(in->index());
    // The inputs hold older versions of keys whose newest record may sit unsynced in the active
    // file (everysec / no). Once the inputs are unlinked those older versions are gone, so a power
    // cut that then lost the newer record would leave such a key absent — a state it never had.
    // Make the newer records durable first.
    if (dirty_ && s.ok()) {
      s = SyncData(active_->fd(), active_->path());
      if (s.ok()) {
        dirty_ = false;
      } else {
        s = FailStop(s);
      }
    }
  });
  if (!s.ok()) {  // keep the inputs: with both inputs and outputs the data is whole
    spdlog::error("compaction: not retiring the inputs: {}", s.ToString());
    return s;
  }
  // Oldest first, each unlink made durable before the next: on a file system that does not keep
  // the order of directory changes, a power cut could otherwise bring back an older input whose
  // key's tombstone went with a newer one (see the file comment).
  for (const auto& in : sealed) {
    unlink(in->path().c_str());
    unlink((options_.dir + "/" + format::HintFileName(in->id())).c_str());
    s = io::SyncDir(options_.dir);
    if (!s.ok()) break;
  }

  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  const uint64_t reclaimed = input_bytes > written_bytes ? input_bytes - written_bytes : 0;
  compactions_.fetch_add(1);
  compaction_reclaimed_.fetch_add(reclaimed);
  compaction_bytes_read_.fetch_add(input_bytes);
  compaction_bytes_written_.fetch_add(written_bytes);
  compaction_total_ms_.fetch_add(ms);
  last_compaction_ms_ = ms;
  spdlog::info(
      "compaction: done in {} ms: read {} MB from {} files, wrote {} MB in {} files ({} "
      "records, {} moved), reclaimed {} MB",
      ms, input_bytes >> 20, count, written_bytes >> 20, mapped.size(), moves.size(), moved,
      reclaimed >> 20);
  return s;
}

}  // namespace keg::store
