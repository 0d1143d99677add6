#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "protocol/pg_values.hpp"

using namespace switchyard::protocol;

TEST_CASE("numbers and booleans parse as PostgreSQL reads them") {
  CHECK(*parse_int8(" -9223372036854775808") == std::numeric_limits<int64_t>::min());
  CHECK(*parse_int8("+42") == 42);
  CHECK(parse_int8("9223372036854775808").error() ==
        "value \"9223372036854775808\" is out of range for type bigint");
  CHECK_FALSE(parse_int8("12abc"));
  CHECK(std::isinf(*parse_float8("-Infinity")));
  CHECK(std::isnan(*parse_float8("NaN")));
  CHECK(*parse_float8("1e-300") == 1e-300);
  CHECK_FALSE(parse_float8(""));
  CHECK(format_float8(0.1) == "0.1");
  CHECK(format_float8(-std::numeric_limits<double>::infinity()) == "-Infinity");
  CHECK(format_float8(1e20) == "1e+20");
  CHECK(*parse_bool("YES"));
  CHECK_FALSE(*parse_bool("off"));
  CHECK_FALSE(parse_bool("2"));
}

TEST_CASE("bytea text forms and UTF-8 checks") {
  std::string bytes("\0\x01\xff", 3);
  CHECK(encode_bytea_hex(bytes) == "\\x0001ff");
  CHECK(*decode_bytea_text("\\x0001FF") == bytes);
  CHECK(*decode_bytea_text("a\\\\b\\001") == std::string("a\\b\x01"));
  CHECK_FALSE(decode_bytea_text("\\x0"));
  CHECK_FALSE(decode_bytea_text("bad\\9"));
  CHECK(valid_utf8("ünïcødé ✓ 𝄞"));
  CHECK_FALSE(valid_utf8("\xff"));
  CHECK_FALSE(valid_utf8("\xc3\x28"));
  CHECK_FALSE(valid_utf8("\xc0\xaf"));         // overlong '/'
  CHECK_FALSE(valid_utf8("\xed\xa0\x80"));     // a surrogate
  CHECK_FALSE(valid_utf8("\xf4\x90\x80\x80")); // above U+10FFFF
}

TEST_CASE("timestamps convert between ISO-8601 and PostgreSQL's timestamptz text") {
  CHECK(*timestamptz_from_iso8601("2024-05-01T12:30:00.5Z") == "2024-05-01 12:30:00.5+00");
  CHECK(*timestamptz_from_iso8601("2024-05-01 12:30:00") == "2024-05-01 12:30:00+00");
  CHECK(*timestamptz_from_iso8601("2024-05-01T12:30:00-05:30") == "2024-05-01 12:30:00-05:30");
  CHECK(*timestamptz_from_iso8601("2024-05-01") == "2024-05-01 00:00:00+00");
  CHECK(*iso8601_from_timestamptz("2024-05-01 12:30:00.123456+00") ==
        "2024-05-01T12:30:00.123456+00:00");
  CHECK(*iso8601_from_timestamptz("2024-05-01 12:30:00+05:30") == "2024-05-01T12:30:00+05:30");
  CHECK_FALSE(timestamptz_from_iso8601("yesterday"));
  CHECK_FALSE(timestamptz_from_iso8601("2024-05-01T12:30"));
}

TEST_CASE("binary integers and floats") {
  CHECK(*decode_int_binary(encode_int8_binary(-5)) == -5);
  CHECK(*decode_int_binary(std::string("\xff\xfe", 2)) == -2);
  CHECK(*decode_int_binary(std::string("\0\0\1\0", 4)) == 256);
  CHECK_FALSE(decode_int_binary("abc"));
  CHECK(*decode_float_binary(encode_float8_binary(2.5)) == 2.5);
  CHECK(*decode_float_binary(std::string("\x3f\x80\0\0", 4)) == 1.0);
  CHECK(type_name(oid::kTimestamptz) == "timestamp with time zone");
}
