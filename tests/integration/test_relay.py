"""The relay against a real PostgreSQL 15: psql, pgbench, psycopg and raw protocol."""
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request

import psycopg
import pytest

from harness import Proxy, wait_for
from wire import RawClient, cstr, error_fields, message


@pytest.fixture(params=["disable", "require", "unix-socket"],
                ids=["relay-loop", "tls-to-primary", "unix-socket"])
def proxy(pg, start_proxy, request):
    """Every relay test runs on both relays: a session without TLS is relayed by a relay loop,
    one with TLS to the primary by its own coroutines; and with the primary reached through
    its Unix-domain socket (relay loop; sslmode=require is ignored there, as libpq does)."""
    if request.param == "unix-socket":
        return start_proxy(f"primary: {pg.socket_uri(sslmode='require')}\n")
    return start_proxy(f"primary: {pg.uri(sslmode=request.param)}\n")


def psql(proxy, sql, **dsn):
    return subprocess.run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", proxy.dsn(**dsn), "-c", sql],
                          capture_output=True, text=True, timeout=30)


def test_psql_queries_errors_and_copy(proxy):
    out = psql(proxy, "SELECT 40 + 2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "42"

    failed = subprocess.run(["psql", "-X", "-v", "VERBOSITY=verbose", proxy.dsn(), "-c", "SELECT 1/0"],
                            capture_output=True, text=True, timeout=30)
    assert "22012" in failed.stderr and "division by zero" in failed.stderr

    script = ("DROP TABLE IF EXISTS relay_copy; CREATE TABLE relay_copy(id int, name text);\n"
              "\\copy relay_copy FROM stdin\n1\tone\n2\ttwo\n\\.\n"
              "SELECT string_agg(id || ':' || name, ',' ORDER BY id) FROM relay_copy;\n")
    out = subprocess.run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", proxy.dsn()], input=script,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "1:one,2:two"


def test_pgbench_simple_extended_prepared(proxy, pg):
    dsn = proxy.dsn()
    init = subprocess.run(["pgbench", "-i", "-s", "1", "-q", dsn], capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    for mode in ("simple", "extended", "prepared"):
        run = subprocess.run(["pgbench", "-n", "-M", mode, "-c", "4", "-j", "2", "-t", "150", dsn],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert "number of failed transactions: 0" in run.stdout
    # TPC-B writes: every transaction leaves one history row, seen directly on the primary.
    assert pg.sql("SELECT count(*) FROM pgbench_history") == str(3 * 4 * 150)
    # Relay counters reach /metrics in batches every 100 ms.
    assert wait_for(lambda: proxy.metric("switchyard_backend_queries_total", backend="primary") > 3 * 4 * 150)


def test_psycopg_prepared_binary_copy_notice_parameter_status(proxy):
    with psycopg.connect(proxy.dsn(), prepare_threshold=0, autocommit=True) as conn:
        for i in range(3):
            row = conn.execute("SELECT %s::int + %s::int", (i, 10), prepare=True).fetchone()
            assert row == (i + 10,)
        prepared = conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0]
        assert prepared >= 1, "psycopg should have prepared the statement on the server"

        blob = bytes(range(256)) + b"\x00tail"
        cur = conn.cursor(binary=True)
        cur.execute("SELECT %b::bytea, %b::int8", (blob, -(2 ** 63)))
        assert cur.fetchone() == (blob, -(2 ** 63))

        conn.execute("DROP TABLE IF EXISTS relay_pcopy")
        conn.execute("CREATE TABLE relay_pcopy(id int, v text)")
        with conn.cursor().copy("COPY relay_pcopy FROM STDIN") as copy:
            for i in range(1000):
                copy.write_row((i, f"value {i} ✓"))
        with conn.cursor().copy("COPY (SELECT * FROM relay_pcopy ORDER BY id) TO STDOUT") as copy:
            rows = list(copy.rows())
        assert len(rows) == 1000 and rows[999] == ("999", "value 999 ✓")

        notices = []
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary))
        conn.execute("DO $$ BEGIN RAISE NOTICE 'hello from plpgsql'; END $$")
        assert notices == ["hello from plpgsql"]

        conn.execute("SET application_name = 'relay-test'")
        assert conn.info.parameter_status("application_name") == "relay-test"


