// Crash test: a child process writes under appendfsync always from several threads (so writes
// share group commits) and triggers compactions; the parent SIGKILLs it at a random moment,
// reopens the directory and checks every key against a model of the acknowledged writes.
//
// Each writer thread t runs a deterministic sequence of ops over its own 50 keys: op i puts
// "t<t>-<i>" into key i % 50, or deletes it when i % 7 == 3. The child reports each acknowledged
// op index through a pipe. After the kill, for each thread with A acknowledged ops, every key must
// hold exactly the state after ops [0, A) — except the key of op A, the one write that may have
// been in flight, which may also hold the state after op A. Nothing else is allowed: no lost
// acknowledged write, no resurrected delete, no value that was never written.
//
// KEG_CRASH_CYCLES sets the number of kills (default 20; the soak run uses 1000).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "store/store.h"

namespace keg::store {
namespace {

namespace fs = std::filesystem;

constexpr int kThreads = 4;
constexpr int kKeysPerThread = 50;

std::string KeyOf(int t, uint64_t i) {
  return "t" + std::to_string(t) + ":" + std::to_string(i % kKeysPerThread);
}
bool IsDelete(uint64_t i) { return i % 7 == 3; }
std::string ValueOf(int t, uint64_t i) { return "t" + std::to_string(t) + "-" + std::to_string(i); }

Options CrashOptions(const std::string& dir) {
  Options o;
  o.dir = dir;
  o.fsync = FsyncPolicy::kAlways;
  o.max_file_size = 16 * 1024;
  o.auto_compaction = false;
  o.background_interval_ms = 20;
  o.compaction_max_moves = 64;  // compactions in many rounds: kills land between rounds too
  return o;
}

// The child: never returns. Ack records are {thread, op index} pairs of uint32 + uint64.
[[noreturn]] void RunChild(const std::string& dir, int ack_fd,
                           std::array<uint64_t, kThreads> start) {
  std::unique_ptr<Store> store;
  if (!Store::Open(CrashOptions(dir), &store).ok()) _exit(3);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t i = start[static_cast<size_t>(t)];; ++i) {
        WriteBatch b;
        if (IsDelete(i)) {
          b.Delete(KeyOf(t, i));
        } else {
          b.Put(KeyOf(t, i), ValueOf(t, i));
        }
        if (!store->WriteSync(std::move(b)).ok()) _exit(4);
        char rec[12];
        const uint32_t tt = static_cast<uint32_t>(t);
        std::memcpy(rec, &tt, 4);
        std::memcpy(rec + 4, &i, 8);
        if (write(ack_fd, rec, sizeof(rec)) != sizeof(rec)) _exit(5);
        if (t == 0 && i % 300 == 0) store->Compact([](const Status&) {});
      }
    });
  }
  for (auto& th : threads) th.join();
  _exit(0);
}

TEST(StoreCrashTest, KillNineUnderAlwaysLosesNoAcknowledgedWrite) {
  const char* env = std::getenv("KEG_CRASH_CYCLES");
  const int cycles = env != nullptr ? std::atoi(env) : 20;
  const fs::path dir = fs::path(::testing::TempDir()) / ("keg_crash_" + std::to_string(getpid()));
  fs::remove_all(dir);

  // model[t][key] = value (absent: deleted / never written), after acked[t] ops.
  std::array<std::map<std::string, std::string>, kThreads> model;
  std::array<uint64_t, kThreads> acked{};
  std::mt19937 rng(20261121);
  uint64_t total_acked = 0;

  for (int cycle = 0; cycle < cycles; ++cycle) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      RunChild(dir.string(), fds[1], acked);
    }
    close(fds[1]);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);

    std::string acks;
    auto drain = [&] {
      char buf[4096];
      for (;;) {
        const ssize_t n = read(fds[0], buf, sizeof(buf));
        if (n <= 0) break;
        acks.append(buf, static_cast<size_t>(n));
      }
    };
    const auto until = std::chrono::steady_clock::now() +
                       std::chrono::milliseconds(20 + static_cast<int>(rng() % 200));
    while (std::chrono::steady_clock::now() < until) {
      pollfd p{fds[0], POLLIN, 0};
      poll(&p, 1, 5);
      drain();
    }
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    drain();
    close(fds[0]);
    ASSERT_TRUE(WIFSIGNALED(status))
        << "the child exited by itself with " << WEXITSTATUS(status) << " in cycle " << cycle;

    // Fold the acknowledged ops into the model; they must arrive in order per thread.
    for (size_t off = 0; off + 12 <= acks.size(); off += 12) {
      uint32_t t = 0;
      uint64_t i = 0;
      std::memcpy(&t, acks.data() + off, 4);
      std::memcpy(&i, acks.data() + off + 4, 8);
      ASSERT_LT(t, static_cast<uint32_t>(kThreads));
      ASSERT_EQ(i, acked[t]) << "acks out of order";
      if (IsDelete(i)) {
        model[t].erase(KeyOf(static_cast<int>(t), i));
      } else {
        model[t][KeyOf(static_cast<int>(t), i)] = ValueOf(static_cast<int>(t), i);
      }
      ++acked[t];
      ++total_acked;
    }

    std::unique_ptr<Store> store;
    Status s = Store::Open(CrashOptions(dir.string()), &store);
    ASSERT_TRUE(s.ok()) << "reopen after kill " << cycle << ": " << s.ToString();
    for (int t = 0; t < kThreads; ++t) {
      const uint64_t in_flight = acked[static_cast<size_t>(t)];
      for (int k = 0; k < kKeysPerThread; ++k) {
        const std::string key = KeyOf(t, static_cast<uint64_t>(k));
        ValueView v;
        const Status g = store->Get(0, key, &v);
        ASSERT_TRUE(g.ok() || g.IsNotFound()) << g.ToString();
        const std::optional<std::string> got =
            g.ok() ? std::optional<std::string>(std::string(v.value)) : std::nullopt;
        const auto it = model[static_cast<size_t>(t)].find(key);
        const std::optional<std::string> want = it == model[static_cast<size_t>(t)].end()
                                                    ? std::nullopt
                                                    : std::optional<std::string>(it->second);
        if (got == want) continue;
        // Only the in-flight op may differ, and only as itself.
        ASSERT_EQ(KeyOf(t, in_flight), key)
            << "cycle " << cycle << ": key " << key << " holds " << got.value_or("<absent>")
            << ", acknowledged state is " << want.value_or("<absent>");
        const std::optional<std::string> flight =
            IsDelete(in_flight) ? std::nullopt : std::optional<std::string>(ValueOf(t, in_flight));
        ASSERT_EQ(got, flight) << "cycle " << cycle << ": key " << key;
      }
    }
    ASSERT_TRUE(store->Close().ok());
  }
  std::printf("crash test: %d kills, %llu acknowledged writes checked, 0 lost\n", cycles,
              static_cast<unsigned long long>(total_acked));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace keg::store
