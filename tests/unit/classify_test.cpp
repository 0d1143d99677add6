#include <catch2/catch.hpp>

#include <set>
#include <string>

#include "protocol/classify.hpp"
#include "protocol/extended.hpp"
#include "protocol/row_image.hpp"
#include "protocol/wire.hpp"

using namespace switchyard::protocol;

namespace {

Statement only(std::string_view sql) {
  Classification c = classify(sql);
  REQUIRE(c.error.empty());
  REQUIRE(c.statements.size() == 1);
  return c.statements[0];
}

// The names of `tables` as SQL writes them.
std::vector<std::string> qualified(const std::vector<TargetTable>& tables) {
  std::vector<std::string> names;
  names.reserve(tables.size());
  for (const TargetTable& table : tables)
    names.push_back(table.qualified());
  return names;
}

} // namespace

TEST_CASE("reads stay reads; locking, writing CTEs and unknown functions do not") {
  CHECK(only("SELECT abalance FROM pgbench_accounts WHERE aid = 1").kind == StatementKind::kRead);
  CHECK(only("SELECT count(*), now() FROM t").kind == StatementKind::kRead);
  CHECK(only("VALUES (1), (2)").kind == StatementKind::kRead);
  CHECK(only("SHOW search_path").kind == StatementKind::kRead);
  CHECK(only("WITH x AS (SELECT 1) SELECT * FROM x").kind == StatementKind::kRead);

  Statement locking = only("SELECT * FROM t WHERE id = 1 FOR UPDATE");
  CHECK(locking.kind == StatementKind::kWrite);
  CHECK(locking.mirror == MirrorPlan::kNone);

  Statement cte = only("WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d");
  CHECK(cte.kind == StatementKind::kWrite);
  CHECK(cte.mirror == MirrorPlan::kStatement);

  Statement sequence = only("SELECT nextval('s')");
  CHECK(sequence.kind == StatementKind::kWrite);
  CHECK(sequence.mirror == MirrorPlan::kStatement);

  Statement advisory = only("SELECT pg_advisory_lock(42)");
  CHECK(advisory.kind == StatementKind::kWrite);
  CHECK(advisory.mirror == MirrorPlan::kNone);
}

TEST_CASE("built-in functions are known by their own name, not by a schema's function of it") {
  Statement pure = only("SELECT upper(name), unnest(tags), to_date(d, 'YYYY') FROM t");
  CHECK(pure.kind == StatementKind::kRead);
  CHECK_FALSE(pure.reads_catalog);
  CHECK(only("SELECT pg_catalog.upper(name) FROM t").kind == StatementKind::kRead);

  Statement own = only("SELECT app.upper(name) FROM t");
  CHECK(own.kind == StatementKind::kWrite);
  CHECK(own.mirror == MirrorPlan::kStatement);
  CHECK(own.unlisted_functions == std::vector<std::string>{"upper"});

  // pgbench's start-up and psql's \dt: reads of the primary's catalog, never mirrored.
  for (const char* sql :
       {"select o.n, p.partstrat, pg_catalog.count(i.inhparent) from pg_catalog.pg_class as c "
        "join pg_catalog.pg_namespace as n on (n.oid = c.relnamespace) cross join lateral "
        "(select pg_catalog.array_position(pg_catalog.current_schemas(true), n.nspname)) as o(n) "
        "left join pg_catalog.pg_partitioned_table as p on (p.partrelid = c.oid) left join "
        "pg_catalog.pg_inherits as i on (c.oid = i.inhparent) where c.relname = "
        "'pgbench_accounts' and o.n is not null group by 1, 2 order by 1 asc limit 1",
        "SELECT n.nspname, c.relname, pg_catalog.pg_get_userbyid(c.relowner) FROM "
        "pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r','p','') AND pg_catalog.pg_table_is_visible(c.oid)",
        "SELECT pg_size_pretty(pg_total_relation_size('t'))"}) {
    Statement s = only(sql);
    CHECK(s.kind == StatementKind::kRead);
    CHECK(s.mirror == MirrorPlan::kNone);
    CHECK(s.reads_catalog);
  }
}

TEST_CASE("an INSERT tells the columns it gives values of its own from those left DEFAULT") {
  Statement listed = only("INSERT INTO t (id, a, b) VALUES (DEFAULT, 1, DEFAULT), (DEFAULT, 2, 3)");
  CHECK(listed.valued_columns == std::vector<std::string>{"a"});
  CHECK(listed.valued_positions.empty());
  CHECK_FALSE(listed.values_every_column);
  // Given by some rows only: which rows, so that the ids the others drew are told apart.
  REQUIRE(listed.partly_valued.size() == 1);
  CHECK(listed.partly_valued[0].column == "b");
  CHECK(listed.partly_valued[0].given == std::vector<bool>{false, true});

  Statement positional = only("INSERT INTO t VALUES (DEFAULT, 1), (DEFAULT, $1), (7, 2)");
  CHECK(positional.valued_columns.empty());
  CHECK(positional.valued_positions == std::vector<size_t>{1});
  REQUIRE(positional.partly_valued.size() == 1);
  CHECK(positional.partly_valued[0].column.empty());
  CHECK(positional.partly_valued[0].position == 0);
  CHECK(positional.partly_valued[0].given == std::vector<bool>{false, false, true});

  Statement omitted = only("INSERT INTO t (a) VALUES (1) ON CONFLICT DO NOTHING");
  CHECK(omitted.valued_columns == std::vector<std::string>{"a"});

  Statement query = only("INSERT INTO t (id, a) SELECT g, g FROM generate_series(1, 3) g");
  CHECK(query.valued_columns == std::vector<std::string>{"id", "a"});
  CHECK_FALSE(query.values_every_column);
  CHECK(only("INSERT INTO t SELECT * FROM u").values_every_column);

  // Computed: run again, the statement may give such a column another value.
  Statement computed =
      only("INSERT INTO t (id, a, b, c) VALUES ($1::int, next_id(), 'x'::text, 1), "
           "(2, 3, DEFAULT, now())");
  CHECK(computed.computed_columns == std::vector<std::string>{"a", "c"});
  CHECK(only("INSERT INTO t VALUES (ulid(), 1)").computed_positions == std::vector<size_t>{0});
  CHECK(query.computed_columns == std::vector<std::string>{"id", "a"});
  CHECK(only("INSERT INTO t SELECT * FROM u").computes_every_column);

  Statement defaults = only("INSERT INTO t DEFAULT VALUES");
  CHECK(defaults.valued_columns.empty());
  CHECK(defaults.valued_positions.empty());
  CHECK_FALSE(defaults.values_every_column);
}

