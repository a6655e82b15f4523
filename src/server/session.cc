#include "server/session.h"

#include "resp/numbers.h"
#include "server/collection.h"
#include "server/collection_commands.h"
#include "server/list.h"
#include "server/notify.h"
#include "server/small_collection.h"

#include "net/file_reads.h"
#include "server/stats_clock.h"
#include "store/format.h"

#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <bit>
#include <chrono>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>
#include <spdlog/spdlog.h>

namespace keg::server {

// Completed batches on their way back to one I/O thread. The writer appends; only the append that
// finds the inbox empty posts a drain, so a group that completes many batches of one I/O thread
// wakes it once (one post, one reactor interrupt) instead of once per batch. Its items run in the
// order they came, whichever thread delivered them: Asio runs a post made by an I/O thread's own
// handler only after that handler returns, behind posts other threads made meanwhile, so two
// completions posted separately could swap (ClientSession::DeliverInOrder).
struct CompletionInbox {
  struct Item {
    std::shared_ptr<net::Link> keep;  // keeps the session alive until Complete runs
    std::function<void()> complete;
  };
  std::mutex mu;
  std::vector<Item> items;
};

namespace {

// The unknown-command text, built as Redis 7.0 builds it (server.c processCommand).
std::string UnknownCommand(std::span<const std::string_view> args) {
  // Redis formats with %.*s, so every echoed string also stops at its first NUL byte.
  auto c_string = [](std::string_view s, size_t max) {
    s = s.substr(0, std::min(max, s.find('\0')));
    return s;
  };
  std::string text = "unknown command '";
  text += c_string(args[0], 128);
  text += "', with args beginning with: ";
  std::string rest;
  for (size_t i = 1; i < args.size() && rest.size() < 128; ++i) {
    rest += "'";
    rest += c_string(args[i], 128 - rest.size() + 1);
    rest += "' ";
  }
  text += rest;
  for (char& c : text) {
    if (c == '\r' || c == '\n') c = ' ';
  }
  return text;
}

// The write batches the connections of one I/O thread submitted during the current turn of its
// event loop. The first submission of a turn posts a flush to the end of the loop's queue, after
// the other connections that were ready in the same turn: their batches reach the writer with one
// lock and one wake-up instead of one each. Thread: one per I/O thread (thread_local).
struct TurnBatcher {
  std::vector<store::Store::PendingWrite> writes;
};
thread_local TurnBatcher turn_batcher;

std::shared_ptr<CompletionInbox> ThisThreadInbox() {
  thread_local std::shared_ptr<CompletionInbox> inbox = std::make_shared<CompletionInbox>();
  return inbox;
}

// From any thread: queues `complete` for the I/O thread that owns `inbox`; only the first of a
// burst posts (one wake-up of that event loop for all the completions that arrive meanwhile).
void Deliver(const std::shared_ptr<CompletionInbox>& inbox, std::shared_ptr<net::Link> keep,
             std::function<void()> complete) {
  bool first = false;
  net::Link* link = keep.get();
  {
    std::lock_guard lock(inbox->mu);
    first = inbox->items.empty();
    inbox->items.push_back(CompletionInbox::Item{std::move(keep), std::move(complete)});
  }
  if (first) {
    link->Post([inbox] {
      std::vector<CompletionInbox::Item> items;
      {
        std::lock_guard lock(inbox->mu);
        items.swap(inbox->items);
      }
      for (CompletionInbox::Item& item : items) item.complete();
    });
  }
}

int64_t MonoNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool AllowedWhileSubscribed(std::string_view name) {
  return name == "ping" || name == "subscribe" || name == "ssubscribe" || name == "unsubscribe" ||
         name == "sunsubscribe" || name == "psubscribe" || name == "punsubscribe" || name == "quit" ||
         name == "reset";
}

bool IsPostOrHost(std::string_view name) {
  return EqualsIgnoreCase(name, "post") || EqualsIgnoreCase(name, "host:");
}

}  // namespace

// ---- Ctx ----------------------------------------------------------------------------------------

Ctx::Ctx(ServerState& server, ClientSession& client, std::span<const std::string_view> args,
         resp::ReplyBuffer& out, const Snapshot* snapshot, DirectRun* direct)
    : server_(server),
      client_(client),
      args_(args),
      out_(out),
      snapshot_(snapshot),
      first_op_(direct != nullptr ? 0 : client.pending_ops()),
      direct_(direct) {}

const AclUser* Ctx::acl_user() const { return direct_ != nullptr ? direct_->user : &client_.user(); }

bool Ctx::inline_only() const { return direct_ != nullptr || client_.in_exec(); }

bool Ctx::may_answer_from_read() const {
  return direct_ == nullptr && snapshot_ == nullptr && !client_.in_exec() && !client_.has_steps() &&
         client_.pending_ops() == 0;
}

uint32_t Ctx::db() const {
  if (db_override_ >= 0) return static_cast<uint32_t>(db_override_);
  return direct_ != nullptr ? direct_->db : client_.db();
}

void Ctx::SelectDb(uint32_t db) {
  db_override_ = -1;
  if (direct_ != nullptr) {
    direct_->db = db;
  } else {
    client_.set_db(db);
  }
}

std::string Ctx::SnapshotKey(uint32_t db, std::string_view key) {
  std::string k(1, static_cast<char>(db));
  k.append(key);
  return k;
}

store::Status Ctx::Get(std::string_view key, store::ValueView* view) {
  if (direct_ != nullptr) return direct_->txn->Get(direct_->db, key, view);
  if (snapshot_ != nullptr) {
    auto it = snapshot_->find(SnapshotKey(db(), key));
    if (it == snapshot_->end()) return store::Status::NotFound();
    if (!it->second.status.ok()) return it->second.status;
    // Its expiry was judged where the writer ran the transaction, at the group's moment (as
    // Redis runs EXEC at one time): judged again by the clock now, after the group was applied
    // and synced, a key expiring in between read as missing beside commands that saw it.
    *view = it->second.view;
    return store::Status::OK();
  }
  return server_.store->Get(db(), key, view);
}

bool Ctx::Lookup(std::string_view key, store::ValueView* view) {
  store::Status s = Get(key, view);
  if (s.ok() && cmd_ != nullptr && cmd_->value_type >= 0 && view->type != cmd_->value_type) {
    s = store::Status::WrongType();
  }
  const bool found = Account(std::move(s));
  if (!found && read_error_.ok()) NotifyNow(kNotifyKeyMiss, "keymiss", key);  // Redis's lookupKeyRead
  return found;
}

bool Ctx::Account(store::Status s) {
  // Found, of another type (WRONGTYPE), counts as a hit and is the reply's error.
  const bool hit = s.ok() || s.IsWrongType();
  if (!hit && !s.IsNotFound()) {
    // A corrupt record is never served, nor taken for a missing key: the error says where it is.
    spdlog::error("read of a key failed: {}", s.ToString());
    if (read_error_.ok()) read_error_ = std::move(s);
    return false;
  }
  if (direct_ != nullptr) {
    ++(hit ? direct_->hits : direct_->misses);
  } else {
    client_.CountLookup(hit);
  }
  if (s.IsWrongType() && read_error_.ok()) read_error_ = std::move(s);
  return s.ok();
}

void Ctx::LookupTogether(std::span<const std::string_view> keys, std::vector<store::ValueView>* views,
                         std::vector<bool>* found) {
  views->assign(keys.size(), store::ValueView{});
  found->assign(keys.size(), false);
  std::vector<store::Status> status(keys.size());
  auto reads = [&] {
    for (size_t i = 0; i < keys.size(); ++i) status[i] = Get(keys[i], &(*views)[i]);
  };
  ReadTogether(keys.size(), reads);
  if (cmd_ != nullptr && cmd_->value_type >= 0) {  // a key of another type: WRONGTYPE
    for (size_t i = 0; i < keys.size(); ++i) {
      if (status[i].ok() && (*views)[i].type != cmd_->value_type) status[i] = store::Status::WrongType();
    }
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    const bool corrupt = !status[i].ok() && !status[i].IsNotFound();
    (*found)[i] = Account(std::move(status[i]));
    if (!(*found)[i] && !corrupt) NotifyNow(kNotifyKeyMiss, "keymiss", keys[i]);
  }
}

bool Ctx::AccountRead(store::Status s, std::string_view key) {
  const bool corrupt = !s.ok() && !s.IsNotFound();
  const bool found = Account(std::move(s));
  if (!found && !corrupt) NotifyNow(kNotifyKeyMiss, "keymiss", key);
  return found;
}

void Ctx::ReadTogether(size_t keys, store::FunctionRef<void()> reads) {
  if (snapshot_ != nullptr || direct_ != nullptr || keys <= 1) {
    reads();  // EXEC, scripts: one state already; one key: its Get sees whole groups
  } else {
    server_.store->ReadTogether(reads);
  }
}

void Ctx::ReplyReadError() { out_.Error(CorruptionError(read_error_)); }

store::Status Ctx::GetElement(uint64_t inc, std::string_view member, store::ValueView* out) {
  if (direct_ != nullptr) return direct_->txn->GetElement(inc, member, out);
  return server_.store->GetElement(inc, member, out);
}

store::Status Ctx::GetElements(uint64_t inc, std::span<const std::string_view> members,
                               std::vector<std::string_view>* values, std::vector<std::shared_ptr<const void>>* pins) {
  if (direct_ == nullptr) return server_.store->GetElements(inc, members, values, pins);
  values->clear();
  for (std::string_view m : members) {
    store::ValueView v;
    if (store::Status s = direct_->txn->GetElement(inc, m, &v); !s.ok()) return s;
    values->push_back(v.value);
    pins->push_back(std::move(v.pin));
  }
  return store::Status::OK();
}

store::Txn* Ctx::script_txn() const { return direct_ != nullptr ? direct_->txn : nullptr; }

uint64_t Ctx::ElementCount(uint64_t inc) {
  if (direct_ != nullptr) return direct_->txn->ElementCount(inc);
  return server_.store->ElementCount(inc);
}

store::Status Ctx::ReadElements(uint64_t inc, std::vector<store::ElementView>* out,
                                std::vector<std::shared_ptr<const void>>* pins) {
  if (direct_ == nullptr) return server_.store->ReadElements(inc, out, pins);
  // A script's group: the views the Txn gives last only for its call, so they are copied.
  auto arena = std::make_shared<std::deque<std::string>>();
  store::Status s = direct_->txn->ForEachElement(inc, [&](std::string_view m, std::string_view v) {
    const std::string& member = arena->emplace_back(m);
    const std::string& value = arena->emplace_back(v);
    out->push_back({member, value});
  });
  pins->push_back(std::move(arena));
  return s;
}

uint64_t Ctx::ScanElements(uint64_t inc, uint64_t cursor, size_t count,
                           const std::function<void(std::string_view, std::string_view)>& fn) {
  if (direct_ == nullptr) return server_.store->ScanElements(inc, cursor, count, fn);
  // As Store::ScanElements: an element that fails its check is logged and not returned.
  (void)direct_->txn->ForEachElement(inc, fn);
  return 0;
}

store::WriteBatch& Ctx::batch() {
  store::WriteBatch& b = direct_ != nullptr ? direct_->batch : client_.batch();
  b.SelectDb(db());
  return b;
}

void Ctx::Notify(uint32_t cls, std::string_view event, std::string_view key, size_t ops_back, int64_t db) {
  if ((server_.notify_flags.load(std::memory_order_relaxed) & cls) == 0) return;
  store::WriteBatch& b = batch();
  if (b.size() <= first_op_ + ops_back) return;
  const size_t index = b.size() - 1 - ops_back;
  if (cls == kNotifyNew || cls == kNotifyKeyMiss) b.mutable_ops()[index].want_existed = true;
  notes_.push_back(Note{cls, event, std::string(key), index - first_op_, db >= 0 ? static_cast<uint32_t>(db) : this->db()});
}

void NotifyStringWrite(Ctx& c, std::string_view key, std::string_view event, bool expire) {
  constexpr uint32_t kClasses = kNotifyNew | kNotifyString | kNotifyGeneric;
  if ((c.server().notify_flags.load(std::memory_order_relaxed) & kClasses) == 0) return;  // one load per write
  c.Notify(kNotifyNew, "new", key);
  c.Notify(kNotifyString, event, key);
  if (expire) c.Notify(kNotifyGeneric, "expire", key);
}

std::optional<std::string> NotifyKey(Ctx& c, uint32_t cls, std::string_view key) {
  if ((c.server().notify_flags.load(std::memory_order_relaxed) & cls) == 0) return std::nullopt;
  return std::string(key);
}

void Ctx::NotifyNow(uint32_t cls, std::string_view event, std::string_view key) {
  NotifyKeyspaceEvent(server_, db(), cls, event, key);
}

void Ctx::Then(Finisher fn) {
  if (cmd_ != nullptr && cmd_->value_type >= 0) {
    // This command's ops read their values as its type (Op::check_type).
    auto& ops = batch().mutable_ops();
    for (size_t i = direct_ != nullptr ? 0 : first_op_; i < ops.size(); ++i) {
      ops[i].check_type = true;
      if (ops[i].kind != store::WriteBatch::Kind::kPut) ops[i].type = static_cast<uint8_t>(cmd_->value_type);
    }
  }
  if (!notes_.empty()) {
    fn = [server = &server_, notes = std::move(notes_), inner = std::move(fn)](std::span<store::OpResult> r,
                                                                                resp::ReplyBuffer& out) {
      for (const Note& n : notes) {
        if (n.op >= r.size()) continue;
        const store::OpResult& x = r[n.op];
        // keymiss: the op read its key and found none; new: it created its key; others: it wrote.
        if (n.cls == kNotifyKeyMiss ? x.existed || !x.error.ok() : !x.applied || (n.cls == kNotifyNew && x.existed)) continue;
        NotifyKeyspaceEvent(*server, n.db, n.cls, n.event, n.key);
      }
      inner(r, out);
    };
    notes_.clear();
  }
  if (direct_ != nullptr) {
    direct_->finisher = std::move(fn);
    return;
  }
  client_.AddStep(first_op_, std::move(fn));
}

bool Ctx::propagating() const { return server_.repl.active(); }

void Ctx::PropagateAs(std::span<const std::string_view> args) {
  if (!propagating()) return;
  prop_mode_ = 1;
  prop_resp_.clear();
  AppendCommand(&prop_resp_, args);
}

void Ctx::PropagateLate(std::function<void(std::span<const store::OpResult>, std::vector<PropagatedCommand>*)> late,
                        bool transaction) {
  if (!propagating()) return;
  prop_mode_ = 2;
  prop_transaction_ = transaction;
  prop_late_ = std::move(late);
}

void Ctx::Fail(std::string text) {
  if (direct_ != nullptr) {
    direct_->failed = true;
    direct_->failure = std::move(text);
    return;
  }
  client_.AddStep(client_.pending_ops(), [text = std::move(text)](std::span<store::OpResult>,
                                                                   resp::ReplyBuffer& out) {
    out.Error(text);
  });
}

void Ctx::Error(std::string_view text) { out_.Error(text); }

// ---- helpers ------------------------------------------------------------------------------------

std::vector<std::string_view> MemberArguments(const Command& cmd, std::span<const std::string_view> args) {
  std::vector<std::string_view> out;
  if (cmd.first_member <= 0) return out;
  for (size_t i = static_cast<size_t>(cmd.first_member); i < args.size();
       i += static_cast<size_t>(std::max(cmd.member_step, 1))) {
    out.push_back(args[i]);
  }
  // Distinct in O(n log n): a client may name a million members (a find per member made MULTI /
  // HMGET of 200,000 fields / EXEC hold its event loop for 27 s).
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

store::ElementSelection ElementsRead(const Command& cmd, std::span<const std::string_view> args) {
  store::ElementSelection which;
  if (cmd.first_member == kAllElements) {
    which.all = true;
  } else if (cmd.first_member == kListRange) {
    if (args.size() >= 3 && resp::ParseInt64(args[2], &which.start) &&
        (args.size() < 4 || resp::ParseInt64(args[3], &which.stop))) {
      if (args.size() < 4) which.stop = which.start;
      which.list_range = true;
    }
  } else if (cmd.first_member == kScanElements) {
    ScanArgs a;
    if (args.size() >= 3 && ParseScanArgs(args.subspan(1), &a, false).empty()) {
      which.scan = true;
      which.cursor = a.cursor;
      which.count = static_cast<size_t>(a.count);
    }
  } else {
    for (std::string_view m : MemberArguments(cmd, args)) which.members.emplace_back(m);
  }
  return which;
}

std::string WrongArity(std::string_view name) {
  return "wrong number of arguments for '" + ToLower(name) + "' command";
}

std::string ParseIntArgument(std::string_view arg, std::string_view msg, int32_t* out) {
  int64_t v = 0;
  if (!resp::ParseInt64(arg, &v)) return std::string(msg.empty() ? err::kNotInteger : msg);
  if (v < INT32_MIN || v > INT32_MAX) {
    return msg.empty() ? "value is out of range, value must between -2147483648 and 2147483647" : std::string(msg);
  }
  *out = static_cast<int32_t>(v);
  return {};
}

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string ToUpper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string StorageError(const store::Status& s) {
  return "-MISCONF Errors writing to the AOF file: " + s.ToString();
}

std::string CorruptionError(const store::Status& s) {
  return s.IsWrongType() ? std::string(err::kWrongType) : s.ToString();
}

const Command& StatsTarget(const Command& cmd, std::span<const std::string_view> args) {
  if (!cmd.subcommands.empty() && args.size() >= 2) {
    if (const Command* sub = FindSubcommand(cmd, args[1])) return *sub;
  }
  return cmd;
}

// ---- registries ---------------------------------------------------------------------------------

AccessClock::AccessClock() : stamps_(new std::atomic<uint16_t>[kSlots]) {
  for (size_t i = 0; i < kSlots; ++i) stamps_[i].store(0, std::memory_order_relaxed);
}

size_t AccessClock::Slot(std::string_view key) {
  // A few multiplies, not std::hash's byte loop (~80 instructions for a 16-byte key, twice per
  // command: Prefetch and Touch): a slot is shared by whatever keys land in it anyway.
  uint64_t h = 0x9e3779b97f4a7c15ull ^ key.size();
  size_t i = 0;
  for (; i + 8 <= key.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, key.data() + i, 8);
    h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
  }
  uint64_t tail = 0;
  if (i < key.size()) std::memcpy(&tail, key.data() + i, key.size() - i);  // an empty key's data may be null
  h = (h ^ tail) * 0x94d049bb133111ebull;
  return (h ^ (h >> 29)) & (kSlots - 1);
}

void AccessClock::Touch(std::string_view key, int64_t now_ms) {
  // Written only when the second changed: under load most touches find it current, and a read
  // leaves the cache line shared between the I/O threads instead of bouncing it.
  std::atomic<uint16_t>& slot = stamps_[Slot(key)];
  const uint16_t now = Stamp(now_ms / 1000);
  if (slot.load(std::memory_order_relaxed) != now) slot.store(now, std::memory_order_relaxed);
}

int64_t AccessClock::IdleSeconds(std::string_view key, int64_t now_ms, int64_t start_ms) const {
  const uint16_t at = stamps_[Slot(key)].load(std::memory_order_relaxed);
  if (at == 0) return std::max<int64_t>(0, (now_ms - start_ms) / 1000);
  return (int64_t{Stamp(now_ms / 1000)} - at + kPeriod) % kPeriod;  // wraps: reads low
}

void AccessClock::SetIdle(std::string_view key, int64_t idle_seconds, int64_t now_ms) {
  const int64_t at = now_ms / 1000 - std::min<int64_t>(idle_seconds, kPeriod - 1);
  stamps_[Slot(key)].store(Stamp(at), std::memory_order_relaxed);
}

bool KeyPositions(const Command& cmd, size_t argc, std::vector<size_t>* out) {
  out->clear();
  if (cmd.first_key <= 0) return false;
  const int64_t n = static_cast<int64_t>(argc);
  const int64_t last = cmd.last_key < 0 ? n + cmd.last_key : cmd.last_key;
  const int64_t step = cmd.key_step > 0 ? cmd.key_step : 1;
  for (int64_t i = cmd.first_key; i <= last && i < n; i += step) out->push_back(static_cast<size_t>(i));
  return true;
}

void WatchRegistry::Watch(ClientSession* client, const std::string& key) {
  std::lock_guard lock(mu_);
  auto& v = watchers_[key];
  if (std::find(v.begin(), v.end(), client) == v.end()) {
    v.push_back(client);
    count_.fetch_add(1, std::memory_order_release);
  }
}

void WatchRegistry::Unwatch(ClientSession* client, const std::vector<std::string>& keys) {
  std::lock_guard lock(mu_);
  for (const std::string& key : keys) {
    auto it = watchers_.find(key);
    if (it == watchers_.end()) continue;
    auto& v = it->second;
    auto pos = std::find(v.begin(), v.end(), client);
    if (pos != v.end()) {
      v.erase(pos);
      count_.fetch_sub(1, std::memory_order_release);
    }
    if (v.empty()) watchers_.erase(it);
  }
}

void WatchRegistry::Touch(const store::WriteBatch& batch, const store::WriteBatch::KeyProbe& live) {
  using Kind = store::WriteBatch::Kind;
  std::lock_guard lock(mu_);
  for (const auto& op : batch.ops()) {
    if (op.kind == Kind::kReadKeys) continue;  // reads only
    if (op.kind == Kind::kDeleteAll || op.kind == Kind::kDeleteDb || op.kind == Kind::kSwapDb) {
      for (auto& [watched, clients] : watchers_) {
        const uint32_t db = static_cast<uint8_t>(watched[0]);
        const std::string_view key = std::string_view(watched).substr(1);
        bool touched = false;
        if (op.kind == Kind::kDeleteAll) {
          touched = live(db, key);
        } else if (op.kind == Kind::kDeleteDb) {
          touched = db == op.db && live(db, key);
        } else if (op.db != op.db2 && (db == op.db || db == op.db2)) {
          // SWAPDB: the key is replaced by the other db's (SWAPDB of a db with itself touches
          // nothing, as Redis's dbSwapDatabases returns before touchAllWatchedKeysInDb)
          touched = live(op.db, key) || live(op.db2, key);
        }
        if (!touched) continue;
        for (ClientSession* c : clients) c->MarkWatchDirty();
      }
      continue;
    }
  }
}

void WatchRegistry::TouchWritten(const store::WriteBatch& batch, std::span<const store::OpResult> results) {
  using Kind = store::WriteBatch::Kind;
  std::lock_guard lock(mu_);
  const auto& ops = batch.ops();
  for (size_t i = 0; i < ops.size() && i < results.size(); ++i) {
    const auto& op = ops[i];
    if (!(results[i].applied || results[i].touched) || op.kind == Kind::kReadKeys || op.kind == Kind::kDeleteAll ||
        op.kind == Kind::kDeleteDb || op.kind == Kind::kSwapDb || (op.kind == Kind::kRun && op.key.empty())) {
      continue;  // a script's kRun: its own ops are touched one by one (ScriptEngine)
    }
    auto mark = [&](uint32_t db) {
      auto it = watchers_.find(Ctx::SnapshotKey(db, op.key));
      if (it == watchers_.end()) return;
      for (ClientSession* c : it->second) c->MarkWatchDirty();
    };
    mark(op.db);
    if (op.kind == Kind::kMove) mark(op.db2);
  }
}

void WatchRegistry::TouchKey(uint32_t db, std::string_view key) {
  if (empty()) return;
  std::lock_guard lock(mu_);
  auto it = watchers_.find(Ctx::SnapshotKey(db, key));
  if (it == watchers_.end()) return;
  for (ClientSession* c : it->second) c->MarkWatchDirty();
}

void ErrorStats::Add(std::string_view text) {
  // Redis's afterErrorReply: the word after '-' (searched in the first 32 bytes), else ERR.
  std::string_view name = "ERR";
  if (!text.empty() && text[0] == '-') {
    const size_t space = text.substr(0, 32).find(' ');
    if (space != std::string_view::npos) name = text.substr(1, space - 1);
  }
  std::lock_guard lock(mu_);
  ++counts_[std::string(name)];
}

std::vector<std::pair<std::string, uint64_t>> ErrorStats::Snapshot() const {
  std::vector<std::pair<std::string, uint64_t>> out;
  {
    std::lock_guard lock(mu_);
    out.assign(counts_.begin(), counts_.end());
  }
  std::sort(out.begin(), out.end());
  return out;
}

void ErrorStats::Reset() {
  std::lock_guard lock(mu_);
  counts_.clear();
}

void ClientRegistry::Add(ClientSession* client) {
  std::lock_guard lock(mu_);
  clients_.push_back(client);
}

void ClientRegistry::Remove(ClientSession* client) {
  std::lock_guard lock(mu_);
  clients_.erase(std::remove(clients_.begin(), clients_.end(), client), clients_.end());
}

size_t ClientRegistry::size() const {
  std::lock_guard lock(mu_);
  return clients_.size();
}

void ClientRegistry::ForEach(const std::function<void(ClientSession&)>& fn) const {
  std::lock_guard lock(mu_);
  for (ClientSession* c : clients_) fn(*c);
}

bool ClientRegistry::WithClient(uint64_t id, const std::function<void(ClientSession&)>& fn) const {
  std::lock_guard lock(mu_);
  for (ClientSession* c : clients_) {
    if (c->id() == id) {
      fn(*c);
      return true;
    }
  }
  return false;
}

void ClientRegistry::RemoveIf(const std::function<bool(ClientSession&)>& pred) {
  std::lock_guard lock(mu_);
  clients_.erase(std::remove_if(clients_.begin(), clients_.end(), [&](ClientSession* c) { return pred(*c); }),
                 clients_.end());
}

// ---- ClientSession ------------------------------------------------------------------------------

ClientSession::ClientSession(ServerState& server, net::Link* link)
    : server_(server),
      link_(link),
      inbox_(ThisThreadInbox()),
      id_(server.next_client_id.fetch_add(1)),
      created_ms_(store::NowMs()),
      last_interaction_ms_(created_ms_) {
  user_ = server_.acl.Default();
  acl_version_ = server_.acl.version();
  authenticated_ = user_->enabled && user_->nopass;
  link_->out().set_error_observer(this);
  RefreshLimits();
  server_.clients.Add(this);
  server_.counters.connections.fetch_add(1, std::memory_order_relaxed);
}

void ClientSession::OnClose() {
  // Gone for CLIENT LIST / KILL, INFO clients and the rest at once, as Redis's freeClient; the
  // session itself lives until its work in flight completes.
  gone_.store(true);  // (before RemoveClient below: see gone())
  server_.clients.Remove(this);
  if (parked_) server_.pause.Unpark(link_);  // no longer waiting for the pause (blocked_clients)
  if (master_link_) {
    spdlog::info("replication: the link with the primary ({}) closed", link_->peer());
    server_.replica_of.LinkDown(master_gen_);
  }
  if (replica_ == nullptr && repl_role_.load(std::memory_order_relaxed) == kRoleReplica) {
    // A replica that hung up while its full sync was prepared (its socket is watched meanwhile):
    // no longer counted (INFO connected_slaves) nor kept the stream for, as Redis's freeClient.
    spdlog::info("replication: replica {} hung up during its full sync", link_->peer());
    server_.repl.RemoveClient(id_);
  }
}

ClientSession::~ClientSession() {
  if (master_link_) server_.replica_of.LinkClosed(master_gen_);
  if (replica_) {
    spdlog::info("replication: connection with replica {} lost", link_->peer());
    server_.repl.Remove(replica_.get());
  }
  if (blocked_) server_.blocking.Cancel(blocked_);
  if (monitor_.load(std::memory_order_relaxed)) server_.monitors.Remove(this);
  if (tracking_on_) server_.tracking.Disable(id_);
  if (subscriber_ != nullptr) server_.pubsub.UnsubscribeAll(subscriber_.get());
  link_->out().set_error_observer(nullptr);
  if (!watched_.empty()) server_.watches.Unwatch(this, WatchedKeyNames());
  server_.clients.Remove(this);
  FlushCounters();
}

bool ClientSession::SubscribedBeyond(const AclUser& user) const {
  if (subscriber_ == nullptr || user.all_channels) return false;
  for (const std::string& p : subscriber_->patterns) {
    if (!AclChannelAllowed(user, p, true)) return true;
  }
  for (const auto* set : {&subscriber_->channels, &subscriber_->shard_channels}) {
    for (std::string_view ch : *set) {
      if (!AclChannelAllowed(user, ch, false)) return true;
    }
  }
  return false;
}

uint32_t ClientSession::idle_timeout_seconds() const {
  if (replica_ || master_link_) return 0;  // replication links are never idle clients (repl-timeout covers them)
  // Nor, as in Redis (clientsCronHandleTimeout), a subscriber or a MONITOR: they wait to be sent
  // to, not to send.
  if (subscribed() || monitoring()) return 0;
  return server_.timeout.load(std::memory_order_relaxed);
}

void ClientSession::RefreshLimits() {
  const uint64_t epoch = server_.config_epoch.load(std::memory_order_acquire);
  if (epoch == config_epoch_) return;
  config_epoch_ = epoch;
  resp::ParserLimits limits = link_->parser().limits();
  limits.max_bulk_len = server_.proto_max_bulk_len.load(std::memory_order_relaxed);
  link_->parser().set_limits(limits);
  link_->parser().set_auth_required(!authenticated_);
}

void ClientSession::FlushCounters() {
  // Added once per read: shared atomics touched per command would bounce their cache line
  // between I/O threads.
  auto flush = [](uint64_t* local, std::atomic<uint64_t>* shared) {
    if (*local > 0) {
      shared->fetch_add(*local, std::memory_order_relaxed);
      *local = 0;
    }
  };
  flush(&commands_, &server_.counters.commands);
  flush(&hits_, &server_.counters.keyspace_hits);
  flush(&misses_, &server_.counters.keyspace_misses);
  flush(&errors_, &server_.counters.error_replies);
}

void ClientSession::set_protocol(resp::Protocol p) {
  protocol_ = p;
  if (subscriber_ != nullptr) subscriber_->resp.store(static_cast<int>(p), std::memory_order_relaxed);
  link_->out().set_protocol(p);
  resp_.store(static_cast<int>(p), std::memory_order_relaxed);
}

void ClientSession::set_authenticated(bool yes) {
  authenticated_ = yes;
  link_->parser().set_auth_required(!yes);
}

void ClientSession::Authenticate(std::shared_ptr<const AclUser> user) {
  {
    std::lock_guard lock(info_mu_);
    user_name_ = user->name;
  }
  user_ = std::move(user);
  acl_version_ = server_.acl.version();
  set_authenticated(true);
}

std::string ClientSession::user_name() const {
  std::lock_guard lock(info_mu_);
  return user_name_;
}

void ClientSession::RefreshUser() {
  acl_version_ = server_.acl.version();
  std::shared_ptr<const AclUser> now = server_.acl.Get(user_->name);
  if (now == nullptr) {
    // Deleted (ACL DELUSER closes its connections; until then it may run nothing): a user of the
    // same name with no permissions.
    auto nobody = std::make_shared<AclUser>();
    nobody->name = user_->name;
    now = std::move(nobody);
  }
  user_ = std::move(now);
}

std::string ClientSession::CheckAcl(const Command& cmd, std::span<const std::string_view> args, bool in_exec) {
  const Command* sub = cmd.subcommands.empty() || args.size() < 2 ? nullptr : FindSubcommand(cmd, args[1]);
  // CLIENT LIST in the log entry names the refused command (cmd=), as Redis's.
  last_command_.store(&cmd, std::memory_order_relaxed);
  last_subcommand_.store(sub, std::memory_order_relaxed);
  size_t index = 0;
  const AclDenial denial = AclCheck(*user_, cmd, sub, args, &index);
  if (denial == AclDenial::kNone) return {};
  AclRegistry::LogEntry e = AclDenialEntry(denial, cmd, sub, args, index, in_multi_ || in_exec ? "multi" : "toplevel", user_->name);
  e.client_info = Describe(e.ctime_ms);
  server_.acl.Log(e);
  if (in_exec) {
    return std::string("-NOPERM ACLs rules changed between the moment the transaction was accumulated and the EXEC "
                       "call. This command is no longer allowed for the following reason: ") +
           (denial == AclDenial::kCommand   ? "no permission to execute the command or subcommand"
            : denial == AclDenial::kChannel ? "no permission to access one of the channels used as arguments"
                                            : "no permission to touch the specified keys");
  }
  if (denial == AclDenial::kCommand) {
    return "-NOPERM this user has no permissions to run the '" + e.object + "' command";
  }
  if (denial == AclDenial::kChannel) {
    return "-NOPERM this user has no permissions to access one of the channels used as arguments";
  }
  return "-NOPERM this user has no permissions to access one of the keys used as arguments";
}

std::string ClientSession::name() const {
  std::lock_guard lock(info_mu_);
  return name_;
}

void ClientSession::set_name(std::string name) {
  std::lock_guard lock(info_mu_);
  name_ = std::move(name);
}

void ClientSession::set_lib(std::string_view field, std::string value) {
  std::lock_guard lock(info_mu_);
  (field == "lib-name" ? lib_name_ : lib_ver_) = std::move(value);
}

void ClientSession::AddStep(size_t first_op, Finisher fn) {
  steps_.push_back(Step{first_op, batch_.size() - first_op, std::move(fn), error_target_, link_->out().muted()});
}

void ClientSession::SetReplyMode(std::string_view mode) {
  if (mode == "on") {
    reply_off_ = false;
    skip_requested_ = false;
    skip_armed_ = false;
    link_->out().set_muted(false);  // ON's own OK is sent
  } else if (mode == "off") {
    reply_off_ = true;
    link_->out().set_muted(true);
  } else {  // skip: this reply and the next command's
    if (!reply_off_) skip_requested_ = true;
    link_->out().set_muted(true);
  }
}

void ClientSession::OnErrorReply(std::string_view text) {
  ++errors_;
  server_.errors.Add(text);
  // A suspended command's late error (a blocking pop or WAIT ended by CLIENT UNBLOCK ... ERROR)
  // is its failed call, as in Redis.
  const Command* failed = error_target_ != nullptr ? error_target_ : suspended_target_;
  if (failed != nullptr) failed->stats->AddFailed();
  if (master_link_ || replica_) {
    // An error a replication link would send (it is not sent): a command of the primary's stream
    // failed here, or a replica's command did. Logged and counted as Redis's afterErrorReply; under
    // propagation-error-behavior panic / panic-on-replicas a read-only replica stops rather than
    // go on diverging from its primary (Redis's test configuration sets panic).
    const char* from = master_link_ ? "replica" : "master";
    const char* to = master_link_ ? "master" : "replica";
    const std::string_view command = error_target_ != nullptr ? error_target_->name : "<unknown>";
    // The error as the command gave it, as Redis's afterErrorReply logs it ("-CODE message" with
    // its dash, a plain "message" without the "ERR " the reply adds).
    spdlog::warn("== CRITICAL == This {} is sending an error to its {}: '{}' after processing the command '{}'", from,
                 to, text.substr(0, 4096), command);
    server_.unexpected_error_replies.fetch_add(1, std::memory_order_relaxed);
    if (master_link_ && server_.replica_read_only.load(std::memory_order_relaxed) &&
        server_.panic_on_propagation_error.load(std::memory_order_relaxed)) {
      spdlog::critical("This replica panicked sending an error to its master after processing the command '{}'",
                       command);
      spdlog::shutdown();
      std::abort();
    }
  }
}

namespace {

// The calling thread's shard of every CommandStats, and whether it owns it (see CommandStats).
struct StatsShard {
  size_t index;
  bool owned;
};

StatsShard ThisThreadsShard(size_t shards) {
  static std::atomic<size_t> next{0};
  thread_local const StatsShard mine = [&] {
    const size_t n = next.fetch_add(1, std::memory_order_relaxed);
    return n + 1 < shards ? StatsShard{n, true} : StatsShard{shards - 1, false};
  }();
  return mine;
}

// Adds `d` to a counter: a plain load and store by the shard's owner, an atomic add otherwise.
void Bump(std::atomic<uint64_t>& a, uint64_t d, bool owned) {
  if (owned) {
    a.store(a.load(std::memory_order_relaxed) + d, std::memory_order_relaxed);
  } else {
    a.fetch_add(d, std::memory_order_relaxed);
  }
}

}  // namespace

void CommandStats::AddCall(uint64_t nsec, bool histogram) {
  const StatsShard at = ThisThreadsShard(kShards);
  Shard& s = shards_[at.index];
  Bump(s.calls, 1, at.owned);
  Bump(s.nsec, nsec, at.owned);
  if (!histogram) return;
  const uint64_t us = (nsec + 999) / 1000;  // rounded up: 1 ns..1 µs is the first bucket
  size_t b = us <= 1 ? 0 : static_cast<size_t>(std::bit_width(us - 1));
  if (b >= kBuckets) b = kBuckets - 1;
  Bump(s.latency[b], 1, at.owned);
}

void CommandStats::AddRejected() {
  const StatsShard at = ThisThreadsShard(kShards);
  Bump(shards_[at.index].rejected_calls, 1, at.owned);
}

void CommandStats::AddFailed() {
  const StatsShard at = ThisThreadsShard(kShards);
  Bump(shards_[at.index].failed_calls, 1, at.owned);
}

CommandStats::Totals CommandStats::Sum() const {
  Totals t;
  for (const Shard& s : shards_) {
    t.calls += s.calls.load(std::memory_order_relaxed);
    t.nsec += s.nsec.load(std::memory_order_relaxed);
    t.rejected_calls += s.rejected_calls.load(std::memory_order_relaxed);
    t.failed_calls += s.failed_calls.load(std::memory_order_relaxed);
    for (size_t i = 0; i < kBuckets; ++i) t.latency[i] += s.latency[i].load(std::memory_order_relaxed);
  }
  return t;
}

CommandStats::Totals CommandStats::Read() const {
  Totals t = Sum();  // every shard only grows, so each sum is at least the baseline taken earlier
  std::lock_guard lock(mu_);
  t.calls -= base_.calls;
  t.nsec -= base_.nsec;
  t.rejected_calls -= base_.rejected_calls;
  t.failed_calls -= base_.failed_calls;
  for (size_t i = 0; i < kBuckets; ++i) t.latency[i] -= base_.latency[i];
  return t;
}

void CommandStats::Reset() {
  const Totals now = Sum();
  std::lock_guard lock(mu_);
  base_ = now;
}

double CommandStats::Totals::Percentile(double p) const {
  static_assert(kBuckets == store::Histogram::kBuckets);
  store::Histogram h;
  for (size_t i = 0; i < kBuckets; ++i) {
    h.buckets[i] = latency[i];
    h.count += latency[i];
  }
  return static_cast<double>(h.Percentile(p));
}

std::vector<bool> RedactedArguments(std::span<const std::string_view> args) {
  std::vector<bool> redact(args.size(), false);
  if (args.empty()) return redact;
  if (EqualsIgnoreCase(args[0], "auth")) {
    for (size_t i = 1; i < args.size(); ++i) redact[i] = true;
  } else if (EqualsIgnoreCase(args[0], "hello")) {
    for (size_t j = 2; j + 2 < args.size(); ++j) {
      if (EqualsIgnoreCase(args[j], "auth")) redact[j + 1] = redact[j + 2] = true;
    }
  } else if (EqualsIgnoreCase(args[0], "acl") && args.size() > 2 && EqualsIgnoreCase(args[1], "setuser")) {
    for (size_t i = 2; i < args.size(); ++i) redact[i] = true;  // the user's name and rules (Redis)
  } else if (EqualsIgnoreCase(args[0], "config") && args.size() > 3 && EqualsIgnoreCase(args[1], "set")) {
    // The values of Redis's sensitive directives (SENSITIVE_CONFIG), each name-value pair.
    for (size_t j = 2; j + 1 < args.size(); j += 2) {
      if (EqualsIgnoreCase(args[j], "masterauth") || EqualsIgnoreCase(args[j], "masteruser") ||
          EqualsIgnoreCase(args[j], "requirepass")) {
        redact[j + 1] = true;
      }
    }
  } else if (EqualsIgnoreCase(args[0], "migrate")) {
    for (size_t j = 6; j < args.size(); ++j) {
      if (EqualsIgnoreCase(args[j], "keys")) break;
      if (EqualsIgnoreCase(args[j], "auth") && j + 1 < args.size()) {
        redact[j + 1] = true;
      } else if (EqualsIgnoreCase(args[j], "auth2") && j + 2 < args.size()) {
        redact[j + 1] = redact[j + 2] = true;
      }
    }
  }
  return redact;
}

std::function<void(const store::Status&)> ReplyOkWhenDone(Ctx& c) {
  ClientSession* client = &c.client();
  std::shared_ptr<net::Link> keep = client->link().Self();
  client->Suspend();
  return [client, keep](const store::Status& s) {
    keep->Post([client, s] {
      if (s.ok()) {
        client->link().out().Ok();
      } else {
        client->link().out().Error(StorageError(s));
      }
      client->Finish();
    });
  };
}

void ClientSession::StartMonitor() {
  if (monitor_.exchange(true)) return;
  server_.monitors.Add(this);
}

void MonitorRegistry::Add(ClientSession* client) {
  std::lock_guard lock(mu_);
  monitors_.push_back(client);
  count_.store(monitors_.size(), std::memory_order_release);
}

void MonitorRegistry::Remove(ClientSession* client) {
  std::lock_guard lock(mu_);
  monitors_.erase(std::remove(monitors_.begin(), monitors_.end(), client), monitors_.end());
  count_.store(monitors_.size(), std::memory_order_release);
}

void MonitorRegistry::Feed(const ClientSession& from, std::span<const std::string_view> args) {
  Feed(from.db(), from.peer(), args);
}

void MonitorRegistry::Feed(uint32_t db, std::string_view source, std::span<const std::string_view> args) {
  Send(Line(db, source, args));
}

std::string MonitorRegistry::Line(uint32_t db, std::string_view source,
                                  std::span<const std::string_view> args) {
  timeval tv{};
  gettimeofday(&tv, nullptr);
  char head[80];
  std::snprintf(head, sizeof(head), "+%ld.%06ld [%u ", static_cast<long>(tv.tv_sec), static_cast<long>(tv.tv_usec), db);
  std::string line = head;
  line += source;
  line += "]";
  const std::vector<bool> redact = RedactedArguments(args);
  for (size_t i = 0; i < args.size(); ++i) {
    line += " \"";
    if (redact[i]) {
      line += "(redacted)";
    } else {
      // Redis's sdscatrepr.
      for (char ch : args[i]) {
        const auto u = static_cast<unsigned char>(ch);
        switch (ch) {
          case '\\': line += "\\\\"; break;
          case '"': line += "\\\""; break;
          case '\n': line += "\\n"; break;
          case '\r': line += "\\r"; break;
          case '\t': line += "\\t"; break;
          case '\a': line += "\\a"; break;
          case '\b': line += "\\b"; break;
          default:
            if (std::isprint(u)) {
              line += ch;
            } else {
              char hex[8];
              std::snprintf(hex, sizeof(hex), "\\x%02x", u);
              line += hex;
            }
        }
      }
    }
    line += "\"";
  }
  line += "\r\n";
  return line;
}

void MonitorRegistry::Send(std::string line) {
  auto shared = std::make_shared<const std::string>(std::move(line));
  std::lock_guard lock(mu_);
  for (ClientSession* m : monitors_) {  // the sender too, if it monitors (as Redis)
    net::Link* link = &m->link();
    link->Post([link, shared] {
      link->out().Raw(*shared);
      link->Flush();
    });
  }
}

void ClientSession::RunHandler(const Command& cmd, Ctx& ctx, bool feed) {
  const Command& target = StatsTarget(cmd, ctx.args());
  error_target_ = &target;
  ctx.set_command(&cmd);
  if ((cmd.flags & kWrite) != 0) batch_.BeginCommand();
  // The keys' access clock (OBJECT IDLETIME), except for the commands Redis runs without touching.
  if (target.first_key > 0 && (target.flags & kNoTouch) == 0 && (!no_touch_ || cmd.name == "touch")) {
    timespec coarse{};
    clock_gettime(CLOCK_REALTIME_COARSE, &coarse);  // the clock has whole seconds: no need for more
    const int64_t now = int64_t{coarse.tv_sec} * 1000 + coarse.tv_nsec / 1'000'000;
    KeyPositions(target, ctx.argc(), &key_positions_);
    for (size_t i : key_positions_) server_.access.Touch(ctx.arg(i), now);
  }
  // MONITOR shows a script before what it runs (Redis's evalCommand feeds it first); other
  // commands after they ran (below).
  const bool runs_script = ((cmd.flags | target.flags) & kRunsScript) != 0;
  const bool shown =
      feed && !server_.monitors.empty() && ((cmd.flags | target.flags) & kAdmin) == 0;
  if (shown && runs_script) FeedMonitors(ctx.args());
  const size_t first_op = batch_.size();
  const bool was_blocked = blocked_ != nullptr;
  const int64_t t0 = StatsNowNs();
  cmd.handler(ctx);
  const int64_t nsec = StatsSinceNs(t0);
  if (runs_script && batch_.size() > first_op) script_in_batch_ = true;
  // What it propagates to replicas (one relaxed load while none is attached).
  // (Not a replica's own: its stream is its primary's alone, ReplicationFeed::Append.)
  const bool propagates = server_.repl.active() && !master_link_ && !server_.repl.forwarding();
  if (propagates && batch_.size() > first_op &&
      (((cmd.flags | target.flags) & kWrite) != 0 || ctx.propagation_mode() != 0)) {
    Capture(ctx, first_op);
  }
  if ((cmd.flags & kWakes) != 0 && batch_.size() > first_op && server_.blocking.blocked() > 0 && !ctx.inline_only()) {
    ServeAfter(ctx, cmd, propagates);
  }
  const int64_t usec = nsec / 1000;
  target.stats->AddCall(static_cast<uint64_t>(nsec), server_.latency_tracking.load(std::memory_order_relaxed));
  error_target_ = nullptr;
  // EXEC itself is not logged (kSkipSlowlog), the commands it ran are (as Redis); AUTH and HELLO
  // carry secrets.
  if (!was_blocked && blocked_ != nullptr) {
    // It blocked: logged when served (EndBlocked).
    blocked_args_.assign(ctx.args().begin(), ctx.args().end());
    blocked_usec_ = usec;
  } else if (server_.slowlog.Wants(usec) && (cmd.flags & kSkipSlowlog) == 0 && cmd.name != "auth" &&
             cmd.name != "hello") {
    server_.slowlog.Add(ctx.args(), RedactedArguments(ctx.args()), usec, link_->peer(), name());
  }
  server_.latency.AddIfNeeded((cmd.flags & kFast) != 0 ? "fast-command" : "command", usec / 1000);
  // MONITOR, after the command ran (as Redis's call()); admin commands are not shown.
  const bool fed_itself = std::exchange(exec_fed_, false);
  if (shown && !runs_script && !fed_itself) FeedMonitors(ctx.args());
}

void ClientSession::FeedMonitors(std::span<const std::string_view> args) {
  if (!script_in_batch_) {
    server_.monitors.Feed(*this, args);
    return;
  }
  batch_.BeginCommand();  // an op of its own, and the command's ops after it theirs
  batch_.Run([monitors = &server_.monitors,
              line = MonitorRegistry::Line(db(), link_->peer(), args)](store::Txn&) mutable {
    monitors->Send(std::move(line));
  });
  batch_.BeginCommand();
}

void ClientSession::ServeAfter(Ctx& ctx, const Command& cmd, bool propagates) {
  if (!wake_cursor_) wake_cursor_ = std::make_shared<size_t>(kNoRecord);
  auto served = std::make_shared<std::vector<ServedPop>>();
  int64_t a = -1;
  int64_t b = -1;
  if (cmd.name == "swapdb" && !(resp::ParseInt64(ctx.arg(1), &a) && resp::ParseInt64(ctx.arg(2), &b))) return;
  batch_.Run([blocking = &server_.blocking, cursor = wake_cursor_, served, a, b](store::Txn& txn) {
    if (a >= 0) {
      blocking->ServeSwapped(txn, static_cast<uint32_t>(a), static_cast<uint32_t>(b), served.get());
    } else {
      blocking->ServeWritten(txn, *cursor == kNoRecord ? txn.BatchBegan() : *cursor, served.get());
    }
    *cursor = txn.Written();
  });
  ServesBlocked(served);  // replied to after the batch's steps (Complete)
  if (propagates) {  // replicas get the pops after the command (when the op popped)
    Propagation p;
    p.first_op = batch_.size() - 1;
    p.op_count = 1;
    p.late = [served](std::span<const store::OpResult>, std::vector<PropagatedCommand>* out) {
      BlockingRegistry::AppendPropagations(*served, out);
    };
    props_.push_back(std::move(p));
  }
}

void ClientSession::Capture(Ctx& ctx, size_t first_op) {
  Propagation p;
  p.first_op = first_op;
  p.op_count = batch_.size() - first_op;
  p.always = ctx.propagated_always();
  switch (ctx.propagation_mode()) {
    case 0:
      p.command.db = ctx.db();
      AppendCommand(&p.command.resp, ctx.args());
      break;
    case 1:
      p.command.db = ctx.db();
      p.command.resp = std::move(ctx.propagated_resp());
      break;
    default:
      p.late = std::move(ctx.propagated_late());
      p.transaction = ctx.propagated_transaction();
  }
  props_.push_back(std::move(p));
  if (ctx.propagated_after()) {
    Propagation after;
    after.first_op = props_.back().first_op;
    after.op_count = props_.back().op_count;
    after.late = [fn = std::move(ctx.propagated_after())](std::span<const store::OpResult>,
                                                          std::vector<PropagatedCommand>* out) { fn(out); };
    props_.push_back(std::move(after));
  }
}

void ClientSession::BecomeReplica(std::shared_ptr<Replica> r, bool stream_on_ack) {
  replica_ = std::move(r);
  stream_on_ack_ = stream_on_ack;
  repl_role_.store(kRoleReplica, std::memory_order_relaxed);
  reply_off_ = true;  // a replica gets the stream, never replies (Redis's CLIENT_SLAVE)
  link_->set_replica();  // the replica output-buffer class, past its snapshot (queued already)
}

void ClientSession::BecomeMasterLink(uint64_t gen, uint64_t offset) {
  master_link_ = true;
  repl_role_.store(kRoleMaster, std::memory_order_relaxed);
  master_gen_ = gen;
  master_base_ = offset;
  last_cmd_end_ = offset;
  reply_off_ = true;  // the primary gets no replies, but to REPLCONF GETACK (Redis's master client)
  set_name("");
}

void ClientSession::SendAck() {
  const std::string offset = std::to_string(server_.replica_of.applied());
  std::string ack;
  AppendCommand(&ack, {"REPLCONF", "ACK", offset});
  link_->out().Push(ack);
  link_->Flush();
}

void ClientSession::ForwardFromMaster(std::span<const std::string_view> args) {
  const uint64_t end = master_base_ + link_->input_consumed();
  server_.replica_of.Heard();
  server_.replica_of.Read(end);
  if (forwarded_) {  // EXEC: with its batch
    forwarded_ = false;
    return;
  }
  std::string raw;
  AppendCommand(&raw, args);
  if (end - last_cmd_end_ != raw.size()) {
    // This server's stream would no longer match its primary's byte for byte (its replicas, and a
    // partial resync after a promotion, count on it): never expected (the primary's stream is
    // canonical RESP), so the history is dropped and the next sync is a full one.
    spdlog::error("replication: a command of the primary's stream ({}) took {} bytes at offset {}, forwarded as {}: "
                  "this server's stream no longer matches; dropping the link and the history for a full sync",
                  args[0], end - last_cmd_end_, last_cmd_end_, raw.size());
    server_.repl.ForgetHistory();
    link_->CloseNow();
    return;
  }
  last_cmd_end_ = end;
  // A SELECT's database goes with it: a partial resync continues the stream in it. (Its argument,
  // not db(): inside the primary's MULTI it is queued, and selects at EXEC.)
  uint32_t selects = ReplicationFeed::kNoDb;
  if (int64_t n = 0; args.size() == 2 && EqualsIgnoreCase(args[0], "select") && resp::ParseInt64(args[1], &n) &&
                     n >= 0 && n < static_cast<int64_t>(server_.store->Databases())) {
    selects = static_cast<uint32_t>(n);
  }
  if (in_multi_) {
    // MULTI or a queued command: held until the EXEC (or a DISCARD) ends the transaction.
    if (multi_forward_.empty()) {
      multi_start_ = end - raw.size();
      multi_selects_ = ReplicationFeed::kNoDb;
    }
    multi_forward_ += raw;
    if (selects != ReplicationFeed::kNoDb) multi_selects_ = selects;
    return;
  }
  if (!multi_forward_.empty()) {
    // The transaction ended without a write to submit (an EXEC of reads, an aborted one, a
    // DISCARD): forwarded whole now. (Only an EXEC ran its queued SELECT.)
    if (selects == ReplicationFeed::kNoDb && EqualsIgnoreCase(args[0], "exec")) selects = multi_selects_;
    raw.insert(0, multi_forward_);
    multi_forward_.clear();
  }
  if (!steps_.empty()) {
    // After the writes pending before it (its own included), once they are durable.
    Propagation p;
    p.first_op = batch_.size();
    p.always = true;
    p.command = PropagatedCommand{ReplicationFeed::kNoDb, std::move(raw), selects};
    props_.push_back(std::move(p));
    return;
  }
  server_.repl.Forward(raw, selects);
  if (!busy_) server_.replica_of.Applied(end);
}

void ClientSession::ReplyError(std::string_view text) {
  if (steps_.empty()) {
    link_->out().Error(text);
    return;
  }
  AddStep(batch_.size(), [t = std::string(text)](std::span<store::OpResult>, resp::ReplyBuffer& out) {
    out.Error(t);
  });
}

net::Outcome ClientSession::Execute(std::span<const std::string_view> args) {
  resp::ReplyBuffer& out = link_->out();
  out.set_muted(reply_off_ || skip_armed_);
  const net::Outcome r = ExecuteCommand(args);
  if (r == net::Outcome::kWaitThenRetry) {  // not run yet: it will come again
    out.set_muted(false);
    return r;
  }
  if (master_link_ && r != net::Outcome::kClose) ForwardFromMaster(args);
  fetched_ = false;  // the fetch was for this command, however it ended
  skip_armed_ = skip_requested_;  // SKIP mutes the command after it
  skip_requested_ = false;
  // A suspended command replies later, muted or not as now: Finish() unmutes.
  if (!(r == net::Outcome::kWaitThenNext && suspended_)) out.set_muted(false);
  return r;
}

net::Outcome ClientSession::ExecuteCommand(std::span<const std::string_view> args) {
  parked_ = false;
  // A link to a primary this server no longer follows applies nothing more.
  if (master_link_ && !server_.replica_of.Current(master_gen_)) return net::Outcome::kClose;
  if (IsPostOrHost(args[0])) {
    spdlog::warn("Possible SECURITY ATTACK detected. It looks like somebody is sending POST or "
                 "Host: commands to keg. Connection from {} aborted.", link_->peer());
    link_->CloseNow();
    return net::Outcome::kDone;
  }
  // A replica's connection (from its SYNC / PSYNC on) carries the stream one way and REPLCONF
  // ACKs the other: a command that would be answered ends it, as Redis's (a reply would corrupt
  // the replica's stream).
  if (replica_ != nullptr && !EqualsIgnoreCase(args[0], "replconf")) return EndRogueReplica(args);
  const Command* cmd = FindCommand(args[0]);
  if (cmd == nullptr) {
    if (in_multi_) multi_error_ = true;
    ReplyError(UnknownCommand(args));
    ++commands_;
    return net::Outcome::kDone;
  }
  // A container command's unknown subcommand is refused like an unknown command (Redis's
  // lookupCommand); every subcommand a handler serves is in its command's table.
  if (!cmd->subcommands.empty() && args.size() >= 2 && FindSubcommand(*cmd, args[1]) == nullptr) {
    if (in_multi_) multi_error_ = true;
    ReplyError("unknown subcommand '" + std::string(args[1].substr(0, 128)) + "'. Try " + ToUpper(cmd->name) +
               " HELP.");
    ++commands_;
    return net::Outcome::kDone;
  }
  const int argc = static_cast<int>(args.size());
  if ((cmd->arity > 0 && argc != cmd->arity) || (cmd->arity < 0 && argc < -cmd->arity)) {
    return Reject(*cmd, WrongArity(cmd->name));
  }
  // A subcommand's arity (CLIENT SETNAME ...).
  if (!cmd->subcommands.empty() && args.size() >= 2) {
    if (const Command* sub = FindSubcommand(*cmd, args[1])) {
      if ((sub->arity > 0 && argc != sub->arity) || (sub->arity < 0 && argc < -sub->arity)) {
        return Reject(*cmd, WrongArity(std::string(cmd->name) + "|" + std::string(sub->name)));
      }
    }
  }
  if (!authenticated_ && (cmd->flags & kNoAuth) == 0) {
    return Reject(*cmd, "-NOAUTH Authentication required.");
  }
  if (acl_version_ != server_.acl.version()) RefreshUser();
  if (!user_->unrestricted() && !master_link_) {
    if (const std::string denied = CheckAcl(*cmd, args, false); !denied.empty()) {
      return Reject(*cmd, denied);
    }
  }
  // min-replicas-to-write (Redis's checkGoodReplicasStatus): a write, or an EXEC of queued writes,
  // while too few replicas acked lately.
  if (server_.min_replicas_to_write.load(std::memory_order_relaxed) > 0 && !master_link_) {
    const bool writes = (EffectiveFlags(*cmd, args) & (kWrite | kWritesCache)) == kWrite ||
                        (in_multi_ && cmd->name == "exec" && QueuedCommandsHave(kWrite, false));
    if (writes && !server_.EnoughGoodReplicas()) return Reject(*cmd, "-NOREPLICAS Not enough good replicas to write.");
  }
  // A read-only replica takes writes from its primary alone (Redis's -READONLY).
  if (server_.replica_of.active() && !master_link_ && server_.replica_read_only.load(std::memory_order_relaxed) &&
      (EffectiveFlags(*cmd, args) & (kWrite | kWritesCache)) == kWrite) {
    return Reject(*cmd, "-READONLY You can't write against a read only replica.");
  }
  if (server_.tracking.clients() > 0) {
    // The tracking table back under tracking-table-max-keys before each command (Redis's
    // processCommand; the cron does it too, for an idle server): this client's own invalidations
    // go before the command's reply.
    const std::string own = server_.tracking.Limit(server_.tracking_table_max_keys.load(std::memory_order_relaxed), this);
    if (!own.empty()) DeliverPush(own);
  }
  // A RESP2 connection with subscriptions may only (un)subscribe, PING, QUIT and RESET (Redis's
  // processCommand); RESP3 has no such context.
  if (protocol_ == resp::Protocol::kResp2 && subscribed() && !AllowedWhileSubscribed(cmd->name)) {
    const Command* sub = (!cmd->subcommands.empty() && args.size() >= 2) ? FindSubcommand(*cmd, args[1]) : nullptr;
    const std::string fullname = std::string(cmd->name) + (sub != nullptr ? "|" + std::string(sub->name) : "");
    return Reject(*cmd, "Can't execute '" + fullname +
                            "': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context");
  }
  // A replica whose link is down with replica-serve-stale-data no serves only Redis's `stale`
  // commands (INFO, REPLICAOF, ...): an EXEC only when every queued command is one.
  if (!master_link_ && !server_.replica_serve_stale_data.load(std::memory_order_relaxed) && server_.RunningStale()) {
    if ((EffectiveFlags(*cmd, args) & kStale) == 0 || (in_multi_ && cmd->name == "exec" && !QueuedCommandsHave(kStale, true))) {
      return Reject(*cmd, "-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.");
    }
  }
  // While a full sync loads, what Redis refuses then (no-async-loading: a replica's SYNC, SAVE...)
  // is refused, as its processCommand does (an EXEC when a queued command is one). Not REPLICAOF:
  // keg's load is interrupted by it and leaves the data set as it was.
  // (The command's own flags first: the common command pays one test.)
  if (((cmd->flags & kNoAsyncLoading) != 0 || (in_multi_ && cmd->name == "exec")) && server_.LoadingSync() &&
      ((cmd->flags & kNoAsyncLoading) != 0 || QueuedCommandsHave(kNoAsyncLoading, false))) {
    return Reject(*cmd, "-LOADING Redis is loading the dataset in memory");
  }
  // A script past busy-reply-threshold holds the writer: only the commands Redis allows then run
  // (SCRIPT KILL, SHUTDOWN NOSAVE, the connection's own). One atomic load.
  if (server_.scripts->busy()) {
    if (master_link_) {
      // The primary's stream waits (as Redis's processInputBuffer) and runs once the script ends.
      if (!steps_.empty() && Submit(false) != net::Outcome::kDone) return net::Outcome::kWaitThenRetry;
      if (server_.scripts->ParkWhileBusy(link_->Self())) return net::Outcome::kWaitThenRetry;
    }
  }
  if (server_.scripts->busy() && !master_link_) {
    const Command* sub = (!cmd->subcommands.empty() && args.size() >= 2) ? FindSubcommand(*cmd, args[1]) : nullptr;
    if (((cmd->flags | (sub != nullptr ? sub->flags : 0)) & kAllowBusy) == 0) {
      return Reject(*cmd, server_.scripts->busy_error());
    }
  }
  if (in_multi_ && (cmd->flags & kNoMulti) != 0) {
    return Reject(*cmd, "Command not allowed inside a transaction");
  }
  // CLIENT PAUSE: a command that must wait parks the connection until the pause ends, as Redis
  // postpones it; the writes batched from this read before it go first.
  // (A primary's stream is not paused: Redis 7.0 pauses it, the replica reading on meanwhile —
  // slave_read_repl_offset grows — and applying it at the end; keg's link would stop reading.)
  if (server_.pause.MustWait(true) && !master_link_) {
    // A script that cannot write (EVAL_RO, a no-writes script or function) is a read here.
    auto writes = [this](const Command& c, std::span<const std::string_view> a) {
      return (c.flags & (kWrite | kMayReplicate)) != 0 && !((c.flags & kMovableKeys) != 0 && ScriptCannotWrite(*server_.scripts, a));
    };
    bool write = writes(*cmd, args);
    if (cmd->name == "exec") {
      std::vector<std::string_view> views;
      for (const auto& q : queued_) {
        const Command* qc = FindCommand(q[0]);
        views.assign(q.begin(), q.end());
        write |= qc != nullptr && writes(*qc, views);
      }
    }
    if (server_.pause.MustWait(write)) {
      if (!steps_.empty() && Submit(false) != net::Outcome::kDone) return net::Outcome::kWaitThenRetry;
      if (server_.pause.Park(link_->Self(), write)) {
        parked_ = true;
        // A client that hangs up while paused is gone at once, as in Redis (it left CLIENT LIST
        // and blocked_clients only when the pause ended).
        link_->WatchClose();
        return net::Outcome::kWaitThenRetry;
      }
    }
  }
  if (in_multi_ && (cmd->flags & kMultiControl) == 0) {
    queued_.emplace_back(args.begin(), args.end());
    multi_queued_.store(static_cast<int64_t>(queued_.size()), std::memory_order_relaxed);
    link_->out().SimpleString("QUEUED");
    ++commands_;
    return net::Outcome::kDone;
  }
  // Replies stay in order: anything but a write waits for the pending batch to be durable.
  if (!steps_.empty() && ((cmd->flags & kWrite) == 0 || (cmd->flags & kBlocking) != 0)) {
    if (Submit(false) != net::Outcome::kDone) return net::Outcome::kWaitThenRetry;
  }
  // No event loop (and no writer) waits for the disk: cold keys are fetched by the read pool
  // first. One atomic load while the data files are all in the page cache.
  if (server_.cold_reads && !fetched_ && server_.store->MaybeCold() && FetchIfCold(*cmd, args)) {
    return net::Outcome::kWaitThenRetry;
  }
  return Dispatch(*cmd, args);
}

bool ClientSession::FetchIfCold(const Command& cmd, std::span<const std::string_view> args) {
  std::shared_ptr<ColdFetch> fetch;  // made at the first cold key: nothing allocated while resident
  const store::Store& st = *server_.store;
  // `run` with arguments `a` reads `key`, and maybe elements of a large collection there.
  auto look = [&](std::string_view key, const Command& run, std::span<const std::string_view> a) {
    std::vector<store::ColdRange> ranges;  // stays empty, unallocated, when resident
    // A SELECT queued in MULTI is not followed: a key it names is read on the loop (correct, maybe
    // waiting for the disk).
    const bool large = st.ColdRanges(db(), key, &ranges);
    // What the command reads of the elements: worked out only for a large collection, or a key
    // whose record is still to come (the next round may find it is one); most keys are neither.
    store::ElementSelection which;
    if (run.first_member != 0 && (large || !ranges.empty())) which = ElementsRead(run, a);
    if (large) st.ColdElementRanges(db(), key, which, &ranges);
    if (ranges.empty()) return;
    if (!fetch) fetch = std::make_shared<ColdFetch>();
    for (store::ColdRange& r : ranges) fetch->ranges.push_back(std::move(r));
    fetch->keys.emplace_back(key);
    fetch->elements.push_back(std::move(which));
  };
  auto add = [&](const Command& c, std::span<const std::string_view> a) {
    const Command* sub = (!c.subcommands.empty() && a.size() >= 2) ? FindSubcommand(c, a[1]) : nullptr;
    const Command& run = sub != nullptr ? *sub : c;
    if ((run.flags & kMovableKeys) == 0) {  // keys at first/last/step: no allocation
      if (run.first_key <= 0) return;
      const int argc = static_cast<int>(a.size());
      const int last = run.last_key < 0 ? argc + run.last_key : std::min(run.last_key, argc - 1);
      for (int i = run.first_key; i <= last && i < argc; i += std::max(run.key_step, 1)) {
        look(a[static_cast<size_t>(i)], run, a);
      }
      return;
    }
    for (const KeyRef& ref : CommandKeys(run, a)) look(a[ref.index], run, a);
  };
  if (cmd.name == "exec") {  // each queued command's keys, and the elements it reads of them
    std::vector<std::string_view> views;
    for (const auto& q : queued_) {
      const Command* qc = FindCommand(q[0]);
      if (qc == nullptr) continue;
      views.assign(q.begin(), q.end());
      add(*qc, views);
    }
  } else {
    add(cmd, args);
  }
  if (!fetch) return false;
  // The writes batched before this command go first (their replies come first); it comes again.
  if (!steps_.empty() && Submit(false) != net::Outcome::kDone) return true;
  cold_wait_ = true;
  fetch->started_ns = MonoNs();
  ReadCold(std::move(fetch));
  return true;
}

void ClientSession::ReadCold(std::shared_ptr<ColdFetch> fetch) {
  ColdReads& pool = *server_.cold_reads;
  // Two rounds read a record (its header, then the rest when it spans further); a third means
  // the pages went again (evicted, a failed read): the pool's reads wait for the disk instead.
  constexpr int kRingRounds = 3;
  if (fetch->round < kRingRounds && pool.delay_ms() == 0 &&
      server_.cold_read_io_uring.load(std::memory_order_relaxed)) {
    std::vector<net::FileRead> reads;
    reads.reserve(fetch->ranges.size());
    bool fits = true;
    for (const store::ColdRange& r : fetch->ranges) {
      fits = fits && r.length <= net::FileReads::kMaxRead;
      reads.push_back(net::FileRead{r.fd, r.offset, static_cast<uint32_t>(r.length)});
    }
    if (fits && link_->ReadFiles(reads, [this, fetch] {
          fetch->ranges.clear();  // read: unpin the files
          ++fetch->round;
          for (size_t i = 0; i < fetch->keys.size(); ++i) {
            if (server_.store->ColdRanges(db(), fetch->keys[i], &fetch->ranges)) {
              server_.store->ColdElementRanges(db(), fetch->keys[i], fetch->elements[i], &fetch->ranges);
            }
          }
          if (fetch->ranges.empty()) {
            ColdDone(*fetch);
          } else {
            ReadCold(fetch);
          }
        })) {
      return;
    }
  }
  fetch->ranges.clear();
  std::shared_ptr<net::Link> keep = link_->Self();
  std::vector<std::string> keys = fetch->keys;
  pool.Fetch(db(), std::move(keys), [this, keep, fetch, store = server_.store.get(), db = db()] {
    ReadColdElements(*store, db, *fetch);  // this pool thread may wait
    Deliver(inbox_, keep, [this] {
      cold_wait_ = false;
      fetched_ = true;
      link_->Resume();
    });
  });
}

void ClientSession::ReadColdElements(const store::Store& st, uint32_t db, const ColdFetch& fetch) {
  std::vector<char> buf;
  // Round after round, as ColdElementRanges asks: a record's rest once its header is in.
  for (int round = 0; round < 3; ++round) {
    std::vector<store::ColdRange> ranges;
    for (size_t i = 0; i < fetch.keys.size(); ++i) st.ColdElementRanges(db, fetch.keys[i], fetch.elements[i], &ranges);
    if (ranges.empty()) return;
    buf.resize(size_t{64} << 10);
    for (const store::ColdRange& r : ranges) {
      // Buffered reads whose bytes are thrown away: they fill the page cache the maps read from.
      for (uint64_t at = 0; at < r.length;) {
        const ssize_t n = pread(r.fd, buf.data(), std::min<uint64_t>(buf.size(), r.length - at),
                                static_cast<off_t>(r.offset + at));
        if (n <= 0) break;  // an I/O error: the command's own read finds and reports it
        at += static_cast<uint64_t>(n);
      }
    }
  }
}

void ClientSession::ColdDone(const ColdFetch& fetch) {
  server_.cold_reads->Note(fetch.keys.size(), (MonoNs() - fetch.started_ns) / 1000);
  cold_wait_ = false;
  fetched_ = true;
  link_->Resume();
}

uint32_t ClientSession::EffectiveFlags(const Command& cmd, std::span<const std::string_view> args) const {
  const Command* sub = (!cmd.subcommands.empty() && args.size() >= 2) ? FindSubcommand(cmd, args[1]) : nullptr;
  // A subcommand's flags decide (a container's kWrite too, where a table puts it there).
  uint32_t f = sub != nullptr ? (sub->flags | (cmd.flags & kWrite)) : cmd.flags;
  if ((f & kRunsScript) != 0) {
    f &= ~kWrite;  // Redis's EVAL and FCALL are no write commands...
    uint32_t declared = 0;
    if (DeclaredScriptFlags(*server_.scripts, args, &declared)) {  // ...unless their script says
      f &= ~kStale;
      if ((declared & kScriptNoWrites) == 0) f |= kWrite;
      if ((declared & kScriptAllowStale) != 0) f |= kStale;
    }
  }
  return f;
}

bool ClientSession::QueuedCommandsHave(uint32_t flag, bool every) const {
  std::vector<std::string_view> views;
  for (const auto& q : queued_) {
    const Command* qc = FindCommand(q[0]);
    if (qc == nullptr) continue;
    views.assign(q.begin(), q.end());
    const bool has = (EffectiveFlags(*qc, views) & flag) != 0;
    if (has != every) return has;  // some has it (any), or one lacks it (every)
  }
  return every;
}

net::Outcome ClientSession::EndRogueReplica(std::span<const std::string_view> args) {
  ++commands_;
  const Command* cmd = FindCommand(args[0]);
  const Command* sub = (cmd != nullptr && !cmd->subcommands.empty() && args.size() >= 2) ? FindSubcommand(*cmd, args[1]) : nullptr;
  const std::string name = cmd == nullptr ? "<unknown>" : std::string(cmd->name) + (sub != nullptr ? "|" + std::string(sub->name) : "");
  // What Redis answers a replica's command (processCommand) is logged as an error sent to a
  // replica (OnErrorReply); the command is not run: its reply could not be sent anyway.
  // (In Redis's order: the reply's first bytes end the connection, then the error is counted.)
  spdlog::warn("Replica generated a reply to command '{}', disconnecting it: {}", name, Describe(store::NowMs()));
  if (cmd == nullptr) {
    ReplyError(UnknownCommand(args));
  } else if ((EffectiveFlags(*cmd, args) & (kWrite | kReadOnly | kMayReplicate | kRunsScript)) != 0) {
    error_target_ = &StatsTarget(*cmd, args);
    ReplyError("Replica can't interact with the keyspace");
    error_target_ = nullptr;
  }
  link_->CloseNow();
  return net::Outcome::kDone;
}

net::Outcome ClientSession::Reject(const Command& cmd, std::string_view error) {
  ++commands_;
  cmd.stats->AddRejected();
  if (cmd.name == "exec") {
    // A rejected EXEC discards the transaction (Redis's execCommandAbort).
    std::string_view reason = error;
    if (!reason.empty() && reason[0] == '-') reason.remove_prefix(1);
    Discard();
    ReplyError("-EXECABORT Transaction discarded because of: " + std::string(reason));
    return net::Outcome::kDone;
  }
  if (in_multi_) multi_error_ = true;
  ReplyError(error);
  return net::Outcome::kDone;
}

net::Outcome ClientSession::Dispatch(const Command& cmd, std::span<const std::string_view> args) {
  ++commands_;
  last_command_.store(&cmd, std::memory_order_relaxed);
  const Command* sub = &StatsTarget(cmd, args);
  last_subcommand_.store(sub == &cmd ? nullptr : sub, std::memory_order_relaxed);
  suspended_ = false;
  suspended_target_ = nullptr;
  close_ = false;
  Ctx ctx(server_, *this, args, link_->out(), nullptr);
  if (tracking_on_) RememberTracked(cmd, args);  // before the read: a write meanwhile invalidates
  const uint64_t expired_reads = store::ExpiredReadsOnThisThread();
  const uint64_t reply_mark = link_->out().added();
  RunHandler(cmd, ctx);
  // A read-only command that writes (PFCOUNT's cache): its keys are remembered after its write.
  if (tracking_on_ && (StatsTarget(cmd, args).flags & (kWrite | kReadOnly)) == (kWrite | kReadOnly)) {
    RememberTrackedInGroup(cmd, args);
  }
  // CLIENT CACHING applies to one command (and to a whole transaction), as Redis's resetClient.
  if (tracking_caching_ && !in_multi_ && cmd.name != "client") tracking_caching_ = false;
  if (close_) return net::Outcome::kClose;
  // A read that found a key expired left its drop to the writer: while the drop is named (keyspace
  // `expired` events, tracking, replicas), the reply waits until the writer ran, so the event (the
  // invalidation, the replicas' DEL) comes first, as Redis sends it while the read runs — a
  // subscriber saw a PUBLISH the reader sent after the reply before the key's `expired`. (A
  // command that wrote replies after its group, which drops them first: Store's ProcessGroup.)
  if (!suspended_ && steps_.empty() && !master_link_ &&
      store::ExpiredReadsOnThisThread() != expired_reads && server_.store->NamingExpiredKeys()) {
    HoldReplyForExpiredDrops(reply_mark);
  }
  if (suspended_) {
    busy_ = true;
    return net::Outcome::kWaitThenNext;
  }
  return net::Outcome::kDone;
}

void ClientSession::HoldReplyForExpiredDrops(uint64_t reply_mark) {
  std::string reply = link_->out().TakeSince(reply_mark);
  std::shared_ptr<net::Link> keep = link_->Self();
  Suspend();
  reply_held_ = true;  // this client's own invalidations (of what it read) follow the reply, as Redis's
  server_.store->Barrier([this, keep, reply = std::move(reply)]() mutable {
    keep->Post([this, reply = std::move(reply)] {
      link_->out().Raw(reply);
      reply_held_ = false;
      Finish();  // then the pushes held back
    });
  });
}

void ClientSession::Finish() {
  suspended_target_ = nullptr;  // its reply is written: later errors are not its
  link_->out().set_muted(false);
  busy_ = false;
  FlushPendingPushes();
  link_->Resume();
}

void ClientSession::DeliverInOrder(std::shared_ptr<net::Link> keep, std::function<void()> fn) {
  Deliver(inbox_, std::move(keep), std::move(fn));
}

void ClientSession::EndBlocked(const std::function<void(resp::ReplyBuffer&)>& reply, bool log) {
  if (!blocked_) {  // ended already: nothing more is held back for a reply
    served_reply_coming_.store(false, std::memory_order_relaxed);
    return;
  }
  blocked_.reset();
  blocked_flag_.store(false, std::memory_order_relaxed);
  const int64_t t0 = StatsNowNs();
  reply(link_->out());
  const int64_t usec = blocked_usec_ + StatsSinceNs(t0) / 1000;
  if (log && server_.slowlog.Wants(usec)) {
    const std::vector<std::string_view> args(blocked_args_.begin(), blocked_args_.end());
    server_.slowlog.Add(args, RedactedArguments(args), usec, link_->peer(), name());
  }
  blocked_args_.clear();
  served_reply_coming_.store(false, std::memory_order_relaxed);
  Finish();  // the pushes held back for the reply follow it
}

void ClientSession::FlushPendingPushes() {
  if (pending_pushes_.empty()) return;
  link_->out().Push(pending_pushes_);
  pending_pushes_.clear();
}

namespace {

// a == b for the short strings of command names, without a call to memcmp.
bool SameBytes(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

}  // namespace

void ClientSession::Prefetch(std::span<const std::string_view> names, std::span<const std::string_view> keys) {
  // The keys reads will look up, each once (a key repeated by the next command is loaded once).
  // A write command's key is left to the write group, which loads every op's key ahead of the op
  // on the thread that runs it (StoreImpl::ProcessGroup): loading it here too doubled the work.
  std::string_view reads[16];
  size_t n = 0;
  bool write = false;       // names[i - 1]'s command is a write
  bool last_added = false;  // keys[i - 1] is reads[n - 1]
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i == 0 || !SameBytes(names[i], names[i - 1])) {  // a pipeline repeats one command: looked up once
      const Command* cmd = FindCommand(names[i]);
      write = cmd != nullptr && (cmd->flags & kWrite) != 0;
    }
    const bool repeat = i > 0 && keys[i] == keys[i - 1];
    if (!repeat && !no_touch_) server_.access.Prefetch(keys[i]);  // every command touches its keys' clocks
    if (write) {
      last_added = false;
    } else if (!(repeat && last_added)) {
      last_added = n < std::size(reads);
      if (last_added) reads[n++] = keys[i];
    }
  }
  if (n > 0) server_.store->Prefetch(db(), std::span<const std::string_view>(reads, n));
}

