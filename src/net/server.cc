#include "net/server.h"

#include "net/asio_recv.h"  // (before any receive: see there)
#include "net/file_reads.h"
#include "net/listen.h"

#include <ctime>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <list>
#include <spdlog/spdlog.h>

namespace keg::net {
namespace {

constexpr size_t kInitialReadBuffer = 16 * 1024;
constexpr size_t kPreallocMax = 16 * 1024 * 1024;  // a big argument's room reserved at once, at most
// Below this many reply bytes a command's output is not checked against the output limits until
// its batch ends (Redis's 16 KiB reply buffer, which its limits do not count, plays that part).
constexpr size_t kOutputCheckFrom = 16 * 1024;
// Redis's 1 KiB for an unauthenticated client, past its 16 KiB reply buffer (which its limits do
// not count).
constexpr size_t kUnauthenticatedOutput = kOutputCheckFrom + 1024;
constexpr int64_t kReleaseIdleMs = 2000;  // an idle connection's query buffer is freed after this
constexpr size_t kMinReadRoom = 4 * 1024;
constexpr size_t kReadChunk = 16 * 1024;    // Redis's PROTO_IOBUF_LEN
constexpr size_t kBigArgument = 32 * 1024;  // Redis's PROTO_MBULK_BIG_ARG
// Past this much unsent output a connection stops reading: a client that pipelines without reading
// its replies is held back by TCP instead of growing the server's memory.
constexpr size_t kBackpressureBytes = 256 * 1024;
constexpr size_t kMaxIovecs = 64;

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The same clock at the kernel tick's resolution (a few ms behind at most) and without reading the
// TSC: for stamps taken on every read, compared against idle timeouts of seconds.
int64_t CoarseSteadyMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

using Socket = asio::generic::stream_protocol::socket;  // a TCP or a Unix domain stream socket

std::string Endpoint(const asio::ip::tcp::endpoint& e) {
  const asio::ip::address a = e.address();
  if (a.is_v6() && !a.to_v6().is_v4_mapped()) return a.to_string() + ":" + std::to_string(e.port());
  const std::string ip = a.is_v6() ? asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).to_string()
                                   : a.to_string();
  return ip + ":" + std::to_string(e.port());
}

// A TCP endpoint held in a generic one (false: not one that fits).
bool AsTcp(const asio::generic::stream_protocol::endpoint& g, asio::ip::tcp::endpoint* e) {
  if (g.size() > e->capacity()) return false;
  std::memcpy(e->data(), g.data(), g.size());
  return true;
}

// "ip:port" of a socket's own end (`peer` false) or its peer's; for a Unix domain socket "path:0"
// for both ends, the path the server's socket is bound to (as Redis's CLIENT LIST shows them).
std::string SocketAddress(const Socket& socket, bool peer) {
  asio::error_code ec;
  const asio::generic::stream_protocol::endpoint g = peer ? socket.remote_endpoint(ec) : socket.local_endpoint(ec);
  if (ec) return "?:0";
  if (g.data()->sa_family == AF_UNIX) {
    const asio::generic::stream_protocol::endpoint own = socket.local_endpoint(ec);
    if (ec) return "?:0";
    asio::local::stream_protocol::endpoint u;
    std::memcpy(u.data(), own.data(), own.size());
    u.resize(own.size());
    return u.path() + ":0";
  }
  asio::ip::tcp::endpoint e;
  return AsTcp(g, &e) ? Endpoint(e) : "?:0";
}

// The event loop of the I/O thread this is (set while it runs), for PollCurrentLoop.
thread_local asio::io_context* this_thread_io = nullptr;

}  // namespace

bool PollCurrentLoop() {
  if (this_thread_io == nullptr) return false;
  // Asio supports poll() nested in a handler of the same io_context (its scheduler moves the
  // outer handler's private queue to the shared one first).
  this_thread_io->poll();
  return true;
}

const void* CurrentLoop() { return this_thread_io; }

bool PostToCurrentLoop(std::function<void()> fn) {
  if (this_thread_io == nullptr) return false;
  asio::post(*this_thread_io, std::move(fn));
  return true;
}

class Connection;

// One I/O thread: its io_context and the connections living on it.
struct Worker {
  // Traffic of this thread's connections (INFO total_net_*_bytes, total_*_processed). Written only
  // by this I/O thread, read by any: no read-modify-write needed.
  alignas(64) std::atomic<uint64_t> bytes_in{0};
  std::atomic<uint64_t> bytes_out{0};
  std::atomic<uint64_t> reads{0};
  std::atomic<uint64_t> writes{0};
  static void Add(std::atomic<uint64_t>& c, uint64_t n) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  alignas(64) asio::io_context io{1};
  std::unique_ptr<FileReads> file_reads;  // null without io_uring; after `io`: destroyed before it
  std::thread thread;
  std::list<std::weak_ptr<Connection>> connections;  // I/O thread only
  std::unique_ptr<asio::steady_timer> tick;
  /// Link::PostIdle's work, run by the thread's loop (Run) once no handler is ready or a batch of
  /// kIdleBatch ran. I/O thread only. After `io`: destroyed first (it holds connections).
  std::vector<std::function<void()>> at_idle;
  static constexpr size_t kIdleBatch = 64;

  // The thread's loop: io.run(), except that between batches of handlers it runs `at_idle`.
  void Run() {
    std::vector<std::function<void()>> due;
    while (!io.stopped()) {
      size_t ran = 0;
      while (ran < kIdleBatch && io.poll_one() > 0) ++ran;
      if (!at_idle.empty()) {
        due.swap(at_idle);
        for (auto& fn : due) fn();
        due.clear();
      }
      if (ran < kIdleBatch && at_idle.empty()) io.run_one();  // nothing ready: wait for an event
    }
  }
};

