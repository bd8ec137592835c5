"""``neurospasm detect RECORDING``: the gateway's pipeline, offline, as fast as it runs.

A recording goes through the very ``DeviceSession`` (counters, gaps, clock, detector) the
gateway runs live, so its events are the live run's, ids included:

* a capture (``.nsc``) is decoded by the shared decode loop (``ingest.stream.pipeline``) from
  its recorded link bytes and host times, exactly as ``neurospasm replay`` and the live gateway
  decoded them: same events, same ids (the device id is the capture's unless ``--device``);
* an EDF+/BDF+, CSV or BioSPPy file is handed to the session as sample blocks (its values are
  already microvolts and g) with the file's own clock: sample ``n`` at start + n / rate.

Events go to stdout as JSON lines (the MQTT event schema, docs/schemas/event.v2.json), progress
and a summary to stderr, so the output can be piped into other tools. ``--annotate OUT.edf``
writes a copy of a signal file with the events as EDF+ annotations, for review in any EDF viewer.

Several recordings (``neurospasm detect night1.edf night2.edf ...``, a folder of overnight files)
run one after another in one process, so start-up is paid once. Each stdout line then says which
file it came from: ``{"file": "night1.edf", "event": {...}}`` (the event unchanged); each file
gets its own summary line on stderr. A file that cannot be read is named on stderr and skipped;
the exit code is 0 when every file was read, 2 when any was not (or the arguments are bad).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the command line imports this module; numpy and the detector load on use
    from detectors import DetectorConfig
    from ingest.files.readers import SignalFile
    from ingest.stream.records import EventRecord
    from ingest.stream.session import Output
    from ingest.wire.protocol import Frame

from ingest.commands.args import detector_config_json, output_file, pseudonym

log = logging.getLogger(__name__)

#: Seconds of signal per block handed to the session (the detector's result does not depend on it).
BLOCK_S = 30.0
#: The boot id of a signal file: it has no device boot, its ids derive from device and position.
FILE_BOOT_ID = 0


def signal_frames(sf: SignalFile, device: str, block_s: float = BLOCK_S) -> Iterator[tuple[Frame, float]]:
    """A signal file as the frames a device would have sent, with perfect arrival times.

    One INFO (scales 1.0: the values are microvolts and g already), then EMG and accelerometer
    blocks interleaved by time, each "arriving" when its last sample was taken.
    """
    from ingest.wire.protocol import AccFrame, EmgFrame, InfoFrame

    t0 = sf.start.timestamp()
    rate, acc_rate = sf.emg_rate_hz, sf.acc_rate_hz or 0.0
    acc = sf.acc_g if sf.acc_g is not None and acc_rate else None
    labels = tuple(label[:16] for label in sf.channel_labels)
    yield InfoFrame(0, 0, FILE_BOOT_ID, rate, acc_rate if acc is not None else 0, 1.0, 1.0,  # type: ignore[arg-type]
                    device[:32], "file", labels), t0  # fmt: skip
    n = len(sf.emg_uv)
    step = max(1, int(block_s * rate))
    acc_pos = 0
    for start in range(0, n, step):
        end = min(n, start + step)
        yield EmgFrame(0, start, sf.emg_uv[start:end]), t0 + end / rate
        if acc is not None:
            acc_end = min(len(acc), round(end / rate * acc_rate))
            if acc_end > acc_pos:
                yield AccFrame(0, acc_pos, acc[acc_pos:acc_end]), t0 + acc_end / acc_rate
                acc_pos = acc_end


def _session(device: str, config: DetectorConfig, emit: Callable[[Output], None]) -> Any:
    from ingest.stream.session import DeviceSession

    # Only events are written: no series, no onset records (their ids, the alerts' work).
    return DeviceSession(device, emit, config, series=False, onsets=False)


def _events(outputs: list[Output]) -> list[EventRecord]:
    from ingest.stream.records import EventRecord

    events = [o.record for o in outputs if o.kind == "event" and isinstance(o.record, EventRecord)]
    events.sort(key=lambda e: (e.t_onset, e.channel))
    return events


def detect_file(sf: SignalFile, config: DetectorConfig, device: str = "offline") -> list[dict[str, Any]]:
    """Run a signal file through the session; returns event payloads in onset order."""
    from ingest.outputs.encoders import to_json

    return [to_json(e) for e in detect_signals(sf, config, device)]


def detect_signals(
    sf: SignalFile,
    config: DetectorConfig,
    device: str = "offline",
    progress: _Progress | None = None,
    block_s: float = BLOCK_S,
) -> list[EventRecord]:
    """A signal file through the session in ``block_s`` frames; its events in onset order.

    The result does not depend on ``block_s`` (the detector is chunk-invariant, see
    ``detectors.detector``): long blocks only spare the per-frame work."""
    outputs: list[Output] = []
    session = _session(device, config, outputs.append)
    for frame, t_host in signal_frames(sf, device, block_s):
        session.on_frame(frame, t_host)
        if progress is not None:
            progress.update(t_host - sf.start.timestamp())
    session.finish()
    return _events(outputs)


def detect_records(
    records: Iterable[Any],
    config: DetectorConfig,
    device: str,
    kind: str = "neurospasm",
    options: dict[str, Any] | None = None,
) -> list[EventRecord]:
    """Run link records (a capture's) through the shared decode loop and session."""
    from ingest.stream.pipeline import DecodeLoop, run_records

    outputs: list[Output] = []
    run_records(DecodeLoop(_session(device, config, outputs.append), kind, options=options), records)
    return _events(outputs)


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


#: EDF header limits are 8 characters: whole numbers up to this magnitude (with a sign) fit
_EDF_LIMIT = 9_999_999.0
#: units tried in turn for a signal whose limits do not fit (factor from the signal's own unit)
_EDF_UNITS: dict[str, tuple[tuple[float, str], ...]] = {"uV": ((1.0, "uV"), (1e-3, "mV"), (1e-6, "V"))}


def annotate_edf(
    sf: SignalFile, events: list[dict[str, Any]], out: Path, onsets: list[float] | None = None
) -> None:
    """Write an EDF+ copy of the recording's EMG (and accelerometer) with the events as annotations.

    ``onsets`` are the events' onset times (UTC seconds); without them they are read from the
    payloads' ISO text (for callers holding only payloads).
    """
    import numpy as np
    import pyedflib

    from ingest.files.readers import RecordingError

    signals: list[np.ndarray] = []
    headers: list[dict[str, Any]] = []

    def add(label: str, data: np.ndarray, rate: float, unit: str) -> None:
        # EDF headers hold 8 characters per limit: whole units, widened by one so nothing clips.
        # Values too large for that in uV (over +-10 V: a file in volts read as microvolts, a
        # railed amplifier's codes) are written in mV or V instead, never with a cut-off limit.
        lo = hi = 0.0
        for factor, name in _EDF_UNITS.get(unit, ((1.0, unit),)):
            scaled = data * factor if factor != 1.0 else data
            lo, hi = float(np.floor(np.min(scaled))) - 1.0, float(np.ceil(np.max(scaled))) + 1.0
            if max(-lo, hi) <= _EDF_LIMIT:
                data, unit = scaled, name
                break
        else:
            raise RecordingError(
                f"{out}: {label}: values up to {max(-lo, hi):.3g} {name} do not fit an EDF header's "
                "8-character limits; not written"
            )
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
    # written beside the target and renamed: a failure leaves no half-written (or empty) file
    tmp = out.with_name(f".{out.name}.part")
    writer = pyedflib.EdfWriter(str(tmp), len(signals), file_type=pyedflib.FILETYPE_EDFPLUS)
    done = False
    try:
        writer.setSignalHeaders(headers)
        writer.setStartdatetime(sf.start.replace(tzinfo=None))
        writer.writeSamples(signals)
        t0 = sf.start.timestamp()
        for onset, duration, text in sf.annotations:
            writer.writeAnnotation(onset, duration, text)
        for i, e in enumerate(events):
            on = (onsets[i] if onsets is not None else _iso_ts(e["onset"])) - t0
            writer.writeAnnotation(on, e["duration_s"], f"spasm {e['type']} {e['channel']}")
        done = True
    finally:
        writer.close()
        if done:
            tmp.replace(out)
        else:
            tmp.unlink(missing_ok=True)


def main(args: argparse.Namespace) -> int:
    """Each recording in turn; the exit code is 0 when every one was read, else 2.

    A bad file is named on stderr and skipped, the others are still run: one unreadable night
    must not cost a clinic the rest of the folder. The interpreter and its imports (scipy's
    alone is most of a second) are paid once for all of them.
    """
    paths = [Path(p) for p in args.recording]
    if args.annotate and len(paths) > 1:
        print("neurospasm detect: --annotate takes one recording (it names one output file)", file=sys.stderr)
        return 2
    from detectors import DetectorConfig

    config = args.detector_config or DetectorConfig()  # parsed and checked by argparse
    collect = not gc.isenabled()  # the command line paused the collector for start-up
    if collect:
        _load_signal_path()
        gc.freeze()  # start-up's objects live to the end: later collections skip them
    rc = 0
    for i, path in enumerate(paths):
        rc = max(rc, _detect_one(path, args, config, tag=len(paths) > 1))
        if collect and i + 1 < len(paths):
            gc.collect()  # the last file's cycles (~0.1 MB), in ~1 ms: a folder's run stays flat
    return rc


def _load_signal_path() -> None:
    """Import what a signal file's run needs (before ``gc.freeze``: modules are start-up's)."""
    import ingest.files.readers
    import ingest.outputs.encoders
    import ingest.stream.session  # noqa: F401


def _internal_error(path: Path, exc: Exception) -> int:
    """A failure no check foresaw (a bug, or input no reader rejects cleanly yet): named in one
    line on stderr, its traceback in the debug log, and exit status 1; the other files still run."""
    log.debug("detect %s failed", path, exc_info=exc)
    print(
        f"neurospasm detect: {path}: internal error ({type(exc).__name__}: {exc}); skipped, "
        "please report it with the file",
        file=sys.stderr,
    )
    return 1


def _detect_one(path: Path, args: argparse.Namespace, config: DetectorConfig, tag: bool) -> int:
    """One recording: events on stdout (each as ``{"file": ..., "event": ...}`` when ``tag``, i.e.
    several files were given), the notes and a summary line naming the file on stderr."""
    from ingest.files import is_capture
    from ingest.files.readers import RecordingError, read_recording
    from ingest.outputs.encoders import to_json

    t_start = time.monotonic()
    sf: SignalFile | None = None
    try:
        if is_capture(path):
            from ingest.files.recording import CaptureReader

            reader = CaptureReader(path)
            named, kind, options = reader.source(device_given=bool(args.device))
            records = reader.nonempty_records()
            if reader.truncated is not None:
                print(f"neurospasm detect: note: {path}: incomplete last record at byte offset "
                      f"{reader.truncated} ignored", file=sys.stderr)  # fmt: skip
            device = args.device or named or "offline"
            events = detect_records(records, config, device, kind, options)
            duration_s = records[-1].t_host - records[0].t_host if records else 0.0
            what = f"capture of {device}"
        else:
            sf = read_recording(path)
            for note in sf.notes:
                print(f"neurospasm detect: note: {path.name}: {note}", file=sys.stderr)
            progress = _Progress(sf.duration_s)
            events = detect_signals(sf, config, device=args.device or "offline", progress=progress)
            progress.done()
            duration_s = sf.duration_s
            acc = ", accelerometer" if sf.acc_g is not None else ""
            what = f"{len(sf.channel_labels)} EMG channel(s) at {sf.emg_rate_hz:g} Hz{acc}"
    except RecordingError as exc:
        print(f"neurospasm detect: {exc}", file=sys.stderr)  # the message names the file
        return 2
    except Exception as exc:  # a bad capture (its module is loaded only for captures)
        from ingest.files.recording import CaptureError

        if not isinstance(exc, CaptureError):
            return _internal_error(path, exc)
        print(f"neurospasm detect: {exc}", file=sys.stderr)
        return 2
    elapsed = time.monotonic() - t_start
    payloads = [to_json(e) for e in events]
    out = sys.stdout
    if tag:
        name = json.dumps(str(path))
        for p in payloads:
            out.write(f'{{"file":{name},"event":{json.dumps(p, separators=(",", ":"))}}}\n')
    else:
        for p in payloads:
            out.write(json.dumps(p, separators=(",", ":")) + "\n")
    out.flush()
    if args.annotate:
        if sf is None:
            print(
                "neurospasm detect: --annotate needs a signal file (for a capture: export-edf)",
                file=sys.stderr,
            )
            return 2
        try:
            annotate_edf(sf, payloads, Path(args.annotate), [e.t_onset for e in events])
        except RecordingError as exc:  # the events are out; the copy could not be written
            print(f"neurospasm detect: {exc}", file=sys.stderr)
            return 2
    counts = Counter(e.type for e in events)
    rate = duration_s / elapsed if elapsed > 0 else float("inf")
    types = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
    print(
        f"neurospasm detect: {path.name}: {duration_s:.1f} s, {what}; {len(events)} events ({types}) "
        f"in {elapsed:.2f} s ({rate:,.0f}x real time)"
        + (f"; annotated copy: {args.annotate}" if args.annotate else ""),
        file=sys.stderr,
    )
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "detect",
        help="run the pipeline over a recording (capture, EDF+/BDF+, CSV, BioSPPy); JSON events on stdout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "recording", nargs="+",
        help="a capture (.nsc), EDF+/BDF+ (.edf/.bdf), CSV or BioSPPy .txt (docs/recordings.md); "
        "several: one after another in one process",
    )  # fmt: skip
    p.add_argument("--annotate", metavar="OUT.edf", type=output_file,
                   help="write an EDF+ copy with the events as annotations")  # fmt: skip
    p.add_argument(
        "--device", default=None, type=pseudonym,
        help="device id for the event ids (a pseudonym; default: the capture's, or offline)",
    )  # fmt: skip
    p.add_argument("--detector-config", metavar="JSON", type=detector_config_json,
                   help="detector settings, e.g. '{\"mains_hz\": 60}'")  # fmt: skip
    p.set_defaults(handler=main)


def _iso_ts(iso_text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso_text.replace("Z", "+00:00")).timestamp()
