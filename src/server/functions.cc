#include "server/functions.h"

#include <fcntl.h>
#include <strings.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include <spdlog/spdlog.h>

extern "C" {
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
}

#include "server/command.h"
#include "server/rdb.h"
#include "server/scripting.h"
#include "server/stats_clock.h"
#include "server/version.h"
#include "store/io.h"

namespace keg::server {
namespace {

std::string Lower(std::string_view s) { return ToLower(s); }

bool ValidName(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

constexpr const char* kCollectKey = "__keg_collect";
constexpr const char* kLoadStartKey = "__keg_load_start";
constexpr int64_t kLoadTimeoutMs = 500;  // Redis's LOAD_TIMEOUT_MS

// Pushes {err = "ERR <text>"} and raises it. Only literals or Lua-owned strings: Lua unwinds with
// longjmp past this frame.
int RaiseErr(lua_State* L, const char* text) {
  lua_newtable(L);
  lua_pushstring(L, "err");
  lua_pushfstring(L, "ERR %s", text);
  lua_settable(L, -3);
  return lua_error(L);
}

// What a library's code registers while it is checked.
struct Collect {
  std::vector<FunctionInfo> functions;
  std::string error;  // set instead of raising where C++ objects are alive
};

Collect* CollectOf(lua_State* L) {
  lua_getfield(L, LUA_REGISTRYINDEX, kCollectKey);
  auto* c = static_cast<Collect*>(lua_touserdata(L, -1));
  lua_pop(L, 1);
  return c;
}

// Reads register_function's arguments into *f (no Lua error raised here); "" or the error.
const char* ReadRegistration(lua_State* L, FunctionInfo* f) {
  const int argc = lua_gettop(L);
  if (argc < 1 || argc > 2) return "wrong number of arguments to redis.register_function";
  if (argc == 2) {
    if (lua_type(L, 1) != LUA_TSTRING && lua_type(L, 1) != LUA_TNUMBER) {
      return "first argument to redis.register_function must be a string";
    }
    if (!lua_isfunction(L, 2)) return "second argument to redis.register_function must be a function";
    size_t len = 0;
    const char* s = lua_tolstring(L, 1, &len);
    f->name.assign(s, len);
    return nullptr;
  }
  if (!lua_istable(L, 1)) {
    return "calling redis.register_function with a single argument is only applicable to Lua table "
           "(representing named arguments).";
  }
  bool has_callback = false;
  bool has_name = false;
  lua_pushnil(L);
  while (lua_next(L, 1) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      lua_pop(L, 2);
      return "named argument key given to redis.register_function is not a string";
    }
    const std::string key = Lower(lua_tostring(L, -2));
    if (key == "function_name") {
      if (!lua_isstring(L, -1)) {
        lua_pop(L, 2);
        return "function_name argument given to redis.register_function must be a string";
      }
      size_t len = 0;
      const char* s = lua_tolstring(L, -1, &len);
      f->name.assign(s, len);
      has_name = true;
    } else if (key == "description") {
      if (!lua_isstring(L, -1)) {
        lua_pop(L, 2);
        return "description argument given to redis.register_function must be a string";
      }
      f->description = lua_tostring(L, -1);
      f->has_description = true;
    } else if (key == "callback") {
      if (!lua_isfunction(L, -1)) {
        lua_pop(L, 2);
        return "callback argument given to redis.register_function must be a function";
      }
      has_callback = true;
    } else if (key == "flags") {
      if (!lua_istable(L, -1)) {
        lua_pop(L, 2);
        return "flags argument to redis.register_function must be a table representing function flags";
      }
      for (int j = 1;; ++j) {
        lua_rawgeti(L, -1, j);
        if (lua_isnil(L, -1)) {
          lua_pop(L, 1);
          break;
        }
        const std::string flag = lua_isstring(L, -1) ? Lower(lua_tostring(L, -1)) : std::string("?");
        lua_pop(L, 1);
        uint32_t bit = 0;
        if (flag == "no-writes") bit = kScriptNoWrites;
        else if (flag == "allow-oom") bit = kScriptAllowOom;
        else if (flag == "allow-stale") bit = kScriptAllowStale;
        else if (flag == "no-cluster") bit = kScriptNoCluster;
        else if (flag == "allow-cross-slot-keys") bit = kScriptAllowCrossSlot;
        if (bit == 0) {
          lua_pop(L, 2);
          return "unknown flag given";
        }
        f->flags |= bit;
      }
    } else {
      lua_pop(L, 2);
      return "unknown argument given to redis.register_function";
    }
    lua_pop(L, 1);
  }
  if (!has_name) return "redis.register_function must get a function name argument";
  if (!has_callback) return "redis.register_function must get a callback argument";
  return nullptr;
}

int RegisterFunction(lua_State* L) {
  Collect* collect = CollectOf(L);
  if (collect == nullptr) return RaiseErr(L, "redis.register_function can only be called on FUNCTION LOAD command");
  const char* error = nullptr;
  {
    FunctionInfo f;
    error = ReadRegistration(L, &f);
    if (error == nullptr) {
      if (!ValidName(f.name)) {
        error = "Library names can only contain letters, numbers, or underscores(_) and must be at least one character long";
      } else {
        for (const FunctionInfo& g : collect->functions) {
          if (Lower(g.name) == Lower(f.name)) error = "Function already exists in the library";
        }
      }
      if (error == nullptr) collect->functions.push_back(std::move(f));
    }
  }  // every C++ object is gone before Lua unwinds
  if (error != nullptr) return RaiseErr(L, error);
  return 0;
}

int MissingGlobal(lua_State* L) {
  const char* name = lua_tostring(L, 2);
  return luaL_error(L, "Script attempted to access nonexistent global variable '%s'", name != nullptr ? name : "?");
}

int ReadonlyTable(lua_State* L) { return luaL_error(L, "Attempt to modify a readonly table"); }

int LogFromLoad(lua_State* L) {
  const int argc = lua_gettop(L);
  if (argc < 2 || !lua_isnumber(L, 1)) return 0;
  std::string text;
  for (int j = 2; j <= argc; ++j) {
    const char* s = lua_tostring(L, j);
    if (s == nullptr) continue;
    if (j != 2) text += ' ';
    text += s;
  }
  spdlog::info("{}", text);
  return 0;
}

void LoadHook(lua_State* L, lua_Debug*) {
  lua_getfield(L, LUA_REGISTRYINDEX, kLoadStartKey);
  const auto start = static_cast<int64_t>(lua_tonumber(L, -1));
  lua_pop(L, 1);
  if (MonoMs() - start > kLoadTimeoutMs) {
    lua_sethook(L, LoadHook, LUA_MASKLINE, 0);
    RaiseErr(L, "FUNCTION LOAD timeout");
  }
}

// Splits "#!lua name=lib" off `code`: "" or the error text.
std::string ParseMetadata(std::string_view code, std::string* engine, std::string* name, size_t* line_end) {
  if (code.substr(0, 2) != "#!") return "Missing library metadata";
  const size_t end = code.find('\n');
  if (end == std::string_view::npos) return "Invalid library metadata";
  *line_end = end;
  // Words as Redis's sdssplitargs makes them: "..." and '...' quote (a quote may start mid-word,
  // as in name="foo"); an unbalanced quote makes the line invalid.
  std::vector<std::string> parts;
  const std::string_view line = code.substr(0, end);
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    if (i >= line.size()) break;
    std::string word;
    char quote = 0;
    for (; i < line.size(); ++i) {
      const char ch = line[i];
      if (quote != 0) {
        if (ch == quote) {
          quote = 0;
        } else if (ch == '\\' && quote == '"' && i + 1 < line.size()) {
          word += line[++i];
        } else {
          word += ch;
        }
      } else if (ch == '"' || ch == '\'') {
        quote = ch;
      } else if (ch == ' ' || ch == '\t' || ch == '\r') {
        break;
      } else {
        word += ch;
      }
    }
    if (quote != 0) return "Invalid library metadata";
    parts.push_back(std::move(word));
  }
  if (parts.empty()) return "Invalid library metadata";
  *engine = parts[0].substr(2);
  bool have_name = false;
  for (size_t p = 1; p < parts.size(); ++p) {
    if (parts[p].size() >= 5 && Lower(parts[p].substr(0, 5)) == "name=") {
      if (have_name) return "Invalid metadata value, name argument was given multiple times";
      *name = parts[p].substr(5);
      have_name = true;
      continue;
    }
    return "Invalid metadata value given: " + parts[p];
  }
  if (!have_name) return "Library name was not given";
  return "";
}

}  // namespace

