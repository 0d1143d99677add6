"""The cutover control plane against two real PostgreSQL 15 clusters and a real Redis: gates
that revert, a ramp plan that advances, promote and revert, the admin API and CLI, state that
survives restarts, and a fleet of two proxies sharing one state."""
import random
import subprocess
import threading
import time

import psycopg
import pytest

from harness import (SWITCHYARD_BIN, ClientThreads, PgCluster, Proxy, RedisServer,
                     closed_by_role_swap, wait_for)

TOKEN = "test-token"

# Each side names itself; `flaky` reads fine on the primary and fails for one id in 20 on the
# secondary (a view over a function that raises), so errors can be injected into reads the
# classifier still sees as safe.
SCHEMA = """
CREATE TABLE whoami (side text); INSERT INTO whoami VALUES ('{side}');
CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL);
INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 1000) g;
CREATE TABLE ledger (id bigserial PRIMARY KEY, note text NOT NULL);
"""
PRIMARY_FLAKY = "CREATE VIEW flaky AS SELECT id, balance AS v FROM accounts;"
SECONDARY_FLAKY = """
CREATE FUNCTION boom(i int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  IF i % 20 = 0 THEN RAISE EXCEPTION 'injected failure for id %', i; END IF;
  RETURN 100;
END $$;
CREATE VIEW flaky AS SELECT id, boom(id) AS v FROM accounts;
"""


@pytest.fixture(scope="module")
def pair():
    primary, secondary = PgCluster().start(), PgCluster().start()
    primary.sql(SCHEMA.format(side="primary") + PRIMARY_FLAKY)
    secondary.sql(SCHEMA.format(side="secondary") + SECONDARY_FLAKY)
    yield primary, secondary
    primary.destroy()
    secondary.destroy()


@pytest.fixture
def redis():
    server = RedisServer().start()
    yield server
    server.destroy()


@pytest.fixture
def start(tmp_path):
    """Starts switchyard in front of the pair with an admin token and `cutover` lines."""
    started = []

    def run(pair, extra="", cutover="", workdir=None, admin="", dbname="postgres"):
        """`dbname` "" lets each client choose its database."""
        primary, secondary = pair
        config = (f"primary: {primary.uri(dbname=dbname)}\n"
                  f"secondary: {secondary.uri(dbname=dbname)}\n"
                  f"mirror:\n  journal: {workdir or tmp_path}/journal-{len(started)}.jsonl\n{extra}")
        proxy = Proxy(config, workdir or tmp_path, admin_token=TOKEN, cutover=cutover, admin=admin)
        started.append(proxy)
        return proxy.start()

    yield run
    for proxy in started:
        alive = proxy.alive()
        proxy.stop()
        log = proxy.log()
        assert alive, f"switchyard died during the test:\n{log}"
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            assert marker not in log, f"sanitizer report from switchyard:\n{log}"


def status(proxy):
    code, body = proxy.api("GET", "/api/v1/status")
    assert code == 200, body
    return body


def act(proxy, action, **body):
    code, answer = proxy.api("POST", f"/api/v1/cutover/{action}", body or None)
    assert code == 200, answer
    return answer["state"]


def evaluations_after(proxy, count):
    """Waits until `count` more gate evaluations ran."""
    start = status(proxy)["gate_evaluations"]
    assert wait_for(lambda: status(proxy)["gate_evaluations"] >= start + count, timeout=60)


def side(proxy):
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        return conn.execute("SELECT side FROM whoami").fetchone()[0]


