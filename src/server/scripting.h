// Lua scripting: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT, on Debian's Lua 5.1 with the
// libraries Redis 7.0 loads (docs/server.md, "Scripts").
//
// Where a script runs: as one op of a write batch (store::WriteBatch::Run), on the thread that
// holds the store's writer role, at its place in the group being built. Its redis.call runs the
// command's handler there in direct mode (Ctx with a DirectRun): reads see the group's earlier
// writes, the script's own included, and the handler's ops run at once through the store's Txn.
// So no other client's write interleaves with a script, its records land in one group (durable
// together under `always`, visible to readers together through the store's seqlock), and its reply
// is sent once that group is durable, in the connection's reply order.
//
// Threads:
// - ScriptCache: any thread (a mutex).
// - ScriptEngine::Run and everything Lua: the writer role only (one thread at a time: the writer
//   thread, or an I/O thread on the store's leader path; the Lua state is created on first use
//   and dropped after SCRIPT FLUSH, under the role). A busy script on an I/O thread runs that
//   thread's ready handlers from its hook (net::PollCurrentLoop), so they get -BUSY meanwhile.
// - The busy and kill flags: atomics, read by I/O threads (-BUSY, SCRIPT KILL).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "net/session.h"
#include "resp/reply_buffer.h"
#include "server/blocking.h"
#include "server/command.h"
#include "server/functions.h"
#include "server/pubsub.h"
#include "store/store.h"

struct lua_State;

namespace keg::server {

class ClientSession;
class ScriptEngine;
struct AclUser;
struct ServerState;

/// The 40 lower-case hex digits of SHA1(data).
std::string Sha1Hex(std::string_view data);

/// A script's shebang flags (`#!lua flags=no-writes,allow-oom`).
enum ScriptFlag : uint32_t {
  kScriptEvalCompat = 1 << 0,  ///< no shebang: Redis's pre-7.0 rules
  kScriptNoWrites = 1 << 1,
  kScriptAllowOom = 1 << 2,
  kScriptAllowStale = 1 << 3,
  kScriptNoCluster = 1 << 4,
  kScriptAllowCrossSlot = 1 << 5,
};

struct Script {
  std::string sha;  ///< the 40 lower-case hex digits of SHA1(body)
  std::string body;
  uint32_t flags = kScriptEvalCompat;
  size_t shebang_length = 0;  ///< bytes of the first line skipped when compiling (its newline kept)
  // The compiled function in the eval Lua state, writer role only: its registry reference, valid
  // while `lua_state_id` is that state's id (ScriptEngine::Run compiles it on first use).
  mutable int lua_ref = 0;
  mutable uint64_t lua_state_id = 0;
};

/// Parses the shebang line of `body` into `script` (flags, length). False with Redis's error text in
/// *error when it is malformed or names an unknown flag.
bool ParseShebang(std::string_view body, Script* script, std::string* error);

/// Redis's reply for an unknown SHA1.
inline constexpr std::string_view kNoScriptError = "-NOSCRIPT No matching script. Please use EVAL.";
/// What other clients get while a script runs past busy-reply-threshold.
inline constexpr std::string_view kBusyScriptError =
    "-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
/// The same while the busy script is a function.
inline constexpr std::string_view kBusyFunctionError =
    "-BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";

/// The script cache (SCRIPT LOAD, EVAL): SHA1 -> body. Any thread.
class ScriptCache {
 public:
  std::shared_ptr<const Script> Find(std::string_view sha) const;
  /// Compiles `body` (syntax only) and caches it; returns it with its SHA1 in *sha, or null with
  /// the error reply in *error ("Error compiling script (new function): user_script:1: ...").
  std::shared_ptr<const Script> Add(std::string_view body, std::string* sha, std::string* error);
  /// SCRIPT FLUSH: forgets every script; the Lua state is rebuilt before the next script runs.
  void Flush();
  uint64_t epoch() const { return epoch_.load(std::memory_order_acquire); }
  size_t size() const;
  /// Bytes of the bodies and their SHA1s (INFO used_memory_scripts_eval).
  size_t memory() const;

