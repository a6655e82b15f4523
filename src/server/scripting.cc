#include "server/scripting.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <charconv>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <optional>

#include <spdlog/spdlog.h>

extern "C" {
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
}

#include "net/server.h"
#include "resp/numbers.h"
#include "server/acl.h"
#include "server/replication.h"
#include "server/command.h"
#include "server/lua_libs.h"
#include "server/session.h"
#include "server/state.h"
#include "server/stats_clock.h"
#include "server/version.h"

extern "C" {
int luaopen_cjson(lua_State* L);
int luaopen_bit(lua_State* L);
}

namespace keg::server {

std::string Sha1Hex(std::string_view data) {
  // OpenSSL 3's one-shot SHA1() looks the algorithm up on every call (350 ns for a 100-byte script
  // here): the algorithm is fetched once and each thread reuses its context (110 ns). EVAL hashes
  // its script on every call.
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA1", nullptr);
  struct Context {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~Context() { EVP_MD_CTX_free(ctx); }
  };
  thread_local Context context;
  unsigned char digest[SHA_DIGEST_LENGTH];
  unsigned int length = 0;
  if (md == nullptr || context.ctx == nullptr || EVP_DigestInit_ex2(context.ctx, md, nullptr) != 1 ||
      EVP_DigestUpdate(context.ctx, data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(context.ctx, digest, &length) != 1 || length != SHA_DIGEST_LENGTH) {
    SHA1(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(2 * SHA_DIGEST_LENGTH, '0');
  for (size_t i = 0; i < SHA_DIGEST_LENGTH; ++i) {
    out[2 * i] = kHex[digest[i] >> 4];
    out[2 * i + 1] = kHex[digest[i] & 15];
  }
  return out;
}

bool ParseShebang(std::string_view body, Script* script, std::string* error) {
  script->flags = kScriptEvalCompat;
  script->shebang_length = 0;
  if (body.substr(0, 2) != "#!") return true;
  const size_t end = body.find('\n');
  if (end == std::string_view::npos) {
    *error = "Invalid script shebang";
    return false;
  }
  script->shebang_length = end;
  // Words separated by spaces (Redis's sdssplitargs; flags never need quoting).
  std::vector<std::string_view> parts;
  std::string_view line = body.substr(0, end);
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t' && line[j] != '\r') ++j;
    if (j > i) parts.push_back(line.substr(i, j - i));
    i = j;
  }
  if (parts.empty() || parts[0] != "#!lua") {
    *error = parts.empty() ? "Invalid script shebang"
                           : "Unexpected engine in script shebang: " + std::string(parts[0]);
    return false;
  }
  script->flags = 0;
  for (size_t p = 1; p < parts.size(); ++p) {
    if (parts[p].substr(0, 6) != "flags=") {
      *error = "Unknown lua shebang option: " + std::string(parts[p]);
      return false;
    }
    std::string_view list = parts[p].substr(6);
    size_t at = 0;
    while (at <= list.size()) {
      size_t comma = list.find(',', at);
      if (comma == std::string_view::npos) comma = list.size();
      const std::string_view flag = list.substr(at, comma - at);
      if (flag == "no-writes") {
        script->flags |= kScriptNoWrites;
      } else if (flag == "allow-oom") {
        script->flags |= kScriptAllowOom;
      } else if (flag == "allow-stale") {
        script->flags |= kScriptAllowStale;
      } else if (flag == "no-cluster") {
        script->flags |= kScriptNoCluster;
      } else if (flag == "allow-cross-slot-keys") {
        script->flags |= kScriptAllowCrossSlot;
      } else if (!(flag.empty() && list.empty())) {
        *error = "Unexpected flag in script shebang: " + std::string(flag);
        return false;
      }
      at = comma + 1;
    }
  }
  return true;
}

// ---- ScriptCache ---------------------------------------------------------------------------------

namespace {

// A Lua state per thread for compiling only (syntax errors at SCRIPT LOAD / EVAL on the I/O
// thread, before the script reaches the writer). Nothing is ever run in it.
lua_State* CompileState() {
  struct Holder {
    lua_State* L = luaL_newstate();
    ~Holder() {
      if (L != nullptr) lua_close(L);
    }
  };
  thread_local Holder holder;
  static thread_local bool anchored = false;
  if (!anchored) {
    AnchorChunkNames(holder.L);
    anchored = true;
  }
  return holder.L;
}

}  // namespace

std::shared_ptr<const Script> ScriptCache::Find(std::string_view sha) const {
  if (sha.size() != 40) return nullptr;  // every key is 40 hex digits
  char key[40];
  for (size_t i = 0; i < 40; ++i) {
    const char ch = sha[i];
    key[i] = ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch - 'A' + 'a') : ch;
  }
  std::lock_guard lock(mu_);
  auto it = scripts_.find(std::string_view(key, sizeof key));
  return it == scripts_.end() ? nullptr : it->second;
}

std::shared_ptr<const Script> ScriptCache::Add(std::string_view body, std::string* sha, std::string* error) {
  *sha = Sha1Hex(body);
  if (auto found = Find(*sha)) return found;
  auto script = std::make_shared<Script>();
  if (!ParseShebang(body, script.get(), error)) return nullptr;
  script->sha = *sha;
  script->body = std::string(body);
  lua_State* L = CompileState();
  // A shebang line is skipped but its newline kept, so line numbers stay the user's.
  const std::string_view code = body.substr(script->shebang_length);
  if (!code.empty() && code[0] == '\x1b') {  // precompiled bytecode is never loaded: unchecked, it can corrupt memory
    *error = "Error compiling script (new function): user_script: binary chunks are not allowed";
    return nullptr;
  }
  if (luaL_loadbuffer(L, code.data(), code.size(), "@user_script") != 0) {
    *error = "Error compiling script (new function): " + std::string(lua_tostring(L, -1));
    lua_pop(L, 1);
    return nullptr;
  }
  lua_pop(L, 1);
  std::lock_guard lock(mu_);
  auto [it, added] = scripts_.emplace(*sha, std::move(script));
  if (added) memory_ += sha->size() + body.size();
  return it->second;
}

void ScriptCache::Flush() {
  std::lock_guard lock(mu_);
  scripts_.clear();
  memory_ = 0;
  epoch_.fetch_add(1, std::memory_order_acq_rel);
}

size_t ScriptCache::size() const {
  std::lock_guard lock(mu_);
  return scripts_.size();
}

size_t ScriptCache::memory() const {
  std::lock_guard lock(mu_);
  return memory_;
}

// ---- The Lua environment ----------------------------------------------------------------------

struct ScriptEngine::Running {
  ScriptRun* run = nullptr;
  store::Txn* txn = nullptr;
  resp::Protocol resp = resp::Protocol::kResp2;  // redis.setresp: the protocol of redis.call replies
  int64_t start_ns = 0;
  int64_t threshold_ms = 5000;
  bool in_call = false;  // redis.call is running (the count hook must not re-enter)
  // redis.set_repl: REPL_AOF (1) | REPL_REPLICA (2). Without REPL_REPLICA the commands that follow
  // are not propagated to replicas; keg's data files keep every write whatever REPL_AOF says.
  int repl_flags = 3;
};

namespace {

constexpr const char* kEngineKey = "__keg_engine";
constexpr const char* kProtectedKey = "__keg_protected";  // weak-keyed set of read-only tables
// Registry slots read on every script run: integer keys (no string to hash and intern per run),
// negative so that luaL_ref, which numbers from 1, never takes them.
constexpr int kErrHandlerSlot = -1;  // the error handler
constexpr int kGlobalsSlot = -2;     // the hidden globals table (KEYS, ARGV)
constexpr int kMaxReplyDepth = 1000;  // nesting of a script's reply (a table that holds itself ...)

// Pushes Redis's error table {err = "CODE message"} (luaPushErrorBuff): text starting with '-'
// carries its code ("-WRONGTYPE ..."); anything else gets "ERR".
void PushError(lua_State* L, std::string_view text) {
  std::string code = "ERR";
  std::string msg;
  if (!text.empty() && text[0] == '-') {
    text.remove_prefix(1);
    const size_t space = text.find(' ');
    if (space == std::string_view::npos) {
      msg = std::string(text);
    } else {
      code = std::string(text.substr(0, space));
      msg = std::string(text.substr(space + 1));
    }
  } else {
    msg = std::string(text);
  }
  while (!msg.empty() && (msg.back() == '\r' || msg.back() == '\n')) msg.pop_back();
  lua_newtable(L);
  lua_pushstring(L, "err");
  const std::string full = code + " " + msg;
  lua_pushlstring(L, full.data(), full.size());
  lua_settable(L, -3);
}

// Raises Redis's error table. Lua unwinds with longjmp: no C++ object with a destructor may be
// alive in the frames it skips, so callers pass literals and build nothing around the call.
[[noreturn]] void RaiseError(lua_State* L, const char* text) {
  PushError(L, text);
  lua_error(L);
  __builtin_unreachable();
}

ScriptEngine* EngineOf(lua_State* L) {
  lua_getfield(L, LUA_REGISTRYINDEX, kEngineKey);
  auto* engine = static_cast<ScriptEngine*>(lua_touserdata(L, -1));
  lua_pop(L, 1);
  return engine;
}

// ---- RESP -> Lua (a command's reply, for redis.call) ----

class RespToLua {
 public:
  RespToLua(lua_State* L, std::string_view bytes) : L_(L), in_(bytes) {}
  // Pushes the reply at the cursor; `push` false skips it (attributes).
  void Parse(bool push = true) {
    if (pos_ >= in_.size()) {
      if (push) lua_pushnil(L_);
      return;
    }
    if (push) luaL_checkstack(L_, 4, "reply too deep");
    const char type = in_[pos_++];
    const std::string_view line = Line();
    switch (type) {
      case '+':
        if (push) PushField("ok", line);
        return;
      case '-':
        if (push) {
          std::string text = "-" + std::string(line);
          PushError(L_, text);
          lua_pushstring(L_, "ignore_error_stats_update");
          lua_pushboolean(L_, 1);
          lua_settable(L_, -3);
        }
        return;
      case ':': {
        int64_t v = 0;
        if (!resp::ParseInt64(line, &v)) v = -1;
        if (push) lua_pushnumber(L_, static_cast<lua_Number>(v));
        return;
      }
      case '$':
      case '=': {
        int64_t len = 0;
        if (!resp::ParseInt64(line, &len)) len = -1;
        if (len < 0) {
          if (push) lua_pushboolean(L_, 0);
          return;
        }
        const std::string_view data = in_.substr(pos_, static_cast<size_t>(len));
        pos_ += static_cast<size_t>(len) + 2;
        if (!push) return;
        if (type == '$') {
          lua_pushlstring(L_, data.data(), data.size());
        } else {  // verbatim: "txt:..." -> {verbatim_string = {format = "txt", string = "..."}}
          lua_newtable(L_);
          lua_pushstring(L_, "verbatim_string");
          lua_newtable(L_);
          lua_pushstring(L_, "string");
          const std::string_view text = data.size() >= 4 ? data.substr(4) : std::string_view();
          lua_pushlstring(L_, text.data(), text.size());
          lua_settable(L_, -3);
          lua_pushstring(L_, "format");
          lua_pushlstring(L_, data.data(), std::min<size_t>(3, data.size()));
          lua_settable(L_, -3);
          lua_settable(L_, -3);
        }
        return;
      }
      case '*':
      case '~':
      case '%':
      case '|': {
        int64_t n = 0;
        if (!resp::ParseInt64(line, &n)) n = -1;
        if (n < 0) {
          if (push) lua_pushboolean(L_, 0);
          return;
        }
        if (type == '|') {  // attributes are not shown to scripts: skip them, then the reply
          for (int64_t i = 0; i < 2 * n; ++i) Parse(false);
          Parse(push);
          return;
        }
        if (!push) {
          for (int64_t i = 0; i < (type == '%' ? 2 * n : n); ++i) Parse(false);
          return;
        }
        if (type == '*') {
          lua_newtable(L_);
          for (int64_t i = 0; i < n; ++i) {
            lua_pushnumber(L_, static_cast<lua_Number>(i + 1));
            Parse();
            lua_settable(L_, -3);
          }
          return;
        }
        lua_newtable(L_);
        lua_pushstring(L_, type == '%' ? "map" : "set");
        lua_newtable(L_);
        for (int64_t i = 0; i < n; ++i) {
          Parse();
          if (type == '%') {
            Parse();
          } else {
            lua_pushboolean(L_, 1);
          }
          lua_settable(L_, -3);
        }
        lua_settable(L_, -3);
        return;
      }
      case '_':
        if (push) lua_pushnil(L_);
        return;
      case '#':
        if (push) lua_pushboolean(L_, line == "t");
        return;
      case ',':
        if (push) {
          lua_newtable(L_);
          lua_pushstring(L_, "double");
          lua_pushnumber(L_, std::strtod(std::string(line).c_str(), nullptr));
          lua_settable(L_, -3);
        }
        return;
      case '(':
        if (push) PushField("big_number", line);
        return;
      default:
        if (push) lua_pushnil(L_);
        return;
    }
  }

 private:
  std::string_view Line() {
    const size_t end = in_.find("\r\n", pos_);
    const size_t stop = end == std::string_view::npos ? in_.size() : end;
    std::string_view line = in_.substr(pos_, stop - pos_);
    pos_ = stop + 2;
    return line;
  }
  void PushField(const char* field, std::string_view value) {
    lua_newtable(L_);
    lua_pushstring(L_, field);
    lua_pushlstring(L_, value.data(), value.size());
    lua_settable(L_, -3);
  }

  lua_State* L_;
  std::string_view in_;
  size_t pos_ = 0;
};

// ---- Lua -> RESP (a script's return value; Redis's luaReplyToRedisReply) ----

// Pushes field `name` of the table at `table` (raw) when it has type `type` and returns true;
// else leaves the stack as it was. `table` defaults to the top of the stack.
bool RawField(lua_State* L, const char* name, int type, int table = -1) {
  if (table < 0) table = lua_gettop(L) + table + 1;  // absolute: the push below moves the top
  lua_pushstring(L, name);
  lua_rawget(L, table);
  if (lua_type(L, -1) == type) return true;
  lua_pop(L, 1);
  return false;
}

std::string_view ToView(lua_State* L, int index) {
  size_t len = 0;
  const char* s = lua_tolstring(L, index, &len);
  return {s, len};
}

// The number of entries of the table on the top of the stack.
size_t CountEntries(lua_State* L) {
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    ++n;
    lua_pop(L, 1);
  }
  return n;
}

// Writes the value on the top of the stack to `out` and pops it. `script_resp` is the protocol the
// script chose (booleans differ); `out` has the caller's.
void LuaToResp(lua_State* L, resp::ReplyBuffer& out, resp::Protocol script_resp, int depth) {
  if (depth > kMaxReplyDepth || !lua_checkstack(L, 4)) {
    out.Error("reached lua stack limit");
    lua_pop(L, 1);
    return;
  }
  switch (lua_type(L, -1)) {
    case LUA_TSTRING: {
      size_t len = 0;
      const char* s = lua_tolstring(L, -1, &len);
      out.Bulk(std::string_view(s, len));
      break;
    }
    case LUA_TBOOLEAN:
      if (script_resp == resp::Protocol::kResp2) {
        if (lua_toboolean(L, -1)) {
          out.Integer(1);
        } else {
          out.Null();
        }
      } else {
        out.Boolean(lua_toboolean(L, -1) != 0);
      }
      break;
    case LUA_TNUMBER: {
      // Truncated to an integer. A cast of a double out of range (or NaN) is undefined: such values
      // give INT64_MIN, which is what x86's conversion gives Redis.
      const double d = lua_tonumber(L, -1);
      out.Integer(d >= -9223372036854775808.0 && d < 9223372036854775808.0 ? static_cast<int64_t>(d) : INT64_MIN);
      break;
    }
    case LUA_TTABLE: {
      // Tables with one of these fields are replies of that kind (Redis's order); any other is an
      // array up to its first nil.
      if (RawField(L, "err", LUA_TSTRING)) {
        out.Error("-" + std::string(ToView(L, -1)));
        lua_pop(L, 2);
        return;
      }
      if (RawField(L, "ok", LUA_TSTRING)) {
        out.SimpleString(ToView(L, -1));
        lua_pop(L, 2);
        return;
      }
      if (RawField(L, "double", LUA_TNUMBER)) {
        out.Double(lua_tonumber(L, -1));
        lua_pop(L, 2);
        return;
      }
      if (RawField(L, "big_number", LUA_TSTRING)) {
        std::string num(ToView(L, -1));
        for (char& ch : num) {
          if (ch == '\r' || ch == '\n') ch = ' ';
        }
        if (out.protocol() == resp::Protocol::kResp3) {
          out.Raw("(" + num + "\r\n");
        } else {
          out.Bulk(num);
        }
        lua_pop(L, 2);
        return;
      }
      if (RawField(L, "verbatim_string", LUA_TTABLE)) {
        const bool has_format = RawField(L, "format", LUA_TSTRING);
        if (has_format && RawField(L, "string", LUA_TSTRING, -2)) {
          std::string format(ToView(L, -2));
          format.resize(3, ' ');
          out.Verbatim(ToView(L, -1), format);
          lua_pop(L, 4);
          return;
        }
        lua_pop(L, has_format ? 2 : 1);
      }
      if (RawField(L, "map", LUA_TTABLE)) {
        out.MapHeader(CountEntries(L));
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) {
          lua_pushvalue(L, -2);
          LuaToResp(L, out, script_resp, depth + 1);  // the key
          LuaToResp(L, out, script_resp, depth + 1);  // the value
        }
        lua_pop(L, 2);
        return;
      }
      if (RawField(L, "set", LUA_TTABLE)) {
        out.SetHeader(CountEntries(L));
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) {
          lua_pop(L, 1);
          lua_pushvalue(L, -1);
          LuaToResp(L, out, script_resp, depth + 1);
        }
        lua_pop(L, 2);
        return;
      }
      // An array: up to the first nil.
      size_t n = 0;
      for (;;) {
        lua_rawgeti(L, -1, static_cast<int>(n + 1));
        const bool nil = lua_isnil(L, -1);
        lua_pop(L, 1);
        if (nil) break;
        ++n;
      }
      out.ArrayHeader(n);
      for (size_t i = 1; i <= n; ++i) {
        lua_rawgeti(L, -1, static_cast<int>(i));
        LuaToResp(L, out, script_resp, depth + 1);
      }
      break;
    }
    default:
      out.Null();
      break;
  }
  lua_pop(L, 1);
}