class Load(ClientThreads):
    """Client threads reading `flaky` (and optionally writing `ledger`) until stopped,
    counting every error a client saw. Sessions a role swap closed reconnect, as a pool's
    would; those closes are counted apart."""

    def __init__(self, proxy, readers=3, writers=0, ids=None):
        super().__init__()
        self.proxy = proxy
        self.errors, self.reads, self.written, self.swap_closes = [], 0, [], 0
        self.ids = ids or list(range(1, 1001))
        self.threads = [threading.Thread(target=self.read) for _ in range(readers)]
        self.threads += [threading.Thread(target=self.write, args=(i,)) for i in range(writers)]

    def read(self):
        # Short sessions: the cohort is drawn per session, so many sessions sample it evenly.
        while not self.stop_event.is_set():
            try:
                with psycopg.connect(self.proxy.dsn(), autocommit=True) as conn:
                    for _ in range(20):
                        conn.execute("SELECT v FROM flaky WHERE id = %s",
                                     (random.choice(self.ids),)).fetchone()
                        self.reads += 1
            except Exception as error:  # noqa: BLE001 - every client error counts
                if not closed_by_role_swap(error):
                    self.errors.append(repr(error))
                    return
                self.swap_closes += 1

    def write(self, writer):
        n = 0
        while not self.stop_event.is_set():
            try:
                with psycopg.connect(self.proxy.dsn(), autocommit=True) as conn:
                    while not self.stop_event.is_set():
                        note = f"writer {writer} row {n}"
                        n += 1
                        conn.execute("INSERT INTO ledger (note) VALUES (%s)", (note,))
                        self.written.append(note)
            except Exception as error:  # noqa: BLE001
                # A session closed by a role swap had its statement refused, not run.
                if not closed_by_role_swap(error):
                    self.errors.append(repr(error))
                    return
                self.swap_closes += 1


def ledger(cluster):
    return cluster.sql("SELECT id || ':' || note FROM ledger ORDER BY id").split("\n")


def test_injected_secondary_errors_revert_within_two_evaluations(pair, start):
    proxy = start(pair, "read_percent: 50\n",
                  "  gates:\n    interval: 1s\n    window: 10s\n"
                  "    secondary_error_rate: {max: 0.01, min_samples: 50}\n"
                  "    latency_p99_ratio: {enabled: false}\n")
    assert status(proxy)["state"]["phase"] == "ramping"
    before = status(proxy)["gate_evaluations"]
    with Load(proxy) as load:
        assert wait_for(lambda: status(proxy)["state"]["phase"] == "reverted", timeout=60)
        # No flapping: errors go on, the cutover stays reverted and reads stay on the primary.
        evaluations_after(proxy, 3)
        assert status(proxy)["state"]["phase"] == "reverted"
        assert all(side(proxy) == "primary" for _ in range(50))
    assert load.errors == [] and load.reads > 0
    revert = proxy.audit()[-1]
    assert revert["action"] == "revert" and revert["actor"] == "gate:secondary_error_rate"
    assert "secondary_error_rate" in revert["reason"] and revert["to"] == "reverted"
    assert revert["gate_evaluation"] - before <= 2, (revert, before)
    assert proxy.metric("switchyard_cutover_reverts_total", reason="secondary_error_rate") == 1
    assert proxy.metric("switchyard_cutover_phase", phase="reverted") == 1
    gate = next(g for g in status(proxy)["gates"] if g["name"] == "secondary_error_rate")
    assert gate["threshold"] == 0.01 and gate["min_samples"] == 50
    # Quiet now, and still reverted until someone re-arms it.
    evaluations_after(proxy, 2)
    assert status(proxy)["state"]["phase"] == "reverted"
    code, body = proxy.api("POST", "/api/v1/cutover/ramp", {"percent": 10})
    assert code == 409 and "cannot ramp while reverted" in body["error"]
    assert act(proxy, "rearm", reason="fixed the view")["phase"] == "mirroring"


