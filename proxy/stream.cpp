#include "proxy/stream.hpp"

#include <string>

namespace switchyard::proxy {

asio::awaitable<error_code> Stream::start_tls(ssl::context& context,
                                              ssl::stream_base::handshake_type type,
                                              std::string_view verify_host) {
  tls_ = std::make_unique<ssl::stream<tcp::socket>>(std::move(socket_), context);
  if (!verify_host.empty()) {
    std::string host(verify_host);
    SSL_set_tlsext_host_name(tls_->native_handle(), host.c_str());
    tls_->set_verify_callback(ssl::host_name_verification(host));
  }
  auto [ec] = co_await tls_->async_handshake(type, use_tuple);
  co_return ec;
}

asio::awaitable<error_code> Stream::wait_readable() {
  if (tls_) co_return error_code{};
  auto [ec] = co_await socket_.async_wait(tcp::socket::wait_read, use_tuple);
  co_return ec;
}

asio::awaitable<std::tuple<error_code, size_t>> Stream::read_some(asio::mutable_buffer buffer) {
  if (tls_) co_return co_await tls_->async_read_some(buffer, use_tuple);
  co_return co_await socket_.async_read_some(buffer, use_tuple);
}

asio::awaitable<error_code> Stream::write_all(std::string_view data) {
  auto buffer = asio::buffer(data.data(), data.size());
  if (tls_) {
    auto [ec, n] = co_await asio::async_write(*tls_, buffer, use_tuple);
    co_return ec;
  }
  auto [ec, n] = co_await asio::async_write(socket_, buffer, use_tuple);
  co_return ec;
}

void Stream::close() {
  error_code ignored;
  socket().shutdown(tcp::socket::shutdown_both, ignored);
  socket().close(ignored);
}

} // namespace switchyard::proxy
