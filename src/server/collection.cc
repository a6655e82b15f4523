#include "server/collection.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>

#include "server/collection_commands.h"
#include "server/command.h"
#include "server/list.h"
#include "server/rdb.h"
#include "server/state.h"
#include "server/zset.h"
#include "store/format.h"

namespace keg::server {
namespace {

using store::format::kKindHead;
using store::format::kKindWhole;
using store::format::kTypeHash;

std::string HeadValue(uint64_t inc) { return std::string(reinterpret_cast<const char*>(&inc), sizeof(inc)); }

// The whole encoding's flags after a change: a hash past its listpack thresholds reports
// hashtable for good; a set is settled by SettleSet (intset order, or converted).
uint8_t HashFlags(ServerState& s, uint8_t flags, std::span<const std::string_view> items) {
  if ((flags & coll::kConverted) != 0) return flags;
  const auto max_entries = static_cast<size_t>(s.hash_max_entries.load(std::memory_order_relaxed));
  const auto max_value = static_cast<size_t>(s.hash_max_value.load(std::memory_order_relaxed));
  bool big = items.size() / 2 > max_entries;
  for (size_t i = 0; i < items.size() && !big; ++i) big = items[i].size() > max_value;
  return big ? flags | coll::kConverted : flags;
}

}  // namespace

void PutRecord(store::Txn& txn, uint32_t db, std::string_view key, std::string value, uint8_t type,
               uint8_t kind, bool keep_ttl, int64_t expire_at_ms) {
  store::WriteBatch::Op op;
  op.kind = store::WriteBatch::Kind::kPut;
  op.db = db;
  op.key.assign(key);
  op.value = std::move(value);
  op.type = type;
  op.record_kind = kind;
  op.keep_ttl = keep_ttl;
  op.expire_at_ms = expire_at_ms;
  store::OpResult r;
  txn.Execute(std::move(op), &r);
}

void DeleteKey(store::Txn& txn, uint32_t db, std::string_view key) {
  store::WriteBatch::Op op;
  op.kind = store::WriteBatch::Kind::kDelete;
  op.db = db;
  op.key.assign(key);
  store::OpResult r;
  txn.Execute(std::move(op), &r);
}

bool StoredPerElement(ServerState& s, uint8_t type, size_t count, size_t bytes, bool intset) {
  if (intset) return false;
  int64_t entries = 0;
  int64_t value = 0;
  if (type == kTypeHash) {
    entries = s.hash_max_entries.load(std::memory_order_relaxed);
    value = s.hash_max_value.load(std::memory_order_relaxed);
  } else {
    entries = s.set_max_entries.load(std::memory_order_relaxed);
    value = s.set_max_value.load(std::memory_order_relaxed);
  }
  const auto max_count = static_cast<uint64_t>(std::max<int64_t>(entries, 0));
  // entries x value x stride, saturated: CONFIG SET accepts any positive int64 for either.
  const uint64_t per_entry = static_cast<uint64_t>(std::clamp<int64_t>(value, 0, 1 << 20)) * StrideOf(type);
  const uint64_t max_bytes =
      per_entry != 0 && max_count > (UINT64_MAX - 16) / per_entry ? UINT64_MAX : max_count * per_entry + 16;
  return count > max_count || bytes > max_bytes;
}

bool KeyAbsentNow(Ctx& c, std::string_view key) {
  if (!c.may_answer_from_read()) return false;
  store::ValueView v;
  return c.server().store->Get(c.db(), key, &v).IsNotFound();
}

bool MembersUnchanged(Ctx& c, uint8_t type, std::string_view key, std::span<const std::string_view> members,
                      bool present) {
  if (!c.may_answer_from_read()) return false;
  const store::Store& st = *c.server().store;
  const uint32_t db = c.db();
  const size_t stride = StrideOf(type);
  bool unchanged = false;
  // The head and the elements as of one moment: a group landing between the reads (DEL of the
  // key, then SADD of another member) would otherwise make this answer for a state never seen.
  st.ReadTogether([&] {
    unchanged = false;
    store::ValueView v;
    const store::Status s = st.Get(db, key, &v);
    if (s.IsNotFound()) {
      unchanged = !present;
      return;
    }
    if (!s.ok() || v.type != type) return;  // the write path has the reply (WRONGTYPE, the error)
    for (std::string_view m : members) {
      bool found = false;
      if (v.kind == kKindHead) {
        store::ValueView e;
        const store::Status es = st.GetElement(store::format::IncarnationOf(v.value), m, &e);
        if (!es.ok() && !es.IsNotFound()) return;
        found = es.ok();
      } else {
        std::string_view value;
        const int f = coll::Find(v.value, stride, m, &value);
        if (f < 0) return;
        found = f > 0;
      }
      if (found != present) return;
    }
    unchanged = true;
  });
  return unchanged;
}

void ReadGap(Ctx& c) {
  const uint32_t us = c.server().read_gap_us.load(std::memory_order_relaxed);
  if (us != 0) std::this_thread::sleep_for(std::chrono::microseconds(us));
}

// ---- CollectionRead ---------------------------------------------------------------------------

bool CollectionRead::Open(std::string_view key, const std::function<void()>& absent) {
  if (!c_.Lookup(key, &head_)) {
    if (c_.read_failed()) {
      c_.ReplyReadError();
    } else {
      absent();
    }
    return false;
  }
  return Adopt(std::move(head_));
}

bool CollectionRead::FindTogether(std::string_view key, std::span<const std::string_view> members,
                                  const std::function<void()>& absent,
                                  std::span<std::optional<std::string_view>> out) {
  // The head and every element as of one moment: a large collection's elements are records of
  // their own, and a group landing between two of their reads (HSET h f1, then HSET h f2) would
  // otherwise give the old f1 with the new f2.
  return OpenWith(key, absent, [&] {
    std::fill(out.begin(), out.end(), std::nullopt);
    if (!large() && members.size() > 4) {  // many members of a whole one: one pass over it
      std::vector<Entry> all;
      if (!All(&all)) return;
      std::unordered_map<std::string_view, std::string_view> whole;
      for (const Entry& e : all) whole.emplace(e.member, e.value);
      for (size_t i = 0; i < members.size(); ++i) {
        if (auto it = whole.find(members[i]); it != whole.end()) out[i] = it->second;
      }
      return;
    }
    for (size_t i = 0; i < members.size(); ++i) {
      std::string_view v;
      if (Find(members[i], &v)) out[i] = v;
      if (failed()) return;
    }
  });
}

bool CollectionRead::CountTogether(std::string_view key, const std::function<void()>& absent,
                                   uint64_t* count) {
  *count = 0;
  // A large one's count read with its head; a whole one's is in the head.
  if (!OpenWith(key, absent, [&] { *count = large() ? Size() : 0; })) return false;
  if (!large()) *count = Size();
  return true;
}

store::Status CollectionRead::GetHead(std::string_view key) {
  store::Status s = c_.Get(key, &head_);
  const Command* cmd = c_.command();
  if (s.ok() && cmd != nullptr && cmd->value_type >= 0 && head_.type != cmd->value_type) {
    s = store::Status::WrongType();
  }
  return s;
}

bool CollectionRead::Accounted(store::Status s, std::string_view key,
                               const std::function<void()>& absent) {
  if (c_.AccountRead(std::move(s), key)) return true;
  if (c_.read_failed()) {
    c_.ReplyReadError();
  } else {
    absent();
  }
  return false;
}

bool CollectionRead::Decodable() const {
  uint64_t count = 0;
  return coll::Count(head_.value, &count) && count % StrideOf(head_.type) == 0;
}

bool CollectionRead::Take(store::ValueView record) {
  head_ = std::move(record);
  return large() || Decodable();
}

bool CollectionRead::Adopt(store::ValueView record) {
  if (Take(std::move(record))) return true;
  c_.Error(kUndecodable);
  return false;
}

bool CollectionRead::OpenWith(std::string_view key, const std::function<void()>& absent,
                              store::FunctionRef<void()> reads) {
  store::Status s;
  c_.ReadTogether(2, [&] {  // reads only here (they may run again); accounting and replies after
    keep_.clear();
    pins_.clear();
    error_ = store::Status::OK();
    s = GetHead(key);
    if (s.ok() && (large() || Decodable())) reads();
  });
  if (!Accounted(std::move(s), key, absent)) return false;
  if (!large() && !Decodable()) {
    c_.Error(kUndecodable);
    return false;
  }
  if (failed()) {
    ReplyError();
    return false;
  }
  return true;
}

uint64_t CollectionRead::Size() {
  if (!large()) {
    uint64_t count = 0;
    coll::Count(head_.value, &count);  // checked by Adopt
    return count / StrideOf(head_.type);
  }
  return c_.ElementCount(store::format::IncarnationOf(head_.value));
}

bool CollectionRead::Find(std::string_view member, std::string_view* value) {
  if (!large()) {
    const int found = coll::Find(head_.value, StrideOf(head_.type), member, value);
    if (found < 0) error_ = store::Status::Corruption("the value's record does not decode");
    return found > 0;
  }
  ReadGap(c_);
  store::ValueView v;
  store::Status s = c_.GetElement(store::format::IncarnationOf(head_.value), member, &v);
  if (s.IsNotFound()) return false;
  if (!s.ok()) {
    error_ = std::move(s);
    return false;
  }
  *value = v.value;
  keep_.push_back(std::move(v));
  return true;
}

bool CollectionRead::All(std::vector<Entry>* out) {
  const size_t stride = StrideOf(head_.type);
  out->clear();
  if (!large()) {
    if (!coll::Decode(head_.value, &whole_) || whole_.elements.size() % stride != 0) {
      error_ = store::Status::Corruption("the value's record does not decode");
      return false;
    }
    out->reserve(whole_.elements.size() / stride);
    for (size_t i = 0; i + stride <= whole_.elements.size(); i += stride) {
      out->push_back({whole_.elements[i], stride == 2 ? whole_.elements[i + 1] : std::string_view()});
    }
    return true;
  }
  ReadGap(c_);
  std::vector<store::ElementView> elements;
  store::Status s = c_.ReadElements(store::format::IncarnationOf(head_.value), &elements, &pins_);
  if (!s.ok()) {
    error_ = std::move(s);
    return false;
  }
  out->reserve(elements.size());
  for (const store::ElementView& e : elements) out->push_back({e.member, e.value});
  return true;
}

void CollectionRead::ReplyError() { c_.Error(CorruptionError(error_)); }

namespace {

// DUMP's payload of `record` into *out: "" or the error's text. Reads only (inside DumpKey's
// ReadTogether, so it may run again), no reply.
std::string DumpValue(Ctx& c, const store::ValueView& record, std::string* out) {
  if (record.type == store::format::kTypeString) {
    *out = rdb::DumpString(record.value);
    return {};
  }
  if (record.type == store::format::kTypeList) {
    if (record.kind != kKindHead) {
      coll::View v;
      if (!coll::Decode(record.value, &v)) return std::string(kUndecodable);
      *out = rdb::DumpList(v.elements);
      return {};
    }
    ReadGap(c);
    std::vector<store::ValueView> views;
    const store::Status s = ListElements(c, store::format::IncarnationOf(record.value), &views);
    if (!s.ok()) return CorruptionError(s);
    std::vector<std::string_view> elements;
    elements.reserve(views.size());
    for (const store::ValueView& v : views) elements.push_back(v.value);
    *out = rdb::DumpList(elements);
    return {};
  }
  if (record.type == store::format::kTypeZset) {
    if (record.kind == kKindHead) ReadGap(c);
    std::vector<std::pair<std::string, double>> items;
    store::Status s;
    if (!ZsetItems(c, record, &items, &s)) return CorruptionError(s);
    *out = rdb::DumpZset(items);
    return {};
  }
  const uint8_t type = record.type;
  CollectionRead coll(c);
  if (!coll.Take(record)) return std::string(kUndecodable);
  std::vector<Entry> entries;
  if (!coll.All(&entries)) return CorruptionError(coll.error());
  std::vector<std::string_view> flat;
  flat.reserve(entries.size() * StrideOf(type));
  for (const Entry& e : entries) {
    flat.push_back(e.member);
    if (type == kTypeHash) flat.push_back(e.value);
  }
  *out = type == kTypeHash ? rdb::DumpHash(flat) : rdb::DumpSet(flat);
  return {};
}

}  // namespace

int DumpKey(Ctx& c, std::string_view key, std::string* payload, int64_t* expire_at_ms) {
  store::ValueView v;
  store::Status s;
  std::string error;
  // The key and (a large collection's) elements as of one moment: a group replacing the key
  // between the two reads made DUMP of a hash that existed all along answer nil.
  c.ReadTogether(2, [&] {
    payload->clear();
    error.clear();
    s = c.Get(key, &v);
    if (s.ok()) error = DumpValue(c, v, payload);
  });
  if (!c.AccountRead(std::move(s), key)) {
    if (!c.read_failed()) return 0;
    c.ReplyReadError();
    return -1;
  }
  if (!error.empty()) {
    c.Error(error);
    return -1;
  }
  *expire_at_ms = v.expire_at_ms;
  return 1;
}

// ---- Writing ------------------------------------------------------------------------------------

bool WriteCollection(store::Txn& txn, ServerState& s, uint32_t db, std::string_view key, uint8_t type,
                     uint8_t flags, std::span<const std::string_view> items, bool keep_ttl,
                     int64_t expire_at_ms) {
  if (type == store::format::kTypeZset) {  // kept in order, by its own thresholds
    WriteZsetEntries(txn, s, db, key, items, keep_ttl, expire_at_ms);
    return true;
  }
  const size_t stride = StrideOf(type);
  if (items.empty()) {
    store::ValueView v;
    if (txn.Get(db, key, &v).ok()) {
      DeleteKey(txn, db, key);
      return true;
    }
    return false;
  }
  bool intset = false;
  std::vector<std::string> settled;  // a set's members in intset order, when it is one
  std::vector<std::string_view> ordered;
  if (type == kTypeHash) {
    flags = HashFlags(s, flags, items);
  } else {
    settled.reserve(items.size());
    for (std::string_view m : items) settled.emplace_back(m.data(), m.size());
    intset = coll::SettleSet(&flags, &settled, static_cast<size_t>(s.set_max_intset_entries.load(std::memory_order_relaxed)));
    if (intset) {
      ordered.assign(settled.begin(), settled.end());
      items = ordered;
    }
  }
  std::string whole = coll::Encode(flags, items);
  if (!StoredPerElement(s, type, items.size() / stride, whole.size(), intset)) {
    PutRecord(txn, db, key, std::move(whole), type, kKindWhole, keep_ttl, expire_at_ms);
    return true;
  }
  // Per element: a new incarnation, its elements, then its head (a group cut short leaves
  // elements no head names, never a head without them).
  const uint64_t inc = txn.NewIncarnation();
  for (size_t i = 0; i + stride <= items.size(); i += stride) {
    txn.PutElement(db, key, type, inc, items[i], stride == 2 ? items[i + 1] : std::string_view());
  }
  PutRecord(txn, db, key, HeadValue(inc), type, kKindHead, keep_ttl, expire_at_ms);
  return true;
}

// ---- CollectionEdit -----------------------------------------------------------------------------

int ReadForEdit(store::Txn& txn, uint32_t db, std::string_view key, uint8_t type, store::ValueView* v,
                std::string* error) {
  const store::Status s = txn.Get(db, key, v);
  if (s.IsNotFound()) return 0;
  if (!s.ok()) {
    *error = CorruptionError(s);
    return -1;
  }
  if (v->type != type) {
    *error = err::kWrongType;
    return -1;
  }
  return 1;
}

bool CollectionEdit::Open() {
  store::ValueView v;
  const int found = ReadForEdit(txn_, db_, key_, type_, &v, &error_);
  if (found <= 0) return found == 0;
  return OpenFrom(v);
}

bool CollectionEdit::OpenFrom(const store::ValueView& v) {
  exists_ = true;
  if (v.kind == kKindHead) {
    large_ = true;
    inc_ = store::format::IncarnationOf(v.value);
    return true;
  }
  coll::View view;
  if (!coll::Decode(v.value, &view) || view.elements.size() % StrideOf(type_) != 0) {
    error_ = kUndecodable;
    return false;
  }
  flags_ = view.flags;
  items_.assign(view.elements.begin(), view.elements.end());
  return true;
}

void CollectionEdit::IndexWhole() {
  const size_t stride = StrideOf(type_);
  index_.clear();
  index_.reserve(items_.size() / stride);
  for (size_t i = 0; i < items_.size(); i += stride) index_.emplace(items_[i], i);
  indexed_ = true;
}

long CollectionEdit::FindWhole(std::string_view member) {
  const size_t stride = StrideOf(type_);
  if (items_.size() <= 16 * stride) {
    for (size_t i = 0; i < items_.size(); i += stride) {
      if (items_[i] == member) return static_cast<long>(i);
    }
    return -1;
  }
  if (!indexed_) IndexWhole();
  auto it = index_.find(member);
  return it == index_.end() ? -1 : static_cast<long>(it->second);
}

size_t CollectionEdit::size() {
  if (large_) return txn_.ElementCount(inc_);
  return items_.size() / StrideOf(type_);
}

bool CollectionEdit::Get(std::string_view member, std::string* value) {
  if (large_) {
    store::ValueView v;
    if (!txn_.GetElement(inc_, member, &v).ok()) return false;
    value->assign(v.value);
    return true;
  }
  const long at = FindWhole(member);
  if (at < 0) return false;
  if (StrideOf(type_) == 2) *value = items_[static_cast<size_t>(at) + 1];
  return true;
}

bool CollectionEdit::Has(std::string_view member) {
  if (large_) {
    store::ValueView v;
    return txn_.GetElement(inc_, member, &v).ok();
  }
  return FindWhole(member) >= 0;
}

bool CollectionEdit::Put(std::string_view member, std::string_view value) {
  changed_ = true;
  if (large_) return txn_.PutElement(db_, key_, type_, inc_, member, value);
  const size_t stride = StrideOf(type_);
  const long at = FindWhole(member);
  if (at >= 0) {
    if (stride == 2) items_[static_cast<size_t>(at) + 1].assign(value);
    return false;
  }
  // The index holds views of items_' strings: growing the vector may move them.
  const bool moves = items_.size() + stride > items_.capacity();
  items_.emplace_back(member);
  if (stride == 2) items_.emplace_back(value);
  if (moves) {
    indexed_ = false;
  } else if (indexed_) {
    index_.emplace(items_[items_.size() - stride], items_.size() - stride);
  }
  return true;
}

bool CollectionEdit::Remove(std::string_view member) {
  if (large_) {
    const bool was = txn_.DeleteElement(db_, key_, type_, inc_, member);
    changed_ |= was;
    return was;
  }
  const long at = FindWhole(member);
  if (at < 0) return false;
  const auto i = static_cast<size_t>(at);
  items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(i),
               items_.begin() + static_cast<std::ptrdiff_t>(i + StrideOf(type_)));
  indexed_ = false;
  changed_ = true;
  return true;
}

