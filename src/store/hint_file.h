// Hint files: a compact index of one sealed data file (offset, sizes, flags, expiry and key of each
// record), read at start-up instead of the data file. Protected by a CRC over the whole file; a
// hint that fails any check is ignored and its data file scanned instead.
// Thread: a HintWriter belongs to one thread; ReadHintFile is thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "store/format.h"
#include "store/io.h"
#include "store/status.h"

namespace keg::store {

/// Writes `<final_path>.tmp`, then fsyncs and renames it to `final_path` in Finish().
class HintWriter {
 public:
  HintWriter() = default;
  ~HintWriter();
  HintWriter(const HintWriter&) = delete;
  HintWriter& operator=(const HintWriter&) = delete;

  Status Open(std::string final_path, uint64_t data_file_id);
  void Add(const format::HintEntry& entry, std::string_view key);
  /// Writes the trailer recording `data_file_size`, fsyncs, renames into place.
  Status Finish(uint64_t data_file_size);
  /// Removes the temporary file (if Finish was not reached).
  void Abandon();

 private:
  static constexpr size_t kFlushBytes = 64 * 1024;
  Status Flush();

  std::string final_path_;
  std::string tmp_path_;
  int fd_ = -1;
  std::string buffer_;
  uint64_t written_ = 0;
  uint64_t count_ = 0;
  uint32_t crc_ = 0;
};

/// Writes the hint file `hint_path` for the data file `data_id` whose bytes are data[0, size),
/// every record of which must pass its CRC check (Corruption naming the offset otherwise).
Status BuildHintFile(const std::string& hint_path, uint64_t data_id, const char* data,
                     uint64_t size);

/// A hint file that passed every check, mapped for reading.
class HintFile {
 public:
  /// Maps and checks the whole file: magic, CRC, that it belongs to data file `data_id` and covers
  /// exactly `data_size` bytes of it, and that its entries fill it exactly. Corruption otherwise.
  static Status Open(const std::string& path, uint64_t data_id, uint64_t data_size,
                     std::unique_ptr<HintFile>* out);

  uint64_t count() const { return count_; }

  /// Walks the entries in order. Keys point into the mapping: valid while the HintFile lives.
  class Cursor {
   public:
    explicit Cursor(const HintFile& file)
        : p_(file.file_.data + format::kHintHeaderSize), left_(file.count_) {}
    bool Next(format::HintEntry* e, std::string_view* key);

   private:
    const char* p_;
    uint64_t left_;
  };

 private:
  io::MappedFile file_;
  uint64_t count_ = 0;
};

}  // namespace keg::store
