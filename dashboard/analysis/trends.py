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
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from dashboard.history.base import EVENT_TYPES, EventRow, HistoryStore

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


def _local_hours(start: datetime, end: datetime, zone: ZoneInfo) -> list[datetime]:
    """Start of every local clock hour overlapping [start, end), as aware UTC datetimes."""
    t = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    # UTC hours are local hours for whole-hour offsets; step in UTC and floor to the local hour.
    out: list[datetime] = []
    seen = set()
    while t < end + timedelta(hours=1):
        local = t.astimezone(zone).replace(minute=0, second=0, microsecond=0)
        h = local.astimezone(UTC)
        if h not in seen and h < end:
            seen.add(h)
            out.append(h)
        t += timedelta(minutes=15)
    return [h for h in sorted(out) if h + timedelta(hours=1) > start]


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
    (``ReviewStore.verdicts``); ``config`` the site's time zone and night window."""
    cfg = config or TrendConfig()
    zone = cfg.zone
    verdicts = verdicts or {}
    events = store.events(device, start, end)
    if not patient and events:
        patient = events[0].patient
    coverage = store.coverage(device, start, end, COVERAGE_BUCKET_S)
    gaps = store.gaps(device, start, end)
    activity = store.activity(device, start, end)

    hour_starts = _local_hours(start, end, zone)
    hours = {h: HourRow(h, dict.fromkeys(EVENT_TYPES, 0), 0, 0, 0.0, 0.0) for h in hour_starts}

    def hour_of(t: datetime) -> datetime:
        return t.astimezone(zone).replace(minute=0, second=0, microsecond=0).astimezone(UTC)

    def day_of(t: datetime) -> date:
        return t.astimezone(zone).date()

    first_day, last_day = day_of(start), day_of(end - timedelta(microseconds=1))
    days: dict[date, DayRow] = {}
    d = first_day
    while d <= last_day:
        days[d] = DayRow(d, dict.fromkeys(EVENT_TYPES, 0), 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, {})
        d += timedelta(days=1)

    totals: Counter[str] = Counter(dict.fromkeys(EVENT_TYPES, 0))
    unsure = excluded = confirmed = 0
    durations: dict[str, list[float]] = defaultdict(list)
    intensity: dict[str, list[float]] = defaultdict(list)
    clonus_f: list[float] = []
    night_n = day_n = 0
    hod_counts = [0] * 24
    for e in events:
        kind = classify(e, verdicts)
        hr = hours.get(hour_of(e.onset))
        dr = days.get(day_of(e.onset))
        if kind == "excluded":
            excluded += 1
            if hr:
                hr.excluded += 1
            if dr:
                dr.excluded += 1
            continue
        if kind == "unsure":
            unsure += 1
            if hr:
                hr.unsure += 1
            if dr:
                dr.unsure += 1
            continue
        confirmed += verdicts.get(e.id) == "confirmed"
        totals[e.type] += 1
        if hr:
            hr.counts[e.type] = hr.counts.get(e.type, 0) + 1
        night = is_night(e.onset, cfg)
        night_n += night
        day_n += not night
        hod_counts[e.onset.astimezone(zone).hour] += 1
        if dr:
            dr.counts[e.type] = dr.counts.get(e.type, 0) + 1
            dr.night_count += night
            dr.day_count += not night
        durations[e.type].append(e.duration_s)
        if e.relative_amplitude is not None:
            intensity[e.type].append(e.relative_amplitude)
        if e.type == "clonus" and e.frequency_hz is not None:
            clonus_f.append(e.frequency_hz)

    night_mon = day_mon = 0.0
    hod_mon = [0.0] * 24
    for c in coverage:
        hr = hours.get(hour_of(c.start))
        if hr:
            hr.monitored_s += c.monitored_s
            hr.gap_s += c.gap_s
        dr = days.get(day_of(c.start))
        night = is_night(c.start, cfg)
        if dr:
            dr.monitored_s += c.monitored_s
            dr.gap_s += c.gap_s
            if night:
                dr.night_monitored_s += c.monitored_s
            else:
                dr.day_monitored_s += c.monitored_s
        if night:
            night_mon += c.monitored_s
        else:
            day_mon += c.monitored_s
        hod_mon[c.start.astimezone(zone).hour] += c.monitored_s

    act_total: dict[str, float] = defaultdict(float)
    for a in activity:
        s = max(a.start, start)
        e_ = min(a.end, end)
        secs = max(0.0, (e_ - s).total_seconds())
        act_total[a.context] += secs
        dr = days.get(day_of(a.start))
        if dr:
            dr.activity_s[a.context] = dr.activity_s.get(a.context, 0.0) + secs

    gaps_by_cause: dict[str, dict[str, float]] = {}
    s_ns, e_ns = start, end
    for g in gaps:
        secs = max(0.0, (min(g.end, e_ns) - max(g.start, s_ns)).total_seconds())
        entry = gaps_by_cause.setdefault(g.cause, {"count": 0.0, "seconds": 0.0})
        entry["count"] += 1
        entry["seconds"] += secs

    def rate(n: int, mon: float) -> float | None:
        return n / (mon / 3600) if mon > 0 else None

    monitored = sum(c.monitored_s for c in coverage)
    return Trends(
        device=device,
        patient=patient,
        start=start,
        end=end,
        config=cfg,
        hours=[hours[h] for h in hour_starts],
        days=list(days.values()),
        totals=dict(totals),
        unsure=unsure,
        excluded=excluded,
        confirmed=confirmed,
        unreviewed=sum(1 for e in events if e.id not in verdicts),
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
                "count": hod_counts[h],
                "monitored_s": hod_mon[h],
                "per_monitored_hour": rate(hod_counts[h], hod_mon[h]),
            }
            for h in range(24)
        ],
        durations={t: _hist(durations.get(t, []), DURATION_BINS_S) for t in EVENT_TYPES},
        duration_median_s={t: _median(durations.get(t, [])) for t in EVENT_TYPES},
        clonus_frequency=_hist(clonus_f, FREQUENCY_BINS_HZ),
        clonus_frequency_median_hz=_median(clonus_f),
        intensity_median={t: _median(intensity.get(t, [])) for t in EVENT_TYPES},
        monitored_s=monitored,
        period_s=(end - start).total_seconds(),
        gap_s=sum(c.gap_s for c in coverage),
        gaps_by_cause=gaps_by_cause,
        activity_s=dict(act_total),
    )
