// pubsub_bench: messages delivered per second and publish-to-delivery latency, against any server
// that speaks Redis's protocol (keg-server or redis-server). tools/bench/side_by_side.py runs it
// against both, alternately.
//
//   pubsub_bench --port P [--subscribers 50] [--publishers 1] [--pipeline 16] [--size 32]
//                [--seconds 5] [--rate 0]
//
// Subscribers SUBSCRIBE to one channel; publishers PUBLISH to it, each keeping --pipeline
// PUBLISHes in flight (--rate N: instead, N messages per second in all, one at a time, for a
// latency measurement at a load the server is not saturated by). Every message carries its send
// time (CLOCK_MONOTONIC); the subscribers' thread reads all subscriber sockets through epoll and
// records the delay of each delivery. Prints one line of key=value pairs:
//   published=<msgs/s> delivered=<msgs/s> p50_us= p99_us= p999_us= max_us=
// Thread: one publisher thread per publisher connection, one thread for all subscribers.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

int64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "pubsub_bench: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) Die("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) Die("connect");
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

void SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      Die("send");
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

std::string Command(std::initializer_list<std::string_view> args) {
  std::string s = "*" + std::to_string(args.size()) + "\r\n";
  for (std::string_view a : args) {
    s += "$" + std::to_string(a.size()) + "\r\n";
    s.append(a);
    s += "\r\n";
  }
  return s;
}

// Counts top-level RESP replies (integers, simple strings, errors, arrays of bulks) in a stream,
// handing each bulk of a 3-element array (a message) to `on_message`.
class Reader {
 public:
  // Feeds bytes; calls on_reply(payload of the 3rd bulk of an array, or empty) per complete reply.
  template <typename F>
  void Feed(const char* data, size_t n, F&& on_reply) {
    buf_.append(data, n);
    size_t pos = 0;
    for (;;) {
      const size_t end = Parse(pos, on_reply);
      if (end == 0) break;
      pos = end;
    }
    buf_.erase(0, pos);
  }

 private:
  // Parses one reply at `pos`; returns the position after it, or 0 when incomplete.
  template <typename F>
  size_t Parse(size_t pos, F& on_reply) {
    const size_t eol = buf_.find("\r\n", pos);
    if (eol == std::string::npos) return 0;
    const char type = buf_[pos];
    if (type == ':' || type == '+' || type == '-') {
      on_reply(std::string_view());
      return eol + 2;
    }
    if (type != '*' && type != '>') {
      std::fprintf(stderr, "pubsub_bench: unexpected reply type '%c'\n", type);
      std::exit(1);
    }
    const long count = std::strtol(buf_.c_str() + pos + 1, nullptr, 10);
    size_t p = eol + 2;
    std::string_view last;
    for (long i = 0; i < count; ++i) {
      const size_t line = buf_.find("\r\n", p);
      if (line == std::string::npos) return 0;
      if (buf_[p] == ':') {
        p = line + 2;
        continue;
      }
      const long len = std::strtol(buf_.c_str() + p + 1, nullptr, 10);
      if (len < 0) {
        p = line + 2;
        continue;
      }
      const size_t body = line + 2;
      if (buf_.size() < body + static_cast<size_t>(len) + 2) return 0;
      last = std::string_view(buf_).substr(body, static_cast<size_t>(len));
      p = body + static_cast<size_t>(len) + 2;
    }
    on_reply(count == 3 ? last : std::string_view());
    return p;
  }

  std::string buf_;
};

