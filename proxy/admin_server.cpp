#include "proxy/admin_server.hpp"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

#include "proxy/admin_api.hpp"
#include "proxy/backend_connector.hpp"
#include "proxy/spawn.hpp"

namespace switchyard::proxy {
namespace {

namespace beast = boost::beast;

constexpr auto kReadyProbeTimeout = std::chrono::seconds(1);
constexpr size_t kMaxRequestBytes = size_t{64} * 1024;
constexpr auto kHandshakeTimeout = std::chrono::seconds(10);

// Ready when a connection to the primary succeeds within a second.
asio::awaitable<std::string> probe_primary(const config::BackendTarget& primary) {
  asio::steady_timer timer(co_await asio::this_coro::executor, kReadyProbeTimeout);
  auto outcome = co_await (connect_socket(primary) || timer.async_wait(use_tuple));
  if (outcome.index() == 1) co_return "primary did not accept a connection within 1 s";
  auto& socket = std::get<0>(outcome);
  if (!socket)
    co_return "cannot connect to the primary at " + primary.endpoint() + ": " + socket.error();
  co_return "";
}

asio::awaitable<http::response<http::string_body>>
handle(const http::request<http::string_body>& request, AdminContext& context) {
  Services& services = context.services;
  std::string_view target = request.target();
  target = target.substr(0, target.find('?'));
  if (target.starts_with("/api/")) co_return handle_api(request, context);
  http::response<http::string_body> response{http::status::ok, request.version()};
  response.set(http::field::server, "switchyard");
  response.set(http::field::content_type, "text/plain; charset=utf-8");
  if (request.method() != http::verb::get && request.method() != http::verb::head) {
    response.result(http::status::method_not_allowed);
    response.body() = "only GET is supported here\n";
  } else if (target == "/metrics") {
    response.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    response.body() =
        prometheus::TextSerializer().Serialize(services.metrics().registry().Collect());
  } else if (target == "/") {
    response.set(http::field::content_type, "text/html; charset=utf-8");
    response.body() = status_page(context);
  } else if (target == "/healthz") {
    response.body() = "ok\n";
  } else if (target == "/readyz") {
    std::string problem = co_await probe_primary(services.runtime()->config->primary);
    if (!problem.empty()) {
      response.result(http::status::service_unavailable);
      response.body() = "not ready: " + problem + "\n";
    } else {
      response.body() = "ready\n";
    }
  } else {
    response.result(http::status::not_found);
    response.body() = "not found: try /, /metrics, /healthz, /readyz or /api/v1/status\n";
  }
  response.keep_alive(request.keep_alive());
  response.prepare_payload();
  co_return response;
}

template <class Stream>
asio::awaitable<void> serve_requests(Stream& socket, std::shared_ptr<AdminContext> context) {
  beast::flat_buffer buffer(kMaxRequestBytes);
  while (true) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(kMaxRequestBytes);
    auto [ec, n] = co_await http::async_read(socket, buffer, parser, use_tuple);
    if (ec) co_return; // closed, or a request too large or malformed: drop the connection
    auto request = parser.release();
    auto response = co_await handle(request, *context);
    auto [wec, wn] = co_await http::async_write(socket, response, use_tuple);
    if (wec || !response.keep_alive()) co_return;
  }
}

// Plain HTTP, or HTTPS only when admin.cert_file is set (a plain request then fails the
// handshake and the connection closes).
asio::awaitable<void> serve_connection(tcp::socket socket, std::shared_ptr<AdminContext> context) {
  auto runtime = context->services.runtime(); // keeps the TLS context alive for the stream
  if (!runtime->admin_tls) {
    co_await serve_requests(socket, std::move(context));
    co_return;
  }
  ssl::stream<tcp::socket> stream(std::move(socket), *runtime->admin_tls);
  asio::steady_timer timer(stream.get_executor(), kHandshakeTimeout);
  auto handshake = co_await (stream.async_handshake(ssl::stream_base::server, use_tuple) ||
                             timer.async_wait(use_tuple));
  if (handshake.index() == 1 || std::get<0>(std::get<0>(handshake))) co_return;
  co_await serve_requests(stream, std::move(context));
  co_await stream.async_shutdown(use_tuple);
}

} // namespace

asio::awaitable<void> serve_admin(tcp::acceptor acceptor, AdminContext context) {
  // Shared with every connection, which may outlive this listener at shutdown.
  auto shared = std::make_shared<AdminContext>(std::move(context));
  while (true) {
    auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) {
      spdlog::warn("admin accept failed: {}", ec.message());
      continue;
    }
    spawn(acceptor.get_executor(), serve_connection(std::move(socket), shared), "admin connection");
  }
}

} // namespace switchyard::proxy
