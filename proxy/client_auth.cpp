#include "proxy/client_auth.hpp"

#include "protocol/auth.hpp"
#include "protocol/messages.hpp"
#include "protocol/wire.hpp"

namespace switchyard::proxy {
namespace {

using config::AuthMethod;
using protocol::AuthCode;

constexpr std::string_view kAuthFailedPrefix = "password authentication failed for user";

Error auth_failed(std::string_view user) {
  return Error{std::string(kAuthFailedPrefix) + " \"" + std::string(user) + "\""};
}

// Reads the client's next 'p' message (PasswordMessage, SASLInitialResponse, SASLResponse).
asio::awaitable<Result<protocol::Frame>> read_password_message(MessageReader& reader) {
  auto frame = co_await reader.read_frame();
  if (!frame) co_return Error{frame.error()};
  if (frame->tag != 'p') {
    co_return Error{"expected password response, got message type '" + std::string(1, frame->tag) +
                    "'"};
  }
  co_return frame;
}

asio::awaitable<Status> send(Stream& stream, const std::string& bytes) {
  if (auto ec = co_await stream.write_all(bytes); ec) co_return Error{ec.message()};
  co_return Ok{};
}

bool password_matches(const config::User& user, const protocol::ScramSecret* secret,
                      std::string_view given) {
  if (!user.password.empty()) return user.password == given;
  if (secret != nullptr) {
    auto derived = protocol::make_scram_secret(given, secret->salt, secret->iterations);
    return derived.stored_key == secret->stored_key;
  }
  return false;
}

asio::awaitable<Status> cleartext(Stream& stream, MessageReader& reader, const config::User* user,
                                  const protocol::ScramSecret* secret, std::string_view name) {
  std::string request;
  protocol::append_auth(request, AuthCode::kCleartextPassword);
  if (auto s = co_await send(stream, request); !s) co_return s;
  auto frame = co_await read_password_message(reader);
  if (!frame) co_return Error{frame.error()};
  protocol::BodyReader body(frame->body);
  auto given = body.cstring();
  if (!given) co_return Error{"malformed password message"};
  if (user == nullptr || !password_matches(*user, secret, *given)) co_return auth_failed(name);
  co_return Ok{};
}

asio::awaitable<Status> md5(Stream& stream, MessageReader& reader, const config::User* user,
                            std::string_view name) {
  std::string salt = protocol::random_bytes(4);
  std::string request;
  protocol::append_auth(request, AuthCode::kMd5Password, salt);
  if (auto s = co_await send(stream, request); !s) co_return s;
  auto frame = co_await read_password_message(reader);
  if (!frame) co_return Error{frame.error()};
  protocol::BodyReader body(frame->body);
  auto given = body.cstring();
  if (!given) co_return Error{"malformed password message"};
  if (user == nullptr) co_return auth_failed(name);
  std::string expected = protocol::md5_password_response(
      name, user->password.empty() ? user->md5_hash : user->password, salt);
  if (*given != expected) co_return auth_failed(name);
  co_return Ok{};
}

asio::awaitable<Status> scram(Stream& stream, MessageReader& reader,
                              const protocol::ScramSecret* secret, std::string_view name) {
  // An unknown user gets a made-up secret: the exchange runs and fails like a wrong password.
  protocol::ScramSecret mock;
  if (secret == nullptr) {
    mock = protocol::ScramSecret{4096, protocol::random_bytes(16), protocol::random_bytes(32),
                                 protocol::random_bytes(32)};
    secret = &mock;
  }
  protocol::ScramServer server(*secret);
  std::string request;
  protocol::append_auth_sasl(request, {"SCRAM-SHA-256"});
  if (auto s = co_await send(stream, request); !s) co_return s;

  auto initial = co_await read_password_message(reader);
  if (!initial) co_return Error{initial.error()};
  protocol::BodyReader body(initial->body);
  auto mechanism = body.cstring();
  auto length = body.u32();
  if (!mechanism || !length) co_return Error{"malformed SASLInitialResponse"};
  if (*mechanism != "SCRAM-SHA-256") {
    co_return Error{"client selected an invalid SASL authentication mechanism"};
  }
  auto client_first = body.bytes(*length);
  if (!client_first) co_return Error{"malformed SASLInitialResponse"};
  auto server_first = server.handle_client_first(*client_first);
  if (!server_first) co_return Error{server_first.error()};
  request.clear();
  protocol::append_auth(request, AuthCode::kSaslContinue, *server_first);
  if (auto s = co_await send(stream, request); !s) co_return s;

  auto response = co_await read_password_message(reader);
  if (!response) co_return Error{response.error()};
  auto server_final = server.handle_client_final(response->body);
  if (!server_final) {
    co_return server_final.error() == "password authentication failed"
        ? auth_failed(name)
        : Error{server_final.error()};
  }
  if (secret == &mock) co_return auth_failed(name);
  request.clear();
  protocol::append_auth(request, AuthCode::kSaslFinal, *server_final);
  co_return co_await send(stream, request);
}

} // namespace

bool is_auth_failure(const std::string& error) {
  return error.starts_with(kAuthFailedPrefix);
}

asio::awaitable<Status> authenticate_client(Stream& stream, MessageReader& reader,
                                            const Runtime& runtime, std::string_view user_name) {
  const config::Config& config = *runtime.config;
  const config::User* user = config.find_user(user_name);
  auto secret_it = runtime.scram_secrets.find(user_name);
  const protocol::ScramSecret* secret =
      secret_it == runtime.scram_secrets.end() ? nullptr : &secret_it->second;
  Status outcome = Ok{};
  switch (config.auth_method) {
  case AuthMethod::kTrust: break;
  case AuthMethod::kPassword:
    outcome = co_await cleartext(stream, reader, user, secret, user_name);
    break;
  case AuthMethod::kMd5: outcome = co_await md5(stream, reader, user, user_name); break;
  case AuthMethod::kScramSha256:
    outcome = co_await scram(stream, reader, user == nullptr ? nullptr : secret, user_name);
    break;
  }
  if (!outcome) co_return outcome;
  std::string ok;
  protocol::append_auth(ok, AuthCode::kOk);
  co_return co_await send(stream, ok);
}

} // namespace switchyard::proxy