net::Outcome ClientSession::EndOfInput() {
  // Once per read, at the kernel tick's resolution (CLIENT LIST shows whole seconds).
  timespec ts{};
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  last_interaction_ms_.store(int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000,
                             std::memory_order_relaxed);
  FlushCounters();
  RefreshLimits();
  if (replica_) server_.repl.Heard(*replica_, MonoMs());  // alive (repl-timeout): an ack, or a loading one's newline
  if (steps_.empty()) return net::Outcome::kDone;
  return Submit(false);
}

net::Outcome ClientSession::Submit(bool exec) {
  auto flight = std::make_shared<InFlight>();
  flight->steps = std::move(steps_);
  flight->exec = exec;
  flight->muted = link_->out().muted();
  if (exec) flight->owned_args = std::move(queued_);
  flight->props = std::move(props_);
  props_.clear();
  flight->exec_served = std::move(exec_served_);
  exec_served_.reset();
  flight->served = std::move(serving_);
  serving_.clear();
  wake_cursor_.reset();
  flight->input_end = AppliedEnd();  // (a transaction being queued: before its MULTI)
  flight->forward = master_link_;
  steps_.clear();
  queued_.clear();
  store::WriteBatch batch = std::move(batch_);
  batch_ = store::WriteBatch();
  script_in_batch_ = false;
  batch.set_origin(id_);  // CLIENT TRACKING NOLOOP knows a client's own writes
  batch.set_defers_wakes(exec);  // the clients an EXEC's writes wake wait for it (Complete)
  batch.set_sees_expired(master_link_);  // the primary's writes act on keys it has not expired yet
  if (batch.empty() && !exec) {
    std::vector<store::OpResult> none;
    RunSteps(*flight, none);
    if (master_link_) {  // commands that wrote nothing (failed): forwarded all the same
      for (Propagation& p : flight->props) server_.repl.Forward(p.command.resp);
      server_.replica_of.Applied(flight->input_end);
    }
    return net::Outcome::kDone;
  }
  ServerState* server = &server_;
  if (exec) {
    // EXEC: abort if a watched key was written since WATCH; checked on the writer thread, after
    // every batch queued before this one.
    batch.SetPrecondition([server, this](const store::WriteBatch& b,
                                         const store::WriteBatch::KeyProbe& live) {
      if (watch_dirty_.load(std::memory_order_acquire) || WatchedKeyGone(live)) return false;
      if (!server->watches.empty()) server->watches.Touch(b, live);
      return true;
    });
  } else {
    batch.SetPrecondition([server](const store::WriteBatch& b,
                                   const store::WriteBatch::KeyProbe& live) {
      if (!server->watches.empty()) server->watches.Touch(b, live);
      return true;
    });
  }
  batch.SetPostcondition([server](const store::WriteBatch& b, std::span<const store::OpResult> results) {
    if (!server->watches.empty()) server->watches.TouchWritten(b, results);
  });
  busy_ = true;
  write_in_flight_ = true;
  std::shared_ptr<net::Link> keep = link_->Self();
  TurnBatcher& turn = turn_batcher;
  const bool first_of_turn = turn.writes.empty();
  turn.writes.push_back(store::Store::PendingWrite{
      std::move(batch), [this, keep, flight, server](const store::Status& status,
                                                            std::vector<store::OpResult> results) {
        // The writer role, the group durable: what the batch propagates joins the stream here, in
        // the order groups are applied.
        // (Whether to propagate was decided when the command ran, RunHandler: a write that ran
        // while this server was a primary goes in even if it turned replica since, so that its
        // stream never lacks a write its data has.)
        if (!flight->props.empty() && status.ok()) {
          // (The master link's are its primary's bytes, MULTI and EXEC included: never wrapped.)
          server->repl.AppendBatch(flight->props, results, flight->exec && !flight->forward);
          flight->write_offset = server->repl.offset();
        }
        // The pops of the clients an EXEC served follow its transaction, as Redis propagates them.
        if (flight->exec_served && !flight->exec_served->empty() && status.ok() && server->repl.active()) {
          server->repl.AppendCommands(BlockingRegistry::Propagations(*flight->exec_served));
          flight->write_offset = server->repl.offset();
        }
        Deliver(inbox_, keep, [this, flight, status, results = std::move(results)]() mutable {
          Complete(*flight, status, results);
        });
      }});
  if (first_of_turn) {
    // The turn's batches go to the store together. Under `always` they are committed once the
    // loop has run every handler that is ready (PostIdle: Redis's beforeSleep), on this thread
    // when the writer is idle — the fdatasync included, so the requests that arrive meanwhile
    // wait in their sockets and the next turn gathers them all (one epoll_wait, one sync). Handed
    // to the writer thread instead, the loop woke for each request while the writer synced:
    // SET under always was 0.77x Redis, now 1.03x (docs/benchmarks.md). Under everysec / no the
    // flush follows the handlers already queued (Post): nothing to wait for.
    store::Store* st = server_.store.get();
    auto flush = [st] {
      std::vector<store::Store::PendingWrite> writes = std::move(turn_batcher.writes);
      turn_batcher.writes.clear();
      st->WriteAll(std::move(writes));
    };
    // (The store's policy, fixed: `server_.config` is CONFIG SET's, read under config_mu only.)
    if (st->fsync_policy() == store::FsyncPolicy::kAlways) {
      link_->PostIdle(std::move(flush));
    } else {
      link_->Post(std::move(flush));
    }
  }
  return net::Outcome::kWaitThenNext;
}

