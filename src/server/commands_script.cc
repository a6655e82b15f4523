// EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT (scripting.h has where scripts run and why).
#include <memory>
#include <string>

#include "resp/numbers.h"
#include "server/command.h"
#include "server/scripting.h"
#include "server/session.h"
#include "server/state.h"

namespace keg::server {
namespace {

using store::OpResult;

// EVAL script numkeys key... arg... (and its SHA and read-only forms): the script joins the
// connection's write batch as one op, run where writes are serialized; the reply comes once the
// group holding its writes is durable.
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
    run->sha = ToLower(c.arg(1));
  } else {
    std::string error;
    run->script = engine.cache().Add(c.arg(1), &run->sha, &error);
    if (run->script == nullptr) return c.Fail(error);
  }
  const uint32_t flags = run->script->flags;
  if ((flags & kScriptEvalCompat) == 0 && (flags & kScriptNoWrites) == 0 && read_only) {
    return c.Fail("Can not execute a script with write flag using *_ro command.");
  }
  run->read_only = read_only || (flags & kScriptNoWrites) != 0;
  const size_t first = 3;
  const size_t keys_end = first + static_cast<size_t>(numkeys);
  run->keys.reserve(static_cast<size_t>(numkeys));
  for (size_t i = first; i < keys_end; ++i) run->keys.emplace_back(c.arg(i));
  for (size_t i = keys_end; i < c.argc(); ++i) run->argv.emplace_back(c.arg(i));
  run->protocol = c.client().protocol();
  run->client = &c.client();
  ScriptEngine* eng = &engine;
  c.batch().Run([eng, run](store::Txn& txn) { eng->Run(*run, txn); });
  c.Then([run](std::span<OpResult>, resp::ReplyBuffer& out) {
    if (run->failed) {
      out.Error(run->error);
    } else {
      out.Raw(run->reply);
    }
  });
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
  if (sub == "flush" && c.argc() <= 3) {
    if (c.argc() == 3) {
      const std::string mode = ToLower(c.arg(2));
      if (mode != "sync" && mode != "async") return c.Error("SCRIPT FLUSH only support SYNC|ASYNC option");
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
    const std::string error = engine.Kill();
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

}  // namespace

void RegisterScriptCommands(std::vector<Command>* t) {
  constexpr uint32_t kEval = kWrite | kMovableKeys | kNoScript;
  t->push_back({"eval", -3, kEval, 0, 0, 0, Eval, "@slow @scripting"});
  t->push_back({"evalsha", -3, kEval, 0, 0, 0, Evalsha, "@slow @scripting"});
  t->push_back({"eval_ro", -3, kEval, 0, 0, 0, EvalRo, "@slow @scripting"});
  t->push_back({"evalsha_ro", -3, kEval, 0, 0, 0, EvalshaRo, "@slow @scripting"});
  t->push_back({"script", -2, kNoScript, 0, 0, 0, ScriptCmd, "@slow @scripting",
                {{"debug", 3, kNoScript, 0, 0, 0, ScriptCmd, "@slow @scripting"},
                 {"exists", -3, kNoScript, 0, 0, 0, ScriptCmd, "@slow @scripting"},
                 {"flush", -2, kNoScript, 0, 0, 0, ScriptCmd, "@slow @scripting"},
                 {"help", 2, kNoScript, 0, 0, 0, ScriptCmd, "@slow @scripting"},
                 {"kill", 2, kNoScript | kAllowBusy, 0, 0, 0, ScriptCmd, "@slow @scripting"},
                 {"load", 3, kNoScript, 0, 0, 0, ScriptCmd, "@slow @scripting"}}});
}

}  // namespace keg::server