std::string FunctionRegistry::Compile(std::string_view code, std::shared_ptr<FunctionLibrary>* out) {
  std::string engine;
  std::string name;
  size_t line_end = 0;
  if (std::string error = ParseMetadata(code, &engine, &name, &line_end); !error.empty()) return error;
  if (!ValidName(name)) {
    return "Library names can only contain letters, numbers, or underscores(_) and must be at least one character long";
  }
  if (Lower(engine) != "lua") return "Engine '" + engine + "' not found";
  // The load environment: globals hold only `redis` (register_function, log, version); anything
  // else is an error, and so is any assignment to a global.
  lua_State* L = luaL_newstate();
  struct Closer {
    lua_State* L;
    ~Closer() { lua_close(L); }
  } closer{L};
  AnchorChunkNames(L);
  Collect collect;
  lua_pushlightuserdata(L, &collect);
  lua_setfield(L, LUA_REGISTRYINDEX, kCollectKey);
  lua_newtable(L);  // redis: a read-only proxy of the API table below
  lua_newtable(L);  // its metatable
  lua_newtable(L);  // the API
  lua_pushcfunction(L, RegisterFunction);
  lua_setfield(L, -2, "register_function");
  lua_pushcfunction(L, LogFromLoad);
  lua_setfield(L, -2, "log");
  const char* levels[] = {"LOG_DEBUG", "LOG_VERBOSE", "LOG_NOTICE", "LOG_WARNING"};
  for (int i = 0; i < 4; ++i) {
    lua_pushnumber(L, i);
    lua_setfield(L, -2, levels[i]);
  }
  lua_pushnumber(L, kRedisVersionNum);
  lua_setfield(L, -2, "REDIS_VERSION_NUM");
  lua_pushstring(L, kRedisVersion);
  lua_setfield(L, -2, "REDIS_VERSION");
  lua_newtable(L);  // the API's metatable: unknown fields are errors
  lua_pushcfunction(L, MissingGlobal);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, ReadonlyTable);
  lua_setfield(L, -2, "__newindex");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_GLOBALSINDEX, "redis");
  lua_newtable(L);  // the globals' metatable
  lua_pushcfunction(L, MissingGlobal);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, ReadonlyTable);
  lua_setfield(L, -2, "__newindex");
  lua_setmetatable(L, LUA_GLOBALSINDEX);

  // The code from the shebang's newline on: line numbers stay the user's.
  const std::string_view body = code.substr(line_end);
  if (luaL_loadbuffer(L, body.data(), body.size(), "@user_function") != 0) {
    return "Error compiling function: " + std::string(lua_tostring(L, -1));
  }
  lua_pushnumber(L, static_cast<lua_Number>(MonoMs()));
  lua_setfield(L, LUA_REGISTRYINDEX, kLoadStartKey);
  lua_sethook(L, LoadHook, LUA_MASKCOUNT, 100000);
  if (lua_pcall(L, 0, 0, 0) != 0) {
    std::string msg = "execution failure";
    if (lua_istable(L, -1)) {
      lua_getfield(L, -1, "err");
      if (lua_isstring(L, -1)) msg = lua_tostring(L, -1);
      lua_pop(L, 1);
    } else if (lua_isstring(L, -1)) {
      msg = std::string("ERR ") + lua_tostring(L, -1);
    }
    return "Error registering functions: " + msg;
  }
  if (collect.functions.empty()) return "No functions registered";
  auto lib = std::make_shared<FunctionLibrary>();
  lib->name = name;
  lib->code = std::string(code);
  lib->functions = std::move(collect.functions);
  *out = std::move(lib);
  return "";
}