void ClientSession::Complete(InFlight& flight, const store::Status& status,
                             std::vector<store::OpResult>& results) {
  busy_ = false;
  write_in_flight_ = false;
  write_offset_ = std::max(write_offset_, flight.write_offset);
  if (master_link_ && status.ok()) server_.replica_of.Applied(flight.input_end);
  resp::ReplyBuffer& out = link_->out();
  const bool was_muted = out.muted();
  out.set_muted(flight.muted);
  if (status.IsAborted()) {
    out.NullArray();  // EXEC after a watched key changed
  } else if (!status.ok()) {
    const std::string text = StorageError(status);
    if (flight.exec) {
      out.Error(text);
    } else {
      for (Step& step : flight.steps) {
        error_target_ = step.cmd;
        out.set_muted(step.muted);
        if (step.op_count > 0) {
          out.Error(text);
        } else {
          step.fn({}, out);
        }
      }
      error_target_ = nullptr;
    }
  } else {
    uint64_t applied = 0;
    for (const store::OpResult& r : results) applied += r.applied ? 1 : 0;
    server_.counters.changes_since_save.fetch_add(applied, std::memory_order_relaxed);
    RunSteps(flight, results);
  }
  out.set_muted(was_muted);
  // Every command ran: the clients they served and did not answer (an EXEC's; all of them when
  // the group failed) get their replies, slow-log entries and events now.
  for (const auto& served : flight.served) BlockingRegistry::SendReplies(*served, status);
  if (flight.exec) {
    in_exec_ = false;
    Unwatch();
    server_.blocking.Release(id_);  // those its writes woke otherwise are served now
  }
  FlushPendingPushes();  // invalidations that came while the write was in flight
  link_->Resume();
}

