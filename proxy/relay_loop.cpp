#include "proxy/relay_loop.hpp"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <limits>
#include <stdexcept>
#include <utility>

#include "protocol/frame.hpp"
#include "proxy/relay_accounting.hpp"

namespace switchyard::proxy {

using monitoring::CloseReason;
using Clock = SessionActivity::Clock;
namespace sqlstate = protocol::sqlstate;

namespace {

constexpr auto kTick = std::chrono::milliseconds(100); // stats flush and idle checks
constexpr int kMaxEvents = 64;

error_code last_error() {
  return error_code(errno, boost::system::system_category());
}

} // namespace

struct RelayLoop::Side {
  Side(Session* owner, int descriptor, bool is_client)
      : session(owner), fd(descriptor), client(is_client) {}

  Session* session;
  int fd;
  bool client;
  bool readable = true; // may hold unread bytes; edge-triggered events only announce new ones
  bool hangup = false;  // the peer shut down or failed: read until end of stream
  std::string unsent;   // bytes for this side its socket has not taken yet
};

struct RelayLoop::Session {
  Session(RelayHandoff handoff, asio::any_io_executor session_executor, Completion completion)
      : client(this, handoff.client_fd, true), primary(this, handoff.primary_fd, false),
        from_client(protocol::Direction::kFrontend, handoff.limits->max_message_size),
        from_primary(protocol::Direction::kBackend, std::numeric_limits<uint32_t>::max()),
        client_leftover(std::move(handoff.client_leftover)),
        primary_leftover(std::move(handoff.primary_leftover)), limits(*handoff.limits),
        activity(*handoff.activity), executor(std::move(session_executor)),
        done(std::move(completion)) {}

  Side client;
  Side primary;
  protocol::FrameScanner from_client;
  protocol::FrameScanner from_primary;
  std::string client_leftover;
  std::string primary_leftover;
  const config::Limits& limits;
  SessionActivity& activity;
  asio::any_io_executor executor;
  Completion done;
  bool ended = false;

  Side& other(Side& side) { return side.client ? primary : client; }
};

RelayLoop::RelayLoop(monitoring::Metrics& metrics) : metrics_(metrics) {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd_ < 0 || wake_fd_ < 0)
    throw std::runtime_error("relay loop: " + last_error().message());
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.ptr = nullptr; // the wake-up descriptor
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &event) != 0)
    throw std::runtime_error("relay loop: " + last_error().message());
}

RelayLoop::~RelayLoop() {
  stop();
  if (thread_.joinable()) thread_.join();
  // Only at shutdown: the sessions' coroutines are dropped with their completions.
  for (auto* list : {&sessions_, &incoming_}) {
    for (auto& session : *list) {
      if (session->ended) continue;
      ::close(session->client.fd);
      ::close(session->primary.fd);
    }
  }
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

void RelayLoop::start() {
  thread_ = std::thread([this] { run(); });
}

void RelayLoop::stop() {
  stopping_.store(true, std::memory_order_release);
  uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
}

void RelayLoop::adopt(RelayHandoff handoff, asio::any_io_executor executor, Completion done) {
  auto session =
      std::make_unique<Session>(std::move(handoff), std::move(executor), std::move(done));
  {
    std::lock_guard lock(incoming_mutex_);
    incoming_.push_back(std::move(session));
  }
  uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
}

void RelayLoop::run() {
  stats_ = &monitoring::RelayStats::for_this_thread(metrics_);
  std::array<epoll_event, kMaxEvents> events{};
  auto next_tick = Clock::now() + kTick;
  while (!stopping_.load(std::memory_order_acquire)) {
    auto wait = std::chrono::ceil<std::chrono::milliseconds>(next_tick - Clock::now());
    int n = ::epoll_wait(epoll_fd_, events.data(), kMaxEvents,
                         static_cast<int>(std::max<int64_t>(wait.count(), 0)));
    if (n < 0 && errno != EINTR) {
      spdlog::error("relay loop: epoll_wait failed: {}", last_error().message());
      break;
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.ptr == nullptr) {
        take_incoming();
        continue;
      }
      on_ready(*static_cast<Side*>(events[i].data.ptr), events[i].events);
    }
    if (Clock::now() >= next_tick) {
      stats_->flush();
      check_idle();
      next_tick = Clock::now() + kTick;
    }
    reap();
  }
  stats_->flush();
}

void RelayLoop::take_incoming() {
  uint64_t count = 0;
  (void)!::read(wake_fd_, &count, sizeof count);
  std::vector<std::unique_ptr<Session>> incoming;
  {
    std::lock_guard lock(incoming_mutex_);
    incoming.swap(incoming_);
  }
  for (auto& session : incoming) {
    sessions_.push_back(std::move(session));
    start_session(*sessions_.back());
  }
}

