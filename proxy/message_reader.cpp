#include "proxy/message_reader.hpp"

#include "protocol/startup.hpp"

namespace switchyard::proxy {

asio::awaitable<Status> MessageReader::fill() {
  if (consumed_ > 0) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  constexpr size_t kReadSize = 16384;
  size_t old_size = buffer_.size();
  buffer_.resize(old_size + kReadSize);
  auto [ec, n] = co_await stream_.read_some(asio::buffer(buffer_.data() + old_size, kReadSize));
  buffer_.resize(old_size + n);
  if (ec) {
    peer_closed_ = ec == asio::error::eof || ec == asio::error::connection_reset;
    co_return Error{peer_closed_ ? "connection closed by peer" : ec.message()};
  }
  co_return Ok{};
}

asio::awaitable<Result<std::string>> MessageReader::read_startup_packet() {
  while (buffer_.size() - consumed_ < 4) {
    if (auto s = co_await fill(); !s) co_return Error{s.error()};
  }
  auto length = protocol::startup_packet_length(std::string_view(buffer_).substr(consumed_));
  if (!length) co_return Error{length.error()};
  while (buffer_.size() - consumed_ < *length) {
    if (auto s = co_await fill(); !s) co_return Error{s.error()};
  }
  std::string packet = buffer_.substr(consumed_, *length);
  consumed_ += *length;
  co_return packet;
}

asio::awaitable<Result<protocol::Frame>> MessageReader::read_frame() {
  while (true) {
    auto result = protocol::decode_frame(std::string_view(buffer_).substr(consumed_), direction_,
                                         max_length_);
    if (result.status == protocol::DecodeStatus::kMessage) {
      consumed_ += result.consumed;
      co_return result.frame;
    }
    if (result.status == protocol::DecodeStatus::kMalformed) {
      last_fault_ = result.malformation.fault;
      co_return Error{result.malformation.reason};
    }
    if (auto s = co_await fill(); !s) co_return Error{s.error()};
  }
}

std::string MessageReader::take_leftover() {
  std::string rest = buffer_.substr(consumed_);
  buffer_.clear();
  consumed_ = 0;
  return rest;
}

} // namespace switchyard::proxy
