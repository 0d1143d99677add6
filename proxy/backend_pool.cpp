#include "proxy/backend_pool.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace switchyard::proxy {
namespace {

// A kept connection must have nothing to say: a byte waiting is the backend ending the
// session (an administrator's pg_terminate_backend, a shutdown), and end of stream is the
// end of it.
bool quiet_and_open(int fd) {
  char byte = 0;
  ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

} // namespace

BackendPool::~BackendPool() {
  for (Entry& entry : idle_)
    ::close(entry.connection.fd);
}

void BackendPool::park(const std::string& login_key, Parked connection, uint32_t max_idle) {
  std::lock_guard lock(mutex_);
  idle_.push_back(Entry{login_key, std::move(connection)});
  while (idle_.size() > max_idle) {
    ::close(idle_.front().connection.fd);
    idle_.pop_front();
  }
}

std::optional<BackendPool::Parked> BackendPool::take(const std::string& login_key) {
  std::lock_guard lock(mutex_);
  for (auto it = idle_.end(); it != idle_.begin();) {
    --it;
    if (it->login_key != login_key) continue;
    Parked connection = std::move(it->connection);
    it = idle_.erase(it);
    if (quiet_and_open(connection.fd)) return connection;
    ::close(connection.fd);
  }
  return std::nullopt;
}

void BackendPool::expire(Clock::duration idle_timeout, uint32_t max_idle) {
  auto now = Clock::now();
  std::lock_guard lock(mutex_);
  while (!idle_.empty() &&
         (idle_.size() > max_idle || now - idle_.front().connection.since >= idle_timeout)) {
    ::close(idle_.front().connection.fd);
    idle_.pop_front();
  }
}

size_t BackendPool::size() const {
  std::lock_guard lock(mutex_);
  return idle_.size();
}

} // namespace switchyard::proxy
