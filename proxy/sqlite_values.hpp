#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "protocol/row_image.hpp"
#include "proxy/sqlite_engine.hpp"

namespace switchyard::proxy {

//! The PostgreSQL type a SQLite column declared as `declared` (may be null) is reported as:
//! INTEGER -> bigint, REAL -> double precision, TEXT -> text, BLOB -> bytea, BOOLEAN ->
//! boolean, TIMESTAMP/DATETIME -> timestamptz (ISO-8601 text), NUMERIC -> numeric, ...
//! 0 when nothing is declared.
uint32_t type_for_declared(const char* declared);
//! The type for a value of SQLite storage class `storage` (SQLITE_INTEGER, ...) in a column
//! with no declared type.
uint32_t type_for_storage(int storage);

//! Appends column `column` of the current row of `statement` to a DataRow body as a value of
//! `type` in `format` (0 text, 1 binary). A value that cannot be represented as that type
//! without changing it is an error, never a silent coercion.
SqlStatus append_column(std::string& row, sqlite3_stmt* statement, int column, uint32_t type,
                        uint16_t format);

//! A Bind parameter decoded for SQLite: NULL, integer, real, text or blob.
struct Blob {
  std::string bytes;
};
using SqliteParameter = std::variant<std::monostate, int64_t, double, std::string, Blob>;

//! Decodes a Bind parameter sent as `type` (0: unspecified) in `format`. Text must be valid
//! UTF-8; NaN is refused because SQLite would store it as NULL.
SqlStatus decode_parameter(const protocol::Value& value, uint32_t type, uint16_t format,
                           SqliteParameter& out);
//! Binds a decoded parameter to position `index` (1-based) of `statement`.
void bind_parameter(sqlite3_stmt* statement, int index, const SqliteParameter& value);

} // namespace switchyard::proxy
