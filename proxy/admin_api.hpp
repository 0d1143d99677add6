#pragma once

#include <boost/beast/http.hpp>

#include "proxy/admin_server.hpp"

namespace switchyard::proxy {

namespace http = boost::beast::http;

//! Answers a request under /api/: checks the bearer token, then runs the status, cutover or
//! reload endpoint. Errors are JSON {"error": why} with 400, 401, 403, 404, 405 or 409.
http::response<http::string_body> handle_api(const http::request<http::string_body>& request,
                                             AdminContext& context);

//! The status page for people at GET / (HTML, read-only, no token: it shows what /metrics
//! already does, in words).
std::string status_page(AdminContext& context);

} // namespace switchyard::proxy
