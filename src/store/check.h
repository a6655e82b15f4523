// Offline verification and repair of a data directory (the engine behind tools/keg-check).
// Takes the directory's LOCK, so it refuses to run beside a live server.
//
// Check: every record of every data file (CRC, header, sizes), every hint file (its own checks),
// leftover temporary files; replays the records to count live keys and dead bytes.
// Repair: cuts a torn tail of the newest file; rewrites a file with corrupt ranges without them
// (the records there are lost, and an older version of their key may become visible again: this
// is reported); removes bad hint files and writes hint files for every sealed data file; removes
// leftover temporary files.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "store/status.h"

namespace keg::store {

struct CheckReport {
  struct Damage {
    std::string file;
    uint64_t offset = 0;
    uint64_t length = 0;
    std::string what;
  };
  uint64_t data_files = 0;
  uint64_t hint_files = 0;
  uint64_t records = 0;
  uint64_t live_keys = 0;
  uint64_t collections = 0;    ///< large collections (a live head naming an incarnation)
  uint64_t live_elements = 0;  ///< their elements
  uint64_t total_bytes = 0;
  uint64_t dead_bytes = 0;
  std::vector<Damage> corrupt;         ///< damaged ranges of data files (a torn tail included)
  std::vector<std::string> bad_hints;  ///< hint files that fail their checks (and why)
  std::vector<std::string> leftovers;  ///< temporary files of an interrupted compaction
  bool repaired = false;
  std::vector<std::string> actions;  ///< what --repair did

  bool clean() const { return corrupt.empty() && bad_hints.empty() && leftovers.empty(); }
};

/// Checks (and with `repair`, fixes) the directory. `progress(done, total)` is called with bytes
/// scanned. Returns an error only when the check itself could not run (lock held, I/O error).
Status CheckDirectory(const std::string& dir, bool repair, CheckReport* report,
                      const std::function<void(uint64_t, uint64_t)>& progress = {});

}  // namespace keg::store
