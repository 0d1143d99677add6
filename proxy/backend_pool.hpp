#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>

#include "proxy/stream.hpp"

namespace switchyard::proxy {

//! Primary connections whose client logged off cleanly, reset (DISCARD ALL) and kept for
//! the next client that logs in with the same login, as pgbouncer's session pool keeps its
//! server connections: that client skips the backend's start-up and login, and gets a
//! backend whose caches and memory are already warm. Shared by all network threads; only
//! plain (non-TLS) sockets are kept, as descriptors, so any thread can take one.
class BackendPool {
public:
  using Clock = std::chrono::steady_clock;

  //! An idle backend connection outside any session.
  struct Parked {
    int fd = -1;
    StreamSocket::protocol_type protocol{0, 0};
    std::string greeting; //!< the ParameterStatus messages its login sent, raw
    uint32_t pid = 0;
    uint32_t key = 0;
    Clock::time_point since{};
  };

  BackendPool() = default;
  BackendPool(const BackendPool&) = delete;
  BackendPool& operator=(const BackendPool&) = delete;
  ~BackendPool();

  //! Keeps `connection` to the server `primary` for logins that make `login_key`; ends the
  //! oldest kept connection when more than `max_idle` would be kept.
  void park(const std::string& primary, const std::string& login_key, Parked connection,
            uint32_t max_idle);
  //! The newest connection kept for `login_key` that is still open and has sent nothing
  //! since (others are closed on the way), or nullopt.
  std::optional<Parked> take(const std::string& login_key);
  //! The oldest open connection kept to `primary`, whatever its login, for the caller to
  //! end: kept connections count against the server's connection limits.
  std::optional<Parked> take_oldest(const std::string& primary);
  //! Ends the connections kept longer than `idle_timeout`, and all when `max_idle` is 0.
  void expire(Clock::duration idle_timeout, uint32_t max_idle);
  size_t size() const;

private:
  struct Entry {
    std::string primary;
    std::string login_key;
    Parked connection;
  };
  mutable std::mutex mutex_;
  std::deque<Entry> idle_; // oldest first; a few hundred at most, so searched in turn
};

} // namespace switchyard::proxy
