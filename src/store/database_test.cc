// Format 2 and databases: typed records, the file header, format-1 directories read as they are,
// and the per-database keydirs (SELECT, FLUSHDB, SWAPDB, MOVE) through restarts, hint files and
// compaction.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>
#include <string>
#include <vector>

#include "store/check.h"
#include "store/format.h"
#include "store/store.h"
#include "store/test_util.h"

namespace keg::store {
namespace {

namespace fs = std::filesystem;

class DatabaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("keg_db");
    options_.dir = dir_.string();
    options_.fsync = FsyncPolicy::kNo;
    options_.max_file_size = 16 * 1024;
    options_.auto_compaction = false;
    options_.background_interval_ms = 50;
    options_.hash_seed = 777;
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
  void Write(WriteBatch b, std::vector<OpResult>* r = nullptr) {
    Status s = store_->WriteSync(std::move(b), r);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  void Put(uint32_t db, const std::string& k, const std::string& v, uint8_t type = 0) {
    WriteBatch b;
    b.SelectDb(db);
    b.Put(k, v, 0, PutCondition::kAlways, false, false, type);
    Write(std::move(b));
  }
  std::string Get(uint32_t db, const std::string& k) {
    ValueView v;
    Status s = store_->Get(db, k, &v);
    if (s.IsNotFound()) return "<missing>";
    if (!s.ok()) return "<error " + s.ToString() + ">";
    return std::string(v.value);
  }
  // Every database's keys as "db:key=value", sorted.
  std::vector<std::string> Dump() {
    std::vector<std::string> out;
    for (uint32_t db = 0; db < store_->Databases(); ++db) {
      uint64_t cursor = 0;
      do {
        cursor = store_->Scan(db, cursor, 100, [&](std::string_view k, int64_t) {
          out.push_back(std::to_string(db) + ":" + std::string(k) + "=" + Get(db, std::string(k)));
        });
      } while (cursor != 0);
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  }

  fs::path dir_;
  Options options_;
  std::unique_ptr<Store> store_;
};

// A directory written by format-1 keg (no file header, all-zero tag bytes) opens as it is: its keys
// are strings of database 0; new writes go to a format-2 file beside it.
TEST_F(DatabaseTest, FormatOneDirectoryIsReadAsItIs) {
  fs::create_directories(dir_);
  std::string file;
  format::AppendRecord(&file, 0, "old", "format one", 1, 0);
  format::AppendRecord(&file, 0, "gone", "x", 1, 0);
  format::AppendRecord(&file, format::kFlagTombstone, "gone", "", 1, 0);
  format::AppendRecord(&file, format::kFlagExpires, "ttl", "later", 1, 4102444800000);  // 2100
  std::ofstream(dir_ / format::DataFileName(format::kFileIdGap), std::ios::binary) << file;
  // The bytes format 1 wrote: flags, then three zero bytes.
  ASSERT_EQ(file[format::kTypeOffset], 0);
  ASSERT_EQ(file[format::kDbOffset], 0);
  Open();
  EXPECT_EQ(Get(0, "old"), "format one");
  EXPECT_EQ(Get(0, "gone"), "<missing>");
  EXPECT_EQ(Get(0, "ttl"), "later");
  EXPECT_EQ(Get(1, "old"), "<missing>");
  ValueView v;
  ASSERT_TRUE(store_->Get(0, "old", &v).ok());
  EXPECT_EQ(v.type, format::kTypeString);
  Put(0, "new", "format two");
  Reopen();
  EXPECT_EQ(Get(0, "old"), "format one");
  EXPECT_EQ(Get(0, "new"), "format two");
  // Compaction rewrites both into format-2 files that start with the header record.
  ASSERT_TRUE(store_->CompactSync().ok());
  Reopen();
  EXPECT_EQ(Get(0, "old"), "format one");
  EXPECT_EQ(Get(0, "ttl"), "later");
  EXPECT_EQ(Get(0, "new"), "format two");
  for (const auto& e : fs::directory_iterator(dir_)) {
    if (e.path().extension() != ".data" || fs::file_size(e.path()) < format::kRecordHeaderSize) continue;
    std::ifstream in(e.path(), std::ios::binary);
    std::string head(format::kRecordHeaderSize, '\0');
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    EXPECT_TRUE(format::DecodeHeader(head.data()).file_header()) << e.path();
  }
  CheckReport r;
  ASSERT_TRUE(store_->Close().ok());
  ASSERT_TRUE(CheckDirectory(dir_.string(), false, &r).ok());
  EXPECT_TRUE(r.clean());
  EXPECT_EQ(r.live_keys, 3u);
}

// Each record carries its type and database; the CRC covers them, and unknown values are refused.
TEST_F(DatabaseTest, RecordTagsAreCheckedAndCovered) {
  std::string rec;
  format::AppendRecord(&rec, 0, "k", "v", 1, 0, format::Tag{format::kTypeHash, format::kKindWhole, 7});
  format::RecordHeader h;
  ASSERT_EQ(format::CheckRecord(rec.data(), rec.size(), 0, true, &h), format::RecordCheck::kOk);
  EXPECT_EQ(h.tag.type, format::kTypeHash);
  EXPECT_EQ(h.tag.db, 7);
  std::string flipped = rec;
  flipped[format::kDbOffset] = 6;  // another database: the CRC no longer matches
  EXPECT_EQ(format::CheckRecord(flipped.data(), flipped.size(), 0, true, &h), format::RecordCheck::kBadChecksum);
  std::string bad_type = rec;
  bad_type[format::kTypeOffset] = 9;
  EXPECT_EQ(format::CheckRecord(bad_type.data(), bad_type.size(), 0, false, &h), format::RecordCheck::kBadHeader);
  std::string bad_kind = rec;
  bad_kind[format::kKindOffset] = 3;
  EXPECT_EQ(format::CheckRecord(bad_kind.data(), bad_kind.size(), 0, false, &h), format::RecordCheck::kBadHeader);
  // Special records carry no key; a FLUSHALL with a db, or two special flags, is malformed.
  std::string flush;
  format::AppendRecord(&flush, format::kFlagFlushAll, {}, {}, 1, 0, format::Tag{0, 0, 3});
  EXPECT_EQ(format::CheckRecord(flush.data(), flush.size(), 0, true, &h), format::RecordCheck::kBadHeader);
  std::string both;
  format::AppendRecord(&both, format::kFlagFlushDb | format::kFlagSwapDb, {}, {}, 1, 0);
  EXPECT_EQ(format::CheckRecord(both.data(), both.size(), 0, true, &h), format::RecordCheck::kBadHeader);
  std::string header;
  format::AppendFileHeader(&header, 1);
  ASSERT_EQ(format::CheckRecord(header.data(), header.size(), 0, true, &h), format::RecordCheck::kOk);
  EXPECT_TRUE(h.file_header());
  EXPECT_EQ(header.size(), format::kFileHeaderSize);
}

TEST_F(DatabaseTest, DatabasesAreSeparateAndSurviveRestarts) {
  Open();
  EXPECT_EQ(store_->Databases(), 16u);
  Put(0, "k", "zero");
  Put(1, "k", "one", format::kTypeHash);
  Put(15, "other", "fifteen");
  EXPECT_EQ(Get(0, "k"), "zero");
  EXPECT_EQ(Get(1, "k"), "one");
  EXPECT_EQ(Get(2, "k"), "<missing>");
  EXPECT_EQ(Get(16, "k"), "<missing>");  // no such database
  EXPECT_EQ(store_->KeyCount(0), 1u);
  EXPECT_EQ(store_->KeyCount(1), 1u);
  EXPECT_EQ(store_->KeyCount(15), 1u);
  ValueView v;
  ASSERT_TRUE(store_->Get(1, "k", &v).ok());
  EXPECT_EQ(v.type, format::kTypeHash);
  // FLUSHDB empties one database, at its place in the group.
  WriteBatch b;
  b.SelectDb(1);
  b.Put("before", "x");
  b.DeleteDb();
  b.Put("after", "y");
  b.SelectDb(0);
  b.Put("kept", "z");
  std::vector<OpResult> r;
  Write(std::move(b), &r);
  EXPECT_TRUE(r[1].applied);
  const std::vector<std::string> want = {"0:k=zero", "0:kept=z", "15:other=fifteen", "1:after=y"};
  EXPECT_EQ(Dump(), want);
  Reopen();
  EXPECT_EQ(Dump(), want);
  ASSERT_TRUE(store_->GetStats().keys == 4u);
  ASSERT_TRUE(store_->Get(1, "after", &v).ok());
  Reopen();  // sealed files now replay from their hint files
  EXPECT_EQ(Dump(), want);
  ASSERT_TRUE(store_->CompactSync().ok());
  Reopen();
  EXPECT_EQ(Dump(), want);
}

// SWAPDB is one record: later reads and writes see each database under the other's index, through
// restarts (data and hint files) and compaction, which keeps the swap records.
TEST_F(DatabaseTest, SwapDbIsDurableThroughRestartsHintsAndCompaction) {
  Open();
  for (int i = 0; i < 200; ++i) Put(0, "a" + std::to_string(i), std::string(50, 'a'));  // several files
  Put(2, "b", "two");
  WriteBatch b;
  b.SwapDb(0, 2);
  b.SelectDb(2);
  b.Put("written-after-swap", "in 2");  // lands with the a* keys
  std::vector<OpResult> r;
  Write(std::move(b), &r);
  EXPECT_TRUE(r[0].applied);
  auto check = [&] {
    EXPECT_EQ(Get(0, "b"), "two");
    EXPECT_EQ(Get(2, "a7"), std::string(50, 'a'));
    EXPECT_EQ(Get(2, "written-after-swap"), "in 2");
    EXPECT_EQ(Get(0, "a7"), "<missing>");
    EXPECT_EQ(store_->KeyCount(2), 201u);
    EXPECT_EQ(store_->KeyCount(0), 1u);
  };
  check();
  Reopen();
  check();
  Reopen();
  check();
  ASSERT_TRUE(store_->CompactSync().ok());
  check();
  Reopen();
  check();
  // A second swap back, then a flush of the database now at index 0.
  WriteBatch c;
  c.SwapDb(2, 0);
  c.SelectDb(0);
  c.DeleteDb();
  Write(std::move(c));
  EXPECT_EQ(Get(0, "a7"), "<missing>");
  EXPECT_EQ(Get(2, "b"), "two");
  ASSERT_TRUE(store_->CompactSync().ok());
  Reopen();
  EXPECT_EQ(Get(0, "a7"), "<missing>");
  EXPECT_EQ(Get(2, "b"), "two");
  EXPECT_EQ(store_->GetStats().keys, 1u);
}

TEST_F(DatabaseTest, MoveOnlyToADatabaseWithoutTheKey) {
  Open();
  WriteBatch b;
  b.Put("k", "v", NowMs() + 100000);
  b.Move("k", 3);
  b.Move("missing", 3);
  std::vector<OpResult> r;
  Write(std::move(b), &r);
  EXPECT_TRUE(r[1].applied);
  EXPECT_FALSE(r[2].applied);
  EXPECT_EQ(Get(0, "k"), "<missing>");
  ValueView v;
  ASSERT_TRUE(store_->Get(3, "k", &v).ok());
  EXPECT_EQ(v.value, "v");
  EXPECT_GT(v.expire_at_ms, NowMs());  // the expiry goes with it
  Put(0, "k", "again");
  WriteBatch c;
  c.Move("k", 3);  // present there: not moved
  Write(std::move(c), &r);
  EXPECT_FALSE(r[0].applied);
  Reopen();
  EXPECT_EQ(Get(0, "k"), "again");
  EXPECT_EQ(Get(3, "k"), "v");
}

// A group larger than a data file starts a file of its own; that file also holds the 40-byte file
// header, so the file (and its mapping) must be sized for both: a group whose size is a whole
// number of pages would otherwise end past the mapping, where reads fault.
TEST_F(DatabaseTest, AGroupLargerThanADataFileFitsWithTheFileHeader) {
  options_.max_file_size = 64 * 1024;
  Open();
  const size_t group = 1 << 20;  // exactly 256 pages
  const std::string value(group - format::RecordSize(1, 0), 'v');
  Put(0, "k", value);
  EXPECT_TRUE(Get(0, "k") == value) << Get(0, "k").substr(0, 100);
  Reopen();
  EXPECT_TRUE(Get(0, "k") == value) << Get(0, "k").substr(0, 100);
}

// A directory holding keys of database 20 does not open with `databases 16`: its keys would be
// unreachable, and a later compaction would drop them.
TEST_F(DatabaseTest, FewerDatabasesThanTheDirectoryHoldsIsRefused) {
  options_.databases = 32;
  Open();
  Put(20, "k", "v");
  ASSERT_TRUE(store_->Close().ok());
  store_.reset();
  options_.databases = 16;
  std::unique_ptr<Store> s;
  Status st = Store::Open(options_, &s);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.ToString().find("at least 21"), std::string::npos) << st.ToString();
  options_.databases = 21;
  Open();
  EXPECT_EQ(Get(20, "k"), "v");
  ASSERT_TRUE(store_->Close().ok());
  store_.reset();
  // A SWAPDB with a database past the new count's physical ones (16 and their 16 staging
  // databases) is refused too, though that database holds nothing.
  options_.databases = 40;
  Open();
  WriteBatch b;
  b.SelectDb(35);
  b.Put("k", "v");
  b.Delete("k");  // nothing of database 35 left ...
  b.SwapDb(3, 35);  // ... but the map names it
  Write(std::move(b));
  ASSERT_TRUE(store_->CompactSync().ok());  // no record of database 35 survives, the swap's does
  ASSERT_TRUE(store_->Close().ok());
  store_.reset();
  options_.databases = 16;
  st = Store::Open(options_, &s);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.ToString().find("more databases"), std::string::npos) << st.ToString();
}

// The staging databases (a replica's full sync): a load there is invisible to readers and
// snapshots until EndStaging swaps it in, all at once; a crash during it (the note left) loses
// only the load; a FLUSHALL during it refuses the swap.
TEST_F(DatabaseTest, StagingIsSwappedInWholeOrNotAtAll) {
  Open();
  const uint32_t base = store_->StagingBase();
  ASSERT_EQ(base, 16u);
  ASSERT_EQ(store_->Databases(), 16u);
  Put(0, "old", "1");
  Put(3, "old3", "1");
  ASSERT_TRUE(store_->BeginStaging().ok());
  EXPECT_TRUE(fs::exists(dir_ / "STAGING"));
  Put(base + 0, "new", "2");
  Put(base + 5, "new5", "2");
  EXPECT_EQ(Get(0, "old"), "1");  // readers see the old data set meanwhile
  EXPECT_EQ(Get(0, "new"), "<missing>");
  EXPECT_EQ(store_->KeyCount(0), 1u);
  size_t in_snapshot = 0;
  ASSERT_TRUE(store_->VisitSnapshot([] {}, [&](const SnapshotItem&) { return ++in_snapshot, true; }).ok());
  EXPECT_EQ(in_snapshot, 2u);  // the visible keys only
  ASSERT_TRUE(store_->EndStaging(true).ok());
  EXPECT_FALSE(fs::exists(dir_ / "STAGING"));
  EXPECT_EQ(Get(0, "new"), "2");
  EXPECT_EQ(Get(5, "new5"), "2");
  EXPECT_EQ(Get(0, "old"), "<missing>");
  EXPECT_EQ(Get(3, "old3"), "<missing>");
  for (uint32_t db = base; db < 2 * base; ++db) EXPECT_EQ(store_->KeyCount(db), 0u) << db;
  Reopen();
  EXPECT_EQ(Get(0, "new"), "2");
  EXPECT_EQ(Get(5, "new5"), "2");
  EXPECT_EQ(Get(0, "old"), "<missing>");
  EXPECT_EQ(store_->KeyCount(base + 0), 0u);

  // Interrupted (the store closes with the note there, as after a crash): the next Open keeps
  // the data set and discards the load.
  ASSERT_TRUE(store_->BeginStaging().ok());
  Put(base + 0, "partial", "3");
  Reopen();
  EXPECT_EQ(Get(0, "new"), "2");
  EXPECT_EQ(Get(0, "partial"), "<missing>");
  EXPECT_EQ(store_->KeyCount(base + 0), 0u);
  EXPECT_FALSE(fs::exists(dir_ / "STAGING"));
  // ... but not under another `databases` (its staging databases are other ones).
  ASSERT_TRUE(store_->BeginStaging().ok());
  Put(base + 0, "partial", "3");
  ASSERT_TRUE(store_->Close().ok());
  store_.reset();
  options_.databases = 20;
  std::unique_ptr<Store> s;
  Status st = Store::Open(options_, &s);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.ToString().find("databases 16"), std::string::npos) << st.ToString();
  options_.databases = 16;
  Open();
  EXPECT_EQ(Get(0, "partial"), "<missing>");

