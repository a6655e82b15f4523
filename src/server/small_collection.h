// The value of a collection stored whole (docs/types.md, "small ones whole"): one record holds the
// whole hash or set. Layout:
//   u8     flags      kConverted: the collection once went past its type's thresholds, so OBJECT
//                     ENCODING reports Redis's large encoding (hashtable) from then on, as Redis
//                     never converts back
//   varint count      elements (a hash has 2 per field: field, then value)
//   count x (varint length, bytes)
// Elements keep their insertion order (as a listpack does). Varints are LEB128.
// Thread: plain functions on values; any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace keg::server::coll {

constexpr uint8_t kConverted = 1;

/// A decoded collection: views into the value it was decoded from (which must outlive it).
struct View {
  uint8_t flags = 0;
  std::vector<std::string_view> elements;
};

/// Decodes `value`; false when it is malformed (a value written by another type's commands, or
/// damage the CRC missed).
bool Decode(std::string_view value, View* out);

/// The element count of an encoding, from its header alone; false when malformed.
bool Count(std::string_view value, uint64_t* count);
/// Finds `member` among the entries (`stride` elements each: a hash's field and value, a set's
/// member) of an encoding without decoding it: 1 found (*found: the entry's second element, empty
/// for a set), 0 absent, -1 malformed.
int Find(std::string_view value, size_t stride, std::string_view member, std::string_view* found);

/// Encodes `elements` with `flags`.
std::string Encode(uint8_t flags, std::span<const std::string_view> elements);

/// The encoding of `v` (decoded from `value`) with `extra` elements appended and `flags`: the old
/// elements' bytes are copied as they are (no per-element work). The common write of a set or
/// hash that only grows.
std::string Append(std::string_view value, const View& v, uint8_t flags, std::span<const std::string_view> extra);

/// A hash decoded for a change: owned copies, field i at 2i, its value at 2i + 1.
struct Hash {
  uint8_t flags = 0;
  std::vector<std::string> items;
  size_t size() const { return items.size() / 2; }
  /// The index of `field`'s pair, or -1.
  long Find(std::string_view field) const;
  /// Sets field to value; true when the field is new.
  bool Set(std::string_view field, std::string_view value);
  /// Removes field; true when it was there.
  bool Remove(std::string_view field);
  std::string Encode() const;
};
/// Decodes a hash for a change; false when malformed.
bool DecodeHash(std::string_view value, Hash* out);

/// Redis's string2ll: `s` is the canonical decimal form of an int64 (what an intset holds).
bool IsIntsetMember(std::string_view s, int64_t* v);
/// A set's members as an intset keeps them when it can be one: all integers, at most
/// `max_intset` of them, not converted (then sorted numerically, returns true); else sets
/// kConverted in *flags and leaves the order.
bool SettleSet(uint8_t* flags, std::vector<std::string>* members, size_t max_intset);

}  // namespace keg::server::coll
