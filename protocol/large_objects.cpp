#include "protocol/large_objects.hpp"

#include <array>
#include <charconv>

#include "protocol/classify.hpp"
#include "protocol/pg_values.hpp"
#include "protocol/wire.hpp"

namespace switchyard::protocol {
namespace {

constexpr int kInvWrite = 0x20000; // lo_open's mode for writing

// An integer argument or result: binary (four bytes, unsigned for an OID, or eight for a
// bigint) or text.
std::optional<int64_t> integer(const Value& value, uint16_t format, bool is_oid = false) {
  if (!value) return std::nullopt;
  const std::string& bytes = *value;
  if (format == 1) {
    if (bytes.size() == 2) // a parameter's int2
      return int64_t{static_cast<int16_t>((static_cast<unsigned char>(bytes[0]) << 8) |
                                          static_cast<unsigned char>(bytes[1]))};
    if (bytes.size() == 4) {
      uint32_t u = read_u32(bytes.data());
      return is_oid ? int64_t{u} : int64_t{static_cast<int32_t>(u)};
    }
    if (bytes.size() != 8) return std::nullopt;
    uint64_t high = read_u32(bytes.data());
    return static_cast<int64_t>((high << 32) | read_u32(bytes.data() + 4));
  }
  int64_t n = 0;
  auto [end, error] = std::from_chars(bytes.data(), bytes.data() + bytes.size(), n);
  if (error != std::errc() || end != bytes.data() + bytes.size()) return std::nullopt;
  return n;
}

// The bytes of a bytea result: as they are in binary, decoded from text.
std::optional<size_t> bytea_length(const Value& value, uint16_t format) {
  if (!value) return std::nullopt;
  if (format == 1) return value->size();
  auto decoded = decode_bytea_text(*value);
  if (!decoded) return std::nullopt;
  return decoded->size();
}

// A write to `object` that takes no parameter.
LargeObjectWrite statement(int64_t object, std::string sql) {
  LargeObjectWrite write;
  write.object = static_cast<uint32_t>(object);
  write.sql = std::move(sql);
  return write;
}

// The built-in large-object functions: pg_proc OID, name and number of arguments.
struct Builtin {
  uint32_t oid;
  std::string_view name;
  size_t arguments;
  LargeObjectFunction function;
};
constexpr std::array<Builtin, 20> kBuiltins{{
    {957, "lo_creat", 1, LargeObjectFunction::kCreat},
    {715, "lo_create", 1, LargeObjectFunction::kCreate},
    {964, "lo_unlink", 1, LargeObjectFunction::kUnlink},
    {952, "lo_open", 2, LargeObjectFunction::kOpen},
    {953, "lo_close", 1, LargeObjectFunction::kClose},
    {954, "loread", 2, LargeObjectFunction::kRead},
    {955, "lowrite", 2, LargeObjectFunction::kWrite},
    {956, "lo_lseek", 3, LargeObjectFunction::kSeek},
    {3170, "lo_lseek64", 3, LargeObjectFunction::kSeek64},
    {958, "lo_tell", 1, LargeObjectFunction::kTell},
    {3171, "lo_tell64", 1, LargeObjectFunction::kTell64},
    {1004, "lo_truncate", 2, LargeObjectFunction::kTruncate},
    {3172, "lo_truncate64", 2, LargeObjectFunction::kTruncate64},
    {3457, "lo_from_bytea", 2, LargeObjectFunction::kFromBytea},
    {3460, "lo_put", 3, LargeObjectFunction::kPut},
    {3458, "lo_get", 1, LargeObjectFunction::kGet},
    {3459, "lo_get", 3, LargeObjectFunction::kGet},
    {764, "lo_import", 1, LargeObjectFunction::kImport},
    {767, "lo_import", 2, LargeObjectFunction::kImport},
    {765, "lo_export", 2, LargeObjectFunction::kExport},
}};

// Whether the function's first argument is a descriptor.
bool takes_descriptor(LargeObjectFunction function) {
  switch (function) {
  case LargeObjectFunction::kClose:
  case LargeObjectFunction::kRead:
  case LargeObjectFunction::kWrite:
  case LargeObjectFunction::kSeek:
  case LargeObjectFunction::kSeek64:
  case LargeObjectFunction::kTell:
  case LargeObjectFunction::kTell64:
  case LargeObjectFunction::kTruncate:
  case LargeObjectFunction::kTruncate64: return true;
  default: return false;
  }
}

// Whether the function creates an object, answering its OID.
bool creates(LargeObjectFunction function) {
  return function == LargeObjectFunction::kCreat || function == LargeObjectFunction::kCreate ||
         function == LargeObjectFunction::kFromBytea || function == LargeObjectFunction::kImport;
}

} // namespace

std::optional<LargeObjectFunction> large_object_function(uint32_t function) {
  for (const Builtin& builtin : kBuiltins) {
    if (builtin.oid == function) return builtin.function;
  }
  return std::nullopt;
}

std::optional<uint32_t> large_object_function_oid(std::string_view name, size_t arguments) {
  for (const Builtin& builtin : kBuiltins) {
    if (builtin.name == name && builtin.arguments == arguments) return builtin.oid;
  }
  return std::nullopt;
}

std::optional<LargeObjectCall> sql_large_object_call(std::string_view statement,
                                                     const BindMessage* bind) {
  auto shape = function_call_statement(statement);
  if (!shape) return std::nullopt;
  auto oid = large_object_function_oid(shape->name, shape->arguments.size());
  if (!oid) return std::nullopt;
  FunctionCallMessage call;
  call.function = *oid;
  for (auto& argument : shape->arguments) {
    if (!argument.parameter) {
      call.argument_formats.push_back(0);
      call.arguments.push_back(std::move(argument.literal));
      continue;
    }
    size_t index = *argument.parameter - 1; // $1 is the first
    if (bind == nullptr || index >= bind->parameters.size()) return std::nullopt;
    call.argument_formats.push_back(format_of(bind->parameter_formats, index));
    call.arguments.push_back(bind->parameters[index]);
  }
  call.result_format = bind == nullptr ? 0 : format_of(bind->result_formats, 0);
  return LargeObjectCall{*large_object_function(*oid), std::move(call)};
}

std::optional<LargeObjectWrite> created_large_object(LargeObjectFunction function,
                                                     const Value& object, uint16_t format,
                                                     const Value* data, uint16_t data_format) {
  auto number = integer(object, format, true);
  if (!number) return std::nullopt;
  std::string named = std::to_string(*number);
  if (function == LargeObjectFunction::kFromBytea && data != nullptr) {
    LargeObjectWrite write =
        statement(*number, "SELECT pg_catalog.lo_from_bytea(" + named + ", $1)");
    write.types = {oid::kBytea};
    write.formats = {data_format};
    write.parameters = {*data};
    return write;
  }
  LargeObjectWrite write = statement(*number, "SELECT pg_catalog.lo_create(" + named + ")");
  write.copy_from_primary =
      function == LargeObjectFunction::kImport || function == LargeObjectFunction::kFromBytea;
  return write;
}

bool writes(LargeObjectFunction function) {
  switch (function) {
  case LargeObjectFunction::kCreat:
  case LargeObjectFunction::kCreate:
  case LargeObjectFunction::kUnlink:
  case LargeObjectFunction::kWrite:
  case LargeObjectFunction::kTruncate:
  case LargeObjectFunction::kTruncate64:
  case LargeObjectFunction::kFromBytea:
  case LargeObjectFunction::kPut:
  case LargeObjectFunction::kImport: return true;
  default: return false;
  }
}

std::optional<int32_t>
LargeObjectDescriptors::unknown_descriptor(LargeObjectFunction function,
                                           const FunctionCallMessage& call) const {
  if (!takes_descriptor(function) || call.arguments.empty()) return std::nullopt;
  auto fd = integer(call.arguments[0], format_of(call.argument_formats, 0));
  if (!fd) return std::nullopt;
  auto descriptor = static_cast<int32_t>(*fd);
  if (open_.contains(descriptor)) return std::nullopt;
  return descriptor;
}

std::optional<LargeObjectWrite> LargeObjectDescriptors::answered(LargeObjectFunction function,
                                                                 const FunctionCallMessage& call,
                                                                 const Value& result) {
  auto argument = [&](size_t index, bool is_oid = false) -> std::optional<int64_t> {
    if (index >= call.arguments.size()) return std::nullopt;
    return integer(call.arguments[index], format_of(call.argument_formats, index), is_oid);
  };
  // The data a call writes, as the secondary's $1.
  auto with_data = [&](LargeObjectWrite write, size_t index) -> std::optional<LargeObjectWrite> {
    if (index >= call.arguments.size()) return std::nullopt;
    write.types = {oid::kBytea};
    write.formats = {format_of(call.argument_formats, index)};
    write.parameters = {call.arguments[index]};
    return write;
  };
  if (creates(function)) {
    if (function != LargeObjectFunction::kFromBytea || call.arguments.size() < 2)
      return created_large_object(function, result, call.result_format);
    return created_large_object(function, result, call.result_format, &call.arguments[1],
                                format_of(call.argument_formats, 1));
  }
  std::optional<int64_t> answer = integer(result, call.result_format);
  if (function == LargeObjectFunction::kUnlink || function == LargeObjectFunction::kPut) {
    auto object = argument(0, true);
    if (!object) return std::nullopt;
    if (function == LargeObjectFunction::kUnlink)
      return statement(*object, "SELECT pg_catalog.lo_unlink(" + std::to_string(*object) + ")");
    auto offset = argument(1);
    if (!offset) return std::nullopt;
    return with_data(statement(*object, "SELECT pg_catalog.lo_put(" + std::to_string(*object) +
                                            ", " + std::to_string(*offset) + ", $1)"),
                     2);
  }
  if (!takes_descriptor(function) && function != LargeObjectFunction::kOpen)
    return std::nullopt; // reads an object, or writes a file
  auto fd = argument(0);
  if (!fd) return std::nullopt;
  auto descriptor = static_cast<int32_t>(*fd);
  if (function == LargeObjectFunction::kOpen) {
    auto object = argument(0, true);
    if (object && answer)
      open_[static_cast<int32_t>(*answer)] = Open{static_cast<uint32_t>(*object), 0};
    return std::nullopt;
  }
  auto it = open_.find(descriptor);
  if (it == open_.end()) return std::nullopt;
  Open& open = it->second;
  switch (function) {
  case LargeObjectFunction::kClose: open_.erase(it); return std::nullopt;
  case LargeObjectFunction::kRead:
    if (auto length = bytea_length(result, call.result_format)) {
      open.offset += static_cast<int64_t>(*length);
    } else {
      open_.erase(it); // where it reads and writes next is not known: its writes are refused
    }
    return std::nullopt;
  case LargeObjectFunction::kSeek:
  case LargeObjectFunction::kSeek64:
  case LargeObjectFunction::kTell:
  case LargeObjectFunction::kTell64:
    if (answer) {
      open.offset = *answer;
    } else {
      open_.erase(it);
    }
    return std::nullopt;
  case LargeObjectFunction::kWrite: {
    if (!answer) return std::nullopt;
    auto write =
        with_data(statement(open.object, "SELECT pg_catalog.lo_put(" + std::to_string(open.object) +
                                             ", " + std::to_string(open.offset) + ", $1)"),
                  1);
    open.offset += *answer;
    return write;
  }
  case LargeObjectFunction::kTruncate:
  case LargeObjectFunction::kTruncate64: {
    auto length = argument(1);
    if (!length) return std::nullopt;
    // lo_truncate takes a descriptor only: one of the secondary's own, opened for it.
    return statement(open.object, "SELECT pg_catalog.lo_truncate64(pg_catalog.lo_open(" +
                                      std::to_string(open.object) + ", " +
                                      std::to_string(kInvWrite) + "), " + std::to_string(*length) +
                                      ")");
  }
  default: return std::nullopt;
  }
}

} // namespace switchyard::protocol