 private:
  struct ShaHash {
    using is_transparent = void;
    size_t operator()(std::string_view sha) const { return std::hash<std::string_view>{}(sha); }
  };
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const Script>, ShaHash, std::equal_to<>> scripts_;
  size_t memory_ = 0;
  std::atomic<uint64_t> epoch_{0};
};

/// One EVAL, EVALSHA or FCALL: what the handler gives the writer, and what the script answers.
struct ScriptRun {
  ScriptEngine* engine = nullptr;
  std::string function;  ///< FCALL: the function's name (then `script` is unused)
  bool fcall_ro = false;  ///< FCALL_RO (FUNCTION STATS shows the command)
  std::shared_ptr<const Script> script;  ///< EVAL / EVALSHA
  /// KEYS then ARGV, copied from the request into one buffer (one allocation, not one per
  /// argument): argument i is bytes [ends[i-1], ends[i]) of `args`.
  std::string args;
  std::vector<size_t> ends;
  size_t numkeys = 0;
  size_t argc() const { return ends.size(); }
  std::string_view arg(size_t i) const {
    const size_t begin = i == 0 ? 0 : ends[i - 1];
    return std::string_view(args).substr(begin, ends[i] - begin);
  }
  bool read_only = false;  ///< EVAL_RO / EVALSHA_RO, or the no-writes flag
  /// CLIENT TRACKING: the caller's id when its reads are tracked (0: not); the script's declared
  /// keys are remembered for it when it first runs a read command (as Redis's call()).
  uint64_t tracking_id = 0;
  bool tracked = false;
  resp::Protocol protocol = resp::Protocol::kResp2;  ///< the caller's (for the reply)
  ClientSession* client = nullptr;  ///< the caller; handlers in direct mode never touch it
  uint32_t db = 0;  ///< the database the script acts in: the caller's, until the script SELECTs
  std::shared_ptr<const AclUser> user;  ///< the caller's user: each redis.call is checked against it
  /// While replicas are attached: the write commands the script ran that changed something (its
  /// effects, filled on the writer), for the replication stream (replication.h).
  std::shared_ptr<std::vector<PropagatedCommand>> effects;
  // Out, on the writer thread:
  /// What it published (PUBLISH, keyspace events), sent with its reply (PubSub::Hold).
  std::vector<PubSub::HeldMessage> published;
  std::string reply;  ///< RESP in the caller's protocol, when !failed
  std::string error;  ///< the error reply ("-ERR ..."), when failed
  bool failed = false;
  /// Not in EXEC nor in another script: the registry that serves the clients blocked on what the
  /// script wrote, at its end in its op (as Redis serves them after the script).
  BlockingRegistry* serve = nullptr;
  std::vector<ServedPop> served;  ///< those it served (filled on the writer), replied to with the script
};

/// Whether `args` (an EVAL, EVALSHA, FCALL or their _RO forms) runs a script that cannot write: the
/// _RO forms, a cached script with the no-writes flag, a no-writes function. CLIENT PAUSE WRITE
/// lets those run, as Redis does. Any thread.
bool ScriptCannotWrite(ScriptEngine& engine, std::span<const std::string_view> args);
/// The flags (kScript*) a script declared in its shebang, or a function's, for `args` (EVAL,
/// EVALSHA, FCALL or their _RO forms); false when it declared none (no shebang), is not known
/// (EVALSHA of an uncached sha, an unknown function) or `args` runs no script. Redis derives such a
/// command's write and stale flags from these (evalGetCommandFlags). Any thread.
bool DeclaredScriptFlags(ScriptEngine& engine, std::span<const std::string_view> args, uint32_t* flags);

/// The Lua side: one interpreter, used under the writer role only.
class ScriptEngine {
 public:
  explicit ScriptEngine(ServerState& server);
  ~ScriptEngine();
  ScriptEngine(const ScriptEngine&) = delete;
  ScriptEngine& operator=(const ScriptEngine&) = delete;

  ScriptCache& cache() { return cache_; }
  FunctionRegistry& functions() { return functions_; }

