"""The embedded local store: the same line-protocol records as InfluxDB, kept in one SQLite file.

Why SQLite: the demo and a gateway without a server need history a dashboard can query with no
service running (``dashboard.history.sqlite`` opens this file read-only). Line-protocol files
(``local.LocalLineSink``) cannot be queried without reading everything.

The sink receives exactly what the InfluxDB sinks receive (records of newline-terminated lines
from ``ingest.outputs.router``), parses them strictly (``lineproto.parse_lines``) and stores them in
tables shaped for the dashboard's queries:

- ``events``, ``gaps``: one row per record, primary key the id (a re-delivered event replaces
  itself, as in InfluxDB), indexed on (device, time).
- ``health``: one row per (device, time): the status every 10 s.
- ``activity``: one row per activity span.
- ``series``: envelope / accelerometer / raw EMG stored compactly, one row per *block* (a run of
  consecutive points of one series and field inside one record, at most a minute long):
  timestamps as zlib-compressed int64 deltas, values as zlib-compressed decimal-scaled integers
  when they round-trip exactly (the router writes µV with 2 decimals, g with 4), else float64.
  The router sends a record every 0.5 s, so blocks start small; once a minute window is two
  windows old, the sink *compacts* its blocks into one (same transaction discipline), so a day
  of 50 Hz envelope on 2 channels is about 2,900 rows and a day's query decodes that many.
  Each block also carries a per-second summary (min, max, sum, count), from which long ranges
  are downsampled without decoding every sample.
- ``points``: anything else (unknown measurement or tags), as JSON, so no accepted data is lost.
  Unknown fields of known measurements go to the row's ``extra`` JSON.

Durability: WAL journal, ``synchronous=FULL`` (the spool deletes a record once ``send`` returned,
so a commit must survive power loss), one transaction per batch: a kill -9 leaves the batch
either fully stored or not at all, and the spool sends it again. Re-sent records are idempotent
(primary keys / ``INSERT OR REPLACE``, series blocks ``INSERT OR IGNORE`` on their extent).

Failures: an unparsable record is reported in ``SinkRejected.bad`` (quarantined by the pipeline)
after the rest of the batch is committed; a disk or lock error is ``SinkUnavailable`` (retried).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from ingest.outputs.lineproto import FieldValue, LineProtocolError, parse_lines
from ingest.outputs.sinks.base import SinkRejected, SinkUnavailable

__all__ = [
    "MAX_BLOCK_NS",
    "SCHEMA_VERSION",
    "SERIES_MEASUREMENTS",
    "SQLITE_FILENAME",
    "SUMMARY_DTYPE",
    "SqliteSink",
    "decode_summary",
    "decode_times",
    "decode_values",
    "encode_summary",
    "encode_times",
    "encode_values",
    "series_row",
]

SQLITE_FILENAME = "history.sqlite"
SCHEMA_VERSION = 1
#: Blocks as written span at most ``RECORD_BLOCK_NS``; compaction merges the blocks that start in
#: one epoch-aligned ``COMPACT_WINDOW_NS`` window into one, which then spans at most the sum.
RECORD_BLOCK_NS = 60 * 1_000_000_000
COMPACT_WINDOW_NS = 60 * 1_000_000_000
#: Longest time span of any series block: bounds how far before a query's start a block that
#: overlaps it can begin, so the (device, measurement, t0) index finds it.
MAX_BLOCK_NS = RECORD_BLOCK_NS + COMPACT_WINDOW_NS
#: Measurements stored as compressed blocks; their tags are device, patient and optionally channel.
SERIES_MEASUREMENTS = frozenset({"emg_envelope", "acc", "emg_raw"})
_SERIES_TAGS = frozenset({"device", "patient", "channel"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, device TEXT NOT NULL, patient TEXT NOT NULL, channel TEXT NOT NULL,
    type TEXT NOT NULL, onset_ns INTEGER NOT NULL, duration_s REAL NOT NULL, peak_uv REAL,
    mean_uv REAL, relative_amplitude REAL, frequency_hz REAL, confidence REAL, context TEXT,
    clipped INTEGER, extra TEXT
);
CREATE INDEX IF NOT EXISTS events_device_time ON events (device, onset_ns);
CREATE TABLE IF NOT EXISTS gaps (
    id TEXT PRIMARY KEY, device TEXT NOT NULL, patient TEXT NOT NULL, cause TEXT NOT NULL,
    domain TEXT NOT NULL, start_ns INTEGER NOT NULL, duration_s REAL NOT NULL,
    samples_missing INTEGER NOT NULL, extra TEXT
);
CREATE INDEX IF NOT EXISTS gaps_device_time ON gaps (device, start_ns);
CREATE TABLE IF NOT EXISTS health (
    device TEXT NOT NULL, t_ns INTEGER NOT NULL, patient TEXT NOT NULL, monitoring INTEGER NOT NULL,
    battery_pct REAL, battery_mv REAL, loss_pct REAL, timestamp_quality_ms REAL,
    clock_drift_ppm REAL, spool_bytes REAL, contact TEXT, extra TEXT,
    PRIMARY KEY (device, t_ns)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS activity (
    device TEXT NOT NULL, start_ns INTEGER NOT NULL, context TEXT NOT NULL, patient TEXT NOT NULL,
    duration_s REAL NOT NULL, id TEXT, extra TEXT,
    PRIMARY KEY (device, start_ns, context)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series (
    device TEXT NOT NULL, measurement TEXT NOT NULL, t0_ns INTEGER NOT NULL, channel TEXT NOT NULL,
    field TEXT NOT NULL, t1_ns INTEGER NOT NULL, n INTEGER NOT NULL, patient TEXT NOT NULL,
    codec TEXT NOT NULL, ts BLOB NOT NULL, vals BLOB NOT NULL, summary BLOB NOT NULL,
    PRIMARY KEY (device, measurement, t0_ns, channel, field, t1_ns, n)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS devices (
    patient TEXT NOT NULL, device TEXT NOT NULL, source TEXT NOT NULL, first_ns INTEGER NOT NULL,
    last_ns INTEGER NOT NULL, PRIMARY KEY (patient, device, source)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS points (
    measurement TEXT NOT NULL, tags TEXT NOT NULL, t_ns INTEGER NOT NULL, fields TEXT NOT NULL,
    PRIMARY KEY (measurement, tags, t_ns)
) WITHOUT ROWID;
"""

