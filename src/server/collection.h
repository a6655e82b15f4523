// Hashes and sets as the commands see them, whichever way they are stored (docs/types.md): whole
// (one record: server/small_collection.h's encoding) while small, per element (a head record and
// one record per field or member, through store::Txn and store::Store's element calls) once past
// the thresholds. Reads go through CollectionRead, writes through CollectionEdit inside the
// command's kRun op; both hide which way the collection is stored.
// Thread: CollectionRead, the handler's (an I/O thread, or the writer inside a script);
// CollectionEdit and WriteCollection, the writer role's (inside a kRun op).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "server/small_collection.h"
#include "store/format.h"
#include "store/store.h"

namespace keg::server {

class Ctx;
struct ServerState;

/// One entry: a set's member (value empty) or a hash's field and value.
struct Entry {
  std::string_view member;
  std::string_view value;
};

/// Entries per element of the whole encoding: a hash's field and value, a sorted set's member and
/// score (8 bytes), a set's member.
inline size_t StrideOf(uint8_t type) {
  return type == store::format::kTypeHash || type == store::format::kTypeZset ? 2 : 1;
}

/// Whether a collection of `type` with `count` entries, whose whole encoding takes `bytes`, is
/// stored per element: past the type's entry threshold, or past that many entries of the value
/// threshold in bytes; an intset never is (it is compact, as in Redis).
bool StoredPerElement(ServerState& s, uint8_t type, size_t count, size_t bytes, bool intset);

/// For a write command that changes nothing when its `members` are all present in the collection
/// of `type` at `key` (present: SADD) or all absent from it, an absent key included (!present:
/// SREM, HDEL): whether that holds in the store now, read as a read command would read it at
/// this point (Ctx::may_answer_from_read), all members at one moment. When true the command
/// answers without queuing a write: it takes effect at that read, and as in Redis a write that
/// changes nothing writes no record, sends no notification and touches no WATCH. False whenever
/// it cannot tell (something of the connection's pending, EXEC, a script, another type, a read
/// error): the command then takes the write path, which has the reply.
bool MembersUnchanged(Ctx& c, uint8_t type, std::string_view key, std::span<const std::string_view> members,
                      bool present);

/// For a write command that changes nothing when `key` is absent (LPOP, ZPOPMIN on a missing
/// key): whether it is absent in the store now, read as MembersUnchanged reads (its conditions).
/// When true the command answers without queuing a write.
bool KeyAbsentNow(Ctx& c, std::string_view key);

/// DEBUG READ-GAP: sleeps the configured microseconds (tests; one relaxed load otherwise). Called
/// between a large collection's head read and its element reads.
void ReadGap(Ctx& c);

/// A collection read by a read command: Open, then Size / Find / All.
class CollectionRead {
 public:
  explicit CollectionRead(Ctx& c) : c_(c) {}
  /// Reads `key` (Ctx::Lookup, so WRONGTYPE for another type): false when the reply is written
  /// already — absent() for a missing key, the read error otherwise.
  bool Open(std::string_view key, const std::function<void()>& absent);
  /// The same for a record the handler read already (its type checked): false when the reply is
  /// written (an undecodable value).
  bool Adopt(store::ValueView record);
  /// Adopt without a reply: false when the record does not decode (DumpValue).
  bool Take(store::ValueView record);
  bool large() const { return head_.kind == store::format::kKindHead; }
  uint8_t type() const { return head_.type; }
  const store::ValueView& record() const { return head_; }
  /// The whole encoding's flags (kConverted); large collections are converted.
  uint8_t flags() const {
    return large() ? coll::kConverted : head_.value.empty() ? 0 : static_cast<uint8_t>(head_.value[0]);
  }
  /// The number of entries (fields, members).
  uint64_t Size();
  /// HLEN, SCARD: Open and Size with the head and a large collection's count read at one moment
  /// (a group landing between the two reads — MULTI / DEL h / HSET h ... / EXEC — counted a
  /// collection it had dropped: 0). False when the reply is written already (`absent`, an error).
  bool CountTogether(std::string_view key, const std::function<void()>& absent, uint64_t* count);
  /// Finds `member`: true with *value (a hash field's) when present. False when absent, and also
  /// on a read error: then failed() is true and the handler must reply ReplyError().
  bool Find(std::string_view member, std::string_view* value);
  /// Instead of Open and Find: reads `key` and finds each of `members` as of one moment (HMGET,
  /// SMISMEMBER: a large collection's head and elements read together), out[i] (the caller sizes
  /// `out` as `members`) being members[i]'s value when present. False when the reply is written
  /// already: absent() for a missing key, the error otherwise.
  bool FindTogether(std::string_view key, std::span<const std::string_view> members, const std::function<void()>& absent,
                    std::span<std::optional<std::string_view>> out);
  /// Every entry (stored whole: in its order; per element: in no particular order). False on a
  /// read error (see Find).
  bool All(std::vector<Entry>* out);
  /// Instead of Open: reads `key` and runs `reads` (All, or the store's RandomElement /
  /// ScanElements of record()'s incarnation) as of one moment — a large collection's head and
  /// elements read apart let a group land between them (MULTI / DEL h / HSET h ... / EXEC), and
  /// HGETALL answered {} for a hash that existed all along. `reads` runs only for a found,
  /// decodable record, may run more than once, and must only read (errors: into failed()). False
  /// when the reply is written already: absent() for a missing key, WRONGTYPE, or a read error
  /// (including `reads`' own).
  bool OpenWith(std::string_view key, const std::function<void()>& absent,
                store::FunctionRef<void()> reads);
  bool failed() const { return !error_.ok(); }
  const store::Status& error() const { return error_; }
  void ReplyError();

