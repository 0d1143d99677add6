#include "protocol/pg_values.hpp"

#include <bit>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

namespace switchyard::protocol {

std::string type_name(uint32_t type_oid) {
  switch (type_oid) {
  case oid::kBool: return "boolean";
  case oid::kBytea: return "bytea";
  case oid::kName: return "name";
  case oid::kInt8: return "bigint";
  case oid::kInt2: return "smallint";
  case oid::kInt4: return "integer";
  case oid::kText: return "text";
  case oid::kOid: return "oid";
  case oid::kJson: return "json";
  case oid::kFloat4: return "real";
  case oid::kFloat8: return "double precision";
  case oid::kUnknown: return "unknown";
  case oid::kBpchar: return "character";
  case oid::kVarchar: return "character varying";
  case oid::kDate: return "date";
  case oid::kTimestamp: return "timestamp without time zone";
  case oid::kTimestamptz: return "timestamp with time zone";
  case oid::kNumeric: return "numeric";
  case oid::kUuid: return "uuid";
  case oid::kJsonb: return "jsonb";
  default: return "type " + std::to_string(type_oid);
  }
}

int16_t type_size(uint32_t type_oid) {
  switch (type_oid) {
  case oid::kBool: return 1;
  case oid::kInt2: return 2;
  case oid::kInt4:
  case oid::kOid:
  case oid::kFloat4:
  case oid::kDate: return 4;
  case oid::kInt8:
  case oid::kFloat8:
  case oid::kTimestamp:
  case oid::kTimestamptz: return 8;
  case oid::kUuid: return 16;
  case oid::kName: return 64;
  default: return -1;
  }
}

bool valid_utf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    size_t length = 0;
    uint32_t code = 0;
    uint32_t min = 0;
    if ((c & 0xE0) == 0xC0) {
      length = 2, code = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      length = 3, code = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      length = 4, code = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (static_cast<size_t>(end - p) < length) return false;
    for (size_t i = 1; i < length; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      code = (code << 6) | (p[i] & 0x3F);
    }
    if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return false;
    p += length;
  }
  return true;
}

std::string format_float8(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  char buffer[32];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, end);
}

namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())))
    text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
    text.remove_suffix(1);
  return text;
}

} // namespace

Result<double> parse_float8(std::string_view text) {
  std::string_view t = trim(text);
  if (iequals(t, "nan")) return std::numeric_limits<double>::quiet_NaN();
  if (iequals(t, "infinity") || iequals(t, "+infinity") || iequals(t, "inf"))
    return std::numeric_limits<double>::infinity();
  if (iequals(t, "-infinity") || iequals(t, "-inf"))
    return -std::numeric_limits<double>::infinity();
  if (!t.empty() && t.front() == '+') t.remove_prefix(1);
  double value = 0;
  auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), value);
  if (t.empty() || ec != std::errc() || ptr != t.data() + t.size()) {
    return Error{"invalid input syntax for type double precision: \"" + std::string(text) + "\""};
  }
  return value;
}

Result<int64_t> parse_int8(std::string_view text) {
  std::string_view t = trim(text);
  if (!t.empty() && t.front() == '+') t.remove_prefix(1);
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), value);
  if (ec == std::errc::result_out_of_range) {
    return Error{"value \"" + std::string(text) + "\" is out of range for type bigint"};
  }
  if (t.empty() || ec != std::errc() || ptr != t.data() + t.size()) {
    return Error{"invalid input syntax for type bigint: \"" + std::string(text) + "\""};
  }
  return value;
}

Result<bool> parse_bool(std::string_view text) {
  std::string_view t = trim(text);
  for (std::string_view yes : {"t", "true", "y", "yes", "on", "1"}) {
    if (iequals(t, yes)) return true;
  }
  for (std::string_view no : {"f", "false", "n", "no", "off", "0"}) {
    if (iequals(t, no)) return false;
  }
  return Error{"invalid input syntax for type boolean: \"" + std::string(text) + "\""};
}

std::string encode_bytea_hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out = "\\x";
  out.reserve(2 + bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 0x0F];
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> decode_bytea_text(std::string_view text) {
  std::string out;
  if (text.starts_with("\\x") || text.starts_with("\\X")) {
    for (size_t i = 2; i < text.size();) {
      if (std::isspace(static_cast<unsigned char>(text[i]))) {
        ++i;
        continue;
      }
      int high = hex_value(text[i]);
      int low = i + 1 < text.size() ? hex_value(text[i + 1]) : -1;
      if (high < 0 || low < 0) return Error{"invalid hexadecimal data in bytea input"};
      out += static_cast<char>((high << 4) | low);
      i += 2;
    }
    return out;
  }
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\') {
      out += text[i];
    } else if (i + 1 < text.size() && text[i + 1] == '\\') {
      out += '\\';
      ++i;
    } else if (i + 3 < text.size() && text[i + 1] >= '0' && text[i + 1] <= '3' &&
               text[i + 2] >= '0' && text[i + 2] <= '7' && text[i + 3] >= '0' &&
               text[i + 3] <= '7') {
      out += static_cast<char>(((text[i + 1] - '0') << 6) | ((text[i + 2] - '0') << 3) |
                               (text[i + 3] - '0'));
      i += 3;
    } else {
      return Error{"invalid input syntax for type bytea"};
    }
  }
  return out;
}

