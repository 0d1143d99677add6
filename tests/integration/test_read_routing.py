"""Read routing against two real PostgreSQL 15 clusters: the cohort split, ramps, reloads,
read-your-writes, fallback to the primary, and shadow comparison."""
import os
import struct
import subprocess
import threading
import time

import psycopg
import pytest

from harness import PASSWORD, PgCluster, wait_for
from wire import RawClient, cstr, message

# Each side answers "which database am I": the table is created on each cluster directly,
# so a read through the proxy tells where it ran.
WHOAMI = "CREATE TABLE whoami (side text); INSERT INTO whoami VALUES ('{side}');"
ITEMS = ("CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);"
         "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 200) g;")


@pytest.fixture(scope="module")
def pair():
    primary, secondary = PgCluster().start(), PgCluster().start()
    for cluster, side in ((primary, "primary"), (secondary, "secondary")):
        cluster.sql(WHOAMI.format(side=side) + ITEMS)
        subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-h", str(cluster.root), "-p",
                        str(cluster.port), "-U", "postgres", "postgres"], check=True, capture_output=True)
    yield primary, secondary
    primary.destroy()
    secondary.destroy()


def routing_config(primary, secondary, tmp_path, percent, extra=""):
    return (f"primary: {primary.uri()}\nsecondary: {secondary.uri()}\n"
            f"mirror:\n  journal: {tmp_path}/journal.jsonl\n"
            f"read_percent: {percent}\n{extra}")


def side_of(pgconn, sql=b"SELECT side FROM whoami"):
    result = pgconn.exec_(sql)
    assert result.status == psycopg.pq.ExecStatus.TUPLES_OK, result.error_message
    return result.get_value(0, 0).decode()


def reload_to(proxy, config, expect_reloads):
    proxy.write_config(config)
    proxy.reload()
    assert wait_for(lambda: proxy.metric("switchyard_config_reloads_total", result="applied")
                    >= expect_reloads)


def sides_by_application(proxy, names, workers=4):
    """For each application_name, where `SELECT side FROM whoami` ran (autocommit, simple
    protocol, one SET + SELECT per name), over a few parallel sessions."""
    sides = {}
    chunks = [names[i::workers] for i in range(workers)]

    def run(chunk):
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            pgconn = conn.pgconn
            for name in chunk:
                assert pgconn.exec_(f"SET application_name = '{name}'".encode()).status == \
                    psycopg.pq.ExecStatus.COMMAND_OK
                sides[name] = side_of(pgconn)

    threads = [threading.Thread(target=run, args=(chunk,)) for chunk in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sides) == len(names)
    return sides


def test_split_matches_the_percentage_and_ramps_keep_the_cohort(pair, start_proxy, tmp_path):
    primary, secondary = pair
    extra = "read_routing:\n  key: application_name\n"
    proxy = start_proxy(routing_config(primary, secondary, tmp_path, 0, extra))
    names = [f"client-{i}" for i in range(10_000)]
    reloads = 0
    for percent in (0, 10, 50, 100):
        if percent:
            reloads += 1
            reload_to(proxy, routing_config(primary, secondary, tmp_path, percent, extra), reloads)
        sides = sides_by_application(proxy, names)
        share = 100 * sum(side == "secondary" for side in sides.values()) / len(names)
        assert abs(share - percent) <= 2, f"{share}% of reads went to the secondary at {percent}%"
    assert proxy.metric("switchyard_reads_total", reason="cohort", target="secondary") > 15_000
    assert proxy.metric("switchyard_read_fallbacks_total", reason="secondary_error") == 0

    # Ramping 10 -> 25 -> 10: the 10 % cohort stays inside the 25 % one and comes back whole.
    ramp = names[:3000]
    cohorts = {}
    for percent in (10, 25, 10):
        reloads += 1
        reload_to(proxy, routing_config(primary, secondary, tmp_path, percent, extra), reloads)
        sides = sides_by_application(proxy, ramp, workers=2)
        cohorts.setdefault(percent, []).append({n for n, side in sides.items() if side == "secondary"})
    first_10, back_10 = cohorts[10]
    assert first_10 <= cohorts[25][0]
    assert first_10 == back_10
    assert len(first_10) < len(cohorts[25][0])


