// Test support: real server processes (keg-server, redis-server) on free loopback ports, and a raw
// RESP client that reads whole replies, so tests compare exact bytes.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace keg::testing {

inline int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return -1;
  }
  close(fd);
  return ntohs(addr.sin_port);
}

inline int ConnectTo(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

/// A child process listening on `port`; killed (SIGKILL) when destroyed unless stopped before.
class ServerProcess {
 public:
  ServerProcess() = default;
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess() { Kill(); }

  /// Spawns argv and waits until `port` accepts connections (up to 20 s).
  bool Start(std::vector<std::string> args, int port) {
    port_ = port;
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    // fork + exec rather than posix_spawn: the child asks to be killed when the test dies, so a
    // crashed or timed-out test never leaves a server behind holding ctest's output pipe.
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      execvp(argv[0], argv.data());
      _exit(127);
    }
    for (int i = 0; i < 400; ++i) {
      const int fd = ConnectTo(port_);
      if (fd >= 0) {
        close(fd);
        return true;
      }
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        exit_status_ = status;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  /// Sends `sig` and waits for the exit; returns the wait status.
  int Signal(int sig) {
    if (pid_ <= 0) return exit_status_;
    ::kill(pid_, sig);
    return Wait();
  }
  int Wait() {
    if (pid_ <= 0) return exit_status_;
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    exit_status_ = status;
    return status;
  }
  /// True if the process has exited within `ms`.
  bool ExitsWithin(int ms) {
    for (int i = 0; i < ms / 10; ++i) {
      int status = 0;
      if (pid_ <= 0) return true;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        exit_status_ = status;
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  void Kill() { Signal(SIGKILL); }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  int exit_status() const { return exit_status_; }

 private:
  pid_t pid_ = -1;
  int port_ = -1;
  int exit_status_ = 0;
};

/// Length of the first complete RESP2/RESP3 reply in `b` from `pos`, or 0 when incomplete.
inline size_t ReplyLength(const std::string& b, size_t pos) {
  if (pos >= b.size()) return 0;
  const size_t eol = b.find("\r\n", pos);
  if (eol == std::string::npos) return 0;
  const char type = b[pos];
  const std::string head = b.substr(pos + 1, eol - pos - 1);
  size_t end = eol + 2;
  switch (type) {
    case '+': case '-': case ':': case '_': case ',': case '#': case '(':
      return end - pos;
    case '$': case '=': case '!': {
      const long n = std::strtol(head.c_str(), nullptr, 10);
      if (n < 0) return end - pos;
      if (b.size() < end + static_cast<size_t>(n) + 2) return 0;
      return end + static_cast<size_t>(n) + 2 - pos;
    }
    case '*': case '~': case '%': case '>': case '|': {
      long n = std::strtol(head.c_str(), nullptr, 10);
      if (n < 0) return end - pos;
      if (type == '%' || type == '|') n *= 2;
      for (long i = 0; i < n; ++i) {
        const size_t len = ReplyLength(b, end);
        if (len == 0) return 0;
        end += len;
      }
      return end - pos;
    }
    default:
      return 0;
  }
}

/// A raw connection: send bytes, read whole replies.
class RawClient {
 public:
  explicit RawClient(int port) : fd_(ConnectTo(port)) {}
  ~RawClient() {
    if (fd_ >= 0) close(fd_);
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;
  bool ok() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  bool Send(const std::string& bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  /// Reads until `count` whole replies arrived (or the peer closed, or `timeout_ms` passed);
  /// returns their bytes.
  std::string Read(size_t count, int timeout_ms = 5000) {
    std::string out;
    size_t have = 0;
    size_t pos = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (have < count) {
      for (size_t len; have < count && (len = ReplyLength(buf_, pos)) > 0; pos += len) ++have;
      if (have >= count) break;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0 || !Fill(static_cast<int>(left))) break;
    }
    out = buf_.substr(0, pos);
    buf_.erase(0, pos);
    return out;
  }

  /// Sends one command (as a multibulk) and returns its reply.
  std::string Call(const std::vector<std::string>& args) {
    Send(Encode(args));
    return Read(1);
  }

  /// True when the server closed the connection within `timeout_ms` (remaining bytes are kept).
  bool Closed(int timeout_ms = 2000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      if (closed_) return true;
      Fill(50);
    }
    return closed_;
  }
  const std::string& pending() const { return buf_; }

  static std::string Encode(const std::vector<std::string>& args) {
    std::string s = "*" + std::to_string(args.size()) + "\r\n";
    for (const std::string& a : args) s += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
    return s;
  }

 private:
  bool Fill(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return false;
    char tmp[65536];
    const ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
    if (n <= 0) {
      closed_ = true;
      return false;
    }
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }

  int fd_;
  std::string buf_;
  bool closed_ = false;
};

}  // namespace keg::testing