std::string FunctionRegistry::CommitLocked(Map next) {
  if (!path_.empty()) {
    std::vector<std::string> codes;
    for (const auto& [name, lib] : next) codes.push_back(lib->code);
    const std::string payload = rdb::DumpFunctions(codes);
    if (const store::Status st = store::io::ReplaceFile(path_, payload); !st.ok()) {
      spdlog::error("functions: saving {}: {}", path_, st.ToString());
      return "Error saving the functions: " + st.ToString();
    }
  }
  libraries_ = std::move(next);
  functions_.clear();
  for (const auto& [name, lib] : libraries_) {
    for (const FunctionInfo& f : lib->functions) functions_[Lower(f.name)] = lib;
  }
  ++epoch_;
  return "";
}

std::string FunctionRegistry::LoadFile() {
  if (path_.empty()) return "";
  std::ifstream in(path_, std::ios::binary);
  if (!in) return "";  // none saved yet
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string payload = buf.str();
  std::vector<std::string> codes;
  if (rdb::LoadFunctions(payload, UINT64_MAX, &codes) != rdb::LoadResult::kOk) {
    return path_ + ": not a valid functions payload (version or checksum wrong)";
  }
  Map next;
  for (const std::string& code : codes) {
    std::shared_ptr<FunctionLibrary> lib;
    if (std::string error = Compile(code, &lib); !error.empty()) return path_ + ": " + error;
    next[Lower(lib->name)] = lib;
  }
  std::lock_guard lock(mu_);
  const std::string saved = path_;
  path_.clear();  // no rewrite of the file just read
  CommitLocked(std::move(next));
  path_ = saved;
  spdlog::info("functions: {} libraries loaded from {}", libraries_.size(), path_);
  return "";
}

