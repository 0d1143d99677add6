#include "protocol/frame.hpp"

#include "protocol/wire.hpp"

namespace switchyard::protocol {
namespace {

struct MessageType {
  char tag;
  const char* name;
};

// Every message of protocol 3.0, by the side that sends it.
constexpr MessageType kFrontendMessages[] = {
    {'B', "Bind"},         {'C', "Close"},     {'d', "CopyData"},        {'c', "CopyDone"},
    {'f', "CopyFail"},     {'D', "Describe"},  {'E', "Execute"},         {'H', "Flush"},
    {'F', "FunctionCall"}, {'P', "Parse"},     {'p', "PasswordMessage"}, {'Q', "Query"},
    {'S', "Sync"},         {'X', "Terminate"},
};

constexpr MessageType kBackendMessages[] = {
    {'R', "Authentication"},
    {'K', "BackendKeyData"},
    {'2', "BindComplete"},
    {'3', "CloseComplete"},
    {'C', "CommandComplete"},
    {'d', "CopyData"},
    {'c', "CopyDone"},
    {'G', "CopyInResponse"},
    {'H', "CopyOutResponse"},
    {'W', "CopyBothResponse"},
    {'D', "DataRow"},
    {'I', "EmptyQueryResponse"},
    {'E', "ErrorResponse"},
    {'V', "FunctionCallResponse"},
    {'v', "NegotiateProtocolVersion"},
    {'n', "NoData"},
    {'N', "NoticeResponse"},
    {'A', "NotificationResponse"},
    {'t', "ParameterDescription"},
    {'S', "ParameterStatus"},
    {'1', "ParseComplete"},
    {'s', "PortalSuspended"},
    {'Z', "ReadyForQuery"},
    {'T', "RowDescription"},
};

std::string describe_tag(char tag) {
  auto u = static_cast<unsigned char>(tag);
  if (u >= 0x20 && u < 0x7f) return std::string("'") + tag + "'";
  static constexpr char kHex[] = "0123456789abcdef";
  return std::string("0x") + kHex[u >> 4] + kHex[u & 15];
}

Malformation check_header_fields(Direction direction, char tag, uint32_t length,
                                 uint32_t max_length) {
  if (message_name(direction, tag) == nullptr) {
    return {FrameFault::kUnknownType,
            "invalid " + std::string(direction == Direction::kFrontend ? "frontend" : "backend") +
                " message type " + describe_tag(tag)};
  }
  if (length < 4) {
    return {FrameFault::kBadLength,
            "invalid message length " + std::to_string(length) + " (below 4)"};
  }
  if (length > max_length) {
    return {FrameFault::kTooLarge, "message of " + std::to_string(length) +
                                       " bytes exceeds the limit of " + std::to_string(max_length) +
                                       " bytes"};
  }
  return {};
}

} // namespace

const char* message_name(Direction direction, char tag) {
  if (direction == Direction::kFrontend) {
    for (const auto& m : kFrontendMessages) {
      if (m.tag == tag) return m.name;
    }
  } else {
    for (const auto& m : kBackendMessages) {
      if (m.tag == tag) return m.name;
    }
  }
  return nullptr;
}

DecodeResult decode_frame(std::string_view in, Direction direction, uint32_t max_length) {
  DecodeResult result;
  if (in.size() < kHeaderSize) return result;
  uint32_t length = read_u32(in.data() + 1);
  if (Malformation bad = check_header_fields(direction, in[0], length, max_length)) {
    result.status = DecodeStatus::kMalformed;
    result.malformation = std::move(bad);
    return result;
  }
  if (in.size() < size_t{length} + 1) return result;
  result.status = DecodeStatus::kMessage;
  result.frame = Frame{in[0], in.substr(kHeaderSize, length - 4)};
  result.consumed = size_t{length} + 1;
  return result;
}

Malformation FrameScanner::check_header() {
  uint32_t length = read_u32(header_.data() + 1);
  Malformation bad = check_header_fields(direction_, header_[0], length, max_length_);
  if (!bad) body_left_ = length - 4;
  return bad;
}

} // namespace switchyard::protocol
