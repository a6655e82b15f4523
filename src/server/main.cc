// keg-server: reads the configuration, opens (recovers) the store, then listens. While the store
// recovers keg does not listen: clients connect once every key is back (see docs/server.md).
#include <sys/resource.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <asio.hpp>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>
#include <set>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "net/http_server.h"
#include "net/server.h"
#include "server/config.h"
#include "server/crash_report.h"
#include "server/metrics.h"
#include "server/replication.h"
#include "server/session.h"
#include "server/state.h"
#include "server/stats_clock.h"
#include "server/version.h"

namespace {

using keg::server::ServerState;

constexpr std::string_view kDenied =
    "-DENIED Redis is running in protected mode because protected mode is enabled and no password "
    "is set for the default user. In this mode connections are only accepted from the loopback "
    "interface. If you want to connect from external computers to Redis you may adopt one of the "
    "following solutions: 1) Just disable protected mode sending the command 'CONFIG SET "
    "protected-mode no' from the loopback interface by connecting to Redis from the same host the "
    "server is running, however MAKE SURE Redis is not publicly accessible from internet if you do "
    "so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable "
    "the protected mode by editing the Redis configuration file, and setting the protected mode "
    "option to 'no', and then restarting the server. 3) If you started the server manually just for "
    "testing, restart it with the '--protected-mode no' option. 4) Setup a an authentication "
    "password for the default user. NOTE: You only need to do one of the above things in order for "
    "the server to start accepting connections from the outside.\r\n";

std::string RandomHex(size_t n) {
  std::random_device rd;
  std::string s;
  for (size_t i = 0; i < n; ++i) s += "0123456789abcdef"[rd() % 16];
  return s;
}

void SetupLogging(const keg::server::Config& config) {
  std::shared_ptr<spdlog::logger> logger;
  if (config.logfile.empty()) {
    logger = spdlog::stdout_color_mt("keg");
  } else {
    logger = spdlog::basic_logger_mt("keg", config.logfile);
    logger->flush_on(spdlog::level::info);
  }
  logger->set_pattern("%P:M %d %b %Y %H:%M:%S.%e %^%l%$ %v");
  spdlog::set_default_logger(logger);
  spdlog::flush_every(std::chrono::seconds(1));
}

}  // namespace

// As Redis: maxclients connections need that many descriptors plus some for files; raise the soft
// limit as far as the hard one allows, and lower maxclients when even that is not enough. Called
// before the store opens (its recovery reads every data file) and again once it is open, with the
// `data_files` it keeps open.
void RaiseFileLimit(keg::server::ServerState& state, uint64_t data_files) {
  const int64_t wanted = state.maxclients.load();
  const int64_t allowed = keg::server::RaiseFileLimitFor(wanted, data_files);
  if (allowed >= wanted) return;
  spdlog::warn(
      "You requested maxclients of {}; the open files limit holds {} clients beside {} descriptors "
      "kept for keg ({} data files open), so maxclients is now {}",
      wanted, allowed, static_cast<uint64_t>(keg::server::kReservedDescriptors) + data_files, data_files,
      std::max<int64_t>(allowed, 1));
  std::lock_guard lock(state.config_mu);
  state.config.maxclients = std::max<int64_t>(allowed, 1);
  state.ApplyConfigLocked();
}

// What main waits for: SHUTDOWN and SIGINT / SIGTERM. Any thread.
class ShutdownRequests {
 public:
  /// `now`: without waiting for the replicas (SHUTDOWN NOW, a second signal).
  void Request(bool now) {
    std::lock_guard lock(mu_);
    requested_ = true;
    now_ = now_ || now;
    cv_.notify_all();
  }
  /// SHUTDOWN ABORT: false when no shutdown is requested, or main already goes on with it.
  bool Abort() {
    {
      std::lock_guard lock(mu_);
      if (!requested_ || committed_) return false;
      requested_ = false;
      now_ = false;
      cv_.notify_all();
    }
    spdlog::info("Shutdown manually aborted.");
    return true;
  }
  bool requested() {
    std::lock_guard lock(mu_);
    return requested_;
  }

