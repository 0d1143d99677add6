#include "proxy/stream.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>

namespace switchyard::proxy {

Stream::Stream(StreamSocket socket) : socket_(std::move(socket)) {}

namespace {

// One send() or recv() that never blocks. MSG_DONTWAIT per call rather than O_NONBLOCK on the
// socket, which would make io_uring hand EAGAIN back instead of waiting.
size_t send_now(StreamSocket& socket, const char* data, size_t size, error_code& ec) {
  ssize_t n = ::send(socket.native_handle(), data, size, MSG_DONTWAIT | MSG_NOSIGNAL);
  if (n >= 0) return static_cast<size_t>(n);
  ec = error_code(errno == EWOULDBLOCK ? EAGAIN : errno, boost::system::system_category());
  return 0;
}

size_t recv_now(StreamSocket& socket, char* data, size_t size, error_code& ec) {
  ssize_t n = ::recv(socket.native_handle(), data, size, MSG_DONTWAIT);
  if (n > 0) return static_cast<size_t>(n);
  ec = n == 0 ? asio::error::eof : error_code(errno, boost::system::system_category());
  return 0;
}

} // namespace

asio::awaitable<error_code> Stream::start_tls(ssl::context& context,
                                              ssl::stream_base::handshake_type type,
                                              std::string_view verify_host) {
  tls_ = std::make_unique<ssl::stream<StreamSocket>>(std::move(socket_), context);
  if (!verify_host.empty()) {
    std::string host(verify_host);
    SSL_set_tlsext_host_name(tls_->native_handle(), host.c_str());
    tls_->set_verify_callback(ssl::host_name_verification(host));
  }
  auto [ec] = co_await tls_->async_handshake(type, use_tuple);
  co_return ec;
}

asio::awaitable<std::tuple<error_code, size_t>> Stream::read_some(asio::mutable_buffer buffer) {
  if (tls_) co_return co_await tls_->async_read_some(buffer, use_tuple);
  co_return co_await socket_.async_read_some(buffer, use_tuple);
}

size_t Stream::read_available(asio::mutable_buffer buffer, error_code& ec) {
  if (tls_) return 0;
  return recv_now(socket_, static_cast<char*>(buffer.data()), buffer.size(), ec);
}

bool Stream::peer_closed() {
  pollfd watched{socket().native_handle(), POLLRDHUP, 0};
  if (::poll(&watched, 1, 0) <= 0) return false;
  return (watched.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

asio::awaitable<error_code> Stream::write_all(std::string_view data) {
  if (tls_) {
    auto [ec, n] =
        co_await asio::async_write(*tls_, asio::buffer(data.data(), data.size()), use_tuple);
    co_return ec;
  }
  // One send() usually takes it all; fall back to an async write for the rest.
  error_code ec;
  size_t n = send_now(socket_, data.data(), data.size(), ec);
  if (!ec && n == data.size()) co_return error_code{};
  if (ec && ec.value() != EAGAIN) co_return ec;
  data.remove_prefix(n);
  auto [wec, written] =
      co_await asio::async_write(socket_, asio::buffer(data.data(), data.size()), use_tuple);
  co_return wec;
}

int Stream::detach() {
  error_code ec;
  detached_protocol_ = socket_.local_endpoint(ec).protocol();
  detached_fd_ = socket_.release();
  return detached_fd_;
}

error_code Stream::reattach() {
  error_code ec;
  socket_.assign(*detached_protocol_, detached_fd_, ec);
  // Asio's reactor refused the descriptor and so did not take it: close it, not leak it.
  if (ec) ::close(detached_fd_);
  detached_fd_ = -1;
  return ec;
}

asio::awaitable<void> Stream::write_last_words(std::string_view data) {
  asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::seconds(1));
  co_await (write_all(data) || timer.async_wait(use_tuple));
}

void Stream::close() {
  error_code ignored;
  socket().shutdown(StreamSocket::shutdown_both, ignored);
  socket().close(ignored);
}

} // namespace switchyard::proxy
