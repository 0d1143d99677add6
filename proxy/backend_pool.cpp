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

// A Terminate first lets the backend end cleanly; an idle backend reads it at once, and
// a full socket buffer (never the case for an idle one) only loses the courtesy.
void end_connection(int fd) {
  static constexpr char kTerminate[] = {'X', 0, 0, 0, 4};
  (void)::send(fd, kTerminate, sizeof kTerminate, MSG_DONTWAIT | MSG_NOSIGNAL);
  ::close(fd);
}

} // namespace

BackendPool::~BackendPool() {
  for (Entry& entry : idle_)
    end_connection(entry.connection.fd);
}

void BackendPool::park(const std::string& primary, const std::string& login_key, Parked connection,
                       uint32_t max_idle) {
  std::lock_guard lock(mutex_);
  idle_.push_back(Entry{primary, login_key, std::move(connection)});
  while (idle_.size() > max_idle) {
    end_connection(idle_.front().connection.fd);
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

std::optional<BackendPool::Parked> BackendPool::take_oldest(const std::string& primary) {
  std::lock_guard lock(mutex_);
  for (auto it = idle_.begin(); it != idle_.end();) {
    if (it->primary != primary) {
      ++it;
      continue;
    }
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
    end_connection(idle_.front().connection.fd);
    idle_.pop_front();
  }
}

size_t BackendPool::size() const {
  std::lock_guard lock(mutex_);
  return idle_.size();
}

} // namespace switchyard::proxy
