// keg-server's configuration: the directive table, redis.conf parsing, CONFIG GET / SET.
//
// Every directive is a row of a table (name, default, whether CONFIG SET may change it, how to
// parse and print it). The same table reads conf/keg.conf, the "--name value" command-line
// overrides and CONFIG SET, and answers CONFIG GET, so the three can never disagree.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "store/store.h"

namespace keg::server {

enum class LogLevel : uint8_t { kDebug, kVerbose, kNotice, kWarning };

/// The values of every directive. A plain struct: the server copies it under a lock.
struct Config {
  // Network.
  std::vector<std::string> bind = {"127.0.0.1", "-::1"};
  int64_t port = 6379;
  int64_t metrics_port = 0;  // HTTP /metrics and /health (0: off)
  int64_t io_threads = 1;
  /// crash-log-enabled: a fatal signal writes the crash report to the log (crash_report.h).
  bool crash_log_enabled = true;
  /// crash-memcheck-enabled: accepted for Redis's configs (Redis tests memory after a crash;
  /// keg does not).
  bool crash_memcheck_enabled = true;
  bool cold_read_io_uring = true;  // cold reads from each event loop's io_uring, else the read pool
  int64_t cold_read_depth = 6;     // of those, in the kernel at once per event loop
  int64_t tcp_backlog = 511;
  int64_t tcp_keepalive = 300;
  std::string unixsocket;       // a Unix domain socket to listen on as well ("": none)
  int64_t unixsocketperm = 0;   // its permission bits (octal in the file; 0: the umask's)
  bool protected_mode = true;
  std::string requirepass;
  int64_t acllog_max_len = 128;
  /// "user <name> <rules...>" lines (Redis's users in the config file), applied at start.
  std::vector<std::vector<std::string>> users;
  /// aclfile: the file of users (Redis's format, "user <name> <rules...>" lines) loaded at start
  /// instead of `user` lines (both at once is refused, as Redis), reloaded by ACL LOAD and
  /// written by ACL SAVE. A relative path is taken from `dir`, as Redis's (which chdirs there).
  /// "": none.
  std::string aclfile;
  std::string acl_pubsub_default = "resetchannels";  ///< resetchannels | allchannels: new users' channels
  int64_t maxclients = 10000;
  int64_t timeout = 0;
  // Limits.
  int64_t proto_max_bulk_len = 512ll * 1024 * 1024;
  int64_t client_query_buffer_limit = 1ll << 30;
  int64_t output_hard = 0;  // client-output-buffer-limit normal <hard> <soft> <seconds>
  int64_t output_soft = 0;
  int64_t output_soft_seconds = 0;
  uint32_t notify_keyspace_events = 0;  // NotifyClass flags (notify-keyspace-events)
  int64_t tracking_table_max_keys = 1000000;  // CLIENT TRACKING's table (0: unbounded)
  int64_t pubsub_output_hard = 32ll << 20;  // client-output-buffer-limit pubsub <hard> <soft> <seconds>
  int64_t pubsub_output_soft = 8ll << 20;
  int64_t pubsub_output_soft_seconds = 60;
  // Replication (Redis's names and defaults; replica.h, replication.h).
  std::string masterauth;
  std::string masteruser;
  bool replica_read_only = true;         // alias slave-read-only
  bool replica_serve_stale_data = true;  // alias slave-serve-stale-data
  int64_t replica_priority = 100;        // alias slave-priority (INFO, for Sentinel)
  // What a replica tells its primary to list it as (REPLCONF ip-address / listening-port; INFO's
  // slaveN:ip= and port=, which Sentinel connects to): behind NAT or a proxy. "" / 0: its own.
  std::string replica_announce_ip;    // alias slave-announce-ip
  int64_t replica_announce_port = 0;  // alias slave-announce-port
  bool replica_announced = true;      // INFO replica_announced (Sentinel hides one that says 0)
  int64_t repl_backlog_size = 1ll << 20;
  int64_t repl_backlog_ttl = 3600;  // seconds a primary with no replica keeps its history (0: for ever)
  int64_t hz = 10;  // Redis's server cron rate (1-500): reported (INFO hz); keg's timers are fixed
  // Redis's eviction tuning: checked and reported as Redis's, changing nothing (keg never evicts).
  int64_t maxmemory_samples = 5;
  int64_t maxmemory_eviction_tenacity = 10;
  int64_t shutdown_timeout = 10;  // seconds a shutdown waits for lagging replicas (0: it does not)
  int64_t repl_ping_replica_period = 10;  // alias repl-ping-slave-period
  int64_t repl_timeout = 60;
  bool repl_diskless_sync = true;        // a full sync streams the snapshot to replicas that read $EOF:
  // Seconds a diskless full sync waits for more replicas to share its snapshot (Redis: 5; keg's
  // snapshot costs no fork, so it starts at once unless told), and how many end the wait early.
  int64_t repl_diskless_sync_delay = 0;
  int64_t repl_diskless_sync_max_replicas = 0;
  // Redis's test hooks (hidden directives there): microseconds slept per key while a full sync's
  // snapshot is built (rdb-key-save-delay) and while a replica loads one (key-load-delay); a
  // negative -N sleeps 1 µs once in N keys on average (Redis's debugDelay).
  int64_t rdb_key_save_delay = 0;
  int64_t key_load_delay = 0;
  // Accepted and reported for redis.conf files and Redis's tests, with no effect: a replica serves
  // clients all through a load (it loads into staging databases), and keg's timers do not follow hz.
  int64_t loading_process_events_interval_bytes = 2 * 1024 * 1024;
  bool dynamic_hz = true;
  // How a replica loads a full sync (Redis's directive; its default). Every value is accepted and
  // means the same in keg, whose load always has what each promises: the snapshot goes into
  // staging databases as it arrives and is swapped in whole once checked (Redis's swapdb without
  // its risk), so a failed sync changes nothing (Redis's disabled) and never empties the data set
  // first (on-empty-db). Reported as set, for tools and Redis's tests that set and read it.
  std::string repl_diskless_load = "disabled";  // disabled | on-empty-db | swapdb
  int64_t min_replicas_to_write = 0;  // alias min-slaves-to-write (0: off)
  int64_t min_replicas_max_lag = 10;  // alias min-slaves-max-lag (seconds; 0: off)
  std::string replicaof;                  // "host port" from the config file, followed at start
  int64_t replica_output_hard = 256ll << 20;  // client-output-buffer-limit replica <hard> <soft> <seconds>
  int64_t replica_output_soft = 64ll << 20;
  int64_t replica_output_soft_seconds = 60;
  // Logging.
  LogLevel loglevel = LogLevel::kNotice;
  std::string logfile;  // empty: standard output
  // Storage (keg::store::Options; fixed once the store is open).
  std::string dir = "./data";
  /// shutdown-on-sigterm / shutdown-on-sigint: Redis's flags, in its order ("default", or some of
  /// "save nosave now force"). keg heeds `now` (no wait for lagging replicas); save, nosave and
  /// force change nothing here (the log is durable already; nothing in keg's exit can fail as an
  /// RDB save can).
  std::string shutdown_on_sigterm = "default";
  std::string shutdown_on_sigint = "default";
  std::string save;  // Redis's RDB save points, as set (keg writes no RDB: its log holds every write)
  int64_t databases = 16;  // 1-256 (a record's db byte)
  store::FsyncPolicy appendfsync = store::FsyncPolicy::kEverySec;
  int64_t data_file_size = 256ll * 1024 * 1024;
  bool verify_checksums = true;
  int64_t compaction_frag_trigger = 60;  // percent
  int64_t compaction_dead_bytes_trigger = 512ll * 1024 * 1024;
  int64_t compaction_rate_limit = 0;
  bool auto_compaction = true;

