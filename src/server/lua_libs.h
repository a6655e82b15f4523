// Lua libraries of Redis's scripting environment that Debian does not package, written for keg.
// Each opens its library and leaves its table on the stack, like a luaopen_* function.
#pragma once

struct lua_State;

namespace keg::server {

/// `cmsgpack` (lua_cmsgpack.cc): MessagePack pack / unpack / unpack_one / unpack_limit.
int OpenCmsgpack(lua_State* L);
/// `struct` (lua_struct.cc): binary pack / unpack / size with a format string.
int OpenStruct(lua_State* L);

}  // namespace keg::server
