#include "proxy/sqlite_session.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <unordered_set>

#include "protocol/classify.hpp"
#include "protocol/extended.hpp"
#include "protocol/messages.hpp"
#include "protocol/pg_values.hpp"
#include "protocol/startup.hpp"
#include "protocol/wire.hpp"
#include "proxy/message_reader.hpp"
#include "proxy/spawn.hpp"
#include "proxy/sqlite_commands.hpp"
#include "proxy/sqlite_settings.hpp"
#include "proxy/sqlite_values.hpp"

namespace switchyard::proxy {
namespace {

namespace oid = protocol::oid;

// PostgreSQL's own message size limit (MaxAllocSize); the proxy enforces the configured
// limit on clients before anything reaches the engine.
constexpr uint32_t kMaxMessage = 0x3FFFFFFF;
// Result bytes buffered before they are written to the socket.
constexpr size_t kFlushAt = size_t{256} * 1024;

SqlError sql_error(std::string_view sqlstate, std::string message) {
  return SqlError{std::string(sqlstate), std::move(message), {}};
}

// --- Statements and portals ----------------------------------------------------------------

// A statement the client parsed (named or unnamed), or one query of a simple Query.
struct PreparedStatement {
  std::string text;
  EngineStatement engine;
  std::vector<uint32_t> parameter_types; // as declared in Parse, then widened to the count
  std::vector<std::string> column_names;
  std::vector<uint32_t> column_types;   // 0: decided from the first row
  bool types_fixed = false;             // set once a Describe told the client the types
  std::vector<int> parameter_positions; // per SQLite parameter: which $n (0-based) it takes
};

struct Portal {
  std::shared_ptr<PreparedStatement> statement{};
  std::vector<SqliteParameter> parameters{};
  std::vector<uint16_t> result_formats{};
  // Execution state, once the portal is opened.
  SqliteConnection* connection = nullptr;
  sqlite3_stmt* handle = nullptr;
  std::vector<uint32_t> types{};
  bool row_pending = false; // a row was stepped (for its types) but not yet sent
  bool exhausted = false;   // SQLite has no more rows
  bool closed = false;      // completed or closed: its statement is back in the cache
};

uint16_t result_format(const Portal& portal, size_t column) {
  return protocol::format_of(portal.result_formats, column);
}

// Which $n each SQLite parameter of `handle` takes: "$3" -> 2, "?" -> its position.
Result<std::vector<int>> parameter_positions(sqlite3_stmt* handle) {
  std::vector<int> positions;
  int count = sqlite3_bind_parameter_count(handle);
  for (int i = 1; i <= count; ++i) {
    const char* name = sqlite3_bind_parameter_name(handle, i);
    if (name == nullptr) {
      positions.push_back(i - 1);
      continue;
    }
    std::string_view n(name);
    int number = 0;
    if ((n.front() == '$' || n.front() == '?') && n.size() > 1) {
      auto [ptr, ec] = std::from_chars(n.data() + 1, n.data() + n.size(), number);
      if (ec != std::errc() || ptr != n.data() + n.size() || number < 1) number = 0;
    }
    if (number == 0) {
      return Error{"parameter " + std::string(n) + " is not supported; use $1, $2, ..."};
    }
    positions.push_back(number - 1);
  }
  return positions;
}

// --- The session ---------------------------------------------------------------------------

class EngineSession : public SqliteSession {
public:
  EngineSession(StreamSocket socket, std::shared_ptr<SqliteDatabase> database)
      : stream_(std::move(socket)), reader_(stream_, protocol::Direction::kFrontend, kMaxMessage),
        database_(std::move(database)) {}

  //! The strand the session's socket (and so the session) runs on.
  asio::any_io_executor executor() { return stream_.socket().get_executor(); }

  asio::awaitable<void> run() {
    bool serving = co_await start();
    while (serving) {
      serving = co_await serve_one();
    }
    finish();
  }

private:
  // What state the session's transaction is in, as ReadyForQuery reports it.
  enum class Block { kNone, kImplicit, kExplicit, kFailed };

  // --- Start-up ------------------------------------------------------------------------------

