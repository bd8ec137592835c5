"""Two detectors joining one stream at different moments report the same spasms with the same keys
(and so the gateway's event ids agree): the block grid lies on device counters, not on a session's
first sample. This is what lets a restarted gateway or a worker taking a device over publish ids
that consumers can deduplicate."""

from __future__ import annotations

import numpy as np
import pytest

from detectors import DetectorConfig, SpasmDetector, SpasmEvent
from firmware_sim.scenario import builtin_scenario
from firmware_sim.signals import synthesize

WARM_UP_S = 30.0


@pytest.fixture(scope="module")
def stream() -> tuple[np.ndarray, int, list[str]]:
    rec = synthesize(builtin_scenario("demo"))
    x = np.asarray(rec.emg_uv, dtype=np.float64)
    return np.concatenate([x, x]), rec.emg_rate_hz, list(rec.channel_labels)


def keys(stream: tuple[np.ndarray, int, list[str]], offset: int, chunk: int) -> set[str]:
    x, rate, labels = stream
    det = SpasmDetector(DetectorConfig(), emg_rate_hz=float(rate), channel_labels=labels)
    events: list[SpasmEvent] = []
    for i in range(offset, len(x), chunk):
        events += [o for o in det.feed_emg(i, x[i : i + chunk]) if isinstance(o, SpasmEvent)]
    events += [o for o in det.finish() if isinstance(o, SpasmEvent)]
    return {e.key for e in events if e.onset_sample >= WARM_UP_S * rate}


@pytest.mark.parametrize("offset_s", [0.0005, 3.3065, 10.0])
def test_late_joiner_reports_the_same_keys(
    stream: tuple[np.ndarray, int, list[str]], offset_s: float
) -> None:
    rate = stream[1]
    reference = keys(stream, 0, 700)
    assert len(reference) >= 10
    assert keys(stream, round(offset_s * rate), 333) == reference
