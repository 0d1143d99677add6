#pragma once

#include <spdlog/spdlog.h>

#include <exception>
#include <string_view>

#include "proxy/asio.hpp"

namespace switchyard::proxy {

//! co_spawn that logs a coroutine ending with an exception instead of swallowing it as plain
//! `detached` would. `what` (a string literal) names the coroutine in the log line.
inline void spawn(const asio::any_io_executor& executor, asio::awaitable<void> awaitable,
                  std::string_view what) {
  asio::co_spawn(executor, std::move(awaitable), [what](const std::exception_ptr& error) {
    if (!error) return;
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      spdlog::error("{} ended with an exception: {}", what, e.what());
    } catch (...) {
      spdlog::error("{} ended with an unknown exception", what);
    }
  });
}

} // namespace switchyard::proxy
