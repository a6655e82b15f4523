#include "net/http_server.h"

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <array>
#include <atomic>
#include <chrono>
#include <future>
#include <list>
#include <spdlog/spdlog.h>
#include <thread>

#include "net/asio_recv.h"  // (before any receive: see there)
#include "net/listen.h"

namespace keg::net {
namespace {

constexpr size_t kMaxHead = 8192;
constexpr auto kHeadTimeout = std::chrono::seconds(5);
constexpr size_t kMaxConnections = 256;

// Checks the request line "GET /path HTTP/1.x"; returns the status to answer with (200 when it is
// a well-formed GET) and the path without its query string.
int ParseRequestLine(std::string_view line, std::string_view* path) {
  const size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0) return 400;
  const size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) return 400;
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return 400;
  if (target.empty() || target[0] != '/') return 400;
  for (char ch : line) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) return 400;
  }
  for (char ch : method) {
    if (ch < 'A' || ch > 'Z') return 400;
  }
  if (method != "GET") return 405;
  *path = target.substr(0, target.find('?'));
  return 200;
}

}  // namespace

std::string_view HttpReason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

class HttpConnection;

class HttpServerImpl {
 public:
  HttpServerImpl(std::vector<std::string> bind, uint16_t port, HttpHandler handler)
      : bind_(std::move(bind)), port_(port), handler_(std::move(handler)) {}

  bool Start(std::string* error) {
    if (!Listen(io_, bind_, port_, 128, &acceptors_, &bound_port_, error)) return false;
    for (auto& a : acceptors_) Accept(a.get());
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "keg-http");
      // A lower CPU priority than the RESP threads (nice +10 for this thread alone): a flood of
      // scrapes or junk on the metrics port takes only the CPU they leave idle. Best effort.
      if (setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10) != 0) {
        spdlog::debug("keg-http: setpriority: {}", std::strerror(errno));
      }
      auto guard = asio::make_work_guard(io_);
      io_.run();
    });
    return true;
  }

  void Stop() {
    if (!thread_.joinable()) return;
    // Close the acceptors and connections on the HTTP thread, then stop it.
    std::promise<void> closed;
    asio::post(io_, [this, &closed] {
      for (auto& a : acceptors_) {
        asio::error_code ec;
        a->close(ec);
      }
      CloseAll();
      closed.set_value();
    });
    closed.get_future().wait();
    io_.stop();
    thread_.join();
  }

  uint16_t port() const { return bound_port_; }
  const HttpHandler& handler() const { return handler_; }
  asio::io_context& io() { return io_; }
  void Forget(HttpConnection* c);

 private:
  void Accept(asio::ip::tcp::acceptor* acceptor);
  void CloseAll();

  std::vector<std::string> bind_;
  uint16_t port_;
  uint16_t bound_port_ = 0;
  HttpHandler handler_;
  asio::io_context io_{1};
  std::vector<std::unique_ptr<asio::ip::tcp::acceptor>> acceptors_;
  std::list<std::pair<HttpConnection*, std::weak_ptr<HttpConnection>>> connections_;  // HTTP thread only
  size_t live_ = 0;
  std::thread thread_;
};

// One request: read the head (bounded in size and time), answer, close.
class HttpConnection : public std::enable_shared_from_this<HttpConnection> {
 public:
  HttpConnection(HttpServerImpl* server, asio::ip::tcp::socket socket)
      : server_(server), socket_(std::move(socket)), timer_(server->io()) {}

  void Start() {
    timer_.expires_after(kHeadTimeout);
    timer_.async_wait([self = shared_from_this()](const asio::error_code& ec) {
      if (!ec) self->Close();  // the head did not come in time
    });
    Read();
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    asio::error_code ec;
    timer_.cancel();
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    server_->Forget(this);
  }

 private:
  void Read() {
    socket_.async_read_some(asio::buffer(chunk_),
                            [self = shared_from_this()](const asio::error_code& ec, size_t n) {
                              if (ec || self->closed_) return self->Close();
                              self->head_.append(self->chunk_.data(), n);
                              self->OnData();
                            });
  }

  void OnData() {
    const size_t end = head_.find("\r\n\r\n");
    if (end == std::string::npos) {
      if (head_.size() > kMaxHead) return Respond(HttpResponse{431, "text/plain; charset=utf-8", "request head too large\n"});
      return Read();
    }
    if (end > kMaxHead) return Respond(HttpResponse{431, "text/plain; charset=utf-8", "request head too large\n"});
    std::string_view path;
    const std::string_view line = std::string_view(head_).substr(0, head_.find("\r\n"));
    const int status = ParseRequestLine(line, &path);
    if (status != 200) return Respond(HttpResponse{status, "text/plain; charset=utf-8", std::string(HttpReason(status)) + "\n"});
    HttpResponse r;
    try {
      r = server_->handler()(path);
    } catch (const std::exception& e) {
      spdlog::error("metrics endpoint: {}", e.what());
      r = HttpResponse{500, "text/plain; charset=utf-8", "internal error\n"};
    }
    Respond(std::move(r));
  }

  void Respond(HttpResponse r) {
    timer_.cancel();
    out_ = "HTTP/1.1 " + std::to_string(r.status) + " " + std::string(HttpReason(r.status)) +
           "\r\nContent-Type: " + r.content_type + "\r\nContent-Length: " + std::to_string(r.body.size()) +
           "\r\nConnection: close\r\n\r\n" + r.body;
    // The write has the same time budget as the head: a client that does not read is dropped.
    timer_.expires_after(kHeadTimeout);
    timer_.async_wait([self = shared_from_this()](const asio::error_code& ec) {
      if (!ec) self->Close();
    });
    asio::async_write(socket_, asio::buffer(out_), [self = shared_from_this()](const asio::error_code&, size_t) {
      self->Close();
    });
  }

  HttpServerImpl* server_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  std::array<char, 2048> chunk_{};
  std::string head_;
  std::string out_;
  bool closed_ = false;
};

void HttpServerImpl::Accept(asio::ip::tcp::acceptor* acceptor) {
  acceptor->async_accept([this, acceptor](const asio::error_code& ec, asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) {
      if (live_ >= kMaxConnections) {
        asio::error_code ignored;
        socket.close(ignored);  // over the limit: refused at once
      } else {
        auto c = std::make_shared<HttpConnection>(this, std::move(socket));
        connections_.emplace_back(c.get(), c);
        ++live_;
        c->Start();
      }
    }
    Accept(acceptor);
  });
}

void HttpServerImpl::Forget(HttpConnection* c) {
  for (auto it = connections_.begin(); it != connections_.end(); ++it) {
    if (it->first == c) {
      connections_.erase(it);
      --live_;
      return;
    }
  }
}

void HttpServerImpl::CloseAll() {
  std::vector<std::shared_ptr<HttpConnection>> live;
  for (auto& [raw, weak] : connections_) {
    if (auto c = weak.lock()) live.push_back(std::move(c));
  }
  for (auto& c : live) c->Close();
}

HttpServer::HttpServer(std::vector<std::string> bind, uint16_t port, HttpHandler handler)
    : impl_(std::make_unique<HttpServerImpl>(std::move(bind), port, std::move(handler))) {}
HttpServer::~HttpServer() { impl_->Stop(); }
bool HttpServer::Start(std::string* error) { return impl_->Start(error); }
void HttpServer::Stop() { impl_->Stop(); }
uint16_t HttpServer::port() const { return impl_->port(); }

}  // namespace keg::net
