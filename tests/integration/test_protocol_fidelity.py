"""Differential test of switchyard against PostgreSQL itself: exact extended-protocol
sequences (named and unnamed statements and portals, row limits, errors mid-cycle, Flush,
transactions inside a cycle, re-executed and re-bound portals, binary results) sent to the
primary directly and through switchyard: relaying alone, mirroring with no reads routed, and
mirroring with every read routed to the secondary. The answers must be the same, message for
message and byte for byte."""
import struct

import pytest

from harness import PgCluster, wait_for
from wire import RawClient, cstr, message


def parse(name, sql, *types):
    return message(b"P", cstr(name) + cstr(sql) + struct.pack("!h", len(types))
                   + b"".join(struct.pack("!I", t) for t in types))


def bind(portal, statement, *params, result_formats=()):
    body = cstr(portal) + cstr(statement) + struct.pack("!hh", 0, len(params))
    for value in params:
        body += struct.pack("!i", len(value)) + value
    return message(b"B", body + struct.pack("!h", len(result_formats))
                   + b"".join(struct.pack("!h", f) for f in result_formats))


def describe(kind, name):
    return message(b"D", kind + cstr(name))


def execute(portal, max_rows=0):
    return message(b"E", cstr(portal) + struct.pack("!I", max_rows))


def close(kind, name):
    return message(b"C", kind + cstr(name))


def query(sql):
    return message(b"Q", cstr(sql))


SYNC, FLUSH = message(b"S"), message(b"H")


def run_extended(sql):
    return [parse("", sql), bind("", ""), execute("")]


