import shutil

import pytest

from harness import Certificates, PgCluster, Proxy, make_tempdir


@pytest.fixture(scope="session")
def certs():
    directory = make_tempdir("sy-certs-")
    yield Certificates(directory)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def pg(certs):
    cluster = PgCluster(certs).start()
    yield cluster
    cluster.destroy()


@pytest.fixture
def start_proxy(tmp_path):
    """Starts switchyard with the given YAML (listen/admin ports are added); stops it after."""
    started = []

    def start(config, extra_args=()):
        proxy = Proxy(config, tmp_path)
        started.append(proxy)
        return proxy.start(extra_args)

    yield start
    for proxy in started:
        alive = proxy.alive()
        proxy.stop()
        log = proxy.log()
        assert alive, f"switchyard died during the test:\n{log}"
        # Under ASan/UBSan (scripts/test.sh) a report in the log fails the test that caused it.
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            assert marker not in log, f"sanitizer report from switchyard:\n{log}"


@pytest.fixture
def proxy(pg, start_proxy):
    """switchyard in front of the session's cluster, trusting clients, logging in as postgres."""
    return start_proxy(f"primary: {pg.uri()}\n")
