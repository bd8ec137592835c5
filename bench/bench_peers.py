"""Peer comparison: our streaming detector vs BioSPPy and NeuroKit2 onset detection (a script, not a test).

    python bench/bench_peers.py          # all of it, ~2-4 min on 2 cores; tables for docs/detector.md

What is compared. The peers only say "active / not active" per channel: BioSPPy
(``biosppy.signals.emg.emg`` = 100 Hz high-pass + ``find_onsets``) and NeuroKit2
(``neurokit2.emg_process``: ``EMG_Onsets`` / ``EMG_Offsets``). Each of their per-channel intervals
becomes a detection of type ``"unknown"`` and is scored with the project scorer
(``detectors.scoring.score``, same collars and Hungarian matching as ``bench_detector.py --score``) on
detection only: sensitivity, precision, F1, false alarms per hour, median onset error. Our detector's
events are scored the same detection-only way (type dropped), with its type accuracy beside.

Scenarios: the EMG scenarios of ``bench_detector.py`` (``demo``, ``sci_clean_2k``, ``sci_noisy_1024``,
``sci_4k``) and the two EMG ``--robust`` ones (``rest6_xt10_1024``, ``rest1_wander_4k``). Left out:
the tremor scenarios (tremor is an accelerometer event; the peers read EMG only) and
``voluntary_2k`` (out of scope for every method).

Configurations. Each peer runs once with its documented defaults, and once "tuned": a small grid
(``BIOSPPY_GRID``, ``NK_GRID``) searched for the best detection F1 on ONE scenario (``TUNE_ON``,
the clean one), then applied unchanged to all. Thresholds in the grid are relative to a robust
per-channel statistic (a multiple of the median), since an absolute level in uV cannot carry over
between electrodes and patients; window sizes are in seconds, so they scale with the sample rate.

Speed: every method runs per channel on the whole recording (they are offline, whole-signal
methods); ours is fed in 50 ms chunks, EMG and accelerometer interleaved, as in
``bench_detector.py`` (its time includes the accelerometer, samples count EMG only). Samples/s per
core = EMG samples x channels / wall time, single-threaded BLAS/OpenMP, all in the same run.
``emg_process`` ends with a per-sample pandas loop that only reformats its output; it is timed as
shipped on ``SPEED_AS_SHIPPED_ON`` (where its ``EMG_Onsets``/``EMG_Offsets`` are checked equal to
ours of the same computation), and the scored rows use that computation without the loop
(``neurokit2.emg_clean`` + ``emg_amplitude`` + the activation step of ``emg_activation``).
"""

# ruff: noqa: E501  (report lines and tables read better unwrapped)
from __future__ import annotations

import os

# One thread per process: the figures are "per core", and the machine is shared.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_detector import ROBUST, SCENARIOS, run_recording  # noqa: E402

from detectors import DetectorConfig, SpasmDetector  # noqa: E402
from detectors.events import SPASM_TYPES  # noqa: E402
from detectors.scoring import Interval, ScoreReport, event_interval, score  # noqa: E402

SCENARIO_NAMES = ["demo", "sci_clean_2k", "sci_noisy_1024", "sci_4k", "rest6_xt10_1024", "rest1_wander_4k"]
#: The one scenario the tuned peer settings are chosen on (clean, 4 ch, 2 kHz, 91 labels).
TUNE_ON = "sci_clean_2k"
#: Where ``neurokit2.emg_process`` is timed as shipped (its per-sample loop is ~15 us/sample).
SPEED_AS_SHIPPED_ON = "demo"
#: BioSPPy tuned grid: find_onsets window (s) x threshold as a multiple of median(|filtered|).
BIOSPPY_GRID = {
    "size_s": [0.05, 0.1, 0.2, 0.3],
    "k_median": [2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0],
}
#: NeuroKit2 tuned grid: activation method x its threshold x duration_min (s).
#: "threshold": amplitude > k x median(EMG_Amplitude); "mixture": P(active) >= p (GMM).
NK_GRID: dict[str, Any] = {
    "threshold": {
        "k_median": [2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0],
        "duration_min_s": [0.05, 0.1],
    },
    "mixture": {"p": [0.33, 0.5, 0.8, 0.95], "duration_min_s": [0.05, 0.1]},
}
INSTALL_HINT = "pip install '.[bench]'  (or: pip install 'biosppy>=2,<3' peakutils 'neurokit2>=0.2,<0.3')"


