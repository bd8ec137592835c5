"""Dump every detector output on a fixed set of recordings, to prove a speed change changed nothing.

    python bench/detector_identity.py --dump before.txt     # before the change
    python bench/detector_identity.py --compare before.txt  # after it: exit 1 on any difference
    python bench/detector_identity.py --quick --dump a.txt  # fewer, shorter recordings

Recordings: every scenario ``bench_activity.py`` scores, ``bench_unseen_voluntary.py``'s recordings,
and at-rest ones (the ``demo`` scenario, shortened ``bench_detector.py`` scoring scenarios, the
speed bench's synthetic stream). Each is fed in 50 ms chunks (EMG and accelerometer interleaved,
as the gateway does) and in one chunk with the accelerometer; some also without it, and with
lost chunks (gaps: new segments). Every output is written as its ``repr`` (events with type,
context, confidence and onset, Onset notices, activity changes and spans, quality records), in
output order, under a header naming the recording and the feeding; a digest per run is printed.
Performance work must leave the dump byte-identical; a frozen file is not a test (use it only
to compare two builds of the code).
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from detectors import DetectorConfig, SpasmDetector
from detectors.detector import feed_interleaved


def _recordings(quick: bool) -> Iterator[tuple[str, Any, bool]]:
    """(name, recording, also EMG-only?) for every recording of the check."""
    import dataclasses

    import bench_activity
    import bench_detector
    from unseen_voluntary import SPECS, generate_voluntary

    from firmware_sim.scenario import builtin_scenario, parse_scenario
    from firmware_sim.signals import synthesize

    for i, name in enumerate(bench_activity.NAMES):
        if quick and i % 3:
            continue
        yield name, synthesize(builtin_scenario(name)), i % 2 == 0
    for i, spec in enumerate(SPECS):
        if quick and i % 2:
            continue
        if quick:
            spec = dataclasses.replace(spec, duration_s=min(spec.duration_s, 120.0))
        yield spec.name, generate_voluntary(spec), i == 0
    # at rest: spasms without voluntary movement (the common case at home)
    yield "demo", synthesize(builtin_scenario("demo")), True
    for name in ("sci_clean_2k", "sci_noisy_1024", "parkinson_500"):
        data = {"name": name, **bench_detector.SCENARIOS[name]}
        dur = data["duration_s"] = min(float(data["duration_s"]), 120.0 if quick else 620.0)
        # shortened: the confounders that would start after the end are left out
        data["confounders"] = [c for c in data.get("confounders", []) if c.get("onset_s", 0.0) < dur]
        yield name, synthesize(parse_scenario(data, name)), name == "sci_noisy_1024"
    yield "speed_synthetic", _SpeedRec(30.0 if quick else 60.0), True


class _SpeedRec:
    """The speed bench's synthetic stream (8 ch x 2 kHz at rest with bursts, 100 Hz resting acc)."""

    def __init__(self, seconds: float) -> None:
        import bench_detector

        self.emg_rate_hz = 2000
        self.acc_rate_hz = 100
        self.channel_labels = [f"EMG {i}" for i in range(8)]
        self.emg_uv = bench_detector._synthetic(int(seconds * 2000), 8, 2000.0)
        rng = np.random.default_rng(2)
        self.acc_g = rng.normal(0, 0.005, (int(seconds * 100), 3)) + np.array([0, 0, 1.0])


def _run(rec: Any, with_acc: bool, chunk_s: float, gaps: bool = False) -> list[str]:
    det = SpasmDetector(
        DetectorConfig(), emg_rate_hz=float(rec.emg_rate_hz), channel_labels=list(rec.channel_labels),
        acc_rate_hz=float(rec.acc_rate_hz) if with_acc else None,
    )  # fmt: skip
    emg = np.asarray(rec.emg_uv, dtype=np.float64)
    acc = np.asarray(rec.acc_g, dtype=np.float64) if with_acc else None
    if gaps:
        out = _feed_with_gaps(det, emg, acc, rec.emg_rate_hz, rec.acc_rate_hz if with_acc else None, chunk_s)
    else:
        out = feed_interleaved(det, emg, acc, rec.emg_rate_hz, rec.acc_rate_hz if with_acc else None, chunk_s)
    return [repr(o) for o in out] + [f"voluntary_bursts={det.voluntary_bursts}"]


def _feed_with_gaps(
    det: SpasmDetector, emg: np.ndarray, acc: np.ndarray | None, fs: float, fa: float | None, chunk_s: float
) -> list[Any]:
    """Like ``feed_interleaved``, but the chunks of one second in every 20 s (EMG) and in every 15 s
    (accelerometer) are lost: the detector sees the jumps in the counters (new segments)."""
    es = max(1, int(chunk_s * fs))
    as_ = max(1, int(chunk_s * fa)) if acc is not None and fa else 0
    n_acc = acc.shape[0] if acc is not None and as_ else 0
    out: list[Any] = []
    i = j = 0
    while i < emg.shape[0] or j < n_acc:
        if i < emg.shape[0]:
            if not 10.0 <= (i / fs) % 20.0 < 11.0:
                out += det.feed_emg(i, emg[i : i + es])
            i += es
        if j < n_acc:
            assert acc is not None and fa
            upto = n_acc if i >= emg.shape[0] else max(j + 1, round(i * fa / fs))
            if not 5.0 <= (j / fa) % 15.0 < 6.0:
                out += det.feed_acc(j, acc[j:upto])
            j = upto
    return out + det.finish()


def dump(quick: bool) -> list[str]:
    lines: list[str] = []
    for name, rec, emg_only in _recordings(quick):
        dur = np.asarray(rec.emg_uv).shape[0] / rec.emg_rate_hz
        feeds = [(True, 0.05, False), (True, dur + 1.0, False)]
        if emg_only:
            feeds += [(False, 0.05, False), (False, dur + 1.0, False), (True, 0.05, True)]
        for with_acc, chunk_s, gaps in feeds:
            t = time.perf_counter()
            got = _run(rec, with_acc, chunk_s, gaps)
            how = f"{'acc' if with_acc else 'emg-only'} {'50 ms chunks' if chunk_s == 0.05 else 'one chunk'}"
            how += " + gaps" if gaps else ""
            digest = hashlib.sha256("\n".join(got).encode()).hexdigest()[:16]
            print(f"{name:55s} {how:24s} {len(got):5d} outputs  {digest}  ({time.perf_counter() - t:.1f} s)")
            lines.append(f"### {name} | {how} | {len(got)} outputs")
            lines += got
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dump", metavar="FILE", help="write the outputs to FILE")
    ap.add_argument("--compare", metavar="FILE", help="compare the outputs with FILE (exit 1 if they differ)")
    ap.add_argument("--quick", action="store_true", help="fewer, shorter recordings")
    args = ap.parse_args()
    lines = dump(args.quick)
    if args.dump:
        with open(args.dump, "w") as f:
            f.write("\n".join(lines) + "\n")
    if args.compare:
        with open(args.compare) as f:
            ref = f.read().splitlines()
        if ref == lines:
            print(f"identical to {args.compare}: {len(lines)} lines")
            return
        diff = list(difflib.unified_diff(ref, lines, args.compare, "now", lineterm="", n=1))
        print("\n".join(diff[:200]))
        print(f"DIFFERENT from {args.compare} ({len(diff)} diff lines)")
        sys.exit(1)


if __name__ == "__main__":
    main()