class Connection final : public Link, public std::enable_shared_from_this<Connection> {
 public:
  Connection(Worker* worker, Socket socket, Limits* limits)
      : worker_(worker), socket_(std::move(socket)), limits_(limits) {
    asio::error_code ec;
    unix_ = socket_.local_endpoint(ec).data()->sa_family == AF_UNIX;
    peer_ = SocketAddress(socket_, true);
    local_ = SocketAddress(socket_, false);
    loopback_ = unix_ || IsLoopback();
    if (!unix_) {
      const int one = 1;
      setsockopt(socket_.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      // Each receive learns whether the socket is drained (net/asio_recv.h).
      setsockopt(socket_.native_handle(), IPPROTO_TCP, TCP_INQ, &one, sizeof(one));
    }
    const uint32_t keepalive = limits_->tcp_keepalive.load(std::memory_order_relaxed);
    if (keepalive > 0 && !unix_) {
      socket_.set_option(asio::socket_base::keep_alive(true), ec);
      const int idle = static_cast<int>(keepalive);
      const int interval = std::max(idle / 3, 1);
      setsockopt(socket_.native_handle(), IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
      setsockopt(socket_.native_handle(), IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
    }
    socket_.non_blocking(true, ec);
    fd_ = socket_.native_handle();
  }

  // The session goes first, while every member it may reach is alive: another thread's CLIENT
  // LIST or KILL reads peer(), local() and fd() of a session until its destructor has removed it
  // from the client registry.
  ~Connection() override { session_.reset(); }

  bool loopback() const override { return loopback_; }
  bool unix_socket() const override { return unix_; }

  void Start(std::unique_ptr<Session> session) {
    session_ = std::move(session);
    buf_.reset(new char[kInitialReadBuffer]);  // not zeroed: only the pages used become resident
    cap_ = kInitialReadBuffer;
    qfree_.store(cap_, std::memory_order_relaxed);
    last_active_ms_ = SteadyMs();
    worker_->connections.push_back(weak_from_this());
    registration_ = std::prev(worker_->connections.end());
    registered_ = true;
    DoRead();
  }

  // Whether a TCP peer is on this machine (the constructor's, once).
  bool IsLoopback() const {
    asio::error_code ec;
    const asio::generic::stream_protocol::endpoint g = socket_.remote_endpoint(ec);
    if (ec) return false;
    asio::ip::tcp::endpoint e;
    if (!AsTcp(g, &e)) return false;
    const asio::ip::address a = e.address();
    if (a.is_loopback()) return true;
    return a.is_v6() && a.to_v6().is_v4_mapped() &&
           asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).is_loopback();
  }

  // Sends `bytes` (a refusal) and closes, without a session.
  void Refuse(std::string bytes) {
    asio::error_code ec;
    asio::write(socket_, asio::buffer(bytes), ec);  // best effort on a fresh socket
    socket_.close(ec);
  }

  // ---- Link ----
  void Post(std::function<void()> fn) override {
    std::shared_ptr<Connection> self = weak_from_this().lock();
    if (!self) return;
    asio::post(worker_->io, [self = std::move(self), fn = std::move(fn)] { fn(); });
  }
  void PostIdle(std::function<void()> fn) override {
    std::shared_ptr<Connection> self = weak_from_this().lock();
    if (!self) return;
    std::function<void()> run = [self = std::move(self), fn = std::move(fn)] { fn(); };
    if (this_thread_io == &worker_->io) {
      worker_->at_idle.push_back(std::move(run));
      return;
    }
    asio::post(worker_->io, [worker = worker_, run = std::move(run)]() mutable {
      worker->at_idle.push_back(std::move(run));
    });
  }
  std::shared_ptr<Link> Self() override { return shared_from_this(); }
  void Resume() override {
    if (closed_) return;
    waiting_ = false;
    Process();
  }
  bool ReadFiles(std::span<const FileRead> reads, std::function<void()> done) override {
    if (!worker_->file_reads) return false;
    return worker_->file_reads->Read(reads, [self = shared_from_this(), done = std::move(done)] { done(); });
  }
  void CloseAfterReply() override {
    close_after_reply_ = true;
    if (!writing_ && out_.empty()) Shutdown();
  }
  void CloseNow() override { Shutdown(); }
  bool OnItsThread() const override { return worker_->io.get_executor().running_in_this_thread(); }
  bool closed() const override { return closed_; }
  void Flush() override {
    if (closed_) return;
    if (!CheckOutputLimits()) return;  // before the write, as in Process
    StartWrite();
  }
  void set_pubsub(bool on) override { pubsub_ = on; }
  void set_replica() override {
    replica_ = true;
    exempt_ = out_.size();
  }
  resp::ReplyBuffer& out() override { return out_; }
  resp::RequestParser& parser() override { return parser_; }
  const std::string& peer() const override { return peer_; }
  const std::string& local() const override { return local_; }
  int fd() const override { return fd_; }
  size_t query_buffer_bytes() const override { return qbuf_.load(std::memory_order_relaxed); }
  size_t query_buffer_free() const override { return qfree_.load(std::memory_order_relaxed); }
  size_t output_bytes() const override { return omem_.load(std::memory_order_relaxed); }
  uint64_t input_consumed() const override { return consumed_; }

  // Once a second on the I/O thread: idle timeout and the soft output limit.
  void Tick(int64_t now_ms) {
    if (closed_) return;
    const uint32_t timeout = session_->idle_timeout_seconds();
    if (timeout > 0 && !session_->busy() && !writing_ &&
        now_ms - last_active_ms_ > int64_t{timeout} * 1000) {
      spdlog::debug("closing idle client {}", peer_);
      Shutdown();
      return;
    }
    // An idle connection gives its query buffer back (as Redis after 2 s): thousands of idle
    // clients do not hold 16 KiB each. The next read allocates a new one.
    if (cap_ > 0 && begin_ == end_ && !waiting_ && !pumping_ && !received_ && !writing_ &&
        now_ms - last_active_ms_ > kReleaseIdleMs) {
      if (watching_) {
        // The pending receive reads into the buffer: it is cancelled, and its handler frees the
        // buffer (unless the receive completed first: then it brought data, and the buffer stays).
        // So is a watch for a hang-up that outlived its wait (WatchClose): its handler reads on.
        release_buffer_ = true;
        asio::error_code ec;
        socket_.cancel(ec);
      } else {
        ReleaseBuffer();
      }
    }
    CheckOutputLimits();
  }

 private:
  // Reads what the socket holds and processes it. Like Redis, keg reads only when the socket is
  // known or likely to hold data (`readable_`): after a read that filled its room it reads again
  // at once; after one that drained the socket it leaves a receive pending (async_receive into the
  // buffer's free room) and returns. Asio runs a pending receive when the descriptor's edge comes
  // (the descriptor is registered edge-triggered once); net/asio_recv.h makes it wait for that edge
  // after a read that drained the socket (TCP_INQ says so: no byte and no FIN left) rather than try
  // the receive at once, which cost a recv failing with EAGAIN per unpipelined request (per batch
  // with -P 16), as Redis has none: 2026-12-05, 50 clients, GET
  // 11.2 -> 10.0 us of server CPU per request, GET -P 16 0.89 -> 0.77 (docs/benchmarks.md). (Not
  // async_wait: a wait queued after an edge was taken with nothing pending would miss it; Asio's
  // receive retries on the next start.) A connection whose buffer was released while idle waits
  // with async_wait instead (Tick). Calls nested in the
  // processing of a read only set `read_again_`: the outer call loops, so a client streaming data
  // cannot grow the stack; after a few rounds it yields to the other connections of the thread.
  void DoRead() {
    if (pumping_) {
      read_again_ = true;
      return;
    }
    pumping_ = true;
    for (int round = 0;; ++round) {
      read_again_ = false;
      ReadOnce();
      if (!read_again_ || closed_) break;
      if (round == 15) {  // fairness: continue after the other ready handlers
        asio::post(worker_->io, [self = shared_from_this()] { self->DoRead(); });
        break;
      }
    }
    pumping_ = false;
  }

  void ReadOnce() {
    if (closed_ || waiting_ || close_after_reply_) return;
    if (out_.size() > kBackpressureBytes) return;  // resumed by AfterWrite
    if (watching_) return;  // a receive or wait is pending: its handler goes on
    size_t n = 0;
    size_t room = 0;
    if (received_) {  // what the pending receive read (its handler set these)
      received_ = false;
      n = received_bytes_;
      room = received_room_;
    } else {
      if (!readable_ && cap_ == 0) {  // released while idle: no buffer to receive into
        WaitReadable();
        return;
      }
      room = PrepareRoom();
      if (!readable_) {
        StartReceive(room);
        return;
      }
      ssize_t got;
      do {
        got = ::recv(fd_, buf_.get() + end_, room, 0);
      } while (got < 0 && errno == EINTR);
      if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          readable_ = false;
          StartReceive(room);
          return;
        }
        if (errno != ECONNRESET) spdlog::debug("read from {}: {}", peer_, std::strerror(errno));
        Shutdown();
        return;
      }
      if (got == 0) {  // the client closed its side
        Shutdown();
        return;
      }
      n = static_cast<size_t>(got);
    }
    Worker::Add(worker_->reads, 1);
    Worker::Add(worker_->bytes_in, n);
    // Less than the room: the socket was drained; the next read is a pending receive, started by
    // the DoRead that ends the processing of this one (the buffer may move until then).
    if (n < room) readable_ = false;
    OnRead(n);
  }

