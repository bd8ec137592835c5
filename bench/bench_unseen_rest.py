"""Score the detector on electrode and cable artefacts at rest (``bench/unseen_rest.py``).

    python bench/bench_unseen_rest.py                  # tables: FA/h, sensitivity by situation, quality
    python bench/bench_unseen_rest.py -v               # every false alarm, miss and quality mismatch
    python bench/bench_unseen_rest.py --seed-offset 1000   # same recipes, other seeds (held out)
    python bench/bench_unseen_rest.py --guard-before 3     # judge bursts up to 3 s before a lead-off

Lead-off begin/end transitions (half contact: rising and distorted hum, bias drift, DC steps),
three amplifier front ends while off (railed, floating, zeroed), reattachment (DC step, settling
noise, crackle) and cable motion (taps, tugs, sway at walking cadence, coincident on the channels
of one cable), with spasms in and around them. Scored with ``detectors.scoring.score`` like
``bench_unseen.py``. Published events flagged ``artifact_suspect`` are false alarms like any other
in the headline (a clinician sees them); the table also gives the count without them.

Quality records are *exact* when, for every lead-off, the channel's non-ok reports form one span
that starts no earlier than the half contact begins and no later than 0.3 s after the electrode
is fully off, and ends within 0.1 s before to 0.5 s after reattachment; and no non-ok span is
reported anywhere else (a spasm or cable motion is never a quality gap).
"""

# ruff: noqa: E501  (report lines and scenario tables read better unwrapped)
from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import sys
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_detector import pooled
from unseen_rest import RestArtefactSpec, generate_rest

from detectors import DetectorConfig, QualityChange, SpasmDetector, SpasmEvent
from detectors.detector import feed_interleaved
from detectors.scoring import Interval, ScoreReport, format_table, score

SPECS: list[RestArtefactSpec] = [
    RestArtefactSpec("r1000_2ch floating, taps", 201, 600, 1000, 50, 2, "floating", lead_offs=6, taps_per_min=1.5),
    RestArtefactSpec("r2000_4ch railed, tugs+sway", 202, 600, 2000, 100, 4, "railed", lead_offs=6,
                     tugs_per_min=1.0, sway_per_min=0.4, mains_hz=60, full_scale_uv=5000.0, adc_bits=12),
    RestArtefactSpec("r512_1ch zeroed, taps+tugs", 203, 600, 512, 32, 1, "zeroed", lead_offs=5,
                     taps_per_min=1.0, tugs_per_min=1.0),
    RestArtefactSpec("r1500_3ch floating, sway", 204, 600, 1500, 104, 3, "floating", lead_offs=6,
                     sway_per_min=0.6, taps_per_min=0.5, mains_hz=60, mains_uv=15.0),
    RestArtefactSpec("r4000_2ch railed 12-bit, all", 205, 600, 4000, 200, 2, "railed", lead_offs=6,
                     taps_per_min=1.0, tugs_per_min=0.5, sway_per_min=0.3, full_scale_uv=6000.0, adc_bits=12),
    RestArtefactSpec("r1000_6ch floating, own cables", 206, 600, 1000, 50, 6, "floating", lead_offs=8,
                     taps_per_min=1.0, tugs_per_min=1.0, shared_cable=False),
]  # fmt: skip


def _overlap(a0: float, a1: float, b0: float, b1: float, pad: float = 0.5) -> bool:
    return a0 - pad <= b1 and b0 - pad <= a1


def cause(d: Interval, labels: list[dict[str, Any]]) -> str:
    """What a false alarm coincides with: the phase of a lead-off, cable motion, a spasm, rest."""
    for x in labels:
        if x["type"] == "lead_off" and x["channel"] == d.channel:
            if _overlap(d.onset_s, d.offset_s, x["begin_s"], x["onset_s"], 0.3):
                return "lead-off begins"
            if x["offset_s"] - 0.3 <= d.onset_s <= x["offset_s"] + 3.0:
                return "reattachment (< 3 s)"
            if x["offset_s"] + 3.0 < d.onset_s <= x["settle_end_s"] + 1.0:
                return "settling (> 3 s)"
    for x in labels:
        if x["type"] == "motion" and _overlap(d.onset_s, d.offset_s, x["onset_s"], x["offset_s"], 0.3):
            return f"cable {x['kind']}"
    for x in labels:
        if (
            x["type"] in ("twitch", "phasic", "tonic", "clonus")
            and x["channel"] == d.channel
            and _overlap(d.onset_s, d.offset_s, x["onset_s"], x["offset_s"])
        ):
            return f"split/extra of own {x['type']}"
    return "rest (unexplained)"


