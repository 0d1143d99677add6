#pragma once

#include <string>
#include <string_view>

#include "monitoring/metrics.hpp"
#include "protocol/messages.hpp"
#include "proxy/asio.hpp"

namespace switchyard::proxy {

//! How a session ends: the reason (a metric label), a detail for the log, and the error to
//! send the client before closing, if any.
struct Closing {
  monitoring::CloseReason reason;
  std::string detail;
  std::string client_error;
};

//! A close that tells the client why with a FATAL error carrying `code`.
inline Closing refuse(monitoring::CloseReason reason, std::string_view code, std::string message) {
  std::string error = protocol::fatal_error(code, message);
  return Closing{reason, std::move(message), std::move(error)};
}

//! A close because the client broke the protocol, with a 08P01 error saying how.
inline Closing protocol_violation(std::string message) {
  return refuse(monitoring::CloseReason::kProtocolViolation, protocol::sqlstate::kProtocolViolation,
                std::move(message));
}

//! Why a session with the roles from before a cutover role swap is closed (57P01).
inline constexpr std::string_view kRoleSwapMessage =
    "terminating connection because switchyard's cutover swapped the primary and secondary "
    "databases; reconnect to continue";

//! Awaits `pump` and turns an exception ending it into a close with an internal error (XX000)
//! for the client. A session runs its pumps as `a || b`, which ends when one of them returns
//! but keeps waiting on the others when one throws: an exception must not stall the session.
inline asio::awaitable<Closing> closing_on_exception(asio::awaitable<Closing> pump) {
  try {
    co_return co_await std::move(pump);
  } catch (const std::exception& e) {
    co_return refuse(monitoring::CloseReason::kInternalError, protocol::sqlstate::kInternalError,
                     std::string("switchyard internal error: ") + e.what());
  }
}

//! A close because the peer went away (nothing to tell it).
inline Closing peer_gone(monitoring::CloseReason reason, const error_code& ec) {
  return Closing{reason, ec == asio::error::eof ? "closed by peer" : ec.message(), {}};
}

} // namespace switchyard::proxy
