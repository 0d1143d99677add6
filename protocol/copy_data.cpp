#include "protocol/copy_data.hpp"

#include <algorithm>
#include <cctype>

#include "protocol/classify.hpp"
#include "protocol/pg_values.hpp"
#include "protocol/row_image.hpp"
#include "protocol/wire.hpp"

namespace switchyard::protocol {

std::string string_constant(std::string_view text) {
  std::string out = "E'";
  for (char c : text) {
    if (c == '\'' || c == '\\') out += c;
    out += c;
  }
  out += '\'';
  return out;
}

namespace {

// " WITH (name arg, ...)" of the options of `copy` for which `keep` holds; empty for none.
template <typename Keep> std::string with_options(const CopyFrom& copy, Keep keep) {
  std::string out;
  for (const auto& [name, argument] : copy.options) {
    if (!keep(name)) continue;
    out += out.empty() ? " WITH (" : ", ";
    out += name;
    if (!argument.empty()) out += " " + argument;
  }
  if (!out.empty()) out += ")";
  return out;
}

// Scans the line of COPY text or CSV data starting at `pos` to its end (an unescaped or
// unquoted newline or carriage return, or the end of the data), which it returns; calls
// `on_delimiter(i)` at each delimiter between fields.
template <typename OnDelimiter>
size_t scan_line(std::string_view data, size_t pos, const CopyFormat& format,
                 OnDelimiter on_delimiter) {
  bool csv = format.kind == CopyFormat::Kind::kCsv;
  // As in PostgreSQL, an escape equal to the quote is no escape: a doubled quote toggles twice.
  char escape = format.escape == format.quote ? '\0' : format.escape;
  bool in_quote = false;
  bool last_was_escape = false;
  size_t i = pos;
  for (; i < data.size(); ++i) {
    char c = data[i];
    if (csv) {
      if (in_quote && escape != '\0' && c == escape) last_was_escape = !last_was_escape;
      if (c == format.quote && !last_was_escape) in_quote = !in_quote;
      if (c != escape) last_was_escape = false;
      if (in_quote) continue;
    } else if (c == '\\') {
      ++i; // the escaped character, even a newline, belongs to the field
      continue;
    }
    if (c == '\n' || c == '\r') break;
    if (c == format.delimiter) on_delimiter(i);
  }
  return std::min(i, data.size());
}

} // namespace

std::vector<CopyRow> copy_rows(std::string_view data, const CopyFormat& format) {
  std::vector<CopyRow> rows;
  bool header = format.header;
  size_t pos = 0;
  while (pos < data.size()) {
    CopyRow row{pos, pos, 1};
    row.end = scan_line(data, pos, format, [&](size_t) { ++row.fields; });
    pos = row.end;
    if (pos < data.size()) pos += data.compare(pos, 2, "\r\n") == 0 ? 2 : 1;
    if (data.substr(row.begin, row.end - row.begin) == "\\.") break;
    if (header) {
      header = false;
    } else {
      rows.push_back(row);
    }
  }
  return rows;
}

std::vector<std::string_view> copy_fields(std::string_view line, const CopyFormat& format) {
  std::vector<std::string_view> fields;
  size_t begin = 0;
  size_t end = scan_line(line, 0, format, [&](size_t delimiter) {
    fields.push_back(line.substr(begin, delimiter - begin));
    begin = delimiter + 1;
  });
  fields.push_back(line.substr(begin, end - begin));
  return fields;
}

namespace {

// Text format: \b \f \n \r \t \v, up to three octal digits, \x and up to two hex digits;
// a backslash before any other character stands for that character.
std::string unescape_text_field(std::string_view field) {
  std::string value;
  value.reserve(field.size());
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] != '\\' || i + 1 == field.size()) {
      value += field[i];
      continue;
    }
    char c = field[++i];
    if (c >= '0' && c <= '7') {
      int code = c - '0';
      for (int more = 0;
           more < 2 && i + 1 < field.size() && field[i + 1] >= '0' && field[i + 1] <= '7'; ++more)
        code = code * 8 + (field[++i] - '0');
      value += static_cast<char>(code & 0xff);
    } else if (c == 'x' && i + 1 < field.size() && hex_value(field[i + 1]) >= 0) {
      int code = hex_value(field[++i]);
      if (i + 1 < field.size() && hex_value(field[i + 1]) >= 0)
        code = code * 16 + hex_value(field[++i]);
      value += static_cast<char>(code);
    } else {
      switch (c) {
      case 'b': value += '\b'; break;
      case 'f': value += '\f'; break;
      case 'n': value += '\n'; break;
      case 'r': value += '\r'; break;
      case 't': value += '\t'; break;
      case 'v': value += '\v'; break;
      default: value += c; break;
      }
    }
  }
  return value;
}