def test_only_safe_reads_leave_the_primary_and_transactions_keep_their_decision(pair, start_proxy, tmp_path):
    primary, secondary = pair
    config = routing_config(primary, secondary, tmp_path, 100, "read_routing:\n  unit: transaction\n")
    proxy = start_proxy(config)
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        pgconn = conn.pgconn
        assert side_of(pgconn) == "secondary"
        assert side_of(pgconn, b"SELECT side FROM whoami ORDER BY 1") == "secondary"
        assert side_of(pgconn, b"WITH w AS (SELECT side FROM whoami) SELECT side FROM w") == "secondary"
        # Locking reads, connection-bound or unknown functions, writing CTEs: the primary.
        assert side_of(pgconn, b"SELECT side FROM whoami FOR SHARE") == "primary"
        assert side_of(pgconn, b"SELECT side FROM whoami WHERE pg_backend_pid() > 0") == "primary"
        assert side_of(pgconn, b"SELECT side FROM whoami WHERE random() >= 0") == "primary"
        # PostgreSQL's own functions are known by name: pure ones are safe; those that answer
        # from the catalogs read the primary's.
        assert side_of(pgconn, b"SELECT lower(upper(side)) FROM whoami") == "secondary"
        assert side_of(pgconn, b"SELECT side FROM whoami WHERE pg_relation_size('whoami') >= 0") == "primary"
        # A transaction that wrote reads its own writes on the primary.
        assert pgconn.exec_(b"BEGIN").status == psycopg.pq.ExecStatus.COMMAND_OK
        assert side_of(pgconn) == "secondary"  # not written yet: the read transaction's side
        pgconn.exec_(b"INSERT INTO items VALUES (1000, 'in a transaction')")
        assert side_of(pgconn) == "primary"
        assert side_of(pgconn, b"SELECT name FROM items WHERE id = 1000") == "in a transaction"
        assert pgconn.exec_(b"COMMIT").status == psycopg.pq.ExecStatus.COMMAND_OK
        assert secondary.sql("SELECT name FROM items WHERE id = 1000") == "in a transaction"
        # BEGIN READ ONLY runs on the secondary in a read-only transaction of its own.
        pgconn.exec_(b"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        assert side_of(pgconn) == "secondary"
        assert side_of(pgconn, b"SHOW transaction_isolation") == "repeatable read"
        secondary.sql("INSERT INTO items VALUES (1001, 'after the snapshot')")
        assert side_of(pgconn, b"SELECT count(*)::text FROM items WHERE id = 1001") == "0"
        assert pgconn.exec_(b"COMMIT").status == psycopg.pq.ExecStatus.COMMAND_OK
        assert side_of(pgconn, b"SELECT count(*)::text FROM items WHERE id = 1001") == "1"
        secondary.sql("DELETE FROM items WHERE id = 1001")

        # A reload changes the next decision; an open transaction keeps its own.
        pgconn.exec_(b"BEGIN")
        assert side_of(pgconn) == "secondary"
        reload_to(proxy, routing_config(primary, secondary, tmp_path, 0,
                                        "read_routing:\n  unit: transaction\n"), 1)
        assert side_of(pgconn) == "secondary"
        pgconn.exec_(b"COMMIT")
        assert side_of(pgconn) == "primary"
        assert pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert proxy.metric("switchyard_reads_total", reason="unsafe", target="primary") >= 3
    assert proxy.metric("switchyard_reads_total", reason="written_transaction", target="primary") >= 2
    # The secondary's read transactions all ended: no session sits idle in one.
    assert secondary.sql("SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'") == "0"


def test_reads_calling_the_databases_own_stable_functions_are_routed(pair, start_proxy, tmp_path):
    """A SELECT calling a function of the database's own was taken for a possible write: kept
    on the primary and run on the secondary too. PostgreSQL refuses writes in a function
    declared STABLE or IMMUTABLE, so switchyard asks the primary's catalog: such a SELECT is a
    read. A name with a VOLATILE function (any overload) stays a write, mirrored."""
    primary, secondary = pair
    proxy = start_proxy(routing_config(primary, secondary, tmp_path, 100))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        pgconn = conn.pgconn
        conn.execute("CREATE TABLE visits (id serial PRIMARY KEY, side text)")
        conn.execute("CREATE FUNCTION side_label(t text) RETURNS text STABLE LANGUAGE sql "
                     "AS $$ SELECT 'side ' || t $$")
        conn.execute("CREATE FUNCTION note_visit() RETURNS text LANGUAGE sql AS "
                     "$$ INSERT INTO visits (side) SELECT side FROM whoami; SELECT 'noted' $$")
        try:
            assert side_of(pgconn, b"SELECT side_label(side) FROM whoami") == "side secondary"
            # Through the extended protocol the name is learned after the first run.
            runs = [conn.execute("SELECT side_label(side) FROM whoami WHERE %s", (True,)).fetchone()[0]
                    for _ in range(3)]
            assert runs[1:] == ["side secondary"] * 2, runs
            # PostgreSQL's own STABLE functions may answer by the server they run on.
            assert side_of(pgconn, b"SELECT side FROM whoami WHERE inet_server_port() > 0") == "primary"
            # A volatile function may write: it runs on the primary and on the secondary.
            assert side_of(pgconn, b"SELECT note_visit()") == "noted"
            assert primary.sql("SELECT string_agg(side, ',') FROM visits") == "primary"
            assert secondary.sql("SELECT string_agg(side, ',') FROM visits") == "secondary"
            # A volatile overload makes the name a possible write; DDL through switchyard
            # makes the sessions ask again.
            conn.execute("CREATE FUNCTION side_label(n int) RETURNS text LANGUAGE sql "
                         "AS $$ SELECT 'side ' || nextval('visits_id_seq') $$")
            assert side_of(pgconn, b"SELECT side_label(side) FROM whoami") == "side primary"
        finally:
            conn.execute("DROP FUNCTION IF EXISTS side_label(text), side_label(int), note_visit()")
            conn.execute("DROP TABLE visits")


def test_asking_the_catalog_about_functions_keeps_the_clients_unnamed_statement(
        pair, start_proxy, tmp_path):
    """libpq's PQprepare with an empty name of a read calling a function of the database's
    own, then PQexecPrepared of it again and again: switchyard asks the primary's catalog
    about the function before the next message, and a simple Query would drop the client's
    unnamed statement (every execution failing with 26000)."""
    primary, secondary = pair
    proxy = start_proxy(routing_config(primary, secondary, tmp_path, 100))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        pgconn = conn.pgconn
        conn.execute("CREATE FUNCTION side_mark(t text) RETURNS text STABLE LANGUAGE sql "
                     "AS $$ SELECT 'mark ' || t $$")
        try:
            prepared = pgconn.prepare(b"", b"SELECT side_mark(side) || $1 FROM whoami")
            assert prepared.status == psycopg.pq.ExecStatus.COMMAND_OK, prepared.error_message
            answers = []
            for suffix in (b"!", b"?", b"."):
                result = pgconn.exec_prepared(b"", [suffix])
                assert result.status == psycopg.pq.ExecStatus.TUPLES_OK, result.error_message
                answers.append(result.get_value(0, 0).decode())
            # Prepared before the function was known: the primary's; learned since: routed.
            assert answers[0] in ("mark primary!", "mark secondary!"), answers
            assert answers[1:] == ["mark secondary?", "mark secondary."], answers
        finally:
            conn.execute("DROP FUNCTION side_mark(text)")


def test_a_temporary_table_leaves_what_sessions_learned_of_functions(pair, start_proxy, tmp_path):
    """DDL through switchyard has every session ask the catalog about functions again, and
    an extended-protocol read calling one not known then is routed only from its second run.
    DDL that only creates temporary objects (a staging table), or acts only on the session's
    temporary relations (indexes it, alters, truncates and drops them), changes nothing
    another session sees: a new read calling a function learned before is routed from its
    first. The same DDL on a permanent table the temporary one hid does change it."""
    primary, secondary = pair
    for cluster in pair:
        cluster.sql("CREATE TABLE kept (id int)")
    proxy = start_proxy(routing_config(primary, secondary, tmp_path, 100))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn, psycopg.connect(proxy.dsn()) as stager:
        conn.execute("CREATE FUNCTION side_tag(t text) RETURNS text STABLE LANGUAGE sql "
                     "AS $$ SELECT 'tag ' || t $$")
        reads = iter(range(1, 100))

        def first_run_side():  # a read of a text not run before
            return conn.execute(f"SELECT side_tag(side) FROM whoami WHERE %s AND {next(reads)} > 0",
                                (True,)).fetchone()[0]
        try:
            assert side_of(conn.pgconn, b"SELECT side_tag(side) FROM whoami") == "tag secondary"
            with stager.transaction():
                stager.execute("CREATE TEMP TABLE stage (id int PRIMARY KEY) ON COMMIT DROP")
                stager.execute("INSERT INTO stage VALUES (1)")
            with stager.transaction():
                stager.execute("CREATE TEMP TABLE kept (id int)")
            assert first_run_side() == "tag secondary"
            stager.autocommit = True
            for ddl in ("CREATE INDEX kept_id ON kept (id)", "ALTER TABLE kept ADD COLUMN note text",
                        "TRUNCATE kept", "DROP INDEX kept_id"):
                stager.execute(ddl)  # the extended protocol
                assert first_run_side() == "tag secondary", ddl
            with stager.transaction():
                stager.execute("ALTER TABLE kept ADD COLUMN more int")
            assert first_run_side() == "tag secondary"
            stager.pgconn.exec_(b"DROP TABLE kept")  # the simple protocol
            assert first_run_side() == "tag secondary"
            stager.autocommit = False
            for _ in range(2):
                with stager.transaction():  # a batch staged through a table it drops itself
                    stager.execute("CREATE TEMP TABLE batch (id int PRIMARY KEY, d int)")
                    stager.execute("INSERT INTO batch SELECT DISTINCT (random() * 9)::int + 1, 1 "
                                   "FROM generate_series(1, 5) ON CONFLICT DO NOTHING")
                    stager.execute("UPDATE kept k SET id = k.id + b.d FROM batch b WHERE k.id = b.id")
                    stager.execute("DROP TABLE batch", prepare=True)  # then bound, not parsed
                assert first_run_side() == "tag secondary"
            stager.autocommit = True
            assert stager.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'kept'").fetchone()[0] == 1
            stager.pgconn.exec_(b"ALTER TABLE kept ADD COLUMN note text")  # the permanent one now
            assert first_run_side() == "tag primary"
        finally:
            conn.execute("DROP FUNCTION side_tag(text)")
            conn.execute("DROP TABLE kept")


@pytest.mark.parametrize("write_mode", ["sync", "async"])
def test_reads_see_the_sessions_own_writes_under_concurrent_load(pair, start_proxy, tmp_path, write_mode):
    primary, secondary = pair
    table = f"ryw_{write_mode}"
    for cluster in pair:
        cluster.sql(f"CREATE TABLE {table} (id bigint PRIMARY KEY, writer int, n int)")
    proxy = start_proxy(routing_config(primary, secondary, tmp_path, 100, f"write_mode: {write_mode}\n"))
    failures = []

    def client(writer):
        try:
            with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
                pgconn = conn.pgconn
                for n in range(150):
                    key = writer * 1000 + n
                    pgconn.exec_(f"INSERT INTO {table} VALUES ({key}, {writer}, {n})".encode())
                    seen = side_of(pgconn, f"SELECT count(*)::text FROM {table} WHERE id = {key}".encode())
                    if seen != "1":
                        failures.append(f"writer {writer} did not see its row {key}")
                    pgconn.exec_(f"UPDATE {table} SET n = n + 1 WHERE id = {key}".encode())
                    seen = side_of(pgconn, f"SELECT n::text FROM {table} WHERE id = {key}".encode())
                    if seen != str(n + 1):
                        failures.append(f"writer {writer} read n={seen} after its update of {key}")
        except Exception as error:  # noqa: BLE001 - any client error fails the test
            failures.append(repr(error))

    threads = [threading.Thread(target=client, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:5]
    on_secondary = proxy.metric("switchyard_reads_total", reason="cohort", target="secondary")
    held_back = proxy.metric("switchyard_reads_total", reason="unapplied_writes", target="primary")
    assert on_secondary + held_back >= 8 * 300
    if write_mode == "sync":
        assert on_secondary >= 8 * 300  # applied before the primary's commit: never held back
    else:
        assert held_back > 0  # a read right behind its write waits for the secondary on the primary


def test_secondary_killed_while_half_the_reads_go_to_it(start_proxy, tmp_path):
    primary, secondary = PgCluster().start(), PgCluster().start()
    try:
        for cluster in (primary, secondary):
            subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-h", str(cluster.root), "-p",
                            str(cluster.port), "-U", "postgres", "postgres"], check=True, capture_output=True)
        proxy = start_proxy(routing_config(primary, secondary, tmp_path, 50))
        command = ["pgbench", "-n", "-S", "-T", "8", "-c", "16", "-j", "2", "-h", "127.0.0.1",
                   "-p", str(proxy.port), "-U", "postgres", "postgres"]
        bench = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env={**os.environ, "PGPASSWORD": PASSWORD})
        if not wait_for(lambda: proxy.metric("switchyard_reads_total", reason="cohort",
                                             target="secondary") > 500, timeout=20):
            bench.kill()
            out, err = bench.communicate()
            pytest.fail(f"not 500 reads on the secondary in 20 s; pgbench:\n{out}{err}\n{proxy.log()}")
        secondary.signal(9)
        out, err = bench.communicate(timeout=60)
        assert bench.returncode == 0, out + err
        assert "aborted" not in err, err
        assert proxy.metric("switchyard_read_fallbacks_total", reason="connect") >= 1
        # After the kill every read is answered by the primary.
        assert proxy.metric("switchyard_reads_total", reason="secondary_unavailable", target="primary") > 0
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM pgbench_branches").fetchone() == (1,)
    finally:
        primary.destroy()
        secondary.destroy()


