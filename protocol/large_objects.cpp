#include "protocol/large_objects.hpp"

#include <charconv>

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

} // namespace

std::optional<LargeObjectFunction> large_object_function(uint32_t function) {
  switch (function) {
  case 957: return LargeObjectFunction::kCreat;
  case 715: return LargeObjectFunction::kCreate;
  case 964: return LargeObjectFunction::kUnlink;
  case 952: return LargeObjectFunction::kOpen;
  case 953: return LargeObjectFunction::kClose;
  case 954: return LargeObjectFunction::kRead;
  case 955: return LargeObjectFunction::kWrite;
  case 956: return LargeObjectFunction::kSeek;
  case 3170: return LargeObjectFunction::kSeek64;
  case 958: return LargeObjectFunction::kTell;
  case 3171: return LargeObjectFunction::kTell64;
  case 1004: return LargeObjectFunction::kTruncate;
  case 3172: return LargeObjectFunction::kTruncate64;
  default: return std::nullopt;
  }
}

bool writes(LargeObjectFunction function) {
  switch (function) {
  case LargeObjectFunction::kCreat:
  case LargeObjectFunction::kCreate:
  case LargeObjectFunction::kUnlink:
  case LargeObjectFunction::kWrite:
  case LargeObjectFunction::kTruncate:
  case LargeObjectFunction::kTruncate64: return true;
  default: return false;
  }
}

std::optional<int32_t>
LargeObjectDescriptors::unknown_descriptor(LargeObjectFunction function,
                                           const FunctionCallMessage& call) const {
  if (function != LargeObjectFunction::kWrite && function != LargeObjectFunction::kTruncate &&
      function != LargeObjectFunction::kTruncate64) {
    return std::nullopt;
  }
  if (call.arguments.empty()) return std::nullopt; // PostgreSQL refuses the call
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
  bool returns_oid =
      function == LargeObjectFunction::kCreat || function == LargeObjectFunction::kCreate;
  std::optional<int64_t> answer = integer(result, call.result_format, returns_oid);
  if (returns_oid) {
    if (!answer) return std::nullopt;
    return statement(*answer, "SELECT pg_catalog.lo_create(" + std::to_string(*answer) + ")");
  }
  if (function == LargeObjectFunction::kUnlink) {
    auto object = argument(0, true);
    if (!object) return std::nullopt;
    return statement(*object, "SELECT pg_catalog.lo_unlink(" + std::to_string(*object) + ")");
  }
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
    if (!answer || call.arguments.size() < 2) return std::nullopt;
    LargeObjectWrite write{.object = open.object,
                           .sql = "SELECT pg_catalog.lo_put(" + std::to_string(open.object) + ", " +
                                  std::to_string(open.offset) + ", $1)",
                           .types = {oid::kBytea},
                           .formats = {format_of(call.argument_formats, 1)},
                           .parameters = {call.arguments[1]}};
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