TEST_CASE("DML is mirrored by row image with its target table") {
  Statement insert = only("INSERT INTO public.\"Orders\" AS o (a) VALUES (now()) RETURNING a");
  CHECK(insert.mirror == MirrorPlan::kRowImage);
  CHECK(insert.image_op == RowImageOp::kUpsert);
  CHECK(insert.has_returning);
  CHECK(insert.target.qualified() == "public.\"Orders\"");
  CHECK(insert.target.reference() == "o");
  CHECK_FALSE(insert.returning_star);
  // Only a star of its own yields the table's columns as they are when it runs.
  CHECK(only("INSERT INTO t VALUES (1) RETURNING *").returning_star);
  CHECK(only("UPDATE t AS x SET a = 1 RETURNING a, x.*").returning_star);
  CHECK_FALSE(only("UPDATE t SET a = 1 RETURNING row_to_json(t.*), t").returning_star);

  Statement update = only("UPDATE t SET x = x + random(), id = 3 FROM u WHERE t.id = u.id");
  CHECK(update.mirror == MirrorPlan::kRowImage);
  CHECK(update.set_columns == std::vector<std::string>{"x", "id"});
  CHECK(update.target.reference() == "t");
  // An upsert's DO UPDATE may move the row it found to another key, as an UPDATE may.
  CHECK(only("INSERT INTO t VALUES (1, 'a') ON CONFLICT (e) DO UPDATE SET id = excluded.id, n = 2")
            .set_columns == std::vector<std::string>{"id", "n"});
  CHECK(only("INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING").set_columns.empty());
  CHECK(only("INSERT INTO t VALUES (1)").set_columns.empty());

  Statement del = only("DELETE FROM t WHERE id = (SELECT max(id) FROM t)");
  CHECK(del.image_op == RowImageOp::kDelete);
  CHECK_FALSE(del.has_returning);

  Statement nested = only("WITH d AS (DELETE FROM a RETURNING *) INSERT INTO b SELECT * FROM d");
  CHECK(nested.mirror == MirrorPlan::kStatement);

  CHECK(only("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE").mirror ==
        MirrorPlan::kStatement);
  CHECK(only("COPY t FROM STDIN").mirror == MirrorPlan::kCopyIn);
  CHECK(only("COPY t TO STDOUT").kind == StatementKind::kRead);
  CHECK(only("COPY (SELECT * FROM t) TO STDOUT").mirror == MirrorPlan::kNone);
  // COPY (query) TO runs the query: what it writes, the secondary must write too.
  Statement copied = only("COPY (INSERT INTO t VALUES (1) RETURNING *) TO STDOUT");
  CHECK(copied.kind == StatementKind::kWrite);
  CHECK(copied.mirror == MirrorPlan::kStatement);
  CHECK(qualified(copied.written_tables) == std::vector<std::string>{"t"});
  CHECK(qualified(only("COPY (WITH d AS (DELETE FROM a RETURNING *) INSERT INTO b SELECT * FROM d "
                       "RETURNING *) TO STDOUT")
                      .written_tables) == std::vector<std::string>{"a", "b"});
  // A function that may write any table: what it wrote is not known.
  CHECK(only("COPY (UPDATE t SET n = audit(n) RETURNING n) TO STDOUT").written_tables.empty());
  CHECK(only("COPY (SELECT nextval('s')) TO STDOUT").mirror == MirrorPlan::kStatement);
  Statement locking = only("COPY (SELECT * FROM t FOR UPDATE) TO STDOUT");
  CHECK(locking.kind == StatementKind::kWrite);
  CHECK(locking.mirror == MirrorPlan::kNone);
}

TEST_CASE("a write mirrored as itself names the tables it writes, where it names them all") {
  auto names = [](std::string_view sql) { return qualified(only(sql).written_tables); };
  using Names = std::vector<std::string>;
  CHECK(names("WITH d AS (DELETE FROM a RETURNING *) INSERT INTO s.\"B\" SELECT * FROM d") ==
        Names{"a", "s.\"B\""});
  CHECK(names("WITH d AS (DELETE FROM a RETURNING *), u AS (UPDATE a SET n = random() "
              "RETURNING *) SELECT nextval('q'), * FROM d") == Names{"a"});
  CHECK(names("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE") == Names{"t"});
  // A function that may write tables the statement does not name; no table named at all.
  CHECK(names("WITH d AS (DELETE FROM a RETURNING *) SELECT audit(d.id) FROM d").empty());
  CHECK(names("WITH d AS (DELETE FROM a RETURNING *) SELECT s.nextval('q') FROM d").empty());
  CHECK(names("SELECT audit(1)").empty());
  CHECK(names("DO $$BEGIN DELETE FROM a; END$$").empty());
  CHECK(names("CALL archive()").empty());
  // Row images carry what these wrote.
  CHECK(names("INSERT INTO a VALUES (1)").empty());
  CHECK(names("UPDATE a SET n = 1").empty());
}

TEST_CASE("a row-image write names the functions it calls that may write other tables") {
  using Names = std::vector<std::string>;
  Statement insert = only("INSERT INTO t VALUES (nextval('s'), random(), next_no(), now(), "
                          "audit.log(1), pg_catalog.upper('a'), next_no())");
  CHECK(insert.mirror == MirrorPlan::kRowImage);
  CHECK(insert.writing_calls == Names{"next_no", "log"});
  CHECK(only("UPDATE t SET n = f(n) WHERE id = g()").writing_calls == Names{"f", "g"});
  CHECK(only("DELETE FROM t WHERE id = gen_random_uuid()").writing_calls.empty());
  CHECK(only("INSERT INTO t SELECT setval('s', 5), lower(x) FROM u").writing_calls.empty());
}

TEST_CASE("transaction control, session state and DDL") {
  Statement begin = only("BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY");
  CHECK(begin.transaction == TransactionOp::kBegin);
  CHECK(begin.read_only);
  CHECK_FALSE(only("START TRANSACTION READ WRITE").read_only);
  // EXPLAIN ANALYZE runs its statement, so a write in it must reach the secondary too.
  Statement explained = only("EXPLAIN (ANALYZE) DELETE FROM t");
  CHECK(explained.kind == StatementKind::kWrite);
  CHECK(explained.mirror == MirrorPlan::kStatement);
  CHECK(only("EXPLAIN ANALYZE SELECT 1").mirror == MirrorPlan::kNone);
  CHECK(only("EXPLAIN (ANALYZE false) DELETE FROM t").kind == StatementKind::kRead);
  CHECK(only("EXPLAIN DELETE FROM t").mirror == MirrorPlan::kNone);
  CHECK(only("EXPLAIN SELECT * FROM \"analyze\"").kind == StatementKind::kRead);
  CHECK(only("END").transaction == TransactionOp::kCommit);
  CHECK(only("ROLLBACK TO SAVEPOINT a").transaction == TransactionOp::kRollbackTo);
  CHECK(only("SAVEPOINT a").transaction == TransactionOp::kSavepoint);
  CHECK(only("SAVEPOINT a").savepoint_name == "a");
  CHECK(only("RELEASE \"B c\"").savepoint_name == "B c");
  CHECK(only("ROLLBACK TO SAVEPOINT A").savepoint_name == "a");
  CHECK(only("PREPARE TRANSACTION 'Order 7'").transaction == TransactionOp::kPrepare);
  CHECK(only("PREPARE TRANSACTION 'Order 7'").prepared_transaction == "Order 7");
  CHECK(only("COMMIT PREPARED 'x'").transaction == TransactionOp::kFinishPrepared);
  CHECK(only("ROLLBACK PREPARED 'x'").prepared_transaction == "x");
  CHECK(only("COMMIT").prepared_transaction.empty());

  Statement set = only("SET search_path = app, public");
  CHECK(set.kind == StatementKind::kSession);
  CHECK(set.mirror == MirrorPlan::kStatement);
  CHECK_FALSE(set.transaction_scoped);
  // Settings that end with their transaction, and those that outlive it.
  CHECK(only("SET LOCAL search_path = app").transaction_scoped);
  CHECK(only("SET LOCAL TIME ZONE 'UTC'").transaction_scoped);
  CHECK(only("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").transaction_scoped);
  CHECK(only("SET TRANSACTION SNAPSHOT '00000003-0000001B-1'").transaction_scoped);
  CHECK_FALSE(only("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY").transaction_scoped);
  CHECK_FALSE(only("SET SESSION search_path = app").transaction_scoped);
  CHECK_FALSE(only("RESET search_path").transaction_scoped);
  CHECK(only("LISTEN channel").mirror == MirrorPlan::kNone);

  Statement ddl = only("CREATE TABLE t (id serial PRIMARY KEY)");
  CHECK(ddl.kind == StatementKind::kDdl);
  CHECK(ddl.mirror == MirrorPlan::kStatement);
  CHECK(only("TRUNCATE t").kind == StatementKind::kDdl);
}

