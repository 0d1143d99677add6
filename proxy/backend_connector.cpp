#include "proxy/backend_connector.hpp"

#include "protocol/auth.hpp"
#include "protocol/messages.hpp"
#include "protocol/startup.hpp"
#include "protocol/wire.hpp"
#include "proxy/message_reader.hpp"
#include "proxy/sqlite_session.hpp"

namespace switchyard::proxy {
namespace {

constexpr uint32_t kMaxLoginMessage = 1u << 20;
constexpr std::string_view kScram = "SCRAM-SHA-256";

BackendFailure failure(std::string message) {
  return BackendFailure{false, std::move(message), {}, {}};
}

// The backend refused the login with an ErrorResponse (`body`).
BackendFailure rejection(std::string_view body) {
  BackendFailure failed{true, "login rejected", {}, {}};
  protocol::MessageBuilder(failed.error_response, 'E').bytes(body);
  if (auto fields = protocol::parse_error(body)) {
    failed.message = std::move(fields->message);
    failed.sqlstate = std::move(fields->sqlstate);
  }
  return failed;
}

asio::awaitable<Result<StreamSocket>> connect_tcp(const config::BackendTarget& target) {
  auto executor = co_await asio::this_coro::executor;
  tcp::resolver resolver(executor);
  auto [resolve_ec, endpoints] =
      co_await resolver.async_resolve(target.host, std::to_string(target.port), use_tuple);
  if (resolve_ec)
    co_return Error{"could not resolve \"" + target.host + "\": " + resolve_ec.message()};
  tcp::socket socket(executor);
  auto [ec, endpoint] = co_await asio::async_connect(socket, endpoints, use_tuple);
  if (ec) co_return Error{ec.message()};
  socket.set_option(tcp::no_delay(true));
  co_return StreamSocket(std::move(socket));
}

// A server on this machine, through its socket file: no TCP/IP stack on either side, which
// on loopback costs a backend about a fifth of its CPU per short transaction.
asio::awaitable<Result<StreamSocket>> connect_unix(const config::BackendTarget& target) {
  asio::local::stream_protocol::socket socket(co_await asio::this_coro::executor);
  auto [ec] = co_await socket.async_connect(
      asio::local::stream_protocol::endpoint(target.socket_path()), use_tuple);
  if (ec) co_return Error{ec.message()};
  co_return StreamSocket(std::move(socket));
}

// Asks for TLS as libpq does for this sslmode; returns false when the backend refused and
// the mode allows going on in plain text.
asio::awaitable<Status> negotiate_tls(Stream& stream, const config::BackendTarget& target,
                                      ssl::context* tls) {
  using config::SslMode;
  // As libpq: sslmode does not apply to Unix-domain sockets, which never carry TLS.
  if (tls == nullptr || target.unix_socket() || target.sslmode == SslMode::kDisable ||
      target.sslmode == SslMode::kAllow) {
    co_return Ok{};
  }
  if (auto ec = co_await stream.write_all(protocol::encode_ssl_request()); ec) {
    co_return Error{"could not send SSL negotiation packet: " + ec.message()};
  }
  char answer = 0;
  auto [ec, n] = co_await asio::async_read(stream.socket(), asio::buffer(&answer, 1), use_tuple);
  if (ec) co_return Error{"could not receive SSL negotiation answer: " + ec.message()};
  if (answer == 'N') {
    if (target.sslmode == SslMode::kPrefer) co_return Ok{};
    co_return Error{"server does not support SSL, but SSL was required"};
  }
  if (answer != 'S') co_return Error{"received invalid response to SSL negotiation"};
  std::string_view verify_host;
  if (target.sslmode == SslMode::kVerifyFull) verify_host = target.host;
  if (auto hs = co_await stream.start_tls(*tls, ssl::stream_base::client, verify_host); hs) {
    co_return Error{"SSL handshake failed: " + hs.message()};
  }
  co_return Ok{};
}

// Answers the backend's authentication requests until AuthenticationOk.
asio::awaitable<std::optional<BackendFailure>> authenticate(Stream& stream, MessageReader& reader,
                                                            const LoginRequest& request) {
  std::optional<protocol::ScramClient> scram;
  while (true) {
    auto frame = co_await reader.read_frame();
    if (!frame) co_return failure("login failed: " + frame.error());
    if (frame->tag == 'E') co_return rejection(frame->body);
    if (frame->tag == 'v') continue; // NegotiateProtocolVersion: we speak 3.0 only anyway
    if (frame->tag != 'R') co_return failure("unexpected message during login");
    protocol::BodyReader body(frame->body);
    auto code = body.u32();
    if (!code) co_return failure("truncated authentication request");
    std::string reply;
    using protocol::AuthCode;
    switch (static_cast<AuthCode>(*code)) {
    case AuthCode::kOk: co_return std::nullopt;
    case AuthCode::kCleartextPassword:
      if (request.password.empty())
        co_return failure("the backend asks for a password and none is configured");
      protocol::append_password(reply, request.password);
      break;
    case AuthCode::kMd5Password: {
      auto salt = body.bytes(4);
      if (!salt) co_return failure("truncated md5 authentication request");
      if (request.password.empty())
        co_return failure("the backend asks for a password and none is configured");
      protocol::append_password(
          reply, protocol::md5_password_response(request.user, request.password, *salt));
      break;
    }
    case AuthCode::kSasl: {
      bool offered = false;
      while (auto mechanism = body.cstring()) {
        if (mechanism->empty()) break;
        offered |= *mechanism == kScram;
      }
      if (!offered) co_return failure("the backend offers no SASL mechanism switchyard supports");
      if (request.password.empty())
        co_return failure("the backend asks for a password and none is configured");
      scram.emplace(request.password);
      protocol::append_sasl_initial(reply, kScram, scram->client_first());
      break;
    }
    case AuthCode::kSaslContinue: {
      if (!scram) co_return failure("SASLContinue without SASL");
      auto final_message = scram->handle_server_first(body.rest());
      if (!final_message) co_return failure(final_message.error());
      protocol::append_sasl_response(reply, *final_message);
      break;
    }
    case AuthCode::kSaslFinal: {
      if (!scram) co_return failure("SASLFinal without SASL");
      if (auto ok = scram->verify_server_final(body.rest()); !ok) co_return failure(ok.error());
      continue;
    }
    default:
      co_return failure("the backend asks for authentication method " + std::to_string(*code) +
                        ", which switchyard does not support");
    }
    if (auto ec = co_await stream.write_all(reply); ec)
      co_return failure("login failed: " + ec.message());
  }
}

asio::awaitable<BackendResult> login(const config::BackendTarget& target, ssl::context* tls,
                                     LoginRequest request) {
  auto socket = co_await connect_socket(target);
  if (!socket) co_return failure(socket.error());
  BackendSession session{Stream(std::move(*socket)), {}, 0, 0, 'I', {}};
  if (auto s = co_await negotiate_tls(session.stream, target, tls); !s)
    co_return failure(s.error());

  std::vector<std::pair<std::string, std::string>> parameters = {{"user", request.user},
                                                                 {"database", request.database}};
  for (auto& option : request.options)
    parameters.push_back(option);
  if (auto ec = co_await session.stream.write_all(protocol::encode_startup(parameters)); ec) {
    co_return failure("could not send startup packet: " + ec.message());
  }
  MessageReader reader(session.stream, protocol::Direction::kBackend, kMaxLoginMessage);
  if (auto failed = co_await authenticate(session.stream, reader, request)) co_return *failed;

  while (true) {
    auto frame = co_await reader.read_frame();
    if (!frame) co_return failure("login failed: " + frame.error());
    switch (frame->tag) {
    case 'S':
    case 'N': protocol::MessageBuilder(session.greeting, frame->tag).bytes(frame->body); break;
    case 'K': {
      protocol::BodyReader body(frame->body);
      auto pid = body.u32();
      auto key = body.u32();
      if (!pid || !key) co_return failure("truncated BackendKeyData");
      session.pid = *pid;
      session.key = *key;
      break;
    }
    case 'E': co_return rejection(frame->body);
    case 'Z':
      session.transaction_status = frame->body.empty() ? 'I' : frame->body[0];
      session.leftover = reader.take_leftover();
      co_return std::move(session);
    default: co_return failure("unexpected message during login");
    }
  }
}

} // namespace

asio::awaitable<Result<StreamSocket>> connect_socket(const config::BackendTarget& target) {
  if (target.kind == config::BackendKind::kSqlite) {
    co_return connect_sqlite(target, co_await asio::this_coro::executor);
  }
  if (target.unix_socket()) co_return co_await connect_unix(target);
  co_return co_await connect_tcp(target);
}

asio::awaitable<BackendResult> connect_backend(const config::BackendTarget& target,
                                               ssl::context* tls, LoginRequest request) {
  asio::steady_timer timer(co_await asio::this_coro::executor, target.connect_timeout);
  // operator|| flattens the BackendResult variant into its own, so match by type.
  auto outcome = co_await (login(target, tls, std::move(request)) || timer.async_wait(use_tuple));
  if (auto* session = std::get_if<BackendSession>(&outcome)) co_return std::move(*session);
  if (auto* failed = std::get_if<BackendFailure>(&outcome)) co_return std::move(*failed);
  co_return failure("timed out after " + std::to_string(target.connect_timeout.count()) + " ms");
}

asio::awaitable<Status> send_cancel_request(const config::BackendTarget& target, uint32_t pid,
                                            uint32_t key) {
  asio::steady_timer timer(co_await asio::this_coro::executor, target.connect_timeout);
  auto connected = co_await (connect_socket(target) || timer.async_wait(use_tuple));
  if (connected.index() == 1) co_return Error{"timed out connecting to the backend"};
  auto& socket = std::get<0>(connected);
  if (!socket) co_return Error{socket.error()};
  Stream stream(std::move(*socket));
  // Sent in plain text, as libpq does: PostgreSQL reads a cancel before any TLS negotiation.
  auto ec = co_await stream.write_all(protocol::encode_cancel_request(pid, key));
  stream.close();
  if (ec) co_return Error{ec.message()};
  co_return Ok{};
}

LoginRequest backend_login(const config::Config& config, const config::BackendTarget& target,
                           std::string_view user, std::string_view database) {
  LoginRequest login;
  login.user = target.user.empty() ? std::string(user) : target.user;
  if (!target.password.empty()) {
    login.password = target.password;
  } else if (const config::User* entry = config.find_user(login.user)) {
    login.password = entry->password;
  }
  login.database = !target.dbname.empty() ? target.dbname
                   : database.empty()     ? login.user
                                          : std::string(database);
  return login;
}

} // namespace switchyard::proxy
