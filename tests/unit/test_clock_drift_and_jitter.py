"""Issue 5: with 200 ppm clock drift and 20 ms arrival jitter, every sample timestamp stays within
5 ms of the truth over an hour of simulated time (the simulator's offline twin, replayed fast,
through the real decoder and device session)."""

from __future__ import annotations

import numpy as np
import pytest

from firmware_sim.device import SignalSource, SimDevice
from firmware_sim.faults import FaultInjector, simulate
from firmware_sim.scenario import parse_scenario
from firmware_sim.signals import synthesize
from ingest.stream.session import DeviceSession, Output
from ingest.wire.protocol import StreamDecoder

T0 = 1.8e9
DRIFT_PPM = 200.0
WARM_UP_S = 10.0


@pytest.mark.slow
def test_hour_of_drift_and_jitter_keeps_timestamps_within_5ms() -> None:
    seconds = 3600.0
    sc = parse_scenario({
        "name": "clock_hour", "seed": 3, "duration_s": seconds, "emg_rate_hz": 1000, "acc_rate_hz": 50,
        "channels": ["EMG a"], "faults": {"clock_drift_ppm": DRIFT_PPM, "jitter_ms": 20.0},
    })  # fmt: skip
    rec = synthesize(sc)
    dev = SimDevice(SignalSource.from_recording(rec), seed=1)
    cap = simulate(dev, FaultInjector.from_scenario(sc, rec), duration_s=seconds, t0_host=T0,
                   drift_ppm=DRIFT_PPM, jitter_ms=20.0)  # fmt: skip
    worst = {"emg": 0.0, "acc": 0.0}
    seen = {"emg": 0, "acc": 0}
    rates = {"emg": 1000.0, "acc": 50.0}

    def check(out: Output) -> None:
        if out.kind not in ("raw", "acc") or out.series is None:
            return
        if out.kind == "raw" and out.series.tags["channel"] != "EMG a":
            return
        dom = "emg" if out.kind == "raw" else "acc"
        t = out.series.t_ns / 1e9
        k = np.arange(seen[dom], seen[dom] + len(t))
        seen[dom] += len(t)
        # Truth: sample k was taken at device time k / rate, on a crystal 200 ppm fast.
        truth = T0 + (k / rates[dom]) / (1 + DRIFT_PPM * 1e-6)
        ok = k / rates[dom] >= WARM_UP_S
        if ok.any():
            worst[dom] = max(worst[dom], float(np.abs(t - truth)[ok].max()))
        assert np.all(np.diff(t) > 0), "timestamps must increase"

    session = DeviceSession("d", check, raw_emg=True)
    dec = StreamDecoder()
    for t_host, data in cap.chunks:
        for frame in dec.feed(data):
            session.on_frame(frame, t_host)
    session.finish()
    assert seen["emg"] >= int(seconds * 1000) - 56 and seen["acc"] >= int(seconds * 50) - 40  # last frame
    assert worst["emg"] < 0.005 and worst["acc"] < 0.005, worst
    health = session.health()
    assert health["clock_drift_ppm"] == pytest.approx(DRIFT_PPM, abs=5)
    assert health["timestamp_quality_ms"] < 5
