// The replication stream (replication.h): a list of blocks holding the stream's bytes, shared by
// the backlog and every replica's unsent part (as Redis 7's shared replication buffer), trimmed
// once a block is both older than the backlog's size and sent to every replica.
#include "server/replication.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <cctype>
#include <cstring>
#include <fstream>
#include <random>

#include <spdlog/spdlog.h>

#include "resp/numbers.h"
#include "server/stats_clock.h"
#include "store/io.h"

namespace keg::server {

std::string RandomHex40() {
  std::random_device rd;
  std::mt19937_64 rng((uint64_t{rd()} << 32) ^ rd());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(40, '0');
  for (char& ch : id) ch = kHex[rng() & 15];
  return id;
}

namespace {

constexpr size_t kBlockBytes = size_t{16} << 10;  // Redis's PROTO_REPLY_CHUNK_BYTES

}  // namespace

void AppendCommand(std::string* out, std::span<const std::string_view> args) {
  out->push_back('*');
  out->append(std::to_string(args.size()));
  out->append("\r\n");
  for (std::string_view a : args) {
    out->push_back('$');
    out->append(std::to_string(a.size()));
    out->append("\r\n");
    out->append(a);
    out->append("\r\n");
  }
}

void AppendCommand(std::string* out, std::initializer_list<std::string_view> args) {
  AppendCommand(out, std::span<const std::string_view>(args.begin(), args.size()));
}

ReplicationFeed::ReplicationFeed() : replid_(RandomHex40()) {}

std::string ReplicationFeed::replid() const {
  Guard lock(*this);
  return replid_;
}

std::string ReplicationFeed::replid2() const {
  Guard lock(*this);
  return replid2_;
}

int64_t ReplicationFeed::second_offset() const {
  Guard lock(*this);
  return second_offset_;
}

void ReplicationFeed::StartHistory(std::string replid, uint64_t offset) {
  std::vector<std::shared_ptr<Replica>> dropped;
  {
    Guard lock(*this);
    replid_ = std::move(replid);
    replid2_ = std::string(40, '0');
    second_offset_ = -1;
    blocks_.clear();
    end_.store(offset, std::memory_order_release);
    last_db_ = kNoDb;
    stream_db_ = 0;
    dropped.swap(replicas_);
  }
  for (const auto& r : dropped) {
    if (std::shared_ptr<net::Link> link = r->link.lock()) link->Post([link] { link->CloseNow(); });
  }
}

void ReplicationFeed::ShiftHistoryLocked(std::string replid) {
  replid2_ = std::move(replid_);
  second_offset_ = static_cast<int64_t>(end_.load(std::memory_order_relaxed)) + 1;
  replid_ = std::move(replid);
  // The replicas of this server learn the new id by reconnecting: their PSYNC of the old one
  // continues (+CONTINUE <new id>), as Redis's shiftReplicationId and disconnectSlaves.
  for (const auto& r : replicas_) {
    if (std::shared_ptr<net::Link> link = r->link.lock()) {
      link->Post([link] { link->CloseNow(); });
      keep_.push_back(std::move(link));  // released after mu_ (Guard)
    }
  }
}

void ReplicationFeed::ForgetHistory() { StartHistory(RandomHex40(), 0); }

void ReplicationFeed::Restore(const SavedHistory& h, bool replica) {
  StartHistory(h.replid, h.offset);
  {
    Guard lock(*this);
    stream_db_ = h.db;
    if (!replica) ShiftHistoryLocked(RandomHex40());
  }
  Activate();
}

SavedHistory ReplicationFeed::Current() const {
  Guard lock(*this);
  return SavedHistory{replid_, end_.load(std::memory_order_relaxed), stream_db_};
}

std::string SaveHistory(const std::string& path, const SavedHistory& h) {
  const std::string text = "replid " + h.replid + "\noffset " + std::to_string(h.offset) + "\ndb " + std::to_string(h.db) + "\n";
  const store::Status s = store::io::ReplaceFile(path, text);
  return s.ok() ? "" : s.ToString();
}

std::string TakeHistory(const std::string& path, SavedHistory* h, bool* found) {
  *found = false;
  std::ifstream in(path);
  if (!in) return "";
  std::string key;
  std::string value;
  bool id = false;
  bool off = false;
  bool db = false;
  while (in >> key >> value) {
    int64_t n = 0;
    if (key == "replid" && value.size() == 40 &&
        std::all_of(value.begin(), value.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); })) {
      h->replid = value;
      id = true;
    } else if (key == "offset" && resp::ParseInt64(value, &n) && n >= 0) {
      h->offset = static_cast<uint64_t>(n);
      off = true;
    } else if (key == "db" && resp::ParseInt64(value, &n) && n >= 0 && n <= UINT32_MAX) {
      h->db = static_cast<uint32_t>(n);
      db = true;
    }
  }
  in.close();
  // Gone before the first write: from here on the data set moves past it.
  if (const store::Status s = store::io::RemoveFile(path); !s.ok()) return s.ToString();
  if (!id || !off || !db) {
    spdlog::warn("replication: {} does not parse; ignored (a full sync will follow)", path);
    return "";
  }
  *found = true;
  return "";
}