TEST_CASE("tables filled by a query are named, with whether their rows are the primary's") {
  Statement ctas = only("CREATE TABLE s.\"Snap\" AS SELECT random() FROM t");
  CHECK(ctas.kind == StatementKind::kDdl);
  CHECK(ctas.fills_table == TableFill::kQuery);
  CHECK(ctas.target.qualified() == "s.\"Snap\"");
  Statement into = only("SELECT now() AS at INTO UNLOGGED snap FROM t LIMIT 3");
  CHECK(into.kind == StatementKind::kDdl);
  CHECK(into.fills_table == TableFill::kQuery);
  CHECK(into.target.qualified() == "snap");
  CHECK(only("CREATE TABLE IF NOT EXISTS snap AS EXECUTE q").fills_table == TableFill::kQuery);
  for (std::string_view sql :
       {"CREATE TABLE snap AS SELECT random() WITH NO DATA",
        "CREATE TEMP TABLE snap AS SELECT random()", "SELECT random() INTO TEMP snap",
        "CREATE MATERIALIZED VIEW snap AS SELECT random()", "CREATE TABLE snap (id int)"}) {
    CHECK(only(sql).fills_table == TableFill::kNone);
  }
}

TEST_CASE("columns added with a default of the primary's choosing fill the table's rows") {
  Statement added = only("ALTER TABLE s.t ADD COLUMN at timestamptz NOT NULL DEFAULT now()");
  CHECK(added.fills_table == TableFill::kColumnDefault);
  CHECK(added.target.qualified() == "s.t");
  for (std::string_view sql :
       {"ALTER TABLE t ADD COLUMN n int DEFAULT 1, ADD token uuid DEFAULT gen_random_uuid()",
        "ALTER TABLE t ADD id bigserial", "ALTER TABLE IF EXISTS t ADD COLUMN i serial4",
        "ALTER TABLE t ADD COLUMN i int GENERATED ALWAYS AS IDENTITY",
        "ALTER TABLE t ADD COLUMN r float8 DEFAULT random() * 2",
        "ALTER TABLE t ADD COLUMN d date DEFAULT CURRENT_DATE"}) {
    CHECK(only(sql).fills_table == TableFill::kColumnDefault);
  }
  for (std::string_view sql :
       {"ALTER TABLE t ADD COLUMN n int", "ALTER TABLE t ADD COLUMN n int DEFAULT -1 NOT NULL",
        "ALTER TABLE t ADD COLUMN s text DEFAULT 'x'::text",
        "ALTER TABLE t ADD COLUMN b bool DEFAULT true",
        "ALTER TABLE t ADD COLUMN g int GENERATED ALWAYS AS (n * 2) STORED",
        "ALTER TABLE t ALTER COLUMN n SET DEFAULT now()",
        "ALTER FOREIGN TABLE f ADD COLUMN at timestamptz DEFAULT now()",
        "ALTER TABLE t ADD COLUMN n int DEFAULT NULL"}) {
    CHECK(only(sql).fills_table == TableFill::kNone);
  }
}

TEST_CASE("DDL that may change the columns of a table says which table, or any") {
  CHECK(only("ALTER TABLE s.events ADD COLUMN n int").reshapes_table == "events");
  CHECK(only("ALTER TABLE IF EXISTS \"Events\" DROP COLUMN n").reshapes_table == "Events");
  CHECK(only("ALTER TABLE events RENAME COLUMN n TO m").reshapes_table == "events");
  CHECK(only("DROP TYPE mood CASCADE").reshapes_table == "");
  for (std::string_view sql :
       {"DROP TYPE mood", "CREATE INDEX ON events (n)", "CREATE TABLE t (n int)",
        "GRANT SELECT ON events TO app", "COMMENT ON TABLE events IS 'x'"}) {
    CHECK_FALSE(only(sql).reshapes_table);
  }
}

TEST_CASE("DDL creating only a temporary object of the session's own is private, naming it") {
  for (std::string_view sql :
       {"CREATE TEMP TABLE stage (id int PRIMARY KEY) ON COMMIT DROP",
        "CREATE TEMPORARY TABLE IF NOT EXISTS stage (LIKE events)",
        "CREATE TABLE pg_temp.stage (id int)", "CREATE TEMP TABLE stage AS SELECT * FROM events",
        "SELECT * INTO TEMP stage FROM events", "CREATE TEMP VIEW stage AS SELECT 1",
        "CREATE TEMP SEQUENCE stage"}) {
    const Statement s = only(sql);
    CHECK(s.kind == StatementKind::kDdl);
    CHECK(s.private_ddl);
    CHECK(s.target.name == "stage");
    CHECK(s.dropped_at_commit == (sql.find("ON COMMIT DROP") != std::string_view::npos));
  }
  CHECK(only("CREATE TEMP TABLE stage ON COMMIT DROP AS SELECT 1").dropped_at_commit);
  CHECK_FALSE(only("CREATE TEMP TABLE stage (id int) ON COMMIT DELETE ROWS").dropped_at_commit);
  // A temporary child changes what its permanent parent's queries see.
  for (std::string_view sql :
       {"CREATE TABLE stage (id int)", "CREATE TEMP TABLE stage () INHERITS (events)",
        "CREATE UNLOGGED TABLE stage (id int)", "CREATE TABLE stage AS SELECT 1",
        "DROP TABLE stage", "ALTER TABLE stage ADD COLUMN n int", "CREATE INDEX ON stage (id)",
        "CREATE VIEW stage AS SELECT 1",
        "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql RETURN 1"}) {
    CHECK_FALSE(only(sql).private_ddl);
  }
}

TEST_CASE("DDL acting only on the relations it names lists them, private when all are pg_temp's") {
  auto names = [](std::string_view sql) { return qualified(only(sql).names_relations); };
  using Names = std::vector<std::string>;
  CHECK(names("DROP TABLE stage, s.\"Kept\"") == Names{"stage", "s.\"Kept\""});
  CHECK(names("DROP VIEW IF EXISTS v") == Names{"v"});
  CHECK(names("DROP INDEX stage_id") == Names{"stage_id"});
  CHECK(names("ALTER TABLE stage ADD COLUMN n int, DROP COLUMN m") == Names{"stage"});
  CHECK(names("CREATE INDEX ON stage (id)") == Names{"stage"});
  CHECK(names("TRUNCATE stage, kept") == Names{"stage", "kept"});
  CHECK_FALSE(only("DROP TABLE stage").private_ddl);
  for (std::string_view sql : {"DROP TABLE pg_temp.stage", "TRUNCATE pg_temp.a, pg_temp.b",
                               "ALTER TABLE pg_temp.stage ADD COLUMN n int"}) {
    CHECK(only(sql).private_ddl);
  }
  CHECK_FALSE(only("TRUNCATE pg_temp.a, b").private_ddl);
  // Forms that may reach past the relations named name none.
  for (std::string_view sql :
       {"DROP TABLE stage CASCADE", "TRUNCATE stage CASCADE", "ALTER TABLE stage INHERIT events",
        "ALTER TABLE events ATTACH PARTITION stage FOR VALUES IN (1)", "DROP TYPE mood",
        "DROP FUNCTION f()", "DROP TABLE db.s.stage", "ALTER TABLE stage RENAME TO kept",
        "CREATE TABLE stage (id int)", "GRANT SELECT ON stage TO app"}) {
    CHECK(names(sql).empty());
    CHECK_FALSE(only(sql).private_ddl);
  }
}

