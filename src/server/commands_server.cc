// Server commands: INFO, CONFIG, COMMAND, TIME, SAVE / BGSAVE / LASTSAVE, BGREWRITEAOF, COMPACT,
// SHUTDOWN, SLOWLOG, LATENCY; and the table itself.
#include <fcntl.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <span>
#include <spdlog/spdlog.h>

#include "resp/numbers.h"
#include "server/acl.h"
#include "server/command.h"
#include "server/glob.h"
#include "server/session.h"
#include "server/scripting.h"
#include "server/state.h"
#include "server/stats_clock.h"
#include "server/version.h"
#include "store/format.h"

// jemalloc's control calls, present when keg-server is linked with it (its Release builds; not the
// sanitizer builds nor the test binaries, which use glibc's malloc): weak, so null otherwise.
extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen) __attribute__((weak));
extern "C" void malloc_stats_print(void (*write_cb)(void*, const char*), void* cbopaque, const char* opts)
    __attribute__((weak));

namespace keg::server {

std::string SubcommandSyntaxError(Ctx& c) {
  return "unknown subcommand or wrong number of arguments for '" +
         std::string(c.arg(1)).substr(0, 128) + "'. Try " + ToUpper(c.arg(0)) + " HELP.";
}

void Help(Ctx& c, std::initializer_list<std::string_view> lines) {
  c.out().ArrayHeader(lines.size() + 3);
  c.out().SimpleString(ToUpper(c.arg(0)) + " <subcommand> [<arg> [value] [opt] ...]. Subcommands are:");
  for (std::string_view l : lines) c.out().SimpleString(l);
  c.out().SimpleString("HELP");
  c.out().SimpleString("    Prints this help.");
}

namespace {

// INFO's mem_allocator, as Redis names it: "jemalloc-5.3.0" (keg-server's Release builds) or "libc".
std::string AllocatorName() {
  const char* version = nullptr;
  size_t size = sizeof(version);
  if (mallctl != nullptr && mallctl("version", &version, &size, nullptr, 0) == 0 && version != nullptr) {
    const std::string_view v(version);
    return "jemalloc-" + std::string(v.substr(0, v.find('-')));  // "5.3.0-0-g54eaed1d..." -> 5.3.0
  }
  return "libc";
}

std::string Section(std::string_view title) { return "# " + std::string(title) + "\r\n"; }

// Redis's bytesToHuman: "200B", "1.49M".
std::string Human(int64_t n) {
  const double d = static_cast<double>(n);
  char buf[64];
  if (n < 1024) {
    std::snprintf(buf, sizeof(buf), "%lldB", static_cast<long long>(n));
  } else if (n < 1024ll * 1024) {
    std::snprintf(buf, sizeof(buf), "%.2fK", d / 1024);
  } else if (n < 1024ll * 1024 * 1024) {
    std::snprintf(buf, sizeof(buf), "%.2fM", d / (1024.0 * 1024));
  } else if (n < 1024ll * 1024 * 1024 * 1024) {
    std::snprintf(buf, sizeof(buf), "%.2fG", d / (1024.0 * 1024 * 1024));
  } else {
    std::snprintf(buf, sizeof(buf), "%.2fT", d / (1024.0 * 1024 * 1024 * 1024));
  }
  return buf;
}

std::string Fixed(double v, int decimals = 2) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  return buf;
}


std::string Seconds(const timeval& tv) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%ld.%06ld", static_cast<long>(tv.tv_sec), static_cast<long>(tv.tv_usec));
  return buf;
}

void Field(std::string* s, std::string_view name, const std::string& value) {
  *s += name;
  *s += ':';
  *s += value;
  *s += "\r\n";
}
template <typename T>
void Field(std::string* s, std::string_view name, T value) {
  Field(s, name, std::to_string(value));
}

