"""Limits, timeouts, config validation and SIGHUP reload."""
import subprocess

import psycopg
import pytest

from harness import SWITCHYARD_BIN, wait_for
from wire import RawClient, cstr, error_fields, message


def test_max_clients(pg, start_proxy):
    proxy = start_proxy(f"primary: {pg.uri()}\nlimits:\n  max_clients: 2\n")
    first = psycopg.connect(proxy.dsn())
    second = psycopg.connect(proxy.dsn())
    with pytest.raises(psycopg.OperationalError) as raised:
        psycopg.connect(proxy.dsn())
    assert "too many clients" in str(raised.value)
    first.close()
    assert wait_for(lambda: proxy.metric("switchyard_client_connections") == 1)
    with psycopg.connect(proxy.dsn()) as third:
        assert third.execute("SELECT 3").fetchone() == (3,)
    second.close()


# No TLS to the primary: the session is on a relay loop; TLS: on its own coroutines.
PRIMARY_SSLMODES = pytest.mark.parametrize("sslmode", ["disable", "require"],
                                           ids=["relay-loop", "tls-to-primary"])


@PRIMARY_SSLMODES
def test_idle_timeouts_close_with_the_right_error(pg, start_proxy, sslmode):
    proxy = start_proxy(f"primary: {pg.uri(sslmode=sslmode)}\nlimits:\n  client_idle_timeout: 1s\n"
                        "  idle_in_transaction_timeout: 1500ms\n")
    # A long query is not idle.
    with psycopg.connect(proxy.dsn(), autocommit=True) as busy:
        busy.execute("SELECT pg_sleep(2)")

    idle = RawClient(proxy.port)
    idle.login_trust()
    tag, body = idle.read_message()
    assert tag == b"E" and error_fields(body)["C"] == "57P05"

    in_txn = RawClient(proxy.port)
    in_txn.login_trust()
    in_txn.send(b"Q" + (10).to_bytes(4, "big") + b"BEGIN\0")
    assert in_txn.read_until(b"Z")[-1] == (b"Z", b"T")
    tag, body = in_txn.read_message()
    assert tag == b"E" and error_fields(body)["C"] == "25P03"
    assert proxy.metric("switchyard_client_disconnects_total", reason="idle_timeout") == 1
    assert proxy.metric("switchyard_client_disconnects_total", reason="idle_in_transaction_timeout") == 1


def test_startup_timeout(pg, start_proxy):
    proxy = start_proxy(f"primary: {pg.uri()}\nlimits:\n  startup_timeout: 500ms\n")
    silent = RawClient(proxy.port)
    tag, body = silent.read_message()
    assert tag == b"E" and "startup_timeout" in error_fields(body)["M"]
    assert silent.closed()


def test_sighup_reload_applies_valid_and_rejects_invalid(pg, start_proxy):
    base = f"primary: {pg.uri()}\n"
    proxy = start_proxy(base + "limits:\n  max_clients: 1\n")
    held = psycopg.connect(proxy.dsn(), autocommit=True)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(proxy.dsn())

    proxy.write_config(base + "limits:\n  max_clients: 5\n")
    proxy.reload()
    assert wait_for(lambda: proxy.metric("switchyard_config_reloads_total", result="applied") == 1)
    with psycopg.connect(proxy.dsn()) as second:
        assert second.execute("SELECT 2").fetchone() == (2,)
    assert held.execute("SELECT 'kept'").fetchone() == ("kept",), "reload must not drop sessions"

    proxy.write_config(base + "limits:\n  max_clients: lots\n")
    proxy.reload()
    assert wait_for(lambda: proxy.metric("switchyard_config_reloads_total", result="rejected") == 1)
    assert "limits.max_clients: must be an integer" in proxy.log()
    assert held.execute("SELECT 'still'").fetchone() == ("still",)
    with psycopg.connect(proxy.dsn()) as third:
        assert third.execute("SELECT 3").fetchone() == (3,)
    held.close()


@pytest.mark.parametrize("yaml,expected", [
    ("primary: postgresql://u@h/db\nlimits:\n  max_clientz: 3\n", "limits.max_clientz: unknown setting"),
    ("primary: postgresql://u@h/db\nwrite_mode: sometimes\n", "write_mode: must be one of sync, async"),
    ("primary: postgresql://u@h/db\nread_percent: 101\n", "read_percent: must be a number from 0 to 100"),
    ("primary: 'postgresql://u@h/db?sslmode=maybe'\n", "primary: invalid sslmode 'maybe'"),
    ("listen: nowhere\nprimary: postgresql://u@h/db\n", "listen: must be host:port"),
    ("primary: postgresql://u@h/db\nauth:\n  method: md5\n", "auth.users: must list at least one user"),
    ("primary: [unclosed\n", ":1:"),
    ("tls:\n  mode: require\nprimary: postgresql://u@h/db\n", "tls.cert_file: is required"),
])
def test_invalid_config_is_refused_with_file_key_and_reason(tmp_path, yaml, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml)
    out = subprocess.run([str(SWITCHYARD_BIN), "--config", str(path), "--check-config"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 2
    assert str(path) in out.stderr and expected in out.stderr, out.stderr


def test_command_line_overrides_and_help(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("primary: postgresql://u@h/db\nread_percent: 5\n")
    out = subprocess.run([str(SWITCHYARD_BIN), "--config", str(path), "--read-percent", "250", "--check-config"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 2 and "read_percent: must be a number from 0 to 100 (got '250')" in out.stderr
    path.write_text("read_percent: 5\n")
    out = subprocess.run([str(SWITCHYARD_BIN), "--config", str(path), "--check-config"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 2 and "primary: is required" in out.stderr
    for flag in ("--help", "--version"):
        out = subprocess.run([str(SWITCHYARD_BIN), flag], capture_output=True, text=True, timeout=10)
        assert out.returncode == 0 and "switchyard" in out.stdout


@PRIMARY_SSLMODES
def test_proxy_closes_backend_politely_on_timeout(pg, start_proxy, sslmode):
    proxy = start_proxy(f"primary: {pg.uri(sslmode=sslmode)}\nlimits:\n  idle_in_transaction_timeout: 500ms\n")
    log_start = pg.log.stat().st_size
    client = RawClient(proxy.port)
    client.login_trust()
    client.send(message(b"Q", cstr("BEGIN; SET application_name = 'polite'")))
    assert client.read_until(b"Z")[-1] == (b"Z", b"T")
    tag, body = client.read_message()
    assert tag == b"E" and error_fields(body)["C"] == "25P03"
    # The backend got a Terminate: its session ended without PostgreSQL's "unexpected EOF on
    # client connection with an open transaction".
    assert wait_for(lambda: pg.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'polite'") == "0")
    with open(pg.log) as log:
        log.seek(log_start)
        assert "unexpected EOF" not in log.read()