def test_a_secondary_error_is_retried_on_the_primary(pair, start_proxy, tmp_path):
    primary, secondary = pair
    primary.sql("CREATE TABLE only_on_primary (v int); INSERT INTO only_on_primary VALUES (42)")
    proxy = start_proxy(routing_config(primary, secondary, tmp_path, 100))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT v FROM only_on_primary").fetchall() == [(42,)]
        with conn.transaction():
            assert side_of(conn.pgconn) == "secondary"
            assert conn.execute("SELECT v FROM only_on_primary").fetchall() == [(42,)]
            assert side_of(conn.pgconn) == "primary"  # the secondary's transaction is gone
        # A genuine error comes from the primary, exactly as without routing.
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1 / (v - 42) FROM only_on_primary")
        assert side_of(conn.pgconn) == "secondary"
        # In a failed transaction the primary answers, as it would without switchyard.
        pgconn = conn.pgconn
        pgconn.exec_(b"BEGIN")
        pgconn.exec_(b"SELECT 1/0")
        result = pgconn.exec_(b"SELECT side FROM whoami")
        assert result.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"25P02"
        pgconn.exec_(b"ROLLBACK")
        assert side_of(pgconn) == "secondary"
    assert proxy.metric("switchyard_read_fallbacks_total", reason="secondary_error") >= 3