std::string InfoText(ServerState& st, const std::vector<std::string>& wanted) {
  const bool all = wanted.empty() || std::count(wanted.begin(), wanted.end(), "all") ||
                   std::count(wanted.begin(), wanted.end(), "everything") ||
                   std::count(wanted.begin(), wanted.end(), "default");
  const bool everything = std::count(wanted.begin(), wanted.end(), "all") ||
                          std::count(wanted.begin(), wanted.end(), "everything");
  auto want = [&](std::string_view name) {
    // As Redis: commandstats and latencystats only when asked for or with all / everything.
    if ((name == "commandstats" || name == "latencystats") && !everything) {
      return std::count(wanted.begin(), wanted.end(), std::string(name)) > 0;
    }
    return all || std::count(wanted.begin(), wanted.end(), std::string(name)) > 0;
  };
  const int64_t now = store::NowMs();
  const store::Stats stats = st.store->GetStats();
  const ResidentMemory resident = Resident();
  const int64_t used = resident.anon;  // UsedMemory(), without reading /proc again
  st.sampler.NotePeak(used);
  net::Traffic traffic = st.traffic ? st.traffic() : net::Traffic{};
  {
    std::lock_guard lock(st.traffic_base_mu);  // since the last CONFIG RESETSTAT
    const net::Traffic& base = st.traffic_base;
    traffic.bytes_in -= std::min(traffic.bytes_in, base.bytes_in);
    traffic.bytes_out -= std::min(traffic.bytes_out, base.bytes_out);
    traffic.reads -= std::min(traffic.reads, base.reads);
    traffic.writes -= std::min(traffic.writes, base.writes);
    traffic.threaded_reads -= std::min(traffic.threaded_reads, base.threaded_reads);
    traffic.threaded_writes -= std::min(traffic.threaded_writes, base.threaded_writes);
  }
  // CPU by thread (/proc/self/task), read once for the CPU and Keg sections.
  std::optional<std::vector<std::pair<std::string, std::pair<double, double>>>> thread_cpu;
  auto threads = [&]() -> const auto& {
    if (!thread_cpu) thread_cpu = ThreadCpuSeconds();
    return *thread_cpu;
  };
  std::string s;
  auto begin = [&](std::string_view title) {
    if (!s.empty()) s += "\r\n";
    s += Section(title);
  };
  if (want("server")) {
    begin("Server");
    utsname u{};
    uname(&u);
    Field(&s, "redis_version", std::string(kRedisVersion));
    Field(&s, "redis_git_sha1", std::string("00000000"));
    Field(&s, "redis_git_dirty", 0);
    Field(&s, "redis_build_id", std::string("0"));
    Field(&s, "redis_mode", std::string("standalone"));
    Field(&s, "os", std::string(u.sysname) + " " + u.release + " " + u.machine);
    Field(&s, "arch_bits", 64);
    Field(&s, "monotonic_clock", std::string("POSIX clock_gettime"));
    Field(&s, "multiplexing_api", std::string("epoll"));
    Field(&s, "atomicvar_api", std::string("c11-builtin"));
    Field(&s, "gcc_version", std::to_string(__GNUC__) + "." + std::to_string(__GNUC_MINOR__) + "." +
                                 std::to_string(__GNUC_PATCHLEVEL__));
    Field(&s, "process_id", static_cast<int64_t>(getpid()));
    Field(&s, "process_supervised", std::string("no"));
    Field(&s, "run_id", st.run_id);
    Field(&s, "tcp_port", st.port.load());
    Field(&s, "server_time_usec", now * 1000);
    Field(&s, "uptime_in_seconds", (now - st.start_ms) / 1000);
    Field(&s, "uptime_in_days", (now - st.start_ms) / 86400000);
    // keg has no server cron at a configurable rate: the hz directive is reported as set.
    int64_t hz = 10;
    {
      std::lock_guard lock(st.config_mu);
      hz = st.config.hz;
    }
    Field(&s, "hz", hz);
    Field(&s, "configured_hz", hz);
    Field(&s, "lru_clock", (now / 1000) & ((1 << 24) - 1));
    Field(&s, "executable", st.executable);
    Field(&s, "config_file", st.config_file);
    Field(&s, "keg_version", std::string(kKegVersion));
    int64_t io_threads = 1;
    {
      std::lock_guard lock(st.config_mu);
      io_threads = st.config.io_threads;
    }
    Field(&s, "io_threads_active", io_threads > 1 ? 1 : 0);
    if (const int64_t until = st.shutdown_deadline_ms.load(std::memory_order_relaxed); until != 0) {
      Field(&s, "shutdown_in_milliseconds", std::max<int64_t>(until - MonoMs(), 0));
    }
  }
  if (want("clients")) {
    begin("Clients");
    size_t max_input = 0;
    size_t max_output = 0;
    size_t connected = 0;  // as Redis's: every connection but its replicas' (the primary's counts)
    st.clients.ForEach([&](ClientSession& c) {
      max_input = std::max(max_input, c.link().query_buffer_bytes());
      max_output = std::max(max_output, c.link().output_bytes());
      if (c.client_type() != "replica") ++connected;
    });
    Field(&s, "connected_clients", connected);
    Field(&s, "cluster_connections", 0);
    Field(&s, "maxclients", st.maxclients.load());
    Field(&s, "client_recent_max_input_buffer", max_input);
    // The largest of the clients' unsent replies now (CLIENT LIST's omem; Redis keeps the peak
    // of the last few seconds).
    Field(&s, "client_recent_max_output_buffer", max_output);
    Field(&s, "blocked_clients", static_cast<int64_t>(st.pause.parked() + st.blocking.blocked() + st.repl.waiting() + st.ShutdownWaiters()));
    Field(&s, "tracking_clients", st.tracking.clients());
    Field(&s, "clients_in_timeout_table", 0);
  }
  if (want("memory")) {
    begin("Memory");
    // used_memory, the RSS and the allocator fields are all the process's own resident pages (the
    // data files' mapped pages are page cache: Keg's data_files_resident_bytes), so every
    // fragmentation ratio is 1. keg does not ask glibc for its allocation counters: mallinfo2
    // walks the whole heap, far too slow for INFO.
    const int64_t peak = std::max(st.sampler.peak_memory(), used);
    const auto dataset = static_cast<int64_t>(stats.keydir_bytes + stats.collection_index_bytes);
    const int64_t overhead = std::max(used - dataset, st.startup_memory);
    const int64_t system = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
    Field(&s, "used_memory", used);
    Field(&s, "used_memory_human", Human(used));
    Field(&s, "used_memory_rss", used);
    Field(&s, "used_memory_rss_human", Human(used));
    Field(&s, "used_memory_peak", peak);
    Field(&s, "used_memory_peak_human", Human(peak));
    Field(&s, "used_memory_peak_perc", Fixed(peak == 0 ? 0 : 100.0 * static_cast<double>(used) / static_cast<double>(peak)) + "%");
    Field(&s, "used_memory_overhead", overhead);
    Field(&s, "used_memory_startup", st.startup_memory);
    Field(&s, "used_memory_dataset", dataset);
    Field(&s, "used_memory_dataset_perc",
          Fixed(used <= st.startup_memory ? 0 : 100.0 * static_cast<double>(dataset) / static_cast<double>(used - st.startup_memory)) + "%");
    for (const char* f : {"allocator_allocated", "allocator_active", "allocator_resident"}) Field(&s, f, used);
    Field(&s, "total_system_memory", system);
    Field(&s, "total_system_memory_human", Human(system));
    // Scripts: the Lua states' memory (as of the last script run), the cached bodies, functions.
    ScriptEngine& eng = *st.scripts;
    const int64_t lua = eng.lua_memory();
    const auto scripts_mem = static_cast<int64_t>(eng.cache().memory());
    const auto& fns = st.scripts->functions();
    Field(&s, "used_memory_lua", lua);
    Field(&s, "used_memory_vm_eval", lua);
    Field(&s, "used_memory_lua_human", Human(lua));
    Field(&s, "used_memory_scripts_eval", scripts_mem);
    Field(&s, "number_of_cached_scripts", static_cast<int64_t>(eng.cache().size()));
    Field(&s, "number_of_functions", static_cast<int64_t>(fns.function_count()));
    Field(&s, "number_of_libraries", static_cast<int64_t>(fns.library_count()));
    Field(&s, "used_memory_vm_functions", 0);
    Field(&s, "used_memory_vm_total", lua);
    Field(&s, "used_memory_vm_total_human", Human(lua));
    Field(&s, "used_memory_functions", 0);
    Field(&s, "used_memory_scripts", scripts_mem);
    Field(&s, "used_memory_scripts_human", Human(scripts_mem));
    Field(&s, "maxmemory", 0);
    Field(&s, "maxmemory_human", std::string("0B"));
    Field(&s, "maxmemory_policy", std::string("noeviction"));
    for (const char* f : {"allocator_frag_ratio", "allocator_rss_ratio", "rss_overhead_ratio", "mem_fragmentation_ratio"}) {
      Field(&s, f, std::string("1.00"));
    }
    for (const char* f : {"allocator_frag_bytes", "allocator_rss_bytes", "rss_overhead_bytes", "mem_fragmentation_bytes"}) {
      Field(&s, f, 0);
    }
    const uint64_t repl_buffers = st.repl.buffer_bytes();
    Field(&s, "mem_not_counted_for_evict", 0);
    Field(&s, "mem_replication_backlog", static_cast<int64_t>(std::min(repl_buffers, st.repl.backlog_size())));
    Field(&s, "mem_total_replication_buffers", static_cast<int64_t>(repl_buffers));
    for (const char* f : {"mem_clients_slaves", "mem_clients_normal", "mem_cluster_links", "mem_aof_buffer"}) {
      Field(&s, f, 0);
    }
    Field(&s, "mem_allocator", AllocatorName());
    Field(&s, "active_defrag_running", 0);
    Field(&s, "lazyfree_pending_objects", 0);
    Field(&s, "lazyfreed_objects", 0);
  }
  if (want("persistence")) {
    begin("Persistence");
    // keg never forks: the fork and copy-on-write fields are Redis's idle values. SAVE / BGSAVE are
    // fsyncs (rdb_saves counts them); compaction is keg's AOF rewrite; a full sync's snapshot being
    // built is its BGSAVE in progress.
    // A replica loading a full sync: into staging databases while serving the old data set (Redis's
    // async loading), or in place (past 128 databases, docs/format.md).
    Field(&s, "loading", st.loading.load() ? 1 : 0);
    Field(&s, "async_loading", st.async_loading.load() ? 1 : 0);
    for (const char* f : {"current_cow_peak", "current_cow_size", "current_cow_size_age", "current_fork_perc",
                          "current_save_keys_processed", "current_save_keys_total"}) {
      Field(&s, f, 0);
    }
    Field(&s, "rdb_changes_since_last_save", st.counters.changes_since_save.load());
    Field(&s, "rdb_bgsave_in_progress", st.snapshots_building.load(std::memory_order_relaxed) > 0 ? 1 : 0);
    Field(&s, "rdb_last_save_time", st.last_save_s.load());
    Field(&s, "rdb_last_bgsave_status", std::string("ok"));
    Field(&s, "rdb_last_bgsave_time_sec", -1);
    Field(&s, "rdb_current_bgsave_time_sec", -1);
    Field(&s, "rdb_saves", st.saves.load());
    Field(&s, "rdb_last_cow_size", 0);
    Field(&s, "rdb_last_load_keys_expired", st.load_keys_expired.load(std::memory_order_relaxed));
    Field(&s, "rdb_last_load_keys_loaded", stats.recovery_records);
    Field(&s, "aof_enabled", 1);
    Field(&s, "aof_rewrite_in_progress", st.compaction_running.load() ? 1 : 0);
    Field(&s, "aof_rewrite_scheduled", 0);
    Field(&s, "aof_last_rewrite_time_sec", stats.compactions == 0 ? -1 : stats.last_compaction_ms / 1000);
    Field(&s, "aof_current_rewrite_time_sec", -1);
    Field(&s, "aof_last_bgrewrite_status", std::string(stats.compaction_failures == 0 ? "ok" : "err"));
    Field(&s, "aof_rewrites", stats.compactions);
    Field(&s, "aof_rewrites_consecutive_failures", 0);
    Field(&s, "aof_last_write_status", std::string(stats.writes_failed || stats.last_write_failed ? "err" : "ok"));
    Field(&s, "aof_last_cow_size", 0);
    Field(&s, "module_fork_in_progress", 0);
    Field(&s, "module_fork_last_cow_size", 0);
  }
  if (want("stats")) {
    begin("Stats");
    Field(&s, "total_connections_received", st.counters.connections.load());
    Field(&s, "total_commands_processed", st.counters.commands.load());
    Field(&s, "instantaneous_ops_per_sec", static_cast<int64_t>(st.sampler.ops_per_sec()));
    Field(&s, "total_net_input_bytes", traffic.bytes_in);
    Field(&s, "total_net_output_bytes", traffic.bytes_out);
    Field(&s, "total_net_repl_input_bytes", 0);
    Field(&s, "total_net_repl_output_bytes", 0);
    Field(&s, "instantaneous_input_kbps", Fixed(st.sampler.input_kbps()));
    Field(&s, "instantaneous_output_kbps", Fixed(st.sampler.output_kbps()));
    Field(&s, "instantaneous_input_repl_kbps", std::string("0.00"));
    Field(&s, "instantaneous_output_repl_kbps", std::string("0.00"));
    Field(&s, "rejected_connections", st.counters.rejected_connections.load());
    // Features keg does not have yet (replication, eviction, pub/sub, fork, MIGRATE, defrag,
    // tracking) report what Redis reports while they are idle.
    Field(&s, "sync_full", st.repl.sync_full.load());
    Field(&s, "sync_partial_ok", st.repl.sync_partial_ok.load());
    Field(&s, "sync_partial_err", st.repl.sync_partial_err.load());
    Field(&s, "expired_keys", stats.expired_keys);
    Field(&s, "expired_stale_perc", std::string("0.00"));
    Field(&s, "expired_time_cap_reached_count", stats.expire_time_cap_reached);
    Field(&s, "expire_cycle_cpu_milliseconds", stats.expire_cycle_us / 1000);
    Field(&s, "evicted_keys", 0);
    Field(&s, "evicted_clients", 0);
    Field(&s, "total_eviction_exceeded_time", 0);
    Field(&s, "current_eviction_exceeded_time", 0);
    Field(&s, "keyspace_hits", st.counters.keyspace_hits.load());
    Field(&s, "keyspace_misses", st.counters.keyspace_misses.load());
    Field(&s, "pubsub_channels", st.pubsub.channel_count());
    Field(&s, "pubsub_patterns", st.pubsub.pattern_count());
    Field(&s, "pubsubshard_channels", st.pubsub.shard_channel_count());
    Field(&s, "latest_fork_usec", 0);
    Field(&s, "total_forks", 0);
    Field(&s, "migrate_cached_sockets", 0);
    Field(&s, "slave_expires_tracked_keys", 0);
    Field(&s, "active_defrag_hits", 0);
    Field(&s, "active_defrag_misses", 0);
    Field(&s, "active_defrag_key_hits", 0);
    Field(&s, "active_defrag_key_misses", 0);
    Field(&s, "total_active_defrag_time", 0);
    Field(&s, "current_active_defrag_time", 0);
    Field(&s, "tracking_total_keys", st.tracking.keys());
    Field(&s, "tracking_total_items", st.tracking.items());
    Field(&s, "tracking_total_prefixes", st.tracking.prefixes());
    Field(&s, "unexpected_error_replies", st.unexpected_error_replies.load(std::memory_order_relaxed));
    Field(&s, "total_error_replies", st.counters.error_replies.load());
    Field(&s, "dump_payload_sanitizations", 0);
    Field(&s, "total_reads_processed", traffic.reads);
    Field(&s, "total_writes_processed", traffic.writes);
    Field(&s, "io_threaded_reads_processed", traffic.threaded_reads);
    Field(&s, "io_threaded_writes_processed", traffic.threaded_writes);
    Field(&s, "reply_buffer_shrinks", 0);
    Field(&s, "reply_buffer_expands", 0);
  }
  if (want("replication")) {
    begin("Replication");
    if (st.replica_of.active()) {
      // A replica's fields, in Redis's order (Sentinel reads them).
      const ReplicaOf::Status me = st.replica_of.status();
      int64_t priority = 100;
      bool read_only = true;
      bool announced = true;
      {
        std::lock_guard lock(st.config_mu);
        priority = st.config.replica_priority;
        read_only = st.config.replica_read_only;
        announced = st.config.replica_announced;
      }
      Field(&s, "role", std::string("slave"));
      Field(&s, "master_host", me.host);
      Field(&s, "master_port", me.port);
      Field(&s, "master_link_status", std::string(me.link_up ? "up" : "down"));
      Field(&s, "master_last_io_seconds_ago", me.last_io_s);
      Field(&s, "master_sync_in_progress", me.sync_in_progress ? 1 : 0);
      Field(&s, "slave_read_repl_offset", static_cast<int64_t>(me.read_offset));
      Field(&s, "slave_repl_offset", static_cast<int64_t>(me.offset));
      if (!me.link_up) Field(&s, "master_link_down_since_seconds", me.down_since_s);
      Field(&s, "slave_priority", priority);
      Field(&s, "slave_read_only", read_only ? 1 : 0);
      Field(&s, "replica_announced", announced ? 1 : 0);
    } else {
      Field(&s, "role", std::string("master"));
    }
    const std::vector<Replica> replicas = st.repl.Replicas();
    Field(&s, "connected_slaves", static_cast<int64_t>(replicas.size()));
    const int64_t now_ms = MonoMs();
    const int64_t min_to_write = st.min_replicas_to_write.load(std::memory_order_relaxed);
    const int64_t min_max_lag = st.min_replicas_max_lag.load(std::memory_order_relaxed);
    if (min_to_write > 0 && min_max_lag > 0) {
      Field(&s, "min_slaves_good_slaves", static_cast<int64_t>(st.repl.GoodReplicas(min_max_lag, now_ms)));
    }
    for (size_t i = 0; i < replicas.size(); ++i) {
      const Replica& r = replicas[i];
      const int64_t lag = r.ack_ms == 0 ? 0 : (now_ms - r.ack_ms) / 1000;
      Field(&s, "slave" + std::to_string(i),
            "ip=" + r.ip + ",port=" + std::to_string(r.port) + ",state=" + (r.online ? "online" : "wait_bgsave") +
                ",offset=" + std::to_string(r.acked) + ",lag=" + std::to_string(lag));
    }
    Field(&s, "master_failover_state", std::string(st.failover.state_name()));
    Field(&s, "master_replid", st.repl.replid());
    Field(&s, "master_replid2", st.repl.replid2());
    Field(&s, "master_repl_offset", static_cast<int64_t>(st.repl.offset()));
    Field(&s, "second_repl_offset", st.repl.second_offset());
    const auto [first, histlen] = st.repl.BacklogRange();
    Field(&s, "repl_backlog_active", st.repl.active() ? 1 : 0);
    Field(&s, "repl_backlog_size", static_cast<int64_t>(st.repl.backlog_size()));
    Field(&s, "repl_backlog_first_byte_offset", st.repl.active() ? static_cast<int64_t>(first) : 0);
    Field(&s, "repl_backlog_histlen", st.repl.active() ? static_cast<int64_t>(histlen) : 0);
  }
  if (want("cpu")) {
    begin("CPU");
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    rusage children{};
    getrusage(RUSAGE_CHILDREN, &children);
    Field(&s, "used_cpu_sys", Seconds(ru.ru_stime));
    Field(&s, "used_cpu_user", Seconds(ru.ru_utime));
    Field(&s, "used_cpu_sys_children", Seconds(children.ru_stime));
    Field(&s, "used_cpu_user_children", Seconds(children.ru_utime));
    // Redis's main thread runs its event loop: keg's first I/O thread.
    double main_user = 0, main_sys = 0;
    for (const auto& [name, cpu] : threads()) {
      if (name == "keg-io-0") {
        main_user = cpu.first;
        main_sys = cpu.second;
      }
    }
    Field(&s, "used_cpu_sys_main_thread", Fixed(main_sys, 6));
    Field(&s, "used_cpu_user_main_thread", Fixed(main_user, 6));
  }
  if (want("modules")) begin("Modules");
  if (want("commandstats")) {
    begin("Commandstats");
    auto line = [&](const Command& cmd, const std::string& name) {
      const CommandStats::Totals cs = cmd.stats->Read();
      const uint64_t calls = cs.calls;
      const uint64_t rejected = cs.rejected_calls;
      const uint64_t failed = cs.failed_calls;
      if (!cs.any()) return;
      const uint64_t usec = cs.nsec / 1000;
      char per_call[32];
      std::snprintf(per_call, sizeof(per_call), "%.2f",
                    calls == 0 ? 0.0 : static_cast<double>(cs.nsec) / 1000.0 / static_cast<double>(calls));
      Field(&s, "cmdstat_" + name,
            "calls=" + std::to_string(calls) + ",usec=" + std::to_string(usec) +
                ",usec_per_call=" + per_call + ",rejected_calls=" + std::to_string(rejected) +
                ",failed_calls=" + std::to_string(failed));
    };
    for (const Command& cmd : AllCommands()) {
      line(cmd, std::string(cmd.name));
      for (const Command& sub : cmd.subcommands) {
        line(sub, std::string(cmd.name) + "|" + std::string(sub.name));
      }
    }
  }
  if (want("latencystats")) {
    begin("Latencystats");
    std::vector<double> percentiles;
    {
      std::lock_guard lock(st.config_mu);
      percentiles = st.config.latency_tracking_info_percentiles;
    }
    auto line = [&](const Command& cmd, const std::string& name) {
      const CommandStats::Totals cs = cmd.stats->Read();
      // As Redis: a command with no latency sample (latency-tracking no) is not listed.
      if (cs.calls == 0 || std::all_of(std::begin(cs.latency), std::end(cs.latency), [](uint64_t n) { return n == 0; })) return;
      std::string v;
      for (double p : percentiles) {
        char num[32];
        std::snprintf(num, sizeof(num), "%.3f", cs.Percentile(p));
        if (!v.empty()) v += ',';
        v += "p" + FormatPercentile(p) + "=" + num;
      }
      Field(&s, "latency_percentiles_usec_" + name, v);
    };
    for (const Command& cmd : AllCommands()) {
      line(cmd, std::string(cmd.name));
      for (const Command& sub : cmd.subcommands) line(sub, std::string(cmd.name) + "|" + std::string(sub.name));
    }
  }
  if (want("errorstats")) {
    begin("Errorstats");
    for (const auto& [name, count] : st.errors.Snapshot()) {
      Field(&s, "errorstat_" + name, "count=" + std::to_string(count));
    }
  }
  if (want("cluster")) {
    begin("Cluster");
    Field(&s, "cluster_enabled", 0);
  }
  if (want("keyspace")) {
    begin("Keyspace");
    for (uint32_t db = 0; db < st.store->Databases(); ++db) {
      const uint64_t keys = st.store->KeyCount(db);
      if (keys == 0) continue;
      Field(&s, "db" + std::to_string(db), "keys=" + std::to_string(keys) +
                                               ",expires=" + std::to_string(st.store->ExpiringKeys(db)) + ",avg_ttl=0");
    }
  }
  if (want("keg")) {
    begin("Keg");
    const uint64_t live = stats.total_bytes - std::min(stats.dead_bytes, stats.total_bytes);
    Field(&s, "data_files", stats.data_files);
    Field(&s, "data_bytes", stats.total_bytes);
    Field(&s, "live_bytes", live);
    Field(&s, "dead_bytes", stats.dead_bytes);
    char frag[32];
    std::snprintf(frag, sizeof(frag), "%.4f",
                  stats.total_bytes == 0 ? 0.0 : static_cast<double>(stats.dead_bytes) / static_cast<double>(stats.total_bytes));
    Field(&s, "fragmentation", std::string(frag));
    Field(&s, "keydir_bytes", stats.keydir_bytes);
    char per_key[32];
    std::snprintf(per_key, sizeof(per_key), "%.2f",
                  stats.keys == 0 ? 0.0 : static_cast<double>(stats.keydir_bytes) / static_cast<double>(stats.keys));
    Field(&s, "keydir_bytes_per_key", std::string(per_key));
    // Hashes and sets stored per element (docs/types.md): how many, their elements, their indexes.
    Field(&s, "large_collections", stats.collections);
    Field(&s, "large_collection_elements", stats.collection_elements);
    Field(&s, "large_collection_index_bytes", stats.collection_index_bytes);
    Field(&s, "compactions", stats.compactions);
    Field(&s, "compaction_in_progress", st.compaction_running.load() ? 1 : 0);
    Field(&s, "compaction_reclaimed_bytes", stats.compaction_bytes_reclaimed);
    Field(&s, "last_compaction_ms", stats.last_compaction_ms);
    Field(&s, "writes_failed", stats.writes_failed ? 1 : 0);
    std::string fsync;
    {
      std::lock_guard lock(st.config_mu);
      fsync = st.config.appendfsync == store::FsyncPolicy::kAlways ? "always"
              : st.config.appendfsync == store::FsyncPolicy::kEverySec ? "everysec" : "no";
    }
    Field(&s, "appendfsync", fsync);
    // Writes: group commits and their fsyncs.
    auto histogram = [&](std::string_view name, const store::Histogram& h) {
      std::string v;
      for (size_t i = 0; i < store::Histogram::kBuckets; ++i) {
        if (h.buckets[i] == 0) continue;
        if (!v.empty()) v += ',';
        v += std::to_string(store::Histogram::UpperBound(i)) + "=" + std::to_string(h.buckets[i]);
      }
      Field(&s, name, v);
    };
    Field(&s, "bytes_written", stats.bytes_written);
    Field(&s, "group_commits", stats.groups);
    Field(&s, "group_commit_records", stats.group_records);
    Field(&s, "group_commit_records_per_commit", Fixed(stats.groups == 0 ? 0.0
                                                       : static_cast<double>(stats.group_records) / static_cast<double>(stats.groups)));
    histogram("group_commit_records_histogram", stats.group_size);
    Field(&s, "fsyncs", stats.fsync_usec.count);
    Field(&s, "fsync_usec", stats.fsync_usec.sum);
    Field(&s, "fsync_usec_percentiles", "p50=" + std::to_string(stats.fsync_usec.Percentile(50)) +
                                            ",p99=" + std::to_string(stats.fsync_usec.Percentile(99)) +
                                            ",p99.9=" + std::to_string(stats.fsync_usec.Percentile(99.9)));
    histogram("fsync_usec_histogram", stats.fsync_usec);
    Field(&s, "writer_queue_depth", stats.writer_queue);
    Field(&s, "compaction_bytes_read", stats.compaction_bytes_read);
    Field(&s, "compaction_bytes_written", stats.compaction_bytes_written);
    Field(&s, "compaction_total_ms", stats.compaction_total_ms);
    Field(&s, "compaction_rounds", stats.compaction_rounds);
    Field(&s, "compaction_failures", stats.compaction_failures);
    Field(&s, "compaction_status", std::string(stats.compaction_failures == 0 ? "ok" : "err"));
    Field(&s, "recovery_ms", stats.recovery_ms);
    Field(&s, "recovery_records", stats.recovery_records);
    Field(&s, "recovery_hint_files", stats.recovery_hint_files);
    Field(&s, "sealed_data_files", stats.sealed_files);
    Field(&s, "hint_files", stats.hint_files);
    // File-backed resident pages of the process: the mapped data files in the page cache (and the
    // executable's few MB).
    Field(&s, "data_files_resident_bytes", resident.file);
    // Cold reads (docs/store.md): commands that waited for the read pool, the keys it fetched, the
    // time those commands waited in all, and whether the last sweep found any data file page out
    // of the page cache.
    if (const ColdReads* cold = st.cold_reads.get()) {
      Field(&s, "cold_read_commands", cold->fetches());
      Field(&s, "cold_read_keys", cold->keys());
      Field(&s, "cold_read_io_uring_commands", cold->ring_fetches());
      Field(&s, "cold_read_wait_usec", cold->wait_usec());
    }
    Field(&s, "data_files_maybe_cold", st.store->MaybeCold() ? 1 : 0);
    Field(&s, "data_files_pages_read_back", st.store->PagesReadBack());
    for (const auto& [name, cpu] : threads()) {
      Field(&s, "thread_cpu_" + name, "user=" + Fixed(cpu.first, 3) + ",sys=" + Fixed(cpu.second, 3));
    }
  }
  return s;
}