  asio::awaitable<bool> start() {
    while (true) {
      auto packet = co_await reader_.read_startup_packet();
      if (!packet) co_return false;
      auto startup = protocol::parse_startup_packet(*packet);
      if (!startup) {
        co_await send_now(protocol::fatal_error("08P01", startup.error()));
        co_return false;
      }
      switch (startup->kind) {
      case protocol::StartupKind::kCancelRequest:
        SqliteEngine::instance().cancel(startup->cancel_pid, startup->cancel_key);
        co_return false;
      case protocol::StartupKind::kSslRequest:
      case protocol::StartupKind::kGssEncRequest:
        co_await send_now("N"); // in-process: nothing to encrypt
        continue;
      case protocol::StartupKind::kStartup: break;
      }
      settings_ = SessionSettings(startup->parameter("user"));
      for (const auto& [name, value] : startup->parameters) {
        if (name == "user" || name == "database" || name == "options" || name == "replication")
          continue;
        if (auto failed = settings_.set(name, value, false, false, false)) {
          co_await send_now(protocol::fatal_error(failed->sqlstate, failed->message));
          co_return false;
        }
      }
      auto [pid, key] = SqliteEngine::instance().register_session(this);
      pid_ = pid;
      protocol::append_auth(out_, protocol::AuthCode::kOk);
      settings_.append_all_reported(out_);
      protocol::append_backend_key_data(out_, pid, key);
      protocol::append_ready_for_query(out_, 'I');
      co_return co_await flush();
    }
  }

  void finish() {
    close_portals();
    if (block_ != Block::kNone) end_block(false);
    if (pid_ != 0) SqliteEngine::instance().unregister_session(pid_);
    stream_.close();
  }

  // --- Message loop --------------------------------------------------------------------------

  asio::awaitable<bool> serve_one() {
    auto frame = co_await reader_.read_frame();
    if (!frame) {
      if (!reader_.peer_closed()) co_await send_now(protocol::fatal_error("08P01", frame.error()));
      co_return false;
    }
    std::string_view body = frame->body;
    switch (frame->tag) {
    case 'Q': {
      std::string_view sql = body.substr(0, body.find('\0'));
      co_await simple_query(sql);
      ready_for_query();
      co_return co_await flush();
    }
    case 'P':
    case 'B':
    case 'D':
    case 'E':
    case 'C':
      if (!skipping_) {
        if (auto failed = co_await extended(frame->tag, body)) {
          report(*failed);
          skipping_ = true;
        }
      }
      if (out_.size() >= kFlushAt) co_return co_await flush();
      co_return true;
    case 'S':
      skipping_ = false;
      if (block_ == Block::kImplicit) {
        if (auto failed = end_block(true)) report(*failed);
      }
      ready_for_query();
      co_return co_await flush();
    case 'H': co_return co_await flush();
    case 'X': co_return false;
    case 'd':
    case 'c':
    case 'f': co_return true; // copy messages outside COPY are ignored, as PostgreSQL does
    default:
      co_await send_now(protocol::fatal_error(
          "08P01", std::string("invalid frontend message type ") + frame->tag));
      co_return false;
    }
  }

  void ready_for_query() {
    settings_.append_changes(out_);
    char status = block_ == Block::kExplicit ? 'T' : block_ == Block::kFailed ? 'E' : 'I';
    protocol::append_ready_for_query(out_, status);
  }

  asio::awaitable<bool> flush() {
    if (out_.empty()) co_return true;
    auto ec = co_await stream_.write_all(out_);
    out_.clear();
    co_return !ec;
  }

  asio::awaitable<void> send_now(std::string_view bytes) { co_await stream_.write_all(bytes); }

  // An error ends the statement; in an explicit block it fails the block, in an implicit one
  // it rolls the block back.
  void report(const SqlError& error) {
    protocol::append_error(out_, {"ERROR", error.sqlstate, error.message, error.detail, {}});
    if (block_ == Block::kExplicit) {
      block_ = Block::kFailed;
    } else if (block_ == Block::kImplicit) {
      end_block(false);
    }
  }

  void notice(std::string_view sqlstate, std::string message) {
    protocol::append_error(out_, {"WARNING", std::string(sqlstate), std::move(message), {}, {}},
                           'N');
  }

  // --- Simple query --------------------------------------------------------------------------

  asio::awaitable<void> simple_query(std::string_view sql) {
    if (!protocol::valid_utf8(sql)) {
      report(sql_error("22021", "invalid byte sequence for encoding \"UTF8\" in the query"));
      co_return;
    }
    auto shape = protocol::query_shape(sql);
    if (!shape.ok) shape.spans = {{0, sql.size()}}; // an unterminated quote: SQLite says so
    const auto& spans = shape.spans;
    for (size_t i = 0; i < spans.size(); ++i) {
      size_t start = spans[i].offset;
      size_t end = start + spans[i].length;
      auto statement = std::make_shared<PreparedStatement>();
      statement->engine = recognise_statement(sql.substr(start, end - start));
      SqlStatus failed;
      if (statement->engine.command == EngineCommand::kSql) {
        // A trigger's body holds semicolons: take spans until SQLite calls the text complete.
        while (i + 1 < spans.size() && !sqlite_complete(sql.substr(start, end - start))) {
          ++i;
          end = spans[i].offset + spans[i].length;
        }
        bool lone = start == spans.front().offset && i + 1 == spans.size();
        failed = co_await run_simple_sql(statement, sql.substr(start, end - start), lone);
      } else {
        failed = co_await run_command(*statement, true);
      }
      if (failed) {
        report(*failed);
        co_return;
      }
      if (out_.size() >= kFlushAt) {
        bool written = co_await flush();
        if (!written) co_return;
      }
    }
    if (spans.empty()) protocol::append_empty_message(out_, 'I');
    if (block_ == Block::kImplicit) {
      if (auto failed = end_block(true)) report(*failed);
    }
  }

