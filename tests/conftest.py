"""Shared pytest fixtures: the repository root and the real test servers (see tests/support/servers.py).

Each server fixture is function-scoped: every test gets a fresh server with empty state on its own free
loopback ports (they start in well under a second), and the server is stopped after the test even when
it fails. A missing server binary FAILS the test with a message saying to run scripts/test: the server
tests must never be skipped silently. Tests using these fixtures are marked ``servers`` automatically,
so ``pytest -m 'not servers'`` runs the rest quickly on a machine without the servers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

# tests/ is not a package: pytest's default ("prepend") import mode puts this directory on sys.path.
from support import servers
from support.servers import InfluxDB1, Mosquitto, Server, ServerBinaryMissing, VictoriaMetrics

REPO_ROOT = Path(__file__).resolve().parent.parent

_S = TypeVar("_S", bound=Server)

SERVER_FIXTURES = frozenset({"mosquitto", "mosquitto_secure", "influxdb1", "influxdb1_auth", "victoria"})


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's root directory (where pyproject.toml is)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """``free_port()`` returns a free loopback TCP port outside the ephemeral range (servers.free_port)."""
    return servers.free_port


def _serve(factory: Callable[[], _S]) -> Iterator[_S]:
    try:
        server = factory()
    except ServerBinaryMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A Mosquitto broker with one anonymous listener at ``mosquitto.host``:``mosquitto.port``."""
    yield from _serve(lambda: Mosquitto(tmp_path_factory.mktemp("mosquitto")))


@pytest.fixture
def mosquitto_secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """Mosquitto with an anonymous ``port``, a password-only ``auth_port`` and a TLS ``tls_port``.

    The TLS listener requires a client certificate and the password; CA, client certificate and key are
    in ``mosquitto_secure.tls_files``, credentials in ``.username`` / ``.password``.
    """
    yield from _serve(
        lambda: Mosquitto(tmp_path_factory.mktemp("mosquitto"), auth=True, tls=True, require_client_cert=True)
    )


@pytest.fixture
def influxdb1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1]:
    """InfluxDB 1.x at ``influxdb1.url`` with database ``influxdb1.database`` created, no auth."""
    yield from _serve(lambda: InfluxDB1(tmp_path_factory.mktemp("influxdb")))


@pytest.fixture
def influxdb1_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1]:
    """InfluxDB 1.x with authentication on; admin credentials in ``.admin_user`` / ``.admin_password``."""
    yield from _serve(lambda: InfluxDB1(tmp_path_factory.mktemp("influxdb"), auth=True))


@pytest.fixture
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """VictoriaMetrics at ``victoria.url``: the real server behind the InfluxDB v2 write-path tests."""
    yield from _serve(lambda: VictoriaMetrics(tmp_path_factory.mktemp("victoria")))


def pytest_collection_modifyitems(config: pytest.Config, items: list[Any]) -> None:
    """Mark every test that uses a server fixture with ``servers``, so ``-m`` can select or exclude them.

    Modules with a test marked ``slow`` run first (otherwise in collection order): on two xdist
    workers (scripts/test) a long test started last would leave one worker idle while it finishes.
    """
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)
    # Whole modules move, in order, so a module-scoped fixture is still built once per module.
    slow_modules = {item.module.__name__ for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module.__name__ not in slow_modules)