void ClientSession::RunSteps(InFlight& flight, std::vector<store::OpResult>& results) {
  resp::ReplyBuffer& out = link_->out();
  for (Step& step : flight.steps) {
    error_target_ = step.cmd;
    out.set_muted(step.muted);
    std::span<store::OpResult> mine;
    if (step.op_count > 0) mine = std::span<store::OpResult>(results).subspan(step.first_op, step.op_count);
    // An op that could not read its key's record (corrupt) fails its whole command.
    auto failed = std::find_if(mine.begin(), mine.end(), [](const store::OpResult& r) { return !r.error.ok(); });
    if (failed != mine.end()) {
      out.Error(CorruptionError(failed->error));
    } else {
      step.fn(mine, out);
    }
  }
  error_target_ = nullptr;
}

// ---- MULTI / EXEC / WATCH -----------------------------------------------------------------------

void ClientSession::BeginMulti() {
  in_multi_ = true;
  multi_queued_.store(0, std::memory_order_relaxed);
  multi_error_ = false;
  queued_.clear();
}

void ClientSession::Discard() {
  LeaveMulti();
  Unwatch();
}

void ClientSession::LeaveMulti() {
  in_multi_ = false;
  multi_queued_.store(-1, std::memory_order_relaxed);
  multi_error_ = false;
  queued_.clear();
}

