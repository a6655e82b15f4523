// This server as a replica (replica.h).
#include "server/replica.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "resp/numbers.h"
#include "server/collection.h"
#include "server/list.h"
#include "server/rdb.h"
#include "server/session.h"
#include "server/state.h"
#include "server/stats_clock.h"
#include "store/format.h"

namespace keg::server {

namespace {

// A blocking connection to the primary for the handshake and the snapshot. Every read and write is
// bounded by the socket's timeout (repl-timeout).
constexpr size_t kEofMarkBytes = 40;  // RDB_EOF_MARK_SIZE

class Wire {
 public:
  static constexpr std::string_view kTimedOut = "connection timed out";
  ~Wire() {
    if (fd_ >= 0) ::close(fd_);
  }
  // Connects within `timeout_ms`; the error, or empty. `in_flight` is called (on this thread) once
  // a connection attempt is under way and not answered at once: not while the name resolves, nor
  // for a refusal that is back by the time connect() returns (loopback's), as Redis's replica
  // shows REPL_STATE_CONNECTING only between its connect() and the next turn of its event loop.
  template <class InFlight>
  std::string Connect(const std::string& host, int64_t port, int64_t timeout_ms, InFlight&& in_flight) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const std::string service = std::to_string(port);
    if (const int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res); rc != 0) {
      return std::string("resolving ") + host + ": " + gai_strerror(rc);
    }
    std::string error = "no address";
    for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
      const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
      if (fd < 0) {
        error = std::strerror(errno);
        continue;
      }
      int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
      if (rc < 0 && errno == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        rc = ::poll(&p, 1, 0);
        if (rc == 0) {
          in_flight();
          rc = ::poll(&p, 1, static_cast<int>(timeout_ms));
        }
        int so_error = 0;
        socklen_t len = sizeof(so_error);
        if (rc == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) == 0 && so_error == 0) {
          rc = 0;
        } else {
          error = rc == 0 ? std::string(kTimedOut) : std::strerror(so_error != 0 ? so_error : errno);
          rc = -1;
        }
      } else if (rc < 0) {
        error = std::strerror(errno);
      }
      if (rc == 0) {
        fd_ = fd;
        break;
      }
      ::close(fd);
    }
    freeaddrinfo(res);
    if (fd_ < 0) return error;
    // Blocking from here, each call bounded by the timeout.
    const int flags = fcntl(fd_, F_GETFL);
    fcntl(fd_, F_SETFL, flags & ~O_NONBLOCK);
    timeval tv{};
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = static_cast<suseconds_t>((timeout_ms % 1000) * 1000);
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    const int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return "";
  }
  bool Send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        return false;
      }
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  // One line without its CRLF (a byte at a time: nothing past it is read, so what follows stays
  // in the socket for whoever reads next). False on a closed link, a timeout (timed_out() then
  // says so), or a line too long.
  bool Line(std::string* line) {
    line->clear();
    for (;;) {
      char ch = 0;
      const ssize_t n = ::recv(fd_, &ch, 1, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) timed_out_ = true;  // SO_RCVTIMEO
      if (n <= 0) return false;
      if (ch == '\n') {
        if (!line->empty() && line->back() == '\r') line->pop_back();
        return true;
      }
      line->push_back(ch);
      if (line->size() > 64 * 1024) return false;
    }
  }
  // Exactly `n` bytes, to `sink` as they arrive (false from it stops this, false). The length is
  // the primary's word: nothing is sized by it.
  bool Exactly(size_t n, const std::function<bool(std::string_view)>& sink, const std::function<bool()>& still_wanted) {
    std::vector<char> buf(size_t{1} << 20);
    size_t got = 0;
    while (got < n) {
      const ssize_t r = ::recv(fd_, buf.data(), std::min(n - got, buf.size()), 0);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0 || !still_wanted()) return false;
      got += static_cast<size_t>(r);
      if (!sink(std::string_view(buf.data(), static_cast<size_t>(r)))) return false;
    }
    return true;
  }
  // Bytes until `mark` (the diskless framing's end), without it, to `sink` as they arrive: all but
  // the last mark's length of them, which may be the mark.
  bool UntilMark(const std::string& mark, const std::function<bool(std::string_view)>& sink,
                 const std::function<bool()>& still_wanted) {
    std::vector<char> buf(size_t{1} << 20);
    std::string held;  // received, not yet given: the last mark.size() bytes at most, then a piece
    for (;;) {
      const ssize_t r = ::recv(fd_, buf.data(), buf.size(), 0);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0 || !still_wanted()) return false;
      held.append(buf.data(), static_cast<size_t>(r));
      if (held.size() >= mark.size() && held.compare(held.size() - mark.size(), mark.size(), mark) == 0) {
        return sink(std::string_view(held).substr(0, held.size() - mark.size()));
      }
      if (held.size() > mark.size()) {
        const size_t give = held.size() - mark.size();
        if (!sink(std::string_view(held).substr(0, give))) return false;
        held.erase(0, give);
      }
    }
  }
  // A command and its one-line reply.
  bool Call(std::initializer_list<std::string_view> args, std::string* reply) {
    std::string cmd;
    AppendCommand(&cmd, args);
    return Send(cmd) && Line(reply);
  }
  int Release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  int fd() const { return fd_; }
  /// Whether a read waited repl-timeout for nothing.
  bool timed_out() const { return timed_out_; }

 private:
  int fd_ = -1;
  bool timed_out_ = false;
};

