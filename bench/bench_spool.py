"""Spool costs on this machine's disk: append rate per fsync policy, drain rate, recovery time.

Not a test. Run from the repository root (uses a temporary directory on the file system of
``--dir``, default the system temp dir; point it at the gateway's real spool disk to size things)::

    python bench/bench_spool.py [--dir /var/lib/neurospasm] [--records 20000] [--payload 600]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ingest.outputs.spool import Priority, Spool


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--always-records", type=int, default=500, help="fewer: one fdatasync each")
    ap.add_argument("--payload", type=int, default=600, help="bytes; ~5 envelope lines of line protocol")
    args = ap.parse_args()
    payload = b"x" * args.payload
    prios = [Priority.BULK, Priority.BULK, Priority.RAW, Priority.CLINICAL]

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for policy in ("never", "batch", "always"):
            n = args.always_records if policy == "always" else args.records
            d = Path(tmp) / policy
            with Spool(d, quota_bytes=1 << 34, fsync=policy) as sp:
                t0 = time.perf_counter()
                for i in range(n):
                    sp.append("influx", prios[i % 4], payload)
                sp.sync()
                dt = time.perf_counter() - t0
            print(f"append fsync={policy:<6} {n / dt:>10,.0f} records/s  {dt / n * 1e6:8.1f} µs/append")

        d = Path(tmp) / "never"
        t0 = time.perf_counter()
        with Spool(d, quota_bytes=1 << 34) as sp:
            t_open = time.perf_counter() - t0
            size = sp.stats().bytes
            t0 = time.perf_counter()
            drained = 0
            while batch := sp.peek("influx", 5000, 4 << 20):
                sp.ack("influx", batch)
                drained += len(batch)
            dt = time.perf_counter() - t0
        print(f"recovery (open) of {size / 1e6:.1f} MB: {t_open * 1e3:.0f} ms")
        print(f"drain (peek 5000 + ack)  {drained / dt:>10,.0f} records/s  ({size / dt / 1e6:.0f} MB/s)")


if __name__ == "__main__":
    main()