void ClientSession::Watch(std::span<const std::string_view> keys) {
  for (std::string_view k : keys) {
    std::string key(k);
    const uint32_t db = this->db();
    if (std::any_of(watched_.begin(), watched_.end(),
                    [&](const WatchedKey& w) { return w.db == db && w.key == key; })) {
      continue;
    }
    server_.watches.Watch(this, Ctx::SnapshotKey(db, key));
    const bool live = server_.store->Exists(db, key);
    watched_.push_back(WatchedKey{std::move(key), db, live});
  }
}

bool ClientSession::WatchedKeyGone(const store::WriteBatch::KeyProbe& live) const {
  for (const WatchedKey& w : watched_) {
    if (w.live && !live(w.db, w.key)) return true;
  }
  return false;
}

std::vector<std::string> ClientSession::WatchedKeyNames() const {
  std::vector<std::string> keys;
  keys.reserve(watched_.size());
  for (const WatchedKey& w : watched_) keys.push_back(Ctx::SnapshotKey(w.db, w.key));
  return keys;
}

void ClientSession::Unwatch() {
  if (!watched_.empty()) server_.watches.Unwatch(this, WatchedKeyNames());
  watched_.clear();
  watch_dirty_.store(false, std::memory_order_release);
}

void ClientSession::Exec(Ctx& ctx) {
  if (!in_multi_) {
    ctx.Error("EXEC without MULTI");
    return;
  }
  if (multi_error_) {
    Discard();
    ctx.Error("-EXECABORT Transaction discarded because of previous errors.");
    return;
  }
  in_multi_ = false;
  multi_queued_.store(-1, std::memory_order_relaxed);
  in_exec_ = true;
  // Every queued command becomes part of one batch: writes add their ops; reads of keys capture
  // the values at their place in the batch and reply from them; the rest reply at the end.
  const size_t n = queued_.size();
  AddStep(batch_.size(), [n](std::span<store::OpResult>, resp::ReplyBuffer& out) { out.ArrayHeader(n); });
  auto views = std::make_shared<std::vector<std::vector<std::string_view>>>();
  views->reserve(n);
  for (const auto& q : queued_) views->emplace_back(q.begin(), q.end());
  for (size_t i = 0; i < n; ++i) {
    std::span<const std::string_view> args((*views)[i]);
    const Command* cmd = FindCommand(args[0]);
    ++commands_;
    // ACL rules may have changed since the command was queued (Redis checks again in EXEC).
    if (acl_version_ != server_.acl.version()) RefreshUser();
    if (!user_->unrestricted()) {
      if (std::string denied = CheckAcl(*cmd, args, true); !denied.empty()) {
        AddStep(batch_.size(), [denied = std::move(denied)](std::span<store::OpResult>, resp::ReplyBuffer& out) {
          out.Error(denied);
        });
        continue;
      }
    }
    // MONITOR sees the queued commands it runs here, in order, before EXEC itself (as Redis);
    // after a script, through ops placed after it (FeedMonitors); a SELECT once it ran, with the
    // database it selected, as Redis feeds each after its call.
    const bool shown =
        !server_.monitors.empty() && ((cmd->flags | StatsTarget(*cmd, args).flags) & kAdmin) == 0;
    if (shown && cmd->name != "select") FeedMonitors(args);
    // Each command acts in the database selected at its place (a queued SELECT runs at its place,
    // replying through a step, as writes do).
    const uint32_t db = this->db();
    batch_.SelectDb(db);
    // SORT_RO too: its BY / GET patterns name keys that a copy made ahead could not hold.
    if ((cmd->flags & kWrite) != 0 || cmd->name == "select" || cmd->name == "sort_ro") {
      // Ops of their own (RunHandler begins a command for writes only): a failed write queued
      // just before is not this command's failure.
      if ((cmd->flags & kWrite) == 0) batch_.BeginCommand();
      Ctx wctx(server_, *this, args, link_->out(), nullptr);
      RunHandler(*cmd, wctx, /*feed=*/false);
      if (shown && cmd->name == "select") FeedMonitors(args);
      if (tracking_on_) RememberTrackedInGroup(*cmd, args);  // SORT_RO, PFCOUNT: after their ops
      continue;
    }
    // At the read's place in the transaction's group: only the writes after it invalidate.
    if (tracking_on_) RememberTrackedInGroup(*cmd, args);
    batch_.BeginCommand();
    // A command reading the whole keyspace reads it at its place (its ReadKeys op's result).
    store::KeysQuery query;
    if (cmd->keyspace != nullptr && cmd->keyspace(args, &query)) {
      const size_t at = batch_.size();
      batch_.ReadKeys(query);
      ServerState* server = &server_;
      steps_.push_back(Step{at, 1,
                            [server, this, cmd, args, views, db](std::span<store::OpResult> results,
                                                                 resp::ReplyBuffer& out) {
                              Ctx rctx(*server, *this, args, out, nullptr);
                              rctx.set_db(db);
                              rctx.set_keyspace(results.empty() ? nullptr : &results[0]);
                              RunHandler(*cmd, rctx, /*feed=*/false);
                            },
                            nullptr, link_->out().muted()});
      continue;
    }
    auto snapshot = std::make_shared<Snapshot>();
    const size_t first = batch_.size();
    // The keys of the command, or of its subcommand (OBJECT ENCODING key, MEMORY USAGE key).
    const Command& keyed = StatsTarget(*cmd, args);
    std::vector<size_t> positions;
    bool reads_keys = (keyed.flags & kReadOnly) != 0 && KeyPositions(keyed, args.size(), &positions);
    if ((keyed.flags & (kReadOnly | kMovableKeys)) == (kReadOnly | kMovableKeys)) {  // SINTERCARD
      positions.clear();
      for (const KeyRef& k : CommandKeys(keyed, args)) positions.push_back(k.index);
      reads_keys = !positions.empty();
    }
    // A command that only looks members up (HGET, HMGET, SISMEMBER ...: Command::first_member)
    // needs only those of a large collection, not all of it.
    std::vector<std::string> members;
    if (reads_keys) {
      for (std::string_view m : MemberArguments(keyed, args)) members.emplace_back(m);
    }
    if (reads_keys) {
      for (size_t k : positions) {
        std::string key(args[k]);
        batch_.Run([snapshot, key, db, skey = Ctx::SnapshotKey(db, key), members](store::Txn& txn) {
          store::ValueView cur;
          if (const store::Status s = txn.Get(db, key, &cur); !s.ok()) {
            if (!s.IsNotFound()) (*snapshot)[skey].status = s;  // corrupt: the command's error
            return;
          }
          auto copy = std::make_shared<std::string>();
          if (cur.kind == store::format::kKindHead) {
            // A collection stored per element is captured whole, as it is at this place (or the
            // members the command looks up, when it names them): the step's handler reads it as
            // it reads a small one.
            const bool hash = StrideOf(cur.type) == 2;  // a hash's values, a sorted set's scores
            const uint64_t inc = store::format::IncarnationOf(cur.value);
            std::vector<std::string> items;
            if (cur.type == store::format::kTypeList) {  // a list in its order, whole
              if (const store::Status s = ListElements(txn, inc, &items); !s.ok()) {
                (*snapshot)[skey].status = s;
                return;
              }
            } else if (!members.empty()) {
              for (const std::string& m : members) {
                store::ValueView e;
                if (const store::Status s = txn.GetElement(inc, m, &e); !s.ok()) {
                  if (s.IsNotFound()) continue;
                  (*snapshot)[skey].status = s;  // an element fails its check: the command's error
                  return;
                }
                items.emplace_back(m);
                if (hash) items.emplace_back(e.value);
              }
            } else {
              const store::Status s = txn.ForEachElement(inc, [&](std::string_view m, std::string_view val) {
                items.emplace_back(m);
                if (hash) items.emplace_back(val);
              });
              if (!s.ok()) {
                (*snapshot)[skey].status = s;
                return;
              }
            }
            const std::vector<std::string_view> entries(items.begin(), items.end());
            *copy = coll::Encode(cur.type == store::format::kTypeList ? 0 : coll::kConverted, entries);
          } else {
            copy->assign(cur.value);
          }
          store::ValueView v;
          v.value = *copy;
          v.expire_at_ms = cur.expire_at_ms;
          v.type = cur.type;
          v.pin = std::move(copy);
          (*snapshot)[skey] = SnapshotEntry{store::Status::OK(), std::move(v)};
        });
      }
    }
    ServerState* server = &server_;
    steps_.push_back(Step{first, batch_.size() - first,
                          [server, this, cmd, args, snapshot, views, reads_keys, db](std::span<store::OpResult>,
                                                                     resp::ReplyBuffer& out) {
                            Ctx rctx(*server, *this, args, out, reads_keys ? snapshot.get() : nullptr);
                            rctx.set_db(db);
                            RunHandler(*cmd, rctx, /*feed=*/false);
                          },
                          nullptr, link_->out().muted()});
  }
  // Watches stay registered until the batch is applied: a write queued before it must still mark
  // this client. Complete() unwatches.
  store::Store* st = server_.store.get();
  const bool dirty = batch_.empty() &&
                     (watch_dirty_.load(std::memory_order_acquire) ||
                      WatchedKeyGone([st](uint32_t db, std::string_view key) { return st->Exists(db, key); }));
  if (batch_.empty()) {
    Unwatch();
    // Nothing to write: no store round trip, the WATCH check happens here.
    auto flight = std::make_shared<InFlight>();
    flight->steps = std::move(steps_);
    flight->owned_args = std::move(queued_);
    steps_.clear();
    queued_.clear();
    if (dirty) {
      in_exec_ = false;
      link_->out().NullArray();
      return;
    }
    std::vector<store::OpResult> none;
    RunSteps(*flight, none);  // still in EXEC: MONITOR refuses, DBSIZE counts here
    in_exec_ = false;
    return;
  }
  if (master_link_) {
    // The primary's EXEC goes to this server's stream with the transaction's batch, and with it
    // the MULTI and the queued commands held since (ForwardFromMaster).
    Propagation p;
    p.first_op = batch_.size();
    p.always = true;
    const uint32_t selects = multi_forward_.empty() ? ReplicationFeed::kNoDb : multi_selects_;
    std::string raw = std::move(multi_forward_);
    multi_forward_.clear();
    raw += "*1\r\n$4\r\nEXEC\r\n";
    p.command = PropagatedCommand{ReplicationFeed::kNoDb, std::move(raw), selects};
    props_.push_back(std::move(p));
    last_cmd_end_ = master_base_ + link_->input_consumed();
    forwarded_ = true;
  }
  if (server_.blocking.used() && !master_link_) {
    // The clients blocked on what the transaction wrote are served in its group, right after it
    // (Redis serves them after EXEC, before the next command): any later command sees them served.
    auto served = std::make_shared<std::vector<ServedPop>>();
    batch_.Run([blocking = &server_.blocking, served](store::Txn& txn) {
      blocking->ServeWritten(txn, txn.BatchBegan(), served.get());
    });
    serving_.push_back(served);
    exec_served_ = std::move(served);
  }
  // EXEC's own MONITOR line after the "lua" lines of a script it ran (RunHandler leaves it out).
  if (script_in_batch_ && !server_.monitors.empty()) {
    FeedMonitors(ctx.args());
    exec_fed_ = true;
  }
  Submit(true);
  suspended_ = true;
}

