"""HistoryStore over the gateway's embedded store (``ingest.outputs.sinks.sqlite``), read-only.

Opened with ``mode=ro``: the dashboard can never change or lock out the gateway's writes (WAL lets
readers and the writer run side by side). One connection per thread, because the web app calls
these methods from ``asyncio.to_thread`` workers and a sqlite3 connection must not be shared
across threads mid-query.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np

from dashboard.history.base import (
    GAP_LOOKBACK_S,
    STATUS_PERIOD_S,
    ActivityRow,
    CoverageRow,
    DeviceRow,
    EventColumns,
    EventRow,
    GapRow,
    HealthRow,
    HistoryError,
    HistoryStore,
    SeriesChannel,
    SeriesKind,
    SeriesRows,
    bucket_ms_for,
    coverage_from,
    event_columns_from,
    from_ns,
    to_ns,
)
from ingest.outputs.sinks.sqlite import (
    MAX_BLOCK_NS,
    SUMMARY_DTYPE,
    decode_summary,
    decode_times,
    decode_values,
)

__all__ = ["SqliteHistory", "bucket_series"]

_HEALTH_FLOATS = (
    "battery_pct",
    "battery_mv",
    "loss_pct",
    "timestamp_quality_ms",
    "clock_drift_ppm",
    "spool_bytes",
)
_MEASUREMENT = {"envelope": "emg_envelope", "acc": "acc"}
_EVENT_COLS = (
    "id, device, patient, type, channel, onset_ns, duration_s, peak_uv, mean_uv, relative_amplitude, "
    "frequency_hz, confidence, context, clipped"
)


def bucket_series(t: np.ndarray, v: np.ndarray, bucket_ns: int) -> SeriesChannel:
    """Min / max / mean per epoch-aligned bucket of sorted samples (empty buckets left out)."""
    return _combine(t, v, v, v, np.ones(len(t), dtype=np.int64), bucket_ns)


def _combine(
    key: np.ndarray, lo: np.ndarray, hi: np.ndarray, total: np.ndarray, n: np.ndarray, bucket_ns: int
) -> SeriesChannel:
    """Buckets from partial aggregates (a sample is (t, v, v, v, 1); a second of a block's summary
    is (second, min, max, sum, count)), sorted by ``key``."""
    if not len(key):
        e = np.empty(0)
        return SeriesChannel(np.empty(0, dtype=np.int64), e, e.copy(), e.copy())
    b = key - np.mod(key, bucket_ns)
    starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
    return SeriesChannel(
        b[starts].astype(np.int64),
        np.minimum.reduceat(lo, starts),
        np.maximum.reduceat(hi, starts),
        np.add.reduceat(total, starts) / np.add.reduceat(n, starts),
    )


def _event(r: tuple[Any, ...]) -> EventRow:
    onset = int(r[5])
    return EventRow(
        id=r[0], device=r[1], patient=r[2], type=r[3], channel=r[4], onset=from_ns(onset),
        end=from_ns(onset + round(r[6] * 1e9)), duration_s=r[6], peak_uv=r[7], mean_uv=r[8],
        relative_amplitude=r[9], frequency_hz=r[10], confidence=r[11], context=r[12],
        clipped=None if r[13] is None else bool(r[13]),
    )  # fmt: skip


class SqliteHistory:
    """Read-only queries over ``history.sqlite`` (``{local.directory}/history.sqlite``)."""

    def __init__(self, path: str | Path, *, status_period_s: float = STATUS_PERIOD_S) -> None:
        self.path = Path(path)
        self.name = f"sqlite:{self.path}"
        self.status_period_s = status_period_s
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def __enter__(self) -> Self:
        self._db()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            for db in self._all:
                db.close()
            self._all.clear()
        self._local = threading.local()

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            return db
        if not self.path.exists():
            raise HistoryError(
                f'{self.path}: no local store (the gateway writes it with [local] format = "sqlite")'
            )
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10.0, check_same_thread=False)
            db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.Error as exc:
            raise HistoryError(f"{self.path}: cannot open the local store: {exc}") from exc
        self._local.db = db
        with self._lock:
            self._all.append(db)
        return db

    def _q(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise HistoryError(f"{self.path}: query failed: {exc}") from exc

    # -- queries ---------------------------------------------------------------------------------
    def devices(self) -> list[DeviceRow]:
        spans: dict[tuple[str, str], tuple[int, int]] = {}
        # The sink keeps a small devices table up to date; read it rather than scanning months of
        # status points.
        rows = self._q(
            "SELECT patient, device, first_ns, last_ns, source FROM devices ORDER BY source = 'events'"
        )
        for patient, device, lo, hi, source in rows:
            key = (patient, device)
            if key in spans and source == "events":
                continue
            spans[key] = (lo, hi)
        return [DeviceRow(p, d, from_ns(lo), from_ns(hi)) for (p, d), (lo, hi) in sorted(spans.items())]

    def devices_by_scan(self) -> list[DeviceRow]:
        """``devices()`` computed from the data itself (checks the devices table; slow on months)."""
        spans: dict[tuple[str, str], tuple[int, int]] = {}
        for table, col in (("health", "t_ns"), ("events", "onset_ns")):
            for patient, device, lo, hi in self._q(
                f"SELECT patient, device, min({col}), max({col}) FROM {table} GROUP BY patient, device"
            ):
                key = (patient, device)
                if key in spans and table == "events":
                    continue  # health points, when there are any, say when the device was seen
                spans[key] = (lo, hi)
        return [DeviceRow(p, d, from_ns(lo), from_ns(hi)) for (p, d), (lo, hi) in sorted(spans.items())]

    def events(
        self, device: str, start: datetime, end: datetime, *, types: set[str] | None = None
    ) -> list[EventRow]:
        sql = f"SELECT {_EVENT_COLS} FROM events WHERE device = ? AND onset_ns >= ? AND onset_ns < ?"
        args: tuple[Any, ...] = (device, to_ns(start), to_ns(end))
        if types is not None:
            if not types:
                return []
            sql += f" AND type IN ({','.join('?' * len(types))})"
            args += tuple(sorted(types))
        return [_event(r) for r in self._q(sql + " ORDER BY onset_ns, id", args)]

    def event_columns(self, device: str, start: datetime, end: datetime) -> EventColumns:
        rows = self._q(
            "SELECT id, type, onset_ns, duration_s, relative_amplitude, frequency_hz FROM events "
            "WHERE device = ? AND onset_ns >= ? AND onset_ns < ? ORDER BY onset_ns, id",
            (device, to_ns(start), to_ns(end)),
        )
        return event_columns_from(
            [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
            [r[3] for r in rows], [r[4] for r in rows], [r[5] for r in rows],
        )  # fmt: skip

    def event(self, event_id: str) -> EventRow | None:
        rows = self._q(f"SELECT {_EVENT_COLS} FROM events WHERE id = ?", (event_id,))
        return _event(rows[0]) if rows else None

    def gaps(self, device: str, start: datetime, end: datetime) -> list[GapRow]:
        s, e = to_ns(start), to_ns(end)
        rows = self._q(
            "SELECT id, device, patient, cause, domain, start_ns, duration_s, samples_missing FROM gaps "
            "WHERE device = ? AND start_ns >= ? AND start_ns < ? ORDER BY start_ns, id",
            (device, s - int(GAP_LOOKBACK_S * 1e9), e),
        )
        out = []
        for gid, dev, patient, cause, domain, t0, dur, missing in rows:
            t1 = int(t0) + round(dur * 1e9)
            if t1 > s or int(t0) >= s:
                out.append(
                    GapRow(gid, dev, patient, cause, domain, from_ns(t0), from_ns(t1), dur, int(missing))
                )
        return out

    def series(
        self, device: str, kind: SeriesKind, start: datetime, end: datetime, max_points: int = 2000
    ) -> SeriesRows:
        if kind not in _MEASUREMENT:
            raise ValueError(f"series kind must be 'envelope' or 'acc', not {kind!r}")
        s, e = to_ns(start), to_ns(end)
        bucket_ms = bucket_ms_for(start, end, max_points)
        # Whole-second buckets use the blocks' per-second summaries, except for blocks cut by the
        # range's ends (their samples outside the range must not count), which are decoded.
        use_summary = bucket_ms % 1000 == 0
        rows = self._q(
            "SELECT channel, field, t0_ns, t1_ns, ts, codec, vals, summary FROM series WHERE device = ? "
            "AND measurement = ? AND t0_ns >= ? AND t0_ns < ? AND t1_ns >= ? ORDER BY t0_ns",
            (device, _MEASUREMENT[kind], s - MAX_BLOCK_NS, e, s),
        )
        raw: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        summ: dict[str, list[np.ndarray]] = {}
        for channel, fld, t0, t1, ts, codec, vals, summary in rows:
            name = channel if kind == "envelope" else fld
            if use_summary and t0 >= s and t1 < e:
                summ.setdefault(name, []).append(decode_summary(summary))
                continue
            t = decode_times(ts)
            v = decode_values(codec, vals)
            keep = (t >= s) & (t < e)
            ts_list, vs_list = raw.setdefault(name, ([], []))
            ts_list.append(t[keep])
            vs_list.append(v[keep])
        channels = {}
        for name in sorted(set(raw) | set(summ)):
            t = np.concatenate(raw[name][0]) if name in raw else np.empty(0, dtype=np.int64)
            v = np.concatenate(raw[name][1]) if name in raw else np.empty(0)
            order = np.argsort(t, kind="stable")
            t, v = t[order], v[order]
            # A point written twice (at-least-once delivery) counts once, as InfluxDB overwrites it.
            last = np.r_[t[1:] != t[:-1], True] if len(t) else np.empty(0, dtype=bool)
            t, v = t[last], v[last]
            sm = np.concatenate(summ[name]) if name in summ else np.empty(0, dtype=SUMMARY_DTYPE)
            key = np.concatenate([t, sm["sec"].astype(np.int64) * 1_000_000_000])
            order = np.argsort(key, kind="stable")
            channels[name] = _combine(
                key[order],
                np.concatenate([v, sm["lo"]])[order],
                np.concatenate([v, sm["hi"]])[order],
                np.concatenate([v, sm["sum"]])[order],
                np.concatenate([np.ones(len(v), dtype=np.int64), sm["n"].astype(np.int64)])[order],
                bucket_ms * 1_000_000,
            )
        return SeriesRows(device, kind, start, end, bucket_ms, channels)

    def activity(self, device: str, start: datetime, end: datetime) -> list[ActivityRow]:
        rows = self._q(
            "SELECT device, patient, context, start_ns, duration_s, id FROM activity "
            "WHERE device = ? AND start_ns >= ? AND start_ns < ? ORDER BY start_ns, context",
            (device, to_ns(start), to_ns(end)),
        )
        return [
            ActivityRow(d, p, c, from_ns(t0), from_ns(int(t0) + round(dur * 1e9)), dur, aid)
            for d, p, c, t0, dur, aid in rows
        ]

    def health(self, device: str, start: datetime, end: datetime) -> list[HealthRow]:
        rows = self._q(
            "SELECT device, patient, t_ns, monitoring, battery_pct, battery_mv, loss_pct, "
            "timestamp_quality_ms, clock_drift_ppm, spool_bytes, contact FROM health "
            "WHERE device = ? AND t_ns >= ? AND t_ns < ? ORDER BY t_ns",
            (device, to_ns(start), to_ns(end)),
        )
        return [
            HealthRow(
                r[0],
                r[1],
                from_ns(r[2]),
                bool(r[3]),
                contact=json.loads(r[10]) if r[10] else {},
                **dict(zip(_HEALTH_FLOATS, r[4:10], strict=True)),
            )
            for r in rows
        ]

    def coverage(self, device: str, start: datetime, end: datetime, bucket_s: int) -> list[CoverageRow]:
        b = int(bucket_s) * 1_000_000_000
        counts = {
            int(k): int(n)
            for k, n in self._q(
                "SELECT t_ns - t_ns % ? AS k, count(*) FROM health WHERE device = ? AND t_ns >= ? "
                "AND t_ns < ? AND monitoring = 1 GROUP BY k",
                (b, device, to_ns(start), to_ns(end)),
            )
        }
        return coverage_from(
            start, end, bucket_s, counts, self.gaps(device, start, end), self.status_period_s
        )

    def event_counts(
        self, device: str, start: datetime, end: datetime, bucket_s: int
    ) -> dict[tuple[int, str], int]:
        b = int(bucket_s) * 1_000_000_000
        return {
            (int(k), str(t)): int(n)
            for k, t, n in self._q(
                "SELECT onset_ns - onset_ns % ? AS k, type, count(*) FROM events WHERE device = ? "
                "AND onset_ns >= ? AND onset_ns < ? GROUP BY k, type",
                (b, device, to_ns(start), to_ns(end)),
            )
        }


def _conforms(store: SqliteHistory) -> HistoryStore:
    return store  # mypy checks that SqliteHistory implements the whole HistoryStore protocol