namespace {

// The parts of an ISO-8601 or PostgreSQL timestamp text.
struct TimestampParts {
  std::string_view date;     // YYYY-MM-DD
  std::string_view time;     // HH:MM:SS, or empty for a date alone
  std::string_view fraction; // digits after the point, or empty
  char zone_sign = 0;        // 0: no zone given
  std::string_view zone_hours;
  std::string_view zone_minutes; // empty when not given
};

bool digits(std::string_view text, size_t count) {
  if (text.size() != count) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

Result<TimestampParts> split_timestamp(std::string_view text) {
  auto invalid = [&] {
    return Error{"invalid input syntax for type timestamp with time zone: \"" + std::string(text) +
                 "\""};
  };
  TimestampParts parts;
  std::string_view t = trim(text);
  if (t.size() < 10) return invalid();
  parts.date = t.substr(0, 10);
  if (!digits(parts.date.substr(0, 4), 4) || parts.date[4] != '-' ||
      !digits(parts.date.substr(5, 2), 2) || parts.date[7] != '-' ||
      !digits(parts.date.substr(8, 2), 2))
    return invalid();
  t.remove_prefix(10);
  if (t.empty()) return parts;
  if (t.front() != 'T' && t.front() != ' ') return invalid();
  t.remove_prefix(1);
  if (t.size() < 8 || !digits(t.substr(0, 2), 2) || t[2] != ':' || !digits(t.substr(3, 2), 2) ||
      t[5] != ':' || !digits(t.substr(6, 2), 2))
    return invalid();
  parts.time = t.substr(0, 8);
  t.remove_prefix(8);
  if (!t.empty() && t.front() == '.') {
    size_t n = 1;
    while (n < t.size() && t[n] >= '0' && t[n] <= '9')
      ++n;
    if (n == 1) return invalid();
    parts.fraction = t.substr(1, n - 1);
    t.remove_prefix(n);
  }
  if (t.empty()) return parts;
  if (t == "Z" || t == "z") {
    parts.zone_sign = '+';
    parts.zone_hours = "00";
    return parts;
  }
  if (t.front() != '+' && t.front() != '-') return invalid();
  parts.zone_sign = t.front();
  t.remove_prefix(1);
  if (!digits(t.substr(0, 2), 2)) return invalid();
  parts.zone_hours = t.substr(0, 2);
  t.remove_prefix(2);
  if (!t.empty() && t.front() == ':') t.remove_prefix(1);
  if (t.empty()) return parts;
  if (!digits(t, 2)) return invalid();
  parts.zone_minutes = t;
  return parts;
}

std::string join_timestamp(const TimestampParts& parts, char separator, bool long_zone) {
  std::string out(parts.date);
  out += separator;
  out += parts.time.empty() ? "00:00:00" : parts.time;
  if (!parts.fraction.empty()) {
    out += '.';
    out += parts.fraction;
  }
  out += parts.zone_sign ? parts.zone_sign : '+';
  out += parts.zone_sign ? parts.zone_hours : "00";
  if (!parts.zone_minutes.empty() && parts.zone_minutes != "00") {
    out += ':';
    out += parts.zone_minutes;
  } else if (long_zone) {
    out += ":00";
  }
  return out;
}

} // namespace

Result<std::string> timestamptz_from_iso8601(std::string_view text) {
  auto parts = split_timestamp(text);
  if (!parts) return Error{parts.error()};
  return join_timestamp(*parts, ' ', false);
}

Result<std::string> iso8601_from_timestamptz(std::string_view text) {
  auto parts = split_timestamp(text);
  if (!parts) return Error{parts.error()};
  return join_timestamp(*parts, 'T', true);
}

std::string encode_int8_binary(int64_t value) {
  auto bits = static_cast<uint64_t>(value);
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i) {
    out[static_cast<size_t>(i)] = static_cast<char>(bits & 0xFF);
    bits >>= 8;
  }
  return out;
}

std::string encode_float8_binary(double value) {
  return encode_int8_binary(static_cast<int64_t>(std::bit_cast<uint64_t>(value)));
}

namespace {

uint64_t read_big_endian(std::string_view bytes) {
  uint64_t value = 0;
  for (unsigned char c : bytes)
    value = (value << 8) | c;
  return value;
}

} // namespace

Result<int64_t> decode_int_binary(std::string_view bytes) {
  uint64_t raw = read_big_endian(bytes);
  switch (bytes.size()) {
  case 2: return static_cast<int64_t>(static_cast<int16_t>(raw));
  case 4: return static_cast<int64_t>(static_cast<int32_t>(raw));
  case 8: return static_cast<int64_t>(raw);
  default: return Error{"incorrect binary data format for an integer parameter"};
  }
}

Result<double> decode_float_binary(std::string_view bytes) {
  uint64_t raw = read_big_endian(bytes);
  if (bytes.size() == 4)
    return static_cast<double>(std::bit_cast<float>(static_cast<uint32_t>(raw)));
  if (bytes.size() == 8) return std::bit_cast<double>(raw);
  return Error{"incorrect binary data format for a floating-point parameter"};
}

} // namespace switchyard::protocol