Subscriber* ClientSession::subscriber() {
  if (subscriber_ == nullptr) {
    subscriber_ = std::make_unique<Subscriber>(link_);
    subscriber_->resp.store(static_cast<int>(protocol_), std::memory_order_relaxed);
    subscriber_ptr_.store(subscriber_.get(), std::memory_order_release);
  }
  return subscriber_.get();
}

void ClientSession::SetTracking(bool on, const Tracking::Mode& mode) {
  if (!on) {
    if (tracking_on_) server_.tracking.Disable(id_);
    tracking_on_ = false;
    tracking_caching_ = false;
    tracking_mode_ = Tracking::Mode();
    tracking_bits_.store(0, std::memory_order_relaxed);
    tracking_redirect_.store(-1, std::memory_order_relaxed);
    return;
  }
  tracking_mode_ = server_.tracking.Enable(this, id_, mode);  // the prefixes accumulate
  tracking_on_ = true;
  tracking_bits_.store(kTrackingOn | (mode.bcast ? kTrackingBcast : 0), std::memory_order_relaxed);
  tracking_redirect_.store(static_cast<int64_t>(mode.redirect), std::memory_order_relaxed);
}

void ClientSession::DeliverPush(std::string_view bytes) {
  // While this client's write is in flight, its replies go first (Redis sends a client the
  // invalidations of its own writes after the reply). A suspended command (DBSIZE, INFO, SAVE...
  // waiting for the writer) holds nothing back: the write that caused the push came before it, so
  // the push goes before its reply, as Redis would send it.
  if (write_in_flight_ || reply_held_ || served_reply_coming_.load(std::memory_order_acquire)) {
    pending_pushes_.append(bytes);
    return;
  }
  link_->out().Push(bytes);
  link_->Flush();
}

