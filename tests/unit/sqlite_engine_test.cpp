#include <catch2/catch.hpp>

#include "protocol/pg_values.hpp"
#include "proxy/sqlite_commands.hpp"
#include "proxy/sqlite_engine.hpp"
#include "proxy/sqlite_values.hpp"

using namespace switchyard::proxy;

TEST_CASE("engine commands are recognised, everything else goes to SQLite") {
  auto begin = recognise_statement("begin isolation level repeatable read read only");
  CHECK(begin.command == EngineCommand::kBegin);
  CHECK(begin.read_only);
  CHECK(recognise_statement("BEGIN IMMEDIATE").immediate);
  CHECK(recognise_statement("START TRANSACTION").command == EngineCommand::kBegin);
  CHECK(recognise_statement("end").command == EngineCommand::kCommit);
  auto to = recognise_statement("ROLLBACK TO SAVEPOINT \"Sp 1\"");
  CHECK(to.command == EngineCommand::kRollbackTo);
  CHECK(to.name == "Sp 1");
  CHECK(recognise_statement("release s1").name == "s1");
  auto set = recognise_statement("SET LOCAL search_path TO 'a b', public");
  CHECK(set.command == EngineCommand::kSet);
  CHECK(set.local);
  CHECK(set.name == "search_path");
  CHECK(set.value == "a b, public");
  CHECK(recognise_statement("set extra_float_digits = -3").value == "-3");
  CHECK(recognise_statement("SET TIME ZONE 'UTC'").name == "timezone");
  CHECK(recognise_statement("SET x TO DEFAULT").to_default);
  CHECK(recognise_statement("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").command ==
        EngineCommand::kSetIgnored);
  CHECK(recognise_statement("show DateStyle").name == "datestyle");
  CHECK(recognise_statement("DEALLOCATE PREPARE all").name == "all");
  auto copy = recognise_statement("COPY t FROM STDIN");
  CHECK(copy.command == EngineCommand::kUnsupported);
  CHECK(copy.what == "COPY");
  CHECK(recognise_statement(" -- nothing\n").command == EngineCommand::kEmpty);
  CHECK(recognise_statement("SET = 1").command == EngineCommand::kSql); // SQLite reports it
  CHECK(recognise_statement("SELECT 'BEGIN'").command == EngineCommand::kSql);
  CHECK(recognise_statement("CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1; END").command ==
        EngineCommand::kSql);
}

TEST_CASE("command tags name what ran") {
  CHECK(command_verb("insert or replace into t values (1)") == "INSERT");
  CHECK(command_verb("WITH a AS (SELECT 1) UPDATE t SET x = (SELECT * FROM a)") == "UPDATE");
  CHECK(command_verb("with recursive s(v) as (select 1 union all select v+1 from s) select v") ==
        "SELECT");
  CHECK(command_verb("CREATE UNIQUE INDEX i ON t (x)") == "CREATE INDEX");
  CHECK(command_verb("drop table if exists t") == "DROP TABLE");
  CHECK(command_verb("VALUES (1)") == "SELECT");
  CHECK(command_verb("pragma user_version") == "PRAGMA");
}

TEST_CASE("declared SQLite types map to PostgreSQL types") {
  using namespace switchyard::protocol;
  CHECK(type_for_declared("INTEGER") == oid::kInt8);
  CHECK(type_for_declared("bigint") == oid::kInt8);
  CHECK(type_for_declared("VARCHAR(20)") == oid::kText);
  CHECK(type_for_declared("double precision") == oid::kFloat8);
  CHECK(type_for_declared("BLOB") == oid::kBytea);
  CHECK(type_for_declared("boolean") == oid::kBool);
  CHECK(type_for_declared("TIMESTAMPTZ") == oid::kTimestamptz);
  CHECK(type_for_declared("timestamp without time zone") == oid::kTimestamp);
  CHECK(type_for_declared("DECIMAL(10,2)") == oid::kNumeric);
  CHECK(type_for_declared(nullptr) == 0);
  CHECK(type_for_storage(SQLITE_FLOAT) == oid::kFloat8);
}

TEST_CASE("SQLite result codes map to SQLSTATEs") {
  CHECK(sqlstate_for(SQLITE_CONSTRAINT_UNIQUE, "") == "23505");
  CHECK(sqlstate_for(SQLITE_CONSTRAINT_PRIMARYKEY, "") == "23505");
  CHECK(sqlstate_for(SQLITE_CONSTRAINT_FOREIGNKEY, "") == "23503");
  CHECK(sqlstate_for(SQLITE_CONSTRAINT_NOTNULL, "") == "23502");
  CHECK(sqlstate_for(SQLITE_CONSTRAINT_CHECK, "") == "23514");
  CHECK(sqlstate_for(SQLITE_BUSY, "database is locked") == "55P03");
  CHECK(sqlstate_for(SQLITE_ERROR, "near \"x\": syntax error") == "42601");
  CHECK(sqlstate_for(SQLITE_ERROR, "no such table: t") == "42P01");
  CHECK(sqlstate_for(SQLITE_ERROR, "no such column: c") == "42703");
  CHECK(sqlstate_for(SQLITE_ERROR, "table t already exists") == "42P07");
}

TEST_CASE("switchyard_raise fails a statement with the SQLSTATE it names, once") {
  auto opened = SqliteConnection::open(":memory:", std::chrono::milliseconds(100));
  REQUIRE(opened);
  SqliteConnection& connection = **opened;
  auto raised = connection.exec("SELECT switchyard_raise('0A000', 'refused: it''s 100%')");
  REQUIRE(raised);
  CHECK(raised->sqlstate == "0A000");
  CHECK(raised->message == "refused: it's 100%");
  // The next error is SQLite's own again.
  auto missing = connection.exec("SELECT * FROM missing");
  REQUIRE(missing);
  CHECK(missing->sqlstate == "42P01");
  // Not a SQLSTATE: mapped as any other error of a function.
  auto malformed = connection.exec("SELECT switchyard_raise('nope', 'malformed')");
  REQUIRE(malformed);
  CHECK(malformed->sqlstate == "42000");
  CHECK(malformed->message == "malformed");
}