def test_low_traffic_neither_reverts_nor_advances(pair, start):
    proxy = start(pair, "read_percent: 50\n",
                  "  ramp:\n    steps: [50, 100]\n    soak: 1s\n    auto_advance: true\n"
                  "  gates:\n    interval: 500ms\n    window: 5s\n"
                  "    secondary_error_rate: {max: 0.01, min_samples: 1000}\n"
                  "    latency_p99_ratio: {min_samples: 1000}\n")
    entries = len(proxy.audit())
    failing_ids = list(range(20, 1001, 20))
    for i in range(40):  # a session each: about half reach the secondary, and all fail there
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            conn.execute("SELECT v FROM flaky WHERE id = %s", (failing_ids[i],)).fetchone()
        time.sleep(0.05)
    assert proxy.metric("switchyard_read_fallbacks_total", reason="secondary_error") > 0
    evaluations_after(proxy, 6)
    state = status(proxy)["state"]
    assert state["phase"] == "ramping" and state["read_percent"] == 50
    assert len(proxy.audit()) == entries
    verdicts = {g["name"]: g["verdict"] for g in status(proxy)["gates"]}
    assert verdicts["secondary_error_rate"] == "too_few_samples"


def test_ramp_plan_advances_then_promote_and_revert_lose_no_row(pair, start):
    primary, secondary = pair
    proxy = start(pair, "read_percent: 5\n",
                  "  ramp:\n    steps: [5, 25, 50, 100]\n    soak: 1s\n    auto_advance: true\n"
                  "  gates:\n    interval: 500ms\n    window: 3s\n"
                  "    secondary_error_rate: {min_samples: 20}\n"
                  # Primary reads run on kept, warm backends; a secondary read that waits for a
                  # new connection's login (about 34 ms on a VM with slow forks) is ~100x one.
                  "    latency_p99_ratio: {min_samples: 20, max: 200}\n")
    safe_ids = [i for i in range(1, 1001) if i % 20]

    def gates():  # in full: pytest shortens a dict in an assertion's message
        now = status(proxy)
        return str((now["state"], [(g["name"], g.get("value"), g.get("verdict"), g.get("samples"))
                                   for g in now["gates"]]))

    with Load(proxy, readers=2, writers=2, ids=safe_ids) as load:
        assert wait_for(lambda: status(proxy)["state"]["read_percent"] == 100, timeout=90), gates()
        plan = [e["percent"] for e in proxy.audit() if e["actor"] == "ramp plan"]
        assert plan == [25, 50, 100]
        assert act(proxy, "promote", actor="test")["phase"] == "promoted"
        assert all(side(proxy) == "secondary" for _ in range(20))
        time.sleep(1)
        assert act(proxy, "revert", actor="test", reason="rollback drill")["phase"] == "reverted"
        assert all(side(proxy) == "primary" for _ in range(20))
        time.sleep(1)
    assert load.errors == []
    assert wait_for(lambda: ledger(primary) == ledger(secondary), timeout=30)
    rows = ledger(primary)
    assert len(rows) == len(load.written) > 0
    assert sorted(row.split(":", 1)[1] for row in rows) == sorted(load.written)
    actions = [(e["actor"], e["action"]) for e in proxy.audit()]
    assert ("admin:test", "promote") in actions and ("admin:test", "revert") in actions


SWAPPED = ("CREATE TABLE IF NOT EXISTS swapped (id bigserial PRIMARY KEY, note text NOT NULL, "
           "at timestamptz NOT NULL DEFAULT clock_timestamp())")


def swapped_rows(cluster):
    return cluster.sql("SELECT id || ' ' || note || ' ' || at FROM swapped ORDER BY id").split("\n")


def insert_swapped(proxy, note):
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        return conn.execute("INSERT INTO swapped (note) VALUES (%s) RETURNING id", (note,)).fetchone()[0]


def last_id(cluster):
    return int(cluster.sql("SELECT last_value FROM swapped_id_seq"))


IDLE_GATES = "  gates:\n    interval: 1h\n    window: 1h\n"


def ramped_to_100(pair, start, cutover=IDLE_GATES):
    """A proxy whose reads all go to the new database (ready to promote), `swapped` created."""
    proxy = start(pair, "read_percent: 100\n", cutover)
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute(SWAPPED)
    return proxy