// While it lives: a newline to the primary on `fd` each second, as Redis's replicas send while they
// load a snapshot (replicationSendNewlineToMaster): the primary counts this replica alive for
// repl-timeout meanwhile. Its thread only writes (non-blocking); the owner does not use the socket
// until it is destroyed.
class NewlineKeepalive {
 public:
  explicit NewlineKeepalive(int fd)
      : thread_([this, fd] {
          std::unique_lock lock(mu_);
          while (!cv_.wait_for(lock, std::chrono::seconds(1), [this] { return done_; })) {
            (void)::send(fd, "\n", 1, MSG_NOSIGNAL | MSG_DONTWAIT);  // (a full buffer: the next one)
          }
        }) {}
  ~NewlineKeepalive() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  NewlineKeepalive(const NewlineKeepalive&) = delete;
  NewlineKeepalive& operator=(const NewlineKeepalive&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;  // last: started once the rest is set up
};

}  // namespace

void WriteLoaded(store::Txn& txn, ServerState& s, uint32_t db, const std::string& key, rdb::Loaded& v, int64_t at) {
  if (v.type != store::format::kTypeString) {
    const std::vector<std::string_view> views(v.elements.begin(), v.elements.end());
    if (v.type == store::format::kTypeList) {
      WriteList(txn, s, db, key, views, false, at);
    } else {
      WriteCollection(txn, s, db, key, v.type, 0, views, false, at);
    }
    return;
  }
  store::WriteBatch::Op op;
  op.kind = store::WriteBatch::Kind::kPut;
  op.db = db;
  op.key = key;
  op.value = std::move(v.value);
  op.expire_at_ms = at;
  store::OpResult r;
  txn.Execute(std::move(op), &r);
}

ReplicaOf::~ReplicaOf() { Stop(); }

void ReplicaOf::InterruptLocked() {
  // Wakes a handshake or snapshot read blocked on the old primary (its thread then sees the new
  // generation and ends).
  if (wire_fd_ >= 0) ::shutdown(wire_fd_, SHUT_RDWR);
}

void ReplicaOf::RetireThreadLocked() {
  if (thread_.joinable()) old_threads_.emplace_back(std::move(thread_), ended_);
  for (auto it = old_threads_.begin(); it != old_threads_.end();) {
    if (it->second && it->second->load(std::memory_order_acquire)) {
      it->first.join();  // it ended: at once
      it = old_threads_.erase(it);
    } else {
      ++it;
    }
  }
}

void ReplicaOf::Stop() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    ++gen_;
    InterruptLocked();
    for (auto& [t, ended] : old_threads_) threads.push_back(std::move(t));
    old_threads_.clear();
    if (thread_.joinable()) threads.push_back(std::move(thread_));
  }
  cv_.notify_all();
  for (std::thread& t : threads) t.join();
}

bool ReplicaOf::Follow(const std::string& host, int64_t port, bool failover) {
  {
    std::lock_guard lock(mu_);
    if (stop_) return false;
    if (active_.load(std::memory_order_relaxed) && host == host_ && port == port_) return false;
  }
  // A primary's writes in flight finish before the server turns replica: the mode changes on the
  // writer, between two groups.
  ApplyMode(true);
  // Clients blocked here must not be served by the primary's stream, nor wait for acks of a
  // stream that is no longer this server's (Redis's disconnectAllBlockedClients).
  server_.blocking.UnblockAll();
  server_.repl.UnblockAll();
  std::lock_guard lock(mu_);
  const uint64_t gen = ++gen_;
  InterruptLocked();
  host_ = host;
  port_ = port;
  state_ = "connect";
  link_open_ = false;
  down_since_ms_ = MonoMs();
  // The old thread sees the new generation and ends (closing its link).
  RetireThreadLocked();
  ended_ = std::make_shared<std::atomic<bool>>(false);
  thread_ = std::thread([this, gen, host, port, failover, ended = ended_] {
    Run(gen, host, port, failover);
    ended->store(true, std::memory_order_release);
  });
  cv_.notify_all();
  spdlog::info("replication: following {}:{}", host, port);
  return true;
}

