#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/result.hpp"

namespace switchyard::protocol {

//! Protocol 3.0 and the special request codes a client may send in its first packet.
inline constexpr uint32_t kProtocolVersion3 = 196608;
inline constexpr uint32_t kSslRequestCode = 80877103;
inline constexpr uint32_t kGssEncRequestCode = 80877104;
inline constexpr uint32_t kCancelRequestCode = 80877102;
//! PostgreSQL's own limit on a startup packet (MAX_STARTUP_PACKET_LENGTH).
inline constexpr uint32_t kMaxStartupPacket = 10000;

enum class StartupKind { kStartup, kSslRequest, kGssEncRequest, kCancelRequest };

//! The first packet of a connection, decoded.
struct StartupPacket {
  StartupKind kind = StartupKind::kStartup;
  uint32_t protocol = 0;
  std::vector<std::pair<std::string, std::string>> parameters; //!< kStartup only, in order
  uint32_t cancel_pid = 0;                                     //!< kCancelRequest only
  uint32_t cancel_key = 0;                                     //!< kCancelRequest only

  //! The value of a startup parameter, or "" when the client did not send it.
  std::string_view parameter(std::string_view name) const;
};

//! Reads the 4-byte length that starts an untagged packet and checks it is in [8, 10000].
Result<uint32_t> startup_packet_length(std::string_view header);

//! Decodes a whole untagged packet (length included). Wrong protocol versions, missing
//! terminators and a missing "user" are errors with the reason PostgreSQL would give.
Result<StartupPacket> parse_startup_packet(std::string_view packet);

//! Encodes a StartupMessage with the given parameters.
std::string encode_startup(const std::vector<std::pair<std::string, std::string>>& parameters);
//! Encodes an SSLRequest.
std::string encode_ssl_request();
//! Encodes a CancelRequest.
std::string encode_cancel_request(uint32_t pid, uint32_t key);

} // namespace switchyard::protocol