def test_a_write_the_secondary_is_committing_when_roles_swap_reaches_both(pair, start):
    """An extended-protocol autocommit write waits at its Sync for the secondary's commit; a
    role swap then must not take the session for idle and close it, which would roll the
    primary's side back after the secondary committed it."""
    old, new = pair
    proxy = ramped_to_100(pair, start, "  swap_timeout: 5s\n" + IDLE_GATES)
    new.sql("CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN PERFORM pg_sleep(1); RETURN NEW; END$$;"
            "CREATE TRIGGER slow BEFORE INSERT ON swapped FOR EACH ROW EXECUTE FUNCTION slow()")
    outcome = []
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        def write():
            try:
                conn.execute("INSERT INTO swapped (note) VALUES (%s)", ("during the swap",))
                outcome.append("written")
            except psycopg.Error as error:
                outcome.append(repr(error))
        writer = threading.Thread(target=write)
        writer.start()
        assert wait_for(lambda: new.sql("SELECT count(*) FROM pg_stat_activity"
                                         " WHERE wait_event = 'PgSleep'") == "1")
        assert act(proxy, "promote", actor="test")["phase"] == "promoted"
        writer.join()
    assert outcome == ["written"]
    new.sql("DROP TRIGGER slow ON swapped; DROP FUNCTION slow()")
    assert swapped_rows(old) == swapped_rows(new)


def test_promotion_makes_the_new_database_primary_and_revert_swaps_back(pair, start):
    old, new = pair
    proxy = ramped_to_100(pair, start, "  swap_timeout: 5s\n" + IDLE_GATES)
    first = insert_swapped(proxy, "before the swap")
    idle = psycopg.connect(proxy.dsn(), autocommit=True)
    idle.execute("SELECT 1")
    open_transaction = psycopg.connect(proxy.dsn())
    open_transaction.execute("INSERT INTO swapped (note) VALUES ('open at promotion')")

    assert act(proxy, "promote", actor="test")["phase"] == "promoted"
    roles = status(proxy)["roles"]
    assert roles["primary_of_record"] == "new" and roles["stale_sessions"] >= 2, roles
    assert proxy.metric("switchyard_cutover_roles_swapped") == 1

    # A write of a session with the new roles waits for the transaction begun with the old.
    done = {}
    writer = threading.Thread(target=lambda: done.update(id=insert_swapped(proxy, "after the swap")))
    writer.start()
    time.sleep(1)
    assert "id" not in done, "a write ran in the new order while one in the old was open"
    open_transaction.commit()
    writer.join(timeout=20)
    assert done.get("id", 0) > first + 1  # drawn on the new primary, its sequence caught up
    assert last_id(new) == done["id"] and last_id(old) == first + 1
    # The sessions with the old roles were closed at their next idle point, and said why.
    for conn in (open_transaction, idle):
        with pytest.raises(psycopg.Error) as closed:
            conn.execute("SELECT 1")
        assert closed_by_role_swap(closed.value), closed.value
        conn.close()
    assert proxy.metric("switchyard_client_disconnects_total", reason="role_swap") >= 2
    assert swapped_rows(old) == swapped_rows(new)

    # The new database is the primary of record: the old one can go away without an error.
    old.stop()
    ids = [insert_swapped(proxy, f"old database down {i}") for i in range(3)]
    assert proxy.metric("switchyard_journal_backlog") >= 3

    # Revert while the old database is still down: once it is back, the writes it missed
    # reach it before it takes writes of its own, and its sequence moves past them.
    assert act(proxy, "revert", actor="test", reason="drill")["phase"] == "reverted"
    assert status(proxy)["roles"]["primary_of_record"] == "old"
    old.launch()
    assert wait_for(lambda: swapped_rows(old) == swapped_rows(new), timeout=30)
    after_revert = insert_swapped(proxy, "after the revert")
    assert after_revert > max(ids)
    assert last_id(old) == after_revert
    assert swapped_rows(old) == swapped_rows(new)
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=30)
    entries = [e for e in proxy.audit() if e["actor"] == "admin:test"]
    assert [e["action"] for e in entries] == ["promote", "revert"]