def test_transaction_status_and_errors_inside_transaction(proxy):
    with psycopg.connect(proxy.dsn()) as conn:
        conn.execute("SELECT 1")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        with pytest.raises(psycopg.errors.UndefinedTable) as raised:
            conn.execute("SELECT * FROM no_such_table")
        assert raised.value.sqlstate == "42P01"
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        conn.rollback()
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_listen_notify(proxy):
    with psycopg.connect(proxy.dsn(), autocommit=True) as listener, \
            psycopg.connect(proxy.dsn(), autocommit=True) as sender:
        received = []
        listener.add_notify_handler(lambda n: received.append((n.channel, n.payload)))
        listener.execute("LISTEN relay_channel")
        sender.execute("NOTIFY relay_channel, 'payload-1'")
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            listener.execute("SELECT 1")  # delivers notifications that arrived meanwhile
        assert received == [("relay_channel", "payload-1")]


def test_cancel_reaches_the_right_backend(proxy):
    with psycopg.connect(proxy.dsn(), autocommit=True) as victim, \
            psycopg.connect(proxy.dsn(), autocommit=True) as bystander:
        timer = threading.Timer(0.5, victim.cancel)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            victim.execute("SELECT pg_sleep(30)")
        assert time.monotonic() - started < 10
        timer.join()
        # The other session was not cancelled and both still work.
        assert bystander.execute("SELECT 1").fetchone() == (1,)
        assert victim.execute("SELECT 2").fetchone() == (2,)
    assert proxy.metric("switchyard_cancel_requests_total", result="forwarded") == 1


def test_extended_protocol_row_limit_pipelining_and_flush(proxy):
    client = RawClient(proxy.port)
    client.login_trust()
    # Pipeline: named statement, two portals, Execute with a row limit, Flush, then Sync.
    client.send(message(b"P", cstr("s1") + cstr("SELECT g FROM generate_series(1, 5) g") + b"\0\0")
                + message(b"B", cstr("p1") + cstr("s1") + b"\0\0" + b"\0\0" + b"\0\0")
                + message(b"D", b"P" + cstr("p1"))
                + message(b"E", cstr("p1") + (2).to_bytes(4, "big"))
                + message(b"H"))
    tags = [t for t, _ in (client.read_message() for _ in range(6))]
    assert tags == [b"1", b"2", b"T", b"D", b"D", b"s"], "Execute with max_rows=2 must suspend the portal"
    client.send(message(b"E", cstr("p1") + (0).to_bytes(4, "big")) + message(b"S"))
    rest = [t for t, _ in client.read_until(b"Z")]
    assert rest == [b"D", b"D", b"D", b"C", b"Z"]
    client.send(message(b"X"))
    assert client.closed()


@pytest.mark.parametrize("sslmode", ["disable", "require"], ids=["relay-loop", "tls-to-primary"])
def test_malformed_packets_get_a_reason_and_the_proxy_stays_up(pg, start_proxy, sslmode):
    proxy = start_proxy(f"primary: {pg.uri(sslmode=sslmode)}\nlimits:\n  max_message_size: 4096\n")

    def fatal_after(data, login=False):
        client = RawClient(proxy.port)
        if login:
            client.login_trust()
        client.send(data)
        tag, body = client.read_message()
        assert tag == b"E"
        assert client.closed()
        return error_fields(body)

    short = fatal_after((3).to_bytes(4, "big"))
    assert short["C"] == "08P01" and "invalid length of startup packet" in short["M"]
    garbage = fatal_after((16).to_bytes(4, "big") + b"\x12\x34\x56\x78garbage!")
    assert "unsupported frontend protocol" in garbage["M"]
    below_four = fatal_after(b"Q" + (2).to_bytes(4, "big"), login=True)
    assert below_four["C"] == "08P01" and "invalid message length 2" in below_four["M"]
    too_large = fatal_after(b"Q" + (1_000_000).to_bytes(4, "big") + b"SELECT", login=True)
    assert "exceeds the limit of 4096 bytes" in too_large["M"]
    from wire import startup_packet
    second_startup = fatal_after(startup_packet(), login=True)
    assert "invalid frontend message type 0x00" in second_startup["M"]

    assert psql(proxy, "SELECT 'still serving'").stdout.strip() == "still serving"
    assert proxy.metric("switchyard_client_disconnects_total", reason="message_too_large") == 1
    assert proxy.metric("switchyard_client_disconnects_total", reason="protocol_violation") == 4
    assert "invalid message length 2" in proxy.log()


