#include "server/config.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "resp/numbers.h"
#include "server/notify.h"
#include "server/glob.h"

namespace keg::server {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string FormatMemory(int64_t v) { return std::to_string(v); }

// One directive: how to set it from arguments and how to print it.
struct Directive {
  std::string_view name;
  bool mutable_at_runtime;
  // Returns "" or the reason the value is bad.
  std::function<std::string(Config&, const std::vector<std::string_view>&)> set;
  std::function<std::string(const Config&)> get;
  /// Redis's PROTECTED_CONFIG: CONFIG SET refuses it unless enable-protected-configs allows it.
  bool protected_config = false;
};

std::string ParseYesNo(std::string_view v, bool* out) {
  const std::string l = Lower(v);
  if (l == "yes") {
    *out = true;
  } else if (l == "no") {
    *out = false;
  } else {
    return "argument must be 'yes' or 'no'";
  }
  return "";
}

Directive Bool(std::string_view name, bool Config::*field, bool runtime) {
  return {name, runtime,
          [field](Config& c, const std::vector<std::string_view>& a) {
            if (a.size() != 1) return std::string("wrong number of arguments");
            return ParseYesNo(a[0], &(c.*field));
          },
          [field](const Config& c) { return std::string(c.*field ? "yes" : "no"); }};
}

Directive Int(std::string_view name, int64_t Config::*field, int64_t lo, int64_t hi, bool runtime,
              bool memory = false) {
  return {name, runtime,
          [=](Config& c, const std::vector<std::string_view>& a) {
            if (a.size() != 1) return std::string("wrong number of arguments");
            int64_t v = 0;
            uint64_t bytes = 0;
            const bool ok = memory ? ParseMemoryBytes(a[0], &bytes) : resp::ParseInt64(a[0], &v);
            if (!ok) {
              return std::string(memory ? "argument must be a memory value"
                                        : "argument couldn't be parsed into an integer");
            }
            const bool past = memory && bytes > static_cast<uint64_t>(INT64_MAX);  // out of every range
            if (memory && !past) v = static_cast<int64_t>(bytes);
            if (past || v < lo || v > hi) {
              return "argument must be between " + std::to_string(lo) + " and " +
                     std::to_string(hi) + " inclusive";
            }
            c.*field = v;
            return std::string();
          },
          [=](const Config& c) { return memory ? FormatMemory(c.*field) : std::to_string(c.*field); }};
}

// One of `values` (case-insensitive, kept in lower case), with Redis's error for an enum.
Directive OneOf(std::string_view name, std::string Config::*field, std::initializer_list<std::string_view> values,
                bool runtime) {
  std::vector<std::string_view> allowed(values);
  return {name, runtime,
          [field, allowed](Config& c, const std::vector<std::string_view>& a) {
            if (a.size() != 1) return std::string("wrong number of arguments");
            const std::string v = Lower(a[0]);
            if (std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
              std::string err = "argument(s) must be one of the following: ";
              for (size_t i = 0; i < allowed.size(); ++i) err += (i > 0 ? ", " : "") + std::string(allowed[i]);
              return err;
            }
            c.*field = v;
            return std::string();
          },
          [field](const Config& c) { return c.*field; }};
}

}  // namespace

std::vector<std::string> SplitWords(std::string_view value) {
  std::vector<std::string> words;
  size_t pos = 0;
  while (pos < value.size()) {
    while (pos < value.size() && value[pos] == ' ') ++pos;
    size_t e = pos;
    while (e < value.size() && value[e] != ' ') ++e;
    if (e > pos) words.emplace_back(value.substr(pos, e - pos));
    pos = e;
  }
  return words;
}

std::vector<std::string_view> SplitAtEachSpace(std::string_view value) {
  std::vector<std::string_view> words;
  for (size_t from = 0; !value.empty();) {
    const size_t at = value.find(' ', from);
    words.push_back(value.substr(from, at == std::string_view::npos ? at : at - from));
    if (at == std::string_view::npos) break;
    from = at + 1;
  }
  return words;
}

