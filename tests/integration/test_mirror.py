"""Dual-write mirroring against two real PostgreSQL 15 clusters."""
import contextlib
import os
import re
import select
import signal
import struct
import subprocess
import threading
import time
from hashlib import md5

import psycopg
import pytest

from harness import PASSWORD, PgCluster, Proxy, wait_for
from wire import RawClient, cstr, error_fields, message

SCHEMA = """
CREATE TABLE events (id bigserial PRIMARY KEY, account int NOT NULL,
                     amount float8 NOT NULL DEFAULT random(),
                     token uuid NOT NULL DEFAULT gen_random_uuid(),
                     created timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE ledger (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, account int,
                     total float8, noted timestamptz DEFAULT now());
CREATE TABLE balances (account int PRIMARY KEY, total float8 NOT NULL DEFAULT 0,
                       updated timestamptz);
CREATE TABLE notes (body text, written timestamptz DEFAULT clock_timestamp());
"""

# The acceptance workload's custom script: serial and identity ids, uuid/time/random
# defaults, x = x + random(), INSERT ... SELECT, DELETE ... WHERE id = (SELECT ...), upserts,
# savepoints, and an autocommit write.
CUSTOM_SCRIPT = r"""
\set acct random(1, 50)
BEGIN;
INSERT INTO events (account) VALUES (:acct);
UPDATE balances SET total = total + random(), updated = clock_timestamp() WHERE account = :acct;
INSERT INTO balances (account, total, updated) VALUES (:acct, random(), now())
  ON CONFLICT (account) DO UPDATE SET total = balances.total + EXCLUDED.total, updated = EXCLUDED.updated;
SAVEPOINT s1;
INSERT INTO ledger (account, total) SELECT account, total FROM balances WHERE account = :acct;
ROLLBACK TO SAVEPOINT s1;
INSERT INTO ledger (account, total) SELECT account, sum(amount) FROM events WHERE account = :acct GROUP BY account;
DELETE FROM events WHERE id = (SELECT min(id) FROM events WHERE account = :acct AND amount < 0.3);
END;
UPDATE balances SET total = total * (1 + random() / 100) WHERE account = :acct;
INSERT INTO notes (body) VALUES (md5(random()::text));
"""

TABLES = {"events": "id", "ledger": "id", "balances": "account", "notes": "t::text",
          "pgbench_accounts": "aid", "pgbench_branches": "bid", "pgbench_tellers": "tid",
          "pgbench_history": "t::text"}


def prepare(cluster):
    cluster.sql(SCHEMA)
    subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-h", str(cluster.root), "-p", str(cluster.port),
                    "-U", "postgres", "postgres"], check=True, capture_output=True)


def assert_identical(primary, secondary, tables=TABLES):
    for table, order in tables.items():
        if primary.checksum(table, order) != secondary.checksum(table, order):
            rows = f"SELECT t::text FROM {table} t ORDER BY {order}"
            left, right = set(primary.sql(rows).splitlines()), set(secondary.sql(rows).splitlines())
            count = f"SELECT count(*) FROM {table}"
            pytest.fail(f"{table} differs ({primary.sql(count)} rows on the primary, "
                        f"{secondary.sql(count)} on the secondary): only on the primary "
                        f"{sorted(left - right)[:5]}, only on the secondary {sorted(right - left)[:5]}")


@pytest.fixture
def pair():
    primary, secondary = PgCluster().start(), PgCluster().start()
    for cluster in (primary, secondary):
        prepare(cluster)
    yield primary, secondary
    primary.destroy()
    secondary.destroy()


def mirror_config(primary, secondary, tmp_path, extra="", transport="tcp"):
    """`transport` "unix-socket": both databases are reached through their Unix-domain sockets."""
    uri = (lambda c: c.socket_uri()) if transport == "unix-socket" else (lambda c: c.uri())
    return (f"primary: {uri(primary)}\nsecondary: {uri(secondary)}\n"
            f"mirror:\n  journal: {tmp_path}/journal.jsonl\n{extra}")


def run_pgbench(proxy, seconds, clients, script_dir, builtins=("tpcb-like", "simple-update")):
    script = script_dir / "custom.sql"
    script.write_text(CUSTOM_SCRIPT)
    command = ["pgbench", "-n", "-T", str(seconds), "-c", str(clients), "-j", "2",
               "-h", "127.0.0.1", "-p", str(proxy.port), "-U", "postgres", "-f", f"{script}@2"]
    for name in builtins:
        command += ["-b", f"{name}@1"]
    return subprocess.run(command + ["postgres"], capture_output=True, text=True,
                          env={**os.environ, "PGPASSWORD": PASSWORD})


def assert_no_client_errors(result):
    assert result.returncode == 0, result.stdout + result.stderr
    assert "aborted" not in result.stderr, result.stderr
    assert "number of failed transactions: 0" in result.stdout or "failed" not in result.stdout


def test_volatile_values_are_identical_and_the_client_sees_only_its_own_results(pair, start_proxy, tmp_path):
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        # Autocommit writes, extended protocol with parameters.
        cur = conn.execute("INSERT INTO events (account) VALUES (%s)", (1,))
        assert cur.description is None and cur.rowcount == 1
        cur = conn.execute("INSERT INTO events (account) VALUES (%s) RETURNING id, account", (2,))
        assert [c.name for c in cur.description] == ["id", "account"]
        assert cur.fetchall() == [(2, 2)]
        # Binary parameters and results.
        cur = conn.cursor(binary=True)
        cur.execute("INSERT INTO balances (account, total) VALUES (%s, random()) RETURNING account", (7,))
        assert cur.fetchall() == [(7,)]
        conn.execute("UPDATE balances SET total = total + random(), updated = now() WHERE account = 7")
        conn.execute("INSERT INTO ledger (account, total) SELECT account, amount FROM events")
        conn.execute("DELETE FROM events WHERE id = (SELECT min(id) FROM events)")
        # A prepared statement run many times.
        for i in range(5):
            conn.execute("INSERT INTO events (account) VALUES (%s)", (10 + i,), prepare=True)
        # Explicit transaction with savepoints and an upsert.
        with conn.transaction():
            conn.execute("INSERT INTO balances (account) VALUES (8) ON CONFLICT (account) DO UPDATE SET total = random()")
            with pytest.raises(psycopg.errors.UniqueViolation):
                with conn.transaction():  # a savepoint
                    conn.execute("INSERT INTO balances (account) VALUES (8)")
            conn.execute("INSERT INTO notes (body) VALUES ('kept')")
        # A rolled-back transaction leaves nothing on either side.
        with pytest.raises(psycopg.errors.DivisionByZero):
            with conn.transaction():
                conn.execute("INSERT INTO notes (body) VALUES ('rolled back')")
                conn.execute("SELECT 1/0")
        # Simple protocol: a multi-statement query in one message, and a failing autocommit.
        conn.pgconn.exec_(b"INSERT INTO notes (body) VALUES ('a'); UPDATE events SET amount = random()")
        result = conn.pgconn.exec_(b"INSERT INTO balances (account) VALUES (7)")
        assert result.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"23505"
        assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
    out = subprocess.run(["psql", "-X", "-At", proxy.dsn(), "-c", "INSERT INTO notes VALUES ('psql') RETURNING body"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[0] == "psql"
    assert primary.sql("SELECT count(*) FROM notes WHERE body = 'rolled back'") == "0"
    assert_identical(primary, secondary)
    assert proxy.metric("switchyard_mirrored_statements_total", kind="row_image") > 0
    assert proxy.metric("switchyard_journal_entries_total") == 0


def test_statements_that_nest_deeply_are_mirrored_and_never_stall_the_session(pair, start_proxy, tmp_path):
    """A chain of operators nests the parse tree a level per operator however flat its text. Once
    more than 32 JSON levels deep (about ten operators) the classification threw and the session
    stalled; now such statements are parsed on a stack to match, and one nesting deeper than
    PostgreSQL accepts goes to the primary unparsed, which refuses it."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    psql = ["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", proxy.dsn()]
    sums = {terms: "SELECT " + "+".join(["1"] * terms) for terms in (30, 1500, 200_000)}
    # Simple protocol, through psql: a stalled session would time out here.
    out = subprocess.run(psql, input=f"{sums[30]};\n{sums[1500]};\n", capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["30", "1500"], out.stderr
    out = subprocess.run(psql, input=f"{sums[200_000]};\n", capture_output=True, text=True, timeout=60)
    assert "stack depth limit exceeded" in out.stderr
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO balances (account, total) VALUES (1, 0), (2, 0)")
        for account, terms in ((1, 30), (2, 1500)):  # the row images carry random()'s values
            conn.execute("UPDATE balances SET total = total" + " + random()" * terms + " WHERE account = %s",
                         (account,))
        assert conn.execute(sums[1500]).fetchone() == (1500,)
        with pytest.raises(psycopg.errors.StatementTooComplex):
            conn.execute(sums[200_000])
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert proxy.alive()
    assert primary.sql("SELECT count(*) FROM balances WHERE total > 1") == "2"
    assert_identical(primary, secondary, {"balances": "account"})
    assert proxy.metric("switchyard_journal_entries_total") == 0


def test_a_begin_sent_with_the_next_query_behaves_as_on_the_primary_alone(pair, start_proxy, tmp_path):
    """switchyard answers an idle session's BEGIN itself and sends it in front of the next
    query: tags, statuses, error cursors and the transaction's effects must be the primary's."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    Status = psycopg.pq.TransactionStatus

    def run(conn, sql):
        result = conn.pgconn.exec_(sql)
        return (result.status, result.command_status, result.error_field(psycopg.pq.DiagnosticField.SQLSTATE),
                result.error_field(psycopg.pq.DiagnosticField.STATEMENT_POSITION), conn.pgconn.transaction_status)

    sessions = [b"BEGIN", b"SELECT nosuch FROM notes", b"ROLLBACK",
                b"start transaction isolation level repeatable read", b"", b"SELEC 1", b"ROLLBACK",
                b"INSERT INTO nosuch VALUES (1)",  # an autocommit write switchyard wraps
                b"BEGIN -- a comment", b"SELECT current_setting('transaction_isolation')",
                b"INSERT INTO notes (body) VALUES ('kept')", b"COMMIT",
                b"BEGIN", b"INSERT INTO notes (body) VALUES ('rolled back')", b"ROLLBACK"]
    answers = {}
    for name, dsn in (("direct", primary.uri()), ("switchyard", proxy.dsn())):
        with psycopg.connect(dsn, autocommit=True) as conn:
            answers[name] = [run(conn, sql) for sql in sessions]
        primary.sql("DELETE FROM notes")
        secondary.sql("DELETE FROM notes")
    assert answers["switchyard"] == answers["direct"]
    assert answers["direct"][1][3] == b"8" and answers["direct"][5][4] == Status.INERROR

    # Extended-protocol statements after a simple BEGIN (psycopg's own transactions).
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.pgconn.exec_(b"BEGIN ISOLATION LEVEL SERIALIZABLE")
        assert conn.execute("SELECT current_setting(%s)", ("transaction_isolation",)).fetchone() == ("serializable",)
        conn.execute("INSERT INTO notes (body) VALUES (%s)", ("extended",))
        conn.pgconn.exec_(b"COMMIT")
        conn.pgconn.exec_(b"BEGIN")
        conn.execute("INSERT INTO notes (body) VALUES (%s)", ("extended, rolled back",))
        conn.pgconn.exec_(b"ROLLBACK")
        assert conn.pgconn.transaction_status == Status.IDLE
    for cluster in (primary, secondary):
        assert cluster.sql("SELECT string_agg(body, ',') FROM notes") == "extended"
    assert_identical(primary, secondary)


def test_a_function_call_after_a_deferred_begin_runs_in_the_transaction(pair, start_proxy, tmp_path):
    """A FunctionCall ('F', which psql and psycopg never send) right after a BEGIN switchyard
    answered itself: the BEGIN must reach the primary first, so the call runs in the
    transaction, and the client sees the primary's own answers."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    int4pl = 177  # pg_proc oid of int4pl(int4, int4)

    def function_call(a, b):
        args = b"".join(struct.pack("!i", len(v)) + v for v in (str(a).encode(), str(b).encode()))
        # one text argument format, two arguments, text result
        return message(b"F", struct.pack("!Ihhh", int4pl, 1, 0, 2) + args + struct.pack("!h", 0))

    client = RawClient(proxy.port)
    client.login_trust()
    answers = []
    for request in (message(b"Q", cstr("BEGIN")), function_call(2, 3),
                    function_call(2147483647, 1), message(b"Q", cstr("ROLLBACK"))):
        client.send(request)
        answers.append([(tag, error_fields(body)["C"].encode() if tag == b"E" else body)
                        for tag, body in client.read_until(b"Z")])
    assert answers == [
        [(b"C", b"BEGIN\0"), (b"Z", b"T")],
        # 'T': the primary is in the transaction block, so the BEGIN ran there first
        [(b"V", struct.pack("!i", 1) + b"5"), (b"Z", b"T")],
        # an error inside a block fails the block ('E'); outside one it would be 'I'
        [(b"E", b"22003"), (b"Z", b"E")],
        [(b"C", b"ROLLBACK\0"), (b"Z", b"I")],
    ]
    client.send(message(b"X"))
    assert client.closed()


LO_CREAT, LO_OPEN, LO_CLOSE, LOWRITE, LO_LSEEK, LO_LSEEK64, LO_TRUNCATE, LO_UNLINK = \
    957, 952, 953, 955, 956, 3170, 1004, 964  # pg_proc oids, fixed by PostgreSQL
INV_READ_WRITE = 0x60000


def large_object_call(client, function, *args):
    """A FunctionCall of a large-object function as libpq makes it (binary arguments and
    result; an int is an int4, bytes go as they are): the result's bytes, or the SQLSTATE of
    the error the call got."""
    body = struct.pack("!IhhH", function, 1, 1, len(args))
    for arg in args:
        value = arg if isinstance(arg, bytes) else struct.pack("!i", arg)
        body += struct.pack("!i", len(value)) + value
    client.send(message(b"F", body + struct.pack("!h", 1)))
    for tag, answer in client.read_until(b"Z"):
        if tag == b"V":
            return answer[4:]
        if tag == b"E":
            return error_fields(answer)["C"]
    raise AssertionError("no FunctionCallResponse")


def psql_through(proxy, *commands):
    """Runs psql's `commands` (meta-commands too) through `proxy`, each with -c; its output."""
    done = subprocess.run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", proxy.dsn()]
                          + [arg for command in commands for arg in ("-c", command)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def pg_dump_of(primary, tmp_path, command):
    """pg_dump's SQL output (a file) of a database of its own on `primary` that `command`
    (SQL or a psql meta-command) filled."""
    primary.sql("CREATE DATABASE source")
    primary.sql(command, dbname="source")
    dump = tmp_path / "dump.sql"
    subprocess.run(["pg_dump", "-h", str(primary.root), "-p", str(primary.port), "-U", "postgres",
                    "-d", "source", "-f", str(dump)], check=True)
    return dump


def large_objects(cluster):
    return cluster.sql("SELECT string_agg(oid || ':' || md5(lo_get(oid)), ',' ORDER BY oid) "
                       "FROM pg_largeobject_metadata")


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_large_objects_written_through_function_calls_are_identical_on_both(pair, start_proxy, tmp_path,
                                                                             write_mode):
    """libpq's lo_* functions (psql's \\lo_import, JDBC's LargeObjectManager) reach PostgreSQL as
    FunctionCalls on a descriptor. The secondary gets the same large objects: under the OIDs the
    primary chose (its own OID counter is elsewhere), with the bytes written where the primary
    wrote them, and nothing of a rolled-back transaction."""
    primary, secondary = pair
    secondary.sql("SELECT lo_unlink(lo_create(0)) FROM generate_series(1, 3)")  # its next OIDs differ
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    imported = tmp_path / "imported.bin"
    imported.write_bytes(b"".join(b"line %6d of a file psql imports\n" % i for i in range(40000)))
    first = int(psql_through(proxy, f"\\lo_import {imported}").split()[-1])

    client = RawClient(proxy.port)
    client.login_trust()
    created = struct.unpack("!I", large_object_call(client, LO_CREAT, INV_READ_WRITE))[0]  # autocommit
    client.send(message(b"Q", cstr("BEGIN")))
    client.read_until(b"Z")
    fd = struct.unpack("!i", large_object_call(client, LO_OPEN, struct.pack("!I", created), INV_READ_WRITE))[0]
    assert large_object_call(client, LOWRITE, fd, b"hello world") == struct.pack("!i", 11)
    assert large_object_call(client, LO_LSEEK, fd, 6, 0) == struct.pack("!i", 6)
    large_object_call(client, LOWRITE, fd, b"WORLD!")
    large_object_call(client, LO_TRUNCATE, fd, 9)
    assert large_object_call(client, LO_LSEEK64, fd, struct.pack("!q", 3), 2) == struct.pack("!q", 12)  # end + 3
    large_object_call(client, LOWRITE, fd, b"+end")  # at 12: PostgreSQL fills 9..12 with zeros
    large_object_call(client, LO_CLOSE, fd)
    client.send(message(b"Q", cstr("COMMIT")))
    client.read_until(b"Z")
    client.send(message(b"Q", cstr("BEGIN")))
    client.read_until(b"Z")
    large_object_call(client, LO_CREAT, INV_READ_WRITE)
    client.send(message(b"Q", cstr("ROLLBACK")))
    client.read_until(b"Z")
    assert large_object_call(client, LO_UNLINK, struct.pack("!I", 123456)) == "42704"  # no such object
    client.send(message(b"X"))

    psql_through(proxy, f"\\lo_unlink {first}", f"\\lo_import {imported}")
    if write_mode == "async":
        assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert primary.sql(f"SELECT encode(lo_get({created}), 'escape')") == "hello WOR\\000\\000\\000+end"
    assert large_objects(primary) == large_objects(secondary)
    assert primary.sql("SELECT count(*) FROM pg_largeobject_metadata") == "2"
    assert proxy.metric_sum("switchyard_mirror_failures_total") == 0, proxy.log()


def test_large_objects_written_while_the_secondary_is_down_are_replayed(pair, start_proxy, tmp_path):
    """The statements that stand for large-object FunctionCalls go to the journal like any
    other the secondary missed, binary data and all, and the replayer applies them in order."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    imported = tmp_path / "imported.bin"
    imported.write_bytes(bytes(range(256)) * 400)  # every byte value, over several lowrites
    secondary.stop()
    psql_through(proxy, f"\\lo_import {imported}")
    secondary.launch()
    assert_replayed_identical(proxy, pair, "connect", 1, {})
    assert primary.sql("SELECT count(*) FROM pg_largeobject_metadata") == "1"
    assert large_objects(primary) == large_objects(secondary)


@pytest.mark.parametrize("write_mode", ["sync", "async"])
@pytest.mark.parametrize("load", ["lo_import", "restore"])
def test_a_large_object_larger_than_a_transaction_may_buffer_is_copied_after_it(pair, start_proxy, tmp_path,
                                                                                write_mode, load):
    """The bytes a session's lowrites hold for the secondary count toward
    mirror.max_transaction_bytes; past it the object is journaled, once, and the replayer
    copies it from the primary once the transaction committed (more than one 1 MiB piece
    here). The same through psql's \\lo_import (FunctionCalls) and a restore of pg_dump's
    output (SQL)."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, extra="  max_transaction_bytes: 100000\n")
                        + f"write_mode: {write_mode}\n")
    imported = tmp_path / "imported.bin"
    imported.write_bytes(bytes(range(256)) * 12000)  # 3 MB
    if load == "lo_import":
        psql_through(proxy, f"\\lo_import {imported}")
    else:
        dump = pg_dump_of(primary, tmp_path, f"\\lo_import {imported}")
        psql_through(proxy, f"\\i {dump}")
    if write_mode == "async":
        assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    # One entry: it covers the object's later writes in the transaction, which wait for no flush.
    assert proxy.metric("switchyard_journal_entries_total") == 1, proxy.log()
    assert proxy.metric_sum("switchyard_mirror_failures_total") == \
        proxy.metric("switchyard_mirror_failures_total", reason="transaction_too_large") == 1, proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
    assert large_objects(primary) == large_objects(secondary)
    assert primary.sql("SELECT sum(length(lo_get(oid))) FROM pg_largeobject_metadata") == str(256 * 12000)


def test_an_async_transaction_past_max_transaction_bytes_is_copied_after_its_earlier_writes(pair, start_proxy,
                                                                                         tmp_path):
    """In async mode the writes a transaction kept for the secondary wait in the queue behind
    earlier commits. What it journaled past mirror.max_transaction_bytes is copied from the
    primary only once they are applied: a copy landing first would be written under by them
    (here the queued lo_create would find the object there already and fail)."""
    primary, secondary = pair
    for cluster in (primary, secondary):
        cluster.sql("CREATE TABLE counter (id int PRIMARY KEY, n int); INSERT INTO counter VALUES (1, 0)")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path,
                                      extra="  max_transaction_bytes: 100000\n  timeout: 20s\n")
                        + "write_mode: async\n")
    imported = tmp_path / "imported.bin"
    imported.write_bytes(bytes(range(256)) * 12000)  # 3 MB
    dump = pg_dump_of(primary, tmp_path, f"\\lo_import {imported}")
    with psycopg.connect(secondary.uri()) as holder:  # holds the async queue at its first write
        holder.execute("SELECT * FROM counter WHERE id = 1 FOR UPDATE")
        psql_through(proxy, "UPDATE counter SET n = n + 1 WHERE id = 1")
        psql_through(proxy, f"\\i {dump}")
        time.sleep(2)  # the replayer's turn, were the object's entry released at the primary's commit
    assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=30), proxy.log()
    assert proxy.metric_sum("switchyard_mirror_failures_total") == \
        proxy.metric("switchyard_mirror_failures_total", reason="transaction_too_large") == 1, proxy.log()
    assert large_objects(primary) == large_objects(secondary)
    assert primary.checksum("counter") == secondary.checksum("counter")


def test_a_write_to_a_large_object_descriptor_opened_by_a_larger_query_is_refused(pair, start_proxy,
                                                                                  tmp_path):
    """A descriptor a query opened among other things (lo_open over a FROM list) names no
    object switchyard knows: a FunctionCall writing to it is refused with a clear error in its
    place, as a failed call, instead of writing on the primary alone. The session goes on."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    client = RawClient(proxy.port)
    client.login_trust()
    created = struct.unpack("!I", large_object_call(client, LO_CREAT, INV_READ_WRITE))[0]
    client.send(message(b"Q", cstr(f"BEGIN; SELECT lo_open({created}, {INV_READ_WRITE}) FROM generate_series(1, 1)")))
    fd = int([body for tag, body in client.read_until(b"Z") if tag == b"D"][0][6:])
    client.send(message(b"F", struct.pack("!IhhHii", LOWRITE, 1, 1, 2, 4, fd)
                        + struct.pack("!i", 3) + b"abc" + struct.pack("!h", 1)))
    answer = client.read_until(b"Z")
    assert [tag for tag, _ in answer] == [b"E", b"Z"] and answer[-1][1] == b"E", answer
    fields = error_fields(answer[0][1])
    assert fields["C"] == "0A000" and f"descriptor {fd} is not one of those" in fields["M"], fields
    client.send(message(b"Q", cstr("ROLLBACK")))
    assert client.read_until(b"Z")[-1] == (b"Z", b"I")
    client.send(message(b"X"))
    for cluster in (primary, secondary):
        assert cluster.sql(f"SELECT length(lo_get({created}))") == "0"


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_large_objects_written_by_sql_are_identical_on_both(pair, start_proxy, tmp_path, write_mode):
    """SQL's large-object functions, as pg_dump's output restores large objects (lo_create of
    its OID, then lo_open, lowrite and lo_close in a transaction) and as applications call
    them: the secondary gets each object under the OID the primary chose (its own OID counter
    is elsewhere), with the same bytes."""
    primary, secondary = pair
    dump = pg_dump_of(primary, tmp_path, "SELECT lo_from_bytea(0, convert_to(repeat('dumped ', 50000), 'UTF8')), "
                      "lo_from_bytea(0, '\\x00ff'::bytea), lo_create(0)")
    secondary.sql("SELECT lo_unlink(lo_create(0)) FROM generate_series(1, 50)")  # its next OIDs differ
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    psql_through(proxy, f"\\i {dump}")
    created = psql_through(proxy, "SELECT lo_from_bytea(0, '\\x0102')",
                           "SELECT lo_creat(-1)", "SELECT lo_create(0)").split()
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        made = conn.execute("SELECT lo_from_bytea(0, %s)", (b"from psycopg",)).fetchone()[0]
        conn.execute("SELECT lo_put(%s, 4, %s)", (made, b"PSYCOPG"))
        conn.execute("SELECT lo_unlink(%s::oid)", (int(created[1]),))
        with conn.transaction():
            fd = conn.execute("SELECT lo_open(%s, 131072)", (int(created[2]),)).fetchone()[0]
            conn.execute("SELECT lowrite(%s, 'written through SQL')", (fd,))
            conn.execute("SELECT lo_lseek(%s, 8, 0)", (fd,))
            conn.execute("SELECT lowrite(%s, 'THROUGH')", (fd,))
            conn.execute("SELECT lo_truncate(%s, 15)", (fd,))
            conn.execute("SELECT lo_close(%s)", (fd,))
    if write_mode == "async":
        assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert primary.sql(f"SELECT encode(lo_get({created[2]}), 'escape')") == "written THROUGH"
    assert primary.sql("SELECT count(*) FROM pg_largeobject_metadata") == "6"
    assert large_objects(primary) == large_objects(secondary)
    assert proxy.metric_sum("switchyard_mirror_failures_total") == 0, proxy.log()


def test_a_large_object_lo_import_reads_on_the_primary_is_copied_to_the_secondary(pair, start_proxy,
                                                                                  tmp_path):
    """SQL's lo_import reads a file of the primary's server, which the secondary's need not have
    (or may hold other bytes): the secondary creates the object under the primary's OID, and
    the replayer copies its bytes from the primary once the transaction committed. lo_export
    writes a file on the primary's server alone."""
    primary, secondary = pair
    secondary.sql("SELECT lo_unlink(lo_create(0)) FROM generate_series(1, 50)")  # its next OIDs differ
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    served = primary.root / "served.bin"
    served.write_bytes(bytes(range(256)) * 5000)  # more than one 1 MiB piece of the copy
    served.chmod(0o644)
    exported = primary.root / "exported.bin"
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        imported = conn.execute("SELECT lo_import(%s)", (str(served),)).fetchone()[0]
        with conn.transaction():
            again = conn.execute(f"SELECT pg_catalog.lo_import('{served}', 99999)").fetchone()[0]
            conn.execute("SELECT lo_put(%s, 0, 'over')", (again,))
        conn.execute("SELECT lo_export(%s, %s)", (imported, str(exported)))
        with pytest.raises(psycopg.errors.UndefinedObject):
            conn.execute("SELECT lo_put(123456, 0, 'none')")  # no such object: nothing to mirror
    assert again == 99999
    assert exported.read_bytes() == served.read_bytes()
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert proxy.metric("switchyard_journal_entries_total") == 2, proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
    assert proxy.metric_sum("switchyard_mirror_failures_total") == 0, proxy.log()
    assert large_objects(primary) == large_objects(secondary)
    assert primary.sql(f"SELECT encode(lo_get({again}, 0, 6), 'hex')") == b"over\4\5".hex()


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_large_objects_an_insert_or_update_creates_get_the_primarys_oids_on_the_secondary(pair, start_proxy,
                                                                                           tmp_path, write_mode):
    """INSERT … VALUES and UPDATE … SET giving an oid column an object lo_from_bytea, lo_create,
    lo_creat or lo_import made, as applications keep large objects: the secondary creates each
    under the OID the primary's row holds, with the same bytes, instead of running the call
    (which chose an OID of its own there and left the row naming an object it lacked)."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE docs (id serial PRIMARY KEY, name text, body oid)")
    secondary.sql("SELECT lo_unlink(lo_create(0)) FROM generate_series(1, 50)")  # its next OIDs differ
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    served = primary.root / "served.bin"
    served.write_bytes(bytes(range(256)) * 100)
    served.chmod(0o644)
    psql_through(proxy, "INSERT INTO docs (name, body) VALUES ('literal', lo_from_bytea(0, '\\x0102')), "
                 "('empty', lo_create(0)), ('none', NULL), ('created', pg_catalog.lo_creat(-1))",
                 f"INSERT INTO docs (name, body) VALUES ('imported', lo_import('{served}'))")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO docs (name, body) VALUES (%s, lo_from_bytea(0, %s))", ("text", b"abc"))
        conn.execute("INSERT INTO docs (name, body) VALUES (%s, lo_from_bytea(0, %b))", ("binary", b"\0\1"))
        for i in range(2):
            conn.execute("INSERT INTO docs (name, body) VALUES (%s, lo_from_bytea(0, %s::bytea))",
                         (f"prepared {i}", b"p" * (i + 1)), prepare=True)
        with conn.transaction():
            conn.execute("UPDATE docs SET body = lo_from_bytea(0, %s) WHERE name IN ('empty', 'none')",
                         (b"updated",))
            conn.execute("INSERT INTO docs VALUES (100, 'positional', lo_create(0)::oid)")
    if write_mode == "async":
        assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    # The bytes of lo_import's file and of the literal are copied from the primary after the commit.
    assert proxy.metric("switchyard_journal_entries_total") == 2, proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
    assert proxy.metric_sum("switchyard_mirror_failures_total") == 0, proxy.log()
    assert primary.sql("SELECT count(*) FROM pg_largeobject_metadata") == "11"
    assert primary.sql("SELECT count(*) FROM docs d JOIN pg_largeobject_metadata m ON m.oid = d.body") == "10"
    assert primary.checksum("docs") == secondary.checksum("docs")
    assert large_objects(primary) == large_objects(secondary)


def test_large_objects_of_an_insert_a_trigger_kept_rows_of_are_copied(pair, start_proxy, tmp_path):
    """A BEFORE trigger returning NULL kept a row of the VALUES list from being written, so the
    image's rows no longer say which call made which object: each object the written rows name
    is created on the secondary and copied from the primary after the commit."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE docs (id serial PRIMARY KEY, name text, body oid); "
                    "CREATE FUNCTION skip() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN IF NEW.name = 'skip' THEN RETURN NULL; END IF; RETURN NEW; END $$; "
                    "CREATE TRIGGER skipping BEFORE INSERT ON docs FOR EACH ROW EXECUTE FUNCTION skip()")
    secondary.sql("SELECT lo_unlink(lo_create(0)) FROM generate_series(1, 50)")  # its next OIDs differ
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO docs (name, body) VALUES ('skip', lo_from_bytea(0, %s)), "
                     "('keep', lo_from_bytea(0, %s)), ('also', lo_create(0))", (b"skipped", b"kept"))
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert proxy.metric("switchyard_journal_entries_total") == 2, proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
    assert proxy.metric_sum("switchyard_mirror_failures_total") == 0, proxy.log()
    assert primary.checksum("docs") == secondary.checksum("docs")
    named = "SELECT string_agg(name || ':' || md5(lo_get(body)), ',' ORDER BY id) FROM docs"
    assert primary.sql(named) == secondary.sql(named) == f"keep:{md5(b'kept').hexdigest()},also:{md5(b'').hexdigest()}"


