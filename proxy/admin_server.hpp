#pragma once

#include "proxy/asio.hpp"
#include "proxy/services.hpp"

namespace switchyard::proxy {

//! Serves the admin HTTP endpoints on an accepted listener: GET /metrics (Prometheus text),
//! /healthz (the process answers) and /readyz (the primary accepts TCP connections).
asio::awaitable<void> serve_admin(tcp::acceptor acceptor, Services& services);

} // namespace switchyard::proxy
