#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "protocol/copy_data.hpp"
#include "protocol/dialect.hpp"
#include "protocol/large_objects.hpp"

namespace switchyard::protocol {

//! What a statement does, as far as routing and mirroring care.
//! How a statement fills a table with values of the primary's own choosing (see
//! Statement::fills_table).
enum class TableFill { kNone, kQuery, kColumnDefault };

enum class StatementKind {
  kRead,        //!< SELECT, SHOW, VALUES, read-only CTE, COPY TO, EXPLAIN
  kWrite,       //!< INSERT/UPDATE/DELETE/MERGE, writing CTE, locking SELECT, nextval, CALL, DO
  kDdl,         //!< CREATE/ALTER/DROP/TRUNCATE/GRANT/COMMENT ...
  kTransaction, //!< BEGIN, COMMIT, ROLLBACK, SAVEPOINT ...
  kSession,     //!< SET, RESET, PREPARE, DEALLOCATE, DISCARD, LISTEN ...
  kUnknown,     //!< unparsable or a statement type we do not know: treated as a write
};

//! How a statement reaches the secondary once the primary has run it.
enum class MirrorPlan {
  kNone,      //!< nothing to apply (reads, locking reads, LISTEN, VACUUM ...)
  kRowImage,  //!< run with RETURNING on the primary; apply the returned rows by key
  kStatement, //!< run the same statement text on the secondary
  kCopyIn,    //!< COPY FROM STDIN: the same statement, fed the same data
};

enum class TransactionOp {
  kNone,
  kBegin,
  kCommit,
  kRollback,
  kSavepoint,
  kRelease,
  kRollbackTo,
  kPrepare,       //!< PREPARE TRANSACTION
  kFinishPrepared //!< COMMIT PREPARED / ROLLBACK PREPARED
};

//! Which rows a row-image statement changes.
enum class RowImageOp { kUpsert, kDelete };

//! The table a row-image statement writes, as the client named it.
struct TargetTable {
  std::string schema; //!< empty when unqualified
  std::string name;
  std::string alias; //!< empty when none
  bool temporary = false;
  //! The name a RETURNING clause uses for the table: the alias, else the bare name, quoted.
  std::string reference() const;
  //! The (possibly schema-qualified) name to write on the secondary, quoted.
  std::string qualified() const;
};

//! A column of an INSERT … VALUES that some rows give a value of their own and others leave
//! DEFAULT: by name when the statement lists its columns, else by position in the table.
struct PartlyValued {
  std::string column;
  size_t position = 0;
  std::vector<bool> given; //!< per row of the VALUES list, in order
};

//! A column value of an INSERT (VALUES, or a SELECT's list) or UPDATE … SET that is a call
//! (possibly cast) of a large-object function creating an object (lo_from_bytea, lo_create,
//! lo_creat, lo_import): the row image holds the OID the primary's call chose, so the secondary
//! creates that object rather than running the call, which would choose one of its own.
struct LargeObjectColumn {
  std::string column;        //!< by name; empty when the INSERT lists no columns
  size_t position = 0;       //!< ... then by position in the table
  std::optional<size_t> row; //!< the row of the VALUES list; nullopt: every row
  size_t rows = 0;           //!< the VALUES list's rows, which the image's follow
  LargeObjectFunction function = LargeObjectFunction::kCreate; //!< the creating function
  std::optional<size_t> data; //!< lo_from_bytea's data as a parameter, $n: n
};

struct Classification;

//! One statement of a query string.
struct Statement {
  size_t offset = 0; //!< byte offset of the statement in the classified text
  size_t length = 0; //!< bytes, without the terminating semicolon
  StatementKind kind = StatementKind::kUnknown;
  MirrorPlan mirror = MirrorPlan::kStatement;
  TransactionOp transaction = TransactionOp::kNone;
  bool read_only = false;     //!< BEGIN/START TRANSACTION READ ONLY
  bool locking = false;       //!< SELECT ... FOR UPDATE/SHARE
  bool has_returning = false; //!< the client's own RETURNING clause
  //! That clause has a `*` or `t.*` column: its columns are the table's as they are when the
  //! statement runs, so a column added since it was prepared changes what it returns.
  bool returning_star = false;
  RowImageOp image_op = RowImageOp::kUpsert;
  TargetTable target; //!< row-image statements, COPY FROM STDIN, a table filled by a query
  //! Whether the rows of `target` are the primary's to copy after the statement, as running it
  //! again need not give the secondary the same values: kQuery for CREATE TABLE AS or SELECT
  //! INTO (WITH DATA, not temporary), the rows its query chose; kColumnDefault for ALTER
  //! TABLE ... ADD COLUMN with a default that is not a constant (now(), random(), a serial or
  //! identity column), the values that default gave the rows the table had.
  TableFill fills_table = TableFill::kNone;
  //! DDL that may change the columns of tables that exist: the table's name (without its
  //! schema) for ALTER TABLE and RENAME, empty when it may be any (DROP ... CASCADE).
  std::optional<std::string> reshapes_table;
  //! DDL that only creates a temporary table, view or sequence (`target`), which no other
  //! session sees: what other sessions know of the schema holds. A temporary child of a
  //! permanent table is not private (its parent's queries in this session see its rows).
  //! So is DDL whose names_relations are all in schema pg_temp.
  bool private_ddl = false;
  //! A temporary table created ON COMMIT DROP: gone when its transaction ends.
  bool dropped_at_commit = false;
  //! DDL that acts only on the relations it names: DROP TABLE/VIEW/SEQUENCE/INDEX, ALTER
  //! TABLE, CREATE INDEX, TRUNCATE (none with CASCADE, nor ALTER TABLE's inheritance and
  //! partition commands). Private too when those are the session's temporary relations,
  //! which only the primary can tell for a name without a schema (MirrorRelay asks it).
  std::vector<TargetTable> names_relations;
  std::optional<CopyFrom> copy_from; //!< COPY FROM STDIN
  //! UPDATE ... SET and INSERT ... ON CONFLICT DO UPDATE SET targets (a key change needs care)
  std::vector<std::string> set_columns;
  //! A write mirrored as itself, whose rows no row image carries (a writing CTE, MERGE): the
  //! tables its INSERT, UPDATE, DELETE and MERGE write, for the journal to bring in line
  //! when the secondary misses it. Empty where they are not all known (CALL, DO, a function
  //! that may write any table).
  std::vector<TargetTable> written_tables;
  //! INSERT: the columns every row gives a value of its own rather than DEFAULT, so a serial
  //! or identity id there came from the client, not from the sequence. By name when the
  //! statement lists its columns, else by position in the table (`valued_positions`);
  //! `values_every_column` for a query feeding a table without a column list.
  std::vector<std::string> valued_columns;
  std::vector<size_t> valued_positions;
  bool values_every_column = false;
  //! INSERT … VALUES: the columns some rows give a value and others leave DEFAULT.
  std::vector<PartlyValued> partly_valued;
  //! INSERT: of those, the columns some row computes a value of (a call, an expression, a
  //! query), not a constant or a parameter: run again, the statement may compute another.
  //! As `valued_columns`; `computes_every_column` for a query without a column list.
  std::vector<std::string> computed_columns;
  std::vector<size_t> computed_positions;
  bool computes_every_column = false;
  std::string node; //!< parse node name, e.g. "InsertStmt"
  //! PREPARE, EXECUTE and DEALLOCATE: the prepared statement's name (empty: DEALLOCATE ALL).
  std::string prepared_name;
  bool drops_all_prepared = false; //!< DEALLOCATE ALL, DISCARD ALL
  bool drops_temporaries = false;  //!< DISCARD TEMP, DISCARD ALL
  std::string savepoint_name;      //!< SAVEPOINT, RELEASE and ROLLBACK TO
  //! PREPARE TRANSACTION, COMMIT PREPARED and ROLLBACK PREPARED: the transaction's name.
  std::string prepared_transaction;
  //! SET LOCAL and SET TRANSACTION: the setting ends with its transaction, committed or not.
  bool transaction_scoped = false;
  //! PREPARE of a row-image write: that write, classified on its own.
  std::shared_ptr<const Classification> prepared_write;
  bool prepared_read = false; //!< PREPARE of a read that writes and locks nothing
  // What read routing needs to know about a SELECT or SHOW.
  bool nested_write = false;  //!< a writing CTE or sub-statement
  bool pinned_call = false;   //!< calls a function whose answer depends on the connection
  bool reads_catalog = false; //!< reads the system catalogs, whose OIDs are the primary's
  bool ordered = false;       //!< the top-level query has ORDER BY: row order is meaningful
  //! A SELECT that is one call of a large-object function, its arguments literals or
  //! parameters (function_call_statement, sql_large_object_call): mirrored by what the call
  //! did, as a FunctionCall of it is.
  bool large_object_call = false;
  //! The large-object calls giving columns their values, when those are all the statement
  //! makes: their functions are then not among `writing_calls`.
  std::vector<LargeObjectColumn> large_object_columns;
  std::vector<std::string> unlisted_functions; //!< calls off the read-only allow-list
  //! unlisted_functions but the sequence and random built-ins: functions that may write
  //! tables the statement does not name (which a row image does not carry).
  std::vector<std::string> writing_calls;
};

//! A query string split into statements and classified. `error` is set when libpg_query
//! could not parse it; the text is then one kUnknown statement mirrored as is.
struct Classification {
  std::vector<Statement> statements;
  std::string error;
  //! The text holds more statements than the lookup allowed (ClassificationCache::get): it was
  //! not parsed, and `error` says so.
  bool too_many_statements = false;