def _require_peers() -> tuple[Any, Any, Any, Any]:
    """Import the peers or stop with a message that says what is missing and how to get it."""
    try:
        import biosppy.signals.emg as b_emg
        import biosppy.signals.tools as b_tools
    except ImportError as exc:  # biosppy 2.2 also needs peakutils, which it does not declare
        raise SystemExit(
            f"bench_peers: BioSPPy is not importable ({exc}); install it: {INSTALL_HINT}"
        ) from None
    try:
        import neurokit2 as nk

        # the module (``neurokit2.emg.emg_activation`` as an attribute is the re-exported function)
        nk_act = importlib.import_module("neurokit2.emg.emg_activation")
    except ImportError as exc:
        raise SystemExit(
            f"bench_peers: NeuroKit2 is not importable ({exc}); install it: {INSTALL_HINT}"
        ) from None
    for private in ("_emg_activation_threshold", "_emg_activation_mixture", "_emg_activation_activations"):
        if not hasattr(nk_act, private):
            raise SystemExit(
                f"bench_peers: neurokit2 {nk.__version__} has no neurokit2.emg.emg_activation.{private}; "
                "this bench was written for neurokit2 0.2.x"
            )
    return b_emg, b_tools, nk, nk_act


B_EMG, B_TOOLS, NK, NK_ACT = _require_peers()

# A detector of one channel: (signal in uV, rate) -> ([(onset_sample, offset_sample)], seconds spent
# in the peer's own code). Verification work done to read a peer's output reliably is not timed.
ChannelDetector = Callable[[np.ndarray, float], tuple[list[tuple[int, int]], float]]