  /// Runs `run` against the group being built (writer role: see the file comment).
  void Run(ScriptRun& run, store::Txn& txn);

  // ---- Busy scripts: any thread ----
  /// True while a script has run past busy-reply-threshold: other clients get -BUSY.
  bool busy() const { return busy_.load(std::memory_order_acquire); }
  /// The -BUSY reply for the script now busy (an EVAL's or a function's).
  std::string_view busy_error() const {
    return running_function_.load(std::memory_order_acquire) ? kBusyFunctionError : kBusyScriptError;
  }
  /// The primary's stream on a replica waits out a busy script (Redis accumulates it rather than
  /// answering -BUSY, which would make the replica diverge): parks `link` until the script ends,
  /// then resumes it (Link::Resume, on its I/O thread). False, doing nothing, when no script is
  /// busy now.
  bool ParkWhileBusy(std::shared_ptr<net::Link> link);
  /// SCRIPT KILL (`function` false) or FUNCTION KILL: "" when the busy script will stop, else the
  /// error reply (NOTBUSY, UNKILLABLE, or BUSY when it is the other kind).
  std::string Kill(bool function);
  /// FUNCTION STATS' running_script: false when no function is running, else its name, command
  /// line and milliseconds so far.
  bool RunningFunction(std::string* name, std::vector<std::string>* command, int64_t* duration_ms) const;
  /// Whether an EVAL is running now (FUNCTION STATS refuses then, as Redis).
  bool running_eval() const {
    return running_flag_.load(std::memory_order_acquire) && !running_function_.load(std::memory_order_acquire);
  }
  /// Lua memory in bytes (INFO used_memory_lua), as of the last script.
  int64_t lua_memory() const { return lua_memory_.load(std::memory_order_relaxed); }

  // ---- For the Lua C functions (writer role) ----
  struct Running;
  Running* running() { return running_; }

 private:
  // A fresh sandboxed Lua state (libraries, redis API, protections).
  lua_State* NewState();
  void Close();
  // redis.call: runs one command line in direct mode; returns its reply (RESP in r.resp), or ""
  // with the reason in *error when it is refused before running (unknown, arity, not allowed).
  // The reply is in reply_scratch_, valid until the next call.
  std::string_view Command(Running& r, std::span<const std::string_view> argv, std::string* error);

  ServerState& server_;
  ScriptCache cache_;
  FunctionRegistry functions_;
  lua_State* lua_ = nullptr;  // EVAL's state
  uint64_t lua_epoch_ = 0;  // the cache epoch the state was built for
  lua_State* fn_lua_ = nullptr;  // the functions' state (Redis keeps the two apart too)
  uint64_t fn_epoch_ = 0;  // the registry epoch its libraries were loaded at
  mutable std::mutex running_mu_;  // guards running_run_ for FUNCTION STATS
  const ScriptRun* running_run_ = nullptr;
  int64_t running_start_ns_ = 0;
  std::atomic<bool> running_function_{false};
  Running* running_ = nullptr;
  std::atomic<bool> busy_{false};
  std::mutex busy_mu_;  // ParkWhileBusy against the end of the busy script
  std::vector<std::shared_ptr<net::Link>> busy_parked_;  // under busy_mu_
  std::atomic<bool> kill_{false};
  std::atomic<bool> running_flag_{false};
  std::atomic<bool> wrote_{false};
  std::atomic<int64_t> lua_memory_{0};
  uint64_t rand_state_ = 0x1234ABCD330Eull;  // math.random (Redis's lrand48), writer role
  // Reused by every redis.call and every script's reply (writer role): no allocation per call.
  resp::ReplyBuffer out_scratch_{SIZE_MAX};
  std::string reply_scratch_;
  std::vector<std::string_view> call_args_;  // redis.call's arguments
  std::vector<std::string> call_numbers_;    // the ones formatted from numbers
  uint64_t lua_state_id_ = 0;  // lua_'s id (Script::lua_state_id); a new state gets a new one
  std::vector<store::OpResult> call_results_;  // redis.call's op results
  DirectRun call_direct_;                      // redis.call's handler context
  friend struct LuaApi;
};

}  // namespace keg::server
