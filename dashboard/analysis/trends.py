"""Trends over days and weeks: what a clinician doses baclofen or botulinum toxin on.

Computed from HistoryStore rows, once for both backends. Definitions (docs/dashboard.md, "Trends"):

- **Counted events**: events not reviewed ``not_spasm`` and not reviewed ``unsure``. ``not_spasm``
  ones are *excluded* (shown as a separate number, never in a count); ``unsure`` ones are counted
  *separately* (``unsure``), so a clinician sees how much is undecided; confirmed and unreviewed
  events are counted.
- **Local time**: hours, days and day/night use the site's time zone (``tz``, an IANA name). Night is
  ``[night_start, night_end)`` local time, by default 22:00-07:00 (it may wrap midnight). A day is
  the local calendar date of the event's onset.
- **Monitored time**: ``HistoryStore.coverage`` in 15-minute buckets (every real UTC offset is a
  multiple of 15 minutes, so buckets fall cleanly into local hours, days and the night window when
  its ends are on quarter hours): status points saying ``monitoring=true`` times the status period,
  minus EMG gaps. Rates are per *monitored* hour, so a night without monitoring is not a quiet night.
- **Durations**: histogram over ``DURATION_BINS_S``; **clonus frequency**: histogram over
  ``FREQUENCY_BINS_HZ`` of counted clonus events, with the median.
- **Activity**: seconds per activity context and day (from the ``activity`` measurement; empty until
  the detector writes it).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from dashboard.history.base import EVENT_TYPES, EventRow, HistoryStore, from_ns, to_ns

__all__ = [
    "DURATION_BINS_S",
    "FREQUENCY_BINS_HZ",
    "DayRow",
    "HourRow",
    "TrendConfig",
    "Trends",
    "classify",
    "compute_trends",
    "is_night",
]

#: Edges (s) of the duration histogram: twitch / phasic / tonic boundaries (0.5, 10) among them.
DURATION_BINS_S = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, math.inf)
#: Edges (Hz) of the clonus frequency histogram (the detector's clonus band is 3-8 Hz).
FREQUENCY_BINS_HZ = (0.0, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5, 7.0, 7.5, 8.0, math.inf)
COVERAGE_BUCKET_S = 900


@dataclass(frozen=True)
class TrendConfig:
    """Where and how to count. ``tz``: the site's IANA time zone; night window in local time."""

    tz: str = "UTC"
    night_start: time = time(22, 0)
    night_end: time = time(7, 0)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)


def is_night(t: datetime, cfg: TrendConfig) -> bool:
    """Whether the local time of ``t`` falls in the night window (which may wrap midnight)."""
    local = t.astimezone(cfg.zone).time()
    if cfg.night_start <= cfg.night_end:
        return cfg.night_start <= local < cfg.night_end
    return local >= cfg.night_start or local < cfg.night_end


def classify(event: EventRow, verdicts: Mapping[str, str]) -> str:
    """``counted``, ``unsure`` or ``excluded`` (reviewed not_spasm)."""
    v = verdicts.get(event.id)
    if v == "not_spasm":
        return "excluded"
    if v == "unsure":
        return "unsure"
    return "counted"


@dataclass
class HourRow:
    """One local hour: counted events by type, unsure, excluded, monitored and gap seconds."""

    start: datetime
    counts: dict[str, int]
    unsure: int
    excluded: int
    monitored_s: float
    gap_s: float

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class DayRow:
    """One local calendar day; ``day`` / ``night`` split counted events and monitored seconds."""

    date: date
    counts: dict[str, int]
    unsure: int
    excluded: int
    day_count: int
    night_count: int
    monitored_s: float
    day_monitored_s: float
    night_monitored_s: float
    gap_s: float
    activity_s: dict[str, float]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def per_monitored_hour(self) -> float | None:
        return self.total / (self.monitored_s / 3600) if self.monitored_s > 0 else None