def test_a_transaction_left_open_at_promotion_ends_at_swap_timeout(pair, start):
    old, new = pair
    proxy = ramped_to_100(pair, start, "  swap_timeout: 1s\n" + IDLE_GATES)
    forgotten = psycopg.connect(proxy.dsn())
    forgotten.execute("INSERT INTO swapped (note) VALUES ('left uncommitted at promotion')")
    assert act(proxy, "promote")["phase"] == "promoted"
    began = time.monotonic()
    insert_swapped(proxy, "held until the forgotten transaction ended")  # waits for it
    assert time.monotonic() - began >= 0.9
    with pytest.raises(psycopg.Error) as closed:
        forgotten.execute("SELECT 1")
    assert "did not end within cutover.swap_timeout and was rolled back" in str(closed.value)
    forgotten.close()
    for cluster in (old, new):
        notes = cluster.sql("SELECT note FROM swapped").split("\n")
        assert "left uncommitted at promotion" not in notes
        assert "held until the forgotten transaction ended" in notes


def test_a_database_first_used_after_promotion_gets_its_sequences_caught_up(pair, start):
    old, new = pair
    for cluster in (old, new):  # rows both sides hold, with ids the old database drew
        cluster.sql("DROP DATABASE IF EXISTS late")
        cluster.sql("CREATE DATABASE late")
        cluster.sql("CREATE TABLE items (id serial PRIMARY KEY, note text);"
                    "INSERT INTO items (id, note) SELECT g, 'before' FROM generate_series(1, 5) g",
                    dbname="late")
    old.sql("SELECT setval('items_id_seq', 5)", dbname="late")  # the new side's never moved
    proxy = start(pair, "read_percent: 100\n", IDLE_GATES, dbname="")
    assert act(proxy, "promote")["phase"] == "promoted"
    assert wait_for(lambda: status(proxy)["roles"]["settled"])  # without knowing "late"
    with psycopg.connect(proxy.dsn(dbname="late"), autocommit=True) as conn:
        assert conn.execute("INSERT INTO items (note) VALUES ('after') RETURNING id").fetchone()[0] == 6
    assert old.checksum("items", dbname="late") == new.checksum("items", dbname="late")


def test_sequences_no_column_owns_go_on_from_the_old_primarys_position_after_promotion(pair, start):
    """Row images carry the ids the old primary drew, also from sequences no column owns (a
    DEFAULT naming a shared sequence, nextval() called in the statement), which the new
    database's own sequences never drew. After promotion they go on from where the old
    primary's stood, and the first inserts do not collide."""
    old, new = pair
    for cluster in (old, new):
        cluster.sql("DROP DATABASE IF EXISTS numbered")
        cluster.sql("CREATE DATABASE numbered")
        cluster.sql("CREATE SEQUENCE invoice_no; CREATE SEQUENCE ticket_no START 100;"
                    "CREATE SEQUENCE untouched START 7;"
                    "CREATE TABLE invoices (no bigint PRIMARY KEY DEFAULT nextval('invoice_no'), note text)",
                    dbname="numbered")
    proxy = start(pair, "read_percent: 100\n", IDLE_GATES, dbname="")
    with psycopg.connect(proxy.dsn(dbname="numbered"), autocommit=True) as conn:
        for n in range(3):
            conn.execute("INSERT INTO invoices (note) VALUES (%s)", (f"before {n}",))
        conn.execute("INSERT INTO invoices (no, note) VALUES (nextval('ticket_no'), 'a ticket')")
    assert old.checksum("invoices", dbname="numbered") == new.checksum("invoices", dbname="numbered")
    assert act(proxy, "promote")["phase"] == "promoted"
    assert wait_for(lambda: status(proxy)["roles"]["settled"])
    with psycopg.connect(proxy.dsn(dbname="numbered"), autocommit=True) as conn:
        assert conn.execute("INSERT INTO invoices (note) VALUES ('after') RETURNING no").fetchone()[0] == 4
        assert conn.execute("INSERT INTO invoices (no, note) VALUES (nextval('ticket_no'), 'after')"
                            " RETURNING no").fetchone()[0] == 101
    # A sequence nothing drew from stays where it was.
    assert new.sql("SELECT last_value, is_called FROM untouched", dbname="numbered") == "7|f"
    assert old.checksum("invoices", dbname="numbered") == new.checksum("invoices", dbname="numbered")


