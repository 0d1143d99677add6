#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace switchyard::protocol {

//! How COPY reads its data: the options of the statement that matter for splitting it.
struct CopyFormat {
  enum class Kind { kText, kCsv, kBinary };
  Kind kind = Kind::kText;
  char delimiter = '\t';
  char quote = '"';  //!< CSV only
  char escape = '"'; //!< CSV only
  bool header = false;
};

//! A COPY ... FROM STDIN as the parser read it: enough to run it again with more columns.
struct CopyFrom {
  std::vector<std::string> columns; //!< the client's column list; empty for every column
  //! Its options, each as name and SQL argument ("" when it has none, as FREEZE).
  std::vector<std::pair<std::string, std::string>> options;
  CopyFormat format;
  //! false when switchyard cannot add columns to it: HEADER MATCH (which checks the header
  //! against the column list), or a WHERE clause.
  bool extendable = true;
};

//! One line of COPY text or CSV data: [begin, end) without its line end, and its fields.
struct CopyRow {
  size_t begin = 0;
  size_t end = 0;
  size_t fields = 0;
};

//! `text` as an escape string constant (E'...'): right whatever standard_conforming_strings is.
std::string string_constant(std::string_view text);

//! The data rows of COPY text or CSV data, as PostgreSQL splits them: lines end at an
//! unescaped (text) or unquoted (CSV) newline, carriage return or both; the header line
//! and everything from an end-of-data line ("\.") on are not rows.
std::vector<CopyRow> copy_rows(std::string_view data, const CopyFormat& format);

//! The fields of one line of COPY text or CSV data (a row as copy_rows finds it) as they
//! stand in the data: escapes and quotes are not undone.
std::vector<std::string_view> copy_fields(std::string_view line, const CopyFormat& format);

//! The value of a field of COPY text or CSV data (one of copy_fields), as PostgreSQL reads it:
//! text's backslash escapes undone, CSV's quotes. Whether it stands for NULL is not told.
std::string copy_field_value(std::string_view field, const CopyFormat& format);

//! The fields of binary COPY tuple data after its field count: each field's bytes, nullopt
//! for NULL. nullopt when a length runs past the end.
std::optional<std::vector<std::optional<std::string_view>>>
binary_copy_fields(std::string_view fields);

//! The tuples of COPY binary data: each row spans a tuple, its field count included, and
//! `fields` is that count; the header and the trailer are not rows. nullopt when the data is
//! not well-formed binary COPY data (PostgreSQL then says what is wrong with it).
std::optional<std::vector<CopyRow>> binary_copy_rows(std::string_view data);

//! `data` with the fields of `values[i]` (each field's length and bytes) appended to the i-th
//! of `rows` that has exactly `fields` fields, its field count raised by `added`.
std::string append_binary_copy_fields(std::string_view data, std::span<const CopyRow> rows,
                                      size_t fields, std::span<const std::string_view> values,
                                      size_t added);

//! `data` with `values[i]` appended, behind a delimiter, to the i-th of `rows` that has at
//! least `fields` fields. A row with fewer is left as it is, so PostgreSQL still reports
//! the column it misses; one with more still gets the values, and its extra data error.
std::string append_copy_fields(std::string_view data, std::span<const CopyRow> rows, size_t fields,
                               std::span<const std::string_view> values, char delimiter);

//! `COPY table (columns) FROM STDIN WITH (options)` for `copy` with its column list
//! replaced by `columns`.
std::string copy_from_sql(const CopyFrom& copy, std::string_view table,
                          std::span<const std::string> columns);

//! A COPY TO STDOUT of `rows` rows of `expressions`, each evaluated per row, written in the
//! format (and delimiter, quoting, NULL string, encoding) that `copy` reads.
std::string copy_values_sql(const CopyFrom& copy, std::span<const std::string> expressions,
                            size_t rows);

//! For each column of `table` a COPY can write (not dropped, not GENERATED ... STORED), in
//! order: its name, the session's client_encoding, the expression of its default (an
//! identity column's nextval; NULL when it has none), its type, the sequence of a serial
//! or identity column (NULL for others), and whether it is in the primary key. No rows when
//! the table does not exist.
std::string column_defaults_sql(std::string_view table);

//! Whether `encoding` is one whose multi-byte characters may contain bytes that look like
//! ASCII (a backslash, a quote), so that COPY data in it cannot be split byte by byte.
bool encoding_embeds_ascii(std::string_view encoding);

} // namespace switchyard::protocol
