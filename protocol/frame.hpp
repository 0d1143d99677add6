#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace switchyard::protocol {

//! Which side of the connection sends a message.
enum class Direction { kFrontend, kBackend };

//! The name of a message type ("Query", "ReadyForQuery"), or nullptr when `tag` is not a
//! message that `direction` may send.
const char* message_name(Direction direction, char tag);

//! Bytes of a tagged message header: the tag and the 32-bit length.
inline constexpr size_t kHeaderSize = 5;

enum class DecodeStatus { kNeedMoreData, kMessage, kMalformed };

//! What is wrong with a malformed message header.
enum class FrameFault { kNone, kUnknownType, kBadLength, kTooLarge };

//! A malformed header: the kind of fault and a sentence for the peer and the log.
struct Malformation {
  FrameFault fault = FrameFault::kNone;
  std::string reason;
  explicit operator bool() const { return fault != FrameFault::kNone; }
};

//! One whole tagged message; `body` points into the decoded buffer.
struct Frame {
  char tag = 0;
  std::string_view body;
};

//! What decode_frame found at the start of a buffer.
struct DecodeResult {
  DecodeStatus status = DecodeStatus::kNeedMoreData;
  Frame frame;
  size_t consumed = 0;       //!< bytes of the buffer the message took (kMessage only)
  Malformation malformation; //!< why the bytes are malformed (kMalformed only)
};

//! Decodes the tagged message at the start of `in` if it is complete. A length below 4,
//! over `max_length` or a tag `direction` never sends is kMalformed, known from the header.
DecodeResult decode_frame(std::string_view in, Direction direction, uint32_t max_length);

//! Follows the message boundaries of a byte stream without buffering message bodies, so the
//! relay can forward whole reads at once and still see every message. For each message it
//! reports the tag, the length and up to kPeekBytes of the body once the message has ended.
class FrameScanner {
public:
  static constexpr size_t kPeekBytes = 96;

  //! What the sink is told about a message once its last byte has been scanned.
  struct Event {
    char tag;
    uint32_t length;       //!< the length field: body size + 4
    std::string_view peek; //!< the first min(body size, kPeekBytes) bytes of the body
  };

  FrameScanner(Direction direction, uint32_t max_length)
      : direction_(direction), max_length_(max_length) {}

  //! Scans `chunk`, calling sink(const Event&) for each message that ends in it. Returns no
  //! malformation, or what is malformed (the scanner must then not be used again).
  template <class Sink> Malformation scan(std::string_view chunk, Sink&& sink);

  //! True between messages (no partial header or body pending).
  bool at_boundary() const { return header_have_ == 0 && !in_body_; }

private:
  Malformation check_header();

  Direction direction_;
  uint32_t max_length_;
  std::array<char, kHeaderSize> header_{};
  size_t header_have_ = 0;
  bool in_body_ = false;
  uint32_t body_left_ = 0;
  std::array<char, kPeekBytes> peek_{};
  size_t peek_have_ = 0;
};

template <class Sink> Malformation FrameScanner::scan(std::string_view chunk, Sink&& sink) {
  size_t pos = 0;
  while (true) {
    if (!in_body_) {
      if (pos == chunk.size()) break;
      size_t take = std::min(kHeaderSize - header_have_, chunk.size() - pos);
      std::copy_n(chunk.data() + pos, take, header_.data() + header_have_);
      header_have_ += take;
      pos += take;
      if (header_have_ < kHeaderSize) break;
      if (Malformation bad = check_header()) return bad;
      in_body_ = true;
      peek_have_ = 0;
    }
    size_t take = std::min<size_t>(body_left_, chunk.size() - pos);
    if (peek_have_ < kPeekBytes) {
      size_t peek_take = std::min(take, kPeekBytes - peek_have_);
      std::copy_n(chunk.data() + pos, peek_take, peek_.data() + peek_have_);
      peek_have_ += peek_take;
    }
    body_left_ -= static_cast<uint32_t>(take);
    pos += take;
    if (body_left_ != 0) break; // the chunk ended inside this body
    uint32_t length = (static_cast<uint32_t>(static_cast<unsigned char>(header_[1])) << 24) |
                      (static_cast<uint32_t>(static_cast<unsigned char>(header_[2])) << 16) |
                      (static_cast<uint32_t>(static_cast<unsigned char>(header_[3])) << 8) |
                      static_cast<uint32_t>(static_cast<unsigned char>(header_[4]));
    sink(Event{header_[0], length, std::string_view(peek_.data(), peek_have_)});
    in_body_ = false;
    header_have_ = 0;
  }
  return {};
}

} // namespace switchyard::protocol