// All the bytes of a reply buffer into `bytes` (its capacity reused), the buffer emptied.
void Drain(resp::ReplyBuffer& buf, std::string* out) {
  std::string& bytes = *out;
  bytes.clear();
  bytes.reserve(buf.size());
  iovec iov[64];
  while (!buf.empty()) {
    const size_t n = buf.Gather(iov);
    size_t taken = 0;
    for (size_t i = 0; i < n; ++i) {
      bytes.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
      taken += iov[i].iov_len;
    }
    buf.Consume(taken);
  }
}

}  // namespace

// The C functions the Lua environment calls; friends of ScriptEngine.
struct LuaApi {
  // `error` names the function: "redis.setresp can only be called inside a script invocation".
  static ScriptEngine::Running* Run(lua_State* L, const char* error) {
    ScriptEngine* engine = EngineOf(L);
    if (engine == nullptr || engine->running_ == nullptr) RaiseError(L, error);
    return engine->running_;
  }

  // redis.call / redis.pcall. The work is in CallInner, whose C++ locals are gone before an
  // error is raised here.
  static int Call(lua_State* L, bool raise) {
    Run(L, "redis.call/pcall can only be called inside a script invocation");
    if (CallInner(L) && raise) return lua_error(L);
    return 1;
  }
  // Leaves the reply (or an error table) on the stack; true when it is an error.
  static bool CallInner(lua_State* L) {
    ScriptEngine* engine = EngineOf(L);
    ScriptEngine::Running* r = engine->running_;
    const int argc = lua_gettop(L);
    if (argc == 0) {
      PushError(L, "Please specify at least one argument for this redis lib call");
      return true;
    }
    // The arguments as views of the Lua strings, which stay on the stack until the command is done
    // (numbers are formatted as Redis does, %.17g, into `numbers`).
    std::vector<std::string_view>& args = engine->call_args_;  // reused: calls never nest
    std::vector<std::string>& numbers = engine->call_numbers_;
    args.clear();
    numbers.clear();
    numbers.reserve(static_cast<size_t>(argc));  // views of its strings stay valid
    for (int i = 1; i <= argc; ++i) {
      const int t = lua_type(L, i);
      if (t == LUA_TNUMBER) {
        // Redis formats with %.17g; an integral value below 2^53 prints the same as the integer,
        // which to_chars writes without printf's float machinery.
        const double d = lua_tonumber(L, i);
        char buf[64];
        size_t len = 0;
        if (d > -9007199254740992.0 && d < 9007199254740992.0 && d == static_cast<double>(static_cast<int64_t>(d)) &&
            !(d == 0 && std::signbit(d))) {
          len = static_cast<size_t>(std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(d)).ptr - buf);
        } else {
          len = static_cast<size_t>(std::snprintf(buf, sizeof buf, "%.17g", d));
        }
        numbers.emplace_back(buf, len);
        args.emplace_back(numbers.back());
      } else if (t == LUA_TSTRING) {
        size_t len = 0;
        const char* s = lua_tolstring(L, i, &len);
        args.emplace_back(s, len);
      } else {
        lua_pop(L, argc);
        PushError(L, "Lua redis lib command arguments must be strings or integers");
        return true;
      }
    }
    if (r->in_call) {
      lua_pop(L, argc);
      PushError(L, "luaRedisGenericCommand() recursive call detected. Are you doing funny stuff with Lua debug hooks?");
      return false;
    }
    r->in_call = true;
    std::string error;
    std::string_view reply;
    try {
      reply = engine->Command(*r, args, &error);
    } catch (const std::exception& e) {  // never through Lua's C frames
      error = std::string("command failed: ") + e.what();
    }
    r->in_call = false;
    lua_pop(L, argc);
    if (!error.empty()) {
      PushError(L, error);
      lua_pushstring(L, "ignore_error_stats_update");
      lua_pushboolean(L, 1);
      lua_settable(L, -3);
      return true;
    }
    RespToLua(L, reply).Parse();
    return !reply.empty() && reply[0] == '-';
  }
  static int RedisCall(lua_State* L) { return Call(L, true); }
  static int RedisPcall(lua_State* L) { return Call(L, false); }

  // The global pcall: as Lua's, but an error table {err = ...} becomes its message (Redis 7).
  static int Pcall(lua_State* L) {
    const int argc = lua_gettop(L);
    luaL_checkany(L, 1);
    lua_pushboolean(L, 1);
    lua_insert(L, 1);
    if (lua_pcall(L, argc - 1, LUA_MULTRET, 0) != 0) {
      lua_remove(L, 1);
      if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "err");
        if (lua_isstring(L, -1)) {
          lua_replace(L, -2);
        } else {
          lua_pop(L, 1);
        }
      }
      lua_pushboolean(L, 0);
      lua_insert(L, 1);
    }
    return lua_gettop(L);
  }

  static int Sha1hex(lua_State* L) {
    if (lua_gettop(L) != 1) RaiseError(L, "wrong number of arguments");
    size_t len = 0;
    const char* s = lua_tolstring(L, 1, &len);
    const std::string hex = Sha1Hex(s == nullptr ? std::string_view() : std::string_view(s, len));
    lua_pushlstring(L, hex.data(), hex.size());
    return 1;
  }

  static int ErrorReply(lua_State* L) {
    if (lua_gettop(L) != 1 || lua_type(L, -1) != LUA_TSTRING) {
      PushError(L, "wrong number or type of arguments");
      return 1;
    }
    std::string text = lua_tostring(L, -1);
    if (text.empty() || text[0] != '-') text = "-" + text;
    PushError(L, text);
    return 1;
  }

  static int StatusReply(lua_State* L) {
    if (lua_gettop(L) != 1 || lua_type(L, -1) != LUA_TSTRING) {
      PushError(L, "wrong number or type of arguments");
      return 1;
    }
    lua_newtable(L);
    lua_pushstring(L, "ok");
    lua_pushvalue(L, -3);
    lua_settable(L, -3);
    return 1;
  }

  static int Log(lua_State* L) {
    const int argc = lua_gettop(L);
    if (argc < 2) RaiseError(L, "redis.log() requires two arguments or more.");
    if (!lua_isnumber(L, -argc)) RaiseError(L, "First argument must be a number (log level).");
    const int level = static_cast<int>(lua_tonumber(L, -argc));
    if (level < 0 || level > 3) RaiseError(L, "Invalid debug level.");
    std::string text;
    for (int j = 1; j < argc; ++j) {
      size_t len = 0;
      const char* s = lua_tolstring(L, -argc + j, &len);
      if (s == nullptr) continue;
      if (j != 1) text += ' ';
      text.append(s, len);
    }
    static constexpr spdlog::level::level_enum kLevels[] = {spdlog::level::debug, spdlog::level::debug,
                                                            spdlog::level::info, spdlog::level::warn};
    spdlog::log(kLevels[level], "{}", text);
    return 0;
  }

  static int SetResp(lua_State* L) {
    ScriptEngine::Running* r = Run(L, "redis.setresp can only be called inside a script invocation");
    if (lua_gettop(L) != 1) RaiseError(L, "redis.setresp() requires one argument.");
    const int v = static_cast<int>(lua_tonumber(L, -1));
    if (v != 2 && v != 3) RaiseError(L, "RESP version must be 2 or 3.");
    r->resp = v == 3 ? resp::Protocol::kResp3 : resp::Protocol::kResp2;
    return 0;
  }

  static int SetRepl(lua_State* L) {
    ScriptEngine::Running* r = Run(L, "redis.set_repl can only be called inside a script invocation");
    if (lua_gettop(L) != 1) RaiseError(L, "redis.set_repl() requires two arguments.");
    const int flags = static_cast<int>(lua_tonumber(L, -1));
    if ((flags & ~3) != 0) {
      RaiseError(L, "Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.");
    }
    r->repl_flags = flags;
    return 0;
  }

  static int ReplicateCommands(lua_State* L) {
    lua_pushboolean(L, 1);  // effects replication is the only mode in Redis 7
    return 1;
  }

  static int Nop(lua_State*) { return 0; }

  static int AclCheckCmd(lua_State* L) {
    ScriptEngine::Running* r = Run(L, "redis.acl_check_cmd can only be called inside a script invocation");
    const int verdict = AclVerdict(L, r);  // C++ objects live only in there
    if (verdict < 0) RaiseError(L, verdict == -1 ? "Please specify at least one argument for this redis lib call"
                                                 : "Invalid command passed to redis.acl_check_cmd()");
    lua_pushboolean(L, verdict);
    return 1;
  }
  // 1 allowed, 0 denied, -1 no arguments, -2 not a command.
  static int AclVerdict(lua_State* L, ScriptEngine::Running* r) {
    const int argc = lua_gettop(L);
    if (argc == 0) return -1;
    std::vector<std::string> args;
    for (int i = 1; i <= argc; ++i) {
      size_t len = 0;
      const char* s = lua_tolstring(L, i, &len);
      if (s == nullptr) return -2;
      args.emplace_back(s, len);
    }
    const std::vector<std::string_view> views(args.begin(), args.end());
    const Command* cmd = FindCommand(views[0]);
    if (cmd == nullptr) return -2;
    const Command* sub = !cmd->subcommands.empty() && views.size() >= 2 ? FindSubcommand(*cmd, views[1]) : nullptr;
    if (!cmd->subcommands.empty() && views.size() >= 2 && sub == nullptr) return -2;
    if (r->run->user == nullptr || r->run->user->unrestricted()) return 1;
    size_t index = 0;
    return AclCheck(*r->run->user, *cmd, sub, views, &index) == AclDenial::kNone ? 1 : 0;
  }

  // math.random / math.randomseed: Redis's lrand48, the same sequence on every platform.
  static int32_t Lrand48(ScriptEngine* e) {
    e->rand_state_ = (e->rand_state_ * 0x5DEECE66Dull + 0xB) & ((1ull << 48) - 1);
    return static_cast<int32_t>(e->rand_state_ >> 17);
  }
  static int Random(lua_State* L) {
    ScriptEngine* e = EngineOf(L);
    if (e == nullptr || e->running_ == nullptr) {
      return luaL_error(L, "math.random can only be called inside a script invocation");
    }
    constexpr int32_t kMax = INT32_MAX;
    const lua_Number r = static_cast<lua_Number>(Lrand48(e) % kMax) / static_cast<lua_Number>(kMax);
    switch (lua_gettop(L)) {
      case 0:
        lua_pushnumber(L, r);
        break;
      case 1: {
        const int u = luaL_checkint(L, 1);
        luaL_argcheck(L, 1 <= u, 1, "interval is empty");
        lua_pushnumber(L, std::floor(r * u) + 1);
        break;
      }
      case 2: {
        const int l = luaL_checkint(L, 1);
        const int u = luaL_checkint(L, 2);
        luaL_argcheck(L, l <= u, 2, "interval is empty");
        // u - l + 1 wraps in 32 bits as it does in Redis's C (there, signed overflow): the same
        // numbers for the same seed, without the undefined behaviour.
        const auto span = static_cast<int32_t>(static_cast<uint32_t>(u) - static_cast<uint32_t>(l) + 1u);
        lua_pushnumber(L, std::floor(r * span) + l);
        break;
      }
      default:
        return luaL_error(L, "wrong number of arguments");
    }
    return 1;
  }
  static int RandomSeed(lua_State* L) {
    ScriptEngine* e = EngineOf(L);
    if (e == nullptr || e->running_ == nullptr) {
      return luaL_error(L, "math.randomseed can only be called inside a script invocation");
    }
    const int32_t seed = luaL_checkint(L, 1);
    e->rand_state_ = (static_cast<uint64_t>(static_cast<uint32_t>(seed)) << 16) | 0x330E;
    return 0;
  }

  // Read-only tables: assignment through a protected proxy, and rawset / setmetatable on one.
  static bool IsProtected(lua_State* L, int index) {
    if (!lua_istable(L, index)) return false;
    lua_getfield(L, LUA_REGISTRYINDEX, kProtectedKey);
    lua_pushvalue(L, index > 0 || index <= LUA_REGISTRYINDEX ? index : index - 1);
    lua_rawget(L, -2);
    const bool yes = lua_toboolean(L, -1) != 0;
    lua_pop(L, 2);
    return yes;
  }
  // An assignment into a read-only table (__newindex): the error names the script's line.
  static int ReadonlyError(lua_State* L) { return luaL_error(L, "Attempt to modify a readonly table"); }
  // rawset / setmetatable of one: no position, as Redis's.
  static int ReadonlyCallError(lua_State* L) {
    lua_pushstring(L, "Attempt to modify a readonly table");
    return lua_error(L);
  }
  static int GlobalMissing(lua_State* L) {
    const char* name = lua_tostring(L, 2);
    return luaL_error(L, "Script attempted to access nonexistent global variable '%s'",
                      name != nullptr ? name : "?");
  }
  static int SafeRawset(lua_State* L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    if (IsProtected(L, 1)) return ReadonlyCallError(L);
    luaL_checkany(L, 2);
    luaL_checkany(L, 3);
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 1;
  }
  static int SafeSetmetatable(lua_State* L) {
    if (IsProtected(L, 1)) return ReadonlyCallError(L);
    lua_pushvalue(L, lua_upvalueindex(1));  // Lua's own setmetatable
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
  }

  // Safer versions of library functions that crash Debian's builds on hostile arguments (Redis
  // patched its own copies: CVE-2025-46817, the bit.tohex bug).
  // unpack(t, i, j): the count is computed without overflow and bounded before the stack grows.
  static int SafeUnpack(lua_State* L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    const int first = luaL_optint(L, 2, 1);
    const int last = lua_isnoneornil(L, 3) ? static_cast<int>(lua_objlen(L, 1)) : luaL_checkint(L, 3);
    if (first > last) return 0;
    const int64_t count = int64_t{last} - int64_t{first} + 1;
    if (count >= INT_MAX || !lua_checkstack(L, static_cast<int>(count))) {
      return luaL_error(L, "too many results to unpack");
    }
    for (int64_t k = first; k <= last; ++k) lua_rawgeti(L, 1, static_cast<int>(k));
    return static_cast<int>(count);
  }
  // bit.tohex(x [, n]): n digits (8 by default, at most 8; negative: upper case).
  // A number as lua-bitop reads it: its low 32 bits after rounding, for any double (NaN and values
  // out of range included: adding 2^52 + 2^51 puts the integer part in the low mantissa bits).
  static int32_t BitArg(lua_State* L, int index) {
    const double d = luaL_checknumber(L, index) + 6755399441055744.0;
    uint64_t bits = 0;
    std::memcpy(&bits, &d, sizeof bits);
    return static_cast<int32_t>(static_cast<uint32_t>(bits));
  }
  static int SafeToHex(lua_State* L) {
    const auto x = static_cast<uint32_t>(BitArg(L, 1));
    int64_t n = lua_isnone(L, 2) ? 8 : BitArg(L, 2);
    const char* digits = "0123456789abcdef";
    if (n < 0) {
      n = -n;
      digits = "0123456789ABCDEF";
    }
    if (n > 8) n = 8;
    char buf[8];
    uint32_t v = x;
    for (int64_t i = n - 1; i >= 0; --i) {
      buf[i] = digits[v & 15];
      v >>= 4;
    }
    lua_pushlstring(L, buf, static_cast<size_t>(n));
    return 1;
  }
  // loadstring / load: chunks over 1 GiB are refused (Lua 5.1's lexer counts a long bracket's '='
  // in an int: CVE-2025-46819), and load(reader)'s pieces are gathered first under the same cap.
  static constexpr size_t kMaxChunk = size_t{1} << 30;
  static int SafeLoadString(lua_State* L) {
    size_t len = 0;
    const char* s = luaL_checklstring(L, 1, &len);
    const char* name = luaL_optstring(L, 2, s);
    if (len > kMaxChunk) {
      lua_pushnil(L);
      lua_pushstring(L, "chunk too large");
      return 2;
    }
    if (len > 0 && s[0] == '\x1b') {  // precompiled bytecode: unchecked, it can corrupt memory
      lua_pushnil(L);
      lua_pushstring(L, "binary chunks are not allowed");
      return 2;
    }
    if (luaL_loadbuffer(L, s, len, name) != 0) {
      lua_pushnil(L);
      lua_insert(L, -2);
      return 2;
    }
    return 1;
  }
  static int SafeLoad(lua_State* L) {
    if (lua_type(L, 1) == LUA_TSTRING) return SafeLoadString(L);
    luaL_checktype(L, 1, LUA_TFUNCTION);
    const char* name = luaL_optstring(L, 2, "=(load)");
    lua_pushstring(L, name);  // anchored on the stack while the chunk is parsed
    const int name_at = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t total = 0;
    for (;;) {
      lua_pushvalue(L, 1);
      lua_call(L, 0, 1);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        break;
      }
      if (!lua_isstring(L, -1)) return luaL_error(L, "reader function must return a string");
      size_t len = 0;
      lua_tolstring(L, -1, &len);
      if (len == 0) {
        lua_pop(L, 1);
        break;
      }
      total += len;
      if (total > kMaxChunk) return luaL_error(L, "chunk too large");
      luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    size_t len = 0;
    const char* chunk = lua_tolstring(L, -1, &len);
    if (len > 0 && chunk[0] == '\x1b') {
      lua_pushnil(L);
      lua_pushstring(L, "binary chunks are not allowed");
      return 2;
    }
    if (luaL_loadbuffer(L, chunk, len, lua_tostring(L, name_at)) != 0) {
      lua_pushnil(L);
      lua_insert(L, -2);
      return 2;
    }
    return 1;
  }

  // The count hook: busy scripts and SCRIPT KILL.
  static void Hook(lua_State* L, lua_Debug*) {
    ScriptEngine* e = EngineOf(L);
    if (e == nullptr || e->running_ == nullptr) return;
    const int64_t elapsed_ms = (StatsNowNs() - e->running_->start_ns) / 1'000'000;
    if (!e->busy_.load(std::memory_order_relaxed) && elapsed_ms >= e->running_->threshold_ms) {
      spdlog::warn("Slow script detected: still in execution after {} milliseconds. You can try "
                   "killing the script using the SCRIPT KILL command. Script name is: {}.",
                   elapsed_ms, e->running_->run->script != nullptr ? e->running_->run->script->sha : e->running_->run->function);
      e->busy_.store(true, std::memory_order_release);
    }
    // A busy script run inline by an I/O thread (store::Store::WriteAll's leader path) answers its
    // loop's other connections meanwhile, as Redis's processEventsWhileBlocked: they get -BUSY,
    // and SCRIPT KILL or SHUTDOWN NOSAVE reach it. (On the writer thread this does nothing: the
    // I/O threads are free.) Its own connection waits for its reply and reads nothing meanwhile;
    // a write submitted by a handler run here queues behind this group (WriteAll).
    if (e->busy_.load(std::memory_order_relaxed)) net::PollCurrentLoop();
    if (e->kill_.load(std::memory_order_acquire)) {
      spdlog::warn("Lua script killed by user with SCRIPT KILL.");
      // Every line from now on raises again, so a pcall in the script cannot swallow the kill.
      lua_sethook(L, Hook, LUA_MASKLINE, 0);
      RaiseError(L, "Script killed by user with SCRIPT KILL...");
    }
  }
};

