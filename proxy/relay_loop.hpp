#pragma once

#include <boost/asio/any_completion_handler.hpp>

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "monitoring/metrics.hpp"
#include "monitoring/relay_stats.hpp"
#include "proxy/asio.hpp"
#include "proxy/closing.hpp"
#include "proxy/session_activity.hpp"

namespace switchyard::proxy {

//! A primary-only session without TLS (TCP, or a Unix-domain socket to the primary), handed to
//! a relay loop: both descriptors (detached from Asio), the bytes each side sent that were read
//! but not relayed yet, and the session's limits and activity, which the loop alone uses until
//! it hands the session back.
struct RelayHandoff {
  int client_fd = -1;
  int primary_fd = -1;
  std::string client_leftover;
  std::string primary_leftover;
  const config::Limits* limits = nullptr;
  SessionActivity* activity = nullptr;
};

//! How a hand-off ended: why, and what each side's socket had not taken yet (the session
//! writes it, bounded, before it closes).
struct RelayEnd {
  Closing closing;
  std::string unsent_to_client;
  std::string unsent_to_primary;
};

//! Relays primary-only sessions without TLS the way pgbouncer does, on a thread of its own:
//! each socket is registered once, edge-triggered, with an epoll set, and a readiness event
//! costs one recv() and one send(). Asio's reactor costs a failed speculative recv() (or an
//! epoll_ctl()) per wait and a handler dispatch per read, which on a busy machine is a fifth
//! of the relay's CPU. The session's coroutine waits while the loop has it; the loop hands it
//! back (its own executor, sockets reattached by the session) when it ends for any reason.
class RelayLoop {
public:
  explicit RelayLoop(monitoring::Metrics& metrics);
  ~RelayLoop(); // stops; sessions still here are dropped with their sockets (shutdown)
  RelayLoop(const RelayLoop&) = delete;
  RelayLoop& operator=(const RelayLoop&) = delete;

  void start();
  void stop();

  //! Relays `handoff` until the session ends; completes with why, on the caller's executor.
  template <class Token> auto relay(RelayHandoff handoff, Token&& token) {
    return asio::async_initiate<Token, void(RelayEnd)>(
        [this](auto handler, RelayHandoff session) {
          asio::any_io_executor executor = asio::get_associated_executor(handler);
          adopt(std::move(session), std::move(executor), Completion(std::move(handler)));
        },
        token, std::move(handoff));
  }

private:
  using Completion = asio::any_completion_handler<void(RelayEnd)>;
  struct Side;
  struct Session;

  void adopt(RelayHandoff handoff, asio::any_io_executor executor, Completion done);
  void run();
  void take_incoming();
  void start_session(Session& session);
  void on_ready(Side& side, uint32_t events);
  void pump(Session& session, Side& from, Side& to);
  void forward(Session& session, Side& from, Side& to, std::string_view chunk);
  void send_or_keep(Session& session, Side& to, std::string_view data);
  bool flush(Session& session, Side& to);
  void end(Session& session, Closing closing);
  void check_idle();
  void reap();

  monitoring::Metrics& metrics_;
  monitoring::RelayStats* stats_ = nullptr; // the loop thread's, set when it starts
  int epoll_fd_ = -1;
  int wake_fd_ = -1; // eventfd: new sessions or stop
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  std::mutex incoming_mutex_;
  std::vector<std::unique_ptr<Session>> incoming_;
  std::vector<std::unique_ptr<Session>> sessions_;
  size_t ended_ = 0;                             // sessions ended since the last reap
  std::array<char, size_t{16} * 1024> buffer_{}; // one read, relayed before the next
};

//! One relay loop per network thread; sessions are spread over them in turn.
class RelayLoops {
public:
  RelayLoops(monitoring::Metrics& metrics, size_t count);
  void start();
  void stop();
  RelayLoop& next();

private:
  std::vector<std::unique_ptr<RelayLoop>> loops_;
  std::atomic<size_t> next_{0};
};

} // namespace switchyard::proxy
