"""The dashboard's history routes give the same answers on both storages, from real data.

The same records (tests/history_data.py: three hours of one patient, a second patient) go through
the real SqliteSink and into a real InfluxDB 1.x; one dashboard is opened on ``sqlite:PATH`` and one
on ``influx:URL/DATABASE``, exactly as ``neurospasm dashboard --store`` does. Their JSON for the
patients, the timeline, the stored signal, the trends and a review must agree.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from support import history_data as hd
from support.servers import InfluxDB1

from dashboard.app.backends import open_history
from dashboard.app.config import DashboardConfig
from dashboard.app.server import Dashboard, create_app
from ingest.config import InfluxSection
from ingest.outputs.sinks.influx import InfluxV1Sink
from ingest.outputs.sinks.sqlite import SQLITE_FILENAME, SqliteSink


async def _write_both(records: list[bytes], db_path: Path, url: str, database: str) -> None:
    async with SqliteSink(db_path) as sink:
        for i in range(0, len(records), 300):
            await sink.send(records[i : i + 300])
    async with InfluxV1Sink(InfluxSection(api="v1", url=url, database=database)) as isink:
        for i in range(0, len(records), 300):
            await isink.send(records[i : i + 300])


def _client(tmp: Path, store: str) -> TestClient:
    cfg = DashboardConfig.model_validate(
        {"bind": "127.0.0.1:8080", "state_dir": str(tmp), "store": store, "default_site": "ward-3"}
    )
    return TestClient(create_app(cfg, Dashboard(cfg)), base_url="http://127.0.0.1")


def test_history_routes_agree_on_sqlite_and_influx(tmp_path: Path, influxdb1: InfluxDB1) -> None:
    ds = hd.build()
    db_path = tmp_path / SQLITE_FILENAME
    asyncio.run(_write_both(ds.records, db_path, influxdb1.url, influxdb1.database))
    clients = {
        "sqlite": _client(tmp_path / "a", f"sqlite:{db_path}"),
        "influx": _client(tmp_path / "b", f"influx:{influxdb1.url}/{influxdb1.database}"),
    }
    start, end = hd.T0, hd.T0 + timedelta(hours=hd.HOURS)
    window = {"start": start.isoformat(), "end": end.isoformat()}
    got: dict[str, dict[str, Any]] = {}
    for name, c in clients.items():
        csrf = c.get("/api/me").json()["csrf"]
        patients = c.get("/api/patients").json()["patients"]
        # The store knows no site: the configured default; no live status: not "monitoring".
        assert [(p["site"], p["patient"]) for p in patients] == [
            ("ward-3", hd.PATIENT),
            ("ward-3", hd.OTHER_PATIENT),
        ]
        assert all(not p["monitoring"] for p in patients), name
        base = f"/api/p/ward-3/{hd.PATIENT}"
        timeline = c.get(f"{base}/events", params=window).json()
        assert timeline["history_error"] is None, timeline["history_error"]
        ids = [e["id"] for e in timeline["events"]]
        assert ids == [
            e["id"]
            for e in sorted(ds.events, key=lambda e: (e["onset"], e["id"]))
            if e["device"] == hd.DEVICE
        ]
        first = ids[0]
        r = c.post(
            f"{base}/event/{first}/review", json={"verdict": "not_spasm"}, headers={"X-CSRF-Token": csrf}
        )
        assert r.status_code == 200
        after = c.get(f"{base}/events", params=window).json()["counts"]
        assert after["not_spasm"] == 1 and after["spasms"] == timeline["counts"]["spasms"] - 1
        # the stored envelope and accelerometer, as the timeline's event detail asks for them
        s0, s1 = hd.T0 + timedelta(minutes=60), hd.T0 + timedelta(minutes=60 + hd.SERIES_MINUTES)
        series = {"device": hd.DEVICE, "start": s0.isoformat(), "end": s1.isoformat(), "max_points": 240}
        env = c.get(f"{base}/series", params={**series, "kind": "envelope"}).json()
        acc = c.get(f"{base}/series", params={**series, "kind": "acc"}).json()
        assert env["channels"] and sorted(acc["channels"]) == ["x", "y", "z"]
        assert c.get(f"{base}/event/{first}").json()["event"]["review"]["verdict"] == "not_spasm"
        act = c.get(f"{base}/activity", params={"device": hd.DEVICE, **window}).json()["activity"]
        assert [a["context"] for a in act] == [ctx for _, ctx, _ in sorted(ds.activity)]
        trends = c.get(f"{base}/trends", params={"days": 1, "end": end.isoformat()}).json()
        (dev,) = trends["devices"]
        got[name] = {
            "ids": ids,
            "counts": after,
            "gaps": [g["id"] for g in timeline["gaps"]],
            "episodes": [ep["events"] for ep in timeline["episodes"]],
            "trend_total": dev["total"],
            "excluded": dev["excluded"],
            "monitored_s": round(dev["monitored_s"]),
            "activity": act,
            "env_channels": sorted(env["channels"]),
            "env_points": {k: len(v["t_ms"]) for k, v in env["channels"].items()},
            "acc_points": {k: len(v["t_ms"]) for k, v in acc["channels"].items()},
        }
        assert dev["excluded"] == 1
        # (the report's PDF is checked in the browser test and tests/unit/test_report.py)
    assert got["sqlite"] == got["influx"]


def test_store_specs(tmp_path: Path) -> None:
    influx = open_history("influx:https://db.clinic:8086/neurospasm")
    assert (influx.url, influx.database) == ("https://db.clinic:8086", "neurospasm")
    for bad, msg in (
        ("influx:http://user:pw@db:8086/x", "no credentials in the URL"),
        ("influx:http://db:8086", "DATABASE"),
        ("postgres:x", "unknown store 'postgres'"),
        ("sqlite", "expected sqlite:PATH"),
    ):
        with pytest.raises(ValueError, match=msg):
            open_history(bad)
    assert str(open_history(f"sqlite:{tmp_path / 'h.sqlite'}").path).endswith("h.sqlite")