  bool needs_mirror() const;
  bool has_transaction_control() const;
};

//! Classifies `sql` with the PostgreSQL 15 parser. The parser recurses once per level of the
//! parse tree, so a statement that may nest deeply (QueryShape::nesting) is parsed on a thread
//! with a stack to match, and one that may nest deeper than PostgreSQL accepts is left
//! unparsed (`error` set): neither a crash nor an exception, whatever the text.
Classification classify(std::string_view sql);

//! A statement that is a call of a built-in function (unqualified, or in pg_catalog) and
//! nothing more, `SELECT lo_open('16385', 131072)`: the function's name and its arguments,
//! each a literal (possibly cast; NULL as nullopt) or a parameter. nullopt for any other
//! statement, or text that does not parse.
struct FunctionCallStatement {
  struct Argument {
    std::optional<size_t> parameter;    //!< $n: n
    std::optional<std::string> literal; //!< otherwise: the literal, as text
  };
  std::string name;
  std::vector<Argument> arguments;
};
std::optional<FunctionCallStatement> function_call_statement(std::string_view statement);

//! The name of the result column that separates the client's own RETURNING columns from
//! the row image switchyard appends behind them.
inline constexpr std::string_view kImageMarker = "__switchyard_image";

//! The text to send the primary for a row-image statement: the statement plus a RETURNING
//! clause (or an extension of the client's) that yields the marker and the whole row.
//! SQLite's RETURNING knows only its target table's columns and takes no "table.*".
std::string with_row_image(std::string_view statement_text, const Statement& statement,
                           Dialect dialect = Dialect::kPostgres);

//! The text to send the primary for a PREPARE of a row-image write: its statement with the
//! row image appended (see with_row_image), so an EXECUTE of it returns the image. nullopt
//! when `statement` prepares no such write.
std::optional<std::string> prepare_with_row_image(std::string_view statement_text,
                                                  const Statement& statement,
                                                  Dialect dialect = Dialect::kPostgres);

//! `prepare` (PREPARE name ...) preparing the same statement under `name` (an identifier as
//! it is to appear in SQL). nullopt when the text does not start so.
std::optional<std::string> prepare_renamed(std::string_view prepare, std::string_view name);

//! libpg_query's fingerprint of `sql` (same for statements that differ only in constants),
//! as 16 hex digits; empty when the text does not parse or nests too deeply to (see classify).
std::string fingerprint(std::string_view sql);

//! What a view shows, read from its definition (pg_get_viewdef): the one relation it selects
//! from and, per column, that relation's column it shows.
struct ViewSource {
  TargetTable relation;
  struct Column {
    std::string name;  //!< the view's
    std::string shows; //!< the relation's column it shows; empty for an expression
  };
  std::vector<Column> columns;
};

//! The source of the view `definition` defines when PostgreSQL can write through it
//! (one relation in FROM; no DISTINCT, GROUP BY, HAVING, LIMIT, OFFSET, WITH, set operation
//! or window at the top, as "automatically updatable" requires); nullopt when it cannot, or
//! the text does not parse. Names are as written, unquoted.
std::optional<ViewSource> view_source(std::string_view definition);

//! Whether `expression` (a column default as pg_get_expr prints it) is a literal, possibly
//! cast: the same value on every database. False for anything that does not parse as one.
bool constant_expression(std::string_view expression);

//! `name` as a PostgreSQL identifier: bare when it is a plain lower-case name, else quoted.
std::string quote_identifier(std::string_view name);

//! Where one statement sits in a query string: [offset, offset + length), no semicolon.
struct StatementSpan {
  size_t offset = 0;
  size_t length = 0;
  bool operator==(const StatementSpan&) const = default;
};

//! A query string lexed as PostgreSQL does (standard_conforming_strings on): its statements'
//! spans, and a key equal for texts that differ only in their literals (each string or
//! number becomes '?'). `ok` is false for unterminated quotes or comments.
struct QueryShape {
  std::string key;
  std::vector<StatementSpan> spans;
  bool ok = true;
  //! An upper bound of how deeply the parse trees nest, in tokens: within each pair of
  //! brackets, the most tokens between two commas or semicolons (a bracketed part counting as
  //! one token there, and its own bound below), plus every UNION, INTERSECT and EXCEPT (whose
  //! trees hold all their arms, commas and all). Lists and statements add nothing: their items
  //! are side by side in the tree.
  size_t nesting = 0;
};
//! The shape of `sql`, lexed only up to its statement past `max_statements` (which `spans`
//! then ends with): a text of more is not to be parsed, and its cost is bounded.
QueryShape query_shape(std::string_view sql, size_t max_statements = SIZE_MAX);

//! The rows of the VALUES list of `statement` (the first VALUES keyword outside brackets, as
//! an INSERT's), each with its brackets; empty when there is no such list, or the text does
//! not lex cleanly.
std::vector<StatementSpan> values_rows(std::string_view statement);

//! `statement` with each list of two or more constants after IN or ARRAY (`IN (1, 2, 3)`,
//! `ARRAY['a', 'b']`; numbers, string constants, parameters) cut to its first constant;
//! nullopt when it has none, or does not lex cleanly. It classifies as `statement` does: a
//! classification holds nothing of how many constants a list has.
std::optional<std::string> without_constant_lists(std::string_view statement);

//! A classification and where its statements are in the text that was looked up.
struct ClassifiedQuery {
  std::shared_ptr<const Classification> classification;
  std::vector<StatementSpan> spans; //!< one per statement

