// ReplyBuffer: the replies a connection owes its client, encoded as RESP2 or RESP3, ready for one
// gathered write (writev / asio::async_write with a buffer sequence).
//
//   keg::resp::ReplyBuffer out;
//   out.Bulk(small_value);                       // copied into the buffer
//   out.Bulk(mapped_value, pin);                 // large: referenced, `pin` keeps it alive
//   iovec iov[64];
//   size_t n = out.Gather(iov);                  // slices in reply order
//   ssize_t written = writev(fd, iov, n);
//   out.Consume(written);                        // drops bytes (and pins) that were sent
//
// Contracts:
// - Bytes are kept in chunks that never move: appending never invalidates slices returned by an
//   earlier Gather, so replies may be added while a write of earlier ones is in flight. Slices stay
//   valid until Consume passes them (or Clear).
// - An external range is not copied: it is sent from where it lies. Its keepalive (for example a
//   pin on a memory-mapped data file) is held until Consume passes the range, so the memory stays
//   valid until the write that sends it has completed.
// - Memory of consumed chunks is reclaimed as consumption passes them.
// - Thread: not thread-safe; one connection, one thread at a time.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace keg::resp {

/// The reply protocol of a connection: RESP2 until the client sends HELLO 3.
enum class Protocol : uint8_t { kResp2 = 2, kResp3 = 3 };

/// Told of every error reply a buffer encodes (INFO errorstats, total_error_replies). Called on
/// the buffer's thread, with the text as given to Error() (without the "-ERR " it may add).
class ErrorObserver {
 public:
  virtual void OnErrorReply(std::string_view text) = 0;

 protected:
  ~ErrorObserver() = default;
};

class ReplyBuffer {
 public:
  /// Holds referenced bytes alive; any owner fits (shared_ptr aliasing avoids an allocation).
  using Keepalive = std::shared_ptr<const void>;

  /// Size of the chunks small replies are packed into.
  static constexpr size_t kChunkSize = 16 * 1024;
  /// Values at least this large are referenced instead of copied, when a keepalive is given.
  static constexpr size_t kDefaultExternalThreshold = 16 * 1024;

  explicit ReplyBuffer(size_t external_threshold = kDefaultExternalThreshold);
  ReplyBuffer(const ReplyBuffer&) = delete;
  ReplyBuffer& operator=(const ReplyBuffer&) = delete;

  void set_protocol(Protocol protocol) { protocol_ = protocol; }
  /// `observer` (not owned; null: none) must outlive the buffer or be reset first.
  void set_error_observer(ErrorObserver* observer) { error_observer_ = observer; }
  [[nodiscard]] Protocol protocol() const { return protocol_; }
  /// While muted, replies are dropped (CLIENT REPLY OFF / SKIP); errors still reach the observer.
  void set_muted(bool muted) { muted_ = muted; }
  [[nodiscard]] bool muted() const { return muted_; }

  // ---- Encoders. Each appends one reply (or, for headers, the start of an aggregate). ----------