  // Makes room in the buffer for the next read and returns how much to read.
  size_t PrepareRoom() {
    if (begin_ == end_) {
      parser_.ForgetAhead();
      begin_ = end_ = peeked_until_ = 0;
      if (cap_ == 0 || cap_ > 4 * kInitialReadBuffer) {  // released when idle, or grown for a large argument
        buf_.reset(new char[kInitialReadBuffer]);  // not zeroed: only the pages used become resident
        cap_ = kInitialReadBuffer;
      }
    }
    const size_t wanted = std::max(parser_.BytesWanted(), end_ - begin_ + kMinReadRoom);
    if (cap_ - end_ < kMinReadRoom || cap_ - begin_ < wanted) {
      parser_.ForgetAhead();  // the buffer moves
      if (begin_ > 0) {
        std::memmove(buf_.get(), buf_.get() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = peeked_until_ = 0;
      }
      // Room for the argument being read: all of it up to 16 MiB (one read), past that never more
      // than twice what the client has sent. A declared length is the client's claim, not its
      // data: 20 clients declaring 512 MB and sending 1 MB each reserve a few MB, not 10 GB of
      // address space (untouched, but a sanitizer walks it all when it is freed).
      const size_t need = std::min(wanted, std::max(kPreallocMax, 2 * end_));
      if (cap_ < need || cap_ - end_ < kMinReadRoom) {
        size_t cap = cap_;
        while (cap < need || cap - end_ < kMinReadRoom) cap *= 2;
        // Not value-initialized: a client that declares a 512 MB argument and sends 1 MB must
        // not make keg touch 512 MB (only the pages written become resident).
        std::unique_ptr<char[]> grown(new char[cap]);
        std::memcpy(grown.get(), buf_.get(), end_);
        buf_ = std::move(grown);
        cap_ = cap;
      }
    }
    // As Redis reads: 16 KiB at a time (which also decides how long an inline line may get before
    // it is refused), except the rest of a big argument, which comes in one read.
    size_t room = cap_ - end_;
    const size_t wanted_now = parser_.BytesWanted();
    if (wanted_now < kBigArgument || wanted_now <= end_ - begin_ + kReadChunk) {
      room = std::min(room, kReadChunk);
    }
    return room;
  }

  void ReleaseBuffer() {
    parser_.ForgetAhead();
    buf_.reset();
    cap_ = 0;
    begin_ = end_ = peeked_until_ = 0;
    qbuf_.store(0, std::memory_order_relaxed);
    qfree_.store(0, std::memory_order_relaxed);
  }

  // Leaves a receive into [end_, end_ + room) pending. Until its handler runs the buffer must not
  // move: ReadOnce does nothing while `watching_`, and Tick has the handler free it.
  void StartReceive(size_t room) {
    watching_ = true;
    socket_.async_receive(asio::buffer(buf_.get() + end_, room),
                          [self = shared_from_this(), room](const asio::error_code& ec, size_t n) {
                            self->watching_ = false;
                            const bool release = self->release_buffer_;
                            self->release_buffer_ = false;
                            if (self->closed_) return;
                            if (ec == asio::error::operation_aborted) {  // cancelled by Tick
                              if (release) self->ReleaseBuffer();
                              self->DoRead();
                              return;
                            }
                            if (ec) {  // the client closed its side (eof), or the connection failed
                              self->Shutdown();
                              return;
                            }
                            self->received_ = true;
                            self->received_bytes_ = n;
                            self->received_room_ = room;
                            self->DoRead();
                          });
  }

  void WatchClose() override {
    if (watching_ || closed_) return;  // a pending receive or wait sees the hang-up already
    watching_ = true;
    socket_.async_wait(asio::socket_base::wait_read, [self = shared_from_this()](const asio::error_code& ec) {
      self->watching_ = false;
      const bool release = self->release_buffer_;
      self->release_buffer_ = false;
      if (self->closed_) return;
      if (ec == asio::error::operation_aborted) {
        // Cancelled by Tick to free an idle buffer: the wait outlived the session's (a served
        // blocking pop, a finished snapshot), which resumed meanwhile. Not a hang-up: keg closed
        // such a connection 2 s after its wait ended, a replica that had its snapshot included.
        if (release && !self->waiting_) self->ReleaseBuffer();
        if (self->waiting_) {
          self->WatchClose();
        } else {
          self->DoRead();
        }
        return;
      }
      if (ec) {
        self->Shutdown();
        return;
      }
      char c = 0;
      ssize_t got;
      do {
        got = ::recv(self->fd_, &c, 1, MSG_PEEK);
      } while (got < 0 && errno == EINTR);
      if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {  // hung up
        self->Shutdown();
        return;
      }
      if (got > 0) self->readable_ = true;  // input waits for the session, read once it resumes
      if (self->waiting_) {
        // Input while the session waits (a blocked client's next command): the socket stays
        // readable, so watching on would wake at once, again and again (a core spun until the
        // wait ended). It is read into the buffer's free room instead — the buffer must not move:
        // the waiting command's arguments point into it — and Resume runs it; a hang-up after it
        // is still seen. With no room left the watch stops and the rest waits in the socket.
        if (got > 0 && !self->TakeInputWhileWaiting()) return;
        self->WatchClose();  // still waiting: watch on (the wait also keeps the connection)
      } else {
        self->DoRead();
      }
    });
  }

  // WatchClose's read while the session waits: appends what the socket holds to the buffer's free
  // room, without moving it. False when the watch must stop: no room left (the input stays in the
  // socket, `readable_`), or the connection closed (a hang-up, an error, the query buffer limit).
  bool TakeInputWhileWaiting() {
    const size_t room = cap_ > end_ ? cap_ - end_ : 0;
    if (room == 0) return false;
    ssize_t got;
    do {
      got = ::recv(fd_, buf_.get() + end_, room, 0);
    } while (got < 0 && errno == EINTR);
    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
      Shutdown();
      return false;
    }
    if (got < 0) {  // (EAGAIN: nothing after all)
      readable_ = false;
      return true;
    }
    const auto n = static_cast<size_t>(got);
    Worker::Add(worker_->reads, 1);
    Worker::Add(worker_->bytes_in, n);
    end_ += n;
    readable_ = n == room;  // the room filled: there may be more
    last_active_ms_ = CoarseSteadyMs();
    qbuf_.store(end_ - begin_, std::memory_order_relaxed);
    qfree_.store(cap_ - (end_ - begin_), std::memory_order_relaxed);
    if (!WithinQueryBufferLimit()) return false;
    return !readable_;  // more beyond the room: stop watching (it would wake at once)
  }