def test_large_objects_an_insert_select_creates_get_the_primarys_oids_on_the_secondary(pair, start_proxy, tmp_path):
    """INSERT … SELECT making an object per row it writes, as a migration moving bytea into large
    objects does: each is created on the secondary under the OID the primary's row holds, its
    bytes copied from the primary (a column's) or given as the client's parameter."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE docs (id serial PRIMARY KEY, name text, body oid); "
                    "CREATE TABLE staging (name text, data bytea); "
                    "INSERT INTO staging SELECT 'row ' || n, sha256(n::text::bytea) FROM generate_series(1, 3) n")
    secondary.sql("SELECT lo_unlink(lo_create(0)) FROM generate_series(1, 50)")  # its next OIDs differ
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    psql_through(proxy, "INSERT INTO docs (name, body) SELECT s.name, lo_from_bytea(0, s.data) FROM staging s "
                 "WHERE s.name <> 'row 2'")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO docs (name, body) SELECT 'given ' || n, lo_from_bytea(0, %s) "
                     "FROM generate_series(1, 2) n", (b"given",))
        conn.execute("INSERT INTO docs SELECT 100, 'empty', lo_create(0)")
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert proxy.metric("switchyard_journal_entries_total") == 2, proxy.log()  # the staging rows' bytes
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
    assert proxy.metric_sum("switchyard_mirror_failures_total") == 0, proxy.log()
    assert primary.sql("SELECT count(*) FROM docs d JOIN pg_largeobject_metadata m ON m.oid = d.body") == "5"
    assert primary.checksum("docs") == secondary.checksum("docs")
    assert large_objects(primary) == large_objects(secondary)


def test_large_objects_an_insert_creates_while_the_secondary_is_down_are_replayed(pair, start_proxy, tmp_path):
    """The row and the object an INSERT's lo_from_bytea made are journaled as such when the
    secondary is down, and replayed under the primary's OID."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE docs (id serial PRIMARY KEY, body oid)")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    secondary.stop()
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO docs (body) VALUES (lo_from_bytea(0, %s))", (b"made while down",))
    secondary.launch()
    assert_replayed_identical(proxy, pair, "connect", 1, {"docs": "id"})
    assert proxy.metric("switchyard_journal_entries_total") == 2, proxy.log()  # the row, the object
    assert primary.sql("SELECT count(*) FROM docs d JOIN pg_largeobject_metadata m ON m.oid = d.body") == "1"
    assert large_objects(primary) == large_objects(secondary)


def pipeline_results(pgconn, count):
    """The next `count` results of a libpq pipeline: (status name, SQLSTATE or None)."""
    results = []
    while len(results) < count:
        while pgconn.is_busy():
            readable, _, _ = select.select([pgconn.socket], [], [], 10)
            assert readable, f"no answer within 10 s after {results}"
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is not None:
            results.append((psycopg.pq.ExecStatus(result.status).name,
                            result.error_field(psycopg.pq.DiagnosticField.SQLSTATE)))
    return results


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_the_unnamed_statement_outlives_the_writes_it_runs(pair, start_proxy, tmp_path, write_mode):
    """libpq's PQprepare with an empty name, then PQexecPrepared of it again and again: the
    transaction switchyard opens around each autocommit write must not end with a simple Query,
    which drops the client's unnamed statement on the primary."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    ExecStatus = psycopg.pq.ExecStatus
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        pgconn = conn.pgconn
        assert pgconn.prepare(b"", b"INSERT INTO balances (account, total) VALUES ($1, random())").status == \
            ExecStatus.COMMAND_OK
        outcomes = []
        for account in (b"1", b"2", b"2", b"3"):  # the second 2 fails: its transaction rolls back
            result = pgconn.exec_prepared(b"", [account])
            outcomes.append(result.status if result.status == ExecStatus.COMMAND_OK
                            else result.error_field(psycopg.pq.DiagnosticField.SQLSTATE))
        assert outcomes == [ExecStatus.COMMAND_OK, ExecStatus.COMMAND_OK, b"23505", ExecStatus.COMMAND_OK]
        assert pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
    if write_mode == "async":
        assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert primary.sql("SELECT string_agg(account::text, ',' ORDER BY account) FROM balances") == "1,2,3"
    assert_identical(primary, secondary, {"balances": "account"})


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_a_failed_pipeline_skips_to_its_sync_as_postgresql_does(pair, start_proxy, tmp_path, write_mode):
    """After an error in an extended-protocol cycle PostgreSQL ignores every message up to the
    Sync, the pipeline's COMMIT included: nothing of it may reach the secondary, and messages
    the client sends after it read the error must not leave switchyard waiting for answers."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    Status = psycopg.pq.TransactionStatus
    answers = {}
    for name, dsn in (("direct", primary.uri()), ("switchyard", proxy.dsn())):
        with psycopg.connect(dsn, autocommit=True) as conn:
            pgconn, seen = conn.pgconn, []
            pgconn.enter_pipeline_mode()
            for sql in (b"BEGIN", b"INSERT INTO balances (account) VALUES (1)",
                        b"INSERT INTO balances (account) VALUES (1)", b"COMMIT"):
                pgconn.send_query_params(sql, None)
            pgconn.pipeline_sync()
            pgconn.flush()
            seen += pipeline_results(pgconn, 5) + [pgconn.transaction_status]
            pgconn.send_query_params(b"ROLLBACK", None)
            pgconn.pipeline_sync()
            pgconn.flush()
            seen += pipeline_results(pgconn, 2) + [pgconn.transaction_status]
            # The error read before the rest of the cycle is even sent.
            pgconn.send_query_params(b"INSERT INTO balances (account) VALUES (1 / 0)", None)
            pgconn.send_flush_request()
            pgconn.flush()
            seen += pipeline_results(pgconn, 1)
            pgconn.send_query_params(b"INSERT INTO balances (account) VALUES (2)", None)
            pgconn.send_query_params(b"SELECT count(*) FROM balances", None)
            pgconn.pipeline_sync()
            pgconn.flush()
            seen += pipeline_results(pgconn, 3)
            pgconn.exit_pipeline_mode()
            conn.execute("INSERT INTO balances (account) VALUES (3)")
            with conn.transaction():
                conn.execute("INSERT INTO balances (account) VALUES (4)")
            seen.append(conn.execute("SELECT string_agg(account::text, ',' ORDER BY account) FROM balances").fetchone())
            answers[name] = seen
        primary.sql("DELETE FROM balances")
    assert answers["switchyard"] == answers["direct"]
    assert answers["direct"][5] == Status.INERROR and answers["direct"][-1] == ("3,4",)
    assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert secondary.sql("SELECT string_agg(account::text, ',' ORDER BY account) FROM balances") == "3,4"


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_a_commit_of_a_transaction_that_failed_commits_nothing_on_the_secondary(pair, start_proxy, tmp_path,
                                                                                write_mode):
    """A COMMIT sent after a statement of the transaction failed answers ROLLBACK: none of
    the transaction's writes may reach the secondary either — through psql's simple
    protocol and psycopg's extended one — while writes a ROLLBACK TO SAVEPOINT kept commit."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    script = ("BEGIN;\nINSERT INTO balances (account) VALUES (1);\nSELECT 1 / 0;\nCOMMIT;\n"
              "BEGIN;\nINSERT INTO balances (account) VALUES (2);\nINSERT INTO balances (account) VALUES (2);\nCOMMIT;\n"
              "BEGIN;\nINSERT INTO balances (account) VALUES (3);\nSAVEPOINT s;\nINSERT INTO balances (account) VALUES (3);\n"
              "ROLLBACK TO SAVEPOINT s;\nINSERT INTO balances (account) VALUES (4);\nCOMMIT;\n")
    out = subprocess.run(["psql", "-X", proxy.dsn()], input=script, capture_output=True, text=True, timeout=60)
    assert out.stdout.count("ROLLBACK") == 3 and out.stdout.count("COMMIT") == 1, out.stdout + out.stderr
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO balances (account) VALUES (%s)", (5,))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO balances (account) VALUES (%s)", (5,))
        assert conn.execute("COMMIT").statusmessage == "ROLLBACK"
        conn.execute("BEGIN")
        conn.execute("INSERT INTO balances (account) VALUES (%s)", (6,))
        conn.execute("SAVEPOINT s")
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1 / %s", (0,))
        conn.execute("ROLLBACK TO SAVEPOINT s")
        assert conn.execute("COMMIT").statusmessage == "COMMIT"
    assert primary.sql("SELECT string_agg(account::text, ',' ORDER BY account) FROM balances") == "3,4,6"
    assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert_identical(primary, secondary, {"balances": "account"})


def test_writes_the_secondary_committed_before_the_primarys_commit_failed_are_undone(pair, start_proxy,
                                                                                     tmp_path):
    """In sync mode the secondary commits a transaction's writes just before the primary's
    COMMIT, which can still fail: a serializable transaction that lost to another, a deferred
    constraint only the primary has. The writes are then journaled, and the replayer makes
    their rows on the secondary the primary's again — explicit blocks, autocommit writes of
    the simple protocol and the implicit transaction of an extended-protocol cycle alike."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE doctors (id int PRIMARY KEY, on_call bool); INSERT INTO doctors VALUES (1, true), (2, true)")
        # Without a key on the secondary: its rows are reconciled by count, not inserted again.
        cluster.sql("CREATE TABLE tallies (total int)")
    primary.sql("ALTER TABLE balances ADD CONSTRAINT one_total UNIQUE (total) DEFERRABLE INITIALLY DEFERRED;"
                "ALTER TABLE tallies ADD CONSTRAINT one_tally UNIQUE (total) DEFERRABLE INITIALLY DEFERRED")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    first, second = psycopg.connect(proxy.dsn()), psycopg.connect(proxy.dsn())
    with first, second:
        for conn in (first, second):  # each takes a doctor off call, having seen two on it
            conn.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            conn.execute("SELECT count(*) FROM doctors WHERE on_call")
        first.execute("UPDATE doctors SET on_call = false WHERE id = 1")
        second.execute("UPDATE doctors SET on_call = false WHERE id = 2")
        first.commit()
        with pytest.raises(psycopg.errors.SerializationFailure):
            second.commit()
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO balances (account, total) VALUES (1, 10)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            with conn.transaction():
                conn.execute("INSERT INTO balances (account, total) VALUES (2, 10)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("UPDATE balances SET total = 20; INSERT INTO balances (account, total) VALUES (3, 20)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO balances (account, total) VALUES (%s, %s)", (4, 10))
        conn.execute("INSERT INTO tallies VALUES (5)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO tallies VALUES (5)")
    assert primary.sql("SELECT string_agg(id || ':' || on_call, ',' ORDER BY id) FROM doctors") == "1:false,2:true"
    assert primary.sql("SELECT string_agg(account || ':' || total, ',') FROM balances") == "1:10"
    assert primary.sql("SELECT string_agg(total::text, ',') FROM tallies") == "5"
    assert_replayed_identical(proxy, pair, "primary_commit_failed", 5,
                              {"doctors": "id", "balances": "account", "tallies": "total"})


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_a_primary_connection_lost_while_its_commit_is_in_flight_leaves_nothing_uncertain(pair, start_proxy,
                                                                                        tmp_path, write_mode):
    """The session loses its primary connection between sending a COMMIT and its answer:
    whether the primary committed is unknown to switchyard (here it did, locally, while it
    waited for a synchronous standby that never came). The writes are journaled as such, and
    the replayer makes the secondary's rows the primary's; a keyless table's are reconciled by
    count, neither lost nor written twice. In async mode the transaction's turn in the commit
    order is given back, and the queue gauge says so."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE tallies (total int)")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    primary.sql("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")  # not in a transaction block
    primary.sql("SELECT pg_reload_conf()")
    try:
        failures = []

        def write():
            try:
                with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
                    conn.execute("INSERT INTO tallies VALUES (7)")
            except psycopg.Error as error:
                failures.append(error)

        writer = threading.Thread(target=write)
        writer.start()
        waiting = "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
        assert wait_for(lambda: primary.sql(waiting) != "")
        primary.sql(f"SELECT pg_terminate_backend(pid) FROM ({waiting}) w")
        writer.join(30)
        assert not writer.is_alive() and len(failures) == 1
    finally:
        primary.sql("ALTER SYSTEM RESET synchronous_standby_names")
        primary.sql("SELECT pg_reload_conf()")
    assert primary.sql("SELECT string_agg(total::text, ',') FROM tallies") == "7"  # committed locally
    assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert_replayed_identical(proxy, pair, "primary_commit_failed", 1, {"tallies": "total"})


def assert_replayed_identical(proxy, pair, reason, journaled, tables):
    """`journaled` transactions went to the journal for `reason`, the replayer applied it all,
    and `tables` are identical on both sides."""
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0
                    and proxy.metric("switchyard_journal_entries_total") > 0, timeout=60), proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
    assert proxy.metric("switchyard_mirror_failures_total", reason=reason) == journaled
    assert_identical(*pair, tables)


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_a_prepared_transaction_the_primary_rolls_back_leaves_nothing_on_the_secondary(pair, start_proxy, tmp_path,
                                                                                      write_mode):
    """The secondary commits a transaction's writes as the primary prepares it (PREPARE
    TRANSACTION): whether the primary commits them is for a later COMMIT PREPARED or ROLLBACK
    PREPARED, in this session or another, through psql or psycopg's extended protocol. After a
    ROLLBACK PREPARED the secondary holds writes the primary never made: they are journaled, and
    the replayer makes those rows the primary's again; after a COMMIT PREPARED nothing is."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("INSERT INTO balances (account, total) VALUES (1, 100), (2, 200)")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    script = ("BEGIN;\nINSERT INTO balances (account, total) VALUES (3, 300);\n"
              "UPDATE balances SET total = total - 1 WHERE account = 1;\nPREPARE TRANSACTION 'undone in psql';\n"
              "BEGIN;\nDELETE FROM balances WHERE account = 2;\nINSERT INTO balances (account) VALUES (4);\n"
              "PREPARE TRANSACTION 'kept';\nCOMMIT PREPARED 'kept';\n")
    out = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", proxy.dsn()], input=script, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.count("PREPARE TRANSACTION") == 2, out.stdout + out.stderr
    with psycopg.connect(proxy.dsn(), autocommit=True) as other:
        other.execute("ROLLBACK PREPARED 'undone in psql'", prepare=True)  # another session, extended protocol
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute("UPDATE balances SET total = %s WHERE account = %s", (5.5, 4))
        conn.execute("INSERT INTO balances (account, total) VALUES (%s, %s)", (5, 500))
        conn.execute("PREPARE TRANSACTION 'undone by psycopg'")
        conn.execute("ROLLBACK PREPARED 'undone by psycopg'")
    assert primary.sql("SELECT string_agg(account || ':' || total, ',' ORDER BY account) FROM balances") == "1:100,4:0"
    assert primary.sql("SELECT count(*) FROM pg_prepared_xacts") == "0"
    assert_replayed_identical(proxy, pair, "prepared_rolled_back", 2, {"balances": "account"})


def test_a_write_sent_right_behind_a_commit_is_mirrored_as_an_autocommit_write(pair, start_proxy, tmp_path):
    """A client may send its next statement before the answer to a COMMIT arrived (drivers
    that pipeline, here a simple-query COMMIT followed by an extended-protocol INSERT). The
    ReadyForQuery of the statement before the COMMIT once made switchyard take that INSERT for
    part of the committed transaction: it reached only the primary, and its row image waited
    for a commit that never came (the failing query behind it discarded it)."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    insert = message(b"P", cstr("") + cstr("INSERT INTO notes (body) VALUES ($1)") + struct.pack("!h", 0))

    def bind_execute(body):
        return (message(b"B", cstr("") + cstr("") + struct.pack("!hh", 0, 1) + struct.pack("!i", len(body)) + body
                        + struct.pack("!h", 0)) + message(b"E", cstr("") + struct.pack("!I", 0)) + message(b"S"))

    client = RawClient(proxy.port)
    client.login_trust()
    for commit, body in ((message(b"Q", cstr("BEGIN; INSERT INTO notes (body) VALUES ('a'); COMMIT")), b"b"),
                         (message(b"Q", cstr("BEGIN")) + message(b"Q", cstr("INSERT INTO notes (body) VALUES ('c')"))
                          + message(b"Q", cstr("COMMIT")), b"d")):
        # All in one write: the INSERT is on its way before the COMMIT's answer.
        client.send(commit + insert + bind_execute(body) + message(b"Q", cstr("SELEC 1")))
        answers = [tag for tag, _ in client.read_until(b"E")]
        assert answers.count(b"E") == 1 and client.read_message()[0] == b"Z"
    client.send(message(b"X"))
    assert primary.sql("SELECT string_agg(body, ',' ORDER BY body) FROM notes") == "a,b,c,d"
    assert_identical(primary, secondary, {"notes": "body"})
    assert proxy.metric("switchyard_journal_entries_total") == 0


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_writes_a_client_sent_right_before_it_left_commit_on_both_databases(pair, start_proxy, tmp_path,
                                                                          write_mode):
    """A client may log off or hang up without reading the answers to what it sent last
    (libpq's PQfinish after PQsendQuery). PostgreSQL runs those requests to their end first,
    committing autocommit writes; so must switchyard, on both databases, though it wraps such
    writes in a transaction of its own that commits only after the secondary. A transaction
    block left open is rolled back on both. Nothing is journaled: nothing was missed."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")

    def insert(body):
        return message(b"Q", cstr(f"INSERT INTO notes (body) VALUES ('{body}')"))

    def extended_insert(body):
        return (message(b"P", cstr("") + cstr(f"INSERT INTO notes (body) VALUES ('{body}')") + struct.pack("!h", 0))
                + message(b"B", cstr("") + cstr("") + struct.pack("!hhh", 0, 0, 0))
                + message(b"E", cstr("") + struct.pack("!I", 0)) + message(b"S"))

    for requests in (insert("simple"), insert("first") + insert("second"), extended_insert("extended"),
                     message(b"Q", cstr("BEGIN")) + insert("open block"),
                     message(b"Q", cstr("BEGIN; INSERT INTO notes (body) VALUES ('open block 2')"))):
        for leaving in ("terminate", "terminate and hang up", "hang up"):
            client = RawClient(proxy.port)
            client.login_trust()
            client.send(requests + (message(b"X") if leaving.startswith("terminate") else b""))
            if leaving == "terminate":
                assert client.closed()
            else:  # the answers then have nowhere to go
                client.close()
    assert wait_for(lambda: proxy.metric("switchyard_client_connections") == 0)
    assert primary.sql("SELECT string_agg(body, ',' ORDER BY body) FROM notes") == \
        ",".join(sorted(["extended", "first", "second", "simple"] * 3))
    assert wait_for(lambda: async_settled(proxy))
    assert_identical(primary, secondary, {"notes": "body, written"})
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()

@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_writes_a_client_sent_before_its_connection_was_reset_commit_on_both_databases(pair, start_proxy,
                                                                                      tmp_path, write_mode):
    """A client that dies with answers unread hangs up with a TCP reset: switchyard's reads and
    writes on its socket fail rather than meet an end of stream. PostgreSQL runs what it was
    sent up to the answer it cannot send, committing a write whose Sync came with it. So must
    the session, on both databases: once, a failed write to the client ended it at once, which
    rolled such a write back on the primary (sync) or journaled it as a failed primary commit
    (async). So did a message too large to take behind such a write. Nothing is journaled:
    nothing was missed."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")

    def insert(body, sleep=0.0):
        return f"INSERT INTO notes (body) SELECT '{body}' FROM pg_sleep({sleep})"

    def extended(sql):
        return (message(b"P", cstr("") + cstr(sql) + struct.pack("!h", 0))
                + message(b"B", cstr("") + cstr("") + struct.pack("!hhh", 0, 0, 0))
                + message(b"E", cstr("") + struct.pack("!I", 0)) + message(b"S"))

    # Reset while the primary runs a write: switchyard's read of the client fails.
    # Reset with a large answer unread: its write to the client fails, mid-answer.
    large_read = "SELECT repeat('x', 1000) FROM generate_series(1, 20000)"
    for requests, expected in (
            (message(b"Q", cstr(insert("slow", 0.5))) + message(b"Q", cstr(insert("after slow"))),
             ["slow"]),
            (extended(insert("slow extended", 0.5)) + extended(insert("after slow extended"))
             + message(b"Q", cstr("BEGIN")) + message(b"Q", cstr(insert("open block"))),
             ["slow extended"]),
            (message(b"Q", cstr(large_read)) + message(b"Q", cstr(insert("after large read", 0.2))),
             [])):
        client = RawClient(proxy.port)
        client.login_trust()
        client.send(requests)
        time.sleep(0.2)
        client.reset()
        assert wait_for(lambda: proxy.metric("switchyard_client_connections") == 0), proxy.log()
        assert wait_for(lambda: async_settled(proxy)), proxy.log()
        bodies = primary.sql("SELECT string_agg(body, ',' ORDER BY body) FROM notes").split(",")
        assert set(expected) <= set(bodies), proxy.log()
        assert_identical(primary, secondary, {"notes": "body, written"})
    assert "open block" not in primary.sql("SELECT string_agg(body, ',') FROM notes")

    # A message over limits.max_message_size behind a write: PostgreSQL answers what came
    # before the message it cannot take, then refuses it.
    client = RawClient(proxy.port)
    client.login_trust()
    client.send(extended(insert("before oversized", 0.5)) + b"Q" + struct.pack("!I", 0x7fffffff))
    answers = client.read_until(b"E")
    assert [tag for tag, _ in answers] == [b"1", b"2", b"C", b"Z", b"E"], answers
    assert error_fields(answers[-1][1])["C"] == "08P01"
    assert client.closed()
    assert wait_for(lambda: async_settled(proxy)), proxy.log()
    assert "before oversized" in primary.sql("SELECT string_agg(body, ',') FROM notes")
    assert_identical(primary, secondary, {"notes": "body, written"})
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()


def memory_kib(process, field):
    """VmRSS (now) or VmHWM (the peak) of a process, in KiB."""
    with open(f"/proc/{process.pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_a_client_that_sends_without_reading_its_answers_costs_bounded_memory(pair, start_proxy, tmp_path,
                                                                           monkeypatch, protocol):
    """Socket buffers alone hold back a client that sends requests without reading the answers,
    and a mirrored session keeps books on every request in flight until it is answered:
    these 300,000 requests, left unread, grew the proxy by 141 MiB (`SELECT 1` queries) and
    543 MiB (extended-protocol cycles). The session now reads no more from its client past a bound of requests in flight
    until the primary has answered them. Every answer still comes, in order."""
    primary, secondary = pair
    # ASan's quarantine keeps freed memory resident: off, so RSS shows what the session holds.
    monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=0")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    if protocol == "simple":
        unit, answers = message(b"Q", cstr("SELECT 1")), b"TDCZ"
    else:
        unit = (message(b"P", cstr("") + cstr("SELECT 1") + struct.pack("!h", 0))
                + message(b"B", cstr("") + cstr("") + struct.pack("!hhh", 0, 0, 0))
                + message(b"E", cstr("") + struct.pack("!I", 0)) + message(b"S"))
        answers = b"12DCZ"
    units = 300_000
    client = RawClient(proxy.port, timeout=60)
    client.login_trust()
    rss_before = memory_kib(proxy.process, "VmRSS")
    sender = threading.Thread(target=client.send, args=(unit * units,))
    sender.start()
    time.sleep(3)  # the session reads what it will take before the client reads anything

    tags = client.tags_until_ready(units)
    sender.join(timeout=60)
    assert tags == answers * units
    peak_growth_mib = (memory_kib(proxy.process, "VmHWM") - rss_before) / 1024
    assert peak_growth_mib < 48, f"the proxy grew by {peak_growth_mib:.0f} MiB"
    client.send(message(b"Q", cstr("SELECT 2")))
    assert [tag for tag, _ in client.read_until(b"Z")] == [b"T", b"D", b"C", b"Z"]


def test_a_query_of_more_statements_than_the_limit_is_refused_and_runs_nothing(pair, start_proxy, tmp_path):
    """Each statement of a query string costs the session memory while it is classified; past
    limits.max_statements_per_query the query is refused with 54000 as PostgreSQL fails a
    statement: nothing of it runs on either database, and a transaction block it is in aborts."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, "limits:\n  max_statements_per_query: 1000\n"))
    client = RawClient(proxy.port, timeout=60)
    client.login_trust()
    insert = "INSERT INTO notes (body) VALUES ('batch');"

    def query(sql):
        client.send(message(b"Q", cstr(sql)))
        return client.read_until(b"Z")

    # Nothing of the text runs: not its BEGIN either, as when PostgreSQL cannot parse a text.
    for before, sql, status in (("", insert * 1001, b"I"), ("", "BEGIN;" + insert * 1000, b"I"),
                                ("BEGIN", insert * 1001, b"E")):
        if before:
            assert [tag for tag, _ in query(before)] == [b"C", b"Z"]
        answer = query(sql)
        assert [tag for tag, _ in answer] == [b"E", b"Z"] and answer[-1][1] == status
        error = error_fields(answer[0][1])
        assert error["C"] == "54000"
        assert "more than 1000 statements" in error["M"] and "max_statements_per_query" in error["M"]
    assert [tag for tag, _ in query("ROLLBACK")] == [b"C", b"Z"]
    assert primary.sql("SELECT count(*) FROM notes") == secondary.sql("SELECT count(*) FROM notes") == "0"

    answer = query(insert * 1000)  # at the limit: every statement runs, on both
    assert [tag for tag, _ in answer] == [b"C"] * 1000 + [b"Z"] and answer[-1][1] == b"I"
    assert primary.sql("SELECT count(*) FROM notes") == "1000"
    assert primary.checksum("notes", order="body, written") == secondary.checksum("notes", order="body, written")


def test_a_long_query_string_is_classified_a_statement_at_a_time(pair, start_proxy, tmp_path, monkeypatch):
    """libpg_query's parse tree of a whole query string, and the JSON it comes as, cost 100 to 300
    times the text's size: this 0.9 MB text of 100,000 statements grew the proxy by 249 MiB
    while it was classified. Parsed a statement at a time it costs what the statements' own
    classifications do."""
    primary, secondary = pair
    monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=0")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    client = RawClient(proxy.port, timeout=120)
    client.login_trust()
    rss_before = memory_kib(proxy.process, "VmRSS")
    statements = 100_000
    client.send(message(b"Q", cstr("SELECT 1;" * statements)))
    assert client.tags_until_ready(1) == b"TDC" * statements + b"Z"
    peak_growth_mib = (memory_kib(proxy.process, "VmHWM") - rss_before) / 1024
    assert peak_growth_mib < 150, f"the proxy grew by {peak_growth_mib:.0f} MiB"


def test_a_long_bulk_insert_is_classified_from_its_distinct_rows(pair, start_proxy, tmp_path, monkeypatch):
    """One long statement is one parse: this 3.3 MB INSERT of 100,000 rows grew the proxy by
    150 MiB. Its rows differ in their constants alone, save which leave the clock default to
    the database: classified from one row of each shape, it costs about what its row images do
    (44 MiB), and the rows that took the default get the primary's value on both sides."""
    primary, secondary = pair
    monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=0")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    client = RawClient(proxy.port, timeout=120)
    client.login_trust()
    rows = 100_000
    sql = "INSERT INTO notes (body, written) VALUES " + ", ".join(
        f"('note {i}', DEFAULT)" if i % 2 else f"('note {i}', '2026-01-01 00:00:{i % 60:02}+00')" for i in range(rows))
    rss_before = memory_kib(proxy.process, "VmRSS")
    client.send(message(b"Q", cstr(sql)))
    answer = client.read_until(b"Z")
    assert [(tag, body) for tag, body in answer[:1]] == [(b"C", f"INSERT 0 {rows}\0".encode())]
    peak_growth_mib = (memory_kib(proxy.process, "VmHWM") - rss_before) / 1024
    assert peak_growth_mib < 100, f"the proxy grew by {peak_growth_mib:.0f} MiB"
    assert primary.sql("SELECT count(DISTINCT written) > 60 FROM notes") == "t"  # the clock's own values
    assert primary.checksum("notes", order="body") == secondary.checksum("notes", order="body")


def test_a_long_parameterised_bulk_insert_is_classified_from_its_distinct_rows(pair, start_proxy, tmp_path,
                                                                               monkeypatch):
    """As above for an INSERT an ORM batches into one Parse: rows that differ in their
    parameter numbers alone are of one shape. 60,000 rows and parameters (1 MB of text), half
    the rows leaving the clock default to the database: parsed whole, the proxy grew by
    84 MiB; from its two shapes of row, by 34."""
    primary, secondary = pair
    monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=0")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    rows = 60_000
    sql = "INSERT INTO notes (body, written) VALUES " + ", ".join(
        "(%s, DEFAULT)" if i % 2 else f"(%s, '2026-01-01 00:00:{i % 60:02}+00')" for i in range(rows))
    params = [f"note {i}" for i in range(rows)]
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        rss_before = memory_kib(proxy.process, "VmRSS")
        assert conn.execute(sql, params).rowcount == rows
        peak_growth_mib = (memory_kib(proxy.process, "VmHWM") - rss_before) / 1024
    assert peak_growth_mib < 60, f"the proxy grew by {peak_growth_mib:.0f} MiB"
    assert primary.sql("SELECT count(DISTINCT written) > 60 FROM notes") == "t"  # the clock's own values
    assert primary.checksum("notes", order="body") == secondary.checksum("notes", order="body")