// ---- ScriptEngine --------------------------------------------------------------------------------

ScriptEngine::ScriptEngine(ServerState& server) : server_(server) {}

ScriptEngine::~ScriptEngine() { Close(); }

void ScriptEngine::Close() {
  if (lua_ != nullptr) lua_close(lua_);
  lua_ = nullptr;
  if (fn_lua_ != nullptr) lua_close(fn_lua_);
  fn_lua_ = nullptr;
}

namespace {

// Replaces the table at `index` (a global library or _G itself) by an empty proxy that reads
// through to it and refuses writes: Redis 7's read-only tables, built from metatables because
// Debian's Lua has no read-only flag. The proxy is marked in the registry's protected set (rawset
// and setmetatable refuse it).
void ProtectTable(lua_State* L, int real_index, bool is_globals) {
  (void)is_globals;
  lua_getfield(L, LUA_REGISTRYINDEX, kProtectedKey);  // set
  lua_newtable(L);                                      // set, proxy
  lua_newtable(L);                                      // set, proxy, meta
  lua_pushvalue(L, real_index);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, LuaApi::ReadonlyError);
  lua_setfield(L, -2, "__newindex");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");  // getmetatable(proxy) gives false: the meta is out of reach
  lua_setmetatable(L, -2);             // set, proxy
  lua_pushvalue(L, -1);
  lua_pushboolean(L, 1);
  lua_rawset(L, -4);                   // set[proxy] = true
  lua_remove(L, -2);                   // proxy
}

}  // namespace