# (name, messages sent at once, answers to read: a count of ReadyForQuery, or ("messages", n)
# for a cycle that ends in Flush). They run in this order on one session.
CASES = [
    ("named statement and portal, described and executed twice",
     [parse("s1", "SELECT $1::int AS n", 23), bind("p1", "s1", b"5"), describe(b"P", "p1"), execute("p1"),
      describe(b"P", "p1"), execute("p1"), close(b"P", "p1"), close(b"S", "s1"), SYNC], 1),
    ("unnamed", [parse("", "SELECT 1 AS one"), bind("", ""), describe(b"P", ""), execute(""), SYNC], 1),
    ("a parse error skips to Sync", [parse("", "SELEC 1"), bind("", ""), execute(""), SYNC, query("SELECT 2")], 2),
    ("an execute error skips to Sync",
     run_extended("SELECT 1/0") + run_extended("SELECT 1") + [SYNC, query("SELECT 3")], 2),
    ("a write without RETURNING, described",
     [parse("w", "INSERT INTO t (v) VALUES ($1)", 23), describe(b"S", "w"), bind("", "w", b"7"),
      describe(b"P", ""), execute(""), close(b"S", "w"), SYNC], 1),
    ("a write with RETURNING, described",
     [parse("w2", "UPDATE t SET v = v + 1 WHERE v = $1 RETURNING v", 23), describe(b"S", "w2"),
      bind("", "w2", b"7"), describe(b"P", ""), execute(""), SYNC], 1),
    ("a named portal fetched in parts",
     [parse("", "SELECT g FROM generate_series(1, 3) g"), bind("c", ""), execute("c", 2), execute("c", 2),
      execute("c"), SYNC], 1),
    ("closing what does not exist", [close(b"P", "nope"), close(b"S", "nope"), SYNC], 1),
    ("an empty query", [parse("", ""), bind("", ""), describe(b"P", ""), execute(""), SYNC], 1),
    ("a transaction inside one cycle",
     run_extended("BEGIN") + run_extended("INSERT INTO t (v) VALUES (100)") + run_extended("COMMIT") + [SYNC], 1),
    ("a transaction failing inside one cycle",
     run_extended("BEGIN") + run_extended("INSERT INTO t (v) VALUES (101)") + run_extended("SELECT 1/0")
     + run_extended("COMMIT") + [SYNC, query("ROLLBACK")], 2),
    ("Flush", run_extended("SELECT 5") + [FLUSH], ("messages", 4)),
    ("Sync after Flush", [SYNC], 1),
    ("Sync alone, twice", [SYNC, SYNC], 2),
    ("a parameter missing", [parse("", "SELECT $1::int", 23), bind("", ""), execute(""), SYNC], 1),
    ("several statements in one Query", [query("SELECT 1; SELECT 1/0; SELECT 2")], 1),
    ("a statement that does not exist", [bind("", "nosuch"), execute(""), SYNC], 1),
    ("a portal that does not exist", [execute("nosuch"), SYNC], 1),
    ("a named portal bound twice",
     [parse("r", "SELECT 1"), bind("rp", "r"), execute("rp"), bind("rp", "r"), execute("rp"), SYNC], 1),
    ("a read in a transaction block",
     [query("BEGIN"), parse("", "SELECT $1::text", 25), bind("", "", b"x"), describe(b"P", ""), execute(""),
      SYNC, query("COMMIT")], 3),
    ("a savepoint rolled back in the extended protocol",
     [query("BEGIN")] + run_extended("SAVEPOINT a") + run_extended("INSERT INTO t (v) VALUES (102)")
     + run_extended("ROLLBACK TO a") + [SYNC, query("COMMIT")], 3),
    ("binary results", [parse("b", "SELECT $1::int8 AS big", 20), bind("", "b", b"42", result_formats=(1,)),
                        describe(b"P", ""), execute(""), SYNC], 1),
    # A prepared read through the unnamed portal: the one whose Bind and Describe switchyard
    # answers itself when the secondary takes the read.
    ("prepare", [parse("s2", "SELECT $1::int AS n", 23), SYNC], 1),
    ("the unnamed portal executed twice",
     [bind("", "s2", b"6"), describe(b"P", ""), execute(""), execute(""), describe(b"P", ""), SYNC], 1),
    ("the same with its description known",
     [bind("", "s2", b"6"), describe(b"P", ""), execute(""), execute(""), describe(b"P", ""), SYNC], 1),
    ("the unnamed portal fetched in parts", [bind("", "s2", b"7"), describe(b"P", ""), execute("", 1), execute(""), SYNC], 1),
    ("the unnamed portal closed", [bind("", "s2", b"8"), describe(b"P", ""), execute(""), close(b"P", ""), SYNC], 1),
    ("two reads before one Sync",
     [bind("", "s2", b"1"), describe(b"P", ""), execute(""), bind("", "s2", b"2"), describe(b"P", ""), execute(""),
      SYNC], 1),
    ("a read, then Flush", [bind("", "s2", b"9"), describe(b"P", ""), execute(""), FLUSH], ("messages", 4)),
    ("its Sync", [SYNC], 1),
    ("a read in a transaction block begun in its cycle",
     run_extended("BEGIN") + [bind("", "s2", b"3"), describe(b"P", ""), execute(""), SYNC,
                              execute(""), SYNC, query("COMMIT")], 3),
    # A Query before the Sync of an extended cycle: PostgreSQL runs it in the cycle's implicit
    # transaction and commits both (or rolls both back), or skips it after the cycle failed.
    ("a Query before Sync", run_extended("INSERT INTO t (v) VALUES (103)") + [query("SELECT 4"), SYNC], 2),
    ("a write Query before Sync",
     run_extended("INSERT INTO t (v) VALUES (104)") + [query("INSERT INTO t (v) VALUES (105)"), SYNC], 2),
    ("a failing Query before Sync rolls the cycle back",
     run_extended("INSERT INTO t (v) VALUES (106)") + [query("SELECT 1/0"), SYNC], 2),
    ("a Query after a failed cycle is skipped",
     run_extended("SELECT 1/0") + [query("INSERT INTO t (v) VALUES (107)"), SYNC], 1),
    ("a Query after a write that failed is skipped",
     run_extended("INSERT INTO t (id, v) VALUES (1, 108)") + [query("INSERT INTO t (v) VALUES (109)"), SYNC], 1),
    ("a Query behind a write and Flush",
     run_extended("INSERT INTO t (v) VALUES (110)") + [FLUSH, query("INSERT INTO t (v) VALUES (111)"), SYNC], 2),
    ("an empty Query before Sync", run_extended("INSERT INTO t (v) VALUES (112)") + [query(""), SYNC], 2),
    ("an unparsable Query before Sync",
     run_extended("INSERT INTO t (v) VALUES (113)") + [query("INSERT INTO"), SYNC], 2),
    ("ROLLBACK before Sync", run_extended("INSERT INTO t (v) VALUES (114)") + [query("ROLLBACK"), SYNC], 2),
    ("COMMIT before Sync", run_extended("INSERT INTO t (v) VALUES (115)") + [query("COMMIT"), SYNC], 2),
    ("BEGIN before Sync", run_extended("INSERT INTO t (v) VALUES (116)")
     + [query("BEGIN; INSERT INTO t (v) VALUES (117)"), SYNC, query("COMMIT")], 3),
    # Statements PostgreSQL refuses outside a transaction block: switchyard opens none for them.
    ("LOCK outside a transaction", run_extended("LOCK TABLE t") + [SYNC, query("LOCK TABLE t")], 2),
    ("savepoints outside a transaction",
     run_extended("SAVEPOINT a") + [SYNC] + run_extended("RELEASE SAVEPOINT a") + [SYNC]
     + run_extended("ROLLBACK TO SAVEPOINT a") + [SYNC], 3),
    # Nor around a cycle's autocommit write: its implicit transaction is no block either.
    ("LOCK behind a write in one cycle",
     run_extended("INSERT INTO t (v) VALUES (118)") + run_extended("LOCK TABLE t") + [SYNC], 1),
    ("SAVEPOINT behind a write in one cycle",
     run_extended("INSERT INTO t (v) VALUES (119)") + run_extended("SAVEPOINT a") + [SYNC], 1),
    # The simple query protocol.
    ("COPY in", [query("COPY t (id, v) FROM STDIN"), message(b"d", b"1000\t20\n1001\t21\n"), message(b"c")], 1),
    ("COPY failed by the client", [query("COPY t (id, v) FROM STDIN"), message(b"d", b"1002\t22\n"),
                                   message(b"f", cstr("changed my mind"))], 1),
    # With the id left to its sequence switchyard answers the CopyInResponse itself (see
    # docs/configuration.md on COPY).
    ("COPY in, the id left out", [query("COPY t (v) FROM STDIN"), message(b"d", b"20\n21\n"), message(b"c")], 1),
    ("COPY in CSV with a header, a row split between messages, Flush and Sync among them",
     [query("COPY t (v) FROM STDIN (FORMAT csv, HEADER)"), message(b"d", b"v\n3"), FLUSH, SYNC,
      message(b"d", b"0\n31\n"), message(b"c")], 1),
    # switchyard has the primary take an id for every row before the COPY runs, PostgreSQL
    # stops taking them at the bad row: the sequence is put back to keep later ids equal.
    ("COPY with a bad row, the id left out", [query("COPY t (v) FROM STDIN"), message(b"d", b"32\nx\n"),
                                              message(b"c"), query("SELECT setval('t_id_seq', max(id)) FROM t")], 2),
    ("COPY failed by the client, the id left out", [query("COPY t (v) FROM STDIN"), message(b"d", b"33\n"),
                                                    message(b"f", cstr("changed my mind"))], 1),
    ("COPY in a transaction block, the id left out",
     [query("BEGIN"), query("COPY t (v) FROM STDIN"), message(b"d", b"34\n"), message(b"c"), query("COMMIT")], 3),
    ("COPY of no rows, the id left out", [query("COPY t (v) FROM STDIN"), message(b"c")], 1),
    ("COPY up to its end-of-data line", [query("COPY t (v) FROM STDIN"), message(b"d", b"35\n\\.\n"),
                                         message(b"c")], 1),
    ("COPY binary, the id left out",
     [query("COPY t (v) FROM STDIN (FORMAT binary)"),
      message(b"d", b"PGCOPY\n\377\r\n\0" + struct.pack("!iihii", 0, 0, 1, 4, 37) + struct.pack("!h", -1)),
      message(b"c")], 1),
    ("COPY binary that is not", [query("COPY t (v) FROM STDIN (FORMAT binary)"), message(b"d", b"38\n"),
                                 message(b"c")], 1),
    ("COPY of a column that does not exist", [query("COPY t (w) FROM STDIN"), message(b"d", b"36\n"),
                                              message(b"c")], 1),
    ("COPY out", [query("COPY (SELECT v FROM t ORDER BY id) TO STDOUT")], 1),
    # As tokio-postgres sends it: the Sync after Execute arrives during the COPY, which
    # PostgreSQL ignores; the one after CopyDone ends the cycle. The ids are given: through
    # the extended protocol the secondary evaluates the defaults a COPY leaves out itself.
    ("COPY through the extended protocol",
     run_extended("COPY t (id, v) FROM STDIN") + [SYNC, message(b"d", b"1003\t40\n1004\t41\n"), message(b"c"),
                                                 SYNC, query("SELECT 1")], 2),
    ("COPY through the extended protocol, failed by the client",
     run_extended("COPY t (id, v) FROM STDIN") + [SYNC, message(b"d", b"1005\t42\n"),
                                                 message(b"f", cstr("changed my mind")), SYNC], 1),
    ("a syntax error", [query("SELEC 1")], 1),
    ("a transaction in one Query", [query("BEGIN; INSERT INTO t (v) VALUES (23); COMMIT")], 1),
    ("a write rolled back with the Query that fails", [query("INSERT INTO t (v) VALUES (24); SELECT 1/0")], 1),
    ("a notice", [query("DO $$BEGIN RAISE NOTICE 'hello'; END$$")], 1),
    ("an empty Query", [query("")], 1),
    ("only semicolons", [query(";;")], 1),
    ("a setting, shown", [query("SET application_name = 'fidelity'; SHOW application_name")], 1),
    ("a setting rolled back with the Query that fails",
     [query("SET application_name = 'undone'; SELECT 1/0"), query("SHOW application_name")], 2),
    ("a notification to itself", [query("LISTEN ch; NOTIFY ch, 'payload'")], 1),
    ("PREPARE, EXECUTE, DEALLOCATE",
     [query("PREPARE ps(int) AS SELECT $1 + 1"), query("EXECUTE ps(4)"), query("DEALLOCATE ps")], 3),
    # A write prepared with SQL PREPARE runs with switchyard's row image on the primary.
    ("a prepared write, executed in both protocols and described",
     [query("PREPARE pw(int) AS INSERT INTO t (v) VALUES ($1) RETURNING v"), query("EXECUTE pw(30)"),
      parse("", "EXECUTE pw(31)"), bind("", ""), describe(b"P", ""), execute(""),
      parse("ex", "EXECUTE pw(32)"), describe(b"S", "ex"), bind("", "ex", result_formats=(1,)), execute(""),
      close(b"S", "ex"), SYNC], 3),
    ("a prepared write without RETURNING, in one pipeline with its PREPARE",
     run_extended("PREPARE pn AS UPDATE t SET v = v + 100 WHERE v = 30")
     + [parse("", "EXECUTE pn"), bind("", "", result_formats=(1,)), describe(b"P", ""), execute(""), SYNC,
        query("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) DELETE FROM t WHERE v = 31"),
        query("DEALLOCATE ALL")], 3),
    ("a prepared read, executed in the extended protocol",
     [query("PREPARE pr(int) AS SELECT $1 * 2 AS twice"), parse("", "EXECUTE pr(21)"),
      bind("", "", result_formats=(1,)), describe(b"P", ""), execute(""), SYNC, query("DEALLOCATE pr")], 3),
    ("a PREPARE skipped after an error leaves the name as it was",
     [query("PREPARE pu AS SELECT 42::int8 AS n")] + run_extended("SELECT 1/0")
     + run_extended("PREPARE pu AS INSERT INTO t (v) VALUES (40)")
     + [SYNC, parse("", "EXECUTE pu"), bind("", "", result_formats=(1,)), execute(""), SYNC,
        query("DEALLOCATE pu")], 4),
    ("a prepared write failing, a PREPARE refused",
     [query("PREPARE pf AS INSERT INTO t (id, v) VALUES (1, 0)"), query("EXECUTE pf"),
      query("PREPARE pf AS SELECT 1"), query("EXECUTE pf; DEALLOCATE pf")], 4),
    ("a write in COPY TO", [query("COPY (INSERT INTO t (id, v) VALUES (2001, 41), (2002, 42) RETURNING id, v) TO STDOUT")], 1),
    ("a cursor", [query("BEGIN; DECLARE cur CURSOR FOR SELECT g FROM generate_series(1, 5) g;"
                        " FETCH 2 FROM cur; FETCH ALL FROM cur; CLOSE cur; COMMIT")], 1),
    ("RETURNING", [query("INSERT INTO t (v) VALUES (25), (26) RETURNING id, v")], 1),
    ("an UPDATE of no rows", [query("UPDATE t SET v = 0 WHERE v = -1")], 1),
    ("a failed transaction block", [query("BEGIN"), query("SELECT 1/0"), query("SELECT 1"), query("ROLLBACK")], 4),
    ("savepoints", [query("BEGIN; INSERT INTO t (v) VALUES (27); SAVEPOINT a; INSERT INTO t (v) VALUES (28);"
                          " ROLLBACK TO a; COMMIT")], 1),
    ("DELETE RETURNING", [query("DELETE FROM t WHERE v = 27 RETURNING v")], 1),
    ("a read, then a write", [query("SELECT count(*) FROM t; INSERT INTO t (v) VALUES (29)")], 1),
    ("SELECT FOR UPDATE", [query("SELECT v FROM t WHERE v = 29 FOR UPDATE")], 1),
    ("DDL", [query("CREATE TABLE u (id int); DROP TABLE u")], 1),
    ("DDL rolled back with the Query that fails",
     [query("CREATE TABLE w (id int); INSERT INTO w VALUES (1); SELECT 1/0"),
      query("SELECT to_regclass('w') IS NULL")], 2),
    ("a statement that refuses a transaction block, in a Query of several",
     [query("CREATE INDEX CONCURRENTLY t_v ON t (v); SELECT 1"), query("SELECT to_regclass('t_v') IS NULL")], 2),
]


