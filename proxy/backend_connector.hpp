#pragma once

#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "config/backend_uri.hpp"
#include "config/config.hpp"
#include "proxy/stream.hpp"

namespace switchyard::proxy {

//! What a client asks of a backend login.
struct LoginRequest {
  std::string user;
  std::string password; //!< may be empty when the backend needs none
  std::string database;
  std::vector<std::pair<std::string, std::string>> options; //!< other startup parameters
};

//! The login for `target`: its own user, password and database when its URI has them, else
//! `user` and `database`, with the password the config's users give that user.
LoginRequest backend_login(const config::Config& config, const config::BackendTarget& target,
                           std::string_view user, std::string_view database);

//! A backend connection that finished its login and is idle (ReadyForQuery seen).
struct BackendSession {
  Stream stream;
  std::string greeting; //!< the ParameterStatus/Notice messages the backend sent, raw
  uint32_t pid = 0;
  uint32_t key = 0;
  char transaction_status = 'I';
  std::string leftover; //!< bytes read past ReadyForQuery, to relay first
};

//! Why a login failed. `rejected` means the backend answered with an ErrorResponse, whose
//! raw bytes are in `error_response` so the client sees PostgreSQL's own words, and its
//! SQLSTATE in `sqlstate`.
struct BackendFailure {
  bool rejected = false;
  std::string message;
  std::string error_response;
  std::string sqlstate;
};

using BackendResult = std::variant<BackendSession, BackendFailure>;

//! A connection to `target`, before any login: TCP, a Unix-domain socket (host is its
//! directory), or a socket pair to a new session of the in-process SQLite engine. All three
//! then speak the same protocol.
asio::awaitable<Result<StreamSocket>> connect_socket(const config::BackendTarget& target);

//! Connects to `target`, negotiates TLS per its sslmode, logs in, and reads the greeting up
//! to ReadyForQuery, all within the target's connect_timeout.
asio::awaitable<BackendResult> connect_backend(const config::BackendTarget& target,
                                               ssl::context* tls, LoginRequest request);

//! Sends a CancelRequest for backend (pid, key) to `target` over a new connection.
asio::awaitable<Status> send_cancel_request(const config::BackendTarget& target, uint32_t pid,
                                            uint32_t key);

} // namespace switchyard::proxy
