"""``neurospasm detect`` on long EDF+ files against BioSPPy's ``find_onsets`` on the same files, same run.

Not a test. Writes 20-minute EDF+ files (1, 2 and 4 sEMG channels at 1 and 2 kHz: resting EMG
with bursts and mains hum) to a temporary directory, then for each file:

* ``neurospasm detect FILE``: the whole process, as a user runs it (interpreter start-up, imports,
  EDF reading with pyedflib, the gateway's session and streaming detector, JSON output);
* BioSPPy: reading the same file with pyedflib, then ``biosppy.signals.emg.find_onsets`` on each
  channel, in this process (its import is not counted: generous to BioSPPy).

and prints both times, EMG samples/s and the ratio (BioSPPy time / detect time; the target is at
least 10x), in wall time and in CPU time (user + system: on a machine shared with other jobs the
wall-time ratio moves with their load, the CPU-time ratio much less). BioSPPy is in the ``bench`` extra: ``pip install -e '.[bench]'``::

    python bench/bench_detect_files.py [--minutes 20] [--repeat 1] [--profile]

``--profile`` runs the detect path of the largest file under cProfile in this process and prints
the top functions by cumulative time.

Then all six files in ONE process (``neurospasm detect F1 ... F6``, start-up paid once), reported
on its own line beside the one-process-per-file total (which is never replaced by it).

It also times ``neurospasm detect`` on a 2-second file (best of 3): the fixed cost of a process
(interpreter start-up and imports), which every file pays once, and how the ratio would read
without it (what is left is reading and detection, per sample).

The checkout's modules are byte-compiled first (``compileall``), as an installed copy's are
(pip compiles at install): with ``PYTHONDONTWRITEBYTECODE`` set, or a source edited since its
``.pyc`` was written, every timed process would otherwise compile it again (``detectors/detector.py``
alone is ~30 ms of CPU), which no user's run pays.

The detector's filter designs come from the user's design cache (``ingest.files.design_cache``:
a process that finds its designs there never imports scipy.signal). The bench gives its
processes a cache of their own (``XDG_CACHE_HOME`` in the temporary directory), times a process
with that cache empty first (the cost of the very first run on a machine: scipy.signal imported,
designs computed and stored), then fills it with a 2-s file at each sampling rate, so the timed runs see
what later runs see (a design only a long file needs is still computed, and counted, in its run).
"""

# ruff: noqa: E501  (report lines read better unwrapped)
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pyedflib
from scipy import signal

LAYOUTS = [(1, 1000), (2, 1000), (4, 1000), (1, 2000), (2, 2000), (4, 2000)]