_HEALTH_FLOATS = (
    "battery_pct",
    "battery_mv",
    "loss_pct",
    "timestamp_quality_ms",
    "clock_drift_ppm",
    "spool_bytes",
)
_EVENT_FLOATS = ("peak_uv", "mean_uv", "relative_amplitude", "frequency_hz", "confidence")


# ---------------------------------------------------------------------------------------------- codec


def encode_times(t_ns: npt.NDArray[np.int64]) -> bytes:
    """Sorted int64 ns -> zlib of the first value and the deltas (regular sampling: ~nothing)."""
    t = np.asarray(t_ns, dtype=np.int64)
    d = np.empty_like(t)
    if len(t):
        d[0] = t[0]
        d[1:] = np.diff(t)
    return zlib.compress(d.astype("<i8").tobytes(), 1)


def decode_times(blob: bytes) -> npt.NDArray[np.int64]:
    return np.cumsum(np.frombuffer(zlib.decompress(blob), dtype="<i8")).astype(np.int64)


def encode_values(v: npt.NDArray[np.float64]) -> tuple[str, bytes]:
    """Values -> (codec, blob). ``qK-i4`` / ``qK-i8``: integers of v x 10^K when that gives back v
    exactly (what a K-decimal line protocol text parses to); ``f8``: raw float64 otherwise."""
    x = np.asarray(v, dtype=np.float64)
    for k in (2, 4, 0, 1, 3, 5, 6):  # the router writes µV with 2 decimals and g with 4: try those first
        scale = 10.0**k
        q = np.rint(x * scale)
        if np.all(np.abs(q) < 2.0**53) and np.array_equal(q / scale, x):
            qi = q.astype(np.int64)
            if len(qi) == 0 or (int(qi.min()) >= -(2**31) and int(qi.max()) < 2**31):
                return f"q{k}-i4", zlib.compress(qi.astype("<i4").tobytes(), 1)
            return f"q{k}-i8", zlib.compress(qi.astype("<i8").tobytes(), 1)
    return "f8", zlib.compress(x.astype("<f8").tobytes(), 1)


