#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/dialect.hpp"
#include "protocol/result.hpp"

namespace switchyard::protocol {

//! One column of a RowDescription.
struct FieldDescription {
  std::string name;
  uint32_t table_oid = 0;
  uint16_t column = 0;
  uint32_t type_oid = 0;
  uint16_t type_size = 0;
  uint32_t type_modifier = 0;
  uint16_t format = 0; //!< 0 text, 1 binary
};

//! The fields of a RowDescription body.
Result<std::vector<FieldDescription>> parse_row_description(std::string_view body);
//! Appends a RowDescription ('T') message with `fields`.
void append_row_description(std::string& out, std::span<const FieldDescription> fields);

//! A column value of a DataRow; nullopt is SQL NULL.
using Value = std::optional<std::string>;

//! The values of a DataRow body.
Result<std::vector<Value>> parse_data_row(std::string_view body);
//! Appends a DataRow ('D') holding the first `columns` values of DataRow body `body`, which
//! must already have been checked by parse_data_row.
void append_data_row_prefix(std::string& out, std::string_view body, size_t columns);

//! The rows affected according to a CommandComplete tag ("INSERT 0 5" -> 5), if it has one.
std::optional<uint64_t> affected_rows(std::string_view command_tag);

//! Where the row image starts in a RowDescription of a statement switchyard rewrote: the
//! client's columns are [0, marker), the image (marker, end).
std::optional<size_t> find_image_marker(std::span<const FieldDescription> fields);

//! SQL for the sequence the pg_attribute row `a` draws its values from, schema-qualified and
//! quoted as needed, or NULL: the one it owns (serial, identity), else one its DEFAULT names
//! (a sequence shared by several tables, or created apart).
inline constexpr std::string_view kColumnSequenceSql =
    "coalesce(pg_catalog.pg_get_serial_sequence(a.attrelid::pg_catalog.regclass::text, "
    "a.attname), (SELECT pg_catalog.format('%I.%I', n.nspname, s.relname) "
    "FROM pg_catalog.pg_attrdef ad JOIN pg_catalog.pg_depend d "
    "ON d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid = ad.oid "
    "AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass "
    "JOIN pg_catalog.pg_class s ON s.oid = d.refobjid AND s.relkind = 'S' "
    "JOIN pg_catalog.pg_namespace n ON n.oid = s.relnamespace "
    "WHERE ad.adrelid = a.attrelid AND ad.adnum = a.attnum LIMIT 1))";

//! A table as the secondary sees it, for applying row images.
struct TableShape {
  std::string qualified; //!< quoted, possibly schema-qualified name (a view's: its table's)
  //! What identifies a row: the primary key; else (PostgreSQL) the replica identity index or
  //! a unique index on NOT NULL columns; empty when the table has none.
  std::vector<std::string> key_columns;
  std::vector<std::string> generated;   //!< GENERATED ... STORED columns: never written
  Dialect dialect = Dialect::kPostgres; //!< of the database the shape was read from
  //! Columns drawing from a sequence (kColumnSequenceSql), each with its sequence.
  std::vector<std::pair<std::string, std::string>> sequences{};
  //! A column whose DEFAULT calls VOLATILE functions of the database's own (not of an
  //! extension), which may write other tables (a counter) an image does not carry.
  struct WritingDefault {
    std::string column;
    std::vector<std::string> functions; //!< by name, schema aside, as the classifier names calls
  };
  std::vector<WritingDefault> writing_defaults{};
  //! Enabled BEFORE ROW triggers on INSERT or UPDATE, which may change the values an image
  //! writes (a timestamp, a normalised value) as they changed the primary's.
  bool rewriting_triggers = false;
  //! The session may set session_replication_role, which turns those triggers off.
  bool may_disable_triggers = false;
  //! Enabled triggers an upsert fires where the primary's statement fired none: BEFORE ROW
  //! INSERT (it fires for the row an upsert then finds), and statement-level ones on INSERT
  //! or UPDATE (an upsert fires both). Such a table's UPDATE images are written as UPDATEs
  //! by key, and a plain INSERT's as a plain INSERT; the replayer updates the rows the
  //! target has and inserts the others.
  bool kind_triggers = false;
  //! Tables inherit from it (INHERITS; a partitioned table's partitions do not count): an
  //! UPDATE of it returns their rows too, which an upsert would write into it.
  bool inheriting_children = false;
  //! A view's shape: the columns of its table the view does not show whose value the table
  //! chooses (a DEFAULT other than a literal, an identity; any such column when a BEFORE
  //! trigger may set it). A row image written through the view cannot carry them.
  std::vector<std::string> hidden_chosen{};

  bool is_generated(std::string_view column) const {
    return std::find(generated.begin(), generated.end(), column) != generated.end();
  }
  bool is_key(std::string_view column) const {
    return std::find(key_columns.begin(), key_columns.end(), column) != key_columns.end();
  }
};

//! The parameter type to declare for a value of type `oid` on another server: built-in
//! types (OID below 16384) are the same everywhere; user types (enums, domains) have other
//! OIDs there, so they are left for the server to infer (0).
inline uint32_t portable_type(uint32_t oid) {
  return oid < 16384 ? oid : 0;
}

//! An INSERT ... ON CONFLICT (key) DO UPDATE of `rows` rows of `columns` (in image order),
//! with parameters $1..$n for the first row, the next n for the second and so on; a plain
//! INSERT when the table has no key. Generated columns are left out of `columns` by the
//! caller. Several rows in one statement have their constraints checked after them all, as
//! the primary checked them after the statement that wrote them.
std::string upsert_sql(const TableShape& table, std::span<const std::string> columns,
                       size_t rows = 1);
//! An INSERT of `rows` rows of `columns`, as upsert_sql's without its ON CONFLICT clause.
std::string insert_sql(const TableShape& table, std::span<const std::string> columns,
                       size_t rows = 1);
//! An UPDATE of the row with the key in `columns` (image order, parameters $1..$n) to those
//! values; it finds the row in a child by inheritance too. Empty when `columns` are all key.
//! Of `rows` rows (PostgreSQL only), one statement joining them as VALUES, parameters in
//! upsert_sql's order; a parameter declared of type 0 (`types`, one row's, as portable_type
//! leaves a type of the database's own) takes its column's type there.
std::string update_sql(const TableShape& table, std::span<const std::string> columns,
                       size_t rows = 1, std::span<const uint32_t> types = {});
//! A DELETE of `rows` rows by primary key, with parameters $1..$k for the first row's key (in
//! key order), the next k for the second's and so on.
std::string delete_sql(const TableShape& table, size_t rows = 1);
//! The most parameters one statement for the secondary takes (SQLite's limit; PostgreSQL's
//! is twice that): a row image of more is written by several.
inline constexpr size_t kMaxStatementParameters = 32766;
//! How many rows of `parameters_per_row` values one such statement takes (at least one).
inline size_t rows_per_statement(size_t parameters_per_row) {
  return std::max<size_t>(kMaxStatementParameters / std::max<size_t>(parameters_per_row, 1), 1);
}

//! For a table without a key, whose rows are a multiset: counts the rows whose `columns`
//! equal parameters $1..$n (NULL equal to NULL). PostgreSQL compares the columns as text,
//! so types without an equality operator (json, point) compare too.
std::string count_equal_rows_sql(const TableShape& table, std::span<const std::string> columns);
//! Deletes up to `limit` of the rows count_equal_rows_sql counts.
std::string delete_equal_rows_sql(const TableShape& table, std::span<const std::string> columns,
                                  uint64_t limit);

} // namespace switchyard::protocol
