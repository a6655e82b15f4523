// Redis's replication protocol, the primary's commands (issue 19; docs/server.md,
// "Replication"): SYNC / PSYNC (a full sync: the RDB snapshot, then the stream; or a partial
// resync from the backlog), REPLCONF, ROLE and WAIT. The stream itself is replication.h's.
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "resp/numbers.h"
#include "server/command.h"
#include "server/rdb.h"
#include "server/replication.h"
#include "server/scripting.h"
#include "server/session.h"
#include "server/small_collection.h"
#include "server/state.h"
#include "server/stats_clock.h"
#include "store/format.h"
#include "store/io.h"

namespace keg::server {

namespace {

// The snapshot's threads (the job building it, a sender per replica) run below the I/O threads and
// the writer: nice 10, and a scheduler slice of 100 µs (Linux 6.12+ takes a SCHED_OTHER thread's
// sched_runtime as its slice; earlier kernels ignore it). Under EEVDF a running thread keeps its
// CPU for its slice (RUN_TO_PARITY, 0.75 ms by default) before a woken one with an earlier deadline
// takes it: an I/O thread woken by a request — or the client itself, on a shared core — waited up
// to that long behind the snapshot at any nice value. Also names the thread (top, perf). Thread:
// the calling one.
void RunBelowClients(const char* name) {
  (void)pthread_setname_np(pthread_self(), name);
  (void)setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 10);
  struct {  // the kernel's struct sched_attr, SCHED_ATTR_SIZE_VER0 (<linux/sched/types.h> clashes with glibc's)
    uint32_t size;
    uint32_t sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime;
    uint64_t sched_deadline;
    uint64_t sched_period;
  } attr{};
  static_assert(sizeof(attr) == 48);
  attr.size = sizeof(attr);
  attr.sched_policy = SCHED_OTHER;
  attr.sched_nice = 10;
  attr.sched_runtime = 100'000;
  (void)syscall(SYS_sched_setattr, 0, &attr, 0);
}

using store::format::kKindHead;
using store::format::kTypeHash;
using store::format::kTypeList;
using store::format::kTypeSet;
using store::format::kTypeString;
using store::format::kTypeZset;

// The DUMP payload of one snapshot item; false when its record does not decode.
bool PayloadOf(const store::SnapshotItem& item, std::string* out) {
  const uint8_t type = item.value.type;
  if (type == kTypeString) {
    *out = rdb::DumpString(item.value.value);
    return true;
  }
  // The elements, flat: a hash's field and value, a sorted set's member and 8-byte score, a set's
  // member, a list's element (in order).
  std::vector<std::string_view> flat;
  coll::View whole;
  if (item.value.kind == kKindHead) {
    const bool pairs = type == kTypeHash || type == kTypeZset;
    flat.reserve(item.elements.size() * (pairs ? 2 : 1));
    for (const store::ElementView& e : item.elements) {
      flat.push_back(type == kTypeList ? e.value : e.member);
      if (pairs) flat.push_back(e.value);
    }
  } else {
    if (!coll::Decode(item.value.value, &whole)) return false;
    flat = std::move(whole.elements);
  }
  switch (type) {
    case kTypeHash:
      if (flat.size() % 2 != 0) return false;
      *out = rdb::DumpHash(flat);
      return true;
    case kTypeSet:
      *out = rdb::DumpSet(flat);
      return true;
    case kTypeList:
      *out = rdb::DumpList(flat);
      return true;
    case kTypeZset: {
      if (flat.size() % 2 != 0) return false;
      std::vector<std::pair<std::string, double>> items;
      items.reserve(flat.size() / 2);
      for (size_t i = 0; i < flat.size(); i += 2) {
        double score = 0;
        if (!store::format::DecodeScore(flat[i + 1], &score)) return false;
        items.emplace_back(std::string(flat[i]), score);
      }
      *out = rdb::DumpZset(items);
      return true;
    }
    default:
      return false;
  }
}

// REPLCONF option value [option value ...]: what a replica (or redis-cli) tells about itself, and
// ACK, with which a replica reports the offset it applied (no reply, as Redis).
void Replconf(Ctx& c) {
  if (c.argc() % 2 == 0) return c.Error(err::kSyntax);
  for (size_t j = 1; j + 1 < c.argc(); j += 2) {
    const std::string option = ToLower(c.arg(j));
    int64_t v = 0;
    if (option == "ack" || option == "fack") {
      // A replica's ack: never answered. From a connection that is not a replica it means
      // nothing (Redis ignores it too).
      if (!resp::ParseInt64(c.arg(j + 1), &v) || v < 0) return;
      if (option == "ack") {
        if (const std::shared_ptr<Replica>& r = c.client().replica_shared()) {
          if (c.client().TakeStreamOnAck()) c.server().repl.StartStream(r);  // loaded its diskless snapshot
          c.server().repl.Ack(*r, static_cast<uint64_t>(v), MonoMs());
        }
      }
      return;
    }
    if (option == "getack") {
      // The primary asks this replica for its offset now (WAIT); no other connection is answered.
      if (c.client().master_link()) c.client().SendAck();
      return;
    }
    if (option == "rdb-only") {
      if (!resp::ParseInt64(c.arg(j + 1), &v)) return c.Error(err::kNotInteger);
      if (v != 0 && v != 1) return c.Error("value is out of range, value must between 0 and 1");
      c.client().set_rdb_only(v == 1);
    } else if (option == "listening-port") {
      if (!resp::ParseInt64(c.arg(j + 1), &v)) return c.Error(err::kNotInteger);
      c.client().set_replica_listening_port(v);
    } else if (option == "ip-address") {
      // Redis's limit (NET_HOST_STR_LEN) and text.
      if (c.arg(j + 1).size() >= 256) {
        return c.Error("REPLCONF ip-address provided by replica instance is too long: " +
                       std::to_string(c.arg(j + 1).size()) + " bytes");
      }
      c.client().set_replica_announced_ip(std::string(c.arg(j + 1)));
    } else if (option == "capa") {
      // eof: the snapshot may come in the diskless framing, built as it is sent (SyncCommand).
      if (EqualsIgnoreCase(c.arg(j + 1), "eof")) c.client().set_capa_eof();
    } else if (option == "rdb-filter-only") {
    } else {
      return c.Error("Unrecognized REPLCONF option: " + std::string(c.arg(j)));
    }
  }
  c.out().Ok();
}

// The peer's address without the port ("127.0.0.1" of "127.0.0.1:5000").
std::string PeerIp(const std::string& peer) {
  const size_t colon = peer.rfind(':');
  std::string ip = colon == std::string::npos ? peer : peer.substr(0, colon);
  if (ip.size() >= 2 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);
  return ip;
}

// The address a replica is listed under: the one it announced (REPLCONF ip-address), else the
// connection's.
std::string ReplicaIp(const ClientSession& client) {
  return client.replica_announced_ip().empty() ? PeerIp(client.peer()) : client.replica_announced_ip();
}

}  // namespace

