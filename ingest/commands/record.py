"""``neurospasm record`` and ``neurospasm export-edf``: captures in, captures and EDF+ out.

``record --port`` captures a device with the gateway's own device task
(``ingest.stream.runner.DeviceRunner``: connect, START, watchdog, reconnect with backoff) whose
transport writes everything to a capture (``ingest.files.recording.capturing_factory``): one
reconnect loop for the gateway and the recorder. ``record --sim`` composes the simulator
(``firmware_sim``) with the capture writer on a virtual clock; this module, part of the command
line, is where ``ingest`` and ``firmware_sim`` meet.

``export-edf`` decodes a capture (or a scenario simulated offline) with the shared decode loop
and session (``ingest.files.recording.decode_records``) and writes EDF+.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.commands.args import output_file, positive_float, pseudonym

if TYPE_CHECKING:
    from ingest.config import DeviceSection
    from ingest.files.recording import CaptureRecord, CaptureWriter, Decoded

log = logging.getLogger(__name__)

__all__ = [
    "SimRun",
    "decode_source",
    "record_port",
    "record_sim",
    "register",
    "simulate_scenario",
    "write_sim",
]

#: No data for this long while recording: the link is treated as dropped and reopened (as the gateway).
RECORD_STALE_S = 10.0


async def record_port(
    port: str,
    out: Path,
    *,
    duration_s: float | None,
    device: str,
    baudrate: int | None = None,
    kind: str = "neurospasm",
    stop: asyncio.Event | None = None,
    options: dict[str, Any] | None = None,
) -> int:
    """Capture a serial device (hardware or ``neurospasm sim``) until the duration, ``stop`` or Ctrl-C.

    ``options``: the kind's vendor settings (``[[devices]] options``); stored in the capture's
    header, so a replay or an export decodes with them (a Cyton's gain scales its microvolts).
    ``baudrate``: None takes the kind's (a Cyton talks at 115200 only), as a config file does.
    """
    import signal

    from ingest.files.recording import CaptureWriter, capturing_factory
    from ingest.stream.runner import DeviceRunner, default_transport
    from ingest.stream.session import DeviceSession

    loop = asyncio.get_running_loop()
    if stop is None:  # the command line: SIGINT / SIGTERM end the recording cleanly
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
    if duration_s:
        loop.call_later(duration_s, stop.set)
    dev = record_device(port, device=device, baudrate=baudrate, kind=kind, options=options)
    meta: dict[str, Any] = {
        "device": device,
        "kind": kind,
        "options": dict(options or {}),
        "source": {"kind": "serial", "port": port, "baudrate": dev.baudrate},
    }
    with CaptureWriter(out, **meta) as writer:
        # The gateway's device task, detector off (the session only learns who the device is).
        runner = DeviceRunner(
            dev,
            DeviceSession(device, lambda _out: None, series=False),
            capturing_factory(default_transport, writer),
            RECORD_STALE_S,
            lambda r: log.info("record %s: %s", r.dev.id, r.state),
            detect=False,
        )
        task = asyncio.create_task(runner.run(), name=f"record-{device}")
        await stop.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        print(f"captured {writer.records} records, {writer.bytes} bytes to {out}", file=sys.stderr)
    return 0


# -- the simulator, offline ------------------------------------------------------------------------


@dataclass
class SimRun:
    scenario_name: str
    seed: int
    chunks: list[tuple[float, bytes]]
    link_events: list[tuple[float, str]]
    truth: list[dict[str, Any]] = field(default_factory=list)
    expected_gaps: list[dict[str, Any]] = field(default_factory=list)

    def records(self) -> list[CaptureRecord]:
        """The run as capture records: link changes and chunks in time order."""
        from ingest.files.recording import DATA, DOWN, UP, CaptureRecord

        # The simulation's host clock never steps: its monotonic time is the host time from start.
        out: list[CaptureRecord] = []
        links = iter(self.link_events)
        nxt = next(links, None)
        t0 = self.chunks[0][0] - 1.0 if self.chunks else 0.0
        for t, data in self.chunks:
            while nxt is not None and nxt[0] <= t:
                kind = UP if nxt[1] == "up" else DOWN
                out.append(CaptureRecord(nxt[0], kind, b"", -1, t_mono=max(0.001, nxt[0] - t0)))
                nxt = next(links, None)
            out.append(CaptureRecord(t, DATA, data, -1, t_mono=t - t0))
        return out


def simulate_scenario(
    name_or_path: str,
    *,
    duration_s: float | None = None,
    device: str = "sim-0001",
    t0_host: float | None = None,
) -> SimRun:
    """A scenario through the simulated device and its faults, offline (see firmware_sim.faults)."""
    from firmware_sim.scenario import resolve_scenario

    sc = resolve_scenario(name_or_path)  # before the signal models' imports: a bad name fails fast
    from firmware_sim.device import SignalSource, SimDevice
    from firmware_sim.faults import FaultInjector, simulate
    from firmware_sim.signals import synthesize

    rec = synthesize(sc)
    dev = SimDevice(SignalSource.from_recording(rec), device_id=device, seed=sc.seed)
    inj = FaultInjector.from_scenario(sc, rec)
    f = sc.faults
    cap = simulate(dev, inj, duration_s=min(duration_s or sc.duration_s, sc.duration_s),
                   t0_host=time.time() if t0_host is None else t0_host, drift_ppm=f.clock_drift_ppm,
                   jitter_ms=f.jitter_ms, jitter_seed=sc.seed)  # fmt: skip
    return SimRun(sc.name, sc.seed, cap.chunks, cap.link_events, inj.truth, inj.expected_gaps())


def write_sim(w: CaptureWriter, sim: SimRun) -> None:
    for rec in sim.records():
        w.write(rec.t_host, rec.kind, rec.data, rec.t_mono)


def record_sim(scenario_name: str, out: Path, *, duration_s: float | None, device: str) -> int:
    """Capture a simulated device on a virtual clock (instant, deterministic, faults included)."""
    from ingest.files.recording import CaptureWriter

    sim = simulate_scenario(scenario_name, duration_s=duration_s, device=device)
    source = {"kind": "sim", "scenario": sim.scenario_name, "seed": sim.seed}
    meta: dict[str, Any] = {"device": device, "source": source, "truth": sim.truth,
                            "expected_gaps": sim.expected_gaps}  # fmt: skip
    with CaptureWriter(out, **meta) as w:
        write_sim(w, sim)
    print(f"captured {len(sim.chunks)} chunks from scenario {sim.scenario_name!r} to {out}", file=sys.stderr)
    return 0


def decode_source(source: str, *, device: str | None = None) -> Decoded:
    """A capture file, or a scenario (built-in name or TOML) simulated offline, decoded."""
    from ingest.files.recording import CaptureError, CaptureReader, decode_records, is_capture

    if is_capture(source):
        reader = CaptureReader(source)
        recs = reader.records()  # damaged v2 records are skipped and logged, one line each
        if reader.truncated is not None:
            log.warning("%s: incomplete last record at byte offset %d ignored", source, reader.truncated)
        named, kind, options = reader.source(device_given=device is not None)
        return decode_records(recs, device or named or "device", kind, options=options)
    p = Path(source)
    if p.is_file() and not source.endswith(".toml"):
        raise CaptureError(
            f"{p}: not a capture (no capture magic at byte offset 0) and not a scenario (.toml); "
            "export-edf reads captures (.nsc) and scenarios"
        )
    sim = simulate_scenario(source, device=device or "sim-0001")
    return decode_records(sim.records(), device or "sim-0001")


# -- command line ----------------------------------------------------------------------------------


def record_device(
    port: str, *, device: str, baudrate: int | None, kind: str, options: dict[str, Any] | None
) -> DeviceSection:
    """The ``[[devices]]`` table ``record --port`` runs, checked like a config file's: a wrong
    kind, a baud rate the kind does not talk at, or a BLE-only kind is one ``ConfigError`` line."""
    from ingest.config import DeviceSection, validate_model

    table: dict[str, Any] = {"id": device, "kind": kind, "port": port, "reconnect_initial_s": 0.5,
                             "reconnect_max_s": 0.5, "options": dict(options or {})}  # fmt: skip
    if baudrate is not None:
        table["baudrate"] = baudrate
    return validate_model(DeviceSection, table, "record")


def check_port(port: str) -> None:
    """``record --port``: a device path must exist now (pyserial URLs like ``socket://`` are
    taken as given); otherwise one CaptureError line instead of an empty capture and exit 0."""
    from ingest.files.recording import CaptureError

    if "://" in port:
        return
    if not Path(port).exists():
        raise CaptureError(f"--port {port}: no such serial port (is the device plugged in?)")


def parse_options(kind: str, pairs: list[str]) -> dict[str, Any]:
    """``--option KEY=VALUE`` pairs as a ``[[devices]] options`` table (VALUE in TOML syntax:
    ``gain=8``, ``daisy=true``, ``emg_inputs=[1,2]``, ``emg_mode=filtered`` as a bare word), checked
    against the kind. Raises ValueError with one line."""
    import tomllib

    from ingest.wire.kinds import decoder_options

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{pair!r}: expected KEY=VALUE")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text  # a bare word: a string
        options[key.strip()] = value
    decoder_options(kind, options)
    return options


def _record_cmd(args: argparse.Namespace) -> int:
    from ingest.files.recording import DATA, CaptureReader

    out = Path(args.out)
    if args.sim:
        return record_sim(args.sim, out, duration_s=args.duration, device=args.device_id)
    check_port(args.port)
    try:
        options = parse_options(args.kind, args.option or [])
    except ValueError as exc:
        print(f"neurospasm record: --option {exc}", file=sys.stderr)
        return 2
    record_device(args.port, device=args.device_id, baudrate=args.baudrate, kind=args.kind, options=options)
    rc = asyncio.run(record_port(args.port, out, duration_s=args.duration, device=args.device_id,
                                 baudrate=args.baudrate, kind=args.kind, options=options))  # fmt: skip
    if rc == 0 and not any(r.kind == DATA for r in CaptureReader(out)):
        print(f"neurospasm record: {args.port}: no data received; {out} holds no samples", file=sys.stderr)
        return 1
    return rc


def _export_cmd(args: argparse.Namespace) -> int:
    from ingest.files.recording import CaptureError, export_edf

    try:
        decoded = decode_source(args.source, device=args.device_id)
        summary = export_edf(decoded, Path(args.out), source=args.source)
    except CaptureError as exc:
        print(f"neurospasm export-edf: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.out}: {summary['seconds']} s, channels {', '.join(summary['channels'])}; "
        f"{summary['events']} events and {summary['gaps']} gaps as annotations",
        file=sys.stderr,
    )
    return 0


def register(sub: Any) -> None:
    """Add ``record`` and ``export-edf`` to the ``neurospasm`` command line."""
    rec = sub.add_parser("record", help="capture a device's raw byte stream (lossless, replayable)")
    src = rec.add_mutually_exclusive_group(required=True)
    src.add_argument("--port", help="serial device path (hardware, or the path `neurospasm sim` printed)")
    src.add_argument(
        "--sim", metavar="SCENARIO", help="simulate a scenario offline (instant, faults included)"
    )
    rec.add_argument("--out", "-o", required=True, type=output_file, help="capture file to write (.nsc)")
    rec.add_argument(
        "--duration", type=positive_float, default=None, help="seconds to record (default: Ctrl-C / scenario)"
    )
    rec.add_argument(
        "--device-id", default="wearable-1", type=pseudonym,
        help="device id stored in the capture (replay uses it)",
    )  # fmt: skip
    rec.add_argument("--kind", default="neurospasm", help="device kind (wire protocol) of a --port device")
    rec.add_argument(
        "--baudrate", type=int, default=None,
        help="serial speed (default: the kind's: 115200 for cyton, shimmer, bitalino; else 921600)",
    )  # fmt: skip
    rec.add_argument(
        "--option", action="append", metavar="KEY=VALUE",
        help="a vendor setting of --kind (docs/devices.md), e.g. gain=8; stored in the capture",
    )  # fmt: skip
    rec.set_defaults(handler=_record_cmd)

    exp = sub.add_parser(
        "export-edf", help="decode a capture (or a scenario) to EDF+ with event/gap annotations"
    )
    exp.add_argument("source", help="a capture (.nsc) or a scenario (built-in name or TOML)")
    exp.add_argument("--out", "-o", required=True, type=output_file, help="EDF+ file to write")
    exp.add_argument("--device-id", default=None, type=pseudonym,
                     help="device id for event ids (default: the capture's)")  # fmt: skip
    exp.set_defaults(handler=_export_cmd)
