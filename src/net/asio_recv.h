// <asio.hpp>, with a receive that tells Asio when it drained the socket. Every translation unit
// that receives from a socket with Asio includes this header instead of <asio.hpp>, so that they
// all see one definition of the specialization below.
//
// Asio (1.22) registers a socket edge-triggered and, for a receive started while none is pending,
// first tries it at once ("speculative") unless the descriptor's last receive said the socket was
// exhausted — which its stream receive says only at end of file. So every receive that follows a
// short one (a request read whole) cost a recv that failed with EAGAIN: an unpipelined request
// took two recv calls where Redis takes one read. A short read alone does not prove the socket
// drained, though: a FIN that came with the data (a client that sends and half-closes) makes no
// new edge, and a receive that waited for one would never see the end of file. So the receive asks
// the kernel: with TCP_INQ set on the socket (keg's client sockets, net/server.cc), recvmsg reports
// the bytes left after the read — and 1 once a FIN came. Nothing left: done_and_exhausted, and Asio
// waits for the next edge (it tries at once again after any edge, pending receive or not, so data
// that came meanwhile is read). Anything left, or no report (a Unix socket, a socket without
// TCP_INQ): done, as Asio's own.
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <asio.hpp>
#include <cerrno>
#include <cstring>

namespace asio::detail {

template <>
inline reactor_op::status reactive_socket_recv_op_base<asio::mutable_buffer>::do_perform(reactor_op* base) {
  auto* o = static_cast<reactive_socket_recv_op_base*>(base);
  const bool stream = (o->state_ & socket_ops::stream_oriented) != 0;
  if (!stream) {  // Asio's own
    return socket_ops::non_blocking_recv1(o->socket_, o->buffers_.data(), o->buffers_.size(), o->flags_, false,
                                          o->ec_, o->bytes_transferred_)
               ? done
               : not_done;
  }
  for (;;) {
    iovec iov{o->buffers_.data(), o->buffers_.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    const ssize_t n = ::recvmsg(o->socket_, &msg, o->flags_);
    if (n < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) return not_done;
      o->ec_ = asio::error_code(err, asio::error::get_system_category());
      o->bytes_transferred_ = 0;
      return done;
    }
    if (n == 0) {  // (as Asio's: end of file, and nothing more will come)
      o->ec_ = asio::error::eof;
      o->bytes_transferred_ = 0;
      return done_and_exhausted;
    }
    o->ec_ = asio::error_code();
    o->bytes_transferred_ = static_cast<std::size_t>(n);
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_TCP && c->cmsg_type == TCP_CM_INQ) {
        int left = 0;
        std::memcpy(&left, CMSG_DATA(c), sizeof(left));
        return left == 0 ? done_and_exhausted : done;
      }
    }
    return done;
  }
}

}  // namespace asio::detail
