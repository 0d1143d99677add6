#include "protocol/row_image.hpp"

#include <algorithm>
#include <charconv>

#include "protocol/classify.hpp"
#include "protocol/wire.hpp"

namespace switchyard::protocol {

Result<std::vector<FieldDescription>> parse_row_description(std::string_view body) {
  BodyReader reader(body);
  auto count = reader.u16();
  if (!count) return Error{"RowDescription too short"};
  std::vector<FieldDescription> fields;
  fields.reserve(*count);
  for (uint16_t i = 0; i < *count; ++i) {
    FieldDescription field;
    auto name = reader.cstring();
    auto table = reader.u32();
    auto column = reader.u16();
    auto type = reader.u32();
    auto size = reader.u16();
    auto modifier = reader.u32();
    auto format = reader.u16();
    if (!name || !table || !column || !type || !size || !modifier || !format) {
      return Error{"RowDescription field " + std::to_string(i) + " is truncated"};
    }
    field.name = std::string(*name);
    field.table_oid = *table;
    field.column = *column;
    field.type_oid = *type;
    field.type_size = *size;
    field.type_modifier = *modifier;
    field.format = *format;
    fields.push_back(std::move(field));
  }
  return fields;
}

void append_row_description(std::string& out, std::span<const FieldDescription> fields) {
  MessageBuilder message(out, 'T');
  message.u16(static_cast<uint16_t>(fields.size()));
  for (const FieldDescription& field : fields) {
    message.cstring(field.name)
        .u32(field.table_oid)
        .u16(field.column)
        .u32(field.type_oid)
        .u16(field.type_size)
        .u32(field.type_modifier)
        .u16(field.format);
  }
}

Result<std::vector<Value>> parse_data_row(std::string_view body) {
  BodyReader reader(body);
  auto count = reader.u16();
  if (!count) return Error{"DataRow too short"};
  std::vector<Value> values;
  values.reserve(*count);
  for (uint16_t i = 0; i < *count; ++i) {
    auto length = reader.u32();
    if (!length) return Error{"DataRow column " + std::to_string(i) + " is truncated"};
    if (*length == 0xFFFFFFFFu) {
      values.emplace_back(std::nullopt);
      continue;
    }
    auto bytes = reader.bytes(*length);
    if (!bytes) return Error{"DataRow column " + std::to_string(i) + " is truncated"};
    values.emplace_back(std::string(*bytes));
  }
  return values;
}

void append_data_row_prefix(std::string& out, std::string_view body, size_t columns) {
  size_t pos = 2;
  for (size_t i = 0; i < columns; ++i) {
    uint32_t length = read_u32(body.data() + pos);
    pos += 4;
    if (length != 0xFFFFFFFFu) pos += length;
  }
  MessageBuilder message(out, 'D');
  message.u16(static_cast<uint16_t>(columns)).bytes(body.substr(2, pos - 2));
}

std::optional<uint64_t> affected_rows(std::string_view command_tag) {
  size_t space = command_tag.rfind(' ');
  if (space == std::string_view::npos) return std::nullopt;
  std::string_view number = command_tag.substr(space + 1);
  uint64_t rows = 0;
  auto [ptr, ec] = std::from_chars(number.data(), number.data() + number.size(), rows);
  if (ec != std::errc() || ptr != number.data() + number.size()) return std::nullopt;
  return rows;
}

std::optional<size_t> find_image_marker(std::span<const FieldDescription> fields) {
  for (size_t i = fields.size(); i-- > 0;) {
    if (fields[i].name == kImageMarker) return i;
  }
  return std::nullopt;
}

std::string insert_sql(const TableShape& table, std::span<const std::string> columns, size_t rows) {
  std::string sql = "INSERT INTO " + table.qualified + " (";
  for (size_t i = 0; i < columns.size(); ++i) {
    if (i > 0) sql += ", ";
    sql += quote_identifier(columns[i]);
  }
  // The primary already chose identity values; the secondary must take them as they are.
  // (SQLite has no identity columns, so nothing to override.)
  sql += table.dialect == Dialect::kPostgres ? ") OVERRIDING SYSTEM VALUE VALUES " : ") VALUES ";
  for (size_t row = 0; row < rows; ++row) {
    sql += row > 0 ? ", (" : "(";
    for (size_t i = 0; i < columns.size(); ++i) {
      if (i > 0) sql += ", ";
      sql += '$';
      sql += std::to_string(row * columns.size() + i + 1);
    }
    sql += ")";
  }
  return sql;
}

std::string upsert_sql(const TableShape& table, std::span<const std::string> columns, size_t rows) {
  std::string sql = insert_sql(table, columns, rows);
  if (table.key_columns.empty()) return sql;
  sql += " ON CONFLICT (";
  for (size_t i = 0; i < table.key_columns.size(); ++i) {
    if (i > 0) sql += ", ";
    sql += quote_identifier(table.key_columns[i]);
  }
  sql += ")";
  std::string updates;
  for (const std::string& column : columns) {
    if (table.is_key(column)) continue;
    if (!updates.empty()) updates += ", ";
    updates += quote_identifier(column) + " = EXCLUDED." + quote_identifier(column);
  }
  sql += updates.empty() ? " DO NOTHING" : " DO UPDATE SET " + updates;
  return sql;
}

std::string update_sql(const TableShape& table, std::span<const std::string> columns, size_t rows,
                       std::span<const uint32_t> types) {
  std::string set;
  std::string where;
  bool several = rows > 1;
  for (size_t i = 0; i < columns.size(); ++i) {
    bool key = table.is_key(columns[i]);
    std::string& clause = key ? where : set;
    if (!clause.empty()) clause += key ? " AND " : ", ";
    std::string column = quote_identifier(columns[i]);
    if (!several) {
      clause += column + " = $" + std::to_string(i + 1);
    } else if (key) {
      clause += "target." + column + " = image." + column;
    } else {
      clause += column + " = image." + column;
    }
  }
  if (set.empty() || where.empty()) return {};
  if (!several) return "UPDATE " + table.qualified + " SET " + set + " WHERE " + where;
  // VALUES would take an undeclared parameter for text; COALESCE with a NULL of the column's
  // type gives it that type without naming it.
  std::string values;
  std::string names;
  for (size_t row = 0; row < rows; ++row) {
    values += row > 0 ? ", (" : "(";
    for (size_t i = 0; i < columns.size(); ++i) {
      if (i > 0) values += ", ";
      std::string parameter = "$" + std::to_string(row * columns.size() + i + 1);
      if (i < types.size() && types[i] == 0) {
        values += "COALESCE(" + parameter + ", (NULL::" + table.qualified + ")." +
                  quote_identifier(columns[i]) + ")";
      } else {
        values += parameter;
      }
    }
    values += ")";
  }
  for (size_t i = 0; i < columns.size(); ++i) {
    if (i > 0) names += ", ";
    names += quote_identifier(columns[i]);
  }
  return "UPDATE " + table.qualified + " AS target SET " + set + " FROM (VALUES " + values +
         ") AS image (" + names + ") WHERE " + where;
}

std::string delete_sql(const TableShape& table, size_t rows) {
  std::string sql = "DELETE FROM " + table.qualified + " WHERE ";
  const auto& keys = table.key_columns;
  if (keys.size() == 1 && rows > 1) { // an IN list: one index scan for them all
    sql += quote_identifier(keys[0]) + " IN (";
    for (size_t row = 0; row < rows; ++row) {
      if (row > 0) sql += ", ";
      sql += "$" + std::to_string(row + 1);
    }
    return sql + ")";
  }
  for (size_t row = 0; row < rows; ++row) {
    if (row > 0) sql += " OR ";
    if (rows > 1) sql += "(";
    for (size_t i = 0; i < keys.size(); ++i) {
      if (i > 0) sql += " AND ";
      sql += quote_identifier(keys[i]) + " = $" + std::to_string(row * keys.size() + i + 1);
    }
    if (rows > 1) sql += ")";
  }
  return sql;
}

namespace {

std::string equal_row_condition(const TableShape& table, std::span<const std::string> columns) {
  std::string condition;
  for (size_t i = 0; i < columns.size(); ++i) {
    if (i > 0) condition += " AND ";
    std::string column = quote_identifier(columns[i]);
    std::string parameter = "$" + std::to_string(i + 1);
    if (table.dialect == Dialect::kSqlite) {
      condition += column + " IS " + parameter;
    } else {
      condition +=
          "CAST(" + column + " AS text) IS NOT DISTINCT FROM CAST(" + parameter + " AS text)";
    }
  }
  return condition;
}

} // namespace

std::string count_equal_rows_sql(const TableShape& table, std::span<const std::string> columns) {
  return "SELECT count(*) FROM " + table.qualified + " WHERE " +
         equal_row_condition(table, columns);
}

std::string delete_equal_rows_sql(const TableShape& table, std::span<const std::string> columns,
                                  uint64_t limit) {
  // A row without a key is told apart by its physical address.
  std::string address = table.dialect == Dialect::kSqlite ? "rowid" : "ctid";
  std::string rows = "SELECT " + address + " FROM " + table.qualified + " WHERE " +
                     equal_row_condition(table, columns) + " LIMIT " + std::to_string(limit);
  std::string sql = "DELETE FROM " + table.qualified + " WHERE " + address;
  sql += table.dialect == Dialect::kSqlite ? " IN (" + rows + ")" : " = ANY (ARRAY(" + rows + "))";
  return sql;
}

} // namespace switchyard::protocol