// A replica (or redis-cli --rdb) a diskless snapshot is for.
struct SnapshotTarget {
  ClientSession* client = nullptr;
  std::shared_ptr<net::Link> keep;  // holds the link, and so `client`
  bool psync = false;
  bool rdb_only = false;
};

// Replicas whose diskless full sync waits to start (repl-diskless-sync-delay): one snapshot for all.
struct PendingSync {
  std::vector<SnapshotTarget> targets;  // under ServerState::pending_sync_mu
  std::condition_variable cv;           // repl-diskless-sync-max-replicas joined
};

namespace {

// A newline to a replica whose full sync is being prepared, as Redis's primaries send each second
// (replicationCron): the replica counts it as heard from, so its repl-timeout does not expire
// meanwhile. Posted to the link's I/O thread: a primary whose loop is blocked (DEBUG SLEEP) sends
// none, as Redis's. Only while nothing else is being written to the link.
void SendKeepalive(const SnapshotTarget& t) {
  t.keep->Post([client = t.client] {
    if (client->link().closed()) return;
    client->link().out().Raw("\n");
    client->link().Flush();
  });
}

// A full sync's snapshot in the diskless framing, as redis-server's repl-diskless-sync sends it to
// replicas that declared `capa eof`: `$EOF:<40 random characters>`, the RDB, the same 40
// characters. One snapshot serves every target (the replicas that asked within
// repl-diskless-sync-delay): each gets the same pieces and the same offset. The file goes in 1 MiB
// pieces as it is built (WriteRdbSnapshot's drain), written to each socket by a sender thread of
// this job's per target (a dup of the link's descriptor, once the I/O thread sent the first line):
// the I/O threads, which serve other clients, do none of that work, and the primary holds at most
// 8 pieces of the file. The slowest target paces the build (as Redis's); one that hangs up, or
// reads nothing for repl-timeout, is dropped and the others go on. Meanwhile a target's link writes
// nothing (its command has not finished); the end mark goes through it again. Runs on a
// background job; each link's own work is posted to its I/O thread (`keep` holds it, and so
// `client`).
void StreamSnapshot(ServerState* server, const std::vector<SnapshotTarget>& targets) {
  constexpr size_t kCheckEvery = size_t{4} << 20;
  constexpr size_t kQueued = 8;
  const std::string mark = RandomHex40();
  int64_t timeout_s = 60;
  {
    std::lock_guard lock(server->config_mu);
    timeout_s = server->config.repl_timeout;
  }
  // What the I/O thread says of a link: how much of its output is unsent, whether it closed, and
  // (once asked for, with nothing unsent) a duplicate of its descriptor.
  struct Flow {
    std::mutex mu;
    std::condition_variable cv;
    uint64_t asked = 0;
    uint64_t answered = 0;
    size_t unsent = 0;
    bool closed = false;
    int fd = -1;
  };
  using Piece = std::shared_ptr<const std::string>;
  // One target's state. `q` is shared with its sender thread (under q.mu); the rest is this
  // thread's.
  struct Target {
    SnapshotTarget t;
    std::shared_ptr<Flow> flow = std::make_shared<Flow>();
    std::shared_ptr<Replica> replica;
    bool started = false;  // the framing's first line is on its way
    bool dead = false;     // dropped: gets no more pieces
    int fd = -1;           // this job's descriptor of the socket, once the first line was sent
    std::thread sender;
    struct Queue {
      std::mutex mu;
      std::condition_variable cv;
      std::deque<Piece> pieces;  // at most kQueued
      bool done = false;    // no more pieces (or abandon them: abort)
      bool abort = false;
      bool failed = false;  // the sender gave up: the replica hung up, or did not read
    } q;
  };
  std::vector<std::unique_ptr<Target>> all;
  for (const SnapshotTarget& t : targets) {
    all.push_back(std::make_unique<Target>());
    all.back()->t = t;
  }
  auto give_up = [&](Target& x, std::string_view why) {
    spdlog::warn("replication: replica {} {}; closing", x.t.client->peer(), why);
    return false;
  };
  // Asks the I/O thread about x's link (and, with `want_fd`, for the descriptor once nothing is
  // unsent). False when it closed or the server shuts down.
  auto ask = [&](Target& x, bool want_fd) -> bool {
    uint64_t ticket = 0;
    {
      std::lock_guard lock(x.flow->mu);
      ticket = ++x.flow->asked;
    }
    x.t.keep->Post([client = x.t.client, flow = x.flow, ticket, want_fd] {
      const size_t unsent = client->link().out().size();
      const bool closed = client->link().closed();
      const int fd = want_fd && !closed && unsent == 0 ? ::fcntl(client->link().fd(), F_DUPFD_CLOEXEC, 0) : -1;
      std::lock_guard lock(flow->mu);
      flow->unsent = unsent;
      flow->closed = closed;
      if (fd >= 0) flow->fd = fd;
      flow->answered = ticket;
      flow->cv.notify_all();
    });
    std::unique_lock lock(x.flow->mu);
    while (!x.flow->cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return x.flow->answered >= ticket; })) {
      if (!server->ready.load(std::memory_order_acquire)) return false;  // shutting down
    }
    return !x.flow->closed && server->ready.load(std::memory_order_acquire);
  };
  // Writes `bytes` whole to x: waits (poll) while the socket is full, up to repl-timeout without
  // progress. On x's sender thread.
  auto send_all = [&](Target& x, std::string_view bytes) -> bool {
    auto last_progress = std::chrono::steady_clock::now();
    while (!bytes.empty()) {
      const ssize_t n = ::send(x.fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        bytes.remove_prefix(static_cast<size_t>(n));
        last_progress = std::chrono::steady_clock::now();
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        return give_up(x, std::string("hung up during its snapshot (") + std::strerror(errno) + ")");
      }
      pollfd p{x.fd, POLLOUT, 0};
      (void)::poll(&p, 1, 100);
      if (!server->ready.load(std::memory_order_acquire)) return false;  // shutting down
      {
        std::lock_guard lock(x.q.mu);
        if (x.q.abort) return false;  // dropped by the job
      }
      if (std::chrono::steady_clock::now() - last_progress > std::chrono::seconds(timeout_s)) {
        return give_up(x, "left the rest of its snapshot unread for " + std::to_string(timeout_s) + " s");
      }
    }
    return true;
  };
  // x's sender thread (nice 10 too): writes the pieces while the job builds the next.
  auto send_loop = [&](Target* x) {
    RunBelowClients("keg-snap-send");
    for (;;) {
      Piece piece;
      {
        std::unique_lock lock(x->q.mu);
        x->q.cv.wait(lock, [&] { return !x->q.pieces.empty() || x->q.done; });
        if (x->q.abort || x->q.pieces.empty()) return;
        piece = std::move(x->q.pieces.front());
        x->q.pieces.pop_front();
        x->q.cv.notify_all();
      }
      if (!send_all(*x, *piece)) {
        std::lock_guard lock(x->q.mu);
        x->q.failed = true;
        x->q.cv.notify_all();
        return;
      }
    }
  };
  // Drops x: it gets no more pieces, and its sender stops (a send blocked on a full socket too).
  auto drop = [&](Target& x) {
    if (x.dead) return;
    x.dead = true;
    {
      std::lock_guard lock(x.q.mu);
      x.q.done = x.q.abort = true;
      x.q.cv.notify_all();
    }
    if (x.fd >= 0) (void)::shutdown(x.fd, SHUT_RDWR);
  };
  auto any_alive = [&] {
    return std::any_of(all.begin(), all.end(), [](const std::unique_ptr<Target>& x) { return !x->dead; });
  };
  bool have_fds = false;
  size_t since_check = 0;
  auto drain = [&](std::string* out) -> bool {
    if (!have_fds) {  // the first piece: once the I/O threads sent the first lines
      have_fds = true;
      for (auto& xp : all) {
        Target& x = *xp;
        for (;;) {
          if (!ask(x, true)) {
            drop(x);
            break;
          }
          {
            std::lock_guard lock(x.flow->mu);
            if (x.flow->fd >= 0) {
              x.fd = x.flow->fd;
              break;
            }
            if (x.flow->unsent == 0) {
              give_up(x, "cannot be sent its snapshot (its descriptor could not be duplicated)");
              drop(x);
              break;
            }
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(1));  // the first line still on its way
        }
        if (!x.dead) x.sender = std::thread(send_loop, &x);
      }
    }
    since_check += out->size();
    Piece piece = std::make_shared<const std::string>(std::move(*out));
    out->clear();
    for (auto& xp : all) {
      Target& x = *xp;
      if (x.dead) continue;
      std::unique_lock lock(x.q.mu);
      x.q.cv.wait(lock, [&] { return x.q.pieces.size() < kQueued || x.q.failed; });
      if (x.q.failed) {
        lock.unlock();
        drop(x);
        continue;
      }
      x.q.pieces.push_back(piece);
      x.q.cv.notify_all();
    }
    if (since_check >= kCheckEvery) {
      since_check = 0;
      for (auto& xp : all) {
        if (!xp->dead && !ask(*xp, false)) drop(*xp);  // (a CLIENT KILL closes the link, not this descriptor)
      }
    }
    return any_alive();
  };
  std::string buffer;
  const store::Status built = WriteRdbSnapshot(*server, &buffer, [&] {
    // On the writer, between two groups: the snapshot is the stream up to here.
    uint64_t offset = 0;
    bool marked = false;
    for (auto& xp : all) {
      Target& x = *xp;
      std::string head;
      if (!x.t.rdb_only) {
        if (!marked) {
          offset = server->repl.MarkSnapshot();
          marked = true;
        }
        x.replica = server->repl.Add(x.t.client->id(), x.t.keep, ReplicaIp(*x.t.client),
                                     x.t.client->replica_listening_port(), offset);
        if (x.t.client->gone()) server->repl.Remove(x.replica.get());  // it left before its moment
        if (x.t.psync) head = "+FULLRESYNC " + server->repl.replid() + " " + std::to_string(offset) + "\r\n";
      }
      head += "$EOF:" + mark + "\r\n";
      x.started = true;
      x.t.keep->Post([client = x.t.client, head = std::move(head)] {
        client->link().out().Raw(head);
        client->link().Flush();
      });
    }
  }, drain);
  size_t delivered = 0;
  for (auto& xp : all) {
    Target& x = *xp;
    bool send_failed = x.dead;
    if (x.sender.joinable()) {
      {
        std::lock_guard lock(x.q.mu);
        x.q.done = true;
        x.q.abort = x.q.abort || !built.ok();  // (what is queued of a failed snapshot is not sent)
        x.q.cv.notify_all();
      }
      // A failed one (the link closed, say): a sender waiting for room gives up now.
      if (!built.ok()) (void)::shutdown(x.fd, SHUT_RDWR);
      x.sender.join();  // the last pieces sent (or the sender gave up)
      send_failed = send_failed || x.q.failed;
    }
    if (x.fd >= 0) ::close(x.fd);  // (the link's own descriptor closes with it)
    const store::Status s = built.ok() && send_failed ? store::Status::Aborted() : built;
    if (s.ok()) ++delivered;
    x.t.keep->Post([client = x.t.client, server, s, replica = x.replica, started = x.started, mark] {
      if (!s.ok()) {
        if (replica) server->repl.Remove(replica.get());
        if (!started) {
          client->link().out().Error(StorageError(s));
          client->Finish();
          if (replica) client->link().CloseAfterReply();
          return;
        }
        // Part of the payload is sent: nothing else can be said on this link.
        if (!s.IsAborted()) spdlog::warn("replication: snapshot for {} failed: {}", client->peer(), s.ToString());
        client->link().CloseNow();
        client->Finish();
        return;
      }
      client->link().out().Raw(mark);
      if (replica) {
        client->BecomeReplica(replica, /*stream_on_ack=*/true);
        server->repl.Online(replica, /*stream=*/false);
        server->repl.sync_full.fetch_add(1, std::memory_order_relaxed);
        spdlog::info("replication: snapshot streamed to replica {} (diskless framing); the stream follows its first ack",
                     client->peer());
      }
      client->Finish();
    });
  }
  if (all.size() > 1) {
    spdlog::info("replication: one snapshot built for {} replicas, sent whole to {}", all.size(), delivered);
  }
}