struct Options {
  int port = 6379;
  int subscribers = 50;
  int publishers = 1;
  int pipeline = 16;
  int size = 32;
  double seconds = 5;
  double rate = 0;  // messages per second in all; 0: as fast as the pipeline allows
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--port") o.port = std::atoi(v);
    else if (k == "--subscribers") o.subscribers = std::atoi(v);
    else if (k == "--publishers") o.publishers = std::atoi(v);
    else if (k == "--pipeline") o.pipeline = std::max(1, std::atoi(v));
    else if (k == "--size") o.size = std::max(24, std::atoi(v));
    else if (k == "--seconds") o.seconds = std::atof(v);
    else if (k == "--rate") o.rate = std::atof(v);
    else {
      std::fprintf(stderr, "pubsub_bench: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  const std::string channel = "bench:channel";
  rlimit files{};  // 10,000 subscribers need as many descriptors
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }

  // Subscribers: connect and subscribe, then wait until every confirmation is in.
  const int ep = epoll_create1(0);
  std::vector<int> subs;
  std::vector<Reader> readers(static_cast<size_t>(o.subscribers));
  for (int i = 0; i < o.subscribers; ++i) {
    const int fd = Connect(o.port);
    SendAll(fd, Command({"SUBSCRIBE", channel}));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<uint32_t>(i);
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) Die("epoll_ctl");
    subs.push_back(fd);
  }
  std::vector<int64_t> delays;  // ns, one per delivery (subscriber thread only)
  delays.reserve(1 << 22);
  std::atomic<uint64_t> delivered{0};
  std::atomic<bool> counting{false};
  std::atomic<bool> stop{false};
  std::atomic<int> confirmed{0};
  std::thread sub_thread([&] {
    std::vector<epoll_event> events(256);
    std::vector<char> buf(1 << 16);
    while (!stop.load(std::memory_order_relaxed)) {
      const int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 50);
      for (int e = 0; e < n; ++e) {
        const uint32_t i = events[static_cast<size_t>(e)].data.u32;
        for (;;) {
          const ssize_t got = recv(subs[i], buf.data(), buf.size(), MSG_DONTWAIT);
          if (got <= 0) break;
          const int64_t now = NowNs();
          readers[i].Feed(buf.data(), static_cast<size_t>(got), [&](std::string_view payload) {
            if (payload.size() >= 16 && payload[0] == 'T') {
              if (counting.load(std::memory_order_relaxed)) {
                delivered.fetch_add(1, std::memory_order_relaxed);
                int64_t sent = 0;
                std::memcpy(&sent, payload.data() + 1, sizeof(sent));
                if (delays.size() < delays.capacity()) delays.push_back(now - sent);
              }
            } else {
              confirmed.fetch_add(1, std::memory_order_relaxed);
            }
          });
          if (static_cast<size_t>(got) < buf.size()) break;
        }
      }
    }
  });
  const int64_t wait_until = NowNs() + 30'000'000'000;
  while (confirmed.load() < o.subscribers && NowNs() < wait_until) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  if (confirmed.load() < o.subscribers) {
    std::fprintf(stderr, "pubsub_bench: only %d of %d subscriptions confirmed\n", confirmed.load(), o.subscribers);
    return 1;
  }

  // Publishers.
  std::atomic<uint64_t> published{0};
  const double per_publisher_rate = o.rate / o.publishers;
  std::vector<std::thread> pubs;
  for (int p = 0; p < o.publishers; ++p) {
    pubs.emplace_back([&] {
      const int fd = Connect(o.port);
      Reader reader;
      std::vector<char> buf(1 << 16);
      std::string payload(static_cast<size_t>(o.size), 'x');
      payload[0] = 'T';
      const std::string head = "*3\r\n$7\r\nPUBLISH\r\n$" + std::to_string(channel.size()) + "\r\n" + channel +
                               "\r\n$" + std::to_string(payload.size()) + "\r\n";
      auto message = [&](std::string* out) {
        const int64_t t = NowNs();
        std::memcpy(payload.data() + 1, &t, sizeof(t));
        out->append(head);
        out->append(payload);
        out->append("\r\n");
      };
      int64_t inflight = 0;
      uint64_t sent = 0;
      const int64_t start = NowNs();
      std::string out;
      while (!stop.load(std::memory_order_relaxed)) {
        out.clear();
        if (per_publisher_rate > 0) {
          const int64_t due = start + static_cast<int64_t>(static_cast<double>(sent) * 1e9 / per_publisher_rate);
          while (NowNs() < due && !stop.load(std::memory_order_relaxed)) std::this_thread::sleep_for(std::chrono::microseconds(200));
          message(&out);
          inflight = 1;
        } else {
          const int64_t room = o.pipeline - inflight;
          for (int64_t k = 0; k < room; ++k) message(&out);
          inflight += room;
        }
        SendAll(fd, out);
        sent += per_publisher_rate > 0 ? 1 : 0;
        // Read replies until at most half the window is in flight (one at a time with --rate).
        const int64_t target = per_publisher_rate > 0 ? 0 : o.pipeline / 2;
        while (inflight > target) {
          const ssize_t got = recv(fd, buf.data(), buf.size(), 0);
          if (got <= 0) Die("publisher recv");
          reader.Feed(buf.data(), static_cast<size_t>(got), [&](std::string_view) {
            --inflight;
            if (counting.load(std::memory_order_relaxed)) published.fetch_add(1, std::memory_order_relaxed);
          });
        }
      }
      close(fd);
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // warm up
  counting.store(true);
  const int64_t t0 = NowNs();
  std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
  counting.store(false);
  const double elapsed = static_cast<double>(NowNs() - t0) / 1e9;
  stop.store(true);
  for (auto& t : pubs) t.join();
  sub_thread.join();
  for (int fd : subs) close(fd);
  std::sort(delays.begin(), delays.end());
  auto pct = [&](double q) -> double {
    if (delays.empty()) return 0;
    const size_t i = std::min(delays.size() - 1, static_cast<size_t>(q * static_cast<double>(delays.size())));
    return static_cast<double>(delays[i]) / 1000.0;
  };
  std::printf("published=%.0f delivered=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f\n",
              static_cast<double>(published.load()) / elapsed, static_cast<double>(delivered.load()) / elapsed,
              pct(0.50), pct(0.99), pct(0.999), delays.empty() ? 0.0 : static_cast<double>(delays.back()) / 1000.0);
  return 0;
}
