"""Every MQTT payload has a JSON Schema in docs/schemas; docs examples and real output validate."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from support.checks import DOCS, validate

from firmware_sim.device import SignalSource, SimDevice
from firmware_sim.scenario import builtin_scenario
from firmware_sim.signals import synthesize
from ingest.stream.session import DeviceSession, Output
from ingest.wire.protocol import StreamDecoder

KINDS = ("event", "onset", "gap", "status", "live", "activity")


def run_session(scenario: str, seconds: float) -> list[Output]:
    """The simulator framed at device time, decoded and fed to a session: no I/O at all."""
    outs: list[Output] = []
    rec = synthesize(builtin_scenario(scenario))
    dev = SimDevice(SignalSource.from_recording(rec), autostart=True)
    session = DeviceSession("wearable-1", outs.append)
    dec = StreamDecoder()
    t0, t = 1_795_600_000.0, 0.0
    while t < seconds:
        t += 0.01
        for wire in dev.frames_until(t):
            for frame in dec.feed(wire):
                session.on_frame(frame, t0 + t + 0.002)
    session.finish()
    return outs


def test_docs_examples_validate() -> None:
    text = (DOCS / "mqtt.md").read_text()
    blocks = re.findall(r"```json (\w+)\n(.*?)\n```", text, flags=re.S)
    assert {k for k, _ in blocks} == set(KINDS)
    for kind, body in blocks:
        validate(kind, json.loads(body))


def test_schemas_reject_what_they_should() -> None:
    good = json.loads(re.findall(r"```json event\n(.*?)\n```", (DOCS / "mqtt.md").read_text(), re.S)[0])
    for broken in (
        {**good, "type": "cramp"},
        {**good, "onset": "yesterday"},
        {**good, "patient_name": "x"},  # no extra keys: nothing identifying can sneak in
        {k: v for k, v in good.items() if k != "id"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validate("event", broken)


def test_real_session_output_validates() -> None:
    outs = run_session("e2e_short", 13.0)
    seen = {o.kind for o in outs}
    assert {"onset", "event", "live"} <= seen
    for o in outs:
        if o.kind in KINDS and o.payload is not None:
            validate(o.kind, o.payload)
    events = [o.payload for o in outs if o.kind == "event"]
    assert len(events) == 3