 private:
  friend void WaitForShutdown(keg::server::ServerState& state, ShutdownRequests& r);
  std::mutex mu_;
  std::condition_variable cv_;
  bool requested_ = false;
  bool now_ = false;
  bool committed_ = false;  // main goes on with the shutdown: no abort any more
};

// Whether every replica acked the whole stream (Redis's isReadyToShutdown). Any thread.
bool ReplicasCaughtUp(keg::server::ServerState& state) {
  if (!state.repl.active()) return true;
  const uint64_t offset = state.repl.offset();
  for (const keg::server::Replica& r : state.repl.Replicas()) {
    if (r.acked != offset) return false;
  }
  return true;
}

// keg-control: returns once a shutdown is requested and, unless it is to happen now or
// shutdown-timeout is 0, the replicas caught up with the stream or the timeout passed (Redis 7's
// graceful shutdown: writes pause meanwhile, so acknowledged writes reach the replicas before the
// primary goes). A SHUTDOWN ABORT during that wait resumes serving, and this waits again. Logs
// the replicas still lagging as Redis's finishShutdown does.
void WaitForShutdown(keg::server::ServerState& state, ShutdownRequests& r) {
  using keg::server::MonoMs;
  std::unique_lock lock(r.mu_);
  for (;;) {
    r.cv_.wait(lock, [&] { return r.requested_; });
    const int64_t timeout_s = state.shutdown_timeout.load(std::memory_order_relaxed);
    if (r.now_ || timeout_s <= 0 || !state.repl.active()) break;
    lock.unlock();
    const int64_t deadline = MonoMs() + timeout_s * 1000;
    state.pause.PauseForShutdown(true);
    // The stream's end is known once the writes that passed the pause's check just before it are
    // in it; then the replicas may already have it all.
    state.WaitForWritesInFlight([&] { return MonoMs() >= deadline; });
    state.shutdown_deadline_ms.store(deadline, std::memory_order_relaxed);
    if (!ReplicasCaughtUp(state)) {
      state.repl.RequestAcks();
      spdlog::info("Waiting for replicas before shutting down.");
    }
    lock.lock();
    bool go = false;
    while (r.requested_ && !go) {
      go = r.now_ || MonoMs() >= deadline || ReplicasCaughtUp(state);
      if (!go) r.cv_.wait_for(lock, std::chrono::milliseconds(10));
    }
    state.shutdown_deadline_ms.store(0, std::memory_order_relaxed);
    if (go) break;
    // Aborted: serving again; the SHUTDOWNs that waited get Redis's error.
    lock.unlock();
    state.pause.PauseForShutdown(false);
    state.FailShutdownWaiters();
    lock.lock();
  }
  r.committed_ = true;
  lock.unlock();
  if (!state.repl.active()) return;
  const std::vector<keg::server::Replica> replicas = state.repl.Replicas();
  const uint64_t offset = state.repl.offset();
  size_t lagging = 0;
  const int64_t now_s = MonoMs() / 1000;
  for (const keg::server::Replica& rep : replicas) {
    if (rep.acked == offset) continue;
    ++lagging;
    spdlog::warn("Lagging replica {}:{} reported offset {} behind master, lag={}, state={}.", rep.ip, rep.port,
                 offset - rep.acked, rep.online ? now_s - rep.ack_ms / 1000 : 0, rep.online ? "online" : "send_bulk");
  }
  if (!replicas.empty()) {
    spdlog::info("{} of {} replicas are in sync when shutting down.", replicas.size() - lagging, replicas.size());
  }
}