void ReplicaOf::Unfollow() {
  uint64_t gen = 0;
  {
    std::lock_guard lock(mu_);
    if (!active_.load(std::memory_order_relaxed)) return;
    gen = ++gen_;
    InterruptLocked();
    link_open_ = false;
    RetireThreadLocked();
  }
  cv_.notify_all();
  // A sync being loaded stops at its next batch (its history not taken): the data set is not
  // written behind this primary's back once it is one.
  std::lock_guard history(history_mu_);
  if (!Current(gen)) return;  // followed another meanwhile (REPLICAOF host port)
  ApplyMode(false);
  server_.repl.Promote();
  spdlog::info("replication: a primary now (REPLICAOF NO ONE); replication id {}, the old one valid up to offset {} "
               "(applied {}, read {})",
               server_.repl.replid(), server_.repl.second_offset() - 1, applied(), read_.load());
}

void ReplicaOf::ApplyMode(bool replica) {
  active_.store(replica, std::memory_order_relaxed);
  server_.repl.set_forwarding(replica);
  if (server_.store) {
    server_.store->SetExpiryPaused(replica || server_.pause.MustWait(true));
    server_.store->TrackOwnExpiries(replica);  // a writable replica's clients' keys expire here
    server_.store->ReportExpiredInGroups(!replica && server_.repl.active());
  }
}

ReplicaOf::Status ReplicaOf::status() const {
  Status st;
  std::lock_guard lock(mu_);
  st.host = host_;
  st.port = port_;
  st.state = state_;
  st.link_up = link_open_;
  const int64_t now = MonoMs();
  const int64_t heard = heard_ms_.load(std::memory_order_relaxed);
  st.last_io_s = heard == 0 ? -1 : (now - heard) / 1000;
  st.down_since_s = link_open_ ? 0 : (now - down_since_ms_) / 1000;
  st.sync_in_progress = state_ == "sync";
  st.offset = applied();
  st.read_offset = read_.load(std::memory_order_acquire);
  return st;
}

bool ReplicaOf::link_up() const {
  std::lock_guard lock(mu_);
  return link_open_;
}

void ReplicaOf::Heard() { heard_ms_.store(MonoMs(), std::memory_order_relaxed); }

void ReplicaOf::LinkDown(uint64_t gen) {
  {
    std::lock_guard lock(mu_);
    // (A link of this generation that is open is this one: a new one opens only once this one's
    // session is gone, Quiesce.)
    if (gen != gen_ || !link_open_) return;
    link_open_ = false;
    state_ = "connect";
    down_since_ms_ = MonoMs();
  }
  cv_.notify_all();
}

void ReplicaOf::LinkClosed(uint64_t gen) {
  LinkDown(gen);
  {
    std::lock_guard lock(mu_);
    --live_links_;
  }
  cv_.notify_all();  // (Quiesce)
}

bool ReplicaOf::Current(uint64_t gen) const {
  std::lock_guard lock(mu_);
  return gen == gen_ && !stop_;
}

void ReplicaOf::SetState(uint64_t gen, const char* state) {
  std::lock_guard lock(mu_);
  if (gen == gen_) state_ = state;
}

bool ReplicaOf::Pause(uint64_t gen, int64_t ms, bool until_down) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(ms),
               [&] { return gen != gen_ || stop_ || (until_down && !link_open_); });
  return gen == gen_ && !stop_;
}

bool ReplicaOf::Quiesce(uint64_t gen) {
  using namespace std::chrono_literals;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  // 1. The links of earlier connections are gone. (A link lives until its last batch completed:
  //    its bytes are in the feed and it applies nothing more.)
  {
    std::unique_lock lock(mu_);
    if (!cv_.wait_until(lock, deadline, [&] { return live_links_ == 0 || gen != gen_ || stop_; })) {
      // Rather than never reconnecting: the race this closes needs a batch 10 s in flight.
      spdlog::warn("replication: {} earlier link(s) with the primary still open after 10 s; going on",
                   live_links_);
    }
    if (gen != gen_ || stop_) return false;
  }
  // 2. Every batch an I/O thread built before now (a client's write accepted while this server was
  //    a primary) is queued, 3. then applied, its bytes appended to the feed.
  bool late = false;
  const bool done = server_.WaitForWritesInFlight([&] {
    late = std::chrono::steady_clock::now() > deadline + 10s;
    return late || !Current(gen);
  });
  if (late) spdlog::warn("replication: the writes in flight did not complete within 20 s; retrying");
  return done;
}

void ReplicaOf::Run(uint64_t gen, std::string host, int64_t port, bool failover) {
  pthread_setname_np(pthread_self(), "keg-replica");
  // Followed from the replicaof directive before the server accepts: it connects once serving.
  while (!server_.ready.load(std::memory_order_acquire)) {
    if (!Pause(gen, 10)) return;
  }
  while (Current(gen)) {
    // PSYNC ... FAILOVER only while the failover that started this link is in progress (as
    // Redis): once answered, a reconnect to the new primary is a plain PSYNC (which it accepts;
    // the flag it refuses from a replica of its own).
    Connect(gen, host, port, failover && server_.failover.in_progress());
    SetState(gen, "connect");  // waiting for the next attempt (Redis's REPL_STATE_CONNECT)
    if (!Pause(gen, 1000)) break;  // Redis's replicationCron retries about once a second
  }
}