 private:
  bool Decodable() const;  // the whole encoding's count is whole entries
  // Reads `key`'s record into head_: WRONGTYPE when the running command's type is another.
  store::Status GetHead(std::string_view key);
  // Counts the read of `key` (status `s`); when it found nothing to read, replies absent() or the
  // read's error and returns false.
  bool Accounted(store::Status s, std::string_view key, const std::function<void()>& absent);

  Ctx& c_;
  store::ValueView head_;
  coll::View whole_;  // decoded by All (point reads scan the encoding in place)
  std::vector<store::ValueView> keep_;
  std::vector<std::shared_ptr<const void>> pins_;
  store::Status error_;
};

/// Reads `key` and writes Redis's DUMP payload of its value (any type, whichever way stored) into
/// *payload and its expiry (0: none) into *expire_at_ms, the head and a large collection's elements
/// read as of one moment (DUMP, MIGRATE). 1: found; 0: missing; -1: the reply (an error) is
/// written.
int DumpKey(Ctx& c, std::string_view key, std::string* payload, int64_t* expire_at_ms);

/// Writes `items` (entries of StrideOf(type) strings each) as `key`'s new value of `type`,
/// replacing whatever it holds: stored whole (with `flags`, settled as the thresholds say) or per
/// element. keep_ttl keeps the key's expiry; otherwise the value gets `expire_at_ms` (0: none).
/// An empty `items` deletes the key. Returns whether it wrote.
bool WriteCollection(store::Txn& txn, ServerState& s, uint32_t db, std::string_view key, uint8_t type,
                     uint8_t flags, std::span<const std::string_view> items, bool keep_ttl,
                     int64_t expire_at_ms = 0);

/// Writes `key`'s record of `type` and `kind` (whole, or a large collection's head) in the group,
/// at this place. keep_ttl keeps the key's expiry; otherwise it gets `expire_at_ms` (0: none).
void PutRecord(store::Txn& txn, uint32_t db, std::string_view key, std::string value, uint8_t type,
               uint8_t kind, bool keep_ttl, int64_t expire_at_ms);
/// Deletes `key` in the group, at this place.
void DeleteKey(store::Txn& txn, uint32_t db, std::string_view key);
/// Reads `key` for a change to its value of `type`: 1 found (*v), 0 absent, -1 with *error set
/// (the reply: WRONGTYPE, or the read's corruption).
int ReadForEdit(store::Txn& txn, uint32_t db, std::string_view key, uint8_t type, store::ValueView* v,
                std::string* error);

/// A hash or set changed by a write command, inside its kRun op: Open, edit, Commit.
class CollectionEdit {
 public:
  CollectionEdit(store::Txn& txn, ServerState& s, uint32_t db, std::string_view key, uint8_t type)
      : txn_(txn), server_(s), db_(db), key_(key), type_(type) {}
  /// Reads the key: false with error() set (the reply text: WRONGTYPE, corruption, undecodable).
  bool Open();
  /// Open from `v`, the key's value of this edit's type (the caller checked it) as the caller read
  /// it through the same Txn with nothing written since (a pipelined HSET or SADD of a large
  /// collection reads its head once, not twice).
  bool OpenFrom(const store::ValueView& v);
  const std::string& error() const { return error_; }
  bool exists() const { return exists_; }
  bool large() const { return large_; }
  size_t size();
  /// A hash field's value: true with *value (valid until the next change) when present.
  bool Get(std::string_view member, std::string* value);
  bool Has(std::string_view member);
  /// Sets `member` (a hash field: to `value`); returns whether it is new.
  bool Put(std::string_view member, std::string_view value = {});
  /// Removes `member`; returns whether it was there.
  bool Remove(std::string_view member);
  /// Every entry; fn must not change the collection. Not OK when an element's record fails its
  /// check (that element is skipped: see Txn::ForEachElement).
  store::Status ForEach(const std::function<void(std::string_view member, std::string_view value)>& fn);
  /// Up to `n` distinct members picked at random (SPOP): a few of a large collection from its
  /// index (O(n)), else by a walk.
  std::vector<std::string> RandomMembers(size_t n);
  /// Writes the changes: a whole collection as one record (or per element once past the
  /// thresholds), keeping the key's expiry; an emptied collection deletes the key. Large
  /// collections were written element by element already.
  void Commit();
  /// After Commit: the key went (emptied).
  bool deleted() const { return deleted_; }
  bool changed() const { return changed_; }

 private:
  long FindWhole(std::string_view member);  // index of the entry in items_, or -1
  void IndexWhole();

  store::Txn& txn_;
  ServerState& server_;
  uint32_t db_;
  std::string_view key_;
  uint8_t type_;
  std::string error_;
  bool exists_ = false;
  bool large_ = false;
  bool changed_ = false;
  bool deleted_ = false;
  uint64_t inc_ = 0;
  // Stored whole: the entries, owned (StrideOf(type_) strings each), and an index past a few.
  uint8_t flags_ = 0;
  std::vector<std::string> items_;
  std::unordered_map<std::string_view, size_t> index_;
  bool indexed_ = false;
};

/// Queues the change of the collection of `type` at the command's key (argument 1) as one kRun op
/// at the command's place: `change` edits it through a CollectionEdit and returns false to leave it
/// as it is. `R` is the command's shared result: res->error gets the reply text of a read error
/// (WRONGTYPE, corruption), res->deleted whether the change emptied the key.
template <class R>
void UpdateCollection(Ctx& c, uint8_t type, std::shared_ptr<R> res, std::function<bool(CollectionEdit&, R&)> change);

}  // namespace keg::server

#include "server/collection_inl.h"  // IWYU pragma: keep
