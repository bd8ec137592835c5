"""Replay a recording through the full gateway: ``neurospasm replay FILE --speed 1|10|max``.

The recording enters through the same seam as a live device, a ``Transport``: the gateway's
runner, decoder, session, detector, router, spool and sinks cannot tell it from hardware. What a
``ReplayTransport`` delivers:

* a capture (``.nsc``, see ``ingest.files.recording``): the recorded chunks with their *recorded* host
  times (``Chunk.t_host``), so the clock model sees the original arrivals and timestamps, gaps
  and event ids come out as in the live run; recorded link drops are replayed as link drops;
* an EDF+/BDF+ file or a CSV recording: the signals are framed with the wire protocol by the
  simulated device (``firmware_sim.device.SimDevice``), as a wearable would have sent them.

Pacing: ``speed`` 1 is real time, 10 ten times faster, ``max`` (``math.inf``) as fast as the
pipeline consumes (the queue gives back-pressure, nothing is dropped). The host times stay the
recorded ones at every speed; only the wall-clock spacing changes.

The end of the recording is reported twice: the transport raises ``TransportClosed`` (as a
real unplug would) *and* sets ``finished``, so the caller can stop the gateway instead of letting
the runner reconnect forever.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.commands.args import output_file, pseudonym, writable_dir
from ingest.sources.base import Chunk, Transport, TransportClosed

#: Link record kinds (``ingest.stream.pipeline``), repeated so that importing this module for the
#: command line's parser loads no numpy; a unit test checks they agree.
DATA, DOWN = 0, 1

if TYPE_CHECKING:  # the command line imports this module: numpy, pydantic and the session load on use
    import numpy as np

    from ingest.config import DeviceSection, GatewayConfig
    from ingest.files.recording import CaptureRecord
    from ingest.stream.session import Output

log = logging.getLogger(__name__)

__all__ = ["ReplayError", "ReplaySummary", "ReplayTransport", "load_records", "register", "run_replay"]


class ReplayError(ValueError):
    """A file cannot be replayed; the message names the file and what is wrong."""


class _EndOfRecording(TransportClosed):
    pass


@dataclass
class ReplayTransport(Transport):
    """Feeds recorded chunks to the gateway. One instance serves every (re)connection.

    ``records`` are capture records (only DATA and DOWN matter). ``speed`` is a factor of real
    time or ``math.inf``. ``on_progress(done, total)`` is called as records are consumed.
    """

    records: list[CaptureRecord] = field(default_factory=list)
    speed: float = math.inf
    on_progress: Callable[[int, int], None] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.speed > 0:
            raise ValueError(f"replay speed must be > 0, got {self.speed}")
        self.finished = asyncio.Event()
        self._consumed = 0  # records the gateway has read (or skipped): where a reconnect resumes
        self._fed_until = 0
        self._feeder: asyncio.Task[None] | None = None
        self._inflight: dict[int, int] = {}  # id(chunk) -> record index, for progress
        self.opens = 0

    async def _open(self) -> None:
        self.opens += 1
        if self._consumed >= len(self.records):
            self.finished.set()
            raise _EndOfRecording("end of recording")
        self._fed_until = self._consumed
        self._feeder = asyncio.create_task(self._feed(), name=f"replay-{self.name}")

    async def _close(self) -> None:
        if self._feeder is not None:
            self._feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feeder
            self._feeder = None
        # Whatever was queued but not read is fed again after the reconnect: nothing is lost.
        self._inflight.clear()

    async def write(self, data: bytes, char_uuid: str | None = None) -> None:
        """Commands to a recording go nowhere (the START of every connection, INFO requests)."""

    async def _feed(self) -> None:
        recs = self.records
        i = self._consumed
        wall0 = time.monotonic()
        rec0 = recs[i].t_host if i < len(recs) else 0.0
        paced = math.isfinite(self.speed)
        while i < len(recs):
            rec = recs[i]
            if paced:
                delay = wall0 + (rec.t_host - rec0) / self.speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            if rec.kind == DATA:
                chunk = Chunk(rec.t_host, rec.data, t_mono=rec.t_mono)
                self._inflight[id(chunk)] = i
                await self._queue.put(chunk)  # back-pressure, never a drop
                self.stats.chunks += 1
                self.stats.bytes += len(rec.data)
            elif rec.kind == DOWN:
                await self._queue.put(TransportClosed(f"recorded link drop at byte offset {rec.offset}"))
                self.stats.disconnects += 1
                return
            i += 1
            if not paced and i % 64 == 0:
                await asyncio.sleep(0)  # let the pipeline run between batches
        await self._queue.put(_EndOfRecording("end of recording"))

    async def read(self) -> Chunk:
        item = await self._queue.get()
        if isinstance(item, _EndOfRecording):
            self._consumed = len(self.records)
            self._progress()
            self.finished.set()
            raise item
        if isinstance(item, BaseException):
            # A recorded link drop: resume after it on the next connection.
            self._consumed = self._next_after(self._consumed, DOWN)
            self._progress()
            raise item
        idx = self._inflight.pop(id(item), None)
        if idx is not None:
            self._consumed = idx + 1
        self._progress()
        return item

    def _next_after(self, start: int, kind: int) -> int:
        for j in range(start, len(self.records)):
            if self.records[j].kind == kind:
                return j + 1
        return len(self.records)

    def _progress(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self._consumed, len(self.records))


# -- turning files into records ------------------------------------------------------------------


def load_records(
    path: str | Path, *, device: str = "replay", device_given: bool = False
) -> tuple[list[CaptureRecord], str | None]:
    """Records for any replayable file, and the device id it names (captures only; not read
    when ``device_given``). A capture with no record is an error: there is nothing to replay."""
    import numpy as np

    from ingest.files.readers import RecordingError, read_recording
    from ingest.files.recording import CaptureReader, is_capture

    p = Path(path)
    if not p.exists():
        raise ReplayError(f"{p}: no such file")
    if is_capture(p):
        reader = CaptureReader(p)
        named = reader.source(device_given=device_given)[0]
        recs = reader.nonempty_records()
        if reader.truncated is not None:
            log.warning("%s: incomplete last record at byte offset %d ignored", p, reader.truncated)
        return recs, named
    try:
        sf = read_recording(p)
    except RecordingError as exc:
        if "unknown format" in str(exc):
            raise ReplayError(f"{p}: not a capture (.nsc), EDF+/BDF+, CSV or BioSPPy recording") from None
        raise ReplayError(str(exc)) from None
    for note in sf.notes:
        log.info("%s: %s", p, note)
    # Host times start at the recording's start; a file without one starts now.
    t0 = sf.start.timestamp() if sf.start_known else time.time()
    acc = sf.acc_g if sf.acc_g is not None else np.zeros((0, 3))
    records = frame_signals(
        sf.emg_uv,
        [label[:16] for label in sf.channel_labels],
        round(sf.emg_rate_hz),
        acc,
        round(sf.acc_rate_hz or 0),
        t0=t0,
        device=device,
    )
    return records, None


def frame_signals(
    emg_uv: np.ndarray,
    labels: list[str],
    emg_rate: int,
    acc_g: np.ndarray,
    acc_rate: int,
    *,
    t0: float,
    device: str = "replay",
    step_s: float = 0.02,
) -> list[CaptureRecord]:
    """Encode signals with the wire protocol, as a wearable streaming them would (no faults)."""
    from firmware_sim.device import SignalSource, SimDevice
    from ingest.files.recording import CaptureRecord

    src = SignalSource(
        emg_uv=emg_uv, acc_g=acc_g, emg_rate_hz=emg_rate, acc_rate_hz=acc_rate, channel_labels=labels
    )
    dev = SimDevice(src, device_id=device[:32], autostart=True, seed=0)
    duration = len(emg_uv) / emg_rate
    out: list[CaptureRecord] = []
    steps = math.ceil(duration / step_s) + 2
    for k in range(steps + 1):
        t = k * step_s
        data = dev.frames_until(t)
        if data:
            out.append(CaptureRecord(t0 + t, DATA, b"".join(data), -1))
        if dev.finished and (not acc_rate or t * acc_rate >= len(acc_g) + 256):
            break
    return out


# -- running the gateway on a recording ---------------------------------------------------------


@dataclass
class ReplaySummary:
    events: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    records: int = 0
    wall_s: float = 0.0
    recorded_s: float = 0.0

    def text(self) -> str:
        by_type = Counter(e["type"] for e in self.events)
        by_cause = Counter(g["cause"] for g in self.gaps)
        ev = ", ".join(f"{k} {v}" for k, v in sorted(by_type.items())) or "none"
        gp = ", ".join(f"{k} {v}" for k, v in sorted(by_cause.items())) or "none"
        missing = sum(int(g["samples_missing"]) for g in self.gaps if g["domain"] == "emg")
        return (
            f"replayed {self.recorded_s:.1f} s of recording in {self.wall_s:.1f} s: "
            f"{len(self.events)} events ({ev}); {len(self.gaps)} gaps ({gp}), {missing} EMG samples missing"
        )


def capture_device(path: str | Path) -> tuple[str, dict[str, Any]]:
    """The device kind and vendor settings a capture's header names (other files: our own)."""
    from ingest.files.recording import CaptureReader, is_capture

    if not is_capture(Path(path)):
        return "neurospasm", {}
    _, kind, options = CaptureReader(path).source(device_given=True)
    return kind, options