@dataclass
class Trends:
    """Everything the trends page and the report show for one device and period."""

    device: str
    patient: str
    start: datetime
    end: datetime
    config: TrendConfig
    hours: list[HourRow]
    days: list[DayRow]
    totals: dict[str, int]
    unsure: int
    excluded: int
    confirmed: int
    unreviewed: int
    day_night: dict[str, dict[str, float | None]]
    hour_of_day: list[dict[str, float | None]]
    durations: dict[str, list[int]]
    duration_median_s: dict[str, float | None]
    clonus_frequency: list[int]
    clonus_frequency_median_hz: float | None
    intensity_median: dict[str, float | None]
    monitored_s: float
    period_s: float
    gap_s: float
    gaps_by_cause: dict[str, dict[str, float]]
    activity_s: dict[str, float]
    duration_bins_s: tuple[float, ...] = field(default=DURATION_BINS_S)
    frequency_bins_hz: tuple[float, ...] = field(default=FREQUENCY_BINS_HZ)

    @property
    def total(self) -> int:
        return sum(self.totals.values())

    @property
    def coverage_fraction(self) -> float:
        return self.monitored_s / self.period_s if self.period_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types (times as ISO 8601, infinite bin edges as null)."""

        def conv(x: Any) -> Any:
            if isinstance(x, datetime | date | time):
                return x.isoformat()
            if isinstance(x, float) and not math.isfinite(x):
                return None
            if isinstance(x, dict):
                return {str(k): conv(v) for k, v in x.items()}
            if isinstance(x, list | tuple):
                return [conv(v) for v in x]
            return x

        out = conv(asdict(self))
        out["config"] = {"tz": self.config.tz, "night_start": self.config.night_start.isoformat(),
                         "night_end": self.config.night_end.isoformat()}  # fmt: skip
        out["total"] = self.total
        out["coverage_fraction"] = self.coverage_fraction
        for row, src in zip(out["days"], self.days, strict=True):
            row["total"] = src.total
            row["per_monitored_hour"] = src.per_monitored_hour
        for row, hsrc in zip(out["hours"], self.hours, strict=True):
            row["total"] = hsrc.total
        return dict(out)


def _hist(values: list[float], edges: tuple[float, ...]) -> list[int]:
    if not values:
        return [0] * (len(edges) - 1)
    counts, _ = np.histogram(np.asarray(values, dtype=float), bins=np.asarray(edges, dtype=float))
    return [int(c) for c in counts]


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


_EPOCH_DAY = date(1970, 1, 1)
_H = 3_600_000_000_000
_D = 86_400_000_000_000
_Q = 900_000_000_000


class _Local:
    """Local-time fields of UTC instants (ns), vectorised: the UTC offset is looked up once per
    15-minute slot (every real offset change falls on a quarter hour)."""

    def __init__(self, ns: npt.NDArray[np.int64], cfg: TrendConfig) -> None:
        zone = cfg.zone
        if len(ns):
            u, inv = np.unique(np.floor_divide(ns, _Q), return_inverse=True)
            lut = np.array(
                [int(from_ns(int(x) * _Q).astimezone(zone).utcoffset().total_seconds()) for x in u],  # type: ignore[union-attr]
                dtype=np.int64,
            )
            off = lut[inv.reshape(-1)] * 1_000_000_000
        else:
            off = np.empty(0, dtype=np.int64)
        local = ns + off
        self.hour_key = local - np.mod(local, _H) - off  # UTC instant of the local hour's start
        self.day = np.floor_divide(local, _D)  # local calendar day, days since 1970-01-01
        tod = np.mod(local, _D)
        self.hour_of_day = (tod // _H).astype(np.int64)
        a = (
            cfg.night_start.hour * 3600 + cfg.night_start.minute * 60 + cfg.night_start.second
        ) * 1_000_000_000
        b = (cfg.night_end.hour * 3600 + cfg.night_end.minute * 60 + cfg.night_end.second) * 1_000_000_000
        self.night = ((tod >= a) & (tod < b)) if a <= b else ((tod >= a) | (tod < b))


def _index(keys: npt.NDArray[np.int64], values: npt.NDArray[np.int64]) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``values`` in sorted ``keys`` and whether each is there."""
    if not len(keys):
        return np.zeros(len(values), dtype=np.int64), np.zeros(len(values), dtype=bool)
    i = np.searchsorted(keys, values)
    ok = i < len(keys)
    ok[ok] = keys[i[ok]] == values[ok]
    return np.minimum(i, len(keys) - 1), ok