store::Status CollectionEdit::ForEach(const std::function<void(std::string_view, std::string_view)>& fn) {
  if (large_) return txn_.ForEachElement(inc_, fn);
  const size_t stride = StrideOf(type_);
  for (size_t i = 0; i + stride <= items_.size(); i += stride) {
    fn(items_[i], stride == 2 ? std::string_view(items_[i + 1]) : std::string_view());
  }
  return store::Status::OK();
}

std::vector<std::string> CollectionEdit::RandomMembers(size_t n) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  if (large_ && n <= 64 && n * 4 <= size()) {
    // A few of many: picked from the index one by one (O(n), not O(size)), distinct.
    std::vector<std::string> picked;
    std::string m;
    for (int attempts = 0; picked.size() < n && attempts < 64 * static_cast<int>(n); ++attempts) {
      if (!txn_.RandomElement(inc_, rng(), &m)) break;  // the group wrote it: walk below
      if (std::find(picked.begin(), picked.end(), m) == picked.end()) picked.push_back(m);
    }
    if (picked.size() == n) return picked;
  }
  std::vector<std::string> all;
  // An element that fails its check is logged and left where it is: the picks are of the others.
  (void)ForEach([&](std::string_view m, std::string_view) { all.emplace_back(m); });
  n = std::min(n, all.size());
  for (size_t i = 0; i < n; ++i) std::swap(all[i], all[i + rng() % (all.size() - i)]);
  all.resize(n);
  return all;
}

void CollectionEdit::Commit() {
  if (!changed_) return;
  if (large_) {
    if (txn_.ElementCount(inc_) == 0) {
      DeleteKey(txn_, db_, key_);
      deleted_ = true;
    }
    return;
  }
  if (items_.empty()) {
    if (exists_) DeleteKey(txn_, db_, key_);
    deleted_ = true;
    return;
  }
  const std::vector<std::string_view> views(items_.begin(), items_.end());
  WriteCollection(txn_, server_, db_, key_, type_, flags_, views, /*keep_ttl=*/true);
}

}  // namespace keg::server