def test_a_read_slower_than_the_timeout_there_keeps_writes_on_the_secondary(pair, start_proxy, tmp_path):
    """A routed read that outlasts read_routing.timeout is answered by the primary and
    cancelled on the secondary. It shows a slow read, not a secondary that is down: reads
    stay off the secondary for the back-off period, while writes go on reaching it (they
    went to the journal, every session's, for that second)."""
    primary, secondary = pair
    primary.sql("CREATE FUNCTION slow_there() RETURNS int STABLE LANGUAGE sql AS 'SELECT 1'")
    secondary.sql("CREATE FUNCTION slow_there() RETURNS int STABLE LANGUAGE sql "
                  "AS 'SELECT 2 FROM pg_sleep(5)'")
    proxy = start_proxy(routing_config(primary, secondary, tmp_path, 100,
                                       "read_routing:\n  timeout: 300ms\n"))
    sleeping = ("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                "AND query LIKE '%slow_there()%' AND pid <> pg_backend_pid()")
    with psycopg.connect(proxy.dsn(), autocommit=True) as reader, \
            psycopg.connect(proxy.dsn(), autocommit=True) as writer:
        assert reader.execute("SELECT slow_there()").fetchone() == (1,)
        assert proxy.metric("switchyard_read_fallbacks_total", reason="timeout") == 1
        writer.execute("INSERT INTO items VALUES (9001, 'written after a slow read')")
        assert side_of(reader.pgconn) == "primary"  # reads wait out the back-off
        assert wait_for(lambda: secondary.sql(sleeping) == "0", timeout=2)
        time.sleep(1.2)
        assert side_of(reader.pgconn) == "secondary"
    assert proxy.metric("switchyard_journal_entries_total") == 0, proxy.log()
    assert secondary.sql("SELECT name FROM items WHERE id = 9001") == "written after a slow read"


def test_routed_reads_describe_their_columns_as_the_primary_does(pair, start_proxy, tmp_path):
    """Tables and user types have other OIDs on the secondary, and a dropped column moves
    column numbers on: a read the secondary answers still describes its columns with the
    primary's, byte for byte, and catalog reads go to the primary, so a driver that looks a
    type up by OID finds the primary's."""
    primary, secondary = pair
    schema = ("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');"
              "CREATE TABLE people (id int PRIMARY KEY, {extra} name text, feeling mood);"
              "INSERT INTO people (id, name, feeling) VALUES (1, 'ann', 'happy'), (2, 'bob', 'sad');"
              "GRANT SELECT ON people, whoami TO trustuser;")
    primary.sql(schema.format(extra=""))
    secondary.sql("CREATE TYPE filler AS ENUM ('x'); CREATE TABLE filler_t (a int);"
                  + schema.format(extra="gone int,") + "ALTER TABLE people DROP COLUMN gone;")
    oids = "SELECT 'people'::regclass::oid, 'mood'::regtype::oid"
    assert primary.sql(oids) != secondary.sql(oids)
    read = "SELECT p.id, p.name, p.feeling, p.ctid, w.side FROM people p, whoami w ORDER BY p.id"

    def answer(port):
        client = RawClient(port)
        client.login_trust(user="trustuser")
        client.send(message(b"Q", cstr(read)))
        got = client.read_until(b"Z")
        client.send(message(b"X"))
        return [(tag, body) for tag, body in got if tag in (b"T", b"D")]

    proxy = start_proxy(routing_config(primary, secondary, tmp_path, 100))
    direct = answer(primary.port)
    for _ in range(2):  # matched on the first read of the pair, known on the second
        routed = answer(proxy.port)
        assert routed[0] == direct[0]  # the RowDescription
        assert all(body.endswith(b"secondary") for tag, body in routed[1:])
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        info = psycopg.types.enum.EnumInfo.fetch(conn, "mood")
        assert info.oid == int(primary.sql("SELECT 'mood'::regtype::oid"))
        psycopg.types.enum.register_enum(info, conn)
        assert [row[0].name for row in conn.execute("SELECT feeling FROM people ORDER BY id")] == \
            ["happy", "sad"]
        assert side_of(conn.pgconn) == "secondary"
    assert proxy.metric("switchyard_reads_total", reason="undescribed", target="primary") == 0
    # A type only the secondary has cannot be described as the primary would: the primary
    # answers, as it would without switchyard.
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UndefinedObject):
            conn.execute("SELECT 'x'::filler")
    assert proxy.metric("switchyard_reads_total", reason="undescribed", target="primary") == 1