TEST_CASE("statement boundaries and unparsable text") {
  std::string sql = "BEGIN; INSERT INTO t VALUES (1) ;\n  COMMIT";
  Classification c = classify(sql);
  REQUIRE(c.statements.size() == 3);
  CHECK(sql.substr(c.statements[1].offset, c.statements[1].length) == " INSERT INTO t VALUES (1) ");
  CHECK(sql.substr(c.statements[2].offset, c.statements[2].length) == "\n  COMMIT");
  CHECK(c.has_transaction_control());

  Classification bad = classify("SELEC 1");
  CHECK_FALSE(bad.error.empty());
  REQUIRE(bad.statements.size() == 1);
  CHECK(bad.statements[0].kind == StatementKind::kUnknown);
  CHECK(bad.needs_mirror());

  CHECK(classify("-- nothing").statements.empty());
}

namespace {

std::string repeated(std::string head, std::string_view link, size_t times,
                     std::string_view tail = "") {
  for (size_t i = 0; i < times; ++i)
    head += link;
  return head += tail;
}

} // namespace

TEST_CASE("statements that nest deeply are classified, not a crash or an exception") {
  // Left-deep chains nest one level per operator, cast or UNION however flat the text looks;
  // PostgreSQL accepts a few thousand of them.
  CHECK(only(repeated("SELECT 1", "+1", 30)).kind == StatementKind::kRead);
  CHECK(only(repeated("SELECT 1", "+1", 4000)).kind == StatementKind::kRead);
  CHECK(only(repeated("SELECT 1", "::int", 4000)).kind == StatementKind::kRead);
  CHECK(only(repeated("SELECT 1", " UNION ALL SELECT 1", 4000)).kind == StatementKind::kRead);
  CHECK(only(repeated("SELECT 1", " IS NOT NULL", 4000)).kind == StatementKind::kRead);
  CHECK(only(repeated("SELECT ", "NOT ", 4000, "true")).kind == StatementKind::kRead);
  CHECK(only(repeated("SELECT * FROM t", " JOIN t USING (id)", 4000)).kind == StatementKind::kRead);
  // Nested subqueries take the most stack per level; the parser's own stack stops them sooner.
  CHECK(only(repeated("SELECT ", "(SELECT ", 900, "1") + std::string(900, ')')).kind ==
        StatementKind::kRead);
  CHECK(only(repeated("SELECT ", "EXISTS (SELECT ", 900, "1") + std::string(900, ')')).kind ==
        StatementKind::kRead);
  CHECK(only("SELECT CASE WHEN a THEN (SELECT x FROM y WHERE z IN (SELECT q FROM r WHERE s = "
             "coalesce((SELECT 1), 2))) END FROM t")
            .kind == StatementKind::kRead);
  Statement update = only(repeated("UPDATE t SET x = x", " + random()", 4000, " WHERE id = 1"));
  CHECK(update.mirror == MirrorPlan::kRowImage);
  CHECK(update.target.name == "t");
  // A bulk insert is long but shallow: classified like a short one.
  Statement bulk = only(repeated("INSERT INTO t (a, b) VALUES (0, -1)", ", (1, now())", 50000));
  CHECK(bulk.mirror == MirrorPlan::kRowImage);

  // Deeper than PostgreSQL accepts: left unparsed, an unknown statement mirrored as it is.
  Classification absurd = classify(repeated("SELECT 1", "+1", 1'000'000));
  CHECK_THAT(absurd.error, Catch::Contains("nests too deeply"));
  REQUIRE(absurd.statements.size() == 1);
  CHECK(absurd.statements[0].kind == StatementKind::kUnknown);
  CHECK(absurd.statements[0].mirror == MirrorPlan::kStatement);
  CHECK(fingerprint(repeated("SELECT 1", "+1", 1'000'000)).empty());
  CHECK(fingerprint(repeated("SELECT 1", "+1", 4000)).size() == 16);
}

TEST_CASE("a statement's fingerprint ignores its constants, asked once or many times") {
  std::string update = fingerprint("UPDATE t SET a = a + 1 WHERE id = 7");
  REQUIRE(update.size() == 16);
  CHECK(fingerprint("UPDATE t SET a = a + 1 WHERE id = 7") == update); // remembered
  CHECK(fingerprint("UPDATE t SET a = a + 5 WHERE id = 9") == update);
  CHECK(fingerprint("DELETE FROM t WHERE id = 7") != update);
  // More texts than are remembered: the first is fingerprinted again, the same.
  std::set<std::string> others;
  for (int i = 0; i < 600; ++i)
    others.insert(fingerprint("SELECT c" + std::to_string(i) + " FROM t"));
  CHECK(others.size() == 600);
  CHECK(others.count(update) == 0);
  CHECK(fingerprint("UPDATE t SET a = a + 1 WHERE id = 7") == update);
  // A text too long to remember still gets its fingerprint, every time.
  std::string long_insert = repeated("INSERT INTO t (a) VALUES (0)", ", (1)", 2000);
  std::string long_print = fingerprint(long_insert);
  CHECK(long_print.size() == 16);
  CHECK(fingerprint(long_insert) == long_print);
  CHECK(fingerprint("not sql at all").empty());
}

TEST_CASE("the nesting bound counts what can nest, not what only repeats") {
  CHECK(query_shape("SELECT 1").nesting == 2);
  CHECK(query_shape("SELECT 1+1+1").nesting == 6);
  CHECK(query_shape("SELECT f((1))").nesting == 5); // SELECT f ( here, ( and 1 a level down
  CHECK(query_shape("SELECT a, b FROM t").nesting == 3);
  // Commas and semicolons separate subtrees, so lists and statements add no depth ...
  CHECK(query_shape(repeated("VALUES (1, -1)", ", (1, -1)", 1000)).nesting < 10);
  CHECK(query_shape(repeated("SELECT 1", "; SELECT 1", 1000)).nesting < 10);
  // ... but a UNION takes every arm below it, commas and all.
  CHECK(query_shape(repeated("SELECT 1, 2", " UNION SELECT 1, 2", 1000)).nesting >= 1000);
  CHECK(query_shape("SELECT 'a)' || \"b(\" -- )").nesting == 5);
}

