#include "proxy/chunk_reader.hpp"

#include <cstring>

namespace switchyard::proxy {

asio::awaitable<std::tuple<error_code, std::string_view>> ChunkReader::next() {
  if (stream_.tls()) {
    if (!large_) large_.emplace();
    auto [ec, n] = co_await stream_.read_some(asio::buffer(large_->data(), RelayBuffer::kSize));
    co_return std::tuple{ec, std::string_view(large_->data(), n)};
  }
  large_.reset(); // back to the pool before waiting
  auto [ec, n] = co_await stream_.read_some(asio::buffer(inline_.data(), inline_.size()));
  if (ec || n < inline_.size()) co_return std::tuple{ec, std::string_view(inline_.data(), n)};
  // The inline buffer filled up: more is likely waiting, so continue in a large buffer.
  large_.emplace();
  std::memcpy(large_->data(), inline_.data(), n);
  size_t total = n;
  while (total < RelayBuffer::kSize) {
    error_code more_ec;
    size_t more = stream_.read_available(
        asio::buffer(large_->data() + total, RelayBuffer::kSize - total), more_ec);
    if (more == 0) break; // nothing more now; an error shows up on the next read
    total += more;
  }
  co_return std::tuple{error_code{}, std::string_view(large_->data(), total)};
}

} // namespace switchyard::proxy
