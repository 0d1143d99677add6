#pragma once

#include <functional>
#include <memory>

#include "protocol/result.hpp"
#include "proxy/asio.hpp"
#include "proxy/cutover_controller.hpp"
#include "proxy/services.hpp"

namespace switchyard::proxy {

//! What the admin endpoints act on.
struct AdminContext {
  Services& services;
  CutoverController& cutover;
  std::function<Status()> reload; //!< re-reads the config file, as SIGHUP does
};

//! Serves the admin HTTP endpoints on an accepted listener. Open: GET /metrics (Prometheus
//! text), /healthz (the process answers), /readyz (the primary accepts TCP connections).
//! Behind `Authorization: Bearer <admin.token>`, JSON in and out: GET /api/v1/status,
//! POST /api/v1/cutover/<action> ({"percent", "reason", "actor"}), POST /api/v1/reload.
asio::awaitable<void> serve_admin(tcp::acceptor acceptor, AdminContext context);

} // namespace switchyard::proxy