// Lua 5.1's parser does not anchor a chunk's name while it parses (CVE-2025-49844: a collection
// during the parse frees it). Names given as C strings are kept alive here, so the parser finds
// them interned and reachable.
void AnchorChunkNames(lua_State* L) {
  lua_newtable(L);
  const char* names[] = {"@user_script", "@user_function", "@err_handler_def", "=(load)", "=?"};
  for (int i = 0; i < 5; ++i) {
    lua_pushstring(L, names[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, LUA_REGISTRYINDEX, "__keg_chunk_names");
}

lua_State* ScriptEngine::NewState() {
  lua_State* L = luaL_newstate();
  lua_pushlightuserdata(L, this);
  lua_setfield(L, LUA_REGISTRYINDEX, kEngineKey);
  // The protected set (weak keys).
  lua_newtable(L);
  lua_newtable(L);
  lua_pushstring(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, kProtectedKey);

  // The libraries Redis loads (struct and cmsgpack are not here yet).
  const struct {
    const char* name;
    lua_CFunction open;
  } libs[] = {{"", luaopen_base},     {LUA_TABLIBNAME, luaopen_table}, {LUA_STRLIBNAME, luaopen_string},
              {LUA_MATHLIBNAME, luaopen_math}, {LUA_DBLIBNAME, luaopen_debug}};
  for (const auto& lib : libs) {
    lua_pushcfunction(L, lib.open);
    lua_pushstring(L, lib.name);
    lua_call(L, 1, 0);
  }
  lua_pushcfunction(L, luaopen_cjson);
  lua_call(L, 0, 1);
  lua_setglobal(L, "cjson");
  lua_pushcfunction(L, luaopen_bit);
  lua_pushstring(L, "bit");
  lua_call(L, 1, 1);
  lua_setglobal(L, "bit");
  lua_pushcfunction(L, OpenCmsgpack);
  lua_call(L, 0, 1);
  lua_setglobal(L, "cmsgpack");
  lua_pushcfunction(L, OpenStruct);
  lua_call(L, 0, 1);
  lua_setglobal(L, "struct");

  // Only Redis's allow-listed globals stay (no print, dofile, loadfile, setfenv, getfenv, newproxy,
  // module, require).
  static const char* const kAllowed[] = {
      "string", "cjson", "bit", "cmsgpack", "math", "table", "struct", "redis", "__redis__err__handler",
      "xpcall", "tostring", "setmetatable", "next", "assert", "tonumber", "rawequal", "collectgarbage",
      "getmetatable", "rawset", "pcall", "coroutine", "type", "_G", "select", "unpack", "gcinfo", "pairs",
      "rawget", "loadstring", "ipairs", "_VERSION", "load", "error", "debug"};
  std::vector<std::string> drop;
  lua_pushnil(L);
  while (lua_next(L, LUA_GLOBALSINDEX) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) continue;
    const std::string name = lua_tostring(L, -1);
    bool ok = false;
    for (const char* a : kAllowed) ok |= name == a;
    if (!ok) drop.push_back(name);
  }
  for (const std::string& name : drop) {
    lua_pushnil(L);
    lua_setglobal(L, name.c_str());
  }

  lua_pushcfunction(L, LuaApi::Pcall);
  lua_setglobal(L, "pcall");
  lua_getglobal(L, "setmetatable");
  lua_pushcclosure(L, LuaApi::SafeSetmetatable, 1);
  lua_setglobal(L, "setmetatable");
  lua_pushcfunction(L, LuaApi::SafeRawset);
  lua_setglobal(L, "rawset");
  lua_pushcfunction(L, LuaApi::SafeUnpack);
  lua_setglobal(L, "unpack");
  lua_pushcfunction(L, LuaApi::SafeLoadString);
  lua_setglobal(L, "loadstring");
  lua_pushcfunction(L, LuaApi::SafeLoad);
  lua_setglobal(L, "load");
  lua_getglobal(L, "bit");
  lua_pushcfunction(L, LuaApi::SafeToHex);
  lua_setfield(L, -2, "tohex");
  lua_pop(L, 1);
  AnchorChunkNames(L);

  // The redis table.
  lua_newtable(L);
  auto fn = [L](const char* name, lua_CFunction f) {
    lua_pushcfunction(L, f);
    lua_setfield(L, -2, name);
  };
  auto num = [L](const char* name, double v) {
    lua_pushnumber(L, v);
    lua_setfield(L, -2, name);
  };
  fn("call", LuaApi::RedisCall);
  fn("pcall", LuaApi::RedisPcall);
  fn("log", LuaApi::Log);
  num("LOG_DEBUG", 0);
  num("LOG_VERBOSE", 1);
  num("LOG_NOTICE", 2);
  num("LOG_WARNING", 3);
  num("REDIS_VERSION_NUM", kRedisVersionNum);
  lua_pushstring(L, kRedisVersion);
  lua_setfield(L, -2, "REDIS_VERSION");
  fn("setresp", LuaApi::SetResp);
  fn("sha1hex", LuaApi::Sha1hex);
  fn("error_reply", LuaApi::ErrorReply);
  fn("status_reply", LuaApi::StatusReply);
  fn("set_repl", LuaApi::SetRepl);
  num("REPL_NONE", 0);
  num("REPL_AOF", 1);
  num("REPL_SLAVE", 2);
  num("REPL_REPLICA", 2);
  num("REPL_ALL", 3);
  fn("replicate_commands", LuaApi::ReplicateCommands);
  fn("breakpoint", LuaApi::Nop);
  fn("debug", LuaApi::Nop);
  fn("acl_check_cmd", LuaApi::AclCheckCmd);
  lua_setglobal(L, "redis");

  lua_getglobal(L, "math");
  fn("random", LuaApi::Random);
  fn("randomseed", LuaApi::RandomSeed);
  lua_pop(L, 1);

  // The error handler of every script (Redis's __redis__err__handler): the error as a table with
  // where it happened; when the error is raised in a C function, its caller's place.
  static const char kErrorHandler[] =
      "local dbg = debug\n"
      "debug = nil\n"
      "function __redis__err__handler(err)\n"
      "  local i = dbg.getinfo(2,'nSl')\n"
      "  if i and i.what == 'C' then\n"
      "    i = dbg.getinfo(3,'nSl')\n"
      "  end\n"
      "  if type(err) ~= 'table' then\n"
      "    err = {err='ERR ' .. tostring(err)}"
      "  end"
      "  if i then\n"
      "    err['source'] = i.source\n"
      "    err['line'] = i.currentline\n"
      "  end"
      "  return err\n"
      "end\n";
  luaL_loadbuffer(L, kErrorHandler, sizeof kErrorHandler - 1, "@err_handler_def");
  lua_call(L, 0, 0);

  // Lock everything: each library table and the string metatable become read-only proxies, and the
  // globals table reads through a hidden table (missing globals are an error) and refuses writes.
  static const char* const kLibraries[] = {"string", "math", "table", "cjson", "bit", "cmsgpack", "struct", "redis", "coroutine"};
  for (const char* lib : kLibraries) {
    lua_getglobal(L, lib);
    if (!lua_istable(L, -1)) {
      lua_pop(L, 1);
      continue;
    }
    ProtectTable(L, lua_gettop(L), false);
    lua_setglobal(L, lib);
    lua_pop(L, 1);
  }
  lua_pushstring(L, "");
  if (lua_getmetatable(L, -1) != 0) {  // the string metatable: {__index = string}
    lua_getglobal(L, "string");
    lua_setfield(L, -2, "__index");
    ProtectTable(L, lua_gettop(L), false);  // what getmetatable("") shows: a read-only view
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  // _G: its contents move to a hidden table; _G itself stays empty, so every assignment to a
  // global reaches __newindex, and a read of a missing one the error.
  lua_newtable(L);  // hidden
  const int hidden = lua_gettop(L);
  std::vector<std::string> names;
  lua_pushnil(L);
  while (lua_next(L, LUA_GLOBALSINDEX) != 0) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, hidden);
    if (lua_type(L, -1) == LUA_TSTRING) names.emplace_back(lua_tostring(L, -1));
  }
  for (const std::string& name : names) {
    lua_pushnil(L);
    lua_setfield(L, LUA_GLOBALSINDEX, name.c_str());
  }
  lua_pushvalue(L, LUA_GLOBALSINDEX);
  lua_setfield(L, hidden, "_G");
  lua_newtable(L);  // hidden's metatable: a missing global is an error
  lua_pushcfunction(L, LuaApi::GlobalMissing);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, hidden);
  lua_newtable(L);  // _G's metatable
  lua_pushvalue(L, hidden);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, LuaApi::ReadonlyError);
  lua_setfield(L, -2, "__newindex");
  ProtectTable(L, lua_gettop(L), false);  // getmetatable(_G): a read-only view of it
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, LUA_GLOBALSINDEX);
  lua_getfield(L, LUA_REGISTRYINDEX, kProtectedKey);
  lua_pushvalue(L, LUA_GLOBALSINDEX);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  lua_rawseti(L, LUA_REGISTRYINDEX, kGlobalsSlot);  // the hidden table (KEYS / ARGV go there)
  // The error handler, where both kinds of script find it.
  lua_getfield(L, LUA_GLOBALSINDEX, "__redis__err__handler");
  lua_rawseti(L, LUA_REGISTRYINDEX, kErrHandlerSlot);
  return L;
}