// INFO: built once the writer ran what was queued before it, as DBSIZE: the lazy expiries of this
// connection's reads (expired_keys, keys=) and its writes count, as in Redis. Inside EXEC at once.
void Info(Ctx& c) {
  std::vector<std::string> wanted;
  for (size_t i = 1; i < c.argc(); ++i) wanted.push_back(ToLower(c.arg(i)));
  auto reply = [](ServerState& st, resp::ReplyBuffer& out, const std::vector<std::string>& w) {
    const std::string text = InfoText(st, w);
    if (out.protocol() == resp::Protocol::kResp3) {
      out.Verbatim(text);
    } else {
      out.Bulk(text);
    }
  };
  if (c.inline_only()) return reply(c.server(), c.out(), wanted);
  ServerState* st = &c.server();
  ClientSession* client = &c.client();
  std::shared_ptr<net::Link> keep = client->link().Self();
  client->Suspend();
  st->store->Barrier([st, client, keep, reply, wanted = std::move(wanted)] {
    keep->Post([st, client, reply, wanted] {
      reply(*st, client->link().out(), wanted);
      client->Finish();
    });
  });
}

void ConfigCmd(Ctx& c) {
  const std::string sub = ToLower(c.arg(1));
  ServerState& st = c.server();
  if (sub == "get" && c.argc() >= 3) {
    std::vector<std::pair<std::string, std::string>> all;
    {
      std::lock_guard lock(st.config_mu);
      for (size_t i = 2; i < c.argc(); ++i) {
        for (auto& kv : GetDirectives(st.config, c.arg(i))) {
          if (std::none_of(all.begin(), all.end(), [&](const auto& x) { return x.first == kv.first; })) {
            all.push_back(std::move(kv));
          }
        }
      }
    }
    c.out().MapHeader(all.size());
    for (const auto& [k, v] : all) {
      c.out().Bulk(k);
      c.out().Bulk(v);
    }
    return;
  }
  if (sub == "set" && c.argc() >= 4) {
    if (c.argc() % 2 != 0) {
      return c.Error("Unknown option or number of arguments for CONFIG SET - '" + std::string(c.arg(2)) + "'");
    }
    std::lock_guard lock(st.config_mu);
    Config copy = st.config;
    for (size_t i = 2; i < c.argc(); i += 2) {
      // client-output-buffer-limit takes "class hard soft secs" in one value.
      const std::string_view v = c.arg(i + 1);
      const std::vector<std::string> words = SplitWords(v);
      std::vector<std::string_view> values;
      const std::string name = ToLower(c.arg(i));
      // Redis's deny-loading directives: not while a replica loads a full sync.
      if ((name == "appendonly" || name == "repl-diskless-load" || name == "dir") && st.LoadingSync()) {
        return c.out().Error("-LOADING Redis is loading the dataset in memory");
      }
      if (name == "client-output-buffer-limit") {
        values = SplitAtEachSpace(v);  // as Redis's sdssplitlen: " " is two empty words
      } else if (name == "bind") {
        values.assign(words.begin(), words.end());
      } else {
        values.push_back(v);
      }
      const std::string why = SetDirective(&copy, name, values, true);
      if (why == "Bad directive or wrong number of arguments") {
        return c.Error("Unknown option or number of arguments for CONFIG SET - '" + std::string(c.arg(i)) + "'");
      }
      if (!why.empty()) {
        return c.Error("CONFIG SET failed (possibly related to argument '" + std::string(c.arg(i)) +
                       "') - " + why);
      }
    }
    // As Redis's updateMaxclients: more clients than the descriptor limit can hold are refused
    // (the soft limit is raised first, as far as the hard one allows).
    if (copy.maxclients > st.config.maxclients) {
      const int64_t allowed = RaiseFileLimitFor(copy.maxclients, st.store->GetStats().data_files);
      if (allowed < copy.maxclients) {
        return c.Error("CONFIG SET failed (possibly related to argument 'maxclients') - The operating "
                       "system is not able to handle the specified number of clients, try with " +
                       std::to_string(allowed));
      }
    }
    st.config = std::move(copy);
    st.ApplyConfigLocked();
    return c.out().Ok();
  }
  if (sub == "resetstat" && c.argc() == 2) {
    st.counters.commands = 0;
    st.counters.rejected_connections = 0;
    st.counters.keyspace_hits = 0;
    st.counters.keyspace_misses = 0;
    st.counters.error_replies = 0;
    st.counters.connections = 0;
    st.unexpected_error_replies = 0;
    st.repl.sync_full = 0;  // (Redis's resetServerStats resets these three too)
    st.repl.sync_partial_ok = 0;
    st.repl.sync_partial_err = 0;
    st.errors.Reset();
    st.sampler.Reset();
    st.saves = 0;  // rdb_saves
    if (st.traffic) {
      const net::Traffic now = st.traffic();
      std::lock_guard lock(st.traffic_base_mu);
      st.traffic_base = now;
    }
    for (const Command& cmd : AllCommands()) {
      cmd.stats->Reset();
      for (const Command& s : cmd.subcommands) s.stats->Reset();
    }
    return c.out().Ok();
  }
  if (sub == "rewrite" && c.argc() == 2) {
    // The file keg was started with, each directive's line holding its value now, comments kept
    // (RewriteConfigText); written to a temporary file, fsynced and renamed over it.
    if (st.config_file.empty()) return c.Error("The server is running without a config file");
    std::string old_text;
    if (FILE* f = std::fopen(st.config_file.c_str(), "rb")) {
      char buf[8192];
      for (size_t n; (n = std::fread(buf, 1, sizeof(buf), f)) > 0;) old_text.append(buf, n);
      std::fclose(f);
    }
    std::string text;
    {
      std::lock_guard lock(st.config_mu);
      text = RewriteConfigText(old_text, st.config);
    }
    const std::string tmp = st.config_file + ".tmp-rewrite";
    const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    std::string error;
    if (fd < 0) {
      error = std::strerror(errno);
    } else {
      const ssize_t n = write(fd, text.data(), text.size());
      if (n != static_cast<ssize_t>(text.size()) || fsync(fd) != 0) error = n < 0 ? std::strerror(errno) : "short write";
      close(fd);
      if (error.empty() && rename(tmp.c_str(), st.config_file.c_str()) != 0) error = std::strerror(errno);
      if (!error.empty()) unlink(tmp.c_str());
    }
    if (!error.empty()) {
      spdlog::warn("CONFIG REWRITE of {} failed: {}", st.config_file, error);
      return c.Error("Rewriting config file: " + error);
    }
    spdlog::info("CONFIG REWRITE executed with success.");
    return c.out().Ok();
  }
  if (sub == "help" && c.argc() == 2) {
    return Help(c, {"GET <pattern>", "    Return parameters matching the glob-like <pattern> and their values.",
                    "SET <directive> <value>", "    Set the configuration <directive> to <value>.", "RESETSTAT",
                    "    Reset statistics reported by the INFO command.", "REWRITE",
                    "    Rewrite the configuration file."});
  }
  if (sub == "get" || sub == "set" || sub == "resetstat" || sub == "rewrite") {
    return c.Error(WrongArity("config|" + sub));
  }
  c.Error("unknown subcommand '" + std::string(c.arg(1)).substr(0, 128) + "'. Try CONFIG HELP.");
}

