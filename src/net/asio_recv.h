// <asio.hpp>, with a receive that tells Asio when it drained the socket. Every translation unit
// that receives from a socket with Asio includes this header instead of <asio.hpp>, so that they
// all see one definition of the specialization below.
//
// Asio (1.22) registers a socket edge-triggered and, for a receive started while none is pending,
// first tries it at once ("speculative") unless the descriptor's last receive said the socket was
// exhausted — which its stream receive says only at end of file. So every receive that follows a
// short one (a request read whole, the socket drained) cost a recv that failed with EAGAIN: an
// unpipelined request took two recv calls where Redis takes one read. A stream receive that reads
// less than its buffer has drained the socket: reported as done_and_exhausted, Asio waits for the
// next edge instead (it tries at once again as soon as an edge arrives, pending receive or not, so
// data that came meanwhile is not missed).
#pragma once

#include <asio.hpp>

namespace asio::detail {

template <>
inline reactor_op::status reactive_socket_recv_op_base<asio::mutable_buffer>::do_perform(reactor_op* base) {
  auto* o = static_cast<reactive_socket_recv_op_base*>(base);
  const std::size_t size = o->buffers_.size();
  const bool stream = (o->state_ & socket_ops::stream_oriented) != 0;
  status result = socket_ops::non_blocking_recv1(o->socket_, o->buffers_.data(), size, o->flags_, stream, o->ec_,
                                                 o->bytes_transferred_)
                      ? done
                      : not_done;
  if (result == done && stream && o->bytes_transferred_ < size) result = done_and_exhausted;
  return result;
}

}  // namespace asio::detail