std::vector<std::string_view> ClientSession::TrackedKeys(const Command& cmd, std::span<const std::string_view> args) {
  std::vector<std::string_view> keys;
  const Command& target = StatsTarget(cmd, args);
  if ((target.flags & kReadOnly) == 0) return keys;
  if ((target.flags & kMovableKeys) != 0) {
    for (const KeyRef& ref : CommandKeys(target, args)) keys.push_back(args[ref.index]);
  } else {
    KeyPositions(target, args.size(), &key_positions_);
    for (size_t i : key_positions_) keys.push_back(args[i]);
  }
  return keys;
}

void ClientSession::RememberTracked(const Command& cmd, std::span<const std::string_view> args) {
  if (!TracksReads()) return;  // OPTIN: only after CLIENT CACHING yes; OPTOUT: not after CACHING no
  if ((StatsTarget(cmd, args).flags & kWrite) != 0) return;  // (RememberTrackedInGroup, after it)
  const std::vector<std::string_view> keys = TrackedKeys(cmd, args);
  if (!keys.empty()) server_.tracking.Remember(id_, keys);
}

void ClientSession::RememberTrackedInGroup(const Command& cmd, std::span<const std::string_view> args) {
  if (!TracksReads()) return;
  const std::vector<std::string_view> keys = TrackedKeys(cmd, args);
  if (keys.empty()) return;
  batch_.BeginCommand();  // an op of its own: a failed write just before does not skip it
  batch_.Run([tracking = &server_.tracking, id = id_, owned = std::vector<std::string>(keys.begin(), keys.end())](
                 store::Txn& txn) {
    const std::vector<std::string_view> read(owned.begin(), owned.end());
    tracking->RememberInGroup(id, read, txn.Written());
  });
}

