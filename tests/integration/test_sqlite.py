"""The in-process SQLite engine: as a primary for psql and psycopg, as the embedded default,
and mirrored to and from real PostgreSQL 15 clusters."""
import datetime
import random
import sqlite3
import subprocess
import threading
import time
import urllib.request

import psycopg
import pytest

from harness import SWITCHYARD_BIN, PgCluster, free_port, wait_for, wait_for_port
from wire import RawClient, cstr, error_fields, message, startup_packet


def sqlite_exec(path, script):
    """Runs SQL on a SQLite file directly, not through the proxy."""
    db = sqlite3.connect(path)
    try:
        db.executescript(script)
    finally:
        db.close()


def sqlite_proxy(start_proxy, tmp_path, extra=""):
    return start_proxy(f"primary: sqlite:{tmp_path}/app.db\n{extra}")


def test_psql_session_against_a_sqlite_primary(start_proxy, tmp_path):
    proxy = sqlite_proxy(start_proxy, tmp_path)
    script = """
\\set VERBOSITY verbose
SELECT version();
CREATE TABLE accounts (id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL UNIQUE,
                       balance REAL NOT NULL DEFAULT 0 CHECK (balance >= 0));
INSERT INTO accounts (owner, balance) VALUES ('ann', 10), ('bob', 20) RETURNING id, owner;
BEGIN;
UPDATE accounts SET balance = balance + 5 WHERE owner = 'ann';
DELETE FROM accounts WHERE owner = 'bob';
COMMIT;
INSERT INTO accounts (owner, balance) VALUES ('ann', 1) ON CONFLICT (owner) DO UPDATE SET balance = excluded.balance + 100;
SELECT id, owner, balance FROM accounts ORDER BY id;
INSERT INTO accounts (owner) VALUES ('ann');
SHOW server_version;
"""
    out = subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(proxy.port), "-U", "app", "-d", "app"],
                         input=script, capture_output=True, text=True, timeout=30)
    assert "PostgreSQL 15.0 (switchyard" in out.stdout
    assert "INSERT 0 2" in out.stdout and "UPDATE 1" in out.stdout and "DELETE 1" in out.stdout
    assert "  1 | ann   |     101" in out.stdout, out.stdout
    assert "ERROR:  23505: UNIQUE constraint failed: accounts.owner" in out.stderr, out.stderr
    assert " 15.0" in out.stdout
    # /readyz opens a session on the SQLite primary, as it connects to a PostgreSQL one.
    with urllib.request.urlopen(f"http://127.0.0.1:{proxy.admin_port}/readyz", timeout=5) as ready:
        assert (ready.status, ready.read()) == (200, b"ready\n")