  // Waits for the socket to become readable, holding no buffer (an idle connection's).
  void WaitReadable() {
    watching_ = true;
    socket_.async_wait(asio::socket_base::wait_read,
                       [self = shared_from_this()](const asio::error_code& ec) {
                         self->watching_ = false;
                         if (self->closed_) return;
                         if (ec) {
                           self->Shutdown();
                           return;
                         }
                         self->readable_ = true;
                         self->DoRead();
                       });
  }

  void OnRead(size_t n) {
    end_ += n;
    last_active_ms_ = CoarseSteadyMs();
    if (!WithinQueryBufferLimit()) return;
    Process();
  }

  // False (and closed, logged as Redis) when the unprocessed input is past client-query-buffer-limit.
  bool WithinQueryBufferLimit() {
    if (end_ - begin_ <= limits_->query_buffer_limit.load(std::memory_order_relaxed)) return true;
    spdlog::warn("closing client that reached max query buffer length: {} ({} bytes)", peer_, end_ - begin_);
    Shutdown();
    return false;
  }

  // Runs every complete command in the buffer, then writes the replies. Not re-entered: a command
  // that flushes its own link (REPLCONF GETACK's ack, a tracking push, a message to itself) or
  // resumes it runs inside this loop, and a read from there would parse the next commands while
  // this one still runs on the parser's arguments (they point into the buffer, which a read may
  // move): a replica forwarded the command after a GETACK in the GETACK's place, shifting its
  // stream's offsets from its primary's. The loop sees what such a call changed (waiting_), and
  // reads once it is done.
  void Process() {
    if (processing_) return;
    processing_ = true;
    while (!waiting_ && !closed_ && !close_after_reply_) {
      if (!protocol_error_.empty()) {
        out_.Error(protocol_error_);
        close_after_reply_ = true;
        break;
      }
      Outcome outcome;
      if (retry_) {
        retry_ = false;
        outcome = session_->Execute(parser_.args());
        if (outcome == Outcome::kWaitThenRetry) {
          retry_ = true;
          waiting_ = true;
          break;
        }
      } else {
        if (begin_ >= peeked_until_) Peek();
        const resp::ParseResult r =
            parser_.Parse(std::span<char>(buf_.get() + begin_, end_ - begin_));
        qbuf_.store(end_ - begin_, std::memory_order_relaxed);
        qfree_.store(cap_ - (end_ - begin_), std::memory_order_relaxed);  // consumed bytes are reused
        begin_ += r.consumed;
        consumed_ += r.consumed;
        if (r.status == resp::ParseStatus::kNeedMore) {
          outcome = session_->EndOfInput();
          if (outcome == Outcome::kWaitThenNext) waiting_ = true;
          break;
        }
        if (r.status == resp::ParseStatus::kError) {
          // The replies of the commands before the bad one go first, in order: the error waits
          // for the session's pending batch.
          protocol_error_ = parser_.ErrorMessage();
          spdlog::debug("protocol error from {}: {}", peer_, protocol_error_);
          if (session_->EndOfInput() == Outcome::kWaitThenNext) {
            waiting_ = true;
            break;
          }
          continue;
        }
        outcome = session_->Execute(parser_.args());
        if (outcome == Outcome::kWaitThenRetry) retry_ = true;
      }
      switch (outcome) {
        case Outcome::kDone:
          break;
        case Outcome::kWaitThenRetry:
        case Outcome::kWaitThenNext:
          waiting_ = true;
          break;
        case Outcome::kClose:
          session_->EndOfInput();
          close_after_reply_ = true;
          break;
      }
      // As Redis checks its client-output-buffer-limit as replies are added, before they are
      // written: a reply (or a pipeline's replies) past the hard limit closes the connection with
      // none of them sent, and the commands after it are not run. (keg checked after writing, so
      // what the socket took at once never counted: a 150 KB LRANGE passed a 100 KB limit.)
      if (out_.size() > kOutputCheckFrom && !CheckOutputLimits()) break;
    }
    processing_ = false;
    if (closed_) return;
    if (!CheckOutputLimits()) return;
    StartWrite();
    if (close_after_reply_ && !writing_ && out_.empty() && !waiting_) {
      Shutdown();
      return;
    }
    DoRead();
  }