// A disk-based sync's snapshot: written to `path` in pieces, then mapped read-only and unlinked
// (the mapping keeps the bytes until the last send is done with them). Errors name the file, the
// offset and errno. Thread: the snapshot job's; the mapping is shared with the link that sends it.
class SnapshotFile {
 public:
  class Mapping {
   public:
    Mapping(void* at, size_t size) : at_(at), size_(size) {}
    ~Mapping() { ::munmap(at_, size_); }
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    std::string_view bytes() const { return {static_cast<const char*>(at_), size_}; }

   private:
    void* at_;
    size_t size_;
  };

  explicit SnapshotFile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd_ < 0) error_ = store::Status::FromErrno("open", path_, -1, errno);
  }
  ~SnapshotFile() { Close(); }
  SnapshotFile(const SnapshotFile&) = delete;
  SnapshotFile& operator=(const SnapshotFile&) = delete;

  /// Writes `piece` at the end and empties it; false (error() says why) when the write failed.
  bool Append(std::string& piece) {
    if (!error_.ok()) return false;
    error_ = store::io::WriteAll(fd_, path_, size_, piece.data(), piece.size());
    if (!error_.ok()) {
      spdlog::error("replication: the full sync's snapshot file: {}", error_.ToString());
      return false;
    }
    size_ += piece.size();
    piece.clear();
    return true;
  }
  /// Maps what was written and unlinks the file.
  store::Status Map(std::shared_ptr<const Mapping>* out) {
    if (!error_.ok()) return error_;
    void* at = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd_, 0);
    if (at == MAP_FAILED) return store::Status::FromErrno("mmap", path_, -1, errno);
    *out = std::make_shared<const Mapping>(at, size_);
    unlinked_ = ::unlink(path_.c_str()) == 0;
    return store::Status::OK();
  }
  const store::Status& error() const { return error_; }
  /// Closes the file and removes it if Map did not (a failed sync leaves no file). Idempotent.
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (!unlinked_) (void)::unlink(path_.c_str());
    unlinked_ = true;
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  bool unlinked_ = false;
  store::Status error_;
};