void ReplicaOf::Connect(uint64_t gen, const std::string& host, int64_t port, bool failover) {
  int64_t timeout_s = 60;
  std::string masterauth;
  std::string masteruser;
  std::string announce_ip;
  int64_t announce_port = 0;
  {
    std::lock_guard lock(server_.config_mu);
    timeout_s = server_.config.repl_timeout;
    masterauth = server_.config.masterauth;
    masteruser = server_.config.masteruser;
    announce_ip = server_.config.replica_announce_ip;
    announce_port = server_.config.replica_announce_port;
  }
  Wire wire;
  if (std::string error = wire.Connect(host, port, timeout_s * 1000, [&] { SetState(gen, "connecting"); });
      !error.empty()) {
    if (error == Wire::kTimedOut) {
      spdlog::warn("Timeout connecting to the MASTER... (primary {}:{}: no connection in {} s)", host, port, timeout_s);
      return;
    }
    spdlog::warn("replication: connecting to primary {}:{}: {}", host, port, error);
    return;
  }
  {
    // A new generation interrupts a blocking read on it (InterruptLocked).
    std::lock_guard lock(mu_);
    if (gen != gen_ || stop_) return;
    wire_fd_ = wire.fd();
  }
  struct Unregister {
    ReplicaOf* self;
    ~Unregister() {
      std::lock_guard lock(self->mu_);
      self->wire_fd_ = -1;
    }
  } unregister{this};
  spdlog::info("replication: connected to primary {}:{}; handshake", host, port);
  SetState(gen, "handshake");  // until the PSYNC's answer (Redis's handshake states)
  std::string reply;
  bool transfer = false;  // the snapshot is coming (Redis's REPL_STATE_TRANSFER)
  auto fail = [&](std::string_view step) {
    if (wire.timed_out()) {
      // Redis's words, which operators (and its tests) look for: nothing heard for repl-timeout.
      spdlog::warn("{} (primary {}:{}, {}: nothing for {} s)",
                   transfer ? "Timeout receiving bulk data from MASTER... If the problem persists try to set the "
                              "'repl-timeout' parameter in keg.conf to a larger value."
                            : "Timeout connecting to the MASTER...",
                   host, port, step, timeout_s);
      return;
    }
    spdlog::warn("replication: primary {}:{} {}: {}", host, port, step, reply.empty() ? "no reply (link closed)" : reply);
  };
  // PING: any reply but a hang-up will do (-NOAUTH is fine: AUTH comes next), as Redis.
  if (!wire.Call({"PING"}, &reply) || reply.empty()) return fail("PING");
  if (!masterauth.empty()) {
    const bool ok = masteruser.empty() ? wire.Call({"AUTH", masterauth}, &reply) : wire.Call({"AUTH", masteruser, masterauth}, &reply);
    if (ok && !reply.empty() && reply[0] == '-') {
      // Redis's words, which operators (and its tests) look for.
      spdlog::warn("Unable to AUTH to MASTER: {} (primary {}:{})", reply, host, port);
      return;
    }
    if (!ok || reply.rfind("+OK", 0) != 0) return fail("AUTH");
  }
  // The address the primary lists this replica under (and Sentinel connects to): the announced
  // one if set (replica-announce-port / -ip), else this server's port and the link's address.
  const std::string my_port = std::to_string(announce_port != 0 ? announce_port : server_.port.load());
  if (!wire.Call({"REPLCONF", "listening-port", my_port}, &reply)) return fail("REPLCONF listening-port");
  if (!announce_ip.empty() && (!wire.Call({"REPLCONF", "ip-address", announce_ip}, &reply) || reply.rfind("+OK", 0) != 0)) {
    return fail("REPLCONF ip-address");
  }
  // As Redis's replicas: the snapshot may come in either framing (`$<length>`, or diskless
  // `$EOF:<mark>` ... `<mark>`).
  if (!wire.Call({"REPLCONF", "capa", "eof", "capa", "psync2"}, &reply)) return fail("REPLCONF capa");
  if (!Quiesce(gen)) return;
  // From the PSYNC until the history it answers is in place, no other generation's sync or a
  // promotion (Unfollow) runs: each starts from the history and data set the one before left.
  std::unique_lock history(history_mu_);
  if (!Current(gen)) return;
  // The history this server has: its stream's id and offset (after a sync, or as a primary).
  std::string replid = "?";
  std::string offset = "-1";
  if (server_.repl.active()) {
    replid = server_.repl.replid();
    offset = std::to_string(server_.repl.offset() + 1);
  }
  // A FAILOVER's PSYNC makes the target (a replica of this server, sharing its id) a primary.
  bool sent = failover ? wire.Call({"PSYNC", replid, offset, "FAILOVER"}, &reply)
                       : wire.Call({"PSYNC", replid, offset}, &reply);
  // Newlines before the answer: the primary keeps the link alive while the full sync it will
  // answer with waits to start (repl-diskless-sync-delay), as Redis's; each restarts repl-timeout.
  while (sent && reply.empty() && Current(gen)) sent = wire.Line(&reply);
  if (!sent) return fail("PSYNC");
  if (!Current(gen)) return;
  if (failover) {
    const bool ok = reply.rfind("+FULLRESYNC ", 0) == 0 || reply.rfind("+CONTINUE", 0) == 0;
    // Lock order: the failover's lock before history_mu_. A failover that ends otherwise (this
    // answer rejected, FAILOVER ABORT) makes the server a primary again under the failover's lock
    // (Unfollow, which takes history_mu_), so the answer is given with history_mu_ released: a
    // FAILOVER ABORT just as the target answered would otherwise hang both for good.
    history.unlock();
    server_.failover.PsyncAnswered(ok);
    if (!ok) return fail("PSYNC FAILOVER");
    history.lock();
    // Aborted meanwhile (a primary again) or followed another: nothing was taken from this link.
    if (!Current(gen)) return;
  }
  uint64_t start = 0;
  if (reply.rfind("+FULLRESYNC ", 0) == 0) {
    // +FULLRESYNC <replid> <offset>, then (after newlines sent while the primary prepares it) the
    // snapshot as $<length> and its bytes.
    const std::string rest = reply.substr(12);
    const size_t space = rest.find(' ');
    int64_t off = 0;
    if (space != 40 || !resp::ParseInt64(std::string_view(rest).substr(41), &off) || off < 0) return fail("PSYNC (a malformed +FULLRESYNC)");
    const std::string new_id = rest.substr(0, 40);
    reply.clear();  // (what a failure from here reports: not the +FULLRESYNC)
    transfer = true;
    SetState(gen, "sync");
    std::string line;
    do {
      if (!wire.Line(&line)) return fail("sync (reading the snapshot's length)");
      Heard();
    } while (line.empty());
    auto still_wanted = [&] {
      Heard();
      return Current(gen);
    };
    int64_t len = 0;
    std::function<bool(const Sink&)> source;
    if (line.rfind("$EOF:", 0) == 0 && line.size() == 5 + kEofMarkBytes) {
      spdlog::info("replication: full sync from {}:{} (diskless framing) at offset {}", host, port, off);
      source = [&wire, &still_wanted, mark = line.substr(5)](const Sink& sink) {
        return wire.UntilMark(mark, sink, still_wanted);
      };
    } else if (line[0] == '$' && resp::ParseInt64(std::string_view(line).substr(1), &len) && len >= 0) {
      spdlog::info("replication: full sync from {}:{}: {} bytes of RDB at offset {}", host, port, len, off);
      source = [&wire, &still_wanted, len](const Sink& sink) {
        return wire.Exactly(static_cast<size_t>(len), sink, still_wanted);
      };
    } else {
      reply = line;
      return fail("sync (an unexpected payload: neither $<length> nor $EOF:<mark>)");
    }
    const auto t0 = std::chrono::steady_clock::now();
    std::string error;
    bool received = false;
    {
      NewlineKeepalive keepalive(wire.fd());  // (while it loads, also while it receives)
      error = Load(gen, source, &received);
    }
    if (!received) return fail("sync (reading the snapshot)");
    if (!error.empty()) {
      reply = error;
      return fail("sync (loading the snapshot)");
    }
    // (A newer generation follows another primary: this snapshot's history is not taken. A load
    // that did change the data set forgot the history before, so the next PSYNC asks for a full
    // sync; one into the staging databases left both as they were.)
    if (!Current(gen)) return;
    server_.repl.Activate();
    server_.repl.StartHistory(new_id, static_cast<uint64_t>(off));
    start = static_cast<uint64_t>(off);
    spdlog::info("replication: snapshot loaded in {:.2f} s; streaming from offset {}",
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), off);
  } else if (reply.rfind("+CONTINUE", 0) == 0) {
    // +CONTINUE [<new replid>]: the primary's backlog has what this server lacks.
    if (reply.size() >= 10 + 40) server_.repl.ContinueAs(reply.substr(10, 40));
    start = server_.repl.offset();
    spdlog::info("replication: partial resync with {}:{} from offset {}", host, port, start + 1);
  } else {
    return fail("PSYNC");
  }
  Applied(start);
  Read(start);
  Heard();
  history.unlock();
  // The link becomes a connection of an I/O thread; its session applies the stream.
  int fd = -1;
  {
    std::lock_guard lock(mu_);
    if (gen != gen_ || stop_) return;
    fd = wire.Release();
    wire_fd_ = -1;
    link_open_ = true;
    state_ = "connected";
  }
  const uint32_t db = server_.repl.stream_db();  // 0 after a full sync; else where the stream was
  // This generation's link, once an I/O thread set it up (under mu_). Only this thread touches it:
  // by the time it ends, a newer generation's link may be up, and it is not this one's to close.
  struct Adopted {
    std::weak_ptr<net::Link> link;
    ClientSession* session = nullptr;  // used only through a task holding the link
  };
  auto adopted = std::make_shared<Adopted>();
  if (!server_.adopt || !server_.adopt(fd, [this, gen, start, db, adopted](net::Link* link) -> std::unique_ptr<net::Session> {
        auto session = std::make_unique<ClientSession>(server_, link);
        session->BecomeMasterLink(gen, start);
        session->set_db(db);
        std::lock_guard lock(mu_);
        ++live_links_;  // until ~ClientSession's LinkClosed
        adopted->link = link->Self();
        adopted->session = session.get();
        return session;
      })) {
    LinkClosed(gen);
    return;
  }
  // While the link lives: REPLCONF ACK every second, and repl-timeout. The first as soon as the
  // link is set up: after a diskless snapshot the primary starts the stream on it.
  bool first = true;
  for (;;) {
    if (!Pause(gen, first ? 5 : 1000, /*until_down=*/true)) break;  // (a hang-up: reconnect now)
    std::shared_ptr<net::Link> link;
    ClientSession* session = nullptr;
    {
      std::lock_guard lock(mu_);
      if (!link_open_) return;
      link = adopted->link.lock();
      session = adopted->session;
    }
    if (!link) continue;  // being set up
    const int64_t heard = heard_ms_.load(std::memory_order_relaxed);
    if (MonoMs() - heard > timeout_s * 1000) {
      spdlog::warn("replication: timeout: nothing from the primary for {} s; reconnecting", timeout_s);
      link->Post([link] { link->CloseNow(); });
      continue;
    }
    // (The session lives as long as its connection, which the task holds.)
    link->Post([link, session] { session->SendAck(); });
    first = false;
  }
  // A new generation (REPLICAOF elsewhere, NO ONE, shutdown): this link goes.
  std::shared_ptr<net::Link> link;
  {
    std::lock_guard lock(mu_);
    link = adopted->link.lock();
  }
  if (link) link->Post([link] { link->CloseNow(); });
}