def test_psycopg_parameters_transactions_and_sqlstates(start_proxy, tmp_path):
    proxy = sqlite_proxy(start_proxy, tmp_path)
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("SET DateStyle = 'ISO, MDY'")
        conn.execute("SET extra_float_digits = 3")
        conn.execute("SET application_name = 'shop'")
        assert conn.info.parameter_status("application_name") == "shop"
        assert conn.execute("SHOW extra_float_digits").fetchone() == ("3",)
        for _ in range(3):  # prepared: Parse, Describe, Execute of an engine command
            assert conn.execute("SHOW DateStyle", prepare=True).fetchone() == ("ISO, MDY",)
        conn.execute("BEGIN")
        conn.execute("SET LOCAL application_name = 'inner'")
        assert conn.info.parameter_status("application_name") == "inner"
        conn.execute("COMMIT")
        assert conn.info.parameter_status("application_name") == "shop"
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SET client_encoding = 'LATIN1'")
        with pytest.raises(psycopg.errors.UndefinedObject):
            conn.execute("SET no_such_setting = 1")
        conn.execute("CREATE TABLE parents (id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE kids (id INTEGER PRIMARY KEY, parent INTEGER NOT NULL REFERENCES parents (id),"
                     " age INTEGER CHECK (age >= 0), name TEXT)")
        conn.execute("INSERT INTO parents (id) VALUES (%s), (%s)", (1, 2))
        for sqlstate, sql, params in [
                ("23505", "INSERT INTO parents (id) VALUES (%s)", (1,)),
                ("23503", "INSERT INTO kids (id, parent) VALUES (%s, %s)", (1, 99)),
                ("23502", "INSERT INTO kids (id, parent) VALUES (%s, %s)", (1, None)),
                ("23514", "INSERT INTO kids (id, parent, age) VALUES (%s, %s, %s)", (1, 1, -1)),
                ("42601", "INSERT INTO kids VALUE (1)", None),
                ("42P01", "SELECT * FROM nowhere", None),
                ("42703", "SELECT missing FROM kids", None)]:
            with pytest.raises(psycopg.Error) as caught:
                conn.execute(sql, params)
            assert caught.value.sqlstate == sqlstate, (sql, caught.value)

        conn.autocommit = False
        with conn.transaction():
            conn.execute("INSERT INTO kids (id, parent, age, name) VALUES (%s, %s, %s, %s)", (1, 1, 7, "ada"))
            with pytest.raises(psycopg.errors.UniqueViolation):
                with conn.transaction():  # a savepoint
                    conn.execute("INSERT INTO kids (id, parent) VALUES (%s, %s)", (1, 2))
            conn.execute("UPDATE kids SET age = age + %s WHERE id = %s", (1, 1))
        conn.execute("INSERT INTO kids (id, parent, name) VALUES (%s, %s, %s)", (2, 2, "bo"))
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        conn.rollback()
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO parents (id) VALUES (1)")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        # Prepared on the server after a few runs, in binary as well as text.
        for i in range(6):
            row = conn.execute("SELECT id, age, name FROM kids WHERE id = %s", (1,), prepare=True).fetchone()
            assert row == (1, 8, "ada")
        cur = conn.cursor(binary=True)
        assert cur.execute("SELECT id, name FROM kids WHERE age > %s", (0,)).fetchall() == [(1, "ada")]
        conn.commit()
        conn.autocommit = True
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM kids")
        conn.execute("ROLLBACK")
        assert conn.execute("SELECT count(*) FROM kids").fetchone() == (1,)
        conn.execute("WITH RECURSIVE s(v) AS (SELECT 10 UNION ALL SELECT v + 1 FROM s WHERE v < 109) "
                     "INSERT INTO parents (id) SELECT v FROM s")
        assert conn.execute("SELECT count(*), sum(id) FROM parents").fetchone() == (102, 5953)


def test_row_limits_suspend_and_resume_a_portal(start_proxy, tmp_path):
    proxy = sqlite_proxy(start_proxy, tmp_path)
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE n (v INTEGER PRIMARY KEY)")
        conn.execute("WITH RECURSIVE s(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM s WHERE v < 50) "
                     "INSERT INTO n (v) SELECT v FROM s")
    client = RawClient(proxy.port)
    client.send(startup_packet())
    client.read_until(b"Z")
    client.send(message(b"P", cstr("") + cstr("SELECT v FROM n ORDER BY v") + b"\0\0") +
                message(b"B", cstr("") + cstr("") + b"\0\0\0\0\0\0") +
                message(b"E", cstr("") + (20).to_bytes(4, "big")) +
                message(b"E", cstr("") + (0).to_bytes(4, "big")) + message(b"S"))
    seen = client.read_until(b"Z")
    tags = [tag for tag, _ in seen]
    assert tags.count(b"D") == 50 and b"s" in tags, tags
    assert seen[-2] == (b"C", b"SELECT 30\0")


