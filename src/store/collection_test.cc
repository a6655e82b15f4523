// Large collections stored per element (docs/types.md): head and element records, the element
// index, and how writes, reads, DEL / RENAME / expiry / FLUSH, restarts (with and without hint
// files), compaction and keg-check treat them.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "store/check.h"
#include "store/format.h"
#include "store/store.h"
#include "store/test_util.h"

namespace keg::store {
namespace {

namespace fs = std::filesystem;

std::string HeadValue(uint64_t inc) { return std::string(reinterpret_cast<const char*>(&inc), 8); }

class CollectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("keg_coll");
    options_.dir = dir_.string();
    options_.fsync = FsyncPolicy::kNo;
    options_.max_file_size = 64 * 1024;
    options_.auto_compaction = false;
    options_.background_interval_ms = 20;
    options_.hash_seed = 777;
    Open();
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }
  void Open() {
    store_.reset();
    Status s = Store::Open(options_, &store_);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  void Reopen() {
    ASSERT_TRUE(store_->Close().ok());
    Open();
  }
  // Runs `fn` as one kRun op (one group) and waits.
  void Run(const std::function<void(Txn&)>& fn, uint32_t db = 0) {
    WriteBatch b;
    b.SelectDb(db);
    b.Run(fn);
    ASSERT_TRUE(store_->WriteSync(std::move(b)).ok());
  }
  // Writes the head naming `inc` at `key`, through `txn`.
  static void PutHead(Txn& txn, const std::string& key, uint64_t inc, uint8_t type = format::kTypeHash,
                      int64_t expire_at_ms = 0, uint32_t db = 0) {
    WriteBatch::Op head;
    head.kind = WriteBatch::Kind::kPut;
    head.db = db;
    head.key = key;
    head.value = HeadValue(inc);
    head.type = type;
    head.record_kind = format::kKindHead;
    head.expire_at_ms = expire_at_ms;
    OpResult r;
    txn.Execute(std::move(head), &r);
  }
  // Creates hash `key` with `n` fields f<i> = v<i>, elements first and then the head; returns its
  // incarnation.
  uint64_t MakeHash(const std::string& key, int n, int64_t expire_at_ms = 0, uint32_t db = 0) {
    uint64_t inc = 0;
    Run([&](Txn& txn) {
      inc = txn.NewIncarnation();
      for (int i = 0; i < n; ++i) {
        EXPECT_TRUE(txn.PutElement(db, key, format::kTypeHash, inc, "f" + std::to_string(i), "v" + std::to_string(i)));
      }
      PutHead(txn, key, inc, format::kTypeHash, expire_at_ms, db);
    }, db);
    return inc;
  }
  // The incarnation `key` names, or 0 when it is not a head.
  uint64_t IncOf(const std::string& key, uint32_t db = 0) {
    ValueView v;
    if (!store_->Get(db, key, &v).ok() || v.kind != format::kKindHead) return 0;
    return format::IncarnationOf(v.value);
  }
  std::map<std::string, std::string> All(uint64_t inc) {
    std::vector<ElementView> out;
    std::vector<std::shared_ptr<const void>> pins;
    EXPECT_TRUE(store_->ReadElements(inc, &out, &pins).ok());
    std::map<std::string, std::string> m;
    for (const ElementView& e : out) m.emplace(e.member, e.value);
    EXPECT_EQ(m.size(), out.size()) << "an element listed twice";
    return m;
  }
  std::map<std::string, std::string> Expected(int n) {
    std::map<std::string, std::string> m;
    for (int i = 0; i < n; ++i) m["f" + std::to_string(i)] = "v" + std::to_string(i);
    return m;
  }
  // Waits until `pred` holds (background work: dropped collections, expiry).
  template <class Pred>
  bool Eventually(Pred pred) {
    for (int i = 0; i < 500; ++i) {
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return pred();
  }

  fs::path dir_;
  Options options_;
  std::unique_ptr<Store> store_;
};

TEST_F(CollectionTest, ElementsAreReadOneByOneWalkedScannedAndCounted) {
  const uint64_t inc = MakeHash("h", 1000);
  ASSERT_NE(inc, 0u);
  ValueView head;
  ASSERT_TRUE(store_->Get(0, "h", &head).ok());
  EXPECT_EQ(head.kind, format::kKindHead);
  EXPECT_EQ(head.type, format::kTypeHash);
  EXPECT_EQ(format::IncarnationOf(head.value), inc);
  EXPECT_EQ(store_->ElementCount(inc), 1000u);
  ValueView v;
  ASSERT_TRUE(store_->GetElement(inc, "f417", &v).ok());
  EXPECT_EQ(v.value, "v417");
  EXPECT_TRUE(store_->GetElement(inc, "f1000", &v).IsNotFound());
  EXPECT_TRUE(store_->GetElement(inc + 1, "f1", &v).IsNotFound());
  EXPECT_EQ(All(inc), Expected(1000));
  // SCAN: every element at least once, the cursor ends at 0.
  std::map<std::string, std::string> scanned;
  uint64_t cursor = 0;
  int calls = 0;
  do {
    cursor = store_->ScanElements(inc, cursor, 10, [&](std::string_view m, std::string_view val) {
      scanned[std::string(m)] = std::string(val);
    });
    ++calls;
  } while (cursor != 0 && calls < 10000);
  EXPECT_EQ(cursor, 0u);
  EXPECT_GT(calls, 20);  // in steps, not all at once
  EXPECT_EQ(scanned, Expected(1000));
  std::string m, val;
  std::set<std::string> seen;
  for (uint64_t r = 0; r < 200; ++r) {
    ASSERT_TRUE(store_->RandomElement(inc, r * 0x9E3779B97F4A7C15ull, &m, &val));
    EXPECT_EQ("v" + m.substr(1), val);
    seen.insert(m);
  }
  EXPECT_GT(seen.size(), 50u);
  // A key of 16 databases does not see it; DBSIZE counts the head alone.
  EXPECT_EQ(store_->KeyCount(0), 1u);
  EXPECT_EQ(store_->GetStats().collections, 1u);
  EXPECT_EQ(store_->GetStats().collection_elements, 1000u);
}

TEST_F(CollectionTest, ATxnSeesItsGroupsElementWrites) {
  const uint64_t inc = MakeHash("h", 10);
  Run([&](Txn& txn) {
    EXPECT_EQ(txn.ElementCount(inc), 10u);
    EXPECT_FALSE(txn.PutElement(0, "h", format::kTypeHash, inc, "f3", "new3"));  // replaced
    EXPECT_TRUE(txn.PutElement(0, "h", format::kTypeHash, inc, "f10", "v10"));   // added
    EXPECT_TRUE(txn.DeleteElement(0, "h", format::kTypeHash, inc, "f0"));
    EXPECT_FALSE(txn.DeleteElement(0, "h", format::kTypeHash, inc, "nope"));
    EXPECT_EQ(txn.ElementCount(inc), 10u);
    ValueView v;
    ASSERT_TRUE(txn.GetElement(inc, "f3", &v).ok());
    EXPECT_EQ(v.value, "new3");
    EXPECT_TRUE(txn.GetElement(inc, "f0", &v).IsNotFound());
    std::map<std::string, std::string> seen;
    EXPECT_TRUE(txn.ForEachElement(inc, [&](std::string_view m, std::string_view val) {
      EXPECT_TRUE(seen.emplace(m, val).second) << m;
    }).ok());
    std::map<std::string, std::string> want = Expected(11);
    want.erase("f0");
    want["f3"] = "new3";
    EXPECT_EQ(seen, want);
    // Readers do not see the group before it is applied.
    EXPECT_EQ(store_->ElementCount(inc), 10u);
  });
  std::map<std::string, std::string> want = Expected(11);
  want.erase("f0");
  want["f3"] = "new3";
  EXPECT_EQ(All(inc), want);
  EXPECT_EQ(store_->ElementCount(inc), 10u);
  Reopen();
  EXPECT_EQ(All(inc), want);
}

// Txn::ReadElement hands its callback the value where it lies: in the group buffer for an element
// the group wrote (the view is good for the call), in the data file for one it did not; NotFound
// (the callback not called) for a missing or deleted one.
TEST_F(CollectionTest, ReadElementSeesTheGroupsWritesWithoutACopy) {
  const uint64_t inc = MakeHash("h", 10);
  Run([&](Txn& txn) {
    std::string got;
    auto read = [&](std::string_view member) {
      got = "(not called)";
      return txn.ReadElement(inc, member, [&](std::string_view value) { got.assign(value); });
    };
    ASSERT_TRUE(read("f3").ok());  // applied: from the data file
    EXPECT_EQ(got, "v3");
    txn.PutElement(0, "h", format::kTypeHash, inc, "f3", "group's");
    ASSERT_TRUE(read("f3").ok());  // written by the group: from its buffer
    EXPECT_EQ(got, "group's");
    EXPECT_TRUE(read("nope").IsNotFound());
    EXPECT_EQ(got, "(not called)");
    txn.DeleteElement(0, "h", format::kTypeHash, inc, "f4");
    EXPECT_TRUE(read("f4").IsNotFound());
    EXPECT_TRUE(txn.ReadElement(inc + 1, "f1", [](std::string_view) { ADD_FAILURE(); }).IsNotFound());
  });
}

// An element a group writes again with a value of the same size (a list's meta element under a
// pipeline of pushes) keeps one record: the group's first one, holding the last value.
TEST_F(CollectionTest, AnElementRewrittenInItsGroupIsOneRecord) {
  const uint64_t inc = MakeHash("h", 10);
  const uint64_t before = store_->GetStats().group_records;
  const uint64_t bytes_before = store_->GetStats().bytes_written;
  Run([&](Txn& txn) {
    for (int i = 0; i < 100; ++i) txn.PutElement(0, "h", format::kTypeHash, inc, "n", "v" + std::to_string(i % 10));
    ValueView v;
    ASSERT_TRUE(txn.GetElement(inc, "n", &v).ok());
    EXPECT_EQ(v.value, "v9");
    txn.PutElement(0, "h", format::kTypeHash, inc, "f1", "w1");      // an element written before the group
    txn.PutElement(0, "h", format::kTypeHash, inc, "n", "longer");   // another size: a record of its own
    txn.PutElement(0, "h", format::kTypeHash, inc, "n", "v7");       // the last record is 6 bytes: another
    txn.PutElement(0, "h", format::kTypeHash, inc, "n", "v8");       // and that one takes this
    ASSERT_TRUE(txn.GetElement(inc, "n", &v).ok());
    EXPECT_EQ(v.value, "v8");
  });
  EXPECT_EQ(store_->GetStats().group_records - before, 4u);  // n, f1, n "longer", n "v8"
  EXPECT_LT(store_->GetStats().bytes_written - bytes_before, 4u * 100);
  std::map<std::string, std::string> want = Expected(10);
  want["n"] = "v8";
  want["f1"] = "w1";
  EXPECT_EQ(All(inc), want);
  Reopen();
  EXPECT_EQ(All(inc), want);
  // A flush in between: the element after it is a record of its own (the flush goes before it).
  uint64_t c = 0;
  Run([&](Txn& txn) {
    c = txn.NewIncarnation();
    txn.PutElement(0, "c", format::kTypeHash, c, "x", "1");
    OpResult r;
    WriteBatch::Op flush;
    flush.kind = WriteBatch::Kind::kDeleteAll;
    txn.Execute(std::move(flush), &r);
    txn.PutElement(0, "c", format::kTypeHash, c, "x", "2");
    PutHead(txn, "c", c);
  });
  EXPECT_EQ(All(c), (std::map<std::string, std::string>{{"x", "2"}}));
  Reopen();
  EXPECT_EQ(All(c), (std::map<std::string, std::string>{{"x", "2"}}));
  EXPECT_EQ(IncOf("h"), 0u);
}

TEST_F(CollectionTest, DeleteDropsTheCollectionAndCompactionReclaimsIt) {
  const uint64_t inc = MakeHash("h", 3000);
  const uint64_t keep = MakeHash("k", 100);
  ASSERT_TRUE(store_->Sync().ok());
  const uint64_t before = store_->GetStats().total_bytes;
  WriteBatch del;
  del.Delete("h");
  ASSERT_TRUE(store_->WriteSync(std::move(del)).ok());
  EXPECT_EQ(store_->ElementCount(inc), 0u);
  ValueView v;
  EXPECT_TRUE(store_->GetElement(inc, "f1", &v).IsNotFound());
  EXPECT_EQ(store_->GetStats().collections, 1u);
  // Its records are counted dead off the request path, so compaction picks them up.
  ASSERT_TRUE(Eventually([&] { return store_->GetStats().dead_bytes > before / 2; }))
      << store_->GetStats().dead_bytes << " of " << before;
  ASSERT_TRUE(store_->CompactSync().ok());
  EXPECT_LT(store_->GetStats().total_bytes, before / 4);
  EXPECT_EQ(All(keep), Expected(100));
  Reopen();
  EXPECT_EQ(All(keep), Expected(100));
  EXPECT_EQ(store_->ElementCount(inc), 0u);
  EXPECT_EQ(store_->GetStats().collections, 1u);
}

TEST_F(CollectionTest, RenameMovesTheHeadAloneAndKeepsTheElements) {
  const uint64_t inc = MakeHash("a", 500);
  Run([&](Txn& txn) {
    ValueView head;
    ASSERT_TRUE(txn.Get(0, "a", &head).ok());
    WriteBatch::Op put;
    put.kind = WriteBatch::Kind::kPut;
    put.key = "b";
    put.value = std::string(head.value);
    put.type = head.type;
    put.record_kind = head.kind;
    OpResult r;
    txn.Execute(std::move(put), &r);
    WriteBatch::Op del;
    del.kind = WriteBatch::Kind::kDelete;
    del.key = "a";
    txn.Execute(std::move(del), &r);
  });
  EXPECT_EQ(IncOf("a"), 0u);
  EXPECT_EQ(IncOf("b"), inc);
  EXPECT_EQ(All(inc), Expected(500));
  // MOVE to another database: the head alone again.
  WriteBatch move;
  move.Move("b", 3);
  ASSERT_TRUE(store_->WriteSync(std::move(move)).ok());
  EXPECT_EQ(IncOf("b", 3), inc);
  EXPECT_EQ(All(inc), Expected(500));
  // FLUSHDB of the database it left does not touch it; of its own, drops it.
  WriteBatch flush0;
  flush0.DeleteDb();
  ASSERT_TRUE(store_->WriteSync(std::move(flush0)).ok());
  EXPECT_EQ(All(inc), Expected(500));
  Reopen();
  EXPECT_EQ(IncOf("b", 3), inc);
  EXPECT_EQ(All(inc), Expected(500));
  WriteBatch flush3;
  flush3.SelectDb(3);
  flush3.DeleteDb();
  ASSERT_TRUE(store_->WriteSync(std::move(flush3)).ok());
  EXPECT_EQ(store_->ElementCount(inc), 0u);
  Reopen();
  EXPECT_EQ(store_->ElementCount(inc), 0u);
  EXPECT_EQ(store_->GetStats().collections, 0u);
}

TEST_F(CollectionTest, ExpiredHeadsTakeTheirElementsWithThem) {
  const uint64_t soon = MakeHash("soon", 300, NowMs() + 300);
  const uint64_t later = MakeHash("later", 300, NowMs() + 3'600'000);
  EXPECT_EQ(store_->ElementCount(soon), 300u);
  // The active expire cycle drops the head without reading it; the collection follows.
  ASSERT_TRUE(Eventually([&] { return store_->ElementCount(soon) == 0; }));
  EXPECT_EQ(IncOf("soon"), 0u);
  EXPECT_EQ(All(later), Expected(300));
  // EXPIRE rewrites the head: same incarnation, elements untouched.
  WriteBatch persist;
  persist.Expire("later", 0);
  ASSERT_TRUE(store_->WriteSync(std::move(persist)).ok());
  ValueView head;
  ASSERT_TRUE(store_->Get(0, "later", &head).ok());
  EXPECT_EQ(head.expire_at_ms, 0);
  EXPECT_EQ(IncOf("later"), later);
  EXPECT_EQ(All(later), Expected(300));
  // Lazy expiry (the cycle off): a read finds the head expired, and the writer's next turn drops
  // the collection too, write or not (here a SAVE's sync).
  store_->SetActiveExpire(false);
  const uint64_t lazy = MakeHash("lazy", 40, NowMs() + 100);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  const uint64_t before = store_->GetStats().collections;
  EXPECT_EQ(IncOf("lazy"), 0u);  // expired: the read queues it for the writer
  ASSERT_TRUE(store_->Sync().ok());
  EXPECT_EQ(store_->GetStats().collections, before - 1);
  EXPECT_EQ(store_->ElementCount(lazy), 0u);
  store_->SetActiveExpire(true);
  // A head that expired while the store was closed is not revived at the next start.
  const uint64_t brief = MakeHash("brief", 50, NowMs() + 200);
  ASSERT_TRUE(store_->Close().ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  Open();
  EXPECT_EQ(store_->ElementCount(brief), 0u);
  EXPECT_EQ(All(later), Expected(300));
  EXPECT_EQ(store_->GetStats().collections, 1u);
}

TEST_F(CollectionTest, RestartsFromDataFilesAndFromHintFilesAgree) {
  const uint64_t h1 = MakeHash("h1", 2000);
  const uint64_t h2 = MakeHash("h2", 700);
  Run([&](Txn& txn) {
    for (int i = 0; i < 700; i += 2) txn.DeleteElement(0, "h2", format::kTypeHash, h2, "f" + std::to_string(i));
    txn.PutElement(0, "h2", format::kTypeHash, h2, "f1", "changed");
  });
  // Elements without a head (a group cut short before its head): dropped at the start.
  uint64_t orphan = 0;
  Run([&](Txn& txn) {
    orphan = txn.NewIncarnation();
    for (int i = 0; i < 20; ++i) txn.PutElement(0, "o", format::kTypeHash, orphan, "x" + std::to_string(i), "y");
  });
  std::map<std::string, std::string> want2;
  for (int i = 1; i < 700; i += 2) want2["f" + std::to_string(i)] = "v" + std::to_string(i);
  want2["f1"] = "changed";
  Reopen();  // data files (the writer's are sealed, no hint yet, or some)
  EXPECT_EQ(All(h1), Expected(2000));
  EXPECT_EQ(All(h2), want2);
  EXPECT_EQ(store_->ElementCount(orphan), 0u);
  // Hint files for every sealed file, then a start from them.
  ASSERT_TRUE(Eventually([&] {
    const Stats st = store_->GetStats();
    return st.hint_files == st.sealed_files;
  }));
  Reopen();
  EXPECT_GT(store_->GetStats().recovery_hint_files, 0u);
  EXPECT_EQ(All(h1), Expected(2000));
  EXPECT_EQ(All(h2), want2);
  EXPECT_EQ(store_->GetStats().collections, 2u);
  // Incarnations are never reused: a new one is past every one on disk.
  uint64_t fresh = 0;
  Run([&](Txn& txn) { fresh = txn.NewIncarnation(); });
  EXPECT_GT(fresh, std::max({h1, h2, orphan}));
  // Compaction copies the live elements (and drops the orphans and deleted elements), then a
  // restart from its outputs' hint files sees the same.
  ASSERT_TRUE(store_->CompactSync().ok());
  EXPECT_EQ(All(h1), Expected(2000));
  EXPECT_EQ(All(h2), want2);
  ValueView v;
  ASSERT_TRUE(store_->GetElement(h1, "f1999", &v).ok());
  EXPECT_EQ(v.value, "v1999");
  Reopen();
  EXPECT_EQ(All(h1), Expected(2000));
  EXPECT_EQ(All(h2), want2);
  CheckReport report;
  ASSERT_TRUE(store_->Close().ok());
  store_.reset();
  ASSERT_TRUE(CheckDirectory(options_.dir, false, &report).ok());
  EXPECT_TRUE(report.clean());
  EXPECT_EQ(report.live_keys, 2u);
  EXPECT_EQ(report.collections, 2u);
  EXPECT_EQ(report.live_elements, 2000u + want2.size());
}

TEST_F(CollectionTest, FlushAllDropsEveryCollectionAcrossARestart) {
  const uint64_t a = MakeHash("a", 400);
  const uint64_t b = MakeHash("b", 400, 0, 5);
  WriteBatch flush;
  flush.DeleteAll();
  ASSERT_TRUE(store_->WriteSync(std::move(flush)).ok());
  EXPECT_EQ(store_->ElementCount(a), 0u);
  EXPECT_EQ(store_->ElementCount(b), 0u);
  // A collection written after the flush, in the same group, lives.
  uint64_t c = 0;
  {
    WriteBatch g;
    g.DeleteAll();
    g.Run([&](Txn& txn) {
      c = txn.NewIncarnation();
      for (int i = 0; i < 300; ++i) txn.PutElement(0, "c", format::kTypeHash, c, "f" + std::to_string(i), "v" + std::to_string(i));
      PutHead(txn, "c", c);
    });
    ASSERT_TRUE(store_->WriteSync(std::move(g)).ok());
  }
  EXPECT_EQ(All(c), Expected(300));
  Reopen();
  EXPECT_EQ(store_->ElementCount(a), 0u);
  EXPECT_EQ(store_->ElementCount(b), 0u);
  EXPECT_EQ(All(c), Expected(300));
  EXPECT_EQ(store_->GetStats().collections, 1u);
}

TEST_F(CollectionTest, AGroupThatCreatesAndDeletesACollectionLeavesNothing) {
  uint64_t inc = 0;
  Run([&](Txn& txn) {
    inc = txn.NewIncarnation();
    for (int i = 0; i < 200; ++i) txn.PutElement(0, "t", format::kTypeSet, inc, "m" + std::to_string(i), {});
    PutHead(txn, "t", inc, format::kTypeSet);
    EXPECT_EQ(txn.ElementCount(inc), 200u);
    OpResult r;
    WriteBatch::Op del;
    del.kind = WriteBatch::Kind::kDelete;
    del.key = "t";
    txn.Execute(std::move(del), &r);
  });
  EXPECT_EQ(IncOf("t"), 0u);
  EXPECT_EQ(store_->ElementCount(inc), 0u);
  EXPECT_EQ(store_->GetStats().collections, 0u);
}

TEST_F(CollectionTest, WalksSeeAGroupsWritesToTheCollectionAllOrNone) {
  // Each group moves one "token" element: delete t<i>, add t<i+1>. A walk must always find
  // exactly one token and the 1000 fixed fields.
  const uint64_t inc = MakeHash("h", 1000);
  Run([&](Txn& txn) { txn.PutElement(0, "h", format::kTypeHash, inc, "t0", "x"); });
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; i < 2000 && !stop; ++i) {
      WriteBatch b;
      b.Run([&, i](Txn& txn) {
        txn.DeleteElement(0, "h", format::kTypeHash, inc, "t" + std::to_string(i));
        txn.PutElement(0, "h", format::kTypeHash, inc, "t" + std::to_string(i + 1), "x");
      });
      if (!store_->WriteSync(std::move(b)).ok()) break;
    }
  });
  for (int walk = 0; walk < 300 && !::testing::Test::HasFailure(); ++walk) {
    std::vector<ElementView> out;
    std::vector<std::shared_ptr<const void>> pins;
    EXPECT_TRUE(store_->ReadElements(inc, &out, &pins).ok());
    EXPECT_EQ(out.size(), 1001u);
    const size_t tokens = static_cast<size_t>(std::count_if(out.begin(), out.end(), [](const ElementView& e) {
      return e.member[0] == 't';
    }));
    EXPECT_EQ(tokens, 1u);
    // The count too: a group's changes to it all or none.
    EXPECT_EQ(store_->ElementCount(inc), 1001u);
  }
  stop = true;
  writer.join();
}