  // A FLUSHALL during the load empties the staging databases too: the swap is refused.
  ASSERT_TRUE(store_->BeginStaging().ok());
  Put(base + 0, "lost", "4");
  WriteBatch flush;
  flush.DeleteAll();
  Write(std::move(flush));
  Put(0, "after-flush", "5");
  EXPECT_TRUE(store_->EndStaging(true).IsAborted());
  EXPECT_EQ(Get(0, "after-flush"), "5");
  EXPECT_EQ(Get(0, "lost"), "<missing>");
  EXPECT_FALSE(fs::exists(dir_ / "STAGING"));

  // EndStaging(false): the load is dropped, the data set stays.
  ASSERT_TRUE(store_->BeginStaging().ok());
  Put(base + 1, "dropped", "6");
  ASSERT_TRUE(store_->EndStaging(false).ok());
  EXPECT_EQ(Get(0, "after-flush"), "5");
  EXPECT_EQ(Get(1, "dropped"), "<missing>");
  EXPECT_EQ(store_->KeyCount(base + 1), 0u);
}

// Keys in a staging database without the note are a visible database's of a directory written
// with more databases: refused, as before there were staging databases.
TEST_F(DatabaseTest, KeysInAStagingDatabaseWithoutTheNoteAreRefused) {
  options_.databases = 8;
  Open();
  ASSERT_TRUE(store_->BeginStaging().ok());
  Put(8 + 2, "k", "v");
  ASSERT_TRUE(store_->Close().ok());
  store_.reset();
  fs::remove(dir_ / "STAGING");
  std::unique_ptr<Store> s;
  Status st = Store::Open(options_, &s);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.ToString().find("at least 11"), std::string::npos) << st.ToString();
}