std::string FunctionRegistry::Load(std::string_view code, bool replace, std::string* name) {
  std::shared_ptr<FunctionLibrary> lib;
  if (std::string error = Compile(code, &lib); !error.empty()) return error;
  std::lock_guard lock(mu_);
  const std::string key = Lower(lib->name);
  if (libraries_.count(key) != 0 && !replace) return "Library '" + lib->name + "' already exists";
  for (const FunctionInfo& f : lib->functions) {
    auto it = functions_.find(Lower(f.name));
    if (it != functions_.end() && Lower(it->second->name) != key) return "Function " + f.name + " already exists";
  }
  Map next = libraries_;
  next[key] = lib;
  if (std::string error = CommitLocked(std::move(next)); !error.empty()) return error;
  *name = lib->name;
  return "";
}

std::string FunctionRegistry::Delete(std::string_view name) {
  std::lock_guard lock(mu_);
  Map next = libraries_;
  auto it = next.find(Lower(name));
  if (it == next.end()) return "Library not found";
  next.erase(it);
  return CommitLocked(std::move(next));
}

std::string FunctionRegistry::Flush() {
  std::lock_guard lock(mu_);
  return CommitLocked(Map());
}

std::string FunctionRegistry::Dump() const {
  std::vector<std::string> codes;
  std::lock_guard lock(mu_);
  for (const auto& [name, lib] : libraries_) codes.push_back(lib->code);
  return rdb::DumpFunctions(codes);
}

