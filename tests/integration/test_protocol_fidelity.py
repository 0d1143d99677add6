"""Differential test of switchyard against PostgreSQL itself: exact extended-protocol
sequences (named and unnamed statements and portals, row limits, errors mid-cycle, Flush,
transactions inside a cycle, re-executed and re-bound portals, binary results) sent to the
primary directly and through switchyard: relaying alone, mirroring with no reads routed, and
mirroring with every read routed to the secondary. The answers must be the same, message for
message and byte for byte."""
import struct

import pytest

from harness import PgCluster
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
]


def answers(port, user):
    """Each case's answers, without what differs between any two sessions (BackendKeyData,
    ParameterStatus, notices)."""
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
        seen[name] = [(tag, body) for tag, body in got if tag not in (b"S", b"K", b"N")]
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


@pytest.mark.parametrize("read_percent", [None, 0, 100])
def test_switchyard_answers_as_postgresql_does(pair, start_proxy, tmp_path, read_percent):
    """read_percent None: no secondary, so the sessions run on the byte relay."""
    primary, secondary = pair
    config = f"primary: {primary.uri()}\n"
    if read_percent is not None:
        config += (f"secondary: {secondary.uri()}\nmirror:\n  journal: {tmp_path}/journal.jsonl\n"
                   f"read_percent: {read_percent}\n")
    proxy = start_proxy(config)
    runs = {}
    for name, port, user in (("direct", primary.port, "trustuser"), ("switchyard", proxy.port, "postgres")):
        for cluster in pair:
            cluster.sql("TRUNCATE t RESTART IDENTITY")
        runs[name] = answers(port, user)
    different = [name for name, _, _ in CASES if runs["direct"][name] != runs["switchyard"][name]]
    assert not different, "\n".join(f"{name}:\n  direct     {runs['direct'][name]}\n"
                                    f"  switchyard {runs['switchyard'][name]}" for name in different)
    rows = "SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM t"
    assert primary.sql(rows) == "1:8,2:100"
    if read_percent is not None:
        assert secondary.sql(rows) == "1:8,2:100"
