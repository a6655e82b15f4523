#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pthread.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <future>
#include <mutex>
#include <random>
#include <thread>
#include <tuple>

#include "store/io.h"
#include "store/store_impl.h"

namespace keg::store {
namespace {

constexpr size_t kMaxCandidates = 8;

// Txn::GroupEpoch values, unique in the process: a cache keyed by one cannot be taken for another
// store's (tests run several stores in one process).
uint64_t NextGroupEpoch() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

// A group larger than this is committed before the next batch joins it, bounding writer memory.
constexpr size_t kMaxGroupBytes = 64u << 20;
// Room a group holding scripts must find in the active file to be written inline (WriteAll):
// what scripts write is known only once they have run. Once per group, not per script: a turn of
// pipelined clients brings hundreds of scripts, which would otherwise never fit.
constexpr uint64_t kScriptRoomBytes = 1u << 20;
constexpr int64_t kExpireIntervalMs = 100;
constexpr auto kExpireBudget = std::chrono::microseconds(1000);
constexpr auto kWriterTick = std::chrono::milliseconds(100);
// everysec: an fdatasync starts this long after the previous one started (at most a writer tick
// later), so with the sync's own time a power cut loses at most the last second of writes.
constexpr int64_t kEverySecIntervalMs = 800;

uint64_t RandomSeed() {
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd();
}

bool Expired(const format::RecordHeader& h, int64_t now_ms) {
  return h.expires() && h.expire_at_ms <= now_ms;
}

// The value of the record at `record` (header already decoded), as a view without a pin.
ValueView ViewOf(const char* record, const format::RecordHeader& h) {
  ValueView v;
  v.value = std::string_view(record + format::kRecordHeaderSize + h.key_size, h.value_size);
  v.expire_at_ms = h.expires() ? h.expire_at_ms : 0;
  v.type = h.tag.type;
  v.kind = h.tag.kind;
  return v;
}

}  // namespace

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---- WriteBatch --------------------------------------------------------------------------------

WriteBatch::Op& WriteBatch::Add(Kind kind, std::string key) {
  // A pipelined batch grows past one op: room for several at once saves the reallocations (and
  // the moves of every op) of growing 1, 2, 4, 8.
  if (ops_.capacity() == 0) ops_.reserve(16);
  Op& op = ops_.emplace_back();
  op.kind = kind;
  op.command = command_;
  op.db = db_;
  op.key = std::move(key);
  return op;
}

void WriteBatch::Put(std::string key, std::string value, int64_t expire_at_ms,
                     PutCondition condition, bool keep_ttl, bool want_old, uint8_t type) {
  Op& op = Add(Kind::kPut, std::move(key));
  op.type = type;
  op.value = std::move(value);
  op.expire_at_ms = expire_at_ms;
  op.put_condition = condition;
  op.keep_ttl = keep_ttl;
  op.want_old = want_old;
}

void WriteBatch::Delete(std::string key, bool want_old) {
  Add(Kind::kDelete, std::move(key)).want_old = want_old;
}

void WriteBatch::Expire(std::string key, int64_t expire_at_ms, ExpireCondition condition) {
  Op& op = Add(Kind::kExpire, std::move(key));
  op.expire_at_ms = expire_at_ms;
  op.expire_condition = condition;
}

void WriteBatch::Update(std::string key, UpdateFn fn, bool want_old) {
  Op& op = Add(Kind::kUpdate, std::move(key));
  op.fn = std::move(fn);
  op.want_old = want_old;
}

void WriteBatch::UpdateOrRun(std::string key, UpdateFn fn, RunFn run) {
  Op& op = Add(Kind::kUpdate, std::move(key));
  op.fn = std::move(fn);
  op.run = std::move(run);
}

void WriteBatch::DeleteAll() { Add(Kind::kDeleteAll, std::string()); }

void WriteBatch::DeleteDb() { Add(Kind::kDeleteDb, std::string()); }

void WriteBatch::SwapDb(uint32_t a, uint32_t b) {
  Op& op = Add(Kind::kSwapDb, std::string());
  op.db = a;
  op.db2 = b;
}

void WriteBatch::Move(std::string key, uint32_t to) { Add(Kind::kMove, std::move(key)).db2 = to; }

void WriteBatch::ReadKeys(KeysQuery query) { Add(Kind::kReadKeys, std::string()).query = query; }

void WriteBatch::Run(RunFn fn, std::string key) { Add(Kind::kRun, std::move(key)).run = std::move(fn); }

// ---- FileTable ---------------------------------------------------------------------------------

std::shared_ptr<DataFile> FileTable::Get(uint32_t index) const {
  std::shared_lock lock(mu_);
  const std::shared_ptr<DataFile>* f = Find(index);
  return f == nullptr ? nullptr : *f;
}

void FileTable::Prefetch(uint32_t index, uint64_t offset) const {
  std::shared_lock lock(mu_);
  PrefetchUnlocked(index, offset);
}

void FileTable::PrefetchUnlocked(uint32_t index, uint64_t offset) const {
  const std::shared_ptr<DataFile>* f = Find(index);
  if (f == nullptr || offset >= (*f)->size()) return;
  // A record's header and key: the first cache line, and the next when they straddle it.
  const char* at = (*f)->data() + offset;
  __builtin_prefetch(at);
  if (offset + 64 < (*f)->size()) __builtin_prefetch(at + 64);
}

DataFile* FileTable::GetRaw(uint32_t index) const {
  std::shared_lock lock(mu_);
  const std::shared_ptr<DataFile>* f = Find(index);
  return f == nullptr ? nullptr : f->get();
}

void FileTable::Add(std::shared_ptr<DataFile> file) {
  const uint32_t index = file->index();
  std::unique_lock lock(mu_);
  if (slots_.empty()) {
    base_ = index;
  } else if (index < base_) {  // Open adds files in any order
    slots_.insert(slots_.begin(), base_ - index, nullptr);
    base_ = index;
  }
  if (index - base_ >= slots_.size()) slots_.resize(index - base_ + 1);
  slots_[index - base_] = std::move(file);
}

void FileTable::Remove(uint32_t index) {
  std::shared_ptr<DataFile> gone;  // unmapped, if last, after the lock is let go
  std::unique_lock lock(mu_);
  const uint32_t i = index - base_;
  if (i >= slots_.size()) return;
  gone = std::move(slots_[i]);
  // Keep the array to the live range: compaction removes the oldest files.
  size_t front = 0;
  while (front < slots_.size() && !slots_[front]) ++front;
  if (front == slots_.size()) {
    slots_.clear();
    base_ = 0;
  } else if (front > 0) {
    slots_.erase(slots_.begin(), slots_.begin() + static_cast<std::ptrdiff_t>(front));
    base_ += static_cast<uint32_t>(front);
  }
  while (!slots_.empty() && !slots_.back()) slots_.pop_back();
}

std::vector<std::shared_ptr<DataFile>> FileTable::Snapshot() const {
  std::vector<std::shared_ptr<DataFile>> out;
  {
    std::shared_lock lock(mu_);
    out.reserve(slots_.size());
    for (const auto& file : slots_) {
      if (file) out.push_back(file);
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a->id() < b->id(); });
  return out;
}

// ---- Open / Close ------------------------------------------------------------------------------

StoreImpl::StoreImpl(const Options& options) : options_(options), group_epoch_(NextGroupEpoch()) {
  expiry_paused_.store(options.keep_expired_at_open, std::memory_order_relaxed);
  const uint64_t seed = options.hash_seed != 0 ? options.hash_seed : RandomSeed();
  const uint32_t visible = std::clamp<uint32_t>(options.databases, 1, 256);
  visible_dbs_ = visible;
  // As many staging databases behind them while that fits the record's db byte (docs/format.md).
  const uint32_t n = visible <= 128 ? visible * 2 : visible;
  for (uint32_t i = 0; i < n; ++i) {
    keydirs_.push_back(std::make_unique<Keydir>(seed));
    db_map_[i].store(static_cast<uint8_t>(i), std::memory_order_relaxed);
    group_map_[i] = logical_of_[i] = replay_map_[i] = static_cast<uint8_t>(i);
  }
}

StoreImpl::~StoreImpl() { (void)Close(); }

Status Store::Open(const Options& options, std::unique_ptr<Store>* store) {
  if (options.max_file_size < 4096 || options.max_file_size > format::kMaxFileSize) {
    return Status::InvalidArgument("data file size must be between 4096 bytes and 1 TiB");
  }
  if (options.databases < 1 || options.databases > 256) {
    return Status::InvalidArgument("databases must be between 1 and 256");
  }
  auto impl = std::make_unique<StoreImpl>(options);
  Status s = impl->OpenImpl();
  if (!s.ok()) return s;
  *store = std::move(impl);
  return Status::OK();
}

Status StoreImpl::OpenImpl() {
  const std::string& dir = options_.dir;
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::FromErrno("create directory", dir, -1, errno);
  }
  const std::string lock_path = dir + "/" + std::string(format::kLockFileName);
  lock_fd_ = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) return Status::FromErrno("open", lock_path, -1, errno);
  if (flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    close(lock_fd_);
    lock_fd_ = -1;
    if (err == EWOULDBLOCK) {
      return Status::Busy("data directory " + dir +
                          " is in use by another keg process (its LOCK file is held)");
    }
    return Status::FromErrno("lock", lock_path, -1, err);
  }
  Status s = Recover();
  bool staging_leftover = false;
  if (s.ok()) s = CheckStaging(&staging_leftover);
  if (s.ok()) s = CreateActiveFile(options_.max_file_size);
  if (!s.ok()) {
    close(lock_fd_);
    lock_fd_ = -1;
    closed_ = true;
    return s;
  }
  last_sync_ms_ = last_expire_ms_ = NowMs();
  writer_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "keg-writer");  // shows in top -H, perf, gdb
    WriterLoop();
  });
  background_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "keg-compact");
    // Below the event loops and the writer (nice +5, about a quarter of a core they contend
    // for): on a busy machine the clients are served first and compaction, hints and dead-byte
    // accounting take what is left — all of a core when it is idle. Best effort.
    (void)setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 5);
    BackgroundLoop();
  });
  if (staging_leftover) {
    spdlog::warn("recovery: a replica's full sync was interrupted (its staging databases hold part of it); "
                 "discarding that part");
    if (Status e = EndStaging(false); !e.ok()) spdlog::warn("recovery: emptying the staging databases: {}", e.ToString());
  }
  return Status::OK();
}

Status StoreImpl::CheckStaging(bool* leftover) {
  *leftover = false;
  const uint32_t base = StagingBase();
  uint32_t last = 0;  // the last logical database past the visible ones holding keys, plus one
  for (uint32_t db = visible_dbs_; db < keydirs_.size(); ++db) {
    if (keydirs_[db_map_[db].load(std::memory_order_relaxed)]->Size() > 0) last = db + 1;
  }
  const std::string note_path = options_.dir + "/" + std::string(format::kStagingFileName);
  std::string note;
  if (const int fd = ::open(note_path.c_str(), O_RDONLY | O_CLOEXEC); fd >= 0) {
    char buf[64];
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    ::close(fd);
    note.assign(buf, n > 0 ? static_cast<size_t>(n) : 0);
    if (note.empty()) note = "?";
  } else if (errno != ENOENT) {
    return Status::FromErrno("open", note_path, -1, errno);
  }
  if (note.empty()) {
    if (last == 0) return Status::OK();
    return Status::InvalidArgument("data directory " + options_.dir + " holds keys of database " +
                                   std::to_string(last - 1) + ": set `databases` to at least " + std::to_string(last));
  }
  if (base == 0 || note != "databases " + std::to_string(visible_dbs_) + "\n") {
    return Status::InvalidArgument("data directory " + options_.dir + " holds part of a replica's full sync that was "
                                   "interrupted under other settings (" + format::kStagingFileName.data() +
                                   " says: " + note.substr(0, note.find('\n')) + "): start with that `databases` "
                                   "once to discard it");
  }
  *leftover = true;
  return Status::OK();
}

Status StoreImpl::EmptyStaging() {
  WriteBatch b;
  for (uint32_t i = 0; i < visible_dbs_; ++i) {
    b.SelectDb(StagingBase() + i);
    b.DeleteDb();
  }
  return WriteSync(std::move(b), nullptr);
}

Status StoreImpl::BeginStaging() {
  if (StagingBase() == 0) return Status::InvalidArgument("no staging databases (more than 128 databases)");
  // The note first: a crash after it and before the load's first key leaves nothing to discard.
  Status s = io::ReplaceFile(options_.dir + "/" + std::string(format::kStagingFileName),
                             "databases " + std::to_string(visible_dbs_) + "\n");
  if (s.ok()) s = EmptyStaging();
  staging_flushes_ = FlushAlls();  // (EmptyStaging is FLUSHDBs: a FLUSHALL from now on counts)
  return s;
}

Status StoreImpl::EndStaging(bool swap_in) {
  if (StagingBase() == 0) return Status::InvalidArgument("no staging databases (more than 128 databases)");
  Status s;
  if (swap_in) {
    WriteBatch b;
    const uint64_t flushes = staging_flushes_;
    b.SetPrecondition([this, flushes](const WriteBatch&, const WriteBatch::KeyProbe&) { return FlushAlls() == flushes; });
    for (uint32_t i = 0; i < visible_dbs_; ++i) b.SwapDb(i, StagingBase() + i);
    for (uint32_t i = 0; i < visible_dbs_; ++i) {
      b.SelectDb(StagingBase() + i);
      b.DeleteDb();
    }
    s = WriteSync(std::move(b), nullptr);
  }
  if (!swap_in || s.IsAborted()) {
    if (Status e = EmptyStaging(); !e.ok() && s.ok()) s = e;
  }
  if (s.ok() || s.IsAborted()) {
    if (Status e = io::RemoveFile(options_.dir + "/" + std::string(format::kStagingFileName)); !e.ok() && s.ok()) s = e;
  }
  return s;
}

