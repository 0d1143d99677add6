"""Client auth, backend auth and TLS on both sides, against a real PostgreSQL 15."""
import base64
import hashlib
import hmac
import os

import psycopg
import pytest

from harness import wait_for
from wire import RawClient, error_fields, startup_packet


def scram_verifier(password, iterations=4096):
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored)}:{b64(server)}"


CREDENTIALS = {
    "plain password": "password: apppw",
    "scram verifier": f"scram_verifier: '{scram_verifier('apppw')}'",
    "md5 hash": "md5_hash: md5" + hashlib.md5(b"apppwapp").hexdigest(),
}


@pytest.mark.parametrize("method,credential", [
    ("scram-sha-256", "plain password"), ("scram-sha-256", "scram verifier"),
    ("md5", "plain password"), ("md5", "md5 hash"),
    ("password", "plain password"), ("password", "scram verifier"),
])
def test_client_auth_methods(pg, start_proxy, method, credential):
    proxy = start_proxy(f"primary: {pg.uri()}\nauth:\n  method: {method}\n  users:\n"
                        f"    - name: app\n      {CREDENTIALS[credential]}\n")
    with psycopg.connect(proxy.dsn(user="app", password="apppw")) as conn:
        # The backend login uses the URI's credentials, so the session runs as postgres.
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    for user, password in (("app", "wrong"), ("nobody", "apppw")):
        with pytest.raises(psycopg.OperationalError) as raised:
            psycopg.connect(proxy.dsn(user=user, password=password))
        assert f'password authentication failed for user "{user}"' in str(raised.value)
    assert proxy.metric("switchyard_client_disconnects_total", reason="auth_failed") == 2


def test_auth_failure_carries_sqlstate_28P01(pg, start_proxy):
    proxy = start_proxy(f"primary: {pg.uri()}\nauth:\n  method: password\n  users:\n"
                        "    - name: app\n      password: apppw\n")
    client = RawClient(proxy.port)
    client.send(startup_packet(user="app"))
    tag, body = client.read_message()
    assert tag == b"R" and body == (3).to_bytes(4, "big")  # AuthenticationCleartextPassword
    client.send(b"p" + (10).to_bytes(4, "big") + b"wrong\0")
    tag, body = client.read_message()
    assert tag == b"E" and error_fields(body)["C"] == "28P01"
    assert client.closed()


def test_backend_auth_scram_md5_password_and_trust(pg, start_proxy):
    # No user in the URI: each client logs in to PostgreSQL as itself, with its config password.
    users = "".join(f"    - name: {u}\n      password: secret\n"
                    for u in ("postgres", "md5user", "pwuser", "trustuser"))
    proxy = start_proxy(f"primary: postgresql://127.0.0.1:{pg.port}/postgres\n"
                        f"auth:\n  method: scram-sha-256\n  users:\n{users}")
    for user in ("postgres", "md5user", "pwuser", "trustuser"):
        with psycopg.connect(proxy.dsn(user=user, password="secret")) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (user,)
    stored = pg.sql("SELECT rolname || '=' || left(rolpassword, 3) FROM pg_authid "
                    "WHERE rolname IN ('postgres', 'md5user') ORDER BY 1")
    assert stored.split() == ["md5user=md5", "postgres=SCR"], "the cluster must challenge with md5 and SCRAM"


def test_backend_rejects_wrong_password_verbatim(pg, start_proxy):
    proxy = start_proxy(f"primary: {pg.uri(password='not-the-password')}\n")
    with pytest.raises(psycopg.OperationalError) as raised:
        psycopg.connect(proxy.dsn())
    assert 'password authentication failed for user "postgres"' in str(raised.value)
    assert proxy.metric("switchyard_client_disconnects_total", reason="backend_rejected") == 1


def tls_config(certs, mode):
    return f"tls:\n  mode: {mode}\n  cert_file: {certs.cert}\n  key_file: {certs.key}\n"


