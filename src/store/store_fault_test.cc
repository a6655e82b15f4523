// Injected disk faults (io::SetFaultHook): a full disk mid-write, an I/O error on write, a failed
// fsync. Writes must fail with an error naming the cause, reads must go on, nothing unacknowledged
// may appear after a restart, and after a failed fsync the store must refuse writes (fail-stop).
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <future>
#include <string>
#include <thread>

#include "store/io.h"
#include "store/store.h"
#include "store/test_util.h"

namespace keg::store {
namespace {

namespace fs = std::filesystem;

std::atomic<int> g_write_fault{0};
std::atomic<int> g_sync_fault{0};
std::atomic<int> g_compaction_write_fault{0};

std::atomic<int> g_compaction_writes{0};  // writes to compaction outputs, failed or not
// Data-file fdatasyncs run on g_watched_thread (the test's own thread, writing inline).
std::atomic<std::thread::id> g_watched_thread{};
std::atomic<int> g_syncs_on_watched{0};

std::atomic<int> g_staging_note_fault{0};

int Hook(io::FaultOp op, std::string_view path) {
  if (path.ends_with("STAGING.tmp") && op == io::FaultOp::kWrite) return g_staging_note_fault;
  if (path.ends_with(".data.tmp") && op == io::FaultOp::kWrite) {
    g_compaction_writes.fetch_add(1);
    return g_compaction_write_fault;
  }
  if (!path.ends_with(".data")) return 0;  // only the data files of the store under test
  if (op == io::FaultOp::kSync && std::this_thread::get_id() == g_watched_thread.load()) g_syncs_on_watched.fetch_add(1);
  return op == io::FaultOp::kWrite ? g_write_fault.load() : g_sync_fault.load();
}

class StoreFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("keg_fault");
    options_.dir = dir_.string();
    options_.fsync = FsyncPolicy::kAlways;
    options_.auto_compaction = false;
    g_write_fault = 0;
    g_sync_fault = 0;
    g_compaction_write_fault = 0;
    g_staging_note_fault = 0;
    io::SetFaultHook(Hook);
    ASSERT_TRUE(Store::Open(options_, &store_).ok());
  }
  void TearDown() override {
    g_write_fault = 0;
    g_sync_fault = 0;
    store_.reset();
    io::SetFaultHook(nullptr);
    fs::remove_all(dir_);
  }
  Status Put(const std::string& k, const std::string& v) {
    WriteBatch b;
    b.Put(k, v);
    return store_->WriteSync(std::move(b));
  }
  std::string Get(const std::string& k) {
    ValueView v;
    const Status s = store_->Get(0, k, &v);
    return s.ok() ? std::string(v.value) : s.IsNotFound() ? "<missing>" : "<error>";
  }
  void Reopen() {
    store_.reset();
    ASSERT_TRUE(Store::Open(options_, &store_).ok());
  }

