"""One query interface, two backends: the same real data in SQLite and in a real InfluxDB.

The data goes in through the real sinks (``SqliteSink`` and ``InfluxV1Sink`` writing to a real
influxd from tests/support/servers.py) and, in the last tests, through the whole gateway replaying a
simulated recording into both at once. Every query is checked against answers computed from the
generated input, and both backends must return the same rows.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import history_data as hd
from support.servers import InfluxDB1, ServerBinaryMissing

from dashboard.history.base import HistoryError, HistoryStore, from_ns, to_ns
from dashboard.history.influx import InfluxHistory
from dashboard.history.sqlite import SqliteHistory
from ingest.commands.record import simulate_scenario, write_sim
from ingest.commands.replay import run_replay
from ingest.config import InfluxSection, parse_config
from ingest.files.recording import CaptureWriter
from ingest.outputs.sinks.influx import InfluxV1Sink
from ingest.outputs.sinks.sqlite import SQLITE_FILENAME, SqliteSink

pytestmark = pytest.mark.servers

BACKENDS = ["sqlite", "influx"]


def _influx(tmp: Path) -> InfluxDB1:
    try:
        return InfluxDB1(tmp)
    except ServerBinaryMissing as exc:
        pytest.fail(str(exc), pytrace=False)


async def _write_both(records: list[bytes], db_path: Path, url: str, database: str) -> None:
    sink = SqliteSink(db_path)
    async with sink:
        # Batches as the delivery task makes them (a few hundred records each).
        for i in range(0, len(records), 300):
            await sink.send(records[i : i + 300])
    async with InfluxV1Sink(InfluxSection(api="v1", url=url, database=database, gzip=True)) as isink:
        for i in range(0, len(records), 300):
            await isink.send(records[i : i + 300])


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[hd.Dataset, dict[str, HistoryStore]]]:
    server = _influx(tmp_path_factory.mktemp("influxdb"))
    server.start()
    try:
        ds = hd.build()
        db_path = tmp_path_factory.mktemp("store") / SQLITE_FILENAME
        asyncio.run(_write_both(ds.records, db_path, server.url, server.database))
        stores: dict[str, HistoryStore] = {
            "sqlite": SqliteHistory(db_path),
            "influx": InfluxHistory(server.url, server.database),
        }
        yield ds, stores
        for s in stores.values():
            s.close()
    finally:
        server.stop()


def ns(t: datetime) -> int:
    return to_ns(t)


W0, W1 = hd.T0, hd.T0 + timedelta(hours=hd.HOURS)


@pytest.mark.parametrize("backend", BACKENDS)
def test_devices_list_every_patient_and_device_seen(loaded: Any, backend: str) -> None:
    ds, stores = loaded
    rows = stores[backend].devices()
    assert [(r.patient, r.device) for r in rows] == [
        (hd.PATIENT, hd.DEVICE),
        (hd.OTHER_PATIENT, hd.OTHER_DEVICE),
    ]
    first = from_ns(int(ds.health[0][0].timestamp() * 1e9))
    last = from_ns(int(ds.health[-1][0].timestamp() * 1e9))
    assert (rows[0].first_seen, rows[0].last_seen) == (first, last)
    if backend == "sqlite":  # kept by the sink in a small table; the same as scanning the data
        assert rows == stores[backend].devices_by_scan()


@pytest.mark.parametrize("backend", BACKENDS)
def test_events_in_a_window_with_types_and_optional_fields(loaded: Any, backend: str) -> None:
    ds, stores = loaded
    store = stores[backend]
    a, b = hd.T0 + timedelta(minutes=30), hd.T0 + timedelta(minutes=150)
    want = sorted(
        (e for e in ds.events if ns(a) <= hd.ts_ns(e["onset"]) < ns(b)),
        key=lambda e: (hd.ts_ns(e["onset"]), e["id"]),
    )
    got = store.events(hd.DEVICE, a, b)
    assert [e.id for e in got] == [e["id"] for e in want] and len(got) > 10  # the duplicate counted once
    for g, w in zip(got, want, strict=True):
        keys = ("type", "channel", "duration_s", "peak_uv", "relative_amplitude", "frequency_hz")
        assert tuple(getattr(g, k) for k in keys) == tuple(w[k] for k in keys)
        assert g.onset == from_ns(hd.ts_ns(w["onset"])) and g.patient == hd.PATIENT
        assert g.end == from_ns(hd.ts_ns(w["onset"]) + round(w["duration_s"] * 1e9))
    tonic = store.events(hd.DEVICE, W0, W1, types={"tonic", "clonus"})
    assert {e.type for e in tonic} == {"tonic", "clonus"}
    assert len(tonic) == sum(e["type"] in ("tonic", "clonus") for e in ds.events)
    assert store.events(hd.DEVICE, W0, W1, types=set()) == []
    special = store.event(ds.events[3]["id"])
    assert special is not None and special.context == "walking" and special.clipped is True
    assert store.events(hd.DEVICE, W0, W1)[0].context in ("rest", None)
    legacy = store.event(ds.legacy_id)
    assert legacy is not None and legacy.context is None and legacy.clipped is None
    assert store.event("no-such-event") is None
    # the other patient's event stays with its device
    assert [e.device for e in store.events(hd.OTHER_DEVICE, W0, W1)] == [hd.OTHER_DEVICE]


@pytest.mark.parametrize("backend", BACKENDS)
def test_gaps_overlapping_the_window_include_one_that_started_before(loaded: Any, backend: str) -> None:
    _ds, stores = loaded
    a = hd.T0 + timedelta(seconds=3600)  # the 400 s disconnect started at 3500 s and is still running
    got = stores[backend].gaps(hd.DEVICE, a, hd.T0 + timedelta(seconds=6000))
    assert [(g.id, g.cause, g.domain) for g in got] == [
        ("g-2", "disconnect", "emg"),
        ("g-3", "lost_frames", "acc"),
    ]
    assert got[0].end - got[0].start == timedelta(seconds=400) and got[0].samples_missing == 400_000
    assert [g.id for g in stores[backend].gaps(hd.DEVICE, W0, W1)] == ["g-0", "g-1", "g-2", "g-3"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_envelope_and_acc_downsampled_to_min_max_buckets(loaded: Any, backend: str) -> None:
    ds, stores = loaded
    a = hd.T0 + timedelta(minutes=60, seconds=30)
    b = a + timedelta(seconds=90)
    rows = stores[backend].series(hd.DEVICE, "envelope", a, b, max_points=300)
    assert rows.bucket_ms == 300 and sorted(rows.channels) == ["ch1", "ch2"]
    for ch, (t, v) in ds.envelope.items():
        keep = (t >= ns(a)) & (t < ns(b))
        tb = t[keep] - t[keep] % (rows.bucket_ms * 1_000_000)
        starts = np.unique(tb)
        want_lo = np.array([v[keep][tb == s].min() for s in starts])
        want_hi = np.array([v[keep][tb == s].max() for s in starts])
        got = rows.channels[ch]
        assert np.array_equal(got.t_ns, starts) and len(got) == 300
        assert np.array_equal(got.lo, want_lo) and np.array_equal(got.hi, want_hi)
        assert np.allclose(got.mean, [v[keep][tb == s].mean() for s in starts], rtol=1e-12)
    acc = stores[backend].series(hd.DEVICE, "acc", a, b, max_points=45)
    assert sorted(acc.channels) == ["x", "y", "z"] and acc.bucket_ms == 2000
    t, z = ds.acc["z"]
    keep = (t >= ns(a)) & (t < ns(b))
    assert np.isclose(acc.channels["z"].lo.min(), z[keep].min()) and len(acc.channels["z"]) == 45
    # Fine buckets: one sample each, the values exactly as written (2 decimals of µV).
    fine = stores[backend].series(hd.DEVICE, "envelope", a, a + timedelta(seconds=2), max_points=200)
    t1, v1 = ds.envelope["ch1"]
    keep = (t1 >= ns(a)) & (t1 < ns(a) + 2_000_000_000)
    assert np.array_equal(fine.channels["ch1"].hi, v1[keep]) and np.array_equal(
        fine.channels["ch1"].t_ns, t1[keep]
    )
    # Whole-second buckets over the whole recording (the SQLite store's per-second summaries).
    wide = stores[backend].series(
        hd.DEVICE, "envelope", hd.T0 + timedelta(minutes=59), hd.T0 + timedelta(minutes=65), 100
    )
    assert wide.bucket_ms == 4000
    for ch, (t, v) in ds.envelope.items():
        tb = t - t % 4_000_000_000
        starts = np.unique(tb)
        got = wide.channels[ch]
        assert np.array_equal(got.t_ns, starts) and np.array_equal(got.hi, [v[tb == s].max() for s in starts])
        assert np.array_equal(got.lo, [v[tb == s].min() for s in starts])
        assert np.allclose(got.mean, [v[tb == s].mean() for s in starts], rtol=1e-12)
    empty = stores[backend].series(hd.DEVICE, "envelope", hd.T0, hd.T0 + timedelta(minutes=1))
    assert all(len(c) == 0 for c in empty.channels.values())
    with pytest.raises(ValueError, match="envelope"):
        stores[backend].series(hd.DEVICE, "emg", a, b)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
def test_health_rows_and_coverage_per_hour(loaded: Any, backend: str) -> None:
    ds, stores = loaded
    store = stores[backend]
    rows = store.health(hd.DEVICE, W0, W1)
    assert len(rows) == len(ds.health)
    h0 = rows[0]
    assert (h0.monitoring, h0.battery_pct, h0.battery_mv, h0.contact, h0.spool_bytes) == (
        True, 90.0, 4100.0, {"ch1": True, "ch2": False}, 0.0
    )  # fmt: skip
    assert rows[1].spool_bytes is None and rows[1].contact == {"ch1": True, "ch2": True}
    assert sum(not r.monitoring for r in rows) == sum(not m for _, m, _ in ds.health) > 0
    cov = store.coverage(hd.DEVICE, W0, W1, 3600)
    assert [c.start for c in cov] == [hd.T0 + timedelta(hours=h) for h in range(hd.HOURS)]
    off_s = (hd.NOT_MONITORING[1] - hd.NOT_MONITORING[0]).total_seconds()
    # hour 0: 360 status points, minus the 12.5 s disconnect (the lead-off inside it counts once)
    # and the first 100 s of the long disconnect; hour 1: its last 300 s and 30 min unmonitored.
    assert [c.status_points for c in cov] == [360, 360 - int(off_s / 10), 360]
    assert cov[0].gap_s == pytest.approx(12.5 + 100.0) and cov[0].monitored_s == pytest.approx(3600 - 112.5)
    assert cov[1].monitored_s == pytest.approx(3600 - off_s - 300.0)
    assert cov[2].monitored_s == pytest.approx(3600.0) and cov[2].gap_s == 0.0
    # no data at all: the bucket is there, with nothing monitored
    later = store.coverage(hd.DEVICE, W1, W1 + timedelta(hours=1), 3600)
    assert [(c.monitored_s, c.status_points) for c in later] == [(0.0, 0)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_event_counts_per_hour_and_type_and_activity(loaded: Any, backend: str) -> None:
    ds, stores = loaded
    store = stores[backend]
    got = store.event_counts(hd.DEVICE, W0, W1, 3600)
    want = Counter(
        (hd.ts_ns(e["onset"]) - hd.ts_ns(e["onset"]) % 3_600_000_000_000, e["type"]) for e in ds.events
    )
    assert got == dict(want) and sum(got.values()) == len(ds.events)
    act = store.activity(hd.DEVICE, W0, W1)
    assert [(a.context, a.duration_s, a.id) for a in act] == [
        ("walking", 120.0, "a-0"), ("transfer", 15.5, "a-1"), ("rest", 900.0, "a-2")
    ]  # fmt: skip
    assert act[0].end - act[0].start == timedelta(seconds=120)
    assert store.activity(hd.OTHER_DEVICE, W0, W1) == []


def _plain(x: Any) -> Any:
    if isinstance(x, list):
        return [_plain(i) for i in x]
    if hasattr(x, "__dataclass_fields__"):
        return {k: _plain(v) for k, v in asdict(x).items()}
    return x


def test_both_backends_return_the_same_rows(loaded: Any) -> None:
    _ds, stores = loaded
    s, i = stores["sqlite"], stores["influx"]
    a, b = hd.T0 + timedelta(minutes=59), hd.T0 + timedelta(minutes=65)
    for method, args in [
        ("devices", ()),
        ("events", (hd.DEVICE, W0, W1)),
        ("gaps", (hd.DEVICE, W0, W1)),
        ("health", (hd.DEVICE, W0, W1)),
        ("activity", (hd.DEVICE, W0, W1)),
        ("coverage", (hd.DEVICE, W0, W1, 900)),
        ("event_counts", (hd.DEVICE, W0 - timedelta(days=1), W1, 86400)),
    ]:
        assert _plain(getattr(s, method)(*args)) == _plain(getattr(i, method)(*args)), method
    cs, ci = s.event_columns(hd.DEVICE, W0, W1), i.event_columns(hd.DEVICE, W0, W1)
    rows = s.events(hd.DEVICE, W0, W1)
    assert cs.id == ci.id == [e.id for e in rows] and cs.type == ci.type == [e.type for e in rows]
    assert np.array_equal(cs.onset_ns, ci.onset_ns) and [from_ns(t) for t in cs.onset_ns] == [
        e.onset for e in rows
    ]
    for col in ("duration_s", "relative_amplitude", "frequency_hz"):
        assert np.array_equal(getattr(cs, col), getattr(ci, col), equal_nan=True), col
    freq = [np.nan if e.frequency_hz is None else e.frequency_hz for e in rows]
    assert np.array_equal(cs.frequency_hz, freq, equal_nan=True) and np.isnan(cs.frequency_hz).any()
    for kind, points in (("envelope", 500), ("acc", 500), ("envelope", 60), ("acc", 37)):
        rs = s.series(hd.DEVICE, kind, a, b, points)
        ri = i.series(hd.DEVICE, kind, a, b, points)
        assert rs.channels.keys() == ri.channels.keys() and rs.bucket_ms == ri.bucket_ms
        for name, cs in rs.channels.items():
            ci = ri.channels[name]
            assert np.array_equal(cs.t_ns, ci.t_ns) and np.array_equal(cs.lo, ci.lo)
            assert np.array_equal(cs.hi, ci.hi) and np.allclose(cs.mean, ci.mean, rtol=1e-12)


def test_influx_history_authenticates_and_names_the_server_on_errors(influxdb1_auth: InfluxDB1) -> None:
    srv = influxdb1_auth
    ds = hd.build()
    srv.write(b"".join(ds.records[:20]))
    good = InfluxHistory(srv.url, srv.database, username=srv.admin_user, password=srv.admin_password)
    assert len(good.events(hd.DEVICE, W0, W1)) == sum(
        1 for r in ds.records[:20] if r.startswith(b"spasm_event")
    )
    bad = InfluxHistory(srv.url, srv.database, username=srv.admin_user, password="wrong")
    with pytest.raises(HistoryError, match=r"HTTP 401"):
        bad.devices()
    gone = InfluxHistory("http://127.0.0.1:9", "x", timeout_s=2)
    with pytest.raises(HistoryError, match=r"127\.0\.0\.1:9"):
        gone.devices()


def test_sqlite_history_without_a_store_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match=r'format = "sqlite"'):
        SqliteHistory(tmp_path / "none.sqlite").devices()


# -- the whole gateway -------------------------------------------------------------------------------


def test_gateway_replay_into_both_storages_gives_the_same_history(tmp_path: Path) -> None:
    server = _influx(tmp_path / "influxdb")
    server.start()
    try:
        cap = tmp_path / "lossy.nsc"
        sim = simulate_scenario("faults_lossy", device="w-5", t0_host=1_780_000_000.0)
        with CaptureWriter(cap, device="w-5") as w:
            write_sim(w, sim)
        cfg = parse_config({
            "gateway": {"state_dir": str(tmp_path / "state"), "patient": "p-42", "stale_after_s": 3600.0},
            "devices": [{"id": "w-5", "port": "replay", "reconnect_initial_s": 0.05, "reconnect_max_s": 0.1}],
            "mqtt": {"enabled": False},
            "local": {"enabled": True, "format": "sqlite"},
            "influx": {"enabled": True, "api": "v1", "url": server.url, "database": server.database,
                       "flush_interval_s": 0.1},
            "spool": {"fsync": "never"},
        }, "<test>")  # fmt: skip
        summary = asyncio.run(run_replay(cap, speed=math.inf, config=cfg))
        assert len(summary.events) >= 3 and len(summary.gaps) > 5
        sq = SqliteHistory(tmp_path / "state" / "series" / SQLITE_FILENAME)
        ix = InfluxHistory(server.url, server.database)
        start = datetime(2020, 1, 1, tzinfo=UTC)
        end = datetime.now(UTC) + timedelta(hours=1)  # status points carry the gateway's wall clock
        ev_s, ev_i = sq.events("w-5", start, end), ix.events("w-5", start, end)
        assert sorted(e.id for e in ev_s) == sorted(e["id"] for e in summary.events)
        assert _plain(ev_s) == _plain(ev_i)
        by_id = {e["id"]: e for e in summary.events}
        assert all(e.duration_s == by_id[e.id]["duration_s"] and e.type == by_id[e.id]["type"] for e in ev_s)
        gaps = sq.gaps("w-5", start, end)
        assert sorted(g.id for g in gaps) == sorted(g["id"] for g in summary.gaps)
        assert _plain(gaps) == _plain(ix.gaps("w-5", start, end))
        assert [d.device for d in sq.devices()] == ["w-5"] and sq.devices()[0].patient == "p-42"
        assert _plain(sq.devices()) == _plain(ix.devices())
        assert _plain(sq.health("w-5", start, end)) == _plain(ix.health("w-5", start, end))
        t_end = datetime.fromtimestamp(1_780_000_000.0 + 60, UTC)
        t_start = datetime.fromtimestamp(1_780_000_000.0, UTC)
        env_s = sq.series("w-5", "envelope", t_start, t_end, 600)
        env_i = ix.series("w-5", "envelope", t_start, t_end, 600)
        assert sorted(env_s.channels) == sorted(env_i.channels) and len(env_s.channels) >= 1
        for ch, c in env_s.channels.items():
            assert len(c) > 400  # a minute of envelope, less the disconnects
            assert np.array_equal(c.t_ns, env_i.channels[ch].t_ns) and np.array_equal(
                c.hi, env_i.channels[ch].hi
            )
        sq.close()
    finally:
        server.stop()


def test_trends_are_the_same_on_both_backends(loaded: Any) -> None:
    from dashboard.analysis.trends import TrendConfig, compute_trends

    ds, stores = loaded
    verdicts = {ds.events[1]["id"]: "not_spasm", ds.events[2]["id"]: "unsure"}
    cfg = TrendConfig(tz="America/New_York")
    a = W0 - timedelta(hours=5)
    got = [compute_trends(stores[b], hd.DEVICE, a, W1, verdicts=verdicts, config=cfg) for b in BACKENDS]
    got = [t.to_json() for t in got]
    assert got[0] == got[1] and got[0]["total"] == len({e["id"] for e in ds.events}) - 2