def test_a_long_in_list_is_classified_from_its_first_constant(pair, start_proxy, tmp_path, monkeypatch):
    """A statement of one long list of constants (an IN list an ORM builds, 100,000 of them,
    1.3 MB) was parsed whole: the proxy grew by 65 MiB for it. How many constants a list holds
    changes nothing switchyard takes from a parse, so the list is parsed as its first (4 MiB);
    the DELETE of such a list is mirrored as ever."""
    primary, secondary = pair
    monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=0")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    client = RawClient(proxy.port, timeout=120)
    client.login_trust()
    client.send(message(b"Q", cstr("INSERT INTO notes (body) SELECT 'note ' || i FROM generate_series(0, 999) i")))
    client.read_until(b"Z")
    names = ", ".join(f"'note {i}'" for i in range(0, 200_000, 2))
    rss_before = memory_kib(proxy.process, "VmRSS")
    client.send(message(b"Q", cstr(f"SELECT count(*) FROM notes WHERE body IN ({names})")))
    answer = client.read_until(b"Z")
    peak_growth_mib = (memory_kib(proxy.process, "VmHWM") - rss_before) / 1024
    assert [tag for tag, _ in answer] == [b"T", b"D", b"C", b"Z"] and answer[1][1].endswith(b"500")
    assert peak_growth_mib < 30, f"the proxy grew by {peak_growth_mib:.0f} MiB"
    client.send(message(b"Q", cstr(f"DELETE FROM notes WHERE body IN ({names}) AND written < (ARRAY[now(), "
                                    + ", ".join(["'infinity'"] * 1000) + "])[1]")))
    assert [(tag, body) for tag, body in client.read_until(b"Z")] == [(b"C", b"DELETE 500\0"), (b"Z", b"I")]
    assert primary.sql("SELECT count(*) FROM notes") == "500"
    assert primary.checksum("notes", order="body") == secondary.checksum("notes", order="body")


def test_a_close_skipped_after_an_error_leaves_the_statement_known(pair, start_proxy, tmp_path):
    """After an error PostgreSQL skips the rest of the cycle, a Close of the statement too: the
    statement lives on, and switchyard must still know it carries a row image, or a Describe of
    it shows the client the image's columns."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    client = RawClient(proxy.port)
    client.login_trust()
    client.send(message(b"P", cstr("") + cstr("INSERT INTO notes (body) VALUES ('kept')") + struct.pack("!h", 0))
                + message(b"E", cstr("no such portal") + struct.pack("!I", 0))
                + message(b"C", b"S" + cstr("")) + message(b"S"))
    answer = client.read_until(b"Z")
    assert [tag for tag, _ in answer] == [b"1", b"E", b"Z"] and error_fields(answer[1][1])["C"] == "34000"
    client.send(message(b"B", cstr("") + cstr("") + struct.pack("!hhh", 0, 0, 0)) + message(b"D", b"P" + cstr(""))
                + message(b"E", cstr("") + struct.pack("!I", 0)) + message(b"S"))
    assert [tag for tag, _ in client.read_until(b"Z")] == [b"2", b"n", b"C", b"Z"]
    client.send(message(b"X"))
    assert primary.sql("SELECT body FROM notes") == "kept"
    assert_identical(primary, secondary, {"notes": "body"})


def test_a_parse_postgresql_refuses_leaves_the_statement_it_would_have_replaced(pair, start_proxy, tmp_path):
    """A Parse of a name in use fails, and the statement of that name stays what it was: an
    Execute of it is still that write, mirrored, not the read the refused Parse held."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    client = RawClient(proxy.port)
    client.login_trust()

    def parse(sql):
        return message(b"P", cstr("s1") + cstr(sql) + struct.pack("!h", 0)) + message(b"S")

    client.send(parse("INSERT INTO notes (body) VALUES ('written')"))
    assert [tag for tag, _ in client.read_until(b"Z")] == [b"1", b"Z"]
    client.send(parse("SELECT 1"))
    answer = client.read_until(b"Z")
    assert [tag for tag, _ in answer] == [b"E", b"Z"] and error_fields(answer[0][1])["C"] == "42P05"
    client.send(message(b"B", cstr("") + cstr("s1") + struct.pack("!hhh", 0, 0, 0))
                + message(b"E", cstr("") + struct.pack("!I", 0)) + message(b"S"))
    assert [tag for tag, _ in client.read_until(b"Z")] == [b"2", b"C", b"Z"]
    client.send(message(b"X"))
    assert primary.sql("SELECT body FROM notes") == "written"
    assert_identical(primary, secondary, {"notes": "body"})


def data_row_values(body):
    """The column values of a DataRow body (None for NULL)."""
    count, offset, values = struct.unpack("!h", body[:2])[0], 2, []
    for _ in range(count):
        length = struct.unpack("!i", body[offset:offset + 4])[0]
        offset += 4
        values.append(None if length < 0 else body[offset:offset + length])
        offset += max(length, 0)
    return values


