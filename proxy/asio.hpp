#pragma once

// The Asio vocabulary every proxy file uses: coroutines that return error codes as values.
#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl.hpp>

namespace switchyard::proxy {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using namespace boost::asio::experimental::awaitable_operators;

//! Completion token: co_await yields std::tuple<error_code, ...> instead of throwing.
inline constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

} // namespace switchyard::proxy