// SYNC and PSYNC replid offset. A partial resync (+CONTINUE) when the stream still holds what the
// replica lacks of the history it names; otherwise a full one: +FULLRESYNC <replid> <offset> (not
// for SYNC), then the RDB snapshot as `$<length>` and its bytes, taken between two groups at that
// offset of the stream, and from then on the stream. With REPLCONF rdb-only 1 (redis-cli --rdb)
// SYNC sends the snapshot alone.
void SyncCommand(Ctx& c) {
  ClientSession* client = &c.client();
  ServerState* server = &c.server();
  if (client->replica() != nullptr) return;  // already a replica: ignored, as Redis
  const bool psync = EqualsIgnoreCase(c.arg(0), "psync");
  // PSYNC <replid> <offset> FAILOVER: this server's primary hands over (its FAILOVER): with the
  // same history, this server becomes the primary, then answers the PSYNC as one.
  if (psync && c.argc() > 3 && EqualsIgnoreCase(c.arg(3), "failover")) {
    spdlog::warn("Failover request received for replid {}.", c.arg(1));
    if (!server->replica_of.active()) return c.Error("PSYNC FAILOVER can't be sent to a master.");
    if (!EqualsIgnoreCase(c.arg(1), server->repl.replid())) return c.Error("PSYNC FAILOVER replid must match my replid.");
    {
      std::lock_guard lock(server->config_mu);
      server->config.replicaof.clear();
    }
    server->replica_of.Unfollow();
    spdlog::info("replication: MASTER MODE enabled (failover request from '{}')", client->peer());
  }
  if (server->failover.active()) return c.Error("-NOMASTERLINK Can't SYNC while failing over");
  // A replica serves a replica of its own only while its link to its primary is up (its stream
  // is the primary's, and it has none to give meanwhile), as Redis.
  if (server->replica_of.active() && !server->replica_of.link_up()) {
    return c.Error("-NOMASTERLINK Can't SYNC while not connected with my master");
  }
  const bool rdb_only = client->rdb_only();
  ReplicationFeed& feed = server->repl;
  if (psync) {
    int64_t offset = 0;
    if (!resp::ParseInt64(c.arg(2), &offset)) {
      spdlog::warn("Replica {} asks for synchronization but with a wrong offset", client->peer());
      return c.Error(err::kNotInteger);
    }
    // PSYNC names the first byte it lacks; the stream's offsets count the bytes before it.
    std::shared_ptr<Replica> r;
    if (!rdb_only && offset >= 1) {
      r = feed.TryContinue(c.arg(1), static_cast<uint64_t>(offset - 1), client->id(), client->link().Self(),
                           ReplicaIp(*client), client->replica_listening_port());
    }
    if (r) {
      c.out().Raw("+CONTINUE " + feed.replid() + "\r\n");
      client->BecomeReplica(r);
      feed.Online(r);
      feed.sync_partial_ok.fetch_add(1, std::memory_order_relaxed);
      spdlog::info("replication: partial resync of replica {} from offset {}", client->peer(), offset);
      return;
    }
    if (c.arg(1) != "?") feed.sync_partial_err.fetch_add(1, std::memory_order_relaxed);
  }
  if (!rdb_only) {
    feed.Activate();
    std::lock_guard lock(server->config_mu);
    server->ApplyNotifyConfigLocked();  // the expire cycle names the keys it drops (their DEL)
    if (server->store) server->store->ReportExpiredInGroups(true);
  }
  std::shared_ptr<net::Link> keep = client->link().Self();
  client->Suspend();
  client->MarkSyncing();  // CLIENT KILL TYPE replica ends its sync
  client->link().WatchClose();  // and so does its hang-up (Session::OnClose)
  spdlog::info("replication: {} from {}: full sync", rdb_only ? "snapshot" : "replica", client->peer());
  // The snapshot, off the event loop: it reads every record (the writer waits only for its copy of
  // the locations).
  bool eof = client->capa_eof();
  int64_t delay_s = 0;
  int64_t max_replicas = 0;
  {
    std::lock_guard lock(server->config_mu);
    eof = eof && server->config.repl_diskless_sync;
    delay_s = server->config.repl_diskless_sync_delay;
    max_replicas = server->config.repl_diskless_sync_max_replicas;
  }
  // A replica's diskless sync joins the one that waits to start, if any (its snapshot is not begun:
  // repl-diskless-sync-delay); else it starts one, which waits that long (or until
  // repl-diskless-sync-max-replicas joined) for others to share it, as Redis's.
  std::shared_ptr<PendingSync> group;
  if (eof && !rdb_only) {
    std::lock_guard lock(server->pending_sync_mu);
    const bool joined = server->pending_sync != nullptr;
    if (!joined) server->pending_sync = std::make_shared<PendingSync>();
    group = server->pending_sync;
    group->targets.push_back(SnapshotTarget{client, keep, psync, rdb_only});
    if (max_replicas > 0 && group->targets.size() >= static_cast<size_t>(max_replicas)) group->cv.notify_all();
    if (joined) {
      spdlog::info("replication: replica {} shares the full sync that starts next ({} replicas)", client->peer(),
                   group->targets.size());
      return;
    }
  }
  auto job = [client, keep, server, psync, rdb_only, eof, group, delay_s, max_replicas] {
    server->jobs.Run([client, keep, server, psync, rdb_only, eof, group, delay_s, max_replicas] {
      // Below the I/O threads and the writer (nice 10, this thread of its own only): on a
      // machine with few cores the clients' commands go first, the snapshot takes what is left.
      // (Not SCHED_IDLE: on a saturated primary it would starve, and the full sync with it.
      // Single rounds with it, the replica on a CPU of its own, had the primary's p99 during a
      // 10M-key sync at 0.6x its steady p99 against 1.8x, but the sync took 16-18 s against 11-12,
      // 2026-12-03.)
      RunBelowClients("keg-snapshot");
      if (group) {
        std::vector<SnapshotTarget> targets;
        {
          // The delay and the count are read again each 100 ms: a CONFIG SET of either applies to
          // the sync that waits (as Redis's replicationCron reads them).
          const auto since = std::chrono::steady_clock::now();
          auto keepalive_at = since + std::chrono::seconds(1);
          int64_t delay = delay_s;
          int64_t enough = max_replicas;
          std::unique_lock lock(server->pending_sync_mu);
          for (;;) {
            const auto until = since + std::chrono::seconds(delay);
            if (std::chrono::steady_clock::now() >= until || !server->ready.load(std::memory_order_acquire) ||
                (enough > 0 && group->targets.size() >= static_cast<size_t>(enough))) {
              break;
            }
            group->cv.wait_until(lock, std::min(until, std::chrono::steady_clock::now() + std::chrono::milliseconds(100)));
            if (std::chrono::steady_clock::now() >= keepalive_at) {  // (before their +FULLRESYNC)
              keepalive_at = std::chrono::steady_clock::now() + std::chrono::seconds(1);
              for (const SnapshotTarget& t : group->targets) SendKeepalive(t);
            }
            lock.unlock();  // (config_mu is never taken under pending_sync_mu)
            {
              std::lock_guard config(server->config_mu);
              delay = server->config.repl_diskless_sync_delay;
              enough = server->config.repl_diskless_sync_max_replicas;
            }
            lock.lock();
          }
          if (server->pending_sync == group) server->pending_sync = nullptr;  // later ones start another
          targets = group->targets;
        }
        return StreamSnapshot(server, targets);
      }
      if (eof) return StreamSnapshot(server, {SnapshotTarget{client, keep, psync, rdb_only}});
      // Not diskless (a replica without `capa eof`, or repl-diskless-sync no): the length goes
      // first, so the file is written whole before it is sent, as Redis's disk-based sync —
      // into the data directory, then sent from its mapping (page cache the kernel may reclaim,
      // not the heap: 10,000,000 keys make ~400 MB) and unlinked at once (SnapshotFile).
      std::string dir;
      {
        std::lock_guard lock(server->config_mu);
        dir = server->config.dir;
      }
      // (*.tmp: should the server die meanwhile, its next start removes it.)
      SnapshotFile file(dir + "/temp-sync-" + std::to_string(client->id()) + ".rdb.tmp");
      std::string piece;
      std::shared_ptr<Replica> replica;
      uint64_t offset = 0;
      store::Status s = WriteRdbSnapshot(*server, &piece, [&] {
        if (rdb_only) return;
        // On the writer, between two groups: the snapshot is the stream up to here.
        offset = server->repl.MarkSnapshot();
        replica = server->repl.Add(client->id(), keep, ReplicaIp(*client), client->replica_listening_port(), offset);
        if (client->gone()) server->repl.Remove(replica.get());  // it left before its moment
        if (psync) {
          keep->Post([client, line = "+FULLRESYNC " + server->repl.replid() + " " + std::to_string(offset) + "\r\n"] {
            client->link().out().Raw(line);
            client->link().Flush();
          });
        }
      }, [&, keepalive_at = std::chrono::steady_clock::now() + std::chrono::seconds(1)](std::string* out) mutable {
        // Newlines while the file is written (after the +FULLRESYNC, before the length), as Redis's.
        if (std::chrono::steady_clock::now() >= keepalive_at) {
          keepalive_at = std::chrono::steady_clock::now() + std::chrono::seconds(1);
          SendKeepalive(SnapshotTarget{client, keep, psync, rdb_only});
        }
        return file.Append(*out);
      }, [&] {
        // A replica's file nobody waits for any more (it hung up, REPLICAOF elsewhere, CLIENT
        // KILL) is not built to its end.
        if (!client->gone() && (rdb_only || !replica || server->repl.Holds(replica.get()))) return true;
        spdlog::info("replication: a full sync's snapshot file abandoned: its replica left");
        return false;
      });
      std::shared_ptr<const SnapshotFile::Mapping> rdb;
      if (s.IsAborted() && !file.error().ok()) s = file.error();
      if (s.ok()) s = file.Map(&rdb);
      file.Close();  // before the reply: whoever reads it finds no file left
      keep->Post([client, server, rdb, s, replica] {
        if (!s.ok()) {
          if (replica) server->repl.Remove(replica.get());
          client->link().out().Error(StorageError(s));
          client->Finish();
          if (replica) client->link().CloseAfterReply();
          return;
        }
        client->link().out().Raw("$" + std::to_string(rdb->bytes().size()) + "\r\n");
        client->link().out().Raw(rdb->bytes(), rdb);  // sent from the mapping, not copied
        if (replica) {
          client->BecomeReplica(replica);
          server->repl.Online(replica);
          server->repl.sync_full.fetch_add(1, std::memory_order_relaxed);
          spdlog::info("replication: snapshot of {} bytes sent to replica {}; streaming", rdb->bytes().size(),
                       client->peer());
        }
        client->Finish();
      });
    });
  };
  // Every batch built before the stream was on (which says nothing of what it propagates) must be
  // queued before the snapshot's moment: after the I/O threads' barrier, it is.
  if (!rdb_only && server->io_barrier) {
    server->io_barrier(std::move(job));
  } else {
    job();
  }
}