std::string ScriptEngine::Kill(bool function) {
  if (!running_flag_.load(std::memory_order_acquire) || !busy_.load(std::memory_order_acquire)) {
    return "-NOTBUSY No scripts in execution right now.";
  }
  if (wrote_.load(std::memory_order_acquire)) {
    return "-UNKILLABLE Sorry the script already executed write commands against the dataset. You can "
           "either wait the script termination or kill the server in a hard way using the SHUTDOWN "
           "NOSAVE command.";
  }
  const bool is_function = running_function_.load(std::memory_order_acquire);
  if (is_function && !function) return std::string(kBusyFunctionError);
  if (!is_function && function) return std::string(kBusyScriptError);
  kill_.store(true, std::memory_order_release);
  return "";
}

bool ScriptEngine::RunningFunction(std::string* name, std::vector<std::string>* command, int64_t* duration_ms) const {
  std::lock_guard lock(running_mu_);
  if (running_run_ == nullptr) return false;
  const ScriptRun& r = *running_run_;
  *name = r.function;
  command->clear();
  command->push_back(r.fcall_ro ? "fcall_ro" : "fcall");
  command->push_back(r.function);
  command->push_back(std::to_string(r.numkeys));
  for (size_t i = 0; i < r.argc(); ++i) command->emplace_back(r.arg(i));
  *duration_ms = (StatsNowNs() - running_start_ns_) / 1'000'000;
  return true;
}