// A damaged element record is never served: a point read, a walk and a Txn read say Corruption
// naming the file, a scan skips it; the other elements still read.
TEST_F(CollectionTest, ADamagedElementIsCorruptionNotAValue) {
  options_.max_file_size = 1 << 20;
  Open();
  const uint64_t inc = MakeHash("h", 300);
  ASSERT_TRUE(store_->Sync().ok());
  // The group wrote f0 first, right after the file's header record: flip a byte of its value.
  fs::path data;
  for (const auto& e : fs::directory_iterator(dir_)) {
    if (e.path().extension() == ".data") data = e.path();
  }
  const uint64_t at = format::kFileHeaderSize + format::kRecordHeaderSize + format::kIncarnationSize + 2 + 1;
  {
    std::fstream f(data, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(at));
    char c = 0;
    f.read(&c, 1);
    ASSERT_EQ(c, '0');  // "v0"'s second byte
    c = 'X';
    f.seekp(static_cast<std::streamoff>(at));
    f.write(&c, 1);
  }
  ValueView v;
  const Status s = store_->GetElement(inc, "f0", &v);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.ToString().find(data.filename().string()), std::string::npos) << s.ToString();
  ASSERT_TRUE(store_->GetElement(inc, "f1", &v).ok());
  EXPECT_EQ(v.value, "v1");
  std::vector<ElementView> out;
  std::vector<std::shared_ptr<const void>> pins;
  EXPECT_TRUE(store_->ReadElements(inc, &out, &pins).IsCorruption());
  size_t scanned = 0;
  uint64_t cursor = 0;
  do {
    cursor = store_->ScanElements(inc, cursor, 50, [&](std::string_view m, std::string_view) {
      EXPECT_NE(m, "f0");
      ++scanned;
    });
  } while (cursor != 0);
  EXPECT_EQ(scanned, 299u);
  Run([&](Txn& txn) {
    ValueView got;
    EXPECT_TRUE(txn.GetElement(inc, "f0", &got).IsCorruption());
    // A write replaces the damaged element.
    EXPECT_FALSE(txn.PutElement(0, "h", format::kTypeHash, inc, "f0", "fresh"));
  });
  ASSERT_TRUE(store_->GetElement(inc, "f0", &v).ok());
  EXPECT_EQ(v.value, "fresh");
  EXPECT_EQ(store_->ElementCount(inc), 300u);
}

}  // namespace
}  // namespace keg::store