void ReplicationFeed::ContinueAs(std::string replid) {
  Guard lock(*this);
  if (replid == replid_) return;
  ShiftHistoryLocked(std::move(replid));
}

void ReplicationFeed::Promote() {
  Guard lock(*this);
  ShiftHistoryLocked(RandomHex40());
  last_db_ = kNoDb;  // the primary's last SELECT is not known here
  forwarding_.store(false, std::memory_order_relaxed);
}

uint32_t ReplicationFeed::stream_db() const {
  Guard lock(*this);
  return stream_db_;
}

void ReplicationFeed::Forward(std::string_view bytes, uint32_t selects) {
  Guard lock(*this);
  if (selects != kNoDb) stream_db_ = selects;
  AppendLocked(bytes);
  TrimLocked();
  WakeLocked();
}

void ReplicationFeed::set_backlog_size(uint64_t bytes) {
  backlog_size_.store(std::max<uint64_t>(bytes, 16 * 1024), std::memory_order_relaxed);
  Guard lock(*this);
  TrimLocked();
}

uint64_t ReplicationFeed::buffer_bytes() const { return live_bytes_->load(std::memory_order_relaxed); }

void ReplicationFeed::Activate() {
  Guard lock(*this);
  if (active_.load(std::memory_order_relaxed)) return;
  active_.store(true, std::memory_order_release);
  StartTimerLocked();
  spdlog::info("replication: backlog created ({} bytes), replication id {}", backlog_size(), replid_);
}

void ReplicationFeed::StartTimerLocked() {
  if (timer_.joinable()) return;
  timer_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "keg-repl");
    TimerLoop();
  });
}

void ReplicationFeed::AppendLocked(std::string_view bytes) {
  while (!bytes.empty()) {
    if (blocks_.empty() || blocks_.back()->size == blocks_.back()->cap) {
      auto b = std::make_shared<Block>(live_bytes_, std::max(kBlockBytes, std::min(bytes.size(), size_t{16} << 20)));
      b->start = end_.load(std::memory_order_relaxed);
      blocks_.push_back(std::move(b));
    }
    Block& b = *blocks_.back();
    const size_t n = std::min(bytes.size(), b.cap - b.size);
    std::memcpy(b.bytes.get() + b.size, bytes.data(), n);
    b.size += n;
    end_.store(end_.load(std::memory_order_relaxed) + n, std::memory_order_release);
    bytes.remove_prefix(n);
  }
}

void ReplicationFeed::set_limits(uint64_t hard, uint64_t soft, int64_t soft_seconds) {
  hard_limit_.store(hard, std::memory_order_relaxed);
  soft_limit_.store(soft, std::memory_order_relaxed);
  soft_seconds_.store(soft_seconds, std::memory_order_relaxed);
}

