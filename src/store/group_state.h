// What the writer keeps while it builds one group: the overlay (each key's state as the group's
// later ops must see it) and the ops a script executed (which the group's records point into).
// Both keep their memory from group to group, so an op costs no allocation here once the first
// groups have sized them. Thread: the holder of the writer role only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "store/store.h"

namespace keg::store {

/// key -> V for the keys one group wrote: open addressing over a power-of-two table, keyed by the
/// keydir's hash of the key (computed once by the caller), in insertion order for iteration. Keys
/// are views: what they point at must outlive the entries (until Clear). Clear is O(1): slots carry
/// the generation that filled them.
template <typename V>
class GroupMap {
 public:
  struct Item {
    std::string_view key;
    uint64_t hash;
    V value;
  };

  const V* Find(std::string_view key, uint64_t hash) const {
    if (items_.empty()) return nullptr;
    const size_t mask = slots_.size() - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
      const Slot& s = slots_[i];
      if (s.generation != generation_) return nullptr;
      const Item& item = items_[s.index];
      if (item.hash == hash && item.key == key) return &item.value;
    }
  }
  bool Contains(std::string_view key, uint64_t hash) const { return Find(key, hash) != nullptr; }

  /// Adds the key, or replaces its value.
  void Set(std::string_view key, uint64_t hash, V value) {
    if ((items_.size() + 1) * 2 > slots_.size()) Grow();
    const size_t mask = slots_.size() - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
      Slot& s = slots_[i];
      if (s.generation != generation_) {
        s = Slot{static_cast<uint32_t>(items_.size()), generation_};
        items_.push_back(Item{key, hash, std::move(value)});
        return;
      }
      Item& item = items_[s.index];
      if (item.hash == hash && item.key == key) {
        item.value = std::move(value);
        return;
      }
    }
  }

  void Clear() {
    // A table grown by one huge group goes back to its first size once groups are small again.
    if (slots_.size() > kShrinkAbove && items_.size() * 16 < slots_.size()) {
      slots_.assign(kInitialSlots, Slot{});
      generation_ = 1;
    } else if (++generation_ == 0) {  // after 2^32 groups: the stamps start over
      std::fill(slots_.begin(), slots_.end(), Slot{});
      generation_ = 1;
    }
    items_.clear();
  }

  const std::vector<Item>& items() const { return items_; }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }

 private:
  struct Slot {
    uint32_t index = 0;       // into items_
    uint32_t generation = 0;  // 0: never filled
  };
  static constexpr size_t kInitialSlots = 64;
  static constexpr size_t kShrinkAbove = 4096;

  void Grow() {
    const size_t size = slots_.empty() ? kInitialSlots : slots_.size() * 2;
    slots_.assign(size, Slot{});
    generation_ = 1;
    const size_t mask = size - 1;
    for (size_t n = 0; n < items_.size(); ++n) {
      size_t i = items_[n].hash & mask;
      while (slots_[i].generation == generation_) i = (i + 1) & mask;
      slots_[i] = Slot{static_cast<uint32_t>(n), generation_};
    }
  }

  std::vector<Slot> slots_;
  std::vector<Item> items_;
  uint32_t generation_ = 1;
};

/// The ops a script's Txn executed in the group being built: each stays at its address until
/// Clear (records and overlay entries point at its key). Slots are reused from group to group.
class OpPool {
 public:
  WriteBatch::Op& Add(WriteBatch::Op op) {
    if (used_ == chunks_.size() * kChunk) chunks_.push_back(std::make_unique<WriteBatch::Op[]>(kChunk));
    WriteBatch::Op& slot = chunks_[used_ / kChunk][used_ % kChunk];
    slot = std::move(op);
    ++used_;
    return slot;
  }
  /// Releases what the ops hold (keys, values, functions); a pool grown by one huge group gives its
  /// chunks beyond the first few back.
  void Clear() {
    for (size_t i = 0; i < used_; ++i) chunks_[i / kChunk][i % kChunk] = WriteBatch::Op{};
    used_ = 0;
    if (chunks_.size() > kKeepChunks) chunks_.resize(kKeepChunks);
  }

 private:
  static constexpr size_t kChunk = 32;
  static constexpr size_t kKeepChunks = 8;
  std::vector<std::unique_ptr<WriteBatch::Op[]>> chunks_;
  size_t used_ = 0;
};

/// Bytes one group keeps (its element records' keys): Store copies them into 64 KiB chunks that
/// never move, so the views it returns stay valid until Clear. The chunks are kept from group to
/// group (but those beyond the first few a huge group took), so storing costs no allocation.
class ByteArena {
 public:
  std::string_view Store(std::string_view bytes) {
    if (bytes.size() > kChunk / 4) {  // a large one: its own allocation
      large_.push_back(std::make_unique<char[]>(bytes.size()));
      std::memcpy(large_.back().get(), bytes.data(), bytes.size());
      return {large_.back().get(), bytes.size()};
    }
    if (chunks_.empty()) {
      chunks_.push_back(std::make_unique<char[]>(kChunk));
      current_ = 0;
      used_ = 0;
    } else if (used_ + bytes.size() > kChunk) {  // the next chunk, kept or new
      if (++current_ == chunks_.size()) chunks_.push_back(std::make_unique<char[]>(kChunk));
      used_ = 0;
    }
    char* at = chunks_[current_].get() + used_;
    if (!bytes.empty()) std::memcpy(at, bytes.data(), bytes.size());
    used_ += bytes.size();
    return {at, bytes.size()};
  }
  void Clear() {
    current_ = 0;
    used_ = 0;
    large_.clear();
    if (chunks_.size() > kKeepChunks) chunks_.resize(kKeepChunks);
  }

 private:
  static constexpr size_t kChunk = 64 * 1024;
  static constexpr size_t kKeepChunks = 4;
  std::vector<std::unique_ptr<char[]>> chunks_;
  size_t current_ = 0;  // the chunk being filled (when chunks_ is not empty)
  size_t used_ = 0;     // bytes of it used
  std::vector<std::unique_ptr<char[]>> large_;
};

}  // namespace keg::store
