// FileReads: an event loop's io_uring reads files into the page cache and calls back on the loop.
#include "net/file_reads.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <asio.hpp>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace keg::net {
namespace {

class FileReadsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char path[] = "/tmp/keg_file_reads_XXXXXX";
    fd_ = mkstemp(path);
    ASSERT_GE(fd_, 0);
    unlink(path);
    const std::string page(4096, 'x');
    for (int i = 0; i < 64; ++i) ASSERT_EQ(write(fd_, page.data(), page.size()), 4096);
    reads_ = FileReads::Create(io_, &depth_);
    if (!reads_) GTEST_SKIP() << "this kernel refuses io_uring";
  }
  void TearDown() override {
    reads_.reset();
    if (fd_ >= 0) close(fd_);
  }
  // Runs the loop until `n` callbacks ran (or 10 s passed).
  void RunUntil(const int& calls, int n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (calls < n && std::chrono::steady_clock::now() < deadline) {
      io_.run_for(std::chrono::milliseconds(10));
      io_.restart();
    }
  }

  asio::io_context io_{1};
  std::atomic<uint32_t> depth_{6};
  std::unique_ptr<FileReads> reads_;
  int fd_ = -1;
};

TEST_F(FileReadsTest, EachGroupCompletesOnceOnTheLoop) {
  depth_ = 2;  // most reads wait their turn outside the kernel
  int calls = 0;
  std::vector<int> done(10, 0);
  for (int g = 0; g < 10; ++g) {
    std::vector<FileRead> group;
    for (int i = 0; i < 3; ++i) group.push_back(FileRead{fd_, uint64_t(g * 3 + i) * 4096, 4096});
    ASSERT_TRUE(reads_->Read(group, [&, g] {
      ++calls;
      ++done[static_cast<size_t>(g)];
    }));
  }
  EXPECT_EQ(reads_->in_flight(), 30u);
  EXPECT_EQ(calls, 0);  // never from within Read
  RunUntil(calls, 10);
  EXPECT_EQ(calls, 10);
  EXPECT_EQ(reads_->in_flight(), 0u);
  for (int d : done) EXPECT_EQ(d, 1);
}

TEST_F(FileReadsTest, FailedReadsStillComplete) {
  int calls = 0;
  const FileRead past_end{fd_, 1ull << 40, 4096};  // reads nothing
  const int closed = dup(fd_);
  close(closed);
  const FileRead bad_fd{closed, 0, 4096};  // EBADF in its completion
  ASSERT_TRUE(reads_->Read(std::vector<FileRead>{past_end, bad_fd}, [&] { ++calls; }));
  RunUntil(calls, 1);
  EXPECT_EQ(calls, 1);
}

TEST_F(FileReadsTest, RefusesWhatTheCallerMustReadAnotherWay) {
  int calls = 0;
  EXPECT_FALSE(reads_->Read(std::vector<FileRead>{FileRead{fd_, 0, FileReads::kMaxRead + 1}}, [&] { ++calls; }));
  EXPECT_FALSE(reads_->Read(std::vector<FileRead>{}, [&] { ++calls; }));
  EXPECT_EQ(reads_->in_flight(), 0u);
  io_.poll();
  EXPECT_EQ(calls, 0);
}

TEST_F(FileReadsTest, ReadsFillThePageCache) {
  // Evict the file's pages, read half of them, and ask the kernel which are cached.
  fdatasync(fd_);
  posix_fadvise(fd_, 0, 0, POSIX_FADV_DONTNEED);
  void* map = mmap(nullptr, 64 * 4096, PROT_READ, MAP_SHARED, fd_, 0);
  ASSERT_NE(map, MAP_FAILED);
  unsigned char vec[64];
  ASSERT_EQ(mincore(map, 64 * 4096, vec), 0);
  int cached = 0;
  for (unsigned char v : vec) cached += v & 1;
  if (cached > 0) {
    munmap(map, 64 * 4096);
    GTEST_SKIP() << "this file system does not evict pages on request";
  }
  int calls = 0;
  std::vector<FileRead> group;
  for (int i = 0; i < 64; i += 2) group.push_back(FileRead{fd_, uint64_t(i) * 4096, 4096});
  ASSERT_TRUE(reads_->Read(group, [&] { ++calls; }));
  RunUntil(calls, 1);
  ASSERT_EQ(calls, 1);
  ASSERT_EQ(mincore(map, 64 * 4096, vec), 0);
  for (int i = 0; i < 64; i += 2) EXPECT_EQ(vec[i] & 1, 1) << "page " << i;
  munmap(map, 64 * 4096);
}

TEST_F(FileReadsTest, DestroyedWithReadsWaitingDropsTheirCallbacks) {
  depth_ = 1;
  int calls = 0;
  auto alive = std::make_shared<int>(0);
  for (int g = 0; g < 5; ++g) {
    ASSERT_TRUE(reads_->Read(std::vector<FileRead>{FileRead{fd_, uint64_t(g) * 4096, 4096}},
                             [&, alive] { ++calls; }));
  }
  io_.poll_one();  // maybe the flush: one read in the kernel, four waiting
  reads_.reset();  // waits for the one in the kernel, frees every group
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(alive.use_count(), 1);  // every callback destroyed
}

}  // namespace
}  // namespace keg::net
