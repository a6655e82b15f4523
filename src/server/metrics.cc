#include "server/metrics.h"

#include <cstdio>
#include <string_view>

#include "server/command.h"
#include "server/version.h"
#include "store/store.h"

namespace keg::server {
namespace {

// One metric family: HELP and TYPE lines, then its samples.
class Writer {
 public:
  explicit Writer(std::string* out) : out_(out) {}

  void Family(std::string_view name, std::string_view type, std::string_view help) {
    *out_ += "# HELP ";
    *out_ += name;
    *out_ += ' ';
    *out_ += help;
    *out_ += "\n# TYPE ";
    *out_ += name;
    *out_ += ' ';
    *out_ += type;
    *out_ += '\n';
  }
  void Sample(std::string_view name, std::string_view labels, double value) {
    *out_ += name;
    if (!labels.empty()) {
      *out_ += '{';
      *out_ += labels;
      *out_ += '}';
    }
    char buf[64];
    std::snprintf(buf, sizeof(buf), " %.17g\n", value);
    *out_ += buf;
  }
  void Sample(std::string_view name, std::string_view labels, uint64_t value) {
    Sample(name, labels, static_cast<double>(value));
  }
  void Sample(std::string_view name, std::string_view labels, int64_t value) {
    Sample(name, labels, static_cast<double>(value));
  }
  void One(std::string_view name, std::string_view type, std::string_view help, double value) {
    Family(name, type, help);
    Sample(name, "", value);
  }

  // A histogram from power-of-two buckets (bucket i holds values in (2^(i-1), 2^i] of `unit`;
  // bucket 0 those of at most 1): cumulative `le` bounds 2^i * unit for i < `buckets`, then +Inf.
  void Histogram(std::string_view name, std::string labels, const uint64_t* counts, size_t n, size_t buckets,
                 double unit, double sum) {
    if (!labels.empty()) labels += ',';
    uint64_t cumulative = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < n; ++i) total += counts[i];
    const std::string bucket = std::string(name) + "_bucket";
    for (size_t i = 0; i < buckets && i < n; ++i) {
      cumulative += counts[i];
      char le[64];
      std::snprintf(le, sizeof(le), "le=\"%.17g\"", static_cast<double>(uint64_t{1} << i) * unit);
      Sample(bucket, labels + le, cumulative);
    }
    Sample(bucket, labels + "le=\"+Inf\"", total);
    Sample(std::string(name) + "_sum", labels.empty() ? "" : labels.substr(0, labels.size() - 1), sum);
    Sample(std::string(name) + "_count", labels.empty() ? "" : labels.substr(0, labels.size() - 1), total);
  }

 private:
  std::string* out_;
};

// A label value escaped as the format requires (backslash, double quote, newline).
std::string Escape(std::string_view v) {
  std::string out;
  for (char ch : v) {
    if (ch == '\\' || ch == '"') {
      out += '\\';
      out += ch;
    } else if (ch == '\n') {
      out += "\\n";
    } else {
      out += ch;
    }
  }
  return out;
}

std::string Label(std::string_view name, std::string_view value) {
  return std::string(name) + "=\"" + Escape(value) + "\"";
}

// Every command and subcommand that ran, with its name ("get", "client|list").
template <typename Fn>
void ForEachCalled(Fn&& fn) {
  for (const Command& cmd : AllCommands()) {
    auto one = [&](const Command& c, const std::string& name) {
      const CommandStats::Totals cs = c.stats->Read();
      if (cs.any()) fn(cs, name);
    };
    one(cmd, std::string(cmd.name));
    for (const Command& sub : cmd.subcommands) one(sub, std::string(cmd.name) + "|" + std::string(sub.name));
  }
}

}  // namespace

