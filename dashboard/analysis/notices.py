"""Notices: configurable rules evaluated on history rows, returning Notice records.

The web app evaluates them (on new rows, and on a timer for "monitoring inactive"), publishes each
new notice in the view and on MQTT, and keeps the acknowledgement log. This module only decides.

Rules (any may be switched off with None):

- ``inactive_minutes``: monitoring inactive for at least N minutes. A stretch without a status
  point saying ``monitoring=true`` (device offline, stale, not worn, gateway down: all look the same
  here, and must) that lasted N minutes, or is still going on at ``now``.
- ``tonic_longer_than_s``: a tonic spasm longer than N s.
- ``spasms_per_hour_above``: more than N counted spasms in one clock hour (UTC-aligned hours:
  deterministic, so re-evaluation gives the same notice).

Events reviewed ``not_spasm`` never raise a notice. Notice ids are UUIDv5 of (rule, device, key),
so evaluating the same rows twice yields the same ids: the caller dedupes by id.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dashboard.history.base import EventRow, HealthRow

__all__ = ["Notice", "NoticeRules", "evaluate", "inactive_stretches"]

_NS = uuid.UUID("6a1c3f0e-8f6e-5f8a-9d0e-2f7d0c1b9a11")


@dataclass(frozen=True)
class NoticeRules:
    """Thresholds; None switches a rule off. From the dashboard's config ``[notices]``."""

    inactive_minutes: float | None = 10.0
    tonic_longer_than_s: float | None = 60.0
    spasms_per_hour_above: int | None = 30

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "[notices]") -> NoticeRules:
        """From a TOML table; unknown keys and bad values raise ValueError naming ``source`` and key."""
        known = {"inactive_minutes", "tonic_longer_than_s", "spasms_per_hour_above"}
        for k in d:
            if k not in known:
                raise ValueError(f"{source}: unknown key {k!r} (known: {', '.join(sorted(known))})")
        for k, v in d.items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or v <= 0):
                raise ValueError(f"{source}.{k}: must be a positive number (or absent to switch it off)")
        kw: dict[str, Any] = dict(d)
        if kw.get("spasms_per_hour_above") is not None:
            kw["spasms_per_hour_above"] = int(kw["spasms_per_hour_above"])
        return cls(**kw)


@dataclass(frozen=True)
class Notice:
    """One raised notice. ``at`` is when the condition became true; ``key`` what it is about
    (an event id, an hour, the start of an inactive stretch); ``ongoing`` for inactivity still on."""

    id: str
    rule: str
    device: str
    patient: str
    at: datetime
    text: str
    key: str
    value: float
    ongoing: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "rule": self.rule, "device": self.device, "patient": self.patient,
            "at": self.at.isoformat(), "text": self.text, "key": self.key, "value": self.value,
            "ongoing": self.ongoing,
        }  # fmt: skip


def _id(rule: str, device: str, key: str) -> str:
    return str(uuid.uuid5(_NS, f"{rule}|{device}|{key}"))


def inactive_stretches(
    health: Sequence[HealthRow], start: datetime, now: datetime, min_s: float, period_s: float = 10.0
) -> list[tuple[datetime, datetime, bool]]:
    """(from, to, ongoing) stretches of at least ``min_s`` with no ``monitoring=true`` status.

    A monitoring point vouches for ``period_s`` before it (the status period), so points every
    10 s leave no stretch; a stretch starts where the last one's vouching ends (or at ``start``).
    """
    on = sorted(h.at for h in health if h.monitoring)
    out = []
    last = start
    for t in on:
        begin = t - timedelta(seconds=period_s)
        if (begin - last).total_seconds() >= min_s:
            out.append((last, begin, False))
        last = max(last, t)
    if (now - last).total_seconds() >= min_s:
        out.append((last, now, True))
    return out


def evaluate(
    rules: NoticeRules,
    *,
    device: str,
    patient: str,
    start: datetime,
    now: datetime,
    events: Sequence[EventRow] | None = None,
    health: Sequence[HealthRow] | None = None,
    verdicts: Mapping[str, str] | None = None,
    status_period_s: float = 10.0,
    tz: str = "UTC",
) -> list[Notice]:
    """All notices for rows in ``[start, now]``, sorted by time. Pass ``health`` for the
    inactivity rule and ``events`` for the others (what is not passed, None, is not judged; an
    empty ``health`` list means no status at all: inactive). Times in texts are in ``tz``."""
    verdicts = verdicts or {}
    zone = ZoneInfo(tz)

    def hm(t: datetime, fmt: str = "%H:%M") -> str:
        return t.astimezone(zone).strftime(fmt)

    out: list[Notice] = []
    if rules.inactive_minutes is not None and health is not None:
        min_s = rules.inactive_minutes * 60
        for a, b, ongoing in inactive_stretches(health, start, now, min_s, status_period_s):
            minutes = (b - a).total_seconds() / 60
            key = a.isoformat()
            state = "still inactive" if ongoing else f"until {hm(b)}"
            out.append(
                Notice(
                    _id("inactive", device, key),
                    "inactive",
                    device,
                    patient,
                    a + timedelta(seconds=min_s),
                    f"Monitoring inactive for {minutes:.0f} min since {hm(a, '%Y-%m-%d %H:%M')} "
                    f"({state}): no spasms in this time does not mean no spasms.",
                    key,
                    round(minutes, 1),
                    ongoing,
                )
            )
    counted = [e for e in events or () if verdicts.get(e.id) != "not_spasm" and start <= e.onset <= now]
    if rules.tonic_longer_than_s is not None:
        for e in counted:
            if e.type == "tonic" and e.duration_s > rules.tonic_longer_than_s:
                out.append(
                    Notice(
                        _id("tonic_long", device, e.id),
                        "tonic_long",
                        device,
                        patient,
                        e.end,
                        f"Tonic spasm of {e.duration_s:.0f} s on {e.channel} at {hm(e.onset, '%H:%M:%S')} "
                        f"(longer than {rules.tonic_longer_than_s:g} s).",
                        e.id,
                        e.duration_s,
                    )
                )
    if rules.spasms_per_hour_above is not None:
        per_hour: Counter[datetime] = Counter()
        nth: dict[datetime, datetime] = {}
        for e in sorted(counted, key=lambda x: x.onset):
            if verdicts.get(e.id) == "unsure":
                continue
            h = e.onset.replace(minute=0, second=0, microsecond=0)
            per_hour[h] += 1
            if per_hour[h] == rules.spasms_per_hour_above + 1:
                nth[h] = e.onset
        for h, n in sorted(per_hour.items()):
            if n > rules.spasms_per_hour_above:
                key = h.isoformat()
                out.append(
                    Notice(
                        _id("rate", device, key),
                        "rate",
                        device,
                        patient,
                        nth[h],
                        f"{n} spasms between {hm(h)} and {hm(h + timedelta(hours=1))} "
                        f"(more than {rules.spasms_per_hour_above} per hour).",
                        key,
                        float(n),
                    )
                )
    return sorted(out, key=lambda n: (n.at, n.rule, n.key))
