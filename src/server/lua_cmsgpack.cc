// The `cmsgpack` library of Redis's Lua environment (lua-cmsgpack 0.4's API and encoding, which
// Debian does not package): pack, unpack, unpack_one, unpack_limit. MessagePack as Redis writes
// it: the smallest integer form for integral numbers, float 32 when a double survives the round
// trip, else float 64; str8/16/32 for strings; a table whose keys are exactly 1..n is an array,
// any other a map; tables nested deeper than 16 (a table holding itself) become nil.
//
// Decoding reads hostile bytes: every length is checked against what is left before anything is
// allocated, containers are filled as their elements arrive (a count in a header never
// preallocates), and nesting is bounded.
//
// Thread: whatever thread runs the Lua state (the writer role).
#include "server/lua_libs.h"

#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

extern "C" {
#include <lauxlib.h>
#include <lua.h>
}

namespace keg::server {
namespace {

constexpr int kMaxNesting = 16;        // LUACMSGPACK_MAX_NESTING: deeper tables are packed as nil
constexpr int kMaxDecodeDepth = 1000;  // nesting accepted when unpacking (bounds the C stack)

void PutBigEndian(std::string* out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void EncodeInteger(std::string* out, int64_t n) {
  if (n >= 0) {
    const auto u = static_cast<uint64_t>(n);
    if (u <= 127) {
      out->push_back(static_cast<char>(u));
    } else if (u <= 0xff) {
      out->push_back('\xcc');
      PutBigEndian(out, u, 1);
    } else if (u <= 0xffff) {
      out->push_back('\xcd');
      PutBigEndian(out, u, 2);
    } else if (u <= 0xffffffffull) {
      out->push_back('\xce');
      PutBigEndian(out, u, 4);
    } else {
      out->push_back('\xcf');
      PutBigEndian(out, u, 8);
    }
    return;
  }
  const auto bits = static_cast<uint64_t>(n);
  if (n >= -32) {
    out->push_back(static_cast<char>(bits & 0xff));  // negative fixint
  } else if (n >= -128) {
    out->push_back('\xd0');
    PutBigEndian(out, bits, 1);
  } else if (n >= -32768) {
    out->push_back('\xd1');
    PutBigEndian(out, bits, 2);
  } else if (n >= -2147483648ll) {
    out->push_back('\xd2');
    PutBigEndian(out, bits, 4);
  } else {
    out->push_back('\xd3');
    PutBigEndian(out, bits, 8);
  }
}

void EncodeNumber(std::string* out, lua_Number d) {
  // An integral value that an int64 holds exactly is an integer (the range check first: a
  // conversion out of range is undefined).
  if (!std::isinf(d) && !std::isnan(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0 &&
      static_cast<lua_Number>(static_cast<int64_t>(d)) == d) {
    EncodeInteger(out, static_cast<int64_t>(d));
    return;
  }
  const auto f = static_cast<float>(d);
  if (static_cast<double>(f) == d) {
    uint32_t bits = 0;
    std::memcpy(&bits, &f, 4);
    out->push_back('\xca');
    PutBigEndian(out, bits, 4);
  } else {
    uint64_t bits = 0;
    std::memcpy(&bits, &d, 8);
    out->push_back('\xcb');
    PutBigEndian(out, bits, 8);
  }
}

// A container's header: the fix form (fix | n) below 16 elements, else 16- or 32-bit counts.
void PutContainerHeader(std::string* out, size_t n, unsigned char fix, char op16, char op32) {
  if (n < 16) {
    out->push_back(static_cast<char>(fix | n));
  } else if (n <= 0xffff) {
    out->push_back(op16);
    PutBigEndian(out, n, 2);
  } else {
    out->push_back(op32);
    PutBigEndian(out, n, 4);
  }
}

void EncodeString(std::string* out, const char* s, size_t len) {
  if (len < 32) {
    out->push_back(static_cast<char>(0xa0 | len));
  } else if (len <= 0xff) {
    out->push_back('\xd9');
    PutBigEndian(out, len, 1);
  } else if (len <= 0xffff) {
    out->push_back('\xda');
    PutBigEndian(out, len, 2);
  } else {
    out->push_back('\xdb');
    PutBigEndian(out, len, 4);
  }
  out->append(s, len);
}

// Whether the table on the top of the stack has exactly the keys 1..n.
bool IsArray(lua_State* L) {
  const int top = lua_gettop(L);
  lua_Number max = 0;
  lua_Number count = 0;
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TNUMBER) {
      lua_settop(L, top);
      return false;
    }
    const lua_Number n = lua_tonumber(L, -1);
    if (n <= 0 || n > 2147483647.0 || std::floor(n) != n) {
      lua_settop(L, top);
      return false;
    }
    if (n > max) max = n;
    ++count;
  }
  lua_settop(L, top);
  return max == count;
}

void Encode(lua_State* L, std::string* out, int level) {
  int type = lua_type(L, -1);
  if (type == LUA_TTABLE && level == kMaxNesting) type = LUA_TNIL;
  if (!lua_checkstack(L, 3)) type = LUA_TNIL;  // never raises here: `out` lives in the caller
  switch (type) {
    case LUA_TSTRING: {
      size_t len = 0;
      const char* s = lua_tolstring(L, -1, &len);
      EncodeString(out, s, len);
      break;
    }
    case LUA_TBOOLEAN:
      out->push_back(lua_toboolean(L, -1) != 0 ? '\xc3' : '\xc2');
      break;
    case LUA_TNUMBER:
      EncodeNumber(out, lua_tonumber(L, -1));
      break;
    case LUA_TTABLE:
      if (IsArray(L)) {
        const size_t n = lua_objlen(L, -1);
        PutContainerHeader(out, n, 0x90, '\xdc', '\xdd');
        for (size_t i = 1; i <= n; ++i) {
          lua_rawgeti(L, -1, static_cast<int>(i));
          Encode(L, out, level + 1);
          lua_pop(L, 1);
        }
      } else {
        size_t n = 0;
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) {
          lua_pop(L, 1);
          ++n;
        }
        PutContainerHeader(out, n, 0x80, '\xde', '\xdf');
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) {
          lua_pushvalue(L, -2);
          Encode(L, out, level + 1);  // the key
          lua_pop(L, 1);
          Encode(L, out, level + 1);  // the value
          lua_pop(L, 1);
        }
      }
      break;
    default:  // nil, functions, userdata, threads
      out->push_back('\xc0');
      break;
  }
}