def default_config(
    device: str, state_dir: Path, kind: str = "neurospasm", options: dict[str, Any] | None = None
) -> GatewayConfig:
    """Local storage only, no MQTT: a replay must not publish into a live system by accident.

    ``kind`` / ``options``: the recorded device's (a capture's header names them)."""
    from ingest.config import parse_config
    from ingest.wire.kinds import RULES

    dev: dict[str, Any] = {"id": device, "kind": kind, "reconnect_initial_s": 0.05, "reconnect_max_s": 0.1}
    rules = RULES.get(kind)
    if rules is not None and "serial" not in rules.transports:
        dev.update(transport="ble", address="replay")  # a BLE-only kind (the link is the file)
    else:
        dev["port"] = "replay"
    if options:
        dev["options"] = options
    return parse_config(
        {
            "gateway": {"state_dir": str(state_dir), "stale_after_s": 3600.0},
            "devices": [dev],
            "mqtt": {"enabled": False},
            "local": {"enabled": True},
            "spool": {"quota_mb": 512, "fsync": "never"},
        },
        "<replay defaults>",
    )


async def run_replay(
    path: str | Path,
    *,
    speed: float = math.inf,
    config: GatewayConfig | None = None,
    device: str | None = None,
    state_dir: Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    observers: list[Callable[[str, Output], None]] | None = None,
) -> ReplaySummary:
    """Run the whole gateway on a recording until its end; returns what it detected."""
    from ingest.stream.runner import Gateway

    records, named = load_records(path, device=device or "replay", device_given=device is not None)
    dev_id = device or named or "replay"
    if config is None:
        kind, options = capture_device(path)
        config = default_config(
            dev_id, state_dir or Path(tempfile.mkdtemp(prefix="neurospasm-replay-")), kind, options
        )
    else:
        if not config.devices:
            raise ReplayError(f"{path}: the config has no [[devices]]; replay needs one device id")
        dev_id = device or config.devices[0].id
        first = config.devices[0].model_copy(update={"id": dev_id})
        config = config.model_copy(update={"devices": [first]})
    summary = ReplaySummary(records=len(records))
    if records:
        summary.recorded_s = records[-1].t_host - records[0].t_host
    transport = ReplayTransport(
        name=dev_id,
        queue_size=config.gateway.queue_size,
        records=records,
        speed=speed,
        on_progress=on_progress,
    )

    def factory(_dev: DeviceSection) -> Transport:
        return transport

    def observe(_device: str, out: Output) -> None:
        if out.kind == "event" and out.payload is not None:
            summary.events.append(out.payload)
        elif out.kind == "gap" and out.payload is not None:
            summary.gaps.append(out.payload)

    started = time.monotonic()
    async with Gateway(config, transport_factory=factory, observers=[observe, *(observers or [])]) as gw:
        gw.start()
        await transport.finished.wait()
        await gw.drain(timeout_s=5.0)
    summary.wall_s = time.monotonic() - started
    return summary