void CommandEntry(resp::ReplyBuffer& out, const Command& cmd, std::string_view full_name) {
  out.ArrayHeader(10);
  out.Bulk(full_name);
  out.Integer(cmd.arity);
  std::vector<std::string_view> flags;  // in Redis's order (addReplyCommandFlags)
  // EVAL and FCALL show neither (their scripts decide); their _RO forms readonly, as Redis's.
  if ((cmd.flags & kWrite) && !(cmd.flags & (kWritesCache | kRunsScript))) flags.push_back("write");
  if ((cmd.flags & kReadOnly) || ((cmd.flags & kRunsScript) && full_name.ends_with("_ro"))) flags.push_back("readonly");
  if (cmd.flags & kDenyOom) flags.push_back("denyoom");
  if (cmd.flags & kAdmin) flags.push_back("admin");
  if (cmd.flags & kPubsub) flags.push_back("pubsub");
  if (cmd.flags & kNoScript) flags.push_back("noscript");
  if (cmd.flags & kBlocking) flags.push_back("blocking");
  if (cmd.flags & kLoading) flags.push_back("loading");
  if (cmd.flags & kStale) flags.push_back("stale");
  if (cmd.flags & kSkipMonitor) flags.push_back("skip_monitor");
  if (cmd.flags & kSkipSlowlog) flags.push_back("skip_slowlog");
  if (cmd.flags & kFast) flags.push_back("fast");
  if (cmd.flags & kNoAuth) flags.push_back("no_auth");
  if (cmd.flags & kNoMandatoryKeys) flags.push_back("no_mandatory_keys");
  if (cmd.flags & kNoAsyncLoading) flags.push_back("no_async_loading");
  if (cmd.flags & kNoMulti) flags.push_back("no_multi");
  if (cmd.flags & kMovableKeys) flags.push_back("movablekeys");
  if (cmd.flags & kAllowBusy) flags.push_back("allow_busy");
  // (kMayReplicate is not shown: Redis hides may_replicate on purpose.)
  out.SetHeader(flags.size());
  for (std::string_view f : flags) out.SimpleString(f);
  out.Integer(cmd.first_key);
  out.Integer(cmd.last_key);
  out.Integer(cmd.key_step);
  std::vector<std::string_view> cats;
  std::string_view a = cmd.acl_categories;
  while (!a.empty()) {
    const size_t sp = a.find(' ');
    cats.push_back(a.substr(0, sp));
    if (sp == std::string_view::npos) break;
    a.remove_prefix(sp + 1);
  }
  out.SetHeader(cats.size());
  for (std::string_view cat : cats) out.SimpleString(cat);
  out.SetHeader(0);    // tips
  KeySpecsReply(out, cmd);
  out.ArrayHeader(cmd.subcommands.size());
  for (const Command& sub : cmd.subcommands) {
    Command full = sub;
    if (full.acl_categories.empty()) full.acl_categories = cmd.acl_categories;
    CommandEntry(out, full, std::string(cmd.name) + "|" + std::string(sub.name));
  }
}

// COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN glob]: every command and
// subcommand ("config|get") that passes the filter. keg has no modules: MODULE matches nothing.
void CommandList(Ctx& c) {
  std::string type;
  std::string arg;
  for (size_t i = 2; i < c.argc(); ++i) {
    if (EqualsIgnoreCase(c.arg(i), "filterby") && c.argc() - 1 - i == 2) {
      type = ToLower(c.arg(i + 1));
      if (type != "module" && type != "aclcat" && type != "pattern") return c.Error(err::kSyntax);
      arg = std::string(c.arg(i + 2));
      i += 2;
    } else {
      return c.Error(err::kSyntax);
    }
  }
  auto passes = [&](const Command& cmd, std::string_view full_name, std::string_view categories) {
    if (type.empty()) return true;
    if (type == "module") return false;
    if (type == "pattern") return GlobMatch(arg, full_name, /*nocase=*/true);
    // ACLCAT: the category word among the command's "@read @string ..." (Redis's known names only).
    const std::string want = "@" + ToLower(arg);
    std::string_view cats = categories;
    (void)cmd;
    while (!cats.empty()) {
      const size_t sp = cats.find(' ');
      if (cats.substr(0, sp) == want) return true;
      if (sp == std::string_view::npos) break;
      cats.remove_prefix(sp + 1);
    }
    return false;
  };
  std::vector<std::string> names;
  for (const Command& cmd : AllCommands()) {
    if (passes(cmd, cmd.name, cmd.acl_categories)) names.emplace_back(cmd.name);
    for (const Command& sub : cmd.subcommands) {
      const std::string full = std::string(cmd.name) + "|" + std::string(sub.name);
      if (passes(sub, full, sub.acl_categories.empty() ? cmd.acl_categories : sub.acl_categories)) {
        names.push_back(full);
      }
    }
  }
  c.out().ArrayHeader(names.size());
  for (const std::string& n : names) c.out().Bulk(n);
}

// COMMAND GETKEYS / GETKEYSANDFLAGS command arg...: the keys of a command line, with Redis's
// errors and Redis 7.0's key-spec flags (CommandKeys).
void CommandGetkeys(Ctx& c) {
  const bool with_flags = EqualsIgnoreCase(c.arg(1), "getkeysandflags");
  const std::span<const std::string_view> line = c.args().subspan(2);
  // As Redis's lookupCommand: a container with an argument names one of its subcommands (none:
  // an invalid command); alone it is itself (and has no keys).
  const Command* cmd = FindCommand(line[0]);
  if (cmd != nullptr && !cmd->subcommands.empty() && line.size() >= 2) cmd = FindSubcommand(*cmd, line[1]);
  if (cmd == nullptr) return c.Error("Invalid command specified");
  std::vector<size_t> positions;
  if ((cmd->flags & kMovableKeys) == 0 && !KeyPositions(*cmd, line.size(), &positions)) {
    return c.Error("The command has no key arguments");
  }
  const auto n = static_cast<int64_t>(line.size());
  if ((cmd->arity > 0 && cmd->arity != n) || n < -cmd->arity) {
    return c.Error("Invalid number of arguments specified for command");
  }
  // Redis 7.0 finds keys spec by spec and refuses a line where one spec finds none: of its
  // commands only PFMERGE has a spec that may (its sources, after the destination). (ACL checks
  // the destination of such a line all the same: CommandKeys.)
  if (cmd->name == "pfmerge" && line.size() == 2) return c.Error("Invalid arguments specified for command");
  const std::vector<KeyRef> keys = CommandKeys(*cmd, line);
  if (keys.empty()) {
    // A command whose keys may be none (EVAL, FCALL with numkeys 0: Redis's no_mandatory_keys)
    // has an empty list, as Redis's.
    if ((cmd->flags & kNoMandatoryKeys) != 0) return c.out().ArrayHeader(0);
    return c.Error("Invalid arguments specified for command");
  }
  resp::ReplyBuffer& out = c.out();
  out.ArrayHeader(keys.size());
  for (const KeyRef& k : keys) {
    if (!with_flags) {
      out.Bulk(line[k.index]);
      continue;
    }
    out.ArrayHeader(2);
    out.Bulk(line[k.index]);
    out.SetHeader(k.flags.size());
    for (std::string_view f : k.flags) out.SimpleString(f);
  }
}

// MEMORY USAGE|STATS|DOCTOR|MALLOC-STATS|PURGE|HELP. keg keeps values in its data files, not in
// RAM: a key's usage is its record in the log plus its keydir slot, and STATS reports the process
// (RSS), the keydir and the data files rather than an allocator's arenas.
void Memory(Ctx& c) {
  const std::string sub = ToLower(c.arg(1));
  resp::ReplyBuffer& out = c.out();
  if (sub == "help" && c.argc() == 2) {
    return Help(c, {"DOCTOR", "    Return memory problems reports.", "MALLOC-STATS",
                    "    Return internal statistics report from the memory allocator.", "PURGE",
                    "    Attempt to purge dirty pages for reclamation by the allocator.", "STATS",
                    "    Return information about the memory usage of the server.",
                    "USAGE <key> [SAMPLES <count>]",
                    "    Return memory in bytes used by <key> and its value. Nested values are",
                    "    sampled up to <count> times (default: 5, 0 means sample all)."});
  }
  if (sub == "usage" && c.argc() >= 3) {
    int64_t samples = 5;
    for (size_t i = 3; i < c.argc(); i += 2) {
      if (!EqualsIgnoreCase(c.arg(i), "samples") || i + 1 >= c.argc()) return c.Error(err::kSyntax);
      if (!resp::ParseInt64(c.arg(i + 1), &samples)) return c.Error(err::kNotInteger);
      if (samples < 0) return c.Error(err::kSyntax);  // (Redis's words for a negative count)
    }
    store::ValueView v;
    const bool found = c.Lookup(c.arg(2), &v);
    if (c.read_failed()) return c.ReplyReadError();
    if (!found) return out.Null();
    constexpr int64_t kKeydirSlot = 16;
    auto usage = static_cast<int64_t>(store::format::RecordSize(c.arg(2).size(), v.value.size())) + kKeydirSlot;
    if (v.kind == store::format::kKindHead) {
      // A collection stored per element: its elements' records and index entries (12 bytes, about
      // 70% full), estimated from `samples` of them (0: all), as Redis samples nested values.
      const uint64_t inc = store::format::IncarnationOf(v.value);
      const uint64_t count = c.ElementCount(inc);
      uint64_t seen = 0;
      uint64_t bytes = 0;
      uint64_t cursor = 0;
      do {
        cursor = c.ScanElements(inc, cursor, samples == 0 ? 1024 : static_cast<size_t>(samples),
                                [&](std::string_view m, std::string_view val) {
                                  ++seen;
                                  bytes += store::format::RecordSize(store::format::kIncarnationSize + m.size(), val.size());
                                });
      } while (cursor != 0 && (samples == 0 || seen < static_cast<uint64_t>(samples)));
      if (seen > 0) usage += static_cast<int64_t>(bytes / seen * count + count * 17);
    }
    return out.Integer(usage);
  }
  if (sub == "stats" && c.argc() == 2) {
    const store::Stats st = c.server().store->GetStats();
    const int64_t rss = UsedMemory();
    const auto keys = static_cast<int64_t>(st.keys);
    out.MapHeader(9);
    out.Bulk("peak.allocated");
    out.Integer(rss);
    out.Bulk("total.allocated");
    out.Integer(rss);
    out.Bulk("startup.allocated");
    out.Integer(0);
    out.Bulk("keys.count");
    out.Integer(keys);
    out.Bulk("keys.bytes-per-key");
    out.Integer(keys == 0 ? 0 : static_cast<int64_t>(st.keydir_bytes) / keys);
    out.Bulk("keydir.bytes");
    out.Integer(static_cast<int64_t>(st.keydir_bytes));
    out.Bulk("dataset.bytes");
    out.Integer(static_cast<int64_t>(st.total_bytes - st.dead_bytes));
    out.Bulk("datafiles.bytes");
    out.Integer(static_cast<int64_t>(st.total_bytes));
    out.Bulk("datafiles.dead-bytes");
    out.Integer(static_cast<int64_t>(st.dead_bytes));
    return;
  }
  if (sub == "doctor" && c.argc() == 2) {
    return out.Verbatim(
        "Hi Sam, I can't find any memory issue in your instance. I can only account for what occurs "
        "on this base.");
  }
  if (sub == "malloc-stats" && c.argc() == 2) {
    if (malloc_stats_print == nullptr) return out.Verbatim("Stats not supported for the current allocator");
    std::string text;
    malloc_stats_print([](void* to, const char* part) { static_cast<std::string*>(to)->append(part); }, &text, nullptr);
    return out.Verbatim(text);
  }
  if (sub == "purge" && c.argc() == 2) {
    if (mallctl != nullptr) {  // as Redis's jemalloc_purge: every arena's dirty pages back to the OS
      mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);  // 4096: MALLCTL_ARENAS_ALL
    } else {
      malloc_trim(0);
    }
    return out.Ok();
  }
  c.Error(SubcommandSyntaxError(c));
}

