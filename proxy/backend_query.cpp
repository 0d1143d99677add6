#include "proxy/backend_query.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <cctype>

#include "protocol/classify.hpp"
#include "protocol/extended.hpp"
#include "protocol/messages.hpp"

namespace switchyard::proxy {

std::string quote_literal(std::string_view text) {
  std::string quoted = "'";
  for (char c : text) {
    if (c == '\'') quoted += '\'';
    quoted += c;
  }
  quoted += '\'';
  return quoted;
}

std::string describe_error(std::string_view body) {
  auto fields = protocol::parse_error(body);
  if (!fields) return "unreadable ErrorResponse";
  return fields->sqlstate + ": " + fields->message;
}

std::string sqlstate_of(std::string_view body) {
  auto fields = protocol::parse_error(body);
  return fields ? fields->sqlstate : std::string("?");
}

namespace {

// A failure to read table `name`'s shape, led by the SQLSTATE of `error` when the backend
// refused ("SQLSTATE: message"), as such errors are: 42P01 tells a table that does not exist.
Error shape_error(const std::string& name, std::string_view error) {
  bool refused = error.size() > 7 && error.substr(5, 2) == ": " &&
                 std::all_of(error.begin(), error.begin() + 5, [](char c) {
                   return std::isupper(static_cast<unsigned char>(c)) != 0 ||
                          std::isdigit(static_cast<unsigned char>(c)) != 0;
                 });
  std::string what = "cannot read the shape of " + name + ": ";
  if (!refused) return Error{what + std::string(error)};
  return Error{std::string(error.substr(0, 7)) + what + std::string(error.substr(7))};
}

// Reads the answers to what was just sent, up to ReadyForQuery: the rows of the last result
// set and the last tag; with `each`, also every result as its CommandComplete comes (with
// the fields last described: one Describe serves a pipeline's executions).
asio::awaitable<Result<QueryRows>> read_results(MessageReader& reader,
                                                std::vector<QueryRows>* each = nullptr) {
  QueryRows result;
  std::string error;
  while (true) {
    auto frame = co_await reader.read_frame();
    if (!frame) co_return Error{frame.error()};
    switch (frame->tag) {
    case 'T': {
      result.rows.clear();
      auto fields = protocol::parse_row_description(frame->body);
      if (!fields) co_return Error{fields.error()};
      result.fields = std::move(*fields);
      break;
    }
    case 'D': {
      auto values = protocol::parse_data_row(frame->body);
      if (!values) co_return Error{values.error()};
      result.rows.push_back(std::move(*values));
      break;
    }
    case 'C':
      result.command_tag = std::string(frame->body.substr(0, frame->body.find('\0')));
      if (each != nullptr) {
        each->push_back(result);
        result.rows.clear();
      }
      break;
    case 'E':
      if (error.empty()) error = describe_error(frame->body);
      break;
    case 'Z':
      if (!error.empty()) co_return Error{error};
      co_return result;
    default: break; // ParseComplete, BindComplete, ...
    }
  }
}

} // namespace

asio::awaitable<Result<QueryRows>> run_query(Stream& stream, MessageReader& reader,
                                             std::string_view sql) {
  std::string message;
  protocol::append_query(message, sql);
  if (auto ec = co_await stream.write_all(message); ec) co_return Error{ec.message()};
  co_return co_await read_results(reader);
}

asio::awaitable<Result<QueryRows>> run_query(Stream& stream, MessageReader& reader,
                                             std::string_view sql,
                                             const std::vector<uint32_t>& types,
                                             const std::vector<uint16_t>& formats,
                                             const std::vector<protocol::Value>& values) {
  std::string message;
  protocol::append_parse(message, protocol::ParseMessage{"", std::string(sql), types});
  protocol::append_bind(message, protocol::BindMessage{"", "", formats, values, {}});
  protocol::append_describe(message, 'P', "");
  protocol::append_execute(message, "", 0);
  protocol::append_sync(message);
  if (auto ec = co_await stream.write_all(message); ec) co_return Error{ec.message()};
  co_return co_await read_results(reader);
}

asio::awaitable<Result<std::vector<QueryRows>>>
run_query_each(Stream& stream, MessageReader& reader, std::string_view sql,
               const std::vector<uint32_t>& types, const std::vector<uint16_t>& formats,
               const std::vector<std::vector<protocol::Value>>& each) {
  std::vector<QueryRows> results;
  results.reserve(each.size());
  for (size_t from = 0; from < each.size(); from += kPipelinedExecutions) {
    size_t to = std::min(each.size(), from + kPipelinedExecutions);
    std::string message;
    protocol::append_parse(message, protocol::ParseMessage{"", std::string(sql), types});
    for (size_t i = from; i < to; ++i) {
      protocol::append_bind(message, protocol::BindMessage{"", "", formats, each[i], {}});
      if (i == from) protocol::append_describe(message, 'P', "");
      protocol::append_execute(message, "", 0);
    }
    protocol::append_sync(message);
    if (auto ec = co_await stream.write_all(message); ec) co_return Error{ec.message()};
    if (auto read = co_await read_results(reader, &results); !read) co_return Error{read.error()};
  }
  co_return results;
}

namespace {

// The parts of a possibly qualified, possibly quoted name ("s"."t" -> s, t).
std::vector<std::string> name_parts(std::string_view name) {
  std::vector<std::string> parts(1);
  bool quoted = false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    if (c == '"') {
      if (quoted && i + 1 < name.size() && name[i + 1] == '"') {
        parts.back() += '"';
        ++i;
      } else {
        quoted = !quoted;
      }
    } else if (c == '.' && !quoted) {
      parts.emplace_back();
    } else {
      parts.back() += quoted ? c : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
  }
  return parts;
}

// The names of the VOLATILE functions of the database's own the DEFAULT of pg_attribute row
// `a` calls, as a JSON array (NULL for none): PostgreSQL's functions are pinned (no
// pg_depend rows), an extension's are taken for value generators (uuid_generate_v4()).
constexpr std::string_view kWritingDefaultSql =
    "(SELECT pg_catalog.json_agg(DISTINCT p.proname) "
    "FROM pg_catalog.pg_attrdef ad JOIN pg_catalog.pg_depend d "
    "ON d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid = ad.oid "
    "AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass "
    "JOIN pg_catalog.pg_proc p ON p.oid = d.refobjid AND p.provolatile = 'v' "
    "WHERE ad.adrelid = a.attrelid AND ad.adnum = a.attnum AND NOT EXISTS (SELECT FROM "
    "pg_catalog.pg_depend e WHERE e.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass "
    "AND e.objid = p.oid AND e.deptype = 'e'))";

// The function names kWritingDefaultSql listed; one that is not such a list names a
// function still, so the column is not taken for one that cannot write.
std::vector<std::string> default_functions(std::string_view json) {
  boost::system::error_code error;
  boost::json::value parsed = boost::json::parse(json, error);
  if (error || !parsed.is_array()) return {std::string(json)};
  std::vector<std::string> functions;
  for (const boost::json::value& name : parsed.get_array()) {
    if (const boost::json::string* text = name.if_string()) functions.emplace_back(*text);
  }
  return functions;
}

// Whether the table of pg_attribute row `a` has enabled triggers an upsert fires where a
// plain INSERT or UPDATE would not (TableShape::kind_triggers): BEFORE ROW INSERT (tgtype
// bits ROW 1, BEFORE 2, INSERT 4), or statement-level on INSERT or UPDATE (16).
constexpr std::string_view kKindTriggersSql =
    "EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = a.attrelid "
    "AND NOT t.tgisinternal AND t.tgenabled IN ('O', 'A') "
    "AND (t.tgtype & 7 = 7 OR (t.tgtype & 1 = 0 AND t.tgtype & 20 <> 0)))";

// A SQLite table's shape from its table_xinfo pragma. PostgreSQL's schemas map onto SQLite's:
// public is main, pg_temp is temp.
asio::awaitable<Result<protocol::TableShape>>
query_sqlite_table_shape(Stream& stream, MessageReader& reader, const std::string& name) {
  auto parts = name_parts(name);
  std::string table = parts.back();
  std::string schema = parts.size() > 1 ? parts[parts.size() - 2] : "main";
  if (schema == "public") schema = "main";
  if (schema == "pg_temp") schema = "temp";
  std::string sql = "SELECT name, hidden IN (2, 3), pk FROM pragma_table_xinfo(" +
                    quote_literal(table) + ", " + quote_literal(schema) + ") ORDER BY cid";
  auto rows = co_await run_query(stream, reader, sql);
  if (!rows) co_return shape_error(name, rows.error());
  if (rows->rows.empty()) co_return shape_error(name, "42P01: no such table");
  protocol::TableShape shape;
  shape.dialect = protocol::Dialect::kSqlite;
  shape.qualified = (schema == "main" ? "" : protocol::quote_identifier(schema) + ".") +
                    protocol::quote_identifier(table);
  std::vector<std::pair<int64_t, std::string>> keys;
  for (const auto& row : rows->rows) {
    if (row.size() != 3 || !row[0] || !row[1] || !row[2]) continue;
    if (*row[1] == "t") shape.generated.push_back(*row[0]);
    if (*row[2] != "0") keys.emplace_back(std::stoll(*row[2]), *row[0]);
  }
  std::sort(keys.begin(), keys.end());
  for (auto& [position, column] : keys)
    shape.key_columns.push_back(std::move(column));
  co_return shape;
}

// The index whose key columns identify a row of a.attrelid, as logical replication's
// replica identity does: the primary key; else the replica identity index; else the unique
// index (immediate, not partial, on columns, not expressions) on the fewest columns, all
// NOT NULL. An upsert names its columns in ON CONFLICT; INCLUDE columns are no part of it.
constexpr const char* kRowKeyIndexSql =
    "SELECT x.indkey, x.indnkeyatts FROM pg_catalog.pg_index x WHERE x.indrelid = a.attrelid "
    "AND x.indisunique AND x.indimmediate AND x.indisvalid AND x.indpred IS NULL "
    "AND x.indexprs IS NULL AND (x.indisprimary OR NOT EXISTS (SELECT FROM "
    "pg_catalog.pg_attribute n WHERE n.attrelid = x.indrelid AND NOT n.attnotnull "
    "AND n.attnum = ANY ((x.indkey::int2[])[:x.indnkeyatts - 1]))) "
    "ORDER BY x.indisprimary DESC, x.indisreplident DESC, x.indnkeyatts, x.indexrelid LIMIT 1";

// The definition of the view whose oid follows, when PostgreSQL writes through it by itself:
// no INSTEAD OF trigger (tgtype bit 64) and no rule of its own (_RETURN is the view's query)
// takes the write. No row for a table.
constexpr const char* kWrittenThroughViewSql =
    "SELECT pg_catalog.pg_get_viewdef(c.oid) FROM pg_catalog.pg_class c WHERE c.relkind = 'v' "
    "AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid "
    "AND t.tgtype & 64 <> 0) AND NOT EXISTS (SELECT FROM pg_catalog.pg_rewrite r "
    "WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN') AND c.oid = ";

// Views over views, each looked through; PostgreSQL itself gives up far deeper.
constexpr int kMaxViewDepth = 16;

// The shape of a view PostgreSQL writes through into the table of shape `table`: that
// table's, under the view's column names, which must be the table's own; an expression the
// view shows is never written (as a generated column). nullopt when the view renames a
// column or leaves out a key column (the view then keeps its own shape, without a key).
std::optional<protocol::TableShape> written_through(const protocol::TableShape& table,
                                                    const protocol::ViewSource& view) {
  protocol::TableShape shape = table;
  shape.generated.clear();
  for (const protocol::ViewSource::Column& column : view.columns) {
    if (column.shows.empty() || table.is_generated(column.shows)) {
      shape.generated.push_back(column.name);
    } else if (column.shows != column.name) {
      return std::nullopt;
    }
  }
  for (const std::string& key : table.key_columns) {
    if (std::ranges::none_of(view.columns,
                             [&](const auto& column) { return column.shows == key; })) {
      return std::nullopt;
    }
  }
  return shape;
}

asio::awaitable<Result<protocol::TableShape>>
query_postgres_table_shape(Stream& stream, MessageReader& reader, const std::string& name,
                           ShapeUse use, int view_depth) {
  // tgtype bits: ROW 1, BEFORE 2, INSERT 4, UPDATE 16. Triggers enabled 'O' (the default)
  // are the ones session_replication_role = replica turns off.
  std::string sql =
      "SELECT a.attname, a.attgenerated <> '', "
      "coalesce(a.attnum = ANY ((i.indkey::int2[])[:i.indnkeyatts - 1]), false), " +
      std::string(protocol::kColumnSequenceSql) +
      ", EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgrelid = a.attrelid "
      "AND NOT t.tgisinternal AND t.tgenabled = 'O' AND t.tgtype & 3 = 3 AND t.tgtype & 20 <> 0), "
      "pg_catalog.has_parameter_privilege('session_replication_role', 'SET'), " +
      std::string(kKindTriggersSql) +
      ", EXISTS (SELECT FROM pg_catalog.pg_inherits h JOIN pg_catalog.pg_class c "
      "ON c.oid = h.inhparent AND c.relkind = 'r' WHERE h.inhparent = a.attrelid), " +
      std::string(use == ShapeUse::kMirror ? kWritingDefaultSql : "NULL") +
      " FROM pg_attribute a LEFT JOIN LATERAL (" + std::string(kRowKeyIndexSql) +
      ") i ON true WHERE a.attrelid = " + quote_literal(name) +
      "::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum";
  auto rows = co_await run_query(stream, reader, sql);
  if (!rows) co_return shape_error(name, rows.error());
  protocol::TableShape shape;
  shape.qualified = name;
  for (const auto& row : rows->rows) {
    if (row.size() != 9 || !row[0]) continue;
    if (row[1] == "t") shape.generated.push_back(*row[0]);
    if (row[2] == "t") shape.key_columns.push_back(*row[0]);
    if (row[3]) shape.sequences.emplace_back(*row[0], *row[3]);
    shape.rewriting_triggers = row[4] == "t";
    shape.may_disable_triggers = row[5] == "t";
    shape.kind_triggers = row[6] == "t";
    shape.inheriting_children = row[7] == "t";
    if (row[8]) shape.writing_defaults.push_back({*row[0], default_functions(*row[8])});
  }
  // Without a key it may be a view PostgreSQL writes through: its rows are its table's, found
  // by that table's key, and written there directly, provided the session may (else through
  // the view, as a table without a key). Asked apart: tables with a key, nearly all, are
  // asked nothing more (the question would triple the shape query's time).
  if (!shape.key_columns.empty() || view_depth >= kMaxViewDepth) co_return shape;
  auto definition = co_await run_query(
      stream, reader, std::string(kWrittenThroughViewSql) + quote_literal(name) + "::regclass");
  if (!definition) co_return shape_error(name, definition.error());
  if (definition->rows.empty() || definition->rows.front().empty() ||
      !definition->rows.front()[0]) {
    co_return shape;
  }
  auto source = protocol::view_source(*definition->rows.front()[0]);
  if (!source) co_return shape;
  std::string table = source->relation.qualified();
  auto table_shape =
      co_await query_postgres_table_shape(stream, reader, table, use, view_depth + 1);
  if (!table_shape) co_return table_shape;
  auto through = written_through(*table_shape, *source);
  if (!through) co_return shape;
  // Per column of the table (it has one at least, its key): whether the session may write the
  // table, the column's name, whether it is an identity, and its default.
  std::string relation = quote_literal(table);
  std::string columns_sql =
      "SELECT pg_catalog.has_table_privilege(" + relation +
      ", 'INSERT') AND pg_catalog.has_table_privilege(" + relation +
      ", 'UPDATE') AND pg_catalog.has_table_privilege(" + relation +
      ", 'DELETE'), a.attname, a.attidentity <> '', pg_catalog.pg_get_expr(d.adbin, d.adrelid) "
      "FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d "
      "ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE a.attrelid = " +
      relation +
      "::pg_catalog.regclass AND a.attnum > 0 AND NOT a.attisdropped "
      "AND a.attgenerated = '' ORDER BY a.attnum";
  auto columns = co_await run_query(stream, reader, columns_sql);
  if (!columns) co_return shape_error(name, columns.error());
  bool may_write = !columns->rows.empty() && columns->rows.front().size() == 4 &&
                   columns->rows.front()[0] == "t";
  if (!may_write) co_return shape;
  through->hidden_chosen.clear(); // a view beneath it showed more
  for (const auto& row : columns->rows) {
    if (row.size() != 4 || !row[1]) continue;
    bool shown = std::ranges::any_of(source->columns,
                                     [&](const auto& column) { return column.shows == *row[1]; });
    bool chosen = through->rewriting_triggers || row[2] == "t" ||
                  (row[3] && !protocol::constant_expression(*row[3]));
    if (!shown && chosen) through->hidden_chosen.push_back(*row[1]);
  }
  co_return std::move(*through);
}

} // namespace

asio::awaitable<Result<protocol::TableShape>>
query_table_shape(Stream& stream, MessageReader& reader, const std::string& name,
                  protocol::Dialect dialect, ShapeUse use) {
  if (dialect == protocol::Dialect::kSqlite) {
    co_return co_await query_sqlite_table_shape(stream, reader, name);
  }
  co_return co_await query_postgres_table_shape(stream, reader, name, use, 0);
}

} // namespace switchyard::proxy
