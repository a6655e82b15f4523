#include "net/file_reads.h"

#include <liburing.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <asio.hpp>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <algorithm>
#include <spdlog/spdlog.h>

namespace keg::net {
namespace {

// Submission entries (the completion queue has twice as many): the most reads one I/O thread may
// have in the kernel (the depth is set lower: Create). Reads past the depth wait in the ring's queue;
// past kMaxQueued a Read is refused and the caller reads another way (the read pool).
constexpr unsigned kEntries = 256;
constexpr size_t kMaxQueued = 4096;

// The reads of one Read call: `done` runs when the last of them completed.
struct Group {
  size_t left;
  std::function<void()> done;
};

class UringReads final : public FileReads {
 public:
  UringReads(asio::io_context& io, const std::atomic<uint32_t>* depth, const io_uring& ring, int event_fd)
      : io_(io), ring_(ring), event_(io, event_fd), depth_(depth) {
    Arm();
  }

  ~UringReads() override {
    asio::error_code ec;
    event_.close(ec);  // its wait is cancelled; the handler is dropped with the io_context
    // The kernel writes into scratch_ until each read in flight completes: wait for them all.
    while (submitted_ > 0) {
      io_uring_cqe* cqe = nullptr;
      if (io_uring_wait_cqe(&ring_, &cqe) < 0) break;
      Complete(cqe, /*call=*/false);
      io_uring_cqe_seen(&ring_, cqe);
    }
    for (const Waiting& w : waiting_) {
      if (--w.group->left == 0) delete w.group;
    }
    io_uring_queue_exit(&ring_);
  }

  bool Read(std::span<const FileRead> reads, std::function<void()> done) override {
    if (reads.empty() || in_flight() + reads.size() > kMaxQueued) return false;
    for (const FileRead& r : reads) {
      if (r.length > kMaxRead || r.fd < 0) return false;
    }
    auto* group = new Group{reads.size(), std::move(done)};
    for (const FileRead& r : reads) waiting_.push_back(Waiting{r, group});
    // Submitted at the end of the loop's turn, with the reads of the other connections that were
    // ready in it: one io_uring_enter, and one kick of the disk's queue, for all of them (a kick is
    // an exit to the hypervisor on a VM: 20 % of the loop's time when each read had its own).
    if (!flush_posted_) {
      flush_posted_ = true;
      asio::post(io_, [this] {
        flush_posted_ = false;
        Submit();
      });
    }
    return true;
  }

  size_t in_flight() const override { return submitted_ + waiting_.size(); }

 private:
  // Moves waiting reads into the ring, up to depth_ in the kernel at once, and submits them. Read
  // errors come back as completions; io_uring_enter itself fails only for want of kernel memory or
  // room for completions (-EAGAIN, -EBUSY): try again until every read is submitted.
  void Submit() {
    size_t queued = 0;
    const size_t depth = std::clamp<size_t>(depth_->load(std::memory_order_relaxed), 1, kEntries);
    while (submitted_ < depth && !waiting_.empty()) {
      const Waiting& w = waiting_.front();
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);  // never null: depth <= kEntries
      // Every read lands in the same scratch buffer: the bytes are thrown away (readers use the
      // store's maps), only the page cache they filled matters.
      io_uring_prep_read(sqe, w.read.fd, scratch_, w.read.length, w.read.offset);
      io_uring_sqe_set_data(sqe, w.group);
      waiting_.pop_front();
      ++submitted_;
      ++queued;
    }
    for (int attempt = 0; queued > 0; ++attempt) {
      const int n = io_uring_submit(&ring_);
      if (n > 0) {
        queued -= std::min(queued, static_cast<size_t>(n));
        continue;
      }
      if (attempt == 0 || attempt % 1000 == 0) {
        spdlog::error("io_uring_submit of {} cold reads failed ({}); retrying", queued, std::strerror(-n));
      }
      sched_yield();
    }
  }

  // Waits (on the loop) for the ring's eventfd: completions are ready.
  void Arm() {
    event_.async_wait(asio::posix::stream_descriptor::wait_read, [this](const asio::error_code& ec) {
      if (ec) return;  // closed: the ring is going away
      uint64_t count = 0;
      (void)::read(event_.native_handle(), &count, sizeof(count));
      Reap();
      Arm();
    });
  }

  // Every completion ready; the callbacks run after the completion queue is released, so a
  // callback may start reads of its own (a record's second round).
  void Reap() {
    io_uring_cqe* cqe = nullptr;
    unsigned head = 0;
    unsigned seen = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      Complete(cqe, /*call=*/true);
      ++seen;
    }
    io_uring_cq_advance(&ring_, seen);
    std::vector<std::function<void()>> ready;
    ready.swap(ready_);
    for (std::function<void()>& done : ready) done();
    if (!waiting_.empty() && !flush_posted_) Submit();
  }

  void Complete(io_uring_cqe* cqe, bool call) {
    --submitted_;
    auto* group = static_cast<Group*>(io_uring_cqe_get_data(cqe));
    if (--group->left > 0) return;
    if (call) ready_.push_back(std::move(group->done));
    delete group;
  }

  asio::io_context& io_;
  io_uring ring_;
  asio::posix::stream_descriptor event_;
  const std::atomic<uint32_t>* depth_;
  struct Waiting {
    FileRead read;
    Group* group;
  };
  std::deque<Waiting> waiting_;  // not yet in the ring
  size_t submitted_ = 0;         // in the kernel, not yet completed
  bool flush_posted_ = false;
  std::vector<std::function<void()>> ready_;
  alignas(64) char scratch_[kMaxRead];
};

}  // namespace

std::unique_ptr<FileReads> FileReads::Create(asio::io_context& io, const std::atomic<uint32_t>* depth) {
  static std::atomic<bool> logged{false};
  io_uring ring;
  const int err = io_uring_queue_init(kEntries, &ring, 0);
  if (err < 0) {
    if (!logged.exchange(true)) {
      spdlog::warn("io_uring unavailable ({}): cold reads go through the read pool's threads", std::strerror(-err));
    }
    return nullptr;
  }
  const int event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (event_fd < 0 || io_uring_register_eventfd(&ring, event_fd) < 0) {
    const int e = errno;
    if (event_fd >= 0) ::close(event_fd);
    io_uring_queue_exit(&ring);
    if (!logged.exchange(true)) {
      spdlog::warn("io_uring eventfd unavailable ({}): cold reads go through the read pool's threads", std::strerror(e));
    }
    return nullptr;
  }
  return std::make_unique<UringReads>(io, depth, ring, event_fd);
}

}  // namespace keg::net