Status StoreImpl::Close() {
  if (closed_) return Status::OK();
  closed_ = true;
  {
    std::lock_guard lock(bg_mu_);
    bg_stopping_ = true;
  }
  bg_cv_.notify_all();
  if (background_.joinable()) background_.join();
  {
    std::lock_guard lock(queue_mu_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  std::lock_guard role(role_mu_);  // a caller may still be finishing an inline group
  Status s;
  {
    std::lock_guard lock(failed_mu_);
    s = failed_;
  }
  if (active_ && s.ok() && dirty_) s = SyncData(active_->fd(), active_->path());
  if (lock_fd_ >= 0) {
    close(lock_fd_);  // releases the flock
    lock_fd_ = -1;
  }
  return s;
}

// ---- Reads -------------------------------------------------------------------------------------

bool StoreImpl::RecordHasKey(const DataFile& file, uint64_t offset, std::string_view key) const {
  const uint64_t size = file.size();
  if (offset > size || size - offset < format::kRecordHeaderSize) return false;
  const char* p = file.data() + offset;
  const uint32_t key_size = format::Load<uint32_t>(p + format::kKeySizeOffset);
  if (key_size != key.size() || size - offset - format::kRecordHeaderSize < key_size) return false;
  const char* k = p + format::kRecordHeaderSize;
  if (key.size() >= 8 && key.size() <= 16) {  // two loads, no call: an element key (16 bytes in a list)
    return format::Load<uint64_t>(k) == format::Load<uint64_t>(key.data()) &&
           format::Load<uint64_t>(k + key.size() - 8) == format::Load<uint64_t>(key.data() + key.size() - 8);
  }
  return std::memcmp(k, key.data(), key.size()) == 0;
}

bool StoreImpl::RecordHasElementKey(const DataFile& file, uint64_t offset, uint64_t inc,
                                    std::string_view member) const {
  const uint64_t size = file.size();
  if (offset > size || size - offset < format::kRecordHeaderSize) return false;
  const char* p = file.data() + offset;
  const uint32_t key_size = format::Load<uint32_t>(p + format::kKeySizeOffset);
  if (key_size != format::kIncarnationSize + member.size() || size - offset - format::kRecordHeaderSize < key_size) {
    return false;
  }
  const char* k = p + format::kRecordHeaderSize;
  if (format::Load<uint64_t>(k) != inc) return false;  // AssignElementKey's bytes: host order
  k += format::kIncarnationSize;
  if (member.size() == 8) return format::Load<uint64_t>(k) == format::Load<uint64_t>(member.data());  // a list's
  return member.empty() || std::memcmp(k, member.data(), member.size()) == 0;
}

template <class Index, bool kAsWriter>
Status StoreImpl::Lookup(const Index& kd, std::string_view key, uint64_t hash, bool verify,
                         std::shared_ptr<DataFile>* pin, format::RecordHeader* header,
                         uint64_t* offset) const {
  // A file can be retired between reading its location and pinning it (compaction moved the key);
  // the keydir then already names the new place, so look again.
  for (int attempt = 0; attempt < 8; ++attempt) {
    // The first candidate alone first: almost always the key (a full 64-bit hash matched), so the
    // probe run past it is not walked. When it is not the key, the whole run is walked afresh (the
    // keydir may have changed in between) and each candidate checked, the first one again.
    LocationBuffer<kMaxCandidates> candidates;
    size_t n = Candidates<kAsWriter>(kd, key, hash, candidates, 1);
    bool whole = n == 0;
    bool retired = false;
    for (size_t i = 0;; ++i) {
      if (i == n) {
        if (whole) break;
        n = Candidates<kAsWriter>(kd, key, hash, candidates, kMaxCandidates);
        whole = true;
        i = 0;
        if (n == 0) break;
      }
      std::shared_ptr<DataFile> file = kAsWriter ? files_.GetUnlocked(candidates[i].file) : files_.Get(candidates[i].file);
      if (!file) {
        retired = true;
        continue;
      }
      if (!RecordHasKey(*file, candidates[i].offset, key)) continue;
      const format::RecordCheck check =
          format::CheckRecord(file->data(), file->size(), candidates[i].offset, verify, header);
      if (check != format::RecordCheck::kOk) {
        spdlog::error("read of key in {} at offset {}: {}", file->path(), candidates[i].offset,
                      format::RecordCheckName(check));
        return Status::Corruption(file->path() + " at offset " +
                                  std::to_string(candidates[i].offset) + ": " +
                                  format::RecordCheckName(check));
      }
      *pin = std::move(file);
      *offset = candidates[i].offset;
      return Status::OK();
    }
    if (!retired) break;
  }
  return Status::NotFound();
}

namespace {
thread_local int read_together_depth = 0;  // inside ReadTogether: its loop checks the whole
// Inside ReadTogether: the moment its reads judge expiry by, taken at the first read that needs
// it (0: not yet). One command's reads see one time, as Redis's (server.mstime while
// fixed_time_expire is set): EXISTS k k of a key expiring meanwhile is 0 or 2, never 1.
thread_local int64_t read_together_now_ms = 0;

// ExpiredReadsOnThisThread().
thread_local uint64_t expired_reads = 0;

// The time a read judges expiry by: the clock, or ReadTogether's one reading.
int64_t ReadNowMs() {
  if (read_together_depth == 0) return NowMs();
  if (read_together_now_ms == 0) read_together_now_ms = NowMs();
  return read_together_now_ms;
}
}  // namespace

template <class Read>
void StoreImpl::Stable(Read&& read) const {
  if (read_together_depth > 0) return read();
  for (unsigned spins = 0;;) {
    const uint64_t before = apply_seq_.load(std::memory_order_acquire);
    if ((before & 1) != 0) {  // a group is being applied: a few microseconds, unless paused
      if (++spins > 64) std::this_thread::yield();
      continue;
    }
    read();
    std::atomic_thread_fence(std::memory_order_acquire);
    if (apply_seq_.load(std::memory_order_relaxed) == before) return;
  }
}

void StoreImpl::ReadTogether(FunctionRef<void()> reads) const {
  if (read_together_depth > 0) return reads();
  struct Depth {  // the reads' own Stable calls run once: this loop checks the whole; one clock
    Depth() { ++read_together_depth; }
    ~Depth() {
      --read_together_depth;
      read_together_now_ms = 0;  // (each attempt reads the clock afresh, when it needs it)
    }
    Depth(const Depth&) = delete;
    Depth& operator=(const Depth&) = delete;
  };
  // Optimistic (as Stable) a few times; reads that groups kept landing beside (a walk of a large
  // collection while writes stream in would otherwise start again for ever) then hold the writer
  // off between two groups (apply_gate_) for as long as they take.
  constexpr int kOptimistic = 4;
  for (unsigned spins = 0, overlapped = 0; overlapped < kOptimistic;) {
    const uint64_t before = apply_seq_.load(std::memory_order_acquire);
    if ((before & 1) != 0) {  // a group is being applied
      if (++spins > 64) std::this_thread::yield();
      continue;
    }
    {
      Depth depth;
      reads();
    }
    std::atomic_thread_fence(std::memory_order_acquire);
    if (apply_seq_.load(std::memory_order_relaxed) == before) return;
    ++overlapped;
  }
  std::shared_lock gate(apply_gate_);
  Depth depth;
  reads();
}

Status StoreImpl::Get(uint32_t db, std::string_view key, ValueView* out) const {
  Status s;
  Stable([&] { s = GetOnce(db, key, out); });
  return s;
}

Status StoreImpl::GetEvenIfExpired(uint32_t db, std::string_view key, ValueView* out) const {
  Status s;
  Stable([&] { s = GetOnce(db, key, out, true); });
  return s;
}

Status StoreImpl::GetOnce(uint32_t db, std::string_view key, ValueView* out, bool even_if_expired) const {
  const Keydir* kd = ReaderKeydir(db);
  if (kd == nullptr) return Status::NotFound();
  std::shared_ptr<DataFile> file;
  format::RecordHeader h;
  uint64_t offset = 0;
  Status s = Lookup(*kd, key, Hash(key), options_.verify_checksums, &file, &h, &offset);
  if (!s.ok()) return s;
  if (h.expires() && !even_if_expired && h.expire_at_ms <= ReadNowMs()) {  // clock only if needed
    DropExpiredLater(h.tag.db, key);
    return Status::NotFound();
  }
  *out = ViewOf(file->data() + offset, h);
  out->pin = std::move(file);
  return Status::OK();
}

void StoreImpl::Prefetch(uint32_t db, std::span<const std::string_view> keys) const {
  const Keydir* kd = ReaderKeydir(db);
  if (kd == nullptr) return;
  constexpr size_t kMax = 32;
  uint64_t hashes[kMax];
  const size_t n = std::min(keys.size(), kMax);
  for (size_t i = 0; i < n; ++i) {
    hashes[i] = Hash(keys[i]);
    kd->PrefetchLocked(hashes[i]);
  }
  PrefetchRecords(*kd, std::span<const uint64_t>(hashes, n));
}

template <bool kAsWriter>
void StoreImpl::PrefetchRecords(const Keydir& kd, std::span<const uint64_t> hashes) const {
  // By now the first slots have arrived (the loads overlapped): follow each to its record.
  for (const uint64_t hash : hashes) {
    Location loc;
    if constexpr (kAsWriter) {
      if (kd.FindCandidatesUnlocked(hash, &loc, 1) == 1) files_.PrefetchUnlocked(loc.file, loc.offset);
    } else if (kd.FindCandidates(hash, &loc, 1) == 1) {
      files_.Prefetch(loc.file, loc.offset);
    }
  }
}

bool StoreImpl::Exists(uint32_t db, std::string_view key) const {
  ValueView v;
  return Get(db, key, &v).ok();
}

uint64_t StoreImpl::ExpiringKeys(uint32_t db) const {
  const Keydir* kd = ReaderKeydir(db);
  return kd == nullptr ? 0 : kd->Expiring();
}

uint64_t StoreImpl::KeyCount(uint32_t db) const {
  const Keydir* kd = ReaderKeydir(db);
  return kd == nullptr ? 0 : kd->Size();
}

// ---- Cold reads --------------------------------------------------------------------------------

namespace {

// The end of the record at `off` in `file` when it holds a key of `key_size` bytes, else 0 (another
// key under the same hash, or past the end). Reads the header: its page must be in memory.
uint64_t RecordEndFor(const DataFile& file, uint64_t off, uint64_t key_size) {
  const uint64_t size = file.size();
  if (off > size || size - off < format::kRecordHeaderSize) return 0;
  const char* p = file.data() + off;
  if (format::Load<uint32_t>(p + format::kKeySizeOffset) != key_size) return 0;
  return off + format::kRecordHeaderSize + key_size + format::Load<uint32_t>(p + format::kValueSizeOffset);
}

// The first page boundary at or after `at`: the pages a read of [.., at) brought in end there.
uint64_t PageEnd(uint64_t at) {
  const uint64_t page = DataFile::PageSize();
  return (at + page - 1) / page * page;
}

// The whole pages of `file` holding [from, to), never past its end, pinned.
ColdRange ColdRangeOf(std::shared_ptr<DataFile>&& file, uint64_t from, uint64_t to) {
  const uint64_t page = DataFile::PageSize();
  const uint64_t first = from / page * page;
  const uint64_t last = std::min(PageEnd(to), std::max(file->size(), first));
  const int fd = file->fd();
  return ColdRange{std::move(file), fd, first, last - first};
}

}  // namespace

template <class Index>
size_t StoreImpl::CandidatesFor(const Index& index, std::string_view key, Location* out,
                                std::shared_ptr<DataFile>* first) const {
  const uint64_t hash = Hash(key);
  if (Candidates<false>(index, key, hash, out, 1) == 0) return 0;
  if (std::shared_ptr<DataFile> file = files_.Get(out[0].file)) {
    const uint64_t off = out[0].offset;
    const uint64_t head_size = format::kRecordHeaderSize + key.size();
    if (off <= file->size() && file->size() - off >= head_size && file->Resident(off, head_size)) {
      const char* p = file->data() + off;
      if (format::Load<uint32_t>(p + format::kKeySizeOffset) == key.size() &&
          std::memcmp(p + format::kRecordHeaderSize, key.data(), key.size()) == 0) {
        *first = std::move(file);
        return 1;
      }
    }
  }
  return Candidates<false>(index, key, hash, out, kMaxCandidates);
}

// Calls cold(file, from, to) for each part of the records under `key`'s hash that is not resident:
// the pages of a record's header and key, or, once those are resident, the pages of the rest of the
// record. Stops at the first call that returns false; returns whether it was never called.
template <class Index, class Cold>
bool StoreImpl::VisitCold(const Index& index, std::string_view key, Cold&& cold) const {
  LocationBuffer<kMaxCandidates> candidates;
  std::shared_ptr<DataFile> file;
  const size_t n = CandidatesFor(index, key, candidates, &file);
  bool resident = true;
  for (size_t i = 0; i < n; ++i) {
    if (i > 0 || !file) file = files_.Get(candidates[i].file);
    if (!file) continue;
    if (!VisitColdRecord(file, candidates[i].offset, key.size(), [&](std::shared_ptr<DataFile>&& f, uint64_t from, uint64_t to) {
          resident = false;
          return cold(std::move(f), from, to);
        })) {
      return false;
    }
  }
  return resident;
}

// One record: its header and key first (key_size 0: the header alone, the key's size unknown):
// only once they are resident may its sizes be read; then the rest of the record past the pages
// just asked about (often none: one mincore a key). False when cold returned false.
template <class Cold>
bool StoreImpl::VisitColdRecord(const std::shared_ptr<DataFile>& file, uint64_t off, uint64_t key_size,
                                Cold&& cold) const {
  const uint64_t head_end = off + format::kRecordHeaderSize + key_size;
  if (!file->Resident(off, head_end - off)) return cold(std::shared_ptr<DataFile>(file), off, head_end);
  uint64_t end = 0;
  if (key_size != 0) {
    end = RecordEndFor(*file, off, key_size);
  } else if (off <= file->size() && file->size() - off >= format::kRecordHeaderSize) {
    const char* p = file->data() + off;
    end = off + format::kRecordHeaderSize + format::Load<uint32_t>(p + format::kKeySizeOffset) +
          format::Load<uint32_t>(p + format::kValueSizeOffset);
  }
  if (end > PageEnd(head_end) && !file->Resident(PageEnd(head_end), end - PageEnd(head_end))) {
    return cold(std::shared_ptr<DataFile>(file), PageEnd(head_end), end);
  }
  return true;
}

// The incarnation in the record at `off` of `file` when it is the live head of a large collection
// stored under `key`, read from resident pages only and without the checksum (what it leads to is
// fetched as a hint; the command's own read checks the record).
bool StoreImpl::HeadIncarnation(const DataFile& file, uint64_t off, std::string_view key, uint64_t* inc) const {
  const uint64_t head_size = format::kRecordHeaderSize + key.size();
  if (off > file.size() || file.size() - off < head_size || !file.Resident(off, head_size)) return false;
  const char* p = file.data() + off;
  const format::RecordHeader h = format::DecodeHeader(p);
  if (h.key_size != key.size() || std::memcmp(p + format::kRecordHeaderSize, key.data(), key.size()) != 0 ||
      h.tag.kind != format::kKindHead || (h.flags & format::kFlagTombstone) != 0 ||
      h.value_size != format::kIncarnationSize || file.size() - off < head_size + h.value_size ||
      !file.Resident(off + head_size, h.value_size)) {
    return false;
  }
  *inc = format::IncarnationOf(std::string_view(p + head_size, h.value_size));
  return true;
}

bool StoreImpl::KeyResident(uint32_t db, std::string_view key) const {
  const Keydir* kd = ReaderKeydir(db);
  return kd == nullptr ||
         VisitCold(*kd, key, [](std::shared_ptr<DataFile>&&, uint64_t, uint64_t) { return false; });
}

bool StoreImpl::ColdRanges(uint32_t db, std::string_view key, std::vector<ColdRange>* out) const {
  const Keydir* kd = ReaderKeydir(db);
  if (kd == nullptr) return false;
  auto add = [out](std::shared_ptr<DataFile>&& file, uint64_t from, uint64_t to) {
    out->push_back(ColdRangeOf(std::move(file), from, to));
    return true;
  };
  // While a data file is partly cached every command asks: the common case (the key's first
  // candidate, resident, holds it) is one probe and a header read (HGET -P 16: 0.9 us of CPU
  // warm, 1.75 when this took a lookup for the record and another for the head).
  LocationBuffer<kMaxCandidates> candidates;
  std::shared_ptr<DataFile> first;
  const size_t n = CandidatesFor(*kd, key, candidates, &first);
  if (first) {  // the key's record, its header resident (CandidatesFor read it)
    const size_t before = out->size();
    VisitColdRecord(first, candidates[0].offset, key.size(), add);
    const format::RecordHeader h = format::DecodeHeader(first->data() + candidates[0].offset);
    return out->size() == before && h.tag.kind == format::kKindHead && (h.flags & format::kFlagTombstone) == 0;
  }
  bool resident = true;
  bool head = false;
  for (size_t i = 0; i < n; ++i) {
    const std::shared_ptr<DataFile> file = files_.Get(candidates[i].file);
    if (!file) continue;
    resident &= VisitColdRecord(file, candidates[i].offset, key.size(), [&](std::shared_ptr<DataFile>&& f, uint64_t from, uint64_t to) {
      resident = false;
      return add(std::move(f), from, to);
    });
    uint64_t inc = 0;
    head |= resident && HeadIncarnation(*file, candidates[i].offset, key, &inc);
  }
  return resident && head;
}

void StoreImpl::ColdElementRanges(uint32_t db, std::string_view key, const ElementSelection& which,
                                   std::vector<ColdRange>* out) const {
  if (which.empty()) return;
  // The key's head and its incarnation: any other record — the small hash or set most keys are —
  // ends it here, and a head not resident too (its ColdRanges comes first).
  const Keydir* kd = ReaderKeydir(db);
  if (kd == nullptr) return;
  LocationBuffer<kMaxCandidates> candidates;
  std::shared_ptr<DataFile> file;
  const size_t n = CandidatesFor(*kd, key, candidates, &file);
  for (size_t i = 0; i < n; ++i) {
    if (i > 0 || !file) file = files_.Get(candidates[i].file);
    uint64_t inc = 0;
    if (file && HeadIncarnation(*file, candidates[i].offset, key, &inc)) {
      ElementRanges(inc, which, out);
      return;
    }
  }
}

void StoreImpl::ElementRanges(uint64_t inc, const ElementSelection& which, std::vector<ColdRange>* out) const {
  const std::shared_ptr<Collection> coll = FindCollection(inc);
  if (!coll) return;
  std::vector<ColdRange> found;
  auto add = [&found](std::shared_ptr<DataFile>&& file, uint64_t from, uint64_t to) {
    found.push_back(ColdRangeOf(std::move(file), from, to));
    return true;
  };
  if (!which.all && !which.scan && !which.list_range) {
    for (std::string_view m : which.members) VisitCold(*coll, format::ElementKey(inc, m), add);
  } else {
    // Every element, the slice a scan from the cursor reads (the same Scan ScanElements runs), or
    // a list's range (and its meta element: the read starts there).
    std::vector<Location> locations;
    if (which.all) {
      coll->ForEach([&locations](const Location& loc) { locations.push_back(loc); });
    } else if (which.list_range) {
      // In position order, which is nearly file order already: each record looked at as it comes
      // (no list of locations, no sort: this runs before every LRANGE while anything may be cold).
      VisitCold(*coll, format::ElementKey(inc, ""), add);
      uint64_t first = 0;
      uint64_t len = 0;
      if (coll->positions && coll->positions->Bounds(&first, &len) && len > 0 && len < (uint64_t{1} << 62)) {
        // Redis's normalisation (LRANGE's; LINDEX is the range of one).
        const auto n = static_cast<int64_t>(len);
        const int64_t from = which.start < 0 ? std::max<int64_t>(which.start + n, 0) : which.start;
        const int64_t to = which.stop < 0 ? which.stop + n : std::min(which.stop, n - 1);
        // The locations looked up a block at a time, under one hold of the index's lock each.
        constexpr size_t kBlock = 128;
        LocationBuffer<kBlock> locs;
        uint8_t found_at[kBlock];
        std::shared_ptr<DataFile> file;
        for (int64_t i = from; i <= to && i < n;) {
          const size_t block = static_cast<size_t>(std::min<int64_t>({to + 1, n, i + static_cast<int64_t>(kBlock)}) - i);
          coll->positions->FindPositions(first + static_cast<uint64_t>(i), block, locs, found_at);
          i += static_cast<int64_t>(block);
          for (size_t j = 0; j < block; ++j) {
            if (found_at[j] == 0) continue;
            const Location& loc = locs[j];
            if (!file || file->index() != loc.file) file = files_.Get(loc.file);
            if (!file || file->resident_upto() == UINT64_MAX) continue;  // wholly resident
            VisitColdRecord(file, loc.offset, 0, add);
          }
        }
      }
    } else {
      uint64_t cursor = which.cursor;
      coll->Scan(&cursor, std::max<size_t>(which.count, 1), &locations);
    }
    std::sort(locations.begin(), locations.end(),
              [](const Location& a, const Location& b) { return a.file != b.file ? a.file < b.file : a.offset < b.offset; });
    std::shared_ptr<DataFile> file;
    for (const Location& loc : locations) {
      if (!file || file->index() != loc.file) file = files_.Get(loc.file);
      if (!file || file->resident_upto() == UINT64_MAX) continue;  // wholly resident: nothing to ask
      VisitColdRecord(file, loc.offset, 0, add);
    }
  }
  if (found.empty()) return;
  // Elements sit side by side in the files: one range per run of adjacent or overlapping pages.
  std::sort(found.begin(), found.end(),
            [](const ColdRange& a, const ColdRange& b) { return a.fd != b.fd ? a.fd < b.fd : a.offset < b.offset; });
  size_t n = 0;
  for (size_t i = 1; i < found.size(); ++i) {
    ColdRange& last = found[n];
    if (found[i].fd == last.fd && found[i].offset <= last.offset + last.length) {
      last.length = std::max(last.length, found[i].offset + found[i].length - last.offset);
    } else {
      found[++n] = std::move(found[i]);
    }
  }
  found.resize(n + 1);
  for (ColdRange& r : found) out->push_back(std::move(r));
}

void StoreImpl::FetchKeys(uint32_t db, std::span<const std::string_view> keys) const {
  const Keydir* kd = ReaderKeydir(db);
  if (kd == nullptr) return;
  // Three passes, so one thread keeps many disk reads in flight: start the reads of every header
  // (MADV_WILLNEED returns once they are queued), wait for each header and start the reads of the
  // rest of its record, then wait for those.
  struct Want {
    std::shared_ptr<DataFile> file;
    uint64_t offset;
    uint64_t key_size;
    uint64_t end = 0;  // the record's end, when it runs past the header's pages
  };
  std::vector<Want> wants;
  for (std::string_view key : keys) {
    LocationBuffer<kMaxCandidates> candidates;
    const size_t n = kd->FindCandidates(Hash(key), candidates, kMaxCandidates);
    for (size_t i = 0; i < n; ++i) {
      std::shared_ptr<DataFile> file = files_.Get(candidates[i].file);
      if (!file) continue;
      file->Advise(DataFile::Advice::kWillNeed, candidates[i].offset, format::kRecordHeaderSize + key.size());
      wants.push_back(Want{std::move(file), candidates[i].offset, key.size()});
    }
  }
  for (Want& w : wants) {
    const uint64_t head_end = w.offset + format::kRecordHeaderSize + w.key_size;
    w.file->Fetch(w.offset, head_end - w.offset);  // waits for the header (its read was started above)
    const uint64_t end = RecordEndFor(*w.file, w.offset, w.key_size);
    if (end > PageEnd(head_end)) {
      w.file->Advise(DataFile::Advice::kWillNeed, PageEnd(head_end), end - PageEnd(head_end));
      w.end = end;
    }
  }
  for (const Want& w : wants) {
    if (w.end == 0) continue;
    const uint64_t from = PageEnd(w.offset + format::kRecordHeaderSize + w.key_size);
    w.file->Fetch(from, w.end - from);
  }
}

uint64_t StoreImpl::SweepResidency() {
  std::lock_guard sweeping(sweep_mu_);
  const auto files = files_.Snapshot();
  uint64_t resident = 0;
  uint64_t evicted = 0;
  uint64_t pages = 0;
  for (const auto& file : files) {
    resident += file->SweepResidency();
    evicted += file->evicted_pages();
    pages += file->size() / DataFile::PageSize();
  }
  // A few pages gone from a store that was otherwise all in memory — a host that reclaims pages
  // left idle (this machine's DAMON_RECLAIM takes a minute-old dead record's page) — are read
  // back rather than put every command on the cold-read check for as long as nobody reads them,
  // which for dead records is for good.
  // Not after DropPageCache (tests and benches make keys cold on purpose), and not when more
  // than 1% of the pages went (or 16 MiB): then memory is short and cold reads are real.
  const uint64_t heal_limit = std::min<uint64_t>(4096, std::max<uint64_t>(256, pages / 100));
  if (evicted > 0 && evicted <= heal_limit && !pages_dropped_.load(std::memory_order_relaxed)) {
    resident = 0;
    for (const auto& file : files) {
      if (file->evicted_pages() > 0) {
        file->FetchEvicted();
        file->SweepResidency();
      }
      resident += std::min(file->resident_upto(), file->size());
    }
    pages_read_back_.fetch_add(evicted, std::memory_order_relaxed);
  }
  bool cold = false;
  for (const auto& file : files) cold |= file->resident_upto() != UINT64_MAX;  // part of it was evicted
  if (!cold) pages_dropped_.store(false, std::memory_order_relaxed);
  maybe_cold_.store(cold, std::memory_order_relaxed);
  return resident;
}

void StoreImpl::DropPageCache() {
  {
    std::lock_guard sweeping(sweep_mu_);  // after any sweep under way
    pages_dropped_.store(true, std::memory_order_relaxed);
    for (const auto& file : files_.Snapshot()) file->DropPages();
  }
  SweepResidency();
}

bool StoreImpl::VisitRecord(const Location& loc, int64_t now_ms,
                            const std::function<void(std::string_view, int64_t)>& fn) const {
  std::shared_ptr<DataFile> file = files_.Get(loc.file);
  if (!file) return false;
  format::RecordHeader h;
  if (format::CheckRecord(file->data(), file->size(), loc.offset, false, &h) !=
      format::RecordCheck::kOk) {
    return false;
  }
  if (h.tombstone()) return true;
  const std::string_view key(file->data() + loc.offset + format::kRecordHeaderSize, h.key_size);
  if (h.expires() && h.expire_at_ms <= now_ms) {
    // Met by SCAN, KEYS or RANDOMKEY: dropped soon after, as a Get drops it (Redis's
    // expireIfNeeded on the keys those visit; a replica's stream gets the DEL).
    DropExpiredLater(h.tag.db, key);
    return true;
  }
  fn(key, h.expires() ? h.expire_at_ms : 0);
  return true;
}

uint64_t StoreImpl::Scan(uint32_t db, uint64_t cursor, size_t count,
                         const std::function<void(std::string_view, int64_t)>& fn,
                         bool include_expired) const {
  const Keydir* kd = nullptr;
  Stable([&] { kd = ReaderKeydir(db); });
  if (kd == nullptr) return 0;
  // Cursor layout: bits 0-5 the shard, the rest the shard's reverse-binary bucket cursor.
  size_t shard = cursor & (Keydir::kShards - 1);
  uint64_t bucket = cursor >> 6;
  const int64_t now = include_expired ? INT64_MIN : ReadNowMs();  // (in a ReadTogether, its one clock)
  std::vector<std::pair<uint64_t, Location>> entries;
  size_t visited = 0;
  size_t buckets = 0;
  std::vector<uint64_t> moved;
  // As Redis: stop after `count` entries or 10 * count empty buckets (saturating: COUNT is the
  // client's number, up to 2^63 - 1).
  const size_t max_buckets = count > SIZE_MAX / 10 ? SIZE_MAX : count * 10;
  while (visited < count && buckets < max_buckets) {
    ++buckets;
    const uint64_t bucket_before = bucket;
    entries.clear();
    const bool shard_done = kd->ScanBucket(shard, &bucket, &entries);
    visited += entries.size();
    // A record whose file was retired meanwhile was moved by compaction: the same bucket holds the
    // key's new location, so look again (for those hashes only).
    for (int attempt = 0; attempt < 8 && !entries.empty(); ++attempt) {
      moved.clear();
      for (const auto& [hash, loc] : entries) {
        if (!VisitRecord(loc, now, fn)) moved.push_back(hash);
      }
      entries.clear();
      if (moved.empty()) break;
      uint64_t again = bucket_before;
      std::vector<std::pair<uint64_t, Location>> found;
      kd->ScanBucket(shard, &again, &found);
      for (const auto& e : found) {
        if (std::find(moved.begin(), moved.end(), e.first) != moved.end()) entries.push_back(e);
      }
    }
    if (shard_done) {
      if (++shard == Keydir::kShards) return 0;
      bucket = 0;
    }
  }
  return (bucket << 6) | shard;
}

bool StoreImpl::RandomKey(uint32_t db, std::string* key) const {
  const Keydir* kd = nullptr;
  Stable([&] { kd = ReaderKeydir(db); });
  if (kd == nullptr) return false;
  thread_local uint64_t state = static_cast<uint64_t>(NowMs()) ^ reinterpret_cast<uintptr_t>(&state);
  const int64_t now = ReadNowMs();
  for (int attempt = 0; attempt < 100; ++attempt) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t hash = 0;
    Location loc;
    if (!kd->RandomEntry(state >> 1, &hash, &loc)) return false;
    bool found = false;
    VisitRecord(loc, now, [&](std::string_view k, int64_t) {
      key->assign(k);
      found = true;
    });
    if (found) return true;
  }
  return false;
}

// ---- Writes: queue -----------------------------------------------------------------------------

void StoreImpl::Write(WriteBatch batch, WriteCallback done) {
  {
    std::lock_guard lock(queue_mu_);
    if (!stopping_) {
      queue_.push_back(Request{std::move(batch), std::move(done), nullptr});
      queue_cv_.notify_one();
      return;
    }
  }
  done(Status::Failed("the store is closed"), {});
}

void StoreImpl::WriteAll(std::vector<PendingWrite> writes) {
  // Leader path (LevelDB's group commit, without the queue): when no group is being written and
  // nothing waits, the caller writes its batches itself — no wake-up of the writer thread and no
  // hand-off back, which is most of an unpipelined write's latency. Under `always` the caller
  // syncs too, as Redis's event loop does in beforeSleep: the server calls this at its loop's
  // idle point, when every ready handler has added its batches (docs/server.md, "always").
  // A caller already writing inline (a script that lets its event loop run the handlers that are
  // ready: net::PollCurrentLoop) queues: it holds the role, and its group is not complete. (Without
  // this it would try_lock a mutex it owns: undefined behaviour, though glibc answers "busy".)
  thread_local bool leading = false;
  if (!leading) {
    std::unique_lock role(role_mu_, std::try_to_lock);
    if (role.owns_lock()) {
      bool idle = false;
      {
        std::lock_guard lock(queue_mu_);
        idle = queue_.empty() && !stopping_;
      }
      // Not when the group might not fit the active file: a rotation syncs the file it seals and
      // fsyncs the directory, and that waits on the writer thread, never on an event loop.
      if (idle && LeaderHasRoom(writes)) {
        std::vector<Request> work;
        work.reserve(writes.size());
        for (PendingWrite& w : writes) {
          work.push_back(Request{std::move(w.batch), std::move(w.done), nullptr});
        }
        leading = true;
        RunWork(work);
        leading = false;
        return;
      }
    }
  }
  {
    std::lock_guard lock(queue_mu_);
    if (!stopping_) {
      for (PendingWrite& w : writes) {
        queue_.push_back(Request{std::move(w.batch), std::move(w.done), nullptr});
      }
      queue_cv_.notify_one();
      return;
    }
  }
  for (PendingWrite& w : writes) w.done(Status::Failed("the store is closed"), {});
}

bool StoreImpl::LeaderHasRoom(const std::vector<PendingWrite>& writes) const {
  // Twice the bytes the batches bring (an APPEND or INCR rewrites its value: the old value's size
  // is not known here), and 64 KiB for updates of values they do not carry.
  uint64_t bytes = 64u << 10;
  bool scripts = false;
  for (const PendingWrite& w : writes) {
    for (const WriteBatch::Op& op : w.batch.ops()) {
      scripts |= op.kind == WriteBatch::Kind::kRun || (op.kind == WriteBatch::Kind::kUpdate && op.run);
      bytes += 2 * (format::kRecordHeaderSize + op.key.size() + op.value.size());
    }
  }
  if (scripts) bytes += kScriptRoomBytes;
  return write_offset_ + bytes <= options_.max_file_size && write_offset_ + bytes <= active_->map_size();
}

Status StoreImpl::WriteSync(WriteBatch batch, std::vector<OpResult>* results) {
  std::promise<Status> promise;
  auto future = promise.get_future();
  Write(std::move(batch), [&](const Status& s, std::vector<OpResult> r) {
    if (results != nullptr) *results = std::move(r);
    promise.set_value(s);
  });
  return future.get();
}

bool StoreImpl::RunOnWriter(std::function<void()> task) {
  std::promise<void> promise;
  auto future = promise.get_future();
  if (!QueueTask([&] {
        task();
        promise.set_value();
      })) {
    return false;
  }
  future.get();
  return true;
}

Status StoreImpl::SyncOnWriter() {
  {
    std::lock_guard lock(failed_mu_);
    if (!failed_.ok()) return failed_;
  }
  if (!active_ || !dirty_) return Status::OK();
  Status result = SyncData(active_->fd(), active_->path());
  if (!result.ok()) return FailStop(result);
  dirty_ = false;
  last_sync_ms_ = NowMs();
  return result;
}

Status StoreImpl::Sync() {
  Status result = Status::Failed("the store is closed");
  RunOnWriter([&] { result = SyncOnWriter(); });
  return result;
}

bool StoreImpl::QueueTask(std::function<void()> task) {
  std::lock_guard lock(queue_mu_);
  if (stopping_) return false;
  queue_.push_back(Request{WriteBatch(), nullptr, std::move(task)});
  queue_cv_.notify_one();
  return true;
}

void StoreImpl::SyncAsync(std::function<void(const Status&)> done) {
  if (!QueueTask([this, done] { done(SyncOnWriter()); })) done(Status::Failed("the store is closed"));
}

// ---- Writes: the writer thread
// -------------------------------------------------------------------

void StoreImpl::WriterLoop() {
  std::vector<Request> work;
  for (;;) {
    {
      std::unique_lock lock(queue_mu_);
      queue_cv_.wait_for(lock, kWriterTick, [this] { return !queue_.empty() || stopping_; });
      if (queue_.empty() && stopping_) break;
    }
    std::shared_ptr<DataFile> to_sync;
    {
      std::lock_guard role(role_mu_);  // waits for a caller writing inline (WriteAll)
      {
        std::lock_guard lock(queue_mu_);
        work.swap(queue_);
      }
      RunWork(work);
      work.clear();
      to_sync = Periodic();
    }
    // The everysec fdatasync runs without the role, as Redis's runs in a background thread: groups
    // keep being written meanwhile instead of waiting behind a sync of a second's worth of data.
    if (to_sync) {
      Status s = SyncData(to_sync->fd(), to_sync->path());
      if (!s.ok()) (void)FailStop(s);
    }
  }
}

uint64_t ExpiredReadsOnThisThread() { return expired_reads; }

void StoreImpl::DropExpiredLater(uint8_t pdb, std::string_view key) const {
  ++expired_reads;
  std::lock_guard lock(lazy_mu_);
  // Bounded: a flood of reads of expired keys must not grow memory; the active cycle catches up.
  if (lazy_expired_.size() < 4096) lazy_expired_.emplace_back(pdb, std::string(key));
  lazy_queued_.store(true, std::memory_order_release);
}

void StoreImpl::DrainLazyExpired() {
  // (After every group: the common case, nothing queued, takes no lock.)
  if (!lazy_queued_.load(std::memory_order_acquire)) return;
  if (expiry_paused_.load(std::memory_order_relaxed)) return;  // kept until unpaused
  std::vector<std::pair<uint8_t, std::string>> keys;
  {
    std::lock_guard lock(lazy_mu_);
    keys.swap(lazy_expired_);
    lazy_queued_.store(false, std::memory_order_relaxed);
  }
  if (keys.empty()) return;
  ForgetWrittenKeys();  // no group is being built: what it holds is the last group's, now applied
  flushed_.reset();
  for (const auto& [pdb, key] : keys) DropExpired(pdb, key, Hash(key));
  if (!maybe_dead_.empty()) DropDeadCollections();  // expired heads' collections go now too
}

void StoreImpl::KeyCountAsync(uint32_t db, std::function<void(uint64_t keys)> done) {
  if (!QueueTask([this, db, done] { done(KeyCount(db)); })) done(KeyCount(db));
}

void StoreImpl::Barrier(std::function<void()> done) {
  if (!QueueTask(done)) done();
}

void StoreImpl::RunWork(std::vector<Request>& work) {
  DrainLazyExpired();  // reads queued these before the requests they precede
  // Consecutive batches form one group (one write, one fsync); a task runs between groups.
  size_t begin = 0;
  size_t group_bytes = 0;
  for (size_t i = 0; i < work.size(); ++i) {
    if (work[i].task) {
      if (begin < i) ProcessGroup(work, begin, i);
      work[i].task();
      begin = i + 1;
      group_bytes = 0;
      continue;
    }
    for (const auto& op : work[i].batch.ops()) group_bytes += op.key.size() + op.value.size();
    if (group_bytes >= kMaxGroupBytes) {
      ProcessGroup(work, begin, i + 1);
      begin = i + 1;
      group_bytes = 0;
    }
  }
  if (begin < work.size()) ProcessGroup(work, begin, work.size());
}

void StoreImpl::ProcessGroup(std::vector<Request>& work, size_t begin, size_t end) {
  Status failed;
  {
    std::lock_guard lock(failed_mu_);
    failed = failed_;
  }
  if (!failed.ok()) {
    for (size_t i = begin; i < end; ++i) work[i].done(failed, {});
    return;
  }
  group_buf_.clear();
  group_barrier_ = 0;
  ClearGroup();
  group_now_ms_ = NowMs();
  const WriteBatch::KeyProbe live = [this](uint32_t db, std::string_view key) {
    return db < keydirs_.size() && Current(GroupDb(db), key, Hash(key), false).exists;
  };
  std::vector<std::vector<OpResult>> results(end - begin);
  std::vector<bool> aborted(end - begin, false);
  // The group's keys, loaded ahead of the ops that read them (a pipelined group's
  // read-modify-writes would otherwise wait for memory one after another): each key's keydir slot
  // kSlotsAhead keyed ops before its op, then the record the slot names kRecordsAhead before, by
  // when the slot has arrived. (The writer role is the keydirs' only mutator, so reading them
  // without the lock is safe here.)
  constexpr size_t kSlotsAhead = 16;
  constexpr size_t kRecordsAhead = 8;
  ahead_.clear();
  // The ops with an entry in ahead_ (one each, in op order).
  auto keyed_op = [this](const WriteBatch::Op& op) { return !op.key.empty() && op.db < keydirs_.size(); };
  if (end - begin > 1 || work[begin].batch.size() > 1) {
    for (size_t i = begin; i < end; ++i) {
      for (const WriteBatch::Op& op : work[i].batch.ops()) {
        if (keyed_op(op)) ahead_.push_back({keydirs_[GroupDb(op.db)].get(), Hash(op.key), &op});
      }
    }
    for (size_t k = 0; k < ahead_.size() && k < kSlotsAhead; ++k) ahead_[k].kd->Prefetch(ahead_[k].hash);
    for (size_t k = 0; k < ahead_.size() && k < kRecordsAhead; ++k) {
      PrefetchRecords<true>(*ahead_[k].kd, std::span<const uint64_t>(&ahead_[k].hash, 1));
    }
  }
  size_t keyed = 0;  // keyed ops reached so far: ahead_[keyed] is the next op's key
  // Loads ahead for the op about to run; true with *hash its key's hash when ahead_ has it.
  auto load_ahead = [&](const WriteBatch::Op& op, uint64_t* hash) {
    if (ahead_.empty() || !keyed_op(op)) return false;
    const bool known = keyed < ahead_.size() && ahead_[keyed].op == &op;
    if (known) *hash = ahead_[keyed].hash;
    if (const size_t k = keyed + kSlotsAhead; k < ahead_.size()) ahead_[k].kd->Prefetch(ahead_[k].hash);
    if (const size_t k = keyed + kRecordsAhead; k < ahead_.size()) {
      PrefetchRecords<true>(*ahead_[k].kd, std::span<const uint64_t>(&ahead_[k].hash, 1));
    }
    ++keyed;
    return known;
  };
  for (size_t i = begin; i < end; ++i) {
    const WriteBatch& batch = work[i].batch;
    current_origin_ = batch.origin();
    current_sees_expired_ = batch.sees_expired();
    if (batch.defers_wakes()) deferring_origins_.push_back(batch.origin());
    batch_began_ = pending_.size();
    if (batch.precondition() && !batch.precondition()(batch, live)) {
      aborted[i - begin] = true;
      if (!ahead_.empty()) {  // its keys were queued in ahead_: step over them
        for (const WriteBatch::Op& op : batch.ops()) keyed += keyed_op(op) ? 1u : 0u;
      }
      continue;
    }
    const auto& ops = batch.ops();
    std::vector<OpResult>& out = results[i - begin];
    out.resize(ops.size());
    for (size_t j = 0; j < ops.size(); ++j) {
      uint64_t hash = 0;
      const bool hashed = load_ahead(ops[j], &hash);
      // An op that failed skips the rest of its command (see WriteBatch::BeginCommand).
      if (j > 0 && ops[j].command == ops[j - 1].command && !out[j - 1].error.ok()) {
        out[j].error = out[j - 1].error;
        continue;
      }
      // Set for exactly this call: a pointer left behind could name another op at the same address
      // later (a later group's, or a script's), which would then take this key's hash.
      hashed_op_ = hashed ? &ops[j] : nullptr;
      hashed_op_hash_ = hash;
      ExecuteOp(ops[j], &out[j]);
      hashed_op_ = nullptr;
    }
    if (batch.postcondition()) batch.postcondition()(batch, out);
  }
  current_sees_expired_ = false;  // the writer's own work after the group (the expire cycle) does not
  Status s = CommitGroup();
  if (!s.ok()) {
    for (size_t i = begin; i < end; ++i) work[i].done(s, {});
    return;
  }
  ApplyGroup();
  // The keys its ops (a transaction's or a script's reads, an EXPIRE of an expired key ...) and
  // the reads before it found expired go before its replies: their `expired` events precede them,
  // as Redis sends them while the command runs.
  DrainLazyExpired();
  for (size_t i = begin; i < end; ++i) {
    if (aborted[i - begin]) {
      work[i].done(Status::Aborted(), {});
    } else {
      work[i].done(Status::OK(), std::move(results[i - begin]));
    }
  }
}

StoreImpl::CurrentValue StoreImpl::Current(uint8_t pdb, std::string_view key, uint64_t hash,
                                           bool need_value) {
  CurrentValue cur;
  const int64_t now = group_now_ms_;
  if (const OverlayEntry* written = overlay_.Find(key, OverlayHash(hash, pdb))) {
    if (!written->exists) return cur;
    const char* p = group_buf_.data() + written->group_offset;
    const format::RecordHeader h = format::DecodeHeader(p);
    if (Expired(h, now) && !current_sees_expired_) return cur;
    cur.exists = true;
    cur.view = ViewOf(p, h);
    return cur;
  }
  if (flushed_[pdb]) return cur;  // a FLUSHALL / FLUSHDB earlier in this group deleted it
  std::shared_ptr<DataFile> file;
  format::RecordHeader h;
  uint64_t offset = 0;
  // The old value's CRC is checked only when the op reads its bytes: a plain SET or DEL needs to
  // know whether the key exists, not to checksum what it replaces.
  const bool verify = need_value && options_.verify_checksums;
  if (memo_.valid && memo_.hash == hash && memo_.db == pdb && memo_.key == key &&
      (memo_.verified || !verify) && (file = files_.GetUnlocked(memo_.file))) {
    h = memo_.header;
    offset = memo_.offset;
  } else {
    Status s = Lookup<Keydir, true>(*keydirs_[pdb], key, hash, verify, &file, &h, &offset);
    if (!s.ok()) {
      if (!s.IsNotFound()) cur.error = std::move(s);
      return cur;
    }
    memo_.valid = true;
    memo_.verified = verify;
    memo_.hash = hash;
    memo_.db = pdb;
    memo_.key.assign(key);
    memo_.file = file->index();
    memo_.header = h;
    memo_.offset = offset;
  }
  if (Expired(h, now) && !current_sees_expired_) {
    // (The DEL goes into the replication stream now, ahead of the group's commands: it names the
    // database as the applied map does, before any SWAPDB of the group, not as GroupLogicalDb.)
    if (report_expired_in_groups_.load(std::memory_order_relaxed)) options_.on_expired_in_group(logical_of_[pdb], key);
    // Dropped after the group, as when a read finds it (its `expired` then), unless the group
    // replaces it: then the apply sends `expired` (Options::on_expired_replaced) and the drop
    // finds a live record. (EXPIRE or RENAME of such a key write nothing: Redis drops it at once.)
    DropExpiredLater(pdb, key);
    return cur;
  }
  cur.exists = true;
  cur.view = ViewOf(file->data() + offset, h);
  cur.view.pin = std::move(file);
  return cur;
}

void StoreImpl::AppendToGroup(uint8_t pdb, std::string_view key, uint64_t hash, uint8_t flags,
                              std::string_view value, int64_t expire_at_ms, uint8_t type, uint8_t kind) {
  const uint64_t at = group_buf_.size();
  if (expire_at_ms != 0) {
    flags |= format::kFlagExpires;
    if (!current_sees_expired_ && track_own_expiries_.load(std::memory_order_relaxed)) {
      std::string k(1, static_cast<char>(pdb));
      k.append(key);
      own_expiring_.insert(std::move(k));
    }
  }
  const bool tombstone = (flags & format::kFlagTombstone) != 0;
  if (tombstone || value.size() != format::kHeadValueSize) kind = format::kKindWhole;
  group_last_record_ = group_buf_.size();
  format::AppendRecord(&group_buf_, flags | format::kFlagGroupContinues, key, value, group_now_ms_, expire_at_ms,
                       format::Tag{tombstone ? uint8_t{0} : type, kind, pdb});
  // Built in place: a local copied in by push_back was read back with loads wider than the field
  // stores before them (a store-forwarding stall per record written).
  PendingRecord& r = pending_.emplace_back();
  r.key = key;
  r.hash = hash;
  r.db = pdb;
  r.group_offset = at;
  r.size = group_buf_.size() - at;
  r.tombstone = tombstone;
  r.expires = expire_at_ms != 0;
  r.expire_s = expire_at_ms != 0 ? Location::ExpireSeconds(expire_at_ms) : 0;
  r.origin = current_origin_;
  r.sees_expired = current_sees_expired_;
  r.kind = kind;
  if (kind == format::kKindHead) r.inc = format::IncarnationOf(value);
  if (memo_.valid && memo_.hash == hash && memo_.db == pdb && memo_.key == key) {
    r.old_known = true;
    r.old_file = memo_.file;
    r.old_offset = memo_.offset;
  }
  overlay_.Set(key, OverlayHash(hash, pdb), OverlayEntry{!tombstone, at, pdb});
}

StoreImpl::GroupCollection& StoreImpl::AppendElement(uint8_t pdb, std::string_view coll_key, uint8_t type,
                                                     uint64_t inc, std::string_view ekey, uint64_t hash,
                                                     std::string_view value, bool tombstone, bool fresh) {
  if (group_coll_last_ == nullptr || group_coll_last_inc_ != inc) {
    group_coll_last_ = &group_colls_[inc];
    group_coll_last_inc_ = inc;
  }
  GroupCollection& group_coll = *group_coll_last_;
  ++group_coll.writes;
  if (!tombstone && !fresh && RewriteElementInPlace(ekey, hash, pdb, type, value)) return group_coll;
  const std::string_view key = elem_keys_.Store(ekey);
  if (last_report_key_.data() == nullptr || last_report_key_ != coll_key) last_report_key_ = elem_keys_.Store(coll_key);
  const std::string_view report = last_report_key_;
  const uint64_t at = group_buf_.size();
  group_last_record_ = group_buf_.size();
  format::AppendRecord(&group_buf_, (tombstone ? format::kFlagTombstone : 0) | format::kFlagGroupContinues, key, tombstone ? std::string_view() : value,
                       group_now_ms_, 0, format::Tag{type, format::kKindElement, pdb});
  PendingRecord& r = pending_.emplace_back();  // in place, as AppendToGroup's
  r.key = key;
  r.hash = hash;
  r.db = pdb;
  r.group_offset = at;
  r.size = group_buf_.size() - at;
  r.tombstone = tombstone;
  r.origin = current_origin_;
  r.kind = format::kKindElement;
  r.type = type;
  r.inc = inc;
  r.report_key = report;
  elem_overlay_.Set(key, hash, OverlayEntry{!tombstone, at, pdb});
  group_coll.records.push_back(static_cast<uint32_t>(pending_.size() - 1));
  return group_coll;
}

bool StoreImpl::RewriteElementInPlace(std::string_view key, uint64_t hash, uint8_t pdb, uint8_t type,
                                      std::string_view value) {
  // An element this group wrote already, to a value of the same size (a list's meta element,
  // rewritten by each push and pop of a pipeline; HINCRBY of one field): its record in the group
  // buffer takes the new value, instead of a second record that would be dead on arrival. The
  // group reaches the file whole or not at all (docs/format.md), so where in it the value sits
  // does not matter; no reader outside the writer sees group_buf_, and no op keeps a view into
  // it across a write (an append may move it anyway).
  const OverlayEntry* written = elem_overlay_.Find(key, hash);
  if (written == nullptr || !written->exists || written->group_offset < group_barrier_) return false;
  char* p = group_buf_.data() + written->group_offset;
  const format::RecordHeader h = format::DecodeHeader(p);
  if (h.tombstone() || h.value_size != value.size() || h.tag.type != type || h.tag.kind != format::kKindElement ||
      h.tag.db != pdb) {
    return false;
  }
  if (!value.empty()) std::memmove(p + format::kRecordHeaderSize + h.key_size, value.data(), value.size());  // (may be itself)
  format::Store<uint32_t>(p, format::ComputeRecordCrc(p, h.record_size()));
  // (The pending record stays as it was: same key, place and size. The newer op's origin.)
  auto it = std::lower_bound(pending_.begin(), pending_.end(), written->group_offset,
                             [](const PendingRecord& r, uint64_t at) { return r.group_offset < at; });
  if (it != pending_.end() && it->group_offset == written->group_offset) it->origin = current_origin_;
  ++group_rewrites_;
  return true;
}

StoreImpl::CurrentValue StoreImpl::CurrentElement(uint64_t inc, std::string_view ekey, uint64_t hash,
                                                  bool need_value) {
  CurrentValue cur;
  if (const OverlayEntry* written = elem_overlay_.Find(ekey, hash)) {
    if (!written->exists) return cur;
    const char* p = group_buf_.data() + written->group_offset;
    cur.exists = true;
    cur.view = ViewOf(p, format::DecodeHeader(p));
    return cur;
  }
  auto it = collections_.find(inc);  // the writer role changes the map: no lock needed to read it
  if (it == collections_.end()) return cur;
  std::shared_ptr<DataFile> file;
  format::RecordHeader h;
  uint64_t offset = 0;
  Status s = Lookup(*it->second, ekey, hash, need_value && options_.verify_checksums, &file, &h, &offset);
  if (!s.ok()) {
    if (!s.IsNotFound()) cur.error = std::move(s);
    return cur;
  }
  cur.exists = true;
  cur.view = ViewOf(file->data() + offset, h);
  cur.view.pin = std::move(file);
  return cur;
}

void StoreImpl::DeleteDb(uint8_t pdb, OpResult* result) {
  // One FLUSHDB record, as FLUSHALL's: the database's keys written so far in this group are
  // deleted too (their overlay entries say so; the keydir is emptied when the group is applied).
  bool any = !flushed_[pdb] && keydirs_[pdb]->Size() > 0;
  const uint64_t at = group_buf_.size();
  group_last_record_ = group_buf_.size();
  format::AppendRecord(&group_buf_, format::kFlagFlushDb | format::kFlagGroupContinues, {}, {}, group_now_ms_, 0, format::Tag{0, 0, pdb});
  group_barrier_ = group_buf_.size();
  for (const auto& item : overlay_.items()) {
    if (item.value.db != pdb) continue;
    any |= item.value.exists;
    overlay_.Set(item.key, item.hash, OverlayEntry{false, at, pdb});
  }
  result->applied = any;
  PendingRecord r{};
  r.db = pdb;
  r.group_offset = at;
  r.size = group_buf_.size() - at;
  r.flush_db = true;
  r.origin = current_origin_;
  pending_.push_back(r);
  memo_.valid = false;
  flushed_[pdb] = true;
}

void StoreImpl::SwapDbs(uint32_t a, uint32_t b, OpResult* result) {
  if (a >= keydirs_.size() || b >= keydirs_.size()) {
    result->error = Status::InvalidArgument("DB index is out of range");
    return;
  }
  std::swap(group_map_[a], group_map_[b]);
  const uint64_t at = group_buf_.size();
  const std::string map(reinterpret_cast<const char*>(group_map_.data()), keydirs_.size());
  group_last_record_ = group_buf_.size();
  format::AppendRecord(&group_buf_, format::kFlagSwapDb | format::kFlagGroupContinues, {}, map, group_now_ms_, 0);
  group_barrier_ = group_buf_.size();
  PendingRecord r{};
  r.group_offset = at;
  r.size = group_buf_.size() - at;
  r.swap_db = true;
  r.swap_a = static_cast<uint8_t>(a);
  r.swap_b = static_cast<uint8_t>(b);
  r.origin = current_origin_;
  pending_.push_back(r);
  group_swapped_ = true;
  result->applied = true;
}

void StoreImpl::MoveKey(const WriteBatch::Op& op, uint8_t from, uint8_t to, OpResult* result) {
  const uint64_t hash = Hash(op.key);
  CurrentValue cur = Current(from, op.key, hash, true);
  if (!cur.error.ok()) {
    result->error = cur.error;
    return;
  }
  if (!cur.exists) return;
  const CurrentValue there = Current(to, op.key, hash, false);
  if (!there.error.ok() || there.exists) return;  // Redis: 0 when the target has the key
  const std::string value(cur.view.value);  // the view may point into group_buf_
  const int64_t expire = cur.view.expire_at_ms;
  const uint8_t type = cur.view.type;
  const uint8_t kind = cur.view.kind;  // a head moves alone: its elements do not name a database
  AppendToGroup(from, op.key, hash, format::kFlagTombstone, {}, 0);
  AppendToGroup(to, op.key, hash, 0, value, expire, type, kind);
  result->applied = true;
}

void StoreImpl::DeleteAllKeys(OpResult* result) {
  flush_alls_.fetch_add(1, std::memory_order_relaxed);
  // One FLUSHALL record: everything before it is deleted, at replay too. No key is read or written
  // one by one, so a flush of a data set larger than memory costs no disk read.
  bool any = false;
  for (size_t i = 0; i < keydirs_.size(); ++i) any |= !flushed_[i] && keydirs_[i]->Size() > 0;
  for (const auto& item : overlay_.items()) any |= item.value.exists;
  result->applied = any;
  const uint64_t at = group_buf_.size();
  group_last_record_ = group_buf_.size();
  format::AppendRecord(&group_buf_, format::kFlagFlushAll | format::kFlagGroupContinues, {}, {}, group_now_ms_, 0);
  group_barrier_ = group_buf_.size();
  PendingRecord r{};
  r.group_offset = at;
  r.size = group_buf_.size() - at;
  r.flush_all = true;
  r.origin = current_origin_;
  pending_.push_back(r);
  ForgetWrittenKeys();
  flushed_.set();
}

void StoreImpl::ReadKeys(uint8_t pdb, const KeysQuery& query, OpResult* result) {
  using Mode = KeysQuery::Mode;
  const Keydir& kd = *keydirs_[pdb];
  if (query.mode == Mode::kCount) {
    // The keydir as applied, corrected by what this group wrote so far: a key the group created
    // counts once, a key it deleted no more.
    if (flushed_[pdb]) {  // after a FLUSHALL in this group: only what the group wrote since
      uint64_t written = 0;
      for (const auto& item : overlay_.items()) written += item.value.db == pdb && item.value.exists ? 1 : 0;
      result->keys = written;
      return;
    }
    int64_t keys = static_cast<int64_t>(kd.Size());
    for (const auto& item : overlay_.items()) {
      if (item.value.db != pdb) continue;
      std::shared_ptr<DataFile> file;
      format::RecordHeader h;
      uint64_t offset = 0;
      const bool applied = Lookup(kd, item.key, Hash(item.key), false, &file, &h, &offset).ok();
      keys += (item.value.exists ? 1 : 0) - (applied ? 1 : 0);
    }
    result->keys = static_cast<uint64_t>(std::max<int64_t>(keys, 0));
    return;
  }
  // The keys this group wrote, live at this op's place (group_buf_ holds their records).
  std::vector<std::string_view> written;
  for (const auto& item : overlay_.items()) {
    if (item.value.db == pdb && item.value.exists &&
        !Expired(format::DecodeHeader(group_buf_.data() + item.value.group_offset), group_now_ms_)) {
      written.push_back(item.key);
    }
  }
  std::vector<std::string>& out = result->key_list;
  if (flushed_[pdb]) {  // after a FLUSHALL in this group the keydir does not count
    out.insert(out.end(), written.begin(), written.end());
    if (query.mode == Mode::kRandom && out.size() > 1) out.resize(1);
    if (query.mode == Mode::kScan) result->keys = 0;
    return;
  }
  // The applied keydir, without the keys the group wrote (those are listed from the overlay).
  auto applied = [&](std::string_view k, int64_t) {
    if (overlay_.empty() || !overlay_.Contains(k, OverlayHash(Hash(k), pdb))) out.emplace_back(k);
  };
  // The applied keydir of `pdb`: through the logical index the readers use for it now.
  const uint32_t ldb = logical_of_[pdb];
  switch (query.mode) {
    case Mode::kAll: {
      uint64_t cursor = 0;
      do {
        cursor = Scan(ldb, cursor, 4096, applied, false);
      } while (cursor != 0);
      out.insert(out.end(), written.begin(), written.end());
      return;
    }
    case Mode::kScan:
      result->keys = Scan(ldb, query.cursor, query.count, applied, false);
      out.insert(out.end(), written.begin(), written.end());
      return;
    case Mode::kRandom: {
      // A written key with the weight of its share of all keys, else a keydir key the group did not
      // delete.
      thread_local uint64_t state = static_cast<uint64_t>(NowMs());
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      const uint64_t total = kd.Size() + written.size();
      if (!written.empty() && (state >> 33) % total < written.size()) {
        out.emplace_back(written[(state >> 33) % written.size()]);
        return;
      }
      std::string key;
      for (int attempt = 0; attempt < 100; ++attempt) {
        if (!RandomKey(ldb, &key)) break;
        if (!overlay_.Contains(key, OverlayHash(Hash(key), pdb))) {
          out.push_back(std::move(key));
          return;
        }
      }
      if (!written.empty()) out.emplace_back(written.front());
      return;
    }
    case Mode::kCount:
      return;
  }
}

void StoreImpl::RunOp(const WriteBatch::Op& op, OpResult* result) {
  class GroupTxn final : public Txn {
   public:
    explicit GroupTxn(StoreImpl* store) : store_(store) {}
    Status Get(uint32_t db, std::string_view key, ValueView* out) override {
      if (db >= store_->keydirs_.size()) return Status::NotFound();
      CurrentValue cur = store_->Current(store_->GroupDb(db), key, store_->Hash(key), true);
      if (!cur.error.ok()) return cur.error;
      if (!cur.exists) return Status::NotFound();
      if (cur.view.pin) {
        *out = std::move(cur.view);
      } else {  // in the group buffer, which moves as the group grows: a copy
        auto copy = std::make_shared<std::string>(cur.view.value);
        *out = ValueView{copy, *copy, cur.view.expire_at_ms, cur.view.type, cur.view.kind};
      }
      return Status::OK();
    }
    uint64_t NewIncarnation() override { return store_->next_incarnation_++; }
    Status GetElement(uint64_t inc, std::string_view member, ValueView* out) override {
      std::string& ekey = store_->txn_element_key_;
      format::AssignElementKey(&ekey, inc, member);
      CurrentValue cur = store_->CurrentElement(inc, ekey, store_->Hash(ekey), true);
      if (!cur.error.ok()) return cur.error;
      if (!cur.exists) return Status::NotFound();
      if (cur.view.pin) {
        *out = std::move(cur.view);
      } else {
        auto copy = std::make_shared<std::string>(cur.view.value);
        *out = ValueView{copy, *copy, 0, cur.view.type, cur.view.kind};
      }
      return Status::OK();
    }
    Status ReadElement(uint64_t inc, std::string_view member,
                       const std::function<void(std::string_view)>& fn) override {
      std::string& ekey = store_->txn_element_key_;
      format::AssignElementKey(&ekey, inc, member);
      const CurrentValue cur = store_->CurrentElement(inc, ekey, store_->Hash(ekey), true);
      if (!cur.error.ok()) return cur.error;
      if (!cur.exists) return Status::NotFound();
      fn(cur.view.value);  // cur.view.pin, when set, keeps the file mapped meanwhile
      return Status::OK();
    }
    bool PutElement(uint32_t db, std::string_view key, uint8_t type, uint64_t inc,
                    std::string_view member, std::string_view value) override {
      std::string& ekey = store_->txn_element_key_;
      format::AssignElementKey(&ekey, inc, member);
      const uint64_t hash = store_->Hash(ekey);
      // A record that fails its check still counts as present (the index counts it).
      const CurrentValue cur = store_->CurrentElement(inc, ekey, hash, false);
      const bool existed = cur.exists || !cur.error.ok();
      GroupCollection& group_coll = store_->AppendElement(store_->GroupDb(db), key, type, inc, ekey, hash, value, false);
      if (!existed) ++group_coll.delta;
      return !existed;
    }
    void AddElement(uint32_t db, std::string_view key, uint8_t type, uint64_t inc, std::string_view member,
                    std::string_view value) override {
      std::string& ekey = store_->txn_element_key_;
      format::AssignElementKey(&ekey, inc, member);
      ++store_->AppendElement(store_->GroupDb(db), key, type, inc, ekey, store_->Hash(ekey), value, false,
                              /*fresh=*/true)
            .delta;
    }
    void PutKnownElement(uint32_t db, std::string_view key, uint8_t type, uint64_t inc, std::string_view member,
                         std::string_view value, bool exists) override {
      std::string& ekey = store_->txn_element_key_;
      format::AssignElementKey(&ekey, inc, member);
      // Absent: no live record of it in the group either (the read saw the group's), so no
      // in-place rewrite is tried.
      GroupCollection& group_coll = store_->AppendElement(store_->GroupDb(db), key, type, inc, ekey,
                                                          store_->Hash(ekey), value, false, /*fresh=*/!exists);
      if (!exists) ++group_coll.delta;
    }
    Status TakeElement(uint32_t db, std::string_view key, uint8_t type, uint64_t inc, std::string_view member,
                       std::string* value) override {
      std::string& ekey = store_->txn_element_key_;
      format::AssignElementKey(&ekey, inc, member);
      const uint64_t hash = store_->Hash(ekey);
      const CurrentValue cur = store_->CurrentElement(inc, ekey, hash, true);
      if (!cur.error.ok()) return cur.error;
      if (!cur.exists) return Status::NotFound();
      value->assign(cur.view.value);  // before the append: the view may lie in the group's buffer
      --store_->AppendElement(store_->GroupDb(db), key, type, inc, ekey, hash, {}, true).delta;
      return Status::OK();
    }
    bool DeleteElement(uint32_t db, std::string_view key, uint8_t type, uint64_t inc,
                       std::string_view member) override {
      std::string& ekey = store_->txn_element_key_;
      format::AssignElementKey(&ekey, inc, member);
      const uint64_t hash = store_->Hash(ekey);
      const CurrentValue cur = store_->CurrentElement(inc, ekey, hash, false);
      if (!cur.exists && cur.error.ok()) return false;
      --store_->AppendElement(store_->GroupDb(db), key, type, inc, ekey, hash, {}, true).delta;
      return true;
    }
    uint64_t ElementCount(uint64_t inc) override {
      int64_t n = 0;
      if (auto it = store_->collections_.find(inc); it != store_->collections_.end()) {
        n = static_cast<int64_t>(it->second->Size());
      }
      if (auto it = store_->group_colls_.find(inc); it != store_->group_colls_.end()) n += it->second.delta;
      return static_cast<uint64_t>(std::max<int64_t>(n, 0));
    }
    bool RandomElement(uint64_t inc, uint64_t random, std::string* member) override {
      auto it = store_->collections_.find(inc);
      if (it == store_->collections_.end()) return false;
      // Until 2026-12-05 any write of the group to the collection sent the caller to a walk of
      // all of it: a pipeline of SPOPs on a set of 580,000 members cost 3 ms of CPU each.
      const bool written = store_->group_colls_.count(inc) != 0;
      for (int pick = 0; pick < (written ? 16 : 1); ++pick) {
        Location loc;
        if (!it->second->RandomEntry(random, &loc)) return false;
        random = random * 6364136223846793005ull + 1442695040888963407ull;  // the next pick's
        const DataFile* file = store_->files_.GetRaw(loc.file);
        std::string_view m, v;
        Status error;
        if (file == nullptr || !store_->ReadElementAt(*file, loc.offset, &m, &v, &error)) return false;
        if (written) {  // the record's key is the element key (incarnation, member)
          const std::string_view ekey(m.data() - format::kIncarnationSize, m.size() + format::kIncarnationSize);
          if (store_->elem_overlay_.Contains(ekey, store_->Hash(ekey))) continue;
        }
        member->assign(m);
        return true;
      }
      return false;
    }
    Status ForEachElement(uint64_t inc,
                          const std::function<void(std::string_view, std::string_view)>& fn) override {
      Status first_error;
      // The applied elements the group did not write, then the group's live ones.
      if (auto it = store_->collections_.find(inc); it != store_->collections_.end()) {
        it->second->ForEach([&](const Location& loc) {
          const DataFile* file = store_->files_.GetRaw(loc.file);
          std::string_view member, value;
          Status error;
          if (file == nullptr) return;
          if (!store_->ReadElementAt(*file, loc.offset, &member, &value, &error)) {
            if (!error.ok() && first_error.ok()) first_error = std::move(error);
            return;
          }
          const std::string_view ekey(member.data() - format::kIncarnationSize,
                                      member.size() + format::kIncarnationSize);
          if (!store_->elem_overlay_.empty() && store_->elem_overlay_.Contains(ekey, store_->Hash(ekey))) return;
          fn(member, value);
        });
      }
      auto g = store_->group_colls_.find(inc);
      if (g == store_->group_colls_.end()) return first_error;
      for (const uint32_t i : g->second.records) {
        const PendingRecord& r = store_->pending_[i];
        const OverlayEntry* last = store_->elem_overlay_.Find(r.key, r.hash);
        if (last == nullptr || last->group_offset != r.group_offset || !last->exists) continue;
        fn(r.key.substr(format::kIncarnationSize), ValueInGroup(r));
      }
      return first_error;
    }
    void GroupElements(uint64_t inc,
                       const std::function<void(std::string_view, const std::string_view*)>& fn) override {
      auto g = store_->group_colls_.find(inc);
      if (g == store_->group_colls_.end()) return;
      for (const uint32_t i : g->second.records) {
        const PendingRecord& r = store_->pending_[i];
        const OverlayEntry* last = store_->elem_overlay_.Find(r.key, r.hash);
        if (last == nullptr || last->group_offset != r.group_offset) continue;
        const std::string_view member = r.key.substr(format::kIncarnationSize);
        if (!last->exists) {
          fn(member, nullptr);
          continue;
        }
        const std::string_view value = ValueInGroup(r);
        fn(member, &value);
      }
    }
    uint64_t GroupEpoch() const override { return store_->group_epoch_; }
    bool GroupCursorValid(uint64_t inc, const GroupCursor& cursor) override {
      if (cursor.epoch == 0) return true;  // fresh: a walk from the start
      if (cursor.epoch != store_->group_epoch_) return false;
      auto g = store_->group_colls_.find(inc);
      if (g == store_->group_colls_.end()) return cursor.records == 0 && cursor.writes == 0;
      // Every write since the cursor added a record: none rewrote one it walked.
      return cursor.records <= g->second.records.size() && cursor.writes <= g->second.writes &&
             g->second.writes - cursor.writes == g->second.records.size() - cursor.records;
    }
    void GroupElementsFrom(uint64_t inc, GroupCursor* cursor,
                           FunctionRef<void(std::string_view, const std::string_view*)> fn) override {
      if (cursor->epoch != store_->group_epoch_) *cursor = GroupCursor{store_->group_epoch_, 0, 0};
      auto g = store_->group_colls_.find(inc);
      if (g == store_->group_colls_.end()) return;
      const std::vector<uint32_t>& records = g->second.records;
      for (size_t i = cursor->records; i < records.size(); ++i) {
        const PendingRecord& r = store_->pending_[records[i]];
        const std::string_view member = r.key.substr(format::kIncarnationSize);
        if (r.tombstone) {
          fn(member, nullptr);
          continue;
        }
        const std::string_view value = ValueInGroup(r);
        fn(member, &value);
      }
      cursor->records = records.size();
      cursor->writes = g->second.writes;
    }
    void ReadOrdered(uint64_t inc, FunctionRef<void(const OrderedView&)> fn) override {
      auto it = store_->collections_.find(inc);  // the writer role: no lock needed
      const Collection* coll = it != store_->collections_.end() && it->second->ordered ? it->second.get() : nullptr;
      auto file_of = [this](uint32_t index) { return store_->files_.GetRaw(index); };
      store_->LendOrdered(inc, coll, file_of, fn);
    }
    void Execute(WriteBatch::Op op, OpResult* result) override {
      // The group's records and overlay refer to the op's key until the group completes: the
      // caller's op may not live that long, this one does.
      store_->ExecuteOp(store_->txn_ops_.Add(std::move(op)), result);
    }
    size_t Written() const override { return store_->pending_.size(); }
    size_t BatchBegan() const override { return store_->batch_began_; }
    void Touch(uint32_t db, std::string_view key) override {
      store_->touched_.push_back({store_->pending_.size(), store_->current_origin_, db, std::string(key)});
    }
    void WrittenKeysFrom(size_t from, FunctionRef<void(uint32_t db, std::string_view key)> fn) const override {
      const std::vector<PendingRecord>& p = store_->pending_;
      for (size_t i = from; i < p.size(); ++i) {
        const PendingRecord& r = p[i];
        if (r.swap_db || r.flush_all || r.flush_db) continue;
        fn(store_->GroupLogicalDb(r.db), r.kind == format::kKindElement ? r.report_key : r.key);
      }
    }

   private:
    // The value of group record `r` where it lies in the group buffer (valid until the group's
    // next write, which may move the buffer).
    std::string_view ValueInGroup(const PendingRecord& r) const {
      const char* p = store_->group_buf_.data() + r.group_offset;
      const format::RecordHeader h = format::DecodeHeader(p);
      return std::string_view(p + format::kRecordHeaderSize + h.key_size, h.value_size);
    }

    StoreImpl* store_;
  };
  // A command that sends `new` (a collection write creating its key) learns whether its key was
  // live before it, as a put does.
  if (op.want_existed && !op.key.empty() && op.db < keydirs_.size()) {
    result->existed = Current(GroupDb(op.db), op.key, Hash(op.key), false).exists;
  }
  // Applied: the op wrote a record, or rewrote one the group wrote before (a second ZINCRBY, ZADD
  // or LSET of one element in a pipeline). Without the rewrites such a command counted as not
  // applied: replicas never got it (their data diverged), nor were its keyspace events sent.
  const size_t records = pending_.size();
  const uint64_t rewrites = group_rewrites_;
  const size_t touched = touched_.size();
  GroupTxn txn(this);
  op.run(txn);
  result->applied = pending_.size() != records || group_rewrites_ != rewrites;
  result->touched = touched_.size() != touched;
}

void StoreImpl::ExecuteOp(const WriteBatch::Op& op, OpResult* result) {
  if (op.kind == WriteBatch::Kind::kRun) return RunOp(op, result);
  if (op.kind == WriteBatch::Kind::kDeleteAll) return DeleteAllKeys(result);
  if (op.kind == WriteBatch::Kind::kSwapDb) return SwapDbs(op.db, op.db2, result);
  if (op.db >= keydirs_.size() || (op.kind == WriteBatch::Kind::kMove && op.db2 >= keydirs_.size())) {
    result->error = Status::InvalidArgument("DB index is out of range");
    return;
  }
  const uint8_t pdb = GroupDb(op.db);
  if (op.kind == WriteBatch::Kind::kDeleteDb) return DeleteDb(pdb, result);
  if (op.kind == WriteBatch::Kind::kReadKeys) return ReadKeys(pdb, op.query, result);
  if (op.kind == WriteBatch::Kind::kMove) return MoveKey(op, pdb, GroupDb(op.db2), result);
  const uint64_t hash = &op == hashed_op_ ? hashed_op_hash_ : Hash(op.key);
  if (op.kind == WriteBatch::Kind::kPut && op.put_condition == PutCondition::kAlways &&
      !op.keep_ttl && !op.want_old && !op.want_existed) {
    // A plain SET does not depend on the old value: no lookup (the keydir update finds the old
    // record anyway, to count it dead).
    AppendToGroup(pdb, op.key, hash, 0, op.value, op.expire_at_ms, op.type, op.record_kind);
    result->applied = true;
    return;
  }
  const bool need_value =
      op.want_old || op.kind == WriteBatch::Kind::kUpdate || op.kind == WriteBatch::Kind::kExpire;
  CurrentValue cur = Current(pdb, op.key, hash, need_value);
  result->existed = cur.exists;
  if (op.check_type && cur.exists && cur.view.type != op.type &&
      (op.kind == WriteBatch::Kind::kUpdate || op.want_old)) {
    result->error = Status::WrongType();
    return;
  }
  if (!cur.error.ok() && (need_value || op.kind == WriteBatch::Kind::kPut)) {
    // A record that fails its check is never treated as absent: a conditional SET, INCR or
    // APPEND would otherwise overwrite it silently. A plain SET (above) or DEL replaces it.
    result->error = cur.error;
    return;
  }
  auto keep_old = [&] {
    if (!op.want_old || !cur.exists) return;
    if (cur.view.pin) {
      result->old = cur.view;
    } else {  // still in the group buffer, which moves: give the caller its own copy
      auto copy = std::make_shared<std::string>(cur.view.value);
      result->old = ValueView{copy, *copy, cur.view.expire_at_ms, cur.view.type, cur.view.kind};
    }
  };
  switch (op.kind) {
    case WriteBatch::Kind::kPut: {
      if ((op.put_condition == PutCondition::kIfAbsent && cur.exists) ||
          (op.put_condition == PutCondition::kIfPresent && !cur.exists)) {
        keep_old();
        return;
      }
      keep_old();
      const int64_t expire = op.keep_ttl && cur.exists ? cur.view.expire_at_ms : op.expire_at_ms;
      AppendToGroup(pdb, op.key, hash, 0, op.value, expire, op.type, op.record_kind);
      result->applied = true;
      return;
    }
    case WriteBatch::Kind::kDelete:
      if (!cur.error.ok()) {  // DEL of a corrupt record: the tombstone repairs the key
        AppendToGroup(pdb, op.key, hash, format::kFlagTombstone, {}, 0);
        result->applied = true;
        return;
      }
      if (!cur.exists) {
        DropExpired(pdb, op.key, hash);  // an expired key goes now, not at the next cycle
        return;
      }
      keep_old();
      AppendToGroup(pdb, op.key, hash, format::kFlagTombstone, {}, 0);
      result->applied = true;
      return;
    case WriteBatch::Kind::kExpire: {
      if (!cur.exists) return;
      const int64_t now_at = cur.view.expire_at_ms;  // 0: no expiry (infinite)
      const int64_t want = op.expire_at_ms;
      bool ok = true;
      switch (op.expire_condition) {
        case ExpireCondition::kAlways:
          break;
        case ExpireCondition::kNX:
          ok = now_at == 0;
          break;
        case ExpireCondition::kXX:
          ok = now_at != 0;
          break;
        case ExpireCondition::kGT:
          ok = now_at != 0 && want > now_at;
          break;
        case ExpireCondition::kLT:
          ok = now_at == 0 || want < now_at;
          break;
        case ExpireCondition::kXXLT:
          ok = now_at != 0 && want < now_at;
          break;
      }
      if (want == 0 && now_at == 0) ok = false;  // PERSIST of a key without expiry
      if (!ok) return;
      result->applied = true;
      if (want != 0 && want <= group_now_ms_) {  // an expiry in the past deletes the key, as Redis does
        AppendToGroup(pdb, op.key, hash, format::kFlagTombstone, {}, 0);
        return;
      }
      const std::string value(cur.view.value);  // the view may point into group_buf_
      AppendToGroup(pdb, op.key, hash, 0, value, want, cur.view.type, cur.view.kind);
      return;
    }
    case WriteBatch::Kind::kUpdate: {
      keep_old();
      UpdateDecision d = op.fn(cur.exists ? &cur.view : nullptr);
      if (d.action == UpdateDecision::Action::kRun && op.run) {
        cur = CurrentValue{};  // let go of the pin before the Txn reads the key again
        return RunOp(op, result);
      }
      if (d.action == UpdateDecision::Action::kPut) {
        const int64_t expire = d.keep_ttl && cur.exists ? cur.view.expire_at_ms : d.expire_at_ms;
        AppendToGroup(pdb, op.key, hash, 0, d.value, expire, d.type, d.kind);
        result->applied = true;
      } else if (d.action == UpdateDecision::Action::kDelete && cur.exists) {
        AppendToGroup(pdb, op.key, hash, format::kFlagTombstone, {}, 0);
        result->applied = true;
      }
      return;
    }
    case WriteBatch::Kind::kDeleteAll:
    case WriteBatch::Kind::kReadKeys:
    case WriteBatch::Kind::kRun:
    case WriteBatch::Kind::kDeleteDb:
    case WriteBatch::Kind::kSwapDb:
    case WriteBatch::Kind::kMove:
      return;  // handled above
  }
}

Status StoreImpl::FailStop(Status cause) {
  spdlog::critical("keg store: {} -- refusing all further writes (fail-stop); restart to recover",
                   cause.ToString());
  std::lock_guard lock(failed_mu_);
  if (failed_.ok()) failed_ = Status::Failed(cause.message());
  return failed_;
}

Status StoreImpl::SyncData(int fd, const std::string& path) {
  const auto start = std::chrono::steady_clock::now();
  Status s = io::SyncFile(fd, path);
  fsync_usec_.Add(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count()));
  return s;
}