  // Hands the session the names and keys of the next pipelined commands in the buffer (two or
  // more), so it can start loading what they read while the first ones run; marks them peeked. The
  // parser keeps them parsed (RequestParser::ParseAhead): the buffer must not move before they are.
  void Peek() {
    std::string_view names[kPeekAhead];
    std::string_view keys[kPeekAhead];
    size_t scanned = 0;
    const size_t n = parser_.ParseAhead(std::span<char>(buf_.get() + begin_, end_ - begin_), keys, &scanned, names);
    peeked_until_ = begin_ + std::max<size_t>(scanned, 1);
    if (n >= 2) session_->Prefetch(std::span<const std::string_view>(names, n), std::span<const std::string_view>(keys, n));
  }

  // The soft limit of this connection's class (Redis's getClientType): a replica's, a
  // subscriber's, or a normal client's.
  const std::atomic<uint64_t>& SoftLimit() const {
    return replica_ ? limits_->replica_soft_limit : pubsub_ ? limits_->pubsub_soft_limit : limits_->output_soft_limit;
  }

  // False (and closed) when the output is past a limit. Reads the clock only above the soft limit.
  // The soft limit's timer runs while the output stays above it: it restarts whenever a check
  // or a write (StartWrite) finds the output at or below the limit, so what CLIENT LIST's omem
  // shows and the timer agree (a check that found it above, then a write that drained it, then
  // output above it again no longer counts from the first check).
  bool CheckOutputLimits() {
    const size_t pending = out_.size() - std::min(exempt_, out_.size());
    const std::atomic<uint64_t>& hard_limit = replica_  ? limits_->replica_hard_limit
                                              : pubsub_ ? limits_->pubsub_hard_limit
                                                        : limits_->output_hard_limit;
    const std::atomic<uint32_t>& soft_seconds = replica_  ? limits_->replica_soft_seconds
                                                : pubsub_ ? limits_->pubsub_soft_seconds
                                                          : limits_->output_soft_seconds;
    const uint64_t hard = hard_limit.load(std::memory_order_relaxed);
    const uint64_t soft = SoftLimit().load(std::memory_order_relaxed);
    // An unauthenticated client's replies (NOAUTH errors) are held to 17 KiB, as Redis's
    // checkClientOutputBufferLimits: one that sends without reading cannot make keg queue them.
    bool over = (hard > 0 && pending > hard) || (pending > kUnauthenticatedOutput && session_ && session_->awaiting_auth());
    if (!over && soft > 0 && pending > soft) {
      const int64_t now_ms = SteadyMs();
      if (soft_since_ms_ == 0) soft_since_ms_ = now_ms;
      over = now_ms - soft_since_ms_ >= int64_t{soft_seconds.load(std::memory_order_relaxed)} * 1000;
    } else if (soft == 0 || pending <= soft) {
      soft_since_ms_ = 0;
    }
    omem_.store(pending, std::memory_order_relaxed);  // after the timer, as in StartWrite
    if (over) {
      spdlog::warn("client {} scheduled to be closed for overcoming of output buffer limits "
                   "({} bytes pending)", peer_, pending);
      Shutdown();
      return false;
    }
    return true;
  }

