#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/result.hpp"

namespace switchyard::protocol {

//! Built-in PostgreSQL type OIDs (pg_type.oid) that switchyard names.
namespace oid {
inline constexpr uint32_t kUnspecified = 0;
inline constexpr uint32_t kBool = 16;
inline constexpr uint32_t kBytea = 17;
inline constexpr uint32_t kName = 19;
inline constexpr uint32_t kInt8 = 20;
inline constexpr uint32_t kInt2 = 21;
inline constexpr uint32_t kInt4 = 23;
inline constexpr uint32_t kText = 25;
inline constexpr uint32_t kOid = 26;
inline constexpr uint32_t kJson = 114;
inline constexpr uint32_t kFloat4 = 700;
inline constexpr uint32_t kFloat8 = 701;
inline constexpr uint32_t kUnknown = 705;
inline constexpr uint32_t kBpchar = 1042;
inline constexpr uint32_t kVarchar = 1043;
inline constexpr uint32_t kDate = 1082;
inline constexpr uint32_t kTimestamp = 1114;
inline constexpr uint32_t kTimestamptz = 1184;
inline constexpr uint32_t kNumeric = 1700;
inline constexpr uint32_t kUuid = 2950;
inline constexpr uint32_t kJsonb = 3802;
} // namespace oid

//! The name PostgreSQL gives type `type_oid` (e.g. "bigint"), or "type <oid>".
std::string type_name(uint32_t type_oid);
//! The typlen of a built-in type as RowDescription reports it (-1 for variable length).
int16_t type_size(uint32_t type_oid);

//! `text` is well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool valid_utf8(std::string_view text);

//! A float8 as PostgreSQL prints it with extra_float_digits >= 1: the shortest text that
//! reads back to the same double, "NaN", "Infinity" or "-Infinity".
std::string format_float8(double value);
//! A float8 from PostgreSQL's text input (incl. NaN and [+-]Infinity, any case).
Result<double> parse_float8(std::string_view text);
//! A bigint from its decimal text; out-of-range values are errors.
Result<int64_t> parse_int8(std::string_view text);
//! A boolean from any spelling PostgreSQL accepts (t, true, yes, on, 1, ...).
Result<bool> parse_bool(std::string_view text);

//! The value of hexadecimal digit `c`; -1 when it is none.
int hex_value(char c);
//! bytea in PostgreSQL's hex output form: "\x" and two lower-case digits per byte.
std::string encode_bytea_hex(std::string_view bytes);
//! bytea from its text input: the hex form or the escape form (\\ and \ooo).
Result<std::string> decode_bytea_text(std::string_view text);

//! A timestamp in the text PostgreSQL prints for timestamptz with DateStyle ISO in UTC
//! ("2024-05-01 12:30:00.5+00"), from ISO-8601 text as SQLite stores it ("T" or space
//! between date and time; "Z", "+hh", "+hh:mm" or no zone, which means UTC).
Result<std::string> timestamptz_from_iso8601(std::string_view text);
//! ISO-8601 text ("2024-05-01T12:30:00.5+00:00") from PostgreSQL's timestamptz output.
Result<std::string> iso8601_from_timestamptz(std::string_view text);

//! Big-endian encodings of the fixed-size binary formats.
std::string encode_int8_binary(int64_t value);
std::string encode_float8_binary(double value);
//! An integer from its binary form of `size` 2, 4 or 8 bytes.
Result<int64_t> decode_int_binary(std::string_view bytes);
//! A float from its binary form of 4 or 8 bytes.
Result<double> decode_float_binary(std::string_view bytes);

} // namespace switchyard::protocol