namespace keg::store {
namespace {

// A sorted set's order (the store's ordered index) as a reader sees it: (score, member) in order.
std::vector<std::pair<double, std::string>> Order(const Store& st, uint64_t inc) {
  std::vector<std::pair<double, std::string>> out;
  st.ReadOrdered(inc, [&](const OrderedView& v) {
    out.clear();
    v.ForRange(0, v.Size(), [&](const OrderedView::Item& it) {
      out.emplace_back(it.score, std::string(it.member));
      return true;
    });
  });
  return out;
}

// A read that meets more data files than its walk keeps inline (four; PinnedFiles) pins and finds
// the rest too: a sorted set whose 3,000 members lie in some seven 64 KiB files, read whole through
// the order and through ReadElements.
TEST_F(CollectionTest, AReadMeetingManyDataFilesFindsEveryMember) {
  std::vector<std::pair<double, std::string>> want;
  uint64_t inc = 0;
  for (int group = 0; group < 10; ++group) {  // a group stays in one file: ten of them
    Run([&](Txn& txn) {
      if (group == 0) inc = txn.NewIncarnation();
      for (int i = group * 300; i < (group + 1) * 300; ++i) {
        std::string m = std::string(120, 'x') + std::to_string(i);
        txn.PutElement(0, "z", format::kTypeZset, inc, m, format::EncodeScore(i % 7));
        want.emplace_back(i % 7, std::move(m));
      }
      if (group == 0) PutHead(txn, "z", inc, format::kTypeZset);
    });
  }
  std::sort(want.begin(), want.end());
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir_)) files += e.path().extension() == ".data" ? 1u : 0u;
  ASSERT_GT(files, 4u);
  EXPECT_EQ(Order(*store_, inc), want);
  std::vector<ElementView> out;
  std::vector<std::shared_ptr<const void>> pins;
  ASSERT_TRUE(store_->ReadElements(inc, &out, &pins).ok());
  EXPECT_EQ(out.size(), want.size());
  EXPECT_GT(pins.size(), 4u);
}