void ReplicationFeed::DropOverLimitLocked() {
  const uint64_t hard = hard_limit_.load(std::memory_order_relaxed);
  const uint64_t soft = soft_limit_.load(std::memory_order_relaxed);
  const uint64_t end = end_.load(std::memory_order_relaxed);
  int64_t now = 0;
  for (auto it = replicas_.begin(); it != replicas_.end();) {
    Replica& r = **it;
    const uint64_t held = end - r.sent;  // (a streaming replica's connection holds its part)
    bool over = false;
    if (!r.streaming) {
      over = hard > 0 && held > hard;
      if (!over && soft > 0 && held > soft) {
        if (now == 0) now = MonoMs();
        if (r.soft_since_ms == 0) r.soft_since_ms = now;
        // (Seconds compared as seconds: a hostile CONFIG SET value times 1000 would overflow.)
        over = (now - r.soft_since_ms) / 1000 >= soft_seconds_.load(std::memory_order_relaxed);
      } else if (soft == 0 || held <= soft) {
        r.soft_since_ms = 0;
      }
    }
    if (!over) {
      ++it;
      continue;
    }
    spdlog::warn("replication: replica {}:{} scheduled to be closed for overcoming of output buffer limits ({} bytes "
                 "of the stream held for it while its snapshot is built or loaded)",
                 r.ip, r.port, held);
    if (std::shared_ptr<net::Link> link = r.link.lock()) {
      link->Post([link] { link->CloseNow(); });
      keep_.push_back(std::move(link));  // released after mu_ (Guard)
    }
    it = replicas_.erase(it);
  }
}

uint64_t ReplicationFeed::NeededFromLocked(uint64_t end) const {
  const uint64_t size = backlog_size();
  uint64_t needed = end > size ? end - size : 0;
  for (const auto& r : replicas_) needed = std::min(needed, r->sent);
  return needed;
}

void ReplicationFeed::TrimLocked() {
  DropOverLimitLocked();
  const uint64_t needed = NeededFromLocked(end_.load(std::memory_order_relaxed));
  while (blocks_.size() > 1 && blocks_.front()->start + blocks_.front()->size <= needed) blocks_.pop_front();
}

uint64_t ReplicationFeed::FirstLocked(uint64_t end) const {
  if (blocks_.empty()) return end;
  // The blocks are whole 16 KiB pieces; the backlog is, to the byte, what they are kept for: the
  // last repl-backlog-size bytes, and what a replica still needs (Redis's backlog outgrows its
  // size for a slow replica too, and a PSYNC may continue from there).
  return std::max(blocks_.front()->start, NeededFromLocked(end));
}

void ReplicationFeed::WakeLocked() {
  for (const auto& r : replicas_) {
    if (!r->streaming || r->posted) continue;
    std::shared_ptr<net::Link> link = r->link.lock();
    if (!link) continue;
    r->posted = true;
    link->PostIdle([this, r] { Send(r); });  // after the groups the loop's batch completes
    keep_.push_back(std::move(link));  // released after mu_ (Guard)
  }
}

void ReplicationFeed::Send(const std::shared_ptr<Replica>& r) {
  std::shared_ptr<net::Link> link = r->link.lock();
  if (!link) return;
  struct Slice {
    std::shared_ptr<Block> block;
    size_t from, to;
  };
  std::vector<Slice> slices;
  {
    Guard lock(*this);
    r->posted = false;
    const uint64_t end = end_.load(std::memory_order_relaxed);
    for (const auto& b : blocks_) {
      const uint64_t b_end = b->start + b->size;
      if (b_end <= r->sent || b->start >= end) continue;
      const size_t from = static_cast<size_t>(std::max(r->sent, b->start) - b->start);
      slices.push_back({b, from, b->size});
    }
    r->sent = end;
    TrimLocked();
  }
  for (const Slice& s : slices) {
    link->out().Raw(std::string_view(s.block->bytes.get() + s.from, s.to - s.from), s.block);
  }
  link->Flush();
}

void ReplicationFeed::SelectLocked(uint32_t db) {
  if (db == kNoDb || db == last_db_) return;
  std::string select;
  const std::string n = std::to_string(db);
  AppendCommand(&select, {"SELECT", n});
  AppendLocked(select);
  last_db_ = db;
  stream_db_ = db;
}

void ReplicationFeed::Append(uint32_t db, std::string_view commands) {
  if (forwarding()) return;  // a replica's stream is its primary's, byte for byte (see AppendBatch)
  Guard lock(*this);
  SelectLocked(db);
  AppendLocked(commands);
  TrimLocked();
  WakeLocked();
}

