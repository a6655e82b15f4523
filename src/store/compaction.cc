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
#include <array>
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
  bool finished = false;  // synced and renamed
};

// A record copied, to repoint its key at install: 32 bytes (packed locations).
struct Move {
  uint64_t hash;
  uint64_t from;  // Location::Pack
  uint64_t to;
  uint64_t size : 56;
  uint64_t db : 8;  // physical database
};
static_assert(sizeof(Move) == 32);
// The moves a round may hold: Options::compaction_max_moves (1M x 32 bytes = 32 MiB by default),
// with the 1 MiB output buffer and a hint file's 1 MiB buffer the whole of a compaction's memory.

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
    DrainDeadLater();
    WriteMissingHints();
    if (!waiters.empty()) {
      const Status s = RunCompaction(true);
      for (auto& done : waiters) done(s);
    } else if (options_.auto_compaction && Clock::now() - last_check >= AutoCompactionDelay()) {
      last_check = Clock::now();
      NoteAutoCompaction(RunCompaction(false));
    }
  }
  std::vector<std::function<void(const Status&)>> waiters;
  {
    std::lock_guard lock(bg_mu_);
    waiters.swap(compact_waiters_);
  }
  for (auto& done : waiters) done(Status::Failed("the store is closing"));
}

std::chrono::milliseconds StoreImpl::AutoCompactionDelay() const {
  // After n failures in a row the next try waits 2^n intervals (at most 10 minutes): a disk that
  // stays full is not rescanned every second.
  const uint64_t failures = compaction_failures_.load(std::memory_order_relaxed);
  const int64_t base = options_.background_interval_ms;
  const int64_t delay = failures == 0 ? base : base << std::min<uint64_t>(failures, 20);
  return std::chrono::milliseconds(std::min<int64_t>(delay, 600'000));
}

void StoreImpl::NoteAutoCompaction(const Status& s) {
  // Logged once per change of state (failing, failing for another reason, working again).
  std::lock_guard lock(compaction_error_mu_);
  if (s.ok()) {
    if (compaction_failures_.load() > 0) {
      spdlog::info("compaction: working again after {} failed attempts", compaction_failures_.load());
    }
    compaction_failures_ = 0;
    compaction_error_.clear();
    return;
  }
  const std::string text = s.ToString();
  const uint64_t failures = compaction_failures_.fetch_add(1) + 1;
  if (text != compaction_error_) {
    spdlog::error("compaction: {} (retrying with backoff, next in {} s; logged again only if the error changes)",
                  text, AutoCompactionDelay().count() / 1000);
    compaction_error_ = text;
  } else {
    spdlog::debug("compaction: failed again ({} in a row): {}", failures, text);
  }
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
  // A file the next automatic compaction will rewrite gets no hint file: the compaction's output
  // gets its own. (A hint file has an entry per record, dead ones too: for a file sealed with
  // most of its records overwritten — a workload that rewrites few keys — it wrote about 170 MB
  // per 256 MB file, on the core the clients need, only for the compaction to delete it moments
  // later.) While compaction is failing the hints are written, so restarts stay fast.
  const bool compaction_will_run = options_.auto_compaction && compaction_failures_.load(std::memory_order_relaxed) == 0;
  for (const auto& file : files_.Snapshot()) {
    if (file->id() >= active || file->has_hint.load()) continue;
    if (compaction_will_run && NeedsCompaction(*file)) continue;
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
      if (write_offset_ > format::kFileHeaderSize) rotated = Rotate(options_.max_file_size);
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
  std::vector<std::unique_ptr<Output>> outputs;  // this round's
  std::vector<Move> moves;                       // this round's: at most kMaxMoves
  // Element records' moves, by the collection (incarnation) whose index names them.
  std::vector<std::pair<Move, uint64_t>> element_moves;
  uint64_t read_bytes = 0;
  uint64_t written_bytes = 0;
  uint64_t total_moves = 0;
  uint64_t moved = 0;
  size_t output_files = 0;
  size_t retired = 0;  // inputs retired so far (a prefix of `sealed`)
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
    // Outputs are format-2 files: they start with the file header record (in the hint too, so a
    // replay from the hint sees the file as it is).
    format::AppendFileHeader(&out->buffer, NowMs());
    format::RecordHeader fh = format::DecodeHeader(out->buffer.data());
    out->hint.Add({0, 0, fh.value_size, fh.flags, fh.tag, 0}, {});
    outputs.push_back(std::move(out));
    return st;
  };

  // A round ends when its moves reach the budget, and after the last input: its outputs are made
  // durable and installed, and the inputs read to the end by then are retired. Every round is a
  // compaction of a prefix in its own right (see the file comment): the keys its outputs hold
  // were live when this compaction started, the outputs sort after every input, and an input is
  // deleted only once all of it has been read. So memory is bounded (kMaxMoves) however many keys
  // there are (Options::compaction_max_moves), and a crash between rounds leaves a directory that
  // replays right.
  auto end_round = [&](size_t done_inputs) -> Status {
    Status st;
    if (!outputs.empty() && outputs.back()->fd >= 0 && !outputs.back()->finished) {
      st = finish(*outputs.back());
      outputs.back()->finished = st.ok();
    }
    if (st.ok()) st = io::SyncDir(options_.dir);
    std::vector<std::shared_ptr<DataFile>> mapped;
    for (auto& out : outputs) {
      if (!st.ok()) break;
      std::shared_ptr<DataFile> file;
      st = DataFile::Map(out->path, out->id, out->index, out->fd, out->size, out->size, &file);
      out->fd = -1;  // adopted by the DataFile (or closed by Map on failure)
      if (st.ok()) {
        file->has_hint = true;
        file->dead_bytes.store(format::kFileHeaderSize, std::memory_order_relaxed);  // never live
        mapped.push_back(std::move(file));
      }
    }
    if (!st.ok()) {  // this round's outputs go; earlier rounds are installed and stay
      for (auto& out : outputs) {
        if (out->fd >= 0) close(out->fd);
        out->hint.Abandon();
        unlink((out->path + ".tmp").c_str());
        unlink(out->path.c_str());
        unlink((options_.dir + "/" + format::HintFileName(out->id)).c_str());
      }
      outputs.clear();
      return st;
    }
    // Install on the writer thread: repoint keys still at the copied records, retire the inputs
    // read to the end. (The writer outlives this thread: Close stops the background thread first.)
    RunOnWriter([&] {
      for (auto& file : mapped) files_.Add(file);
      for (const Move& m : moves) {
        if (keydirs_[m.db]->ReplaceIfAt(m.hash, Location::Unpack(m.from), Location::Unpack(m.to))) {
          ++moved;
        } else {  // overwritten or deleted while we copied: the copy is dead on arrival
          files_.GetRaw(Location::Unpack(m.to).file)->dead_bytes.fetch_add(m.size, std::memory_order_relaxed);
        }
      }
      for (const auto& [m, inc] : element_moves) {
        auto it = collections_.find(inc);  // the writer role: no lock needed to read the map
        if (it != collections_.end() && it->second->ordered) {
          // A sorted set's order names the record too: repointed under the walk lock, which its
          // readers hold. The copy holds the same member and score.
          Collection& coll = *it->second;
          const Location to = Location::Unpack(m.to);
          const DataFile* file = files_.GetRaw(to.file);
          std::string_view member, value;
          double score = 0;
          Status error;
          if (file != nullptr && ReadElementAt(*file, to.offset, &member, &value, &error) &&
              format::DecodeScore(value, &score)) {
            std::unique_lock walk(coll.walk_mu);
            coll.ordered->Repoint(score, member, Location{Location::Unpack(m.from).file, Location::Unpack(m.from).offset, false, 0}.Pack(),
                                  Location{to.file, to.offset, false, 0}.Pack(), WriterMemberFn());
          }
        }
        // A list's index is keyed by the member: read back from the copy (same key).
        std::string_view ekey;
        bool keyed = it != collections_.end();
        if (keyed && it->second->positions) {
          const Location to = Location::Unpack(m.to);
          const DataFile* file = files_.GetRaw(to.file);
          const std::string_view member = file != nullptr ? MemberForCompare(*file, to.offset) : std::string_view();
          keyed = member.data() != nullptr;  // null: its header failed (it was checked as it was copied)
          if (keyed) {
            ekey = std::string_view(member.data() - format::kIncarnationSize, member.size() + format::kIncarnationSize);
          }
        }
        if (keyed &&
            it->second->ReplaceIfAt(ekey, m.hash, Location::Unpack(m.from), Location::Unpack(m.to))) {
          ++moved;
        } else {  // the element or its whole collection went while we copied
          files_.GetRaw(Location::Unpack(m.to).file)->dead_bytes.fetch_add(m.size, std::memory_order_relaxed);
        }
      }
      for (size_t i = retired; i < done_inputs; ++i) files_.Remove(sealed[i]->index());
      // The inputs hold older versions of keys whose newest record may sit unsynced in the active
      // file (everysec / no). Once the inputs are unlinked those older versions are gone, so a
      // power cut that then lost the newer record would leave such a key absent — a state it
      // never had. Make the newer records durable first.
      if (dirty_ && done_inputs > retired) {
        st = SyncData(active_->fd(), active_->path());
        if (st.ok()) {
          dirty_ = false;
        } else {
          st = FailStop(st);
        }
      }
    });
    output_files += mapped.size();
    compaction_rounds_.fetch_add(1, std::memory_order_relaxed);
    outputs.clear();
    moves.clear();
    element_moves.clear();
    if (!st.ok()) {  // keep the inputs: with both inputs and outputs the data is whole
      spdlog::error("compaction: not retiring the inputs: {}", st.ToString());
      return st;
    }
    // Oldest first, each unlink made durable before the next: on a file system that does not keep
    // the order of directory changes, a power cut could otherwise bring back an older input whose
    // key's tombstone went with a newer one (see the file comment).
    for (; retired < done_inputs; ++retired) {
      unlink(sealed[retired]->path().c_str());
      unlink((options_.dir + "/" + format::HintFileName(sealed[retired]->id())).c_str());
      st = io::SyncDir(options_.dir);
      if (!st.ok()) {
        ++retired;
        break;
      }
    }
    return st;
  };

  // Inputs are read in order through the shared, random-access maps: read ahead explicitly a
  // window in front (without changing the advice readers' faults get), and mark what was read as
  // first to reclaim, so a compaction of data larger than memory does not push the clients' hot
  // pages out of the page cache.
  constexpr uint64_t kReadAhead = 8u << 20;
  // The collection of the element records being read, looked up again when the incarnation
  // changes or after kHeldUses records: a file is mostly runs of one collection's records (a
  // pipeline of HSETs), and each lookup costs a lock and a reference count (a profile of a 255 MB
  // file of one hash's fields put 30% of the compaction's time there). A collection dropped while
  // held has the records read meanwhile copied; the install finds their incarnation gone and
  // counts the copies dead, as it does for a collection dropped after its records were read.
  constexpr uint32_t kHeldUses = 4096;
  std::shared_ptr<Collection> held;
  uint64_t held_inc = 0;
  uint32_t held_uses = kHeldUses;  // (the first element record looks its collection up)
  std::vector<std::shared_ptr<Collection>> batch_holds;  // those held before `held` in a batch
  // A batch of records read ahead of their liveness checks (below).
  struct Candidate {
    format::RecordHeader h;
    uint64_t here;  // offset in the input
    std::string_view key;
    uint64_t hash;
    const Collection* coll;  // an element's (kept alive by `held` or batch_holds)
    bool element;
    bool live;
    bool probed;
  };
  constexpr size_t kBatch = 32;
  std::array<Candidate, kBatch> batch;
  std::array<uint64_t, kBatch> probe_hashes;
  std::array<size_t, kBatch> probe_of;
  for (size_t input = 0; input < sealed.size() && s.ok(); ++input) {
    const auto& in = sealed[input];
    const char* data = in->data();
    const uint64_t size = in->size();
    uint64_t ahead = 0;   // read-ahead asked up to here
    uint64_t behind = 0;  // marked cold up to here
    for (uint64_t off = 0; off < size && s.ok();) {
      // Up to kBatch records at a time: checked and hashed first, then their liveness probes made
      // together (a large index's probes are cache misses; made one by one, each waited for the
      // last: half of a compaction's time), then the live ones copied in file order.
      size_t n = 0;
      while (n < kBatch && off < size) {
        if (off + kReadAhead / 2 >= ahead && ahead < size) {
          in->Advise(DataFile::Advice::kWillNeed, ahead, kReadAhead);
          ahead += kReadAhead;
        }
        if (off >= behind + kReadAhead) {
          in->Advise(DataFile::Advice::kCold, behind, off - behind);
          behind = off / 4096 * 4096;
        }
        Candidate& c = batch[n];
        const format::RecordCheck check = format::CheckRecord(data, size, off, true, &c.h);
        if (check != format::RecordCheck::kOk) {
          s = Status::Corruption(in->path() + ": " + format::RecordCheckName(check) + " at offset " +
                                 std::to_string(off));
          break;
        }
        const format::RecordHeader& h = c.h;
        c.here = off;
        off += h.record_size();
        read_bytes += h.record_size();
        // Tombstones, expired records, FLUSHALL and FLUSHDB records are never live: every older
        // record they hide lies inside the merged prefix. File headers neither (outputs have their
        // own). SWAPDB records always are: the database map must survive (a few bytes each).
        if (h.tombstone() || h.flush_all() || h.flush_db() || h.file_header() ||
            (h.expires() && h.expire_at_ms <= now)) {
          continue;
        }
        // (Cannot happen: recovery refuses such a directory.)
        if (!h.swap_db() && h.tag.db >= keydirs_.size()) continue;
        c.key = std::string_view(data + c.here + format::kRecordHeaderSize, h.key_size);
        c.hash = h.swap_db() ? 0 : Hash(c.key);
        c.live = h.swap_db();
        c.probed = c.live;
        // An element is live when its collection's index names it (a dropped collection's are not).
        c.element = h.tag.kind == format::kKindElement;
        c.coll = nullptr;
        if (c.element) {
          const uint64_t inc = format::IncarnationOf(c.key);
          if (inc != held_inc || held_uses >= kHeldUses) {
            if (held) batch_holds.push_back(std::move(held));  // earlier records of the batch use it
            held = FindCollection(inc);
            held_inc = inc;
            held_uses = 0;
          }
          ++held_uses;
          c.coll = held.get();
          if (c.coll == nullptr) continue;
        }
        ++n;
      }
      if (!s.ok()) break;
      for (size_t k = 0; k < n; ++k) {
        Candidate& c = batch[k];
        if (c.probed) continue;
        const Location at{in->index(), c.here, false};
        if (c.element && !c.coll->positions) {
          // This record's and every later one's of the same collection, together.
          size_t m = 0;
          for (size_t j = k; j < n; ++j) {
            if (!batch[j].probed && batch[j].coll == c.coll) {
              probe_of[m] = j;
              probe_hashes[m++] = batch[j].hash;
              batch[j].probed = true;
            }
          }
          c.coll->index.FindEach(std::span<const uint64_t>(probe_hashes.data(), m), [&](size_t i, const Location& loc) {
            Candidate& p = batch[probe_of[i]];
            p.live |= loc.file == at.file && loc.offset == p.here;
          });
          continue;
        }
        LocationBuffer<8> candidates;
        const size_t found = c.element ? c.coll->FindCandidates(c.key, c.hash, candidates, 8)
                                       : keydirs_[c.h.tag.db]->FindCandidates(c.hash, candidates, 8);
        for (size_t i = 0; i < found && !c.live; ++i) {
          c.live = candidates[i].file == at.file && candidates[i].offset == c.here;
        }
        c.probed = true;
      }
      for (size_t k = 0; k < n && s.ok(); ++k) {
        const Candidate& c = batch[k];
        if (!c.live) continue;
        const format::RecordHeader& h = c.h;
        const uint64_t rec_size = h.record_size();
        if (outputs.empty() || outputs.back()->size + outputs.back()->buffer.size() + rec_size >
                                   options_.max_file_size) {
          if (!outputs.empty()) {
            s = finish(*outputs.back());
            outputs.back()->finished = s.ok();
          }
          if (s.ok()) s = open_output();
          if (!s.ok()) break;
        }
        Output& out = *outputs.back();
        const uint64_t to = out.size + out.buffer.size();
        out.buffer.append(data + c.here, rec_size);  // copied verbatim: same bytes, same CRC
        out.hint.Add({to, h.key_size, h.value_size, h.flags, h.tag, h.expire_at_ms}, c.key);
        if (c.element) {
          element_moves.push_back({{c.hash, Location{in->index(), c.here, false}.Pack(),
                                    Location{out.index, to, false}.Pack(), rec_size & ((1ull << 56) - 1), h.tag.db},
                                   format::IncarnationOf(c.key)});
        } else if (!h.swap_db()) {
          moves.push_back({c.hash, Location{in->index(), c.here, h.expires()}.Pack(),
                           Location{out.index, to, h.expires()}.Pack(), rec_size & ((1ull << 56) - 1), h.tag.db});
        }
        ++total_moves;
        written_bytes += rec_size;
        if (out.buffer.size() >= (1u << 20)) s = flush(out);
        if (s.ok() && moves.size() + element_moves.size() >= std::max<size_t>(options_.compaction_max_moves, 1)) {
          s = end_round(input);  // inputs before this one are read
        }
      }
      batch_holds.clear();
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
  }
  if (s.ok()) s = end_round(sealed.size());
  if (!s.ok()) {
    for (auto& out : outputs) {  // the unfinished round
      if (out->fd >= 0) close(out->fd);
      out->hint.Abandon();
      unlink((out->path + ".tmp").c_str());
      unlink(out->path.c_str());
      unlink((options_.dir + "/" + format::HintFileName(out->id)).c_str());
    }
    spdlog::error("compaction: abandoned after retiring {} of {} inputs: {}", retired, sealed.size(), s.ToString());
    return s;
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
      ms, input_bytes >> 20, count, written_bytes >> 20, output_files, total_moves, moved,
      reclaimed >> 20);
  return s;
}

}  // namespace keg::store
