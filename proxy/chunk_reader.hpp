#pragma once

#include <array>
#include <optional>
#include <string_view>
#include <tuple>

#include "proxy/relay_buffer.hpp"
#include "proxy/stream.hpp"

namespace switchyard::proxy {

//! Reads the relay's next chunk from one side of a session. Small reads land in a 512-byte
//! inline buffer, so an idle session holds no large buffer; a read that fills it goes on into
//! a pooled 16 KiB buffer while more is available. Waiting goes through async_read_some,
//! which after a draining read re-waits with no syscall (async_wait would re-arm epoll with
//! epoll_ctl every time). TLS streams always use the large buffer.
class ChunkReader {
public:
  explicit ChunkReader(Stream& stream) : stream_(stream) {}

  //! The next bytes from the peer, valid until the next call; an error at end of stream.
  asio::awaitable<std::tuple<error_code, std::string_view>> next();

private:
  static constexpr size_t kInlineSize = 512;

  Stream& stream_;
  std::array<char, kInlineSize> inline_{};
  std::optional<RelayBuffer> large_;
};

} // namespace switchyard::proxy