// CSV: a quote opens a quoted stretch anywhere in the field; in it, the escape character
// before a quote or itself stands for that character, and the next quote closes it.
std::string unquote_csv_field(std::string_view field, char quote, char escape) {
  std::string value;
  value.reserve(field.size());
  bool quoted = false;
  for (size_t i = 0; i < field.size(); ++i) {
    char c = field[i];
    if (!quoted) {
      if (c == quote) {
        quoted = true;
      } else {
        value += c;
      }
    } else if (c == escape && i + 1 < field.size() &&
               (field[i + 1] == quote || field[i + 1] == escape)) {
      value += field[++i];
    } else if (c == quote) {
      quoted = false;
    } else {
      value += c;
    }
  }
  return value;
}

} // namespace

std::string copy_field_value(std::string_view field, const CopyFormat& format) {
  if (format.kind == CopyFormat::Kind::kCsv)
    return unquote_csv_field(field, format.quote, format.escape);
  return unescape_text_field(field);
}

std::optional<std::vector<CopyRow>> binary_copy_rows(std::string_view data) {
  constexpr std::string_view kSignature("PGCOPY\n\377\r\n\0", 11);
  if (data.substr(0, kSignature.size()) != kSignature || data.size() < kSignature.size() + 8) {
    return std::nullopt;
  }
  size_t pos = kSignature.size() + 4; // the flags
  uint32_t extension = read_u32(data.data() + pos);
  pos += 4;
  if (extension > data.size() - pos) return std::nullopt;
  pos += extension;
  std::vector<CopyRow> rows;
  while (true) {
    if (data.size() - pos < 2) return std::nullopt;
    auto count = static_cast<int16_t>(read_u16(data.data() + pos));
    if (count == -1) return rows; // the trailer
    if (count < 0) return std::nullopt;
    CopyRow row{pos, pos + 2, static_cast<size_t>(count)};
    for (int16_t i = 0; i < count; ++i) {
      if (data.size() - row.end < 4) return std::nullopt;
      auto length = static_cast<int32_t>(read_u32(data.data() + row.end));
      row.end += 4;
      if (length < -1 || (length > 0 && static_cast<size_t>(length) > data.size() - row.end)) {
        return std::nullopt;
      }
      if (length > 0) row.end += static_cast<size_t>(length);
    }
    rows.push_back(row);
    pos = row.end;
  }
}

std::optional<std::vector<std::optional<std::string_view>>>
binary_copy_fields(std::string_view fields) {
  std::vector<std::optional<std::string_view>> out;
  size_t pos = 0;
  while (pos < fields.size()) {
    if (fields.size() - pos < 4) return std::nullopt;
    auto length = static_cast<int32_t>(read_u32(fields.data() + pos));
    pos += 4;
    if (length == -1) {
      out.emplace_back();
      continue;
    }
    if (length < 0 || static_cast<size_t>(length) > fields.size() - pos) return std::nullopt;
    out.emplace_back(fields.substr(pos, static_cast<size_t>(length)));
    pos += static_cast<size_t>(length);
  }
  return out;
}