def test_a_bind_with_a_result_format_per_column_gets_them_from_a_write(pair, start_proxy, tmp_path):
    """pgJDBC describes a statement it has prepared, then binds it with one result format per
    column the description showed (binary for ids, text for the rest). switchyard's row image
    adds columns behind the client's, and PostgreSQL refused every such Bind of a write with
    RETURNING (08P01 "bind message has 2 result formats but query has 8 columns")."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    client = RawClient(proxy.port)
    client.login_trust()
    insert = "INSERT INTO events (account) VALUES ($1) RETURNING id, account"
    client.send(message(b"P", cstr("ins") + cstr(insert) + struct.pack("!hI", 1, 23))
                + message(b"D", b"S" + cstr("ins")) + message(b"S"))
    answer = client.read_until(b"Z")
    assert [tag for tag, _ in answer] == [b"1", b"t", b"T", b"Z"]
    assert struct.unpack("!h", answer[2][1][:2])[0] == 2  # the client's two columns only

    def bind_execute(statement, account, formats):
        value = str(account).encode()
        return (message(b"B", cstr("") + cstr(statement) + struct.pack("!hh", 0, 1) + struct.pack("!i", len(value))
                        + value + struct.pack("!h", len(formats)) + struct.pack(f"!{len(formats)}h", *formats))
                + message(b"E", cstr("") + struct.pack("!I", 0)) + message(b"S"))

    def run(account, expected_id):
        client.send(bind_execute("ins", account, (1, 0)))
        answer = client.read_until(b"Z")
        assert [tag for tag, _ in answer] == [b"2", b"D", b"C", b"Z"], answer
        assert data_row_values(answer[1][1]) == [struct.pack("!q", expected_id), str(account).encode()]

    run(7, 1)
    run(8, 2)
    # A column added to the table: the statement is prepared again, its image one wider.
    client.send(message(b"Q", cstr("ALTER TABLE events ADD COLUMN region text DEFAULT 'eu'")))
    assert [tag for tag, _ in client.read_until(b"Z")] == [b"C", b"Z"]
    run(9, 3)
    # Formats per column for a statement nobody described yet.
    client.send(message(b"P", cstr("") + cstr("UPDATE events SET amount = random() WHERE account = $1 "
                                               "RETURNING account, id") + struct.pack("!hI", 1, 23))
                + bind_execute("", 8, (0, 1)))
    answer = client.read_until(b"Z")
    assert [tag for tag, _ in answer] == [b"1", b"2", b"D", b"C", b"Z"], answer
    assert data_row_values(answer[2][1]) == [b"8", struct.pack("!q", 2)]
    client.send(message(b"X"))
    assert_identical(primary, secondary, {"events": "id"})
    assert proxy.metric("switchyard_journal_entries_total") == 0


def test_prepared_writes_run_on_after_a_column_is_added_to_their_table(pair, start_proxy, tmp_path):
    """switchyard prepares a write on the primary with its row image (`t.*`) appended, so a
    column added to the table changes what the prepared statement returns, which PostgreSQL
    refuses ("cached plan must not change result type", 0A000) where the client's statement
    alone would run on. psycopg prepares what it runs five times; after an expand-phase ALTER
    TABLE ... ADD COLUMN every later run of such a write failed, for good."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO balances (account) VALUES (1)")

        def run(account):
            cur = conn.execute("INSERT INTO events (account) VALUES (%s) RETURNING account", (account,), prepare=True)
            assert cur.fetchone() == (account,)
            conn.execute("UPDATE balances SET total = total + random() WHERE account = %s", (1,), prepare=True)

        run(1)
        conn.execute("ALTER TABLE events ADD COLUMN region text DEFAULT 'eu'")
        conn.execute("ALTER TABLE balances ADD COLUMN note text")
        run(2)
        run(3)
        # DDL that bypassed switchyard (run on both databases directly) shows in the refusal;
        # the statement is prepared again for its next run.
        for cluster in pair:
            cluster.sql("ALTER TABLE events ADD COLUMN tier int DEFAULT 1")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            run(4)
        run(5)
        # A client's own RETURNING * returns the table's columns: PostgreSQL's refusal is the
        # client's to see, as without switchyard.
        star = "INSERT INTO notes (body) VALUES (%s) RETURNING *"
        conn.execute(star, ("a",), prepare=True)
        conn.execute("ALTER TABLE notes ADD COLUMN late int")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute(star, ("b",), prepare=True)
    assert primary.sql("SELECT string_agg(account::text, ',' ORDER BY id) FROM events") == "1,2,3,5"
    assert_identical(primary, secondary, {"events": "id", "balances": "account", "notes": "t::text"})
    assert proxy.metric("switchyard_journal_entries_total") == 0


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_a_prepared_write_bound_while_ddl_waits_for_its_lock_runs_after_it(pair, start_proxy, tmp_path,
                                                                           write_mode):
    """Another session's prepared write (its row image `t.*` prepared with it) bound while an
    ALTER TABLE ... ADD COLUMN waited for its lock ran after the DDL on the primary and failed
    with "cached plan must not change result type": switchyard counted the DDL only once its
    answer was in. The write also reached the secondary before the DDL did and was refused
    there for the column it lacked: in sync mode it waits for the DDL and is applied again; in
    async mode it took its place in the commit order before the DDL's, which was taken only
    once the primary had answered the DDL."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    insert = "INSERT INTO events (account) VALUES (%s) RETURNING account"
    outcome = {}
    with psycopg.connect(proxy.dsn(), autocommit=True) as writer, \
            psycopg.connect(primary.uri(), autocommit=True) as holder:
        writer.execute(insert, (1,), prepare=True)  # prepared on the primary with the image
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE events IN ACCESS SHARE MODE")

        def waiting(sessions):
            return primary.sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                               " AND datname = 'postgres'") == str(sessions)

        def migrate():
            with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
                conn.execute("ALTER TABLE events ADD COLUMN region text DEFAULT 'eu'")

        def write():
            try:
                outcome["rows"] = writer.execute(insert, (2,), prepare=True).fetchall()
            except psycopg.Error as e:
                outcome["error"] = e

        migration = threading.Thread(target=migrate)
        migration.start()
        assert wait_for(lambda: waiting(1), timeout=10)  # the ALTER TABLE
        writing = threading.Thread(target=write)
        writing.start()
        assert wait_for(lambda: waiting(2), timeout=10)  # and the write, queued behind it
        holder.execute("COMMIT")
        migration.join(timeout=30)
        writing.join(timeout=30)
    assert "error" not in outcome and outcome["rows"] == [(2,)], outcome
    if write_mode == "async":
        assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert proxy.metric_sum("switchyard_mirror_failures_total") == 0, proxy.log()
    assert_identical(primary, secondary, {"events": "id"})


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_a_write_into_a_table_the_secondary_is_still_creating_is_applied_once_it_has_it(
        pair, start_proxy, tmp_path, write_mode):
    """Autocommit DDL reaches the secondary after the primary committed it, so another
    session's write into a table it created can reach the secondary first, which has no such
    table yet (42P01, also when switchyard asks its catalog for the table's key). In sync mode
    the write waits for the DDL there and is applied again; in async mode it is behind the
    DDL in the commit order. Here the secondary's CREATE TABLE ... (LIKE events) waits for a
    lock on events that a direct session holds there."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    outcome = {}
    with psycopg.connect(secondary.uri(), autocommit=True) as holder, \
            psycopg.connect(proxy.dsn(), autocommit=True) as writer:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")

        def migrate():
            try:
                with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
                    conn.execute("CREATE TABLE copies (LIKE events INCLUDING ALL)")
            except psycopg.Error as e:
                outcome["ddl error"] = e

        migration = threading.Thread(target=migrate)
        migration.start()
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        assert wait_for(lambda: secondary.sql(waiting) == "1", timeout=10), proxy.log()
        assert primary.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'copies'") == "1"

        def write():
            try:
                outcome["rows"] = writer.execute("INSERT INTO copies (id, account) VALUES (5, 1), (6, 2)"
                                                 " RETURNING id").fetchall()
            except psycopg.Error as e:
                outcome["error"] = e

        writing = threading.Thread(target=write)
        writing.start()
        time.sleep(1)  # the write meets the missing table on the secondary, or waits in the queue
        holder.execute("COMMIT")
        migration.join(timeout=30)
        writing.join(timeout=30)
    assert "error" not in outcome and "ddl error" not in outcome, outcome
    assert outcome["rows"] == [(5,), (6,)]
    if write_mode == "async":
        assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    else:
        assert proxy.metric("switchyard_mirror_retried_after_ddl_total") == 1, proxy.log()
    assert proxy.metric_sum("switchyard_mirror_failures_total") == 0, proxy.log()
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()
    assert_identical(primary, secondary, {"copies": "id"})


@pytest.mark.parametrize("write_mode", ["sync", "async"])
@pytest.mark.parametrize("ddl_in", ["autocommit", "block"])
def test_a_prepared_write_bound_just_before_ddl_was_sent_runs_before_it(pair, start_proxy, tmp_path,
                                                                       write_mode, ddl_in):
    """A Bind of a prepared write (its row image `t.*` prepared with it) that switchyard sent
    just before another session's ALTER TABLE ... ADD COLUMN, but that PostgreSQL reached only
    after the DDL had run, failed with "cached plan must not change result type", an error
    PostgreSQL alone would not raise. Here the Bind waits in a pipeline behind a one-second
    read; the DDL waits, before it is sent, for that Bind to be answered: run alone, or as
    the first statement of a migration's transaction block, which holds no lock yet that the
    Bind could be waiting for."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n"
                        "read_routing:\n  safe_functions: [pg_sleep]\n")
    insert = b"INSERT INTO events (account) VALUES ($1) RETURNING account"
    with psycopg.connect(proxy.dsn(), autocommit=True) as writer:
        pgconn = writer.pgconn
        assert pgconn.prepare(b"write", insert).status == psycopg.pq.ExecStatus.COMMAND_OK
        assert pgconn.exec_prepared(b"write", [b"1"]).status == psycopg.pq.ExecStatus.TUPLES_OK
        pgconn.enter_pipeline_mode()
        pgconn.send_query_params(b"SELECT pg_sleep(1)", None)
        pgconn.pipeline_sync()
        pgconn.send_query_prepared(b"write", [b"2"])
        pgconn.pipeline_sync()
        pgconn.flush()
        assert wait_for(lambda: primary.sql("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                                            "AND query = 'SELECT pg_sleep(1)'") == "1", timeout=10)
        time.sleep(0.1)  # the Bind behind it reaches switchyard and the primary's socket
        with psycopg.connect(proxy.dsn(), autocommit=ddl_in == "autocommit") as migrator:
            migrator.execute("SELECT count(*) FROM events")  # a read takes no lock a write waits for
            migrator.execute("ALTER TABLE events ADD COLUMN region text DEFAULT 'eu'")
            migrator.commit()
        results = pipeline_results(pgconn, 4)
        pgconn.exit_pipeline_mode()
    assert results == [("TUPLES_OK", None), ("PIPELINE_SYNC", None), ("TUPLES_OK", None),
                       ("PIPELINE_SYNC", None)]
    if write_mode == "async":
        assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert primary.sql("SELECT string_agg(account || region, ',' ORDER BY id) FROM events") == "1eu,2eu"
    assert proxy.metric_sum("switchyard_mirror_failures_total") == 0, proxy.log()
    assert_identical(primary, secondary, {"events": "id"})


def test_ddl_in_a_block_that_wrote_does_not_wait_for_binds_it_may_hold_back(pair, start_proxy, tmp_path):
    """DDL waits for other sessions' Binds sent before it (above) only while its transaction
    holds no lock they could be waiting for. Here the migration's block updated a row first,
    a writer's pipeline waits for that row, and behind it waits a Bind of a prepared write to
    the table the block then alters: waiting for that Bind would hold the block, and every
    session that wants the row, for all of mirror.timeout. The ALTER reaches the primary while
    the Bind is still unanswered."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE hot (id int PRIMARY KEY, n int NOT NULL); INSERT INTO hot VALUES (1, 0)")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, extra="  timeout: 60s\n"))
    insert = b"INSERT INTO events (account) VALUES ($1) RETURNING account"
    with psycopg.connect(proxy.dsn(), autocommit=True) as writer, psycopg.connect(proxy.dsn()) as migrator:
        pgconn = writer.pgconn
        assert pgconn.prepare(b"write", insert).status == psycopg.pq.ExecStatus.COMMAND_OK
        assert pgconn.exec_prepared(b"write", [b"1"]).status == psycopg.pq.ExecStatus.TUPLES_OK
        migrator.execute("UPDATE hot SET n = n + 10 WHERE id = 1")
        pgconn.enter_pipeline_mode()
        pgconn.send_query_params(b"UPDATE hot SET n = n + 1 WHERE id = 1", None)
        pgconn.send_query_prepared(b"write", [b"2"])  # in the same implicit transaction
        pgconn.pipeline_sync()
        pgconn.flush()
        assert wait_for(lambda: primary.sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                            "AND query LIKE 'UPDATE hot%'") == "1", timeout=10)
        time.sleep(0.1)  # the Bind behind it reaches switchyard and the primary's socket
        altering = threading.Thread(target=migrator.execute,
                                    args=("ALTER TABLE events ADD COLUMN region text DEFAULT 'eu'",))
        altering.start()
        try:
            assert wait_for(lambda: primary.sql(
                "SELECT count(*) FROM pg_locks WHERE granted AND mode = 'AccessExclusiveLock' "
                "AND relation = 'events'::regclass") == "1", timeout=10), \
                "the ALTER waited for a Bind that waits for its transaction"
        finally:
            altering.join()
        migrator.commit()
        results = pipeline_results(pgconn, 3)
        pgconn.exit_pipeline_mode()
    # Left as documented: the Bind, which met the DDL, fails once where PostgreSQL alone
    # would prepare the client's statement again (and takes the UPDATE before it along).
    assert results in ([("COMMAND_OK", None), ("TUPLES_OK", None), ("PIPELINE_SYNC", None)],
                       [("COMMAND_OK", None), ("FATAL_ERROR", b"0A000"), ("PIPELINE_SYNC", None)])
    assert primary.sql("SELECT n FROM hot") == ("11" if results[1][0] == "TUPLES_OK" else "10")
    assert proxy.metric_sum("switchyard_mirror_failures_total") == 0, proxy.log()
    assert_identical(primary, secondary, {"events": "id", "hot": "id"})


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_a_temporary_table_named_as_a_table_is_its_sessions_own(pair, start_proxy, tmp_path, write_mode):
    """A temporary table comes first in its session's search path. That session's prepared
    write to the name is prepared again (its row image is the temporary table's now), and
    the shape switchyard reads of the temporary table (keyed by `note`) stays the session's:
    another session's writes to the permanent table keep that table's key (`id`)."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE shadowed (id int PRIMARY KEY, note text)")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    insert = "INSERT INTO shadowed (id, note) VALUES (%s, %s)"
    with psycopg.connect(proxy.dsn(), autocommit=True) as own, \
            psycopg.connect(proxy.dsn(), autocommit=True) as other:
        own.execute(insert, (1, "a1"), prepare=True)
        own.execute("CREATE TEMP TABLE shadowed (note text PRIMARY KEY, id int, extra int DEFAULT 7)")
        own.execute(insert, (2, "a2"), prepare=True)  # the same prepared statement
        own.execute("UPDATE shadowed SET id = 3 WHERE note = 'a2'")
        other.execute(insert, (2, "b2"))
        other.execute("UPDATE shadowed SET note = 'b2x' WHERE id = 2")
        own.execute("INSERT INTO public.shadowed SELECT id + 10, note FROM shadowed")
        assert own.execute("SELECT id, note, extra FROM shadowed").fetchall() == [(3, "a2", 7)]
        # Dropping the temporary table uncovers the permanent one: the prepared statement is
        # prepared again for it, and DDL on the name is the permanent table's again.
        own.execute("DROP TABLE shadowed")
        own.execute(insert, (4, "a4"), prepare=True)
        own.pgconn.exec_(b"ALTER TABLE shadowed ADD COLUMN later int DEFAULT 5")
        other.execute(insert, (5, "b5"))
        other.execute("UPDATE shadowed SET later = 6 WHERE id = 5")
    if write_mode == "async":
        assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert primary.sql("SELECT string_agg(id || note || later, ',' ORDER BY id) FROM shadowed") == \
        "1a15,2b2x5,4a45,5b56,13a25"
    assert proxy.metric_sum("switchyard_mirror_failures_total") == 0, proxy.log()
    assert_identical(primary, secondary, {"shadowed": "id"})


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_temporary_tables_the_secondary_lost_leave_the_tables_they_hid_alone(pair, start_proxy, tmp_path,
                                                                           write_mode):
    """A session's temporary table lives on its own secondary connection. When that
    connection is lost (here the secondary restarts) the table is gone there: what the
    session then does to it by name must not reach the permanent table of the same name
    (an index, a write, a DROP), on the session's new connection or by the journal's replay
    on another one. Its rows copied into a permanent table still are."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE shadowed (id int PRIMARY KEY, note text); "
                    "INSERT INTO shadowed VALUES (1, 'kept')")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    with psycopg.connect(proxy.dsn(), autocommit=True) as own:
        own.execute("CREATE TEMP TABLE shadowed (id int PRIMARY KEY, note text)")
        own.execute("CREATE TEMP TABLE scratch (id int PRIMARY KEY)")
        own.execute("INSERT INTO shadowed VALUES (2, 'temp')")
        if write_mode == "async":
            assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
        secondary.stop()
        own.execute("INSERT INTO shadowed VALUES (3, 'temp while down')")
        own.execute("INSERT INTO scratch VALUES (1)")  # journaled: replayed nowhere, not failed
        own.execute("CREATE INDEX shadowed_note ON shadowed (note)")
        secondary.launch()
        assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
        time.sleep(2.5)  # past the back-off after the failure: the next writes reach the secondary
        own.execute("INSERT INTO shadowed VALUES (5, 'temp again')")
        own.execute("UPDATE shadowed SET note = note || '!' WHERE id = 2")
        own.execute("INSERT INTO public.shadowed SELECT id + 10, note FROM shadowed")
        own.execute("TRUNCATE shadowed")
        own.execute("DROP TABLE shadowed")
        own.execute("INSERT INTO shadowed VALUES (4, 'permanent')")
    if write_mode == "async":
        assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert primary.sql("SELECT string_agg(id || note, ',' ORDER BY id) FROM shadowed") == \
        "1kept,4permanent,12temp!,13temp while down,15temp again"
    assert_identical(primary, secondary, {"shadowed": "id"})
    for cluster in pair:
        assert cluster.sql("SELECT count(*) FROM pg_indexes WHERE tablename = 'shadowed'") == "1"
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
    assert proxy.metric("switchyard_mirror_failures_total", reason="temporary_lost") > 0, proxy.log()


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_an_index_of_a_temporary_table_the_secondary_lost_is_not_dropped_by_name_there(pair, start_proxy,
                                                                                      tmp_path, write_mode):
    """An index of a temporary table, named as PostgreSQL names it (`<table>_<column>_idx`),
    can share its name with an index of the permanent table the temporary one hides. Once
    the secondary connection that held the temporary table is lost (here the secondary
    restarts), the session's `DROP INDEX` of that name must not run on its new connection,
    where the name finds the permanent table's index."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE shadowed (id int PRIMARY KEY, note text); CREATE INDEX ON shadowed (note)")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    with psycopg.connect(proxy.dsn(), autocommit=True) as own:
        own.execute("CREATE TEMP TABLE shadowed (id int PRIMARY KEY, note text)")
        own.execute("CREATE INDEX ON shadowed (note)")
        if write_mode == "async":
            assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
        secondary.stop()
        secondary.launch()
        own.execute("DROP INDEX shadowed_note_idx")
        own.execute("INSERT INTO public.shadowed VALUES (1, 'permanent')")
    if write_mode == "async":
        assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert [cluster.sql("SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes "
                        "WHERE schemaname = 'public' AND tablename = 'shadowed'") for cluster in pair] == \
        ["shadowed_note_idx,shadowed_pkey"] * 2
    assert_identical(primary, secondary, {"shadowed": "id"})
    assert proxy.metric("switchyard_mirror_failures_total", reason="temporary_lost") == 1, proxy.log()


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_ddl_among_other_statements_acts_on_the_temporary_table_it_names_on_both(pair, start_proxy,
                                                                                tmp_path, write_mode):
    """DDL among other statements of one Query is not asked about (the primary cannot be asked
    between them), so a bare name that finds a session's temporary table on the primary ran
    on the secondary as it came. Where the secondary's connection lost that table (here the
    secondary restarts), the name found the permanent table the temporary one hides: a
    `DROP TABLE` dropped the secondary's permanent table, an `ALTER TABLE` changed it. Such
    DDL is now the session's own, as when the primary says so; and a DROP of such a name,
    applied, ends its count as a temporary table's (a COPY into the permanent table of that
    name, later, was set aside as the lost temporary table's)."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE shadowed (id int PRIMARY KEY, note text); INSERT INTO shadowed VALUES (1, 'kept');"
                    "CREATE TABLE widened (id int PRIMARY KEY); CREATE TABLE stage (id int PRIMARY KEY, note text)")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")

    def settled():
        if write_mode == "async":
            assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
        assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()

    with psycopg.connect(proxy.dsn(), autocommit=True) as own:
        for table in ("shadowed", "widened", "stage"):
            own.execute(f"CREATE TEMP TABLE {table} (LIKE public.{table})")
        own.execute("DROP TABLE stage; SELECT 1")  # on both connections, which hold it
        settled()
        secondary.stop()
        secondary.launch()
        own.execute("DROP TABLE shadowed; ALTER TABLE widened ADD COLUMN extra int;"
                    "INSERT INTO shadowed VALUES (2, 'after')")
        with own.cursor().copy("COPY stage FROM STDIN") as copy:
            copy.write_row((1, "staged"))
        settled()
    assert primary.sql("SELECT string_agg(id || note, ',' ORDER BY id) FROM shadowed") == "1kept,2after"
    assert primary.sql("SELECT note FROM stage") == "staged"
    assert_identical(primary, secondary, {"shadowed": "id", "stage": "id", "widened": "id"})
    assert [cluster.sql("SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM "
                        "information_schema.columns WHERE table_schema = 'public' AND table_name = 'widened'")
            for cluster in pair] == ["id"] * 2


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_statements_on_temporary_tables_the_secondary_missed_stay_the_sessions_own(pair, start_proxy,
                                                                                  tmp_path, write_mode):
    """A statement (not a row image: a COPY) into a session's temporary table named without
    a schema that the secondary missed was journaled, where the replayer can only report it
    ("cannot be replayed ... verify and repair the table") though no permanent table lacks
    anything; it is the session's own now, as DDL on its temporary tables is. A staging table
    dropped at commit (ON COMMIT DROP) no longer leaves its name counted as a lost temporary
    table: the session's writes to a permanent table created with that name later were set
    aside for the journal instead of applied, a COPY among them for good."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE stage (id int PRIMARY KEY, note text); INSERT INTO stage VALUES (1, 'kept')")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")

    def copy_rows(conn, table, rows):
        with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def settled():
        if write_mode == "async":
            assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
        assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()

    with psycopg.connect(proxy.dsn(), autocommit=True) as own:
        own.execute("CREATE TEMP TABLE stage (id int PRIMARY KEY, note text)")
        settled()
        secondary.stop()
        copy_rows(own, "stage", [(2, "temp")])
        with own.transaction():
            own.execute("CREATE TEMP TABLE batch (id int PRIMARY KEY, note text) ON COMMIT DROP")
            copy_rows(own, "batch", [(3, "batch")])
            own.execute("INSERT INTO public.stage SELECT id, note FROM batch")
        secondary.launch()
        settled()
        time.sleep(2.5)  # past the back-off after the failure: the next writes reach the secondary
        own.execute("CREATE TABLE batch (id int PRIMARY KEY, note text)")  # a permanent one
        copy_rows(own, "batch", [(4, "permanent")])
        own.execute("INSERT INTO batch VALUES (5, 'permanent')")
        settled()
    assert primary.sql("SELECT string_agg(id || note, ',' ORDER BY id) FROM stage") == "1kept,3batch"
    assert primary.sql("SELECT string_agg(id || note, ',' ORDER BY id) FROM batch") == "4permanent,5permanent"
    assert_identical(primary, secondary, {"stage": "id", "batch": "id"})
    for result in ("failed", "unreplayable"):
        assert proxy.metric("switchyard_journal_replayed_total", result=result) == 0, proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="applied") == 1, proxy.log()


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_a_copy_the_secondary_missed_is_replayed_from_the_primarys_rows(pair, start_proxy, tmp_path,
                                                                       write_mode):
    """COPY FROM STDIN carries no row images. A COPY the secondary missed (down, or larger
    than mirror.max_transaction_bytes, which reaches the primary alone) was journaled as its
    statement, which the replayer cannot run again: "verify and repair the table". It is
    journaled as the rows it wrote now (see the next test), and one too large to keep as its
    table to refresh: the primary's rows written over the secondary's by key, none deleted,
    as after an ADD COLUMN with a volatile default."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE loads (id int PRIMARY KEY, note text); INSERT INTO loads VALUES (1, 'before')")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, extra="  max_transaction_bytes: 100000\n")
                        + f"write_mode: {write_mode}\n")

    def copy_rows(conn, rows):
        with conn.cursor().copy("COPY loads FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        secondary.stop()
        copy_rows(conn, [(i, "while down") for i in range(2, 50)])
        secondary.launch()
        assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
        time.sleep(2.5)  # past the back-off after the failure: the next writes reach the secondary
        copy_rows(conn, [(i, "x" * 40) for i in range(1000, 4000)])  # ~150 kB: the primary's alone
        conn.execute("UPDATE loads SET note = 'after' WHERE id = 2")
    if write_mode == "async":
        assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert primary.sql("SELECT count(*) FROM loads") == str(1 + 48 + 3000)
    assert_identical(primary, secondary, {"loads": "id"})
    assert proxy.metric("switchyard_journal_replayed_total", result="unreplayable") == 0, proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
    assert proxy.metric("switchyard_mirror_failures_total", reason="not_mirrorable") == 1, proxy.log()


@pytest.mark.parametrize("data_format", ["text", "csv", "binary"])
def test_a_copy_the_secondary_missed_replays_the_rows_it_wrote_by_key(pair, start_proxy, tmp_path, data_format):
    """A COPY the secondary missed is journaled as the rows it wrote, by their keys taken from
    its data (escapes and quotes undone; an id switchyard filled from the primary's default
    too), which the replayer re-reads from the primary, rather than as its table, which the
    replayer refreshed whole: every row of it written again on the secondary however few the
    COPY had. The secondary's other rows stay as they were (same xmin)."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE batches (region text, n int, note text, PRIMARY KEY (region, n));"
                    "INSERT INTO batches VALUES ('old', 1, 'kept');"
                    "CREATE TABLE arrivals (id serial PRIMARY KEY, note text); INSERT INTO arrivals (note) VALUES ('kept')")
    untouched = "SELECT (SELECT xmin FROM batches WHERE region = 'old') || ':' || (SELECT xmin FROM arrivals WHERE id = 1)"
    before = secondary.sql(untouched)
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    batches = [("north\teast", 2, "x"), ('a,"b', 3, "y"), ("back\\slash", 4, "z")]
    options = {"text": "", "csv": " (FORMAT csv)", "binary": " (FORMAT binary)"}[data_format]
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        secondary.stop()
        with conn.cursor().copy(f"COPY batches FROM STDIN{options}") as copy:
            if data_format == "csv":
                copy.write('"north\teast",2,x\n"a,""b",3,y\nback\\slash,4,z\n')
            else:
                if data_format == "binary":
                    copy.set_types(["text", "int4", "text"])
                for row in batches:
                    copy.write_row(row)
        with conn.cursor().copy(f"COPY arrivals (note) FROM STDIN{options}") as copy:
            if data_format == "csv":
                copy.write("one\ntwo\n")
            else:
                if data_format == "binary":
                    copy.set_types(["text"])
                for note in ("one", "two"):
                    copy.write_row((note,))
        secondary.launch()
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert primary.sql("SELECT string_agg(region || n, '|' ORDER BY n) FROM batches") == \
        "old1|north\teast2|a,\"b3|back\\slash4"
    assert_identical(primary, secondary, {"batches": "region, n", "arrivals": "id"})
    assert secondary.sql(untouched) == before
    assert proxy.metric("switchyard_journal_replayed_total", result="applied") == 5, proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()


def test_ddl_that_fails_on_the_primary_holds_up_no_later_commit(pair, start_proxy, tmp_path):
    """Async mode: DDL takes its place in the commit order as it is sent. When the primary
    refuses it (here a lock_timeout while it waits for a lock), that place is given up: later
    commits apply, and the queue's gauge, set while an earlier commit was applied, drops to 0."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, "  timeout: 30s\n")
                        + "write_mode: async\n")
    outcome = {}
    with psycopg.connect(proxy.dsn(), autocommit=True) as writer, \
            psycopg.connect(primary.uri(), autocommit=True) as holder:
        secondary.signal(signal.SIGSTOP)
        try:
            writer.execute("INSERT INTO balances (account) VALUES (1)")  # applies once resumed
            holder.execute("BEGIN")
            holder.execute("LOCK TABLE events IN ACCESS SHARE MODE")

            def migrate():
                with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
                    conn.execute("SET lock_timeout = '3s'")
                    try:
                        conn.execute("ALTER TABLE events ADD COLUMN region text")
                    except psycopg.errors.LockNotAvailable as e:
                        outcome["error"] = e

            migration = threading.Thread(target=migrate)
            migration.start()
            assert wait_for(lambda: primary.sql("SELECT count(*) FROM pg_stat_activity WHERE "
                                                "wait_event_type = 'Lock' AND datname = 'postgres'") == "1",
                            timeout=10)
        finally:
            secondary.signal(signal.SIGCONT)
        assert wait_for(lambda: secondary.sql("SELECT count(*) FROM balances") == "1", timeout=30)
        migration.join(timeout=30)
        holder.execute("COMMIT")
        assert "error" in outcome
        assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
        writer.execute("INSERT INTO events (account) VALUES (2)")
    assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert proxy.metric_sum("switchyard_mirror_failures_total") == 0, proxy.log()
    assert_identical(primary, secondary, {"balances": "account", "events": "id"})


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_a_transaction_that_holds_back_ddl_reaches_the_secondary_before_it(pair, start_proxy, tmp_path,
                                                                           write_mode):
    """A transaction that wrote to a table before an ALTER TABLE ... DROP COLUMN was sent holds
    the DDL back on the primary until it commits, though it commits after the DDL was sent: its
    rows, which have the column, go to the secondary before the DDL does."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("ALTER TABLE events ADD COLUMN note text")
    with psycopg.connect(proxy.dsn()) as writer:
        writer.execute("INSERT INTO events (account, note) VALUES (1, 'before the drop')")

        def migrate():
            with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
                conn.execute("ALTER TABLE events DROP COLUMN note")

        migration = threading.Thread(target=migrate)
        migration.start()
        assert wait_for(lambda: primary.sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                                            "'Lock' AND datname = 'postgres'") == "1", timeout=10)
        writer.commit()
        migration.join(timeout=30)
        writer.execute("INSERT INTO events (account) VALUES (2)")
        writer.commit()
    if write_mode == "async":
        assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert primary.sql("SELECT string_agg(account::text, ',' ORDER BY id) FROM events") == "1,2"
    assert proxy.metric_sum("switchyard_mirror_failures_total") == 0, proxy.log()
    assert_identical(primary, secondary, {"events": "id"})


def test_writes_prepared_by_sql_run_on_after_a_column_is_added_to_their_table(pair, start_proxy, tmp_path):
    """A write prepared by SQL PREPARE is prepared on the primary with its row image (`t.*`)
    appended too, so after ALTER TABLE ... ADD COLUMN every EXECUTE of it failed ("cached plan
    must not change result type", 0A000) where PostgreSQL alone runs it on. The name is
    prepared again before the EXECUTE; a text that no longer prepares fails as the EXECUTE
    would and keeps its name."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO balances (account) VALUES (1)")
        conn.execute("PREPARE ins (int) AS INSERT INTO events (account) VALUES ($1)")
        conn.execute('PREPARE "Bump" AS UPDATE balances SET total = total + random() WHERE account = $1 '
                     "RETURNING account")
        conn.execute("EXECUTE ins(1)")
        conn.execute("ALTER TABLE events ADD COLUMN region text DEFAULT 'eu'")
        conn.execute("EXECUTE ins(2)")
        assert conn.cursor(binary=True).execute("EXECUTE ins(3)").rowcount == 1  # extended protocol
        conn.execute("ALTER TABLE balances ADD COLUMN note text")
        with conn.transaction():
            assert conn.execute('EXECUTE "Bump"(1)').fetchall() == [(1,)]
            conn.execute("EXECUTE ins(4)")
        conn.execute("PREPARE tagged AS INSERT INTO events (account, region) VALUES ($1, 'us')")
        conn.execute("ALTER TABLE events DROP COLUMN region")
        with pytest.raises(psycopg.errors.UndefinedColumn):
            conn.execute("EXECUTE tagged(5)")
        with pytest.raises(psycopg.errors.UndefinedColumn):
            conn.cursor(binary=True).execute("EXECUTE tagged(5)")
        with pytest.raises(psycopg.errors.UndefinedColumn):
            with conn.transaction():
                conn.execute("EXECUTE tagged(5)")
        assert conn.execute("SELECT name FROM pg_prepared_statements ORDER BY name").fetchall() == [
            ("Bump",), ("ins",), ("tagged",)]
        conn.execute("ALTER TABLE events ADD COLUMN region text")
        conn.execute("EXECUTE tagged(6)")
        conn.execute("EXECUTE ins(6)")
        # DDL that bypassed switchyard shows in the refusal; the name is prepared again for its
        # next run.
        for cluster in pair:
            cluster.sql("ALTER TABLE events ADD COLUMN tier int DEFAULT 1")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute("EXECUTE ins(9)")
        conn.execute("EXECUTE ins(9)")
        for cluster in pair:
            cluster.sql("ALTER TABLE events DROP COLUMN tier")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.cursor(binary=True).execute("EXECUTE ins(10)")
        conn.cursor(binary=True).execute("EXECUTE ins(10)")
    # DDL and EXECUTE in one Query.
    out = subprocess.run(["psql", "-X", "-At", proxy.dsn(), "-c",
                          "PREPARE ins (int) AS INSERT INTO events (account) VALUES ($1); EXECUTE ins(7); "
                          "ALTER TABLE events ADD COLUMN late int; EXECUTE ins(8)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["PREPARE", "INSERT 0 1", "ALTER TABLE", "INSERT 0 1"]
    assert primary.sql("SELECT string_agg(account::text, ',' ORDER BY id) FROM events") == "1,2,3,4,6,6,9,10,7,8"
    assert_identical(primary, secondary, {"events": "id", "balances": "account"})
    assert proxy.metric("switchyard_journal_entries_total") == 0


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_the_rows_of_one_statement_meet_the_secondarys_constraints_together(pair, start_proxy, tmp_path, write_mode):
    """PostgreSQL checks a statement's foreign keys, and its DEFERRABLE unique constraints,
    once the statement is done. switchyard wrote a statement's row images a statement each, so
    the secondary checked them after every row: a child inserted before its parent by one
    INSERT, a parent and its child deleted by one DELETE, and a list's positions moved up by
    one (UNIQUE (list, pos) DEFERRABLE, the usual way to allow that) failed there, were
    journaled, failed to replay the same way, and the tables stayed different."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE tree (id int PRIMARY KEY, parent int REFERENCES tree);"
                    "CREATE TABLE items (id int PRIMARY KEY, list int, pos int,"
                    "                    CONSTRAINT items_pos UNIQUE (list, pos) DEFERRABLE);"
                    "CREATE TABLE wide (id int PRIMARY KEY, v int)")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO tree VALUES (2, 1), (1, NULL), (3, NULL), (4, 3)")
        assert conn.execute("DELETE FROM tree WHERE id IN (3, 4)").rowcount == 2
        conn.execute("INSERT INTO items SELECT g, 1, g FROM generate_series(1, 5) g")
        conn.execute("UPDATE items SET pos = pos + 1 WHERE list = 1 AND pos >= 2")
        conn.execute("INSERT INTO items VALUES (6, 1, 2)")
        # More rows than one statement for the secondary takes parameters for.
        conn.execute("INSERT INTO wide SELECT g, g FROM generate_series(1, 20000) g")
        conn.execute("UPDATE wide SET v = v + 1 WHERE id > 10")
        assert conn.execute("DELETE FROM wide WHERE id % 2 = 0").rowcount == 10000
    tables = {"tree": "id", "items": "id", "wide": "id"}
    wait_for(lambda: all(primary.checksum(t, o) == secondary.checksum(t, o) for t, o in tables.items()))
    assert_identical(primary, secondary, tables)
    assert proxy.metric("switchyard_journal_entries_total") == 0


def test_tables_and_columns_named_by_keywords_are_mirrored(pair, start_proxy, tmp_path):
    """A table named "order" took the client's INSERT through switchyard to a syntax error: the
    row image's `order.*` went to the primary unquoted, as did a column "user" or "time" in
    the secondary's upsert."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql('CREATE TABLE "order" (id serial PRIMARY KEY, "user" text, "time" timestamptz DEFAULT now(),'
                    ' "left" float8 DEFAULT random(), name text)')
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute('INSERT INTO "order" ("user", name) VALUES (%s, %s), (%s, %s)', ("a", "x", "b", "y"))
        conn.execute('UPDATE "order" SET "user" = "user" || %s, "left" = random() WHERE id = 1', ("!",))
        conn.execute('INSERT INTO public."order" AS o ("user") VALUES (%s) RETURNING o."time"', ("c",))
        conn.execute('DELETE FROM "order" WHERE id = 2')
    assert primary.sql('SELECT string_agg("user", \',\' ORDER BY id) FROM "order"') == "a!,c"
    assert_identical(primary, secondary, {'"order"': "id"})
    assert proxy.metric("switchyard_journal_entries_total") == 0


PARENT_AND_CHILD = ("CREATE TABLE parent (id int PRIMARY KEY, v float8, note text);"
                    "CREATE TABLE child (extra int DEFAULT 7, PRIMARY KEY (id)) INHERITS (parent)")


def test_an_update_of_a_parent_by_inheritance_writes_its_childrens_rows_where_they_are(
        pair, start_proxy, tmp_path):
    """An UPDATE of a table others inherit from (INHERITS, as partitioning was done before
    PostgreSQL 10) returns their rows too. switchyard upserted those into the parent on the
    secondary: the child's row stayed as it was there, and the parent got a copy of it."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql(PARENT_AND_CHILD)
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO parent VALUES (1, 0), (3, 0)")
        conn.execute("INSERT INTO child (id, v) VALUES (2, 0), (4, 0)")
        assert conn.execute("UPDATE parent SET v = v + random(), note = 'x'").rowcount == 4
        conn.execute("UPDATE parent SET id = id + 10, v = random() WHERE id IN (3, 4)")  # keys change
        conn.execute("UPDATE child SET extra = 8 WHERE id = 2")
        conn.execute("DELETE FROM parent WHERE id IN (1, 2)")
    assert primary.sql("SELECT string_agg(id::text, ',' ORDER BY id) FROM parent") == "13,14"
    assert_identical(primary, secondary, {"ONLY parent": "id", "child": "id"})
    assert proxy.metric("switchyard_journal_entries_total") == 0


def test_a_parent_and_child_row_sharing_a_key_are_not_updated_by_one_join(pair, start_proxy, tmp_path):
    """Keys are unique per table only: a parent and its child may both hold id 5. One UPDATE
    joining an image's rows by key would give each of those rows either row's values, with
    the row count right; such an image keeps an UPDATE per row, whose count (2, not 1) sends
    the rows to the journal, and the replayer writes them from the primary."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql(PARENT_AND_CHILD)
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO parent VALUES (5, 1, 'in the parent')")
        conn.execute("INSERT INTO child (id, v, note) VALUES (5, 2, 'in the child')")
        assert conn.execute("UPDATE parent SET v = v * 10 WHERE id = 5").rowcount == 2
    assert proxy.metric("switchyard_mirror_failures_total", reason="row_count") >= 1, proxy.log()
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert primary.sql("SELECT string_agg(v || ' ' || note, ', ' ORDER BY v) FROM parent") == (
        "10 in the parent, 20 in the child")
    assert_identical(primary, secondary, {"ONLY parent": "id", "child": "id"})


def test_writes_through_named_portals_reach_the_secondary(pair, start_proxy, tmp_path):
    """libpq and psycopg bind the unnamed portal; other drivers (and cursors fetched in parts)
    name theirs. A write executed through a named portal is mirrored like any other."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    client = RawClient(proxy.port)
    client.login_trust()
    insert = "INSERT INTO events (account) VALUES ($1) RETURNING account"
    client.send(message(b"P", cstr("ins") + cstr(insert) + struct.pack("!hI", 1, 23)) + message(b"S"))
    assert [tag for tag, _ in client.read_until(b"Z")] == [b"1", b"Z"]
    for account in (7, 8):
        value = str(account).encode()
        client.send(message(b"B", cstr(f"portal{account}") + cstr("ins") + struct.pack("!hh", 0, 1)
                            + struct.pack("!i", len(value)) + value + struct.pack("!h", 0))
                    + message(b"E", cstr(f"portal{account}") + struct.pack("!I", 0)) + message(b"S"))
        answer = client.read_until(b"Z")
        assert [tag for tag, _ in answer] == [b"2", b"D", b"C", b"Z"]
        assert answer[1][1].endswith(value) and answer[2][1] == b"INSERT 0 1\0"
    client.send(message(b"X"))
    for cluster in pair:
        assert cluster.sql("SELECT string_agg(account::text, ',' ORDER BY account) FROM events") == "7,8"
    assert_identical(primary, secondary, {"events": "id"})


def test_writes_run_by_execute_explain_analyze_and_copy_to_reach_the_secondary(pair, start_proxy, tmp_path):
    """EXECUTE of a write prepared with SQL PREPARE carries the primary's values like the write
    itself; EXPLAIN ANALYZE and COPY (query) TO, which run their statement, reach the secondary
    too."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        explain = "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) INSERT INTO balances (account, total) VALUES (90, 1)"
        assert [row[0] for row in conn.execute(explain)] == ["Insert on balances (actual rows=0 loops=1)",
                                                            "  ->  Result (actual rows=1 loops=1)"]
        with conn.cursor().copy("COPY (INSERT INTO balances (account, total) VALUES (91, 2) "
                                "RETURNING account) TO STDOUT") as copy:
            assert list(copy.rows()) == [("91",)]
        # Run in the simple protocol and, asking for binary results, in the extended one
        # (which takes no parameters for EXECUTE: PostgreSQL binds none to utility statements).
        conn.execute("PREPARE ins AS INSERT INTO events (account) VALUES ($1)")
        assert conn.execute("EXECUTE ins(1)").description is None
        cur = conn.cursor(binary=True).execute("EXECUTE ins(2)")
        assert cur.description is None and cur.rowcount == 1
        conn.execute("PREPARE ret (int) AS INSERT INTO events (account) VALUES ($1) RETURNING id, account")
        cur = conn.execute("EXECUTE ret(3)")
        assert [c.name for c in cur.description] == ["id", "account"] and cur.fetchall() == [(3, 3)]
        assert conn.cursor(binary=True).execute("EXECUTE ret(4)").fetchall() == [(4, 4)]
        conn.execute("PREPARE bump (int) AS UPDATE balances SET total = total + random(), "
                     "updated = clock_timestamp() WHERE account = $1")
        assert conn.execute("EXECUTE bump(90)").rowcount == 1
        # A PREPARE that fails leaves the statement of that name as it was.
        with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
            conn.execute("PREPARE ins AS SELECT 1")
        conn.execute("EXECUTE ins(5)")
        # The name stands for a read once the write is deallocated.
        conn.execute("DEALLOCATE ins")
        conn.execute("PREPARE ins AS SELECT $1::int AS n")
        assert conn.execute("EXECUTE ins(6)").fetchall() == [(6,)]
        # In a pipeline the EXECUTE reaches the proxy before the primary answered the PREPARE.
        with conn.pipeline():
            conn.execute("PREPARE pip AS INSERT INTO ledger (account, total) VALUES ($1, random()) "
                         "RETURNING account")
            cur = conn.execute("EXECUTE pip(7)")
        assert [c.name for c in cur.description] == ["account"] and cur.fetchall() == [(7,)]
        with pytest.raises(psycopg.errors.DivisionByZero):
            with conn.transaction():
                conn.execute("EXECUTE pip(8)")
                conn.execute("SELECT 1/0")
        conn.execute("DISCARD ALL")
        conn.execute("PREPARE pip AS SELECT 'read' AS word")
        assert conn.execute("EXECUTE pip").fetchall() == [("read",)]
    # Several statements in one Query: PREPARE, EXECUTE and DEALLOCATE one after the other.
    out = subprocess.run(["psql", "-X", "-At", proxy.dsn(), "-c",
                          "PREPARE d AS DELETE FROM events WHERE id = (SELECT min(id) FROM events) "
                          "RETURNING account; EXECUTE d; DEALLOCATE d; PREPARE d AS INSERT INTO notes "
                          "(body) VALUES ('psql'); EXECUTE d; EXECUTE d"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["PREPARE", "1", "DELETE 1", "DEALLOCATE", "PREPARE", "INSERT 0 1",
                                       "INSERT 0 1"]
    assert primary.sql("SELECT string_agg(account::text, ',' ORDER BY id) FROM events") == "2,3,4,5"
    assert primary.sql("SELECT count(*) FROM ledger WHERE account = 7") == "1"
    assert primary.sql("SELECT count(*) FROM notes WHERE body = 'psql'") == "2"
    assert secondary.sql("SELECT string_agg(account::text, ',' ORDER BY account) FROM balances") == "90,91"
    assert_identical(primary, secondary, {"events": "id", "ledger": "id", "notes": "t::text",
                                          "balances": "account"})
    assert proxy.metric("switchyard_journal_entries_total") == 0


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_statements_the_secondary_runs_itself_draw_ids_after_the_images(pair, start_proxy, tmp_path,
                                                                        write_mode):
    """Row images write the primary's serial and identity ids without drawing them from the
    secondary's sequences; a statement the secondary runs itself (a writing CTE, EXPLAIN
    ANALYZE) then draws ids after those, not ids the images already took."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, f"write_mode: {write_mode}\n"))
    fixed = "0.5, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2026-01-01'"
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        for account in range(5):
            conn.execute("INSERT INTO events (account) VALUES (%s)", (account,))
            conn.execute("INSERT INTO ledger (account, total) VALUES (%s, random())", (account,))
        cur = conn.execute(f"WITH e AS (INSERT INTO events (account, amount, token, created) VALUES (90, {fixed}) "
                           "RETURNING id) INSERT INTO ledger (account, total, noted) "
                           "SELECT 90, id, '2026-01-01' FROM e RETURNING total")
        assert cur.fetchall() == [(6.0,)]
        conn.execute(f"EXPLAIN ANALYZE INSERT INTO events (account, amount, token, created) VALUES (91, {fixed})")
        with conn.transaction():
            conn.execute("INSERT INTO events (account) VALUES (92)")
            conn.execute(f"WITH e AS (INSERT INTO events (account, amount, token, created) VALUES (93, {fixed}) "
                         "RETURNING id) SELECT id FROM e")
    tables = {"events": "id", "ledger": "id"}
    assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert_identical(primary, secondary, tables)
    assert secondary.sql("SELECT string_agg(account::text, ',' ORDER BY id) FROM events WHERE account >= 90") == \
        "90,91,92,93"
    assert proxy.metric("switchyard_journal_entries_total") == 0


def test_a_sequence_a_default_names_without_owning_it_is_advanced_too(pair, start_proxy, tmp_path):
    """A column DEFAULT can draw from a sequence no column owns (shared, or created apart):
    its images move that sequence past the secondary's too, so a statement the secondary runs
    itself draws after them."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE SEQUENCE invoice_no;"
                    "CREATE TABLE invoices (no bigint PRIMARY KEY DEFAULT nextval('invoice_no'), note text)")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        for n in range(3):
            conn.execute("INSERT INTO invoices (note) VALUES (%s)", (f"image {n}",))
        cur = conn.execute("WITH i AS (INSERT INTO invoices (note) VALUES ('run by each side') RETURNING no)"
                           " SELECT no FROM i")
        assert cur.fetchall() == [(4,)]
        with conn.cursor().copy("COPY invoices (note) FROM STDIN") as copy:  # ids filled in: 5, 6
            for n in range(2):
                copy.write_row((f"copied {n}",))
        assert conn.execute("WITH i AS (INSERT INTO invoices (note) VALUES ('after the copy') RETURNING no)"
                            " SELECT no FROM i").fetchall() == [(7,)]
    assert_identical(primary, secondary, {"invoices": "no"})
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()


def test_ids_the_client_gave_itself_do_not_move_the_secondarys_sequence(pair, start_proxy, tmp_path):
    """An INSERT that gives a serial or identity column a value of its own draws nothing from
    the primary's sequence, so the secondary's must not move past it either: a statement the
    secondary runs itself then draws the ids the primary drew, not ids after the client's."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO events (id, account) VALUES (1000, 1)")
        conn.execute("INSERT INTO events VALUES (2000, 2, 0.5, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', now())")
        conn.execute("INSERT INTO events (id, account) SELECT 3000 + g, g FROM generate_series(1, 2) g")
        conn.execute("INSERT INTO events (account) VALUES (3)")  # draws 1
        conn.execute("INSERT INTO events VALUES (DEFAULT, 4)")  # draws 2
        conn.execute("INSERT INTO ledger (id, account) OVERRIDING SYSTEM VALUE VALUES (500, 5)")
        conn.execute("INSERT INTO ledger (account) VALUES (6)")  # draws 1
        assert conn.execute(FIXED_EVENT_CTE, (7,)).fetchall() == [(3,)]
        assert conn.execute("WITH l AS (INSERT INTO ledger (account, noted) VALUES (8, '2026-01-01')"
                            " RETURNING id) SELECT id FROM l").fetchall() == [(2,)]
    assert_identical(primary, secondary, {"events": "id", "ledger": "id"})
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()


def test_ids_some_rows_of_an_insert_left_to_the_sequence_move_the_secondarys_as_far(pair, start_proxy,
                                                                                  tmp_path):
    """Rows of one VALUES list may give an id of their own where others leave it DEFAULT:
    the primary's sequence moved for the latter only, and the secondary's must end where
    it did — neither behind (its own draws would repeat ids) nor at a client's id."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO events (id, account) VALUES (DEFAULT, 1), (5000, 2), (DEFAULT, 3)")  # 1, 2
        conn.execute("INSERT INTO events VALUES (6000, 4), (DEFAULT, 5)")  # 3
        conn.execute("INSERT INTO events (account, id) VALUES (6, %s), (7, DEFAULT)", (7000,))  # 4
        assert conn.execute(FIXED_EVENT_CTE, (8,)).fetchall() == [(5,)]
        conn.execute("INSERT INTO ledger (id, account) OVERRIDING SYSTEM VALUE VALUES (DEFAULT, 9), (900, 10)")
        assert conn.execute("WITH l AS (INSERT INTO ledger (account, noted) VALUES (11, '2026-01-01')"
                            " RETURNING id) SELECT id FROM l").fetchall() == [(2,)]
    assert_identical(primary, secondary, {"events": "id", "ledger": "id"})
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()


FIXED_EVENT_CTE = ("WITH e AS (INSERT INTO events (account, amount, token, created) VALUES "
                   "(%s, 0.5, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2026-01-01') RETURNING id) "
                   "SELECT id FROM e")


@pytest.mark.parametrize("binary", [False, True])
def test_ids_copy_and_journal_replays_wrote_are_drawn_after_on_the_secondary(pair, start_proxy, tmp_path,
                                                                            binary):
    """The ids switchyard fills into a COPY, and those the journal replayer writes, reach the
    secondary without its sequence giving them, as an INSERT's row image does; a statement
    the secondary runs itself still draws ids after them."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        statement = "COPY events (account) FROM STDIN" + (" WITH (FORMAT binary)" if binary else "")
        with conn.cursor().copy(statement) as copy:
            if binary:
                copy.set_types(["int4"])
            for account in range(3):
                copy.write_row((account,))
        assert conn.execute(FIXED_EVENT_CTE, (90,)).fetchall() == [(4,)]
        secondary.stop()
        for account in range(3):  # journaled; the replayer writes them with the primary's ids
            conn.execute("INSERT INTO events (account) VALUES (%s)", (account,))
        secondary.launch()
        assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=30), proxy.log()
        assert conn.execute(FIXED_EVENT_CTE, (91,)).fetchall() == [(8,)]
    assert_identical(primary, secondary, {"events": "id"})
    assert proxy.metric("switchyard_journal_replayed_total", result="applied") == 3


def test_a_sequence_advance_the_secondary_skipped_is_sent_again(pair, start_proxy, tmp_path):
    """A batch that fails on the secondary before its sequence advance ran leaves the
    sequence behind: the next statement the secondary runs itself advances it again."""
    primary, secondary = pair
    secondary.sql("ALTER TABLE balances ADD CHECK (total < 1000)")  # refused there only
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        with conn.transaction():
            conn.execute("INSERT INTO events (account) VALUES (1)")
            conn.execute("INSERT INTO balances (account, total) VALUES (1, 5000)")
            # Run by the secondary itself: the events sequence is advanced just before it.
            conn.execute("WITH n AS (INSERT INTO notes (body) VALUES ('x') RETURNING body) SELECT body FROM n")
        assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=30), proxy.log()
        assert conn.execute(FIXED_EVENT_CTE, (91,)).fetchall() == [(2,)]
    # The balance breaks the secondary's check; the table the writing CTE wrote (keyless) is
    # copied from the primary whole.
    assert_identical(primary, secondary, {"events": "id", "notes": "t::text"})
    assert proxy.metric("switchyard_journal_replayed_total", result="unreplayable") == 0
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 1


def test_writes_after_the_secondary_restarted_reach_it_at_once(pair, start_proxy, tmp_path):
    """The secondary's restart closes the connections switchyard keeps idle there (shared, and
    a session's own); the next write finds that out before sending and connects anew, so it
    is applied, not journaled, and the session's settings come along."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE SCHEMA app; CREATE TABLE app.notes (body text, written timestamptz)")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as shared, \
            psycopg.connect(proxy.dsn(), autocommit=True) as own:
        own.execute("SET search_path = app, public")
        shared.execute("INSERT INTO balances (account, total) VALUES (1, 1)")
        own.execute("INSERT INTO notes (body) VALUES ('before')")
        secondary.stop()
        secondary.launch()
        shared.execute("INSERT INTO balances (account, total) VALUES (2, 2)")
        own.execute("INSERT INTO notes (body) VALUES ('after')")
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()
    assert_identical(primary, secondary, {"balances": "account", "app.notes": "body"})
    assert secondary.sql("SELECT string_agg(body, ',' ORDER BY body) FROM app.notes") == "after,before"


def test_ddl_settings_and_temp_tables_reach_the_secondary(pair, start_proxy, tmp_path):
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA app")
        conn.execute("SET search_path = app, public")
        conn.execute("CREATE TABLE items (id serial PRIMARY KEY, name text, at timestamptz DEFAULT now())")
        conn.execute("INSERT INTO items (name) VALUES ('one'), ('two')")
        conn.execute("CREATE TEMP TABLE scratch (name text)")
        conn.execute("INSERT INTO scratch VALUES ('three')")
        conn.execute("INSERT INTO items (name) SELECT name FROM scratch")
        conn.execute("CREATE INDEX CONCURRENTLY items_name ON items (name)")
    for cluster in (primary, secondary):
        assert cluster.sql("SELECT string_agg(name, ',' ORDER BY id) FROM app.items") == "one,two,three"
        assert cluster.sql("SELECT count(*) FROM pg_indexes WHERE indexname = 'items_name'") == "1"
    assert_identical(primary, secondary, {"app.items": "id"})


def test_sessions_without_settings_take_turns_on_one_secondary_connection(pair, start_proxy, tmp_path):
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, "workers: 1\n"))
    sessions = [psycopg.connect(proxy.dsn(), autocommit=True) for _ in range(6)]
    try:
        for round_no in range(3):
            for number, conn in enumerate(sessions):
                conn.execute("INSERT INTO balances (account, total) VALUES (%s, %s)",
                             (round_no * 10 + number, number))
        assert primary.client_sessions() == 6
        assert secondary.client_sessions() == 1
    finally:
        for conn in sessions:
            conn.close()
    assert wait_for(lambda: secondary.client_sessions() == 0, timeout=10)
    assert_identical(primary, secondary, {"balances": "account"})


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_a_mirrored_sessions_primary_connection_is_kept_for_the_next_client_with_its_login(
        pair, start_proxy, tmp_path, write_mode):
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")

    def kept(count):  # the reset runs after the client has gone
        return wait_for(lambda: proxy.metric("switchyard_backend_pool_idle") == count)

    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        first = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        # What the session leaves behind on its backend must not reach the next client.
        conn.execute("SET search_path = pg_catalog, public")
        conn.execute("CREATE TEMP TABLE scratch (n int)")
        conn.execute("PREPARE pick AS SELECT 1")
        conn.execute("SELECT pg_advisory_lock(42)")
        conn.execute("INSERT INTO events (account) VALUES (1)")
    assert kept(1)
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == first
        assert conn.execute("SHOW search_path").fetchone()[0] == '"$user", public'
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0] == 0
        assert conn.execute("SELECT to_regclass('pg_temp.scratch')").fetchone()[0] is None
        assert conn.execute("SELECT pg_try_advisory_lock(42)").fetchone()[0]
        conn.execute("INSERT INTO events (account) VALUES (2)")
        conn.execute("UPDATE balances SET total = 0")  # nothing to update: a write all the same
        # A client that leaves inside a transaction does not leave its backend for the next
        # one (close() rolls back, where leaving a `with` block would commit).
        other = psycopg.connect(proxy.dsn(), autocommit=True)
        other_pid = other.execute("SELECT pg_backend_pid()").fetchone()[0]
        other.execute("BEGIN")
        other.execute("INSERT INTO events (account) VALUES (3)")
        other.close()
    assert kept(1)
    assert primary.sql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {other_pid}") == "0"
    # Another login (another application_name) gets a backend of its own.
    with psycopg.connect(proxy.dsn(application_name="another_login"), autocommit=True) as conn:
        assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] not in (first, other_pid)
        conn.execute("INSERT INTO events (account) VALUES (4)")
    assert kept(2)
    # A BEGIN alone (a simple Query) waits in switchyard for the statement it goes ahead of:
    # a client that leaves after it left nothing open on the primary.
    lone_begin = psycopg.connect(proxy.dsn(), autocommit=True)
    assert lone_begin.execute("SELECT pg_backend_pid()").fetchone()[0] == first
    lone_begin.pgconn.exec_(b"BEGIN")
    lone_begin.close()
    assert kept(2)
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == first
    written = "SELECT string_agg(account::text, ',' ORDER BY id) FROM events"
    for cluster in pair:  # async: once the secondary has applied them
        assert wait_for(lambda c=cluster: c.sql(written) == "1,2,4")
    assert_identical(primary, secondary, {"events": "id"})
    assert proxy.metric("switchyard_journal_backlog") == 0