  void StartWrite() {
    if (writing_ || closed_ || out_.empty()) return;
    if (close_after_reply_ && !waiting_) Leave();  // these are the last replies
    iovec iov[kMaxIovecs];
    const size_t n = out_.Gather(std::span<iovec>(iov, kMaxIovecs));
    // Try the write right away: the common case completes without a trip through the reactor.
    ssize_t written = ::writev(socket_.native_handle(), iov, static_cast<int>(n));
    if (written > 0) {
      Worker::Add(worker_->writes, 1);
      Worker::Add(worker_->bytes_out, static_cast<uint64_t>(written));
      out_.Consume(static_cast<size_t>(written));
      exempt_ -= std::min(exempt_, static_cast<size_t>(written));  // the exempt bytes go first
      const size_t pending = out_.size() - std::min(exempt_, out_.size());
      if (soft_since_ms_ != 0 && pending <= SoftLimit().load(std::memory_order_relaxed)) soft_since_ms_ = 0;
      omem_.store(pending, std::memory_order_relaxed);
      if (out_.empty()) {
        AfterWrite();
        return;
      }
    } else if (written < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      spdlog::debug("write to {}: {}", peer_, std::strerror(errno));
      Shutdown();
      return;
    }
    writing_ = true;
    socket_.async_wait(asio::socket_base::wait_write,
                       [self = shared_from_this()](const asio::error_code& ec) {
                         self->writing_ = false;
                         if (self->closed_) return;
                         if (ec) {
                           self->Shutdown();
                           return;
                         }
                         self->StartWrite();
                       });
  }

  // All output is written.
  void AfterWrite() {
    if (processing_) return;  // a flush from a command: Process reads (or closes) when done
    if (close_after_reply_ && !waiting_) {
      Shutdown();
      return;
    }
    if (!waiting_) DoRead();
  }

  // Out of the server's view (CLIENT LIST, INFO clients, the target of a tracking redirect): the
  // session's OnClose, once. A connection that closes after its reply leaves before that reply is
  // written, as Redis frees such a client in the event-loop turn that wrote it: a client that read
  // QUIT's +OK must not find the connection still there from a connection on another I/O thread
  // (an invalidation sent to it instead of tracking-redir-broken to the tracking client; under
  // load one in a hundred, when this thread lost its CPU between the write and the close).
  void Leave() {
    if (left_ || !session_) return;
    left_ = true;
    session_->OnClose();
  }

  void Shutdown() {
    if (closed_) return;
    closed_ = true;
    asio::error_code ec;
    socket_.shutdown(asio::socket_base::shutdown_both, ec);
    socket_.close(ec);
    Leave();
    out_.Clear();
    if (registered_) {
      worker_->connections.erase(registration_);
      registered_ = false;
    }
  }

  Worker* worker_;
  Socket socket_;
  bool unix_ = false;      // a Unix domain socket's connection (set at construction)
  bool loopback_ = false;  // the peer is on this machine (likewise)
  bool processing_ = false;  // inside Process (which is not re-entered)
  bool pubsub_ = false;  // client-output-buffer-limit class: pubsub (true) or normal
  bool replica_ = false;  // ... or replica, which wins
  size_t exempt_ = 0;     // the first bytes of out_ not counted against it (a replica's snapshot)
  Limits* limits_;
  resp::RequestParser parser_;
  resp::ReplyBuffer out_;
  std::unique_ptr<Session> session_;
  std::unique_ptr<char[]> buf_;
  size_t cap_ = 0;
  size_t begin_ = 0;  // first unconsumed byte
  uint64_t consumed_ = 0;  // bytes parsed since the connection began (input_consumed)
  size_t peeked_until_ = 0;  // the commands before this offset were handed to Session::Prefetch
  static constexpr size_t kPeekAhead = 16;
  size_t end_ = 0;    // end of the bytes read
  bool readable_ = true;     // the socket may hold unread data (see DoRead)
  bool watching_ = false;    // a receive (StartReceive) or a readiness wait is pending
  bool received_ = false;    // the pending receive completed: ReadOnce takes its bytes
  bool release_buffer_ = false;  // Tick cancelled the pending receive to free the idle buffer
  size_t received_bytes_ = 0;
  size_t received_room_ = 0;
  bool pumping_ = false;     // DoRead is on the stack
  bool read_again_ = false;  // a nested DoRead asked for another round
  bool writing_ = false;
  bool waiting_ = false;  // the session waits for the store
  bool retry_ = false;    // re-run the last command on Resume
  std::string protocol_error_;  // sent (then the connection closes) once earlier replies are out
  bool close_after_reply_ = false;
  bool left_ = false;  // Leave() ran
  bool closed_ = false;
  bool registered_ = false;
  std::list<std::weak_ptr<Connection>>::iterator registration_;
  int64_t last_active_ms_ = 0;
  int64_t soft_since_ms_ = 0;
  std::string peer_;   // set at construction, then read-only (any thread)
  std::string local_;  // likewise
  int fd_ = -1;        // likewise (CLIENT LIST)
  std::atomic<size_t> qbuf_{0};   // query_buffer_bytes()
  std::atomic<size_t> qfree_{0};  // query_buffer_free()
  std::atomic<size_t> omem_{0};   // output_bytes()
};

class ServerImpl {
 public:
  ServerImpl(ServerOptions options, SessionFactory factory, Limits* limits)
      : options_(std::move(options)), factory_(std::move(factory)), limits_(limits) {
    const int n = std::max(options_.io_threads, 1);
    for (int i = 0; i < n; ++i) workers_.push_back(std::make_unique<Worker>());
  }

  bool Listen(std::string* error) {
    if (listening_) return true;
    asio::io_context& io = workers_[0]->io;
    if (!keg::net::Listen(io, options_.bind, options_.port, options_.backlog, &acceptors_, &bound_port_, error)) {
      return false;
    }
    if (!options_.unixsocket.empty()) {
      if (!ListenUnix(io, options_.unixsocket, options_.unixsocket_perm, options_.backlog, &unix_acceptor_, error)) {
        return false;
      }
      unix_bound_ = true;
    }
    listening_ = true;
    return true;
  }

