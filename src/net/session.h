// The seam between the network layer and the command layer.
//
// src/net owns sockets, buffers and the RESP parser; it knows nothing of commands or the store. For
// every connection it asks a SessionFactory for a Session and hands it each parsed command. The
// command layer implements Session and reaches back through Link.
//
// Threads: each connection lives on one I/O thread. Every Session and Link method is called on that
// thread, except Link::Post, which any thread may call.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "resp/reply_buffer.h"
#include "resp/request_parser.h"

namespace keg::net {

/// Part of a file to read into the page cache (Link::ReadFiles).
struct FileRead {
  int fd = -1;
  uint64_t offset = 0;
  uint32_t length = 0;
};

/// What a connection offers its session.
class Link {
 public:
  virtual ~Link() = default;
  /// Runs fn later on the connection's I/O thread; the connection stays alive until it has run.
  /// Any thread. Does nothing if the connection is already gone.
  virtual void Post(std::function<void()> fn) = 0;
  /// As Post, but fn runs once the I/O thread has run the handlers ready there (at most a batch of
  /// them; Redis's beforeSleep): work that gains from carrying all of that batch's effects at once,
  /// such as a replica's send of the stream. Any thread.
  virtual void PostIdle(std::function<void()> fn) = 0;
  /// A strong reference that keeps the connection (and so its session) alive, for completions
  /// that arrive from other threads.
  virtual std::shared_ptr<Link> Self() = 0;
  /// After Execute or EndOfInput returned a kWait result: continues with the input (I/O thread).
  virtual void Resume() = 0;
  /// Reads `reads` into the page cache without blocking the I/O thread (its io_uring, buffered
  /// reads whose bytes are thrown away), then runs `done` on the I/O thread, the connection kept
  /// alive until then. False, with nothing started, when the thread has no ring or no room in it,
  /// or a read is over 16 KiB: the caller reads another way. The descriptors must stay open until
  /// `done` runs or is dropped (the reads are submitted at the end of the loop's turn). I/O thread.
  virtual bool ReadFiles(std::span<const FileRead> reads, std::function<void()> done) = 0;
  /// While the session waits (a blocking pop), closes the connection when the peer hangs up, and
  /// keeps it alive until then: the session learns of the hang-up by being destroyed. Input that
  /// arrives meanwhile waits for Resume. I/O thread.
  virtual void WatchClose() = 0;
  /// Closes the connection once the pending replies are written (I/O thread).
  virtual void CloseAfterReply() = 0;
  /// Closes now, dropping unsent replies (I/O thread).
  virtual void CloseNow() = 0;
  /// Whether the calling thread is this connection's I/O thread. Any thread.
  virtual bool OnItsThread() const = 0;
  /// Whether the connection closed (either end). I/O thread.
  virtual bool closed() const = 0;
  /// Starts sending what out() holds, outside the processing of a command (MONITOR lines posted
  /// from other connections). I/O thread.
  virtual void Flush() = 0;
  /// The connection is subscribed to pub/sub channels (or no longer): its output buffer is held to
  /// client-output-buffer-limit's `pubsub` class instead of `normal` (Redis's getClientType). I/O
  /// thread.
  virtual void set_pubsub(bool on) = 0;
  /// The connection is a replica's: its output buffer is held to client-output-buffer-limit's
  /// `replica` class, not counting what out() holds at this call (the snapshot of a full sync,
  /// which Redis does not count either). I/O thread.
  virtual void set_replica() = 0;
  /// The reply buffer of the connection (I/O thread).
  virtual resp::ReplyBuffer& out() = 0;
  /// The parser, for its per-connection limits (I/O thread).
  virtual resp::RequestParser& parser() = 0;
  /// "ip:port" of the peer and of the local end ("path:0" for both ends of a Unix socket).
  virtual const std::string& peer() const = 0;
  virtual const std::string& local() const = 0;
  /// Whether the peer is on this machine (127.0.0.0/8, ::1, v4-mapped loopback, a Unix socket).
  virtual bool loopback() const = 0;
  /// Whether this is a Unix domain socket's connection (CLIENT LIST flag `U`).
  virtual bool unix_socket() const { return false; }
  /// File descriptor of the socket (CLIENT LIST `fd=`).
  virtual int fd() const = 0;
  /// Bytes in the query buffer from the command being run on (CLIENT LIST `qbuf=`). Any thread.
  virtual size_t query_buffer_bytes() const = 0;
  /// Bytes of input parsed so far, through the end of the command being executed (a replica's
  /// position in its primary's stream). I/O thread.
  virtual uint64_t input_consumed() const = 0;
  /// Room left in the query buffer (CLIENT LIST `qbuf-free=`; 0 once an idle connection's buffer
  /// was released). Any thread.
  virtual size_t query_buffer_free() const = 0;
  /// Reply bytes not yet taken by the socket, as of the connection's last write or limit check
  /// (CLIENT LIST `omem=`, what client-output-buffer-limit measures). Any thread.
  virtual size_t output_bytes() const { return 0; }
};

/// How a session answers one command.
enum class Outcome {
  kDone,          ///< the command was handled; go on with the next
  kWaitThenRetry, ///< not handled yet: call Execute with the same arguments after Resume
  kWaitThenNext,  ///< handled, but the replies are not complete until Resume
  kClose,         ///< close after the pending replies are written (QUIT, protocol errors)
};

/// The command layer's state for one connection. Owned by the connection; destroyed on its I/O
/// thread after the socket is closed.
class Session {
 public:
  virtual ~Session() = default;
  /// One complete command; `args` are valid until the next Execute/EndOfInput call, and stay valid
  /// (unchanged) across a kWaitThenRetry.
  virtual Outcome Execute(std::span<const std::string_view> args) = 0;
  /// Every complete command of this read was executed: submit what was batched. kDone or
  /// kWaitThenNext.
  virtual Outcome EndOfInput() = 0;
  /// The names and second arguments (first keys, mostly) of the next pipelined commands, which
  /// Execute will get soon: the session may start loading what they will read. A hint; it changes
  /// no result. Both spans are as long; the views are valid during the call only.
  virtual void Prefetch(std::span<const std::string_view> names, std::span<const std::string_view> keys) {
    (void)names;
    (void)keys;
  }
  /// True while the session waits for the store (idle timeouts do not apply).
  virtual bool busy() const = 0;
  /// The client has not authenticated where it must: its unsent replies are held to 17 KiB, as
  /// Redis holds them (a client that sends without reading is closed). I/O thread.
  virtual bool awaiting_auth() const { return false; }
  /// Seconds of idle time after which the connection is closed (0: never). Read each second.
  virtual uint32_t idle_timeout_seconds() const = 0;
  /// The socket is closed (the peer hung up, or this server closed it); called once, on the I/O
  /// thread. The session may live on until the work it has in flight completes.
  virtual void OnClose() {}
};

/// Creates the session of a new connection, or refuses it: returns null with `*refusal` set to the
/// bytes to send before closing (maxclients, protected mode).
using SessionFactory =
    std::function<std::unique_ptr<Session>(Link* link, bool loopback, std::string* refusal)>;

}  // namespace keg::net