def test_clients_that_left_do_not_count_against_max_clients_while_their_writes_apply(
        pair, start_proxy, tmp_path):
    primary, secondary = pair
    # A mirror.timeout longer than the test: the writes wait for the lock below rather than
    # going to the journal, so the sessions' ends do too however slowly the clients come.
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, "  timeout: 60s\n")
                        + "write_mode: async\nlimits:\n  max_clients: 2\n")
    # The secondary's applier waits on a lock, so each session's end waits for its write.
    holder = psycopg.connect(secondary.uri(), autocommit=True)
    holder.execute("BEGIN")
    holder.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
    try:
        for n in range(5):
            with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
                conn.execute("INSERT INTO events (account) VALUES (%s)", (n,))
        assert proxy.metric("switchyard_mirror_async_queue") > 0
        assert wait_for(lambda: proxy.metric("switchyard_clients_active") == 0)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert wait_for(lambda: async_settled(proxy), timeout=30)
    assert_identical(primary, secondary, {"events": "id"})


def test_clients_connecting_per_transaction_keep_using_the_shared_secondary_connection(
        pair, start_proxy, tmp_path):
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, "workers: 1\n"))
    seen = set()
    # Another session of the login is alive and idle throughout, as a pool's would be: a
    # session shares from its start, not from its first write on.
    with psycopg.connect(proxy.dsn(), autocommit=True):
        for n in range(6):
            with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
                conn.execute("INSERT INTO balances (account, total) VALUES (%s, 1)", (n,))
                seen.update(secondary.sql("SELECT pid FROM pg_stat_activity WHERE backend_type ="
                                          " 'client backend' AND pid <> pg_backend_pid()").split())
    assert len(seen) == 1  # one login on the secondary, not one per client
    assert_identical(primary, secondary, {"balances": "account"})


def test_a_session_with_settings_writes_on_a_secondary_connection_of_its_own(pair, start_proxy, tmp_path):
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE SCHEMA app; CREATE TABLE app.notes (body text, written timestamptz)")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, "workers: 1\n"))
    with psycopg.connect(proxy.dsn(), autocommit=True) as plain, \
            psycopg.connect(proxy.dsn(), autocommit=True) as in_app:
        in_app.execute("SET search_path = app, public")
        for n in range(3):  # were the setting to leak, plain's notes would land in app.notes
            plain.execute("INSERT INTO notes (body) VALUES (%s)", (f"plain {n}",))
            in_app.execute("INSERT INTO notes (body) VALUES (%s)", (f"app {n}",))
        assert secondary.client_sessions() == 2
    for cluster in pair:
        assert cluster.sql("SELECT string_agg(body, ',' ORDER BY body) FROM public.notes") == "plain 0,plain 1,plain 2"
        assert cluster.sql("SELECT string_agg(body, ',' ORDER BY body) FROM app.notes") == "app 0,app 1,app 2"
    assert_identical(primary, secondary, {"notes": "t::text", "app.notes": "t::text"})


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_writes_reach_the_secondary_under_the_settings_they_ran_with(pair, start_proxy, tmp_path,
                                                                     write_mode):
    """A setting changed after a write, in its transaction or after its commit while async mode
    has not applied it yet, must not reach the secondary before that write."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE SCHEMA tenant_a; CREATE SCHEMA tenant_b;"
                    "CREATE TABLE tenant_a.items (id int PRIMARY KEY, note text);"
                    "CREATE TABLE tenant_b.items (id int PRIMARY KEY, note text)")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        with conn.transaction():
            for n, tenant in enumerate(("tenant_a", "tenant_b", "tenant_a")):
                conn.execute(f"SET search_path = {tenant}")
                conn.execute("INSERT INTO items VALUES (%s, 'in a transaction')", (n,))
            conn.execute("UPDATE items SET note = 'updated' WHERE id = 0")
        for n in range(10, 20):  # autocommit: each SET arrives while async mode applies the write
            conn.execute(f"SET search_path = {('tenant_a', 'tenant_b')[n % 2]}")
            conn.execute("INSERT INTO items VALUES (%s, 'autocommit')", (n,))
        conn.execute("PREPARE add_item (int) AS INSERT INTO items VALUES ($1, 'prepared')")
        conn.execute("EXECUTE add_item (30)")
        conn.execute("DEALLOCATE add_item")
    assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    items = "SELECT string_agg(id || ':' || note, ',' ORDER BY id) FROM {}.items"
    for tenant in ("tenant_a", "tenant_b"):
        assert secondary.sql(items.format(tenant)) == primary.sql(items.format(tenant)), tenant
    assert primary.sql(items.format("tenant_a")) == "0:updated,2:in a transaction," + ",".join(
        f"{n}:autocommit" for n in range(10, 20, 2))
    assert primary.sql(items.format("tenant_b")) == "1:in a transaction," + ",".join(
        f"{n}:autocommit" for n in range(11, 20, 2)) + ",30:prepared"
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_a_discard_all_resets_how_a_table_name_resolves_for_the_secondary(pair, start_proxy, tmp_path,
                                                                          write_mode):
    """After DISCARD ALL a session's table names resolve by the login's defaults again. The
    secondary connection still holds the session's earlier search_path when the next write's
    table shape is looked up: that lookup (and the shape other sessions then share) must not
    resolve the name under it."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE SCHEMA tenant_k; CREATE TABLE tenant_k.items (code text PRIMARY KEY, note text);"
                    "CREATE TABLE public.items (id int PRIMARY KEY, note text)")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("SET search_path = tenant_k, public")
        conn.execute("INSERT INTO items VALUES ('k1', 'tenant')")
        assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
        conn.execute("DISCARD ALL")
        conn.execute("INSERT INTO items VALUES (1, 'after the discard')")
    with psycopg.connect(proxy.dsn(), autocommit=True) as other:  # no settings: the shared shape
        other.execute("INSERT INTO items VALUES (2, 'another session')")
        other.execute("UPDATE items SET note = 'updated' WHERE id = 1")
    assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert_identical(primary, secondary, {"public.items": "id", "tenant_k.items": "code"})
    assert primary.sql("SELECT string_agg(id || ':' || note, ',' ORDER BY id) FROM public.items") == \
        "1:updated,2:another session"
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_settings_a_transaction_undid_do_not_reach_the_secondary(pair, start_proxy, tmp_path,
                                                                  write_mode):
    """A SET rolled back with its transaction (or savepoint, or failed implicit transaction), or
    one that lasts only for its transaction (SET LOCAL), no longer holds on the primary: the
    secondary must not run later writes under it, on its connection or on a new one."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE SCHEMA tenant_d; CREATE SCHEMA tenant_e;"
                    "CREATE TABLE tenant_d.items (id int PRIMARY KEY, note text);"
                    "CREATE TABLE tenant_e.items (id int PRIMARY KEY, note text)")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    add = "INSERT INTO items VALUES (%s, %s)"
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("SET search_path = tenant_d")
        conn.execute("BEGIN")
        conn.execute("SET search_path = tenant_e")
        conn.execute("ROLLBACK")
        conn.execute(add, (1, "after a rolled-back SET"))
        conn.execute("BEGIN")
        conn.execute("SET search_path = tenant_e")
        conn.execute(add, (2, "rolled back"))
        conn.execute("ROLLBACK")
        conn.execute(add, (3, "after a rolled-back SET and write"))
        conn.execute("BEGIN")
        conn.execute("SAVEPOINT s")
        conn.execute("SET search_path = tenant_e")
        conn.execute("ROLLBACK TO SAVEPOINT s")
        conn.execute(add, (4, "after a SET rolled back to a savepoint"))
        conn.execute("COMMIT")
        conn.execute("BEGIN")
        conn.execute("SET search_path = tenant_e")
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1/0")
        conn.execute("COMMIT")  # answered ROLLBACK
        conn.execute(add, (5, "after a SET in a failed transaction"))
        with pytest.raises(psycopg.errors.DivisionByZero):
            with conn.pipeline():  # one implicit transaction up to the Sync
                conn.execute("SET search_path = tenant_e")
                conn.execute("SELECT 1/0")
        conn.execute(add, (6, "after a SET in a failed implicit transaction"))
        conn.execute("BEGIN")
        conn.execute("SET LOCAL search_path = tenant_e")
        conn.execute(add, (7, "under SET LOCAL"))
        conn.execute("COMMIT")
        conn.execute(add, (8, "after SET LOCAL"))
        conn.execute("BEGIN")
        conn.execute("SET search_path = tenant_e")
        conn.execute("SET search_path = tenant_d")  # repeats the committed setting
        conn.execute("ROLLBACK")
        assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
        secondary.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
        assert wait_for(lambda: secondary.client_sessions() == 0)
        conn.execute(add, (9, "on a new secondary connection"))
        assert conn.execute("SHOW search_path").fetchone()[0] == "tenant_d"
    assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    items = "SELECT string_agg(id::text, ',' ORDER BY id) FROM {}.items"
    assert primary.sql(items.format("tenant_d")) == "1,3,4,5,6,8,9"
    assert primary.sql(items.format("tenant_e")) == "7"
    for tenant in ("tenant_d", "tenant_e"):
        assert secondary.sql(items.format(tenant)) == primary.sql(items.format(tenant)), tenant
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()
    for cluster in pair:
        cluster.sql("DROP SCHEMA tenant_d, tenant_e CASCADE")


def test_settings_re_sent_before_every_write_survive_a_lagging_secondary(pair, start_proxy, tmp_path):
    """An ORM re-sends its settings before every transaction. While async mode's queue is
    never empty, the copies pile up in the session's log (2,100 here, past its bound of 1,000);
    the first setting must still be there when a new secondary connection replays the log."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE SCHEMA tenant_c; CREATE TABLE tenant_c.items (id int PRIMARY KEY)")
    secondary.sql("CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS"
                  " $$BEGIN PERFORM pg_sleep(0.004); RETURN NEW; END$$;"
                  "CREATE TRIGGER slow BEFORE INSERT ON tenant_c.items FOR EACH ROW EXECUTE FUNCTION slow()")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + "write_mode: async\n")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("SET search_path = tenant_c")
        for n in range(700):
            conn.execute("SET lock_timeout = '1min'")
            conn.execute("SET statement_timeout = '1min'")
            conn.execute("INSERT INTO items VALUES (%s)", (n,))
        assert wait_for(lambda: async_settled(proxy), timeout=60), proxy.log()
        secondary.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
        assert wait_for(lambda: secondary.client_sessions() == 0)
        conn.execute("INSERT INTO items VALUES (700)")  # on a new connection, the log replayed
    assert wait_for(lambda: async_settled(proxy), timeout=60), proxy.log()
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()
    assert secondary.sql("SELECT count(*) FROM tenant_c.items") == "701"
    for cluster in pair:
        cluster.sql("DROP SCHEMA tenant_c CASCADE")
    secondary.sql("DROP FUNCTION slow()")


def test_an_execute_of_a_prepared_read_is_a_read(pair, start_proxy, tmp_path):
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    statements = 'switchyard_mirrored_statements_total{kind="statement"}'
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("PREPARE total (int) AS SELECT count(*) FROM balances WHERE account > $1")
        mirrored_before = proxy.metric(statements)
        assert [conn.execute(f"EXECUTE total ({n})").fetchone()[0] for n in range(3)] == [0, 0, 0]
        # Through the extended protocol: unnamed (binary results) and a named statement.
        assert conn.cursor(binary=True).execute("EXECUTE total (1)").fetchone()[0] == 0
        assert [conn.execute("EXECUTE total (2)", prepare=True).fetchone()[0] for _ in range(2)] == [0, 0]
        assert proxy.metric(statements) == mirrored_before  # nothing ran on the secondary
        # The name prepared again as a write: its EXECUTE is that write, on both sides.
        conn.execute("DEALLOCATE total")
        conn.execute("PREPARE total (int) AS UPDATE balances SET total = total + 1 WHERE account > $1")
        conn.execute("INSERT INTO balances (account) VALUES (1), (2)")
        conn.execute("EXECUTE total (0)")
        conn.execute("PREPARE busy AS SELECT nextval('events_id_seq')")  # a read that writes
        conn.execute("EXECUTE busy")
    assert proxy.metric(statements) == mirrored_before + 1  # EXECUTE busy
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()
    assert_identical(primary, secondary, {"balances": "account"})


def test_a_prepared_statement_that_executes_a_name_follows_the_name_prepared_again(
        pair, start_proxy, tmp_path):
    """psycopg prepares a statement it runs often (or with prepare=True) once and binds it
    again each time; when that statement is `EXECUTE name`, each run is what the name stands
    for then, also after the name was prepared again as a write to another table or a read."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO balances (account, total) VALUES (1, 0), (2, 0)")
        conn.execute("INSERT INTO notes (body) VALUES ('n')")
        conn.execute("PREPARE change AS UPDATE balances SET total = total + 1 WHERE account = 1")
        assert conn.execute("EXECUTE change", prepare=True).statusmessage == "UPDATE 1"
        conn.execute("DEALLOCATE change")
        conn.execute("PREPARE change AS UPDATE notes SET written = '2026-01-01' WHERE body = 'n'")
        assert conn.execute("EXECUTE change", prepare=True).statusmessage == "UPDATE 1"
        conn.execute("DEALLOCATE change")
        conn.execute("PREPARE change AS SELECT 42 AS answer")
        assert conn.execute("EXECUTE change", prepare=True).fetchall() == [(42,)]
        conn.execute("DEALLOCATE change")
        conn.execute("PREPARE change AS UPDATE balances SET total = total + 10 WHERE account = 2 RETURNING total")
        cur = conn.execute("EXECUTE change", prepare=True)
        assert [c.name for c in cur.description] == ["total"] and cur.fetchall() == [(10.0,)]
    assert primary.sql("SELECT string_agg(account || ':' || total, ',' ORDER BY account) FROM balances") == "1:1,2:10"
    assert_identical(primary, secondary, {"balances": "account", "notes": "t::text"})
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()


def test_a_statement_the_secondary_refuses_leaves_no_name_there_it_did_not_prepare(pair, start_proxy, tmp_path):
    """The ParseComplete of a statement the secondary then refused once counted for the
    prepared upsert behind it, which PostgreSQL skipped after the error: switchyard took the
    upsert for prepared, and every later write to that table through the connection failed
    there ("prepared statement ... does not exist") and was journaled."""
    primary, secondary = pair
    secondary.sql("ALTER TABLE notes ADD CONSTRAINT only_on_the_secondary CHECK (body <> 'refused')")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO notes (body) VALUES ('a')")
        with conn.transaction():
            conn.execute("UPDATE notes SET body = 'refused'")  # no key: run as the statement
            conn.execute("INSERT INTO balances (account) VALUES (1)")
        for account in (2, 3):
            conn.execute("INSERT INTO balances (account) VALUES (%s)", (account,))
    # The refused transaction's two writes, and nothing after them.
    assert proxy.metric("switchyard_journal_entries_total") == 2, proxy.log()
    wait_for(lambda: primary.checksum("balances", "account") == secondary.checksum("balances", "account"))
    assert_identical(primary, secondary, {"balances": "account"})


def test_sessions_committing_at_once_share_a_secondary_transaction_but_not_its_refusal(
        pair, start_proxy, tmp_path):
    """Sync mode: commits that arrive while an apply of their login is under way reach the
    secondary together, in one transaction. A row only the secondary refuses fails that
    transaction for all of them: the others are applied again on their own, and only the
    refused transaction is journaled."""
    primary, secondary = pair
    secondary.sql("ALTER TABLE notes ADD CONSTRAINT only_on_the_secondary CHECK (body <> 'refused')")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, "workers: 1\n"))
    failures = []

    def write(session):
        try:
            with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
                for n in range(150):
                    conn.execute("INSERT INTO balances (account, total, updated) "
                                 "VALUES (%s, random(), clock_timestamp())", (session * 1000 + n,))
                    if session == 0 and n % 50 == 25:
                        conn.execute("INSERT INTO notes (body) VALUES ('refused')")
        except psycopg.Error as error:
            failures.append(error)

    writers = [threading.Thread(target=write, args=(session,)) for session in range(8)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert failures == []
    assert proxy.metric("switchyard_mirror_grouped_total") > 0, proxy.log()
    assert proxy.metric("switchyard_mirror_failures_total", reason="secondary_error") == 3
    assert proxy.metric("switchyard_journal_entries_total") == 3
    assert secondary.sql("SELECT count(*) FROM notes") == "0"
    assert_identical(primary, secondary, {"balances": "account"})


def test_commits_on_every_network_thread_wait_for_one_apply_and_go_together(
        pair, start_proxy, tmp_path):
    """With two network threads, the commits of one login that arrive while an apply of that
    login is under way wait for it whichever thread their session runs on, and then go to the
    secondary as one group: one apply at a time, not one per thread."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, "  timeout: 30s\nworkers: 2\n"))
    # Sessions are spread over the threads in the order they connect: 0, 2, 4, 6 on one,
    # 1, 3, 5, 7 on the other.
    sessions = [psycopg.connect(proxy.dsn(), autocommit=True) for _ in range(8)]
    failures = []

    def write(session):
        try:
            sessions[session].execute("INSERT INTO balances (account, total) VALUES (%s, 1)", (session,))
        except psycopg.Error as error:
            failures.append(error)

    def count(cluster, condition):
        return int(cluster.sql(f"SELECT count(*) FROM pg_stat_activity WHERE {condition}"))

    with psycopg.connect(secondary.uri()) as holder:
        holder.execute("LOCK TABLE balances IN EXCLUSIVE MODE")
        writers = [threading.Thread(target=write, args=(0,))]
        writers[0].start()
        assert wait_for(lambda: count(secondary, "wait_event_type = 'Lock'") == 1)
        for session in range(1, 8):
            writers.append(threading.Thread(target=write, args=(session,)))
            writers[-1].start()
        # Every write ran on the primary, whose transactions wait for the secondary.
        assert wait_for(lambda: count(primary, "backend_xid IS NOT NULL") == 8)
        # The other thread's first commit did not start an apply of its own.
        assert count(secondary, "wait_event_type = 'Lock'") == 1
        grouped_before = proxy.metric("switchyard_mirror_grouped_total")
    for writer in writers:
        writer.join()
    for session in sessions:
        session.close()
    assert failures == []
    # Session 0's commit alone, then the seven others together: six joined a group.
    assert proxy.metric("switchyard_mirror_grouped_total") - grouped_before == 6, proxy.log()
    assert proxy.metric("switchyard_journal_entries_total") == 0
    assert_identical(primary, secondary, {"balances": "account"})


def test_a_session_with_a_temp_table_never_applies_other_sessions_writes(pair, start_proxy, tmp_path):
    """A temp table on a session's own secondary connection hides the table of the same name
    from every statement run there: other sessions' writes must not be applied on it."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, "workers: 1\n"))
    failures = []

    def write(session, shadowing):
        try:
            with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
                if shadowing:
                    conn.execute("CREATE TEMP TABLE balances (account int PRIMARY KEY, total float8 "
                                 "NOT NULL DEFAULT 0, updated timestamptz)")
                for n in range(150):
                    if shadowing:
                        conn.execute("INSERT INTO events (account) VALUES (%s)", (n,))
                    else:
                        conn.execute("INSERT INTO balances (account, total) VALUES (%s, random())",
                                     (session * 1000 + n,))
        except psycopg.Error as error:
            failures.append(error)

    writers = [threading.Thread(target=write, args=(session, session < 2)) for session in range(6)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert failures == []
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()
    assert primary.sql("SELECT count(*) FROM balances") == "600"
    assert_identical(primary, secondary, {"balances": "account", "events": "id"})


def test_ddl_can_be_refused(pair, start_proxy, tmp_path):
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, "  ddl: reject\n"))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="mirror.ddl is reject"):
            conn.execute("CREATE TABLE refused (id int)")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute("DROP TABLE notes", prepare=True)
        conn.execute("INSERT INTO notes (body) VALUES ('still works')")
    assert primary.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'refused'") == "0"
    assert_identical(primary, secondary, {"notes": "t::text"})


def async_settled(proxy):
    """Every committed transaction reached the secondary or the journal, and the journal drained."""
    return (proxy.metric("switchyard_mirror_async_queue") == 0
            and proxy.metric("switchyard_journal_backlog") == 0)


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_concurrent_workload_leaves_both_sides_identical(pair, start_proxy, tmp_path, write_mode):
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    seconds = int(os.environ.get("SWITCHYARD_MIRROR_SECONDS", "60"))
    result = run_pgbench(proxy, seconds, 16, tmp_path)
    assert_no_client_errors(result)
    assert int(primary.sql("SELECT count(*) FROM pgbench_history")) > 0
    assert int(primary.sql("SELECT count(*) FROM ledger")) > 0
    assert wait_for(lambda: async_settled(proxy), timeout=60), proxy.log()
    assert_identical(primary, secondary)
    if write_mode == "sync":
        assert proxy.metric("switchyard_journal_entries_total") == 0
    else:
        # Clients no longer wait for the secondary, so on shared cores the primary commits
        # faster than the secondary applies: past mirror.async_queue the rest waits in the
        # journal, and nothing else may have gone there.
        spilled = proxy.metric("switchyard_mirror_failures_total", reason="async_queue_full")
        failed = sum(proxy.metric("switchyard_mirror_failures_total", reason=r)
                     for r in ("connect", "timeout", "secondary_error", "row_count"))
        assert failed == 0, proxy.log()
        assert proxy.metric("switchyard_mirror_async_lag_seconds_count") > spilled
        assert proxy.metric("switchyard_mirror_async_queue") == 0


@pytest.mark.parametrize("write_mode,transport",
                         [("sync", "tcp"), ("async", "tcp"), ("sync", "unix-socket")])
def test_secondary_crash_loses_nothing_and_the_journal_drains(pair, start_proxy, tmp_path, write_mode,
                                                              transport):
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, "  timeout: 1s\n", transport)
                        + f"write_mode: {write_mode}\n")
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(result=run_pgbench(proxy, 15, 16, tmp_path)))
    runner.start()
    time.sleep(4)
    secondary.signal(signal.SIGKILL)
    time.sleep(4)
    secondary.launch()
    runner.join()
    assert_no_client_errors(outcome["result"])
    assert proxy.metric("switchyard_journal_entries_total") > 0
    assert wait_for(lambda: async_settled(proxy), timeout=60), proxy.log()
    assert_identical(primary, secondary)
    assert proxy.metric("switchyard_journal_replayed_total", result="applied") > 0


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_writes_abandoned_at_a_tiny_timeout_under_load_leave_both_sides_identical(
        pair, start_proxy, tmp_path, write_mode):
    """A 15 ms mirror.timeout abandons writes mid-flight again and again under 16 clients;
    some of them commit on the secondary anyway. pgbench_history has no key: before such
    writes were cancelled and their keyless rows reconciled, its rows came out duplicated."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, "  timeout: 15ms\n")
                        + f"write_mode: {write_mode}\n")
    seconds = min(int(os.environ.get("SWITCHYARD_MIRROR_SECONDS", "60")), 20)
    result = subprocess.run(["pgbench", "-n", "-N", "-T", str(seconds), "-c", "16", "-j", "2",
                             "-h", "127.0.0.1", "-p", str(proxy.port), "-U", "postgres", "postgres"],
                            capture_output=True, text=True, env={**os.environ, "PGPASSWORD": PASSWORD})
    assert_no_client_errors(result)
    assert proxy.metric("switchyard_mirror_failures_total", reason="timeout") > 0
    # Async mode journals most of the run's 60,000-90,000 writes here (the secondary keeps
    # timing out, the queue overflows); the replayer takes 100-130 s for them on a release build.
    assert wait_for(lambda: async_settled(proxy), timeout=300), proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0
    assert_identical(primary, secondary)


def test_async_catches_up_with_one_secondary_transaction_for_many_commits(pair, start_proxy, tmp_path):
    """Commits that queued behind a stalled secondary reach it together once it answers: in
    their order (the same row, over and over), with the primary's values, nothing journaled."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, "  timeout: 30s\n")
                        + "write_mode: async\n")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO balances (account) VALUES (500)")
        conn.execute("INSERT INTO events (account) VALUES (500)")
        assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
        secondary.signal(signal.SIGSTOP)
        try:
            for _ in range(40):
                conn.execute("UPDATE balances SET total = total + random(), updated = clock_timestamp()"
                              " WHERE account = 500")
                conn.execute("INSERT INTO events (account) VALUES (500)")
        finally:
            secondary.signal(signal.SIGCONT)
    assert wait_for(lambda: async_settled(proxy), timeout=60), proxy.log()
    assert proxy.metric("switchyard_mirror_async_merged_total") > 0
    assert proxy.metric("switchyard_journal_entries_total") == 0
    assert proxy.metric("switchyard_mirror_async_lag_seconds_count") == 82
    assert_identical(primary, secondary, {"balances": "account", "events": "id"})


def test_async_sessions_order_by_row_with_shapes_another_session_learned(pair, start_proxy, tmp_path):
    """A barrier waits for every earlier commit and holds up every later one. Only the first
    write to a table, before any session has read its primary key, needs one."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + "write_mode: async\n")
    with psycopg.connect(proxy.dsn(), autocommit=True) as first:
        first.execute("INSERT INTO balances (account) VALUES (1)")
        assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert proxy.metric("switchyard_mirror_async_barriers_total") == 1
    for account in (2, 3):
        with psycopg.connect(proxy.dsn(), autocommit=True) as later:
            later.execute("INSERT INTO balances (account) VALUES (%s)", (account,))
            later.execute("UPDATE balances SET total = random() WHERE account = %s", (account,))
    assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert proxy.metric("switchyard_mirror_async_barriers_total") == 1
    assert_identical(primary, secondary, {"balances": "account"})