def test_client_tls_verify_full_and_required(pg, certs, start_proxy):
    proxy = start_proxy(f"primary: {pg.uri()}\n" + tls_config(certs, "require"))
    dsn = proxy.dsn(host="localhost", sslmode="verify-full", sslrootcert=certs.ca_cert)
    with psycopg.connect(dsn) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT 'over tls'").fetchone() == ("over tls",)
    with pytest.raises(psycopg.OperationalError) as raised:
        psycopg.connect(proxy.dsn(sslmode="disable"))
    assert "requires an SSL connection" in str(raised.value)
    with pytest.raises(psycopg.OperationalError) as raised:
        psycopg.connect(proxy.dsn(host="localhost", sslmode="verify-full", sslrootcert=certs.other_ca_cert))
    assert "certificate verify failed" in str(raised.value)


def test_client_tls_allow_serves_both(pg, certs, start_proxy):
    proxy = start_proxy(f"primary: {pg.uri()}\n" + tls_config(certs, "allow"))
    with psycopg.connect(proxy.dsn(sslmode="require")) as conn:
        assert conn.pgconn.ssl_in_use
    with psycopg.connect(proxy.dsn(sslmode="disable")) as conn:
        assert not conn.pgconn.ssl_in_use


def test_backend_tls_verify_full(pg, certs, start_proxy):
    proxy = start_proxy(f"primary: '{pg.uri(host='localhost', sslmode='verify-full', sslrootcert=certs.ca_cert)}'\n")
    with psycopg.connect(proxy.dsn()) as conn:
        ssl = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        assert ssl == (True,), "the proxy's connection to PostgreSQL must be encrypted"
    wrong_ca = start_proxy(f"primary: '{pg.uri(host='localhost', sslmode='verify-full', sslrootcert=certs.other_ca_cert)}'\n")
    with pytest.raises(psycopg.OperationalError) as raised:
        psycopg.connect(wrong_ca.dsn())
    assert "SSL handshake failed" in str(raised.value)


def test_backend_sslmode_disable_is_plaintext(pg, start_proxy):
    proxy = start_proxy(f"primary: '{pg.uri(sslmode='disable')}'\n")
    with psycopg.connect(proxy.dsn()) as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (False,)


def test_unencrypted_bytes_after_ssl_request_are_rejected(pg, certs, start_proxy):
    proxy = start_proxy(f"primary: {pg.uri()}\n" + tls_config(certs, "allow"))
    client = RawClient(proxy.port)
    # SSLRequest and a plaintext StartupMessage in one write, as an injecting attacker would.
    client.send((8).to_bytes(4, "big") + (80877103).to_bytes(4, "big") + startup_packet())
    tag, body = client.read_message()
    assert tag == b"E"
    assert error_fields(body)["M"] == "received unencrypted data after SSL request"
    assert client.closed()
    assert proxy.metric("switchyard_client_disconnects_total", reason="unencrypted_after_ssl_request") == 1


def test_client_leaving_at_the_password_prompt_is_a_disconnect(pg, start_proxy):
    # psql does this when it must ask for a password: it hangs up, prompts, reconnects.
    proxy = start_proxy(f"primary: {pg.uri()}\nauth:\n  method: scram-sha-256\n  users:\n"
                        "    - name: app\n      password: apppw\n")
    # The harness's readiness probe is itself a client_disconnect, so count from a baseline.
    disconnects = lambda: proxy.metric("switchyard_client_disconnects_total", reason="client_disconnect")
    assert wait_for(lambda: disconnects() >= 1)
    before = disconnects()
    client = RawClient(proxy.port)
    client.send(startup_packet(user="app"))
    tag, _ = client.read_message()
    assert tag == b"R"
    client.close()
    assert wait_for(lambda: disconnects() == before + 1)
    assert proxy.metric("switchyard_client_disconnects_total", reason="protocol_violation") == 0