  static bool sqlite_complete(std::string_view text) {
    std::string terminated(text);
    terminated += ';';
    return sqlite3_complete(terminated.c_str()) != 0;
  }

  // Runs one SQL statement of a simple query: row description, rows, command tag.
  asio::awaitable<SqlStatus> run_simple_sql(std::shared_ptr<PreparedStatement> statement,
                                            std::string_view text, bool lone) {
    if (block_ == Block::kFailed) co_return aborted();
    Portal portal{.statement = std::move(statement)};
    if (auto failed = co_await open_portal(portal, text, lone)) co_return failed;
    if (!portal.types.empty()) append_row_description(portal);
    auto failed = co_await execute_portal(portal, 0);
    close_portal(portal);
    co_return failed;
  }

  // --- Extended query ------------------------------------------------------------------------

  asio::awaitable<SqlStatus> extended(char tag, std::string_view body) {
    switch (tag) {
    case 'P': {
      auto parse = protocol::parse_parse(body);
      if (!parse) co_return sql_error("08P01", parse.error());
      co_return co_await parse_statement(std::move(*parse));
    }
    case 'B': {
      auto bind = protocol::parse_bind(body);
      if (!bind) co_return sql_error("08P01", bind.error());
      co_return bind_portal(std::move(*bind));
    }
    case 'D': {
      auto target = protocol::parse_target(body);
      if (!target) co_return sql_error("08P01", target.error());
      co_return co_await describe(*target);
    }
    case 'E': {
      auto execute = protocol::parse_execute(body);
      if (!execute) co_return sql_error("08P01", execute.error());
      co_return co_await execute_message(*execute);
    }
    default: {
      auto target = protocol::parse_target(body);
      if (!target) co_return sql_error("08P01", target.error());
      if (target->kind == 'S') {
        statements_.erase(target->name);
      } else if (auto found = portals_.find(target->name); found != portals_.end()) {
        close_portal(found->second);
        portals_.erase(found);
      }
      protocol::append_empty_message(out_, '3');
      co_return std::nullopt;
    }
    }
  }

  asio::awaitable<SqlStatus> parse_statement(protocol::ParseMessage parse) {
    if (!protocol::valid_utf8(parse.query))
      co_return sql_error("22021", "invalid byte sequence for encoding \"UTF8\" in the query");
    if (!parse.statement.empty() && statements_.contains(parse.statement)) {
      co_return sql_error("42P05", "prepared statement \"" + parse.statement + "\" already exists");
    }
    auto statement = std::make_shared<PreparedStatement>();
    statement->text = std::move(parse.query);
    statement->parameter_types = std::move(parse.parameter_types);
    auto shape = protocol::query_shape(statement->text);
    if (shape.ok && shape.spans.size() > 1) {
      co_return sql_error("42601", "cannot insert multiple commands into a prepared statement");
    }
    statement->engine = recognise_statement(statement->text);
    if (block_ == Block::kFailed && !ends_failed_block(statement->engine.command)) {
      co_return aborted();
    }
    if (statement->engine.command == EngineCommand::kSql) {
      if (auto failed = co_await analyse(*statement)) co_return failed;
    }
    statements_[parse.statement] = std::move(statement);
    protocol::append_empty_message(out_, '1');
    co_return std::nullopt;
  }

  // Prepares the statement once to learn its parameters and columns.
  asio::awaitable<SqlStatus> analyse(PreparedStatement& statement) {
    std::unique_ptr<SqliteConnection> borrowed;
    SqliteConnection* connection = writing_ ? &database_->writer() : reader_conn_.get();
    if (connection == nullptr) {
      auto reader = database_->take_reader();
      if (!reader) co_return sql_error("58030", reader.error());
      borrowed = std::move(*reader);
      connection = borrowed.get();
    }
    sqlite3_stmt* handle = nullptr;
    size_t used = 0;
    auto failed = connection->prepare(statement.text, handle, &used);
    if (!failed && handle == nullptr) failed = sql_error("42601", "empty statement");
    if (!failed) failed = check_single(statement.text, used);
    if (!failed) {
      auto positions = parameter_positions(handle);
      if (!positions) {
        failed = sql_error("42P02", positions.error());
      } else {
        statement.parameter_positions = std::move(*positions);
        size_t count = statement.parameter_types.size();
        for (int position : statement.parameter_positions)
          count = std::max(count, static_cast<size_t>(position) + 1);
        statement.parameter_types.resize(count, 0);
        for (int i = 0; i < sqlite3_column_count(handle); ++i) {
          statement.column_names.emplace_back(sqlite3_column_name(handle, i));
          statement.column_types.push_back(type_for_declared(sqlite3_column_decltype(handle, i)));
        }
      }
    }
    if (handle) connection->give_back(handle);
    if (borrowed) database_->return_reader(std::move(borrowed));
    co_return failed;
  }