  // Introspection (Redis's names and defaults).
  int64_t slowlog_log_slower_than = 10000;  // microseconds; < 0 disables
  int64_t slowlog_max_len = 128;
  int64_t latency_monitor_threshold = 0;  // milliseconds; 0 disables
  bool latency_tracking = true;           // per-command latency histograms
  std::vector<double> latency_tracking_info_percentiles = {50.0, 99.0, 99.9};
  std::string enable_debug_command = "no";  // no | yes | local
  // Redis's directives for its RDB file and process, accepted so a redis.conf (and Redis's test
  // suite's) starts keg. pidfile, rdbcompression and propagation-error-behavior act as in Redis;
  // the others describe what keg does not have (conf/keg.conf says which and why) and are
  // reported as set.
  std::string pidfile;                     // written at start, removed at a clean exit ("": none)
  bool rdbcompression = true;              // LZF in DUMP payloads and full-sync snapshots
  std::string dbfilename = "dump.rdb";     // keg has no SAVE file: not used
  bool always_show_logo = false;           // a start-up line with " PID: n" (keg has no logo)
  bool no_appendfsync_on_rewrite = false;  // keg's log has no rewrite
  bool activerehashing = true;             // keg's keydir rehashes incrementally on its own
  std::string enable_protected_configs = "no";      // no | yes | local (CONFIG SET dbfilename)
  std::string enable_module_command = "no";         // no | yes | local (keg has no modules)
  std::string propagation_error_behavior = "ignore";  // ignore | panic | panic-on-replicas
  // no | yes | clients: RESTORE checks every payload whole whatever it says (Redis's yes).
  std::string sanitize_dump_payload = "no";
  // Scripts.
  int64_t busy_reply_threshold = 5000;  // milliseconds (alias lua-time-limit); 0: never busy
  // Small collections are stored whole while within these (Redis's names and defaults; they also
  // decide what OBJECT ENCODING reports). docs/types.md.
  int64_t hash_max_listpack_entries = 512;  // alias hash-max-ziplist-entries
  int64_t hash_max_listpack_value = 64;     // alias hash-max-ziplist-value
  int64_t set_max_intset_entries = 512;
  int64_t set_max_listpack_entries = 128;  // Redis 7.2's names, accepted
  int64_t set_max_listpack_value = 64;
  int64_t zset_max_listpack_entries = 128;  // zset-max-listpack-entries (alias zset-max-ziplist-entries)
  int64_t zset_max_listpack_value = 64;     // zset-max-listpack-value (alias zset-max-ziplist-value)
  int64_t list_max_listpack_size = -2;  // alias list-max-ziplist-size (keg: docs/types.md, "Lists")
  int64_t list_compress_depth = 0;      // accepted; keg does not compress list nodes
  int64_t hll_sparse_max_bytes = 3000;  // a HyperLogLog longer than this sparse is made dense