TEST_F(CollectionTest, ASortedSetsOrderFollowsWritesRestartsAndCompaction) {
  // A model of the set: member -> score. Scores tie often (the member decides).
  std::map<std::string, double> model;
  uint64_t inc = 0;
  Run([&](Txn& txn) {
    inc = txn.NewIncarnation();
    for (int i = 0; i < 2000; ++i) {
      const std::string m = "m" + std::to_string(i);
      model[m] = i % 13;
      txn.PutElement(0, "z", format::kTypeZset, inc, m, format::EncodeScore(i % 13));
    }
    PutHead(txn, "z", inc, format::kTypeZset);
  });
  auto expected = [&] {
    std::vector<std::pair<double, std::string>> v;
    for (const auto& [m, s] : model) v.emplace_back(s, m);
    std::sort(v.begin(), v.end());
    return v;
  };
  ASSERT_EQ(Order(*store_, inc), expected());
  // Rescores, removals and re-adds over several groups; a Txn reads the applied order meanwhile.
  for (int round = 0; round < 5; ++round) {
    Run([&](Txn& txn) {
      for (int i = round; i < 2000; i += 7) {
        const std::string m = "m" + std::to_string(i);
        if (i % 3 == 0) {
          txn.DeleteElement(0, "z", format::kTypeZset, inc, m);
          model.erase(m);
        } else {
          const double s = (i * 31 + round) % 17 - 8.5;
          txn.PutElement(0, "z", format::kTypeZset, inc, m, format::EncodeScore(s));
          model[m] = s;
        }
      }
      size_t changes = 0;
      txn.GroupElements(inc, [&](std::string_view, const std::string_view*) { ++changes; });
      EXPECT_GT(changes, 0u);
    });
    ASSERT_EQ(Order(*store_, inc), expected()) << "round " << round;
  }
  // Rank and Find through the view.
  store_->ReadOrdered(inc, [&](const OrderedView& v) {
    const auto want = expected();
    double score = 0;
    uint64_t pos = 0;
    ASSERT_TRUE(v.Find(want[100].second, &score, &pos));
    EXPECT_EQ(score, want[100].first);
    EXPECT_EQ(pos, 100u);
    EXPECT_FALSE(v.Find("absent", &score, &pos));
    EXPECT_EQ(v.PartitionPoint([](const OrderedView::Probe& p) { return p.score() < 0; }),
              static_cast<uint64_t>(std::count_if(want.begin(), want.end(), [](const auto& e) { return e.first < 0; })));
  });
  Reopen();  // the order is rebuilt from the element records
  ASSERT_EQ(Order(*store_, inc), expected());
  ASSERT_TRUE(store_->CompactSync().ok());  // every element record moves: the order follows
  ASSERT_EQ(Order(*store_, inc), expected());
  Run([&](Txn& txn) {  // and later writes still find their entries
    for (int i = 1; i < 2000; i += 5) {
      const std::string m = "m" + std::to_string(i);
      txn.PutElement(0, "z", format::kTypeZset, inc, m, format::EncodeScore(-i));
      model[m] = -i;
    }
  });
  ASSERT_EQ(Order(*store_, inc), expected());
  Reopen();
  ASSERT_EQ(Order(*store_, inc), expected());
}