Status StoreImpl::CommitGroup() {
  if (group_buf_.empty()) return Status::OK();
  // The group's last record ends it: without kFlagGroupContinues, its checksum redone.
  {
    char* last = group_buf_.data() + group_last_record_;
    last[format::kFlagsOffset] = static_cast<char>(static_cast<uint8_t>(last[format::kFlagsOffset]) &
                                                   ~format::kFlagGroupContinues);
    const format::RecordHeader h = format::DecodeHeader(last);
    format::Store<uint32_t>(last, format::ComputeRecordCrc(last, h.record_size()));
  }
  const uint64_t size = group_buf_.size();
  // Rotate at a group boundary: a group never spans files, and must fit the active mapping. A file
  // holding only its header takes any group; the new file is sized for its header and the group.
  if ((write_offset_ > format::kFileHeaderSize && write_offset_ + size > options_.max_file_size) ||
      write_offset_ + size > active_->map_size()) {
    Status s = Rotate(std::max(options_.max_file_size, format::kFileHeaderSize + size));
    if (!s.ok()) return s;
  }
  Status s = io::WriteAll(active_->fd(), active_->path(), write_offset_, group_buf_.data(), size);
  if (!s.ok() || write_error_set_.load(std::memory_order_relaxed)) {  // the common case takes no lock
    std::lock_guard lock(failed_mu_);
    last_write_error_ = s;
    write_error_set_.store(!s.ok(), std::memory_order_relaxed);
  }
  if (!s.ok()) {
    spdlog::error("keg store: {}", s.ToString());
    // Nothing of the group is acknowledged; cut whatever part of it reached the file so it cannot
    // reappear after a restart. Readers never look past write_offset_, so the cut is safe.
    if (ftruncate(active_->fd(), static_cast<off_t>(write_offset_)) != 0) {
      return FailStop(Status::FromErrno("ftruncate", active_->path(),
                                        static_cast<long long>(write_offset_), errno));
    }
    return s;
  }
  bytes_written_.fetch_add(size, std::memory_order_relaxed);
  groups_.fetch_add(1, std::memory_order_relaxed);
  group_records_.fetch_add(pending_.size(), std::memory_order_relaxed);
  group_size_.Add(pending_.size());
  if (options_.fsync == FsyncPolicy::kAlways) {
    s = SyncData(active_->fd(), active_->path());
    if (!s.ok()) return FailStop(s);
    last_sync_ms_ = NowMs();
  } else {
    dirty_ = true;
  }
  return Status::OK();
}

