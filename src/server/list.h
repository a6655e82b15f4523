// Lists as the commands see them (docs/types.md, "Lists"), whichever way they are stored: whole
// (one record, server/small_collection.h's encoding, elements in order) while small; per element
// once past the thresholds: a head record naming an incarnation, one element record per element
// whose member is its position (8 bytes, big endian), and a meta element (member "") holding the
// first position and the length. Positions of a list are contiguous: element i is at first + i.
// A push at either end writes the element and the meta element; a pop, the element's tombstone
// and the meta element; a change in the middle (LINSERT, LREM) rewrites the elements on the
// shorter side of it.
// Thread: ListRead, the handler's (an I/O thread, or the writer inside a script); ListEdit and
// ListElements, the writer role's (inside a kRun op).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "store/store.h"

namespace keg::server {

class Ctx;
struct ServerState;

namespace list {

/// The position of element 0 of a list converted to per element: pushes on the left go below it.
inline constexpr uint64_t kMiddle = uint64_t{1} << 63;
/// The member of the meta element.
inline constexpr std::string_view kMetaMember = "";

/// The element record member of position `pos`.
std::string PositionMember(uint64_t pos);
/// PositionMember written to out[0..8).
void WritePositionMember(char* out, uint64_t pos);

struct Meta {
  uint64_t first = kMiddle;
  uint64_t count = 0;
};
std::string EncodeMeta(const Meta& m);
/// EncodeMeta into `buf`, without allocating: the view is of buf.
std::string_view EncodeMeta(const Meta& m, char (&buf)[16]);
/// False when `value` is not a meta element's (damage the CRC missed).
bool DecodeMeta(std::string_view value, Meta* out);

/// Redis's index normalisation for LRANGE / LTRIM: [start, stop] of a list of `len` elements,
/// negative from the end; false when the range is empty (then *from, *to are unset).
bool NormalizeRange(int64_t start, int64_t stop, uint64_t len, uint64_t* from, uint64_t* to);

}  // namespace list

/// Whether a list of `count` elements whose whole encoding takes `bytes` is stored per element
/// (list-max-listpack-size; docs/types.md).
bool ListStoredPerElement(ServerState& s, size_t count, size_t bytes);

/// A list read by a read command, as one consistent state (a large list's meta and elements
/// together): Read, then size() and elements().
class ListRead {
 public:
  explicit ListRead(Ctx& c) : c_(c) {}
  /// Reads `key` (WRONGTYPE for another type) and its elements [start, stop] (Redis's
  /// normalisation; start > stop reads none: LLEN). False when the reply is written already —
  /// absent() for a missing key, the read error otherwise.
  bool Read(std::string_view key, int64_t start, int64_t stop, const std::function<void()>& absent);
  uint64_t size() const { return size_; }
  /// The elements read, in order; valid while this object lives.
  const std::vector<std::string_view>& elements() const { return elements_; }
  /// The index of elements()[0] in the list.
  uint64_t from() const { return from_; }

 private:
  Ctx& c_;
  store::ValueView head_;
  uint64_t size_ = 0;
  uint64_t from_ = 0;
  std::vector<std::string_view> elements_;
  std::vector<std::shared_ptr<const void>> pins_;  // keep elements_ of a large list mapped
};

/// Every element of the large list `inc`, in order, through the group's Txn (DUMP, COPY, EXEC's
/// snapshot): not OK when its meta element or one of its records fails its check.
store::Status ListElements(store::Txn& txn, uint64_t inc, std::vector<std::string>* out);
/// The same for a reader (an I/O thread): through Ctx, the caller holding the reads together.
store::Status ListElements(Ctx& c, uint64_t inc, std::vector<store::ValueView>* out);
/// The same straight from the store (DEBUG DIGEST), the caller holding the reads together.
store::Status ListElements(const store::Store& st, uint64_t inc, std::vector<store::ValueView>* out);

/// Writes `items` as `key`'s new list, replacing whatever it holds (whole or per element by the
/// thresholds); an empty `items` deletes the key. keep_ttl keeps the key's expiry, else the list
/// gets `expire_at_ms` (0: none).
void WriteList(store::Txn& txn, ServerState& s, uint32_t db, std::string_view key,
               const std::vector<std::string_view>& items, bool keep_ttl, int64_t expire_at_ms = 0);

/// A list changed by a write command inside its kRun op: Open, edit, Commit. Indexes are
/// 0-based and must be valid (the caller normalises them).
class ListEdit {
 public:
  ListEdit(store::Txn& txn, ServerState& s, uint32_t db, std::string_view key)
      : txn_(txn), server_(s), db_(db), key_(key) {}
  /// Reads the key: false with error() set (WRONGTYPE, corruption, undecodable).
  bool Open();
  const std::string& error() const { return error_; }
  bool exists() const { return exists_; }
  uint64_t size() const { return large_ ? meta_.count : items_opt_ ? items_opt_->size() : 0; }
  /// Element i; false with error() set when its record fails its check.
  bool At(uint64_t i, std::string* out);
  void Set(uint64_t i, std::string_view value);
  void Push(bool left, std::string_view value);
  /// Removes and returns the first (left) or last element; false when empty or on a read error.
  bool Pop(bool left, std::string* out);
  /// Inserts `value` so that it becomes element i (i == size(): appended).
  void Insert(uint64_t i, std::string_view value);
  /// Removes element i.
  void Erase(uint64_t i);
  /// Keeps elements [from, to] (inclusive) and drops the rest; from > to empties the list.
  void Keep(uint64_t from, uint64_t to);
  /// Replaces elements from index i on with `rest` (LREM): the list's length becomes i + rest.size().
  void ReplaceFrom(uint64_t i, const std::vector<std::string>& rest);
  /// Names the list changed to WATCH and CLIENT TRACKING though it stays as it was (store::Txn::
  /// Touch): Redis's LTRIM signals its key whatever it trims.
  void Touch() { txn_.Touch(db_, key_); }
  /// Writes the changes (keeping the key's expiry); an emptied list deletes the key.
  void Commit();
  bool changed() const { return changed_; }
  bool deleted() const { return deleted_; }

 private:
  bool Get(uint64_t pos, std::string* out);
  // A failed read of an element: error_ says so (a missing one is corruption); returns false.
  bool ElementFailed(const store::Status& s);
  void Put(uint64_t pos, std::string_view value);
  void Drop(uint64_t pos);

  store::Txn& txn_;
  ServerState& server_;
  uint32_t db_;
  std::string_view key_;
  std::string error_;
  bool exists_ = false;
  bool large_ = false;
  bool changed_ = false;
  bool deleted_ = false;
  uint64_t inc_ = 0;
  list::Meta meta_;
  // Stored whole: the elements. Its constructor allocates (libstdc++): made on the first use, so
  // an edit of a large list allocates nothing for it.
  std::optional<std::deque<std::string>> items_opt_;
  std::deque<std::string>& items() { return items_opt_ ? *items_opt_ : items_opt_.emplace(); }
};

}  // namespace keg::server
