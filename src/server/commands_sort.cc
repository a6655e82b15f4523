// SORT and SORT_RO (Redis 7.0's sort.c): the elements of a list, set or sorted set, sorted as
// numbers or (ALPHA) as bytes, by themselves or by the values of other keys (BY pattern, hash
// fields with "->"), with LIMIT, GET patterns and, for SORT, STORE into a list.
//
// SORT_RO and SORT without STORE read on the I/O thread: the source and every key a pattern
// names inside one ReadTogether, so they are seen as of one moment. SORT ... STORE reads and
// writes in one kRun op on the writer. Both run the same code (Sorter) over a Source that reads
// from the store or from the group being built.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "resp/numbers.h"
#include "server/acl.h"
#include "server/collection.h"
#include "server/collection_commands.h"
#include "server/command.h"
#include "server/list.h"
#include "server/notify.h"
#include "server/session.h"
#include "server/small_collection.h"
#include "server/state.h"
#include "server/zset.h"
#include "store/format.h"

namespace keg::server {
namespace {

using store::OpResult;

struct SortSpec {
  bool desc = false;
  bool alpha = false;
  int64_t limit_start = 0;
  int64_t limit_count = -1;
  bool has_by = false;
  std::string by;
  bool dontsort = false;
  std::vector<std::string> gets;
  bool has_store = false;
  std::string store;
};

// Where SORT reads: the source collection and the keys its patterns name.
class SortSource {
 public:
  virtual ~SortSource() = default;
  /// The source's elements in their own order (a list's, a sorted set's by score, a set's
  /// stored order): 1 found, 0 absent, -1 with *error (WRONGTYPE, corruption).
  virtual int Elements(const std::string& key, uint8_t* type, std::vector<std::string>* out, std::string* error) = 0;
  /// A string key's value; nullopt when absent or of another type.
  virtual std::optional<std::string> String(const std::string& key) = 0;
  /// A hash field's value; nullopt when the key, or the field, is absent, or the key not a hash.
  virtual std::optional<std::string> Field(const std::string& key, const std::string& field) = 0;
};

// Redis's lookupKeyByPattern: "#" is the element itself; the first '*' is replaced by it; a
// "->field" after it names a hash field. nullopt when the pattern has no '*' or nothing is there.
std::optional<std::string> LookupByPattern(SortSource& src, const std::string& pattern, const std::string& elem) {
  if (pattern == "#") return elem;
  const size_t star = pattern.find('*');
  if (star == std::string::npos) return std::nullopt;
  size_t arrow = pattern.find("->", star + 1);
  if (arrow != std::string::npos && arrow + 2 == pattern.size()) arrow = std::string::npos;  // "->" at the end
  const std::string key = pattern.substr(0, star) + elem +
                          pattern.substr(star + 1, (arrow == std::string::npos ? pattern.size() : arrow) - star - 1);
  if (arrow == std::string::npos) return src.String(key);
  return src.Field(key, pattern.substr(arrow + 2));
}

struct Sorted {
  std::string error;
  bool source_missing = false;  // keymiss, as Redis's lookupKeyRead
  std::vector<std::optional<std::string>> rows;  // the reply's elements (GET results flattened)
};

// The whole of SORT after parsing: reads through `src`, sorts, applies LIMIT and GET.
Sorted RunSort(SortSource& src, const std::string& key, SortSpec spec, bool in_script) {
  Sorted out;
  uint8_t type = 0;
  std::vector<std::string> elems;
  const int found = src.Elements(key, &type, &elems, &out.error);
  if (found < 0) return out;
  if (found == 0) {
    elems.clear();
    out.source_missing = true;
  }
  // A set has no order of its own: sorted as bytes when the result is stored or a script reads
  // it, so replicas and scripts see the same (Redis's rule).
  if (spec.dontsort && type == store::format::kTypeSet && (spec.has_store || in_script)) {
    spec.dontsort = false;
    spec.alpha = true;
    spec.has_by = false;
  }
  const auto len = static_cast<int64_t>(elems.size());
  int64_t start = std::min(std::max<int64_t>(spec.limit_start, 0), len);
  const int64_t count = std::min(std::max<int64_t>(spec.limit_count, -1), len);
  int64_t end = count < 0 ? len - 1 : start + count - 1;
  if (start >= len) {
    start = len - 1;
    end = len - 2;
  }
  if (end >= len) end = len - 1;
  if (spec.dontsort) {
    // A list or sorted set in its own order, DESC from its end; a set as stored.
    if (spec.desc && type != store::format::kTypeSet) std::reverse(elems.begin(), elems.end());
  } else {
    struct Item {
      const std::string* elem;
      double score = 0;
      std::optional<std::string> by;
    };
    std::vector<Item> items(elems.size());
    bool conversion_error = false;
    for (size_t i = 0; i < elems.size(); ++i) {
      items[i].elem = &elems[i];
      std::optional<std::string> byval;
      if (spec.has_by) {
        byval = LookupByPattern(src, spec.by, elems[i]);
        if (!byval) continue;  // missing: score 0, or first when ALPHA
      } else {
        byval = elems[i];
      }
      if (spec.alpha) {
        if (spec.has_by) items[i].by = std::move(byval);
        continue;
      }
      char* eptr = nullptr;
      errno = 0;
      items[i].score = std::strtod(byval->c_str(), &eptr);
      if (*eptr != '\0' || errno == ERANGE || std::isnan(items[i].score)) conversion_error = true;
    }
    if (conversion_error) {
      out.error = "One or more scores can't be converted into double";
      return out;
    }
    auto cmp = [&](const Item& a, const Item& b) {
      int c = 0;
      if (!spec.alpha) {
        c = a.score > b.score ? 1 : a.score < b.score ? -1 : a.elem->compare(*b.elem);
      } else if (spec.has_by) {
        if (!a.by || !b.by) {
          c = a.by.has_value() == b.by.has_value() ? 0 : !a.by ? -1 : 1;
        } else {
          c = a.by->compare(*b.by);
        }
      } else {
        c = a.elem->compare(*b.elem);
      }
      c = c < 0 ? -1 : c > 0 ? 1 : 0;
      return (spec.desc ? -c : c) < 0;
    };
    std::stable_sort(items.begin(), items.end(), cmp);
    std::vector<std::string> sorted;
    sorted.reserve(items.size());
    for (Item& it : items) sorted.push_back(*it.elem);
    elems = std::move(sorted);
  }
  for (int64_t j = start; j <= end; ++j) {
    const std::string& e = elems[static_cast<size_t>(j)];
    if (spec.gets.empty()) {
      out.rows.emplace_back(e);
      continue;
    }
    for (const std::string& g : spec.gets) out.rows.push_back(LookupByPattern(src, g, e));
  }
  return out;
}

// Reads for SORT on an I/O thread (or in a script): through Ctx, inside the caller's ReadTogether.
class ReaderSource final : public SortSource {
 public:
  explicit ReaderSource(Ctx& c) : c_(c) {}
  int Elements(const std::string& key, uint8_t* type, std::vector<std::string>* out, std::string* error) override {
    out->clear();
    store::ValueView v;
    const store::Status s = c_.Get(key, &v);
    if (s.IsNotFound()) return 0;
    if (!s.ok()) {
      *error = CorruptionError(s);
      return -1;
    }
    *type = v.type;
    if (v.type == store::format::kTypeList) {
      if (v.kind != store::format::kKindHead) return Whole(v.value, 1, out, error);
      std::vector<store::ValueView> views;
      if (const store::Status ls = ListElements(c_, store::format::IncarnationOf(v.value), &views); !ls.ok()) {
        *error = CorruptionError(ls);
        return -1;
      }
      for (const store::ValueView& e : views) out->emplace_back(e.value);
      return 1;
    }
    if (v.type == store::format::kTypeSet) {
      if (v.kind != store::format::kKindHead) return Whole(v.value, 1, out, error);
      std::vector<store::ElementView> elems;
      std::vector<std::shared_ptr<const void>> pins;
      if (const store::Status es = c_.ReadElements(store::format::IncarnationOf(v.value), &elems, &pins); !es.ok()) {
        *error = CorruptionError(es);
        return -1;
      }
      for (const store::ElementView& e : elems) out->emplace_back(e.member);
      return 1;
    }
    if (v.type == store::format::kTypeZset) {
      std::vector<std::pair<std::string, double>> items;
      store::Status zs;
      if (!ZsetItems(c_, v, &items, &zs)) {
        *error = CorruptionError(zs);
        return -1;
      }
      for (auto& [m, sc] : items) out->push_back(std::move(m));
      return 1;
    }
    *error = std::string(err::kWrongType);
    return -1;
  }
  std::optional<std::string> String(const std::string& key) override {
    store::ValueView v;
    if (!c_.Get(key, &v).ok() || v.type != store::format::kTypeString) return std::nullopt;
    return std::string(v.value);
  }
  std::optional<std::string> Field(const std::string& key, const std::string& field) override {
    store::ValueView v;
    if (!c_.Get(key, &v).ok() || v.type != store::format::kTypeHash) return std::nullopt;
    if (v.kind == store::format::kKindHead) {
      store::ValueView e;
      if (!c_.GetElement(store::format::IncarnationOf(v.value), field, &e).ok()) return std::nullopt;
      return std::string(e.value);
    }
    std::string_view found;
    if (coll::Find(v.value, 2, field, &found) != 1) return std::nullopt;
    return std::string(found);
  }