namespace {

// Adds the record at `offset` of `file` (its size is in its header) to the file's dead bytes.
void AddDeadRecord(DataFile* file, uint64_t offset) {
  if (file == nullptr || offset + format::kRecordHeaderSize > file->size()) return;
  const format::RecordHeader h = format::DecodeHeader(file->data() + offset);
  file->dead_bytes.fetch_add(h.record_size(), std::memory_order_relaxed);
}

}  // namespace

void StoreImpl::MarkDead(const Location& loc) { AddDeadRecord(files_.GetRaw(loc.file), loc.offset); }

void StoreImpl::MarkDeadLater(const Location& loc) {
  std::lock_guard lock(dead_later_mu_);
  dead_later_.push_back(loc);
}

void StoreImpl::DrainDeadLater() {
  std::vector<Location> dead;
  std::vector<std::pair<std::shared_ptr<Collection>, bool>> dropped;
  {
    std::lock_guard lock(dead_later_mu_);
    dead.swap(dead_later_);
    dropped.swap(dropped_);
  }
  std::vector<uint64_t> heads_gone;
  for (const Location& loc : dead) {
    // Pinned: a file retired by a compaction meanwhile is gone from the table (nothing to count).
    const std::shared_ptr<DataFile> file = files_.Get(loc.file);
    AddDeadRecord(file.get(), loc.offset);
    // An expired head: its collection goes too (the expire cycle does not read records).
    if (file != nullptr && loc.offset + format::kRecordHeaderSize <= file->size()) {
      const format::RecordHeader h = format::DecodeHeader(file->data() + loc.offset);
      if (h.tag.kind == format::kKindHead && !h.tombstone() && h.value_size == format::kHeadValueSize &&
          loc.offset + h.record_size() <= file->size()) {
        heads_gone.push_back(format::IncarnationOf(
            std::string_view(file->data() + loc.offset + format::kRecordHeaderSize + h.key_size, h.value_size)));
      }
    }
  }
  if (!heads_gone.empty()) {
    QueueTask([this, heads_gone = std::move(heads_gone)] {
      for (const uint64_t inc : heads_gone) HeadGone(inc);
      DropDeadCollections();
    });
  }
  // A dropped collection's records are dead (unless a FLUSHALL counted them), then its index is
  // freed: off the request path, however many elements it had.
  for (auto& [coll, account] : dropped) {
    if (!account) continue;
    std::vector<Location> locs;
    locs.reserve(coll->Size());
    coll->ForEach([&](const Location& loc) { locs.push_back(loc); });
    for (const Location& loc : locs) AddDeadRecord(files_.Get(loc.file).get(), loc.offset);
  }
}

