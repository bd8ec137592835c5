"""Trends page on 30 days of one patient, in each storage (issue 10). Not a test: run it on its own.

    python bench/bench_trends.py [--days 30] [--events-per-hour 30] [--influx-envelope-days 2] [--no-influx]

Data: ``--days`` of one patient with ~``--events-per-hour`` spasms (diurnal rate, all five types),
a status point every 10 s (a few hours a day not worn), a few gaps a day, the 50 Hz envelope on 2
channels and 5 % of the events reviewed. Clinical records go through the real encoders and the
real SqliteSink / InfluxDB /write; the SQLite envelope is written in the compacted block layout
the sink converges to (one block per series and minute: pushing 260 million points through the
line-protocol parser would measure the parser, not the query). InfluxDB gets the envelope for
``--influx-envelope-days`` only (loading 260 million points into influxd takes a long while on a
shared box); the trends query does not read ``emg_envelope``, which is its own series there.

Measured, best and median of ``--repeat`` runs, in the same run:
- trends: ``compute_trends`` over the whole period (events, 15-min coverage, gaps, activity,
  the review verdicts), i.e. what the trends page and the report ask for;
- baseline: a plain count of the patient's events (``SELECT count(*)`` / ``SELECT count(...)``);
- a day of envelope downsampled to 2,000 points (the timeline) and 10 minutes of it (event detail).
Target: trends < 1 s on each storage.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from servers import InfluxDB1, ServerBinaryMissing  # noqa: E402

from dashboard.analysis.trends import TrendConfig, compute_trends  # noqa: E402
from dashboard.history.base import to_ns  # noqa: E402
from dashboard.history.influx import InfluxHistory  # noqa: E402
from dashboard.history.sqlite import SqliteHistory  # noqa: E402
from dashboard.reviews import ReviewStore  # noqa: E402
from ingest.outputs import lineproto  # noqa: E402
from ingest.outputs.router import event_line, gap_line, health_line  # noqa: E402
from ingest.outputs.sinks.sqlite import (  # noqa: E402
    COMPACT_WINDOW_NS,
    SQLITE_FILENAME,
    SqliteSink,
    _Rows,
    open_database,
    series_row,
    write_rows,
)

DEVICE, PATIENT = "bench-dev-1", "bench-p-1"
TYPES = ("twitch", "phasic", "tonic", "clonus", "tremor")
ENV_HZ = 50


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def clinical_records(
    start: datetime, days: int, per_hour: float, rng: np.random.Generator
) -> tuple[list[bytes], list[str]]:
    """Events, gaps and status as line protocol, as the router writes them."""
    records: list[bytes] = []
    ids: list[str] = []
    t0 = start.timestamp()
    span = days * 86400.0
    # Events: Poisson with a diurnal rate (more in the evening, fewer at night).
    t = t0
    while True:
        hour = ((t - t0) / 3600) % 24
        rate = per_hour * (1.0 + 0.6 * np.sin((hour - 12) / 24 * 2 * np.pi))
        t += float(rng.exponential(3600.0 / max(rate, 1e-3)))
        if t >= t0 + span:
            break
        typ = TYPES[int(rng.integers(0, 5))]
        dur = float(rng.uniform(10.5, 60) if typ == "tonic" else rng.uniform(0.15, 6.0))
        p: dict[str, Any] = {
            "id": str(uuid.UUID(int=int(rng.integers(0, 2**62)) << 64 | len(ids), version=4)),
            "device": DEVICE, "type": typ, "channel": "ACC" if typ == "tremor" else "ch1",
            "onset": iso(t), "duration_s": round(dur, 3), "peak_uv": float(rng.uniform(40, 400)),
            "mean_uv": float(rng.uniform(10, 90)), "relative_amplitude": float(rng.uniform(2, 25)),
            "frequency_hz": float(rng.uniform(4, 8)) if typ in ("clonus", "tremor") else None,
            "confidence": float(rng.uniform(0.5, 1)),
        }  # fmt: skip
        ids.append(p["id"])
        records.append(event_line(p, PATIENT))
    # Status every 10 s; not worn 02:00-05:00 every third night.
    for i in range(int(span // 10)):
        ts = t0 + 10 * i
        day, hour = divmod((ts - t0) / 3600, 24)
        worn = not (int(day) % 3 == 0 and 2 <= hour < 5)
        h = {"battery_pct": 100 - (i % 8640) / 86.4, "battery_mv": 4100.0, "loss_pct": 0.1,
             "monitoring": worn, "contact": {"ch1": worn, "ch2": worn}}  # fmt: skip
        records.append(health_line(DEVICE, PATIENT, h, ts))
    # Four gaps a day.
    for d in range(days):
        for k in range(4):
            gs = t0 + d * 86400 + k * 21600 + float(rng.uniform(0, 20000))
            dur = float(rng.uniform(1, 120))
            cause = ("disconnect", "lost_frames")[k % 2]
            g = {"id": f"g-{d}-{k}", "device": DEVICE, "domain": "emg", "cause": cause,
                 "start": iso(gs), "duration_s": dur, "samples_missing": int(dur * 1000)}  # fmt: skip
            records.append(gap_line(g, PATIENT))
    return records, ids


def envelope_day(day_start_ns: int, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    n = 86400 * ENV_HZ
    t = day_start_ns + np.arange(n, dtype=np.int64) * (1_000_000_000 // ENV_HZ)
    return {ch: (t, np.rint(rng.gamma(2.0, 6.0, n) * 100) / 100) for ch in ("ch1", "ch2")}


def sqlite_envelope(db_path: Path, start: datetime, days: int, rng: np.random.Generator) -> int:
    db = open_database(db_path)
    per_block = COMPACT_WINDOW_NS // (1_000_000_000 // ENV_HZ)
    points = 0
    for d in range(days):
        rows = _Rows()
        for ch, (t, v) in envelope_day(to_ns(start) + d * 86_400_000_000_000, rng).items():
            for i in range(0, len(t), per_block):
                tt, vv = t[i : i + per_block], v[i : i + per_block]
                rows.series.append(series_row(DEVICE, "emg_envelope", ch, "uv", PATIENT, tt, vv))
                points += len(tt)
        write_rows(db, rows)
    db.close()
    return points


def influx_envelope(server: InfluxDB1, start: datetime, days: int, rng: np.random.Generator) -> int:
    points = 0
    for d in range(days):
        for ch, (t, v) in envelope_day(to_ns(start) + d * 86_400_000_000_000, rng).items():
            for i in range(0, len(t), 100_000):
                tags = {"device": DEVICE, "channel": ch, "patient": PATIENT}
                sl = slice(i, i + 100_000)
                server.write(lineproto.encode_columns("emg_envelope", tags, {"uv": v[sl]}, t[sl], decimals=2))
                points += len(t[i : i + 100_000])
    return points


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    times = []
    result = None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times), result


def run_queries(name: str, store: Any, baseline: Callable[[], Any], reviews: ReviewStore, start: datetime,
                end: datetime, repeat: int) -> dict[str, Any]:  # fmt: skip
    cfg = TrendConfig(tz="Europe/Berlin")

    def trends() -> Any:
        verdicts = {k: r.verdict for k, r in reviews.reviews(device=DEVICE).items()}
        return compute_trends(store, DEVICE, start, end, verdicts=verdicts, config=cfg)

    tb, tm, tr = timed(trends, repeat)
    bb, bm, count = timed(baseline, repeat)
    day0 = end - timedelta(days=1)
    db_, dm, day = timed(lambda: store.series(DEVICE, "envelope", day0, end, 2000), repeat)
    vb, vm, _ = timed(store.devices, repeat)
    mb, mm, _ = timed(
        lambda: store.series(DEVICE, "envelope", end - timedelta(minutes=10), end, 2000), repeat
    )
    return {"storage": name, "events": count, "counted": tr.total, "excluded": tr.excluded,
            "unsure": tr.unsure, "monitored_h": tr.monitored_s / 3600, "trends": (tb, tm),
            "baseline": (bb, bm), "day_env": (db_, dm), "detail_env": (mb, mm), "devices": (vb, vm),
            "day_points": sum(len(c) for c in day.channels.values())}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--events-per-hour", type=float, default=30.0)
    ap.add_argument("--influx-envelope-days", type=int, default=2)
    ap.add_argument("--sqlite-envelope-days", type=int, default=None, help="default: --days")
    ap.add_argument("--no-influx", action="store_true")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(10)
    end = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    start = end - timedelta(days=args.days)
    work = Path(tempfile.mkdtemp(prefix="bench-trends-"))
    results = []
    try:
        t = time.perf_counter()
        records, ids = clinical_records(start, args.days, args.events_per_hour, rng)
        print(f"generated {len(ids)} events and {len(records) - len(ids)} status/gap records "
              f"in {time.perf_counter() - t:.1f} s", flush=True)  # fmt: skip
        reviews = ReviewStore(work / "reviews.sqlite")
        for i, eid in enumerate(ids[::20]):
            reviews.review(eid, ("confirmed", "not_spasm", "unsure")[i % 3], reviewer="bench", device=DEVICE)

        db_path = work / SQLITE_FILENAME
        t = time.perf_counter()

        async def load_sqlite() -> None:
            async with SqliteSink(db_path) as sink:
                for i in range(0, len(records), 10_000):
                    await sink.send(records[i : i + 10_000])

        asyncio.run(load_sqlite())
        env_days = args.days if args.sqlite_envelope_days is None else args.sqlite_envelope_days
        env_start = end - timedelta(days=env_days)
        pts = sqlite_envelope(db_path, env_start, env_days, np.random.default_rng(11))
        print(f"SQLite: loaded in {time.perf_counter() - t:.1f} s ({pts / 1e6:.0f} M envelope points, "
              f"{db_path.stat().st_size / 1e6:.0f} MB)", flush=True)  # fmt: skip
        with SqliteHistory(db_path) as sq:

            def sq_base() -> int:
                return int(sq._q("SELECT count(*) FROM events WHERE device = ?", (DEVICE,))[0][0])

            results.append(run_queries("SQLite", sq, sq_base, reviews, start, end, args.repeat))

        if not args.no_influx:
            try:
                server = InfluxDB1(work / "influxdb")
            except ServerBinaryMissing as exc:
                print(f"InfluxDB skipped: {exc}")
                server = None
            if server is not None:
                server.start()
                try:
                    t = time.perf_counter()
                    for i in range(0, len(records), 20_000):
                        server.write(b"".join(records[i : i + 20_000]))
                    pts = influx_envelope(server, end - timedelta(days=args.influx_envelope_days),
                                          args.influx_envelope_days, np.random.default_rng(11))  # fmt: skip
                    took = time.perf_counter() - t
                    print(f"InfluxDB: loaded in {took:.1f} s ({pts / 1e6:.0f} M envelope points)", flush=True)
                    ix = InfluxHistory(server.url, server.database)

                    def ix_base() -> int:
                        rows = ix.rows(
                            f'SELECT count("duration_s") FROM "spasm_event" WHERE "device" = \'{DEVICE}\''
                        )
                        return int(rows[0]["count"])

                    results.append(run_queries("InfluxDB", ix, ix_base, reviews, start, end, args.repeat))
                finally:
                    server.stop()
        reviews.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{args.days} days, {len(ids)} events (~{args.events_per_hour:g}/h), status every 10 s, "
          f"50 Hz envelope x 2; best / median of {args.repeat}")  # fmt: skip
    print(f"{'storage':<9} {'trends s':>15} {'baseline s':>15} {'ratio':>7} {'< 1 s':>6} "
          f"{'1-day env s':>15} {'10-min env s':>15}")  # fmt: skip
    for r in results:
        (tb, tm), (bb, bm) = r["trends"], r["baseline"]
        ok = "yes" if tm < 1 else "NO"
        (db_, dm), (mb, mm) = r["day_env"], r["detail_env"]
        print(f"{r['storage']:<9} {tb:7.3f} / {tm:6.3f} {bb:7.4f} / {bm:6.4f} {tm / bm:7.0f} {ok:>6} "
              f"{db_:7.3f} / {dm:6.3f} {mb:7.3f} / {mm:6.3f}")  # fmt: skip
        print(f"{'':<9} counted {r['counted']} of {r['events']} (excluded {r['excluded']}, "
              f"unsure {r['unsure']}), monitored {r['monitored_h']:.0f} h, "
              f"1-day envelope {r['day_points']} points; devices() {r['devices'][0]:.3f} / "
              f"{r['devices'][1]:.3f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