  store::Options StoreOptions() const;
};

/// Parses a whole config text (redis.conf syntax). On error returns false with Redis's fatal
/// message in *error (naming the line and the directive).
bool ParseConfigText(std::string_view text, Config* config, std::string* error);

/// Reads the optional config file and the "--name value ..." overrides, as redis-server does.
bool LoadConfig(int argc, char** argv, Config* config, std::string* error);

/// The space-separated words of a value (bind's one CONFIG SET argument, an ACL file line's
/// rules); runs of spaces count as one.
std::vector<std::string> SplitWords(std::string_view value);
/// A multi-word directive's one CONFIG SET argument split at each space, as Redis's sdssplitlen:
/// "" is no word, " " two empty ones (which the directive then refuses). Views into `value`.
std::vector<std::string_view> SplitAtEachSpace(std::string_view value);

/// Sets one directive (config file, command line, or CONFIG SET when `at_runtime`: then the storage
/// and network directives are refused as immutable). Returns "" on success, else the reason in
/// Redis's wording.
std::string SetDirective(Config* config, std::string_view name,
                         const std::vector<std::string_view>& values, bool at_runtime);

/// CONFIG GET: (name, value) for every directive matching the glob `pattern` (case-insensitive).
std::vector<std::pair<std::string, std::string>> GetDirectives(const Config& config,
                                                               std::string_view pattern);

/// CONFIG REWRITE: the config file's text `old_text` with each directive's line holding its value
/// in `current` (the first line of a directive; later ones dropped; `replicaof` dropped when not a
/// replica), comments, blank lines and multi-line directives (client-output-buffer-limit, user,
/// save, bind) kept as they are, and after a "# Generated by CONFIG REWRITE" line the directives
/// the file does not name whose value differs from the default, as Redis's rewriteConfig.
std::string RewriteConfigText(std::string_view old_text, const Config& current);

/// A size as Redis's memtoull reads it: digits (maybe none: "" and "kb" are 0), then nothing or one
/// unit (b, k, kb, m, mb, g, gb, any case), the text ending at a NUL; no sign, no space. "1gb" ->
/// 1073741824, "10k" -> 10000. A number past 2^64 - 1, or one its unit carries past it, is
/// UINT64_MAX (Redis: strtoull's ERANGE value, or a product that wraps), so that a directive's
/// range refuses it with its range's text, as Redis's. False if not a size.
bool ParseMemoryBytes(std::string_view text, uint64_t* out);
/// ParseMemoryBytes, and false too past INT64_MAX.
bool ParseMemory(std::string_view text, int64_t* out);

std::string_view LogLevelName(LogLevel level);

/// A percentile as Redis prints it: "50", "99.9" (no trailing zeros).
std::string FormatPercentile(double p);

}  // namespace keg::server