int main(int argc, char** argv) {
  if (argc >= 2 && (std::string_view(argv[1]) == "--version" || std::string_view(argv[1]) == "-v")) {
    std::printf("keg-server v=%s (speaks Redis %s)\n", keg::server::kKegVersion,
                keg::server::kRedisVersion);
    return 0;
  }
  if (argc >= 2 && (std::string_view(argv[1]) == "--help" || std::string_view(argv[1]) == "-h")) {
    std::printf("Usage: keg-server [/path/to/keg.conf] [--directive value ...]\n"
                "Example: keg-server conf/keg.conf --port 7000 --dir /var/lib/keg\n");
    return 0;
  }
  ServerState state;
  std::string error;
  if (!keg::server::LoadConfig(argc, argv, &state.config, &error)) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 1;
  }
  SetupLogging(state.config);
  keg::server::InstallCrashReport(state.config.logfile);
  {
    std::lock_guard lock(state.config_mu);
    state.ApplyConfigLocked();
  }
  // Users from the config file, after requirepass (a "user default ..." line wins, as in Redis).
  // Each user once; "default" starts over from `reset` (Redis's ACLLoadConfiguredUsers).
  std::set<std::string> declared;
  for (const std::vector<std::string>& user : state.config.users) {
    if (!declared.insert(user[0]).second) {
      std::fprintf(stderr, "Error in user declaration '%s': Duplicate user found. A user can only be defined once in config files\n",
                   user[0].c_str());
      return 1;
    }
    std::vector<std::string_view> rules(user.begin() + 1, user.end());
    if (user[0] == "default") rules.insert(rules.begin(), "reset");
    const std::string err = state.acl.SetUser(user[0], rules);
    if (!err.empty()) {
      std::fprintf(stderr, "Error in user declaration '%s': %s\n", user[0].c_str(), err.c_str());
      return 1;
    }
  }
  if (std::string shown, path = keg::server::AclFilePath(state, &shown); !path.empty()) {
    if (!state.config.users.empty()) {
      std::fprintf(stderr,
                   "Configuring Redis with users defined in redis.conf and at the same setting an ACL file path is "
                   "invalid. This setup is very likely to lead to configuration errors and security holes, please "
                   "define either an ACL file or declare users directly in your redis.conf, but not both.\n");
      return 1;
    }
    if (const std::string errors = state.acl.LoadFile(path, shown); !errors.empty()) {
      std::fprintf(stderr, "Aborting Redis startup because of ACL errors: %s\n", errors.c_str());
      return 1;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  state.start_ms = keg::store::NowMs();
  state.run_id = RandomHex(40);
  state.last_save_s = state.start_ms / 1000;
  std::error_code ec;
  state.executable = std::filesystem::absolute(argv[0], ec).string();
  if (argc >= 2 && std::string_view(argv[1]).substr(0, 2) != "--") {
    state.config_file = std::filesystem::absolute(argv[1], ec).string();
  }

  const keg::server::Config& cfg = state.config;
  const std::string fsync = cfg.appendfsync == keg::store::FsyncPolicy::kAlways ? "always"
                            : cfg.appendfsync == keg::store::FsyncPolicy::kEverySec ? "everysec"
                                                                                    : "no";
  spdlog::info("keg {} starting (speaks Redis {}), pid {}, port {}, dir {}, appendfsync {}, "
               "io-threads {}", keg::server::kKegVersion, keg::server::kRedisVersion, getpid(),
               cfg.port, cfg.dir, fsync, cfg.io_threads);
  // always-show-logo: Redis logs its logo, which names the pid as " PID: n" (what Redis's test
  // harness waits for). keg has no logo: one line in its place.
  if (cfg.always_show_logo) {
    spdlog::info("keg {}, Redis {} protocol, mode=standalone, port={}, PID: {}", keg::server::kKegVersion,
                 keg::server::kRedisVersion, cfg.port, getpid());
  }

  // pidfile (Redis's createPidFile, best effort): written now, removed when main returns.
  struct PidFile {
    std::string path;
    ~PidFile() {
      if (!path.empty()) (void)::unlink(path.c_str());
    }
  } pid_file;
  if (!cfg.pidfile.empty()) {
    bool written = false;
    if (FILE* f = std::fopen(cfg.pidfile.c_str(), "w")) {
      const bool printed = std::fprintf(f, "%d\n", static_cast<int>(getpid())) > 0;
      written = std::fclose(f) == 0 && printed;
    }
    if (written) {
      pid_file.path = cfg.pidfile;
    } else {
      spdlog::warn("Failed to write PID file {}: {} (errno {})", cfg.pidfile, std::strerror(errno), errno);
    }
  }

  RaiseFileLimit(state, 0);

  // The metrics and health endpoint starts first, so a readiness probe sees the recovery (503).
  std::unique_ptr<keg::net::HttpServer> http;
  if (cfg.metrics_port != 0) {
    http = std::make_unique<keg::net::HttpServer>(
        cfg.bind, static_cast<uint16_t>(cfg.metrics_port),
        [&state](std::string_view path) { return keg::server::ServeHttp(state, path); });
    if (!http->Start(&error)) {
      spdlog::critical("metrics-port: {}", error);
      spdlog::shutdown();
      return 1;
    }
    spdlog::info("metrics and health endpoint on port {} (/metrics, /health/live, /health/ready)", http->port());
  }

  // Recovery first: keg listens only once every key is back, so no client ever sees -LOADING.
  const auto t0 = std::chrono::steady_clock::now();
  state.startup_memory = keg::server::UsedMemory();
  std::filesystem::create_directories(cfg.dir, ec);
  keg::store::Options store_options = state.StoreOptions();
  // Keys found expired: dropped below by a primary (their DELs to its backlog) or kept by a replica.
  store_options.keep_expired_at_open = true;
  keg::store::Status s = keg::store::Store::Open(store_options, &state.store);
  if (!s.ok()) {
    spdlog::critical("cannot open the data directory {}: {}", cfg.dir, s.ToString());
    spdlog::shutdown();
    return 1;
  }
  {
    std::lock_guard lock(state.config_mu);
    state.ApplyNotifyConfigLocked();
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  state.cold_reads = std::make_unique<keg::server::ColdReads>(state.store.get(), keg::server::kColdReadThreads);
  // Functions (FUNCTION LOAD) live beside the data files, in FUNCTION DUMP's format.
  state.scripts->functions().set_path(cfg.dir + "/functions.rdb");
  if (std::string why = state.scripts->functions().LoadFile(); !why.empty()) {
    spdlog::critical("cannot load the functions: {}", why);
    spdlog::shutdown();
    return 1;
  }
  // Where a clean shutdown left the data set in its replication history: continued (a replica's
  // PSYNC resyncs partially; a primary's replicas that have all of it too). Removed before any write.
  const std::string history_path = cfg.dir + "/replication.state";
  {
    keg::server::SavedHistory history;
    bool found = false;
    if (std::string why = keg::server::TakeHistory(history_path, &history, &found); !why.empty()) {
      spdlog::critical("cannot remove {}: {}", history_path, why);
      spdlog::shutdown();
      return 1;
    }
    if (found && history.db >= state.store->Databases()) {  // a damaged file: not a database here
      spdlog::warn("replication: {} names database {}; ignored (a full sync will follow)", history_path, history.db);
      found = false;
    }
    if (found) {
      const bool replica = !cfg.replicaof.empty();
      state.repl.Restore(history, replica);
      if (!replica) {
        std::lock_guard lock(state.config_mu);
        state.ApplyNotifyConfigLocked();  // the expire cycle names the keys it drops (their DEL)
        state.store->ReportExpiredInGroups(true);
      }
      spdlog::info("replication: the data set is at offset {} of history {} (saved at the last shutdown){}",
                   history.offset, history.replid, replica ? "" : "; a primary now, that history valid up to it");
    }
  }
  if (cfg.replicaof.empty()) {
    // What expired while the server was down goes before it serves, as Redis's primary skips
    // expired keys while it loads its RDB (INFO rdb_last_load_keys_expired); with a replication
    // history restored their DELs go to the backlog, so the replicas that resume from it drop
    // them too. (A replica keeps them for its primary's DELs.)
    const uint64_t expired = state.store->ExpireAllDue();
    state.load_keys_expired.store(expired, std::memory_order_relaxed);
    if (expired > 0) spdlog::info("Done loading: {} keys expired while the server was down were dropped", expired);
    state.store->SetExpiryPaused(false);  // (opened paused: StoreOptions)
  }
  const keg::store::Stats stats = state.store->GetStats();
  RaiseFileLimit(state, stats.data_files);
  spdlog::info("DB loaded from disk: {:.3f} seconds, {} keys in {} data files ({} bytes, {} dead)",
               secs, stats.keys, stats.data_files, stats.total_bytes, stats.dead_bytes);

  // SHUTDOWN (from an I/O thread) and the signals both end up here.
  ShutdownRequests shutdown;
  state.request_shutdown = [&shutdown](bool now) { shutdown.Request(now); };
  // The SHUTDOWNs that waited get Redis's error here, at the abort: keg-control answers them too
  // when it was waiting for the replicas, but an abort before it woke to the request leaves it
  // asleep (the request is gone), and they waited for good.
  state.abort_shutdown = [&shutdown, &state] {
    if (!shutdown.Abort()) return false;
    state.FailShutdownWaiters();
    return true;
  };

  keg::net::ServerOptions net_options;
  net_options.bind = cfg.bind;
  net_options.port = static_cast<uint16_t>(cfg.port);
  net_options.io_threads = static_cast<int>(cfg.io_threads);
  net_options.backlog = static_cast<int>(cfg.tcp_backlog);
  net_options.unixsocket = cfg.unixsocket;
  net_options.unixsocket_perm = static_cast<uint32_t>(cfg.unixsocketperm);
  net_options.first_loop_on_caller = true;
  keg::net::Server server(
      net_options,
      [&state](keg::net::Link* link, bool loopback, std::string* refusal)
          -> std::unique_ptr<keg::net::Session> {
        if (static_cast<int64_t>(state.clients.size()) >= state.maxclients.load()) {
          state.counters.rejected_connections.fetch_add(1);
          *refusal = "-ERR max number of clients reached\r\n";
          return nullptr;
        }
        if (!loopback && state.protected_mode.load() && state.acl.Default()->nopass) {
          state.counters.rejected_connections.fetch_add(1);
          *refusal = std::string(kDenied);
          return nullptr;
        }
        return std::make_unique<keg::server::ClientSession>(state, link);
      },
      &state.limits);
  // Before Start: an INFO from the first client may read it.
  state.traffic = [&server] { return server.GetTraffic(); };
  state.io_barrier = [&server](std::function<void()> done) { server.Barrier(std::move(done)); };
  state.adopt = [&server](int fd, std::function<std::unique_ptr<keg::net::Session>(keg::net::Link*)> make) {
    return server.Adopt(fd, std::move(make));
  };
  // SIGINT / SIGTERM shut down cleanly from the moment a client can see the port (a signal sent
  // right after the first PING must not find the default action, which kills).
  asio::io_context main_io;
  asio::signal_set signals(main_io, SIGINT, SIGTERM);
  // A second signal while the first shutdown waits for the replicas: at once (Redis's "You
  // insist").
  std::function<void(const asio::error_code&, int)> on_signal = [&](const asio::error_code& e, int sig) {
    if (e) return;
    const bool again = shutdown.requested();
    // shutdown-on-sigterm / -sigint `now`: without waiting for the replicas either.
    std::string flags;
    {
      std::lock_guard lock(state.config_mu);
      flags = sig == SIGINT ? state.config.shutdown_on_sigint : state.config.shutdown_on_sigterm;
    }
    const bool now = again || flags.find("now") != std::string::npos;
    spdlog::warn("Received {} scheduling shutdown{}", sig == SIGINT ? "SIGINT" : "SIGTERM",
                 again ? " (again: without waiting for the replicas)" : now ? " (now: without waiting for the replicas)" : "...");
    shutdown.Request(now);
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);
  std::thread signal_thread([&] {
    pthread_setname_np(pthread_self(), "keg-signals");  // (else the process's name: the first loop's, see below)
    main_io.run();
  });
  // Bound first, accepting last: what a client may read from its first command on (INFO's
  // tcp_port, the role the replicaof directive sets) is in place before one is accepted.
  const bool listening = server.Listen(&error);
  if (listening) state.port = server.port();
  // The replicaof directive: a replica before any client is served, as Redis (which sets it while
  // it loads its config), so no client finds a writable primary and no key expires here meanwhile.
  // The link waits until the server is ready (ReplicaOf::Run).
  std::string replicaof;
  {
    std::lock_guard lock(state.config_mu);
    replicaof = state.config.replicaof;
  }
  if (const size_t space = replicaof.find(' '); listening && space != std::string::npos) {
    (void)state.replica_of.Follow(replicaof.substr(0, space), std::stoll(replicaof.substr(space + 1)));
  }
  // Ready before the first client is accepted: what waits for it (the replica link, a full
  // sync's sender, which take "not ready" for "shutting down") never sees a served client first.
  state.ready.store(listening, std::memory_order_release);
  if (!listening || !server.Start(&error)) {
    spdlog::critical("{}", error);
    state.ready.store(false, std::memory_order_release);
    state.replica_of.Stop();
    if (error.rfind("Failed opening Unix socket", 0) != 0) {
      spdlog::warn("Failed listening on port {} (TCP), aborting.", cfg.port);  // (Redis's words: its tests match them)
    }
    main_io.stop();
    signal_thread.join();
    (void)state.store->Close();  // nothing was written; the bind error is what matters
    spdlog::shutdown();
    return 1;
  }
  state.sampler.Start([&state, &server] {
    // Every 100 ms, as Redis's serverCron: the tracking table back under tracking-table-max-keys.
    if (!state.cron_paused.load(std::memory_order_relaxed)) {  // DEBUG PAUSE-CRON
      (void)state.tracking.Limit(state.tracking_table_max_keys.load(std::memory_order_relaxed));
    }
    const keg::net::Traffic t = server.GetTraffic();
    return keg::server::Sampler::Reading{state.counters.commands.load(), t.bytes_in, t.bytes_out,
                                         keg::server::UsedMemory()};
  });
  spdlog::info("Ready to accept connections on port {}", state.port);
  if (!cfg.unixsocket.empty()) spdlog::info("The server is now ready to accept connections at {}", cfg.unixsocket);

  // Serving. The first I/O loop runs on this, the process's main thread (first_loop_on_caller: a
  // SIGSTOP stops it before it handles anything more, as Redis's event loop); the wait for a
  // shutdown and the shutdown itself run on keg-control, whose server.Stop ends that loop.
  int exit_code = 0;
  std::thread control([&] {
    pthread_setname_np(pthread_self(), "keg-control");
    // Wait for SIGINT / SIGTERM (handled since before the port opened) or SHUTDOWN; then for the
    // replicas to catch up (shutdown-timeout), unless it is aborted.
    WaitForShutdown(state, shutdown);
    main_io.stop();
    signal_thread.join();

    spdlog::info("shutting down: no new connections; finishing the writes in flight");
    server.StopAccepting();
    state.ready.store(false, std::memory_order_release);
    state.sampler.Stop();  // it reads the server's traffic
    state.failover.Stop();
    state.pause.PauseForFailover(false);
    state.pause.Unpause();  // paused connections run their commands before the store closes
    state.cold_reads->Stop();  // finishes the fetches queued (their commands then run)
    state.blocking.Stop();  // its thread queues writes (serving blocked clients): not once the store goes
    state.replica_of.Stop();  // a sync being loaded writes to the store
    state.jobs.Wait();  // snapshots being sent read the store
    // Close drains the writer queue (their replies are posted to the still-running I/O threads),
    // fsyncs and releases the directory lock.
    s = state.store->Close();
    if (http) http->Stop();  // before the store goes: a scrape may be reading its stats
    server.Stop();
    state.store.reset();
    if (s.ok() && state.repl.active()) {
      // Every write up to the stream's end is in the closed data files (the master link applies
      // nothing once replica_of stopped): a restart continues from here.
      const keg::server::SavedHistory history = state.repl.Current();
      if (std::string why = keg::server::SaveHistory(history_path, history); !why.empty()) {
        spdlog::error("replication: saving {}: {} (the next start does a full sync)", history_path, why);
      } else {
        spdlog::info("replication: saved offset {} of history {} for a partial resync after restart", history.offset,
                     history.replid);
      }
    }
    if (!s.ok()) {
      spdlog::error("closing the store: {}", s.ToString());
      spdlog::shutdown();
      exit_code = 1;
      return;
    }
    spdlog::info("keg is now ready to exit, bye bye...");
    spdlog::shutdown();
  });
  server.RunFirstLoop();
  control.join();
  return exit_code;
}
