// Micro-benchmarks of src/store (Google Benchmark). Run: tools/bench-store.sh
//   BM_Put/<policy>/<batch>  puts/s with 16 batches in flight (like 16 connections): group commit
//   BM_GetHot                Get of random keys, data in the page cache
//   BM_GetCold               Get of random keys right after the page cache was dropped
//   BM_Recover1M             opening a directory of 1M keys (hint files present)
// The data directory is under $KEG_BENCH_DIR (default /tmp): the disk it sits on is what fsync
// costs measure.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "store/store.h"

namespace {

namespace fs = std::filesystem;
using namespace keg::store;

std::string BenchDir(const std::string& name) {
  const char* base = std::getenv("KEG_BENCH_DIR");
  return (fs::path(base != nullptr ? base : "/tmp") / ("keg_bench_" + name)).string();
}

std::string Key(uint64_t i) {
  std::string digits = std::to_string(i);
  return "key:" + std::string(digits.size() < 12 ? 12 - digits.size() : 0, '0') + digits;
}

std::unique_ptr<Store> OpenStore(const std::string& dir, FsyncPolicy policy) {
  Options o;
  o.dir = dir;
  o.fsync = policy;
  o.auto_compaction = false;
  std::unique_ptr<Store> store;
  const Status s = Store::Open(o, &store);
  if (!s.ok()) {
    std::fprintf(stderr, "open %s: %s\n", dir.c_str(), s.ToString().c_str());
    std::abort();
  }
  return store;
}

void Fill(Store& store, uint64_t keys, size_t value_bytes) {
  const std::string value(value_bytes, 'v');
  for (uint64_t i = 0; i < keys; i += 1000) {
    WriteBatch b;
    for (uint64_t j = i; j < std::min(keys, i + 1000); ++j) b.Put(Key(j), value);
    if (!store.WriteSync(std::move(b)).ok()) std::abort();
  }
}

void BM_Put(benchmark::State& state) {
  const auto policy = static_cast<FsyncPolicy>(state.range(0));
  const auto batch_size = static_cast<uint64_t>(state.range(1));
  const std::string dir = BenchDir("put");
  fs::remove_all(dir);
  auto store = OpenStore(dir, policy);
  const std::string value(100, 'v');
  std::atomic<int> in_flight{0};
  uint64_t next = 0;
  for (auto _ : state) {
    WriteBatch b;
    for (uint64_t j = 0; j < batch_size; ++j) b.Put(Key(next++ % 100000), value);
    while (in_flight.load(std::memory_order_acquire) >= 16) std::this_thread::yield();
    in_flight.fetch_add(1);
    store->Write(std::move(b), [&](const Status& s, std::vector<OpResult>) {
      if (!s.ok()) std::abort();
      in_flight.fetch_sub(1, std::memory_order_release);
    });
  }
  while (in_flight.load() > 0) std::this_thread::yield();
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(batch_size));
  store.reset();
  fs::remove_all(dir);
}
BENCHMARK(BM_Put)
    ->ArgNames({"fsync", "batch"})
    ->Args({static_cast<int>(FsyncPolicy::kAlways), 1})
    ->Args({static_cast<int>(FsyncPolicy::kAlways), 16})
    ->Args({static_cast<int>(FsyncPolicy::kEverySec), 1})
    ->Args({static_cast<int>(FsyncPolicy::kEverySec), 16})
    ->Args({static_cast<int>(FsyncPolicy::kNo), 16})
    ->UseRealTime();

void BM_GetHot(benchmark::State& state) {
  const std::string dir = BenchDir("get");
  fs::remove_all(dir);
  auto store = OpenStore(dir, FsyncPolicy::kNo);
  constexpr uint64_t kKeys = 100000;
  Fill(*store, kKeys, 100);
  std::mt19937_64 rng(1);
  std::vector<std::string> keys;
  for (int i = 0; i < 4096; ++i) keys.push_back(Key(rng() % kKeys));
  size_t i = 0;
  for (auto _ : state) {
    ValueView v;
    if (!store->Get(0, keys[i++ & 4095], &v).ok()) std::abort();
    benchmark::DoNotOptimize(v.value.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  store.reset();
  fs::remove_all(dir);
}
BENCHMARK(BM_GetHot);

void DropPageCache(const std::string& dir) {
  for (const auto& e : fs::directory_iterator(dir)) {
    const int fd = open(e.path().c_str(), O_RDONLY);
    if (fd < 0) continue;
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
  }
}

void BM_GetCold(benchmark::State& state) {
  const std::string dir = BenchDir("cold");
  fs::remove_all(dir);
  constexpr uint64_t kKeys = 200000;
  {
    auto store = OpenStore(dir, FsyncPolicy::kNo);
    Fill(*store, kKeys, 1000);
    if (!store->CompactSync().ok()) std::abort();  // sealed files with hints: open reads no data
    // The newest file is always scanned at open; make it a small one, not the compacted data.
    WriteBatch b;
    b.Put("newest", "x");
    if (!store->WriteSync(std::move(b)).ok()) std::abort();
  }
  std::mt19937_64 rng(2);
  for (auto _ : state) {
    state.PauseTiming();
    DropPageCache(dir);
    auto store = OpenStore(dir, FsyncPolicy::kNo);
    state.ResumeTiming();
    for (int i = 0; i < 100; ++i) {
      ValueView v;
      if (!store->Get(0, Key(rng() % kKeys), &v).ok()) std::abort();
      benchmark::DoNotOptimize(v.value[v.value.size() / 2]);
    }
    state.PauseTiming();
    store.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * 100);
  fs::remove_all(dir);
}
BENCHMARK(BM_GetCold)->Iterations(5);

void BM_Recover1M(benchmark::State& state) {
  const std::string dir = BenchDir("recover");
  fs::remove_all(dir);
  {
    auto store = OpenStore(dir, FsyncPolicy::kNo);
    Fill(*store, 1000000, 100);
    if (!store->CompactSync().ok()) std::abort();
  }
  for (auto _ : state) {
    auto store = OpenStore(dir, FsyncPolicy::kNo);
    if (store->GetStats().keys != 1000000) std::abort();
    state.PauseTiming();
    store.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * 1000000);
  fs::remove_all(dir);
}
BENCHMARK(BM_Recover1M)->Iterations(3)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);  // recovery logs would interleave with the table
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
