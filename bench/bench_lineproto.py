"""Line-protocol encoding rate: ``ingest.outputs.lineproto.encode_columns`` vs influxdb-client's Point API.

Not a test (tests never assert speed). Run from the repository root::

    python bench/bench_lineproto.py [--rows 100000] [--point-rows 20000] [--repeat 3]

Both encoders get the same data: ``--rows`` rows of 4 float fields (an EMG-envelope-like block, 50 Hz
timestamps) with the same measurement and tags. Point is timed on the first ``--point-rows`` rows
(it is slow; its per-line cost is constant, so lines/s extrapolates) and gets Python floats, its
fastest input. Each figure is the best of ``--repeat`` runs. Point's output is checked to equal ours
(exact mode) on the rows it encoded, so the comparison is like for like.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import numpy as np
from influxdb_client import Point

from ingest.outputs.lineproto import encode_columns

MEASUREMENT = "emg_envelope"
TAGS = {"device": "dev-0001", "channel": "ch1"}


def best_of(repeat: int, fn: Callable[[], object]) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--point-rows", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    n = args.rows
    fields = {k: np.abs(rng.normal(scale=80.0, size=n)) for k in ("uv", "uv_ch2", "uv_ch3", "uv_ch4")}
    ts = 1_700_000_000_000_000_000 + np.arange(n, dtype=np.int64) * 20_000_000

    t_exact, out_exact = best_of(args.repeat, lambda: encode_columns(MEASUREMENT, TAGS, fields, ts))
    t_fixed, out_fixed = best_of(
        args.repeat, lambda: encode_columns(MEASUREMENT, TAGS, fields, ts, decimals=3)
    )

    m = min(args.point_rows, n)
    cols = {k: v[:m].tolist() for k, v in fields.items()}
    tss = ts[:m].tolist()

    def with_point() -> list[str]:
        out = []
        for i in range(m):
            p = Point(MEASUREMENT)
            for k, v in TAGS.items():
                p = p.tag(k, v)
            for k, c in cols.items():
                p = p.field(k, c[i])
            out.append(p.time(tss[i]).to_line_protocol())
        return out

    t_point, point_lines = best_of(args.repeat, with_point)
    assert isinstance(out_exact, bytes) and isinstance(out_fixed, bytes)
    ours = out_exact.decode().split("\n")[:m]
    assert ours == point_lines, "exact mode must produce Point's lines"

    rate_point = m / t_point
    rate_exact = n / t_exact
    rate_fixed = n / t_fixed
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    print(f"data: {n} rows x {len(fields)} float fields (Point timed on {m} rows), best of {args.repeat}")
    print(f"Point API                  {rate_point:>12,.0f} lines/s")
    print(f"encode_columns exact       {rate_exact:>12,.0f} lines/s   ratio {rate_exact / rate_point:5.1f}x")
    print(f"encode_columns decimals=3  {rate_fixed:>12,.0f} lines/s   ratio {rate_fixed / rate_point:5.1f}x")
    print(f"bytes per line: exact {len(out_exact) / n:.1f}, decimals=3 {len(out_fixed) / n:.1f}")


if __name__ == "__main__":
    main()