  fs::path dir_;
  Options options_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreFaultTest, DiskFullMidWriteFailsCleanlyAndWritesResume) {
  ASSERT_TRUE(Put("before", "ok").ok());
  g_write_fault = -20;  // 20 bytes reach the file, then ENOSPC
  const Status s = Put("during", "lost");
  EXPECT_TRUE(s.IsNoSpace()) << s.ToString();
  EXPECT_NE(s.message().find(".data at offset"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("errno 28"), std::string::npos) << s.message();
  EXPECT_EQ(Get("before"), "ok");  // reads go on
  EXPECT_EQ(Get("during"), "<missing>");
  g_write_fault = 0;  // space is back
  ASSERT_TRUE(Put("after", "ok").ok());
  Reopen();  // the 20 stray bytes were cut: no torn record, no trace of the failed write
  EXPECT_EQ(Get("before"), "ok");
  EXPECT_EQ(Get("during"), "<missing>");
  EXPECT_EQ(Get("after"), "ok");
}

// A group whose first record reached the file whole before the disk filled up: nothing of it was
// acknowledged, so nothing of it may be there after a restart (the writer cuts the file back).
TEST_F(StoreFaultTest, PartlyWrittenGroupNeverReappearsAfterRestart) {
  ASSERT_TRUE(Put("before", "ok").ok());
  WriteBatch b;
  b.Put("first", "v1");  // 32 + 5 + 2 = 39 bytes
  b.Put("second", "v2");
  g_write_fault = -39;  // exactly the first record is written
  EXPECT_TRUE(store_->WriteSync(std::move(b)).IsNoSpace());
  g_write_fault = 0;
  Reopen();
  EXPECT_EQ(Get("first"), "<missing>");
  EXPECT_EQ(Get("second"), "<missing>");
  EXPECT_EQ(Get("before"), "ok");
}

// The disk fills up while compaction writes its outputs: the compaction is abandoned, its temporary
// files are removed, nothing is lost or moved, and a later compaction succeeds.
TEST_F(StoreFaultTest, CompactionAbandonedOnDiskFullLeavesEverythingAsItWas) {
  store_.reset();
  options_.fsync = FsyncPolicy::kNo;
  options_.max_file_size = 16 * 1024;
  ASSERT_TRUE(Store::Open(options_, &store_).ok());
  for (int i = 0; i < 400; ++i)
    ASSERT_TRUE(Put("k" + std::to_string(i), std::string(100, 'a')).ok());
  for (int i = 0; i < 400; i += 2) ASSERT_TRUE(Put("k" + std::to_string(i), "b").ok());
  g_compaction_write_fault = ENOSPC;
  const Status s = store_->CompactSync();
  EXPECT_TRUE(s.IsNoSpace()) << s.ToString();
  for (const auto& e : fs::directory_iterator(dir_)) {
    EXPECT_FALSE(e.path().string().ends_with(".tmp")) << e.path();
  }
  for (int i = 0; i < 400; ++i) {
    ASSERT_EQ(Get("k" + std::to_string(i)), i % 2 == 0 ? "b" : std::string(100, 'a'));
  }
  EXPECT_EQ(store_->GetStats().compactions, 0u);
  g_compaction_write_fault = 0;
  ASSERT_TRUE(store_->CompactSync().ok());
  Reopen();
  for (int i = 0; i < 400; ++i) {
    ASSERT_EQ(Get("k" + std::to_string(i)), i % 2 == 0 ? "b" : std::string(100, 'a'));
  }
}

// Automatic compaction on a full disk: retried after 2^n intervals, not every interval; its
// failures show in the stats; it works again once space returns.
TEST_F(StoreFaultTest, FailingAutomaticCompactionBacksOff) {
  store_.reset();
  options_.auto_compaction = true;
  options_.background_interval_ms = 20;
  options_.max_file_size = 4096;
  options_.fsync = FsyncPolicy::kNo;
  g_compaction_write_fault = ENOSPC;
  ASSERT_TRUE(Store::Open(options_, &store_).ok());
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 100; ++i) ASSERT_TRUE(Put("k" + std::to_string(i), std::string(100, static_cast<char>('a' + round))).ok());
  }
  g_compaction_writes = 0;
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  // Without backoff: one attempt per 20 ms interval, about 75. With it: 20, 40, 80 ... 640 ms.
  const int attempts = g_compaction_writes.load();
  EXPECT_GE(attempts, 2);
  EXPECT_LE(attempts, 10);
  Stats st = store_->GetStats();
  EXPECT_GE(st.compaction_failures, 3u);
  EXPECT_NE(st.compaction_error.find("No space left"), std::string::npos) << st.compaction_error;
  g_compaction_write_fault = 0;
  for (int i = 0; i < 1000 && (st.compactions == 0 || st.compaction_failures != 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    st = store_->GetStats();
  }
  EXPECT_GE(st.compactions, 1u);
  EXPECT_EQ(st.compaction_failures, 0u);
  EXPECT_EQ(st.compaction_error, "");
  for (int i = 0; i < 100; ++i) ASSERT_EQ(Get("k" + std::to_string(i)), std::string(100, 'c'));
}