def test_a_failing_new_primary_reverts_on_its_own(pair, start):
    old, new = pair
    only_new_primary_gate = "".join(f"    {gate}: {{enabled: false}}\n" for gate in (
        "secondary_error_rate", "latency_p99_ratio", "shadow_mismatch_rate", "journal_backlog"))
    proxy = ramped_to_100(pair, start, "  gates:\n    interval: 500ms\n    window: 3s\n" +
                          only_new_primary_gate +
                          "    new_primary_failure_rate: {max: 0.2, min_samples: 5}\n")
    assert act(proxy, "promote", actor="test")["phase"] == "promoted"
    assert wait_for(lambda: status(proxy)["roles"]["settled"])
    written = [f"promoted {i}" for i in range(3)]
    for note in written:
        insert_swapped(proxy, note)
    evaluations_after(proxy, 2)  # too little traffic to judge, and healthy anyway
    assert status(proxy)["state"]["phase"] == "promoted"

    new.stop()
    try:
        start_evaluation = status(proxy)["gate_evaluations"]
        failures = 0
        while status(proxy)["state"]["phase"] == "promoted" and failures < 200:
            try:  # clients keep trying, as a pool would
                insert_swapped(proxy, "while the new database is down")
            except psycopg.Error:
                failures += 1
            time.sleep(0.02)
        revert = proxy.audit()[-1]
        assert (revert["actor"], revert["action"]) == ("gate:new_primary_failure_rate", "revert")
        assert revert["gate_evaluation"] - start_evaluation <= 3  # the breach, within 2 more
        assert wait_for(lambda: status(proxy)["roles"]["settled"])
        # Back on the old database, which has every write made while the new one was primary.
        insert_swapped(proxy, "after the automatic revert")
        notes = set(old.sql("SELECT note FROM swapped").split("\n"))
        assert set(written) | {"after the automatic revert"} <= notes
    finally:
        new.launch()
    assert wait_for(lambda: swapped_rows(old) == swapped_rows(new), timeout=30)


def test_promotion_waits_for_the_journal(pair, start):
    old, new = pair
    proxy = ramped_to_100(pair, start)
    new.stop()
    try:
        insert_swapped(proxy, "the new database missed this")
        code, body = proxy.api("POST", "/api/v1/cutover/promote")
        assert code == 409, body
        assert "divergence journal holds 1 writes the new database missed" in body["error"]
    finally:
        new.launch()
    assert wait_for(lambda: proxy.metric("switchyard_journal_backlog") == 0, timeout=30)
    assert act(proxy, "promote")["phase"] == "promoted"