std::string PrometheusText(ServerState& st) {
  std::string out;
  out.reserve(16384);
  Writer w(&out);
  const store::Stats stats = st.store->GetStats();
  const int64_t now = store::NowMs();
  const net::Traffic traffic = st.traffic ? st.traffic() : net::Traffic{};

  w.Family("keg_build_info", "gauge", "Version of keg and of the Redis protocol it speaks.");
  w.Sample("keg_build_info", Label("version", kKegVersion) + "," + Label("redis_version", kRedisVersion), 1.0);
  w.One("keg_uptime_seconds", "gauge", "Seconds since the server started.",
        static_cast<double>(now - st.start_ms) / 1000.0);
  w.One("keg_connected_clients", "gauge", "Client connections.", static_cast<double>(st.clients.size()));
  w.One("keg_blocked_clients", "gauge", "Clients waiting in a blocking pop, in WAIT, for CLIENT PAUSE to end or in SHUTDOWN.",
        static_cast<double>(st.pause.parked() + st.blocking.blocked() + st.repl.waiting() + st.ShutdownWaiters()));
  w.One("keg_connections_received_total", "counter", "Connections accepted.",
        static_cast<double>(st.counters.connections.load()));
  w.One("keg_connections_rejected_total", "counter", "Connections refused (maxclients, protected mode).",
        static_cast<double>(st.counters.rejected_connections.load()));
  w.One("keg_net_input_bytes_total", "counter", "Bytes read from clients.", static_cast<double>(traffic.bytes_in));
  w.One("keg_net_output_bytes_total", "counter", "Bytes written to clients.", static_cast<double>(traffic.bytes_out));

  // Commands.
  w.Family("keg_commands_total", "counter", "Commands run, by command.");
  ForEachCalled([&](const CommandStats::Totals& cs, const std::string& name) {
    w.Sample("keg_commands_total", Label("cmd", name), cs.calls);
  });
  w.Family("keg_commands_failed_total", "counter", "Commands that ran and answered an error, by command.");
  ForEachCalled([&](const CommandStats::Totals& cs, const std::string& name) {
    w.Sample("keg_commands_failed_total", Label("cmd", name), cs.failed_calls);
  });
  w.Family("keg_commands_rejected_total", "counter",
           "Commands refused before running (arity, NOAUTH, NOPERM, MULTI), by command.");
  ForEachCalled([&](const CommandStats::Totals& cs, const std::string& name) {
    w.Sample("keg_commands_rejected_total", Label("cmd", name), cs.rejected_calls);
  });
  w.Family("keg_command_duration_seconds", "histogram", "Time to run a command, by command.");
  ForEachCalled([&](const CommandStats::Totals& cs, const std::string& name) {
    uint64_t counts[CommandStats::kBuckets];
    for (size_t i = 0; i < CommandStats::kBuckets; ++i) counts[i] = cs.latency[i];
    w.Histogram("keg_command_duration_seconds", Label("cmd", name), counts, CommandStats::kBuckets, 26, 1e-6,
                static_cast<double>(cs.nsec) / 1e9);
  });
  w.Family("keg_errors_total", "counter", "Error replies, by their first word (ERR, WRONGPASS, ...).");
  for (const auto& [prefix, count] : st.errors.Snapshot()) w.Sample("keg_errors_total", Label("prefix", prefix), count);
  w.One("keg_keyspace_hits_total", "counter", "Reads that found their key.",
        static_cast<double>(st.counters.keyspace_hits.load()));
  w.One("keg_keyspace_misses_total", "counter", "Reads that did not find their key.",
        static_cast<double>(st.counters.keyspace_misses.load()));

  // Keys and memory.
  w.One("keg_keys", "gauge", "Keys (expired ones not yet reclaimed included).", static_cast<double>(stats.keys));
  w.One("keg_expiring_keys", "gauge", "Keys with an expiry.", [&] {
          uint64_t n = 0;
          for (uint32_t db = 0; db < st.store->Databases(); ++db) n += st.store->ExpiringKeys(db);
          return static_cast<double>(n);
        }());
  w.One("keg_expired_keys_total", "counter", "Keys removed because they expired.",
        static_cast<double>(stats.expired_keys));
  const ResidentMemory resident = Resident();
  w.One("keg_memory_resident_bytes", "gauge", "Resident memory of the process, without mapped data files.",
        static_cast<double>(resident.anon));
  w.One("keg_data_files_resident_bytes", "gauge", "Resident file-backed pages: the mapped data files in the page cache.",
        static_cast<double>(resident.file));
  w.One("keg_keydir_bytes", "gauge", "Memory of the in-memory key index.", static_cast<double>(stats.keydir_bytes));
  // Data larger than memory (docs/store.md): commands that waited for the read pool.
  w.One("keg_data_files_maybe_cold", "gauge",
        "1 when the last residency sweep found a data file page out of the page cache (cold reads possible).",
        st.store->MaybeCold() ? 1.0 : 0.0);
  w.One("keg_data_files_pages_read_back_total", "counter",
        "Data file pages the residency sweep found evicted, few, from a store otherwise in memory, and read back.",
        static_cast<double>(st.store->PagesReadBack()));
  if (const ColdReads* cold = st.cold_reads.get()) {
    w.One("keg_cold_read_commands_total", "counter", "Commands that waited for their cold keys to be read (io_uring or the read pool).",
          static_cast<double>(cold->fetches()));
    w.One("keg_cold_read_keys_total", "counter", "Cold keys read before their commands ran.", static_cast<double>(cold->keys()));
    w.One("keg_cold_read_io_uring_commands_total", "counter",
          "Of the cold-read commands, those whose reads went through their event loop's io_uring.",
          static_cast<double>(cold->ring_fetches()));
    w.One("keg_cold_read_wait_seconds_total", "counter", "Time commands waited for their cold keys, in all.",
          static_cast<double>(cold->wait_usec()) / 1e6);
  }

  // Storage.
  w.One("keg_data_files", "gauge", "Data files.", static_cast<double>(stats.data_files));
  w.One("keg_data_bytes", "gauge", "Bytes in all data files.", static_cast<double>(stats.total_bytes));
  w.One("keg_dead_bytes", "gauge", "Bytes of records no longer needed (reclaimed by compaction).",
        static_cast<double>(stats.dead_bytes));
  w.One("keg_hint_files", "gauge", "Sealed data files that have a hint file.", static_cast<double>(stats.hint_files));
  w.One("keg_sealed_data_files", "gauge", "Data files no longer written to.", static_cast<double>(stats.sealed_files));
  w.One("keg_written_bytes_total", "counter", "Bytes appended to data files.", static_cast<double>(stats.bytes_written));
  w.One("keg_writer_queue_depth", "gauge", "Requests waiting for the writer.", static_cast<double>(stats.writer_queue));
  w.One("keg_writes_failing", "gauge",
        "1 while writes are refused: after a failed fsync (until restart) or while the last write failed.",
        stats.writes_failed || stats.last_write_failed ? 1.0 : 0.0);
  w.Family("keg_group_commit_records", "histogram", "Records per group commit.");
  w.Histogram("keg_group_commit_records", "", stats.group_size.buckets.data(), store::Histogram::kBuckets, 20, 1.0,
              static_cast<double>(stats.group_records));
  w.Family("keg_fsync_duration_seconds", "histogram", "Time of each fdatasync of a data file.");
  w.Histogram("keg_fsync_duration_seconds", "", stats.fsync_usec.buckets.data(), store::Histogram::kBuckets, 26, 1e-6,
              static_cast<double>(stats.fsync_usec.sum) / 1e6);
  w.One("keg_compactions_total", "counter", "Compactions finished.", static_cast<double>(stats.compactions));
  w.One("keg_compaction_running", "gauge", "1 while a compaction runs.", st.compaction_running.load() ? 1.0 : 0.0);
  w.One("keg_compaction_read_bytes_total", "counter", "Bytes compaction read.",
        static_cast<double>(stats.compaction_bytes_read));
  w.One("keg_compaction_written_bytes_total", "counter", "Bytes compaction wrote.",
        static_cast<double>(stats.compaction_bytes_written));
  w.One("keg_compaction_reclaimed_bytes_total", "counter", "Bytes compaction reclaimed.",
        static_cast<double>(stats.compaction_bytes_reclaimed));
  w.One("keg_compaction_duration_seconds_total", "counter", "Time spent compacting.",
        static_cast<double>(stats.compaction_total_ms) / 1000.0);
  w.One("keg_compaction_failures", "gauge",
        "Automatic compactions failed in a row (0 when the last one worked); retries back off exponentially.",
        static_cast<double>(stats.compaction_failures));
  w.One("keg_recovery_duration_seconds", "gauge", "Time the last start took to recover the keydir.",
        static_cast<double>(stats.recovery_ms) / 1000.0);
  w.One("keg_recovery_records", "gauge", "Records the last start replayed.", static_cast<double>(stats.recovery_records));

  // CPU by thread.
  w.Family("keg_cpu_seconds_total", "counter", "CPU time by thread name and mode.");
  for (const auto& [name, cpu] : ThreadCpuSeconds()) {
    w.Sample("keg_cpu_seconds_total", Label("thread", name) + "," + Label("mode", "user"), cpu.first);
    w.Sample("keg_cpu_seconds_total", Label("thread", name) + "," + Label("mode", "system"), cpu.second);
  }
  return out;
}

