// keg's network layer: Asio io_contexts (one thread each), an acceptor that spreads connections
// over them, and Connection, which reads, parses with resp::RequestParser, hands commands to a
// Session and writes the replies of each read with one gathered write.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "net/session.h"

namespace keg::net {

/// Limits read on every use, so CONFIG SET changes them at run time (any thread may store).
struct Limits {
  /// client-query-buffer-limit: unparsed bytes a client may have pending.
  std::atomic<uint64_t> query_buffer_limit{1ull << 30};
  /// client-output-buffer-limit normal <hard> <soft> <soft seconds>; 0 disables each.
  std::atomic<uint64_t> output_hard_limit{0};
  std::atomic<uint64_t> output_soft_limit{0};
  std::atomic<uint32_t> output_soft_seconds{0};
  /// client-output-buffer-limit pubsub <hard> <soft> <soft seconds>: for subscribed connections.
  std::atomic<uint64_t> pubsub_hard_limit{32ull << 20};
  std::atomic<uint64_t> pubsub_soft_limit{8ull << 20};
  std::atomic<uint32_t> pubsub_soft_seconds{60};
  /// client-output-buffer-limit replica <hard> <soft> <soft seconds>: for replicas' connections
  /// (the stream not yet written to them; not the snapshot of their full sync).
  std::atomic<uint64_t> replica_hard_limit{256ull << 20};
  std::atomic<uint64_t> replica_soft_limit{64ull << 20};
  std::atomic<uint32_t> replica_soft_seconds{60};
  /// TCP keepalive interval in seconds (0: off).
  std::atomic<uint32_t> tcp_keepalive{300};
  /// Cold reads each event loop keeps in the kernel at once (FileReads); the rest wait their turn.
  std::atomic<uint32_t> file_read_depth{6};
};

/// Bytes and socket calls of every connection so far (INFO stats). threaded_*: those of the I/O
/// threads after the first (Redis's io_threaded_reads_processed / writes).
struct Traffic {
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t reads = 0;
  uint64_t writes = 0;
  uint64_t threaded_reads = 0;
  uint64_t threaded_writes = 0;
};

struct ServerOptions {
  std::vector<std::string> bind = {"127.0.0.1"};
  uint16_t port = 6379;
  int io_threads = 1;
  int backlog = 511;
  /// unixsocket: a Unix domain socket to listen on as well (empty: none), removed by Stop;
  /// unixsocketperm: its permission bits (0: the umask's).
  std::string unixsocket;
  uint32_t unixsocket_perm = 0;
  /// The first I/O loop runs on the thread that calls Server::RunFirstLoop (keg-server's main
  /// thread) instead of a thread of its own. A signal sent to the process goes to its main thread
  /// first, so a SIGSTOP then stops that loop before it handles anything more: with one I/O thread
  /// (the default) the server answers nothing once `kill -STOP` returned, as Redis (whose main
  /// thread runs its event loop). A loop on a thread of its own ran on until the scheduler gave the
  /// woken main thread a CPU, and a busy machine took long enough to let a replica answer
  /// REPLCONF GETACK after it had been stopped.
  bool first_loop_on_caller = false;
};

class ServerImpl;

/// Redis's processEventsWhileBlocked: from inside a handler of an I/O thread, runs the handlers of
/// that thread's event loop that are ready now (reads, writes, posted work) and returns. For work
/// that holds its thread for long (a busy script), so the thread's other connections are answered
/// meanwhile. The caller must have left its own state consistent: the handlers run may touch any
/// connection of the thread. False, doing nothing, on any other thread.
bool PollCurrentLoop();

/// The event loop of the calling I/O thread, as an opaque identity (null on any other thread):
/// work found to belong to the caller's own loop can be done in place instead of posted.
const void* CurrentLoop();

/// Runs `fn` on the calling I/O thread's event loop after the handlers already queued there (the
/// end of the loop's current turn). False, doing nothing, on any other thread.
bool PostToCurrentLoop(std::function<void()> fn);

/// Thread: construct, Start and Stop from one thread (main; with first_loop_on_caller, Start and
/// RunFirstLoop on main, Stop on another thread); the rest runs on the I/O threads.
class Server {
 public:
  Server(ServerOptions options, SessionFactory factory, Limits* limits);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Binds every address (port() is then known); nothing is accepted yet: a client's connection
  /// waits in the listen backlog until Start. Returns false (with *error) when a bind fails.
  bool Listen(std::string* error);
  /// Listens (if Listen was not called) and starts accepting and the I/O threads. Returns false
  /// (with *error) when a bind fails.
  bool Start(std::string* error);
  /// With first_loop_on_caller, after Start succeeded: runs the first I/O loop on the calling
  /// thread until Stop (called on another thread) stops it. Otherwise returns at once.
  void RunFirstLoop();
  /// Stops accepting new connections; existing ones keep running.
  void StopAccepting();
  /// Closes every connection, joins the I/O threads (and waits for RunFirstLoop to return) and
  /// destroys every session before it returns
  /// (a session's destructor may log and reach the server's state: both must outlive Stop).
  /// Afterwards Adopt refuses, Barrier never runs `done` and GetTraffic reads zeros; callers of
  /// Adopt, Barrier and GetTraffic on other threads must have stopped before Stop is called.
  void Stop();
  /// The bound port (useful with port 0).
  uint16_t port() const;
  /// Traffic so far. Any thread.
  Traffic GetTraffic() const;
  /// Runs `done` (on an I/O thread) once every I/O thread has finished the handler it was running
  /// at the call and run what that handler posted to its own loop. Any thread.
  void Barrier(std::function<void()> done);
  /// Makes a connected socket (a replica's link to its primary) a connection of an I/O thread,
  /// whose session `make` creates there. Takes `fd` (closed on failure). Any thread.
  bool Adopt(int fd, std::function<std::unique_ptr<Session>(Link*)> make);

 private:
  std::unique_ptr<ServerImpl> impl_;
};

}  // namespace keg::net