  SqlStatus bind_portal(protocol::BindMessage bind) {
    auto found = statements_.find(bind.statement);
    if (found == statements_.end()) {
      return sql_error("26000", "prepared statement \"" + bind.statement + "\" does not exist");
    }
    const auto& statement = found->second;
    if (block_ == Block::kFailed && !ends_failed_block(statement->engine.command)) return aborted();
    if (bind.parameters.size() != statement->parameter_types.size()) {
      return sql_error("08P01", "bind message supplies " + std::to_string(bind.parameters.size()) +
                                    " parameters, but prepared statement \"" + bind.statement +
                                    "\" requires " +
                                    std::to_string(statement->parameter_types.size()));
    }
    Portal portal{.statement = statement, .result_formats = std::move(bind.result_formats)};
    portal.parameters.resize(bind.parameters.size());
    for (size_t i = 0; i < bind.parameters.size(); ++i) {
      auto format = protocol::format_of(bind.parameter_formats, i);
      if (auto failed = decode_parameter(bind.parameters[i], statement->parameter_types[i], format,
                                         portal.parameters[i]))
        return failed;
    }
    if (auto old = portals_.find(bind.portal); old != portals_.end()) {
      close_portal(old->second);
      portals_.erase(old);
    }
    portals_.emplace(bind.portal, std::move(portal));
    protocol::append_empty_message(out_, '2');
    return std::nullopt;
  }

  asio::awaitable<SqlStatus> describe(const protocol::TargetMessage& target) {
    if (target.kind == 'S') {
      auto found = statements_.find(target.name);
      if (found == statements_.end()) {
        co_return sql_error("26000", "prepared statement \"" + target.name + "\" does not exist");
      }
      PreparedStatement& statement = *found->second;
      {
        protocol::MessageBuilder m(out_, 't');
        m.u16(static_cast<uint16_t>(statement.parameter_types.size()));
        for (uint32_t type : statement.parameter_types)
          m.u32(type == 0 ? oid::kText : type);
      }
      if (statement.engine.command == EngineCommand::kShow) co_return describe_show(statement);
      if (statement.column_names.empty()) {
        protocol::append_empty_message(out_, 'n');
        co_return std::nullopt;
      }
      // Columns with no declared type are reported as text and stay text for every
      // execution of this statement, so what the client was told holds.
      for (uint32_t& type : statement.column_types) {
        if (type == 0) type = oid::kText;
      }
      statement.types_fixed = true;
      Portal shown{.statement = found->second, .types = statement.column_types};
      append_row_description(shown);
      co_return std::nullopt;
    }
    auto found = portals_.find(target.name);
    if (found == portals_.end()) {
      co_return sql_error("34000", "portal \"" + target.name + "\" does not exist");
    }
    Portal& portal = found->second;
    if (portal.statement->engine.command == EngineCommand::kShow) {
      co_return describe_show(*portal.statement);
    }
    if (portal.statement->engine.command != EngineCommand::kSql ||
        portal.statement->column_names.empty()) {
      protocol::append_empty_message(out_, 'n');
      co_return std::nullopt;
    }
    if (portal.handle == nullptr && !portal.closed) {
      if (auto failed = co_await open_portal(portal, portal.statement->text, false))
        co_return failed;
    }
    append_row_description(portal);
    co_return std::nullopt;
  }

  asio::awaitable<SqlStatus> execute_message(const protocol::ExecuteMessage& execute) {
    auto found = portals_.find(execute.portal);
    if (found == portals_.end()) {
      co_return sql_error("34000", "portal \"" + execute.portal + "\" does not exist");
    }
    Portal& portal = found->second;
    if (portal.statement->engine.command != EngineCommand::kSql) {
      if (block_ == Block::kFailed && !ends_failed_block(portal.statement->engine.command))
        co_return aborted();
      co_return co_await run_command(*portal.statement, false);
    }
    if (block_ == Block::kFailed) co_return aborted();
    if (portal.closed) {
      co_return sql_error("55000", "portal \"" + execute.portal + "\" cannot be run again");
    }
    if (portal.handle == nullptr) {
      if (auto failed = co_await open_portal(portal, portal.statement->text, false))
        co_return failed;
    }
    co_return co_await execute_portal(portal, execute.max_rows);
  }

  // --- Running SQL ---------------------------------------------------------------------------

  SqlError aborted() const {
    return sql_error("25P02",
                     "current transaction is aborted, commands ignored until end of transaction "
                     "block");
  }

