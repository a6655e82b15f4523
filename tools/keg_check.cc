// keg-check: verifies a keg data directory offline and, with --repair, fixes it.
//
//   keg-check DIR            exit 0: clean; 1: damage found (listed); 2: could not check
//   keg-check --repair DIR   cut torn tails, drop corrupt records, rebuild hint files; exit 0 when
//                            the directory is usable afterwards
// Stop keg-server first: the tool takes the directory's lock.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "store/check.h"

namespace {

void PrintUsage(const char* argv0) { std::fprintf(stderr, "usage: %s [--repair] DIR\n", argv0); }

// A progress bar on a terminal, redrawn at most ten times a second.
void Progress(uint64_t done, uint64_t total) {
  static auto last = std::chrono::steady_clock::time_point{};
  if (isatty(STDERR_FILENO) == 0 || total == 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (done < total && now - last < std::chrono::milliseconds(100)) return;
  last = now;
  constexpr int kWidth = 40;
  const int filled =
      static_cast<int>(static_cast<double>(done) / static_cast<double>(total) * kWidth);
  std::fprintf(stderr, "\rchecking [%.*s%*s] %3d%% of %llu MB", filled,
               "========================================", kWidth - filled, "",
               static_cast<int>(done * 100 / total), static_cast<unsigned long long>(total >> 20));
  if (done >= total) std::fputc('\n', stderr);
}

}  // namespace

int main(int argc, char** argv) {
  bool repair = false;
  const char* dir = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--repair") == 0) {
      repair = true;
    } else if (argv[i][0] == '-' || dir != nullptr) {
      PrintUsage(argv[0]);
      return 2;
    } else {
      dir = argv[i];
    }
  }
  if (dir == nullptr) {
    PrintUsage(argv[0]);
    return 2;
  }
  keg::store::CheckReport report;
  const keg::store::Status s = keg::store::CheckDirectory(dir, repair, &report, Progress);
  if (!s.ok()) {
    std::fprintf(stderr, "keg-check: %s\n", s.ToString().c_str());
    return 2;
  }
  std::printf("data files:   %llu (%llu MB)\n", static_cast<unsigned long long>(report.data_files),
              static_cast<unsigned long long>(report.total_bytes >> 20));
  std::printf("hint files:   %llu\n", static_cast<unsigned long long>(report.hint_files));
  std::printf("records:      %llu\n", static_cast<unsigned long long>(report.records));
  std::printf("live keys:    %llu\n", static_cast<unsigned long long>(report.live_keys));
  if (report.collections > 0) {
    std::printf("large collections: %llu (%llu elements)\n", static_cast<unsigned long long>(report.collections),
                static_cast<unsigned long long>(report.live_elements));
  }
  std::printf("dead bytes:   %llu\n", static_cast<unsigned long long>(report.dead_bytes));
  for (const auto& d : report.corrupt) {
    std::printf("damaged:      %s at offset %llu, %llu bytes: %s\n", d.file.c_str(),
                static_cast<unsigned long long>(d.offset),
                static_cast<unsigned long long>(d.length), d.what.c_str());
  }
  for (const auto& h : report.bad_hints) std::printf("bad hint:     %s\n", h.c_str());
  for (const auto& l : report.leftovers) std::printf("leftover:     %s\n", l.c_str());
  for (const auto& a : report.actions) std::printf("repaired:     %s\n", a.c_str());
  if (report.clean()) {
    std::printf("result:       clean\n");
    return 0;
  }
  if (report.repaired) {
    std::printf("result:       repaired\n");
    return 0;
  }
  std::printf("result:       damaged (run with --repair)\n");
  return 1;
}
