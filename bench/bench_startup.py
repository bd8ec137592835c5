"""Start-up time of the command line: ``neurospasm --help`` against ``python -c pass``, same run.

Not a test. Each command is run ``--runs`` times as a fresh process, interleaved so machine load
hits both alike; the medians and their ratio are printed, with the budget (0.5 s for --help)::

    python bench/bench_startup.py [--runs 15]

``python -X importtime -m ingest --help`` shows what a slow start-up imports.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

BUDGET_S = 0.5
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "neurospasm --help": [sys.executable, "-m", "ingest", "--help"],
    "neurospasm detect --help": [sys.executable, "-m", "ingest", "detect", "--help"],
}


def _once(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, cmd in COMMANDS.items():
            times[name].append(_once(cmd))
    base = statistics.median(times["python -c pass"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(
            f"{name:<26} median {med * 1000:7.1f} ms  min {min(ts) * 1000:7.1f} ms  {med / base:5.1f}x python"
        )
    help_s = statistics.median(times["neurospasm --help"])
    verdict = "within" if help_s < BUDGET_S else "OVER"
    print(f"neurospasm --help: {help_s:.3f} s, {verdict} the {BUDGET_S:.1f} s budget")


if __name__ == "__main__":
    main()