def test_shadow_comparison_catches_a_row_altered_on_the_secondary(pair, start_proxy, tmp_path):
    primary, secondary = pair
    for percent in (0, 100):  # the primary answers and the secondary is compared, then the reverse
        workdir = tmp_path / f"at-{percent}"
        workdir.mkdir()
        proxy = start_proxy(routing_config(primary, secondary, workdir, percent,
                                           "read_routing:\n  compare_percent: 100\n"))
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            pgconn = conn.pgconn
            # Rows in a different physical order on the two sides still match without ORDER BY.
            secondary.sql("UPDATE items SET name = name WHERE id <= 100")
            for _ in range(3):
                assert pgconn.exec_(b"SELECT id, name FROM items WHERE id <= 150").ntuples == 150
            # The comparison finishes after the client has its answer.
            assert wait_for(lambda: proxy.metric("switchyard_shadow_comparisons_total", result="match") >= 3)
            assert proxy.metric("switchyard_shadow_comparisons_total", result="mismatch") == 0

            secondary.sql("UPDATE items SET name = 'tampered' WHERE id = 7")
            result = pgconn.exec_(b"SELECT id, name FROM items WHERE id BETWEEN 5 AND 9 ORDER BY id")
            names = [result.get_value(i, 1).decode() for i in range(result.ntuples)]
            assert ("tampered" in names) == (percent == 100)  # the client got its side's rows
            assert wait_for(lambda: proxy.metric("switchyard_shadow_comparisons_total", result="mismatch") == 1)
            secondary.sql("UPDATE items SET name = 'item 7' WHERE id = 7")
        assert "shadow comparison mismatch, statement fingerprint" in proxy.log()