namespace {

Directive String(std::string_view name, std::string Config::*field, bool runtime) {
  return {name, runtime,
          [field](Config& c, const std::vector<std::string_view>& a) {
            if (a.size() != 1) return std::string("wrong number of arguments");
            c.*field = std::string(a[0]);
            return std::string();
          },
          [field](const Config& c) { return c.*field; }};
}

const std::vector<Directive>& Table() {
  static const std::vector<Directive> table = [] {
    constexpr int64_t kMax = INT64_MAX;
    std::vector<Directive> t;
    t.push_back({"bind", false,
                 [](Config& c, const std::vector<std::string_view>& a) {
                   if (a.empty()) return std::string("wrong number of arguments");
                   c.bind.assign(a.begin(), a.end());
                   return std::string();
                 },
                 [](const Config& c) {
                   std::string s;
                   for (const std::string& b : c.bind) s += (s.empty() ? "" : " ") + b;
                   return s;
                 }});
    t.push_back(Int("port", &Config::port, 0, 65535, false));
    // Redis's RDB save points ("<seconds> <changes>" pairs), accepted and reported as set: keg's log
    // holds every write once it is acknowledged (appendfsync), which satisfies any of them, and
    // it writes no RDB file. CONFIG SET replaces them (one argument), each line of a config file
    // adds its pair, `save ""` removes them all, as Redis's.
    t.push_back({"save", true,
                 [](Config& c, const std::vector<std::string_view>& a) {
                   std::vector<std::string> words;
                   for (std::string_view v : a) {
                     for (std::string& w : SplitWords(v)) words.push_back(std::move(w));
                   }
                   if (words.size() % 2 != 0) return std::string("Invalid save parameters");
                   for (const std::string& w : words) {
                     int64_t n = 0;
                     if (!resp::ParseInt64(w, &n) || n < 0) return std::string("Invalid save parameters");
                   }
                   std::string joined;
                   for (const std::string& w : words) joined += (joined.empty() ? "" : " ") + w;
                   if (a.size() == 1 || joined.empty()) {
                     c.save = joined;  // CONFIG SET's one argument, or "": replaces
                   } else {
                     c.save += (c.save.empty() ? "" : " ") + joined;  // a config file's line: adds
                   }
                   return std::string();
                 },
                 [](const Config& c) { return c.save; }});
    // SHUTDOWN's flags for a signal (Redis 7.0's multi-argument enum): CONFIG SET's one argument
    // or a config line's words; "default" alone, or dropped beside others; SAVE with NOSAVE refused.
    for (const auto& entry : {std::pair{"shutdown-on-sigterm", &Config::shutdown_on_sigterm},
                              std::pair{"shutdown-on-sigint", &Config::shutdown_on_sigint}}) {
      std::string Config::*field = entry.second;  // (a plain variable: lambdas capture it)
      t.push_back({entry.first, true,
                   [field](Config& c, const std::vector<std::string_view>& a) {
                     static constexpr std::string_view kFlags[] = {"save", "nosave", "now", "force"};
                     bool on[4] = {};
                     bool any = false;
                     for (std::string_view v : a) {
                       for (const std::string& w : SplitWords(v)) {
                         const std::string word = Lower(w);
                         any = true;
                         if (word == "default") continue;
                         const auto* it = std::find(std::begin(kFlags), std::end(kFlags), word);
                         if (it == std::end(kFlags)) {
                           return std::string("argument(s) must be one of the following: default, save, nosave, now, force");
                         }
                         on[it - std::begin(kFlags)] = true;
                       }
                     }
                     if (!any) return std::string("argument(s) must be one of the following: default, save, nosave, now, force");
                     if (on[0] && on[1]) return std::string("shutdown options SAVE and NOSAVE can't be used simultaneously");
                     std::string flags;
                     for (size_t i = 0; i < 4; ++i) {
                       if (on[i]) flags += (flags.empty() ? "" : " ") + std::string(kFlags[i]);
                     }
                     c.*field = flags.empty() ? "default" : flags;
                     return std::string();
                   },
                   [field](const Config& c) { return c.*field; }});
    }
    t.push_back(Int("metrics-port", &Config::metrics_port, 0, 65535, false));
    t.push_back(Int("io-threads", &Config::io_threads, 1, 128, false));
    t.push_back(Int("databases", &Config::databases, 1, 256, false));
    t.push_back(Bool("cold-read-io-uring", &Config::cold_read_io_uring, true));
    t.push_back(Bool("crash-log-enabled", &Config::crash_log_enabled, true));
    t.push_back(Bool("crash-memcheck-enabled", &Config::crash_memcheck_enabled, true));
    t.push_back(Int("cold-read-depth", &Config::cold_read_depth, 1, 256, true));
    t.push_back(Int("tcp-backlog", &Config::tcp_backlog, 0, INT32_MAX, false));
    t.push_back(Int("tcp-keepalive", &Config::tcp_keepalive, 0, INT32_MAX, true));
    t.push_back(String("unixsocket", &Config::unixsocket, false));
    t.push_back({"unixsocketperm", false,
                 [](Config& c, const std::vector<std::string_view>& a) {
                   if (a.size() != 1) return std::string("wrong number of arguments");
                   int64_t v = 0;  // octal, as Redis's OCTAL_CONFIG
                   const std::string_view d = a[0];
                   if (d.empty() || d.size() > 12 || d.find_first_not_of("01234567") != std::string_view::npos) {
                     return std::string("argument couldn't be parsed into an integer");
                   }
                   for (char ch : d) v = v * 8 + (ch - '0');
                   if (v > 0777) return std::string("argument must be between 0 and 511 inclusive");
                   c.unixsocketperm = v;
                   return std::string();
                 },
                 [](const Config& c) {
                   char buf[16];
                   std::snprintf(buf, sizeof(buf), "%llo", static_cast<unsigned long long>(c.unixsocketperm));
                   return std::string(buf);
                 }});
    t.push_back(Bool("protected-mode", &Config::protected_mode, true));
    t.push_back(String("requirepass", &Config::requirepass, true));
    t.push_back(Int("acllog-max-len", &Config::acllog_max_len, 0, kMax, true));
    t.push_back(Int("maxclients", &Config::maxclients, 1, UINT32_MAX, true));
    t.push_back(Int("tracking-table-max-keys", &Config::tracking_table_max_keys, 0, INT64_MAX, true));
    t.push_back(Int("timeout", &Config::timeout, 0, INT32_MAX, true));
    t.push_back(Int("proto-max-bulk-len", &Config::proto_max_bulk_len, 1024 * 1024, kMax, true,
                    true));
    t.push_back(Int("client-query-buffer-limit", &Config::client_query_buffer_limit, 1024 * 1024,
                    kMax, true, true));
    t.push_back({"client-output-buffer-limit", true,
                 [](Config& c, const std::vector<std::string_view>& a) {
                   // "normal <hard> <soft> <seconds>", possibly several classes on one line.
                   if (a.empty()) return std::string();  // as Redis: nothing to change
                   if (a.size() % 4 != 0) return std::string("Wrong number of arguments in buffer limit configuration.");
                   for (size_t i = 0; i < a.size(); i += 4) {
                     const std::string cls = Lower(a[i]);
                     int64_t hard = 0;
                     int64_t soft = 0;
                     int64_t secs = 0;
                     if (cls != "normal" && cls != "replica" && cls != "slave" && cls != "pubsub") {
                       return std::string("Invalid client class specified in buffer limit configuration.");
                     }
                     if (!ParseMemory(a[i + 1], &hard) || !ParseMemory(a[i + 2], &soft) ||
                         !resp::ParseInt64(a[i + 3], &secs) || hard < 0 || soft < 0 || secs < 0) {
                       return std::string("Error in hard, soft or soft_seconds setting in buffer limit configuration.");
                     }
                     if (cls == "normal") {
                       c.output_hard = hard;
                       c.output_soft = soft;
                       c.output_soft_seconds = secs;
                     } else if (cls == "pubsub") {
                       c.pubsub_output_hard = hard;
                       c.pubsub_output_soft = soft;
                       c.pubsub_output_soft_seconds = secs;
                     } else {
                       c.replica_output_hard = hard;
                       c.replica_output_soft = soft;
                       c.replica_output_soft_seconds = secs;
                     }
                   }
                   return std::string();
                 },
                 [](const Config& c) {
                   auto cls = [](std::string_view name, int64_t hard, int64_t soft, int64_t secs) {
                     return std::string(name) + " " + std::to_string(hard) + " " + std::to_string(soft) + " " +
                            std::to_string(secs);
                   };
                   return cls("normal", c.output_hard, c.output_soft, c.output_soft_seconds) + " " +
                          cls("slave", c.replica_output_hard, c.replica_output_soft, c.replica_output_soft_seconds) +
                          " " +
                          cls("pubsub", c.pubsub_output_hard, c.pubsub_output_soft, c.pubsub_output_soft_seconds);
                 }});
    t.push_back({"loglevel", true,
                 [](Config& c, const std::vector<std::string_view>& a) {
                   if (a.size() != 1) return std::string("wrong number of arguments");
                   const std::string l = Lower(a[0]);
                   if (l == "debug") c.loglevel = LogLevel::kDebug;
                   else if (l == "verbose") c.loglevel = LogLevel::kVerbose;
                   else if (l == "notice") c.loglevel = LogLevel::kNotice;
                   else if (l == "warning") c.loglevel = LogLevel::kWarning;
                   else return std::string("argument(s) must be one of the following: debug, verbose, notice, warning");
                   return std::string();
                 },
                 [](const Config& c) { return std::string(LogLevelName(c.loglevel)); }});
    t.push_back(String("logfile", &Config::logfile, false));
    t.push_back({"notify-keyspace-events", true,
                 [](Config& c, const std::vector<std::string_view>& a) {
                   if (a.size() != 1) return std::string("wrong number of arguments");
                   uint32_t flags = 0;
                   if (!ParseKeyspaceEvents(a[0], &flags)) {
                     return std::string("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.");
                   }
                   c.notify_keyspace_events = flags;
                   return std::string();
                 },
                 [](const Config& c) { return KeyspaceEventsString(c.notify_keyspace_events); }});
    t.push_back(String("dir", &Config::dir, false));
    t.push_back(String("masterauth", &Config::masterauth, true));
    t.push_back(String("masteruser", &Config::masteruser, true));
    t.push_back(Bool("replica-read-only", &Config::replica_read_only, true));
    t.push_back(Bool("slave-read-only", &Config::replica_read_only, true));
    t.push_back(Bool("replica-serve-stale-data", &Config::replica_serve_stale_data, true));
    t.push_back(Bool("slave-serve-stale-data", &Config::replica_serve_stale_data, true));
    t.push_back(Int("replica-priority", &Config::replica_priority, 0, INT_MAX, true));
    t.push_back(Int("slave-priority", &Config::replica_priority, 0, INT_MAX, true));
    t.push_back(String("replica-announce-ip", &Config::replica_announce_ip, true));
    t.push_back(String("slave-announce-ip", &Config::replica_announce_ip, true));
    t.push_back(Int("replica-announce-port", &Config::replica_announce_port, 0, 65535, true));
    t.push_back(Int("slave-announce-port", &Config::replica_announce_port, 0, 65535, true));
    t.push_back(Bool("replica-announced", &Config::replica_announced, true));
    {
      // At least 16 KiB, as Redis's resizeReplicationBacklog makes it (CONFIG SET 1 reads 16384).
      Directive backlog = Int("repl-backlog-size", &Config::repl_backlog_size, 1, LLONG_MAX, true, true);
      backlog.set = [inner = backlog.set](Config& c, const std::vector<std::string_view>& a) {
        std::string err = inner(c, a);
        if (err.empty()) c.repl_backlog_size = std::max<int64_t>(c.repl_backlog_size, 16 * 1024);
        return err;
      };
      t.push_back(std::move(backlog));
    }
    t.push_back(Int("repl-backlog-ttl", &Config::repl_backlog_ttl, 0, LONG_MAX, true));
    t.push_back(Int("shutdown-timeout", &Config::shutdown_timeout, 0, INT32_MAX, true));
    t.push_back({"hz", true,
                 [](Config& c, const std::vector<std::string_view>& a) {
                   if (a.size() != 1) return std::string("wrong number of arguments");
                   int64_t v = 0;
                   if (!resp::ParseInt64(a[0], &v)) return std::string("argument couldn't be parsed into an integer");
                   if (v < 0 || v > INT32_MAX) return std::string("argument must be between 0 and 2147483647 inclusive");
                   c.hz = std::clamp<int64_t>(v, 1, 500);  // as Redis's updateHZ
                   return std::string();
                 },
                 [](const Config& c) { return std::to_string(c.hz); }});
    t.push_back(Bool("dynamic-hz", &Config::dynamic_hz, true));
    t.push_back(Int("repl-ping-replica-period", &Config::repl_ping_replica_period, 1, INT_MAX, true));
    t.push_back(Int("repl-ping-slave-period", &Config::repl_ping_replica_period, 1, INT_MAX, true));
    t.push_back(Int("repl-timeout", &Config::repl_timeout, 1, INT_MAX, true));
    t.push_back(Bool("repl-diskless-sync", &Config::repl_diskless_sync, true));
    t.push_back(Int("repl-diskless-sync-delay", &Config::repl_diskless_sync_delay, 0, INT_MAX, true));
    t.push_back(Int("repl-diskless-sync-max-replicas", &Config::repl_diskless_sync_max_replicas, 0, INT_MAX, true));
    t.push_back(Int("rdb-key-save-delay", &Config::rdb_key_save_delay, INT_MIN, INT_MAX, true));
    t.push_back(Int("loading-process-events-interval-bytes", &Config::loading_process_events_interval_bytes, 1024,
                    INT_MAX, true, true));
    t.push_back(Int("key-load-delay", &Config::key_load_delay, INT_MIN, INT_MAX, true));
    t.push_back(OneOf("repl-diskless-load", &Config::repl_diskless_load, {"disabled", "on-empty-db", "swapdb"}, true));
    t.push_back(Int("min-replicas-to-write", &Config::min_replicas_to_write, 0, INT_MAX, true));
    t.push_back(Int("min-slaves-to-write", &Config::min_replicas_to_write, 0, INT_MAX, true));
    t.push_back(Int("min-replicas-max-lag", &Config::min_replicas_max_lag, 0, INT_MAX, true));
    t.push_back(Int("min-slaves-max-lag", &Config::min_replicas_max_lag, 0, INT_MAX, true));
    for (const char* name : {"replicaof", "slaveof"}) {  // (slaveof: its old name, as Redis's alias)
      t.push_back({name, false,
                   [](Config& c, const std::vector<std::string_view>& a) {
                     if (a.size() != 2) return std::string("wrong number of arguments");
                     int64_t port = 0;
                     if (!resp::ParseInt64(a[1], &port) || port < 0 || port > 65535) return std::string("Invalid master port");
                     c.replicaof = std::string(a[0]) + " " + std::string(a[1]);
                     return std::string();
                   },
                   [](const Config& c) { return c.replicaof; }});
    }
    t.push_back(Int("slowlog-log-slower-than", &Config::slowlog_log_slower_than, -1, kMax, true));
    t.push_back(Int("slowlog-max-len", &Config::slowlog_max_len, 0, LONG_MAX, true));
    t.push_back(Int("latency-monitor-threshold", &Config::latency_monitor_threshold, 0, kMax, true));
    t.push_back(Bool("latency-tracking", &Config::latency_tracking, true));
    t.push_back(Int("busy-reply-threshold", &Config::busy_reply_threshold, 0, LONG_MAX, true));
    t.push_back(Int("lua-time-limit", &Config::busy_reply_threshold, 0, LONG_MAX, true));
    t.push_back(Int("hash-max-listpack-entries", &Config::hash_max_listpack_entries, 0, LONG_MAX, true));
    t.push_back(Int("hash-max-ziplist-entries", &Config::hash_max_listpack_entries, 0, LONG_MAX, true));
    t.push_back(Int("hash-max-listpack-value", &Config::hash_max_listpack_value, 0, LONG_MAX, true, true));
    t.push_back(Int("hash-max-ziplist-value", &Config::hash_max_listpack_value, 0, LONG_MAX, true, true));
    t.push_back(Int("set-max-intset-entries", &Config::set_max_intset_entries, 0, LONG_MAX, true));
    t.push_back(Int("set-max-listpack-entries", &Config::set_max_listpack_entries, 0, LONG_MAX, true));
    t.push_back(Int("set-max-listpack-value", &Config::set_max_listpack_value, 0, LONG_MAX, true, true));
    t.push_back(Int("zset-max-listpack-entries", &Config::zset_max_listpack_entries, 0, LONG_MAX, true));
    t.push_back(Int("zset-max-ziplist-entries", &Config::zset_max_listpack_entries, 0, LONG_MAX, true));
    t.push_back(Int("zset-max-listpack-value", &Config::zset_max_listpack_value, 0, LONG_MAX, true, true));
    t.push_back(Int("zset-max-ziplist-value", &Config::zset_max_listpack_value, 0, LONG_MAX, true, true));
    t.push_back(Int("list-max-listpack-size", &Config::list_max_listpack_size, INT_MIN, INT_MAX, true));
    t.push_back(Int("list-max-ziplist-size", &Config::list_max_listpack_size, INT_MIN, INT_MAX, true));
    t.push_back(Int("list-compress-depth", &Config::list_compress_depth, 0, INT_MAX, true));
    t.push_back(Int("hll-sparse-max-bytes", &Config::hll_sparse_max_bytes, 0, LONG_MAX, true, true));
    t.push_back(Int("maxmemory-samples", &Config::maxmemory_samples, 1, INT_MAX, true));
    t.push_back(Int("maxmemory-eviction-tenacity", &Config::maxmemory_eviction_tenacity, 0, 100, true));
    t.push_back({"latency-tracking-info-percentiles", true,
                 [](Config& c, const std::vector<std::string_view>& a) {
                   // One argument holding space-separated percentiles (CONFIG SET's form), or one
                   // per argument (a config file line); each 0..100. The one argument is split at
                   // each space, as Redis's sdssplitlen: "50  99" holds an empty word, which is no
                   // number; "" alone is no percentile.
                   const std::vector<std::string_view> words =
                       a.size() == 1 ? SplitAtEachSpace(a[0]) : a;
                   std::vector<double> out;
                   for (const std::string_view w : words) {
                     const std::string word(w);  // (strtod needs the NUL)
                     // Redis's string2d: the whole word a number (no leading space), in range, not
                     // NaN.
                     char* end = nullptr;
                     errno = 0;
                     const double v = std::strtod(word.c_str(), &end);
                     if (word.empty() || std::isspace(static_cast<unsigned char>(word[0])) != 0 ||
                         end != word.c_str() + word.size() || std::isnan(v) ||
                         (errno == ERANGE && (std::isinf(v) || v == 0))) {
                       return std::string("Invalid latency-tracking-info-percentiles parameters");
                     }
                     if (v < 0.0 || v > 100.0) {
                       return std::string("latency-tracking-info-percentiles parameters should sit between [0.0,100.0]");
                     }
                     out.push_back(v);
                   }
                   c.latency_tracking_info_percentiles = std::move(out);
                   return std::string();
                 },
                 [](const Config& c) {
                   std::string s;
                   for (double v : c.latency_tracking_info_percentiles) {
                     if (!s.empty()) s += ' ';
                     s += FormatPercentile(v);
                   }
                   return s;
                 }});
    t.push_back(OneOf("enable-debug-command", &Config::enable_debug_command, {"no", "yes", "local"}, false));
    t.push_back(String("pidfile", &Config::pidfile, false));
    t.push_back(String("aclfile", &Config::aclfile, false));
    t.push_back(OneOf("acl-pubsub-default", &Config::acl_pubsub_default, {"allchannels", "resetchannels"}, true));
    t.push_back(Bool("rdbcompression", &Config::rdbcompression, true));
    t.push_back({"dbfilename", true,
                 [](Config& c, const std::vector<std::string_view>& a) {
                   if (a.size() != 1) return std::string("wrong number of arguments");
                   if (a[0].find('/') != std::string_view::npos) return std::string("dbfilename can't be a path, just a filename");
                   c.dbfilename = std::string(a[0]);
                   return std::string();
                 },
                 [](const Config& c) { return c.dbfilename; }, /*protected_config=*/true});
    t.push_back(Bool("always-show-logo", &Config::always_show_logo, false));
    t.push_back(Bool("no-appendfsync-on-rewrite", &Config::no_appendfsync_on_rewrite, true));
    t.push_back(Bool("activerehashing", &Config::activerehashing, true));
    t.push_back(OneOf("enable-protected-configs", &Config::enable_protected_configs, {"no", "yes", "local"}, false));
    t.push_back(OneOf("enable-module-command", &Config::enable_module_command, {"no", "yes", "local"}, false));
    t.push_back(OneOf("propagation-error-behavior", &Config::propagation_error_behavior,
                      {"ignore", "panic", "panic-on-replicas"}, true));
    t.push_back(OneOf("sanitize-dump-payload", &Config::sanitize_dump_payload,
                      {"no", "yes", "clients"}, true));
    t.push_back({"appendfsync", false,
                 [](Config& c, const std::vector<std::string_view>& a) {
                   if (a.size() != 1) return std::string("wrong number of arguments");
                   const std::string l = Lower(a[0]);
                   if (l == "always") c.appendfsync = store::FsyncPolicy::kAlways;
                   else if (l == "everysec") c.appendfsync = store::FsyncPolicy::kEverySec;
                   else if (l == "no") c.appendfsync = store::FsyncPolicy::kNo;
                   else return std::string("argument(s) must be one of the following: always, everysec, no");
                   return std::string();
                 },
                 [](const Config& c) {
                   switch (c.appendfsync) {
                     case store::FsyncPolicy::kAlways: return std::string("always");
                     case store::FsyncPolicy::kEverySec: return std::string("everysec");
                     case store::FsyncPolicy::kNo: break;
                   }
                   return std::string("no");
                 }});
    t.push_back(Int("data-file-size", &Config::data_file_size, 1024 * 1024, 1ll << 40, false, true));
    t.push_back(Bool("verify-checksums", &Config::verify_checksums, false));
    t.push_back(Int("compaction-frag-trigger", &Config::compaction_frag_trigger, 1, 100, false));
    t.push_back(Int("compaction-dead-bytes-trigger", &Config::compaction_dead_bytes_trigger, 0,
                    kMax, false, true));
    t.push_back(Int("compaction-rate-limit", &Config::compaction_rate_limit, 0, kMax, false, true));
    t.push_back(Bool("auto-compaction", &Config::auto_compaction, false));
    return t;
  }();
  return table;
}

const Directive* Find(std::string_view name) {
  const std::string l = Lower(name);
  for (const Directive& d : Table()) {
    if (d.name == l) return &d;
  }
  return nullptr;
}

// Redis's sdssplitargs for a config line: words, "double quoted" with escapes, 'single quoted'.
bool SplitLine(std::string_view line, std::vector<std::string>* out) {
  size_t i = 0;
  while (true) {
    while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
    if (i >= line.size()) return true;
    std::string word;
    if (line[i] == '"' || line[i] == '\'') {
      const char q = line[i++];
      bool closed = false;
      while (i < line.size()) {
        char c = line[i++];
        if (q == '"' && c == '\\' && i < line.size()) {
          const char e = line[i++];
          switch (e) {
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            default: c = e; break;
          }
        } else if (q == '\'' && c == '\\' && i < line.size() && line[i] == '\'') {
          c = line[i++];
        } else if (c == q) {
          closed = true;
          break;
        }
        word.push_back(c);
      }
      if (!closed) return false;
      if (i < line.size() && !std::isspace(static_cast<unsigned char>(line[i]))) return false;
    } else {
      while (i < line.size() && !std::isspace(static_cast<unsigned char>(line[i]))) word.push_back(line[i++]);
    }
    out->push_back(std::move(word));
  }
}

std::string Fatal(int line_no, std::string_view line, std::string_view why) {
  std::ostringstream s;
  s << "\n*** FATAL CONFIG FILE ERROR (keg) ***\n";
  if (line_no > 0) s << "Reading the configuration file, at line " << line_no << "\n";
  s << ">>> '" << line << "'\n" << why << "\n";
  return s.str();
}

}  // namespace

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kVerbose: return "verbose";
    case LogLevel::kNotice: return "notice";
    case LogLevel::kWarning: break;
  }
  return "warning";
}