def test_gssenc_request_is_refused_and_startup_goes_on(proxy):
    client = RawClient(proxy.port)
    client.send((8).to_bytes(4, "big") + (80877104).to_bytes(4, "big"))
    assert client.read_byte() == b"N"
    messages = client.login_trust()
    assert messages[-1] == (b"Z", b"I")


def test_backend_down_at_connect(start_proxy):
    from harness import free_port
    proxy = start_proxy(f"primary: postgresql://postgres:x@127.0.0.1:{free_port()}/postgres?connect_timeout=2\n")
    out = psql(proxy, "SELECT 1")
    assert out.returncode != 0
    assert "could not connect to the primary database" in out.stderr
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(f"http://127.0.0.1:{proxy.admin_port}/readyz", timeout=5)
    assert raised.value.code == 503
    assert urllib.request.urlopen(f"http://127.0.0.1:{proxy.admin_port}/healthz", timeout=5).status == 200
    assert proxy.metric("switchyard_client_disconnects_total", reason="backend_unavailable") == 1


def test_readyz_when_the_primary_accepts_connections(proxy):
    with urllib.request.urlopen(f"http://127.0.0.1:{proxy.admin_port}/readyz", timeout=5) as ready:
        assert (ready.status, ready.read()) == (200, b"ready\n")


def test_a_missing_unix_socket_is_named_to_the_client(start_proxy, tmp_path):
    proxy = start_proxy(f"primary: host={tmp_path} port=5999 user=postgres\n")
    out = psql(proxy, "SELECT 1")
    assert out.returncode != 0
    assert (f'could not connect to the primary database at socket "{tmp_path}/.s.PGSQL.5999": '
            "No such file or directory") in out.stderr
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(f"http://127.0.0.1:{proxy.admin_port}/readyz", timeout=5)
    assert raised.value.code == 503
    assert '.s.PGSQL.5999": No such file or directory' in raised.value.read().decode()


def test_backend_rejection_is_relayed_verbatim(pg, start_proxy):
    # No database in the URI: the client's database is passed through.
    proxy = start_proxy(f"primary: {pg.uri(dbname='')}\n")
    assert psql(proxy, "SELECT current_database()").stdout.strip() == "postgres"
    out = psql(proxy, "SELECT 1", dbname="no_such_database")
    assert out.returncode != 0
    assert 'database "no_such_database" does not exist' in out.stderr


def test_metrics_count_queries_bytes_and_latency(proxy):
    for _ in range(3):
        assert psql(proxy, "SELECT 1").returncode == 0
    assert wait_for(lambda: proxy.metric("switchyard_backend_queries_total", backend="primary") >= 3)
    assert wait_for(lambda: proxy.metric("switchyard_backend_query_duration_seconds_count", backend="primary") >= 3)
    assert proxy.metric("switchyard_backend_bytes_total", backend="primary", direction="to_backend") > 0
    assert proxy.metric("switchyard_backend_bytes_total", backend="primary", direction="from_backend") > 0
    # SELECT 1 answers in well under 100 ms, so every observation lands at or below that bucket.
    assert proxy.metric("switchyard_backend_query_duration_seconds_bucket", backend="primary", le="0.1") >= 3
    assert proxy.metric("switchyard_client_disconnects_total", reason="client_terminate") >= 3


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def data_rows(raw: bytes):
    """The DataRow bodies in a run of backend messages."""
    rows, pos = [], 0
    while pos < len(raw):
        tag, length = raw[pos:pos + 1], struct.unpack("!I", raw[pos + 1:pos + 5])[0]
        if tag == b"D":
            rows.append(raw[pos + 5:pos + 1 + length])
        pos += 1 + length
    return rows