void ClientSession::Reset() {
  if (monitor_.exchange(false)) server_.monitors.Remove(this);
  SetTracking(false, {});
  if (subscriber_ != nullptr) {  // RESET leaves every subscription, without confirmations
    server_.pubsub.UnsubscribeAll(subscriber_.get());
    SubscriptionsChanged();
  }
  reply_off_ = skip_requested_ = skip_armed_ = no_touch_ = false;
  link_->out().set_muted(false);
  LeaveMulti();
  Unwatch();
  set_db(0);
  set_protocol(resp::Protocol::kResp2);
  set_name("");
  // Back to the default user, authenticated only if it needs no password (Redis's RESET).
  std::shared_ptr<const AclUser> d = server_.acl.Default();
  const bool open = d->enabled && d->nopass;
  Authenticate(std::move(d));
  set_authenticated(open);
}

std::string ClientSession::Describe(int64_t now_ms) const {
  const Command* last = last_command_.load(std::memory_order_relaxed);
  const Command* last_sub = last_subcommand_.load(std::memory_order_relaxed);
  std::string cmd_name = last != nullptr ? std::string(last->name) : "NULL";
  if (last_sub != nullptr) cmd_name += "|" + std::string(last_sub->name);
  std::string name;
  std::string lib_name;
  std::string lib_ver;
  std::string user;
  {
    std::lock_guard lock(info_mu_);
    name = name_;
    lib_name = lib_name_;
    lib_ver = lib_ver_;
    user = user_name_;
  }
  // Another thread's CLIENT LIST may run while this connection (un)subscribes: the Subscriber is
  // created once and never freed before the session, and its counts are atomics.
  uint32_t sub = 0;
  uint32_t psub = 0;
  uint32_t ssub = 0;
  if (const Subscriber* s = subscriber_ptr_.load(std::memory_order_acquire)) {
    sub = s->n_channels.load(std::memory_order_relaxed);
    psub = s->n_patterns.load(std::memory_order_relaxed);
    ssub = s->n_shard.load(std::memory_order_relaxed);
  }
  std::string flags;
  const uint8_t role = repl_role_.load(std::memory_order_relaxed);
  if (role == kRoleMaster) flags += 'M';
  if (role == kRoleReplica) flags += 'S';
  if (monitor_.load(std::memory_order_relaxed)) flags += 'O';
  if (blocked_flag_.load(std::memory_order_relaxed)) flags += 'b';
  if (sub + psub + ssub > 0) flags += 'P';
  const uint8_t tracking = tracking_bits_.load(std::memory_order_relaxed);
  if ((tracking & kTrackingOn) != 0) flags += 't';
  if ((tracking & kTrackingBroken) != 0) flags += 'R';
  if ((tracking & kTrackingBcast) != 0) flags += 'B';
  if (link_->unix_socket()) flags += 'U';
  if (flags.empty()) flags = "N";
  const size_t omem = link_->output_bytes();
  const int64_t age = (now_ms - created_ms_) / 1000;
  const int64_t idle = (now_ms - last_interaction_ms_.load(std::memory_order_relaxed)) / 1000;
  std::string s = "id=" + std::to_string(id_) + " addr=" + link_->peer() + " laddr=" +
                  link_->local() + " fd=" + std::to_string(link_->fd()) + " name=" + name +
                  " age=" + std::to_string(age) + " idle=" + std::to_string(idle) +
                  " flags=" + flags + " db=" + std::to_string(db()) + " sub=" + std::to_string(sub) + " psub=" + std::to_string(psub) +
                  " ssub=" + std::to_string(ssub) + " multi=" + std::to_string(multi_queued_.load(std::memory_order_relaxed)) + " qbuf=" +
                  std::to_string(link_->query_buffer_bytes()) +
                  " qbuf-free=" + std::to_string(link_->query_buffer_free()) + " argv-mem=0"
                  " multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=" + std::to_string(omem) + " tot-mem=" +
                  std::to_string(link_->query_buffer_bytes() + link_->query_buffer_free() + omem) + " events=r cmd=" + cmd_name +
                  " user=" + user + " redir=" + std::to_string(tracking_redirect_.load(std::memory_order_relaxed)) + " resp=" + std::to_string(resp_.load());
  if (!lib_name.empty() || !lib_ver.empty()) s += " lib-name=" + lib_name + " lib-ver=" + lib_ver;
  return s;
}

}  // namespace keg::server
