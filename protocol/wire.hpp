#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace switchyard::protocol {

//! Reads a big-endian 32-bit integer from the first four bytes of `p`.
inline uint32_t read_u32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | uint32_t{u[3]};
}

//! Reads a big-endian 16-bit integer from the first two bytes of `p`.
inline uint16_t read_u16(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint16_t>((u[0] << 8) | u[1]);
}

//! Appends a big-endian 32-bit integer.
void append_u32(std::string& out, uint32_t v);
//! Appends a big-endian 16-bit integer.
void append_u16(std::string& out, uint16_t v);

//! Appends a message that has no body (Sync, Flush, Terminate, CopyDone, ...).
void append_empty_message(std::string& out, char tag);
//! Appends a message: `tag`, its length, `body`.
void append_message(std::string& out, char tag, std::string_view body);

//! Walks a message body field by field; every read is bounds-checked and a short body makes
//! the reader fail (ok() == false) instead of reading past the end.
class BodyReader {
public:
  explicit BodyReader(std::string_view body) : body_(body) {}

  std::optional<uint32_t> u32();
  std::optional<uint16_t> u16();
  std::optional<char> byte();
  //! A NUL-terminated string, without its terminator.
  std::optional<std::string_view> cstring();
  //! Exactly n bytes.
  std::optional<std::string_view> bytes(size_t n);
  std::string_view rest() const { return body_.substr(pos_); }
  bool at_end() const { return pos_ == body_.size(); }

private:
  std::string_view body_;
  size_t pos_ = 0;
};

//! Builds one protocol message in place at the end of `out`: tag (none for startup-style
//! packets), a length patched in by the destructor, then the fields appended.
class MessageBuilder {
public:
  //! tag == 0 builds an untagged packet (StartupMessage, SSLRequest, CancelRequest).
  MessageBuilder(std::string& out, char tag);
  ~MessageBuilder();
  MessageBuilder(const MessageBuilder&) = delete;
  MessageBuilder& operator=(const MessageBuilder&) = delete;

  MessageBuilder& u32(uint32_t v);
  MessageBuilder& u16(uint16_t v);
  MessageBuilder& byte(char c);
  MessageBuilder& cstring(std::string_view s);
  MessageBuilder& bytes(std::string_view s);

private:
  std::string& out_;
  size_t length_at_;
};

} // namespace switchyard::protocol
