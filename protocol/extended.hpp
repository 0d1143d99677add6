#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/result.hpp"
#include "protocol/row_image.hpp"

namespace switchyard::protocol {

//! A Parse message.
struct ParseMessage {
  std::string statement;
  std::string query;
  std::vector<uint32_t> parameter_types;
};

//! A Bind message. Parameter values keep their wire bytes; formats are per the message.
struct BindMessage {
  std::string portal;
  std::string statement;
  std::vector<uint16_t> parameter_formats;
  std::vector<Value> parameters;
  std::vector<uint16_t> result_formats;
};

//! An Execute message.
struct ExecuteMessage {
  std::string portal;
  uint32_t max_rows = 0;
};

//! A Describe or Close message: 'S' (statement) or 'P' (portal) and the name.
struct TargetMessage {
  char kind = 'S';
  std::string name;
};

//! A FunctionCall message (the fastpath interface libpq's lo_* functions use). Argument values
//! keep their wire bytes; formats are per the message, as a Bind's.
struct FunctionCallMessage {
  uint32_t function = 0; //!< the function's pg_proc OID
  std::vector<uint16_t> argument_formats;
  std::vector<Value> arguments;
  uint16_t result_format = 0;
};

Result<ParseMessage> parse_parse(std::string_view body);
Result<BindMessage> parse_bind(std::string_view body);
Result<ExecuteMessage> parse_execute(std::string_view body);
Result<TargetMessage> parse_target(std::string_view body);
Result<FunctionCallMessage> parse_function_call(std::string_view body);
//! The second string of a Parse (its query) or a Bind (its statement's name), read in place;
//! nullopt when the message ends before it.
std::optional<std::string_view> second_cstring(std::string_view body);

void append_query(std::string& out, std::string_view sql);
void append_parse(std::string& out, const ParseMessage& parse);
void append_bind(std::string& out, const BindMessage& bind);
void append_execute(std::string& out, std::string_view portal, uint32_t max_rows);
void append_describe(std::string& out, char kind, std::string_view name);
void append_close(std::string& out, char kind, std::string_view name);
void append_sync(std::string& out);
void append_flush(std::string& out);

//! The format of parameter `index` under the Bind rule: none given is text, one applies to
//! all, otherwise one each.
uint16_t format_of(std::span<const uint16_t> formats, size_t index);

} // namespace switchyard::protocol
