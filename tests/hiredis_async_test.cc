// hiredis's asynchronous API (libhiredis 0.14, Debian) against keg-server: 100,000 commands queued
// at once on one connection, every reply checked in order.
#include <gtest/gtest.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <poll.h>

#include <filesystem>
#include <string>
#include <vector>

#include "support/server_process.h"

namespace keg::testing {
namespace {

// A minimal event loop for one redisAsyncContext: poll() on its socket.
struct PollLoop {
  bool want_read = false;
  bool want_write = false;

  static void AddRead(void* p) { static_cast<PollLoop*>(p)->want_read = true; }
  static void DelRead(void* p) { static_cast<PollLoop*>(p)->want_read = false; }
  static void AddWrite(void* p) { static_cast<PollLoop*>(p)->want_write = true; }
  static void DelWrite(void* p) { static_cast<PollLoop*>(p)->want_write = false; }
  static void Cleanup(void* p) {
    auto* loop = static_cast<PollLoop*>(p);
    loop->want_read = loop->want_write = false;
  }

  void Attach(redisAsyncContext* ac) {
    ac->ev.data = this;
    ac->ev.addRead = AddRead;
    ac->ev.delRead = DelRead;
    ac->ev.addWrite = AddWrite;
    ac->ev.delWrite = DelWrite;
    ac->ev.cleanup = Cleanup;
  }

  // Runs until done() or a 60 s deadline.
  template <typename Done>
  bool Run(redisAsyncContext* ac, Done done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      pollfd p{ac->c.fd, 0, 0};
      if (want_read) p.events |= POLLIN;
      if (want_write) p.events |= POLLOUT;
      if (p.events == 0) return done();
      if (poll(&p, 1, 100) < 0) return false;
      if (p.revents & (POLLIN | POLLHUP | POLLERR)) redisAsyncHandleRead(ac);
      if (p.revents & POLLOUT) redisAsyncHandleWrite(ac);
    }
    return true;
  }
};

struct Tally {
  int replies = 0;
  int wrong = 0;
};

void OnSet(redisAsyncContext*, void* r, void* priv) {
  auto* t = static_cast<Tally*>(priv);
  auto* reply = static_cast<redisReply*>(r);
  ++t->replies;
  if (reply == nullptr || reply->type != REDIS_REPLY_STATUS || std::string(reply->str) != "OK") ++t->wrong;
}

struct GetCheck {
  Tally* tally;
  std::string expected;
};

void OnGet(redisAsyncContext*, void* r, void* priv) {
  auto* check = static_cast<GetCheck*>(priv);
  auto* reply = static_cast<redisReply*>(r);
  ++check->tally->replies;
  if (reply == nullptr || reply->type != REDIS_REPLY_STRING ||
      std::string(reply->str, reply->len) != check->expected) {
    ++check->tally->wrong;
  }
}

TEST(HiredisAsync, HundredThousandPipelinedCommands) {
  const int port = FreePort();
  const std::string dir = ::testing::TempDir() + "keg_hiredis_async_" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  ServerProcess keg;
  ASSERT_TRUE(keg.Start({KEG_SERVER_PATH, "--port", std::to_string(port), "--dir", dir,
                         "--logfile", "/dev/null"}, port));
  redisAsyncContext* ac = redisAsyncConnect("127.0.0.1", port);
  ASSERT_TRUE(ac != nullptr && ac->err == 0);
  PollLoop loop;
  loop.Attach(ac);

  constexpr int kPairs = 50000;  // 50,000 SET + 50,000 GET, all queued before any reply is read
  Tally tally;
  std::vector<GetCheck> checks(kPairs);
  for (int i = 0; i < kPairs; ++i) {
    const std::string key = "async:" + std::to_string(i);
    const std::string value = "value-" + std::to_string(i * 7);
    redisAsyncCommand(ac, OnSet, &tally, "SET %b %b", key.data(), key.size(), value.data(), value.size());
    checks[static_cast<size_t>(i)] = GetCheck{&tally, value};
    redisAsyncCommand(ac, OnGet, &checks[static_cast<size_t>(i)], "GET %b", key.data(), key.size());
  }
  EXPECT_TRUE(loop.Run(ac, [&] { return tally.replies == 2 * kPairs; }));
  EXPECT_EQ(tally.replies, 2 * kPairs);
  EXPECT_EQ(tally.wrong, 0);
  redisAsyncDisconnect(ac);  // no callbacks pending: frees the context at once
  keg.Signal(SIGTERM);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace keg::testing
