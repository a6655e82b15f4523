#include "server/list.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <type_traits>

#include "server/collection.h"
#include "server/collection_commands.h"
#include "server/command.h"
#include "server/small_collection.h"
#include "server/state.h"
#include "store/format.h"

namespace keg::server {

using store::format::kKindHead;
using store::format::kKindWhole;
using store::format::kTypeList;

namespace list {

void WritePositionMember(char* out, uint64_t pos) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(pos & 0xff);
    pos >>= 8;
  }
}

std::string PositionMember(uint64_t pos) {
  std::string m(8, '\0');
  WritePositionMember(m.data(), pos);
  return m;
}

std::string_view EncodeMeta(const Meta& m, char (&buf)[16]) {
  std::memcpy(buf, &m.first, 8);
  std::memcpy(buf + 8, &m.count, 8);
  return std::string_view(buf, sizeof(buf));
}

std::string EncodeMeta(const Meta& m) {
  char buf[16];
  return std::string(EncodeMeta(m, buf));
}

bool DecodeMeta(std::string_view value, Meta* out) {
  if (value.size() != 16) return false;
  std::memcpy(&out->first, value.data(), 8);
  std::memcpy(&out->count, value.data() + 8, 8);
  return out->count <= UINT64_MAX - out->first;
}

bool NormalizeRange(int64_t start, int64_t stop, uint64_t len, uint64_t* from, uint64_t* to) {
  if (len == 0) return false;
  const auto n = static_cast<int64_t>(std::min<uint64_t>(len, INT64_MAX));
  if (start < 0) start = start < -n ? 0 : n + start;  // no overflow: start >= -n
  if (stop < 0) stop = stop < -n ? -1 : n + stop;
  if (start > stop || start >= n) return false;
  if (stop >= n) stop = n - 1;
  *from = static_cast<uint64_t>(start);
  *to = static_cast<uint64_t>(stop);
  return true;
}

}  // namespace list

bool ListStoredPerElement(ServerState& s, size_t count, size_t bytes) {
  // list-max-listpack-size: N > 0, at most N elements; N < 0, a listpack of at most 4 KiB << (-N
  // - 1) (-1: 4 KiB ... -5: 64 KiB, as Redis's quicklist nodes). keg also caps a whole list at 128
  // elements and 8 KiB, because a whole record is rewritten by every push.
  const int64_t limit = s.list_max_listpack_size.load(std::memory_order_relaxed);
  size_t max_count = 128;
  size_t max_bytes = 8192;
  if (limit > 0) {
    max_count = std::min<size_t>(max_count, static_cast<size_t>(limit));
  } else {
    const int64_t shift = std::clamp<int64_t>(-limit, 1, 5) - 1;
    max_bytes = std::min<size_t>(max_bytes, size_t{4096} << shift);
  }
  return count > max_count || bytes > max_bytes;
}

// ---- Reading ------------------------------------------------------------------------------------