// CLUSTER: as redis-server without cluster-enabled (clients probe it to learn the mode).
void Cluster(Ctx& c) { c.Error("This instance has cluster support disabled"); }

void CommandCmd(Ctx& c) {
  const auto& table = AllCommands();
  resp::ReplyBuffer& out = c.out();
  if (c.argc() == 1) {
    out.ArrayHeader(table.size());
    for (const Command& cmd : table) CommandEntry(out, cmd, cmd.name);
    return;
  }
  const std::string sub = ToLower(c.arg(1));
  if (sub == "count" && c.argc() == 2) return out.Integer(static_cast<int64_t>(table.size()));
  if (sub == "list") return CommandList(c);
  if ((sub == "getkeys" || sub == "getkeysandflags") && c.argc() >= 3) return CommandGetkeys(c);
  if (sub == "info") {
    if (c.argc() == 2) {
      out.ArrayHeader(table.size());
      for (const Command& cmd : table) CommandEntry(out, cmd, cmd.name);
      return;
    }
    out.ArrayHeader(c.argc() - 2);
    for (size_t i = 2; i < c.argc(); ++i) {
      // "container|subcommand" names a subcommand, as in Redis 7 (COMMAND INFO object|encoding).
      const std::string_view name = c.arg(i);
      const size_t bar = name.find('|');
      const Command* cmd = FindCommand(name.substr(0, bar));
      if (cmd != nullptr && bar != std::string_view::npos) {
        const Command* sub_cmd = FindSubcommand(*cmd, name.substr(bar + 1));
        if (sub_cmd == nullptr) {
          out.Null();
          continue;
        }
        Command full = *sub_cmd;
        if (full.acl_categories.empty()) full.acl_categories = cmd->acl_categories;
        CommandEntry(out, full, std::string(cmd->name) + "|" + std::string(sub_cmd->name));
        continue;
      }
      if (cmd == nullptr) {
        out.Null();
      } else {
        CommandEntry(out, *cmd, cmd->name);
      }
    }
    return;
  }
  if (sub == "count") return c.Error(WrongArity("command|count"));
  if (sub == "help" && c.argc() == 2) {
    return Help(c, {"(no subcommand)", "    Return details about all Redis commands.", "COUNT",
                    "    Return the total number of commands in this Redis server.", "LIST",
                    "    Return a list of all commands in this Redis server.", "INFO [<command-name> ...]",
                    "    Return details about multiple Redis commands.",
                    "    If no command names are given, documentation details for all",
                    "    commands are returned.", "DOCS [<command-name> ...]",
                    "    Return documentation details about multiple Redis commands.",
                    "    If no command names are given, documentation details for all",
                    "    commands are returned.", "GETKEYS <full-command>",
                    "    Return the keys from a full Redis command.", "GETKEYSANDFLAGS <full-command>",
                    "    Return the keys and the access flags from a full Redis command."});
  }
  // COMMAND DOCS included: an error makes redis-cli use its built-in help (see clients.md).
  c.Error("unknown subcommand '" + std::string(c.arg(1)).substr(0, 128) + "'. Try COMMAND HELP.");
}

void Time(Ctx& c) {
  timeval tv{};
  gettimeofday(&tv, nullptr);
  c.out().ArrayHeader(2);
  c.out().Bulk(std::to_string(tv.tv_sec));
  c.out().Bulk(std::to_string(tv.tv_usec));
}

// SAVE / BGSAVE: every write is already in the log; these fsync it now, on the writer thread (the
// I/O thread does not wait for the disk). SAVE replies once the sync returned; BGSAVE at once.
void Save(Ctx& c) {
  ServerState* st = &c.server();
  auto reply = ReplyOkWhenDone(c);
  st->store->SyncAsync([st, reply](const store::Status& s) {
    if (s.ok()) {
      st->last_save_s = store::NowMs() / 1000;
      st->counters.changes_since_save = 0;
      st->saves.fetch_add(1, std::memory_order_relaxed);
    }
    reply(s);
  });
}
void Bgsave(Ctx& c) {
  if (c.argc() > 2 || (c.argc() == 2 && ToLower(c.arg(1)) != "schedule")) return c.Error(err::kSyntax);
  ServerState* st = &c.server();
  st->store->SyncAsync([st](const store::Status& s) {
    if (s.ok()) {
      st->last_save_s = store::NowMs() / 1000;
      st->counters.changes_since_save = 0;
      st->saves.fetch_add(1, std::memory_order_relaxed);
    } else {
      spdlog::error("BGSAVE: {}", s.ToString());
    }
  });
  c.out().SimpleString("Background saving started");
}
void Lastsave(Ctx& c) { c.out().Integer(c.server().last_save_s.load()); }

// Starts a compaction; `done` runs on the background thread when it ends.
void StartCompaction(ServerState& st, std::function<void(const store::Status&)> done) {
  st.compaction_running = true;
  spdlog::info("compaction requested");
  st.store->Compact([&st, done = std::move(done)](const store::Status& s) {
    st.compaction_running = false;
    if (!s.ok()) spdlog::error("compaction failed: {}", s.ToString());
    done(s);
  });
}

void Bgrewriteaof(Ctx& c) {
  StartCompaction(c.server(), [](const store::Status&) {});
  c.out().SimpleString("Background append only file rewriting started");
}

// COMPACT [ASYNC]: replies when the compaction is done (other clients are not blocked), or at once.
void Compact(Ctx& c) {
  bool async = false;
  if (c.argc() == 2) {
    if (ToLower(c.arg(1)) != "async") return c.Error(err::kSyntax);
    async = true;
  }
  if (async || c.client().in_exec()) {
    StartCompaction(c.server(), [](const store::Status&) {});
    return c.out().SimpleString("Compaction started");
  }
  ClientSession* client = &c.client();
  std::shared_ptr<net::Link> keep = client->link().Self();
  StartCompaction(c.server(), [client, keep](const store::Status& s) {
    keep->Post([client, s] {
      if (s.ok()) {
        client->link().out().Ok();
      } else {
        client->link().out().Error("compaction failed: " + s.ToString());
      }
      client->Finish();
    });
  });
  client->Suspend();
}

void Shutdown(Ctx& c) {
  bool nosave = false;
  bool save = false;
  bool now = false;
  bool force = false;
  bool abort = false;
  for (size_t i = 1; i < c.argc(); ++i) {
    const std::string opt = ToLower(c.arg(i));
    if (opt == "nosave") {
      nosave = true;
    } else if (opt == "save") {
      save = true;
    } else if (opt == "now") {
      now = true;
    } else if (opt == "force") {
      force = true;
    } else if (opt == "abort") {
      abort = true;
    } else {
      return c.Error(err::kSyntax);
    }
  }
  if ((abort && (nosave || save || now || force)) || (nosave && save)) return c.Error(err::kSyntax);
  if (abort) {
    if (c.server().abort_shutdown && c.server().abort_shutdown()) return c.out().Ok();
    return c.Error("No shutdown in progress.");
  }
  if (c.server().scripts->busy()) {
    // The busy script holds the writer role and its group is not written: SHUTDOWN NOSAVE ends the
    // process now, and none of the script's writes exist (every acknowledged write is in the data
    // files already). Without NOSAVE it is refused, as Redis refuses it.
    if (!nosave) return c.Error(c.server().scripts->busy_error());
    spdlog::warn("User requested shutdown (NOSAVE) while a script is busy: exiting now; the script's writes are dropped");
    spdlog::default_logger()->flush();
    std::_Exit(0);
  }
  spdlog::warn("User requested shutdown...");
  // No reply: the connection closes with the server, as in Redis; unless a SHUTDOWN ABORT ends a
  // wait for the replicas first (then the error).
  c.client().Suspend();
  c.client().link().WatchClose();  // keeps the connection while it waits (a hang-up ends it)
  c.server().AddShutdownWaiter(c.client().link().Self(), &c.client());
  if (c.server().request_shutdown) c.server().request_shutdown(now);
}

