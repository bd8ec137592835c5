"""The query interface every history backend implements, and the typed rows it returns.

Why one interface: the dashboard, the trends, the notices and the report must give the same
answer on the demo's embedded store (SQLite, no server) and on a clinic's InfluxDB. So the
backends only fetch rows; everything computed from rows (trends, coverage arithmetic, notices)
lives above them, written once. ``tests/servers/test_history.py`` runs one suite over both backends on the
same real data and compares their rows.

What the rows are made of is what the gateway writes (``ingest/outputs/router.py``, documented in
``docs/influx-schema.md``): measurements ``spasm_event``, ``gap``, ``device_health``,
``emg_envelope``, ``acc`` and, once the detector writes it, ``activity``. Every measurement carries
the pseudonymous ``device`` and ``patient`` tags; no row here ever carries a name.

Conventions:
- All times are timezone-aware ``datetime`` in UTC (``tzinfo=datetime.UTC``); ranges are
  half-open ``[start, end)`` on the record's timestamp (an event's onset, a gap's start).
- Methods are synchronous (plain blocking I/O, simple to test); the web app calls them through
  ``asyncio.to_thread``. A backend object may be used from several threads one call at a time
  per thread; the SQLite backend opens one read-only connection per thread.
- Rows are sorted by time, then by id / channel, so two backends compare equal row for row.
- Failures raise ``HistoryError`` (one line naming the store and what failed).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Literal, Protocol, Self

import numpy as np
import numpy.typing as npt

__all__ = [
    "EVENT_TYPES",
    "GAP_LOOKBACK_S",
    "REVIEW_VERDICTS",
    "STATUS_PERIOD_S",
    "ActivityRow",
    "CoverageRow",
    "DeviceRow",
    "EventColumns",
    "EventRow",
    "GapRow",
    "HealthRow",
    "HistoryError",
    "HistoryStore",
    "InterventionRow",
    "ReviewRow",
    "SeriesChannel",
    "SeriesKind",
    "SeriesRows",
    "bucket_ms_for",
    "coverage_from",
    "event_columns_from",
    "from_ns",
    "to_ns",
]

#: Spasm types the detector reports (``docs/schemas/event.v2.json``).
EVENT_TYPES = ("twitch", "phasic", "tonic", "clonus", "tremor")
#: What a clinician may say about an event.
REVIEW_VERDICTS = ("confirmed", "not_spasm", "unsure")
#: Nominal period of the gateway's status / ``device_health`` points (``ingest.stream.runner``).
STATUS_PERIOD_S = 10.0
#: How far before a query's start a gap may begin and still be found overlapping it. Both
#: backends use it, so they agree; a gap longer than this that began before the range is missed
#: (InfluxDB cannot filter on start + duration).
GAP_LOOKBACK_S = 7 * 86_400.0

SeriesKind = Literal["envelope", "acc"]


class HistoryError(Exception):
    """A history query failed (store missing, unreadable, server refused). One line."""


def to_ns(t: datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime (naive ones are refused: ambiguous)."""
    if t.tzinfo is None:
        raise ValueError(f"naive datetime {t.isoformat()}: history times must carry a time zone (UTC)")
    delta = t - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def from_ns(ns: int) -> datetime:
    """UTC datetime of nanoseconds since the epoch (microsecond resolution, as datetime allows)."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(ns) // 1000)


# ---------------------------------------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """A device that has data in the store, with the patient it belongs to.

    ``site`` is None when the store does not know it (the gateway's line protocol carries
    ``device`` and ``patient`` tags only; the dashboard fills the site from its configuration).
    ``first_seen`` / ``last_seen``: first and last ``device_health`` point (the status every 10 s),
    falling back to events when a store holds no health points.
    """

    patient: str
    device: str
    first_seen: datetime
    last_seen: datetime
    site: str | None = None


@dataclass(frozen=True, slots=True)
class EventRow:
    """One completed spasm episode (measurement ``spasm_event``; timestamp = onset).

    ``relative_amplitude`` is the intensity shown to clinicians: the peak envelope as a multiple of
    the resting baseline ("x baseline"). ``frequency_hz`` is the clonus / tremor rhythm (None for
    non-rhythmic types). ``context`` (activity context at onset, e.g. ``rest``) and ``clipped``
    (the signal saturated during the event, so amplitudes are lower bounds) are read when the
    gateway writes them and are None otherwise. ``end`` = onset + duration_s (the store keeps the
    onset and the duration, not the offset).
    """

    id: str
    device: str
    patient: str
    type: str
    channel: str
    onset: datetime
    end: datetime
    duration_s: float
    peak_uv: float | None
    mean_uv: float | None
    relative_amplitude: float | None
    frequency_hz: float | None
    confidence: float | None
    context: str | None = None
    clipped: bool | None = None

    @property
    def peak_x_baseline(self) -> float | None:
        """Alias of ``relative_amplitude``: the word clinicians use."""
        return self.relative_amplitude


@dataclass(frozen=True)
class EventColumns:
    """Events as columns: ``relative_amplitude`` / ``frequency_hz`` are NaN where the row's is None."""

    id: list[str]
    type: list[str]
    onset_ns: npt.NDArray[np.int64]
    duration_s: npt.NDArray[np.float64]
    relative_amplitude: npt.NDArray[np.float64]
    frequency_hz: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.id)


