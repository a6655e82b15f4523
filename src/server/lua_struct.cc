// The `struct` library of Redis's Lua environment (Roberto Ierusalimschy's struct 0.2 API, which
// Debian does not package): struct.pack(fmt, ...), struct.unpack(fmt, s [, pos]), struct.size(fmt).
//
// Format: '<' little endian, '>' big endian, '!' [n] maximum alignment (a power of two), ' '
// ignored; 'b'/'B' char, 'h'/'H' short, 'l'/'L' long, 'T' size_t, 'i'/'I' [n] an n-byte integer
// (at most 32), 'f' float, 'd' double, 'x' a zero byte, 's' a zero-terminated string, 'c' [n] n
// bytes ('c0': the whole string when packing, a length taken from the previous value when
// unpacking). Lower case is signed.
//
// Every size in a format and every position is checked before memory is touched: sizes are
// bounded, reads stay inside the data string.
//
// Thread: whatever thread runs the Lua state (the writer role).
#include <cctype>
#include <climits>
#include <cstdint>
#include <cstring>

extern "C" {
#include <lauxlib.h>
#include <lua.h>
}

#include "server/lua_libs.h"

namespace keg::server {
namespace {

constexpr int kMaxIntSize = 32;
constexpr size_t kMaxAlign = 8;  // the platform's strictest alignment for these types

enum class Endian { kLittle, kBig };

struct Header {
  Endian endian = Endian::kLittle;  // x86-64's native order
  size_t align = 1;
};

// A decimal count in the format, or `fallback` when there is none; raises on overflow.
size_t ReadNumber(lua_State* L, const char** fmt, size_t fallback) {
  if (!std::isdigit(static_cast<unsigned char>(**fmt))) return fallback;
  size_t a = 0;
  do {
    const auto digit = static_cast<size_t>(**fmt - '0');
    if (a > (INT_MAX - digit) / 10) luaL_error(L, "integral size overflow");
    a = a * 10 + digit;
    ++*fmt;
  } while (std::isdigit(static_cast<unsigned char>(**fmt)));
  return a;
}

// The size of option `opt` (reading its count from the format), 0 for options without one.
size_t OptionSize(lua_State* L, char opt, const char** fmt) {
  switch (opt) {
    case 'B':
    case 'b':
      return sizeof(char);
    case 'H':
    case 'h':
      return sizeof(short);
    case 'L':
    case 'l':
      return sizeof(long);
    case 'T':
      return sizeof(size_t);
    case 'f':
      return sizeof(float);
    case 'd':
      return sizeof(double);
    case 'x':
      return 1;
    case 'c':
      return ReadNumber(L, fmt, 1);
    case 'i':
    case 'I': {
      const size_t size = ReadNumber(L, fmt, sizeof(int));
      if (size > kMaxIntSize) luaL_error(L, "integral size %d is larger than limit of %d", static_cast<int>(size), kMaxIntSize);
      return size;
    }
    default:
      return 0;
  }
}

// Padding before an item of `size` bytes at offset `len`.
size_t Padding(size_t len, const Header& h, char opt, size_t size) {
  if (size == 0 || opt == 'c') return 0;
  if (size > h.align) size = h.align;
  return (size - (len & (size - 1))) & (size - 1);
}

void ControlOption(lua_State* L, char opt, const char** fmt, Header* h) {
  switch (opt) {
    case ' ':
      return;
    case '>':
      h->endian = Endian::kBig;
      return;
    case '<':
      h->endian = Endian::kLittle;
      return;
    case '!': {
      const size_t a = ReadNumber(L, fmt, kMaxAlign);
      if (a == 0 || (a & (a - 1)) != 0) luaL_error(L, "alignment %d is not a power of 2", static_cast<int>(a));
      h->align = a;
      return;
    }
    default:
      luaL_error(L, "invalid format option '%c'", opt);
  }
}

void PutBytes(luaL_Buffer* b, const unsigned char* bytes, size_t size, Endian endian) {
  for (size_t i = 0; i < size; ++i) {
    luaL_addchar(b, static_cast<char>(endian == Endian::kLittle ? bytes[i] : bytes[size - 1 - i]));
  }
}

void PutInteger(luaL_Buffer* b, lua_Number n, Endian endian, size_t size) {
  // Two's complement of the integral part, saturated to 64 bits (a cast out of range is undefined).
  int64_t v = 0;
  if (n >= 9223372036854775807.0) {
    v = INT64_MAX;
  } else if (n <= -9223372036854775808.0) {
    v = INT64_MIN;
  } else if (n == n) {
    v = static_cast<int64_t>(n);
  }
  auto u = static_cast<uint64_t>(v);
  unsigned char bytes[kMaxIntSize] = {};
  for (size_t i = 0; i < size; ++i) {  // little-endian order here; PutBytes reverses for big
    bytes[i] = i < 8 ? static_cast<unsigned char>(u & 0xff) : 0;
    if (i < 8) u >>= 8;
  }
  PutBytes(b, bytes, size, endian);
}

lua_Number GetInteger(const char* data, Endian endian, bool is_signed, size_t size) {
  uint64_t l = 0;
  for (size_t k = 0; k < size; ++k) {
    const size_t i = endian == Endian::kBig ? k : size - 1 - k;
    l = (l << 8) | static_cast<unsigned char>(data[i]);  // bytes beyond 8 shift out
  }
  if (is_signed && size < 8) {
    const uint64_t mask = ~uint64_t{0} << (size * 8 - 1);
    if ((l & mask) != 0) l |= mask;
  }
  return is_signed ? static_cast<lua_Number>(static_cast<int64_t>(l)) : static_cast<lua_Number>(l);
}

// A float or double stored in `endian` order.
template <class T>
T GetFloat(const char* data, Endian endian) {
  unsigned char bytes[sizeof(T)];
  for (size_t i = 0; i < sizeof bytes; ++i) {
    bytes[i] = static_cast<unsigned char>(data[endian == Endian::kLittle ? i : sizeof bytes - 1 - i]);
  }
  T v{};
  std::memcpy(&v, bytes, sizeof v);
  return v;
}

int Pack(lua_State* L) {
  Header h;
  const char* fmt = luaL_checkstring(L, 1);
  int arg = 2;
  size_t total = 0;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  while (*fmt != '\0') {
    const char opt = *fmt++;
    size_t size = OptionSize(L, opt, &fmt);
    size_t pad = Padding(total, h, opt, size);
    total += pad;
    while (pad-- > 0) luaL_addchar(&b, '\0');
    switch (opt) {
      case 'b':
      case 'B':
      case 'h':
      case 'H':
      case 'l':
      case 'L':
      case 'T':
      case 'i':
      case 'I':
        PutInteger(&b, luaL_checknumber(L, arg++), h.endian, size);
        break;
      case 'x':
        luaL_addchar(&b, '\0');
        break;
      case 'f': {
        const auto f = static_cast<float>(luaL_checknumber(L, arg++));
        unsigned char bytes[sizeof f];
        std::memcpy(bytes, &f, sizeof f);
        PutBytes(&b, bytes, sizeof f, h.endian);
        break;
      }
      case 'd': {
        const double d = luaL_checknumber(L, arg++);
        unsigned char bytes[sizeof d];
        std::memcpy(bytes, &d, sizeof d);
        PutBytes(&b, bytes, sizeof d, h.endian);
        break;
      }
      case 'c':
      case 's': {
        size_t len = 0;
        const char* s = luaL_checklstring(L, arg, &len);
        if (size == 0) size = len;
        luaL_argcheck(L, len >= size, arg, "string too short");
        ++arg;
        luaL_addlstring(&b, s, size);
        if (opt == 's') {
          luaL_addchar(&b, '\0');
          ++size;
        }
        break;
      }
      default:
        ControlOption(L, opt, &fmt, &h);
    }
    total += size;
  }
  luaL_pushresult(&b);
  return 1;
}

int Unpack(lua_State* L) {
  Header h;
  const char* fmt = luaL_checkstring(L, 1);
  size_t len = 0;
  const char* data = luaL_checklstring(L, 2, &len);
  // A start outside the data fails at the first item that reads, as Redis's struct does. Read as
  // a double and range-checked before any conversion (NaN and huge values are outside).
  const lua_Number start = luaL_optnumber(L, 3, 1) - 1;
  const bool outside = !(start >= 0 && start <= static_cast<lua_Number>(len));
  size_t pos = outside ? len + 1 : static_cast<size_t>(start);
  int n = 0;
  while (*fmt != '\0') {
    const char opt = *fmt++;
    size_t size = OptionSize(L, opt, &fmt);
    pos += Padding(pos, h, opt, size);
    luaL_argcheck(L, pos <= len && size <= len - pos, 2, "data string too short");
    luaL_checkstack(L, 2, "too many results");
    switch (opt) {
      case 'b':
      case 'B':
      case 'h':
      case 'H':
      case 'l':
      case 'L':
      case 'T':
      case 'i':
      case 'I':
        lua_pushnumber(L, GetInteger(data + pos, h.endian, std::islower(static_cast<unsigned char>(opt)) != 0, size));
        ++n;
        break;
      case 'x':
        break;
      case 'f':
        lua_pushnumber(L, static_cast<lua_Number>(GetFloat<float>(data + pos, h.endian)));
        ++n;
        break;
      case 'd':
        lua_pushnumber(L, GetFloat<double>(data + pos, h.endian));
        ++n;
        break;
      case 'c':
        if (size == 0) {  // the length is the value unpacked just before
          if (n == 0 || !lua_isnumber(L, -1)) luaL_error(L, "format 'c0' needs a previous size");
          const lua_Number want = lua_tonumber(L, -1);
          lua_pop(L, 1);
          --n;
          luaL_argcheck(L, want >= 0 && want <= static_cast<lua_Number>(len - pos), 2, "data string too short");
          size = static_cast<size_t>(want);
        }
        lua_pushlstring(L, data + pos, size);
        ++n;
        break;
      case 's': {
        const void* end = std::memchr(data + pos, '\0', len - pos);
        if (end == nullptr) luaL_error(L, "unfinished string in data");
        size = static_cast<size_t>(static_cast<const char*>(end) - (data + pos)) + 1;
        lua_pushlstring(L, data + pos, size - 1);
        ++n;
        break;
      }
      default:
        ControlOption(L, opt, &fmt, &h);
    }
    pos += size;
  }
  // Where the next read starts.
  if (outside && n == 0) {
    lua_pushnumber(L, start + 1);
  } else {
    lua_pushinteger(L, static_cast<lua_Integer>(pos) + 1);
  }
  return n + 1;
}

int Size(lua_State* L) {
  Header h;
  const char* fmt = luaL_checkstring(L, 1);
  size_t pos = 0;
  while (*fmt != '\0') {
    const char opt = *fmt++;
    const size_t size = OptionSize(L, opt, &fmt);
    pos += Padding(pos, h, opt, size);
    if (opt == 's') {
      luaL_argerror(L, 1, "option 's' has no fixed size");
    } else if (opt == 'c' && size == 0) {
      luaL_argerror(L, 1, "option 'c0' has no fixed size");
    }
    if (!std::isalnum(static_cast<unsigned char>(opt))) ControlOption(L, opt, &fmt, &h);
    pos += size;
  }
  lua_pushinteger(L, static_cast<lua_Integer>(pos));
  return 1;
}

}  // namespace

int OpenStruct(lua_State* L) {
  static const luaL_Reg kFunctions[] = {{"pack", Pack}, {"unpack", Unpack}, {"size", Size}, {nullptr, nullptr}};
  lua_newtable(L);
  luaL_register(L, nullptr, kFunctions);
  return 1;
}

}  // namespace keg::server