def decode_values(codec: str, blob: bytes) -> npt.NDArray[np.float64]:
    raw = zlib.decompress(blob)
    if codec == "f8":
        return np.frombuffer(raw, dtype="<f8").astype(np.float64)
    if codec.startswith("q") and codec[-3:] in ("-i4", "-i8"):
        k = int(codec[1:-3])
        q = np.frombuffer(raw, dtype="<" + codec[-2:])
        return q.astype(np.float64) / 10.0**k
    raise ValueError(f"unknown series codec {codec!r}")


SUMMARY_DTYPE = np.dtype([("sec", "<i8"), ("lo", "<f8"), ("hi", "<f8"), ("sum", "<f8"), ("n", "<i4")])


def encode_summary(t_ns: npt.NDArray[np.int64], v: npt.NDArray[np.float64]) -> bytes:
    """Per epoch second of a block: (second, min, max, sum, count), zlib-compressed.

    Why: a day of envelope at 2,000 points has 43 s buckets; from these a reader combines
    86,400 seconds instead of decoding 4.3 million samples per channel. Exact for min / max;
    the mean is sum / count, as InfluxDB computes it.
    """
    if not len(t_ns):
        return zlib.compress(b"", 1)
    sec = np.floor_divide(t_ns, 1_000_000_000)
    starts = np.flatnonzero(np.r_[True, sec[1:] != sec[:-1]])
    out = np.empty(len(starts), dtype=SUMMARY_DTYPE)
    out["sec"] = sec[starts]
    out["lo"] = np.minimum.reduceat(v, starts)
    out["hi"] = np.maximum.reduceat(v, starts)
    out["sum"] = np.add.reduceat(v, starts)
    out["n"] = np.diff(np.r_[starts, len(v)])
    return zlib.compress(out.tobytes(), 1)


def decode_summary(blob: bytes) -> npt.NDArray[np.void]:
    return np.frombuffer(zlib.decompress(blob), dtype=SUMMARY_DTYPE)