bool ParseMemoryBytes(std::string_view text, uint64_t* out) {
  text = text.substr(0, text.find('\0'));
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (text.size() - digits > 2) return false;  // no unit is longer (and a long tail is not copied)
  const std::string unit = Lower(text.substr(digits));
  uint64_t mul = 1;
  static const std::pair<std::string_view, uint64_t> kUnits[] = {
      {"", 1}, {"b", 1}, {"k", 1000}, {"kb", 1024}, {"m", 1000 * 1000}, {"mb", 1024 * 1024},
      {"g", 1000ull * 1000 * 1000}, {"gb", 1024ull * 1024 * 1024}};
  bool known = false;
  for (const auto& [suffix, m] : kUnits) {
    if (unit == suffix) {
      mul = m;
      known = true;
    }
  }
  if (!known || digits >= 128) return false;  // (Redis copies the digits into 128 bytes)
  uint64_t v = 0;
  for (size_t i = 0; i < digits; ++i) {
    const auto d = static_cast<uint64_t>(text[i] - '0');
    v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
  }
  *out = v != 0 && v > UINT64_MAX / mul ? UINT64_MAX : v * mul;
  return true;
}

bool ParseMemory(std::string_view text, int64_t* out) {
  uint64_t v = 0;
  if (!ParseMemoryBytes(text, &v) || v > static_cast<uint64_t>(INT64_MAX)) return false;
  *out = static_cast<int64_t>(v);
  return true;
}

