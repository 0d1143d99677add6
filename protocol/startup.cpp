#include "protocol/startup.hpp"

#include "protocol/wire.hpp"

namespace switchyard::protocol {

std::string_view StartupPacket::parameter(std::string_view name) const {
  for (const auto& [key, value] : parameters) {
    if (key == name) return value;
  }
  return {};
}

Result<uint32_t> startup_packet_length(std::string_view header) {
  if (header.size() < 4) return Error{"incomplete startup packet"};
  uint32_t length = read_u32(header.data());
  if (length < 8 || length > kMaxStartupPacket) {
    return Error{"invalid length of startup packet: " + std::to_string(length)};
  }
  return length;
}

Result<StartupPacket> parse_startup_packet(std::string_view packet) {
  auto length = startup_packet_length(packet);
  if (!length) return Error{length.error()};
  if (packet.size() != *length) return Error{"incomplete startup packet"};
  BodyReader reader(packet.substr(4));
  StartupPacket out;
  out.protocol = *reader.u32();
  switch (out.protocol) {
  case kSslRequestCode:
  case kGssEncRequestCode:
    if (!reader.at_end()) return Error{"invalid length of encryption request packet"};
    out.kind =
        out.protocol == kSslRequestCode ? StartupKind::kSslRequest : StartupKind::kGssEncRequest;
    return out;
  case kCancelRequestCode: {
    auto pid = reader.u32();
    auto key = reader.u32();
    if (!pid || !key || !reader.at_end()) return Error{"invalid length of cancel request packet"};
    out.kind = StartupKind::kCancelRequest;
    out.cancel_pid = *pid;
    out.cancel_key = *key;
    return out;
  }
  default: break;
  }
  if ((out.protocol >> 16) != 3) {
    return Error{"unsupported frontend protocol " + std::to_string(out.protocol >> 16) + "." +
                 std::to_string(out.protocol & 0xffff) + ": server supports 3.0 to 3.0"};
  }
  while (true) {
    auto key = reader.cstring();
    if (!key) return Error{"invalid startup packet layout: expected terminator as last byte"};
    if (key->empty()) break;
    auto value = reader.cstring();
    if (!value) return Error{"invalid startup packet layout: expected terminator as last byte"};
    out.parameters.emplace_back(std::string(*key), std::string(*value));
  }
  if (!reader.at_end())
    return Error{"invalid startup packet layout: expected terminator as last byte"};
  if (out.parameter("user").empty())
    return Error{"no PostgreSQL user name specified in startup packet"};
  return out;
}

std::string encode_startup(const std::vector<std::pair<std::string, std::string>>& parameters) {
  std::string out;
  {
    MessageBuilder m(out, 0);
    m.u32(kProtocolVersion3);
    for (const auto& [key, value] : parameters)
      m.cstring(key).cstring(value);
    m.byte('\0');
  }
  return out;
}

std::string encode_ssl_request() {
  std::string out;
  MessageBuilder(out, 0).u32(kSslRequestCode);
  return out;
}

std::string encode_cancel_request(uint32_t pid, uint32_t key) {
  std::string out;
  MessageBuilder(out, 0).u32(kCancelRequestCode).u32(pid).u32(key);
  return out;
}

} // namespace switchyard::protocol
