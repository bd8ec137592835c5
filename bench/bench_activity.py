"""Score the detector on the voluntary-activity scenarios (issue 9): spasms between and during
walking, posture transitions, reaching/lifting, cycling, exercise, wheelchair propulsion, transfers,
and spasms during gait (``act_gait_spasms``).

    python bench/bench_activity.py                 # all act_* scenarios, with the accelerometer
    python bench/bench_activity.py --no-acc        # EMG only (what the accelerometer is worth)
    python bench/bench_activity.py --rate 250      # EMG resampled to 250 Hz (low-rate devices)
    python bench/bench_activity.py -v              # list misses / false alarms
    python bench/bench_activity.py --detector-config '{"own_part_ratio": 2.5}'  # detector settings changed

Detections inside a voluntary span match no label, so they count as false alarms (the scorer
counts every unmatched detection). The per-activity table attributes each false alarm to the
activity it falls in (or "rest").
"""

# ruff: noqa: E501
from __future__ import annotations

import argparse
import collections
import os
import sys
from typing import Any

import numpy as np
from scipy import signal

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from detectors import DetectorConfig, SpasmDetector, SpasmEvent
from detectors.detector import feed_interleaved
from detectors.scoring import ScoreReport, format_table, score
from ingest.commands.args import detector_config_json

NAMES = [
    "act_walk",
    "act_sit_stand",
    "act_reach_lift",
    "act_cycling",
    "act_exercise",
    "act_wheelchair",
    "act_transfer",
    "act_day",
    "act_gait_spasms",
]


def resample_emg(emg: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    """Polyphase resampling (anti-aliased) of (n, c) EMG to ``new_rate``."""
    if new_rate == rate:
        return emg
    g = np.gcd(rate, new_rate)
    return signal.resample_poly(emg, new_rate // g, rate // g, axis=0)


def run(
    rec: Any, with_acc: bool = True, rate: int | None = None, cfg: DetectorConfig | None = None
) -> tuple[list[SpasmEvent], list[Any]]:
    emg = np.asarray(rec.emg_uv, dtype=np.float64)
    fs = rec.emg_rate_hz
    if rate is not None and rate != fs:
        emg = resample_emg(emg, fs, rate)
        fs = rate
    det = SpasmDetector(
        cfg or DetectorConfig(),
        emg_rate_hz=float(fs),
        channel_labels=list(rec.channel_labels),
        acc_rate_hz=float(rec.acc_rate_hz) if with_acc else None,
    )
    acc = np.asarray(rec.acc_g, dtype=np.float64) if with_acc else None
    out = feed_interleaved(det, emg, acc, fs, rec.acc_rate_hz if with_acc else None, 0.05)
    return [o for o in out if isinstance(o, SpasmEvent)], out


def activity_at(rec: Any, t0: float, t1: float) -> str:
    for c in rec.confounders:
        if c["kind"] == "voluntary" and c["onset_s"] - 0.5 <= t1 and t0 <= c["offset_s"] + 0.5:
            return str(c.get("activity", "voluntary"))
    return "rest"


def main() -> None:
    from firmware_sim.scenario import builtin_scenario
    from firmware_sim.signals import synthesize

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", action="append")
    ap.add_argument("--no-acc", action="store_true")
    ap.add_argument("--rate", type=int, default=None)
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument(
        "--detector-config", type=detector_config_json, default=None, metavar="JSON",
        help='detector settings, as for neurospasm detect: \'{"own_part_ratio": 2.5}\'',
    )  # fmt: skip
    args = ap.parse_args()
    cfg = args.detector_config
    rows: list[tuple[str, ScoreReport]] = []
    per_act: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    act_hours: collections.Counter[str] = collections.Counter()
    for name in args.scenario or NAMES:
        rec = synthesize(builtin_scenario(name))
        evs, _ = run(rec, with_acc=not args.no_acc, rate=args.rate, cfg=cfg)
        rep = score(evs, rec.labels, rec.duration_s)
        rows.append((name, rep))
        for c in rec.confounders:
            if c["kind"] == "voluntary":
                act_hours[str(c.get("activity", "voluntary"))] += (c["offset_s"] - c["onset_s"]) / 3600
        for lab in rec.labels:
            a = activity_at(rec, lab["onset_s"], lab["offset_s"])
            per_act[a]["labels"] += 1
        for lab, _ in rep.pairs:
            per_act[activity_at(rec, lab.onset_s, lab.offset_s)]["found"] += 1
        for lab, d in rep.pairs:
            if lab.type == d.type:
                per_act[activity_at(rec, lab.onset_s, lab.offset_s)]["typed"] += 1
        for d in rep.false:
            per_act[activity_at(rec, d.onset_s, d.offset_s)]["false"] += 1
        if args.verbose:
            print(f"## {name}")
            for lab in rep.missed:
                print("   MISSED", lab, activity_at(rec, lab.onset_s, lab.offset_s))
            for d in rep.false:
                print("   FALSE ", d, activity_at(rec, d.onset_s, d.offset_s))
            for lab, d in rep.pairs:
                if lab.type != d.type:
                    print("   TYPE  ", lab.type, "->", d.type, lab)
    print_report(rows, per_act, act_hours)


def print_report(
    rows: list[tuple[str, ScoreReport]],
    per_act: dict[str, collections.Counter[str]],
    act_hours: collections.Counter[str],
) -> None:
    """The per-scenario table, the pooled line and the per-context table (also used by
    ``bench_unseen_voluntary.py``, so both benches report alike)."""
    print(format_table(rows))
    tp = sum(r.matched for _, r in rows)
    nl = sum(r.n_labels for _, r in rows)
    same = sum(1 for _, r in rows for lab, d in r.pairs if lab.type == d.type)
    fa = sum(r.false_alarms for _, r in rows)
    hours = sum(r.duration_s for _, r in rows) / 3600
    errs = [abs(d.onset_s - lab.onset_s) for _, r in rows for lab, d in r.pairs]
    nd = sum(r.n_detections for _, r in rows)
    sens, prec = tp / max(nl, 1), tp / max(nd, 1)
    print(
        f"pooled: sensitivity {sens:.3f}, type accuracy {same / max(tp, 1):.3f}, F1 {2 * sens * prec / max(sens + prec, 1e-12):.3f}, "
        f"false alarms {fa} in {hours:.2f} h = {fa / hours:.1f}/h, median onset error {1000 * float(np.median(errs)) if errs else float('nan'):.0f} ms, "
        f"p95 {1000 * float(np.percentile(errs, 95)) if errs else float('nan'):.0f} ms"
    )
    print("| context | spasm labels | found | typed right | false alarms | hours of activity |")
    print("|---|---|---|---|---|---|")
    for a in sorted(set(per_act) | set(act_hours)):
        c = per_act[a]
        print(
            f"| {a} | {c['labels']} | {c['found']} | {c['typed']} | {c['false']} | {act_hours.get(a, 0.0):.3f} |"
        )


if __name__ == "__main__":
    main()