@dataclass(frozen=True, slots=True)
class GapRow:
    """A stretch without monitoring (measurement ``gap``; timestamp = start).

    ``cause``: ``lost_frames``, ``disconnect``, ``reboot``, ``lead_off``, ``saturation``,
    ``gateway_restart``, ...; ``domain``: ``emg`` or ``acc`` (whose samples are missing).
    """

    id: str
    device: str
    patient: str
    cause: str
    domain: str
    start: datetime
    end: datetime
    duration_s: float
    samples_missing: int


@dataclass(frozen=True, slots=True)
class HealthRow:
    """One ``device_health`` point (every status period, 10 s). Fields the gateway had no value for
    are None; ``contact`` maps channel label -> electrode contact ok (``contact_<label>`` fields)."""

    device: str
    patient: str
    at: datetime
    monitoring: bool
    battery_pct: float | None = None
    battery_mv: float | None = None
    loss_pct: float | None = None
    timestamp_quality_ms: float | None = None
    clock_drift_ppm: float | None = None
    spool_bytes: float | None = None
    contact: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ActivityRow:
    """A span of one activity context (measurement ``activity``; timestamp = start).

    Written by the detector's activity classifier once it exists: tag ``context`` (e.g. ``rest``,
    ``walking``, ``transfer``), fields ``duration_s`` and optionally ``id``. A store without
    ``activity`` points returns no rows (not an error): the trends then show no activity time.
    """

    device: str
    patient: str
    context: str
    start: datetime
    end: datetime
    duration_s: float
    id: str | None = None


@dataclass(frozen=True, slots=True)
class CoverageRow:
    """Monitored time in one bucket ``[start, start + bucket_s)``.

    ``monitored_s`` = (status points saying ``monitoring=true`` in the bucket) x status period,
    capped at the bucket, minus the union of EMG gaps overlapping the bucket; never negative.
    ``gap_s`` is that union. ``status_points`` is the raw count, for the curious.
    """

    start: datetime
    bucket_s: float
    monitored_s: float
    gap_s: float
    status_points: int


@dataclass(frozen=True, slots=True)
class SeriesChannel:
    """One downsampled series: per bucket its start time and the min / max / mean in it.

    Buckets with no sample are absent (not zero: no data is not a flat line). When a bucket is
    shorter than the sample interval, each bucket holds one sample and lo == hi == mean.
    """

    t_ns: npt.NDArray[np.int64]
    lo: npt.NDArray[np.float64]
    hi: npt.NDArray[np.float64]
    mean: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.t_ns.shape[0])


