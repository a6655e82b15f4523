// EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT (scripting.h has where scripts run and why).
#include <memory>
#include <string>

#include "resp/numbers.h"
#include "server/command.h"
#include "server/glob.h"
#include "server/scripting.h"
#include "server/session.h"
#include "server/state.h"

namespace keg::server {
namespace {

using store::OpResult;

// KEYS and ARGV of "<cmd> <script|function> numkeys key... arg...".
void TakeArguments(Ctx& c, size_t numkeys, ScriptRun* run) {
  run->numkeys = numkeys;
  size_t bytes = 0;
  for (size_t i = 3; i < c.argc(); ++i) bytes += c.arg(i).size();
  run->args.reserve(bytes);
  run->ends.reserve(c.argc() - 3);
  for (size_t i = 3; i < c.argc(); ++i) {
    run->args.append(c.arg(i));
    run->ends.push_back(run->args.size());
  }
}

// A FUNCTION command that changed the libraries (which live beside the data, not in a batch):
// replicas get it now, as Redis propagates it.
void PropagateNow(Ctx& c) {
  if (!c.server().repl.active()) return;
  std::string resp;
  AppendCommand(&resp, c.args());
  c.server().repl.Append(ReplicationFeed::kNoDb, resp);
}

// Adds the script to the connection's batch (run by the writer, ScriptEngine::Run) and replies
// with what it answered once the batch is durable.
void Queue(Ctx& c, std::shared_ptr<ScriptRun> run) {
  run->protocol = c.client().protocol();
  run->client = &c.client();
  run->db = c.db();
  run->user = c.client().user_ptr();
  run->tracking_id = c.client().TracksReads() ? c.client().id() : 0;
  run->engine = c.server().scripts.get();
  // The finisher owns the run; the op holds a plain pointer (which std::function stores without an
  // allocation, where a shared_ptr capture costs one): the finisher is in the connection's
  // InFlight, or in a DirectRun, until after the batch (so the op) has run.
  ScriptRun* raw = run.get();
  if (c.propagating()) {
    // Replicas get the script's effects (the write commands it ran), as Redis 7.0 replicates
    // scripts: the script itself may not be deterministic.
    run->effects = std::make_shared<std::vector<PropagatedCommand>>();
    c.PropagateLate([effects = run->effects](std::span<const OpResult>, std::vector<PropagatedCommand>* out) {
      for (PropagatedCommand& e : *effects) out->push_back(std::move(e));
    }, /*transaction=*/true);
  }
  if (!c.inline_only()) {
    run->serve = &c.server().blocking;
    // (Only once a client ever blocked, as PropagateServing: EVAL's hot path stays as it was.)
    if (run->serve->used()) c.client().ServesBlocked(std::shared_ptr<std::vector<ServedPop>>(run, &run->served));
    // The pops it serves reach replicas after the script's effects, as in Redis.
    c.PropagateAfter([run](std::vector<PropagatedCommand>* out) {
      BlockingRegistry::AppendPropagations(run->served, out);
    });
  }
  c.batch().Run([raw](store::Txn& txn) {
    const size_t from = txn.Written();
    {
      PubSub::Hold hold(&raw->published);
      raw->engine->Run(*raw, txn);
    }
    if (raw->serve != nullptr) raw->serve->ServeWritten(txn, from, &raw->served);
  });
  c.Then([run, server = &c.server()](std::span<OpResult> r, resp::ReplyBuffer& out) {
    // (A step runs once its group is durable: when the group fails, what the script published
    // is dropped with it, test_a_script_whose_group_fails_publishes_nothing.)
    if (!run->published.empty()) server->pubsub.SendHeld(run->published);
    if (!run->served.empty())
      BlockingRegistry::SendReplies(run->served, r.empty() ? store::Status::OK() : r[0].error);
    if (run->failed) {
      out.Error(run->error);
    } else {
      out.Raw(run->reply);
    }
  });
}

// EVAL script numkeys key... arg... (and its SHA and read-only forms): the script joins the
// connection's write batch as one op, run where writes are serialized; the reply comes once the
// group holding its writes is durable.
// Redis's scriptPrepareForRun: what a replica whose link is down (replica-serve-stale-data no), a
// read-only replica, an *_RO command and min-replicas-to-write refuse, decided from the script's
// flags before it runs. "" when it may run. (A script without a shebang is checked as it writes.)
std::string RefusedBeforeRun(Ctx& c, uint32_t flags, bool ro_command) {
  ServerState& st = c.server();
  const bool obey = c.client().master_link();  // the primary's stream runs what it sends
  const bool stale = !obey && st.RunningStale();
  if ((flags & kScriptEvalCompat) != 0) {
    return stale ? "-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'." : "";
  }
  if (stale && (flags & kScriptAllowStale) == 0) {
    return "-MASTERDOWN Link with MASTER is down, replica-serve-stale-data is set to 'no' and 'allow-stale' flag is "
           "not set on the script.";
  }
  if ((flags & kScriptNoWrites) == 0) {
    if (!obey && st.replica_of.active() && st.replica_read_only.load(std::memory_order_relaxed)) {
      return "-READONLY Can not run script with write flag on readonly replica";
    }
    if (ro_command) return "Can not execute a script with write flag using *_ro command.";
    if (!obey && !st.EnoughGoodReplicas()) return "-NOREPLICAS Not enough good replicas to write.";
  }
  return "";
}

void EvalWith(Ctx& c, bool by_sha, bool read_only) {
  ScriptEngine& engine = *c.server().scripts;
  if (by_sha && c.arg(1).size() != 40) return c.Fail(std::string(kNoScriptError));
  int64_t numkeys = 0;
  if (!resp::ParseInt64(c.arg(2), &numkeys)) return c.Fail(std::string(err::kNotInteger));
  if (numkeys > static_cast<int64_t>(c.argc()) - 3) {
    return c.Fail("Number of keys can't be greater than number of args");
  }
  if (numkeys < 0) return c.Fail("Number of keys can't be negative");
  auto run = std::make_shared<ScriptRun>();
  if (by_sha) {
    run->script = engine.cache().Find(c.arg(1));
    if (run->script == nullptr) return c.Fail(std::string(kNoScriptError));
  } else {
    std::string error;
    std::string sha;
    run->script = engine.cache().Add(c.arg(1), &sha, &error);
    if (run->script == nullptr) return c.Fail(error);
  }
  const uint32_t flags = run->script->flags;
  if (std::string refused = RefusedBeforeRun(c, flags, read_only); !refused.empty()) return c.Fail(std::move(refused));
  run->read_only = read_only || (flags & kScriptNoWrites) != 0;
  TakeArguments(c, static_cast<size_t>(numkeys), run.get());
  Queue(c, std::move(run));
}

void Eval(Ctx& c) { EvalWith(c, false, false); }
void Evalsha(Ctx& c) { EvalWith(c, true, false); }
void EvalRo(Ctx& c) { EvalWith(c, false, true); }
void EvalshaRo(Ctx& c) { EvalWith(c, true, true); }

void ScriptCmd(Ctx& c) {
  ScriptEngine& engine = *c.server().scripts;
  const std::string sub = ToLower(c.arg(1));
  if (sub == "help" && c.argc() == 2) {
    return Help(c, {"DEBUG (YES|SYNC|NO)", "    Set the debug mode for subsequent scripts executed.",
                    "EXISTS <sha1> [<sha1> ...]",
                    "    Return information about the existence of the scripts in the script cache.",
                    "FLUSH [ASYNC|SYNC]", "    Flush the Lua scripts cache. Very dangerous on replicas.",
                    "    When called without the optional mode argument, the behavior is determined by the",
                    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
                    "    * ASYNC: Asynchronously flush the scripts cache.",
                    "    * SYNC: Synchronously flush the scripts cache.", "KILL",
                    "    Kill the currently executing Lua script.", "LOAD <script>",
                    "    Load a script into the scripts cache without executing it."});
  }
  if (sub == "flush") {  // (any number of arguments: past one, Redis's option error)
    if (c.argc() > 3 || (c.argc() == 3 && !EqualsIgnoreCase(c.arg(2), "sync") && !EqualsIgnoreCase(c.arg(2), "async"))) {
      return c.Error("SCRIPT FLUSH only support SYNC|ASYNC option");
    }
    engine.cache().Flush();
    return c.out().Ok();
  }
  if (sub == "exists" && c.argc() >= 3) {
    c.out().ArrayHeader(c.argc() - 2);
    for (size_t i = 2; i < c.argc(); ++i) c.out().Integer(engine.cache().Find(c.arg(i)) != nullptr ? 1 : 0);
    return;
  }
  if (sub == "load" && c.argc() == 3) {
    std::string sha;
    std::string error;
    if (engine.cache().Add(c.arg(2), &sha, &error) == nullptr) return c.Error(error);
    return c.out().Bulk(sha);
  }
  if (sub == "kill" && c.argc() == 2) {
    const std::string error = engine.Kill(false);
    if (!error.empty()) return c.Error(error);
    return c.out().Ok();
  }
  if (sub == "debug" && c.argc() == 3) {
    const std::string mode = ToLower(c.arg(2));
    if (mode == "no") return c.out().Ok();
    if (mode == "yes" || mode == "sync") return c.Error("keg has no Lua debugger (SCRIPT DEBUG NO only)");
    return c.Error("Use SCRIPT DEBUG YES/SYNC/NO");
  }
  c.Error(SubcommandSyntaxError(c));
}

// FCALL function numkeys key... arg... and FCALL_RO: as EVALSHA, for a function of a library.
void FcallWith(Ctx& c, bool read_only) {
  ScriptEngine& engine = *c.server().scripts;
  const FunctionInfo* info = nullptr;
  std::shared_ptr<const FunctionLibrary> lib = engine.functions().Find(c.arg(1), &info);
  if (lib == nullptr) return c.Fail("Function not found");
  int64_t numkeys = 0;
  if (!resp::ParseInt64(c.arg(2), &numkeys)) return c.Fail("Bad number of keys provided");
  if (numkeys > static_cast<int64_t>(c.argc()) - 3) {
    return c.Fail("Number of keys can't be greater than number of args");
  }
  if (numkeys < 0) return c.Fail("Number of keys can't be negative");
  if (std::string refused = RefusedBeforeRun(c, info->flags, read_only); !refused.empty()) {
    return c.Fail(std::move(refused));
  }
  auto run = std::make_shared<ScriptRun>();
  run->function = info->name;
  run->fcall_ro = read_only;
  run->read_only = read_only || (info->flags & kScriptNoWrites) != 0;
  TakeArguments(c, static_cast<size_t>(numkeys), run.get());
  Queue(c, std::move(run));
}

void Fcall(Ctx& c) { FcallWith(c, false); }
void FcallRo(Ctx& c) { FcallWith(c, true); }

void FunctionCmd(Ctx& c) {
  ScriptEngine& engine = *c.server().scripts;
  FunctionRegistry& registry = engine.functions();
  const std::string sub = ToLower(c.arg(1));
  resp::ReplyBuffer& out = c.out();
  if (sub == "help" && c.argc() == 2) {
    return Help(c, {"LOAD [REPLACE] <FUNCTION CODE>", "    Create a new library with the given library name and code.",
                    "DELETE <LIBRARY NAME>", "    Delete the given library.",
                    "LIST [LIBRARYNAME PATTERN] [WITHCODE]", "    Return general information on all the libraries:",
                    "    * Library name", "    * The engine used to run the Library",
                    "    * Library description", "    * Functions list", "    * Library code (if WITHCODE is given)",
                    "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
                    "STATS", "    Return information about the current function running:", "    * Function name",
                    "    * Command used to run the function", "    * Duration in MS that the function is running",
                    "    If no function is running, return nil", "    In addition, returns a list of available engines.",
                    "KILL", "    Kill the current running function.", "FLUSH [ASYNC|SYNC]",
                    "    Delete all the libraries.",
                    "    When called without the optional mode argument, the behavior is determined by the",
                    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
                    "    * ASYNC: Asynchronously flush the libraries.", "    * SYNC: Synchronously flush the libraries.",
                    "DUMP", "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
                    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
                    "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
                    "    control how to handle existing libraries (default APPEND):",
                    "    * FLUSH: delete all existing libraries.", "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
                    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
                    "      libraries with the new libraries (notice that even on this option there is a chance of failure",
                    "      in case of functions name collision with another library)."});
  }
  if (sub == "load" && c.argc() >= 3) {
    bool replace = false;
    for (size_t i = 2; i + 1 < c.argc(); ++i) {
      if (EqualsIgnoreCase(c.arg(i), "replace")) {
        replace = true;
        continue;
      }
      return c.Error("Unknown option given: " + std::string(c.arg(i)));
    }
    std::string name;
    if (std::string error = registry.Load(c.arg(c.argc() - 1), replace, &name); !error.empty()) return c.Error(error);
    PropagateNow(c);
    return out.Bulk(name);
  }
  if (sub == "delete" && c.argc() == 3) {
    if (std::string error = registry.Delete(c.arg(2)); !error.empty()) return c.Error(error);
    PropagateNow(c);
    return out.Ok();
  }
  if (sub == "flush" && c.argc() <= 3) {
    if (c.argc() == 3 && !EqualsIgnoreCase(c.arg(2), "sync") && !EqualsIgnoreCase(c.arg(2), "async")) {
      return c.Error("FUNCTION FLUSH only supports SYNC|ASYNC option");
    }
    if (std::string error = registry.Flush(); !error.empty()) return c.Error(error);
    PropagateNow(c);
    return out.Ok();
  }
  if (sub == "kill" && c.argc() == 2) {
    if (std::string error = engine.Kill(true); !error.empty()) return c.Error(error);
    return out.Ok();
  }
  if (sub == "dump" && c.argc() == 2) return out.Bulk(registry.Dump());
  if (sub == "restore" && (c.argc() == 3 || c.argc() == 4)) {
    const std::string_view policy = c.argc() == 4 ? c.arg(3) : std::string_view("append");
    const auto max_len = static_cast<uint64_t>(c.server().proto_max_bulk_len.load(std::memory_order_relaxed));
    if (std::string error = registry.Restore(c.arg(2), policy, max_len); !error.empty()) return c.Error(error);
    PropagateNow(c);
    return out.Ok();
  }
  if (sub == "list") {
    bool with_code = false;
    bool have_pattern = false;
    std::string pattern;
    for (size_t i = 2; i < c.argc(); ++i) {
      if (!with_code && EqualsIgnoreCase(c.arg(i), "withcode")) {
        with_code = true;
        continue;
      }
      if (!have_pattern && EqualsIgnoreCase(c.arg(i), "libraryname")) {
        if (i + 1 >= c.argc()) return c.Error("library name argument was not given");
        pattern = std::string(c.arg(++i));
        have_pattern = true;
        continue;
      }
      return c.Error("Unknown argument " + std::string(c.arg(i)));
    }
    std::vector<std::shared_ptr<const FunctionLibrary>> libs;
    for (auto& lib : registry.Libraries()) {
      if (!have_pattern || GlobMatch(pattern, lib->name, true)) libs.push_back(std::move(lib));
    }
    out.ArrayHeader(libs.size());
    for (const auto& lib : libs) {
      out.MapHeader(with_code ? 4 : 3);
      out.Bulk("library_name");
      out.Bulk(lib->name);
      out.Bulk("engine");
      out.Bulk("LUA");
      out.Bulk("functions");
      out.ArrayHeader(lib->functions.size());
      for (const FunctionInfo& f : lib->functions) {
        out.MapHeader(3);
        out.Bulk("name");
        out.Bulk(f.name);
        out.Bulk("description");
        if (f.has_description) {
          out.Bulk(f.description);
        } else {
          out.Null();
        }
        out.Bulk("flags");
        static constexpr std::pair<uint32_t, std::string_view> kFlags[] = {
            {kScriptNoWrites, "no-writes"}, {kScriptAllowOom, "allow-oom"}, {kScriptAllowStale, "allow-stale"},
            {kScriptNoCluster, "no-cluster"}, {kScriptAllowCrossSlot, "allow-cross-slot-keys"}};
        size_t n = 0;
        for (const auto& [bit, name] : kFlags) n += (f.flags & bit) != 0 ? 1 : 0;
        out.SetHeader(n);
        for (const auto& [bit, name] : kFlags) {
          if ((f.flags & bit) != 0) out.SimpleString(name);
        }
      }
      if (with_code) {
        out.Bulk("library_code");
        out.Bulk(lib->code);
      }
    }
    return;
  }
  if (sub == "stats" && c.argc() == 2) {
    if (engine.running_eval() && engine.busy()) return c.Error(kBusyScriptError);
    out.MapHeader(2);
    out.Bulk("running_script");
    std::string name;
    std::vector<std::string> command;
    int64_t duration_ms = 0;
    if (engine.RunningFunction(&name, &command, &duration_ms)) {
      out.MapHeader(3);
      out.Bulk("name");
      out.Bulk(name);
      out.Bulk("command");
      out.ArrayHeader(command.size());
      for (const std::string& a : command) out.Bulk(a);
      out.Bulk("duration_ms");
      out.Integer(duration_ms);
    } else {
      out.Null();
    }
    out.Bulk("engines");
    out.MapHeader(1);
    out.Bulk("LUA");
    out.MapHeader(2);
    out.Bulk("libraries_count");
    out.Integer(static_cast<int64_t>(registry.library_count()));
    out.Bulk("functions_count");
    out.Integer(static_cast<int64_t>(registry.function_count()));
    return;
  }
  c.Error(SubcommandSyntaxError(c));
}

}  // namespace

void RegisterScriptCommands(std::vector<Command>* t) {
  constexpr uint32_t kEval = kWrite | kMovableKeys | kNoScript | kRunsScript | kSkipMonitor | kNoMandatoryKeys;
  t->push_back({"eval", -3, kEval, 0, 0, 0, Eval, "@slow @scripting"});
  t->push_back({"evalsha", -3, kEval, 0, 0, 0, Evalsha, "@slow @scripting"});
  t->push_back({"eval_ro", -3, kEval, 0, 0, 0, EvalRo, "@slow @scripting"});
  t->push_back({"evalsha_ro", -3, kEval, 0, 0, 0, EvalshaRo, "@slow @scripting"});
  t->push_back({"script", -2, 0, 0, 0, 0, ScriptCmd, "@slow",
                {{"debug", 3, kNoScript, 0, 0, 0, ScriptCmd, "@slow @scripting"},
                 {"exists", -3, kNoScript, 0, 0, 0, ScriptCmd, "@slow @scripting"},
                 {"flush", -2, kNoScript, 0, 0, 0, ScriptCmd, "@slow @scripting"},
                 {"help", 2, 0, 0, 0, 0, ScriptCmd, "@slow @scripting"},
                 {"kill", 2, kNoScript | kAllowBusy, 0, 0, 0, ScriptCmd, "@slow @scripting"},
                 {"load", 3, kNoScript, 0, 0, 0, ScriptCmd, "@slow @scripting"}}});
  t->push_back({"fcall", -3, kEval, 0, 0, 0, Fcall, "@slow @scripting"});
  t->push_back({"fcall_ro", -3, kEval, 0, 0, 0, FcallRo, "@slow @scripting"});
  constexpr uint32_t kFn = kNoScript;
  t->push_back({"function", -2, 0, 0, 0, 0, FunctionCmd, "@slow",
                {{"delete", 3, kFn | kWrite, 0, 0, 0, FunctionCmd, "@write @slow @scripting"},
                 {"dump", 2, kFn, 0, 0, 0, FunctionCmd, "@slow @scripting"},
                 {"flush", -2, kFn | kWrite, 0, 0, 0, FunctionCmd, "@write @slow @scripting"},
                 {"help", 2, 0, 0, 0, 0, FunctionCmd, "@slow @scripting"},
                 {"kill", 2, kFn | kAllowBusy, 0, 0, 0, FunctionCmd, "@slow @scripting"},
                 {"list", -2, kFn, 0, 0, 0, FunctionCmd, "@slow @scripting"},
                 {"load", -3, kFn | kWrite, 0, 0, 0, FunctionCmd, "@write @slow @scripting"},
                 {"restore", -3, kFn | kWrite, 0, 0, 0, FunctionCmd, "@write @slow @scripting"},
                 {"stats", 2, kFn | kAllowBusy, 0, 0, 0, FunctionCmd, "@slow @scripting"}}});
}

}  // namespace keg::server