void Slowlog(Ctx& c) {
  const std::string sub = ToLower(c.arg(1));
  SlowLog& log = c.server().slowlog;
  if (sub == "help" && c.argc() == 2) {
    return Help(c, {"GET [<count>]",
                    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
                    "    Entries are made of:",
                    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
                    "    client name",
                    "LEN", "    Return the length of the slowlog.", "RESET", "    Reset the slowlog."});
  }
  if (sub == "reset" && c.argc() == 2) {
    log.Reset();
    return c.out().Ok();
  }
  if (sub == "len" && c.argc() == 2) return c.out().Integer(static_cast<int64_t>(log.size()));
  if (sub == "get" && (c.argc() == 2 || c.argc() == 3)) {
    int64_t count = 10;
    if (c.argc() == 3 && (!resp::ParseInt64(c.arg(2), &count) || count < -1)) {
      return c.Error("count should be greater than or equal to -1");
    }
    const std::vector<SlowLog::Entry> entries = log.Get(count);
    c.out().ArrayHeader(entries.size());
    for (const SlowLog::Entry& e : entries) {
      c.out().ArrayHeader(6);
      c.out().Integer(static_cast<int64_t>(e.id));
      c.out().Integer(e.time_s);
      c.out().Integer(e.duration_us);
      c.out().ArrayHeader(e.args.size());
      for (const std::string& a : e.args) c.out().Bulk(a);
      c.out().Bulk(e.peer);
      c.out().Bulk(e.client_name);
    }
    return;
  }
  c.Error(SubcommandSyntaxError(c));
}

void Latency(Ctx& c) {
  const std::string sub = ToLower(c.arg(1));
  if (sub == "help" && c.argc() != 2) return c.Error(WrongArity("latency|help"));
  LatencyMonitor& mon = c.server().latency;
  if (sub == "history" && c.argc() == 3) {
    const auto events = mon.Snapshot();
    auto it = events.find(std::string(c.arg(2)));
    if (it == events.end()) return c.out().ArrayHeader(0);
    c.out().ArrayHeader(it->second.samples.size());
    for (const auto& sample : it->second.samples) {
      c.out().ArrayHeader(2);
      c.out().Integer(sample.time_s);
      c.out().Integer(sample.latency_ms);
    }
    return;
  }
  if (sub == "latest" && c.argc() == 2) {
    const auto events = mon.Snapshot();
    c.out().ArrayHeader(events.size());
    for (const auto& [name, e] : events) {
      c.out().ArrayHeader(4);
      c.out().Bulk(name);
      c.out().Integer(e.samples.back().time_s);
      c.out().Integer(e.samples.back().latency_ms);
      c.out().Integer(e.max_ms);
    }
    return;
  }
  if (sub == "graph" && c.argc() == 3) {
    const auto events = mon.Snapshot();
    auto it = events.find(std::string(c.arg(2)));
    if (it == events.end()) {
      return c.Error("No samples available for event '" + std::string(c.arg(2)) + "'");
    }
    std::string graph = std::string(c.arg(2)) + " - high " + std::to_string(it->second.max_ms) +
                        " ms\n";
    for (const auto& sample : it->second.samples) {
      graph += std::to_string(sample.time_s) + " " + std::to_string(sample.latency_ms) + " ms\n";
    }
    return c.out().Verbatim(graph);
  }
  if (sub == "doctor" && c.argc() == 2) {
    const auto events = mon.Snapshot();
    std::string report;
    if (c.server().latency.threshold_ms.load() == 0) {
      report = "I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this keg "
               "instance. You may use \"CONFIG SET latency-monitor-threshold <milliseconds>.\" in "
               "order to enable it.\n";
    } else if (events.empty()) {
      report = "Dave, no latency spike was observed during the lifetime of this keg instance, not "
               "in the slightest bit.\n";
    } else {
      report = "Dave, I have observed latency spikes in this keg instance.\n\n";
      int n = 1;
      for (const auto& [name, e] : events) {
        report += std::to_string(n++) + ". " + name + ": " + std::to_string(e.samples.size()) +
                  " latency spikes (max " + std::to_string(e.max_ms) + " milliseconds).\n";
      }
    }
    return c.out().Verbatim(report);
  }
  if (sub == "reset" && c.argc() >= 2) {
    std::vector<std::string_view> names(c.args().begin() + 2, c.args().end());
    return c.out().Integer(mon.Reset(names));
  }
  if (sub == "histogram" && c.argc() >= 2) {
    // Commands with calls, as Redis's latencyAllCommandsFillCDF: cumulative counts per
    // power-of-two bucket of microseconds, up to the last non-empty one.
    std::vector<std::pair<std::string, CommandStats::Totals>> wanted;
    auto consider = [&](const Command& cmd, const std::string& name) {
      CommandStats::Totals t = cmd.stats->Read();
      if (t.calls > 0) wanted.emplace_back(name, t);
    };
    auto add_command = [&](const Command& cmd) {
      consider(cmd, std::string(cmd.name));
      for (const Command& s : cmd.subcommands) consider(s, std::string(cmd.name) + "|" + std::string(s.name));
    };
    if (c.argc() == 2) {
      for (const Command& cmd : AllCommands()) add_command(cmd);
    } else {
      for (size_t i = 2; i < c.argc(); ++i) {
        const std::string name = ToLower(c.arg(i));
        const size_t bar = name.find('|');
        const Command* cmd = FindCommand(name.substr(0, bar));
        if (cmd == nullptr) continue;
        if (bar == std::string::npos) {
          add_command(*cmd);
        } else if (const Command* s = FindSubcommand(*cmd, name.substr(bar + 1))) {
          consider(*s, name);
        }
      }
    }
    c.out().MapHeader(wanted.size());
    for (const auto& [name, cs] : wanted) {
      c.out().Bulk(name);
      c.out().MapHeader(2);
      c.out().Bulk("calls");
      c.out().Integer(static_cast<int64_t>(cs.calls));
      c.out().Bulk("histogram_usec");
      uint64_t counts[CommandStats::kBuckets];
      size_t last = 0;
      for (size_t i = 0; i < CommandStats::kBuckets; ++i) {
        counts[i] = cs.latency[i];
        if (counts[i] != 0) last = i + 1;
      }
      size_t buckets = 0;
      for (size_t i = 0; i < last; ++i) buckets += counts[i] != 0 || i + 1 == last ? 1 : 0;
      c.out().MapHeader(buckets);
      uint64_t cumulative = 0;
      for (size_t i = 0; i < last; ++i) {
        cumulative += counts[i];
        if (counts[i] == 0 && i + 1 != last) continue;
        c.out().Integer(int64_t{1} << i);
        c.out().Integer(static_cast<int64_t>(cumulative));
      }
    }
    return;
  }
  if (sub == "help" && c.argc() == 2) {
    return Help(c, {"DOCTOR", "    Return a human readable latency analysis report.",
                    "GRAPH <event>", "    Return an ASCII latency graph for the <event> class.",
                    "HISTORY <event>", "    Return time-latency samples for the <event> class.",
                    "LATEST", "    Return the latest latency samples for all events.",
                    "RESET [<event> ...]", "    Reset latency data of one or more <event> classes.",
                    "    (default: reset all data for all event classes)",
                    "HISTOGRAM [COMMAND ...]",
                    "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
                    "    If no commands are specified then all histograms are replied."});
  }
  c.Error(SubcommandSyntaxError(c));
}

}  // namespace

