// Redis 7 functions: libraries of Lua functions loaded with FUNCTION LOAD and called with FCALL.
//
// The registry holds each library's code and what it registered (names, descriptions, flags). A
// library is checked when it is loaded: its code runs once in a throwaway Lua state where only
// redis.register_function, redis.log and the version fields exist (Redis's load environment), on
// the caller's thread. The writer role's Lua state for functions (ScriptEngine) is rebuilt from
// the registry whenever its epoch changed, before the next FCALL.
//
// Durability: every change rewrites `<dir>/functions.rdb` (FUNCTION DUMP's payload: each library's
// code, RDB version and CRC64) through a temporary file, fsync and rename, before the command
// replies; the server loads it at start. The keyspace's data files never hold functions, so
// compaction and recovery do not touch them.
//
// Thread: any (one mutex). A change does its file I/O under the mutex: changes are rare.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

struct lua_State;

namespace keg::server {

struct FunctionInfo {
  std::string name;
  std::string description;
  bool has_description = false;
  uint32_t flags = 0;  ///< ScriptFlag bits (no-writes, allow-oom, ...)
};

struct FunctionLibrary {
  std::string name;
  std::string code;  ///< as given to FUNCTION LOAD, shebang included
  std::vector<FunctionInfo> functions;
};

class FunctionRegistry {
 public:
  /// Where changes are persisted ("" = nowhere: in-process tests). Set before serving.
  void set_path(std::string path) { path_ = std::move(path); }
  /// Loads the persisted libraries (at start). "" or the reason it failed (a corrupt file).
  std::string LoadFile();

  /// FUNCTION LOAD [REPLACE]: "" with the library's name in *name, or Redis's error text.
  std::string Load(std::string_view code, bool replace, std::string* name);
  /// FUNCTION DELETE: "" or "Library not found".
  std::string Delete(std::string_view name);
  /// FUNCTION FLUSH. "" or the persistence error.
  std::string Flush();
  /// FUNCTION DUMP's payload.
  std::string Dump() const;
  /// FUNCTION RESTORE payload [FLUSH|APPEND|REPLACE] ("append" default): "" or the error text. A
  /// library's code is at most `max_len` bytes (proto-max-bulk-len): a payload's compressed entry
  /// claims its plain length, checked before anything is allocated.
  std::string Restore(std::string_view payload, std::string_view policy, uint64_t max_len);

  /// The libraries, by name.
  std::vector<std::shared_ptr<const FunctionLibrary>> Libraries() const;
  /// The function `name` (case-sensitive, as Redis): its library and info, or null.
  std::shared_ptr<const FunctionLibrary> Find(std::string_view name, const FunctionInfo** info) const;
  /// Bumped by every change (the writer's Lua state rebuilds when it moved).
  uint64_t epoch() const;
  size_t library_count() const;
  size_t function_count() const;

  /// Checks a library's code: its metadata line and what running it registers. Thread: any.
  static std::string Compile(std::string_view code, std::shared_ptr<FunctionLibrary>* out);

 private:
  using Map = std::map<std::string, std::shared_ptr<const FunctionLibrary>, std::less<>>;
  // Replaces the libraries with `next` after writing it to the file; "" or the error.
  std::string CommitLocked(Map next);

  mutable std::mutex mu_;
  Map libraries_;
  std::unordered_map<std::string, std::shared_ptr<const FunctionLibrary>> functions_;
  uint64_t epoch_ = 0;
  std::string path_;
};

/// Keeps the chunk names keg passes to luaL_loadbuffer referenced from `L`'s registry: Lua 5.1's
/// parser does not anchor a chunk's name while it parses (CVE-2025-49844). Call on every new state.
void AnchorChunkNames(lua_State* L);

/// Writer role: runs each library's code in `L` (a sandboxed scripting state, see ScriptEngine) in
/// the load environment, keeping each registered callback in the registry table `registry_table`
/// under its function's lower-case name. Libraries were checked when loaded; one that fails now is
/// logged and skipped.
void LoadLibrariesInto(lua_State* L, const std::vector<std::shared_ptr<const FunctionLibrary>>& libs,
                       const char* registry_table);

}  // namespace keg::server