def test_a_client_that_stops_reading_holds_the_primary_back_without_proxy_memory(proxy):
    # 40 MiB of rows the client leaves unread for a while: TCP holds the primary back and
    # switchyard keeps at most one read's worth for that client. (The bound leaves room for
    # ASan, whose quarantine keeps freed memory resident; buffering the rows would take 40.)
    client = RawClient(proxy.port, timeout=30)
    client.login_trust()
    before = rss_kib(proxy.process.pid)
    client.send(message(b"Q", cstr("SELECT g, repeat('x', 1000) FROM generate_series(1, 40000) g")))
    time.sleep(1.5)  # long enough for the primary to fill every buffer on the way
    grown = rss_kib(proxy.process.pid) - before
    assert grown < 16384, f"switchyard grew by {grown} KiB for a client that does not read"

    raw = bytearray(client.buffer)
    while not raw.endswith(message(b"Z", b"I")):
        raw += client.sock.recv(1 << 20)
    rows = data_rows(bytes(raw))
    assert len(rows) == 40000
    # Every row intact and in order: field count, then (length, value) pairs.
    for n, row in enumerate(rows, start=1):
        count, first_len = struct.unpack("!hI", row[:6])
        assert count == 2 and row[6:6 + first_len] == str(n).encode()
        assert row.endswith(b"x" * 1000)


def test_a_primary_that_stops_reading_holds_the_client_back_without_proxy_memory(pg, proxy):
    pg.sql("DROP TABLE IF EXISTS relay_slow_copy; CREATE TABLE relay_slow_copy(id int, pad text)")
    blocker = psycopg.connect(pg.uri())
    blocker.execute("LOCK TABLE relay_slow_copy IN ACCESS EXCLUSIVE MODE")  # COPY waits for it
    client = RawClient(proxy.port, timeout=60)
    client.login_trust()
    pad = "y" * 1000
    rows = 40000  # 40 MiB
    payload = (message(b"Q", cstr("COPY relay_slow_copy FROM STDIN"))
               + b"".join(message(b"d", f"{i}\t{pad}\n".encode()) for i in range(rows))
               + message(b"c"))
    sender = threading.Thread(target=client.send, args=(payload,))
    before = rss_kib(proxy.process.pid)
    sender.start()
    time.sleep(1.5)  # the client's bytes wait in the sockets' buffers, not in switchyard
    grown = rss_kib(proxy.process.pid) - before
    blocker.commit()
    sender.join(60)
    assert grown < 16384, f"switchyard grew by {grown} KiB for a primary that does not read"
    messages = client.read_until(b"Z")
    assert (b"C", cstr(f"COPY {rows}")) in messages, messages
    assert pg.sql("SELECT count(*), count(DISTINCT id), min(length(pad)) FROM relay_slow_copy") == \
        f"{rows}|{rows}|1000"
    blocker.close()


def test_startup_query_and_terminate_in_one_packet(pg, proxy):
    pg.sql("DROP TABLE IF EXISTS relay_one_packet; CREATE TABLE relay_one_packet(id int)")
    client = RawClient(proxy.port)
    from wire import startup_packet
    # Everything a hurried client might send at once: startup, a write, then goodbye.
    client.send(startup_packet() + message(b"Q", cstr("INSERT INTO relay_one_packet VALUES (7)"))
                + message(b"X"))
    tags = [t for t, _ in client.read_until(b"Z")]
    assert tags[0] == b"R" and tags[-1] == b"Z"  # the login
    assert client.closed()  # the Terminate ended the session
    assert wait_for(lambda: pg.sql("SELECT count(*) FROM relay_one_packet WHERE id = 7") == "1")
    assert wait_for(lambda: proxy.metric("switchyard_client_disconnects_total",
                                         reason="client_terminate") >= 1)


def test_a_client_gone_mid_query_frees_its_primary_connection(pg, proxy):
    client = RawClient(proxy.port)
    client.login_trust()
    client.send(message(b"Q", cstr("SELECT pg_sleep(1) AS relay_gone_mid_query")))
    assert wait_for(lambda: pg.sql("SELECT count(*) FROM pg_stat_activity "
                                   "WHERE query LIKE '%relay_gone_mid_query' AND pid <> pg_backend_pid()") == "1")
    client.close()
    assert wait_for(lambda: pg.sql("SELECT count(*) FROM pg_stat_activity "
                                   "WHERE query LIKE '%relay_gone_mid_query' AND pid <> pg_backend_pid()") == "0")
    assert wait_for(lambda: proxy.metric("switchyard_client_disconnects_total",
                                         reason="client_disconnect") >= 1)


