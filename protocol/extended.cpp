#include "protocol/extended.hpp"

#include "protocol/wire.hpp"

namespace switchyard::protocol {
namespace {

bool read_formats(BodyReader& reader, std::vector<uint16_t>& formats) {
  auto count = reader.u16();
  if (!count) return false;
  formats.reserve(*count);
  for (uint16_t i = 0; i < *count; ++i) {
    auto format = reader.u16();
    if (!format) return false;
    formats.push_back(*format);
  }
  return true;
}

// A count, then each value: its length (-1: NULL) and bytes, as in a Bind or a FunctionCall.
bool read_values(BodyReader& reader, std::vector<Value>& values) {
  auto count = reader.u16();
  if (!count) return false;
  values.reserve(*count);
  for (uint16_t i = 0; i < *count; ++i) {
    auto length = reader.u32();
    if (!length) return false;
    if (*length == 0xFFFFFFFFu) {
      values.emplace_back(std::nullopt);
      continue;
    }
    auto bytes = reader.bytes(*length);
    if (!bytes) return false;
    values.emplace_back(std::string(*bytes));
  }
  return true;
}

} // namespace

Result<ParseMessage> parse_parse(std::string_view body) {
  BodyReader reader(body);
  ParseMessage parse;
  auto name = reader.cstring();
  auto query = reader.cstring();
  auto count = reader.u16();
  if (!name || !query || !count) return Error{"Parse message is truncated"};
  parse.statement = std::string(*name);
  parse.query = std::string(*query);
  for (uint16_t i = 0; i < *count; ++i) {
    auto type = reader.u32();
    if (!type) return Error{"Parse message is truncated"};
    parse.parameter_types.push_back(*type);
  }
  return parse;
}

std::optional<std::string_view> second_cstring(std::string_view body) {
  BodyReader reader(body);
  if (!reader.cstring()) return std::nullopt;
  auto second = reader.cstring();
  if (!second) return std::nullopt;
  return *second;
}

Result<BindMessage> parse_bind(std::string_view body) {
  BodyReader reader(body);
  BindMessage bind;
  auto portal = reader.cstring();
  auto statement = reader.cstring();
  if (!portal || !statement || !read_formats(reader, bind.parameter_formats)) {
    return Error{"Bind message is truncated"};
  }
  bind.portal = std::string(*portal);
  bind.statement = std::string(*statement);
  if (!read_values(reader, bind.parameters) || !read_formats(reader, bind.result_formats)) {
    return Error{"Bind message is truncated"};
  }
  return bind;
}

Result<ExecuteMessage> parse_execute(std::string_view body) {
  BodyReader reader(body);
  auto portal = reader.cstring();
  auto max_rows = reader.u32();
  if (!portal || !max_rows) return Error{"Execute message is truncated"};
  return ExecuteMessage{std::string(*portal), *max_rows};
}

Result<TargetMessage> parse_target(std::string_view body) {
  BodyReader reader(body);
  auto kind = reader.byte();
  auto name = reader.cstring();
  if (!kind || !name || (*kind != 'S' && *kind != 'P')) {
    return Error{"Describe/Close message is invalid"};
  }
  return TargetMessage{*kind, std::string(*name)};
}

Result<FunctionCallMessage> parse_function_call(std::string_view body) {
  BodyReader reader(body);
  FunctionCallMessage call;
  auto function = reader.u32();
  if (!function || !read_formats(reader, call.argument_formats) ||
      !read_values(reader, call.arguments)) {
    return Error{"FunctionCall message is truncated"};
  }
  auto result_format = reader.u16();
  if (!result_format) return Error{"FunctionCall message is truncated"};
  call.function = *function;
  call.result_format = *result_format;
  return call;
}

void append_query(std::string& out, std::string_view sql) {
  MessageBuilder(out, 'Q').cstring(sql);
}

void append_parse(std::string& out, const ParseMessage& parse) {
  MessageBuilder message(out, 'P');
  message.cstring(parse.statement).cstring(parse.query);
  message.u16(static_cast<uint16_t>(parse.parameter_types.size()));
  for (uint32_t type : parse.parameter_types)
    message.u32(type);
}

void append_bind(std::string& out, const BindMessage& bind) {
  MessageBuilder message(out, 'B');
  message.cstring(bind.portal).cstring(bind.statement);
  message.u16(static_cast<uint16_t>(bind.parameter_formats.size()));
  for (uint16_t format : bind.parameter_formats)
    message.u16(format);
  message.u16(static_cast<uint16_t>(bind.parameters.size()));
  for (const Value& value : bind.parameters) {
    if (!value) {
      message.u32(0xFFFFFFFFu);
      continue;
    }
    message.u32(static_cast<uint32_t>(value->size())).bytes(*value);
  }
  message.u16(static_cast<uint16_t>(bind.result_formats.size()));
  for (uint16_t format : bind.result_formats)
    message.u16(format);
}

void append_execute(std::string& out, std::string_view portal, uint32_t max_rows) {
  MessageBuilder(out, 'E').cstring(portal).u32(max_rows);
}

void append_describe(std::string& out, char kind, std::string_view name) {
  MessageBuilder(out, 'D').byte(kind).cstring(name);
}

void append_close(std::string& out, char kind, std::string_view name) {
  MessageBuilder(out, 'C').byte(kind).cstring(name);
}

void append_sync(std::string& out) {
  append_empty_message(out, 'S');
}
void append_flush(std::string& out) {
  append_empty_message(out, 'H');
}

uint16_t format_of(std::span<const uint16_t> formats, size_t index) {
  if (formats.empty()) return 0;
  if (formats.size() == 1) return formats[0];
  return index < formats.size() ? formats[index] : 0;
}

} // namespace switchyard::protocol