@dataclass(frozen=True, slots=True)
class SeriesRows:
    """Downsampled envelope (channels ``ch1``, ...; µV) or accelerometer (channels ``x``, ``y``,
    ``z``; g) of one device: min/max buckets of ``bucket_ms`` aligned to the epoch."""

    device: str
    kind: SeriesKind
    start: datetime
    end: datetime
    bucket_ms: int
    channels: dict[str, SeriesChannel]

    def to_json(self) -> dict[str, object]:
        """Plain lists for a JSON response (times as ms since the epoch, for JavaScript)."""
        return {
            "device": self.device,
            "kind": self.kind,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "bucket_ms": self.bucket_ms,
            "channels": {
                name: {
                    "t_ms": (ch.t_ns // 1_000_000).tolist(),
                    "lo": ch.lo.tolist(),
                    "hi": ch.hi.tolist(),
                    "mean": ch.mean.tolist(),
                }
                for name, ch in self.channels.items()
            },
        }


@dataclass(frozen=True, slots=True)
class ReviewRow:
    """A clinician's verdict on one event (``dashboard.reviews``). The latest review per event wins;
    earlier ones stay in the audit log."""

    event_id: str
    verdict: Literal["confirmed", "not_spasm", "unsure"]
    note: str
    reviewer: str
    at: datetime
    device: str | None = None
    patient: str | None = None


@dataclass(frozen=True, slots=True)
class InterventionRow:
    """A treatment marker on the trends (``dashboard.reviews``): ``kind`` e.g. ``dose change``,
    ``botulinum toxin``, ``physiotherapy course``; ``text`` free text (no names)."""

    id: int
    patient: str
    at: datetime
    kind: str
    text: str
    author: str
    device: str | None = None
    end: datetime | None = None


# ---------------------------------------------------------------------------------------------- interface


class HistoryStore(Protocol):
    """Read-only queries over the stored data of all devices. See the module docstring."""

    name: str

    def __enter__(self) -> Self: ...

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def close(self) -> None:
        """Release connections. Idempotent."""
        ...

    def devices(self) -> list[DeviceRow]:
        """Every (patient, device) with data, sorted by patient then device."""
        ...

    def events(
        self, device: str, start: datetime, end: datetime, *, types: set[str] | None = None
    ) -> list[EventRow]:
        """Events with onset in ``[start, end)``, optionally of some types only; sorted by onset, id.
        A re-delivered event (same id) appears once."""
        ...

    def event(self, event_id: str) -> EventRow | None:
        """One event by id (for the review page and the event detail), or None."""
        ...

    def gaps(self, device: str, start: datetime, end: datetime) -> list[GapRow]:
        """Gaps that overlap ``[start, end)`` (a gap started before ``start`` but still running is
        included), sorted by start, id."""
        ...

    def series(
        self, device: str, kind: SeriesKind, start: datetime, end: datetime, max_points: int = 2000
    ) -> SeriesRows:
        """Envelope or accelerometer in ``[start, end)``, downsampled to at most about
        ``max_points`` buckets per channel (bucket width ``bucket_ms_for(start, end, max_points)``)."""
        ...

    def activity(self, device: str, start: datetime, end: datetime) -> list[ActivityRow]:
        """Activity spans starting in ``[start, end)``; empty when the store holds none."""
        ...

    def health(self, device: str, start: datetime, end: datetime) -> list[HealthRow]:
        """``device_health`` points in ``[start, end)``, sorted by time."""
        ...

    def coverage(self, device: str, start: datetime, end: datetime, bucket_s: int) -> list[CoverageRow]:
        """Seconds actually monitored per bucket of ``bucket_s`` (aligned to the epoch; for days in
        a local time zone use 3600 s buckets and add them up). Every bucket in the range appears,
        also those with no data (monitored_s = 0)."""
        ...

    def event_counts(
        self, device: str, start: datetime, end: datetime, bucket_s: int
    ) -> dict[tuple[int, str], int]:
        """Event count per (bucket start in ns since the epoch, type), counted in the store (fast for
        weeks of data). Does not know about reviews: the trends subtract reviewed events."""
        ...

    def event_columns(self, device: str, start: datetime, end: datetime) -> EventColumns:
        """The events of ``events()`` as columns (no row objects): what the trends need for
        weeks of data, fast. Same events, same order (onset, id)."""
        ...


# ---------------------------------------------------------------------------------------------- helpers


def event_columns_from(
    ids: list[str],
    types: list[str],
    onset_ns: list[int],
    duration_s: list[float],
    relative_amplitude: list[float | None],
    frequency_hz: list[float | None],
) -> EventColumns:
    """Build ``EventColumns`` from parallel lists, deduplicated by id (last wins) and sorted by
    (onset, id) as ``events()`` is."""
    last = {eid: i for i, eid in enumerate(ids)}
    order = sorted(last.values(), key=lambda i: (onset_ns[i], ids[i]))

    def f8(col: list[float | None]) -> npt.NDArray[np.float64]:
        return np.array([np.nan if col[i] is None else col[i] for i in order], dtype=np.float64)

    return EventColumns(
        [ids[i] for i in order],
        [types[i] for i in order],
        np.array([onset_ns[i] for i in order], dtype=np.int64),
        f8(list(duration_s)),
        f8(relative_amplitude),
        f8(frequency_hz),
    )


def bucket_ms_for(start: datetime, end: datetime, max_points: int) -> int:
    """Bucket width in whole milliseconds (whole seconds past one second) so that ``[start, end)``
    makes at most ~max_points buckets."""
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    span_ms = max(1, (to_ns(end) - to_ns(start)) // 1_000_000)
    ms = max(1, math.ceil(span_ms / max_points))
    # Past a second, whole seconds: the SQLite store keeps per-second summaries of its blocks.
    return ms if ms <= 1000 else math.ceil(ms / 1000) * 1000


def _bucket_starts(start_ns: int, end_ns: int, bucket_ns: int) -> range:
    first = start_ns - start_ns % bucket_ns
    return range(first, end_ns, bucket_ns)


def union_overlap_s(intervals: Iterable[tuple[int, int]], lo: int, hi: int) -> float:
    """Seconds of ``[lo, hi)`` covered by the union of ns intervals (overlapping gaps of several
    channels count once)."""
    clipped = sorted((max(a, lo), min(b, hi)) for a, b in intervals if b > lo and a < hi)
    total = 0
    cur_a: int | None = None
    cur_b = 0
    for a, b in clipped:
        if cur_a is None or a > cur_b:
            if cur_a is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_a is not None:
        total += cur_b - cur_a
    return total / 1e9


def coverage_from(
    start: datetime,
    end: datetime,
    bucket_s: int,
    monitoring_counts: dict[int, int],
    gaps: Sequence[GapRow],
    status_period_s: float = STATUS_PERIOD_S,
) -> list[CoverageRow]:
    """Coverage rows from per-bucket counts of ``monitoring=true`` status points and the gaps.

    Shared by both backends so they agree to the second: each backend only counts status points
    per bucket (in SQL / InfluxQL) and fetches the gaps.
    """
    if bucket_s < 1:
        raise ValueError(f"bucket_s must be >= 1 s, got {bucket_s}")
    bucket_ns = int(bucket_s) * 1_000_000_000
    starts = np.array(_bucket_starts(to_ns(start), to_ns(end), bucket_ns), dtype=np.int64)
    gap_s = _union_per_bucket(
        [(to_ns(g.start), to_ns(g.end)) for g in gaps if g.domain == "emg"], starts, bucket_ns
    )
    rows = []
    for b, gs in zip(starts.tolist(), gap_s.tolist(), strict=True):
        n = monitoring_counts.get(b, 0)
        monitored = max(0.0, min(float(bucket_s), n * status_period_s) - gs)
        rows.append(CoverageRow(from_ns(b), float(bucket_s), monitored, gs, n))
    return rows


def _union_per_bucket(
    intervals: list[tuple[int, int]], starts: npt.NDArray[np.int64], bucket_ns: int
) -> np.ndarray:
    """Seconds of each bucket covered by the union of the ns intervals (vectorised)."""
    if not len(starts):
        return np.empty(0)
    merged: list[list[int]] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    if not merged:
        return np.zeros(len(starts))
    m = np.array(merged, dtype=np.int64)
    edges = np.r_[starts, starts[-1] + bucket_ns]
    # covered(t): ns of the union before t; a bucket's share is covered(end) - covered(start)
    lens = m[:, 1] - m[:, 0]
    cum = np.r_[0, np.cumsum(lens)]
    k = np.searchsorted(m[:, 0], edges, side="right")  # intervals starting at or before each edge
    inside = np.where(k > 0, np.minimum(edges - m[np.maximum(k - 1, 0), 0], lens[np.maximum(k - 1, 0)]), 0)
    covered = cum[np.maximum(k - 1, 0)] * (k > 0) + inside
    return np.diff(covered) / 1e9
