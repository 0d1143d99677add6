#pragma once

#include <string>

#include "protocol/frame.hpp"
#include "protocol/result.hpp"
#include "proxy/stream.hpp"

namespace switchyard::proxy {

//! Reads whole messages from a stream during the handshake phases (startup, auth, backend
//! login), where every message is small and must be decoded. The relay does not use it.
class MessageReader {
public:
  MessageReader(Stream& stream, protocol::Direction direction, uint32_t max_length)
      : stream_(stream), direction_(direction), max_length_(max_length) {}

  //! The next untagged packet (StartupMessage, SSLRequest, ...), length included.
  asio::awaitable<Result<std::string>> read_startup_packet();
  //! The next tagged message; the frame's body stays valid until the next read.
  asio::awaitable<Result<protocol::Frame>> read_frame();
  //! Bytes read past the last message returned; the relay must send these on first.
  std::string take_leftover();
  //! Puts bytes read elsewhere (e.g. past the handshake) in front of what is read next.
  void prepend(std::string_view bytes);
  //! What was wrong with the last malformed message (kNone if none was).
  protocol::FrameFault last_fault() const { return last_fault_; }
  bool has_leftover() const { return consumed_ < size_; }
  //! Whether the next read_frame returns without touching the socket (a whole message, or
  //! a malformed one, is buffered).
  bool has_frame() const {
    return protocol::decode_frame(unread(), direction_, max_length_).status !=
           protocol::DecodeStatus::kNeedMoreData;
  }
  //! Whether a read failed because the peer closed the connection (not a protocol error).
  bool peer_closed() const { return peer_closed_; }

private:
  asio::awaitable<Status> fill();
  std::string_view unread() const {
    return std::string_view(buffer_).substr(consumed_, size_ - consumed_);
  }

  Stream& stream_;
  protocol::Direction direction_;
  uint32_t max_length_;
  std::string buffer_; // [consumed_, size_) holds unread bytes; the rest is spare capacity
  size_t size_ = 0;
  size_t consumed_ = 0;
  bool peer_closed_ = false;
  protocol::FrameFault last_fault_ = protocol::FrameFault::kNone;
};

} // namespace switchyard::proxy