void ReplicationFeed::AppendBatch(std::span<Propagation> props, std::span<const store::OpResult> results,
                                  bool transaction) {
  std::vector<PropagatedCommand> cmds;
  std::vector<PropagatedCommand> one;
  // Each command's propagation, and where a command of its own propagates several (a script's
  // effects, SPOP's), the bounds of its MULTI ... EXEC.
  std::vector<std::pair<size_t, size_t>> groups;
  for (Propagation& p : props) {
    std::span<const store::OpResult> mine;
    if (p.first_op + p.op_count <= results.size()) mine = results.subspan(p.first_op, p.op_count);
    const bool applied = std::any_of(mine.begin(), mine.end(), [](const store::OpResult& r) { return r.applied; });
    if (!applied && !p.always) continue;
    const size_t begin = cmds.size();
    if (p.late) {
      one.clear();
      p.late(mine, &one);
      for (PropagatedCommand& c : one) cmds.push_back(std::move(c));
    } else {
      cmds.push_back(std::move(p.command));
    }
    if (p.transaction && cmds.size() - begin > 1) groups.emplace_back(begin, cmds.size());
  }
  if (cmds.empty()) return;
  Guard lock(*this);
  WriteLocked(cmds, groups, transaction && cmds.size() > 1);
}

void ReplicationFeed::AppendCommands(std::vector<PropagatedCommand> cmds) {
  if (cmds.empty() || forwarding()) return;
  std::vector<std::pair<size_t, size_t>> groups;
  Guard lock(*this);
  WriteLocked(cmds, groups, false);
}

void ReplicationFeed::WriteLocked(const std::vector<PropagatedCommand>& cmds,
                                  const std::vector<std::pair<size_t, size_t>>& groups, bool wrap_all) {
  static const std::string kMulti = "*1\r\n$5\r\nMULTI\r\n";
  static const std::string kExec = "*1\r\n$4\r\nEXEC\r\n";
  auto put = [&](const PropagatedCommand& c) {
    SelectLocked(c.db);
    if (c.selects != kNoDb) stream_db_ = c.selects;
    AppendLocked(c.resp);
  };
  // The SELECT of a transaction's first command goes before its MULTI, as Redis writes it.
  if (wrap_all) {
    SelectLocked(cmds.front().db);
    AppendLocked(kMulti);
  }
  size_t g = 0;
  for (size_t i = 0; i < cmds.size(); ++i) {
    if (!wrap_all && g < groups.size() && groups[g].first == i) {
      SelectLocked(cmds[i].db);
      AppendLocked(kMulti);
    }
    put(cmds[i]);
    if (!wrap_all && g < groups.size() && groups[g].second == i + 1) {
      AppendLocked(kExec);
      ++g;
    }
  }
  if (wrap_all) AppendLocked(kExec);
  TrimLocked();
  WakeLocked();
}

uint64_t ReplicationFeed::MarkSnapshot() {
  Guard lock(*this);
  last_db_ = kNoDb;
  return end_.load(std::memory_order_relaxed);
}

namespace {

std::shared_ptr<Replica> MakeReplica(uint64_t client_id, std::shared_ptr<net::Link> link, std::string ip, int64_t port,
                                     uint64_t from) {
  auto r = std::make_shared<Replica>();
  r->client_id = client_id;
  r->link = link;
  r->ip = std::move(ip);
  r->port = port;
  r->sent = from;  // (acked stays 0 until its first REPLCONF ACK, as Redis's repl_ack_off)
  return r;
}

}  // namespace

std::shared_ptr<Replica> ReplicationFeed::Add(uint64_t client_id, std::shared_ptr<net::Link> link, std::string ip,
                                              int64_t port, uint64_t from) {
  auto r = MakeReplica(client_id, std::move(link), std::move(ip), port, from);
  Guard lock(*this);
  replicas_.push_back(r);
  return r;
}

void ReplicationFeed::Online(const std::shared_ptr<Replica>& r, bool stream) {
  Guard lock(*this);
  r->online = true;
  r->ack_ms = MonoMs();  // its lag counts from here until its first ack (Redis's replicaPutOnline)
  r->streaming = stream;
  if (stream) WakeLocked();
}

void ReplicationFeed::StartStream(const std::shared_ptr<Replica>& r) {
  Guard lock(*this);
  r->streaming = true;
  WakeLocked();
}

void ReplicationFeed::Remove(const Replica* r) {
  Guard lock(*this);
  std::erase_if(replicas_, [r](const std::shared_ptr<Replica>& x) { return x.get() == r; });
  TrimLocked();
}