// ---- Large collections --------------------------------------------------------------------------

std::shared_ptr<StoreImpl::Collection> StoreImpl::FindCollection(uint64_t inc) const {
  std::shared_lock lock(collections_mu_);
  auto it = collections_.find(inc);
  return it == collections_.end() ? nullptr : it->second;
}

StoreImpl::Collection& StoreImpl::CollectionFor(uint64_t inc, uint8_t pdb, uint8_t type) {
  std::unique_lock lock(collections_mu_);
  std::shared_ptr<Collection>& slot = collections_[inc];
  if (!slot) {
    slot = std::make_shared<Collection>();
    slot->pdb = pdb;
  }
  if (type != 0) slot->type = type;
  // A sorted set's first element creates its order (ApplyGroup holds the walk lock by then).
  if (type == format::kTypeZset && !slot->ordered) slot->ordered = std::make_unique<OrderedIndex>();
  // A list's first element creates its positional index (nothing is in `index` yet: every element
  // record names its type, so the first one seen decides).
  if (type == format::kTypeList && !slot->positions && slot->index.Size() == 0) {
    slot->positions = std::make_unique<PositionIndex>();
  }
  return *slot;
}

bool StoreImpl::ElementForIndex(const DataFile& file, uint64_t offset, std::string_view* member,
                                std::string_view* value) const {
  format::RecordHeader h;
  if (format::CheckRecord(file.data(), file.size(), offset, false, &h) != format::RecordCheck::kOk ||
      h.tag.kind != format::kKindElement || h.key_size < format::kIncarnationSize) {
    return false;
  }
  const char* p = file.data() + offset + format::kRecordHeaderSize;
  *member = std::string_view(p + format::kIncarnationSize, h.key_size - format::kIncarnationSize);
  *value = std::string_view(p + h.key_size, h.value_size);
  return true;
}