def test_hung_secondary_costs_at_most_the_mirror_timeout(pair, start_proxy, tmp_path):
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, "  timeout: 500ms\n"))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO notes (body) VALUES ('before')")
        secondary.signal(signal.SIGSTOP)
        try:
            for i in range(3):
                conn.execute("INSERT INTO balances (account) VALUES (%s)", (100 + i,))
        finally:
            secondary.signal(signal.SIGCONT)
    assert proxy.metric("switchyard_mirror_failures_total", reason="timeout") >= 1
    assert primary.sql("SELECT count(*) FROM balances WHERE account >= 100") == "3"
    assert wait_for(lambda: secondary.sql("SELECT count(*) FROM balances WHERE account >= 100") == "3",
                    timeout=30), proxy.log()
    assert_identical(primary, secondary, {"balances": "account"})


@contextlib.contextmanager
def commits_wait_for_a_standby_that_never_answers(cluster):
    """Every commit on `cluster` waits for a synchronous standby that does not exist: it
    gets no answer, and a cancel ends the wait with the transaction committed all the same."""
    cluster.sql("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
    cluster.sql("SELECT pg_reload_conf()")
    try:
        yield
    finally:
        cluster.sql("ALTER SYSTEM RESET synchronous_standby_names")
        cluster.sql("SELECT pg_reload_conf()")


def test_the_journal_drains_after_each_restart_of_the_secondary(pair, start_proxy, tmp_path):
    """The replayer keeps its connections between entries. After the secondary restarted,
    those were dead: every entry failed on them at once and was skipped, none replayed."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    for restart in range(2):
        secondary.stop()
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            for i in range(20):
                conn.execute("INSERT INTO balances (account) VALUES (%s)", (restart * 100 + i,))
        secondary.launch()
        assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="applied") == 40, proxy.log()
    # A flush covers every append written before it began: never more flushes than entries.
    assert 0 < proxy.metric("switchyard_journal_flush_seconds_count") <= 40
    assert_identical(primary, secondary, {"balances": "account"})


def test_writes_journaled_before_switchyard_was_killed_replay_after_its_restart(pair, start_proxy, tmp_path):
    """Every write a client was answered for while the secondary was down is in the journal
    when switchyard dies: the next switchyard on that journal replays them all."""
    primary, secondary = pair
    config = mirror_config(primary, secondary, tmp_path)
    killed = Proxy(config, tmp_path).start()
    try:
        secondary.stop()
        with psycopg.connect(killed.dsn(), autocommit=True) as conn:
            for i in range(50):
                conn.execute("INSERT INTO balances (account) VALUES (%s)", (i,))
            with conn.transaction():
                conn.execute("UPDATE balances SET total = total + 1 WHERE account < 10")
        killed.process.kill()  # SIGKILL: no shutdown of any kind
        killed.process.wait()
    finally:
        killed.stop()
    secondary.launch()
    proxy = start_proxy(config)
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="applied") == 60, proxy.log()
    assert_identical(primary, secondary, {"balances": "account"})


def test_autocommit_ddl_the_secondary_missed_replays_while_its_session_idles(pair, start_proxy, tmp_path):
    """Sync mode mirrors DDL run outside a transaction once the primary has committed it.
    Journaled, it used to wait for the session's next statement before the replayer took it,
    holding up every later entry of every session meanwhile."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as idle, \
            psycopg.connect(proxy.dsn(), autocommit=True) as other:
        secondary.stop()
        idle.execute("ALTER TABLE balances ADD COLUMN region text")
        other.execute("INSERT INTO events (account) VALUES (1)")
        secondary.launch()
        assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=30), proxy.log()
    assert secondary.sql("SELECT count(*) FROM information_schema.columns "
                         "WHERE table_name = 'balances' AND column_name = 'region'") == "1"
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
    assert_identical(primary, secondary, {"balances": "account", "events": "id"})


def test_rows_journaled_after_ddl_that_moved_a_tables_key_replay_by_the_new_key(pair, start_proxy, tmp_path):
    """The replayer keeps a table's shape between groups of rows. Rows journaled after DDL
    that gave the table another key must replay by that key: by the shape read before the DDL
    replayed, their upserts named a key the table no longer has."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE rekeyed (id int PRIMARY KEY, code text NOT NULL, amount int)")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    secondary.stop()
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        for i in range(1, 4):
            conn.execute("INSERT INTO rekeyed VALUES (%s, %s, %s)", (i, f"c{i}", i))
        conn.execute("UPDATE rekeyed SET amount = amount * 10 WHERE id = 2")
        conn.execute("ALTER TABLE rekeyed DROP CONSTRAINT rekeyed_pkey, ADD PRIMARY KEY (code)")
        for i in range(4, 7):
            conn.execute("INSERT INTO rekeyed VALUES (%s, %s, %s)", (i, f"c{i}", i))
        conn.execute("UPDATE rekeyed SET amount = -1, id = 40 WHERE code = 'c4'")
        conn.execute("UPDATE rekeyed SET amount = amount + 1 WHERE code = 'c1'")
    secondary.launch()
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
    assert secondary.sql("SELECT string_agg(attname, ',') FROM pg_index x JOIN pg_attribute a ON "
                         "a.attrelid = x.indrelid AND a.attnum = ANY (x.indkey) "
                         "WHERE x.indrelid = 'rekeyed'::regclass AND x.indisprimary") == "code"
    assert_identical(primary, secondary, {"rekeyed": "code"})
    for cluster in pair:
        cluster.sql("DROP TABLE rekeyed")


def test_rows_journaled_for_a_table_dropped_since_are_left_to_its_drop(pair, start_proxy, tmp_path):
    """Rows the secondary missed replay from the primary's current state. When the primary
    has dropped their table since, there is nothing to replay, and nothing failed: the DROP,
    journaled after them, removes the table from the secondary."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE doomed (id int PRIMARY KEY)")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        secondary.stop()
        conn.execute("INSERT INTO doomed VALUES (1)")
        conn.execute("INSERT INTO balances (account) VALUES (1)")
        conn.execute("DROP TABLE doomed")
        secondary.launch()
        assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=30), proxy.log()
    assert secondary.sql("SELECT to_regclass('doomed') IS NULL") == "t"
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="applied") == 3, proxy.log()
    assert_identical(primary, secondary, {"balances": "account"})


def test_a_keyless_tables_missed_updates_and_deletes_replay_as_a_copy_of_it(pair, start_proxy, tmp_path):
    """A table with no key at all has its UPDATEs and DELETEs mirrored as the statements;
    missed, their rows cannot be found again by a key, and the replayer gave up on them
    ("only inserts replay"): the secondary kept the old rows for good. The table is now
    copied whole from the primary, once for the entries written before the copy began (an
    insert among them is in the copy, not written twice). A view without a key is not
    copied through (it would replace its table's rows with the columns it shows), nor a
    table others inherit from (its copy would gather their rows into it): still reported."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE loose (code int, n int, at timestamptz);"
                    "INSERT INTO loose VALUES (1, 0, '2026-01-01'), (2, 0, '2026-01-01'), (2, 0, '2026-01-01');"
                    "CREATE VIEW renamed AS SELECT code AS c, n FROM loose;"
                    "CREATE TABLE heap (n int); CREATE TABLE heap_part (extra int) INHERITS (heap);"
                    "INSERT INTO heap_part VALUES (1, 1)")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    secondary.stop()
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO loose VALUES (3, 0, clock_timestamp())")
        assert conn.execute("UPDATE loose SET n = n + 1, at = clock_timestamp() WHERE code = 1").rowcount == 1
        assert conn.execute("DELETE FROM loose WHERE code = 2").rowcount == 2
        conn.execute("INSERT INTO loose VALUES (4, 0, clock_timestamp())")
        assert conn.execute("UPDATE renamed SET n = 7 WHERE c = 4").rowcount == 1
        assert conn.execute("UPDATE heap SET n = 2").rowcount == 1
    secondary.launch()
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    # The view's UPDATE and the parent's; the copy of loose, begun after the view's, holds its change.
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 2, proxy.log()
    assert "renamed has no primary key" in proxy.log() and "heap has no primary key" in proxy.log()
    assert secondary.sql("SELECT string_agg(n || ':' || extra, ',') FROM heap_part") == "1:1"
    assert primary.sql("SELECT string_agg(code || ':' || n, ',' ORDER BY code) FROM loose") == "1:1,3:0,4:7"
    assert_identical(primary, secondary, {"loose": "code, n, at"})


def test_a_keyless_row_the_secondary_committed_after_the_timeout_is_not_replayed_twice(
        pair, start_proxy, tmp_path):
    """After a timeout the secondary's outcome is unknown: here its commit waits for a
    synchronous standby that never answers, and stays committed when cancelled. A table
    without a key cannot be upserted, so the replay makes the number of equal rows match the
    primary's instead of inserting again."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, "  timeout: 500ms\n"))
    for cluster in pair:
        cluster.sql("CREATE TABLE tallies (label text, n int)")
    with commits_wait_for_a_standby_that_never_answers(secondary), \
            psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        # Committed on the secondary, unanswered past mirror.timeout: journaled.
        conn.execute("INSERT INTO tallies VALUES ('same', 1)")
        # While the secondary backs off: journaled without being sent. An equal row, so the
        # replay has to count, not look for a row.
        conn.execute("INSERT INTO tallies VALUES ('same', 1)")
        conn.execute("INSERT INTO tallies VALUES ('other', 2)")
        assert proxy.metric("switchyard_mirror_failures_total", reason="timeout") == 1
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=30), proxy.log()
    for cluster in pair:
        counts = "SELECT string_agg(label || ':' || n, ',' ORDER BY label, n) FROM tallies"
        assert cluster.sql(counts) == "other:2,same:1,same:1"
    assert proxy.metric("switchyard_journal_replayed_total", result="applied") == 3


def test_a_replay_stuck_on_the_secondary_lets_go_of_the_primary(pair, start_proxy, tmp_path):
    """Reconciling a keyless row locks the table on the primary, then on the secondary. When
    the secondary's lock does not come, the replay gives up in bounded time, so live writes to
    the table on the primary go on, and it succeeds once the secondary is free."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, "  timeout: 500ms\n"))
    for cluster in pair:
        cluster.sql("CREATE TABLE tallies (label text, n int)")
    with psycopg.connect(secondary.uri()) as blocker:
        blocker.execute("LOCK TABLE tallies IN ACCESS EXCLUSIVE MODE")
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            conn.execute("INSERT INTO tallies VALUES ('journaled', 1)")  # times out: maybe applied
        replaying = "SELECT count(*) FROM pg_locks WHERE relation = 'tallies'::regclass AND granted"
        assert wait_for(lambda: primary.sql(replaying) == "1", timeout=30), proxy.log()
        with psycopg.connect(primary.uri(), autocommit=True) as direct:
            direct.execute("SET statement_timeout = '60s'")  # a lock held for good fails the test
            direct.execute("INSERT INTO tallies VALUES ('live', 2)")
        # The replayer frees the primary's lock by closing its connections, then logs why.
        assert wait_for(lambda: "took longer than" in proxy.log(), timeout=10), proxy.log()
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert primary.sql("SELECT string_agg(label, ',' ORDER BY label) FROM tallies") == "journaled,live"
    assert secondary.sql("SELECT string_agg(label, ',' ORDER BY label) FROM tallies") == "journaled"


def test_ddl_the_secondary_committed_after_the_timeout_replays_as_done(pair, start_proxy, tmp_path):
    """Re-running a CREATE the secondary committed late fails with 'already exists': for an
    entry that may have been applied, that means it was."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, "  timeout: 500ms\n"))
    with commits_wait_for_a_standby_that_never_answers(secondary), \
            psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE late (id int PRIMARY KEY)")
        assert proxy.metric("switchyard_mirror_failures_total", reason="timeout") == 1
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=30), proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="applied") == 1
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0
    assert secondary.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'late'") == "1"


@pytest.mark.parametrize("transport", ["tcp", "unix-socket"])
def test_a_write_abandoned_at_the_timeout_is_cancelled_on_the_secondary(pair, start_proxy, tmp_path,
                                                                        transport):
    """A write still waiting on the secondary when mirror.timeout passes must not commit
    later, after the replayer wrote the row's current state: switchyard cancels it."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, "  timeout: 500ms\n", transport))
    waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted"
    with psycopg.connect(secondary.uri()) as blocker, \
            psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        blocker.execute("LOCK TABLE balances IN ACCESS EXCLUSIVE MODE")
        conn.execute("INSERT INTO balances (account, total) VALUES (77, 1)")
        assert proxy.metric("switchyard_mirror_failures_total", reason="timeout") == 1
        assert wait_for(lambda: secondary.sql(waiting) == "0", timeout=10), proxy.log()
        running = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'INSERT%'"
        assert secondary.sql(running) == "0"
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=30), proxy.log()
    assert_identical(primary, secondary, {"balances": "account"})


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_a_commit_the_primary_refuses_leaves_nothing_on_the_secondary(pair, start_proxy, tmp_path,
                                                                       write_mode):
    primary, secondary = pair
    ddl = ("CREATE TABLE parents (id int PRIMARY KEY);"
           "CREATE TABLE children (id int PRIMARY KEY, parent int REFERENCES parents"
           " DEFERRABLE INITIALLY DEFERRED)")
    for cluster in pair:
        cluster.sql(ddl)
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            with conn.transaction():  # the constraint is checked at COMMIT, which fails
                conn.execute("INSERT INTO children VALUES (1, 42)")
        with conn.transaction():
            conn.execute("INSERT INTO parents VALUES (7)")
            conn.execute("INSERT INTO children VALUES (2, 7)")
    assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    for cluster in pair:
        assert cluster.sql("SELECT string_agg(id::text, ',' ORDER BY id) FROM children") == "2"
    for cluster in pair:
        cluster.sql("DROP TABLE children, parents")


STAMPED_PROFILES = """
CREATE TABLE profiles (id serial PRIMARY KEY, email text UNIQUE, edits int, stamped timestamptz);
CREATE TABLE profile_count (n int);
INSERT INTO profile_count VALUES (0);
CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN
  NEW.email := lower(NEW.email);
  NEW.edits := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE OLD.edits + 1 END;
  NEW.stamped := clock_timestamp();
  RETURN NEW; END$$;
CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON profiles FOR EACH ROW EXECUTE FUNCTION stamp();
CREATE FUNCTION count_profiles() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN
  UPDATE profile_count SET n = n + 1; RETURN NULL; END$$;
CREATE TRIGGER count_profiles AFTER INSERT ON profiles FOR EACH ROW EXECUTE FUNCTION count_profiles();
CREATE TABLE devices (id int PRIMARY KEY, name text, seen timestamptz);
CREATE FUNCTION see() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN
  NEW.seen := clock_timestamp(); RETURN NEW; END$$;
CREATE TRIGGER see BEFORE INSERT OR UPDATE ON devices FOR EACH ROW EXECUTE FUNCTION see();
CREATE TABLE device_events (id serial PRIMARY KEY, device int NOT NULL REFERENCES devices, what text);
CREATE TRIGGER count_events AFTER INSERT ON device_events FOR EACH ROW EXECUTE FUNCTION count_profiles();
"""
STAMPED_TABLES = {"profiles": "id", "profile_count": "n", "devices": "id", "device_events": "id"}


def write_profiles(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO profiles (email) VALUES ('Ann@X'), ('Bob@X')")
        with conn.transaction():
            conn.execute("UPDATE profiles SET email = 'ANN@Y' WHERE email = 'ann@x'")
            conn.execute("INSERT INTO profiles (email) VALUES ('bob@x') "
                         "ON CONFLICT (email) DO UPDATE SET email = 'Bob@Z'")
        conn.execute("INSERT INTO profiles (email) VALUES ('Cy@X') RETURNING id", prepare=True)
        with conn.transaction():  # stamped again, then deleted: it must not come back
            conn.execute("INSERT INTO profiles (email) VALUES ('Dee@X')")
            conn.execute("UPDATE profiles SET email = 'Dee@Y' WHERE email = 'dee@x'")
            conn.execute("DELETE FROM profiles WHERE email = 'dee@y'")
        with conn.transaction():  # devices has only a BEFORE trigger; the event must find it
            conn.execute("INSERT INTO devices VALUES (1, 'a'), (2, 'b')")
            conn.execute("INSERT INTO device_events (device, what) VALUES (1, 'on')")
            conn.execute("UPDATE devices SET name = 'c' WHERE id = 2")


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_values_a_before_trigger_set_on_the_primary_are_the_secondarys_too(pair, start_proxy, tmp_path,
                                                                          write_mode):
    """A BEFORE trigger that stamps a row (clock_timestamp(), a normalised value) would stamp
    the row image again on the secondary: the secondary must keep the primary's values, while
    its AFTER triggers still run (here a deterministic counter)."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql(STAMPED_PROFILES)
    # A column only the secondary has, filled by a BEFORE trigger only it has, still is.
    secondary.sql("ALTER TABLE devices ADD COLUMN label text;"
                  "CREATE FUNCTION label() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN"
                  " NEW.label := upper(NEW.name); RETURN NEW; END$$;"
                  "CREATE TRIGGER label BEFORE INSERT OR UPDATE ON devices FOR EACH ROW EXECUTE FUNCTION label()")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    write_profiles(proxy.dsn())
    assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert primary.sql("SELECT string_agg(email || ':' || edits, ',' ORDER BY id) FROM profiles") == \
        "ann@y:2,bob@z:2,cy@x:1"
    assert_identical(primary, secondary, {t: o for t, o in STAMPED_TABLES.items() if t != "devices"})
    devices = "SELECT string_agg(concat_ws(':', id, name, seen), ',' ORDER BY id) FROM devices"
    assert secondary.sql(devices) == primary.sql(devices)
    assert secondary.sql("SELECT string_agg(label, ',' ORDER BY id) FROM devices") == "A,C"
    assert secondary.sql("SELECT n FROM profile_count") == "5"
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()


def test_rows_the_replayer_writes_keep_the_values_a_before_trigger_set_on_the_primary(
        pair, start_proxy, tmp_path):
    primary, secondary = pair
    for cluster in pair:
        cluster.sql(STAMPED_PROFILES)
    # The session's writes are refused on the secondary, the replay's are not.
    secondary.sql("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN"
                  " IF current_setting('application_name') <> 'switchyard journal replayer'"
                  " THEN RAISE EXCEPTION 'not here'; END IF; RETURN NEW; END$$;"
                  "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON profiles"
                  " FOR EACH ROW EXECUTE FUNCTION refuse();"
                  "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON devices"
                  " FOR EACH ROW EXECUTE FUNCTION refuse()")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    write_profiles(proxy.dsn())
    assert proxy.metric("switchyard_mirror_failures_total", reason="secondary_error") == 5
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    # (Not profile_count: a replay writes a row as it is now, so no insert of the row deleted
    # since fires the counter there.)
    assert_identical(primary, secondary, {t: o for t, o in STAMPED_TABLES.items() if t != "profile_count"})


def test_without_the_right_to_turn_triggers_off_the_secondary_still_gets_every_write(
        pair, start_proxy, tmp_path):
    """A secondary login that may not set session_replication_role cannot keep a BEFORE
    trigger off the row images: the writes still reach the secondary (as the trigger there
    makes them), with a warning naming the table and what to grant."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql(STAMPED_PROFILES)
    secondary.sql(f"CREATE ROLE app LOGIN PASSWORD '{PASSWORD}';"
                  "GRANT ALL ON ALL TABLES IN SCHEMA public TO app;"
                  "GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO app")
    config = (f"primary: {primary.uri()}\nsecondary: {secondary.uri(user='app')}\n"
              f"mirror:\n  journal: {tmp_path}/journal.jsonl\n")
    proxy = start_proxy(config)
    write_profiles(proxy.dsn())
    rows = "SELECT string_agg(id || ':' || email || ':' || edits, ',' ORDER BY id) FROM profiles"
    assert secondary.sql(rows) == primary.sql(rows)
    assert secondary.sql("SELECT n FROM profile_count") == "5"
    assert secondary.sql("SELECT string_agg(id || name, ',' ORDER BY id) FROM devices") == "1a,2c"
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()
    assert "profiles" in proxy.log() and "session_replication_role" in proxy.log(), proxy.log()


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_the_secondary_fires_the_triggers_the_primary_fired(pair, start_proxy, tmp_path, write_mode):
    """Row images were written as upserts, which fire more than the primary's statements did:
    an UPDATE's fired the table's INSERT statement triggers and BEFORE INSERT row triggers
    there, a plain INSERT's its UPDATE statement triggers. A table with such triggers now gets
    UPDATE images as UPDATEs by key and a plain INSERT's as an INSERT; an upsert stays one.
    An UPDATE of several rows was written as an UPDATE per row, firing its statement
    triggers once per row: it is one UPDATE there too."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE fired (what text PRIMARY KEY, n int);"
                    "INSERT INTO fired SELECT w, 0 FROM unnest(ARRAY['insert statement', 'update statement',"
                    " 'before insert row', 'after insert row', 'after update row']) w;"
                    "CREATE FUNCTION note_fired() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                    " UPDATE fired SET n = n + 1 WHERE what = TG_ARGV[0];"
                    " IF TG_LEVEL = 'ROW' AND TG_WHEN = 'BEFORE' THEN RETURN NEW; END IF; RETURN NULL; END $$;"
                    "CREATE TYPE mood AS ENUM ('calm', 'glad');"
                    "CREATE TABLE entry (id int PRIMARY KEY, amount int, note text, mood mood DEFAULT 'calm');"
                    + "".join(f"CREATE TRIGGER t{i} {when} {event} ON entry FOR EACH {level}"
                              f" EXECUTE FUNCTION note_fired('{name}');"
                              for i, (when, event, level, name) in enumerate([
                                  ("AFTER", "INSERT", "STATEMENT", "insert statement"),
                                  ("AFTER", "UPDATE", "STATEMENT", "update statement"),
                                  ("BEFORE", "INSERT", "ROW", "before insert row"),
                                  ("AFTER", "INSERT", "ROW", "after insert row"),
                                  ("AFTER", "UPDATE", "ROW", "after update row")])))
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO entry VALUES (1, 10, 'a'), (2, 20, 'b')")
        conn.execute("UPDATE entry SET amount = amount + 1 WHERE id = %s", (1,), prepare=True)
        conn.execute("INSERT INTO entry VALUES (2, 5, 'c'), (3, 30, 'd')"
                     " ON CONFLICT (id) DO UPDATE SET amount = excluded.amount")
        with conn.transaction():
            conn.execute("UPDATE entry SET note = upper(note) WHERE id = 2")
            conn.execute("INSERT INTO entry VALUES (%s, %s, %s)", (4, 40, "e"), prepare=True)
    assert subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", proxy.dsn(), "-c",
                           "UPDATE entry SET amount = 0 WHERE id = 3; INSERT INTO entry VALUES (5, 50, 'f')"],
                          capture_output=True, text=True, timeout=60).returncode == 0
    # One UPDATE of several rows fires its statement trigger once there too (a column of a
    # type of the database's own among them).
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("UPDATE entry SET amount = amount * 2, mood = 'glad' WHERE id IN (1, 2, 3)")
        with conn.transaction():
            conn.execute("UPDATE entry SET note = note || %s WHERE id > %s", ("!", 3), prepare=True)
    assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert primary.sql("SELECT string_agg(what || ' ' || n, ', ' ORDER BY what) FROM fired") == (
        "after insert row 5, after update row 9, before insert row 6, insert statement 4, update statement 6")
    wait_for(lambda: primary.checksum("fired", "what") == secondary.checksum("fired", "what"))
    assert_identical(primary, secondary, {"entry": "id", "fired": "what"})
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()


def test_a_replayed_update_fires_the_secondarys_update_triggers_not_its_insert_triggers(
        pair, start_proxy, tmp_path):
    """The replayer wrote the rows a secondary missed as upserts: an UPDATE it missed fired
    the table's INSERT triggers there, and a BEFORE INSERT check on the row's values (an
    account opens with a zero balance) refused the replay, again at every retry. Rows the
    secondary has are updated now, the others inserted, each set by one statement."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE fired (what text PRIMARY KEY, n int);"
                    "INSERT INTO fired VALUES ('insert statement', 0), ('update statement', 0);"
                    "CREATE FUNCTION note_fired() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                    " UPDATE fired SET n = n + 1 WHERE what = TG_ARGV[0]; RETURN NULL; END $$;"
                    "CREATE FUNCTION opens_empty() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                    " IF NEW.balance <> 0 THEN RAISE EXCEPTION 'an account opens with a zero balance';"
                    " END IF; RETURN NEW; END $$;"
                    "CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL);"
                    "INSERT INTO account VALUES (1, 0), (2, 0), (3, 0);"
                    "CREATE TRIGGER opens_empty BEFORE INSERT ON account FOR EACH ROW"
                    " EXECUTE FUNCTION opens_empty();"
                    "CREATE TRIGGER inserted AFTER INSERT ON account FOR EACH STATEMENT"
                    " EXECUTE FUNCTION note_fired('insert statement');"
                    "CREATE TRIGGER updated AFTER UPDATE ON account FOR EACH STATEMENT"
                    " EXECUTE FUNCTION note_fired('update statement')")
    # The session's writes are refused on the secondary, the replay's are not.
    secondary.sql("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN"
                  " IF current_setting('application_name') <> 'switchyard journal replayer'"
                  " THEN RAISE EXCEPTION 'not here'; END IF; RETURN NEW; END$$;"
                  "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON account"
                  " FOR EACH ROW EXECUTE FUNCTION refuse()")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        assert conn.execute("UPDATE account SET balance = balance + 100 * id").rowcount == 3
        conn.execute("INSERT INTO account VALUES (4, 0), (5, 0)")
    assert proxy.metric("switchyard_mirror_failures_total", reason="secondary_error") == 2
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
    assert_identical(primary, secondary, {"account": "id", "fired": "what"})
    assert secondary.sql("SELECT string_agg(what || ' ' || n, ', ' ORDER BY what) FROM fired") == \
        "insert statement 1, update statement 1"


def test_a_row_count_difference_is_journaled(pair, start_proxy, tmp_path):
    primary, secondary = pair
    primary.sql("INSERT INTO balances (account) VALUES (1), (2)")
    secondary.sql("INSERT INTO balances (account) VALUES (1)")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        assert conn.execute("DELETE FROM balances WHERE account IN (1, 2)").rowcount == 2
    assert proxy.metric("switchyard_mirror_failures_total", reason="row_count") == 1
    journal = (tmp_path / "journal.jsonl").read_text()
    assert '"reason":"row_count"' in journal and '"table":"balances"' in journal
    assert_identical(primary, secondary, {"balances": "account"})


def test_a_write_the_secondary_refuses_rolls_back_the_rest_of_its_transaction_there(pair, start_proxy, tmp_path):
    """A transaction's writes reach the secondary under one Sync, in the implicit transaction
    the extended protocol commits there: a later write failing must undo the earlier ones."""
    primary, secondary = pair
    # Only the session's writes are refused: the journal's replay, whenever it comes, is not.
    secondary.sql("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN"
                  " IF NEW.body = 'refused' AND current_setting('application_name')"
                  " <> 'switchyard journal replayer' THEN RAISE EXCEPTION 'not here'; END IF;"
                  " RETURN NEW; END$$;"
                  "CREATE TRIGGER only_on_the_secondary BEFORE INSERT ON notes"
                  " FOR EACH ROW EXECUTE FUNCTION refuse()")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn()) as conn:
        conn.execute("INSERT INTO balances (account) VALUES (99)")
        conn.execute("INSERT INTO notes (body) VALUES ('refused')")
        conn.commit()
    assert primary.sql("SELECT count(*) FROM balances WHERE account = 99") == "1"
    assert proxy.metric("switchyard_mirror_failures_total", reason="secondary_error") == 1
    # The balances row was rolled back with the refused one, so it was journaled as well.
    journal = (tmp_path / "journal.jsonl").read_text()
    assert '"table":"balances"' in journal and '"table":"notes"' in journal, journal
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert_identical(primary, secondary, {"balances": "account", "notes": "t::text"})
    secondary.sql("DROP TRIGGER only_on_the_secondary ON notes; DROP FUNCTION refuse()")


def test_the_replayer_resolves_names_by_the_sessions_search_path(pair, start_proxy, tmp_path):
    """A journaled row names its table as the client's statement did: the replayer must find
    it where the session's search_path (SET, or SET LOCAL) found it, not in its own."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE SCHEMA tenant_f; CREATE SCHEMA tenant_g;"
                    "CREATE TABLE tenant_f.items (id int PRIMARY KEY, note text);"
                    "CREATE TABLE tenant_g.items (id int PRIMARY KEY, note text);"
                    "CREATE TABLE public.items (id int PRIMARY KEY, note text)")
    # The session's writes are refused on the secondary, the replay's are not.
    secondary.sql("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN"
                  " IF current_setting('application_name') <> 'switchyard journal replayer'"
                  " THEN RAISE EXCEPTION 'not here'; END IF; RETURN NEW; END$$;"
                  "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON tenant_f.items"
                  " FOR EACH ROW EXECUTE FUNCTION refuse();"
                  "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON tenant_g.items"
                  " FOR EACH ROW EXECUTE FUNCTION refuse()")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("SET search_path = tenant_f")
        conn.execute("INSERT INTO items VALUES (1, 'under SET')")
        with conn.transaction():
            conn.execute("SET LOCAL search_path = tenant_g")
            conn.execute("INSERT INTO items VALUES (2, 'under SET LOCAL')")
        conn.execute("UPDATE items SET note = 'updated' WHERE id = 1")
    # The UPDATE, written by key (the table has an INSERT trigger), finds no row there.
    assert proxy.metric("switchyard_mirror_failures_total", reason="secondary_error") == 2
    assert proxy.metric("switchyard_mirror_failures_total", reason="row_count") == 1
    journal = (tmp_path / "journal.jsonl").read_text()
    assert '"settings":["SET search_path = tenant_f","SET LOCAL search_path = tenant_g"]' in journal
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="applied") == 3, proxy.log()
    items = "SELECT string_agg(id || ':' || note, ',' ORDER BY id) FROM {}.items"
    for schema in ("tenant_f", "tenant_g", "public"):
        assert secondary.sql(items.format(schema)) == primary.sql(items.format(schema)), schema
    assert secondary.sql(items.format("tenant_f")) == "1:updated"
    for cluster in pair:
        cluster.sql("DROP SCHEMA tenant_f, tenant_g CASCADE; DROP TABLE public.items")
    secondary.sql("DROP FUNCTION refuse()")