std::string ReplicaOf::Load(uint64_t gen, const std::function<bool(const Sink&)>& source, bool* received) {
  constexpr const char* kStale = "interrupted: this server follows another primary now, or none";
  *received = true;
  store::Store& st = *server_.store;
  const uint64_t max_len = static_cast<uint64_t>(server_.proto_max_bulk_len.load(std::memory_order_relaxed));
  auto invalid = [](rdb::LoadResult r) -> std::string {
    return r == rdb::LoadResult::kUnsupportedType ? "it holds a type keg does not have (a stream, module data)"
                                                  : "it is not a valid RDB file (format or checksum)";
  };
  // With staging databases (up to 128 databases, docs/format.md): one pass into them, swapped in
  // for the data set at the end in one group. The data set changes all at once or not at all: a
  // bad snapshot, an interruption or a crash leaves it (and this server's history) as it was, and
  // meanwhile clients read it (replica-serve-stale-data), as Redis's repl-diskless-load swapdb.
  const uint32_t base = st.StagingBase();
  // INFO async_loading (staged: the old data set is served meanwhile) or loading, until this ends.
  struct LoadingFlag {
    std::atomic<bool>& flag;
    ~LoadingFlag() { flag.store(false, std::memory_order_relaxed); }
  } loading{base != 0 ? server_.async_loading : server_.loading};
  loading.flag.store(true, std::memory_order_relaxed);
  uint64_t keys = 0;
  bool stale = false;
  std::string rdb;  // the whole file, without staging databases
  if (base == 0) {
    *received = source([&rdb](std::string_view piece) {
      rdb.append(piece);
      return true;
    });
    if (!*received) return "";
    // Without them: checked whole first (magic, CRC64, the framing of every entry; objects other
    // than strings decoded), then the data set is replaced in place. (A string whose bytes the
    // CRC64 covers yet whose LZF data does not decompress, or a crash during the load, leaves
    // part of it applied; the history is forgotten first, so the next sync is a full one.)
    rdb::FileVisitor count;
    count.function = [](std::string) { return true; };
    count.skim_strings = true;
    count.key = [&](uint32_t db, std::string, rdb::Loaded, int64_t) {
      if (++keys % 65536 == 0 && !Current(gen)) {
        stale = true;
        return false;
      }
      return db < st.Databases();
    };
    const rdb::LoadResult checked = rdb::LoadFile(rdb, max_len, count);
    if (stale || !Current(gen)) return kStale;
    if (checked != rdb::LoadResult::kOk) return invalid(checked);
    server_.repl.ForgetHistory();
    store::WriteBatch flush;
    flush.DeleteAll();
    if (store::Status s = st.WriteSync(std::move(flush)); !s.ok()) return s.ToString();
    keys = 0;
  } else if (store::Status s = st.BeginStaging(); !s.ok()) {
    return "preparing the staging databases: " + s.ToString();
  }
  std::vector<std::string> codes;
  store::WriteBatch batch;
  size_t in_batch = 0;
  // A few batches in flight: the writer applies one while this thread parses the next.
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  store::Status failed;  // guarded by mu
  auto write = [&]() {
    if (in_batch == 0) return;
    if (!Current(gen)) {  // a newer generation: the rest is not loaded
      stale = true;
      batch = store::WriteBatch();
      in_batch = 0;
      return;
    }
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return in_flight < 4; });
      ++in_flight;
    }
    st.Write(std::move(batch), [&](const store::Status& s, std::vector<store::OpResult>) {
      std::lock_guard lock(mu);
      if (!s.ok() && failed.ok()) failed = s;
      --in_flight;
      cv.notify_all();
    });
    batch = store::WriteBatch();
    in_batch = 0;
  };
  auto ok = [&] {
    std::lock_guard lock(mu);
    return failed.ok();
  };
  bool bad_db = false;
  rdb::FileVisitor apply;
  apply.function = [&](std::string code) {
    codes.push_back(std::move(code));
    return true;
  };
  apply.key = [&](uint32_t db, std::string key, rdb::Loaded value, int64_t at) {
    DebugDelay(server_.key_load_delay.load(std::memory_order_relaxed));
    if (db >= st.Databases()) {  // not a database here
      bad_db = true;
      return false;
    }
    db += base;
    ++keys;
    if (value.type == store::format::kTypeString) {  // most keys: a plain put, no Txn
      batch.SelectDb(db);
      batch.Put(std::move(key), std::move(value.value), at);
    } else {
      auto v = std::make_shared<rdb::Loaded>(std::move(value));
      batch.Run([this, db, key, v, at](store::Txn& txn) { WriteLoaded(txn, server_, db, key, *v, at); }, key);
    }
    if (++in_batch == 1000) write();
    return ok() && !stale;
  };
  rdb::LoadResult loaded = rdb::LoadResult::kOk;
  if (base == 0) {
    loaded = rdb::LoadFile(rdb, max_len, apply, /*verify_crc=*/false);  // checked above
  } else {
    // Loaded as it arrives; the checksum is checked at the end, before the swap.
    rdb::StreamLoader loader(max_len, apply);
    bool stopped = false;  // by the loader (a bad entry, a refusal), not the link
    *received = source([&](std::string_view piece) {
      if (loader.Feed(piece) == rdb::LoadResult::kOk) return true;
      stopped = true;
      return false;
    });
    if (stopped) *received = true;
    loaded = stopped || !*received ? loader.Feed({}) : loader.Finish();
    if (!*received && loaded == rdb::LoadResult::kOk) loaded = rdb::LoadResult::kBadFormat;  // (cut short)
    spdlog::info("replication: {} bytes of RDB received and loaded as they came", loader.received());
  }
  if (loaded == rdb::LoadResult::kOk) write();
  std::string error;
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return in_flight == 0; });  // (the callbacks use this frame)
    if (!failed.ok()) error = failed.ToString();
  }
  if (error.empty() && (stale || !Current(gen))) error = kStale;
  if (error.empty() && bad_db) error = "it holds a database past `databases`";
  if (error.empty() && loaded != rdb::LoadResult::kOk) error = invalid(loaded);
  if (base != 0) {
    if (!error.empty()) {
      if (store::Status s = st.EndStaging(false); !s.ok()) {
        spdlog::warn("replication: emptying the staging databases: {}", s.ToString());
      }
      return error;
    }
    // (history_mu_ is held: no promotion or other sync runs between the check above and here.)
    server_.repl.ForgetHistory();
    if (store::Status s = st.EndStaging(true); !s.ok()) {
      return s.IsAborted() ? "a FLUSHALL ran during the load" : "swapping the loaded data set in: " + s.ToString();
    }
  } else if (!error.empty()) {
    return error;
  }
  error = server_.scripts->functions().Flush();
  for (const std::string& code : codes) {
    std::string name;
    if (error.empty()) error = server_.scripts->functions().Load(code, true, &name);
  }
  if (!error.empty()) return "loading its function libraries: " + error;
  spdlog::info("replication: loaded {} keys and {} function libraries{}", keys, codes.size(),
               base != 0 ? " (into the staging databases, then swapped in)" : "");
  return "";
}

