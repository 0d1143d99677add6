"""Real servers for integration tests: PostgreSQL 15 clusters, TLS certificates, switchyard."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
REPO = Path(__file__).resolve().parents[2]
SWITCHYARD_BIN = Path(os.environ.get("SWITCHYARD_BIN", REPO / "build" / "proxy" / "switchyard"))
PASSWORD = "secret"


_ports_handed_out = set()


def free_port():
    """A port nothing listens on, never one this process was given before: two calls before
    either port is bound (a proxy's listen and admin ports) could otherwise get the same one."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_handed_out:
            _ports_handed_out.add(port)
            return port


def wait_for_port(port, timeout=15.0, process=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def make_tempdir(prefix):
    """A temp dir the postgres user can use (PostgreSQL refuses to run as root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    shutil.chown(path, "postgres", "postgres")
    return path


class Certificates:
    """A CA plus a certificate for localhost/127.0.0.1 that it signed, made with openssl."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.ca_cert = directory / "ca.crt"
        self.ca_key = directory / "ca.key"
        self.cert = directory / "server.crt"
        self.key = directory / "server.key"
        self.other_ca_cert = directory / "other-ca.crt"
        run = lambda *args: subprocess.run(args, check=True, capture_output=True)
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=switchyard test CA", "-keyout", str(self.ca_key), "-out", str(self.ca_cert))
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=unrelated CA", "-keyout", str(directory / "other-ca.key"),
            "-out", str(self.other_ca_cert))
        csr = directory / "server.csr"
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", str(self.key), "-out", str(csr))
        ext = directory / "san.ext"
        ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(self.ca_cert), "-CAkey",
            str(self.ca_key), "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(self.cert))
        for path in directory.iterdir():
            path.chmod(0o644)


class PgCluster:
    """A PostgreSQL 15 cluster in a temp dir on a free port, run as the postgres user."""

    def __init__(self, certs: Certificates | None = None, max_connections=200):
        self.root = make_tempdir("sy-pg-")
        self.data = self.root / "data"
        self.port = free_port()
        self.certs = certs
        self.max_connections = max_connections
        self.log = self.root / "postgres.log"

    def _as_postgres(self, *args, check=True):
        return subprocess.run(["runuser", "-u", "postgres", "--", *map(str, args)], check=check,
                              capture_output=True, text=True)

    def start(self):
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        shutil.chown(pwfile, "postgres", "postgres")
        self._as_postgres(PG_BIN / "initdb", "-D", self.data, "-U", "postgres",
                          "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync")
        conf = ["listen_addresses = '127.0.0.1'", f"port = {self.port}",
                f"unix_socket_directories = '{self.root}'", f"max_connections = {self.max_connections}",
                # fsync off is safe against the process kills tests do (the OS keeps the
                # writes); synchronous_commit stays on so a killed server keeps what it committed.
                "fsync = off", "full_page_writes = off",
                # two-phase commit (PREPARE TRANSACTION) is off unless given slots
                "max_prepared_transactions = 8"]
        if self.certs:
            for src, name in ((self.certs.cert, "server.crt"), (self.certs.key, "server.key")):
                dst = self.data / name
                shutil.copy(src, dst)
                shutil.chown(dst, "postgres", "postgres")
                dst.chmod(0o600)
            conf += ["ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'"]
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\n".join(conf) + "\n")
        # md5 in pg_hba means: md5 for md5-stored passwords, SCRAM for SCRAM-stored ones.
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all pwuser 127.0.0.1/32 password\n"
            "host all trustuser 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 md5\n")
        self.launch()
        self.sql("SET password_encryption = 'md5'; CREATE ROLE md5user LOGIN PASSWORD 'secret';"
                 "CREATE ROLE pwuser LOGIN PASSWORD 'secret'; CREATE ROLE trustuser LOGIN;"
                 "GRANT ALL ON SCHEMA public TO md5user, pwuser, trustuser;")
        return self

    def launch(self):
        """Starts the postmaster of an initialised cluster (again, after a stop or a kill)."""
        self._as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.log, "-w", "start")
        return self

    def processes(self):
        """The postmaster's pid and those of its children."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                                  text=True).stdout.split()
        return [pid, *map(int, children)]

    def signal(self, sig):
        """Sends `sig` to the postmaster and every backend (SIGKILL: a crash; SIGSTOP: a hang)."""
        for pid in self.processes():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def checksum(self, table, order="1", dbname="postgres"):
        """md5 over the table's rows as text, in `order`: equal checksums mean equal tables."""
        return self.sql(f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY {order})), '')"
                        f" FROM {table} t", dbname)

    def stop(self, mode="fast"):
        self._as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop", check=False)

    def destroy(self):
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def sql(self, statement, dbname="postgres"):
        """Runs SQL directly on the cluster (not through the proxy) and returns psql's output."""
        out = subprocess.run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", str(self.root), "-p",
                              str(self.port), "-U", "postgres", "-d", dbname, "-c", statement],
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def client_sessions(self):
        """How many client sessions the cluster serves besides the one asking."""
        return int(self.sql("SELECT count(*) FROM pg_stat_activity "
                            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"))

    def uri(self, user="postgres", password=PASSWORD, host="127.0.0.1", dbname="postgres", **params):
        credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://{credentials}{host}:{self.port}/{dbname}" + (f"?{query}" if query else "")

    def socket_uri(self, **params):
        """The URI of the cluster's Unix-domain socket: its directory as the (percent-encoded) host."""
        return self.uri(host=str(self.root).replace("/", "%2F"), **params)


def wait_for(predicate, timeout=10.0):
    """Polls until predicate() is true; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


class RedisServer:
    """A real redis-server on a free port, without persistence, in its own directory."""

    def __init__(self):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="sy-redis-", dir="/tmp"))
        self.process = None

    def start(self):
        self.log = open(self.dir / "redis.log", "a")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)], stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, process=self.process)
        return self

    def kill(self):
        self.process.kill()
        self.process.wait()
        self.log.close()

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], check=True,
                              capture_output=True, text=True).stdout.strip()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def destroy(self):
        if self.process and self.process.poll() is None:
            self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class Proxy:
    """A switchyard process started from a YAML config on free ports."""

    def __init__(self, config: str, workdir: Path, admin_token=None, cutover="", admin="",
                 binary=None):
        """`cutover`, `admin`: YAML lines for those sections (indented two spaces); `binary`:
        another switchyard build to run (benchmarks compare one against a baseline)."""
        self.binary = binary or SWITCHYARD_BIN
        self.port = free_port()
        self.admin_port = free_port()
        self.workdir = workdir
        self.admin_token = admin_token
        self.cutover = cutover
        self.admin = admin
        self.config_path = workdir / f"switchyard-{self.port}.yaml"
        self.log_path = workdir / f"switchyard-{self.port}.log"
        self.write_config(config)
        self.process = None

    def write_config(self, config: str):
        head = f"listen: 127.0.0.1:{self.port}\nadmin:\n  listen: 127.0.0.1:{self.admin_port}\n"
        if self.admin_token:
            head += f"  token: {self.admin_token}\n"
        head += self.admin
        # Each proxy keeps its own cutover state, as separate installations would. Tests of
        # other features switch the gates off, so no auto-revert moves their reads.
        gates = self.cutover or ("  gates:\n" + "".join(
            f"    {gate}: {{enabled: false}}\n" for gate in
            ("secondary_error_rate", "latency_p99_ratio", "shadow_mismatch_rate", "journal_backlog")))
        head += (f"cutover:\n  state_file: {self.state_path}\n  audit_log: {self.audit_path}\n"
                 + gates)
        self.config_path.write_text(head + config)

    @property
    def state_path(self):
        return self.workdir / f"cutover-{self.port}.json"

    @property
    def audit_path(self):
        return self.workdir / f"audit-{self.port}.jsonl"

    def audit(self):
        """The audit log's entries, oldest first."""
        import json
        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines() if line]

    def api(self, method, path, body=None, token=None):
        """Calls the admin API: (HTTP status, decoded JSON body)."""
        import json
        import urllib.error
        import urllib.request
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}{path}", data=data, method=method)
        token = self.admin_token if token is None else token
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def start(self, extra_args=()):
        self.log_file = open(self.log_path, "w")
        self.process = subprocess.Popen([str(self.binary), "--config", str(self.config_path), *extra_args], cwd=self.workdir,
                                        stdout=self.log_file, stderr=subprocess.STDOUT)
        wait_for_port(self.port, process=self.process)
        return self

    def reload(self):
        self.process.send_signal(signal.SIGHUP)

    def alive(self):
        return self.process.poll() is None

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()

    def log(self):
        return self.log_path.read_text()

    def dsn(self, user="postgres", password=PASSWORD, dbname="postgres", **params):
        parts = {"host": "127.0.0.1", "port": self.port, "user": user, "dbname": dbname, **params}
        if password is not None:
            parts["password"] = password
        return " ".join(f"{k}={v}" for k, v in parts.items())

    def metric_sum(self, name):
        """The sum of a metric's samples over all their labels (0 if absent)."""
        import urllib.request
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=5).read().decode()
        total = 0.0
        for line in text.splitlines():
            key, _, value = line.rpartition(" ")
            if key == name or key.startswith(name + "{"):
                total += float(value)
        return total

    def metric(self, name, **labels):
        """The value of one sample from /metrics (0 if absent)."""
        import urllib.request
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=5).read().decode()
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            if key == (f"{name}{{{want}}}" if want else name):
                return float(value)
        return 0.0


def closed_by_role_swap(error):
    """Whether switchyard closed the session because a role swap made its backends stale."""
    return "swapped the primary and secondary databases" in str(error)


class ClientThreads:
    """Client threads that run until the `with` block ends (they watch `stop_event`)."""

    def __init__(self):
        self.stop_event = threading.Event()
        self.threads = []

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for thread in self.threads:
            thread.join()
