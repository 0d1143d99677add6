#include <catch2/catch.hpp>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string_view>
#include <utility>

#include "proxy/backend_pool.hpp"

using namespace switchyard;
using proxy::BackendPool;

namespace {

// A connected pair of local sockets: the first is kept in the pool, the second plays the
// backend's end.
std::pair<int, int> socket_pair() {
  int fds[2] = {-1, -1};
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  return {fds[0], fds[1]};
}

BackendPool::Parked parked(int fd, uint32_t pid,
                           BackendPool::Clock::time_point since = BackendPool::Clock::now()) {
  return BackendPool::Parked{fd, {AF_UNIX, 0}, "greeting", pid, pid + 1000, since};
}

// Whether the pool closed the other end of `peer`: it then reads end of stream, or a reset
// where the pool's end had bytes left unread.
bool closed_by_pool(int peer) {
  char byte = 0;
  ssize_t n = ::recv(peer, &byte, 1, MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

// Whether the pool ended the other end of `peer` as a client should: a Terminate, then end
// of stream.
bool ended_by_pool(int peer) {
  char terminate[5] = {};
  if (::recv(peer, terminate, sizeof terminate, MSG_DONTWAIT) != sizeof terminate) return false;
  char rest = 0;
  return std::string_view(terminate, sizeof terminate) == std::string_view("X\0\0\0\4", 5) &&
         ::recv(peer, &rest, 1, MSG_DONTWAIT) == 0;
}

} // namespace

TEST_CASE("a kept connection goes only to its own login, newest first") {
  BackendPool pool;
  auto [first, first_peer] = socket_pair();
  auto [second, second_peer] = socket_pair();
  pool.park("db", "alice", parked(first, 1), 10);
  pool.park("db", "alice", parked(second, 2), 10);
  CHECK(pool.size() == 2);
  CHECK_FALSE(pool.take("bob"));

  auto taken = pool.take("alice");
  REQUIRE(taken);
  CHECK(taken->pid == 2);
  CHECK(taken->fd == second);
  CHECK(taken->key == 1002);
  CHECK(taken->greeting == "greeting");
  REQUIRE(pool.take("alice")->fd == first);
  CHECK_FALSE(pool.take("alice"));
  CHECK(pool.size() == 0);
  for (int fd : {first, first_peer, second, second_peer})
    ::close(fd);
}

TEST_CASE("a kept connection the server ended or spoke on is passed over and closed") {
  BackendPool pool;
  auto [ended, ended_peer] = socket_pair();
  auto [spoke, spoke_peer] = socket_pair();
  auto [quiet, quiet_peer] = socket_pair();
  pool.park("db", "alice", parked(quiet, 1), 10);
  pool.park("db", "alice", parked(spoke, 2), 10);
  pool.park("db", "alice", parked(ended, 3), 10);
  ::close(ended_peer);                                    // the server ended its session
  REQUIRE(::send(spoke_peer, "E", 1, MSG_NOSIGNAL) == 1); // e.g. a FATAL error on its way

  auto taken = pool.take("alice");
  REQUIRE(taken);
  CHECK(taken->pid == 1);
  CHECK(closed_by_pool(spoke_peer));
  CHECK(pool.size() == 0);
  for (int fd : {quiet, quiet_peer, spoke_peer})
    ::close(fd);
}

TEST_CASE("the pool keeps at most max_idle and nothing past the idle timeout") {
  BackendPool pool;
  auto [oldest, oldest_peer] = socket_pair();
  auto [older, older_peer] = socket_pair();
  auto [newest, newest_peer] = socket_pair();
  auto now = BackendPool::Clock::now();
  pool.park("db", "alice", parked(oldest, 1, now - std::chrono::minutes(5)), 2);
  pool.park("db", "bob", parked(older, 2, now - std::chrono::minutes(2)), 2);
  pool.park("db", "alice", parked(newest, 3, now), 2); // over max_idle: the oldest goes
  CHECK(pool.size() == 2);
  CHECK(ended_by_pool(oldest_peer));

  pool.expire(std::chrono::minutes(1), 2);
  CHECK(pool.size() == 1);
  CHECK(ended_by_pool(older_peer));
  CHECK_FALSE(closed_by_pool(newest_peer));

  pool.expire(std::chrono::minutes(1), 0); // pooled_backends lowered to 0 by a reload
  CHECK(pool.size() == 0);
  CHECK(ended_by_pool(newest_peer));
  for (int fd : {oldest_peer, older_peer, newest_peer})
    ::close(fd);
}

TEST_CASE("the oldest open connection kept to a server is taken whatever its login") {
  BackendPool pool;
  auto [ended, ended_peer] = socket_pair();
  auto [other_server, other_server_peer] = socket_pair();
  auto [older, older_peer] = socket_pair();
  auto [newer, newer_peer] = socket_pair();
  pool.park("db", "alice", parked(ended, 1), 10);
  pool.park("elsewhere", "alice", parked(other_server, 2), 10);
  pool.park("db", "bob", parked(older, 3), 10);
  pool.park("db", "alice", parked(newer, 4), 10);
  ::close(ended_peer);

  auto taken = pool.take_oldest("db");
  REQUIRE(taken);
  CHECK(taken->pid == 3);
  CHECK(pool.size() == 2); // the ended one was closed on the way
  REQUIRE(pool.take_oldest("db")->pid == 4);
  CHECK_FALSE(pool.take_oldest("db"));
  CHECK(pool.size() == 1);
  for (int fd : {other_server_peer, older, older_peer, newer, newer_peer})
    ::close(fd);
}