// REPLICAOF host port | NO ONE (and its old name SLAVEOF): follow a primary, or be one again.
void Replicaof(Ctx& c) {
  ReplicaOf& me = c.server().replica_of;
  ServerState& st = c.server();
  if (st.failover.active()) return c.Error("REPLICAOF not allowed while failing over.");
  if (EqualsIgnoreCase(c.arg(1), "no") && EqualsIgnoreCase(c.arg(2), "one")) {
    {
      std::lock_guard lock(st.config_mu);  // what CONFIG GET / REWRITE say of replicaof
      st.config.replicaof.clear();
    }
    if (me.active()) {
      me.Unfollow();
      spdlog::info("replication: MASTER MODE enabled (user request from '{}')", c.client().peer());
    }
    return c.out().Ok();
  }
  if (c.client().replica() != nullptr) return c.Error("Command is not valid when client is a replica.");
  int64_t port = 0;
  if (!resp::ParseInt64(c.arg(2), &port) || port < 0 || port > 65535) return c.Error("Invalid master port");
  {
    std::lock_guard lock(st.config_mu);
    st.config.replicaof = std::string(c.arg(1)) + " " + std::to_string(port);
  }
  if (!me.Follow(std::string(c.arg(1)), port)) return c.out().SimpleString("OK Already connected to specified master");
  c.out().Ok();
}