  bool Start(std::string* error) {
    if (!Listen(error)) return false;
    for (auto& acceptor : acceptors_) Accept(acceptor.get());
    if (unix_acceptor_) Accept(unix_acceptor_.get());
    for (size_t i = 0; i < workers_.size(); ++i) {
      Worker* worker = workers_[i].get();
      worker->tick = std::make_unique<asio::steady_timer>(worker->io);
      worker->file_reads = FileReads::Create(worker->io, &limits_->file_read_depth);  // null without io_uring
      ScheduleTick(worker);
      if (i == 0 && options_.first_loop_on_caller) {
        caller_loop_ = true;  // RunFirstLoop runs it
        continue;
      }
      worker->thread = std::thread([worker, i] {
        const std::string name = "keg-io-" + std::to_string(i);
        pthread_setname_np(pthread_self(), name.c_str());
        auto guard = asio::make_work_guard(worker->io);
        this_thread_io = &worker->io;
        worker->Run();
        this_thread_io = nullptr;
      });
    }
    return true;
  }

  void RunFirstLoop() {
    if (!caller_loop_) return;
    Worker* worker = workers_[0].get();
    {
      auto guard = asio::make_work_guard(worker->io);
      this_thread_io = &worker->io;
      worker->Run();
      this_thread_io = nullptr;
    }
    first_loop_done_.set_value();  // (Stop waits for it; nothing of the worker is touched after)
  }

  void StopAccepting() {
    std::promise<void> done;
    asio::post(workers_[0]->io, [&] {
      CloseAcceptors();
      done.set_value();
    });
    done.get_future().wait();
  }

  void Stop() {
    for (auto& w : workers_) {
      Worker* worker = w.get();
      const bool on_caller = caller_loop_ && worker == workers_[0].get();
      if (!w->thread.joinable() && !on_caller) continue;
      std::promise<void> done;
      asio::post(worker->io, [&, worker] {
        std::vector<std::shared_ptr<Connection>> live;
        for (auto& weak : worker->connections) {
          if (auto c = weak.lock()) live.push_back(std::move(c));
        }
        for (auto& c : live) c->CloseNow();
        worker->tick->cancel();
        if (worker == workers_[0].get()) CloseAcceptors();
        done.set_value();
      });
      done.get_future().wait();
      worker->io.stop();
      if (on_caller) {
        first_loop_done_.get_future().wait();
        caller_loop_ = false;
      } else {
        worker->thread.join();
      }
    }
    // Every connection goes now, while what its session's destructor reaches (the log, the server
    // state) is alive: handlers still queued on a stopped io_context hold connections until the
    // io_context is destroyed. The acceptors first (they live on worker 0's io_context).
    acceptors_.clear();
    unix_acceptor_.reset();
    workers_.clear();
    if (unix_bound_) {  // as Redis at shutdown: the socket file goes with the server
      (void)::unlink(options_.unixsocket.c_str());
      unix_bound_ = false;
    }
  }

  uint16_t port() const { return bound_port_; }

  void Barrier(std::function<void()> done) {
    // Three hops per loop: the first runs after the handler running at the call (and what it
    // posted before the call); the second, posted from the first to the loop's end, after
    // whatever that handler posted later; the third, from the second to the end of the loop's
    // idle work (at_idle, run in order), after the work they left for the loop's idle moment (a
    // turn's write group under appendfsync always: Link::PostIdle).
    auto left = std::make_shared<std::atomic<size_t>>(workers_.size());
    auto fn = std::make_shared<std::function<void()>>(std::move(done));
    for (auto& w : workers_) {
      Worker* worker = w.get();
      asio::post(worker->io, [worker, left, fn] {
        asio::post(worker->io, [worker, left, fn] {
          worker->at_idle.push_back([left, fn] {
            if (left->fetch_sub(1) == 1) (*fn)();
          });
        });
      });
    }
  }

  bool Adopt(int fd, std::function<std::unique_ptr<Session>(Link*)> make) {
    if (workers_.empty()) {  // stopped
      ::close(fd);
      return false;
    }
    Worker* target = workers_[next_worker_.fetch_add(1, std::memory_order_relaxed) % workers_.size()].get();
    asio::post(target->io, [this, target, fd, make = std::move(make)] {
      Socket socket(target->io);
      asio::error_code ec;
      sockaddr_storage addr{};
      socklen_t len = sizeof(addr);
      const int family = getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0 ? addr.ss_family : AF_INET;
      socket.assign(asio::generic::stream_protocol(family, family == AF_UNIX ? 0 : IPPROTO_TCP), fd, ec);
      if (ec) {
        spdlog::warn("adopting a connection: {}", ec.message());
        ::close(fd);
        return;
      }
      auto conn = std::make_shared<Connection>(target, std::move(socket), limits_);
      conn->Start(make(conn.get()));
    });
    return true;
  }

  Traffic GetTraffic() const {
    Traffic t;
    for (size_t i = 0; i < workers_.size(); ++i) {
      const Worker& w = *workers_[i];
      const uint64_t reads = w.reads.load(std::memory_order_relaxed);
      const uint64_t writes = w.writes.load(std::memory_order_relaxed);
      t.bytes_in += w.bytes_in.load(std::memory_order_relaxed);
      t.bytes_out += w.bytes_out.load(std::memory_order_relaxed);
      t.reads += reads;
      t.writes += writes;
      if (i > 0) {
        t.threaded_reads += reads;
        t.threaded_writes += writes;
      }
    }
    return t;
  }

 private:
  void CloseAcceptors() {
    asio::error_code ec;
    for (auto& a : acceptors_) a->close(ec);
    if (unix_acceptor_) unix_acceptor_->close(ec);
  }