def quality_check(out: list[Any], labels: list[dict[str, Any]], rate: float, duration: float) -> list[str]:
    """Mismatches between the reported non-ok spans and the true lead-offs (empty = exact)."""
    spans: dict[str, list[list[float]]] = collections.defaultdict(list)
    for q in out:
        if not isinstance(q, QualityChange):
            continue
        t = q.sample / rate
        s = spans[q.channel]
        if q.state != "ok":
            if not s or s[-1][1] < 1e9:
                s.append([t, 1e18])
        elif s and s[-1][1] >= 1e9:
            s[-1][1] = t
    problems: list[str] = []
    used: set[tuple[str, int]] = set()
    for x in labels:
        if x["type"] != "lead_off":
            continue
        ch = x["channel"]
        mine = [
            (i, s)
            for i, s in enumerate(spans[ch])
            if s[0] <= x["settle_end_s"] and s[1] >= x["begin_s"] - 0.5
        ]
        used |= {(ch, i) for i, _ in mine}
        tag = f"{ch} lead-off {x['onset_s']:.1f}-{x['offset_s']:.1f}"
        if len(mine) != 1:
            problems.append(
                f"{tag}: {len(mine)} non-ok spans {[(round(a, 2), round(b, 2)) for _, (a, b) in mine]}"
            )
            continue
        a, b = mine[0][1]
        if not x["begin_s"] - 0.05 <= a <= x["onset_s"] + 0.3:
            problems.append(f"{tag}: reported from {a:.2f} (half contact from {x['begin_s']:.2f})")
        if not x["offset_s"] - 0.1 <= min(b, duration) <= x["offset_s"] + 0.5:
            problems.append(f"{tag}: reported until {b:.2f}")
    for ch, ss in spans.items():
        for i, (a, b) in enumerate(ss):
            if (ch, i) not in used:
                problems.append(f"{ch}: non-ok {a:.2f}-{b:.2f} with no lead-off")
    return problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--seed-offset", type=int, default=0, help="add this to every seed (held-out set)")
    ap.add_argument(
        "--guard-before", type=float, default=None,
        help="lead_off_guard_before_s for the run (default: the detector's default)",
    )  # fmt: skip
    args = ap.parse_args()
    cfg = (
        DetectorConfig()
        if args.guard_before is None
        else DetectorConfig(lead_off_guard_before_s=args.guard_before)
    )
    rows: list[tuple[str, ScoreReport]] = []
    causes: collections.Counter[str] = collections.Counter()
    near_tot: collections.Counter[str] = collections.Counter()
    near_hit: collections.Counter[str] = collections.Counter()
    n_flagged = n_flagged_true = n_quality_bad = n_lead_offs = 0
    for spec in SPECS:
        spec = dataclasses.replace(spec, seed=spec.seed + args.seed_offset)
        rec = generate_rest(spec)
        det = SpasmDetector(
            cfg, emg_rate_hz=rec.emg_rate_hz, channel_labels=rec.channel_labels,
            acc_rate_hz=rec.acc_rate_hz,
        )  # fmt: skip
        out = feed_interleaved(det, rec.emg_uv, rec.acc_g, rec.emg_rate_hz, rec.acc_rate_hz)
        events = [o for o in out if isinstance(o, SpasmEvent)]
        rep = score(events, rec.labels, rec.duration_s)
        rows.append((spec.name, rep))
        flagged = {
            (e.channel, round(e.onset_sample / e.rate_hz, 3))
            for e in events
            if getattr(e, "artifact_suspect", False)
        }
        n_flagged += len(flagged)
        n_flagged_true += sum(1 for _, d in rep.pairs if (d.channel, round(d.onset_s, 3)) in flagged)
        for d in rep.false:
            c = cause(d, rec.labels)
            f = " [flagged]" if (d.channel, round(d.onset_s, 3)) in flagged else ""
            causes[c + f] += 1
            if args.verbose:
                print(
                    f"  [{spec.name[:9]}] FALSE {d.type} {d.channel} {d.onset_s:.2f}-{d.offset_s:.2f} ({c}){f}"
                )
        found = {(lab.channel, lab.onset_s) for lab, _ in rep.pairs}
        for x in rec.labels:
            if x["type"] in ("twitch", "phasic", "tonic", "clonus"):
                near_tot[x["near"]] += 1
                hit = (x["channel"], x["onset_s"]) in found
                near_hit[x["near"]] += hit
                if args.verbose and not hit:
                    print(
                        f"  [{spec.name[:9]}] MISS  {x['type']} {x['channel']} {x['onset_s']:.2f}-{x['offset_s']:.2f} ({x['near']}, {x['peak_uv'] / x['rest_uv']:.0f}x rest)"
                    )
        probs = quality_check(out, rec.labels, rec.emg_rate_hz, rec.duration_s)
        n_lead_offs += sum(1 for x in rec.labels if x["type"] == "lead_off")
        n_quality_bad += len(probs)
        if args.verbose:
            for p in probs:
                print(f"  [{spec.name[:9]}] QUALITY {p}")
    print(format_table(rows))
    p = pooled(rows)
    fa_unflagged = p["false_alarms"] - sum(v for k, v in causes.items() if k.endswith("[flagged]"))
    print(
        f"pooled ({p['hours']:.2f} h, {sum(r.n_labels for _, r in rows)} labels): F1 {p['f1']:.3f}, sens {p['sensitivity']:.3f}, "
        f"prec {p['precision']:.3f}, type acc {p['type_accuracy']:.3f}, FA/h {p['false_alarms_per_hour']:.1f} "
        f"(unflagged {fa_unflagged / p['hours']:.1f}), median onset error {p['median_onset_error_ms']:.0f} ms"
    )
    print(f"flagged artifact_suspect: {n_flagged} published, {n_flagged_true} of them real spasms")
    print("\n| spasm situation | labels | found | sensitivity |\n|---|---|---|---|")
    for k in ("settling", "after settling", "before lead-off", "during motion", "clear"):
        if near_tot[k]:
            print(f"| {k} | {near_tot[k]} | {near_hit[k]} | {near_hit[k] / near_tot[k]:.3f} |")
    print(
        f"\nquality records: {n_lead_offs} lead-offs, {n_quality_bad} mismatches ({'exact' if not n_quality_bad else 'NOT exact'})"
    )
    print("false alarms: " + (", ".join(f"{k} x{v}" for k, v in causes.most_common()) or "none"))


if __name__ == "__main__":
    main()