def test_admin_api_refuses_bad_tokens_and_illegal_transitions(pair, start, tmp_path):
    proxy = start(pair, cutover="  gates:\n    interval: 1h\n    window: 1h\n")
    assert proxy.api("GET", "/api/v1/status", token="")[0] == 401
    code, body = proxy.api("GET", "/api/v1/status", token="wrong")
    assert code == 401 and body["error"] == "wrong bearer token"
    code, body = proxy.api("POST", "/api/v1/cutover/promote")
    assert code == 409 and body["error"] == \
        "cannot promote while mirroring: promote needs ramping at 100 %"
    assert proxy.api("POST", "/api/v1/cutover/ramp", {})[0] == 400
    assert proxy.api("POST", "/api/v1/cutover/ramp", {"percent": 101})[0] == 409
    assert proxy.api("POST", "/api/v1/cutover/teleport")[0] == 404
    assert proxy.api("GET", "/api/v1/cutover/ramp")[0] == 405
    assert proxy.api("POST", "/api/v1/cutover/ramp", {"percent": 5, "colour": "red"})[0] == 400
    assert len(proxy.audit()) == 1  # only the start's own mirroring entry
    assert "wrong token" in proxy.log()

    ctl = [str(SWITCHYARD_BIN), "ctl", "--admin", f"127.0.0.1:{proxy.admin_port}"]
    env = {"SWITCHYARD_ADMIN_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(ctl + ["ramp", "20", "--reason", "canary", "--actor", "alice"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout == "cutover now ramping at 20 % (version 2)\n", out
    out = subprocess.run(ctl + ["status"], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "ramping at 20 %" in out.stdout and "\ngates " in out.stdout
    out = subprocess.run(ctl + ["finalize"], capture_output=True, text=True, env=env)
    assert out.returncode == 1
    assert "refused (HTTP 409): cannot finalize while ramping: finalize needs promoted" in out.stderr
    out = subprocess.run(ctl + ["status"], capture_output=True, text=True, env={"PATH": "/usr/bin"})
    assert out.returncode == 1 and "missing Authorization" in out.stderr
    entry = proxy.audit()[-1]
    assert (entry["actor"], entry["reason"], entry["percent"]) == ("admin:alice", "canary", 20)

    # The status page for people needs no token and escapes what people typed.
    act(proxy, "pause", reason="<b>hold</b> & look")
    import urllib.request
    page = urllib.request.urlopen(f"http://127.0.0.1:{proxy.admin_port}/", timeout=5).read().decode()
    assert "Cutover: <b>ramping</b>" in page and "(ramp paused)" in page
    assert "&lt;b&gt;hold&lt;/b&gt; &amp; look" in page and "<b>hold</b>" not in page

    # Without admin.token the API is off, and says so.
    bare = Proxy(f"primary: {pair[0].uri()}\n", tmp_path)
    bare.start()
    try:
        code, body = bare.api("GET", "/api/v1/status", token="anything")
        assert code == 403 and "set admin.token" in body["error"]
    finally:
        bare.stop()


def test_admin_api_over_tls(pair, start, certs):
    proxy = start(pair, admin=f"  cert_file: {certs.cert}\n  key_file: {certs.key}\n")
    ctl = [str(SWITCHYARD_BIN), "ctl", "--token", TOKEN, "--cacert", str(certs.ca_cert)]
    out = subprocess.run(ctl + ["--admin", f"https://localhost:{proxy.admin_port}", "status"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "cutover   mirroring" in out.stdout, out
    # The proxy's certificate does not verify against another CA, and plain HTTP gets nowhere.
    other = ctl[:-1] + [str(certs.other_ca_cert)]
    out = subprocess.run(other + ["--admin", f"https://localhost:{proxy.admin_port}", "status"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "certificate verify failed" in out.stderr, out
    out = subprocess.run(ctl + ["--admin", f"127.0.0.1:{proxy.admin_port}", "status"],
                         capture_output=True, text=True)
    assert out.returncode == 2, out


def test_state_survives_restarts_and_config_edits_are_ramps(pair, start, tmp_path):
    proxy = start(pair, "read_percent: 10\n", "  gates:\n    interval: 1h\n    window: 1h\n")
    act(proxy, "revert", reason="drill")
    proxy.stop()
    proxy.start()
    assert status(proxy)["state"]["phase"] == "reverted"  # not re-ramped by the unchanged config
    assert side(proxy) == "primary"
    # An edit made while it was down is a ramp, which a reverted cutover refuses.
    proxy.stop()
    proxy.write_config(proxy.config_path.read_text().replace("read_percent: 10", "read_percent: 30"))
    proxy.start()
    assert status(proxy)["state"]["phase"] == "reverted"
    assert "read_percent 30 not applied: cannot ramp while reverted" in proxy.log()
    act(proxy, "rearm")
    # A reload that changes read_percent ramps, by "config reload".
    proxy.write_config(proxy.config_path.read_text().replace("read_percent: 30", "read_percent: 100"))
    proxy.reload()
    assert wait_for(lambda: status(proxy)["state"]["read_percent"] == 100)
    assert proxy.audit()[-1]["actor"] == "config reload"
    assert side(proxy) == "secondary"
    code, _ = proxy.api("POST", "/api/v1/reload")
    assert code == 200


def test_fleet_shares_state_fails_static_and_converges(pair, start, redis, tmp_path):
    key = f"switchyard:test:{random.randrange(1 << 30)}"
    fleet = f"fleet:\n  redis: {redis.url}\n  key: {key}\n"
    first = start(pair, fleet, workdir=tmp_path)
    second = start(pair, fleet, workdir=tmp_path)
    assert status(second)["state"]["version"] == status(first)["state"]["version"] == 1
    assert status(first)["fleet"]["connected"]

    began = time.monotonic()
    act(first, "ramp", percent=100, actor="ops")
    assert wait_for(lambda: status(second)["state"]["read_percent"] == 100, timeout=5)
    print(f"ramp on one proxy seen by the other after {time.monotonic() - began:.3f} s")
    assert side(second) == "secondary"
    assert '"read_percent":100' in redis.cli("GET", key)
    # Each proxy lists the fleet's live members from their heartbeats.
    names = sorted([status(first)["proxy"], status(second)["proxy"]])
    assert wait_for(lambda: sorted((m["proxy"], m["version"]) for m in status(second)["fleet"]["members"])
                    == [(name, 2) for name in names], timeout=10)
    out = subprocess.run([str(SWITCHYARD_BIN), "ctl", "--admin", f"127.0.0.1:{second.admin_port}",
                          "--token", TOKEN, "status"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.count("ramping at 100 % (version 2)") == 3, out.stdout

    redis.kill()
    assert wait_for(lambda: not status(first)["fleet"]["connected"]
                    and not status(second)["fleet"]["connected"], timeout=10)
    # Fail static: both serve with the last state.
    assert side(first) == "secondary" and side(second) == "secondary"
    code, body = first.api("POST", "/api/v1/cutover/ramp", {"percent": 50})
    assert code == 409 and "only revert is possible" in body["error"]
    assert act(second, "revert", reason="redis is down and so is my patience")["phase"] == "reverted"
    assert side(second) == "primary" and side(first) == "secondary"
    assert status(second)["fleet"]["unpublished_changes"] == 1

    redis.start()  # an empty Redis on the same port: both converge on the revert
    assert wait_for(lambda: status(first)["state"]["phase"] == "reverted"
                    and status(second)["state"] == status(first)["state"], timeout=15)
    assert status(second)["fleet"]["unpublished_changes"] == 0
    assert side(first) == "primary"
    assert '"phase":"reverted"' in redis.cli("GET", key)


def test_fleet_with_a_hung_redis_keeps_serving(pair, start, redis, tmp_path):
    import signal
    proxy = start(pair, f"fleet:\n  redis: {redis.url}\n  key: hung:{random.randrange(1 << 30)}\n")
    redis.process.send_signal(signal.SIGSTOP)
    try:
        assert status(proxy)["state"]["phase"] == "mirroring"  # status needs no Redis
        code, body = proxy.api("POST", "/api/v1/cutover/ramp", {"percent": 5})
        assert code == 409 and "no answer within 1 s" in body["error"]
        assert side(proxy) == "primary"
        assert act(proxy, "revert", reason="while Redis hangs")["phase"] == "reverted"
    finally:
        redis.process.send_signal(signal.SIGCONT)
    assert wait_for(lambda: status(proxy)["fleet"]["connected"]
                    and status(proxy)["fleet"]["unpublished_changes"] == 0, timeout=15)
    assert status(proxy)["state"]["phase"] == "reverted"
