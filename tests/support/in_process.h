// Test support: the command layer in process, without sockets (as Dragonfly's tests drive their
// service). InProcessServer owns a ServerState with a real store in a temporary directory;
// InProcessClient is one connection: a FakeLink that plays the net layer's part (it runs commands
// in order, waits when the session says so, and runs the completions the store posts back) and a
// ClientSession on it.
//
// Threads: every InProcessClient method runs on the calling thread, which plays the connection's
// I/O thread; completions posted from the store's writer are queued and run there by Run().
// Owned objects: the server outlives its clients.
#pragma once

#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "net/session.h"
#include "resp/reply_buffer.h"
#include "resp/request_parser.h"
#include "server/config.h"
#include "server/session.h"
#include "server/state.h"
#include "store/store.h"

namespace keg::testing {

/// The I/O thread's task queue, shared by every client of a server as an io_context is shared by
/// the connections of an I/O thread: a task posted for one connection (the flush of the writes a
/// turn collected, a completion) runs whichever client pumps next, also after its own connection
/// closed. Any thread may post; the test thread runs.
class IoQueue {
 public:
  void Post(std::function<void()> fn) {
    {
      std::lock_guard lock(mu_);
      tasks_.push_back(std::move(fn));
    }
    cv_.notify_one();
  }
  // Runs one task, waiting up to `wait` for it; false if none came.
  bool RunOne(std::chrono::milliseconds wait) {
    std::function<void()> fn;
    {
      std::unique_lock lock(mu_);
      if (!cv_.wait_for(lock, wait, [&] { return !tasks_.empty(); })) return false;
      fn = std::move(tasks_.front());
      tasks_.pop_front();
    }
    fn();
    return true;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
};

/// A ServerState as main() builds it, on a fresh directory (removed at destruction).
class InProcessServer {
 public:
  /// `directives`: extra "name value" config lines, as keg.conf would hold them.
  explicit InProcessServer(const std::vector<std::pair<std::string, std::string>>& directives = {}) {
    char tmpl[] = "/tmp/keg_inproc_XXXXXX";
    dir_ = mkdtemp(tmpl);
    std::string text = "dir " + dir_ + "\nappendfsync no\n";
    for (const auto& [name, value] : directives) text += name + " " + value + "\n";
    std::string error;
    ok_ = server::ParseConfigText(text, &state_.config, &error);
    error_ = error;
    {
      std::lock_guard lock(state_.config_mu);
      state_.ApplyConfigLocked();
    }
    state_.start_ms = store::NowMs();
    state_.run_id = std::string(40, 'a');
    state_.request_shutdown = [this](bool) { shutdown_requested_ = true; };
    if (ok_) {
      const store::Status s = store::Store::Open(state_.StoreOptions(), &state_.store);
      ok_ = s.ok();
      if (!ok_) error_ = s.ToString();
      if (ok_) {
        std::lock_guard lock(state_.config_mu);
        state_.ApplyNotifyConfigLocked();
      }
    }
    // The read pool, as keg-server has it: after DEBUG DROP-PAGE-CACHE commands take the cold path
    // (their completions come through io()).
    if (ok_) state_.cold_reads = std::make_unique<server::ColdReads>(state_.store.get(), 4);
  }
  ~InProcessServer() {
    if (state_.cold_reads) state_.cold_reads->Stop();
    state_.blocking.Stop();  // its thread writes to the store
    state_.jobs.Wait();      // a SYNC's snapshot thread reads the store and posts to io_ (as main())
    if (state_.store) (void)state_.store->Close();
    while (io_.RunOne(std::chrono::milliseconds(0))) {
    }
    state_.store.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  InProcessServer(const InProcessServer&) = delete;
  InProcessServer& operator=(const InProcessServer&) = delete;

  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  /// The store's directory (removed with the server).
  const std::string& dir() const { return dir_; }
  server::ServerState& state() { return state_; }
  IoQueue& io() { return io_; }
  bool shutdown_requested() const { return shutdown_requested_; }
  /// Forgets a SHUTDOWN (the fuzzer's server lives on).
  void clear_shutdown() { shutdown_requested_ = false; }

 private:
  std::string dir_;
  server::ServerState state_;
  IoQueue io_;  // after state_: its tasks (and the clients they keep) go first
  bool ok_ = false;
  std::string error_;
  std::atomic<bool> shutdown_requested_{false};
};

/// One client connection, driven by the calling thread.
class InProcessClient final : public net::Link, public std::enable_shared_from_this<InProcessClient> {
 public:
  static std::shared_ptr<InProcessClient> Connect(InProcessServer& server) {
    std::shared_ptr<InProcessClient> c(new InProcessClient());
    c->server_ = &server;
    c->session_ = std::make_unique<server::ClientSession>(server.state(), c.get());
    return c;
  }
  ~InProcessClient() override { session_.reset(); }