std::string append_binary_copy_fields(std::string_view data, std::span<const CopyRow> rows,
                                      size_t fields, std::span<const std::string_view> values,
                                      size_t added) {
  std::string out;
  out.reserve(data.size() + rows.size() * (values.empty() ? 0 : values[0].size()));
  size_t copied = 0;
  size_t next = 0;
  for (const CopyRow& row : rows) {
    if (row.fields != fields) continue;
    if (next == values.size()) break;
    out.append(data.substr(copied, row.begin - copied));
    append_u16(out, static_cast<uint16_t>(fields + added));
    out.append(data.substr(row.begin + 2, row.end - row.begin - 2));
    out.append(values[next++]);
    copied = row.end;
  }
  out.append(data.substr(copied));
  return out;
}

std::string append_copy_fields(std::string_view data, std::span<const CopyRow> rows, size_t fields,
                               std::span<const std::string_view> values, char delimiter) {
  std::string out;
  out.reserve(data.size() + rows.size() * (values.empty() ? 0 : values[0].size() + 1));
  size_t copied = 0;
  size_t next = 0;
  for (const CopyRow& row : rows) {
    if (row.fields < fields) continue;
    if (next == values.size()) break;
    out.append(data.substr(copied, row.end - copied));
    out += delimiter;
    out.append(values[next++]);
    copied = row.end;
  }
  out.append(data.substr(copied));
  return out;
}

std::string copy_from_sql(const CopyFrom& copy, std::string_view table,
                          std::span<const std::string> columns) {
  std::string sql = "COPY ";
  sql += table;
  sql += " (";
  for (size_t i = 0; i < columns.size(); ++i) {
    if (i > 0) sql += ", ";
    sql += quote_identifier(columns[i]);
  }
  sql += ") FROM STDIN";
  sql += with_options(copy, [](const std::string&) { return true; });
  return sql;
}

std::string copy_values_sql(const CopyFrom& copy, std::span<const std::string> expressions,
                            size_t rows) {
  std::string sql = "COPY (SELECT ";
  for (size_t i = 0; i < expressions.size(); ++i) {
    if (i > 0) sql += ", ";
    sql += expressions[i];
  }
  sql += " FROM generate_series(1, " + std::to_string(rows) + ")) TO STDOUT";
  sql += with_options(copy, [](const std::string& name) {
    return name == "format" || name == "delimiter" || name == "null" || name == "quote" ||
           name == "escape" || name == "encoding";
  });
  return sql;
}

std::string column_defaults_sql(std::string_view table) {
  return "SELECT a.attname, pg_catalog.current_setting('client_encoding'), CASE WHEN a.attidentity "
         "<> '' THEN format('nextval(%L::regclass)', "
         "pg_get_serial_sequence(a.attrelid::regclass::text, a.attname)) "
         "ELSE pg_get_expr(d.adbin, d.adrelid) END, "
         "pg_catalog.format_type(a.atttypid, a.atttypmod), " +
         std::string(kColumnSequenceSql) +
         ", EXISTS (SELECT FROM pg_catalog.pg_index i WHERE i.indrelid = a.attrelid AND "
         "i.indisprimary AND a.attnum = ANY (i.indkey))"
         " FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d "
         "ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
         "WHERE a.attrelid = pg_catalog.to_regclass(" +
         string_constant(table) +
         ") AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum";
}

bool encoding_embeds_ascii(std::string_view encoding) {
  std::string name;
  for (char c : encoding) {
    if (c != '_' && c != '-')
      name += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  for (std::string_view unsafe :
       {"SJIS", "SHIFTJIS", "SHIFTJIS2004", "BIG5", "GBK", "UHC", "GB18030", "WIN932", "WIN936",
        "WIN949", "WIN950", "CP932", "CP936", "CP949", "CP950"}) {
    if (name == unsafe) return true;
  }
  return false;
}

} // namespace switchyard::protocol
