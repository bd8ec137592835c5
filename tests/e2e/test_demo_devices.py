"""``neurospasm demo --device myo``: the BLE personality on the in-process virtual radio, end to end.

The real demo process (embedded broker, real gateway over the real bleak front-end, SQLite store):
its summary must report detected events that an independent MQTT subscriber confirmed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_demo_with_a_myo_detects_and_publishes_events(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "ingest", "demo", "--device", "myo", "--plain", "--no-dashboard",
         "--speed", "3", "--duration", "6", "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "virtual BLE" in r.stdout and "8 EMG ch at 200 Hz" in r.stdout, r.stdout
    m = re.search(r"(\d+) frames, (\d+) events .*MQTT subscriber confirmed (\d+) events", r.stdout)
    assert m, r.stdout
    frames, events, confirmed = map(int, m.groups())
    assert frames > 1000 and events >= 2 and confirmed >= 2, r.stdout
