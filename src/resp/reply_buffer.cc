#include "resp/reply_buffer.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "resp/numbers.h"

namespace keg::resp {
namespace {

using namespace std::string_view_literals;  // constant replies: no strlen at run time

constexpr std::string_view kCrlf = "\r\n";

// Writes `prefix`, the decimal `value` and CRLF at `p`; returns the end. Needs 1 + 20 + 2 bytes.
inline char* WriteLine(char* p, char prefix, int64_t value) {
  *p++ = prefix;
  p += FormatInt64(value, p);
  *p++ = '\r';
  *p++ = '\n';
  return p;
}

constexpr size_t kMaxLineBytes = 1 + 20 + 2;

inline int64_t Count(size_t n) { return static_cast<int64_t>(n); }

}  // namespace

ReplyBuffer::ReplyBuffer(size_t external_threshold) : external_threshold_(external_threshold) {}

char* ReplyBuffer::Reserve(size_t bytes) {
  if (static_cast<size_t>(write_end_ - write_pos_) < bytes) {
    const size_t capacity = std::max(kChunkSize, bytes);
    chunks_.push_back({std::make_unique_for_overwrite<char[]>(capacity), capacity});
    capacity_ += capacity;
    open_ = nullptr;
    write_pos_ = chunks_.back().data.get();
    write_end_ = write_pos_ + capacity;
  }
  return write_pos_;
}

void ReplyBuffer::Commit(size_t bytes) {
  if (muted_) return;  // the reserved bytes are simply reused
  if (open_ != nullptr) {  // (it ends at write_pos_: the bytes follow it)
    open_->size += bytes;
    write_pos_ += bytes;
    size_ += bytes;
    return;
  }
  segments_.push_back({write_pos_, bytes, nullptr, front_chunk_id_ + chunks_.size() - 1});
  open_ = &segments_.back();
  write_pos_ += bytes;
  size_ += bytes;
}

void ReplyBuffer::Append(std::string_view bytes) {
  if (bytes.empty() || muted_) return;
  std::memcpy(Reserve(bytes.size()), bytes.data(), bytes.size());
  Commit(bytes.size());
}

void ReplyBuffer::AppendSanitized(std::string_view text) {
  char* p = Reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    p[i] = c == '\r' || c == '\n' ? ' ' : c;
  }
  Commit(text.size());
}

void ReplyBuffer::AppendExternal(std::string_view bytes, Keepalive keep) {
  if (bytes.empty() || muted_) return;
  segments_.push_back({bytes.data(), bytes.size(), std::move(keep), 0});
  open_ = nullptr;
  size_ += bytes.size();
}

void ReplyBuffer::BulkHeader(size_t length) {
  char* p = Reserve(kMaxLineBytes);
  Commit(static_cast<size_t>(WriteLine(p, '$', Count(length)) - p));
}

void ReplyBuffer::SimpleString(std::string_view text) {
  char* p = Reserve(1);
  *p = '+';
  Commit(1);
  AppendSanitized(text);
  Append(kCrlf);
}

void ReplyBuffer::Ok() { Append("+OK\r\n"sv); }

void ReplyBuffer::Error(std::string_view text) {
  if (error_observer_ != nullptr) error_observer_->OnErrorReply(text);
  if (text.empty() || text[0] != '-') Append("-ERR "sv);
  AppendSanitized(text);
  Append(kCrlf);
}

void ReplyBuffer::Integer(int64_t value) {
  char* p = Reserve(kMaxLineBytes);
  Commit(static_cast<size_t>(WriteLine(p, ':', value) - p));
}

void ReplyBuffer::Bulk(std::string_view value) {
  // Header, payload and CRLF in one reservation: one bounds check for the common small reply.
  const size_t total = kMaxLineBytes + value.size() + 2;
  char* const start = Reserve(total);
  char* p = WriteLine(start, '$', Count(value.size()));
  if (!value.empty()) std::memcpy(p, value.data(), value.size());
  p += value.size();
  *p++ = '\r';
  *p++ = '\n';
  Commit(static_cast<size_t>(p - start));
}

void ReplyBuffer::Bulk(std::string_view value, Keepalive keep) {
  if (!keep || value.size() < external_threshold_) {
    Bulk(value);
    return;
  }
  BulkHeader(value.size());
  AppendExternal(value, std::move(keep));
  Append(kCrlf);
}

void ReplyBuffer::Raw(std::string_view bytes, Keepalive keep) {
  if (!keep || bytes.size() < external_threshold_) {
    Raw(bytes);
    return;
  }
  AppendExternal(bytes, std::move(keep));
}

void ReplyBuffer::Null() { Append(protocol_ == Protocol::kResp3 ? "_\r\n"sv : "$-1\r\n"sv); }

void ReplyBuffer::NullArray() { Append(protocol_ == Protocol::kResp3 ? "_\r\n"sv : "*-1\r\n"sv); }

void ReplyBuffer::ArrayHeader(size_t count) {
  char* p = Reserve(kMaxLineBytes);
  Commit(static_cast<size_t>(WriteLine(p, '*', Count(count)) - p));
}

void ReplyBuffer::MapHeader(size_t pairs) {
  char* p = Reserve(kMaxLineBytes);
  char* end = protocol_ == Protocol::kResp3 ? WriteLine(p, '%', Count(pairs))
                                            : WriteLine(p, '*', Count(pairs) * 2);
  Commit(static_cast<size_t>(end - p));
}