  static bool ends_failed_block(EngineCommand command) {
    return command == EngineCommand::kRollback || command == EngineCommand::kCommit ||
           command == EngineCommand::kRollbackTo;
  }

  // Prepares the portal's statement on the connection it must run on (a reader for reads,
  // the writer for everything else), binds its parameters and settles its column types.
  // `lone` says the statement is a whole simple query outside a transaction, so a write
  // needs no BEGIN: SQLite's autocommit makes it atomic by itself.
  // `text` is exactly one statement; SQLite reading it as more is refused, never truncated.
  asio::awaitable<SqlStatus> open_portal(Portal& portal, std::string_view text, bool lone) {
    lone = lone && block_ == Block::kNone;
    if (block_ == Block::kNone) block_ = Block::kImplicit;
    bool known_write = known_writes_.contains(text);
    if (!writing_ && !known_write) {
      if (!reader_conn_) {
        auto reader = database_->take_reader();
        if (!reader) co_return sql_error("58030", reader.error());
        reader_conn_ = std::move(*reader);
      }
      sqlite3_stmt* handle = nullptr;
      size_t taken = 0;
      if (auto failed = reader_conn_->prepare(text, handle, &taken)) co_return failed;
      if (handle == nullptr) co_return sql_error("42601", "empty statement");
      if (auto failed = check_single(text, taken)) {
        reader_conn_->give_back(handle);
        co_return failed;
      }
      if (sqlite3_stmt_readonly(handle)) {
        if (block_ == Block::kExplicit && !snapshot_started_) {
          snapshot_ = database_->commit_sequence();
          if (auto failed = reader_conn_->exec("BEGIN")) {
            reader_conn_->give_back(handle);
            co_return failed;
          }
          snapshot_started_ = true;
        }
        co_return settle_portal(portal, reader_conn_.get(), handle);
      }
      reader_conn_->give_back(handle);
      remember_write(text);
    }
    if (!writing_) {
      if (read_only_block_) {
        co_return sql_error("25006",
                            "cannot execute " + command_verb(text) + " in a read-only transaction");
      }
      if (auto failed = co_await take_writer(!lone)) co_return failed;
    }
    sqlite3_stmt* handle = nullptr;
    size_t taken = 0;
    if (auto failed = database_->writer().prepare(text, handle, &taken)) co_return failed;
    if (handle == nullptr) co_return sql_error("42601", "empty statement");
    if (auto failed = check_single(text, taken)) {
      database_->writer().give_back(handle);
      co_return failed;
    }
    co_return settle_portal(portal, &database_->writer(), handle);
  }

  // SQLite took `taken` bytes of `text` for its first statement; anything but blanks and
  // semicolons after it is a second statement, which would otherwise never run.
  static SqlStatus check_single(std::string_view text, size_t taken) {
    if (text.find_first_not_of(" \t\r\n;", taken) == std::string_view::npos) return std::nullopt;
    return sql_error("42601", "SQLite reads more than one statement in \"" + std::string(text) +
                                  "\"; send them as separate statements");
  }

  SqlStatus settle_portal(Portal& portal, SqliteConnection* connection, sqlite3_stmt* handle) {
    portal.connection = connection;
    portal.handle = handle;
    PreparedStatement& statement = *portal.statement;
    auto positions = parameter_positions(handle);
    if (!positions) return close_with(portal, sql_error("42P02", positions.error()));
    for (size_t i = 0; i < positions->size(); ++i) {
      size_t position = static_cast<size_t>((*positions)[i]);
      if (position >= portal.parameters.size()) {
        return close_with(
            portal, sql_error("08P01", "there is no parameter $" + std::to_string(position + 1)));
      }
      bind_parameter(handle, static_cast<int>(i + 1), portal.parameters[position]);
    }
    int columns = sqlite3_column_count(handle);
    portal.types.clear();
    bool need_row = false;
    for (int i = 0; i < columns; ++i) {
      uint32_t type = 0;
      if (statement.types_fixed && static_cast<size_t>(i) < statement.column_types.size()) {
        type = statement.column_types[static_cast<size_t>(i)];
      } else {
        type = type_for_declared(sqlite3_column_decltype(handle, i));
      }
      need_row |= type == 0;
      portal.types.push_back(type);
    }
    if (need_row) {
      // Undeclared columns (expressions) take the type of their first value. Stepping a
      // read early is harmless; a write is never stepped before Execute.
      if (sqlite3_stmt_readonly(handle)) {
        int rc = step(portal);
        if (rc == SQLITE_ROW) {
          portal.row_pending = true;
        } else if (rc != SQLITE_DONE) {
          return close_with(portal, portal.connection->last_error());
        } else {
          portal.exhausted = true;
        }
      }
      for (int i = 0; i < columns; ++i) {
        auto& type = portal.types[static_cast<size_t>(i)];
        if (type != 0) continue;
        type = portal.row_pending ? type_for_storage(sqlite3_column_type(handle, i)) : oid::kText;
      }
    }
    return std::nullopt;
  }