void RegisterServerCommands(std::vector<Command>* t) {
  t->push_back({"info", -1, 0, 0, 0, 0, Info, "@slow @dangerous"});
  t->push_back({"config", -2, 0, 0, 0, 0, ConfigCmd, "@slow",
                {{"get", -3, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                 {"set", -4, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                 {"resetstat", 2, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                 {"rewrite", 2, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                 {"help", 2, 0, 0, 0, 0, nullptr, "@slow"}}});
  t->push_back({"command", -1, 0, 0, 0, 0, CommandCmd, "@slow @connection",
                {{"count", 2, 0, 0, 0, 0, nullptr, "@slow @connection"},
                 {"info", -2, 0, 0, 0, 0, nullptr, "@slow @connection"},
                 {"list", -2, 0, 0, 0, 0, nullptr, "@slow @connection"},
                 {"getkeys", -4, 0, 0, 0, 0, nullptr, "@slow @connection"},
                 {"getkeysandflags", -4, 0, 0, 0, 0, nullptr, "@slow @connection"},
                 {"help", 2, 0, 0, 0, 0, nullptr, "@slow @connection"}}});
  t->push_back({"time", 1, kFast, 0, 0, 0, Time, "@fast"});
  t->push_back({"memory", -2, 0, 0, 0, 0, Memory, "@slow",
                {{"doctor", 2, 0, 0, 0, 0, nullptr, "@slow"},
                 {"help", 2, 0, 0, 0, 0, nullptr, "@slow"},
                 {"malloc-stats", 2, 0, 0, 0, 0, nullptr, "@slow"},
                 {"purge", 2, 0, 0, 0, 0, nullptr, "@slow"},
                 {"stats", 2, 0, 0, 0, 0, nullptr, "@slow"},
                 {"usage", -3, kReadOnly | kNoTouch, 2, 2, 1, nullptr, "@read @slow"}}});
  t->push_back({"cluster", -2, 0, 0, 0, 0, Cluster, "@slow",
               {{"addslots", -3, kAdmin | kNoAsyncLoading, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                {"addslotsrange", -4, kAdmin | kNoAsyncLoading, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                {"bumpepoch", 2, kAdmin | kNoAsyncLoading, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                {"count-failure-reports", 3, kAdmin, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                {"countkeysinslot", 3, 0, 0, 0, 0, nullptr, "@slow"},
                {"delslots", -3, kAdmin | kNoAsyncLoading, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                {"delslotsrange", -4, kAdmin | kNoAsyncLoading, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                {"failover", -2, kAdmin | kNoAsyncLoading, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                {"flushslots", 2, kAdmin | kNoAsyncLoading, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                {"forget", 3, kAdmin | kNoAsyncLoading, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                {"getkeysinslot", 4, 0, 0, 0, 0, nullptr, "@slow"},
                {"help", 2, 0, 0, 0, 0, nullptr, "@slow"},
                {"info", 2, 0, 0, 0, 0, nullptr, "@slow"},
                {"keyslot", 3, 0, 0, 0, 0, nullptr, "@slow"},
                {"links", 2, 0, 0, 0, 0, nullptr, "@slow"},
                {"meet", -4, kAdmin | kNoAsyncLoading, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                {"myid", 2, 0, 0, 0, 0, nullptr, "@slow"},
                {"nodes", 2, 0, 0, 0, 0, nullptr, "@slow"},
                {"replicas", 3, kAdmin, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                {"replicate", 3, kAdmin | kNoAsyncLoading, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                {"reset", -2, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                {"saveconfig", 2, kAdmin | kNoAsyncLoading, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                {"set-config-epoch", 3, kAdmin | kNoAsyncLoading, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                {"setslot", -4, kAdmin | kNoAsyncLoading, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                {"shards", 2, 0, 0, 0, 0, nullptr, "@slow"},
                {"slaves", 3, kAdmin, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                {"slots", 2, 0, 0, 0, 0, nullptr, "@slow"}}});
  // The cluster connection commands, as a server without cluster support answers them (some
  // clients send READONLY to a replica; ACL rules may name them).
  t->push_back({"readonly", 1, kFast, 0, 0, 0, Cluster, "@fast @connection"});
  t->push_back({"readwrite", 1, kFast, 0, 0, 0, Cluster, "@fast @connection"});
  t->push_back({"asking", 1, kFast, 0, 0, 0, Cluster, "@fast @connection"});
  t->push_back({"save", 1, kAdmin | kNoAsyncLoading | kNoMulti | kNoScript, 0, 0, 0, Save, "@admin @slow @dangerous"});
  t->push_back({"bgsave", -1, kAdmin | kNoAsyncLoading | kNoScript, 0, 0, 0, Bgsave, "@admin @slow @dangerous"});
  t->push_back({"lastsave", 1, kFast, 0, 0, 0, Lastsave, "@fast @admin @dangerous"});
  t->push_back({"bgrewriteaof", 1, kAdmin | kNoAsyncLoading | kNoScript, 0, 0, 0, Bgrewriteaof, "@admin @slow @dangerous"});
  t->push_back({"compact", -1, kAdmin | kNoScript, 0, 0, 0, Compact, "@admin @slow"});
  t->push_back({"shutdown", -1, kAdmin | kNoMulti | kNoScript | kAllowBusy, 0, 0, 0, Shutdown, "@admin @slow @dangerous"});
  t->push_back({"slowlog", -2, 0, 0, 0, 0, Slowlog, "@slow",
                {{"get", -2, kAdmin, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                 {"len", 2, kAdmin, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                 {"reset", 2, kAdmin, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                 {"help", 2, 0, 0, 0, 0, nullptr, "@slow"}}});
  t->push_back({"latency", -2, 0, 0, 0, 0, Latency, "@slow",
                {{"doctor", 2, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                 {"graph", 3, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                 {"help", 2, 0, 0, 0, 0, nullptr, "@slow"},
                 {"histogram", -2, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                 {"history", 3, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                 {"latest", 2, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous"},
                 {"reset", -2, kAdmin | kNoScript, 0, 0, 0, nullptr, "@admin @slow @dangerous"}}});
}

namespace {
// Redis 7.0's commands with the `stale` flag (src/commands/*.json): "name" for a command,
// "name|sub" for a subcommand, "name|*" for every subcommand of a container (as in Redis, a
// container has no flags of its own: its subcommand's decide).
constexpr std::string_view kStaleCommands[] = {
    "acl|*", "auth", "client|*", "cluster|*", "command", "command|*", "config|*", "debug", "discard", "echo",
    "eval", "eval_ro", "evalsha", "evalsha_ro", "exec", "failover", "fcall", "fcall_ro", "function|help",
    "hello", "info", "lastsave", "latency|*", "memory|help", "module|help", "monitor", "multi", "object|help",
    "psubscribe", "publish", "pubsub|*", "punsubscribe", "quit", "readonly", "readwrite", "replconf",
    "replicaof", "reset", "role", "script|help", "script|load", "select", "sentinel|help", "shutdown",
    "slaveof", "slowlog|*", "spublish", "ssubscribe", "subscribe", "sunsubscribe", "time", "unsubscribe",
    "unwatch", "watch", "xgroup|help", "xinfo|help"};

// The same for `loading` and `denyoom` (shown by COMMAND; see command.h).
constexpr std::string_view kLoadingCommands[] = {
    "acl|*", "auth", "client|*", "cluster|help", "command", "command|*", "config|*", "debug", "discard", "echo",
    "exec", "function|help", "hello", "info", "lastsave", "latency|*", "memory|help", "monitor", "multi",
    "object|help", "psubscribe", "publish", "pubsub|*", "punsubscribe", "quit", "readonly", "readwrite", "replconf",
    "reset", "role", "script|help", "select", "shutdown", "slowlog|*", "spublish", "ssubscribe", "subscribe",
    "sunsubscribe", "time", "unsubscribe", "unwatch", "watch"};
constexpr std::string_view kDenyOomCommands[] = {
    "append", "bitfield", "bitop", "blmove", "brpoplpush", "copy", "decr", "decrby", "function|load",
    "function|restore", "geoadd", "georadius", "georadiusbymember", "geosearchstore", "getset", "hincrby", "hincrbyfloat", "hmset", "hset", "hsetnx", "incr", "incrby",
    "incrbyfloat", "linsert", "lmove", "lpush", "lpushx", "lset", "mset", "msetnx", "pfadd", "pfdebug", "pfmerge",
    "psetex", "restore", "rpoplpush", "rpush", "rpushx", "sadd", "sdiffstore", "set", "setbit", "setex", "setnx",
    "setrange", "sinterstore", "sort", "sunionstore", "zadd", "zdiffstore", "zincrby", "zinterstore", "zrangestore",
    "zunionstore"};

// Sets `flag` on the commands `entries` name (as kStaleCommands).
void MarkFlag(std::vector<Command>* commands, std::span<const std::string_view> entries, uint32_t flag) {
  for (std::string_view entry : entries) {
    const size_t bar = entry.find('|');
    const std::string_view name = entry.substr(0, bar);
    for (Command& cmd : *commands) {
      if (cmd.name != name) continue;
      if (bar == std::string_view::npos) {
        cmd.flags |= flag;
        continue;
      }
      const std::string_view sub = entry.substr(bar + 1);
      for (Command& s : cmd.subcommands) {
        if (sub == "*" || s.name == sub) s.flags |= flag;
      }
    }
  }
}

struct NameHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
struct Table {
  std::vector<Command> commands;
  std::deque<CommandStats> stats;
  std::unordered_map<std::string, size_t, NameHash, std::equal_to<>> index;
  Table() {
    RegisterStringCommands(&commands);
    RegisterKeyCommands(&commands);
    RegisterConnectionCommands(&commands);
    RegisterServerCommands(&commands);
    RegisterDebugCommands(&commands);
    RegisterBitCommands(&commands);
    RegisterMigrateCommands(&commands);
    RegisterAclCommands(&commands);
    RegisterScriptCommands(&commands);
    RegisterPubsubCommands(&commands);
    RegisterHashCommands(&commands);
    RegisterSetCommands(&commands);
    RegisterListCommands(&commands);
    RegisterZsetCommands(&commands);
    RegisterGeoCommands(&commands);
    RegisterSortCommands(&commands);
    RegisterHllCommands(&commands);
    RegisterReplicationCommands(&commands);
    MarkFlag(&commands, kStaleCommands, kStale);
    MarkFlag(&commands, kLoadingCommands, kLoading);
    MarkFlag(&commands, kDenyOomCommands, kDenyOom);
    for (size_t i = 0; i < commands.size(); ++i) {
      index.emplace(std::string(commands[i].name), i);
      // Stats live as long as the table (a deque never moves its elements); every copy of a
      // Command shares its parent's. A command's id is its stats' index.
      commands[i].id = static_cast<uint32_t>(stats.size());
      commands[i].stats = &stats.emplace_back();
      for (Command& sub : commands[i].subcommands) {
        sub.id = static_cast<uint32_t>(stats.size());
        sub.stats = &stats.emplace_back();
      }
    }
  }
};
const Table& TheTable() {
  static const Table table;
  return table;
}
}  // namespace

const std::vector<Command>& AllCommands() { return TheTable().commands; }
size_t CommandIdCount() { return TheTable().stats.size(); }

const Command* FindCommand(std::string_view name) {
  // A pipeline sends one command over and over: the thread's last hit, as it was spelled, is
  // compared first.
  thread_local const Command* last = nullptr;
  thread_local char last_spelling[16];
  thread_local size_t last_size = 0;
  if (name.size() == last_size && last_size != 0 && std::memcmp(name.data(), last_spelling, last_size) == 0) {
    return last;
  }
  if (name.size() > 32) return nullptr;
  char lower[32];
  for (size_t i = 0; i < name.size(); ++i) {
    const char ch = name[i];
    lower[i] = (ch >= 'A' && ch <= 'Z') ? static_cast<char>(ch - 'A' + 'a') : ch;
  }
  const Table& t = TheTable();
  auto it = t.index.find(std::string_view(lower, name.size()));
  if (it == t.index.end()) return nullptr;
  if (name.size() <= sizeof(last_spelling)) {
    last = &t.commands[it->second];
    std::memcpy(last_spelling, name.data(), name.size());
    last_size = name.size();
  }
  return &t.commands[it->second];
}

const Command* FindSubcommand(const Command& parent, std::string_view name) {
  for (const Command& sub : parent.subcommands) {
    if (EqualsIgnoreCase(sub.name, name)) return &sub;
  }
  return nullptr;
}

}  // namespace keg::server
