"""Sinks against the real servers: TLS, auth, MQTT 5, 413 splitting, 400 quarantine; spool quota."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.harness import Subscriber
from support.servers import InfluxDB1, Mosquitto

from ingest.config import InfluxSection, MqttSection, TlsSection
from ingest.outputs.delivery import Delivery
from ingest.outputs.router import Router
from ingest.outputs.sinks.base import SinkRejected, SinkUnavailable
from ingest.outputs.sinks.influx import InfluxV1Sink
from ingest.outputs.sinks.mqtt import MqttSink, encode_message
from ingest.outputs.spool import Priority, Spool
from ingest.stream.records import EventRecord
from ingest.stream.session import Output, SeriesBlock


def lines(n: int, start: int = 0, measurement: str = "emg_envelope") -> list[bytes]:
    base = 1_795_600_000_000_000_000
    return [
        f"{measurement},device=d,channel=c uv={i * 0.5} {base + i * 20_000_000}\n".encode()
        for i in range(start, start + n)
    ]


async def publish_one(cfg: MqttSection, topic: str, payload: dict[str, str]) -> None:
    async with MqttSink(cfg, client_id="gw-test", status_topic="t/status", device="d") as sink:
        await sink.send([encode_message(topic, json.dumps(payload).encode(), 1, False)])


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_mqtt_qos1_publish_reaches_subscriber(mosquitto: Mosquitto, protocol: str) -> None:
    async def run() -> list[str]:
        async with Subscriber(mosquitto.port, topic="t/#") as obs:
            cfg = MqttSection(host="127.0.0.1", port=mosquitto.port, protocol=protocol)  # type: ignore[arg-type]
            await publish_one(cfg, "t/events", {"id": "e1"})
            await asyncio.sleep(0.3)
            return obs.ids("events")

    assert asyncio.run(run()) == ["e1"]


def test_mqtt_over_tls_with_client_certificate_and_password(mosquitto_secure: Mosquitto) -> None:
    m = mosquitto_secure
    assert m.tls_files is not None and m.tls_port is not None
    tls = TlsSection(
        enabled=True,
        ca_file=m.tls_files.ca_cert,
        cert_file=m.tls_files.client_cert,
        key_file=m.tls_files.client_key,
    )
    good = MqttSection(host="127.0.0.1", port=m.tls_port, username=m.username, password=m.password, tls=tls)

    async def run() -> list[str]:
        async with Subscriber(m.port, topic="t/#") as obs:  # reads on the plain loopback listener
            await publish_one(good, "t/events", {"id": "secure-1"})
            await asyncio.sleep(0.3)
            return obs.ids("events")

    assert asyncio.run(run()) == ["secure-1"]


def test_mqtt_wrong_password_is_unavailable_not_a_crash(mosquitto_secure: Mosquitto) -> None:
    m = mosquitto_secure
    assert m.auth_port is not None
    bad = MqttSection(host="127.0.0.1", port=m.auth_port, username=m.username, password="wrong")
    with pytest.raises(SinkUnavailable, match=r"MQTT broker 127\.0\.0\.1"):
        asyncio.run(publish_one(bad, "t/events", {"id": "x"}))


def test_influx_v1_413_splits_the_batch(tmp_path_factory: pytest.TempPathFactory) -> None:
    with InfluxDB1(tmp_path_factory.mktemp("influx413"), max_body_size=8192) as influx:
        cfg = InfluxSection(enabled=True, api="v1", url=influx.url, database=influx.database, gzip=False)
        records = [b"".join(lines(40, start=i * 40)) for i in range(12)]  # ~2.5 kB each, ~30 kB together
        sink = InfluxV1Sink(cfg)

        async def run() -> None:
            async with sink:
                await sink.send(records)

        asyncio.run(run())
        assert sink.requests > 1
        assert influx.count("emg_envelope", "uv") == 12 * 40


def test_influx_v1_400_quarantines_only_the_bad_lines(influxdb1: InfluxDB1, tmp_path: Path) -> None:
    cfg = InfluxSection(enabled=True, api="v1", url=influxdb1.url, database=influxdb1.database)
    good = [b"".join(lines(10, start=i * 10)) for i in range(7)]
    bad = b'emg_envelope,device=d,channel=c uv="not a number" 1795600000000000001\n'  # field type conflict
    records = [*good[:3], bad, *good[3:]]

    async def run() -> tuple[Delivery, Spool]:
        with Spool(tmp_path / "spool", quota_bytes=1 << 20, segment_bytes=64 << 10) as spool:
            # The first write creates the field as float, so the string line conflicts.
            for r in records:
                spool.append("influx", Priority.BULK, r)
            d = Delivery(spool, "influx", lambda: InfluxV1Sink(cfg), quarantine_dir=tmp_path / "quarantine")
            task = asyncio.create_task(d.run())
            for _ in range(100):
                await asyncio.sleep(0.05)
                if spool.stats().total_pending_records == 0:
                    break
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return d, spool

    d, _ = asyncio.run(run())
    assert d.stats.quarantined_records == 1
    assert influxdb1.count("emg_envelope", "uv") == 70
    quarantined = next((tmp_path / "quarantine").glob("influx-*.quarantine")).read_bytes()
    assert bad in quarantined and b"field type conflict" in quarantined


def test_rejected_is_raised_with_indexes(influxdb1: InfluxDB1) -> None:
    cfg = InfluxSection(enabled=True, api="v1", url=influxdb1.url, database=influxdb1.database)

    async def run() -> None:
        async with InfluxV1Sink(cfg) as sink:
            await sink.send([b"".join(lines(5)), b"this is not line protocol\n", b"".join(lines(5, start=5))])

    with pytest.raises(SinkRejected) as err:
        asyncio.run(run())
    assert err.value.bad == [1]
    assert influxdb1.count("emg_envelope", "uv") == 10


def test_quota_evicts_bulk_before_clinical_and_reports_it(tmp_path: Path) -> None:
    with Spool(tmp_path / "spool", quota_bytes=256 << 10, segment_bytes=16 << 10) as spool:
        router = Router(
            spool, patient="p", series_sinks=["influx"], notify=lambda s: None, series_max_bytes=4096
        )
        event = EventRecord(
            id="00000000-0000-5000-8000-000000000000",
            device="d",
            boot_id=0,
            type="phasic",
            channel="c",
            t_onset=1_795_564_800.0,  # 2026-11-25T00:00:00.000Z
            t_offset=1_795_564_801.0,
            duration_s=1.0,
            peak_uv=100.0,
            mean_uv=50.0,
            baseline_uv=3.0,
            relative_amplitude=30.0,
            frequency_hz=None,
            confidence=0.9,
            detector_version="test",
            config_hash="0",
        )
        t = np.arange(1000, dtype=np.int64) * 20_000_000 + 1_795_600_000_000_000_000
        for i in range(60):  # ~1 MB of envelope: four times the quota
            router.route(
                "d",
                Output(
                    "envelope",
                    series=SeriesBlock(
                        "emg_envelope",
                        {"device": "d", "channel": "c"},
                        {"uv": np.full(1000, float(i))},
                        t + i,
                    ),
                ),
            )
            if i % 10 == 0:
                router.route("d", Output("event", dataclasses.replace(event, id=event.id[:-2] + f"{i:02d}")))
        router.flush_series(force=True)
        st = spool.stats()
    assert st.evicted_records[Priority.BULK] > 0
    assert st.evicted_records[Priority.CLINICAL] == 0
    assert st.pending_records["influx"][Priority.CLINICAL] == 6
    assert st.bytes <= 256 << 10


def test_backoff_grows_with_jitter_caps_and_honours_retry_after() -> None:
    import random

    from ingest.outputs.delivery import Backoff

    b = Backoff(initial_s=0.5, max_s=10.0, rng=random.Random(1))
    delays = [b.next() for _ in range(8)]
    assert all(0.25 <= d <= 10.0 for d in delays)
    assert delays[-1] > delays[0] and max(delays) <= 10.0
    assert b.next(retry_after=25.0) == 25.0  # the server's wish wins over our own schedule
    b.reset()
    assert b.next() <= 0.5


async def test_eviction_is_reported_in_the_device_status(tmp_path: Path, free_port: Any) -> None:
    """InfluxDB unreachable, a small quota: bulk series are evicted, events kept, and the device's
    retained status says how much was evicted."""
    from ingest.config import parse_config
    from ingest.stream.runner import Gateway

    cfg = parse_config(
        {
            "gateway": {"state_dir": str(tmp_path / "state")},
            "devices": [{"id": "d", "port": str(tmp_path / "no-such-port")}],
            "mqtt": {"enabled": False},
            "influx": {"enabled": True, "api": "v1", "url": f"http://127.0.0.1:{free_port()}"},
            "spool": {"quota_mb": 0.25, "fsync": "never"},
        }
    )
    async with Gateway(cfg) as gw:
        assert gw.router is not None
        t = np.arange(1000, dtype=np.int64) * 20_000_000 + 1_795_600_000_000_000_000
        for i in range(40):
            gw.router.route(
                "d",
                Output(
                    "envelope",
                    series=SeriesBlock(
                        "emg_envelope",
                        {"device": "d", "channel": "c"},
                        {"uv": np.full(1000, float(i))},
                        t + i,
                    ),
                ),
            )
        gw.router.flush_series(force=True)
        status, _ = gw.status_payload(gw.devices["d"])
    assert status["spool"]["evicted_records"]["bulk"] > 0
    assert status["spool"]["evicted_records"]["clinical"] == 0
    assert status["spool"]["bytes"] <= status["spool"]["quota_bytes"]
    # nothing reached InfluxDB: everything still held is still to deliver
    assert 0 < status["spool"]["pending_bytes"] <= status["spool"]["bytes"]