  /// Runs `commands` as one read of a pipeline, then waits for every reply; returns the bytes the
  /// connection would send. After a close (QUIT, protocol error), further commands are ignored.
  /// After SHUTDOWN the connection closes (as the server's exit would close it). A reply that has
  /// not come after `hang_after` sets hung() and returns what was sent.
  std::string Run(const std::vector<std::vector<std::string>>& commands,
                  std::chrono::milliseconds hang_after = std::chrono::seconds(10)) {
    Send(commands);
    return Finish(hang_after);
  }
  /// Run's first half: hands `commands` to the session as one read and returns without waiting
  /// for what they wait on (a blocking pop, a write group). Other clients may run meanwhile (their
  /// Run pumps the shared queue, so this client's completions run too); Finish collects.
  void Send(const std::vector<std::vector<std::string>>& commands) {
    for (const auto& c : commands) input_.push_back(c);
    input_done_ = false;
    Process();
  }
  /// Run's second half: waits for every reply of what was sent; as Run.
  std::string Finish(std::chrono::milliseconds hang_after = std::chrono::seconds(10)) {
    // Wait for every completion the store posts back; each may resume processing.
    while (waiting_ && !closed_) {
      if (server_->shutdown_requested()) {
        // The server is going away: what is in flight still completes, then the socket closes.
        while (RunOnePosted(std::chrono::milliseconds(20))) {
        }
        closed_ = true;
        break;
      }
      if (!RunOnePosted(hang_after)) {
        hung_ = true;
        break;
      }
    }
    // A completion may have been posted after the last wait ended (a SyncAsync reply, say).
    while (RunOnePosted(std::chrono::milliseconds(0))) {
    }
    return TakeOutput();
  }
  std::string RunOne(std::vector<std::string> command) {
    return Run(std::vector<std::vector<std::string>>{std::move(command)});
  }

  /// Runs what was posted (completions of any client's work, this client's too): the first task
  /// waited for up to `wait`, then every ready one. True if this client still waits for something
  /// (a blocking pop, a write group).
  bool Pump(std::chrono::milliseconds wait = std::chrono::milliseconds(0)) {
    if (waiting_ && !closed_ && RunOnePosted(wait)) {
      while (RunOnePosted(std::chrono::milliseconds(0))) {
      }
    }
    return waiting_ && !closed_;
  }

  /// True once a reply did not come in time (a hang).
  bool hung() const { return hung_; }
  /// For a wait that was expected (a command parked by CLIENT PAUSE): a later Run waits again.
  void clear_hung() { hung_ = false; }
  bool closed() const override { return closed_ || close_after_reply_; }

  /// The test is done with this client: it reads no more; what is posted for it still runs when
  /// another client pumps the queue (as a closed connection's handlers run on its I/O thread).
  void Close() { closed_ = true; }

  server::ClientSession& session() { return *session_; }

