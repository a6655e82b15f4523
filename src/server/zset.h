// Sorted sets as the commands see them (docs/types.md, "Sorted sets"), whichever way they are
// stored: whole (one record: server/small_collection.h's encoding, member and 8-byte score
// alternating, in order) while within zset-max-listpack-entries / -value; per element once past
// them: a head naming an incarnation, one element record per member (value: the score,
// store::format::EncodeScore), and the store's ordered index over them (store::OrderedView).
//
// ZsetSeq is the order a command reads: the applied order (an OrderedView), minus the members
// the group being built changed, plus their new state (`added`) — or, for a whole sorted set,
// just `added`. Ranks, bounds and ranges are O(log n + changes + m).
//
// Thread: ReadZset, the handler's (an I/O thread, or the writer inside a script); ZsetEdit and
// WriteZset, the writer role's (inside a kRun op).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "resp/reply_buffer.h"
#include "store/store.h"

namespace keg::server {

class Ctx;
struct ServerState;
struct BlockedPop;
struct ServedPop;
struct PropagatedCommand;

namespace zset {

struct Item {
  double score = 0;
  std::string_view member;
};

/// Redis's order: by score, then member bytes.
inline bool Less(double as, std::string_view am, double bs, std::string_view bm) {
  return as != bs ? as < bs : am < bm;
}

/// A prefix of the order, as a predicate on (score, member): the items before a range's start or
/// at most its end.
struct Before {
  enum Kind : uint8_t {
    kScoreBelow,   ///< score < score (or <= with exclusive: ZRANGEBYSCORE's "(min")
    kScoreAtMost,  ///< score <= score (or < with exclusive)
    kLexBelow,     ///< member < member (or <=); inf -1: nothing, +1: everything
    kLexAtMost,    ///< member <= member (or <)
    kKey,          ///< (score, member) orders before (this.score, this.member): a rank
  };
  Kind kind = kKey;
  double score = 0;
  bool exclusive = false;
  std::string_view member;
  int inf = 0;

  template <class MemberFn>
  bool operator()(double s, const MemberFn& member_of) const {
    switch (kind) {
      case kScoreBelow: return exclusive ? s <= score : s < score;
      case kScoreAtMost: return exclusive ? s < score : s <= score;
      case kLexBelow:
        if (inf != 0) return inf > 0;
        return exclusive ? member_of() <= member : member_of() < member;
      case kLexAtMost:
        if (inf != 0) return inf > 0;
        return exclusive ? member_of() < member : member_of() <= member;
      case kKey: return s != score ? s < score : member_of() < member;
    }
    return false;
  }
};

/// A score range (ZRANGEBYSCORE's min max): false when either is not a float.
bool ParseScoreRange(std::string_view min, std::string_view max, Before* lo, Before* hi);
/// A lex range ("[a", "(a", "-", "+"): false when either is not valid.
bool ParseLexRange(std::string_view min, std::string_view max, Before* lo, Before* hi);

/// A write group's changes to one large sorted set, against its committed order (which does not
/// change while the group is built): the members it removed from that order and the ones it holds
/// now. Kept across the group's commands (ZsetSeq::AddGroupChanges), each folding in only the
/// writes since the last: a pipeline of N pops on one sorted set cost O(N^2) order searches when
/// every command replayed all the group's writes before it (ZPOPMIN -P 16 on 860,000 members:
/// 21,000 pops/s).
struct GroupChanges {
  struct Added {
    double score;
    std::string_view member;
    uint64_t ip;  // committed items ordered before it
  };
  std::vector<uint64_t> removed;  // committed positions of the members the group wrote, sorted
  std::vector<Added> added;       // the group's live members, in order
  std::unordered_map<std::string_view, double> added_scores;
  std::unordered_set<std::string_view> changed;  // members the group wrote (committed lookups stale)
  // The members' bytes (the views above point here). Made on the first use: a deque's constructor
  // allocates (libstdc++), and most reads add none.
  std::optional<std::deque<std::string>> arena;
  store::GroupCursor cursor;  // how far the group's records are folded in

  /// Folds in one record: `member` now holds `value` (an encoded score; null: deleted). `c`: the
  /// committed order (null: none).
  void Apply(const store::OrderedView* c, std::string_view member, const std::string_view* value);
  /// Adds an item of a whole sorted set (no committed order; Sort() after the last).
  void AddWhole(double score, std::string_view member);
  void SortWhole();
};

}  // namespace zset

/// The order of one sorted set as a command reads it (see the file comment). Valid inside the
/// function it is lent to (ReadZset, ZsetEdit::WithSeq).
class ZsetSeq {
 public:
  ZsetSeq() = default;
  ZsetSeq(const ZsetSeq&) = delete;  // g_ may point at own_
  ZsetSeq& operator=(const ZsetSeq&) = delete;

  uint64_t size() const { return committed_size() - g_->removed.size() + g_->added.size(); }
  /// How many items `before` holds for (a prefix of the order).
  uint64_t Rank(const zset::Before& before) const;
  /// Calls fn for the items at ranks [from, to) in order while it returns true.
  void Range(uint64_t from, uint64_t to, store::FunctionRef<bool(const zset::Item&)> fn) const;
  /// The score of `member`: false when absent.
  bool Score(std::string_view member, double* score) const;
  /// The first failure of a record read (then a member read as empty): the command's error.
  store::Status error() const;