// pack(...): each argument's encoding, concatenated.
int Pack(lua_State* L) {
  const int n = lua_gettop(L);
  if (n == 0) return luaL_argerror(L, 0, "MessagePack pack needs input.");
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; ++i) {
    {
      std::string out;
      lua_pushvalue(L, i);
      Encode(L, &out, 0);
      lua_pop(L, 1);
      // luaL_addlstring may grow the Lua stack but raises no error short of memory exhaustion.
      luaL_addlstring(&b, out.data(), out.size());
    }
  }
  luaL_pushresult(&b);
  return 1;
}

enum class DecodeError { kNone, kEof, kBadFormat };

struct Cursor {
  const unsigned char* p;
  size_t left;
  DecodeError err = DecodeError::kNone;

  bool Need(size_t n) {
    if (left < n) {
      err = DecodeError::kEof;
      return false;
    }
    return true;
  }
  uint64_t Take(int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v = (v << 8) | p[i];
    p += bytes;
    left -= static_cast<size_t>(bytes);
    return v;
  }
};

// Decodes one object and pushes it; on failure sets c->err and pushes nothing it promised.
void Decode(lua_State* L, Cursor* c, int depth) {
  if (depth > kMaxDecodeDepth || !lua_checkstack(L, 4)) {
    c->err = DecodeError::kBadFormat;
    return;
  }
  if (!c->Need(1)) return;
  const unsigned char t = *c->p;
  c->p++;
  c->left--;
  auto push_string = [&](size_t len) {
    if (!c->Need(len)) return;
    lua_pushlstring(L, reinterpret_cast<const char*>(c->p), len);
    c->p += len;
    c->left -= len;
  };
  auto push_array = [&](uint64_t n) {
    lua_newtable(L);
    for (uint64_t i = 0; i < n; ++i) {
      Decode(L, c, depth + 1);
      if (c->err != DecodeError::kNone) {
        lua_pop(L, 1);
        return;
      }
      lua_rawseti(L, -2, static_cast<int>(i + 1));
    }
  };
  auto push_map = [&](uint64_t n) {
    lua_newtable(L);
    for (uint64_t i = 0; i < n; ++i) {
      Decode(L, c, depth + 1);
      if (c->err != DecodeError::kNone) {
        lua_pop(L, 1);
        return;
      }
      Decode(L, c, depth + 1);
      if (c->err != DecodeError::kNone) {
        lua_pop(L, 2);
        return;
      }
      if (lua_isnil(L, -2)) {  // a nil key cannot be stored (Lua raises): dropped
        lua_pop(L, 2);
        continue;
      }
      lua_settable(L, -3);
    }
  };
  if (t <= 0x7f) {
    lua_pushnumber(L, t);
  } else if (t >= 0xe0) {
    lua_pushnumber(L, static_cast<int8_t>(t));
  } else if ((t & 0xe0) == 0xa0) {
    push_string(t & 0x1f);
  } else if ((t & 0xf0) == 0x90) {
    push_array(t & 0x0f);
  } else if ((t & 0xf0) == 0x80) {
    push_map(t & 0x0f);
  } else {
    switch (t) {
      case 0xc0:
        lua_pushnil(L);
        break;
      case 0xc2:
        lua_pushboolean(L, 0);
        break;
      case 0xc3:
        lua_pushboolean(L, 1);
        break;
      case 0xca: {
        if (!c->Need(4)) return;
        const auto bits = static_cast<uint32_t>(c->Take(4));
        float f = 0;
        std::memcpy(&f, &bits, 4);
        lua_pushnumber(L, static_cast<lua_Number>(f));
        break;
      }
      case 0xcb: {
        if (!c->Need(8)) return;
        const uint64_t bits = c->Take(8);
        double d = 0;
        std::memcpy(&d, &bits, 8);
        lua_pushnumber(L, d);
        break;
      }
      case 0xcc:
      case 0xcd:
      case 0xce:
      case 0xcf: {
        const int bytes = 1 << (t - 0xcc);
        if (!c->Need(static_cast<size_t>(bytes))) return;
        lua_pushnumber(L, static_cast<lua_Number>(c->Take(bytes)));
        break;
      }
      case 0xd0:
      case 0xd1:
      case 0xd2:
      case 0xd3: {
        const int bytes = 1 << (t - 0xd0);
        if (!c->Need(static_cast<size_t>(bytes))) return;
        uint64_t v = c->Take(bytes);
        if (bytes < 8 && (v >> (8 * bytes - 1)) != 0) v |= ~uint64_t{0} << (8 * bytes);  // sign-extend
        lua_pushnumber(L, static_cast<lua_Number>(static_cast<int64_t>(v)));
        break;
      }
      case 0xd9:
      case 0xda:
      case 0xdb: {
        const int bytes = t == 0xd9 ? 1 : t == 0xda ? 2 : 4;
        if (!c->Need(static_cast<size_t>(bytes))) return;
        push_string(static_cast<size_t>(c->Take(bytes)));
        break;
      }
      case 0xdc:
      case 0xdd: {
        const int bytes = t == 0xdc ? 2 : 4;
        if (!c->Need(static_cast<size_t>(bytes))) return;
        push_array(c->Take(bytes));
        break;
      }
      case 0xde:
      case 0xdf: {
        const int bytes = t == 0xde ? 2 : 4;
        if (!c->Need(static_cast<size_t>(bytes))) return;
        push_map(c->Take(bytes));
        break;
      }
      default:
        c->err = DecodeError::kBadFormat;
        break;
    }
  }
}