void ScriptEngine::Run(ScriptRun& run, store::Txn& txn) {
  const bool fcall = !run.function.empty();
  lua_State* L = nullptr;
  if (fcall) {
    const uint64_t epoch = functions_.epoch();
    if (fn_lua_ != nullptr && fn_epoch_ != epoch) {
      lua_close(fn_lua_);
      fn_lua_ = nullptr;
    }
    if (fn_lua_ == nullptr) {  // the libraries changed: a fresh state with every library loaded
      fn_epoch_ = epoch;
      fn_lua_ = NewState();
      LoadLibrariesInto(fn_lua_, functions_.Libraries(), "__keg_functions");
    }
    L = fn_lua_;
  } else {
    if (lua_ != nullptr && lua_epoch_ != cache_.epoch()) {  // SCRIPT FLUSH: a fresh state
      lua_close(lua_);
      lua_ = nullptr;
    }
    if (lua_ == nullptr) {
      static uint64_t states = 0;  // writer role
      lua_epoch_ = cache_.epoch();
      lua_ = NewState();
      lua_state_id_ = ++states;  // every script's reference into the old state is stale now
    }
    L = lua_;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, kErrHandlerSlot);
  const int handler = lua_gettop(L);
  // KEYS (arguments [0, numkeys)) or ARGV (the rest) as a Lua array.
  auto array = [L, &run](bool keys) {
    const size_t begin = keys ? 0 : run.numkeys;
    const size_t end = keys ? run.numkeys : run.argc();
    lua_createtable(L, static_cast<int>(end - begin), 0);
    for (size_t i = begin; i < end; ++i) {
      const std::string_view a = run.arg(i);
      lua_pushlstring(L, a.data(), a.size());
      lua_rawseti(L, -2, static_cast<int>(i - begin + 1));
    }
  };
  int nargs = 0;
  if (fcall) {
    lua_getfield(L, LUA_REGISTRYINDEX, "__keg_functions");
    std::string key = run.function;
    for (char& ch : key) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    lua_getfield(L, -1, key.c_str());
    lua_remove(L, -2);
    if (!lua_isfunction(L, -1)) {  // deleted since the command was queued
      lua_settop(L, handler - 1);
      run.failed = true;
      run.error = "Function not found";
      return;
    }
    array(true);
    array(false);
    nargs = 2;
  } else {
    // The compiled function, by its registry reference (no string built or interned per call).
    const Script& script = *run.script;
    if (script.lua_state_id == lua_state_id_) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, script.lua_ref);
    } else {
      const std::string_view code = std::string_view(run.script->body).substr(run.script->shebang_length);
      if (luaL_loadbuffer(L, code.data(), code.size(), "@user_script") != 0) {
        run.failed = true;
        run.error = "Error compiling script (new function): " + std::string(lua_tostring(L, -1));
        lua_settop(L, handler - 1);
        return;
      }
      lua_pushvalue(L, -1);
      script.lua_ref = luaL_ref(L, LUA_REGISTRYINDEX);
      script.lua_state_id = lua_state_id_;
    }
    // KEYS and ARGV: globals of the script, set in the hidden globals table.
    lua_rawgeti(L, LUA_REGISTRYINDEX, kGlobalsSlot);
    array(true);
    lua_setfield(L, -2, "KEYS");
    array(false);
    lua_setfield(L, -2, "ARGV");
    lua_pop(L, 1);
  }

  Running r;
  r.run = &run;
  r.txn = &txn;
  r.start_ns = StatsNowNs();
  r.threshold_ms = server_.busy_reply_threshold_ms.load(std::memory_order_relaxed);
  running_ = &r;
  kill_.store(false, std::memory_order_relaxed);
  wrote_.store(false, std::memory_order_relaxed);
  running_function_.store(fcall, std::memory_order_relaxed);
  if (fcall) {
    std::lock_guard lock(running_mu_);
    running_run_ = &run;
    running_start_ns_ = r.start_ns;
  }
  running_flag_.store(true, std::memory_order_release);
  if (r.threshold_ms > 0) lua_sethook(L, LuaApi::Hook, LUA_MASKCOUNT, 100000);
  const int err = lua_pcall(L, nargs, 1, handler);
  lua_sethook(L, nullptr, 0, 0);
  resp::ReplyBuffer& out = out_scratch_;
  out.Clear();
  out.set_protocol(run.protocol);
  if (err != 0) {
    run.failed = true;
    if (!lua_istable(L, -1)) {
      const char* msg = lua_isstring(L, -1) ? lua_tostring(L, -1) : "execution failure";
      run.error = "Error running script " + (fcall ? run.function : "f_" + run.script->sha) + ", " +
                  std::string(msg).substr(0, 100);
    } else {
      auto field = [L](const char* name) -> std::optional<std::string> {
        lua_getfield(L, -1, name);
        std::optional<std::string> v;
        if (lua_isstring(L, -1)) v = std::string(lua_tostring(L, -1));
        lua_pop(L, 1);
        return v;
      };
      const std::optional<std::string> msg = field("err");
      const std::optional<std::string> source = field("source");
      const std::optional<std::string> line = field("line");
      const std::string& name = fcall ? run.function : run.script->sha;
      run.error = "-" + msg.value_or("");
      if (source && line) run.error += " script: " + name + ", on " + *source + ":" + *line + ".";
    }
    lua_pop(L, 1);
  } else {
    // A returned error table is the script's error reply: through ReplyBuffer::Error on the
    // connection, so INFO errorstats counts it as Redis does.
    if (lua_istable(L, -1) && RawField(L, "err", LUA_TSTRING)) {
      run.failed = true;
      run.error = "-" + std::string(ToView(L, -1));
      lua_pop(L, 2);
    } else {
      LuaToResp(L, out, r.resp, 0);
      Drain(out, &run.reply);
    }
  }
  lua_settop(L, handler - 1);  // the error handler
  // Lua's garbage collector in small steps, not a full cycle at some unlucky moment (Redis's
  // LUA_GC_CYCLE_PERIOD).
  static thread_local int gc_count = 0;
  if (++gc_count == 50) {
    lua_gc(L, LUA_GCSTEP, 50);
    gc_count = 0;
  }
  int64_t memory = int64_t{lua_gc(L, LUA_GCCOUNT, 0)} * 1024;
  lua_State* other = fcall ? lua_ : fn_lua_;
  if (other != nullptr) memory += int64_t{lua_gc(other, LUA_GCCOUNT, 0)} * 1024;
  lua_memory_.store(memory, std::memory_order_relaxed);
  running_ = nullptr;
  if (fcall) {
    std::lock_guard lock(running_mu_);
    running_run_ = nullptr;
  }
  running_flag_.store(false, std::memory_order_release);
  std::vector<std::shared_ptr<net::Link>> parked;
  {
    std::lock_guard lock(busy_mu_);
    busy_.store(false, std::memory_order_release);
    parked.swap(busy_parked_);
  }
  kill_.store(false, std::memory_order_release);
  for (const std::shared_ptr<net::Link>& link : parked) {
    net::Link* l = link.get();  // (Post keeps the connection alive until the task ran)
    link->Post([l] { l->Resume(); });
  }
}