std::string FunctionRegistry::Restore(std::string_view payload, std::string_view policy, uint64_t max_len) {
  const std::string p = Lower(policy);
  if (p != "append" && p != "replace" && p != "flush") {
    return "Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.";
  }
  std::vector<std::string> codes;
  switch (rdb::LoadFunctions(payload, max_len, &codes)) {
    case rdb::LoadResult::kOk:
      break;
    case rdb::LoadResult::kBadVersionOrChecksum:
      return "DUMP payload version or checksum are wrong";
    case rdb::LoadResult::kUnsupportedType:
      return "given type is not a function";
    case rdb::LoadResult::kBadFormat:
      return "failed loading the given functions payload";
  }
  Map incoming;
  for (const std::string& code : codes) {
    std::shared_ptr<FunctionLibrary> lib;
    if (std::string error = Compile(code, &lib); !error.empty()) return error;
    incoming[Lower(lib->name)] = lib;
  }
  std::lock_guard lock(mu_);
  Map next = p == "flush" ? Map() : libraries_;
  for (auto& [key, lib] : incoming) {
    if (next.count(key) != 0) {
      if (p == "append") return "Library " + lib->name + " already exists";
      next.erase(key);
    }
  }
  // No function may be in two libraries.
  std::unordered_map<std::string, std::string> owner;
  for (const auto& [key, lib] : next) {
    for (const FunctionInfo& f : lib->functions) owner[Lower(f.name)] = key;
  }
  for (auto& [key, lib] : incoming) {
    for (const FunctionInfo& f : lib->functions) {
      if (owner.count(Lower(f.name)) != 0) return "Function " + f.name + " already exists";
    }
    next[key] = lib;
  }
  return CommitLocked(std::move(next));
}

std::vector<std::shared_ptr<const FunctionLibrary>> FunctionRegistry::Libraries() const {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<const FunctionLibrary>> out;
  for (const auto& [name, lib] : libraries_) out.push_back(lib);
  return out;
}

std::shared_ptr<const FunctionLibrary> FunctionRegistry::Find(std::string_view name, const FunctionInfo** info) const {
  const std::string key = Lower(name);
  std::lock_guard lock(mu_);
  auto it = functions_.find(key);
  if (it == functions_.end()) return nullptr;
  for (const FunctionInfo& f : it->second->functions) {
    if (Lower(f.name) == key) *info = &f;
  }
  return it->second;
}

uint64_t FunctionRegistry::epoch() const {
  std::lock_guard lock(mu_);
  return epoch_;
}

size_t FunctionRegistry::library_count() const {
  std::lock_guard lock(mu_);
  return libraries_.size();
}

size_t FunctionRegistry::function_count() const {
  std::lock_guard lock(mu_);
  return functions_.size();
}