bool ListRead::Read(std::string_view key, int64_t start, int64_t stop, const std::function<void()>& absent) {
  // The head, the meta element and the elements as of one moment: a group landing between them
  // (RPUSH after an LPOP) would otherwise give a state the list never had.
  store::Status s;
  store::Status element_error;
  bool undecodable = false;
  c_.ReadTogether(3, [&] {
    pins_.clear();
    elements_.clear();
    size_ = 0;
    from_ = 0;
    undecodable = false;
    element_error = store::Status::OK();
    s = c_.Get(key, &head_);
    if (s.ok() && head_.type != kTypeList) s = store::Status::WrongType();
    if (!s.ok()) return;
    uint64_t from = 0;
    uint64_t to = 0;
    if (head_.kind != kKindHead) {
      coll::View v;
      if (!coll::Decode(head_.value, &v)) {
        undecodable = true;
        return;
      }
      size_ = v.elements.size();
      if (list::NormalizeRange(start, stop, size_, &from, &to)) {
        from_ = from;
        elements_.assign(v.elements.begin() + static_cast<std::ptrdiff_t>(from),
                         v.elements.begin() + static_cast<std::ptrdiff_t>(to + 1));
      }
      return;
    }
    const uint64_t inc = store::format::IncarnationOf(head_.value);
    store::ValueView mv;
    if (store::Status ms = c_.GetElement(inc, list::kMetaMember, &mv); !ms.ok()) {
      element_error = ms.IsNotFound() ? store::Status::Corruption("a large list without its meta element") : ms;
      return;
    }
    list::Meta meta;
    if (!list::DecodeMeta(mv.value, &meta)) {
      undecodable = true;
      return;
    }
    size_ = meta.count;
    if (!list::NormalizeRange(start, stop, size_, &from, &to)) return;
    from_ = from;
    // One batched read: the collection looked up once, each data file pinned once.
    // The members, 8 bytes each, side by side in one buffer (no string per element); on the
    // stack for up to kOnStack of them (LRANGE of 100).
    constexpr size_t kOnStack = 128;
    const size_t n = to - from + 1;
    char names_stack[kOnStack * 8];
    std::string_view members_stack[kOnStack];
    std::string names_heap;
    std::vector<std::string_view> members_heap;
    char* names = names_stack;
    std::string_view* members = members_stack;
    if (n > kOnStack) {
      names_heap.resize(n * 8);
      members_heap.resize(n);
      names = names_heap.data();
      members = members_heap.data();
    }
    for (size_t i = 0; i < n; ++i) {
      list::WritePositionMember(names + i * 8, meta.first + from + i);
      members[i] = std::string_view(names + i * 8, 8);
    }
    store::Status es = c_.GetElements(inc, std::span<const std::string_view>(members, n), &elements_, &pins_);
    if (!es.ok()) {
      element_error = es.IsNotFound() ? store::Status::Corruption("a list element is missing") : es;
      elements_.clear();
      return;
    }
  });
  if (!c_.AccountRead(std::move(s), key)) {
    if (c_.read_failed()) {
      c_.ReplyReadError();
    } else {
      absent();
    }
    return false;
  }
  if (undecodable) {
    c_.Error(kUndecodable);
    return false;
  }
  if (!element_error.ok()) {
    c_.Error(CorruptionError(element_error));
    return false;
  }
  return true;
}

namespace {

template <class Reader, class Out>
store::Status ReadAll(Reader& r, uint64_t inc, Out* out) {
  out->clear();
  store::ValueView mv;
  store::Status s = r.GetElement(inc, list::kMetaMember, &mv);
  if (s.IsNotFound()) return store::Status::Corruption("a large list without its meta element");
  if (!s.ok()) return s;
  list::Meta meta;
  if (!list::DecodeMeta(mv.value, &meta)) return store::Status::Corruption("a list's meta element does not decode");
  out->reserve(meta.count);
  for (uint64_t i = 0; i < meta.count; ++i) {
    store::ValueView ev;
    s = r.GetElement(inc, list::PositionMember(meta.first + i), &ev);
    if (s.IsNotFound()) return store::Status::Corruption("a list element is missing");
    if (!s.ok()) return s;
    if constexpr (std::is_same_v<Out, std::vector<std::string>>) {
      out->emplace_back(ev.value);
    } else {
      out->push_back(std::move(ev));
    }
  }
  return store::Status::OK();
}

}  // namespace

store::Status ListElements(store::Txn& txn, uint64_t inc, std::vector<std::string>* out) {
  return ReadAll(txn, inc, out);
}

store::Status ListElements(Ctx& c, uint64_t inc, std::vector<store::ValueView>* out) { return ReadAll(c, inc, out); }

store::Status ListElements(const store::Store& st, uint64_t inc, std::vector<store::ValueView>* out) {
  return ReadAll(st, inc, out);
}

// ---- Writing ------------------------------------------------------------------------------------