const char* Failover::state_name() const {
  switch (state_.load(std::memory_order_acquire)) {
    case kWaitForSync:
      return "waiting-for-sync";
    case kInProgress:
      return "failover-in-progress";
    default:
      return "no-failover";
  }
}

std::string Failover::Start(const std::string& host, int64_t port, int64_t timeout_ms, bool force) {
  std::unique_lock lock(mu_);
  if (state_.load(std::memory_order_relaxed) != kNone) return "FAILOVER already in progress.";
  if (thread_.joinable()) {
    // The last failover ended (state kNone), but its thread may still be waiting for mu_ to
    // return (an ABORT ends it from another thread): joined without mu_, or neither goes on.
    // Taken out first, so a concurrent FAILOVER cannot join it too; that one may start meanwhile.
    std::thread last = std::move(thread_);
    lock.unlock();
    last.join();
    lock.lock();
    if (state_.load(std::memory_order_relaxed) != kNone) return "FAILOVER already in progress.";
  }
  if (server_.replica_of.active()) return "FAILOVER is not valid when server is a replica.";
  const std::vector<Replica> replicas = server_.repl.Replicas();
  if (replicas.empty()) return "FAILOVER requires connected replicas.";
  if (force && (timeout_ms == 0 || host.empty())) {
    return "FAILOVER with force option requires both a timeout and target HOST and IP.";
  }
  if (!host.empty()) {
    auto it = std::find_if(replicas.begin(), replicas.end(),
                           [&](const Replica& r) { return r.ip == host && r.port == port; });
    if (it == replicas.end()) return "FAILOVER target HOST and PORT is not a replica.";
    if (!it->online) return "FAILOVER target replica is not online.";
    spdlog::info("FAILOVER requested to {}:{}.", host, port);
  } else {
    spdlog::info("FAILOVER requested to any replica.");
  }
  host_ = host;
  port_ = port;
  const int64_t now = MonoMs();
  end_ms_ = timeout_ms <= 0 ? 0 : (timeout_ms > INT64_MAX - now ? INT64_MAX : now + timeout_ms);
  force_ = force;
  state_.store(kWaitForSync, std::memory_order_release);
  // Writes wait (as under CLIENT PAUSE WRITE, the expire cycle too) so the stream stops growing.
  server_.pause.PauseForFailover(true);
  server_.repl.set_pings_paused(true);
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "keg-failover");
    Wait();
  });
  return "";
}

