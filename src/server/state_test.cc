#include "server/state.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

namespace keg::server {
namespace {

// Once BackgroundJobs::Wait returns, every job and everything it held are gone: a SYNC's snapshot
// job holds the last reference to its replica's connection, whose session's destructor reaches
// the ServerState that shutdown (and the in-process harness) destroys next. Found by TSan under
// the command fuzzer: the job's function, and with it the connection, was destroyed after the
// count of running jobs went down, while the server was being destroyed.
TEST(BackgroundJobsTest, WaitReturnsOnceEachJobsCapturesAreDestroyed) {
  struct Held {
    explicit Held(std::atomic<bool>* flag) : gone(flag) {}
    ~Held() {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // a destructor with work to do
      gone->store(true);
    }
    std::atomic<bool>* gone;
  };
  std::atomic<bool> gone{false};
  BackgroundJobs jobs;
  {
    auto held = std::make_shared<Held>(&gone);
    jobs.Run([held = std::move(held)] {});
  }
  jobs.Wait();
  EXPECT_TRUE(gone.load());
}

}  // namespace
}  // namespace keg::server