void WriteList(store::Txn& txn, ServerState& s, uint32_t db, std::string_view key,
               const std::vector<std::string_view>& items, bool keep_ttl, int64_t expire_at_ms) {
  if (items.empty()) {
    store::ValueView v;
    if (txn.Get(db, key, &v).ok()) DeleteKey(txn, db, key);
    return;
  }
  std::string whole = coll::Encode(0, items);
  if (!ListStoredPerElement(s, items.size(), whole.size())) {
    PutRecord(txn, db, key, std::move(whole), kTypeList, kKindWhole, keep_ttl, expire_at_ms);
    return;
  }
  // Per element: a new incarnation, its elements and meta element, then its head (a group cut
  // short leaves elements no head names, never a head without them).
  const uint64_t inc = txn.NewIncarnation();  // (so none of its elements exists yet)
  for (size_t i = 0; i < items.size(); ++i) {
    txn.AddElement(db, key, kTypeList, inc, list::PositionMember(list::kMiddle + i), items[i]);
  }
  txn.AddElement(db, key, kTypeList, inc, list::kMetaMember, list::EncodeMeta({list::kMiddle, items.size()}));
  std::string head(sizeof(inc), '\0');
  std::memcpy(head.data(), &inc, sizeof(inc));
  PutRecord(txn, db, key, std::move(head), kTypeList, kKindHead, keep_ttl, expire_at_ms);
}

bool ListEdit::Open() {
  store::ValueView v;
  const int found = ReadForEdit(txn_, db_, key_, kTypeList, &v, &error_);
  if (found <= 0) return found == 0;
  exists_ = true;
  if (v.kind == kKindHead) {
    large_ = true;
    inc_ = store::format::IncarnationOf(v.value);
    bool decoded = false;
    const store::Status s = txn_.ReadElement(inc_, list::kMetaMember,
                                             [&](std::string_view value) { decoded = list::DecodeMeta(value, &meta_); });
    if (!s.ok()) {
      error_ = CorruptionError(s.IsNotFound() ? store::Status::Corruption("a large list without its meta element") : s);
      return false;
    }
    if (!decoded) {
      error_ = kUndecodable;
      return false;
    }
    return true;
  }
  coll::View view;
  if (!coll::Decode(v.value, &view)) {
    error_ = kUndecodable;
    return false;
  }
  items().assign(view.elements.begin(), view.elements.end());
  return true;
}

bool ListEdit::ElementFailed(const store::Status& s) {
  error_ = CorruptionError(s.IsNotFound() ? store::Status::Corruption("a list element is missing") : s);
  return false;
}

bool ListEdit::Get(uint64_t pos, std::string* out) {
  store::ValueView v;
  const store::Status s = txn_.GetElement(inc_, list::PositionMember(pos), &v);
  if (!s.ok()) return ElementFailed(s);
  out->assign(v.value);
  return true;
}

void ListEdit::Put(uint64_t pos, std::string_view value) {
  txn_.PutElement(db_, key_, kTypeList, inc_, list::PositionMember(pos), value);
}

void ListEdit::Drop(uint64_t pos) { txn_.DeleteElement(db_, key_, kTypeList, inc_, list::PositionMember(pos)); }

bool ListEdit::At(uint64_t i, std::string* out) {
  if (!large_) {
    *out = items()[i];
    return true;
  }
  return Get(meta_.first + i, out);
}

void ListEdit::Set(uint64_t i, std::string_view value) {
  changed_ = true;
  if (!large_) {
    items()[i].assign(value);
    return;
  }
  Put(meta_.first + i, value);
}

void ListEdit::Push(bool left, std::string_view value) {
  changed_ = true;
  if (!large_) {
    if (left) {
      items().emplace_front(value);
    } else {
      items().emplace_back(value);
    }
    return;
  }
  // A position past either end holds no element (a pop drops its own): no lookup before the write.
  const uint64_t pos = left ? --meta_.first : meta_.first + meta_.count;
  txn_.AddElement(db_, key_, kTypeList, inc_, list::PositionMember(pos), value);
  ++meta_.count;
}

bool ListEdit::Pop(bool left, std::string* out) {
  if (size() == 0) return false;
  if (!large_) {
    changed_ = true;
    if (left) {
      *out = std::move(items().front());
      items().pop_front();
    } else {
      *out = std::move(items().back());
      items().pop_back();
    }
    return true;
  }
  const uint64_t pos = left ? meta_.first : meta_.first + meta_.count - 1;
  const store::Status s = txn_.TakeElement(db_, key_, kTypeList, inc_, list::PositionMember(pos), out);
  if (!s.ok()) return ElementFailed(s);
  changed_ = true;
  if (left) ++meta_.first;
  --meta_.count;
  return true;
}

