// A minimal HTTP/1.x server for the metrics and health endpoints (metrics-port): GET requests only,
// one request per connection, answered with `Connection: close`.
//
// It runs its own Asio event loop on one thread ("keg-http"), so a scrape never delays a RESP
// client, and it can start before recovery (the health probe answers while keg loads). Limits: a
// request head of at most 8 KiB (431 otherwise), 5 s to send it (then the connection is closed:
// slowloris), 256 connections at a time (more are closed at once). Anything that is not a
// well-formed GET gets 400 (405 for another method) and the connection closes.
//
// Thread: construct, Start and Stop from one thread; the handler runs on the HTTP thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace keg::net {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

/// Answers a GET of `path` (without its query string).
using HttpHandler = std::function<HttpResponse(std::string_view path)>;

class HttpServerImpl;

class HttpServer {
 public:
  /// `bind`: addresses as the RESP port's (a leading '-' marks an optional one).
  HttpServer(std::vector<std::string> bind, uint16_t port, HttpHandler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// Binds and starts the thread. False (with *error) when a bind fails.
  bool Start(std::string* error);
  /// Closes every connection and joins the thread.
  void Stop();
  uint16_t port() const;

 private:
  std::unique_ptr<HttpServerImpl> impl_;
};

/// The reason phrase of a status code ("OK", "Not Found", ...).
std::string_view HttpReason(int status);

}  // namespace keg::net