def leave_session_state(conn):
    """Leaves in a session everything DISCARD ALL must end; returns the backend's pid."""
    conn.execute("SET work_mem = '7MB'")
    conn.execute("SET application_name = 'relay_kept_left'")  # reported by ParameterStatus
    conn.execute("CREATE TEMP TABLE relay_kept_temp (id int)")
    conn.execute("PREPARE relay_kept_plan AS SELECT 1")
    conn.execute("LISTEN relay_kept_channel")
    conn.execute("SELECT pg_advisory_lock(4242)")
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def test_the_next_client_gets_the_primary_connection_a_client_logged_off_from_reset(proxy, pg):
    with psycopg.connect(proxy.dsn(), autocommit=True) as first:
        first_pid = leave_session_state(first)
    config = proxy.config_path.read_text()
    kept = "sslmode=require" not in config or "%2F" in config
    # The connection is reset after the client has gone: wait for it.
    assert wait_for(lambda: proxy.metric("switchyard_backend_pool_idle") == 1, timeout=10 if kept else 1) == kept
    with psycopg.connect(proxy.dsn(), autocommit=True) as second:
        row = second.execute(
            "SELECT pg_backend_pid(), current_setting('work_mem'), current_setting('application_name'),"
            " to_regclass('pg_temp.relay_kept_temp') IS NULL,"
            " (SELECT count(*) FROM pg_prepared_statements),"
            " (SELECT count(*) FROM pg_listening_channels()),"
            " (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory')").fetchone()
        assert row[1:] == ("4MB", "", True, 0, 0, 0)
        assert second.info.parameter_status("application_name") == ""
        # TLS connections to the primary are not kept: their TLS state lives in the session.
        assert (row[0] == first_pid) == kept
        assert second.execute("SELECT 6 * 7").fetchone() == (42,)
    assert proxy.metric("switchyard_backend_pool_reused_total") == (1 if kept else 0)
    assert wait_for(lambda: proxy.metric("switchyard_backend_pool_idle") == (1 if kept else 0))
    assert wait_for(lambda: pg.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == "0")


