#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/result.hpp"

namespace switchyard::protocol {

//! SQLSTATE codes the proxy itself raises.
namespace sqlstate {
inline constexpr std::string_view kProtocolViolation = "08P01";
inline constexpr std::string_view kConnectionFailure = "08006";
inline constexpr std::string_view kCannotConnectNow = "57P03";
inline constexpr std::string_view kTooManyConnections = "53300";
inline constexpr std::string_view kInvalidPassword = "28P01";
inline constexpr std::string_view kInvalidAuthorization = "28000";
inline constexpr std::string_view kIdleSessionTimeout = "57P05";
inline constexpr std::string_view kIdleInTransactionTimeout = "25P03";
inline constexpr std::string_view kAdminShutdown = "57P01";
inline constexpr std::string_view kFeatureNotSupported = "0A000";
inline constexpr std::string_view kInternalError = "XX000";
} // namespace sqlstate

//! The fields of an ErrorResponse or NoticeResponse the proxy writes or reads.
struct ErrorFields {
  std::string severity; //!< "ERROR", "FATAL", "NOTICE", ...
  std::string sqlstate;
  std::string message;
  std::string detail;
  std::string hint;
};

//! Appends an ErrorResponse ('E') or NoticeResponse ('N').
void append_error(std::string& out, const ErrorFields& fields, char tag = 'E');
//! An ErrorResponse with severity FATAL, as sent just before closing a connection.
std::string fatal_error(std::string_view sqlstate, std::string_view message);
//! Reads the fields of an ErrorResponse/NoticeResponse body; unknown fields are skipped.
Result<ErrorFields> parse_error(std::string_view body);
//! Appends an ErrorResponse/NoticeResponse (`tag`) like `body` but with its cursor position
//! ('P', in characters) moved back by `shift`: the proxy put that many characters in front
//! of the client's query. Other fields are kept byte for byte; a malformed body is copied.
void append_error_shifted(std::string& out, char tag, std::string_view body, size_t shift);

//! Authentication request codes of the 'R' message.
enum class AuthCode : uint32_t {
  kOk = 0,
  kCleartextPassword = 3,
  kMd5Password = 5,
  kSasl = 10,
  kSaslContinue = 11,
  kSaslFinal = 12,
};

void append_auth(std::string& out, AuthCode code, std::string_view data = {});
void append_auth_sasl(std::string& out, const std::vector<std::string>& mechanisms);
void append_parameter_status(std::string& out, std::string_view name, std::string_view value);
void append_backend_key_data(std::string& out, uint32_t pid, uint32_t key);
void append_ready_for_query(std::string& out, char status);
//! A PasswordMessage ('p') carrying a NUL-terminated password or md5 hash.
void append_password(std::string& out, std::string_view password);
//! A SASLInitialResponse ('p'): mechanism name, then the client-first-message.
void append_sasl_initial(std::string& out, std::string_view mechanism, std::string_view data);
//! A SASLResponse ('p') carrying raw SASL data.
void append_sasl_response(std::string& out, std::string_view data);
//! A Terminate ('X').
void append_terminate(std::string& out);

} // namespace switchyard::protocol
