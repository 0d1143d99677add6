#pragma once

#include "proxy/asio.hpp"
#include "proxy/services.hpp"

namespace switchyard::proxy {

//! Serves one client connection from its first byte to its close: startup, TLS, auth, the
//! primary login, then the relay. Every close has a reason that is logged and counted.
asio::awaitable<void> serve_client(tcp::socket socket, Services& services);

} // namespace switchyard::proxy