def answers(port, user):
    """Each case's answers, without what differs between any two sessions (BackendKeyData,
    ParameterStatus)."""
    client = RawClient(port)
    client.login_trust(user=user)
    seen = {}
    for name, messages, expected in CASES:
        client.send(b"".join(messages))
        got = []
        if isinstance(expected, tuple):
            got = [client.read_message() for _ in range(expected[1])]
        else:
            for _ in range(expected):
                got += client.read_until(b"Z")
        # A notification names the sending backend's process id: compare the rest.
        seen[name] = [(tag, body[4:] if tag == b"A" else body) for tag, body in got
                      if tag not in (b"S", b"K")]
    client.send(message(b"X"))
    return seen


@pytest.fixture(scope="module")
def pair():
    primary, secondary = PgCluster().start(), PgCluster().start()
    for cluster in (primary, secondary):
        cluster.sql("CREATE TABLE t (id serial PRIMARY KEY, v int);"
                    "GRANT ALL ON t, t_id_seq TO trustuser")
    yield primary, secondary
    primary.destroy()
    secondary.destroy()


@pytest.mark.parametrize("read_percent,write_mode", [(None, None), (0, "sync"), (100, "sync"),
                                                     (0, "async")])
def test_switchyard_answers_as_postgresql_does(pair, start_proxy, tmp_path, read_percent, write_mode):
    """read_percent None: no secondary, so the sessions run on the byte relay."""
    primary, secondary = pair
    config = f"primary: {primary.uri()}\n"
    if read_percent is not None:
        config += (f"secondary: {secondary.uri()}\nmirror:\n  journal: {tmp_path}/journal.jsonl\n"
                   f"read_percent: {read_percent}\nwrite_mode: {write_mode}\n")
    proxy = start_proxy(config)
    runs, rows = {}, {}
    table = "SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM t"
    tables = "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
    for name, port, user in (("direct", primary.port, "trustuser"), ("switchyard", proxy.port, "trustuser")):
        for cluster in pair:
            cluster.sql("TRUNCATE t RESTART IDENTITY; DROP TABLE IF EXISTS w; DROP INDEX IF EXISTS t_v")
        runs[name] = answers(port, user)
        rows[name] = primary.sql(table)
    different = [name for name, _, _ in CASES if runs["direct"][name] != runs["switchyard"][name]]
    assert not different, "\n".join(f"{name}:\n  direct     {runs['direct'][name]}\n"
                                    f"  switchyard {runs['switchyard'][name]}" for name in different)
    assert rows["switchyard"] == rows["direct"]
    if read_percent is not None:
        assert wait_for(lambda: proxy.metric("switchyard_mirror_async_queue") == 0), proxy.log()
        assert secondary.sql(table) == rows["direct"]
        assert secondary.sql(tables) == primary.sql(tables)
        assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()