  // ---- net::Link ----
  /// As the net layer's Connection::Post: the task keeps the connection (and so its session)
  /// alive until it has run; nothing is posted for a connection already gone.
  void Post(std::function<void()> fn) override {
    std::shared_ptr<InProcessClient> self = weak_from_this().lock();
    if (!self) return;
    server_->io().Post([self = std::move(self), fn = std::move(fn)] { fn(); });
  }
  void PostIdle(std::function<void()> fn) override { Post(std::move(fn)); }  // its tasks run in turn
  std::shared_ptr<net::Link> Self() override { return shared_from_this(); }
  void Resume() override {
    if (closed_) return;
    waiting_ = false;
    Process();
  }
  /// No io_uring in process: cold reads go through the read pool.
  bool ReadFiles(std::span<const net::FileRead>, std::function<void()>) override { return false; }
  void WatchClose() override {}  // the harness closes explicitly (Close)
  void CloseAfterReply() override { close_after_reply_ = true; }
  void CloseNow() override { closed_ = true; }
  bool OnItsThread() const override { return false; }  // (CLIENT KILL posts its close)
  void Flush() override {}  // Run() returns what out() holds
  void set_pubsub(bool) override {}  // no output limits in process
  void set_replica() override {}
  resp::ReplyBuffer& out() override { return out_; }
  resp::RequestParser& parser() override { return parser_; }
  const std::string& peer() const override { return peer_; }
  const std::string& local() const override { return local_; }
  int fd() const override { return 7; }
  bool loopback() const override { return true; }
  size_t query_buffer_bytes() const override { return 0; }
  size_t query_buffer_free() const override { return 0; }
  uint64_t input_consumed() const override { return 0; }

 private:
  InProcessClient() = default;

  // The net layer's Connection::Process, with a queue of commands for the socket's bytes.
  void Process() {
    while (!waiting_ && !closed_ && !close_after_reply_) {
      net::Outcome outcome;
      if (retry_) {
        retry_ = false;
        outcome = session_->Execute(current_views_);
        if (outcome == net::Outcome::kWaitThenRetry) {
          retry_ = true;
          waiting_ = true;
          break;
        }
      } else {
        if (input_.empty()) {
          if (input_done_) break;
          input_done_ = true;
          if (session_->EndOfInput() == net::Outcome::kWaitThenNext) waiting_ = true;
          break;
        }
        current_ = std::move(input_.front());
        input_.pop_front();
        current_views_.assign(current_.begin(), current_.end());
        outcome = session_->Execute(current_views_);
        if (outcome == net::Outcome::kWaitThenRetry) retry_ = true;
      }
      switch (outcome) {
        case net::Outcome::kDone:
          break;
        case net::Outcome::kWaitThenRetry:
        case net::Outcome::kWaitThenNext:
          waiting_ = true;
          break;
        case net::Outcome::kClose:
          session_->EndOfInput();
          close_after_reply_ = true;
          break;
      }
    }
  }

  // Runs one posted task (this client's or another's), waiting up to `wait` for it.
  bool RunOnePosted(std::chrono::milliseconds wait) { return server_->io().RunOne(wait); }

  std::string TakeOutput() {
    std::string bytes;
    iovec iov[64];
    while (out_.size() > 0) {
      const size_t n = out_.Gather(std::span<iovec>(iov, 64));
      size_t taken = 0;
      for (size_t i = 0; i < n; ++i) {
        bytes.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
        taken += iov[i].iov_len;
      }
      out_.Consume(taken);
    }
    return bytes;
  }

  InProcessServer* server_ = nullptr;
  std::unique_ptr<server::ClientSession> session_;
  resp::ReplyBuffer out_;
  resp::RequestParser parser_;
  std::string peer_ = "127.0.0.1:40000";
  std::string local_ = "127.0.0.1:6379";

  std::deque<std::vector<std::string>> input_;
  std::vector<std::string> current_;
  std::vector<std::string_view> current_views_;
  bool input_done_ = false;
  bool waiting_ = false;
  bool retry_ = false;
  bool closed_ = false;
  bool close_after_reply_ = false;
  bool hung_ = false;

};

}  // namespace keg::testing