store::Options Config::StoreOptions() const {
  store::Options o;
  o.dir = dir;
  o.databases = static_cast<uint32_t>(databases);
  o.fsync = appendfsync;
  o.max_file_size = static_cast<uint64_t>(data_file_size);
  o.verify_checksums = verify_checksums;
  o.auto_compaction = auto_compaction;
  o.frag_merge_trigger = static_cast<double>(compaction_frag_trigger) / 100.0;
  o.dead_bytes_merge_trigger = static_cast<uint64_t>(compaction_dead_bytes_trigger);
  o.compaction_rate_limit = static_cast<uint64_t>(compaction_rate_limit);
  return o;
}

// Redis directives keg knows but whose only honourable value is the one that describes keg: that
// value is accepted (it is already so), a well-formed other value is refused saying why, a
// malformed one gets Redis's own error. "" when accepted.
namespace {
std::string SetFixedDirective(std::string_view name, const std::vector<std::string_view>& values,
                              bool at_runtime, bool* known) {
  *known = true;
  const std::string n = Lower(name);
  const std::string v = values.size() == 1 ? Lower(values[0]) : std::string();
  if (n == "maxmemory") {
    if (values.size() != 1) return "wrong number of arguments";
    int64_t bytes = 0;
    if (!ParseMemory(values[0], &bytes)) return "argument must be a memory value";
    return bytes == 0 ? "" : "keg keeps its data on disk and never evicts: maxmemory must be 0";
  }
  if (n == "maxmemory-clients") {
    // A size, or a percentage of maxmemory kept as its negative (Redis: -100..SSIZE_MAX); a size
    // past 2^63 - 1 reads as a negative too, as in Redis.
    if (values.size() != 1) return "wrong number of arguments";
    const std::string_view text = values[0];
    int64_t amount = 0;
    int64_t percent = 0;
    uint64_t bytes = 0;
    if (text.size() > 1 && text.back() == '%' && resp::ParseInt64(text.substr(0, text.size() - 1), &percent) &&
        percent >= 0) {
      amount = -percent;
    } else if (ParseMemoryBytes(text, &bytes)) {
      amount = static_cast<int64_t>(bytes);
    } else {
      return "argument must be a memory or percent value";
    }
    if (amount < -100) return "percentage argument must be less or equal to 100";
    return amount == 0 ? "" : "keg never evicts clients: maxmemory-clients must be 0";
  }
  if (n == "maxmemory-policy") {
    static const char* const kPolicies[] = {"volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
                                            "allkeys-lru", "allkeys-lfu", "allkeys-random", "noeviction"};
    if (values.size() != 1) return "wrong number of arguments";
    bool valid = false;
    for (const char* p : kPolicies) valid |= v == p;
    if (!valid) {
      return "argument(s) must be one of the following: volatile-lru, volatile-lfu, volatile-random, "
             "volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction";
    }
    return v == "noeviction" ? "" : "keg never evicts: the only policy is noeviction";
  }
  if (n == "appendonly") {
    if (v != "yes" && v != "no") return "argument must be 'yes' or 'no'";
    return v == "yes" ? "" : "keg logs every write; appendonly cannot be turned off";
  }
  if (n == "aof-use-rdb-preamble") {
    if (v != "yes" && v != "no") return "argument must be 'yes' or 'no'";
    return v == "no" ? "" : "keg's log is not an AOF: it has no RDB preamble";
  }
  if (n == "cluster-enabled" || n == "daemonize") {
    if (at_runtime) return "can't set immutable config";
    if (values.size() != 1) return "wrong number of arguments";
    if (n == "daemonize") {
      if (v != "yes" && v != "no") return "argument must be 'yes' or 'no'";
      return v == "no" ? "" : "keg runs in the foreground: use systemd or another supervisor";
    }
    return v == "no" ? "" : "keg has no cluster mode";
  }
  *known = false;
  return {};
}
}  // namespace

