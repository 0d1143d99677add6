#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <set>

#include "proxy/stream.hpp"

using namespace switchyard::proxy;

namespace {

// The descriptors of this process that are epoll instances.
std::set<int> epoll_descriptors() {
  std::set<int> found;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    if (std::filesystem::read_symlink(entry.path(), ec).string() == "anon_inode:[eventpoll]")
      found.insert(std::stoi(entry.path().filename().string()));
  }
  return found;
}

} // namespace

TEST_CASE("a stream's descriptor handed to a relay loop comes back, or is closed if refused") {
  std::set<int> before = epoll_descriptors();
  asio::io_context io;
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  Stream stream(StreamSocket(io, asio::generic::stream_protocol(AF_UNIX, SOCK_STREAM), fds[0]));

  int fd = stream.detach();
  CHECK(fd == fds[0]);
  CHECK_FALSE(stream.socket().is_open());

  SECTION("taken back, the stream works as before") {
    CHECK_FALSE(stream.reattach());
    CHECK(stream.socket().native_handle() == fd);
    asio::write(stream.socket(), asio::buffer("x", 1));
    char byte = 0;
    CHECK(::read(fds[1], &byte, 1) == 1);
    CHECK(byte == 'x');
  }

  SECTION("refused by Asio's epoll, it is closed, not leaked") {
    // epoll refuses to watch itself: make the descriptor name the io_context's epoll set.
    std::set<int> ours;
    for (int e : epoll_descriptors())
      if (!before.count(e)) ours.insert(e);
    REQUIRE(ours.size() == 1);
    REQUIRE(::dup2(*ours.begin(), fd) == fd);
    error_code ec = stream.reattach();
    CHECK(ec.value() == EINVAL);
    CHECK_FALSE(stream.socket().is_open());
    CHECK(::fcntl(fd, F_GETFD) == -1);            // the duplicate was closed...
    CHECK(::fcntl(*ours.begin(), F_GETFD) != -1); // ...not what it duplicated
  }
  ::close(fds[1]);
}

TEST_CASE("a stream tells when its peer closed, also behind data it sent last") {
  asio::io_context io;
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  Stream stream(StreamSocket(io, asio::generic::stream_protocol(AF_UNIX, SOCK_STREAM), fds[0]));
  CHECK_FALSE(stream.peer_closed());
  REQUIRE(::write(fds[1], "S", 1) == 1); // an unsolicited message: still open
  CHECK_FALSE(stream.peer_closed());
  REQUIRE(::write(fds[1], "E", 1) == 1);
  ::close(fds[1]); // a FATAL error, then the close
  CHECK(stream.peer_closed());
  char bytes[2] = {};
  error_code ec;
  CHECK(stream.read_available(asio::buffer(bytes, 2), ec) == 2); // nothing was consumed
  CHECK(std::string_view(bytes, 2) == "SE");
}