// FAILOVER [TO host port [FORCE]] [TIMEOUT ms] | FAILOVER ABORT (Redis 7.0's arguments and errors;
// Failover in replica.h does the rest).
void FailoverCommand(Ctx& c) {
  Failover& failover = c.server().failover;
  if (c.argc() == 2 && EqualsIgnoreCase(c.arg(1), "abort")) {
    if (std::string error = failover.Abort(); !error.empty()) return c.Error(error);
    return c.out().Ok();
  }
  int64_t timeout_ms = 0;
  bool force = false;
  int64_t port = 0;
  std::string host;
  bool have_host = false;
  for (size_t j = 1; j < c.argc(); ++j) {
    if (EqualsIgnoreCase(c.arg(j), "timeout") && j + 1 < c.argc() && timeout_ms == 0) {
      if (!resp::ParseInt64(c.arg(j + 1), &timeout_ms)) return c.Error(err::kNotInteger);
      if (timeout_ms <= 0) return c.Error("FAILOVER timeout must be greater than 0");
      ++j;
    } else if (EqualsIgnoreCase(c.arg(j), "to") && j + 2 < c.argc() && !have_host) {
      if (!resp::ParseInt64(c.arg(j + 2), &port)) return c.Error(err::kNotInteger);
      host = std::string(c.arg(j + 1));
      have_host = true;
      j += 2;
    } else if (EqualsIgnoreCase(c.arg(j), "force") && !force) {
      force = true;
    } else {
      return c.Error(err::kSyntax);
    }
  }
  if (std::string error = failover.Start(host, port, timeout_ms, force); !error.empty()) return c.Error(error);
  c.out().Ok();
}