std::string PositionMember(uint64_t pos) {
  std::string m(8, '\0');
  for (int i = 7; i >= 0; --i, pos >>= 8) m[static_cast<size_t>(i)] = static_cast<char>(pos & 0xff);
  return m;
}

TEST_F(CollectionTest, AListsPositionsFollowPushesPopsRestartsAndCompaction) {
  // A list's elements as the server writes them: members are positions, plus a meta element ("").
  // Its index (PositionIndex) must answer as the element index would, through restarts from data
  // and hint files, compaction, and a queue's drift, at a fraction of the element index's RAM.
  constexpr uint64_t kMiddle = uint64_t{1} << 63;
  std::map<uint64_t, std::string> model;
  uint64_t first = kMiddle, end = kMiddle;
  uint64_t inc = 0;
  auto meta = [&] { return std::to_string(first) + ":" + std::to_string(end - first); };
  Run([&](Txn& txn) {
    inc = txn.NewIncarnation();
    for (int i = 0; i < 3000; ++i) {
      model[end] = "e" + std::to_string(end - kMiddle);
      txn.PutElement(0, "l", format::kTypeList, inc, PositionMember(end), model[end]);
      ++end;
    }
    txn.PutElement(0, "l", format::kTypeList, inc, "", meta());
    PutHead(txn, "l", inc, format::kTypeList);
  });
  auto check = [&](const char* when) {
    SCOPED_TRACE(when);
    ASSERT_EQ(store_->ElementCount(inc), model.size() + 1);
    std::vector<std::string> members;
    for (const auto& [pos, v] : model) members.push_back(PositionMember(pos));
    std::vector<std::string_view> views(members.begin(), members.end());
    std::vector<std::string_view> values;
    std::vector<std::shared_ptr<const void>> pins;
    ASSERT_TRUE(store_->GetElements(inc, views, &values, &pins).ok());
    size_t i = 0;
    for (const auto& [pos, v] : model) ASSERT_EQ(values[i++], v) << pos;
    ValueView one;
    ASSERT_TRUE(store_->GetElement(inc, "", &one).ok());
    EXPECT_EQ(one.value, meta());
    EXPECT_TRUE(store_->GetElement(inc, PositionMember(first - 1), &one).IsNotFound());
    EXPECT_TRUE(store_->GetElement(inc, PositionMember(end), &one).IsNotFound());
    const std::map<std::string, std::string> all = All(inc);  // the walk sees each once
    EXPECT_EQ(all.size(), model.size() + 1);
  };
  check("written");
  // A queue: pushes on the right, pops on the left, groups of both; a Txn sees its group's writes.
  for (int round = 0; round < 8; ++round) {
    Run([&](Txn& txn) {
      for (int i = 0; i < 700; ++i) {
        model[end] = "r" + std::to_string(round) + "." + std::to_string(i);
        txn.PutElement(0, "l", format::kTypeList, inc, PositionMember(end), model[end]);
        ++end;
        if (i % 7 != 0) {
          txn.DeleteElement(0, "l", format::kTypeList, inc, PositionMember(first));
          model.erase(first++);
        }
      }
      ValueView v;
      EXPECT_TRUE(txn.GetElement(inc, PositionMember(end - 1), &v).ok());
      EXPECT_EQ(v.value, model[end - 1]);
      txn.PutElement(0, "l", format::kTypeList, inc, "", meta());
    });
  }
  check("after the queue ran");
  Reopen();  // from the data files
  check("restarted");
  ASSERT_TRUE(store_->CompactSync().ok());  // every record moves; the index follows
  check("compacted");
  Reopen();  // from the compaction's hint files
  check("restarted from hint files");
  // Memory: a list's index costs a few bytes an element, not the element index's 17-21.
  Run([&](Txn& txn) {
    for (int i = 0; i < 60000; ++i) {
      model[end] = "x";
      txn.PutElement(0, "l", format::kTypeList, inc, PositionMember(end++), "x");
    }
    txn.PutElement(0, "l", format::kTypeList, inc, "", meta());
  });
  const Stats st = store_->GetStats();
  EXPECT_LE(static_cast<double>(st.collection_index_bytes) / static_cast<double>(model.size()), 8.0);
  check("grown");
  ASSERT_TRUE(store_->Sync().ok());
  const uint64_t before = store_->GetStats().total_bytes;
  WriteBatch del;  // DEL: its records are counted dead off the request path; compaction takes them
  del.Delete("l");
  ASSERT_TRUE(store_->WriteSync(std::move(del)).ok());
  EXPECT_EQ(store_->ElementCount(inc), 0u);
  ASSERT_TRUE(Eventually([&] { return store_->GetStats().dead_bytes > before * 3 / 4; }))
      << store_->GetStats().dead_bytes << " of " << before;
  ASSERT_TRUE(store_->CompactSync().ok());
  EXPECT_LT(store_->GetStats().total_bytes, before / 10);
}

}  // namespace
}  // namespace keg::store

