"""Shared pytest fixtures: the repository root and the real test servers (see tests/support/servers.py).

Each server fixture is function-scoped: every test gets a fresh server with empty state on its own free
loopback ports (they start in well under a second), and the server is stopped after the test even when
it fails. A missing server binary FAILS the test with a message saying to run scripts/test: the server
tests must never be skipped silently. Tests using these fixtures are marked ``servers`` automatically,
so ``pytest -m 'not servers'`` runs the rest quickly on a machine without the servers.
"""

from __future__ import annotations

import os
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


@pytest.fixture(scope="session", autouse=True)
def _own_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Commands run by tests (in-process or as subprocesses) keep the detector's filter designs
    (``ingest.files.design_cache``) in the run's temporary directory, not the user's ~/.cache."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


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


#: Rough wall time (seconds, on an idle 2-core machine under ``scripts/test``) of the tests that take
#: longest, by node id prefix. Used only to hand the longest work out first (see below); a test not
#: listed counts as 0 s, one marked ``slow`` but not listed as ``SLOW_DEFAULT_S``. Stale numbers
#: cost a little wall time, never a result.
EXPECTED_S: dict[str, float] = {
    "unit/test_clock_drift_and_jitter.py::test_hour_of_drift_and_jitter": 55,
    "e2e/test_worker.py::test_two_workers": 30,
    "e2e/test_dashboard_browser.py::test_dashboard_in_chromium": 28,
    "e2e/test_outages.py::test_broker_killed": 30,
    "e2e/test_outages.py::test_gateway_kill9": 18,
    "e2e/test_outages.py::test_influxdb_down": 6,
    "servers/test_secure_broker.py::test_central_worker": 20,
    "servers/test_secure_broker.py::test_the_dashboard_reads": 10,
    "servers/test_secure_broker.py::test_gateway_end_to_end_over_tls": 9,
    "e2e/test_restart_gap.py::": 18,
    "e2e/test_deployed.py::test_sim_to_mqtt": 17,
    "e2e/test_deployed.py::test_influx_v2": 7,
    "unit/test_clock.py::test_hour_with_200ppm": 11,
    "e2e/test_dashboard_demo.py::": 12,
    "e2e/test_supervision.py::test_gateway_process_speaks_sd_notify": 11,
    "e2e/test_supervision.py::test_detector_failure": 8,
    "unit/test_scenarios.py::test_shipped_scenario_loads_and_obeys_taxonomy[act_day]": 10,
    "unit/test_session_activity.py::test_walking_bout": 9,
    "unit/test_clock_steps.py::test_replay_with_clock_steps": 9,
    "e2e/test_one_capture.py::": 8,
    "e2e/test_sim_recording.py::test_gateway_detects": 6,
    "servers/test_grafana.py::test_the_replay_wrote": 7,
    "e2e/test_full_disk.py::": 7,
    "unit/test_report.py::test_report_html_and_pdf": 6,
    "e2e/test_vendor_e2e.py::test_vendor_device_end_to_end": 8,
    "e2e/test_vendor_e2e.py::test_sim_command": 4,
    "unit/test_detector_activity.py::test_activity_stage_is_chunk_invariant": 6,
    "e2e/test_collectors.py::test_ble_three_disconnects": 12,
    "e2e/test_collectors.py::test_one_failing_device": 8,
    "e2e/test_ble.py::test_gateway_over_ble": 7,
    "e2e/test_ble_wearables.py::test_myo_over": 7,
    "e2e/test_ble_wearables.py::test_polar_h10_over": 5,
    "e2e/test_ble_bridge.py::": 25,
    "e2e/test_ble_bridge_link.py::": 6,
}
SLOW_DEFAULT_S = 10.0


def expected_s(item: Any) -> float:
    """The rough wall time of one test (EXPECTED_S), for the order in which tests are handed out."""
    nodeid = item.nodeid.removeprefix("tests/")
    for prefix, seconds in EXPECTED_S.items():
        if nodeid.startswith(prefix):
            return seconds
    return SLOW_DEFAULT_S if item.get_closest_marker("slow") else 0.0


def pytest_configure(config: pytest.Config) -> None:
    """On xdist workers (``-n 4``, scripts/test) hand tests out one at a time (``--maxschedchunk 1``).

    xdist's default ``load`` distribution first gives each worker a contiguous quarter of its share
    (about 88 tests each here) that no other worker can take back: with the longest tests ordered
    first, the first worker's block held every slow e2e module, about half of all the test time,
    so the workers came out even only as long as that block happened to be half. One at a
    time, each worker takes the next test in the order below when it is free (it keeps one queued,
    as pytest needs to know the next test): even by construction, whatever tests are added or get
    slower. An explicit ``--maxschedchunk`` on the command line wins.
    """
    if getattr(config.option, "maxschedchunk", "absent") is None:
        config.option.maxschedchunk = 1


def pytest_collection_modifyitems(config: pytest.Config, items: list[Any]) -> None:
    """Mark every test that uses a server fixture with ``servers``, so ``-m`` can select or exclude them.

    Then order for the xdist workers, which take the next test whenever they are free (see
    pytest_configure): whole modules, by their longest test, longest first. The longest work starts
    at once on every worker, so the run does not end with one worker idle while the other finishes
    a long test started last. A module's tests keep their order (some share a module-scoped server
    whose retained state a later test would see), and so do modules of equal rank (the sort is
    stable).
    """
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)
    longest: dict[str, float] = {}
    for item in items:
        longest[item.module.__name__] = max(longest.get(item.module.__name__, 0.0), expected_s(item))
    items.sort(key=lambda item: -longest[item.module.__name__])
