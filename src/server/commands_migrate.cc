// MIGRATE host port key|"" destination-db timeout [COPY] [REPLACE] [AUTH password |
// AUTH2 username password] [KEYS key ...]: moves keys to another server (Redis or keg) with
// DUMP payloads and RESTORE, then deletes them here unless COPY — Redis 7.0's replies and errors.
//
// As in Redis, the transfer is synchronous: the connection's I/O thread waits for the target (at
// most `timeout` ms per step). MIGRATE is not a write command for the batch ordering: it runs once
// this connection's earlier writes are durable, so it reads what they wrote; its deletions then
// go in a batch and it replies when they are durable. No connection is cached
// (INFO migrate_cached_sockets is 0). Refused inside MULTI (keg reads of a transaction run at its
// end). Thread: the connection's I/O thread.
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "resp/numbers.h"
#include "resp/reply_buffer.h"
#include "server/collection.h"
#include "server/command.h"
#include "server/notify.h"
#include "server/rdb.h"
#include "server/session.h"
#include "server/state.h"

namespace keg::server {
namespace {

using Clock = std::chrono::steady_clock;

// A blocking exchange with the target, every step bounded by the deadline it is given.
class TargetConnection {
 public:
  ~TargetConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool Connect(const std::string& host, const std::string& port, int64_t timeout_ms) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0) return false;
    std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, freeaddrinfo);
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
      fd_ = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
      if (fd_ < 0) continue;
      if (::connect(fd_, ai->ai_addr, ai->ai_addrlen) == 0) return true;
      if (errno == EINPROGRESS && Wait(POLLOUT, timeout_ms)) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) return true;
      }
      ::close(fd_);
      fd_ = -1;
    }
    return false;
  }
  bool Send(std::string_view bytes, int64_t timeout_ms) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n > 0) {
        bytes.remove_prefix(static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && Wait(POLLOUT, Left(deadline))) continue;
      return false;
    }
    return true;
  }
  // One single-line reply (+OK, -ERR ...): what AUTH, SELECT and RESTORE answer.
  bool ReadLine(std::string* line, int64_t timeout_ms) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      const size_t eol = buf_.find("\r\n");
      if (eol != std::string::npos) {
        *line = buf_.substr(0, eol);
        buf_.erase(0, eol + 2);
        return true;
      }
      if (buf_.size() > 64 * 1024) return false;  // not a reply these commands give
      char chunk[4096];
      const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
      if (n > 0) {
        buf_.append(chunk, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && Wait(POLLIN, Left(deadline))) continue;
      return false;
    }
  }

 private:
  static int64_t Left(Clock::time_point deadline) {
    return std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
  }
  bool Wait(short events, int64_t timeout_ms) {
    pollfd p{fd_, events, 0};
    int r = 0;
    do {
      r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(timeout_ms, INT32_MAX)));
    } while (r < 0 && errno == EINTR);
    return r > 0;
  }
  int fd_ = -1;
  std::string buf_;
};

std::string Encode(std::initializer_list<std::string_view> args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (std::string_view a : args) {
    out += "$" + std::to_string(a.size()) + "\r\n";
    out.append(a);
    out += "\r\n";
  }
  return out;
}

