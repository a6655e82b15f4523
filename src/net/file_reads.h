// FileReads: an I/O thread's io_uring, for file reads that must not block its event loop.
//
// Cold reads (docs/store.md): before a command touches keys whose records are not in the page
// cache, their pages are read here, buffered, into scratch memory that is thrown away; what matters
// is that the kernel filled the page cache. The command then runs as any other, reading through the
// store's maps without a copy. The reads are submitted from the loop and their completions wake it
// through an eventfd it watches: no thread hand-off, no blocked thread, many reads in flight.
//
// Thread: one per I/O thread (Worker); construct, Read and destroy on that thread (or after its
// loop stopped).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "net/session.h"

namespace asio {
class io_context;
}

namespace keg::net {

class FileReads {
 public:
  /// A ring watched by `io`'s loop, or null when this kernel refuses io_uring (too old, a seccomp
  /// policy, kernel.io_uring_disabled): callers then read some other way. Logs which, once.
  /// `depth` (read on each submission, so it may change at run time; outlives the ring): the reads
  /// in the kernel at once, the others wait in order. The loop does the kernel's work of each read
  /// (page-cache fill, reclaim, the disk's doorbell): a few in flight keep the disk busy, more only
  /// lengthen the turns that every other client of the loop waits through.
  static std::unique_ptr<FileReads> Create(asio::io_context& io, const std::atomic<uint32_t>* depth);
  /// Waits for the reads in flight (the kernel writes into their buffers until they complete) and
  /// drops their callbacks without calling them.
  virtual ~FileReads() = default;

  /// Queues the reads (each at most kMaxRead bytes), submitted at the end of the loop's turn with
  /// those of the other connections; `done` runs on the loop once all of them completed, whatever
  /// their results (a failed read leaves the pages cold: the caller's next look sees that).
  /// Returns false, with nothing queued, when the ring has no room or a read is too long: the
  /// caller reads some other way. The descriptors must stay open until `done` runs or is dropped.
  virtual bool Read(std::span<const FileRead> reads, std::function<void()> done) = 0;

  /// Reads in flight.
  virtual size_t in_flight() const = 0;

  static constexpr uint32_t kMaxRead = 16384;
};

}  // namespace keg::net