def series_row(
    device: str, measurement: str, channel: str, field_name: str, patient: str,
    t_ns: npt.NDArray[np.int64], v: npt.NDArray[np.float64],
) -> tuple[Any, ...]:  # fmt: skip
    """The ``series`` table row of one block of sorted samples."""
    codec, blob = encode_values(v)
    return (
        device, measurement, int(t_ns[0]), channel, field_name, int(t_ns[-1]), len(t_ns), patient, codec,
        encode_times(t_ns), blob, encode_summary(t_ns, v),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------- sink


def _f(value: FieldValue | None) -> float | None:
    if value is None or isinstance(value, str):
        return None
    return float(value)


def _extra(fields: dict[str, FieldValue], known: Iterable[str]) -> str | None:
    rest = {k: v for k, v in fields.items() if k not in known}
    return json.dumps(rest, sort_keys=True, default=_json_default) if rest else None


def _json_default(o: object) -> object:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@dataclass
class _Rows:
    events: list[tuple[Any, ...]] = field(default_factory=list)
    gaps: list[tuple[Any, ...]] = field(default_factory=list)
    health: list[tuple[Any, ...]] = field(default_factory=list)
    activity: list[tuple[Any, ...]] = field(default_factory=list)
    series: list[tuple[Any, ...]] = field(default_factory=list)
    points: list[tuple[Any, ...]] = field(default_factory=list)


Point = tuple[str, dict[str, str], dict[str, FieldValue], int]


class _RecordError(ValueError):
    pass


def _rows_of(points: list[Point], out: _Rows) -> None:
    """Add the rows of one record's points to ``out`` (raises _RecordError on a bad point)."""
    run: list[Point] = []
    run_key: tuple[str, str, str, str] | None = None

    def flush() -> None:
        if run and run_key is not None:
            _series_rows(run_key, run, out)
        run.clear()

    for p in points:
        meas, tags, _fields, ts = p
        if meas in SERIES_MEASUREMENTS and set(tags) <= _SERIES_TAGS and "device" in tags:
            key = (meas, tags["device"], tags.get("patient", ""), tags.get("channel", ""))
            if key != run_key or (run and (ts < run[-1][3] or ts - run[0][3] > RECORD_BLOCK_NS)):
                flush()
                run_key = key
            run.append(p)
            continue
        flush()
        run_key = None
        _record_row(p, out)
    flush()


def series_fast(rec: bytes, out: _Rows) -> bool:
    """Rows of a record made only of plain series lines (what the router's ``encode_columns``
    writes: no escapes, no strings, numeric fields) parsed with numpy, about 10x faster than line
    by line. Returns False, having added nothing, when the record needs the general parser (which
    then also produces any error). Gives exactly the rows of ``_rows_of(parse_lines(rec))``.
    """
    if any(c in rec for c in (b"\\", b'"', b"#", b"\r", b"\t")):
        return False
    lines = rec.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    parts = [line.split(b" ") for line in lines]
    if not parts or any(len(p) != 3 for p in parts):
        return False
    # numpy parses more than line protocol allows ("1_000", "+5"): admit only what the strict parser does.
    if b"".join(p[2] for p in parts).translate(None, b"0123456789-"):
        return False
    try:
        ts_all = np.array([p[2] for p in parts]).astype(np.int64)
    except ValueError:
        return False
    rows = _Rows()
    i = 0
    n = len(parts)
    while i < n:
        head = parts[i][0]
        j = i + 1
        while j < n and parts[j][0] == head:
            j += 1
        names = head.split(b",")
        meas = names[0].decode()
        tags: dict[str, str] = {}
        for item in names[1:]:
            k, eq, v = item.partition(b"=")
            if not k or not eq or not v or b"=" in v:
                return False
            tags[k.decode()] = v.decode()
        if meas not in SERIES_MEASUREMENTS or not set(tags) <= _SERIES_TAGS or "device" not in tags:
            return False
        items = [kv.partition(b"=") for kv in b",".join(p[1] for p in parts[i:j]).split(b",")]
        first = [k for k, _, _ in items[: len(parts[i][1].split(b","))]]
        if [k for k, _, _ in items] != first * (j - i) or len(set(first)) != len(first) or not all(first):
            return False  # lines with differing fields (a NaN left out): the general path handles them
        texts = [v for _, _, v in items]
        if b"".join(texts).translate(None, b"0123456789+-.eE"):
            return False
        try:
            vals = np.array(texts).astype(np.float64).reshape(j - i, len(first))
        except ValueError:
            return False
        if not np.isfinite(vals).all():
            return False
        t = ts_all[i:j]
        device, channel, patient = tags["device"], tags.get("channel", ""), tags.get("patient", "")
        cuts = [0, *(np.flatnonzero(np.diff(t) < 0) + 1).tolist(), len(t)]
        keys = [k.decode() for k in first]
        order = sorted(range(len(keys)), key=lambda c: keys[c])
        for a, b in itertools.pairwise(cuts):
            start = a
            while start < b:
                end = start + int(np.searchsorted(t[start:b], t[start] + RECORD_BLOCK_NS, side="right"))
                for c in order:
                    row = series_row(
                        device, meas, channel, keys[c], patient, t[start:end], vals[start:end, c]
                    )
                    rows.series.append(row)
                start = end
        i = j
    out.series.extend(rows.series)
    return True


def _series_rows(key: tuple[str, str, str, str], run: list[Point], out: _Rows) -> None:
    meas, device, patient, channel = key
    t = np.fromiter((p[3] for p in run), dtype=np.int64, count=len(run))
    names = sorted({k for p in run for k in p[2]})
    for name in names:
        vals = [p[2].get(name) for p in run]
        if any(isinstance(v, str) for v in vals):
            raise _RecordError(f"{meas} field {name!r} holds a string; series fields are numbers")
        present = np.array([v is not None for v in vals], dtype=bool)
        x = np.array([float(v) if v is not None else 0.0 for v in vals], dtype=np.float64)
        tt = t if present.all() else t[present]
        x = x if present.all() else x[present]
        if not len(tt):
            continue
        out.series.append(series_row(device, meas, channel, name, patient, tt, x))


def _need(
    fields: dict[str, FieldValue], tags: dict[str, str], meas: str, fkeys: Iterable[str], tkeys: Iterable[str]
) -> None:
    for k in tkeys:
        if k not in tags:
            raise _RecordError(f"{meas} point without tag {k!r}")
    for k in fkeys:
        if k not in fields:
            raise _RecordError(f"{meas} point without field {k!r}")


def _record_row(p: Point, out: _Rows) -> None:
    meas, tags, fields, ts = p
    if meas == "spasm_event":
        _need(fields, tags, meas, ("id", "duration_s"), ("device", "channel", "type"))
        clipped = fields.get("clipped")
        context = fields.get("context")
        out.events.append(
            (
                str(fields["id"]), tags["device"], tags.get("patient", ""), tags["channel"], tags["type"], ts,
                _f(fields["duration_s"]), *(_f(fields.get(k)) for k in _EVENT_FLOATS),
                context if isinstance(context, str) else None,
                None if clipped is None else int(bool(clipped)),
                _extra(fields, ("id", "duration_s", "context", "clipped", *_EVENT_FLOATS)),
            )
        )  # fmt: skip
    elif meas == "gap":
        _need(fields, tags, meas, ("id", "duration_s", "samples_missing"), ("device", "cause", "domain"))
        out.gaps.append(
            (
                str(fields["id"]), tags["device"], tags.get("patient", ""), tags["cause"], tags["domain"], ts,
                _f(fields["duration_s"]), int(fields["samples_missing"]),
                _extra(fields, ("id", "duration_s", "samples_missing")),
            )
        )  # fmt: skip
    elif meas == "device_health" and "device" in tags:
        contact = {k[len("contact_") :]: bool(v) for k, v in fields.items() if k.startswith("contact_")}
        known = {"monitoring", *_HEALTH_FLOATS, *(f"contact_{c}" for c in contact)}
        out.health.append(
            (
                tags["device"], ts, tags.get("patient", ""), int(bool(fields.get("monitoring", False))),
                *(_f(fields.get(k)) for k in _HEALTH_FLOATS),
                json.dumps(contact, sort_keys=True) if contact else None, _extra(fields, known),
            )
        )  # fmt: skip
    elif meas == "activity" and "device" in tags and "context" in tags and "duration_s" in fields:
        aid = fields.get("id")
        out.activity.append(
            (
                tags["device"], ts, tags["context"], tags.get("patient", ""), _f(fields["duration_s"]),
                aid if isinstance(aid, str) else None, _extra(fields, ("duration_s", "id")),
            )
        )  # fmt: skip
    else:
        out.points.append(
            (
                meas,
                json.dumps(tags, sort_keys=True),
                ts,
                json.dumps(fields, sort_keys=True, default=_json_default),
            )
        )


_INSERTS = {
    "events": "INSERT OR REPLACE INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    "gaps": "INSERT OR REPLACE INTO gaps VALUES (?,?,?,?,?,?,?,?,?)",
    "health": "INSERT OR REPLACE INTO health VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
    "activity": "INSERT OR REPLACE INTO activity VALUES (?,?,?,?,?,?,?)",
    "series": "INSERT OR IGNORE INTO series VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
    "points": "INSERT OR REPLACE INTO points VALUES (?,?,?,?)",
}


def open_database(path: Path) -> sqlite3.Connection:
    """Open (creating) the store for writing: WAL, full sync, schema in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(_SCHEMA)
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    elif int(row[0]) != SCHEMA_VERSION:
        db.close()
        raise SinkUnavailable(
            f"local store {path}: schema version {row[0]}, this gateway writes {SCHEMA_VERSION}"
        )
    return db


def write_rows(db: sqlite3.Connection, rows: _Rows) -> None:
    """Insert ``rows`` in one transaction (all or nothing)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for table, sql in _INSERTS.items():
            batch = getattr(rows, table)
            if batch:
                db.executemany(sql, batch)
        # The devices seen, with their first and last status / event: what the patients page
        # lists, without scanning months of status points.
        seen: dict[tuple[str, str, str], tuple[int, int]] = {}
        for source, batch, dev_i, pat_i, t_i in (
            ("health", rows.health, 0, 2, 1),
            ("events", rows.events, 1, 2, 5),
        ):
            for r in batch:
                key = (r[pat_i], r[dev_i], source)
                lo, hi = seen.get(key, (r[t_i], r[t_i]))
                seen[key] = (min(lo, r[t_i]), max(hi, r[t_i]))
        if seen:
            db.executemany(
                "INSERT INTO devices VALUES (?,?,?,?,?) ON CONFLICT (patient, device, source) DO UPDATE SET "
                "first_ns = min(first_ns, excluded.first_ns), last_ns = max(last_ns, excluded.last_ns)",
                [(*k, lo, hi) for k, (lo, hi) in seen.items()],
            )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


SeriesKey = tuple[str, str, str, str]  # device, measurement, channel, field


def compact_window(db: sqlite3.Connection, key: SeriesKey, window: int) -> int:
    """Merge the blocks of one series starting in one ``COMPACT_WINDOW_NS`` window into one block
    (points written twice kept once); one transaction. Returns the number of blocks merged."""
    device, meas, channel, fld = key
    lo = window * COMPACT_WINDOW_NS
    where = "device = ? AND measurement = ? AND channel = ? AND field = ? AND t0_ns >= ? AND t0_ns < ?"
    args = (device, meas, channel, fld, lo, lo + COMPACT_WINDOW_NS)
    db.execute("BEGIN IMMEDIATE")
    try:
        rows = db.execute(
            f"SELECT patient, ts, codec, vals FROM series WHERE {where} ORDER BY t0_ns", args
        ).fetchall()
        if len(rows) > 1:
            t = np.concatenate([decode_times(r[1]) for r in rows])
            v = np.concatenate([decode_values(r[2], r[3]) for r in rows])
            order = np.argsort(t, kind="stable")
            t, v = t[order], v[order]
            keep = np.r_[t[1:] != t[:-1], True]
            t, v = t[keep], v[keep]
            db.execute(f"DELETE FROM series WHERE {where}", args)
            db.execute(_INSERTS["series"], series_row(device, meas, channel, fld, rows[0][0], t, v))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return len(rows) if len(rows) > 1 else 0


@dataclass
class SqliteSink:
    """The gateway's ``local`` storage in SQLite (``[local] format = "sqlite"``)."""

    path: Path
    name: str = "local"
    #: Merge a minute window's blocks once it is this many windows older than the newest data.
    compact_after_windows: int = 2
    _db: sqlite3.Connection | None = field(default=None, init=False, repr=False)
    _pending: dict[SeriesKey, set[int]] = field(default_factory=dict, init=False, repr=False)
    _newest: dict[SeriesKey, int] = field(default_factory=dict, init=False, repr=False)
    compacted_blocks: int = field(default=0, init=False)

    async def __aenter__(self) -> Self:
        try:
            self._db = await asyncio.to_thread(open_database, self.path)
        except (sqlite3.Error, OSError) as exc:
            raise SinkUnavailable(f"local store {self.path}: {exc}") from exc
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        db, self._db = self._db, None
        if db is not None:
            await asyncio.to_thread(db.close)

    async def send(self, records: list[bytes]) -> None:
        # A batch is parsed and committed in a thread: with synchronous=FULL the commit waits for
        # the disk, which must not stall the devices' event loop.
        await asyncio.to_thread(self.send_sync, records)

    def send_sync(self, records: list[bytes]) -> None:
        """Parse and store ``records`` in one transaction; blocking (tests and tools call it)."""
        db = self._db
        if db is None:
            raise SinkUnavailable(f"local store {self.path}: not open")
        rows = _Rows()
        bad: list[int] = []
        reasons: list[str] = []
        for i, rec in enumerate(records):
            one = _Rows()
            try:
                if not series_fast(rec, one):
                    _rows_of(parse_lines(rec), one)
            except (LineProtocolError, _RecordError, ValueError, TypeError) as exc:
                bad.append(i)
                reasons.append(f"record {i}: {exc}")
                continue
            for table in _INSERTS:
                getattr(rows, table).extend(getattr(one, table))
        try:
            write_rows(db, rows)
            self._compact(db, rows.series)
        except (sqlite3.Error, OSError) as exc:
            raise SinkUnavailable(f"local store {self.path}: {exc}") from exc
        if bad:
            raise SinkRejected(f"local store {self.path}: {'; '.join(reasons[:3])}", bad)

    def _compact(self, db: sqlite3.Connection, new_rows: list[tuple[Any, ...]]) -> None:
        """Compact the windows this sink wrote that are now old enough. Windows pending when the
        gateway stops stay as they are (correct, only less compact)."""
        for r in new_rows:
            key: SeriesKey = (r[0], r[1], r[3], r[4])
            w0, w1 = r[2] // COMPACT_WINDOW_NS, r[5] // COMPACT_WINDOW_NS
            self._pending.setdefault(key, set()).add(w0)
            self._newest[key] = max(self._newest.get(key, w1), w1)
        for key, windows in self._pending.items():
            ready = sorted(w for w in windows if w <= self._newest[key] - self.compact_after_windows)
            for w in ready:
                self.compacted_blocks += compact_window(db, key, w)
                windows.discard(w)
