"""A realistic ward-day dataset for the history tests, encoded by the gateway's own encoders.

Everything is line protocol made by ``ingest.outputs.router`` (events, gaps, health) and
``ingest.outputs.lineproto.encode_columns`` with the router's decimals (envelope, accelerometer),
chunked into records as the router spools them, so both sinks receive what a gateway would send.
The expected answers are computed from the generated values here, never typed in.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from ingest.outputs import encoders, lineproto
from ingest.outputs.encoders import health_line
from ingest.outputs.router import _DECIMALS
from ingest.stream.records import EventRecord, GapRecord

T0 = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)
DEVICE = "dev-b1"
PATIENT = "p-b1"
OTHER_DEVICE = "dev-b2"
OTHER_PATIENT = "p-b2"
HOURS = 3
ENV_HZ = 50
ACC_HZ = 25
SERIES_MINUTES = 4  # envelope and acc from T0 + 60 min for this long
NOT_MONITORING = (T0 + timedelta(minutes=70), T0 + timedelta(minutes=100))


def iso(t: datetime) -> str:
    """Millisecond ISO text: what the gateway's payloads carry (its points are stamped to the ms)."""
    t = t.replace(microsecond=t.microsecond // 1000 * 1000)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ts_ns(text: str) -> int:
    """The stored timestamp of an ISO time this module wrote: the gateway's encoder's (its
    float arithmetic included, which keeps points byte-identical across gateway versions)."""
    return encoders.ms_ns(_t(text))


def _t(text: str) -> float:
    # + 0.1 us: a millisecond-exact time as a float can land just below its millisecond, which
    # the encoders' truncation to the millisecond (what the ISO text shows) would then lose.
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() + 1e-7


def event_line(p: dict[str, Any], patient: str) -> bytes:
    """The gateway's own encoder on the event this dataset describes as its MQTT payload."""
    t0 = _t(p["onset"])
    rec = EventRecord(
        id=p["id"], device=p["device"], boot_id=0, type=p["type"], channel=p["channel"], t_onset=t0,
        t_offset=t0 + p["duration_s"], duration_s=p["duration_s"], peak_uv=p["peak_uv"],
        mean_uv=p["mean_uv"], baseline_uv=None, relative_amplitude=p["relative_amplitude"],
        frequency_hz=p["frequency_hz"], confidence=p["confidence"], detector_version="test",
        config_hash="test", context=p.get("context") or "rest", clipped=bool(p.get("clipped")),
    )  # fmt: skip
    return encoders.event_line(rec, patient)


def gap_line(g: dict[str, Any], patient: str) -> bytes:
    rec = GapRecord(
        id=g["id"], device=g["device"], boot_id=0, domain=g["domain"], cause=g["cause"], start_counter=0,
        samples_missing=g["samples_missing"], t_start=_t(g["start"]), t_end=_t(g["end"]),
    )  # fmt: skip
    return encoders.gap_line(rec, patient)


@dataclass
class Dataset:
    records: list[bytes] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    health: list[tuple[datetime, bool, dict[str, Any]]] = field(default_factory=list)
    envelope: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    acc: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    activity: list[tuple[datetime, str, float]] = field(default_factory=list)
    legacy_id: str = ""  # an event written without the event schema v2 fields


def build(seed: int = 7) -> Dataset:
    rng = np.random.default_rng(seed)
    ds = Dataset()
    types = ["twitch", "phasic", "tonic", "clonus", "tremor"]
    # Events: irregular onsets over three hours, a few per ten minutes.
    t = T0 + timedelta(seconds=37.25)
    k = 0
    while t < T0 + timedelta(hours=HOURS):
        typ = types[k % len(types)]
        dur = float(np.round(rng.uniform(0.2, 40.0 if typ == "tonic" else 6.0), 3))
        p: dict[str, Any] = {
            "id": str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | k)),
            "device": DEVICE,
            "type": typ,
            "channel": "ACC" if typ == "tremor" else ("ch1" if k % 3 else "ch2"),
            "onset": iso(t),
            "duration_s": dur,
            "peak_uv": float(rng.uniform(30, 400)),
            "mean_uv": float(rng.uniform(10, 100)),
            "relative_amplitude": float(rng.uniform(2, 20)),
            "frequency_hz": float(rng.uniform(4, 8)) if typ in ("clonus", "tremor") else None,
            "confidence": float(rng.uniform(0.5, 1.0)),
        }
        # The values as the gateway's encoders round them (what the store and MQTT carry).
        for key, nd in (("peak_uv", 2), ("mean_uv", 2), ("relative_amplitude", 2), ("confidence", 3)):
            p[key] = round(p[key], nd)
        if p["frequency_hz"] is not None:
            p["frequency_hz"] = round(p["frequency_hz"], 2)
        ds.events.append(p)
        ds.records.append(event_line(p, PATIENT))
        t += timedelta(seconds=float(rng.uniform(20, 600)))
        k += 1
    # Event schema v2: every event carries its context; one was clipped while walking.
    extra = {**ds.events[3], "context": "walking", "clipped": True}
    ds.records[3] = event_line(extra, PATIENT)
    ds.events[3] = extra
    # One event as a gateway before event schema v2 wrote it (no context, no clipped field):
    # readers must give None for what was never written.
    line = event_line(ds.events[1], PATIENT).decode()
    ds.records[1] = line.replace("clipped=false,", "").replace('context="rest",', "").encode()
    ds.events[1] = {**ds.events[1], "context": None, "clipped": None}
    ds.legacy_id = ds.events[1]["id"]
    # A re-delivered event (at-least-once): the same record again.
    ds.records.append(ds.records[5])
    # Gaps: a disconnect before the first hour ends, lead-off on ch2, one long one over the hour.
    for i, (start_s, dur, cause, domain) in enumerate(
        [
            (900.0, 12.5, "disconnect", "emg"),
            (905.0, 3.0, "lead_off", "emg"),
            (3500.0, 400.0, "disconnect", "emg"),
            (5000.0, 2.0, "lost_frames", "acc"),
        ]
    ):
        start = T0 + timedelta(seconds=start_s)
        g = {
            "id": f"g-{i}",
            "device": DEVICE,
            "domain": domain,
            "cause": cause,
            "start": iso(start),
            "end": iso(start + timedelta(seconds=dur)),
            "duration_s": dur,
            "samples_missing": int(dur * (1000 if domain == "emg" else ACC_HZ)),
        }
        ds.gaps.append(g)
        ds.records.append(gap_line(g, PATIENT))
    # Health every 10 s; monitoring off for half an hour; battery draining; ch2 contact flapping.
    n = HOURS * 360
    for i in range(n):
        at = T0 + timedelta(seconds=10 * i + 3)
        mon = not (NOT_MONITORING[0] <= at < NOT_MONITORING[1])
        h: dict[str, Any] = {
            "battery_pct": 90 - i * 0.01,
            "battery_mv": 4100 - i,
            "loss_pct": 0.0 if i % 50 else 1.5,
            "timestamp_quality_ms": 1.25,
            "monitoring": mon,
            "contact": {"ch1": True, "ch2": i % 7 != 0},
        }
        if i % 100 == 0:
            h["spool_bytes"] = 4096.0 * i
        ds.health.append((at, mon, h))
        ds.records.append(health_line(DEVICE, PATIENT, h, at.timestamp()))
    # A second patient with a little data, so device listing and filters are tested.
    ds.records.append(health_line(OTHER_DEVICE, OTHER_PATIENT, {"monitoring": True}, T0.timestamp() + 1))
    other = dict(ds.events[0], id="0f0f0f0f-0000-5000-8000-000000000001", device=OTHER_DEVICE)
    ds.records.append(event_line(other, OTHER_PATIENT))
    # Envelope (50 Hz, 2 channels) and accelerometer (25 Hz), chunked every 0.5 s like the router.
    s0 = int((T0 + timedelta(minutes=60)).timestamp() * 1e9)
    n_env = SERIES_MINUTES * 60 * ENV_HZ
    t_env = s0 + np.arange(n_env, dtype=np.int64) * (1_000_000_000 // ENV_HZ)
    for ch in ("ch1", "ch2"):
        v = np.abs(rng.normal(20, 8, n_env)) + 200 * (rng.random(n_env) < 0.01)
        ds.envelope[ch] = (t_env, np.rint(v * 100) / 100)
    n_acc = SERIES_MINUTES * 60 * ACC_HZ
    t_acc = s0 + 7_000_000 + np.arange(n_acc, dtype=np.int64) * (1_000_000_000 // ACC_HZ)
    axes = {a: np.rint(rng.normal(0 if a != "z" else -1, 0.05, n_acc) * 10_000) / 10_000 for a in "xyz"}
    for a in "xyz":
        ds.acc[a] = (t_acc, axes[a])
    step_env, step_acc = ENV_HZ // 2, ACC_HZ // 2
    for c in range(0, n_env // step_env):
        chunk = b""
        for ch in ("ch1", "ch2"):
            sl = slice(c * step_env, (c + 1) * step_env)
            chunk += lineproto.encode_columns(
                "emg_envelope", {"device": DEVICE, "channel": ch, "patient": PATIENT},
                {"uv": ds.envelope[ch][1][sl]}, t_env[sl], decimals=_DECIMALS,
            )  # fmt: skip
        sa = slice(c * step_acc, (c + 1) * step_acc)
        chunk += lineproto.encode_columns(
            "acc", {"device": DEVICE, "patient": PATIENT}, {a: axes[a][sa] for a in "xyz"}, t_acc[sa],
            decimals=_DECIMALS,
        )  # fmt: skip
        ds.records.append(chunk)
    # Activity spans as the detector's activity records will be written.
    for i, (start_s, ctx, dur) in enumerate(
        [(600.0, "walking", 120.0), (4000.0, "transfer", 15.5), (7000.0, "rest", 900.0)]
    ):
        at = T0 + timedelta(seconds=start_s)
        ds.activity.append((at, ctx, dur))
        ds.records.append(
            lineproto.encode_point(
                "activity",
                {"device": DEVICE, "patient": PATIENT, "context": ctx},
                {"duration_s": dur, "id": f"a-{i}"},
                int(at.timestamp() * 1e9),
            )
        )
    return ds