std::string SetDirective(Config* config, std::string_view name,
                         const std::vector<std::string_view>& values, bool at_runtime) {
  const Directive* d = Find(name);
  if (d == nullptr) {
    bool known = false;
    std::string err = SetFixedDirective(name, values, at_runtime, &known);
    if (!known || err == "wrong number of arguments") return "Bad directive or wrong number of arguments";
    return err;
  }
  if (at_runtime && !d->mutable_at_runtime) return "can't set immutable config";
  // (`local` is taken as allowing it: the caller's address is not known here. Redis's other
  // protected config, dir, is immutable in keg.)
  if (at_runtime && d->protected_config && config->enable_protected_configs == "no") {
    return "can't set protected config";
  }
  Config copy = *config;
  std::string err = d->set(copy, values);
  if (err == "wrong number of arguments") err = "Bad directive or wrong number of arguments";
  if (err.empty()) *config = std::move(copy);
  return err;
}

std::vector<std::pair<std::string, std::string>> GetDirectives(const Config& config,
                                                               std::string_view pattern) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const Directive& d : Table()) {
    if (GlobMatch(pattern, d.name, true)) out.emplace_back(std::string(d.name), d.get(config));
  }
  // Redis directives keg does not have, answered with the values that describe keg, for clients
  // and tools that read them (redis-benchmark reads save and appendonly).
  static const std::pair<std::string_view, std::string_view> kFixed[] = {
      {"appendonly", "yes"},
      {"maxmemory", "0"},  {"maxmemory-policy", "noeviction"}, {"cluster-enabled", "no"},
      {"daemonize", "no"}, {"maxmemory-clients", "0"}, {"aof-use-rdb-preamble", "no"}};
  for (const auto& [n, v] : kFixed) {
    if (GlobMatch(pattern, n, true)) out.emplace_back(std::string(n), std::string(v));
  }
  return out;
}

