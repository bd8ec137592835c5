"""``neurospasm detect RECORDING``: the streaming detector, offline, as fast as it runs.

The very same ``SpasmDetector`` the gateway runs live is fed the file in chunks; events go to
stdout as JSON lines (the MQTT event schema, docs/schemas/event.v2.json, with onset and offset as
ISO-8601 UTC from the recording's start), progress and a summary to stderr, so the output can be
piped into other tools. ``--annotate OUT.edf`` writes a copy of the recording with the events as
EDF+ annotations, for review in any EDF viewer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from detectors import DetectorConfig, SpasmDetector, SpasmEvent
from ingest import payloads
from ingest.readers import RecordingError, SignalFile, read_recording

CHUNK_S = 1.0


def detect_file(sf: SignalFile, config: DetectorConfig, device: str = "offline") -> list[dict[str, Any]]:
    """Run the detector over a whole recording; returns event payloads in onset order."""
    det = SpasmDetector(
        config, emg_rate_hz=sf.emg_rate_hz, channel_labels=list(sf.channel_labels), acc_rate_hz=sf.acc_rate_hz
    )
    t0 = sf.start.timestamp()
    rates = {"emg": sf.emg_rate_hz, "acc": sf.acc_rate_hz or 1.0}
    events: list[dict[str, Any]] = []

    def take(outputs: list[Any]) -> None:
        for out in outputs:
            if isinstance(out, SpasmEvent):
                r = rates[out.domain]
                events.append(
                    payloads.event_payload(
                        out,
                        device=device,
                        boot_id=0,
                        t_onset=t0 + out.onset_sample / r,
                        t_offset=t0 + out.offset_sample / r,
                    )
                )

    n = len(sf.emg_uv)
    step = max(1, int(CHUNK_S * sf.emg_rate_hz))
    progress = _Progress(sf.duration_s)
    acc_pos = 0
    for start in range(0, n, step):
        chunk = sf.emg_uv[start : start + step]
        take(det.feed_emg(start, chunk))
        if sf.acc_g is not None and sf.acc_rate_hz:
            acc_end = min(len(sf.acc_g), round((start + len(chunk)) / sf.emg_rate_hz * sf.acc_rate_hz))
            if acc_end > acc_pos:
                take(det.feed_acc(acc_pos, sf.acc_g[acc_pos:acc_end]))
                acc_pos = acc_end
        progress.update((start + len(chunk)) / sf.emg_rate_hz)
    take(det.finish())
    progress.done()
    events.sort(key=lambda e: (e["onset"], e["channel"]))
    return events


class _Progress:
    """A progress line on stderr (only when it is a terminal: logs stay clean)."""

    def __init__(self, total_s: float) -> None:
        self.total = total_s
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self._last = 0.0

    def update(self, done_s: float) -> None:
        now = time.monotonic()
        if self.tty and now - self._last > 0.2:
            self._last = now
            pct = 100.0 * done_s / self.total if self.total else 100.0
            print(f"\rdetect: {pct:5.1f} % of {self.total:.0f} s", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.tty:
            print("\r" + " " * 40 + "\r", end="", file=sys.stderr, flush=True)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.t0


def annotate_edf(sf: SignalFile, events: list[dict[str, Any]], out: Path) -> None:
    """Write an EDF+ copy of the recording's EMG (and accelerometer) with the events as annotations."""
    import pyedflib

    signals: list[np.ndarray] = []
    headers: list[dict[str, Any]] = []

    def add(label: str, data: np.ndarray, rate: float, unit: str) -> None:
        # EDF headers hold 8 characters per limit: whole units, widened by one so nothing clips.
        lo, hi = float(np.floor(np.min(data))) - 1.0, float(np.ceil(np.max(data))) + 1.0
        headers.append(
            {
                "label": label[:16],
                "dimension": unit,
                "sample_frequency": rate,
                "physical_min": lo,
                "physical_max": hi,
                "digital_min": -32768,
                "digital_max": 32767,
                "transducer": "",
                "prefilter": "",
            }
        )
        signals.append(np.ascontiguousarray(data, dtype=np.float64))

    for i, label in enumerate(sf.channel_labels):
        add(label, sf.emg_uv[:, i], sf.emg_rate_hz, "uV")
    if sf.acc_g is not None and sf.acc_rate_hz:
        for i, axis in enumerate("XYZ"):
            add(f"ACC {axis}", sf.acc_g[:, i], sf.acc_rate_hz, "g")
    writer = pyedflib.EdfWriter(str(out), len(signals), file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        writer.setSignalHeaders(headers)
        writer.setStartdatetime(sf.start.replace(tzinfo=None))
        writer.writeSamples(signals)
        t0 = sf.start.timestamp()
        for onset, duration, text in sf.annotations:
            writer.writeAnnotation(onset, duration, text)
        for e in events:
            on = _ts(e["onset"]) - t0
            writer.writeAnnotation(on, e["duration_s"], f"spasm {e['type']} {e['channel']}")
    finally:
        writer.close()


def _ts(iso_text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso_text.replace("Z", "+00:00")).timestamp()


def main(args: argparse.Namespace) -> int:
    try:
        sf = read_recording(args.recording)
    except RecordingError as exc:
        print(f"neurospasm detect: {exc}", file=sys.stderr)
        return 2
    config = (
        DetectorConfig.from_dict(json.loads(args.detector_config))
        if args.detector_config
        else DetectorConfig()
    )
    for note in sf.notes:
        print(f"neurospasm detect: note: {note}", file=sys.stderr)
    t_start = time.monotonic()
    events = detect_file(sf, config, device=args.device)
    elapsed = time.monotonic() - t_start
    for e in events:
        sys.stdout.write(json.dumps(e, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    if args.annotate:
        annotate_edf(sf, events, Path(args.annotate))
    counts = Counter(e["type"] for e in events)
    rate = sf.duration_s / elapsed if elapsed > 0 else float("inf")
    types = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
    acc = ", accelerometer" if sf.acc_g is not None else ""
    print(
        f"neurospasm detect: {sf.path.name}: {sf.duration_s:.1f} s, {len(sf.channel_labels)} EMG "
        f"channel(s) at {sf.emg_rate_hz:g} Hz{acc}; {len(events)} events ({types}) in {elapsed:.2f} s "
        f"({rate:,.0f}x real time)" + (f"; annotated copy: {args.annotate}" if args.annotate else ""),
        file=sys.stderr,
    )
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "detect",
        help="run the detector over a recording (EDF+/BDF+, CSV, BioSPPy text); JSON events on stdout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "recording", help="EDF+/BDF+ (.edf/.bdf), CSV or BioSPPy .txt (layouts: docs/recordings.md)"
    )
    p.add_argument("--annotate", metavar="OUT.edf", help="write an EDF+ copy with the events as annotations")
    p.add_argument("--device", default="offline", help="device id for the event payloads (a pseudonym)")
    p.add_argument("--detector-config", metavar="JSON", help="detector settings, e.g. '{\"mains_hz\": 60}'")
    p.set_defaults(handler=main)
