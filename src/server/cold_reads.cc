#include "server/cold_reads.h"

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>

namespace keg::server {
namespace {

int64_t MonoNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

ColdReads::ColdReads(store::Store* store, size_t threads) : store_(store) {
  for (size_t i = 0; i < threads; ++i) {
    threads_.emplace_back([this] {
      pthread_setname_np(pthread_self(), "keg-fetch");
      // Below the event loops and the writer (nice +5): on a busy machine the clients of resident
      // keys and the writes are served first, the cold reads take the CPU left. Best effort.
      (void)setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 5);
      Work();
    });
  }
  sweeper_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "keg-resident");
    Sweep();
  });
}

ColdReads::~ColdReads() { Stop(); }

void ColdReads::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  sweep_cv_.notify_all();
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  if (sweeper_.joinable()) sweeper_.join();
}

void ColdReads::Fetch(uint32_t db, std::vector<std::string> keys, std::function<void()> done) {
  {
    std::lock_guard lock(mu_);
    if (!stop_) {
      jobs_.push_back(Job{db, std::move(keys), std::move(done), MonoNs()});
      cv_.notify_one();
      return;
    }
  }
  done();  // shutting down: run the command as it is
}

void ColdReads::Work() {
  std::vector<std::string_view> keys;
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping, and nothing left to do
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    // One job at a time: a command runs as soon as its own keys are in (batching jobs made each
    // wait for the slowest read of the batch: 10 % fewer cold GET/s in tools/bench-disk.sh).
    if (const int64_t delay = delay_ms_.load(std::memory_order_relaxed); delay > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    }
    if (job.keys.empty()) {  // Run
      job.done();
      continue;
    }
    keys.assign(job.keys.begin(), job.keys.end());
    store_->FetchKeys(job.db, keys);
    fetches_.fetch_add(1, std::memory_order_relaxed);
    keys_.fetch_add(job.keys.size(), std::memory_order_relaxed);
    wait_usec_.fetch_add(static_cast<uint64_t>(MonoNs() - job.queued_ns) / 1000, std::memory_order_relaxed);
    job.done();
  }
}

void ColdReads::Sweep() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    lock.unlock();
    resident_bytes_.store(store_->SweepResidency(), std::memory_order_relaxed);
    lock.lock();
    sweep_cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_; });
  }
}

}  // namespace keg::server