std::string FormatPercentile(double p) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%f", p);
  std::string s(buf);
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

namespace {

// A value as a config file line holds it: bare when it is one plain word, else in double quotes
// with Redis's escapes (sdscatrepr), so SplitLine reads it back as the same one argument.
std::string QuoteValue(const std::string& v) {
  const bool plain = !v.empty() && std::all_of(v.begin(), v.end(), [](char ch) {
    return std::isgraph(static_cast<unsigned char>(ch)) && ch != '"' && ch != '\'' && ch != '\\';
  });
  if (plain) return v;
  std::string out = "\"";
  for (char ch : v) {
    switch (ch) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (std::isprint(static_cast<unsigned char>(ch))) {
          out += ch;
        } else {
          char hex[5];
          std::snprintf(hex, sizeof(hex), "\\x%02x", static_cast<unsigned char>(ch));
          out += hex;
        }
    }
  }
  return out + "\"";
}

}  // namespace

std::string RewriteConfigText(std::string_view old_text, const Config& current) {
  // Kept as they are: lines whose directive has several lines or several words of its own.
  static const std::set<std::string> kVerbatim = {"client-output-buffer-limit", "user", "save", "bind",
                                                   "include", "rename-command", "loadmodule",
                                                   "latency-tracking-info-percentiles"};
  // Old names of a directive: rewritten where the file has them, never added.
  static const std::map<std::string, std::string> kAliases = {
      {"slave-read-only", "replica-read-only"},
      {"slave-serve-stale-data", "replica-serve-stale-data"},
      {"slave-priority", "replica-priority"},
      {"repl-ping-slave-period", "repl-ping-replica-period"},
      {"min-slaves-to-write", "min-replicas-to-write"},
      {"min-slaves-max-lag", "min-replicas-max-lag"},
      {"lua-time-limit", "busy-reply-threshold"},
      {"hash-max-ziplist-entries", "hash-max-listpack-entries"},
      {"hash-max-ziplist-value", "hash-max-listpack-value"},
      {"zset-max-ziplist-entries", "zset-max-listpack-entries"},
      {"zset-max-ziplist-value", "zset-max-listpack-value"},
      {"list-max-ziplist-size", "list-max-listpack-size"},
      {"slaveof", "replicaof"}};
  // Words of their own (host and port), written bare.
  static const std::set<std::string> kWords = {"replicaof"};
  const Config defaults;
  auto value_of = [](const Config& c, const std::string& name, std::string* out) {
    for (auto& [n, v] : GetDirectives(c, name)) {
      if (n == name) {
        *out = v;
        return true;
      }
    }
    return false;
  };
  auto line_for = [&](const std::string& name, const std::string& value) {
    return name + " " + (kWords.count(name) != 0 ? value : QuoteValue(value));
  };
  std::string out;
  std::set<std::string> done;
  size_t pos = 0;
  while (pos < old_text.size()) {
    size_t nl = old_text.find('\n', pos);
    if (nl == std::string_view::npos) nl = old_text.size();
    const std::string_view raw = old_text.substr(pos, nl - pos);
    pos = nl + 1;
    std::string_view line = raw;
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.front()))) line.remove_prefix(1);
    std::vector<std::string> words;
    if (line.empty() || line[0] == '#' || !SplitLine(line, &words) || words.empty()) {
      out.append(raw).push_back('\n');
      continue;
    }
    std::string name = Lower(words[0]);
    if (name == "slaveof") name = "replicaof";
    std::string value;
    if (kVerbatim.count(name) != 0 || !value_of(current, name, &value)) {
      out.append(raw).push_back('\n');  // verbatim, or not a directive keg knows
      continue;
    }
    const auto alias = kAliases.find(name);
    const std::string& canonical = alias != kAliases.end() ? alias->second : name;
    if (done.count(canonical) != 0 || !done.insert(name).second) continue;  // written already
    done.insert(canonical);
    if (kWords.count(name) != 0 && value.empty()) continue;  // REPLICAOF NO ONE: the line goes
    out += line_for(name, value) + "\n";
  }
  bool marked = false;
  for (auto& [name, value] : GetDirectives(current, "*")) {
    if (done.count(name) != 0 || kVerbatim.count(name) != 0 || kAliases.count(name) != 0) continue;
    std::string def;
    if (value_of(defaults, name, &def) && def == value) continue;
    if (kWords.count(name) != 0 && value.empty()) continue;
    if (!marked) {
      if (!out.empty() && out.back() != '\n') out.push_back('\n');
      out += "# Generated by CONFIG REWRITE\n";
      marked = true;
    }
    out += line_for(name, value) + "\n";
    done.insert(name);
  }
  return out;
}