def test_the_rows_of_one_journaled_statement_replay_together(pair, start_proxy, tmp_path):
    """A statement's rows meet the secondary's foreign keys and deferrable unique constraints
    together when they replay, as they met the primary's: a child inserted before its parent,
    a parent deleted before its child, positions moved up by one; also past a batch's end."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE tree (id int PRIMARY KEY, parent int REFERENCES tree, name text);"
                    "CREATE TABLE slots (id int PRIMARY KEY, list int, pos int,"
                    " UNIQUE (list, pos) DEFERRABLE);"
                    "CREATE TABLE marks (note text);"
                    "INSERT INTO tree VALUES (10, NULL, 'old root'), (11, 10, 'old leaf');"
                    "INSERT INTO slots VALUES (1, 1, 1), (2, 1, 2), (3, 1, 3)")
    # The session's writes are refused on the secondary, the replay's are not.
    secondary.sql("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN"
                  " IF current_setting('application_name') <> 'switchyard journal replayer'"
                  " THEN RAISE EXCEPTION 'not here'; END IF; RETURN coalesce(NEW, OLD); END$$;"
                  "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE OR DELETE ON tree"
                  " FOR EACH ROW EXECUTE FUNCTION refuse();"
                  "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE OR DELETE ON slots"
                  " FOR EACH ROW EXECUTE FUNCTION refuse();"
                  "CREATE TRIGGER refuse BEFORE INSERT ON marks"
                  " FOR EACH ROW EXECUTE FUNCTION refuse()")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO tree VALUES (2, 1, 'leaf'), (1, NULL, 'root')")
        conn.execute("INSERT INTO marks VALUES ('x'), ('y'), ('x')")  # no key: inserted once
        assert conn.execute("DELETE FROM tree WHERE id IN (10, 11)").rowcount == 2
        assert conn.execute("UPDATE slots SET pos = pos + 1 WHERE list = 1").rowcount == 3
        # More rows than the replayer reads at once (256), each a child of the next.
        conn.execute("INSERT INTO tree SELECT g, nullif(g + 1, 1300), 'chain'"
                     " FROM generate_series(1000, 1299) g")
    assert proxy.metric("switchyard_mirror_failures_total", reason="secondary_error") == 5
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="applied") == 310, proxy.log()
    assert_identical(primary, secondary, {"tree": "id", "slots": "id", "marks": "note"})
    for cluster in pair:
        cluster.sql("DROP TABLE tree, slots, marks")
    secondary.sql("DROP FUNCTION refuse()")


def test_journaled_statements_replay_together_and_one_the_secondary_refuses_alone(pair, start_proxy, tmp_path):
    """One-row statements of a table journaled one after another replay together: their rows
    read from the primary in one round trip, written by one statement. When the secondary
    refuses them (here a CHECK only the secondary has refuses one row), they are replayed
    again statement by statement, so only the refused statement's row is skipped."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE items (id int PRIMARY KEY, qty int)")
    secondary.sql("ALTER TABLE items ADD CONSTRAINT small CHECK (qty < 1000)")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    secondary.stop()
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        for i in range(1, 302):  # more than a replay batch (256) and a flight of reads (128)
            conn.execute("INSERT INTO items VALUES (%s, %s)", (i, 5000 if i == 7 else i % 100))
        conn.execute("UPDATE items SET qty = qty + 1 WHERE id = 8")
    secondary.launch()
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 1, proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="applied") == 301, proxy.log()
    rows = "SELECT count(*) || ':' || sum(qty) FROM items WHERE id <> 7"
    assert secondary.sql(rows) == primary.sql(rows), proxy.log()
    assert secondary.sql("SELECT count(*) FROM items WHERE id = 7") == "0"
    assert secondary.sql("SELECT qty FROM items WHERE id = 8") == "9"


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_a_journaled_update_that_changed_keys_leaves_no_old_key_behind(pair, start_proxy, tmp_path, write_mode):
    """An UPDATE that sets a key column moves rows to new keys. Missed by the secondary, it
    was journaled as the rows it wrote, by their new keys, which the replayer copied from the
    primary: the rows under their old keys stayed on the secondary, one row each twice. One
    pass over the table removes the old keys of all the entries written before it began, the
    next batch's too."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE moved (id int, part text, note text, PRIMARY KEY (part, id));"
                    "INSERT INTO moved SELECT i, 'a', 'row ' || i FROM generate_series(1, 2500) i")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    secondary.stop()
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        assert conn.execute("UPDATE moved SET id = id + 10000 WHERE id <= 3").rowcount == 3
        conn.execute("UPDATE moved SET part = 'b', note = note || '!' WHERE id = %s", (2400,))
        conn.execute("UPDATE moved SET id = 20000 WHERE id = 10002")  # moved twice
        conn.execute("INSERT INTO moved VALUES (1, 'a', 'the old key again')")
        conn.execute("UPDATE moved SET note = 'kept its key' WHERE id = 5")
        for i in range(10, 310):  # more entries than a replay batch (256)
            conn.execute("UPDATE moved SET id = id + 30000 WHERE part = 'a' AND id = %s", (i,))
    secondary.launch()
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
    assert_identical(primary, secondary, {"moved": "part, id"})
    passes = re.findall(r"journal replay removed (\d+) rows of moved", proxy.log())
    assert passes == ["303"], proxy.log()  # (a,2), (a,3), (a,2400) and the 300 moved one by one


def test_a_journaled_key_change_a_foreign_key_follows_is_reported_not_deleted(pair, start_proxy, tmp_path):
    """Where another table's foreign key follows the key (ON UPDATE CASCADE), the primary
    changed that table's rows too, which the journal does not hold: removing the old key
    would fail on, or (ON DELETE CASCADE) delete, the secondary's referencing rows. The
    replayer leaves it and reports the entry as unreplayable."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE parent (id int PRIMARY KEY);"
                    "CREATE TABLE child (id int PRIMARY KEY, parent int REFERENCES parent"
                    " ON UPDATE CASCADE ON DELETE CASCADE);"
                    "INSERT INTO parent VALUES (1), (2); INSERT INTO child VALUES (10, 1), (20, 2)")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    secondary.stop()
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("UPDATE parent SET id = 3 WHERE id = 1")
    secondary.launch()
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="unreplayable") == 1, proxy.log()
    assert "child follows those keys" in proxy.log()
    assert secondary.sql("SELECT string_agg(id || ':' || parent, ',' ORDER BY id) FROM child") == "10:1,20:2"
    assert secondary.sql("SELECT string_agg(id::text, ',' ORDER BY id) FROM parent") == "1,2,3"


def start_case(pair, start_proxy, tmp_path, case, schema, config=""):
    """`schema` run on both databases, then a mirroring proxy for `case`: "sync", "async", or
    "missed" (sync, the secondary stopped until the test launches it again), `config` added
    to its configuration."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql(schema)
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + config
                        + ("write_mode: async\n" if case == "async" else ""))
    if case == "missed":
        secondary.stop()
    return proxy


def settle_case(proxy, pair, case, table, order, statement_fallbacks=None):
    """The writes of a start_case test are done: "missed" launches the secondary and waits for
    the journal to replay without a failure; the others wait for `table` to catch up and
    check that nothing was journaled and, when given, how many statements the secondary ran
    itself for want of a usable key."""
    primary, secondary = pair
    if case == "missed":
        secondary.launch()
        assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
        assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
    else:
        wait_for(lambda: primary.checksum(table, order) == secondary.checksum(table, order))
        assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()
        if statement_fallbacks is not None:
            assert proxy.metric("switchyard_mirrored_statements_total",
                                kind="statement_fallback") == statement_fallbacks


@pytest.mark.parametrize("case", ["sync", "async", "missed"])
def test_an_upsert_that_moves_a_key_moves_it_on_the_secondary_too(pair, start_proxy, tmp_path, case):
    """INSERT ... ON CONFLICT DO UPDATE SET may assign the key of the row it found. Its row
    image holds that row under the new key only: the secondary upserted it by that key and
    kept the row under its old one too, or refused it for another unique column it repeats
    (then the replay failed the same way). Missed by the secondary, the journal entry now
    says which columns the upsert assigned, and the replay removes the old keys."""
    primary, secondary = pair
    proxy = start_case(pair, start_proxy, tmp_path, case,
                       "CREATE TABLE account (id int PRIMARY KEY, email text UNIQUE, n int, seen timestamptz);"
                       "INSERT INTO account SELECT i, 'user' || i, 0, '2026-01-01' FROM generate_series(1, 10) i")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        # Found by another unique column, given a new key.
        conn.execute("INSERT INTO account VALUES (101, 'user1', 1, now()) ON CONFLICT (email)"
                     " DO UPDATE SET id = excluded.id, n = account.n + 1, seen = clock_timestamp()")
        # Found by its key and moved, beside a row inserted; parameters bound.
        conn.execute("INSERT INTO account VALUES (%s, 'other', 1), (%s, 'user50', 1) ON CONFLICT (id)"
                     " DO UPDATE SET id = account.id + 200, n = account.n + (random() * 9)::int", (2, 50))
        conn.execute("INSERT INTO account VALUES (3, 'x', 0) ON CONFLICT ON CONSTRAINT account_pkey"
                     " DO UPDATE SET id = -account.id")
        conn.execute("INSERT INTO account VALUES (5, 'y', 0) ON CONFLICT (id) DO UPDATE SET n = 5")  # key kept
        with conn.transaction():
            conn.execute("INSERT INTO account VALUES (4, 'z', 0) ON CONFLICT (id) DO UPDATE SET id = 400")
            conn.execute("UPDATE account SET n = 9 WHERE id = 400")
        conn.execute("UPDATE account SET id = 600 WHERE id = 6")  # a plain UPDATE, its email kept
    assert primary.sql("SELECT string_agg(id::text, ',' ORDER BY id) FROM account") == \
        "-3,5,7,8,9,10,50,101,202,400,600"
    settle_case(proxy, pair, case, "account", "id")
    if case == "missed":
        assert re.findall(r"journal replay removed (\d+) rows of account", proxy.log()) == ["5"], proxy.log()
    assert_identical(primary, secondary, {"account": "id"})


@pytest.mark.parametrize("case", ["sync", "async", "missed"])
def test_a_table_without_a_primary_key_is_keyed_by_its_unique_not_null_index(pair, start_proxy, tmp_path, case):
    """A table with no primary key but a unique index on NOT NULL columns (or a replica
    identity index) has its rows identified as logical replication identifies them: its
    UPDATEs and DELETEs reach the secondary as row images by that key, so values chosen by
    the primary (gen_random_uuid(), clock_timestamp()) are the same there, where running the
    statement again chose other ones; and a secondary that missed them gets them replayed
    by that key. A unique index on a nullable column is no key: that table still falls back
    to its statements."""
    primary, secondary = pair
    proxy = start_case(pair, start_proxy, tmp_path, case,
                       "CREATE TABLE badge (region text NOT NULL, code int NOT NULL, tok uuid DEFAULT gen_random_uuid(),"
                       " seen timestamptz, note text UNIQUE, UNIQUE (code, region) INCLUDE (note));"
                       "CREATE TABLE tagged (id int NOT NULL, label text, hits int);"
                       "CREATE UNIQUE INDEX tagged_id ON tagged (id); ALTER TABLE tagged REPLICA IDENTITY USING INDEX tagged_id;"
                       "CREATE TABLE loose (code int UNIQUE, n int);"
                       "INSERT INTO badge (region, code, tok) SELECT r, i, md5(r || i)::uuid"
                       " FROM unnest('{eu,us}'::text[]) r, generate_series(1, 5) i;"
                       "INSERT INTO tagged SELECT i, 'l' || i, 0 FROM generate_series(1, 5) i;"
                       "INSERT INTO loose VALUES (1, 0), (2, 0)")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("UPDATE badge SET tok = gen_random_uuid(), seen = clock_timestamp() WHERE code <= 2")
        conn.execute("UPDATE badge SET code = code + 10 WHERE region = %s AND code = %s", ("eu", 3))  # key moved
        conn.execute("DELETE FROM badge WHERE code = 4")
        conn.execute("INSERT INTO badge (region, code) VALUES ('eu', 1), ('ap', 1) ON CONFLICT (code, region)"
                     " DO UPDATE SET tok = gen_random_uuid()")
        conn.execute("UPDATE tagged SET hits = hits + (random() * 100)::int + 1")
        conn.execute("UPDATE loose SET n = 1 WHERE code = 1")  # missed: loose is copied whole
    assert primary.sql("SELECT count(*) FROM badge") == "9"
    # The statements the secondary ran: the UPDATE that moved a key (before its image) and the
    # one on the table without a key.
    settle_case(proxy, pair, case, "tagged", "id", statement_fallbacks=2)
    assert_identical(primary, secondary, {"badge": "region, code", "tagged": "id", "loose": "code"})


@pytest.mark.parametrize("case", ["sync", "async", "missed"])
def test_writes_through_a_view_reach_its_table_as_the_primary_made_them(pair, start_proxy, tmp_path, case):
    """A view PostgreSQL writes through (one table, plain columns) has its table's key when it
    shows that key's columns: its UPDATEs, DELETEs and upserts reach the secondary as row
    images written into the table, so values the primary chose (clock_timestamp(),
    gen_random_uuid(), random()) are the same there, where running the statement again chose
    other ones; the secondary refused an upsert's image written as a plain INSERT; and a
    replay re-reads the table, where a row no longer shown by the view (amount set to 0) still
    is. A view renaming its columns still falls back to its statements, and one whose INSTEAD
    OF trigger does the writing is written through, the trigger running on each side."""
    primary, secondary = pair
    proxy = start_case(pair, start_proxy, tmp_path, case,
                       "CREATE TABLE passbook (id serial PRIMARY KEY, owner text, amount numeric,"
                       " stamp timestamptz DEFAULT clock_timestamp(), tok uuid DEFAULT gen_random_uuid());"
                       "CREATE VIEW open_passbook AS SELECT id, owner, amount, stamp, tok, upper(owner) AS shout"
                       " FROM passbook WHERE amount IS DISTINCT FROM 0;"
                       "CREATE VIEW big_open AS SELECT id, amount, tok FROM open_passbook WHERE amount > 100;"
                       "CREATE VIEW renamed AS SELECT id AS passbook_id, owner FROM passbook;"
                       "CREATE TABLE stamp_log (n int PRIMARY KEY, note text);"
                       "CREATE VIEW stamp_view AS SELECT n, note FROM stamp_log;"
                       "CREATE FUNCTION stamp_view_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                       " INSERT INTO stamp_log VALUES (NEW.n, upper(NEW.note)); RETURN NEW; END $$;"
                       "CREATE TRIGGER stamp_view_insert INSTEAD OF INSERT ON stamp_view"
                       " FOR EACH ROW EXECUTE FUNCTION stamp_view_insert();"
                       "INSERT INTO passbook (owner, amount, stamp, tok) SELECT 'o' || i, i * 50, '2026-01-01',"
                       " md5(i::text)::uuid FROM generate_series(1, 6) i")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO open_passbook (owner, amount) VALUES ('new', 10), (%s, 500)", ("new2",))
        conn.execute("UPDATE open_passbook SET stamp = clock_timestamp(), tok = gen_random_uuid() WHERE amount < 200")
        conn.execute("UPDATE open_passbook SET amount = 0, stamp = clock_timestamp() WHERE id = 2")  # leaves the view
        conn.execute("UPDATE big_open SET amount = amount + (random() * 10)::numeric(6, 3) WHERE id >= 5")
        conn.execute("DELETE FROM open_passbook WHERE id = 3")
        conn.execute("INSERT INTO open_passbook (id, owner, amount) VALUES (1, 'x', 7), (50, 'y', 8)"
                     " ON CONFLICT (id) DO UPDATE SET tok = gen_random_uuid(), owner = excluded.owner")
        with conn.transaction():
            conn.execute("UPDATE open_passbook SET stamp = clock_timestamp() WHERE id = 4")
            conn.execute("INSERT INTO open_passbook (owner, amount) VALUES ('in block', 1)")
        # Its INSTEAD OF trigger writes the table, not PostgreSQL: the trigger runs on each side.
        conn.execute("INSERT INTO stamp_view VALUES (1, 'quiet')")
        if case != "missed":  # a keyless view's missed UPDATE is not replayable
            conn.execute("UPDATE renamed SET owner = 'renamed' WHERE passbook_id = 6")
    assert primary.sql("SELECT count(*) FROM passbook WHERE amount = 0") == "1"
    settle_case(proxy, pair, case, "passbook", "id", statement_fallbacks=1)  # the renaming view
    assert_identical(primary, secondary, {"passbook": "id", "stamp_log": "n"})


@pytest.mark.parametrize("case", ["sync", "async", "missed"])
def test_columns_a_view_hides_get_the_primarys_values(pair, start_proxy, tmp_path, case):
    """A row image written through a view holds the columns the view shows only: a column it
    hides took its DEFAULT (clock_timestamp(), gen_random_uuid(), an identity) or a BEFORE
    trigger's value on each side, and the secondary's differed. Such rows are now re-read
    from the primary once its transaction committed (journal entries of reason
    hidden_by_view, replayed as any row entry). A view hiding only columns of constant
    defaults needs no such entry."""
    primary, secondary = pair
    proxy = start_case(pair, start_proxy, tmp_path, case,
                       "CREATE TABLE shelf (id serial PRIMARY KEY, item text, batch int DEFAULT 7, note text);"
                       "CREATE VIEW shelf_items AS SELECT id, item FROM shelf;"
                       "CREATE TABLE crate (id serial PRIMARY KEY, item text, qty int,"
                       " made timestamptz DEFAULT clock_timestamp(), tag uuid DEFAULT gen_random_uuid(),"
                       " serial_no bigint GENERATED BY DEFAULT AS IDENTITY, touched timestamptz);"
                       "CREATE FUNCTION crate_touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                       " NEW.touched := clock_timestamp(); RETURN NEW; END $$;"
                       "CREATE TRIGGER crate_touch BEFORE UPDATE ON crate FOR EACH ROW EXECUTE FUNCTION crate_touch();"
                       "CREATE VIEW crate_items AS SELECT id, item, qty FROM crate;"
                       "CREATE VIEW big_crates AS SELECT id, qty FROM crate_items WHERE qty > 10;"
                       "SELECT setval(pg_get_serial_sequence('crate', 'serial_no'), 1000)")
    if case != "missed":
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            conn.execute("INSERT INTO shelf_items (item) VALUES ('a'), ('b')")
            conn.execute("UPDATE shelf_items SET item = 'c' WHERE id = 2")
        settle_case(proxy, pair, case, "shelf", "id")  # nothing journaled
        # The secondary's identity sequence runs ahead: its own values would not be the primary's.
        secondary.sql("SELECT setval(pg_get_serial_sequence('crate', 'serial_no'), 5000)")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO crate_items (item, qty) VALUES ('nails', 5), (%s, 50)", ("bolts",))
        conn.execute("INSERT INTO crate_items (item, qty) VALUES ('nuts', 1) RETURNING id")
        conn.execute("UPDATE crate_items SET qty = qty + 1 WHERE item = 'nails'")  # the trigger stamps it
        conn.execute("UPDATE big_crates SET qty = qty * 2")
        conn.execute("INSERT INTO crate_items (id, item, qty) VALUES (1, 'screws', 9), (77, 'pins', 3)"
                     " ON CONFLICT (id) DO UPDATE SET item = excluded.item")
        with conn.transaction():
            conn.execute("INSERT INTO crate_items (item, qty) VALUES ('in block', 2)")
            conn.execute("DELETE FROM crate_items WHERE item = 'nuts'")
        with conn.transaction(force_rollback=True):
            conn.execute("INSERT INTO crate_items (item, qty) VALUES ('rolled back', 2)")
    assert primary.sql("SELECT count(*) FROM crate WHERE serial_no > 1000 AND touched IS NOT NULL") == "2"
    if case == "missed":
        settle_case(proxy, pair, case, "crate", "id")
    else:
        assert wait_for(lambda: proxy.metric("switchyard_journal_entries_total") > 0
                        and proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
        assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
        assert proxy.metric_sum("switchyard_mirror_failures_total") == 0, proxy.log()
        assert_identical(primary, secondary, {"shelf": "id"})
    wait_for(lambda: primary.checksum("crate", "id") == secondary.checksum("crate", "id"))
    assert_identical(primary, secondary, {"crate": "id"})


def test_a_view_over_a_table_the_session_may_not_write_keeps_to_its_statements(pair, start_proxy, tmp_path):
    """A client allowed to write a view but not its table (the view's owner may): the rows
    written through the view are written through it on the secondary too, as statements,
    not into the table by its key, which the secondary would refuse (permission denied)."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'clerk') THEN"
                    " CREATE ROLE clerk LOGIN PASSWORD 'clerkpw'; END IF; END $$;"
                    "CREATE TABLE vault (id int PRIMARY KEY, owner text, seen date);"
                    "CREATE VIEW teller AS SELECT id, owner, seen FROM vault;"
                    "GRANT SELECT, INSERT, UPDATE, DELETE ON teller TO clerk;"
                    "INSERT INTO vault VALUES (1, 'a', NULL), (2, 'b', NULL)")
    # No user in the URIs: the backends are logged in to as the client's user.
    proxy = start_proxy(f"primary: {primary.uri(user=None, password=None)}\n"
                        f"secondary: {secondary.uri(user=None, password=None)}\n"
                        f"mirror:\n  journal: {tmp_path}/journal.jsonl\n"
                        "auth:\n  method: password\n  users:\n    - name: clerk\n      password: clerkpw\n")
    with psycopg.connect(proxy.dsn(user="clerk", password="clerkpw"), autocommit=True) as conn:
        conn.execute("UPDATE teller SET owner = upper(owner), seen = '2026-12-05' WHERE id = 1")
        conn.execute("DELETE FROM teller WHERE id = 2")
        conn.execute("INSERT INTO teller VALUES (3, 'c', '2026-01-01')")
    wait_for(lambda: primary.checksum("vault", "id") == secondary.checksum("vault", "id"))
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()
    assert proxy.metric("switchyard_mirrored_statements_total", kind="statement_fallback") == 2
    assert_identical(primary, secondary, {"vault": "id"})


KINDS_SCHEMA = (
    "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy'); CREATE DOMAIN positive AS int CHECK (VALUE > 0);"
    "CREATE TABLE kinds (id serial PRIMARY KEY, f8 float8, f4 real, n numeric(30,10), ts timestamptz,"
    " t timestamp, d date, iv interval, tz timetz, j jsonb, js json, arr int[], texts text[], b bytea,"
    " m mood, moods mood[], p positive, u uuid DEFAULT gen_random_uuid(), ip inet, mac macaddr,"
    " bits bit(4), vbits varbit, r int4range, money_v money, pt point, box_v box, x xml, c char(4),"
    " g int GENERATED ALWAYS AS (p * 2) STORED, made timestamptz DEFAULT clock_timestamp())")
KINDS_VALUES = (
    "INSERT INTO kinds (f8, f4, n, ts, t, d, iv, tz, j, js, arr, texts, b, m, moods, p, ip, mac, bits, vbits, r,"
    " money_v, pt, box_v, x, c) VALUES"
    " (1.0 / 3, 2.0::real / 3, 1234567.0123456789, '2026-06-01 12:00:00.123456+02', '2026-06-01 23:59:59.999999',"
    " '2026-02-28', '1 year 2 mons -3 days 04:05:06.7', '12:00+05:30', '{\"k\": [1, 2.50, null], \"é\": \"\\u00e9\"}',"
    " '{\"z\": 1,  \"z\": 2}', '{{1,2},{3,NULL}}', '{\"a b\",\"c,d\",\"\",NULL,\"q\\\"t\"}', '\\x00ff7f',"
    " 'happy', '{sad,ok}', 3, '10.1.2.3/8', '08:00:2b:01:02:03', B'1010', B'101', '[1,10)', 12.34, '(1.5,-2.5)',"
    " '((0,0),(1,1))', '<a b=\"1\">t</a>', 'ab'),"
    " ('NaN', '-Infinity', 'NaN', 'infinity', '-infinity', '0044-03-15 BC', '-00:00:00.000001', '00:00-12',"
    " '[]', 'null', '[0:1]={5,6}', '{}', '', 'sad', '{}', 1, '::1', '00:00:00:00:00:00', B'0000', B'', 'empty', -0.5,"
    " '(0,0)', '((-1,-1),(2,3))', '<x/>', ''),"
    " ('-0', 1e-38, 1e-20, '1999-01-08 04:05:06.789-08', '1970-01-01', '2000-01-01', '0', '23:59:59.999999+14',"
    " '1e400', '\"text\"', NULL, NULL, NULL, NULL, NULL, 2, NULL, NULL, NULL, NULL, '(,5]', 0, NULL, NULL, NULL, NULL)")


@pytest.mark.parametrize("case", ["sync", "async", "missed"])
def test_values_of_every_kind_reach_the_secondary_as_the_primary_stored_them(pair, start_proxy, tmp_path, case):
    """Row images carry the primary's values as text printed under the session's settings (or
    binary where the client asked for binary): values of every kind, edge values (NaN,
    infinities, -0, BC dates, empty arrays and ranges, bytea of every byte, TOASTed jsonb) and
    settings that change how values print (DateStyle, IntervalStyle, bytea_output, TimeZone)
    reach the secondary as the primary stored them, through psql's simple protocol, psycopg's
    extended protocol with text and binary parameters, COPY and the journal's replay."""
    primary, secondary = pair
    proxy = start_case(pair, start_proxy, tmp_path, case, KINDS_SCHEMA)
    settings = ("SET DateStyle = 'SQL, DMY'; SET IntervalStyle = 'sql_standard'; SET bytea_output = 'escape';"
                "SET TimeZone = 'America/New_York'; SET extra_float_digits = 3;")
    out = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", proxy.dsn(), "-c", settings + KINDS_VALUES,
                          "-c", "UPDATE kinds SET f8 = f8 * 7 / 3, iv = iv * 1.5, ts = ts + iv, b = b || '\\x0a'"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("SET TimeZone = 'Australia/Adelaide'; SET IntervalStyle = 'postgres_verbose'")
        conn.execute(KINDS_VALUES)
        cursor = conn.cursor()
        for binary in (False, True):
            cursor.execute("INSERT INTO kinds (f8, f4, n, ts, iv, j, arr, texts, b, p, d) VALUES"
                           " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id", (
                               2 / 3, 0.1, 1 / 7, "2026-12-05 01:02:03.456789+09", "P1DT2H", psycopg.types.json.Jsonb(
                                   {"big": "é" * 20000}), [1, None], ["x", ""], bytes(range(256)) * 50, 5,
                               "2026-12-05"), binary=binary)
            cursor.execute("UPDATE kinds SET f4 = f4 / 3, n = n * %s WHERE id = %s", (1 / 3, cursor.fetchone()[0]),
                           binary=binary)
        with cursor.copy("COPY kinds (f8, ts, iv, b, p) FROM STDIN") as copy:
            copy.write_row((1 / 9, "2026-03-29 02:30:00+10:30", "-1 day", b"\x00\x01", 4))
    settle_case(proxy, pair, case, "kinds", "id")
    assert primary.sql("SELECT count(*) FROM kinds") == "9"
    assert_identical(primary, secondary, {"kinds": "id"})


@pytest.mark.parametrize("case", ["sync", "async", "missed"])
def test_what_a_function_a_write_calls_writes_elsewhere_reaches_the_secondary(
        pair, start_proxy, tmp_path, case):
    """An INSERT, UPDATE or DELETE calling a function of the database's own that writes other
    tables (a counter, an audit log) was mirrored as its row images only: the rows the
    function wrote were on the primary alone. The secondary now runs the statement too, then
    the images over its rows; a STABLE function, which cannot write, does not need it.
    Missed, the rows replay and the statement is reported for repair."""
    primary, secondary = pair
    proxy = start_case(pair, start_proxy, tmp_path, case,
                       "CREATE TABLE t (id int PRIMARY KEY, v int, r float8 DEFAULT random());"
                       "CREATE TABLE bare (n int, r float8 DEFAULT random()); CREATE TABLE log (n int);"
                       "INSERT INTO t VALUES (2, 0, 0.5), (3, 0, 0.5);"
                       "CREATE FUNCTION noted(x int) RETURNS int LANGUAGE plpgsql AS"
                       " $$BEGIN INSERT INTO log VALUES (x); RETURN x * 2; END$$;"
                       "CREATE FUNCTION twice(x int) RETURNS int STABLE LANGUAGE sql AS 'SELECT x * 2'")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("SELECT twice(1)")  # switchyard asks the primary what twice() is
        conn.execute("INSERT INTO t (id, v) VALUES (1, noted(1))")
        conn.execute("UPDATE t SET v = noted(%s), r = random() WHERE id = 1", (7,))
        conn.execute("DELETE FROM t WHERE id = 2 AND noted(3) > 0")
        conn.execute("INSERT INTO bare (n) VALUES (noted(5))")  # no key: the statement alone
        with conn.transaction():
            conn.execute("INSERT INTO t (id, v) SELECT 10 + g, twice(g) FROM generate_series(1, 3) g")
            conn.execute("UPDATE t SET v = noted(v) WHERE id >= 11")
    assert primary.sql("SELECT string_agg(n::text, ',' ORDER BY n) FROM log") == "1,2,3,4,5,6,7"
    if case == "missed":
        secondary.launch()
        assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
        assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
        # Each statement calling noted(); the table without a key was journaled as statement alone.
        assert proxy.metric("switchyard_journal_replayed_total", result="unreplayable") == 5, proxy.log()
        assert_identical(primary, secondary, {"t": "id"})
        return
    wait_for(lambda: primary.checksum("log", "n") == secondary.checksum("log", "n"))
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()
    assert_identical(primary, secondary, {"t": "id", "log": "n"})
    # The five statements calling noted() ran on the secondary; the one calling twice() did not.
    assert proxy.metric("switchyard_mirrored_statements_total", kind="statement_fallback") == 5
    # bare's random() was drawn by each side: its statement ran on both as the client sent it.
    assert secondary.sql("SELECT string_agg(n::text, ',') FROM bare") == "10"