bool ScriptEngine::ParkWhileBusy(std::shared_ptr<net::Link> link) {
  std::lock_guard lock(busy_mu_);
  if (!busy_.load(std::memory_order_acquire)) return false;
  busy_parked_.push_back(std::move(link));
  return true;
}

std::string_view ScriptEngine::Command(Running& r, std::span<const std::string_view> argv, std::string* error) {
  const keg::server::Command* cmd = FindCommand(argv[0]);
  const int argc = static_cast<int>(argv.size());
  auto arity_ok = [argc](const keg::server::Command& c) {
    return (c.arity > 0 && argc == c.arity) || (c.arity < 0 && argc >= -c.arity);
  };
  if (cmd == nullptr) {
    *error = "Unknown Redis command called from script";
    return "";
  }
  const keg::server::Command* sub = nullptr;
  if (!cmd->subcommands.empty() && argc >= 2) {
    sub = FindSubcommand(*cmd, argv[1]);
    if (sub == nullptr) {
      *error = "Unknown Redis command called from script";
      return "";
    }
  }
  if (!arity_ok(*cmd) || (sub != nullptr && !arity_ok(*sub))) {
    *error = "Wrong number of args calling Redis command from script";
    return "";
  }
  const uint32_t flags = cmd->flags | (sub != nullptr ? sub->flags : 0);
  if ((flags & kNoScript) != 0) {
    // DEBUG SET-DISABLE-DENY-SCRIPTS lets tests reach commands that answer in place; those acting
    // on a connection or waiting for something stay refused (they would run on the writer thread).
    // (DEBUG RELOAD would suspend the caller's connection, CONFIG SET and ACL act on every
    // connection: not from the writer thread.)
    const std::string what = argc >= 2 ? ToLower(argv[1]) : std::string();
    const bool answers_in_place =
        (cmd->name == "debug" && (what == "protocol" || what == "object" || what == "digest" ||
                                  what == "digest-value" || what == "set-active-expire" || what == "sleep")) ||
        (cmd->name == "config" && what == "get") ||
        (cmd->name == "client" && (what == "list" || what == "info" || what == "id" || what == "getname"));
    if (!server_.script_allow_denied.load(std::memory_order_relaxed) || !answers_in_place) {
      *error = "This Redis command is not allowed from script";
      return "";
    }
  }
  if (r.run->user != nullptr && !r.run->user->unrestricted()) {
    size_t index = 0;
    const AclDenial denial = AclCheck(*r.run->user, *cmd, sub, argv, &index);
    if (denial != AclDenial::kNone) {
      // ACL LOG, as Redis's scriptCall: context "lua" (inside EXEC too, as Redis 7.0 logs it).
      // (The caller's Describe may be read from any thread, as CLIENT LIST does.)
      AclRegistry::LogEntry e = AclDenialEntry(denial, *cmd, sub, argv, index, "lua", r.run->user->name);
      if (r.run->client != nullptr) e.client_info = r.run->client->Describe(e.ctime_ms);
      server_.acl.Log(std::move(e));
      *error = denial == AclDenial::kCommand ? "The user executing the script can't run this command or subcommand"
               : denial == AclDenial::kKey   ? "The user executing the script can't access at least one of the keys mentioned in the command"
                                             : "The user executing the script can't publish to the channel mentioned in the command";
      return "";
    }
  }
  if (r.run->tracking_id != 0 && !r.run->tracked && (flags & kReadOnly) != 0 && (flags & kWrite) == 0) {
    // Before the read (under the writer role: any later write to the keys invalidates them).
    r.run->tracked = true;
    std::vector<std::string_view> keys;
    for (size_t i = 0; i < r.run->numkeys; ++i) keys.push_back(r.run->arg(i));
    if (!keys.empty()) server_.tracking.RememberInGroup(r.run->tracking_id, keys, r.txn->Written());
  }
  // Nor may a read-only script run what goes to replicas without writing (what CLIENT PAUSE WRITE
  // counts on).
  if (r.run->read_only && (flags & kMayReplicate) != 0) {
    *error = "Write commands are not allowed from read-only scripts.";
    return "";
  }
  if ((flags & kWrite) != 0) {
    if (r.run->read_only) {
      *error = "Write commands are not allowed from read-only scripts.";
      return "";
    }
    if (server_.replica_of.active() && server_.replica_read_only.load(std::memory_order_relaxed) &&
        !r.run->client->master_link() && (flags & kWritesCache) == 0) {
      *error = "-READONLY You can't write against a read only replica.";
      return "";
    }
    if (!r.run->client->master_link() && !server_.EnoughGoodReplicas() && (flags & kWritesCache) == 0) {
      *error = "-NOREPLICAS Not enough good replicas to write.";
      return "";
    }
    wrote_.store(true, std::memory_order_release);  // from now on SCRIPT KILL cannot stop it
  }
  DirectRun& direct = call_direct_;  // reused: its batch keeps its capacity from call to call
  direct.Reset(r.txn);
  direct.db = r.run->db;  // SELECT in a script changes the script's database, not the caller's
  direct.user = r.run->user.get();
  resp::ReplyBuffer& out = out_scratch_;
  out.Clear();
  out.set_protocol(r.resp);
  Ctx ctx(server_, *r.run->client, argv, out, nullptr, &direct);
  // A command reading the whole keyspace reads it at this place in the group (as in EXEC).
  store::OpResult keyspace;
  store::KeysQuery query;
  if (cmd->keyspace != nullptr && cmd->keyspace(argv, &query)) {
    store::WriteBatch read;
    read.SelectDb(direct.db);
    read.ReadKeys(query);
    r.txn->Execute(std::move(read.mutable_ops()[0]), &keyspace);
    ctx.set_keyspace(&keyspace);
  }
  const keg::server::Command& target = StatsTarget(*cmd, argv);
  const int64_t t0 = StatsNowNs();
  ctx.set_command(cmd);
  const uint32_t cmd_db = direct.db;
  cmd->handler(ctx);
  r.run->db = direct.db;
  // MONITOR shows what the script ran, after the EVAL itself (as Redis: "[0 lua]").
  if (!server_.monitors.empty() && (flags & kAdmin) == 0) server_.monitors.Feed(direct.db, "lua", argv);
  std::vector<store::OpResult>& results = call_results_;
  results.clear();
  if (!direct.batch.empty()) {
    auto& ops = direct.batch.mutable_ops();
    // WATCH: flushes and swaps touch before the ops (they need the state before them), written
    // keys after (the ops are moved into the group below: a copy keeps their keys).
    std::optional<store::WriteBatch> watched;
    if (!server_.watches.empty()) {
      store::Txn* txn = r.txn;
      server_.watches.Touch(direct.batch, [txn](uint32_t db, std::string_view key) {
        store::ValueView v;
        return txn->Get(db, key, &v).ok();
      });
      watched = direct.batch;
    }
    results.resize(ops.size());
    for (size_t i = 0; i < ops.size(); ++i) {
      if (i > 0 && ops[i].command == ops[i - 1].command && !results[i - 1].error.ok()) {
        results[i].error = results[i - 1].error;  // a failed op skips the rest of its command
        continue;
      }
      r.txn->Execute(std::move(ops[i]), &results[i]);  // `command` (a plain field) survives the move
    }
    if (watched) server_.watches.TouchWritten(*watched, results);
    uint64_t applied = 0;
    for (const store::OpResult& res : results) applied += res.applied ? 1 : 0;
    server_.counters.changes_since_save.fetch_add(applied, std::memory_order_relaxed);
    // The script's effects, for replicas: what this command changed, as it propagates it.
    if (r.run->effects && applied > 0 && (r.repl_flags & 2) != 0) {
      switch (ctx.propagation_mode()) {
        case 0: {
          PropagatedCommand p{cmd_db, {}};
          AppendCommand(&p.resp, argv);
          r.run->effects->push_back(std::move(p));
          break;
        }
        case 1:
          r.run->effects->push_back(PropagatedCommand{cmd_db, std::move(ctx.propagated_resp())});
          break;
        default:
          ctx.propagated_late()(results, r.run->effects.get());
      }
    }
  }
  if (direct.failed) {
    out.Error(direct.failure);
  } else if (direct.finisher) {
    auto failed = std::find_if(results.begin(), results.end(), [](const store::OpResult& res) { return !res.error.ok(); });
    if (failed != results.end()) {
      out.Error(CorruptionError(failed->error));
    } else {
      direct.finisher(results, out);
    }
  }
  const int64_t nsec = StatsSinceNs(t0);
  // As Redis's call(), which a script's commands go through too: the histogram counts them.
  target.stats->AddCall(static_cast<uint64_t>(nsec), server_.latency_tracking.load(std::memory_order_relaxed));
  if (direct.hits > 0) server_.counters.keyspace_hits.fetch_add(direct.hits, std::memory_order_relaxed);
  if (direct.misses > 0) server_.counters.keyspace_misses.fetch_add(direct.misses, std::memory_order_relaxed);
  results.clear();  // drops the pins of values the ops read
  Drain(out, &reply_scratch_);
  return reply_scratch_;
}