std::string_view StoreImpl::MemberForCompare(const DataFile& file, uint64_t offset) const {
  std::string_view member, value;
  return ElementForIndex(file, offset, &member, &value) ? member : std::string_view();
}

OrderedIndex::MemberFn StoreImpl::WriterMemberFn() const {
  return [this](uint64_t packed) -> std::string_view {
    const Location loc = Location::Unpack(packed);
    const DataFile* file = files_.GetRaw(loc.file);
    return file != nullptr ? MemberForCompare(*file, loc.offset) : std::string_view();
  };
}

namespace {

uint64_t PackedLoc(const Location& loc) { return Location{loc.file, loc.offset, false, 0}.Pack(); }

}  // namespace

void StoreImpl::UpdateOrdered(Collection& coll, std::string_view member, bool had_old, const Location& old,
                              bool has_now, const Location& now) {
  // The header checks without the CRC, as member comparisons (ElementForIndex): the new record
  // is the group's own, just written, and a damaged old one leaves its entry behind either way (with
  // the CRC it is not read; without, its score does not decode or does not match — or, the damage
  // elsewhere, its entry goes as it should).
  auto score_at = [this](const Location& loc, double* score) {  // false when unreadable
    const DataFile* file = files_.GetRaw(loc.file);
    std::string_view m, v;
    return file != nullptr && ElementForIndex(*file, loc.offset, &m, &v) && format::DecodeScore(v, score);
  };
  const OrderedIndex::MemberFn member_of = WriterMemberFn();
  double score = 0;
  if (had_old && score_at(old, &score)) coll.ordered->Erase(score, member, PackedLoc(old), member_of);
  if (has_now && score_at(now, &score)) coll.ordered->Insert(score, member, PackedLoc(now), member_of);
}

void StoreImpl::LendOrdered(uint64_t inc, const Collection* coll, FunctionRef<const DataFile*(uint32_t)> file_of,
                            FunctionRef<void(const OrderedView&)> fn) const {
  class View final : public OrderedView {
   public:
    View(const StoreImpl& store, uint64_t inc, const Collection* coll, FunctionRef<const DataFile*(uint32_t)> file_of)
        : store_(store), inc_(inc), coll_(coll), idx_(coll != nullptr ? coll->ordered.get() : nullptr),
          file_of_(file_of), member_of_([this](uint64_t loc) { return CompareMember(loc); }) {}
    uint64_t Size() const override { return idx_ != nullptr ? idx_->Size() : 0; }
    uint64_t PartitionPoint(Before before) const override {
      if (idx_ == nullptr) return 0;
      return idx_->PartitionPoint([&](const OrderedIndex::Entry& e) {
        return before(Probe(*this, e.score, e.loc, /*for_compare=*/true));
      });
    }
    uint64_t CountBelow(double score, bool inclusive) const override {
      return idx_ != nullptr ? idx_->CountBelow(score, inclusive) : 0;
    }
    void ForRange(uint64_t from, uint64_t to, FunctionRef<bool(const Item&)> fn) const override {
      if (idx_ == nullptr) return;
      idx_->ForRange(from, to, [&](const OrderedIndex::Entry& e) { return fn(Item{e.score, MemberAt(e.loc)}); });
    }
    bool Find(std::string_view member, double* score, uint64_t* pos) const override {
      if (idx_ == nullptr) return false;
      const std::string ekey = format::ElementKey(inc_, member);
      std::shared_ptr<DataFile> file;
      format::RecordHeader h;
      uint64_t offset = 0;
      Status s = store_.Lookup(*coll_, ekey, store_.Hash(ekey), false, &file, &h, &offset);
      if (!s.ok()) {
        if (!s.IsNotFound() && error_.ok()) error_ = std::move(s);
        return false;
      }
      const char* p = file->data() + offset + format::kRecordHeaderSize;
      if (!format::DecodeScore(std::string_view(p + h.key_size, h.value_size), score)) {
        if (error_.ok()) {
          error_ = Status::Corruption(file->path() + " at offset " + std::to_string(offset) + ": not a score");
        }
        return false;
      }
      const double sc = *score;
      *pos = idx_->PartitionPoint(
          [&](const OrderedIndex::Entry& e) { return OrderedIndex::Less(e, sc, member, member_of_); });
      return true;
    }
    const Status& error() const override { return error_; }

   protected:
    std::string_view CompareMember(uint64_t packed) const override {
      const Location loc = Location::Unpack(packed);
      const DataFile* file = file_of_(loc.file);
      return file != nullptr ? store_.MemberForCompare(*file, loc.offset) : std::string_view();
    }
    std::string_view MemberAt(uint64_t packed) const override {
      const Location loc = Location::Unpack(packed);
      const DataFile* file = file_of_(loc.file);
      std::string_view member, value;
      Status error;
      if (file == nullptr) {
        error = Status::Failed("a sorted set's record was moved away during a read; try again");
      } else if (store_.ReadElementAt(*file, loc.offset, &member, &value, &error)) {
        return member;
      }
      if (error_.ok()) error_ = std::move(error);
      return {};
    }

   private:
    const StoreImpl& store_;
    uint64_t inc_;
    const Collection* coll_;
    const OrderedIndex* idx_;
    FunctionRef<const DataFile*(uint32_t)> file_of_;  // LendOrdered's: lives as long as this view
    OrderedIndex::MemberFn member_of_;
    mutable Status error_;
  };
  const View view(*this, inc, coll, file_of);
  fn(view);
}


void StoreImpl::HeadCame(uint64_t inc, uint8_t pdb) {
  Collection& coll = CollectionFor(inc, pdb);
  ++coll.heads;
  coll.pdb = pdb;
  coll.flushed = false;
}

void StoreImpl::HeadGone(uint64_t inc) {
  auto it = collections_.find(inc);
  if (it == collections_.end()) return;  // dropped already (a FLUSHDB, then its heads' dead records)
  if (--it->second->heads <= 0) maybe_dead_.push_back(inc);
}

void StoreImpl::DropDeadCollections() {
  std::vector<std::pair<std::shared_ptr<Collection>, bool>> gone;
  {
    std::unique_lock lock(collections_mu_);
    for (const uint64_t inc : maybe_dead_) {
      auto it = collections_.find(inc);
      if (it == collections_.end() || it->second->heads > 0) continue;
      gone.emplace_back(std::move(it->second), !it->second->flushed);
      collections_.erase(it);
    }
  }
  maybe_dead_.clear();
  if (gone.empty()) return;
  std::lock_guard lock(dead_later_mu_);
  for (auto& g : gone) dropped_.push_back(std::move(g));
}

bool StoreImpl::RecordExpiredAt(const Location& loc, int64_t now_ms) const {
  if (!loc.expires) return false;
  const int64_t ceil_ms = int64_t{loc.expire_s} * 1000;  // expire_s is the expiry rounded up
  if (ceil_ms <= now_ms) return true;
  if (ceil_ms - 1000 >= now_ms) return false;
  const DataFile* file = files_.GetRawUnlocked(loc.file);  // (the writer's files stay while it runs)
  format::RecordHeader h;
  return file != nullptr &&
         format::CheckRecord(file->data(), file->size(), loc.offset, false, &h) == format::RecordCheck::kOk &&
         h.expires() && h.expire_at_ms <= now_ms;
}

void StoreImpl::ReleaseRecord(const Location& loc) {
  DataFile* file = files_.GetRawUnlocked(loc.file);
  if (file == nullptr || loc.offset + format::kRecordHeaderSize > file->size()) return;
  const char* p = file->data() + loc.offset;
  const format::RecordHeader h = format::DecodeHeader(p);
  file->dead_bytes.fetch_add(h.record_size(), std::memory_order_relaxed);
  if (h.tag.kind == format::kKindHead && !h.tombstone() && h.value_size == format::kHeadValueSize &&
      loc.offset + h.record_size() <= file->size()) {
    HeadGone(format::IncarnationOf(std::string_view(p + format::kRecordHeaderSize + h.key_size, h.value_size)));
  }
}