def test_one_query_message_with_many_statements_and_a_trigger(start_proxy, tmp_path):
    proxy = sqlite_proxy(start_proxy, tmp_path)
    script = ("CREATE TABLE items (id INTEGER PRIMARY KEY, n INTEGER);"
              "CREATE TABLE audit (id INTEGER PRIMARY KEY, item INTEGER);"
              "CREATE TRIGGER log_items AFTER INSERT ON items BEGIN "
              "INSERT INTO audit (item) VALUES (new.id); UPDATE items SET n = n * 2 WHERE id = new.id; END;"
              + "".join(f"INSERT INTO items (id, n) VALUES ({i}, {i});" for i in range(1, 3001))
              + "SELECT count(*), sum(n) FROM items")
    client = RawClient(proxy.port)
    client.send(startup_packet())
    client.read_until(b"Z")
    client.send(message(b"Q", script.encode() + b"\0"))
    reply = client.read_until(b"Z")
    tags = [tag for tag, _ in reply]
    assert b"E" not in tags, reply[-3:]
    assert tags.count(b"C") == 3 + 3000 + 1
    assert (b"C", b"CREATE TRIGGER\0") in reply
    assert [body for tag, body in reply if tag == b"D"] == [b"\0\x02\0\0\0\x043000\0\0\0\x079003000"]
    assert reply[-1] == (b"Z", b"I")
    # A failing statement rolls back the whole message, as one implicit transaction.
    client.send(message(b"Q", b"INSERT INTO items (id, n) VALUES (5000, 1); INSERT INTO items (id) VALUES (1)\0"))
    reply = client.read_until(b"Z")
    assert error_fields(dict(reply)[b"E"])["C"] == "23505"
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM items WHERE id = 5000").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM audit").fetchone() == (3000,)


@pytest.fixture
def pg_secondary():
    """A PostgreSQL 15 cluster with PG_SCHEMA, for a SQLite primary to mirror to."""
    cluster = PgCluster().start()
    try:
        cluster.sql(PG_SCHEMA)
        yield cluster
    finally:
        cluster.destroy()


def sqlite_mirrored_to(cluster, start_proxy, tmp_path, extra=""):
    """A proxy mirroring a new SQLite primary (SQLITE_SCHEMA) to `cluster`, and the primary's
    path. `extra`: more config lines, indented ones adding to the mirror section."""
    path = tmp_path / "primary.db"
    sqlite_exec(path, SQLITE_SCHEMA)
    proxy = start_proxy(f"primary: sqlite:{path}\nsecondary: {cluster.uri()}\n"
                        f"mirror:\n  journal: {tmp_path}/journal.jsonl\n{extra}")
    return proxy, path


def test_a_query_of_more_statements_than_the_limit_is_refused_by_a_sqlite_primary(start_proxy, tmp_path,
                                                                                   pg_secondary):
    """As with a PostgreSQL primary (test_mirror): 54000 with the reason, and nothing runs."""
    proxy, path = sqlite_mirrored_to(pg_secondary, start_proxy, tmp_path,
                                     "read_percent: 100\nlimits:\n  max_statements_per_query: 100\n")
    client = RawClient(proxy.port)
    client.login_trust()
    client.send(message(b"Q", cstr("INSERT INTO items (name) VALUES ('x');" * 101)))
    answer = client.read_until(b"Z")
    assert [tag for tag, _ in answer] == [b"E", b"Z"]
    error = error_fields(answer[0][1])
    assert error["C"] == "54000" and "more than 100 statements" in error["M"], error
    client.send(message(b"Q", cstr("INSERT INTO items (name) VALUES ('x');" * 100)))
    assert [tag for tag, _ in client.read_until(b"Z")] == [b"C"] * 100 + [b"Z"]
    assert rows_from_sqlite(path, "items", "id") == rows_from_pg(pg_secondary, "items", "id")
    assert len(rows_from_pg(pg_secondary, "items", "id")) == 100


