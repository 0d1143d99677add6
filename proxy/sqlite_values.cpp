#include "proxy/sqlite_values.hpp"

#include <cctype>
#include <cmath>

#include "protocol/pg_values.hpp"
#include "protocol/wire.hpp"

namespace switchyard::proxy {

namespace oid = protocol::oid;

namespace {

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

SqlError invalid(std::string_view sqlstate, std::string message) {
  return SqlError{std::string(sqlstate), std::move(message), {}};
}

// The value's text as SQLite holds it.
std::string_view text_of(sqlite3_stmt* statement, int column) {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(statement, column));
  return {text ? text : "", static_cast<size_t>(sqlite3_column_bytes(statement, column))};
}

std::string_view blob_of(sqlite3_stmt* statement, int column) {
  const auto* data = static_cast<const char*>(sqlite3_column_blob(statement, column));
  return {data ? data : "", static_cast<size_t>(sqlite3_column_bytes(statement, column))};
}

std::string column_label(sqlite3_stmt* statement, int column) {
  const char* name = sqlite3_column_name(statement, column);
  return std::string("column \"") + (name ? name : "?") + "\"";
}

SqlError not_representable(sqlite3_stmt* statement, int column, uint32_t type,
                           std::string_view storage) {
  return invalid("22P02", column_label(statement, column) + " is " + protocol::type_name(type) +
                              " but holds a SQLite " + std::string(storage) + " value (" +
                              std::string(text_of(statement, column)) +
                              ") that is not one; cast it in the query");
}

// The value in text form for `type`; errors when it cannot be one.
SqlStatus text_value(sqlite3_stmt* statement, int column, uint32_t type, std::string& out) {
  int storage = sqlite3_column_type(statement, column);
  switch (type) {
  case oid::kInt8:
  case oid::kInt4:
  case oid::kInt2:
    if (storage == SQLITE_INTEGER) {
      out = std::to_string(sqlite3_column_int64(statement, column));
      return std::nullopt;
    }
    if (storage == SQLITE_TEXT && protocol::parse_int8(text_of(statement, column))) {
      out = std::string(text_of(statement, column));
      return std::nullopt;
    }
    return not_representable(statement, column, type,
                             storage == SQLITE_FLOAT ? "REAL" : "non-integer");
  case oid::kFloat8:
  case oid::kFloat4:
    if (storage == SQLITE_INTEGER || storage == SQLITE_FLOAT) {
      out = protocol::format_float8(sqlite3_column_double(statement, column));
      return std::nullopt;
    }
    if (auto number = protocol::parse_float8(text_of(statement, column))) {
      out = protocol::format_float8(*number);
      return std::nullopt;
    }
    return not_representable(statement, column, type, "TEXT");
  case oid::kBool:
    if (storage == SQLITE_INTEGER) {
      int64_t v = sqlite3_column_int64(statement, column);
      if (v == 0 || v == 1) {
        out = v ? "t" : "f";
        return std::nullopt;
      }
    } else if (auto flag = protocol::parse_bool(text_of(statement, column))) {
      out = *flag ? "t" : "f";
      return std::nullopt;
    }
    return not_representable(statement, column, type, "non-boolean");
  case oid::kBytea:
    out = protocol::encode_bytea_hex(storage == SQLITE_BLOB ? blob_of(statement, column)
                                                            : text_of(statement, column));
    return std::nullopt;
  case oid::kTimestamptz:
  case oid::kTimestamp: {
    auto stamp = protocol::timestamptz_from_iso8601(text_of(statement, column));
    if (!stamp) return invalid("22007", column_label(statement, column) + ": " + stamp.error());
    out = std::move(*stamp);
    if (type == oid::kTimestamp) out.erase(out.find_last_of("+-"));
    return std::nullopt;
  }
  default:
    if (storage == SQLITE_FLOAT) {
      out = protocol::format_float8(sqlite3_column_double(statement, column));
      return std::nullopt;
    }
    if (storage == SQLITE_BLOB && !protocol::valid_utf8(blob_of(statement, column))) {
      return invalid("22021", column_label(statement, column) +
                                  " holds a BLOB that is not valid UTF-8 text; declare it BLOB "
                                  "or read it as bytea");
    }
    out = std::string(storage == SQLITE_BLOB ? blob_of(statement, column)
                                             : text_of(statement, column));
    return std::nullopt;
  }
}

} // namespace