bool StoreImpl::ReadElementAt(const DataFile& file, uint64_t offset, std::string_view* member,
                              std::string_view* value, Status* error) const {
  format::RecordHeader h;
  const format::RecordCheck check =
      format::CheckRecord(file.data(), file.size(), offset, options_.verify_checksums, &h);
  if (check != format::RecordCheck::kOk || h.tag.kind != format::kKindElement) {
    spdlog::error("read of an element in {} at offset {}: {}", file.path(), offset,
                  check == format::RecordCheck::kOk ? "not an element record" : format::RecordCheckName(check));
    *error = Status::Corruption(file.path() + " at offset " + std::to_string(offset) + ": " +
                                (check == format::RecordCheck::kOk ? "not an element record" : format::RecordCheckName(check)));
    return false;
  }
  const char* p = file.data() + offset + format::kRecordHeaderSize;
  *member = std::string_view(p + format::kIncarnationSize, h.key_size - format::kIncarnationSize);
  *value = std::string_view(p + h.key_size, h.value_size);
  return true;
}

Status StoreImpl::GetElement(uint64_t inc, std::string_view member, ValueView* out) const {
  Status s;
  Stable([&] { s = GetElementOnce(inc, member, out); });
  return s;
}

Status StoreImpl::GetElementOnce(uint64_t inc, std::string_view member, ValueView* out) const {
  const std::shared_ptr<Collection> coll = FindCollection(inc);
  if (!coll) return Status::NotFound();
  thread_local std::string ekey;
  format::AssignElementKey(&ekey, inc, member);
  std::shared_ptr<DataFile> file;
  format::RecordHeader h;
  uint64_t offset = 0;
  Status s = Lookup(*coll, ekey, Hash(ekey), options_.verify_checksums, &file, &h, &offset);
  if (!s.ok()) return s;
  *out = ViewOf(file->data() + offset, h);
  out->pin = std::move(file);
  return Status::OK();
}

namespace {

// The data files a walk over a collection reads, pinned before it copies the index, so no record
// it finds there can be retired under it. Files added since (compaction outputs) are pinned as
// they are met.
class PinnedFiles {
 public:
  explicit PinnedFiles(std::vector<std::shared_ptr<DataFile>> files) {
    for (auto& f : files) Add(std::move(f));
  }
  template <class Table>
  const DataFile* Get(uint32_t index, const Table& table) {
    for (size_t i = 0; i < inline_count_; ++i) {
      if (inline_[i]->index() == index) return inline_[i].get();
    }
    if (auto it = by_index_.find(index); it != by_index_.end()) return it->second;
    std::shared_ptr<DataFile> f = table.Get(index);
    if (!f) return nullptr;
    return Add(std::move(f));
  }
  void MoveTo(std::vector<std::shared_ptr<const void>>* pins) {
    for (size_t i = 0; i < inline_count_; ++i) pins->push_back(std::move(inline_[i]));
    inline_count_ = 0;
    for (auto& f : more_) pins->push_back(std::move(f));
    more_.clear();
    by_index_.clear();
  }

 private:
  const DataFile* Add(std::shared_ptr<DataFile> f) {
    const DataFile* raw = f.get();
    if (inline_count_ < inline_.size()) {
      inline_[inline_count_++] = std::move(f);
    } else {
      by_index_.emplace(raw->index(), raw);
      more_.push_back(std::move(f));
    }
    return raw;
  }

  // Most reads meet one to three files: those are kept inline and found by a scan (a read then
  // allocates nothing here); the rest in a map.
  std::array<std::shared_ptr<DataFile>, 4> inline_;
  size_t inline_count_ = 0;
  std::vector<std::shared_ptr<DataFile>> more_;
  std::unordered_map<uint32_t, const DataFile*> by_index_;
};

}  // namespace

Status StoreImpl::GetElements(uint64_t inc, std::span<const std::string_view> members,
                              std::vector<std::string_view>* values,
                              std::vector<std::shared_ptr<const void>>* pins) const {
  Status result;
  Stable([&] {
    values->clear();
    result = Status::OK();
    const std::shared_ptr<Collection> coll = FindCollection(inc);
    if (!coll) {
      result = Status::NotFound();
      return;
    }
    // The files met, pinned once each (a range of a list is almost always in one or two files).
    PinnedFiles met({});
    auto file_of = [&](uint32_t index) { return met.Get(index, files_); };
    thread_local std::string ekey;  // an element key is longer than a short string's room
    values->reserve(members.size());
    // A list's elements are looked up together, under one hold of its index's lock; up to
    // kOnStack of them (LRANGE of 100) without allocating.
    constexpr size_t kOnStack = 128;
    LocationBuffer<kOnStack> listed_stack;
    uint8_t listed_found_stack[kOnStack];
    std::vector<Location> listed_heap;
    std::vector<uint8_t> listed_found_heap;
    Location* listed = listed_stack;
    uint8_t* listed_found = listed_found_stack;
    if (coll->positions) {
      if (members.size() > kOnStack) {
        listed_heap.resize(members.size());
        listed_found_heap.resize(members.size());
        listed = listed_heap.data();
        listed_found = listed_found_heap.data();
      }
      coll->positions->FindMany(members, listed, listed_found);
    }
    for (size_t m = 0; m < members.size(); ++m) {
      const std::string_view member = members[m];
      LocationBuffer<kMaxCandidates> candidates;
      size_t n = 0;
      if (coll->positions) {
        n = listed_found[m];
        if (n != 0) candidates[0] = listed[m];  // (an entry not found was never written)
      } else {
        format::AssignElementKey(&ekey, inc, member);  // for its hash
        n = coll->FindCandidates(ekey, Hash(ekey), candidates, kMaxCandidates);
      }
      bool found = false;
      bool retired = false;
      for (size_t i = 0; i < n && !found; ++i) {
        const DataFile* file = file_of(candidates[i].file);
        if (file == nullptr) {
          retired = true;
          continue;
        }
        if (!RecordHasElementKey(*file, candidates[i].offset, inc, member)) continue;
        format::RecordHeader h;
        const format::RecordCheck check =
            format::CheckRecord(file->data(), file->size(), candidates[i].offset, options_.verify_checksums, &h);
        if (check != format::RecordCheck::kOk) {
          result = Status::Corruption(file->path() + " at offset " + std::to_string(candidates[i].offset) + ": " +
                                      format::RecordCheckName(check));
          return;
        }
        const char* p = file->data() + candidates[i].offset + format::kRecordHeaderSize;
        values->emplace_back(p + h.key_size, h.value_size);
        found = true;
      }
      if (found) continue;
      if (retired) {  // moved by a compaction meanwhile: the one-element read looks again
        ValueView v;
        result = GetElementOnce(inc, member, &v);
        if (!result.ok()) return;
        values->push_back(v.value);
        pins->push_back(std::move(v.pin));
        continue;
      }
      result = Status::NotFound();
      return;
    }
    met.MoveTo(pins);
  });
  return result;
}

uint64_t StoreImpl::ElementCount(uint64_t inc) const {
  uint64_t n = 0;
  Stable([&] {  // between groups: a group's changes to the count all or none
    const std::shared_ptr<Collection> coll = FindCollection(inc);
    n = coll ? coll->Size() : 0;
  });
  return n;
}

Status StoreImpl::ReadElements(uint64_t inc, std::vector<ElementView>* out,
                               std::vector<std::shared_ptr<const void>>* pins) const {
  for (int attempt = 0;; ++attempt) {
    out->clear();
    const std::shared_ptr<Collection> coll = FindCollection(inc);
    if (!coll) return Status::OK();
    PinnedFiles files(files_.Snapshot());
    std::vector<Location> locs;
    {
      std::shared_lock walk(coll->walk_mu);
      locs.reserve(coll->Size());
      coll->ForEach([&](const Location& loc) { locs.push_back(loc); });
    }
    out->reserve(locs.size());
    bool retired = false;
    for (const Location& loc : locs) {
      const DataFile* file = files.Get(loc.file, files_);
      if (file == nullptr) {  // a compaction output retired by a later compaction meanwhile
        retired = true;
        break;
      }
      ElementView e;
      Status error;
      if (!ReadElementAt(*file, loc.offset, &e.member, &e.value, &error)) return error;
      out->push_back(e);
    }
    if (retired && attempt < 8) continue;
    if (retired) return Status::Failed("the collection kept moving under compaction; try again");
    files.MoveTo(pins);
    return Status::OK();
  }
}

Status StoreImpl::VisitSnapshot(const std::function<void()>& at_moment,
                                const std::function<bool(const SnapshotItem&)>& fn) {
  // On the writer, between groups: every key's location, every live collection's element
  // locations (by incarnation: the heads say which), and the files, pinned.
  struct Key {
    uint32_t db;
    uint32_t file;
    uint64_t offset;
  };
  // Sized, and its pages touched, before the writer's turn (Keydir::Size is for any thread): the
  // writer, which every write waits for meanwhile, only fills it.
  size_t expected = 0;
  for (const auto& kd : keydirs_) expected += kd->Size();
  std::vector<Key> keys(expected + expected / 64 + 1024);
  size_t count = 0;
  std::unordered_map<uint64_t, std::vector<Location>> elements;
  std::vector<std::shared_ptr<DataFile>> pinned;
  int64_t now = 0;
  size_t element_count = 0;
  const auto t0 = std::chrono::steady_clock::now();
  std::chrono::steady_clock::duration held{};
  const bool ran = RunOnWriter([&] {
    const auto start = std::chrono::steady_clock::now();
    now = NowMs();
    pinned = files_.Snapshot();
    for (uint32_t db = 0; db < visible_dbs_; ++db) {  // (not the staging databases)
      const Keydir& kd = *keydirs_[db_map_[db].load(std::memory_order_relaxed)];
      for (size_t shard = 0; shard < Keydir::kShards; ++shard) {
        kd.ForEachInShard(shard, [&](uint64_t, const Location& loc) {
          if (count == keys.size()) keys.resize(keys.size() + keys.size() / 8 + 1024);
          keys[count++] = {db, loc.file, loc.offset};
        });
      }
    }
    for (const auto& [inc, coll] : collections_) {
      if (coll->heads <= 0) continue;
      std::vector<Location>& locs = elements[inc];
      locs.reserve(coll->Size());
      coll->ForEach([&locs](const Location& loc) { locs.push_back(loc); });
      element_count += locs.size();
    }
    if (at_moment) at_moment();
    held = std::chrono::steady_clock::now() - start;
  });
  if (!ran) return Status::Failed("the store is closing");
  const auto ms = [](std::chrono::steady_clock::duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
  };
  keys.resize(count);
  spdlog::info("snapshot: {} keys and {} element locations copied on the writer in {:.1f} ms ({:.1f} ms from the request)",
               keys.size(), element_count, ms(held), ms(std::chrono::steady_clock::now() - t0));
  // In file order within each database: the records are then read front to back (the index's
  // order is the hashes', a random walk through the files).
  std::sort(keys.begin(), keys.end(), [](const Key& a, const Key& b) {
    return std::tie(a.db, a.file, a.offset) < std::tie(b.db, b.file, b.offset);
  });
  std::unordered_map<uint32_t, const DataFile*> file_of;
  for (const auto& f : pinned) file_of.emplace(f->index(), f.get());
  // Reads the record at `loc` (checked whole): false with *error when it fails.
  auto read = [&](const Location& loc, format::RecordHeader* h, const char** p, Status* error) {
    auto it = file_of.find(loc.file);
    if (it == file_of.end()) {
      *error = Status::Corruption("data file " + std::to_string(loc.file) + " named by the index is missing");
      return false;
    }
    const DataFile& file = *it->second;
    const format::RecordCheck check = format::CheckRecord(file.data(), file.size(), loc.offset, true, h);
    if (check != format::RecordCheck::kOk) {
      *error = Status::Corruption(file.path() + " at offset " + std::to_string(loc.offset) + ": " +
                                  format::RecordCheckName(check));
      spdlog::error("snapshot read of {} at offset {}: {}", file.path(), loc.offset, format::RecordCheckName(check));
      return false;
    }
    *p = file.data() + loc.offset;
    return true;
  };
  SnapshotItem item;
  for (const Key& k : keys) {
    format::RecordHeader h;
    const char* p = nullptr;
    Status error;
    Location at;
    at.file = k.file;
    at.offset = k.offset;
    if (!read(at, &h, &p, &error)) return error;
    if (h.tombstone() || (h.expires() && h.expire_at_ms <= now)) continue;
    item.db = k.db;
    item.key = std::string_view(p + format::kRecordHeaderSize, h.key_size);
    item.value = ViewOf(p, h);
    item.elements.clear();
    if (h.tag.kind == format::kKindHead) {
      auto it = elements.find(format::IncarnationOf(item.value.value));
      if (it != elements.end()) {
        for (const Location& loc : it->second) {
          format::RecordHeader eh;
          const char* ep = nullptr;
          if (!read(loc, &eh, &ep, &error)) return error;
          const std::string_view ekey(ep + format::kRecordHeaderSize, eh.key_size);
          if (ekey.size() < format::kIncarnationSize) continue;
          item.elements.push_back({ekey.substr(format::kIncarnationSize), std::string_view(ep + format::kRecordHeaderSize + eh.key_size, eh.value_size)});
        }
      }
      if (h.tag.type == format::kTypeList) {  // positions (8 bytes, big endian) sort as numbers
        std::erase_if(item.elements, [](const ElementView& e) { return e.member.empty(); });
        std::sort(item.elements.begin(), item.elements.end(),
                  [](const ElementView& a, const ElementView& b) { return a.member < b.member; });
      }
    }
    if (!fn(item)) break;
  }
  return Status::OK();
}

uint64_t StoreImpl::ScanElements(uint64_t inc, uint64_t cursor, size_t count,
                                 const std::function<void(std::string_view, std::string_view)>& fn) const {
  const std::shared_ptr<Collection> coll = FindCollection(inc);
  if (!coll) return 0;
  PinnedFiles files(files_.Snapshot());
  std::vector<Location> entries;
  coll->Scan(&cursor, std::max<size_t>(count, 1), &entries);
  for (const Location& loc : entries) {
    const DataFile* file = files.Get(loc.file, files_);
    std::string_view member, value;
    Status error;
    if (file != nullptr && ReadElementAt(*file, loc.offset, &member, &value, &error)) fn(member, value);
  }
  return cursor;
}

bool StoreImpl::RandomElement(uint64_t inc, uint64_t random, std::string* member, std::string* value) const {
  const std::shared_ptr<Collection> coll = FindCollection(inc);
  if (!coll) return false;
  for (int attempt = 0; attempt < 8; ++attempt) {
    Location loc;
    if (!coll->RandomEntry(random + static_cast<uint64_t>(attempt), &loc)) return false;
    const std::shared_ptr<DataFile> file = files_.Get(loc.file);
    std::string_view m, v;
    Status error;
    if (file == nullptr || !ReadElementAt(*file, loc.offset, &m, &v, &error)) continue;  // moved: again
    member->assign(m);
    value->assign(v);
    return true;
  }
  return false;
}

void StoreImpl::ReadOrdered(uint64_t inc, FunctionRef<void(const OrderedView&)> fn) const {
  const std::shared_ptr<Collection> coll = FindCollection(inc);
  if (!coll || !coll->ordered) {
    LendOrdered(inc, nullptr, [](uint32_t) -> const DataFile* { return nullptr; }, fn);
    return;
  }
  // Files are pinned as the view meets them, under the walk lock: a record the ordered index
  // names cannot be retired while it is held (compaction repoints an entry, under the lock held
  // exclusively, before it retires the record's file), so a file met here is still in the table.
  std::shared_lock walk(coll->walk_mu);
  PinnedFiles files({});
  LendOrdered(inc, coll.get(), [&](uint32_t index) { return files.Get(index, files_); }, fn);
}

