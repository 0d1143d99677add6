#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/backend_uri.hpp"
#include "protocol/result.hpp"
#include "protocol/row_image.hpp"
#include "proxy/message_reader.hpp"
#include "proxy/stream.hpp"

namespace switchyard::proxy {

//! What one simple query returned: the rows of its last result set (text format) and the
//! tag of its last CommandComplete.
struct QueryRows {
  std::vector<protocol::FieldDescription> fields;
  std::vector<std::vector<protocol::Value>> rows;
  std::string command_tag;
};

//! Runs `sql` as a simple Query on an idle backend connection that switchyard owns and
//! reads up to ReadyForQuery. A PostgreSQL error is an Error with its SQLSTATE and message.
asio::awaitable<Result<QueryRows>> run_query(Stream& stream, MessageReader& reader,
                                             std::string_view sql);

//! Runs `sql` with parameters through the extended protocol (unnamed statement and portal,
//! results in text) on an idle connection switchyard owns.
asio::awaitable<Result<QueryRows>> run_query(Stream& stream, MessageReader& reader,
                                             std::string_view sql,
                                             const std::vector<uint32_t>& types,
                                             const std::vector<uint16_t>& formats,
                                             const std::vector<protocol::Value>& values);

//! Runs `sql` once with each of `each` as its parameters, as run_query does, but parsed once
//! and with every execution sent before any answer is read: one round trip for up to
//! kPipelinedExecutions of them rather than one each (more are sent in flights of that many,
//! so that the backend's answers never fill the socket while switchyard still writes). One
//! result per execution, in order; the first error fails the whole (the backend skips the
//! rest of that flight).
asio::awaitable<Result<std::vector<QueryRows>>>
run_query_each(Stream& stream, MessageReader& reader, std::string_view sql,
               const std::vector<uint32_t>& types, const std::vector<uint16_t>& formats,
               const std::vector<std::vector<protocol::Value>>& each);
inline constexpr size_t kPipelinedExecutions = 128;

//! A BEFORE trigger stamps a row written from an image again (clock_timestamp(), a normalised
//! value) as it stamped the primary's row: such a row is written a second time with the
//! triggers session_replication_role governs off (TableShape::rewriting_triggers), for the
//! current transaction only; kTriggersBackSql restores the role the session had.
inline constexpr std::string_view kTriggersOffSql =
    "SELECT pg_catalog.set_config('switchyard.replication_role', "
    "pg_catalog.current_setting('session_replication_role'), true), "
    "pg_catalog.set_config('session_replication_role', 'replica', true)";
inline constexpr std::string_view kTriggersBackSql =
    "SELECT pg_catalog.set_config('session_replication_role', "
    "pg_catalog.current_setting('switchyard.replication_role'), true)";

//! What a shape is read for: writing the replayer's rows needs less than mirroring a
//! session's writes, and reads it for every table it replays, again each second
//! (TableShape::writing_defaults, which only mirroring needs, triples the query's planning
//! time).
enum class ShapeUse { kReplay, kMirror };

//! The shape of table `name` (quoted, possibly qualified) as the backend's catalog has it
//! (pg_attribute, or SQLite's table_xinfo pragma): its primary key, generated columns,
//! sequences, whether BEFORE triggers may rewrite the rows written into it, and for
//! kMirror the defaults that call functions which may write. A view PostgreSQL writes
//! through that shows its table's key under the table's column names has that table's
//! shape (`qualified` names the table), where the session may write the table, with the
//! table's columns it hides whose values the table chooses (`hidden_chosen`).
asio::awaitable<Result<protocol::TableShape>>
query_table_shape(Stream& stream, MessageReader& reader, const std::string& name,
                  protocol::Dialect dialect, ShapeUse use = ShapeUse::kReplay);

//! The dialect of the backend `target` names.
inline protocol::Dialect dialect_of(const config::BackendTarget& target) {
  return target.kind == config::BackendKind::kSqlite ? protocol::Dialect::kSqlite
                                                     : protocol::Dialect::kPostgres;
}

//! `text` as a SQL string literal ('...' with quotes doubled).
std::string quote_literal(std::string_view text);

//! "SQLSTATE: message" of an ErrorResponse body, for logs and journal entries.
std::string describe_error(std::string_view body);

//! The SQLSTATE of an ErrorResponse body ("?" when unreadable).
std::string sqlstate_of(std::string_view body);

} // namespace switchyard::proxy