  SqlError close_with(Portal& portal, SqlError error) {
    close_portal(portal);
    return error;
  }

  int step(Portal& portal) {
    set_running(portal.connection->handle());
    int rc = sqlite3_step(portal.handle);
    set_running(nullptr);
    return rc;
  }

  void append_row_description(const Portal& portal) {
    std::vector<protocol::FieldDescription> fields;
    int columns = static_cast<int>(portal.types.size());
    for (int i = 0; i < columns; ++i) {
      protocol::FieldDescription field;
      if (portal.handle) {
        field.name = sqlite3_column_name(portal.handle, i);
      } else if (static_cast<size_t>(i) < portal.statement->column_names.size()) {
        field.name = portal.statement->column_names[static_cast<size_t>(i)];
      }
      field.type_oid = portal.types[static_cast<size_t>(i)];
      field.type_size = static_cast<uint16_t>(protocol::type_size(field.type_oid));
      field.type_modifier = 0xFFFFFFFFu;
      field.format = result_format(portal, static_cast<size_t>(i));
      fields.push_back(std::move(field));
    }
    protocol::append_row_description(out_, fields);
  }

  // Sends up to `max_rows` rows (0: all), then CommandComplete or PortalSuspended.
  asio::awaitable<SqlStatus> execute_portal(Portal& portal, uint32_t max_rows) {
    uint32_t sent = 0;
    while (!portal.exhausted) {
      if (!portal.row_pending) {
        int rc = step(portal);
        if (rc == SQLITE_DONE) {
          portal.exhausted = true;
          break;
        }
        if (rc != SQLITE_ROW) co_return close_with(portal, portal.connection->last_error());
      }
      portal.row_pending = false;
      if (auto failed = append_data_row(portal)) co_return close_with(portal, *failed);
      ++sent;
      if (out_.size() >= kFlushAt) {
        bool written = co_await flush();
        if (!written) co_return close_with(portal, sql_error("08006", "connection lost"));
      }
      if (max_rows != 0 && sent == max_rows) {
        protocol::append_empty_message(out_, 's');
        co_return std::nullopt;
      }
    }
    std::string tag = command_verb(sqlite3_sql(portal.handle));
    if (tag == "INSERT") {
      tag += " 0 " + std::to_string(sqlite3_changes64(portal.connection->handle()));
    } else if (tag == "UPDATE" || tag == "DELETE") {
      tag += " " + std::to_string(sqlite3_changes64(portal.connection->handle()));
    } else if (tag == "SELECT") {
      tag += " " + std::to_string(sent); // rows of this Execute, as PostgreSQL counts them
    }
    protocol::MessageBuilder(out_, 'C').cstring(tag);
    close_portal(portal);
    co_return std::nullopt;
  }

  SqlStatus append_data_row(Portal& portal) {
    size_t start = out_.size();
    SqlStatus failed;
    {
      protocol::MessageBuilder row(out_, 'D');
      row.u16(static_cast<uint16_t>(portal.types.size()));
      for (size_t i = 0; i < portal.types.size() && !failed; ++i) {
        failed = append_column(out_, portal.handle, static_cast<int>(i), portal.types[i],
                               result_format(portal, i));
      }
    }
    if (failed) out_.resize(start); // drop the half-built row
    return failed;
  }

  void close_portal(Portal& portal) {
    if (portal.handle) portal.connection->give_back(portal.handle);
    portal.handle = nullptr;
    portal.connection = nullptr;
    portal.closed = true;
  }

  void close_portals() {
    for (auto& [name, portal] : portals_)
      close_portal(portal);
    portals_.clear();
  }

  // --- Transactions --------------------------------------------------------------------------

  // Takes the writer for this block: waits for the lock, then refuses when the block already
  // read a snapshot that a commit has since made stale (SQLite's SQLITE_BUSY_SNAPSHOT).
  // Texts already found to write, so they go to the writer without a trial prepare on a reader.
  void remember_write(std::string_view text) {
    constexpr size_t kMaxKnownWrites = 1024;
    if (known_writes_.size() >= kMaxKnownWrites) known_writes_.clear();
    known_writes_.emplace(text);
  }