def test_ddl_is_refused_by_a_sqlite_primary_when_the_policy_is_reject(start_proxy, tmp_path, pg_secondary):
    """mirror.ddl: reject gives the same 0A000 and reason as with a PostgreSQL primary
    (test_mirror), in a Query and at Execute of a prepared statement, and nothing runs."""
    proxy, path = sqlite_mirrored_to(pg_secondary, start_proxy, tmp_path, "  ddl: reject\n")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="mirror.ddl is reject"):
            conn.execute("CREATE TABLE refused (id integer)")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="mirror.ddl is reject"):
            conn.execute("DROP TABLE counters", prepare=True)
        conn.execute("BEGIN")
        conn.execute("INSERT INTO items (name) VALUES ('kept apart')")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute("ALTER TABLE items ADD COLUMN refused integer")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        conn.execute("ROLLBACK")
        conn.execute("INSERT INTO items (name) VALUES ('still works')")
    tables = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' ORDER BY name"
    db = sqlite3.connect(path)
    try:
        assert db.execute(tables).fetchall() == [("counters",), ("items",)]
    finally:
        db.close()
    assert pg_secondary.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'refused'") == "0"
    assert rows_from_sqlite(path, "items", "id") == rows_from_pg(pg_secondary, "items", "id")
    assert [row[1] for row in rows_from_pg(pg_secondary, "items", "id")] == ["still works"]


def test_edge_values_round_trip_and_bad_ones_are_refused(start_proxy, tmp_path):
    proxy = sqlite_proxy(start_proxy, tmp_path)
    values = [(1, None, "", None, b""), (2, -2**63, "ünïcødé ✓", float("inf"), b"\x00\x01\x00\xff"),
              (3, 2**63 - 1, "a\tb\nc", float("-inf"), b"\x00"), (4, 0, "'quoted' \"x\"", 0.1, None)]
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE edge (id INTEGER PRIMARY KEY, i INTEGER, t TEXT, r REAL, b BLOB)")
        for row in values:
            conn.execute("INSERT INTO edge (id, i, t, r, b) VALUES (%s, %s, %s, %s, %s)", row)
        for binary in (False, True):
            got = conn.cursor(binary=binary).execute("SELECT id, i, t, r, b FROM edge ORDER BY id").fetchall()
            assert got == values
        assert conn.execute("SELECT count(*) FROM edge WHERE t = ''").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM edge WHERE t IS NULL").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InvalidTextRepresentation, match="NaN"):
            conn.execute("INSERT INTO edge (id, r) VALUES (%s, %s)", (5, float("nan")))
    # Invalid UTF-8, in a query and in a parameter.
    client = RawClient(proxy.port)
    client.send(startup_packet())
    client.read_until(b"Z")
    client.send(message(b"Q", b"INSERT INTO edge (id, t) VALUES (9, '\xff\xfe')\0"))
    reply = client.read_until(b"Z")
    assert error_fields(dict(reply)[b"E"])["C"] == "22021"
    client.send(message(b"P", cstr("") + cstr("INSERT INTO edge (id, t) VALUES (9, $1)") + b"\0\0") +
                message(b"B", cstr("") + cstr("") + b"\0\0" + b"\0\1" + (2).to_bytes(4, "big") + b"\xc3\x28" + b"\0\0") +
                message(b"E", cstr("") + b"\0\0\0\0") + message(b"S"))
    reply = client.read_until(b"Z")
    assert error_fields(dict(reply)[b"E"])["C"] == "22021"
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM edge WHERE id = 9").fetchone() == (0,)


def test_one_writer_at_a_time_and_cancel(start_proxy, tmp_path):
    proxy = start_proxy(f"primary: sqlite:{tmp_path}/app.db?busy_timeout=300\n")
    with psycopg.connect(proxy.dsn(), autocommit=True) as first, \
            psycopg.connect(proxy.dsn(), autocommit=True) as second:
        first.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
        first.execute("INSERT INTO t (id, v) VALUES (1, 0)")
        first.execute("BEGIN")
        first.execute("UPDATE t SET v = 1 WHERE id = 1")
        # Readers are not blocked by the writer and see the last committed state.
        assert second.execute("SELECT v FROM t").fetchone() == (0,)
        with pytest.raises(psycopg.errors.LockNotAvailable, match="SQLite write lock"):
            second.execute("UPDATE t SET v = 2 WHERE id = 1")
        first.execute("COMMIT")
        second.execute("UPDATE t SET v = v + 10 WHERE id = 1")
        assert first.execute("SELECT v FROM t").fetchone() == (11,)
        # A transaction that read an older snapshot may not write over a newer commit.
        first.execute("BEGIN")
        assert first.execute("SELECT v FROM t").fetchone() == (11,)
        second.execute("UPDATE t SET v = 12 WHERE id = 1")
        with pytest.raises(psycopg.errors.SerializationFailure):
            first.execute("UPDATE t SET v = v + 1 WHERE id = 1")
        first.execute("ROLLBACK")
        # Cancel reaches the engine through the proxy and interrupts the statement.
        timer = threading.Timer(0.5, first.cancel)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            first.execute("WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s) "
                          "SELECT count(*) FROM s")
        assert time.monotonic() - started < 20
        assert first.execute("SELECT v FROM t").fetchone() == (12,)