uint32_t type_for_declared(const char* declared) {
  if (declared == nullptr || *declared == '\0') return 0;
  std::string t(declared);
  for (char& c : t)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  // Exact type names first, then SQLite's own affinity rules (section 3.1 of its datatype
  // documentation) for everything else.
  if (contains(t, "BOOL")) return oid::kBool;
  if (contains(t, "TIMESTAMP") || contains(t, "DATETIME")) {
    return contains(t, "WITHOUT TIME ZONE") ? oid::kTimestamp : oid::kTimestamptz;
  }
  if (t == "DATE") return oid::kDate;
  if (t == "UUID") return oid::kUuid;
  if (t == "JSON") return oid::kJson;
  if (t == "JSONB") return oid::kJsonb;
  if (t == "BYTEA") return oid::kBytea;
  if (contains(t, "INT")) return oid::kInt8;
  if (contains(t, "CHAR") || contains(t, "CLOB") || contains(t, "TEXT")) return oid::kText;
  if (contains(t, "BLOB")) return oid::kBytea;
  if (contains(t, "REAL") || contains(t, "FLOA") || contains(t, "DOUB")) return oid::kFloat8;
  if (contains(t, "NUMERIC") || contains(t, "DECIMAL")) return oid::kNumeric;
  return oid::kText;
}

uint32_t type_for_storage(int storage) {
  switch (storage) {
  case SQLITE_INTEGER: return oid::kInt8;
  case SQLITE_FLOAT: return oid::kFloat8;
  case SQLITE_BLOB: return oid::kBytea;
  default: return oid::kText;
  }
}

SqlStatus append_column(std::string& row, sqlite3_stmt* statement, int column, uint32_t type,
                        uint16_t format) {
  int storage = sqlite3_column_type(statement, column);
  if (storage == SQLITE_NULL) {
    protocol::append_u32(row, 0xFFFFFFFFu);
    return std::nullopt;
  }
  std::string value;
  if (format == 0) {
    if (auto failed = text_value(statement, column, type, value)) return failed;
  } else {
    switch (type) {
    case oid::kInt8: {
      if (storage != SQLITE_INTEGER)
        return not_representable(statement, column, type, "non-integer");
      value = protocol::encode_int8_binary(sqlite3_column_int64(statement, column));
      break;
    }
    case oid::kFloat8:
      if (storage != SQLITE_INTEGER && storage != SQLITE_FLOAT)
        return not_representable(statement, column, type, "non-numeric");
      value = protocol::encode_float8_binary(sqlite3_column_double(statement, column));
      break;
    case oid::kBool: {
      std::string text;
      if (auto failed = text_value(statement, column, type, text)) return failed;
      value = std::string(1, text == "t" ? '\1' : '\0');
      break;
    }
    case oid::kBytea:
      value = std::string(storage == SQLITE_BLOB ? blob_of(statement, column)
                                                 : text_of(statement, column));
      break;
    case oid::kText:
    case oid::kVarchar:
    case oid::kBpchar:
    case oid::kName:
    case oid::kJson:
      if (auto failed = text_value(statement, column, type, value)) return failed;
      break;
    default:
      return invalid("0A000", "binary format for " + protocol::type_name(type) +
                                  " is not supported by switchyard's SQLite engine; ask for text");
    }
  }
  protocol::append_u32(row, static_cast<uint32_t>(value.size()));
  row += value;
  return std::nullopt;
}

