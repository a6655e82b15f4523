#include "server/zset.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cctype>

#include "server/collection.h"
#include "server/collection_commands.h"
#include "server/command.h"
#include "server/small_collection.h"
#include "server/state.h"
#include "store/format.h"

namespace keg::server {

using store::format::kKindHead;
using store::format::kKindWhole;
constexpr uint8_t kZset = store::format::kTypeZset;

namespace {

// A plain decimal integer of at most 15 digits ("-" allowed, leading zeros too): converted
// exactly, as strtod would, without its cost (the common score or bound: ZADD 5, ZRANGEBYSCORE 1 9).
bool SmallInteger(std::string_view text, double* out) {
  const bool negative = !text.empty() && text[0] == '-';
  const std::string_view digits = negative ? text.substr(1) : text;
  if (digits.empty() || digits.size() > 15) return false;
  int64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  const auto d = static_cast<double>(v);  // exact: below 2^53
  *out = negative ? -d : d;               // "-0" is -0.0, as strtod gives
  return true;
}

}  // namespace

bool ParseScore(std::string_view text, double* out) {
  if (SmallInteger(text, out)) return true;
  if (text.empty() || text.size() > 5120 || std::isspace(static_cast<unsigned char>(text[0])) != 0) return false;
  const std::string buf(text);
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(buf.c_str(), &end);
  if (end != buf.c_str() + buf.size() || std::isnan(v)) return false;
  if (errno == ERANGE && (std::isinf(v) || v == 0)) return false;
  *out = v;
  return true;
}

namespace zset {

namespace {

// Redis's zslParseRange item: "(" exclusive, else a float (inf, -inf included; NaN refused).
// Redis reads it with strtod and only checks that the end pointer is at a NUL, so as there: the
// text ends at a NUL byte, leading white space is skipped, and "" (or "(") is 0.
bool ParseScoreItem(std::string_view text, double* v, bool* exclusive) {
  text = text.substr(0, text.find('\0'));
  *exclusive = !text.empty() && text[0] == '(';
  if (*exclusive) text.remove_prefix(1);
  if (SmallInteger(text, v)) return true;
  const std::string buf(text);
  char* end = nullptr;
  *v = std::strtod(buf.c_str(), &end);
  return *end == '\0' && !std::isnan(*v);
}

// Redis's zslParseLexRangeItem: "[x" inclusive, "(x" exclusive, "-" and "+" the ends.
bool ParseLexItem(std::string_view text, std::string_view* v, bool* exclusive, int* inf) {
  *inf = 0;
  *exclusive = false;
  if (text.empty()) return false;
  switch (text[0]) {
    case '+':
      if (text.size() != 1) return false;
      *inf = 1;
      return true;
    case '-':
      if (text.size() != 1) return false;
      *inf = -1;
      return true;
    case '(':
      *exclusive = true;
      *v = text.substr(1);
      return true;
    case '[':
      *v = text.substr(1);
      return true;
    default: return false;
  }
}

}  // namespace

bool ParseScoreRange(std::string_view min, std::string_view max, Before* lo, Before* hi) {
  lo->kind = Before::kScoreBelow;
  hi->kind = Before::kScoreAtMost;
  return ParseScoreItem(min, &lo->score, &lo->exclusive) && ParseScoreItem(max, &hi->score, &hi->exclusive);
}

bool ParseLexRange(std::string_view min, std::string_view max, Before* lo, Before* hi) {
  lo->kind = Before::kLexBelow;
  hi->kind = Before::kLexAtMost;
  if (!ParseLexItem(min, &lo->member, &lo->exclusive, &lo->inf) ||
      !ParseLexItem(max, &hi->member, &hi->exclusive, &hi->inf)) {
    return false;
  }
  // "-" as a max holds nothing; "+" as a min is past everything.
  return true;
}

}  // namespace zset

// ---- GroupChanges -------------------------------------------------------------------------------

namespace zset {

namespace {

bool AddedBefore(const GroupChanges::Added& a, double score, std::string_view member) {
  return Less(a.score, a.member, score, member);
}

}  // namespace

void GroupChanges::Apply(const store::OrderedView* c, std::string_view m, const std::string_view* value) {
  std::string_view member;
  if (auto it = changed.find(m); it != changed.end()) {
    member = *it;
    // Its state in the group so far goes: the new record replaces it.
    if (auto a = added_scores.find(member); a != added_scores.end()) {
      const double old = a->second;
      auto at = std::lower_bound(added.begin(), added.end(), std::make_pair(old, member),
                                 [](const Added& x, const std::pair<double, std::string_view>& k) {
                                   return AddedBefore(x, k.first, k.second);
                                 });
      if (at != added.end() && at->member == member) added.erase(at);
      added_scores.erase(a);
    }
  } else {
    member = (arena ? *arena : arena.emplace()).emplace_back(m);
    changed.insert(member);
    double old = 0;
    uint64_t pos = 0;
    if (c != nullptr && c->Find(member, &old, &pos)) removed.insert(std::upper_bound(removed.begin(), removed.end(), pos), pos);
  }
  double score = 0;
  if (value == nullptr || !store::format::DecodeScore(*value, &score)) return;
  uint64_t ip = 0;
  if (c != nullptr && c->Size() > 0) {
    Before key;
    key.kind = Before::kKey;
    key.score = score;
    key.member = member;
    ip = c->PartitionPoint([&](const store::OrderedView::Probe& probe) {
      return key(probe.score(), [&] { return probe.member(); });
    });
  }
  auto at = std::lower_bound(added.begin(), added.end(), std::make_pair(score, member),
                             [](const Added& x, const std::pair<double, std::string_view>& k) {
                               return AddedBefore(x, k.first, k.second);
                             });
  added.insert(at, Added{score, member, ip});
  added_scores[member] = score;
}

void GroupChanges::AddWhole(double score, std::string_view member) {
  added.push_back({score, member, 0});
  added_scores[member] = score;
}

void GroupChanges::SortWhole() {
  std::sort(added.begin(), added.end(), [](const Added& a, const Added& b) { return Less(a.score, a.member, b.score, b.member); });
}

}  // namespace zset

// ---- ZsetSeq ------------------------------------------------------------------------------------

uint64_t ZsetSeq::Rank(const zset::Before& before) const {
  uint64_t p = 0;
  if (c_ != nullptr && c_->Size() > 0 &&
      (before.kind == zset::Before::kScoreBelow || before.kind == zset::Before::kScoreAtMost)) {
    // A bound on scores alone: kScoreBelow counts s < score (s <= score when exclusive, "(min"),
    // kScoreAtMost s <= score (s < score when exclusive).
    const bool inclusive = before.kind == zset::Before::kScoreBelow ? before.exclusive : !before.exclusive;
    p = c_->CountBelow(before.score, inclusive);
  } else if (c_ != nullptr && c_->Size() > 0) {
    p = c_->PartitionPoint([&](const store::OrderedView::Probe& probe) {
      return before(probe.score(), [&] { return probe.member(); });
    });
  }
  const auto removed_before =
      static_cast<uint64_t>(std::lower_bound(g_->removed.begin(), g_->removed.end(), p) - g_->removed.begin());
  const auto added_before = static_cast<uint64_t>(
      std::partition_point(g_->added.begin(), g_->added.end(),
                           [&](const Added& a) { return before(a.score, [&] { return a.member; }); }) -
      g_->added.begin());
  return p - removed_before + added_before;
}

void ZsetSeq::Locate(uint64_t r, uint64_t* p_out, size_t* j_out, size_t* k_out) const {
  const uint64_t n = committed_size();
  uint64_t p = 0;
  size_t j = 0;
  size_t k = 0;
  uint64_t eff = 0;
  for (;;) {
    uint64_t e = n;
    if (j < g_->added.size()) e = std::min(e, g_->added[j].ip);
    if (k < g_->removed.size()) e = std::min(e, g_->removed[k]);
    if (e > p && eff + (e - p) > r) {  // r falls in the committed run [p, e)
      p += r - eff;
      break;
    }
    eff += e - p;
    p = e;
    bool found = false;
    while (j < g_->added.size() && g_->added[j].ip == p) {
      if (eff == r) {
        found = true;
        break;
      }
      ++eff;
      ++j;
    }
    if (found) break;
    if (k < g_->removed.size() && g_->removed[k] == p) {
      // A run of removed positions p, p + 1, ... (a group's pops from one end) is passed in
      // O(log k), not one at a time: removed is sorted and distinct, so removed[i] - i never
      // decreases and the run is where it stays p - k. It stops at the next added item's place.
      const auto from = g_->removed.begin() + static_cast<std::ptrdiff_t>(k);
      const auto run_end = std::partition_point(from, g_->removed.end(), [&](const uint64_t& at) {
        return at - static_cast<uint64_t>(&at - g_->removed.data()) == p - k;
      });
      uint64_t skip = static_cast<uint64_t>(run_end - from);
      if (j < g_->added.size()) skip = std::min(skip, g_->added[j].ip - p);  // (ip > p here)
      p += skip;
      k += skip;
      continue;
    }
    if (p >= n && j >= g_->added.size()) break;  // past the end
  }
  *p_out = p;
  *j_out = j;
  *k_out = k;
}

void ZsetSeq::Range(uint64_t from, uint64_t to, store::FunctionRef<bool(const zset::Item&)> fn) const {
  to = std::min(to, size());
  if (from >= to) return;
  uint64_t need = to - from;
  uint64_t p = 0;
  size_t j = 0;
  size_t k = 0;
  Locate(from, &p, &j, &k);
  const uint64_t n = committed_size();
  while (need > 0) {
    if (j < g_->added.size() && g_->added[j].ip <= p) {
      --need;
      if (!fn(zset::Item{g_->added[j].score, g_->added[j].member})) return;
      ++j;
      continue;
    }
    if (p >= n) break;
    if (k < g_->removed.size() && g_->removed[k] == p) {
      ++p;
      ++k;
      continue;
    }
    uint64_t stop = std::min(n, p + need);
    if (j < g_->added.size()) stop = std::min(stop, g_->added[j].ip);
    if (k < g_->removed.size()) stop = std::min(stop, g_->removed[k]);
    bool go = true;
    c_->ForRange(p, stop, [&](const store::OrderedView::Item& it) {
      go = fn(zset::Item{it.score, it.member});
      return go;
    });
    if (!go) return;
    need -= stop - p;
    p = stop;
  }
}

bool ZsetSeq::Score(std::string_view member, double* score) const {
  if (auto it = g_->added_scores.find(member); it != g_->added_scores.end()) {
    *score = it->second;
    return true;
  }
  if (c_ == nullptr || g_->changed.count(member) != 0) return false;
  uint64_t pos = 0;
  return c_->Find(member, score, &pos);
}

store::Status ZsetSeq::error() const { return c_ != nullptr ? c_->error() : store::Status::OK(); }

void ZsetSeq::SetWhole(std::vector<zset::Item> items) {
  for (const zset::Item& it : items) own_.AddWhole(it.score, it.member);
  own_.SortWhole();
  g_ = &own_;
}

void ZsetSeq::AddGroupChanges(store::Txn& txn, uint64_t inc) {
  // Per writer thread, the changes of the group being built to each large sorted set its ops
  // read: dropped when the group's epoch moves on.
  struct Kept {
    uint64_t epoch = 0;
    std::unordered_map<uint64_t, std::unique_ptr<zset::GroupChanges>> by_inc;
  };
  thread_local Kept kept;
  const uint64_t epoch = txn.GroupEpoch();
  if (kept.epoch != epoch) {
    kept.by_inc.clear();
    kept.epoch = epoch;
  }
  std::unique_ptr<zset::GroupChanges>& g = kept.by_inc[inc];
  if (!g || !txn.GroupCursorValid(inc, g->cursor)) g = std::make_unique<zset::GroupChanges>();
  txn.GroupElementsFrom(inc, &g->cursor, [&](std::string_view m, const std::string_view* value) {
    g->Apply(c_, m, value);
  });
  g_ = g.get();
  // A record that failed its check while folding in (this command reports it): the next command
  // starts over and meets it again, instead of trusting what was folded without it.
  if (c_ != nullptr && !c_->error().ok()) g->cursor.epoch = ~uint64_t{0};
}

// ---- Reading ------------------------------------------------------------------------------------

namespace {

// A whole encoding's items (member, 8-byte score alternating); false when malformed.
bool DecodeWhole(std::string_view value, std::vector<zset::Item>* out, coll::View* v) {
  if (!coll::Decode(value, v) || v->elements.size() % 2 != 0) return false;
  out->clear();
  out->reserve(v->elements.size() / 2);
  for (size_t i = 0; i < v->elements.size(); i += 2) {
    double score = 0;
    if (!store::format::DecodeScore(v->elements[i + 1], &score)) return false;
    out->push_back({score, v->elements[i]});
  }
  return true;
}

// Lends fn the order of large sorted set `inc`: in a script, the applied order with its group's
// changes; otherwise the store's, as of one group.
void WithLarge(Ctx& c, uint64_t inc, store::FunctionRef<void(const ZsetSeq&)> fn) {
  if (store::Txn* txn = c.script_txn()) {
    txn->ReadOrdered(inc, [&](const store::OrderedView& view) {
      ZsetSeq seq;
      seq.SetCommitted(&view);
      seq.AddGroupChanges(*txn, inc);
      fn(seq);
    });
    return;
  }
  c.server().store->ReadOrdered(inc, [&](const store::OrderedView& view) {
    ZsetSeq seq;
    seq.SetCommitted(&view);
    fn(seq);
  });
}

}  // namespace

bool ReadZset(Ctx& c, std::string_view key, store::FunctionRef<void()> absent,
              store::FunctionRef<void(const ZsetSeq&)> work) {
  store::ValueView head;
  store::Status s;
  store::Status element_error;
  bool undecodable = false;
  c.ReadTogether(2, [&] {
    undecodable = false;
    element_error = store::Status::OK();
    s = c.Get(key, &head);
    if (s.ok() && head.type != kZset) s = store::Status::WrongType();
    if (!s.ok()) return;
    if (head.kind != kKindHead) {
      std::vector<zset::Item> items;
      coll::View v;
      if (!DecodeWhole(head.value, &items, &v)) {
        undecodable = true;
        return;
      }
      ZsetSeq seq;
      seq.SetWhole(std::move(items));
      work(seq);
      return;
    }
    WithLarge(c, store::format::IncarnationOf(head.value), [&](const ZsetSeq& seq) {
      work(seq);
      element_error = seq.error();
    });
  });
  if (!c.AccountRead(s, key)) {
    if (c.read_failed()) {
      c.ReplyReadError();
    } else {
      absent();
    }
    return false;
  }
  if (undecodable) {
    c.out().Error(kUndecodable);
    return false;
  }
  if (!element_error.ok()) {
    c.out().Error(CorruptionError(element_error));
    return false;
  }
  return true;
}

bool ReadScores(Ctx& c, size_t from, size_t count, std::vector<std::optional<double>>* scores) {
  scores->assign(count, std::nullopt);
  bool missing = false;
  const bool found = ReadZset(c, c.arg(1), [&] { missing = true; }, [&](const ZsetSeq& z) {
    scores->assign(count, std::nullopt);  // (a read that runs again starts afresh)
    for (size_t i = 0; i < count; ++i) {
      double s = 0;
      if (z.Score(c.arg(from + i), &s)) (*scores)[i] = s;
    }
  });
  return found || missing;
}

bool ZsetItems(Ctx& c, const store::ValueView& record, std::vector<std::pair<std::string, double>>* out,
               store::Status* error) {
  out->clear();
  auto collect = [&](const ZsetSeq& seq) {
    out->clear();
    seq.Range(0, seq.size(), [&](const zset::Item& it) {
      out->emplace_back(std::string(it.member), it.score);
      return true;
    });
  };
  if (record.kind != kKindHead) {
    std::vector<zset::Item> items;
    coll::View v;
    if (!DecodeWhole(record.value, &items, &v)) {
      *error = store::Status::Corruption("the value's record does not decode");
      return false;
    }
    ZsetSeq seq;
    seq.SetWhole(std::move(items));
    collect(seq);
    return true;
  }
  store::Status s;
  c.ReadTogether(2, [&] {
    WithLarge(c, store::format::IncarnationOf(record.value), [&](const ZsetSeq& seq) {
      collect(seq);
      s = seq.error();
    });
  });
  *error = s;
  return s.ok();
}

// ---- Writing ------------------------------------------------------------------------------------

bool ZsetPastThresholds(ServerState& s, size_t count, size_t max_member) {
  const int64_t entries = s.zset_max_entries.load(std::memory_order_relaxed);
  const int64_t value = s.zset_max_value.load(std::memory_order_relaxed);
  return static_cast<int64_t>(std::min<size_t>(count, INT64_MAX)) > entries ||
         static_cast<int64_t>(std::min<size_t>(max_member, INT64_MAX)) > value;
}

namespace {

std::string HeadValue(uint64_t inc) { return std::string(reinterpret_cast<const char*>(&inc), sizeof(inc)); }

void WriteSorted(store::Txn& txn, ServerState& s, uint32_t db, std::string_view key,
                 std::vector<std::pair<std::string_view, double>>& items, bool converted, bool keep_ttl,
                 int64_t expire_at_ms) {
  if (items.empty()) {
    store::ValueView v;
    if (txn.Get(db, key, &v).ok()) DeleteKey(txn, db, key);
    return;
  }
  size_t longest = 0;
  for (const auto& [m, sc] : items) longest = std::max(longest, m.size());
  if (!converted && !ZsetPastThresholds(s, items.size(), longest)) {
    std::sort(items.begin(), items.end(),
              [](const auto& a, const auto& b) { return zset::Less(a.second, a.first, b.second, b.first); });
    std::vector<std::string> scores;
    scores.reserve(items.size());
    std::vector<std::string_view> flat;
    flat.reserve(items.size() * 2);
    for (const auto& [m, sc] : items) scores.push_back(store::format::EncodeScore(sc));
    for (size_t i = 0; i < items.size(); ++i) {
      flat.push_back(items[i].first);
      flat.push_back(scores[i]);
    }
    PutRecord(txn, db, key, coll::Encode(0, flat), kZset, kKindWhole, keep_ttl, expire_at_ms);
    return;
  }
  // Per element: a new incarnation, its elements, then its head.
  const uint64_t inc = txn.NewIncarnation();
  for (const auto& [m, sc] : items) txn.PutElement(db, key, kZset, inc, m, store::format::EncodeScore(sc));
  PutRecord(txn, db, key, HeadValue(inc), kZset, kKindHead, keep_ttl, expire_at_ms);
}

}  // namespace

void WriteZset(store::Txn& txn, ServerState& s, uint32_t db, std::string_view key,
               std::vector<std::pair<std::string, double>> items, bool keep_ttl, int64_t expire_at_ms) {
  std::vector<std::pair<std::string_view, double>> views;
  views.reserve(items.size());
  for (const auto& [m, sc] : items) views.emplace_back(m, sc);
  WriteSorted(txn, s, db, key, views, false, keep_ttl, expire_at_ms);
}

void WriteZsetEntries(store::Txn& txn, ServerState& s, uint32_t db, std::string_view key,
                      std::span<const std::string_view> items, bool keep_ttl, int64_t expire_at_ms) {
  std::vector<std::pair<std::string_view, double>> views;
  views.reserve(items.size() / 2);
  for (size_t i = 0; i + 1 < items.size(); i += 2) {
    double score = 0;
    if (store::format::DecodeScore(items[i + 1], &score)) views.emplace_back(items[i], score);
  }
  WriteSorted(txn, s, db, key, views, false, keep_ttl, expire_at_ms);
}

// ---- ZsetEdit -----------------------------------------------------------------------------------

bool ZsetEdit::Open() {
  store::ValueView v;
  const int found = ReadForEdit(txn_, db_, key_, kZset, &v, &error_);
  if (found < 0) return false;
  exists_ = found == 1;
  if (!exists_) return true;
  if (v.kind == kKindHead) {
    large_ = true;
    inc_ = store::format::IncarnationOf(v.value);
    return true;
  }
  std::vector<zset::Item> items;
  coll::View view;
  if (!DecodeWhole(v.value, &items, &view)) {
    error_ = std::string(kUndecodable);
    return false;
  }
  for (const zset::Item& it : items) whole_[std::string(it.member)] = it.score;
  return true;
}

uint64_t ZsetEdit::size() { return large_ ? txn_.ElementCount(inc_) : whole_.size(); }

bool ZsetEdit::Score(std::string_view member, double* score) {
  if (!large_) {
    auto it = whole_.find(std::string(member));
    if (it == whole_.end()) return false;
    *score = it->second;
    return true;
  }
  store::ValueView e;
  const store::Status s = txn_.GetElement(inc_, member, &e);
  if (!s.ok()) {
    if (!s.IsNotFound() && error_.empty()) error_ = CorruptionError(s);
    return false;
  }
  if (!store::format::DecodeScore(e.value, score)) {
    if (error_.empty()) error_ = std::string(kUndecodable);
    return false;
  }
  return true;
}

bool ZsetEdit::Put(std::string_view member, double score) {
  changed_ = true;
  if (!large_) {
    auto [it, added] = whole_.try_emplace(std::string(member), score);
    it->second = score;
    return added;
  }
  return txn_.PutElement(db_, key_, kZset, inc_, member, store::format::EncodeScore(score));
}

void ZsetEdit::PutKnown(std::string_view member, double score, bool exists) {
  if (!large_) {
    Put(member, score);
    return;
  }
  changed_ = true;
  txn_.PutKnownElement(db_, key_, kZset, inc_, member, store::format::EncodeScore(score), exists);
}

bool ZsetEdit::Remove(std::string_view member) {
  if (!large_) {
    if (whole_.erase(std::string(member)) == 0) return false;
    changed_ = true;
    return true;
  }
  const bool was = txn_.DeleteElement(db_, key_, kZset, inc_, member);
  changed_ = changed_ || was;
  return was;
}

void ZsetEdit::WithSeq(store::FunctionRef<void(const ZsetSeq&)> fn) {
  if (!large_) {
    std::vector<zset::Item> items;
    items.reserve(whole_.size());
    for (const auto& [m, sc] : whole_) items.push_back({sc, m});
    ZsetSeq seq;
    seq.SetWhole(std::move(items));
    fn(seq);
    return;
  }
  txn_.ReadOrdered(inc_, [&](const store::OrderedView& view) {
    ZsetSeq seq;
    seq.SetCommitted(&view);
    seq.AddGroupChanges(txn_, inc_);
    fn(seq);
    if (const store::Status s = seq.error(); !s.ok() && error_.empty()) error_ = CorruptionError(s);
  });
}

void ZsetEdit::Commit() {
  if (!changed_) return;
  if (large_) {
    if (txn_.ElementCount(inc_) == 0) {
      DeleteKey(txn_, db_, key_);
      deleted_ = true;
    }
    return;
  }
  if (whole_.empty()) {
    if (exists_) DeleteKey(txn_, db_, key_);
    deleted_ = true;
    return;
  }
  std::vector<std::pair<std::string_view, double>> items;
  items.reserve(whole_.size());
  for (const auto& [m, sc] : whole_) items.emplace_back(m, sc);
  WriteSorted(txn_, server_, db_, key_, items, false, /*keep_ttl=*/true, 0);
}

}  // namespace keg::server