// lua-cmsgpack's mp_unpack_full: `limit` objects (0 with offset 0: all) from byte `offset`.
int UnpackFull(lua_State* L, lua_Integer limit, lua_Integer offset) {
  size_t len = 0;
  const char* s = luaL_checklstring(L, 1, &len);
  const bool all = limit == 0 && offset == 0;
  if (offset < 0 || limit < 0) {
    return luaL_error(L, "Invalid request to unpack with offset of %d and limit of %d.", static_cast<int>(offset),
                      static_cast<int>(len));
  }
  if (static_cast<size_t>(offset) > len) {
    return luaL_error(L, "Start offset %d greater than input length %d.", static_cast<int>(offset),
                      static_cast<int>(len));
  }
  if (all) limit = INT_MAX;
  Cursor c{reinterpret_cast<const unsigned char*>(s) + offset, len - static_cast<size_t>(offset)};
  int count = 0;
  for (; c.left > 0 && count < limit; ++count) {
    Decode(L, &c, 0);
    if (c.err == DecodeError::kEof) return luaL_error(L, "Missing bytes in input.");
    if (c.err == DecodeError::kBadFormat) return luaL_error(L, "Bad data format in input.");
  }
  if (!all) {
    luaL_checkstack(L, 1, "in function mp_unpack_full");
    lua_pushinteger(L, c.left == 0 ? -1 : static_cast<lua_Integer>(len - c.left));
    lua_insert(L, 2);  // the offset first, after the argument(s) Lua drops
    ++count;
  }
  return count;
}

int Unpack(lua_State* L) { return UnpackFull(L, 0, 0); }

int UnpackOne(lua_State* L) {
  const lua_Integer offset = luaL_optinteger(L, 2, 0);
  lua_pop(L, lua_gettop(L) - 1);  // only the input stays below the results
  return UnpackFull(L, 1, offset);
}

int UnpackLimit(lua_State* L) {
  const lua_Integer limit = luaL_checkinteger(L, 2);
  const lua_Integer offset = luaL_optinteger(L, 3, 0);
  lua_pop(L, lua_gettop(L) - 1);
  return UnpackFull(L, limit, offset);
}

}  // namespace

int OpenCmsgpack(lua_State* L) {
  static const luaL_Reg kFunctions[] = {{"pack", Pack},
                                        {"unpack", Unpack},
                                        {"unpack_one", UnpackOne},
                                        {"unpack_limit", UnpackLimit},
                                        {nullptr, nullptr}};
  lua_newtable(L);
  luaL_register(L, nullptr, kFunctions);
  return 1;
}

}  // namespace keg::server