namespace {

SqlStatus decode_text_parameter(std::string_view text, uint32_t type, SqliteParameter& out) {
  switch (type) {
  case oid::kInt8:
  case oid::kInt4:
  case oid::kInt2:
  case oid::kOid: {
    auto number = protocol::parse_int8(text);
    if (!number) return invalid("22P02", number.error());
    out = *number;
    return std::nullopt;
  }
  case oid::kFloat8:
  case oid::kFloat4: {
    auto number = protocol::parse_float8(text);
    if (!number) return invalid("22P02", number.error());
    out = *number;
    return std::nullopt;
  }
  case oid::kBool: {
    auto flag = protocol::parse_bool(text);
    if (!flag) return invalid("22P02", flag.error());
    out = int64_t{*flag ? 1 : 0};
    return std::nullopt;
  }
  case oid::kBytea: {
    auto bytes = protocol::decode_bytea_text(text);
    if (!bytes) return invalid("22P02", bytes.error());
    out = Blob{std::move(*bytes)};
    return std::nullopt;
  }
  case oid::kTimestamptz:
  case oid::kTimestamp: {
    auto stamp = protocol::iso8601_from_timestamptz(text);
    if (!stamp) return invalid("22007", stamp.error());
    if (type == oid::kTimestamp) stamp->erase(stamp->find_last_of("+-"));
    out = std::move(*stamp);
    return std::nullopt;
  }
  default:
    if (!protocol::valid_utf8(text))
      return invalid("22021", "invalid byte sequence for encoding \"UTF8\" in a parameter");
    out = std::string(text);
    return std::nullopt;
  }
}

std::string uuid_text(std::string_view bytes) {
  std::string hex = protocol::encode_bytea_hex(bytes).substr(2);
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20);
}

} // namespace

SqlStatus decode_parameter(const protocol::Value& value, uint32_t type, uint16_t format,
                           SqliteParameter& out) {
  if (!value) {
    out = std::monostate{};
    return std::nullopt;
  }
  if (format == 0) {
    if (auto failed = decode_text_parameter(*value, type, out)) return failed;
  } else {
    switch (type) {
    case oid::kInt8:
    case oid::kInt4:
    case oid::kInt2: {
      auto number = protocol::decode_int_binary(*value);
      if (!number) return invalid("22P03", number.error());
      out = *number;
      break;
    }
    case oid::kFloat8:
    case oid::kFloat4: {
      auto number = protocol::decode_float_binary(*value);
      if (!number) return invalid("22P03", number.error());
      out = *number;
      break;
    }
    case oid::kBool:
      if (value->size() != 1) return invalid("22P03", "incorrect binary data format for boolean");
      out = int64_t{(*value)[0] != 0 ? 1 : 0};
      break;
    case oid::kBytea: out = Blob{*value}; break;
    case oid::kUuid:
      if (value->size() != 16) return invalid("22P03", "incorrect binary data format for uuid");
      out = uuid_text(*value);
      break;
    case oid::kUnspecified:
    case oid::kText:
    case oid::kVarchar:
    case oid::kBpchar:
    case oid::kName:
    case oid::kJson:
      if (!protocol::valid_utf8(*value))
        return invalid("22021", "invalid byte sequence for encoding \"UTF8\" in a parameter");
      out = *value;
      break;
    default:
      return invalid("0A000", "binary parameters of type " + protocol::type_name(type) +
                                  " are not supported by switchyard's SQLite engine");
    }
  }
  if (const double* number = std::get_if<double>(&out); number && std::isnan(*number)) {
    return invalid("22P02", "SQLite cannot store NaN (it would become NULL)");
  }
  return std::nullopt;
}

void bind_parameter(sqlite3_stmt* statement, int index, const SqliteParameter& value) {
  if (const auto* number = std::get_if<int64_t>(&value)) {
    sqlite3_bind_int64(statement, index, *number);
  } else if (const auto* real = std::get_if<double>(&value)) {
    sqlite3_bind_double(statement, index, *real);
  } else if (const auto* text = std::get_if<std::string>(&value)) {
    sqlite3_bind_text64(statement, index, text->data(), text->size(), SQLITE_STATIC, SQLITE_UTF8);
  } else if (const auto* blob = std::get_if<Blob>(&value)) {
    sqlite3_bind_blob64(statement, index, blob->bytes.data(), blob->bytes.size(), SQLITE_STATIC);
  } else {
    sqlite3_bind_null(statement, index);
  }
}

} // namespace switchyard::proxy
