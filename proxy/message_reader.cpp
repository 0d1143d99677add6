#include "proxy/message_reader.hpp"

#include <cstring>

#include "protocol/startup.hpp"

namespace switchyard::proxy {

// Reads into spare capacity, so a read costs no zero-filling and unread bytes move only when
// the buffer must make room.
asio::awaitable<Status> MessageReader::fill() {
  constexpr size_t kReadSize = 16384;
  if (consumed_ == size_) {
    consumed_ = size_ = 0;
  } else if (buffer_.size() - size_ < kReadSize && consumed_ > 0) {
    std::memmove(buffer_.data(), buffer_.data() + consumed_, size_ - consumed_);
    size_ -= consumed_;
    consumed_ = 0;
  }
  if (buffer_.size() - size_ < kReadSize) buffer_.resize(size_ + kReadSize);
  auto [ec, n] = co_await stream_.read_some(asio::buffer(buffer_.data() + size_, kReadSize));
  size_ += n;
  if (ec) {
    peer_closed_ = ec == asio::error::eof || ec == asio::error::connection_reset;
    co_return Error{peer_closed_ ? "connection closed by peer" : ec.message()};
  }
  co_return Ok{};
}

asio::awaitable<Result<std::string>> MessageReader::read_startup_packet() {
  while (size_ - consumed_ < 4) {
    if (auto s = co_await fill(); !s) co_return Error{s.error()};
  }
  auto length = protocol::startup_packet_length(unread());
  if (!length) co_return Error{length.error()};
  while (size_ - consumed_ < *length) {
    if (auto s = co_await fill(); !s) co_return Error{s.error()};
  }
  std::string packet = buffer_.substr(consumed_, *length);
  consumed_ += *length;
  co_return packet;
}

asio::awaitable<Result<protocol::Frame>> MessageReader::read_frame() {
  while (true) {
    auto result = protocol::decode_frame(unread(), direction_, max_length_);
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
  std::string rest(unread());
  consumed_ = size_ = 0;
  return rest;
}

void MessageReader::prepend(std::string_view bytes) {
  std::string rest = std::string(bytes) + std::string(unread());
  buffer_ = std::move(rest);
  size_ = buffer_.size();
  consumed_ = 0;
}

} // namespace switchyard::proxy