  // Accepts connections on `acceptor` (TCP or Unix domain) for the I/O threads, round robin.
  template <typename Acceptor>
  void Accept(Acceptor* acceptor) {
    Worker* target = workers_[next_worker_.fetch_add(1, std::memory_order_relaxed) % workers_.size()].get();
    acceptor->async_accept(target->io, [this, acceptor, target](const asio::error_code& ec,
                                                                typename Acceptor::protocol_type::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor->is_open()) return;
      if (!ec) {
        // The socket belongs to target's io_context: set it up there.
        asio::post(target->io, [this, target, s = Socket(std::move(socket))]() mutable {
          auto conn = std::make_shared<Connection>(target, std::move(s), limits_);
          std::string refusal;
          std::unique_ptr<Session> session = factory_(conn.get(), conn->loopback(), &refusal);
          if (!session) {
            conn->Refuse(std::move(refusal));
            return;
          }
          conn->Start(std::move(session));
        });
      } else if (ec == asio::error::no_descriptors ||
                 ec.value() == ENFILE || ec.value() == ENOBUFS || ec.value() == ENOMEM) {
        // Out of descriptors or memory: the pending connection stays in the backlog, so accepting
        // again at once would spin. Retry in 100 ms; log once a second at most.
        const int64_t now = SteadyMs();
        if (now - last_accept_warning_ms_ >= 1000) {
          last_accept_warning_ms_ = now;
          spdlog::warn("accept: {} (retrying every 100 ms)", ec.message());
        }
        auto timer = std::make_shared<asio::steady_timer>(acceptor->get_executor());
        timer->expires_after(std::chrono::milliseconds(100));
        timer->async_wait([this, acceptor, timer](const asio::error_code& e) {
          if (!e && acceptor->is_open()) Accept(acceptor);
        });
        return;
      } else {
        spdlog::warn("accept: {}", ec.message());
      }
      Accept(acceptor);
    });
  }

  void ScheduleTick(Worker* worker) {
    worker->tick->expires_after(std::chrono::seconds(1));
    worker->tick->async_wait([this, worker](const asio::error_code& ec) {
      if (ec) return;
      const int64_t now = SteadyMs();
      std::vector<std::shared_ptr<Connection>> live;
      for (auto& weak : worker->connections) {
        if (auto c = weak.lock()) live.push_back(std::move(c));
      }
      for (auto& c : live) c->Tick(now);
      ScheduleTick(worker);
    });
  }

  ServerOptions options_;
  SessionFactory factory_;
  Limits* limits_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::unique_ptr<asio::ip::tcp::acceptor>> acceptors_;
  std::unique_ptr<asio::local::stream_protocol::acceptor> unix_acceptor_;  // unixsocket's, if set
  bool unix_bound_ = false;  // the socket file is ours: Stop removes it (main thread)
  bool listening_ = false;  // Listen succeeded (main thread)
  // The first loop is RunFirstLoop's (first_loop_on_caller, set by Start); Stop waits for
  // first_loop_done_ instead of joining a thread.
  bool caller_loop_ = false;
  std::promise<void> first_loop_done_;
  std::atomic<size_t> next_worker_{0};  // round robin: the acceptor's thread and Adopt's callers
  int64_t last_accept_warning_ms_ = 0;  // the acceptor's thread
  uint16_t bound_port_ = 0;
};

Server::Server(ServerOptions options, SessionFactory factory, Limits* limits)
    : impl_(std::make_unique<ServerImpl>(std::move(options), std::move(factory), limits)) {}
Server::~Server() { Stop(); }
bool Server::Listen(std::string* error) { return impl_->Listen(error); }
bool Server::Start(std::string* error) { return impl_->Start(error); }
void Server::RunFirstLoop() { impl_->RunFirstLoop(); }
void Server::StopAccepting() { impl_->StopAccepting(); }
void Server::Stop() { impl_->Stop(); }
uint16_t Server::port() const { return impl_->port(); }
void Server::Barrier(std::function<void()> done) { impl_->Barrier(std::move(done)); }
bool Server::Adopt(int fd, std::function<std::unique_ptr<Session>(Link*)> make) {
  return impl_->Adopt(fd, std::move(make));
}
Traffic Server::GetTraffic() const { return impl_->GetTraffic(); }

bool Listen(asio::io_context& io, const std::vector<std::string>& bind, uint16_t port, int backlog,
            std::vector<std::unique_ptr<asio::ip::tcp::acceptor>>* acceptors, uint16_t* bound_port,
            std::string* error) {
  *bound_port = 0;
  for (const std::string& addr : bind) {
    asio::error_code ec;
    std::string host = addr;
    if (!host.empty() && host[0] == '-') host = host.substr(1);  // "-::1": optional address
    const bool optional = host != addr;
    const asio::ip::address a = asio::ip::make_address(host, ec);
    if (ec) {
      *error = "Invalid bind address '" + addr + "'";
      return false;
    }
    auto acceptor = std::make_unique<asio::ip::tcp::acceptor>(io);
    asio::ip::tcp::endpoint ep(a, *bound_port != 0 ? *bound_port : port);
    acceptor->open(ep.protocol(), ec);
    if (!ec) acceptor->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec && a.is_v6()) acceptor->set_option(asio::ip::v6_only(true), ec);
    if (!ec) acceptor->bind(ep, ec);
    if (!ec) acceptor->listen(backlog, ec);
    if (ec) {
      if (optional) continue;
      *error = "Could not create server TCP listening socket " + host + ":" + std::to_string(ep.port()) + ": " +
               ec.message();
      return false;
    }
    *bound_port = acceptor->local_endpoint().port();
    acceptors->push_back(std::move(acceptor));
  }
  return true;
}

bool ListenUnix(asio::io_context& io, const std::string& path, uint32_t perm, int backlog,
                std::unique_ptr<asio::local::stream_protocol::acceptor>* acceptor, std::string* error) {
  (void)::unlink(path.c_str());  // a stale socket file of an earlier run (Redis ignores this error too)
  asio::error_code ec;
  auto a = std::make_unique<asio::local::stream_protocol::acceptor>(io);
  asio::local::stream_protocol::endpoint ep;
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    ec = asio::error::name_too_long;
  } else {
    ep = asio::local::stream_protocol::endpoint(path);
    a->open(ep.protocol(), ec);
  }
  if (!ec) a->bind(ep, ec);
  if (!ec && perm != 0 && ::chmod(path.c_str(), static_cast<mode_t>(perm)) != 0) {
    ec = asio::error_code(errno, asio::system_category());
  }
  if (!ec) a->listen(backlog, ec);
  if (ec) {
    *error = "Failed opening Unix socket: " + path + ": " + ec.message();
    return false;
  }
  *acceptor = std::move(a);
  return true;
}

}  // namespace keg::net
