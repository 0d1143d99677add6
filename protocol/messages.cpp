#include "protocol/messages.hpp"

#include <charconv>

#include "protocol/wire.hpp"

namespace switchyard::protocol {

void append_error(std::string& out, const ErrorFields& fields, char tag) {
  MessageBuilder m(out, tag);
  m.byte('S').cstring(fields.severity);
  m.byte('V').cstring(fields.severity);
  m.byte('C').cstring(fields.sqlstate);
  m.byte('M').cstring(fields.message);
  if (!fields.detail.empty()) m.byte('D').cstring(fields.detail);
  if (!fields.hint.empty()) m.byte('H').cstring(fields.hint);
  m.byte('\0');
}

std::string fatal_error(std::string_view sqlstate, std::string_view message) {
  std::string out;
  append_error(out, ErrorFields{"FATAL", std::string(sqlstate), std::string(message), {}, {}});
  return out;
}

Result<ErrorFields> parse_error(std::string_view body) {
  BodyReader reader(body);
  ErrorFields fields;
  while (true) {
    auto code = reader.byte();
    if (!code) return Error{"error message without terminator"};
    if (*code == '\0') break;
    auto value = reader.cstring();
    if (!value) return Error{"error field without terminator"};
    switch (*code) {
    case 'S': fields.severity = *value; break;
    case 'C': fields.sqlstate = *value; break;
    case 'M': fields.message = *value; break;
    case 'D': fields.detail = *value; break;
    case 'H': fields.hint = *value; break;
    default: break;
    }
  }
  return fields;
}

void append_error_shifted(std::string& out, char tag, std::string_view body, size_t shift) {
  std::string shifted;
  BodyReader reader(body);
  while (true) {
    auto code = reader.byte();
    if (!code) break;
    if (*code == '\0') {
      shifted += '\0';
      MessageBuilder(out, tag).bytes(shifted);
      return;
    }
    auto value = reader.cstring();
    if (!value) break;
    shifted += *code;
    size_t position = 0;
    auto [end, ec] = std::from_chars(value->data(), value->data() + value->size(), position);
    if (*code == 'P' && ec == std::errc() && end == value->data() + value->size() &&
        position > shift) {
      shifted += std::to_string(position - shift);
    } else {
      shifted += *value;
    }
    shifted += '\0';
  }
  MessageBuilder(out, tag).bytes(body);
}

void append_auth(std::string& out, AuthCode code, std::string_view data) {
  MessageBuilder(out, 'R').u32(static_cast<uint32_t>(code)).bytes(data);
}

void append_auth_sasl(std::string& out, const std::vector<std::string>& mechanisms) {
  MessageBuilder m(out, 'R');
  m.u32(static_cast<uint32_t>(AuthCode::kSasl));
  for (const auto& mechanism : mechanisms)
    m.cstring(mechanism);
  m.byte('\0');
}

void append_parameter_status(std::string& out, std::string_view name, std::string_view value) {
  MessageBuilder(out, 'S').cstring(name).cstring(value);
}

void append_backend_key_data(std::string& out, uint32_t pid, uint32_t key) {
  MessageBuilder(out, 'K').u32(pid).u32(key);
}

void append_ready_for_query(std::string& out, char status) {
  MessageBuilder(out, 'Z').byte(status);
}

void append_password(std::string& out, std::string_view password) {
  MessageBuilder(out, 'p').cstring(password);
}

void append_sasl_initial(std::string& out, std::string_view mechanism, std::string_view data) {
  MessageBuilder(out, 'p').cstring(mechanism).u32(static_cast<uint32_t>(data.size())).bytes(data);
}

void append_sasl_response(std::string& out, std::string_view data) {
  MessageBuilder(out, 'p').bytes(data);
}

void append_terminate(std::string& out) {
  append_empty_message(out, 'X');
}

} // namespace switchyard::protocol
