#include "store/check.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "store/format.h"
#include "store/store.h"
#include "store/test_util.h"

namespace keg::store {
namespace {

namespace fs = std::filesystem;

class CheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("keg_check");
    options_.dir = dir_.string();
    options_.fsync = FsyncPolicy::kNo;
    options_.max_file_size = 16 * 1024;
    options_.auto_compaction = false;
    std::unique_ptr<Store> store;
    ASSERT_TRUE(Store::Open(options_, &store).ok());
    for (int i = 0; i < 600; ++i) {
      WriteBatch b;
      b.Put("k" + std::to_string(i), std::string(60, static_cast<char>('a' + i % 26)));
      ASSERT_TRUE(store->WriteSync(std::move(b)).ok());
    }
    WriteBatch b;
    b.Delete("k0");
    ASSERT_TRUE(store->WriteSync(std::move(b)).ok());
    ASSERT_TRUE(store->Close().ok());
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::vector<fs::path> DataFiles() const {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(dir_)) {
      if (e.path().extension() == ".data") out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  fs::path dir_;
  Options options_;
};

// A FLUSHALL record deletes every key before it, for keg-check as for the store.
TEST_F(CheckTest, FlushAllRecord) {
  {
    std::unique_ptr<Store> store;
    ASSERT_TRUE(Store::Open(options_, &store).ok());
    WriteBatch b;
    b.DeleteAll();
    b.Put("survivor", "v");
    ASSERT_TRUE(store->WriteSync(std::move(b)).ok());
    ASSERT_TRUE(store->Close().ok());
  }
  CheckReport r;
  ASSERT_TRUE(CheckDirectory(dir_.string(), false, &r).ok());
  EXPECT_TRUE(r.clean());
  EXPECT_EQ(r.records, 603u + r.data_files);  // each file starts with its header record
  EXPECT_EQ(r.live_keys, 1u);
}

TEST_F(CheckTest, CleanDirectory) {
  CheckReport r;
  ASSERT_TRUE(CheckDirectory(dir_.string(), false, &r).ok());
  EXPECT_TRUE(r.clean());
  EXPECT_EQ(r.records, 601u + r.data_files);  // each file starts with its header record
  EXPECT_EQ(r.live_keys, 599u);
  EXPECT_GT(r.data_files, 3u);
}

TEST_F(CheckTest, RefusesWhileTheStoreIsOpen) {
  std::unique_ptr<Store> store;
  ASSERT_TRUE(Store::Open(options_, &store).ok());
  CheckReport r;
  EXPECT_EQ(CheckDirectory(dir_.string(), false, &r).code(), Status::Code::kBusy);
}

TEST_F(CheckTest, FindsAndRepairsABitFlipInASealedFile) {
  const fs::path victim = DataFiles().front();
  {
    std::fstream f(victim, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    f.put('\x7f');
  }
  // The store refuses to open it ...
  std::unique_ptr<Store> store;
  EXPECT_TRUE(Store::Open(options_, &store).IsCorruption());
  // ... keg-check names file and offset ...
  CheckReport r;
  ASSERT_TRUE(CheckDirectory(dir_.string(), false, &r).ok());
  ASSERT_EQ(r.corrupt.size(), 1u);
  EXPECT_EQ(r.corrupt[0].file, victim.filename().string());
  EXPECT_LE(r.corrupt[0].offset, 200u);
  EXPECT_GT(r.corrupt[0].offset + r.corrupt[0].length, 200u);
  // ... and --repair makes the directory open again with every other record intact.
  CheckReport fixed;
  ASSERT_TRUE(CheckDirectory(dir_.string(), true, &fixed).ok());
  EXPECT_TRUE(fixed.repaired);
  CheckReport again;
  ASSERT_TRUE(CheckDirectory(dir_.string(), false, &again).ok());
  EXPECT_TRUE(again.clean());
  EXPECT_EQ(again.records, 600u + again.data_files);  // exactly the damaged record is gone
  ASSERT_TRUE(Store::Open(options_, &store).ok());
  EXPECT_EQ(store->GetStats().keys, 598u);
}

TEST_F(CheckTest, RepairsATornTailAndRebuildsBadHints) {
  const auto files = DataFiles();
  fs::resize_file(files.back(), fs::file_size(files.back()) - 5);
  fs::path hint = files.front();
  hint.replace_extension(".hint");
  std::ofstream(hint) << "not a hint file";
  std::ofstream(dir_ / "0000000000200001.data.tmp") << "leftover";
  CheckReport r;
  ASSERT_TRUE(CheckDirectory(dir_.string(), false, &r).ok());
  EXPECT_EQ(r.corrupt.size(), 1u);
  EXPECT_NE(r.corrupt[0].what.find("torn tail"), std::string::npos);
  EXPECT_EQ(r.leftovers.size(), 1u);
  EXPECT_EQ(r.bad_hints.size(), 1u);
  CheckReport fixed;
  ASSERT_TRUE(CheckDirectory(dir_.string(), true, &fixed).ok());
  CheckReport again;
  ASSERT_TRUE(CheckDirectory(dir_.string(), false, &again).ok());
  EXPECT_TRUE(again.corrupt.empty());
  EXPECT_TRUE(again.leftovers.empty());
  EXPECT_TRUE(again.bad_hints.empty());
  EXPECT_EQ(again.hint_files + 1, again.data_files);  // every sealed file has a valid hint
  EXPECT_EQ(again.records, 600u + again.data_files);  // the torn record (the delete of k0) is gone
}

}  // namespace
}  // namespace keg::store