 private:
  // A whole encoding's elements (every `stride`-th).
  static int Whole(std::string_view value, size_t stride, std::vector<std::string>* out, std::string* error) {
    coll::View cv;
    if (!coll::Decode(value, &cv)) {
      *error = std::string(kUndecodable);
      return -1;
    }
    for (size_t i = 0; i < cv.elements.size(); i += stride) out->emplace_back(cv.elements[i]);
    return 1;
  }
  Ctx& c_;
};

// Reads for SORT ... STORE: the group being built, inside its kRun op.
class TxnSource final : public SortSource {
 public:
  TxnSource(store::Txn& txn, ServerState& s, uint32_t db) : txn_(txn), server_(s), db_(db) {}
  int Elements(const std::string& key, uint8_t* type, std::vector<std::string>* out, std::string* error) override {
    out->clear();
    store::ValueView v;
    const store::Status s = txn_.Get(db_, key, &v);
    if (s.IsNotFound()) return 0;
    if (!s.ok()) {
      *error = CorruptionError(s);
      return -1;
    }
    *type = v.type;
    if (v.type == store::format::kTypeList) {
      ListEdit l(txn_, server_, db_, key);
      if (!l.Open()) {
        *error = l.error();
        return -1;
      }
      out->resize(l.size());
      for (uint64_t i = 0; i < l.size(); ++i) {
        if (!l.At(i, &(*out)[i])) {
          *error = l.error();
          return -1;
        }
      }
      return 1;
    }
    if (v.type == store::format::kTypeSet) {
      CollectionEdit set(txn_, server_, db_, key, store::format::kTypeSet);
      if (!set.Open()) {
        *error = set.error();
        return -1;
      }
      const store::Status fs = set.ForEach([&](std::string_view m, std::string_view) { out->emplace_back(m); });
      if (!fs.ok()) {
        *error = CorruptionError(fs);
        return -1;
      }
      return 1;
    }
    if (v.type == store::format::kTypeZset) {
      ZsetEdit z(txn_, server_, db_, key);
      if (!z.Open()) {
        *error = z.error();
        return -1;
      }
      z.WithSeq([&](const ZsetSeq& seq) {
        out->clear();
        seq.Range(0, seq.size(), [&](const zset::Item& it) {
          out->emplace_back(it.member);
          return true;
        });
      });
      if (!z.error().empty()) {
        *error = z.error();
        return -1;
      }
      return 1;
    }
    *error = std::string(err::kWrongType);
    return -1;
  }
  std::optional<std::string> String(const std::string& key) override {
    store::ValueView v;
    if (!txn_.Get(db_, key, &v).ok() || v.type != store::format::kTypeString) return std::nullopt;
    return std::string(v.value);
  }
  std::optional<std::string> Field(const std::string& key, const std::string& field) override {
    CollectionEdit hash(txn_, server_, db_, key, store::format::kTypeHash);
    std::string value;
    if (!hash.Open() || !hash.exists() || !hash.Get(field, &value)) return std::nullopt;
    return value;
  }

