#pragma once

#include <string>
#include <string_view>

namespace switchyard::proxy {

//! Statements the SQLite engine answers itself, because SQLite does not know them or because
//! PostgreSQL's meaning differs (transactions, settings); everything else goes to SQLite.
enum class EngineCommand {
  kSql,        //!< handed to SQLite
  kEmpty,      //!< only whitespace and comments
  kBegin,      //!< BEGIN / START TRANSACTION
  kCommit,     //!< COMMIT / END
  kRollback,   //!< ROLLBACK / ABORT
  kSavepoint,  //!< SAVEPOINT name
  kRelease,    //!< RELEASE [SAVEPOINT] name
  kRollbackTo, //!< ROLLBACK TO [SAVEPOINT] name
  kSet,        //!< SET [SESSION | LOCAL] name { TO | = } value, SET TIME ZONE
  kSetIgnored, //!< SET TRANSACTION / SET SESSION CHARACTERISTICS: SQLite is serializable
  kReset,      //!< RESET name | ALL
  kShow,       //!< SHOW name | ALL
  kDiscard,    //!< DISCARD ALL | PLANS | ...
  kDeallocate, //!< DEALLOCATE [PREPARE] name | ALL
  kUnsupported //!< PostgreSQL-only statements SQLite cannot honour (COPY, LISTEN, ...)
};

//! One statement as the engine sees it.
struct EngineStatement {
  EngineCommand command = EngineCommand::kSql;
  bool read_only = false;  //!< BEGIN ... READ ONLY
  bool immediate = false;  //!< BEGIN IMMEDIATE / EXCLUSIVE: take the writer at once
  bool local = false;      //!< SET LOCAL
  bool to_default = false; //!< SET name TO DEFAULT
  std::string name{};      //!< setting, savepoint or prepared statement name ("all" for ALL)
  std::string value{};     //!< SET's value, list items joined by ", "
  std::string what{};      //!< kUnsupported: the statement's leading words, for the error
};

//! Recognises what `sql` (one statement) is. Malformed engine commands come back as kSql so
//! SQLite reports the syntax error.
EngineStatement recognise_statement(std::string_view sql);

//! The command name PostgreSQL puts in CommandComplete for SQL statement `sql`: "INSERT",
//! "UPDATE", "DELETE", "SELECT" (also past a WITH clause), "CREATE TABLE", "DROP INDEX", ...
std::string command_verb(std::string_view sql);

} // namespace switchyard::proxy
