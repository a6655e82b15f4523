// Store figures at scale, each step in a fresh process so the numbers are clean:
//
//   keg_store_scale load    DIR KEYS [VALUE_BYTES]  write KEYS keys (16-byte keys, 100-byte values)
//   keg_store_scale recover DIR                     open: recovery seconds, RssAnon bytes per key
//   keg_store_scale compact DIR                     overwrite a quarter of the keys, compact: MB/s
//                                                   and compaction's peak memory
//
// tools/bench-store.sh runs them in order and writes the figures. RssAnon is the process's
// anonymous memory (its heap: keydir and friends); the mapped data files are page cache and are
// not counted, as the issue defines the target.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "store/store.h"

namespace {

using keg::store::FsyncPolicy;
using keg::store::Options;
using keg::store::Status;
using keg::store::Store;
using keg::store::WriteBatch;
using Clock = std::chrono::steady_clock;

long RssAnonKb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("RssAnon:", 0) == 0) return std::atol(line.c_str() + 8);
  }
  return -1;
}

std::string Key(uint64_t i) {  // 16 bytes, as the target specifies
  char buf[32];
  std::snprintf(buf, sizeof(buf), "key:%012llu",
                static_cast<unsigned long long>(i % 1000000000000ull));
  return std::string(buf, 16);
}

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

Options ScaleOptions(const char* dir) {
  Options o;
  o.dir = dir;
  o.fsync = FsyncPolicy::kNo;
  o.auto_compaction = false;
  return o;
}

void Bar(uint64_t done, uint64_t total) {
  if (isatty(2) == 0) return;
  const int width = 40;
  const int filled =
      static_cast<int>(static_cast<double>(done) / static_cast<double>(total) * width);
  std::fprintf(stderr, "\r[%.*s%*s] %3d%%", filled,
               "========================================", width - filled, "",
               static_cast<int>(100 * done / total));
  if (done == total) std::fputc('\n', stderr);
}

int Fail(const Status& s) {
  std::fprintf(stderr, "error: %s\n", s.ToString().c_str());
  return 1;
}

// Writes keys [first, first + count) with batches of 1000 kept in flight.
Status WriteKeys(Store& store, uint64_t first, uint64_t count, size_t value_bytes, char fill) {
  constexpr uint64_t kBatch = 1000;
  std::atomic<int> in_flight{0};
  std::atomic<bool> failed{false};
  const std::string value(value_bytes, fill);
  for (uint64_t i = 0; i < count; i += kBatch) {
    WriteBatch b;
    for (uint64_t j = i; j < std::min(count, i + kBatch); ++j) b.Put(Key(first + j), value);
    while (in_flight.load() >= 16) std::this_thread::yield();
    ++in_flight;
    store.Write(std::move(b), [&](const Status& s, std::vector<keg::store::OpResult>) {
      if (!s.ok()) failed = true;
      --in_flight;
    });
    if (i % (kBatch * 100) == 0) Bar(i, count);
  }
  while (in_flight.load() > 0) std::this_thread::yield();
  Bar(count, count);
  return failed ? Status::IOError("a write failed") : store.Sync();
}

int Load(const char* dir, uint64_t keys, size_t value_bytes) {
  std::unique_ptr<Store> store;
  Status s = Store::Open(ScaleOptions(dir), &store);
  if (!s.ok()) return Fail(s);
  const auto start = Clock::now();
  s = WriteKeys(*store, 0, keys, value_bytes, 'v');
  if (!s.ok()) return Fail(s);
  const double secs = Seconds(start);
  std::printf("load: %llu keys of %zu-byte values in %.2f s (%.0f puts/s, appendfsync no)\n",
              static_cast<unsigned long long>(keys), value_bytes, secs,
              static_cast<double>(keys) / secs);
  // Let the background thread write hint files for every sealed file before closing.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  return store->Close().ok() ? 0 : 1;
}

int Recover(const char* dir) {
  const long before_kb = RssAnonKb();
  const auto start = Clock::now();
  std::unique_ptr<Store> store;
  Status s = Store::Open(ScaleOptions(dir), &store);
  if (!s.ok()) return Fail(s);
  const double secs = Seconds(start);
  const long after_kb = RssAnonKb();
  const auto st = store->GetStats();
  std::printf("recover: %llu keys in %.2f s (%.2f M keys/s)\n",
              static_cast<unsigned long long>(st.keys), secs,
              static_cast<double>(st.keys) / secs / 1e6);
  std::printf(
      "memory: RssAnon grew %ld KiB = %.1f bytes per key (keydir tables %.1f bytes per key)\n",
      after_kb - before_kb,
      static_cast<double>(after_kb - before_kb) * 1024.0 / static_cast<double>(st.keys),
      static_cast<double>(st.keydir_bytes) / static_cast<double>(st.keys));
  return 0;
}

int Compact(const char* dir) {
  std::unique_ptr<Store> store;
  Status s = Store::Open(ScaleOptions(dir), &store);
  if (!s.ok()) return Fail(s);
  const uint64_t keys = store->GetStats().keys;
  s = WriteKeys(*store, 0, keys / 4, 100, 'w');  // a quarter of the data becomes dead
  if (!s.ok()) return Fail(s);
  const auto before = store->GetStats();
  // Compaction's own memory: the peak growth of RssAnon while it runs (sampled every 10 ms).
  const long base_kb = RssAnonKb();
  std::atomic<long> peak_kb{base_kb};
  std::atomic<bool> done{false};
  std::thread sampler([&] {
    while (!done) {
      peak_kb = std::max(peak_kb.load(), RssAnonKb());
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  const auto start = Clock::now();
  s = store->CompactSync();
  done = true;
  sampler.join();
  if (!s.ok()) return Fail(s);
  const double secs = Seconds(start);
  const auto after = store->GetStats();
  std::printf("compact: %.0f MB of data files in %.2f s = %.0f MB/s read; %.0f MB reclaimed\n",
              static_cast<double>(before.total_bytes) / 1e6, secs,
              static_cast<double>(before.total_bytes) / 1e6 / secs,
              static_cast<double>(before.total_bytes - after.total_bytes) / 1e6);
  std::printf("compact: memory (RssAnon) peaked %.1f MiB above its start, %llu keys, %llu rounds\n",
              static_cast<double>(peak_kb.load() - base_kb) / 1024.0,
              static_cast<unsigned long long>(after.keys),
              static_cast<unsigned long long>(after.compaction_rounds));
  return store->Close().ok() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 4 && std::strcmp(argv[1], "load") == 0) {
    return Load(argv[2], std::strtoull(argv[3], nullptr, 10),
                argc >= 5 ? std::strtoul(argv[4], nullptr, 10) : 100);
  }
  if (argc == 3 && std::strcmp(argv[1], "recover") == 0) return Recover(argv[2]);
  if (argc == 3 && std::strcmp(argv[1], "compact") == 0) return Compact(argv[2]);
  std::fprintf(stderr, "usage: %s load DIR KEYS [VALUE_BYTES] | recover DIR | compact DIR\n",
               argv[0]);
  return 2;
}