void Failover::Wait() {
  // The stream has stopped growing once the writes that passed the pause's check just before it
  // are in it: a target that acked less would lose them (acknowledged writes) when promoted.
  server_.WaitForWritesInFlight([this] {
    std::lock_guard lock(mu_);
    return stop_ || state_.load(std::memory_order_relaxed) != kWaitForSync || (end_ms_ != 0 && MonoMs() >= end_ms_);
  });
  std::unique_lock lock(mu_);
  while (!stop_ && state_.load(std::memory_order_relaxed) == kWaitForSync) {
    const int64_t now = MonoMs();
    bool go = false;
    if (end_ms_ != 0 && now >= end_ms_) {
      if (!force_) {
        EndLocked("Replica never caught up before timeout");
        return;
      }
      spdlog::info("FAILOVER to {}:{} time out exceeded, failing over.", host_, port_);
      go = true;
    } else {
      // The target (or the first replica) that acked all of the stream.
      const uint64_t offset = server_.repl.offset();
      for (const Replica& r : server_.repl.Replicas()) {
        const bool target = host_.empty() || (r.ip == host_ && r.port == port_);
        if (target && r.online && r.acked == offset) {
          host_ = r.ip;
          port_ = r.port;
          go = true;
          spdlog::info("Failover target {}:{} is synced, failing over.", host_, port_);
          break;
        }
      }
    }
    if (go) {
      state_.store(kInProgress, std::memory_order_release);
      const std::string host = host_;
      const int64_t port = port_;
      lock.unlock();
      {
        std::lock_guard config(server_.config_mu);  // what CONFIG GET / REWRITE say of replicaof
        server_.config.replicaof = host + " " + std::to_string(port);
      }
      server_.replica_of.Follow(host, port, true);
      return;
    }
    cv_.wait_for(lock, std::chrono::milliseconds(10));
  }
}