// Expired keys of every database are reclaimed by the active cycle, and named with their database.
TEST_F(DatabaseTest, ExpireCycleCoversEveryDatabase) {
  // The cycle drops the key, then names it: the test waits for the name, and the names live as
  // long as the store that reports them (the store is closed in TearDown, after this body: a
  // callback on locals of the body hung or crashed when it ran after the body had returned).
  struct Names {
    std::mutex mu;
    std::vector<std::pair<uint32_t, std::string>> expired;
  };
  auto names = std::make_shared<Names>();
  options_.on_expired = [names](uint32_t db, std::string_view key) {
    std::lock_guard lock(names->mu);
    names->expired.emplace_back(db, std::string(key));
  };
  auto named = [&names] {
    std::lock_guard lock(names->mu);
    return names->expired.size();
  };
  Open();
  store_->NameExpiredKeys(true);
  WriteBatch b;
  b.SelectDb(9);
  b.Put("t", "v", NowMs() + 50);
  Write(std::move(b));
  EXPECT_EQ(store_->ExpiringKeys(9), 1u);
  for (int i = 0; i < 100 && (store_->KeyCount(9) > 0 || named() == 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(store_->KeyCount(9), 0u);
  std::lock_guard lock(names->mu);
  ASSERT_EQ(names->expired.size(), 1u);
  EXPECT_EQ(names->expired[0].first, 9u);
  EXPECT_EQ(names->expired[0].second, "t");
}

}  // namespace
}  // namespace keg::store