void StoreImpl::ApplyGroup() {
  std::unique_lock gate(apply_gate_);  // (ReadTogether's last resort waits for the group)
  const uint64_t base = write_offset_;
  write_offset_ += group_buf_.size();
  active_->set_size(write_offset_);  // the records become readable before the keydir names them
  // Readers see all of a group or none of it: while its records change the keydir the sequence
  // is odd, and a lookup that overlapped the change is retried (Stable), as are reads that must
  // see the store at one moment (ReadTogether: MGET a b) when a group landed between them — two
  // one-record groups, a then b, would otherwise give the old a with the new b. Seqlock order:
  // odd, then the changes (release fence), then even (release store). A group of one record too:
  // skipping its odd phase let TOUCH a a answer 1 beside DEL a — the first read before the
  // change, the second after it, and the check before the sequence moved on.
  const uint64_t seq = apply_seq_.load(std::memory_order_relaxed);
  apply_seq_.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  const uint32_t pause_us = apply_pause_us_.load(std::memory_order_relaxed);
  // The collections whose elements the group writes, each locked for walks (ReadElements) until
  // all of the group's changes to it are in: created here when new (no head names them yet).
  std::vector<std::pair<uint64_t, Collection*>> touched;
  std::vector<std::unique_lock<std::shared_mutex>> walk_locks;
  for (const auto& [inc, g] : group_colls_) {
    if (g.records.empty()) continue;
    const PendingRecord& first = pending_[g.records.front()];
    Collection& coll = CollectionFor(inc, first.db, first.type);
    touched.emplace_back(inc, &coll);
    maybe_dead_.push_back(inc);  // a collection the group created and deleted again goes at the end
  }
  // In one global order (by address), so no two groups take two collections' locks in opposite
  // orders (readers take one at a time, but lock-order checkers cannot know that).
  std::sort(touched.begin(), touched.end(),
            [](const auto& a, const auto& b) { return std::less<Collection*>()(a.second, b.second); });
  walk_locks.reserve(touched.size());
  for (auto& [inc, coll] : touched) walk_locks.emplace_back(coll->walk_mu);
  for (const PendingRecord& r : pending_) {
    if (pause_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(pause_us));
    if (r.swap_db) {
      const uint8_t pa = db_map_[r.swap_a].load(std::memory_order_relaxed);
      const uint8_t pb = db_map_[r.swap_b].load(std::memory_order_relaxed);
      db_map_[r.swap_a].store(pb, std::memory_order_relaxed);
      db_map_[r.swap_b].store(pa, std::memory_order_relaxed);
      logical_of_[pb] = r.swap_a;
      logical_of_[pa] = r.swap_b;
      continue;  // live for ever (compaction copies it): the map must survive
    }
    if (r.kind == format::kKindElement) {
      // Only an element's last record of the group goes to its collection's index.
      const OverlayEntry* last = elem_overlay_.Find(r.key, r.hash);
      if (last == nullptr || last->group_offset != r.group_offset) {
        active_->dead_bytes.fetch_add(r.size, std::memory_order_relaxed);
        continue;
      }
      Collection* coll = nullptr;
      for (const auto& [inc, c] : touched) {
        if (inc == r.inc) coll = c;
      }
      if (coll == nullptr) continue;  // cannot happen: its overlay entry and group_colls_ go together
      const Location loc{active_->index(), base + r.group_offset, false, 0};
      Location old;
      const std::string_view member = r.key.substr(format::kIncarnationSize);
      if (r.tombstone) {
        if (coll->Erase(r.key, r.hash, MatcherFor(r.key), &old)) {
          if (coll->ordered) UpdateOrdered(*coll, member, true, old, false, loc);
          MarkDead(old);
        }
        active_->dead_bytes.fetch_add(r.size, std::memory_order_relaxed);
      } else {
        const bool had = coll->Upsert(r.key, r.hash, MatcherFor(r.key), loc, &old);
        if (coll->ordered) UpdateOrdered(*coll, member, had, old, true, loc);
        if (had) MarkDead(old);
      }
      continue;
    }
    if (r.flush_db) {  // FLUSHDB: the database's records before this one are dead, this one too
      for (auto& [inc, coll] : collections_) {
        if (coll->pdb == r.db && coll->heads > 0) {
          coll->heads = 0;
          maybe_dead_.push_back(inc);
        }
      }
      Keydir& kd = *keydirs_[r.db];
      for (size_t shard = 0; shard < Keydir::kShards; ++shard) {
        kd.ForEachInShard(shard, [this](uint64_t, const Location& loc) { MarkDeadLater(loc); });
      }
      kd.ClearShards(0, 1);
      active_->dead_bytes.fetch_add(r.size, std::memory_order_relaxed);
      continue;
    }
    if (r.flush_all) {  // FLUSHALL: every record before this one is dead, this one too
      for (auto& [inc, coll] : collections_) {
        coll->heads = 0;
        coll->flushed = true;
        maybe_dead_.push_back(inc);
      }
      for (auto& kd : keydirs_) kd->ClearShards(0, 1);
      for (const auto& file : files_.Snapshot()) {
        file->dead_bytes.store(file.get() == active_.get() ? base + r.group_offset + r.size : file->size(),
                               std::memory_order_relaxed);
      }
      continue;
    }
    // A record a later one of the group replaced (a script's INCR then PEXPIRE of one key, a
    // MULTI, a pipeline), or that a later FLUSHALL of the group deleted, is dead at once: only the
    // key's last record of the group goes to the keydir. Its size is known here: its header is not
    // read back through the map.
    const OverlayEntry* last = overlay_.Find(r.key, OverlayHash(r.hash, r.db));
    if (last == nullptr || last->group_offset != r.group_offset) {
      active_->dead_bytes.fetch_add(r.size, std::memory_order_relaxed);
      continue;
    }
    const Location loc{active_->index(), base + r.group_offset, r.expires, r.expire_s};
    Location old;
    Keydir& kd = *keydirs_[r.db];
    // The record this one replaces had expired (the write found the key absent): `expired` for
    // it, as Redis's lookupKeyWrite deletes it first (Options::on_expired_replaced).
    auto replaced = [&](const Location& o) {
      if (o.expires && !r.sees_expired && name_expired_.load(std::memory_order_relaxed) &&
          options_.on_expired_replaced && RecordExpiredAt(o, group_now_ms_)) {
        options_.on_expired_replaced(logical_of_[r.db], r.key);
      }
      ReleaseRecord(o);
    };
    if (r.tombstone) {
      if (kd.Erase(r.hash, MatcherFor(r.key), &old)) replaced(old);
      // A tombstone is never the live version of anything.
      active_->dead_bytes.fetch_add(r.size, std::memory_order_relaxed);
    } else {
      if ((r.old_known && kd.ReplaceAt(r.hash, Location{r.old_file, r.old_offset, false, 0}, loc, &old)) ||
          kd.Upsert(r.hash, MatcherFor(r.key), loc, &old)) {
        replaced(old);
      }
      if (r.kind == format::kKindHead) HeadCame(r.inc, r.db);
    }
  }
  if (pause_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(pause_us));  // and after
  walk_locks.clear();
  // After every record: RENAME's new head counts before its old one is let go.
  if (!maybe_dead_.empty()) DropDeadCollections();
  apply_seq_.store(seq + 2, std::memory_order_release);
  if (group_swapped_ && options_.on_swapdb) {
    for (const PendingRecord& r : pending_) {
      if (r.swap_db) options_.on_swapdb(r.swap_a, r.swap_b);
    }
  }
  if (report_writes_.load(std::memory_order_relaxed) && (!pending_.empty() || !touched_.empty())) {
    written_.clear();
    // (A group holds a batch or two that defer: a scan of them is cheaper than a set.)
    auto deferred = [this](uint64_t origin) {
      return !deferring_origins_.empty() &&
             std::find(deferring_origins_.begin(), deferring_origins_.end(), origin) != deferring_origins_.end();
    };
    size_t next_touched = 0;  // touched_ is in group order
    auto touched_before = [&](size_t record) {
      for (; next_touched < touched_.size() && touched_[next_touched].at <= record; ++next_touched) {
        const TouchedKey& t = touched_[next_touched];
        written_.push_back({t.origin, t.key, false, t.db, deferred(t.origin), t.at});
      }
    };
    for (size_t i = 0; i < pending_.size(); ++i) {
      touched_before(i);
      const PendingRecord& r = pending_[i];
      if (!r.swap_db) {
        written_.push_back({r.origin, r.kind == format::kKindElement ? r.report_key : r.key,
                            r.flush_all || r.flush_db, logical_of_[r.db], deferred(r.origin), i});
      }
    }
    touched_before(SIZE_MAX);
    options_.on_written(written_);
  }
  ClearGroup();
}

void StoreImpl::ForgetWrittenKeys() {
  group_epoch_ = NextGroupEpoch();
  overlay_.Clear();
  elem_overlay_.Clear();
  group_colls_.clear();
  group_coll_last_ = nullptr;
  memo_.valid = false;
}

void StoreImpl::ClearGroup() {
  pending_.clear();
  touched_.clear();
  deferring_origins_.clear();
  ForgetWrittenKeys();
  txn_ops_.Clear();  // after the overlay and the records, which point at the ops' keys
  elem_keys_.Clear();
  last_report_key_ = {};
  flushed_.reset();
  if (group_swapped_) {  // applied (db_map_ has it) or abandoned: the group's map starts over
    for (size_t i = 0; i < keydirs_.size(); ++i) group_map_[i] = db_map_[i].load(std::memory_order_relaxed);
    group_swapped_ = false;
  }
}

Status StoreImpl::CreateActiveFile(uint64_t reserve) {
  const uint64_t id = (max_file_id_ / format::kFileIdGap + 1) * format::kFileIdGap;
  const std::string path = options_.dir + "/" + format::DataFileName(id);
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno("create", path, -1, errno);
  Status s = io::SyncDir(options_.dir);
  std::shared_ptr<DataFile> file;
  if (s.ok()) {
    s = DataFile::Map(path, id, NextFileIndex(), fd, 0, reserve, &file);
  } else {
    close(fd);
  }
  if (!s.ok()) {
    unlink(path.c_str());
    return s;
  }
  // Format 2: the file starts with its header record (made durable with the first group).
  std::string header;
  format::AppendFileHeader(&header, NowMs());
  s = io::WriteAll(fd, path, 0, header.data(), header.size());
  if (!s.ok()) {
    unlink(path.c_str());
    return s;
  }
  file->set_size(header.size());
  file->dead_bytes.store(header.size(), std::memory_order_relaxed);  // never live
  files_.Add(file);
  active_ = std::move(file);
  active_id_ = id;
  max_file_id_ = id;
  write_offset_ = header.size();
  return Status::OK();
}

Status StoreImpl::Rotate(uint64_t reserve) {
  std::shared_ptr<DataFile> old = active_;
  const uint64_t old_size = write_offset_;
  if (old_size > format::kFileHeaderSize && options_.fsync != FsyncPolicy::kAlways) {  // always: every group was synced
    // Sealed files are always durable, whatever the policy: only the newest file may be torn.
    Status s = SyncData(old->fd(), old->path());
    if (!s.ok()) return FailStop(s);
    dirty_ = false;
  }
  Status s = CreateActiveFile(reserve);
  if (!s.ok()) return s;
  if (old_size <= format::kFileHeaderSize) {  // never written: drop it rather than keep an empty sealed file
    files_.Remove(old->index());
    unlink(old->path().c_str());
  } else {
    bg_cv_.notify_one();  // the background thread writes its hint file
  }
  return Status::OK();
}

std::shared_ptr<DataFile> StoreImpl::Periodic() {
  const int64_t now = NowMs();
  std::shared_ptr<DataFile> to_sync;
  if (dirty_ && options_.fsync == FsyncPolicy::kEverySec && now - last_sync_ms_ >= kEverySecIntervalMs) {
    // Everything written so far is covered by the sync the caller runs next (a failure of it
    // fail-stops the store); writes after this point set dirty_ again.
    to_sync = active_;
    dirty_ = false;
    last_sync_ms_ = now;
  }
  if (now - last_expire_ms_ >= kExpireIntervalMs) {
    last_expire_ms_ = now;
    ActiveExpireCycle();
    ExpireOwnKeys();
  }
  return to_sync;
}

void StoreImpl::DropExpired(uint8_t pdb, std::string_view key, uint64_t hash) {
  if (flushed_[pdb] || overlay_.Contains(key, OverlayHash(hash, pdb))) return;  // the pending record decides
  std::shared_ptr<DataFile> file;
  format::RecordHeader h;
  uint64_t offset = 0;
  Keydir& kd = *keydirs_[pdb];
  if (!Lookup(kd, key, hash, false, &file, &h, &offset).ok() || !Expired(h, NowMs())) return;
  const Location loc{file->index(), offset, true};
  if (kd.EraseIfAt(hash, loc)) {
    ReleaseRecord(loc);
    expired_keys_.fetch_add(1, std::memory_order_relaxed);
    if (name_expired_.load(std::memory_order_relaxed)) options_.on_expired(logical_of_[pdb], key);
  }
}

void StoreImpl::ExpireOwnKeys() {
  if (!track_own_expiries_.load(std::memory_order_relaxed)) {
    own_expiring_.clear();
    return;
  }
  const int64_t now = NowMs();
  for (auto it = own_expiring_.begin(); it != own_expiring_.end();) {
    const auto pdb = static_cast<uint8_t>((*it)[0]);
    const std::string_view key = std::string_view(*it).substr(1);
    const uint64_t hash = Hash(key);
    std::shared_ptr<DataFile> file;
    format::RecordHeader h;
    uint64_t offset = 0;
    const bool found = pdb < keydirs_.size() && Lookup(*keydirs_[pdb], key, hash, false, &file, &h, &offset).ok();
    if (found && h.expires() && !Expired(h, now)) {
      ++it;  // not yet
      continue;
    }
    if (found && h.expires()) DropExpired(pdb, key, hash);
    it = own_expiring_.erase(it);
  }
}

void StoreImpl::ActiveExpireCycle() {
  size_t expiring = 0;
  for (const auto& kd : keydirs_) expiring += kd->Expiring();
  if (expiring == 0 || !active_expire_.load(std::memory_order_relaxed) ||
      expiry_paused_.load(std::memory_order_relaxed)) {
    return;  // nothing can expire (skip the walk), or expiry is off or paused
  }
  // Like Redis's expire cycle, bounded in time: visit shards round-robin, drop keys whose record
  // has expired. No tombstone is needed: the expired record itself shadows older versions.
  const auto cycle_start = std::chrono::steady_clock::now();
  const auto deadline = cycle_start + kExpireBudget;
  const int64_t now = NowMs();
  struct CycleTimer {
    StoreImpl* self;
    std::chrono::steady_clock::time_point start;
    ~CycleTimer() {
      self->expire_cycle_us_.fetch_add(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                           std::chrono::steady_clock::now() - start).count()),
                                       std::memory_order_relaxed);
    }
  } timer{this, cycle_start};
  std::vector<std::pair<uint64_t, Location>> expired;
  // The cursor walks every shard of every database's keydir (those without expiring keys cost a
  // load each).
  const size_t total = Keydir::kShards * keydirs_.size();
  for (size_t visited = 0; visited < total; ++visited) {
    const size_t at = expire_cursor_ % total;
    expire_cursor_ = (at + 1) % total;
    const size_t pdb = at / Keydir::kShards;
    const size_t shard = at % Keydir::kShards;
    (void)ExpireShard(pdb, shard, now, false, &expired);
    if (std::chrono::steady_clock::now() >= deadline) {
      expire_time_cap_reached_.fetch_add(1, std::memory_order_relaxed);
      break;
    }
  }
}

size_t StoreImpl::ExpireShard(size_t pdb, size_t shard, int64_t now, bool exact,
                               std::vector<std::pair<uint64_t, Location>>* expired) {
  Keydir& keydir = *keydirs_[pdb];
  if (keydir.Expiring() == 0) return 0;
  expired->clear();
  // The keydir keeps each expiry (in seconds, rounded up): no record is read, so a data set
  // larger than memory costs this cycle no disk read. A key goes at most a second after its
  // exact time; reads see it absent from that exact time on (they check the record). `exact`
  // reads the records of the keys due within the current second.
  keydir.ForEachInShard(shard, [&](uint64_t hash, const Location& loc) {
    if (!loc.expires) return;
    if (int64_t{loc.expire_s} * 1000 <= now) {
      expired->emplace_back(hash, loc);
    } else if (exact && (int64_t{loc.expire_s} - 1) * 1000 < now) {
      (void)VisitRecord(loc, INT64_MIN, [&](std::string_view, int64_t at_ms) {
        if (at_ms != 0 && at_ms <= now) expired->emplace_back(hash, loc);
      });
    }
  });
  const bool name = name_expired_.load(std::memory_order_relaxed);
  size_t dropped = 0;
  for (const auto& [hash, loc] : *expired) {
    if (keydir.EraseIfAt(hash, loc)) {
      ++dropped;
      MarkDeadLater(loc);  // its size is in its header: not read here
      expired_keys_.fetch_add(1, std::memory_order_relaxed);
      // Keyspace notifications name the key: its record is read (the writer's files are never
      // retired under it); INT64_MIN visits it although expired.
      if (name) {
        VisitRecord(loc, INT64_MIN, [&](std::string_view key, int64_t) {
          options_.on_expired(logical_of_[pdb], key);
        });
      }
    }
  }
  return dropped;
}

uint64_t StoreImpl::ExpireAllDue() {
  std::lock_guard role(role_mu_);
  const int64_t now = NowMs();
  std::vector<std::pair<uint64_t, Location>> expired;
  uint64_t dropped = 0;
  for (size_t pdb = 0; pdb < keydirs_.size(); ++pdb) {
    for (size_t shard = 0; shard < Keydir::kShards; ++shard) dropped += ExpireShard(pdb, shard, now, true, &expired);
  }
  return dropped;
}

Stats StoreImpl::GetStats() const {
  Stats st;
  for (const auto& kd : keydirs_) {
    st.keys += kd->Size();
    st.keydir_bytes += kd->MemoryBytes();
  }
  {
    std::shared_lock lock(collections_mu_);
    st.collections = collections_.size();
    for (const auto& [inc, coll] : collections_) {
      st.collection_elements += coll->Size();
      st.collection_index_bytes += coll->MemoryBytes() + sizeof(Collection);
    }
  }
  for (const auto& file : files_.Snapshot()) {
    ++st.data_files;
    st.total_bytes += file->size();
    // At most the file's size: a FLUSHALL sets it to the size while late additions may still come.
    st.dead_bytes += std::min(file->dead_bytes.load(std::memory_order_relaxed), file->size());
  }
  st.compactions = compactions_.load();
  st.compaction_bytes_reclaimed = compaction_reclaimed_.load();
  st.last_compaction_ms = last_compaction_ms_.load();
  st.expired_keys = expired_keys_.load();
  st.bytes_written = bytes_written_.load(std::memory_order_relaxed);
  st.groups = groups_.load(std::memory_order_relaxed);
  st.group_records = group_records_.load(std::memory_order_relaxed);
  st.group_size = group_size_.Snapshot();
  st.fsync_usec = fsync_usec_.Snapshot();
  {
    std::lock_guard lock(queue_mu_);
    st.writer_queue = queue_.size();
  }
  st.compaction_bytes_read = compaction_bytes_read_.load(std::memory_order_relaxed);
  st.compaction_bytes_written = compaction_bytes_written_.load(std::memory_order_relaxed);
  st.compaction_total_ms = compaction_total_ms_.load(std::memory_order_relaxed);
  st.compaction_failures = compaction_failures_.load(std::memory_order_relaxed);
  st.compaction_rounds = compaction_rounds_.load(std::memory_order_relaxed);
  {
    std::lock_guard lock(compaction_error_mu_);
    st.compaction_error = compaction_error_;
  }
  st.recovery_ms = recovery_ms_.load(std::memory_order_relaxed);
  st.recovery_records = recovery_records_.load(std::memory_order_relaxed);
  st.recovery_hint_files = recovery_hint_files_.load(std::memory_order_relaxed);
  const uint64_t active = active_id_.load(std::memory_order_relaxed);
  for (const auto& file : files_.Snapshot()) {
    if (file->id() == active) continue;
    ++st.sealed_files;
    if (file->has_hint.load(std::memory_order_relaxed)) ++st.hint_files;
  }
  st.expire_cycle_us = expire_cycle_us_.load(std::memory_order_relaxed);
  st.expire_time_cap_reached = expire_time_cap_reached_.load(std::memory_order_relaxed);
  std::lock_guard lock(failed_mu_);
  st.writes_failed = !failed_.ok();
  st.write_error = failed_.message();
  st.last_write_failed = !last_write_error_.ok();
  st.last_write_error = last_write_error_.ToString();
  return st;
}

}  // namespace keg::store
