"""Score the detector on voluntary movement from the independent generator (``bench/unseen_voluntary.py``).

    python bench/bench_unseen_voluntary.py                  # per recording and per activity
    python bench/bench_unseen_voluntary.py -v               # list misses and false alarms
    python bench/bench_unseen_voluntary.py --seed-offset 7  # the same recipes, other seeds
    python bench/bench_unseen_voluntary.py --detector-config '{"own_part_ratio": 2.5}'  # other settings

The honest generalisation check of issue 9: other sensor placement (thigh), gait cadence, burst
shapes, kinematics and rates (EMG 1000/1024/1500 Hz, accelerometer 50/64/104 Hz) than
``firmware_sim``. Nothing in the detector is tuned on it. Detections inside a voluntary span match
no label and are false alarms (as in ``bench_activity.py``).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import sys
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_activity import print_report
from bench_detector import run_recording
from unseen_voluntary import SPECS, generate_voluntary

from detectors.scoring import ScoreReport, score
from ingest.commands.args import detector_config_json


def activity_at(labels: list[dict[str, Any]], t0: float, t1: float) -> str:
    for lab in labels:
        if lab["type"] == "voluntary" and lab["onset_s"] - 0.5 <= t1 and t0 <= lab["offset_s"] + 0.5:
            return str(lab["activity"])
    return "rest"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--seed-offset", type=int, default=0)
    ap.add_argument(
        "--detector-config", type=detector_config_json, default=None, metavar="JSON",
        help='detector settings, as for neurospasm detect: \'{"own_part_ratio": 2.5}\'',
    )  # fmt: skip
    args = ap.parse_args()
    cfg = args.detector_config
    rows: list[tuple[str, ScoreReport]] = []
    per_act: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    hours: collections.Counter[str] = collections.Counter()
    for spec in SPECS:
        spec = dataclasses.replace(spec, seed=spec.seed + args.seed_offset)
        rec = generate_voluntary(spec)
        evs = run_recording(rec, cfg)
        rep = score(evs, rec.labels, rec.duration_s)
        rows.append((spec.name, rep))
        labs = rec.labels
        for lab in labs:
            if lab["type"] == "voluntary":
                hours[lab["activity"]] += (lab["offset_s"] - lab["onset_s"]) / 3600
            else:
                per_act[activity_at(labs, lab["onset_s"], lab["offset_s"])]["labels"] += 1
        for lab, d in rep.pairs:
            a = activity_at(labs, lab.onset_s, lab.offset_s)
            per_act[a]["found"] += 1
            per_act[a]["typed"] += int(lab.type == d.type)
        for d in rep.false:
            per_act[activity_at(labs, d.onset_s, d.offset_s)]["false"] += 1
        if args.verbose:
            print(f"## {spec.name}")
            for lab in rep.missed:
                print("   MISSED", lab, activity_at(labs, lab.onset_s, lab.offset_s))
            for d in rep.false:
                print("   FALSE ", d, activity_at(labs, d.onset_s, d.offset_s))
            for lab, d in rep.pairs:
                if lab.type != d.type:
                    a = activity_at(labs, lab.onset_s, lab.offset_s)
                    print("   TYPED ", lab.type, "->", d.type, lab, d, a)
    print_report(rows, per_act, hours)


if __name__ == "__main__":
    main()