namespace keg::store {
namespace {

// Flips the first byte of `needle` in the data files of `dir`; false when it is in none.
bool FlipFirst(const fs::path& dir, const std::string& needle) {
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".data") continue;
    std::string bytes(fs::file_size(e.path()), '\0');
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    f.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    const size_t at = bytes.find(needle);
    if (at == std::string::npos) continue;
    f.clear();
    f.seekp(static_cast<std::streamoff>(at));
    const char c = static_cast<char>(bytes[at] ^ 0x20);
    f.write(&c, 1);
    return true;
  }
  return false;
}

// A damaged element record read through the batched read (LRANGE) or served from a sorted set's
// order is Corruption naming its file, never a value.
TEST_F(CollectionTest, DamagedElementsInBatchedAndOrderedReadsAreCorruption) {
  options_.max_file_size = 1 << 20;
  Open();
  const uint64_t hinc = MakeHash("h", 300);
  uint64_t zinc = 0;
  Run([&](Txn& txn) {
    zinc = txn.NewIncarnation();
    for (int i = 0; i < 300; ++i) {
      const std::string m = i == 150 ? "needle-member" : "z" + std::to_string(i);
      txn.PutElement(0, "z", format::kTypeZset, zinc, m, format::EncodeScore(i));
    }
    PutHead(txn, "z", zinc, format::kTypeZset);
  });
  ASSERT_TRUE(store_->Sync().ok());
  std::vector<std::string_view> values;
  std::vector<std::shared_ptr<const void>> pins;
  const std::vector<std::string_view> fields = {"f1", "f2", "f3"};
  ASSERT_TRUE(store_->GetElements(hinc, fields, &values, &pins).ok());
  EXPECT_EQ(values, (std::vector<std::string_view>{"v1", "v2", "v3"}));
  const std::vector<std::string_view> absent = {"f1", "nope"};
  EXPECT_TRUE(store_->GetElements(hinc, absent, &values, &pins).IsNotFound());
  ASSERT_TRUE(FlipFirst(dir_, "v2"));  // f2's value (the first "v2" written)
  const Status s = store_->GetElements(hinc, fields, &values, &pins);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.ToString().find(".data"), std::string::npos) << s.ToString();
  ASSERT_TRUE(FlipFirst(dir_, "needle-member"));
  Status served;
  std::vector<std::string> members;
  store_->ReadOrdered(zinc, [&](const OrderedView& v) {
    v.ForRange(0, v.Size(), [&](const OrderedView::Item& it) {
      members.emplace_back(it.member);
      return true;
    });
    served = v.error();
  });
  EXPECT_TRUE(served.IsCorruption()) << served.ToString();
  EXPECT_EQ(std::count(members.begin(), members.end(), "needle-member"), 0);
}

}  // namespace
}  // namespace keg::store