def compute_trends(
    store: HistoryStore,
    device: str,
    start: datetime,
    end: datetime,
    *,
    verdicts: Mapping[str, str] | None = None,
    config: TrendConfig | None = None,
    patient: str = "",
) -> Trends:
    """Trends of one device over ``[start, end)``; ``verdicts`` maps event id -> review verdict
    (``ReviewStore.verdicts``); ``config`` the site's time zone and night window.

    Vectorised over columns (``HistoryStore.event_columns``): a month at 30 spasms an hour is
    ~22,000 events and 2,880 coverage buckets.
    """
    cfg = config or TrendConfig()
    verdicts = verdicts or {}
    ev = store.event_columns(device, start, end)
    if not patient and len(ev):
        first = store.event(ev.id[0])
        patient = first.patient if first is not None else ""
    coverage = store.coverage(device, start, end, COVERAGE_BUCKET_S)
    gaps = store.gaps(device, start, end)
    activity = store.activity(device, start, end)
    s_ns, e_ns = to_ns(start), to_ns(end)

    # Local hours and days of the period.
    slots = np.arange(s_ns - s_ns % _Q, e_ns, _Q, dtype=np.int64)
    hour_keys = np.unique(_Local(slots, cfg).hour_key)
    hour_keys = hour_keys[(hour_keys < e_ns) & (hour_keys + _H > s_ns)]
    day0 = int(_Local(np.array([s_ns], dtype=np.int64), cfg).day[0])
    day1 = int(_Local(np.array([e_ns - 1000], dtype=np.int64), cfg).day[0])
    n_days = day1 - day0 + 1
    nh = len(hour_keys)

    # Events: classified by review, placed in local hours / days / day-night.
    types = list(EVENT_TYPES) + sorted(set(ev.type) - set(EVENT_TYPES))
    t_index = {t: i for i, t in enumerate(types)}
    nt = len(types)
    tidx = np.array([t_index[t] for t in ev.type], dtype=np.int64)
    verdict = [verdicts.get(i) for i in ev.id]
    excl = np.array([v == "not_spasm" for v in verdict], dtype=bool)
    uns = np.array([v == "unsure" for v in verdict], dtype=bool)
    cnt = ~excl & ~uns
    loc = _Local(ev.onset_ns, cfg)
    hi, h_ok = _index(hour_keys, loc.hour_key)
    di = loc.day - day0
    d_ok = (di >= 0) & (di < n_days)
    di = np.clip(di, 0, max(n_days - 1, 0))

    def per(idx: np.ndarray, ok: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
        return np.bincount(idx[ok & mask], minlength=n)[:n] if n else np.zeros(0, dtype=np.int64)

    h_counts = np.zeros((nh, nt), dtype=np.int64)
    np.add.at(h_counts, (hi[h_ok & cnt], tidx[h_ok & cnt]), 1)
    d_counts = np.zeros((n_days, nt), dtype=np.int64)
    np.add.at(d_counts, (di[d_ok & cnt], tidx[d_ok & cnt]), 1)
    h_uns, h_exc = per(hi, h_ok, uns, nh), per(hi, h_ok, excl, nh)
    d_uns, d_exc = per(di, d_ok, uns, n_days), per(di, d_ok, excl, n_days)
    d_night = per(di, d_ok, cnt & loc.night, n_days)
    d_day = per(di, d_ok, cnt & ~loc.night, n_days)

    # Coverage buckets into the same hours / days / day-night.
    c_ns = np.array([to_ns(c.start) for c in coverage], dtype=np.int64)
    c_mon = np.array([c.monitored_s for c in coverage], dtype=np.float64)
    c_gap = np.array([c.gap_s for c in coverage], dtype=np.float64)
    cl = _Local(c_ns, cfg)
    chi, ch_ok = _index(hour_keys, cl.hour_key)
    cdi = cl.day - day0
    cd_ok = (cdi >= 0) & (cdi < n_days)
    cdi = np.clip(cdi, 0, max(n_days - 1, 0))

    def wsum(idx: np.ndarray, ok: np.ndarray, w: np.ndarray, n: int) -> np.ndarray:
        return np.bincount(idx[ok], weights=w[ok], minlength=n)[:n] if n else np.zeros(0)

    h_mon, h_gap = wsum(chi, ch_ok, c_mon, nh), wsum(chi, ch_ok, c_gap, nh)
    d_mon, d_gap = wsum(cdi, cd_ok, c_mon, n_days), wsum(cdi, cd_ok, c_gap, n_days)
    d_night_mon = wsum(cdi, cd_ok & cl.night, c_mon, n_days)
    d_day_mon = wsum(cdi, cd_ok & ~cl.night, c_mon, n_days)
    night_mon = float(c_mon[cl.night].sum())
    day_mon = float(c_mon[~cl.night].sum())
    hod_mon = np.bincount(cl.hour_of_day, weights=c_mon, minlength=24)[:24]
    hod_counts = np.bincount(loc.hour_of_day[cnt], minlength=24)[:24]

    hours = [
        HourRow(from_ns(int(hour_keys[i])), dict(zip(types, map(int, h_counts[i]), strict=True)),
                int(h_uns[i]), int(h_exc[i]), float(h_mon[i]), float(h_gap[i]))
        for i in range(nh)
    ]  # fmt: skip
    days = [
        DayRow(_EPOCH_DAY + timedelta(days=day0 + i), dict(zip(types, map(int, d_counts[i]), strict=True)),
               int(d_uns[i]), int(d_exc[i]), int(d_day[i]), int(d_night[i]), float(d_mon[i]),
               float(d_day_mon[i]), float(d_night_mon[i]), float(d_gap[i]), {})
        for i in range(n_days)
    ]  # fmt: skip

    act_total: dict[str, float] = defaultdict(float)
    for a in activity:
        secs = max(0.0, (min(a.end, end) - max(a.start, start)).total_seconds())
        act_total[a.context] += secs
        k = int(_Local(np.array([to_ns(a.start)], dtype=np.int64), cfg).day[0]) - day0
        if 0 <= k < n_days:
            days[k].activity_s[a.context] = days[k].activity_s.get(a.context, 0.0) + secs

    gaps_by_cause: dict[str, dict[str, float]] = {}
    for g in gaps:
        secs = max(0.0, (min(g.end, end) - max(g.start, start)).total_seconds())
        entry = gaps_by_cause.setdefault(g.cause, {"count": 0.0, "seconds": 0.0})
        entry["count"] += 1
        entry["seconds"] += secs

    def rate(n: int, mon: float) -> float | None:
        return n / (mon / 3600) if mon > 0 else None

    totals = {t: int(n) for t, n in zip(types, np.bincount(tidx[cnt], minlength=nt)[:nt], strict=True)}
    night_n = int((cnt & loc.night).sum())
    day_n = int((cnt & ~loc.night).sum())
    by_type = {t: cnt & (tidx == t_index[t]) for t in EVENT_TYPES}
    rel_ok = ~np.isnan(ev.relative_amplitude)
    clonus = by_type["clonus"] & ~np.isnan(ev.frequency_hz)
    return Trends(
        device=device,
        patient=patient,
        start=start,
        end=end,
        config=cfg,
        hours=hours,
        days=days,
        totals=totals,
        unsure=int(uns.sum()),
        excluded=int(excl.sum()),
        confirmed=sum(v == "confirmed" for v in verdict),
        unreviewed=sum(v is None for v in verdict),
        day_night={
            "day": {"count": day_n, "monitored_s": day_mon, "per_monitored_hour": rate(day_n, day_mon)},
            "night": {
                "count": night_n,
                "monitored_s": night_mon,
                "per_monitored_hour": rate(night_n, night_mon),
            },
        },
        hour_of_day=[
            {
                "hour": h,
                "count": int(hod_counts[h]),
                "monitored_s": float(hod_mon[h]),
                "per_monitored_hour": rate(int(hod_counts[h]), float(hod_mon[h])),
            }
            for h in range(24)
        ],
        durations={t: _hist(ev.duration_s[m].tolist(), DURATION_BINS_S) for t, m in by_type.items()},
        duration_median_s={t: _median(ev.duration_s[m].tolist()) for t, m in by_type.items()},
        clonus_frequency=_hist(ev.frequency_hz[clonus].tolist(), FREQUENCY_BINS_HZ),
        clonus_frequency_median_hz=_median(ev.frequency_hz[clonus].tolist()),
        intensity_median={t: _median(ev.relative_amplitude[m & rel_ok].tolist()) for t, m in by_type.items()},
        monitored_s=float(c_mon.sum()),
        period_s=(end - start).total_seconds(),
        gap_s=float(c_gap.sum()),
        gaps_by_cause=gaps_by_cause,
        activity_s=dict(act_total),
    )