bool DeclaredScriptFlags(ScriptEngine& engine, std::span<const std::string_view> args, uint32_t* flags) {
  if (args.size() < 2) return false;
  const std::string name = ToLower(args[0]);
  uint32_t f = 0;
  if (name == "eval" || name == "eval_ro" || name == "evalsha" || name == "evalsha_ro") {
    const bool by_sha = name[4] == 's';
    if (by_sha && args[1].size() != 40) return false;
    std::shared_ptr<const Script> script = engine.cache().Find(by_sha ? args[1] : std::string_view(Sha1Hex(args[1])));
    if (script != nullptr) {
      f = script->flags;
    } else {
      if (by_sha) return false;
      Script parsed;  // not cached yet: its shebang says
      std::string error;
      if (!ParseShebang(args[1], &parsed, &error)) return false;
      f = parsed.flags;
    }
    if ((f & kScriptEvalCompat) != 0) return false;
  } else if (name == "fcall" || name == "fcall_ro") {
    const FunctionInfo* info = nullptr;
    if (engine.functions().Find(args[1], &info) == nullptr) return false;
    f = info->flags;
  } else {
    return false;
  }
  *flags = f;
  return true;
}

bool ScriptCannotWrite(ScriptEngine& engine, std::span<const std::string_view> args) {
  if (args.size() < 2) return false;
  const std::string name = ToLower(args[0]);
  if (name == "eval_ro" || name == "evalsha_ro" || name == "fcall_ro") return true;
  uint32_t flags = 0;
  return DeclaredScriptFlags(engine, args, &flags) && (flags & kScriptNoWrites) != 0;
}

}  // namespace keg::server