void RelayLoop::start_session(Session& session) {
  for (Side* side : {&session.client, &session.primary}) {
    epoll_event event{};
    // Registered once for good: EPOLLOUT only matters while `unsent` holds bytes.
    event.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    event.data.ptr = side;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, side->fd, &event) != 0) {
      auto ec = last_error();
      end(session, refuse(CloseReason::kTooManyClients, sqlstate::kTooManyConnections,
                          "switchyard cannot watch another connection: " + ec.message()));
      return;
    }
  }
  if (!session.client_leftover.empty()) {
    forward(session, session.client, session.primary, std::exchange(session.client_leftover, {}));
  }
  if (!session.ended && !session.primary_leftover.empty()) {
    forward(session, session.primary, session.client, std::exchange(session.primary_leftover, {}));
  }
  pump(session, session.client, session.primary);
  pump(session, session.primary, session.client);
}

void RelayLoop::on_ready(Side& side, uint32_t events) {
  Session& session = *side.session;
  if (session.ended) return; // ended earlier in this batch
  Side& other = session.other(side);
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) side.readable = true;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) side.hangup = true;
  if (!side.unsent.empty() && (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))) {
    if (flush(session, side)) pump(session, other, side); // reading the other side waited
  }
  pump(session, side, other); // the other direction goes on regardless
}

// Moves what `from` has to `to` until `from` is drained or `to` is full.
void RelayLoop::pump(Session& session, Side& from, Side& to) {
  auto gone = from.client ? CloseReason::kClientDisconnect : CloseReason::kBackendDisconnect;
  while (!session.ended && from.readable && to.unsent.empty()) {
    ssize_t n = ::recv(from.fd, buffer_.data(), buffer_.size(), MSG_DONTWAIT);
    if (n > 0) {
      // A short read emptied the socket; bytes arriving later raise a new event.
      if (static_cast<size_t>(n) < buffer_.size() && !from.hangup) from.readable = false;
      forward(session, from, to, std::string_view(buffer_.data(), static_cast<size_t>(n)));
    } else if (n == 0) {
      end(session, peer_gone(gone, asio::error::eof));
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      from.readable = false;
    } else if (errno != EINTR) {
      end(session, peer_gone(gone, last_error()));
    }
  }
}

void RelayLoop::forward(Session& session, Side& from, Side& to, std::string_view chunk) {
  bool terminate = false;
  auto refused =
      from.client
          ? scan_client_chunk(session.from_client, chunk, session.activity, *stats_, terminate)
          : scan_primary_chunk(session.from_primary, chunk, session.activity, *stats_);
  if (refused) return end(session, std::move(*refused));
  send_or_keep(session, to, terminate ? without_final_terminate(chunk) : chunk);
  if (terminate && !session.ended) end(session, Closing{CloseReason::kClientTerminate, {}, {}});
}

void RelayLoop::send_or_keep(Session& session, Side& to, std::string_view data) {
  if (!to.unsent.empty()) { // only while starting, with both sides' leftovers
    to.unsent.append(data);
    return;
  }
  ssize_t n = 0;
  do {
    n = ::send(to.fd, data.data(), data.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      auto ec = last_error();
      if (to.client) return end(session, peer_gone(CloseReason::kClientDisconnect, ec));
      return end(session, refuse(CloseReason::kBackendDisconnect, sqlstate::kConnectionFailure,
                                 "lost the connection to the primary database: " + ec.message()));
    }
    n = 0;
  }
  if (static_cast<size_t>(n) < data.size()) to.unsent.assign(data.substr(static_cast<size_t>(n)));
}

// Sends what `to` has waiting; true when all of it went.
bool RelayLoop::flush(Session& session, Side& to) {
  std::string pending = std::move(to.unsent);
  to.unsent.clear();
  send_or_keep(session, to, pending);
  return !session.ended && to.unsent.empty();
}

void RelayLoop::end(Session& session, Closing closing) {
  if (session.ended) return;
  session.ended = true;
  ++ended_;
  // Unwatched before the session gets its sockets back and registers them with Asio again.
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, session.client.fd, nullptr);
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, session.primary.fd, nullptr);
  RelayEnd result{std::move(closing), std::move(session.client.unsent),
                  std::move(session.primary.unsent)};
  asio::post(session.executor,
             [done = std::move(session.done), result = std::move(result)]() mutable {
               std::move(done)(std::move(result));
             });
}

void RelayLoop::check_idle() {
  auto now = Clock::now();
  for (auto& session : sessions_) {
    if (session->ended) continue;
    if (auto closing = idle_closing(session->activity, session->limits, now)) {
      end(*session, std::move(*closing));
    }
  }
}

// Frees the sessions that ended, once no event of the batch can point at them any more.
void RelayLoop::reap() {
  if (ended_ == 0) return;
  std::erase_if(sessions_, [](const auto& session) { return session->ended; });
  ended_ = 0;
}

RelayLoops::RelayLoops(monitoring::Metrics& metrics, size_t count) {
  for (size_t i = 0; i < count; ++i)
    loops_.push_back(std::make_unique<RelayLoop>(metrics));
}

void RelayLoops::start() {
  for (auto& loop : loops_)
    loop->start();
}

void RelayLoops::stop() {
  for (auto& loop : loops_)
    loop->stop();
}

RelayLoop& RelayLoops::next() {
  return *loops_[next_.fetch_add(1, std::memory_order_relaxed) % loops_.size()];
}

} // namespace switchyard::proxy