// ROLE: a primary's offset in the stream and its replicas (ip, port, acked offset); a replica's
// primary, the state of its link, and its offset.
void Role(Ctx& c) {
  ReplicationFeed& feed = c.server().repl;
  if (c.server().replica_of.active()) {
    const ReplicaOf::Status st = c.server().replica_of.status();
    c.out().ArrayHeader(5);
    c.out().Bulk("slave");
    c.out().Bulk(st.host);
    c.out().Integer(st.port);
    c.out().Bulk(st.state);
    c.out().Integer(st.link_up ? static_cast<int64_t>(st.offset) : -1);
    return;
  }
  const std::vector<Replica> replicas = feed.Replicas();
  c.out().ArrayHeader(3);
  c.out().Bulk("master");
  c.out().Integer(static_cast<int64_t>(feed.offset()));
  size_t online = 0;
  for (const Replica& r : replicas) online += r.online ? 1 : 0;
  c.out().ArrayHeader(online);
  for (const Replica& r : replicas) {
    if (!r.online) continue;
    c.out().ArrayHeader(3);
    c.out().Bulk(r.ip);
    c.out().Bulk(std::to_string(r.port));
    c.out().Bulk(std::to_string(r.acked));
  }
}

// WAIT numreplicas timeout: blocks until that many replicas acked this client's last write (or the
// timeout, in milliseconds; 0 waits for ever), and replies how many did.
void Wait(Ctx& c) {
  if (c.server().replica_of.active()) {  // (before the arguments, as Redis)
    return c.Error("WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a "
                   "replica is configured to be writable (which is not the default) writes to replicas are "
                   "just local and are not propagated.");
  }
  int64_t n = 0;
  int64_t timeout = 0;
  if (!resp::ParseInt64(c.arg(1), &n)) return c.Error(err::kNotInteger);
  if (!resp::ParseInt64(c.arg(2), &timeout)) return c.Error("timeout is not an integer or out of range");
  if (timeout < 0) return c.Error("timeout is negative");
  ReplicationFeed& feed = c.server().repl;
  ClientSession* client = &c.client();
  const uint64_t offset = client->write_offset();
  const size_t acked = feed.CountAcked(offset);
  // Inside MULTI (or a script) it cannot wait: the count now, as Redis. With no replica attached it
  // waits out its timeout, as Redis does.
  if (c.inline_only() || acked >= static_cast<uint64_t>(std::max<int64_t>(n, 0))) {
    return c.out().Integer(static_cast<int64_t>(acked));
  }
  // A blocked WAIT keeps its count in an int in Redis 7.0 (blockingState.numreplicas): what it
  // waits for is the count's low 32 bits, so WAIT 9223372036854775807 0 (-1) and WAIT 4294967296 0
  // (0) answer at once, and WAIT 4294967297 0 waits for 1 replica.
  const auto wanted = static_cast<int32_t>(n);
  if (wanted <= static_cast<int64_t>(acked)) return c.out().Integer(static_cast<int64_t>(acked));
  client->Suspend();
  client->link().WatchClose();  // keeps the connection while it waits; a hang-up ends the wait
  std::weak_ptr<net::Link> weak = client->link().Self();
  // (A timeout past a year is for ever: now + timeout must not overflow.)
  constexpr int64_t kYearMs = int64_t{365} * 24 * 3600 * 1000;
  const int64_t deadline = timeout == 0 || timeout > kYearMs ? 0 : MonoMs() + timeout;
  client->SetBlockedInWait(true);  // blocked_clients, CLIENT LIST's `b`, CLIENT UNBLOCK, as Redis's BLOCKED_WAIT
  feed.OnAcked(offset, static_cast<size_t>(wanted), deadline, weak, client->id(), [weak, client, &feed, offset](WaitEnd end) {
    std::shared_ptr<net::Link> link = weak.lock();
    if (!link) return;
    link->Post([client, &feed, offset, end] {
      client->SetBlockedInWait(false);
      if (end == WaitEnd::kUnblockError) {
        client->link().out().Error("-UNBLOCKED client unblocked via CLIENT UNBLOCK");
      } else if (end == WaitEnd::kRoleChange) {
        client->link().out().Error(kUnblockedByRoleChange);
        client->link().CloseAfterReply();
      } else {
        client->link().out().Integer(static_cast<int64_t>(feed.CountAcked(offset)));
      }
      client->Finish();
    });
  });
  if (feed.replica_count() > 0) feed.RequestAcks();
}

}  // namespace