  //! The text of statement `i` of `sql` (the text given to the lookup).
  std::string_view text(std::string_view sql, size_t i) const {
    return sql.substr(spans[i].offset, spans[i].length);
  }
};

//! A bounded cache of classifications for one session. Keys are literal-free shapes, so
//! "... WHERE aid = 1" and "... WHERE aid = 2" share one parse: what a statement does never
//! depends on its constants, save the name of a prepared transaction, which is not cached. A shape
//! is cached only when libpg_query split the text into the same statements as the lexer did.
class ClassificationCache {
public:
  //! At most `capacity` shapes and about `byte_budget` bytes of keys and statements (one
  //! parse of a long multi-statement text can outweigh a thousand ordinary ones); a shape
  //! costing over a sixteenth of the budget is classified but not kept.
  ClassificationCache(size_t capacity, size_t byte_budget)
      : capacity_(capacity), byte_budget_(byte_budget) {}

  //! The classification of `sql`, computed on a miss; `too_many_statements` when it holds more
  //! than `max_statements` (a parse costs memory per statement, see classify.cpp).
  ClassifiedQuery get(std::string_view sql, size_t max_statements = SIZE_MAX);
  size_t hits() const { return hits_; }
  size_t misses() const { return misses_; }
  //! What the cached shapes are reckoned to cost (see the constructor).
  size_t bytes() const { return bytes_; }

private:
  struct Entry {
    std::string key;
    std::shared_ptr<const Classification> classification;
    size_t bytes;
  };
  void evict_oldest();

  size_t capacity_;
  size_t byte_budget_;
  size_t bytes_ = 0;
  size_t hits_ = 0;
  size_t misses_ = 0;
  std::list<Entry> entries_; // most recently used first
  std::unordered_map<std::string_view, std::list<Entry>::iterator> index_;
};

} // namespace switchyard::protocol