def write_edf(path: Path, minutes: float, n_ch: int, rate: int, seed: int = 1) -> None:
    """Resting sEMG (3 uV) with a 150 uV, 300 ms burst every ~7 s per channel, plus 20 uV of 50 Hz."""
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * rate)
    sos = signal.butter(2, [40, min(150, rate / 2 - 1)], btype="bandpass", fs=rate, output="sos")
    x = signal.sosfilt(sos, rng.standard_normal((n, n_ch)), axis=0)
    x /= x.std(axis=0)
    env = np.full((n, n_ch), 3.0)
    burst = int(0.3 * rate)
    for c in range(n_ch):
        for t0 in range(int((1.5 + c) * rate), n - burst, int(7 * rate)):
            env[t0 : t0 + burst, c] += 150.0 * np.hanning(burst)
    x = x * env + 20.0 * np.sin(2 * np.pi * 50 * np.arange(n) / rate)[:, None]
    w = pyedflib.EdfWriter(str(path), n_ch, file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        w.setSignalHeaders(
            [
                {"label": f"EMG {c + 1}", "dimension": "uV", "sample_frequency": rate, "physical_min": -1000.0,
                 "physical_max": 1000.0, "digital_min": -32768, "digital_max": 32767, "transducer": "sEMG",
                 "prefilter": ""}
                for c in range(n_ch)
            ]
        )  # fmt: skip
        w.setStartdatetime(datetime(2026, 11, 1, 8, 0, 0))
        w.writeSamples([np.ascontiguousarray(x[:, c]) for c in range(n_ch)])
    finally:
        w.close()


def compile_sources() -> None:
    """Byte-compile this checkout's packages (what an install does), so no timed process
    compiles a module whose ``.pyc`` is missing or older than its source."""
    import compileall

    root = Path(__file__).resolve().parent.parent
    for package in ("ingest", "detectors", "firmware_sim", "dashboard"):
        if (root / package).is_dir():
            compileall.compile_dir(root / package, quiet=1)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


#: The environment of the timed processes (``main`` points XDG_CACHE_HOME at a private cache).
ENV = dict(os.environ)


def time_detect(*paths: Path) -> tuple[float, int, float]:
    """Wall time, events and CPU time (user + system) of one ``neurospasm detect`` process (on
    one file, or on several: ``neurospasm detect A B C``)."""
    t0 = time.perf_counter()
    c0 = _children_cpu()
    out = subprocess.run(
        [sys.executable, "-m", "ingest", "detect", *map(str, paths)], check=True, capture_output=True, env=ENV
    )
    return time.perf_counter() - t0, len(out.stdout.splitlines()), _children_cpu() - c0


def time_biosppy(path: Path) -> tuple[float, int, float]:
    """Wall time, onsets and CPU time of reading ``path`` and ``find_onsets`` on each channel."""
    from biosppy.signals import emg

    t0 = time.perf_counter()
    c0 = time.process_time()
    with pyedflib.EdfReader(str(path)) as r:
        rate = r.getSampleFrequency(0)
        chans = [r.readSignal(i) for i in range(r.signals_in_file)]
    onsets = 0
    for x in chans:
        (found,) = emg.find_onsets(signal=x, sampling_rate=rate)
        onsets += len(found)
    return time.perf_counter() - t0, onsets, time.process_time() - c0


def profile(path: Path) -> None:
    import cProfile
    import pstats

    from detectors import DetectorConfig
    from ingest.commands.offline import detect_signals
    from ingest.files.readers import read_recording

    prof = cProfile.Profile()
    prof.enable()
    sf = read_recording(path)
    detect_signals(sf, DetectorConfig())
    prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--repeat", type=int, default=1, help="runs per file (the best is kept)")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    try:
        import biosppy  # noqa: F401  (imported before timing: its import is not BioSPPy's work per file)
    except ImportError as exc:  # biosppy 2.2 also needs peakutils, which it does not declare
        raise SystemExit(
            f"bench_detect_files: BioSPPy is not importable ({exc}); install the bench extra: "
            ".venv/bin/pip install -e '.[bench]'"
        ) from None

    compile_sources()

    total_d = total_b = cpu_d = cpu_b = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        ENV["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")
        tiny = Path(tmp) / "tiny.edf"
        write_edf(tiny, 2 / 60, 1, 1000)
        wc, _, cc = time_detect(tiny)  # the cache is empty: scipy.signal imported, designs stored
        for rate in sorted({rate for _, rate in LAYOUTS}):
            warm = Path(tmp) / f"warm_{rate}.edf"
            write_edf(warm, 2 / 60, 1, rate)
            time_detect(warm)  # the designs at this rate (a later file may still add one)
        files = []
        for n_ch, rate in LAYOUTS:
            p = Path(tmp) / f"emg_{n_ch}ch_{rate}hz.edf"
            write_edf(p, args.minutes, n_ch, rate)
            files.append((p, n_ch, rate))
        print(
            f"{'file':<22} {'detect s':>9} {'events':>7} {'MS/s':>6} {'BioSPPy s':>10} {'onsets':>7} {'ratio':>6}"
        )
        for p, n_ch, rate in files:
            d, events, dc = min(time_detect(p) for _ in range(args.repeat))
            b, onsets, bc = min(time_biosppy(p) for _ in range(args.repeat))
            total_d += d
            total_b += b
            cpu_d += dc
            cpu_b += bc
            samples = args.minutes * 60 * rate * n_ch
            print(
                f"{p.name:<22} {d:9.2f} {events:7d} {samples / d / 1e6:6.2f} {b:10.2f} {onsets:7d} {b / d:5.1f}x  (CPU {bc / dc:5.1f}x)"
            )
        print(
            f"one process per file: detect {total_d:.1f} s, BioSPPy find_onsets {total_b:.1f} s: detect is {total_b / total_d:.1f}x BioSPPy (target >= 10x); "
            f"CPU time (user + system, robust to other load on the machine): detect {cpu_d:.1f} s, BioSPPy "
            f"{cpu_b:.1f} s: {cpu_b / cpu_d:.1f}x"
        )
        all_paths = [p for p, _, _ in files]
        w1, ev1, c1 = min(time_detect(*all_paths) for _ in range(args.repeat))
        print(
            f"one process for all {len(all_paths)} files (neurospasm detect {' '.join(p.name for p in all_paths)}): "
            f"detect {w1:.1f} s ({ev1} events), {total_b / w1:.1f}x BioSPPy; CPU {c1:.1f} s, {cpu_b / c1:.1f}x"
        )
        w0, _, c0 = min(time_detect(tiny) for _ in range(3))
        n = len(files)
        print(
            f"start-up, design cache empty (the first run on a machine): {wc:.2f} s ({cc:.2f} s CPU) on a 2-s file"
        )
        print(
            f"start-up: a process on a 2-s file takes {w0:.2f} s ({c0:.2f} s CPU); the {n} files pay it {n} times "
            f"({n * c0 / cpu_d:.0%} of detect's CPU time); without it detect is "
            f"{total_b / max(total_d - n * w0, 1e-9):.1f}x BioSPPy ({cpu_b / max(cpu_d - n * c0, 1e-9):.1f}x in CPU time)"
        )
        if args.profile:
            profile(files[-1][0])


if __name__ == "__main__":
    main()