void ListEdit::Insert(uint64_t i, std::string_view value) {
  changed_ = true;
  if (!large_) {
    items().emplace(items().begin() + static_cast<std::ptrdiff_t>(i), value);
    return;
  }
  std::string moved;
  if (i < meta_.count / 2) {  // the left side moves one to the left
    for (uint64_t j = 0; j < i; ++j) {
      if (!Get(meta_.first + j, &moved)) return;
      Put(meta_.first + j - 1, moved);
    }
    --meta_.first;
  } else {  // the right side moves one to the right
    for (uint64_t j = meta_.count; j > i; --j) {
      if (!Get(meta_.first + j - 1, &moved)) return;
      Put(meta_.first + j, moved);
    }
  }
  Put(meta_.first + i, value);
  ++meta_.count;
}

void ListEdit::Erase(uint64_t i) {
  changed_ = true;
  if (!large_) {
    items().erase(items().begin() + static_cast<std::ptrdiff_t>(i));
    return;
  }
  std::string moved;
  if (i < meta_.count / 2) {  // the left side moves one to the right
    for (uint64_t j = i; j > 0; --j) {
      if (!Get(meta_.first + j - 1, &moved)) return;
      Put(meta_.first + j, moved);
    }
    Drop(meta_.first);
    ++meta_.first;
  } else {  // the right side moves one to the left
    for (uint64_t j = i; j + 1 < meta_.count; ++j) {
      if (!Get(meta_.first + j + 1, &moved)) return;
      Put(meta_.first + j, moved);
    }
    Drop(meta_.first + meta_.count - 1);
  }
  --meta_.count;
}

void ListEdit::Keep(uint64_t from, uint64_t to) {
  const uint64_t n = size();
  if (n == 0) return;
  if (from > to || from >= n) {  // keeps nothing
    from = n;
    to = n - 1;
  }
  if (from == 0 && to + 1 >= n) return;
  changed_ = true;
  if (!large_) {
    if (from >= n) {
      items().clear();
      return;
    }
    items().erase(items().begin() + static_cast<std::ptrdiff_t>(to + 1), items().end());
    items().erase(items().begin(), items().begin() + static_cast<std::ptrdiff_t>(from));
    return;
  }
  // O(removed), as Redis's LTRIM: a tombstone per dropped element.
  const uint64_t keep_end = from >= n ? n : std::min(to + 1, n);
  for (uint64_t j = keep_end; j < n; ++j) Drop(meta_.first + j);
  for (uint64_t j = 0; j < std::min(from, n); ++j) Drop(meta_.first + j);
  meta_.first += std::min(from, n);
  meta_.count = keep_end > from ? keep_end - from : 0;
}

void ListEdit::ReplaceFrom(uint64_t i, const std::vector<std::string>& rest) {
  changed_ = true;
  if (!large_) {
    items().erase(items().begin() + static_cast<std::ptrdiff_t>(i), items().end());
    items().insert(items().end(), rest.begin(), rest.end());
    return;
  }
  for (size_t j = 0; j < rest.size(); ++j) Put(meta_.first + i + j, rest[j]);
  for (uint64_t j = i + rest.size(); j < meta_.count; ++j) Drop(meta_.first + j);
  meta_.count = i + rest.size();
}

void ListEdit::Commit() {
  if (!changed_) return;
  if (size() == 0) {
    if (exists_) DeleteKey(txn_, db_, key_);
    deleted_ = exists_;
    return;
  }
  if (large_) {
    // Open read the meta element: it is there (no second lookup to learn so).
    char meta[16];
    txn_.PutKnownElement(db_, key_, kTypeList, inc_, list::kMetaMember, list::EncodeMeta(meta_, meta), /*exists=*/true);
    return;
  }
  const std::vector<std::string_view> views(items().begin(), items().end());
  WriteList(txn_, server_, db_, key_, views, /*keep_ttl=*/true);
}

}  // namespace keg::server