def test_embedded_default_serves_sqlite_with_no_config(tmp_path):
    port, admin_port = free_port(), free_port()
    log = open(tmp_path / "switchyard.log", "w")
    process = subprocess.Popen([str(SWITCHYARD_BIN), "--listen", f"127.0.0.1:{port}",
                                "--admin-listen", f"127.0.0.1:{admin_port}"],
                               cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process=process)
        out = subprocess.run(["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(port), "-c",
                              "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)", "-c",
                              "INSERT INTO notes (body) VALUES ('first')", "-c", "SELECT id, body FROM notes"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[-1] == "1|first"
        secondary = sqlite3.connect(tmp_path / "switchyard-data" / "secondary.db")
        assert secondary.execute("SELECT id, body FROM notes").fetchall() == [(1, "first")]
        text = (tmp_path / "switchyard.log").read_text()
        assert "sqlite:switchyard-data/primary.db" in text and "sqlite:switchyard-data/secondary.db" in text
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def test_an_unusable_sqlite_path_stops_the_start_with_the_reason(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    out = subprocess.run([str(SWITCHYARD_BIN), "--primary", f"sqlite:{blocker}/app.db",
                          "--listen", f"127.0.0.1:{free_port()}", "--admin-listen", f"127.0.0.1:{free_port()}"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert f"cannot create {blocker}" in out.stdout + out.stderr


# --- Mirroring between SQLite and PostgreSQL ------------------------------------------------

SQLITE_SCHEMA = """
CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, qty INTEGER NOT NULL DEFAULT 0,
                    price REAL, data BLOB, active BOOLEAN, updated TIMESTAMPTZ DEFAULT (now()));
CREATE TABLE counters (name TEXT PRIMARY KEY, hits INTEGER NOT NULL);
"""
PG_SCHEMA = """
CREATE TABLE items (id bigserial PRIMARY KEY, name text NOT NULL, qty bigint NOT NULL DEFAULT 0,
                    price float8, data bytea, active boolean, updated timestamptz DEFAULT clock_timestamp());
CREATE TABLE counters (name text PRIMARY KEY, hits bigint NOT NULL);
"""


def normalise(value):
    """One form for a value read from either database."""
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc).isoformat()
    if isinstance(value, str) and len(value) >= 19 and value[10] == "T":
        return datetime.datetime.fromisoformat(value).astimezone(datetime.timezone.utc).isoformat()
    if isinstance(value, (bytes, memoryview)):
        return bytes(value)
    if isinstance(value, bool):
        return int(value)
    return value


def rows_from_sqlite(path, table, order):
    db = sqlite3.connect(path)
    try:
        return [tuple(map(normalise, row)) for row in db.execute(f"SELECT * FROM {table} ORDER BY {order}")]
    finally:
        db.close()


def rows_from_pg(cluster, table, order):
    with psycopg.connect(cluster.uri()) as conn:
        return [tuple(map(normalise, row)) for row in conn.execute(f"SELECT * FROM {table} ORDER BY {order}")]


def workload(dsn, seconds, seed, errors):
    """Inserts with generated ids, updates, upserts, deletes (of one row and of several) and
    transactions on one session."""
    rng = random.Random(seed)
    mine = []
    deadline = time.monotonic() + seconds
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while time.monotonic() < deadline:
                choice = rng.random()
                if choice < 0.35 or not mine:
                    blob = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 8)))
                    row = conn.execute(
                        "INSERT INTO items (name, qty, price, data, active) VALUES (%s, %s, %s, %s, %s) RETURNING id",
                        (f"item-{seed}-ü-{rng.random()}", rng.randrange(-5, 100), rng.choice([None, rng.random() * 1e6]),
                         blob, rng.choice([True, False, None]))).fetchone()
                    mine.append(row[0])
                elif choice < 0.55:
                    conn.execute("UPDATE items SET qty = qty + %s, price = price * 1.5 WHERE id = %s",
                                 (rng.randrange(1, 5), rng.choice(mine)))
                elif choice < 0.75:
                    conn.execute("INSERT INTO counters (name, hits) VALUES (%s, 1) "
                                 "ON CONFLICT (name) DO UPDATE SET hits = counters.hits + 1",
                                 (f"c{rng.randrange(20)}",))
                elif choice < 0.8:
                    victim = mine.pop(rng.randrange(len(mine)))
                    conn.execute("DELETE FROM items WHERE id = %s", (victim,))
                elif choice < 0.85 and len(mine) >= 2:
                    # Several rows by one statement: one statement on the other side too.
                    victims = [mine.pop(rng.randrange(len(mine))) for _ in range(2)]
                    conn.execute("UPDATE items SET qty = qty * 2 WHERE id IN (%s, %s)", victims)
                    conn.execute("DELETE FROM items WHERE id IN (%s, %s)", victims)
                else:
                    with conn.transaction():
                        row = conn.execute("INSERT INTO items (name) VALUES (%s) RETURNING id",
                                           (f"tx-{seed}",)).fetchone()
                        conn.execute("UPDATE items SET active = %s, qty = qty - 1 WHERE id = %s", (True, row[0]))
                        conn.execute("INSERT INTO counters (name, hits) VALUES (%s, 1) "
                                     "ON CONFLICT (name) DO UPDATE SET hits = counters.hits + 1", ("tx",))
                    mine.append(row[0])
    except Exception as error:  # reported by the test, which expects none
        errors.append(repr(error))


@pytest.mark.parametrize("direction", ["sqlite-to-postgres", "postgres-to-sqlite", "sqlite-to-sqlite"])
def test_mirroring_between_dialects_under_concurrent_load(direction, start_proxy, tmp_path):
    cluster = None
    databases = {}
    try:
        for role, kind in zip(("primary", "secondary"), direction.split("-to-")):
            if kind == "postgres":
                cluster = PgCluster().start()
                cluster.sql(PG_SCHEMA)
                databases[role] = cluster.uri()
            else:
                path = tmp_path / f"{role}.db"
                sqlite_exec(path, SQLITE_SCHEMA)
                databases[role] = f"sqlite:{path}"
        proxy = start_proxy(f"primary: {databases['primary']}\nsecondary: {databases['secondary']}\n"
                            f"mirror:\n  ddl: primary_only\n  journal: {tmp_path}/journal.jsonl\n")
        errors = []
        threads = [threading.Thread(target=workload, args=(proxy.dsn(), 8, seed, errors)) for seed in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:  # an upsert moving its row's key
            conn.execute("INSERT INTO counters (name, hits) VALUES ('moved', 1)")
            conn.execute("INSERT INTO counters (name, hits) VALUES ('moved', 1) "
                         "ON CONFLICT (name) DO UPDATE SET name = 'moved again', hits = counters.hits + 1")
        assert proxy.metric("switchyard_mirror_failures_total", reason="secondary_error") == 0
        for table, order in (("items", "id"), ("counters", "name")):
            sides = []
            for role in ("primary", "secondary"):
                uri = databases[role]
                sides.append(rows_from_sqlite(uri[len("sqlite:"):], table, order) if uri.startswith("sqlite:")
                             else rows_from_pg(cluster, table, order))
            assert len(sides[0]) > 10
            assert sides[0] == sides[1], f"{table} differs"
        if direction.startswith("sqlite"):
            # A COPY reaches the SQLite engine as it is (no catalog query for its defaults first).
            out = subprocess.run(["psql", "-X", proxy.dsn(), "-c", "COPY items (name) FROM STDIN"],
                                 input="x\n", capture_output=True, text=True, timeout=30)
            assert "COPY is not supported by switchyard's SQLite engine" in out.stderr, out.stderr
    finally:
        if cluster:
            cluster.destroy()


@pytest.mark.parametrize("direction", ["sqlite-to-postgres", "postgres-to-sqlite"])
def test_writes_the_secondary_refuses_are_journaled_and_replayed(direction, start_proxy, tmp_path):
    """The secondary refuses a table's writes (SQLite: it lacks the table until the test
    creates it; PostgreSQL: a trigger refuses all but the replayer's, so the replayer cannot
    try before the test is ready): they go to the journal, and the replayer copies the rows
    from the primary."""
    cluster = PgCluster().start()
    try:
        sqlite_path = tmp_path / "side.db"
        sqlite_exec(sqlite_path, SQLITE_SCHEMA)
        cluster.sql(PG_SCHEMA)
        primary, secondary = f"sqlite:{sqlite_path}", cluster.uri()
        if direction == "postgres-to-sqlite":
            primary, secondary = secondary, primary
            sqlite_exec(sqlite_path, "DROP TABLE counters")
        else:
            cluster.sql("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN"
                        " IF current_setting('application_name') <> 'switchyard journal replayer'"
                        " THEN RAISE EXCEPTION 'not here'; END IF; RETURN COALESCE(NEW, OLD); END$$;"
                        "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE OR DELETE ON counters"
                        " FOR EACH ROW EXECUTE FUNCTION refuse()")
        proxy = start_proxy(f"primary: {primary}\nsecondary: {secondary}\n"
                            f"mirror:\n  ddl: primary_only\n  journal: {tmp_path}/journal.jsonl\n")
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            for name in ("a", "b", "a", "c"):
                conn.execute("INSERT INTO counters (name, hits) VALUES (%s, 1) "
                             "ON CONFLICT (name) DO UPDATE SET hits = counters.hits + 1", (name,))
            conn.execute("DELETE FROM counters WHERE name = %s", ("c",))
        assert proxy.metric("switchyard_mirror_failures_total", reason="secondary_error") >= 1
        assert proxy.metric("switchyard_journal_backlog") > 0
        if direction == "postgres-to-sqlite":
            sqlite_exec(sqlite_path, "CREATE TABLE counters (name TEXT PRIMARY KEY, hits INTEGER NOT NULL)")
        assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
        expected = [("a", 2), ("b", 1)]
        assert rows_from_sqlite(sqlite_path, "counters", "name") == expected
        assert rows_from_pg(cluster, "counters", "name") == expected
    finally:
        cluster.destroy()


def test_a_key_an_update_moved_on_a_sqlite_primary_is_gone_from_its_old_key_after_replay(start_proxy, tmp_path):
    """A key change the PostgreSQL secondary missed (stopped) is journaled under the new key;
    the replayer, reading the SQLite primary under its writer lock, removes the old key too."""
    cluster = PgCluster().start()
    try:
        sqlite_path = tmp_path / "side.db"
        sqlite_exec(sqlite_path, SQLITE_SCHEMA + "INSERT INTO counters (name, hits) VALUES ('old', 1), ('kept', 2);")
        cluster.sql(PG_SCHEMA + "INSERT INTO counters (name, hits) VALUES ('old', 1), ('kept', 2);")
        proxy = start_proxy(f"primary: sqlite:{sqlite_path}\nsecondary: {cluster.uri()}\n"
                            f"mirror:\n  ddl: primary_only\n  journal: {tmp_path}/journal.jsonl\n")
        cluster.stop()
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            conn.execute("UPDATE counters SET name = %s WHERE name = %s", ("moved", "old"))
        cluster.launch()
        assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=60), proxy.log()
        assert proxy.metric("switchyard_journal_replayed_total", result="failed") == 0, proxy.log()
        expected = [("kept", 2), ("moved", 1)]
        assert rows_from_sqlite(sqlite_path, "counters", "name") == expected
        assert rows_from_pg(cluster, "counters", "name") == expected
    finally:
        cluster.destroy()
