#include <catch2/catch.hpp>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <variant>

#include "proxy/closing.hpp"

using namespace switchyard::proxy;
using switchyard::monitoring::CloseReason;

TEST_CASE("a pump that throws ends its session with an internal error instead of stalling it") {
  asio::io_context io;
  auto throwing = []() -> asio::awaitable<Closing> {
    throw std::runtime_error("the parse tree could not be read");
    co_return Closing{}; // makes this a coroutine
  };
  // The other pump: waits for its peer, which says nothing, until it is cancelled.
  auto waiting = []() -> asio::awaitable<Closing> {
    asio::steady_timer quiet_peer(co_await asio::this_coro::executor, std::chrono::hours(1));
    auto [ec] = co_await quiet_peer.async_wait(use_tuple);
    co_return Closing{CloseReason::kShutdown, ec ? "cancelled" : "an hour passed", {}};
  };
  std::optional<Closing> ended;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto first = co_await (closing_on_exception(throwing()) || closing_on_exception(waiting()));
        ended = std::visit([](Closing& c) { return std::move(c); }, first);
      },
      [](const std::exception_ptr& error) {
        if (error) std::rethrow_exception(error);
      });
  io.run_for(std::chrono::seconds(10));
  REQUIRE(ended);
  CHECK(ended->reason == CloseReason::kInternalError);
  CHECK(ended->detail == "switchyard internal error: the parse tree could not be read");
  CHECK(ended->client_error.find("XX000") != std::string::npos);
  CHECK(io.stopped()); // the waiting pump was cancelled, not left behind
}
