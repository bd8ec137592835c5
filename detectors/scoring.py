"""Event-level scoring of detections against ground-truth labels (pure, no I/O).

Labels are what the simulators export: dicts ``{"type", "channel", "onset_s", "offset_s",
"frequency_hz"?}`` with times in seconds from the start of the recording. Labels whose type is not a
spasm type (confounders such as "ecg" or "voluntary") are not events to find: a detection matched
to nothing counts as a false alarm whatever caused it.

Matching is one-to-one (Hungarian assignment, minimising onset distance). A detection and a label
are candidates when they are on the same channel (tremor, an accelerometer event, matches on any
channel) and either their onsets lie within ``onset_collar_s`` of each other or their intervals,
each widened by ``collar_s``, overlap by at least half of their union (intersection over union
>= 0.5: a short detection inside a long label is a fragment, not that label). The type is *not* part of
matching: an event found but mistyped counts for detection and against type accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from detectors.events import SPASM_TYPES, SpasmEvent


@dataclass(frozen=True, slots=True)
class Interval:
    type: str
    channel: str
    onset_s: float
    offset_s: float
    frequency_hz: float | None = None


@dataclass(frozen=True, slots=True)
class TypeScore:
    n_labels: int
    n_detections: int
    true_positives: int
    sensitivity: float
    precision: float
    f1: float


@dataclass(slots=True)
class ScoreReport:
    """Overall and per-type event metrics; NaN where undefined (e.g. precision with no detections)."""

    n_labels: int
    n_detections: int
    matched: int
    duration_s: float
    sensitivity: float
    precision: float
    f1: float
    type_accuracy: float
    false_alarms: int
    false_alarms_per_hour: float
    median_onset_error_s: float
    median_frequency_error_hz: float
    per_type: dict[str, TypeScore] = field(default_factory=dict)
    pairs: list[tuple[Interval, Interval]] = field(default_factory=list)  # (label, detection)
    missed: list[Interval] = field(default_factory=list)
    false: list[Interval] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_labels": self.n_labels,
            "n_detections": self.n_detections,
            "matched": self.matched,
            "duration_s": self.duration_s,
            "sensitivity": self.sensitivity,
            "precision": self.precision,
            "f1": self.f1,
            "type_accuracy": self.type_accuracy,
            "false_alarms": self.false_alarms,
            "false_alarms_per_hour": self.false_alarms_per_hour,
            "median_onset_error_s": self.median_onset_error_s,
            "median_frequency_error_hz": self.median_frequency_error_hz,
            "per_type": {k: vars_of(v) for k, v in self.per_type.items()},
        }


def vars_of(t: TypeScore) -> dict[str, float | int]:
    return {s: getattr(t, s) for s in TypeScore.__slots__}


def event_interval(ev: SpasmEvent, origin_sample: int = 0) -> Interval:
    """A detector event in seconds from the recording start (``origin_sample`` = counter at t=0)."""
    return Interval(
        type=ev.type,
        channel=ev.channel,
        onset_s=(ev.onset_sample - origin_sample) / ev.rate_hz,
        offset_s=(ev.offset_sample - origin_sample) / ev.rate_hz,
        frequency_hz=ev.frequency_hz,
    )


def _as_interval(item: SpasmEvent | Interval | Mapping[str, Any], where: str) -> Interval:
    if isinstance(item, Interval):
        return item
    if isinstance(item, SpasmEvent):
        return event_interval(item)
    try:
        freq = item.get("frequency_hz")
        iv = Interval(
            type=str(item["type"]),
            channel=str(item.get("channel", "")),
            onset_s=float(item["onset_s"]),
            offset_s=float(item["offset_s"]),
            frequency_hz=None if freq is None else float(freq),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: bad label/detection {dict(item)!r}: {exc}") from None
    if iv.offset_s < iv.onset_s:
        raise ValueError(f"{where}: offset_s before onset_s in {dict(item)!r}")
    return iv


def _ratio(a: int, b: int) -> float:
    return a / b if b else math.nan


def _f1(p: float, r: float) -> float:
    if math.isnan(p) or math.isnan(r) or p + r == 0:
        return math.nan if (math.isnan(p) and math.isnan(r)) else 0.0
    return 2 * p * r / (p + r)


def score(
    detections: Iterable[SpasmEvent | Interval | Mapping[str, Any]],
    labels: Iterable[Interval | Mapping[str, Any]],
    duration_s: float,
    *,
    collar_s: float = 0.5,
    onset_collar_s: float = 0.5,
    channel_free_types: Sequence[str] = ("tremor",),
) -> ScoreReport:
    """Match detections to labels and compute the metrics (see the module docstring)."""
    if duration_s <= 0:
        raise ValueError(f"score: duration_s must be > 0, got {duration_s}")
    dets = [_as_interval(d, f"detections[{i}]") for i, d in enumerate(detections)]
    labs_all = [_as_interval(x, f"labels[{i}]") for i, x in enumerate(labels)]
    labs = [x for x in labs_all if x.type in SPASM_TYPES]
    nl, nd = len(labs), len(dets)
    big = 1e9
    cost = np.full((nl, nd), big)
    for i, lab in enumerate(labs):
        for j, det in enumerate(dets):
            free = lab.type in channel_free_types or det.type in channel_free_types
            if not free and lab.channel != det.channel:
                continue
            d_on = abs(det.onset_s - lab.onset_s)
            ov = min(lab.offset_s, det.offset_s) + collar_s - (max(lab.onset_s, det.onset_s) - collar_s)
            union = max(lab.offset_s, det.offset_s) - min(lab.onset_s, det.onset_s) + 2 * collar_s
            if d_on <= onset_collar_s or ov >= 0.5 * union:
                cost[i, j] = d_on
    pairs: list[tuple[Interval, Interval]] = []
    if nl and nd:
        rows, cols = linear_sum_assignment(cost)
        for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
            if cost[i, j] < big:
                pairs.append((labs[i], dets[j]))
    matched_l = {id(p[0]) for p in pairs}
    matched_d = {id(p[1]) for p in pairs}
    tp = len(pairs)
    sens = _ratio(tp, nl)
    prec = _ratio(tp, nd)
    same = sum(1 for lab, det in pairs if lab.type == det.type)
    errs = [abs(det.onset_s - lab.onset_s) for lab, det in pairs]
    ferrs = [
        abs(det.frequency_hz - lab.frequency_hz)
        for lab, det in pairs
        if lab.frequency_hz is not None and det.frequency_hz is not None and lab.type == det.type
    ]
    per_type: dict[str, TypeScore] = {}
    for t in SPASM_TYPES:
        n_l = sum(1 for x in labs if x.type == t)
        n_d = sum(1 for x in dets if x.type == t)
        if not n_l and not n_d:
            continue
        tp_t = sum(1 for lab, det in pairs if lab.type == t and det.type == t)
        s_t, p_t = _ratio(tp_t, n_l), _ratio(tp_t, n_d)
        per_type[t] = TypeScore(n_l, n_d, tp_t, s_t, p_t, _f1(p_t, s_t))
    false = [d for d in dets if id(d) not in matched_d]
    return ScoreReport(
        n_labels=nl,
        n_detections=nd,
        matched=tp,
        duration_s=duration_s,
        sensitivity=sens,
        precision=prec,
        f1=_f1(prec, sens),
        type_accuracy=_ratio(same, tp),
        false_alarms=len(false),
        false_alarms_per_hour=len(false) / (duration_s / 3600.0),
        median_onset_error_s=float(np.median(errs)) if errs else math.nan,
        median_frequency_error_hz=float(np.median(ferrs)) if ferrs else math.nan,
        per_type=per_type,
        pairs=pairs,
        missed=[x for x in labs if id(x) not in matched_l],
        false=false,
    )


def format_table(rows: Sequence[tuple[str, ScoreReport]]) -> str:
    """A Markdown table, one row per scenario (used for docs/detector.md)."""
    head = "| scenario | labels | det | F1 | sens | prec | type acc | FA/h | onset err ms |\n"
    head += "|---|---|---|---|---|---|---|---|---|\n"
    lines = []
    for name, r in rows:
        lines.append(
            f"| {name} | {r.n_labels} | {r.n_detections} | {r.f1:.3f} | {r.sensitivity:.3f} | "
            f"{r.precision:.3f} | {r.type_accuracy:.3f} | {r.false_alarms_per_hour:.1f} | "
            f"{1000 * r.median_onset_error_s:.0f} |"
        )
    return head + "\n".join(lines) + "\n"