def test_an_insert_whose_keys_would_differ_run_again_is_written_as_its_images_and_reported(
        pair, start_proxy, tmp_path):
    """An INSERT calling a function that writes elsewhere, whose key a DEFAULT other than a
    sequence (gen_random_uuid()) or a call fills, would give the secondary's row a key of its
    own if run there, left beside the image's. Such an INSERT is written as its images, and
    what its function wrote elsewhere is counted and logged as not mirrored."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE tokens (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), n int);"
                    "CREATE TABLE log (n int);"
                    "CREATE FUNCTION noted(x int) RETURNS int LANGUAGE plpgsql AS"
                    " $$BEGIN INSERT INTO log VALUES (x); RETURN x; END$$")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO tokens (n) VALUES (noted(1))")
        conn.execute("INSERT INTO tokens VALUES (md5(noted(2)::text)::uuid, 2)")  # a key it computes
        conn.execute("INSERT INTO tokens VALUES (%s, noted(3))", ("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",))
    assert_identical(primary, secondary, {"tokens": "id"})
    assert secondary.sql("SELECT string_agg(n::text, ',') FROM log") == "3"  # the key the client gave
    assert proxy.metric("switchyard_mirror_failures_total", reason="not_mirrorable") == 2
    assert "is not mirrored (run again, it could give its rows other keys)" in proxy.log()
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()


@pytest.mark.parametrize("case", ["sync", "async"])
def test_what_a_column_default_calling_a_function_writes_elsewhere_reaches_the_secondary(
        pair, start_proxy, tmp_path, case):
    """An INSERT leaving a column to a DEFAULT that calls a function of the database's own
    (a ticket counter) wrote only the image's values on the secondary: the counter stayed
    behind there, silently. The secondary's table shape says which defaults call a volatile
    function of the database's own; such an INSERT runs there too, then its images — or,
    where run again it could key its row otherwise, is written as its images and reported.
    A function read_routing.safe_functions lists is one that cannot write."""
    primary, secondary = pair
    proxy = start_case(pair, start_proxy, tmp_path, case,
                       "CREATE TABLE counters (name text PRIMARY KEY, n int); INSERT INTO counters VALUES ('t', 0);"
                       "CREATE FUNCTION next_ticket() RETURNS int LANGUAGE sql AS"
                       " $$UPDATE counters SET n = n + 1 WHERE name = 't' RETURNING n$$;"
                       "CREATE TABLE tickets (id serial PRIMARY KEY, no int DEFAULT next_ticket(),"
                       " made timestamptz DEFAULT clock_timestamp(), note text);"
                       "CREATE TABLE codes (code int PRIMARY KEY DEFAULT next_ticket(), note text);"
                       "CREATE FUNCTION new_label() RETURNS text LANGUAGE sql AS 'SELECT md5(random()::text)';"
                       "CREATE TABLE labels (label text PRIMARY KEY DEFAULT new_label(), note text)",
                       "read_routing:\n  safe_functions: [new_label]\n")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO tickets (note) VALUES ('a')")
        conn.execute("INSERT INTO tickets (note) VALUES (%s)", ("b",))
        conn.execute("INSERT INTO tickets (no, note) VALUES (100, 'given')")  # no call
        with conn.transaction():
            conn.execute("INSERT INTO tickets (id, note) VALUES (50, 'c')")
            conn.execute("INSERT INTO tickets (id, no, note) VALUES (60, DEFAULT, 'd'), (61, 200, 'e')")
    if case == "async":
        assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert primary.sql("SELECT string_agg(no::text, ',' ORDER BY id) FROM tickets") == "1,2,100,3,4,200"
    assert_identical(primary, secondary, {"tickets": "id", "counters": "name"})
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO codes (note) VALUES ('x')")  # its key from the counter
        conn.execute("INSERT INTO labels (note) VALUES ('by default')")
        conn.execute("INSERT INTO labels VALUES (new_label(), 'called')")
    if case == "async":
        assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
    assert_identical(primary, secondary, {"tickets": "id", "codes": "code", "labels": "label"})
    assert proxy.metric("switchyard_mirror_failures_total", reason="not_mirrorable") == 1
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()


def test_a_prepared_write_learns_that_the_function_it_calls_cannot_write(pair, start_proxy, tmp_path):
    """A write calling a function not known to be STABLE counts as calling one that may
    write elsewhere: with a key it computes, it would be written as its images and reported
    not mirrored. The session asks the primary's catalog, as for reads, once the client's
    Parse is answered: every execution is mirrored plainly, and the client's unnamed
    statement, executed again and again, outlives the question."""
    primary, secondary = pair
    proxy = start_case(pair, start_proxy, tmp_path, "sync",
                       "CREATE TABLE doubled (id int PRIMARY KEY, n int);"
                       "CREATE FUNCTION twice(x int) RETURNS int STABLE LANGUAGE sql AS 'SELECT x * 2'")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        pgconn = conn.pgconn
        prepared = pgconn.prepare(b"", b"INSERT INTO doubled VALUES (twice($1::int), $1::int)")
        assert prepared.status == psycopg.pq.ExecStatus.COMMAND_OK, prepared.error_message
        for n in (b"1", b"2", b"3"):
            result = pgconn.exec_prepared(b"", [n])
            assert result.status == psycopg.pq.ExecStatus.COMMAND_OK, result.error_message
    assert primary.sql("SELECT string_agg(id::text, ',' ORDER BY id) FROM doubled") == "2,4,6"
    assert_identical(primary, secondary, {"doubled": "id"})
    assert proxy.metric("switchyard_mirror_failures_total", reason="not_mirrorable") == 0
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()


def test_a_key_the_secondary_drew_itself_for_a_write_calling_a_function_is_not_left_behind(
        pair, start_proxy, tmp_path):
    """Run on the secondary for what its function writes, an INSERT draws its serial id from
    the secondary's sequence. Another session's INSERT drew an id on the primary in between,
    so the secondary drew another than the primary: the image wrote the primary's id and the
    secondary's own row stayed beside it."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE orders (id serial PRIMARY KEY, no int, note text); CREATE TABLE log (n int);"
                    "CREATE FUNCTION noted(x int) RETURNS int LANGUAGE plpgsql AS"
                    " $$BEGIN INSERT INTO log VALUES (x); RETURN x; END$$")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as first, \
            psycopg.connect(proxy.dsn(), autocommit=True) as second:
        with first.transaction():
            first.execute("INSERT INTO orders (no) VALUES (noted(1))")  # draws 1, commits last
            second.execute("INSERT INTO orders (no) VALUES (noted(2))")  # draws 2
        second.execute("INSERT INTO orders (no, note) VALUES (noted(3), 'x')")  # the secondary is at 3
    assert primary.sql("SELECT string_agg(id || ':' || no, ',' ORDER BY id) FROM orders") == "1:1,2:2,3:3"
    assert_identical(primary, secondary, {"orders": "id", "log": "n"})
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()


def test_a_copy_of_a_write_the_secondary_missed_brings_its_table_in_line(pair, start_proxy, tmp_path):
    """COPY (INSERT/UPDATE/DELETE ... RETURNING) TO STDOUT runs its write, mirrored as the
    COPY itself. Missed by the secondary, it was journaled as that statement, which the
    replayer could only report; now as the tables it wrote, brought in line as a missed
    writing CTE's are."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE jobs (id int PRIMARY KEY, state text, at timestamptz);"
                    "INSERT INTO jobs SELECT i, 'new', '2026-01-01' FROM generate_series(1, 50) i")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    secondary.stop()
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        for statement in ("COPY (UPDATE jobs SET state = 'taken', at = clock_timestamp() WHERE id <= 10"
                          " RETURNING id) TO STDOUT",
                          "COPY (DELETE FROM jobs WHERE id > 45 RETURNING id) TO STDOUT (FORMAT csv)",
                          "COPY (INSERT INTO jobs VALUES (100, 'new', now()) RETURNING *) TO STDOUT"):
            with conn.cursor().copy(statement) as copy:
                assert len(list(copy.rows())) >= 1
    secondary.launch()
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="unreplayable") == 0, proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
    assert_identical(primary, secondary, {"jobs": "id"})


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_writing_ctes_and_merge_the_secondary_missed_bring_their_tables_in_line(
        pair, start_proxy, tmp_path, write_mode):
    """A writing CTE or a MERGE runs on the secondary as the client's statement: no row
    image names its rows. Missed, it was journaled as that statement, which the replayer
    could only report (the tables needed repair by hand). Now each table it wrote is
    brought in line with the primary's: rows written over by key, rows the primary no
    longer has deleted (a table without a key: copied whole). DO names no table: still
    reported."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE queue (id int PRIMARY KEY, job text);"
                    "CREATE TABLE archive (id int PRIMARY KEY, job text, done timestamptz DEFAULT now());"
                    "CREATE TABLE stock (id int PRIMARY KEY, qty int);"
                    "CREATE TABLE tally (n int);"
                    "INSERT INTO queue SELECT i, 'job ' || i FROM generate_series(1, 2100) i;"
                    "INSERT INTO stock VALUES (1, 10), (2, 99), (3, 1);"
                    "INSERT INTO tally VALUES (1), (1)")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    secondary.stop()
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        moved = conn.execute("WITH done AS (DELETE FROM queue WHERE id % 7 = 0 RETURNING *)"
                             " INSERT INTO archive (id, job) SELECT id, job FROM done").rowcount
        assert moved == 300
        conn.execute("MERGE INTO stock s USING (VALUES (1, 5), (2, 5), (4, 1)) v(id, n) ON s.id = v.id"
                     " WHEN MATCHED AND s.qty + v.n > 100 THEN DELETE"
                     " WHEN MATCHED THEN UPDATE SET qty = s.qty + v.n"
                     " WHEN NOT MATCHED THEN INSERT VALUES (v.id, v.n)")
        conn.execute("WITH t AS (UPDATE tally SET n = n + 1 RETURNING n) SELECT sum(n) FROM t")
        conn.execute("UPDATE queue SET id = id + 5000 WHERE id = 1")  # then a key moved in it too
        conn.execute("DO $$BEGIN UPDATE stock SET qty = qty; END$$")
    secondary.launch()
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="unreplayable") == 1, proxy.log()
    assert_identical(primary, secondary, {"queue": "id", "archive": "id", "stock": "id", "tally": "t::text"})
    # One pass over queue: the key move's entry was written before it began.
    assert len(re.findall(r"journal replay removed (\d+) rows of queue", proxy.log())) == 1, proxy.log()


def test_a_replayed_update_of_a_parent_by_inheritance_writes_its_childrens_rows_where_they_are(
        pair, start_proxy, tmp_path):
    """The rows an UPDATE of a parent returned from its children replay into the children:
    the replayer upserted them into the parent, which got copies while the children kept
    their old values."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE parent (id int PRIMARY KEY, v int, note text);"
                    "CREATE TABLE child (extra int DEFAULT 7, PRIMARY KEY (id)) INHERITS (parent);"
                    "INSERT INTO parent VALUES (1, 0), (3, 0); INSERT INTO child VALUES (2, 0), (4, 0)")
    # The session's writes are refused on the secondary, the replay's are not.
    secondary.sql("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN"
                  " IF current_setting('application_name') <> 'switchyard journal replayer'"
                  " THEN RAISE EXCEPTION 'not here'; END IF; RETURN NEW; END$$;"
                  "CREATE TRIGGER refuse BEFORE UPDATE ON parent FOR EACH ROW EXECUTE FUNCTION refuse();"
                  "CREATE TRIGGER refuse BEFORE UPDATE ON child FOR EACH ROW EXECUTE FUNCTION refuse()")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        assert conn.execute("UPDATE parent SET v = id * 10, note = 'x'").rowcount == 4
        conn.execute("DELETE FROM child WHERE id = 4")  # gone before the replay: gone there too
    assert proxy.metric("switchyard_mirror_failures_total", reason="secondary_error") == 1
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
    assert_identical(primary, secondary, {"ONLY parent": "id", "child": "id"})
    for cluster in pair:
        cluster.sql("DROP TABLE parent CASCADE")
    secondary.sql("DROP FUNCTION refuse()")


def test_a_replayed_update_of_childrens_rows_the_secondary_lacks_is_reported_not_inserted(
        pair, start_proxy, tmp_path):
    """The children's rows of a replay are updated where they are, all by one UPDATE: where
    the secondary lacks one, the replay fails and says so, rather than writing the other
    rows alone or putting the missing one into the parent."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE parent (id int PRIMARY KEY, v int);"
                    "CREATE TABLE child (PRIMARY KEY (id)) INHERITS (parent);"
                    "INSERT INTO child VALUES (2, 0), (4, 0)")
    primary.sql("INSERT INTO child VALUES (6, 0)")  # never reached the secondary
    secondary.sql("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN"
                  " IF current_setting('application_name') <> 'switchyard journal replayer'"
                  " THEN RAISE EXCEPTION 'not here'; END IF; RETURN NEW; END$$;"
                  "CREATE TRIGGER refuse BEFORE UPDATE ON child FOR EACH ROW EXECUTE FUNCTION refuse()")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        assert conn.execute("UPDATE parent SET v = id * 10").rowcount == 3
    assert wait_for(lambda: proxy.metric("switchyard_journal_replayed_total", result="failed") == 3,
                    timeout=60), proxy.log()
    assert "rows of a table inheriting from parent are not there (rows written: 2 of 3)" in proxy.log()
    assert secondary.sql("SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM parent") == "2:0,4:0"


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_a_transaction_that_creates_a_table_and_writes_to_it_is_mirrored_as_it_runs(
        pair, start_proxy, tmp_path, write_mode):
    """A migration creates a table and fills it, or adds a column and sets it, in one
    transaction. switchyard read the table's shape on the secondary before the batch's DDL
    ran there: "relation does not exist", and the whole transaction went to the journal as
    failed (counted against the secondary's error-rate gate) to be replayed later."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        with conn.transaction():
            conn.execute("CREATE TABLE seeded (id serial PRIMARY KEY, name text,"
                         " at timestamptz DEFAULT clock_timestamp())")
            conn.execute("INSERT INTO seeded (name) VALUES ('a'), ('b')")
            conn.execute("ALTER TABLE seeded ADD COLUMN shout text GENERATED ALWAYS AS (upper(name)) STORED")
            conn.execute("UPDATE seeded SET name = name || '!'")
        conn.execute("INSERT INTO seeded (name) VALUES ('c')")
    created = "SELECT count(*) FROM pg_tables WHERE tablename = 'seeded'"
    assert wait_for(lambda: secondary.sql(created) == "1", timeout=10)  # async: it comes later
    assert wait_for(lambda: secondary.sql("SELECT count(*) FROM seeded") == "3", timeout=10)
    assert proxy.metric_sum("switchyard_mirror_failures_total") == 0, proxy.log()
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()
    assert_identical(primary, secondary, {"seeded": "id"})
    for cluster in pair:
        cluster.sql("DROP TABLE seeded")


def test_tables_a_query_filled_get_the_primarys_rows(pair, start_proxy, tmp_path):
    """CREATE TABLE AS and SELECT INTO ran again on the secondary chose their own values
    (random(), now()) and rows (a LIMIT without ORDER BY): the secondary's table differed for
    good. The primary's rows are copied into it."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE src (id int PRIMARY KEY, v int);"
                    "INSERT INTO src SELECT g, g FROM generate_series(1, 50) g")
    # The same rows in another physical order on the secondary: a LIMIT takes others there.
    secondary.sql("UPDATE src SET v = v WHERE id <= 25")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE snap AS SELECT g AS id, random() AS r, now() AS at"
                     " FROM generate_series(1, 2500) g")
        conn.execute("SELECT id, v, gen_random_uuid() AS token INTO picked FROM src LIMIT 5")
        conn.execute("CREATE TABLE empty_copy AS SELECT random() AS r WITH NO DATA")
        with conn.transaction():
            conn.execute("CREATE TABLE archived AS SELECT id, clock_timestamp() AS at FROM src"
                         " WHERE id <= 3")
            conn.execute("INSERT INTO archived VALUES (99, now())")
    for table in ("snap", "picked", "archived"):
        assert primary.sql(f"SELECT count(*) FROM {table}") != "0"
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="applied") == 3, proxy.log()
    assert proxy.metric_sum("switchyard_mirror_failures_total") == 0, proxy.log()
    assert_identical(primary, secondary, {t: "t::text" for t in ("snap", "picked", "archived", "empty_copy")})
    for cluster in pair:
        cluster.sql("DROP TABLE src, snap, picked, archived, empty_copy")


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_columns_added_with_a_default_that_is_not_a_constant_get_the_primarys_values(pair, start_proxy, tmp_path,
                                                                                     write_mode):
    """ALTER TABLE ... ADD COLUMN fills every existing row with the column's default: now()
    evaluated once, a volatile default (random(), gen_random_uuid(), a serial or identity
    column) once per row. The secondary, running the same DDL, chose its own values: every
    row there differed in the new column, silently. The replayer now writes the primary's
    rows into the secondary's, a chunk at a time by key, without deleting any (a foreign key
    into the table cascades nothing) and past BEFORE triggers that stamp rows."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE accounts (id int PRIMARY KEY, name text);"
                    "CREATE TABLE orders (id int PRIMARY KEY, account int REFERENCES accounts ON DELETE CASCADE);"
                    "CREATE TABLE parts (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);"
                    "CREATE TABLE parts_eu PARTITION OF parts FOR VALUES IN ('eu');"
                    "CREATE TABLE parts_us PARTITION OF parts FOR VALUES IN ('us');"
                    "CREATE TABLE stamped (id int PRIMARY KEY, v int, touched timestamptz);"
                    "CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS"
                    " $$BEGIN NEW.touched := clock_timestamp(); RETURN NEW; END$$;"
                    "CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON stamped FOR EACH ROW EXECUTE FUNCTION stamp()")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO accounts SELECT g, 'a' || g FROM generate_series(1, 2500) g")
        conn.execute("INSERT INTO orders SELECT g, g FROM generate_series(1, 2500) g")
        conn.execute("INSERT INTO parts SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END"
                     " FROM generate_series(1, 50) g")
        conn.execute("INSERT INTO stamped SELECT g, g FROM generate_series(1, 20) g")
        conn.execute("ALTER TABLE accounts ADD COLUMN created timestamptz NOT NULL DEFAULT now(),"
                     " ADD COLUMN token uuid DEFAULT gen_random_uuid()")
        conn.execute("ALTER TABLE accounts ADD COLUMN seq bigserial")
        conn.execute("ALTER TABLE parts ADD COLUMN r float8 DEFAULT random()")
        conn.execute("ALTER TABLE stamped ADD COLUMN at timestamptz DEFAULT clock_timestamp()")
        with conn.transaction():  # a migration: the column, then writes to the table
            conn.execute("ALTER TABLE accounts ADD COLUMN score float8 DEFAULT random()")
            conn.execute("UPDATE accounts SET name = 'renamed' WHERE id = 1")
        conn.execute("ALTER TABLE accounts ADD COLUMN tier int DEFAULT 7")  # a constant: nothing to copy
    # Async mode journals them as it applies the DDL, after the client had its answers.
    assert wait_for(lambda: proxy.metric("switchyard_journal_replayed_total", result="applied") == 5
                    and proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert proxy.metric_sum("switchyard_mirror_failures_total") == 0, proxy.log()
    assert secondary.sql("SELECT count(*) FROM orders") == "2500"
    assert_identical(primary, secondary, {t: "t::text" for t in ("accounts", "orders", "parts", "stamped")})
    for cluster in pair:
        cluster.sql("DROP TABLE orders, accounts, parts, stamped; DROP FUNCTION stamp()")


def test_a_transaction_too_large_to_buffer_is_journaled_and_replayed(pair, start_proxy, tmp_path):
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, "  max_transaction_bytes: 2048\n"))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        with conn.transaction():
            for i in range(40):
                conn.execute("INSERT INTO events (account) VALUES (%s)", (i,))
    assert proxy.metric("switchyard_mirror_failures_total", reason="transaction_too_large") > 0
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=30), proxy.log()
    assert_identical(primary, secondary, {"events": "id"})


def test_a_transaction_of_many_small_statements_counts_what_each_keeps(pair, start_proxy, tmp_path):
    """Each write kept for the secondary costs switchyard about 1 KiB besides its text and values
    (a transaction of 100,000 one-row INSERTs grew the proxy by 353 MiB under the default 64 MiB
    bound): mirror.max_transaction_bytes counts that too. Here 300 writes of some 60 bytes each
    pass a bound of 64 KiB; what does not fit is journaled and replayed."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, "  max_transaction_bytes: 65536\n"))
    with psycopg.connect(proxy.dsn()) as conn:
        conn.cursor().executemany("INSERT INTO events (account) VALUES (%s)", [(i,) for i in range(300)])
    assert proxy.metric("switchyard_mirror_failures_total", reason="transaction_too_large") > 200, proxy.log()
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=30), proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
    assert primary.sql("SELECT count(*) FROM events") == "300"
    assert_identical(primary, secondary, {"events": "id"})


def create_pages(*clusters):
    for cluster in clusters:
        cluster.sql("CREATE TABLE pages (id int PRIMARY KEY, body text)")


def test_a_transaction_of_several_copies_counts_their_data_together(pair, start_proxy, tmp_path):
    """A COPY's data was bounded by mirror.max_transaction_bytes on its own and not counted
    with the transaction's other writes: a transaction of ten COPYs kept ten times the bound.
    Here three COPYs of 40 KiB each pass a bound of 64 KiB; the two that do not fit are
    journaled and replayed."""
    primary, secondary = pair
    create_pages(primary, secondary)
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, "  max_transaction_bytes: 65536\n"))
    with psycopg.connect(proxy.dsn()) as conn:
        for copy_number in range(3):
            with conn.cursor().copy("COPY pages (id, body) FROM STDIN") as copy:
                for row in range(10):
                    copy.write_row((copy_number * 10 + row, "p" * 4096))
    assert proxy.metric("switchyard_mirror_failures_total", reason="transaction_too_large") >= 2, proxy.log()
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=30), proxy.log()
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
    assert primary.sql("SELECT count(*) FROM pages") == "30"
    assert_identical(primary, secondary, {"pages": "id"})


def test_the_async_queue_holds_at_most_async_queue_bytes(pair, start_proxy, tmp_path):
    """mirror.async_queue counts transactions, whatever each keeps: 10,000 commits of 64 MiB
    may wait behind a stalled secondary. Past mirror.async_queue_bytes the rest wait in the
    journal, and the replayer brings them over once the secondary answers."""
    primary, secondary = pair
    create_pages(primary, secondary)
    bound = 1 << 20
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path,
                                      f"  timeout: 30s\n  async_queue_bytes: {bound}\n")
                        + "write_mode: async\n")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO pages VALUES (0, 'the shape known')")
        assert wait_for(lambda: async_settled(proxy), timeout=30), proxy.log()
        secondary.signal(signal.SIGSTOP)
        try:
            for page in range(1, 31):
                conn.execute("INSERT INTO pages VALUES (%s, %s)", (page, "q" * 100_000))
            assert 0 < proxy.metric("switchyard_mirror_async_queue_bytes") <= bound, proxy.log()
        finally:
            secondary.signal(signal.SIGCONT)
    # Each INSERT keeps its value twice (the parameter and the row the primary returned).
    assert proxy.metric("switchyard_mirror_failures_total", reason="async_queue_full") >= 20, proxy.log()
    assert wait_for(lambda: async_settled(proxy), timeout=60), proxy.log()
    assert proxy.metric("switchyard_mirror_async_queue_bytes") == 0
    assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
    assert_identical(primary, secondary, {"pages": "id"})


def test_copy_from_stdin_reaches_both_sides(pair, start_proxy, tmp_path):
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path))
    # pgbench -i through the proxy: DDL, TRUNCATE and COPY ... FREEZE in one transaction.
    subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-h", "127.0.0.1", "-p", str(proxy.port), "-U", "postgres",
                    "postgres"], check=True, capture_output=True, env={**os.environ, "PGPASSWORD": PASSWORD})
    data = tmp_path / "notes.csv"
    data.write_text("".join(f"line {i},2026-01-01 00:00:0{i % 10}+00\n" for i in range(500)))
    out = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", proxy.dsn(), "-c", f"\\copy notes FROM '{data}' CSV"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "COPY 500" in out.stdout, out.stderr
    # A COPY the primary refuses leaves the session usable.
    bad = subprocess.run(["psql", "-X", proxy.dsn(), "-c", f"\\copy missing FROM '{data}' CSV", "-c", "SELECT 1"],
                         capture_output=True, text=True)
    assert "does not exist" in bad.stderr
    assert primary.sql("SELECT count(*) FROM pgbench_accounts") == "100000"
    assert_identical(primary, secondary, {**TABLES, "notes": "t::text"})
    assert proxy.metric("switchyard_journal_entries_total") == 0


def copy_failure(dsn, statement, payload):
    """The error a COPY of `payload` ends in, and that the session goes on after it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as failure:
            with conn.cursor().copy(statement) as copy:
                copy.write(payload)
        assert conn.execute("SELECT 7").fetchone() == (7,)
    diag = failure.value.diag
    return failure.value.sqlstate, diag.message_primary, diag.context


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_copy_leaving_out_columns_with_defaults_writes_the_primarys_values(pair, start_proxy, tmp_path,
                                                                           write_mode):
    """A COPY (text, CSV or binary) that leaves out a serial or identity id or a uuid, time or
    random default: the secondary gets the values the primary generated, not its own."""
    primary, secondary = pair
    # The secondary's sequence ahead, as after writes that bypassed it: its own ids would differ.
    secondary.sql("SELECT setval('events_id_seq', 500)")
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path) + f"write_mode: {write_mode}\n")
    data = tmp_path / "accounts.csv"
    data.write_text("account\n" + "".join(f"{i}\n" for i in range(300)))
    out = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", proxy.dsn(),
                          "-c", f"\\copy events (account) FROM '{data}' CSV HEADER"], capture_output=True, text=True)
    assert out.returncode == 0 and "COPY 300" in out.stdout, out.stderr
    with psycopg.connect(proxy.dsn()) as conn:  # one transaction: now() is the same in both COPYs
        with conn.cursor() as cur:
            with cur.copy("COPY ledger (account, total) FROM STDIN") as copy:
                for i in range(50):
                    copy.write_row((i, i / 3))
            with cur.copy("COPY notes (body) FROM STDIN") as copy:
                copy.write_row(("tab\there, newline\nthere, backslash \\",))
            with cur.copy("COPY notes (body) FROM STDIN WITH (FORMAT csv, QUOTE '|')") as copy:
                copy.write('|quoted, with a\nnewline|\nplain\n|say ||hi|||\n')
            with cur.copy("COPY events (account) FROM STDIN (FORMAT binary)") as copy:
                copy.set_types(["int4"])
                for i in range(20):
                    copy.write_row((i,))
            cur.execute("INSERT INTO balances (account) VALUES (1)")
            with cur.copy("COPY balances FROM STDIN") as copy:  # every column: nothing to fill
                copy.write("2\t5\t\\N\n")
    assert primary.sql("SELECT count(DISTINCT noted) FROM ledger") == "1"
    # Errors are PostgreSQL's own, and nothing of a failed COPY stays anywhere.
    for statement, payload in (("COPY events (account) FROM STDIN", "1\nabc\n"),
                               ("COPY ledger (account, total) FROM STDIN", "1\t2\n3\n"),
                               ("COPY events (nope) FROM STDIN", "1\n"),
                               ("COPY missing (account) FROM STDIN", "1\n")):
        assert copy_failure(proxy.dsn(), statement, payload) == copy_failure(primary.uri(), statement, payload)
    # A row with more fields than columns fails as it does directly; the line PostgreSQL
    # quotes in the error's context shows the values switchyard appended.
    extra = copy_failure(proxy.dsn(), "COPY events (account) FROM STDIN", "1\n2\t3\n")
    assert extra[:2] == copy_failure(primary.uri(), "COPY events (account) FROM STDIN", "1\n2\t3\n")[:2]
    assert wait_for(lambda: async_settled(proxy), timeout=60), proxy.log()
    assert primary.sql("SELECT count(*) FROM events") == "320"
    assert_identical(primary, secondary, {"events": "id", "ledger": "id", "notes": "t::text",
                                          "balances": "account"})
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()


def test_a_copy_too_large_to_keep_reaches_the_primary_and_the_journal(pair, start_proxy, tmp_path):
    """Past mirror.max_transaction_bytes, of the data or of the values switchyard would fill
    in, the client's COPY runs on the primary alone and is journaled as not mirrorable: its
    table, which the replayer refreshes from the primary once the COPY committed."""
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, "  max_transaction_bytes: 4096\n"))
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    small.write_text("1\n" * 1000)  # 2 kB of data, but some 70 kB of ids, uuids, times
    large.write_text("2\n" * 5000)  # 10 kB of data
    for path, rows in ((small, 1000), (large, 5000)):
        out = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", proxy.dsn(),
                              "-c", f"\\copy events (account) FROM '{path}'", "-c", "SELECT 'after'"],
                             capture_output=True, text=True)
        assert out.returncode == 0 and f"COPY {rows}" in out.stdout and "after" in out.stdout, out.stderr
        assert out.stderr == ""  # no warning of a second BEGIN
    assert primary.sql("SELECT count(*) FROM events") == "6000"
    assert proxy.metric("switchyard_mirror_failures_total", reason="not_mirrorable") == 2
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
    assert_identical(primary, secondary, {"events": "id"})
    assert proxy.metric("switchyard_journal_replayed_total", result="applied") == 2, proxy.log()


def test_malformed_messages_close_the_session_with_a_reason(pair, start_proxy, tmp_path):
    primary, secondary = pair
    proxy = start_proxy(mirror_config(primary, secondary, tmp_path, "limits:\n  max_message_size: 4096\n"))
    for data, reason in ((message(b"P", b"no-terminator"), "Parse message is truncated"),
                         (message(b"B", b"p\0s\0\0\x01"), "Bind message is truncated"),
                         (message(b"Q", b"x" * 5000 + b"\0"), "")):
        client = RawClient(proxy.port)
        client.login_trust()
        client.send(data)
        tag, body = client.read_message()
        fields = error_fields(body)
        assert tag == b"E" and fields["C"] == "08P01" and reason in fields["M"], fields
        assert client.closed()
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO notes (body) VALUES ('after')")
    assert_identical(primary, secondary, {"notes": "t::text"})
