"""Prove that the server fixtures run the real servers and that their helpers tell the truth.

Every later integration test (sinks, spool, outage tests) leans on these fixtures, so each property they
rely on is checked here against the real server: MQTT 3.1.1 and 5 round trips, shared subscriptions,
password and mutual-TLS listeners, InfluxDB 1.x ``/write`` + ``/query``, VictoriaMetrics accepting
influxdb-client's v2 writes, and restarts on the same port after SIGTERM and SIGKILL with data kept.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path

import aiomqtt
import pytest
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from support.servers import (
    InfluxDB1,
    Mosquitto,
    ServerBinaryMissing,
    ServerError,
    VictoriaMetrics,
    find_binary,
    free_port,
    http_request,
    port_accepts,
    wait_until,
)

T0_NS = 1_700_000_000_000_000_000  # fixed, far in the past: proves the retention settings accept it


async def _receive(client: aiomqtt.Client, count: int, seconds: float = 10.0) -> list[aiomqtt.Message]:
    got: list[aiomqtt.Message] = []
    async with asyncio.timeout(seconds):
        async for message in client.messages:
            got.append(message)
            if len(got) == count:
                break
    return got


# ---------------------------------------------------------------------------------------------- Mosquitto


@pytest.mark.parametrize("protocol", [aiomqtt.ProtocolVersion.V311, aiomqtt.ProtocolVersion.V5])
async def test_mosquitto_publish_subscribe(mosquitto: Mosquitto, protocol: aiomqtt.ProtocolVersion) -> None:
    async with (
        aiomqtt.Client(mosquitto.host, mosquitto.port, protocol=protocol, identifier="sub") as sub,
        aiomqtt.Client(mosquitto.host, mosquitto.port, protocol=protocol, identifier="pub") as pub,
    ):
        await sub.subscribe("neurospasm/test/#", qos=1)
        for i in range(3):
            await pub.publish(f"neurospasm/test/{i}", f"payload-{i}".encode(), qos=1)
        got = await _receive(sub, 3)
    assert [(str(m.topic), m.payload) for m in got] == [
        (f"neurospasm/test/{i}", f"payload-{i}".encode()) for i in range(3)
    ]
    assert "New client connected" in mosquitto.log_tail(100)


async def test_mosquitto_shared_subscription_splits_messages(mosquitto: Mosquitto) -> None:
    v5 = aiomqtt.ProtocolVersion.V5
    async with (
        aiomqtt.Client(mosquitto.host, mosquitto.port, protocol=v5, identifier="w1") as w1,
        aiomqtt.Client(mosquitto.host, mosquitto.port, protocol=v5, identifier="w2") as w2,
        aiomqtt.Client(mosquitto.host, mosquitto.port, protocol=v5, identifier="pub") as pub,
    ):
        for w in (w1, w2):
            await w.subscribe("$share/workers/raw/#", qos=1)
        for i in range(10):
            await pub.publish(f"raw/{i}", str(i).encode(), qos=1)
        got1, got2 = await asyncio.gather(_receive(w1, 5), _receive(w2, 5))
    payloads = sorted(int(m.payload) for m in [*got1, *got2])
    assert payloads == list(range(10)), "each message goes to exactly one member of the share group"


async def test_mosquitto_password_listener(mosquitto_secure: Mosquitto) -> None:
    m = mosquitto_secure
    assert m.auth_port is not None
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(m.host, m.auth_port, username=m.username, password="wrong"):
            pass
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(m.host, m.auth_port):
            pass
    async with aiomqtt.Client(m.host, m.auth_port, username=m.username, password=m.password) as c:
        await c.subscribe("t", qos=1)
        await c.publish("t", b"authenticated", qos=1)
        assert [msg.payload for msg in await _receive(c, 1)] == [b"authenticated"]


def _tls_context(m: Mosquitto, *, client_cert: bool) -> ssl.SSLContext:
    assert m.tls_files is not None
    ctx = ssl.create_default_context(cafile=str(m.tls_files.ca_cert))  # verifies chain and hostname
    if client_cert:
        ctx.load_cert_chain(m.tls_files.client_cert, m.tls_files.client_key)
    return ctx


async def test_mosquitto_mutual_tls_listener(mosquitto_secure: Mosquitto) -> None:
    m = mosquitto_secure
    assert m.tls_port is not None
    ctx = _tls_context(m, client_cert=True)
    # Hostname verification is on: it passes because the server certificate names IP 127.0.0.1.
    async with aiomqtt.Client(
        m.host, m.tls_port, username=m.username, password=m.password, tls_context=ctx
    ) as c:
        await c.subscribe("tls", qos=1)
        await c.publish("tls", b"over tls", qos=1)
        assert [msg.payload for msg in await _receive(c, 1)] == [b"over tls"]
    # Without a client certificate the handshake is refused. Checked with a bare TLS connection pinned to
    # TLS 1.2: under TLS 1.3 the refusal comes after the client thinks the handshake is done, and paho
    # then reports only a timeout (and leaks the socket), worth knowing when reading a reconnect log.
    no_cert = _tls_context(m, client_cert=False)
    no_cert.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError, match="handshake failure"):
        await asyncio.open_connection(m.host, m.tls_port, ssl=no_cert)
    # mosquitto logs the refusal after the handshake has already failed on our side: wait for the line.
    wait_until(
        lambda: "peer did not return a certificate" in m.log_tail(100),
        timeout=10.0,
        what="mosquitto to log the refused client certificate",
    )


async def test_mosquitto_kill_and_restart_keeps_port_and_persistent_session(mosquitto: Mosquitto) -> None:
    """A QoS 1 message queued for an offline persistent session survives kill -9 of the broker."""
    host, port = mosquitto.host, mosquitto.port
    async with aiomqtt.Client(host, port, identifier="clinic", clean_session=False) as sub:
        await sub.subscribe("neurospasm/v1/events", qos=1)
    async with aiomqtt.Client(host, port, identifier="gateway") as pub:
        await pub.publish("neurospasm/v1/events", b"event-1", qos=1)
    queued_at = time.time_ns()
    db = mosquitto.workdir / "data" / "mosquitto.db"
    wait_until(
        lambda: db.exists() and db.stat().st_mtime_ns > queued_at,
        timeout=10,
        what=f"an autosave of {db} after the publish",
    )
    pid = mosquitto.pid
    mosquitto.kill()
    assert not port_accepts(port)
    mosquitto.start()
    assert (mosquitto.port, mosquitto.starts) == (port, 2)
    assert mosquitto.pid != pid
    async with aiomqtt.Client(host, port, identifier="clinic", clean_session=False) as sub:
        got = await _receive(sub, 1)
    assert [(str(m.topic), m.payload, m.qos) for m in got] == [("neurospasm/v1/events", b"event-1", 1)]


async def test_async_restart_keeps_the_event_loop_running(mosquitto: Mosquitto, influxdb1: InfluxDB1) -> None:
    """arestart/astop/astart let other coroutines run during the outage (a blocked loop would not)."""
    seen_down: list[bool] = []

    async def observe(server: Mosquitto | InfluxDB1) -> None:
        await asyncio.sleep(0.2)  # runs in the middle of the 1 s outage only if the loop is free
        seen_down.append(not server.running and not port_accepts(server.port))

    port = mosquitto.port
    await asyncio.gather(mosquitto.arestart(1.0, hard=True), observe(mosquitto))
    assert (mosquitto.port, mosquitto.starts, mosquitto.running) == (port, 2, True)
    async with aiomqtt.Client(mosquitto.host, port) as c:
        await c.subscribe("after/restart", qos=1)
        await c.publish("after/restart", b"ok", qos=1)
        assert [m.payload for m in await _receive(c, 1)] == [b"ok"]

    influxdb1.write(f"gap,device=d seconds=3 {T0_NS}")
    await asyncio.gather(influxdb1.arestart(1.0), observe(influxdb1))
    assert influxdb1.count("gap", "seconds") == 1
    assert seen_down == [True, True]


def test_start_failure_reports_log_tail(tmp_path: Path) -> None:
    broken = Mosquitto(tmp_path, extra_config=["no_such_option true"])
    with pytest.raises(ServerError, match=r"exited with code[\s\S]*no_such_option"):
        broken.start()
    assert not broken.running


def test_missing_binary_says_to_run_scripts_test() -> None:
    with pytest.raises(ServerBinaryMissing, match=r"no-such-daemon.*'no-such-pkg'.*scripts/test"):
        find_binary("no-such-daemon", "no-such-pkg")


def test_free_port_avoids_ephemeral_range_and_repeats() -> None:
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert not [p for p in ports if low <= p <= high]


# --------------------------------------------------------------------------------------------- InfluxDB 1


def test_influxdb1_write_and_query(influxdb1: InfluxDB1) -> None:
    status, body = http_request(
        "POST",
        f"{influxdb1.url}/write",
        params={"db": influxdb1.database, "precision": "ns"},
        body=(
            f"emg_envelope,device=dev-1,channel=ch0 value=12.5 {T0_NS}\n"
            f"emg_envelope,device=dev-1,channel=ch0 value=13.5 {T0_NS + 20_000_000}\n"
            f"emg_envelope,device=dev-1,channel=ch1 value=7 {T0_NS}\n"
        ).encode(),
    )
    assert (status, body) == (204, b"")
    rows = influxdb1.query("SELECT value FROM emg_envelope WHERE channel = 'ch0'")
    assert rows == [{"time": T0_NS, "value": 12.5}, {"time": T0_NS + 20_000_000, "value": 13.5}]
    grouped = influxdb1.query("SELECT COUNT(value) FROM emg_envelope GROUP BY channel")
    assert sorted((r["channel"], r["count"]) for r in grouped) == [("ch0", 2), ("ch1", 1)]
    assert influxdb1.count("emg_envelope", "value") == 3
    assert influxdb1.count("no_such_measurement", "value") == 0
    with pytest.raises(ServerError, match="error parsing query"):
        influxdb1.query("SELEKT nonsense")


def test_influxdb1_rejects_bad_line_with_400(influxdb1: InfluxDB1) -> None:
    status, body = http_request(
        "POST", f"{influxdb1.url}/write", params={"db": influxdb1.database}, body=b"bad line no fields\n"
    )
    assert status == 400
    assert b"unable to parse" in body


def test_influxdb1_stop_and_kill_keep_data_and_port(influxdb1: InfluxDB1) -> None:
    url = influxdb1.url
    influxdb1.write(f"acc,device=d x=1 {T0_NS}")
    influxdb1.stop()
    with pytest.raises(ServerError):
        http_request("GET", f"{url}/ping", timeout=1)
    influxdb1.start()
    influxdb1.write(f"acc,device=d x=2 {T0_NS + 1}")
    influxdb1.kill()  # acknowledged writes are in the fsynced WAL
    influxdb1.start()
    assert influxdb1.url == url and influxdb1.starts == 3
    assert [r["x"] for r in influxdb1.query("SELECT x FROM acc")] == [1, 2]


def test_influxdb1_auth(influxdb1_auth: InfluxDB1) -> None:
    db = influxdb1_auth
    status, _ = http_request("GET", f"{db.url}/query", params={"q": "SHOW DATABASES"})
    assert status == 401
    db.write(f"status,device=d battery=0.9 {T0_NS}")
    assert db.query("SELECT battery FROM status") == [{"time": T0_NS, "battery": 0.9}]


# ---------------------------------------------------------------------------------------- VictoriaMetrics


def test_victoria_accepts_influxdb_client_v2_writes(victoria: VictoriaMetrics) -> None:
    with InfluxDBClient(url=victoria.url, token="any-token", org="any-org") as client:
        write_api = client.write_api(write_options=SYNCHRONOUS)
        write_api.write(
            bucket="neurospasm",
            record=[
                f"emg_envelope,device=dev-1,channel=ch0 value=12.5 {T0_NS}",
                f"emg_envelope,device=dev-1,channel=ch0 value=13.5 {T0_NS + 20_000_000}",
                f"event,device=dev-1 duration_s=1.25,peak_uv=180i {T0_NS}",
            ],
        )
    assert victoria.samples("emg_envelope_value", wait_for=2, channel="ch0") == [
        (T0_NS // 1_000_000, 12.5),
        (T0_NS // 1_000_000 + 20, 13.5),
    ]
    assert victoria.samples("event_peak_uv", device="dev-1") == [(T0_NS // 1_000_000, 180.0)]
    names = sorted(s["metric"]["__name__"] for s in victoria.export(wait_for=4))
    assert names == ["emg_envelope_value", "event_duration_s", "event_peak_uv"]


def test_victoria_v1_write_recent_point_and_restart(victoria: VictoriaMetrics) -> None:
    now_ms = time.time_ns() // 1_000_000
    status, _ = http_request(
        "POST",
        f"{victoria.url}/write",
        params={"db": "neuro"},
        body=f"hb,device=d up=1 {now_ms}000000".encode(),
    )
    assert status == 204
    [series] = victoria.query('hb_up{device="d"}')  # instant query at "now": only recent points show
    assert series["metric"] == {"__name__": "hb_up", "db": "neuro", "device": "d"}
    victoria.restart()
    assert victoria.samples("hb_up") == [(now_ms, 1.0)]
    assert victoria.export('{__name__="never_written"}', wait_for=0) == []