void ReplicationFeed::RemoveClient(uint64_t client_id) {
  Guard lock(*this);
  std::erase_if(replicas_, [client_id](const std::shared_ptr<Replica>& x) { return x->client_id == client_id; });
  TrimLocked();
}

bool ReplicationFeed::Holds(const Replica* r) {
  Guard lock(*this);
  return std::any_of(replicas_.begin(), replicas_.end(), [r](const std::shared_ptr<Replica>& x) { return x.get() == r; });
}

std::shared_ptr<Replica> ReplicationFeed::TryContinue(std::string_view replid, uint64_t offset, uint64_t client_id,
                                                      std::shared_ptr<net::Link> link, std::string ip, int64_t port) {
  if (!active()) return nullptr;
  Guard lock(*this);
  const uint64_t end = end_.load(std::memory_order_relaxed);
  const uint64_t first = FirstLocked(end);
  // This history, or the one before a promotion up to where it ended (PSYNC's offsets count from
  // 1: second_offset_ is the first one the old history does not have).
  const bool ours = replid == replid_ ||
                    (replid == replid2_ && static_cast<int64_t>(offset) + 1 <= second_offset_);
  if (!ours || offset < first || offset > end) return nullptr;
  auto r = MakeReplica(client_id, std::move(link), std::move(ip), port, offset);
  replicas_.push_back(r);
  return r;
}

void ReplicationFeed::Ack(Replica& r, uint64_t offset, int64_t now_ms) {
  std::vector<std::function<void(WaitEnd)>> fire;
  {
    Guard lock(*this);
    r.acked = std::max(r.acked, offset);
    r.ack_ms = now_ms;
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      // (A waiter whose client went is dropped by the timer.)
      if (CountAckedLocked(it->offset) >= it->count) {
        fire.push_back(std::move(it->fn));
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& fn : fire) fn(WaitEnd::kCount);
}

void ReplicationFeed::Heard(Replica& r, int64_t now_ms) {
  Guard lock(*this);
  r.ack_ms = std::max(r.ack_ms, now_ms);
}

void ReplicationFeed::DropSilentLocked(int64_t now_ms) {
  const int64_t timeout_s = timeout_s_.load(std::memory_order_relaxed);
  for (auto it = replicas_.begin(); it != replicas_.end();) {
    Replica& r = **it;
    // (Whole seconds compared, as Redis: a huge repl-timeout times 1000 would overflow.)
    if (!r.online || (now_ms - r.ack_ms) / 1000 <= timeout_s) {
      ++it;
      continue;
    }
    spdlog::warn("replication: Disconnecting timedout replica (streaming sync): {}:{} (nothing heard for {} s)", r.ip,
                 r.port, (now_ms - r.ack_ms) / 1000);
    if (std::shared_ptr<net::Link> link = r.link.lock()) {
      link->Post([link] { link->CloseNow(); });
      keep_.push_back(std::move(link));  // released after mu_ (Guard)
    }
    it = replicas_.erase(it);
  }
}

size_t ReplicationFeed::CountAckedLocked(uint64_t offset) const {
  size_t n = 0;
  for (const auto& r : replicas_) n += r->online && r->acked >= offset ? size_t{1} : size_t{0};
  return n;
}

size_t ReplicationFeed::CountAcked(uint64_t offset) const {
  Guard lock(*this);
  return CountAckedLocked(offset);
}

size_t ReplicationFeed::GoodReplicas(int64_t max_lag_s, int64_t now_ms) const {
  Guard lock(*this);
  size_t n = 0;
  for (const auto& r : replicas_) n += r->online && (now_ms - r->ack_ms) / 1000 <= max_lag_s ? size_t{1} : size_t{0};
  return n;
}

size_t ReplicationFeed::replica_count() const {
  Guard lock(*this);
  return replicas_.size();
}

std::vector<Replica> ReplicationFeed::Replicas() const {
  Guard lock(*this);
  std::vector<Replica> out;
  for (const auto& r : replicas_) {
    out.push_back(*r);
  }
  return out;
}

std::pair<uint64_t, uint64_t> ReplicationFeed::BacklogRange() const {
  Guard lock(*this);
  const uint64_t end = end_.load(std::memory_order_relaxed);
  const uint64_t first = FirstLocked(end);
  return {first + 1, end - first};
}

void ReplicationFeed::OnAcked(uint64_t offset, size_t count, int64_t deadline_ms, std::weak_ptr<net::Link> link,
                              uint64_t client_id, std::function<void(WaitEnd)> fn) {
  {
    Guard lock(*this);
    // A WAIT that passed its replica check while this server was a primary and registers after
    // REPLICAOF made it a replica: UnblockAll ran before this lock, so it ends here as it would have.
    if (!forwarding()) {
      waiters_.push_back(Waiter{offset, count, deadline_ms, std::move(link), client_id, std::move(fn)});
      StartTimerLocked();  // a WAIT with no replica ever attached still times out
      cv_.notify_all();
      return;
    }
  }
  fn(WaitEnd::kRoleChange);
}

bool ReplicationFeed::Unblock(uint64_t client_id, bool error) {
  std::function<void(WaitEnd)> fn;
  {
    Guard lock(*this);
    for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
      if (it->client_id != client_id || it->link.expired()) continue;
      fn = std::move(it->fn);
      waiters_.erase(it);
      break;
    }
  }
  if (!fn) return false;
  fn(error ? WaitEnd::kUnblockError : WaitEnd::kCount);
  return true;
}