def test_a_primary_connection_is_kept_only_when_its_client_left_it_idle(pg, start_proxy):
    proxy = start_proxy(f"primary: {pg.uri(sslmode='disable')}\n")
    pg.sql("DROP TABLE IF EXISTS relay_kept_rows; CREATE TABLE relay_kept_rows (id int)")
    # Gone inside a transaction: rolled back, and the connection closed, not kept.
    conn = psycopg.connect(proxy.dsn())
    conn.execute("INSERT INTO relay_kept_rows VALUES (1)")
    in_transaction_pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    conn.close()
    assert wait_for(lambda: pg.sql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {in_transaction_pid}") == "0")
    # A query and the Terminate in one packet: the answer still pending, the connection closed.
    client = RawClient(proxy.port)
    client.login_trust()
    client.send(message(b"Q", cstr("SELECT pg_backend_pid()")))
    pending_pid = int(dict(client.read_until(b"Z"))[b"D"][6:])
    client.send(message(b"Q", cstr("INSERT INTO relay_kept_rows VALUES (2)")) + message(b"X"))
    assert client.closed()
    assert wait_for(lambda: pg.sql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pending_pid}") == "0")
    assert pg.sql("SELECT string_agg(id::text, ',') FROM relay_kept_rows") == "2"
    # A client gone without a Terminate: closed too.
    client = RawClient(proxy.port)
    client.login_trust()
    client.send(message(b"Q", cstr("SELECT pg_backend_pid()")))
    dropped_pid = int(dict(client.read_until(b"Z"))[b"D"][6:])
    client.close()
    assert wait_for(lambda: pg.sql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {dropped_pid}") == "0")
    assert proxy.metric("switchyard_backend_pool_idle") == 0


def test_kept_primary_connections_serve_only_the_same_login_and_end_on_time(pg, start_proxy):
    proxy = start_proxy(f"primary: {pg.uri(sslmode='disable')}\n"
                        "limits:\n  pooled_backends: 2\n  pooled_backend_idle_timeout: 2s\n")

    def pid(**params):
        with psycopg.connect(proxy.dsn(**params), autocommit=True) as conn:
            return conn.execute("SELECT pg_backend_pid()").fetchone()[0]

    def kept(count):  # the reset runs after the client has gone
        return wait_for(lambda: proxy.metric("switchyard_backend_pool_idle") == count)

    app_pid = pid(application_name="relay_kept_app")
    assert kept(1)
    assert pid() != app_pid  # other startup parameters: another login
    assert kept(2)
    assert pid(application_name="relay_kept_app") == app_pid
    assert kept(2)
    # A kept connection the server ended meanwhile is passed over for a new one.
    pg.sql(f"SELECT pg_terminate_backend({app_pid})")
    assert wait_for(lambda: pg.sql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {app_pid}") == "0")
    assert pid(application_name="relay_kept_app") != app_pid
    # Past the idle timeout every kept connection is closed.
    assert wait_for(lambda: proxy.metric("switchyard_backend_pool_idle") == 0, timeout=10)
    assert wait_for(lambda: pg.sql("SELECT count(*) FROM pg_stat_activity"
                                   " WHERE application_name = 'relay_kept_app'") == "0")
    # None are kept with pooled_backends 0 (sessions that began before the reload took
    # effect may have left one; the admin thread closes it within a second).
    proxy.write_config(f"primary: {pg.uri(sslmode='disable')}\nlimits:\n  pooled_backends: 0\n")
    proxy.reload()
    assert wait_for(lambda: pid() != pid())
    assert wait_for(lambda: proxy.metric("switchyard_backend_pool_idle") == 0)
    assert pid() != pid()


def test_a_login_the_server_refuses_for_too_many_connections_ends_kept_ones_of_other_logins(pg, start_proxy):
    # Kept connections count against the server's connection limits; a role limited to one
    # connection shows it without filling max_connections.
    pg.sql("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'kept_limited') THEN"
           " CREATE ROLE kept_limited LOGIN PASSWORD 'limitedpw' CONNECTION LIMIT 1; END IF; END $$")
    proxy = start_proxy(f"primary: {pg.uri(user='kept_limited', password='limitedpw', sslmode='disable')}\n"
                        "limits:\n  pooled_backends: 4\n")

    def pid(**params):
        with psycopg.connect(proxy.dsn(**params), autocommit=True) as conn:
            return conn.execute("SELECT pg_backend_pid()").fetchone()[0]

    def kept(count):
        return wait_for(lambda: proxy.metric("switchyard_backend_pool_idle") == count)

    first = pid(application_name="kept_limited_a")
    assert kept(1)
    # Another login finds the role's one slot held by the kept connection: that one ends,
    # and the login is tried again.
    second = pid(application_name="kept_limited_b")
    assert second != first
    assert pg.sql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {first}") == "0"
    assert kept(1)
    assert pid(application_name="kept_limited_b") == second
    assert kept(1)
    # With the slot held by a client, nothing kept is in the way: the client gets the
    # server's own refusal.
    with psycopg.connect(proxy.dsn(application_name="kept_limited_b"), autocommit=True) as holder:
        assert holder.execute("SELECT pg_backend_pid()").fetchone()[0] == second
        with pytest.raises(psycopg.OperationalError, match="too many connections for role"):
            psycopg.connect(proxy.dsn(application_name="kept_limited_a"))
    assert kept(1)
    assert "ending a kept primary connection of another login" in proxy.log()


def test_shutdown_with_sessions_mid_relay(pg, tmp_path):
    proxy = Proxy(f"primary: {pg.uri(sslmode='disable')}\n", tmp_path).start()  # the relay loop
    try:
        idle = RawClient(proxy.port)
        idle.login_trust()
        busy = RawClient(proxy.port)
        busy.login_trust()
        busy.send(message(b"Q", cstr("SELECT pg_sleep(3)")))
        assert wait_for(lambda: pg.sql("SELECT count(*) FROM pg_stat_activity "
                                       "WHERE query = 'SELECT pg_sleep(3)'") == "1")
        proxy.process.terminate()
        assert proxy.process.wait(10) == 0
        assert idle.closed() and busy.closed()
    finally:
        proxy.stop()
    log = proxy.log()
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert marker not in log, f"sanitizer report from switchyard:\n{log}"