  // `begin` opens a transaction on the writer; without it each statement autocommits.
  asio::awaitable<SqlStatus> take_writer(bool begin = true) {
    auto executor = co_await asio::this_coro::executor;
    bool locked = co_await database_->lock_writer(executor, database_->busy_timeout());
    if (!locked) {
      co_return sql_error("55P03", "could not obtain the SQLite write lock within " +
                                       std::to_string(database_->busy_timeout().count()) +
                                       " ms: another transaction is writing");
    }
    if (snapshot_started_ && database_->commit_sequence() != snapshot_) {
      database_->unlock_writer();
      co_return sql_error("40001", "could not serialize access: the database changed since this "
                                   "transaction first read it (SQLite has one writer at a time)");
    }
    release_reader();
    if (begin) {
      if (auto failed = database_->writer().exec("BEGIN IMMEDIATE")) {
        database_->unlock_writer();
        co_return failed;
      }
    }
    writing_ = true;
    co_return std::nullopt;
  }

  void release_reader() {
    if (!reader_conn_) return;
    for (auto& [name, portal] : portals_) {
      if (portal.connection == reader_conn_.get()) close_portal(portal);
    }
    if (snapshot_started_) (void)reader_conn_->exec("ROLLBACK");
    snapshot_started_ = false;
    database_->return_reader(std::move(reader_conn_));
  }

  // Ends the block: commits (or rolls back) the writer and lets the reader go.
  SqlStatus end_block(bool commit) {
    close_portals();
    SqlStatus failed;
    if (writing_) {
      SqliteConnection& writer = database_->writer();
      bool in_transaction = !sqlite3_get_autocommit(writer.handle());
      if (commit && in_transaction) {
        failed = writer.exec("COMMIT");
        if (failed) (void)writer.exec("ROLLBACK");
      } else if (in_transaction) {
        (void)writer.exec("ROLLBACK");
      }
      if (commit && !failed) database_->note_commit();
      writing_ = false;
      database_->unlock_writer();
    }
    release_reader();
    settings_.end_transaction(commit && !failed);
    block_ = Block::kNone;
    read_only_block_ = false;
    return failed;
  }

  // Engine commands: transactions, settings and what SQLite cannot do.
  asio::awaitable<SqlStatus> run_command(const PreparedStatement& statement, bool simple) {
    const EngineStatement& command = statement.engine;
    if (block_ == Block::kFailed && !ends_failed_block(command.command)) co_return aborted();
    switch (command.command) {
    case EngineCommand::kSql: break; // not a command
    case EngineCommand::kEmpty: protocol::append_empty_message(out_, 'I'); co_return std::nullopt;
    case EngineCommand::kBegin:
      if (block_ == Block::kExplicit) {
        notice("25001", "there is already a transaction in progress");
      } else {
        block_ = Block::kExplicit;
        read_only_block_ = command.read_only;
        if (command.immediate && !writing_) {
          if (auto failed = co_await take_writer()) co_return failed;
        }
      }
      co_return complete("BEGIN");
    case EngineCommand::kCommit: {
      if (block_ == Block::kNone || block_ == Block::kImplicit) {
        notice("25P01", "there is no transaction in progress");
        co_return complete("COMMIT");
      }
      bool failed_block = block_ == Block::kFailed;
      if (auto failed = end_block(!failed_block)) co_return failed;
      co_return complete(failed_block ? "ROLLBACK" : "COMMIT");
    }
    case EngineCommand::kRollback:
      if (block_ == Block::kNone || block_ == Block::kImplicit) {
        notice("25P01", "there is no transaction in progress");
      }
      if (block_ != Block::kNone) end_block(false);
      co_return complete("ROLLBACK");
    case EngineCommand::kSavepoint:
    case EngineCommand::kRelease:
    case EngineCommand::kRollbackTo: co_return co_await savepoint(command);
    case EngineCommand::kSet: {
      if (auto failed = settings_.set(command.name, command.value, command.local,
                                      command.to_default, in_block()))
        co_return failed;
      co_return complete("SET");
    }
    case EngineCommand::kSetIgnored: co_return complete("SET");
    case EngineCommand::kReset:
      if (command.name == "all") {
        settings_.reset_all(in_block());
      } else if (auto failed = settings_.set(command.name, {}, false, true, in_block())) {
        co_return failed;
      }
      co_return complete("RESET");
    case EngineCommand::kShow: co_return show(command.name, simple);
    case EngineCommand::kDiscard:
      if (command.name == "all") {
        if (block_ != Block::kNone && block_ != Block::kImplicit) {
          co_return sql_error("25001", "DISCARD ALL cannot run inside a transaction block");
        }
        settings_.reset_all(in_block());
        statements_.clear();
      }
      co_return complete("DISCARD " + (command.name.empty() ? std::string("PLANS") : "ALL"));
    case EngineCommand::kDeallocate:
      if (command.name == "all") {
        statements_.clear();
      } else if (statements_.erase(command.name) == 0) {
        co_return sql_error("26000", "prepared statement \"" + command.name + "\" does not exist");
      }
      co_return complete("DEALLOCATE" + std::string(command.name == "all" ? " ALL" : ""));
    case EngineCommand::kUnsupported:
      co_return sql_error("0A000",
                          command.what + " is not supported by switchyard's SQLite engine");
    }
    co_return std::nullopt;
  }