void ReplyBuffer::SetHeader(size_t count) {
  char* p = Reserve(kMaxLineBytes);
  Commit(static_cast<size_t>(WriteLine(p, protocol_ == Protocol::kResp3 ? '~' : '*', Count(count)) -
                             p));
}

void ReplyBuffer::Double(double value) {
  char text[32];
  const size_t len = FormatDouble(value, text);
  if (protocol_ == Protocol::kResp3) {
    char* const start = Reserve(len + 3);
    char* p = start;
    *p++ = ',';
    std::memcpy(p, text, len);
    p += len;
    *p++ = '\r';
    *p++ = '\n';
    Commit(static_cast<size_t>(p - start));
  } else {
    Bulk(std::string_view(text, len));
  }
}

void ReplyBuffer::Boolean(bool value) {
  if (protocol_ == Protocol::kResp3) {
    Append(value ? "#t\r\n"sv : "#f\r\n"sv);
  } else {
    Append(value ? ":1\r\n"sv : ":0\r\n"sv);
  }
}

void ReplyBuffer::Verbatim(std::string_view text, std::string_view format) {
  if (protocol_ != Protocol::kResp3) {
    Bulk(text);
    return;
  }
  char* p = Reserve(kMaxLineBytes);
  Commit(static_cast<size_t>(WriteLine(p, '=', Count(text.size() + 4)) - p));
  Append(format.substr(0, 3));
  Append(":");
  Append(text);
  Append(kCrlf);
}

void ReplyBuffer::Raw(std::string_view bytes) { Append(bytes); }

void ReplyBuffer::Push(std::string_view bytes) {
  const bool muted = muted_;
  muted_ = false;
  Append(bytes);
  muted_ = muted;
}

size_t ReplyBuffer::Gather(std::span<iovec> out) const {
  size_t n = 0;
  size_t skip = head_offset_;
  for (const Segment& s : segments_) {
    if (n == out.size()) break;
    // iovec's base is non-const by POSIX's definition; writev only reads through it.
    out[n].iov_base = const_cast<char*>(s.data + skip);
    out[n].iov_len = s.size - skip;
    skip = 0;
    ++n;
  }
  return n;
}

void ReplyBuffer::Consume(size_t bytes) {
  bytes = std::min(bytes, size_);
  size_ -= bytes;
  consumed_ += bytes;
  while (bytes > 0) {
    Segment& front = segments_.front();
    const size_t left = front.size - head_offset_;
    if (bytes < left) {
      head_offset_ += bytes;
      break;
    }
    bytes -= left;
    if (&front == open_) open_ = nullptr;
    segments_.pop_front();  // releases its keepalive
    head_offset_ = 0;
  }
  Reclaim();
}

void ReplyBuffer::Reclaim() {
  if (chunks_.empty()) return;
  // The oldest chunk any pending byte lives in; chunks before it are done with.
  const uint64_t back_id = front_chunk_id_ + chunks_.size() - 1;
  uint64_t oldest_needed = back_id + 1;
  for (const Segment& s : segments_) {
    if (!s.keep) {
      oldest_needed = s.chunk_id;
      break;
    }
  }
  while (front_chunk_id_ < oldest_needed && chunks_.size() > 1) {
    capacity_ -= chunks_.front().capacity;
    chunks_.pop_front();
    ++front_chunk_id_;
  }
  if (oldest_needed > back_id) {
    // Nothing pending lives in the write chunk: reuse it from its start, or drop it if it was
    // sized for one large reply.
    Chunk& back = chunks_.back();
    open_ = nullptr;  // (no pending segment is in the write chunk: none was open)
    if (back.capacity > kChunkSize) {
      capacity_ = 0;
      chunks_.clear();
      front_chunk_id_ = back_id + 1;
      write_pos_ = write_end_ = nullptr;
    } else {
      write_pos_ = back.data.get();
    }
  }
}

void ReplyBuffer::Clear() {
  consumed_ += size_;
  segments_.clear();
  open_ = nullptr;
  head_offset_ = 0;
  size_ = 0;
  Reclaim();
}

std::string ReplyBuffer::TakeSince(uint64_t mark) {
  const size_t take = static_cast<size_t>(std::min<uint64_t>(added() - std::min(mark, added()), size_));
  std::string taken(take, '\0');
  size_t left = take;  // still to move, from the back
  while (left > 0) {
    Segment& back = segments_.back();
    // The front segment's consumed head is not pending: it is never taken.
    const size_t pending = back.size - (segments_.size() == 1 ? head_offset_ : 0);
    const size_t n = std::min(left, pending);
    left -= n;
    std::memcpy(taken.data() + left, back.data + (back.size - n), n);
    back.size -= n;
    if (n == pending) {
      if (&back == open_) open_ = nullptr;
      if (segments_.size() == 1) head_offset_ = 0;
      segments_.pop_back();  // releases its keepalive
    }
  }
  // A chunk's bytes after the last segment are not reused: the next reply starts a new segment.
  open_ = nullptr;
  size_ -= take;
  consumed_ += take;  // (added() is unchanged: they were added; Raw adds them again)
  Reclaim();
  return taken;
}

}  // namespace keg::resp