def test_extended_protocol_reads_are_routed_with_their_parameters(pair, start_proxy, tmp_path):
    primary, secondary = pair
    proxy = start_proxy(routing_config(primary, secondary, tmp_path, 100,
                                       "read_routing:\n  compare_percent: 100\n"))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        query = "SELECT side, %s::int AS n FROM whoami"
        assert conn.execute(query, (7,)).fetchall() == [("secondary", 7)]
        for n in range(5):  # server-side prepared after a few runs, and explicitly
            assert conn.execute(query, (n,), prepare=True).fetchall() == [("secondary", n)]
        cur = conn.cursor(binary=True)
        assert cur.execute(query, (8,)).fetchall() == [("secondary", 8)]
        assert [c.name for c in cur.description] == ["side", "n"]
        rows = conn.execute("SELECT id, name FROM items WHERE id < %s ORDER BY id", (4,)).fetchall()
        assert rows == [(1, "item 1"), (2, "item 2"), (3, "item 3")]
        # A table only the primary has: retried there, parameters and all.
        primary.sql("CREATE TABLE IF NOT EXISTS extended_only (v int); TRUNCATE extended_only;"
                    "INSERT INTO extended_only VALUES (5)")
        assert conn.execute("SELECT v + %s FROM extended_only", (1,)).fetchall() == [(6,)]
        # An error earlier in the cycle skips the routed Execute, as PostgreSQL does.
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM no_such_table WHERE 1 = %s", (1,))
        assert conn.execute(query, (9,)).fetchall() == [("secondary", 9)]
        with conn.transaction():
            assert conn.execute(query, (10,)).fetchall() == [("secondary", 10)]
            conn.execute("INSERT INTO items VALUES (%s, 'extended')", (2000,))
            assert conn.execute(query, (11,)).fetchall() == [("primary", 11)]
    command = ["pgbench", "-n", "-S", "-M", "prepared", "-t", "200", "-c", "4", "-h", "127.0.0.1",
               "-p", str(proxy.port), "-U", "postgres", "postgres"]
    bench = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PGPASSWORD": PASSWORD})
    assert bench.returncode == 0, bench.stdout + bench.stderr
    assert proxy.metric("switchyard_reads_total", reason="cohort", target="secondary") >= 800
    # Bound reads the secondary served are compared once their cycle ended: pgbench's rows
    # are the same on both sides, whoami's are not.
    assert proxy.metric("switchyard_shadow_comparisons_total", result="match") >= 800
    mismatches = proxy.metric("switchyard_shadow_comparisons_total", result="mismatch")
    assert 1 <= mismatches <= 9  # the whoami reads outside a transaction