TEST_CASE("a long text is classified statement by statement, as the parser splits it") {
  // Over 64 KiB a text is parsed a statement at a time; each must come out as in a short text.
  std::string statements[] = {
      "BEGIN",
      " INSERT INTO t (a, b) VALUES (1, now()) RETURNING a",
      "\n  UPDATE s.t AS x SET a = a + random() WHERE b = 'x;y' -- a; comment\n",
      " SELECT $$;$$, \"q;\" FROM t /* ; */",
      " CREATE TABLE u (id serial PRIMARY KEY, at timestamptz DEFAULT now())",
      " COMMIT"};
  std::string sql;
  while (sql.size() <= size_t{64} * 1024) {
    for (const std::string& statement : statements)
      sql += statement + ";";
  }
  Classification whole = classify(sql);
  CHECK(whole.error.empty());
  REQUIRE(whole.statements.size() % std::size(statements) == 0);
  auto summary = [](const Statement& s, size_t offset) {
    return std::to_string(offset) + " " + std::to_string(s.length) + " " + s.node + " " +
           std::to_string(static_cast<int>(s.kind)) + std::to_string(static_cast<int>(s.mirror)) +
           std::to_string(static_cast<int>(s.transaction)) + std::to_string(s.has_returning) + " " +
           s.target.qualified();
  };
  size_t offset = 0;
  for (size_t i = 0; i < whole.statements.size(); ++i) {
    const std::string& text = statements[i % std::size(statements)];
    Statement alone = only(text);
    alone.length = text.size();
    CHECK(summary(whole.statements[i], whole.statements[i].offset) == summary(alone, offset));
    offset += text.size() + 1;
  }

  // A function body of BEGIN ATOMIC ... END holds semicolons the lexer splits at: the text is
  // then parsed whole, as the parser sees one statement there.
  std::string atomic = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; "
                       "SELECT 2; END";
  Classification with_body = classify(repeated("", "SELECT 1;", 10'000, atomic));
  CHECK(with_body.error.empty());
  REQUIRE(with_body.statements.size() == 10'001);
  CHECK(with_body.statements.back().kind == StatementKind::kDdl);
  CHECK(with_body.statements.back().length == atomic.size());

  // A statement that does not parse makes the whole text one unknown statement, as when short.
  Classification bad = classify(repeated("", "SELECT 1;", 10'000, "SELEC 2"));
  CHECK_THAT(bad.error, Catch::Contains("syntax error"));
  REQUIRE(bad.statements.size() == 1);
  CHECK(bad.statements[0].kind == StatementKind::kUnknown);
}

TEST_CASE("row-image rewrite appends after the statement, even behind a comment") {
  Statement plain = only("INSERT INTO t VALUES (1) -- note");
  CHECK(with_row_image("INSERT INTO t VALUES (1) -- note", plain) ==
        "INSERT INTO t VALUES (1) -- note\nRETURNING NULL AS __switchyard_image, t.*");
  Statement returning = only("UPDATE t AS x SET a = 1 RETURNING a");
  CHECK(with_row_image("UPDATE t AS x SET a = 1 RETURNING a", returning) ==
        "UPDATE t AS x SET a = 1 RETURNING a\n, NULL AS __switchyard_image, x.*");
  CHECK(quote_identifier("a\"b") == "\"a\"\"b\"");
  CHECK(quote_identifier("Abc") == "\"Abc\"");
  // Keywords are quoted as PostgreSQL's quote_ident quotes them: all but the unreserved.
  CHECK(quote_identifier("order") == "\"order\""); // reserved
  CHECK(quote_identifier("time") == "\"time\"");   // a column-name keyword
  CHECK(quote_identifier("left") == "\"left\"");   // a type or function name keyword
  CHECK(quote_identifier("name") == "name");       // unreserved
  CHECK(quote_identifier("user") == "\"user\"");
  CHECK(quote_identifier("int") == "\"int\"");
  CHECK(quote_identifier("value") == "value");
  CHECK(quote_identifier("orders_2") == "orders_2");
  Statement keyword = only("INSERT INTO public.\"order\" (\"user\") VALUES ('a')");
  CHECK(with_row_image("INSERT INTO public.\"order\" (\"user\") VALUES ('a')", keyword)
            .ends_with("RETURNING NULL AS __switchyard_image, \"order\".*"));
}

TEST_CASE("a PREPARE of a row-image write is sent with the image; EXECUTE names it") {
  std::string_view text = "PREPARE \"as\" (int, varchar(10)) /* (as */ AS\n"
                          "UPDATE t SET a = $1 WHERE b = $2 RETURNING a";
  Statement prepare = only(text);
  CHECK(prepare.kind == StatementKind::kSession);
  CHECK(prepare.mirror == MirrorPlan::kStatement);
  CHECK(prepare.prepared_name == "as");
  REQUIRE(prepare.prepared_write != nullptr);
  const Statement& write = prepare.prepared_write->statements.at(0);
  CHECK(write.mirror == MirrorPlan::kRowImage);
  CHECK(write.target.name == "t");
  CHECK(write.set_columns == std::vector<std::string>{"a"});
  CHECK(prepare_with_row_image(text, prepare) ==
        "PREPARE \"as\" (int, varchar(10)) /* (as */ AS\n"
        "UPDATE t SET a = $1 WHERE b = $2 RETURNING a\n, NULL AS __switchyard_image, t.*");
  CHECK(prepare_with_row_image("prepare p as delete from t", only("prepare p as delete from t")) ==
        "prepare p as delete from t\nRETURNING NULL AS __switchyard_image, t.*");

  // The same PREPARE under another name, for switchyard's probe (see MirrorRelay).
  CHECK(prepare_renamed(text, "probe") == "PREPARE probe (int, varchar(10)) /* (as */ AS\nUPDATE t "
                                          "SET a = $1 WHERE b = $2 RETURNING a");
  CHECK(prepare_renamed("/* a */ prepare\n-- b\n\"x \"\"y\"\"\" as delete from t", "probe") ==
        "/* a */ prepare\n-- b\nprobe as delete from t");
  CHECK_FALSE(prepare_renamed("EXECUTE p", "probe"));
  CHECK_FALSE(prepare_renamed("PREPARE \"unclosed AS SELECT 1", "probe"));
  CHECK_FALSE(prepare_renamed("PREPARE -- nothing", "probe"));

  // Nothing to rewrite: a read, or a write whose values the RETURNING clause cannot see.
  CHECK(only("PREPARE q AS SELECT 1").prepared_write == nullptr);
  Statement nested = only("PREPARE q AS WITH d AS (DELETE FROM a RETURNING *) INSERT INTO b "
                          "SELECT * FROM d");
  CHECK(nested.prepared_write == nullptr);
  CHECK_FALSE(prepare_with_row_image("PREPARE q AS SELECT 1", only("PREPARE q AS SELECT 1")));

  // A PREPARE of a read whose EXECUTE writes and locks nothing, and of reads that do.
  CHECK(only("PREPARE q (int) AS SELECT $1 + 1 FROM t").prepared_read);
  CHECK_FALSE(prepare.prepared_read);
  CHECK_FALSE(only("PREPARE q AS SELECT nextval('s')").prepared_read);
  CHECK_FALSE(only("PREPARE q AS SELECT * FROM t FOR UPDATE").prepared_read);
  CHECK_FALSE(only("PREPARE q AS SELECT * INTO u FROM t").prepared_read);
  CHECK_FALSE(nested.prepared_read);

  Statement execute = only("EXECUTE \"as\"(1, 'x')");
  CHECK(execute.prepared_name == "as");
  CHECK(execute.mirror == MirrorPlan::kStatement);
  CHECK(only("DEALLOCATE PREPARE p").prepared_name == "p");
  CHECK_FALSE(only("DEALLOCATE p").drops_all_prepared);
  CHECK(only("DEALLOCATE ALL").drops_all_prepared);
  CHECK(only("DISCARD ALL").drops_all_prepared);
  CHECK_FALSE(only("DISCARD PLANS").drops_all_prepared);
  CHECK(only("DISCARD ALL").drops_temporaries);
  CHECK(only("DISCARD TEMP").drops_temporaries);
  CHECK_FALSE(only("DISCARD PLANS").drops_temporaries);
}

TEST_CASE("query shapes replace literals and split statements as the parser does") {
  QueryShape shape = query_shape("UPDATE t SET a = 'x;y' || E'\\';' WHERE id = 12.5e3; SELECT $1");
  CHECK(shape.ok);
  CHECK(shape.key == "UPDATE t SET a = ? || E? WHERE id = ?; SELECT $1");
  REQUIRE(shape.spans.size() == 2);
  CHECK(shape.spans[0] == StatementSpan{0, 50});
  CHECK(query_shape("SELECT t1.c2, \"a\"\"b;\" FROM t1 /* ; /* nested ; */ */ -- ;").spans.size() ==
        1);
  CHECK(query_shape("SELECT $$a;b$$, $q$;$q$").key == "SELECT ?, ?");
  CHECK(query_shape(";;").spans.empty());
  CHECK_FALSE(query_shape("SELECT 'open").ok);
  CHECK_FALSE(query_shape("SELECT /* open").ok);
  // Whatever the literals, the spans are those libpg_query finds.
  for (std::string sql : {"BEGIN; INSERT INTO t VALUES ('a;', 1) ;\n  COMMIT", "SELECT 1;",
                          "  SELECT 'x''y' ; -- trailing", "VALUES (1), (.5), (1e-3)"}) {
    Classification c = classify(sql);
    std::vector<StatementSpan> spans;
    for (const auto& s : c.statements)
      spans.push_back(StatementSpan{s.offset, s.length});
    CHECK(query_shape(sql).spans == spans);
  }
}

TEST_CASE("classification cache shares one parse across literals and evicts the oldest") {
  ClassificationCache cache(2, size_t{1} << 20);
  auto first = cache.get("SELECT * FROM t WHERE id = 1");
  auto again = cache.get("SELECT * FROM t WHERE id = 12345");
  CHECK(again.classification == first.classification);
  CHECK(again.text("SELECT * FROM t WHERE id = 12345", 0) == "SELECT * FROM t WHERE id = 12345");
  cache.get("SELECT 2 FROM u");
  cache.get("SELECT 3 FROM v");
  CHECK(cache.get("SELECT * FROM t WHERE id = 1").classification != first.classification);
  CHECK(cache.hits() == 1);
  CHECK(cache.misses() == 4);
  // Text the lexer splits differently from the parser is classified but never cached.
  std::string atomic = "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; END";
  CHECK(cache.get(atomic).classification->statements.size() == 1);
  CHECK(cache.get(atomic).classification != cache.get(atomic).classification);
  // A prepared transaction's name is a literal, and what the statement acts on.
  CHECK(cache.get("PREPARE TRANSACTION 'a'").classification->statements[0].prepared_transaction ==
        "a");
  CHECK(cache.get("PREPARE TRANSACTION 'b'").classification->statements[0].prepared_transaction ==
        "b");
}

TEST_CASE("classification cache keeps to its byte budget") {
  constexpr size_t kBudget = size_t{256} * 1024;
  ClassificationCache cache(1024, kBudget);
  auto batch = [](size_t statements, int name) {
    std::string sql;
    for (size_t i = 0; i < statements; ++i)
      sql += "INSERT INTO t" + std::to_string(name) + " VALUES (1);";
    return sql;
  };
  // Shapes of 20 statements each: cached, the oldest evicted to stay within the budget.
  for (int name = 0; name < 100; ++name) {
    std::string sql = batch(20, name);
    CHECK(cache.get(sql).classification == cache.get(sql).classification);
    CHECK(cache.bytes() <= kBudget);
  }
  CHECK(cache.bytes() > kBudget / 2);
  size_t misses = cache.misses();
  cache.get(batch(20, 99)); // the newest is there
  CHECK(cache.misses() == misses);
  cache.get(batch(20, 0)); // the oldest was evicted
  CHECK(cache.misses() == misses + 1);
  // One shape costing over a sixteenth of the budget is classified, never kept.
  std::string large = batch(100, 0);
  auto first = cache.get(large);
  CHECK(first.classification->statements.size() == 100);
  CHECK(cache.get(large).classification != first.classification);
  CHECK(cache.bytes() <= kBudget);
}

TEST_CASE("the rows of a statement's VALUES list") {
  std::string sql = "INSERT INTO t (a, b) VALUES (1, '(x'), ($$)$$, f(2, [3])) /* ( */ , -- )\n"
                    "(E'\\')', \"a)\") ON CONFLICT (a) DO NOTHING";
  std::vector<StatementSpan> rows = values_rows(sql);
  REQUIRE(rows.size() == 3);
  CHECK(sql.substr(rows[0].offset, rows[0].length) == "(1, '(x')");
  CHECK(sql.substr(rows[1].offset, rows[1].length) == "($$)$$, f(2, [3]))");
  CHECK(sql.substr(rows[2].offset, rows[2].length) == "(E'\\')', \"a)\")");
  CHECK(values_rows("insert into t values (1),(2)").size() == 2);
  CHECK(values_rows("WITH v AS (VALUES (1)) INSERT INTO t VALUES (2)").size() == 1);
  for (std::string_view none :
       {"INSERT INTO t DEFAULT VALUES", "INSERT INTO t SELECT * FROM (VALUES (1), (2)) v",
        "INSERT INTO \"values\" SELECT 1", "INSERT INTO t VALUES (1", "INSERT INTO t VALUES (1),",
        "INSERT INTO t VALUES (1), 2", "INSERT INTO t VALUES ('1)"}) {
    CHECK(values_rows(none).empty());
  }
}

// A long statement (`long_sql`) classified from less of its text gives what the same statement
// with fewer rows or constants does, save PartlyValued::given, which the caller checks.
Statement check_classified_alike(const std::string& long_sql, std::string_view short_sql) {
  REQUIRE(long_sql.size() > size_t{64} * 1024);
  Statement long_one = only(long_sql);
  Statement short_one = only(short_sql);
  CHECK(long_one.length == long_sql.size());
  CHECK(long_one.node == short_one.node);
  CHECK(long_one.kind == short_one.kind);
  CHECK(long_one.mirror == short_one.mirror);
  CHECK(long_one.ordered == short_one.ordered);
  CHECK(long_one.target.qualified() == short_one.target.qualified());
  CHECK(long_one.has_returning == short_one.has_returning);
  CHECK(long_one.set_columns == short_one.set_columns);
  CHECK(long_one.valued_columns == short_one.valued_columns);
  CHECK(long_one.computed_columns == short_one.computed_columns);
  CHECK(long_one.unlisted_functions == short_one.unlisted_functions);
  CHECK(long_one.writing_calls == short_one.writing_calls);
  REQUIRE(long_one.partly_valued.size() == short_one.partly_valued.size());
  for (size_t c = 0; c < long_one.partly_valued.size(); ++c)
    CHECK(long_one.partly_valued[c].column == short_one.partly_valued[c].column);
  return long_one;
}

TEST_CASE("a long bulk INSERT is classified from one row of each shape, as if parsed whole") {
  // Rows of three shapes, repeated past 64 KiB: classified from three rows, what each row gives
  // is what a short INSERT of the same rows says.
  const std::string shapes[] = {"(1, 'a', DEFAULT)", "(DEFAULT, now(), 3)", "(-2, $1, NULL)"};
  auto insert = [&](size_t rows) {
    std::string sql = "INSERT INTO s.t AS x (a, b, c) VALUES ";
    for (size_t i = 0; i < rows; ++i)
      sql += (i > 0 ? ", " : "") + shapes[i % 3];
    return sql + " ON CONFLICT (a) DO UPDATE SET b = excluded.b RETURNING x.a";
  };
  Statement short_insert = only(insert(6));
  Statement long_insert = check_classified_alike(insert(10'000), insert(6));
  REQUIRE(long_insert.partly_valued.size() == 2); // a and b are DEFAULT in some rows
  for (size_t c = 0; c < long_insert.partly_valued.size(); ++c) {
    const PartlyValued& got = long_insert.partly_valued[c];
    const PartlyValued& want = short_insert.partly_valued[c];
    REQUIRE(got.given.size() == 10'000);
    std::vector<bool> repeated_want;
    for (size_t row = 0; row < 10'000; ++row)
      repeated_want.push_back(want.given[row % 3]);
    CHECK(got.given == repeated_want);
  }

  // Rows of a shape each (constants in different places): parsed whole, still right.
  std::string varied = "INSERT INTO t (a, b) VALUES ";
  for (size_t i = 0; i < 10'000; ++i)
    varied += (i > 0 ? ", (" : "(") + std::string(i % 100, '+') + "1, DEFAULT)";
  Statement whole = only(varied);
  CHECK(whole.valued_columns == std::vector<std::string>{"a"});
  CHECK(whole.partly_valued.empty());
}

TEST_CASE("a long parameterised bulk INSERT is one shape of row; a name with $ is not") {
  // ($1, DEFAULT), ($2, DEFAULT), ...: one shape, so classified from its first row.
  std::string params = "INSERT INTO t (a, b) VALUES ";
  for (size_t i = 1; i <= 10'000; ++i)
    params += (i > 1 ? ", ($" : "($") + std::to_string(i) +
              (i % 2 ? ", DEFAULT)" : ", $" + std::to_string(20'000 + i) + ")");
  REQUIRE(params.size() > size_t{64} * 1024);
  Statement insert = only(params);
  CHECK(insert.valued_columns == std::vector<std::string>{"a"});
  REQUIRE(insert.partly_valued.size() == 1);
  CHECK(insert.partly_valued[0].column == "b");
  REQUIRE(insert.partly_valued[0].given.size() == 10'000);
  for (size_t row = 0; row < 10'000; ++row)
    CHECK(insert.partly_valued[0].given[row] == (row % 2 == 1));

  // f$1() and f$2() are two functions, not one called with two parameter numbers.
  std::string named = "INSERT INTO t (a) VALUES ";
  for (size_t i = 0; i < 10'000; ++i)
    named += (i > 0 ? ", (f$" : "(f$") + std::to_string(i % 2 + 1) + "())";
  Statement calls = only(named);
  std::vector<std::string> functions = calls.unlisted_functions;
  std::sort(functions.begin(), functions.end());
  CHECK(functions == std::vector<std::string>{"f$1", "f$2"});
}

TEST_CASE("lists of constants after IN and ARRAY are cut to their first") {
  CHECK(without_constant_lists("SELECT * FROM t WHERE a IN (1, 2, 3)") ==
        "SELECT * FROM t WHERE a IN (1)");
  CHECK(
      without_constant_lists("delete from t where a not in( -1 ,+2.5e-3, .5 ) and b in ($1,$2)") ==
      "delete from t where a not in( -1) and b in ($1)");
  CHECK(without_constant_lists("SELECT ARRAY['a', E'b\\'c', 'd''e'] IN /* c */ ('x', 'y')") ==
        "SELECT ARRAY['a'] IN /* c */ ('x')");
  for (std::string_view none :
       {"SELECT 1 WHERE a IN (SELECT 1, 2)", "SELECT 1 WHERE a IN (1, b)",
        "SELECT 1 WHERE a IN (1)", "SELECT 1 WHERE a IN (f(1), 2)", "SELECT 1 WHERE a IN (1abc, 2)",
        "SELECT 1 WHERE a IN ('a' 'b', 'c')", "SELECT 'a IN (1, 2)'", "SELECT $$ IN (1, 2) $$",
        "SELECT ARRAY[[1, 2], [3, 4]]", "SELECT * FROM a JOIN (1, 2)", "SELECT (1, 2)",
        "SELECT 1 WHERE a IN ($1a, 2)", "SELECT 1 WHERE a IN (1, 'unterminated)",
        "SELECT 1 WHERE a IN (1, 2"}) {
    CAPTURE(none);
    CHECK_FALSE(without_constant_lists(none));
  }
}

TEST_CASE("a long statement of long lists of constants is classified as if parsed whole") {
  auto list = [](size_t constants) {
    std::string items;
    for (size_t i = 0; i < constants; ++i)
      items += (i > 0 ? ", '" : "'") + std::to_string(i) + "'";
    return items;
  };
  for (std::string_view shape :
       {"SELECT a, random() FROM s.t WHERE b IN ({}) ORDER BY a",
        "DELETE FROM s.t WHERE b IN ({}) RETURNING a",
        "UPDATE s.t SET a = nextval('q') WHERE b = ANY (ARRAY[{}])",
        "INSERT INTO s.t (a, b) VALUES (1, ARRAY[{}]), (DEFAULT, ARRAY[{}])"}) {
    CAPTURE(shape);
    auto text = [&](size_t constants) {
      std::string sql(shape);
      for (size_t at = sql.find("{}"); at != std::string::npos; at = sql.find("{}"))
        sql.replace(at, 2, list(constants));
      return sql;
    };
    Statement long_one = check_classified_alike(text(20'000), text(3));
    Statement short_one = only(text(3));
    for (size_t c = 0; c < long_one.partly_valued.size(); ++c)
      CHECK(long_one.partly_valued[c].given == short_one.partly_valued[c].given);
  }
}

TEST_CASE("a text of more statements than a lookup allows is not parsed") {
  CHECK(query_shape("SELECT 1; SELECT 2; SELECT 3", 1).spans.size() == 2);
  CHECK(query_shape("SELECT 1; SELECT 2", 2).spans.size() == 2);
  ClassificationCache cache(1024, size_t{2} << 20);
  std::string sql = repeated("", "INSERT INTO t VALUES (now());", 101);
  ClassifiedQuery over = cache.get(sql, 100);
  CHECK(over.classification->too_many_statements);
  CHECK_THAT(over.classification->error, Catch::Contains("more than 100 statements"));
  REQUIRE(over.classification->statements.size() == 1);
  CHECK(over.classification->statements[0].kind == StatementKind::kUnknown);
  CHECK(over.text(sql, 0) == sql);
  ClassifiedQuery within = cache.get(sql, 101);
  CHECK_FALSE(within.classification->too_many_statements);
  CHECK(within.classification->statements.size() == 101);
  CHECK(cache.get(sql, 101).classification == within.classification); // cached
  CHECK(cache.get(sql, 100).classification->too_many_statements);     // yet still refused
}

TEST_CASE("row descriptions and data rows round-trip; images are found by the marker") {
  std::vector<FieldDescription> fields(3);
  fields[0].name = "a";
  fields[0].type_oid = 23;
  fields[1].name = std::string(kImageMarker);
  fields[2].name = "id";
  fields[2].type_oid = 20;
  fields[2].format = 1;
  std::string message;
  append_row_description(message, fields);
  auto parsed = parse_row_description(std::string_view(message).substr(5));
  REQUIRE(parsed.ok());
  REQUIRE(parsed->size() == 3);
  CHECK((*parsed)[2].format == 1);
  CHECK(find_image_marker(*parsed) == 1u);

  std::string row;
  append_u16(row, 3);
  append_u32(row, 2);
  row += "ab";
  append_u32(row, 0xFFFFFFFFu);
  append_u32(row, 1);
  row += "7";
  auto values = parse_data_row(row);
  REQUIRE(values.ok());
  CHECK((*values)[0] == "ab");
  CHECK_FALSE((*values)[1].has_value());
  std::string prefix;
  append_data_row_prefix(prefix, row, 1);
  auto cut = parse_data_row(std::string_view(prefix).substr(5));
  REQUIRE(cut.ok());
  CHECK(cut->size() == 1);
  CHECK(!parse_data_row(std::string_view(row).substr(0, 9)).ok());

  CHECK(affected_rows("INSERT 0 5") == 5u);
  CHECK(affected_rows("UPDATE 12") == 12u);
  CHECK_FALSE(affected_rows("BEGIN").has_value());
}

TEST_CASE("the relation and columns a view PostgreSQL writes through shows") {
  // As pg_get_viewdef prints them.
  auto source = view_source(" SELECT passbook.id,\n    passbook.owner AS \"Owner\",\n"
                            "    upper(passbook.owner) AS shout\n   FROM app.passbook\n"
                            "  WHERE (passbook.amount > (0)::numeric);");
  REQUIRE(source);
  CHECK(source->relation.qualified() == "app.passbook");
  REQUIRE(source->columns.size() == 3);
  CHECK(source->columns[0].name == "id");
  CHECK(source->columns[0].shows == "id");
  CHECK(source->columns[1].name == "Owner");
  CHECK(source->columns[1].shows == "owner");
  CHECK(source->columns[2].name == "shout");
  CHECK(source->columns[2].shows.empty());
  // Views PostgreSQL cannot write through by itself, and text that is no view.
  for (const char* definition :
       {"SELECT a.id FROM a JOIN b USING (id)", "SELECT a.id FROM a, b",
        "SELECT DISTINCT id FROM a", "SELECT id FROM a GROUP BY id", "SELECT id FROM a LIMIT 1",
        "SELECT id FROM a UNION SELECT 1", "WITH w AS (SELECT 1) SELECT id FROM a",
        "SELECT 1 AS one", "VALUES (1)", "SELECT id FROM (SELECT 1 AS id) s", "not sql",
        "SELECT 1; SELECT 2"}) {
    INFO(definition);
    CHECK_FALSE(view_source(definition));
  }
}

TEST_CASE("which column defaults are the same value on every database") {
  // As pg_get_expr prints them.
  for (const char* constant : {"7", "'-1'::integer", "'draft'::text", "'{}'::text[]", "NULL::text",
                               "'x'::character varying::text", "true", "1.5"}) {
    INFO(constant);
    CHECK(constant_expression(constant));
  }
  for (const char* chosen :
       {"clock_timestamp()", "now()", "CURRENT_TIMESTAMP", "gen_random_uuid()",
        "nextval('crate_id_seq'::regclass)", "(random() * (10)::double precision)",
        "('a'::text || (random())::text)", "1 + 1", "(SELECT 1)", "1 FROM t", "1; SELECT 2",
        "not sql )"}) {
    INFO(chosen);
    CHECK_FALSE(constant_expression(chosen));
  }
}

TEST_CASE("upsert and delete statements for the secondary") {
  TableShape table{"public.t", {"id"}, {}};
  std::vector<std::string> columns{"id", "Name"};
  CHECK(upsert_sql(table, columns) ==
        "INSERT INTO public.t (id, \"Name\") OVERRIDING SYSTEM VALUE VALUES ($1, $2) ON "
        "CONFLICT (id) DO UPDATE SET \"Name\" = EXCLUDED.\"Name\"");
  TableShape keyless{"h", {}, {}};
  CHECK(upsert_sql(keyless, columns) ==
        "INSERT INTO h (id, \"Name\") OVERRIDING SYSTEM VALUE VALUES ($1, $2)");
  TableShape pair{"p", {"a", "b"}, {}};
  std::vector<std::string> keys_only{"a", "b"};
  CHECK(upsert_sql(pair, keys_only).ends_with("ON CONFLICT (a, b) DO NOTHING"));
  CHECK(delete_sql(pair) == "DELETE FROM p WHERE a = $1 AND b = $2");
  // Several rows in one statement, so the secondary checks constraints after them all.
  CHECK(upsert_sql(table, columns, 2) ==
        "INSERT INTO public.t (id, \"Name\") OVERRIDING SYSTEM VALUE VALUES ($1, $2), ($3, $4) "
        "ON CONFLICT (id) DO UPDATE SET \"Name\" = EXCLUDED.\"Name\"");
  CHECK(delete_sql(table, 3) == "DELETE FROM public.t WHERE id IN ($1, $2, $3)");
  CHECK(delete_sql(pair, 2) == "DELETE FROM p WHERE (a = $1 AND b = $2) OR (a = $3 AND b = $4)");
  CHECK(update_sql(table, columns) == "UPDATE public.t SET \"Name\" = $2 WHERE id = $1");
  CHECK(update_sql(pair, keys_only).empty());
  // Several rows by one statement, which fires statement triggers once as the primary's did; a
  // parameter of a type of the database's own (declared 0) takes its column's type.
  std::vector<uint32_t> types{23, 0};
  CHECK(update_sql(table, columns, 2, types) ==
        "UPDATE public.t AS target SET \"Name\" = image.\"Name\" FROM (VALUES ($1, "
        "COALESCE($2, (NULL::public.t).\"Name\")), ($3, COALESCE($4, "
        "(NULL::public.t).\"Name\"))) AS image (id, \"Name\") WHERE target.id = image.id");
  CHECK(update_sql(pair, keys_only, 2, std::vector<uint32_t>{23, 23}).empty());
  // A plain INSERT fires no UPDATE statement trigger, as the primary's did not.
  CHECK(insert_sql(table, columns, 2) ==
        "INSERT INTO public.t (id, \"Name\") OVERRIDING SYSTEM VALUE VALUES ($1, $2), ($3, $4)");
}

TEST_CASE("statements that count and trim the rows equal to a row of a table without a key") {
  std::vector<std::string> columns{"note", "At"};
  TableShape postgres{"public.h", {}, {}};
  // Compared as text, so columns of types without an equality operator (json) compare too.
  CHECK(count_equal_rows_sql(postgres, columns) ==
        "SELECT count(*) FROM public.h WHERE CAST(note AS text) IS NOT DISTINCT FROM CAST($1 AS "
        "text) AND CAST(\"At\" AS text) IS NOT DISTINCT FROM CAST($2 AS text)");
  CHECK(delete_equal_rows_sql(postgres, columns, 2) ==
        "DELETE FROM public.h WHERE ctid = ANY (ARRAY(SELECT ctid FROM public.h WHERE "
        "CAST(note AS text) IS NOT DISTINCT FROM CAST($1 AS text) AND CAST(\"At\" AS text) IS "
        "NOT DISTINCT FROM CAST($2 AS text) LIMIT 2))");
  TableShape sqlite{"h", {}, {}, Dialect::kSqlite};
  CHECK(count_equal_rows_sql(sqlite, columns) ==
        "SELECT count(*) FROM h WHERE note IS $1 AND \"At\" IS $2");
  CHECK(delete_equal_rows_sql(sqlite, columns, 1) ==
        "DELETE FROM h WHERE rowid IN (SELECT rowid FROM h WHERE note IS $1 AND \"At\" IS $2 "
        "LIMIT 1)");
}

TEST_CASE("extended-protocol parsers refuse truncated messages instead of reading past them") {
  // Found by the fuzzer: a Parse whose statement name has no terminating NUL.
  std::string no_nul = "s1";
  no_nul.append("\0\0", 2);
  CHECK_FALSE(parse_parse(std::string_view("s1")).ok());
  CHECK_FALSE(parse_parse(no_nul).ok());
  CHECK_FALSE(parse_bind(std::string_view("p")).ok());
  CHECK_FALSE(parse_execute(std::string_view("p")).ok());
  CHECK_FALSE(parse_target(std::string_view("")).ok());
  CHECK_FALSE(parse_row_description(std::string_view("\0\1abc", 5)).ok());
  ParseMessage parse{"s", "SELECT $1", {23}};
  std::string wire;
  append_parse(wire, parse);
  auto back = parse_parse(std::string_view(wire).substr(5));
  REQUIRE(back.ok());
  CHECK(back->query == "SELECT $1");
  CHECK(back->parameter_types == std::vector<uint32_t>{23});
  // The second string of a Parse or a Bind, read in place.
  CHECK(second_cstring(std::string_view(wire).substr(5)) == "SELECT $1");
  std::string bind;
  append_bind(bind, BindMessage{"portal", "stmt", {}, {Value("1")}, {}});
  CHECK(second_cstring(std::string_view(bind).substr(5)) == "stmt");
  CHECK_FALSE(second_cstring(std::string_view("s1")));
  CHECK_FALSE(second_cstring(std::string_view("s\0SELECT 1", 10)));
}
