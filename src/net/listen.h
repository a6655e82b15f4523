// Listening sockets for a bind list (internal to src/net; uses Asio).
#pragma once

#include <asio.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace keg::net {

/// Opens, binds and listens on every address of `bind` at `port` (0: any free port, the same for
/// all addresses). An address with a leading '-' is optional: a failure to bind it is skipped, as
/// Redis's "-::1". Sets *bound_port. False with Redis's error text in *error otherwise.
bool Listen(asio::io_context& io, const std::vector<std::string>& bind, uint16_t port, int backlog,
            std::vector<std::unique_ptr<asio::ip::tcp::acceptor>>* acceptors, uint16_t* bound_port,
            std::string* error);

/// Opens, binds and listens on the Unix domain socket `path` (a file left there is removed first,
/// as Redis does), with permissions `perm` when not 0 (unixsocketperm). False with the reason in
/// *error otherwise.
bool ListenUnix(asio::io_context& io, const std::string& path, uint32_t perm, int backlog,
                std::unique_ptr<asio::local::stream_protocol::acceptor>* acceptor, std::string* error);

}  // namespace keg::net
