// HyperLogLog commands (Redis 7.0's hyperloglog.c replies and errors): PFADD, PFCOUNT, PFMERGE,
// PFDEBUG, PFSELFTEST. A sketch is a string value in Redis's format (server/hyperloglog.h), read and
// rewritten by Update ops on the writer thread at the command's place in its batch, as APPEND is.
#include <memory>
#include <string>
#include <vector>

#include "server/command.h"
#include "server/hyperloglog.h"
#include "server/notify.h"
#include "server/session.h"
#include "server/state.h"
#include "store/format.h"

namespace keg::server {
namespace {

using store::OpResult;
using store::UpdateDecision;
using store::ValueView;
using Action = store::UpdateDecision::Action;

size_t SparseMax(Ctx& c) {
  const int64_t v = c.server().hll_sparse_max_bytes.load(std::memory_order_relaxed);
  return v > 0 ? static_cast<size_t>(v) : 0;
}

// What an op saw, for the finisher (the finisher owns it; the ops run before it).
struct Outcome {
  std::string error;  // a reply error (kNotHll, kCorrupt, ...)
  int64_t number = 0;
  std::vector<uint8_t> regs;  // PFCOUNT of several keys, PFMERGE: the merged registers
  bool dense = false;         // PFMERGE: a source was dense
};

// Reads every key from args[1] on, at the command's place, into o->regs (the largest of each
// register; an absent key is an empty sketch) and o->dense; the first failure is o->error.
void MergeKeys(Ctx& c, const std::shared_ptr<Outcome>& o) {
  o->regs.assign(hll::kRegisters, 0);
  for (size_t j = 1; j < c.argc(); ++j) {
    c.batch().Update(std::string(c.arg(j)), [o](const ValueView* cur) {
      if (cur == nullptr || !o->error.empty()) return UpdateDecision{};
      // Each key's type and sketch in turn, the first failure the reply (Redis's
      // isHLLObjectOrReply per key): a string that is no sketch before a later key of another
      // type answers "not a valid HyperLogLog", not the generic WRONGTYPE.
      if (cur->type != store::format::kTypeString) {
        o->error = err::kWrongType;
      } else if (!hll::IsSketch(cur->value)) {
        o->error = hll::kNotHll;
      } else if (!hll::MergeInto(cur->value, o->regs.data())) {
        o->error = hll::kCorrupt;
      } else if (hll::IsDense(cur->value)) {
        o->dense = true;
      }
      return UpdateDecision{};
    });
  }
}

void ReplyNumber(Ctx& c, std::shared_ptr<Outcome> o) {
  c.Then([o](std::span<OpResult>, resp::ReplyBuffer& out) {
    if (!o->error.empty()) return out.Error(o->error);
    out.Integer(o->number);
  });
}

// PFADD key [element ...]: 1 when the sketch was created or a register grew.
void Pfadd(Ctx& c) {
  auto o = std::make_shared<Outcome>();
  std::vector<std::string> elements(c.args().begin() + 2, c.args().end());
  c.batch().Update(std::string(c.arg(1)), [o, max = SparseMax(c), elements = std::move(elements)](const ValueView* cur) {
    UpdateDecision d;
    std::string sketch;
    bool created = false;
    if (cur == nullptr) {
      sketch = hll::NewSketch();
      created = true;
    } else if (!hll::IsSketch(cur->value)) {
      o->error = hll::kNotHll;
      return d;
    } else {
      sketch.assign(cur->value);
    }
    const std::vector<std::string_view> views(elements.begin(), elements.end());
    bool changed = false;
    if (!hll::Add(&sketch, views, max, &changed)) {
      o->error = hll::kCorrupt;
      return d;
    }
    o->number = created || changed ? 1 : 0;
    if (o->number == 0) return d;
    hll::MarkStale(&sketch);  // (a new sketch's too, as Redis's)
    d.action = Action::kPut;
    d.value = std::move(sketch);
    d.keep_ttl = true;
    return d;
  });
  c.Notify(kNotifyString, "pfadd", c.arg(1));
  ReplyNumber(c, o);
}

// PFCOUNT key [key ...]. One key: the header's cached cardinality, or the estimate, which is then
// written into the header (the command's only write: Redis's PFCOUNT is a read that propagates
// itself when it updates the cache, and so does keg's). Several: the estimate of their union,
// nothing written.
void Pfcount(Ctx& c) {
  auto o = std::make_shared<Outcome>();
  if (c.argc() == 2) {
    c.batch().Update(std::string(c.arg(1)), [o](const ValueView* cur) {
      UpdateDecision d;
      if (cur == nullptr) return d;  // 0: PFADD would have created it
      if (cur->type != store::format::kTypeString) {
        o->error = err::kWrongType;
        return d;
      }
      if (!hll::IsSketch(cur->value)) {
        o->error = hll::kNotHll;
        return d;
      }
      if (hll::CacheValid(cur->value)) {
        o->number = static_cast<int64_t>(hll::CachedCount(cur->value));
        return d;
      }
      uint64_t count = 0;
      if (!hll::Count(cur->value, &count)) {
        o->error = hll::kCorrupt;
        return d;
      }
      o->number = static_cast<int64_t>(count);
      d.action = Action::kPut;
      d.value.assign(cur->value);
      hll::SetCache(&d.value, count);
      d.keep_ttl = true;
      return d;
    });
    return ReplyNumber(c, o);
  }
  MergeKeys(c, o);
  c.Then([o](std::span<OpResult>, resp::ReplyBuffer& out) {
    if (!o->error.empty()) return out.Error(o->error);
    out.Integer(static_cast<int64_t>(hll::Estimate(o->regs.data())));
  });
}

// PFMERGE destkey [sourcekey ...]: the target (a source too) takes the largest of each register;
// dense when a source is. Always written, as Redis's.
void Pfmerge(Ctx& c) {
  auto o = std::make_shared<Outcome>();
  MergeKeys(c, o);
  c.batch().Update(std::string(c.arg(1)), [o, max = SparseMax(c)](const ValueView* cur) {
    UpdateDecision d;
    if (!o->error.empty()) return d;
    // (The target was read as a source just before: a sketch, or absent.)
    std::string sketch = cur != nullptr ? std::string(cur->value) : hll::NewSketch();
    if (!hll::Raise(&sketch, o->regs.data(), o->dense, max)) {
      o->error = hll::kCorrupt;
      return d;
    }
    d.action = Action::kPut;
    d.value = std::move(sketch);
    d.keep_ttl = true;
    return d;
  });
  c.Notify(kNotifyString, "pfadd", c.arg(1));
  c.Then([o](std::span<OpResult>, resp::ReplyBuffer& out) {
    if (!o->error.empty()) return out.Error(o->error);
    out.Ok();
  });
}

// PFDEBUG GETREG|DECODE|ENCODING|TODENSE key (Redis's test hooks). GETREG and TODENSE make a sparse
// sketch dense, as Redis's. Redis's order of checks: the key, the sketch, then the subcommand.
void Pfdebug(Ctx& c) {
  const std::string sub = ToLower(c.arg(1));
  struct Debug {
    std::string error;
    std::string text;         // DECODE, ENCODING
    std::vector<uint8_t> regs;  // GETREG
    int64_t converted = 0;    // TODENSE
  };
  auto o = std::make_shared<Debug>();
  c.batch().Update(std::string(c.arg(2)), [o, sub, given = std::string(c.arg(1))](const ValueView* cur) {
    UpdateDecision d;
    if (cur == nullptr) {
      o->error = "The specified key does not exist";
      return d;
    }
    if (!hll::IsSketch(cur->value)) {
      o->error = hll::kNotHll;
      return d;
    }
    if (sub != "getreg" && sub != "decode" && sub != "encoding" && sub != "todense") {
      o->error = "Unknown PFDEBUG subcommand '" + given + "'";
      return d;
    }
    const bool sparse = !hll::IsDense(cur->value);
    if (sub == "encoding") {
      o->text = sparse ? "sparse" : "dense";
      return d;
    }
    if (sub == "decode") {
      if (!sparse) {
        o->error = "HLL encoding is not sparse";
      } else if (!hll::DescribeSparse(cur->value, &o->text)) {
        o->error = hll::kCorrupt;
      }
      return d;
    }
    std::string sketch(cur->value);
    if (sparse && !hll::ToDense(&sketch)) {
      o->error = hll::kCorrupt;
      return d;
    }
    if (sub == "getreg") {
      o->regs.assign(hll::kRegisters, 0);
      hll::MergeInto(sketch, o->regs.data());
    }
    o->converted = sparse ? 1 : 0;
    if (sparse) {
      d.action = Action::kPut;
      d.value = std::move(sketch);
      d.keep_ttl = true;
    }
    return d;
  });
  c.Then([o, sub](std::span<OpResult>, resp::ReplyBuffer& out) {
    if (!o->error.empty()) return out.Error(o->error);
    if (sub == "getreg") {
      out.ArrayHeader(o->regs.size());
      for (uint8_t r : o->regs) out.Integer(r);
    } else if (sub == "decode") {
      out.Bulk(o->text);
    } else if (sub == "encoding") {
      out.SimpleString(o->text);
    } else {
      out.Integer(o->converted);
    }
  });
}

void Pfselftest(Ctx& c) {
  const std::string failed = hll::SelfTest();
  if (!failed.empty()) return c.Error(failed);
  c.out().Ok();
}

}  // namespace

void RegisterHllCommands(std::vector<Command>* t) {
  const size_t first = t->size();
  t->push_back({"pfadd", -2, kWrite | kFast, 1, 1, 1, Pfadd, "@write @hyperloglog @fast"});
  // A read that may write the cache in its key's header (kWritesCache: see command.h).
  t->push_back({"pfcount", -2, kWrite | kReadOnly | kMayReplicate | kWritesCache, 1, -1, 1, Pfcount,
                "@read @hyperloglog @slow"});
  t->push_back({"pfmerge", -2, kWrite, 1, -1, 1, Pfmerge, "@write @hyperloglog @slow"});
  t->push_back({"pfdebug", 3, kWrite | kAdmin, 2, 2, 1, Pfdebug, "@write @hyperloglog @admin @slow @dangerous"});
  t->push_back({"pfselftest", 1, kAdmin, 0, 0, 0, Pfselftest, "@hyperloglog @admin @slow @dangerous"});
  for (size_t i = first; i < t->size(); ++i) (*t)[i].value_type = 0;  // format::kTypeString
  // PFCOUNT and PFMERGE check their keys' types themselves, key by key (MergeKeys).
  (*t)[first + 1].value_type = -1;
  (*t)[first + 2].value_type = -1;
}

}  // namespace keg::server