# ------------------------------------------------------------------------------------ BioSPPy
def _crossings(env: np.ndarray, thr: float) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """``find_onsets``' crossing rule on its smoothed envelope, with directions: returns the index
    set ``find_onsets`` returns (the last sample below before each rise, the first below after each
    fall) and the active intervals. ``find_onsets`` itself returns only the merged, sorted index set,
    which cannot be paired reliably (a one-sample dip below threshold is one index for both a fall
    and a rise), so the intervals are taken from here and the index set is checked against it."""
    above = env > thr
    d = np.flatnonzero(above[1:] != above[:-1])  # change between d and d+1
    rises = d[~above[d]]  # above[d+1]: d is the last sample below
    falls = d[above[d]] + 1  # first sample below
    idx = np.union1d(rises, falls)
    starts = list(rises + 1)
    if above[0]:
        starts.insert(0, 0)
    ends = list(falls)
    if above[-1]:
        ends.append(len(env))
    return idx, [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def _biosppy_filter(x: np.ndarray, fs: float) -> np.ndarray:
    """The filter of ``biosppy.signals.emg.emg``: Butterworth order 4, 100 Hz high-pass, zero phase."""
    filtered, _, _ = B_TOOLS.filter_signal(
        signal=x, ftype="butter", band="highpass", order=4, frequency=100, sampling_rate=fs
    )
    return np.asarray(filtered)


def _biosppy_env(f: np.ndarray, fs: float, size_s: float) -> np.ndarray:
    """``find_onsets``' envelope: rectified, ``boxzen`` smoother of ``int(rate x size)`` samples."""
    return np.asarray(
        B_TOOLS.smoother(signal=np.abs(f), kernel="boxzen", size=int(fs * size_s), mirror=True)[0]
    )


def _biosppy_checked(
    f: np.ndarray, fs: float, size_s: float, thr: float | None, got: np.ndarray, where: str
) -> list[tuple[int, int]]:
    env = _biosppy_env(f, fs, size_s)
    if thr is None:  # find_onsets' default
        thr = 1.2 * float(np.mean(env)) + 2.0 * float(np.std(env, ddof=1))
    idx, iv = _crossings(env, thr)
    if not np.array_equal(np.asarray(got, dtype=np.int64), idx):
        raise SystemExit(
            f"bench_peers: {where}: find_onsets returned {len(got)} crossings, its rule re-applied {len(idx)}; this biosppy version differs"
        )
    return iv


def biosppy_default(x: np.ndarray, fs: float) -> tuple[list[tuple[int, int]], float]:
    """``biosppy.signals.emg.emg`` as documented: 100 Hz high-pass + ``find_onsets`` (size 0.05 s,
    threshold 1.2 x mean + 2 x std of the whole smoothed envelope). Timed: that call only."""
    t = time.perf_counter()
    out = B_EMG.emg(signal=x, sampling_rate=fs, show=False)
    dt = time.perf_counter() - t
    return _biosppy_checked(np.asarray(out["filtered"]), fs, 0.05, None, out["onsets"], "emg()"), dt


def biosppy_tuned(size_s: float, k_median: float) -> ChannelDetector:
    def run(x: np.ndarray, fs: float) -> tuple[list[tuple[int, int]], float]:
        t = time.perf_counter()
        f = _biosppy_filter(x, fs)
        thr = k_median * float(np.median(np.abs(f)))
        (tr,) = B_EMG.find_onsets(signal=f, sampling_rate=fs, size=size_s, threshold=thr)
        dt = time.perf_counter() - t
        return _biosppy_checked(f, fs, size_s, thr, tr, "find_onsets()"), dt

    return run


# ---------------------------------------------------------------------------------- NeuroKit2
def _nk_front(x: np.ndarray, fs: float) -> np.ndarray:
    clean = NK.emg_clean(x, sampling_rate=fs)
    return np.asarray(NK.emg_amplitude(clean))


def _nk_intervals(activity: Any, fs: float, duration_min_s: float | None) -> list[tuple[int, int]]:
    dmin = int(0.05 * fs) if duration_min_s is None else int(duration_min_s * fs)
    info = NK_ACT._emg_activation_activations(np.asarray(activity), duration_min=dmin)
    return [(int(a), int(b)) for a, b in zip(info["EMG_Onsets"], info["EMG_Offsets"], strict=False)]


def nk_default(x: np.ndarray, fs: float) -> tuple[list[tuple[int, int]], float]:
    """``emg_process`` defaults (cleaning "biosppy", activation "threshold" at 0.1 x std of the
    amplitude, duration_min 0.05 s), without the output-formatting loop."""
    t = time.perf_counter()
    amp = _nk_front(x, fs)
    iv = _nk_intervals(NK_ACT._emg_activation_threshold(amp, threshold="default"), fs, None)
    return iv, time.perf_counter() - t


def _nk_activation(amp: np.ndarray, method: str, level: float) -> np.ndarray | None:
    if method == "threshold":
        thr = level * float(np.median(amp))
        if thr > float(np.max(amp)):
            return None  # NeuroKit2 raises here; for a channel at rest it means "nothing active"
        return np.asarray(NK_ACT._emg_activation_threshold(amp, threshold=thr))
    return np.asarray(NK_ACT._emg_activation_mixture(amp, threshold=level))


def _nk_mixture_proba(amp: np.ndarray) -> np.ndarray:
    """P(active) per sample exactly as ``neurokit2.signal.signal_binarize(method="mixture")`` computes
    it before thresholding (grid search only; the reported rows call NeuroKit2)."""
    import sklearn.mixture

    clf = sklearn.mixture.GaussianMixture(n_components=2, random_state=333).fit(amp.reshape(-1, 1))
    return np.asarray(clf.predict_proba(amp.reshape(-1, 1))[:, int(np.argmax(clf.means_[:, 0]))])


def nk_tuned(method: str, level: float, duration_min_s: float) -> ChannelDetector:
    def run(x: np.ndarray, fs: float) -> tuple[list[tuple[int, int]], float]:
        t = time.perf_counter()
        act = _nk_activation(_nk_front(x, fs), method, level)
        iv = [] if act is None else _nk_intervals(act, fs, duration_min_s)
        return iv, time.perf_counter() - t

    return run


def nk_process_kwargs(
    method: str, level: float, duration_min_s: float, amp: np.ndarray, fs: float
) -> dict[str, Any]:
    """The ``emg_process`` keyword arguments that reproduce a tuned setting on one channel."""
    thr = level * float(np.median(amp)) if method == "threshold" else level
    return {"method_activation": method, "threshold": thr, "duration_min": int(duration_min_s * fs)}


# ------------------------------------------------------------------------------------ scoring
@dataclass
class Row:
    """One method on one scenario."""

    report: ScoreReport
    seconds: float
    samples: int
    typed: ScoreReport | None = None


@dataclass
class Method:
    name: str
    rows: dict[str, Row] = field(default_factory=dict)


def load(name: str) -> Any:
    from firmware_sim.scenario import builtin_scenario, parse_scenario
    from firmware_sim.signals import synthesize

    if name == "demo":
        return synthesize(builtin_scenario(name))
    return synthesize(parse_scenario({"name": name, **(SCENARIOS.get(name) or ROBUST[name])}, name))


def peer_intervals(det: ChannelDetector, rec: Any) -> tuple[list[Interval], float]:
    """Run a per-channel detector over the whole recording; detections of type "unknown"."""
    fs = float(rec.emg_rate_hz)
    out: list[Interval] = []
    total = 0.0
    for c, label in enumerate(rec.channel_labels):
        x = np.ascontiguousarray(rec.emg_uv[:, c], dtype=np.float64)
        iv, dt = det(x, fs)
        total += dt
        out += [Interval("unknown", label, a / fs, b / fs) for a, b in iv if b > a]
    return out, total


def ours(rec: Any) -> tuple[list[Interval], list[Interval], float]:
    t = time.perf_counter()
    events = run_recording(rec)
    dt = time.perf_counter() - t
    typed = [event_interval(e) for e in events if e.domain == "emg"]
    return [Interval("unknown", e.channel, e.onset_s, e.offset_s) for e in typed], typed, dt


def ours_emg_only_seconds(rec: Any, chunk_s: float = 0.05) -> float:
    """Our detector on the EMG alone (no accelerometer), same 50 ms chunks: speed only."""
    det = SpasmDetector(
        DetectorConfig(), emg_rate_hz=float(rec.emg_rate_hz), channel_labels=list(rec.channel_labels)
    )
    emg = np.asarray(rec.emg_uv, dtype=np.float64)
    step = max(1, int(chunk_s * rec.emg_rate_hz))
    t = time.perf_counter()
    for i in range(0, emg.shape[0], step):
        det.feed_emg(i, emg[i : i + step])
    det.finish()
    return time.perf_counter() - t


def pooled(rows: Sequence[Row]) -> dict[str, float]:
    """Micro-average over scenarios: pooled matches, labels, detections, hours, onset errors."""
    tp = sum(r.report.matched for r in rows)
    nl = sum(r.report.n_labels for r in rows)
    nd = sum(r.report.n_detections for r in rows)
    fa = sum(r.report.false_alarms for r in rows)
    hours = sum(r.report.duration_s for r in rows) / 3600.0
    errs = [abs(d.onset_s - lab.onset_s) for r in rows for lab, d in r.report.pairs]
    sens = tp / nl if nl else math.nan
    prec = tp / nd if nd else math.nan
    f1 = 2 * sens * prec / (sens + prec) if nd and tp else 0.0
    typed = [r.typed for r in rows if r.typed is not None]
    tacc = (
        sum(1 for t in typed for lab, d in t.pairs if lab.type == d.type) / sum(t.matched for t in typed)
        if typed
        else math.nan
    )
    per_type = {
        t: sum(1 for r in rows for lab, _ in r.report.pairs if lab.type == t)
        / max(
            1,
            sum(
                1
                for r in rows
                for lab in (*(p[0] for p in r.report.pairs), *r.report.missed)
                if lab.type == t
            ),
        )
        for t in SPASM_TYPES
        if t != "tremor"
    }
    return {
        "f1": f1, "sens": sens, "prec": prec, "fa_h": fa / hours if hours else math.nan, "fa": fa,
        "onset_ms": 1000 * float(np.median(errs)) if errs else math.nan, "type_acc": tacc,
        "labels": nl, "dets": nd, "hours": hours,
        "msps": sum(r.samples for r in rows) / sum(r.seconds for r in rows) / 1e6,
        **{f"sens_{t}": v for t, v in per_type.items()},
    }  # fmt: skip


# ------------------------------------------------------------------------------------- tuning
#: (family, F1 on TUNE_ON, settings) of every grid point, for the report.
GRID_LOG: list[tuple[str, float, dict[str, float]]] = []


def tune_biosppy(rec: Any) -> tuple[dict[str, float], float]:
    fs = float(rec.emg_rate_hz)
    filtered = [
        _biosppy_filter(np.asarray(rec.emg_uv[:, c], dtype=np.float64), fs)
        for c in range(rec.emg_uv.shape[1])
    ]
    best: tuple[float, dict[str, float]] = (-1.0, {})
    for size_s in BIOSPPY_GRID["size_s"]:
        envs = [_biosppy_env(f, fs, size_s) for f in filtered]
        for k in BIOSPPY_GRID["k_median"]:
            dets: list[Interval] = []
            for c, (f, env) in enumerate(zip(filtered, envs, strict=True)):
                thr = k * float(np.median(np.abs(f)))
                for a, b in _crossings(env, thr)[1]:
                    if b > a:
                        dets.append(Interval("unknown", rec.channel_labels[c], a / fs, b / fs))
            f1 = score(dets, rec.labels, rec.duration_s).f1
            GRID_LOG.append(("BioSPPy", f1, {"size_s": size_s, "k_median": k}))
            if f1 > best[0]:
                best = (f1, {"size_s": size_s, "k_median": k})
    return best[1], best[0]


def tune_nk(rec: Any) -> tuple[dict[str, Any], float]:
    fs = float(rec.emg_rate_hz)
    amps = [_nk_front(np.asarray(rec.emg_uv[:, c], dtype=np.float64), fs) for c in range(rec.emg_uv.shape[1])]
    best: tuple[float, dict[str, Any]] = (-1.0, {})
    proba: list[np.ndarray] = []
    for method, grid in NK_GRID.items():
        levels = grid["k_median"] if method == "threshold" else grid["p"]
        if method == "mixture":  # the GMM fit (~5 s per channel) does not depend on the level
            proba = [_nk_mixture_proba(a) for a in amps]
        for level in levels:
            if method == "mixture":
                acts: list[np.ndarray | None] = [(pr >= level).astype(np.float64) for pr in proba]
            else:
                acts = [_nk_activation(a, method, level) for a in amps]
            for dmin in grid["duration_min_s"]:
                dets: list[Interval] = []
                for c, act in enumerate(acts):
                    if act is not None:
                        dets += [
                            Interval("unknown", rec.channel_labels[c], a / fs, b / fs)
                            for a, b in _nk_intervals(act, fs, dmin)
                            if b > a
                        ]
                f1 = score(dets, rec.labels, rec.duration_s).f1
                GRID_LOG.append((f"NeuroKit2 {method}", f1, {"level": level, "duration_min_s": dmin}))
                if f1 > best[0]:
                    best = (f1, {"method": method, "level": level, "duration_min_s": dmin})
    return best[1], best[0]


# -------------------------------------------------------------------------------------- main
def time_emg_process(rec: Any, settings: dict[str, Any] | None) -> tuple[float, int]:
    """``neurokit2.emg_process`` exactly as shipped, per channel; checks its onsets/offsets equal
    the loop-free computation used for scoring. Returns (seconds, samples)."""
    fs = float(rec.emg_rate_hz)
    total = 0.0
    for c in range(rec.emg_uv.shape[1]):
        x = np.ascontiguousarray(rec.emg_uv[:, c], dtype=np.float64)
        if settings is None:
            kwargs: dict[str, Any] = {}
            fast = nk_default(x, fs)[0]
        else:
            amp = _nk_front(x, fs)
            kwargs = nk_process_kwargs(
                settings["method"], settings["level"], settings["duration_min_s"], amp, fs
            )
            fast = nk_tuned(settings["method"], settings["level"], settings["duration_min_s"])(x, fs)[0]
        t = time.perf_counter()
        try:
            _, info = NK.emg_process(x, sampling_rate=int(fs), **kwargs)
            got = [(int(a), int(b)) for a, b in zip(info["EMG_Onsets"], info["EMG_Offsets"], strict=False)]
        except ValueError:  # threshold above the channel's maximum: NeuroKit2 refuses; we say "none"
            got = []
        total += time.perf_counter() - t
        if got != fast:
            raise SystemExit(
                f"bench_peers: emg_process({kwargs}) on {rec.scenario_name} channel {c} gave {len(got)} intervals, "
                f"the loop-free path {len(fast)}: the shortcut no longer matches this neurokit2 version"
            )
    return total, rec.emg_uv.shape[0] * rec.emg_uv.shape[1]


def _fmt(v: float, spec: str) -> str:
    return "-" if isinstance(v, float) and math.isnan(v) else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--scenario", action="append", help=f"only these scenarios (default: {', '.join(SCENARIO_NAMES)})"
    )
    ap.add_argument("-v", "--verbose", action="store_true", help="print missed labels and false alarms")
    args = ap.parse_args()
    names = args.scenario or SCENARIO_NAMES
    warnings.simplefilter("ignore", FutureWarning)  # pandas deprecations inside neurokit2
    t_start = time.perf_counter()
    from importlib.metadata import version  # biosppy 2.2.4's own __version__ still says 2.1.2

    print(
        ", ".join(
            f"{p} {version(p)}" for p in ("neurokit2", "biosppy", "numpy", "scipy", "pandas", "scikit-learn")
        )
    )

    recs = {n: load(n) for n in sorted(set(names) | {TUNE_ON, SPEED_AS_SHIPPED_ON})}
    b_set, b_f1 = tune_biosppy(recs[TUNE_ON])
    n_set, n_f1 = tune_nk(recs[TUNE_ON])
    print(
        f"tuned on {TUNE_ON}: BioSPPy {b_set} (F1 {b_f1:.3f}); NeuroKit2 {n_set} (F1 {n_f1:.3f})  [{time.perf_counter() - t_start:.0f} s]"
    )

    for fam in dict.fromkeys(f for f, _, _ in GRID_LOG):
        pts = sorted((p for p in GRID_LOG if p[0] == fam), key=lambda p: -p[1])
        print(
            f"  grid {fam}: best "
            + "; ".join(f"{f1:.3f} {st}" for _, f1, st in pts[:3])
            + f" ({len(pts)} points)"
        )
    b_name = f"BioSPPy find_onsets, size {b_set['size_s']} s, thr {b_set['k_median']:g} x median|x|"
    if n_set["method"] == "threshold":
        n_name = f"NeuroKit2 threshold {n_set['level']:g} x median amplitude, duration_min {n_set['duration_min_s']} s"
    else:
        n_name = f"NeuroKit2 mixture p >= {n_set['level']:g}, duration_min {n_set['duration_min_s']} s"
    peers: list[tuple[Method, ChannelDetector]] = [
        (Method("BioSPPy emg() defaults"), biosppy_default),
        (Method(b_name + " (tuned)"), biosppy_tuned(b_set["size_s"], b_set["k_median"])),
        (Method("NeuroKit2 emg_process() defaults"), nk_default),
        (Method(n_name + " (tuned)"), nk_tuned(n_set["method"], n_set["level"], n_set["duration_min_s"])),
    ]
    us = Method("ours (streaming, 50 ms chunks)")
    emg_only_s = 0.0
    for name in names:
        rec = recs[name]
        samples = rec.emg_uv.shape[0] * rec.emg_uv.shape[1]
        det, typed, dt = ours(rec)
        emg_only_s += ours_emg_only_seconds(rec)
        us.rows[name] = Row(
            score(det, rec.labels, rec.duration_s), dt, samples, score(typed, rec.labels, rec.duration_s)
        )
        for m, fn in peers:
            dets, dt = peer_intervals(fn, rec)
            m.rows[name] = Row(score(dets, rec.labels, rec.duration_s), dt, samples)
        print(
            f"  {name}: {rec.emg_rate_hz} Hz x {len(rec.channel_labels)} ch, {rec.duration_s:.0f} s  [{time.perf_counter() - t_start:.0f} s]"
        )
    methods = [us, *(m for m, _ in peers)]

    # emg_process as shipped (with its per-sample output loop) on one small scenario
    shipped = {
        "default": time_emg_process(recs[SPEED_AS_SHIPPED_ON], None),
        "tuned": time_emg_process(recs[SPEED_AS_SHIPPED_ON], n_set),
    }

    print("\n### Per scenario: detection-only F1 (sens / prec), FA/h\n")
    print("| method | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for m in methods:
        cells = [
            f"{_fmt(r.report.f1, '.3f')} ({_fmt(r.report.sensitivity, '.2f')}/{_fmt(r.report.precision, '.2f')}), {r.report.false_alarms_per_hour:.0f}"
            for r in (m.rows[n] for n in names)
        ]
        print(f"| {m.name} | " + " | ".join(cells) + " |")

    held_out = [n for n in names if n != TUNE_ON]
    for title, subset in (
        (f"Pooled, all {len(names)} scenarios", names),
        (f"Pooled, held out (all but {TUNE_ON})", held_out),
    ):
        if not subset:
            continue
        print(f"\n### {title}\n")
        print(
            "| method | F1 | sens | prec | FA/h | onset err ms | sens twitch/phasic/tonic/clonus | type acc | M samples/s per core |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for m in methods:
            p = pooled([m.rows[n] for n in subset])
            st = "/".join(_fmt(p[f"sens_{t}"], ".2f") for t in ("twitch", "phasic", "tonic", "clonus"))
            print(
                f"| {m.name} | {_fmt(p['f1'], '.3f')} | {_fmt(p['sens'], '.3f')} | {_fmt(p['prec'], '.3f')} | {p['fa_h']:.0f} | "
                f"{_fmt(p['onset_ms'], '.0f')} | {st} | {_fmt(p['type_acc'], '.3f')} | {p['msps']:.2f} |"
            )
        print(
            f"\n({pooled([us.rows[n] for n in subset])['labels']} labels, {pooled([us.rows[n] for n in subset])['hours']:.2f} h)"
        )
    n_all = sum(us.rows[n].samples for n in names)
    print(
        f"ours, EMG only (no accelerometer), same chunks, all {len(names)} scenarios: {n_all / emg_only_s / 1e6:.2f} M samples/s per core"
    )
    for key, (sec, n_samp) in shipped.items():
        print(
            f"NeuroKit2 emg_process() as shipped ({key}) on {SPEED_AS_SHIPPED_ON}: {n_samp / sec / 1e6:.3f} M samples/s per core (outputs checked equal)"
        )
    if args.verbose:
        for m in methods:
            for n in names:
                r = m.rows[n].report
                print(f"## {m.name} / {n}: missed {len(r.missed)}, false {len(r.false)}")
                for lab in r.missed:
                    print("   MISSED", lab)
                for d in r.false[:20]:
                    print("   FALSE ", d)
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