  /// `+text` (CR and LF in `text` become spaces, keeping the stream parseable).
  void SimpleString(std::string_view text);
  /// `+OK`.
  void Ok();
  /// An error with Redis's rule (addReplyErrorLength): text starting with '-' is sent as is
  /// ("-NOAUTH ..."), anything else gets "-ERR " in front. CR and LF become spaces.
  void Error(std::string_view text);
  /// `:value`.
  void Integer(int64_t value);
  /// `$len` and a copy of `value`.
  void Bulk(std::string_view value);
  /// `$len` and `value`, referenced without a copy when it is at least external_threshold() bytes
  /// (then `keep` is held until the bytes are consumed), copied otherwise.
  void Bulk(std::string_view value, Keepalive keep);
  /// The null bulk: `$-1` (RESP2) or `_` (RESP3).
  void Null();
  /// The null array: `*-1` (RESP2) or `_` (RESP3).
  void NullArray();
  /// An array of `count` elements; the elements follow.
  void ArrayHeader(size_t count);
  /// A map of `pairs` key/value pairs: `%pairs` (RESP3) or a flat array `*2*pairs` (RESP2).
  void MapHeader(size_t pairs);
  /// A set: `~count` (RESP3) or `*count` (RESP2).
  void SetHeader(size_t count);
  /// A double as Redis 7.0 writes it ("%.17g", inf, -inf): `,d` (RESP3) or a bulk (RESP2).
  void Double(double value);
  /// `#t` / `#f` (RESP3) or `:1` / `:0` (RESP2).
  void Boolean(bool value);
  /// A verbatim string `=len\r\nfmt:text` (RESP3) or a plain bulk (RESP2). `format` is 3 bytes.
  void Verbatim(std::string_view text, std::string_view format = "txt");
  /// Bytes that are already valid RESP.
  void Raw(std::string_view bytes);
  /// The same, referenced without a copy (`keep` held until they are consumed) when they are at
  /// least external_threshold() bytes: a replication snapshot's RDB after its `$<length>` line.
  void Raw(std::string_view bytes, Keepalive keep);
  /// Bytes that are already valid RESP, written even while muted: pub/sub messages and
  /// (un)subscribe confirmations, which Redis sends whatever CLIENT REPLY says.
  void Push(std::string_view bytes);

  // ---- Output ---------------------------------------------------------------------------------

  /// Bytes not yet consumed.
  [[nodiscard]] size_t size() const { return size_; }
  [[nodiscard]] bool empty() const { return size_ == 0; }
  /// Bytes of memory held in chunks (for output-buffer accounting); external ranges not counted.
  [[nodiscard]] size_t capacity() const { return capacity_; }
  /// Fills `out` with the pending bytes in order, at most out.size() slices; returns the count.
  size_t Gather(std::span<iovec> out) const;
  /// Drops the first `bytes` pending bytes (at most size()), releasing keepalives passed.
  void Consume(size_t bytes);
  /// Drops everything.
  void Clear();
  /// Every byte ever added (consumed, dropped or pending): a mark for TakeSince.
  [[nodiscard]] uint64_t added() const { return consumed_ + size_; }
  /// Removes the pending bytes added after `mark` (an earlier added()) and returns them, external
  /// ranges copied (their keepalives released): a reply held back, to be added again with Raw().
  /// Bytes of them already consumed (written) stay written: only the pending ones are returned.
  std::string TakeSince(uint64_t mark);

  [[nodiscard]] size_t external_threshold() const { return external_threshold_; }

 private:
  struct Chunk {
    std::unique_ptr<char[]> data;
    size_t capacity;
  };
  struct Segment {
    const char* data;
    size_t size;
    Keepalive keep;     // null for bytes that live in a chunk
    uint64_t chunk_id;  // the chunk holding the bytes, when keep is null
  };

  // Returns room for at least `bytes` bytes; Commit(n) then makes n of them pending.
  char* Reserve(size_t bytes);
  void Commit(size_t bytes);
  void Append(std::string_view bytes);
  void AppendSanitized(std::string_view text);
  void AppendExternal(std::string_view bytes, Keepalive keep);
  void BulkHeader(size_t length);
  void Reclaim();

  Protocol protocol_ = Protocol::kResp2;
  ErrorObserver* error_observer_ = nullptr;
  size_t external_threshold_;
  std::deque<Chunk> chunks_;  // chunks_.back() is written to
  uint64_t front_chunk_id_ = 0;
  char* write_pos_ = nullptr;  // free space in chunks_.back(): [write_pos_, write_end_)
  char* write_end_ = nullptr;
  std::deque<Segment> segments_;  // pending, in order; the first may be partly consumed
  // segments_.back() while it is a chunk's bytes ending at write_pos_, which Commit extends; else
  // null. (A deque keeps its elements in place as it grows or is consumed at the other end; the
  // buffer is neither copied nor moved.)
  Segment* open_ = nullptr;
  bool muted_ = false;
  size_t head_offset_ = 0;        // bytes of segments_.front() already consumed
  uint64_t consumed_ = 0;         // bytes consumed, cleared or taken, ever (added())
  size_t size_ = 0;
  size_t capacity_ = 0;
};

}  // namespace keg::resp