store::Status WriteRdbSnapshot(ServerState& s, std::string* out, const std::function<void()>& at_moment,
                               const std::function<bool(std::string* out)>& drain, const std::function<bool()>& wanted) {
  out->clear();
  struct Building {  // INFO rdb_bgsave_in_progress while this runs
    std::atomic<int>& n;
    explicit Building(std::atomic<int>& count) : n(count) { n.fetch_add(1, std::memory_order_relaxed); }
    ~Building() { n.fetch_sub(1, std::memory_order_relaxed); }
  } building(s.snapshots_building);
  // 1 MiB pieces; 16 KiB (Redis's buffer) while rdb-key-save-delay slows the build, so that a
  // replica hears of it key by key.
  const size_t piece_bytes = s.rdb_key_save_delay.load(std::memory_order_relaxed) != 0 ? size_t{16} << 10 : size_t{1} << 20;
  uint64_t crc = 0;     // of the pieces drained
  uint64_t total = 0;   // their bytes
  bool stopped = false;
  auto give = [&] {
    crc = rdb::Crc64(crc, *out);
    total += out->size();
    if (!drain(out)) stopped = true;
    out->clear();
    return !stopped;
  };
  rdb::FileHeader(out, store::NowMs());
  // The function libraries (as of now: they change only by FUNCTION commands, rarely), as Redis
  // writes them before the keys.
  if (!rdb::FileFunctions(out, s.scripts->functions().Dump())) {
    return store::Status::Corruption("FUNCTION DUMP gave a payload too short to be one");
  }
  uint32_t db = UINT32_MAX;
  std::string payload;
  store::Status bad;
  uint64_t keys = 0;
  store::Status st = s.store->VisitSnapshot(at_moment, [&](const store::SnapshotItem& item) {
    bool ask = wanted && (keys & 1023) == 0;
    if (const int64_t delay = s.rdb_key_save_delay.load(std::memory_order_relaxed); delay != 0) {
      DebugDelay(delay);
      if (!s.ready.load(std::memory_order_acquire)) {  // shutting down: not 1 s a key more
        stopped = true;
        return false;
      }
      ask = static_cast<bool>(wanted);
    }
    if (ask && !wanted()) {
      stopped = true;
      return false;
    }
    if (item.db != db) {
      db = item.db;
      rdb::FileSelectDb(out, db);
    }
    if (item.value.type == kTypeString) {
      rdb::FileStringKey(out, item.key, item.value.value, item.value.expire_at_ms);
      ++keys;
      return !drain || out->size() < piece_bytes || give();
    }
    if (!PayloadOf(item, &payload) || payload.size() < 11) {
      bad = store::Status::Corruption("the value of key '" + std::string(item.key) + "' does not decode");
      return false;
    }
    (void)rdb::FileKey(out, item.key, payload, item.value.expire_at_ms);  // long enough: checked above
    ++keys;
    return !drain || out->size() < piece_bytes || give();
  });
  if (st.ok()) st = bad;
  if (st.ok() && stopped) st = store::Status::Aborted();
  if (!st.ok()) return st;
  rdb::FileEnd(out, crc);
  if (!drain) {
    total = out->size();
  } else if (!give()) {
    return store::Status::Aborted();
  }
  spdlog::info("snapshot: {} keys, {} bytes of RDB", keys, total);
  return st;
}

void RegisterReplicationCommands(std::vector<Command>* t) {
  t->push_back({"replconf", -1, kAdmin | kNoScript | kAllowBusy, 0, 0, 0, Replconf, "@admin @slow @dangerous"});
  t->push_back({"role", 1, kNoScript | kFast, 0, 0, 0, Role, "@admin @fast @dangerous"});
  t->push_back({"replicaof", 3, kAdmin | kNoScript, 0, 0, 0, Replicaof, "@admin @slow @dangerous"});
  t->push_back({"slaveof", 3, kAdmin | kNoScript, 0, 0, 0, Replicaof, "@admin @slow @dangerous"});
  t->push_back({"sync", 1, kAdmin | kNoAsyncLoading | kNoMulti | kNoScript, 0, 0, 0, SyncCommand, "@admin @slow @dangerous"});
  t->push_back({"psync", -3, kAdmin | kNoAsyncLoading | kNoMulti | kNoScript, 0, 0, 0, SyncCommand, "@admin @slow @dangerous"});
  t->push_back({"wait", 3, kNoScript, 0, 0, 0, Wait, "@slow @connection"});
  t->push_back({"failover", -1, kAdmin | kNoScript, 0, 0, 0, FailoverCommand, "@admin @slow @dangerous"});
}

}  // namespace keg::server