  SqlStatus complete(const std::string& tag) {
    protocol::MessageBuilder(out_, 'C').cstring(tag);
    return std::nullopt;
  }

  asio::awaitable<SqlStatus> savepoint(const EngineStatement& command) {
    const char* verb = command.command == EngineCommand::kSavepoint ? "SAVEPOINT"
                       : command.command == EngineCommand::kRelease ? "RELEASE"
                                                                    : "ROLLBACK";
    if (block_ == Block::kNone || block_ == Block::kImplicit) {
      co_return sql_error("25P01", std::string(verb) + " can only be used in transaction blocks");
    }
    if (!writing_) {
      if (command.command != EngineCommand::kSavepoint) {
        co_return sql_error("3B001", "savepoint \"" + command.name + "\" does not exist");
      }
      if (read_only_block_) {
        // Nothing can be written, so a savepoint has nothing to undo.
        co_return complete(verb);
      }
      if (auto failed = co_await take_writer()) co_return failed;
    }
    std::string sql = std::string(command.command == EngineCommand::kSavepoint ? "SAVEPOINT "
                                  : command.command == EngineCommand::kRelease ? "RELEASE "
                                                                               : "ROLLBACK TO ") +
                      protocol::quote_identifier(command.name);
    if (auto failed = database_->writer().exec(sql.c_str())) {
      if (failed->message.starts_with("no such savepoint")) failed->sqlstate = "3B001";
      co_return failed;
    }
    if (command.command == EngineCommand::kRollbackTo) block_ = Block::kExplicit;
    co_return complete(verb);
  }

  // The rows of SHOW: in a simple query with their RowDescription (Describe gave it to an
  // extended one).
  SqlStatus show(const std::string& name, bool simple) {
    auto shown = settings_.show(name);
    if (!shown) return sql_error("42704", shown.error());
    if (simple) append_show_description(*shown);
    for (const auto& values : shown->rows) {
      protocol::MessageBuilder row(out_, 'D');
      row.u16(static_cast<uint16_t>(values.size()));
      for (const std::string& value : values)
        row.u32(static_cast<uint32_t>(value.size())).bytes(value);
    }
    return complete("SHOW");
  }

  void append_show_description(const SessionSettings::Shown& shown) {
    std::vector<protocol::FieldDescription> fields;
    fields.reserve(shown.columns.size());
    for (const auto& column : shown.columns) {
      fields.push_back({column, 0, 0, oid::kText, 0xFFFF, 0xFFFFFFFFu, 0});
    }
    protocol::append_row_description(out_, fields);
  }

  SqlStatus describe_show(const PreparedStatement& statement) {
    auto shown = settings_.show(statement.engine.name);
    if (!shown) return sql_error("42704", shown.error());
    append_show_description(*shown);
    return std::nullopt;
  }

  bool in_block() const { return block_ == Block::kExplicit || block_ == Block::kImplicit; }

  Stream stream_;
  MessageReader reader_;
  std::shared_ptr<SqliteDatabase> database_;
  std::string out_;
  uint32_t pid_ = 0;
  bool skipping_ = false; // after an error in the extended protocol, until Sync
  std::map<std::string, std::shared_ptr<PreparedStatement>> statements_;
  std::map<std::string, Portal> portals_;

  Block block_ = Block::kNone;
  bool read_only_block_ = false;
  bool writing_ = false; // this session holds the database's writer
  std::unique_ptr<SqliteConnection> reader_conn_;
  std::unordered_set<std::string, TextHash, std::equal_to<>> known_writes_;
  bool snapshot_started_ = false; // an explicit block began a read snapshot on the reader
  uint64_t snapshot_ = 0;         // the commit sequence when that snapshot began

  SessionSettings settings_{""};
};

// Keeps the session alive for as long as it runs.
asio::awaitable<void> run_session(std::shared_ptr<EngineSession> session) {
  co_await session->run();
}

} // namespace

Result<StreamSocket> connect_sqlite(const config::BackendTarget& target,
                                    const asio::any_io_executor& executor) {
  auto database = SqliteEngine::instance().database(target);
  if (!database) return Error{database.error()};
  asio::local::stream_protocol::socket ours(executor);
  asio::local::stream_protocol::socket theirs(SqliteEngine::instance().session_executor());
  error_code ec;
  asio::local::connect_pair(ours, theirs, ec);
  if (ec) return Error{"cannot create a socket pair for the SQLite engine: " + ec.message()};
  auto session = std::make_shared<EngineSession>(StreamSocket(std::move(theirs)), *database);
  auto strand = session->executor();
  spawn(strand, run_session(std::move(session)), "SQLite engine session");
  return StreamSocket(std::move(ours));
}

} // namespace switchyard::proxy
