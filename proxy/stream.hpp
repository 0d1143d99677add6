#pragma once

#include <memory>
#include <optional>
#include <string_view>

#include "proxy/asio.hpp"

namespace switchyard::proxy {

//! The socket under a Stream: TCP for clients and PostgreSQL backends, a local socket pair
//! for the in-process SQLite engine.
using StreamSocket = asio::generic::stream_protocol::socket;

//! A connection that starts in plain text and may switch to TLS after an SSLRequest.
class Stream {
public:
  explicit Stream(StreamSocket socket);

  bool tls() const { return tls_ != nullptr; }
  StreamSocket& socket() { return tls_ ? tls_->next_layer() : socket_; }

  //! Runs the TLS handshake as `type` (server for clients, client for backends). A non-empty
  //! `verify_host` checks the peer certificate names that host (verify-full) and sends SNI.
  asio::awaitable<error_code> start_tls(ssl::context& context,
                                        ssl::stream_base::handshake_type type,
                                        std::string_view verify_host = {});

  //! Reads what is available, at least one byte, waiting if needed.
  asio::awaitable<std::tuple<error_code, size_t>> read_some(asio::mutable_buffer buffer);
  //! Reads what is available now without waiting (no TLS); 0 when nothing is or on TLS.
  size_t read_available(asio::mutable_buffer buffer, error_code& ec);
  //! Whether the peer has closed the connection (its end of stream is waiting, perhaps behind
  //! the last data it sent, or the socket failed); checked at once, nothing is read.
  bool peer_closed();
  //! Writes all of `data`.
  asio::awaitable<error_code> write_all(std::string_view data);
  //! Writes `data` for at most a second, errors ignored: last words (a Terminate, an error)
  //! to a peer that may have stopped reading must not hold up the close that follows.
  asio::awaitable<void> write_last_words(std::string_view data);
  //! Shuts TLS down politely (bounded) and closes the socket; errors are ignored.
  void close();

  //! Hands the plain socket's descriptor to another event loop (the relay loop): Asio stops
  //! watching it, and the stream must not be used until reattach().
  int detach();
  //! Takes back the descriptor detach() handed out. Should Asio refuse it (its epoll set
  //! cannot take another descriptor), the descriptor is closed and the stream stays closed.
  [[nodiscard]] error_code reattach();

private:
  StreamSocket socket_;
  std::unique_ptr<ssl::stream<StreamSocket>> tls_;
  std::optional<StreamSocket::protocol_type> detached_protocol_;
  int detached_fd_ = -1;
};

} // namespace switchyard::proxy