namespace {

// The writer state's redis.register_function: keeps the callback under the function's name. Only
// while libraries load (a function that kept the load API cannot register more later).
int StoreCallback(lua_State* L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "__keg_loading");
  const bool loading = lua_toboolean(L, -1) != 0;
  lua_pop(L, 1);
  if (!loading) return RaiseErr(L, "redis.register_function can only be called on FUNCTION LOAD command");
  const int argc = lua_gettop(L);
  if (argc == 2) {
    if (!lua_isstring(L, 1) || !lua_isfunction(L, 2)) return RaiseErr(L, "bad arguments to redis.register_function");
    lua_pushvalue(L, 1);  // name
    lua_pushvalue(L, 2);  // callback
  } else if (argc == 1 && lua_istable(L, 1)) {
    lua_pushnil(L);  // name slot
    lua_pushnil(L);  // callback slot
    const int name_at = lua_gettop(L) - 1;
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
      if (lua_type(L, -2) == LUA_TSTRING) {
        const char* k = lua_tostring(L, -2);
        if (strcasecmp(k, "function_name") == 0) {
          lua_pushvalue(L, -1);
          lua_replace(L, name_at);
        } else if (strcasecmp(k, "callback") == 0) {
          lua_pushvalue(L, -1);
          lua_replace(L, name_at + 1);
        }
      }
      lua_pop(L, 1);
    }
    if (!lua_isstring(L, -2) || !lua_isfunction(L, -1)) return RaiseErr(L, "bad arguments to redis.register_function");
  } else {
    return RaiseErr(L, "wrong number of arguments to redis.register_function");
  }
  // Stack: ..., name, callback. registry[table][lower(name)] = callback.
  lua_getfield(L, LUA_REGISTRYINDEX, "__keg_functions_table");
  const char* table = lua_tostring(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, table);
  lua_pushvalue(L, -3);
  // lower-case the name in Lua (string.lower is not reachable here): byte by byte
  size_t len = 0;
  const char* raw = lua_tolstring(L, -1, &len);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < len; ++i) luaL_addchar(&b, static_cast<char>(std::tolower(static_cast<unsigned char>(raw[i]))));
  luaL_pushresult(&b);
  lua_remove(L, -2);
  lua_pushvalue(L, -3);
  lua_settable(L, -3);
  lua_pop(L, 3);
  return 0;
}

}  // namespace

void LoadLibrariesInto(lua_State* L, const std::vector<std::shared_ptr<const FunctionLibrary>>& libs,
                       const char* registry_table) {
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, registry_table);
  lua_pushstring(L, registry_table);
  lua_setfield(L, LUA_REGISTRYINDEX, "__keg_functions_table");
  // The load environment: globals read through {redis = {register_function, log, version}} only.
  if (lua_getmetatable(L, LUA_GLOBALSINDEX) == 0) return;
  const int meta = lua_gettop(L);
  lua_getfield(L, meta, "__index");  // the real globals, restored after
  const int saved = lua_gettop(L);
  lua_newtable(L);  // the load API
  lua_newtable(L);  // its redis table: a read-only proxy of the real one (a library may keep it)
  lua_newtable(L);  // the proxy's metatable
  lua_newtable(L);  // the real table
  lua_pushcfunction(L, StoreCallback);
  lua_setfield(L, -2, "register_function");
  lua_pushcfunction(L, LogFromLoad);
  lua_setfield(L, -2, "log");
  lua_pushnumber(L, kRedisVersionNum);
  lua_setfield(L, -2, "REDIS_VERSION_NUM");
  lua_pushstring(L, kRedisVersion);
  lua_setfield(L, -2, "REDIS_VERSION");
  lua_newtable(L);
  lua_pushcfunction(L, MissingGlobal);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);   // real: unknown fields are errors
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, ReadonlyTable);
  lua_setfield(L, -2, "__newindex");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);   // proxy
  lua_setfield(L, -2, "redis");
  lua_newtable(L);
  lua_pushcfunction(L, MissingGlobal);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_setfield(L, meta, "__index");
  lua_pushboolean(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, "__keg_loading");
  for (const auto& lib : libs) {
    const size_t nl = lib->code.find('\n');
    const std::string_view body = nl == std::string::npos ? std::string_view() : std::string_view(lib->code).substr(nl);
    if (luaL_loadbuffer(L, body.data(), body.size(), "@user_function") != 0 || lua_pcall(L, 0, 0, 0) != 0) {
      const char* why = lua_isstring(L, -1) ? lua_tostring(L, -1) : "error object";
      spdlog::error("functions: library {} failed to load in the scripting state: {}", lib->name, why);
      lua_pop(L, 1);
    }
  }
  lua_pushboolean(L, 0);
  lua_setfield(L, LUA_REGISTRYINDEX, "__keg_loading");
  lua_pushvalue(L, saved);
  lua_setfield(L, meta, "__index");
  lua_settop(L, meta - 1);
}

}  // namespace keg::server