  // Building (zset.cc).
  void SetCommitted(const store::OrderedView* c) { c_ = c; }
  /// A whole sorted set's items (any order: sorted here); the views must outlive the sequence.
  void SetWhole(std::vector<zset::Item> items);
  /// The group's changes to large sorted set `inc` (Txn::GroupElementsFrom), against the
  /// committed order (SetCommitted first). Thread: the writer role's; the changes are kept per
  /// thread under the group's epoch, and the views stay valid until the group's next write.
  void AddGroupChanges(store::Txn& txn, uint64_t inc);
  /// The changes to read through, as AddGroupChanges sets them (tests); `g` must outlive the
  /// sequence.
  void SetChanges(const zset::GroupChanges* g) { g_ = g; }

 private:
  using Added = zset::GroupChanges::Added;
  uint64_t committed_size() const { return c_ != nullptr ? c_->Size() : 0; }
  // The place of rank r: the committed position p, the next added index j, removed index k.
  void Locate(uint64_t r, uint64_t* p, size_t* j, size_t* k) const;

  const store::OrderedView* c_ = nullptr;
  zset::GroupChanges own_;                  // a whole sorted set's items, or none
  const zset::GroupChanges* g_ = &own_;     // own_, or the group's kept changes
};

/// Reads the sorted set at `key` (WRONGTYPE for another type) and runs work(seq) on one
/// consistent state of it; work may run more than once (a group landed meanwhile) and must only
/// collect. False when the reply is written already: absent() for a missing key, the error
/// otherwise.
bool ReadZset(Ctx& c, std::string_view key, store::FunctionRef<void()> absent,
              store::FunctionRef<void(const ZsetSeq&)> work);

/// The scores of the `count` members named by args[from ...] in the sorted set at args[1]
/// (nullopt: an absent member, or every one when the key is absent): ZMSCORE, GEOPOS, GEOHASH,
/// GEODIST. False when the reply is written already (WRONGTYPE, a read error).
bool ReadScores(Ctx& c, size_t from, size_t count, std::vector<std::optional<double>>* scores);

/// Parses a score as Redis's getDoubleFromObject: strtod over the whole text, no leading space, no
/// NaN, no overflow.
bool ParseScore(std::string_view text, double* out);

/// ZADD's options (ZaddPairs).
enum ZaddFlag : uint32_t { kZaddNx = 1, kZaddXx = 2, kZaddGt = 4, kZaddLt = 8, kZaddCh = 16, kZaddIncr = 32 };
/// ZADD of (member, score) pairs with `flags` (checked: no NX with XX ...) to the key args[1]: its
/// op, its events (zadd, zincr), its reply, and the clients blocked on the key served (GEOADD
/// adds its points through it). `propagate_as`: what replicas get instead of the arguments
/// (GEOADD's ZADD, as Redis's), empty for the arguments.
void ZaddPairs(Ctx& c, uint32_t flags, std::vector<std::pair<std::string, double>> pairs,
               std::span<const std::string_view> propagate_as = {});

/// Whether a sorted set of `count` members, the longest `max_member` bytes, goes past
/// zset-max-listpack-entries / -value (then it is stored per element, and reports skiplist).
bool ZsetPastThresholds(ServerState& s, size_t count, size_t max_member);

/// Writes `items` as `key`'s new sorted set (whole or per element by the thresholds), replacing
/// whatever it holds; empty deletes the key. keep_ttl keeps its expiry, else it gets
/// `expire_at_ms` (0: none).
void WriteZset(store::Txn& txn, ServerState& s, uint32_t db, std::string_view key,
               std::vector<std::pair<std::string, double>> items, bool keep_ttl, int64_t expire_at_ms = 0);
/// The same from the generic entries (member, 8-byte score) of a whole encoding or a copy.
void WriteZsetEntries(store::Txn& txn, ServerState& s, uint32_t db, std::string_view key,
                      std::span<const std::string_view> items, bool keep_ttl, int64_t expire_at_ms);

/// A sorted set changed by a write command inside its kRun op: Open, edit, Commit.
class ZsetEdit {
 public:
  ZsetEdit(store::Txn& txn, ServerState& s, uint32_t db, std::string_view key)
      : txn_(txn), server_(s), db_(db), key_(key) {}
  /// Reads the key: false with error() set (WRONGTYPE, corruption, undecodable).
  bool Open();
  const std::string& error() const { return error_; }
  bool exists() const { return exists_; }
  uint64_t size();
  bool Score(std::string_view member, double* score);
  /// Sets member's score; returns whether it is new.
  bool Put(std::string_view member, double score);
  /// Put of a member Score just looked up (`exists`: what it returned), without a second lookup.
  void PutKnown(std::string_view member, double score, bool exists);
  bool Remove(std::string_view member);
  /// Lends fn the current order (the group's changes included).
  void WithSeq(store::FunctionRef<void(const ZsetSeq&)> fn);
  /// Writes the changes; an emptied sorted set deletes the key.
  void Commit();
  bool changed() const { return changed_; }
  bool deleted() const { return deleted_; }

 private:
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
  std::unordered_map<std::string, double> whole_;  // stored whole: member -> score
};

/// BZPOPMIN / BZPOPMAX / BZMPOP's pop (blocking.h's TryBlockedPop for w.zset).
std::function<void(resp::ReplyBuffer&)> TryBlockedZpop(store::Txn& txn, ServerState& s,
                                                       const BlockedPop& w, const std::string* only,
                                                       std::function<void()>* events,
                                                       PropagatedCommand* prop = nullptr,
                                                       bool* other_type = nullptr);

/// The whole encoding's entries of a sorted set read for DUMP / DEBUG DIGEST: (member, score),
/// in order. False with *error on a read error.
bool ZsetItems(Ctx& c, const store::ValueView& record, std::vector<std::pair<std::string, double>>* out,
               store::Status* error);

}  // namespace keg::server