void Failover::PsyncAnswered(bool ok) {
  std::lock_guard lock(mu_);
  if (state_.load(std::memory_order_relaxed) != kInProgress) return;
  if (ok) {
    EndLocked(nullptr);
    return;
  }
  EndLocked("Failover target rejected psync request");
}

std::string Failover::Abort() {
  std::lock_guard lock(mu_);
  if (state_.load(std::memory_order_relaxed) == kNone) return "No failover in progress.";
  EndLocked("Failover manually aborted");
  return "";
}

void Failover::EndLocked(const char* why) {
  const int state = state_.load(std::memory_order_relaxed);
  if (state == kNone) return;
  if (why != nullptr) {
    if (host_.empty()) {
      spdlog::info("FAILOVER to any replica aborted: {}", why);
    } else {
      spdlog::info("FAILOVER to {}:{} aborted: {}", host_, port_, why);
    }
    if (state == kInProgress) {  // a primary again (a new history, as Redis's replicationUnsetMaster)
      {
        std::lock_guard config(server_.config_mu);
        server_.config.replicaof.clear();
      }
      server_.replica_of.Unfollow();
    }
  }
  state_.store(kNone, std::memory_order_release);
  server_.repl.set_pings_paused(false);
  server_.pause.PauseForFailover(false);
  cv_.notify_all();
}

void Failover::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace keg::server