def parse_speed(text: str) -> float:
    if text.lower() in ("max", "inf"):
        return math.inf
    try:
        v = float(text.rstrip("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"speed must be a number (1, 10, ...) or 'max', got {text!r}"
        ) from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"speed must be > 0, got {text!r}")
    return v


def _replay_cmd(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ingest.config import check_dirs, load_config
    from ingest.files.recording import CaptureError

    cfg = load_config(args.config) if args.config else None
    if cfg is not None:
        if not cfg.devices:
            raise ReplayError(f"{args.config}: devices: no [[devices]] table; replay needs one device id")
        check_dirs(cfg, args.config)
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("replay"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=args.no_progress or not console.is_terminal,
    )
    task = progress.add_task("replay", total=None)

    def on_progress(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    try:
        with progress:
            summary = asyncio.run(
                run_replay(
                    args.file,
                    speed=args.speed,
                    config=cfg,
                    device=args.device_id,
                    state_dir=Path(args.state_dir) if args.state_dir else None,
                    on_progress=on_progress,
                )
            )
    except (ReplayError, CaptureError) as exc:
        print(f"neurospasm replay: {exc}", file=sys.stderr)
        return 2
    if args.events_out:
        with Path(args.events_out).open("w", encoding="utf-8") as fh:
            for e in summary.events:
                fh.write(json.dumps(e, sort_keys=True) + "\n")
    print(summary.text())
    return 0


def register(sub: Any) -> None:
    """Add ``replay`` to the ``neurospasm`` command line."""
    p = sub.add_parser("replay", help="feed a capture, EDF+/BDF+ or CSV recording through the full gateway")
    p.add_argument("file", help="a capture (.nsc), an EDF+/BDF+ file or a CSV recording")
    p.add_argument(
        "--speed", type=parse_speed, default=math.inf, help="1 = real time, 10, ..., or max (default)"
    )
    p.add_argument("--config", "-c", help="gateway TOML (default: local storage only, MQTT off)")
    p.add_argument(
        "--device-id", type=pseudonym, help="device id (event ids depend on it; default: the capture's)"
    )
    p.add_argument(
        "--events-out", type=output_file, help="write the detected event payloads here (JSON lines)"
    )
    p.add_argument(
        "--state-dir", type=writable_dir,
        help="where the default config stores series and spool (default: a temp dir)",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_replay_cmd)