def test_prepared_reads_the_secondary_answers_send_nothing_to_the_primary(pair, start_proxy, tmp_path):
    """A routed read of a prepared statement keeps its Bind and Describe from the primary:
    switchyard answers them (the RowDescription from the primary's first answer) and the
    cycle's Sync. Whatever else the cycle does still reaches the primary in order."""
    primary, secondary = pair
    proxy = start_proxy(routing_config(primary, secondary, tmp_path, 100))

    def bytes_to_primary():
        time.sleep(0.3)  # the network thread adds its counts to /metrics every 100 ms
        return proxy.metric("switchyard_backend_bytes_total", backend="primary", direction="to_backend")

    for cluster, value in ((primary, 1), (secondary, 2)):
        cluster.sql(f"DROP TABLE IF EXISTS held; CREATE TABLE held (v int); INSERT INTO held VALUES ({value})")
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        query = "SELECT side, %s::int AS n FROM whoami"
        assert conn.execute(query, (0,), prepare=True).fetchall() == [("secondary", 0)]
        before = bytes_to_primary()
        for n in range(1, 6):
            cur = conn.execute(query, (n,), prepare=True)
            assert cur.fetchall() == [("secondary", n)]
            assert [(c.name, c.type_code) for c in cur.description] == [("side", 25), ("n", 23)]
        with conn.pipeline():  # several reads before one Sync
            cursors = [conn.execute(query, (n,), prepare=True) for n in range(3)]
        assert [cur.fetchall() for cur in cursors] == [[("secondary", n)] for n in range(3)]
        assert bytes_to_primary() == before
        # Binary results: described once by the primary for these formats, then not again.
        binary = conn.cursor(binary=True)
        for n in range(3):
            assert binary.execute(query, (n,), prepare=True).fetchall() == [("secondary", n)]
        after_binary = bytes_to_primary()
        assert binary.execute(query, (7,), prepare=True).fetchall() == [("secondary", 7)]
        assert bytes_to_primary() == after_binary
        # DDL through switchyard may change what a statement returns: described anew, once.
        conn.execute("CREATE TABLE held_ddl (v int)")
        mark = bytes_to_primary()
        assert conn.execute(query, (8,), prepare=True).fetchall() == [("secondary", 8)]
        assert bytes_to_primary() > mark
        mark = bytes_to_primary()
        assert conn.execute(query, (9,), prepare=True).fetchall() == [("secondary", 9)]
        assert bytes_to_primary() == mark
        conn.execute("DROP TABLE held_ddl")

        # The secondary fails the read: Bind, Describe and Execute run on the primary instead.
        read_held = "SELECT v, %s::int FROM held"
        for _ in range(2):
            assert conn.execute(read_held, (5,), prepare=True).fetchall() == [(2, 5)]
        secondary.sql("DROP TABLE held")
        assert conn.execute(read_held, (6,), prepare=True).fetchall() == [(1, 6)]
        assert proxy.metric("switchyard_read_fallbacks_total", reason="secondary_error") >= 1
        primary.sql("DROP TABLE held")

        # A pipeline, one Sync: a routed read, a write, and a read that must see the write.
        with conn.pipeline():
            first = conn.execute(query, (1,), prepare=True)
            conn.execute("INSERT INTO items VALUES (%s, 'pipelined')", (3000,))
            second = conn.execute(query, (2,), prepare=True)
        assert first.fetchall() == [("secondary", 1)] and second.fetchall() == [("primary", 2)]
        assert conn.execute("SELECT name FROM items WHERE id = 3000").fetchall() == [("pipelined",)]
        conn.execute("DELETE FROM items WHERE id = 3000")

    # The portal the secondary answered, named again before the cycle ends.
    client = RawClient(proxy.port)
    client.login_trust()
    client.send(message(b"P", cstr("s") + cstr("SELECT side FROM whoami") + struct.pack("!h", 0))
                + message(b"S"))
    assert [tag for tag, _ in client.read_until(b"Z")] == [b"1", b"Z"]
    bind = message(b"B", cstr("p") + cstr("s") + struct.pack("!hhh", 0, 0, 0))
    for _ in range(2):  # the second time with the RowDescription cached
        client.send(bind + message(b"D", b"P" + cstr("p")) + message(b"E", cstr("p") + struct.pack("!I", 0))
                    + message(b"D", b"P" + cstr("p")) + message(b"C", b"P" + cstr("p"))
                    + message(b"S"))
        answer = client.read_until(b"Z")
        assert [tag for tag, _ in answer] == [b"2", b"T", b"D", b"C", b"T", b"3", b"Z"]
        assert answer[2][1].endswith(b"secondary") and answer[6][1] == b"I"
    client.send(message(b"X"))


