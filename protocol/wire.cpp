#include "protocol/wire.hpp"

namespace switchyard::protocol {

void append_u32(std::string& out, uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
  out.append(b, 4);
}

void append_u16(std::string& out, uint16_t v) {
  const char b[2] = {static_cast<char>(v >> 8), static_cast<char>(v)};
  out.append(b, 2);
}

void append_empty_message(std::string& out, char tag) {
  out.push_back(tag);
  append_u32(out, 4);
}

void append_message(std::string& out, char tag, std::string_view body) {
  out.push_back(tag);
  append_u32(out, static_cast<uint32_t>(body.size() + 4));
  out.append(body);
}

std::optional<uint32_t> BodyReader::u32() {
  if (body_.size() - pos_ < 4) return std::nullopt;
  uint32_t v = read_u32(body_.data() + pos_);
  pos_ += 4;
  return v;
}

std::optional<uint16_t> BodyReader::u16() {
  if (body_.size() - pos_ < 2) return std::nullopt;
  uint16_t v = read_u16(body_.data() + pos_);
  pos_ += 2;
  return v;
}

std::optional<char> BodyReader::byte() {
  if (pos_ >= body_.size()) return std::nullopt;
  return body_[pos_++];
}

std::optional<std::string_view> BodyReader::cstring() {
  size_t end = body_.find('\0', pos_);
  if (end == std::string_view::npos) return std::nullopt;
  std::string_view s = body_.substr(pos_, end - pos_);
  pos_ = end + 1;
  return s;
}

std::optional<std::string_view> BodyReader::bytes(size_t n) {
  if (body_.size() - pos_ < n) return std::nullopt;
  std::string_view s = body_.substr(pos_, n);
  pos_ += n;
  return s;
}

MessageBuilder::MessageBuilder(std::string& out, char tag) : out_(out) {
  if (tag != 0) out_.push_back(tag);
  length_at_ = out_.size();
  append_u32(out_, 0);
}

MessageBuilder::~MessageBuilder() {
  auto len = static_cast<uint32_t>(out_.size() - length_at_);
  out_[length_at_] = static_cast<char>(len >> 24);
  out_[length_at_ + 1] = static_cast<char>(len >> 16);
  out_[length_at_ + 2] = static_cast<char>(len >> 8);
  out_[length_at_ + 3] = static_cast<char>(len);
}

MessageBuilder& MessageBuilder::u32(uint32_t v) {
  append_u32(out_, v);
  return *this;
}
MessageBuilder& MessageBuilder::u16(uint16_t v) {
  append_u16(out_, v);
  return *this;
}
MessageBuilder& MessageBuilder::byte(char c) {
  out_.push_back(c);
  return *this;
}
MessageBuilder& MessageBuilder::cstring(std::string_view s) {
  out_.append(s);
  out_.push_back('\0');
  return *this;
}
MessageBuilder& MessageBuilder::bytes(std::string_view s) {
  out_.append(s);
  return *this;
}

} // namespace switchyard::protocol