void ReplicationFeed::UnblockAll() {
  std::vector<Waiter> all;
  {
    Guard lock(*this);
    all.swap(waiters_);
  }
  for (Waiter& w : all) {
    if (!w.link.expired()) w.fn(WaitEnd::kRoleChange);
  }
}

size_t ReplicationFeed::waiting() const {
  Guard lock(*this);
  return waiters_.size();
}

void ReplicationFeed::RequestAcks() {
  static const std::string kGetack = "*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n";
  Append(kNoDb, kGetack);
}

ReplicationFeed::~ReplicationFeed() {
  {
    Guard lock(*this);
    stop_ = true;
  }
  cv_.notify_all();
  if (timer_.joinable()) timer_.join();
}

void ReplicationFeed::TimerLoop() {
  using Clock = std::chrono::steady_clock;
  auto last_ping = Clock::now();
  int64_t alone_since_ms = MonoMs();  // repl-backlog-ttl: since when no replica is attached
  bool dropped_backlog = false;       // ... and whether that made a new history already
  std::unique_lock lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::milliseconds(100));
    if (stop_) break;
    const int64_t now = MonoMs();
    DropSilentLocked(now);
    const int64_t ttl = backlog_ttl_s_.load(std::memory_order_relaxed);
    if (!replicas_.empty() || forwarding()) {
      alone_since_ms = now;
      dropped_backlog = false;
    } else if (ttl > 0 && !dropped_backlog && now - alone_since_ms > (ttl > INT64_MAX / 1000 ? INT64_MAX : ttl * 1000)) {
      dropped_backlog = true;
      replid_ = RandomHex40();
      replid2_ = std::string(40, '0');
      second_offset_ = -1;
      blocks_.clear();  // the stream goes on at the same offset, in the new history
      spdlog::info("Replication backlog freed after {} seconds without connected replicas.", ttl);
    }
    std::vector<std::function<void(WaitEnd)>> fire;
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if ((it->deadline_ms != 0 && now >= it->deadline_ms) || it->link.expired()) {
        fire.push_back(std::move(it->fn));
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
    // On the ticks of repl-ping-replica-period since the start, as Redis's cron (not the moment a
    // replica attaches after a quiet spell: a replica that comes and goes between two ticks moves
    // no offset).
    const int64_t period = ping_period_s_.load(std::memory_order_relaxed);
    const bool tick = period > 0 && Clock::now() - last_ping >= std::chrono::seconds(period);
    if (tick) last_ping = Clock::now();
    const bool ping = tick && !replicas_.empty() && !forwarding() && !pings_paused_.load(std::memory_order_relaxed);
    std::vector<std::shared_ptr<net::Link>> release;  // (as Guard: links let go with mu_ free)
    release.swap(keep_);
    lock.unlock();
    release.clear();
    for (auto& fn : fire) fn(WaitEnd::kCount);
    if (ping) {
      static const std::string kPing = "*1\r\n$4\r\nPING\r\n";
      Append(kNoDb, kPing);
    }
    lock.lock();
  }
}

}  // namespace keg::server