def test_reads_parsed_into_the_unnamed_statement_send_nothing_to_the_primary(pair, start_proxy, tmp_path):
    """Clients that bind values parse each read into the unnamed statement (psycopg without
    prepare, JDBC, pgbench -M extended): once the primary described a text, its Parse is held
    with the Bind and answered by switchyard when the secondary takes the read. The unnamed
    statement reaches the primary, unseen, when a later message needs it."""
    primary, secondary = pair
    proxy = start_proxy(routing_config(primary, secondary, tmp_path, 100))

    def bytes_to_primary():
        time.sleep(0.3)  # the network thread adds its counts to /metrics every 100 ms
        return proxy.metric("switchyard_backend_bytes_total", backend="primary", direction="to_backend")

    with psycopg.connect(proxy.dsn(), autocommit=True, prepare_threshold=None) as conn:
        query = "SELECT side, %s::int AS n FROM whoami"
        assert conn.execute(query, (0,)).fetchall() == [("secondary", 0)]
        before = bytes_to_primary()
        for n in range(1, 6):
            cur = conn.execute(query, (n,))
            assert cur.fetchall() == [("secondary", n)]
            assert [(c.name, c.type_code) for c in cur.description] == [("side", 25), ("n", 23)]
        assert bytes_to_primary() == before
        # The secondary fails the read: Parse, Bind, Describe and Execute run on the primary.
        for cluster, value in ((primary, 1), (secondary, 2)):
            cluster.sql(f"DROP TABLE IF EXISTS held; CREATE TABLE held (v int); INSERT INTO held VALUES ({value})")
        read_held = "SELECT v, %s::int FROM held"
        for _ in range(2):
            assert conn.execute(read_held, (5,)).fetchall() == [(2, 5)]
        secondary.sql("DROP TABLE held")
        assert conn.execute(read_held, (6,)).fetchall() == [(1, 6)]
        primary.sql("DROP TABLE held")
        # A pipeline, one Sync: a routed read, a write, and a read that must see the write.
        with conn.pipeline():
            first = conn.execute(query, (1,))
            conn.execute("INSERT INTO items VALUES (%s, 'pipelined')", (3001,))
            second = conn.execute(query, (2,))
        assert first.fetchall() == [("secondary", 1)] and second.fetchall() == [("primary", 2)]
        conn.execute("DELETE FROM items WHERE id = 3001")

    client = RawClient(proxy.port)
    client.login_trust()
    parse = message(b"P", cstr("") + cstr("SELECT side FROM whoami") + struct.pack("!h", 0))
    bind = message(b"B", cstr("") + cstr("") + struct.pack("!hhh", 0, 0, 0))
    run = message(b"D", b"P" + cstr("")) + message(b"E", cstr("") + struct.pack("!I", 0))
    for _ in range(2):  # the second time described from the cache, so held
        client.send(parse + bind + run + message(b"S"))
        answer = client.read_until(b"Z")
        assert [tag for tag, _ in answer] == [b"1", b"2", b"T", b"D", b"C", b"Z"]
        assert answer[3][1].endswith(b"secondary")
    # The unnamed statement, bound and described again without a new Parse.
    client.send(bind + run + message(b"D", b"S" + cstr("")) + message(b"S"))
    assert [tag for tag, _ in client.read_until(b"Z")] == [b"2", b"T", b"D", b"C", b"t", b"T", b"Z"]
    # A Parse alone in its cycle.
    client.send(parse + message(b"S"))
    assert [tag for tag, _ in client.read_until(b"Z")] == [b"1", b"Z"]
    client.send(message(b"X"))


def test_sessions_without_settings_read_on_shared_secondary_connections(pair, start_proxy, tmp_path):
    primary, secondary = pair
    proxy = start_proxy(routing_config(primary, secondary, tmp_path, 100, "workers: 1\n"))
    sessions = [psycopg.connect(proxy.dsn(), autocommit=True) for _ in range(6)]
    try:
        for _ in range(3):
            for conn in sessions:
                assert side_of(conn.pgconn) == "secondary"
                bound = conn.execute("SELECT side, %s::int FROM whoami", (1,), prepare=True)
                assert bound.fetchall() == [("secondary", 1)]
        assert secondary.client_sessions() == 1
        # A read transaction holds its connection until it ends; the others read meanwhile.
        with sessions[0].transaction():
            assert sessions[0].execute("SELECT side FROM whoami").fetchone() == ("secondary",)
            assert side_of(sessions[1].pgconn) == "secondary"
            assert secondary.client_sessions() == 2
            assert sessions[0].execute("SELECT side FROM whoami WHERE true").fetchone() == ("secondary",)
        for conn in sessions:
            assert side_of(conn.pgconn) == "secondary"
        assert secondary.client_sessions() == 2  # both kept idle, as many as sessions need
        # A setting of the session's own: its reads get a connection no one else shares.
        sessions[2].execute("SET search_path = public")
        assert side_of(sessions[2].pgconn) == "secondary"
        assert secondary.client_sessions() == 3
    finally:
        for conn in sessions:
            conn.close()
    assert wait_for(lambda: secondary.client_sessions() == 0, timeout=10)