bool ParseConfigText(std::string_view text, Config* config, std::string* error) {
  int line_no = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.remove_suffix(1);
    size_t start = 0;
    while (start < line.size() && std::isspace(static_cast<unsigned char>(line[start]))) ++start;
    line.remove_prefix(start);
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> words;
    if (!SplitLine(line, &words)) {
      *error = Fatal(line_no, line, "Unbalanced quotes in configuration line");
      return false;
    }
    if (words.empty()) continue;
    if (Lower(words[0]) == "user") {
      // Checked when the server applies it (AclRegistry::SetUser), as Redis loads users after the
      // rest of the configuration.
      if (words.size() < 2) {
        *error = Fatal(line_no, line, "Bad directive or wrong number of arguments");
        return false;
      }
      std::vector<std::string> user(words.begin() + 1, words.end());
      if (user.size() == 1 && user[0].find(' ') != std::string::npos) {
        // --user "alice on >pw ~* +@all" on the command line: one quoted argument.
        std::vector<std::string> split;
        SplitLine(user[0], &split);
        user = std::move(split);
      }
      config->users.push_back(std::move(user));
      continue;
    }
    std::vector<std::string_view> values(words.begin() + 1, words.end());
    const std::string err = SetDirective(config, words[0], values, false);
    if (!err.empty()) {
      *error = Fatal(line_no, line, err);
      return false;
    }
  }
  return true;
}

bool LoadConfig(int argc, char** argv, Config* config, std::string* error) {
  int i = 1;
  std::string text;
  if (i < argc && std::string_view(argv[i]).substr(0, 2) != "--") {
    std::ifstream in(argv[i]);
    if (!in) {
      *error = std::string("Fatal error, can't open config file '") + argv[i] + "'";
      return false;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    if (!ParseConfigText(ss.str(), config, error)) return false;
    ++i;
  }
  // "--name v1 v2 --other v" becomes lines "name v1 v2" and "other v", as redis-server does.
  std::string overrides;
  for (; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a.substr(0, 2) == "--") {
      if (!overrides.empty()) overrides += '\n';
      overrides += std::string(a.substr(2));
    } else {
      std::string quoted = "\"";
      for (char c : a) {
        if (c == '"' || c == '\\') quoted += '\\';
        quoted += c;
      }
      overrides += " " + quoted + "\"";
    }
  }
  if (!overrides.empty()) {
    std::string err;
    if (!ParseConfigText(overrides, config, &err)) {
      *error = err;
      return false;
    }
  }
  return true;
}

}  // namespace keg::server
