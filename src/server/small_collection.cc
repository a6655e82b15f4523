#include "server/small_collection.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <utility>

namespace keg::server::coll {
namespace {

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// The same at `p`, which has room for 10 bytes; returns the byte after it.
char* PutVarint(char* p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<char>(v);
  return p;
}

bool GetVarint(std::string_view* in, uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift < 64 && !in->empty(); shift += 7) {
    const auto byte = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    result |= uint64_t{byte & 0x7Fu} << shift;
    if ((byte & 0x80) == 0) {
      *v = result;
      return true;
    }
  }
  return false;
}

}  // namespace

bool Decode(std::string_view value, View* out) {
  out->elements.clear();
  if (value.empty()) return false;
  out->flags = static_cast<uint8_t>(value.front());
  value.remove_prefix(1);
  uint64_t count = 0;
  if (!GetVarint(&value, &count) || count > value.size()) return false;  // each takes >= 1 byte
  out->elements.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t len = 0;
    if (!GetVarint(&value, &len) || len > value.size()) return false;
    out->elements.push_back(value.substr(0, len));
    value.remove_prefix(len);
  }
  return value.empty();
}

bool Count(std::string_view value, uint64_t* count) {
  if (value.empty()) return false;
  value.remove_prefix(1);
  return GetVarint(&value, count) && *count <= value.size();
}

int Find(std::string_view value, size_t stride, std::string_view member, std::string_view* found) {
  uint64_t count = 0;
  if (!Count(value, &count) || stride == 0 || count % stride != 0) return -1;
  value.remove_prefix(1);
  GetVarint(&value, &count);
  for (uint64_t i = 0; i < count; i += stride) {
    uint64_t len = 0;
    if (!GetVarint(&value, &len) || len > value.size()) return -1;
    const bool match = len == member.size() && value.compare(0, len, member) == 0;
    value.remove_prefix(len);
    for (size_t j = 1; j < stride; ++j) {
      if (!GetVarint(&value, &len) || len > value.size()) return -1;
      if (match) *found = value.substr(0, len);
      value.remove_prefix(len);
    }
    if (match) {
      if (stride == 1) *found = {};
      return 1;
    }
  }
  return 0;
}

std::string Encode(uint8_t flags, std::span<const std::string_view> elements) {
  // Written through a pointer into room sized for the longest varints, then cut to size (a
  // push_back per byte and an append per element cost more than the copying: a pipelined HSET
  // encodes its hash once per command).
  size_t bytes = 1 + 10;
  for (std::string_view e : elements) bytes += e.size() + 10;
  std::string out;
  out.resize(bytes);
  char* const begin = out.data();
  char* p = begin;
  *p++ = static_cast<char>(flags);
  p = PutVarint(p, elements.size());
  for (std::string_view e : elements) {
    p = PutVarint(p, e.size());
    if (!e.empty()) std::memcpy(p, e.data(), e.size());
    p += e.size();
  }
  out.resize(static_cast<size_t>(p - begin));
  return out;
}

std::string Append(std::string_view value, const View& v, uint8_t flags, std::span<const std::string_view> extra) {
  // The elements' bytes start after the flags byte and the count's varint.
  const size_t body = v.elements.empty() ? value.size() : static_cast<size_t>(v.elements.front().data() - value.data());
  size_t start = body;
  if (!v.elements.empty()) {  // back over the first element's length varint
    uint64_t len = v.elements.front().size();
    size_t n = 1;
    while (len >= 0x80) {
      len >>= 7;
      ++n;
    }
    start = body - n;
  }
  size_t bytes = 1 + 10 + (value.size() - start);
  for (std::string_view e : extra) bytes += e.size() + 5;
  std::string out;
  out.reserve(bytes);
  out.push_back(static_cast<char>(flags));
  PutVarint(&out, v.elements.size() + extra.size());
  out.append(value.substr(start));
  for (std::string_view e : extra) {
    PutVarint(&out, e.size());
    out.append(e);
  }
  return out;
}

long Hash::Find(std::string_view field) const {
  for (size_t i = 0; i + 1 < items.size(); i += 2) {
    if (items[i] == field) return static_cast<long>(i / 2);
  }
  return -1;
}

bool Hash::Set(std::string_view field, std::string_view value) {
  const long at = Find(field);
  if (at >= 0) {
    items[static_cast<size_t>(at) * 2 + 1].assign(value);
    return false;
  }
  items.emplace_back(field);
  items.emplace_back(value);
  return true;
}

bool Hash::Remove(std::string_view field) {
  const long at = Find(field);
  if (at < 0) return false;
  const auto i = static_cast<size_t>(at) * 2;
  items.erase(items.begin() + static_cast<std::ptrdiff_t>(i), items.begin() + static_cast<std::ptrdiff_t>(i + 2));
  return true;
}

std::string Hash::Encode() const {
  std::vector<std::string_view> views(items.begin(), items.end());
  return coll::Encode(flags, views);
}

bool IsIntsetMember(std::string_view s, int64_t* v) {
  if (s.empty() || s.size() > 20) return false;
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, *v);
  return ec == std::errc() && p == end && std::to_string(*v) == s;  // no "+1", "01", "-0"
}

bool SettleSet(uint8_t* flags, std::vector<std::string>* members, size_t max_intset) {
  if ((*flags & kConverted) != 0) return false;
  std::vector<std::pair<int64_t, size_t>> order;
  bool ints = members->size() <= max_intset;
  order.reserve(members->size());
  for (size_t i = 0; i < members->size() && ints; ++i) {
    int64_t v = 0;
    ints = IsIntsetMember((*members)[i], &v);
    order.emplace_back(v, i);
  }
  if (!ints) {
    *flags |= kConverted;
    return false;
  }
  if (!std::is_sorted(order.begin(), order.end())) {
    std::sort(order.begin(), order.end());
    std::vector<std::string> sorted;
    sorted.reserve(members->size());
    for (const auto& [v, i] : order) sorted.push_back(std::move((*members)[i]));
    *members = std::move(sorted);
  }
  return true;
}

bool DecodeHash(std::string_view value, Hash* out) {
  View v;
  if (!Decode(value, &v) || v.elements.size() % 2 != 0) return false;
  out->flags = v.flags;
  out->items.assign(v.elements.begin(), v.elements.end());
  return true;
}

}  // namespace keg::server::coll