// Under everysec a caller that finds the writer idle writes its group itself (WriteAll's leader
// path), but never rotates: sealing a file (its fdatasync, a directory fsync) would stall the
// caller's event loop, so a group that may not fit goes to the writer thread.
TEST_F(StoreFaultTest, RotationSyncsNeverRunOnTheCallersThread) {
  store_.reset();
  options_.fsync = FsyncPolicy::kEverySec;
  options_.max_file_size = 16 * 1024;
  ASSERT_TRUE(Store::Open(options_, &store_).ok());
  g_syncs_on_watched = 0;
  g_watched_thread = std::this_thread::get_id();
  for (int i = 0; i < 2000; ++i) {
    std::promise<Status> done;
    std::vector<Store::PendingWrite> writes;
    WriteBatch b;
    b.Put("k" + std::to_string(i % 50), std::string(100, 'x'));
    writes.push_back({std::move(b), [&](const Status& st, std::vector<OpResult>) { done.set_value(st); }});
    store_->WriteAll(std::move(writes));
    ASSERT_TRUE(done.get_future().get().ok());
  }
  g_watched_thread = std::thread::id{};
  EXPECT_GT(store_->GetStats().sealed_files, 5u);  // it did rotate, many times
  EXPECT_EQ(g_syncs_on_watched.load(), 0);
}

TEST_F(StoreFaultTest, IoErrorOnWriteIsReportedAndNotAcknowledged) {
  g_write_fault = EIO;
  const Status s = Put("k", "v");
  EXPECT_EQ(s.code(), Status::Code::kIOError) << s.ToString();
  EXPECT_NE(s.message().find("Input/output error"), std::string::npos);
  g_write_fault = 0;
  EXPECT_EQ(Get("k"), "<missing>");
  ASSERT_TRUE(Put("k", "v2").ok());
  EXPECT_EQ(Get("k"), "v2");
}

TEST_F(StoreFaultTest, FailedFsyncStopsAllWritesButNotReads) {
  ASSERT_TRUE(Put("durable", "yes").ok());
  g_sync_fault = EIO;
  const Status s = Put("k", "v");
  EXPECT_EQ(s.code(), Status::Code::kFailed) << s.ToString();
  EXPECT_NE(s.message().find("fdatasync"), std::string::npos) << s.message();
  g_sync_fault = 0;  // even once fsync works again: fail-stop, a restart is needed
  const Status later = Put("k2", "v2");
  EXPECT_EQ(later.code(), Status::Code::kFailed) << later.ToString();
  EXPECT_TRUE(store_->GetStats().writes_failed);
  EXPECT_EQ(Get("durable"), "yes");
  Reopen();
  EXPECT_EQ(Get("durable"), "yes");
  ASSERT_TRUE(Put("k3", "v3").ok());
}

TEST_F(StoreFaultTest, EverySecFsyncFailureAlsoStopsWrites) {
  store_.reset();
  options_.fsync = FsyncPolicy::kEverySec;
  ASSERT_TRUE(Store::Open(options_, &store_).ok());
  ASSERT_TRUE(Put("k", "v").ok());  // acknowledged before any fsync, as Redis's everysec
  g_sync_fault = EIO;
  for (int i = 0; i < 40 && !store_->GetStats().writes_failed; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(store_->GetStats().writes_failed);
  EXPECT_EQ(Put("k2", "v").code(), Status::Code::kFailed);
}

// A replica's full sync whose staging note cannot be written does not start: the error names the
// file and errno, the data set and the staging databases stay as they were, and the next try works.
TEST_F(StoreFaultTest, AStagingNoteThatCannotBeWrittenStartsNoLoad) {
  ASSERT_TRUE(Put("k", "v").ok());
  g_staging_note_fault = EIO;
  const Status s = store_->BeginStaging();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("STAGING.tmp"), std::string::npos) << s.ToString();
  EXPECT_FALSE(fs::exists(dir_ / "STAGING"));
  EXPECT_EQ(Get("k"), "v");
  g_staging_note_fault = 0;
  ASSERT_TRUE(store_->BeginStaging().ok());
  WriteBatch b;
  b.SelectDb(store_->StagingBase());
  b.Put("k", "new");
  ASSERT_TRUE(store_->WriteSync(std::move(b)).ok());
  ASSERT_TRUE(store_->EndStaging(true).ok());
  EXPECT_EQ(Get("k"), "new");
}

}  // namespace
}  // namespace keg::store