void Migrate(Ctx& c) {
  int64_t timeout = 0;
  int64_t db = 0;
  if (!resp::ParseInt64(c.arg(5), &timeout) || !resp::ParseInt64(c.arg(4), &db)) {
    return c.Error(err::kNotInteger);
  }
  if (timeout <= 0) timeout = 1000;
  // The client's number meets steady_clock (nanoseconds) below: bounded so now + timeout cannot
  // overflow. A day is longer than any transfer should wait.
  timeout = std::min<int64_t>(timeout, 24 * 3600 * 1000);
  bool copy = false;
  bool replace = false;
  std::string user;
  std::string password;
  size_t first_key = 3;
  size_t num_keys = 1;
  for (size_t j = 6; j < c.argc(); ++j) {
    const std::string opt = ToLower(c.arg(j));
    const size_t more = c.argc() - j - 1;
    if (opt == "copy") {
      copy = true;
    } else if (opt == "replace") {
      replace = true;
    } else if (opt == "auth" && more >= 1) {
      password = std::string(c.arg(++j));
    } else if (opt == "auth2" && more >= 2) {
      user = std::string(c.arg(++j));
      password = std::string(c.arg(++j));
    } else if (opt == "keys") {
      if (!c.arg(3).empty()) {
        return c.Error("When using MIGRATE KEYS option, the key argument must be set to the empty string");
      }
      first_key = j + 1;
      num_keys = c.argc() - j - 1;
      break;
    } else {
      return c.Error(err::kSyntax);
    }
  }
  // The keys that exist, with their payloads and remaining TTLs.
  struct Item {
    std::string key;
    std::string payload;
    int64_t ttl_ms;
  };
  std::vector<Item> items;
  const int64_t now = store::NowMs();
  for (size_t i = first_key; i < first_key + num_keys; ++i) {
    std::string payload;
    int64_t expire_at_ms = 0;
    const int found = DumpKey(c, c.arg(i), &payload, &expire_at_ms);
    if (found < 0) return;  // the reply is written
    if (found == 0) continue;
    int64_t ttl = 0;
    if (expire_at_ms != 0) {
      ttl = expire_at_ms - now;
      if (ttl < 1) continue;  // expired meanwhile
    }
    items.push_back(Item{std::string(c.arg(i)), std::move(payload), ttl});
  }
  if (items.empty()) return c.out().SimpleString("NOKEY");

  TargetConnection target;
  if (!target.Connect(std::string(c.arg(1)), std::string(c.arg(2)), timeout)) {
    return c.Error("-IOERR error or timeout connecting to the client");
  }
  std::string request;
  size_t preamble = 0;
  if (!password.empty()) {
    request += user.empty() ? Encode({"AUTH", password}) : Encode({"AUTH", user, password});
    ++preamble;
  }
  const std::string dbs = std::to_string(db);
  request += Encode({"SELECT", dbs});
  ++preamble;
  for (const Item& it : items) {
    const std::string ttl = std::to_string(it.ttl_ms);
    request += replace ? Encode({"RESTORE", it.key, ttl, it.payload, "REPLACE"})
                       : Encode({"RESTORE", it.key, ttl, it.payload});
  }
  if (!target.Send(request, timeout)) return c.Error("-IOERR error or timeout writing to target instance");
  std::string line;
  for (size_t i = 0; i < preamble; ++i) {
    if (!target.ReadLine(&line, timeout)) return c.Error("-IOERR error or timeout reading to target instance");
    if (!line.empty() && line[0] == '-') return c.Error("Target instance replied with error: " + line.substr(1));
  }
  std::string target_error;
  std::vector<std::string> moved;
  for (const Item& it : items) {
    if (!target.ReadLine(&line, timeout)) return c.Error("-IOERR error or timeout reading to target instance");
    if (!line.empty() && line[0] == '-') {
      if (target_error.empty()) target_error = line.substr(1);
    } else {
      moved.push_back(it.key);
    }
  }
  // Delete what the target took (unless COPY), durably, then reply.
  if (!copy) {
    for (const std::string& key : moved) {
      c.batch().Delete(key);
      c.Notify(kNotifyGeneric, "del", key);
    }
  }
  c.Then([target_error](std::span<store::OpResult>, resp::ReplyBuffer& out) {
    if (!target_error.empty()) return out.Error("Target instance replied with error: " + target_error);
    out.Ok();
  });
}

}  // namespace

void RegisterMigrateCommands(std::vector<Command>* t) {
  // Keys: the third argument, or those after KEYS (movable: COMMAND GETKEYS takes the third).
  t->push_back({"migrate", -6, kNoMulti | kMovableKeys | kNoScript, 3, 3, 1, Migrate, "@keyspace @write @slow @dangerous"});
}

}  // namespace keg::server