namespace {
std::string Json(std::string_view v) {
  std::string out = "\"";
  for (char ch : v) {
    const auto c = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}
}  // namespace

net::HttpResponse ServeHttp(ServerState& st, std::string_view path) {
  constexpr std::string_view kJson = "application/json";
  auto unavailable = [&](std::string_view reason) {
    return net::HttpResponse{503, std::string(kJson),
                             "{\"status\":\"unavailable\",\"reason\":" + Json(reason) + "}\n"};
  };
  if (path == "/health/live") return net::HttpResponse{200, std::string(kJson), "{\"status\":\"live\"}\n"};
  if (path == "/health/ready") {
    if (!st.ready.load(std::memory_order_acquire)) return unavailable("loading or shutting down");
    const store::Stats stats = st.store->GetStats();
    if (stats.writes_failed) return unavailable("writes failing: " + stats.write_error);
    if (stats.last_write_failed) return unavailable("the last write failed: " + stats.last_write_error);
    return net::HttpResponse{200, std::string(kJson), "{\"status\":\"ready\"}\n"};
  }
  if (path == "/metrics") {
    if (!st.ready.load(std::memory_order_acquire)) return unavailable("loading or shutting down");
    return net::HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", PrometheusText(st)};
  }
  return net::HttpResponse{404, "text/plain; charset=utf-8", "not found: /metrics, /health/live, /health/ready\n"};
}

}  // namespace keg::server