 private:
  store::Txn& txn_;
  ServerState& server_;
  uint32_t db_;
};

// Parses SORT's options from args[2] on: false with the error replied (c.Fail / c.out()).
bool ParseSort(Ctx& c, bool readonly, SortSpec* spec, std::string* error) {
  // BY and GET read keys the command does not name: only for a user with access to every key
  // (Redis's rule; in a script, the script's caller).
  const AclUser* user = c.acl_user();
  const bool full_key_access = user == nullptr || user->all_keys;
  for (size_t j = 2; j < c.argc(); ++j) {
    const size_t left = c.argc() - j - 1;
    const std::string_view o = c.arg(j);
    if (EqualsIgnoreCase(o, "asc")) {
      spec->desc = false;
    } else if (EqualsIgnoreCase(o, "desc")) {
      spec->desc = true;
    } else if (EqualsIgnoreCase(o, "alpha")) {
      spec->alpha = true;
    } else if (EqualsIgnoreCase(o, "limit") && left >= 2) {
      if (!resp::ParseInt64(c.arg(j + 1), &spec->limit_start) || !resp::ParseInt64(c.arg(j + 2), &spec->limit_count)) {
        *error = std::string(err::kNotInteger);
        return false;
      }
      j += 2;
    } else if (!readonly && EqualsIgnoreCase(o, "store") && left >= 1) {
      spec->has_store = true;
      spec->store = c.arg(++j);
    } else if (EqualsIgnoreCase(o, "by") && left >= 1) {
      spec->has_by = true;
      spec->by = c.arg(++j);
      if (spec->by.find('*') == std::string::npos) {
        spec->dontsort = true;
      } else if (!full_key_access) {
        *error = "BY option of SORT denied due to insufficient ACL permissions.";
        return false;
      }
    } else if (EqualsIgnoreCase(o, "get") && left >= 1) {
      if (!full_key_access) {
        *error = "GET option of SORT denied due to insufficient ACL permissions.";
        return false;
      }
      spec->gets.emplace_back(c.arg(++j));
    } else {
      *error = std::string(err::kSyntax);
      return false;
    }
  }
  return true;
}

void ReplyRows(resp::ReplyBuffer& out, const Sorted& s) {
  out.ArrayHeader(s.rows.size());
  for (const auto& r : s.rows) r ? out.Bulk(*r) : out.Null();
}

// SORT_RO, and SORT without STORE: a read.
void SortRead(Ctx& c, const SortSpec& spec) {
  Sorted result;
  ReaderSource src(c);
  const std::string key(c.arg(1));
  c.ReadTogether(2, [&] { result = RunSort(src, key, spec, c.in_script()); });
  if (result.source_missing) c.NotifyNow(kNotifyKeyMiss, "keymiss", key);
  if (!result.error.empty()) return c.out().Error(result.error);
  ReplyRows(c.out(), result);
}

// A SORT that reads, in the writer's batch order (SORT without STORE; SORT_RO inside EXEC, whose
// patterns name keys only known as it runs): one kRun op reads the source and the patterns' keys
// at its place, then the reply is answered as a read command's would be.
void SortInOrder(Ctx& c, const std::shared_ptr<SortSpec>& spec) {
  struct Out {
    Sorted sorted;
  };
  auto res = std::make_shared<Out>();
  ServerState* server = &c.server();
  const bool in_script = c.in_script();
  c.batch().Run([res, spec, server, in_script, db = c.db(), key = std::string(c.arg(1))](store::Txn& txn) {
    TxnSource src(txn, *server, db);
    res->sorted = RunSort(src, key, *spec, in_script);
  });
  c.Then([res, server, db = c.db(), key = NotifyKey(c, kNotifyKeyMiss, c.arg(1))](std::span<OpResult>,
                                                                                   resp::ReplyBuffer& out) {
    if (key && res->sorted.source_missing) NotifyKeyspaceEvent(*server, db, kNotifyKeyMiss, "keymiss", *key);
    if (!res->sorted.error.empty()) return out.Error(res->sorted.error);
    ReplyRows(out, res->sorted);
  });
}

void SortRo(Ctx& c) {
  auto spec = std::make_shared<SortSpec>();
  std::string error;
  // Inside EXEC (the session runs it as it runs writes): at its place, patterns' keys included.
  if (c.client().in_exec() && !c.in_script()) {
    if (!ParseSort(c, true, spec.get(), &error)) return c.Fail(error);
    return SortInOrder(c, spec);
  }
  if (!ParseSort(c, true, spec.get(), &error)) return c.out().Error(error);
  SortRead(c, *spec);
}

// SORT: a read unless it STOREs; then one kRun op writes the result as a list.
void Sort(Ctx& c) {
  auto spec = std::make_shared<SortSpec>();
  std::string error;
  const bool ok = ParseSort(c, false, spec.get(), &error);
  if (!ok) return c.Fail(error);
  if (!spec->has_store) return SortInOrder(c, spec);  // a read, in the writer's batch order
  struct Out {
    std::string error;
    int64_t stored = 0;
    bool existed = false;
    bool source_missing = false;
  };
  auto res = std::make_shared<Out>();
  ServerState* server = &c.server();
  const bool in_script = c.in_script();
  c.batch().Run([res, spec, server, in_script, db = c.db(), key = std::string(c.arg(1))](store::Txn& txn) {
    TxnSource src(txn, *server, db);
    Sorted sorted = RunSort(src, key, *spec, in_script);
    res->source_missing = sorted.source_missing;
    if (!sorted.error.empty()) {
      res->error = std::move(sorted.error);
      return;
    }
    std::vector<std::string> items;
    items.reserve(sorted.rows.size());
    for (auto& r : sorted.rows) items.push_back(r ? std::move(*r) : std::string());
    store::ValueView there;
    res->existed = txn.Get(db, spec->store, &there).ok();
    res->stored = static_cast<int64_t>(items.size());
    if (items.empty() && !res->existed) return;
    const std::vector<std::string_view> views(items.begin(), items.end());
    WriteList(txn, *server, db, spec->store, views, false);
    server->watches.TouchKey(db, spec->store);
  }, spec->store);
  c.Then([res, server, db = c.db(), src = std::string(c.arg(1)),
          key = NotifyKey(c, kNotifyList | kNotifyGeneric | kNotifyNew | kNotifyKeyMiss, spec->store)](
             std::span<OpResult> r, resp::ReplyBuffer& out) {
    if (key && res->source_missing) NotifyKeyspaceEvent(*server, db, kNotifyKeyMiss, "keymiss", src);
    if (!res->error.empty()) return out.Error(res->error);
    if (key && !r.empty() && r[0].applied) {
      if (res->stored > 0) {
        if (!res->existed) NotifyKeyspaceEvent(*server, db, kNotifyNew, "new", *key);
        NotifyKeyspaceEvent(*server, db, kNotifyList, "sortstore", *key);
      } else {
        NotifyKeyspaceEvent(*server, db, kNotifyGeneric, "del", *key);
      }
    }
    out.Integer(res->stored);
  });
}

}  // namespace

void RegisterSortCommands(std::vector<Command>* t) {
  t->push_back({"sort", -2, kWrite | kWakes | kMovableKeys, 1, 1, 1, Sort, "@write @set @sortedset @list @slow @dangerous"});
  t->push_back({"sort_ro", -2, kReadOnly | kMovableKeys, 1, 1, 1, SortRo, "@read @set @sortedset @list @slow @dangerous"});
}

}  // namespace keg::server
